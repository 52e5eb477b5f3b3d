/*
 * Export images and the graph change log (snapshot.h, "Export images").
 *
 * The log. Table `glog`: key = a write transaction's id (u64 BE), value =
 * the ids it marked changed, sorted, distinct (u64 BE each). Meta
 * "glog.floor": the log holds every change of the transactions after it;
 * "glog.ids": the ids it holds. An aborted request's marks stay in its
 * group's list: an id re-read for nothing costs a lookup, an id missed
 * would cost a wrong export, so the log errs on the side of more.
 *
 * The patch. With C the changed ids since the image:
 * - sellers: the image's, less those in C that are no longer sellers,
 *   plus those in C that are; an old index maps to its new one through a
 *   monotone remap, so everything sorted by index stays sorted;
 * - entities: the image's not in C, remapped, merged by id with those in C
 *   re-read (record and seller rows), as the full read would list them;
 * - direct links come from the larger endpoint's rows (snapshot.c): a link
 *   is kept when its larger endpoint is not in C (its rows are as they
 *   were), and re-read from the rows of every seller in C; both lists are
 *   sorted by (larger, smaller) index, so a merge gives the full read's
 *   order. A deleted seller marks every neighbour (write.c), so a kept
 *   link or entity never names one.
 * Cost: O(S + N + I + L) array work (copies, no hashing) plus O(|C|)
 * lookups and the changed ids' rows, instead of reading every record.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/sort.h"
#include "store/snapshot.h"
#include "store/store_int.h"

#define ID_MASK ((UINT64_C(1) << 56) - 1)

/* ---- the log: written by the writer ------------------------------------ */

void gd__glog_grow(gd_wtxn *t, uint64_t id) {
  if (t->glog_lost)
    return;
  size_t nc = t->glog_cap ? t->glog_cap * 2 : 1024;
  uint64_t *p = nc <= SIZE_MAX / sizeof *p ? realloc(t->glog_ids, nc * sizeof *p) : NULL;
  if (!p) {
    t->glog_lost = true;
    return;
  }
  t->glog_ids = p;
  t->glog_cap = nc;
  t->glog_ids[t->glog_n++] = id;
}

void gd__glog_free(gd_wtxn *t) {
  free(t->glog_ids);
  t->glog_ids = NULL;
  t->glog_n = t->glog_cap = 0;
}

static size_t sort_unique(uint64_t *v, size_t n) {
  if (n < 2)
    return n;
  uint64_t *tmp = malloc(n * sizeof *tmp);
  if (tmp)
    gd_sort_u64(v, tmp, n);
  else
    qsort(v, n, sizeof *v, gd_cmp_u64);
  free(tmp);
  size_t w = 1;
  for (size_t i = 1; i < n; i++)
    if (v[i] != v[w - 1])
      v[w++] = v[i];
  return w;
}

int gd__glog_commit(gd_wtxn *t) {
  gd_store *s = t->s;
  uint64_t txn = (uint64_t)mdb_txn_id(t->root), held = 0;
  size_t n = sort_unique(t->glog_ids, t->glog_n);
  int rc = gd__meta_u64(t->root, s, "glog.ids", &held);
  if (rc)
    return rc;
  if (t->glog_lost || held + n > GD_GLOG_MAX_IDS) {
    /* Start over from this commit: older images stop being usable. */
    if ((rc = mdb_drop(t->root, s->glog, 0)) ||
        (rc = gd__meta_put_u64(t->root, s, "glog.floor", txn)))
      return rc;
    return gd__meta_put_u64(t->root, s, "glog.ids", 0);
  }
  if (!n)
    return MDB_SUCCESS;
  uint8_t kb[8];
  MDB_val k = {8, kb}, v = {n * 8, NULL};
  gd_be64_put(kb, txn);
  if ((rc = mdb_put(t->root, s->glog, &k, &v, MDB_RESERVE)))
    return rc;
  uint8_t *p = v.mv_data;
  for (size_t i = 0; i < n; i++)
    gd_be64_put(p + 8 * i, t->glog_ids[i]);
  return gd__meta_put_u64(t->root, s, "glog.ids", held + n);
}

int gd_store_glog_trim(gd_wtxn *t, uint64_t txn, gd_err *err) {
  gd_store *s = t->s;
  MDB_cursor *c;
  MDB_val k, v;
  uint64_t held = 0, gone = 0;
  int rc = mdb_cursor_open(t->root, s->glog, &c);
  if (rc)
    return gd__mdb_err(rc, err, "change log");
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8 || gd_be64_get(k.mv_data) > txn)
      break;
    gone += v.mv_size / 8;
    if ((rc = mdb_cursor_del(c, 0)))
      break;
  }
  mdb_cursor_close(c);
  if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND)
    rc = gd__meta_u64(t->root, s, "glog.ids", &held);
  if (!rc)
    rc = gd__meta_put_u64(t->root, s, "glog.ids", held > gone ? held - gone : 0);
  return rc ? gd__mdb_err(rc, err, "change log trim") : GD_OK;
}

/* ---- image files ------------------------------------------------------ */

#define IMG_MAGIC "GDXIMG\0\1"
#define IMG_ORDER UINT64_C(0x0102030405060708)

typedef struct img_hdr {
  char magic[8];
  uint64_t order; /* IMG_ORDER as the writer's byte order has it */
  uint64_t txn;
  uint8_t nonce[16];
  int64_t n_sellers, n_entities, n_incidences, n_links;
  char checksum[64];
} img_hdr;

/* The arrays of an export, in file order: pointer, element count, width.
 * ent_type is padded to a multiple of 8 bytes in the file. */
typedef struct img_part {
  void **p;
  size_t n, width;
} img_part;

static size_t img_parts(gd_graph_export *x, img_part out[8]) {
  size_t ns = (size_t)x->n_sellers, ne = (size_t)x->n_entities;
  size_t ni = (size_t)x->n_incidences, nl = (size_t)x->n_links;
  img_part p[8] = {
      {(void **)&x->seller_ids, ns, 8}, {(void **)&x->ent_ids, ne, 8},
      {(void **)&x->ent_type, ne, 1},   {(void **)&x->ent_off, ne + 1, 8},
      {(void **)&x->ent_sellers, ni, 8}, {(void **)&x->ent_n, ne, 8},
      {(void **)&x->link_a, nl, 8},     {(void **)&x->link_b, nl, 8},
  };
  memcpy(out, p, sizeof p);
  return 8;
}

static size_t part_bytes(const img_part *p) { return (p->n * p->width + 7) & ~(size_t)7; }

bool gd_image_path(const char *data_dir, uint64_t snap, char *out, size_t n) {
  int k = snprintf(out, n, "%s/%s/%llu.img", data_dir, GD_IMAGE_DIR, (unsigned long long)snap);
  return k > 0 && (size_t)k < n;
}

int gd_export_image_save(const gd_graph_export *x, const gd_image_id *id, const char *path,
                         gd_err *err) {
  if (x->since || x->until)
    return gd_err_set(err, GD_EINVALID, "image: only an open-window export is kept");
  if (strlen(x->checksum) != 64)
    return gd_err_set(err, GD_EINVALID, "image: the export has no checksum");
  char tmp[4200];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
    return gd_err_set(err, GD_EINVALID, "image: path too long");
  img_hdr h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, IMG_MAGIC, 8);
  h.order = IMG_ORDER;
  h.txn = id->txn;
  memcpy(h.nonce, id->nonce, 16);
  h.n_sellers = x->n_sellers;
  h.n_entities = x->n_entities;
  h.n_incidences = x->n_incidences;
  h.n_links = x->n_links;
  memcpy(h.checksum, x->checksum, 64);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0)
    return gd_err_set(err, GD_EIO, "image: %s: %s", tmp, strerror(errno));
  static const uint8_t pad[8];
  img_part parts[8];
  size_t np = img_parts((gd_graph_export *)x, parts);
  int bad = gd_fd_write_all(fd, &h, sizeof h);
  for (size_t i = 0; !bad && i < np; i++) {
    size_t b = parts[i].n * parts[i].width;
    bad = gd_fd_write_all(fd, *parts[i].p, b) || gd_fd_write_all(fd, pad, part_bytes(&parts[i]) - b);
  }
  int e = errno;
  if (close(fd) != 0 && !bad) {
    bad = 1;
    e = errno;
  }
  if (!bad && rename(tmp, path) != 0) {
    bad = 1;
    e = errno;
  }
  if (bad) {
    unlink(tmp);
    return gd_err_set(err, GD_EIO, "image: writing %s: %s", path, strerror(e));
  }
  return GD_OK;
}

int gd_export_image_load(const char *path, const gd_image_id *want, gd_graph_export *ret,
                         gd_err *err) {
  gd_graph_export x;
  img_hdr h;
  struct stat sb;
  int rc = GD_OK;
  memset(ret, 0, sizeof *ret);
  memset(&x, 0, sizeof x);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return gd_err_set(err, errno == ENOENT ? GD_ENOTFOUND : GD_EIO, "image: %s: %s", path,
                      strerror(errno));
  if (fstat(fd, &sb) != 0 || gd_fd_read_full(fd, &h, sizeof h) != (ssize_t)sizeof h) {
    rc = gd_err_set(err, GD_EINTERNAL, "image: %s: short header", path);
    goto out;
  }
  if (memcmp(h.magic, IMG_MAGIC, 8) != 0 || h.order != IMG_ORDER) {
    rc = gd_err_set(err, GD_EPRECONDITION, "image: %s: not an image of this format", path);
    goto out;
  }
  if (h.txn != want->txn || memcmp(h.nonce, want->nonce, 16) != 0) {
    rc = gd_err_set(err, GD_EPRECONDITION, "image: %s: another job's image", path);
    goto out;
  }
  if (h.n_sellers < 0 || h.n_entities < 0 || h.n_incidences < 0 || h.n_links < 0 ||
      h.n_sellers > INT32_MAX || h.n_entities > (INT64_C(1) << 40) ||
      h.n_incidences > (INT64_C(1) << 40) || h.n_links > (INT64_C(1) << 40)) {
    rc = gd_err_set(err, GD_EINTERNAL, "image: %s: bad counts", path);
    goto out;
  }
  x.n_sellers = h.n_sellers;
  x.n_entities = h.n_entities;
  x.n_incidences = h.n_incidences;
  x.n_links = h.n_links;
  x.txn = h.txn;
  img_part parts[8];
  size_t np = img_parts(&x, parts), total = sizeof h;
  for (size_t i = 0; i < np; i++)
    total += part_bytes(&parts[i]);
  if ((uint64_t)sb.st_size != total) {
    rc = gd_err_set(err, GD_EINTERNAL, "image: %s: %lld bytes, the header says %zu", path,
                    (long long)sb.st_size, total);
    goto out;
  }
  /* The arrays in place: the file's pages are the page cache's, mapped,
   * not copied into fresh memory (which the kernel would zero first). */
  void *map = mmap(NULL, total, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    rc = gd_err_set(err, errno == ENOMEM ? GD_ENOMEM : GD_EIO, "image: mapping %s: %s", path,
                    strerror(errno));
    goto out;
  }
  (void)madvise(map, total, MADV_WILLNEED); /* read ahead: the checksum reads it all */
  x.map = map;
  x.map_len = total;
  for (size_t i = 0, off = sizeof h; i < np; i++) {
    *parts[i].p = (uint8_t *)map + off;
    off += part_bytes(&parts[i]);
  }
  if (x.ent_off[0] != 0 || x.ent_off[x.n_entities] != x.n_incidences) {
    rc = gd_err_set(err, GD_EINTERNAL, "image: %s: bad offsets", path);
    goto out;
  }
  if (gd__export_checksum(&x, x.checksum) || memcmp(x.checksum, h.checksum, 64) != 0) {
    rc = gd_err_set(err, GD_EINTERNAL, "image: %s: checksum mismatch (damaged)", path);
    goto out;
  }
out:
  close(fd);
  if (rc)
    gd_graph_export_free(&x);
  else
    *ret = x;
  return rc;
}

/* ---- the patch -------------------------------------------------------- */

/* What a changed id is now. */
typedef struct chg {
  uint64_t id;
  uint8_t kind; /* 0 gone or not exported, 1 seller, 2 entity */
  uint8_t type;
  uint64_t seller_count;
  size_t off, n; /* its seller rows' ids in rows[] */
} chg;

struct gd_graph_changes {
  uint64_t since, txn; /* the changes of the transactions in (since, txn] */
  chg *c;              /* by id, ascending */
  size_t nc;
  uint64_t *rows; /* seller neighbours of changed ids, back to back */
  size_t n_rows, cap_rows;
  uint64_t rows_read, log_entries;
};

void gd_graph_changes_free(gd_graph_changes *c) {
  if (!c)
    return;
  free(c->c);
  free(c->rows);
  free(c);
}

static int rows_push(gd_graph_changes *p, uint64_t id) {
  if (p->n_rows == p->cap_rows) {
    size_t nc = p->cap_rows ? p->cap_rows * 2 : 4096;
    uint64_t *n = realloc(p->rows, nc * sizeof *n);
    if (!n)
      return -1;
    p->rows = n;
    p->cap_rows = nc;
  }
  p->rows[p->n_rows++] = id;
  return 0;
}

/* Reads what c->id is now: its record, and its seller rows (for a seller,
 * only those of smaller ids: the links it emits). An MDB code or -1. */
static int read_changed(gd_rtxn *r, gd_graph_changes *p, MDB_cursor *ac, chg *c) {
  uint8_t kb[8];
  MDB_val k = {8, kb}, v;
  gd_entity_view e;
  gd_be64_put(kb, c->id);
  int rc = mdb_get(r->txn, r->s->entity, &k, &v);
  c->kind = 0;
  c->off = p->n_rows;
  c->n = 0;
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc)
    return rc;
  if (gd__rec_decode(v.mv_data, v.mv_size, c->id, &e))
    return MDB_CORRUPTED;
  if (e.type == GD_TYPE_SELLER)
    c->kind = 1;
  else if (GD_TYPE_VALID(e.type))
    c->kind = 2;
  else
    return MDB_SUCCESS;
  c->type = (uint8_t)e.type;
  c->seller_count = e.seller_count;
  MDB_val ak = {8, kb}, av;
  for (rc = mdb_cursor_get(ac, &ak, &av, MDB_SET_KEY); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(ac, &ak, &av, MDB_NEXT_DUP)) {
    if (av.mv_size != GD__ADJ_ROW)
      return MDB_CORRUPTED;
    uint64_t prefix = gd_be64_get(av.mv_data), nbr = prefix & ID_MASK;
    p->rows_read++;
    if ((int)(prefix >> 56) != GD_TYPE_SELLER || (c->kind == 1 && nbr >= c->id))
      break;
    if (rows_push(p, nbr))
      return -1;
    c->n++;
  }
  return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

/* The changed ids after txn, from the log: sorted, distinct. */
static int log_read(gd_rtxn *r, uint64_t txn, uint64_t **ret, size_t *ret_n,
                    uint64_t *ret_entries) {
  MDB_cursor *c;
  uint8_t kb[8];
  MDB_val k = {8, kb}, v;
  uint64_t *ids = NULL;
  size_t n = 0, cap = 0;
  *ret_entries = 0;
  int rc = mdb_cursor_open(r->txn, r->s->glog, &c);
  if (rc)
    return rc;
  gd_be64_put(kb, txn + 1);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8 || v.mv_size % 8) {
      rc = MDB_CORRUPTED;
      break;
    }
    size_t m = v.mv_size / 8;
    if (n + m > cap) {
      size_t nc = cap ? cap : 4096;
      while (nc < n + m)
        nc *= 2;
      uint64_t *np = realloc(ids, nc * sizeof *np);
      if (!np) {
        rc = -1;
        break;
      }
      ids = np;
      cap = nc;
    }
    const uint8_t *p = v.mv_data;
    for (size_t i = 0; i < m; i++)
      ids[n++] = gd_be64_get(p + 8 * i);
    (*ret_entries)++;
  }
  mdb_cursor_close(c);
  if (rc != MDB_NOTFOUND) {
    free(ids);
    return rc;
  }
  *ret = ids;
  *ret_n = sort_unique(ids, n);
  return MDB_SUCCESS;
}

int gd_store_changes_read(gd_rtxn *r, uint64_t since, gd_graph_changes **ret, gd_err *err) {
  uint64_t floor = 0, *ids = NULL;
  size_t n_ids = 0;
  MDB_cursor *ac = NULL;
  int rc;
  *ret = NULL;
  uint64_t now = (uint64_t)mdb_txn_id(r->txn);
  if ((rc = gd__meta_u64(r->txn, r->s, "glog.floor", &floor)))
    return gd__mdb_err(rc, err, "meta glog.floor");
  if (floor > since)
    return gd_err_set(err, GD_EPRECONDITION,
                      "changes: the change log starts after transaction %llu (at %llu)",
                      (unsigned long long)since, (unsigned long long)floor);
  if (since > now)
    return gd_err_set(err, GD_EPRECONDITION,
                      "changes: transaction %llu is newer than the store (%llu)",
                      (unsigned long long)since, (unsigned long long)now);
  gd_graph_changes *p = calloc(1, sizeof *p);
  if (!p)
    return gd_err_set(err, GD_ENOMEM, "changes: out of memory");
  p->since = since;
  p->txn = now;
  if ((rc = log_read(r, since, &ids, &n_ids, &p->log_entries)))
    goto fail;
  if (!(p->c = malloc(n_ids ? n_ids * sizeof *p->c : 8))) {
    rc = -1;
    goto fail;
  }
  if ((rc = mdb_cursor_open(r->txn, r->s->adj, &ac)))
    goto fail;
  for (size_t i = 0; i < n_ids; i++) {
    p->c[i].id = ids[i];
    if ((rc = read_changed(r, p, ac, &p->c[i])))
      goto fail;
  }
  p->nc = n_ids;
  mdb_cursor_close(ac);
  free(ids);
  *ret = p;
  return GD_OK;
fail:
  if (ac)
    mdb_cursor_close(ac);
  free(ids);
  gd_graph_changes_free(p);
  if (rc == -1)
    return gd_err_set(err, GD_ENOMEM, "changes: out of memory");
  return gd__mdb_err(rc, err, rc == MDB_CORRUPTED ? "changes: corrupt record" : "changes");
}

void gd_graph_changes_stats(const gd_graph_changes *c, gd_patch_stats *ret) {
  ret->log_entries = c->log_entries;
  ret->changed = c->nc;
  ret->rows_read = c->rows_read;
}

/* Whether id is in the sorted changed list (a cursor that only moves
 * forward, for ids asked in ascending order). */
static bool in_changed(const chg *c, size_t nc, size_t *pos, uint64_t id) {
  while (*pos < nc && c[*pos].id < id)
    (*pos)++;
  return *pos < nc && c[*pos].id == id;
}

static void *xmalloc(size_t n, size_t w) { return malloc(n ? n * w : 8); }

int gd_graph_export_apply(gd_graph_export *x, const gd_graph_changes *p, gd_err *err) {
  gd_graph_export y;
  int64_t *remap = NULL;
  const size_t n_ids = p->nc;

  memset(&y, 0, sizeof y);
  if (x->since || x->until)
    return gd_err_set(err, GD_EINVALID, "patch: only an open-window export can be patched");
  if (x->txn != p->since)
    return gd_err_set(err, GD_EINVALID,
                      "patch: the export is of transaction %llu, the changes start at %llu",
                      (unsigned long long)x->txn, (unsigned long long)p->since);

  /* Sellers: a merge of the image's and the changed ids. */
  size_t ns_max = (size_t)x->n_sellers + n_ids;
  if (!(y.seller_ids = xmalloc(ns_max, 8)) || !(remap = xmalloc((size_t)x->n_sellers, 8)))
    goto nomem;
  {
    size_t a = 0, b = 0, w = 0;
    while (a < (size_t)x->n_sellers || b < n_ids) {
      uint64_t ia = a < (size_t)x->n_sellers ? x->seller_ids[a] : UINT64_MAX;
      uint64_t ib = b < n_ids ? p->c[b].id : UINT64_MAX;
      if (ia < ib) {
        remap[a++] = (int64_t)w;
        y.seller_ids[w++] = ia;
      } else {
        bool seller = p->c[b].kind == 1;
        if (ia == ib)
          remap[a++] = seller ? (int64_t)w : -1;
        if (seller)
          y.seller_ids[w++] = ib;
        b++;
      }
    }
    if (w > INT32_MAX) {
      gd_graph_export_free(&y);
      free(remap);
      return gd_err_set(err, GD_ERESOURCE, "patch: more than %d sellers", INT32_MAX);
    }
    y.n_sellers = (int64_t)w;
  }

  /* Entities: the image's not changed (remapped) and the changed ones
   * re-read, by id. Upper bounds: every old one and every changed one. */
  {
    size_t ne_max = (size_t)x->n_entities + n_ids, ni_max = (size_t)x->n_incidences;
    for (size_t i = 0; i < n_ids; i++)
      if (p->c[i].kind == 2)
        ni_max += p->c[i].n;
    if (!(y.ent_ids = xmalloc(ne_max, 8)) || !(y.ent_type = xmalloc(ne_max, 1)) ||
        !(y.ent_n = xmalloc(ne_max, 8)) || !(y.ent_off = xmalloc(ne_max + 1, 8)) ||
        !(y.ent_sellers = xmalloc(ni_max, 8)))
      goto nomem;
    size_t a = 0, b = 0, ne = 0, w = 0;
    y.ent_off[0] = 0;
    while (a < (size_t)x->n_entities || b < n_ids) {
      uint64_t ia = a < (size_t)x->n_entities ? x->ent_ids[a] : UINT64_MAX;
      uint64_t ib = b < n_ids ? p->c[b].id : UINT64_MAX;
      if (ia < ib) {
        for (int64_t i = x->ent_off[a]; i < x->ent_off[a + 1]; i++) {
          int64_t k = remap[x->ent_sellers[i]];
          if (k >= 0)
            y.ent_sellers[w++] = k;
        }
        if (w > (size_t)y.ent_off[ne]) {
          y.ent_ids[ne] = ia;
          y.ent_type[ne] = x->ent_type[a];
          y.ent_n[ne] = x->ent_n[a];
          y.ent_off[++ne] = (int64_t)w;
        }
        a++;
      } else {
        const chg *c = &p->c[b];
        if (ia == ib)
          a++;
        if (c->kind == 2) {
          for (size_t i = 0; i < c->n; i++) {
            int64_t k = gd_u64_index(y.seller_ids, y.n_sellers, p->rows[c->off + i]);
            if (k >= 0)
              y.ent_sellers[w++] = k;
          }
          if (w > (size_t)y.ent_off[ne]) {
            y.ent_ids[ne] = ib;
            y.ent_type[ne] = c->type;
            y.ent_n[ne] = c->seller_count;
            y.ent_off[++ne] = (int64_t)w;
          }
        }
        b++;
      }
    }
    y.n_entities = (int64_t)ne;
    y.n_incidences = (int64_t)w;
  }

  /* Direct links: kept ones (larger endpoint unchanged) merged with the
   * changed sellers' rows, by (larger, smaller) index. */
  {
    size_t nl_max = (size_t)x->n_links;
    for (size_t i = 0; i < n_ids; i++)
      if (p->c[i].kind == 1)
        nl_max += p->c[i].n;
    if (!(y.link_a = xmalloc(nl_max, 8)) || !(y.link_b = xmalloc(nl_max, 8)))
      goto nomem;
    size_t a = 0, b = 0, w = 0, pos = 0;
    while (b < n_ids && p->c[b].kind != 1)
      b++;
    for (;;) {
      /* The next kept link, skipping those whose larger endpoint changed. */
      int64_t ka = -1, kb = -1;
      while (a < (size_t)x->n_links) {
        uint64_t bid = x->seller_ids[x->link_b[a]];
        if (!in_changed(p->c, n_ids, &pos, bid) && remap[x->link_a[a]] >= 0 &&
            remap[x->link_b[a]] >= 0) {
          ka = remap[x->link_a[a]];
          kb = remap[x->link_b[a]];
          break;
        }
        a++;
      }
      int64_t cb = b < n_ids ? gd_u64_index(y.seller_ids, y.n_sellers, p->c[b].id) : -1;
      if (ka < 0 && cb < 0)
        break;
      if (ka >= 0 && (cb < 0 || kb < cb)) {
        y.link_a[w] = ka;
        y.link_b[w++] = kb;
        a++;
        continue;
      }
      const chg *c = &p->c[b];
      for (size_t i = 0; i < c->n; i++) {
        int64_t k = gd_u64_index(y.seller_ids, y.n_sellers, p->rows[c->off + i]);
        if (k >= 0) {
          y.link_a[w] = k;
          y.link_b[w++] = cb;
        }
      }
      do
        b++;
      while (b < n_ids && p->c[b].kind != 1);
    }
    y.n_links = (int64_t)w;
  }

  y.txn = p->txn;
  y.records_read = n_ids;
  y.rows_read = p->rows_read;
  gd_graph_export_free(x);
  *x = y;
  free(remap);
  return GD_OK;

nomem:
  gd_graph_export_free(&y);
  free(remap);
  return gd_err_set(err, GD_ENOMEM, "patch: out of memory");
}

int gd_graph_export_checksum(gd_graph_export *x, gd_err *err) {
  return gd__export_checksum(x, x->checksum)
             ? gd_err_set(err, GD_EINTERNAL, "export: SHA-256 failed")
             : GD_OK;
}

int gd_store_export_patch(gd_rtxn *r, gd_graph_export *x, gd_patch_stats *ret, gd_err *err) {
  gd_graph_changes *c;
  if (ret)
    memset(ret, 0, sizeof *ret);
  if (x->since || x->until)
    return gd_err_set(err, GD_EINVALID, "patch: only an open-window export can be patched");
  int rc = gd_store_changes_read(r, x->txn, &c, err);
  if (rc)
    return rc;
  if (!(rc = gd_graph_export_apply(x, c, err)) && ret)
    gd_graph_changes_stats(c, ret);
  gd_graph_changes_free(c);
  return rc ? rc : gd_graph_export_checksum(x, err);
}
