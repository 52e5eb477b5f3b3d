/*
 * Stable cluster ids and snapshot diffs (README, "For analytics jobs":
 * "Stable ids").
 *
 * A clustering run numbers its clusters 0..k-1; those numbers mean nothing
 * from one run to the next. gd_match_snapshots gives each new cluster a
 * stable id: the id of the previous snapshot's cluster it is "the same
 * as", or a fresh one, and describes what changed.
 *
 * Definitions. Sellers are numbered 0..n-1 alike in both snapshots (the
 * caller aligns them by store id). A is an old cluster (the set of sellers
 * whose previous id is A), B a new cluster (the sellers with new index B);
 * |A|, |B| count every seller of the cluster, |A & B| those in both.
 *
 * - Matching. J(A, B) = |A & B| / |A | B| (Jaccard). Every pair with
 *   J >= 1/2 is a candidate. Candidates are taken strongest first (higher
 *   J; on equal J the smaller old id, then the smaller new index); a
 *   candidate is accepted if neither its A nor its B is taken yet, and then
 *   B inherits A's id. So each old id goes to at most one new cluster.
 *   (J >= 1/2 means the two share more than half of their union, so in
 *   practice an old cluster has one candidate; two only at exactly 1/2.)
 *   Comparisons are exact integer arithmetic, no floating point.
 * - Fresh ids. New clusters without a match get fresh ids from *next_id in
 *   order of their index (deterministic).
 * - Moved seller: in both snapshots, and its old id differs from its new
 *   cluster's id (including sellers of a dissolved or born cluster).
 * - Continued: a matched pair (B inherited A's id).
 * - Merged: a new cluster B holding at least half of each of two or more
 *   old clusters (2 |A & B| >= |A| for each of them). Listed with those old
 *   ids; B may also have continued one of them (the one it matched).
 * - Split: an old cluster A such that two or more new clusters each draw
 *   at least half of their own members from A (2 |A & B| >= |B|): the dual
 *   of a merge. Listed with those new clusters' ids; one of them may have
 *   continued A's id.
 * - Born: a new cluster with a fresh id that no merge made and no split
 *   gave (those are reported by their merge or split only).
 * - Dissolved: an old id that no new cluster inherited, that went into no
 *   merge and was not split (reported by its merge or split only). So each
 *   cluster is in one event, and the summary's counts add up.
 * - Small clusters: clusters with fewer than min_part_size sellers take
 *   no part in the event lists (not born, dissolved, a merge source or a
 *   split part; a continued pair is listed if either side is large
 *   enough). With CPM most sellers are singletons, and a singleton joining
 *   a ring is a move, not a merge. Their ids are still matched and issued,
 *   and their sellers still appear in moves.
 *
 * No igraph, no LMDB: plain arrays in and out. Deterministic.
 */
#ifndef GD_ALGORITHMS_MATCH_H
#define GD_ALGORITHMS_MATCH_H

#include <stdint.h>

#include "alg_common.h"

/* A seller whose cluster id changed. */
typedef struct gd_match_move {
  int64_t seller, from, to;
} gd_match_move;

/* A new cluster that kept an old id. */
typedef struct gd_match_continued {
  int64_t id;
  int64_t old_size, new_size, overlap;
} gd_match_continued;

/*
 * A merge (id = the new cluster's id, parts = the old ids merged into it)
 * or a split (id = the old cluster's id, parts = the ids of the new
 * clusters it split into). parts is ascending; size is the new cluster's
 * size for a merge, the old cluster's for a split.
 */
typedef struct gd_match_group {
  int64_t id;
  int64_t size;
  int64_t n_parts;
  const int64_t *parts;
} gd_match_group;

typedef struct gd_match_summary {
  int64_t sellers;         /* n */
  int64_t sellers_added;   /* new cluster, no old one */
  int64_t sellers_removed; /* old cluster, no new one */
  int64_t sellers_moved;
  int64_t sellers_stayed;  /* same id in both */
  int64_t clusters_old;
  int64_t clusters_new;    /* non-empty new clusters */
  int64_t ids_inherited;   /* new clusters that kept an old id, all sizes */
  int64_t ids_fresh;       /* new clusters with a fresh id, all sizes */
  int64_t continued, merged, split, born, dissolved; /* listed events */
} gd_match_summary;

/*
 * Everything the match produces; free with gd_match_result_free. Every
 * list is sorted: moves by seller, continued/born/dissolved by id,
 * merges/splits by id.
 */
typedef struct gd_match_result {
  int64_t n_new;   /* new cluster indices 0..n_new-1 */
  int64_t *new_id; /* stable id of each new cluster; -1 for an index no seller has */
  gd_match_move *moves;
  int64_t n_moves;
  gd_match_continued *continued;
  int64_t n_continued;
  gd_match_group *merges;
  int64_t n_merges;
  gd_match_group *splits;
  int64_t n_splits;
  int64_t *born;
  int64_t n_born;
  int64_t *dissolved;
  int64_t n_dissolved;
  gd_match_summary summary;
  int64_t *parts_pool; /* storage behind merges[].parts and splits[].parts */
} gd_match_result;

/* The default for min_part_size. */
#define GD_MATCH_MIN_PART_SIZE 2

/*
 * Matches a new clustering to the previous snapshot and diffs them.
 *
 * n: sellers. prev_id[s]: seller s's cluster id in the previous snapshot
 *   (any value >= 0), or negative if s was not in it (prev_id may be NULL
 *   for a first snapshot: every cluster is born). cur[s]: s's new cluster
 *   index in [0, n), or negative if s is not in the new snapshot.
 * min_part_size: see "Small clusters" above (>= 1; GD_MATCH_MIN_PART_SIZE
 *   is the default).
 * next_id: in/out counter for fresh ids. Fresh ids start at the larger of
 *   *next_id and (largest old id + 1), so they never collide with an old
 *   id; on success *next_id is one past the last id issued (or that
 *   start, if none was). Keep it in the snapshot manifest.
 * ret: on success, the result (free with gd_match_result_free).
 *
 * Cost: O(n) expected (hash maps for old ids and for the overlap counts)
 * plus O(p log p) to order the p <= n distinct (old, new) overlaps and
 * O(c log c) for the c old ids; p is close to the number of clusters in
 * practice. Memory O(n).
 *
 * Errors: INVALID (a label >= n, min_part_size < 1, NULL arrays), NOMEM.
 */
gd_alg_status gd_match_snapshots(int64_t n, const int64_t *prev_id, const int64_t *cur,
                                 int64_t min_part_size, int64_t *next_id, gd_match_result *ret,
                                 gd_alg_error *err);

/*
 * Diffs two stored snapshots whose ids are already assigned (DiffSnapshots):
 * the same definitions as above, except that nothing is matched: a new
 * cluster "continues" the old cluster with the same id when the two share
 * at least one seller, is born when no old cluster has its id, and an old
 * id no new cluster carries (with a shared seller) is dissolved. For a
 * snapshot and the one it was matched against, the events equal those of
 * gd_match_snapshots, up to sellers present in only one of the two.
 *
 * n: sellers in either snapshot, numbered alike. old_id[s], new_id[s]:
 *   s's cluster id in each (>= 0), or negative if absent from it.
 * ret->new_id lists the new ids (ascending; new index i has id new_id[i]).
 * Cost: as gd_match_snapshots plus O(c log c) for the new ids.
 * Errors: INVALID (NULL arrays, min_part_size < 1), NOMEM.
 */
gd_alg_status gd_match_diff(int64_t n, const int64_t *old_id, const int64_t *new_id,
                            int64_t min_part_size, gd_match_result *ret, gd_alg_error *err);

/* Frees everything in r and resets it. NULL-safe. */
void gd_match_result_free(gd_match_result *r);

#endif
