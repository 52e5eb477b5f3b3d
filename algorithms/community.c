#include "community.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "igraph_bridge.h"

static const char *const algo_names[GD_COMM__COUNT] = {
    [GD_COMM_LEIDEN_CPM] = "leiden-cpm",
    [GD_COMM_LEIDEN_MODULARITY] = "leiden-modularity",
    [GD_COMM_LOUVAIN] = "louvain",
    [GD_COMM_LABEL_PROPAGATION] = "label-propagation",
    [GD_COMM_COMPONENTS] = "components",
    [GD_COMM_INFOMAP] = "infomap",
};

const char *gd_comm_algo_name(gd_comm_algo algo) {
  return (unsigned)algo < GD_COMM__COUNT ? algo_names[algo] : "unknown";
}

int gd_comm_algo_from_name(const char *name, gd_comm_algo *ret) {
  for (int a = 0; name && a < GD_COMM__COUNT; a++) {
    if (strcmp(name, algo_names[a]) == 0) {
      *ret = (gd_comm_algo)a;
      return 0;
    }
  }
  return -1;
}

void gd_comm_defaults(gd_comm_algo algo, gd_comm_params *ret) {
  memset(ret, 0, sizeof *ret);
  ret->algo = algo;
  ret->beta = 0.01;
  ret->iterations = -1;
  ret->resolution = algo == GD_COMM_LEIDEN_CPM ? 0.1 : 1.0;
  ret->threshold = 0.5;
  if (algo == GD_COMM_INFOMAP)
    ret->iterations = 10;
}

void gd_comm_result_free(gd_comm_result *r) {
  if (!r)
    return;
  free(r->membership);
  memset(r, 0, sizeof *r);
}

static gd_alg_status check_graph(const gd_csr *g, gd_comm_result *ret, gd_alg_error *err) {
  if (!g || !ret || g->n < 0 || (g->n > 0 && !g->off))
    return gd_alg_error_set(err, GD_ALG_INVALID, "community: bad arguments");
  return GD_ALG_OK;
}

static int64_t *alloc_membership(int64_t n) {
  if ((uint64_t)n > SIZE_MAX / sizeof(int64_t))
    return NULL;
  return malloc((size_t)(n ? n : 1) * sizeof(int64_t));
}

/*
 * The isolated vertices of g (no tie) are singletons in every algorithm
 * run through igraph here but Infomap (CPM and modularity gain nothing by
 * moving one: it has no tie, and under CPM joining costs gamma; Louvain
 * and label propagation only look at neighbours). Yet igraph pays for
 * each on every Leiden iteration (a cluster of its own to keep, visit and
 * aggregate): on sellergen's 1M sellers, where 924k of the 925k clusters
 * are singletons, the iteration time was mostly theirs. So igraph gets g without them, and
 * they come back as singletons.
 *
 * Infomap keeps them: its random walk teleports to every vertex, so they
 * carry flow and change the code length.
 *
 * Leaving them out changes which random numbers the other vertices draw,
 * so a graph with isolated vertices gets a different (equally valid)
 * result for the same seed than igraph on the whole graph would give.
 */
static bool drop_isolated(const gd_csr *g, const gd_ig_spec *spec, int64_t *n_iso) {
  int64_t k = 0;
  for (int64_t v = 0; v < g->n; v++)
    k += g->off[v + 1] == g->off[v];
  *n_iso = k;
  return spec->algo != GD_IG_INFOMAP && k > 0 && g->m > 0;
}

/*
 * Runs spec on g without its n_iso isolated vertices (drop_isolated), then
 * writes the whole membership (canonical) and out's figures for g: the
 * cluster count and, for CPM (node weights 1), the quality, which counts
 * gamma * 1^2 / 2W for each singleton (igraph: sum_c (e_c - gamma N_c^2)
 * / 2W; modularity's node weights are 0 for them, so it does not change).
 */
static gd_alg_status run_compact(const gd_csr *g, const gd_ig_spec *spec, const gd_alg_ctl *ctl,
                                 int64_t n_iso, int64_t *membership, gd_ig_out *out,
                                 gd_alg_error *err) {
  int64_t n = g->n, n_sub = n - n_iso;
  int64_t *vmap = malloc((size_t)n * sizeof *vmap);
  int64_t *sub = malloc((size_t)n_sub * sizeof *sub);
  double *nw = spec->node_weights ? malloc((size_t)n_sub * sizeof *nw) : NULL;
  gd_ig_graph *h = NULL;
  gd_alg_status st = GD_ALG_OK;
  if (!vmap || !sub || (spec->node_weights && !nw)) {
    st = gd_alg_error_set(err, GD_ALG_NOMEM, "community: %lld vertices", (long long)n);
    goto done;
  }
  for (int64_t v = 0, k = 0; v < n; v++) {
    vmap[v] = g->off[v + 1] > g->off[v] ? k++ : -1;
    if (vmap[v] < 0)
      continue;
    if (spec->start)
      sub[vmap[v]] = membership[v];
    if (nw)
      nw[vmap[v]] = spec->node_weights[v];
  }
  gd_ig_spec sspec = *spec;
  sspec.node_weights = nw;
  if (spec->start && (st = gd_membership_canonical(sub, n_sub, sub, NULL, err)) != GD_ALG_OK)
    goto done;
  if ((st = gd_ig_graph_new(g, vmap, n_sub, &h, err)) != GD_ALG_OK ||
      (st = gd_ig_community(h, &sspec, ctl, sub, out, err)) != GD_ALG_OK)
    goto done;
  for (int64_t v = 0; v < n; v++)
    membership[v] = vmap[v] >= 0 ? sub[vmap[v]] : -1;
  if ((st = gd_membership_canonical(membership, n, membership, &out->n_clusters, err)) != GD_ALG_OK)
    goto done;
  if (spec->algo == GD_IG_LEIDEN && !spec->node_weights)
    out->quality -= spec->resolution * (double)n_iso / (2.0 * gd_csr_total_weight(g));
done:
  gd_ig_graph_free(h);
  free(vmap), free(sub), free(nw);
  return st;
}

/* Converts g, runs spec, fills ret. membership (n entries, owned by the
 * caller until success) holds the start partition when spec->start. */
static gd_alg_status run_igraph(const gd_csr *g, const gd_ig_spec *spec, const gd_alg_ctl *ctl,
                                int64_t *membership, gd_comm_result *ret, gd_alg_error *err) {
  gd_ig_out out;
  int64_t n_iso;
  gd_alg_status st;
  if (drop_isolated(g, spec, &n_iso)) {
    st = run_compact(g, spec, ctl, n_iso, membership, &out, err);
  } else {
    gd_ig_graph *h = NULL;
    st = gd_ig_graph_new(g, NULL, 0, &h, err);
    if (st == GD_ALG_OK)
      st = gd_ig_community(h, spec, ctl, membership, &out, err);
    gd_ig_graph_free(h);
  }
  if (st != GD_ALG_OK) {
    free(membership);
    return st;
  }
  ret->n = g->n;
  ret->membership = membership;
  ret->n_clusters = out.n_clusters;
  ret->quality = out.quality;
  ret->modularity = out.modularity;
  ret->iterations = out.iterations;
  ret->warnings = out.warnings;
  return GD_ALG_OK;
}

/* Singletons with NaN figures: the answer for a graph without edge weight
 * under modularity, where 1 / (2W) is undefined. */
static gd_alg_status singletons(const gd_csr *g, gd_comm_result *ret, gd_alg_error *err) {
  int64_t *mv = alloc_membership(g->n);
  if (!mv)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "community: %lld vertices", (long long)g->n);
  for (int64_t i = 0; i < g->n; i++)
    mv[i] = i;
  memset(ret, 0, sizeof *ret);
  ret->n = g->n;
  ret->membership = mv;
  ret->n_clusters = g->n;
  ret->quality = NAN;
  ret->modularity = NAN;
  return GD_ALG_OK;
}

static gd_alg_status leiden(const gd_csr *g, const char *what, const double *node_weights,
                            double ig_resolution, double beta, int64_t iterations,
                            const int64_t *initial, const gd_alg_ctl *ctl, gd_comm_result *ret,
                            gd_alg_error *err) {
  if (!isfinite(beta) || beta <= 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "%s: beta %g must be > 0", what, beta);
  if (iterations == 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "%s: iterations must be non-zero", what);
  int64_t *mv = alloc_membership(g->n);
  if (!mv)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "%s: %lld vertices", what, (long long)g->n);
  if (initial) {
    gd_alg_status st = gd_membership_canonical(initial, g->n, mv, NULL, err);
    if (st != GD_ALG_OK) {
      free(mv);
      return st;
    }
  }
  gd_ig_spec spec = {
      .algo = GD_IG_LEIDEN,
      .node_weights = node_weights,
      .resolution = ig_resolution,
      .beta = beta,
      .iterations = iterations,
      .max_iterations = GD_COMM_MAX_ITERATIONS,
      .start = initial != NULL,
  };
  return run_igraph(g, &spec, ctl, mv, ret, err);
}

gd_alg_status gd_comm_leiden_cpm(const gd_csr *g, double resolution, double beta,
                                 int64_t iterations, const int64_t *initial,
                                 const gd_alg_ctl *ctl, gd_comm_result *ret, gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  if (!isfinite(resolution) || resolution < 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "leiden-cpm: resolution %g", resolution);
  return leiden(g, "leiden-cpm", NULL, resolution, beta, iterations, initial, ctl, ret, err);
}

gd_alg_status gd_comm_leiden_modularity(const gd_csr *g, double resolution, double beta,
                                        int64_t iterations, const int64_t *initial,
                                        const gd_alg_ctl *ctl, gd_comm_result *ret,
                                        gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  if (!isfinite(resolution) || resolution < 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "leiden-modularity: resolution %g", resolution);
  double *k = malloc((size_t)(g->n ? g->n : 1) * sizeof *k);
  if (!k)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "leiden-modularity: %lld vertices", (long long)g->n);
  double two_w = 0.0; /* sum of strengths = 2W */
  for (int64_t v = 0; v < g->n; v++) {
    k[v] = gd_csr_strength(g, v);
    two_w += k[v];
  }
  if (!(two_w > 0)) {
    free(k);
    return singletons(g, ret, err);
  }
  st = leiden(g, "leiden-modularity", k, resolution / two_w, beta, iterations, initial, ctl, ret,
              err);
  free(k);
  return st;
}

gd_alg_status gd_comm_louvain(const gd_csr *g, double resolution, const gd_alg_ctl *ctl,
                              gd_comm_result *ret, gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  if (!isfinite(resolution) || resolution < 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "louvain: resolution %g", resolution);
  int64_t *mv = alloc_membership(g->n);
  if (!mv)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "louvain: %lld vertices", (long long)g->n);
  gd_ig_spec spec = {.algo = GD_IG_MULTILEVEL, .resolution = resolution};
  return run_igraph(g, &spec, ctl, mv, ret, err);
}

gd_alg_status gd_comm_label_propagation(const gd_csr *g, const gd_alg_ctl *ctl,
                                        gd_comm_result *ret, gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  int64_t *mv = alloc_membership(g->n);
  if (!mv)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "label-propagation: %lld vertices", (long long)g->n);
  gd_ig_spec spec = {.algo = GD_IG_LABEL_PROPAGATION};
  return run_igraph(g, &spec, ctl, mv, ret, err);
}

gd_alg_status gd_comm_infomap(const gd_csr *g, int64_t trials, const gd_alg_ctl *ctl,
                              gd_comm_result *ret, gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  if (trials <= 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "infomap: trials %lld must be > 0",
                            (long long)trials);
  int64_t *mv = alloc_membership(g->n);
  if (!mv)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "infomap: %lld vertices", (long long)g->n);
  gd_ig_spec spec = {.algo = GD_IG_INFOMAP, .iterations = trials};
  return run_igraph(g, &spec, ctl, mv, ret, err);
}

static int64_t uf_find(int64_t *parent, int64_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]]; /* path halving */
    x = parent[x];
  }
  return x;
}

gd_alg_status gd_comm_components(const gd_csr *g, double threshold, const gd_alg_ctl *ctl,
                                 gd_comm_result *ret, gd_alg_error *err) {
  gd_alg_status st = check_graph(g, ret, err);
  if (st != GD_ALG_OK)
    return st;
  if (isnan(threshold))
    return gd_alg_error_set(err, GD_ALG_INVALID, "components: threshold is NaN");
  int64_t n = g->n;
  int64_t *parent = alloc_membership(n), *size = alloc_membership(n);
  if (!parent || !size) {
    free(parent), free(size);
    return gd_alg_error_set(err, GD_ALG_NOMEM, "components: %lld vertices", (long long)n);
  }
  for (int64_t v = 0; v < n; v++)
    parent[v] = v, size[v] = 1;
  for (int64_t u = 0; u < n; u++) {
    if ((u & 0xffff) == 0 && gd_alg_cancelled(ctl)) {
      free(parent), free(size);
      return gd_alg_error_set(err, GD_ALG_INTERRUPTED, "components: interrupted");
    }
    for (int64_t p = g->off[u]; p < g->off[u + 1]; p++) {
      int64_t v = g->nbr[p];
      if (v <= u || !(g->w[p] >= threshold))
        continue;
      int64_t a = uf_find(parent, u), b = uf_find(parent, v);
      if (a == b)
        continue;
      if (size[a] < size[b] || (size[a] == size[b] && b < a)) {
        int64_t t = a;
        a = b, b = t;
      }
      parent[b] = a;
      size[a] += size[b];
    }
  }
  for (int64_t v = 0; v < n; v++)
    parent[v] = uf_find(parent, v);
  free(size);
  int64_t k = 0;
  st = gd_membership_canonical(parent, n, parent, &k, err); /* labels are roots < n: O(n) */
  if (st != GD_ALG_OK) {
    free(parent);
    return st;
  }
  double q = NAN;
  st = gd_comm_modularity(g, parent, 1.0, &q, err);
  if (st != GD_ALG_OK) {
    free(parent);
    return st;
  }
  memset(ret, 0, sizeof *ret);
  ret->n = n;
  ret->membership = parent;
  ret->n_clusters = k;
  ret->quality = NAN;
  ret->modularity = q;
  return GD_ALG_OK;
}

gd_alg_status gd_comm_modularity(const gd_csr *g, const int64_t *membership, double resolution,
                                 double *ret, gd_alg_error *err) {
  if (!g || !ret)
    return gd_alg_error_set(err, GD_ALG_INVALID, "modularity: bad arguments");
  if (g->n == 0) {
    *ret = NAN;
    return GD_ALG_OK;
  }
  gd_ig_graph *h = NULL;
  gd_alg_status st = gd_ig_graph_new(g, NULL, 0, &h, err);
  if (st != GD_ALG_OK)
    return st;
  st = gd_ig_modularity(h, membership, resolution, ret, err);
  gd_ig_graph_free(h);
  return st;
}

gd_alg_status gd_comm_run(const gd_csr *g, const gd_comm_params *p, const gd_alg_ctl *ctl,
                          gd_comm_result *ret, gd_alg_error *err) {
  if (!p)
    return gd_alg_error_set(err, GD_ALG_INVALID, "community: no parameters");
  switch (p->algo) {
  case GD_COMM_LEIDEN_CPM:
    return gd_comm_leiden_cpm(g, p->resolution, p->beta, p->iterations, p->initial, ctl, ret, err);
  case GD_COMM_LEIDEN_MODULARITY:
    return gd_comm_leiden_modularity(g, p->resolution, p->beta, p->iterations, p->initial, ctl,
                                     ret, err);
  case GD_COMM_LOUVAIN:
    return gd_comm_louvain(g, p->resolution, ctl, ret, err);
  case GD_COMM_LABEL_PROPAGATION:
    return gd_comm_label_propagation(g, ctl, ret, err);
  case GD_COMM_COMPONENTS:
    return gd_comm_components(g, p->threshold, ctl, ret, err);
  case GD_COMM_INFOMAP:
    return gd_comm_infomap(g, p->iterations, ctl, ret, err);
  default:
    return gd_alg_error_set(err, GD_ALG_INVALID, "community: unknown algorithm %d", (int)p->algo);
  }
}
