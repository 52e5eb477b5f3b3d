/*
 * graphd-bench gateway: what the HTTP/JSON gateway (graphd --http-listen)
 * costs over gRPC, and what the investigator console's first page load
 * costs, on the same daemon, in the same run.
 *
 * main (bench.c) generates the data (sellergen, or --links), ingests it
 * once through graphd's Ingest rpc (data dir kept), samples the request
 * keys as the read mode does, and calls bench_gateway, which per repeat
 * starts one daemon on that data (graphd --no-audit --http-listen
 * 127.0.0.1:0, plus every --graphd-arg; the HTTP port is read from its
 * log) and measures, one call in flight, --duration seconds each, in
 * alternating order (repeat 1 gRPC first, repeat 2 HTTP first, ...):
 *
 *   grpc   GetEntity of a random sampled seller over gRPC (the read mode's
 *          sync client: read_measure, 1 in flight)
 *   http   the same requests as POST /v1/GetEntity with their proto3 JSON
 *          (gd_pbjson_from_msg), libcurl on one kept-alive connection
 *
 * then the console's page load: for each sampled LinkedSellers start (the
 * read mode's linked2 keys: half ring members from the truth file, half
 * random sellers), the two calls the console makes when an investigator
 * searches a seller and expands it two hops: POST /v1/GetEntity by key,
 * then POST /v1/LinkedSellers with maxHops 2, one after the other; its
 * time is the wall time of the pair at the client, so it includes the
 * client's and the loopback's share and bounds the server time from above.
 *
 * Reported: per repeat and medians over the repeats, p50 and p99 of both
 * transports, the daemon's CPU per call, and the http/grpc p50 ratio (the
 * median of per-repeat ratios; target <= 1.3); the page load's p50 and p99
 * (target p50 <= 300 ms on 200k sellers). Every HTTP reply must be 200
 * with a JSON body; any failure is an anomaly (exit 1).
 */
#include <curl/curl.h>
#include <errno.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_int.h"
#include "server/pbjson.h"

#define GW_TARGET_RATIO 1.3
#define GW_TARGET_PAGE_MS 300.0

typedef struct lat {
  double *us;
  size_t n, cap;
} lat;

static void lat_add(lat *l, double us) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4096;
    l->us = xrealloc(l->us, l->cap * sizeof *l->us);
  }
  l->us[l->n++] = us;
}

static double pct(lat *l, double q) {
  if (!l->n)
    return NAN;
  qsort(l->us, l->n, sizeof *l->us, cmp_double);
  size_t i = (size_t)(q * (double)(l->n - 1) + 0.5);
  return l->us[i];
}

typedef struct http_client {
  CURL *c;
  struct curl_slist *hdrs;
  bench_body b;
  char base[96];
} http_client;

static void client_init(http_client *h, int port) {
  memset(h, 0, sizeof *h);
  if (!(h->c = curl_easy_init()))
    die("curl_easy_init failed");
  snprintf(h->base, sizeof h->base, "http://127.0.0.1:%d/v1/", port);
  h->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  h->hdrs = curl_slist_append(h->hdrs, "Expect:"); /* no 100-continue round trip */
  curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, h->hdrs);
  curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, bench_body_write);
  curl_easy_setopt(h->c, CURLOPT_WRITEDATA, &h->b);
  curl_easy_setopt(h->c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h->c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h->c, CURLOPT_TIMEOUT_MS, 10000L);
}

static void client_free(http_client *h) {
  curl_slist_free_all(h->hdrs);
  curl_easy_cleanup(h->c);
  free(h->b.p);
}

/* One POST; 0 on a 200 with a JSON object, -1 with why otherwise. */
static int post(http_client *h, const char *method, const char *json, char *why, size_t wsz) {
  char url[160];
  long code = 0;
  snprintf(url, sizeof url, "%s%s", h->base, method);
  h->b.len = 0;
  curl_easy_setopt(h->c, CURLOPT_URL, url);
  curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, json);
  CURLcode rc = curl_easy_perform(h->c);
  if (rc != CURLE_OK) {
    snprintf(why, wsz, "%s: %s", method, curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200 || !h->b.len || h->b.p[0] != '{') {
    snprintf(why, wsz, "%s: HTTP %ld: %.200s", method, code, h->b.len ? h->b.p : "");
    return -1;
  }
  return 0;
}

static char *to_json(const ProtobufCMessage *m) {
  char *s = NULL;
  size_t n;
  gd_err err;
  if (gd_pbjson_from_msg(m, &s, &n, &err) != GD_OK)
    die("gateway: a request does not convert to JSON: %s", err.msg);
  return s;
}

typedef struct gw_run {
  bool ok;
  double grpc_p50, grpc_p99, grpc_srv_us;
  double http_p50, http_p99, http_srv_us;
  uint64_t http_calls;
  double page_p50_ms, page_p99_ms;
  size_t pages;
} gw_run;

static void measure_http(const bench_cfg *cfg, http_client *h, pid_t pid, char **get_json,
                         size_t n, gw_run *run, int r) {
  lat l = {0};
  uint64_t seed = cfg->seed * 7919 + (uint64_t)r;
  double cpu0 = proc_cpu_s(pid);
  int64_t end = now_ns() + (int64_t)(cfg->duration * 1e9);
  char why[300];
  while (now_ns() < end) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const char *body_json = get_json[(seed >> 33) % n];
    int64_t t0 = now_ns();
    if (post(h, "GetEntity", body_json, why, sizeof why) != 0) {
      anomaly("gateway %d: http GetEntity: %s", r + 1, why);
      run->ok = false;
      break;
    }
    lat_add(&l, (double)(now_ns() - t0) / 1e3);
  }
  double cpu = proc_cpu_s(pid) - cpu0;
  run->http_calls = l.n;
  run->http_p50 = pct(&l, 0.5);
  run->http_p99 = pct(&l, 0.99);
  run->http_srv_us = l.n ? cpu * 1e6 / (double)l.n : NAN;
  free(l.us);
}

static void measure_pages(http_client *h, char **ref_json, size_t n, gw_run *run, int r) {
  lat l = {0};
  char why[300];
  for (size_t i = 0; i < n; i++) {
    char *get = xasprintf("{\"ref\":%s}", ref_json[i]);
    char *linked = xasprintf("{\"seller\":%s,\"maxHops\":2}", ref_json[i]);
    int64_t t0 = now_ns();
    int rc = post(h, "GetEntity", get, why, sizeof why);
    if (rc == 0)
      rc = post(h, "LinkedSellers", linked, why, sizeof why);
    double us = (double)(now_ns() - t0) / 1e3;
    free(get);
    free(linked);
    if (rc != 0) {
      anomaly("gateway %d: page load %zu: %s", r + 1, i, why);
      run->ok = false;
      break;
    }
    lat_add(&l, us);
  }
  run->pages = l.n;
  run->page_p50_ms = pct(&l, 0.5) / 1e3;
  run->page_p99_ms = pct(&l, 0.99) / 1e3;
  free(l.us);
}

json_object *bench_gateway(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           const read_keys *keys, bool *ret_ok) {
  const ProtobufCMessage *const *gets, *const *links;
  size_t ngets = read_keys_requests(keys, RPC_GET, &gets);
  size_t nlinks = read_keys_requests(keys, RPC_LINKED2, &links);
  *ret_ok = true;
  if (!ngets || !nlinks) {
    anomaly("gateway: no sampled GetEntity or LinkedSellers requests");
    *ret_ok = false;
    return json_object_new_object();
  }
  char **get_json = xcalloc(ngets, sizeof *get_json);
  for (size_t i = 0; i < ngets; i++)
    get_json[i] = to_json(gets[i]);
  /* The console's search: the seller's ref, as the LinkedSellers start. */
  size_t npages = nlinks < 200 ? nlinks : 200;
  char **ref_json = xcalloc(npages, sizeof *ref_json);
  for (size_t i = 0; i < npages; i++) {
    char *j = to_json(links[i]);
    json_object *o = json_tokener_parse(j), *s = NULL;
    if (!o || !json_object_object_get_ex(o, "seller", &s))
      die("gateway: a LinkedSellers request without a seller: %s", j);
    ref_json[i] = xstrdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    free(j);
  }

  gw_run *runs = xcalloc((size_t)cfg->repeat, sizeof *runs);
  char *dir = xasprintf("%s/gateway", workroot);
  if (mkdir(dir, 0700) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  read_point pt = {.client = CLIENT_SYNC, .conc = 1, .threads = 1};
  for (int r = 0; r < cfg->repeat; r++) {
    gw_run *run = &runs[r];
    run->ok = true;
    bench_cfg dcfg = *cfg;
    if (dcfg.n_graphd_args + 3 > MAX_GRAPHD_ARGS)
      die("too many --graphd-arg for the gateway mode (at most %d)", MAX_GRAPHD_ARGS - 3);
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--no-audit";
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--http-listen";
    dcfg.graphd_args[dcfg.n_graphd_args++] = "127.0.0.1:0";
    char *log = xasprintf("%s/graphd-%d.log", dir, r + 1);
    daemon_proc dp;
    fprintf(stderr, "graphd-bench: gateway %d/%d: starting graphd\n", r + 1, cfg->repeat);
    if (!daemon_start(&dcfg, data_dir, log, &dp)) {
      daemon_free(&dp);
      free(log);
      run->ok = *ret_ok = false;
      continue;
    }
    int port = bench_log_port(log, "HTTP/JSON and the console on port ");
    if (!port) {
      anomaly("gateway %d: no HTTP port in %s", r + 1, log);
      run->ok = false;
    }
    http_client h;
    if (port)
      client_init(&h, port);
    for (int k = 0; k < 2 && run->ok; k++) {
      bool grpc_turn = (k == 0) == (r % 2 == 0);
      if (grpc_turn) {
        read_result res;
        fprintf(stderr, "graphd-bench: gateway %d: GetEntity over gRPC, 1 in flight, %.1f s\n",
                r + 1, cfg->duration);
        read_measure(cfg, dp.addr, dp.pid, keys, &pt, RPC_GET, NULL, &res);
        if (res.errors || !res.calls) {
          anomaly("gateway %d: grpc GetEntity: %" PRIu64 " errors; first: %s", r + 1,
                  res.errors, res.first_err);
          run->ok = false;
        }
        run->grpc_p50 = res.p50_us;
        run->grpc_p99 = res.p99_us;
        run->grpc_srv_us = read_field(&res, RF_SRV_US);
      } else {
        fprintf(stderr, "graphd-bench: gateway %d: GetEntity over HTTP, 1 in flight, %.1f s\n",
                r + 1, cfg->duration);
        measure_http(cfg, &h, dp.pid, get_json, ngets, run, r);
      }
    }
    if (run->ok) {
      fprintf(stderr, "graphd-bench: gateway %d: %zu console page loads\n", r + 1, npages);
      measure_pages(&h, ref_json, npages, run, r);
    }
    if (port)
      client_free(&h);
    daemon_exit ex;
    daemon_stop(cfg, &dp, &ex);
    if (!ex.exited_ok) {
      anomaly("gateway %d: graphd did not exit cleanly: %s", r + 1, ex.desc);
      run->ok = false;
    }
    daemon_free(&dp);
    free(log);
    *ret_ok &= run->ok;
    fprintf(stderr,
            "graphd-bench: gateway %d: GetEntity p50 grpc %.0f us, http %.0f us (x%.2f); "
            "page load p50 %.1f ms, p99 %.1f ms\n",
            r + 1, run->grpc_p50, run->http_p50, run->http_p50 / run->grpc_p50,
            run->page_p50_ms, run->page_p99_ms);
  }

  /* Medians over the repeats. */
  double v[8][MAX_REPEAT];
  int n = 0;
  for (int r = 0; r < cfg->repeat; r++) {
    if (!runs[r].ok)
      continue;
    v[0][n] = runs[r].grpc_p50;
    v[1][n] = runs[r].grpc_p99;
    v[2][n] = runs[r].http_p50;
    v[3][n] = runs[r].http_p99;
    v[4][n] = runs[r].http_p50 / runs[r].grpc_p50;
    v[5][n] = runs[r].page_p50_ms;
    v[6][n] = runs[r].page_p99_ms;
    v[7][n] = runs[r].http_srv_us / runs[r].grpc_srv_us;
    n++;
  }
  double m[8];
  for (int i = 0; i < 8; i++)
    m[i] = n ? median(v[i], n) : NAN;
  char b1[32], b2[32], b3[32], b4[32];
  printf("\ngateway: GetEntity, 1 call in flight, %d repeat(s) of %.1f s per transport, "
         "--no-audit\n",
         n, cfg->duration);
  printf("  %-6s %10s %10s\n", "", "p50 us", "p99 us");
  printf("  %-6s %10s %10s\n", "grpc", fmtf(b1, sizeof b1, 0, m[0]), fmtf(b2, sizeof b2, 0, m[1]));
  printf("  %-6s %10s %10s\n", "http", fmtf(b3, sizeof b3, 0, m[2]), fmtf(b4, sizeof b4, 0, m[3]));
  bool met = m[4] <= GW_TARGET_RATIO;
  printf("  http/grpc p50 ratio (median of per-repeat ratios): %s (target <= %.1f: %s); "
         "daemon CPU per call ratio %s\n",
         fmtf(b1, sizeof b1, 2, m[4]), GW_TARGET_RATIO, met ? "met" : "MISSED",
         fmtf(b2, sizeof b2, 2, m[7]));
  bool pmet = m[5] <= GW_TARGET_PAGE_MS;
  printf("console page load (GetEntity + LinkedSellers maxHops 2 over HTTP, %zu starts, wall "
         "time at the client): p50 %s ms, p99 %s ms (target p50 <= %.0f ms: %s)\n",
         npages, fmtf(b1, sizeof b1, 1, m[5]), fmtf(b2, sizeof b2, 1, m[6]), GW_TARGET_PAGE_MS,
         pmet ? "met" : "MISSED");

  json_object *j = json_object_new_object();
  json_object *reps = json_object_new_array();
  for (int r = 0; r < cfg->repeat; r++) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(runs[r].ok));
    json_object_object_add(o, "grpc_p50_us", json_object_new_double(runs[r].grpc_p50));
    json_object_object_add(o, "grpc_p99_us", json_object_new_double(runs[r].grpc_p99));
    json_object_object_add(o, "grpc_daemon_us_per_call", json_object_new_double(runs[r].grpc_srv_us));
    json_object_object_add(o, "http_p50_us", json_object_new_double(runs[r].http_p50));
    json_object_object_add(o, "http_p99_us", json_object_new_double(runs[r].http_p99));
    json_object_object_add(o, "http_daemon_us_per_call", json_object_new_double(runs[r].http_srv_us));
    json_object_object_add(o, "http_calls", json_object_new_int64((int64_t)runs[r].http_calls));
    json_object_object_add(o, "page_p50_ms", json_object_new_double(runs[r].page_p50_ms));
    json_object_object_add(o, "page_p99_ms", json_object_new_double(runs[r].page_p99_ms));
    json_object_object_add(o, "pages", json_object_new_int64((int64_t)runs[r].pages));
    json_object_array_add(reps, o);
  }
  json_object_object_add(j, "repeats", reps);
  json_object_object_add(j, "http_grpc_p50_ratio", json_object_new_double(m[4]));
  json_object_object_add(j, "http_grpc_cpu_ratio", json_object_new_double(m[7]));
  json_object_object_add(j, "ratio_target", json_object_new_double(GW_TARGET_RATIO));
  json_object_object_add(j, "ratio_met", json_object_new_boolean(met));
  json_object_object_add(j, "page_p50_ms", json_object_new_double(m[5]));
  json_object_object_add(j, "page_p99_ms", json_object_new_double(m[6]));
  json_object_object_add(j, "page_target_ms", json_object_new_double(GW_TARGET_PAGE_MS));
  json_object_object_add(j, "page_met", json_object_new_boolean(pmet));

  for (size_t i = 0; i < ngets; i++)
    free(get_json[i]);
  for (size_t i = 0; i < npages; i++)
    free(ref_json[i]);
  free(get_json);
  free(ref_json);
  free(runs);
  if (!cfg->keep)
    rm_rf(dir);
  free(dir);
  return j;
}
