#include "csr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* malloc of count elements of size bytes, never asked for 0 bytes, with an
 * overflow check. */
static void *alloc_n(int64_t count, size_t size) {
  if (count < 0 || (uint64_t)count > SIZE_MAX / size)
    return NULL;
  return malloc((size_t)(count ? count : 1) * size);
}

void gd_csr_free(gd_csr *g) {
  if (!g)
    return;
  free(g->off);
  free(g->nbr);
  free(g->w);
  memset(g, 0, sizeof *g);
}

gd_alg_status gd_csr_from_edges(int64_t n, int64_t n_edges, const int64_t *u, const int64_t *v,
                                const double *w, gd_csr *ret, gd_alg_error *err) {
  if (n < 0 || n_edges < 0 || (n_edges > 0 && (!u || !v)) || !ret)
    return gd_alg_error_set(err, GD_ALG_INVALID, "csr: bad arguments (n = %lld, edges = %lld)",
                            (long long)n, (long long)n_edges);
  if (n_edges > INT64_MAX / 4)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "csr: %lld edges", (long long)n_edges);

  /* Validate and count half-edges per vertex. A vertex has as many
   * half-edges pointing to it as leaving it, so one count serves both
   * passes. */
  int64_t *cnt = calloc((size_t)n + 1, sizeof *cnt);
  if (!cnt)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "csr: %lld vertices", (long long)n);
  int64_t halves = 0;
  for (int64_t i = 0; i < n_edges; i++) {
    if (u[i] < 0 || u[i] >= n || v[i] < 0 || v[i] >= n) {
      free(cnt);
      return gd_alg_error_set(err, GD_ALG_INVALID,
                              "csr: edges[%lld] = (%lld, %lld): vertex outside [0, %lld)",
                              (long long)i, (long long)u[i], (long long)v[i], (long long)n);
    }
    if (w && (!isfinite(w[i]) || w[i] < 0)) {
      free(cnt);
      return gd_alg_error_set(err, GD_ALG_INVALID,
                              "csr: edges[%lld]: weight %g is negative or not finite",
                              (long long)i, w[i]);
    }
    if (u[i] == v[i])
      continue;
    cnt[u[i] + 1]++;
    cnt[v[i] + 1]++;
    halves += 2;
  }
  for (int64_t x = 0; x < n; x++)
    cnt[x + 1] += cnt[x]; /* cnt[x] = first slot of vertex x */

  int64_t *fill = alloc_n(n, sizeof *fill);
  int64_t *tsrc = alloc_n(halves, sizeof *tsrc);
  double *tw = alloc_n(halves, sizeof *tw);
  int64_t *nbr = alloc_n(halves, sizeof *nbr);
  double *wt = alloc_n(halves, sizeof *wt);
  if (!fill || !tsrc || !tw || !nbr || !wt) {
    free(cnt), free(fill), free(tsrc), free(tw), free(nbr), free(wt);
    return gd_alg_error_set(err, GD_ALG_NOMEM, "csr: %lld edges", (long long)n_edges);
  }

  /* Pass 1: half-edges bucketed by their target, in input order. */
  memcpy(fill, cnt, (size_t)n * sizeof *fill);
  for (int64_t i = 0; i < n_edges; i++) {
    int64_t a = u[i], b = v[i];
    if (a == b)
      continue;
    double x = w ? w[i] : 1.0;
    int64_t p = fill[b]++;
    tsrc[p] = a, tw[p] = x;
    p = fill[a]++;
    tsrc[p] = b, tw[p] = x;
  }
  /* Pass 2: stable scatter into rows by source. Targets are visited in
   * ascending order, so every row comes out sorted, with the copies of a
   * duplicate edge adjacent and in input order. */
  memcpy(fill, cnt, (size_t)n * sizeof *fill);
  for (int64_t t = 0; t < n; t++) {
    for (int64_t p = cnt[t]; p < cnt[t + 1]; p++) {
      int64_t q = fill[tsrc[p]]++;
      nbr[q] = t, wt[q] = tw[p];
    }
  }
  free(tsrc);
  free(tw);
  free(fill);

  /* Merge duplicates in place. Row u sums the copies of {u, v} in input
   * order and so does row v, so both halves get the same double. */
  int64_t out = 0, start = 0;
  for (int64_t x = 0; x < n; x++) {
    int64_t end = cnt[x + 1];
    cnt[x] = out;
    for (int64_t p = start; p < end;) {
      int64_t y = nbr[p];
      double s = 0.0;
      for (; p < end && nbr[p] == y; p++)
        s += wt[p];
      nbr[out] = y, wt[out] = s;
      out++;
    }
    start = end;
  }
  cnt[n] = out;

  if (out < halves) { /* shrink; a failed shrink keeps the larger block */
    int64_t *nn = realloc(nbr, (size_t)(out ? out : 1) * sizeof *nn);
    if (nn)
      nbr = nn;
    double *nw = realloc(wt, (size_t)(out ? out : 1) * sizeof *nw);
    if (nw)
      wt = nw;
  }
  ret->n = n;
  ret->m = out / 2;
  ret->off = cnt;
  ret->nbr = nbr;
  ret->w = wt;
  return GD_ALG_OK;
}

double gd_csr_strength(const gd_csr *g, int64_t v) {
  double s = 0.0;
  for (int64_t p = g->off[v]; p < g->off[v + 1]; p++)
    s += g->w[p];
  return s;
}

double gd_csr_total_weight(const gd_csr *g) {
  double s = 0.0;
  for (int64_t x = 0; x < g->n; x++)
    for (int64_t p = g->off[x]; p < g->off[x + 1]; p++)
      if (g->nbr[p] > x)
        s += g->w[p];
  return s;
}

double gd_csr_edge_weight(const gd_csr *g, int64_t u, int64_t v) {
  if (u < 0 || u >= g->n)
    return 0.0;
  int64_t lo = g->off[u], hi = g->off[u + 1];
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (g->nbr[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < g->off[u + 1] && g->nbr[lo] == v ? g->w[lo] : 0.0;
}
