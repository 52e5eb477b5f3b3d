/*
 * A hash map from non-zero uint64 keys (entity ids, id + 1, packed pairs)
 * to uint64 values (an index, a count, or a pointer cast through
 * uintptr_t). Open addressing with linear probing, at most half full,
 * capacity a power of two; keys are spread with the MurmurHash3 64-bit
 * finaliser, so sequential ids do not cluster. Used wherever graphd and
 * its tools index something by id: the query layer's per-query tables,
 * the store's write cache, the rpc layer's per-reply entity cache,
 * graphctl's network fetcher and the bench's pair set.
 *
 * Each slot holds its key and value side by side, so a lookup that hits
 * reads one cache line, not one in a key array and one in a value array
 * (the query layer's per-thread entity cache is looked up ~600 times a
 * 2-hop query, most of them cache misses).
 *
 * Ownership: the map owns its slot array; gd_u64map_free releases it.
 * A zeroed struct (GD_U64MAP_INIT) is an empty map that allocates on the
 * first put. Not thread-safe: one owner at a time.
 *
 * Iteration: slots[i] for i < cap with slots[i].key != 0 hold the
 * entries, in no particular order. Do not put while iterating.
 */
#ifndef GD_CORE_U64MAP_H
#define GD_CORE_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gd_u64slot {
  uint64_t key; /* 0 = empty slot */
  uint64_t val;
} gd_u64slot;

typedef struct gd_u64map {
  gd_u64slot *slots;
  size_t cap, n; /* slots, entries */
} gd_u64map;

#define GD_U64MAP_INIT {NULL, 0, 0}

/*
 * Returns a pointer to the value of key (!= 0), inserting it with value 0
 * when absent; *ret_new (may be NULL) says which. Returns NULL when the
 * map had to grow and malloc failed (the map is unchanged). The pointer
 * is valid until the next put, reserve or free.
 */
uint64_t *gd_u64map_put(gd_u64map *m, uint64_t key, bool *ret_new);

/* The value of key, or NULL when absent (key 0 is never present). */
uint64_t *gd_u64map_get(const gd_u64map *m, uint64_t key);

/* The home slot of key in a map of cap slots (cap a power of two). */
static inline size_t gd__u64map_slot(uint64_t x, size_t cap) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return (size_t)x & (cap - 1);
}

/* Hints that key is looked up soon: starts loading its home slot into
 * the cache, so that lookups of several keys overlap their misses.
 * Changes nothing. */
static inline void gd_u64map_prefetch(const gd_u64map *m, uint64_t key) {
  if (m->cap)
    __builtin_prefetch(&m->slots[gd__u64map_slot(key, m->cap)]);
}

/* Grows the map so n entries fit without another allocation. Returns
 * false on out of memory (the map is unchanged). */
bool gd_u64map_reserve(gd_u64map *m, size_t n);

/* Removes key; returns whether it was there. Pointers from get or put
 * may now point at another entry. */
bool gd_u64map_del(gd_u64map *m, uint64_t key);

/* Removes every entry and keeps the capacity: O(cap). */
void gd_u64map_clear(gd_u64map *m);

/* Frees the slots and leaves an empty map. */
void gd_u64map_free(gd_u64map *m);

#endif
