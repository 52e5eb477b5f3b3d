/*
 * metrics: Prometheus metrics of the daemon, served over HTTP on their own
 * port (--metrics-listen), in the text exposition format 0.0.4.
 *
 * Two halves. The hot half is the observer hooks the other layers call
 * (gd_metrics_call_begin / _end from the server, gd_metrics_commit from
 * the writer, gd_metrics_job_stage from the job manager): each is a few
 * relaxed atomic increments into counters and histogram buckets fixed at
 * gd_metrics_new, with no lock and no allocation. The cold half is the
 * scrape: gd_metrics_render reads those counters, plus the sources that
 * are cheap to ask at scrape time (the store's LMDB figures in one short
 * read transaction, the writer's counters, the jobs by state, the limit
 * counters of core/limits.h), and composes the text. Counters and
 * histogram buckets are read one by one while calls go on, so a scrape
 * is not an atomic snapshot; a histogram's _count is the sum of its
 * buckets, so +Inf always equals _count.
 *
 * The lower layers know nothing of this one: server/, store/writer and
 * jobs/ each take a plain callback (gd_server_opts.call_begin/call_end,
 * gd_writer_observe, gd_jobs_opts.stage_done) that main.c points here.
 * Only metrics/http.c includes libmicrohttpd.
 *
 * Series (all prefixed graphd_; see README "Metrics"):
 *   calls_total{method,code}            counter  (series appear once non-zero)
 *   call_duration_seconds{method}       histogram (methods with calls)
 *   calls_in_flight                     gauge
 *   writer_batch_ops, writer_commit_duration_seconds   histograms
 *   writer_commits_total, writer_ops_total, writer_map_grows_total,
 *   writer_group_retries_total          counters
 *   lmdb_file_bytes, lmdb_map_bytes, lmdb_readers_used, lmdb_readers_max,
 *   lmdb_last_txn_id, entities{type}, links, labels     gauges
 *   jobs{state}                         gauge
 *   job_stage_duration_seconds{stage}   histogram
 *   refused_total{reason}               counter (every key of core/limits.h)
 *   placement_queue gauge, placement_shed_total, placements_total,
 *   alerts_total counters, placement_latency_seconds histogram
 *   write_budget_bytes, write_budget_in_use_bytes gauges,
 *   memory_trims_total counter
 *   build_info{version}, start_time_seconds             gauges
 */
#ifndef GD_METRICS_METRICS_H
#define GD_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "server/server.h"

typedef struct gd_metrics gd_metrics;
typedef struct gd_store gd_store;
typedef struct gd_writer gd_writer;
typedef struct gd_jobs gd_jobs;

typedef struct gd_metrics_opts {
  /* The server's method table (borrowed, must outlive m): the method
   * label of index i is methods[i].path; index nmethods is "unknown". */
  const gd_method *methods;
  size_t nmethods;
  const char *version; /* graphd_build_info{version} (copied) */
} gd_metrics_opts;

/* Creates the registry. Errors: GD_ENOMEM. */
int gd_metrics_new(const gd_metrics_opts *o, gd_metrics **ret, gd_err *err);

/* What the scrape reads besides the counters (borrowed; each may be NULL:
 * its series are left out). Set before serving; each must stay valid
 * until gd_metrics_http_stop. */
void gd_metrics_set_sources(gd_metrics *m, gd_store *store, gd_writer *writer, gd_jobs *jobs);

/* The write budget's figures, read at scrape time: read(ctx, ret) fills
 * ret (rpc.h gd_rpc_budget_stats through main.c; metrics does not know the
 * rpc layer). Unset: the series are left out. Set before serving. */
typedef struct gd_metrics_budget {
  uint64_t in_use, cap, trims;
} gd_metrics_budget;
void gd_metrics_set_budget(gd_metrics *m, void (*read)(void *ctx, gd_metrics_budget *ret),
                           void *ctx);

/* Frees m (after every hook user and the HTTP server stopped). Accepts
 * NULL. */
void gd_metrics_free(gd_metrics *m);

/* ---- hooks (ctx = the gd_metrics; any thread; lock-free) ---- */

/* gd_server_opts.call_begin / call_end. */
void gd_metrics_call_begin(void *ctx, size_t method);
void gd_metrics_call_end(void *ctx, size_t method, int grpc_status, int64_t ns);
/* gd_writer_observe: one durable group commit of `ops` ops, in ns. */
void gd_metrics_commit(void *ctx, size_t ops, int64_t ns);
/* The placer's observer (rpc.h gd_place_opts.observe). */
void gd_metrics_placement(void *ctx, size_t placed, size_t alerts, const int64_t *latency_ns);
/* gd_jobs_opts.stage_done. The first 16 distinct stage names get their
 * own series, later ones share stage="other". Takes a lock (rare). */
void gd_metrics_job_stage(void *ctx, const char *stage, double seconds);

/* ---- the scrape ---- */

/* The exposition text (malloc'd, free() it; *ret_len its length), or NULL
 * when out of memory. Thread-safe. */
char *gd_metrics_render(gd_metrics *m, size_t *ret_len);

/* Appends value to a label value with the exposition format's escapes
 * (backslash, double quote, newline). dst has room for n bytes; returns
 * the length the escaped text needs (like snprintf). */
size_t gd_metrics_escape_label(char *dst, size_t n, const char *value);

/* ---- HTTP (metrics/http.c, libmicrohttpd) ---- */

typedef struct gd_metrics_http gd_metrics_http;

/*
 * Serves GET (and HEAD) /metrics on listen, bound to that host only, from
 * libmicrohttpd's own polling thread: 200 with
 * `Content-Type: text/plain; version=0.0.4; charset=utf-8`; other paths
 * 404; other methods 405. *ret_port gets the bound port (the real one
 * for port 0). Errors: GD_EINVALID (bad listen, or a host that does not
 * resolve), GD_EIO (cannot bind: the message says why).
 */
int gd_metrics_http_start(gd_metrics *m, const char *listen, gd_metrics_http **ret,
                          int *ret_port, gd_err *err);

/* Stops serving: closes the port, ends connections, joins the thread,
 * frees h. Accepts NULL. */
void gd_metrics_http_stop(gd_metrics_http *h);

#endif
