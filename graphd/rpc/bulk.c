/*
 * BulkLoad: a client stream of UpsertRequest into an empty graph, written
 * in one transaction by sorted appends (store.h, "Bulk load").
 *
 * One step is outstanding at a time, so the state has one owner at a
 * time and needs no lock: the server's read (on_read, a handler thread),
 * then the message's decoding and gd_bulk_add (a query thread, so large
 * messages leave the handler threads free), which asks for the next read;
 * at the end of the stream one write op, whose done callback answers. The
 * graph must be empty when the call starts (checked at once, so a client
 * does not stream gigabytes to be refused) and when the write applies
 * (the store checks again: an Ingest may have committed meanwhile). One
 * BulkLoad at a time per context.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/limits.h"
#include "core/log.h"
#include "rpc/convert.h"
#include "rpc/rpc_int.h"

/*
 * Decoding: protobuf-c allocates every message, reference and string of a
 * message separately (five allocations per link). A bump allocator over
 * chunks kept from message to message makes that a pointer increment, and
 * the whole tree is dropped at once. It keeps the per-message bound of
 * --max-request-alloc-bytes.
 */
#define BUMP_CHUNK ((size_t)1 << 20)

typedef struct bump {
  uint8_t **chunks;
  size_t *sizes;
  size_t n, cur, used; /* chunks[cur] has `used` bytes taken */
  size_t total, cap;   /* bytes handed out for this message, the bound (0 = none) */
  bool over;
} bump;

static void *bump_alloc(void *data, size_t n) {
  bump *b = data;
  n = (n + 15) & ~(size_t)15;
  if (b->cap && n > b->cap - b->total) {
    b->over = true;
    return NULL;
  }
  while (b->cur < b->n && b->used + n > b->sizes[b->cur]) {
    b->cur++;
    b->used = 0;
  }
  if (b->cur == b->n) {
    size_t sz = n > BUMP_CHUNK ? n : BUMP_CHUNK;
    uint8_t **nc = realloc(b->chunks, (b->n + 1) * sizeof *nc);
    if (nc)
      b->chunks = nc;
    size_t *ns = realloc(b->sizes, (b->n + 1) * sizeof *ns);
    if (ns)
      b->sizes = ns;
    uint8_t *p = nc && ns ? malloc(sz) : NULL;
    if (!p)
      return NULL;
    b->chunks[b->n] = p;
    b->sizes[b->n++] = sz;
    b->used = 0;
  }
  void *p = b->chunks[b->cur] + b->used;
  b->used += n;
  b->total += n;
  return p;
}

static void bump_free(void *data, void *p) {
  (void)data;
  (void)p;
}

static void bump_reset(bump *b) {
  b->cur = b->used = b->total = 0;
  b->over = false;
}

static void bump_release(bump *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->chunks[i]);
  free(b->chunks);
  free(b->sizes);
}

typedef struct bulk_call {
  gd_write_op op; /* first: the write at the end */
  gd_rpc *rpc;
  gd_call *call;
  gd_bulk *b;
  uint64_t received;
  gd_bulk_result res;
  int64_t start_ns, end_ns; /* first read; end of the stream */
  size_t len;
  uint8_t *msg; /* the message being added */
  bump mem;     /* its decoded tree */
  gd_arena *arena; /* its conversion (gd_pb_upsert) */
} bulk_call;

static void bulk_free(bulk_call *s) {
  gd_rpc *R = s->rpc;
  gd_bulk_free(s->b);
  bump_release(&s->mem);
  gd_arena_free(s->arena);
  free(s->msg);
  free(s);
  atomic_store(&R->bulk_running, false);
}

/* Ends the call with err, naming message `index` when it is one. */
static void bulk_fail(bulk_call *s, const gd_err *err, bool with_index, uint64_t index) {
  gd_err e = *err;
  if (with_index)
    snprintf(e.msg, sizeof e.msg, "message %llu: %.200s (nothing was written)",
             (unsigned long long)index, err->msg);
  rpc_fail(s->call, &e);
  bulk_free(s);
}

static int bulk_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  bulk_call *s = (bulk_call *)wop;
  /* A cancelled call is not a finished stream (see bulk_end_job); checked
   * again after the writes, which take a while on a large load. */
  int rc = gd_call_check(s->call, err);
  if (!rc)
    rc = gd_store_bulk_apply(t, s->b, &s->res, err);
  if (!rc)
    rc = gd_call_check(s->call, err);
  return rc ? rc : rpc_audit_txn(t, s->call, err); /* same commit as the load */
}

static void bulk_done(gd_write_op *wop, const gd_err *err) {
  bulk_call *s = (bulk_call *)wop;
  if (err->code) {
    gd_call_mark_audited(s->call, false);
    bulk_fail(s, err, false, 0);
    return;
  }
  Graphd__V1__IngestReply r = GRAPHD__V1__INGEST_REPLY__INIT;
  Graphd__V1__WriteTotals t = GRAPHD__V1__WRITE_TOTALS__INIT;
  t.entities_created = s->res.totals.entities_created;
  t.entities_updated = s->res.totals.entities_updated;
  t.links_created = s->res.totals.links_created;
  t.links_updated = s->res.totals.links_updated;
  r.messages = s->res.messages;
  r.duplicates = s->res.duplicates;
  r.totals = &t;
  gd_info("bulk load: %llu messages, %llu links, %llu entities in %.2f s: received in %.2f s, "
          "written in %.2f s (adjacency %.2f, entities %.2f, key index %.2f; key sort %.2f "
          "beside them), %zu MiB held",
          (unsigned long long)s->res.messages,
          (unsigned long long)(s->res.totals.links_created + s->res.totals.links_updated),
          (unsigned long long)s->res.totals.entities_created,
          (double)(gd_now_ns() - s->start_ns) / 1e9, (double)(s->end_ns - s->start_ns) / 1e9,
          (double)(gd_now_ns() - s->end_ns) / 1e9, s->res.adj_s, s->res.entities_s,
          s->res.keys_s, s->res.key_sort_s, gd_bulk_bytes(s->b) >> 20);
  rpc_reply(s->call, &r.base);
  bulk_free(s);
}

/* One message, on a query thread: decode, validate, add; then the next read. */
static void bulk_add_job(void *arg) {
  bulk_call *s = arg;
  gd_rpc *R = s->rpc;
  gd_err err;
  gd_upsert u;
  bool dup;
  uint64_t index = s->received - 1;
  int rc = gd_call_check(s->call, &err);
  Graphd__V1__UpsertRequest *req = NULL;
  if (!rc) {
    ProtobufCAllocator al = {bump_alloc, bump_free, &s->mem};
    bump_reset(&s->mem);
    s->mem.cap = R->lim.max_request_alloc;
    req = (Graphd__V1__UpsertRequest *)protobuf_c_message_unpack(
        &graphd__v1__upsert_request__descriptor, &al, s->len, s->msg);
    if (!req && s->mem.over) {
      gd_limit_hit(GD_LIMIT_ALLOC_BUDGET);
      rc = gd_err_set(&err, GD_ERESOURCE,
                      "graphd.v1.UpsertRequest of %zu bytes needs more than %zu bytes of "
                      "memory to decode (--max-request-alloc-bytes)",
                      s->len, s->mem.cap);
    } else if (!req) {
      rc = gd_err_set(&err, GD_EINVALID, "request is not a valid graphd.v1.UpsertRequest message");
    }
  }
  if (!rc)
    rc = gd_pb_upsert(req, R->lim.max_batch_items, &s->arena, &u, &err);
  if (!rc && (rc = gd_bulk_add(s->b, &u, &dup, &err)) == GD_ERESOURCE) {
    size_t n = strlen(err.msg);
    snprintf(err.msg + n, sizeof err.msg - n, " (--bulk-load-max-bytes)");
  }
  gd_arena_reset(&s->arena); /* req's tree goes with the next bump_reset */
  free(s->msg);
  s->msg = NULL;
  if (rc) {
    bulk_fail(s, &err, true, index);
    return;
  }
  gd_call_read_next(s->call);
}

/*
 * The end of the stream, on a query thread. gRPC core completes a pending
 * read with no message both when the client half-closes and when it
 * cancels (the cancellation arrives as a separate event, on another
 * thread, at about the same time), so an end is taken for one only after
 * the call has had a moment to be seen dead: up to 20 ms here, and the
 * write checks again before and after it writes. A load is never written
 * from a stream the client broke off.
 */
#define BULK_SETTLE_MS 20

static void bulk_end_job(void *arg) {
  bulk_call *s = arg;
  gd_err err;
  for (int i = 0; i <= BULK_SETTLE_MS; i++) {
    if (gd_call_check(s->call, &err)) {
      bulk_fail(s, &err, false, 0);
      return;
    }
    if (i < BULK_SETTLE_MS) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  s->end_ns = gd_now_ns();
  char target[120];
  snprintf(target, sizeof target, "bulk load: %llu messages, %zu bytes held",
           (unsigned long long)s->received, gd_bulk_bytes(s->b));
  gd_call_set_target(s->call, target);
  s->op.apply = bulk_apply;
  s->op.done = bulk_done;
  s->op.bytes = gd_bulk_bytes(s->b);
  gd_writer_submit(s->rpc->writer, &s->op);
}

/* The graph must be empty before the client streams it. */
static int bulk_precheck(gd_rpc *R, gd_err *err) {
  gd_rtxn *r;
  gd_stats st;
  int rc = gd_store_read_begin(R->store, &r, err);
  if (rc)
    return rc;
  rc = gd_store_stats(r, &st, err);
  gd_store_read_end(r);
  if (!rc && (st.entities_total || st.links || st.labels))
    rc = gd_err_set(err, GD_EPRECONDITION,
                    "a bulk load needs an empty graph, and this one holds %llu entities and "
                    "%llu links; load into it with Ingest",
                    (unsigned long long)st.entities_total, (unsigned long long)st.links);
  return rc;
}

void rpc_bulk_load_read(gd_call *c, gd_read_result rr, const uint8_t *msg, size_t len) {
  gd_rpc *R = rpc_ctx(c);
  bulk_call *s = gd_call_user(c);
  gd_err err;
  if (!s) {
    bool idle = false;
    if (!atomic_compare_exchange_strong(&R->bulk_running, &idle, true)) {
      gd_call_finish(c, GD_EPRECONDITION, "another BulkLoad is running; one at a time", NULL,
                     0);
      return;
    }
    int rc = bulk_precheck(R, &err);
    s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && !s)
      rc = gd_err_set(&err, GD_ENOMEM, "out of memory");
    if (s && (rc = gd_bulk_new(R->lim.bulk_max_bytes, &s->b, &err))) {
      free(s);
      s = NULL;
    }
    if (rc) {
      atomic_store(&R->bulk_running, false);
      gd_call_finish(c, rc, err.msg, NULL, 0);
      return;
    }
    s->rpc = R;
    s->call = c;
    s->start_ns = gd_now_ns();
    gd_call_set_user(c, s);
    if (R->audit)
      gd_call_set_target(c, "bulk load");
  }
  switch (rr) {
  case GD_READ_FAILED:
    gd_err_set(&err, GD_ECANCELLED, "stream broken by the client after %llu messages",
               (unsigned long long)s->received);
    bulk_fail(s, &err, false, 0);
    return;
  case GD_READ_END:
    gd_call_defer(c, bulk_end_job, s);
    return;
  case GD_READ_MESSAGE:
    break;
  }
  s->received++;
  s->msg = malloc(len ? len : 1);
  if (!s->msg) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    bulk_fail(s, &err, true, s->received - 1);
    return;
  }
  memcpy(s->msg, msg, len);
  s->len = len;
  gd_call_defer(c, bulk_add_job, s);
}
