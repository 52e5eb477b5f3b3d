/*
 * graphctl internals shared by its source files: exit codes, the parsed
 * command line, the command table's types and the output helpers.
 *
 * graphctl.c: helpers, argument parsing, the command table, the data and
 * investigation commands, main. analytics.c: cluster, job, snapshots,
 * clusters, assignments, diff, and the admin commands audit and backup.
 * alerts.c: alerts (following WatchAlerts). export.c and report.c:
 * export (GraphML) and report (HTML) over the network fetcher of
 * netgraph.h.
 *
 * Helpers that print report to stderr and return an exit code; helpers
 * that allocate exit(EXIT_SOFTWARE) on out of memory (die_nomem).
 */
#ifndef GRAPHCTL_H
#define GRAPHCTL_H

#include "client.h"
#include "graphd.pb-c.h"
#include "ingest.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sysexits.h>

#define SVC "/graphd.v1.SellerGraph/"

/* Exit codes (documented in main_help). */
enum {
  EXIT_OK = 0,
  EXIT_RPC = 1,                 /* the server answered with an error status */
  EXIT_USAGE = 2,               /* bad command line */
  EXIT_DATAERR = EX_DATAERR,    /* 65: bad input file */
  EXIT_NOINPUT = EX_NOINPUT,    /* 66: input file cannot be opened/read */
  EXIT_UNAVAILABLE = EX_UNAVAILABLE, /* 69: cannot reach the server */
  EXIT_SOFTWARE = EX_SOFTWARE,  /* 70: internal error (out of memory) */
};

typedef struct ctl {
  const char *addr;
  bool json;
  int timeout_ms;
  gc_client *client;
} ctl;

enum {
  O_ADDR = 1,
  O_JSON,
  O_TIMEOUT,
  O_HELP,
  O_TOKEN_FILE,
  O_TLS,
  O_TLS_CA,
  O_TLS_CERT,
  O_TLS_KEY,
  O_TLS_NAME,
  O_FORMAT,
  O_BATCH,
  O_BATCH_BYTES,
  O_NO_PROGRESS,
  O_REQUEST_ID,
  O_BULK,
  O_ID,
  O_TYPE,
  O_SINCE,
  O_UNTIL,
  O_LIMIT,
  O_ALL,
  O_PAGE_TOKEN,
  O_ADD,
  O_REMOVE,
  O_SERVICE,
  O_HOPS,
  O_VIA,
  O_CAP,
  O_MIN_SCORE,
  O_MAX_TOUCHED,
  O_K,
  O_MAX_HOPS,
  O_FROM_ID,
  O_TO_ID,
  O_LABEL,
  O_ALPHA,
  O_EPSILON,
  O_NEAREST,
  /* analytics */
  O_ALGORITHM,
  O_EVIDENCE,
  O_RESOLUTION,
  O_ITERATIONS,
  O_SEED,
  O_WEIGHT,
  O_MIN_TIE,
  O_NAME,
  O_NO_WAIT,
  O_SNAPSHOT,
  O_ORDER,
  O_MIN_SIZE,
  O_MAX_MEMBERS,
  O_OUT,
  O_MIN_PART,
  O_NO_MOVES,
  O_CONTINUED,
  O_CANCEL,
  O_PRINCIPAL,
  O_CASE,
  O_METHOD,
  O_VERIFY,
  O_CASE_ID,
  /* export, report */
  O_MIN_RISK,
  O_TOP,
  O_MAX_SELLERS,
  O_MAX_LINKS,
  O_MAX_NODES,
  O_MAX_CLUSTERS,
  /* export ties, import */
  O_EDGE_FORMAT,
  O_ENGINE,
  /* alerts */
  O_ALERT_MIN_RISK,
  O_CLUSTER,
  O_AFTER_SEQ,
  O_FROM_NOW,
  O_COUNT,
  O_RECONNECT,
  /* case */
  O_BRAND,
  O_TITLE,
  O_STATUS,
  O_REOPEN,
  O_ASSIGNEE,
  O_CLEAR_ASSIGNEE,
  O_NOTE,
  O_ADD_CLUSTER,
  O_REMOVE_CLUSTER,
  O_REVISION,
  O_COMMENT,
  O_PUBKEY,
};

typedef struct optspec {
  const char *name;
  bool has_arg;
  int id;
} optspec;

typedef struct args {
  char **pos;
  int npos;
  const char *addr;
  bool json;
  long timeout_ms;
  bool timeout_set;
  bool help;
  const char *token_file;
  const char *case_id_md;
  bool tls;
  const char *tls_ca, *tls_cert, *tls_key, *tls_name;
  /* ingest */
  gc_ingest_format format;
  bool have_format;
  long batch;
  long batch_bytes;
  bool no_progress;
  bool bulk; /* ingest --bulk */
  const char *request_id_prefix;
  /* entity refs */
  bool have_id;
  uint64_t id;
  /* neighbors */
  Graphd__V1__EntityType *types;
  size_t ntypes, types_cap;
  bool have_since, have_until;
  int64_t since, until;
  long limit;
  bool all;
  const char *page_token;
  /* label */
  char **add, **remove;
  size_t nadd, nremove;
  /* health */
  const char *service;
  /* investigation: linked, paths, suspects */
  long hops, k, max_hops, nearest;
  Graphd__V1__HubCap *caps;
  size_t ncaps, caps_cap;
  bool have_min_score;
  double min_score;
  uint64_t max_touched;
  bool have_from_id, have_to_id;
  uint64_t from_id, to_id;
  char **labels;
  size_t nlabels;
  double alpha, epsilon;
  /* analytics: cluster, snapshots, clusters, assignments, diff, job */
  const char *algorithm;
  int evidence; /* graphd.v1.EvidenceRule; 0 = the server default */
  bool have_resolution, have_min_tie;
  double resolution, min_tie;
  long iterations;
  uint64_t seed;
  Graphd__V1__TypeWeight *weights;
  size_t nweights, weights_cap;
  const char *name;
  bool no_wait, no_moves, cancel, continued;
  uint64_t snapshot;
  const char *order;
  uint64_t min_size;
  long max_members, min_part;
  const char *out;
  /* audit */
  const char *principal, *case_id, *method;
  bool verify;
  /* export, report */
  bool have_min_risk;
  double min_risk;
  long top, max_sellers, max_links, max_nodes, max_clusters;
  const char *edge_format; /* export ties: ncol (default) or csv */
  const char *engine;      /* import */
  bool have_min_size;
  /* alerts */
  bool have_alert_min_risk, have_after_seq, from_now, reconnect;
  double alert_min_risk;
  uint64_t cluster_id, after_seq;
  long count;
  /* case */
  const char *brand, *title, *assignee, *note, *comment;
  int status; /* graphd.v1.CaseStatus; 0 = unchanged / any */
  bool reopen, clear_assignee;
  Graphd__V1__CaseCluster **add_clusters, **rm_clusters;
  size_t nadd_clusters, nrm_clusters;
  uint64_t revision;
  const char *pubkey; /* verify-pack */
} args;

struct command;
typedef int (*run_fn)(ctl *c, const struct command *cmd, args *a);

typedef struct command {
  const char *name;
  const optspec *opts;
  run_fn run;
  bool dash_positionals; /* "-x" is an argument, not an option (label) */
  const char *help;
} command;

/* ---- output helpers (graphctl.c) ---- */
_Noreturn void die_nomem(void);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
double now_s(void); /* monotonic seconds */
/* Prints a JSON document on stdout and drops it. */
void print_json(json_object *o);
json_object *jstr(const char *s);
void jset(json_object *o, const char *key, json_object *v);
json_object *jobj(void);
json_object *jarr(void);
/* Copies s into buf for a terminal (control characters escaped). */
const char *safe(const char *s, char *buf, size_t size);
size_t text_width(const char *s);
void print_padded(const char *s, size_t width, bool right, bool last);
const char *human_bytes(uint64_t n, char *buf, size_t size);
json_object *labels_json(char **labels, size_t n);
json_object *entity_json(const Graphd__V1__Entity *e, bool attrs);
void print_entity(const Graphd__V1__Entity *e);
json_object *placement_json(const Graphd__V1__Placement *p);
/* "cluster 7 (risk 0.812, 41 sellers) since TIME, against snapshot 3". */
const char *placement_text(const Graphd__V1__Placement *p, char *buf, size_t size);

/* ---- output files ---- */
/*
 * An output file written atomically: outfile_open creates PATH.tmp (path
 * "-" or NULL: stdout, written directly); outfile_close flushes, fsyncs,
 * closes and renames it to PATH when rc is 0, and removes it otherwise.
 * Both print their error ("graphctl: FILE: reason") and return an exit
 * code: outfile_open EX_CANTCREAT (73); outfile_close rc when it is not 0,
 * else EX_IOERR (74) when writing failed, else 0.
 */
typedef struct outfile {
  FILE *f;
  const char *path; /* NULL: stdout */
  char *tmp;
} outfile;
int outfile_open(outfile *o, const char *path);
int outfile_close(outfile *o, int rc);
/* True for "-" or NULL (stdout). */
bool outfile_is_stdout(const char *path);

/* ---- status and calls ---- */
/* Prints "graphctl: CODE: message"; returns the exit code. */
int report_status(const ctl *c, const gc_status *st);
/* A unary call with the --timeout deadline; errors reported. */
int rpc(const ctl *c, const char *method, const ProtobufCMessage *req,
        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret);

/* ---- argument helpers: print the usage error, return EXIT_USAGE ---- */
int usage_error(const command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int parse_long(const command *cmd, const char *opt, const char *v, long min, long max, long *ret);
int parse_time_opt(const command *cmd, const char *opt, const char *v, int64_t *ret);
int parse_u64(const command *cmd, const char *opt, const char *v, uint64_t *ret);
int parse_double(const command *cmd, const char *opt, const char *v, bool positive,
                 double *ret);
int no_more_args(const command *cmd, const args *a, int used);

/* ---- analytics commands (analytics.c) ---- */
extern const optspec cluster_opts[], job_opts[], snapshots_opts[], clusters_opts[],
    assignments_opts[], diff_opts[], audit_opts[];
extern const char cluster_help[], job_help[], snapshots_help[], clusters_help[],
    assignments_help[], diff_help[], audit_help[], backup_help[];
/* "leiden-cpm", "louvain", ... (the --algorithm names); "?" if unknown. */
const char *algo_name(Graphd__V1__Algorithm x);
/* Parses an analytics option into a (called by set_option). */
int set_analytics_option(const command *cmd, args *a, const optspec *o, const char *opt,
                         const char *v);
/* The ClusteringSpec the analytics options describe (--algorithm,
 * --resolution, --evidence, --iterations, --seed, --weight, --cap,
 * --min-tie, --since/--until, --label, --name); b's arrays point into a
 * (spec_buf_free frees b's own). */
typedef struct spec_buf {
  Graphd__V1__ClusteringSpec spec;
  Graphd__V1__TimeWindow win;
  Graphd__V1__HubCap **caps;
  Graphd__V1__TypeWeight **weights;
} spec_buf;
void spec_from_args(const args *a, spec_buf *b);
void spec_buf_free(spec_buf *b);
/* Prints a job (or its JSON); the exit code for its state. */
int job_exit(const ctl *c, const Graphd__V1__Job *j);
int run_cluster(ctl *c, const command *cmd, args *a);
int run_job(ctl *c, const command *cmd, args *a);
int run_snapshots(ctl *c, const command *cmd, args *a);
int run_clusters(ctl *c, const command *cmd, args *a);
int run_assignments(ctl *c, const command *cmd, args *a);
int run_diff(ctl *c, const command *cmd, args *a);
int run_audit(ctl *c, const command *cmd, args *a);
int run_backup(ctl *c, const command *cmd, args *a);

/* ---- alerts.c ---- */
extern const optspec alerts_opts[];
extern const char alerts_help[];
/* Parses an alerts option into a (called by set_option). */
int set_alerts_option(const command *cmd, args *a, const optspec *o, const char *opt,
                      const char *v);
int run_alerts(ctl *c, const command *cmd, args *a);

/* ---- cases.c ---- */
extern const optspec case_opts[];
extern const char case_help[];
/* Parses a case option into a (called by set_option). */
int set_case_option(const command *cmd, args *a, const optspec *o, const char *opt,
                    const char *v);
int run_case(ctl *c, const command *cmd, args *a);
/* pack.c: case export, verify-pack */
int case_export(ctl *c, const command *cmd, args *a, uint64_t id);
extern const optspec verify_pack_opts[];
extern const char verify_pack_help[];
int run_verify_pack(ctl *c, const command *cmd, args *a);

/* ---- export.c, report.c ---- */
extern const optspec export_opts[], report_opts[];
extern const char export_help[], report_help[];
int run_export(ctl *c, const command *cmd, args *a);
/* exchange.c: export ties (called by run_export), import */
int export_ties(ctl *c, const command *cmd, args *a);
extern const optspec import_opts[];
extern const char import_help[];
int run_import(ctl *c, const command *cmd, args *a);
int run_report(ctl *c, const command *cmd, args *a);

#endif
