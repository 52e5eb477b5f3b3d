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
  gd_write_op *head, *tail; /* FIFO */
  size_t queued, eager;      /* ops queued; of them, ops without linger */
  int64_t head_at;           /* gd_now_ns when the queue last became non-empty */
  bool stopping;
  atomic_uint_fast64_t pending, commits, requests, grows;
  void (*observe)(void *ctx, size_t ops, int64_t ns); /* gd_writer_observe */
  void *observe_ctx;
};

/* Applies a group: returns GD_OK when committed (individual ops may have
 * failed, with their error in op->err), GD_EMAPFULL when the caller must
 * grow and retry, or another error that fails every op. When an op would
 * take the transaction past LMDB's size limit (MDB_TXN_FULL) and ops
 * before it fit, the group is cut there: the ops before it commit, and
 * *ret_rest gets it and the ops after it, for a group of their own (an op
 * too large on its own fails alone). */
static int apply_group(gd_writer *w, gd_write_op *ops, gd_write_op **ret_rest, gd_err *err) {
  gd_wtxn *t;
  *ret_rest = NULL;
  int rc = gd__wtxn_begin(w->s, &t, err);
  if (rc)
    return rc;
  for (gd_write_op *op = ops, *prev = NULL; op; prev = op, op = op->next) {
    gd_err_clear(&op->err);
    if ((rc = gd__wtxn_nest(t, err))) {
      gd__wtxn_abort(t);
      return rc;
    }
    rc = op->apply(t, op, &op->err);
    if (rc == GD_OK) {
      rc = gd__wtxn_unnest(t, true, &op->err);
    } else {
      if (op->err.code != rc)
        gd_err_set(&op->err, rc, "%s", gd_strerror(rc));
      gd__wtxn_unnest(t, false, NULL);
    }
    if (rc == GD_ETXNFULL && prev) {
      prev->next = NULL;
      *ret_rest = op;
      break;
    }
    /* A full map poisons the whole transaction (MDB_BAD_TXN after it). */
    if (rc == GD_EMAPFULL || rc == GD_EIO || rc == GD_ENOMEM) {
      *err = op->err;
      gd__wtxn_abort(t);
      return rc;
    }
  }
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

static void run_group(gd_writer *w, gd_write_op *ops) {
  while (ops) {
    gd_err err;
    gd_write_op *rest = NULL, *cut;
    int rc;
    gd_err_clear(&err);
    int64_t t0 = gd_now_ns();
    for (;;) {
      rc = apply_group(w, ops, &cut, &err);
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
    ops = rest; /* what did not fit: a group of its own */
  }
}

static void *writer_main(void *arg) {
  gd_writer *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->stopping)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->head && w->stopping)
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
    /* Take up to max_group ops, and up to GD_WRITER_GROUP_BYTES of input,
     * off the queue. */
    gd_write_op *ops = w->head, *last = ops;
    size_t n = 1, bytes = ops->bytes;
    while (last->next && n < w->max_group &&
           bytes + last->next->bytes <= GD_WRITER_GROUP_BYTES) {
      last = last->next;
      bytes += last->bytes;
      n++;
    }
    w->head = last->next;
    if (!w->head)
      w->tail = NULL;
    else
      w->head_at = gd_now_ns(); /* the rest waits from now */
    last->next = NULL;
    w->queued -= n;
    for (gd_write_op *op = ops; op; op = op->next)
      w->eager -= !op->linger;
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
  bool was_empty = !w->head;
  if (w->tail)
    w->tail->next = op;
  else
    w->head = op;
  w->tail = op;
  if (was_empty)
    w->head_at = gd_now_ns();
  w->queued++;
  w->eager += !op->linger;
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
