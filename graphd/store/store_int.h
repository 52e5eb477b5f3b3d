/*
 * Internals shared by the store's files. Nothing outside graphd/store/
 * includes this header.
 */
#ifndef GD_STORE_STORE_INT_H
#define GD_STORE_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/arena.h"
#include "store/store.h"

#define GD__RTXN_POOL 64

struct gd_rtxn {
  gd_store *s;
  MDB_txn *txn;
};

struct gd_store {
  MDB_env *env;
  MDB_dbi meta, ekey, entity, adj, label, request;
  MDB_dbi snap, snap_assign, snap_cluster, snap_member, snap_tie, snap_name, snap_order, snap_link,
      job; /* snapshot.c */
  MDB_dbi audit, audit_case;                                      /* audit.c */
  MDB_dbi dirty, prov, prov_member, alert;                        /* place.c */
  MDB_dbi cases, case_query;                                      /* case.c */
  MDB_dbi glog;                                                   /* image.c */
  _Atomic uint64_t place_max, place_shed;                         /* place.c */
  uint64_t map_size, map_size_max;
  /* Readers hold it shared for the life of a read txn; map growth takes it
   * exclusive, because mdb_env_set_mapsize needs no txn open in the process. */
  pthread_rwlock_t resize_lock;
  pthread_mutex_t pool_mu;
  gd_rtxn *pool[GD__RTXN_POOL];
  int npool;
  uint64_t serial;   /* gd_rtxn_state */
  uint64_t open_txn; /* the last committed txn id at open (gd_rtxn_graph_state) */
  /* Entity versions (store.h, gd_rtxn_version): GD__VER_SLOTS slots by the
   * id's low bits, each the last transaction id that changed an entity of
   * that slot; ver_floor bounds every entity (the txn at open, a bulk load);
   * ver_max is the largest id in any slot. Written by the one writer
   * thread, read by any. */
  _Atomic uint64_t *ver;
  _Atomic uint64_t ver_floor, ver_max;
  /* The write cache's memory (write.c), kept from one upsert to the next
   * (reset, one block); the writer thread only; freed at close. */
  gd_arena *wcache_spare;
};

#define GD__VER_SLOTS (1u << 18)

/* Ids are dense and given out in order, so the slot is the id's low bits:
 * spread as evenly as a hash would, and the entities a write creates mark
 * consecutive slots, where hashed ids took a cache miss each. */
static inline size_t gd__ver_slot(uint64_t id) {
  return (size_t)(id & (GD__VER_SLOTS - 1));
}

/* Counters kept in `meta`, loaded at the start of a group transaction and
 * written just before its commit. */
typedef struct gd__counters {
  uint64_t next_id;
  uint64_t entities[GD_TYPE_MAX + 1];
  uint64_t links;
  uint64_t labels;
} gd__counters;

struct gd_wtxn {
  gd_store *s;
  MDB_txn *root;   /* the group transaction */
  MDB_txn *txn;    /* the current request's nested txn, or root */
  gd__counters c;  /* current values */
  gd__counters saved; /* values at gd__wtxn_nest, restored on abort */
  int64_t now;
  /* The largest seller id in the placement queue, read on the first mark
   * that finds the queue full (place.c) and raised by each mark after: at
   * worst too high (rows cleared or a nested transaction undone since), so
   * a seller above it is not queued. */
  uint64_t dirty_max;
  bool dirty_max_read;
  bool graph; /* an entity or link was marked changed: the commit stamps
                 meta "graph.txn" (gd_rtxn_graph_state) */
  /* The ids marked changed, for the graph change log (image.c); unsorted,
   * repeats allowed. glog_lost: one could not be kept (out of memory), or
   * every entity changed (a bulk load): the commit resets the log. */
  uint64_t *glog_ids;
  size_t glog_n, glog_cap;
  bool glog_lost;
};

/* Appends id to t's change list (image.c); on failure sets glog_lost. */
void gd__glog_grow(gd_wtxn *t, uint64_t id);

/* Starts loading id's slot, for a gd__ver_mark some work later: the
 * table is 2 MiB, so a mark is a cache miss. */
static inline void gd__ver_prefetch(gd_wtxn *t, uint64_t id) {
  __builtin_prefetch(&t->s->ver[gd__ver_slot(id)], 1);
}

/* Marks entity id changed by t's transaction (store.h, "Entity
 * versions"): before the commit, so that no reader sees the change without
 * the mark. The writer thread only. */
static inline void gd__ver_mark(gd_wtxn *t, uint64_t id) {
  uint64_t v = (uint64_t)mdb_txn_id(t->root);
  _Atomic uint64_t *slot = &t->s->ver[gd__ver_slot(id)];
  if (atomic_load_explicit(&t->s->ver_max, memory_order_relaxed) < v)
    atomic_store(&t->s->ver_max, v); /* first: never below a slot */
  if (atomic_load_explicit(slot, memory_order_relaxed) < v)
    atomic_store(slot, v);
  t->graph = true;
  if (t->glog_n < t->glog_cap)
    t->glog_ids[t->glog_n++] = id;
  else
    gd__glog_grow(t, id);
}

/* Marks every entity (a bulk load). */
static inline void gd__ver_mark_all(gd_wtxn *t) {
  atomic_store(&t->s->ver_floor, (uint64_t)mdb_txn_id(t->root));
  t->graph = true;
  t->glog_lost = true;
}

/* Before t's commit: appends the ids t changed to the graph change log, or
 * resets the log (image.c). Returns an LMDB code. */
int gd__glog_commit(gd_wtxn *t);

/* Frees t's change list. */
void gd__glog_free(gd_wtxn *t);

/* Indexes every audit record that names a case in audit_case, in txn
 * (audit.c): a data directory written before the index existed; a record
 * that does not parse is left out (gd_store_audit_verify reports it).
 * Returns an LMDB code. */
int gd__audit_index_build(MDB_txn *txn, gd_store *s);

/* meta's u64 counter `name` in txn (0 when absent). An LMDB code. */
int gd__meta_u64(MDB_txn *txn, gd_store *s, const char *name, uint64_t *ret);
/* Sets meta's u64 counter `name` in txn. Returns an LMDB code. */
int gd__meta_put_u64(MDB_txn *txn, gd_store *s, const char *name, uint64_t val);

/* The SHA-256 of an export's arrays as hex (snapshot.c); -1 on failure. */
struct gd_graph_export;
int gd__export_checksum(const struct gd_graph_export *x, char out[65]);

/* The bytes of the map in use (up to the last page written) and the map's
 * size. Reads environment metadata only. Returns an LMDB code. */
int gd__store_map_use(gd_store *s, uint64_t *ret_used, uint64_t *ret_size);

/* Maps an LMDB return code to a gd_errno and fills err. */
int gd__mdb_err(int rc, gd_err *err, const char *what);

/* gd_store_drop_resident without taking the resize lock: for a caller that
 * holds it already, as every read transaction does (the map cannot move). */
int gd__store_drop_resident(gd_store *s, gd_err *err);

/* ekey encoding (keys.c). `buf` must hold GD__EKEY_MAX bytes. */
#define GD__EKEY_INLINE_MAX 480
#define GD__EKEY_MAX (1 + GD__EKEY_INLINE_MAX)
size_t gd__ekey_encode(int type, gd_str key, uint8_t *buf);

/* The 8-byte big-endian sort prefix of an adjacency row. */
#define GD__ADJ_ROW 32
typedef struct gd__adj_row {
  uint8_t prefix[8]; /* (type << 56 | id), big endian */
  uint32_t count;
  uint32_t reserved;
  int64_t first_seen;
  int64_t last_seen;
} gd__adj_row;
_Static_assert(sizeof(gd__adj_row) == GD__ADJ_ROW, "adjacency row is 32 bytes");

void gd__adj_row_decode(const void *raw, gd_link *ret);

/* Entity records (record.c). */
#define GD__REC_HDR 48
int gd__rec_decode(const void *raw, size_t len, uint64_t id, gd_entity_view *ret);
/* Encodes into a buffer from *a, or malloc'd when a is NULL; returns NULL
 * on allocation failure. */
uint8_t *gd__rec_encode(const gd_entity_view *e, const gd_str *attr_names,
                        const gd_str *attr_values, const gd_str *labels, gd_arena **a,
                        size_t *ret_len);
/* Patches the fixed header fields of an encoded record in place. */
void gd__rec_patch(uint8_t *rec, int64_t first, int64_t last, uint64_t degree,
                   uint64_t seller_count);

/* Queues seller for placement in t when marking is on (place.c; the
 * queue's bound sheds). Errors: GD_EMAPFULL, GD_EIO. */
int gd__place_mark(gd_wtxn *t, uint64_t seller, gd_err *err);

/* Hash of an entity's (type, normalised key), for in-memory key tables
 * (write.c's per-request cache, bulk.c's interning). */
static inline uint64_t gd__key_hash(int type, gd_str key) {
  uint64_t h = UINT64_C(1469598103934665603) ^ (uint64_t)type;
  for (size_t i = 0; i < key.n; i++)
    h = (h ^ (uint8_t)key.p[i]) * UINT64_C(1099511628211);
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  return h;
}

/* A `request` row: when the original write committed and what it did. */
typedef struct gd__req_rec {
  int64_t committed_at;
  gd_totals totals;
} gd__req_rec;

static inline void gd__id_key(uint64_t id, uint8_t buf[8], MDB_val *v) {
  gd_be64_put(buf, id);
  v->mv_data = buf;
  v->mv_size = 8;
}

#endif
