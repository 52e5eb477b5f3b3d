/*
 * Entity records (`entity` table values).
 *
 *   off  size
 *    0    1   type
 *    1    1   record version (1)
 *    2    2   key length
 *    4    2   number of attributes
 *    6    2   number of labels
 *    8    8   first seen (i64)
 *   16    8   last seen (i64)
 *   24    8   degree (u64)
 *   32    8   seller count (u64)
 *   40    4   bytes of the attribute region
 *   44    4   bytes of the label region
 *   48        key, then attributes (u16 name length, u16 value length,
 *             name, value), sorted by name; then labels (u16 length,
 *             bytes), sorted.
 *
 * Integers are little-endian (host order on every platform we build for);
 * only keys need big-endian order. Records are decoded with memcpy because
 * LMDB values are not aligned.
 */
#include <stdlib.h>

#include "store/store_int.h"

#define REC_VERSION 1

static inline uint16_t rd16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
static inline uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int gd__rec_decode(const void *raw, size_t len, uint64_t id, gd_entity_view *e) {
  const uint8_t *p = raw;
  if (len < GD__REC_HDR || p[1] != REC_VERSION)
    return GD_EINTERNAL;
  size_t keylen = rd16(p + 2), abytes = rd32(p + 40), lbytes = rd32(p + 44);
  if (GD__REC_HDR + keylen + abytes + lbytes != len)
    return GD_EINTERNAL;
  e->id = id;
  e->type = p[0];
  e->nattrs = rd16(p + 4);
  e->nlabels = rd16(p + 6);
  e->first_seen = (int64_t)rd64(p + 8);
  e->last_seen = (int64_t)rd64(p + 16);
  e->degree = rd64(p + 24);
  e->seller_count = rd64(p + 32);
  e->key = (gd_str){(const char *)p + GD__REC_HDR, keylen};
  e->attrs_raw = p + GD__REC_HDR + keylen;
  e->labels_raw = e->attrs_raw + abytes;

  /* Validate the variable regions once so the accessors need no checks. */
  const uint8_t *q = e->attrs_raw, *end = e->labels_raw;
  for (size_t i = 0; i < e->nattrs; i++) {
    if (end - q < 4)
      return GD_EINTERNAL;
    size_t n = (size_t)rd16(q) + rd16(q + 2);
    if ((size_t)(end - q - 4) < n)
      return GD_EINTERNAL;
    q += 4 + n;
  }
  if (q != end)
    return GD_EINTERNAL;
  end = p + len;
  for (size_t i = 0; i < e->nlabels; i++) {
    if (end - q < 2 || (size_t)(end - q - 2) < rd16(q))
      return GD_EINTERNAL;
    q += 2 + rd16(q);
  }
  return q == end ? GD_OK : GD_EINTERNAL;
}

void gd_entity_attr(const gd_entity_view *e, size_t i, gd_str *ret_name, gd_str *ret_value) {
  const uint8_t *q = e->attrs_raw;
  while (i--)
    q += 4 + rd16(q) + rd16(q + 2);
  *ret_name = (gd_str){(const char *)q + 4, rd16(q)};
  *ret_value = (gd_str){(const char *)q + 4 + rd16(q), rd16(q + 2)};
}

gd_str gd_entity_label(const gd_entity_view *e, size_t i) {
  const uint8_t *q = e->labels_raw;
  while (i--)
    q += 2 + rd16(q);
  return (gd_str){(const char *)q + 2, rd16(q)};
}

uint8_t *gd__rec_encode(const gd_entity_view *e, const gd_str *names, const gd_str *values,
                        const gd_str *labels, gd_arena **a, size_t *ret_len) {
  size_t abytes = 0, lbytes = 0;
  for (size_t i = 0; i < e->nattrs; i++)
    abytes += 4 + names[i].n + values[i].n;
  for (size_t i = 0; i < e->nlabels; i++)
    lbytes += 2 + labels[i].n;
  size_t len = GD__REC_HDR + e->key.n + abytes + lbytes;
  uint8_t *p = a ? gd_arena_alloc(a, len) : malloc(len), *q;
  if (!p)
    return NULL;
  memset(p, 0, GD__REC_HDR);
  p[0] = (uint8_t)e->type;
  p[1] = REC_VERSION;
  wr16(p + 2, (uint16_t)e->key.n);
  wr16(p + 4, (uint16_t)e->nattrs);
  wr16(p + 6, (uint16_t)e->nlabels);
  wr32(p + 40, (uint32_t)abytes);
  wr32(p + 44, (uint32_t)lbytes);
  gd__rec_patch(p, e->first_seen, e->last_seen, e->degree, e->seller_count);
  q = p + GD__REC_HDR;
  memcpy(q, e->key.p, e->key.n);
  q += e->key.n;
  for (size_t i = 0; i < e->nattrs; i++) {
    wr16(q, (uint16_t)names[i].n);
    wr16(q + 2, (uint16_t)values[i].n);
    memcpy(q + 4, names[i].p, names[i].n);
    if (values[i].n)
      memcpy(q + 4 + names[i].n, values[i].p, values[i].n);
    q += 4 + names[i].n + values[i].n;
  }
  for (size_t i = 0; i < e->nlabels; i++) {
    wr16(q, (uint16_t)labels[i].n);
    memcpy(q + 2, labels[i].p, labels[i].n);
    q += 2 + labels[i].n;
  }
  *ret_len = len;
  return p;
}

void gd__rec_patch(uint8_t *rec, int64_t first, int64_t last, uint64_t degree,
                   uint64_t seller_count) {
  wr64(rec + 8, (uint64_t)first);
  wr64(rec + 16, (uint64_t)last);
  wr64(rec + 24, degree);
  wr64(rec + 32, seller_count);
}

void gd__adj_row_decode(const void *raw, gd_link *ret) {
  gd__adj_row r;
  memcpy(&r, raw, sizeof r);
  uint64_t prefix = gd_be64_get(r.prefix);
  ret->nbr_type = (int)(prefix >> 56);
  ret->nbr = prefix & ((UINT64_C(1) << 56) - 1);
  ret->count = r.count;
  ret->first_seen = r.first_seen;
  ret->last_seen = r.last_seen;
}
