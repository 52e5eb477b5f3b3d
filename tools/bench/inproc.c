/*
 * The read mode's in-process reference: the LinkedSellers queries the
 * benchmark sent, run again in this process through the query layer
 * (gd_query_linked, as the daemon's handler runs it: default evidence
 * parameters, the daemon's default limit and row bound), one thread, on
 * the same data directory once the daemon has stopped. What a call costs
 * the daemon beyond this is the service around the query: gRPC, the
 * hand-off to a query thread, the reply's entity briefs and packing, the
 * audit record.
 *
 * Per repeat and rpc: one untimed pass over the requests (the thread's
 * entity cache warms as the daemon's did during its measurements), then
 * passes for --duration seconds, timed by this thread's CPU clock. The
 * figure is the median over the repeats of CPU microseconds per query.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_int.h"
#include "graphd.pb-c.h"
#include "query/query.h"
#include "store/store.h"

#define INPROC_LIMIT 100           /* the daemon's default LinkedSellers limit */
#define INPROC_MAX_TOUCHED 200000  /* and its default row bound (max_touched) */

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resolves the requests' sellers to ids; n of them found. */
static size_t resolve_sellers(gd_store *st, const ProtobufCMessage *const *msgs, size_t n,
                              uint64_t *ids) {
  gd_rtxn *r;
  gd_err err;
  size_t found = 0;
  if (gd_store_read_begin(st, &r, &err))
    die("in-process reference: %s", err.msg);
  for (size_t i = 0; i < n; i++) {
    const Graphd__V1__LinkedSellersRequest *q = (const Graphd__V1__LinkedSellersRequest *)msgs[i];
    gd_ref ref = {0, GD_TYPE_SELLER, gd_str_c(q->seller && q->seller->key ? q->seller->key : "")};
    if (gd_store_lookup(r, &ref, &ids[found], &err) == GD_OK)
      found++;
  }
  gd_store_read_end(r);
  return found;
}

/* One pass over ids (or until deadline_cpu when > 0); queries run. */
static size_t run_pass(gd_store *st, const uint64_t *ids, size_t n, unsigned hops,
                       double deadline_cpu, double *touched, size_t *errors) {
  gd_query_params p;
  gd_query_params_default(&p);
  p.max_touched = INPROC_MAX_TOUCHED;
  size_t done = 0;
  for (size_t i = 0; i < n; i++) {
    gd_rtxn *r;
    gd_err err;
    gd_linked_result res;
    if (gd_store_read_begin(st, &r, &err)) {
      (*errors)++;
      continue;
    }
    if (gd_query_linked(r, ids[i], hops, &p, INPROC_LIMIT, 0, &res, &err) == GD_OK) {
      *touched += (double)res.touched;
      gd_linked_result_free(&res);
    } else {
      (*errors)++;
    }
    gd_store_read_end(r);
    done++;
    if (deadline_cpu > 0 && (done & 63) == 0 && thread_cpu_s() >= deadline_cpu)
      break;
  }
  return done;
}

json_object *read_inproc(const bench_cfg *cfg, const char *data_dir, const read_keys *keys,
                         json_object *daemon_read) {
  static const rpc_kind kinds[] = {RPC_LINKED1, RPC_LINKED2};
  unsigned rpcs = read_keys_rpcs(keys);
  json_object *j = json_object_new_object();
  gd_store_opts so = {.path = data_dir};
  gd_store *st;
  gd_err err;
  if (gd_store_open(&so, &st, &err)) {
    anomaly("in-process reference: cannot open %s: %s", data_dir, err.msg);
    return j;
  }
  for (size_t kk = 0; kk < sizeof kinds / sizeof kinds[0]; kk++) {
    rpc_kind k = kinds[kk];
    if (!(rpcs & 1u << k))
      continue;
    unsigned hops = k == RPC_LINKED1 ? 1 : 2;
    const ProtobufCMessage *const *msgs;
    size_t n = read_keys_requests(keys, k, &msgs);
    uint64_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    size_t nid = resolve_sellers(st, msgs, n, ids);
    if (nid < n)
      anomaly("in-process reference: %zu of %zu %s sellers not found in %s", n - nid, n,
              rpc_names[k], data_dir);
    double us[MAX_REPEAT];
    double touched = 0;
    size_t queries = 0, errors = 0;
    json_object *per = json_object_new_array();
    for (int rep = 0; rep < cfg->repeat && nid; rep++) {
      double warm_touched = 0;
      size_t e0 = errors;
      run_pass(st, ids, nid, hops, 0, &warm_touched, &errors);
      double t0 = thread_cpu_s(), deadline = t0 + cfg->duration, tq = 0;
      size_t q = 0;
      while (thread_cpu_s() < deadline)
        q += run_pass(st, ids, nid, hops, deadline, &tq, &errors);
      double cpu = thread_cpu_s() - t0;
      us[rep] = q ? cpu / (double)q * 1e6 : NAN;
      queries += q;
      touched += tq;
      if (errors > e0)
        anomaly("in-process reference: %zu %s queries failed", errors - e0, rpc_names[k]);
      json_object_array_add(per, json_object_new_double(us[rep]));
    }
    double med = NAN;
    if (nid && cfg->repeat) {
      qsort(us, (size_t)cfg->repeat, sizeof *us, cmp_double);
      med = cfg->repeat % 2 ? us[cfg->repeat / 2]
                            : (us[cfg->repeat / 2 - 1] + us[cfg->repeat / 2]) / 2;
    }
    double daemon_us = NAN;
    json_object *dk, *du;
    if (daemon_read && json_object_object_get_ex(daemon_read, rpc_json_names[k], &dk) &&
        json_object_object_get_ex(dk, "server_cpu_us_per_call", &du))
      daemon_us = json_object_get_double(du);
    printf("  in-process %-12s %8.1f us CPU per query (gd_query_linked, 1 thread, %zu sellers, "
           "%.0f rows touched per query); daemon CPU per call at the headline point / "
           "in-process: %.2f\n",
           rpc_names[k], med, nid, queries ? touched / (double)queries : 0.0, daemon_us / med);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "cpu_us_per_query", json_object_new_double(med));
    json_object_object_add(o, "per_repeat", per);
    json_object_object_add(o, "sellers", json_object_new_uint64(nid));
    json_object_object_add(o, "queries", json_object_new_uint64(queries));
    json_object_object_add(o, "touched_per_query",
                           json_object_new_double(queries ? touched / (double)queries : 0));
    json_object_object_add(o, "daemon_cpu_us_per_call", json_object_new_double(daemon_us));
    json_object_object_add(o, "daemon_over_inprocess", json_object_new_double(daemon_us / med));
    json_object_object_add(j, rpc_json_names[k], o);
    free(ids);
  }
  gd_store_close(st);
  return j;
}
