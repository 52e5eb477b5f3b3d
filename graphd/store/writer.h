/*
 * writer: the single write path, with group commit.
 *
 * A durable LMDB commit costs one fsync (milliseconds), so one commit per
 * request would cap the server at a few hundred writes a second. Every
 * write is instead queued to one writer thread, which takes everything
 * queued (ops someone waits on ahead of bulk ones: gd_write_op.bulk),
 * applies each op in its own nested transaction (so each stays
 * atomic on its own), commits the group once, and only then calls each op's
 * done callback. A done callback with code GD_OK therefore always means
 * "durable".
 *
 * On MDB_MAP_FULL the group is aborted, the map grown and the whole group
 * applied again, so apply callbacks must be repeatable: they may run more
 * than once, each time on a fresh transaction, and must reset any result
 * they fill.
 */
#ifndef GD_STORE_WRITER_H
#define GD_STORE_WRITER_H

#include <stdint.h>

#include "store/store.h"

typedef struct gd_write_op gd_write_op;

#define GD_WRITER_GROUP_BYTES ((size_t)128 << 20)
/* Bulk input a group takes beside ops someone waits on (gd_write_op.bulk). */
#define GD_WRITER_SHARE_BYTES ((size_t)8 << 20)
/* How long a group of bulk ops runs before an op someone waits on cuts it. */
#define GD_WRITER_CUT_NS ((int64_t)250000000) /* 250 ms */
#define GD_WRITER_LINGER_NS ((int64_t)5000000) /* 5 ms: gd_write_op.linger */

struct gd_write_op {
  /* Applies the op inside its nested transaction. Returns GD_OK, or an error
   * (the nested transaction is then aborted and done() gets the error). */
  int (*apply)(gd_wtxn *t, gd_write_op *op, gd_err *err);
  /* Called once on the writer thread after the group commit, or on failure.
   * err->code == GD_OK means the op is durable. The op may be freed here. */
  void (*done)(gd_write_op *op, const gd_err *err);
  /* Set by the submitter: the op need not survive an OS crash, only a
   * process crash (audit records of reads). A group made only of such ops
   * commits with MDB_NOMETASYNC: its data pages are flushed but not the
   * meta page, one fdatasync instead of two. An OS crash may then roll the
   * environment back to the previous commit (consistent: LMDB keeps two
   * meta pages); the next full commit makes it durable. */
  bool lazy_sync;
  /* Set by the submitter: nobody waits for done (an audit record of a read
   * already answered). While the queue holds only such ops the writer
   * waits up to GD_WRITER_LINGER_NS from the first one's arrival (or, for
   * ops left behind by a full group, from when that group was taken) for
   * more to share its commit; any other op, a full group or gd_writer_stop ends
   * the wait at once. A steady read load then commits a few hundred times
   * a second, not thousands. */
  bool linger;
  /* Set by the submitter: about how many bytes the op's input takes (0 =
   * small). A group stops growing at GD_WRITER_GROUP_BYTES of them (it
   * always takes one op): LMDB holds a group's dirty pages in memory until
   * the commit, and they grow with the input. */
  size_t bytes;
  /* Set by the submitter: the op is one of a stream of many (an Ingest
   * message), where throughput counts and its caller waits for all of them.
   * Other ops go ahead of queued bulk ops, and a group that takes them
   * takes at most GD_WRITER_SHARE_BYTES of bulk input beside them. When an
   * op someone waits on (neither bulk nor linger) is queued while a group
   * of bulk ops is applied, once the group has run GD_WRITER_CUT_NS the
   * bulk ops not yet applied go back to the front of the queue and the
   * waiting ops are applied in their place, in the same commit. Bulk ops
   * keep their order among themselves, so an Ingest stream's messages
   * still apply in order. (At 1M sellers a full group of Ingest messages
   * takes seconds to apply: a single Upsert queued behind them waited
   * 6-10 s.) */
  bool bulk;
  /* Private to the writer. */
  gd_write_op *next;
  gd_err err;
};

typedef struct gd_writer gd_writer;

typedef struct gd_writer_stats {
  uint64_t commits;   /* durable group commits */
  uint64_t requests;  /* ops committed (successfully or not) */
  uint64_t grows;     /* map growths, ahead of a group or after it filled the map */
  uint64_t retries;   /* groups applied again because they filled the map */
} gd_writer_stats;

/*
 * Starts the writer thread on s. max_group bounds how many ops share one
 * commit (0 = 1024). Errors: GD_ENOMEM, GD_EIO (thread creation).
 */
int gd_writer_start(gd_store *s, unsigned max_group, gd_writer **ret, gd_err *err);

/*
 * Queues op. Never blocks on I/O. After gd_writer_stop() has begun, op->done
 * is called at once with GD_EUNAVAILABLE. Thread-safe.
 */
void gd_writer_submit(gd_writer *w, gd_write_op *op);

/* Number of ops queued or being applied. Thread-safe. */
uint64_t gd_writer_pending(gd_writer *w);

void gd_writer_stats_get(gd_writer *w, gd_writer_stats *ret);

/*
 * Observes group commits (for metrics; NULL = none): after each durable
 * group commit, fn(ctx, ops, ns) runs on the writer thread with the number
 * of ops the group held and the nanoseconds from the group's first
 * transaction begin to its commit's return (applying, map growth and
 * retries, fsync), before the ops' done callbacks. fn must be cheap and
 * must not submit. Set it before the first gd_writer_submit.
 */
void gd_writer_observe(gd_writer *w, void (*fn)(void *ctx, size_t ops, int64_t ns), void *ctx);

/*
 * Commits everything queued, stops the thread and frees w. Accepts NULL.
 * Ops submitted afterwards fail with GD_EUNAVAILABLE; none may be submitted
 * after this returns.
 */
void gd_writer_stop(gd_writer *w);

#endif
