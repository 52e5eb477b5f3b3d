/*
 * graphd.v1.SellerGraph handlers.
 *
 * Reads run on the handler thread inside one pooled read transaction and
 * answer before returning. Writes are queued to the group-commit writer as
 * gd_write_op structs and answered from the writer thread once durable.
 */
#include <pthread.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "health.pb-c.h"
#include "query/query.h"
#include "rpc/convert.h"
#include "core/limits.h"
#include "rpc/rpc_int.h"
#include "store/place.h"

void gd_rpc_set_serving(gd_rpc *r, int serving) { atomic_store(&r->serving, serving); }

/* ---- helpers ---------------------------------------------------------- */

static void sync_done(gd_write_op *op, const gd_err *err) {
  rpc_sync_op *o = (rpc_sync_op *)op;
  pthread_mutex_lock(&o->mu);
  o->err = *err;
  o->done = true;
  pthread_cond_signal(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

int rpc_write_sync(gd_rpc *R, rpc_sync_op *o, int (*apply)(gd_wtxn *t, gd_write_op *op, gd_err *err),
                   gd_err *err) {
  o->op = (gd_write_op){.apply = apply, .done = sync_done, .bulk = o->op.bulk};
  o->done = false;
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->cv, NULL);
  gd_writer_submit(R->writer, &o->op);
  pthread_mutex_lock(&o->mu);
  while (!o->done)
    pthread_cond_wait(&o->cv, &o->mu);
  pthread_mutex_unlock(&o->mu);
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
  if (o->err.code && err)
    *err = o->err;
  return o->err.code;
}

/* Ends a call with an error; logs server-side faults once, here. */
void rpc_fail(gd_call *c, const gd_err *err) {
  int code = err->code ? err->code : GD_EINTERNAL;
  if (code == GD_EINTERNAL || code == GD_EIO)
    gd_error("%s: %s", gd_call_method(c)->path, err->msg);
  gd_call_finish(c, code, err->msg[0] ? err->msg : gd_strerror(code), NULL, 0);
}

void rpc_fail_code(gd_call *c, int code, const char *msg) {
  gd_err e;
  gd_err_set(&e, code, "%s", msg);
  rpc_fail(c, &e);
}

/* Packs and sends a reply message. */
int rpc_pack_stream(const ProtobufCMessage *m, uint8_t **buf, size_t *cap, size_t *ret_n) {
  size_t n = protobuf_c_message_get_packed_size(m);
  if (n > *cap) {
    uint8_t *nb = realloc(*buf, n);
    if (!nb)
      return GD_ENOMEM;
    *buf = nb;
    *cap = n;
  }
  protobuf_c_message_pack(m, *buf);
  *ret_n = n;
  return GD_OK;
}

void rpc_reply(gd_call *c, const ProtobufCMessage *m) {
  gd_rpc *R = rpc_ctx(c);
  size_t n = protobuf_c_message_get_packed_size(m);
  if (n > R->lim.max_reply_bytes) {
    char msg[200];
    gd_limit_hit(GD_LIMIT_REPLY_BYTES);
    snprintf(msg, sizeof msg,
             "reply of %zu bytes is over the server's maximum message size of %zu bytes "
             "(--max-message-bytes): ask for fewer results (limit)",
             n, R->lim.max_reply_bytes);
    rpc_fail_code(c, GD_ERESOURCE, msg);
    return;
  }
  uint8_t stackbuf[4096], *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
  if (!buf) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory packing the reply");
    return;
  }
  protobuf_c_message_pack(m, buf);
  gd_call_finish(c, GD_OK, NULL, buf, n);
  if (buf != stackbuf)
    free(buf);
}

/*
 * Request decoding under a byte budget (lim.max_request_alloc): protobuf-c
 * allocates the decoded tree through this allocator; past the budget an
 * allocation fails, protobuf-c frees what it built and returns NULL. With
 * `arena` NULL the tree is malloc'ed, so protobuf_c_message_free_unpacked(m,
 * NULL) frees it; otherwise it lives in *arena and goes with it.
 */
typedef struct decode_budget {
  ProtobufCAllocator a;
  size_t cap, used; /* cap: lim.max_request_alloc */
  gd_arena **arena;
  bool over;
} decode_budget;

static void *budget_alloc(void *data, size_t n) {
  decode_budget *b = data;
  if (b->cap && n > b->cap - b->used) {
    b->over = true;
    return NULL;
  }
  b->used += n;
  return b->arena ? gd_arena_alloc(b->arena, n) : malloc(n);
}

static void budget_free(void *data, void *p) {
  decode_budget *b = data;
  if (!b->arena)
    free(p);
}

/* rpc_decode, also telling the bytes the decoded tree took. */
static ProtobufCMessage *decode_sized(gd_rpc *R, const ProtobufCMessageDescriptor *d,
                                      const uint8_t *msg, size_t len, gd_arena **arena,
                                      size_t *ret_bytes, gd_err *err) {
  decode_budget b = {.a = {budget_alloc, budget_free, NULL}, .cap = R->lim.max_request_alloc,
                     .arena = arena};
  b.a.allocator_data = &b;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, &b.a, len, msg);
  *ret_bytes = b.used;
  if (m)
    return m;
  rpc_decode_failed(d, len, b.cap, b.over, err);
  return NULL;
}

int rpc_decode_failed(const ProtobufCMessageDescriptor *d, size_t len, size_t cap, bool over,
                      gd_err *err) {
  if (!over)
    return gd_err_set(err, GD_EINVALID, "request is not a valid %s message", d->name);
  gd_limit_hit(GD_LIMIT_ALLOC_BUDGET);
  return gd_err_set(err, GD_ERESOURCE,
                    "%s of %zu bytes needs more than %zu bytes of memory to decode "
                    "(--max-request-alloc-bytes)",
                    d->name, len, cap);
}

ProtobufCMessage *rpc_decode(gd_rpc *R, const ProtobufCMessageDescriptor *d, const uint8_t *msg,
                             size_t len, gd_err *err) {
  size_t bytes;
  return decode_sized(R, d, msg, len, NULL, &bytes, err);
}

/*
 * Unpacks a request; on failure answers the call and returns NULL. protobuf-c
 * returns NULL for truncated or malformed wire data; a unary call with no
 * message at all is refused too, and so is one over the decode budget.
 */
ProtobufCMessage *rpc_unpack(gd_call *c, const ProtobufCMessageDescriptor *d,
                             const uint8_t *msg, size_t len, bool has_msg) {
  char m[200];
  if (!has_msg) {
    snprintf(m, sizeof m, "no request message: %s expected", d->name);
    rpc_fail_code(c, GD_EINVALID, m);
    return NULL;
  }
  gd_err err;
  gd_rpc *R = rpc_ctx(c);
  ProtobufCMessage *req = rpc_decode(R, d, msg, len, &err);
  if (!req) {
    rpc_fail_code(c, err.code, err.msg);
  } else if (R->audit) {
    rpc_audit_target(c, req);
  }
  return req;
}

#define STREAM_SETTLE_MS 20

int rpc_stream_settle(gd_call *c, gd_err *err) {
  for (int i = 0; i <= STREAM_SETTLE_MS; i++) {
    if (gd_call_check(c, err))
      return err->code;
    if (i < STREAM_SETTLE_MS) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return GD_OK;
}

/* ---- Health/Check --------------------------------------------------------- */

static void h_health_check(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Grpc__Health__V1__HealthCheckRequest *req = (Grpc__Health__V1__HealthCheckRequest *)rpc_unpack(
      c, &grpc__health__v1__health_check_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  if (req->service[0] && strcmp(req->service, "graphd.v1.SellerGraph") != 0) {
    char m[300];
    snprintf(m, sizeof m, "unknown service '%.200s'", req->service);
    rpc_fail_code(c, GD_ENOTFOUND, m);
  } else {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = atomic_load(&rpc_ctx(c)->serving)
                   ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    rpc_reply(c, &r.base);
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- the write budget ------------------------------------------------------ */

/*
 * One budget per context (rpc->wb), in decoded bytes, for every Upsert and
 * Ingest message in flight: decoded, queued to the writer or being applied
 * (lim.write_budget_bytes, --write-budget-bytes). A message is charged an
 * estimate before it is decoded (WB_EXPANSION x its wire size: an
 * UpsertRequest decodes to 11-13x), then what decoding really took; the
 * charge comes back when the writer is done with it. Over the budget an
 * Upsert is refused RESOURCE_EXHAUSTED naming the flag, and an Ingest
 * stream parks its message (the wire bytes, not decoded) and stops
 * reading: the client waits (HTTP/2 flow control) until the budget has
 * room, parked streams first, in arrival order. The budget thread resumes
 * them (decoding off the writer thread) and, after every 64 MiB given
 * back, hands freed memory back to the system (malloc_trim: glibc keeps
 * it in per-thread arenas otherwise, and a message decoded on one thread
 * is freed on the writer's; trims are counted, gd_rpc_budget_stats). A
 * message bigger than the whole budget is taken when nothing else is in
 * flight, so it never waits forever.
 */
#define WB_EXPANSION 16
#define WB_TRIM_AFTER ((size_t)64 << 20) /* bytes given back that make a trim worth it */

typedef struct ingest ingest;

static size_t wb_estimate(size_t len) { return len * WB_EXPANSION + 4096; }

static bool wb_fits_locked(gd_rpc *R, size_t n) {
  size_t cap = R->lim.write_budget_bytes, used = R->wb.used;
  return !cap || used == 0 || (used < cap && n <= cap - used);
}

static void wb_charge_locked(gd_rpc *R, size_t n) { R->wb.used += n; }

/* Takes n bytes unless parked streams wait (they go first) or it does not
 * fit. */
static bool wb_take(gd_rpc *R, size_t n) {
  pthread_mutex_lock(&R->wb.mu);
  bool ok = !R->wb.head && wb_fits_locked(R, n);
  if (ok)
    wb_charge_locked(R, n);
  pthread_mutex_unlock(&R->wb.mu);
  return ok;
}

/* Replaces a charge of `from` by `to` bytes (after decoding). */
static void wb_adjust(gd_rpc *R, size_t from, size_t to) {
  pthread_mutex_lock(&R->wb.mu);
  R->wb.used -= from;
  wb_charge_locked(R, to);
  if (to < from && R->wb.head)
    pthread_cond_signal(&R->wb.cv);
  pthread_mutex_unlock(&R->wb.mu);
}

static void wb_give(gd_rpc *R, size_t n) {
  if (!n)
    return;
  pthread_mutex_lock(&R->wb.mu);
  R->wb.used -= n;
  R->wb.freed += n;
  if (R->wb.head || R->wb.freed >= WB_TRIM_AFTER)
    pthread_cond_signal(&R->wb.cv);
  pthread_mutex_unlock(&R->wb.mu);
}

void gd_rpc_budget_stats(gd_rpc *R, gd_budget_stats *ret) {
  pthread_mutex_lock(&R->wb.mu);
  ret->in_use = R->wb.used;
  ret->trims = R->wb.trims;
  pthread_mutex_unlock(&R->wb.mu);
  ret->cap = R->lim.write_budget_bytes;
}

static size_t wb_in_use(gd_rpc *R) {
  pthread_mutex_lock(&R->wb.mu);
  size_t n = R->wb.used;
  pthread_mutex_unlock(&R->wb.mu);
  return n;
}

static void ingest_resume(ingest *s);

/* ---- writes: the op shared by Upsert, Ingest, SetLabels, DeleteEntity ---- */

typedef struct upsert_op {
  gd_write_op op;
  gd_rpc *rpc;
  gd_call *call;        /* Upsert: the call to answer */
  ingest *stream;       /* Ingest: the stream it belongs to */
  uint64_t index;       /* Ingest: message index */
  size_t bytes;         /* Ingest: packed size */
  size_t charged;       /* write budget bytes held (wb_give on free) */
  /* The decoded request, whose strings gd_upsert points to, and the
   * conversion's arrays: both in `arena`. An Ingest message decodes to tens
   * of thousands of small allocations, freed on the writer thread: one
   * arena makes that a few frees. */
  ProtobufCMessage *req;
  gd_arena *arena;
  gd_upsert u;
  gd_upsert_result res;
} upsert_op;

static void upsert_op_free(upsert_op *op) {
  gd_arena_free(op->arena);
  gd_rpc *R = op->rpc;
  size_t charged = op->charged;
  free(op);
  wb_give(R, charged);
}

/* Builds an op from a packed UpsertRequest; `charged` write budget bytes
 * were taken for it (the op holds them, adjusted to what decoding took, and
 * gives them back when freed, on failure too). On failure fills err. */
static upsert_op *upsert_op_new(gd_rpc *R, const uint8_t *msg, size_t len, size_t charged,
                                gd_err *err) {
  upsert_op *op = calloc(1, sizeof *op);
  if (!op) {
    wb_give(R, charged);
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  op->rpc = R;
  op->charged = charged;
  size_t decoded = 0;
  op->req = decode_sized(R, &graphd__v1__upsert_request__descriptor, msg, len, &op->arena,
                         &decoded, err);
  if (op->req && decoded + len != charged) {
    wb_adjust(R, charged, decoded + len);
    op->charged = decoded + len;
  }
  op->op.bytes = decoded + len; /* bounds the writer's group */
  if (!op->req) {
    upsert_op_free(op);
    return NULL;
  }
  if (gd_pb_upsert((Graphd__V1__UpsertRequest *)op->req, R->lim.max_batch_items, &op->arena,
                   &op->u, err)) {
    upsert_op_free(op);
    return NULL;
  }
  /* Keys sorted and indexed here, not on the writer thread (without
   * memory for it the writer does it itself). */
  void *ix = gd_arena_alloc(&op->arena, gd_upsert_index_size(&op->u));
  if (ix)
    gd_upsert_index(&op->u, ix);
  return op;
}

static void totals_to_pb(const gd_totals *t, Graphd__V1__WriteTotals *out) {
  graphd__v1__write_totals__init(out);
  out->entities_created = t->entities_created;
  out->entities_updated = t->entities_updated;
  out->links_created = t->links_created;
  out->links_updated = t->links_updated;
}

/* ---- Upsert ---------------------------------------------------------------- */

static int upsert_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  upsert_op *op = (upsert_op *)wop;
  int rc = gd_store_upsert(t, &op->u, &op->res, err);
  return rc ? rc : rpc_audit_txn(t, op->call, err); /* same commit as the write */
}

static void upsert_done(gd_write_op *wop, const gd_err *err) {
  upsert_op *op = (upsert_op *)wop;
  if (err->code) {
    gd_call_mark_audited(op->call, false);
    rpc_fail(op->call, err);
  } else {
    Graphd__V1__UpsertReply r = GRAPHD__V1__UPSERT_REPLY__INIT;
    Graphd__V1__WriteTotals t;
    if (op->res.totals.links_created)
      rpc_place_kick(op->rpc);
    totals_to_pb(&op->res.totals, &t);
    r.totals = &t;
    r.duplicate = op->res.duplicate;
    r.committed_at = op->res.committed_at;
    rpc_reply(op->call, &r.base);
  }
  upsert_op_free(op);
}

static void h_upsert(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  gd_rpc *R = rpc_ctx(c);
  gd_err err;
  if (!has_msg) {
    rpc_fail_code(c, GD_EINVALID, "no request message: graphd.v1.UpsertRequest expected");
    return;
  }
  size_t est = wb_estimate(len);
  if (!wb_take(R, est)) {
    char m[300];
    gd_limit_hit(GD_LIMIT_WRITE_BUDGET);
    snprintf(m, sizeof m,
             "the write budget is in use: %zu bytes of %zu in flight, this request needs about "
             "%zu (--write-budget-bytes); retry, or send it on an Ingest stream, which waits",
             wb_in_use(R), R->lim.write_budget_bytes, est);
    rpc_fail_code(c, GD_ERESOURCE, m);
    return;
  }
  upsert_op *op = upsert_op_new(R, msg, len, est, &err);
  if (!op) {
    rpc_fail(c, &err);
    return;
  }
  op->call = c;
  op->op.apply = upsert_apply;
  op->op.done = upsert_done;
  if (R->audit)
    rpc_audit_target(c, op->req);
  gd_writer_submit(R->writer, &op->op);
}

/* ---- Ingest (client stream) ------------------------------------------------ */

/*
 * Messages are validated on the handler thread and queued to the writer,
 * at most lim.ingest_inflight messages and lim.ingest_window_bytes bytes at
 * a time per stream (reading pauses when the window is full: backpressure
 * on the client). A wide window matters for small messages: everything in
 * flight can share one group commit (one fsync). The writer applies them in
 * order; once one fails, `fail_from` makes the writer skip every later one
 * (and only those), so "messages before the bad one are durable, none after
 * it" holds even with several in flight. The call is finished when nothing is in flight and the
 * client half-closed or something failed; the state is freed when, in
 * addition, no read is outstanding.
 */
struct ingest {
  gd_rpc *rpc;
  gd_call *call;
  pthread_mutex_t mu;
  uint64_t received; /* messages read */
  uint64_t committed, duplicates;
  gd_totals totals;
  unsigned inflight;
  size_t inflight_bytes;
  bool reading, paused, ended, finished;
  /* A message waiting for the write budget (wire bytes, owned), and the
   * stream's place in the budget's queue (rpc->wb.mu). */
  struct ingest_job *parked;
  size_t parked_est;
  bool waiting;  /* in the budget's queue */
  unsigned busy; /* a thread works on the stream without its lock */
  ingest *wnext;
  /* Index of the first failed message; later ones are skipped. */
  atomic_uint_fast64_t fail_from;
  gd_err err; /* the first error, without the index */
};

/* Records the first error; the status text is composed when the call is
 * finished, once the messages before it have all committed. */
static void ingest_set_error(ingest *s, const gd_err *e, uint64_t index) {
  if (s->err.code && index >= atomic_load(&s->fail_from))
    return;
  s->err = *e;
  atomic_store(&s->fail_from, index);
}

static bool window_open(const ingest *s) {
  const gd_rpc_limits *lim = &s->rpc->lim;
  return s->inflight < lim->ingest_inflight && s->inflight_bytes < lim->ingest_window_bytes;
}

/* Called with s->mu held; releases it. Finishes and/or frees as due. */
static void ingest_step_locked(ingest *s) {
  bool finish_now = !s->finished && s->inflight == 0 && (s->ended || s->err.code);
  if (finish_now)
    s->finished = true;
  bool free_now =
      s->finished && s->inflight == 0 && !s->reading && !s->parked && s->busy == 0;
  gd_err e = s->err;
  if (finish_now && e.code)
    snprintf(e.msg, sizeof e.msg, "message %llu: %.180s (%llu earlier message(s) committed)",
             (unsigned long long)atomic_load(&s->fail_from), s->err.msg,
             (unsigned long long)s->committed);
  Graphd__V1__IngestReply r = GRAPHD__V1__INGEST_REPLY__INIT;
  Graphd__V1__WriteTotals t;
  if (finish_now && !e.code) {
    totals_to_pb(&s->totals, &t);
    r.messages = s->committed;
    r.duplicates = s->duplicates;
    r.totals = &t;
  }
  bool read_more = !s->finished && s->paused && window_open(s);
  if (read_more) {
    s->paused = false;
    s->reading = true;
  }
  pthread_mutex_unlock(&s->mu);

  if (finish_now) {
    if (e.code)
      rpc_fail(s->call, &e);
    else
      rpc_reply(s->call, &r.base);
  }
  if (read_more)
    gd_call_read_next(s->call);
  if (free_now) {
    pthread_mutex_destroy(&s->mu);
    free(s);
  }
}

static int ingest_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  upsert_op *op = (upsert_op *)wop;
  if (op->index > atomic_load(&op->stream->fail_from))
    return gd_err_set(err, GD_ECANCELLED, "skipped after an earlier message failed");
  int rc = gd_store_upsert(t, &op->u, &op->res, err);
  if (!rc && op->rpc->audit) { /* each message's record in its own commit */
    char tgt[96];
    snprintf(tgt, sizeof tgt, "message %llu: %zu entities, %zu links",
             (unsigned long long)op->index, op->u.nentities, op->u.nlinks);
    rc = rpc_audit_txn_status(t, op->stream->call, 0, tgt, err);
  }
  /* Stop later messages of this stream in the same group, too. (A full map
   * or transaction is not a failure of the message: the group is retried,
   * or cut before it. Too large on its own, it fails alone and ends its
   * group; ingest_done then stops the later ones.) */
  if (rc && rc != GD_EMAPFULL && rc != GD_ETXNFULL &&
      op->index < atomic_load(&op->stream->fail_from))
    atomic_store(&op->stream->fail_from, op->index);
  return rc;
}

static void ingest_done(gd_write_op *wop, const gd_err *err) {
  upsert_op *op = (upsert_op *)wop;
  ingest *s = op->stream;
  pthread_mutex_lock(&s->mu);
  s->inflight--;
  s->inflight_bytes -= op->bytes;
  if (err->code) {
    ingest_set_error(s, err, op->index);
  } else {
    if (op->res.totals.links_created)
      rpc_place_kick(op->rpc);
    s->committed++;
    s->duplicates += op->res.duplicate;
    s->totals.entities_created += op->res.totals.entities_created;
    s->totals.entities_updated += op->res.totals.entities_updated;
    s->totals.links_created += op->res.totals.links_created;
    s->totals.links_updated += op->res.totals.links_updated;
  }
  upsert_op_free(op);
  ingest_step_locked(s);
}

static void ingest_submit(ingest *s, const uint8_t *msg, size_t len, uint64_t index,
                          size_t est);

/* A message read from a stream, with its bytes. */
typedef struct ingest_job {
  ingest *s;
  uint64_t index;
  size_t len;
  uint8_t bytes[];
} ingest_job;

static void ingest_job_run(void *arg);

static void h_ingest_read(gd_call *c, gd_read_result rr, const uint8_t *msg, size_t len) {
  ingest *s = gd_call_user(c);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) {
      /* Nothing read yet: answer now (a pending read may still come back,
       * and finds no state: handled below). */
      if (rr == GD_READ_MESSAGE)
        rpc_fail_code(c, GD_ENOMEM, "out of memory");
      else
        gd_call_finish(c, GD_ENOMEM, "out of memory", NULL, 0);
      return;
    }
    s->rpc = rpc_ctx(c);
    s->call = c;
    atomic_init(&s->fail_from, UINT64_MAX);
    pthread_mutex_init(&s->mu, NULL);
    gd_call_set_user(c, s);
  }
  pthread_mutex_lock(&s->mu);
  s->reading = false;
  if (rr == GD_READ_END || rr == GD_READ_FAILED) {
    s->ended = true;
    if (rr == GD_READ_FAILED && !s->err.code) {
      gd_err e;
      gd_err_set(&e, GD_ECANCELLED, "stream broken by the client");
      ingest_set_error(s, &e, s->received);
    }
    ingest_step_locked(s);
    return;
  }
  uint64_t index = s->received++;
  if (s->finished || s->err.code) {
    ingest_step_locked(s); /* a read that was outstanding when we failed */
    return;
  }
  /* Decoding a large message takes long: a query thread does it, so the
   * handler threads stay free. The next read starts once it is queued to
   * the writer, so messages stay in order. */
  ingest_job *j = malloc(sizeof *j + (len ? len : 1));
  if (!j) {
    gd_err e;
    gd_err_set(&e, GD_ENOMEM, "out of memory");
    ingest_set_error(s, &e, index);
    ingest_step_locked(s);
    return;
  }
  j->s = s;
  j->index = index;
  j->len = len;
  memcpy(j->bytes, msg, len);
  s->busy++;
  pthread_mutex_unlock(&s->mu);
  gd_call_defer(c, ingest_job_run, j);
}

/* A message, on a query thread: takes its share of the write budget and
 * submits it, or parks it until the budget has room. */
static void ingest_job_run(void *arg) {
  ingest_job *j = arg;
  ingest *s = j->s;
  gd_rpc *R = s->rpc;
  pthread_mutex_lock(&s->mu);
  s->busy--;
  if (s->finished || s->err.code) {
    ingest_step_locked(s);
    free(j);
    return;
  }
  size_t est = wb_estimate(j->len);
  if (!wb_take(R, est)) {
    /* Park: read no more until the budget thread resumes this stream. */
    s->parked = j;
    s->parked_est = est;
    gd_limit_hit(GD_LIMIT_WRITE_BUDGET);
    pthread_mutex_lock(&R->wb.mu);
    s->waiting = true;
    s->wnext = NULL;
    if (R->wb.tail)
      R->wb.tail->wnext = s;
    else
      R->wb.head = s;
    R->wb.tail = s;
    pthread_cond_signal(&R->wb.cv);
    pthread_mutex_unlock(&R->wb.mu);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->busy++;
  pthread_mutex_unlock(&s->mu);
  ingest_submit(s, j->bytes, j->len, j->index, est);
  free(j);
}

/* Decodes message `index` (est budget bytes taken for it) and queues it to
 * the writer; reads the next one while the stream's window is open. The
 * caller raised s->busy (this drops it): s is not touched afterwards. */
static void ingest_submit(ingest *s, const uint8_t *msg, size_t len, uint64_t index,
                          size_t est) {
  gd_call *c = s->call;
  gd_rpc *R = s->rpc;
  gd_err err;
  upsert_op *op = upsert_op_new(R, msg, len, est, &err);
  pthread_mutex_lock(&s->mu);
  s->busy--;
  if (!op) {
    ingest_set_error(s, &err, index);
    ingest_step_locked(s);
    return;
  }
  op->stream = s;
  op->index = index;
  op->bytes = len;
  s->inflight_bytes += len;
  op->op.apply = ingest_apply;
  op->op.done = ingest_done;
  op->op.bulk = true; /* a stream of many: ops someone waits on go first */
  s->inflight++;
  if (window_open(s))
    s->reading = true;
  else
    s->paused = true;
  bool read_more = s->reading;
  pthread_mutex_unlock(&s->mu);
  gd_writer_submit(R->writer, &op->op);
  if (read_more)
    gd_call_read_next(c);
}

/* The budget thread took the parked message's estimate: submit it (or drop
 * it when the stream has failed meanwhile). */
static void ingest_resume(ingest *s) {
  pthread_mutex_lock(&s->mu);
  ingest_job *j = s->parked;
  size_t est = s->parked_est;
  s->parked = NULL;
  if (s->finished || s->err.code) {
    free(j);
    wb_give(s->rpc, est);
    ingest_step_locked(s);
    return;
  }
  s->busy++;
  pthread_mutex_unlock(&s->mu);
  ingest_submit(s, j->bytes, j->len, j->index, est);
  free(j);
}

/* The call died: a stream parked for the write budget has no read or write
 * outstanding to tell it, so end it here. The state is looked up in the
 * budget's queue, never through the call: a stream that is not parked may
 * be finished and freed by another thread meanwhile (a parked one cannot:
 * ingest_step_locked keeps a state with a parked message). */
static void h_ingest_cancel(gd_call *c) {
  gd_rpc *R = rpc_ctx(c);
  ingest *s = NULL;
  pthread_mutex_lock(&R->wb.mu);
  for (ingest **pp = &R->wb.head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->wnext) {
    if ((*pp)->call != c)
      continue;
    s = *pp;
    *pp = s->wnext;
    if (R->wb.tail == s)
      R->wb.tail = prev;
    s->waiting = false;
    break;
  }
  pthread_mutex_unlock(&R->wb.mu);
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  uint64_t index = s->parked->index;
  free(s->parked);
  s->parked = NULL;
  s->ended = true;
  gd_err e;
  gd_err_set(&e, GD_ECANCELLED, "stream broken by the client");
  ingest_set_error(s, &e, index);
  ingest_step_locked(s);
}

/* The budget thread (one per context, gd_rpc_new to gd_rpc_free): resumes
 * parked streams, trims after large peaks. */
static void *wb_main(void *arg) {
  gd_rpc *R = arg;
  pthread_setname_np(pthread_self(), "gd-budget"); /* top -H, perf --sort comm */
  pthread_mutex_lock(&R->wb.mu);
  while (!R->wb.stop) {
    if (R->wb.head && wb_fits_locked(R, R->wb.head->parked_est)) {
      ingest *s = R->wb.head;
      R->wb.head = s->wnext;
      if (!R->wb.head)
        R->wb.tail = NULL;
      s->waiting = false;
      wb_charge_locked(R, s->parked_est);
      pthread_mutex_unlock(&R->wb.mu);
      ingest_resume(s);
      pthread_mutex_lock(&R->wb.mu);
      continue;
    }
    if (R->wb.freed >= WB_TRIM_AFTER) {
      R->wb.freed = 0;
      R->wb.trims++;
      pthread_mutex_unlock(&R->wb.mu);
      malloc_trim(0); /* the decoded messages' memory, back to the system */
      pthread_mutex_lock(&R->wb.mu);
      continue;
    }
    pthread_cond_wait(&R->wb.cv, &R->wb.mu);
  }
  pthread_mutex_unlock(&R->wb.mu);
  return NULL;
}

/* ---- GetEntity ---------------------------------------------------------------- */

static void h_get_entity(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__GetEntityRequest *req = (Graphd__V1__GetEntityRequest *)rpc_unpack(
      c, &graphd__v1__get_entity_request__descriptor, msg, len, has_msg);
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  gd_ref ref;
  gd_entity_view v;
  gd_err err;
  if (!req)
    return;
  if (gd_pb_ref(req->ref, &a, &ref, &err, "ref") ||
      gd_store_read_begin(rpc_ctx(c)->store, &r, &err) || gd_store_get(r, &ref, &v, &err)) {
    rpc_fail(c, &err);
  } else {
    Graphd__V1__GetEntityReply rep = GRAPHD__V1__GET_ENTITY_REPLY__INIT;
    Graphd__V1__Entity e;
    gd_evidence_info ev = {0};
    gd_query_params qp;
    rpc_query_params(c, &qp);
    if (gd_pb_entity(&v, true, &a, &e)) {
      rpc_fail_code(c, GD_ENOMEM, "out of memory");
    } else if (v.type != GD_TYPE_SELLER && gd_query_evidence(r, v.id, &qp, &ev, &err)) {
      rpc_fail(c, &err);
    } else {
      e.evidence_weight = ev.weight;
      e.corroboration = ev.corroboration;
      e.evidence_context = ev.context;
      uint64_t latest = 0;
      Graphd__V1__Placement pl;
      rpc_entity_cluster(r, &latest, &e);
      rpc_entity_placement(r, &e, &pl);
      rep.entity = &e;
      rpc_reply(c, &rep.base);
    }
  }
  gd_store_read_end(r);
  gd_arena_free(a);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- GetEntities: ids to entities, streamed ----------------------------------- */

#define LOOKUP_BATCH 1024
#define LOOKUP_MAX_IDS 1000000

typedef struct lstream {
  gd_rpc *rpc;
  uint64_t *ids;
  size_t n, pos;
  bool attrs;
  uint8_t *buf;
  size_t cap;
} lstream;

static void ls_free(lstream *s) {
  if (s) {
    free(s->ids);
    free(s->buf);
    free(s);
  }
}

/* Reads and sends the next batch of ids, or finishes the call. */
static void ls_next(gd_call *c, lstream *s) {
  if (s->pos == s->n || gd_call_expired(c)) {
    bool expired = s->pos < s->n;
    gd_call_set_user(c, NULL);
    ls_free(s);
    gd_call_finish(c, expired ? GD_EDEADLINE : GD_OK, expired ? "call expired" : NULL, NULL, 0);
    return;
  }
  size_t k = s->n - s->pos < LOOKUP_BATCH ? s->n - s->pos : LOOKUP_BATCH;
  Graphd__V1__Entity ents[LOOKUP_BATCH], *ep[LOOKUP_BATCH];
  uint64_t missing[LOOKUP_BATCH];
  Graphd__V1__EntityBatch m = GRAPHD__V1__ENTITY_BATCH__INIT;
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  gd_err err = {0};
  uint64_t latest = 0; /* rpc_entity_cluster's cache, for this transaction */
  int rc = gd_store_read_begin(s->rpc->store, &r, &err);
  for (size_t i = 0; i < k && !rc; i++) {
    gd_ref ref = {.id = s->ids[s->pos + i]};
    gd_entity_view v;
    rc = ref.id ? gd_store_get(r, &ref, &v, &err) : GD_ENOTFOUND;
    if (rc == GD_ENOTFOUND) {
      missing[m.n_not_found++] = ref.id;
      rc = GD_OK;
      continue;
    }
    if (rc)
      break;
    if (gd_pb_entity(&v, s->attrs, &a, &ents[m.n_entities])) {
      rc = gd_err_set(&err, GD_ENOMEM, "out of memory");
      break;
    }
    rpc_entity_cluster(r, &latest, &ents[m.n_entities]);
    ep[m.n_entities] = &ents[m.n_entities];
    m.n_entities++;
  }
  size_t n = 0;
  if (!rc) {
    m.entities = ep;
    m.not_found = missing;
    /* Strings point into r: pack before it ends. */
    if (rpc_pack_stream(&m.base, &s->buf, &s->cap, &n))
      rc = gd_err_set(&err, GD_ENOMEM, "out of memory");
  }
  gd_store_read_end(r);
  gd_arena_free(a);
  if (rc) {
    gd_call_set_user(c, NULL);
    ls_free(s);
    rpc_fail(c, &err);
    return;
  }
  s->pos += k;
  gd_call_write(c, s->buf, n, s->pos < s->n);
}

static void h_entities_written(gd_call *c, bool ok) {
  lstream *s = gd_call_user(c);
  if (!ok) {
    gd_call_set_user(c, NULL);
    ls_free(s);
    gd_call_finish(c, GD_ECANCELLED, "call cancelled", NULL, 0);
    return;
  }
  ls_next(c, s);
}

static void h_get_entities(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__GetEntitiesRequest *req = (Graphd__V1__GetEntitiesRequest *)rpc_unpack(
      c, &graphd__v1__get_entities_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  lstream *s = NULL;
  if (req->n_ids > LOOKUP_MAX_IDS) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    rpc_fail_code(c, GD_EINVALID, "ids: at most 1000000 a call");
  } else if (!(s = calloc(1, sizeof *s)) ||
             !(s->ids = malloc((req->n_ids ? req->n_ids : 1) * sizeof *s->ids))) {
    ls_free(s);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
  } else {
    if (req->n_ids)
      memcpy(s->ids, req->ids, req->n_ids * sizeof *s->ids);
    s->rpc = rpc_ctx(c);
    s->n = req->n_ids;
    s->attrs = req->attributes;
    gd_call_set_user(c, s);
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  if (s)
    ls_next(c, s);
}

/* ---- Neighbors ---------------------------------------------------------------- */

/* Page tokens: "n" + 16 hex digits of the last row's position. */
static int parse_page_token(const char *tok, gd_adj_pos *ret, gd_err *err) {
  *ret = 0;
  if (!tok[0])
    return GD_OK;
  if (strlen(tok) != 17 || tok[0] != 'n')
    return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
  uint64_t v = 0;
  for (int i = 1; i < 17; i++) {
    char ch = tok[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0)
      return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
    v = (v << 4) | (uint64_t)d;
  }
  if (!GD_TYPE_VALID((int)(v >> 56)))
    return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
  *ret = v;
  return GD_OK;
}

static void h_neighbors(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__NeighborsRequest *req = (Graphd__V1__NeighborsRequest *)rpc_unpack(
      c, &graphd__v1__neighbors_request__descriptor, msg, len, has_msg);
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  gd_link *links = NULL;
  gd_ref ref;
  gd_adj_query q = {0};
  gd_err err;
  uint64_t id;
  size_t n = 0;
  bool more;
  char tok[20];
  if (!req)
    return;
  gd_rpc *R = rpc_ctx(c);
  gd_err_clear(&err);
  if (gd_pb_ref(req->ref, &a, &ref, &err, "ref") ||
      gd_pb_window(req->window, &q.since, &q.until, &err, "window") ||
      parse_page_token(req->page_token, &q.after, &err))
    goto fail;
  for (size_t i = 0; i < req->n_types; i++) {
    if (!GD_TYPE_VALID((int)req->types[i])) {
      gd_err_set(&err, GD_EINVALID, "types[%zu]: unknown entity type %d", i, (int)req->types[i]);
      goto fail;
    }
    q.type_mask |= 1u << req->types[i];
  }
  q.limit = req->limit ? req->limit : 100;
  if (q.limit > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "limit: %u is over the server's result cap of %zu (--result-cap)",
               req->limit, R->lim.result_cap);
    goto fail;
  }
  if (!(links = malloc(q.limit * sizeof *links))) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  if (gd_store_read_begin(R->store, &r, &err) || gd_store_lookup(r, &ref, &id, &err) ||
      gd_store_links(r, id, &q, links, &n, &more, &err))
    goto fail;

  Graphd__V1__NeighborsReply rep = GRAPHD__V1__NEIGHBORS_REPLY__INIT;
  Graphd__V1__Neighbor *nb = gd_arena_alloc(&a, (n + 1) * sizeof *nb);
  Graphd__V1__Entity *ents = gd_arena_alloc(&a, (n + 1) * sizeof *ents);
  Graphd__V1__Link *lk = gd_arena_alloc(&a, (n + 1) * sizeof *lk);
  rep.neighbors = gd_arena_alloc(&a, (n + 1) * sizeof *rep.neighbors);
  if (!nb || !ents || !lk || !rep.neighbors) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    gd_ref nref = {links[i].nbr, 0, GD_STR_NULL};
    gd_entity_view v;
    if (gd_store_get(r, &nref, &v, &err)) {
      /* An adjacency row without its entity is corruption, not "not found". */
      gd_err_set(&err, GD_EINTERNAL, "entity %llu: neighbour %llu has no record",
                 (unsigned long long)id, (unsigned long long)links[i].nbr);
      goto fail;
    }
    if (gd_pb_entity(&v, false, &a, &ents[i])) {
      gd_err_set(&err, GD_ENOMEM, "out of memory");
      goto fail;
    }
    graphd__v1__neighbor__init(&nb[i]);
    graphd__v1__link__init(&lk[i]);
    lk[i].first_seen = links[i].first_seen;
    lk[i].last_seen = links[i].last_seen;
    lk[i].count = links[i].count;
    nb[i].entity = &ents[i];
    nb[i].link = &lk[i];
    rep.neighbors[i] = &nb[i];
  }
  rep.n_neighbors = n;
  rep.next_page_token = (char *)"";
  if (more && n) {
    snprintf(tok, sizeof tok, "n%016llx",
             (unsigned long long)GD_ADJ_POS(links[n - 1].nbr_type, links[n - 1].nbr));
    rep.next_page_token = tok;
  }
  rpc_reply(c, &rep.base);
  goto out;
fail:
  rpc_fail(c, &err);
out:
  gd_store_read_end(r);
  free(links);
  gd_arena_free(a);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- SetLabels ---------------------------------------------------------------- */

typedef struct labels_op {
  gd_write_op op;
  gd_call *call;
  Graphd__V1__SetLabelsRequest *req;
  gd_arena *arena;
  gd_ref ref;
  gd_str *add, *remove;
  char **labels;
  size_t nlabels;
} labels_op;

static int labels_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  labels_op *op = (labels_op *)wop;
  free(op->labels);
  op->labels = NULL;
  int rc = gd_store_set_labels(t, &op->ref, op->add, op->req->n_add, op->remove,
                               op->req->n_remove, &op->labels, &op->nlabels, err);
  return rc ? rc : rpc_audit_txn(t, op->call, err);
}

static void labels_done(gd_write_op *wop, const gd_err *err) {
  labels_op *op = (labels_op *)wop;
  if (err->code) {
    gd_call_mark_audited(op->call, false);
    rpc_fail(op->call, err);
  } else {
    Graphd__V1__SetLabelsReply r = GRAPHD__V1__SET_LABELS_REPLY__INIT;
    r.labels = op->labels;
    r.n_labels = op->nlabels;
    rpc_reply(op->call, &r.base);
  }
  free(op->labels);
  gd_arena_free(op->arena);
  protobuf_c_message_free_unpacked(&op->req->base, NULL);
  free(op);
}

static void h_set_labels(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__SetLabelsRequest *req = (Graphd__V1__SetLabelsRequest *)rpc_unpack(
      c, &graphd__v1__set_labels_request__descriptor, msg, len, has_msg);
  labels_op *op;
  gd_err err;
  char f[48];
  if (!req)
    return;
  if (!(op = calloc(1, sizeof *op))) {
    protobuf_c_message_free_unpacked(&req->base, NULL);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  op->req = req;
  op->call = c;
  if (gd_pb_ref(req->ref, &op->arena, &op->ref, &err, "ref"))
    goto fail;
  if (req->n_add > GD_LABELS_MAX || req->n_remove > GD_LABELS_MAX) {
    gd_err_set(&err, GD_EINVALID, "%s: over the limit of %d labels",
               req->n_add > GD_LABELS_MAX ? "add" : "remove", GD_LABELS_MAX);
    goto fail;
  }
  op->add = gd_arena_alloc(&op->arena, (req->n_add + 1) * sizeof *op->add);
  op->remove = gd_arena_alloc(&op->arena, (req->n_remove + 1) * sizeof *op->remove);
  if (!op->add || !op->remove) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < req->n_add; i++) {
    snprintf(f, sizeof f, "add[%zu]", i);
    if (gd_pb_check_label(req->add[i], &err, f))
      goto fail;
    op->add[i] = gd_str_c(req->add[i]);
  }
  for (size_t i = 0; i < req->n_remove; i++) {
    snprintf(f, sizeof f, "remove[%zu]", i);
    if (gd_pb_check_label(req->remove[i], &err, f))
      goto fail;
    op->remove[i] = gd_str_c(req->remove[i]);
  }
  op->op.apply = labels_apply;
  op->op.done = labels_done;
  gd_writer_submit(rpc_ctx(c)->writer, &op->op);
  return;
fail:
  labels_done(&op->op, &err);
}

/* ---- DeleteEntity -------------------------------------------------------------- */

typedef struct delete_op {
  gd_write_op op;
  gd_rpc *rpc;
  gd_call *call;
  gd_arena *arena;
  gd_ref ref;
  uint64_t removed;
} delete_op;

static int delete_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  delete_op *op = (delete_op *)wop;
  int rc = gd_store_delete(t, &op->ref, &op->removed, err);
  return rc ? rc : rpc_audit_txn(t, op->call, err);
}

static void delete_done(gd_write_op *wop, const gd_err *err) {
  delete_op *op = (delete_op *)wop;
  if (err->code) {
    gd_call_mark_audited(op->call, false);
    rpc_fail(op->call, err);
  } else {
    Graphd__V1__DeleteEntityReply r = GRAPHD__V1__DELETE_ENTITY_REPLY__INIT;
    rpc_place_kick(op->rpc);
    r.links_removed = op->removed;
    rpc_reply(op->call, &r.base);
  }
  gd_arena_free(op->arena);
  free(op);
}

static void h_delete_entity(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__DeleteEntityRequest *req = (Graphd__V1__DeleteEntityRequest *)rpc_unpack(
      c, &graphd__v1__delete_entity_request__descriptor, msg, len, has_msg);
  delete_op *op;
  gd_err err;
  if (!req)
    return;
  if (!(op = calloc(1, sizeof *op))) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
  } else {
    op->call = c;
    op->rpc = rpc_ctx(c);
    op->op.apply = delete_apply;
    op->op.done = delete_done;
    /* The ref's key is copied into the arena by normalisation. */
    if (gd_pb_ref(req->ref, &op->arena, &op->ref, &err, "ref"))
      delete_done(&op->op, &err);
    else
      gd_writer_submit(rpc_ctx(c)->writer, &op->op);
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- WhoAmI ------------------------------------------------------------------- */

static void h_whoami(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  ProtobufCMessage *req = rpc_unpack(c, &graphd__v1__who_am_irequest__descriptor, msg, len,
                                     has_msg);
  if (!req)
    return;
  protobuf_c_message_free_unpacked(req, NULL);
  gd_role role;
  const char *who = gd_call_principal(c, &role);
  Graphd__V1__WhoAmIReply rep = GRAPHD__V1__WHO_AM_IREPLY__INIT;
  rep.principal = (char *)who;
  rep.role = (char *)gd_role_name(role);
  rep.brand = (char *)gd_call_brand(c);
  rpc_reply(c, &rep.base);
}

/* ---- Stats -------------------------------------------------------------------- */

static void h_stats(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  ProtobufCMessage *req = rpc_unpack(c, &graphd__v1__stats_request__descriptor, msg, len, has_msg);
  gd_rtxn *r = NULL;
  gd_stats st;
  gd_err err;
  if (!req)
    return;
  gd_rpc *R = rpc_ctx(c);
  if (gd_store_read_begin(R->store, &r, &err) || gd_store_stats(r, &st, &err)) {
    rpc_fail(c, &err);
  } else {
    Graphd__V1__StatsReply rep = GRAPHD__V1__STATS_REPLY__INIT;
    Graphd__V1__TypeCount tc[GD_TYPE_MAX];
    Graphd__V1__TypeCount *tcp[GD_TYPE_MAX];
    gd_writer_stats ws;
    for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX; t++) {
      graphd__v1__type_count__init(&tc[t - 1]);
      tc[t - 1].type = (Graphd__V1__EntityType)t;
      tc[t - 1].count = st.entities[t];
      tcp[t - 1] = &tc[t - 1];
    }
    gd_writer_stats_get(R->writer, &ws);
    rep.entities = tcp;
    rep.n_entities = GD_TYPE_MAX;
    rep.entities_total = st.entities_total;
    rep.links = st.links;
    rep.labels = st.labels;
    rep.lmdb_size_bytes = st.file_bytes;
    rep.map_size_bytes = st.map_bytes;
    rep.schema_version = st.schema_version;
    rep.commits = ws.commits;
    rep.committed_requests = ws.requests;
    rep.readers_used = st.readers_used;
    rep.readers_max = st.readers_max;
    rep.readers_active = st.readers_active;
    gd_place_stats ps;
    gd_rpc_place_stats(R, &ps);
    gd_store_dirty_count(r, &rep.placement_queued, NULL);
    rep.placements = ps.placed;
    rep.placement_shed = gd_store_place_shed(R->store);
    rep.alerts = ps.alerts;
    Graphd__V1__LimitCount lc[GD_LIMIT__COUNT], *lp[GD_LIMIT__COUNT];
    for (int i = 0; i < GD_LIMIT__COUNT; i++) {
      graphd__v1__limit_count__init(&lc[i]);
      lc[i].limit = (char *)gd_limit_key((gd_limit)i);
      lc[i].count = gd_limit_count((gd_limit)i);
      lp[i] = &lc[i];
    }
    rep.refused = lp;
    rep.n_refused = GD_LIMIT__COUNT;
    rpc_reply(c, &rep.base);
  }
  gd_store_read_end(r);
  protobuf_c_message_free_unpacked(req, NULL);
}

/* ---- Backup ---------------------------------------------------------------- */

/* One backup at a time (rpc->backup_running), each on its own thread: a
 * copy of a large environment takes a while and must not hold a handler
 * thread. */
typedef struct backup_job {
  gd_rpc *rpc;
  gd_call *call;
  char *path;
} backup_job;

static void *backup_main(void *arg) {
  backup_job *b = arg;
  pthread_setname_np(pthread_self(), "gd-backup"); /* top -H, perf --sort comm */
  gd_err err = {0};
  uint64_t bytes = 0;
  int64_t t0 = gd_now_ns();
  int rc = gd_store_backup(b->rpc->store, b->path, &bytes, &err);
  /* Done before the call is answered: once it is, the server may shut
   * down and the context go. */
  atomic_store(&b->rpc->backup_running, false);
  if (rc) {
    rpc_fail(b->call, &err);
  } else {
    gd_info("backup to %s: %llu bytes in %.1f s", b->path, (unsigned long long)bytes,
            (double)(gd_now_ns() - t0) / 1e9);
    Graphd__V1__BackupReply rep = GRAPHD__V1__BACKUP_REPLY__INIT;
    rep.bytes = bytes;
    rpc_reply(b->call, &rep.base);
  }
  free(b->path);
  free(b);
  return NULL;
}

static void h_backup(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__BackupRequest *req = (Graphd__V1__BackupRequest *)rpc_unpack(
      c, &graphd__v1__backup_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rpc *R = rpc_ctx(c);
  char tgt[300];
  snprintf(tgt, sizeof tgt, "path=%.280s", req->path);
  gd_call_set_target(c, tgt);
  if (req->path[0] != '/') {
    rpc_fail_code(c, GD_EINVALID, "path: must be an absolute path (on the server)");
  } else if (atomic_exchange(&R->backup_running, true)) {
    rpc_fail_code(c, GD_EPRECONDITION, "a backup is already running");
  } else {
    backup_job *b = calloc(1, sizeof *b);
    pthread_t th;
    pthread_attr_t at;
    if (!b || !(b->path = strdup(req->path))) {
      free(b);
      atomic_store(&R->backup_running, false);
      rpc_fail_code(c, GD_ENOMEM, "out of memory");
    } else {
      b->rpc = R;
      b->call = c;
      pthread_attr_init(&at);
      pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
      if (pthread_create(&th, &at, backup_main, b) != 0) {
        free(b->path);
        free(b);
        atomic_store(&R->backup_running, false);
        rpc_fail_code(c, GD_EINTERNAL, "cannot start the backup thread");
      }
      pthread_attr_destroy(&at);
    }
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- the method table ------------------------------------------------------- */

#define SVC "/graphd.v1.SellerGraph/"
#define UNARY(name, fn, r) {.path = SVC name, .kind = GD_RPC_UNARY, .on_request = fn, .role = r}
/* An investigator query: runs on the server's query threads (server.h). */
#define HEAVY(name, fn, r)                                                                   \
  {.path = SVC name, .kind = GD_RPC_UNARY, .on_request = fn, .role = r, .heavy = true}
/* Open to partners too (server/auth.h): the handler scopes to the brand. */
#define PARTNER(name, fn, r)                                                                 \
  {.path = SVC name, .kind = GD_RPC_UNARY, .on_request = fn, .role = r, .partner = true}
#define R GD_ROLE_READER
#define I GD_ROLE_INVESTIGATOR
#define W GD_ROLE_WRITER
#define A GD_ROLE_ADMIN

/* One row per rpc: path, kind, handlers, the least role it needs
 * (server/auth.h), and whether it is heavy or essential (server.h). A NULL handler answers UNIMPLEMENTED with the method's
 * name. New rows go last: the fuzzer's corpus picks methods by row. */
static const gd_method methods[] = {
    UNARY("Upsert", h_upsert, W),
    {.path = SVC "Ingest", .kind = GD_RPC_CLIENT_STREAM, .on_read = h_ingest_read,
     .on_cancel = h_ingest_cancel, .role = W},
    UNARY("GetEntity", h_get_entity, R),
    UNARY("Neighbors", h_neighbors, R),
    UNARY("SetLabels", h_set_labels, I),
    UNARY("DeleteEntity", h_delete_entity, W),
    UNARY("Stats", h_stats, R),
    /* Heavy or not by its request: investigate.c, rpc_linked_sellers. */
    UNARY("LinkedSellers", rpc_linked_sellers, R),
    HEAVY("FindPaths", rpc_find_paths, R),
    HEAVY("RankSuspects", rpc_rank_suspects, R),
    UNARY("StartClustering", rpc_start_clustering, W),
    UNARY("GetJob", rpc_get_job, R),
    {.path = SVC "WatchJob", .kind = GD_RPC_SERVER_STREAM, .on_request = rpc_watch_job,
     .on_written = rpc_watch_written, .on_cancel = rpc_follow_cancel, .role = R},
    UNARY("CancelJob", rpc_cancel_job, W),
    UNARY("ListSnapshots", rpc_list_snapshots, R),
    UNARY("GetSnapshot", rpc_get_snapshot, R),
    UNARY("DeleteSnapshot", rpc_delete_snapshot, A),
    UNARY("ListClusters", rpc_list_clusters, R),
    UNARY("GetCluster", rpc_get_cluster, R),
    {.path = SVC "StreamAssignments", .kind = GD_RPC_SERVER_STREAM,
     .on_request = rpc_stream_assignments, .on_written = rpc_assign_written, .role = R},
    {.path = SVC "DiffSnapshots", .kind = GD_RPC_SERVER_STREAM, .on_request = rpc_diff_snapshots,
     .on_written = rpc_diff_written, .role = R},
    UNARY("Backup", h_backup, A),
    UNARY("ListAudit", rpc_list_audit, A),
    UNARY("VerifyAudit", rpc_verify_audit, A),
    {.path = "/grpc.health.v1.Health/Check", .kind = GD_RPC_UNARY, .on_request = h_health_check,
     .role = GD_ROLE_NONE, .essential = true},
    /* Reveals the schema only. */
    {.path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     .kind = GD_RPC_BIDI_STREAM, .on_read = rpc_reflection_read,
     .on_written = rpc_reflection_written, .role = R},
    /* The same protocol under its released name (identical messages on
     * the wire), asked first by current clients. */
    {.path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     .kind = GD_RPC_BIDI_STREAM, .on_read = rpc_reflection_read,
     .on_written = rpc_reflection_written, .role = R},
    {.path = SVC "GetEntities", .kind = GD_RPC_SERVER_STREAM, .on_request = h_get_entities,
     .on_written = h_entities_written, .role = R},
    PARTNER("WhoAmI", h_whoami, R),
    {.path = SVC "WatchAlerts", .kind = GD_RPC_SERVER_STREAM, .on_request = rpc_watch_alerts,
     .on_written = rpc_alerts_written, .on_cancel = rpc_follow_cancel, .role = I},
    {.path = SVC "BulkLoad", .kind = GD_RPC_CLIENT_STREAM, .on_read = rpc_bulk_load_read,
     .role = W},
    {.path = SVC "ExportTies", .kind = GD_RPC_SERVER_STREAM, .on_request = rpc_export_ties,
     .on_written = rpc_ties_written, .on_cancel = rpc_ties_cancel, .role = R},
    {.path = SVC "ImportSnapshot", .kind = GD_RPC_CLIENT_STREAM, .on_read = rpc_import_read,
     .role = W},
    /* Cases: partners too, scoped to their brand (cases.c). */
    PARTNER("CreateCase", rpc_create_case, I),
    PARTNER("GetCase", rpc_get_case, R),
    PARTNER("ListCases", rpc_list_cases, R),
    PARTNER("UpdateCase", rpc_update_case, I),
    {.path = SVC "ExportCase", .kind = GD_RPC_SERVER_STREAM, .on_request = rpc_export_case,
     .on_written = rpc_pack_written, .role = R, .partner = true},
};
#undef R
#undef I
#undef W
#undef A

/* The table with each method's request and reply types, taken by name from
 * the compiled service descriptors (graphd.v1.SellerGraph, the health
 * service): no row names a message type by hand. Unbound (ctx NULL): every
 * context copies it. */
static gd_method typed[sizeof methods / sizeof methods[0]];
static pthread_once_t typed_once = PTHREAD_ONCE_INIT;

static void type_methods(void) {
  static const ProtobufCServiceDescriptor *const services[] = {
      &graphd__v1__seller_graph__descriptor, &grpc__health__v1__health__descriptor};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    typed[i] = methods[i];
    for (size_t k = 0; k < sizeof services / sizeof services[0]; k++) {
      const ProtobufCServiceDescriptor *sd = services[k];
      size_t n = strlen(sd->name);
      const char *p = methods[i].path;
      if (p[0] != '/' || strncmp(p + 1, sd->name, n) != 0 || p[n + 1] != '/')
        continue;
      const ProtobufCMethodDescriptor *md =
          protobuf_c_service_descriptor_get_method_by_name(sd, p + n + 2);
      if (md) {
        typed[i].request = md->input;
        typed[i].reply = md->output;
      }
    }
  }
}

const gd_method *gd_rpc_method_table(size_t *ret_n) {
  pthread_once(&typed_once, type_methods);
  *ret_n = sizeof methods / sizeof methods[0];
  return typed;
}

/* ---- the context ------------------------------------------------------------ */

int gd_rpc_new(gd_store *store, gd_writer *writer, const gd_rpc_limits *lim, gd_rpc **ret,
               gd_err *err) {
  size_t n;
  const gd_method *table = gd_rpc_method_table(&n);
  gd_rpc *r = calloc(1, sizeof *r + n * sizeof *r->methods);
  *ret = NULL;
  if (!r)
    return gd_err_set(err, GD_ENOMEM, "out of memory for the rpc context");
  r->store = store;
  r->writer = writer;
  r->lim = *lim;
  if (r->lim.ingest_inflight == 0)
    r->lim.ingest_inflight = 256;
  if (r->lim.max_reply_bytes == 0)
    r->lim.max_reply_bytes = 4 << 20;
  if (r->lim.ingest_window_bytes == 0)
    r->lim.ingest_window_bytes = 64 << 20;
  atomic_init(&r->serving, 1);
  r->audit = lim->audit;
  r->audit_reads_async = lim->audit_reads_async;
  r->journal = (gd_jobs_journal){.save = rpc_journal_save, .ctx = r};
  atomic_init(&r->audit_broken, false);
  atomic_init(&r->async_pending, 0);
  atomic_init(&r->backup_running, false);
  r->nmethods = n;
  for (size_t i = 0; i < n; i++) {
    r->methods[i] = table[i];
    r->methods[i].ctx = r;
  }
  int rc = gd_refl_index_build(gd_descriptor_set, gd_descriptor_set_len, &r->refl, err);
  if (rc) {
    if (err)
      gd_err_prefix(err, "reflection");
    free(r);
    return rc;
  }
  pthread_mutex_init(&r->ties.mu, NULL);
  pthread_mutex_init(&r->wb.mu, NULL);
  pthread_cond_init(&r->wb.cv, NULL);
  if ((rc = pthread_create(&r->wb.thread, NULL, wb_main, r))) {
    pthread_mutex_destroy(&r->wb.mu);
    pthread_cond_destroy(&r->wb.cv);
    pthread_mutex_destroy(&r->ties.mu);
    gd_refl_index_free(r->refl);
    free(r);
    return gd_err_set(err, GD_EINTERNAL, "cannot start the write budget thread: %s",
                      strerror(rc));
  }
  *ret = r;
  return GD_OK;
}

const gd_method *gd_rpc_methods(gd_rpc *r, size_t *ret_n) {
  *ret_n = r->nmethods;
  return r->methods;
}

void gd_rpc_free(gd_rpc *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->wb.mu);
  r->wb.stop = true;
  pthread_cond_signal(&r->wb.cv);
  pthread_mutex_unlock(&r->wb.mu);
  pthread_join(r->wb.thread, NULL);
  pthread_mutex_destroy(&r->wb.mu);
  pthread_cond_destroy(&r->wb.cv);
  pthread_mutex_destroy(&r->ties.mu);
  gd_refl_index_free(r->refl);
  free(r);
}
