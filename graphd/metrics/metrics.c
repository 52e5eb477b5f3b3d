/* The metrics registry and the exposition text (metrics.h). */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/entity.h"
#include "core/limits.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "core/strbuf.h"
#include "store/store.h"
#include "store/writer.h"
#include "store/place.h"

/* ---- histograms -------------------------------------------------------- */

/* Bucket layout: upper bounds in the exported unit (le), and the factor
 * from the observed unit to the exported one (1e-9: ns -> seconds). */
typedef struct hist_spec {
  const double *le;
  int n;
  double scale;
} hist_spec;

#define HIST_MAX 20

/* Buckets are not cumulative here (one increment per observation); the
 * scrape adds them up. The last bucket is +Inf. */
typedef struct hist {
  int64_t bound[HIST_MAX]; /* le in the observed unit */
  atomic_uint_fast64_t b[HIST_MAX + 1];
  atomic_uint_fast64_t sum; /* observed unit */
} hist;

static const double call_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                 5,      10,      30,     60};
static const double batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double commit_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double place_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,  0.5,    1,     2.5,  5,     10,   30};
static const double stage_le[] = {0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600};

#define SPEC(a, s) {a, (int)(sizeof a / sizeof a[0]), s}
static const hist_spec call_spec = SPEC(call_le, 1e-9);
static const hist_spec batch_spec = SPEC(batch_le, 1);
static const hist_spec commit_spec = SPEC(commit_le, 1e-9);
static const hist_spec place_spec = SPEC(place_le, 1e-9);
/* Stage durations are observed in microseconds. */
static const hist_spec stage_spec = SPEC(stage_le, 1e-6);

static void hist_init(hist *h, const hist_spec *sp) {
  for (int i = 0; i < sp->n; i++)
    h->bound[i] = (int64_t)llround(sp->le[i] / sp->scale);
}

static void hist_observe(hist *h, const hist_spec *sp, int64_t v) {
  int i = 0;
  while (i < sp->n && v > h->bound[i])
    i++;
  atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum, (uint_fast64_t)(v > 0 ? v : 0), memory_order_relaxed);
}

/* ---- the registry ------------------------------------------------------ */

#define MAX_STAGES 16

struct gd_metrics {
  const gd_method *methods;
  size_t nmethods; /* rows: nmethods + 1 (the last: unknown methods) */
  char *version;
  double start_time; /* unix seconds */
  atomic_uint_fast64_t (*calls)[GD_GRPC_STATUS_COUNT];
  hist *call_hist;
  atomic_int_fast64_t in_flight;
  hist batch, commit;
  hist place; /* write to placement */
  atomic_uint_fast64_t placed, alerts;

  pthread_mutex_t stage_mu; /* stage names: added rarely, read at scrape */
  char stage_names[MAX_STAGES + 1][GD_JOB_STAGE_MAX];
  atomic_int nstages; /* names published so far; the last slot is "other" */
  hist stage[MAX_STAGES + 1];

  gd_store *store;
  gd_writer *writer;
  gd_jobs *jobs;
  void (*budget_read)(void *ctx, gd_metrics_budget *ret); /* gd_metrics_set_budget */
  void *budget_ctx;
};

int gd_metrics_new(const gd_metrics_opts *o, gd_metrics **ret, gd_err *err) {
  gd_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return gd_err_set(err, GD_ENOMEM, "metrics: out of memory");
  pthread_mutex_init(&m->stage_mu, NULL);
  if (!(m->calls = calloc(o->nmethods + 1, sizeof *m->calls)) ||
      !(m->call_hist = calloc(o->nmethods + 1, sizeof *m->call_hist)) ||
      !(m->version = strdup(o->version ? o->version : ""))) {
    gd_metrics_free(m);
    return gd_err_set(err, GD_ENOMEM, "metrics: out of memory");
  }
  m->methods = o->methods;
  m->nmethods = o->nmethods;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  for (size_t i = 0; i <= m->nmethods; i++)
    hist_init(&m->call_hist[i], &call_spec);
  hist_init(&m->batch, &batch_spec);
  hist_init(&m->commit, &commit_spec);
  hist_init(&m->place, &place_spec);
  for (int i = 0; i <= MAX_STAGES; i++)
    hist_init(&m->stage[i], &stage_spec);
  snprintf(m->stage_names[MAX_STAGES], GD_JOB_STAGE_MAX, "other");
  *ret = m;
  return GD_OK;
}

void gd_metrics_set_budget(gd_metrics *m, void (*read)(void *ctx, gd_metrics_budget *ret),
                           void *ctx) {
  m->budget_read = read;
  m->budget_ctx = ctx;
}

void gd_metrics_set_sources(gd_metrics *m, gd_store *store, gd_writer *writer, gd_jobs *jobs) {
  m->store = store;
  m->writer = writer;
  m->jobs = jobs;
}

void gd_metrics_free(gd_metrics *m) {
  if (!m)
    return;
  pthread_mutex_destroy(&m->stage_mu);
  free(m->calls);
  free(m->call_hist);
  free(m->version);
  free(m);
}

/* ---- hooks ------------------------------------------------------------- */

void gd_metrics_call_begin(void *ctx, size_t method) {
  gd_metrics *m = ctx;
  (void)method;
  atomic_fetch_add_explicit(&m->in_flight, 1, memory_order_relaxed);
}

void gd_metrics_call_end(void *ctx, size_t method, int grpc_status, int64_t ns) {
  gd_metrics *m = ctx;
  if (method > m->nmethods)
    method = m->nmethods;
  if (grpc_status < 0 || grpc_status >= GD_GRPC_STATUS_COUNT)
    grpc_status = 2; /* UNKNOWN */
  atomic_fetch_add_explicit(&m->calls[method][grpc_status], 1, memory_order_relaxed);
  hist_observe(&m->call_hist[method], &call_spec, ns);
  atomic_fetch_sub_explicit(&m->in_flight, 1, memory_order_relaxed);
}

void gd_metrics_placement(void *ctx, size_t placed, size_t alerts, const int64_t *latency_ns) {
  gd_metrics *m = ctx;
  atomic_fetch_add_explicit(&m->placed, placed, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->alerts, alerts, memory_order_relaxed);
  for (size_t i = 0; i < placed; i++)
    hist_observe(&m->place, &place_spec, latency_ns[i] > 0 ? latency_ns[i] : 0);
}

void gd_metrics_commit(void *ctx, size_t ops, int64_t ns) {
  gd_metrics *m = ctx;
  hist_observe(&m->batch, &batch_spec, (int64_t)ops);
  hist_observe(&m->commit, &commit_spec, ns);
}

void gd_metrics_job_stage(void *ctx, const char *stage, double seconds) {
  gd_metrics *m = ctx;
  int i, n;
  pthread_mutex_lock(&m->stage_mu);
  n = atomic_load(&m->nstages);
  for (i = 0; i < n && strcmp(m->stage_names[i], stage) != 0; i++)
    ;
  if (i == n && n < MAX_STAGES) {
    snprintf(m->stage_names[n], GD_JOB_STAGE_MAX, "%s", stage);
    atomic_store(&m->nstages, n + 1); /* published after the name is written */
  } else if (i == n) {
    i = MAX_STAGES;
  }
  pthread_mutex_unlock(&m->stage_mu);
  hist_observe(&m->stage[i], &stage_spec, (int64_t)llround(seconds * 1e6));
}

/* ---- the text ---------------------------------------------------------- */

size_t gd_metrics_escape_label(char *dst, size_t n, const char *v) {
  size_t k = 0;
  for (; *v; v++) {
    const char *e = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
    size_t l = e ? 2 : 1;
    if (k + l < n)
      memcpy(dst + k, e ? e : v, l);
    k += l;
  }
  if (n)
    dst[k < n ? k : n - 1] = 0;
  return k;
}

/* name{label="value"} with value escaped. */
static void sb_label(gd_strbuf *b, const char *value) {
  size_t need = gd_metrics_escape_label(NULL, 0, value);
  gd_strbuf_reserve(b, need);
  if (b->oom)
    return;
  gd_metrics_escape_label(b->p + b->n, b->cap - b->n, value);
  b->n += need;
}

/* # HELP and # TYPE. The help texts are ours: no backslash or newline to
 * escape. */
static void sb_head(gd_strbuf *b, const char *name, const char *type, const char *help) {
  gd_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's series; label is `key="value"` text already escaped
 * (NULL for none). */
static void sb_hist(gd_strbuf *b, const char *name, const char *label, hist *h, const hist_spec *sp) {
  uint64_t cum = 0;
  const char *sep = label ? "," : "";
  for (int i = 0; i <= sp->n; i++) {
    cum += atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (i < sp->n)
      gd_strbuf_printf(b, "%s_bucket{%s%sle=\"%.10g\"} %llu\n", name, label ? label : "", sep,
                sp->le[i], (unsigned long long)cum);
    else
      gd_strbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label ? label : "", sep,
                (unsigned long long)cum);
  }
  double sum = (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * sp->scale;
  if (label) {
    gd_strbuf_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, label, sum, name, label,
              (unsigned long long)cum);
  } else {
    gd_strbuf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
  }
}

static uint64_t hist_count(hist *h, const hist_spec *sp) {
  uint64_t n = 0;
  for (int i = 0; i <= sp->n; i++)
    n += atomic_load_explicit(&h->b[i], memory_order_relaxed);
  return n;
}

static const char *method_label(const gd_metrics *m, size_t i) {
  return i < m->nmethods ? m->methods[i].path : "unknown";
}

static void render_calls(gd_metrics *m, gd_strbuf *b) {
  sb_head(b, "graphd_calls_total", "counter",
          "gRPC calls ended, by method (path; \"unknown\" for methods graphd does not serve) "
          "and the status code the client saw.");
  for (size_t i = 0; i <= m->nmethods; i++)
    for (int c = 0; c < GD_GRPC_STATUS_COUNT; c++) {
      uint64_t v = atomic_load_explicit(&m->calls[i][c], memory_order_relaxed);
      if (!v)
        continue;
      gd_strbuf_printf(b, "graphd_calls_total{method=\"");
      sb_label(b, method_label(m, i));
      gd_strbuf_printf(b, "\",code=\"%s\"} %llu\n", gd_grpc_status_name(c), (unsigned long long)v);
    }
  sb_head(b, "graphd_call_duration_seconds", "histogram",
          "Time from accepting a gRPC call to sending its status, by method.");
  for (size_t i = 0; i <= m->nmethods; i++) {
    if (!hist_count(&m->call_hist[i], &call_spec))
      continue;
    char label[300];
    size_t n = (size_t)snprintf(label, sizeof label, "method=\"");
    n += gd_metrics_escape_label(label + n, sizeof label - n - 1, method_label(m, i));
    if (n + 2 > sizeof label)
      continue; /* a path of over 280 bytes: not in our table */
    snprintf(label + n, sizeof label - n, "\"");
    sb_hist(b, "graphd_call_duration_seconds", label, &m->call_hist[i], &call_spec);
  }
  sb_head(b, "graphd_calls_in_flight", "gauge", "gRPC calls accepted and not yet ended.");
  int64_t inf = atomic_load_explicit(&m->in_flight, memory_order_relaxed);
  gd_strbuf_printf(b, "graphd_calls_in_flight %lld\n", (long long)(inf > 0 ? inf : 0));
}

static void render_writer(gd_metrics *m, gd_strbuf *b) {
  sb_head(b, "graphd_writer_batch_ops", "histogram",
          "Write ops (requests, stream messages, audit records) per durable group commit.");
  sb_hist(b, "graphd_writer_batch_ops", NULL, &m->batch, &batch_spec);
  sb_head(b, "graphd_writer_commit_duration_seconds", "histogram",
          "Time to apply and durably commit one group, map growth and retries included.");
  sb_hist(b, "graphd_writer_commit_duration_seconds", NULL, &m->commit, &commit_spec);
  if (!m->writer)
    return;
  gd_writer_stats ws;
  gd_writer_stats_get(m->writer, &ws);
  sb_head(b, "graphd_writer_commits_total", "counter", "Durable group commits.");
  gd_strbuf_printf(b, "graphd_writer_commits_total %llu\n", (unsigned long long)ws.commits);
  sb_head(b, "graphd_writer_ops_total", "counter", "Write ops in durable group commits.");
  gd_strbuf_printf(b, "graphd_writer_ops_total %llu\n", (unsigned long long)ws.requests);
  sb_head(b, "graphd_writer_map_grows_total", "counter", "LMDB map growths.");
  gd_strbuf_printf(b, "graphd_writer_map_grows_total %llu\n", (unsigned long long)ws.grows);
  sb_head(b, "graphd_writer_group_retries_total", "counter",
          "Write groups applied again because they filled the LMDB map.");
  gd_strbuf_printf(b, "graphd_writer_group_retries_total %llu\n",
                   (unsigned long long)ws.retries);
  sb_head(b, "graphd_writer_queued_ops", "gauge", "Write ops queued or being applied.");
  gd_strbuf_printf(b, "graphd_writer_queued_ops %llu\n", (unsigned long long)gd_writer_pending(m->writer));
}

static void render_budget(gd_metrics *m, gd_strbuf *b) {
  gd_metrics_budget wb = {0};
  if (!m->budget_read)
    return;
  m->budget_read(m->budget_ctx, &wb);
  sb_head(b, "graphd_write_budget_bytes", "gauge",
          "Decoded bytes of Upsert and Ingest messages allowed in flight (--write-budget-bytes; "
          "0 = no limit).");
  gd_strbuf_printf(b, "graphd_write_budget_bytes %llu\n", (unsigned long long)wb.cap);
  sb_head(b, "graphd_write_budget_in_use_bytes", "gauge",
          "Decoded bytes of Upsert and Ingest messages in flight.");
  gd_strbuf_printf(b, "graphd_write_budget_in_use_bytes %llu\n", (unsigned long long)wb.in_use);
  sb_head(b, "graphd_memory_trims_total", "counter",
          "Times the decoded messages' freed memory went back to the system (malloc_trim).");
  gd_strbuf_printf(b, "graphd_memory_trims_total %llu\n", (unsigned long long)wb.trims);
}

static void render_store(gd_metrics *m, gd_strbuf *b) {
  gd_rtxn *r = NULL;
  gd_stats st;
  gd_err err;
  if (!m->store)
    return;
  if (gd_store_read_begin(m->store, &r, &err) || gd_store_stats(r, &st, &err)) {
    gd_store_read_end(r);
    sb_head(b, "graphd_lmdb_up", "gauge", "Whether the scrape could read the store.");
    gd_strbuf_printf(b, "graphd_lmdb_up 0\n");
    return;
  }
  gd_store_read_end(r);
  sb_head(b, "graphd_lmdb_up", "gauge", "Whether the scrape could read the store.");
  gd_strbuf_printf(b, "graphd_lmdb_up 1\n");
  sb_head(b, "graphd_lmdb_file_bytes", "gauge", "LMDB data in use: (last page + 1) * page size.");
  gd_strbuf_printf(b, "graphd_lmdb_file_bytes %llu\n", (unsigned long long)st.file_bytes);
  sb_head(b, "graphd_lmdb_map_bytes", "gauge", "LMDB map size (grows x2 when full).");
  gd_strbuf_printf(b, "graphd_lmdb_map_bytes %llu\n", (unsigned long long)st.map_bytes);
  sb_head(b, "graphd_lmdb_readers_used", "gauge",
          "LMDB reader slots taken (live or dead processes; idle pooled slots included).");
  gd_strbuf_printf(b, "graphd_lmdb_readers_used %u\n", st.readers_used);
  sb_head(b, "graphd_lmdb_readers_active", "gauge",
          "LMDB reader slots holding a snapshot now (a stuck value pins pages).");
  gd_strbuf_printf(b, "graphd_lmdb_readers_active %u\n", st.readers_active);
  sb_head(b, "graphd_lmdb_readers_max", "gauge", "LMDB reader slots in the lock file.");
  gd_strbuf_printf(b, "graphd_lmdb_readers_max %u\n", st.readers_max);
  sb_head(b, "graphd_lmdb_last_txn_id", "gauge", "Id of the last committed LMDB write transaction.");
  gd_strbuf_printf(b, "graphd_lmdb_last_txn_id %llu\n", (unsigned long long)st.last_txnid);
  sb_head(b, "graphd_entities", "gauge", "Entities in the store, by type.");
  for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX; t++)
    gd_strbuf_printf(b, "graphd_entities{type=\"%s\"} %llu\n", gd_type_name(t),
              (unsigned long long)st.entities[t]);
  sb_head(b, "graphd_links", "gauge", "Links in the store.");
  gd_strbuf_printf(b, "graphd_links %llu\n", (unsigned long long)st.links);
  sb_head(b, "graphd_labels", "gauge", "Labels set on entities.");
  gd_strbuf_printf(b, "graphd_labels %llu\n", (unsigned long long)st.labels);
  uint64_t queued = 0;
  if (gd_store_read_begin(m->store, &r, &err) == GD_OK) {
    gd_store_dirty_count(r, &queued, &err);
    gd_store_read_end(r);
  }
  sb_head(b, "graphd_placement_queue", "gauge",
          "Sellers whose ties changed, waiting for provisional placement.");
  gd_strbuf_printf(b, "graphd_placement_queue %llu\n", (unsigned long long)queued);
  sb_head(b, "graphd_placement_shed_total", "counter",
          "Sellers not queued for placement because the queue was full (--placement-queue).");
  gd_strbuf_printf(b, "graphd_placement_shed_total %llu\n",
            (unsigned long long)gd_store_place_shed(m->store));
  sb_head(b, "graphd_placements_total", "counter", "Provisional placements committed.");
  gd_strbuf_printf(b, "graphd_placements_total %llu\n", (unsigned long long)atomic_load(&m->placed));
  sb_head(b, "graphd_alerts_total", "counter", "Alerts appended for WatchAlerts.");
  gd_strbuf_printf(b, "graphd_alerts_total %llu\n", (unsigned long long)atomic_load(&m->alerts));
  sb_head(b, "graphd_placement_latency_seconds", "histogram",
          "From the write that changed a seller's ties to its placement's commit.");
  sb_hist(b, "graphd_placement_latency_seconds", NULL, &m->place, &place_spec);
}

static void render_jobs(gd_metrics *m, gd_strbuf *b) {
  static const char *const names[] = {
      [GD_JOB_QUEUED] = "queued",     [GD_JOB_RUNNING] = "running", [GD_JOB_SUCCEEDED] = "succeeded",
      [GD_JOB_FAILED] = "failed",     [GD_JOB_CANCELLED] = "cancelled",
  };
  if (m->jobs) {
    uint64_t n[GD_JOB_CANCELLED + 1];
    gd_jobs_count(m->jobs, n);
    sb_head(b, "graphd_jobs", "gauge",
            "Clustering jobs the daemon holds, by state (finished ones: the last 1000).");
    for (int s = GD_JOB_QUEUED; s <= GD_JOB_CANCELLED; s++)
      gd_strbuf_printf(b, "graphd_jobs{state=\"%s\"} %llu\n", names[s], (unsigned long long)n[s]);
  }
  sb_head(b, "graphd_job_stage_duration_seconds", "histogram",
          "Time clustering jobs spent in each stage (\"start\": spawning the worker).");
  int ns = atomic_load(&m->nstages);
  for (int i = 0; i <= MAX_STAGES; i++) {
    if (i >= ns && i < MAX_STAGES)
      continue;
    if (i == MAX_STAGES && !hist_count(&m->stage[i], &stage_spec))
      continue;
    char label[2 * GD_JOB_STAGE_MAX + 16];
    size_t n = (size_t)snprintf(label, sizeof label, "stage=\"");
    n += gd_metrics_escape_label(label + n, sizeof label - n - 1, m->stage_names[i]);
    snprintf(label + n, sizeof label - n, "\"");
    sb_hist(b, "graphd_job_stage_duration_seconds", label, &m->stage[i], &stage_spec);
  }
}

char *gd_metrics_render(gd_metrics *m, size_t *ret_len) {
  gd_strbuf b = {0};
  sb_head(&b, "graphd_build_info", "gauge", "Always 1; the version of graphd as a label.");
  gd_strbuf_printf(&b, "graphd_build_info{version=\"");
  sb_label(&b, m->version);
  gd_strbuf_printf(&b, "\"} 1\n");
  sb_head(&b, "graphd_start_time_seconds", "gauge", "When the daemon started, unix seconds.");
  gd_strbuf_printf(&b, "graphd_start_time_seconds %.3f\n", m->start_time);
  render_calls(m, &b);
  sb_head(&b, "graphd_refused_total", "counter",
          "Calls refused or cut by a configured limit, by reason (the keys of Stats.refused).");
  for (int i = 0; i < GD_LIMIT__COUNT; i++)
    gd_strbuf_printf(&b, "graphd_refused_total{reason=\"%s\"} %llu\n", gd_limit_key((gd_limit)i),
              (unsigned long long)gd_limit_count((gd_limit)i));
  render_writer(m, &b);
  render_budget(m, &b);
  render_store(m, &b);
  render_jobs(m, &b);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *ret_len = b.n;
  return b.p;
}
