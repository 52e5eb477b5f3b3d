#include "core/error.h"

#include <stdio.h>
#include <string.h>

static const struct {
  const char *desc;
  int status;
} gd__errtab[GD_E__COUNT] = {
#define XX(name, status, desc) [GD_E##name] = {desc, status},
    GD_ERRNO_MAP(XX)
#undef XX
};

const char *gd_strerror(int code) {
  if (code < 0 || code >= GD_E__COUNT)
    return "unknown error";
  return gd__errtab[code].desc;
}

int gd_err_grpc_status(int code) {
  if (code < 0 || code >= GD_E__COUNT)
    return 13; /* INTERNAL */
  return gd__errtab[code].status;
}

const char *gd_grpc_status_name(int status) {
  /* The names of doc/statuscodes.md, by number. */
  static const char *const names[GD_GRPC_STATUS_COUNT] = {
      "OK",       "CANCELLED",        "UNKNOWN",       "INVALID_ARGUMENT",    "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",  "OUT_OF_RANGE",     "UNIMPLEMENTED", "INTERNAL",            "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED",
  };
  return status >= 0 && status < GD_GRPC_STATUS_COUNT ? names[status] : NULL;
}

int gd_grpc_http_status(int status) {
  /* By gRPC code, as google/api/code.proto documents each one's HTTP
   * equivalent (499 is the client-closed-request convention). */
  static const short http[GD_GRPC_STATUS_COUNT] = {
      200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
  };
  return status >= 0 && status < GD_GRPC_STATUS_COUNT ? http[status] : 500;
}

int gd_err_set(gd_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

int gd_err_prefix(gd_err *err, const char *fmt, ...) {
  char prefix[128], old[GD_ERR_MSG_MAX];
  va_list ap;
  if (!err)
    return GD_EINTERNAL;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  size_t n = strnlen(prefix, sizeof prefix);
  if (n + 2 < sizeof err->msg) {
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    snprintf(err->msg + n + 2, sizeof err->msg - n - 2, "%s", old);
  }
  return err->code;
}

void gd_err_clear(gd_err *err) {
  if (err) {
    err->code = GD_OK;
    err->msg[0] = '\0';
  }
}
