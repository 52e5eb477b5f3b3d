/* Cluster summary codec; the format is described in snapfmt.h. */
#include "worker/snapfmt.h"

#include <stdbool.h>
#include <string.h>

#include "core/util.h"



void gd_order_row(int order, uint64_t id, uint64_t size, double risk, uint8_t *row) {
  uint64_t rb;
  memcpy(&rb, &risk, 8);
  bool by_size = order == GD_ORDER_SIZE;
  gd_be64_put(row, ~(by_size ? size : rb));
  gd_be64_put(row + 8, ~(by_size ? rb : size));
  gd_be64_put(row + 16, id);
}

void gd_order_row_decode(int order, const uint8_t *row, uint64_t *ret_id, uint64_t *ret_size) {
  *ret_id = gd_be64_get(row + 16);
  *ret_size = ~gd_be64_get(row + (order == GD_ORDER_SIZE ? 0 : 8));
}

double gd_summary_risk(uint64_t flagged, uint64_t size, double base_rate) {
  return ((double)flagged + GD_RISK_PRIOR * base_rate) / ((double)size + GD_RISK_PRIOR);
}

double gd_summary_score(uint64_t users, uint64_t total) {
  if (total < users)
    total = users;
  return total ? (double)users * (double)users / (double)total : 0.0;
}

size_t gd_summary_encode(const gd_cluster_summary *s, uint8_t *buf) {
  int k = s->n_top < 0 ? 0 : s->n_top > GD_SUMMARY_TOP ? GD_SUMMARY_TOP : s->n_top;
  memset(buf, 0, GD_SUMMARY_HDR);
  buf[0] = GD_SUMMARY_FORMAT;
  buf[1] = (uint8_t)k;
  buf[2] = s->links_kept ? GD_SUMMARY_LINKS : 0;
  gd_le64_put(buf + 8, s->size);
  gd_le64_put(buf + 16, s->flagged);
  gd_lef64_put(buf + 24, s->risk);
  gd_lef64_put(buf + 32, s->cohesion);
  gd_lef64_put(buf + 40, s->internal);
  gd_lef64_put(buf + 48, s->boundary);
  uint8_t *p = buf + GD_SUMMARY_HDR;
  for (int i = 0; i < k; i++, p += GD_SUMMARY_ENTITY) {
    gd_le64_put(p, ((uint64_t)(s->top[i].type & 0xff) << 56) | (s->top[i].id & ((UINT64_C(1) << 56) - 1)));
    gd_le64_put(p + 8, s->top[i].users);
    gd_le64_put(p + 16, s->top[i].total);
  }
  return GD_SUMMARY_HDR + (size_t)k * GD_SUMMARY_ENTITY;
}

int gd_summary_decode(const void *raw, size_t len, gd_cluster_summary *ret, gd_err *err) {
  const uint8_t *b = raw;
  if (len < GD_SUMMARY_HDR)
    return gd_err_set(err, GD_EINTERNAL, "cluster summary: %zu bytes is too short", len);
  if (b[0] != GD_SUMMARY_FORMAT)
    return gd_err_set(err, GD_EINTERNAL, "cluster summary: unknown format %u", b[0]);
  int k = b[1];
  if (k > GD_SUMMARY_TOP || len < GD_SUMMARY_HDR + (size_t)k * GD_SUMMARY_ENTITY)
    return gd_err_set(err, GD_EINTERNAL, "cluster summary: bad entity count %d", k);
  memset(ret, 0, sizeof *ret);
  ret->size = gd_le64_get(b + 8);
  ret->flagged = gd_le64_get(b + 16);
  ret->links_kept = b[2] & GD_SUMMARY_LINKS;
  ret->risk = gd_lef64_get(b + 24);
  ret->cohesion = gd_lef64_get(b + 32);
  ret->internal = gd_lef64_get(b + 40);
  ret->boundary = gd_lef64_get(b + 48);
  ret->n_top = k;
  const uint8_t *p = b + GD_SUMMARY_HDR;
  for (int i = 0; i < k; i++, p += GD_SUMMARY_ENTITY) {
    uint64_t pos = gd_le64_get(p);
    ret->top[i].type = (int)(pos >> 56);
    ret->top[i].id = pos & ((UINT64_C(1) << 56) - 1);
    ret->top[i].users = gd_le64_get(p + 8);
    ret->top[i].total = gd_le64_get(p + 16);
  }
  return GD_OK;
}
