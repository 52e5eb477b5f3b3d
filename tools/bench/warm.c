/*
 * graphd-bench warm: clustering jobs started warm (from the previous
 * snapshot's membership, ClusteringSpec.warm_start ON) against cold ones
 * (OFF, from singletons), on a graph that changed a little since that
 * snapshot: the weekly rerun warm start is for. The targets (at 1M
 * sellers): a warm job >= 1.5x faster than a cold one, and >= 97% of the
 * previous snapshot's sellers keeping their cluster id.
 *
 * main (bench.c) generates the data (sellergen, or --links) and loads it;
 * bench_warm then:
 *
 * 1. Sorts the link records by their seen time (records seen at the same
 *    time keep their file order) and holds back the newest 1% of them
 *    (at least one record).
 * 2. Starts a daemon on a fresh data dir (graphd --data DIR --listen
 *    127.0.0.1:0 [--graphd-arg ...]) and streams the other 99% through
 *    one Ingest call (bench_ingest_range: batches of --batch links).
 * 3. Snapshot A: StartClustering with the default spec (only name "A";
 *    there is no previous snapshot, so it runs cold) and WatchJob to the
 *    end (SUCCEEDED, else the mode stops).
 * 4. Streams the held-back 1% through a second Ingest call.
 * 5. Opens the same LMDB environment in this process next to the daemon
 *    (as the cluster mode does; it only reads) and reads A's assignments.
 * 6. Per repeat, in alternating order (cold first in repeats 1, 3, ...,
 *    warm first in 2, 4, ...), two jobs, each with the default spec but
 *    its name ("cold-R" / "warm-R") and warm_start OFF / ON. First,
 *    untimed, the daemon is let go quiet: 1.5 s for its placer to see the
 *    latest snapshot, then Stats until the placement queue is empty
 *    (bench_wait_drained; reported as quiet_s), since each new latest
 *    snapshot sends every provisional placement back to be placed again.
 *    Then StartClustering, WatchJob until the stream ends, timed from the call
 *    to the last message (the job's wall time). Then, outside the timing:
 *    GetSnapshot (stage seconds, objective, clusters, warm_started,
 *    previous_snapshot_id, which must be A's id), the stored manifest
 *    in-process (result.iterations, stable_ids.sellers_stayed), the
 *    snapshot's assignments in-process, compared with A's: the share of
 *    A's sellers with the same cluster id (must equal sellers_stayed / A's
 *    sellers), and DeleteSnapshot, so that A is again the latest snapshot
 *    and the next job's previous one (the daemon matches against the
 *    latest; ClusteringSpec has no previous field).
 *    The daemon's default "previous = latest" thus makes A the previous
 *    snapshot of every job: the cold job matches its ids against A just
 *    as the warm one does (same read and match stages), so the two differ
 *    only in Leiden's start.
 * 7. SIGTERM; the daemon must exit 0.
 *
 * Reported per kind (medians over the repeats): wall time, cluster-stage
 * seconds, the worker's total (open to summarize), Leiden iterations,
 * stability (share of A's sellers keeping their cluster id), objective
 * (CPM quality), clusters; and the ratios cold / warm of the wall time
 * and of the cluster stage (medians of per-repeat ratios). Targets are
 * marked met or missed (not anomalies). Anomalies: a job not SUCCEEDED,
 * warm_started not as asked (a warm job that did not start warm, a cold
 * one that did), a previous snapshot other than A, stability disagreeing
 * with the manifest, an ingest failing, the daemon dying or not exiting 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"
#include "store/snapshot.h"
#include "store/store.h"

#define TARGET_SPEEDUP 1.5    /* cold wall / warm wall, at least (1M sellers) */
#define TARGET_STABILITY 0.97 /* share of A's sellers keeping their cluster id, at least */
#define HELD_BACK 0.01        /* the newest share of link records ingested after A */
#define PLACER_SETTLE_MS 1500 /* > the placer's 1 s look for a new snapshot (place.c) */

enum { COLD = 0, WARM = 1 };
static const char *const kind_names[2] = {"cold", "warm"};

/* ---- assignments, in-process ----------------------------------------- */

typedef struct assign {
  uint64_t *s, *c; /* ascending seller ids and their cluster ids */
  size_t n, cap;
} assign;

static int assign_add(void *ctx, const uint64_t *s, const uint64_t *c, size_t n) {
  assign *a = ctx;
  if (a->n + n > a->cap) {
    a->cap = (a->n + n) * 2;
    a->s = xrealloc(a->s, a->cap * sizeof *a->s);
    a->c = xrealloc(a->c, a->cap * sizeof *a->c);
  }
  memcpy(a->s + a->n, s, n * sizeof *s);
  memcpy(a->c + a->n, c, n * sizeof *c);
  a->n += n;
  return 0;
}

static bool assign_read(gd_store *store, uint64_t snap, assign *ret) {
  memset(ret, 0, sizeof *ret);
  gd_rtxn *r = NULL;
  gd_err err = {0};
  int rc = gd_store_read_begin(store, &r, &err);
  if (!rc)
    rc = gd_store_assignments_visit(r, snap, 0, assign_add, ret, NULL, &err);
  gd_store_read_end(r);
  if (rc)
    anomaly("warm: cannot read snapshot %" PRIu64 "'s assignments in-process: %s", snap,
            err.msg);
  return rc == 0;
}

static void assign_free(assign *a) {
  free(a->s);
  free(a->c);
  memset(a, 0, sizeof *a);
}

/* Sellers of base with the same cluster id in cur (both ascending). */
static uint64_t assign_stayed(const assign *base, const assign *cur) {
  uint64_t stayed = 0;
  for (size_t i = 0, k = 0; i < base->n && k < cur->n;) {
    if (base->s[i] < cur->s[k]) {
      i++;
    } else if (base->s[i] > cur->s[k]) {
      k++;
    } else {
      stayed += base->c[i] == cur->c[k];
      i++, k++;
    }
  }
  return stayed;
}

/* ---- one job --------------------------------------------------------- */

typedef struct wjob {
  bool ok;
  double wall_s;
  bench_manifest m; /* GetSnapshot's: stages, sellers, clusters, previous, warm_started ... */
  double iterations, stability;
  double changed_ids; /* input.from_image.changed_ids: the ids its read patched (NAN: a full read) */
  double quiet_s;     /* waited before the job for the daemon's placer (untimed) */
  uint64_t job_id, snapshot_id, stayed_manifest;
} wjob;

/* result.iterations and stable_ids.sellers_stayed of the stored manifest
 * (the rpc's SnapshotManifest carries neither), read in-process; false
 * when sellers_stayed is not there. */
static bool manifest_extras(gd_store *store, uint64_t snap, wjob *ret) {
  json_object *m = bench_stored_manifest(store, snap, "warm");
  double stayed;
  bench_json_number(m, "result", "iterations", &ret->iterations);
  json_object *in = NULL;
  ret->changed_ids = NAN;
  if (m && json_object_object_get_ex(m, "input", &in))
    bench_json_number(in, "from_image", "changed_ids", &ret->changed_ids);
  bool have = bench_json_number(m, "stable_ids", "sellers_stayed", &stayed);
  if (have)
    ret->stayed_manifest = (uint64_t)stayed;
  json_object_put(m);
  return have;
}

/* StartClustering + WatchJob to the end (job name; label: the job in the
 * anomalies); *ret_snapshot when SUCCEEDED. Returns the wall time (NAN on
 * failure). */
static double job_run(const bench_cfg *cfg, gc_client *c, daemon_proc *dp, const char *name,
                      int warm_start, uint64_t *ret_job, uint64_t *ret_snapshot) {
  char label[64];
  snprintf(label, sizeof label, "warm: job %s", name);
  bench_job job;
  bench_job_run(cfg, c, dp, label, name, warm_start, &job);
  *ret_job = job.job_id;
  *ret_snapshot = job.snapshot_id;
  return job.wall_s;
}

static bool snapshot_delete(const bench_cfg *cfg, gc_client *c, uint64_t snap) {
  Graphd__V1__SnapshotRequest sr = GRAPHD__V1__SNAPSHOT_REQUEST__INIT;
  sr.snapshot_id = snap;
  ProtobufCMessage *rep = NULL;
  gc_status st;
  if (gc_unary(c, SVC "DeleteSnapshot", &sr.base, &graphd__v1__delete_snapshot_reply__descriptor,
               &rep, &st, cfg->call_timeout_ms)) {
    anomaly("warm: DeleteSnapshot(%" PRIu64 ") failed: %s: %s", snap,
            gc_status_code_name(st.code), st.message);
    return false;
  }
  protobuf_c_message_free_unpacked(rep, NULL);
  return true;
}

/* One job against A (kind COLD or WARM), read, compared and deleted. */
static void run_kind(const bench_cfg *cfg, gc_client *c, gd_store *store, daemon_proc *dp,
                     int kind, int r, uint64_t snap_a, const assign *a, wjob *ret) {
  memset(ret, 0, sizeof *ret);
  bench_manifest_clear(&ret->m);
  ret->wall_s = ret->iterations = ret->stability = NAN;
  char name[32];
  snprintf(name, sizeof name, "%s-%d", kind_names[kind], r + 1);
  int ws = kind == WARM ? GRAPHD__V1__WARM_START__WARM_START_ON
                        : GRAPHD__V1__WARM_START__WARM_START_OFF;
  /* The daemon quiet first. A new latest snapshot (the previous job's, or
   * A again once that one is deleted) makes the placer re-place every
   * provisional placement against it (ARCHITECTURE.md, "Fresh clusters"):
   * at 1M sellers with 1% new links, about 100k sellers and a core for
   * seconds, which would fall into this job's read stage. The placer
   * notices a new snapshot within a second: so a settle, then the queue
   * drained. */
  int64_t t0 = now_ns();
  usleep(PLACER_SETTLE_MS * 1000);
  double drained;
  if (!bench_wait_drained(cfg, c, now_ns(), &drained, NULL))
    return;
  ret->quiet_s = (double)(now_ns() - t0) / 1e9;
  ret->wall_s = job_run(cfg, c, dp, name, ws, &ret->job_id, &ret->snapshot_id);
  if (!ret->snapshot_id)
    return;
  bool ok = bench_snapshot_read(cfg, c, ret->snapshot_id, "warm", &ret->m);
  if (ok && ret->m.previous != snap_a) {
    anomaly("warm: job %s matched against snapshot %" PRIu64 ", not A (%" PRIu64 ")", name,
            ret->m.previous, snap_a);
    ok = false;
  }
  if (ok && ret->m.warm_started != (kind == WARM)) {
    anomaly("warm: job %s: warm_started %s with warm_start %s", name,
            ret->m.warm_started ? "true" : "false", kind == WARM ? "ON" : "OFF");
    ok = false;
  }
  bool have_stayed = manifest_extras(store, ret->snapshot_id, ret);
  assign cur;
  if (assign_read(store, ret->snapshot_id, &cur)) {
    uint64_t stayed = assign_stayed(a, &cur);
    ret->stability = a->n ? (double)stayed / (double)a->n : NAN;
    if (have_stayed && stayed != ret->stayed_manifest) {
      anomaly("warm: job %s: %" PRIu64 " of A's sellers kept their cluster id, the manifest "
              "says %" PRIu64, name, stayed, ret->stayed_manifest);
      ok = false;
    }
  } else {
    ok = false;
  }
  assign_free(&cur);
  ok &= snapshot_delete(cfg, c, ret->snapshot_id);
  ret->ok = ok;
}

/* ---- the report ------------------------------------------------------ */

typedef struct warm_report {
  int n;
  wjob job[MAX_REPEAT][2];
  double ratio_wall[MAX_REPEAT], ratio_cluster[MAX_REPEAT];
} warm_report;

enum {
  F_WALL, F_CLUSTER, F_TOTAL, F_ITER, F_STAB, F_OBJ, F_CLUSTERS, F_READ, F_REST, F_CHANGED,
  F_QUIET
};

static double field(const wjob *j, int f) {
  if (!j->ok)
    return NAN;
  switch (f) {
  case F_WALL: return j->wall_s;
  case F_CLUSTER: return j->m.stage_s[S_CLUSTER];
  case F_TOTAL: return j->m.stage_s[S_TOTAL];
  case F_ITER: return j->iterations;
  case F_STAB: return j->stability;
  case F_OBJ: return j->m.objective;
  case F_CLUSTERS: return (double)j->m.clusters;
  case F_READ: return j->m.stage_s[S_READ];
  case F_REST: return j->wall_s - j->m.stage_s[S_TOTAL];
  case F_CHANGED: return j->changed_ids;
  case F_QUIET: return j->quiet_s;
  }
  return NAN;
}

static double med(const warm_report *rep, int kind, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->n; r++)
    v[r] = field(&rep->job[r][kind], f);
  return median(v, rep->n);
}

static json_object *jarr(const warm_report *rep, int kind, int f) {
  json_object *a = json_object_new_array();
  for (int r = 0; r < rep->n; r++)
    json_object_array_add(a, jnum(field(&rep->job[r][kind], f)));
  return a;
}

/* ---- the mode -------------------------------------------------------- */

json_object *bench_warm(const bench_cfg *cfg, const char *workroot, dataset *d, bool *ret_ok) {
  json_object *j = json_object_new_object();
  *ret_ok = false;
  bool ok = true;
  char *dir = xasprintf("%s/warm", workroot);
  if (mkdir(dir, 0755) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  char *data_dir = xasprintf("%s/graphd-data", dir);
  char *dlog = xasprintf("%s/graphd-warm.log", dir);

  /* 1. The split. */
  dataset_sort_by_seen(d);
  size_t nl = dataset_links(d);
  size_t held = (size_t)((double)nl * HELD_BACK);
  if (held < 1)
    held = 1;
  if (held >= nl)
    die("warm: %zu link records: too few to hold back %.0f%%", nl, HELD_BACK * 100);
  size_t cut = nl - held;
  int64_t seen_cut = dataset_link_seen(d, cut), seen_last = dataset_link_seen(d, nl - 1);
  fprintf(stderr, "graphd-bench: warm: %zu link records; the newest %zu (seen %" PRId64
          "..%" PRId64 ") held back\n", nl, held, seen_cut, seen_last);

  /* 2-4. Daemon, first ingest, A, second ingest. */
  daemon_proc dp;
  if (!daemon_start(cfg, data_dir, dlog, &dp)) {
    daemon_free(&dp);
    jput(j, "ok", json_object_new_boolean(false));
    free(dir), free(data_dir), free(dlog);
    return j;
  }
  fprintf(stderr, "graphd-bench: graphd (pid %d) on %s at %s\n", (int)dp.pid, data_dir, dp.addr);
  gc_client *c = NULL;
  gc_status st;
  gc_client_opts co = {.own_connection = true};
  if (gc_client_open(dp.addr, &co, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
    anomaly("warm: cannot connect to %s: %s", dp.addr, st.message);
    gc_client_close(c);
    c = NULL;
    ok = false;
  }
  double ingest1_s = NAN, ingest2_s = NAN;
  uint64_t rec1 = 0, rec2 = 0;
  wjob a = {0};
  bench_manifest_clear(&a.m);
  a.wall_s = a.iterations = a.stability = NAN;
  if (c) {
    fprintf(stderr, "graphd-bench: warm: ingesting %zu link records...\n", cut);
    ok &= bench_ingest_range(cfg, c, d, 0, cut, "warm", "the first ", &ingest1_s, &rec1);
  }
  if (c && ok) {
    fprintf(stderr, "graphd-bench: warm: snapshot A (cold, default spec)...\n");
    a.wall_s = job_run(cfg, c, &dp, "A", GRAPHD__V1__WARM_START__WARM_START_AUTO, &a.job_id,
                       &a.snapshot_id);
    ok &= a.snapshot_id && bench_snapshot_read(cfg, c, a.snapshot_id, "warm", &a.m);
    if (ok && a.m.warm_started) {
      anomaly("warm: snapshot A (no previous snapshot) says it started warm");
      ok = false;
    }
    fprintf(stderr, "graphd-bench:   A = snapshot %" PRIu64 ": job %.3f s, cluster stage %.3f s, "
            "%" PRIu64 " sellers, %" PRIu64 " ties\n", a.snapshot_id, a.wall_s,
            a.m.stage_s[S_CLUSTER], a.m.sellers, a.m.ties);
  }
  if (c && ok) {
    fprintf(stderr, "graphd-bench: warm: ingesting the newest %zu link records...\n", held);
    ok &= bench_ingest_range(cfg, c, d, cut, held, "warm", "the newest ", &ingest2_s, &rec2);
  }

  /* 5. A's assignments, in-process. */
  gd_store *store = NULL;
  assign aa = {0};
  if (c && ok) {
    gd_err err = {0};
    gd_store_opts so = {.path = data_dir};
    if (gd_store_open(&so, &store, &err))
      die("cannot open the store in %s next to the daemon: %s", data_dir, err.msg);
    manifest_extras(store, a.snapshot_id, &a);
    ok &= assign_read(store, a.snapshot_id, &aa);
    a.ok = ok;
  }

  /* 6. The repeats. */
  warm_report *rep = xcalloc(1, sizeof *rep);
  for (int r = 0; r < cfg->repeat && c && ok; r++) {
    rep->n = r + 1;
    bool cold_first = r % 2 == 0;
    for (int step = 0; step < 2; step++) {
      int kind = (step == 0) == cold_first ? COLD : WARM;
      wjob *w = &rep->job[r][kind];
      fprintf(stderr, "graphd-bench: warm %d/%d: %s job...\n", r + 1, cfg->repeat,
              kind_names[kind]);
      run_kind(cfg, c, store, &dp, kind, r, a.snapshot_id, &aa, w);
      fprintf(stderr, "graphd-bench:   %s: job %.3f s, cluster stage %.3f s, %.0f iterations, "
              "%.4f of A's sellers kept their id (after %.1f s waiting for the placer)%s\n",
              kind_names[kind], w->wall_s, w->m.stage_s[S_CLUSTER], w->iterations, w->stability,
              w->quiet_s, w->ok ? "" : " FAILED");
    }
    const wjob *cj = &rep->job[r][COLD], *wj = &rep->job[r][WARM];
    ok &= cj->ok && wj->ok;
    rep->ratio_wall[r] = cj->ok && wj->ok ? cj->wall_s / wj->wall_s : NAN;
    rep->ratio_cluster[r] =
        cj->ok && wj->ok ? cj->m.stage_s[S_CLUSTER] / wj->m.stage_s[S_CLUSTER] : NAN;
  }
  gc_client_close(c);

  /* 7. Stop. */
  daemon_exit ex;
  ok &= daemon_finish(cfg, &dp, "during the warm benchmark", &ex);
  gd_store_close(store);
  assign_free(&aa);

  /* Report. */
  int n = rep->n;
  uint64_t sellers = a.m.sellers; /* after the second ingest: a job's */
  for (int r = 0; r < n; r++)
    for (int k = 0; k < 2; k++)
      if (rep->job[r][k].ok)
        sellers = rep->job[r][k].m.sellers;
  double rw = median(rep->ratio_wall, n), rc = median(rep->ratio_cluster, n);
  double stab = med(rep, WARM, F_STAB);
  char b1[64], b2[64];
  printf("\nWARM START  %" PRIu64 " sellers (%" PRIu64 " in A), %" PRIu64 " ties in A; %zu link "
         "records, the newest %zu (%.0f%%, seen >= %" PRId64 ") ingested after A; median of %d "
         "interleaved repeat(s)\n",
         sellers, a.m.sellers, a.m.ties, nl, held, HELD_BACK * 100, seen_cut, n);
  printf("  ingest: %zu records %.2f s, then %zu records %.2f s; A: job %.3f s, cluster stage "
         "%.3f s, %.0f iterations, %s clusters, objective %.6f\n",
         cut, ingest1_s, held, ingest2_s, a.wall_s, a.m.stage_s[S_CLUSTER], a.iterations,
         fmt_count(b1, sizeof b1, (double)a.m.clusters), a.m.objective);
  printf("  %-5s %10s %10s %10s %10s %10s %10s %10s %12s %10s %10s\n", "", "job s", "read s",
         "cluster s", "worker s", "rest s", "iterations", "stability", "objective", "clusters",
         "patched");
  for (int k = 0; k < 2; k++)
    printf("  %-5s %10.3f %10.3f %10.3f %10.3f %10.3f %10.1f %10.4f %12.6f %10s %10.0f\n",
           kind_names[k], med(rep, k, F_WALL), med(rep, k, F_READ), med(rep, k, F_CLUSTER),
           med(rep, k, F_TOTAL), med(rep, k, F_REST), med(rep, k, F_ITER), med(rep, k, F_STAB),
           med(rep, k, F_OBJ), fmt_count(b2, sizeof b2, med(rep, k, F_CLUSTERS)),
           med(rep, k, F_CHANGED));
  printf("  (read s: the read stage, a full read or, warm, the previous snapshot's image patched "
         "with the ids changed since (patched); worker s: open to summarize; rest s: job - worker "
         "s, the write stage and the worker's start and exit)\n");
  printf("  per repeat (cold/warm): job s");
  for (int r = 0; r < n; r++)
    printf(" %.2f/%.2f", rep->job[r][COLD].wall_s, rep->job[r][WARM].wall_s);
  printf("; iterations");
  for (int r = 0; r < n; r++)
    printf(" %.0f/%.0f", rep->job[r][COLD].iterations, rep->job[r][WARM].iterations);
  printf("\n");
  printf("  ratio cold / warm: job %.3f (target >= %.1f: %s), cluster stage %.3f (medians of "
         "per-repeat ratios)\n",
         rw, TARGET_SPEEDUP, met(rw >= TARGET_SPEEDUP, rw), rc);
  printf("  stability (share of A's sellers keeping their cluster id): warm %.4f (target >= "
         "%.2f: %s), cold %.4f\n",
         stab, TARGET_STABILITY, met(stab >= TARGET_STABILITY, stab), med(rep, COLD, F_STAB));
  printf("  objective warm - cold: %+.3g (%+.4f%%)\n", med(rep, WARM, F_OBJ) - med(rep, COLD, F_OBJ),
         100.0 * (med(rep, WARM, F_OBJ) - med(rep, COLD, F_OBJ)) / fabs(med(rep, COLD, F_OBJ)));
  if (cfg->quick || sellers < 1000000)
    printf("  (the targets are for 1M sellers; at this size they are indicative only)\n");
  printf("  daemon: start %.3f s, SIGTERM->exit %.3f s, exit: %s\n", dp.start_s, ex.stop_s,
         ex.desc);

  /* JSON */
  jput(j, "repeats", json_object_new_int(n));
  jput(j, "order", json_object_new_string("alternating: cold first on odd-numbered repeats"));
  jput(j, "held_back_share", json_object_new_double(HELD_BACK));
  jput(j, "link_records", json_object_new_uint64(nl));
  jput(j, "link_records_held_back", json_object_new_uint64(held));
  jput(j, "held_back_seen_from", json_object_new_int64(seen_cut));
  jput(j, "ingest_s", jdouble_array((double[]){ingest1_s, ingest2_s}, 2));
  json_object *ja = json_object_new_object();
  jput(j, "sellers", json_object_new_uint64(sellers));
  jput(ja, "snapshot_id", json_object_new_uint64(a.snapshot_id));
  jput(ja, "sellers", json_object_new_uint64(a.m.sellers));
  jput(ja, "ties", json_object_new_uint64(a.m.ties));
  jput(ja, "clusters", json_object_new_uint64(a.m.clusters));
  jput(ja, "wall_s", jnum(a.wall_s));
  jput(ja, "cluster_s", jnum(a.m.stage_s[S_CLUSTER]));
  jput(ja, "iterations", jnum(a.iterations));
  jput(ja, "objective", jnum(a.m.objective));
  jput(j, "a", ja);
  for (int k = 0; k < 2; k++) {
    json_object *o = json_object_new_object();
    jput(o, "warm_start", json_object_new_string(k == WARM ? "ON" : "OFF"));
    jput(o, "wall_s_median", jnum(med(rep, k, F_WALL)));
    jput(o, "wall_s", jarr(rep, k, F_WALL));
    jput(o, "cluster_s_median", jnum(med(rep, k, F_CLUSTER)));
    jput(o, "cluster_s", jarr(rep, k, F_CLUSTER));
    jput(o, "worker_total_s", jarr(rep, k, F_TOTAL));
    jput(o, "read_s", jarr(rep, k, F_READ));
    jput(o, "rest_s", jarr(rep, k, F_REST));
    jput(o, "patched_ids", jarr(rep, k, F_CHANGED));
    jput(o, "quiet_s", jarr(rep, k, F_QUIET));
    jput(o, "iterations_median", jnum(med(rep, k, F_ITER)));
    jput(o, "iterations", jarr(rep, k, F_ITER));
    jput(o, "stability_median", jnum(med(rep, k, F_STAB)));
    jput(o, "stability", jarr(rep, k, F_STAB));
    jput(o, "objective_median", jnum(med(rep, k, F_OBJ)));
    jput(o, "objective", jarr(rep, k, F_OBJ));
    jput(o, "clusters", jarr(rep, k, F_CLUSTERS));
    jput(j, kind_names[k], o);
  }
  jput(j, "ratio_cold_over_warm_wall", jnum(rw));
  jput(j, "ratio_cold_over_warm_wall_per_repeat", jdouble_array(rep->ratio_wall, n));
  jput(j, "ratio_cold_over_warm_cluster", jnum(rc));
  jput(j, "ratio_cold_over_warm_cluster_per_repeat", jdouble_array(rep->ratio_cluster, n));
  json_object *jt = json_object_new_object();
  jput(jt, "speedup_wall", jtarget("min", TARGET_SPEEDUP, rw, rw >= TARGET_SPEEDUP));
  jput(jt, "stability_warm", jtarget("min", TARGET_STABILITY, stab, stab >= TARGET_STABILITY));
  jput(j, "targets", jt);
  jput(j, "daemon_exit", json_object_new_string(ex.desc));
  jput(j, "ok", json_object_new_boolean(ok));

  if (!cfg->keep)
    rm_rf(data_dir);
  free(rep);
  free(dir), free(data_dir), free(dlog);
  *ret_ok = ok;
  return j;
}
