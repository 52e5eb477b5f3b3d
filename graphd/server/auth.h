/*
 * server/auth: bearer tokens and roles (docs/ARCHITECTURE.md, "Authentication").
 *
 * Tokens file: one `TOKEN ROLE NAME [brand=BRAND]` per line, fields
 * separated by blanks; '#' starts a comment line; blank lines are skipped.
 * TOKEN is 16..256 printable ASCII characters without blanks; ROLE is
 * reader, investigator, writer, admin or partner; NAME (the principal,
 * 1..128 printable bytes, no blanks) is what logs and the audit trail
 * show. A token may appear once. `brand=` is required on a partner line
 * and refused on any other: BRAND is 1..64 of [A-Za-z0-9._-]
 * (gd_brand_valid).
 *
 * Roles are ordered: each includes the rights of the ones before it.
 *   reader        reads, investigations, snapshot reads, job status
 *   investigator  reader + SetLabels
 *   writer        investigator + Upsert, Ingest, BulkLoad, DeleteEntity,
 *                 StartClustering, CancelJob
 *   admin         everything: DeleteSnapshot, Backup, ListAudit
 * The role each rpc needs is data in the method table (gd_method.role).
 *
 * partner is outside that order: a brand-scoped principal (a brand's or a
 * regulator's analyst). It may call only the methods whose row says so
 * (gd_method.partner: the case rpcs, WhoAmI, and the open health check),
 * and those see and change only its brand's cases (gd_call_brand). Every
 * other method is PERMISSION_DENIED, whatever role it needs
 * (gd_role_allows).
 *
 * Certificate identities: a line whose TOKEN is `x509:CN` (any length)
 * names a client certificate subject CN instead of a bearer token; with
 * mTLS such a caller needs no token (gd_auth_check_cert). A bearer token
 * starting with "x509:" is never accepted.
 *
 * Lookup compares SHA-256 digests of the presented token with every
 * stored digest using CRYPTO_memcmp and no early exit, so the time taken
 * depends on neither the token nor how much of it matches.
 *
 * Threads: gd_auth_check may run on any number of threads at once, also
 * during gd_auth_reload (which swaps the table under a write lock).
 */
#ifndef GD_SERVER_AUTH_H
#define GD_SERVER_AUTH_H

#include <stddef.h>

#include "core/error.h"

typedef enum gd_role {
  GD_ROLE_NONE = 0, /* no token needed (health) */
  GD_ROLE_READER = 1,
  GD_ROLE_INVESTIGATOR = 2,
  GD_ROLE_WRITER = 3,
  GD_ROLE_ADMIN = 4,
  GD_ROLE_PARTNER = 5, /* not above admin: see gd_role_allows */
} gd_role;

#define GD_PRINCIPAL_MAX 129 /* NAME plus NUL */
#define GD_BRAND_MAX 65      /* BRAND plus NUL */

/* "reader" ...; "none" for GD_ROLE_NONE; never NULL. */
const char *gd_role_name(gd_role r);

/* "reader" .. "admin", "partner" -> *ret; returns 0, or -1 for any other
 * text. */
int gd_role_parse(const char *s, gd_role *ret);

/* Whether a caller of role `caller` may call a method that needs role
 * `need` and says partner_ok (gd_method.partner): a partner only where
 * partner_ok; anyone where need is GD_ROLE_NONE; else caller >= need. */
static inline int gd_role_allows(gd_role caller, gd_role need, int partner_ok) {
  if (need == GD_ROLE_NONE)
    return 1;
  if (caller == GD_ROLE_PARTNER)
    return partner_ok;
  return caller >= need;
}

/* Whether s (n bytes) is a brand name: 1..64 of [A-Za-z0-9._-]. */
int gd_brand_valid(const char *s, size_t n);

typedef struct gd_auth gd_auth;

/*
 * Loads the tokens file at path (kept for reloads). Errors: GD_EINVALID
 * ("FILE:LINE: ..." naming the problem: fields, role, token length,
 * duplicate), GD_ENOTFOUND / GD_EIO (cannot read it), GD_ENOMEM.
 */
int gd_auth_load(const char *path, gd_auth **ret, gd_err *err);

/* Re-reads the file; on any error the old table stays in force. *ret_n
 * (may be NULL) gets the number of tokens now loaded. Errors: as load. */
int gd_auth_reload(gd_auth *a, size_t *ret_n, gd_err *err);

/* Tokens currently loaded. */
size_t gd_auth_count(gd_auth *a);

/*
 * The role, principal name and brand ("" unless a partner) of token (len
 * bytes, not NUL-terminated). Returns GD_OK, or GD_EUNAUTHENTICATED (no
 * such token; *ret_role is GD_ROLE_NONE, name and brand empty).
 */
int gd_auth_check(gd_auth *a, const char *token, size_t len, gd_role *ret_role,
                  char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]);

/* The same for a verified client certificate's subject CN (the "x509:CN"
 * line). Errors: GD_EUNAUTHENTICATED. */
int gd_auth_check_cert(gd_auth *a, const char *cn, size_t len, gd_role *ret_role,
                       char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]);

void gd_auth_free(gd_auth *a);

#endif
