/*
 * Writes: upsert, labels, delete. Runs on the writer thread inside one
 * nested transaction per request (store.c), so a failed request leaves no
 * trace and the caller only has to abort.
 *
 * An upsert touches the same entities many times (a seller appears in
 * every link it has), so entity records are read once into a per-request
 * cache, patched in memory and written back once, in id order. Links are
 * expanded into half-edges (each undirected link is a row in both
 * adjacency lists), sorted, merged and applied in key order so that LMDB
 * walks its pages sequentially.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/sort.h"
#include "core/u64map.h"
#include "store/store_int.h"

/* ---- per-request entity cache ------------------------------------------ */

typedef struct ent {
  uint64_t id;
  uint8_t *rec; /* encoded record, in the cache's arena */
  size_t len;
  gd_entity_view v; /* decoded from rec; header fields below win */
  int64_t first, last;
  uint64_t degree, seller_count;
  uint32_t at; /* index in the cache's list when added */
  bool dirty;
  bool created; /* by this request */
} ent;

typedef struct ecache {
  gd_u64map by_id; /* id -> the ent, as uintptr_t: built on the first
                      lookup by id (ecache_find), kept from then on */
  bool by_id_built;
  ent **list;      /* insertion order, for flushing */
  size_t n, list_cap;
  /* Cursors of the request's transaction, opened on first use: the key
   * index's puts (resolve) and the entity records' (ecache_flush) come in
   * key order, and a cursor looks in the page it is on before it searches
   * from the root. */
  MDB_cursor *kcur, *ecur;
  gd_arena *arena; /* the ents and their records */
  gd_arena **home; /* where arena goes when freed (arena_put); NULL: freed */
} ecache;

/* The cache's memory comes from *home and goes back there reset (one
 * block kept), so that upserts stop calling malloc once warm. */
static gd_arena *arena_take(gd_arena **home) {
  gd_arena *a = *home;
  *home = NULL;
  return a;
}

static void arena_put(gd_arena **home, gd_arena *a) {
  if (!home || *home) {
    gd_arena_free(a);
    return;
  }
  gd_arena_reset(&a);
  *home = a;
}

static void ecache_free(ecache *c) {
  if (c->kcur)
    mdb_cursor_close(c->kcur);
  if (c->ecur)
    mdb_cursor_close(c->ecur);
  arena_put(c->home, c->arena);
  gd_u64map_free(&c->by_id);
  free(c->list);
  memset(c, 0, sizeof *c);
}

/* Sets *ret to the cached entity id, or NULL. GD_ENOMEM building the map. */
static int ecache_find(ecache *c, uint64_t id, ent **ret) {
  if (!c->by_id_built) {
    for (size_t i = 0; i < c->n; i++) {
      uint64_t *v = gd_u64map_put(&c->by_id, c->list[i]->id, NULL);
      if (!v)
        return GD_ENOMEM; /* built again from the start next time */
      *v = (uintptr_t)c->list[i];
    }
    c->by_id_built = true;
  }
  uint64_t *v = gd_u64map_get(&c->by_id, id);
  *ret = v ? (ent *)(uintptr_t)*v : NULL;
  return GD_OK;
}

static int ecache_add(ecache *c, ent *e) {
  if (c->n == c->list_cap) {
    size_t ncap = c->list_cap ? c->list_cap * 2 : 64;
    ent **nl = realloc(c->list, ncap * sizeof *nl);
    if (!nl)
      return GD_ENOMEM;
    c->list = nl;
    c->list_cap = ncap;
  }
  if (c->by_id_built) {
    uint64_t *v = gd_u64map_put(&c->by_id, e->id, NULL);
    if (!v)
      return GD_ENOMEM;
    *v = (uintptr_t)e;
  }
  e->at = (uint32_t)c->n;
  c->list[c->n++] = e;
  return GD_OK;
}

/* rec is in c's arena. */
static int ent_adopt(ecache *c, uint64_t id, uint8_t *rec, size_t len, ent **ret,
                     gd_err *err) {
  ent *e = gd_arena_alloc(&c->arena, sizeof *e);
  if (!e)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memset(e, 0, sizeof *e);
  e->id = id;
  e->rec = rec;
  e->len = len;
  if (gd__rec_decode(rec, len, id, &e->v)) {
    return gd_err_set(err, GD_EINTERNAL, "entity %llu: corrupt record",
                      (unsigned long long)id);
  }
  e->first = e->v.first_seen;
  e->last = e->v.last_seen;
  e->degree = e->v.degree;
  e->seller_count = e->v.seller_count;
  if (ecache_add(c, e))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  *ret = e;
  return GD_OK;
}

/* fresh: id cannot be in c yet (found through a key: a request resolves
 * each key once). */
static int ent_load(gd_wtxn *t, ecache *c, uint64_t id, bool fresh, ent **ret, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  ent *e = NULL;
  if (!fresh && ecache_find(c, id, &e))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if (e) {
    *ret = e;
    return GD_OK;
  }
  gd__id_key(id, kb, &k);
  int rc = mdb_get(t->txn, t->s->entity, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "no entity with id %llu", (unsigned long long)id);
  if (rc)
    return gd__mdb_err(rc, err, "entity");
  uint8_t *rec = gd_arena_alloc(&c->arena, v.mv_size);
  if (!rec)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memcpy(rec, v.mv_data, v.mv_size);
  return ent_adopt(c, id, rec, v.mv_size, ret, err);
}

static void ent_seen(ent *e, int64_t seen) {
  if (e->first == 0 || seen < e->first)
    e->first = seen;
  if (seen > e->last)
    e->last = seen;
  e->dirty = true;
}

/* Replaces e's record with one holding the given attributes and labels. */
static int ent_rewrite(ecache *c, ent *e, const gd_str *names, const gd_str *values, size_t nattrs,
                       const gd_str *labels, size_t nlabels, gd_err *err) {
  gd_entity_view nv = e->v;
  size_t len;
  nv.nattrs = nattrs;
  nv.nlabels = nlabels;
  nv.first_seen = e->first;
  nv.last_seen = e->last;
  nv.degree = e->degree;
  nv.seller_count = e->seller_count;
  uint8_t *rec = gd__rec_encode(&nv, names, values, labels, &c->arena, &len);
  if (!rec)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  e->rec = rec; /* the old one goes with the arena */
  e->len = len;
  gd__rec_decode(rec, len, e->id, &e->v);
  e->dirty = true;
  return GD_OK;
}

static int cmp_ent_id(const void *a, const void *b) {
  uint64_t x = (*(ent *const *)a)->id, y = (*(ent *const *)b)->id;
  return x < y ? -1 : x > y;
}

/* Puts c->list in id order. The entities this request created were added
 * in the order they were created, so with ascending ids, all above every
 * id it loaded (resolve takes them from next_id): they go last, as they
 * came, and only the loaded ones are sorted. At a million sellers most of
 * a message's entities are new. */
static void ecache_sort(ecache *c) {
  size_t w = c->n; /* [w, n): the created ones, in their order */
  for (size_t i = c->n; i-- > 0;) {
    if (c->list[i]->created) {
      ent *e = c->list[i];
      c->list[i] = c->list[--w]; /* a loaded one, or e itself */
      c->list[w] = e;
    }
  }
  if (w > 1)
    qsort(c->list, w, sizeof *c->list, cmp_ent_id);
}

static int ecache_flush(gd_wtxn *t, ecache *c, gd_err *err) {
  int rc;
  ecache_sort(c);
  if (!c->ecur && (rc = mdb_cursor_open(t->txn, t->s->entity, &c->ecur)))
    return gd__mdb_err(rc, err, "entity cursor");
  for (size_t i = 0; i < c->n; i++) {
    ent *e = c->list[i];
    uint8_t kb[8];
    MDB_val k, v;
    if (!e->dirty)
      continue;
    gd__rec_patch(e->rec, e->first, e->last, e->degree, e->seller_count);
    gd__id_key(e->id, kb, &k);
    v.mv_size = e->len;
    v.mv_data = e->rec;
    gd__ver_mark(t, e->id);
    /* Ids ascend, and one this request created is above every id in the
     * table: its record goes at the end, with no search. */
    rc = MDB_KEYEXIST;
    if (e->created)
      rc = mdb_cursor_put(c->ecur, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
      rc = mdb_cursor_put(c->ecur, &k, &v, 0);
    if (rc)
      return gd__mdb_err(rc, err, "entity");
    e->dirty = false;
  }
  return GD_OK;
}

/* ---- entity resolution --------------------------------------------------- */

/*
 * Finds the entity named by ref, creating it (with `seen`) when it is named
 * by (type, key) and missing and `create` is set. *ret_created tells which.
 * A request resolves each (type, key) once (gd_upsert_index): the cache is
 * not searched by key.
 */
static int resolve(gd_wtxn *t, ecache *c, const gd_ref *ref, bool create, int64_t seen,
                   ent **ret, bool *ret_created, gd_err *err) {
  uint8_t kb[GD__EKEY_MAX], ib[8];
  MDB_val k, v;
  uint64_t id;
  int rc;

  *ret_created = false;
  if (ref->id)
    return ent_load(t, c, ref->id, false, ret, err);

  if (create && ref->key.n > UINT16_MAX)
    return gd_err_set(err, GD_EINVALID, "key too long");
  k.mv_size = gd__ekey_encode(ref->type, ref->key, kb);
  k.mv_data = kb;
  if (!create) {
    rc = mdb_get(t->txn, t->s->ekey, &k, &v);
    if (rc == MDB_NOTFOUND)
      return gd_err_set(err, GD_ENOTFOUND, "no %s with key '%.*s'", gd_type_name(ref->type),
                        (int)(ref->key.n > 64 ? 64 : ref->key.n), ref->key.p);
  } else {
    /* One search either way: the put finds the key already there (and
     * hands back its id) or inserts it with the next id. */
    if (!c->kcur && (rc = mdb_cursor_open(t->txn, t->s->ekey, &c->kcur)))
      return gd__mdb_err(rc, err, "key index cursor");
    gd_be64_put(ib, t->c.next_id);
    v.mv_size = 8;
    v.mv_data = ib;
    rc = mdb_cursor_put(c->kcur, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
      rc = MDB_SUCCESS;
    else if (rc == MDB_SUCCESS)
      goto created;
  }
  if (rc)
    return gd__mdb_err(rc, err, "key index");
  if (v.mv_size != 8)
    return gd_err_set(err, GD_EINTERNAL, "corrupt key index entry");
  id = gd_be64_get(v.mv_data);
  rc = ent_load(t, c, id, true, ret, err);
  if (rc == GD_ENOTFOUND) /* an id created by this request under another key */
    return gd_err_set(err, GD_EINTERNAL, "key hash collision on a %s key",
                      gd_type_name(ref->type));
  if (rc == GD_OK && !gd_str_eq((*ret)->v.key, ref->key))
    return gd_err_set(err, GD_EINTERNAL, "key hash collision on a %s key",
                      gd_type_name(ref->type));
  return rc;

created: /* New entity: its key is in the index. */
  id = t->c.next_id++;
  gd_entity_view nv = {.id = id, .type = ref->type, .key = ref->key,
                       .first_seen = seen, .last_seen = seen};
  size_t len;
  uint8_t *rec = gd__rec_encode(&nv, NULL, NULL, NULL, &c->arena, &len);
  if (!rec)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if ((rc = ent_adopt(c, id, rec, len, ret, err)))
    return rc;
  (*ret)->dirty = true;
  (*ret)->created = true;
  t->c.entities[ref->type]++;
  *ret_created = true;
  return GD_OK;
}

/* ---- labels ---------------------------------------------------------------- */

static int label_index(gd_wtxn *t, gd_str label, uint64_t id, bool add, gd_err *err) {
  uint8_t ib[8];
  MDB_val k = {label.n, (void *)label.p}, v;
  gd__id_key(id, ib, &v);
  int rc = add ? mdb_put(t->txn, t->s->label, &k, &v, MDB_NODUPDATA)
               : mdb_del(t->txn, t->s->label, &k, &v);
  if (rc == MDB_KEYEXIST || (!add && rc == MDB_NOTFOUND))
    rc = MDB_SUCCESS;
  return rc ? gd__mdb_err(rc, err, "label index") : GD_OK;
}

static int cmp_str(const void *a, const void *b) {
  const gd_str *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int r = memcmp(x->p, y->p, n);
  return r ? r : (x->n > y->n) - (x->n < y->n);
}

/*
 * Applies attribute and label changes to e. Attributes are replaced by
 * name; labels in `add` are added and those in `remove` removed. Keeps the
 * label index and counter in step.
 */
static int ent_modify(gd_wtxn *t, ecache *c, ent *e, const gd_attr_in *attrs, size_t nattrs,
                      const gd_str *add, size_t nadd, const gd_str *remove, size_t nremove,
                      gd_err *err) {
  size_t na = e->v.nattrs, nl = e->v.nlabels;
  gd_str *names = NULL, *values = NULL, *labels = NULL;
  int rc = GD_OK;

  if (nattrs == 0 && nadd == 0 && nremove == 0)
    return GD_OK;
  names = malloc((na + nattrs + 1) * sizeof *names);
  values = malloc((na + nattrs + 1) * sizeof *values);
  labels = malloc((nl + nadd + 1) * sizeof *labels);
  if (!names || !values || !labels) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < na; i++)
    gd_entity_attr(&e->v, i, &names[i], &values[i]);
  for (size_t i = 0; i < nattrs; i++) {
    size_t j;
    for (j = 0; j < na && !gd_str_eq(names[j], attrs[i].name); j++)
      ;
    names[j] = attrs[i].name;
    values[j] = attrs[i].value;
    if (j == na)
      na++;
  }
  if (na > GD_ATTRS_MAX) {
    rc = gd_err_set(err, GD_EINVALID, "entity would have %zu attributes, over the limit of %d",
                    na, GD_ATTRS_MAX);
    goto out;
  }
  /* Sort attributes by name: a stable order for readers. */
  for (size_t i = 1; i < na; i++)
    for (size_t j = i; j > 0 && cmp_str(&names[j - 1], &names[j]) > 0; j--) {
      gd_str tn = names[j], tv = values[j];
      names[j] = names[j - 1];
      values[j] = values[j - 1];
      names[j - 1] = tn;
      values[j - 1] = tv;
    }

  for (size_t i = 0; i < nl; i++)
    labels[i] = gd_entity_label(&e->v, i);
  for (size_t i = 0; i < nadd; i++) {
    size_t j;
    for (j = 0; j < nl && !gd_str_eq(labels[j], add[i]); j++)
      ;
    if (j < nl)
      continue;
    labels[nl++] = add[i];
    if ((rc = label_index(t, add[i], e->id, true, err)))
      goto out;
    t->c.labels++;
  }
  for (size_t i = 0; i < nremove; i++) {
    for (size_t j = 0; j < nl; j++) {
      if (!gd_str_eq(labels[j], remove[i]))
        continue;
      if ((rc = label_index(t, remove[i], e->id, false, err)))
        goto out;
      labels[j] = labels[--nl];
      t->c.labels--;
      break;
    }
  }
  if (nl > GD_LABELS_MAX) {
    rc = gd_err_set(err, GD_EINVALID, "entity would have %zu labels, over the limit of %d", nl,
                    GD_LABELS_MAX);
    goto out;
  }
  if (nl > 1)
    qsort(labels, nl, sizeof *labels, cmp_str);
  rc = ent_rewrite(c, e, names, values, na, labels, nl, err);
out:
  free(names);
  free(values);
  free(labels);
  return rc;
}

/* ---- adjacency ------------------------------------------------------------- */

typedef struct half {
  uint64_t src;
  uint64_t prefix; /* (dst type << 56) | dst id */
  int64_t first, last;
  uint32_t count;
  uint32_t ei; /* the src entity's index in the cache's list */
} half;

/*
 * Sorts hs by src, then prefix, through tmp (n halves): an LSD
 * radix sort, a byte per pass, skipping bytes that are the same in every
 * half (ids are far below 2^56). Stable.
 */
static void sort_halves(half *hs, half *tmp, size_t n) {
  half *a = hs, *b = tmp;
  for (int pass = 0; pass < 16; pass++) {
    int shift = (pass & 7) * 8;
    bool src = pass >= 8; /* prefix first: the less significant key */
    size_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++)
      cnt[((src ? a[i].src : a[i].prefix) >> shift) & 0xff]++;
    if (!gd_radix_offsets(cnt, n))
      continue;
    for (size_t i = 0; i < n; i++)
      b[cnt[((src ? a[i].src : a[i].prefix) >> shift) & 0xff]++] = a[i];
    half *x = a;
    a = b;
    b = x;
  }
  if (a != hs)
    memcpy(hs, a, n * sizeof *hs);
}

/* The adjacency row of a half-edge not stored yet. */
static void half_row(const half *h, gd__adj_row *row) {
  memset(row, 0, sizeof *row);
  gd_be64_put(row->prefix, h->prefix);
  row->count = h->count;
  row->first_seen = h->first;
  row->last_seen = h->last;
}

/* Writes or updates one adjacency row; sets *ret_created when it is new. */
static int adj_apply(gd_wtxn *t, MDB_cursor *cur, const half *h, bool *ret_created,
                     gd_err *err) {
  uint8_t kb[8];
  gd__adj_row row;
  MDB_val k, v;
  int rc;

  gd__ver_mark(t, h->src);
  gd__id_key(h->src, kb, &k);
  gd_be64_put(row.prefix, h->prefix);
  v.mv_size = sizeof row;
  v.mv_data = &row;
  rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
  if (rc == MDB_SUCCESS) {
    gd__adj_row old;
    memcpy(&old, v.mv_data, sizeof old);
    old.count += h->count;
    if (h->first < old.first_seen)
      old.first_seen = h->first;
    if (h->last > old.last_seen)
      old.last_seen = h->last;
    v.mv_size = sizeof old;
    v.mv_data = &old;
    rc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT);
    *ret_created = false;
  } else if (rc == MDB_NOTFOUND) {
    half_row(h, &row);
    v.mv_size = sizeof row;
    v.mv_data = &row;
    rc = mdb_cursor_put(cur, &k, &v, MDB_NODUPDATA);
    *ret_created = true;
  }
  return rc ? gd__mdb_err(rc, err, "adjacency") : GD_OK;
}

/* Counts a new adjacency row of e (src) toward dst h->prefix. */
static int half_created(gd_wtxn *t, ent *e, const half *h, gd_totals *tot, gd_err *err) {
  uint64_t dst = h->prefix & ((UINT64_C(1) << 56) - 1);
  e->degree++;
  if ((int)(h->prefix >> 56) == GD_TYPE_SELLER)
    e->seller_count++;
  e->dirty = true;
  /* Totals count observations, so they do not depend on how a load is
   * cut into requests: the first observation of a new link creates it,
   * every other one updates it. Each undirected link is counted once. */
  if (h->src < dst) {
    tot->links_created++;
    tot->links_updated += h->count - 1;
    t->c.links++;
  }
  /* A new link gives a seller new ties: place it again (place.h). */
  return e->v.type == GD_TYPE_SELLER ? gd__place_mark(t, h->src, err) : GD_OK;
}

/*
 * Writes the rows of an entity this request created: none of them can be
 * there yet, and its id is above every id in the table, so they go in as
 * one append at the end (MDB_APPEND | MDB_MULTIPLE), with no search.
 * *ret_appended false: the table's end was not where it had to be, and
 * nothing was written (the caller writes the rows one by one).
 */
static int adj_append(gd_wtxn *t, MDB_cursor *cur, const half *hs, size_t n, bool *ret_appended,
                      gd__adj_row *rows, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v[2];
  *ret_appended = false;
  for (size_t i = 0; i < n; i++)
    half_row(&hs[i], &rows[i]);
  gd__ver_mark(t, hs[0].src);
  gd__id_key(hs[0].src, kb, &k);
  v[0] = (MDB_val){sizeof *rows, rows};
  v[1] = (MDB_val){n, NULL};
  int rc = mdb_cursor_put(cur, &k, v, MDB_APPEND | MDB_MULTIPLE);
  if (rc == MDB_KEYEXIST && v[1].mv_size == 0)
    return GD_OK;
  if (rc)
    return gd__mdb_err(rc, err, "adjacency");
  if (v[1].mv_size != n)
    return gd_err_set(err, GD_EINTERNAL, "adjacency: %zu of %zu rows appended",
                      (size_t)v[1].mv_size, n);
  *ret_appended = true;
  return GD_OK;
}

/* hs holds n half-edges and room for n more (the sort's, then the rows'
 * of an append: a row is smaller than a half-edge). */
static int apply_halves(gd_wtxn *t, ecache *c, half *hs, size_t n, gd_totals *tot,
                        gd_err *err) {
  MDB_cursor *cur;
  gd__adj_row *rows = (gd__adj_row *)(hs + n);
  _Static_assert(sizeof(gd__adj_row) <= sizeof(half), "rows fit where the halves' copy was");
  int rc = mdb_cursor_open(t->txn, t->s->adj, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "adjacency cursor");
  if (n > 1)
    sort_halves(hs, hs + n, n);
  /* Merge repeated observations of the same pair, in place. */
  size_t m = 0;
  for (size_t i = 0; i < n;) {
    half h = hs[i++];
    while (i < n && hs[i].src == h.src && hs[i].prefix == h.prefix) {
      h.count += hs[i].count;
      if (hs[i].first < h.first)
        h.first = hs[i].first;
      if (hs[i].last > h.last)
        h.last = hs[i].last;
      i++;
    }
    hs[m++] = h;
  }
  for (size_t i = 0; i < m && rc == GD_OK;) {
    size_t j = i + 1;
    while (j < m && hs[j].src == hs[i].src)
      j++;
    if (j < m)
      gd__ver_prefetch(t, hs[j].src);
    ent *e = c->list[hs[i].ei];
    bool appended = false;
    if (e->created && (rc = adj_append(t, cur, &hs[i], j - i, &appended, rows, err)))
      break;
    for (; i < j && rc == GD_OK; i++) {
      bool created = appended;
      if (!appended && (rc = adj_apply(t, cur, &hs[i], &created, err)))
        break;
      uint64_t dst = hs[i].prefix & ((UINT64_C(1) << 56) - 1);
      if (created)
        rc = half_created(t, e, &hs[i], tot, err);
      else if (hs[i].src < dst)
        tot->links_updated += hs[i].count;
    }
  }
  mdb_cursor_close(cur);
  return rc;
}

/* ---- upsert ---------------------------------------------------------------- */


static int ref_cmp(const gd_ref *x, const gd_ref *y) {
  if (x->type != y->type)
    return x->type - y->type;
  size_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
  int r = n ? memcmp(x->key.p, y->key.p, n) : 0;
  return r ? r : (x->key.n > y->key.n) - (x->key.n < y->key.n);
}

typedef struct ref_at {
  const gd_ref *ref;
  uint32_t at; /* index in key_of */
} ref_at;

static int cmp_ref_at(const void *a, const void *b) {
  const ref_at *x = a, *y = b;
  int r = ref_cmp(x->ref, y->ref);
  return r ? r : (x->at > y->at) - (x->at < y->at);
}

size_t gd_upsert_index_size(const gd_upsert *u) {
  size_t n = u->nentities + 2 * u->nlinks;
  return u->nentities * sizeof(gd_ref) + n * (sizeof(ref_at) + sizeof(gd_ref *) + sizeof(uint32_t)) +
         1;
}

void gd_upsert_index(gd_upsert *u, void *buf) {
  size_t ne = u->nentities, n = ne + 2 * u->nlinks, nr = 0, m = 0;
  gd_ref *erefs = buf;
  ref_at *tmp = (ref_at *)(erefs + ne);
  const gd_ref **keys = (const gd_ref **)(tmp + n);
  uint32_t *key_of = (uint32_t *)(keys + n);
  for (size_t i = 0; i < ne; i++) {
    erefs[i] = (gd_ref){0, u->entities[i].type, u->entities[i].key};
    tmp[nr++] = (ref_at){&erefs[i], (uint32_t)i};
  }
  for (size_t i = 0; i < u->nlinks; i++) {
    const gd_link_in *l = &u->links[i];
    uint32_t at = (uint32_t)(ne + 2 * i);
    key_of[at] = key_of[at + 1] = UINT32_MAX;
    if (!l->a.id)
      tmp[nr++] = (ref_at){&l->a, at};
    if (!l->b.id)
      tmp[nr++] = (ref_at){&l->b, at + 1};
  }
  /* The position breaks ties: the same input gives the same order. */
  if (nr > 1)
    qsort(tmp, nr, sizeof *tmp, cmp_ref_at);
  for (size_t i = 0; i < nr; i++) {
    if (m == 0 || ref_cmp(keys[m - 1], tmp[i].ref) != 0)
      keys[m++] = tmp[i].ref;
    key_of[tmp[i].at] = (uint32_t)(m - 1);
  }
  u->keys = keys;
  u->nkeys = m;
  u->key_of = key_of;
}

/*
 * Resolves every (type, key) of the request once, in key order, creating
 * what is missing: the ekey lookups and inserts then walk the B-tree
 * sequentially instead of jumping across it once per link endpoint. The
 * order also fixes the ids of the entities the request creates. ents[i]
 * gets the entity of u->keys[i].
 */
static int preresolve(gd_wtxn *t, ecache *c, const gd_upsert *u, ent **ents,
                      uint64_t *ret_created, gd_err *err) {
  for (size_t i = 0; i < u->nkeys; i++) {
    bool created;
    /* The keys are sorted, so their refs and bytes are scattered over the
     * decoded message: load the next ones while this one is resolved. */
    if (i + 2 < u->nkeys)
      __builtin_prefetch(u->keys[i + 2]);
    if (i + 1 < u->nkeys)
      __builtin_prefetch(u->keys[i + 1]->key.p);
    int rc = resolve(t, c, u->keys[i], true, 0, &ents[i], &created, err);
    if (rc)
      return rc;
    *ret_created += created;
  }
  return GD_OK;
}

int gd_store_upsert(gd_wtxn *t, const gd_upsert *u, gd_upsert_result *ret, gd_err *err) {
  /* The memory (taken below, past the returns that skip `out`) is the
   * last upsert's. */
  ecache c = {.home = &t->s->wcache_spare};
  half *hs = NULL;
  ent **ents = NULL;
  void *ibuf = NULL;
  gd_upsert ix;
  int rc = GD_OK;
  MDB_val rk = {u->request_id.n, (void *)u->request_id.p}, rv;

  memset(ret, 0, sizeof *ret);
  if (u->request_id.n) {
    rc = mdb_get(t->txn, t->s->request, &rk, &rv);
    if (rc == MDB_SUCCESS && rv.mv_size == sizeof(gd__req_rec)) {
      gd__req_rec r;
      memcpy(&r, rv.mv_data, sizeof r);
      ret->duplicate = true;
      ret->committed_at = r.committed_at;
      return GD_OK;
    }
    if (rc != MDB_NOTFOUND)
      return gd__mdb_err(rc, err, "request index");
  }

  if (!u->key_of) {
    if (u->nentities + 2 * u->nlinks >= UINT32_MAX)
      return gd_err_set(err, GD_EINVALID, "%zu entities and %zu links: too many for one upsert",
                        u->nentities, u->nlinks);
    if (!(ibuf = malloc(gd_upsert_index_size(u))))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    ix = *u;
    gd_upsert_index(&ix, ibuf);
    u = &ix;
  }
  c.arena = arena_take(c.home);
  if (!(ents = malloc((u->nkeys + 1) * sizeof *ents))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = preresolve(t, &c, u, ents, &ret->totals.entities_created, err)))
    goto out;

  for (size_t i = 0; i < u->nentities; i++) {
    const gd_entity_in *in = &u->entities[i];
    int64_t seen = in->seen ? in->seen : t->now;
    ent *e = ents[u->key_of[i]];
    if ((rc = ent_modify(t, &c, e, in->attrs, in->nattrs, in->labels, in->nlabels, NULL, 0, err))) {
      gd_err_prefix(err, "entities[%zu]", i);
      goto out;
    }
    /* Only a given time is an observation: labels and attributes alone
     * leave first/last seen as they were (0 for an entity not observed
     * yet: its first observation sets both). */
    if (in->seen)
      ent_seen(e, seen);
    if (!e->created)
      ret->totals.entities_updated++;
  }

  if (u->nlinks) {
    hs = malloc(4 * u->nlinks * sizeof *hs); /* and as much to sort them */
    if (!hs) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory for %zu links", u->nlinks);
      goto out;
    }
  }
  for (size_t i = 0; i < u->nlinks; i++) {
    const gd_link_in *l = &u->links[i];
    int64_t seen = l->seen ? l->seen : t->now;
    uint32_t ka = u->key_of[u->nentities + 2 * i], kb = u->key_of[u->nentities + 2 * i + 1];
    ent *a = ka != UINT32_MAX ? ents[ka] : NULL, *b = kb != UINT32_MAX ? ents[kb] : NULL;
    bool ca, cb;
    if (!a && (rc = resolve(t, &c, &l->a, true, seen, &a, &ca, err))) {
      gd_err_prefix(err, "links[%zu].a", i);
      goto out;
    }
    if (!b && (rc = resolve(t, &c, &l->b, true, seen, &b, &cb, err))) {
      gd_err_prefix(err, "links[%zu].b", i);
      goto out;
    }
    if (a->id == b->id) {
      rc = gd_err_set(err, GD_EINVALID,
                      "links[%zu]: a link's endpoints are the same entity (id %llu)", i,
                      (unsigned long long)a->id);
      goto out;
    }
    ent_seen(a, seen);
    ent_seen(b, seen);
    hs[2 * i] = (half){a->id, GD_ADJ_POS(b->v.type, b->id), seen, seen, 1, a->at};
    hs[2 * i + 1] = (half){b->id, GD_ADJ_POS(a->v.type, a->id), seen, seen, 1, b->at};
  }
  if (u->nlinks && (rc = apply_halves(t, &c, hs, 2 * u->nlinks, &ret->totals, err)))
    goto out;
  if ((rc = ecache_flush(t, &c, err)))
    goto out;

  if (u->request_id.n) {
    gd__req_rec r = {t->now, ret->totals};
    rv.mv_size = sizeof r;
    rv.mv_data = &r;
    if ((rc = mdb_put(t->txn, t->s->request, &rk, &rv, 0))) {
      rc = gd__mdb_err(rc, err, "request index");
      goto out;
    }
  }
  ret->committed_at = t->now;
out:
  free(hs);
  free(ents);
  free(ibuf);
  ecache_free(&c);
  return rc;
}

/* ---- labels ---------------------------------------------------------------- */

int gd_store_set_labels(gd_wtxn *t, const gd_ref *ref, const gd_str *add, size_t nadd,
                        const gd_str *remove, size_t nremove, char ***ret_labels,
                        size_t *ret_n, gd_err *err) {
  ecache c = {0};
  ent *e;
  bool created = false;
  int rc;

  if ((rc = resolve(t, &c, ref, false, 0, &e, &created, err)) ||
      (rc = ent_modify(t, &c, e, NULL, 0, add, nadd, remove, nremove, err)) ||
      (rc = ecache_flush(t, &c, err)))
    goto out;

  /* One block: the pointer array, then the NUL-terminated strings. */
  size_t n = e->v.nlabels, bytes = n * sizeof(char *);
  for (size_t i = 0; i < n; i++)
    bytes += gd_entity_label(&e->v, i).n + 1;
  char **out = malloc(bytes ? bytes : 1);
  if (!out) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  char *p = (char *)(out + n);
  for (size_t i = 0; i < n; i++) {
    gd_str l = gd_entity_label(&e->v, i);
    out[i] = p;
    memcpy(p, l.p, l.n);
    p[l.n] = '\0';
    p += l.n + 1;
  }
  *ret_labels = out;
  *ret_n = n;
out:
  ecache_free(&c);
  return rc;
}

/* ---- delete ---------------------------------------------------------------- */

int gd_store_delete(gd_wtxn *t, const gd_ref *ref, uint64_t *ret_links_removed, gd_err *err) {
  ecache c = {0};
  MDB_cursor *cur = NULL;
  ent *e;
  bool created;
  uint8_t kb[8], ekb[GD__EKEY_MAX];
  MDB_val k, v;
  uint64_t removed = 0;
  gd_link *nbrs = NULL;
  size_t nn = 0, ncap = 0;
  int rc;

  if ((rc = resolve(t, &c, ref, false, 0, &e, &created, err)))
    goto out;
  if ((rc = mdb_cursor_open(t->txn, t->s->adj, &cur))) {
    rc = gd__mdb_err(rc, err, "adjacency cursor");
    goto out;
  }
  /* Collect the neighbours first: no cursor walks a list while we delete. */
  gd__id_key(e->id, kb, &k);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
    if (nn == ncap) {
      size_t ncap2 = ncap ? ncap * 2 : 64;
      gd_link *nl = realloc(nbrs, ncap2 * sizeof *nl);
      if (!nl) {
        rc = gd_err_set(err, GD_ENOMEM, "out of memory");
        goto out;
      }
      nbrs = nl;
      ncap = ncap2;
    }
    gd__adj_row_decode(v.mv_data, &nbrs[nn++]);
  }
  if (rc != MDB_NOTFOUND) {
    rc = gd__mdb_err(rc, err, "adjacency");
    goto out;
  }
  mdb_cursor_close(cur);
  cur = NULL;
  /* Remove the mirror row from every neighbour, then our own list. */
  for (size_t i = 0; i < nn; i++) {
    gd__adj_row mirror = {0};
    uint8_t nkb[8];
    MDB_val nk, nv;
    ent *n;
    gd__id_key(nbrs[i].nbr, nkb, &nk);
    gd_be64_put(mirror.prefix, GD_ADJ_POS(e->v.type, e->id));
    nv.mv_size = sizeof mirror;
    nv.mv_data = &mirror;
    gd__ver_mark(t, nbrs[i].nbr);
    int drc = mdb_del(t->txn, t->s->adj, &nk, &nv);
    if (drc && drc != MDB_NOTFOUND) {
      rc = gd__mdb_err(drc, err, "adjacency");
      goto out;
    }
    if ((rc = ent_load(t, &c, nbrs[i].nbr, false, &n, err)))
      goto out;
    if (n->degree)
      n->degree--;
    if (e->v.type == GD_TYPE_SELLER && n->seller_count)
      n->seller_count--;
    n->dirty = true;
    removed++;
    /* Its sellers lose ties: place them again (place.h). */
    if (nbrs[i].nbr_type == GD_TYPE_SELLER && (rc = gd__place_mark(t, nbrs[i].nbr, err)))
      goto out;
  }
  if (e->v.type == GD_TYPE_SELLER && (rc = gd__place_mark(t, e->id, err)))
    goto out;
  gd__ver_mark(t, e->id);
  gd__id_key(e->id, kb, &k);
  rc = mdb_del(t->txn, t->s->adj, &k, NULL);
  if (rc && rc != MDB_NOTFOUND) {
    rc = gd__mdb_err(rc, err, "adjacency");
    goto out;
  }
  for (size_t i = 0; i < e->v.nlabels; i++)
    if ((rc = label_index(t, gd_entity_label(&e->v, i), e->id, false, err)))
      goto out;
  t->c.labels -= e->v.nlabels;
  t->c.links -= removed;
  t->c.entities[e->v.type]--;

  k.mv_size = gd__ekey_encode(e->v.type, e->v.key, ekb);
  k.mv_data = ekb;
  if ((rc = mdb_del(t->txn, t->s->ekey, &k, NULL))) {
    rc = gd__mdb_err(rc, err, "key index");
    goto out;
  }
  gd__id_key(e->id, kb, &k);
  if ((rc = mdb_del(t->txn, t->s->entity, &k, NULL))) {
    rc = gd__mdb_err(rc, err, "entity");
    goto out;
  }
  e->dirty = false; /* deleted: do not write it back */
  if ((rc = ecache_flush(t, &c, err)))
    goto out;
  *ret_links_removed = removed;
out:
  if (cur)
    mdb_cursor_close(cur);
  free(nbrs);
  ecache_free(&c);
  return rc;
}
