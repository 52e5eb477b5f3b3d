/*
 * graphd-bench cluster: a clustering job through graphd against igraph's
 * Leiden alone on the same graph, and StreamAssignments against a bare
 * LMDB read of the same snapshot (the targets: job <= 1.3x Leiden alone,
 * worker peak RSS <= 1.5x python-igraph's, StreamAssignments >= 5M assignments/s).
 *
 * main (bench.c) generates the data (sellergen, or --links) and ingests
 * it once through graphd's Ingest rpc (bench_ingest, one repeat, data dir
 * kept). bench_cluster then:
 *
 * 1. Starts a daemon on that data dir (graphd --data DIR --listen
 *    127.0.0.1:0 [--graphd-arg ...]) and opens the same LMDB environment
 *    in this process next to it (gd_store_open: the store has no read-only
 *    mode; it opens the tables in a write transaction that changes
 *    nothing, as the clustering worker does, and this process then only
 *    reads). In one read transaction it exports the graph
 *    (gd_store_export_graph, open window) and builds the evidence
 *    projection exactly as the worker's project stage does
 *    (graphd/worker/run.c do_project): gd_projection_build on the export,
 *    with the evidence parameters and min_tie_weight of the default job
 *    spec, which it gets from the worker's own parser
 *    (gd_worker_spec_parse of an empty spec). The ties go to a file for
 *    the reference (format in leiden_ref.py: columnar int32 u, int32 v,
 *    float64 w, each edge once with u < v in the order the worker hands
 *    them to igraph). Each job's manifest must then report the same ties
 *    and the same input checksum as this export (else an anomaly).
 *
 * 2. Per repeat, in alternating order (reference first in repeats 1, 3, ...,
 *    graphd first in 2, 4, ...):
 *    (a) GRAPHD: StartClustering with the default spec (only name
 *        "bench-R" set, and warm_start OFF: every run starts from
 *        singletons, as the reference does; Leiden CPM at the evidence
 *        rule's resolution, beta 0.01, until stable, seed 1, default
 *        evidence rule, weights and hub caps), then
 *        WatchJob until the stream ends; the last Job must be SUCCEEDED.
 *        Timed from the StartClustering call to the last WatchJob
 *        message. GetSnapshot then gives the manifest: per-stage seconds
 *        (open, read, project, cluster, match, summarize; total = the
 *        worker until the write stage, so wall - total is the write stage,
 *        worker start-up and the daemon's notice), the worker's peak RSS,
 *        sellers, ties, clusters, objective (igraph's CPM quality) and
 *        modularity. The daemon's VmHWM is read from /proc after each job.
 *        The job keeps the daemon's default "previous snapshot = latest",
 *        so from repeat 2 on the job also reads the previous assignments
 *        and matches cluster ids against them (stages read and match);
 *        repeat 1 has no previous snapshot.
 *    (b) REFERENCE: /usr/bin/python3 -s leiden_ref.py on the ties file
 *        (Debian's python3-igraph 0.10.2, whose extension carries its own
 *        static copy of the igraph 0.10.2 C core; the worker links
 *        Debian's libigraph3 0.10.2); only the community_leiden calls are
 *        timed, not reading the file or building the igraph.Graph (the
 *        worker's cluster stage does build its igraph graph from the CSR,
 *        and computes the modularity). Same objective, resolution, beta,
 *        no node weights, and "until stable" done the worker's way (one igraph
 *        iteration per call until the partition stops changing, at most
 *        100; see leiden_ref.py for why igraph's own n_iterations=-1 is
 *        not used: in igraph 0.10.2 it stops after the first iteration
 *        that changes anything, i.e. after one iteration). Differences
 *        that remain: the RNG (python-igraph draws from Python's `random`,
 *        seeded with the spec's seed, through a callback per number; the
 *        worker seeds igraph's C PCG32), so the partitions, and the number
 *        of iterations until stable, differ a little. The iteration count
 *        moves the ratio most: on one 200k-seller graph the worker took 3
 *        to 5 iterations for seeds 1..6, the reference 3 or 4 (each
 *        iteration costs about the same on both sides), so the report
 *        also gives the seconds per iteration of both. The Python RNG's
 *        callbacks cost little: igraph's C generator (leiden_ref.py
 *        --rng c) changed the reference's time by ~5% at 200k sellers.
 *        python-igraph converts the weights and the start membership to
 *        igraph vectors on every call (inside its timing). Its peak RSS is
 *        the whole Python process (getrusage), graph and file included.
 *    (c) StreamAssignments of the repeat's snapshot through gRPC (one
 *        client, its own connection; every AssignmentBatch unpacked and
 *        counted), timed from opening the call to its OK end, against
 *        the bare read of the same snapshot in this process
 *        (gd_store_assignments_visit in one read transaction of the
 *        store opened in 1.). Both must see manifest.sellers assignments in
 *        ascending seller order with the same content (an order-
 *        independent digest of the pairs).
 *    Ratios are per repeat (graphd job wall / Leiden alone, stream rate /
 *    bare rate), reported as the median of the per-repeat ratios.
 *
 * 3. The daemon gets SIGTERM and must exit 0. Targets are marked met or
 *    missed in the text and the JSON; they are not checks (a missed target
 *    does not fail the run). Anomalies: the job not SUCCEEDED, ties or the
 *    input checksum differing from the export, assignment counts or
 *    digests differing, the reference failing, the daemon dying or not
 *    exiting 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"
#include "projection.h"
#include "store/snapshot.h"
#include "store/store.h"
#include "worker/worker.h"

/* The targets (docs/ARCHITECTURE.md, "Targets"). */
#define TARGET_JOB_RATIO 1.3     /* graphd job wall / Leiden alone, at most */
#define TARGET_RSS_RATIO 1.5     /* worker peak RSS / python-igraph's, at most */
#define TARGET_STREAM_RATE 5e6   /* assignments per second, at least */

#define TIES_MAGIC "GDTIES01"
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ties_write writes host-order integers; the file format is little-endian"
#endif

/* ---- the projection, in-process --------------------------------------- */

typedef struct proj_info {
  bool ok;
  int64_t sellers, entities, links, ties;
  gd_projection_stats ps;
  char checksum[65];
  double export_s, project_s, write_s;
  uint64_t file_bytes;
} proj_info;

static void put_or_die(FILE *f, const void *p, size_t size, const char *path) {
  if (size && fwrite(p, 1, size, f) != size)
    die("writing %s: %s", path, strerror(errno));
}

/*
 * Writes g's edges (each once, u < v, CSR row order: gd_ig_graph_new's
 * order) as the columnar file leiden_ref.py reads: magic, int64 n, int64 m,
 * then all u (int32), all v (int32), all w (float64), little-endian.
 */
static void ties_write(const gd_csr *g, const char *path, uint64_t *ret_bytes) {
  if (g->n > INT32_MAX)
    die("%" PRId64 " sellers do not fit the ties file's int32 vertex ids", g->n);
  FILE *f = fopen(path, "wb");
  if (!f)
    die("cannot create %s: %s", path, strerror(errno));
  int64_t hdr[2] = {g->n, g->m}; /* x86-64 / aarch64: little-endian */
  put_or_die(f, TIES_MAGIC, 8, path);
  put_or_die(f, hdr, sizeof hdr, path);
  enum { CHUNK = 65536 };
  int32_t *ib = xmalloc(CHUNK * sizeof *ib);
  double *db = xmalloc(CHUNK * sizeof *db);
  for (int col = 0; col < 3; col++) {
    size_t k = 0;
    int64_t e = 0;
    for (int64_t u = 0; u < g->n; u++) {
      for (int64_t p = g->off[u]; p < g->off[u + 1]; p++) {
        if (g->nbr[p] <= u)
          continue;
        if (col == 2)
          db[k++] = g->w[p];
        else
          ib[k++] = (int32_t)(col == 0 ? u : g->nbr[p]);
        e++;
        if (k == CHUNK) {
          put_or_die(f, col == 2 ? (void *)db : (void *)ib, k * (col == 2 ? 8 : 4), path);
          k = 0;
        }
      }
    }
    put_or_die(f, col == 2 ? (void *)db : (void *)ib, k * (col == 2 ? 8 : 4), path);
    if (e != g->m)
      die("projection CSR: %" PRId64 " upper half-edges, m = %" PRId64, e, g->m);
  }
  free(ib);
  free(db);
  if (fflush(f) != 0 || ferror(f))
    die("writing %s: %s", path, strerror(errno));
  fclose(f);
  *ret_bytes = 24 + (uint64_t)g->m * 16;
}

/* Export + projection with the default spec's parameters; writes the ties. */
static void project(gd_store *store, const gd_worker_spec *spec, const char *ties_path,
                    proj_info *ret) {
  memset(ret, 0, sizeof *ret);
  gd_rtxn *r = NULL;
  gd_err err = {0};
  gd_graph_export x;
  memset(&x, 0, sizeof x);
  int64_t t0 = now_ns();
  int rc = gd_store_read_begin(store, &r, &err);
  if (!rc)
    rc = gd_store_export_graph(r, spec->since, spec->until, &x, &err);
  gd_store_read_end(r);
  if (rc) {
    anomaly("cluster: in-process graph export failed: %s", err.msg);
    return;
  }
  int64_t t1 = now_ns();
  ret->export_s = (double)(t1 - t0) / 1e9;
  ret->sellers = x.n_sellers;
  ret->entities = x.n_entities;
  ret->links = x.n_links;
  memcpy(ret->checksum, x.checksum, sizeof ret->checksum);

  /* As graphd/worker/run.c do_project. */
  gd_projection_input in = {
      .n_sellers = x.n_sellers,
      .n_entities = x.n_entities,
      .ent_type = x.ent_type,
      .ent_off = x.ent_off,
      .ent_sellers = x.ent_sellers,
      .ent_n = x.ent_n,
      .n_links = x.n_links,
      .link_a = x.link_a,
      .link_b = x.link_b,
  };
  gd_csr g;
  memset(&g, 0, sizeof g);
  gd_alg_error ae = {0};
  gd_alg_status st = gd_projection_build(&in, &spec->ev, spec->min_tie_weight, &g, &ret->ps, &ae);
  gd_graph_export_free(&x);
  if (st != GD_ALG_OK) {
    anomaly("cluster: in-process projection failed: %s", ae.msg);
    return;
  }
  int64_t t2 = now_ns();
  ret->project_s = (double)(t2 - t1) / 1e9;
  ret->ties = g.m;
  ties_write(&g, ties_path, &ret->file_bytes);
  ret->write_s = (double)(now_ns() - t2) / 1e9;
  gd_csr_free(&g);
  ret->ok = true;
}

/* ---- (a) the graphd job ------------------------------------------------- */

typedef struct job_result {
  bool ok;            /* SUCCEEDED and the manifest read */
  double wall_s;      /* StartClustering call to the last WatchJob message */
  double start_rpc_s; /* StartClustering round trip */
  uint64_t job_id, snapshot_id;
  bench_manifest m;   /* GetSnapshot's */
  double daemon_hwm;  /* VmHWM after the job */
  double daemon_cpu_s;
  double iterations, warnings; /* Leiden iterations, igraph warnings: stored manifest */
} job_result;

/* result.iterations and result.igraph_warnings of the stored manifest
 * (the rpc's SnapshotManifest does not carry them), read in-process. */
static void manifest_extras(gd_store *store, uint64_t snap, const char *label, job_result *ret) {
  json_object *m = bench_stored_manifest(store, snap, label);
  bench_json_number(m, "result", "iterations", &ret->iterations);
  bench_json_number(m, "result", "igraph_warnings", &ret->warnings);
  json_object_put(m);
}

static void run_job(const bench_cfg *cfg, gc_client *c, gd_store *store, daemon_proc *dp, int r,
                    const proj_info *pi, job_result *ret) {
  memset(ret, 0, sizeof *ret);
  bench_manifest_clear(&ret->m);
  ret->wall_s = ret->daemon_hwm = ret->daemon_cpu_s = NAN;
  ret->iterations = ret->warnings = NAN;

  char name[32], label[32];
  snprintf(name, sizeof name, "bench-%d", r + 1);
  snprintf(label, sizeof label, "cluster %d", r + 1);
  /* Cold, as the reference: under the default (AUTO) every repeat after
   * the first would start from the previous repeat's snapshot. */
  bench_job job;
  double cpu0 = proc_cpu_s(dp->pid);
  bench_job_run(cfg, c, dp, label, name, GRAPHD__V1__WARM_START__WARM_START_OFF, &job);
  if (isnan(job.start_rpc_s)) /* StartClustering failed */
    return;
  ret->daemon_cpu_s = proc_cpu_s(dp->pid) - cpu0;
  ret->start_rpc_s = job.start_rpc_s;
  ret->job_id = job.job_id;
  ret->wall_s = job.wall_s;
  ret->snapshot_id = job.snapshot_id;
  if (dp->pid && daemon_alive(dp, "after the clustering job"))
    ret->daemon_hwm = (double)proc_status_kb(dp->pid, "VmHWM");
  if (!ret->snapshot_id)
    return;

  /* The manifest, outside the timing. */
  const bench_manifest *m = &ret->m;
  if (!bench_snapshot_read(cfg, c, ret->snapshot_id, label, &ret->m))
    return;
  manifest_extras(store, ret->snapshot_id, label, ret);
  ret->ok = true;

  if (pi->ok) {
    if ((int64_t)m->ties != pi->ties) {
      anomaly("cluster %d: the job's manifest has %" PRIu64 " ties, the in-process projection "
              "%" PRId64, r + 1, m->ties, pi->ties);
      ret->ok = false;
    }
    if ((int64_t)m->sellers != pi->sellers) {
      anomaly("cluster %d: the job's manifest has %" PRIu64 " sellers, the export %" PRId64,
              r + 1, m->sellers, pi->sellers);
      ret->ok = false;
    }
    if (strcmp(m->checksum, pi->checksum) != 0) {
      anomaly("cluster %d: the job's input checksum %s differs from the export's %s", r + 1,
              m->checksum, pi->checksum);
      ret->ok = false;
    }
  }
}

/* ---- (b) the reference ------------------------------------------------- */

typedef struct py_result {
  bool ok;
  double leiden_s, leiden_wall_s, load_s, process_s;
  double clusters, iterations, quality, modularity, rss;
  int64_t n, m;
  char igraph_version[32];
  char rng[16];
} py_result;

static double jget_d(json_object *o, const char *k) {
  json_object *v;
  if (!json_object_object_get_ex(o, k, &v) || !v)
    return NAN;
  return json_object_get_double(v);
}

static void run_python(const bench_cfg *cfg, const gd_worker_spec *spec, const char *ties,
                       const char *log_path, int r, py_result *ret) {
  memset(ret, 0, sizeof *ret);
  ret->leiden_s = ret->leiden_wall_s = ret->load_s = ret->process_s = NAN;
  ret->clusters = ret->iterations = ret->quality = ret->modularity = ret->rss = NAN;
  char res[32], beta[32], iters[32], maxit[32], seed[32];
  snprintf(res, sizeof res, "%.17g", spec->comm.resolution);
  snprintf(beta, sizeof beta, "%.17g", spec->comm.beta);
  snprintf(iters, sizeof iters, "%" PRId64, spec->comm.iterations < 0 ? (int64_t)-1
                                                                      : spec->comm.iterations);
  snprintf(maxit, sizeof maxit, "%d", GD_COMM_MAX_ITERATIONS);
  snprintf(seed, sizeof seed, "%" PRIu64, spec->seed);
  const char *argv[] = {cfg->python, "-s", cfg->leiden_ref, ties, "--resolution", res,
                        "--beta", beta, "--iterations", iters, "--max-iterations", maxit,
                        "--seed", seed, NULL};

  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0)
    die("pipe: %s", strerror(errno));
  int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0)
    die("cannot create %s: %s", log_path, strerror(errno));
  fflush(NULL);
  int64_t t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(logfd, 2);
    signal(SIGPIPE, SIG_DFL);
    execv(cfg->python, (char *const *)argv);
    fprintf(stderr, "graphd-bench: cannot run %s: %s\n", cfg->python, strerror(errno));
    _exit(127);
  }
  children_add(pid);
  close(pfd[1]);
  close(logfd);

  size_t cap = 4096, got = 0;
  char *out = xmalloc(cap);
  int64_t deadline = t0 + (int64_t)cfg->job_timeout_ms * 1000000;
  bool timed_out = false;
  for (;;) {
    int64_t left = (deadline - now_ns()) / 1000000;
    if (left <= 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    struct pollfd p = {pfd[0], POLLIN, 0};
    int rc = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc == 0)
      continue;
    if (got + 1024 > cap)
      out = xrealloc(out, cap *= 2);
    ssize_t n = read(pfd[0], out + got, cap - got - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  out[got] = '\0';
  close(pfd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  children_remove(pid);
  ret->process_s = (double)(now_ns() - t0) / 1e9;
  char desc[128];
  describe_status(status, desc, sizeof desc);
  if (timed_out) {
    anomaly("cluster %d: the reference did not finish within %d ms: killed; see %s", r + 1,
            cfg->job_timeout_ms, log_path);
    free(out);
    return;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    anomaly("cluster %d: the reference (%s %s) ended with %s; see %s", r + 1, cfg->python,
            cfg->leiden_ref, desc, log_path);
    print_log_tail(log_path);
    free(out);
    return;
  }
  /* The last non-empty line is the JSON. */
  while (got && (out[got - 1] == '\n' || out[got - 1] == '\r'))
    out[--got] = '\0';
  char *line = strrchr(out, '\n');
  line = line ? line + 1 : out;
  json_object *j = json_tokener_parse(line);
  if (!j || !json_object_is_type(j, json_type_object)) {
    anomaly("cluster %d: the reference printed no JSON object: '%.200s'", r + 1, line);
    json_object_put(j);
    free(out);
    return;
  }
  ret->leiden_s = jget_d(j, "leiden_seconds");
  ret->leiden_wall_s = jget_d(j, "leiden_wall_seconds");
  ret->load_s = jget_d(j, "load_seconds");
  ret->clusters = jget_d(j, "clusters");
  ret->iterations = jget_d(j, "iterations");
  ret->quality = jget_d(j, "quality");
  ret->modularity = jget_d(j, "modularity");
  ret->rss = jget_d(j, "peak_rss_bytes");
  ret->n = (int64_t)jget_d(j, "n");
  ret->m = (int64_t)jget_d(j, "m");
  json_object *v;
  if (json_object_object_get_ex(j, "igraph_version", &v) && v)
    snprintf(ret->igraph_version, sizeof ret->igraph_version, "%s", json_object_get_string(v));
  if (json_object_object_get_ex(j, "rng", &v) && v)
    snprintf(ret->rng, sizeof ret->rng, "%s", json_object_get_string(v));
  json_object_put(j);
  free(out);
  ret->ok = isfinite(ret->leiden_s);
  if (!ret->ok)
    anomaly("cluster %d: the reference's JSON has no leiden_seconds", r + 1);
}

/* ---- (c) assignments: StreamAssignments and the bare read --------------- */

typedef struct assign_result {
  bool ok;
  double seconds, rate;
  uint64_t n, messages, bytes;
  uint64_t digest;
  bool ordered;
} assign_result;

typedef struct assign_acc {
  uint64_t n, digest, last;
  bool ordered;
} assign_acc;

static void acc_add(assign_acc *a, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (a->n + i > 0 && sellers[i] <= a->last)
      a->ordered = false;
    a->last = sellers[i];
    a->digest += mix64(sellers[i] ^ mix64(clusters[i]));
  }
  a->n += n;
}

/* StreamAssignments(snap) on c into a; *ret_s the time from the open to
 * the OK end. Returns 0, 1 when a batch was uneven, -1 when the call
 * failed; anomalies are prefixed "LABEL: ". */
static int stream_into(const bench_cfg *cfg, gc_client *c, uint64_t snap, const char *label,
                        assign_acc *a, uint64_t *ret_msgs, uint64_t *ret_bytes, double *ret_s) {
  Graphd__V1__StreamAssignmentsRequest req = GRAPHD__V1__STREAM_ASSIGNMENTS_REQUEST__INIT;
  req.snapshot_id = snap;
  gc_status st;
  gc_sstream *s = NULL;
  bool uneven = false;
  int64_t t0 = now_ns();
  int code = gc_sstream_open(c, SVC "StreamAssignments", &req.base, cfg->job_timeout_ms, &s, &st);
  while (code == GRPC_STATUS_OK) {
    ProtobufCMessage *m = NULL;
    code = gc_sstream_next(s, &graphd__v1__assignment_batch__descriptor, &m, &st);
    if (code != GRPC_STATUS_OK || !m)
      break;
    const Graphd__V1__AssignmentBatch *b = (const Graphd__V1__AssignmentBatch *)m;
    uneven |= b->n_seller_ids != b->n_cluster_ids;
    acc_add(a, b->seller_ids, b->cluster_ids,
            b->n_seller_ids < b->n_cluster_ids ? b->n_seller_ids : b->n_cluster_ids);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  int64_t t1 = now_ns();
  *ret_msgs = s ? gc_sstream_messages(s) : 0;
  *ret_bytes = s ? gc_sstream_bytes(s) : 0;
  gc_sstream_free(s);
  *ret_s = (double)(t1 - t0) / 1e9;
  if (code != GRPC_STATUS_OK) {
    anomaly("%s: StreamAssignments(%" PRIu64 ") failed: %s: %s", label, snap,
            gc_status_code_name(code), st.message);
    return -1;
  }
  if (uneven)
    anomaly("%s: StreamAssignments sent a batch with seller_ids and cluster_ids of "
            "different lengths", label);
  return uneven ? 1 : 0;
}

bool bench_stream_assignments(const bench_cfg *cfg, gc_client *c, uint64_t snap,
                              const char *label, uint64_t *ret_n, double *ret_s) {
  assign_acc a = {.ordered = true};
  uint64_t msgs, bytes;
  int rc = stream_into(cfg, c, snap, label, &a, &msgs, &bytes, ret_s);
  *ret_n = a.n;
  return rc == 0;
}

static void run_stream(const bench_cfg *cfg, gc_client *c, uint64_t snap, int r,
                       assign_result *ret) {
  memset(ret, 0, sizeof *ret);
  ret->seconds = ret->rate = NAN;
  assign_acc a = {.ordered = true};
  char label[32];
  snprintf(label, sizeof label, "cluster %d", r + 1);
  double secs;
  int rc = stream_into(cfg, c, snap, label, &a, &ret->messages, &ret->bytes, &secs);
  if (rc < 0)
    return;
  ret->n = a.n;
  ret->digest = a.digest;
  ret->ordered = a.ordered;
  ret->seconds = secs;
  ret->rate = (double)a.n / secs;
  ret->ok = rc == 0;
}

static int bare_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  acc_add(ctx, sellers, clusters, n);
  return 0;
}

static void run_bare(gd_store *store, uint64_t snap, int r, assign_result *ret) {
  memset(ret, 0, sizeof *ret);
  ret->seconds = ret->rate = NAN;
  assign_acc a = {.ordered = true};
  gd_rtxn *rt = NULL;
  gd_err err = {0};
  int64_t t0 = now_ns();
  int rc = gd_store_read_begin(store, &rt, &err);
  if (!rc)
    rc = gd_store_assignments_visit(rt, snap, 0, bare_visit, &a, NULL, &err);
  gd_store_read_end(rt);
  int64_t t1 = now_ns();
  if (rc) {
    anomaly("cluster %d: bare read of snapshot %" PRIu64 " failed: %s", r + 1, snap, err.msg);
    return;
  }
  ret->n = a.n;
  ret->digest = a.digest;
  ret->ordered = a.ordered;
  ret->seconds = (double)(t1 - t0) / 1e9;
  ret->rate = (double)a.n / ret->seconds;
  ret->ok = true;
}

/* ---- the report --------------------------------------------------------- */

typedef struct cluster_report {
  int n;
  job_result job[MAX_REPEAT];
  py_result py[MAX_REPEAT];
  assign_result stream[MAX_REPEAT], bare[MAX_REPEAT];
  double ratio[MAX_REPEAT], sratio[MAX_REPEAT];
} cluster_report;

typedef double (*field_fn)(const cluster_report *rep, int r);

static void collect(const cluster_report *rep, field_fn f, double *out) {
  for (int r = 0; r < rep->n; r++)
    out[r] = f(rep, r);
}

#define FIELD(name, expr)                                                                    \
  static double name(const cluster_report *rep, int r) { return (expr); }
FIELD(f_wall, rep->job[r].wall_s)
FIELD(f_start_rpc, rep->job[r].ok ? rep->job[r].start_rpc_s : NAN)
FIELD(f_worker_rss, rep->job[r].m.worker_rss)
FIELD(f_hwm, rep->job[r].daemon_hwm)
FIELD(f_dcpu, rep->job[r].daemon_cpu_s)
FIELD(f_gclusters, rep->job[r].ok ? (double)rep->job[r].m.clusters : NAN)
FIELD(f_gobj, rep->job[r].m.objective)
FIELD(f_gmod, rep->job[r].m.modularity)
FIELD(f_giter, rep->job[r].iterations)
FIELD(f_gper, rep->job[r].m.stage_s[S_CLUSTER] / rep->job[r].iterations)
FIELD(f_pper, rep->py[r].leiden_s / rep->py[r].iterations)
FIELD(f_other, rep->job[r].wall_s - rep->job[r].m.stage_s[S_TOTAL])
FIELD(f_pleiden, rep->py[r].leiden_s)
FIELD(f_pwall, rep->py[r].leiden_wall_s)
FIELD(f_pload, rep->py[r].load_s)
FIELD(f_pproc, rep->py[r].process_s)
FIELD(f_prss, rep->py[r].rss)
FIELD(f_pclusters, rep->py[r].clusters)
FIELD(f_piter, rep->py[r].iterations)
FIELD(f_pq, rep->py[r].quality)
FIELD(f_pmod, rep->py[r].modularity)
FIELD(f_ratio, rep->ratio[r])
FIELD(f_srate, rep->stream[r].rate)
FIELD(f_ss, rep->stream[r].seconds)
FIELD(f_brate, rep->bare[r].rate)
FIELD(f_bs, rep->bare[r].seconds)
FIELD(f_sratio, rep->sratio[r])
#undef FIELD

static double med(const cluster_report *rep, field_fn f) {
  double v[MAX_REPEAT];
  collect(rep, f, v);
  return median(v, rep->n);
}

static json_object *jarr(const cluster_report *rep, field_fn f) {
  double v[MAX_REPEAT];
  collect(rep, f, v);
  json_object *a = json_object_new_array();
  for (int r = 0; r < rep->n; r++)
    json_object_array_add(a, jnum(v[r]));
  return a;
}

/* "1.234 1.456 1.789" */
static void per_repeat(const cluster_report *rep, field_fn f, int prec, char *buf, size_t size) {
  double v[MAX_REPEAT];
  collect(rep, f, v);
  size_t o = 0;
  buf[0] = '\0';
  for (int r = 0; r < rep->n && o + 1 < size; r++) {
    int k = isfinite(v[r]) ? snprintf(buf + o, size - o, "%s%.*f", r ? " " : "", prec, v[r])
                           : snprintf(buf + o, size - o, "%s-", r ? " " : "");
    if (k < 0)
      break;
    o += (size_t)k;
  }
}

static void print_report(const bench_cfg *cfg, const gd_worker_spec *spec, const proj_info *pi,
                         const cluster_report *rep, bool checks_ok) {
  int n = rep->n;
  const job_result *last = NULL;
  for (int r = n - 1; r >= 0 && !last; r--)
    if (rep->job[r].ok)
      last = &rep->job[r];
  char b1[64], b2[64], b3[64], pr[512];
  printf("\nCLUSTER  %s sellers, %s ties (%" PRId64 " hub entities skipped); %s resolution %g "
         "beta %g %s seed %" PRIu64 "; median of %d interleaved repeat(s)\n",
         fmt_count(b1, sizeof b1, (double)pi->sellers), fmt_count(b2, sizeof b2, (double)pi->ties),
         pi->ps.hubs_skipped, gd_worker_algo_name(spec->comm.algo), spec->comm.resolution,
         spec->comm.beta, spec->comm.iterations < 0 ? "until stable" : "fixed iterations",
         spec->seed, n);
  printf("  projection in-process (the reference's input): export %.2f s, project %.2f s, ties "
         "file %s in %.2f s; %s\n",
         pi->export_s, pi->project_s, fmt_bytes(b1, sizeof b1, (double)pi->file_bytes),
         pi->write_s,
         checks_ok ? "ties and input checksum equal the jobs' manifests"
                   : "CHECKS FAILED (see anomalies)");
  printf("  %-38s %10s   %s\n", "", "median", "per repeat");
  per_repeat(rep, f_wall, 3, pr, sizeof pr);
  printf("  %-38s %10.3f s %s\n", "graphd job wall (Start..last WatchJob)", med(rep, f_wall), pr);
  printf("    worker stages (manifest, median s):");
  for (int k = 0; k < S__COUNT; k++) {
    double v[MAX_REPEAT];
    for (int r = 0; r < n; r++)
      v[r] = rep->job[r].m.stage_s[k];
    printf(" %s %.3f%s", stage_names[k], median(v, n), k == S_SUMMARIZE ? ";" : "");
  }
  per_repeat(rep, f_giter, 0, pr, sizeof pr);
  printf("\n    wall - total (write stage, worker start-up, notice) %.3f s; StartClustering rpc "
         "%.4f s; daemon CPU %.2f s; Leiden iterations %s\n",
         med(rep, f_other), med(rep, f_start_rpc), med(rep, f_dcpu), pr);
  per_repeat(rep, f_pleiden, 3, pr, sizeof pr);
  printf("  %-38s %10.3f s %s\n", "python-igraph Leiden alone", med(rep, f_pleiden), pr);
  per_repeat(rep, f_piter, 0, pr, sizeof pr);
  printf("    load %.2f s, iterations %s, loop with untimed comparisons %.3f s, process %.2f s\n",
         med(rep, f_pload), pr, med(rep, f_pwall), med(rep, f_pproc));
  double mr = med(rep, f_ratio);
  per_repeat(rep, f_ratio, 3, pr, sizeof pr);
  printf("  %-38s %10.3f   %s   target <= %.1f: %s\n", "ratio graphd job / Leiden alone", mr, pr,
         TARGET_JOB_RATIO, met(mr <= TARGET_JOB_RATIO, mr));
  printf("    (median of per-repeat ratios; ratio of medians %.3f)\n",
         med(rep, f_wall) / med(rep, f_pleiden));
  printf("    per Leiden iteration: graphd cluster stage %.3f s (with its igraph graph build and "
         "modularity), python %.3f s;\n    iterations until stable depend on the RNG stream "
         "(different on the two sides), so the ratio does too\n",
         med(rep, f_gper), med(rep, f_pper));
  double wrss = med(rep, f_worker_rss), rr = wrss / med(rep, f_prss);
  printf("  peak RSS: worker %s = %.3f GB, python %s: ratio %.3f (target <= %.1f: %s); "
         "daemon VmHWM %s\n",
         fmt_bytes(b1, sizeof b1, wrss), wrss / 1e9, fmt_bytes(b2, sizeof b2, med(rep, f_prss)),
         rr, TARGET_RSS_RATIO, met(rr <= TARGET_RSS_RATIO, rr),
         fmt_bytes(b3, sizeof b3, med(rep, f_hwm)));
  double srate = med(rep, f_srate);
  per_repeat(rep, f_srate, 0, pr, sizeof pr);
  printf("  StreamAssignments %14s assignments/s (%.4f s; per repeat %s)   target >= 5M/s: %s\n",
         fmt_count(b1, sizeof b1, srate), med(rep, f_ss), pr,
         met(srate >= TARGET_STREAM_RATE, srate));
  per_repeat(rep, f_brate, 0, pr, sizeof pr);
  printf("  bare LMDB read    %14s assignments/s (%.4f s; per repeat %s)\n",
         fmt_count(b1, sizeof b1, med(rep, f_brate)), med(rep, f_bs), pr);
  printf("  ratio stream / bare read %.3f (median of per-repeat ratios)\n", med(rep, f_sratio));
  if (last) {
    printf("  graphd (last repeat): %s sellers, %s ties, %s clusters, objective (CPM quality) "
           "%.6f, modularity %.6f\n",
           fmt_count(b1, sizeof b1, (double)last->m.sellers),
           fmt_count(b2, sizeof b2, (double)last->m.ties),
           fmt_count(b3, sizeof b3, (double)last->m.clusters), last->m.objective,
           last->m.modularity);
  }
  double pq = med(rep, f_pq), gq = med(rep, f_gobj);
  printf("  clusters median: graphd %s, python %s; CPM quality median: graphd %.6f, python %.6f "
         "(python - graphd: %+.3f%%)\n",
         fmt_count(b1, sizeof b1, med(rep, f_gclusters)),
         fmt_count(b2, sizeof b2, med(rep, f_pclusters)), gq, pq,
         gq != 0 ? 100.0 * (pq - gq) / fabs(gq) : NAN);
  if (cfg->quick || pi->sellers < 1000000)
    printf("  (the targets are for 1M sellers / ~10M ties; at this size they are indicative "
           "only)\n");
}

/* ---- the mode ----------------------------------------------------------- */

json_object *bench_cluster(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           bool *ret_ok) {
  json_object *j = json_object_new_object();
  *ret_ok = false;
  char *dir = xasprintf("%s/cluster", workroot);
  if (mkdir(dir, 0755) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  char *ties = xasprintf("%s/ties.bin", dir);
  char *pylog = xasprintf("%s/leiden_ref.log", dir);
  char *dlog = xasprintf("%s/graphd-cluster.log", dir);

  /* The default job spec, from the worker's own parser. */
  gd_worker_spec spec;
  gd_err err = {0};
  if (gd_worker_spec_parse("", 0, &spec, &err))
    die("default spec: %s", err.msg);

  daemon_proc dp;
  if (!daemon_start(cfg, data_dir, dlog, &dp)) {
    daemon_free(&dp);
    jput(j, "ok", json_object_new_boolean(false));
    gd_worker_spec_free(&spec);
    free(dir), free(ties), free(pylog), free(dlog);
    return j;
  }
  fprintf(stderr, "graphd-bench: graphd (pid %d) serving %s on %s\n", (int)dp.pid, data_dir,
          dp.addr);
  bool ok = true;

  gd_store *store = NULL;
  gd_store_opts so = {.path = data_dir};
  if (gd_store_open(&so, &store, &err))
    die("cannot open the store in %s next to the daemon: %s", data_dir, err.msg);

  fprintf(stderr, "graphd-bench: cluster: exporting and projecting in-process...\n");
  proj_info pi;
  project(store, &spec, ties, &pi);
  ok &= pi.ok;
  fprintf(stderr,
          "graphd-bench:   %" PRId64 " sellers, %" PRId64 " ties (export %.2f s, project %.2f s)\n",
          pi.sellers, pi.ties, pi.export_s, pi.project_s);

  gc_client *c = NULL;
  gc_status st;
  gc_client_opts co = {.own_connection = true};
  if (gc_client_open(dp.addr, &co, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
    anomaly("cluster: cannot connect to %s: %s", dp.addr, st.message);
    ok = false;
  }

  cluster_report *rep = xcalloc(1, sizeof *rep); /* n: repeats run */
  for (int r = 0; r < cfg->repeat && c && pi.ok; r++) {
    rep->n = r + 1;
    bool ref_first = r % 2 == 0;
    job_result *g = &rep->job[r];
    py_result *p = &rep->py[r];
    assign_result *sg = &rep->stream[r], *sb = &rep->bare[r];
    for (int step = 0; step < 2; step++) {
      if ((step == 0) == ref_first) {
        fprintf(stderr, "graphd-bench: cluster %d/%d: reference (python-igraph Leiden)...\n",
                r + 1, cfg->repeat);
        run_python(cfg, &spec, ties, pylog, r, p);
        fprintf(stderr, "graphd-bench:   Leiden %.3f s (%.0f iterations, %.0f clusters)\n",
                p->leiden_s, p->iterations, p->clusters);
        if (p->ok && (p->n != pi.sellers || p->m != pi.ties)) {
          anomaly("cluster %d: the reference read n=%" PRId64 " m=%" PRId64 ", written %" PRId64
                  " and %" PRId64, r + 1, p->n, p->m, pi.sellers, pi.ties);
          p->ok = false;
        }
      } else {
        fprintf(stderr, "graphd-bench: cluster %d/%d: graphd job...\n", r + 1, cfg->repeat);
        run_job(cfg, c, store, &dp, r, &pi, g);
        fprintf(stderr, "graphd-bench:   job %.3f s (cluster stage %.3f s), snapshot %" PRIu64
                "%s\n", g->wall_s, g->m.stage_s[S_CLUSTER], g->snapshot_id,
                g->ok ? "" : " FAILED");
      }
    }
    ok &= g->ok && p->ok;
    rep->ratio[r] = g->ok && p->ok ? g->wall_s / p->leiden_s : NAN;
    rep->sratio[r] = NAN;
    if (!g->snapshot_id)
      continue;
    /* (c): the same alternation. */
    for (int step = 0; step < 2; step++) {
      if ((step == 0) == ref_first)
        run_bare(store, g->snapshot_id, r, sb);
      else
        run_stream(cfg, c, g->snapshot_id, r, sg);
    }
    fprintf(stderr, "graphd-bench:   StreamAssignments %.0f/s, bare read %.0f/s\n", sg->rate,
            sb->rate);
    bool aok = sg->ok && sb->ok;
    if (aok && (sg->n != g->m.sellers || sb->n != g->m.sellers)) {
      anomaly("cluster %d: snapshot %" PRIu64 " has %" PRIu64 " sellers; StreamAssignments "
              "sent %" PRIu64 ", the bare read found %" PRIu64, r + 1, g->snapshot_id,
              g->m.sellers, sg->n, sb->n);
      aok = false;
    }
    if (aok && sg->digest != sb->digest) {
      anomaly("cluster %d: StreamAssignments and the bare read differ in content (digest)",
              r + 1);
      aok = false;
    }
    if (aok && (!sg->ordered || !sb->ordered)) {
      anomaly("cluster %d: assignments not in strictly ascending seller order (stream %s, bare "
              "read %s)", r + 1, sg->ordered ? "ok" : "not", sb->ordered ? "ok" : "not");
      aok = false;
    }
    ok &= aok;
    if (aok)
      rep->sratio[r] = sg->rate / sb->rate;
  }
  gc_client_close(c);

  int64_t hwm = -1;
  if (dp.pid && daemon_alive(&dp, "during the cluster benchmark"))
    hwm = proc_status_kb(dp.pid, "VmHWM");
  daemon_exit ex;
  ok &= daemon_finish(cfg, &dp, "during the cluster benchmark", &ex);
  gd_store_close(store);
  if (!cfg->keep)
    unlink(ties);

  print_report(cfg, &spec, &pi, rep, ok);
  char b1[64];
  printf("  daemon: start %.3f s, SIGTERM->exit %.3f s, exit: %s, VmHWM at end %s\n", dp.start_s,
         ex.stop_s, ex.desc, fmt_bytes(b1, sizeof b1, (double)hwm));

  /* JSON */
  int n = rep->n;
  jput(j, "repeats", json_object_new_int(n));
  jput(j, "order", json_object_new_string("alternating: reference first on odd-numbered repeats"));
  jput(j, "data_dir", json_object_new_string(data_dir));
  json_object *js = json_object_new_object();
  jput(js, "algorithm", json_object_new_string(gd_worker_algo_name(spec.comm.algo)));
  jput(js, "resolution", jnum(spec.comm.resolution));
  jput(js, "beta", jnum(spec.comm.beta));
  jput(js, "iterations", json_object_new_int64(spec.comm.iterations));
  jput(js, "max_iterations", json_object_new_int(GD_COMM_MAX_ITERATIONS));
  jput(js, "seed", json_object_new_uint64(spec.seed));
  jput(js, "min_tie_weight", jnum(spec.min_tie_weight));
  jput(j, "spec", js);

  json_object *jp = json_object_new_object();
  jput(jp, "sellers", json_object_new_int64(pi.sellers));
  jput(jp, "entities", json_object_new_int64(pi.entities));
  jput(jp, "links", json_object_new_int64(pi.links));
  jput(jp, "ties", json_object_new_int64(pi.ties));
  jput(jp, "entities_used", json_object_new_int64(pi.ps.entities_used));
  jput(jp, "hubs_skipped", json_object_new_int64(pi.ps.hubs_skipped));
  jput(jp, "pair_visits", json_object_new_int64(pi.ps.pair_visits));
  jput(jp, "input_checksum", json_object_new_string(pi.checksum));
  jput(jp, "export_seconds", jnum(pi.export_s));
  jput(jp, "project_seconds", jnum(pi.project_s));
  jput(jp, "write_seconds", jnum(pi.write_s));
  jput(jp, "ties_file_bytes", json_object_new_uint64(pi.file_bytes));
  jput(jp, "ties_file_format", json_object_new_string(
      "little-endian: magic GDTIES01, int64 n, int64 m, int32 u[m], int32 v[m], float64 w[m]; "
      "u < v, CSR row order"));
  jput(j, "projection", jp);

  json_object *jg = json_object_new_object();
  jput(jg, "what", json_object_new_string(
      "StartClustering (default spec, name bench-R, warm_start OFF) + WatchJob to the end; "
      "StartClustering "
      "call to the last WatchJob message; stages from GetSnapshot's manifest"));
  jput(jg, "wall_s_median", jnum(med(rep, f_wall)));
  jput(jg, "wall_s", jarr(rep, f_wall));
  json_object *jst = json_object_new_object();
  for (int k = 0; k < S__COUNT; k++) {
    double v[MAX_REPEAT];
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    for (int r = 0; r < n; r++) {
      v[r] = rep->job[r].m.stage_s[k];
      json_object_array_add(a, jnum(v[r]));
    }
    jput(o, "median", jnum(median(v, n)));
    jput(o, "per_repeat", a);
    jput(jst, stage_names[k], o);
  }
  jput(jg, "stage_seconds", jst);
  jput(jg, "wall_minus_total_s", jarr(rep, f_other));
  jput(jg, "start_rpc_s", jarr(rep, f_start_rpc));
  jput(jg, "daemon_cpu_s", jarr(rep, f_dcpu));
  jput(jg, "worker_peak_rss_bytes_median", jnum(med(rep, f_worker_rss)));
  jput(jg, "worker_peak_rss_bytes", jarr(rep, f_worker_rss));
  jput(jg, "daemon_vmhwm_bytes_median", jnum(med(rep, f_hwm)));
  jput(jg, "daemon_vmhwm_bytes", jarr(rep, f_hwm));
  jput(jg, "clusters", jarr(rep, f_gclusters));
  jput(jg, "objective", jarr(rep, f_gobj));
  jput(jg, "modularity", jarr(rep, f_gmod));
  jput(jg, "iterations", jarr(rep, f_giter));
  json_object *jw = json_object_new_array();
  for (int r = 0; r < n; r++)
    json_object_array_add(jw, jnum(rep->job[r].warnings));
  jput(jg, "igraph_warnings", jw);
  json_object *ids = json_object_new_array(), *jobs = json_object_new_array();
  for (int r = 0; r < n; r++) {
    json_object_array_add(ids, json_object_new_uint64(rep->job[r].snapshot_id));
    json_object_array_add(jobs, json_object_new_uint64(rep->job[r].job_id));
  }
  jput(jg, "snapshot_ids", ids);
  jput(jg, "job_ids", jobs);
  for (int r = n - 1; r >= 0; r--)
    if (rep->job[r].ok) {
      jput(jg, "sellers", json_object_new_uint64(rep->job[r].m.sellers));
      jput(jg, "ties", json_object_new_uint64(rep->job[r].m.ties));
      jput(jg, "hubs_skipped", json_object_new_uint64(rep->job[r].m.hubs_skipped));
      break;
    }
  jput(jg, "daemon_start_s", jnum(dp.start_s));
  jput(jg, "daemon_stop_s", jnum(ex.stop_s));
  jput(jg, "daemon_exit", json_object_new_string(ex.desc));
  jput(jg, "daemon_vmhwm_end_bytes", json_object_new_int64(hwm));
  jput(j, "graphd", jg);

  json_object *jy = json_object_new_object();
  jput(jy, "what", json_object_new_string(
      "python3 -s leiden_ref.py: python-igraph community_leiden CPM on the exported ties, "
      "until stable as the worker (n_iterations=1 calls); only the calls timed"));
  jput(jy, "leiden_s_median", jnum(med(rep, f_pleiden)));
  jput(jy, "leiden_s", jarr(rep, f_pleiden));
  jput(jy, "leiden_loop_s", jarr(rep, f_pwall));
  jput(jy, "load_s", jarr(rep, f_pload));
  jput(jy, "process_s", jarr(rep, f_pproc));
  jput(jy, "iterations", jarr(rep, f_piter));
  jput(jy, "clusters", jarr(rep, f_pclusters));
  jput(jy, "quality", jarr(rep, f_pq));
  jput(jy, "modularity", jarr(rep, f_pmod));
  jput(jy, "peak_rss_bytes_median", jnum(med(rep, f_prss)));
  jput(jy, "peak_rss_bytes", jarr(rep, f_prss));
  jput(jy, "python", json_object_new_string(cfg->python));
  jput(jy, "script", json_object_new_string(cfg->leiden_ref));
  for (int r = 0; r < n; r++)
    if (rep->py[r].ok) {
      jput(jy, "igraph_version", json_object_new_string(rep->py[r].igraph_version));
      jput(jy, "rng", json_object_new_string(rep->py[r].rng));
      break;
    }
  jput(j, "python", jy);
  double mr = med(rep, f_ratio);
  jput(j, "ratio_job_over_leiden", jnum(mr));
  jput(j, "ratio_per_repeat", jarr(rep, f_ratio));
  jput(j, "ratio_of_medians", jnum(med(rep, f_wall) / med(rep, f_pleiden)));
  jput(j, "graphd_cluster_stage_s_per_iteration", jarr(rep, f_gper));
  jput(j, "python_leiden_s_per_iteration", jarr(rep, f_pper));

  json_object *ja = json_object_new_object();
  jput(ja, "stream_what", json_object_new_string(
      "StreamAssignments(snapshot) through gc_sstream, every batch unpacked and counted; open "
      "to OK end"));
  jput(ja, "bare_what", json_object_new_string(
      "gd_store_assignments_visit of the same snapshot in one read txn, in-process"));
  double srate = med(rep, f_srate);
  jput(ja, "stream_per_s_median", jnum(srate));
  jput(ja, "stream_per_s", jarr(rep, f_srate));
  jput(ja, "stream_s", jarr(rep, f_ss));
  jput(ja, "bare_per_s_median", jnum(med(rep, f_brate)));
  jput(ja, "bare_per_s", jarr(rep, f_brate));
  jput(ja, "bare_s", jarr(rep, f_bs));
  jput(ja, "ratio_stream_over_bare", jnum(med(rep, f_sratio)));
  jput(ja, "ratio_per_repeat", jarr(rep, f_sratio));
  for (int r = n - 1; r >= 0; r--)
    if (rep->stream[r].ok) {
      jput(ja, "assignments", json_object_new_uint64(rep->stream[r].n));
      jput(ja, "messages", json_object_new_uint64(rep->stream[r].messages));
      jput(ja, "bytes", json_object_new_uint64(rep->stream[r].bytes));
      break;
    }
  jput(j, "assignments", ja);

  double rr = med(rep, f_worker_rss) / med(rep, f_prss);
  json_object *jt = json_object_new_object();
  jput(jt, "job_over_leiden", jtarget("max", TARGET_JOB_RATIO, mr, mr <= TARGET_JOB_RATIO));
  jput(jt, "worker_rss_over_python", jtarget("max", TARGET_RSS_RATIO, rr, rr <= TARGET_RSS_RATIO));
  jput(jt, "stream_assignments",
       jtarget("min_per_s", TARGET_STREAM_RATE, srate, srate >= TARGET_STREAM_RATE));
  jput(j, "targets", jt);
  jput(j, "ok", json_object_new_boolean(ok));

  free(rep);
  gd_worker_spec_free(&spec);
  free(dir), free(ties), free(pylog), free(dlog);
  *ret_ok = ok;
  return j;
}
