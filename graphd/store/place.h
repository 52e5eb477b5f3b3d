/*
 * store/place: what fresh clustering keeps between snapshots
 * (docs/ARCHITECTURE.md, "Fresh clusters").
 *
 *      dirty        seller (u64 BE) -> i64 LE: unix nanoseconds of the
 *                                      write that last changed its ties
 *                                      (also the row's version: see
 *                                      gd_store_dirty_clear)
 *      prov         seller (u64 BE) -> placement (gd_prov, 56 bytes LE)
 *      prov_member  snapshot (u64 BE) + cluster (u64 BE) -> dupsort,
 *                                      dupfixed seller ids (u64 BE)
 *      alert        seq (u64 BE, from 1) -> event (opaque bytes; the rpc
 *                                      layer packs a graphd.v1 AlertEvent)
 *
 * `dirty` is the placement queue, kept in LMDB so that it commits with
 * the write that fills it: a seller whose ties a committed write changed
 * is placed even if the daemon stops before placing it. Writes mark
 * sellers (gd_store_upsert: every seller endpoint of a link, and both
 * sides of a new seller-seller link; gd_store_delete: the deleted seller
 * and every seller linked to the deleted entity) only once marking is on
 * (gd_store_place_config); while the table holds `max` rows, new marks
 * are shed and counted instead, so a flood of writes never waits for
 * placement and the queue never grows without bound.
 *
 * `prov` holds one placement per seller, made against one snapshot;
 * prov_member is its inverse for the placed sellers of a cluster. Rows
 * made against an older snapshot are stale: readers compare snapshot ids,
 * and gd_store_prov_rebase moves their sellers back into `dirty`.
 *
 * `alert` is a bounded log: gd_store_alert_append drops the oldest
 * events beyond `keep`. Sequence numbers come from the meta counter
 * "alert.next_seq" and are never reused, so a client can resume after
 * any restart.
 *
 * Errors and lifetime as in store.h.
 */
#ifndef GD_STORE_PLACE_H
#define GD_STORE_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- the queue ---------------------------------------------------------- */

/*
 * Turns marking on (max > 0: at most max rows queued) or off (0, the
 * default: writes mark nothing). Thread-safe; takes effect for the next
 * write.
 */
void gd_store_place_config(gd_store *s, uint64_t max);

/* Marks shed because the queue was full, since the store was opened. */
uint64_t gd_store_place_shed(gd_store *s);

/* Rows queued now. Errors: GD_EIO. */
int gd_store_dirty_count(gd_rtxn *r, uint64_t *ret, gd_err *err);

/*
 * The first (lowest seller id) queued rows, at most max, into sellers and
 * stamps (capacity max). *ret_n gets how many. Errors: GD_EIO,
 * GD_EINTERNAL (a row of the wrong size).
 */
int gd_store_dirty_list(gd_rtxn *r, size_t max, uint64_t *sellers, int64_t *stamps,
                        size_t *ret_n, gd_err *err);

/*
 * Removes seller's row if it still holds stamp (a later write marked it
 * again: the row stays, so the seller is placed again). Errors:
 * GD_EMAPFULL, GD_EIO.
 */
int gd_store_dirty_clear(gd_wtxn *t, uint64_t seller, int64_t stamp, gd_err *err);

/* Queues seller (used by writes and by rebase). Does not shed. Errors:
 * GD_EMAPFULL, GD_EIO. */
int gd_store_dirty_mark(gd_wtxn *t, uint64_t seller, gd_err *err);

/* ---- placements ---------------------------------------------------------- */

typedef struct gd_prov {
  uint64_t snapshot;  /* made against this snapshot */
  uint64_t cluster;   /* 0 = a singleton */
  uint64_t previous;  /* the cluster it had before (0 = none) */
  uint64_t size;      /* the cluster's size in the snapshot */
  double risk;        /* the cluster's risk in the snapshot */
  double gain, tie;
  int64_t placed_at;  /* unix milliseconds */
} gd_prov;

/* seller's placement. Errors: GD_ENOTFOUND (none), GD_EINTERNAL, GD_EIO. */
int gd_store_prov_get(gd_rtxn *r, uint64_t seller, gd_prov *ret, gd_err *err);

/* Writes (p != NULL) or removes (p == NULL; none is not an error) seller's
 * placement, keeping prov_member in step. Errors: GD_EINVALID (snapshot 0),
 * GD_EMAPFULL, GD_EIO, GD_EINTERNAL. */
int gd_store_prov_put(gd_wtxn *t, uint64_t seller, const gd_prov *p, gd_err *err);

/*
 * Sellers placed in cluster of snapshot snap with id > after, ascending, at
 * most max into ret (capacity max); *ret_more if more follow.
 * Errors: GD_EIO.
 */
int gd_store_prov_members(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                          size_t max, uint64_t *ret, size_t *ret_n, bool *ret_more,
                          gd_err *err);

/*
 * Requeues the seller of every placement made against a snapshot other
 * than snap and removes the placement. *ret_n gets how many. O(placements).
 * Errors: GD_EMAPFULL, GD_EIO, GD_EINTERNAL.
 */
int gd_store_prov_rebase(gd_wtxn *t, uint64_t snap, uint64_t *ret_n, gd_err *err);

/* ---- alerts -------------------------------------------------------------- */

#define GD_ALERT_MAX_BYTES (64 * 1024)

/*
 * Appends an event (1..GD_ALERT_MAX_BYTES bytes) and drops the oldest ones
 * while more than keep (>= 1) are kept. *ret_seq gets its sequence number.
 * Errors: GD_EINVALID (size), GD_EMAPFULL, GD_EIO, GD_EINTERNAL.
 */
int gd_store_alert_append(gd_wtxn *t, const void *ev, size_t len, uint64_t keep,
                          uint64_t *ret_seq, gd_err *err);

/* The oldest kept and the last written sequence numbers (0, 0 before the
 * first event; oldest > last when every event was dropped: never, since
 * keep >= 1). Errors: GD_EIO. */
int gd_store_alert_bounds(gd_rtxn *r, uint64_t *ret_oldest, uint64_t *ret_last, gd_err *err);

/* Calls fn with each kept event of seq > after, ascending (views), until fn
 * returns non-zero. Errors: GD_EIO. */
typedef int (*gd_alert_fn)(void *ctx, uint64_t seq, const void *ev, size_t len);
int gd_store_alert_visit(gd_rtxn *r, uint64_t after, gd_alert_fn fn, void *ctx, gd_err *err);

#endif
