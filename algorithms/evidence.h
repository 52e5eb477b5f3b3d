/*
 * Evidence weights: how much a shared entity says about two sellers.
 *
 * An entity shared by few sellers is strong evidence that they are linked;
 * one shared by thousands (a logistics park, a carrier NAT address) is
 * none. Every part of graphd that weighs shared entities (investigator
 * traversal, the clustering projection) uses these functions, so the two
 * always agree.
 *
 * No LMDB, no gRPC, no igraph: plain numbers in, plain numbers out.
 */
#ifndef GD_ALGORITHMS_EVIDENCE_H
#define GD_ALGORITHMS_EVIDENCE_H

#include <stdbool.h>
#include <stdint.h>

/* Entity type numbers, as in graphd.v1.EntityType (1..7). */
#define GD_EV_TYPES 8

typedef struct gd_evidence_params {
  /* An entity of type t shared by more than hub_cap[t] sellers is a hub:
   * skipped in traversal and projection, and reported as skipped. */
  uint64_t hub_cap[GD_EV_TYPES];
  /* Per-type weight multiplier w(t). */
  double type_weight[GD_EV_TYPES];
} gd_evidence_params;

/* Fills p with the defaults (see evidence.c for why these values). */
void gd_evidence_defaults(gd_evidence_params *p);

/*
 * Rarity r(n) of an entity shared by n sellers: 1 / log2(1 + n), so
 * r(1) = 1, r(3) = 0.5, r(15) = 0.25, r(1023) = 0.1. 0 for n = 0.
 * O(1).
 */
double gd_rarity(uint64_t n_sellers);

/* True if an entity of `type` with n sellers is over its hub cap. */
bool gd_is_hub(const gd_evidence_params *p, int type, uint64_t n_sellers);

/* The contribution w(type) * r(n) of one shared entity to a seller-seller
 * tie; 0 for hubs. */
double gd_evidence_weight(const gd_evidence_params *p, int type, uint64_t n_sellers);

#endif
