/*
 * Evidence weights: how much a shared entity says about two sellers.
 *
 * Every part of graphd that weighs shared entities (the clustering
 * projection, LinkedSellers, FindPaths, RankSuspects, the worker's supply
 * sources) uses these functions, so they always agree on what counts as
 * evidence and how much.
 *
 * The rule (GD_EV_CORROBORATED, the default)
 *
 *   An entity e of type t shared by n >= 2 sellers ties each pair of them
 *   with
 *
 *     weight(e) = w(t) * s(n, c),   s(n, c) = 1/(n-1) + (1 - 1/(n-1)) * c
 *
 *   where w(t) is the type weight, 1/(n-1) is Newman's collaboration
 *   weighting (each seller receives a total of w(t) from e, however many
 *   share it, so a crowd's pairwise ties fall as 1/n), and c in [0, 1],
 *   e's corroboration (below), lifts e back towards a full w(t) per pair
 *   when e's sellers are also tied to each other through *other* entities. An entity whose weight is at
 *   most GD_EV_MIN_WEIGHT is *context*, not evidence: it ties nobody, and
 *   queries report it beside the hubs. Entities over their type's hub cap
 *   are hubs as before (the cap only bounds the projection's cost now).
 *
 *   So a crowd that shares one entity and nothing else (a logistics park,
 *   a carrier NAT address, an office) can never make a cluster or a linked
 *   seller by itself: w(t)/(n-1) <= GD_EV_MIN_WEIGHT once n >= 1 + 5 w(t)
 *   (6 sellers on a personal identifier, 5 on an address, 4 on an IP). A
 *   ring's warehouse of 100 sellers keeps its strength because the ring's
 *   devices and mule accounts tie its users to each other; a park of the
 *   same size does not, because its users share nothing else.
 *
 *   Corroboration c of e: take the GD_EV_SAMPLE sellers of e with the
 *   lowest ids (all of them when there are fewer: k sellers), and add up
 *   the pairs of them that other entities tie, beyond chance:
 *
 *     mass = sum over other entities f (not hubs, w(type f) > 0, n_f >= 2)
 *              of w(type f) * max(0, C(m_f, 2) - C(n_f, 2) (k/N)^2)
 *          + w(seller) * (direct seller-seller links among the k)
 *     c = min(1, mass / (GD_EV_CORROBORATION_FULL * C(k, 2)))
 *
 *   where m_f is the number of the k sellers that use f and N the number
 *   of sellers in the graph: C(n_f, 2)(k/N)^2 is how many pairs of a random
 *   k-sample f would cover by chance, so big, widely used entities do not
 *   corroborate each other by coincidence; c = 1 (full corroboration) once
 *   a tenth of the pairs are tied beyond chance. The sample makes the cost
 *   of c at most k times a seller's degree, whatever n is, and it is the
 *   same sample, read in the same order, for every caller (the lowest ids),
 *   so the clustering worker and the queries compute the same c.
 *
 *   The sampled sellers are read one by one and mass only grows, so the
 *   reading stops as soon as c is 1 (gd_corroboration_full: mass reached a
 *   tenth of C(k, 2)). (Deciding earlier on the pairs of the first few
 *   sellers read was tried and dropped: a share of pairs grows with the
 *   square of a subgroup's share, so a handful of franchise shops among an
 *   address's first sellers would mark a whole mall corroborated.)
 *
 *   The default CPM resolution is GD_EV_MIN_WEIGHT: a cluster must be at
 *   least as dense as the ties of one entity that counts as evidence. The
 *   weights are normalised per seller (Newman), so this does not depend on
 *   the size of the marketplace or on how its shared entities are
 *   distributed. docs/ARCHITECTURE.md ("Evidence weighting") records the
 *   candidates measured against each other and why this one was chosen.
 *
 * The previous rule (GD_EV_RARITY) is kept for comparison and for old
 * specs: weight = w(t) / log2(1 + n), no corroboration, no context cut,
 * default resolution 0.1. It lets a crowd of up to ~1000 sellers on one
 * entity form a cluster.
 *
 * No LMDB, no gRPC, no igraph: plain numbers in, plain numbers out.
 */
#ifndef GD_ALGORITHMS_EVIDENCE_H
#define GD_ALGORITHMS_EVIDENCE_H

#include <stdbool.h>
#include <stdint.h>

/* Entity type numbers, as in graphd.v1.EntityType (1..7). */
#define GD_EV_TYPES 8
/* graphd.v1 ENTITY_TYPE_SELLER: direct seller-seller links. */
#define GD_EV_SELLER 1

/* Sellers of an entity examined for its corroboration. */
#define GD_EV_SAMPLE 64
/* The share of an entity's sellers' pairs tied by other evidence at which
 * it counts with its full type weight (c = 1): a tenth (chance gives about
 * a thousandth on sellergen and on real-shaped heavy tails; a ring's
 * warehouse a tenth to all). */
#define GD_EV_CORROBORATION_FULL 0.1
/* Weights at or below this are context, not evidence; also the default
 * resolution of Leiden CPM under this rule. */
#define GD_EV_MIN_WEIGHT 0.2
/* The previous rule's default CPM resolution. */
#define GD_EV_RARITY_RESOLUTION 0.1

typedef enum gd_evidence_rule {
  GD_EV_CORROBORATED = 0, /* the default, above */
  GD_EV_RARITY = 1,       /* w(t) / log2(1 + n), hub caps only */
} gd_evidence_rule;

typedef struct gd_evidence_params {
  /* An entity of type t shared by more than hub_cap[t] sellers is a hub:
   * skipped in traversal and projection, and reported as skipped. */
  uint64_t hub_cap[GD_EV_TYPES];
  /* Per-type weight multiplier w(t). */
  double type_weight[GD_EV_TYPES];
  gd_evidence_rule rule;
} gd_evidence_params;

/* Fills p with the defaults (see evidence.c for why these values). */
void gd_evidence_defaults(gd_evidence_params *p);

/* The rule's name ("corroborated", "rarity"); gd_evidence_rule_parse
 * returns 0 and sets *ret, or -1 for an unknown name. */
const char *gd_evidence_rule_name(gd_evidence_rule r);
int gd_evidence_rule_parse(const char *name, gd_evidence_rule *ret);

/* The default Leiden CPM resolution under p's rule. */
double gd_evidence_resolution(const gd_evidence_params *p);

/* Rarity r(n) = 1 / log2(1 + n) of the previous rule; 0 for n = 0. */
double gd_rarity(uint64_t n_sellers);

/* True if an entity of `type` with n sellers is over its hub cap. */
bool gd_is_hub(const gd_evidence_params *p, int type, uint64_t n_sellers);

/* True if an entity of `type` with n sellers counts in other entities'
 * corroboration: not a hub, a positive type weight, at least 2 sellers.
 * Direct seller links are counted separately (gd_corroboration_links). */
bool gd_evidence_corroborates(const gd_evidence_params *p, int type, uint64_t n_sellers);

/* True if the weight of such an entity depends on its corroboration (the
 * caller must compute it): the corroborated rule, not a hub, a positive
 * type weight, n >= 3 (with 2 sellers Newman's weight is already 1). */
bool gd_evidence_needs_corroboration(const gd_evidence_params *p, int type, uint64_t n_sellers);

/*
 * The weight one shared entity adds to each pair of its sellers: 0 for
 * hubs, unknown types, a zero type weight, n < 2 under the corroborated
 * rule, and context entities (weight <= GD_EV_MIN_WEIGHT). corroboration
 * is c in [0, 1] (ignored unless gd_evidence_needs_corroboration; NaN is
 * taken as 0, values over 1 as 1). Direct links (type SELLER) weigh
 * type_weight[SELLER].
 */
double gd_evidence_weight(const gd_evidence_params *p, int type, uint64_t n_sellers,
                          double corroboration);

/* True if a non-hub entity is context under the rule: it has a positive
 * type weight and at least 2 sellers, but its weight is 0. */
bool gd_evidence_is_context(const gd_evidence_params *p, int type, uint64_t n_sellers,
                            double corroboration);

/* Accumulates one entity's corroboration (the formula above), one sampled
 * seller's use of another entity at a time. */
typedef struct gd_corroboration {
  int64_t k;           /* sampled sellers */
  double chance;       /* (k / N)^2 */
  double mass;
  double full;         /* mass at which c = 1 */
} gd_corroboration;

/* Starts: k sellers sampled out of a graph of population sellers. */
void gd_corroboration_begin(gd_corroboration *c, int64_t k, uint64_t population);
/* One more sampled seller uses entity f of `type` with n_f sellers, which
 * m sampled sellers used before it (so m_f becomes m + 1). Entities that
 * do not corroborate (gd_evidence_corroborates) add nothing. O(1). */
void gd_corroboration_use(gd_corroboration *c, const gd_evidence_params *p, int type,
                          uint64_t n_f, int64_t m);
/* `pairs` more distinct pairs of sampled sellers joined by direct links. */
void gd_corroboration_links(gd_corroboration *c, const gd_evidence_params *p, int64_t pairs);
/* True once c is 1 whatever the rest of the sample uses: callers check
 * it after each seller and stop reading there. */
bool gd_corroboration_full(const gd_corroboration *c);
/* c in [0, 1]; 0 when k < 2. */
double gd_corroboration_end(const gd_corroboration *c);

#endif
