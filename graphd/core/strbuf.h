/*
 * A growable, NUL-terminated text buffer for building text with printf
 * formats (worker spec text, metrics pages).
 *
 * Out of memory is sticky: the first failed growth sets `oom`, later
 * appends do nothing, and the caller checks `oom` once at the end instead
 * of after every append. The buffer owns p; release it with
 * gd_strbuf_free. A zeroed gd_strbuf (GD_STRBUF_INIT) is empty and ready.
 */
#ifndef GD_CORE_STRBUF_H
#define GD_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct gd_strbuf {
  char *p;      /* NULL until the first append; else NUL-terminated */
  size_t n;     /* bytes of text, the NUL not counted */
  size_t cap;   /* bytes allocated */
  bool oom;     /* an append failed: the text is incomplete */
} gd_strbuf;

#define GD_STRBUF_INIT {0}

/* Makes room for `more` bytes of text after n (and the NUL), doubling. */
void gd_strbuf_reserve(gd_strbuf *b, size_t more);

/* Appends printf-style text. */
void gd_strbuf_printf(gd_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees p and zeroes b. */
void gd_strbuf_free(gd_strbuf *b);

#endif
