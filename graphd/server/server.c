/*
 * The call core: every per-call policy, for every transport
 * (server/transport.h). The transports (grpc.c, http.c) accept calls and
 * move bytes; this file decides who may call what, how many calls run,
 * until when, what the audit trail holds, and which status goes out.
 *
 * References. Every operation a transport has outstanding on a call holds
 * one reference, and the method holds one until gd_call_finish(); the call
 * is freed (ops->free) when the count reaches zero, which is the only
 * moment it is safe. A per-call mutex serialises the operations started
 * from different threads (handler threads, HTTP connection threads, the
 * writer).
 *
 * Deadlines: a call without one gets the server's default, every call is
 * clamped to the maximum, and a reaper thread ends calls past the deadline
 * the transport does not enforce itself (gRPC core enforces the client's
 * own; HTTP has no such thing) with DEADLINE_EXCEEDED, and client streams
 * that wait too long for a message (--stream-idle-ms).
 *
 * Shutdown: mark the server draining (transports refuse new calls),
 * stop accepting (ops->drain), let calls in flight finish for the grace
 * period, cancel the rest (ops->cancel_all), wait for every call to be
 * freed, stop the query threads and the reaper, then release the
 * transports (ops->destroy).
 */
#include "server/server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/u64map.h"
#include "server/transport.h"

/* Work for the query threads: a heavy call's request (fn NULL), or a
 * function a method deferred (gd_call_defer). */
typedef struct qitem {
  struct qitem *next;
  gd_call *c;
  void (*fn)(void *arg);
  void *arg;
  uint8_t *msg; /* the request (copied) */
  size_t len;
  bool has;
} qitem;

struct gd_server {
  gd_server_opts opts;
  const gd_method *methods;
  size_t nmethods;
  unsigned nthreads; /* gRPC handler threads (heavy_inline_take) */

  pthread_mutex_t mu; /* active list, admission counts, shutdown state */
  pthread_cond_t cv;      /* the reaper's tick; reaper_stop */
  pthread_cond_t idle_cv; /* shutting down, and the last call ended */
  bool shutting_down;
  bool reaper_stop;
  gd_call *active;
  uint64_t nactive;
  uint64_t nstreams;  /* streaming calls admitted */
  gd_u64map percount; /* peer or principal key -> calls admitted */
  pthread_t reaper;
  bool reaper_started;
  int http_port;

  struct {
    const gd_transport *t;
    void *lctx;
  } tr[GD__MAX_TRANSPORTS];
  size_t ntr;

  /* Query threads: heavy calls in arrival order. */
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  qitem *qhead, *qtail;
  bool qstop;
  unsigned qinline; /* heavy calls running inline (heavy_inline_take) */
  pthread_t *qthreads;
  unsigned nqthreads;
};

/* ---- references ---------------------------------------------------------- */

void gd__call_init(gd_call *c, gd_server *s, const gd_transport *t, const gd_method *m,
                   size_t midx) {
  c->srv = s;
  c->t = t;
  c->m = m;
  c->midx = midx;
  pthread_mutex_init(&c->mu, NULL);
}

void gd__call_ref_locked(gd_call *c) { c->refs++; }

/* Drops one admitted call of a peer or principal key (s->mu held). */
static void uncount(gd_server *s, uint64_t key) {
  uint64_t *v = key ? gd_u64map_get(&s->percount, key) : NULL;
  if (v && --*v == 0)
    gd_u64map_del(&s->percount, key);
}

void gd__call_unref_locked(gd_call *c) {
  if (--c->refs > 0) {
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  gd_server *s = c->srv;
  pthread_mutex_lock(&s->mu);
  if (c->active) {
    if (c->prev)
      c->prev->next = c->next;
    else
      s->active = c->next;
    if (c->next)
      c->next->prev = c->prev;
    s->nactive--;
  }
  if (c->counted_stream)
    s->nstreams--;
  uncount(s, c->peer_key);
  uncount(s, c->principal_key);
  /* Only shutdown waits for the count to reach zero. A signal on every
   * call's end would wake a sleeper per call at one call in flight: a
   * context switch that costs a 2-core VM more than Health/Check itself. */
  if (s->nactive == 0 && s->shutting_down)
    pthread_cond_broadcast(&s->idle_cv);
  pthread_mutex_unlock(&s->mu);
  free(c->target);
  free(c->p_msg);
  free(c->p_reply);
  pthread_mutex_destroy(&c->mu);
  c->t->free(c);
}

void gd__call_unref(gd_call *c) {
  pthread_mutex_lock(&c->mu);
  gd__call_unref_locked(c);
}

bool gd__server_draining(gd_server *s) {
  pthread_mutex_lock(&s->mu);
  bool d = s->shutting_down;
  pthread_mutex_unlock(&s->mu);
  return d;
}

const gd_method *gd__server_methods(gd_server *s, size_t *ret_n) {
  *ret_n = s->nmethods;
  return s->methods;
}

const gd_server_opts *gd__server_opts(gd_server *s) { return &s->opts; }

void gd__server_add_transport(gd_server *s, const gd_transport *t, void *lctx) {
  if (s->ntr == GD__MAX_TRANSPORTS) {
    gd_error("server: more than %d transports", GD__MAX_TRANSPORTS);
    abort();
  }
  s->tr[s->ntr].t = t;
  s->tr[s->ntr].lctx = lctx;
  s->ntr++;
}

/* ---- the public per-call API --------------------------------------------- */

void gd_call_set_user(gd_call *c, void *user) { c->user = user; }
void *gd_call_user(gd_call *c) { return c->user; }
const gd_method *gd_call_method(gd_call *c) { return c->m; }
void *gd_call_ctx(gd_call *c) { return c->m ? c->m->ctx : NULL; }

bool gd_call_expired(gd_call *c) { return gd_call_check(c, NULL) != GD_OK; }

int gd_call_check(gd_call *c, gd_err *err) {
  pthread_mutex_lock(&c->mu);
  bool late = gd_now_ns() > c->deadline_ns, dead = c->dead;
  int64_t ms = (c->deadline_ns - c->start_ns) / 1000000;
  pthread_mutex_unlock(&c->mu);
  if (late)
    return gd_err_set(err, GD_EDEADLINE, "deadline exceeded after %lld ms: the work was stopped",
                      (long long)ms);
  if (dead)
    return gd_err_set(err, GD_ECANCELLED, "the call was cancelled: the work was stopped");
  return GD_OK;
}

gd_str gd_call_metadata(gd_call *c, const char *key) { return c->t->metadata(c, key); }

void gd_call_read_next(gd_call *c) {
  pthread_mutex_lock(&c->mu);
  c->reading = true;
  c->read_since_ns = gd_now_ns();
  c->t->read_next(c);
  pthread_mutex_unlock(&c->mu);
}

void gd__call_read_done(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len) {
  pthread_mutex_lock(&c->mu);
  c->reading = false;
  pthread_mutex_unlock(&c->mu);
  c->m->on_read(c, r, msg, len);
}

void gd_call_write(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint) {
  pthread_mutex_lock(&c->mu);
  c->t->write(c, msg, len, buffer_hint);
  pthread_mutex_unlock(&c->mu);
}

void gd__call_died(gd_call *c) {
  bool notify = false;
  pthread_mutex_lock(&c->mu);
  c->dead = true;
  if (c->owned && !c->cancel_notified && c->m && c->m->on_cancel) {
    c->cancel_notified = true;
    notify = true;
    c->refs++; /* keep it alive across the callback */
  }
  pthread_mutex_unlock(&c->mu);
  if (notify) {
    c->m->on_cancel(c);
    gd__call_unref(c);
  }
}

const char *gd_call_peer(gd_call *c) { return c->t->peer(c); }
const char *gd_call_case_id(gd_call *c) { return c->case_id; }

void gd_call_set_case_id(gd_call *c, const char *id) {
  pthread_mutex_lock(&c->mu);
  snprintf(c->case_id, sizeof c->case_id, "%s", id);
  pthread_mutex_unlock(&c->mu);
}
int64_t gd_call_start_ms(gd_call *c) { return c->start_ms; }

void gd_call_set_target(gd_call *c, const char *target) {
  free(c->target);
  c->target = target ? strdup(target) : NULL;
}

const char *gd_call_target(gd_call *c) { return c->target ? c->target : ""; }

const char *gd_call_path(gd_call *c) { return c->m ? c->m->path : c->t->unknown_path(c); }

const char *gd_call_principal(gd_call *c, gd_role *ret_role) {
  if (ret_role)
    *ret_role = c->role;
  return c->principal;
}

const char *gd_call_brand(gd_call *c) { return c->brand; }

void gd_call_mark_audited(gd_call *c, bool yes) { c->audited = yes; }

/* ---- finishing ------------------------------------------------------------ */

static void finish_now(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len) {
  int status = gd_err_grpc_status(code);
  pthread_mutex_lock(&c->mu);
  if (!c->owned) {
    gd_error("gd_call_finish called twice on %s", c->m ? c->m->path : "an unknown method");
    abort();
  }
  c->owned = false;
  if (c->srv->opts.call_end) {
    int64_t now = gd_now_ns();
    /* The status the client sees: past the deadline or after the call
     * died, the transport reports that, not ours. */
    int seen = now > c->deadline_ns ? GD_GRPC_DEADLINE_EXCEEDED
               : c->dead            ? GD_GRPC_CANCELLED
                                    : status;
    c->srv->opts.call_end(c->srv->opts.call_ctx, c->m ? c->midx : c->srv->nmethods, seen,
                          now - c->start_ns);
  }
  c->t->send_final(c, status, msg, status == 0 ? reply : NULL, len);
  gd__call_unref_locked(c); /* the method's reference */
}

void gd_call_finish(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len) {
  gd_server *s = c->srv;
  /* Methods open to anyone (health) are not recorded: probes would fill
   * the trail and wait on its commits. */
  if (s->opts.audit && !c->audit_started && !c->audited && !(c->m && c->m->role == GD_ROLE_NONE)) {
    /* Hold the finish until the audit record is durable (or not). */
    int status = gd_err_grpc_status(code);
    c->audit_started = true;
    if (s->opts.audit_now && s->opts.audit_now(s->opts.audit_ctx, c, status)) {
      finish_now(c, code, msg, reply, len); /* the record follows on its own */
      return;
    }
    c->p_code = code;
    c->p_has_msg = msg != NULL;
    c->p_msg = msg ? strdup(msg) : NULL;
    c->p_has_reply = reply != NULL;
    c->p_reply = reply && len ? malloc(len) : NULL;
    c->p_len = len;
    if ((msg && !c->p_msg) || (reply && len && !c->p_reply)) {
      finish_now(c, GD_ENOMEM, "out of memory holding the reply for the audit trail", NULL, 0);
      return;
    }
    if (c->p_reply)
      memcpy(c->p_reply, reply, len);
    s->opts.audit(s->opts.audit_ctx, c, status);
    return;
  }
  finish_now(c, code, msg, reply, len);
}

void gd_call_audit_done(gd_call *c, bool ok, const char *why) {
  if (!ok) {
    char m[400];
    snprintf(m, sizeof m, "audit trail cannot be written (%s): call refused",
             why ? why : "unknown error");
    finish_now(c, GD_EUNAVAILABLE, m, NULL, 0);
    return;
  }
  finish_now(c, c->p_code, c->p_has_msg ? (c->p_msg ? c->p_msg : "") : NULL,
             c->p_has_reply ? (c->p_reply ? c->p_reply : (const uint8_t *)"") : NULL, c->p_len);
}

/* ---- the call policy ------------------------------------------------------ */

/* Who the caller is, and whether it may call m. Returns 0, or finishes the
 * call with UNAUTHENTICATED / PERMISSION_DENIED and returns -1. */
static int authorize(gd_call *c, const gd_method *m) {
  gd_auth *auth = c->srv->opts.auth;
  if (!auth) {
    c->role = GD_ROLE_ADMIN;
    snprintf(c->principal, sizeof c->principal, "local");
    return 0;
  }
  gd_str v = c->t->metadata(c, "authorization");
  bool seen = v.n > 0, ok = false;
  if (v.n > 7 && strncasecmp(v.p, "Bearer ", 7) == 0)
    ok = gd_auth_check(auth, v.p + 7, v.n - 7, &c->role, c->principal, c->brand) == GD_OK;
  if (!seen && c->srv->opts.tls_client_ca_pem && c->t->cert_cn) {
    /* No bearer token: the verified client certificate's CN stands in. */
    char cn[GD_PRINCIPAL_MAX];
    if (c->t->cert_cn(c, cn, sizeof cn) &&
        gd_auth_check_cert(auth, cn, strlen(cn), &c->role, c->principal, c->brand) == GD_OK)
      ok = seen = true;
  }
  if (m->role == GD_ROLE_NONE)
    return 0;
  if (!ok) {
    gd_limit_hit(GD_LIMIT_UNAUTHENTICATED);
    gd_call_finish(c, GD_EUNAUTHENTICATED,
                   !seen ? "missing 'authorization: Bearer TOKEN' metadata"
                         : "unknown token, or not 'Bearer TOKEN'",
                   NULL, 0);
    return -1;
  }
  if (!gd_role_allows(c->role, m->role, m->partner)) {
    char msg[400];
    gd_limit_hit(GD_LIMIT_PERMISSION);
    if (c->role == GD_ROLE_PARTNER)
      snprintf(msg, sizeof msg,
               "%s is not open to partners: '%s' (brand %s) may use the case methods only",
               m->path, c->principal, c->brand);
    else
      snprintf(msg, sizeof msg, "%s needs role %s; '%s' has role %s", m->path,
               gd_role_name(m->role), c->principal, gd_role_name(c->role));
    gd_call_finish(c, GD_EPERM, msg, NULL, 0);
    return -1;
  }
  return 0;
}

/* A 64-bit key for a peer ('c': the connection) or a principal ('p');
 * never 0. */
static uint64_t name_key(char kind, const char *name) {
  uint64_t h = UINT64_C(1469598103934665603) ^ (uint8_t)kind;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * UINT64_C(1099511628211);
  return h ? h : 1;
}

/*
 * The call limits, checked and counted under one lock: all calls against
 * --max-calls; streams against the share not reserved for unary calls;
 * every call against the per-connection and (with tokens) per-principal
 * limit. Returns 0 (counted; gd__call_unref_locked uncounts), or finishes
 * c with RESOURCE_EXHAUSTED naming the limit and returns -1. The health
 * check (essential) is never refused.
 */
static int admit(gd_call *c) {
  gd_server *s = c->srv;
  const gd_server_opts *o = &s->opts;
  if (c->m && c->m->essential)
    return 0;
  bool stream = c->m && c->m->kind != GD_RPC_UNARY;
  unsigned per = o->max_calls_per_peer;
  uint64_t pk = per ? name_key('c', gd_call_peer(c)) : 0;
  uint64_t qk = per && o->auth && c->principal[0] ? name_key('p', c->principal) : 0;
  unsigned share = o->max_calls > o->reserved_calls ? o->max_calls - o->reserved_calls : 1;
  char msg[300];
  gd_limit lim = GD_LIMIT__COUNT;
  pthread_mutex_lock(&s->mu);
  uint64_t *pv = pk ? gd_u64map_get(&s->percount, pk) : NULL;
  uint64_t *qv = qk ? gd_u64map_get(&s->percount, qk) : NULL;
  if (o->max_calls && s->nactive > o->max_calls) {
    lim = GD_LIMIT_MAX_CALLS;
    snprintf(msg, sizeof msg, "too many calls in flight: more than %u (--max-calls)",
             o->max_calls);
  } else if (stream && o->max_calls && s->nstreams >= share) {
    lim = GD_LIMIT_STREAM_SHARE;
    snprintf(msg, sizeof msg,
             "too many streams in flight: %u of the %u call slots (--max-calls) are kept for "
             "unary calls (--reserved-calls)",
             o->reserved_calls, o->max_calls);
  } else if (pv && *pv >= per) {
    lim = GD_LIMIT_PEER_CALLS;
    snprintf(msg, sizeof msg,
             "too many calls in flight on this connection: %u (--max-calls-per-peer)", per);
  } else if (qv && *qv >= per) {
    lim = GD_LIMIT_PEER_CALLS;
    snprintf(msg, sizeof msg, "too many calls in flight for %s: %u (--max-calls-per-peer)",
             c->principal, per);
  } else {
    if (stream) {
      s->nstreams++;
      c->counted_stream = true;
    }
    /* Out of memory here only loses the count, never the call. */
    if (pk && (pv = gd_u64map_put(&s->percount, pk, NULL))) {
      ++*pv;
      c->peer_key = pk;
    }
    if (qk && (qv = gd_u64map_put(&s->percount, qk, NULL))) {
      ++*qv;
      c->principal_key = qk;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (lim == GD_LIMIT__COUNT)
    return 0;
  gd_limit_hit(lim);
  gd_call_finish(c, GD_ERESOURCE, msg, NULL, 0);
  return -1;
}

/* Deadline, observer, active list, wall clock, case id. */
static void activate(gd_call *c, int64_t client) {
  gd_server *s = c->srv;
  int64_t now = gd_now_ns();
  int64_t dflt = s->opts.default_deadline_ms * 1000000LL;
  int64_t max = s->opts.max_deadline_ms * 1000000LL;
  c->deadline_ns = client == INT64_MAX ? now + dflt : client;
  c->clamped = client == INT64_MAX;
  if (c->clamped)
    gd_limit_hit(GD_LIMIT_DEADLINE_DEFAULTED);
  if (c->deadline_ns > now + max) {
    c->deadline_ns = now + max;
    if (!c->clamped)
      gd_limit_hit(GD_LIMIT_DEADLINE_CLAMPED);
    c->clamped = true;
  }
  c->owned = true;
  c->refs++; /* the method's reference (a transport may hold one already) */
  c->start_ns = now;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  c->start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  /* The case id goes into the audit trail as text: refused (and left
   * out) when it is too long, not UTF-8, or holds control characters. */
  gd_str cid = c->t->metadata(c, "x-case-id");
  if (cid.n >= sizeof c->case_id)
    c->case_bad = "longer than 128 bytes";
  else if (!gd_utf8_valid(cid.p, cid.n))
    c->case_bad = "not valid UTF-8";
  for (size_t i = 0; i < cid.n && !c->case_bad; i++)
    if ((unsigned char)cid.p[i] < 0x20 || cid.p[i] == 0x7f)
      c->case_bad = "holds control characters";
  if (!c->case_bad) {
    memcpy(c->case_id, cid.p, cid.n);
    c->case_id[cid.n] = 0;
  }
  if (s->opts.call_begin)
    s->opts.call_begin(s->opts.call_ctx, c->m ? c->midx : s->nmethods);
  pthread_mutex_lock(&s->mu);
  c->next = s->active;
  if (s->active)
    s->active->prev = c;
  s->active = c;
  c->active = true;
  s->nactive++;
  pthread_mutex_unlock(&s->mu);
}

bool gd__call_accept(gd_call *c, int64_t client_deadline_ns) {
  gd_server *s = c->srv;
  const gd_method *m = c->m;
  activate(c, client_deadline_ns);
  if (!m) {
    char msg[300];
    snprintf(msg, sizeof msg, "unknown method %s", c->t->unknown_path(c));
    gd_call_finish(c, GD_EUNIMPLEMENTED, msg, NULL, 0);
    return false;
  }
  if (authorize(c, m) != 0)
    return false;
  if (c->case_bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "x-case-id (HTTP: X-Case-Id): %s", c->case_bad);
    gd_call_finish(c, GD_EINVALID, msg, NULL, 0);
    return false;
  }
  if (admit(c) != 0)
    return false;
  if (s->opts.audit_ready && !s->opts.audit_ready(s->opts.audit_ctx)) {
    gd_limit_hit(GD_LIMIT_AUDIT);
    gd_call_finish(c, GD_EUNAVAILABLE,
                   "the audit trail cannot be written: calls are refused until it can", NULL, 0);
    return false;
  }
  if (m->kind == GD_RPC_BIDI_STREAM      ? !m->on_read || !m->on_written
      : m->kind == GD_RPC_CLIENT_STREAM ? !m->on_read
                                        : !m->on_request) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s is not implemented in this version", m->path);
    gd_call_finish(c, GD_EUNIMPLEMENTED, msg, NULL, 0);
    return false;
  }
  return true;
}

/* ---- query threads -------------------------------------------------------- */

static void enqueue(gd_server *s, qitem *q) {
  pthread_mutex_lock(&s->qmu);
  q->next = NULL;
  if (s->qtail)
    s->qtail->next = q;
  else
    s->qhead = q;
  s->qtail = q;
  pthread_cond_signal(&s->qcv);
  pthread_mutex_unlock(&s->qmu);
}

/*
 * Whether the thread that took a heavy call may run it itself: only when
 * nothing waits for the query threads (so no call is overtaken) and
 * another gRPC handler thread stays free for the cheap calls (never with
 * one handler thread). A hand-off to a sleeping query thread costs about
 * 100 us of CPU per call on a 2-core VM (docs/ARCHITECTURE.md, "The
 * server"), as much as a 1-hop LinkedSellers itself. heavy_inline_done
 * gives the slot back.
 */
static bool heavy_inline_take(gd_server *s) {
  pthread_mutex_lock(&s->qmu);
  bool ok = !s->qhead && s->qinline + 1 < s->nthreads;
  s->qinline += ok;
  pthread_mutex_unlock(&s->qmu);
  return ok;
}

static void heavy_inline_done(gd_server *s) {
  pthread_mutex_lock(&s->qmu);
  s->qinline--;
  pthread_mutex_unlock(&s->qmu);
}

void gd__call_request(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  gd_server *s = c->srv;
  const gd_method *m = c->m;
  bool inl = false;
  if (m->kind == GD_RPC_UNARY && m->heavy && s->nqthreads && !(inl = heavy_inline_take(s))) {
    qitem *q = calloc(1, sizeof *q);
    uint8_t *copy = has_msg && len ? malloc(len) : NULL;
    if (q && (copy || !has_msg || !len)) {
      if (copy)
        memcpy(copy, msg, len);
      q->c = c;
      q->msg = copy;
      q->len = len;
      q->has = has_msg;
      enqueue(s, q);
      return;
    }
    free(q); /* no memory for the queue: run it here */
    free(copy);
  }
  m->on_request(c, msg, len, has_msg);
  if (inl)
    heavy_inline_done(s); /* c may be gone: s is not */
}

void gd_call_defer(gd_call *c, void (*fn)(void *arg), void *arg) {
  qitem *q = calloc(1, sizeof *q);
  if (!q || !c->srv->nqthreads) {
    free(q);
    fn(arg); /* no memory for the queue (or no threads): run it here */
    return;
  }
  q->c = c;
  q->fn = fn;
  q->arg = arg;
  enqueue(c->srv, q);
}

void gd_call_offload(gd_call *c, void (*fn)(void *arg), void *arg) {
  gd_server *s = c->srv;
  if (!s->nqthreads || !heavy_inline_take(s)) {
    gd_call_defer(c, fn, arg); /* (no query threads: runs here) */
    return;
  }
  fn(arg);
  heavy_inline_done(s); /* c may be gone: s is not */
}

static void *query_main(void *arg) {
  gd_server *s = arg;
  pthread_setname_np(pthread_self(), "gd-query"); /* top -H, perf --sort comm */
  pthread_mutex_lock(&s->qmu);
  for (;;) {
    while (!s->qhead && !s->qstop)
      pthread_cond_wait(&s->qcv, &s->qmu);
    qitem *q = s->qhead;
    if (!q)
      break; /* stopping, and nothing queued */
    s->qhead = q->next;
    if (!s->qhead)
      s->qtail = NULL;
    pthread_mutex_unlock(&s->qmu);
    if (q->fn) {
      q->fn(q->arg);
    } else {
      /* The method may finish (and so free) the call: the request is ours. */
      q->c->m->on_request(q->c, q->has ? (q->msg ? q->msg : (const uint8_t *)"") : NULL,
                          q->len, q->has);
      free(q->msg);
    }
    free(q);
    pthread_mutex_lock(&s->qmu);
  }
  pthread_mutex_unlock(&s->qmu);
  return NULL;
}

/* ---- the reaper ----------------------------------------------------------- */

/* Ends calls past the deadline their transport does not enforce (the
 * server's default or maximum; every deadline of a transport without its
 * own), and client streams idle past --stream-idle-ms. */
static void *reaper_main(void *arg) {
  gd_server *s = arg;
  pthread_setname_np(pthread_self(), "gd-reaper"); /* top -H, perf --sort comm */
  pthread_mutex_lock(&s->mu);
  while (!s->reaper_stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    int64_t now = gd_now_ns();
    int64_t idle = s->opts.stream_idle_ms * 1000000LL;
    for (gd_call *c = s->active; c; c = c->next) {
      if (idle && !c->idle_cut && c->m &&
          (c->m->kind == GD_RPC_CLIENT_STREAM || c->m->kind == GD_RPC_BIDI_STREAM)) {
        pthread_mutex_lock(&c->mu);
        bool cut = c->reading && now - c->read_since_ns > idle;
        c->idle_cut = cut;
        pthread_mutex_unlock(&c->mu);
        if (cut) {
          char msg[160];
          snprintf(msg, sizeof msg,
                   "the stream sent no message for %lld ms (--stream-idle-ms): ended",
                   (long long)s->opts.stream_idle_ms);
          gd_limit_hit(GD_LIMIT_STREAM_IDLE);
          c->t->cancel(c, GD_GRPC_DEADLINE_EXCEEDED, msg);
          continue;
        }
      }
      if (c->reaped || (c->t->own_deadlines && !c->clamped) || c->deadline_ns > now)
        continue;
      c->reaped = true;
      gd_limit_hit(GD_LIMIT_DEADLINE_EXPIRED);
      /* The call stays valid while it is on the active list (s->mu). */
      c->t->cancel(c, GD_GRPC_DEADLINE_EXCEEDED,
                   c->clamped ? "deadline exceeded (server deadline clamp)"
                              : "deadline exceeded");
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void stop_threads(gd_server *s) {
  pthread_mutex_lock(&s->qmu);
  s->qstop = true;
  pthread_cond_broadcast(&s->qcv);
  pthread_mutex_unlock(&s->qmu);
  for (unsigned i = 0; i < s->nqthreads; i++)
    if (s->qthreads[i])
      pthread_join(s->qthreads[i], NULL);
  pthread_mutex_lock(&s->mu);
  s->reaper_stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->reaper_started)
    pthread_join(s->reaper, NULL);
}

static void server_free(gd_server *s) {
  for (size_t i = s->ntr; i-- > 0;)
    if (s->tr[i].t->destroy)
      s->tr[i].t->destroy(s->tr[i].lctx);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_cond_destroy(&s->idle_cv);
  pthread_mutex_destroy(&s->qmu);
  pthread_cond_destroy(&s->qcv);
  gd_u64map_free(&s->percount);
  free(s->qthreads);
  free(s);
}

int gd_server_start(const gd_server_opts *o, const gd_method *methods, size_t nmethods,
                    gd_server **ret, int *ret_port, gd_err *err) {
  gd_server *s = calloc(1, sizeof *s);
  if (!s)
    return gd_err_set(err, GD_ENOMEM, "server: out of memory");
  s->opts = *o;
  s->methods = methods;
  s->nmethods = nmethods;
  s->nthreads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
  if (s->nthreads < 1)
    s->nthreads = 1;
  s->opts.threads = s->nthreads;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_cond_init(&s->idle_cv, NULL);
  pthread_mutex_init(&s->qmu, NULL);
  pthread_cond_init(&s->qcv, NULL);
  s->nqthreads = o->query_threads ? o->query_threads : s->nthreads;
  s->qthreads = calloc(s->nqthreads, sizeof *s->qthreads);
  if (!s->qthreads) {
    server_free(s);
    return gd_err_set(err, GD_ENOMEM, "server: out of memory");
  }
  for (unsigned i = 0; i < s->nqthreads; i++)
    pthread_create(&s->qthreads[i], NULL, query_main, s);
  s->reaper_started = pthread_create(&s->reaper, NULL, reaper_main, s) == 0;

  int rc = gd__grpc_start(s, ret_port, err);
  if (rc == GD_OK && o->http_listen)
    rc = gd__http_start(s, &s->http_port, err);
  if (rc != GD_OK) {
    /* Whatever a transport that did start accepted meanwhile is refused. */
    gd_server_shutdown(s, 0);
    return rc;
  }
  *ret = s;
  return GD_OK;
}

int gd_server_http_port(gd_server *s) { return s->http_port; }

uint64_t gd_server_active_calls(gd_server *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->nactive;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void gd_server_shutdown(gd_server *s, int64_t grace_ms) {
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  s->shutting_down = true;
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < s->ntr; i++)
    if (s->tr[i].t->drain)
      s->tr[i].t->drain(s->tr[i].lctx);

  /* Let calls in flight finish (writes still commit) for the grace period. */
  pthread_mutex_lock(&s->mu);
  int64_t deadline = gd_now_ns() + grace_ms * 1000000LL;
  while (s->nactive > 0 && gd_now_ns() < deadline) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&s->idle_cv, &s->mu, &ts);
  }
  if (s->nactive > 0)
    gd_warn("shutdown: grace period over, cancelling %llu call(s)",
            (unsigned long long)s->nactive);
  pthread_mutex_unlock(&s->mu);
  /* Cancel what is left. With nothing left this still matters: gRPC core's
   * shutdown otherwise waits for idle client connections to go away. */
  for (size_t i = 0; i < s->ntr; i++)
    if (s->tr[i].t->cancel_all)
      s->tr[i].t->cancel_all(s->tr[i].lctx);
  /* Every method finishes its calls (the writer is still running), so the
   * count reaches zero; every queued heavy call has run (it counted). */
  pthread_mutex_lock(&s->mu);
  while (s->nactive > 0)
    pthread_cond_wait(&s->idle_cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  stop_threads(s);
  server_free(s);
}

/* Cancels every call of transport t still on the active list (for a
 * transport's cancel_all). */
void gd__server_cancel_calls(gd_server *s, const gd_transport *t, int grpc_status,
                             const char *msg) {
  pthread_mutex_lock(&s->mu);
  for (gd_call *c = s->active; c; c = c->next)
    if (c->t == t)
      t->cancel(c, grpc_status, msg);
  pthread_mutex_unlock(&s->mu);
}
