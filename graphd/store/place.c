/* Fresh clustering's tables: the placement queue, placements, alerts
 * (place.h). */
#include "store/place.h"

#include <string.h>

#include "store/store_int.h"


/* ---- the queue ---------------------------------------------------------- */

void gd_store_place_config(gd_store *s, uint64_t max) { atomic_store(&s->place_max, max); }

uint64_t gd_store_place_shed(gd_store *s) { return atomic_load(&s->place_shed); }

/* Reads the largest queued seller id into t->dirty_max. An LMDB code. */
static int dirty_max_read(gd_wtxn *t) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(t->txn, t->s->dirty, &c);
  if (rc)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) {
    t->dirty_max = 0;
  } else if (rc) {
    return rc;
  } else if (k.mv_size == 8) {
    t->dirty_max = gd_be64_get(k.mv_data);
  } else {
    t->dirty_max = UINT64_MAX; /* a row of the wrong size: always look */
  }
  t->dirty_max_read = true;
  return MDB_SUCCESS;
}

static int mark(gd_wtxn *t, uint64_t seller, bool may_shed, gd_err *err) {
  uint8_t kb[8], vb[8];
  MDB_val k, v;
  gd__id_key(seller, kb, &k);
  if (may_shed) {
    MDB_stat st;
    uint64_t max = atomic_load(&t->s->place_max);
    int rc = mdb_stat(t->txn, t->s->dirty, &st);
    if (rc)
      return gd__mdb_err(rc, err, "placement queue");
    if (st.ms_entries >= max) {
      /* Full: only a seller already queued is marked again. A new seller
       * has the largest id yet, above every queued one, and is shed
       * without a search (at 1M sellers and no snapshot yet, the search
       * was 3% of the writer's time). */
      if (!t->dirty_max_read && (rc = dirty_max_read(t)))
        return gd__mdb_err(rc, err, "placement queue");
      rc = seller > t->dirty_max ? MDB_NOTFOUND : mdb_get(t->txn, t->s->dirty, &k, &v);
      if (rc == MDB_NOTFOUND) {
        atomic_fetch_add(&t->s->place_shed, 1);
        return GD_OK;
      }
      if (rc)
        return gd__mdb_err(rc, err, "placement queue");
    }
  }
  gd_le64_put(vb, (uint64_t)gd_now_unix_ns());
  v.mv_size = 8;
  v.mv_data = vb;
  int rc = mdb_put(t->txn, t->s->dirty, &k, &v, 0);
  if (rc)
    return gd__mdb_err(rc, err, "placement queue");
  if (t->dirty_max_read && seller > t->dirty_max)
    t->dirty_max = seller;
  return GD_OK;
}

int gd__place_mark(gd_wtxn *t, uint64_t seller, gd_err *err) {
  if (!atomic_load_explicit(&t->s->place_max, memory_order_relaxed))
    return GD_OK;
  return mark(t, seller, true, err);
}

int gd_store_dirty_mark(gd_wtxn *t, uint64_t seller, gd_err *err) {
  return mark(t, seller, false, err);
}

int gd_store_dirty_count(gd_rtxn *r, uint64_t *ret, gd_err *err) {
  MDB_stat st;
  int rc = mdb_stat(r->txn, r->s->dirty, &st);
  if (rc)
    return gd__mdb_err(rc, err, "placement queue");
  *ret = st.ms_entries;
  return GD_OK;
}

int gd_store_dirty_list(gd_rtxn *r, size_t max, uint64_t *sellers, int64_t *stamps,
                        size_t *ret_n, gd_err *err) {
  MDB_cursor *c;
  MDB_val k, v;
  size_t n = 0;
  int rc = mdb_cursor_open(r->txn, r->s->dirty, &c);
  if (rc)
    return gd__mdb_err(rc, err, "placement queue");
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS && n < max;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8 || v.mv_size != 8) {
      mdb_cursor_close(c);
      return gd_err_set(err, GD_EINTERNAL, "placement queue: a row of the wrong size");
    }
    sellers[n] = gd_be64_get(k.mv_data);
    stamps[n++] = (int64_t)gd_le64_get(v.mv_data);
  }
  mdb_cursor_close(c);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "placement queue");
  *ret_n = n;
  return GD_OK;
}

int gd_store_dirty_clear(gd_wtxn *t, uint64_t seller, int64_t stamp, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  gd__id_key(seller, kb, &k);
  int rc = mdb_get(t->txn, t->s->dirty, &k, &v);
  if (rc == MDB_NOTFOUND)
    return GD_OK;
  if (rc)
    return gd__mdb_err(rc, err, "placement queue");
  if (v.mv_size != 8 || (int64_t)gd_le64_get(v.mv_data) != stamp)
    return GD_OK; /* marked again since: placed again */
  rc = mdb_del(t->txn, t->s->dirty, &k, NULL);
  return rc ? gd__mdb_err(rc, err, "placement queue") : GD_OK;
}

/* ---- placements ---------------------------------------------------------- */

#define PROV_LEN 64

static void prov_encode(const gd_prov *p, uint8_t *b) {
  gd_le64_put(b, p->snapshot);
  gd_le64_put(b + 8, p->cluster);
  gd_le64_put(b + 16, p->previous);
  gd_le64_put(b + 24, p->size);
  gd_lef64_put(b + 32, p->risk);
  gd_lef64_put(b + 40, p->gain);
  gd_lef64_put(b + 48, p->tie);
  gd_le64_put(b + 56, (uint64_t)p->placed_at);
}

static int prov_decode(const MDB_val *v, gd_prov *p, gd_err *err) {
  if (v->mv_size != PROV_LEN)
    return gd_err_set(err, GD_EINTERNAL, "placement: a row of %zu bytes", v->mv_size);
  const uint8_t *b = v->mv_data;
  p->snapshot = gd_le64_get(b);
  p->cluster = gd_le64_get(b + 8);
  p->previous = gd_le64_get(b + 16);
  p->size = gd_le64_get(b + 24);
  p->risk = gd_lef64_get(b + 32);
  p->gain = gd_lef64_get(b + 40);
  p->tie = gd_lef64_get(b + 48);
  p->placed_at = (int64_t)gd_le64_get(b + 56);
  return GD_OK;
}

int gd_store_prov_get(gd_rtxn *r, uint64_t seller, gd_prov *ret, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  gd__id_key(seller, kb, &k);
  int rc = mdb_get(r->txn, r->s->prov, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "seller %llu: no placement", (unsigned long long)seller);
  if (rc)
    return gd__mdb_err(rc, err, "placement");
  return prov_decode(&v, ret, err);
}

static void member_key(uint64_t snap, uint64_t cluster, uint8_t kb[16], MDB_val *k) {
  gd_be64_put(kb, snap);
  gd_be64_put(kb + 8, cluster);
  k->mv_size = 16;
  k->mv_data = kb;
}

/* Removes seller from prov_member under (snap, cluster); absent is fine. */
static int member_del(MDB_txn *txn, MDB_dbi dbi, uint64_t snap, uint64_t cluster,
                      uint64_t seller, gd_err *err) {
  uint8_t kb[16], sb[8];
  MDB_val k, v;
  member_key(snap, cluster, kb, &k);
  gd__id_key(seller, sb, &v);
  int rc = mdb_del(txn, dbi, &k, &v);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "placed members");
  return GD_OK;
}

int gd_store_prov_put(gd_wtxn *t, uint64_t seller, const gd_prov *p, gd_err *err) {
  uint8_t kb[8], vb[PROV_LEN];
  MDB_val k, v;
  gd_prov old;
  if (p && !p->snapshot)
    return gd_err_set(err, GD_EINVALID, "placement: snapshot 0");
  gd__id_key(seller, kb, &k);
  int rc = mdb_get(t->txn, t->s->prov, &k, &v);
  if (rc == MDB_SUCCESS) {
    if ((rc = prov_decode(&v, &old, err)))
      return rc;
    if (old.cluster && (rc = member_del(t->txn, t->s->prov_member, old.snapshot, old.cluster,
                                        seller, err)))
      return rc;
    if (!p && (rc = mdb_del(t->txn, t->s->prov, &k, NULL)))
      return gd__mdb_err(rc, err, "placement");
  } else if (rc != MDB_NOTFOUND) {
    return gd__mdb_err(rc, err, "placement");
  }
  if (!p)
    return GD_OK;
  prov_encode(p, vb);
  v.mv_size = PROV_LEN;
  v.mv_data = vb;
  if ((rc = mdb_put(t->txn, t->s->prov, &k, &v, 0)))
    return gd__mdb_err(rc, err, "placement");
  if (p->cluster) {
    uint8_t mk[16], sb[8];
    MDB_val mkey, sv;
    member_key(p->snapshot, p->cluster, mk, &mkey);
    gd__id_key(seller, sb, &sv);
    if ((rc = mdb_put(t->txn, t->s->prov_member, &mkey, &sv, MDB_NODUPDATA)) &&
        rc != MDB_KEYEXIST)
      return gd__mdb_err(rc, err, "placed members");
  }
  return GD_OK;
}

int gd_store_prov_members(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                          size_t max, uint64_t *ret, size_t *ret_n, bool *ret_more,
                          gd_err *err) {
  MDB_cursor *c;
  uint8_t kb[16], sb[8];
  MDB_val k, v;
  size_t n = 0;
  bool more = false;
  member_key(snap, cluster, kb, &k);
  gd__id_key(after + 1, sb, &v);
  int rc = mdb_cursor_open(r->txn, r->s->prov_member, &c);
  if (rc)
    return gd__mdb_err(rc, err, "placed members");
  rc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(c, &k, &v, MDB_GET_BOTH_RANGE);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
    if (n == max) {
      more = true;
      break;
    }
    ret[n++] = gd_be64_get(v.mv_data);
  }
  mdb_cursor_close(c);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "placed members");
  *ret_n = n;
  *ret_more = more;
  return GD_OK;
}

int gd_store_prov_rebase(gd_wtxn *t, uint64_t snap, uint64_t *ret_n, gd_err *err) {
  MDB_cursor *c;
  MDB_val k, v;
  uint64_t n = 0;
  int rc = mdb_cursor_open(t->txn, t->s->prov, &c);
  if (rc)
    return gd__mdb_err(rc, err, "placement");
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;) {
    gd_prov p;
    if ((rc = prov_decode(&v, &p, err))) {
      mdb_cursor_close(c);
      return rc;
    }
    if (p.snapshot == snap) {
      rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
      continue;
    }
    uint64_t seller = gd_be64_get(k.mv_data);
    if ((p.cluster && (rc = member_del(t->txn, t->s->prov_member, p.snapshot, p.cluster, seller,
                                       err))) ||
        (rc = mark(t, seller, false, err))) {
      mdb_cursor_close(c);
      return rc;
    }
    if ((rc = mdb_cursor_del(c, 0))) {
      mdb_cursor_close(c);
      return gd__mdb_err(rc, err, "placement");
    }
    n++;
    /* After a delete, MDB_NEXT yields the item that followed it. */
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(c);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "placement");
  *ret_n = n;
  return GD_OK;
}

/* ---- alerts -------------------------------------------------------------- */

int gd_store_alert_append(gd_wtxn *t, const void *ev, size_t len, uint64_t keep,
                          uint64_t *ret_seq, gd_err *err) {
  static const char name[] = "alert.next_seq";
  MDB_val mk = {sizeof name - 1, (void *)name}, k, v;
  uint8_t nb[8], kb[8];
  uint64_t seq = 1;
  if (!len || len > GD_ALERT_MAX_BYTES)
    return gd_err_set(err, GD_EINVALID, "alert: %zu bytes (1..%d)", len, GD_ALERT_MAX_BYTES);
  int rc = mdb_get(t->txn, t->s->meta, &mk, &v);
  if (rc == MDB_SUCCESS) {
    if (v.mv_size != 8)
      return gd_err_set(err, GD_EINTERNAL, "meta %s: corrupt", name);
    seq = gd_be64_get(v.mv_data);
  } else if (rc != MDB_NOTFOUND) {
    return gd__mdb_err(rc, err, "meta");
  }
  gd_be64_put(nb, seq + 1);
  v.mv_size = 8;
  v.mv_data = nb;
  if ((rc = mdb_put(t->txn, t->s->meta, &mk, &v, 0)))
    return gd__mdb_err(rc, err, "meta");
  gd__id_key(seq, kb, &k);
  v.mv_size = len;
  v.mv_data = (void *)ev;
  if ((rc = mdb_put(t->txn, t->s->alert, &k, &v, MDB_APPEND)))
    return gd__mdb_err(rc, err, "alerts");
  /* Trim: everything below seq + 1 - keep goes. */
  if (keep < 1)
    keep = 1;
  if (seq > keep) {
    uint64_t below = seq + 1 - keep;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, t->s->alert, &c)))
      return gd__mdb_err(rc, err, "alerts");
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == MDB_SUCCESS &&
           gd_be64_get(k.mv_data) < below)
      if ((rc = mdb_cursor_del(c, 0)))
        break;
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
      return gd__mdb_err(rc, err, "alerts");
  }
  *ret_seq = seq;
  return GD_OK;
}

int gd_store_alert_bounds(gd_rtxn *r, uint64_t *ret_oldest, uint64_t *ret_last, gd_err *err) {
  MDB_cursor *c;
  MDB_val k, v;
  *ret_oldest = *ret_last = 0;
  int rc = mdb_cursor_open(r->txn, r->s->alert, &c);
  if (rc)
    return gd__mdb_err(rc, err, "alerts");
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  if (rc == MDB_SUCCESS) {
    *ret_oldest = gd_be64_get(k.mv_data);
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == MDB_SUCCESS)
      *ret_last = gd_be64_get(k.mv_data);
  }
  mdb_cursor_close(c);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "alerts");
  return GD_OK;
}

int gd_store_alert_visit(gd_rtxn *r, uint64_t after, gd_alert_fn fn, void *ctx, gd_err *err) {
  MDB_cursor *c;
  uint8_t kb[8];
  MDB_val k, v;
  if (after == UINT64_MAX)
    return GD_OK;
  gd__id_key(after + 1, kb, &k);
  int rc = mdb_cursor_open(r->txn, r->s->alert, &c);
  if (rc)
    return gd__mdb_err(rc, err, "alerts");
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    if (fn(ctx, gd_be64_get(k.mv_data), v.mv_data, v.mv_size))
      break;
  mdb_cursor_close(c);
  if (rc && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "alerts");
  return GD_OK;
}
