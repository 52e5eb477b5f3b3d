/* Provisional placement (place.h). */
#include "place.h"

#include <math.h>

static double gain(const gd_place_params *p, const gd_place_cand *c) {
  switch (p->algo) {
  case GD_COMM_LEIDEN_CPM:
    return c->tie - p->resolution * c->size;
  case GD_COMM_LEIDEN_MODULARITY:
  case GD_COMM_LOUVAIN:
    if (!(p->total_weight > 0))
      return NAN;
    return c->tie - p->resolution * p->degree * c->volume / (2 * p->total_weight);
  case GD_COMM_COMPONENTS:
    return c->max_tie >= p->threshold && c->max_tie > 0 ? c->max_tie : NAN;
  default:
    return c->tie;
  }
}

long gd_place_best(const gd_place_params *p, const gd_place_cand *c, size_t n,
                   double *ret_gain) {
  long best = -1;
  double bg = 0;
  for (size_t i = 0; i < n; i++) {
    double g = gain(p, &c[i]);
    if (g > bg) { /* NaN never compares greater */
      bg = g;
      best = (long)i;
    }
  }
  if (ret_gain)
    *ret_gain = best < 0 ? 0 : bg;
  return best;
}
