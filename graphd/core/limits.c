/* Limit counters (limits.h). */
#include "core/limits.h"

#include <stdatomic.h>

static atomic_uint_fast64_t counts[GD_LIMIT__COUNT];

static const char *const keys[] = {
#define XX(name, key, desc) [GD_LIMIT_##name] = key,
    GD_LIMITS_MAP(XX)
#undef XX
};

void gd_limit_hit(gd_limit l) {
  if (l >= 0 && l < GD_LIMIT__COUNT)
    atomic_fetch_add_explicit(&counts[l], 1, memory_order_relaxed);
}

uint64_t gd_limit_count(gd_limit l) {
  return l >= 0 && l < GD_LIMIT__COUNT ? atomic_load_explicit(&counts[l], memory_order_relaxed)
                                       : 0;
}

const char *gd_limit_key(gd_limit l) { return l >= 0 && l < GD_LIMIT__COUNT ? keys[l] : 0; }
