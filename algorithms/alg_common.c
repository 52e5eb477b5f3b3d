#include "alg_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *gd_alg_strerror(gd_alg_status code) {
  switch (code) {
#define XX(name, desc, gd) \
  case GD_ALG_##name:      \
    return desc;
    GD_ALG_STATUS_MAP(XX)
#undef XX
  default:
    return "unknown algorithm status";
  }
}

gd_alg_status gd_alg_error_set(gd_alg_error *err, gd_alg_status code, const char *fmt, ...) {
  if (!err)
    return code;
  err->code = code;
  err->igraph_errno = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return code;
}

typedef struct {
  int64_t label, index;
} label_pos;

static int label_pos_cmp(const void *a, const void *b) {
  const label_pos *x = a, *y = b;
  if (x->label != y->label)
    return x->label < y->label ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

gd_alg_status gd_membership_canonical(const int64_t *labels, int64_t n, int64_t *out,
                                      int64_t *ret_k, gd_alg_error *err) {
  if (n < 0 || (n > 0 && (!labels || !out)))
    return gd_alg_error_set(err, GD_ALG_INVALID, "membership: bad arguments (n = %lld)",
                            (long long)n);
  if ((uint64_t)n > SIZE_MAX / sizeof(label_pos))
    return gd_alg_error_set(err, GD_ALG_NOMEM, "membership: %lld vertices", (long long)n);

  int dense = 1;
  for (int64_t i = 0; i < n && dense; i++)
    if (labels[i] >= n)
      dense = 0;

  int64_t k = 0;
  if (dense) {
    /* map[label] = canonical id, or -1 while unseen. */
    int64_t *map = malloc((size_t)(n ? n : 1) * sizeof *map);
    if (!map)
      return gd_alg_error_set(err, GD_ALG_NOMEM, "membership: %lld vertices", (long long)n);
    for (int64_t i = 0; i < n; i++)
      map[i] = -1;
    for (int64_t i = 0; i < n; i++) {
      int64_t l = labels[i];
      if (l < 0) {
        out[i] = k++;
      } else {
        if (map[l] < 0)
          map[l] = k++;
        out[i] = map[l];
      }
    }
    free(map);
  } else {
    /* Sort (label, index); the first index of each label is where that
     * cluster first appears. first[i] <= i, so one forward pass numbers
     * the clusters in order of first appearance, even in place. */
    label_pos *lp = malloc((size_t)n * sizeof *lp);
    int64_t *first = malloc((size_t)n * sizeof *first);
    if (!lp || !first) {
      free(lp);
      free(first);
      return gd_alg_error_set(err, GD_ALG_NOMEM, "membership: %lld vertices", (long long)n);
    }
    int64_t np = 0;
    for (int64_t i = 0; i < n; i++) {
      first[i] = i;
      if (labels[i] >= 0)
        lp[np++] = (label_pos){labels[i], i};
    }
    qsort(lp, (size_t)np, sizeof *lp, label_pos_cmp);
    for (int64_t j = 0; j < np;) {
      int64_t head = lp[j].index, l = lp[j].label;
      for (; j < np && lp[j].label == l; j++)
        first[lp[j].index] = head;
    }
    free(lp);
    for (int64_t i = 0; i < n; i++)
      out[i] = first[i] == i ? k++ : out[first[i]];
    free(first);
  }
  if (ret_k)
    *ret_k = k;
  return GD_ALG_OK;
}
