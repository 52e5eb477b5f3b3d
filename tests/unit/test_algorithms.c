/* Unit tests for algorithms/: evidence weights. */
#include <math.h>

#include "evidence.h"
#include "tap.h"

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
  /* A ring warehouse (100 sellers) is evidence; a logistics park is not. */
  CHECK(!gd_is_hub(&p, 2, 100));
  CHECK(gd_is_hub(&p, 2, 3000));
  CHECK(gd_evidence_weight(&p, 2, 3000) == 0.0);
  CHECK(gd_evidence_weight(&p, 4, 4) > gd_evidence_weight(&p, 4, 40));
  CHECK(!gd_is_hub(&p, 99, 1u << 30));
  CHECK(gd_evidence_weight(&p, 0, 5) == 0.0);
}

TAP_MAIN(T(test_rarity), T(test_hubs))
