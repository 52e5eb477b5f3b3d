/*
 * Community detection on the seller-seller evidence graph (the projection:
 * projection.h; the evidence rule: evidence.h).
 *
 * Every wrapper takes a gd_csr, its parameters and a gd_alg_ctl (seed,
 * cancel flag), and fills a gd_comm_result: one cluster index per vertex,
 * canonical (clusters numbered 0..k-1 in order of first appearance, so
 * equal partitions give equal arrays), plus the algorithm's own objective
 * and the modularity of the result. The same graph, parameters and seed
 * give the same bytes.
 *
 * igraph does the work, through igraph_bridge.h (one conversion of the
 * graph per call, O(n + m)); connected components are computed here.
 * Vertices without an edge never reach igraph (but for Infomap): they are
 * singletons under every objective here, and igraph would pay for each on
 * every iteration. They come back as singletons, counted in n_clusters and
 * in CPM's quality; the other vertices' result is what igraph gives for
 * the graph without them, seed for seed.
 * Edge weights must be >= 0 (a gd_csr guarantees it). Complexities are
 * for n vertices and m edges.
 */
#ifndef GD_ALGORITHMS_COMMUNITY_H
#define GD_ALGORITHMS_COMMUNITY_H

#include <stdint.h>

#include "alg_common.h"
#include "csr.h"

typedef enum gd_comm_algo {
  GD_COMM_LEIDEN_CPM,        /* the default */
  GD_COMM_LEIDEN_MODULARITY,
  GD_COMM_LOUVAIN,
  GD_COMM_LABEL_PROPAGATION,
  GD_COMM_COMPONENTS,
  GD_COMM_INFOMAP,
  GD_COMM__COUNT
} gd_comm_algo;

/* Leiden's "until stable" (iterations < 0) stops after at most this many
 * iterations. */
#define GD_COMM_MAX_ITERATIONS 100

typedef struct gd_comm_params {
  gd_comm_algo algo;
  /* LEIDEN_CPM: the CPM resolution gamma, in tie-weight units.
   * LEIDEN_MODULARITY, LOUVAIN: modularity resolution (1 = standard). */
  double resolution;
  /* Leiden: randomness of the refinement step (> 0). */
  double beta;
  /* Leiden: > 0 iterations, or < 0 until an iteration changes nothing (at
   * most GD_COMM_MAX_ITERATIONS). INFOMAP: number of trials (> 0). */
  int64_t iterations;
  /* COMPONENTS: edges lighter than this are ignored. */
  double threshold;
  /* Leiden: start partition (n labels; a negative label puts the vertex in
   * a singleton of its own, e.g. a seller new since the last snapshot), or
   * NULL to start from singletons. Not owned. */
  const int64_t *initial;
} gd_comm_params;

typedef struct gd_comm_result {
  int64_t n;           /* vertices */
  int64_t *membership; /* n canonical cluster indices; malloc'd, see gd_comm_result_free */
  int64_t n_clusters;
  /* The algorithm's objective for the result: Leiden igraph's quality
   * (CPM or modularity, see below), Louvain the modularity at its
   * resolution, Infomap the code length (bits), NaN for label propagation
   * and components. */
  double quality;
  /* Modularity (resolution 1, weighted) of the result, by
   * igraph_modularity; NaN if the graph has no edge weight. */
  double modularity;
  int64_t iterations; /* Leiden: iterations run; else 0 */
  int64_t warnings;   /* igraph warnings during the call */
} gd_comm_result;

/*
 * Defaults for algo, chosen from what the weights mean rather than tuned on
 * a data set (most users never change them):
 *
 * - LEIDEN_CPM resolution 0.1. Under CPM (node weights 1) a seller joins
 *   a cluster only if its summed ties to it exceed gamma times the
 *   cluster's size, i.e. its mean tie to the members is > gamma; a
 *   cluster's members are on average tied more strongly than gamma. With
 *   the default evidence weights (w(type) / log2(1 + n_e)), 0.1 is the
 *   tie of two sellers sharing one address used by ~255 sellers or one IP
 *   used by ~31: a ring sharing a 90-seller warehouse (0.12) or any rarer
 *   personal identifier holds together, a 300-seller logistics address
 *   alone (0.097) does not, and an honest seller whose only ties are weak
 *   stays a singleton.
 * - beta 0.01 (Traag et al.'s and igraph's value); iterations -1 (until
 *   stable: reproducible and at a local optimum, at the cost of one extra
 *   confirming iteration).
 * - LEIDEN_MODULARITY, LOUVAIN resolution 1 (standard modularity).
 * - COMPONENTS threshold 0.5: a direct link (1.0), one personal identifier
 *   shared by <= 3 sellers (r(3) = 0.5), or several weaker shared
 *   entities summed.
 * - INFOMAP 10 trials (python-igraph's default).
 */
void gd_comm_defaults(gd_comm_algo algo, gd_comm_params *ret);

/* Stable names for manifests and options: "leiden-cpm",
 * "leiden-modularity", "louvain", "label-propagation", "components",
 * "infomap". gd_comm_algo_from_name returns 0 and sets *ret, or -1. */
const char *gd_comm_algo_name(gd_comm_algo algo);
int gd_comm_algo_from_name(const char *name, gd_comm_algo *ret);

/* Runs p->algo with p's parameters (dispatches to the wrappers below). */
gd_alg_status gd_comm_run(const gd_csr *g, const gd_comm_params *p, const gd_alg_ctl *ctl,
                          gd_comm_result *ret, gd_alg_error *err);

/* Frees r->membership and resets r. NULL-safe. */
void gd_comm_result_free(gd_comm_result *r);

/*
 * Leiden with the Constant Potts Model: maximises
 *   sum over clusters c of ( W_c - gamma * n_c^2 / 2 ),
 * W_c the weight inside c, n_c its size (igraph_community_leiden with NULL
 * node weights; igraph reports quality = (2 sum W_c - gamma sum n_c^2) /
 * (2 W), W the total weight). Unlike modularity, CPM has no resolution
 * limit and leaves weakly tied vertices alone.
 *
 * Paper: V. A. Traag, L. Waltman, N. J. van Eck, "From Louvain to Leiden:
 * guaranteeing well-connected communities", Scientific Reports 9, 5233
 * (2019). CPM: Traag, Van Dooren, Nesterov, Phys. Rev. E 84, 016114 (2011).
 *
 * Time: O(m) per local-moving sweep; an iteration is a few sweeps over
 * shrinking aggregate graphs, near-linear in m in practice; total
 * O(iterations * m) in practice. Memory O(n + m) beyond the graph.
 *
 * resolution >= 0 and finite; beta > 0; iterations != 0 (see
 * gd_comm_params); initial may be NULL. Errors: INVALID, NOMEM,
 * INTERRUPTED, FAILED.
 */
gd_alg_status gd_comm_leiden_cpm(const gd_csr *g, double resolution, double beta,
                                 int64_t iterations, const int64_t *initial,
                                 const gd_alg_ctl *ctl, gd_comm_result *ret, gd_alg_error *err);

/*
 * Leiden maximising modularity: igraph_community_leiden with node weights =
 * weighted degrees k_i and resolution_parameter = resolution / (2W), W the
 * total edge weight, which turns its objective into (generalised)
 * modularity sum_c ( W_c / W - resolution * (K_c / 2W)^2 );
 * quality is then the modularity at that resolution. This is what
 * python-igraph's community_leiden(objective_function="modularity") does.
 * A graph without edge weight gives singletons and NaN figures.
 *
 * Paper and time: as gd_comm_leiden_cpm.
 */
gd_alg_status gd_comm_leiden_modularity(const gd_csr *g, double resolution, double beta,
                                        int64_t iterations, const int64_t *initial,
                                        const gd_alg_ctl *ctl, gd_comm_result *ret,
                                        gd_alg_error *err);

/*
 * Louvain (multi-level modularity optimisation):
 * igraph_community_multilevel at the given resolution; the result is the
 * last (coarsest, highest-modularity) level. Nodes are visited in a random
 * order, hence the seed.
 *
 * Paper: V. D. Blondel, J.-L. Guillaume, R. Lambiotte, E. Lefebvre, "Fast
 * unfolding of communities in large networks", J. Stat. Mech. P10008
 * (2008).
 *
 * Time: O(m) per pass, a few passes per level, O(log n) levels in
 * practice; measured much slower than Leiden on large random graphs (77 s
 * at 100k vertices with igraph 0.10.2): prefer Leiden. Interruption is
 * checked once per pass only.
 */
gd_alg_status gd_comm_louvain(const gd_csr *g, double resolution, const gd_alg_ctl *ctl,
                              gd_comm_result *ret, gd_alg_error *err);

/*
 * Label propagation: every vertex repeatedly takes the label with the
 * largest total edge weight among its neighbours (ties broken at random)
 * until no label changes; igraph_community_label_propagation, weighted.
 *
 * Paper: U. N. Raghavan, R. Albert, S. Kumara, "Near linear time algorithm
 * to detect community structures in large-scale networks", Phys. Rev. E
 * 76, 036106 (2007).
 *
 * Time: O(m) per sweep, near-linear overall in practice. Not interruptible
 * inside its main loop in igraph 0.10.2.
 */
gd_alg_status gd_comm_label_propagation(const gd_csr *g, const gd_alg_ctl *ctl,
                                        gd_comm_result *ret, gd_alg_error *err);

/*
 * Connected components of the graph restricted to edges of weight >=
 * threshold (union-find with path halving and union by size, no igraph;
 * igraph only computes the modularity). The seed is unused: the result is
 * fully determined by the graph.
 *
 * Time: O(n + m alpha(n)) for the components, O(n + m) for the
 * modularity.
 */
gd_alg_status gd_comm_components(const gd_csr *g, double threshold, const gd_alg_ctl *ctl,
                                 gd_comm_result *ret, gd_alg_error *err);

/*
 * Infomap: minimises the map equation, the description length of a random
 * walk on the weighted graph, over `trials` randomised greedy runs, keeping
 * the best; quality = its code length in bits. igraph_community_infomap
 * with edge weights and no vertex weights.
 *
 * Paper: M. Rosvall, C. T. Bergstrom, "Maps of random walks on complex
 * networks reveal community structure", PNAS 105(4), 1118-1123 (2008).
 *
 * Time: roughly O(trials * m log n) in practice (no tight bound); the
 * slowest of these wrappers. Interruption is checked once per outer
 * iteration of a trial.
 */
gd_alg_status gd_comm_infomap(const gd_csr *g, int64_t trials, const gd_alg_ctl *ctl,
                              gd_comm_result *ret, gd_alg_error *err);

/*
 * Modularity of any membership (non-negative labels, n of them) on g at
 * the given resolution, by igraph_modularity. NaN without edge weight.
 * O(n + m).
 */
gd_alg_status gd_comm_modularity(const gd_csr *g, const int64_t *membership, double resolution,
                                 double *ret, gd_alg_error *err);

#endif
