/*
 * The evidence rule (evidence.h) and why it is this one.
 *
 * Measured against the candidates on sellergen networks of 10,000
 * sellers, 6% in rings (tools/bench/evidence_candidates.py DIR: each
 * candidate projected in Python with the default caps and type weights,
 * python-igraph Leiden CPM at its own best resolution of 0.005..0.5, pair
 * F1 over rings, families and franchise chains):
 *
 *                              classic    heavy      adversarial
 *                              (seed 21)  (seed 1)   (seed 1)
 *   rarity 1/log2(1+n) (old)   0.919      0.492      0.491
 *   Newman 1/(n-1)             0.933      0.607      0.525
 *   resource allocation 1/n    0.941      0.630      0.588
 *   validated (hypergeometric,
 *     Tumminello et al. 2011)  0.453      0.201      0.446
 *   corroborated (this rule)   0.967      0.988      0.989
 *
 * Newman and resource allocation make a crowd's pairwise ties fall with
 * its size, but a ring's warehouse falls just as fast, so no resolution
 * separates a ring of 100 on one warehouse from a park of 100 (honest
 * share in the rings' clusters 0.10 to 0.28 at their best F1). The
 * validated projection keeps only pairs that share more entities than
 * their degrees predict; most pairs of a ring share only the warehouse,
 * so it drops them (recall 0.11 to 0.32). Corroboration looks at what the
 * entity's sellers share *besides* it, which is exactly what tells a
 * warehouse (its users also share the ring's devices and mule accounts)
 * from a park (its users share nothing else). Neal's stochastic degree
 * sequence backbone was not measured: like the hypergeometric test it
 * scores pairs, not entities, and fails for the same reason.
 *
 * Through the daemon with every default (tools/bench/detection.py, three
 * seeds per profile), the rule gives ring recovery 0.959 to 1.000, pair F1
 * 0.929 to 1.000 and honest share at most 0.0035; the old defaults 0.46 to
 * 0.97 F1, and the best fixed spec of a sweep under the old rule (every cap
 * 20, resolution 0.01) 0.70 to 0.97 with up to 0.24 honest share. The
 * default resolution 0.2 (GD_EV_MIN_WEIGHT) is below the prototype's best
 * (0.05 to 0.1) on purpose: at 0.1 camouflage ties pulled up to 2.8% honest
 * sellers into small rings, at 0.2 none passed 0.35%.
 */
#include "evidence.h"

#include <math.h>
#include <string.h>

/*
 * Defaults. Hub caps now only bound the projection's cost (the sum of n^2
 * over kept entities): the corroborated rule already makes an uncorroborated
 * crowd worthless, so the caps are set where a shared entity is a public
 * service whatever else its users share. A device, payment account, phone
 * or e-mail is personal, so hundreds of sellers on one is a service; a
 * postal address can be a warehouse used by a ring of hundreds, so its cap
 * is higher; an IP address is shared by carrier NAT and offices. Type
 * weights follow the same reading: personal identifiers count fully,
 * addresses a little less, IPs half.
 */
void gd_evidence_defaults(gd_evidence_params *p) {
  static const uint64_t caps[GD_EV_TYPES] = {0, 1000, 500, 200, 200, 100, 100, 100};
  static const double weights[GD_EV_TYPES] = {0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 0.5};
  for (int t = 0; t < GD_EV_TYPES; t++) {
    p->hub_cap[t] = caps[t];
    p->type_weight[t] = weights[t];
  }
  p->rule = GD_EV_CORROBORATED;
}

const char *gd_evidence_rule_name(gd_evidence_rule r) {
  return r == GD_EV_RARITY ? "rarity" : r == GD_EV_CORROBORATED ? "corroborated" : "unknown";
}

int gd_evidence_rule_parse(const char *name, gd_evidence_rule *ret) {
  if (strcmp(name, "corroborated") == 0)
    *ret = GD_EV_CORROBORATED;
  else if (strcmp(name, "rarity") == 0)
    *ret = GD_EV_RARITY;
  else
    return -1;
  return 0;
}

double gd_evidence_resolution(const gd_evidence_params *p) {
  return p->rule == GD_EV_RARITY ? GD_EV_RARITY_RESOLUTION : GD_EV_MIN_WEIGHT;
}

double gd_rarity(uint64_t n) { return n == 0 ? 0.0 : 1.0 / log2(1.0 + (double)n); }

static bool type_ok(int type) { return type > 0 && type < GD_EV_TYPES; }

bool gd_is_hub(const gd_evidence_params *p, int type, uint64_t n) {
  if (!type_ok(type) || type == GD_EV_SELLER)
    return false;
  return n > p->hub_cap[type];
}

static bool weighs(const gd_evidence_params *p, int type) {
  double w = type_ok(type) ? p->type_weight[type] : 0.0;
  return isfinite(w) && w > 0;
}

bool gd_evidence_corroborates(const gd_evidence_params *p, int type, uint64_t n) {
  return type != GD_EV_SELLER && weighs(p, type) && n >= 2 && !gd_is_hub(p, type, n);
}

bool gd_evidence_needs_corroboration(const gd_evidence_params *p, int type, uint64_t n) {
  return p->rule == GD_EV_CORROBORATED && n >= 3 && gd_evidence_corroborates(p, type, n);
}

double gd_evidence_weight(const gd_evidence_params *p, int type, uint64_t n, double c) {
  if (!weighs(p, type))
    return 0.0;
  double tw = p->type_weight[type];
  if (type == GD_EV_SELLER)
    return tw;
  if (gd_is_hub(p, type, n))
    return 0.0;
  if (p->rule == GD_EV_RARITY)
    return tw * gd_rarity(n);
  if (n < 2)
    return 0.0;
  double newman = 1.0 / (double)(n - 1);
  double f = n >= 3 && c > 0 ? fmin(1.0, c) : 0.0;
  double w = tw * (newman + (1.0 - newman) * f);
  return w > GD_EV_MIN_WEIGHT ? w : 0.0;
}

bool gd_evidence_is_context(const gd_evidence_params *p, int type, uint64_t n, double c) {
  return gd_evidence_corroborates(p, type, n) && gd_evidence_weight(p, type, n, c) == 0.0;
}

static double pairs(double m) { return m * (m - 1.0) / 2.0; }

void gd_corroboration_begin(gd_corroboration *c, int64_t k, uint64_t population) {
  c->k = k;
  c->mass = 0.0;
  double share = population > 0 ? (double)k / (double)population : 1.0;
  c->chance = share > 1.0 ? 1.0 : share * share;
  c->full = GD_EV_CORROBORATION_FULL * pairs((double)k);
}

/* f's term w max(0, C(m_f, 2) - C(n_f, 2) chance) grows with m_f: add the
 * step from m to m + 1 users, so that mass is always the sum so far. */
void gd_corroboration_use(gd_corroboration *c, const gd_evidence_params *p, int type, uint64_t n_f,
                          int64_t m) {
  if (m < 1 || !gd_evidence_corroborates(p, type, n_f))
    return;
  double by_chance = pairs((double)n_f) * c->chance;
  double before = pairs((double)m) - by_chance, after = pairs((double)(m + 1)) - by_chance;
  if (after > 0)
    c->mass += p->type_weight[type] * (after - (before > 0 ? before : 0.0));
}

bool gd_corroboration_full(const gd_corroboration *c) { return c->k >= 2 && c->mass >= c->full; }

void gd_corroboration_links(gd_corroboration *c, const gd_evidence_params *p, int64_t n) {
  if (n > 0 && weighs(p, GD_EV_SELLER))
    c->mass += p->type_weight[GD_EV_SELLER] * (double)n;
}

double gd_corroboration_end(const gd_corroboration *c) {
  if (c->k < 2)
    return 0.0;
  double v = c->mass / c->full;
  return v > 1.0 ? 1.0 : v;
}
