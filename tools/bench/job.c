/*
 * graphd-bench: clustering jobs through the daemon, for the cluster, warm
 * and place modes: one job run (StartClustering + WatchJob to the end), its
 * snapshot's manifest over GetSnapshot, and the manifest as the worker
 * stored it, read in-process. The contracts are in bench_int.h.
 */
#include <grpc/grpc.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"
#include "store/snapshot.h"
#include "store/store.h"

static const char *job_state_name(int s) {
  switch (s) {
  case GRAPHD__V1__JOB_STATE__JOB_STATE_QUEUED: return "QUEUED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_RUNNING: return "RUNNING";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_SUCCEEDED: return "SUCCEEDED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_FAILED: return "FAILED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_CANCELLED: return "CANCELLED";
  default: return "UNSPECIFIED";
  }
}

bool bench_job_run(const bench_cfg *cfg, gc_client *c, daemon_proc *dp, const char *label,
                   const char *name, int warm_start, bench_job *ret) {
  memset(ret, 0, sizeof *ret);
  ret->start_rpc_s = ret->wall_s = NAN;
  Graphd__V1__ClusteringSpec spec = GRAPHD__V1__CLUSTERING_SPEC__INIT;
  spec.name = (char *)name;
  spec.warm_start = (Graphd__V1__WarmStart)warm_start;
  Graphd__V1__StartClusteringRequest req = GRAPHD__V1__START_CLUSTERING_REQUEST__INIT;
  req.spec = &spec;
  gc_status st;
  Graphd__V1__Job *job = NULL;
  int64_t t0 = now_ns();
  if (gc_unary(c, SVC "StartClustering", &req.base, &graphd__v1__job__descriptor,
               (ProtobufCMessage **)&job, &st, cfg->call_timeout_ms)) {
    anomaly("%s: StartClustering failed: %s: %s", label, gc_status_code_name(st.code),
            st.message);
    daemon_alive(dp, "during StartClustering");
    return false;
  }
  ret->start_rpc_s = (double)(now_ns() - t0) / 1e9;
  ret->job_id = job->id;
  graphd__v1__job__free_unpacked(job, NULL);
  job = NULL;

  Graphd__V1__JobRequest jr = GRAPHD__V1__JOB_REQUEST__INIT;
  jr.job_id = ret->job_id;
  gc_sstream *s = NULL;
  int64_t t_last = 0;
  int code = gc_sstream_open(c, SVC "WatchJob", &jr.base, cfg->job_timeout_ms, &s, &st);
  while (code == GRPC_STATUS_OK) {
    ProtobufCMessage *m = NULL;
    code = gc_sstream_next(s, &graphd__v1__job__descriptor, &m, &st);
    if (code != GRPC_STATUS_OK || !m)
      break;
    t_last = now_ns();
    if (job)
      graphd__v1__job__free_unpacked(job, NULL);
    job = (Graphd__V1__Job *)m;
  }
  gc_sstream_free(s);
  if (code != GRPC_STATUS_OK) {
    anomaly("%s: WatchJob(%" PRIu64 ") failed: %s: %s", label, ret->job_id,
            gc_status_code_name(code), st.message);
    daemon_alive(dp, "during WatchJob");
  } else if (!job) {
    anomaly("%s: WatchJob(%" PRIu64 ") sent no message", label, ret->job_id);
  } else if (job->state != GRAPHD__V1__JOB_STATE__JOB_STATE_SUCCEEDED) {
    anomaly("%s: job %" PRIu64 " ended %s (stage %s): %s; see %s", label, ret->job_id,
            job_state_name(job->state), job->stage, job->reason, dp->log_path);
  } else {
    ret->wall_s = (double)(t_last - t0) / 1e9;
    ret->snapshot_id = job->snapshot_id;
  }
  if (job)
    graphd__v1__job__free_unpacked(job, NULL);
  return ret->snapshot_id != 0;
}

const char *const stage_names[S__COUNT] = {"open",  "read",      "project", "cluster",
                                           "match", "summarize", "total"};

void bench_manifest_clear(bench_manifest *m) {
  memset(m, 0, sizeof *m);
  for (int k = 0; k < S__COUNT; k++)
    m->stage_s[k] = NAN;
  m->objective = m->modularity = m->worker_rss = NAN;
}

bool bench_snapshot_read(const bench_cfg *cfg, gc_client *c, uint64_t snap, const char *label,
                         bench_manifest *ret) {
  bench_manifest_clear(ret);
  Graphd__V1__SnapshotRequest sr = GRAPHD__V1__SNAPSHOT_REQUEST__INIT;
  sr.snapshot_id = snap;
  Graphd__V1__SnapshotManifest *man = NULL;
  gc_status st;
  if (gc_unary(c, SVC "GetSnapshot", &sr.base, &graphd__v1__snapshot_manifest__descriptor,
               (ProtobufCMessage **)&man, &st, cfg->call_timeout_ms)) {
    anomaly("%s: GetSnapshot(%" PRIu64 ") failed: %s: %s", label, snap,
            gc_status_code_name(st.code), st.message);
    return false;
  }
  for (size_t i = 0; i < man->n_timings; i++)
    for (int k = 0; k < S__COUNT; k++)
      if (man->timings[i]->stage && !strcmp(man->timings[i]->stage, stage_names[k]))
        ret->stage_s[k] = man->timings[i]->seconds;
  ret->sellers = man->sellers;
  ret->ties = man->ties;
  ret->clusters = man->clusters;
  ret->hubs_skipped = man->hubs_skipped;
  ret->previous = man->previous_snapshot_id;
  ret->warm_started = man->warm_started;
  ret->objective = man->objective;
  ret->modularity = man->modularity;
  ret->worker_rss = man->peak_rss_bytes ? (double)man->peak_rss_bytes : NAN;
  snprintf(ret->checksum, sizeof ret->checksum, "%s",
           man->input_checksum ? man->input_checksum : "");
  protobuf_c_message_free_unpacked(&man->base, NULL);
  return true;
}

json_object *bench_stored_manifest(gd_store *store, uint64_t snap, const char *label) {
  gd_rtxn *r = NULL;
  gd_err err = {0};
  gd_snapshot_view v;
  if (gd_store_read_begin(store, &r, &err) || gd_store_snapshot_get(r, snap, &v, &err)) {
    anomaly("%s: cannot read snapshot %" PRIu64 "'s manifest in-process: %s", label, snap,
            err.msg);
    gd_store_read_end(r);
    return NULL;
  }
  /* v points into the transaction: parsed before it ends. */
  json_tokener *tok = json_tokener_new();
  json_object *m = tok && v.manifest_len <= INT32_MAX
                       ? json_tokener_parse_ex(tok, v.manifest, (int)v.manifest_len)
                       : NULL;
  json_tokener_free(tok);
  gd_store_read_end(r);
  return m;
}

bool bench_json_number(json_object *o, const char *key, const char *sub, double *ret) {
  json_object *x = NULL;
  if (!o || !json_object_object_get_ex(o, key, &x) || !x)
    return false;
  if (sub && (!json_object_object_get_ex(x, sub, &x) || !x))
    return false;
  *ret = json_object_get_double(x);
  return true;
}

/* ---- the placement queue ------------------------------------------------ */

#define DRAIN_TIMEOUT_MS 300000 /* longest wait for the queue to drain */
#define DRAIN_POLL_MS 20

bool bench_stats_get(const bench_cfg *cfg, gc_client *c, bench_stats *ret) {
  Graphd__V1__StatsRequest req = GRAPHD__V1__STATS_REQUEST__INIT;
  Graphd__V1__StatsReply *rep = NULL;
  gc_status st;
  if (gc_unary(c, SVC "Stats", &req.base, &graphd__v1__stats_reply__descriptor,
               (ProtobufCMessage **)&rep, &st, cfg->call_timeout_ms)) {
    anomaly("Stats failed: %s: %s", gc_status_code_name(st.code), st.message);
    return false;
  }
  *ret = (bench_stats){rep->placement_queued, rep->placements, rep->placement_shed,
                       rep->alerts, rep->links, rep->commits, rep->entities_total};
  graphd__v1__stats_reply__free_unpacked(rep, NULL);
  return true;
}

bool bench_wait_drained(const bench_cfg *cfg, gc_client *c, int64_t t0, double *ret_s,
                        uint64_t *ret_max) {
  int zeros = 0;
  int64_t first_zero = 0;
  uint64_t mx = 0;
  *ret_s = NAN;
  for (;;) {
    bench_stats s;
    if (!bench_stats_get(cfg, c, &s))
      return false;
    int64_t t = now_ns();
    if (s.queued > mx)
      mx = s.queued;
    if (s.queued == 0) {
      if (!zeros++)
        first_zero = t;
      if (zeros >= 3)
        break;
    } else {
      zeros = 0;
    }
    if (t - t0 > (int64_t)DRAIN_TIMEOUT_MS * 1000000) {
      anomaly("the placement queue did not drain within %d s: %" PRIu64 " queued",
              DRAIN_TIMEOUT_MS / 1000, s.queued);
      return false;
    }
    usleep(DRAIN_POLL_MS * 1000);
  }
  *ret_s = (double)(first_zero - t0) / 1e9;
  if (ret_max)
    *ret_max = mx;
  return true;
}
