/*
 * A bump allocator: many small allocations freed together. Used for
 * request-scoped memory (normalised keys, reply messages, query results).
 * Not thread-safe; one owner at a time.
 */
#ifndef GD_CORE_ARENA_H
#define GD_CORE_ARENA_H

#include <stddef.h>

typedef struct gd_arena gd_arena;

/* Allocates n bytes, aligned for any type, from *a (creating it when NULL).
 * Returns NULL on out of memory. */
void *gd_arena_alloc(gd_arena **a, size_t n);

/* Frees every allocation of the arena. Accepts NULL. */
void gd_arena_free(gd_arena *a);

/* Frees every allocation but keeps the newest block for reuse, so a loop
 * that fills and empties the arena (a batch per round) stops calling
 * malloc once warm. Accepts *a == NULL. */
void gd_arena_reset(gd_arena **a);

#endif
