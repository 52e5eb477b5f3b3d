/*
 * graphd-bench internals shared by bench.c (ingest, read, main) and the
 * modes in their own files (cluster.c, security.c, metrics.c, gateway.c,
 * warm.c, place.c): the configuration, small helpers, anomaly reporting,
 * spawning / stopping the daemon, one read measurement, the libcurl GET
 * (metrics.c) and clustering jobs through the daemon (job.c). Everything
 * here but the modes, the GET and the jobs is defined in bench.c and
 * documented there.
 */
#ifndef GD_BENCH_INT_H
#define GD_BENCH_INT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef GD_BENCH_GRAPHD
#define GD_BENCH_GRAPHD "graphd"
#endif
#ifndef GD_BENCH_SELLERGEN
#define GD_BENCH_SELLERGEN "sellergen"
#endif
#ifndef GD_BENCH_SRCDIR
#define GD_BENCH_SRCDIR "."
#endif

#define SVC "/graphd.v1.SellerGraph/"
#define MAX_DAEMONS 8
#define MAX_GRAPHD_ARGS 32
#define MAX_SELLERGEN_ARGS 32
#define MAX_REPEAT 100
#define MAX_CONC 8 /* values in --concurrency-list */
#define MAX_SIZES 8 /* values in --sizes */

struct gc_client;
struct gc_status;
struct gd_store;

/* ---- configuration ---- */

typedef enum {
  CMD_INGEST = 1, CMD_READ, CMD_ALL, CMD_CLUSTER, CMD_SECURITY, CMD_METRICS, CMD_GATEWAY,
  CMD_WARM, CMD_PLACE, CMD_SCALE, CMD_BULK
} bench_cmd;
typedef enum { CONN_OWN = 0, CONN_SHARED = 1 } conn_mode;
typedef enum { CLIENT_ASYNC = 0, CLIENT_SYNC = 1 } client_mode;

typedef struct bench_cfg {
  bench_cmd cmd;
  const char *cmd_name;
  const char *links, *keys_from;
  uint64_t sellers;
  uint64_t seed;
  const char *sellergen, *graphd;
  const char *addr, *data;
  const char *workdir;
  int repeat;
  size_t batch;
  int ref_window; /* 0 = submit every reference op at once */
  int conc[MAX_CONC]; /* calls in flight, one measurement point each */
  int n_conc;
  client_mode clients[2]; /* --client: async, sync or both (async first) */
  int n_clients;
  int client_threads; /* async client threads */
  double duration;
  double warmup; /* read: untimed seconds per rpc before its first measurement */
  size_t sample;
  unsigned limit;
  unsigned rpcs;     /* --rpcs: bit (1 << rpc_kind) per rpc measured */
  const char *truth; /* --truth: ring membership file; NULL = next to the links file */
  conn_mode conn;
  bool quick, keep;
  const char *graphd_args[MAX_GRAPHD_ARGS];
  int n_graphd_args;
  const char *sellergen_args[MAX_SELLERGEN_ARGS]; /* --sellergen-arg, passed to sellergen */
  int n_sellergen_args;
  const char *python, *leiden_ref; /* cluster: the reference's interpreter and script */
  int call_timeout_ms, step_timeout_ms, start_timeout_ms, stop_timeout_ms;
  int job_timeout_ms; /* cluster: one clustering job, one reference run */
  unsigned sec_configs; /* security: bit (1 << sec_config) per configuration measured */
  const char *openssl;  /* security: the openssl command that makes the certificate */
  int scrape_ms;        /* metrics: scrape interval */
  uint64_t sizes[MAX_SIZES]; /* scale: seller counts, ascending */
  int n_sizes;
  bool no_ingest; /* bulk: BulkLoad and raw only */
} bench_cfg;

/* ---- helpers ---- */

int64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t mix64(uint64_t x);
/* Median of the finite values of v (NAN if none). */
double median(const double *v, int n);
/* qsort comparison of doubles, ascending. */
int cmp_double(const void *a, const void *b);
/* Nearest-rank percentile q (0..1) of v[0..n), which it sorts in place;
 * NAN if n is 0. */
double pctl(double *v, size_t n, double q);
const char *fmt_count(char *buf, size_t size, double v);
const char *fmt_bytes(char *buf, size_t size, double b);
json_object *jnum(double v); /* NULL (JSON null) when not finite */
json_object *jdouble_array(const double *v, int n);
/* json_object_object_add: o takes v over (v may be NULL, JSON null). */
void jput(json_object *o, const char *k, json_object *v);
/* A target's verdict in the text reports: "met" or "MISSED" by ok, "n/a"
 * when the value v is not finite. */
const char *met(bool ok, double v);
/* A target in the JSON reports: {BOUND: limit, "value": v, "met": ok},
 * "met" null when v is not finite; bound names the limit ("min", "max",
 * "max_bytes", ...). */
json_object *jtarget(const char *bound, double limit, double v, bool ok);

/* Child processes: registered ones are SIGKILLed by die() and fatal signals. */
void children_add(pid_t pid);
void children_remove(pid_t pid);
void describe_status(int status, char *buf, size_t size);
void print_log_tail(const char *path);

/* Records (and prints) an anomaly: the run then exits 1. */
void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void rm_rf(const char *dir);
void dir_bytes(const char *dir, uint64_t *ret_apparent, uint64_t *ret_alloc);
/* A "Name:  123 kB" line of /proc/PID/status, in bytes; -1 if absent. */
int64_t proc_status_kb(pid_t pid, const char *name);
double proc_cpu_s(pid_t pid);

/* ---- the daemon ---- */

typedef struct daemon_proc {
  pid_t pid;
  int out_fd;
  char addr[160];
  char *log_path;
  double start_s; /* spawn to listening line */
} daemon_proc;

typedef struct daemon_exit {
  bool exited_ok;     /* exit status 0 */
  bool hung;          /* did not exit within the stop timeout: killed */
  int status;         /* waitpid status */
  double stop_s;      /* SIGTERM to exit */
  char desc[128];
} daemon_exit;

bool daemon_start(const bench_cfg *cfg, const char *data_dir, const char *log_path,
                  daemon_proc *d);
void daemon_stop(const bench_cfg *cfg, daemon_proc *d, daemon_exit *ret);
bool daemon_alive(daemon_proc *d, const char *when);
void daemon_free(daemon_proc *d);
/* Ends a daemon the caller is done with: daemon_alive(d, when) if it still
 * has a pid, daemon_stop (into *ret), daemon_free. True when it was alive
 * and exited 0 (the anomalies otherwise are daemon_alive's and
 * daemon_stop's). */
bool daemon_finish(const bench_cfg *cfg, daemon_proc *d, const char *when, daemon_exit *ret);
/*
 * The port a daemon printed after marker in its log (log_path, its stderr:
 * "... metrics on 127.0.0.1:PORT", "... console on port PORT (...)"): the
 * word right after the marker, its part after the last ':' if it has one.
 * The log is reread every 50 ms for about 5 s until such a line with a
 * port > 0 is there; 0 if none comes. Records no anomaly.
 */
int bench_log_port(const char *log_path, const char *marker);

/* Runs sellergen (cfg->sellergen) for cfg->sellers sellers, seed
 * cfg->seed and cfg's --sellergen-arg, writing into outdir; dies when it
 * fails. */
void run_sellergen(const bench_cfg *cfg, const char *outdir);

/* ---- the loaded links file (bench.c) ---- */

/* The links file, parsed once, keys interned (bench.c: dataset_load). */
typedef struct dataset dataset;
/* Parses path (dies on a bad file); dataset_close releases it. */
dataset *dataset_open(const char *path);
void dataset_close(dataset *d); /* NULL-safe */
size_t dataset_links(const dataset *d);
uint64_t dataset_distinct_links(const dataset *d); /* unordered pairs, keys normalised */
int64_t dataset_link_seen(const dataset *d, size_t i);
/* Sorts the link records by seen time; records seen at the same time keep
 * their file order. */
void dataset_sort_by_seen(dataset *d);
/* Moves every link record of a seeded random sample of the sellers to the
 * end of d (both parts keep their order): sellers are drawn until their
 * records reach want (at least one seller). Returns the records moved (the
 * last ones of d: none of them shares a seller with the rest) and sets
 * *ret_sellers to the sellers drawn. */
size_t dataset_hold_back_sellers(dataset *d, size_t want, uint64_t seed, size_t *ret_sellers);

/*
 * Streams link records [first, first + n) of d through one Ingest call on
 * c (UpsertRequests of cfg->batch links, coalescing on, a one-hour
 * deadline); the reply means durable. *ret_seconds is the time from
 * opening the call to the reply (NAN when the call failed), *ret_records
 * the reply's links created + updated (0 when it failed). Returns true
 * when the call succeeded and counted n records. Otherwise it records an
 * anomaly, "LABEL: Ingest of WHATn link records failed: CODE: MESSAGE" or
 * "LABEL: Ingest counted N link records, n sent" (what: "" or words that
 * end in a space, e.g. "the first "), and returns false.
 */
bool bench_ingest_range(const bench_cfg *cfg, struct gc_client *c, const dataset *d, size_t first,
                        size_t n, const char *label, const char *what, double *ret_seconds,
                        uint64_t *ret_records);
/* The same through another client-stream rpc taking UpsertRequests and
 * answering IngestReply (method: "Ingest" or "BulkLoad"); the anomalies
 * name the method instead of Ingest. */
bool bench_load_range(const bench_cfg *cfg, struct gc_client *c, const dataset *d, size_t first,
                      size_t n, const char *method, const char *label, const char *what,
                      double *ret_seconds, uint64_t *ret_records);

/* ---- one read measurement (the read and security modes) ---- */

/* The rpcs the read benchmark can measure, in the order measured. */
typedef enum {
  RPC_HEALTH = 0, RPC_GET, RPC_NEIGHBORS, RPC_LINKED1, RPC_LINKED2, RPC_PATHS, RPC__COUNT
} rpc_kind;

extern const char *const rpc_names[RPC__COUNT];      /* "Health/Check", "GetEntity", ... */
extern const char *const rpc_opt_names[RPC__COUNT];  /* "health", "get", ... (--rpcs) */
extern const char *const rpc_json_names[RPC__COUNT]; /* "health", "get_entity", ... */
extern const char *const client_names[2];            /* "async", "sync" */

/* The sampled requests of every rpc (bench.c: read_keys_build). */
typedef struct read_keys read_keys;
/* Samples cfg->sample keys of d for the rpcs in cfg->rpcs (bench.c has
 * the rules); the messages point into d, which must outlive them.
 * read_keys_delete releases them. */
read_keys *read_keys_new(const bench_cfg *cfg, const dataset *d);
void read_keys_delete(read_keys *k); /* NULL-safe */
unsigned read_keys_rpcs(const read_keys *k); /* bit (1 << rpc_kind) per rpc with requests */
size_t read_keys_sellers(const read_keys *k); /* random sellers sampled (GetEntity keys) */
/* The sampled requests of one rpc (*ret: valid while k lives); their number. */
struct ProtobufCMessage;
size_t read_keys_requests(const read_keys *k, rpc_kind kind,
                          const struct ProtobufCMessage *const **ret);

/* The read mode's in-process reference (inproc.c): k's LinkedSellers
 * requests run through gd_query_linked in this process on data_dir (the
 * daemon stopped), one thread; prints a line per rpc and returns its JSON,
 * with the ratio to daemon_read's (bench_read's JSON, may be NULL)
 * server CPU per call at the headline point. */
json_object *read_inproc(const bench_cfg *cfg, const char *data_dir, const read_keys *k,
                         json_object *daemon_read);

/* One measurement point: a client mode at a number of calls in flight. */
typedef struct read_point {
  client_mode client;
  int conc;    /* calls in flight (sync: threads) */
  int threads; /* client threads */
} read_point;

/* What the client sends besides the request (NULL = plaintext, no
 * metadata: what the read mode measures). */
typedef struct client_sec {
  bool tls;
  const char *root_pem;    /* with tls: the CA / self-signed certificate to trust */
  const char *server_name; /* with tls: name to check the certificate against (NULL: addr) */
  const char *token;       /* sent as `authorization: Bearer TOKEN` (NULL = none) */
} client_sec;

typedef struct read_result {
  uint64_t calls, errors;
  double elapsed_s, qps;
  double p50_us, p90_us, p99_us, p999_us, mean_us, max_us;
  double client_cpu_s, server_cpu_s; /* over the timed part */
  double machine_cpu_s;              /* all CPUs busy, anyone's */
  double items_per_call;
  uint64_t truncated; /* replies with truncated set (investigator rpcs) */
  double touched_per_call;
  char first_err[300];
} read_result;

/* Measures rpc kind at point pt against addr for cfg->duration (daemon_pid:
 * the daemon's CPU is read from /proc when not 0). */
void read_measure(const bench_cfg *cfg, const char *addr, pid_t daemon_pid,
                  const read_keys *keys, const read_point *pt, rpc_kind kind,
                  const client_sec *sec, read_result *ret);

/* Fields of a read_result (read_field), by index. */
enum {
  RF_QPS = 0, RF_P50 = 1, RF_P90 = 2, RF_P99 = 3, RF_P999 = 4, RF_MEAN = 5, RF_MAX = 6,
  RF_CLI_CORES = 7, RF_SRV_CORES = 8, RF_CLI_US = 9, RF_SRV_US = 10, RF_ITEMS = 11,
  RF_CALLS = 12, RF_ERRORS = 13, RF_MACHINE_CORES = 14, RF_OTHER_CORES = 15,
  RF_COMMON = 16 /* fields every rpc has; the investigator ones follow */
};
double read_field(const read_result *r, int f);
extern const char *const read_field_names[]; /* JSON names, by index */

/* A reply body gathered by libcurl (metrics.c): bench_body_write is a
 * CURLOPT_WRITEFUNCTION with a bench_body as its data; p is NUL-terminated,
 * free() it. */
typedef struct bench_body {
  char *p;
  size_t len, cap;
} bench_body;
size_t bench_body_write(char *p, size_t size, size_t n, void *ud);

/*
 * One GET of url on curl, a libcurl easy handle (CURL *) the caller owns
 * and may reuse for the next GET (its connection is kept): 10 s timeout,
 * no signals. The body goes to b (b->len reset first; b->p grows and
 * stays the caller's to free, also after a failure). Returns 0 on HTTP
 * 200; otherwise -1 and the reason in why (libcurl's error text, or "HTTP
 * status N"). Records no anomaly.
 */
int bench_http_get(void *curl, const char *url, bench_body *b, char *why, size_t whysz);

/* The value of the Prometheus sample line "SERIES VALUE" in text (series:
 * name and labels exactly as printed); NAN if there is none (or text is
 * NULL). */
double bench_metric_sample(const char *text, const char *series);

/* v with prec decimals, or "-" when not finite. */
const char *fmtf(char *buf, size_t size, int prec, double v);

/* ---- clustering jobs through the daemon (job.c) ---- */

/* One clustering job, as bench_job_run saw it. */
typedef struct bench_job {
  uint64_t job_id;      /* StartClustering's reply; 0 when the call failed */
  uint64_t snapshot_id; /* the job's snapshot when it SUCCEEDED, else 0 */
  double start_rpc_s;   /* StartClustering round trip; NAN when it failed */
  double wall_s;        /* StartClustering call to the last WatchJob message; NAN
                         * unless SUCCEEDED */
} bench_job;

/*
 * Runs one clustering job on c, the client of the daemon dp: StartClustering
 * with the default spec but for its name and warm_start (a
 * Graphd__V1__WarmStart value; 0 = AUTO, the daemon's default), then
 * WatchJob until the stream ends (deadline cfg->job_timeout_ms). Fills ret
 * in every case; returns true when the last Job message says SUCCEEDED.
 * Otherwise it has recorded one anomaly, prefixed "LABEL: " (the caller's
 * words for the job, e.g. "cluster 2"): "StartClustering failed: CODE: MSG",
 * "WatchJob(ID) failed: CODE: MSG", "WatchJob(ID) sent no message" or "job
 * ID ended STATE (stage S): REASON; see DP's log", and after a failed call
 * checked that dp is alive (daemon_alive: one more anomaly if it died).
 * name and label are only read during the call; there is nothing to free.
 */
bool bench_job_run(const bench_cfg *cfg, struct gc_client *c, daemon_proc *dp, const char *label,
                   const char *name, int warm_start, bench_job *ret);

/* The worker's stages in a manifest's timings, in the order of
 * manifest_fill (graphd/rpc/analytics.c); total: the worker from open to
 * summarize. */
enum { S_OPEN, S_READ, S_PROJECT, S_CLUSTER, S_MATCH, S_SUMMARIZE, S_TOTAL, S__COUNT };
extern const char *const stage_names[S__COUNT]; /* "open", "read", ... (as in the manifest) */

/* What the modes read of a snapshot's manifest over GetSnapshot. */
typedef struct bench_manifest {
  double stage_s[S__COUNT]; /* NAN when absent */
  uint64_t sellers, ties, clusters, hubs_skipped;
  uint64_t previous;        /* previous_snapshot_id: its ids were matched against it (0: none) */
  bool warm_started;
  double objective, modularity;
  double worker_rss;        /* peak_rss_bytes; NAN when not reported */
  char checksum[65];        /* input_checksum */
} bench_manifest;

/* Nothing read yet: stages and figures NAN, counts 0. */
void bench_manifest_clear(bench_manifest *m);

/*
 * GetSnapshot(snap) on c into ret (cleared first, so as cleared when the
 * call fails). Returns false when it failed, with an anomaly "LABEL:
 * GetSnapshot(ID) failed: CODE: MSG" recorded.
 */
bool bench_snapshot_read(const bench_cfg *cfg, struct gc_client *c, uint64_t snap,
                         const char *label, bench_manifest *ret);

/*
 * Snapshot snap's manifest as the worker stored it (with what the rpc's
 * SnapshotManifest does not carry, e.g. result.iterations), read
 * in-process from store (opened next to the daemon) in one read
 * transaction: a new json_object the caller releases with
 * json_object_put. NULL when it cannot be read, with an anomaly "LABEL:
 * cannot read snapshot ID's manifest in-process: ERROR" recorded, or (no
 * anomaly) when it is not JSON.
 */
json_object *bench_stored_manifest(struct gd_store *store, uint64_t snap, const char *label);

/* The number at o.key.sub (sub NULL: at o.key) when there is one, JSON
 * null excepted; *ret unchanged otherwise. Returns whether it was there. */
bool bench_json_number(json_object *o, const char *key, const char *sub, double *ret);

/* The daemon's placement figures (StatsReply). */
typedef struct bench_stats {
  uint64_t queued, placements, shed, alerts, links, commits;
  uint64_t entities; /* entities_total */
} bench_stats;

/* Stats on c into *ret. Returns false when the call failed, with an
 * anomaly "Stats failed: CODE: MSG" recorded. */
bool bench_stats_get(const bench_cfg *cfg, struct gc_client *c, bench_stats *ret);

/*
 * Polls Stats until placement_queued is 0 in three readings running (20
 * ms apart), for at most 300 s. *ret_s: from t0 (now_ns) to the first of
 * them (NAN on failure); *ret_max (may be NULL): the most queued seen.
 * Returns false, with an anomaly recorded, when a call failed or the
 * queue did not drain in time.
 */
bool bench_wait_drained(const bench_cfg *cfg, struct gc_client *c, int64_t t0, double *ret_s,
                        uint64_t *ret_max);

/* ---- modes ---- */

/*
 * The cluster mode (cluster.c) on data_dir, a graphd data dir already
 * loaded (and not served by any process). Spawns its own daemon, stops it
 * at the end. Prints its report; *ret_ok is false when a check failed.
 */
json_object *bench_cluster(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           bool *ret_ok);

/* The security configurations (security.c), in the order of their bits:
 * plain, tls, auth (tokens, no audit; not measured unless asked for),
 * auth+audit, tls+auth+audit. */
typedef enum {
  SEC_PLAIN = 0, SEC_TLS, SEC_AUTH, SEC_AUTH_AUDIT, SEC_TLS_AUTH_AUDIT, SEC__COUNT
} sec_config;
#define SEC_ALL ((1u << SEC__COUNT) - 1)
#define SEC_DEFAULT (SEC_ALL & ~(1u << SEC_AUTH))
extern const char *const sec_config_names[SEC__COUNT]; /* "plain", "tls", ... (--configs) */

/*
 * The security mode (security.c) on data_dir, a graphd data dir already
 * loaded (and not served by any process), with keys sampled from the same
 * data. Spawns and stops one daemon per configuration and repeat. Prints
 * its report; *ret_ok is false when a check failed.
 */
json_object *bench_security(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                            const read_keys *keys, bool *ret_ok);

/*
 * The metrics mode (metrics.c) on data_dir, a graphd data dir already
 * loaded (and not served by any process), with keys sampled from the same
 * data: per repeat a daemon without the metrics endpoint and one with it,
 * scraped every cfg->scrape_ms, in alternating order. Prints its report;
 * *ret_ok is false when a check failed.
 */
json_object *bench_metrics(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           const read_keys *keys, bool *ret_ok);

/*
 * The gateway mode (gateway.c) on data_dir, a graphd data dir already
 * loaded (and not served by any process), with keys sampled from the same
 * data: per repeat one daemon with --http-listen; GetEntity over gRPC and
 * over HTTP/JSON at one call in flight, alternating, then the console's
 * page load (GetEntity + 2-hop LinkedSellers over HTTP). Prints its
 * report; *ret_ok is false when a check failed.
 */
json_object *bench_gateway(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                           const read_keys *keys, bool *ret_ok);

/*
 * The warm mode (warm.c) on the loaded links d (sorted by seen time there):
 * one daemon on a fresh data dir under workroot, the two-part ingest,
 * snapshot A, then per repeat a cold and a warm job against A. Prints its
 * report; *ret_ok is false when a check failed.
 */
json_object *bench_warm(const bench_cfg *cfg, const char *workroot, dataset *d, bool *ret_ok);

/*
 * The place mode (place.c) on the loaded links d (links_path: where they
 * came from; sellergen's rings.csv must be next to it): holds back the
 * links of some sellers, builds a clustered base with its own daemon, then
 * per repeat the alert latency of single writes and the Ingest rate with
 * placement on and off. Prints its report; *ret_ok is false when a check
 * failed.
 */
json_object *bench_place(const bench_cfg *cfg, const char *workroot, dataset *d,
                         const char *links_path, bool *ret_ok);

/*
 * The scale mode (scale.c): per size of cfg->sizes, a sellergen graph of
 * that many sellers under workroot and one daemon on a fresh data dir:
 * Ingest rate, data dir size, GetEntity and 2-hop LinkedSellers at one
 * call in flight (daemon CPU per call, p50), one clustering job (wall,
 * stages, worker peak RSS), StreamAssignments of its snapshot; then the
 * fitted growth of each figure. Prints its report; *ret_ok is false when
 * a check failed.
 */
json_object *bench_scale(const bench_cfg *cfg, const char *workroot, bool *ret_ok);

/*
 * The bulk mode (bulk.c) on the loaded links d: per repeat a BulkLoad into
 * a fresh daemon and bare LMDB appending the rows the first BulkLoad wrote
 * (alternating), then unless no_ingest an Ingest of the same records into
 * another fresh daemon. Prints its report; *ret_ok is false when a check
 * failed.
 */
json_object *bench_bulk(const bench_cfg *cfg, const char *workroot, const dataset *d,
                        bool no_ingest, bool *ret_ok);

/*
 * StreamAssignments(snap) on c, every batch unpacked: *ret_n assignments
 * in *ret_s seconds (open to the OK end). Returns false when the call
 * failed or sent uneven batches, with an anomaly "LABEL: ..." recorded.
 */
bool bench_stream_assignments(const bench_cfg *cfg, struct gc_client *c, uint64_t snap,
                              const char *label, uint64_t *ret_n, double *ret_s);

#endif
