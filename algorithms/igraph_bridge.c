/*
 * The only file that includes igraph. See igraph_bridge.h for the rules
 * every call follows (lock, handlers, seed, cleanup-stack check).
 */
#include "igraph_bridge.h"

#include <igraph.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* igraph_integer_t is 64-bit in every igraph 0.10 build, so int64_t arrays
 * and igraph_vector_int_t hold the same values. */
_Static_assert(sizeof(igraph_integer_t) == sizeof(int64_t), "igraph_integer_t must be 64-bit");
_Static_assert(sizeof(igraph_real_t) == sizeof(double), "igraph_real_t must be double");

struct gd_ig_graph {
  igraph_t g;
  igraph_vector_t w;
};

/* ---- one call's scope: lock, handlers, seed ---------------------------- */

static pthread_mutex_t ig_lock = PTHREAD_MUTEX_INITIALIZER;

/* Valid only while ig_lock is held. */
static struct {
  const atomic_int *cancel;
  int errno_first;       /* first igraph error code seen, 0 if none */
  char reason[160];      /* its message (the first non-empty one) */
  char where[64];        /* file:line of that message */
  int64_t warnings;
  char last_warning[128];
  int interrupted;       /* the interruption handler asked igraph to stop */
  igraph_error_handler_t *old_error;
  igraph_warning_handler_t *old_warning;
  igraph_interruption_handler_t *old_interrupt;
  igraph_fatal_handler_t *old_fatal;
} scope;

static void on_error(const char *reason, const char *file, int line, igraph_error_t code) {
  /* igraph calls this once per level while an error propagates (IGRAPH_CHECK
   * re-raises with an empty reason); keep the first code and the first
   * real message. Copy before IGRAPH_FINALLY_FREE(), which may free the
   * buffer reason points into. */
  if (!scope.errno_first)
    scope.errno_first = (int)code;
  if (!scope.reason[0] && reason && reason[0]) {
    snprintf(scope.reason, sizeof scope.reason, "%s", reason);
    snprintf(scope.where, sizeof scope.where, "%s:%d", file ? file : "?", line);
  }
  IGRAPH_FINALLY_FREE();
}

static void on_warning(const char *reason, const char *file, int line) {
  (void)file, (void)line;
  scope.warnings++;
  snprintf(scope.last_warning, sizeof scope.last_warning, "%s", reason ? reason : "");
}

static igraph_error_t on_interrupt(void *data) {
  (void)data;
  if (scope.cancel && atomic_load_explicit(scope.cancel, memory_order_relaxed)) {
    scope.interrupted = 1;
    /* Free the cleanup entries now, while every frame that registered one
     * is still alive; see igraph_bridge.h. */
    IGRAPH_FINALLY_FREE();
    return IGRAPH_INTERRUPTED;
  }
  return IGRAPH_SUCCESS;
}

static void on_fatal(const char *reason, const char *file, int line) {
  /* Must not return. Process state is unknown: crash this (worker)
   * process; its parent reports the job as FAILED. */
  fprintf(stderr, "graphd algorithms: igraph fatal error: %s (%s:%d)\n", reason ? reason : "?",
          file ? file : "?", line);
  fflush(stderr);
  abort();
}

/* Starts a scope; seeds the RNG with ctl->seed (0 if ctl is NULL) when seed
 * is set. */
static void scope_enter(const gd_alg_ctl *ctl, int seed) {
  pthread_mutex_lock(&ig_lock);
  memset(&scope, 0, sizeof scope);
  scope.cancel = ctl ? ctl->cancel : NULL;
  scope.old_error = igraph_set_error_handler(on_error);
  scope.old_warning = igraph_set_warning_handler(on_warning);
  scope.old_interrupt = igraph_set_interruption_handler(on_interrupt);
  scope.old_fatal = igraph_set_fatal_handler(on_fatal);
  if (seed)
    igraph_rng_seed(igraph_rng_default(), (igraph_uint_t)(ctl ? ctl->seed : 0));
}

/*
 * Ends the scope: turns igraph's return code rc into a status (filling err
 * with what/why), checks the cleanup stack, restores handlers, unlocks.
 */
static gd_alg_status scope_leave(igraph_error_t rc, const char *what, gd_alg_error *err) {
  gd_alg_status st = GD_ALG_OK;
  int stack = IGRAPH_FINALLY_STACK_SIZE();
  if (rc != IGRAPH_SUCCESS) {
    int code = scope.errno_first ? scope.errno_first : (int)rc;
    if (rc == IGRAPH_INTERRUPTED || scope.interrupted)
      st = GD_ALG_INTERRUPTED;
    else if (code == IGRAPH_ENOMEM)
      st = GD_ALG_NOMEM;
    else if (code == IGRAPH_EINVAL || code == IGRAPH_EINVVID || code == IGRAPH_EINVMODE)
      st = GD_ALG_INVALID;
    else
      st = GD_ALG_FAILED;
    if (st == GD_ALG_INTERRUPTED)
      gd_alg_error_set(err, st, "%s: interrupted %s", what,
                       scope.interrupted ? "inside igraph (interruption handler)"
                                         : "between iterations");
    else
      gd_alg_error_set(err, st, "%s: %s (igraph: %s%s%s)", what,
                       scope.reason[0] ? scope.reason : igraph_strerror((igraph_error_t)code),
                       igraph_strerror((igraph_error_t)code), scope.where[0] ? ", at " : "",
                       scope.where);
    if (err)
      err->igraph_errno = code;
  }
  if (stack != 0) {
    /* Cannot happen with a correct igraph and these handlers. The entries
     * may point into dead stack frames, so running their destructors could
     * crash; drop them without running them (a leak, not a crash) so that
     * no later error handler frees them, and fail the call. */
    IGRAPH_FINALLY_CLEAN(stack);
    st = gd_alg_error_set(err, GD_ALG_FAILED,
                          "%s: igraph cleanup stack held %d entries after the call", what, stack);
  }
  igraph_set_error_handler(scope.old_error);
  igraph_set_warning_handler(scope.old_warning);
  igraph_set_interruption_handler(scope.old_interrupt);
  igraph_set_fatal_handler(scope.old_fatal);
  scope.cancel = NULL;
  pthread_mutex_unlock(&ig_lock);
  return st;
}

/* ---- conversion --------------------------------------------------------- */

gd_alg_status gd_ig_graph_new(const gd_csr *g, const int64_t *vmap, int64_t n_out,
                              gd_ig_graph **ret, gd_alg_error *err) {
  if (!g || !ret || g->n < 0 || (vmap && n_out < 0))
    return gd_alg_error_set(err, GD_ALG_INVALID, "igraph bridge: bad arguments");
  if (!vmap)
    n_out = g->n;
  for (int64_t u = 0; vmap && u < g->n; u++)
    if (vmap[u] >= n_out || (vmap[u] < 0 && g->off[u + 1] > g->off[u]))
      return gd_alg_error_set(err, GD_ALG_INVALID,
                              "igraph bridge: vertex %lld maps to %lld (of %lld), degree %lld",
                              (long long)u, (long long)vmap[u], (long long)n_out,
                              (long long)(g->off[u + 1] - g->off[u]));
  gd_ig_graph *h = calloc(1, sizeof *h);
  if (!h)
    return gd_alg_error_set(err, GD_ALG_NOMEM, "igraph bridge: out of memory");

  scope_enter(NULL, 0);
  igraph_vector_int_t edges;
  int have_edges = 0, have_w = 0;
  igraph_error_t rc = igraph_vector_int_init(&edges, 2 * g->m);
  if (rc == IGRAPH_SUCCESS) {
    have_edges = 1;
    rc = igraph_vector_init(&h->w, g->m);
  }
  if (rc == IGRAPH_SUCCESS) {
    have_w = 1;
    igraph_integer_t e = 0;
    for (int64_t u = 0; u < g->n; u++) {
      for (int64_t p = g->off[u]; p < g->off[u + 1]; p++) {
        if (g->nbr[p] <= u)
          continue;
        if (e >= g->m) { /* malformed CSR: more upper halves than m */
          rc = IGRAPH_EINVAL;
          break;
        }
        VECTOR(edges)[2 * e] = vmap ? vmap[u] : u;
        VECTOR(edges)[2 * e + 1] = vmap ? vmap[g->nbr[p]] : g->nbr[p];
        VECTOR(h->w)[e] = g->w[p];
        e++;
      }
      if (rc != IGRAPH_SUCCESS)
        break;
    }
    if (rc == IGRAPH_SUCCESS && e != g->m)
      rc = IGRAPH_EINVAL;
  }
  if (rc == IGRAPH_SUCCESS)
    rc = igraph_create(&h->g, &edges, n_out, IGRAPH_UNDIRECTED);
  if (have_edges)
    igraph_vector_int_destroy(&edges);
  if (rc != IGRAPH_SUCCESS && have_w)
    igraph_vector_destroy(&h->w);
  gd_alg_status st = scope_leave(rc, "igraph_create", err);
  if (st != GD_ALG_OK) {
    free(h);
    return st;
  }
  *ret = h;
  return GD_ALG_OK;
}

void gd_ig_graph_free(gd_ig_graph *h) {
  if (!h)
    return;
  /* Destructors cannot fail and raise no errors; no scope needed. */
  igraph_destroy(&h->g);
  igraph_vector_destroy(&h->w);
  free(h);
}

int64_t gd_ig_graph_vcount(const gd_ig_graph *h) { return igraph_vcount(&h->g); }

int64_t gd_ig_graph_ecount(const gd_ig_graph *h) { return igraph_ecount(&h->g); }

gd_alg_status gd_ig_graph_to_csr(const gd_ig_graph *h, gd_csr *ret, gd_alg_error *err) {
  if (!h || !ret)
    return gd_alg_error_set(err, GD_ALG_INVALID, "igraph bridge: bad arguments");
  int64_t m = igraph_ecount(&h->g), n = igraph_vcount(&h->g);
  int64_t *u = malloc((size_t)(m ? m : 1) * sizeof *u);
  int64_t *v = malloc((size_t)(m ? m : 1) * sizeof *v);
  if (!u || !v) {
    free(u), free(v);
    return gd_alg_error_set(err, GD_ALG_NOMEM, "igraph bridge: out of memory");
  }
  for (int64_t e = 0; e < m; e++) {
    u[e] = IGRAPH_FROM(&h->g, e);
    v[e] = IGRAPH_TO(&h->g, e);
  }
  gd_alg_status st = gd_csr_from_edges(n, m, u, v, VECTOR(h->w), ret, err);
  free(u), free(v);
  return st;
}

/* ---- algorithms --------------------------------------------------------- */

static const char *algo_fn(gd_ig_algo a) {
  switch (a) {
  case GD_IG_LEIDEN:
    return "igraph_community_leiden";
  case GD_IG_MULTILEVEL:
    return "igraph_community_multilevel";
  case GD_IG_LABEL_PROPAGATION:
    return "igraph_community_label_propagation";
  case GD_IG_INFOMAP:
    return "igraph_community_infomap";
  }
  return "igraph";
}

/*
 * Leiden, one igraph iteration per call so that "until stable" is ours:
 * in igraph 0.10.2 a negative n_iterations loops `while (!changed)`, i.e.
 * it stops after the first iteration that changes something and never
 * stops on a partition that is already stable (fixed upstream in 0.10.x,
 * igraph PR #2799). One iteration per call with start = true is exactly
 * what igraph's own loop does for a fixed count (it passes the membership
 * from one iteration to the next and draws from the same RNG stream).
 */
static igraph_error_t run_leiden(const gd_ig_graph *h, const gd_ig_spec *spec,
                                 const gd_alg_ctl *ctl, igraph_vector_int_t *mv,
                                 gd_ig_out *out, int64_t *canon_prev, int64_t *canon_cur) {
  int64_t n = igraph_vcount(&h->g);
  igraph_vector_t nw_view;
  const igraph_vector_t *nw = NULL;
  if (spec->node_weights)
    nw = igraph_vector_view(&nw_view, spec->node_weights, n);
  if (!spec->start)
    for (int64_t i = 0; i < n; i++)
      VECTOR(*mv)[i] = i;
  int until_stable = spec->iterations < 0;
  int64_t limit = until_stable ? spec->max_iterations : spec->iterations;
  if (until_stable)
    gd_membership_canonical(VECTOR(*mv), n, canon_prev, NULL, NULL);
  igraph_integer_t nb = 0;
  igraph_real_t q = NAN;
  for (out->iterations = 0; out->iterations < limit;) {
    /* Between iterations, ask too: a graph under ~10,000 vertices may
     * finish a whole iteration without igraph asking once. Not before the
     * first: then igraph's own check (handler) is what stops the call. */
    if (out->iterations > 0 && gd_alg_cancelled(ctl))
      return IGRAPH_INTERRUPTED;
    igraph_error_t rc = igraph_community_leiden(&h->g, &h->w, nw, spec->resolution, spec->beta,
                                                /*start=*/true, /*n_iterations=*/1, mv, &nb, &q);
    if (rc != IGRAPH_SUCCESS)
      return rc;
    out->iterations++;
    if (until_stable) {
      gd_membership_canonical(VECTOR(*mv), n, canon_cur, NULL, NULL);
      if (memcmp(canon_prev, canon_cur, (size_t)n * sizeof *canon_cur) == 0)
        break;
      int64_t *t = canon_prev;
      canon_prev = canon_cur;
      canon_cur = t;
    }
  }
  out->quality = q;
  return IGRAPH_SUCCESS;
}

gd_alg_status gd_ig_community(const gd_ig_graph *h, const gd_ig_spec *spec, const gd_alg_ctl *ctl,
                              int64_t *membership, gd_ig_out *ret, gd_alg_error *err) {
  if (!h || !spec || !ret || (!membership && igraph_vcount(&h->g) > 0))
    return gd_alg_error_set(err, GD_ALG_INVALID, "igraph bridge: bad arguments");
  const char *what = algo_fn(spec->algo);
  int64_t n = igraph_vcount(&h->g);
  if (spec->algo == GD_IG_LEIDEN && (spec->iterations == 0 || (spec->iterations < 0 && spec->max_iterations <= 0)))
    return gd_alg_error_set(err, GD_ALG_INVALID, "%s: iterations must be non-zero", what);
  if (spec->algo == GD_IG_INFOMAP && spec->iterations <= 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "%s: trials must be > 0", what);

  gd_ig_out out;
  memset(&out, 0, sizeof out);
  out.quality = NAN;
  out.modularity = NAN;
  int64_t *canon_a = NULL, *canon_b = NULL;
  if (spec->algo == GD_IG_LEIDEN && spec->iterations < 0) {
    canon_a = malloc((size_t)(n ? n : 1) * sizeof *canon_a);
    canon_b = malloc((size_t)(n ? n : 1) * sizeof *canon_b);
    if (!canon_a || !canon_b) {
      free(canon_a), free(canon_b);
      return gd_alg_error_set(err, GD_ALG_NOMEM, "%s: out of memory", what);
    }
  }

  scope_enter(ctl, 1);
  igraph_vector_int_t mv;
  igraph_error_t rc = igraph_vector_int_init(&mv, n);
  int have_mv = rc == IGRAPH_SUCCESS;
  if (have_mv && spec->start)
    memcpy(VECTOR(mv), membership, (size_t)n * sizeof *membership);
  if (rc == IGRAPH_SUCCESS) {
    switch (spec->algo) {
    case GD_IG_LEIDEN:
      rc = run_leiden(h, spec, ctl, &mv, &out, canon_a, canon_b);
      break;
    case GD_IG_MULTILEVEL: {
      igraph_vector_t levels;
      rc = igraph_vector_init(&levels, 0);
      if (rc == IGRAPH_SUCCESS) {
        rc = igraph_community_multilevel(&h->g, &h->w, spec->resolution, &mv, NULL, &levels);
        if (rc == IGRAPH_SUCCESS && igraph_vector_size(&levels) > 0)
          out.quality = VECTOR(levels)[igraph_vector_size(&levels) - 1];
        igraph_vector_destroy(&levels);
      }
      break;
    }
    case GD_IG_LABEL_PROPAGATION:
      rc = igraph_community_label_propagation(&h->g, &mv, IGRAPH_ALL, &h->w, NULL, NULL);
      break;
    case GD_IG_INFOMAP: {
      igraph_real_t codelength = NAN;
      rc = igraph_community_infomap(&h->g, &h->w, NULL, spec->iterations, &mv, &codelength);
      out.quality = codelength;
      break;
    }
    default:
      rc = IGRAPH_EINVAL;
      snprintf(scope.reason, sizeof scope.reason, "unknown algorithm %d", (int)spec->algo);
    }
  }
  if (rc == IGRAPH_SUCCESS && n > 0) {
    igraph_real_t mod = NAN;
    rc = igraph_modularity(&h->g, &mv, &h->w, 1.0, /*directed=*/false, &mod);
    out.modularity = mod;
  }
  if (rc == IGRAPH_SUCCESS)
    gd_membership_canonical(VECTOR(mv), n, membership, &out.n_clusters, NULL);
  if (have_mv)
    igraph_vector_int_destroy(&mv);
  out.warnings = scope.warnings;
  memcpy(out.last_warning, scope.last_warning, sizeof out.last_warning);
  gd_alg_status st = scope_leave(rc, what, err);
  free(canon_a), free(canon_b);
  if (st == GD_ALG_OK)
    *ret = out;
  return st;
}

gd_alg_status gd_ig_modularity(const gd_ig_graph *h, const int64_t *membership, double resolution,
                               double *ret, gd_alg_error *err) {
  if (!h || !ret || (!membership && igraph_vcount(&h->g) > 0))
    return gd_alg_error_set(err, GD_ALG_INVALID, "igraph bridge: bad arguments");
  int64_t n = igraph_vcount(&h->g);
  scope_enter(NULL, 0);
  igraph_vector_int_t mv;
  igraph_real_t q = NAN;
  igraph_error_t rc = igraph_vector_int_init(&mv, n);
  if (rc == IGRAPH_SUCCESS) {
    if (n)
      memcpy(VECTOR(mv), membership, (size_t)n * sizeof *membership);
    rc = igraph_modularity(&h->g, &mv, &h->w, resolution, false, &q);
    igraph_vector_int_destroy(&mv);
  }
  gd_alg_status st = scope_leave(rc, "igraph_modularity", err);
  if (st == GD_ALG_OK)
    *ret = q;
  return st;
}

const char *gd_ig_version(void) {
  const char *v = NULL;
  igraph_version(&v, NULL, NULL, NULL);
  return v ? v : IGRAPH_VERSION;
}
