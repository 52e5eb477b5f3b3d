/*
 * Sorting integers faster than qsort: an LSD radix sort, a byte per pass,
 * that skips a byte when it is the same in every value (ids sit far below
 * 2^64, so most of their bytes are).
 */
#ifndef GD_CORE_SORT_H
#define GD_CORE_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sorts v[n] ascending, using tmp[n] (caller-owned scratch). */
void gd_sort_u64(uint64_t *v, uint64_t *tmp, size_t n);

/*
 * One pass of an LSD radix sort of n > 0 items, for sorts of other
 * records: turns cnt, the number of items per byte value, into the first
 * output position of each value. Returns false, leaving cnt as it was,
 * when every item has the same byte (the pass moves nothing: skip it).
 */
bool gd_radix_offsets(size_t cnt[256], size_t n);

#endif
