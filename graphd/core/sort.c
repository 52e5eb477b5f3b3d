#include "core/sort.h"

#include <string.h>

bool gd_radix_offsets(size_t cnt[256], size_t n) {
  size_t pos = 0;
  for (int d = 0; d < 256; d++)
    if (cnt[d] == n)
      return false;
  for (int d = 0; d < 256; d++) {
    size_t c = cnt[d];
    cnt[d] = pos;
    pos += c;
  }
  return true;
}

void gd_sort_u64(uint64_t *v, uint64_t *tmp, size_t n) {
  uint64_t *a = v, *b = tmp;
  if (n < 2)
    return;
  for (int shift = 0; shift < 64; shift += 8) {
    size_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++)
      cnt[(a[i] >> shift) & 0xff]++;
    if (!gd_radix_offsets(cnt, n))
      continue;
    for (size_t i = 0; i < n; i++)
      b[cnt[(a[i] >> shift) & 0xff]++] = a[i];
    uint64_t *x = a;
    a = b;
    b = x;
  }
  if (a != v)
    memcpy(v, a, n * sizeof *v);
}
