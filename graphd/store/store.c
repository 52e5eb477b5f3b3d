/*
 * The LMDB environment: open/close, read transaction pool, the group write
 * transaction with nested per-request transactions, counters and map growth.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <sys/statvfs.h>

#include "store/store_int.h"

#define GD__GIB (UINT64_C(1) << 30)

int gd__mdb_err(int rc, gd_err *err, const char *what) {
  switch (rc) {
  case MDB_SUCCESS:
    return GD_OK;
  case MDB_NOTFOUND:
    return gd_err_set(err, GD_ENOTFOUND, "%s: not found", what);
  case MDB_MAP_FULL:
    return gd_err_set(err, GD_EMAPFULL, "%s: storage map full", what);
  case MDB_READERS_FULL:
    return gd_err_set(err, GD_ERESOURCE, "%s: no free LMDB reader slot", what);
  case MDB_TXN_FULL:
    return gd_err_set(err, GD_ETXNFULL, "%s: transaction too large", what);
  case ENOMEM:
    return gd_err_set(err, GD_ENOMEM, "%s: out of memory", what);
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
  case MDB_VERSION_MISMATCH:
    return gd_err_set(err, GD_EINTERNAL, "%s: %s", what, mdb_strerror(rc));
  default:
    return gd_err_set(err, GD_EIO, "%s: %s", what, mdb_strerror(rc));
  }
}

/* ---- meta ------------------------------------------------------------ */

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *ret) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    *ret = 0;
    return MDB_SUCCESS;
  }
  if (rc == MDB_SUCCESS) {
    if (v.mv_size != 8)
      return MDB_CORRUPTED;
    *ret = gd_be64_get(v.mv_data);
  }
  return rc;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val) {
  uint8_t buf[8];
  MDB_val k = {strlen(name), (void *)name}, v = {8, buf};
  gd_be64_put(buf, val);
  return mdb_put(txn, dbi, &k, &v, 0);
}

static const char *const counter_names[GD_TYPE_MAX + 1] = {
    "count.?", "count.seller", "count.address", "count.payment_account",
    "count.device", "count.phone", "count.email", "count.ip",
};

static int counters_load(MDB_txn *txn, gd_store *s, gd__counters *c) {
  int rc = meta_get_u64(txn, s->meta, "next_id", &c->next_id);
  if (!rc && c->next_id == 0)
    c->next_id = 1;
  for (int t = GD_TYPE_MIN; !rc && t <= GD_TYPE_MAX; t++)
    rc = meta_get_u64(txn, s->meta, counter_names[t], &c->entities[t]);
  if (!rc)
    rc = meta_get_u64(txn, s->meta, "count.links", &c->links);
  if (!rc)
    rc = meta_get_u64(txn, s->meta, "count.labels", &c->labels);
  return rc;
}

static int counters_store(MDB_txn *txn, gd_store *s, const gd__counters *c) {
  int rc = meta_put_u64(txn, s->meta, "next_id", c->next_id);
  for (int t = GD_TYPE_MIN; !rc && t <= GD_TYPE_MAX; t++)
    rc = meta_put_u64(txn, s->meta, counter_names[t], c->entities[t]);
  if (!rc)
    rc = meta_put_u64(txn, s->meta, "count.links", c->links);
  if (!rc)
    rc = meta_put_u64(txn, s->meta, "count.labels", c->labels);
  return rc;
}

int gd__meta_u64(MDB_txn *txn, gd_store *s, const char *name, uint64_t *ret) {
  return meta_get_u64(txn, s->meta, name, ret);
}

int gd__meta_put_u64(MDB_txn *txn, gd_store *s, const char *name, uint64_t val) {
  return meta_put_u64(txn, s->meta, name, val);
}

/* Builds the audit case index of a data directory written before it
 * existed (audit.h), in a transaction of its own; open_dbis saw it
 * missing. Best effort: until it is built, gd_store_audit_visit_case
 * scans the trail instead, so a failure (a full map, say) only leaves
 * that slower path. */
static void audit_index_open(gd_store *s) {
  MDB_txn *txn;
  if (mdb_txn_begin(s->env, NULL, 0, &txn))
    return;
  if (gd__audit_index_build(txn, s) == MDB_SUCCESS &&
      meta_put_u64(txn, s->meta, "audit_case.built", 1) == MDB_SUCCESS)
    mdb_txn_commit(txn); /* a failed commit leaves it unbuilt, as before */
  else
    mdb_txn_abort(txn);
}

/* Dupsort compare for `adj`: rows sort by their 8-byte (type, id) prefix
 * only, so a row's count and times can be replaced in place (MDB_CURRENT)
 * and a lookup by prefix is an exact match. */
static int adj_cmp(const MDB_val *a, const MDB_val *b) {
  return memcmp(a->mv_data, b->mv_data, 8);
}

/* ---- open / close ----------------------------------------------------- */

/* Opens (creating) the tables and checks the schema version; *ret_indexed
 * says whether the audit case index is built. */
static int open_dbis(gd_store *s, bool *ret_indexed, gd_err *err) {
  MDB_txn *txn;
  uint64_t version = 0;
  int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc)
    return gd__mdb_err(rc, err, "begin");
  struct {
    const char *name;
    unsigned flags;
    MDB_dbi *dbi;
  } t[] = {
      {"meta", 0, &s->meta},
      {"ekey", 0, &s->ekey},
      {"entity", 0, &s->entity},
      {"adj", MDB_DUPSORT | MDB_DUPFIXED, &s->adj},
      {"label", MDB_DUPSORT | MDB_DUPFIXED, &s->label},
      {"request", 0, &s->request},
      {"snap", 0, &s->snap},
      {"snap_assign", MDB_DUPSORT | MDB_DUPFIXED, &s->snap_assign},
      {"snap_cluster", 0, &s->snap_cluster},
      {"snap_member", MDB_DUPSORT | MDB_DUPFIXED, &s->snap_member},
      {"snap_tie", MDB_DUPSORT | MDB_DUPFIXED, &s->snap_tie},
      {"snap_name", 0, &s->snap_name},
      {"snap_order", MDB_DUPSORT | MDB_DUPFIXED, &s->snap_order},
      {"snap_link", MDB_DUPSORT | MDB_DUPFIXED, &s->snap_link},
      {"job", 0, &s->job},
      {"audit", 0, &s->audit},
      {"audit_case", MDB_DUPSORT | MDB_DUPFIXED, &s->audit_case},
      {"dirty", 0, &s->dirty},
      {"prov", 0, &s->prov},
      {"prov_member", MDB_DUPSORT | MDB_DUPFIXED, &s->prov_member},
      {"alert", 0, &s->alert},
      {"case", 0, &s->cases},
      {"case_query", 0, &s->case_query},
      {"glog", 0, &s->glog},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    rc = mdb_dbi_open(txn, t[i].name, t[i].flags | MDB_CREATE, t[i].dbi);
    if (rc) {
      mdb_txn_abort(txn);
      return gd__mdb_err(rc, err, t[i].name);
    }
  }
  mdb_set_dupsort(txn, s->adj, adj_cmp);
  rc = meta_get_u64(txn, s->meta, "schema_version", &version);
  if (!rc && version > GD_SCHEMA_VERSION) {
    mdb_txn_abort(txn);
    return gd_err_set(err, GD_EPRECONDITION,
                      "data schema version %llu is newer than this build (%d)",
                      (unsigned long long)version, GD_SCHEMA_VERSION);
  }
  if (!rc && version == 0)
    rc = meta_put_u64(txn, s->meta, "schema_version", GD_SCHEMA_VERSION);
  /* The graph change log (image.c) holds the changes of the commits after
   * its floor; a data directory from before the log starts it here. */
  uint64_t floor = 0;
  if (!rc)
    rc = meta_get_u64(txn, s->meta, "glog.floor", &floor);
  if (!rc && floor == 0)
    rc = meta_put_u64(txn, s->meta, "glog.floor", (uint64_t)mdb_txn_id(txn));
  uint64_t indexed = 0;
  if (!rc)
    rc = meta_get_u64(txn, s->meta, "audit_case.built", &indexed);
  *ret_indexed = indexed != 0;
  if (rc) {
    mdb_txn_abort(txn);
    return gd__mdb_err(rc, err, "meta");
  }
  rc = mdb_txn_commit(txn);
  return rc ? gd__mdb_err(rc, err, "commit") : GD_OK;
}

int gd_store_open(const gd_store_opts *o, gd_store **ret, gd_err *err) {
  gd_store *s = calloc(1, sizeof *s);
  MDB_envinfo info;
  int rc, dead;

  if (!s)
    return gd_err_set(err, GD_ENOMEM, "store: out of memory");
  s->map_size = o->map_size ? o->map_size : GD__GIB;
  s->map_size_max = o->map_size_max ? o->map_size_max : 1024 * GD__GIB;
  if (s->map_size > s->map_size_max)
    s->map_size_max = s->map_size;
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* Growth must not starve behind a stream of readers. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->resize_lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  pthread_mutex_init(&s->pool_mu, NULL);
  static atomic_uint_fast64_t serials;
  s->serial = (uint64_t)atomic_fetch_add(&serials, 1) + 1;

  if (mkdir(o->path, 0750) != 0 && errno != EEXIST) {
    gd_err_set(err, GD_EIO, "cannot create data directory %s: %s", o->path, strerror(errno));
    goto fail;
  }
  if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 32)) ||
      (rc = mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : 510))) {
    gd__mdb_err(rc, err, "env");
    goto fail;
  }
  rc = mdb_env_open(s->env, o->path, MDB_NOTLS | MDB_NORDAHEAD, 0640);
  if (rc) {
    gd_err_set(err, GD_EIO, "cannot open LMDB environment in %s: %s", o->path,
               mdb_strerror(rc));
    goto fail;
  }
  /* Keep a larger map that an earlier run (or another process) grew to. */
  mdb_env_info(s->env, &info);
  if (info.me_mapsize > s->map_size)
    s->map_size = info.me_mapsize;
  if ((rc = mdb_env_set_mapsize(s->env, s->map_size))) {
    gd__mdb_err(rc, err, "mapsize");
    goto fail;
  }
  mdb_reader_check(s->env, &dead);
  bool indexed;
  if (open_dbis(s, &indexed, err))
    goto fail;
  if (!indexed)
    audit_index_open(s);
  if (!(s->ver = calloc(GD__VER_SLOTS, sizeof *s->ver))) {
    gd_err_set(err, GD_ENOMEM, "store: out of memory");
    goto fail;
  }
  mdb_env_info(s->env, &info);
  atomic_init(&s->ver_floor, (uint64_t)info.me_last_txnid);
  atomic_init(&s->ver_max, 0);
  s->open_txn = (uint64_t)info.me_last_txnid;
  *ret = s;
  return GD_OK;

fail:
  gd_store_close(s);
  return err ? err->code : GD_EIO;
}

void gd_store_close(gd_store *s) {
  if (!s)
    return;
  for (int i = 0; i < s->npool; i++) {
    mdb_txn_abort(s->pool[i]->txn);
    free(s->pool[i]);
  }
  if (s->env)
    mdb_env_close(s->env);
  pthread_rwlock_destroy(&s->resize_lock);
  pthread_mutex_destroy(&s->pool_mu);
  free((void *)s->ver);
  gd_arena_free(s->wcache_spare);
  free(s);
}

int gd_store_reader_check(gd_store *s) {
  int dead = 0;
  mdb_reader_check(s->env, &dead);
  return dead;
}

int gd__store_drop_resident(gd_store *s, gd_err *err) {
  /* LMDB does not give out the map's address (MDB_envinfo.me_mapaddr is
   * set only with MDB_FIXEDMAP), so find the shared mapping of the data
   * file (its device and inode) in /proc/self/maps. */
  mdb_filehandle_t fd;
  struct stat sb;
  if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &sb) != 0)
    return gd_err_set(err, GD_EIO, "data file: %s", strerror(errno));
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return gd_err_set(err, GD_EIO, "/proc/self/maps: %s", strerror(errno));
  int rc = GD_OK;
  bool found = false;
  char line[4352];
  while (rc == GD_OK && fgets(line, sizeof line, f)) {
    unsigned long lo, hi, ino;
    unsigned dmaj, dmin;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s %*s %x:%x %lu", &lo, &hi, perms, &dmaj, &dmin, &ino) != 6 ||
        ino != (unsigned long)sb.st_ino || dmaj != major(sb.st_dev) ||
        dmin != minor(sb.st_dev) || perms[3] != 's')
      continue;
    found = true;
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
      rc = gd_err_set(err, GD_EIO, "madvise of the %lu-byte map: %s", hi - lo, strerror(errno));
  }
  fclose(f);
  if (rc == GD_OK && !found)
    rc = gd_err_set(err, GD_EIO, "no mapping of the data file in /proc/self/maps");
  return rc;
}

int gd_store_drop_resident(gd_store *s, gd_err *err) {
  pthread_rwlock_rdlock(&s->resize_lock); /* the map stays where it is */
  int rc = gd__store_drop_resident(s, err);
  pthread_rwlock_unlock(&s->resize_lock);
  return rc;
}

/* Adopts a map size grown by another process (MDB_MAP_RESIZED). */
static void adopt_map_size(gd_store *s) {
  MDB_envinfo info;
  pthread_rwlock_wrlock(&s->resize_lock);
  mdb_env_set_mapsize(s->env, 0);
  mdb_env_info(s->env, &info);
  s->map_size = info.me_mapsize;
  pthread_rwlock_unlock(&s->resize_lock);
}

/* ---- reads -------------------------------------------------------------- */

void gd_rtxn_state(const gd_rtxn *r, uint64_t ret[2]) {
  ret[0] = r->s->serial;
  ret[1] = (uint64_t)mdb_txn_id(r->txn);
}

int gd_rtxn_graph_state(gd_rtxn *r, uint64_t ret[2], gd_err *err) {
  uint64_t g = 0;
  int rc = meta_get_u64(r->txn, r->s->meta, "graph.txn", &g);
  if (rc)
    return gd__mdb_err(rc, err, "meta graph.txn");
  ret[0] = r->s->serial;
  /* Not stamped yet (no write of this version changed the graph): it is
   * as it was when the store was opened, since only this process writes
   * it and every such write since would have stamped it. */
  ret[1] = g ? g : r->s->open_txn;
  return GD_OK;
}

bool gd_rtxn_fresh(const gd_rtxn *r, uint64_t id, uint64_t at) {
  uint64_t txn = (uint64_t)mdb_txn_id(r->txn), lim = at < txn ? at : txn;
  uint64_t f = atomic_load(&r->s->ver_floor), m = atomic_load(&r->s->ver_max);
  return at && ((m > f ? m : f) <= lim || gd_rtxn_version(r, id) <= lim);
}

uint64_t gd_rtxn_version(const gd_rtxn *r, uint64_t id) {
  uint64_t f = atomic_load(&r->s->ver_floor), v = atomic_load(&r->s->ver[gd__ver_slot(id)]);
  return v > f ? v : f;
}

int gd_store_read_begin(gd_store *s, gd_rtxn **ret, gd_err *err) {
  gd_rtxn *r = NULL;
  int rc;

  for (int attempt = 0;; attempt++) {
    pthread_rwlock_rdlock(&s->resize_lock);
    pthread_mutex_lock(&s->pool_mu);
    if (!r && s->npool > 0)
      r = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_mu);
    if (r) {
      rc = mdb_txn_renew(r->txn);
    } else {
      if (!(r = calloc(1, sizeof *r))) {
        pthread_rwlock_unlock(&s->resize_lock);
        return gd_err_set(err, GD_ENOMEM, "read: out of memory");
      }
      r->s = s;
      rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
      if (rc)
        r->txn = NULL;
    }
    if (rc == MDB_SUCCESS) {
      *ret = r;
      return GD_OK;
    }
    pthread_rwlock_unlock(&s->resize_lock);
    if (r->txn) {
      mdb_txn_abort(r->txn);
      r->txn = NULL;
    }
    free(r);
    r = NULL;
    if (rc != MDB_MAP_RESIZED || attempt > 2)
      return gd__mdb_err(rc, err, "read transaction");
    adopt_map_size(s);
  }
}

void gd_store_read_end(gd_rtxn *r) {
  if (!r)
    return;
  gd_store *s = r->s;
  mdb_txn_reset(r->txn);
  pthread_mutex_lock(&s->pool_mu);
  if (s->npool < GD__RTXN_POOL) {
    s->pool[s->npool++] = r;
    r = NULL;
  }
  pthread_mutex_unlock(&s->pool_mu);
  if (r) {
    mdb_txn_abort(r->txn);
    free(r);
  }
  pthread_rwlock_unlock(&s->resize_lock);
}

/* mdb_reader_list's lines: a header, then "PID THREAD TXNID" per taken
 * slot, TXNID "-" when the slot holds no snapshot (a reset transaction). */
typedef struct reader_slots {
  uint32_t taken, active;
} reader_slots;

static int count_reader(const char *line, void *ctx) {
  reader_slots *rs = ctx;
  unsigned long long pid;
  char thread[32], txnid[32];
  if (sscanf(line, "%llu %31s %31s", &pid, thread, txnid) == 3) {
    rs->taken++;
    rs->active += strcmp(txnid, "-") != 0;
  }
  return 0;
}

int gd_store_stats(gd_rtxn *r, gd_stats *st, gd_err *err) {
  gd_store *s = r->s;
  gd__counters c;
  MDB_envinfo info;
  uint64_t version = 0;
  int rc;

  memset(st, 0, sizeof *st);
  if ((rc = counters_load(r->txn, s, &c)) ||
      (rc = meta_get_u64(r->txn, s->meta, "schema_version", &version)))
    return gd__mdb_err(rc, err, "stats");
  for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX; t++) {
    st->entities[t] = c.entities[t];
    st->entities_total += c.entities[t];
  }
  st->links = c.links;
  st->labels = c.labels;
  st->schema_version = (uint32_t)version;
  mdb_env_info(s->env, &info);
  gd__store_map_use(s, &st->file_bytes, &st->map_bytes);
  reader_slots rs = {0, 0};
  mdb_reader_list(s->env, count_reader, &rs);
  st->readers_used = rs.taken;
  st->readers_active = rs.active;
  st->readers_max = info.me_maxreaders;
  st->last_txnid = (uint64_t)info.me_last_txnid;
  return GD_OK;
}

int gd_store_count(gd_rtxn *r, int type, uint64_t *ret, gd_err *err) {
  gd__counters c;
  int rc;
  *ret = 0;
  if (!GD_TYPE_VALID(type))
    return gd_err_set(err, GD_EINVALID, "count: unknown type %d", type);
  if ((rc = counters_load(r->txn, r->s, &c)))
    return gd__mdb_err(rc, err, "count");
  *ret = c.entities[type];
  return GD_OK;
}

/* ---- writes ------------------------------------------------------------- */

int64_t gd_wtxn_now(const gd_wtxn *t) { return t->now; }

int gd__wtxn_begin(gd_store *s, gd_wtxn **ret, gd_err *err) {
  gd_wtxn *t = calloc(1, sizeof *t);
  int rc;
  if (!t)
    return gd_err_set(err, GD_ENOMEM, "write: out of memory");
  t->s = s;
  for (int attempt = 0;; attempt++) {
    rc = mdb_txn_begin(s->env, NULL, 0, &t->root);
    if (rc != MDB_MAP_RESIZED || attempt > 2)
      break;
    adopt_map_size(s);
  }
  if (rc) {
    free(t);
    return gd__mdb_err(rc, err, "write transaction");
  }
  mdb_set_dupsort(t->root, s->adj, adj_cmp);
  if ((rc = counters_load(t->root, s, &t->c))) {
    mdb_txn_abort(t->root);
    free(t);
    return gd__mdb_err(rc, err, "counters");
  }
  t->txn = t->root;
  t->now = gd_now_unix();
  *ret = t;
  return GD_OK;
}

int gd__wtxn_nest(gd_wtxn *t, gd_err *err) {
  MDB_txn *child;
  int rc = mdb_txn_begin(t->s->env, t->root, 0, &child);
  if (rc)
    return gd__mdb_err(rc, err, "nested transaction");
  t->saved = t->c;
  t->txn = child;
  return GD_OK;
}

int gd__wtxn_unnest(gd_wtxn *t, bool commit, gd_err *err) {
  MDB_txn *child = t->txn;
  int rc = MDB_SUCCESS;
  t->txn = t->root;
  if (commit) {
    rc = mdb_txn_commit(child);
  } else {
    mdb_txn_abort(child);
  }
  if (!commit || rc)
    t->c = t->saved;
  return rc ? gd__mdb_err(rc, err, "nested commit") : GD_OK;
}

/*
 * A commit that failed writing pages: ENOSPC, or EIO, which LMDB reports
 * for a short write (the disk filled mid-write). When the data file's
 * filesystem has (almost) no space left, say so: GD_ERESOURCE, not an I/O
 * fault. The transaction was aborted either way; the meta page was not
 * written, so the environment still holds the last commit.
 */
static int commit_write_err(gd_store *s, int rc, gd_err *err) {
  mdb_filehandle_t fd;
  struct statvfs vfs;
  if ((rc == ENOSPC || rc == EIO) && mdb_env_get_fd(s->env, &fd) == MDB_SUCCESS &&
      fstatvfs(fd, &vfs) == 0) {
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (rc == ENOSPC || avail < (UINT64_C(1) << 20))
      return gd_err_set(err, GD_ERESOURCE,
                        "commit: no space left on the data directory's filesystem "
                        "(%llu KiB free); nothing of this write was kept",
                        (unsigned long long)(avail >> 10));
  }
  return gd__mdb_err(rc, err, "commit");
}

int gd__wtxn_commit(gd_wtxn *t, gd_err *err) {
  gd_store *s = t->s;
  int rc = counters_store(t->root, s, &t->c);
  if (!rc && t->graph)
    rc = meta_put_u64(t->root, s->meta, "graph.txn", (uint64_t)mdb_txn_id(t->root));
  if (!rc && t->graph)
    rc = gd__glog_commit(t);
  gd__glog_free(t);
  if (rc) {
    mdb_txn_abort(t->root);
    free(t);
    return gd__mdb_err(rc, err, "commit");
  }
  rc = mdb_txn_commit(t->root);
  free(t);
  return rc ? commit_write_err(s, rc, err) : GD_OK;
}

void gd__wtxn_abort(gd_wtxn *t) {
  if (!t)
    return;
  if (t->txn != t->root)
    mdb_txn_abort(t->txn);
  mdb_txn_abort(t->root);
  gd__glog_free(t);
  free(t);
}

int gd__store_grow(gd_store *s, gd_err *err) {
  int rc;
  if (s->map_size >= s->map_size_max)
    return gd_err_set(err, GD_ERESOURCE,
                      "storage map is at its maximum of %llu MiB (--map-size-max-mb)",
                      (unsigned long long)(s->map_size_max >> 20));
  uint64_t next = s->map_size * 2;
  if (next > s->map_size_max)
    next = s->map_size_max;
  pthread_rwlock_wrlock(&s->resize_lock);
  rc = mdb_env_set_mapsize(s->env, next);
  if (rc == MDB_SUCCESS)
    s->map_size = next;
  pthread_rwlock_unlock(&s->resize_lock);
  return rc ? gd__mdb_err(rc, err, "grow map") : GD_OK;
}

int gd__store_map_use(gd_store *s, uint64_t *ret_used, uint64_t *ret_size) {
  MDB_envinfo info;
  MDB_stat st;
  int rc = mdb_env_info(s->env, &info);
  if (!rc)
    rc = mdb_env_stat(s->env, &st);
  if (rc)
    return rc;
  *ret_used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  *ret_size = info.me_mapsize;
  return MDB_SUCCESS;
}

unsigned gd__store_grow_ahead(gd_store *s) {
  unsigned grown = 0;
  for (;;) {
    uint64_t used, size;
    gd_err err;
    if (gd__store_map_use(s, &used, &size) || used <= size / 2 ||
        s->map_size >= s->map_size_max || gd__store_grow(s, &err) != GD_OK)
      return grown;
    grown++;
  }
}

int gd_store_backup(gd_store *s, const char *dir, uint64_t *ret_bytes, gd_err *err) {
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return gd_err_set(err, GD_EINVALID, "path: %s is not an existing directory", dir);
  DIR *d = opendir(dir);
  if (!d)
    return gd_err_set(err, GD_EINVALID, "path: %s: %s", dir, strerror(errno));
  struct dirent *e;
  bool empty = true;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      empty = false;
  closedir(d);
  if (!empty)
    return gd_err_set(err, GD_EINVALID, "path: %s is not empty", dir);
  int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
  char file[4096];
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  if (rc) {
    unlink(file);
    return gd__mdb_err(rc, err, "backup");
  }
  if (stat(file, &st) != 0)
    return gd_err_set(err, GD_EIO, "backup: %s: %s", file, strerror(errno));
  *ret_bytes = (uint64_t)st.st_size;
  return GD_OK;
}
