/*
 * store/audit: the audit trail (docs/ARCHITECTURE.md, "Audit trail"), an
 * append-only, hash-chained
 * log of every call in LMDB.
 *
 *      audit       seq (u64 BE, from 1) -> record
 *      audit_case  case_id (its bytes) -> dupsort, dupfixed seqs (u64 BE)
 *                  of the records that name it; written with the record.
 *                  A data directory from before the index gets it built
 *                  once, when the store opens, in a transaction of its own
 *                  (meta "audit_case.built"); if that fails (a full map),
 *                  the case's records are found by scanning the trail
 *
 * Record (little-endian): u64 seq, i64 time (unix milliseconds), i32 grpc
 * status, u8 role, 7 zero bytes, then five u16 lengths and the strings
 * principal, peer, case_id, method, target (no NULs), then prev[32] (the
 * previous record's hash, zeros for seq 1) and hash[32] =
 * SHA-256(everything before hash). A record is appended in the caller's
 * write transaction: in the same commit as the write it describes, or in
 * an audit-only write op for a read. The chain tip is read from the table
 * in that transaction (the last key), so nested-transaction aborts and
 * group retries need no bookkeeping.
 *
 * Tampering with any byte of a record breaks its hash; deleting or
 * reordering records breaks the next record's prev or the seq run;
 * gd_store_audit_verify finds the first such record.
 */
#ifndef GD_STORE_AUDIT_H
#define GD_STORE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define GD_AUDIT_FIELD_MAX 256   /* principal, peer, case_id, method: longer is cut */
#define GD_AUDIT_TARGET_MAX 1024 /* target: longer is cut */

/* What gd_store_audit_append writes; strings may be NULL (empty). */
typedef struct gd_audit_in {
  int64_t time_ms;
  int32_t status; /* grpc status code */
  uint8_t role;   /* server/auth.h gd_role */
  const char *principal, *peer, *case_id, *method, *target;
} gd_audit_in;

/* A record as read (views into the map, valid for the transaction; the
 * strings are not NUL-terminated: use the lengths). */
typedef struct gd_audit_view {
  uint64_t seq;
  int64_t time_ms;
  int32_t status;
  uint8_t role;
  const char *principal, *peer, *case_id, *method, *target;
  uint16_t principal_len, peer_len, case_id_len, method_len, target_len;
  const uint8_t *prev, *hash; /* 32 bytes each */
} gd_audit_view;

/* Appends a record in t; *ret_seq (may be NULL) gets its seq.
 * Errors: GD_EMAPFULL, GD_EIO, GD_EINTERNAL (the tip does not parse). */
int gd_store_audit_append(gd_wtxn *t, const gd_audit_in *in, uint64_t *ret_seq, gd_err *err);

/* Calls fn with each record of seq > after, ascending, until fn returns
 * non-zero. Errors: GD_EINTERNAL (a record does not parse), GD_EIO. */
typedef int (*gd_audit_fn)(void *ctx, const gd_audit_view *v);
int gd_store_audit_visit(gd_rtxn *r, uint64_t after, gd_audit_fn fn, void *ctx, gd_err *err);

/* Calls fn with each record of seq > after whose case_id is the len
 * bytes at case_id (1 .. GD_AUDIT_FIELD_MAX), ascending, until fn returns
 * non-zero: through audit_case, so the cost is the case's records, not the
 * trail's (a scan of the trail until the index is built). Errors: GD_EINVALID (len), GD_EINTERNAL (a record does not
 * parse, or the index names a missing record), GD_EIO. */
int gd_store_audit_visit_case(gd_rtxn *r, const char *case_id, size_t len, uint64_t after,
                              gd_audit_fn fn, void *ctx, gd_err *err);

/* The last record of the trail (the tip). Errors: GD_ENOTFOUND (no record
 * yet), GD_EINTERNAL, GD_EIO. */
int gd_store_audit_last(gd_rtxn *r, gd_audit_view *ret, gd_err *err);

/*
 * Walks the whole chain. *ret_n gets the records checked; on a break
 * *ret_bad_seq gets the first bad record's seq (0 when the chain holds)
 * and ret_why (may be NULL, at least 200 bytes) says what is wrong.
 * Returns GD_OK whether or not the chain holds; errors: GD_EIO.
 */
int gd_store_audit_verify(gd_rtxn *r, uint64_t *ret_n, uint64_t *ret_bad_seq, char *ret_why,
                          size_t why_size, gd_err *err);

#endif
