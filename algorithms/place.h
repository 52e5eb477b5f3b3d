/*
 * Provisional placement: where one vertex goes in a fixed partition, by
 * the partition's own objective (one local move of Leiden's or Louvain's
 * first phase, made for a single vertex against a partition computed
 * earlier).
 *
 * The caller knows, for each cluster the vertex is tied to, the vertex's
 * summed tie weight to its members, its strongest single tie, the
 * cluster's size and its volume (summed weighted degree), all without the
 * vertex itself. gd_place_best picks the cluster with the best gain, or
 * none (the vertex stays on its own) when no gain is positive:
 *
 *   LEIDEN_CPM              tie - gamma * size
 *                           (CPM with unit node weights: joining c changes
 *                           W_c - gamma n_c^2 / 2 by exactly this)
 *   LEIDEN_MODULARITY,      tie - resolution * k * volume / (2 W)
 *   LOUVAIN                 (k the vertex's weighted degree, W the graph's
 *                           total tie weight; the change of modularity
 *                           times W)
 *   COMPONENTS              max_tie if max_tie >= threshold (a tie that
 *                           strong joins the component), else nothing
 *   LABEL_PROPAGATION,      tie (the label with the most weight among the
 *   INFOMAP                 neighbours; for Infomap an approximation: the
 *                           map equation's move gain needs flows the
 *                           snapshot does not keep)
 *
 * Ties between equal gains go to the candidate given first. No LMDB, no
 * igraph: plain numbers. O(n).
 */
#ifndef GD_ALGORITHMS_PLACE_H
#define GD_ALGORITHMS_PLACE_H

#include <stddef.h>

#include "community.h"

typedef struct gd_place_cand {
  double tie;     /* summed ties of the vertex to the cluster (> 0) */
  double max_tie; /* its strongest single tie to a member */
  double size;    /* members, without the vertex */
  double volume;  /* summed weighted degree of the members, without the vertex */
} gd_place_cand;

typedef struct gd_place_params {
  gd_comm_algo algo;
  double resolution;   /* CPM gamma; modularity resolution */
  double threshold;    /* components */
  double total_weight; /* modularity: W, every tie counted once */
  double degree;       /* modularity: the vertex's weighted degree k */
} gd_place_params;

/*
 * The index of the best candidate of c[0..n), or -1 when the vertex is
 * best on its own (or n is 0, or the objective is undefined: modularity
 * with W 0). *ret_gain (may be NULL) gets the best gain (0 for -1).
 */
long gd_place_best(const gd_place_params *p, const gd_place_cand *c, size_t n,
                   double *ret_gain);

#endif
