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
  /* Memory one BulkLoad may hold (rpc/bulk.c); over it RESOURCE_EXHAUSTED
   * naming --bulk-load-max-bytes. 0 = no bound. */
  size_t bulk_max_bytes;
  /* Rows one ImportSnapshot may carry (rpc/exchange.c); over it
   * RESOURCE_EXHAUSTED naming --import-max-rows. 0 = no bound. */
  uint64_t import_max_rows;
  bool audit;                   /* keep the audit trail (gd_rpc_audit_hooks) */
  /* Successful read-only calls (role reader or none) reply without
   * waiting for their record's commit; it follows in the next group
   * commit (milliseconds). A record that then fails to commit still
   * breaks the trail: every later call is refused. Writes, refusals and
   * errors always wait. */
  bool audit_reads_async;
} gd_rpc_limits;

/*
 * The rpc layer's context: everything the handlers run against (the store,
 * the writer, the limits, the health status, the write budget and its
 * thread, the reflection index, the audit trail's state, the job manager)
 * and the method table bound to it. Every row's ctx points at it, so
 * several contexts (over several stores) can live in one process.
 *
 * Threads: gd_rpc_new, gd_rpc_set_jobs, gd_rpc_jobs_restore and
 * gd_rpc_free run on one thread, outside serving (before the server starts,
 * after it is shut down); the handlers and hooks run on any thread, as the
 * server calls them; gd_rpc_set_serving may be called from any thread.
 */
typedef struct gd_rpc gd_rpc;

/*
 * Makes a context over a store and its writer (both must outlive it):
 * copies lim (0 for ingest_inflight, max_reply_bytes, ingest_window_bytes
 * means 256 messages, 4 MiB, 64 MiB), health SERVING, starts the write
 * budget's thread and loads the schema embedded at build time for server
 * reflection (rpc/reflection.h). Free it with gd_rpc_free. Errors:
 * GD_ENOMEM; GD_EINVALID (the embedded schema is broken: a build fault,
 * named); GD_EINTERNAL (the write budget's thread cannot start).
 */
int gd_rpc_new(gd_store *store, gd_writer *writer, const gd_rpc_limits *lim, gd_rpc **ret,
               gd_err *err);

/* The key that signs evidence packs (rpc/signer.h; borrowed: it must
 * outlive r). Without one ExportCase is FAILED_PRECONDITION. Before
 * serving. */
struct gd_signer;
void gd_rpc_set_signer(gd_rpc *r, struct gd_signer *s);

/*
 * The method table bound to r (valid while r lives): data, one row per rpc
 * of graphd.v1.SellerGraph plus grpc.health.v1.Health/Check and
 * grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo (and its
 * v1 twin), each row's ctx = r. *ret_n gets the number of rows.
 */
const gd_method *gd_rpc_methods(gd_rpc *r, size_t *ret_n);

/* The same table without binding anything (for tools and tests): each row's
 * path, kind, role and request/reply types; ctx is NULL, so the rows are not
 * to be served. */
const gd_method *gd_rpc_method_table(size_t *ret_n);

/* The server's audit hooks (gd_server_opts.audit, .audit_now,
 * .audit_ready, and the context to pass them, .audit_ctx = *ret_ctx = r)
 * over the store's audit table: each call's record goes through the
 * writer and the reply waits for it, except a successful read's under
 * audit_reads_async (audit_now: its record follows the reply); a record
 * that cannot be written fails the call UNAVAILABLE and every later call
 * too (fail closed). Use them exactly when lim.audit is set. */
typedef struct gd_call gd_call;
void gd_rpc_audit_hooks(gd_rpc *r, void (**ret_audit)(void *ctx, gd_call *c, int grpc_status),
                        bool (**ret_now)(void *ctx, gd_call *c, int grpc_status),
                        bool (**ret_ready)(void *ctx), void **ret_ctx);

/*
 * The job manager's journal over r's store (jobs.h "Durability"): each
 * save is one write op through r's writer, waited for, so it returns once
 * the record is durable. Valid while r lives; saves need the writer
 * running.
 */
typedef struct gd_jobs_journal gd_jobs_journal;
const gd_jobs_journal *gd_rpc_jobs_journal(gd_rpc *r);

/* Feeds every job record stored in r's store to gd_jobs_restore, in id
 * order; call it before serving. *ret_n (may be NULL) gets the number
 * restored. Errors: GD_EIO, GD_ENOMEM, GD_EINTERNAL (a corrupt record:
 * named), and those of gd_jobs_restore. */
typedef struct gd_jobs gd_jobs;
int gd_rpc_jobs_restore(gd_rpc *r, gd_jobs *jobs, size_t *ret_n, gd_err *err);

/* Binds the analytics handlers to the job manager (must outlive every
 * call); call it before serving. A setter, not a gd_rpc_new argument: the
 * manager is started with r's journal. Without it the analytics handlers
 * answer UNAVAILABLE. */
void gd_rpc_set_jobs(gd_rpc *r, gd_jobs *jobs);

/* Health: SERVING until this is called with 0, NOT_SERVING after (drain). */
void gd_rpc_set_serving(gd_rpc *r, int serving);

/*
 * Fresh clusters (docs/ARCHITECTURE.md, "Fresh clusters"; rpc/place.c).
 * gd_rpc_place_start turns on the store's placement queue (writes mark the
 * sellers whose ties they change, store/place.h) and starts the placer
 * thread, which places them against the latest snapshot through r's writer
 * and appends alerts for WatchAlerts. Call it once the writer runs and
 * before serving; without it WatchAlerts is FAILED_PRECONDITION and
 * nothing is placed. gd_rpc_place_stop stops the thread (the queue stays
 * in the store for the next start); call it after the server is shut down
 * and before the writer stops. Errors: GD_ENOMEM, GD_EINTERNAL (thread).
 */
#define GD_PLACE_QUEUE_DEFAULT 100000
#define GD_ALERT_HISTORY_DEFAULT 100000
typedef struct gd_place_opts {
  uint64_t queue_max;     /* queued sellers before marks are shed; 0 = default */
  uint64_t alert_history; /* alerts kept; 0 = default */
  /* After each committed batch, on the placer thread (NULL = none):
   * sellers placed, alerts appended, and per placed seller the
   * nanoseconds from the write that queued it to the commit. */
  void (*observe)(void *ctx, size_t placed, size_t alerts, const int64_t *latency_ns);
  void *observe_ctx;
} gd_place_opts;

int gd_rpc_place_start(gd_rpc *r, const gd_place_opts *o, gd_err *err);
void gd_rpc_place_stop(gd_rpc *r);

typedef struct gd_place_stats {
  uint64_t placed, alerts, rebased, shed;
} gd_place_stats;
/* Counters since gd_rpc_place_start (all 0 when placement is off). */
void gd_rpc_place_stats(gd_rpc *r, gd_place_stats *ret);

/* The write budget now: decoded bytes of Upsert and Ingest messages in
 * flight, the budget (0 = none), and how many times the memory given back
 * was handed to the system (malloc_trim, after every 64 MiB of writes
 * done). Any thread. */
typedef struct gd_budget_stats {
  uint64_t in_use, cap, trims;
} gd_budget_stats;
void gd_rpc_budget_stats(gd_rpc *r, gd_budget_stats *ret);

/*
 * Stops the write budget's thread and frees the reflection index and r.
 * Call it once nothing can use r any more: after the server is shut down
 * (no call runs) and the writer has stopped (write ops carry r to their
 * done callbacks, and audit records of reads outlive their calls). Accepts
 * NULL.
 */
void gd_rpc_free(gd_rpc *r);

#endif
