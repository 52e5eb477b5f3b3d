/*
 * A compact weighted undirected graph in CSR form (compressed sparse rows).
 *
 * Row v lists v's neighbours in ascending order with the weight of each
 * tie; every undirected edge {u, v} is stored twice, once in each row, with
 * bit-for-bit the same weight. No self-loops, no parallel edges. This is
 * the one graph type algorithms/ passes around: the projection produces it,
 * the igraph bridge converts it, the community wrappers read it.
 *
 * Memory: 8 (n + 1) + 32 m bytes for n vertices and m edges (an int64
 * neighbour and a double weight per stored half-edge).
 */
#ifndef GD_ALGORITHMS_CSR_H
#define GD_ALGORITHMS_CSR_H

#include <stdint.h>

#include "alg_common.h"

typedef struct gd_csr {
  int64_t n;    /* vertices, numbered 0..n-1 */
  int64_t m;    /* undirected edges; off[n] == 2 m */
  int64_t *off; /* n + 1 row starts into nbr and w */
  int64_t *nbr; /* 2 m neighbours, ascending within each row */
  double *w;    /* 2 m weights; w of (u, v) == w of (v, u) */
} gd_csr;

/*
 * Builds the CSR of n vertices from the edge list (u[i], v[i], w[i]),
 * i < n_edges. w may be NULL (every weight 1). Self-loops (u == v) are
 * dropped; duplicate edges, in either orientation, become one edge whose
 * weight is the sum of theirs, summed in input order (so the result is
 * deterministic and both halves of an edge are equal). Weights must be
 * finite and >= 0; zero-weight edges are kept.
 *
 * On success *ret holds the graph (free it with gd_csr_free); on failure
 * *ret is untouched.
 *
 * Time O(n + n_edges): two stable counting-sort passes (by neighbour,
 * then by row) leave every row sorted, and one pass merges duplicates; no
 * comparison sort. Extra memory O(n + n_edges), about 64 bytes per input
 * edge at the peak.
 *
 * Errors: INVALID (n < 0, n_edges < 0, a vertex outside [0, n), a negative
 * or non-finite weight; the message names the edge), NOMEM.
 */
gd_alg_status gd_csr_from_edges(int64_t n, int64_t n_edges, const int64_t *u, const int64_t *v,
                                const double *w, gd_csr *ret, gd_alg_error *err);

/* Frees g's arrays and resets it to the empty graph. NULL-safe. */
void gd_csr_free(gd_csr *g);

/* Number of neighbours of v. O(1). */
static inline int64_t gd_csr_degree(const gd_csr *g, int64_t v) {
  return g->off[v + 1] - g->off[v];
}

/* Sum of the weights of v's edges (its strength). O(degree). */
double gd_csr_strength(const gd_csr *g, int64_t v);

/* Sum of all edge weights, each edge counted once. O(m). */
double gd_csr_total_weight(const gd_csr *g);

/*
 * Weight of the edge {u, v}, or 0 if there is none. O(log degree(u))
 * (binary search in u's sorted row).
 */
double gd_csr_edge_weight(const gd_csr *g, int64_t u, int64_t v);

#endif
