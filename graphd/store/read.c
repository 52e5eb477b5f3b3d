/*
 * Reads: entity lookup and adjacency scans, inside one read transaction.
 */
#include <stdlib.h>

#include "store/store_int.h"

int gd_store_lookup(gd_rtxn *r, const gd_ref *ref, uint64_t *ret_id, gd_err *err) {
  uint8_t kb[GD__EKEY_MAX];
  MDB_val k, v;
  int rc;

  if (ref->id) {
    *ret_id = ref->id;
    return GD_OK;
  }
  k.mv_size = gd__ekey_encode(ref->type, ref->key, kb);
  k.mv_data = kb;
  rc = mdb_get(r->txn, r->s->ekey, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "no %s with key '%.*s'", gd_type_name(ref->type),
                      (int)(ref->key.n > 64 ? 64 : ref->key.n), ref->key.p);
  if (rc)
    return gd__mdb_err(rc, err, "key index");
  if (v.mv_size != 8)
    return gd_err_set(err, GD_EINTERNAL, "corrupt key index entry");
  *ret_id = gd_be64_get(v.mv_data);
  return GD_OK;
}

int gd_store_get(gd_rtxn *r, const gd_ref *ref, gd_entity_view *ret, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  uint64_t id;
  int rc;

  if ((rc = gd_store_lookup(r, ref, &id, err)))
    return rc;
  gd__id_key(id, kb, &k);
  rc = mdb_get(r->txn, r->s->entity, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "no entity with id %llu", (unsigned long long)id);
  if (rc)
    return gd__mdb_err(rc, err, "entity");
  if (gd__rec_decode(v.mv_data, v.mv_size, id, ret))
    return gd_err_set(err, GD_EINTERNAL, "entity %llu: corrupt record",
                      (unsigned long long)id);
  if (!ref->id && !gd_str_eq(ret->key, ref->key))
    return gd_err_set(err, GD_EINTERNAL, "key hash collision on a %s key",
                      gd_type_name(ref->type));
  return GD_OK;
}

/* Smallest type >= t whose bit is in mask, or 0 if none. */
static int next_type(uint32_t mask, int t) {
  if (t < GD_TYPE_MIN)
    t = GD_TYPE_MIN;
  for (; t <= GD_TYPE_MAX; t++)
    if (mask & (1u << t))
      return t;
  return 0;
}

static bool in_window(const gd_link *l, int64_t since, int64_t until) {
  return (since == 0 || l->last_seen >= since) && (until == 0 || l->first_seen <= until);
}

int gd_store_links(gd_rtxn *r, uint64_t id, const gd_adj_query *q, gd_link *out,
                   size_t *ret_n, bool *ret_more, gd_err *err) {
  uint8_t kb[8], pb[GD__ADJ_ROW] = {0};
  MDB_cursor *cur;
  MDB_val k, v;
  uint32_t mask = q->type_mask ? q->type_mask : ~0u;
  size_t n = 0;
  bool more = false;
  int rc;

  gd__id_key(id, kb, &k);
  rc = mdb_get(r->txn, r->s->entity, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "no entity with id %llu", (unsigned long long)id);
  if (rc)
    return gd__mdb_err(rc, err, "entity");
  if ((rc = mdb_cursor_open(r->txn, r->s->adj, &cur)))
    return gd__mdb_err(rc, err, "adjacency cursor");

  /* Start just after q->after, at the first wanted type. */
  uint64_t pos = q->after + 1;
  int t = next_type(mask, (int)(pos >> 56));
  if (t == 0)
    goto done;
  if ((int)(pos >> 56) < t)
    pos = GD_ADJ_POS(t, 0);
  for (;;) {
    gd_be64_put(pb, pos);
    v.mv_size = sizeof pb;
    v.mv_data = pb;
    rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
    while (rc == MDB_SUCCESS) {
      gd_link l;
      gd__adj_row_decode(v.mv_data, &l);
      if (!(mask & (1u << l.nbr_type))) {
        /* Skip the rest of this type in one seek. */
        int nt = next_type(mask, l.nbr_type + 1);
        if (nt == 0)
          goto done;
        pos = GD_ADJ_POS(nt, 0);
        break;
      }
      if (in_window(&l, q->since, q->until)) {
        if (n == q->limit) {
          more = true;
          goto done;
        }
        out[n++] = l;
      }
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    if (rc == MDB_NOTFOUND)
      goto done;
    if (rc != MDB_SUCCESS) {
      mdb_cursor_close(cur);
      return gd__mdb_err(rc, err, "adjacency");
    }
  }
done:
  mdb_cursor_close(cur);
  *ret_n = n;
  *ret_more = more;
  return GD_OK;
}

int gd_store_visit_links(gd_rtxn *r, uint64_t id, uint32_t type_mask, int64_t since,
                         int64_t until, gd_link_fn fn, void *ctx, uint64_t *touched,
                         gd_err *err) {
  uint8_t kb[8], pb[GD__ADJ_ROW] = {0};
  MDB_cursor *cur;
  MDB_val k, v;
  uint32_t mask = type_mask ? type_mask : ~0u;
  uint64_t rows = 0;
  int rc, t = next_type(mask, GD_TYPE_MIN);

  if (t == 0)
    return GD_OK;
  if ((rc = mdb_cursor_open(r->txn, r->s->adj, &cur)))
    return gd__mdb_err(rc, err, "adjacency cursor");
  gd__id_key(id, kb, &k);
  gd_be64_put(pb, GD_ADJ_POS(t, 0));
  v.mv_size = sizeof pb;
  v.mv_data = pb;
  rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
  while (rc == MDB_SUCCESS) {
    gd_link l;
    gd__adj_row_decode(v.mv_data, &l);
    rows++;
    if (!(mask & (1u << l.nbr_type))) {
      int nt = next_type(mask, l.nbr_type + 1);
      if (nt == 0)
        break;
      gd_be64_put(pb, GD_ADJ_POS(nt, 0));
      v.mv_size = sizeof pb;
      v.mv_data = pb;
      rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
      continue;
    }
    if (in_window(&l, since, until) && fn(ctx, &l))
      break;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
  }
  mdb_cursor_close(cur);
  if (touched)
    *touched += rows;
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "adjacency");
  return GD_OK;
}

int gd_links_visit_list(const gd_link *all, size_t n, uint32_t type_mask, int64_t since,
                        int64_t until, gd_link_fn fn, void *ctx, uint64_t *touched) {
  uint32_t mask = type_mask ? type_mask : ~0u;
  uint64_t rows = 0;
  int t = next_type(mask, GD_TYPE_MIN), ret = 0;
  size_t i = 0;
  if (t == 0)
    return 0;
  /* The cursor's MDB_GET_BOTH_RANGE: the first row of type >= t. */
  while (i < n && all[i].nbr_type < t)
    i++;
  while (i < n) {
    const gd_link *l = &all[i];
    rows++;
    if (!(mask & (1u << l->nbr_type))) {
      int nt = next_type(mask, l->nbr_type + 1);
      if (nt == 0)
        break;
      while (i < n && all[i].nbr_type < nt)
        i++;
      continue;
    }
    if (in_window(l, since, until) && (ret = fn(ctx, l)))
      break;
    i++;
  }
  if (touched)
    *touched += rows;
  return ret;
}

int gd_store_label_members(gd_rtxn *r, gd_str label, uint64_t **ret_ids, size_t *ret_n,
                           gd_err *err) {
  MDB_cursor *cur;
  MDB_val k = {label.n, (void *)label.p}, v;
  uint64_t *ids = NULL;
  size_t n = 0, cap = 0;
  int rc;

  *ret_ids = NULL;
  *ret_n = 0;
  if (label.n == 0 || label.n > GD_LABEL_MAX)
    return GD_OK;
  if ((rc = mdb_cursor_open(r->txn, r->s->label, &cur)))
    return gd__mdb_err(rc, err, "label cursor");
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 256;
      uint64_t *nids = realloc(ids, ncap * sizeof *nids);
      if (!nids) {
        free(ids);
        mdb_cursor_close(cur);
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      }
      ids = nids;
      cap = ncap;
    }
    ids[n++] = gd_be64_get(v.mv_data);
  }
  mdb_cursor_close(cur);
  if (rc != MDB_NOTFOUND) {
    free(ids);
    return gd__mdb_err(rc, err, "label index");
  }
  *ret_ids = ids;
  *ret_n = n;
  return GD_OK;
}
