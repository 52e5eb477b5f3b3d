/* Unit tests for graphd/core: error table, UTF-8 validation, byte
 * helpers, the u64 map, the arena and sorting. */
#include "core/arena.h"
#include "core/error.h"
#include "core/sort.h"
#include "core/u64map.h"
#include "core/util.h"
#include "tap.h"

static void test_error_table(void) {
  gd_err e;
  CHECK_EQ_U(gd_err_grpc_status(GD_OK), 0);
  CHECK_EQ_U(gd_err_grpc_status(GD_EINVALID), 3);
  CHECK_EQ_U(gd_err_grpc_status(GD_ENOTFOUND), 5);
  CHECK_EQ_U(gd_err_grpc_status(GD_EMAPFULL), 8);
  CHECK_EQ_U(gd_err_grpc_status(GD_EUNAVAILABLE), 14);
  CHECK_EQ_U(gd_err_grpc_status(GD_EUNAUTHENTICATED), 16);
  CHECK_EQ_U(gd_err_grpc_status(9999), 13);
  CHECK_STR(gd_strerror(GD_ENOTFOUND), "not found");
  CHECK_STR(gd_strerror(-1), "unknown error");
  CHECK_EQ_U(gd_err_set(&e, GD_EINVALID, "empty key"), GD_EINVALID);
  gd_err_prefix(&e, "links[%d].a.key", 3);
  CHECK_STR(e.msg, "links[3].a.key: empty key");
  CHECK_EQ_U(e.code, GD_EINVALID);
  gd_err_clear(&e);
  CHECK_EQ_U(e.code, GD_OK);
}

static void test_utf8(void) {
  CHECK(gd_utf8_valid("", 0));
  CHECK(gd_utf8_valid("abc", 3));
  CHECK(gd_utf8_valid("\xc3\xa9", 2));         /* é */
  CHECK(gd_utf8_valid("\xe2\x82\xac", 3));     /* € */
  CHECK(gd_utf8_valid("\xf0\x9f\x98\x80", 4)); /* emoji */
  CHECK(!gd_utf8_valid("\xc3", 1));            /* truncated */
  CHECK(!gd_utf8_valid("\xc0\xaf", 2));        /* overlong */
  CHECK(!gd_utf8_valid("\xe0\x80\xaf", 3));    /* overlong */
  CHECK(!gd_utf8_valid("\xed\xa0\x80", 3));    /* surrogate */
  CHECK(!gd_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
  CHECK(!gd_utf8_valid("\xff", 1));
  CHECK(!gd_utf8_valid("a\0b", 3)); /* NUL */
}

static void test_be64(void) {
  uint8_t b[8];
  gd_be64_put(b, UINT64_C(0x0102030405060708));
  CHECK_EQ_U(b[0], 1);
  CHECK_EQ_U(b[7], 8);
  CHECK_EQ_U(gd_be64_get(b), UINT64_C(0x0102030405060708));
}

/* Against a plain array: sequential ids, strided ids (which collide
 * under a weak hash), huge keys; values survive growth; clear keeps the
 * capacity; reserve avoids growth. */
static void test_u64map(void) {
  gd_u64map m = GD_U64MAP_INIT;
  CHECK(gd_u64map_get(&m, 1) == NULL);
  CHECK(gd_u64map_get(&m, 0) == NULL);
  enum { N = 20000 };
  bool fresh = false;
  for (uint64_t i = 1; i <= N; i++) {
    uint64_t keys[3] = {i, i << 20, UINT64_MAX - i};
    for (int k = 0; k < 3; k++) {
      uint64_t *v = gd_u64map_put(&m, keys[k], &fresh);
      CHECK(v && fresh && *v == 0);
      *v = keys[k] * 3 + (uint64_t)k;
    }
  }
  CHECK_EQ_U(m.n, 3 * N);
  CHECK(m.cap >= 2 * m.n);
  size_t bad = 0;
  for (uint64_t i = 1; i <= N; i++) {
    uint64_t keys[3] = {i, i << 20, UINT64_MAX - i};
    for (int k = 0; k < 3; k++) {
      uint64_t *v = gd_u64map_get(&m, keys[k]);
      bad += !v || *v != keys[k] * 3 + (uint64_t)k;
    }
  }
  CHECK_EQ_U(bad, 0);
  CHECK(gd_u64map_get(&m, N + 1) == NULL);
  /* a second put finds the entry */
  uint64_t *v = gd_u64map_put(&m, 7, &fresh);
  CHECK(v && !fresh && *v == 21);
  size_t seen = 0;
  for (size_t i = 0; i < m.cap; i++)
    seen += m.slots[i].key != 0;
  CHECK_EQ_U(seen, m.n);
  size_t cap = m.cap;
  gd_u64map_clear(&m);
  CHECK_EQ_U(m.n, 0);
  CHECK_EQ_U(m.cap, cap);
  CHECK(gd_u64map_get(&m, 7) == NULL);
  gd_u64map_free(&m);
  CHECK(m.cap == 0 && m.slots == NULL);
  CHECK(gd_u64map_reserve(&m, 1000));
  cap = m.cap;
  for (uint64_t i = 1; i <= 1000; i++)
    CHECK(gd_u64map_put(&m, i, NULL) != NULL);
  CHECK_EQ_U(m.cap, cap);
  CHECK(!gd_u64map_reserve(&m, SIZE_MAX / 2));
  CHECK_EQ_U(m.n, 1000);
  gd_u64map_free(&m);
}

/* Deletion against a model: random puts and deletes over a small key
 * space (long probe runs, wrap-around at the end of the table). */
static void test_u64map_del(void) {
  gd_u64map m = GD_U64MAP_INIT;
  enum { K = 300 };
  uint64_t model[K + 1] = {0}; /* 0 = absent, else value + 1 */
  uint64_t x = 88172645463325252ULL;
  size_t bad = 0;
  for (int step = 0; step < 200000; step++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uint64_t k = 1 + x % K;
    if ((x >> 32) % 3 == 0) {
      bool was = gd_u64map_del(&m, k);
      bad += was != (model[k] != 0);
      model[k] = 0;
    } else {
      uint64_t *v = gd_u64map_put(&m, k, NULL);
      *v = step;
      model[k] = (uint64_t)step + 1;
    }
    if (step % 997 == 0) {
      size_t n = 0;
      for (uint64_t q = 1; q <= K; q++) {
        uint64_t *v = gd_u64map_get(&m, q);
        bad += (v != NULL) != (model[q] != 0) || (v && *v + 1 != model[q]);
        n += model[q] != 0;
      }
      bad += n != m.n;
    }
  }
  CHECK_EQ_U(bad, 0);
  CHECK(!gd_u64map_del(&m, 0));
  gd_u64map_free(&m);
}

/* Reset keeps one block and hands out the same memory again. */
static void test_arena_reset(void) {
  gd_arena *a = NULL;
  gd_arena_reset(&a); /* empty: a no-op */
  CHECK(a == NULL);
  char *first = gd_arena_alloc(&a, 100);
  CHECK(first != NULL);
  for (int i = 0; i < 100; i++)
    CHECK(gd_arena_alloc(&a, 1000) != NULL); /* several blocks */
  char *big = gd_arena_alloc(&a, 1 << 20);
  CHECK(big != NULL);
  memset(big, 1, 1 << 20);
  gd_arena_reset(&a);
  char *again = gd_arena_alloc(&a, 1 << 20); /* the kept (newest) block */
  CHECK(again == big);
  gd_arena_free(a);
}

/* gd_sort_u64 against qsort: small, skewed (uniform high bytes) and
 * spread values, repeats included. */
static void test_sort_u64(void) {
  enum { N = 5000 };
  static uint64_t v[N], w[N], tmp[N];
  uint64_t x = 88172645463325252ULL;
  for (int round = 0; round < 4; round++) {
    size_t n = round == 0 ? 1 : round == 1 ? 17 : N;
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      v[i] = round == 2 ? x % 1000 : round == 3 ? x : x >> 40;
      w[i] = v[i];
    }
    gd_sort_u64(v, tmp, n);
    qsort(w, n, sizeof *w, gd_cmp_u64);
    CHECK(memcmp(v, w, n * sizeof *v) == 0);
  }
}

TAP_MAIN(T(test_error_table), T(test_utf8), T(test_be64), T(test_u64map), T(test_u64map_del), T(test_arena_reset), T(test_sort_u64))
