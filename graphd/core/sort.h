/*
 * Sorting integers faster than qsort: an LSD radix sort, a byte per pass,
 * that skips a byte when it is the same in every value (ids sit far below
 * 2^64, so most of their bytes are).
 */
#ifndef GD_CORE_SORT_H
#define GD_CORE_SORT_H

#include <stddef.h>
#include <stdint.h>

/* Sorts v[n] ascending, using tmp[n] (caller-owned scratch). */
void gd_sort_u64(uint64_t *v, uint64_t *tmp, size_t n);

#endif
