#include "core/arena.h"

#include <stdlib.h>

struct gd_arena {
  gd_arena *next;
  size_t used, cap;
  max_align_t data[];
};

void *gd_arena_alloc(gd_arena **a, size_t n) {
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  if (!*a || (*a)->cap - (*a)->used < n) {
    /* Blocks double, from 16 KiB to 1 MiB: a large request (an Ingest
     * message decodes to megabytes) takes a few mallocs, a small one 16 KiB. */
    size_t cap = *a ? (*a)->cap * 2 : 16384;
    if (cap > ((size_t)1 << 20))
      cap = (size_t)1 << 20;
    if (cap < n)
      cap = n;
    gd_arena *b = malloc(sizeof *b + cap);
    if (!b)
      return NULL;
    b->next = *a;
    b->used = 0;
    b->cap = cap;
    *a = b;
  }
  void *p = (char *)(*a)->data + (*a)->used;
  (*a)->used += n;
  return p;
}

void gd_arena_free(gd_arena *a) {
  while (a) {
    gd_arena *next = a->next;
    free(a);
    a = next;
  }
}

void gd_arena_reset(gd_arena **a) {
  if (!*a)
    return;
  gd_arena_free((*a)->next);
  (*a)->next = NULL;
  (*a)->used = 0;
}
