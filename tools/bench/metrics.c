/*
 * graphd-bench metrics: what the Prometheus metrics cost in read
 * throughput and latency: a daemon serving --metrics-listen and scraped
 * every second, against one without the endpoint, in the same run on the
 * same data.
 *
 * main (bench.c) generates the data (sellergen, or --links), ingests it
 * once through graphd's Ingest rpc (data dir kept), samples the request
 * keys as the read mode does, and calls bench_metrics, which per repeat
 * runs two daemons on that data dir, one at a time, in alternating order
 * (repeat 1 off then scraped, repeat 2 scraped then off, ...):
 *
 *   off      graphd --no-audit: no metrics endpoint (the reference; the
 *            server, writer and job manager get no observer at all)
 *   scraped  graphd --no-audit --metrics-listen 127.0.0.1:0; the port is
 *            read from the daemon's log ("metrics on HOST:PORT"), and a
 *            scraper thread GETs /metrics with libcurl every --scrape-ms
 *            (default 1000) while the measurements run
 *
 * (plus every --graphd-arg; --no-audit keeps the audit trail's writes out
 * of a read benchmark). Each daemon: the read measurements exactly as
 * `read` makes them (read_measure, --client at each --concurrency-list
 * point, --duration seconds each, for each rpc of --rpcs, default health
 * and get: Health/Check and GetEntity of a random sampled seller). Then,
 * for scraped: a last scrape must count at least the timed GetEntity
 * calls as graphd_calls_total{method=".../GetEntity",code="OK"}, and
 * every scrape must have answered 200. SIGTERM, exit 0 expected. Any
 * failure is an anomaly (exit 1).
 *
 * Reported per point and rpc: medians over the repeats of QPS, p50, p99
 * and the daemon's CPU per call for both, and scraped/off ratios (median
 * of the per-repeat ratios, same point and repeat) with the cost in
 * percent: QPS cost = (1 - QPS ratio) x 100, p99 cost = (p99 ratio - 1) x
 * 100 (negative: within the noise). Also the scrapes: how many, their
 * median latency and size. There is no target.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_int.h"

enum { MET_OFF = 0, MET_SCRAPED, MET__COUNT };
static const char *const met_names[MET__COUNT] = {"off", "scraped"};
static const char *const met_descs[MET__COUNT] = {
    "--no-audit, no metrics endpoint (the reference)",
    "--no-audit --metrics-listen 127.0.0.1:0, GET /metrics every scrape interval",
};

#define MET_MAX_POINTS (2 * MAX_CONC)
#define MAX_SCRAPES 4096

/* ---- the scraper ---- */

size_t bench_body_write(char *p, size_t size, size_t n, void *ud) {
  bench_body *b = ud;
  size_t k = size * n;
  if (b->len + k + 1 > b->cap) {
    b->cap = (b->len + k + 1) * 2;
    b->p = xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, p, k);
  b->len += k;
  b->p[b->len] = 0;
  return k;
}

/* bench_http_get, bench_metric_sample: bench_int.h (place.c uses them too). */
int bench_http_get(void *curl, const char *url, bench_body *b, char *why, size_t whysz) {
  CURL *c = curl;
  long code = 0;
  b->len = 0;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, bench_body_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    snprintf(why, whysz, "%s", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    snprintf(why, whysz, "HTTP status %ld", code);
    return -1;
  }
  return 0;
}

typedef struct scraper {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  char url[200];
  int interval_ms;
  uint64_t ok, failed;
  double ms[MAX_SCRAPES]; /* latency of each successful scrape */
  size_t bytes;           /* of the last one */
  char first_err[200];
} scraper;

static void *scraper_main(void *arg) {
  scraper *s = arg;
  CURL *c = curl_easy_init();
  bench_body b = {0};
  pthread_mutex_lock(&s->mu);
  while (!s->stop) {
    pthread_mutex_unlock(&s->mu);
    char why[200];
    int64_t t0 = now_ns();
    int rc = c ? bench_http_get(c, s->url, &b, why, sizeof why) : -1;
    double ms = (double)(now_ns() - t0) / 1e6;
    pthread_mutex_lock(&s->mu);
    if (rc == 0) {
      if (s->ok < MAX_SCRAPES)
        s->ms[s->ok] = ms;
      s->ok++;
      s->bytes = b.len;
    } else {
      if (!s->failed)
        snprintf(s->first_err, sizeof s->first_err, "%s", c ? why : "curl_easy_init failed");
      s->failed++;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (int64_t)s->interval_ms * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
      ;
  }
  pthread_mutex_unlock(&s->mu);
  free(b.p);
  if (c)
    curl_easy_cleanup(c);
  return NULL;
}

double bench_metric_sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (!strncmp(p, series, n) && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return NAN;
}

/* ---- one daemon ---- */

typedef struct met_run {
  bool started, ok;
  int position;
  uint64_t scrapes, scrape_failures;
  double scrape_ms_median, scrape_bytes;
  double counted_get, timed_get; /* graphd_calls_total GetEntity OK vs timed calls */
  read_result res[MET_MAX_POINTS][RPC__COUNT];
} met_run;

typedef struct met_report {
  int repeats, npoints;
  unsigned rpcs;
  int scrape_ms;
  read_point pt[MET_MAX_POINTS];
  met_run run[MAX_REPEAT][MET__COUNT];
} met_report;

static void run_config(const bench_cfg *cfg, const char *dir, const char *data_dir,
                       const read_keys *keys, met_report *rep, int r, int ci) {
  met_run *run = &rep->run[r][ci];
  bench_cfg dcfg = *cfg;
  if (dcfg.n_graphd_args + 3 > MAX_GRAPHD_ARGS)
    die("too many --graphd-arg for the metrics mode (at most %d)", MAX_GRAPHD_ARGS - 3);
  dcfg.graphd_args[dcfg.n_graphd_args++] = "--no-audit";
  if (ci == MET_SCRAPED) {
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--metrics-listen";
    dcfg.graphd_args[dcfg.n_graphd_args++] = "127.0.0.1:0";
  }
  char *log = xasprintf("%s/graphd-%s-%d.log", dir, met_names[ci], r + 1);
  daemon_proc dp;
  fprintf(stderr, "graphd-bench: metrics %d/%d: %s: starting graphd\n", r + 1, cfg->repeat,
          met_names[ci]);
  if (!daemon_start(&dcfg, data_dir, log, &dp)) {
    daemon_free(&dp);
    free(log);
    return;
  }
  run->started = true;
  bool ok = true;
  scraper *sc = NULL;
  if (ci == MET_SCRAPED) {
    int port = bench_log_port(log, "metrics on ");
    if (!port) {
      anomaly("metrics %d: no 'metrics on HOST:PORT' line in %s", r + 1, log);
      ok = false;
    } else {
      sc = xcalloc(1, sizeof *sc);
      pthread_mutex_init(&sc->mu, NULL);
      pthread_cond_init(&sc->cv, NULL);
      snprintf(sc->url, sizeof sc->url, "http://127.0.0.1:%d/metrics", port);
      sc->interval_ms = rep->scrape_ms;
      if (pthread_create(&sc->th, NULL, scraper_main, sc) != 0)
        die("pthread_create: %s", strerror(errno));
    }
  }

  for (int p = 0; p < rep->npoints && ok; p++) {
    const read_point *pt = &rep->pt[p];
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      fprintf(stderr, "graphd-bench: metrics %d/%d: %s: %s client, %d in flight: %s, %.1f s...\n",
              r + 1, cfg->repeat, met_names[ci], client_names[pt->client], pt->conc, rpc_names[k],
              cfg->duration);
      read_result *res = &run->res[p][k];
      read_measure(cfg, dp.addr, dp.pid, keys, pt, (rpc_kind)k, NULL, res);
      if (k == RPC_GET)
        run->timed_get += (double)res->calls;
      fprintf(stderr, "graphd-bench:   %.0f QPS, p50 %.0f us, p99 %.0f us, daemon %.1f us/call, "
                      "%" PRIu64 " errors\n",
              res->qps, res->p50_us, res->p99_us, read_field(res, RF_SRV_US), res->errors);
      if (res->errors || res->calls == 0) {
        anomaly("metrics %d (%s): %s: %" PRIu64 " error(s) in %" PRIu64 " calls; first: %s",
                r + 1, met_names[ci], rpc_names[k], res->errors, res->calls + res->errors,
                res->first_err[0] ? res->first_err : "(no calls completed)");
        ok = false;
      }
    }
  }

  if (sc) {
    pthread_mutex_lock(&sc->mu);
    sc->stop = true;
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    pthread_join(sc->th, NULL);
    run->scrapes = sc->ok;
    run->scrape_failures = sc->failed;
    run->scrape_ms_median = median(sc->ms, (int)(sc->ok < MAX_SCRAPES ? sc->ok : MAX_SCRAPES));
    run->scrape_bytes = (double)sc->bytes;
    if (sc->failed) {
      anomaly("metrics %d: %" PRIu64 " of %" PRIu64 " scrapes failed; first: %s", r + 1,
              sc->failed, sc->failed + sc->ok, sc->first_err);
      ok = false;
    }
    if (ok && sc->ok == 0) {
      anomaly("metrics %d: no scrape completed during the measurements", r + 1);
      ok = false;
    }
    /* The metrics count what was called. */
    CURL *c = curl_easy_init();
    bench_body b = {0};
    char why[200];
    if (ok && (rep->rpcs & 1u << RPC_GET) && c) {
      if (bench_http_get(c, sc->url, &b, why, sizeof why) != 0) {
        anomaly("metrics %d: the last scrape failed: %s", r + 1, why);
        ok = false;
      } else {
        double v = bench_metric_sample(
            b.p, "graphd_calls_total{method=\"" SVC "GetEntity\",code=\"OK\"}");
        run->counted_get = isnan(v) ? -1 : v; /* -1: absent */
        if (run->counted_get < run->timed_get) {
          anomaly("metrics %d: graphd_calls_total counts %.0f GetEntity OK calls, fewer than "
                  "the %.0f timed ones",
                  r + 1, run->counted_get, run->timed_get);
          ok = false;
        }
      }
    }
    free(b.p);
    if (c)
      curl_easy_cleanup(c);
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->cv);
    free(sc);
  }

  if (!dp.pid || !daemon_alive(&dp, "during the metrics benchmark"))
    ok = false;
  daemon_exit ex;
  daemon_stop(cfg, &dp, &ex);
  ok &= ex.exited_ok;
  run->ok = ok;
  fprintf(stderr, "graphd-bench: metrics %d/%d: %s: graphd stopped (%s)%s\n", r + 1, cfg->repeat,
          met_names[ci], ex.desc[0] ? ex.desc : "-", ok ? "" : ", FAILED");
  daemon_free(&dp);
  free(log);
}

/* ---- figures ---- */

static double fld(const met_run *run, int p, int k, int f) {
  const read_result *res = &run->res[p][k];
  if (!run->started || (res->calls == 0 && res->errors == 0 && !res->first_err[0]))
    return NAN;
  return read_field(res, f);
}

static double med_field(const met_report *rep, int c, int p, int k, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = fld(&rep->run[r][c], p, k, f);
  return median(v, rep->repeats);
}

/* Median over repeats of field(scraped) / field(off), same point and repeat. */
static double med_ratio(const met_report *rep, int p, int k, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = fld(&rep->run[r][MET_SCRAPED], p, k, f) / fld(&rep->run[r][MET_OFF], p, k, f);
  return median(v, rep->repeats);
}

static double med_scrape(const met_report *rep, int what) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++) {
    const met_run *run = &rep->run[r][MET_SCRAPED];
    v[r] = !run->started ? NAN
           : what == 0   ? (double)run->scrapes
           : what == 1   ? run->scrape_ms_median
                         : run->scrape_bytes;
  }
  return median(v, rep->repeats);
}

static const char *fmt_pct(char *buf, size_t size, double v) {
  if (isfinite(v))
    snprintf(buf, size, "%+.1f%%", v);
  else
    snprintf(buf, size, "-");
  return buf;
}

static void print_report(const bench_cfg *cfg, const read_keys *keys, const met_report *rep,
                         bool ok) {
  char b[8][32], b1[64];
  printf("\nMETRICS  %.1f s per measurement; medians of %d interleaved repeat(s), one daemon "
         "per configuration and repeat\n",
         cfg->duration, rep->repeats);
  printf("      GetEntity: %zu random sellers; Health/Check: the gRPC floor\n",
         read_keys_sellers(keys));
  for (int c = 0; c < MET__COUNT; c++)
    printf("      %-8s %s\n", met_names[c], met_descs[c]);
  printf("      scraped/off = median of per-repeat ratios; QPS cost = (1 - QPS ratio) x 100, "
         "p99 cost = (p99 ratio - 1) x 100;\n      srv us/c = the daemon's CPU time per call "
         "(less sensitive to other tenants than QPS)\n");
  printf("  %-8s %-6s %4s %-12s %9s %8s %8s %8s %9s %9s %9s %8s %8s\n", "config", "client", "infl",
         "rpc", "QPS", "p50 us", "p99 us", "srv us/c", "QPS ratio", "p99 ratio", "srv ratio",
         "QPScost", "p99cost");
  for (int p = 0; p < rep->npoints; p++) {
    const read_point *pt = &rep->pt[p];
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      for (int c = 0; c < MET__COUNT; c++) {
        double qr = c ? med_ratio(rep, p, k, RF_QPS) : NAN;
        double pr = c ? med_ratio(rep, p, k, RF_P99) : NAN;
        double sr = c ? med_ratio(rep, p, k, RF_SRV_US) : NAN;
        printf("  %-8s %-6s %4d %-12s %9s %8.1f %8.1f %8s %9s %9s %9s %8s %8s\n", met_names[c],
               client_names[pt->client], pt->conc, rpc_names[k],
               fmt_count(b1, sizeof b1, med_field(rep, c, p, k, RF_QPS)),
               med_field(rep, c, p, k, RF_P50), med_field(rep, c, p, k, RF_P99),
               fmtf(b[0], 32, 1, med_field(rep, c, p, k, RF_SRV_US)), fmtf(b[1], 32, 3, qr),
               fmtf(b[2], 32, 3, pr), fmtf(b[5], 32, 3, sr), fmt_pct(b[3], 32, (1 - qr) * 100),
               fmt_pct(b[4], 32, (pr - 1) * 100));
      }
    }
  }
  printf("  per repeat QPS, off / scraped:\n");
  for (int p = 0; p < rep->npoints; p++)
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      printf("    %-6s %4d %-12s", client_names[rep->pt[p].client], rep->pt[p].conc, rpc_names[k]);
      for (int r = 0; r < rep->repeats; r++)
        printf("  %s / %s", fmt_count(b[0], 32, fld(&rep->run[r][MET_OFF], p, k, RF_QPS)),
               fmt_count(b[1], 32, fld(&rep->run[r][MET_SCRAPED], p, k, RF_QPS)));
      printf("\n");
    }
  printf("  scrapes (medians per daemon): %s every %d ms, %s ms each, %s per scrape\n",
         fmt_count(b[0], 32, med_scrape(rep, 0)), rep->scrape_ms,
         fmtf(b[1], 32, 2, med_scrape(rep, 1)), fmt_bytes(b[2], 32, med_scrape(rep, 2)));
  printf("  checks: %s\n", ok ? "passed (every scrape 200, GetEntity calls counted, clean exits)"
                              : "FAILED (see anomalies)");
}

static json_object *report_json(const met_report *rep, bool ok) {
  json_object *j = json_object_new_object();
  json_object_object_add(j, "ok", json_object_new_boolean(ok));
  json_object_object_add(j, "repeats", json_object_new_int(rep->repeats));
  json_object_object_add(j, "scrape_interval_ms", json_object_new_int(rep->scrape_ms));
  json_object_object_add(j, "scrapes_median", jnum(med_scrape(rep, 0)));
  json_object_object_add(j, "scrape_ms_median", jnum(med_scrape(rep, 1)));
  json_object_object_add(j, "scrape_bytes_median", jnum(med_scrape(rep, 2)));
  json_object *pts = json_object_new_array();
  for (int p = 0; p < rep->npoints; p++) {
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      json_object *o = json_object_new_object();
      json_object_object_add(o, "client", json_object_new_string(client_names[rep->pt[p].client]));
      json_object_object_add(o, "in_flight", json_object_new_int(rep->pt[p].conc));
      json_object_object_add(o, "rpc", json_object_new_string(rpc_json_names[k]));
      for (int c = 0; c < MET__COUNT; c++) {
        json_object *m = json_object_new_object();
        int fs[] = {RF_QPS, RF_P50, RF_P99, RF_SRV_US};
        for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
          double v[MAX_REPEAT];
          for (int r = 0; r < rep->repeats; r++)
            v[r] = fld(&rep->run[r][c], p, k, fs[i]);
          char name[64];
          snprintf(name, sizeof name, "%s_per_repeat", read_field_names[fs[i]]);
          json_object_object_add(m, read_field_names[fs[i]], jnum(median(v, rep->repeats)));
          json_object_object_add(m, name, jdouble_array(v, rep->repeats));
        }
        json_object_object_add(o, met_names[c], m);
      }
      json_object_object_add(o, "qps_ratio", jnum(med_ratio(rep, p, k, RF_QPS)));
      json_object_object_add(o, "p50_ratio", jnum(med_ratio(rep, p, k, RF_P50)));
      json_object_object_add(o, "p99_ratio", jnum(med_ratio(rep, p, k, RF_P99)));
      json_object_object_add(o, "server_us_per_call_ratio", jnum(med_ratio(rep, p, k, RF_SRV_US)));
      json_object_array_add(pts, o);
    }
  }
  json_object_object_add(j, "points", pts);
  return j;
}

/* ---- the mode ---- */

json_object *bench_metrics(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           const read_keys *keys, bool *ret_ok) {
  *ret_ok = false;
  char *dir = xasprintf("%s/metrics", workroot);
  if (mkdir(dir, 0700) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    die("curl_global_init failed");
  met_report *rep = xcalloc(1, sizeof *rep);
  rep->repeats = cfg->repeat;
  rep->rpcs = read_keys_rpcs(keys) & cfg->rpcs;
  rep->scrape_ms = cfg->scrape_ms;
  for (int ci = 0; ci < cfg->n_clients; ci++)
    for (int i = 0; i < cfg->n_conc; i++) {
      read_point *p = &rep->pt[rep->npoints++];
      p->client = cfg->clients[ci];
      p->conc = cfg->conc[i];
      p->threads = p->client == CLIENT_SYNC ? p->conc
                   : cfg->client_threads < p->conc ? cfg->client_threads
                                                   : p->conc;
    }
  bool ok = true;
  for (int r = 0; r < cfg->repeat; r++)
    for (int i = 0; i < MET__COUNT; i++) {
      int c = (i + r) % MET__COUNT;
      rep->run[r][c].position = i;
      run_config(cfg, dir, data_dir, keys, rep, r, c);
      ok &= rep->run[r][c].ok;
    }
  print_report(cfg, keys, rep, ok);
  json_object *j = report_json(rep, ok);
  *ret_ok = ok;
  curl_global_cleanup();
  free(rep);
  free(dir);
  return j;
}
