/*
 * The evidence projection (docs/ARCHITECTURE.md, "Evidence weighting"):
 * from sellers and the entities they share to a weighted seller-seller
 * graph. This is the one implementation of it; the clustering worker and
 * the benchmarks call it.
 *
 * Two sellers a and b are tied with weight
 *
 *   tie(a, b) = sum over entities e shared by a and b of
 *                 gd_evidence_weight(params, type(e), n_e, c_e)
 *             + type_weight[SELLER] for each direct a-b link
 *
 * where n_e is the number of sellers of e and c_e its corroboration
 * (evidence.h: computed here over e's first GD_EV_SAMPLE listed sellers,
 * from the other candidate entities and direct links among them). Entities
 * over their type's hub cap contribute nothing and are counted in the
 * stats; so are entities of an unknown type or a zero type weight, and
 * context entities (weight 0 under the rule). Ties lighter than a minimum
 * weight are dropped.
 *
 * No LMDB, no igraph: plain arrays in, a gd_csr out.
 */
#ifndef GD_ALGORITHMS_PROJECTION_H
#define GD_ALGORITHMS_PROJECTION_H

#include <stdint.h>

#include "alg_common.h"
#include "csr.h"
#include "evidence.h"

/* The entity type of direct seller-seller links (graphd.v1 ENTITY_TYPE_SELLER). */
#define GD_PROJ_SELLER_TYPE 1

/*
 * The bipartite seller-entity incidence plus direct links. Sellers are
 * numbered 0..n_sellers-1 (the caller keeps the map to store ids), entities
 * 0..n_entities-1.
 *
 * Entity e's sellers are ent_sellers[ent_off[e] .. ent_off[e + 1]); a
 * seller listed twice for one entity counts once. Corroboration samples
 * the first GD_EV_SAMPLE distinct sellers listed: list them in ascending
 * store id (as the store's export does) so that the sample is the one the
 * queries take (the lowest ids). ent_type[e] is its
 * graphd.v1 EntityType number (2 = ADDRESS ... 7 = IP).
 *
 * ent_n (optional) gives each entity's seller count n_e for rarity and the
 * hub test, when it differs from the listed sellers: e.g. the store's count
 * over all time while the lists hold only the sellers active in a time
 * window, or a sample. NULL: n_e = number of distinct listed sellers.
 *
 * link_a[i], link_b[i] (i < n_links) are direct seller-seller links; each
 * listed link adds type_weight[SELLER] once (list a link once even if it
 * was observed many times). Self-links are ignored.
 */
typedef struct gd_projection_input {
  int64_t n_sellers;
  int64_t n_entities;
  const uint8_t *ent_type;
  const int64_t *ent_off;
  const int64_t *ent_sellers;
  const uint64_t *ent_n;
  int64_t n_links;
  const int64_t *link_a;
  const int64_t *link_b;
  /* Sellers in the whole graph, for corroboration's chance term (0: use
   * n_sellers). */
  uint64_t population;
  /* Optional outputs, n_entities each: each entity's weight under the
   * rule (0 for hubs, context, single-seller and zero-weight entities),
   * and 1 for context entities (under the cap, but weight 0), else 0. */
  double *ent_weight_out;
  uint8_t *ent_context_out;
  /* Optional input, n_entities: each entity's corroboration, instead of
   * computing it from these lists (gd_projection_corroboration over the
   * whole graph, when these lists hold only a time window). */
  const double *ent_corroboration;
} gd_projection_input;

/* What the projection kept and skipped, for the snapshot manifest. */
typedef struct gd_projection_stats {
  int64_t entities;              /* entities in the input */
  int64_t entities_used;         /* contributed ties: not a hub, weight > 0, >= 2 sellers */
  int64_t entities_context;      /* >= 2 sellers, not a hub, but weight 0 under the rule */
  int64_t entities_corroborated; /* corroboration computed and > 0 */
  int64_t corroboration_visits;  /* seller-entity rows walked for corroboration */
  int64_t entities_single;       /* fewer than 2 listed sellers: no tie to make */
  int64_t entities_zero_weight;  /* unknown type or zero type weight */
  int64_t hubs_skipped;          /* over their type's hub cap */
  int64_t hubs_skipped_by_type[GD_EV_TYPES];
  int64_t hub_incidences_skipped; /* sum of listed sellers over skipped hubs */
  int64_t links_used;            /* direct links that added weight (self-links excluded) */
  int64_t pair_visits;           /* sum over used entities of n_e (n_e - 1): the work done */
  int64_t ties;                  /* seller-seller edges in the result */
  int64_t ties_filtered;         /* ties dropped for weighing less than min_tie_weight */
} gd_projection_stats;

/*
 * Builds the seller-seller evidence graph.
 *
 * params: hub caps and type weights (gd_evidence_defaults() for the
 *   defaults). min_tie_weight: ties with weight < min_tie_weight are
 *   dropped (0 keeps all; must be finite and >= 0).
 * ret_graph: on success, n_sellers vertices; free with gd_csr_free.
 * ret_stats: may be NULL; written on success only.
 *
 * Deterministic: each tie is summed in ascending entity order, then its
 * direct links in input order, from both ends, so both halves of an edge
 * are the same double and the same input always gives the same bytes.
 *
 * Cost: O(S + L + C + sum over used entities of n_e^2 + sum over sellers
 * of d log d) time, where S is the number of listed incidences, L the
 * number of links, C (corroboration_visits) at most GD_EV_SAMPLE times a
 * seller's candidate degree per candidate entity, and d a seller's number
 * of ties (each row is sorted once). The
 * n_e^2 term dominates: a seller's row is built by walking every used
 * entity of the seller, so an entity with n_e sellers is walked n_e times;
 * hub caps bound it. Memory O(n_sellers + S + L + ties): the row is
 * accumulated in a dense n_sellers scratch, so no pair list is ever
 * materialised, unlike a naive pair-emitting projection whose memory grows
 * with sum n_e^2.
 *
 * Errors: INVALID (bad sizes or offsets, a seller index out of range, a
 * bad min_tie_weight; the message names the entity or link), NOMEM.
 */
gd_alg_status gd_projection_build(const gd_projection_input *in, const gd_evidence_params *params,
                                  double min_tie_weight, gd_csr *ret_graph,
                                  gd_projection_stats *ret_stats, gd_alg_error *err);

/*
 * Each entity's corroboration c as gd_projection_build computes it (0 for
 * entities whose weight does not depend on it), into ret_c (n_entities
 * doubles), without building the graph: for a time-windowed projection,
 * whose corroboration must come from the whole graph (an entity's users
 * are a group or not whatever the window; its seller count is taken over
 * all time too). in->ent_corroboration must be NULL. Cost: the candidate
 * lists and the corroboration pass of gd_projection_build, no n_e^2 term.
 * Errors as gd_projection_build.
 */
gd_alg_status gd_projection_corroboration(const gd_projection_input *in,
                                          const gd_evidence_params *params, double *ret_c,
                                          gd_alg_error *err);

#endif
