/* Internals shared by the rpc layer's files. */
#ifndef GD_RPC_RPC_INT_H
#define GD_RPC_RPC_INT_H

#include <stdatomic.h>

#include "rpc/convert.h"
#include "rpc/rpc.h"

/* What the handlers run against (set once by gd_rpc_methods). */
typedef struct gd__rpc_env {
  gd_store *store;
  gd_writer *writer;
  gd_rpc_limits lim;
  atomic_int serving;
} gd__rpc_env;

extern gd__rpc_env env;

/* Ends a call with an error; logs server-side faults (INTERNAL, I/O) once. */
void rpc_fail(gd_call *c, const gd_err *err);
void rpc_fail_code(gd_call *c, int code, const char *msg);
/* Packs and sends a reply message (OK). */
void rpc_reply(gd_call *c, const ProtobufCMessage *m);
/* Unpacks a request; on failure answers the call and returns NULL. */
ProtobufCMessage *rpc_unpack(gd_call *c, const ProtobufCMessageDescriptor *d,
                             const uint8_t *msg, size_t len, bool has_msg);

/* Investigation handlers (investigate.c). */
void rpc_linked_sellers(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_find_paths(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_rank_suspects(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);

#endif
