/*
 * Snapshot formats: what the clustering worker writes into the opaque
 * blobs of the snapshot tables (store/snapshot.h), so that the rpc layer
 * can read them back. Depends on core/ only (library gd_snapfmt).
 *
 * ---- Cluster summary (table snap_cluster), binary, little-endian ----
 *
 *   off  size
 *    0    1   format (GD_SUMMARY_FORMAT = 1)
 *    1    1   n_top: number of top entities that follow (0..5)
 *    2    1   flags: bit 0 (GD_SUMMARY_LINKS) = the cluster's links are
 *               kept (store/snapshot.h, snap_link)
 *    3    5   reserved, 0
 *    8    8   size: sellers in the cluster (u64)
 *   16    8   flagged: sellers carrying any of the spec's flagged labels (u64)
 *   24    8   risk (f64): gd_summary_risk (below)
 *   32    8   cohesion (f64): internal / (internal + boundary); 0 if both are 0
 *   40    8   internal (f64): summed weight of the ties inside the cluster
 *   48    8   boundary (f64): summed weight of the ties leaving it
 *   56   24n  top entities, best first, each:
 *               u64 (type << 56 | entity id)   (as the store's adjacency prefix)
 *               u64 users: sellers of the cluster linked to it (in the window)
 *               u64 total: the entity's seller count (all time, from its record)
 *
 * Decoders accept trailing bytes (later fields are appended, the format
 * number stays) and reject a larger format number (incompatible change).
 *
 * Meaning:
 * - risk: the share flagged, smoothed towards the snapshot's base rate
 *   (gd_summary_risk below has the formula and why).
 * - cohesion: 1 = no evidence leaves the cluster; near 0 = the cluster is
 *   mostly tied to the outside (or, for a singleton, has no tie inside).
 *   Weights are those of the projection (hubs excluded).
 * - top entities ("supply sources") are ranked over all of the cluster's
 *   links, hubs included, by score = users * (users / total): sellers of
 *   the cluster using it times the share of its sellers that are in the
 *   cluster (a warehouse used by 85 of 90 members outranks a logistics park
 *   used by 5 members and 3,000 others). Ties: more users first, then the
 *   smaller entity id. Only entities used by at least 2 sellers of the
 *   cluster are listed ("shared"), so singletons list none, and never an
 *   entity the evidence rule calls context (algorithms/evidence.h).
 *
 * - links kept: the worker keeps the links a drawing needs (snap_link:
 *   every link of each member; detailed names of the members and the
 *   entities they link to) for every
 *   cluster of 2 or more sellers with a flagged one, the clusters a
 *   report can list; of a cluster over GD_LINKS_MAX_MEMBERS members, those
 *   of its GD_LINKS_MAX_MEMBERS lowest-id members.
 *
 * ---- Cluster orders (table snap_order), 24-byte rows, memcmp order ----
 *
 *   GD_ORDER_RISK        every cluster: risk, then size, descending; then id
 *   GD_ORDER_SIZE        every cluster: size, then risk, descending; then id
 *   GD_ORDER_RISK_MULTI  as GD_ORDER_RISK, clusters of 2 or more sellers only
 *
 *   row: u64 BE ~a, u64 BE ~b, u64 BE cluster id, with (a, b) = (bits of
 *   risk, size) or (size, bits of risk). Risk is >= 0, so its IEEE-754
 *   bits order as its value; the complements make memcmp order descending.
 *   ListClusters pages through these rows (O(page)) and its page token
 *   is the last row sent.
 *
 * ---- Manifest (table snap), JSON object, UTF-8 ----
 *
 * Written by graphd-worker (worker.h), format 1. Fields (all present
 * unless noted; figures that are undefined, e.g. the modularity of a graph
 * without ties, are null):
 *
 *   format            1
 *   snapshot_id       this snapshot's id
 *   name              the spec's name ("" if none)
 *   created_at        unix seconds when the worker encoded it
 *   previous_snapshot_id   the snapshot stable ids were matched against, or null
 *   spec              the effective spec (defaults filled in): algorithm,
 *                     resolution, beta, iterations, threshold, seed,
 *                     min_tie_weight, since, until, flagged_labels [..],
 *                     hub_caps {type: n}, type_weights {type: w},
 *                     previous (as given: -1 none, 0 latest, or an id),
 *                     warm_start ("auto", "on" or "off"; absent in
 *                     snapshots written before it existed: auto)
 *   warm_started      true when Leiden started from the membership of
 *                     previous_snapshot_id (worker.h, warm_start), false
 *                     for a cold run from singletons (absent before: false)
 *   input             checksum (SHA-256 hex of the exported arrays,
 *                     store/snapshot.h), sellers, entities, incidences,
 *                     links, records_read, rows_read, read_at_ns (unix
 *                     nanoseconds just before the graph's read
 *                     transaction began: writes committed before it are in
 *                     the snapshot; the placer uses it, rpc/place.c)
 *   projection        entities_used, entities_single, entities_zero_weight,
 *                     hubs_skipped, hubs_skipped_by_type {type: n},
 *                     hub_incidences_skipped, links_used, pair_visits, ties,
 *                     ties_filtered
 *   result            clusters, singletons, largest_cluster, flagged_sellers,
 *                     objective (the algorithm's own), modularity,
 *                     iterations, igraph_warnings, links_kept_clusters
 *                     (clusters whose links were kept), links_kept (rows)
 *   stable_ids        next_cluster_id (fresh ids of the next run start
 *                     here), inherited, fresh, sellers_stayed,
 *                     sellers_moved, sellers_added, sellers_removed,
 *                     continued, merged, split, born, dissolved
 *                     (gd_match_summary, algorithms/match.h)
 *   limits            max_sellers, max_ties
 *   timings_ms        open, read, project, cluster, match, summarize,
 *                     total (up to the write, which is not included)
 *   peak_rss_bytes    the worker's VmHWM (/proc/self/status) before the write
 *   versions          graphd, igraph
 */
#ifndef GD_WORKER_SNAPFMT_H
#define GD_WORKER_SNAPFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define GD_MANIFEST_FORMAT 1

#define GD_SUMMARY_FORMAT 1
#define GD_SUMMARY_TOP 5
#define GD_SUMMARY_HDR 56
#define GD_SUMMARY_ENTITY 24
#define GD_SUMMARY_MAX (GD_SUMMARY_HDR + GD_SUMMARY_TOP * GD_SUMMARY_ENTITY)

typedef struct gd_summary_entity {
  uint64_t id;
  int type;
  uint64_t users, total;
} gd_summary_entity;

#define GD_SUMMARY_LINKS 1
#define GD_LINKS_MAX_MEMBERS 5000

typedef struct gd_cluster_summary {
  uint64_t size, flagged;
  bool links_kept; /* GD_SUMMARY_LINKS */
  double risk, cohesion, internal, boundary;
  int n_top;
  gd_summary_entity top[GD_SUMMARY_TOP];
} gd_cluster_summary;

/*
 * Risk: the share flagged, smoothed towards the snapshot's base rate p (all
 * flagged sellers / all sellers) with GD_RISK_PRIOR pseudo-sellers:
 *   risk = (flagged + GD_RISK_PRIOR * p) / (size + GD_RISK_PRIOR).
 * An unflagged singleton scores about p; a cluster needs several flagged
 * members to score high, so ranking by risk puts flagged rings before
 * lone flagged sellers and far before unflagged ones.
 */
#define GD_RISK_PRIOR 5.0
double gd_summary_risk(uint64_t flagged, uint64_t size, double base_rate);

/* users * users / max(total, users): the supply-source score. */
double gd_summary_score(uint64_t users, uint64_t total);

#define GD_ORDER_RISK 0
#define GD_ORDER_SIZE 1
#define GD_ORDER_RISK_MULTI 2

/* The row of cluster id in order (GD_ORDER_*) into row (24 bytes). */
void gd_order_row(int order, uint64_t id, uint64_t size, double risk, uint8_t *row);
/* The cluster id and size of a row of order. */
void gd_order_row_decode(int order, const uint8_t *row, uint64_t *ret_id, uint64_t *ret_size);

/* Encodes s into buf (GD_SUMMARY_MAX bytes); returns the length. */
size_t gd_summary_encode(const gd_cluster_summary *s, uint8_t *buf);

/* Decodes a summary. Errors: GD_EINTERNAL (too short, unknown format, an
 * n_top over GD_SUMMARY_TOP). */
int gd_summary_decode(const void *raw, size_t len, gd_cluster_summary *ret, gd_err *err);

#endif
