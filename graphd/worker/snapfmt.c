/* Cluster summary codec; the format is described in snapfmt.h. */
#include "worker/snapfmt.h"

#include <stdbool.h>
#include <string.h>

static void wr64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}
static void wrf(uint8_t *p, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  wr64(p, v);
}
static double rdf(const uint8_t *p) {
  uint64_t v = rd64(p);
  double d;
  memcpy(&d, &v, 8);
  return d;
}

static void wrbe(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint64_t rdbe(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

void gd_order_row(int order, uint64_t id, uint64_t size, double risk, uint8_t *row) {
  uint64_t rb;
  memcpy(&rb, &risk, 8);
  bool by_size = order == GD_ORDER_SIZE;
  wrbe(row, ~(by_size ? size : rb));
  wrbe(row + 8, ~(by_size ? rb : size));
  wrbe(row + 16, id);
}

void gd_order_row_decode(int order, const uint8_t *row, uint64_t *ret_id, uint64_t *ret_size) {
  *ret_id = rdbe(row + 16);
  *ret_size = ~rdbe(row + (order == GD_ORDER_SIZE ? 0 : 8));
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
  wr64(buf + 8, s->size);
  wr64(buf + 16, s->flagged);
  wrf(buf + 24, s->risk);
  wrf(buf + 32, s->cohesion);
  wrf(buf + 40, s->internal);
  wrf(buf + 48, s->boundary);
  uint8_t *p = buf + GD_SUMMARY_HDR;
  for (int i = 0; i < k; i++, p += GD_SUMMARY_ENTITY) {
    wr64(p, ((uint64_t)(s->top[i].type & 0xff) << 56) | (s->top[i].id & ((UINT64_C(1) << 56) - 1)));
    wr64(p + 8, s->top[i].users);
    wr64(p + 16, s->top[i].total);
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
  ret->size = rd64(b + 8);
  ret->flagged = rd64(b + 16);
  ret->links_kept = b[2] & GD_SUMMARY_LINKS;
  ret->risk = rdf(b + 24);
  ret->cohesion = rdf(b + 32);
  ret->internal = rdf(b + 40);
  ret->boundary = rdf(b + 48);
  ret->n_top = k;
  const uint8_t *p = b + GD_SUMMARY_HDR;
  for (int i = 0; i < k; i++, p += GD_SUMMARY_ENTITY) {
    uint64_t pos = rd64(p);
    ret->top[i].type = (int)(pos >> 56);
    ret->top[i].id = pos & ((UINT64_C(1) << 56) - 1);
    ret->top[i].users = rd64(p + 8);
    ret->top[i].total = rd64(p + 16);
  }
  return GD_OK;
}
