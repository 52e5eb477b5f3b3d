/*
 * store/snapshot: what clustering reads from the store and what it writes
 * back (docs/ARCHITECTURE.md, "The store" and "Clustering jobs").
 *
 * 1. gd_store_export_graph: one consistent read of everything clustering
 *    needs, as plain arrays laid out exactly like gd_projection_input
 *    (algorithms/projection.h), so the worker hands them over without a
 *    copy. The store does not depend on algorithms/: the types simply match.
 *
 * 2. Snapshot tables. A snapshot is a manifest, every seller's cluster id,
 *    and one summary per cluster. Manifests and summaries are opaque byte
 *    blobs to the store; the worker encodes them (graphd/worker/snapfmt.h
 *    documents both formats) and the rpc layer decodes them.
 *
 *      snap          id (u64 BE)                 -> 32-byte header + manifest
 *      snap_assign   id (u64 BE)                 -> dupsort, dupfixed 16-byte rows:
 *                                                   seller id (u64 BE), cluster id (u64 BE)
 *      snap_cluster  id (u64 BE) + cluster (u64 BE) -> summary blob
 *      snap_member   id (u64 BE) + cluster (u64 BE) -> dupsort, dupfixed 8-byte
 *                                                   rows: seller id (u64 BE)
 *      snap_tie      id (u64 BE) + cluster (u64 BE) -> dupsort, dupfixed 24-byte
 *                                                   rows: seller a, seller b
 *                                                   (a < b), weight (IEEE-754
 *                                                   bits), each u64 BE
 *      snap_name     id (u64 BE) + entity (u64 BE) -> u8 type, u8 flags (bit 0:
 *                                                   flagged, bit 1: detail),
 *                                                   [detail], the entity's key
 *      snap_link     id (u64 BE) + cluster (u64 BE) -> dupsort, dupfixed 40-byte
 *                                                   rows: seller, entity, first
 *                                                   seen, last seen, count,
 *                                                   each u64 BE
 *      snap_order    id (u64 BE) + order (u8)   -> dupsort, dupfixed 24-byte
 *                                                   rows, opaque here
 *                                                   (worker/snapfmt.h), in
 *                                                   memcmp order
 *
 *    snap_member is the inverse of snap_assign, so a cluster's members are
 *    one range read instead of a scan of every assignment. snap_tie holds
 *    the evidence ties that hold each cluster together (the worker stores
 *    a maximum spanning forest of the cluster's internal ties: at most
 *    size - 1 rows a cluster, the strongest that connect it).
 *
 *    snap_name keeps what the snapshot says about the entities it names,
 *    as they were when it was taken: every seller's key and whether it
 *    carried one of the spec's flagged labels, and each supply source's
 *    type and key. Reads of the snapshot take names from here, never from
 *    the live graph, so a snapshot answers the same whatever is labelled,
 *    deleted or added later. (Snapshots written before the table existed
 *    have no rows: readers fall back to the live records.)
 *
 *    snap_link keeps the links that drawings of a cluster need, as they
 *    were: for the clusters the worker chooses (worker/snapfmt.h: those of
 *    2 or more sellers holding a flagged one), every link of each member
 *    (in the spec's time window), sorted by (seller, entity). Every member
 *    and every non-seller entity they link to then has a detailed name: after the two
 *    bytes, i64 first_seen, i64 last_seen, u64 seller_count (all
 *    little-endian), u16 LE label count, u32 LE label bytes, the labels
 *    (the entity record's labels region, copied: each a u16 length in the
 *    record's byte order + bytes, sorted), then
 *    the key. A drawing of such a cluster needs nothing from the live
 *    graph.
 *
 *    Why assignments are dupsort rows under the snapshot id rather than one
 *    key per (snapshot, seller): rows are 16 bytes with no per-key node
 *    overhead (~2x smaller), a whole page of them comes back in one
 *    MDB_GET_MULTIPLE (StreamAssignments' target is >= 5M/s), deleting a
 *    snapshot's assignments is one mdb_del of the key, and since a seller
 *    has one row per snapshot, memcmp order of (seller, cluster) is seller
 *    order: a point lookup is one MDB_GET_BOTH_RANGE on (seller, 0).
 *
 *    The snap header (little-endian): u32 format (1), u32 reserved,
 *    u64 assignments, u64 clusters, i64 commit time (unix seconds); the
 *    manifest follows. Counts live there so listing needs no scan.
 *
 *    Snapshot ids come from the meta counter "snap.next_id" (first id 1)
 *    and are never reused, so "latest" is the largest id.
 *
 * Errors and lifetime follow store.h: every function returns GD_OK or a
 * gd_errno code and fills err (may be NULL); *_view data points into the
 * map and is valid only until the transaction ends. Writes run in the
 * caller's write transaction (gd_wtxn): the writer thread's, or the
 * clustering worker's own (gd__wtxn_begin / gd__wtxn_commit).
 */
#ifndef GD_STORE_SNAPSHOT_H
#define GD_STORE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ------------------------------------------------------------------ */
/* Graph export                                                        */

/*
 * Everything clustering reads, as malloc'd arrays (free with
 * gd_graph_export_free). Sellers are numbered 0..n_sellers-1 in ascending
 * store id; entities 0..n_entities-1 in ascending store id.
 *
 * - sellers: every seller entity whose [first_seen, last_seen] overlaps
 *   [since, until] (0 = open; with both open, every seller), linked or
 *   not: a snapshot assigns every seller.
 * - entities: the non-seller entities with at least one seller link in
 *   the window. Entity e's sellers are ent_sellers[ent_off[e] ..
 *   ent_off[e + 1]), ascending seller indices, each once. ent_n[e] is the
 *   entity's all-time seller count from its record (evidence and hub tests
 *   use it, so a windowed run weighs an entity as the store knows it).
 * - links: direct seller-seller links in the window between exported
 *   sellers, each undirected link once, link_a[i] < link_b[i], sorted by
 *   (link_b, link_a).
 * A link row is in the window when its [first_seen, last_seen] overlaps
 * [since, until] (0 = open), as for gd_store_visit_links.
 *
 * The walk reads the whole data file once: every 2^20 records it drops
 * the map's pages from the process's resident set (gd_store_drop_resident),
 * so its RSS is the arrays it builds, not the file it read.
 *
 * checksum: SHA-256 (lower-case hex) over, in order: the ASCII tag
 * "graphd-export-1", since, until, n_sellers, n_entities, n_links (each
 * i64), then seller_ids, ent_ids, ent_type, ent_off, ent_sellers, ent_n,
 * link_a, link_b, every integer little-endian at its array's width. Equal
 * checksums mean equal clustering input.
 */
typedef struct gd_graph_export {
  int64_t since, until;     /* the window it was read with */
  int64_t n_sellers;
  uint64_t *seller_ids;     /* n_sellers, ascending */
  int64_t n_entities;
  uint64_t *ent_ids;        /* n_entities, ascending */
  uint8_t *ent_type;        /* n_entities, graphd.v1 EntityType (2..7) */
  int64_t *ent_off;         /* n_entities + 1 */
  int64_t *ent_sellers;     /* ent_off[n_entities] seller indices */
  uint64_t *ent_n;          /* n_entities */
  int64_t n_incidences;     /* == ent_off[n_entities] */
  int64_t n_links;
  int64_t *link_a, *link_b; /* n_links seller indices each */
  /* Work done, for the manifest: entity records and adjacency rows read. */
  uint64_t records_read, rows_read;
  uint64_t txn;             /* the LMDB transaction it reflects (image.c) */
  char checksum[65];
  /* Non-NULL for an export gd_export_image_load made: the arrays point
   * into this read-only mapping of the image file (map_len bytes), and
   * must not be written or freed one by one. */
  void *map;
  size_t map_len;
} gd_graph_export;

/*
 * Reads the graph in one pass of the read transaction r: a cursor on
 * `entity` and a cursor on `adj` walk the tables side by side in key order
 * (a merge join on id); adjacency rows come a page at a time
 * (MDB_GET_MULTIPLE / MDB_NEXT_MULTIPLE), and since rows sort by
 * (neighbour type, id) and SELLER is the smallest type, only the seller
 * prefix of each list is read: an entity's sellers, a seller's direct
 * links. Incidences are collected as seller ids and turned into indices at
 * the end through a dense id -> index map.
 *
 * Time: O(E + I + L + P) where E is the number of entity records, I the
 * seller rows of non-seller entities (the incidences), L the seller rows of
 * sellers (twice the direct links) and P the adjacency pages touched (at
 * most one per seller or entity beyond those rows); no sort, no hash.
 * Memory: O(S + N + I + L) for the result (S sellers, N entities) plus a
 * 4-byte map entry per entity id up to the largest id (ids are dense:
 * they come from one counter). Nothing else is materialised. With an open
 * window the arrays are sized once from the store's counters (all sellers,
 * all entity records, all links: tight upper bounds then), so no array is
 * ever copied while growing; with a window they grow by doubling.
 * Measured: about 0.5 s in a fresh process for 200k sellers, 1.26M entities,
 * 1.39M adjacency rows read (sellergen --sellers 200000).
 *
 * since, until: the time window (unix seconds; 0 = open; since <= until
 * when both are set). On success *ret owns the arrays; on failure *ret is
 * zeroed. The arrays never point into the map: they outlive r.
 *
 * Errors: GD_EINVALID (since > until, negative times), GD_ERESOURCE (more
 * than 2^31 - 1 sellers), GD_ENOMEM, GD_EINTERNAL (a corrupt record or
 * row), GD_EIO.
 */
int gd_store_export_graph(gd_rtxn *r, int64_t since, int64_t until, gd_graph_export *ret,
                          gd_err *err);

/* Frees x's arrays (or unmaps its image) and zeroes it. Accepts NULL and
 * a zeroed export. */
void gd_graph_export_free(gd_graph_export *x);

/* ------------------------------------------------------------------ */
/* Export images and the graph change log (image.c)                    */
/*
 * A clustering job keeps its export (open window only) in a file beside
 * the data, an image, and names it in its snapshot's manifest. The next
 * job that starts warm from that snapshot loads the image and re-reads
 * only what changed since (gd_store_export_patch) instead of the whole
 * graph. What changed comes from the graph change log, table `glog`: each
 * commit that marks an entity changed (store_int.h, gd__ver_mark) appends
 * the ids it marked under its transaction id. The log holds every change
 * of the commits after meta "glog.floor"; a bulk load, or a log grown past
 * GD_GLOG_MAX_IDS ids, empties it and moves the floor, so older images
 * stop being usable (their jobs read the whole graph). Jobs trim it
 * (gd_store_glog_trim).
 *
 * An image is an optimisation, never a source of truth: a missing,
 * foreign (nonce), stale (floor) or damaged (SHA-256) image makes the job
 * read the whole graph, and a patched export's checksum is by
 * construction the one a full read of the same transaction gives
 * (tests/unit/test_store.c checks it).
 */

#define GD_GLOG_MAX_IDS (UINT64_C(1) << 24)
#define GD_IMAGE_DIR "images" /* under the data directory */

/* The path of snapshot snap's image, <data_dir>/images/<snap>.img, into
 * out (n bytes). Returns false when it does not fit. */
bool gd_image_path(const char *data_dir, uint64_t snap, char *out, size_t n);

/* Which image: the transaction its export reflects, and a random nonce
 * the job drew (so a file of another timeline, say after a restore from a
 * backup, never passes for it). */
typedef struct gd_image_id {
  uint64_t txn;
  uint8_t nonce[16];
} gd_image_id;

/*
 * Writes x (an open-window export) to `path` with id in its header: the
 * arrays, raw, after a header with the export's checksum. Written to
 * path + ".tmp" and renamed, not fsync'd: a torn file fails its checksum
 * on load. Errors: GD_EINVALID (a windowed export, or one without its
 * checksum), GD_EIO.
 */
int gd_export_image_save(const gd_graph_export *x, const gd_image_id *id, const char *path,
                         gd_err *err);

/*
 * Loads the image at `path` into *ret (owned by the caller; zeroed on
 * failure) and checks it: header, size, id == *want, and the SHA-256 of
 * its arrays against its checksum. The arrays are a read-only mapping of
 * the file (ret->map): no copy, and no fresh memory to fault in; input
 * for gd_graph_export_apply, which makes new arrays. Errors: GD_ENOTFOUND (no file),
 * GD_EPRECONDITION (another image: id, format or byte order), GD_EINTERNAL
 * (damaged: size or checksum), GD_ENOMEM, GD_EIO.
 */
int gd_export_image_load(const char *path, const gd_image_id *want, gd_graph_export *ret,
                         gd_err *err);

/* What a patch read. */
typedef struct gd_patch_stats {
  uint64_t log_entries; /* change log entries read */
  uint64_t changed;     /* distinct ids re-read */
  uint64_t rows_read;   /* their adjacency rows read */
} gd_patch_stats;

/* The changes of a span of transactions, as read by gd_store_changes_read. */
typedef struct gd_graph_changes gd_graph_changes;

/*
 * Reads what changed after transaction `since` up to r: the change log's
 * ids, and each one's record and seller rows as r sees them. Needs no
 * export, so it can run while an image loads. *ret is the caller's
 * (gd_graph_changes_free).
 * Errors: GD_EPRECONDITION (the log does not reach back to `since`, or
 * `since` is newer than r), GD_ENOMEM, GD_EINTERNAL (a corrupt record or
 * row), GD_EIO.
 */
int gd_store_changes_read(gd_rtxn *r, uint64_t since, gd_graph_changes **ret, gd_err *err);

void gd_graph_changes_stats(const gd_graph_changes *c, gd_patch_stats *ret);

/* Accepts NULL. */
void gd_graph_changes_free(gd_graph_changes *c);

/*
 * Applies c to x, an open-window export of transaction c's `since`: x
 * becomes the export of c's last transaction, array for array what a full
 * read in it gives (records_read and rows_read count the patch's reads),
 * except that x->checksum is empty: gd_graph_export_checksum computes it
 * (about 0.1 s per 200 MB; a caller may do it on a thread).
 * Time O(S + N + I + L + R log S) for R changed rows; memory: a second set
 * of arrays while it runs. On failure x is unchanged.
 * Errors: GD_EINVALID (a windowed export, or one of another transaction),
 * GD_ERESOURCE (more than 2^31 - 1 sellers), GD_ENOMEM.
 */
int gd_graph_export_apply(gd_graph_export *x, const gd_graph_changes *c, gd_err *err);

/* Computes x->checksum (the SHA-256 gd_store_export_graph gives).
 * Errors: GD_EINTERNAL. */
int gd_graph_export_checksum(gd_graph_export *x, gd_err *err);

/*
 * gd_store_changes_read from x->txn, gd_graph_export_apply and
 * gd_graph_export_checksum: x brought up to r. *ret (may be NULL) says
 * what was read. On failure x is unchanged. Errors: theirs.
 */
int gd_store_export_patch(gd_rtxn *r, gd_graph_export *x, gd_patch_stats *ret,
                          gd_err *err);

/*
 * Trims the change log in t: removes the entries of transactions <= txn
 * (the oldest image still kept). Errors: GD_EMAPFULL, GD_EIO.
 */
int gd_store_glog_trim(gd_wtxn *t, uint64_t txn, gd_err *err);

/* ------------------------------------------------------------------ */
/* Snapshot writes (write transaction)                                 */

/*
 * Allocates the next snapshot id (meta "snap.next_id"; the first is 1) in
 * t. The id is used up only if t commits. Errors: GD_EMAPFULL, GD_EIO.
 */
int gd_store_snapshot_next_id(gd_wtxn *t, uint64_t *ret_id, gd_err *err);

/* Stored orders of a snapshot's clusters: how many, and the row size. */
#define GD_ORDERS 3
#define GD_ORDER_ROW 24

/* What gd_store_snapshot_put writes. Arrays are not owned. */
typedef struct gd_snapshot_in {
  const void *manifest;      /* opaque; may be empty */
  size_t manifest_len;
  /* Assignments: seller ids strictly ascending, one cluster id each. */
  size_t n_assign;
  const uint64_t *sellers;
  const uint64_t *clusters;
  /* Cluster summaries: ids strictly ascending; summary i is
   * summary_data[summary_off[i] .. summary_off[i + 1]) (n_clusters + 1
   * offsets), each at least 1 byte. */
  size_t n_clusters;
  const uint64_t *cluster_ids;
  const uint8_t *summary_data;
  const size_t *summary_off;
  /* Members, cluster by cluster in cluster_ids order: cluster i's sellers
   * are members[member_off[i] .. member_off[i + 1]), strictly ascending
   * (n_clusters + 1 offsets; NULL member_off = none stored). */
  const uint64_t *members;
  const size_t *member_off;
  /* Ties, likewise: cluster i's are ties[tie_off[i] .. tie_off[i + 1]),
   * sorted by (a, b), a < b (NULL tie_off = none stored). */
  const struct gd_snap_tie *ties;
  const size_t *tie_off;
  /* Names (snap_name): n_names entities, ids strictly ascending; entity i
   * has type name_type[i], flags name_flags[i] (GD_SNAP_FLAGGED) and key
   * name_keys[name_key_off[i] .. name_key_off[i + 1]) (n_names + 1
   * offsets). n_names 0 = none stored. */
  size_t n_names;
  const uint64_t *name_ids;
  const uint8_t *name_type, *name_flags;
  const char *name_keys;
  const size_t *name_key_off;
  /* Details (GD_SNAP_DETAIL in name_flags[i]): name_detail[i] (NULL when
   * no name has one). */
  const struct gd_snap_detail *name_detail;
  /* Links (snap_link), cluster by cluster in cluster_ids order: cluster i's
   * are links[link_off[i] .. link_off[i + 1]), sorted by (seller, entity)
   * (NULL link_off = none stored). */
  const struct gd_snap_link *links;
  const size_t *link_off;
  /* Stored orders (snap_order): order k has n_order[k] rows of
   * GD_ORDER_ROW bytes at orders[k], strictly ascending (memcmp). */
  size_t n_order[GD_ORDERS];
  const uint8_t *orders[GD_ORDERS];
} gd_snapshot_in;

#define GD_SNAP_FLAGGED 1
#define GD_SNAP_DETAIL 2

/* A detailed name's record fields at snapshot time. labels_raw: the
 * record's labels region (gd_entity_view.labels_raw), labels_len bytes
 * holding nlabels labels. */
typedef struct gd_snap_detail {
  int64_t first_seen, last_seen;
  uint64_t seller_count;
  size_t nlabels, labels_len;
  const uint8_t *labels_raw;
} gd_snap_detail;

/* A link of a cluster's member as the snapshot recorded it. */
typedef struct gd_snap_link {
  uint64_t seller, entity;
  int64_t first_seen, last_seen;
  uint64_t count;
} gd_snap_link;

/* An evidence tie inside a cluster. */
typedef struct gd_snap_tie {
  uint64_t a, b; /* seller ids, a < b */
  double weight;
} gd_snap_tie;

/*
 * Writes snapshot `id` (from gd_store_snapshot_next_id) in t: header and
 * manifest, every assignment, every summary. Rows are appended in key
 * order (MDB_APPEND/MDB_APPENDDUP when id is the newest), so a million
 * assignments cost a few thousand page writes. On error abort t: partial
 * writes are possible.
 *
 * Cost: O(n_assign + n_clusters) puts; the transaction dirties about
 * (16 n_assign + summary bytes) / 4096 pages, which LMDB caps at 128k
 * pages per transaction (GD_ERESOURCE beyond, at several million
 * clusters).
 *
 * Errors: GD_EINVALID (id 0, ids not strictly ascending, an empty summary,
 * members, ties or links out of order, names not strictly ascending, a
 * detail without name_detail, or a key over 480 bytes, a manifest over 64
 * MiB), GD_EEXISTS
 * (snapshot id exists),
 * GD_EMAPFULL (abort, grow, retry), GD_ERESOURCE (transaction too large),
 * GD_EIO.
 */
int gd_store_snapshot_put(gd_wtxn *t, uint64_t id, const gd_snapshot_in *in, gd_err *err);

/*
 * Deletes snapshot id: header and manifest, assignments and summaries.
 * Errors: GD_ENOTFOUND (no such snapshot), GD_EMAPFULL, GD_EIO.
 */
int gd_store_snapshot_delete(gd_wtxn *t, uint64_t id, gd_err *err);

/* ------------------------------------------------------------------ */
/* Snapshot reads (read transaction)                                   */

/* A snapshot's header and manifest. manifest is a view. */
typedef struct gd_snapshot_view {
  uint64_t id;
  int64_t created_at;   /* commit time of the snapshot, unix seconds */
  uint64_t n_assignments;
  uint64_t n_clusters;
  const void *manifest; /* view */
  size_t manifest_len;
} gd_snapshot_view;

/*
 * Reads snapshot id, or the latest one when id is 0.
 * Errors: GD_ENOTFOUND (no snapshot id), GD_EPRECONDITION (id 0 and no
 * snapshot exists yet), GD_EINTERNAL (corrupt header), GD_EIO.
 */
int gd_store_snapshot_get(gd_rtxn *r, uint64_t id, gd_snapshot_view *ret, gd_err *err);

/*
 * Lists snapshots newest first: those with id < before (0 = from the
 * newest), at most limit of them, into ret (capacity limit). *ret_n is the
 * number written; *ret_more is true if older ones follow (page on with
 * before = ret[*ret_n - 1].id). Views. Errors: GD_EINTERNAL, GD_EIO.
 */
int gd_store_snapshot_list(gd_rtxn *r, uint64_t before, size_t limit, gd_snapshot_view *ret,
                           size_t *ret_n, bool *ret_more, gd_err *err);

/*
 * The cluster of `seller` in snapshot snap (0 = latest). O(log n).
 * Errors: GD_ENOTFOUND (no such snapshot, or the seller is not in it: the
 * message says which), GD_EPRECONDITION (snap 0 and no snapshot), GD_EIO.
 */
int gd_store_assignment_get(gd_rtxn *r, uint64_t snap, uint64_t seller, uint64_t *ret_cluster,
                            gd_err *err);

/*
 * Calls fn with the assignments of snapshot snap (0 = latest) whose seller
 * id is > after_seller, in ascending seller order, in batches of up to
 * GD_ASSIGN_BATCH (sellers[i] -> clusters[i]; the arrays are the store's
 * scratch, valid during the call), until fn returns non-zero or the
 * snapshot ends. Reads a page of rows per step (MDB_GET_MULTIPLE).
 * *ret_snap (may be NULL) gets the snapshot id actually read.
 * Errors: GD_ENOTFOUND, GD_EPRECONDITION (snap 0 and no snapshot),
 * GD_EINTERNAL, GD_EIO.
 */
#define GD_ASSIGN_BATCH 256
typedef int (*gd_assign_fn)(void *ctx, const uint64_t *sellers, const uint64_t *clusters,
                            size_t n);
int gd_store_assignments_visit(gd_rtxn *r, uint64_t snap, uint64_t after_seller,
                               gd_assign_fn fn, void *ctx, uint64_t *ret_snap, gd_err *err);

/*
 * The summary of cluster `cluster` in snapshot snap (0 = latest), as a
 * view. Errors: GD_ENOTFOUND (no such snapshot or cluster),
 * GD_EPRECONDITION (snap 0 and no snapshot), GD_EIO.
 */
int gd_store_cluster_get(gd_rtxn *r, uint64_t snap, uint64_t cluster, const void **ret_summary,
                         size_t *ret_len, gd_err *err);

/*
 * Members of cluster `cluster` of snapshot snap (0 = latest) with seller
 * id > after, ascending, at most max of them into ret (capacity max).
 * *ret_n gets the number written, *ret_more whether more follow.
 * O(log n + max). A snapshot written before snap_member existed has no
 * rows: *ret_n is 0 and *ret_indexed false (the caller may scan the
 * assignments instead); otherwise *ret_indexed is true.
 * Errors: GD_ENOTFOUND (no such snapshot), GD_EPRECONDITION, GD_EIO.
 */
int gd_store_cluster_members(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                             size_t max, uint64_t *ret, size_t *ret_n, bool *ret_more,
                             bool *ret_indexed, gd_err *err);

/*
 * The stored ties of a cluster, strongest first (ties in weight by (a, b)),
 * at most max into ret; *ret_total is the number stored. Reads all of
 * the cluster's rows: O(size log size).
 * Errors: GD_ENOTFOUND, GD_EPRECONDITION, GD_ENOMEM, GD_EIO.
 */
int gd_store_cluster_ties(gd_rtxn *r, uint64_t snap, uint64_t cluster, size_t max,
                          gd_snap_tie *ret, size_t *ret_n, uint64_t *ret_total, gd_err *err);

/* An entity as snapshot snap recorded it (snap_name). key is a view. */
typedef struct gd_snap_name {
  int type;
  bool flagged; /* a seller that carried one of the spec's flagged labels */
  gd_str key;
  bool detail;  /* the fields below are set (members and linked entities
                   of the clusters whose links were kept) */
  gd_snap_detail d; /* labels_raw is a view; gd_snap_name_label reads it */
} gd_snap_name;

/* The i-th label (< d.nlabels) of a detailed name. A view. */
gd_str gd_snap_name_label(const gd_snap_name *nm, size_t i);

/*
 * Calls fn with the stored links (snap_link) of cluster `cluster` of
 * snapshot snap (an explicit id) whose seller is in (after, upto], in
 * (seller, entity) order, until fn returns non-zero. *ret_kept is false
 * when the cluster has no rows (its links were not kept). O(log n + rows
 * visited). Errors: GD_EINTERNAL (a row of the wrong size), GD_EIO.
 */
typedef int (*gd_snap_link_fn)(void *ctx, const gd_snap_link *l);
int gd_store_cluster_links(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                           uint64_t upto, gd_snap_link_fn fn, void *ctx, bool *ret_kept,
                           gd_err *err);

/*
 * The name snapshot snap (an explicit id) recorded for entity id. O(log n).
 * Errors: GD_ENOTFOUND (not named: the snapshot never named it, or was
 * written before names were kept; the caller may fall back to the live
 * record), GD_EINTERNAL (a corrupt row), GD_EIO.
 */
int gd_store_snapshot_name(gd_rtxn *r, uint64_t snap, uint64_t id, gd_snap_name *ret,
                           gd_err *err);

/*
 * Calls fn with the rows of stored order `order` (< GD_ORDERS) of snapshot
 * snap (an explicit id) that sort after `after` (GD_ORDER_ROW bytes; NULL =
 * from the first), ascending, until fn returns non-zero or the rows end
 * (fn NULL: only *ret_indexed is wanted). O(log n + rows visited). *ret_indexed is false when the snapshot has no rows of
 * that order (written before orders were stored, or without clusters).
 * Errors: GD_EINTERNAL (a row of the wrong size), GD_EIO.
 */
typedef int (*gd_order_fn)(void *ctx, const uint8_t *row);
int gd_store_order_visit(gd_rtxn *r, uint64_t snap, int order, const uint8_t *after,
                         gd_order_fn fn, void *ctx, bool *ret_indexed, gd_err *err);

/* Whether snapshot snap keeps names at all (false: written before
 * snap_name existed). Errors: GD_EIO. */
int gd_store_snapshot_has_names(gd_rtxn *r, uint64_t snap, bool *ret, gd_err *err);

/*
 * Calls fn for each cluster of snapshot snap (0 = latest) with id >
 * after_cluster, in ascending cluster id, with its summary (a view), until
 * fn returns non-zero. *ret_snap (may be NULL) gets the snapshot id read.
 * Errors: GD_ENOTFOUND, GD_EPRECONDITION, GD_EINTERNAL, GD_EIO.
 */
typedef int (*gd_cluster_fn)(void *ctx, uint64_t cluster, const void *summary, size_t len);
int gd_store_clusters_visit(gd_rtxn *r, uint64_t snap, uint64_t after_cluster, gd_cluster_fn fn,
                            void *ctx, uint64_t *ret_snap, gd_err *err);

/* ------------------------------------------------------------------ */
/* Clustering job records                                              */

/*
 *      job           id (u64 BE) -> record (opaque; jobs/jobs.h encodes it)
 *
 * The job manager's journal: one record per job, rewritten on every state
 * change, so the queue survives a restart (jobs.h says what a restart does
 * with each state).
 */

/* Writes (or replaces) job id's record. Errors: GD_EINVALID (id 0, empty or
 * over 1 MiB), GD_EMAPFULL, GD_EIO. */
int gd_store_job_put(gd_wtxn *t, uint64_t id, const void *rec, size_t len, gd_err *err);

/* Calls fn for every job record in ascending id (views), until fn returns
 * non-zero. Errors: GD_EIO. */
typedef int (*gd_job_rec_fn)(void *ctx, uint64_t id, const void *rec, size_t len);
int gd_store_jobs_visit(gd_rtxn *r, gd_job_rec_fn fn, void *ctx, gd_err *err);

#endif
