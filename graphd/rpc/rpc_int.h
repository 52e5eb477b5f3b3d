/* Internals shared by the rpc layer's files. */
#ifndef GD_RPC_RPC_INT_H
#define GD_RPC_RPC_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "jobs/jobs.h"
#include "rpc/convert.h"
#include "rpc/reflection.h"
#include "rpc/rpc.h"

struct ingest;

/*
 * What the handlers run against (rpc.h, gd_rpc_new). A handler reaches it
 * through its call (rpc_ctx); whatever carries work beyond the handler's
 * own frame (a write op, a stream's state, a thread's argument, the
 * journal) carries it in an `rpc` member, so a callback never has to ask
 * a call that may be finished by then.
 */
struct gd_rpc {
  gd_store *store;
  gd_writer *writer;
  gd_rpc_limits lim; /* with the defaults applied */
  atomic_int serving;
  bool audit; /* lim.audit: records are written */
  bool audit_reads_async; /* lim.audit_reads_async */
  gd_jobs *jobs;           /* gd_rpc_set_jobs; NULL = UNAVAILABLE (analytics.c) */
  gd_jobs_journal journal; /* ctx = this (analytics.c) */
  gd_refl_index *refl;     /* the embedded schema (reflection.c) */
  /* Audit (audit.c): a record failed, every later call is refused; and
   * records of reads not yet committed. */
  atomic_bool audit_broken;
  atomic_int async_pending;
  atomic_bool backup_running; /* one backup at a time (handlers.c) */
  atomic_bool bulk_running;   /* one BulkLoad at a time (bulk.c) */
  atomic_bool import_running; /* one ImportSnapshot upload at a time (exchange.c) */
  /* The one ExportTies running (exchange.c, under mu): its call (NULL:
   * none runs) and its worker (0 once reaped), for on_cancel. */
  struct {
    pthread_mutex_t mu;
    gd_call *call;
    pid_t pid;
  } ties;
  /* The write budget (handlers.c, under mu): bytes in flight, bytes given
   * back since the last trim, trims so far, the parked streams in arrival
   * order, and the thread that resumes them (stop ends it). */
  struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t used, freed;
    uint64_t trims;
    struct ingest *head, *tail;
    bool stop;
    pthread_t thread;
  } wb;
  struct rpc_placer *placer; /* gd_rpc_place_start; NULL = placement off (place.c) */
  struct gd_signer *signer;  /* gd_rpc_set_signer; NULL = ExportCase fails (pack.c) */
  size_t nmethods;
  gd_method methods[]; /* the bound table: every row's ctx is this */
};

/* The context of the call's method; c must be a call to a row of a bound
 * table (gd_rpc_methods). */
static inline gd_rpc *rpc_ctx(gd_call *c) { return gd_call_ctx(c); }

/*
 * A write op whose submitter waits for it (the jobs journal, the placer):
 * embed it first, then rpc_write_sync submits it through R's writer with
 * `apply` and returns once it is durable (GD_OK) or failed (its error in
 * err). Not from the writer thread, nor from a call's handler in a way
 * that holds up the server's threads for long. Set `op.bulk` before (the
 * placer does; gd_write_op.bulk): the op then queues behind Ingest
 * messages instead of cutting their groups short.
 */
typedef struct rpc_sync_op {
  gd_write_op op;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  gd_err err;
} rpc_sync_op;
int rpc_write_sync(gd_rpc *R, rpc_sync_op *o, int (*apply)(gd_wtxn *t, gd_write_op *op, gd_err *err),
                   gd_err *err);

/* The jobs journal's save (analytics.c): ctx is the gd_rpc. */
int rpc_journal_save(void *ctx, const gd_job_info *ji, const char *spec_text, gd_err *err);

/* Ends a call with an error; logs server-side faults (INTERNAL, I/O) once. */
void rpc_fail(gd_call *c, const gd_err *err);
void rpc_fail_code(gd_call *c, int code, const char *msg);
/* Packs and sends a reply message (OK). */
void rpc_reply(gd_call *c, const ProtobufCMessage *m);
/* Packs m into *buf (a stream's reusable buffer of *cap bytes, grown as
 * needed); *ret_n gets the length. Errors: GD_ENOMEM (*buf unchanged). */
int rpc_pack_stream(const ProtobufCMessage *m, uint8_t **buf, size_t *cap, size_t *ret_n);
/*
 * Decodes a d message from msg under R's request decode budget
 * (lim.max_request_alloc); free it with protobuf_c_message_free_unpacked(m,
 * NULL). NULL with err set: GD_ERESOURCE (over the budget; counted as
 * alloc_budget), GD_EINVALID (truncated or malformed wire data).
 */
ProtobufCMessage *rpc_decode(gd_rpc *R, const ProtobufCMessageDescriptor *d, const uint8_t *msg,
                             size_t len, gd_err *err);
/* The error of a decode that failed: over (the allocator refused past cap
 * bytes, counted as alloc_budget) is GD_ERESOURCE naming
 * --max-request-alloc-bytes, else GD_EINVALID. Returns the code. For
 * decoders with their own allocator (BulkLoad's). */
int rpc_decode_failed(const ProtobufCMessageDescriptor *d, size_t len, size_t cap, bool over,
                      gd_err *err);
/*
 * The end of a client stream, on a query thread (it sleeps): gRPC core
 * completes a pending read with no message both when the client
 * half-closes and when it cancels (the cancellation arrives as a separate
 * event, on another thread, at about the same time), so an end is taken
 * for a half-close only after the call has stayed alive for 20 ms.
 * Returns GD_OK, or gd_call_check's error (the call is dead: GD_ECANCELLED
 * or GD_EDEADLINE) with err set.
 */
int rpc_stream_settle(gd_call *c, gd_err *err);
/* Unpacks a request; on failure answers the call and returns NULL. */
ProtobufCMessage *rpc_unpack(gd_call *c, const ProtobufCMessageDescriptor *d,
                             const uint8_t *msg, size_t len, bool has_msg);

/* Audit (audit.c). rpc_audit_txn appends the call's record (status OK) in
 * t, the write's own transaction, and marks the call recorded; when that
 * write then fails, its done callback unmarks it (gd_call_mark_audited
 * false) so the server's hook records the failure. rpc_audit_txn_status
 * appends a record with the given status and target and marks nothing
 * (Ingest: one record per message). Both do nothing without audit. */
int rpc_audit_txn(gd_wtxn *t, gd_call *c, gd_err *err);
int rpc_audit_txn_status(gd_wtxn *t, gd_call *c, int status, const char *target, gd_err *err);
/* Sets the call's audit target from its request (EntityRef and *_id
 * fields, counts of repeated messages). */
void rpc_audit_target(gd_call *c, const ProtobufCMessage *req);
void rpc_list_audit(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_verify_audit(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);

/* Query parameters for call c: the defaults, the server's work bound
 * (lim.max_query_work) and c's deadline and cancellation as the check
 * hook (query.h), so a query ends within milliseconds of either. */
struct gd_query_params;
void rpc_query_params(gd_call *c, struct gd_query_params *p);

/* Investigation handlers (investigate.c). */
void rpc_linked_sellers(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_find_paths(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_rank_suspects(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);

/*
 * Runs an investigation request (a LinkedSellersRequest, FindPathsRequest
 * or RankSuspectsRequest: by its descriptor) as call c's would run: c's
 * role's hub caps, c's deadline and cancellation, the server's work
 * bound. Its reply is packed into *ret (malloc'd, *ret_len bytes) instead
 * of answering c: a query saved into a case (cases.c) keeps it. req stays
 * the caller's. Runs on the calling thread: call it where a heavy call
 * runs. Errors: those of the rpc (INVALID_ARGUMENT naming the field,
 * NOT_FOUND, RESOURCE_EXHAUSTED for a reply over --max-message-bytes, the
 * call's death), GD_EINTERNAL (req is none of the three).
 */
int rpc_investigate_packed(gd_call *c, const ProtobufCMessage *req, uint8_t **ret,
                           size_t *ret_len, gd_err *err);

/* Cases (cases.c). rpc_case_visible: whether c's caller may see case v
 * (a partner only its brand's; the caller answers NOT_FOUND otherwise,
 * as for a missing case). rpc_case_unpack: case v's body as a message,
 * with id, revision, saved-query count and status from v's header (free
 * with protobuf_c_message_free_unpacked(m, NULL); NULL with err set:
 * GD_EINTERNAL). rpc_case_set_id: the call's audit case id becomes id. */
struct gd_case_view;
bool rpc_case_visible(gd_call *c, const struct gd_case_view *v);
Graphd__V1__Case *rpc_case_unpack(const struct gd_case_view *v, gd_err *err);
void rpc_case_set_id(gd_call *c, uint64_t id);
/* "open", "referred", "closed" for a CaseStatus; "unspecified" else. */
const char *rpc_case_status_name(int s);
void rpc_create_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_get_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_list_cases(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_update_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
/* ExportCase (pack.c): a server stream. */
void rpc_export_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_pack_written(gd_call *c, bool ok);

/* Analytics handlers (analytics.c). */
/* Analytics helpers (analytics.c). rpc_need_jobs: the job manager, or
 * NULL after answering c UNAVAILABLE. rpc_spec_text validates a spec
 * (INVALID_ARGUMENT naming "spec.<field>"; NULL = every default) and
 * appends the worker's spec text to b. rpc_spec_blob parses spec text as
 * the worker will and packs the resolved ClusteringSpec that Job.spec
 * echoes (*ret malloc'd). rpc_reply_job answers c with a Job. */
gd_jobs *rpc_need_jobs(gd_call *c);
/* Whether s holds a control character (names, engines: free text). */
bool rpc_has_ctl(const char *s);
struct gd_strbuf;
int rpc_spec_text(const Graphd__V1__ClusteringSpec *s, struct gd_strbuf *b, gd_err *err);
int rpc_spec_blob(const char *text, size_t len, uint8_t **ret, size_t *ret_len, gd_err *err);
void rpc_reply_job(gd_call *c, const gd_job_info *ji);
void rpc_start_clustering(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_get_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_cancel_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_list_snapshots(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_get_snapshot(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_delete_snapshot(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_list_clusters(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_get_cluster(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
/* Server streams: on_request, on_written, on_cancel. */
void rpc_watch_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_watch_written(gd_call *c, bool ok);
void rpc_stream_assignments(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_assign_written(gd_call *c, bool ok);
void rpc_diff_snapshots(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_diff_written(gd_call *c, bool ok);
/* BulkLoad (bulk.c): a client stream's on_read. */
void rpc_bulk_load_read(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len);
/* Exchange with engines outside graphd (exchange.c). */
void rpc_export_ties(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_ties_written(gd_call *c, bool ok);
void rpc_ties_cancel(gd_call *c);
void rpc_import_read(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len);
/* At start, before jobs are restored: removes the membership files an
 * earlier run left in <data>/imports (its imports were never answered;
 * their restored jobs fail, saying so). */
void rpc_import_sweep(gd_jobs *j);
/* Server reflection (reflection.c): a bidirectional stream. */
void rpc_reflection_read(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len);
void rpc_reflection_written(gd_call *c, bool ok);
/*
 * A server stream that follows a source (follow.c): WatchJob, WatchAlerts.
 * Embed it first in the stream's state. At most one write is outstanding
 * (`writing`); `done` says the stream is to end (cancelled, or its source
 * ended), `finished` that gd_call_finish is decided, so exactly one path
 * takes it. Lock order: a source's listener lock, then f->mu; never the
 * other way, so listen before taking f->mu.
 *
 * rpc_follow_init sets the call's user pointer to f (refs 1): the call's
 * reference. rpc_follow_abandon undoes init before anything was written
 * (the handler then fails the call itself). rpc_follow_start, once the
 * handler has tried to listen (before taking f->mu): when listening
 * failed, abandons f and fails the call RESOURCE_EXHAUSTED (out of
 * memory); else sends the first message with send(f) under f->mu unless a
 * notice already did. rpc_follow_end, with f->mu not
 * held: unlisten(f), detach, finish the call with code and msg, drop the
 * call's reference (destroy(f) frees the state once none is left).
 * rpc_follow_written, with f->mu held, in on_written: clears `writing`
 * and returns true when the caller must now rpc_follow_end (end given, or
 * done), exactly once. rpc_follow_cancel is the on_cancel of every such
 * method.
 */
typedef struct rpc_follow {
  pthread_mutex_t mu;
  int refs; /* under follow.c's lock: the call's, plus one per on_cancel running */
  bool writing, done, finished;
  gd_call *call;
  void (*unlisten)(struct rpc_follow *f);
  void (*destroy)(struct rpc_follow *f);
} rpc_follow;
void rpc_follow_init(rpc_follow *f, gd_call *c, void (*unlisten)(rpc_follow *),
                     void (*destroy)(rpc_follow *));
void rpc_follow_abandon(rpc_follow *f);
void rpc_follow_start(rpc_follow *f, bool listening, void (*send)(rpc_follow *f));
void rpc_follow_end(rpc_follow *f, int code, const char *msg);
bool rpc_follow_written(rpc_follow *f, bool end);
void rpc_follow_cancel(gd_call *c);

/* Fresh clusters (place.c). rpc_place_kick wakes the placer after a
 * committed write (no-op when placement is off). rpc_entity_placement
 * sets e's cluster_risk (from its cluster_id's summary) and, when the
 * seller has a placement against the latest snapshot, fills *pl and points
 * e->provisional at it; call it after rpc_entity_cluster. */
typedef struct rpc_placer rpc_placer;
void rpc_place_kick(gd_rpc *R);
void rpc_entity_placement(gd_rtxn *r, Graphd__V1__Entity *e, Graphd__V1__Placement *pl);
/* Fills rep's provisional_members (placed in cluster of snap since it was
 * written; nothing unless snap is the latest): id > after, at most max,
 * allocated in *a. Errors: GD_ENOMEM, GD_EIO. */
int rpc_cluster_provisional(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                            size_t max, gd_arena **a, Graphd__V1__GetClusterReply *rep,
                            gd_err *err);
void rpc_watch_alerts(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
void rpc_alerts_written(gd_call *c, bool ok);

/* Sets e's cluster_id / cluster_snapshot_id from the latest snapshot
 * (sellers only; left 0 when there is none). *latest caches the latest
 * snapshot id across calls in one read transaction: start it at 0 (not
 * looked up yet); UINT64_MAX after the lookup means there is none. */
void rpc_entity_cluster(gd_rtxn *r, uint64_t *latest, Graphd__V1__Entity *e);

#endif
