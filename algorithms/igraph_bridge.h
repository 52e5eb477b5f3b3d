/*
 * The igraph bridge: the only file of graphd that includes igraph.
 *
 * It converts gd_csr <-> igraph_t (+ an edge weight vector), runs one
 * igraph community algorithm or igraph_modularity, and maps igraph's
 * errors to gd_alg_status. Every call:
 *
 *  1. takes a process-wide lock. The Debian igraph 0.10.2 build has
 *     IGRAPH_THREAD_SAFE 0: its error handlers, cleanup ("finally") stack
 *     and RNG are globals, so two igraph computations must never overlap.
 *     With the lock, calls from several threads are merely serialised.
 *     (The daemon still runs clustering in a worker process:
 *     docs/ARCHITECTURE.md, "The clustering worker".)
 *  2. installs its own handlers and restores the previous ones on return:
 *     - error: records the first error's message and code, then calls
 *       IGRAPH_FINALLY_FREE() (igraph 0.10 unwinds its cleanup stack level
 *       by level through repeated handler calls) and returns, so the igraph
 *       function returns its error code to us instead of abort()ing, which
 *       is what the default handler does;
 *     - warning: counted and the last one kept (igraph would print it;
 *       algorithms/ never logs);
 *     - interruption: if the caller's cancel flag is set, calls
 *       IGRAPH_FINALLY_FREE() and returns IGRAPH_INTERRUPTED. Freeing the
 *       cleanup stack *inside* the handler matters: the function that
 *       checked for interruption returns IGRAPH_INTERRUPTED without raising
 *       an error itself, so its cleanup entries would otherwise be freed by
 *       its caller's error handler after its stack frame is gone: a
 *       use-after-free that crashes the process on the next error).
 *       python-igraph does the same;
 *     - fatal: igraph calls it for broken internal invariants
 *       (IGRAPH_ASSERT, on in release builds). It must not return, and the
 *       process state is unknown, so ours writes the reason to stderr and
 *       calls abort(). Policy: that is a crash of the clustering worker
 *       process; the daemon sees the child die and fails the job (FAILED,
 *       with the signal), never the daemon itself.
 *  3. seeds igraph's default RNG with ctl->seed
 *     (igraph_rng_seed(igraph_rng_default(), seed)), so results depend on
 *     the input and the seed only;
 *  4. checks on return that igraph's cleanup stack is empty. A non-empty
 *     stack would hold dangling entries: they are dropped without running
 *     their destructors (a leak rather than a crash in a later call) and
 *     the call fails with FAILED.
 *
 * Interruption is coarse in igraph 0.10.2: Leiden checks every ~10,000
 * node moves, Louvain once per pass, Infomap once per outer iteration of
 * each trial, label propagation not in its main loop. A watchdog that
 * kills the worker is the backstop.
 */
#ifndef GD_ALGORITHMS_IGRAPH_BRIDGE_H
#define GD_ALGORITHMS_IGRAPH_BRIDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "alg_common.h"
#include "csr.h"

/* An igraph_t built from a gd_csr, with its edge weights. Opaque. */
typedef struct gd_ig_graph gd_ig_graph;

/*
 * Converts g: one igraph edge per CSR edge, (u, v) with u < v, in CSR
 * order (so edge ids are deterministic), and a weight vector in the same
 * order. O(n + m). The result does not point into g.
 *
 * vmap, if not NULL, renumbers the vertices: vertex v of g becomes vertex
 * vmap[v] of the result, which has n_out vertices; vmap[v] < 0 leaves v out,
 * which only a vertex without edges may be (community.c drops the
 * isolated vertices this way). Kept vertices must map to distinct
 * vertices; an increasing map keeps the edge order CSR order. NULL: every
 * vertex, n_out ignored.
 *
 * Errors: INVALID (vmap leaves out a vertex with edges, or maps one
 * outside [0, n_out)), NOMEM, FAILED (other igraph errors).
 */
gd_alg_status gd_ig_graph_new(const gd_csr *g, const int64_t *vmap, int64_t n_out,
                              gd_ig_graph **ret, gd_alg_error *err);

/* Frees h. NULL-safe. */
void gd_ig_graph_free(gd_ig_graph *h);

/* Vertex and edge counts of h. */
int64_t gd_ig_graph_vcount(const gd_ig_graph *h);
int64_t gd_ig_graph_ecount(const gd_ig_graph *h);

/* Converts h back to a gd_csr (free with gd_csr_free). O(n + m). */
gd_alg_status gd_ig_graph_to_csr(const gd_ig_graph *h, gd_csr *ret, gd_alg_error *err);

typedef enum gd_ig_algo {
  GD_IG_LEIDEN,            /* igraph_community_leiden */
  GD_IG_MULTILEVEL,        /* igraph_community_multilevel (Louvain) */
  GD_IG_LABEL_PROPAGATION, /* igraph_community_label_propagation */
  GD_IG_INFOMAP,           /* igraph_community_infomap */
} gd_ig_algo;

/*
 * One igraph community call, parameters as igraph takes them (the
 * semantics, defaults and normalisation live in community.h).
 */
typedef struct gd_ig_spec {
  gd_ig_algo algo;
  /* LEIDEN: node weights (n values) or NULL for all 1 (CPM). */
  const double *node_weights;
  /* LEIDEN: igraph's resolution_parameter (gamma in its objective).
   * MULTILEVEL: modularity resolution (1 = standard). */
  double resolution;
  /* LEIDEN: refinement randomness (0.01 in the paper). */
  double beta;
  /* LEIDEN: > 0 runs that many iterations; < 0 iterates until an iteration
   * leaves the partition unchanged, at most max_iterations times.
   * INFOMAP: number of trials (> 0). */
  int64_t iterations;
  int64_t max_iterations;
  /* LEIDEN: start from the membership passed in (canonical, 0..k-1)
   * instead of singletons. */
  bool start;
} gd_ig_spec;

typedef struct gd_ig_out {
  int64_t n_clusters;
  /* The algorithm's own objective: LEIDEN igraph's quality of the final
   * partition, MULTILEVEL the modularity (at spec.resolution) of the last
   * level, INFOMAP the code length, LABEL_PROPAGATION NaN. */
  double quality;
  /* igraph_modularity of the result, resolution 1, with the edge weights;
   * NaN on a graph without edge weight. */
  double modularity;
  int64_t iterations; /* LEIDEN: iterations run */
  int64_t warnings;   /* igraph warnings raised during the call */
  char last_warning[128];
} gd_ig_out;

/*
 * Runs spec on h. membership has gd_ig_graph_vcount(h) entries: read as the
 * start partition when spec->start, always overwritten with the result
 * (canonical: clusters 0..k-1 in order of first appearance). ret gets the
 * figures. On error membership is unspecified and ret untouched.
 *
 * Errors: INTERRUPTED (ctl->cancel was set), NOMEM, INVALID (igraph
 * rejected an argument, e.g. a negative weight for Louvain), FAILED.
 */
gd_alg_status gd_ig_community(const gd_ig_graph *h, const gd_ig_spec *spec, const gd_alg_ctl *ctl,
                              int64_t *membership, gd_ig_out *ret, gd_alg_error *err);

/*
 * igraph_modularity of membership (non-negative labels) on h, with h's
 * weights and the given resolution (1 = standard). NaN without edge
 * weight. O(n + m).
 */
gd_alg_status gd_ig_modularity(const gd_ig_graph *h, const int64_t *membership, double resolution,
                               double *ret, gd_alg_error *err);

/* The igraph version the bridge runs against ("0.10.2"). */
const char *gd_ig_version(void);

#endif
