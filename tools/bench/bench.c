/*
 * graphd-bench: measures graphd against references taken in the same run.
 *
 * The machines this runs on are small (2 cores), shared and noisy, so every
 * figure is the median over --repeat interleaved runs, and each graphd
 * figure is paired with a reference measured right next to it; ratios are
 * the median of the per-repeat ratios (paired, so slow drift of the machine
 * cancels out), with the ratio of the medians also in the JSON.
 *
 * Usage
 *   graphd-bench ingest (--links FILE.csv | --sellers N [--seed S])
 *                [--repeat 3] [--batch 10000] [--keep]
 *   graphd-bench read (--addr HOST:PORT | --data DIR) --keys-from FILE.csv
 *                [--client async|sync|both] [--client-threads 1]
 *                [--concurrency-list 1,16 | --concurrency C] [--duration 5]
 *                [--repeat 3] [--sample 10000] [--limit 100] [--conn own|shared]
 *                [--rpcs health,get,neighbors,linked1,linked2,paths] [--truth FILE|none]
 *   graphd-bench all --sellers N [--seed S] [ingest and read options]
 *   graphd-bench cluster [--sellers N (default 1000000) | --links FILE.csv]
 *                [--seed S] [--repeat 3] [--python /usr/bin/python3]
 *                [--leiden-ref PATH] [--job-timeout-ms 3600000]
 *   graphd-bench security [--sellers N (default 200000) | --links FILE.csv]
 *                [--seed S] [--repeat 3] [--duration 5] [--concurrency-list 1,16]
 *                [--configs plain,tls,auth,auth+audit,tls+auth+audit|all]
 *                [--rpcs health,get] [--client async|sync|both] [--openssl PATH]
 *   graphd-bench metrics [--sellers N (default 200000) | --links FILE.csv]
 *                [--seed S] [--repeat 3] [--duration 5] [--concurrency-list 1,16]
 *                [--rpcs health,get] [--scrape-ms 1000]
 *   graphd-bench gateway [--sellers N (default 200000) | --links FILE.csv]
 *                [--seed S] [--repeat 3] [--duration 5]
 *   graphd-bench warm [--sellers N (default 200000) | --links FILE.csv]
 *                [--seed S] [--repeat 3] [--job-timeout-ms 3600000]
 *   graphd-bench place [--sellers N (default 200000) | --links FILE.csv]
 *                [--seed S] [--repeat 5] [--batch 10000] [--job-timeout-ms 3600000]
 *   Common: --graphd PATH --sellergen PATH --workdir DIR --graphd-arg ARG
 *           (repeatable, passed to every spawned daemon) --sellergen-arg ARG
 *           (repeatable, passed to sellergen, e.g. --sellergen-arg=--ring-fraction
 *           --sellergen-arg=0.25) --quick --keep
 *   --quick: 5000 sellers, batch 2000, 1 repeat, 1 s per read measurement
 *   (also for cluster and security; any of these given explicitly wins).
 *
 * Ingest
 *   The links file is parsed once (tools/common ingest parser), every key
 *   interned, and the batches built twice up front: as UpsertRequest
 *   messages for gRPC and as gd_upsert structs (keys normalised with
 *   gd_key_normalize) for the store. Each repeat then runs, in alternating
 *   order (reference first in repeats 1, 3, ..., graphd first in 2, 4, ...):
 *   (a) REFERENCE: a fresh store in a temp dir, gd_store_open +
 *       gd_writer_start, one gd_write_op per batch calling gd_store_upsert,
 *       all submitted at once; timed from the first submit to the last done
 *       callback. This is the store's durable write rate for the same data,
 *       without gRPC, protobuf or validation. Each op is queued as graphd
 *       queues an Ingest message: bulk (gd_write_op.bulk), charged the bytes
 *       graphd charges for the same message (decoded + wire), so the writer
 *       groups them alike. Submitted at once, the ops fill groups to
 *       GD_WRITER_GROUP_BYTES; --ref-window N keeps at most N queued
 *       (refilled from the done callbacks) to mimic graphd's Ingest window
 *       and see how much of a gap is commit grouping. The CPU time of this
 *       process over the timed part (the writer thread) is reported too.
 *   (b) GRAPHD: `graphd --data TMP --listen 127.0.0.1:0`, all batches
 *       streamed through Ingest with gc_stream (write coalescing on), timed
 *       from the first send to the reply (which means durable). The reply is
 *       checked: messages == batches, duplicates == 0, links_created ==
 *       distinct links (unordered pairs after key normalisation),
 *       links_created + links_updated == link records sent (graphd.proto,
 *       WriteTotals), entities_created == distinct entities, and all equal
 *       to the reference's totals; Stats must count the same links. Then
 *       VmHWM is read from /proc, the daemon gets SIGTERM and must exit 0.
 *   Both report their writer thread (the thread named gd-writer, in this
 *   process or the daemon): its CPU time over the timed part, per link
 *   record, and the time it was runnable but waited for a core
 *   (/proc/PID/task/TID/schedstat). The rate moves with everything else on
 *   a shared machine; the writer's CPU per link record much less.
 *   Daemon start-up and shutdown are timed but not part of the rate.
 *
 * Read
 *   Seller keys are sampled (seeded by --seed) from the links file. A
 *   measurement point is a client mode at a number of calls in flight (each
 *   --client mode at each --concurrency-list value, default 1 and 16: the
 *   latency of a lone caller and the throughput under load). Each repeat
 *   measures every point, and at each point, in this order, the rpcs of
 *   --rpcs (default all):
 *     health     Health/Check, the floor: a gRPC round trip touching no data
 *     get        GetEntity(SELLER, key): the reference for single-row reads
 *     neighbors  Neighbors(SELLER, key, limit)
 *     linked1    LinkedSellers(seller, max_hops 1), other options default
 *     linked2    LinkedSellers(seller, max_hops 2), other options default
 *     paths      FindPaths(seller, seller, k 3, max_hops 4), others default
 *   each call with a request drawn at random from that rpc's sample:
 *     get, neighbors: --sample distinct random sellers of the links file.
 *     linked1/2 (the same keys for both): when ring truth is at hand
 *       (--truth FILE, by default sellergen's truth.csv next to the links
 *       file; `--truth none` ignores it), equal numbers of distinct ring
 *       members and random sellers (the first of the random sample),
 *       min(--sample / 2, ring members) each, so half the calls start
 *       inside a counterfeit ring; without truth, the random sellers.
 *     paths: --sample pairs. With ring truth: a random ring member and
 *       another random member of the same ring. Without: two distinct
 *       sellers linked to the same non-seller entity that is not a hub
 *       under graphd's default hub caps (2..cap sellers in the links file),
 *       the entity drawn uniformly among such entities.
 *   Every latency is recorded (from creating the call to its completion),
 *   and QPS, p50, p99, p99.9 come from all of them; the ratios to
 *   Health/Check and to GetEntity pair the measurements of the same point
 *   and repeat (and are absent when that rpc is not measured). Per rpc the
 *   mean items per reply are reported (entities, neighbours, sellers for
 *   LinkedSellers, paths for FindPaths), and for the investigator rpcs the
 *   share of replies with `truncated` set and the mean `touched`.
 *   Client CPU is getrusage(RUSAGE_SELF) over the timed part (all of this
 *   process, gRPC's own threads included); the daemon's CPU is utime+stime
 *   from /proc/PID/stat (only when this tool spawned it). Both are also
 *   given per call. The whole machine's busy time (/proc/stat) minus both
 *   is reported as "other" cores: load from other tenants, which on a
 *   shared 2-core box explains most run-to-run spread (tick-based, so it
 *   reads a few hundredths negative on a quiet machine).
 *   In-process reference (inproc.c; with a daemon this tool spawned on
 *   --data, once it exited 0): the linked1/linked2 requests run again
 *   through gd_query_linked in this process, one thread, on the same data
 *   directory: CPU microseconds per query (median over the repeats) and
 *   the daemon's CPU per call at the headline point over it, so what the
 *   service around the query costs is measured, not guessed.
 *
 *   Clients. The client shares the machine with the daemon, so what it
 *   costs per call comes off what the daemon can show.
 *   --client async (the default): --client-threads T (default 1) threads,
 *   each with its own completion queue (grpc_completion_queue_create_for_next)
 *   and its share of C call slots. A slot starts one batch
 *   [SEND_INITIAL_METADATA + SEND_MESSAGE + SEND_CLOSE_FROM_CLIENT +
 *   RECV_INITIAL_METADATA + RECV_MESSAGE + RECV_STATUS_ON_CLIENT] on a call
 *   from grpc_channel_create_call; when the tag completes it records the
 *   latency, checks the status is OK and the reply parses (else counts an
 *   error; decoded into a per-thread arena, reset per reply, not malloc'ed
 *   part by part), frees the call and starts the slot's next call, until the
 *   duration ends; then the calls in flight drain (and count). The
 *   requests are packed once, before any measurement (a slice per key and
 *   rpc); a call only wraps its slice in a byte buffer. Before the timed
 *   part every slot makes 20 untimed calls (the first ones wait for the
 *   connection), and the queue drains.
 *   --client sync: C threads in closed loops, each making blocking gc_unary
 *   calls (tools/common/client.h: a pluck completion queue created and
 *   destroyed per call, the request packed and the reply unpacked per
 *   call); each thread makes 20 untimed calls first. This is how a simple
 *   threaded caller behaves. Measured on the 2-core box (200k sellers,
 *   `read --client both --concurrency-list 1,4,16,32`, 3 x 5 s): at 16 in
 *   flight sync cost 52-58 us of client CPU per call against 17 for async,
 *   and showed 17k Health/Check and 15k GetEntity QPS against 38k and 39k;
 *   at 1 in flight the two clients gave the same latency (p50 75-90 us).
 *   The async client finds ready completions first and then starts the
 *   freed slots' next calls together, which gave a lower p50 at 16-32 in
 *   flight than restarting each slot at once.
 *   --client both measures both, async first at each repeat.
 *
 *   Connections: --conn shared (the default) gives each measurement one
 *   channel (one TCP connection; the async client opens it with a local
 *   subchannel pool so it is its own) shared by all client threads, every
 *   call an HTTP/2 stream on it. --conn own gives every client thread its
 *   own connection (sync: a gc_client with own_connection = true each).
 *   With the sync client at 16 threads shared was measured faster than own
 *   (16.1k/17.2k against 12.5k/12.7k Health QPS, ~40 against ~54 us of
 *   client CPU per call), hence the default. Use --conn own to see the
 *   cost of many connections.
 *
 * Cluster (cluster.c has the details)
 *   The data is generated (or --links read) and ingested once, as by
 *   `ingest --repeat 1` (its table is printed too), and the graphd data dir
 *   kept. A daemon is started on it, and this process opens the same LMDB
 *   environment next to it, exports the graph and builds the evidence
 *   projection with the clustering worker's own functions and default
 *   parameters, and writes the ties to a file. Each repeat then runs, in
 *   alternating order: (a) GRAPHD: StartClustering with the default spec
 *   and WatchJob to its end (must be SUCCEEDED), timed from the call to
 *   the last WatchJob message; GetSnapshot's manifest gives the worker's
 *   per-stage seconds, peak RSS, sellers, ties (must equal the in-process
 *   projection's, as must the input checksum), clusters, objective and
 *   modularity; the daemon's VmHWM from /proc. (b) REFERENCE:
 *   /usr/bin/python3 leiden_ref.py (python-igraph) on the ties file: only
 *   its community_leiden calls timed (CPM, resolution 0.1, beta 0.01,
 *   until stable the worker's way, seed 1; the differences that remain
 *   are listed in cluster.c). (c) StreamAssignments of the job's snapshot
 *   through gRPC vs the bare read of the same assignments in-process
 *   (gd_store_assignments_visit), assignments/s and their ratio; counts
 *   and contents must agree. Reported: medians of the job wall time, each
 *   stage, Leiden alone, the ratio job / Leiden (target <= 1.3), worker
 *   peak RSS and Python's (ratio target <= 1.5), the daemon's VmHWM, the
 *   StreamAssignments rate (target >= 5M/s), the bare-read rate and the
 *   ratio, and both sides' clusters and CPM quality. Targets are marked
 *   met or MISSED; a missed target is not an anomaly.
 *   Note: with sellergen's defaults, 1M sellers give only 612,679 ties
 *   (seed 1: hub addresses and NAT IPs are over the default hub caps, so
 *   most sellers have no tie); for millions of ties put more of the
 *   sellers in rings: --sellergen-arg=--ring-fraction --sellergen-arg=0.25
 *   gave 6,088,634 ties at 1M sellers, seed 1 (0.5 gave 2.4M at 200k).
 *   The one ingest keeps at most 64 reference batches queued
 *   (--ref-window 64 unless given): with all 618 batches of 1M sellers
 *   queued at once the store writer's group overflowed LMDB's transaction.
 *
 * Security (security.c has the details)
 *   The data is generated (or --links read) and ingested once, as for
 *   cluster, and the read keys sampled as for read. The mode makes a
 *   self-signed certificate (openssl req -x509, CN and SAN localhost,
 *   127.0.0.1) and a tokens file with a random reader token, then per
 *   repeat starts one daemon per configuration on the same data dir, one
 *   at a time, the order rotating by one each repeat: plain (--no-audit,
 *   no tokens, plaintext: the reference), tls (--no-audit, --tls-cert/key),
 *   auth+audit (--tokens, audit on, plaintext), tls+auth+audit, and with
 *   --configs also auth (--tokens, --no-audit). Each daemon first passes
 *   checks (tokens required and a wrong one refused, plaintext refused on
 *   the TLS port), then Health/Check and GetEntity (--rpcs) are measured
 *   with read's machinery at each --concurrency-list point; the async
 *   client's channel then has TLS credentials trusting the certificate
 *   (target-name override "localhost") and every call's initial metadata
 *   carries `authorization: Bearer TOKEN`. Stats before and after must show
 *   an audit record committed per call with audit on and nothing committed
 *   without; the daemon must exit 0 on SIGTERM. Reported per configuration:
 *   medians of QPS, p50, p99, p99.9, CPU per call, and the QPS / p50 / p99
 *   ratios to plain (median of per-repeat ratios) with the cost in percent.
 *   There is no target: nothing is marked met or missed.
 *
 * Metrics (metrics.c has the details)
 *   Data and keys as for security; per repeat two daemons on that data,
 *   one at a time, in alternating order: off (--no-audit, no metrics
 *   endpoint: the reference) and scraped (--no-audit --metrics-listen
 *   127.0.0.1:0, GET /metrics with libcurl every --scrape-ms while
 *   Health/Check and GetEntity are measured as read does). Reported: QPS,
 *   p50, p99 and daemon CPU per call for both, the scraped/off ratios
 *   (median of per-repeat ratios) and the scrapes' count, latency and
 *   size. The last scrape must count every timed GetEntity call.
 *
 * Gateway (gateway.c has the details)
 *   Data and keys as for security; per repeat one daemon with
 *   --http-listen: GetEntity over gRPC and the same requests as JSON over
 *   HTTP, one call in flight, alternating which goes first; the http/grpc
 *   p50 ratio (target <= 1.3); then the console's page load (GetEntity +
 *   LinkedSellers maxHops 2 over HTTP) for up to 200 sampled starts
 *   (target p50 <= 300 ms at 200k sellers).
 *
 * Warm (warm.c has the details)
 *   The data is generated (or --links read) and its link records sorted
 *   by seen time; one daemon ingests all but the newest 1% through Ingest,
 *   clusters them (snapshot A), then ingests the newest 1%. Per repeat, in
 *   alternating order, a cold job (warm_start OFF) and a warm job (ON),
 *   both with A as their previous snapshot (each job's snapshot is deleted
 *   after it is read, so A stays the latest). Reported per kind: job wall
 *   time, the worker's cluster stage, Leiden iterations, the share of A's
 *   sellers whose cluster id is unchanged, objective and clusters; the
 *   cold/warm ratios (median of per-repeat ratios). Targets at 1M sellers:
 *   warm >= 1.5x faster, >= 97% of A's sellers keep their cluster id.
 *
 * Place (place.c has the details)
 *   Fresh clusters. Every link of a random sample of sellers (8% of the
 *   link records, at most 100000) is held back; one daemon ingests the rest,
 *   clusters it, and its Backup is the base every later daemon starts from
 *   (a fresh copy each). Per repeat: (a) single Upserts, one at a time,
 *   each a new seller on a ring device whose sellers share a cluster, with
 *   a WatchAlerts stream open: Upsert round trip (the reference) and reply
 *   -> alert, p50/p99, plus the daemon's graphd_placement_latency_seconds;
 *   (b) the held-back records through Ingest with placement on (default
 *   queue) and off (--placement-queue 0), alternating: links/s and the
 *   ratio on/off (target >= 0.9), shed marks, queue drain time; (c) on
 *   the "on" daemon, a full clustering job afterwards: how many of the
 *   changed sellers' placements agree with it (target >= 95%), against the
 *   old snapshot's clusters as the guess.
 *
 * Output: the exact command line and the machine first, then readable
 * tables on stdout, progress on stderr, and as the last stdout line one JSON
 * object {"bench": {...}} with every figure. Exit status 0 when every check
 * passed, 1 when any failed (the report is still printed: see "anomalies"),
 * 2 on usage errors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "core/arena.h"
#include "core/u64map.h"
#include "graphd.pb-c.h"
#include "health.pb-c.h"
#include "ingest.h"
#include "store/store.h"
#include "store/writer.h"

#define WARMUP_CALLS 20 /* untimed calls per client thread (sync) or call slot (async) */

/* ==================================================================== */
/* Small helpers                                                          */

int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    die("out of memory (%zu bytes)", n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    die("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    die("out of memory (%zu bytes)", n);
  return q;
}

char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    die("out of memory");
  return p;
}

char *xasprintf(const char *fmt, ...) {
  va_list ap;
  char *s;
  va_start(ap, fmt);
  int rc = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (rc < 0)
    die("out of memory");
  return s;
}

/* splitmix64: seeds and hashes. */
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* xorshift64*: per-thread key choice. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median of the finite values of v (a failed run gives NAN); NAN if none. */
double median(const double *v, int n) {
  double tmp[MAX_REPEAT];
  int m = 0;
  for (int i = 0; i < n && i < MAX_REPEAT; i++)
    if (isfinite(v[i]))
      tmp[m++] = v[i];
  n = m;
  if (n <= 0)
    return NAN;
  qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
  return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* The index of the nearest-rank percentile q of n > 0 sorted values. */
static size_t nearest_rank(size_t n, double q) {
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return rank - 1;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t percentile(const uint64_t *v, size_t n, double q) {
  return n ? v[nearest_rank(n, q)] : 0;
}

double pctl(double *v, size_t n, double q) {
  if (!n)
    return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  return v[nearest_rank(n, q)];
}

/* 1234567 -> "1,234,567" */
const char *fmt_count(char *buf, size_t size, double v) {
  if (!isfinite(v)) {
    snprintf(buf, size, "-");
    return buf;
  }
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.0f", v);
  size_t len = strlen(tmp), o = 0, start = tmp[0] == '-';
  for (size_t i = 0; i < len && o + 2 < size; i++) {
    if (i > start && (len - i) % 3 == 0)
      buf[o++] = ',';
    buf[o++] = tmp[i];
  }
  buf[o] = '\0';
  return buf;
}

const char *fmt_bytes(char *buf, size_t size, double b) {
  if (!isfinite(b) || b < 0)
    snprintf(buf, size, "-");
  else if (b >= 1024.0 * 1024 * 1024)
    snprintf(buf, size, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    snprintf(buf, size, "%.1f MiB", b / (1024.0 * 1024));
  else
    snprintf(buf, size, "%.1f KiB", b / 1024.0);
  return buf;
}

/* ==================================================================== */
/* Child processes, anomalies, clean-up                                   */

static pid_t g_children[MAX_DAEMONS];

void children_add(pid_t pid) {
  for (int i = 0; i < MAX_DAEMONS; i++)
    if (!g_children[i]) {
      g_children[i] = pid;
      return;
    }
}

void children_remove(pid_t pid) {
  for (int i = 0; i < MAX_DAEMONS; i++)
    if (g_children[i] == pid)
      g_children[i] = 0;
}

/* Kills what we spawned and still runs; used on fatal errors and signals. */
static void children_kill(void) {
  for (int i = 0; i < MAX_DAEMONS; i++)
    if (g_children[i] > 0) {
      kill(g_children[i], SIGKILL);
      waitpid(g_children[i], NULL, 0);
      g_children[i] = 0;
    }
}

static void on_fatal_signal(int sig) {
  for (int i = 0; i < MAX_DAEMONS; i++)
    if (g_children[i] > 0)
      kill(g_children[i], SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}

void die(const char *fmt, ...) {
  va_list ap;
  fputs("graphd-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  children_kill();
  exit(1);
}

static json_object *g_anomalies; /* array of strings */

void anomaly(const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "graphd-bench: ANOMALY: %s\n", buf);
  json_object_array_add(g_anomalies, json_object_new_string(buf));
}

/* ---- directories ---- */

static uint64_t g_du_apparent, g_du_alloc;

static int du_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)path;
  (void)ftw;
  if (flag == FTW_F) {
    g_du_apparent += (uint64_t)sb->st_size;
    g_du_alloc += (uint64_t)sb->st_blocks * 512;
  }
  return 0;
}

/* Bytes of the files under dir: apparent size and allocated blocks. */
void dir_bytes(const char *dir, uint64_t *ret_apparent, uint64_t *ret_alloc) {
  g_du_apparent = g_du_alloc = 0;
  nftw(dir, du_cb, 16, FTW_PHYS);
  *ret_apparent = g_du_apparent;
  *ret_alloc = g_du_alloc;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0)
    fprintf(stderr, "graphd-bench: cannot remove %s: %s\n", path, strerror(errno));
  return 0;
}

void rm_rf(const char *dir) {
  if (dir && *dir)
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory under parent; returns its malloc'd path. */
static char *make_temp_dir(const char *parent, const char *prefix) {
  char *tmpl = xasprintf("%s/%s.XXXXXX", parent, prefix);
  if (!mkdtemp(tmpl))
    die("cannot create a directory in %s: %s", parent, strerror(errno));
  return tmpl;
}

/* ---- /proc ---- */

/* A "Name:  123 kB" line of /proc/PID/status, in bytes; -1 if absent. */
int64_t proc_status_kb(pid_t pid, const char *name) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t nlen = strlen(name);
  int64_t v = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
      long long kb;
      if (sscanf(line + nlen + 1, "%lld", &kb) == 1)
        v = kb * 1024;
      break;
    }
  }
  fclose(f);
  return v;
}

/* utime + stime from a /proc stat file (a process's or a thread's), in
 * seconds; NAN if unreadable. */
static double stat_cpu_s(const char *path) {
  char buf[4096];
  FILE *f = fopen(path, "r");
  if (!f)
    return NAN;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (!p)
    return NAN;
  /* Fields after the comm: 3 state ... 14 utime 15 stime. */
  unsigned long long ut = 0, stt = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field == 14)
      ut = strtoull(tok, NULL, 10);
    else if (field == 15) {
      stt = strtoull(tok, NULL, 10);
      break;
    }
  }
  if (field < 15)
    return NAN;
  return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime of a process, in seconds; NAN if unreadable. */
double proc_cpu_s(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  return stat_cpu_s(path);
}

/* The first thread of pid named comm (graphd names its threads: gd-writer,
 * gd-query ...), or 0. */
static pid_t proc_thread(pid_t pid, const char *comm) {
  char path[300], name[32];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *dir = opendir(path);
  pid_t found = 0;
  if (!dir)
    return 0;
  for (struct dirent *e; !found && (e = readdir(dir));) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof path, "/proc/%d/task/%s/comm", (int)pid, e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (fgets(name, sizeof name, f)) {
      name[strcspn(name, "\n")] = '\0';
      if (!strcmp(name, comm))
        found = (pid_t)atoi(e->d_name);
    }
    fclose(f);
  }
  closedir(dir);
  return found;
}

/* A thread's CPU time (utime + stime) and the time it was runnable but
 * waited for a core (/proc/.../schedstat, kernels with schedstats), in
 * seconds; NAN for what cannot be read (tid 0 included). */
static void thread_sched(pid_t pid, pid_t tid, double *ret_cpu_s, double *ret_wait_s) {
  char path[80];
  unsigned long long run_ns, wait_ns;
  *ret_cpu_s = *ret_wait_s = NAN;
  if (!tid)
    return;
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
  *ret_cpu_s = stat_cpu_s(path);
  snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
  FILE *f = fopen(path, "r");
  if (f) {
    if (fscanf(f, "%llu %llu", &run_ns, &wait_ns) == 2)
      *ret_wait_s = (double)wait_ns / 1e9;
    fclose(f);
  }
}

/* CPU time all CPUs of the machine spent busy (everything but idle and
 * iowait), from the first line of /proc/stat, in seconds; NAN if unreadable. */
static double machine_busy_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return NAN;
  unsigned long long v[8] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n < 4)
    return NAN;
  /* user nice system idle iowait irq softirq steal */
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ==================================================================== */
/* Configuration                                                          */

const char *const client_names[2] = {"async", "sync"};

/* rpc_kind (bench_int.h): the rpcs the read benchmark can measure. */

#define RPC_INVESTIGATE(k) ((k) >= RPC_LINKED1) /* replies with truncated / touched */
#define RPC_ALL ((1u << RPC__COUNT) - 1)

const char *const rpc_names[RPC__COUNT] = {"Health/Check", "GetEntity",   "Neighbors",
                                                  "Linked/1hop",  "Linked/2hop", "FindPaths"};
const char *const rpc_opt_names[RPC__COUNT] = {"health",  "get",     "neighbors",
                                                      "linked1", "linked2", "paths"};
const char *const rpc_json_names[RPC__COUNT] = {
    "health", "get_entity", "neighbors", "linked_sellers_1hop", "linked_sellers_2hop",
    "find_paths"};
static const char *const rpc_methods[RPC__COUNT] = {
    "/grpc.health.v1.Health/Check", SVC "GetEntity",     SVC "Neighbors",
    SVC "LinkedSellers",            SVC "LinkedSellers", SVC "FindPaths"};

#define PATHS_K 3        /* FindPaths k */
#define PATHS_MAX_HOPS 4 /* FindPaths max_hops */

static void usage(FILE *f) {
  fputs(
      "usage: graphd-bench ingest (--links FILE.csv | --sellers N [--seed S]) [options]\n"
      "       graphd-bench read (--addr HOST:PORT | --data DIR) --keys-from FILE.csv [options]\n"
      "       graphd-bench all --sellers N [--seed S] [options]\n"
      "       graphd-bench cluster [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench security [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench metrics [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench gateway [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench warm [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench place [--sellers N | --links FILE.csv] [--seed S] [options]\n"
      "       graphd-bench scale [--sizes N1,N2,...] [--seed S] [options]\n"
      "       graphd-bench bulk [--sellers N | --links FILE.csv] [--seed S] [--no-ingest]\n"
      "\n"
      "ingest: durable bulk load through graphd's Ingest rpc vs the same batches\n"
      "        written in-process through the store's group-commit writer.\n"
      "read:   GetEntity, Neighbors, LinkedSellers (1 and 2 hops) and FindPaths of\n"
      "        sampled sellers vs Health/Check (the gRPC floor) and GetEntity, with C\n"
      "        calls in flight for each C of the list; with a daemon it spawned, then\n"
      "        the same LinkedSellers queries in-process (the query layer alone).\n"
      "all:    generate with sellergen, ingest, then read the loaded data.\n"
      "cluster: generate (default 1000000 sellers) and ingest once, then per repeat a\n"
      "        clustering job (StartClustering + WatchJob, default spec) vs\n"
      "        python-igraph's Leiden on the same projected graph, and\n"
      "        StreamAssignments of its snapshot vs a bare in-process LMDB read.\n"
      "security: generate (default 200000 sellers) and ingest once, then per repeat one\n"
      "        daemon per configuration on that data: plain (plaintext, no tokens,\n"
      "        --no-audit: the reference), tls, auth+audit (a reader token, audit on)\n"
      "        and tls+auth+audit; Health/Check and GetEntity at C calls in flight, QPS\n"
      "        and latency ratios to plain in the same repeat.\n"
      "metrics: generate (default 200000 sellers) and ingest once, then per repeat a\n"
      "        daemon without and one with --metrics-listen, scraped every --scrape-ms,\n"
      "        alternating; Health/Check and GetEntity QPS and latency ratios.\n"
      "gateway: generate (default 200000 sellers) and ingest once, then per repeat a\n"
      "        daemon with --http-listen: GetEntity over gRPC vs over HTTP/JSON at 1 in\n"
      "        flight (p50 ratio), and the console's page load (search + 2-hop expand).\n"
      "warm:   generate (default 200000 sellers), ingest all but the newest 1% of the\n"
      "        link records (by seen time), cluster (snapshot A), ingest the rest, then\n"
      "        per repeat a cold job (warm_start OFF) and a warm one (ON), both matched\n"
      "        against A, alternating: wall and cluster-stage time, Leiden iterations,\n"
      "        share of A's sellers keeping their cluster id, objective; cold / warm.\n"
      "place:  generate (default 200000 sellers), hold back the links of some sellers\n"
      "        (8% of the records), ingest and cluster the rest; per repeat (default 5)\n"
      "        single Upserts of new sellers on ring devices: reply -> WatchAlerts alert vs\n"
      "        the Upsert round trip; then Ingest of the held-back records with placement\n"
      "        on vs off (--placement-queue 0), alternating: links/s on/off, shed, drain;\n"
      "        then a full job: agreement of the placements with it, vs the old snapshot.\n"
      "scale:  per size of --sizes (default 100000,300000,1000000,3000000 sellers), one\n"
      "        sellergen graph and one fresh daemon: Ingest rate and data dir size,\n"
      "        GetEntity and 2-hop LinkedSellers daemon CPU per call and p50 at 1 in\n"
      "        flight, a clustering job's time and worker RSS, StreamAssignments rate;\n"
      "        then each figure's fitted growth (the exponent b of a * sellers^b).\n"
      "bulk:   generate (default 1000000 sellers); per repeat a BulkLoad of every record\n"
      "        into a fresh daemon vs bare LMDB appending the rows it wrote (alternating),\n"
      "        then Ingest of the same records (not with --no-ingest): links/s, ratios.\n"
      "\n"
      "options:\n"
      "  --links FILE           links CSV / JSON Lines to load (ingest, cluster, security)\n"
      "  --sellers N            generate N sellers with sellergen instead (cluster:\n"
      "                         default 1000000; security: default 200000)\n"
      "  --sellergen-arg ARG    extra argument for sellergen (repeatable), e.g.\n"
      "                         --sellergen-arg=--ring-fraction --sellergen-arg=0.25\n"
      "  --seed S               sellergen seed, also seeds the key sample (default 1)\n"
      "  --batch N              links per UpsertRequest (default 10000)\n"
      "  --ref-window N         reference: at most N batches queued to the writer at\n"
      "                         once (graphd's Ingest queues up to 256 messages / 64 MiB\n"
      "                         per stream); 0 = all at once (default)\n"
      "  --repeat N             interleaved repeats; medians are reported (default 3)\n"
      "  --addr HOST:PORT       read: a running server\n"
      "  --data DIR             read: spawn graphd on this (loaded) data directory\n"
      "  --keys-from FILE       read: links file to take seller keys from\n"
      "  --sample N             read: seller keys sampled, and FindPaths pairs (default\n"
      "                         10000)\n"
      "  --client async|sync|both\n"
      "                         read: the load generator (default async): async keeps C\n"
      "                         calls in flight on a completion queue per client thread\n"
      "                         with pre-packed requests; sync runs C threads, each making\n"
      "                         blocking gc_unary calls; both measures both, interleaved\n"
      "  --client-threads N     read, async: client threads sharing the C calls (default 1)\n"
      "  --concurrency C        read: calls in flight (sync: threads); same as a list of one\n"
      "  --concurrency-list C1,C2,...\n"
      "                         read: measure at each (default 1,16; at most 8 values)\n"
      "  --duration SECONDS     read: per measurement (default 5)\n"
      "  --warmup SECONDS       read: before the first measurement of each rpc, call it\n"
      "                         untimed for this long at the highest concurrency, so the\n"
      "                         daemon's per-thread entity caches warm as the in-process\n"
      "                         reference's does in its untimed pass (default 0)\n"
      "  --limit N              read: Neighbors limit (default 100)\n"
      "  --rpcs LIST            read: rpcs to measure, of health,get,neighbors,linked1,\n"
      "                         linked2,paths (default: all; security: health,get)\n"
      "  --truth FILE|none      read: sellergen's truth.csv (ring membership) for the\n"
      "                         LinkedSellers keys and FindPaths pairs (default: truth.csv\n"
      "                         next to the links file, when there is one)\n"
      "  --conn shared|own      read: one connection for all client threads (default) or\n"
      "                         one per client thread\n"
      "  --graphd PATH          daemon binary (default: the one built with this tool)\n"
      "  --sellergen PATH       generator binary (default: the one built with this tool)\n"
      "  --graphd-arg ARG       extra argument for every spawned graphd (repeatable)\n"
      "  --python PATH          cluster: interpreter of the reference (default\n"
      "                         /usr/bin/python3, which has Debian's python3-igraph)\n"
      "  --leiden-ref PATH      cluster: the reference script (default: leiden_ref.py\n"
      "                         of this source tree)\n"
      "  --job-timeout-ms N     cluster, warm, place: limit for one clustering job (WatchJob deadline)\n"
      "                         and one reference run (default 3600000)\n"
      "  --configs LIST         security: configurations, of plain,tls,auth,auth+audit,\n"
      "                         tls+auth+audit, all (default: all but auth, which is\n"
      "                         tokens without audit; plain is always measured)\n"
      "  --openssl PATH         security: the openssl command that makes the self-signed\n"
      "                         certificate (default: openssl from PATH)\n"
      "  --scrape-ms N          metrics: scrape interval (default 1000); metrics also takes\n"
      "                         read's --client, --concurrency(-list), --duration, --rpcs\n"
      "                         security also takes read's --client, --client-threads,\n"
      "                         --concurrency(-list), --duration, --sample, --rpcs, --conn\n"
      "  --sizes N1,N2,...      scale: seller counts, ascending, at most 8 (default\n"
      "                         100000,300000,1000000,3000000; --quick: 2000,5000)\n"
      "  --workdir DIR          where temp dirs go (default $TMPDIR or /tmp)\n"
      "  --keep                 keep the temp dirs (data dirs, generated files, logs)\n"
      "  --quick                smoke test: 5000 sellers, batch 2000, 1 repeat, 1 s\n"
      "                         (cluster, warm: 5000 sellers, 1 repeat; security: 5000\n"
      "                         sellers, 1 repeat, 1 s per measurement)\n"
      "  --call-timeout-ms N    per read call deadline (default 10000)\n"
      "  --step-timeout-ms N    per Ingest send/finish step (default 600000)\n"
      "  -h, --help             this text\n"
      "\n"
      "Prints tables, then one JSON line {\"bench\":{...}}. Exit 0 when every\n"
      "check passed, 1 otherwise, 2 on usage errors.\n",
      f);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
  va_list ap;
  fputs("graphd-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry 'graphd-bench --help'.\n", stderr);
  exit(2);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || end == s || s[0] == '-' || v < min || v > max)
    usage_error("%s: invalid value '%s' (%" PRIu64 "..%" PRIu64 ")", opt, s, min, max);
  return v;
}

static void parse_args(int argc, char **argv, bench_cfg *c) {
  enum {
    O_LINKS = 256, O_SELLERS, O_SEED, O_BATCH, O_REPEAT, O_ADDR, O_DATA, O_KEYS, O_SAMPLE,
    O_CONC, O_DUR, O_WARMUP, O_LIMIT, O_CONN, O_GRAPHD, O_SELLERGEN, O_GARG, O_WORKDIR, O_KEEP, O_QUICK,
    O_CALLTO, O_STEPTO, O_REFWIN, O_CLIENT, O_CTHREADS, O_CLIST, O_RPCS, O_TRUTH,
    O_SGARG, O_PYTHON, O_LEIDENREF, O_JOBTO, O_CONFIGS, O_OPENSSL, O_SCRAPE, O_SIZES, O_NO_INGEST,
  };
  static const struct option opts[] = {
      {"links", required_argument, NULL, O_LINKS},
      {"sellers", required_argument, NULL, O_SELLERS},
      {"seed", required_argument, NULL, O_SEED},
      {"batch", required_argument, NULL, O_BATCH},
      {"repeat", required_argument, NULL, O_REPEAT},
      {"addr", required_argument, NULL, O_ADDR},
      {"data", required_argument, NULL, O_DATA},
      {"keys-from", required_argument, NULL, O_KEYS},
      {"sample", required_argument, NULL, O_SAMPLE},
      {"concurrency", required_argument, NULL, O_CONC},
      {"concurrency-list", required_argument, NULL, O_CLIST},
      {"client", required_argument, NULL, O_CLIENT},
      {"client-threads", required_argument, NULL, O_CTHREADS},
      {"duration", required_argument, NULL, O_DUR},
      {"warmup", required_argument, NULL, O_WARMUP},
      {"limit", required_argument, NULL, O_LIMIT},
      {"rpcs", required_argument, NULL, O_RPCS},
      {"truth", required_argument, NULL, O_TRUTH},
      {"conn", required_argument, NULL, O_CONN},
      {"graphd", required_argument, NULL, O_GRAPHD},
      {"sellergen", required_argument, NULL, O_SELLERGEN},
      {"graphd-arg", required_argument, NULL, O_GARG},
      {"sellergen-arg", required_argument, NULL, O_SGARG},
      {"python", required_argument, NULL, O_PYTHON},
      {"leiden-ref", required_argument, NULL, O_LEIDENREF},
      {"job-timeout-ms", required_argument, NULL, O_JOBTO},
      {"configs", required_argument, NULL, O_CONFIGS},
      {"openssl", required_argument, NULL, O_OPENSSL},
      {"scrape-ms", required_argument, NULL, O_SCRAPE},
      {"sizes", required_argument, NULL, O_SIZES},
      {"no-ingest", no_argument, NULL, O_NO_INGEST},
      {"workdir", required_argument, NULL, O_WORKDIR},
      {"keep", no_argument, NULL, O_KEEP},
      {"quick", no_argument, NULL, O_QUICK},
      {"call-timeout-ms", required_argument, NULL, O_CALLTO},
      {"step-timeout-ms", required_argument, NULL, O_STEPTO},
      {"ref-window", required_argument, NULL, O_REFWIN},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  if (argc < 2)
    usage_error("a subcommand is required: ingest, read, all, cluster, security, metrics, "
                "gateway, warm, place or scale");
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    exit(0);
  }
  *c = (bench_cfg){
      .seed = 1,
      .sellergen = GD_BENCH_SELLERGEN,
      .graphd = GD_BENCH_GRAPHD,
      .limit = 100,
      .conn = CONN_SHARED,
      .call_timeout_ms = 10000,
      .step_timeout_ms = 600000,
      .start_timeout_ms = 60000,
      .stop_timeout_ms = 120000,
      .job_timeout_ms = 3600000,
      .python = "/usr/bin/python3",
      .leiden_ref = GD_BENCH_SRCDIR "/tools/bench/leiden_ref.py",
      .openssl = "openssl",
  };
  c->cmd_name = argv[1];
  if (!strcmp(argv[1], "ingest"))
    c->cmd = CMD_INGEST;
  else if (!strcmp(argv[1], "read"))
    c->cmd = CMD_READ;
  else if (!strcmp(argv[1], "all"))
    c->cmd = CMD_ALL;
  else if (!strcmp(argv[1], "cluster"))
    c->cmd = CMD_CLUSTER;
  else if (!strcmp(argv[1], "security"))
    c->cmd = CMD_SECURITY;
  else if (!strcmp(argv[1], "metrics"))
    c->cmd = CMD_METRICS;
  else if (!strcmp(argv[1], "gateway"))
    c->cmd = CMD_GATEWAY;
  else if (!strcmp(argv[1], "warm"))
    c->cmd = CMD_WARM;
  else if (!strcmp(argv[1], "place"))
    c->cmd = CMD_PLACE;
  else if (!strcmp(argv[1], "scale"))
    c->cmd = CMD_SCALE;
  else if (!strcmp(argv[1], "bulk"))
    c->cmd = CMD_BULK;
  else
    usage_error("unknown subcommand '%s' (ingest, read, all, cluster, security, metrics, "
                "gateway, warm, place, scale or bulk)",
                argv[1]);

  int ch;
  optind = 2;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case O_LINKS: c->links = optarg; break;
    case O_SELLERS: c->sellers = parse_u64("--sellers", optarg, 1, 100000000); break;
    case O_SEED: c->seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
    case O_BATCH: c->batch = parse_u64("--batch", optarg, 1, 10000000); break;
    case O_REPEAT: c->repeat = (int)parse_u64("--repeat", optarg, 1, MAX_REPEAT); break;
    case O_ADDR: c->addr = optarg; break;
    case O_DATA: c->data = optarg; break;
    case O_KEYS: c->keys_from = optarg; break;
    case O_SAMPLE: c->sample = parse_u64("--sample", optarg, 1, 100000000); break;
    case O_CONC:
      if (c->n_conc)
        usage_error("--concurrency and --concurrency-list given together (or twice)");
      c->conc[c->n_conc++] = (int)parse_u64("--concurrency", optarg, 1, 4096);
      break;
    case O_CLIST: {
      if (c->n_conc)
        usage_error("--concurrency and --concurrency-list given together (or twice)");
      char *list = xstrdup(optarg), *save = NULL;
      for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (c->n_conc == MAX_CONC)
          usage_error("--concurrency-list: at most %d values", MAX_CONC);
        c->conc[c->n_conc++] = (int)parse_u64("--concurrency-list", tok, 1, 4096);
      }
      free(list);
      if (!c->n_conc)
        usage_error("--concurrency-list: no values in '%s'", optarg);
      break;
    }
    case O_CLIENT:
      if (!strcmp(optarg, "async")) {
        c->clients[0] = CLIENT_ASYNC;
        c->n_clients = 1;
      } else if (!strcmp(optarg, "sync")) {
        c->clients[0] = CLIENT_SYNC;
        c->n_clients = 1;
      } else if (!strcmp(optarg, "both")) {
        c->clients[0] = CLIENT_ASYNC;
        c->clients[1] = CLIENT_SYNC;
        c->n_clients = 2;
      } else {
        usage_error("--client: 'async', 'sync' or 'both', not '%s'", optarg);
      }
      break;
    case O_CTHREADS: c->client_threads = (int)parse_u64("--client-threads", optarg, 1, 256); break;
    case O_DUR: {
      char *end;
      double d = strtod(optarg, &end);
      if (*end || end == optarg || !(d > 0) || d > 86400)
        usage_error("--duration: invalid value '%s' (seconds, > 0)", optarg);
      c->duration = d;
      break;
    }
    case O_WARMUP: {
      char *end;
      double d = strtod(optarg, &end);
      if (*end || end == optarg || !(d >= 0) || d > 86400)
        usage_error("--warmup: invalid value '%s' (seconds, >= 0)", optarg);
      c->warmup = d;
      break;
    }
    case O_LIMIT: c->limit = (unsigned)parse_u64("--limit", optarg, 1, 10000000); break;
    case O_RPCS: {
      char *list = xstrdup(optarg), *save = NULL;
      c->rpcs = 0;
      for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = 0;
        if (!strcmp(tok, "all")) {
          c->rpcs = RPC_ALL;
          continue;
        }
        while (k < RPC__COUNT && strcmp(tok, rpc_opt_names[k]))
          k++;
        if (k == RPC__COUNT)
          usage_error("--rpcs: unknown rpc '%s' (health, get, neighbors, linked1, linked2, "
                      "paths or all)",
                      tok);
        c->rpcs |= 1u << k;
      }
      free(list);
      if (!c->rpcs)
        usage_error("--rpcs: no rpc in '%s'", optarg);
      break;
    }
    case O_TRUTH: c->truth = optarg; break;
    case O_CONFIGS: {
      char *list = xstrdup(optarg), *save = NULL;
      c->sec_configs = 0;
      for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = 0;
        if (!strcmp(tok, "all")) {
          c->sec_configs = SEC_ALL;
          continue;
        }
        while (k < SEC__COUNT && strcmp(tok, sec_config_names[k]))
          k++;
        if (k == SEC__COUNT)
          usage_error("--configs: unknown configuration '%s' (plain, tls, auth, auth+audit, "
                      "tls+auth+audit or all)",
                      tok);
        c->sec_configs |= 1u << k;
      }
      free(list);
      if (!c->sec_configs)
        usage_error("--configs: no configuration in '%s'", optarg);
      break;
    }
    case O_OPENSSL: c->openssl = optarg; break;
    case O_SCRAPE: c->scrape_ms = (int)parse_u64("--scrape-ms", optarg, 10, 3600000); break;
    case O_CONN:
      if (!strcmp(optarg, "own"))
        c->conn = CONN_OWN;
      else if (!strcmp(optarg, "shared"))
        c->conn = CONN_SHARED;
      else
        usage_error("--conn: 'own' or 'shared', not '%s'", optarg);
      break;
    case O_GRAPHD: c->graphd = optarg; break;
    case O_SELLERGEN: c->sellergen = optarg; break;
    case O_GARG:
      if (c->n_graphd_args >= MAX_GRAPHD_ARGS)
        usage_error("too many --graphd-arg (at most %d)", MAX_GRAPHD_ARGS);
      c->graphd_args[c->n_graphd_args++] = optarg;
      break;
    case O_SGARG:
      if (c->n_sellergen_args >= MAX_SELLERGEN_ARGS)
        usage_error("too many --sellergen-arg (at most %d)", MAX_SELLERGEN_ARGS);
      c->sellergen_args[c->n_sellergen_args++] = optarg;
      break;
    case O_PYTHON: c->python = optarg; break;
    case O_LEIDENREF: c->leiden_ref = optarg; break;
    case O_JOBTO: c->job_timeout_ms = (int)parse_u64("--job-timeout-ms", optarg, 1, 86400000); break;
    case O_WORKDIR: c->workdir = optarg; break;
    case O_KEEP: c->keep = true; break;
    case O_QUICK: c->quick = true; break;
    case O_NO_INGEST: c->no_ingest = true; break;
    case O_SIZES: {
      char *list = xstrdup(optarg), *save = NULL;
      c->n_sizes = 0;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (c->n_sizes == MAX_SIZES)
          usage_error("--sizes: at most %d sizes", MAX_SIZES);
        uint64_t v = parse_u64("--sizes", t, 100, 100000000);
        if (c->n_sizes && v <= c->sizes[c->n_sizes - 1])
          usage_error("--sizes: %" PRIu64 " after %" PRIu64 ": sizes must ascend", v,
                      c->sizes[c->n_sizes - 1]);
        c->sizes[c->n_sizes++] = v;
      }
      free(list);
      if (!c->n_sizes)
        usage_error("--sizes: no size given");
      break;
    }
    case O_CALLTO: c->call_timeout_ms = (int)parse_u64("--call-timeout-ms", optarg, 1, 86400000); break;
    case O_REFWIN: c->ref_window = (int)parse_u64("--ref-window", optarg, 0, 1000000); break;
    case O_STEPTO: c->step_timeout_ms = (int)parse_u64("--step-timeout-ms", optarg, 1, 86400000); break;
    case 'h': usage(stdout); exit(0);
    default: usage_error("bad option");
    }
  }
  if (optind < argc)
    usage_error("unexpected argument '%s'", argv[optind]);

  /* Defaults, --quick ones where not given. */
  if (!c->repeat)
    c->repeat = c->quick ? 1 : c->cmd == CMD_PLACE ? 5 : 3;
  if (!c->batch)
    c->batch = c->quick ? 2000 : 10000;
  if (!c->n_conc) {
    c->conc[c->n_conc++] = 1;
    c->conc[c->n_conc++] = 16;
  }
  if (!c->n_clients)
    c->clients[c->n_clients++] = CLIENT_ASYNC;
  if (!c->client_threads)
    c->client_threads = 1;
  if (!(c->duration > 0))
    c->duration = c->quick ? 1.0 : 5.0;
  if (!c->sample)
    c->sample = 10000;
  if (!c->rpcs)
    c->rpcs = c->cmd == CMD_SECURITY || c->cmd == CMD_METRICS ? 1u << RPC_HEALTH | 1u << RPC_GET
              : c->cmd == CMD_GATEWAY                         ? 1u << RPC_GET | 1u << RPC_LINKED2
                                                               : RPC_ALL;
  if (c->scrape_ms && c->cmd != CMD_METRICS)
    usage_error("--scrape-ms belongs to metrics");
  if (!c->scrape_ms)
    c->scrape_ms = 1000;
  if (c->n_sizes && c->cmd != CMD_SCALE)
    usage_error("--sizes belongs to scale");
  if (c->sec_configs && c->cmd != CMD_SECURITY)
    usage_error("--configs belongs to security");
  /* plain is the reference every ratio is taken to: always measured. */
  c->sec_configs = (c->sec_configs ? c->sec_configs : SEC_DEFAULT) | 1u << SEC_PLAIN;
  if (!c->workdir) {
    const char *t = getenv("TMPDIR");
    c->workdir = t && *t ? t : "/tmp";
  }

  switch (c->cmd) {
  case CMD_INGEST:
    if (!c->links && !c->sellers && c->quick)
      c->sellers = 5000;
    if (!!c->links == !!c->sellers)
      usage_error("ingest: give exactly one of --links FILE and --sellers N");
    if (c->addr || c->data || c->keys_from)
      usage_error("ingest: --addr, --data and --keys-from belong to read");
    break;
  case CMD_READ:
    if (!!c->addr == !!c->data)
      usage_error("read: give exactly one of --addr HOST:PORT and --data DIR");
    if (!c->keys_from)
      usage_error("read: --keys-from FILE.csv is required");
    if (c->links || c->sellers)
      usage_error("read: --links and --sellers belong to ingest and all");
    break;
  case CMD_ALL:
    if (!c->sellers && c->quick)
      c->sellers = 5000;
    if (!c->sellers)
      usage_error("all: --sellers N is required");
    if (c->links || c->addr || c->data || c->keys_from)
      usage_error("all: --links, --addr, --data and --keys-from do not apply");
    break;
  case CMD_CLUSTER:
    if (!c->links && !c->sellers)
      c->sellers = c->quick ? 5000 : 1000000;
    if (c->links && c->sellers)
      usage_error("cluster: give at most one of --links FILE and --sellers N");
    if (c->addr || c->data || c->keys_from)
      usage_error("cluster: --addr, --data and --keys-from do not apply");
    break;
  case CMD_BULK:
    if (!c->links && !c->sellers)
      c->sellers = c->quick ? 5000 : 1000000;
    if (c->links && c->sellers)
      usage_error("bulk: give at most one of --links FILE and --sellers N");
    if (c->addr || c->data || c->keys_from)
      usage_error("bulk: --addr, --data and --keys-from do not apply (it spawns its own "
                  "daemons)");
    break;
  case CMD_SECURITY:
    if (!c->links && !c->sellers)
      c->sellers = c->quick ? 5000 : 200000;
    if (c->links && c->sellers)
      usage_error("security: give at most one of --links FILE and --sellers N");
    if (c->addr || c->data || c->keys_from)
      usage_error("security: --addr, --data and --keys-from do not apply (it spawns its own "
                  "daemons)");
    break;
  case CMD_SCALE:
    if (c->links || c->sellers || c->addr || c->data || c->keys_from)
      usage_error("scale: --links, --sellers, --addr, --data and --keys-from do not apply "
                  "(--sizes gives the seller counts)");
    if (!c->n_sizes) {
      static const uint64_t full[] = {100000, 300000, 1000000, 3000000}, quick[] = {2000, 5000};
      const uint64_t *v = c->quick ? quick : full;
      c->n_sizes = c->quick ? 2 : 4;
      memcpy(c->sizes, v, (size_t)c->n_sizes * sizeof *v);
    }
    break;
  case CMD_METRICS:
  case CMD_GATEWAY:
  case CMD_WARM:
  case CMD_PLACE:
    if (!c->links && !c->sellers)
      c->sellers = c->quick ? 5000 : 200000;
    if (c->links && c->sellers)
      usage_error("%s: give at most one of --links FILE and --sellers N", c->cmd_name);
    if (c->addr || c->data || c->keys_from)
      usage_error("%s: --addr, --data and --keys-from do not apply (it spawns its own "
                  "daemons)", c->cmd_name);
    break;
  }
}

/* ==================================================================== */
/* Machine and command line                                               */

static char *read_cmd_line(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (!p)
    return NULL;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  int rc = pclose(p);
  buf[n] = '\0';
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  if (rc != 0 || n == 0)
    return NULL;
  return xstrdup(buf);
}

static const char *fs_name(long type) {
  switch ((unsigned long)type) {
  case 0xEF53: return "ext4";
  case 0x01021994: return "tmpfs";
  case 0x58465342: return "xfs";
  case 0x9123683E: return "btrfs";
  case 0x794c7630: return "overlayfs";
  case 0x6969: return "nfs";
  case 0x2FC12FC1: return "zfs";
  default: return "other";
  }
}

static void loadavg(double ret[3]) {
  ret[0] = ret[1] = ret[2] = NAN;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf %lf %lf", &ret[0], &ret[1], &ret[2]) != 3)
      ret[0] = ret[1] = ret[2] = NAN;
    fclose(f);
  }
}

static json_object *machine_info(const bench_cfg *cfg) {
  json_object *m = json_object_new_object();
  long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  char cpu[256] = "unknown", line[512];
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "model name", 10)) {
        char *v = strchr(line, ':');
        if (v) {
          v++;
          while (*v == ' ' || *v == '\t')
            v++;
          v[strcspn(v, "\n")] = '\0';
          snprintf(cpu, sizeof cpu, "%s", v);
        }
        break;
      }
    fclose(f);
  }
  struct utsname u;
  uname(&u);
  long long memkb = 0;
  f = fopen("/proc/meminfo", "r");
  if (f) {
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "MemTotal: %lld kB", &memkb) == 1)
        break;
    fclose(f);
  }
  char *cmd = xasprintf("git -C '%s' describe --always --tags 2>/dev/null", GD_BENCH_SRCDIR);
  char *git = read_cmd_line(cmd);
  free(cmd);
  /* --no-optional-locks: status must not rewrite the index. */
  cmd = xasprintf("git -C '%s' --no-optional-locks status --porcelain --untracked-files=no "
                  "2>/dev/null | wc -l",
                  GD_BENCH_SRCDIR);
  char *dirty = read_cmd_line(cmd);
  free(cmd);
  struct statfs sfs;
  const char *fs = statfs(cfg->workdir, &sfs) == 0 ? fs_name((long)sfs.f_type) : "unknown";
  double la[3];
  loadavg(la);

  json_object_object_add(m, "nproc", json_object_new_int64(nproc));
  json_object_object_add(m, "cpu", json_object_new_string(cpu));
  json_object_object_add(m, "mem_bytes", json_object_new_int64(memkb * 1024));
  json_object_object_add(m, "kernel", json_object_new_string(u.release));
  json_object_object_add(m, "hostname", json_object_new_string(u.nodename));
  json_object_object_add(m, "git", git ? json_object_new_string(git) : NULL);
  json_object_object_add(m, "git_modified_tracked_files",
                         dirty ? json_object_new_int64(atoll(dirty)) : NULL);
  json_object_object_add(m, "workdir", json_object_new_string(cfg->workdir));
  json_object_object_add(m, "workdir_fs", json_object_new_string(fs));
  json_object *jla = json_object_new_array();
  for (int i = 0; i < 3; i++)
    json_object_array_add(jla, json_object_new_double(la[i]));
  json_object_object_add(m, "loadavg_start", jla);

  printf("machine: nproc=%ld cpu=\"%s\" mem=%.1f GiB kernel=%s\n", nproc, cpu,
         (double)memkb / (1024.0 * 1024), u.release);
  printf("source:  git %s (%s tracked file(s) modified) at %s\n", git ? git : "unknown",
         dirty ? dirty : "?", GD_BENCH_SRCDIR);
  printf("workdir: %s (%s)  loadavg at start: %.2f %.2f %.2f\n", cfg->workdir, fs, la[0], la[1],
         la[2]);
  if (!strcmp(fs, "tmpfs"))
    printf("WARNING: the workdir is on tmpfs: fsync is free, durable figures mean little\n");
  free(git);
  free(dirty);
  return m;
}

static char *command_line(int argc, char **argv) {
  size_t cap = 64, n = 0;
  char *s = xmalloc(cap);
  s[0] = '\0';
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool quote = !*a || strpbrk(a, " \t\n'\"\\$`*?;&|<>()") != NULL;
    size_t need = strlen(a) * 4 + 4;
    if (n + need + 1 > cap) {
      cap = (n + need + 1) * 2;
      s = xrealloc(s, cap);
    }
    if (i)
      s[n++] = ' ';
    if (quote) {
      s[n++] = '\'';
      for (const char *p = a; *p; p++) {
        if (*p == '\'') {
          memcpy(s + n, "'\\''", 4);
          n += 4;
        } else {
          s[n++] = *p;
        }
      }
      s[n++] = '\'';
    } else {
      memcpy(s + n, a, strlen(a));
      n += strlen(a);
    }
    s[n] = '\0';
  }
  return s;
}

/* ==================================================================== */
/* The data set: links file loaded once, keys interned                    */

typedef struct kitem {
  uint64_t hash;
  size_t off; /* into the pool; NUL-terminated */
  uint32_t len;
  uint8_t type;
} kitem;

/* Interns (type, bytes) -> dense id; strings live in one pool. */
typedef struct keytab {
  char *pool;
  size_t pool_n, pool_cap;
  kitem *items;
  size_t n, cap;
  uint32_t *slots; /* id + 1; 0 = empty */
  size_t nslots;   /* power of two */
} keytab;

static uint64_t key_hash(int type, const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)type;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

static void keytab_rehash(keytab *t, size_t nslots) {
  free(t->slots);
  t->slots = xcalloc(nslots, sizeof *t->slots);
  t->nslots = nslots;
  for (size_t i = 0; i < t->n; i++) {
    size_t j = t->items[i].hash & (nslots - 1);
    while (t->slots[j])
      j = (j + 1) & (nslots - 1);
    t->slots[j] = (uint32_t)i + 1;
  }
}

static uint32_t keytab_intern(keytab *t, int type, const char *p, size_t n, bool *ret_new) {
  if ((t->n + 1) * 2 > t->nslots)
    keytab_rehash(t, t->nslots ? t->nslots * 2 : 1024);
  uint64_t h = key_hash(type, p, n);
  size_t j = h & (t->nslots - 1);
  for (; t->slots[j]; j = (j + 1) & (t->nslots - 1)) {
    const kitem *it = &t->items[t->slots[j] - 1];
    if (it->hash == h && it->type == type && it->len == n && !memcmp(t->pool + it->off, p, n)) {
      if (ret_new)
        *ret_new = false;
      return t->slots[j] - 1;
    }
  }
  if (t->n >= UINT32_MAX - 1)
    die("too many distinct keys");
  if (t->pool_n + n + 1 > t->pool_cap) {
    t->pool_cap = (t->pool_n + n + 1) * 2;
    t->pool = xrealloc(t->pool, t->pool_cap);
  }
  memcpy(t->pool + t->pool_n, p, n);
  t->pool[t->pool_n + n] = '\0';
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 1024;
    t->items = xrealloc(t->items, t->cap * sizeof *t->items);
  }
  t->items[t->n] = (kitem){h, t->pool_n, (uint32_t)n, (uint8_t)type};
  t->pool_n += n + 1;
  t->slots[j] = (uint32_t)t->n + 1;
  if (ret_new)
    *ret_new = true;
  return (uint32_t)t->n++;
}

static const char *keytab_str(const keytab *t, uint32_t id) { return t->pool + t->items[id].off; }

static void keytab_free(keytab *t) {
  free(t->pool);
  free(t->items);
  free(t->slots);
  memset(t, 0, sizeof *t);
}

typedef struct lrec {
  uint32_t a, b; /* raw key ids */
  int64_t seen;
} lrec;

struct dataset { /* typedef dataset in bench_int.h */
  char *path;
  keytab raw;        /* (type, key as written) */
  uint32_t *raw_ent; /* raw id -> entity id */
  size_t raw_ent_cap;
  keytab ent;        /* (type, key normalised as the server does) */
  lrec *links;
  size_t nlinks, links_cap;
  uint64_t distinct_links;
  uint64_t entity_records; /* entity records in the file: ignored */
  uint64_t file_bytes;
  double load_s;
  char *norm_buf;
  size_t norm_cap;
  gd_u64map pairs; /* as a set: distinct entity pairs + 1 */
};

static uint32_t dataset_key(dataset *d, int type, const char *key) {
  size_t n = strlen(key);
  bool is_new;
  uint32_t id = keytab_intern(&d->raw, type, key, n, &is_new);
  if (is_new) {
    if (n + 1 > d->norm_cap) {
      d->norm_cap = (n + 1) * 2;
      d->norm_buf = xrealloc(d->norm_buf, d->norm_cap);
    }
    size_t nn = gc_key_normalize((gd_etype)type, key, n, d->norm_buf);
    uint32_t eid = keytab_intern(&d->ent, type, d->norm_buf, nn, NULL);
    if (id >= d->raw_ent_cap) {
      d->raw_ent_cap = d->raw_ent_cap ? d->raw_ent_cap * 2 : 1024;
      d->raw_ent = xrealloc(d->raw_ent, d->raw_ent_cap * sizeof *d->raw_ent);
    }
    d->raw_ent[id] = eid;
  }
  return id;
}

static int dataset_on_record(void *ud, const gc_ingest_record *rec) {
  dataset *d = ud;
  if (rec->kind != GC_INGEST_LINK) {
    d->entity_records++;
    return 0;
  }
  uint32_t a = dataset_key(d, rec->link.a_type, rec->link.a_key);
  uint32_t b = dataset_key(d, rec->link.b_type, rec->link.b_key);
  if (d->nlinks == d->links_cap) {
    d->links_cap = d->links_cap ? d->links_cap * 2 : 65536;
    d->links = xrealloc(d->links, d->links_cap * sizeof *d->links);
  }
  d->links[d->nlinks++] = (lrec){a, b, rec->link.seen};
  uint64_t ea = d->raw_ent[a], eb = d->raw_ent[b];
  uint64_t pair = ea < eb ? (ea << 32 | eb) : (eb << 32 | ea);
  bool fresh;
  if (!gd_u64map_put(&d->pairs, pair + 1, &fresh))
    die("out of memory");
  d->distinct_links += fresh;
  return 0;
}

static void dataset_load(dataset *d, const char *path) {
  memset(d, 0, sizeof *d);
  d->path = xstrdup(path);
  int64_t t0 = now_ns();
  FILE *f = fopen(path, "rb");
  if (!f)
    die("cannot open %s: %s", path, strerror(errno));
  gc_ingest_parser *p =
      gc_ingest_parser_new(path, gc_ingest_format_for_path(path), dataset_on_record, d);
  if (!p)
    die("out of memory");
  size_t cap = 1 << 20;
  char *buf = xmalloc(cap);
  int rc = GC_INGEST_OK;
  size_t n;
  while (rc == GC_INGEST_OK && (n = fread(buf, 1, cap, f)) > 0) {
    d->file_bytes += n;
    rc = gc_ingest_parser_feed(p, buf, n);
  }
  if (ferror(f))
    die("cannot read %s: %s", path, strerror(errno));
  if (rc == GC_INGEST_OK)
    rc = gc_ingest_parser_finish(p);
  if (rc != GC_INGEST_OK)
    die("%s", rc == GC_INGEST_EDATA ? gc_ingest_parser_error(p) : "parser failed (out of memory)");
  gc_ingest_parser_free(p);
  free(buf);
  fclose(f);
  gd_u64map_free(&d->pairs);
  free(d->norm_buf);
  d->norm_buf = NULL;
  d->load_s = (double)(now_ns() - t0) / 1e9;
  if (d->nlinks == 0)
    die("%s: no links", path);
}

static void dataset_free(dataset *d) {
  keytab_free(&d->raw);
  keytab_free(&d->ent);
  free(d->raw_ent);
  free(d->links);
  free(d->path);
  memset(d, 0, sizeof *d);
}

dataset *dataset_open(const char *path) {
  dataset *d = xmalloc(sizeof *d);
  dataset_load(d, path);
  return d;
}

void dataset_close(dataset *d) {
  if (d)
    dataset_free(d);
  free(d);
}

size_t dataset_links(const dataset *d) { return d->nlinks; }

uint64_t dataset_distinct_links(const dataset *d) { return d->distinct_links; }

int64_t dataset_link_seen(const dataset *d, size_t i) { return d->links[i].seen; }

typedef struct lrec_pos {
  lrec l;
  size_t pos;
} lrec_pos;

static int cmp_lrec_pos(const void *pa, const void *pb) {
  const lrec_pos *a = pa, *b = pb;
  if (a->l.seen != b->l.seen)
    return a->l.seen < b->l.seen ? -1 : 1;
  return (a->pos > b->pos) - (a->pos < b->pos);
}

void dataset_sort_by_seen(dataset *d) {
  lrec_pos *t = xmalloc((d->nlinks ? d->nlinks : 1) * sizeof *t);
  for (size_t i = 0; i < d->nlinks; i++)
    t[i] = (lrec_pos){d->links[i], i};
  qsort(t, d->nlinks, sizeof *t, cmp_lrec_pos);
  for (size_t i = 0; i < d->nlinks; i++)
    d->links[i] = t[i].l;
  free(t);
}

size_t dataset_hold_back_sellers(dataset *d, size_t want, uint64_t seed, size_t *ret_sellers) {
  size_t ne = d->ent.n, ns = 0;
  uint32_t *cnt = xcalloc(ne, sizeof *cnt); /* link records per seller */
  for (size_t i = 0; i < d->nlinks; i++) {
    uint32_t ea = d->raw_ent[d->links[i].a], eb = d->raw_ent[d->links[i].b];
    if (d->ent.items[ea].type == GD_TYPE_SELLER)
      cnt[ea]++;
    if (eb != ea && d->ent.items[eb].type == GD_TYPE_SELLER)
      cnt[eb]++;
  }
  /* The sellers in a seeded random order: hash in the high half, id low. */
  uint64_t *order = xmalloc((ne ? ne : 1) * sizeof *order);
  for (size_t e = 0; e < ne; e++)
    if (cnt[e])
      order[ns++] = (mix64(seed * 0x9e3779b97f4a7c15ULL + e) & ~0xffffffffULL) | e;
  qsort(order, ns, sizeof *order, cmp_u64);
  uint8_t *held = xcalloc(ne, 1);
  size_t got = 0, sellers = 0;
  for (size_t k = 0; k < ns && (got < want || !sellers); k++) {
    uint32_t e = (uint32_t)(order[k] & 0xffffffffULL);
    held[e] = 1;
    got += cnt[e];
    sellers++;
  }
  lrec *t = xmalloc((d->nlinks ? d->nlinks : 1) * sizeof *t);
  size_t n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < d->nlinks; i++) {
      bool h = held[d->raw_ent[d->links[i].a]] || held[d->raw_ent[d->links[i].b]];
      if (h == (pass == 1))
        t[n++] = d->links[i];
    }
  size_t moved = 0;
  for (size_t i = 0; i < d->nlinks; i++)
    moved += held[d->raw_ent[d->links[i].a]] || held[d->raw_ent[d->links[i].b]];
  memcpy(d->links, t, d->nlinks * sizeof *t);
  free(t);
  free(held);
  free(order);
  free(cnt);
  *ret_sellers = sellers;
  return moved;
}

/* ---- batches for gRPC ---- */

typedef struct pb_batches {
  size_t n;
  Graphd__V1__UpsertRequest *reqs;
  Graphd__V1__LinkInput *lin;
  Graphd__V1__LinkInput **lptr;
  Graphd__V1__EntityRef *refs;
} pb_batches;

static void pb_batches_build(const dataset *d, size_t batch, pb_batches *ret) {
  pb_batches b = {0};
  b.n = (d->nlinks + batch - 1) / batch;
  b.reqs = xcalloc(b.n, sizeof *b.reqs);
  b.lin = xcalloc(d->nlinks, sizeof *b.lin);
  b.lptr = xcalloc(d->nlinks, sizeof *b.lptr);
  b.refs = xcalloc(2 * d->nlinks, sizeof *b.refs);
  for (size_t i = 0; i < d->nlinks; i++) {
    const lrec *l = &d->links[i];
    Graphd__V1__EntityRef *ra = &b.refs[2 * i], *rb = &b.refs[2 * i + 1];
    graphd__v1__entity_ref__init(ra);
    graphd__v1__entity_ref__init(rb);
    ra->type = (Graphd__V1__EntityType)d->raw.items[l->a].type;
    ra->key = (char *)keytab_str(&d->raw, l->a);
    rb->type = (Graphd__V1__EntityType)d->raw.items[l->b].type;
    rb->key = (char *)keytab_str(&d->raw, l->b);
    graphd__v1__link_input__init(&b.lin[i]);
    b.lin[i].a = ra;
    b.lin[i].b = rb;
    b.lin[i].seen = l->seen;
    b.lptr[i] = &b.lin[i];
  }
  for (size_t k = 0; k < b.n; k++) {
    size_t first = k * batch, cnt = d->nlinks - first < batch ? d->nlinks - first : batch;
    graphd__v1__upsert_request__init(&b.reqs[k]);
    b.reqs[k].links = &b.lptr[first];
    b.reqs[k].n_links = cnt;
  }
  *ret = b;
}

static void pb_batches_free(pb_batches *b) {
  free(b->reqs);
  free(b->lin);
  free(b->lptr);
  free(b->refs);
  memset(b, 0, sizeof *b);
}

/* ---- batches for the store ---- */

typedef struct store_batches {
  size_t n;
  gd_upsert *ups;
  gd_link_in *links;
  char *pool; /* keys normalised by gd_key_normalize, per raw key */
  size_t *off;
  uint32_t *len;
  void **index; /* each batch's gd_upsert_index, as graphd's decoding
                   threads build an Ingest message's */
} store_batches;

static void store_batches_build(const dataset *d, size_t batch, store_batches *ret) {
  store_batches s = {0};
  size_t nraw = d->raw.n;
  s.off = xcalloc(nraw, sizeof *s.off);
  s.len = xcalloc(nraw, sizeof *s.len);
  s.pool = xmalloc(d->raw.pool_n + 1);
  size_t used = 0;
  for (uint32_t i = 0; i < nraw; i++) {
    const kitem *it = &d->raw.items[i];
    size_t n = 0;
    gd_err err;
    if (gd_key_normalize(it->type, (gd_str){d->raw.pool + it->off, it->len}, s.pool + used, &n,
                         &err))
      die("gd_key_normalize(%s '%s'): %s", gd_type_name(it->type), d->raw.pool + it->off,
          err.msg);
    s.off[i] = used;
    s.len[i] = (uint32_t)n;
    used += n;
  }
  s.links = xcalloc(d->nlinks, sizeof *s.links);
  for (size_t i = 0; i < d->nlinks; i++) {
    const lrec *l = &d->links[i];
    s.links[i].a = (gd_ref){0, d->raw.items[l->a].type, {s.pool + s.off[l->a], s.len[l->a]}};
    s.links[i].b = (gd_ref){0, d->raw.items[l->b].type, {s.pool + s.off[l->b], s.len[l->b]}};
    s.links[i].seen = l->seen;
  }
  s.n = (d->nlinks + batch - 1) / batch;
  s.ups = xcalloc(s.n, sizeof *s.ups);
  for (size_t k = 0; k < s.n; k++) {
    size_t first = k * batch, cnt = d->nlinks - first < batch ? d->nlinks - first : batch;
    s.ups[k] = (gd_upsert){.links = &s.links[first], .nlinks = cnt};
  }
  s.index = xcalloc(s.n, sizeof *s.index);
  for (size_t k = 0; k < s.n; k++) {
    s.index[k] = xcalloc(1, gd_upsert_index_size(&s.ups[k]));
    gd_upsert_index(&s.ups[k], s.index[k]);
  }
  *ret = s;
}

static void store_batches_free(store_batches *s) {
  for (size_t k = 0; s->index && k < s->n; k++)
    free(s->index[k]);
  free(s->index);
  free(s->ups);
  free(s->links);
  free(s->pool);
  free(s->off);
  free(s->len);
  memset(s, 0, sizeof *s);
}

/* ==================================================================== */
/* Spawning processes                                                      */

void describe_status(int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else
    snprintf(buf, size, "status 0x%x", status);
}

void print_log_tail(const char *path) {
  FILE *f = path ? fopen(path, "r") : NULL;
  if (!f)
    return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
  char buf[4001];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  fprintf(stderr, "---- last lines of %s ----\n%s---- end ----\n", path, buf);
}

/* Runs sellergen; dies when it fails. */
void run_sellergen(const bench_cfg *cfg, const char *outdir) {
  char sellers[32], seed[32];
  snprintf(sellers, sizeof sellers, "%" PRIu64, cfg->sellers);
  snprintf(seed, sizeof seed, "%" PRIu64, cfg->seed);
  const char *argv[MAX_SELLERGEN_ARGS + 8];
  int n = 0;
  argv[n++] = cfg->sellergen;
  argv[n++] = "--sellers";
  argv[n++] = sellers;
  argv[n++] = "--seed";
  argv[n++] = seed;
  argv[n++] = "--out";
  argv[n++] = outdir;
  for (int i = 0; i < cfg->n_sellergen_args; i++)
    argv[n++] = cfg->sellergen_args[i];
  argv[n] = NULL;
  fprintf(stderr, "graphd-bench:");
  for (int i = 0; i < n; i++)
    fprintf(stderr, " %s", argv[i]);
  fputc('\n', stderr);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
      dup2(devnull, 1);
    execv(cfg->sellergen, (char *const *)argv);
    fprintf(stderr, "graphd-bench: cannot run %s: %s\n", cfg->sellergen, strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char d[128];
    describe_status(status, d, sizeof d);
    die("sellergen failed (%s)", d);
  }
}

/*
 * Starts graphd on data_dir, listening on a free loopback port, and waits
 * for its "listening on HOST:PORT" line. Its stderr goes to log_path.
 * Returns false (with an anomaly recorded) when it does not come up.
 */
bool daemon_start(const bench_cfg *cfg, const char *data_dir, const char *log_path,
                  daemon_proc *d) {
  memset(d, 0, sizeof *d);
  d->log_path = xstrdup(log_path);
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0)
    die("pipe: %s", strerror(errno));
  int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0)
    die("cannot create %s: %s", log_path, strerror(errno));
  const char *argv[MAX_GRAPHD_ARGS + 8];
  int n = 0;
  argv[n++] = cfg->graphd;
  argv[n++] = "--data";
  argv[n++] = data_dir;
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  for (int i = 0; i < cfg->n_graphd_args; i++)
    argv[n++] = cfg->graphd_args[i];
  argv[n] = NULL;

  int64_t t0 = now_ns();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(logfd, 2);
    signal(SIGPIPE, SIG_DFL);
    execv(cfg->graphd, (char *const *)argv);
    fprintf(stderr, "graphd-bench: cannot run %s: %s\n", cfg->graphd, strerror(errno));
    _exit(127);
  }
  children_add(pid);
  close(pfd[1]);
  close(logfd);
  d->pid = pid;
  d->out_fd = pfd[0];

  char line[512];
  size_t got = 0;
  int64_t deadline = t0 + (int64_t)cfg->start_timeout_ms * 1000000;
  for (;;) {
    int64_t left = (deadline - now_ns()) / 1000000;
    if (left <= 0) {
      anomaly("graphd (pid %d) printed no listening line within %d ms; see %s", (int)pid,
              cfg->start_timeout_ms, log_path);
      break;
    }
    struct pollfd p = {d->out_fd, POLLIN, 0};
    int rc = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc == 0)
      continue;
    ssize_t r = read(d->out_fd, line + got, sizeof line - 1 - got);
    if (r <= 0) {
      int status = 0;
      char desc[128] = "still running";
      for (int tries = 0; tries < 200; tries++) { /* it is probably exiting */
        if (waitpid(pid, &status, WNOHANG) == pid) {
          children_remove(pid);
          d->pid = 0;
          describe_status(status, desc, sizeof desc);
          break;
        }
        usleep(10000);
      }
      anomaly("graphd closed stdout before its listening line (%s); see %s", desc, log_path);
      print_log_tail(log_path);
      break;
    }
    got += (size_t)r;
    line[got] = '\0';
    char *nl;
    /* With --http-listen an "http listening on" line comes first. */
    while ((nl = strchr(line, '\n')) && strncmp(line, "http listening on ", 18) == 0) {
      size_t rest = got - (size_t)(nl + 1 - line);
      memmove(line, nl + 1, rest + 1);
      got = rest;
    }
    if (nl) {
      *nl = '\0';
      if (sscanf(line, "listening on %159s", d->addr) == 1) {
        d->start_s = (double)(now_ns() - t0) / 1e9;
        return true;
      }
      anomaly("graphd printed '%s' instead of 'listening on HOST:PORT'", line);
      break;
    }
    if (got == sizeof line - 1) {
      anomaly("graphd printed an overlong first line");
      break;
    }
  }
  if (d->pid) {
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    children_remove(d->pid);
    d->pid = 0;
  }
  close(d->out_fd);
  d->out_fd = -1;
  return false;
}

/* SIGTERM, then waits for the exit; SIGKILL after the stop timeout. */
void daemon_stop(const bench_cfg *cfg, daemon_proc *d, daemon_exit *ret) {
  memset(ret, 0, sizeof *ret);
  if (!d->pid)
    return;
  int64_t t0 = now_ns();
  kill(d->pid, SIGTERM);
  int status = 0;
  for (;;) {
    pid_t w = waitpid(d->pid, &status, WNOHANG);
    if (w == d->pid)
      break;
    if (w < 0 && errno != EINTR)
      die("waitpid: %s", strerror(errno));
    if (now_ns() - t0 > (int64_t)cfg->stop_timeout_ms * 1000000) {
      ret->hung = true;
      anomaly("graphd (pid %d) did not exit within %d ms of SIGTERM: killed; see %s",
              (int)d->pid, cfg->stop_timeout_ms, d->log_path);
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &status, 0);
      break;
    }
    usleep(5000);
  }
  ret->stop_s = (double)(now_ns() - t0) / 1e9;
  ret->status = status;
  describe_status(status, ret->desc, sizeof ret->desc);
  ret->exited_ok = !ret->hung && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ret->exited_ok && !ret->hung) {
    anomaly("graphd (pid %d) ended with %s after SIGTERM (expected exit 0); see %s", (int)d->pid,
            ret->desc, d->log_path);
    print_log_tail(d->log_path);
  }
  children_remove(d->pid);
  d->pid = 0;
  if (d->out_fd >= 0)
    close(d->out_fd);
  d->out_fd = -1;
}

/* Checks that a daemon we talk to is still alive; records an anomaly. */
bool daemon_alive(daemon_proc *d, const char *when) {
  if (!d->pid)
    return false;
  int status;
  if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
    char desc[128];
    describe_status(status, desc, sizeof desc);
    anomaly("graphd (pid %d) died %s: %s; see %s", (int)d->pid, when, desc, d->log_path);
    print_log_tail(d->log_path);
    children_remove(d->pid);
    d->pid = 0;
    return false;
  }
  return true;
}

void daemon_free(daemon_proc *d) {
  free(d->log_path);
  d->log_path = NULL;
}

bool daemon_finish(const bench_cfg *cfg, daemon_proc *d, const char *when, daemon_exit *ret) {
  bool alive = d->pid && daemon_alive(d, when);
  daemon_stop(cfg, d, ret);
  daemon_free(d);
  return alive && ret->exited_ok;
}

int bench_log_port(const char *log_path, const char *marker) {
  size_t mlen = strlen(marker);
  for (int tries = 0; tries < 100; tries++) {
    FILE *f = fopen(log_path, "r");
    char line[1024];
    int port = 0;
    while (f && !port && fgets(line, sizeof line, f)) {
      char *p = strstr(line, marker);
      if (!p)
        continue;
      p += mlen;
      p[strcspn(p, " \t\r\n")] = '\0'; /* the word: PORT or HOST:PORT */
      char *colon = strrchr(p, ':');
      port = atoi(colon ? colon + 1 : p);
    }
    if (f)
      fclose(f);
    if (port > 0)
      return port;
    usleep(50000);
  }
  return 0;
}

/* ==================================================================== */
/* Ingest                                                                  */

typedef struct ref_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t remaining;
  int64_t t_done;
  gd_totals totals;
  uint64_t failed;
  gd_err first_err;
  /* --ref-window: ops still to submit, from the done callbacks */
  gd_writer *w;
  struct ref_op *ops;
  size_t next, n;
  bool windowed;
} ref_ctx;

typedef struct ref_op {
  gd_write_op op;
  ref_ctx *ctx;
  const gd_upsert *u;
  gd_upsert_result res;
} ref_op;

static int ref_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  ref_op *o = (ref_op *)wop;
  memset(&o->res, 0, sizeof o->res); /* the writer may apply an op twice */
  return gd_store_upsert(t, o->u, &o->res, err);
}

static void ref_done(gd_write_op *wop, const gd_err *err) {
  ref_op *o = (ref_op *)wop;
  ref_ctx *c = o->ctx;
  pthread_mutex_lock(&c->mu);
  if (err->code) {
    if (!c->failed++)
      c->first_err = *err;
  } else {
    c->totals.entities_created += o->res.totals.entities_created;
    c->totals.entities_updated += o->res.totals.entities_updated;
    c->totals.links_created += o->res.totals.links_created;
    c->totals.links_updated += o->res.totals.links_updated;
  }
  if (--c->remaining == 0) {
    c->t_done = now_ns();
    pthread_cond_signal(&c->cv);
  }
  struct ref_op *more = c->windowed && c->next < c->n ? &c->ops[c->next++] : NULL;
  pthread_mutex_unlock(&c->mu);
  /* The writer calls done() without its lock held, so submitting is fine. */
  if (more)
    gd_writer_submit(c->w, &more->op);
}

typedef struct ref_result {
  double seconds, links_per_s;
  gd_totals totals;
  uint64_t commits, grows;
  uint64_t dir_apparent, dir_alloc;
  double open_s, close_s;
  double cpu_s; /* this process, over the timed part: the writer's work */
  double writer_cpu_s, writer_wait_s; /* its writer thread (thread_sched) */
  bool ok;
} ref_result;

/* What graphd's Ingest charges a message (gd_write_op.bytes, its write
 * budget): the bytes protobuf-c allocates to decode it, plus the message
 * on the wire. */
static void *count_alloc(void *data, size_t n) {
  *(size_t *)data += n;
  return malloc(n);
}
static void count_free(void *data, void *p) {
  (void)data;
  free(p);
}
static size_t ingest_charge(const Graphd__V1__UpsertRequest *m) {
  size_t n = protobuf_c_message_get_packed_size(&m->base), decoded = 0;
  uint8_t *buf = xcalloc(n ? n : 1, 1);
  protobuf_c_message_pack(&m->base, buf);
  ProtobufCAllocator a = {count_alloc, count_free, &decoded};
  ProtobufCMessage *u = protobuf_c_message_unpack(&graphd__v1__upsert_request__descriptor, &a, n, buf);
  if (!u)
    die("reference: an UpsertRequest does not decode");
  protobuf_c_message_free_unpacked(u, &a);
  free(buf);
  return decoded + n;
}

static void run_reference(const bench_cfg *cfg, const char *run_dir, const dataset *d,
                          const store_batches *sb, const pb_batches *pb, ref_result *ret) {
  memset(ret, 0, sizeof *ret);
  char *dir = xasprintf("%s/ref-data", run_dir);
  gd_store_opts so = {.path = dir};
  gd_store *store = NULL;
  gd_writer *w = NULL;
  gd_err err;
  int64_t t_open = now_ns();
  if (gd_store_open(&so, &store, &err))
    die("reference: gd_store_open(%s): %s", dir, err.msg);
  if (gd_writer_start(store, 0, &w, &err))
    die("reference: gd_writer_start: %s", err.msg);
  ret->open_s = (double)(now_ns() - t_open) / 1e9;

  ref_ctx ctx = {.remaining = sb->n, .w = w, .n = sb->n, .windowed = cfg->ref_window > 0};
  pthread_mutex_init(&ctx.mu, NULL);
  pthread_cond_init(&ctx.cv, NULL);
  ref_op *ops = xcalloc(sb->n, sizeof *ops);
  for (size_t i = 0; i < sb->n; i++) {
    ops[i].op.apply = ref_apply;
    ops[i].op.done = ref_done;
    /* As graphd queues an Ingest message: bulk, charged what it charges. */
    ops[i].op.bulk = true;
    ops[i].op.bytes = ingest_charge(&pb->reqs[i]);
    ops[i].ctx = &ctx;
    ops[i].u = &sb->ups[i];
  }
  ctx.ops = ops;
  size_t first = ctx.windowed && (size_t)cfg->ref_window < sb->n ? (size_t)cfg->ref_window : sb->n;
  double cpu0 = self_cpu_s(), wcpu0, wwait0, wcpu1, wwait1;
  pid_t wtid = 0; /* the thread names itself once it runs */
  for (int i = 0; i < 100 && !(wtid = proc_thread(getpid(), "gd-writer")); i++)
    usleep(1000);
  thread_sched(getpid(), wtid, &wcpu0, &wwait0);
  int64_t t0 = now_ns();
  pthread_mutex_lock(&ctx.mu);
  ctx.next = first; /* done callbacks may run before this loop ends */
  pthread_mutex_unlock(&ctx.mu);
  for (size_t i = 0; i < first; i++)
    gd_writer_submit(w, &ops[i].op);
  pthread_mutex_lock(&ctx.mu);
  while (ctx.remaining)
    pthread_cond_wait(&ctx.cv, &ctx.mu);
  pthread_mutex_unlock(&ctx.mu);
  ret->cpu_s = self_cpu_s() - cpu0;
  thread_sched(getpid(), wtid, &wcpu1, &wwait1);
  ret->writer_cpu_s = wcpu1 - wcpu0;
  ret->writer_wait_s = wwait1 - wwait0;
  if (!isfinite(ret->writer_cpu_s))
    anomaly("reference: no CPU time for its writer thread (no thread named gd-writer)");
  ret->seconds = (double)(ctx.t_done - t0) / 1e9;
  ret->links_per_s = (double)d->nlinks / ret->seconds;
  ret->totals = ctx.totals;

  gd_writer_stats ws;
  gd_writer_stats_get(w, &ws);
  ret->commits = ws.commits;
  ret->grows = ws.grows;
  int64_t t_close = now_ns();
  gd_writer_stop(w);
  gd_store_close(store);
  ret->close_s = (double)(now_ns() - t_close) / 1e9;
  dir_bytes(dir, &ret->dir_apparent, &ret->dir_alloc);
  ret->ok = ctx.failed == 0;
  if (ctx.failed)
    anomaly("reference: %" PRIu64 " of %zu batches failed; first: %s", ctx.failed, sb->n,
            ctx.first_err.msg);
  pthread_mutex_destroy(&ctx.mu);
  pthread_cond_destroy(&ctx.cv);
  free(ops);
  if (!cfg->keep)
    rm_rf(dir);
  free(dir);
}

typedef struct graphd_result {
  double seconds, links_per_s;
  gd_totals totals;
  uint64_t messages, duplicates;
  uint64_t stats_links, stats_commits, stats_requests, stats_lmdb_bytes;
  bool stats_ok;
  int64_t peak_rss, rss_end;
  double daemon_cpu_s, client_cpu_s;
  double writer_cpu_s, writer_wait_s; /* the daemon's gd-writer thread */
  double start_s;
  daemon_exit exit;
  uint64_t dir_apparent, dir_alloc;
  bool ok; /* the rpc succeeded and every check passed */
  int code;
  char message[GC_STATUS_MSG_MAX];
} graphd_result;

static bool check_eq(const char *what, uint64_t got, uint64_t want) {
  if (got == want)
    return true;
  anomaly("graphd Ingest: %s is %" PRIu64 ", expected %" PRIu64, what, got, want);
  return false;
}

/*
 * One graphd ingest run into data_dir (fresh). The daemon is stopped at
 * the end in every case.
 */
static void run_graphd_ingest(const bench_cfg *cfg, const char *run_dir, const char *data_dir,
                              const dataset *d, const pb_batches *pb, graphd_result *ret) {
  memset(ret, 0, sizeof *ret);
  ret->peak_rss = -1;
  ret->daemon_cpu_s = ret->writer_cpu_s = ret->writer_wait_s = NAN;
  char *log = xasprintf("%s/graphd-ingest.log", run_dir);
  daemon_proc dp;
  if (!daemon_start(cfg, data_dir, log, &dp)) {
    free(log);
    daemon_free(&dp);
    ret->code = GRPC_STATUS_UNAVAILABLE;
    snprintf(ret->message, sizeof ret->message, "graphd did not start");
    return;
  }
  free(log);
  ret->start_s = dp.start_s;

  gc_client *c = NULL;
  gc_status st;
  gc_client_opts co = {.own_connection = true};
  if (gc_client_open(dp.addr, &co, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
    anomaly("graphd Ingest: cannot connect to %s: %s", dp.addr, st.message);
    ret->code = st.code;
    snprintf(ret->message, sizeof ret->message, "%s", st.message);
    goto stop;
  }
  /* An explicit deadline: graphd gives a call without one its
   * --default-deadline-ms (60 s), which a large load (6M links) exceeds.
   * One hour is graphd's default --max-deadline-ms clamp. */
  gc_stream_opts sopts = {.step_timeout_ms = cfg->step_timeout_ms, .deadline_ms = 3600000};
  gc_stream *s = NULL;
  if (gc_stream_open(c, SVC "Ingest", &sopts, &s, &st))
    die("gc_stream_open: %s", st.message);

  double cpu0 = self_cpu_s(), dcpu0 = proc_cpu_s(dp.pid), wcpu0, wwait0, wcpu1, wwait1;
  pid_t wtid = proc_thread(dp.pid, "gd-writer");
  thread_sched(dp.pid, wtid, &wcpu0, &wwait0);
  int64_t t0 = now_ns();
  int code = GRPC_STATUS_OK;
  size_t i;
  for (i = 0; i < pb->n && code == GRPC_STATUS_OK; i++)
    code = gc_stream_send(s, &pb->reqs[i].base, &st);
  Graphd__V1__IngestReply *rep = NULL;
  if (code == GRPC_STATUS_OK)
    code = gc_stream_finish(s, &graphd__v1__ingest_reply__descriptor, (ProtobufCMessage **)&rep,
                            &st);
  int64_t t1 = now_ns();
  ret->client_cpu_s = self_cpu_s() - cpu0;
  ret->daemon_cpu_s = proc_cpu_s(dp.pid) - dcpu0;
  thread_sched(dp.pid, wtid, &wcpu1, &wwait1);
  ret->writer_cpu_s = wcpu1 - wcpu0;
  ret->writer_wait_s = wwait1 - wwait0;
  if (!isfinite(ret->writer_cpu_s))
    anomaly("graphd Ingest: no CPU time for the daemon's writer thread (no thread named "
            "gd-writer in /proc/%d/task)", (int)dp.pid);
  uint64_t accepted = gc_stream_messages_sent(s);
  gc_stream_free(s);
  ret->code = code;
  snprintf(ret->message, sizeof ret->message, "%s", code ? st.message : "");
  if (code) {
    anomaly("graphd Ingest failed (%" PRIu64 " of %zu messages accepted by the client "
            "library): %s: %s",
            accepted, pb->n, gc_status_code_name(code), st.message);
    daemon_alive(&dp, "during Ingest");
  } else {
    ret->seconds = (double)(t1 - t0) / 1e9;
    ret->links_per_s = (double)d->nlinks / ret->seconds;
    ret->messages = rep->messages;
    ret->duplicates = rep->duplicates;
    if (rep->totals) {
      ret->totals.entities_created = rep->totals->entities_created;
      ret->totals.entities_updated = rep->totals->entities_updated;
      ret->totals.links_created = rep->totals->links_created;
      ret->totals.links_updated = rep->totals->links_updated;
    }
    bool ok = rep->totals != NULL;
    if (!ok)
      anomaly("graphd Ingest: the reply has no totals");
    ok &= check_eq("messages", rep->messages, pb->n);
    ok &= check_eq("duplicates", rep->duplicates, 0);
    ok &= check_eq("links_created (distinct links)", ret->totals.links_created, d->distinct_links);
    ok &= check_eq("links_created + links_updated (link records sent)",
                   ret->totals.links_created + ret->totals.links_updated, d->nlinks);
    ok &= check_eq("entities_created (distinct entities)", ret->totals.entities_created,
                   d->ent.n);
    ret->ok = ok;
    protobuf_c_message_free_unpacked(&rep->base, NULL);

    /* Stats, outside the timing: the link count and the commit grouping. */
    Graphd__V1__StatsRequest sreq = GRAPHD__V1__STATS_REQUEST__INIT;
    Graphd__V1__StatsReply *srep = NULL;
    if (gc_unary(c, SVC "Stats", &sreq.base, &graphd__v1__stats_reply__descriptor,
                 (ProtobufCMessage **)&srep, &st, cfg->call_timeout_ms) == GRPC_STATUS_OK) {
      ret->stats_ok = true;
      ret->stats_links = srep->links;
      ret->stats_commits = srep->commits;
      ret->stats_requests = srep->committed_requests;
      ret->stats_lmdb_bytes = srep->lmdb_size_bytes;
      ret->ok &= check_eq("Stats.links", srep->links, d->distinct_links);
      protobuf_c_message_free_unpacked(&srep->base, NULL);
    } else {
      anomaly("graphd Stats after Ingest failed: %s: %s", gc_status_code_name(st.code),
              st.message);
      ret->ok = false;
    }
  }
stop:
  gc_client_close(c);
  if (dp.pid && daemon_alive(&dp, "after Ingest")) {
    ret->peak_rss = proc_status_kb(dp.pid, "VmHWM");
    ret->rss_end = proc_status_kb(dp.pid, "VmRSS");
  }
  daemon_stop(cfg, &dp, &ret->exit);
  if (!ret->exit.exited_ok)
    ret->ok = false;
  daemon_free(&dp);
  dir_bytes(data_dir, &ret->dir_apparent, &ret->dir_alloc);
}

bool bench_ingest_range(const bench_cfg *cfg, gc_client *c, const dataset *d, size_t first,
                        size_t n, const char *label, const char *what, double *ret_seconds,
                        uint64_t *ret_records) {
  return bench_load_range(cfg, c, d, first, n, "Ingest", label, what, ret_seconds, ret_records);
}

bool bench_load_range(const bench_cfg *cfg, gc_client *c, const dataset *d, size_t first,
                      size_t n, const char *method, const char *label, const char *what,
                      double *ret_seconds, uint64_t *ret_records) {
  char path[64];
  snprintf(path, sizeof path, SVC "%s", method);
  dataset sub = *d; /* a view of the range: the batches read links and keys only */
  sub.links = d->links + first;
  sub.nlinks = n;
  pb_batches pb;
  pb_batches_build(&sub, cfg->batch, &pb);
  *ret_seconds = NAN;
  *ret_records = 0;
  gc_stream_opts sopts = {.step_timeout_ms = cfg->step_timeout_ms, .deadline_ms = 3600000};
  gc_stream *s = NULL;
  gc_status st;
  int64_t t0 = now_ns();
  int code = gc_stream_open(c, path, &sopts, &s, &st);
  for (size_t i = 0; i < pb.n && code == GRPC_STATUS_OK; i++)
    code = gc_stream_send(s, &pb.reqs[i].base, &st);
  Graphd__V1__IngestReply *rep = NULL;
  if (code == GRPC_STATUS_OK)
    code = gc_stream_finish(s, &graphd__v1__ingest_reply__descriptor, (ProtobufCMessage **)&rep,
                            &st);
  if (code == GRPC_STATUS_OK) {
    *ret_seconds = (double)(now_ns() - t0) / 1e9;
    if (rep->totals)
      *ret_records = rep->totals->links_created + rep->totals->links_updated;
  }
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  gc_stream_free(s);
  pb_batches_free(&pb);
  if (code != GRPC_STATUS_OK) {
    anomaly("%s: %s of %s%zu link records failed: %s: %s", label, method, what, n,
            gc_status_code_name(st.code), st.message);
    return false;
  }
  if (*ret_records != n) {
    anomaly("%s: %s counted %" PRIu64 " link records, %zu sent", label, method, *ret_records, n);
    return false;
  }
  return true;
}

typedef struct ingest_report {
  int repeats;
  ref_result ref[MAX_REPEAT];
  graphd_result gd[MAX_REPEAT];
  double ratio[MAX_REPEAT];
  bool ok;
} ingest_report;

static json_object *jtotals(const gd_totals *t) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "entities_created", json_object_new_uint64(t->entities_created));
  json_object_object_add(o, "entities_updated", json_object_new_uint64(t->entities_updated));
  json_object_object_add(o, "links_created", json_object_new_uint64(t->links_created));
  json_object_object_add(o, "links_updated", json_object_new_uint64(t->links_updated));
  return o;
}

json_object *jdouble_array(const double *v, int n) {
  json_object *a = json_object_new_array();
  for (int i = 0; i < n; i++)
    json_object_array_add(a, json_object_new_double(v[i]));
  return a;
}

/*
 * Runs the ingest comparison. When keep_dir is not NULL, the data dir of
 * the last graphd run is kept and its path returned there.
 */
static json_object *bench_ingest(const bench_cfg *cfg, const char *workroot, const dataset *d,
                                 ingest_report *rep, char **keep_dir) {
  memset(rep, 0, sizeof *rep);
  rep->repeats = cfg->repeat;
  pb_batches pb;
  store_batches sb;
  int64_t t0 = now_ns();
  pb_batches_build(d, cfg->batch, &pb);
  store_batches_build(d, cfg->batch, &sb);
  double build_s = (double)(now_ns() - t0) / 1e9;
  fprintf(stderr, "graphd-bench: %zu links in %zu batches of %zu built in %.2f s\n", d->nlinks,
          pb.n, cfg->batch, build_s);

  rep->ok = true;
  for (int r = 0; r < cfg->repeat; r++) {
    char name[32];
    snprintf(name, sizeof name, "ingest-%d", r + 1);
    char *run_dir = xasprintf("%s/%s", workroot, name);
    if (mkdir(run_dir, 0755) != 0)
      die("mkdir %s: %s", run_dir, strerror(errno));
    char *gdir = xasprintf("%s/graphd-data", run_dir);
    bool ref_first = r % 2 == 0;
    for (int step = 0; step < 2; step++) {
      if ((step == 0) == ref_first) {
        fprintf(stderr, "graphd-bench: ingest %d/%d: reference (store + writer, in-process)...\n",
                r + 1, cfg->repeat);
        run_reference(cfg, run_dir, d, &sb, &pb, &rep->ref[r]);
        fprintf(stderr, "graphd-bench:   reference %.0f links/s (%.3f s, %" PRIu64 " commits)\n",
                rep->ref[r].links_per_s, rep->ref[r].seconds, rep->ref[r].commits);
      } else {
        fprintf(stderr, "graphd-bench: ingest %d/%d: graphd Ingest rpc...\n", r + 1, cfg->repeat);
        run_graphd_ingest(cfg, run_dir, gdir, d, &pb, &rep->gd[r]);
        fprintf(stderr, "graphd-bench:   graphd %.0f links/s (%.3f s)%s\n",
                rep->gd[r].links_per_s, rep->gd[r].seconds, rep->gd[r].ok ? "" : " FAILED");
      }
    }
    const graphd_result *g = &rep->gd[r];
    const ref_result *f = &rep->ref[r];
    rep->ratio[r] = g->code == 0 ? g->links_per_s / f->links_per_s : NAN;
    if (g->code == 0 && f->ok &&
        (g->totals.entities_created != f->totals.entities_created ||
         g->totals.links_created != f->totals.links_created ||
         g->totals.links_updated != f->totals.links_updated ||
         g->totals.entities_updated != f->totals.entities_updated)) {
      anomaly("ingest %d: graphd totals (entities %" PRIu64 "+%" PRIu64 ", links %" PRIu64
              "+%" PRIu64 ") differ from the reference's (entities %" PRIu64 "+%" PRIu64
              ", links %" PRIu64 "+%" PRIu64 ")",
              r + 1, g->totals.entities_created, g->totals.entities_updated,
              g->totals.links_created, g->totals.links_updated, f->totals.entities_created,
              f->totals.entities_updated, f->totals.links_created, f->totals.links_updated);
      rep->gd[r].ok = false;
    }
    rep->ok &= rep->gd[r].ok && f->ok;
    bool last = r == cfg->repeat - 1;
    if (last && keep_dir && g->code == 0) {
      *keep_dir = gdir;
    } else {
      if (!cfg->keep)
        rm_rf(gdir);
      free(gdir);
    }
    free(run_dir);
  }

  /* Figures. */
  int n = cfg->repeat;
  double ref_lps[MAX_REPEAT], gd_lps[MAX_REPEAT], ref_s[MAX_REPEAT], gd_s[MAX_REPEAT];
  double rss[MAX_REPEAT], gbytes[MAX_REPEAT], galloc[MAX_REPEAT], rbytes[MAX_REPEAT];
  double dcpu[MAX_REPEAT], ccpu[MAX_REPEAT], rcommits[MAX_REPEAT], gcommits[MAX_REPEAT];
  double gstart[MAX_REPEAT], gstop[MAX_REPEAT], rcpu[MAX_REPEAT];
  double rwcpu[MAX_REPEAT], rwwait[MAX_REPEAT], gwcpu[MAX_REPEAT], gwwait[MAX_REPEAT];
  for (int r = 0; r < n; r++) {
    rwcpu[r] = rep->ref[r].writer_cpu_s;
    rwwait[r] = rep->ref[r].writer_wait_s;
    gwcpu[r] = rep->gd[r].code == 0 ? rep->gd[r].writer_cpu_s : NAN;
    gwwait[r] = rep->gd[r].code == 0 ? rep->gd[r].writer_wait_s : NAN;
    ref_lps[r] = rep->ref[r].links_per_s;
    ref_s[r] = rep->ref[r].seconds;
    gd_lps[r] = rep->gd[r].code == 0 ? rep->gd[r].links_per_s : NAN;
    gd_s[r] = rep->gd[r].code == 0 ? rep->gd[r].seconds : NAN;
    rss[r] = (double)rep->gd[r].peak_rss;
    gbytes[r] = (double)rep->gd[r].dir_apparent;
    galloc[r] = (double)rep->gd[r].dir_alloc;
    rbytes[r] = (double)rep->ref[r].dir_apparent;
    dcpu[r] = rep->gd[r].daemon_cpu_s;
    ccpu[r] = rep->gd[r].client_cpu_s;
    rcommits[r] = (double)rep->ref[r].commits;
    gcommits[r] = (double)rep->gd[r].stats_commits;
    gstart[r] = rep->gd[r].start_s;
    rcpu[r] = rep->ref[r].cpu_s;
    gstop[r] = rep->gd[r].exit.stop_s;
  }
  double m_ref = median(ref_lps, n), m_gd = median(gd_lps, n);
  double m_ratio = median(rep->ratio, n);
  /* The writer thread's CPU per link record, µs (medians). */
  double rwus = median(rwcpu, n) / (double)d->nlinks * 1e6;
  double gwus = median(gwcpu, n) / (double)d->nlinks * 1e6;

  char b1[64], b2[64], b3[64], b4[64];
  printf("\nINGEST  %zu link records (%" PRIu64 " distinct links, %zu distinct entities), "
         "%zu batches of %zu, durable; median of %d interleaved repeat(s)\n",
         d->nlinks, d->distinct_links, d->ent.n, pb.n, cfg->batch, n);
  printf("  %-26s %14s %10s %10s %12s\n", "", "links/s", "seconds", "commits", "data dir");
  printf("  %-26s %14s %10.3f %10.0f %12s\n", "reference (store, in-proc)",
         fmt_count(b1, sizeof b1, m_ref), median(ref_s, n), median(rcommits, n),
         fmt_bytes(b2, sizeof b2, median(rbytes, n)));
  printf("  %-26s %14s %10.3f %10.0f %12s\n", "graphd Ingest rpc", fmt_count(b3, sizeof b3, m_gd),
         median(gd_s, n), median(gcommits, n), fmt_bytes(b4, sizeof b4, median(gbytes, n)));
  printf("  %-26s %14.3f   (median of per-repeat ratios; ratio of medians %.3f)\n",
         "ratio graphd/reference", m_ratio, m_gd / m_ref);
  printf("  per repeat links/s:  ref");
  for (int r = 0; r < n; r++)
    printf(" %s", fmt_count(b1, sizeof b1, ref_lps[r]));
  printf("   graphd");
  for (int r = 0; r < n; r++)
    printf(" %s", fmt_count(b1, sizeof b1, gd_lps[r]));
  printf("\n");
  printf("  reference: CPU %.2f s (the writer thread; %s)\n", median(rcpu, n),
         cfg->ref_window ? "windowed" : "all batches queued at once");
  printf("  writer thread: CPU µs a link record  ref %.2f  graphd %.2f  (ratio graphd/ref %.3f);\n"
         "                 waiting for a core  ref %.2f s  graphd %.2f s  (medians)\n",
         rwus, gwus, gwus / rwus, median(rwwait, n),
         median(gwwait, n));
  printf("  graphd: peak RSS (VmHWM) %s, data dir %s (%s allocated), daemon CPU %.2f s, "
         "client CPU %.2f s,\n          start %.3f s, SIGTERM->exit %.3f s, exit: %s\n",
         fmt_bytes(b1, sizeof b1, median(rss, n)), fmt_bytes(b2, sizeof b2, median(gbytes, n)),
         fmt_bytes(b3, sizeof b3, median(galloc, n)), median(dcpu, n), median(ccpu, n),
         median(gstart, n), median(gstop, n), rep->gd[n - 1].exit.desc[0] ? rep->gd[n - 1].exit.desc : "-");
  printf("  expected totals: entities %zu created, links %" PRIu64 " created + %" PRIu64
         " updated = %zu link records\n",
         d->ent.n, d->distinct_links, (uint64_t)d->nlinks - d->distinct_links, d->nlinks);
  printf("  totals (graphd, last repeat): entities %" PRIu64 " created / %" PRIu64
         " updated, links %" PRIu64 " created / %" PRIu64 " updated: %s\n",
         rep->gd[n - 1].totals.entities_created, rep->gd[n - 1].totals.entities_updated,
         rep->gd[n - 1].totals.links_created, rep->gd[n - 1].totals.links_updated,
         rep->ok ? "checks passed" : "CHECKS FAILED (see anomalies)");

  json_object *j = json_object_new_object();
  json_object_object_add(j, "repeats", json_object_new_int(n));
  json_object_object_add(j, "batch", json_object_new_uint64(cfg->batch));
  json_object_object_add(j, "batches", json_object_new_uint64(pb.n));
  json_object_object_add(j, "order", json_object_new_string("alternating: ref first on odd-numbered repeats"));
  json_object_object_add(j, "build_seconds", json_object_new_double(build_s));
  json_object_object_add(j, "ok", json_object_new_boolean(rep->ok));

  json_object *jr = json_object_new_object();
  json_object_object_add(jr, "what", json_object_new_string(
      "gd_store_open + gd_writer_start, one gd_write_op per batch (gd_store_upsert), all "
      "submitted at once; first submit to last done callback"));
  json_object_object_add(jr, "links_per_s_median", json_object_new_double(m_ref));
  json_object_object_add(jr, "links_per_s", jdouble_array(ref_lps, n));
  json_object_object_add(jr, "seconds", jdouble_array(ref_s, n));
  json_object_object_add(jr, "commits", jdouble_array(rcommits, n));
  json_object_object_add(jr, "cpu_s", jdouble_array(rcpu, n));
  json_object_object_add(jr, "writer_cpu_s", jdouble_array(rwcpu, n));
  json_object_object_add(jr, "writer_wait_s", jdouble_array(rwwait, n));
  json_object_object_add(jr, "writer_cpu_us_per_link_median", json_object_new_double(rwus));
  json_object_object_add(jr, "window", json_object_new_int(cfg->ref_window));
  json_object_object_add(jr, "data_dir_bytes", jdouble_array(rbytes, n));
  json_object_object_add(jr, "totals", jtotals(&rep->ref[n - 1].totals));
  json_object_object_add(j, "reference", jr);

  json_object *jg = json_object_new_object();
  json_object_object_add(jg, "what", json_object_new_string(
      "graphd --listen 127.0.0.1:0, all batches through one Ingest stream (gc_stream, "
      "coalescing on); first send to reply"));
  json_object_object_add(jg, "links_per_s_median", json_object_new_double(m_gd));
  json_object_object_add(jg, "links_per_s", jdouble_array(gd_lps, n));
  json_object_object_add(jg, "seconds", jdouble_array(gd_s, n));
  json_object_object_add(jg, "commits", jdouble_array(gcommits, n));
  json_object_object_add(jg, "peak_rss_bytes_median", json_object_new_double(median(rss, n)));
  json_object_object_add(jg, "peak_rss_bytes", jdouble_array(rss, n));
  json_object_object_add(jg, "data_dir_bytes_median", json_object_new_double(median(gbytes, n)));
  json_object_object_add(jg, "data_dir_bytes", jdouble_array(gbytes, n));
  json_object_object_add(jg, "data_dir_alloc_bytes", jdouble_array(galloc, n));
  json_object_object_add(jg, "daemon_cpu_s", jdouble_array(dcpu, n));
  json_object_object_add(jg, "client_cpu_s", jdouble_array(ccpu, n));
  json_object_object_add(jg, "writer_cpu_s", jdouble_array(gwcpu, n));
  json_object_object_add(jg, "writer_wait_s", jdouble_array(gwwait, n));
  json_object_object_add(jg, "writer_cpu_us_per_link_median", json_object_new_double(gwus));
  json_object_object_add(jg, "start_s", jdouble_array(gstart, n));
  json_object_object_add(jg, "stop_s", jdouble_array(gstop, n));
  json_object *jexit = json_object_new_array();
  for (int r = 0; r < n; r++)
    json_object_array_add(jexit, json_object_new_string(rep->gd[r].exit.desc[0] ? rep->gd[r].exit.desc : "-"));
  json_object_object_add(jg, "exit", jexit);
  json_object_object_add(jg, "totals", jtotals(&rep->gd[n - 1].totals));
  json_object_object_add(jg, "messages", json_object_new_uint64(rep->gd[n - 1].messages));
  json_object_object_add(jg, "stats_links", json_object_new_uint64(rep->gd[n - 1].stats_links));
  json_object_object_add(jg, "stats_committed_requests", json_object_new_uint64(rep->gd[n - 1].stats_requests));
  json_object_object_add(jg, "stats_lmdb_size_bytes", json_object_new_uint64(rep->gd[n - 1].stats_lmdb_bytes));
  json_object_object_add(j, "graphd", jg);
  json_object_object_add(j, "ratio_graphd_over_reference", json_object_new_double(m_ratio));
  json_object_object_add(j, "ratio_per_repeat", jdouble_array(rep->ratio, n));
  json_object_object_add(j, "ratio_of_medians", json_object_new_double(m_gd / m_ref));

  pb_batches_free(&pb);
  store_batches_free(&sb);
  return j;
}

/* ==================================================================== */
/* Read                                                                    */


/*
 * The requests of each rpc, built and packed once before any measurement:
 * protobuf-c messages (for the sync client, which packs per call) and
 * packed slices (for the async client, which only wraps a slice in a byte
 * buffer per call: a reference, no packing). A call takes one of its rpc's
 * requests at random.
 */
typedef struct rpc_reqs {
  size_t n;
  ProtobufCMessage **msg;
  grpc_slice *packed;
  const char **desc; /* the key(s), for error messages */
} rpc_reqs;

struct read_keys { /* typedef read_keys in bench_int.h */
  size_t n;       /* random seller keys sampled */
  unsigned rpcs;  /* rpcs measured: cfg->rpcs less those without requests */
  rpc_reqs rq[RPC__COUNT];
  void **owned;   /* freed with the keys */
  size_t nowned, owned_cap;
  /* How the investigator requests were chosen (printed and in the JSON). */
  const char *truth_path; /* NULL: none used */
  size_t truth_members;   /* ring members in the truth file found in the links file */
  size_t truth_missing;   /* truth rows whose seller is not in the links file */
  size_t rings;           /* rings with at least 2 members found */
  size_t linked_ring, linked_random;
  const char *pairs_source; /* "same_ring" or "shared_entity" */
  size_t pair_entities;     /* shared_entity: non-hub entities with >= 2 sellers */
};

unsigned read_keys_rpcs(const read_keys *k) { return k->rpcs; }
size_t read_keys_sellers(const read_keys *k) { return k->n; }
size_t read_keys_requests(const read_keys *k, rpc_kind kind, const ProtobufCMessage *const **ret) {
  *ret = (const ProtobufCMessage *const *)k->rq[kind].msg;
  return k->rq[kind].n;
}

static void *keys_own(read_keys *r, void *p) {
  if (r->nowned == r->owned_cap) {
    r->owned_cap = r->owned_cap ? r->owned_cap * 2 : 1024;
    r->owned = xrealloc(r->owned, r->owned_cap * sizeof *r->owned);
  }
  r->owned[r->nowned++] = p;
  return p;
}

static grpc_slice pack_slice(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  grpc_slice s = grpc_slice_malloc(n);
  if (protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s)) != n)
    die("cannot pack a %s", m->descriptor->name);
  return s;
}

static void reqs_alloc(rpc_reqs *q, size_t n) {
  q->n = 0;
  q->msg = xcalloc(n, sizeof *q->msg);
  q->packed = xcalloc(n, sizeof *q->packed);
  q->desc = xcalloc(n, sizeof *q->desc);
}

static void reqs_add(rpc_reqs *q, ProtobufCMessage *m, const char *desc) {
  q->msg[q->n] = m;
  q->packed[q->n] = pack_slice(m);
  q->desc[q->n] = desc;
  q->n++;
}

/* A seller ref; key points into the data set (which outlives the keys). */
static Graphd__V1__EntityRef *seller_ref(read_keys *r, const char *key) {
  Graphd__V1__EntityRef *ref = keys_own(r, xcalloc(1, sizeof *ref));
  graphd__v1__entity_ref__init(ref);
  ref->type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
  ref->key = (char *)key;
  return ref;
}

/* Entity id of a (normalised) key in d, or UINT32_MAX. */
static uint32_t keytab_find(const keytab *t, int type, const char *p, size_t n) {
  if (!t->nslots)
    return UINT32_MAX;
  uint64_t h = key_hash(type, p, n);
  for (size_t j = h & (t->nslots - 1); t->slots[j]; j = (j + 1) & (t->nslots - 1)) {
    const kitem *it = &t->items[t->slots[j] - 1];
    if (it->hash == h && it->type == type && it->len == n && !memcmp(t->pool + it->off, p, n))
      return t->slots[j] - 1;
  }
  return UINT32_MAX;
}

typedef struct member {
  uint32_t ring, id; /* id: entity id in the data set */
} member;

static int cmp_member(const void *a, const void *b) {
  const member *x = a, *y = b;
  if (x->ring != y->ring)
    return x->ring < y->ring ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Ring members from sellergen's truth.csv (seller_key,ring,warehouse_key,
 * labelled; ring 0 = no ring), keys normalised as the server does, those
 * not in the links file left out (counted). Sorted by ring. Returns the
 * count; *ret NULL when there are none.
 */
static size_t truth_load(const dataset *d, const char *path, member **ret, size_t *ret_missing) {
  FILE *f = fopen(path, "r");
  if (!f)
    die("cannot open %s: %s", path, strerror(errno));
  char line[1024], norm[1024];
  size_t n = 0, cap = 0, lineno = 0;
  member *m = NULL;
  *ret_missing = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    if (lineno == 1 && !strncmp(line, "seller_key,", 11))
      continue;
    if (!line[0])
      continue;
    char *comma = strchr(line, ',');
    if (!comma)
      die("%s:%zu: expected seller_key,ring,...", path, lineno);
    *comma = '\0';
    char *end;
    errno = 0;
    unsigned long ring = strtoul(comma + 1, &end, 10);
    if (errno || end == comma + 1 || (*end && *end != ',') || ring > UINT32_MAX)
      die("%s:%zu: bad ring number", path, lineno);
    if (ring == 0)
      continue;
    size_t nn = gc_key_normalize((gd_etype)GD_TYPE_SELLER, line, strlen(line), norm);
    uint32_t id = keytab_find(&d->ent, GD_TYPE_SELLER, norm, nn);
    if (id == UINT32_MAX) {
      ++*ret_missing;
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 1024;
      m = xrealloc(m, cap * sizeof *m);
    }
    m[n++] = (member){(uint32_t)ring, id};
  }
  if (ferror(f))
    die("cannot read %s: %s", path, strerror(errno));
  fclose(f);
  qsort(m, n, sizeof *m, cmp_member);
  *ret = m;
  return n;
}

/* The hub caps graphd applies by default (graphd.proto, "Investigation"). */
static uint64_t default_hub_cap(int type) {
  switch (type) {
  case GD_TYPE_SELLER: return 1000;
  case GD_TYPE_ADDRESS: return 500;
  case GD_TYPE_PAYMENT_ACCOUNT:
  case GD_TYPE_DEVICE: return 200;
  default: return 100;
  }
}

/*
 * FindPaths pairs without ring truth: two distinct sellers linked to the
 * same non-seller entity that is not a hub under the default caps (2 <=
 * sellers <= cap), the entity drawn uniformly among such entities.
 * Fills pairs[2 * i], pairs[2 * i + 1]; returns the number of eligible
 * entities (0: no pairs).
 */
static size_t shared_entity_pairs(const dataset *d, size_t npairs, uint64_t *rs, uint32_t *pairs) {
  uint64_t *es = xmalloc(d->nlinks * sizeof *es);
  size_t n = 0;
  for (size_t i = 0; i < d->nlinks; i++) {
    uint32_t a = d->raw_ent[d->links[i].a], b = d->raw_ent[d->links[i].b];
    bool sa = d->ent.items[a].type == GD_TYPE_SELLER, sb = d->ent.items[b].type == GD_TYPE_SELLER;
    if (sa != sb)
      es[n++] = sa ? (uint64_t)b << 32 | a : (uint64_t)a << 32 | b; /* entity, seller */
  }
  qsort(es, n, sizeof *es, cmp_u64);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (!u || es[i] != es[u - 1])
      es[u++] = es[i];
  size_t *start = xmalloc((u + 1) * sizeof *start), ne = 0;
  for (size_t i = 0, j; i < u; i = j) {
    for (j = i + 1; j < u && es[j] >> 32 == es[i] >> 32; j++) {
    }
    uint64_t ns = j - i;
    if (ns >= 2 && ns <= default_hub_cap(d->ent.items[es[i] >> 32].type))
      start[ne++] = i;
  }
  for (size_t p = 0; ne && p < npairs; p++) {
    size_t g = start[rng_next(rs) % ne], ng = 1;
    while (g + ng < u && es[g + ng] >> 32 == es[g] >> 32)
      ng++;
    size_t x = rng_next(rs) % ng, y = rng_next(rs) % (ng - 1);
    if (y >= x)
      y++;
    pairs[2 * p] = (uint32_t)es[g + x];
    pairs[2 * p + 1] = (uint32_t)es[g + y];
  }
  free(start);
  free(es);
  return ne;
}

/*
 * Samples the requests. Health/Check: one (empty) request. GetEntity and
 * Neighbors: up to `sample` distinct random seller keys (normalised) from d,
 * drawn as before the investigator rpcs were added (same seed, same keys).
 * LinkedSellers (1 and 2 hops, the same keys): with ring truth, equal
 * numbers of distinct ring members and random sellers (the first keys of
 * the random sample), min(sample / 2, members) each; without it the random
 * sample. FindPaths: `sample` pairs, with ring truth a random ring member
 * and another member of the same ring, without it two sellers sharing a
 * non-hub entity (shared_entity_pairs).
 */
static void read_keys_build(const bench_cfg *cfg, const dataset *d, read_keys *ret) {
  read_keys r = {.rpcs = cfg->rpcs};
  size_t ns = 0;
  uint32_t *ids = xmalloc(d->ent.n * sizeof *ids);
  for (uint32_t i = 0; i < d->ent.n; i++)
    if (d->ent.items[i].type == GD_TYPE_SELLER)
      ids[ns++] = i;
  if (ns == 0)
    die("%s: no seller keys", d->path);
  size_t k = cfg->sample < ns ? cfg->sample : ns;
  uint64_t rs = mix64(cfg->seed ^ 0x5ea11e55ULL) | 1;
  for (size_t i = 0; i < k; i++) { /* partial Fisher-Yates */
    size_t j = i + (size_t)(rng_next(&rs) % (ns - i));
    uint32_t t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
  }
  r.n = k;

  /* Ring truth: --truth, else truth.csv next to the links file. */
  member *mem = NULL;
  size_t nmem = 0;
  char *auto_truth = NULL;
  const char *truth = cfg->truth;
  if (!truth) {
    const char *slash = strrchr(d->path, '/');
    auto_truth = slash ? xasprintf("%.*s/truth.csv", (int)(slash - d->path), d->path)
                       : xstrdup("truth.csv");
    if (access(auto_truth, R_OK) == 0)
      truth = auto_truth;
  } else if (!strcmp(truth, "none")) {
    truth = NULL;
  }
  if (truth) {
    nmem = truth_load(d, truth, &mem, &r.truth_missing);
    r.truth_path = keys_own(&r, xstrdup(truth));
    r.truth_members = nmem;
    fprintf(stderr, "graphd-bench: %s: %zu ring members in the links file (%zu rows not)\n",
            truth, nmem, r.truth_missing);
  }
  free(auto_truth);
  /* Members of rings with >= 2 members found: mem[rstart[i]..rend) */
  size_t *in_ring2 = xmalloc((nmem + 1) * sizeof *in_ring2), n2 = 0;
  for (size_t i = 0, j; i < nmem; i = j) {
    for (j = i + 1; j < nmem && mem[j].ring == mem[i].ring; j++) {
    }
    if (j - i >= 2) {
      r.rings++;
      for (size_t x = i; x < j; x++)
        in_ring2[n2++] = x;
    }
  }

  for (int q = 0; q < RPC__COUNT; q++)
    reqs_alloc(&r.rq[q], q == RPC_HEALTH ? 1 : q == RPC_LINKED1 || q == RPC_LINKED2 ? 2 * k : k);

  Grpc__Health__V1__HealthCheckRequest *h = keys_own(&r, xmalloc(sizeof *h));
  grpc__health__v1__health_check_request__init(h);
  reqs_add(&r.rq[RPC_HEALTH], &h->base, "-");

  uint64_t rs2 = mix64(cfg->seed ^ 0x1cbe5e11ULL) | 1;
  for (size_t i = 0; i < k; i++) {
    const char *key = keytab_str(&d->ent, ids[i]);
    Graphd__V1__EntityRef *ref = seller_ref(&r, key);
    Graphd__V1__GetEntityRequest *g = keys_own(&r, xmalloc(sizeof *g));
    graphd__v1__get_entity_request__init(g);
    g->ref = ref;
    reqs_add(&r.rq[RPC_GET], &g->base, key);
    Graphd__V1__NeighborsRequest *nb = keys_own(&r, xmalloc(sizeof *nb));
    graphd__v1__neighbors_request__init(nb);
    nb->ref = ref;
    nb->limit = cfg->limit;
    reqs_add(&r.rq[RPC_NEIGHBORS], &nb->base, key);
  }

  /* LinkedSellers keys. */
  uint32_t *lk = xmalloc(2 * k * sizeof *lk);
  size_t nlk = 0;
  if (nmem) {
    size_t half = k / 2 ? k / 2 : 1;
    r.linked_ring = half < nmem ? half : nmem;
    r.linked_random = r.linked_ring < k ? r.linked_ring : k;
    member *tmp = xmalloc(nmem * sizeof *tmp);
    memcpy(tmp, mem, nmem * sizeof *tmp);
    for (size_t i = 0; i < r.linked_ring; i++) {
      size_t j = i + (size_t)(rng_next(&rs2) % (nmem - i));
      member t = tmp[i];
      tmp[i] = tmp[j];
      tmp[j] = t;
      lk[nlk++] = tmp[i].id;
    }
    free(tmp);
  } else {
    r.linked_random = k;
  }
  for (size_t i = 0; i < r.linked_random; i++)
    lk[nlk++] = ids[i];
  for (size_t i = 0; i < nlk; i++) {
    const char *key = keytab_str(&d->ent, lk[i]);
    Graphd__V1__EntityRef *ref = seller_ref(&r, key);
    for (unsigned hops = 1; hops <= 2; hops++) {
      Graphd__V1__LinkedSellersRequest *l = keys_own(&r, xmalloc(sizeof *l));
      graphd__v1__linked_sellers_request__init(l);
      l->seller = ref;
      l->max_hops = hops;
      reqs_add(&r.rq[hops == 1 ? RPC_LINKED1 : RPC_LINKED2], &l->base, key);
    }
  }
  free(lk);

  /* FindPaths pairs. */
  uint32_t *pairs = xmalloc(2 * k * sizeof *pairs);
  size_t npairs = 0;
  if (n2) {
    r.pairs_source = "same_ring";
    for (; npairs < k; npairs++) {
      size_t x = in_ring2[rng_next(&rs2) % n2], lo = x, hi = x + 1;
      while (lo > 0 && mem[lo - 1].ring == mem[x].ring)
        lo--;
      while (hi < nmem && mem[hi].ring == mem[x].ring)
        hi++;
      size_t y = lo + (size_t)(rng_next(&rs2) % (hi - lo - 1));
      if (y >= x)
        y++;
      pairs[2 * npairs] = mem[x].id;
      pairs[2 * npairs + 1] = mem[y].id;
    }
  } else if (r.rpcs & 1u << RPC_PATHS) {
    r.pairs_source = "shared_entity";
    r.pair_entities = shared_entity_pairs(d, k, &rs2, pairs);
    npairs = r.pair_entities ? k : 0;
  }
  for (size_t i = 0; i < npairs; i++) {
    const char *ka = keytab_str(&d->ent, pairs[2 * i]), *kb = keytab_str(&d->ent, pairs[2 * i + 1]);
    Graphd__V1__FindPathsRequest *fp = keys_own(&r, xmalloc(sizeof *fp));
    graphd__v1__find_paths_request__init(fp);
    fp->from = seller_ref(&r, ka);
    fp->to = seller_ref(&r, kb);
    fp->k = PATHS_K;
    fp->max_hops = PATHS_MAX_HOPS;
    reqs_add(&r.rq[RPC_PATHS], &fp->base, keys_own(&r, xasprintf("%s -> %s", ka, kb)));
  }
  free(pairs);
  if ((r.rpcs & 1u << RPC_PATHS) && !npairs) {
    fprintf(stderr, "graphd-bench: no seller pairs for FindPaths (no ring truth, no non-hub "
                    "entity shared by two sellers): FindPaths not measured\n");
    r.rpcs &= ~(1u << RPC_PATHS);
  }
  free(in_ring2);
  free(mem);
  free(ids);
  *ret = r;
}

static void read_keys_free(read_keys *r) {
  for (int q = 0; q < RPC__COUNT; q++) {
    for (size_t i = 0; i < r->rq[q].n; i++)
      grpc_slice_unref(r->rq[q].packed[i]);
    free(r->rq[q].msg);
    free(r->rq[q].packed);
    free(r->rq[q].desc);
  }
  for (size_t i = 0; i < r->nowned; i++)
    free(r->owned[i]);
  free(r->owned);
  memset(r, 0, sizeof *r);
}

read_keys *read_keys_new(const bench_cfg *cfg, const dataset *d) {
  read_keys *k = xmalloc(sizeof *k);
  read_keys_build(cfg, d, k);
  return k;
}

void read_keys_delete(read_keys *k) {
  if (k)
    read_keys_free(k);
  free(k);
}

/* ---- replies ---- */

static const ProtobufCMessageDescriptor *const reply_desc[RPC__COUNT] = {
    &grpc__health__v1__health_check_response__descriptor,
    &graphd__v1__get_entity_reply__descriptor,
    &graphd__v1__neighbors_reply__descriptor,
    &graphd__v1__linked_sellers_reply__descriptor,
    &graphd__v1__linked_sellers_reply__descriptor,
    &graphd__v1__find_paths_reply__descriptor,
};

/* What one client thread saw in the timed part. */
typedef struct read_tally {
  uint64_t *lat; /* ns, successful calls only */
  size_t n, cap;
  uint64_t errors, items;
  uint64_t truncated, touched; /* investigator rpcs: replies with truncated set, sum of touched */
  int64_t t_end; /* when its last call completed */
  char first_err[256];
  bool setup_failed;
} read_tally;

static void tally_add(read_tally *t, uint64_t ns) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 65536;
    t->lat = xrealloc(t->lat, t->cap * sizeof *t->lat);
  }
  t->lat[t->n++] = ns;
}

/* Counts what a successful reply holds: items are entities (GetEntity),
 * neighbours, sellers (LinkedSellers) or paths (FindPaths). */
static void tally_reply(read_tally *t, rpc_kind kind, const ProtobufCMessage *m) {
  switch (kind) {
  case RPC_GET: t->items += ((const Graphd__V1__GetEntityReply *)m)->entity != NULL; break;
  case RPC_NEIGHBORS: t->items += ((const Graphd__V1__NeighborsReply *)m)->n_neighbors; break;
  case RPC_LINKED1:
  case RPC_LINKED2: {
    const Graphd__V1__LinkedSellersReply *r = (const Graphd__V1__LinkedSellersReply *)m;
    t->items += r->n_sellers;
    t->truncated += r->truncated;
    t->touched += r->touched;
    break;
  }
  case RPC_PATHS: {
    const Graphd__V1__FindPathsReply *r = (const Graphd__V1__FindPathsReply *)m;
    t->items += r->n_paths;
    t->truncated += r->truncated;
    t->touched += r->touched;
    break;
  }
  default: break;
  }
}

/* The main thread's view of a measurement: the timed part starts when every
 * client thread has warmed up and ends when every one has drained. */
typedef struct read_window {
  int64_t t0;
  double cpu0, cpu1, dcpu0, dcpu1, mcpu0, mcpu1;
} read_window;

static void read_window_run(pthread_barrier_t *start, pthread_barrier_t *stop, pid_t daemon_pid,
                            read_window *w) {
  pthread_barrier_wait(start);
  w->t0 = now_ns();
  w->cpu0 = self_cpu_s();
  w->dcpu0 = daemon_pid ? proc_cpu_s(daemon_pid) : NAN;
  w->mcpu0 = machine_busy_s();
  pthread_barrier_wait(stop);
  w->mcpu1 = machine_busy_s();
  w->cpu1 = self_cpu_s();
  w->dcpu1 = daemon_pid ? proc_cpu_s(daemon_pid) : NAN;
}

/* read_point (bench_int.h): a client mode at a number of calls in flight. */

static void read_point_name(const read_point *p, char *buf, size_t size) {
  snprintf(buf, size, "%s/%d", client_names[p->client], p->conc);
}

/* ---- sync client: C threads, each one blocking gc_unary call at a time ---- */

typedef struct sync_shared {
  const bench_cfg *cfg;
  const char *addr;
  const read_keys *keys;
  rpc_kind kind;
  const client_sec *sec; /* NULL: plaintext, no token */
  gc_client *shared_client;
  pthread_barrier_t start, stop;
  int64_t duration_ns;
} sync_shared;

typedef struct sync_thread {
  pthread_t th;
  int idx;
  sync_shared *sh;
  read_tally *tally;
} sync_thread;

/* gc_client options for sec (TLS, token); NULL sec = plaintext, no token. */
static gc_client_opts sec_client_opts(const client_sec *sec, bool own_connection) {
  gc_client_opts o = {.own_connection = own_connection};
  if (sec) {
    o.tls = sec->tls;
    o.tls_root_certs_pem = sec->tls ? sec->root_pem : NULL;
    o.tls_server_name = sec->tls ? sec->server_name : NULL;
    o.token = sec->token;
  }
  return o;
}

/* One call of the measured kind with request `key`; returns the status
 * code. A successful reply is counted in ta (unless NULL: warm-up). */
static int sync_call(sync_shared *sh, gc_client *c, size_t key, read_tally *ta, gc_status *st) {
  ProtobufCMessage *rep = NULL;
  int code = gc_unary(c, rpc_methods[sh->kind], sh->keys->rq[sh->kind].msg[key],
                      reply_desc[sh->kind], &rep, st, sh->cfg->call_timeout_ms);
  if (code == 0 && ta && rep)
    tally_reply(ta, sh->kind, rep);
  if (rep)
    protobuf_c_message_free_unpacked(rep, NULL);
  return code;
}

static void *sync_thread_main(void *arg) {
  sync_thread *t = arg;
  sync_shared *sh = t->sh;
  read_tally *ta = t->tally;
  gc_client *c = sh->shared_client;
  gc_status st;
  uint64_t rs = mix64(sh->cfg->seed * 1000003ULL + (uint64_t)t->idx * 7919ULL + sh->kind) | 1;
  size_t nreq = sh->keys->rq[sh->kind].n;

  if (!c) {
    gc_client_opts o = sec_client_opts(sh->sec, true);
    if (gc_client_open(sh->addr, &o, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
      ta->setup_failed = true;
      snprintf(ta->first_err, sizeof ta->first_err, "connect: %.200s", st.message);
    }
  }
  for (int i = 0; i < WARMUP_CALLS && !ta->setup_failed; i++)
    sync_call(sh, c, (size_t)(rng_next(&rs) % nreq), NULL, &st);

  pthread_barrier_wait(&sh->start);
  if (!ta->setup_failed) {
    int64_t start = now_ns(), end = start + sh->duration_ns, t1 = start;
    while (t1 < end) {
      size_t key = (size_t)(rng_next(&rs) % nreq);
      int64_t t0 = now_ns();
      int code = sync_call(sh, c, key, ta, &st);
      t1 = now_ns();
      if (code) {
        if (!ta->errors++)
          snprintf(ta->first_err, sizeof ta->first_err, "%s: %.160s (key '%.40s')",
                   gc_status_code_name(code), st.message, sh->keys->rq[sh->kind].desc[key]);
        continue;
      }
      tally_add(ta, (uint64_t)(t1 - t0));
    }
    ta->t_end = t1;
  }
  pthread_barrier_wait(&sh->stop);
  if (c && c != sh->shared_client)
    gc_client_close(c);
  return NULL;
}

static void sync_run(const bench_cfg *cfg, const char *addr, pid_t daemon_pid,
                     const read_keys *keys, rpc_kind kind, const read_point *pt,
                     const client_sec *sec, read_tally *tl, read_window *w) {
  int C = pt->threads;
  sync_shared sh = {
      .cfg = cfg, .addr = addr, .keys = keys, .kind = kind, .sec = sec,
      .duration_ns = (int64_t)(cfg->duration * 1e9),
  };
  gc_status st;
  if (cfg->conn == CONN_SHARED) {
    gc_client_opts o = sec_client_opts(sec, false);
    if (gc_client_open(addr, &o, &sh.shared_client, &st) ||
        gc_client_wait_ready(sh.shared_client, 10000, &st))
      die("cannot connect to %s: %s", addr, st.message);
  }
  pthread_barrier_init(&sh.start, NULL, (unsigned)C + 1);
  pthread_barrier_init(&sh.stop, NULL, (unsigned)C + 1);
  sync_thread *th = xcalloc((size_t)C, sizeof *th);
  for (int i = 0; i < C; i++) {
    th[i] = (sync_thread){.idx = i, .sh = &sh, .tally = &tl[i]};
    if (pthread_create(&th[i].th, NULL, sync_thread_main, &th[i]) != 0)
      die("pthread_create: %s", strerror(errno));
  }
  read_window_run(&sh.start, &sh.stop, daemon_pid, w);
  for (int i = 0; i < C; i++)
    pthread_join(th[i].th, NULL);
  if (sh.shared_client)
    gc_client_close(sh.shared_client);
  pthread_barrier_destroy(&sh.start);
  pthread_barrier_destroy(&sh.stop);
  free(th);
}

/* ---- async client: call slots on a completion queue per client thread ---- */

typedef struct async_shared {
  const bench_cfg *cfg;
  const char *addr;
  const read_keys *keys;
  rpc_kind kind;
  const client_sec *sec; /* NULL: plaintext, no token */
  grpc_channel *shared_channel; /* NULL with --conn own: a channel per thread */
  grpc_slice method;
  /* Initial metadata of every call (sec->token: authorization), built once
   * per measurement; gRPC takes its own references at grpc_call_start_batch,
   * as gc_client does with its md array. */
  grpc_metadata md[1];
  size_t n_md;
  pthread_barrier_t start, stop;
  int64_t duration_ns;
} async_shared;

struct async_thread;

/* One call in flight. Only one batch is ever pending on a slot, so a slot
 * is touched by one thread at a time: the one draining its queue. */
typedef struct async_slot {
  struct async_thread *t;
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array md_initial, md_trailing;
  grpc_status_code status;
  grpc_slice details;
  int64_t t0;
  size_t key;
} async_slot;

typedef struct async_thread {
  pthread_t th;
  int idx, nslots;
  async_shared *sh;
  async_slot *slots;
  grpc_channel *ch;
  grpc_completion_queue *cq;
  uint64_t rs;
  read_tally *tally;
  gd_arena *replies; /* the reply being checked, decoded (reset per reply) */
} async_thread;

/* A channel with a connection of its own (not shared through gRPC's global
 * subchannel pool with an earlier measurement's channel). With sec->tls,
 * TLS channel credentials trusting sec->root_pem (as gc_client_open makes
 * them), the certificate checked against sec->server_name when given. */
static grpc_channel *bench_channel_create(const char *addr, const client_sec *sec) {
  grpc_arg args[3];
  size_t n = 0;
  memset(args, 0, sizeof args);
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
  args[n++].value.integer = 1;
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n++].value.integer = 64 << 20; /* as gc_client's default */
  bool tls = sec && sec->tls;
  if (tls && sec->server_name) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n++].value.string = (char *)sec->server_name;
  }
  grpc_channel_args ca = {n, args};
  grpc_channel_credentials *cr = tls ? grpc_ssl_credentials_create(sec->root_pem, NULL, NULL, NULL)
                                     : grpc_insecure_credentials_create();
  if (!cr)
    die("cannot create the channel credentials for %s", addr);
  grpc_channel *ch = grpc_channel_create(addr, cr, &ca);
  grpc_channel_credentials_release(cr);
  if (!ch)
    die("grpc_channel_create(%s) failed", addr);
  return ch;
}

/* Starts the slot's next call: one batch with every op of a unary call. */
static void async_start(async_thread *t, async_slot *s, bool wait_ready) {
  async_shared *sh = t->sh;
  const rpc_reqs *q = &sh->keys->rq[sh->kind];
  s->key = (size_t)(rng_next(&t->rs) % q->n);
  grpc_slice req = q->packed[s->key];
  s->t0 = now_ns();
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(sh->cfg->call_timeout_ms, GPR_TIMESPAN));
  s->call = grpc_channel_create_call(t->ch, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq, sh->method,
                                     NULL, deadline, NULL);
  if (!s->call)
    die("grpc_channel_create_call failed");
  s->send = grpc_raw_byte_buffer_create(&req, 1); /* takes a reference */
  s->recv = NULL;
  grpc_metadata_array_init(&s->md_initial);
  grpc_metadata_array_init(&s->md_trailing);
  s->status = GRPC_STATUS_UNKNOWN;
  s->details = grpc_empty_slice();

  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  /* Warm-up calls wait for the connection instead of failing fast. */
  ops[0].flags = wait_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY |
                                  GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET
                            : 0;
  ops[0].data.send_initial_metadata.count = sh->n_md;
  ops[0].data.send_initial_metadata.metadata = sh->n_md ? sh->md : NULL;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = s->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md_initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &s->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &s->md_trailing;
  ops[5].data.recv_status_on_client.status = &s->status;
  ops[5].data.recv_status_on_client.status_details = &s->details;
  grpc_call_error e = grpc_call_start_batch(s->call, ops, 6, s, NULL);
  if (e != GRPC_CALL_OK)
    die("grpc_call_start_batch: %s", grpc_call_error_to_string(e));
}

/*
 * The slot's call completed at t1: checks the status and the reply, frees
 * the call, and (record) adds the latency or the error to the tally.
 * Returns true when the call succeeded; err (size 256) gets the error.
 */
static void *reply_alloc(void *data, size_t n) { return gd_arena_alloc(data, n); }
static void reply_free(void *data, void *p) { (void)data, (void)p; } /* (reset per reply) */

static bool async_finish(async_thread *t, async_slot *s, bool success, int64_t t1, bool record,
                         char *err) {
  async_shared *sh = t->sh;
  bool ok = false;
  err[0] = '\0';
  if (!success) {
    snprintf(err, 256, "client: the call's batch failed");
  } else if (s->status != GRPC_STATUS_OK) {
    snprintf(err, 256, "%s: %.*s", gc_status_code_name((int)s->status),
             (int)(GRPC_SLICE_LENGTH(s->details) > 160 ? 160 : GRPC_SLICE_LENGTH(s->details)),
             (const char *)GRPC_SLICE_START_PTR(s->details));
  } else if (!s->recv) {
    snprintf(err, 256, "client: OK status without a reply message");
  } else {
    /* One uncompressed slice (the usual case) parses in place. */
    grpc_slice flat;
    if (s->recv->type == GRPC_BB_RAW && s->recv->data.raw.compression == GRPC_COMPRESS_NONE &&
        s->recv->data.raw.slice_buffer.count == 1) {
      flat = grpc_slice_ref(s->recv->data.raw.slice_buffer.slices[0]);
    } else {
      grpc_byte_buffer_reader r;
      if (!grpc_byte_buffer_reader_init(&r, s->recv))
        die("grpc_byte_buffer_reader_init failed");
      flat = grpc_byte_buffer_reader_readall(&r);
      grpc_byte_buffer_reader_destroy(&r);
    }
    /* Decoded into an arena: a 2-hop reply is some 600 sub-messages and
     * strings, which malloc and free one by one cost this client about as
     * much CPU as the rest of the call (a real client sits elsewhere;
     * here it shares the daemon's two cores). */
    ProtobufCAllocator al = {reply_alloc, reply_free, &t->replies};
    ProtobufCMessage *m = protobuf_c_message_unpack(reply_desc[sh->kind], &al,
                                                    GRPC_SLICE_LENGTH(flat),
                                                    GRPC_SLICE_START_PTR(flat));
    grpc_slice_unref(flat);
    if (!m) {
      snprintf(err, 256, "client: the reply does not parse as %s", reply_desc[sh->kind]->name);
    } else {
      if (record)
        tally_reply(t->tally, sh->kind, m);
      ok = true;
    }
    gd_arena_reset(&t->replies); /* m and all it holds */
  }
  grpc_byte_buffer_destroy(s->send);
  if (s->recv)
    grpc_byte_buffer_destroy(s->recv);
  grpc_metadata_array_destroy(&s->md_initial);
  grpc_metadata_array_destroy(&s->md_trailing);
  grpc_slice_unref(s->details);
  grpc_call_unref(s->call);
  s->call = NULL;
  s->send = s->recv = NULL;
  if (record) {
    read_tally *ta = t->tally;
    if (ok) {
      tally_add(ta, (uint64_t)(t1 - s->t0));
    } else if (!ta->errors++) {
      snprintf(ta->first_err, sizeof ta->first_err, "%.200s (key '%.40s')", err,
               sh->keys->rq[sh->kind].desc[s->key]);
    }
  }
  return ok;
}

/* The next completion; with block false, NULL when none is ready. */
static async_slot *async_next(async_thread *t, bool *ret_success, bool block) {
  grpc_event ev = grpc_completion_queue_next(
      t->cq, block ? gpr_inf_future(GPR_CLOCK_REALTIME) : gpr_inf_past(GPR_CLOCK_REALTIME), NULL);
  if (!block && ev.type == GRPC_QUEUE_TIMEOUT)
    return NULL;
  if (ev.type != GRPC_OP_COMPLETE)
    die("completion queue: unexpected event type %d", (int)ev.type);
  *ret_success = ev.success != 0;
  return ev.tag;
}

static void *async_thread_main(void *arg) {
  async_thread *t = arg;
  async_shared *sh = t->sh;
  read_tally *ta = t->tally;
  char err[256];
  t->cq = grpc_completion_queue_create_for_next(NULL);
  t->ch = sh->shared_channel ? sh->shared_channel : bench_channel_create(sh->addr, sh->sec);
  for (int i = 0; i < t->nslots; i++)
    t->slots[i].t = t;

  /* Warm-up, untimed: connect (waiting for the channel to be ready) and
   * make WARMUP_CALLS calls per slot, then drain, so that the timed part
   * starts from a connected channel and no call in flight. */
  int target = WARMUP_CALLS * t->nslots, started = 0, inflight = 0, good = 0;
  for (int i = 0; i < t->nslots; i++, started++, inflight++)
    async_start(t, &t->slots[i], true);
  while (inflight) {
    bool success;
    async_slot *s = async_next(t, &success, true);
    inflight--;
    if (async_finish(t, s, success, now_ns(), false, err)) {
      good++;
    } else {
      if (!ta->first_err[0])
        snprintf(ta->first_err, sizeof ta->first_err, "warm-up: %.200s", err);
      if (!good)
        started = target; /* nothing works yet: do not wait out more deadlines */
    }
    if (started < target) {
      async_start(t, s, true);
      started++;
      inflight++;
    }
  }
  if (!good)
    ta->setup_failed = true;
  else
    ta->first_err[0] = '\0';

  pthread_barrier_wait(&sh->start);
  if (!ta->setup_failed) {
    int64_t end = now_ns() + sh->duration_ns;
    for (int i = 0; i < t->nslots; i++, inflight++)
      async_start(t, &t->slots[i], false);
    /* Take every completion that is ready, then start the slots' next
     * calls together: the new streams then tend to share writes, and the
     * daemon reads several calls per wake-up (lower p50 at 16-32 in flight
     * than restarting each slot at once, at the same client CPU). */
    async_slot **ready = xcalloc((size_t)t->nslots, sizeof *ready);
    while (inflight) {
      int nready = 0;
      bool success;
      for (async_slot *s = async_next(t, &success, true); s;
           s = async_next(t, &success, false)) {
        int64_t t1 = now_ns();
        inflight--;
        async_finish(t, s, success, t1, true, err);
        if (t1 > ta->t_end)
          ta->t_end = t1;
        if (t1 < end)
          ready[nready++] = s;
      }
      for (int i = 0; i < nready; i++, inflight++)
        async_start(t, ready[i], false);
    }
    free(ready);
  }
  pthread_barrier_wait(&sh->stop);

  grpc_completion_queue_shutdown(t->cq);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
  }
  grpc_completion_queue_destroy(t->cq);
  if (t->ch != sh->shared_channel)
    grpc_channel_destroy(t->ch);
  gd_arena_free(t->replies);
  return NULL;
}

static void async_run(const bench_cfg *cfg, const char *addr, pid_t daemon_pid,
                      const read_keys *keys, rpc_kind kind, const read_point *pt,
                      const client_sec *sec, read_tally *tl, read_window *w) {
  int T = pt->threads;
  async_shared sh = {
      .cfg = cfg, .addr = addr, .keys = keys, .kind = kind, .sec = sec,
      .method = grpc_slice_from_static_string(rpc_methods[kind]),
      .duration_ns = (int64_t)(cfg->duration * 1e9),
  };
  if (sec && sec->token) {
    char *v = xasprintf("Bearer %s", sec->token);
    sh.md[0].key = grpc_slice_from_static_string("authorization");
    sh.md[0].value = grpc_slice_from_copied_string(v);
    sh.n_md = 1;
    free(v);
  }
  if (cfg->conn == CONN_SHARED)
    sh.shared_channel = bench_channel_create(addr, sec);
  pthread_barrier_init(&sh.start, NULL, (unsigned)T + 1);
  pthread_barrier_init(&sh.stop, NULL, (unsigned)T + 1);
  async_thread *th = xcalloc((size_t)T, sizeof *th);
  async_slot *slots = xcalloc((size_t)pt->conc, sizeof *slots);
  for (int i = 0, first = 0; i < T; i++) {
    th[i].idx = i;
    th[i].sh = &sh;
    th[i].tally = &tl[i];
    th[i].nslots = pt->conc / T + (i < pt->conc % T);
    th[i].slots = slots + first;
    first += th[i].nslots;
    th[i].rs = mix64(cfg->seed * 1000003ULL + (uint64_t)i * 7919ULL + kind) | 1;
    if (pthread_create(&th[i].th, NULL, async_thread_main, &th[i]) != 0)
      die("pthread_create: %s", strerror(errno));
  }
  read_window_run(&sh.start, &sh.stop, daemon_pid, w);
  for (int i = 0; i < T; i++)
    pthread_join(th[i].th, NULL);
  if (sh.shared_channel)
    grpc_channel_destroy(sh.shared_channel);
  for (size_t i = 0; i < sh.n_md; i++) {
    grpc_slice_unref(sh.md[i].key);
    grpc_slice_unref(sh.md[i].value);
  }
  pthread_barrier_destroy(&sh.start);
  pthread_barrier_destroy(&sh.stop);
  free(slots);
  free(th);
}

/* ---- one measurement, both clients ---- */

/* read_result (bench_int.h): one measurement, all client threads. */

void read_measure(const bench_cfg *cfg, const char *addr, pid_t daemon_pid,
                  const read_keys *keys, const read_point *pt, rpc_kind kind,
                  const client_sec *sec, read_result *ret) {
  memset(ret, 0, sizeof *ret);
  int T = pt->threads;
  read_tally *tl = xcalloc((size_t)T, sizeof *tl);
  read_window w;
  if (pt->client == CLIENT_ASYNC)
    async_run(cfg, addr, daemon_pid, keys, kind, pt, sec, tl, &w);
  else
    sync_run(cfg, addr, daemon_pid, keys, kind, pt, sec, tl, &w);

  size_t total = 0;
  int64_t t_last = w.t0;
  for (int i = 0; i < T; i++) {
    total += tl[i].n;
    ret->errors += tl[i].errors;
    ret->items_per_call += (double)tl[i].items;
    ret->truncated += tl[i].truncated;
    ret->touched_per_call += (double)tl[i].touched;
    if (tl[i].t_end > t_last)
      t_last = tl[i].t_end;
    if (!ret->first_err[0] && (tl[i].errors || tl[i].setup_failed))
      snprintf(ret->first_err, sizeof ret->first_err, "%s", tl[i].first_err);
  }
  uint64_t *all = xmalloc(total * sizeof *all);
  size_t o = 0;
  double sum = 0;
  for (int i = 0; i < T; i++) {
    memcpy(all + o, tl[i].lat, tl[i].n * sizeof *all);
    o += tl[i].n;
    free(tl[i].lat);
  }
  for (size_t i = 0; i < total; i++)
    sum += (double)all[i];
  qsort(all, total, sizeof *all, cmp_u64);
  ret->calls = total;
  ret->elapsed_s = (double)(t_last - w.t0) / 1e9;
  ret->qps = ret->elapsed_s > 0 ? (double)total / ret->elapsed_s : 0;
  ret->p50_us = (double)percentile(all, total, 0.50) / 1e3;
  ret->p90_us = (double)percentile(all, total, 0.90) / 1e3;
  ret->p99_us = (double)percentile(all, total, 0.99) / 1e3;
  ret->p999_us = (double)percentile(all, total, 0.999) / 1e3;
  ret->max_us = total ? (double)all[total - 1] / 1e3 : 0;
  ret->mean_us = total ? sum / (double)total / 1e3 : 0;
  ret->items_per_call = total ? ret->items_per_call / (double)total : 0;
  ret->touched_per_call = total ? ret->touched_per_call / (double)total : 0;
  ret->client_cpu_s = w.cpu1 - w.cpu0;
  ret->server_cpu_s = w.dcpu1 - w.dcpu0;
  ret->machine_cpu_s = w.mcpu1 - w.mcpu0;
  free(all);
  free(tl);
}

#define MAX_POINTS (2 * MAX_CONC)

typedef struct read_report {
  int repeats, npoints;
  unsigned rpcs; /* bit (1 << rpc_kind) per rpc measured */
  read_point pt[MAX_POINTS];
  read_result res[MAX_REPEAT][MAX_POINTS][RPC__COUNT];
} read_report;

double read_field(const read_result *r, int f) {
  switch (f) {
  case 0: return r->qps;
  case 1: return r->p50_us;
  case 2: return r->p90_us;
  case 3: return r->p99_us;
  case 4: return r->p999_us;
  case 5: return r->mean_us;
  case 6: return r->max_us;
  case 7: return r->elapsed_s > 0 ? r->client_cpu_s / r->elapsed_s : NAN;
  case 8: return r->elapsed_s > 0 ? r->server_cpu_s / r->elapsed_s : NAN;
  case 9: return r->calls ? r->client_cpu_s / (double)r->calls * 1e6 : NAN;
  case 10: return r->calls ? r->server_cpu_s / (double)r->calls * 1e6 : NAN;
  case 11: return r->items_per_call;
  case 12: return (double)r->calls;
  case 13: return (double)r->errors;
  case 14: return r->elapsed_s > 0 ? r->machine_cpu_s / r->elapsed_s : NAN;
  case 15: /* what neither this client nor the daemon used: other tenants */
    return r->elapsed_s > 0 ? (r->machine_cpu_s - r->client_cpu_s - r->server_cpu_s) / r->elapsed_s
                            : NAN;
  case 16: return r->calls ? (double)r->truncated / (double)r->calls : NAN;
  case 17: return r->touched_per_call;
  default: return NAN;
  }
}

const char *const read_field_names[] = {
    "qps", "p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "max_us",
    "client_cpu_cores", "server_cpu_cores", "client_cpu_us_per_call", "server_cpu_us_per_call",
    "items_per_call", "calls", "errors", "machine_cpu_cores", "other_cpu_cores",
    "truncated_frac", "touched_per_call", /* investigator rpcs only */
};
#define F_INVESTIGATE_FIRST RF_COMMON
#define READ_NFIELDS ((int)(sizeof read_field_names / sizeof read_field_names[0]))

static double read_med(const read_report *rep, int p, rpc_kind k, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = read_field(&rep->res[r][p][k], f);
  return median(v, rep->repeats);
}

/* Median over repeats of (kind's field / base's field) at the same point
 * in the same repeat; NAN when base was not measured. */
static double read_ratio(const read_report *rep, int p, rpc_kind k, int f, rpc_kind base) {
  double v[MAX_REPEAT];
  if (!(rep->rpcs & 1u << base))
    return NAN;
  for (int r = 0; r < rep->repeats; r++)
    v[r] = read_field(&rep->res[r][p][k], f) / read_field(&rep->res[r][p][base], f);
  return median(v, rep->repeats);
}

/* A JSON number, or null when not finite (JSON has no NaN). */
json_object *jnum(double v) { return isfinite(v) ? json_object_new_double(v) : NULL; }

void jput(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }

const char *met(bool ok, double v) { return !isfinite(v) ? "n/a" : ok ? "met" : "MISSED"; }

json_object *jtarget(const char *bound, double limit, double v, bool ok) {
  json_object *t = json_object_new_object();
  jput(t, bound, json_object_new_double(limit));
  jput(t, "value", jnum(v));
  jput(t, "met", isfinite(v) ? json_object_new_boolean(ok) : NULL);
  return t;
}

/* v with prec decimals, or "-" when not finite. */
const char *fmtf(char *buf, size_t size, int prec, double v) {
  if (isfinite(v))
    snprintf(buf, size, "%.*f", prec, v);
  else
    snprintf(buf, size, "-");
  return buf;
}

/* The points of a run: each client mode (in --client order) at each
 * concurrency (in --concurrency-list order). */
static void read_points(const bench_cfg *cfg, read_report *rep) {
  rep->npoints = 0;
  for (int c = 0; c < cfg->n_clients; c++)
    for (int i = 0; i < cfg->n_conc; i++) {
      read_point *p = &rep->pt[rep->npoints++];
      p->client = cfg->clients[c];
      p->conc = cfg->conc[i];
      p->threads = p->client == CLIENT_SYNC ? p->conc
                   : cfg->client_threads < p->conc ? cfg->client_threads
                                                   : p->conc;
    }
}

static json_object *read_point_json(const bench_cfg *cfg, const read_report *rep, int p) {
  static const struct {
    int f;
    const char *name;
  } ratios[] = {{0, "qps"}, {1, "p50"}, {3, "p99"}, {4, "p999"}};
  const read_point *pt = &rep->pt[p];
  json_object *j = json_object_new_object();
  json_object_object_add(j, "client", json_object_new_string(client_names[pt->client]));
  json_object_object_add(j, "concurrency", json_object_new_int(pt->conc));
  json_object_object_add(j, "client_threads", json_object_new_int(pt->threads));
  json_object_object_add(j, "connections",
                         json_object_new_int(cfg->conn == CONN_OWN ? pt->threads : 1));
  for (int k = 0; k < RPC__COUNT; k++) {
    if (!(rep->rpcs & 1u << k))
      continue;
    int nf = RPC_INVESTIGATE(k) ? READ_NFIELDS : F_INVESTIGATE_FIRST;
    json_object *jk = json_object_new_object();
    for (int f = 0; f < nf; f++)
      json_object_object_add(jk, read_field_names[f], jnum(read_med(rep, p, k, f)));
    char name[64];
    for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++) {
      if (k != RPC_HEALTH && (rep->rpcs & 1u << RPC_HEALTH)) {
        snprintf(name, sizeof name, "%s_ratio_to_health", ratios[i].name);
        json_object_object_add(jk, name, jnum(read_ratio(rep, p, k, ratios[i].f, RPC_HEALTH)));
      }
      if (k > RPC_GET && (rep->rpcs & 1u << RPC_GET)) {
        snprintf(name, sizeof name, "%s_ratio_to_get_entity", ratios[i].name);
        json_object_object_add(jk, name, jnum(read_ratio(rep, p, k, ratios[i].f, RPC_GET)));
      }
    }
    json_object *per = json_object_new_array();
    for (int r = 0; r < rep->repeats; r++) {
      const read_result *res = &rep->res[r][p][k];
      json_object *jr = json_object_new_object();
      for (int f = 0; f < nf; f++)
        json_object_object_add(jr, read_field_names[f], jnum(read_field(res, f)));
      json_object_object_add(jr, "elapsed_s", jnum(res->elapsed_s));
      if (RPC_INVESTIGATE(k))
        json_object_object_add(jr, "truncated", json_object_new_uint64(res->truncated));
      if (res->first_err[0])
        json_object_object_add(jr, "first_error", json_object_new_string(res->first_err));
      json_object_array_add(per, jr);
    }
    json_object_object_add(jk, "per_repeat", per);
    json_object_object_add(j, rpc_json_names[k], jk);
  }
  return j;
}

/* How the requests were sampled, for the JSON. */
static json_object *read_sample_json(const bench_cfg *cfg, const read_keys *keys) {
  json_object *j = json_object_new_object();
  json_object_object_add(j, "random_sellers", json_object_new_uint64(keys->n));
  json_object_object_add(j, "truth_file",
                         keys->truth_path ? json_object_new_string(keys->truth_path) : NULL);
  json_object_object_add(j, "truth_ring_members", json_object_new_uint64(keys->truth_members));
  json_object_object_add(j, "truth_rows_not_in_links", json_object_new_uint64(keys->truth_missing));
  json_object_object_add(j, "rings", json_object_new_uint64(keys->rings));
  json_object *jl = json_object_new_object();
  json_object_object_add(jl, "ring_members", json_object_new_uint64(keys->linked_ring));
  json_object_object_add(jl, "random_sellers", json_object_new_uint64(keys->linked_random));
  json_object_object_add(jl, "max_hops", json_object_new_string("1 (linked_sellers_1hop), "
                                                                "2 (linked_sellers_2hop)"));
  json_object_object_add(jl, "options", json_object_new_string("default"));
  json_object_object_add(j, "linked_sellers", jl);
  json_object *jp = json_object_new_object();
  json_object_object_add(jp, "pairs", json_object_new_uint64(keys->rq[RPC_PATHS].n));
  json_object_object_add(jp, "source", keys->pairs_source && keys->rq[RPC_PATHS].n
                                           ? json_object_new_string(keys->pairs_source)
                                           : NULL);
  if (keys->pairs_source && !strcmp(keys->pairs_source, "shared_entity"))
    json_object_object_add(jp, "non_hub_shared_entities",
                           json_object_new_uint64(keys->pair_entities));
  json_object_object_add(jp, "k", json_object_new_int(PATHS_K));
  json_object_object_add(jp, "max_hops", json_object_new_int(PATHS_MAX_HOPS));
  json_object_object_add(j, "find_paths", jp);
  json_object_object_add(j, "neighbors_limit", json_object_new_int64(cfg->limit));
  return j;
}

/*
 * Runs the read measurements against addr (a daemon we spawned when
 * daemon_pid != 0).
 */
static json_object *bench_read(const bench_cfg *cfg, const char *addr, pid_t daemon_pid,
                               const read_keys *keys, read_report *rep, bool *ret_ok) {
  memset(rep, 0, sizeof *rep);
  rep->repeats = cfg->repeat;
  rep->rpcs = keys->rpcs;
  read_points(cfg, rep);
  bool ok = true;
  char pname[64];
  if (cfg->warmup > 0) {
    /* Untimed: each rpc at the point with the most calls in flight. */
    bench_cfg wc = *cfg;
    int top = 0;
    wc.duration = cfg->warmup;
    for (int p = 1; p < rep->npoints; p++)
      if (rep->pt[p].conc > rep->pt[top].conc)
        top = p;
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      read_result tmp;
      memset(&tmp, 0, sizeof tmp);
      fprintf(stderr, "graphd-bench: read warm-up: %s, %d in flight, %.1f s (untimed)...\n",
              rpc_names[k], rep->pt[top].conc, cfg->warmup);
      read_measure(&wc, addr, daemon_pid, keys, &rep->pt[top], (rpc_kind)k, NULL, &tmp);
    }
  }
  for (int r = 0; r < cfg->repeat; r++) {
    for (int p = 0; p < rep->npoints; p++) {
      const read_point *pt = &rep->pt[p];
      read_point_name(pt, pname, sizeof pname);
      for (int k = 0; k < RPC__COUNT; k++) {
        if (!(rep->rpcs & 1u << k))
          continue;
        fprintf(stderr, "graphd-bench: read %d/%d: %s client, %d in flight (%d thread%s): %s, "
                        "%.1f s...\n",
                r + 1, cfg->repeat, client_names[pt->client], pt->conc, pt->threads,
                pt->threads == 1 ? "" : "s", rpc_names[k], cfg->duration);
        read_result *res = &rep->res[r][p][k];
        read_measure(cfg, addr, daemon_pid, keys, pt, (rpc_kind)k, NULL, res);
        fprintf(stderr, "graphd-bench:   %.0f QPS, p50 %.0f us, p99 %.0f us, p99.9 %.0f us, "
                        "client %.1f us/call, %.1f items/reply, %" PRIu64 " truncated, %" PRIu64
                        " errors\n",
                res->qps, res->p50_us, res->p99_us, res->p999_us, read_field(res, 9),
                res->items_per_call, res->truncated, res->errors);
        if (res->errors || res->calls == 0) {
          anomaly("read %d (%s): %s: %" PRIu64 " error(s) in %" PRIu64 " calls; first: %s", r + 1,
                  pname, rpc_names[k], res->errors, res->calls + res->errors,
                  res->first_err[0] ? res->first_err : "(no calls completed)");
          ok = false;
        }
        if (k >= RPC_NEIGHBORS && res->calls && res->items_per_call == 0) {
          anomaly("read %d (%s): %s returned no %s at all", r + 1, pname, rpc_names[k],
                  k == RPC_NEIGHBORS ? "neighbours" : k == RPC_PATHS ? "paths" : "sellers");
          ok = false;
        }
      }
    }
  }

  char b1[64], b[12][32];
  printf("\nREAD  %.1f s per measurement, %s; medians of %d interleaved repeat(s)\n",
         cfg->duration,
         cfg->conn == CONN_OWN ? "one connection per client thread" : "one shared connection",
         cfg->repeat);
  if (cfg->warmup > 0)
    printf("      each rpc called untimed for %.1f s first (--warmup)\n", cfg->warmup);
  printf("      GetEntity, Neighbors (limit %u): %zu random sellers\n", cfg->limit, keys->n);
  if (rep->rpcs & (1u << RPC_LINKED1 | 1u << RPC_LINKED2)) {
    if (keys->linked_ring)
      printf("      LinkedSellers (max_hops 1 / 2, default options): %zu ring members (from %s)"
             " + %zu random sellers\n",
             keys->linked_ring, keys->truth_path, keys->linked_random);
    else
      printf("      LinkedSellers (max_hops 1 / 2, default options): %zu random sellers (no ring "
             "truth)\n",
             keys->linked_random);
  }
  if (rep->rpcs & 1u << RPC_PATHS) {
    if (!strcmp(keys->pairs_source, "same_ring"))
      printf("      FindPaths (k %d, max_hops %d): %zu pairs of members of the same ring (%zu "
             "rings)\n",
             PATHS_K, PATHS_MAX_HOPS, keys->rq[RPC_PATHS].n, keys->rings);
    else
      printf("      FindPaths (k %d, max_hops %d): %zu pairs of sellers linked to the same non-hub "
             "entity (%zu such entities)\n",
             PATHS_K, PATHS_MAX_HOPS, keys->rq[RPC_PATHS].n, keys->pair_entities);
  }
  printf("      x/hc, x/get = median of per-repeat ratios to Health/Check, GetEntity at the same "
         "point\n");
  printf("      clients: async = call slots on a completion queue per client thread, requests "
         "pre-packed;\n               sync = one thread per call in flight, blocking gc_unary\n");
  printf("  %-6s %4s %3s %-12s %9s %8s %8s %9s %7s %7s %7s %7s %7s %7s %8s %8s %5s %5s %5s %6s "
         "%6s %6s\n",
         "client", "infl", "thr", "rpc", "QPS", "p50 us", "p99 us", "p99.9 us", "QPS/hc",
         "p50/hc", "p99/hc", "QPS/get", "p50/get", "p99/get", "cli us/c", "srv us/c", "cli", "srv",
         "oth", "items", "trunc%", "errors");
  for (int p = 0; p < rep->npoints; p++) {
    const read_point *pt = &rep->pt[p];
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      printf("  %-6s %4d %3d %-12s %9s %8.1f %8.1f %9.1f %7s %7s %7s %7s %7s %7s %8s %8s %5s %5s "
             "%5s %6.1f %6s %6.0f\n",
             client_names[pt->client], pt->conc, pt->threads, rpc_names[k],
             fmt_count(b1, sizeof b1, read_med(rep, p, k, 0)), read_med(rep, p, k, 1),
             read_med(rep, p, k, 3), read_med(rep, p, k, 4),
             fmtf(b[0], 32, 3, k == RPC_HEALTH ? NAN : read_ratio(rep, p, k, 0, RPC_HEALTH)),
             fmtf(b[1], 32, 3, k == RPC_HEALTH ? NAN : read_ratio(rep, p, k, 1, RPC_HEALTH)),
             fmtf(b[2], 32, 3, k == RPC_HEALTH ? NAN : read_ratio(rep, p, k, 3, RPC_HEALTH)),
             fmtf(b[3], 32, 3, k <= RPC_GET ? NAN : read_ratio(rep, p, k, 0, RPC_GET)),
             fmtf(b[4], 32, 3, k <= RPC_GET ? NAN : read_ratio(rep, p, k, 1, RPC_GET)),
             fmtf(b[5], 32, 3, k <= RPC_GET ? NAN : read_ratio(rep, p, k, 3, RPC_GET)),
             fmtf(b[6], 32, 1, read_med(rep, p, k, 9)),
             fmtf(b[7], 32, 1, read_med(rep, p, k, 10)),
             fmtf(b[8], 32, 2, read_med(rep, p, k, 7)),
             fmtf(b[9], 32, 2, read_med(rep, p, k, 8)),
             fmtf(b[11], 32, 2, read_med(rep, p, k, 15)), read_med(rep, p, k, 11),
             fmtf(b[10], 32, 1, RPC_INVESTIGATE(k) ? 100 * read_med(rep, p, k, 16) : NAN),
             read_med(rep, p, k, 13));
    }
  }
  printf("  (infl = calls in flight, thr = client threads; cli/srv us/c = CPU time per call in "
         "this\n   client / in the daemon; cli/srv/oth = cores busy in this client / the daemon / "
         "the rest of\n   the machine (/proc/stat: other tenants); items = entities (GetEntity), "
         "neighbours\n   (Neighbors), sellers (LinkedSellers) or paths (FindPaths) per reply; "
         "trunc%% = replies\n   with truncated set (the max_touched work bound was reached))\n");
  printf("  per repeat QPS:\n");
  for (int p = 0; p < rep->npoints; p++) {
    read_point_name(&rep->pt[p], pname, sizeof pname);
    printf("    %-10s", pname);
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      printf("  %s", rpc_names[k]);
      for (int r = 0; r < rep->repeats; r++)
        printf(" %s", fmt_count(b1, sizeof b1, rep->res[r][p][k].qps));
    }
    printf("\n");
  }

  /* The headline point (also copied to the top level of the JSON, as
   * before the sweep existed): the first client mode at its highest
   * concurrency. */
  int head = 0;
  for (int p = 0; p < rep->npoints; p++)
    if (rep->pt[p].client == rep->pt[0].client && rep->pt[p].conc > rep->pt[head].conc)
      head = p;

  json_object *j = json_object_new_object();
  json_object_object_add(j, "client", json_object_new_string(client_names[rep->pt[head].client]));
  json_object_object_add(j, "concurrency", json_object_new_int(rep->pt[head].conc));
  json_object_object_add(j, "client_threads", json_object_new_int(rep->pt[head].threads));
  json_object *jcl = json_object_new_array();
  for (int c = 0; c < cfg->n_clients; c++)
    json_object_array_add(jcl, json_object_new_string(client_names[cfg->clients[c]]));
  json_object_object_add(j, "clients", jcl);
  json_object *jcc = json_object_new_array();
  for (int i = 0; i < cfg->n_conc; i++)
    json_object_array_add(jcc, json_object_new_int(cfg->conc[i]));
  json_object_object_add(j, "concurrency_list", jcc);
  json_object_object_add(j, "async_client_threads", json_object_new_int(cfg->client_threads));
  json_object_object_add(j, "duration_s", json_object_new_double(cfg->duration));
  json_object_object_add(j, "warmup_s", json_object_new_double(cfg->warmup));
  json_object_object_add(j, "repeats", json_object_new_int(cfg->repeat));
  json_object_object_add(j, "conn", json_object_new_string(cfg->conn == CONN_OWN ? "own" : "shared"));
  json_object *jr = json_object_new_array();
  for (int k = 0; k < RPC__COUNT; k++)
    if (rep->rpcs & 1u << k)
      json_object_array_add(jr, json_object_new_string(rpc_json_names[k]));
  json_object_object_add(j, "rpcs", jr);
  json_object_object_add(j, "keys", json_object_new_uint64(keys->n));
  json_object_object_add(j, "neighbors_limit", json_object_new_int64(cfg->limit));
  json_object_object_add(j, "sample", read_sample_json(cfg, keys));
  json_object_object_add(j, "call_timeout_ms", json_object_new_int(cfg->call_timeout_ms));
  json_object_object_add(j, "target", json_object_new_string(addr));
  json_object_object_add(j, "spawned", json_object_new_boolean(daemon_pid != 0));
  json_object_object_add(j, "ok", json_object_new_boolean(ok));
  json_object *head_j = read_point_json(cfg, rep, head);
  for (int k = 0; k < RPC__COUNT; k++)
    if (rep->rpcs & 1u << k)
      json_object_object_add(j, rpc_json_names[k],
                             json_object_get(json_object_object_get(head_j, rpc_json_names[k])));
  json_object_put(head_j);
  json_object *pts = json_object_new_array();
  for (int p = 0; p < rep->npoints; p++)
    json_object_array_add(pts, read_point_json(cfg, rep, p));
  json_object_object_add(j, "points", pts);
  *ret_ok = ok;
  return j;
}

/* Read phase with a daemon we spawn on data_dir (or an existing addr). */
static json_object *read_phase(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                               const char *addr, const dataset *keys_ds, bool *ret_ok) {
  read_keys keys;
  read_keys_build(cfg, keys_ds, &keys);
  read_report *rep = xcalloc(1, sizeof *rep);
  json_object *j = NULL;
  *ret_ok = false;
  if (addr) {
    j = bench_read(cfg, addr, 0, &keys, rep, ret_ok);
  } else {
    char *log = xasprintf("%s/graphd-read.log", workroot);
    daemon_proc dp;
    if (daemon_start(cfg, data_dir, log, &dp)) {
      fprintf(stderr, "graphd-bench: graphd (pid %d) serving %s on %s\n", (int)dp.pid, data_dir,
              dp.addr);
      j = bench_read(cfg, dp.addr, dp.pid, &keys, rep, ret_ok);
      int64_t rss = -1;
      if (daemon_alive(&dp, "during the read benchmark"))
        rss = proc_status_kb(dp.pid, "VmHWM");
      else
        *ret_ok = false;
      daemon_exit ex;
      daemon_stop(cfg, &dp, &ex);
      if (!ex.exited_ok)
        *ret_ok = false;
      char b1[64];
      printf("  graphd (read phase): peak RSS (VmHWM) %s, SIGTERM->exit %.3f s, exit: %s\n",
             fmt_bytes(b1, sizeof b1, (double)rss), ex.stop_s, ex.desc);
      json_object_object_add(j, "daemon_peak_rss_bytes", json_object_new_int64(rss));
      json_object_object_add(j, "daemon_exit", json_object_new_string(ex.desc));
      json_object_object_add(j, "data_dir", json_object_new_string(data_dir));
      if (ex.exited_ok && read_keys_rpcs(&keys) & (1u << RPC_LINKED1 | 1u << RPC_LINKED2))
        json_object_object_add(j, "in_process", read_inproc(cfg, data_dir, &keys, j));
    } else {
      j = json_object_new_object();
      json_object_object_add(j, "ok", json_object_new_boolean(false));
    }
    daemon_free(&dp);
    free(log);
  }
  free(rep);
  read_keys_free(&keys);
  return j;
}

/* ==================================================================== */
/* main                                                                    */

static json_object *data_json(const dataset *d) {
  json_object *j = json_object_new_object();
  size_t sellers = 0;
  for (size_t i = 0; i < d->ent.n; i++)
    sellers += d->ent.items[i].type == GD_TYPE_SELLER;
  json_object_object_add(j, "links_file", json_object_new_string(d->path));
  json_object_object_add(j, "file_bytes", json_object_new_uint64(d->file_bytes));
  json_object_object_add(j, "link_records", json_object_new_uint64(d->nlinks));
  json_object_object_add(j, "distinct_links", json_object_new_uint64(d->distinct_links));
  json_object_object_add(j, "distinct_entities", json_object_new_uint64(d->ent.n));
  json_object_object_add(j, "sellers", json_object_new_uint64(sellers));
  json_object_object_add(j, "entity_records_ignored", json_object_new_uint64(d->entity_records));
  json_object_object_add(j, "load_seconds", json_object_new_double(d->load_s));
  printf("data:    %s: %zu link records, %" PRIu64 " distinct links, %zu entities (%zu sellers), "
         "parsed in %.2f s\n",
         d->path, d->nlinks, d->distinct_links, d->ent.n, sellers, d->load_s);
  if (d->entity_records)
    printf("         (%" PRIu64 " entity records in the file ignored)\n", d->entity_records);
  return j;
}

static json_object *config_json(const bench_cfg *c) {
  json_object *j = json_object_new_object();
  json_object_object_add(j, "quick", json_object_new_boolean(c->quick));
  json_object_object_add(j, "sellers", json_object_new_uint64(c->sellers));
  json_object_object_add(j, "seed", json_object_new_uint64(c->seed));
  json_object_object_add(j, "repeat", json_object_new_int(c->repeat));
  json_object_object_add(j, "batch", json_object_new_uint64(c->batch));
  json_object_object_add(j, "ref_window", json_object_new_int(c->ref_window));
  json_object *cl = json_object_new_array();
  for (int i = 0; i < c->n_clients; i++)
    json_object_array_add(cl, json_object_new_string(client_names[c->clients[i]]));
  json_object_object_add(j, "clients", cl);
  json_object_object_add(j, "client_threads", json_object_new_int(c->client_threads));
  json_object *cc = json_object_new_array();
  for (int i = 0; i < c->n_conc; i++)
    json_object_array_add(cc, json_object_new_int(c->conc[i]));
  json_object_object_add(j, "concurrency_list", cc);
  json_object_object_add(j, "duration_s", json_object_new_double(c->duration));
  json_object_object_add(j, "sample", json_object_new_uint64(c->sample));
  json_object_object_add(j, "limit", json_object_new_int64(c->limit));
  json_object *jr = json_object_new_array();
  for (int k = 0; k < RPC__COUNT; k++)
    if (c->rpcs & 1u << k)
      json_object_array_add(jr, json_object_new_string(rpc_opt_names[k]));
  json_object_object_add(j, "rpcs", jr);
  json_object_object_add(j, "truth", c->truth ? json_object_new_string(c->truth) : NULL);
  json_object_object_add(j, "conn", json_object_new_string(c->conn == CONN_OWN ? "own" : "shared"));
  json_object_object_add(j, "graphd", json_object_new_string(c->graphd));
  json_object_object_add(j, "sellergen", json_object_new_string(c->sellergen));
  json_object *ga = json_object_new_array();
  for (int i = 0; i < c->n_graphd_args; i++)
    json_object_array_add(ga, json_object_new_string(c->graphd_args[i]));
  json_object_object_add(j, "graphd_args", ga);
  json_object *sa = json_object_new_array();
  for (int i = 0; i < c->n_sellergen_args; i++)
    json_object_array_add(sa, json_object_new_string(c->sellergen_args[i]));
  json_object_object_add(j, "sellergen_args", sa);
  if (c->cmd == CMD_SECURITY) {
    json_object *sc = json_object_new_array();
    for (int k = 0; k < SEC__COUNT; k++)
      if (c->sec_configs & 1u << k)
        json_object_array_add(sc, json_object_new_string(sec_config_names[k]));
    json_object_object_add(j, "configs", sc);
    json_object_object_add(j, "openssl", json_object_new_string(c->openssl));
  }
  if (c->cmd == CMD_METRICS)
    json_object_object_add(j, "scrape_ms", json_object_new_int(c->scrape_ms));
  if (c->cmd == CMD_WARM)
    json_object_object_add(j, "job_timeout_ms", json_object_new_int(c->job_timeout_ms));
  if (c->cmd == CMD_PLACE || c->cmd == CMD_SCALE)
    json_object_object_add(j, "job_timeout_ms", json_object_new_int(c->job_timeout_ms));
  if (c->cmd == CMD_SCALE) {
    json_object *sz = json_object_new_array();
    for (int i = 0; i < c->n_sizes; i++)
      json_object_array_add(sz, json_object_new_uint64(c->sizes[i]));
    json_object_object_add(j, "sizes", sz);
  }
  if (c->cmd == CMD_CLUSTER) {
    json_object_object_add(j, "python", json_object_new_string(c->python));
    json_object_object_add(j, "leiden_ref", json_object_new_string(c->leiden_ref));
    json_object_object_add(j, "job_timeout_ms", json_object_new_int(c->job_timeout_ms));
  }
  return j;
}

int main(int argc, char **argv) {
  bench_cfg cfg;
  parse_args(argc, argv, &cfg);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_fatal_signal);
  signal(SIGTERM, on_fatal_signal);
  g_anomalies = json_object_new_array();
  int64_t t_start = now_ns();

  /* One gRPC reference for the whole run, so that closing the last client
   * between measurements does not shut gRPC down and start it again. */
  grpc_init();

  char *cmdline = command_line(argc, argv);
  printf("graphd-bench %s\ncommand: %s\n", cfg.cmd_name, cmdline);
  json_object *root = json_object_new_object();
  json_object *b = json_object_new_object();
  json_object_object_add(root, "bench", b);
  json_object_object_add(b, "tool", json_object_new_string("graphd-bench"));
  json_object_object_add(b, "mode", json_object_new_string(cfg.cmd_name));
  json_object_object_add(b, "command", json_object_new_string(cmdline));
  json_object_object_add(b, "machine", machine_info(&cfg));
  json_object_object_add(b, "config", config_json(&cfg));

  char *workroot = make_temp_dir(cfg.workdir, "graphd-bench");
  fprintf(stderr, "graphd-bench: working in %s\n", workroot);
  bool ok = true;
  dataset d;
  char *links_path = NULL;

  if (cfg.cmd == CMD_INGEST || cfg.cmd == CMD_ALL || cfg.cmd == CMD_CLUSTER ||
      cfg.cmd == CMD_SECURITY || cfg.cmd == CMD_METRICS || cfg.cmd == CMD_GATEWAY ||
      cfg.cmd == CMD_WARM || cfg.cmd == CMD_PLACE || cfg.cmd == CMD_BULK) {
    if (cfg.sellers) {
      char *gen = xasprintf("%s/gen", workroot);
      run_sellergen(&cfg, gen);
      links_path = xasprintf("%s/links.csv", gen);
      free(gen);
    } else {
      links_path = xstrdup(cfg.links);
    }
    fprintf(stderr, "graphd-bench: loading %s...\n", links_path);
    dataset_load(&d, links_path);
    json_object_object_add(b, "data", data_json(&d));
  }
  if (cfg.cmd == CMD_SCALE) {
    /* Its own data per size, generated, loaded and freed there (scale.c). */
    bool sok;
    json_object_object_add(b, "scale", bench_scale(&cfg, workroot, &sok));
    ok &= sok;
  } else if (cfg.cmd == CMD_BULK) {
    bool bok;
    json_object_object_add(b, "bulk", bench_bulk(&cfg, workroot, &d, cfg.no_ingest, &bok));
    ok &= bok;
    dataset_free(&d);
  } else if (cfg.cmd == CMD_WARM) {
    /* Its own ingest, in two parts through one daemon (warm.c). */
    bool wok;
    json_object_object_add(b, "warm", bench_warm(&cfg, workroot, &d, &wok));
    ok &= wok;
    dataset_free(&d);
  } else if (cfg.cmd == CMD_PLACE) {
    /* Its own ingest, clustering and daemons (place.c). */
    bool pok;
    json_object_object_add(b, "place", bench_place(&cfg, workroot, &d, links_path, &pok));
    ok &= pok;
    dataset_free(&d);
  } else if (cfg.cmd == CMD_INGEST || cfg.cmd == CMD_ALL || cfg.cmd == CMD_CLUSTER ||
             cfg.cmd == CMD_SECURITY || cfg.cmd == CMD_METRICS || cfg.cmd == CMD_GATEWAY) {

    ingest_report *irep = xcalloc(1, sizeof *irep);
    char *kept = NULL;
    /* cluster, security: one ingest is enough (the data set to measure on,
     * and its figures for the record); the repeats are for the mode. */
    bench_cfg icfg = cfg;
    if (cfg.cmd == CMD_SECURITY || cfg.cmd == CMD_METRICS || cfg.cmd == CMD_GATEWAY)
      icfg.repeat = 1;
    if (cfg.cmd == CMD_CLUSTER) {
      icfg.repeat = 1;
      /* With every batch queued at once the store writer groups up to 1024
       * of them in one transaction, and at 1M sellers (618 batches of
       * 10000 links) LMDB's transaction overflows (MDB_TXN_FULL) after ~250
       * of them, failing the rest. A window of 64 keeps groups small. */
      if (!icfg.ref_window)
        icfg.ref_window = 64;
    }
    json_object_object_add(b, "ingest",
                           bench_ingest(&icfg, workroot, &d, irep,
                                        cfg.cmd != CMD_INGEST ? &kept : NULL));
    ok &= irep->ok;
    free(irep);
    if (cfg.cmd == CMD_CLUSTER) {
      dataset_free(&d); /* not needed any more: free it before measuring */
      if (kept) {
        bool cok;
        json_object_object_add(b, "cluster", bench_cluster(&cfg, workroot, kept, &cok));
        ok &= cok;
        if (!cfg.keep)
          rm_rf(kept);
        free(kept);
      } else {
        anomaly("no graphd data dir to cluster: the graphd ingest failed");
        ok = false;
      }
    } else if (cfg.cmd == CMD_SECURITY || cfg.cmd == CMD_METRICS || cfg.cmd == CMD_GATEWAY) {
      if (kept) {
        /* The keys' messages point into d (the sync client packs them per
         * call): d lives until the end, as for `all`. */
        read_keys keys;
        read_keys_build(&cfg, &d, &keys);
        bool sok;
        if (cfg.cmd == CMD_SECURITY)
          json_object_object_add(b, "security",
                                 bench_security(&cfg, workroot, kept, &keys, &sok));
        else if (cfg.cmd == CMD_METRICS)
          json_object_object_add(b, "metrics", bench_metrics(&cfg, workroot, kept, &keys, &sok));
        else
          json_object_object_add(b, "gateway", bench_gateway(&cfg, workroot, kept, &keys, &sok));
        ok &= sok;
        read_keys_free(&keys);
        if (!cfg.keep)
          rm_rf(kept);
        free(kept);
      } else {
        anomaly("no graphd data dir to measure on: the graphd ingest failed");
        ok = false;
      }
    } else if (cfg.cmd == CMD_ALL) {
      if (kept) {
        bool rok;
        json_object_object_add(b, "read", read_phase(&cfg, workroot, kept, NULL, &d, &rok));
        ok &= rok;
        if (!cfg.keep)
          rm_rf(kept);
        free(kept);
      } else {
        anomaly("no graphd data dir to read from: the last graphd ingest failed");
        ok = false;
      }
    }
    dataset_free(&d);
  } else {
    fprintf(stderr, "graphd-bench: loading keys from %s...\n", cfg.keys_from);
    dataset_load(&d, cfg.keys_from);
    json_object_object_add(b, "data", data_json(&d));
    bool rok;
    json_object_object_add(b, "read", read_phase(&cfg, workroot, cfg.data, cfg.addr, &d, &rok));
    ok &= rok;
    dataset_free(&d);
  }

  double la[3];
  loadavg(la);
  json_object *m = json_object_object_get(b, "machine");
  json_object *jla = json_object_new_array();
  for (int i = 0; i < 3; i++)
    json_object_array_add(jla, json_object_new_double(la[i]));
  json_object_object_add(m, "loadavg_end", jla);
  ok &= json_object_array_length(g_anomalies) == 0;
  json_object_object_add(b, "ok", json_object_new_boolean(ok));
  json_object_object_add(b, "anomalies", g_anomalies);
  double total_s = (double)(now_ns() - t_start) / 1e9;
  json_object_object_add(b, "wall_seconds", json_object_new_double(total_s));

  printf("\n%s: %zu anomal%s; loadavg at end %.2f %.2f %.2f; %.1f s in all\n",
         ok ? "OK" : "FAILED", json_object_array_length(g_anomalies),
         json_object_array_length(g_anomalies) == 1 ? "y" : "ies", la[0], la[1], la[2], total_s);
  for (size_t i = 0; i < json_object_array_length(g_anomalies); i++)
    printf("  anomaly: %s\n", json_object_get_string(json_object_array_get_idx(g_anomalies, i)));
  if (cfg.keep) {
    printf("kept: %s\n", workroot);
  } else if (!ok) {
    /* Keep the daemon logs the anomalies point to; drop the bulk. */
    char *gen = xasprintf("%s/gen", workroot);
    rm_rf(gen);
    free(gen);
    printf("kept for inspection (logs): %s\n", workroot);
  } else {
    rm_rf(workroot);
  }
  printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(root);
  free(workroot);
  free(links_path);
  free(cmdline);
  grpc_shutdown_blocking();
  return ok ? 0 : 1;
}
