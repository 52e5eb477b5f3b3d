/*
 * The gRPC core server.
 *
 * How it works. One completion queue (CQ) is shared by N handler threads,
 * each blocked in grpc_completion_queue_next(). For every registered method
 * a few request slots are kept posted; when core matches an incoming call
 * to a slot, the slot's tag comes back, a fresh slot is posted at once, and
 * the call is handed to the method. Unknown paths land in generic slots and
 * are answered UNIMPLEMENTED (without those slots such calls would hang
 * until their deadline).
 *
 * Every batch started on a call holds one reference on our call context,
 * and the method holds one until gd_call_finish(); the context is freed when
 * the count reaches zero, which is the only moment it is safe (core may
 * still hand back a tag before that). A per-call mutex serialises batches
 * started from different threads (handler threads and the writer).
 *
 * Unary calls send their reply, status and RECV_CLOSE_ON_SERVER in one
 * batch: two CQ events per call. Streaming calls start RECV_CLOSE at once so
 * that cancellation is seen while they run. Bidirectional streams are the
 * client-stream machine (server-started first read, gd_call_read_next) and
 * the server-stream one (gd_call_write, on_written) on the same call.
 *
 * Deadlines: core enforces the client's deadline. Calls with none get the
 * server's default, and every call is clamped to the maximum; a reaper
 * thread cancels calls past that with DEADLINE_EXCEEDED.
 *
 * Shutdown follows the order core requires: stop posting slots (flag under
 * the slot mutex), grpc_server_shutdown_and_notify, wait for its tag for the
 * grace period, cancel all calls, wait for every call context to be freed,
 * destroy the server, shut the CQ down and join the threads.
 */
#include "server/server.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/u64map.h"

#define SLOTS_PER_METHOD 4
#define GENERIC_SLOTS 4

enum tag_kind { TAG_NEW, TAG_CLOSE, TAG_READ, TAG_WRITE, TAG_FINAL, TAG_SHUTDOWN };

typedef struct tag {
  enum tag_kind kind;
  gd_call *call;
} tag;

struct gd_call {
  gd_server *srv;
  const gd_method *m; /* NULL for a generic (unknown-method) slot */
  size_t midx;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* generic slots only */
  grpc_byte_buffer *payload; /* registered unary/server-stream request */
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *send_buf;
  grpc_byte_buffer *final_buf;
  int close_cancelled;
  pthread_mutex_t mu;
  int refs;
  bool owned;      /* the method holds it */
  bool md_sent;    /* initial metadata sent */
  bool close_started;
  bool dead;       /* cancelled or past deadline */
  bool cancel_notified;
  bool reaped;     /* the reaper cancelled it */
  bool clamped;    /* deadline_ns is ours, not the client's */
  int64_t deadline_ns; /* effective (clamped) deadline, monotonic */
  int64_t start_ns;    /* accepted, monotonic (call observer) */
  void *user;
  gd_role role;
  char principal[GD_PRINCIPAL_MAX];
  /* audit */
  char case_id[GD_CASE_ID_MAX];
  char *peer;           /* grpc_call_get_peer, gpr_free */
  char *target;         /* gd_call_set_target, free */
  char *gpath;          /* an unknown method's path, gpr_free */
  int64_t start_ms;     /* wall clock at accept */
  bool audit_started;   /* the hook has the finish */
  bool audited;         /* recorded in the method's own write transaction */
  int p_code;           /* the finish waiting for its audit record */
  char *p_msg;
  uint8_t *p_reply;
  size_t p_len;
  bool p_has_msg, p_has_reply;
  tag t_new, t_close, t_read, t_write, t_final;
  gd_call *prev, *next; /* active list */
  /* admission (s->mu): what this call counts against, undone at free */
  bool counted_stream;
  uint64_t peer_key, principal_key; /* 0 = not counted */
  /* client streams (c->mu): a read is outstanding since read_since_ns */
  bool reading;
  int64_t read_since_ns;
  bool idle_cut;
};

/* Work for the query threads: a heavy call's request (fn NULL), or a
 * function a method deferred (gd_call_defer). */
typedef struct qitem {
  struct qitem *next;
  gd_call *c;
  void (*fn)(void *arg);
  void *arg;
  grpc_slice msg;
  bool has;
} qitem;

struct gd_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  const gd_method *methods;
  size_t nmethods;
  void **handles; /* registered method handles */
  pthread_t *threads;
  unsigned nthreads;
  pthread_t reaper;
  gd_server_opts opts;

  pthread_mutex_t mu; /* slots, active list, shutdown state */
  pthread_cond_t cv;
  bool shutting_down;
  bool shutdown_done;
  bool reaper_stop;
  gd_call *active;
  uint64_t nactive;
  uint64_t nstreams;  /* streaming calls admitted */
  gd_u64map percount; /* peer or principal key -> calls admitted */
  tag t_shutdown;

  /* Query threads: heavy calls in arrival order. */
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  qitem *qhead, *qtail;
  bool qstop;
  unsigned qinline; /* heavy calls running on handler threads (heavy_inline_take) */
  pthread_t *qthreads;
  unsigned nqthreads;
};

static void call_unref(gd_call *c);

/* ---- helpers ----------------------------------------------------------- */

static void start_batch(gd_call *c, const grpc_op *ops, size_t n, tag *t) {
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    /* A broken precondition is a bug in this file: fail loudly. */
    gd_error("grpc_call_start_batch: %s", grpc_call_error_to_string(e));
    abort();
  }
  c->refs++;
}

static gd_call *call_new(gd_server *s, const gd_method *m, size_t midx) {
  gd_call *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->srv = s;
  c->m = m;
  c->midx = midx;
  grpc_metadata_array_init(&c->md);
  grpc_call_details_init(&c->details);
  pthread_mutex_init(&c->mu, NULL);
  c->t_new = (tag){TAG_NEW, c};
  c->t_close = (tag){TAG_CLOSE, c};
  c->t_read = (tag){TAG_READ, c};
  c->t_write = (tag){TAG_WRITE, c};
  c->t_final = (tag){TAG_FINAL, c};
  return c;
}

/* Frees a context that never became a call (its slot failed at shutdown). */
static void call_free_slot(gd_call *c) {
  if (c->peer)
    gpr_free(c->peer);
  if (c->gpath)
    gpr_free(c->gpath);
  free(c->target);
  free(c->p_msg);
  free(c->p_reply);
  grpc_metadata_array_destroy(&c->md);
  grpc_call_details_destroy(&c->details);
  if (c->payload)
    grpc_byte_buffer_destroy(c->payload);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Posts one request slot; false when the server is shutting down. Called
 * with s->mu held so the check and the post are atomic with shutdown. */
static bool post_slot_locked(gd_server *s, const gd_method *m, size_t midx) {
  if (s->shutting_down)
    return false;
  gd_call *c = call_new(s, m, midx);
  if (!c) {
    gd_error("out of memory posting a request slot");
    return false;
  }
  grpc_call_error e;
  if (m) {
    bool with_payload = m->kind != GD_RPC_CLIENT_STREAM && m->kind != GD_RPC_BIDI_STREAM;
    e = grpc_server_request_registered_call(s->server, s->handles[midx], &c->call, &c->deadline,
                                            &c->md, with_payload ? &c->payload : NULL, s->cq,
                                            s->cq, &c->t_new);
  } else {
    e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq,
                                 &c->t_new);
  }
  if (e != GRPC_CALL_OK) {
    gd_error("request slot: %s", grpc_call_error_to_string(e));
    call_free_slot(c);
    return false;
  }
  return true;
}

static void post_slot(gd_server *s, const gd_method *m, size_t midx) {
  pthread_mutex_lock(&s->mu);
  post_slot_locked(s, m, midx);
  pthread_mutex_unlock(&s->mu);
}

static int64_t timespec_to_mono_ns(gpr_timespec t) {
  if (gpr_time_cmp(t, gpr_inf_future(t.clock_type)) == 0)
    return INT64_MAX;
  gpr_timespec m = gpr_convert_clock_type(t, GPR_CLOCK_MONOTONIC);
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  int64_t left_ns = (m.tv_sec - now.tv_sec) * 1000000000LL + (m.tv_nsec - now.tv_nsec);
  return gd_now_ns() + left_ns;
}

static void activate(gd_call *c) {
  gd_server *s = c->srv;
  int64_t now = gd_now_ns();
  /* Generic slots get the deadline in the call details. */
  int64_t client = timespec_to_mono_ns(c->m ? c->deadline : c->details.deadline);
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
  c->refs = 1; /* the method's reference */
  c->start_ns = now;
  if (s->opts.call_begin)
    s->opts.call_begin(s->opts.call_ctx, c->m ? c->midx : s->nmethods);
  pthread_mutex_lock(&s->mu);
  c->next = s->active;
  if (s->active)
    s->active->prev = c;
  s->active = c;
  s->nactive++;
  pthread_mutex_unlock(&s->mu);
}

/* Drops one admitted call of a peer or principal key (s->mu held). */
static void uncount(gd_server *s, uint64_t key) {
  uint64_t *v = key ? gd_u64map_get(&s->percount, key) : NULL;
  if (v && --*v == 0)
    gd_u64map_del(&s->percount, key);
}

/* Called with c->mu held; drops one reference and frees at zero (the lock
 * is released in every case). */
static void call_unref_locked(gd_call *c) {
  if (--c->refs > 0) {
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  gd_server *s = c->srv;
  pthread_mutex_lock(&s->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->active = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nactive--;
  if (c->counted_stream)
    s->nstreams--;
  uncount(s, c->peer_key);
  uncount(s, c->principal_key);
  if (s->nactive == 0)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);

  grpc_call_unref(c->call);
  if (c->recv_buf)
    grpc_byte_buffer_destroy(c->recv_buf);
  if (c->send_buf)
    grpc_byte_buffer_destroy(c->send_buf);
  if (c->final_buf)
    grpc_byte_buffer_destroy(c->final_buf);
  c->call = NULL;
  call_free_slot(c);
}

static void call_unref(gd_call *c) {
  pthread_mutex_lock(&c->mu);
  call_unref_locked(c);
}

static grpc_byte_buffer *make_buffer(const uint8_t *p, size_t n) {
  grpc_slice sl = grpc_slice_from_copied_buffer((const char *)p, n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

/* Reads a whole byte buffer into one slice. */
static grpc_slice read_all(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader rd;
  grpc_slice sl;
  if (!grpc_byte_buffer_reader_init(&rd, bb))
    return grpc_empty_slice();
  sl = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  return sl;
}

/* ---- the public per-call API --------------------------------------------- */

void gd_call_set_user(gd_call *c, void *user) { c->user = user; }
void *gd_call_user(gd_call *c) { return c->user; }
const gd_method *gd_call_method(gd_call *c) { return c->m; }

bool gd_call_expired(gd_call *c) {
  return gd_call_check(c, NULL) != GD_OK;
}

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

gd_str gd_call_metadata(gd_call *c, const char *key) {
  for (size_t i = 0; i < c->md.count; i++)
    if (grpc_slice_str_cmp(c->md.metadata[i].key, key) == 0)
      return (gd_str){(const char *)GRPC_SLICE_START_PTR(c->md.metadata[i].value),
                      GRPC_SLICE_LENGTH(c->md.metadata[i].value)};
  return (gd_str){"", 0};
}

void gd_call_read_next(gd_call *c) {
  grpc_op op = {0};
  pthread_mutex_lock(&c->mu);
  c->reading = true;
  c->read_since_ns = gd_now_ns();
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_buf;
  start_batch(c, &op, 1, &c->t_read);
  pthread_mutex_unlock(&c->mu);
}

void gd_call_write(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint) {
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  pthread_mutex_lock(&c->mu);
  if (!c->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
    buffer_hint = false; /* a hint on the batch with metadata stalls the stream */
  }
  if (c->send_buf)
    grpc_byte_buffer_destroy(c->send_buf);
  c->send_buf = make_buffer(msg, len);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].flags = buffer_hint ? GRPC_WRITE_BUFFER_HINT : 0;
  ops[n++].data.send_message.send_message = c->send_buf;
  start_batch(c, ops, n, &c->t_write);
  pthread_mutex_unlock(&c->mu);
}

static void finish_now(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len);

void gd_call_finish(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len) {
  gd_server *s = c->srv;
  /* Methods open to anyone (health) are not recorded: probes would fill
   * the trail and wait on its commits. */
  if (s->opts.audit && !c->audit_started && !c->audited && !(c->m && c->m->role == GD_ROLE_NONE)) {
    /* Hold the finish until the audit record is durable (or not). */
    int status = gd_err_grpc_status(code);
    c->audit_started = true;
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

void gd_call_mark_audited(gd_call *c, bool yes) { c->audited = yes; }

const char *gd_call_peer(gd_call *c) {
  if (!c->peer)
    c->peer = grpc_call_get_peer(c->call);
  return c->peer ? c->peer : "";
}

const char *gd_call_case_id(gd_call *c) { return c->case_id; }

int64_t gd_call_start_ms(gd_call *c) { return c->start_ms; }

void gd_call_set_target(gd_call *c, const char *target) {
  free(c->target);
  c->target = target ? strdup(target) : NULL;
}

const char *gd_call_target(gd_call *c) { return c->target ? c->target : ""; }

const char *gd_call_path(gd_call *c) {
  if (c->m)
    return c->m->path;
  if (!c->gpath)
    c->gpath = grpc_slice_to_c_string(c->details.method);
  return c->gpath ? c->gpath : "";
}

static void finish_now(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len) {
  grpc_op ops[4];
  size_t n = 0;
  int status = gd_err_grpc_status(code);
  grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");

  memset(ops, 0, sizeof ops);
  pthread_mutex_lock(&c->mu);
  if (!c->owned) {
    gd_error("gd_call_finish called twice on %s", c->m ? c->m->path : "a generic call");
    abort();
  }
  c->owned = false;
  if (c->srv->opts.call_end) {
    int64_t now = gd_now_ns();
    /* The status the client sees: past the deadline or after the call
     * died, core reports that, not ours. */
    int seen = now > c->deadline_ns ? GRPC_STATUS_DEADLINE_EXCEEDED
               : c->dead            ? GRPC_STATUS_CANCELLED
                                    : status;
    c->srv->opts.call_end(c->srv->opts.call_ctx, c->m ? c->midx : c->srv->nmethods, seen,
                          now - c->start_ns);
  }
  if (!c->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
  }
  if (status == 0 && reply) {
    c->final_buf = make_buffer(reply, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->final_buf;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)status;
  ops[n++].data.send_status_from_server.status_details = msg ? &details : NULL;
  if (!c->close_started) {
    c->close_started = true;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
  }
  start_batch(c, ops, n, &c->t_final);
  grpc_slice_unref(details);
  call_unref_locked(c); /* the method's reference */
}

/* ---- event handling ----------------------------------------------------- */

static void start_close(gd_call *c) {
  grpc_op op = {0};
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->close_cancelled;
  c->close_started = true;
  start_batch(c, &op, 1, &c->t_close);
}

/* Who the caller is, and whether it may call m. Returns 0, or finishes the
 * call with UNAUTHENTICATED / PERMISSION_DENIED and returns -1. */
static int authorize(gd_call *c, const gd_method *m) {
  gd_auth *auth = c->srv->opts.auth;
  if (!auth) {
    c->role = GD_ROLE_ADMIN;
    snprintf(c->principal, sizeof c->principal, "local");
    return 0;
  }
  const char *tok = NULL;
  size_t tlen = 0;
  bool seen = false;
  for (size_t i = 0; i < c->md.count; i++) {
    const grpc_metadata *e = &c->md.metadata[i];
    if (GRPC_SLICE_LENGTH(e->key) != 13 ||
        memcmp(GRPC_SLICE_START_PTR(e->key), "authorization", 13) != 0)
      continue;
    seen = true;
    const char *v = (const char *)GRPC_SLICE_START_PTR(e->value);
    size_t n = GRPC_SLICE_LENGTH(e->value);
    if (n > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
      tok = v + 7;
      tlen = n - 7;
    }
    break;
  }
  if (tok && gd_auth_check(auth, tok, tlen, &c->role, c->principal) != GD_OK)
    tok = NULL;
  if (!seen && c->srv->opts.tls_client_ca_pem) {
    /* No bearer token: the verified client certificate's CN stands in. */
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    grpc_auth_property_iterator it =
        ctx ? grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME)
            : (grpc_auth_property_iterator){0};
    const grpc_auth_property *p = ctx ? grpc_auth_property_iterator_next(&it) : NULL;
    if (p && p->value_length > 0 &&
        gd_auth_check_cert(auth, p->value, p->value_length, &c->role, c->principal) == GD_OK) {
      tok = p->value;
      seen = true;
    }
    grpc_auth_context_release(ctx);
  }
  if (m->role == GD_ROLE_NONE)
    return 0;
  if (!tok) {
    gd_limit_hit(GD_LIMIT_UNAUTHENTICATED);
    gd_call_finish(c, GD_EUNAUTHENTICATED,
                   !seen ? "missing 'authorization: Bearer TOKEN' metadata"
                         : "unknown token, or not 'Bearer TOKEN'",
                   NULL, 0);
    return -1;
  }
  if (c->role < m->role) {
    char msg[400];
    gd_limit_hit(GD_LIMIT_PERMISSION);
    snprintf(msg, sizeof msg, "%s needs role %s; '%s' has role %s", m->path,
             gd_role_name(m->role), c->principal, gd_role_name(c->role));
    gd_call_finish(c, GD_EPERM, msg, NULL, 0);
    return -1;
  }
  return 0;
}

const char *gd_call_principal(gd_call *c, gd_role *ret_role) {
  if (ret_role)
    *ret_role = c->role;
  return c->principal;
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
 * limit. Returns 0 (counted; call_unref_locked uncounts), or finishes c
 * with RESOURCE_EXHAUSTED naming the limit and returns -1. The health
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

/* Queues a heavy unary call, with its request, for a query thread; runs it
 * here when out of memory. */
static void enqueue_heavy(gd_call *c) {
  qitem *q = calloc(1, sizeof *q);
  grpc_slice sl = c->payload ? read_all(c->payload) : grpc_empty_slice();
  bool has = c->payload != NULL;
  if (c->payload) {
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
  }
  if (!q) {
    c->m->on_request(c, has ? GRPC_SLICE_START_PTR(sl) : NULL, has ? GRPC_SLICE_LENGTH(sl) : 0,
                     has);
    grpc_slice_unref(sl);
    return;
  }
  q->c = c;
  q->msg = sl;
  q->has = has;
  enqueue(c->srv, q);
}

/*
 * Whether the handler thread that took a heavy call may run it itself:
 * only when nothing waits for the query threads (so no call is overtaken)
 * and another handler thread stays free for the cheap calls (never with
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
      q->c->m->on_request(q->c, q->has ? GRPC_SLICE_START_PTR(q->msg) : NULL,
                          q->has ? GRPC_SLICE_LENGTH(q->msg) : 0, q->has);
      grpc_slice_unref(q->msg);
    }
    free(q);
    pthread_mutex_lock(&s->qmu);
  }
  pthread_mutex_unlock(&s->qmu);
  return NULL;
}

static void on_new_call(gd_call *c, bool ok) {
  gd_server *s = c->srv;
  const gd_method *m = c->m;

  /* Re-post first, so the method never runs out of slots. */
  post_slot(s, m, c->midx);
  if (!ok) {
    call_free_slot(c);
    return;
  }
  activate(c);
  {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    for (size_t i = 0; i < c->md.count; i++) {
      const grpc_metadata *e = &c->md.metadata[i];
      if (GRPC_SLICE_LENGTH(e->key) == 9 && memcmp(GRPC_SLICE_START_PTR(e->key), "x-case-id", 9) == 0) {
        size_t n = GRPC_SLICE_LENGTH(e->value);
        if (n >= sizeof c->case_id)
          n = sizeof c->case_id - 1;
        memcpy(c->case_id, GRPC_SLICE_START_PTR(e->value), n);
        c->case_id[n] = 0;
        break;
      }
    }
  }

  if (!m) {
    char msg[300];
    char *path = grpc_slice_to_c_string(c->details.method);
    snprintf(msg, sizeof msg, "unknown method %s", path);
    gpr_free(path);
    gd_call_finish(c, GD_EUNIMPLEMENTED, msg, NULL, 0);
    return;
  }
  if (authorize(c, m) != 0)
    return;
  if (admit(c) != 0)
    return;
  if (s->opts.audit_ready && !s->opts.audit_ready(s->opts.audit_ctx)) {
    gd_limit_hit(GD_LIMIT_AUDIT);
    gd_call_finish(c, GD_EUNAVAILABLE,
                   "the audit trail cannot be written: calls are refused until it can", NULL, 0);
    return;
  }
  if (m->kind == GD_RPC_BIDI_STREAM      ? !m->on_read || !m->on_written
      : m->kind == GD_RPC_CLIENT_STREAM ? !m->on_read
                                        : !m->on_request) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s is not implemented in this version", m->path);
    gd_call_finish(c, GD_EUNIMPLEMENTED, msg, NULL, 0);
    return;
  }
  switch (m->kind) {
  case GD_RPC_CLIENT_STREAM:
  case GD_RPC_BIDI_STREAM:
    pthread_mutex_lock(&c->mu);
    start_close(c);
    pthread_mutex_unlock(&c->mu);
    gd_call_read_next(c);
    return;
  case GD_RPC_SERVER_STREAM:
  case GD_RPC_UNARY:
    /* Ask for the close now, so a client that cancels or goes away marks
     * the call dead while the method still works on it (gd_call_check). */
    pthread_mutex_lock(&c->mu);
    start_close(c);
    pthread_mutex_unlock(&c->mu);
    bool inl = false;
    if (m->kind == GD_RPC_UNARY && m->heavy && s->nqthreads && !(inl = heavy_inline_take(s))) {
      enqueue_heavy(c);
      return;
    }
    if (c->payload) {
      grpc_slice sl = read_all(c->payload);
      grpc_byte_buffer_destroy(c->payload);
      c->payload = NULL;
      m->on_request(c, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), true);
      grpc_slice_unref(sl);
    } else {
      m->on_request(c, NULL, 0, false);
    }
    if (inl)
      heavy_inline_done(s); /* c may be gone: s is not */
    return;
  }
}

static void on_read_done(gd_call *c, bool ok) {
  grpc_byte_buffer *bb;
  pthread_mutex_lock(&c->mu);
  bb = c->recv_buf;
  c->recv_buf = NULL;
  c->reading = false;
  pthread_mutex_unlock(&c->mu);
  if (!ok) {
    if (bb)
      grpc_byte_buffer_destroy(bb);
    c->m->on_read(c, GD_READ_FAILED, NULL, 0);
  } else if (!bb) {
    c->m->on_read(c, GD_READ_END, NULL, 0);
  } else {
    grpc_slice sl = read_all(bb);
    grpc_byte_buffer_destroy(bb);
    c->m->on_read(c, GD_READ_MESSAGE, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
  }
  call_unref(c);
}

static void on_close_done(gd_call *c) {
  bool notify = false;
  pthread_mutex_lock(&c->mu);
  if (c->close_cancelled) {
    c->dead = true;
    if (c->owned && !c->cancel_notified && c->m && c->m->on_cancel) {
      c->cancel_notified = true;
      notify = true;
      c->refs++; /* keep it alive across the callback */
    }
  }
  pthread_mutex_unlock(&c->mu);
  if (notify) {
    c->m->on_cancel(c);
    call_unref(c);
  }
  call_unref(c);
}

static void *handler_main(void *arg) {
  gd_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type != GRPC_OP_COMPLETE)
      continue;
    tag *t = ev.tag;
    gd_call *c = t->call;
    switch (t->kind) {
    case TAG_NEW:
      on_new_call(c, ev.success);
      break;
    case TAG_READ:
      on_read_done(c, ev.success);
      break;
    case TAG_WRITE:
      c->m->on_written(c, ev.success);
      call_unref(c);
      break;
    case TAG_CLOSE:
      on_close_done(c);
      break;
    case TAG_FINAL:
      call_unref(c);
      break;
    case TAG_SHUTDOWN:
      pthread_mutex_lock(&s->mu);
      s->shutdown_done = true;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      break;
    }
  }
  return NULL;
}

/* Cancels calls past the server's default or maximum deadline. Core
 * enforces the client's own deadline, so calls whose binding deadline is
 * the client's are left to it. */
static void *reaper_main(void *arg) {
  gd_server *s = arg;
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
          grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, msg, NULL);
          continue;
        }
      }
      if (c->reaped || !c->clamped || c->deadline_ns > now)
        continue;
      c->reaped = true;
      gd_limit_hit(GD_LIMIT_DEADLINE_EXPIRED);
      /* grpc_call_cancel_with_status is thread-safe; the call stays valid
       * while it is on the active list (we hold s->mu). */
      grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                   "deadline exceeded (server deadline clamp)", NULL);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

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
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->qmu, NULL);
  pthread_cond_init(&s->qcv, NULL);
  s->nqthreads = o->query_threads ? o->query_threads : s->nthreads;
  s->t_shutdown = (tag){TAG_SHUTDOWN, NULL};

  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = o->max_recv_bytes}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = o->max_send_bytes}},
      /* A stale server must not silently share our port. */
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = o->max_concurrent_streams}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS,
       {.integer = o->keepalive_time_ms ? o->keepalive_time_ms : 60000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
       {.integer = o->keepalive_timeout_ms ? o->keepalive_timeout_ms : 20000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       {.integer = o->min_ping_interval_ms ? o->min_ping_interval_ms : 10000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
  };
  grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
  s->server = grpc_server_create(&cargs, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);

  s->handles = calloc(nmethods ? nmethods : 1, sizeof *s->handles);
  s->threads = calloc(s->nthreads, sizeof *s->threads);
  s->qthreads = calloc(s->nqthreads, sizeof *s->qthreads);
  if (!s->handles || !s->threads || !s->qthreads) {
    gd_err_set(err, GD_ENOMEM, "server: out of memory");
    goto fail;
  }
  for (size_t i = 0; i < nmethods; i++) {
    grpc_server_register_method_payload_handling mode =
        methods[i].kind == GD_RPC_CLIENT_STREAM || methods[i].kind == GD_RPC_BIDI_STREAM
            ? GRPC_SRM_PAYLOAD_NONE
            : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;
    s->handles[i] = grpc_server_register_method(s->server, methods[i].path, NULL, mode, 0);
    if (!s->handles[i]) {
      gd_err_set(err, GD_EINVALID, "cannot register method %s", methods[i].path);
      goto fail;
    }
  }
  grpc_server_credentials *creds;
  if (o->tls_cert_pem && o->tls_key_pem) {
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem}; /* key first */
    creds = grpc_ssl_server_credentials_create_ex(
        o->tls_client_ca_pem, &pair, 1,
        o->tls_client_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
  } else {
    creds = grpc_insecure_server_credentials_create();
  }
  if (!creds) {
    gd_err_set(err, GD_EINVALID, "cannot create TLS credentials from the given PEM files");
    goto fail;
  }
  int port = grpc_server_add_http2_port(s->server, o->listen, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    gd_err_set(err, GD_EIO, "cannot listen on %s (address in use or not valid)", o->listen);
    goto fail;
  }
  grpc_server_start(s->server);

  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < nmethods; i++)
    for (int k = 0; k < SLOTS_PER_METHOD; k++)
      post_slot_locked(s, &methods[i], i);
  for (int k = 0; k < GENERIC_SLOTS; k++)
    post_slot_locked(s, NULL, 0);
  pthread_mutex_unlock(&s->mu);

  for (unsigned i = 0; i < s->nthreads; i++)
    pthread_create(&s->threads[i], NULL, handler_main, s);
  for (unsigned i = 0; i < s->nqthreads; i++)
    pthread_create(&s->qthreads[i], NULL, query_main, s);
  pthread_create(&s->reaper, NULL, reaper_main, s);
  *ret = s;
  *ret_port = port;
  return GD_OK;

fail:
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy(s->cq);
  free(s->handles);
  free(s->threads);
  free(s->qthreads);
  free(s);
  return err ? err->code : GD_EIO;
}

uint64_t gd_server_active_calls(gd_server *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->nactive;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static bool wait_until(gd_server *s, bool *flag, int64_t deadline_ns) {
  while (!*flag) {
    int64_t left = deadline_ns - gd_now_ns();
    if (left <= 0)
      return false;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t step = left < 100000000 ? left : 100000000;
    ts.tv_nsec += step;
    while (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  }
  return true;
}

void gd_server_shutdown(gd_server *s, int64_t grace_ms) {
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  s->shutting_down = true;
  pthread_mutex_unlock(&s->mu);

  grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
  /* Let calls in flight finish (writes still commit) for the grace period. */
  pthread_mutex_lock(&s->mu);
  int64_t deadline = gd_now_ns() + grace_ms * 1000000LL;
  while (s->nactive > 0 && gd_now_ns() < deadline) {
    bool never = false;
    wait_until(s, &never, gd_now_ns() + 50000000);
  }
  if (s->nactive > 0)
    gd_warn("shutdown: grace period over, cancelling %llu call(s)",
            (unsigned long long)s->nactive);
  /* Cancel what is left. With nothing left this still matters: core's
   * shutdown otherwise waits for idle client connections to go away. */
  pthread_mutex_unlock(&s->mu);
  grpc_server_cancel_all_calls(s->server);
  pthread_mutex_lock(&s->mu);
  wait_until(s, &s->shutdown_done, INT64_MAX);
  /* Every method finishes its calls (the writer is still running), so the
   * count reaches zero. */
  while (s->nactive > 0)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  /* Every queued heavy call has run (it counted as active). */
  pthread_mutex_lock(&s->qmu);
  s->qstop = true;
  pthread_cond_broadcast(&s->qcv);
  pthread_mutex_unlock(&s->qmu);
  for (unsigned i = 0; i < s->nqthreads; i++)
    pthread_join(s->qthreads[i], NULL);
  pthread_mutex_lock(&s->mu);
  s->reaper_stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->reaper, NULL);

  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  for (unsigned i = 0; i < s->nthreads; i++)
    pthread_join(s->threads[i], NULL);
  grpc_completion_queue_destroy(s->cq);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->qmu);
  pthread_cond_destroy(&s->qcv);
  gd_u64map_free(&s->percount);
  free(s->handles);
  free(s->threads);
  free(s->qthreads);
  free(s);
}
