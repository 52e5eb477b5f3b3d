/*
 * graphd-bench scale: the cost curve as the marketplace grows.
 *
 * Per size of --sizes (default 100k, 300k, 1M and 3M sellers), in
 * ascending order, each on its own data:
 *
 * 1. sellergen --sellers N --seed S (and --sellergen-arg) into
 *    WORK/scale-N/gen, parsed once (dataset_open).
 * 2. A daemon on a fresh data dir (graphd --data DIR --listen 127.0.0.1:0
 *    [--graphd-arg ...]); every link record through one Ingest call
 *    (bench_ingest_range: batches of --batch links, in file order). The
 *    rate is records / seconds from the open to the reply (durable); the
 *    data dir's size is read after it (apparent bytes).
 * 3. GetEntity and 2-hop LinkedSellers at one call in flight (async client,
 *    --duration each, keys as the read mode samples them: read_keys_new):
 *    the daemon's CPU per call (/proc, over the timed part) and the p50.
 * 4. One clustering job with the default spec (bench_job_run): wall time
 *    from StartClustering to the last WatchJob message, and from the
 *    snapshot's manifest (GetSnapshot) the cluster stage, the worker's
 *    peak RSS, ties and clusters.
 * 5. StreamAssignments of that snapshot: assignments per second.
 * 6. SIGTERM (the daemon must exit 0); the size's directory is removed
 *    unless --keep.
 *
 * Then, for each figure, its fitted growth: the exponent b of
 * y = a * sellers^b, least squares on log y against log sellers over the
 * sizes where it was measured (b = 1: linear; for a per-call cost, b = 0:
 * flat). --repeat does not apply: one pass per size (a 3M pass takes the
 * better part of half an hour on 2 cores); the figures at neighbouring
 * sizes and the fit are the check on noise. The one reference is the
 * in-run Health/Check floor the read mode measures elsewhere; here the
 * point is the shape of the curve.
 *
 * Anomalies: a failed ingest, job, read or stream, a daemon dying or not
 * exiting 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_int.h"
#include "client.h"

/* The figures of one size; NAN (or 0 for counts) when not measured. */
typedef struct point {
  uint64_t sellers, records, ties, clusters;
  double ingest_s, ingest_rate, dir_bytes;
  double get_cpu_us, get_p50_us, linked2_cpu_us, linked2_p50_us, linked2_items;
  double job_s, read_s, cluster_s, worker_rss, stream_rate;
} point;

/* The figures fitted and reported, in table order. */
enum {
  F_INGEST, F_DIR, F_GET_CPU, F_GET_P50, F_L2_CPU, F_L2_P50, F_JOB, F_CLUSTER, F_RSS, F_STREAM,
  F__COUNT
};
static const char *const fig_names[F__COUNT] = {
    "ingest_links_per_s", "data_dir_bytes",      "get_entity_cpu_us", "get_entity_p50_us",
    "linked2_cpu_us",     "linked2_p50_us",      "job_s",             "cluster_stage_s",
    "worker_peak_rss_bytes", "stream_assignments_per_s"};

static double fig(const point *p, int f) {
  switch (f) {
  case F_INGEST: return p->ingest_rate;
  case F_DIR: return p->dir_bytes;
  case F_GET_CPU: return p->get_cpu_us;
  case F_GET_P50: return p->get_p50_us;
  case F_L2_CPU: return p->linked2_cpu_us;
  case F_L2_P50: return p->linked2_p50_us;
  case F_JOB: return p->job_s;
  case F_CLUSTER: return p->cluster_s;
  case F_RSS: return p->worker_rss;
  case F_STREAM: return p->stream_rate;
  }
  return NAN;
}

/* Least-squares slope of log y on log sellers over the points where y is
 * finite and > 0; NAN with fewer than two such points. */
static double fit_exponent(const point *pts, int n, int f) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int k = 0;
  for (int i = 0; i < n; i++) {
    double y = fig(&pts[i], f);
    if (!(isfinite(y) && y > 0))
      continue;
    double x = log((double)pts[i].sellers), ly = log(y);
    sx += x, sy += ly, sxx += x * x, sxy += x * ly;
    k++;
  }
  double den = k * sxx - sx * sx;
  return k >= 2 && den > 0 ? (k * sxy - sx * sy) / den : NAN;
}

/* One rpc at one call in flight: the daemon's CPU per call and the p50. */
static void measure_read(const bench_cfg *cfg, daemon_proc *dp, const read_keys *keys,
                         rpc_kind kind, const char *label, double *ret_cpu_us,
                         double *ret_p50_us, double *ret_items) {
  read_point pt = {.client = CLIENT_ASYNC, .conc = 1, .threads = 1};
  read_result r;
  read_measure(cfg, dp->addr, dp->pid, keys, &pt, kind, NULL, &r);
  if (r.errors || !r.calls) {
    anomaly("%s: %s: %" PRIu64 " errors in %" PRIu64 " calls%s%s", label, rpc_names[kind],
            r.errors, r.calls, r.first_err[0] ? ": " : "", r.first_err);
    return;
  }
  *ret_cpu_us = read_field(&r, RF_SRV_US);
  *ret_p50_us = r.p50_us;
  if (ret_items)
    *ret_items = r.items_per_call;
}

static bool measure_size(const bench_cfg *cfg, const char *workroot, uint64_t sellers,
                         point *p) {
  char label[48];
  snprintf(label, sizeof label, "scale %" PRIu64, sellers);
  *p = (point){.sellers = sellers};
  p->ingest_s = p->ingest_rate = p->dir_bytes = NAN;
  p->get_cpu_us = p->get_p50_us = p->linked2_cpu_us = p->linked2_p50_us = p->linked2_items = NAN;
  p->job_s = p->read_s = p->cluster_s = p->worker_rss = p->stream_rate = NAN;

  char *dir = xasprintf("%s/scale-%" PRIu64, workroot, sellers);
  if (mkdir(dir, 0755) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  char *gen = xasprintf("%s/gen", dir), *links = xasprintf("%s/gen/links.csv", dir);
  char *data_dir = xasprintf("%s/graphd-data", dir), *dlog = xasprintf("%s/graphd.log", dir);
  bench_cfg g = *cfg;
  g.sellers = sellers;
  run_sellergen(&g, gen);
  fprintf(stderr, "graphd-bench: %s: loading %s...\n", label, links);
  dataset *d = dataset_open(links);
  p->records = dataset_links(d);

  bool ok = true;
  daemon_proc dp;
  gc_client *c = NULL;
  bool started = daemon_start(cfg, data_dir, dlog, &dp);
  if (!started) {
    ok = false;
  } else {
    gc_status st;
    gc_client_opts co = {.own_connection = true};
    if (gc_client_open(dp.addr, &co, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
      anomaly("%s: cannot connect to %s: %s", label, dp.addr, st.message);
      gc_client_close(c);
      c = NULL;
      ok = false;
    }
  }
  if (c) {
    fprintf(stderr, "graphd-bench: %s: ingesting %" PRIu64 " link records...\n", label,
            p->records);
    uint64_t counted = 0;
    ok = bench_ingest_range(cfg, c, d, 0, (size_t)p->records, label, "", &p->ingest_s, &counted);
    if (ok) {
      p->ingest_rate = (double)p->records / p->ingest_s;
      uint64_t app = 0, alloc = 0;
      dir_bytes(data_dir, &app, &alloc);
      p->dir_bytes = (double)app;
    }
  }
  if (c && ok) {
    fprintf(stderr, "graphd-bench: %s: GetEntity and 2-hop LinkedSellers, %.0f s each...\n",
            label, cfg->duration);
    bench_cfg rc = *cfg;
    rc.rpcs = 1u << RPC_GET | 1u << RPC_LINKED2;
    read_keys *keys = read_keys_new(&rc, d);
    measure_read(cfg, &dp, keys, RPC_GET, label, &p->get_cpu_us, &p->get_p50_us, NULL);
    measure_read(cfg, &dp, keys, RPC_LINKED2, label, &p->linked2_cpu_us, &p->linked2_p50_us,
                 &p->linked2_items);
    read_keys_delete(keys);
  }
  dataset_close(d); /* before the job: the bench's memory is not the worker's */
  d = NULL;
  if (c && ok) {
    fprintf(stderr, "graphd-bench: %s: clustering job...\n", label);
    bench_job job;
    bench_manifest m;
    bench_manifest_clear(&m);
    ok = bench_job_run(cfg, c, &dp, label, "scale", 0, &job) &&
         bench_snapshot_read(cfg, c, job.snapshot_id, label, &m);
    if (ok) {
      p->job_s = job.wall_s;
      p->read_s = m.stage_s[S_READ];
      p->cluster_s = m.stage_s[S_CLUSTER];
      p->worker_rss = m.worker_rss;
      p->ties = m.ties;
      p->clusters = m.clusters;
      uint64_t n = 0;
      double secs = NAN;
      if (bench_stream_assignments(cfg, c, job.snapshot_id, label, &n, &secs))
        p->stream_rate = (double)n / secs;
      else
        ok = false;
    }
  }
  gc_client_close(c);
  daemon_exit de;
  if (started)
    ok &= daemon_finish(cfg, &dp, label, &de);
  else
    daemon_free(&dp);
  char b[4][32];
  fprintf(stderr,
          "graphd-bench:   %s: ingest %s links/s, data dir %s, GetEntity %.0f us CPU, 2-hop %.0f "
          "us CPU, job %.2f s, worker RSS %s, stream %s/s\n",
          label, fmt_count(b[0], sizeof b[0], p->ingest_rate),
          fmt_bytes(b[1], sizeof b[1], p->dir_bytes), p->get_cpu_us, p->linked2_cpu_us, p->job_s,
          fmt_bytes(b[2], sizeof b[2], p->worker_rss), fmt_count(b[3], sizeof b[3], p->stream_rate));
  if (!cfg->keep)
    rm_rf(dir);
  free(dir), free(gen), free(links), free(data_dir), free(dlog);
  return ok;
}

json_object *bench_scale(const bench_cfg *cfg, const char *workroot, bool *ret_ok) {
  int n = cfg->n_sizes;
  point *pts = xcalloc((size_t)n, sizeof *pts);
  bool ok = true;
  for (int i = 0; i < n; i++)
    ok &= measure_size(cfg, workroot, cfg->sizes[i], &pts[i]);

  char b[4][32];
  printf("\nSCALE  one sellergen graph (seed %" PRIu64 ") and one fresh daemon per size; reads at 1 "
         "call in flight, %.0f s each\n",
         cfg->seed, cfg->duration);
  printf("  %9s %10s %10s %9s %7s %7s %8s %8s %7s %7s %8s %9s %10s %9s\n", "sellers", "records",
         "ingest/s", "data dir", "get cpu", "get p50", "2hop cpu", "2hop p50", "job s", "read s",
         "cluster", "RSS", "ties", "stream/s");
  for (int i = 0; i < n; i++) {
    const point *p = &pts[i];
    printf("  %9" PRIu64 " %10" PRIu64 " %10s %9s %7.0f %7.0f %8.0f %8.0f %7.2f %7.2f %8.2f %9s "
           "%10" PRIu64 " %9s\n",
           p->sellers, p->records, fmt_count(b[0], sizeof b[0], p->ingest_rate),
           fmt_bytes(b[1], sizeof b[1], p->dir_bytes), p->get_cpu_us, p->get_p50_us,
           p->linked2_cpu_us, p->linked2_p50_us, p->job_s, p->read_s, p->cluster_s,
           fmt_bytes(b[2], sizeof b[2], p->worker_rss), p->ties,
           fmt_count(b[3], sizeof b[3], p->stream_rate));
  }
  printf("  (cpu, p50: microseconds per call, the daemon's CPU over the timed part; job: "
         "StartClustering to the last WatchJob message)\n");
  printf("  fitted growth, y = a * sellers^b:");
  json_object *jf = json_object_new_object();
  for (int f = 0; f < F__COUNT; f++) {
    double e = fit_exponent(pts, n, f);
    printf("%s %s b=%s", f ? "," : "", fig_names[f], fmtf(b[0], sizeof b[0], 2, e));
    jput(jf, fig_names[f], jnum(e));
  }
  printf("\n");

  json_object *j = json_object_new_object(), *ja = json_object_new_array();
  for (int i = 0; i < n; i++) {
    const point *p = &pts[i];
    json_object *o = json_object_new_object();
    jput(o, "sellers", json_object_new_uint64(p->sellers));
    jput(o, "link_records", json_object_new_uint64(p->records));
    jput(o, "ingest_s", jnum(p->ingest_s));
    jput(o, "ties", json_object_new_uint64(p->ties));
    jput(o, "clusters", json_object_new_uint64(p->clusters));
    jput(o, "read_stage_s", jnum(p->read_s));
    jput(o, "linked2_sellers_per_reply", jnum(p->linked2_items));
    for (int f = 0; f < F__COUNT; f++)
      jput(o, fig_names[f], jnum(fig(p, f)));
    json_object_array_add(ja, o);
  }
  jput(j, "points", ja);
  jput(j, "fitted_exponent", jf);
  jput(j, "ok", json_object_new_boolean(ok));
  free(pts);
  *ret_ok = ok;
  return j;
}
