/* Unit tests for algorithms/: evidence weights and corroboration. */
#include <math.h>
#include <string.h>

#include "evidence.h"
#include "place.h"
#include "tap.h"

enum { SELLER = 1, ADDRESS = 2, PAYMENT = 3, DEVICE = 4, PHONE = 5, EMAIL = 6, IP = 7 };

static bool near(double a, double b) { return fabs(a - b) < 1e-12; }

static void test_rarity(void) {
  CHECK(gd_rarity(0) == 0.0);
  CHECK(fabs(gd_rarity(1) - 1.0) < 1e-12);
  CHECK(fabs(gd_rarity(3) - 0.5) < 1e-12);
  CHECK(fabs(gd_rarity(15) - 0.25) < 1e-12);
  /* Strictly falling with the seller count. */
  for (uint64_t n = 1; n < 10000; n++)
    CHECK(gd_rarity(n + 1) < gd_rarity(n));
}

static void test_hubs(void) {
  gd_evidence_params p;
  gd_evidence_defaults(&p);
  CHECK(p.rule == GD_EV_CORROBORATED);
  CHECK(!gd_is_hub(&p, ADDRESS, 100));
  CHECK(gd_is_hub(&p, ADDRESS, 3000));
  CHECK(gd_evidence_weight(&p, ADDRESS, 3000, 1.0) == 0.0);
  CHECK(!gd_is_hub(&p, 99, 1u << 30));
  CHECK(!gd_is_hub(&p, SELLER, 1u << 30)); /* a seller is never shared */
  CHECK(gd_evidence_weight(&p, 0, 5, 1.0) == 0.0);
  CHECK(gd_evidence_weight(&p, 99, 5, 1.0) == 0.0);
  /* The previous rule, kept for comparison. */
  p.rule = GD_EV_RARITY;
  CHECK(near(gd_evidence_weight(&p, DEVICE, 3, 0), 0.5));
  CHECK(near(gd_evidence_weight(&p, ADDRESS, 15, 0), 0.8 * 0.25));
  CHECK(gd_evidence_weight(&p, DEVICE, 4, 0) > gd_evidence_weight(&p, DEVICE, 40, 0));
  CHECK(near(gd_evidence_resolution(&p), 0.1));
}

/* The corroborated rule's exact values and its two promises: an
 * uncorroborated crowd never counts, a corroborated entity counts fully
 * whatever its size. */
static void test_rule(void) {
  gd_evidence_params p;
  gd_evidence_defaults(&p);
  CHECK(near(gd_evidence_resolution(&p), GD_EV_MIN_WEIGHT));
  /* Two sellers on a device: Newman's 1/(n-1) = 1, no corroboration needed. */
  CHECK(!gd_evidence_needs_corroboration(&p, DEVICE, 2));
  CHECK(near(gd_evidence_weight(&p, DEVICE, 2, 0), 1.0));
  CHECK(near(gd_evidence_weight(&p, ADDRESS, 2, 0), 0.8));
  CHECK(gd_evidence_weight(&p, DEVICE, 1, 1.0) == 0.0);
  /* Uncorroborated: w(t)/(n-1), context once <= GD_EV_MIN_WEIGHT. */
  CHECK(gd_evidence_needs_corroboration(&p, PHONE, 3));
  CHECK(near(gd_evidence_weight(&p, PHONE, 3, 0), 0.5));
  CHECK(near(gd_evidence_weight(&p, PHONE, 5, 0), 0.25));
  CHECK(gd_evidence_weight(&p, PHONE, 6, 0) == 0.0); /* 0.2: context */
  CHECK(gd_evidence_is_context(&p, PHONE, 6, 0));
  CHECK(near(gd_evidence_weight(&p, ADDRESS, 4, 0), 0.8 / 3));
  CHECK(gd_evidence_weight(&p, ADDRESS, 5, 0) == 0.0);
  CHECK(near(gd_evidence_weight(&p, IP, 3, 0), 0.25));
  CHECK(gd_evidence_weight(&p, IP, 4, 0) == 0.0);
  /* No crowd of any size under the cap counts by itself. */
  for (uint64_t n = 5; n <= 500; n++)
    CHECK(gd_evidence_weight(&p, ADDRESS, n, 0) == 0.0);
  /* Nor with chance-level corroboration (a hundredth of its pairs tied
   * beyond chance: c = 0.1). */
  for (uint64_t n = 20; n <= 500; n++)
    CHECK(gd_evidence_weight(&p, ADDRESS, n, 0.1) == 0.0);
  /* Fully corroborated: the whole type weight, at any size. */
  CHECK(near(gd_evidence_weight(&p, ADDRESS, 300, 1.0), 0.8));
  CHECK(near(gd_evidence_weight(&p, ADDRESS, 300, 7.0), 0.8));
  /* In between: linear in c. */
  double half = gd_evidence_weight(&p, PAYMENT, 101, 0.5);
  CHECK(near(half, 0.01 + 0.99 * 0.5));
  /* Not a corroborator: hubs, zero weights, single sellers. */
  CHECK(!gd_evidence_corroborates(&p, ADDRESS, 501));
  CHECK(!gd_evidence_corroborates(&p, ADDRESS, 1));
  CHECK(!gd_evidence_corroborates(&p, SELLER, 2));
  p.type_weight[IP] = 0;
  CHECK(!gd_evidence_corroborates(&p, IP, 5));
  CHECK(gd_evidence_weight(&p, IP, 2, 1.0) == 0.0);
  CHECK(!gd_evidence_is_context(&p, IP, 5, 0)); /* zero weight: not even context */
}

/* m_f users of f, one at a time, as callers feed them. */
static void uses(gd_corroboration *c, const gd_evidence_params *p, int type, uint64_t n_f,
                 int64_t m_f) {
  for (int64_t m = 0; m < m_f; m++)
    gd_corroboration_use(c, p, type, n_f, m);
}

static void test_corroboration(void) {
  gd_evidence_params p;
  gd_evidence_defaults(&p);
  gd_corroboration c;

  /* A device of 16 users inside a 64-seller sample of 10,000 sellers:
   * C(16, 2) = 120 pairs less chance C(16,2) (64/10000)^2, of the
   * 0.1 C(64, 2) = 201.6 that make c = 1. */
  gd_corroboration_begin(&c, 64, 10000);
  uses(&c, &p, DEVICE, 16, 16);
  CHECK(!gd_corroboration_full(&c));
  CHECK(near(gd_corroboration_end(&c), (120 - 120 * (0.0064 * 0.0064)) / 201.6));
  /* A ring's warehouse: four such devices; full from the second on. */
  uses(&c, &p, DEVICE, 16, 16);
  CHECK(gd_corroboration_full(&c));
  CHECK(gd_corroboration_end(&c) == 1.0);
  CHECK(gd_evidence_weight(&p, ADDRESS, 90, gd_corroboration_end(&c)) == 0.8);

  /* A subgroup decides nothing early: six shops of one chain (a shared
   * phone: 15 pairs) among an address's first 16 sellers leave c at
   * 15 / 201.6, whatever share of the first 16's pairs that is. */
  gd_corroboration_begin(&c, 64, 1u << 30);
  for (int s = 0; s < 64; s++) {
    if (s < 6)
      gd_corroboration_use(&c, &p, PHONE, 6, s);
    CHECK(!gd_corroboration_full(&c));
  }
  CHECK(near(gd_corroboration_end(&c), 15 / 201.6));

  /* A park: its users meet on a big IP only as often as chance says. */
  gd_corroboration_begin(&c, 64, 1000);
  uses(&c, &p, IP, 100, 2); /* 1 pair < C(100,2)(0.064)^2 = 20.3 */
  CHECK(gd_corroboration_end(&c) == 0.0);
  /* Entities that do not corroborate add nothing: hub, single, m < 2. */
  uses(&c, &p, IP, 101, 50);
  uses(&c, &p, DEVICE, 1, 1);
  uses(&c, &p, DEVICE, 9, 1);
  CHECK(gd_corroboration_end(&c) == 0.0);
  /* Fed one user at a time, the mass is the formula's: max(0, C(m,2) -
   * chance) once m passes chance (here C(60,2) (0.5)^2 = 442.5 pairs of
   * chance for an entity of 60 on a sample of half the graph). */
  gd_corroboration_begin(&c, 40, 80);
  uses(&c, &p, PHONE, 60, 31); /* C(31,2) = 465 */
  CHECK(fabs(c.mass - (465 - 442.5)) < 1e-9);
  /* Type weights scale the mass; direct links count a pair each. */
  gd_corroboration_begin(&c, 10, 1u << 30);
  uses(&c, &p, IP, 3, 3);
  gd_corroboration_links(&c, &p, 2);
  CHECK(fabs(gd_corroboration_end(&c) - (0.5 * 3 + 2) / 4.5) < 1e-9);
  /* Capped at 1; fewer than two sampled sellers: 0. */
  gd_corroboration_begin(&c, 3, 1u << 30);
  uses(&c, &p, PHONE, 3, 3);
  uses(&c, &p, EMAIL, 3, 3);
  CHECK(gd_corroboration_end(&c) == 1.0);
  gd_corroboration_begin(&c, 1, 10);
  gd_corroboration_links(&c, &p, 5);
  CHECK(gd_corroboration_end(&c) == 0.0 && !gd_corroboration_full(&c));
}

static void test_rule_names(void) {
  gd_evidence_rule r;
  CHECK(gd_evidence_rule_parse("rarity", &r) == 0 && r == GD_EV_RARITY);
  CHECK(gd_evidence_rule_parse("corroborated", &r) == 0 && r == GD_EV_CORROBORATED);
  CHECK(gd_evidence_rule_parse("log", &r) == -1);
  CHECK(strcmp(gd_evidence_rule_name(GD_EV_RARITY), "rarity") == 0);
}

/* Placement's gains, worked by hand. */
static void test_place(void) {
  /* A ring of 10 tied 3.0 in all, a family of 2 tied 0.9. */
  gd_place_cand c[] = {{.tie = 0.9, .max_tie = 0.9, .size = 2, .volume = 4},
                       {.tie = 3.0, .max_tie = 1.0, .size = 10, .volume = 60}};
  double g;
  gd_place_params cpm = {.algo = GD_COMM_LEIDEN_CPM, .resolution = 0.2};
  /* CPM: 0.9 - 0.4 = 0.5 against 3.0 - 2.0 = 1.0. */
  CHECK(gd_place_best(&cpm, c, 2, &g) == 1 && fabs(g - 1.0) < 1e-12);
  cpm.resolution = 0.35; /* 0.2 against -0.5 */
  CHECK(gd_place_best(&cpm, c, 2, &g) == 0 && fabs(g - 0.2) < 1e-12);
  cpm.resolution = 0.5; /* -0.1 and -2: alone */
  CHECK(gd_place_best(&cpm, c, 2, &g) == -1 && g == 0);
  CHECK(gd_place_best(&cpm, c, 0, &g) == -1);
  /* Modularity, W = 100, k = 3.9: 0.9 - 3.9*4/200 = 0.822; 3.0 - 3.9*60/200 = 1.83. */
  gd_place_params mod = {.algo = GD_COMM_LEIDEN_MODULARITY, .resolution = 1,
                         .total_weight = 100, .degree = 3.9};
  CHECK(gd_place_best(&mod, c, 2, &g) == 1 && fabs(g - 1.83) < 1e-12);
  mod.total_weight = 0; /* undefined: alone */
  CHECK(gd_place_best(&mod, c, 2, &g) == -1);
  /* Components: the strongest single tie, at least the threshold. */
  gd_place_params comp = {.algo = GD_COMM_COMPONENTS, .threshold = 0.95};
  CHECK(gd_place_best(&comp, c, 2, &g) == 1 && g == 1.0);
  comp.threshold = 1.5;
  CHECK(gd_place_best(&comp, c, 2, &g) == -1);
  /* Label propagation: the heaviest. Equal gains: the first given. */
  gd_place_params lp = {.algo = GD_COMM_LABEL_PROPAGATION};
  CHECK(gd_place_best(&lp, c, 2, &g) == 1 && g == 3.0);
  gd_place_cand eq[] = {{.tie = 1, .size = 1}, {.tie = 1, .size = 1}};
  CHECK(gd_place_best(&lp, eq, 2, &g) == 0);
}

TAP_MAIN(T(test_rarity), T(test_hubs), T(test_rule), T(test_corroboration), T(test_rule_names),
         T(test_place))
