/*
 * The graph export for clustering and the snapshot tables (snapshot.h).
 *
 * Export. `entity` and `adj` are both keyed by the entity id (u64 BE), so
 * one cursor on each, advanced together, visits every entity with its
 * adjacency list in one sequential pass: a merge join, no random lookups.
 * Adjacency rows sort by (neighbour type << 56 | id) and SELLER is type 1,
 * so the rows that matter (an entity's sellers, a seller's direct links)
 * are the prefix of each list; the scan stops at the first other row and
 * jumps to the next key. Rows are read a leaf page at a time with
 * MDB_GET_MULTIPLE / MDB_NEXT_MULTIPLE (the table is DUPFIXED).
 *
 * Two LMDB details the loops rely on:
 * - MDB_GET_MULTIPLE returns the whole leaf page the duplicate cursor is
 *   on, from its first row. A key with a single row has no duplicate
 *   sub-database, and then the call is not to be made at all: LMDB 0.9
 *   leaves the sub-cursor of the previous key initialised when
 *   MDB_NEXT_NODUP lands on such a key, and GET_MULTIPLE returns that
 *   key's page (an entity with one seller row read as the previous key's
 *   sellers: the export lost it or gave it another's sellers, and a seller
 *   could gain another's direct links). So mdb_cursor_count first; one
 *   row is the row the positioning call returned. Scans that start in the
 *   middle of a page (GET_BOTH_RANGE) skip the rows before their start
 *   themselves.
 * - Direct links are taken from the larger endpoint's list (neighbour id <
 *   own id), where the smaller endpoint's index is already known, so each
 *   undirected link is emitted once without a set.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store/snapshot.h"
#include "store/store_int.h"

#define ID_MASK ((UINT64_C(1) << 56) - 1)

static inline int64_t rd_i64(const uint8_t *p) {
  int64_t v;
  memcpy(&v, p, 8);
  return v;
}

static bool in_window(int64_t first, int64_t last, int64_t since, int64_t until) {
  return (since == 0 || last >= since) && (until == 0 || first <= until);
}

/*
 * Grows parallel arrays (up to three; unused ones NULL) to hold at least
 * `need` elements, doubling. *cap changes only when every array grew; an
 * array that grew before a failure simply stays larger.
 */
static int grow(size_t *cap, size_t need, void *pa, size_t sa, void *pb, size_t sb, void *pc,
                size_t sc) {
  void **arr[3] = {pa, pb, pc};
  size_t size[3] = {sa, sb, sc};
  if (need <= *cap)
    return 0;
  size_t nc = *cap ? *cap : 1024;
  while (nc < need)
    nc *= 2;
  for (int i = 0; i < 3; i++) {
    if (!arr[i])
      continue;
    if (nc > SIZE_MAX / size[i])
      return -1;
    void *np = realloc(*arr[i], nc * size[i]);
    if (!np)
      return -1;
    *arr[i] = np;
  }
  *cap = nc;
  return 0;
}

void gd_graph_export_free(gd_graph_export *x) {
  if (!x)
    return;
  if (x->map) {
    munmap(x->map, x->map_len);
    memset(x, 0, sizeof *x);
    return;
  }
  free(x->seller_ids);
  free(x->ent_ids);
  free(x->ent_type);
  free(x->ent_off);
  free(x->ent_sellers);
  free(x->ent_n);
  free(x->link_a);
  free(x->link_b);
  memset(x, 0, sizeof *x);
}

/* ---- checksum ----------------------------------------------------------- */

static int hash_ints(EVP_MD_CTX *md, const void *a, size_t n, size_t width) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return n ? EVP_DigestUpdate(md, a, n * width) : 1;
#else
  uint8_t buf[4096];
  const uint8_t *p = a;
  size_t per = sizeof buf / width;
  while (n) {
    size_t k = n < per ? n : per;
    for (size_t i = 0; i < k; i++)
      for (size_t b = 0; b < width; b++)
        buf[i * width + b] = p[i * width + (width - 1 - b)];
    if (!EVP_DigestUpdate(md, buf, k * width))
      return 0;
    p += k * width;
    n -= k;
  }
  return 1;
#endif
}

int gd__export_checksum(const gd_graph_export *x, char out[65]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char dig[32];
  unsigned int dlen = 0;
  int64_t hdr[5] = {x->since, x->until, x->n_sellers, x->n_entities, x->n_links};
  size_t ns = (size_t)x->n_sellers, ne = (size_t)x->n_entities, nl = (size_t)x->n_links;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
           EVP_DigestUpdate(md, "graphd-export-1", 15) && hash_ints(md, hdr, 5, 8) &&
           hash_ints(md, x->seller_ids, ns, 8) && hash_ints(md, x->ent_ids, ne, 8) &&
           hash_ints(md, x->ent_type, ne, 1) && hash_ints(md, x->ent_off, ne + 1, 8) &&
           hash_ints(md, x->ent_sellers, (size_t)x->n_incidences, 8) &&
           hash_ints(md, x->ent_n, ne, 8) && hash_ints(md, x->link_a, nl, 8) &&
           hash_ints(md, x->link_b, nl, 8) && EVP_DigestFinal_ex(md, dig, &dlen) && dlen == 32;
  EVP_MD_CTX_free(md);
  if (!ok)
    return -1;
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", dig[i]);
  return 0;
}

/* ---- export ------------------------------------------------------------- */

/* A u64 counter from `meta` (0 when absent). */
static int meta_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *ret) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  *ret = 0;
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc == MDB_SUCCESS && v.mv_size == 8)
    *ret = gd_be64_get(v.mv_data);
  return rc;
}

typedef struct exporter {
  gd_graph_export x;
  size_t cap_s, cap_e, cap_off, cap_i, cap_l;
  int32_t *map; /* entity id -> seller index, -1 if not an exported seller */
  uint64_t max_id;
} exporter;

/*
 * Scans the seller-typed prefix of the adjacency list the cursor is on;
 * `first` is the row the positioning call returned. For a seller (self >=
 * 0, its index; id its store id) emits links to sellers with a smaller id;
 * for an entity appends the ids of its sellers to the incidences.
 * Returns an MDB code or -1 for out of memory; *ret_n counts what was
 * added.
 */
static int scan_sellers(exporter *ex, MDB_cursor *ac, MDB_val first, uint64_t id, int64_t self,
                        size_t *ret_n) {
  gd_graph_export *x = &ex->x;
  MDB_val k, page = first;
  size_t added = 0, dups = 0;
  /* A key with one row has no duplicate sub-database, and LMDB does not
   * reset the cursor's sub-cursor when MDB_NEXT_NODUP lands on such a key:
   * MDB_GET_MULTIPLE would return the previous key's last page. */
  int rc = mdb_cursor_count(ac, &dups);
  if (rc == MDB_SUCCESS && dups > 1)
    rc = mdb_cursor_get(ac, &k, &page, MDB_GET_MULTIPLE);
  while (rc == MDB_SUCCESS) {
    if (page.mv_size % GD__ADJ_ROW)
      return MDB_CORRUPTED;
    const uint8_t *p = page.mv_data;
    size_t nrows = page.mv_size / GD__ADJ_ROW;
    for (size_t i = 0; i < nrows; i++, p += GD__ADJ_ROW) {
      uint64_t prefix = gd_be64_get(p);
      uint64_t nbr = prefix & ID_MASK;
      x->rows_read++;
      if ((int)(prefix >> 56) != GD_TYPE_SELLER || (self >= 0 && nbr >= id))
        goto out;
      if (!in_window(rd_i64(p + 16), rd_i64(p + 24), x->since, x->until))
        continue;
      if (self >= 0) {
        int32_t j = nbr <= ex->max_id ? ex->map[nbr] : -1;
        if (j < 0)
          continue;
        size_t n = (size_t)x->n_links;
        if (grow(&ex->cap_l, n + 1, &x->link_a, sizeof *x->link_a, &x->link_b,
                 sizeof *x->link_b, NULL, 0))
          return -1;
        x->link_a[n] = j;
        x->link_b[n] = self;
        x->n_links++;
      } else {
        size_t n = (size_t)x->n_incidences;
        if (grow(&ex->cap_i, n + 1, &x->ent_sellers, sizeof *x->ent_sellers, NULL, 0, NULL, 0))
          return -1;
        x->ent_sellers[n] = (int64_t)nbr; /* an id until the end of the walk */
        x->n_incidences++;
      }
      added++;
    }
    rc = dups > 1 ? mdb_cursor_get(ac, &k, &page, MDB_NEXT_MULTIPLE) : MDB_NOTFOUND;
  }
  if (rc != MDB_NOTFOUND)
    return rc;
out:
  *ret_n = added;
  return MDB_SUCCESS;
}

static int export_fail(exporter *ex, int rc, gd_err *err, const char *what) {
  free(ex->map);
  gd_graph_export_free(&ex->x);
  if (rc == -1)
    return gd_err_set(err, GD_ENOMEM, "export: out of memory (%s)", what);
  return gd__mdb_err(rc, err, what);
}

/* Records between two gd_store_drop_resident calls of the export. */
#define DROP_EVERY (1u << 20)

int gd_store_export_graph(gd_rtxn *r, int64_t since, int64_t until, gd_graph_export *ret,
                          gd_err *err) {
  exporter ex;
  gd_graph_export *x = &ex.x;
  MDB_cursor *ec = NULL, *ac = NULL;
  MDB_val ek, ev, ak, av;
  int rc, arc;

  memset(ret, 0, sizeof *ret);
  if (since < 0 || until < 0 || (since && until && since > until))
    return gd_err_set(err, GD_EINVALID, "export: bad time window [%lld, %lld]", (long long)since,
                      (long long)until);
  memset(&ex, 0, sizeof ex);
  x->since = since;
  x->until = until;
  if ((rc = mdb_cursor_open(r->txn, r->s->entity, &ec)) ||
      (rc = mdb_cursor_open(r->txn, r->s->adj, &ac))) {
    if (ec)
      mdb_cursor_close(ec);
    return gd__mdb_err(rc, err, "export cursor");
  }

  /* The dense id -> seller index map spans ids 0..largest. */
  rc = mdb_cursor_get(ec, &ek, &ev, MDB_LAST);
  if (rc == MDB_SUCCESS) {
    if (ek.mv_size != 8) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
    ex.max_id = gd_be64_get(ek.mv_data);
    if (ex.max_id >= SIZE_MAX / sizeof(int32_t) - 1 || ex.max_id > ID_MASK ||
        !(ex.map = malloc((size_t)(ex.max_id + 1) * sizeof *ex.map))) {
      rc = -1;
      goto fail;
    }
    memset(ex.map, 0xff, (size_t)(ex.max_id + 1) * sizeof *ex.map);
  } else if (rc != MDB_NOTFOUND) {
    goto fail;
  }
  /* With an open window, size the arrays up front from the store's
   * counters (sellers, links, entity records: tight upper bounds then), so
   * the walk never copies a grown array (that was 15% of the export). With
   * a window they may be far too large: grow as needed instead. */
  if (since == 0 && until == 0) {
    MDB_stat es;
    uint64_t n_sel = 0, n_links = 0;
    if ((rc = mdb_stat(r->txn, r->s->entity, &es)) ||
        (rc = meta_u64(r->txn, r->s->meta, "count.seller", &n_sel)) ||
        (rc = meta_u64(r->txn, r->s->meta, "count.links", &n_links)))
      goto fail;
    size_t n_ent = es.ms_entries > n_sel ? (size_t)(es.ms_entries - n_sel) : 0;
    if (grow(&ex.cap_s, (size_t)n_sel + 1, &x->seller_ids, sizeof *x->seller_ids, NULL, 0,
             NULL, 0) ||
        grow(&ex.cap_e, n_ent + 1, &x->ent_ids, sizeof *x->ent_ids, &x->ent_type,
             sizeof *x->ent_type, &x->ent_n, sizeof *x->ent_n) ||
        grow(&ex.cap_off, n_ent + 2, &x->ent_off, sizeof *x->ent_off, NULL, 0, NULL, 0) ||
        grow(&ex.cap_i, (size_t)n_links + 1, &x->ent_sellers, sizeof *x->ent_sellers, NULL, 0,
             NULL, 0)) {
      rc = -1;
      goto fail;
    }
  }
  if (grow(&ex.cap_off, 1, &x->ent_off, sizeof *x->ent_off, NULL, 0, NULL, 0)) {
    rc = -1;
    goto fail;
  }
  x->ent_off[0] = 0;

  arc = mdb_cursor_get(ac, &ak, &av, MDB_FIRST);
  for (rc = mdb_cursor_get(ec, &ek, &ev, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(ec, &ek, &ev, MDB_NEXT)) {
    gd_entity_view e;
    if (ek.mv_size != 8) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
    uint64_t id = gd_be64_get(ek.mv_data);
    if (gd__rec_decode(ev.mv_data, ev.mv_size, id, &e)) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
    /* The walk reads the whole data file once; what it keeps is the
     * arrays. Drop the pages behind it from the resident set now and
     * then (store.h), so the scan's RSS is not the file's size. */
    if (++x->records_read % DROP_EVERY == 0)
      (void)gd__store_drop_resident(r->s, NULL); /* r holds the resize lock */
    /* Bring the adjacency cursor to this id (rows of a missing entity,
     * which the write path never leaves, are skipped). */
    while (arc == MDB_SUCCESS && (ak.mv_size != 8 || gd_be64_get(ak.mv_data) < id))
      arc = mdb_cursor_get(ac, &ak, &av, MDB_NEXT_NODUP);
    if (arc != MDB_SUCCESS && arc != MDB_NOTFOUND) {
      rc = arc;
      goto fail;
    }
    bool has_adj = arc == MDB_SUCCESS && gd_be64_get(ak.mv_data) == id;
    size_t added = 0;

    if (e.type == GD_TYPE_SELLER) {
      if (!in_window(e.first_seen, e.last_seen, since, until))
        goto next;
      if (x->n_sellers >= INT32_MAX) {
        free(ex.map);
        gd_graph_export_free(x);
        mdb_cursor_close(ec);
        mdb_cursor_close(ac);
        return gd_err_set(err, GD_ERESOURCE, "export: more than %d sellers", INT32_MAX);
      }
      int64_t idx = x->n_sellers;
      if (grow(&ex.cap_s, (size_t)idx + 1, &x->seller_ids, sizeof *x->seller_ids, NULL, 0, NULL,
               0)) {
        rc = -1;
        goto fail;
      }
      x->seller_ids[idx] = id;
      ex.map[id] = (int32_t)idx;
      x->n_sellers++;
      if (has_adj && (rc = scan_sellers(&ex, ac, av, id, idx, &added)))
        goto fail;
    } else if (GD_TYPE_VALID(e.type) && has_adj) {
      if ((rc = scan_sellers(&ex, ac, av, id, -1, &added)))
        goto fail;
      if (added) {
        size_t n = (size_t)x->n_entities;
        if (grow(&ex.cap_e, n + 1, &x->ent_ids, sizeof *x->ent_ids, &x->ent_type,
                 sizeof *x->ent_type, &x->ent_n, sizeof *x->ent_n) ||
            grow(&ex.cap_off, n + 2, &x->ent_off, sizeof *x->ent_off, NULL, 0, NULL, 0)) {
          rc = -1;
          goto fail;
        }
        x->ent_ids[n] = id;
        x->ent_type[n] = (uint8_t)e.type;
        x->ent_n[n] = e.seller_count;
        x->ent_off[n + 1] = x->n_incidences;
        x->n_entities++;
      }
    }
  next:
    if (has_adj)
      arc = mdb_cursor_get(ac, &ak, &av, MDB_NEXT_NODUP);
  }
  if (rc != MDB_NOTFOUND)
    goto fail;
  mdb_cursor_close(ec);
  mdb_cursor_close(ac);
  ec = ac = NULL;

  /* Seller ids -> indices. Drop sellers outside the export (a link row in
   * the window always has its seller in the window, since a link's times
   * are folded into both endpoints' records; this is the safety net) and
   * entities left with none. */
  {
    int64_t w = 0, ne = 0;
    for (int64_t e = 0; e < x->n_entities; e++) {
      int64_t start = x->ent_off[e], end = x->ent_off[e + 1];
      x->ent_off[ne] = w;
      for (int64_t i = start; i < end; i++) {
        uint64_t sid = (uint64_t)x->ent_sellers[i];
        int32_t j = sid <= ex.max_id ? ex.map[sid] : -1;
        if (j >= 0)
          x->ent_sellers[w++] = j;
      }
      if (w > x->ent_off[ne]) {
        x->ent_ids[ne] = x->ent_ids[e];
        x->ent_type[ne] = x->ent_type[e];
        x->ent_n[ne] = x->ent_n[e];
        ne++;
      }
    }
    x->ent_off[ne] = w;
    x->n_entities = ne;
    x->n_incidences = w;
  }
  free(ex.map);
  ex.map = NULL;

  /* Every array non-NULL, even when empty, like gd_csr. */
  if ((!x->seller_ids && !(x->seller_ids = malloc(8))) ||
      (!x->ent_ids && !(x->ent_ids = malloc(8))) || (!x->ent_type && !(x->ent_type = malloc(8))) ||
      (!x->ent_n && !(x->ent_n = malloc(8))) ||
      (!x->ent_sellers && !(x->ent_sellers = malloc(8))) ||
      (!x->link_a && !(x->link_a = malloc(8))) || (!x->link_b && !(x->link_b = malloc(8)))) {
    gd_graph_export_free(x);
    return gd_err_set(err, GD_ENOMEM, "export: out of memory");
  }
  if (gd__export_checksum(x, x->checksum)) {
    gd_graph_export_free(x);
    return gd_err_set(err, GD_EINTERNAL, "export: SHA-256 failed");
  }
  x->txn = (uint64_t)mdb_txn_id(r->txn);
  *ret = *x;
  return GD_OK;

fail:
  if (ec)
    mdb_cursor_close(ec);
  if (ac)
    mdb_cursor_close(ac);
  return export_fail(&ex, rc, err, rc == MDB_CORRUPTED ? "export: corrupt record" : "export");
}

/* ---- snapshot tables -------------------------------------------------- */

#define SNAP_FORMAT 1
#define SNAP_HDR 32
#define ASSIGN_ROW 16
#define MANIFEST_MAX (64u << 20)


static int snap_decode(const MDB_val *k, const MDB_val *v, gd_snapshot_view *ret) {
  const uint8_t *p = v->mv_data;
  if (k->mv_size != 8 || v->mv_size < SNAP_HDR || gd_le64_get(p) != SNAP_FORMAT)
    return -1;
  ret->id = gd_be64_get(k->mv_data);
  ret->n_assignments = gd_le64_get(p + 8);
  ret->n_clusters = gd_le64_get(p + 16);
  ret->created_at = (int64_t)gd_le64_get(p + 24);
  ret->manifest = p + SNAP_HDR;
  ret->manifest_len = v->mv_size - SNAP_HDR;
  return 0;
}

/* Finds snapshot `snap` (0 = latest); fills *ret (may be NULL). */
static int snap_find(MDB_txn *txn, gd_store *s, uint64_t snap, gd_snapshot_view *ret,
                     gd_err *err) {
  gd_snapshot_view tmp;
  uint8_t kb[8];
  MDB_val k, v;
  int rc;
  if (!ret)
    ret = &tmp;
  if (snap == 0) {
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, s->snap, &c)))
      return gd__mdb_err(rc, err, "snapshot cursor");
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
      return gd_err_set(err, GD_EPRECONDITION, "no snapshot exists yet");
  } else {
    gd__id_key(snap, kb, &k);
    rc = mdb_get(txn, s->snap, &k, &v);
    if (rc == MDB_NOTFOUND)
      return gd_err_set(err, GD_ENOTFOUND, "no snapshot %llu", (unsigned long long)snap);
  }
  if (rc)
    return gd__mdb_err(rc, err, "snapshot");
  if (snap_decode(&k, &v, ret))
    return gd_err_set(err, GD_EINTERNAL, "snapshot %llu: corrupt header",
                      (unsigned long long)gd_be64_get(k.mv_data));
  return GD_OK;
}

int gd_store_snapshot_next_id(gd_wtxn *t, uint64_t *ret_id, gd_err *err) {
  static const char name[] = "snap.next_id";
  MDB_val k = {sizeof name - 1, (void *)name}, v;
  uint8_t buf[8];
  uint64_t id = 1;
  int rc = mdb_get(t->txn, t->s->meta, &k, &v);
  if (rc == MDB_SUCCESS) {
    if (v.mv_size != 8)
      return gd_err_set(err, GD_EINTERNAL, "meta %s: corrupt", name);
    id = gd_be64_get(v.mv_data);
    if (id == 0)
      id = 1;
  } else if (rc != MDB_NOTFOUND) {
    return gd__mdb_err(rc, err, "meta");
  }
  gd_be64_put(buf, id + 1);
  v.mv_size = 8;
  v.mv_data = buf;
  if ((rc = mdb_put(t->txn, t->s->meta, &k, &v, 0)))
    return gd__mdb_err(rc, err, "meta");
  *ret_id = id;
  return GD_OK;
}

/* True if every key of dbi is below (id) / (id, *): rows for id append. */
static int appends_after(MDB_txn *txn, MDB_dbi dbi, uint64_t id, bool *ret) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) {
    *ret = true;
    return MDB_SUCCESS;
  }
  if (rc)
    return rc;
  *ret = k.mv_size >= 8 && gd_be64_get(k.mv_data) < id;
  return MDB_SUCCESS;
}

/* Per-cluster rows of snapshot id: dup lists appended in value order
 * under (id, cluster) keys. kind: 0 members, 1 ties, 2 links. */
#define LINK_ROW 40
static int put_rows(MDB_txn *txn, MDB_dbi dbi, uint64_t id, const gd_snapshot_in *in,
                    int kind, gd_err *err) {
  static const char *const whats[] = {"snapshot members", "snapshot ties", "snapshot links"};
  const char *what = whats[kind];
  const size_t *off = kind == 0 ? in->member_off : kind == 1 ? in->tie_off : in->link_off;
  MDB_cursor *cur;
  uint8_t kb[16], row[LINK_ROW];
  MDB_val k = {16, kb}, v;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc)
    return gd__mdb_err(rc, err, what);
  gd_be64_put(kb, id);
  for (size_t i = 0; i < in->n_clusters && !rc; i++) {
    gd_be64_put(kb + 8, in->cluster_ids[i]);
    for (size_t m = off[i]; m < off[i + 1] && !rc; m++) {
      if (kind == 0) {
        gd_be64_put(row, in->members[m]);
        v.mv_size = 8;
      } else if (kind == 1) {
        uint64_t bits;
        memcpy(&bits, &in->ties[m].weight, 8);
        gd_be64_put(row, in->ties[m].a);
        gd_be64_put(row + 8, in->ties[m].b);
        gd_be64_put(row + 16, bits);
        v.mv_size = 24;
      } else {
        const gd_snap_link *l = &in->links[m];
        gd_be64_put(row, l->seller);
        gd_be64_put(row + 8, l->entity);
        gd_be64_put(row + 16, (uint64_t)l->first_seen);
        gd_be64_put(row + 24, (uint64_t)l->last_seen);
        gd_be64_put(row + 32, l->count);
        v.mv_size = LINK_ROW;
      }
      v.mv_data = row;
      k.mv_size = 16;
      k.mv_data = kb;
      rc = mdb_cursor_put(cur, &k, &v, MDB_APPENDDUP);
    }
  }
  mdb_cursor_close(cur);
  return rc ? gd__mdb_err(rc, err, what) : GD_OK;
}

/* A label's length in a labels region: u16 in the entity record's byte
 * order (record.c), since the region is the record's, copied. */
static inline size_t label_len(const uint8_t *q) {
  uint16_t n;
  memcpy(&n, q, 2);
  return n;
}

/* snap_name rows of snapshot id, appended when it is the newest. */
#define DETAIL_BYTES 30 /* first, last, seller_count, u16 count, u32 bytes */
static int put_names(MDB_txn *txn, MDB_dbi dbi, uint64_t id, const gd_snapshot_in *in,
                     gd_err *err) {
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  bool append;
  int rc;
  for (size_t i = 0; i < in->n_names; i++) {
    size_t n = in->name_key_off[i + 1] - in->name_key_off[i];
    bool detail = in->name_flags[i] & GD_SNAP_DETAIL;
    if (n > GD__EKEY_INLINE_MAX || (i && in->name_ids[i] <= in->name_ids[i - 1]) ||
        (detail && (!in->name_detail || in->name_detail[i].labels_len > UINT32_MAX ||
                    in->name_detail[i].nlabels > UINT16_MAX)))
      return gd_err_set(err, GD_EINVALID, "names[%zu]: %s", i,
                        n > GD__EKEY_INLINE_MAX ? "key too long"
                        : detail                ? "bad detail"
                                                : "ids not strictly ascending");
  }
  if ((rc = appends_after(txn, dbi, id, &append)))
    return gd__mdb_err(rc, err, "snapshot names");
  /* One cursor for all the puts: it keeps its path to the last leaf, so a
   * put does not start each descent at the root (each page a descent
   * visits costs a search of the transaction's dirty-page list). */
  MDB_cursor *cur;
  if ((rc = mdb_cursor_open(txn, dbi, &cur)))
    return gd__mdb_err(rc, err, "snapshot names");
  gd_be64_put(kb, id);
  for (size_t i = 0; i < in->n_names; i++) {
    size_t n = in->name_key_off[i + 1] - in->name_key_off[i];
    const gd_snap_detail *d =
        in->name_flags[i] & GD_SNAP_DETAIL ? &in->name_detail[i] : NULL;
    gd_be64_put(kb + 8, in->name_ids[i]);
    k.mv_size = 16;
    k.mv_data = kb;
    v.mv_size = 2 + n + (d ? DETAIL_BYTES + d->labels_len : 0);
    v.mv_data = NULL;
    if ((rc = mdb_cursor_put(cur, &k, &v, MDB_RESERVE | (append ? MDB_APPEND : 0)))) {
      mdb_cursor_close(cur);
      return gd__mdb_err(rc, err, "snapshot names");
    }
    uint8_t *p = v.mv_data;
    p[0] = in->name_type[i];
    p[1] = in->name_flags[i];
    p += 2;
    if (d) {
      gd_le64_put(p, (uint64_t)d->first_seen);
      gd_le64_put(p + 8, (uint64_t)d->last_seen);
      gd_le64_put(p + 16, d->seller_count);
      p[24] = (uint8_t)d->nlabels;
      p[25] = (uint8_t)(d->nlabels >> 8);
      for (int b = 0; b < 4; b++)
        p[26 + b] = (uint8_t)(d->labels_len >> (8 * b));
      if (d->labels_len)
        memcpy(p + DETAIL_BYTES, d->labels_raw, d->labels_len);
      p += DETAIL_BYTES + d->labels_len;
    }
    memcpy(p, in->name_keys + in->name_key_off[i], n);
  }
  mdb_cursor_close(cur);
  return GD_OK;
}

int gd_store_snapshot_name(gd_rtxn *r, uint64_t snap, uint64_t id, gd_snap_name *ret,
                           gd_err *err) {
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  gd_be64_put(kb, snap);
  gd_be64_put(kb + 8, id);
  int rc = mdb_get(r->txn, r->s->snap_name, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "snapshot %llu names no entity %llu",
                      (unsigned long long)snap, (unsigned long long)id);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot names");
  const uint8_t *p = v.mv_data, *end = p + v.mv_size;
  if (v.mv_size < 2)
    goto corrupt;
  memset(ret, 0, sizeof *ret);
  ret->type = p[0];
  ret->flagged = p[1] & GD_SNAP_FLAGGED;
  ret->detail = p[1] & GD_SNAP_DETAIL;
  p += 2;
  if (ret->detail) {
    if (end - p < DETAIL_BYTES)
      goto corrupt;
    gd_snap_detail *d = &ret->d;
    d->first_seen = (int64_t)gd_le64_get(p);
    d->last_seen = (int64_t)gd_le64_get(p + 8);
    d->seller_count = gd_le64_get(p + 16);
    d->nlabels = (size_t)p[24] | (size_t)p[25] << 8;
    d->labels_len = (size_t)p[26] | (size_t)p[27] << 8 | (size_t)p[28] << 16 | (size_t)p[29] << 24;
    p += DETAIL_BYTES;
    if ((size_t)(end - p) < d->labels_len)
      goto corrupt;
    d->labels_raw = p;
    /* Validate once so gd_snap_name_label needs no checks. */
    const uint8_t *q = p, *qe = p + d->labels_len;
    for (size_t i = 0; i < d->nlabels; i++) {
      if (qe - q < 2 || (size_t)(qe - q - 2) < label_len(q))
        goto corrupt;
      q += 2 + label_len(q);
    }
    if (q != qe)
      goto corrupt;
    p = qe;
  }
  ret->key = (gd_str){(const char *)p, (size_t)(end - p)};
  return GD_OK;
corrupt:
  return gd_err_set(err, GD_EINTERNAL, "snapshot %llu: corrupt name of %llu",
                    (unsigned long long)snap, (unsigned long long)id);
}

gd_str gd_snap_name_label(const gd_snap_name *nm, size_t i) {
  const uint8_t *q = nm->d.labels_raw;
  while (i--)
    q += 2 + label_len(q);
  return (gd_str){(const char *)q + 2, label_len(q)};
}

/* snap_order rows of snapshot id: one dup list per order, appended. */
static int put_orders(MDB_txn *txn, MDB_dbi dbi, uint64_t id, const gd_snapshot_in *in,
                      gd_err *err) {
  uint8_t kb[9];
  MDB_val k = {9, kb}, v;
  MDB_cursor *cur;
  for (int o = 0; o < GD_ORDERS; o++)
    for (size_t i = 1; i < in->n_order[o]; i++)
      if (memcmp(in->orders[o] + (i - 1) * GD_ORDER_ROW, in->orders[o] + i * GD_ORDER_ROW,
                 GD_ORDER_ROW) >= 0)
        return gd_err_set(err, GD_EINVALID, "order %d: rows not strictly ascending", o);
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot orders");
  gd_be64_put(kb, id);
  for (int o = 0; o < GD_ORDERS && !rc; o++) {
    kb[8] = (uint8_t)o;
    for (size_t i = 0; i < in->n_order[o] && !rc; i++) {
      k.mv_size = 9;
      k.mv_data = kb;
      v.mv_size = GD_ORDER_ROW;
      v.mv_data = (void *)(in->orders[o] + i * GD_ORDER_ROW);
      rc = mdb_cursor_put(cur, &k, &v, MDB_APPENDDUP);
    }
  }
  mdb_cursor_close(cur);
  return rc ? gd__mdb_err(rc, err, "snapshot orders") : GD_OK;
}

int gd_store_order_visit(gd_rtxn *r, uint64_t snap, int order, const uint8_t *after,
                         gd_order_fn fn, void *ctx, bool *ret_indexed, gd_err *err) {
  uint8_t kb[9], first[GD_ORDER_ROW];
  MDB_val k = {9, kb}, v;
  MDB_cursor *cur;
  *ret_indexed = false;
  int rc = mdb_cursor_open(r->txn, r->s->snap_order, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot orders");
  gd_be64_put(kb, snap);
  kb[8] = (uint8_t)order;
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
  if (rc == MDB_SUCCESS) {
    *ret_indexed = true;
    if (after) {
      /* The first row >= after, then past it if it is after itself. */
      memcpy(first, after, GD_ORDER_ROW);
      v.mv_size = GD_ORDER_ROW;
      v.mv_data = first;
      rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
      if (rc == MDB_SUCCESS && v.mv_size == GD_ORDER_ROW &&
          memcmp(v.mv_data, after, GD_ORDER_ROW) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
  }
  /* Now at the first row to visit (or done). */
  bool stop = false;
  if (rc == MDB_SUCCESS && fn) {
    for (;;) {
      if (v.mv_size != GD_ORDER_ROW) {
        mdb_cursor_close(cur);
        return gd_err_set(err, GD_EINTERNAL, "snapshot %llu: corrupt order row",
                          (unsigned long long)snap);
      }
      if (fn(ctx, v.mv_data)) {
        stop = true;
        break;
      }
      if ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)))
        break;
    }
  }
  mdb_cursor_close(cur);
  if (!stop && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot orders");
  return GD_OK;
}

int gd_store_snapshot_has_names(gd_rtxn *r, uint64_t snap, bool *ret, gd_err *err) {
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  MDB_cursor *cur;
  int rc = mdb_cursor_open(r->txn, r->s->snap_name, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot names");
  gd_be64_put(kb, snap);
  gd_be64_put(kb + 8, 0);
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot names");
  *ret = rc == MDB_SUCCESS && k.mv_size == 16 && gd_be64_get(k.mv_data) == snap;
  return GD_OK;
}

/* Deletes every (id, *) key of dbi (with all its dups). */
static int del_prefix(MDB_txn *txn, MDB_dbi dbi, uint64_t id, const char *what, gd_err *err) {
  MDB_cursor *cur;
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc)
    return gd__mdb_err(rc, err, what);
  /* Each round seeks afresh: where a cursor stands after deleting a key
   * with all its dups is subtle in LMDB, a seek is not. */
  for (;;) {
    gd_be64_put(kb, id);
    gd_be64_put(kb + 8, 0);
    k.mv_size = 16;
    k.mv_data = kb;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc || k.mv_size != 16 || gd_be64_get(k.mv_data) != id)
      break;
    if ((rc = mdb_cursor_del(cur, MDB_NODUPDATA)))
      break;
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, what);
  return GD_OK;
}

int gd_store_snapshot_put(gd_wtxn *t, uint64_t id, const gd_snapshot_in *in, gd_err *err) {
  MDB_txn *txn = t->txn;
  gd_store *s = t->s;
  uint8_t kb[16], row[ASSIGN_ROW];
  MDB_val k, v;
  MDB_cursor *cur = NULL;
  bool append;
  int rc;

  if (id == 0)
    return gd_err_set(err, GD_EINVALID, "snapshot id 0");
  if (in->manifest_len > MANIFEST_MAX)
    return gd_err_set(err, GD_EINVALID, "manifest of %zu bytes is over %u", in->manifest_len,
                      MANIFEST_MAX);
  if ((in->n_assign && (!in->sellers || !in->clusters)) ||
      (in->n_clusters && (!in->cluster_ids || !in->summary_data || !in->summary_off)))
    return gd_err_set(err, GD_EINVALID, "snapshot: missing arrays");
  for (size_t i = 1; i < in->n_assign; i++)
    if (in->sellers[i] <= in->sellers[i - 1])
      return gd_err_set(err, GD_EINVALID, "assignments[%zu]: seller ids not strictly ascending",
                        i);
  for (size_t i = 0; i < in->n_clusters; i++) {
    if (i > 0 && in->cluster_ids[i] <= in->cluster_ids[i - 1])
      return gd_err_set(err, GD_EINVALID, "clusters[%zu]: ids not strictly ascending", i);
    if (in->summary_off[i + 1] <= in->summary_off[i])
      return gd_err_set(err, GD_EINVALID, "clusters[%zu]: empty summary", i);
    for (size_t m = in->member_off ? in->member_off[i] + 1 : 1;
         in->member_off && m < in->member_off[i + 1]; m++)
      if (in->members[m] <= in->members[m - 1])
        return gd_err_set(err, GD_EINVALID, "clusters[%zu]: members not strictly ascending", i);
    for (size_t m = in->tie_off ? in->tie_off[i] : 0; in->tie_off && m < in->tie_off[i + 1];
         m++) {
      const gd_snap_tie *x = &in->ties[m];
      if (x->a >= x->b ||
          (m > in->tie_off[i] && (x->a < x[-1].a || (x->a == x[-1].a && x->b <= x[-1].b))))
        return gd_err_set(err, GD_EINVALID, "clusters[%zu]: ties out of order", i);
    }
    for (size_t m = in->link_off ? in->link_off[i] + 1 : 1; in->link_off && m < in->link_off[i + 1];
         m++) {
      const gd_snap_link *x = &in->links[m];
      if (x->seller < x[-1].seller || (x->seller == x[-1].seller && x->entity <= x[-1].entity))
        return gd_err_set(err, GD_EINVALID, "clusters[%zu]: links out of order", i);
    }
  }

  gd__id_key(id, kb, &k);
  rc = mdb_get(txn, s->snap, &k, &v);
  if (rc == MDB_SUCCESS)
    return gd_err_set(err, GD_EEXISTS, "snapshot %llu exists", (unsigned long long)id);
  if (rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot");
  rc = mdb_get(txn, s->snap_assign, &k, &v);
  if (rc == MDB_SUCCESS)
    return gd_err_set(err, GD_EEXISTS, "snapshot %llu has assignments already",
                      (unsigned long long)id);
  if (rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot assignments");

  /* Header + manifest, written in place. */
  v.mv_size = SNAP_HDR + in->manifest_len;
  v.mv_data = NULL;
  if ((rc = mdb_put(txn, s->snap, &k, &v, MDB_RESERVE)))
    return gd__mdb_err(rc, err, "snapshot");
  uint8_t *p = v.mv_data;
  gd_le64_put(p, SNAP_FORMAT);
  gd_le64_put(p + 8, in->n_assign);
  gd_le64_put(p + 16, in->n_clusters);
  gd_le64_put(p + 24, (uint64_t)gd_wtxn_now(t));
  if (in->manifest_len)
    memcpy(p + SNAP_HDR, in->manifest, in->manifest_len);

  /* Assignments: the dup list of a new key, appended in seller order. */
  if (in->n_assign) {
    if ((rc = mdb_cursor_open(txn, s->snap_assign, &cur)))
      return gd__mdb_err(rc, err, "snapshot assignments");
    for (size_t i = 0; i < in->n_assign; i++) {
      gd_be64_put(row, in->sellers[i]);
      gd_be64_put(row + 8, in->clusters[i]);
      gd__id_key(id, kb, &k);
      v.mv_size = ASSIGN_ROW;
      v.mv_data = row;
      if ((rc = mdb_cursor_put(cur, &k, &v, MDB_APPENDDUP))) {
        mdb_cursor_close(cur);
        return gd__mdb_err(rc, err, "snapshot assignments");
      }
    }
    mdb_cursor_close(cur);
  }

  /* Summaries, appended when this is the newest snapshot. */
  if ((rc = appends_after(txn, s->snap_cluster, id, &append)) ||
      (rc = mdb_cursor_open(txn, s->snap_cluster, &cur)))
    return gd__mdb_err(rc, err, "snapshot clusters");
  for (size_t i = 0; i < in->n_clusters && !rc; i++) {
    gd_be64_put(kb, id);
    gd_be64_put(kb + 8, in->cluster_ids[i]);
    k.mv_size = 16;
    k.mv_data = kb;
    v.mv_size = in->summary_off[i + 1] - in->summary_off[i];
    v.mv_data = (void *)(in->summary_data + in->summary_off[i]);
    rc = mdb_cursor_put(cur, &k, &v, append ? MDB_APPEND : 0); /* one cursor: put_names */
  }
  mdb_cursor_close(cur);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot clusters");
  if (in->member_off && (rc = put_rows(txn, s->snap_member, id, in, 0, err)))
    return rc;
  if (in->tie_off && (rc = put_rows(txn, s->snap_tie, id, in, 1, err)))
    return rc;
  if (in->link_off && (rc = put_rows(txn, s->snap_link, id, in, 2, err)))
    return rc;
  if ((rc = put_names(txn, s->snap_name, id, in, err)))
    return rc;
  return put_orders(txn, s->snap_order, id, in, err);
}

int gd_store_snapshot_delete(gd_wtxn *t, uint64_t id, gd_err *err) {
  MDB_txn *txn = t->txn;
  gd_store *s = t->s;
  uint8_t kb[16];
  MDB_val k, v;
  MDB_cursor *cur;
  int rc;

  if (id == 0)
    return gd_err_set(err, GD_ENOTFOUND, "no snapshot 0");
  if ((rc = snap_find(txn, s, id, NULL, err)))
    return rc;
  gd__id_key(id, kb, &k);
  if ((rc = mdb_del(txn, s->snap, &k, NULL)))
    return gd__mdb_err(rc, err, "snapshot");
  rc = mdb_del(txn, s->snap_assign, &k, NULL);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot assignments");

  if ((rc = mdb_cursor_open(txn, s->snap_cluster, &cur)))
    return gd__mdb_err(rc, err, "snapshot clusters");
  gd_be64_put(kb, id);
  gd_be64_put(kb + 8, 0);
  k.mv_size = 16;
  k.mv_data = kb;
  /* After mdb_cursor_del the cursor already sits on the next row; LMDB's
   * MDB_NEXT then returns that row instead of skipping it. */
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
       rc == MDB_SUCCESS && k.mv_size == 16 && gd_be64_get(k.mv_data) == id;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if ((rc = mdb_cursor_del(cur, 0)))
      break;
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot clusters");
  if ((rc = del_prefix(txn, s->snap_member, id, "snapshot members", err)) ||
      (rc = del_prefix(txn, s->snap_tie, id, "snapshot ties", err)) ||
      (rc = del_prefix(txn, s->snap_name, id, "snapshot names", err)) ||
      (rc = del_prefix(txn, s->snap_link, id, "snapshot links", err)))
    return rc;
  for (int o = 0; o < GD_ORDERS; o++) {
    uint8_t ob[9];
    MDB_val ok = {9, ob};
    gd_be64_put(ob, id);
    ob[8] = (uint8_t)o;
    rc = mdb_del(txn, s->snap_order, &ok, NULL);
    if (rc && rc != MDB_NOTFOUND)
      return gd__mdb_err(rc, err, "snapshot orders");
  }
  return GD_OK;
}

int gd_store_snapshot_get(gd_rtxn *r, uint64_t id, gd_snapshot_view *ret, gd_err *err) {
  return snap_find(r->txn, r->s, id, ret, err);
}

int gd_store_snapshot_list(gd_rtxn *r, uint64_t before, size_t limit, gd_snapshot_view *ret,
                           size_t *ret_n, bool *ret_more, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t kb[8];
  size_t n = 0;
  int rc = mdb_cursor_open(r->txn, r->s->snap, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "snapshot cursor");
  if (before == 0) {
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  } else {
    gd__id_key(before, kb, &k);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                            : rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_PREV);
  }
  for (; rc == MDB_SUCCESS && n < limit; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
    if (snap_decode(&k, &v, &ret[n])) {
      mdb_cursor_close(cur);
      return gd_err_set(err, GD_EINTERNAL, "snapshot: corrupt header");
    }
    n++;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "snapshot list");
  *ret_n = n;
  *ret_more = rc == MDB_SUCCESS;
  return GD_OK;
}

int gd_store_assignment_get(gd_rtxn *r, uint64_t snap, uint64_t seller, uint64_t *ret_cluster,
                            gd_err *err) {
  gd_snapshot_view sv;
  MDB_cursor *cur;
  uint8_t kb[8], row[ASSIGN_ROW] = {0};
  MDB_val k, v;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  if ((rc = mdb_cursor_open(r->txn, r->s->snap_assign, &cur)))
    return gd__mdb_err(rc, err, "assignment cursor");
  gd__id_key(sv.id, kb, &k);
  gd_be64_put(row, seller);
  v.mv_size = ASSIGN_ROW;
  v.mv_data = row;
  rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
  if (rc == MDB_SUCCESS && (v.mv_size != ASSIGN_ROW || gd_be64_get(v.mv_data) != seller))
    rc = MDB_NOTFOUND;
  if (rc == MDB_SUCCESS)
    *ret_cluster = gd_be64_get((const uint8_t *)v.mv_data + 8);
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "seller %llu is not in snapshot %llu",
                      (unsigned long long)seller, (unsigned long long)sv.id);
  return rc ? gd__mdb_err(rc, err, "assignments") : GD_OK;
}

int gd_store_assignments_visit(gd_rtxn *r, uint64_t snap, uint64_t after_seller,
                               gd_assign_fn fn, void *ctx, uint64_t *ret_snap, gd_err *err) {
  gd_snapshot_view sv;
  MDB_cursor *cur;
  uint8_t kb[8], row[ASSIGN_ROW] = {0};
  uint64_t sellers[GD_ASSIGN_BATCH], clusters[GD_ASSIGN_BATCH];
  size_t nb = 0;
  MDB_val k, v;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  if (ret_snap)
    *ret_snap = sv.id;
  if (after_seller == UINT64_MAX)
    return GD_OK;
  if ((rc = mdb_cursor_open(r->txn, r->s->snap_assign, &cur)))
    return gd__mdb_err(rc, err, "assignment cursor");
  gd__id_key(sv.id, kb, &k);
  gd_be64_put(row, after_seller + 1);
  v.mv_size = ASSIGN_ROW;
  v.mv_data = row;
  rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
  if (rc == MDB_SUCCESS)
    rc = mdb_cursor_get(cur, &k, &v, MDB_GET_MULTIPLE);
  bool stop = false;
  while (rc == MDB_SUCCESS && !stop) {
    if (v.mv_size % ASSIGN_ROW) {
      rc = MDB_CORRUPTED;
      break;
    }
    const uint8_t *p = v.mv_data;
    for (size_t i = 0; i < v.mv_size / ASSIGN_ROW && !stop; i++, p += ASSIGN_ROW) {
      uint64_t sid = gd_be64_get(p);
      if (sid <= after_seller) /* the page's rows before our start */
        continue;
      sellers[nb] = sid;
      clusters[nb] = gd_be64_get(p + 8);
      if (++nb == GD_ASSIGN_BATCH) {
        stop = fn(ctx, sellers, clusters, nb) != 0;
        nb = 0;
      }
    }
    if (!stop)
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_MULTIPLE);
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return rc == MDB_CORRUPTED ? gd_err_set(err, GD_EINTERNAL, "assignments: corrupt row")
                               : gd__mdb_err(rc, err, "assignments");
  if (!stop && nb)
    fn(ctx, sellers, clusters, nb);
  return GD_OK;
}

int gd_store_cluster_get(gd_rtxn *r, uint64_t snap, uint64_t cluster, const void **ret_summary,
                         size_t *ret_len, gd_err *err) {
  gd_snapshot_view sv;
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  gd_be64_put(kb, sv.id);
  gd_be64_put(kb + 8, cluster);
  rc = mdb_get(r->txn, r->s->snap_cluster, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "no cluster %llu in snapshot %llu",
                      (unsigned long long)cluster, (unsigned long long)sv.id);
  if (rc)
    return gd__mdb_err(rc, err, "cluster");
  *ret_summary = v.mv_data;
  *ret_len = v.mv_size;
  return GD_OK;
}

int gd_store_clusters_visit(gd_rtxn *r, uint64_t snap, uint64_t after_cluster, gd_cluster_fn fn,
                            void *ctx, uint64_t *ret_snap, gd_err *err) {
  gd_snapshot_view sv;
  MDB_cursor *cur;
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  if (ret_snap)
    *ret_snap = sv.id;
  if (after_cluster == UINT64_MAX)
    return GD_OK;
  if ((rc = mdb_cursor_open(r->txn, r->s->snap_cluster, &cur)))
    return gd__mdb_err(rc, err, "cluster cursor");
  gd_be64_put(kb, sv.id);
  gd_be64_put(kb + 8, after_cluster + 1);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
       rc == MDB_SUCCESS && k.mv_size == 16 && gd_be64_get(k.mv_data) == sv.id;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (fn(ctx, gd_be64_get((const uint8_t *)k.mv_data + 8), v.mv_data, v.mv_size))
      break;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "clusters");
  return GD_OK;
}

/*
 * Calls fn with each row (row_size bytes, starting with a seller id, u64 BE)
 * of the (snap, cluster) dup list of dbi whose seller is > after, in order,
 * until fn returns non-zero. *ret_present: the list exists. The members'
 * and the kept links' reader.
 */
typedef int (*row_fn)(void *ctx, const uint8_t *row);
static int cluster_rows(MDB_txn *txn, MDB_dbi dbi, uint64_t snap, uint64_t cluster,
                        uint64_t after, size_t row_size, row_fn fn, void *ctx,
                        bool *ret_present, const char *what, gd_err *err) {
  MDB_cursor *cur;
  uint8_t kb[16], vb[LINK_ROW] = {0};
  MDB_val k = {16, kb}, v;
  *ret_present = false;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc)
    return gd__mdb_err(rc, err, what);
  gd_be64_put(kb, snap);
  gd_be64_put(kb + 8, cluster);
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
  if (rc == MDB_SUCCESS) {
    *ret_present = true;
    k.mv_size = 16;
    k.mv_data = kb;
    v.mv_size = row_size;
    v.mv_data = vb;
    gd_be64_put(vb, after + 1);
    rc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
      if (v.mv_size != row_size) {
        mdb_cursor_close(cur);
        return gd_err_set(err, GD_EINTERNAL, "%s: a row of %zu bytes", what, v.mv_size);
      }
      if (fn(ctx, v.mv_data))
        break;
    }
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, what);
  return GD_OK;
}

typedef struct member_ctx {
  uint64_t *ret;
  size_t *n, max;
  bool *more;
} member_ctx;

static int member_row(void *ctx, const uint8_t *row) {
  member_ctx *m = ctx;
  if (*m->n == m->max) {
    *m->more = true;
    return 1;
  }
  m->ret[(*m->n)++] = gd_be64_get(row);
  return 0;
}

int gd_store_cluster_members(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                             size_t max, uint64_t *ret, size_t *ret_n, bool *ret_more,
                             bool *ret_indexed, gd_err *err) {
  gd_snapshot_view sv;
  *ret_n = 0;
  *ret_more = false;
  *ret_indexed = false;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  member_ctx m = {ret, ret_n, max, ret_more};
  return cluster_rows(r->txn, r->s->snap_member, sv.id, cluster, after, 8, member_row, &m,
                      ret_indexed, "snapshot members", err);
}

typedef struct link_ctx {
  uint64_t upto;
  gd_snap_link_fn fn;
  void *ctx;
} link_ctx;

static int link_row(void *ctx, const uint8_t *p) {
  link_ctx *lc = ctx;
  gd_snap_link l = {gd_be64_get(p), gd_be64_get(p + 8), (int64_t)gd_be64_get(p + 16),
                    (int64_t)gd_be64_get(p + 24), gd_be64_get(p + 32)};
  return l.seller > lc->upto || lc->fn(lc->ctx, &l);
}

int gd_store_cluster_links(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                           uint64_t upto, gd_snap_link_fn fn, void *ctx, bool *ret_kept,
                           gd_err *err) {
  link_ctx lc = {upto, fn, ctx};
  return cluster_rows(r->txn, r->s->snap_link, snap, cluster, after, LINK_ROW, link_row, &lc,
                      ret_kept, "snapshot links", err);
}

static int cmp_tie_strongest(const void *pa, const void *pb) {
  const gd_snap_tie *a = pa, *b = pb;
  if (a->weight != b->weight)
    return a->weight > b->weight ? -1 : 1;
  if (a->a != b->a)
    return a->a < b->a ? -1 : 1;
  return (a->b > b->b) - (a->b < b->b);
}

int gd_store_cluster_ties(gd_rtxn *r, uint64_t snap, uint64_t cluster, size_t max,
                          gd_snap_tie *ret, size_t *ret_n, uint64_t *ret_total, gd_err *err) {
  gd_snapshot_view sv;
  MDB_cursor *cur;
  uint8_t kb[16];
  MDB_val k = {16, kb}, v;
  gd_snap_tie *all = NULL;
  size_t n = 0, cap = 0;
  *ret_n = 0;
  *ret_total = 0;
  int rc = snap_find(r->txn, r->s, snap, &sv, err);
  if (rc)
    return rc;
  if ((rc = mdb_cursor_open(r->txn, r->s->snap_tie, &cur)))
    return gd__mdb_err(rc, err, "tie cursor");
  gd_be64_put(kb, sv.id);
  gd_be64_put(kb + 8, cluster);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
    if (v.mv_size != 24) {
      rc = gd_err_set(err, GD_EINTERNAL, "tie row of %zu bytes", v.mv_size);
      goto out;
    }
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      gd_snap_tie *na = realloc(all, nc * sizeof *na);
      if (!na) {
        rc = gd_err_set(err, GD_ENOMEM, "out of memory for %zu ties", nc);
        goto out;
      }
      all = na;
      cap = nc;
    }
    const uint8_t *p = v.mv_data;
    uint64_t bits = gd_be64_get(p + 16);
    all[n].a = gd_be64_get(p);
    all[n].b = gd_be64_get(p + 8);
    memcpy(&all[n].weight, &bits, 8);
    n++;
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    rc = gd__mdb_err(rc, err, "ties");
    goto out;
  }
  rc = GD_OK;
  if (n)
    qsort(all, n, sizeof *all, cmp_tie_strongest);
  *ret_total = n;
  *ret_n = n < max ? n : max;
  if (*ret_n)
    memcpy(ret, all, *ret_n * sizeof *ret);
out:
  mdb_cursor_close(cur);
  free(all);
  return rc;
}

/* ---- job records ------------------------------------------------------------ */

int gd_store_job_put(gd_wtxn *t, uint64_t id, const void *rec, size_t len, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v = {len, (void *)rec};
  if (id == 0 || len == 0 || len > (1u << 20))
    return gd_err_set(err, GD_EINVALID, "job record %llu of %zu bytes", (unsigned long long)id,
                      len);
  gd__id_key(id, kb, &k);
  int rc = mdb_put(t->txn, t->s->job, &k, &v, 0);
  return rc ? gd__mdb_err(rc, err, "job record") : GD_OK;
}

int gd_store_jobs_visit(gd_rtxn *r, gd_job_rec_fn fn, void *ctx, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = mdb_cursor_open(r->txn, r->s->job, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "job cursor");
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8)
      continue;
    if (fn(ctx, gd_be64_get(k.mv_data), v.mv_data, v.mv_size))
      break;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "job records");
  return GD_OK;
}
