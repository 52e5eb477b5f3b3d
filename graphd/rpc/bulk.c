/*
 * BulkLoad: a client stream of UpsertRequest into an empty graph, written
 * in one transaction by sorted appends (store.h, "Bulk load").
 *
 * A pipeline of BULK_WINDOW messages: each message read (on_read, a
 * handler thread) is copied into a slot and decoded and converted on a
 * query thread, several at once; whichever thread finishes the message
 * that is next in order adds it, and the ones after it that are ready, to
 * the load (gd_bulk_add takes them one at a time, in stream order: ids
 * follow first appearance). A read is outstanding only while a slot is
 * free. At the end of the stream one write op, whose done callback
 * answers. The graph must be empty when the call starts (checked at once,
 * so a client does not stream gigabytes to be refused) and when the
 * write applies (the store checks again: an Ingest may have committed
 * meanwhile). One BulkLoad at a time per context.
 *
 * State and lifetime (bulk_call.mu): the call is finished exactly once
 * (`finished`, or handed to the writer: `submitted`); the state is freed
 * once, in addition, no read, decode job, adder or end job holds it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define BULK_WINDOW 4

typedef struct bulk_call bulk_call;

/* One message on its way: wire bytes, then its decoded tree and its
 * conversion (both kept from message to message). */
typedef struct bslot {
  bulk_call *s;
  uint64_t index;
  uint8_t *msg;
  size_t len, cap;
  bump mem;
  gd_arena *arena;
  gd_upsert u;
  bool ready; /* decoded: rc and err hold the outcome */
  int rc;
  gd_err err;
} bslot;

struct bulk_call {
  gd_write_op op; /* first: the write at the end */
  gd_rpc *rpc;
  gd_call *call;
  gd_bulk *b;
  pthread_mutex_t mu;
  bslot slots[BULK_WINDOW];
  uint64_t received; /* messages read */
  uint64_t added;    /* messages added to b, in order */
  unsigned jobs;     /* decode and end jobs queued or running */
  unsigned holds;    /* a handler between handing a message to a job and its next step */
  bool reading;      /* a read is outstanding */
  bool adding;       /* a thread adds messages (outside mu) */
  bool ended;        /* no more reads: the client half-closed or the call died */
  bool failed;       /* err holds the first failure */
  bool finished, submitted;
  bool released; /* rpc->bulk_running cleared for the next BulkLoad */
  gd_err err;
  bool err_indexed;
  uint64_t err_index;
  gd_bulk_result res;
  int64_t start_ns, end_ns; /* first read; end of the stream */
};

/* Lets the next BulkLoad begin: before the call is answered, so that a
 * client that starts another on the answer is not refused. Once. */
static void bulk_release(bulk_call *s) {
  if (!s->released) {
    s->released = true;
    atomic_store(&s->rpc->bulk_running, false);
  }
}

static void bulk_free(bulk_call *s) {
  bulk_release(s);
  gd_bulk_free(s->b);
  for (int i = 0; i < BULK_WINDOW; i++) {
    bump_release(&s->slots[i].mem);
    gd_arena_free(s->slots[i].arena);
    free(s->slots[i].msg);
  }
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* Records the first failure (the lowest message index wins; a failure
 * of no message, such as a broken stream, only when there is none). */
static void bulk_set_error(bulk_call *s, const gd_err *err, bool indexed, uint64_t index) {
  if (s->failed && !(indexed && (!s->err_indexed || index < s->err_index)))
    return;
  s->failed = true;
  s->err = *err;
  s->err_indexed = indexed;
  s->err_index = index;
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
  bulk_release(s);
  if (err->code) {
    gd_call_mark_audited(s->call, false);
    rpc_fail(s->call, err);
    bulk_free(s); /* submitted: nothing else holds s */
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

static void bulk_end_job(void *arg);

/*
 * Called with s->mu held; releases it. Decides what comes next: finish
 * the call with the failure, hand the load to the end job, read the next
 * message, free the state.
 */
static void bulk_step_locked(bulk_call *s) {
  bool idle = s->jobs == 0 && s->holds == 0 && !s->adding;
  bool fail_now = s->failed && !s->finished && !s->submitted && idle;
  bool end_now = !s->failed && s->ended && !s->submitted && idle && !s->reading &&
                 s->added == s->received;
  bool read_now = !s->failed && !s->ended && !s->reading && !s->submitted &&
                  s->received - s->added < BULK_WINDOW;
  gd_call *call = s->call;
  gd_err e = s->err;
  if (fail_now) {
    s->finished = true;
    if (s->err_indexed)
      snprintf(e.msg, sizeof e.msg, "message %llu: %.200s (nothing was written)",
               (unsigned long long)s->err_index, s->err.msg);
    bulk_release(s);
  }
  if (end_now) {
    s->submitted = true; /* the end job, then the writer, own s */
    s->jobs++;
  }
  if (read_now)
    s->reading = true; /* s stays while a read is outstanding */
  bool free_now = s->finished && idle && !s->reading;
  pthread_mutex_unlock(&s->mu);
  /* Once finished, a read still outstanding may free s at any moment:
   * from here on only `call` is used for the failure. */
  if (fail_now)
    rpc_fail(call, &e);
  if (end_now)
    gd_call_defer(call, bulk_end_job, s);
  if (read_now)
    gd_call_read_next(call);
  if (free_now)
    bulk_free(s);
}

/* Adds the messages that are next in order and decoded. Called with
 * s->mu held and s->adding set; returns with s->mu held. */
static void bulk_drain_locked(bulk_call *s) {
  while (!s->failed && s->added < s->received) {
    bslot *sl = &s->slots[s->added % BULK_WINDOW];
    if (!sl->ready)
      break;
    pthread_mutex_unlock(&s->mu);
    gd_err err;
    bool dup;
    int rc = sl->rc;
    if (rc) {
      err = sl->err;
    } else if ((rc = gd_bulk_add(s->b, &sl->u, &dup, &err)) == GD_ERESOURCE) {
      size_t n = strlen(err.msg);
      snprintf(err.msg + n, sizeof err.msg - n, " (--bulk-load-max-bytes)");
    }
    bump_reset(&sl->mem);
    gd_arena_reset(&sl->arena);
    pthread_mutex_lock(&s->mu);
    sl->ready = false;
    if (rc)
      bulk_set_error(s, &err, true, sl->index);
    s->added++;
  }
}

/* Decodes and converts one message, on a query thread. */
static void bulk_decode_job(void *arg) {
  bslot *sl = arg;
  bulk_call *s = sl->s;
  gd_rpc *R = s->rpc;
  int rc = gd_call_check(s->call, &sl->err);
  if (!rc) {
    ProtobufCAllocator al = {bump_alloc, bump_free, &sl->mem};
    bump_reset(&sl->mem);
    sl->mem.cap = R->lim.max_request_alloc;
    Graphd__V1__UpsertRequest *req = (Graphd__V1__UpsertRequest *)protobuf_c_message_unpack(
        &graphd__v1__upsert_request__descriptor, &al, sl->len, sl->msg);
    if (!req) {
      rc = rpc_decode_failed(&graphd__v1__upsert_request__descriptor, sl->len, sl->mem.cap,
                             sl->mem.over, &sl->err);
    } else {
      /* req's tree stays in sl->mem until the slot is added */
      rc = gd_pb_upsert(req, R->lim.max_batch_items, &sl->arena, &sl->u, &sl->err);
    }
  }
  pthread_mutex_lock(&s->mu);
  sl->rc = rc;
  sl->ready = true;
  s->jobs--;
  if (!s->adding) {
    s->adding = true;
    bulk_drain_locked(s);
    s->adding = false;
  }
  bulk_step_locked(s);
}

/* The end of the stream, on a query thread: taken for a half-close only
 * once the call has had a moment to be seen dead (rpc_stream_settle); the
 * write checks the call again before and after it writes. A load is never
 * written from a stream the client broke off. */
static void bulk_end_job(void *arg) {
  bulk_call *s = arg;
  gd_err err;
  if (rpc_stream_settle(s->call, &err)) {
    bulk_release(s);
    rpc_fail(s->call, &err);
    bulk_free(s); /* submitted: nothing else holds s */
    return;
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
    pthread_mutex_init(&s->mu, NULL);
    for (int i = 0; i < BULK_WINDOW; i++)
      s->slots[i].s = s;
    s->reading = true; /* the server started this read */
    gd_call_set_user(c, s);
    if (R->audit)
      gd_call_set_target(c, "bulk load");
  }
  pthread_mutex_lock(&s->mu);
  s->reading = false;
  if (rr != GD_READ_MESSAGE) {
    s->ended = true;
    if (rr == GD_READ_FAILED) {
      gd_err_set(&err, GD_ECANCELLED, "stream broken by the client after %llu messages",
                 (unsigned long long)s->received);
      bulk_set_error(s, &err, false, 0);
    }
    bulk_step_locked(s);
    return;
  }
  uint64_t index = s->received++;
  if (s->failed) {
    bulk_step_locked(s); /* a read that was outstanding when we failed */
    return;
  }
  bslot *sl = &s->slots[index % BULK_WINDOW];
  if (sl->cap < len) {
    uint8_t *p = realloc(sl->msg, len ? len : 1);
    if (!p) {
      gd_err_set(&err, GD_ENOMEM, "out of memory");
      bulk_set_error(s, &err, true, index);
      bulk_step_locked(s);
      return;
    }
    sl->msg = p;
    sl->cap = len;
  }
  memcpy(sl->msg, msg, len);
  sl->len = len;
  sl->index = index;
  sl->ready = false;
  s->jobs++;
  s->holds++; /* the job may fail the call and step before we do */
  pthread_mutex_unlock(&s->mu);
  gd_call_defer(c, bulk_decode_job, sl);
  pthread_mutex_lock(&s->mu);
  s->holds--;
  bulk_step_locked(s);
}
