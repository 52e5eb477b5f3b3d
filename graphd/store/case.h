/*
 * store/case: cases (docs/ARCHITECTURE.md, "Cases").
 *
 *      case        id (u64 BE) -> record
 *      case_query  id (u64 BE) ++ seq (u32 BE) -> a saved query (opaque)
 *
 * Record (little-endian): u8 format (1), u8 status, u16 brand length,
 * u32 saved queries, u64 revision, the brand, then the body. The store
 * reads the header (listing filters on brand and status without the
 * body); the body and the saved queries are the rpc layer's encoding,
 * opaque here.
 *
 * Ids are random in 1..2^53-1 (gd_store_case_new_id): an id says nothing
 * of how many cases exist, and fits a JavaScript number.
 *
 * Views point into the map: valid until the read transaction ends, or, in
 * a write transaction, until the next write in it.
 */
#ifndef GD_STORE_CASE_H
#define GD_STORE_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define GD_CASE_ID_LIMIT (UINT64_C(1) << 53) /* ids are below it */
#define GD_CASE_BODY_MAX (16u << 20)        /* the record's body, bytes */
#define GD_CASE_QUERY_MAX (64u << 20)       /* one saved query, bytes */

typedef struct gd_case_view {
  uint64_t id;
  uint64_t revision;
  int status;        /* the rpc layer's numbering, 0..255 */
  uint32_t nqueries; /* saved queries: seq 1..nqueries */
  gd_str brand;      /* 1..64 bytes */
  const void *body;
  size_t body_len;
} gd_case_view;

/* A random id no case has in t. Errors: GD_EIO, GD_EINTERNAL (no random
 * bytes). */
int gd_store_case_new_id(gd_wtxn *t, uint64_t *ret, gd_err *err);

/* Writes case c (c->id: 1..GD_CASE_ID_LIMIT-1), replacing any record of
 * that id. Errors: GD_EINVALID (id, brand or body size out of range,
 * status over 255), GD_EMAPFULL, GD_EIO. */
int gd_store_case_put(gd_wtxn *t, const gd_case_view *c, gd_err *err);

/* The case id, in a read or in a write transaction. Errors: GD_ENOTFOUND
 * ("case_id: no case N"), GD_EINTERNAL (a record that does not parse),
 * GD_EIO. */
int gd_store_case_get(gd_rtxn *r, uint64_t id, gd_case_view *ret, gd_err *err);
int gd_store_case_get_w(gd_wtxn *t, uint64_t id, gd_case_view *ret, gd_err *err);

/* Calls fn with each case of id > after, ascending, until fn returns
 * non-zero. Errors: GD_EINTERNAL (a record does not parse), GD_EIO. */
typedef int (*gd_case_fn)(void *ctx, const gd_case_view *c);
int gd_store_cases_visit(gd_rtxn *r, uint64_t after, gd_case_fn fn, void *ctx, gd_err *err);

/* Stores saved query seq (1..) of case id. Errors: GD_EINVALID (seq 0,
 * empty or over GD_CASE_QUERY_MAX), GD_EMAPFULL, GD_EIO. */
int gd_store_case_query_put(gd_wtxn *t, uint64_t id, uint32_t seq, const void *q, size_t len,
                            gd_err *err);

/* Calls fn with each saved query of case id with seq > after, ascending,
 * until fn returns non-zero. Errors: GD_EIO. */
typedef int (*gd_case_query_fn)(void *ctx, uint32_t seq, const void *q, size_t len);
int gd_store_case_queries_visit(gd_rtxn *r, uint64_t id, uint32_t after, gd_case_query_fn fn,
                                void *ctx, gd_err *err);

#endif
