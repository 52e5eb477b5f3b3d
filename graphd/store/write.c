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

#include "core/u64map.h"
#include "store/store_int.h"

/* ---- per-request entity cache ------------------------------------------ */

typedef struct ent {
  uint64_t id;
  uint8_t *rec; /* owned encoded record */
  size_t len;
  gd_entity_view v; /* decoded from rec; header fields below win */
  int64_t first, last;
  uint64_t degree, seller_count;
  bool dirty;
  bool created; /* by this request */
} ent;

typedef struct ecache {
  gd_u64map by_id; /* id -> the ent, as uintptr_t */
  ent **kslots;    /* open addressing on (type, key), power-of-two kcap */
  size_t kcap;
  ent **list;      /* insertion order, for flushing */
  size_t n, list_cap;
  /* Cursors of the request's transaction, opened on first use: the key
   * index's puts (resolve) and the entity records' (ecache_flush) come in
   * key order, and a cursor looks in the page it is on before it searches
   * from the root. */
  MDB_cursor *kcur, *ecur;
} ecache;

static void ecache_free(ecache *c) {
  if (c->kcur)
    mdb_cursor_close(c->kcur);
  if (c->ecur)
    mdb_cursor_close(c->ecur);
  for (size_t i = 0; i < c->n; i++) {
    free(c->list[i]->rec);
    free(c->list[i]);
  }
  gd_u64map_free(&c->by_id);
  free(c->kslots);
  free(c->list);
  memset(c, 0, sizeof *c);
}

static ent *ecache_find(ecache *c, uint64_t id) {
  uint64_t *v = gd_u64map_get(&c->by_id, id);
  return v ? (ent *)(uintptr_t)*v : NULL;
}

static ent *ecache_find_key(ecache *c, int type, gd_str key) {
  if (!c->kcap)
    return NULL;
  for (size_t i = gd__key_hash(type, key) & (c->kcap - 1);; i = (i + 1) & (c->kcap - 1)) {
    ent *e = c->kslots[i];
    if (!e)
      return NULL;
    if (e->v.type == type && gd_str_eq(e->v.key, key))
      return e;
  }
}

static void kslot_put(ent **kslots, size_t kcap, ent *e) {
  size_t i = gd__key_hash(e->v.type, e->v.key) & (kcap - 1);
  while (kslots[i])
    i = (i + 1) & (kcap - 1);
  kslots[i] = e;
}

static int ecache_add(ecache *c, ent *e) {
  if ((c->n + 1) * 2 > c->kcap) {
    size_t ncap = c->kcap ? c->kcap * 2 : 64;
    ent **nk = calloc(ncap, sizeof *nk);
    if (!nk)
      return GD_ENOMEM;
    for (size_t k = 0; k < c->n; k++)
      kslot_put(nk, ncap, c->list[k]);
    free(c->kslots);
    c->kslots = nk;
    c->kcap = ncap;
  }
  if (c->n == c->list_cap) {
    size_t ncap = c->list_cap ? c->list_cap * 2 : 64;
    ent **nl = realloc(c->list, ncap * sizeof *nl);
    if (!nl)
      return GD_ENOMEM;
    c->list = nl;
    c->list_cap = ncap;
  }
  uint64_t *v = gd_u64map_put(&c->by_id, e->id, NULL);
  if (!v)
    return GD_ENOMEM;
  *v = (uintptr_t)e;
  kslot_put(c->kslots, c->kcap, e);
  c->list[c->n++] = e;
  return GD_OK;
}

/* Takes ownership of rec (frees it on failure). */
static int ent_adopt(ecache *c, uint64_t id, uint8_t *rec, size_t len, ent **ret,
                     gd_err *err) {
  ent *e = calloc(1, sizeof *e);
  if (!e) {
    free(rec);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  e->id = id;
  e->rec = rec;
  e->len = len;
  if (gd__rec_decode(rec, len, id, &e->v)) {
    free(rec);
    free(e);
    return gd_err_set(err, GD_EINTERNAL, "entity %llu: corrupt record",
                      (unsigned long long)id);
  }
  e->first = e->v.first_seen;
  e->last = e->v.last_seen;
  e->degree = e->v.degree;
  e->seller_count = e->v.seller_count;
  if (ecache_add(c, e)) {
    free(rec);
    free(e);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  *ret = e;
  return GD_OK;
}

static int ent_load(gd_wtxn *t, ecache *c, uint64_t id, ent **ret, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  ent *e = ecache_find(c, id);
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
  uint8_t *rec = malloc(v.mv_size);
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
static int ent_rewrite(ent *e, const gd_str *names, const gd_str *values, size_t nattrs,
                       const gd_str *labels, size_t nlabels, gd_err *err) {
  gd_entity_view nv = e->v;
  size_t len;
  nv.nattrs = nattrs;
  nv.nlabels = nlabels;
  nv.first_seen = e->first;
  nv.last_seen = e->last;
  nv.degree = e->degree;
  nv.seller_count = e->seller_count;
  uint8_t *rec = gd__rec_encode(&nv, names, values, labels, &len);
  if (!rec)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  free(e->rec);
  e->rec = rec;
  e->len = len;
  gd__rec_decode(rec, len, e->id, &e->v);
  e->dirty = true;
  return GD_OK;
}

static int cmp_ent_id(const void *a, const void *b) {
  uint64_t x = (*(ent *const *)a)->id, y = (*(ent *const *)b)->id;
  return x < y ? -1 : x > y;
}

static int ecache_flush(gd_wtxn *t, ecache *c, gd_err *err) {
  int rc;
  if (c->n > 1)
    qsort(c->list, c->n, sizeof *c->list, cmp_ent_id);
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
    if ((rc = mdb_cursor_put(c->ecur, &k, &v, 0)))
      return gd__mdb_err(rc, err, "entity");
    e->dirty = false;
  }
  return GD_OK;
}

/* ---- entity resolution --------------------------------------------------- */

/*
 * Finds the entity named by ref, creating it (with `seen`) when it is named
 * by (type, key) and missing and `create` is set. *ret_created tells which.
 */
static int resolve(gd_wtxn *t, ecache *c, const gd_ref *ref, bool create, int64_t seen,
                   ent **ret, bool *ret_created, gd_err *err) {
  uint8_t kb[GD__EKEY_MAX], ib[8];
  MDB_val k, v;
  int rc;

  *ret_created = false;
  if (ref->id)
    return ent_load(t, c, ref->id, ret, err);
  if ((*ret = ecache_find_key(c, ref->type, ref->key)))
    return GD_OK;

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
    if (ref->key.n > UINT16_MAX)
      return gd_err_set(err, GD_EINVALID, "key too long");
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
  rc = ent_load(t, c, gd_be64_get(v.mv_data), ret, err);
  if (rc == GD_OK && !gd_str_eq((*ret)->v.key, ref->key))
    return gd_err_set(err, GD_EINTERNAL, "key hash collision on a %s key",
                      gd_type_name(ref->type));
  return rc;

created:; /* New entity: its key is in the index. */
  uint64_t id = t->c.next_id++;
  gd_entity_view nv = {.id = id, .type = ref->type, .key = ref->key,
                       .first_seen = seen, .last_seen = seen};
  size_t len;
  uint8_t *rec = gd__rec_encode(&nv, NULL, NULL, NULL, &len);
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
static int ent_modify(gd_wtxn *t, ent *e, const gd_attr_in *attrs, size_t nattrs,
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
  rc = ent_rewrite(e, names, values, na, labels, nl, err);
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
} half;

static int cmp_half(const void *a, const void *b) {
  const half *x = a, *y = b;
  if (x->src != y->src)
    return x->src < y->src ? -1 : 1;
  return (x->prefix > y->prefix) - (x->prefix < y->prefix);
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
    memset(&row, 0, sizeof row);
    gd_be64_put(row.prefix, h->prefix);
    row.count = h->count;
    row.first_seen = h->first;
    row.last_seen = h->last;
    v.mv_size = sizeof row;
    v.mv_data = &row;
    rc = mdb_cursor_put(cur, &k, &v, MDB_NODUPDATA);
    *ret_created = true;
  }
  return rc ? gd__mdb_err(rc, err, "adjacency") : GD_OK;
}

static int apply_halves(gd_wtxn *t, ecache *c, half *hs, size_t n, gd_totals *tot,
                        gd_err *err) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->adj, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "adjacency cursor");
  if (n > 1)
    qsort(hs, n, sizeof *hs, cmp_half);
  for (size_t i = 0; i < n;) {
    /* Merge repeated observations of the same pair. */
    half h = hs[i++];
    while (i < n && hs[i].src == h.src && hs[i].prefix == h.prefix) {
      h.count += hs[i].count;
      if (hs[i].first < h.first)
        h.first = hs[i].first;
      if (hs[i].last > h.last)
        h.last = hs[i].last;
      i++;
    }
    bool created = false;
    if ((rc = adj_apply(t, cur, &h, &created, err)))
      break;
    uint64_t dst = h.prefix & ((UINT64_C(1) << 56) - 1);
    bool counted = h.src < dst; /* count each undirected link once */
    /* Totals count observations, so they do not depend on how a load is
     * cut into requests: the first observation of a new link creates it,
     * every other one updates it. */
    if (created) {
      ent *e = ecache_find(c, h.src);
      e->degree++;
      if ((int)(h.prefix >> 56) == GD_TYPE_SELLER)
        e->seller_count++;
      e->dirty = true;
      /* A new link gives a seller new ties: place it again (place.h). */
      if (e->v.type == GD_TYPE_SELLER && (rc = gd__place_mark(t, h.src, err)))
        break;
      if (counted) {
        tot->links_created++;
        tot->links_updated += h.count - 1;
        t->c.links++;
      }
    } else if (counted) {
      tot->links_updated += h.count;
    }
  }
  mdb_cursor_close(cur);
  return rc;
}

/* ---- upsert ---------------------------------------------------------------- */


static int cmp_ref(const void *a, const void *b) {
  const gd_ref *x = *(const gd_ref *const *)a, *y = *(const gd_ref *const *)b;
  if (x->type != y->type)
    return x->type - y->type;
  size_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
  int r = memcmp(x->key.p, y->key.p, n);
  return r ? r : (x->key.n > y->key.n) - (x->key.n < y->key.n);
}

/*
 * Resolves every (type, key) of the request once, in key order, creating
 * what is missing: the ekey lookups and inserts then walk the B-tree
 * sequentially instead of jumping across it once per link endpoint, and
 * later lookups of the same key hit the cache.
 */
static int preresolve(gd_wtxn *t, ecache *c, const gd_upsert *u, uint64_t *ret_created,
                      gd_err *err) {
  size_t n = 0;
  gd_ref *erefs = malloc((u->nentities + 1) * sizeof *erefs);
  const gd_ref **refs = malloc((u->nentities + 2 * u->nlinks + 1) * sizeof *refs);
  int rc = GD_OK;
  if (!erefs || !refs) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < u->nentities; i++) {
    erefs[i] = (gd_ref){0, u->entities[i].type, u->entities[i].key};
    refs[n++] = &erefs[i];
  }
  for (size_t i = 0; i < u->nlinks; i++) {
    if (!u->links[i].a.id)
      refs[n++] = &u->links[i].a;
    if (!u->links[i].b.id)
      refs[n++] = &u->links[i].b;
  }
  if (n > 1)
    qsort(refs, n, sizeof *refs, cmp_ref);
  for (size_t i = 0; i < n; i++) {
    ent *e;
    bool created;
    if (i > 0 && cmp_ref(&refs[i - 1], &refs[i]) == 0)
      continue;
    if ((rc = resolve(t, c, refs[i], true, 0, &e, &created, err)))
      break;
    *ret_created += created;
  }
out:
  free(erefs);
  free(refs);
  return rc;
}

int gd_store_upsert(gd_wtxn *t, const gd_upsert *u, gd_upsert_result *ret, gd_err *err) {
  ecache c = {0};
  half *hs = NULL;
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

  if ((rc = preresolve(t, &c, u, &ret->totals.entities_created, err)))
    goto out;

  for (size_t i = 0; i < u->nentities; i++) {
    const gd_entity_in *in = &u->entities[i];
    gd_ref ref = {0, in->type, in->key};
    int64_t seen = in->seen ? in->seen : t->now;
    bool created;
    ent *e;
    if ((rc = resolve(t, &c, &ref, true, seen, &e, &created, err)) ||
        (rc = ent_modify(t, e, in->attrs, in->nattrs, in->labels, in->nlabels, NULL, 0, err))) {
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
    hs = malloc(2 * u->nlinks * sizeof *hs);
    if (!hs) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory for %zu links", u->nlinks);
      goto out;
    }
  }
  for (size_t i = 0; i < u->nlinks; i++) {
    const gd_link_in *l = &u->links[i];
    int64_t seen = l->seen ? l->seen : t->now;
    ent *a, *b;
    bool ca, cb;
    if ((rc = resolve(t, &c, &l->a, true, seen, &a, &ca, err))) {
      gd_err_prefix(err, "links[%zu].a", i);
      goto out;
    }
    if ((rc = resolve(t, &c, &l->b, true, seen, &b, &cb, err))) {
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
    hs[2 * i] = (half){a->id, GD_ADJ_POS(b->v.type, b->id), seen, seen, 1};
    hs[2 * i + 1] = (half){b->id, GD_ADJ_POS(a->v.type, a->id), seen, seen, 1};
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
      (rc = ent_modify(t, e, NULL, 0, add, nadd, remove, nremove, err)) ||
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
    if ((rc = ent_load(t, &c, nbrs[i].nbr, &n, err)))
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
