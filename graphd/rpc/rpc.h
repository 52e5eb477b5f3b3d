/*
 * rpc: graphd.v1 handlers. The only layer that touches protobuf-c types.
 *
 * Each handler decodes and validates its request (every rejected field is
 * named in the status text), calls one store function (reads directly on
 * the handler thread, writes through the group-commit writer), and encodes
 * the reply. Errors become statuses in exactly one place: gd_call_finish()
 * maps the gd_errno through core/error.h's table.
 */
#ifndef GD_RPC_RPC_H
#define GD_RPC_RPC_H

#include <stddef.h>

#include "server/server.h"
#include "store/store.h"
#include "store/writer.h"

typedef struct gd_rpc_limits {
  size_t max_batch_items; /* entities + links per UpsertRequest */
  size_t result_cap;      /* rows per reply (Neighbors limit) */
  size_t max_reply_bytes; /* largest reply; larger ones fail RESOURCE_EXHAUSTED */
  /* Bytes one request message may allocate when decoded (protobuf-c
   * builds a tree of structs: a few bytes on the wire can become tens in
   * memory). Over it: RESOURCE_EXHAUSTED naming --max-request-alloc-bytes.
   * 0 = no budget. What a call allocates afterwards is bounded by its work
   * limits (result cap, max_touched, the reply size). */
  size_t max_request_alloc;
  unsigned ingest_inflight;    /* Ingest messages queued to the writer per stream */
  size_t ingest_window_bytes;  /* ... and their bytes */
  uint64_t cluster_max_sellers; /* StartClustering: RESOURCE_EXHAUSTED above (0 = none) */
  /* Every step one LinkedSellers, FindPaths, RankSuspects or GetEntity may
   * take (rows read, cached lists walked, pushes: query.h max_work); past
   * it the reply is cut and marked truncated. 0 = no bound. */
  uint64_t max_query_work;
  /* The largest hub cap (hub_caps[].max_sellers) a caller of each role
   * (server/auth.h, GD_ROLE_NONE .. GD_ROLE_ADMIN) may ask the investigator
   * rpcs for; over it INVALID_ARGUMENT naming --max-hub-cap. 0 = none. */
  uint64_t max_hub_cap[5];
  /* Decoded bytes of all Upsert and Ingest messages in flight (handlers.c,
   * "the write budget"); 0 = no budget. */
  size_t write_budget_bytes;
  bool audit;                   /* keep the audit trail (gd_rpc_audit_hooks) */
  /* Successful read-only calls (role reader or none) reply without
   * waiting for their record's commit; it follows in the next group
   * commit (milliseconds). A record that then fails to commit still
   * breaks the trail: every later call is refused. Writes, refusals and
   * errors always wait. */
  bool audit_reads_async;
} gd_rpc_limits;

/* The server's audit hooks (gd_server_opts.audit, .audit_ready) over the
 * store's audit table: each call's record goes through the writer and the
 * reply waits for it; a record that cannot be written fails the call
 * UNAVAILABLE and every later call too (fail closed). Use them exactly
 * when lim.audit is set. */
typedef struct gd_call gd_call;
void gd_rpc_audit_hooks(void (**ret_audit)(void *ctx, gd_call *c, int grpc_status),
                        bool (**ret_ready)(void *ctx));

/*
 * Binds the handlers to a store and its writer (both must outlive every
 * call) and returns the method table: data, one row per rpc of
 * graphd.v1.SellerGraph plus grpc.health.v1.Health/Check and
 * grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo.
 */
const gd_method *gd_rpc_methods(gd_store *store, gd_writer *writer, const gd_rpc_limits *lim,
                                size_t *ret_n);

/* The same table without binding anything (for tools and tests): each row's
 * path, kind, role and request/reply types. */
const gd_method *gd_rpc_method_table(size_t *ret_n);

/* Binds the analytics handlers to the job manager (must outlive every
 * call). Without it they answer UNAVAILABLE. */
typedef struct gd_jobs gd_jobs;
void gd_rpc_set_jobs(gd_jobs *jobs);

/*
 * The job manager's journal over the store (jobs.h "Durability"): each
 * save is one write op through the writer, waited for, so it returns once
 * the record is durable. Valid after gd_rpc_methods (it uses that store
 * and writer) until the writer stops.
 */
typedef struct gd_jobs_journal gd_jobs_journal;
const gd_jobs_journal *gd_rpc_jobs_journal(void);

/* Feeds every stored job record to gd_jobs_restore, in id order; call it
 * before serving. *ret_n (may be NULL) gets the number restored. Errors:
 * GD_EIO, GD_ENOMEM, GD_EINTERNAL (a corrupt record: named), and those of
 * gd_jobs_restore. */
int gd_rpc_jobs_restore(gd_jobs *jobs, size_t *ret_n, gd_err *err);

/*
 * Server reflection (grpc.reflection.v1alpha.ServerReflection in the
 * method table): parses and indexes the schema embedded at build time
 * (rpc/reflection.h). Call once before serving; without it the method ends
 * its calls INTERNAL. Errors: GD_ENOMEM, GD_EINVALID (the embedded set is
 * broken: a build fault, named). gd_rpc_reflection_free releases the index
 * once the server is shut down.
 */
int gd_rpc_reflection_load(gd_err *err);
void gd_rpc_reflection_free(void);

/* Health: SERVING until this is called, NOT_SERVING after (drain). */
void gd_rpc_set_serving(int serving);

#endif
