/* Cases (case.h). */
#include "store/case.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "store/store_int.h"

#define HDR 16
#define FORMAT 1

static int decode(uint64_t id, const MDB_val *v, gd_case_view *ret, gd_err *err) {
  const uint8_t *p = v->mv_data;
  if (v->mv_size < HDR || p[0] != FORMAT)
    return gd_err_set(err, GD_EINTERNAL, "case %llu: record does not parse",
                      (unsigned long long)id);
  uint16_t bl;
  uint32_t nq;
  uint64_t rev;
  memcpy(&bl, p + 2, 2);
  memcpy(&nq, p + 4, 4);
  memcpy(&rev, p + 8, 8);
  if (v->mv_size < HDR + (size_t)bl)
    return gd_err_set(err, GD_EINTERNAL, "case %llu: record does not parse",
                      (unsigned long long)id);
  *ret = (gd_case_view){
      .id = id,
      .revision = rev,
      .status = p[1],
      .nqueries = nq,
      .brand = {(const char *)p + HDR, bl},
      .body = p + HDR + bl,
      .body_len = v->mv_size - HDR - bl,
  };
  return GD_OK;
}

static int get(MDB_txn *txn, MDB_dbi dbi, uint64_t id, gd_case_view *ret, gd_err *err) {
  uint8_t kb[8];
  MDB_val k, v;
  if (id == 0 || id >= GD_CASE_ID_LIMIT)
    return gd_err_set(err, GD_ENOTFOUND, "case_id: no case %llu", (unsigned long long)id);
  gd__id_key(id, kb, &k);
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "case_id: no case %llu", (unsigned long long)id);
  if (rc)
    return gd__mdb_err(rc, err, "case");
  return decode(id, &v, ret, err);
}

int gd_store_case_get(gd_rtxn *r, uint64_t id, gd_case_view *ret, gd_err *err) {
  return get(r->txn, r->s->cases, id, ret, err);
}

int gd_store_case_get_w(gd_wtxn *t, uint64_t id, gd_case_view *ret, gd_err *err) {
  return get(t->txn, t->s->cases, id, ret, err);
}

int gd_store_case_new_id(gd_wtxn *t, uint64_t *ret, gd_err *err) {
  for (int tries = 0; tries < 64; tries++) {
    uint8_t b[8];
    uint64_t id;
    if (RAND_bytes(b, sizeof b) != 1)
      return gd_err_set(err, GD_EINTERNAL, "no random bytes for a case id");
    memcpy(&id, b, sizeof id);
    id &= GD_CASE_ID_LIMIT - 1;
    if (!id)
      continue;
    uint8_t kb[8];
    MDB_val k, v;
    gd__id_key(id, kb, &k);
    int rc = mdb_get(t->txn, t->s->cases, &k, &v);
    if (rc == MDB_NOTFOUND) {
      *ret = id;
      return GD_OK;
    }
    if (rc)
      return gd__mdb_err(rc, err, "case");
  }
  return gd_err_set(err, GD_EINTERNAL, "no free case id in 64 draws");
}

int gd_store_case_put(gd_wtxn *t, const gd_case_view *c, gd_err *err) {
  if (c->id == 0 || c->id >= GD_CASE_ID_LIMIT || c->brand.n < 1 || c->brand.n > 64 ||
      c->body_len > GD_CASE_BODY_MAX || c->status < 0 || c->status > 255)
    return gd_err_set(err, GD_EINVALID, "case %llu: bad record (brand %zu bytes, body %zu bytes)",
                      (unsigned long long)c->id, c->brand.n, c->body_len);
  uint8_t kb[8];
  MDB_val k, v = {HDR + c->brand.n + c->body_len, NULL};
  gd__id_key(c->id, kb, &k);
  int rc = mdb_put(t->txn, t->s->cases, &k, &v, MDB_RESERVE);
  if (rc)
    return gd__mdb_err(rc, err, "case");
  uint8_t *p = v.mv_data;
  uint16_t bl = (uint16_t)c->brand.n;
  p[0] = FORMAT;
  p[1] = (uint8_t)c->status;
  memcpy(p + 2, &bl, 2);
  memcpy(p + 4, &c->nqueries, 4);
  memcpy(p + 8, &c->revision, 8);
  memcpy(p + HDR, c->brand.p, c->brand.n);
  if (c->body_len)
    memcpy(p + HDR + c->brand.n, c->body, c->body_len);
  return GD_OK;
}

int gd_store_cases_visit(gd_rtxn *r, uint64_t after, gd_case_fn fn, void *ctx, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t kb[8];
  if (after >= GD_CASE_ID_LIMIT)
    return GD_OK;
  int rc = mdb_cursor_open(r->txn, r->s->cases, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "case cursor");
  gd__id_key(after + 1, kb, &k);
  int out = GD_OK;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    gd_case_view c;
    if (k.mv_size != 8)
      continue;
    if ((out = decode(gd_be64_get(k.mv_data), &v, &c, err)))
      break;
    if (fn(ctx, &c))
      break;
  }
  mdb_cursor_close(cur);
  if (out)
    return out;
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "cases");
  return GD_OK;
}

static void qkey(uint64_t id, uint32_t seq, uint8_t kb[12], MDB_val *k) {
  gd_be64_put(kb, id);
  kb[8] = (uint8_t)(seq >> 24);
  kb[9] = (uint8_t)(seq >> 16);
  kb[10] = (uint8_t)(seq >> 8);
  kb[11] = (uint8_t)seq;
  k->mv_data = kb;
  k->mv_size = 12;
}

int gd_store_case_query_put(gd_wtxn *t, uint64_t id, uint32_t seq, const void *q, size_t len,
                            gd_err *err) {
  if (seq == 0 || len == 0 || len > GD_CASE_QUERY_MAX)
    return gd_err_set(err, GD_EINVALID, "case %llu: saved query %u of %zu bytes",
                      (unsigned long long)id, seq, len);
  uint8_t kb[12];
  MDB_val k, v = {len, (void *)q};
  qkey(id, seq, kb, &k);
  int rc = mdb_put(t->txn, t->s->case_query, &k, &v, 0);
  return rc ? gd__mdb_err(rc, err, "case query") : GD_OK;
}

int gd_store_case_queries_visit(gd_rtxn *r, uint64_t id, uint32_t after, gd_case_query_fn fn,
                                void *ctx, gd_err *err) {
  if (after == UINT32_MAX)
    return GD_OK;
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t kb[12];
  int rc = mdb_cursor_open(r->txn, r->s->case_query, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "case query cursor");
  qkey(id, after + 1, kb, &k);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const uint8_t *p = k.mv_data;
    if (k.mv_size != 12 || gd_be64_get(p) != id)
      break;
    uint32_t seq = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    if (fn(ctx, seq, v.mv_data, v.mv_size))
      break;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "case queries");
  return GD_OK;
}
