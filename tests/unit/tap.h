/*
 * A tiny test harness: CHECK() records a failure with file and line and
 * goes on; TEST() registers a function; main() runs them in order and
 * prints "N passed, N failed". Each test file is its own executable.
 */
#ifndef GD_TEST_TAP_H
#define GD_TEST_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_failures, tap_checks;

#define CHECK(cond)                                                            \
  do {                                                                         \
    tap_checks++;                                                              \
    if (!(cond)) {                                                             \
      tap_failures++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ_U(a, b)                                                             \
  do {                                                                               \
    unsigned long long va_ = (unsigned long long)(a), vb_ = (unsigned long long)(b); \
    tap_checks++;                                                                    \
    if (va_ != vb_) {                                                                \
      tap_failures++;                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %llu != %llu\n", __FILE__, __LINE__, \
              #a, #b, va_, vb_);                                                     \
    }                                                                                \
  } while (0)

#define CHECK_STR(a, b)                                                              \
  do {                                                                               \
    const char *sa_ = (a), *sb_ = (b);                                               \
    tap_checks++;                                                                    \
    if (strcmp(sa_, sb_) != 0) {                                                     \
      tap_failures++;                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: '%s' != '%s'\n", __FILE__, __LINE__, \
              #a, #b, sa_, sb_);                                                     \
    }                                                                                \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} tap_test;

#define TAP_MAIN(...)                                                                \
  int main(void) {                                                                   \
    static const tap_test tests[] = {__VA_ARGS__};                                   \
    int failed = 0;                                                                  \
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {                    \
      int before = tap_failures;                                                     \
      tests[i].fn();                                                                 \
      int ok = tap_failures == before;                                               \
      failed += !ok;                                                                 \
      printf("%s - %s\n", ok ? "ok" : "not ok", tests[i].name);                      \
    }                                                                                \
    printf("%d passed, %d failed\n", (int)(sizeof tests / sizeof tests[0]) - failed, \
           failed);                                                                  \
    return failed ? 1 : 0;                                                           \
  }
#define T(fn) {#fn, fn}

#endif
