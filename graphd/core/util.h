/*
 * Small helpers shared by every layer: byte strings, big-endian integers,
 * clocks and UTF-8 validation. Header-only except for gd_utf8_valid().
 */
#ifndef GD_CORE_UTIL_H
#define GD_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* A byte string that does not own its bytes and need not be NUL-terminated. */
typedef struct gd_str {
  const char *p;
  size_t n;
} gd_str;

#define GD_STR_NULL ((gd_str){NULL, 0})

static inline gd_str gd_str_c(const char *s) {
  return (gd_str){s, s ? strlen(s) : 0};
}

static inline bool gd_str_eq(gd_str a, gd_str b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static inline void gd_be64_put(void *dst, uint64_t v) {
  uint8_t *d = dst;
  for (int i = 7; i >= 0; i--) {
    d[i] = (uint8_t)v;
    v >>= 8;
  }
}

static inline uint64_t gd_be64_get(const void *src) {
  const uint8_t *s = src;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | s[i];
  return v;
}

/* Little-endian u64 and IEEE-754 double (the byte order of the store's
 * records and blobs; keys are big-endian, above, so they sort). */
static inline void gd_le64_put(void *dst, uint64_t v) {
  uint8_t *d = dst;
  for (int i = 0; i < 8; i++)
    d[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t gd_le64_get(const void *src) {
  const uint8_t *s = src;
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | s[i];
  return v;
}

static inline void gd_lef64_put(void *dst, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  gd_le64_put(dst, v);
}

static inline double gd_lef64_get(const void *src) {
  uint64_t v = gd_le64_get(src);
  double d;
  memcpy(&d, &v, 8);
  return d;
}

/* Seconds since the epoch (wall clock): timestamps written to the store. */
static inline int64_t gd_now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec;
}

/* Nanoseconds since the epoch (wall clock): times kept across restarts. */
static inline int64_t gd_now_unix_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* qsort / bsearch order of uint64_t values, ascending. */
static inline int gd_cmp_u64(const void *pa, const void *pb) {
  uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
  return (a > b) - (a < b);
}

/* The index of v in a[0 .. n) (ascending), or -1. */
static inline int64_t gd_u64_index(const uint64_t *a, int64_t n, uint64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && a[lo] == v ? lo : -1;
}

/* Monotonic nanoseconds: durations and deadlines. */
static inline int64_t gd_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * True if [p, p+n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). NUL bytes are rejected as well: no
 * key, label or attribute name may contain one.
 */
bool gd_utf8_valid(const char *p, size_t n);

#endif
