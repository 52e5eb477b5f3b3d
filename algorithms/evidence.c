#include "evidence.h"

#include <math.h>

/*
 * Defaults. Hub caps are set from what the entity types mean, not from one
 * data set: a device, payment account, phone or e-mail is personal, so
 * dozens of sellers on one is already a farm or a mule (evidence) while
 * hundreds means a shared service (noise); a postal address can be a
 * warehouse used by a whole ring of a hundred sellers, so its cap is
 * higher; an IP address is shared by carrier NAT and offices, so it is
 * both the weakest and the most often shared. Type weights follow the same
 * reading: personal identifiers count fully, addresses a little less, IPs
 * half.
 */
void gd_evidence_defaults(gd_evidence_params *p) {
  static const uint64_t caps[GD_EV_TYPES] = {0, 1000, 500, 200, 200, 100, 100, 100};
  static const double weights[GD_EV_TYPES] = {0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 0.5};
  for (int t = 0; t < GD_EV_TYPES; t++) {
    p->hub_cap[t] = caps[t];
    p->type_weight[t] = weights[t];
  }
}

double gd_rarity(uint64_t n) { return n == 0 ? 0.0 : 1.0 / log2(1.0 + (double)n); }

bool gd_is_hub(const gd_evidence_params *p, int type, uint64_t n) {
  if (type <= 0 || type >= GD_EV_TYPES)
    return false;
  return n > p->hub_cap[type];
}

double gd_evidence_weight(const gd_evidence_params *p, int type, uint64_t n) {
  if (type <= 0 || type >= GD_EV_TYPES || gd_is_hub(p, type, n))
    return 0.0;
  return p->type_weight[type] * gd_rarity(n);
}
