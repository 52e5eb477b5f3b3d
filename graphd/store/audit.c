/* The audit trail (audit.h). */
#include "store/audit.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define HDR 28                    /* seq, time, status, role + pad, before the lengths */
#define FIXED (HDR + 10 + 32 + 32) /* + five u16 lengths, prev, hash */

static void put16(uint8_t *p, uint16_t x) {
  p[0] = (uint8_t)x;
  p[1] = (uint8_t)(x >> 8);
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Parses v (len bytes) into *a; -1 if malformed. */
static int parse(const uint8_t *p, size_t len, gd_audit_view *a) {
  if (len < FIXED)
    return -1;
  a->seq = gd_le64_get(p);
  a->time_ms = (int64_t)gd_le64_get(p + 8);
  a->status = (int32_t)(uint32_t)(p[16] | p[17] << 8 | p[18] << 16 | (uint32_t)p[19] << 24);
  a->role = p[20];
  uint16_t l[5];
  size_t sum = 0;
  for (int i = 0; i < 5; i++)
    sum += l[i] = get16(p + HDR + 2 * i);
  if (FIXED + sum != len)
    return -1;
  const char *s = (const char *)p + HDR + 10;
  a->principal = s, a->principal_len = l[0], s += l[0];
  a->peer = s, a->peer_len = l[1], s += l[1];
  a->case_id = s, a->case_id_len = l[2], s += l[2];
  a->method = s, a->method_len = l[3], s += l[3];
  a->target = s, a->target_len = l[4], s += l[4];
  a->prev = (const uint8_t *)s;
  a->hash = (const uint8_t *)s + 32;
  return 0;
}

static uint16_t cut(const char *s, size_t max) {
  size_t n = s ? strnlen(s, max) : 0;
  return (uint16_t)n;
}

/* Adds seq under case_id (len bytes) to audit_case. An LMDB code. */
static int index_put(MDB_txn *txn, gd_store *s, const char *case_id, size_t len, uint64_t seq) {
  uint8_t sb[8];
  MDB_val k = {len, (void *)case_id}, v = {8, sb};
  gd_be64_put(sb, seq);
  return mdb_put(txn, s->audit_case, &k, &v, 0);
}

int gd__audit_index_build(MDB_txn *txn, gd_store *s) {
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->audit, &cur);
  if (rc)
    return rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    gd_audit_view a;
    if (parse(v.mv_data, v.mv_size, &a) != 0)
      continue; /* tampered: VerifyAudit names it; the index cannot */
    if (a.case_id_len && (rc = index_put(txn, s, a.case_id, a.case_id_len, a.seq)))
      break;
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

int gd_store_audit_append(gd_wtxn *t, const gd_audit_in *in, uint64_t *ret_seq, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t prev[32] = {0}, kb[8];
  uint64_t seq = 1;
  int rc = mdb_cursor_open(t->txn, t->s->audit, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "audit cursor");
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  if (rc == MDB_SUCCESS) {
    gd_audit_view last;
    if (parse(v.mv_data, v.mv_size, &last) != 0) {
      mdb_cursor_close(cur);
      return gd_err_set(err, GD_EINTERNAL, "audit: the last record does not parse");
    }
    seq = last.seq + 1;
    memcpy(prev, last.hash, 32);
  } else if (rc != MDB_NOTFOUND) {
    mdb_cursor_close(cur);
    return gd__mdb_err(rc, err, "audit tip");
  }
  const char *str[5] = {in->principal, in->peer, in->case_id, in->method, in->target};
  uint16_t len[5];
  size_t sum = 0;
  for (int i = 0; i < 5; i++)
    sum += len[i] = cut(str[i], i == 4 ? GD_AUDIT_TARGET_MAX : GD_AUDIT_FIELD_MAX);
  gd__id_key(seq, kb, &k);
  v.mv_size = FIXED + sum;
  v.mv_data = NULL;
  if ((rc = mdb_cursor_put(cur, &k, &v, MDB_RESERVE | MDB_APPEND))) {
    mdb_cursor_close(cur);
    return gd__mdb_err(rc, err, "audit record");
  }
  uint8_t *p = v.mv_data;
  memset(p, 0, HDR);
  gd_le64_put(p, seq);
  gd_le64_put(p + 8, (uint64_t)in->time_ms);
  uint32_t st = (uint32_t)in->status;
  p[16] = (uint8_t)st, p[17] = (uint8_t)(st >> 8), p[18] = (uint8_t)(st >> 16),
  p[19] = (uint8_t)(st >> 24);
  p[20] = in->role;
  uint8_t *q = p + HDR + 10;
  for (int i = 0; i < 5; i++) {
    put16(p + HDR + 2 * i, len[i]);
    if (len[i])
      memcpy(q, str[i], len[i]);
    q += len[i];
  }
  memcpy(q, prev, 32);
  SHA256(p, (size_t)(q + 32 - p), q + 32);
  mdb_cursor_close(cur);
  if (len[2] && (rc = index_put(t->txn, t->s, str[2], len[2], seq)))
    return gd__mdb_err(rc, err, "audit case index");
  if (ret_seq)
    *ret_seq = seq;
  return GD_OK;
}

int gd_store_audit_visit(gd_rtxn *r, uint64_t after, gd_audit_fn fn, void *ctx, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t kb[8];
  int rc = mdb_cursor_open(r->txn, r->s->audit, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "audit cursor");
  if (after == UINT64_MAX) {
    mdb_cursor_close(cur);
    return GD_OK;
  }
  gd__id_key(after + 1, kb, &k);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    gd_audit_view a;
    if (parse(v.mv_data, v.mv_size, &a) != 0) {
      mdb_cursor_close(cur);
      return gd_err_set(err, GD_EINTERNAL, "audit record %llu does not parse",
                        (unsigned long long)gd_be64_get(k.mv_data));
    }
    if (fn(ctx, &a))
      break;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "audit records");
  return GD_OK;
}

/* Without the index (not built yet): the whole trail, filtered. */
typedef struct case_scan {
  const char *case_id;
  size_t len;
  gd_audit_fn fn;
  void *ctx;
} case_scan;

static int case_scan_one(void *ctx, const gd_audit_view *a) {
  case_scan *cs = ctx;
  if (a->case_id_len != cs->len || memcmp(a->case_id, cs->case_id, cs->len) != 0)
    return 0;
  return cs->fn(cs->ctx, a);
}

int gd_store_audit_visit_case(gd_rtxn *r, const char *case_id, size_t len, uint64_t after,
                              gd_audit_fn fn, void *ctx, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k = {len, (void *)case_id}, v;
  uint8_t sb[8], kb[8];
  uint64_t built = 0;
  if (len == 0 || len > GD_AUDIT_FIELD_MAX)
    return gd_err_set(err, GD_EINVALID, "case_id: 1 to %d bytes, not %zu", GD_AUDIT_FIELD_MAX,
                      len);
  if (after == UINT64_MAX)
    return GD_OK;
  int rc = gd__meta_u64(r->txn, r->s, "audit_case.built", &built);
  if (rc)
    return gd__mdb_err(rc, err, "meta audit_case.built");
  if (!built) {
    case_scan cs = {case_id, len, fn, ctx};
    return gd_store_audit_visit(r, after, case_scan_one, &cs, err);
  }
  rc = mdb_cursor_open(r->txn, r->s->audit_case, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "audit case index");
  gd_be64_put(sb, after + 1);
  v = (MDB_val){8, sb};
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
    uint64_t seq = gd_be64_get(v.mv_data);
    MDB_val rk, rv;
    gd_audit_view a;
    gd__id_key(seq, kb, &rk);
    int grc = mdb_get(r->txn, r->s->audit, &rk, &rv);
    if (grc == MDB_NOTFOUND || (grc == MDB_SUCCESS && parse(rv.mv_data, rv.mv_size, &a) != 0)) {
      mdb_cursor_close(cur);
      return gd_err_set(err, GD_EINTERNAL, "audit record %llu: %s", (unsigned long long)seq,
                        grc ? "missing, but indexed" : "does not parse");
    }
    if (grc) {
      rc = grc;
      break;
    }
    if (fn(ctx, &a))
      break;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "audit case index");
  return GD_OK;
}

int gd_store_audit_last(gd_rtxn *r, gd_audit_view *ret, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = mdb_cursor_open(r->txn, r->s->audit, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "audit cursor");
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    return gd_err_set(err, GD_ENOTFOUND, "the audit trail is empty");
  if (rc)
    return gd__mdb_err(rc, err, "audit tip");
  if (parse(v.mv_data, v.mv_size, ret) != 0)
    return gd_err_set(err, GD_EINTERNAL, "audit: the last record does not parse");
  return GD_OK;
}

int gd_store_audit_verify(gd_rtxn *r, uint64_t *ret_n, uint64_t *ret_bad_seq, char *why,
                          size_t why_size, gd_err *err) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t prev[32] = {0}, h[32];
  uint64_t n = 0, expect = 1;
  *ret_bad_seq = 0;
  if (why && why_size)
    why[0] = 0;
  int rc = mdb_cursor_open(r->txn, r->s->audit, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "audit cursor");
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), expect++) {
    uint64_t key = k.mv_size == 8 ? gd_be64_get(k.mv_data) : 0;
    gd_audit_view a;
    const char *bad = NULL;
    if (key != expect)
      bad = "a record is missing before it (sequence gap)";
    else if (parse(v.mv_data, v.mv_size, &a) != 0)
      bad = "it does not parse";
    else if (a.seq != key)
      bad = "its seq differs from its key";
    else if (memcmp(a.prev, prev, 32) != 0)
      bad = "its prev does not match the previous record's hash";
    else {
      SHA256(v.mv_data, v.mv_size - 32, h);
      if (memcmp(h, a.hash, 32) != 0)
        bad = "its hash does not match its contents";
    }
    if (bad) {
      *ret_bad_seq = key ? key : expect;
      if (why && why_size)
        snprintf(why, why_size, "audit record %llu: %s", (unsigned long long)*ret_bad_seq, bad);
      break;
    }
    memcpy(prev, a.hash, 32);
    n++;
  }
  mdb_cursor_close(cur);
  *ret_n = n;
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return gd__mdb_err(rc, err, "audit records");
  return GD_OK;
}
