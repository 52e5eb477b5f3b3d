#include "store/writer.h"

#include "store/store_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct gd_writer {
  gd_store *s;
  unsigned max_group;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* Two FIFOs: ops someone waits on (and lingering ones), and bulk ops
   * (gd_write_op.bulk), taken after them. */
  gd_write_op *head, *tail;
  gd_write_op *bhead, *btail;
  size_t queued, eager;      /* ops queued; of them, ops without linger */
  int64_t head_at;           /* gd_now_ns when the queue last became non-empty */
  bool stopping;
  bool bulk_passed; /* the last group took none of the bulk ops queued */
  /* Ops queued that are neither bulk nor lingering: a group of bulk ops
   * being applied stops at the next op when this is not 0. */
  atomic_size_t urgent;
  atomic_uint_fast64_t pending, commits, requests, grows, retries;
  void (*observe)(void *ctx, size_t ops, int64_t ns); /* gd_writer_observe */
  void *observe_ctx;
};

/* Someone waits on op (gd_write_op.bulk). */
static bool is_urgent(const gd_write_op *op) { return !op->bulk && !op->linger; }

/* Commits t, the transaction of ops. */
static int commit(gd_writer *w, gd_wtxn *t, gd_write_op *ops, gd_err *err) {
  int rc;
  bool lazy = true;
  for (gd_write_op *op = ops; op && lazy; op = op->next)
    lazy = op->lazy_sync;
  if (!lazy)
    return gd__wtxn_commit(t, err);
  /* Only this thread changes the flag, between its own transactions. */
  mdb_env_set_flags(w->s->env, MDB_NOMETASYNC, 1);
  rc = gd__wtxn_commit(t, err);
  mdb_env_set_flags(w->s->env, MDB_NOMETASYNC, 0);
  return rc;
}

/* Takes up to n ops and `bytes` of input (at least one op) off the FIFO
 * at *head, appending them at *tail. Called with w->mu held. */
static size_t take(gd_writer *w, gd_write_op **head, gd_write_op **fifo_tail,
                   gd_write_op ***tail, size_t n, size_t bytes, bool at_least_one) {
  size_t took = 0, sum = 0;
  while (*head && took < n && (sum + (*head)->bytes <= bytes || (at_least_one && !took))) {
    gd_write_op *op = *head;
    *head = op->next;
    op->next = NULL;
    sum += op->bytes;
    took++;
    w->queued--;
    w->eager -= !op->linger;
    if (is_urgent(op))
      atomic_fetch_sub(&w->urgent, 1);
    **tail = op;
    *tail = &op->next;
  }
  if (!*head)
    *fifo_tail = NULL;
  return took;
}

/* A cut for ops someone waits on is due (apply_group). */
static bool cut_due(gd_writer *w, int64_t t0) {
  return atomic_load_explicit(&w->urgent, memory_order_relaxed) &&
         gd_now_ns() - t0 >= GD_WRITER_CUT_NS;
}

/*
 * Applies the run of bulk ops from `first` (up to the first op that is not
 * bulk, or before the first one a cut is due at) in one nested transaction:
 * LMDB's nested transaction costs a page copy per page it touches and
 * allocations for its dirty list, per transaction, so a run of Ingest
 * messages shares one. Returns GD_OK with *ret_last the last op applied.
 * Otherwise the run is undone and the return is the error: *ret_failed is
 * the op whose apply failed (the last op when the nested commit failed),
 * and each op up to it must be applied again alone; a full map, I/O or
 * memory error poisons the group transaction, as in apply_group.
 */
static int apply_run(gd_writer *w, gd_wtxn *t, gd_write_op *first, int64_t t0,
                     gd_write_op **ret_last, gd_write_op **ret_failed, gd_err *err) {
  gd_write_op *op = first, *last = NULL;
  int rc = gd__wtxn_nest(t, err);
  if (rc)
    return rc;
  for (; op && op->bulk && (op == first || !cut_due(w, t0)); op = op->next) {
    gd_err_clear(&op->err);
    if ((rc = op->apply(t, op, &op->err)) != GD_OK) {
      if (op->err.code != rc)
        gd_err_set(&op->err, rc, "%s", gd_strerror(rc));
      *err = op->err;
      *ret_failed = op;
      gd__wtxn_unnest(t, false, NULL);
      return rc;
    }
    last = op;
  }
  *ret_failed = last;
  if ((rc = gd__wtxn_unnest(t, true, err)))
    return rc;
  *ret_last = last;
  return GD_OK;
}

/* Applies a group: returns GD_OK when committed (individual ops may have
 * failed, with their error in op->err), GD_EMAPFULL when the caller must
 * grow and retry, or another error that fails every op. When an op would
 * take the transaction past LMDB's size limit (MDB_TXN_FULL) and ops
 * before it fit, the group is cut there: the ops before it commit, and
 * *ret_rest gets it and the ops after it, for a group of their own (an op
 * too large on its own fails alone, and *ret_rest gets the ops after it). When an op someone waits on is
 * queued while bulk ops are applied and the group has run for
 * GD_WRITER_CUT_NS, the bulk ops not yet applied are cut off (appended to
 * *ret_rest, with *ret_requeue set: they go back to the queue) and the
 * queued ops someone waits on are applied in their place, in this
 * transaction. */
static int apply_group(gd_writer *w, gd_write_op *ops, gd_write_op **ret_rest,
                       bool *ret_requeue, gd_err *err) {
  gd_wtxn *t;
  gd_write_op *bulk_rest = NULL;
  int64_t t0 = gd_now_ns();
  *ret_rest = NULL;
  *ret_requeue = false;
  int rc = gd__wtxn_begin(w->s, &t, err);
  if (rc)
    return rc;
  gd_write_op *solo_until = NULL; /* a run failed at it: each op up to it alone */
  for (gd_write_op *op = ops, *prev = NULL; op; prev = op, op = op->next) {
    if (prev && op->bulk && !bulk_rest && cut_due(w, t0)) {
      gd_write_op *u = NULL, **ut = &u;
      pthread_mutex_lock(&w->mu);
      take(w, &w->head, &w->tail, &ut, w->max_group, GD_WRITER_GROUP_BYTES, true);
      pthread_mutex_unlock(&w->mu);
      bulk_rest = op;
      prev->next = u;
      if (!(op = u))
        break;
    }
    if (!solo_until && op->bulk && op->next && op->next->bulk) {
      gd_write_op *last, *failed = NULL;
      gd_err rerr;
      rc = apply_run(w, t, op, t0, &last, &failed, &rerr);
      if (rc == GD_OK) {
        op = last;
        continue;
      }
      if (rc == GD_EMAPFULL || rc == GD_EIO || rc == GD_ENOMEM) {
        *err = rerr;
        gd__wtxn_abort(t);
        goto out;
      }
      solo_until = failed ? failed : op; /* the run again, an op at a time */
    }
    gd_err_clear(&op->err);
    if ((rc = gd__wtxn_nest(t, err))) {
      gd__wtxn_abort(t);
      goto out;
    }
    rc = op->apply(t, op, &op->err);
    if (rc == GD_OK) {
      rc = gd__wtxn_unnest(t, true, &op->err);
    } else {
      if (op->err.code != rc)
        gd_err_set(&op->err, rc, "%s", gd_strerror(rc));
      gd__wtxn_unnest(t, false, NULL);
    }
    if (rc == GD_ETXNFULL) {
      /* Too large with the ops before it: it goes to the next group.
       * Too large on its own: it fails, and ends this group, so that its
       * done callback runs before the ops after it are applied (an Ingest
       * stream skips its later messages once one failed). */
      gd_write_op *cut = prev ? op : op->next;
      (prev ? prev : op)->next = NULL;
      *ret_rest = cut;
      break;
    }
    /* A full map poisons the whole transaction (MDB_BAD_TXN after it). */
    if (rc == GD_EMAPFULL || rc == GD_EIO || rc == GD_ENOMEM) {
      *err = op->err;
      gd__wtxn_abort(t);
      goto out;
    }
    if (op == solo_until)
      solo_until = NULL;
  }
  rc = commit(w, t, ops, err);
out:
  if (bulk_rest) {
    gd_write_op **tail = ret_rest;
    while (*tail)
      tail = &(*tail)->next;
    *tail = bulk_rest;
    *ret_requeue = true;
  }
  return rc;
}

/* Queues ops (a list cut off a group) again at the front of their FIFOs,
 * in order. Called with w->mu held. */
static void requeue(gd_writer *w, gd_write_op *ops) {
  gd_write_op *u = NULL, *ulast = NULL, *b = NULL, *blast = NULL;
  if (!w->head && !w->bhead)
    w->head_at = gd_now_ns();
  for (gd_write_op *op = ops, *next; op; op = next) {
    next = op->next;
    op->next = NULL;
    gd_write_op **first = op->bulk ? &b : &u, **last = op->bulk ? &blast : &ulast;
    if (*last)
      (*last)->next = op;
    else
      *first = op;
    *last = op;
    w->queued++;
    w->eager += !op->linger;
    if (is_urgent(op))
      atomic_fetch_add(&w->urgent, 1);
  }
  if (u) {
    ulast->next = w->head;
    if (!w->head)
      w->tail = ulast;
    w->head = u;
  }
  if (b) {
    blast->next = w->bhead;
    if (!w->bhead)
      w->btail = blast;
    w->bhead = b;
  }
}

static void run_group(gd_writer *w, gd_write_op *ops) {
  while (ops) {
    gd_err err;
    gd_write_op *rest = NULL, *cut;
    bool again = false, cut_again;
    int rc;
    gd_err_clear(&err);
    int64_t t0 = gd_now_ns();
    atomic_fetch_add(&w->grows, gd__store_grow_ahead(w->s));
    for (;;) {
      rc = apply_group(w, ops, &cut, &cut_again, &err);
      again = again || cut_again;
      if (cut) { /* cut off (again, on a retry): ahead of what was cut before */
        gd_write_op *tail = cut;
        while (tail->next)
          tail = tail->next;
        tail->next = rest;
        rest = cut;
      }
      if (rc != GD_EMAPFULL)
        break;
      rc = gd__store_grow(w->s, &err);
      if (rc)
        break;
      atomic_fetch_add(&w->grows, 1);
      atomic_fetch_add(&w->retries, 1);
    }
    size_t n = 0;
    for (gd_write_op *op = ops; op; op = op->next)
      n++;
    if (rc == GD_OK) {
      atomic_fetch_add(&w->commits, 1);
      atomic_fetch_add(&w->requests, n);
      if (w->observe)
        w->observe(w->observe_ctx, n, gd_now_ns() - t0);
    }
    for (gd_write_op *op = ops, *next; op; op = next) {
      next = op->next;
      op->next = NULL;
      const gd_err *e = rc ? &err : &op->err;
      atomic_fetch_sub(&w->pending, 1);
      op->done(op, e);
    }
    if (again && rest) { /* cut for an urgent op: back to the queue */
      pthread_mutex_lock(&w->mu);
      requeue(w, rest);
      pthread_mutex_unlock(&w->mu);
      return;
    }
    ops = rest; /* what did not fit: a group of its own */
  }
}

static void *writer_main(void *arg) {
  gd_writer *w = arg;
  pthread_setname_np(pthread_self(), "gd-writer"); /* top -H, perf --sort comm */
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->bhead && !w->stopping)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->head && !w->bhead && w->stopping)
      break;
    /* Only ops nobody waits for: let more join them, up to the linger. */
    while (!w->stopping && w->eager == 0 && w->queued < w->max_group) {
      int64_t left = w->head_at + GD_WRITER_LINGER_NS - gd_now_ns();
      if (left <= 0)
        break;
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      int64_t ns = ts.tv_nsec + left;
      ts.tv_sec += ns / 1000000000;
      ts.tv_nsec = ns % 1000000000;
      pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    /* Take up to max_group ops and GD_WRITER_GROUP_BYTES of input: first
     * the ops someone waits on, then bulk ones, only GD_WRITER_SHARE_BYTES
     * of them beside the others (at least one when the last group passed
     * them over, so a steady stream of small writes cannot starve them). */
    gd_write_op *ops = NULL, **tail = &ops;
    size_t n = take(w, &w->head, &w->tail, &tail, w->max_group, GD_WRITER_GROUP_BYTES, true);
    if (w->bhead && n < w->max_group) {
      size_t nb = take(w, &w->bhead, &w->btail, &tail, w->max_group - n,
                       n ? GD_WRITER_SHARE_BYTES : GD_WRITER_GROUP_BYTES, !n || w->bulk_passed);
      w->bulk_passed = nb == 0;
    } else {
      w->bulk_passed = w->bhead != NULL;
    }
    if (w->head || w->bhead)
      w->head_at = gd_now_ns(); /* the rest waits from now */
    pthread_mutex_unlock(&w->mu);
    run_group(w, ops);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int gd_writer_start(gd_store *s, unsigned max_group, gd_writer **ret, gd_err *err) {
  gd_writer *w = calloc(1, sizeof *w);
  if (!w)
    return gd_err_set(err, GD_ENOMEM, "writer: out of memory");
  w->s = s;
  w->max_group = max_group ? max_group : 1024;
  pthread_condattr_t ca;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the linger's timed wait */
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return gd_err_set(err, GD_EIO, "writer: cannot start thread");
  }
  *ret = w;
  return GD_OK;
}

void gd_writer_submit(gd_writer *w, gd_write_op *op) {
  op->next = NULL;
  pthread_mutex_lock(&w->mu);
  if (w->stopping) {
    pthread_mutex_unlock(&w->mu);
    gd_err e;
    gd_err_set(&e, GD_EUNAVAILABLE, "server is shutting down");
    op->done(op, &e);
    return;
  }
  atomic_fetch_add(&w->pending, 1);
  bool was_empty = !w->head && !w->bhead;
  gd_write_op **head = op->bulk ? &w->bhead : &w->head, **tail = op->bulk ? &w->btail : &w->tail;
  if (*tail)
    (*tail)->next = op;
  else
    *head = op;
  *tail = op;
  if (was_empty)
    w->head_at = gd_now_ns();
  w->queued++;
  w->eager += !op->linger;
  if (is_urgent(op))
    atomic_fetch_add(&w->urgent, 1);
  /* A lingering writer wakes at its deadline: another lingering op need
   * not wake it before, unless it fills the group. */
  if (was_empty || !op->linger || w->queued >= w->max_group)
    pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

uint64_t gd_writer_pending(gd_writer *w) { return atomic_load(&w->pending); }

void gd_writer_stats_get(gd_writer *w, gd_writer_stats *ret) {
  ret->commits = atomic_load(&w->commits);
  ret->requests = atomic_load(&w->requests);
  ret->grows = atomic_load(&w->grows);
  ret->retries = atomic_load(&w->retries);
}

void gd_writer_observe(gd_writer *w, void (*fn)(void *ctx, size_t ops, int64_t ns), void *ctx) {
  /* Read by the writer thread only after a submit, which takes w->mu. */
  pthread_mutex_lock(&w->mu);
  w->observe = fn;
  w->observe_ctx = ctx;
  pthread_mutex_unlock(&w->mu);
}

void gd_writer_stop(gd_writer *w) {
  if (!w)
    return;
  pthread_mutex_lock(&w->mu);
  w->stopping = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}
