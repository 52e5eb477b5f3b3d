/*
 * graphctl alerts: follows WatchAlerts, one line per event.
 *
 * A watch is one WatchAlerts call with a deadline (five minutes, or
 * --timeout); when the deadline ends it, the next watch starts after the
 * last event seen, so following costs one call every few minutes and no
 * event is printed twice or skipped. With --reconnect an UNAVAILABLE
 * (graphd restarting, a dropped connection) does the same after a pause.
 *
 * SIGINT and SIGTERM stop the follow cleanly: the handler only writes a
 * byte to a pipe; a thread reads it and cancels the current call
 * (gc_sstream_cancel), so the main thread, blocked in gc_sstream_next,
 * sees CANCELLED, prints where to resume and exits 0. A second signal
 * exits at once (130). The stream is started with gc_sstream_start, which
 * does not wait for graphd's first answer: graphd sends nothing, initial
 * metadata included, until the first event, and the call must be
 * cancellable while it waits.
 */
#include "graphctl.h"

#include <errno.h>
#include <grpc/status.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define M_WATCH_ALERTS SVC "WatchAlerts"

/* Deadline of one watch when --timeout is not given. */
#define WATCH_MS 300000
/* Watches in a row that the deadline ends within a second before graphctl
 * gives up (a --timeout too short to wait for anything). */
#define QUICK_REOPENS 3
/* --reconnect: pauses between attempts, doubling up to this (seconds). */
#define BACKOFF_MAX_S 30

const optspec alerts_opts[] = {
    {"min-risk", true, O_ALERT_MIN_RISK},
    {"label", true, O_LABEL},
    {"cluster", true, O_CLUSTER},
    {"after-seq", true, O_AFTER_SEQ},
    {"from-now", false, O_FROM_NOW},
    {"count", true, O_COUNT},
    {"reconnect", false, O_RECONNECT},
    {NULL, false, 0},
};

const char alerts_help[] =
    "usage: graphctl alerts [--min-risk X] [--label L] [--cluster ID]\n"
    "                       [--after-seq N | --from-now] [--count N] [--reconnect]\n"
    "\n"
    "Follows the daemon's alerts (WatchAlerts): an event each time a seller is\n"
    "placed, provisionally, in a cluster of the latest snapshot it was not in\n"
    "before (a new seller sharing a ring's device, say). One line per event:\n"
    "  seq 12  2025-06-01T10:00:00Z  s2001 -> cluster 7  risk 0.812 (41 sellers)\n"
    "      previous -  evidence: device d-1f2e, address wh-1  labels: counterfeit\n"
    "(on one line): sequence number, when it was written (UTC), the seller's\n"
    "key, the cluster it joined with that cluster's risk and size in the\n"
    "snapshot, the cluster it had before ('-': none), the entities that tie it\n"
    "most strongly to the cluster's members, and the labels the cluster's\n"
    "members carry. Runs until Ctrl-C (SIGINT) or SIGTERM, or --count events.\n"
    "\n"
    "Options:\n"
    "  --min-risk X     only clusters whose risk is at least X (0..1; checked\n"
    "                   by the server)\n"
    "  --label L        only clusters holding a seller labelled L\n"
    "  --cluster ID     only this cluster of the latest snapshot\n"
    "  --after-seq N    start after event N (0: the oldest event the daemon\n"
    "                   keeps, which is the default)\n"
    "  --from-now       only events written from now on\n"
    "  --count N        exit 0 after N events\n"
    "  --reconnect      when the daemon cannot be reached or ends the watch as\n"
    "                   it shuts down (UNAVAILABLE, CANCELLED), try again after\n"
    "                   1, 2, 4 .. 30 s, resuming after the last event seen,\n"
    "                   instead of exiting\n"
    "  --timeout MS     deadline of each watch (default 300000); when it ends a\n"
    "                   watch, the next one starts after the last event seen\n"
    "\n"
    "Interrupted (exit 0), or ended by an error (exit 1, or 69 when the daemon\n"
    "cannot be reached; stderr has \"graphctl: CODE: message\"), graphctl\n"
    "prints on stderr where to resume:\n"
    "  graphctl: interrupted after 3 events; resume with --after-seq 14\n"
    "Statuses: INVALID_ARGUMENT (min_risk outside 0..1, a bad label),\n"
    "NOT_FOUND (--cluster is not a cluster of the latest snapshot),\n"
    "OUT_OF_RANGE (--after-seq older than the oldest event kept, or newer\n"
    "than the last one written), FAILED_PRECONDITION (graphd runs with\n"
    "--placement-queue 0: no alerts). With --from-now, until the first event\n"
    "comes each new watch starts from its own start, so an event written in\n"
    "the moment between two watches can be missed.\n"
    "\n"
    "With --json: one JSON object per event and line, flushed as it comes:\n"
    "{\"seq\":..,\"time_ms\":..,\"seller_id\":..,\"seller_key\":..,\"snapshot_id\":..,\n"
    "\"cluster_id\":..,\"cluster_risk\":..,\"cluster_size\":..,\n"
    "\"previous_cluster_id\":..,\"gain\":..,\"tie\":..,\"cluster_labels\":[..],\n"
    "\"labelled_members\":..,\"evidence\":[{\"member_id\":..,\"member_key\":..,\n"
    "\"tie\":..,\"shared\":[{\"entity\":{\"id\":..,\"type\":..,\"key\":..,\n"
    "\"seller_count\":..},\"weight\":..,\"corroboration\":..,\"first_seen\":..,\n"
    "\"last_seen\":..}]}],\"reasons\":[..]} (time_ms: unix milliseconds).\n";

/* ------------------------------------------------------------------ */
/* Options                                                              */

/* A whole number >= 0 (0 allowed: --after-seq 0). */
static int parse_seq(const command *cmd, const char *opt, const char *v, uint64_t *ret) {
  if (strcmp(v, "0") == 0) {
    *ret = 0;
    return 0;
  }
  return parse_u64(cmd, opt, v, ret);
}

int set_alerts_option(const command *cmd, args *a, const optspec *o, const char *opt,
                      const char *v) {
  switch (o->id) {
  case O_ALERT_MIN_RISK:
    /* A number; its range is the server's to check (INVALID_ARGUMENT
     * naming min_risk), so graphctl and the other clients agree. */
    a->have_alert_min_risk = true;
    return parse_double(cmd, opt, v, false, &a->alert_min_risk);
  case O_CLUSTER:
    return parse_u64(cmd, opt, v, &a->cluster_id);
  case O_AFTER_SEQ:
    a->have_after_seq = true;
    return parse_seq(cmd, opt, v, &a->after_seq);
  case O_FROM_NOW:
    a->from_now = true;
    return 0;
  case O_COUNT:
    return parse_long(cmd, opt, v, 1, 1000000000L, &a->count);
  case O_RECONNECT:
    a->reconnect = true;
    return 0;
  }
  return usage_error(cmd, "internal: unhandled option %s", opt);
}

/* ------------------------------------------------------------------ */
/* Signals                                                              */

/* What the signal thread and the main thread share. */
typedef struct follow {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  gc_sstream *cur;  /* the watch in progress, or NULL */
  bool interrupted; /* a SIGINT or SIGTERM came */
} follow;

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_seen;

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (sig_seen++) /* the second one: no more waiting */
    _exit(130);
  char b = 1;
  if (write(sig_pipe[1], &b, 1) < 0) {
  }
  errno = saved;
}

/* Waits for a byte from the handler (or the pipe's end at exit). */
static void *signal_thread(void *arg) {
  follow *f = arg;
  char b;
  ssize_t n;
  do
    n = read(sig_pipe[0], &b, 1);
  while (n < 0 && errno == EINTR);
  if (n == 1) {
    pthread_mutex_lock(&f->mu);
    f->interrupted = true;
    gc_sstream_cancel(f->cur);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
  }
  return NULL;
}

static struct sigaction old_int, old_term;

/* Installs the handlers and starts the thread; false if that fails (then
 * the signals keep their default action). */
static bool signals_start(follow *f, pthread_t *th) {
  if (pipe(sig_pipe) != 0)
    return false;
  if (pthread_create(th, NULL, signal_thread, f) != 0) {
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
    return false;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  return true;
}

static void signals_stop(pthread_t th) {
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  close(sig_pipe[1]); /* the thread reads the end and returns */
  pthread_join(th, NULL);
  close(sig_pipe[0]);
  sig_pipe[0] = sig_pipe[1] = -1;
}

/* Sleeps up to seconds; false if interrupted meanwhile. */
static bool pause_unless_interrupted(follow *f, int seconds) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += seconds;
  pthread_mutex_lock(&f->mu);
  while (!f->interrupted &&
         pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT) {
  }
  bool ok = !f->interrupted;
  pthread_mutex_unlock(&f->mu);
  return ok;
}

/* ------------------------------------------------------------------ */
/* Output                                                               */

static const char *time_ms_text(int64_t ms, char *buf, size_t size) {
  if (ms <= 0) {
    snprintf(buf, size, "-");
    return buf;
  }
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

static json_object *alert_json(const Graphd__V1__AlertEvent *e) {
  json_object *o = jobj(), *ev = jarr(), *reasons = jarr();
  jset(o, "seq", json_object_new_uint64(e->seq));
  jset(o, "time_ms", json_object_new_int64(e->time));
  jset(o, "seller_id", json_object_new_uint64(e->seller_id));
  jset(o, "seller_key", jstr(e->seller_key));
  jset(o, "snapshot_id", json_object_new_uint64(e->snapshot_id));
  jset(o, "cluster_id", json_object_new_uint64(e->cluster_id));
  jset(o, "cluster_risk", json_object_new_double(e->cluster_risk));
  jset(o, "cluster_size", json_object_new_uint64(e->cluster_size));
  jset(o, "previous_cluster_id", json_object_new_uint64(e->previous_cluster_id));
  jset(o, "gain", json_object_new_double(e->gain));
  jset(o, "tie", json_object_new_double(e->tie));
  jset(o, "cluster_labels", labels_json(e->cluster_labels, e->n_cluster_labels));
  jset(o, "labelled_members", json_object_new_uint64(e->labelled_members));
  for (size_t i = 0; i < e->n_evidence; i++) {
    const Graphd__V1__AlertEvidence *x = e->evidence[i];
    json_object *xo = jobj(), *sh = jarr();
    jset(xo, "member_id", json_object_new_uint64(x->member_id));
    jset(xo, "member_key", jstr(x->member_key));
    jset(xo, "tie", json_object_new_double(x->tie));
    for (size_t j = 0; j < x->n_shared; j++) {
      const Graphd__V1__SharedEntity *s = x->shared[j];
      json_object *so = jobj(), *eo = jobj();
      if (s->entity) {
        jset(eo, "id", json_object_new_uint64(s->entity->id));
        jset(eo, "type", jstr(gd_type_name((int)s->entity->type)));
        jset(eo, "key", jstr(s->entity->key));
        jset(eo, "seller_count", json_object_new_uint64(s->entity->seller_count));
      }
      jset(so, "entity", eo);
      jset(so, "weight", json_object_new_double(s->weight));
      jset(so, "corroboration", json_object_new_double(s->corroboration));
      jset(so, "first_seen", json_object_new_int64(s->first_seen));
      jset(so, "last_seen", json_object_new_int64(s->last_seen));
      json_object_array_add(sh, so);
    }
    jset(xo, "shared", sh);
    json_object_array_add(ev, xo);
  }
  jset(o, "evidence", ev);
  for (size_t i = 0; i < e->n_reasons; i++)
    json_object_array_add(reasons, jstr(e->reasons[i]));
  jset(o, "reasons", reasons);
  return o;
}

/* The strongest distinct shared entities behind the event, at most 3:
 * "device d-1f2e, address wh-1" ("direct link" for a seller). */
static void evidence_text(const Graphd__V1__AlertEvent *e, char *buf, size_t size) {
  uint64_t ids[3];
  size_t n = 0, o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < e->n_evidence && n < 3; i++) {
    const Graphd__V1__AlertEvidence *x = e->evidence[i];
    for (size_t j = 0; j < x->n_shared && n < 3; j++) {
      const Graphd__V1__Entity *en = x->shared[j]->entity;
      if (!en)
        continue;
      bool dup = false;
      for (size_t k = 0; k < n && !dup; k++)
        dup = ids[k] == en->id;
      if (dup)
        continue;
      ids[n++] = en->id;
      char kb[256];
      int w;
      if (en->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
        w = snprintf(buf + o, size - o, "%sdirect link", o ? ", " : "");
      else
        w = snprintf(buf + o, size - o, "%s%s %s", o ? ", " : "",
                     gd_type_name((int)en->type), safe(en->key, kb, sizeof kb));
      if (w < 0 || (size_t)w >= size - o) {
        buf[size - 1] = '\0';
        return;
      }
      o += (size_t)w;
    }
  }
  if (!o)
    snprintf(buf, size, "-");
}

static void print_alert(const Graphd__V1__AlertEvent *e) {
  char tb[40], kb[1024], eb[1024], lb[1024];
  printf("seq %" PRIu64 "  %s  %s -> cluster %" PRIu64 "  risk %.3f (%" PRIu64 " seller%s)",
         e->seq, time_ms_text(e->time, tb, sizeof tb), safe(e->seller_key, kb, sizeof kb),
         e->cluster_id, e->cluster_risk, e->cluster_size, e->cluster_size == 1 ? "" : "s");
  if (e->previous_cluster_id)
    printf("  previous %" PRIu64, e->previous_cluster_id);
  else
    printf("  previous -");
  evidence_text(e, eb, sizeof eb);
  printf("  evidence: %s", eb);
  if (e->n_cluster_labels) {
    size_t o = 0;
    lb[0] = '\0';
    for (size_t i = 0; i < e->n_cluster_labels && o + 1 < sizeof lb; i++) {
      char one[300];
      int w = snprintf(lb + o, sizeof lb - o, "%s%s", i ? ", " : "",
                       safe(e->cluster_labels[i], one, sizeof one));
      if (w < 0 || (size_t)w >= sizeof lb - o)
        break;
      o += (size_t)w;
    }
    printf("  labels: %s", lb);
  }
  putchar('\n');
}

/* ------------------------------------------------------------------ */
/* alerts                                                               */

/* Where to resume, on stderr: after the last event seen, else where this
 * run started. */
static void print_resume(const char *why, uint64_t events, bool seen, uint64_t last,
                         const args *a) {
  fprintf(stderr, "graphctl: %s after %" PRIu64 " event%s; ", why, events,
          events == 1 ? "" : "s");
  if (seen)
    fprintf(stderr, "resume with --after-seq %" PRIu64 "\n", last);
  else if (a->from_now)
    fprintf(stderr, "no event seen since it started (--from-now); resume with --from-now, "
                    "or --after-seq 0 for every event kept\n");
  else
    fprintf(stderr, "resume with --after-seq %" PRIu64 "\n", a->after_seq);
}

/* Statuses that say the request itself is refused: asking again the same
 * way gets the same answer, so there is nothing to resume. */
static bool request_refused(int code) {
  return code == GRPC_STATUS_INVALID_ARGUMENT || code == GRPC_STATUS_NOT_FOUND ||
         code == GRPC_STATUS_OUT_OF_RANGE || code == GRPC_STATUS_PERMISSION_DENIED ||
         code == GRPC_STATUS_UNAUTHENTICATED || code == GRPC_STATUS_FAILED_PRECONDITION ||
         code == GRPC_STATUS_UNIMPLEMENTED;
}

int run_alerts(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  if (a->from_now && a->have_after_seq)
    return usage_error(cmd, "--after-seq and --from-now exclude each other");
  if (a->nlabels > 1)
    return usage_error(cmd, "--label: one label only");

  Graphd__V1__WatchAlertsRequest req = GRAPHD__V1__WATCH_ALERTS_REQUEST__INIT;
  req.min_risk = a->have_alert_min_risk ? a->alert_min_risk : 0;
  req.label = a->nlabels ? a->labels[0] : "";
  req.cluster_id = a->cluster_id;
  int deadline = a->timeout_set ? c->timeout_ms : WATCH_MS;

  follow f;
  memset(&f, 0, sizeof f);
  pthread_mutex_init(&f.mu, NULL);
  pthread_cond_init(&f.cv, NULL);
  pthread_t th;
  bool sig = signals_start(&f, &th);

  bool seen = false;          /* an event came: last is its seq */
  uint64_t last = 0, events = 0;
  int quick = 0, backoff = 1;
  rc = EXIT_OK;
  for (;;) {
    /* Each watch starts after the last event seen; until one is seen,
     * where the command line said. */
    req.after_seq = seen ? last : a->after_seq;
    req.from_now = !seen && a->from_now;
    gc_status st;
    gc_sstream *s = NULL;
    double t0 = now_s();
    bool done = false;
    if (gc_sstream_start(c->client, M_WATCH_ALERTS, &req.base, deadline, &s, &st) != 0) {
      rc = report_status(c, &st);
      break;
    }
    pthread_mutex_lock(&f.mu);
    f.cur = s;
    if (f.interrupted)
      gc_sstream_cancel(s);
    pthread_mutex_unlock(&f.mu);
    int code;
    for (;;) {
      ProtobufCMessage *m = NULL;
      if ((code = gc_sstream_next(s, &graphd__v1__alert_event__descriptor, &m, &st)) != 0 ||
          !m)
        break;
      const Graphd__V1__AlertEvent *e = (const Graphd__V1__AlertEvent *)m;
      if (!seen || e->seq > last) { /* a resumed watch never repeats; be sure */
        if (c->json)
          print_json(alert_json(e));
        else
          print_alert(e);
        fflush(stdout);
        seen = true;
        last = e->seq;
        events++;
        backoff = 1;
      }
      protobuf_c_message_free_unpacked(m, NULL);
      if (a->count && events >= (uint64_t)a->count) {
        done = true;
        break;
      }
    }
    pthread_mutex_lock(&f.mu);
    f.cur = NULL;
    bool interrupted = f.interrupted;
    pthread_mutex_unlock(&f.mu);
    gc_sstream_free(s);
    if (done)
      break;
    if (interrupted) {
      print_resume("interrupted", events, seen, last, a);
      break;
    }
    if (code == GRPC_STATUS_OK) { /* the server ended the stream */
      print_resume("the stream ended", events, seen, last, a);
      break;
    }
    /* Not there, going away, or gone: a daemon that shuts down ends its
     * calls with UNAVAILABLE, or cancels them (CANCELLED: not ours, since
     * graphctl was not interrupted). */
    bool unreachable = code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_CANCELLED ||
                       (code == GRPC_STATUS_DEADLINE_EXCEEDED && st.connect_failed);
    if (code == GRPC_STATUS_DEADLINE_EXCEEDED && !unreachable) {
      /* The watch's deadline: the usual end of a watch; follow on. */
      quick = now_s() - t0 < 1.0 ? quick + 1 : 0;
      if (quick < QUICK_REOPENS)
        continue;
    }
    if (unreachable && a->reconnect) {
      char mb[GC_STATUS_MSG_MAX + 8];
      fprintf(stderr, "graphctl: %s: %s; trying again in %d s", gc_status_code_name(code),
              safe(st.message[0] ? st.message : "(no message)", mb, sizeof mb), backoff);
      if (seen)
        fprintf(stderr, " (after seq %" PRIu64 ")", last);
      fputc('\n', stderr);
      if (!pause_unless_interrupted(&f, backoff)) {
        print_resume("interrupted", events, seen, last, a);
        break;
      }
      backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
      continue;
    }
    rc = report_status(c, &st);
    if (seen || !request_refused(code))
      print_resume("stopped", events, seen, last, a);
    break;
  }
  if (sig)
    signals_stop(th);
  pthread_cond_destroy(&f.cv);
  pthread_mutex_destroy(&f.mu);
  return rc;
}
