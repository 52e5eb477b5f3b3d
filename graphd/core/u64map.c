#include "core/u64map.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

static size_t slot_of(uint64_t x, size_t cap) { return gd__u64map_slot(x, cap); }

/* Rehashes into ncap slots (a power of two above twice the entries). */
static bool rehash(gd_u64map *m, size_t ncap) {
  gd_u64slot *ns = calloc(ncap, sizeof *ns);
  if (!ns)
    return false;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].key)
      continue;
    size_t j = slot_of(m->slots[i].key, ncap);
    while (ns[j].key)
      j = (j + 1) & (ncap - 1);
    ns[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return true;
}

bool gd_u64map_reserve(gd_u64map *m, size_t n) {
  if (n > SIZE_MAX / 4)
    return false;
  size_t cap = m->cap ? m->cap : MIN_CAP;
  while (2 * n > cap)
    cap *= 2;
  return cap == m->cap || rehash(m, cap);
}

uint64_t *gd_u64map_put(gd_u64map *m, uint64_t key, bool *ret_new) {
  assert(key != 0);
  if (2 * (m->n + 1) > m->cap && !gd_u64map_reserve(m, m->n + 1))
    return NULL;
  gd_u64slot *sl = m->slots;
  size_t i = slot_of(key, m->cap);
  while (sl[i].key && sl[i].key != key)
    i = (i + 1) & (m->cap - 1);
  bool fresh = sl[i].key == 0;
  if (fresh) {
    sl[i].key = key;
    sl[i].val = 0;
    m->n++;
  }
  if (ret_new)
    *ret_new = fresh;
  return &sl[i].val;
}

uint64_t *gd_u64map_get(const gd_u64map *m, uint64_t key) {
  if (!m->cap || !key)
    return NULL;
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->slots[i].key == key)
      return &m->slots[i].val;
    if (!m->slots[i].key)
      return NULL;
  }
}

bool gd_u64map_del(gd_u64map *m, uint64_t key) {
  if (!m->cap || !key)
    return false;
  size_t mask = m->cap - 1, i = slot_of(key, m->cap);
  gd_u64slot *sl = m->slots;
  while (sl[i].key != key) {
    if (!sl[i].key)
      return false;
    i = (i + 1) & mask;
  }
  /* Backward shift: move later entries of the run into the hole unless
   * their home slot lies cyclically in (hole, their slot]. */
  for (size_t j = (i + 1) & mask; sl[j].key; j = (j + 1) & mask) {
    size_t h = slot_of(sl[j].key, m->cap);
    bool stays = j > i ? (h > i && h <= j) : (h > i || h <= j);
    if (!stays) {
      sl[i] = sl[j];
      i = j;
    }
  }
  sl[i].key = 0;
  m->n--;
  return true;
}

void gd_u64map_clear(gd_u64map *m) {
  if (m->cap)
    memset(m->slots, 0, m->cap * sizeof *m->slots);
  m->n = 0;
}

void gd_u64map_free(gd_u64map *m) {
  free(m->slots);
  memset(m, 0, sizeof *m);
}
