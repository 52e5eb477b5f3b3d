/*
 * graphd error codes.
 *
 * One table (GD_ERRNO_MAP) produces the error enum, gd_strerror() and the
 * mapping to gRPC status codes, so that mapping exists in exactly one place.
 * Layers below rpc/ return these codes and fill a gd_err with a message that
 * names the field or the limit; rpc/ turns them into a status once.
 *
 * gRPC status codes are the numbers fixed by the gRPC protocol
 * (doc/statuscodes.md); they are written as numbers here so that core/ does
 * not depend on grpc.h.
 */
#ifndef GD_CORE_ERROR_H
#define GD_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* XX(name, grpc status code, description) */
#define GD_ERRNO_MAP(XX)                                                   \
  XX(OK, 0, "ok")                                                          \
  XX(CANCELLED, 1, "cancelled")                                            \
  XX(INVALID, 3, "invalid argument")                                       \
  XX(DEADLINE, 4, "deadline exceeded")                                     \
  XX(NOTFOUND, 5, "not found")                                             \
  XX(EXISTS, 6, "already exists")                                          \
  XX(PERM, 7, "permission denied")                                         \
  XX(RESOURCE, 8, "resource exhausted")                                    \
  XX(PRECONDITION, 9, "failed precondition")                               \
  XX(RANGE, 11, "out of range")                                            \
  XX(UNIMPLEMENTED, 12, "unimplemented")                                   \
  XX(INTERNAL, 13, "internal error")                                       \
  XX(UNAVAILABLE, 14, "unavailable")                                       \
  XX(IO, 14, "storage i/o error")                                          \
  XX(NOMEM, 8, "out of memory")                                            \
  XX(MAPFULL, 8, "storage map full")                                       \
  XX(TXNFULL, 8, "transaction too large")                                  \
  XX(UNAUTHENTICATED, 16, "unauthenticated")

typedef enum {
#define XX(name, status, desc) GD_E##name,
  GD_ERRNO_MAP(XX)
#undef XX
  GD_E__COUNT
} gd_errno;

/* Alias used everywhere: 0 is success. */
#define GD_OK GD_EOK

/* Longest message kept with an error, including the NUL. */
#define GD_ERR_MSG_MAX 256

/*
 * An error with its message. Functions that can fail take a `gd_err *err`
 * (may be NULL) and fill it only when they fail; they return the code.
 */
typedef struct gd_err {
  int code;
  char msg[GD_ERR_MSG_MAX];
} gd_err;

/* Short description of a code ("not found"). Never NULL. */
const char *gd_strerror(int code);

/* The gRPC status code for a graphd error code (INTERNAL for unknown codes). */
int gd_err_grpc_status(int code);

/* The canonical name of a gRPC status code ("OK", "INVALID_ARGUMENT", ...;
 * codes 0..16), NULL outside that range. */
#define GD_GRPC_STATUS_COUNT 17
const char *gd_grpc_status_name(int status);

/* The two statuses a transport reports on its own (not from a gd_errno). */
#define GD_GRPC_CANCELLED 1
#define GD_GRPC_DEADLINE_EXCEEDED 4

/* The HTTP status the HTTP/JSON transport answers for a gRPC status (the
 * mapping of google.api / grpc-gateway: INVALID_ARGUMENT 400,
 * UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, ...); 500 for
 * a code outside 0..16. */
int gd_grpc_http_status(int status);

/*
 * Sets err (if not NULL) to code and a printf-style message; returns code so
 * callers can write `return gd_err_set(err, GD_EINVALID, "x: %s", why);`.
 */
int gd_err_set(gd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (for field paths). Returns err->code. */
int gd_err_prefix(gd_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets err to OK with an empty message. */
void gd_err_clear(gd_err *err);

#endif
