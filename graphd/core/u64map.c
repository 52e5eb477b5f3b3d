#include "core/u64map.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

static size_t slot_of(uint64_t x, size_t cap) { return gd__u64map_slot(x, cap); }

/* Rehashes into ncap slots (a power of two above twice the entries). */
static bool rehash(gd_u64map *m, size_t ncap) {
  uint64_t *nk = calloc(ncap, sizeof *nk);
  uint64_t *nv = malloc(ncap * sizeof *nv);
  if (!nk || !nv) {
    free(nk);
    free(nv);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i])
      continue;
    size_t j = slot_of(m->keys[i], ncap);
    while (nk[j])
      j = (j + 1) & (ncap - 1);
    nk[j] = m->keys[i];
    nv[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = nk;
  m->vals = nv;
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
  size_t i = slot_of(key, m->cap);
  while (m->keys[i] && m->keys[i] != key)
    i = (i + 1) & (m->cap - 1);
  bool fresh = m->keys[i] == 0;
  if (fresh) {
    m->keys[i] = key;
    m->vals[i] = 0;
    m->n++;
  }
  if (ret_new)
    *ret_new = fresh;
  return &m->vals[i];
}

uint64_t *gd_u64map_get(const gd_u64map *m, uint64_t key) {
  if (!m->cap || !key)
    return NULL;
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key)
      return &m->vals[i];
    if (!m->keys[i])
      return NULL;
  }
}

bool gd_u64map_del(gd_u64map *m, uint64_t key) {
  if (!m->cap || !key)
    return false;
  size_t mask = m->cap - 1, i = slot_of(key, m->cap);
  while (m->keys[i] != key) {
    if (!m->keys[i])
      return false;
    i = (i + 1) & mask;
  }
  /* Backward shift: move later entries of the run into the hole unless
   * their home slot lies cyclically in (hole, their slot]. */
  for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
    size_t h = slot_of(m->keys[j], m->cap);
    bool stays = j > i ? (h > i && h <= j) : (h > i || h <= j);
    if (!stays) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->n--;
  return true;
}

void gd_u64map_clear(gd_u64map *m) {
  if (m->cap)
    memset(m->keys, 0, m->cap * sizeof *m->keys);
  m->n = 0;
}

void gd_u64map_free(gd_u64map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}
