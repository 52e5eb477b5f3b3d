/*
 * The one graphctl file that includes igraph: an ng_graph as an igraph_t
 * with attributes (igraph's C attribute handler, igraph_cattribute_table),
 * GraphML output and layouts.
 *
 * igraph's default error handler aborts; here every igraph call runs under
 * igraph_error_handler_printignore (installed per call, the previous
 * handler restored), so an igraph error becomes -1 and a message, and
 * graphctl exits with a status instead of a core dump. graphctl is single
 * threaded where it calls igraph.
 */
#include "netgraph.h"

#include <igraph/igraph.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_name[2] = {"entity", "seller"};

/* Sets attributes one value at a time (VAN_set and friends create the
 * attribute on first use); stops at the first error. */
static igraph_error_t build(const ng_graph *g, igraph_t *ig) {
  igraph_vector_int_t ev;
  IGRAPH_CHECK(igraph_vector_int_init(&ev, (igraph_integer_t)(2 * g->nedges)));
  IGRAPH_FINALLY(igraph_vector_int_destroy, &ev);
  for (size_t i = 0; i < g->nedges; i++) {
    VECTOR(ev)[2 * i] = (igraph_integer_t)g->edges[i].a;
    VECTOR(ev)[2 * i + 1] = (igraph_integer_t)g->edges[i].b;
  }
  IGRAPH_CHECK(igraph_empty(ig, (igraph_integer_t)g->nnodes, IGRAPH_UNDIRECTED));
  IGRAPH_FINALLY(igraph_destroy, ig);
  IGRAPH_CHECK(igraph_add_edges(ig, &ev, NULL));

  IGRAPH_CHECK(SETGAS(ig, "source", g->source));
  IGRAPH_CHECK(SETGAN(ig, "snapshot_id", (igraph_real_t)g->snapshot_id));
  IGRAPH_CHECK(SETGAB(ig, "cut", g->cut));
  IGRAPH_CHECK(SETGAS(ig, "cut_note", g->cut_note));

  for (size_t i = 0; i < g->nnodes; i++) {
    const ng_node *n = &g->nodes[i];
    igraph_integer_t v = (igraph_integer_t)i;
    IGRAPH_CHECK(SETVAS(ig, "kind", v, kind_name[n->seller]));
    IGRAPH_CHECK(SETVAS(ig, "type", v, gd_type_name(n->type)));
    IGRAPH_CHECK(SETVAS(ig, "key", v, n->key));
    IGRAPH_CHECK(SETVAS(ig, "labels", v, n->labels));
    IGRAPH_CHECK(SETVAB(ig, "flagged", v, n->flagged));
    IGRAPH_CHECK(SETVAN(ig, "cluster_id", v, (igraph_real_t)n->cluster_id));
    IGRAPH_CHECK(SETVAN(ig, "cluster_risk", v, n->cluster_risk));
    IGRAPH_CHECK(SETVAN(ig, "seller_count", v, (igraph_real_t)n->seller_count));
    IGRAPH_CHECK(SETVAB(ig, "hub", v, n->hub));
    IGRAPH_CHECK(SETVAN(ig, "evidence_weight", v, n->weight));
    IGRAPH_CHECK(SETVAN(ig, "corroboration", v, n->corroboration));
    IGRAPH_CHECK(SETVAB(ig, "evidence_context", v, n->context));
    IGRAPH_CHECK(SETVAN(ig, "users", v, (igraph_real_t)n->users));
    IGRAPH_CHECK(SETVAN(ig, "first_seen", v, (igraph_real_t)n->first_seen));
    IGRAPH_CHECK(SETVAN(ig, "last_seen", v, (igraph_real_t)n->last_seen));
    IGRAPH_CHECK(SETVAN(ig, "hops", v, (igraph_real_t)n->hops));
    IGRAPH_CHECK(SETVAN(ig, "graphd_id", v, (igraph_real_t)n->id));
  }
  for (size_t i = 0; i < g->nedges; i++) {
    const ng_edge *e = &g->edges[i];
    igraph_integer_t x = (igraph_integer_t)i;
    IGRAPH_CHECK(SETEAS(ig, "relation", x, e->direct ? "direct" : "uses"));
    IGRAPH_CHECK(SETEAN(ig, "first_seen", x, (igraph_real_t)e->first_seen));
    IGRAPH_CHECK(SETEAN(ig, "last_seen", x, (igraph_real_t)e->last_seen));
    IGRAPH_CHECK(SETEAN(ig, "count", x, (igraph_real_t)e->count));
    IGRAPH_CHECK(SETEAN(ig, "weight", x, e->weight));
  }
  igraph_vector_int_destroy(&ev);
  IGRAPH_FINALLY_CLEAN(2);
  return IGRAPH_SUCCESS;
}

typedef struct guard {
  igraph_error_handler_t *err;
  igraph_warning_handler_t *warn;
  igraph_attribute_table_t *attr;
} guard;

static guard guard_on(void) {
  guard gd;
  gd.err = igraph_set_error_handler(igraph_error_handler_printignore);
  gd.warn = igraph_set_warning_handler(igraph_warning_handler_ignore);
  gd.attr = igraph_set_attribute_table(&igraph_cattribute_table);
  return gd;
}

static void guard_off(guard gd) {
  igraph_set_error_handler(gd.err);
  igraph_set_warning_handler(gd.warn);
  igraph_set_attribute_table(gd.attr);
}

int ng_write_graphml(const ng_graph *g, FILE *f, char *err, size_t errsize) {
  guard gd = guard_on();
  igraph_t ig;
  igraph_error_t e = build(g, &ig);
  if (e == IGRAPH_SUCCESS) {
    e = igraph_write_graph_graphml(&ig, f, true);
    igraph_destroy(&ig);
  }
  guard_off(gd);
  if (e != IGRAPH_SUCCESS) {
    snprintf(err, errsize, "igraph: %s", igraph_strerror(e));
    return -1;
  }
  return 0;
}

int ng_layout(const ng_graph *g, unsigned long seed, double *ret_xy, char *err,
              size_t errsize) {
  if (g->nnodes == 0)
    return 0;
  guard gd = guard_on();
  igraph_t ig;
  igraph_matrix_t m;
  igraph_error_t e = igraph_matrix_init(&m, 0, 0);
  bool have_matrix = e == IGRAPH_SUCCESS, have_graph = false;
  if (e == IGRAPH_SUCCESS) {
    igraph_vector_int_t ev;
    e = igraph_vector_int_init(&ev, (igraph_integer_t)(2 * g->nedges));
    if (e == IGRAPH_SUCCESS) {
      for (size_t i = 0; i < g->nedges; i++) {
        VECTOR(ev)[2 * i] = (igraph_integer_t)g->edges[i].a;
        VECTOR(ev)[2 * i + 1] = (igraph_integer_t)g->edges[i].b;
      }
      e = igraph_create(&ig, &ev, (igraph_integer_t)g->nnodes, IGRAPH_UNDIRECTED);
      have_graph = e == IGRAPH_SUCCESS;
      igraph_vector_int_destroy(&ev);
    }
  }
  /* Attraction along an edge is 1 / sqrt(users of its entity): a
   * warehouse most of a ring uses pulls each seller gently and the devices
   * and accounts that smaller groups share pull hard, so a big cluster
   * shows its groups instead of a ball around its busiest entity. */
  igraph_vector_t w;
  bool have_w = false;
  if (e == IGRAPH_SUCCESS) {
    e = igraph_vector_init(&w, (igraph_integer_t)g->nedges);
    have_w = e == IGRAPH_SUCCESS;
  }
  if (e == IGRAPH_SUCCESS) {
    for (size_t i = 0; i < g->nedges; i++) {
      const ng_node *b = &g->nodes[g->edges[i].b];
      VECTOR(w)[i] = g->edges[i].direct || b->users < 2 ? 1.0 : 1.0 / sqrt((double)b->users);
    }
    igraph_rng_seed(igraph_rng_default(), seed);
    e = igraph_layout_fruchterman_reingold(&ig, &m, false, 500,
                                           sqrt((double)g->nnodes), IGRAPH_LAYOUT_NOGRID,
                                           g->nedges ? &w : NULL, NULL, NULL, NULL, NULL);
  }
  if (have_w)
    igraph_vector_destroy(&w);
  if (e == IGRAPH_SUCCESS) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < g->nnodes; i++) {
      double x = MATRIX(m, i, 0), y = MATRIX(m, i, 1);
      x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
    double sx = x1 > x0 ? x1 - x0 : 1, sy = y1 > y0 ? y1 - y0 : 1;
    for (size_t i = 0; i < g->nnodes; i++) {
      ret_xy[2 * i] = x1 > x0 ? (MATRIX(m, i, 0) - x0) / sx : 0.5;
      ret_xy[2 * i + 1] = y1 > y0 ? (MATRIX(m, i, 1) - y0) / sy : 0.5;
    }
  }
  if (have_graph)
    igraph_destroy(&ig);
  if (have_matrix)
    igraph_matrix_destroy(&m);
  guard_off(gd);
  if (e != IGRAPH_SUCCESS) {
    snprintf(err, errsize, "igraph: %s", igraph_strerror(e));
    return -1;
  }
  return 0;
}
