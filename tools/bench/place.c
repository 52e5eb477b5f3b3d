/*
 * graphd-bench place: what fresh clusters cost and how fresh they are.
 * After each committed write the sellers whose ties changed are queued
 * (store/place.h, table `dirty`) and the placer thread (graphd/rpc/place.c)
 * places them provisionally against the latest snapshot and appends the
 * alerts WatchAlerts follows. Three figures, each against a reference
 * taken in the same run:
 *
 *   latency     how long after a write's reply its alert reaches a
 *               WatchAlerts client, against the write's own round trip;
 *   throughput  Ingest rate with placement on (the default queue) against
 *               the same load with --placement-queue 0 (target: on/off >=
 *               0.9, i.e. placement takes at most 10% of the write rate);
 *   agreement   how many of the sellers the load changed sit where the
 *               next full clustering run puts them, against the snapshot's
 *               own clusters as the guess (target: >= 95%).
 *
 * main (bench.c) generates the data (sellergen, or --links; rings.csv must
 * sit next to the links file) and loads it; bench_place then:
 *
 * 1. Holds back every link record of a seeded random sample of the
 *    sellers (dataset_hold_back_sellers), drawn until their records are 8%
 *    of all (at most 100000): the write load of part 3, new sellers tied
 *    to entities already loaded (shared devices, hubs, rings' mules ...),
 *    as real new sellers arrive.
 * 2. Prepares the base: a daemon with --placement-queue 0 on a fresh data
 *    dir ingests the rest (bench_ingest_range, one Ingest call), runs one
 *    clustering job (StartClustering with the default spec, WatchJob to
 *    SUCCEEDED: the snapshot placement works against), then lists the
 *    candidate devices of part 3a: for each ring of rings.csv and each of
 *    its devices under the hub cap (GetEntity), the device's sellers
 *    (Neighbors) and their clusters (GetEntity); a device is a candidate
 *    when at least 3 of its sellers sit in one cluster of the snapshot (at
 *    most 512 candidates). The Backup rpc then copies the environment to
 *    the base dir, and the daemon stops. Every later daemon runs on its
 *    own copy of the base (files copied and fsynced before it starts), so
 *    every run starts from identical data with the snapshot present and
 *    nothing queued.
 *    Shared sellers alone do not make an alert: the new seller's tie to
 *    the cluster (the device's evidence weight times the members on it)
 *    must pass min_tie_weight and beat resolution x the cluster's size
 *    (CPM). So a daemon on a scratch copy of the base gets one probe
 *    seller per candidate device (Upsert, as in 3a), the queue drains,
 *    and the devices whose probe was placed in a cluster (GetEntity's
 *    provisional placement) are kept, at most 256. (On sellergen's
 *    classic data a quarter to a third of the candidates placed their
 *    probe alone.)
 * 3. Per repeat (--repeat, default 5):
 *    (a) LATENCY: a daemon with the default placement queue and
 *        --metrics-listen 127.0.0.1:0. A WatchAlerts stream (from_now,
 *        min_risk 0) is read on a thread of its own, which stamps each
 *        event's arrival (CLOCK_MONOTONIC). After 0.5 s and a few untimed
 *        warm-up writes, 200 (--quick: 20) single Upserts, one at a time:
 *        each creates a new seller "bench-place-N" linked to a kept device
 *        (round robin over them), the client waits for that seller's
 *        alert (at most 5 s), then pauses 20 ms. Per write: the Upsert
 *        round trip (the reference: the same write's own latency) and
 *        reply -> alert arrival (it may come first: both race to this
 *        process). A write whose alert did not come in time is looked up:
 *        its alert came later (late), it was placed alone (cluster 0, no
 *        alert due: reported), placed in a cluster without an alert, or
 *        not placed at all (all but "alone" are anomalies). The daemon's
 *        own view comes from /metrics scraped before and after the loop:
 *        the difference of the graphd_placement_latency_seconds histogram
 *        (the write that queued the seller to its placement's commit), its
 *        count and mean, and p50/p99 interpolated within its buckets.
 *    (b) THROUGHPUT: two daemons, one at a time, in alternating order
 *        (placement on first in repeats 1, 3, ..., off first in 2, 4,
 *        ...): on (the default queue) and off (--placement-queue 0),
 *        both with --metrics-listen 127.0.0.1:0. Each writes the held-back
 *        records in 20 successive Ingest calls
 *        (bench_ingest_range, --batch links per message), each call
 *        durable before the next opens, as a feed of new sellers would
 *        push them; one Ingest call of the whole load would be committed
 *        in two write transactions (group commit), with the placer idle
 *        until its end. Timed from opening the first call to the last
 *        reply (a Stats call after each reply reads the queue, on both
 *        sides); links/s = records / that time. Then, for on, Stats is
 *        polled every 20 ms until placement_queued is 0 three readings
 *        running: the drain time is from the last reply to the first of
 *        them. Stats before and after give placements, alerts,
 *        placement_shed (marks dropped because the queue was full) and
 *        the write transactions committed (commits: the placer's own
 *        included); off must show no placement activity. For on, the
 *        graphd_placement_latency_seconds histogram over the run gives the
 *        placement latency under this load (p50/p99 interpolated, mean).
 *    (c) AGREEMENT, in (b)'s placement-on daemon once its figures are
 *        read: the changed sellers are the seller endpoints of the
 *        held-back records: the new sellers (GetEntities of the ids over
 *        the base's entity count: the store numbers entities from 1 up,
 *        so every entity the load created has such an id; they must be
 *        as many as were held back) and the sellers linked to them (Neighbors,
 *        sellers only, of those with a seller_count). Each one's guess
 *        with placement is GetEntity's provisional cluster, else its
 *        snapshot cluster (the placer writes no placement for a seller
 *        that stays there); without placement, its snapshot cluster (0
 *        for a new seller). Then one clustering job with the default spec
 *        (bench_job_run; its manifest must say it matched its ids against
 *        the base's snapshot), and StreamAssignments of both snapshots.
 *        A guess agrees strictly when it is the seller's cluster in the
 *        new snapshot, or 0 with the seller alone there (a cluster of 1);
 *        by co-membership also when the seller's new cluster holds another
 *        seller that was in the guessed cluster in the base snapshot (the
 *        run split the cluster and gave the part the seller is in a
 *        fresh id: the seller still sits with the members it was placed
 *        with). Counted too: the sellers the guess without placement got
 *        wrong (co-membership) and, of them, those placement got right.
 *    Every daemon runs with --no-audit (an audit record per call would be
 *    one more write in the writer for both sides) plus every --graphd-arg,
 *    gets SIGTERM at the end and must exit 0.
 *
 * Reported: medians over the repeats of the latency p50/p99 of both the
 * Upsert round trip and reply -> alert, the server's histogram figures,
 * links/s for on and off and the ratio on/off (median of per-repeat
 * ratios; target >= 0.9, marked met or MISSED, not an anomaly), the shed
 * marks, the queue during and after the load, the drain time, the
 * placement latency under the load, and the agreement shares with and
 * without placement by both measures (target >= 95%, each measure marked
 * met or MISSED, not an anomaly). Anomalies:
 * missing alerts (above), an rpc failing, an Ingest counting other than
 * the records sent, the queue not draining within 5 minutes, placement
 * activity with --placement-queue 0, the next run failing or matched
 * against another snapshot, the new sellers not found as held back, a
 * daemon dying or not exiting 0.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"

#define TARGET_RATIO 0.9        /* links/s with placement on / off, at least */
#define HOLD_SHARE 0.08         /* link records held back for the write load */
#define HOLD_MAX 100000         /* ... at most */
#define UPSERTS 200             /* timed single writes per repeat (--quick: 20) */
#define WARMUPS 5               /* untimed ones first (--quick: 2) */
#define PAUSE_MS 20             /* between two single writes */
#define ALERT_WAIT_MS 5000      /* longest wait for one write's alert */
#define WRITE_CALLS 20 /* the write load: successive Ingest calls */
#define MAX_CANDIDATES 512 /* ring devices probed */
#define MAX_DEVICES 256    /* ... kept */
#define MIN_DEVICE_USERS 3 /* sellers of the device in its cluster, at least */
#define KEY_PREFIX "bench-place-"
#define TARGET_AGREE 0.95 /* changed sellers placed as the next full run puts them, at least */
#define SCAN_MIN 1024     /* ids a GetEntities call while looking for the new sellers */
#define SCAN_MAX 65536    /* ... at most */

enum { ON = 0, OFF = 1 };
static const char *const tp_names[2] = {"on", "off"};

/* ---- files ------------------------------------------------------------- */

static void copy_file(const char *src, const char *dst) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    die("cannot open %s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0)
    die("cannot create %s: %s", dst, strerror(errno));
  enum { BUF = 1 << 20 };
  char *buf = xmalloc(BUF);
  for (;;) {
    ssize_t n = read(in, buf, BUF);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die("reading %s: %s", src, strerror(errno));
    if (n == 0)
      break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        die("writing %s: %s", dst, strerror(errno));
      off += w;
    }
  }
  if (fsync(out) != 0)
    die("fsync %s: %s", dst, strerror(errno));
  free(buf);
  close(in);
  close(out);
}

/* Copies the regular files of src (recursively) into dst, a new directory;
 * everything fsynced, so that the copy's write-back does not fall into the
 * measurement that follows. */
static void copy_dir(const char *src, const char *dst) {
  if (mkdir(dst, 0755) != 0)
    die("mkdir %s: %s", dst, strerror(errno));
  DIR *dir = opendir(src);
  if (!dir)
    die("cannot open %s: %s", src, strerror(errno));
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char *s = xasprintf("%s/%s", src, e->d_name), *t = xasprintf("%s/%s", dst, e->d_name);
    struct stat st;
    if (lstat(s, &st) != 0)
      die("stat %s: %s", s, strerror(errno));
    if (S_ISDIR(st.st_mode))
      copy_dir(s, t);
    else if (S_ISREG(st.st_mode))
      copy_file(s, t);
    free(s);
    free(t);
  }
  closedir(dir);
  int fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* ---- the daemon ---------------------------------------------------------- */

typedef struct run_daemon {
  daemon_proc dp;
  gc_client *c;
  bool up;
} run_daemon;

/* Starts graphd on data_dir with --no-audit, the extra arguments (NULL
 * ended) and every --graphd-arg, and connects. */
static bool rd_start(const bench_cfg *cfg, const char *data_dir, const char *log, run_daemon *rd,
                     const char *const *extra) {
  memset(rd, 0, sizeof *rd);
  bench_cfg dcfg = *cfg;
  int n = 1;
  for (const char *const *a = extra; a && *a; a++)
    n++;
  if (dcfg.n_graphd_args + n > MAX_GRAPHD_ARGS)
    die("too many --graphd-arg for the place mode (at most %d)", MAX_GRAPHD_ARGS - n);
  dcfg.graphd_args[dcfg.n_graphd_args++] = "--no-audit";
  for (const char *const *a = extra; a && *a; a++)
    dcfg.graphd_args[dcfg.n_graphd_args++] = *a;
  if (!daemon_start(&dcfg, data_dir, log, &rd->dp))
    return false;
  gc_status st;
  gc_client_opts co = {.own_connection = true};
  if (gc_client_open(rd->dp.addr, &co, &rd->c, &st) || gc_client_wait_ready(rd->c, 10000, &st)) {
    anomaly("place: cannot connect to graphd at %s: %s", rd->dp.addr, st.message);
    gc_client_close(rd->c);
    rd->c = NULL;
    daemon_exit ex;
    daemon_stop(cfg, &rd->dp, &ex);
    return false;
  }
  rd->up = true;
  return true;
}

/* Closes the client, SIGTERM; false when the daemon died or did not exit 0. */
static bool rd_stop(const bench_cfg *cfg, run_daemon *rd, const char *when) {
  gc_client_close(rd->c);
  rd->c = NULL;
  daemon_exit ex;
  return daemon_finish(cfg, &rd->dp, when, &ex);
}

/* ---- small rpcs ------------------------------------------------------------ */

/* GetEntity of the entity with id, or else of (type, key). */
static Graphd__V1__Entity *entity_get_ref(const bench_cfg *cfg, gc_client *c, uint64_t id,
                                          int type, const char *key, gc_status *st) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  ref.id = id;
  ref.type = (Graphd__V1__EntityType)type;
  ref.key = (char *)(key ? key : "");
  Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  req.ref = &ref;
  Graphd__V1__GetEntityReply *rep = NULL;
  if (gc_unary(c, SVC "GetEntity", &req.base, &graphd__v1__get_entity_reply__descriptor,
               (ProtobufCMessage **)&rep, st, cfg->call_timeout_ms))
    return NULL;
  Graphd__V1__Entity *e = rep->entity;
  rep->entity = NULL;
  graphd__v1__get_entity_reply__free_unpacked(rep, NULL);
  if (!e)
    st->code = GRPC_STATUS_INTERNAL;
  return e;
}

static Graphd__V1__Entity *entity_get(const bench_cfg *cfg, gc_client *c, int type,
                                      const char *key, gc_status *st) {
  return entity_get_ref(cfg, c, 0, type, key, st);
}

/* One page of entity id's (or else (type, key)'s) seller neighbours, at most
 * limit, from page token (NULL: the first); NULL when the call failed,
 * with an anomaly "place: Neighbors(WHAT) failed: ..." recorded. */
static Graphd__V1__NeighborsReply *seller_neighbors(const bench_cfg *cfg, gc_client *c,
                                                    uint64_t id, int type, const char *key,
                                                    unsigned limit, const char *token,
                                                    const char *what) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  ref.id = id;
  ref.type = (Graphd__V1__EntityType)type;
  ref.key = (char *)(key ? key : "");
  Graphd__V1__EntityType types[1] = {GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER};
  Graphd__V1__NeighborsRequest req = GRAPHD__V1__NEIGHBORS_REQUEST__INIT;
  req.ref = &ref;
  req.n_types = 1;
  req.types = types;
  req.limit = limit;
  req.page_token = (char *)(token ? token : "");
  Graphd__V1__NeighborsReply *rep = NULL;
  gc_status st;
  if (gc_unary(c, SVC "Neighbors", &req.base, &graphd__v1__neighbors_reply__descriptor,
               (ProtobufCMessage **)&rep, &st, cfg->call_timeout_ms)) {
    anomaly("place: Neighbors(%s) failed: %s: %s", what, gc_status_code_name(st.code),
            st.message);
    return NULL;
  }
  return rep;
}

/* ---- the ring devices -------------------------------------------------------- */

typedef struct ring_dev {
  char *key;
  uint64_t cluster;  /* of the most of its sellers in the snapshot */
  int users, in_cluster;
  int ring;
} ring_dev;

typedef struct dev_pick {
  ring_dev *d;
  size_t n;
  size_t rings, devices_seen, over_cap, too_few, candidates, probe_alone, probe_unplaced;
} dev_pick;

/* The device's sellers (Neighbors, up to 1000) and their clusters. */
static bool device_check(const bench_cfg *cfg, gc_client *c, const char *key, ring_dev *ret,
                         dev_pick *pk) {
  gc_status st;
  Graphd__V1__Entity *e = entity_get(cfg, c, GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE, key, &st);
  if (!e)
    return false; /* not loaded (its users all held back) */
  bool over = e->over_hub_cap;
  graphd__v1__entity__free_unpacked(e, NULL);
  if (over) {
    pk->over_cap++;
    return false;
  }
  char what[160];
  snprintf(what, sizeof what, "device %s", key);
  Graphd__V1__NeighborsReply *rep = seller_neighbors(
      cfg, c, 0, GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE, key, 1000, NULL, what);
  if (!rep)
    return false;
  uint64_t *cl = xcalloc(rep->n_neighbors, sizeof *cl);
  for (size_t i = 0; i < rep->n_neighbors; i++) {
    Graphd__V1__Entity *s = entity_get(cfg, c, GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER,
                                       rep->neighbors[i]->entity->key, &st);
    if (s) {
      cl[i] = s->cluster_id;
      graphd__v1__entity__free_unpacked(s, NULL);
    }
  }
  uint64_t best = 0;
  int best_n = 0;
  for (size_t i = 0; i < rep->n_neighbors; i++) {
    if (!cl[i])
      continue;
    int k = 0;
    for (size_t j = 0; j < rep->n_neighbors; j++)
      k += cl[j] == cl[i];
    if (k > best_n)
      best = cl[i], best_n = k;
  }
  ret->users = (int)rep->n_neighbors;
  ret->cluster = best;
  ret->in_cluster = best_n;
  free(cl);
  graphd__v1__neighbors_reply__free_unpacked(rep, NULL);
  if (!best || best_n < MIN_DEVICE_USERS) {
    pk->too_few++;
    return false;
  }
  return true;
}

/* Ring devices whose sellers share a cluster, from rings.csv
 * (ring,size,warehouse_key,devices,mule_accounts; devices ';'-separated). */
static void devices_pick(const bench_cfg *cfg, gc_client *c, const char *rings_path,
                         dev_pick *pk) {
  memset(pk, 0, sizeof *pk);
  FILE *f = fopen(rings_path, "r");
  if (!f) {
    anomaly("place: cannot open %s (sellergen's rings.csv, next to the links file): %s",
            rings_path, strerror(errno));
    return;
  }
  pk->d = xcalloc(MAX_CANDIDATES, sizeof *pk->d);
  char *line = NULL;
  size_t cap = 0;
  bool header = true;
  while (getline(&line, &cap, f) > 0 && pk->n < MAX_CANDIDATES) {
    if (header) {
      header = false;
      continue;
    }
    line[strcspn(line, "\r\n")] = '\0';
    char *save = NULL, *fld[5] = {0};
    int nf = 0;
    for (char *p = line, *t; nf < 5 && (t = strsep(&p, ","));)
      fld[nf++] = t;
    if (nf < 4 || !*fld[3])
      continue;
    pk->rings++;
    for (char *t = strtok_r(fld[3], ";", &save); t && pk->n < MAX_CANDIDATES;
         t = strtok_r(NULL, ";", &save)) {
      pk->devices_seen++;
      ring_dev rdv = {.ring = atoi(fld[0])};
      if (device_check(cfg, c, t, &rdv, pk)) {
        rdv.key = xstrdup(t);
        pk->d[pk->n++] = rdv;
      }
    }
  }
  free(line);
  fclose(f);
}

/* A new seller linked to device, in one Upsert. */
static int upsert_new(const bench_cfg *cfg, gc_client *c, const char *seller, const char *device,
                      gc_status *st) {
  Graphd__V1__EntityRef a = GRAPHD__V1__ENTITY_REF__INIT, b = GRAPHD__V1__ENTITY_REF__INIT;
  a.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
  a.key = (char *)seller;
  b.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE;
  b.key = (char *)device;
  Graphd__V1__LinkInput l = GRAPHD__V1__LINK_INPUT__INIT;
  l.a = &a;
  l.b = &b;
  Graphd__V1__LinkInput *ls[1] = {&l};
  Graphd__V1__UpsertRequest req = GRAPHD__V1__UPSERT_REQUEST__INIT;
  req.n_links = 1;
  req.links = ls;
  Graphd__V1__UpsertReply *rep = NULL;
  int code = gc_unary(c, SVC "Upsert", &req.base, &graphd__v1__upsert_reply__descriptor,
                      (ProtobufCMessage **)&rep, st, cfg->call_timeout_ms);
  if (rep)
    graphd__v1__upsert_reply__free_unpacked(rep, NULL);
  return code;
}

/*
 * Keeps the candidates whose new seller is placed in a cluster: on a
 * scratch copy of the base, one probe seller per candidate device
 * (Upsert, as the latency run makes them), the queue drained, then each
 * probe's placement (GetEntity). A device whose seller stays alone (its
 * tie under min_tie_weight, or a gain <= 0 against a big cluster) would
 * bring no alert. At most MAX_DEVICES are kept.
 */
static bool devices_probe(const bench_cfg *cfg, const char *dir, const char *base, dev_pick *pk) {
  char *data = xasprintf("%s/probe-data", dir), *log = xasprintf("%s/graphd-probe.log", dir);
  copy_dir(base, data);
  run_daemon rd;
  bool ok = rd_start(cfg, data, log, &rd, NULL);
  double ds;
  ok = ok && bench_wait_drained(cfg, rd.c, now_ns(), &ds, NULL);
  char key[64];
  for (size_t i = 0; i < pk->n && ok; i++) {
    gc_status st;
    snprintf(key, sizeof key, "bench-probe-%zu", i);
    if (upsert_new(cfg, rd.c, key, pk->d[i].key, &st)) {
      anomaly("place: probe Upsert(%s -> device %s) failed: %s: %s", key, pk->d[i].key,
              gc_status_code_name(st.code), st.message);
      ok = false;
    }
  }
  ok = ok && bench_wait_drained(cfg, rd.c, now_ns(), &ds, NULL);
  size_t kept = 0;
  for (size_t i = 0; i < pk->n && ok; i++) {
    gc_status st;
    snprintf(key, sizeof key, "bench-probe-%zu", i);
    Graphd__V1__Entity *e =
        entity_get(cfg, rd.c, GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER, key, &st);
    if (!e) {
      anomaly("place: GetEntity(%s) failed: %s: %s", key, gc_status_code_name(st.code),
              st.message);
      ok = false;
      break;
    }
    if (!e->provisional)
      pk->probe_unplaced++;
    else if (!e->provisional->cluster_id)
      pk->probe_alone++;
    if (e->provisional && e->provisional->cluster_id && kept < MAX_DEVICES) {
      ring_dev t = pk->d[kept];
      pk->d[kept] = pk->d[i];
      pk->d[i] = t;
      pk->d[kept].cluster = e->provisional->cluster_id;
      kept++;
    }
    graphd__v1__entity__free_unpacked(e, NULL);
  }
  if (pk->probe_unplaced) {
    anomaly("place: %zu of %zu probe sellers were not placed at all", pk->probe_unplaced, pk->n);
    ok = false;
  }
  if (rd.up)
    ok &= rd_stop(cfg, &rd, "while probing the ring devices");
  for (size_t i = kept; i < pk->n; i++) {
    free(pk->d[i].key);
    pk->d[i].key = NULL;
  }
  pk->candidates = pk->n;
  pk->n = ok ? kept : 0;
  if (!cfg->keep)
    rm_rf(data);
  free(data), free(log);
  return ok;
}

static void devices_free(dev_pick *pk) {
  for (size_t i = 0; i < pk->n; i++)
    free(pk->d[i].key);
  free(pk->d);
  memset(pk, 0, sizeof *pk);
}

/* ---- /metrics ------------------------------------------------------------- */

#define HB_MAX 32
typedef struct phist {
  bool ok;
  int n;               /* finite buckets */
  double le[HB_MAX];   /* upper bounds; the +Inf bucket is n */
  double cum[HB_MAX + 1];
  double sum, count;
  double placements, alerts, shed;
} phist;

static bool scrape(int port, phist *h) {
  memset(h, 0, sizeof *h);
  CURL *c = curl_easy_init();
  if (!c)
    return false;
  char url[64], why[200];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
  bench_body b = {0};
  int rc = bench_http_get(c, url, &b, why, sizeof why);
  curl_easy_cleanup(c);
  if (rc != 0 || !b.p) {
    anomaly("place: GET %s failed: %s", url, rc != 0 ? why : "empty reply");
    free(b.p);
    return false;
  }
  static const char pfx[] = "graphd_placement_latency_seconds_bucket{le=\"";
  for (const char *p = b.p; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, pfx, sizeof pfx - 1))
      continue;
    const char *v = p + sizeof pfx - 1;
    const char *sp = strchr(v, ' ');
    if (!sp)
      continue;
    if (!strncmp(v, "+Inf", 4)) {
      h->cum[h->n] = strtod(sp + 1, NULL);
    } else if (h->n < HB_MAX) {
      h->le[h->n] = strtod(v, NULL);
      h->cum[h->n] = strtod(sp + 1, NULL);
      h->n++;
    }
  }
  h->sum = bench_metric_sample(b.p, "graphd_placement_latency_seconds_sum");
  h->count = bench_metric_sample(b.p, "graphd_placement_latency_seconds_count");
  h->placements = bench_metric_sample(b.p, "graphd_placements_total");
  h->alerts = bench_metric_sample(b.p, "graphd_alerts_total");
  h->shed = bench_metric_sample(b.p, "graphd_placement_shed_total");
  free(b.p);
  h->ok = h->n > 0 && isfinite(h->count);
  if (!h->ok)
    anomaly("place: no graphd_placement_latency_seconds histogram in %s", url);
  return h->ok;
}

/* Quantile q of the observations between two scrapes, interpolated
 * linearly within the bucket it falls in (as Prometheus'
 * histogram_quantile); the last finite bound when it falls in +Inf. */
static double hist_quantile(const phist *a, const phist *b, double q) {
  double total = b->cum[b->n] - a->cum[a->n];
  if (!(total > 0) || a->n != b->n)
    return NAN;
  double want = q * total, prev = 0, lo = 0;
  for (int i = 0; i < b->n; i++) {
    double c = b->cum[i] - a->cum[i];
    if (c >= want) {
      if (c <= prev)
        return b->le[i];
      return lo + (b->le[i] - lo) * (want - prev) / (c - prev);
    }
    prev = c;
    lo = b->le[i];
  }
  return b->le[b->n - 1];
}

/* ---- (a) latency --------------------------------------------------------------- */

typedef struct watcher {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  gc_sstream *s;
  int n;               /* slots: keys KEY_PREFIX 0 .. n-1 */
  int64_t *arrived;    /* monotonic ns; 0 = not yet */
  uint64_t *cluster;   /* the event's cluster */
  uint64_t events, foreign, repeated;
  bool ended;
  int code;
  char err[256];
} watcher;

static void *watcher_main(void *arg) {
  watcher *w = arg;
  for (;;) {
    ProtobufCMessage *m = NULL;
    gc_status st;
    int code = gc_sstream_next(w->s, &graphd__v1__alert_event__descriptor, &m, &st);
    int64_t t = now_ns();
    pthread_mutex_lock(&w->mu);
    if (code != GRPC_STATUS_OK || !m) {
      w->ended = true;
      w->code = code;
      snprintf(w->err, sizeof w->err, "%s: %.200s", gc_status_code_name(code), st.message);
      pthread_cond_broadcast(&w->cv);
      pthread_mutex_unlock(&w->mu);
      break;
    }
    Graphd__V1__AlertEvent *ev = (Graphd__V1__AlertEvent *)m;
    w->events++;
    int slot = -1;
    if (ev->seller_key && !strncmp(ev->seller_key, KEY_PREFIX, sizeof KEY_PREFIX - 1)) {
      char *end;
      long v = strtol(ev->seller_key + sizeof KEY_PREFIX - 1, &end, 10);
      if (!*end && v >= 0 && v < w->n)
        slot = (int)v;
    }
    if (slot < 0) {
      w->foreign++;
    } else if (w->arrived[slot]) {
      w->repeated++;
    } else {
      w->arrived[slot] = t;
      w->cluster[slot] = ev->cluster_id;
      pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  return NULL;
}

/* Waits for slot's alert until deadline (monotonic ns); its arrival or 0. */
static int64_t watcher_wait(watcher *w, int slot, int64_t deadline) {
  pthread_mutex_lock(&w->mu);
  while (!w->arrived[slot] && !w->ended) {
    int64_t left = deadline - now_ns();
    if (left <= 0)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (left < 50000000 ? left : 50000000);
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  int64_t t = w->arrived[slot];
  pthread_mutex_unlock(&w->mu);
  return t;
}

typedef struct lat_run {
  bool ok;
  int n, alerted, alone, unplaced, silent, late, other_cluster, warm_missing;
  double alert_p50, alert_p99, alert_max, alert_mean; /* ms, reply -> alert arrival */
  double rtt_p50, rtt_p99, rtt_max;                   /* ms, Upsert round trip */
  double srv_p50, srv_p99, srv_mean, srv_count;       /* ms, the histogram's difference */
  double placements, alerts;                          /* Stats differences */
  double daemon_cpu_s;
  uint64_t foreign_events;
} lat_run;

static void run_latency(const bench_cfg *cfg, const char *dir, const char *base, int r,
                        const dev_pick *pk, lat_run *ret) {
  memset(ret, 0, sizeof *ret);
  ret->alert_p50 = ret->alert_p99 = ret->alert_max = ret->alert_mean = NAN;
  ret->rtt_p50 = ret->rtt_p99 = ret->rtt_max = NAN;
  ret->srv_p50 = ret->srv_p99 = ret->srv_mean = ret->srv_count = NAN;
  ret->placements = ret->alerts = ret->daemon_cpu_s = NAN;
  int nw = cfg->quick ? 2 : WARMUPS, nu = cfg->quick ? 20 : UPSERTS;
  char *data = xasprintf("%s/latency-%d", dir, r + 1);
  char *log = xasprintf("%s/graphd-latency-%d.log", dir, r + 1);
  copy_dir(base, data);
  run_daemon rd;
  static const char *const extra[] = {"--metrics-listen", "127.0.0.1:0", NULL};
  fprintf(stderr, "graphd-bench: place %d/%d: latency: starting graphd\n", r + 1, cfg->repeat);
  if (!rd_start(cfg, data, log, &rd, extra)) {
    rm_rf(data);
    free(data), free(log);
    return;
  }
  bool ok = true;
  int port = bench_log_port(log, "metrics on ");
  if (!port) {
    anomaly("place %d: no 'metrics on HOST:PORT' line in %s", r + 1, log);
    ok = false;
  }
  double ds;
  ok = ok && bench_wait_drained(cfg, rd.c, now_ns(), &ds, NULL);

  watcher w = {.n = nw + nu};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.arrived = xcalloc((size_t)w.n, sizeof *w.arrived);
  w.cluster = xcalloc((size_t)w.n, sizeof *w.cluster);
  pthread_t th;
  bool watching = false;
  if (ok) {
    Graphd__V1__WatchAlertsRequest wr = GRAPHD__V1__WATCH_ALERTS_REQUEST__INIT;
    wr.from_now = true;
    gc_status st;
    if (gc_sstream_start(rd.c, SVC "WatchAlerts", &wr.base, 3600000, &w.s, &st)) {
      anomaly("place %d: WatchAlerts failed: %s: %s", r + 1, gc_status_code_name(st.code),
              st.message);
      ok = false;
    } else {
      if (pthread_create(&th, NULL, watcher_main, &w) != 0)
        die("pthread_create: %s", strerror(errno));
      watching = true;
      usleep(500000); /* the stream is registered: from_now counts from there */
    }
  }

  double *alert_ms = xcalloc((size_t)nu, sizeof *alert_ms);
  double *rtt_ms = xcalloc((size_t)nu, sizeof *rtt_ms);
  int *missing = xcalloc((size_t)nu, sizeof *missing);
  int nmiss = 0, nal = 0;
  phist h0 = {0}, h1 = {0};
  bench_stats s0 = {0}, s1 = {0};
  double cpu0 = NAN;
  char key[64];
  for (int i = 0; i < w.n && ok; i++) {
    bool timed = i >= nw;
    if (i == nw) {
      ok &= scrape(port, &h0) && bench_stats_get(cfg, rd.c, &s0);
      cpu0 = proc_cpu_s(rd.dp.pid);
      if (!ok)
        break;
    }
    const ring_dev *dv = &pk->d[(size_t)i % pk->n];
    snprintf(key, sizeof key, KEY_PREFIX "%d", i);
    gc_status st;
    int64_t t0 = now_ns();
    if (upsert_new(cfg, rd.c, key, dv->key, &st)) {
      anomaly("place %d: Upsert(%s -> device %s) failed: %s: %s", r + 1, key, dv->key,
              gc_status_code_name(st.code), st.message);
      ok = false;
      break;
    }
    int64_t t1 = now_ns();
    int64_t ta = watcher_wait(&w, i, t1 + (int64_t)ALERT_WAIT_MS * 1000000);
    if (timed) {
      int k = i - nw;
      rtt_ms[k] = (double)(t1 - t0) / 1e6;
      if (ta) {
        alert_ms[nal++] = (double)(ta - t1) / 1e6;
        pthread_mutex_lock(&w.mu);
        ret->other_cluster += w.cluster[i] != dv->cluster;
        pthread_mutex_unlock(&w.mu);
      } else {
        missing[nmiss++] = i;
      }
    } else if (!ta) {
      ret->warm_missing++;
    }
    pthread_mutex_lock(&w.mu);
    bool ended = w.ended;
    pthread_mutex_unlock(&w.mu);
    if (ended) {
      anomaly("place %d: the WatchAlerts stream ended: %s", r + 1, w.err);
      ok = false;
      break;
    }
    usleep(PAUSE_MS * 1000);
  }
  ret->n = ok ? nu : 0;
  if (ok) {
    double dummy;
    ok &= bench_wait_drained(cfg, rd.c, now_ns(), &dummy, NULL);
    ret->daemon_cpu_s = proc_cpu_s(rd.dp.pid) - cpu0;
    ok = ok && scrape(port, &h1) && bench_stats_get(cfg, rd.c, &s1);
  }
  if (ok) {
    ret->alerted = nal;
    ret->alert_mean = 0;
    for (int k = 0; k < nal; k++)
      ret->alert_mean += alert_ms[k] / nal;
    ret->alert_p50 = pctl(alert_ms, (size_t)nal, 0.5);
    ret->alert_p99 = pctl(alert_ms, (size_t)nal, 0.99);
    ret->alert_max = nal ? alert_ms[nal - 1] : NAN;
    ret->rtt_p50 = pctl(rtt_ms, (size_t)nu, 0.5);
    ret->rtt_p99 = pctl(rtt_ms, (size_t)nu, 0.99);
    ret->rtt_max = rtt_ms[nu - 1];
    ret->srv_count = h1.count - h0.count;
    ret->srv_mean = ret->srv_count > 0 ? (h1.sum - h0.sum) / ret->srv_count * 1e3 : NAN;
    ret->srv_p50 = hist_quantile(&h0, &h1, 0.5) * 1e3;
    ret->srv_p99 = hist_quantile(&h0, &h1, 0.99) * 1e3;
    ret->placements = (double)(s1.placements - s0.placements);
    ret->alerts = (double)(s1.alerts - s0.alerts);
    /* The writes whose alert did not come: why. */
    for (int k = 0; k < nmiss; k++) {
      pthread_mutex_lock(&w.mu);
      bool late = w.arrived[missing[k]] != 0;
      pthread_mutex_unlock(&w.mu);
      if (late) { /* came after the wait */
        ret->late++;
        continue;
      }
      snprintf(key, sizeof key, KEY_PREFIX "%d", missing[k]);
      gc_status st;
      Graphd__V1__Entity *e =
          entity_get(cfg, rd.c, GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER, key, &st);
      if (!e) {
        anomaly("place %d: GetEntity(%s) failed: %s: %s", r + 1, key,
                gc_status_code_name(st.code), st.message);
        ret->unplaced++;
      } else if (!e->provisional) {
        ret->unplaced++;
      } else if (e->provisional->cluster_id == 0) {
        ret->alone++;
      } else {
        ret->silent++;
      }
      if (e)
        graphd__v1__entity__free_unpacked(e, NULL);
    }
    if (ret->late)
      anomaly("place %d: %d of %d alerts came later than %d ms after their write", r + 1,
              ret->late, nu, ALERT_WAIT_MS);
    if (ret->unplaced)
      anomaly("place %d: %d of %d new sellers were not placed at all", r + 1, ret->unplaced, nu);
    if (ret->silent)
      anomaly("place %d: %d of %d new sellers were placed in a cluster but their alert did not "
              "come within %d ms", r + 1, ret->silent, nu, ALERT_WAIT_MS);
    if (!nal)
      anomaly("place %d: none of the %d writes brought an alert", r + 1, nu);
    ok &= !ret->unplaced && !ret->silent && !ret->late && nal > 0;
  }
  pthread_mutex_lock(&w.mu);
  ret->foreign_events = w.foreign;
  pthread_mutex_unlock(&w.mu);
  if (watching) {
    gc_sstream_cancel(w.s);
    pthread_join(th, NULL);
  }
  gc_sstream_free(w.s);
  ok &= rd_stop(cfg, &rd, "during the latency run");
  ret->ok = ok;
  fprintf(stderr, "graphd-bench: place %d: %d/%d alerts; reply -> alert p50 %.2f ms, p99 %.2f "
          "ms; Upsert p50 %.2f ms, p99 %.2f ms; server p50 ~%.2f ms%s\n", r + 1, ret->alerted,
          nu, ret->alert_p50, ret->alert_p99, ret->rtt_p50, ret->rtt_p99, ret->srv_p50,
          ok ? "" : " FAILED");
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  free(w.arrived), free(w.cluster);
  free(alert_ms), free(rtt_ms), free(missing);
  if (!cfg->keep)
    rm_rf(data);
  free(data), free(log);
}

/* ---- (c) agreement with the next full run (in (b)'s placement-on daemon) ---------- */

/* Calls fn with each message (desc) of the server stream method(req) on c,
 * deadline cfg->job_timeout_ms, until it ends or fn returns false (fn then
 * records its anomaly). False also when the call failed, with an anomaly
 * "LABEL: METHOD failed: CODE: MSG" recorded. */
typedef bool (*stream_fn)(void *ctx, const ProtobufCMessage *m);
static bool stream_each(const bench_cfg *cfg, gc_client *c, const char *method,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                        stream_fn fn, void *ctx, const char *label) {
  gc_status st;
  gc_sstream *s = NULL;
  bool more = true;
  int code = gc_sstream_open(c, method, req, cfg->job_timeout_ms, &s, &st);
  while (code == GRPC_STATUS_OK && more) {
    ProtobufCMessage *m = NULL;
    code = gc_sstream_next(s, desc, &m, &st);
    if (code != GRPC_STATUS_OK || !m)
      break;
    more = fn(ctx, m);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  gc_sstream_free(s);
  if (code != GRPC_STATUS_OK) {
    anomaly("%s: %s failed: %s: %s", label, method + strlen(SVC), gc_status_code_name(code),
            st.message);
    return false;
  }
  return more;
}

typedef struct u64vec {
  uint64_t *v;
  size_t n, cap;
} u64vec;

static void u64vec_push(u64vec *a, uint64_t x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 1024;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = x;
}

static int cmp_u64(const void *pa, const void *pb) {
  uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
  return (a > b) - (a < b);
}

/* A snapshot's assignments (StreamAssignments): seller ids ascending. */
typedef struct assign {
  u64vec seller, cluster;
  bool disordered;
} assign;

static bool assign_add(void *ctx, const ProtobufCMessage *m) {
  assign *a = ctx;
  const Graphd__V1__AssignmentBatch *b = (const Graphd__V1__AssignmentBatch *)m;
  size_t n = b->n_seller_ids < b->n_cluster_ids ? b->n_seller_ids : b->n_cluster_ids;
  a->disordered |= b->n_seller_ids != b->n_cluster_ids;
  for (size_t i = 0; i < n; i++) {
    a->disordered |= a->seller.n && b->seller_ids[i] <= a->seller.v[a->seller.n - 1];
    u64vec_push(&a->seller, b->seller_ids[i]);
    u64vec_push(&a->cluster, b->cluster_ids[i]);
  }
  return true;
}

static bool assign_read(const bench_cfg *cfg, gc_client *c, uint64_t snap, const char *label,
                        assign *ret) {
  memset(ret, 0, sizeof *ret);
  Graphd__V1__StreamAssignmentsRequest req = GRAPHD__V1__STREAM_ASSIGNMENTS_REQUEST__INIT;
  req.snapshot_id = snap;
  if (!stream_each(cfg, c, SVC "StreamAssignments", &req.base,
                   &graphd__v1__assignment_batch__descriptor, assign_add, ret, label))
    return false;
  if (ret->disordered)
    anomaly("%s: StreamAssignments(%" PRIu64 ") sent seller ids out of order, or batches of "
            "uneven seller_ids and cluster_ids", label, snap);
  return !ret->disordered;
}

/* seller's cluster in a (0: not in the snapshot). */
static uint64_t assign_get(const assign *a, uint64_t seller) {
  size_t lo = 0, hi = a->seller.n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a->seller.v[mid] < seller)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < a->seller.n && a->seller.v[lo] == seller ? a->cluster.v[lo] : 0;
}

static void assign_free(assign *a) {
  free(a->seller.v), free(a->cluster.v);
  memset(a, 0, sizeof *a);
}

/* Pairs of cluster ids, sorted, to count the sellers of a pair. */
typedef struct cpair {
  uint64_t a, b;
} cpair;

static int cmp_cpair(const void *pa, const void *pb) {
  const cpair *x = pa, *y = pb;
  if (x->a != y->a)
    return x->a < y->a ? -1 : 1;
  return (x->b > y->b) - (x->b < y->b);
}

/* How many of p[0..n) (sorted) equal k. */
static size_t cpair_count(const cpair *p, size_t n, cpair k) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_cpair(&p[mid], &k) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t first = lo;
  hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_cpair(&p[mid], &k) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - first;
}

typedef struct agree_run {
  bool ok;
  uint64_t changed, new_sellers;
  uint64_t unplaced; /* no provisional placement: the placer kept the snapshot's cluster */
  uint64_t strict, comember;               /* placement agrees, by each measure */
  uint64_t base_strict, base_comember;     /* the base snapshot's cluster agrees */
  uint64_t base_wrong, fixed;              /* co-membership: base wrong; of them placement right */
  uint64_t snapshot;                       /* the next run's */
  double lookup_s, job_s;
} agree_run;

/* Keeps the new sellers (GetEntities: sellers with an id over the base's
 * entities); those linked to sellers also go to linked. */
typedef struct new_scan {
  uint64_t entities; /* found */
  u64vec sellers, linked;
} new_scan;

static bool scan_add(void *ctx, const ProtobufCMessage *m) {
  new_scan *ns = ctx;
  const Graphd__V1__EntityBatch *b = (const Graphd__V1__EntityBatch *)m;
  for (size_t i = 0; i < b->n_entities; i++) {
    const Graphd__V1__Entity *e = b->entities[i];
    ns->entities++;
    if (e->type != GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
      continue;
    u64vec_push(&ns->sellers, e->id);
    if (e->seller_count)
      u64vec_push(&ns->linked, e->id);
  }
  return true;
}

/*
 * On rd (placement on, the held-back records written, the queue drained;
 * base0: the base's entities, snap0: its snapshot): each changed seller's
 * placement, then the next full run, then both compared (see the header).
 */
static void run_agreement(const bench_cfg *cfg, run_daemon *rd, uint64_t base0, uint64_t snap0,
                          int r, size_t new_sellers, agree_run *ret) {
  memset(ret, 0, sizeof *ret);
  ret->lookup_s = ret->job_s = NAN;
  char label[48];
  snprintf(label, sizeof label, "place %d (agreement)", r + 1);
  int64_t t0 = now_ns();

  /* 1. The changed sellers: the new ones (every entity created by the
   * load has an id over the base's entities: ids count up from 1) and
   * their seller neighbours. */
  new_scan ns = {0};
  u64vec changed = {0};
  uint64_t *placed = NULL, *before = NULL;
  assign a0 = {0}, a1 = {0};
  cpair *pairs = NULL, *sizes = NULL;
  bench_stats s;
  bool ok = bench_stats_get(cfg, rd->c, &s);
  uint64_t want = ok && s.entities > base0 ? s.entities - base0 : 0;
  for (uint64_t from = base0 + 1, span; ok && ns.entities < want; from += span) {
    uint64_t found = ns.entities;
    span = want - found < SCAN_MIN ? SCAN_MIN : want - found > SCAN_MAX ? SCAN_MAX : want - found;
    Graphd__V1__GetEntitiesRequest req = GRAPHD__V1__GET_ENTITIES_REQUEST__INIT;
    uint64_t *ids = xmalloc(span * sizeof *ids);
    for (uint64_t i = 0; i < span; i++)
      ids[i] = from + i;
    req.ids = ids;
    req.n_ids = span;
    ok = stream_each(cfg, rd->c, SVC "GetEntities", &req.base,
                     &graphd__v1__entity_batch__descriptor, scan_add, &ns, label);
    free(ids);
    if (ok && ns.entities == found) {
      anomaly("%s: no entity with an id in %" PRIu64 "..%" PRIu64 ": %" PRIu64 " of the %" PRIu64
              " entities the load created found", label, from, from + span - 1, found, want);
      ok = false;
    }
  }
  if (ok && ns.sellers.n != new_sellers) {
    anomaly("%s: %zu new sellers found over id %" PRIu64 ", %zu held back", label, ns.sellers.n,
            base0, new_sellers);
    ok = false;
  }
  for (size_t i = 0; ok && i < ns.sellers.n; i++)
    u64vec_push(&changed, ns.sellers.v[i]);
  for (size_t i = 0; ok && i < ns.linked.n; i++) {
    char what[48], *tok = NULL;
    snprintf(what, sizeof what, "seller %" PRIu64, ns.linked.v[i]);
    do {
      Graphd__V1__NeighborsReply *rep =
          seller_neighbors(cfg, rd->c, ns.linked.v[i], 0, NULL, 1000, tok, what);
      free(tok);
      tok = NULL;
      if (!rep) {
        ok = false;
        break;
      }
      for (size_t k = 0; k < rep->n_neighbors; k++)
        u64vec_push(&changed, rep->neighbors[k]->entity->id);
      if (rep->next_page_token && *rep->next_page_token)
        tok = xstrdup(rep->next_page_token);
      graphd__v1__neighbors_reply__free_unpacked(rep, NULL);
    } while (tok);
  }
  size_t n = 0;
  if (changed.n)
    qsort(changed.v, changed.n, sizeof *changed.v, cmp_u64);
  for (size_t i = 0; i < changed.n; i++)
    if (!n || changed.v[i] != changed.v[n - 1])
      changed.v[n++] = changed.v[i];

  /* 2. Their placements (provisional, else the snapshot's cluster), and
   * the snapshot's cluster alone: the guess without placement. */
  placed = xcalloc(n ? n : 1, sizeof *placed);
  before = xcalloc(n ? n : 1, sizeof *before);
  for (size_t i = 0; ok && i < n; i++) {
    gc_status st;
    Graphd__V1__Entity *e = entity_get_ref(cfg, rd->c, changed.v[i], 0, NULL, &st);
    if (!e) {
      anomaly("%s: GetEntity(id %" PRIu64 ") failed: %s: %s", label, changed.v[i],
              gc_status_code_name(st.code), st.message);
      ok = false;
      break;
    }
    before[i] = e->cluster_id;
    placed[i] = e->provisional ? e->provisional->cluster_id : e->cluster_id;
    ret->unplaced += !e->provisional;
    graphd__v1__entity__free_unpacked(e, NULL);
  }
  ret->lookup_s = (double)(now_ns() - t0) / 1e9;

  /* 3. The next full run, matched against the base snapshot. */
  if (ok) {
    char name[32];
    snprintf(name, sizeof name, "place-next-%d", r + 1);
    fprintf(stderr, "graphd-bench: place %d: %zu changed sellers looked up in %.2f s; "
            "clustering (default spec)...\n", r + 1, n, ret->lookup_s);
    bench_job job;
    ok = bench_job_run(cfg, rd->c, &rd->dp, label, name, GRAPHD__V1__WARM_START__WARM_START_AUTO,
                       &job);
    ret->snapshot = job.snapshot_id;
    ret->job_s = job.wall_s;
  }
  bench_manifest man;
  if (ok && (ok = bench_snapshot_read(cfg, rd->c, ret->snapshot, label, &man)) &&
      man.previous != snap0) {
    anomaly("%s: snapshot %" PRIu64 " matched its ids against snapshot %" PRIu64 ", not the "
            "base's %" PRIu64, label, ret->snapshot, man.previous, snap0);
    ok = false;
  }
  ok = ok && assign_read(cfg, rd->c, snap0, label, &a0) &&
       assign_read(cfg, rd->c, ret->snapshot, label, &a1);

  /* 4. Compared. pairs: (base cluster, new cluster) of every seller in
   * both; sizes: (new cluster, 0) of every seller of the new run. */
  if (ok) {
    size_t np = 0;
    pairs = xmalloc((a1.seller.n ? a1.seller.n : 1) * sizeof *pairs);
    sizes = xmalloc((a1.seller.n ? a1.seller.n : 1) * sizeof *sizes);
    for (size_t i = 0, j = 0; i < a1.seller.n; i++) {
      sizes[i] = (cpair){a1.cluster.v[i], 0};
      while (j < a0.seller.n && a0.seller.v[j] < a1.seller.v[i])
        j++;
      if (j < a0.seller.n && a0.seller.v[j] == a1.seller.v[i])
        pairs[np++] = (cpair){a0.cluster.v[j], a1.cluster.v[i]};
    }
    qsort(pairs, np, sizeof *pairs, cmp_cpair);
    qsort(sizes, a1.seller.n, sizeof *sizes, cmp_cpair);
    for (size_t i = 0; i < n; i++) {
      uint64_t now = assign_get(&a1, changed.v[i]), was = assign_get(&a0, changed.v[i]);
      size_t size = now ? cpair_count(sizes, a1.seller.n, (cpair){now, 0}) : 1;
      bool agree[2][2]; /* [placement, base][strict, co-membership] */
      for (int g = 0; g < 2; g++) {
        uint64_t guess = g == 0 ? placed[i] : before[i];
        bool strict = guess == now || (guess == 0 && size == 1);
        /* The next run split the placed cluster: the seller still sits
         * with members placement put it with (the part that got a fresh
         * id), so its placement was right. */
        bool with = !strict && guess && now &&
                    cpair_count(pairs, np, (cpair){guess, now}) > (was == guess ? 1u : 0u);
        agree[g][0] = strict;
        agree[g][1] = strict || with;
      }
      ret->strict += agree[0][0];
      ret->comember += agree[0][1];
      ret->base_strict += agree[1][0];
      ret->base_comember += agree[1][1];
      ret->base_wrong += !agree[1][1];
      ret->fixed += !agree[1][1] && agree[0][1];
    }
    ret->changed = n;
    ret->new_sellers = ns.sellers.n;
    if (!n) {
      anomaly("%s: no changed sellers to compare", label);
      ok = false;
    }
  }
  ret->ok = ok;
  fprintf(stderr, "graphd-bench: place %d: agreement with the next run (snapshot %" PRIu64
          ", job %.1f s): %" PRIu64 " of %zu changed sellers strict, %" PRIu64 " co-membership; "
          "without placement %" PRIu64 " / %" PRIu64 "%s\n", r + 1, ret->snapshot, ret->job_s,
          ret->strict, n, ret->comember, ret->base_strict, ret->base_comember,
          ok ? "" : " FAILED");
  free(ns.sellers.v), free(ns.linked.v), free(changed.v);
  free(placed), free(before), free(pairs), free(sizes);
  assign_free(&a0), assign_free(&a1);
}

/* ---- (b) throughput -------------------------------------------------------------- */

typedef struct tp_run {
  bool ok;
  double seconds, links_per_s;
  uint64_t records;
  double queued_at_reply, queued_max, drain_s;
  double placements, alerts, shed;
  double commits_ingest, commits_drain; /* write transactions: Ingest call, then the drain */
  double srv_p50, srv_p99, srv_mean;    /* ms: graphd_placement_latency_seconds over the run */
  double cpu_ingest_s, cpu_drain_s;
} tp_run;

/* ag (placement on only; NULL: none): then the agreement of the
 * placements with the next full run (snap: the base's snapshot). */
static void run_throughput(const bench_cfg *cfg, const char *dir, const char *base, int r,
                           int kind, const dataset *d, size_t first, size_t n,
                           size_t new_sellers, uint64_t snap, tp_run *ret, agree_run *ag) {
  memset(ret, 0, sizeof *ret);
  if (ag) {
    memset(ag, 0, sizeof *ag);
    ag->lookup_s = ag->job_s = NAN;
  }
  ret->seconds = ret->links_per_s = ret->drain_s = ret->queued_at_reply = ret->queued_max = NAN;
  ret->placements = ret->alerts = ret->shed = ret->cpu_ingest_s = ret->cpu_drain_s = NAN;
  ret->commits_ingest = ret->commits_drain = NAN;
  ret->srv_p50 = ret->srv_p99 = ret->srv_mean = NAN;
  char *data = xasprintf("%s/write-%s-%d", dir, tp_names[kind], r + 1);
  char *log = xasprintf("%s/graphd-write-%s-%d.log", dir, tp_names[kind], r + 1);
  copy_dir(base, data);
  static const char *const on_args[] = {"--metrics-listen", "127.0.0.1:0", NULL};
  static const char *const off_args[] = {"--metrics-listen", "127.0.0.1:0", "--placement-queue",
                                         "0", NULL};
  run_daemon rd;
  fprintf(stderr, "graphd-bench: place %d/%d: write load, placement %s: starting graphd\n", r + 1,
          cfg->repeat, tp_names[kind]);
  if (!rd_start(cfg, data, log, &rd, kind == OFF ? off_args : on_args)) {
    rm_rf(data);
    free(data), free(log);
    return;
  }
  bool ok = true;
  double ds;
  bench_stats s0 = {0}, s1 = {0}, sr = {0};
  phist h0 = {0}, h1 = {0};
  int port = bench_log_port(log, "metrics on ");
  if (!port) {
    anomaly("place %d: no 'metrics on HOST:PORT' line in %s", r + 1, log);
    ok = false;
  }
  ok = ok && bench_wait_drained(cfg, rd.c, now_ns(), &ds, NULL) && scrape(port, &h0) &&
       bench_stats_get(cfg, rd.c, &s0);
  if (ok) {
    /* WRITE_CALLS successive Ingest calls, each durable before the next
     * starts: the placer works on one call's sellers while the next is
     * written. */
    char label[48];
    snprintf(label, sizeof label, "place %d (%s)", r + 1, tp_names[kind]);
    uint64_t qmax = 0;
    double cpu0 = proc_cpu_s(rd.dp.pid);
    int64_t t0 = now_ns();
    for (int k = 0; k < WRITE_CALLS && ok; k++) {
      size_t a = n * (size_t)k / WRITE_CALLS, b = n * (size_t)(k + 1) / WRITE_CALLS;
      double secs;
      uint64_t recs = 0;
      if (b == a)
        continue;
      ok &= bench_ingest_range(cfg, rd.c, d, first + a, b - a, label, "", &secs, &recs);
      ret->records += recs;
      bench_stats q;
      ok = ok && bench_stats_get(cfg, rd.c, &q);
      if (ok && q.queued > qmax)
        qmax = q.queued;
    }
    int64_t t_reply = now_ns();
    double cpu1 = proc_cpu_s(rd.dp.pid);
    ret->seconds = (double)(t_reply - t0) / 1e9;
    ret->cpu_ingest_s = cpu1 - cpu0;
    if (ok) {
      ret->links_per_s = (double)n / ret->seconds;
      uint64_t mx = 0;
      ok = bench_stats_get(cfg, rd.c, &sr) && bench_wait_drained(cfg, rd.c, t_reply, &ret->drain_s, &mx);
      ret->queued_at_reply = (double)sr.queued;
      ret->queued_max = (double)(qmax > sr.queued ? qmax : sr.queued);
      ret->cpu_drain_s = proc_cpu_s(rd.dp.pid) - cpu1;
    }
    ok = ok && bench_stats_get(cfg, rd.c, &s1) && scrape(port, &h1);
  }
  if (ok) {
    ret->placements = (double)(s1.placements - s0.placements);
    ret->alerts = (double)(s1.alerts - s0.alerts);
    ret->shed = (double)(s1.shed - s0.shed);
    /* The Stats calls commit nothing (--no-audit). */
    ret->commits_ingest = (double)(sr.commits - s0.commits);
    ret->commits_drain = (double)(s1.commits - sr.commits);
    double cnt = h1.count - h0.count;
    if (cnt > 0) {
      ret->srv_p50 = hist_quantile(&h0, &h1, 0.5) * 1e3;
      ret->srv_p99 = hist_quantile(&h0, &h1, 0.99) * 1e3;
      ret->srv_mean = (h1.sum - h0.sum) / cnt * 1e3;
    }
    if (kind == OFF && (s1.placements || s1.shed || s1.alerts || ret->queued_max > 0)) {
      anomaly("place %d: with --placement-queue 0 the daemon placed %" PRIu64 ", shed %" PRIu64
              ", alerted %" PRIu64 " and queued up to %.0f", r + 1, s1.placements, s1.shed,
              s1.alerts, ret->queued_max);
      ok = false;
    }
    if (kind == ON && ret->placements + ret->shed < (double)new_sellers) {
      anomaly("place %d: with placement on, %.0f placements and %.0f shed marks for %zu new "
              "sellers", r + 1, ret->placements, ret->shed, new_sellers);
      ok = false;
    }
  }
  if (ok && ag)
    run_agreement(cfg, &rd, s0.entities, snap, r, new_sellers, ag);
  ok &= rd_stop(cfg, &rd, "during the write load");
  ret->ok = ok;
  if (ag)
    ag->ok &= ok;
  fprintf(stderr, "graphd-bench: place %d: placement %s: %zu records in %.3f s, %.0f links/s; "
          "queued at most %.0f, %.0f at the last reply, drained %.3f s after it; %.0f "
          "placements, %.0f shed%s\n",
          r + 1, tp_names[kind], n, ret->seconds, ret->links_per_s, ret->queued_max,
          ret->queued_at_reply, ret->drain_s, ret->placements, ret->shed, ok ? "" : " FAILED");
  if (!cfg->keep)
    rm_rf(data);
  free(data), free(log);
}

/* ---- the report ------------------------------------------------------------------ */

typedef struct place_report {
  int n;
  lat_run lat[MAX_REPEAT];
  tp_run tp[MAX_REPEAT][2];
  double ratio[MAX_REPEAT];
  agree_run ag[MAX_REPEAT];
} place_report;

/* A figure of repeat r: of its latency run (LF: k unused) or of its write
 * load with placement k (TF: ON / OFF); NAN when that run failed. */
typedef double (*place_field)(const place_report *rep, int r, int k);
#define LF(name, expr)                                                   \
  static double name(const place_report *rep, int r, int k) {            \
    const lat_run *x = &rep->lat[r];                                     \
    (void)k;                                                             \
    return x->ok ? (expr) : NAN;                                         \
  }
#define TF(name, expr)                                                   \
  static double name(const place_report *rep, int r, int k) {            \
    const tp_run *x = &rep->tp[r][k];                                    \
    return x->ok ? (expr) : NAN;                                         \
  }
#define AF(name, expr)                                                   \
  static double name(const place_report *rep, int r, int k) {            \
    const agree_run *x = &rep->ag[r];                                    \
    (void)k;                                                             \
    return x->ok ? (expr) : NAN;                                         \
  }
LF(lf_alert50, x->alert_p50)
LF(lf_alert99, x->alert_p99)
LF(lf_alertmax, x->alert_max)
LF(lf_alertmean, x->alert_mean)
LF(lf_rtt50, x->rtt_p50)
LF(lf_rtt99, x->rtt_p99)
LF(lf_srv50, x->srv_p50)
LF(lf_srv99, x->srv_p99)
LF(lf_srvmean, x->srv_mean)
LF(lf_srvcount, x->srv_count)
LF(lf_alerted, (double)x->alerted)
LF(lf_alone, (double)x->alone)
LF(lf_placements, x->placements)
LF(lf_alerts, x->alerts)
LF(lf_cpu, x->daemon_cpu_s)
LF(lf_other, (double)x->other_cluster)
LF(lf_late, (double)x->late)
TF(tf_rate, x->links_per_s)
TF(tf_secs, x->seconds)
TF(tf_qreply, x->queued_at_reply)
TF(tf_qmax, x->queued_max)
TF(tf_drain, x->drain_s)
TF(tf_place, x->placements)
TF(tf_alerts, x->alerts)
TF(tf_shed, x->shed)
TF(tf_cpu_in, x->cpu_ingest_s)
TF(tf_cpu_dr, x->cpu_drain_s)
TF(tf_com_in, x->commits_ingest)
TF(tf_com_dr, x->commits_drain)
TF(tf_srv50, x->srv_p50)
TF(tf_srv99, x->srv_p99)
TF(tf_srvmean, x->srv_mean)
AF(af_changed, (double)x->changed)
AF(af_new, (double)x->new_sellers)
AF(af_existing, (double)(x->changed - x->new_sellers))
AF(af_unplaced, (double)x->unplaced)
AF(af_strict, (double)x->strict / (double)x->changed)
AF(af_comember, (double)x->comember / (double)x->changed)
AF(af_base_strict, (double)x->base_strict / (double)x->changed)
AF(af_base_comember, (double)x->base_comember / (double)x->changed)
AF(af_base_wrong, (double)x->base_wrong)
AF(af_fixed, (double)x->fixed)
AF(af_lookup, x->lookup_s)
AF(af_job, x->job_s)

/* The median over the repeats of a figure (k: as for place_field), and
 * its values per repeat. */
static double tmed(const place_report *rep, int k, place_field f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->n; r++)
    v[r] = f(rep, r, k);
  return median(v, rep->n);
}

static json_object *tarr(const place_report *rep, int k, place_field f) {
  json_object *a = json_object_new_array();
  for (int r = 0; r < rep->n; r++)
    json_object_array_add(a, jnum(f(rep, r, k)));
  return a;
}

/* The same for a latency or an agreement figure. */
static double lmed(const place_report *rep, place_field f) { return tmed(rep, 0, f); }
static json_object *larr(const place_report *rep, place_field f) { return tarr(rep, 0, f); }

/* ---- the mode ------------------------------------------------------------------ */

json_object *bench_place(const bench_cfg *cfg, const char *workroot, dataset *d,
                         const char *links_path, bool *ret_ok) {
  json_object *j = json_object_new_object();
  *ret_ok = false;
  bool ok = true;
  char *dir0 = xasprintf("%s/place", workroot);
  if (mkdir(dir0, 0755) != 0)
    die("mkdir %s: %s", dir0, strerror(errno));
  char *dir = realpath(dir0, NULL); /* Backup wants an absolute path */
  if (!dir)
    die("realpath %s: %s", dir0, strerror(errno));
  free(dir0);
  char *prep_data = xasprintf("%s/prep-data", dir), *prep_log = xasprintf("%s/graphd-prep.log", dir);
  char *base = xasprintf("%s/base", dir);
  char *ldir = xstrdup(links_path);
  char *slash = strrchr(ldir, '/');
  char *rings = slash ? (*slash = '\0', xasprintf("%s/rings.csv", ldir)) : xstrdup("rings.csv");
  free(ldir);

  /* 1. The split. */
  size_t nl = dataset_links(d);
  size_t want = (size_t)((double)nl * HOLD_SHARE);
  if (want > HOLD_MAX)
    want = HOLD_MAX;
  if (want < 1)
    want = 1;
  size_t new_sellers = 0;
  size_t held = dataset_hold_back_sellers(d, want, cfg->seed, &new_sellers);
  if (!held || held >= nl)
    die("place: %zu link records: cannot hold back %zu of them", nl, want);
  size_t cut = nl - held;
  fprintf(stderr, "graphd-bench: place: %zu link records; %zu of them (all links of %zu sellers) "
          "held back for the write load\n", nl, held, new_sellers);

  /* 2. The base. */
  static const char *const prep_args[] = {"--placement-queue", "0", NULL};
  run_daemon rd;
  double ingest_s = NAN, job_s = NAN, backup_s = NAN;
  uint64_t rec = 0, snap = 0, backup_bytes = 0;
  bench_manifest man;
  bench_manifest_clear(&man);
  dev_pick pk = {0};
  if (!rd_start(cfg, prep_data, prep_log, &rd, prep_args)) {
    ok = false;
  } else {
    gc_status st;
    fprintf(stderr, "graphd-bench: place: ingesting %zu link records...\n", cut);
    ok &= bench_ingest_range(cfg, rd.c, d, 0, cut, "place", "", &ingest_s, &rec);
    if (ok) {
      fprintf(stderr, "graphd-bench: place: clustering (default spec)...\n");
      bench_job job;
      ok = bench_job_run(cfg, rd.c, &rd.dp, "place", "place-base",
                         GRAPHD__V1__WARM_START__WARM_START_AUTO, &job);
      snap = job.snapshot_id;
      job_s = job.wall_s;
    }
    if (ok) {
      bench_snapshot_read(cfg, rd.c, snap, "place", &man);
      fprintf(stderr, "graphd-bench: place: snapshot %" PRIu64 " in %.1f s: %" PRIu64
              " sellers, %" PRIu64 " ties, %" PRIu64 " clusters; picking ring devices...\n",
              snap, job_s, man.sellers, man.ties, man.clusters);
      devices_pick(cfg, rd.c, rings, &pk);
      fprintf(stderr, "graphd-bench: place: %zu devices of %zu rings are candidates (of %zu "
              "devices: %zu over the hub cap, %zu with fewer than %d sellers in one cluster)\n",
              pk.n, pk.rings, pk.devices_seen, pk.over_cap, pk.too_few, MIN_DEVICE_USERS);
      if (!pk.n) {
        anomaly("place: no ring device has %d sellers in one cluster of the snapshot: nothing "
                "to measure alerts with", MIN_DEVICE_USERS);
        ok = false;
      }
    }
    if (ok) {
      if (mkdir(base, 0755) != 0)
        die("mkdir %s: %s", base, strerror(errno));
      Graphd__V1__BackupRequest br = GRAPHD__V1__BACKUP_REQUEST__INIT;
      br.path = base;
      Graphd__V1__BackupReply *brep = NULL;
      int64_t t0 = now_ns();
      if (gc_unary(rd.c, SVC "Backup", &br.base, &graphd__v1__backup_reply__descriptor,
                   (ProtobufCMessage **)&brep, &st, 3600000)) {
        anomaly("place: Backup to %s failed: %s: %s", base, gc_status_code_name(st.code),
                st.message);
        ok = false;
      } else {
        backup_s = (double)(now_ns() - t0) / 1e9;
        backup_bytes = brep->bytes;
        graphd__v1__backup_reply__free_unpacked(brep, NULL);
      }
    }
    ok &= rd_stop(cfg, &rd, "while preparing the base");
    if (!cfg->keep)
      rm_rf(prep_data);
  }
  if (ok) {
    fprintf(stderr, "graphd-bench: place: probing the %zu candidate devices...\n", pk.n);
    ok = devices_probe(cfg, dir, base, &pk);
    fprintf(stderr, "graphd-bench: place: %zu devices kept (a probe seller on %zu of the %zu "
            "candidates stayed alone)\n", pk.n, pk.probe_alone, pk.candidates);
    if (ok && !pk.n) {
      anomaly("place: no candidate ring device placed its probe seller in a cluster: nothing "
              "to measure alerts with");
      ok = false;
    }
  }

  /* 3. The repeats. */
  place_report *rep = xcalloc(1, sizeof *rep);
  for (int r = 0; r < cfg->repeat && ok; r++) {
    rep->n = r + 1;
    run_latency(cfg, dir, base, r, &pk, &rep->lat[r]);
    ok &= rep->lat[r].ok;
    bool on_first = r % 2 == 0;
    for (int step = 0; step < 2; step++) {
      int k = (step == 0) == on_first ? ON : OFF;
      run_throughput(cfg, dir, base, r, k, d, cut, held, new_sellers, snap, &rep->tp[r][k],
                     k == ON ? &rep->ag[r] : NULL);
      ok &= rep->tp[r][k].ok && (k == OFF || rep->ag[r].ok);
    }
    const tp_run *on = &rep->tp[r][ON], *off = &rep->tp[r][OFF];
    rep->ratio[r] = on->ok && off->ok ? on->links_per_s / off->links_per_s : NAN;
  }

  /* Report. */
  int n = rep->n;
  int nu = cfg->quick ? 20 : UPSERTS;
  double ratio = median(rep->ratio, n);
  char b1[32], b2[32], b3[32], b4[32];
  printf("\nFRESH CLUSTERS (placement)  %zu link records; the base: %zu of them ingested "
         "(%.2f s), snapshot %" PRIu64 " (%s sellers, %s ties, %s clusters; job %.1f s), "
         "backup %s (%.2f s); median of %d repeat(s)\n",
         nl, cut, ingest_s, snap, fmt_count(b1, sizeof b1, (double)man.sellers),
         fmt_count(b2, sizeof b2, (double)man.ties), fmt_count(b3, sizeof b3, (double)man.clusters),
         job_s, fmt_bytes(b4, sizeof b4, (double)backup_bytes), backup_s, n);
  printf("  1. latency: %d single Upserts a repeat (after %d untimed), one at a time, %d ms "
         "apart, each a new seller on one of %zu ring devices (>= %d of its sellers in one "
         "cluster, a probe seller placed in a cluster), WatchAlerts from_now; daemon: default "
         "placement queue, --no-audit\n",
         nu, cfg->quick ? 2 : WARMUPS, PAUSE_MS, pk.n, MIN_DEVICE_USERS);
  printf("     %-49s %9s %9s %9s\n", "", "p50 ms", "p99 ms", "mean ms");
  printf("     %-49s %9s %9s %9s\n", "Upsert round trip (the reference)",
         fmtf(b1, sizeof b1, 2, lmed(rep, lf_rtt50)), fmtf(b2, sizeof b2, 2, lmed(rep, lf_rtt99)),
         "");
  printf("     %-49s %9s %9s %9s\n", "Upsert reply -> alert at the client",
         fmtf(b1, sizeof b1, 2, lmed(rep, lf_alert50)),
         fmtf(b2, sizeof b2, 2, lmed(rep, lf_alert99)),
         fmtf(b3, sizeof b3, 2, lmed(rep, lf_alertmean)));
  printf("     %-49s %9s %9s %9s\n", "server: write -> placement committed (histogram)",
         fmtf(b1, sizeof b1, 2, lmed(rep, lf_srv50)), fmtf(b2, sizeof b2, 2, lmed(rep, lf_srv99)),
         fmtf(b3, sizeof b3, 2, lmed(rep, lf_srvmean)));
  printf("     alerts %.0f of %d (placed alone, no alert due: %.0f; alert for another cluster "
         "than the probe's: %.0f); placements counted %.0f, histogram count %.0f; daemon CPU "
         "%.2f s\n",
         lmed(rep, lf_alerted), nu, lmed(rep, lf_alone), lmed(rep, lf_other),
         lmed(rep, lf_placements), lmed(rep, lf_srvcount), lmed(rep, lf_cpu));
  printf("     (server p50/p99 interpolated within the histogram's buckets: 1, 2.5, 5, 10, 25, "
         "50 ms ...)\n");
  printf("     per repeat, reply -> alert p50/p99/max ms:");
  for (int r = 0; r < n; r++)
    printf(" %.2f/%.2f/%.1f", lf_alert50(rep, r, 0), lf_alert99(rep, r, 0),
           lf_alertmax(rep, r, 0));
  printf("; Upsert p50/p99 ms:");
  for (int r = 0; r < n; r++)
    printf(" %.2f/%.2f", lf_rtt50(rep, r, 0), lf_rtt99(rep, r, 0));
  printf("\n");
  printf("  2. write load: %zu link records (all links of %zu new sellers, tied to entities "
         "of the base) in %d successive Ingest calls, %zu links a message; placement on "
         "(default queue) vs off (--placement-queue 0), alternating\n",
         held, new_sellers, WRITE_CALLS, cfg->batch);
  printf("     %-4s %10s %7s %9s %8s %8s %8s %10s %8s %6s %8s\n", "", "links/s", "load s",
         "daemon CPU", "commits", "queued", "at end", "drain s", "placed", "alerts", "shed");
  for (int k = 0; k < 2; k++) {
    char c1[32], c2[32], c3[32], c4[32], c5[32], c6[32], c7[32];
    printf("     %-4s %10s %7.3f %9.2fs %8.0f %8s %8s %10s %8s %6s %8s\n", tp_names[k],
           fmt_count(c1, sizeof c1, tmed(rep, k, tf_rate)), tmed(rep, k, tf_secs),
           tmed(rep, k, tf_cpu_in), tmed(rep, k, tf_com_in),
           fmt_count(c7, sizeof c7, tmed(rep, k, tf_qmax)),
           fmt_count(c2, sizeof c2, tmed(rep, k, tf_qreply)),
           fmtf(c3, sizeof c3, 3, tmed(rep, k, tf_drain)),
           fmt_count(c4, sizeof c4, tmed(rep, k, tf_place)),
           fmt_count(c5, sizeof c5, tmed(rep, k, tf_alerts)),
           fmt_count(c6, sizeof c6, tmed(rep, k, tf_shed)));
  }
  printf("     (commits: write transactions during the load, the placer's included; queued: "
         "the most seen after a call, at end: after the last)\n");
  printf("     ratio on/off links/s: %s (median of per-repeat ratios; target >= %.2f: %s); "
         "per repeat:", fmtf(b1, sizeof b1, 3, ratio), TARGET_RATIO,
         met(ratio >= TARGET_RATIO, ratio));
  for (int r = 0; r < n; r++)
    printf(" %.3f", rep->ratio[r]);
  printf("\n     per repeat links/s on/off:");
  for (int r = 0; r < n; r++)
    printf(" %s/%s", fmt_count(b1, sizeof b1, tf_rate(rep, r, ON)),
           fmt_count(b2, sizeof b2, tf_rate(rep, r, OFF)));
  printf("; drain s:");
  for (int r = 0; r < n; r++)
    printf(" %.3f", tf_drain(rep, r, ON));
  printf("\n     after the load, while the queue drained (on): %.0f commits, daemon CPU %.2f "
         "s, %s placements/s\n",
         tmed(rep, ON, tf_com_dr), tmed(rep, ON, tf_cpu_dr),
         fmt_count(b1, sizeof b1, tmed(rep, ON, tf_qreply) / tmed(rep, ON, tf_drain)));
  printf("     placement latency under this load (on; server histogram, write -> placement "
         "committed): p50 %s ms, p99 %s ms, mean %s ms\n",
         fmtf(b1, sizeof b1, 1, tmed(rep, ON, tf_srv50)),
         fmtf(b2, sizeof b2, 1, tmed(rep, ON, tf_srv99)),
         fmtf(b3, sizeof b3, 1, tmed(rep, ON, tf_srvmean)));
  double strict = lmed(rep, af_strict), comember = lmed(rep, af_comember);
  printf("  3. agreement with the next full run: in 2.'s placement-on daemon after the drain, "
         "each changed seller (%.0f: the seller endpoints of the held-back records, %.0f new, "
         "%.0f of the base) as placed (GetEntity: provisional, else the snapshot's cluster), "
         "then one clustering job (default spec, ids matched against snapshot %" PRIu64
         "; %.1f s) and each seller's cluster in its snapshot (StreamAssignments of both)\n",
         lmed(rep, af_changed), lmed(rep, af_new), lmed(rep, af_existing), snap,
         lmed(rep, af_job));
  printf("     %-58s %9s %9s\n", "", "placement", "without");
  printf("     %-58s %8s%% %8s%%\n", "strict: the same cluster id, or alone and a singleton",
         fmtf(b1, sizeof b1, 1, 100 * strict), fmtf(b2, sizeof b2, 1, 100 * lmed(rep, af_base_strict)));
  printf("     %-58s %8s%% %8s%%\n", "co-membership: strict, or with a seller placed with it",
         fmtf(b1, sizeof b1, 1, 100 * comember),
         fmtf(b2, sizeof b2, 1, 100 * lmed(rep, af_base_comember)));
  printf("     (without: the base snapshot's cluster as the guess, none for a new seller)\n");
  printf("     target >= %.0f%%: co-membership %s, strict %s; of the %.0f sellers the snapshot "
         "alone got wrong (co-membership), placement got %.0f right; no provisional placement (kept "
         "their snapshot cluster): %.0f; lookups "
         "%.2f s\n",
         100 * TARGET_AGREE, met(comember >= TARGET_AGREE, comember),
         met(strict >= TARGET_AGREE, strict), lmed(rep, af_base_wrong), lmed(rep, af_fixed),
         lmed(rep, af_unplaced), lmed(rep, af_lookup));
  printf("     per repeat, strict/co-membership %% placement (without):");
  for (int r = 0; r < n; r++)
    printf(" %s/%s (%s/%s)", fmtf(b1, sizeof b1, 1, 100 * af_strict(rep, r, 0)),
           fmtf(b2, sizeof b2, 1, 100 * af_comember(rep, r, 0)),
           fmtf(b3, sizeof b3, 1, 100 * af_base_strict(rep, r, 0)),
           fmtf(b4, sizeof b4, 1, 100 * af_base_comember(rep, r, 0)));
  printf("; wrong without / right with placement:");
  for (int r = 0; r < n; r++)
    printf(" %.0f/%.0f", af_base_wrong(rep, r, 0), af_fixed(rep, r, 0));
  printf("\n");

  /* JSON */
  jput(j, "repeats", json_object_new_int(n));
  jput(j, "link_records", json_object_new_uint64(nl));
  jput(j, "base_link_records", json_object_new_uint64(cut));
  jput(j, "held_back_records", json_object_new_uint64(held));
  jput(j, "held_back_sellers", json_object_new_uint64(new_sellers));
  jput(j, "base_ingest_s", jnum(ingest_s));
  jput(j, "snapshot_id", json_object_new_uint64(snap));
  jput(j, "snapshot_sellers", json_object_new_uint64(man.sellers));
  jput(j, "snapshot_ties", json_object_new_uint64(man.ties));
  jput(j, "snapshot_clusters", json_object_new_uint64(man.clusters));
  jput(j, "job_s", jnum(job_s));
  jput(j, "backup_bytes", json_object_new_uint64(backup_bytes));
  jput(j, "backup_s", jnum(backup_s));
  jput(j, "ring_device_candidates", json_object_new_uint64(pk.candidates));
  jput(j, "ring_device_probes_alone", json_object_new_uint64(pk.probe_alone));
  jput(j, "ring_devices", json_object_new_uint64(pk.n));
  json_object *jl = json_object_new_object();
  jput(jl, "upserts", json_object_new_int(nu));
  jput(jl, "pause_ms", json_object_new_int(PAUSE_MS));
  jput(jl, "upsert_rtt_p50_ms", jnum(lmed(rep, lf_rtt50)));
  jput(jl, "upsert_rtt_p99_ms", jnum(lmed(rep, lf_rtt99)));
  jput(jl, "alert_p50_ms", jnum(lmed(rep, lf_alert50)));
  jput(jl, "alert_p99_ms", jnum(lmed(rep, lf_alert99)));
  jput(jl, "alert_mean_ms", jnum(lmed(rep, lf_alertmean)));
  jput(jl, "server_p50_ms", jnum(lmed(rep, lf_srv50)));
  jput(jl, "server_p99_ms", jnum(lmed(rep, lf_srv99)));
  jput(jl, "server_mean_ms", jnum(lmed(rep, lf_srvmean)));
  jput(jl, "alert_p50_ms_per_repeat", larr(rep, lf_alert50));
  jput(jl, "alert_p99_ms_per_repeat", larr(rep, lf_alert99));
  jput(jl, "alert_max_ms_per_repeat", larr(rep, lf_alertmax));
  jput(jl, "upsert_rtt_p50_ms_per_repeat", larr(rep, lf_rtt50));
  jput(jl, "upsert_rtt_p99_ms_per_repeat", larr(rep, lf_rtt99));
  jput(jl, "server_p50_ms_per_repeat", larr(rep, lf_srv50));
  jput(jl, "server_p99_ms_per_repeat", larr(rep, lf_srv99));
  jput(jl, "server_count_per_repeat", larr(rep, lf_srvcount));
  jput(jl, "alerts_per_repeat", larr(rep, lf_alerted));
  jput(jl, "placed_alone_per_repeat", larr(rep, lf_alone));
  jput(jl, "late_per_repeat", larr(rep, lf_late));
  jput(jl, "other_cluster_per_repeat", larr(rep, lf_other));
  jput(jl, "placements_per_repeat", larr(rep, lf_placements));
  jput(jl, "alerts_counted_per_repeat", larr(rep, lf_alerts));
  jput(j, "latency", jl);
  json_object *jt = json_object_new_object();
  jput(jt, "order", json_object_new_string("alternating: on first on odd-numbered repeats"));
  jput(jt, "batch", json_object_new_uint64(cfg->batch));
  jput(jt, "ingest_calls", json_object_new_int(WRITE_CALLS));
  for (int k = 0; k < 2; k++) {
    json_object *o = json_object_new_object();
    jput(o, "links_per_s_median", jnum(tmed(rep, k, tf_rate)));
    jput(o, "links_per_s", tarr(rep, k, tf_rate));
    jput(o, "ingest_s", tarr(rep, k, tf_secs));
    jput(o, "daemon_cpu_ingest_s", tarr(rep, k, tf_cpu_in));
    jput(o, "queued_at_reply", tarr(rep, k, tf_qreply));
    jput(o, "queued_max", tarr(rep, k, tf_qmax));
    jput(o, "drain_s", tarr(rep, k, tf_drain));
    jput(o, "daemon_cpu_drain_s", tarr(rep, k, tf_cpu_dr));
    jput(o, "placements", tarr(rep, k, tf_place));
    jput(o, "alerts", tarr(rep, k, tf_alerts));
    jput(o, "shed", tarr(rep, k, tf_shed));
    jput(o, "commits_ingest", tarr(rep, k, tf_com_in));
    jput(o, "commits_drain", tarr(rep, k, tf_com_dr));
    jput(o, "placement_latency_p50_ms", tarr(rep, k, tf_srv50));
    jput(o, "placement_latency_p99_ms", tarr(rep, k, tf_srv99));
    jput(o, "placement_latency_mean_ms", tarr(rep, k, tf_srvmean));
    jput(jt, tp_names[k], o);
  }
  jput(jt, "ratio_on_over_off", jnum(ratio));
  jput(jt, "ratio_on_over_off_per_repeat", jdouble_array(rep->ratio, n));
  jput(jt, "target", jtarget("min", TARGET_RATIO, ratio, ratio >= TARGET_RATIO));
  jput(j, "throughput", jt);
  /* Each agreement figure: its median as NAME, its values as NAME_per_repeat. */
  static const struct {
    const char *name;
    place_field f;
  } afig[] = {
      {"strict", af_strict},
      {"co_membership", af_comember},
      {"without_placement_strict", af_base_strict},
      {"without_placement_co_membership", af_base_comember},
      {"changed_sellers", af_changed},
      {"new_sellers", af_new},
      {"existing_sellers", af_existing},
      {"wrong_without_placement", af_base_wrong},
      {"of_them_right_with_placement", af_fixed},
      {"no_provisional", af_unplaced},
      {"lookup_s", af_lookup},
      {"job_s", af_job},
  };
  json_object *ja = json_object_new_object();
  for (size_t i = 0; i < sizeof afig / sizeof afig[0]; i++) {
    char key[80];
    jput(ja, afig[i].name, jnum(lmed(rep, afig[i].f)));
    snprintf(key, sizeof key, "%s_per_repeat", afig[i].name);
    jput(ja, key, larr(rep, afig[i].f));
  }
  jput(ja, "target_co_membership",
       jtarget("min", TARGET_AGREE, comember, comember >= TARGET_AGREE));
  jput(ja, "target_strict", jtarget("min", TARGET_AGREE, strict, strict >= TARGET_AGREE));
  jput(j, "agreement", ja);
  jput(j, "ok", json_object_new_boolean(ok));

  /* The copies go; the logs stay (main removes the work dir when all went
   * well, and keeps it for inspection otherwise). */
  if (!cfg->keep)
    rm_rf(base);
  devices_free(&pk);
  free(rep);
  free(dir), free(prep_data), free(prep_log), free(base), free(rings);
  *ret_ok = ok;
  return j;
}
