/*
 * store: the seller graph in LMDB.
 *
 * The only layer that includes lmdb.h. It owns the environment, the key
 * encoding (store/ENCODING comment in keys.c) and every table:
 *
 *   meta     name -> value            schema version, next id, counters
 *   ekey     type byte + normalised key (or type|0x80 + SHA-256 of it)
 *                                      -> entity id (u64 BE)
 *   entity   id (u64 BE)              -> entity record (record.c)
 *   adj      id (u64 BE)              -> dupsort, dupfixed 32-byte link rows
 *                                        sorted by (neighbour type, id)
 *   label    label                     -> dupsort entity ids (u64 BE)
 *   request  request id                -> commit time + totals
 *
 * Threads. Reads run on any thread through gd_rtxn handles (MDB_NOTLS, so a
 * read transaction is reset and renewed from a pool). Writes run only on the
 * single writer thread (writer.h) through gd_wtxn handles: the writer opens
 * one LMDB write transaction per group of requests and one nested
 * transaction per request, so each request is atomic and the group shares a
 * single durable commit.
 *
 * Errors. Every function returns GD_OK or a gd_errno code and fills `err`
 * (may be NULL) with a message naming the field or the limit. Functions
 * never log above debug.
 *
 * Lifetime. Anything called *_view points into LMDB's map and is valid only
 * until the transaction it came from ends.
 */
#ifndef GD_STORE_STORE_H
#define GD_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/entity.h"
#include "core/error.h"
#include "core/util.h"

#define GD_SCHEMA_VERSION 1

/* ------------------------------------------------------------------ */
/* Environment                                                         */

typedef struct gd_store gd_store;

typedef struct gd_store_opts {
  const char *path;       /* directory; created if missing */
  uint64_t map_size;      /* initial map size in bytes; 0 = 1 GiB */
  uint64_t map_size_max;  /* growth stops here (RESOURCE_EXHAUSTED); 0 = 1 TiB */
  unsigned max_readers;   /* 0 = 510 */
} gd_store_opts;

/*
 * Opens (creating if needed) the environment at opts->path, checks or writes
 * the schema version and clears stale reader slots. On success *ret owns the
 * store; close it with gd_store_close().
 * Errors: GD_EIO (cannot create or open, with the path and reason),
 * GD_EPRECONDITION (schema version newer than this build knows).
 */
int gd_store_open(const gd_store_opts *opts, gd_store **ret, gd_err *err);

/* Closes the environment. No transaction may be open. Accepts NULL. */
void gd_store_close(gd_store *s);

/* Clears reader slots left by dead processes; returns how many. */
int gd_store_reader_check(gd_store *s);

/*
 * Drops the map's pages from this process's resident set (madvise
 * MADV_DONTNEED over the whole map). The map is read-only and shared, so
 * the pages stay in the kernel's page cache, the next access maps them
 * back, and no data changes; transactions may be open. For a process that
 * has just read much of the store and goes on with other work (the
 * clustering worker after its export): its RSS then counts the memory it
 * holds, not the file it read. Not with a read transaction of the calling
 * thread open: it takes the resize lock, which read transactions hold and
 * which is not recursive (gd_store_export_graph drops pages inside its
 * own transaction through the store's internal form). Errors: GD_EIO
 * (madvise failed, or no mapping of the data file found).
 */
int gd_store_drop_resident(gd_store *s, gd_err *err);

/*
 * Writes a compacted, consistent copy of the environment into dir (an
 * existing empty directory): mdb_env_copy2 with MDB_CP_COMPACT, which
 * reads one snapshot in a read transaction while writes go on (free pages
 * are left out, so the copy is usually smaller). `graphd --data dir`
 * serves the copy. *ret_bytes gets the copy's size.
 * Errors: GD_EINVALID (dir missing, not a directory, or not empty),
 * GD_EIO (the copy failed: the message says why; a partial data.mdb is
 * removed).
 */
int gd_store_backup(gd_store *s, const char *dir, uint64_t *ret_bytes, gd_err *err);

/* ------------------------------------------------------------------ */
/* Reads                                                               */

typedef struct gd_rtxn gd_rtxn;

/*
 * Starts a read transaction: a consistent snapshot of the last commit. Any
 * thread may use it, one thread at a time. End it with gd_store_read_end()
 * on every path. Errors: GD_EIO, GD_ERESOURCE (no free reader slot).
 */
int gd_store_read_begin(gd_store *s, gd_rtxn **ret, gd_err *err);
void gd_store_read_end(gd_rtxn *r);

/*
 * Names the committed state r reads: ret[0] is the store's serial (unique
 * per gd_store_open in this process, never 0), ret[1] LMDB's transaction
 * id of the snapshot. Two read transactions with equal names read the
 * same data, so a value derived only from that data may be reused between
 * them (query/common.c keeps corroboration that way). Any commit, by this
 * process or another (the clustering worker), makes a new name.
 */
void gd_rtxn_state(const gd_rtxn *r, uint64_t ret[2]);

/*
 * Names the graph r reads: ret[0] is the store's serial, ret[1] the id of
 * the last committed transaction that changed an entity or a link, as r
 * sees it (commits that change only other tables, such as the audit
 * trail, snapshots or cases, leave it). Two read transactions with equal
 * names read the same entities and links, so a value derived only from
 * them may be reused between them, whatever else was committed in
 * between. The graph is written by this process alone (see below), so
 * before a write of this build has stamped the name the graph is as it
 * was at gd_store_open. Errors: GD_EIO.
 */
int gd_rtxn_graph_state(gd_rtxn *r, uint64_t ret[2], gd_err *err);

/*
 * Entity versions, for caches of what readers read (query/common.c): a
 * bound V such that entity id's record and links did not change in any
 * transaction after V. A value read from a transaction with id R (ret[1]
 * of gd_rtxn_state) is therefore the value every transaction with id T
 * reads when V <= min(R, T). Every write marks each entity whose record
 * or links it changes with its transaction's id before it commits (a
 * table of 2^18 slots, id mod 2^18: a collision only marks more), a
 * bulk load marks them all, and opening the store marks them all with the
 * last committed id. Only this process's writes are marked: graphd's
 * graph is written by the daemon alone (the clustering worker writes
 * snapshot tables only). Lock-free; any thread.
 */
uint64_t gd_rtxn_version(const gd_rtxn *r, uint64_t id);

/* Whether a value of entity id read in a transaction with id `at` (0 =
 * never read) is what r reads: the rule above, V <= min(at, r's id). It
 * first compares the last transaction that changed any entity, a single
 * word, and reads the entity's slot (a likely cache miss in a 2 MiB
 * table) only when that is newer: while the graph is not written (reads,
 * audit records, jobs) no slot is touched. Lock-free; any thread. */
bool gd_rtxn_fresh(const gd_rtxn *r, uint64_t id, uint64_t at);

/* A reference to an entity: by id when id != 0, else by (type, key). The
 * key must already be normalised. */
typedef struct gd_ref {
  uint64_t id;
  int type;
  gd_str key;
} gd_ref;

/* A decoded entity record; the gd_str fields are views. */
typedef struct gd_entity_view {
  uint64_t id;
  int type;
  gd_str key;
  int64_t first_seen, last_seen;
  uint64_t degree;       /* distinct linked entities */
  uint64_t seller_count; /* distinct linked sellers */
  size_t nattrs, nlabels;
  const uint8_t *attrs_raw;  /* use gd_entity_attr() */
  const uint8_t *labels_raw; /* use gd_entity_label() */
} gd_entity_view;

/* The i-th attribute (sorted by name) / label (sorted). Views. */
void gd_entity_attr(const gd_entity_view *e, size_t i, gd_str *ret_name, gd_str *ret_value);
gd_str gd_entity_label(const gd_entity_view *e, size_t i);

/* Resolves ref to an entity id. Errors: GD_ENOTFOUND. */
int gd_store_lookup(gd_rtxn *r, const gd_ref *ref, uint64_t *ret_id, gd_err *err);

/* Reads an entity. Errors: GD_ENOTFOUND, GD_EINTERNAL (corrupt record). */
int gd_store_get(gd_rtxn *r, const gd_ref *ref, gd_entity_view *ret, gd_err *err);

/* One row of an adjacency list. */
typedef struct gd_link {
  uint64_t nbr;   /* neighbour id */
  int nbr_type;   /* neighbour type */
  uint32_t count; /* observations */
  int64_t first_seen, last_seen;
} gd_link;

/* Opaque position in an adjacency list for paging: (type << 56) | id. */
typedef uint64_t gd_adj_pos;
#define GD_ADJ_POS(type, id) (((uint64_t)(type) << 56) | (id))

typedef struct gd_adj_query {
  uint32_t type_mask;  /* bit t set = include type t; 0 = all */
  int64_t since, until; /* 0 = open */
  gd_adj_pos after;    /* rows strictly after this position; 0 = from start */
  size_t limit;        /* at most this many rows */
} gd_adj_query;

/*
 * Reads up to q->limit links of entity `id` that pass the filters, in
 * (type, id) order, into ret_links (capacity q->limit). *ret_n is the
 * number written; *ret_more is true if more matching rows may follow the
 * last one returned. Errors: GD_ENOTFOUND (no such entity).
 */
int gd_store_links(gd_rtxn *r, uint64_t id, const gd_adj_query *q, gd_link *ret_links,
                   size_t *ret_n, bool *ret_more, gd_err *err);

/*
 * Calls fn for each link of entity `id` whose neighbour type is in
 * type_mask (bit t = type t; 0 = all) and whose [first_seen, last_seen]
 * overlaps [since, until] (0 = open), in (type, id) order, until fn returns
 * non-zero. Adds the rows read to *touched. Does not check that the entity
 * exists (an entity with no links and a missing one both visit nothing).
 * Errors: GD_EIO, GD_EINTERNAL.
 */
typedef int (*gd_link_fn)(void *ctx, const gd_link *l);
int gd_store_visit_links(gd_rtxn *r, uint64_t id, uint32_t type_mask, int64_t since,
                         int64_t until, gd_link_fn fn, void *ctx, uint64_t *touched,
                         gd_err *err);

/*
 * Visits a full, unwindowed adjacency list `all` (n links in (type, id)
 * order, as gd_store_visit_links with type_mask 0 gives it) exactly as
 * gd_store_visit_links(type_mask, since, until) would have visited the
 * store, adding to *touched the rows it would have read. For callers that
 * cache whole lists. Returns fn's non-zero value, else 0.
 */
int gd_links_visit_list(const gd_link *all, size_t n, uint32_t type_mask, int64_t since,
                        int64_t until, gd_link_fn fn, void *ctx, uint64_t *touched);

/*
 * The ids of the entities carrying `label`, ascending, as a malloc'd array
 * (free() it; NULL when empty). Errors: GD_ENOMEM, GD_EIO.
 */
int gd_store_label_members(gd_rtxn *r, gd_str label, uint64_t **ret_ids, size_t *ret_n,
                           gd_err *err);

typedef struct gd_stats {
  uint64_t entities[GD_TYPE_MAX + 1]; /* by type; [0] unused */
  uint64_t entities_total;
  uint64_t links;
  uint64_t labels;
  uint64_t file_bytes, map_bytes;
  uint32_t schema_version;
  /* Reader slots: taken now (by live or dead processes; graphd's own idle
   * pooled slots included), of them holding a snapshot now, and the most. */
  uint32_t readers_used, readers_active, readers_max;
  uint64_t last_txnid;                /* id of the last committed write transaction */
} gd_stats;

int gd_store_stats(gd_rtxn *r, gd_stats *ret, gd_err *err);

/* The number of entities of `type` (a valid type), from the counters
 * alone: O(1), no reader-table scan. Errors as gd_store_stats. */
int gd_store_count(gd_rtxn *r, int type, uint64_t *ret, gd_err *err);

/* ------------------------------------------------------------------ */
/* Writes (writer thread only; see writer.h)                           */

typedef struct gd_wtxn gd_wtxn;

/* Commit time of the transaction being built (unix seconds). */
int64_t gd_wtxn_now(const gd_wtxn *t);

typedef struct gd_attr_in {
  gd_str name, value;
} gd_attr_in;

/* Keys must be normalised and every string validated by the caller. */
typedef struct gd_entity_in {
  int type;
  gd_str key;
  const gd_attr_in *attrs;
  size_t nattrs;
  const gd_str *labels;
  size_t nlabels;
  int64_t seen; /* an observation; 0 = none (first/last seen unchanged) */
} gd_entity_in;

typedef struct gd_link_in {
  gd_ref a, b;
  int64_t seen; /* 0 = commit time */
} gd_link_in;

typedef struct gd_upsert {
  gd_str request_id; /* empty = none */
  const gd_entity_in *entities;
  size_t nentities;
  const gd_link_in *links;
  size_t nlinks;
  /* Optional, from gd_upsert_index: the distinct (type, key) pairs the
   * upsert names, sorted, and for each entity, then each link's a and b,
   * the index in keys of its key (UINT32_MAX: an endpoint given by id).
   * NULL: gd_store_upsert builds them itself, on the writer thread. */
  const gd_ref *const *keys;
  size_t nkeys;
  const uint32_t *key_of;
} gd_upsert;

/* Bytes gd_upsert_index needs for u. */
size_t gd_upsert_index_size(const gd_upsert *u);

/*
 * Sorts the (type, key) pairs u names (by type, then key bytes, then
 * length), drops repeats and maps each entity and link endpoint to its
 * pair: fills u->keys, u->nkeys and u->key_of, in buf
 * (gd_upsert_index_size(u) bytes, aligned for a pointer, owned by the
 * caller and kept as long as u). Touches no transaction: Ingest's decoding
 * threads call it, so that the writer thread neither sorts nor hashes
 * keys. Needs fewer than UINT32_MAX entities plus link endpoints.
 */
void gd_upsert_index(gd_upsert *u, void *buf);

typedef struct gd_totals {
  uint64_t entities_created, entities_updated;
  uint64_t links_created, links_updated;
} gd_totals;

typedef struct gd_upsert_result {
  gd_totals totals;
  bool duplicate;       /* request_id committed before; nothing written */
  int64_t committed_at; /* of the original when duplicate */
} gd_upsert_result;

/*
 * Applies one upsert. On error the caller must abort the (nested)
 * transaction: partial writes are possible.
 * Errors: GD_EINVALID (a link joins an entity to itself, named by index;
 * too many attributes or labels; UINT32_MAX entities plus link endpoints
 * or more), GD_ENOTFOUND (an endpoint given by id is missing),
 * GD_ENOMEM, GD_EMAPFULL (grow and retry), GD_EIO.
 */
int gd_store_upsert(gd_wtxn *t, const gd_upsert *u, gd_upsert_result *ret, gd_err *err);

/*
 * Adds then removes labels. On success *ret_labels is the entity's sorted
 * label list, malloc'd as one block (free() it; strings are NUL-terminated)
 * and *ret_n its length.
 * Errors: GD_ENOTFOUND, GD_EINVALID (over GD_LABELS_MAX), GD_EMAPFULL, GD_EIO.
 */
int gd_store_set_labels(gd_wtxn *t, const gd_ref *ref, const gd_str *add, size_t nadd,
                        const gd_str *remove, size_t nremove, char ***ret_labels,
                        size_t *ret_n, gd_err *err);

/*
 * Deletes an entity, its labels and its links on both sides.
 * Errors: GD_ENOTFOUND, GD_EMAPFULL, GD_EIO.
 */
int gd_store_delete(gd_wtxn *t, const gd_ref *ref, uint64_t *ret_links_removed, gd_err *err);

/* ------------------------------------------------------------------ */
/* Bulk load (bulk.c)                                                  */

/*
 * Fills an empty graph in one write transaction by sorted appends, for a
 * first load: upserts are collected in memory (gd_bulk_add, any thread,
 * one at a time), then gd_store_bulk_apply writes every table in key
 * order with MDB_APPEND: no B-tree search, each page written once. The
 * result is what the same upserts applied one by one through
 * gd_store_upsert would leave, but for entity ids (numbered by first
 * appearance rather than per request) and placement (nothing is queued:
 * there is no snapshot of the loaded graph to place against).
 */
typedef struct gd_bulk gd_bulk;

typedef struct gd_bulk_result {
  uint64_t messages;   /* upserts added, duplicates included */
  uint64_t duplicates; /* upserts skipped: their request_id came earlier in the load */
  gd_totals totals;    /* as the upserts one by one would report them, summed */
  int64_t committed_at;
  /* Where the time went, in seconds: the writer thread's adjacency,
   * entity and key index tables (each: its preparation and its appends),
   * and the key sort on a thread of its own meanwhile. */
  double adj_s, entities_s, keys_s, key_sort_s;
} gd_bulk_result;

/* max_bytes bounds the memory the load holds (0 = no bound).
 * Errors: GD_ENOMEM. */
int gd_bulk_new(size_t max_bytes, gd_bulk **ret, gd_err *err);

/*
 * Copies one upsert into b (it may be freed afterwards). Endpoints and
 * entities are taken by (type, key) only. An upsert whose request_id came
 * earlier in this load is skipped and *ret_duplicate set. After an error
 * b can only be freed.
 * Errors: GD_EINVALID (a reference by id, a link joining an entity to
 * itself, a key over 65535 bytes: the field is named), GD_ERESOURCE (the
 * load would hold more than max_bytes), GD_ENOMEM.
 */
int gd_bulk_add(gd_bulk *b, const gd_upsert *u, bool *ret_duplicate, gd_err *err);

/* Bytes b holds now. */
size_t gd_bulk_bytes(const gd_bulk *b);

/*
 * Writes b into t (writer thread; b is not changed, so the writer may
 * apply it again after growing the map). Links and entities observed
 * without a time get the commit time, as in gd_store_upsert.
 * Errors: GD_EPRECONDITION (the graph is not empty: entities, links,
 * labels or request ids are stored; the counts are named), GD_EINVALID
 * (an entity would have more than GD_ATTRS_MAX attributes or
 * GD_LABELS_MAX labels, named by type and key), GD_EMAPFULL (before
 * anything is written when the map is too small for the estimate: grow
 * and retry), GD_ENOMEM, GD_EIO.
 */
int gd_store_bulk_apply(gd_wtxn *t, const gd_bulk *b, gd_bulk_result *ret, gd_err *err);

/* Frees b. Accepts NULL. */
void gd_bulk_free(gd_bulk *b);

/* ------------------------------------------------------------------ */
/* Transaction plumbing for the writer (writer.c)                     */

/* Begins the group transaction. Errors: GD_EIO, GD_EMAPFULL. */
int gd__wtxn_begin(gd_store *s, gd_wtxn **ret, gd_err *err);
/* Begins / ends the nested transaction of one request. */
int gd__wtxn_nest(gd_wtxn *t, gd_err *err);
int gd__wtxn_unnest(gd_wtxn *t, bool commit, gd_err *err);
/* Writes counters and commits durably; frees t in every case.
 * Errors: GD_EMAPFULL (nothing committed: grow and retry), GD_ERESOURCE
 * (the disk is full: nothing committed), GD_EIO. */
int gd__wtxn_commit(gd_wtxn *t, gd_err *err);
/* Aborts and frees t. Accepts NULL. */
void gd__wtxn_abort(gd_wtxn *t);
/* Grows the map (x2, up to map_size_max) while no transaction is open.
 * Errors: GD_ERESOURCE (at the maximum), GD_EIO. */
int gd__store_grow(gd_store *s, gd_err *err);
/* Before a write transaction: grows the map (as gd__store_grow) while
 * less than half of it lies past the last page in use, so that a group
 * seldom fills it midway and has to be applied again (at a million
 * sellers a group is seconds of work). The file does not grow with the
 * map. Returns the number of growths; a growth that fails (the maximum,
 * an error) ends it quietly: the full map is then met, and reported, by
 * the transaction as before. */
unsigned gd__store_grow_ahead(gd_store *s);

#endif
