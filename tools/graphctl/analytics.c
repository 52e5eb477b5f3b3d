/*
 * graphctl analytics commands: cluster (run a clustering job, or show one
 * cluster), job, snapshots, clusters, assignments, diff.
 *
 * Streams (WatchJob, StreamAssignments, DiffSnapshots) use gc_sstream; a
 * stream's deadline is --timeout when given, else none (a large snapshot
 * takes as long as it takes), and a job is watched without a deadline.
 */
#include "graphctl.h"

#include <errno.h>
#include <grpc/status.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define M_START SVC "StartClustering"
#define M_GET_JOB SVC "GetJob"
#define M_WATCH SVC "WatchJob"
#define M_CANCEL SVC "CancelJob"
#define M_GET_ENTITY SVC "GetEntity"
#define M_SNAPSHOTS SVC "ListSnapshots"
#define M_SNAPSHOT SVC "GetSnapshot"
#define M_CLUSTERS SVC "ListClusters"
#define M_CLUSTER SVC "GetCluster"
#define M_ASSIGN SVC "StreamAssignments"
#define M_DIFF SVC "DiffSnapshots"
#define M_AUDIT SVC "ListAudit"
#define M_VERIFY SVC "VerifyAudit"

/* ------------------------------------------------------------------ */
/* Options and help                                                     */

const optspec cluster_opts[] = {
    {"algorithm", true, O_ALGORITHM}, {"resolution", true, O_RESOLUTION},
    {"evidence", true, O_EVIDENCE},
    {"iterations", true, O_ITERATIONS}, {"seed", true, O_SEED},
    {"weight", true, O_WEIGHT},       {"cap", true, O_CAP},
    {"min-tie", true, O_MIN_TIE},     {"since", true, O_SINCE},
    {"until", true, O_UNTIL},         {"label", true, O_LABEL},
    {"name", true, O_NAME},           {"no-wait", false, O_NO_WAIT},
    {"no-progress", false, O_NO_PROGRESS},
    {"snapshot", true, O_SNAPSHOT},   {"max-members", true, O_MAX_MEMBERS},
    {NULL, false, 0},
};
const optspec job_opts[] = {{"cancel", false, O_CANCEL}, {NULL, false, 0}};
const optspec snapshots_opts[] = {
    {"limit", true, O_LIMIT}, {"page-token", true, O_PAGE_TOKEN}, {NULL, false, 0}};
const optspec clusters_opts[] = {
    {"snapshot", true, O_SNAPSHOT}, {"order", true, O_ORDER},
    {"min-size", true, O_MIN_SIZE}, {"limit", true, O_LIMIT},
    {"page-token", true, O_PAGE_TOKEN}, {NULL, false, 0},
};
const optspec assignments_opts[] = {
    {"snapshot", true, O_SNAPSHOT}, {"format", true, O_FORMAT}, {"out", true, O_OUT},
    {"o", true, O_OUT}, {NULL, false, 0},
};
const optspec diff_opts[] = {
    {"min-part-size", true, O_MIN_PART}, {"no-moves", false, O_NO_MOVES},
    {"continued", false, O_CONTINUED}, {NULL, false, 0}};

const char cluster_help[] =
    "usage: graphctl cluster [OPTIONS]         run a clustering job\n"
    "       graphctl cluster ID [--snapshot N] show one cluster\n"
    "\n"
    "Without ID: starts a clustering job (StartClustering) and follows it\n"
    "(WatchJob) with a progress bar on stderr until it ends; prints the job\n"
    "and the snapshot it wrote. Exit 1 if the job fails or is cancelled;\n"
    "Ctrl-C stops watching (the job goes on: graphctl job ID --cancel).\n"
    "  --algorithm A     leiden-cpm (default), leiden-modularity, louvain,\n"
    "                    label-propagation, components, infomap\n"
    "  --resolution X    resolution (server default for CPM: 0.2 under the\n"
    "                    corroborated rule, 0.1 under rarity; 1 otherwise)\n"
    "  --evidence RULE   corroborated (server default: a crowd sharing one\n"
    "                    entity and nothing else is never evidence) or rarity\n"
    "                    (the previous rule: w(type) / log2(1 + sellers))\n"
    "  --iterations N    Leiden iterations (default: until stable) / Infomap trials\n"
    "  --seed N          random seed (server default 1)\n"
    "  --weight TYPE=W   weight of an entity type's evidence (repeat)\n"
    "  --cap TYPE=N      hub cap per type (repeat)\n"
    "  --min-tie W       drop seller-seller ties lighter than W\n"
    "  --since T, --until T  only links seen in this window\n"
    "  --label L         labels that count as flagged (repeat; default counterfeit)\n"
    "  --name NAME       a name for the run\n"
    "  --no-wait         print the queued job and return\n"
    "  --no-progress     no progress bar (drawn only when stderr is a terminal)\n"
    "\n"
    "With ID: the cluster's summary (size, flagged, risk, cohesion), its top\n"
    "shared entities (the candidate supply sources), its members, the sellers\n"
    "placed in it since the snapshot was written (latest snapshot only; listed\n"
    "apart and marked \"provisional\"), and the strongest evidence ties that\n"
    "hold it together.\n"
    "  --snapshot N      the snapshot (default: the latest)\n"
    "  --max-members N   members to list (server default 100)\n"
    "\n"
    "With --json: the final Job, or {\"cluster\":{..},\"members\":[..],\n"
    "\"provisional_members\":[..],..}.\n";

const char job_help[] =
    "usage: graphctl job ID [--cancel]\n"
    "\n"
    "Shows a clustering job (GetJob). With --cancel, cancels it (CancelJob)\n"
    "and prints it once it has ended: a queued job at once, a running one\n"
    "about a second later (a job already writing its snapshot still\n"
    "succeeds). A job that had already ended is shown with a notice that\n"
    "there was nothing to cancel. Exit 0 when the job ended CANCELLED or\n"
    "had already ended, 1 when it failed.\n";

const char snapshots_help[] =
    "usage: graphctl snapshots [--limit N] [--page-token T]\n"
    "\n"
    "Lists snapshots, newest first: ID, CREATED, ALGORITHM, SELLERS, TIES,\n"
    "CLUSTERS, MODULARITY, NAME. With --json: the ListSnapshotsReply.\n";

const char clusters_help[] =
    "usage: graphctl clusters [OPTIONS]\n"
    "\n"
    "A snapshot's clusters as a table ordered by risk (ID, SIZE, FLAGGED,\n"
    "RISK, COHESION, TOP SHARED ENTITY).\n"
    "  --snapshot N     the snapshot (default: the latest)\n"
    "  --order risk|size  (default risk)\n"
    "  --min-size N     leave out clusters smaller than N\n"
    "  --limit N        clusters per page (server default 100)\n"
    "  --page-token T   the next page (printed after the table)\n";

const char assignments_help[] =
    "usage: graphctl assignments [--snapshot N] [--format csv|jsonl] [-o|--out FILE]\n"
    "\n"
    "Every seller's cluster in a snapshot (StreamAssignments), in ascending\n"
    "seller id: CSV \"seller_id,cluster_id\" with a header line (default), or\n"
    "JSON Lines {\"seller_id\":..,\"cluster_id\":..}; to stdout (no FILE, or\n"
    "'-') or FILE (written to FILE.tmp and renamed when complete). The CSV\n"
    "reads as is with pandas.read_csv(FILE). A summary line goes to stderr.\n";

const char diff_help[] =
    "usage: graphctl diff A B [--min-part-size N] [--no-moves] [--continued]\n"
    "\n"
    "What changed from snapshot A to snapshot B (DiffSnapshots; B may be\n"
    "'latest'): a summary, then one line per cluster that merged, split, was\n"
    "born or dissolved (each cluster in one event: a merged-away cluster is\n"
    "not also dissolved), then one line per seller that moved (leave them out\n"
    "with --no-moves). Clusters that continued are counted at the end; list\n"
    "them with --continued.\n"
    "  --min-part-size N  clusters smaller than N take no part in cluster\n"
    "                     events (server default 2)\n"
    "With --json: {\"summary\":{..},\"events\":[{\"kind\":..,..}]}.\n";

static const struct {
  const char *name;
  Graphd__V1__Algorithm algo;
} algos[] = {
    {"leiden-cpm", GRAPHD__V1__ALGORITHM__ALGORITHM_LEIDEN_CPM},
    {"leiden-modularity", GRAPHD__V1__ALGORITHM__ALGORITHM_LEIDEN_MODULARITY},
    {"louvain", GRAPHD__V1__ALGORITHM__ALGORITHM_LOUVAIN},
    {"label-propagation", GRAPHD__V1__ALGORITHM__ALGORITHM_LABEL_PROPAGATION},
    {"components", GRAPHD__V1__ALGORITHM__ALGORITHM_CONNECTED_COMPONENTS},
    {"infomap", GRAPHD__V1__ALGORITHM__ALGORITHM_INFOMAP},
};
#define N_ALGOS (sizeof algos / sizeof algos[0])

const char *algo_name(Graphd__V1__Algorithm x) {
  if (x == GRAPHD__V1__ALGORITHM__ALGORITHM_UNSPECIFIED)
    return "leiden-cpm";
  for (size_t i = 0; i < N_ALGOS; i++)
    if (algos[i].algo == x)
      return algos[i].name;
  return "?";
}

/* --weight TYPE=W (repeatable; a later one for a type replaces it). */
static int add_weight(const command *cmd, args *a, const char *v) {
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || !eq[1])
    return usage_error(cmd, "--weight: expected TYPE=W (e.g. address=0.5), got '%s'", v);
  char tname[64];
  size_t tl = (size_t)(eq - v) < sizeof tname - 1 ? (size_t)(eq - v) : sizeof tname - 1;
  memcpy(tname, v, tl);
  tname[tl] = '\0';
  gd_etype et;
  if (gc_type_parse(tname, &et) != 0)
    return usage_error(cmd, "--weight: unknown entity type '%s'", tname);
  double w;
  int rc = parse_double(cmd, "--weight", eq + 1, false, &w);
  if (rc)
    return rc;
  if (w < 0)
    return usage_error(cmd, "--weight: expected a weight >= 0, got '%s'", eq + 1);
  for (size_t i = 0; i < a->nweights; i++)
    if ((int)a->weights[i].type == (int)et) {
      a->weights[i].weight = w;
      return 0;
    }
  if (a->nweights == a->weights_cap) {
    a->weights_cap = a->weights_cap ? a->weights_cap * 2 : 8;
    a->weights = realloc(a->weights, a->weights_cap * sizeof *a->weights);
    if (!a->weights)
      die_nomem();
  }
  Graphd__V1__TypeWeight tw = GRAPHD__V1__TYPE_WEIGHT__INIT;
  tw.type = (Graphd__V1__EntityType)et;
  tw.weight = w;
  a->weights[a->nweights++] = tw;
  return 0;
}

int set_analytics_option(const command *cmd, args *a, const optspec *o, const char *opt,
                         const char *v) {
  switch (o->id) {
  case O_ALGORITHM:
    for (size_t i = 0; i < N_ALGOS; i++)
      if (strcmp(v, algos[i].name) == 0) {
        a->algorithm = v;
        return 0;
      }
    return usage_error(cmd,
                       "--algorithm: expected leiden-cpm, leiden-modularity, louvain, "
                       "label-propagation, components or infomap, got '%s'",
                       v);
  case O_EVIDENCE:
    if (strcmp(v, "corroborated") == 0)
      a->evidence = GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_CORROBORATED;
    else if (strcmp(v, "rarity") == 0)
      a->evidence = GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_RARITY;
    else
      return usage_error(cmd, "--evidence: expected corroborated or rarity, got '%s'", v);
    return 0;
  case O_RESOLUTION:
    a->have_resolution = true;
    return parse_double(cmd, opt, v, true, &a->resolution);
  case O_ITERATIONS:
    return parse_long(cmd, opt, v, 1, 1000000, &a->iterations);
  case O_SEED:
    return parse_u64(cmd, opt, v, &a->seed);
  case O_WEIGHT:
    return add_weight(cmd, a, v);
  case O_MIN_TIE:
    a->have_min_tie = true;
    return parse_double(cmd, opt, v, true, &a->min_tie);
  case O_NAME:
    a->name = v;
    return 0;
  case O_NO_WAIT:
    a->no_wait = true;
    return 0;
  case O_SNAPSHOT:
    if (strcmp(v, "latest") == 0) {
      a->snapshot = 0;
      return 0;
    }
    return parse_u64(cmd, opt, v, &a->snapshot);
  case O_ORDER:
    if (strcmp(v, "risk") && strcmp(v, "size"))
      return usage_error(cmd, "--order: expected risk or size, got '%s'", v);
    a->order = v;
    return 0;
  case O_MIN_SIZE:
    a->have_min_size = true;
    return parse_u64(cmd, opt, v, &a->min_size);
  case O_MAX_MEMBERS:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->max_members);
  case O_OUT:
    if (!*v)
      return usage_error(cmd, "--out: empty file name");
    a->out = v;
    return 0;
  case O_MIN_PART:
    return parse_long(cmd, opt, v, 1, 1000000, &a->min_part);
  case O_NO_MOVES:
    a->no_moves = true;
    return 0;
  case O_EDGE_FORMAT:
    if (strcmp(v, "ncol") && strcmp(v, "csv"))
      return usage_error(cmd, "--format: expected ncol or csv, got '%s'", v);
    a->edge_format = v;
    return 0;
  case O_ENGINE:
    a->engine = v;
    return 0;
  case O_CONTINUED:
    a->continued = true;
    return 0;
  case O_CANCEL:
    a->cancel = true;
    return 0;
  case O_PRINCIPAL:
    a->principal = v;
    return 0;
  case O_CASE:
    a->case_id = v;
    return 0;
  case O_METHOD:
    a->method = v;
    return 0;
  case O_VERIFY:
    a->verify = true;
    return 0;
  case O_MIN_RISK:
    a->have_min_risk = true;
    if (parse_double(cmd, opt, v, false, &a->min_risk))
      return EXIT_USAGE;
    if (a->min_risk < 0 || a->min_risk > 1)
      return usage_error(cmd, "%s: expected a risk in 0..1, got '%s'", opt, v);
    return 0;
  case O_TOP:
    return parse_long(cmd, opt, v, 1, 10000, &a->top);
  case O_MAX_SELLERS:
    return parse_long(cmd, opt, v, 1, 100000, &a->max_sellers);
  case O_MAX_LINKS:
    return parse_long(cmd, opt, v, 1, 1000000, &a->max_links);
  case O_MAX_NODES:
    return parse_long(cmd, opt, v, 2, 5000, &a->max_nodes);
  case O_MAX_CLUSTERS:
    return parse_long(cmd, opt, v, 1, 100000000, &a->max_clusters);
  }
  return usage_error(cmd, "internal: unhandled option %s", opt);
}

/* A snapshot or job id positional: a whole number >= 1 (or "latest" when
 * allowed, giving 0). */
static int parse_id_arg(const command *cmd, const char *what, const char *v, bool latest,
                        uint64_t *ret) {
  if (latest && strcmp(v, "latest") == 0) {
    *ret = 0;
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || end == v || *end || x == 0 || v[0] == '-' || v[0] == '+')
    return usage_error(cmd, "%s: expected an id (1 or more)%s, got '%s'", what,
                       latest ? " or 'latest'" : "", v);
  *ret = x;
  return 0;
}

static const char *state_name(Graphd__V1__JobState s) {
  switch (s) {
  case GRAPHD__V1__JOB_STATE__JOB_STATE_QUEUED:
    return "QUEUED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_RUNNING:
    return "RUNNING";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_SUCCEEDED:
    return "SUCCEEDED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_FAILED:
    return "FAILED";
  case GRAPHD__V1__JOB_STATE__JOB_STATE_CANCELLED:
    return "CANCELLED";
  default:
    return "UNSPECIFIED";
  }
}

static bool job_final(const Graphd__V1__Job *j) {
  return j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_SUCCEEDED ||
         j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_FAILED ||
         j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_CANCELLED;
}

static const char *fmt_time(int64_t t, char *buf, size_t size) {
  if (t <= 0) {
    snprintf(buf, size, "-");
    return buf;
  }
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/* ------------------------------------------------------------------ */
/* cluster (run a job), job                                             */

static json_object *job_json(const Graphd__V1__Job *j) {
  json_object *o = jobj();
  jset(o, "id", json_object_new_uint64(j->id));
  jset(o, "name", jstr(j->spec ? j->spec->name : ""));
  jset(o, "algorithm", jstr(algo_name(j->spec ? j->spec->algorithm : 0)));
  jset(o, "state", jstr(state_name(j->state)));
  jset(o, "stage", jstr(j->stage));
  jset(o, "progress", json_object_new_double(j->progress));
  jset(o, "reason", jstr(j->reason));
  jset(o, "snapshot_id", json_object_new_uint64(j->snapshot_id));
  jset(o, "created_at", json_object_new_int64(j->created_at));
  jset(o, "started_at", json_object_new_int64(j->started_at));
  jset(o, "ended_at", json_object_new_int64(j->ended_at));
  return o;
}

static void print_job(const Graphd__V1__Job *j) {
  char b[512], t1[32], t2[32];
  printf("job %" PRIu64 " %s", j->id, state_name(j->state));
  if (j->spec && j->spec->name[0])
    printf(" \"%s\"", safe(j->spec->name, b, sizeof b));
  printf(" (%s)\n", algo_name(j->spec ? j->spec->algorithm : 0));
  if (!job_final(j))
    printf("  stage %s, %.0f%%\n", j->stage, 100 * j->progress);
  if (j->reason[0])
    printf("  reason: %s\n", safe(j->reason, b, sizeof b));
  printf("  started %s, ended %s\n", fmt_time(j->started_at, t1, sizeof t1),
         fmt_time(j->ended_at, t2, sizeof t2));
  if (j->snapshot_id)
    printf("  snapshot %" PRIu64 "\n", j->snapshot_id);
}

static void bar_draw(const Graphd__V1__Job *j, double t0) {
  int width = 30, fill = (int)(j->progress * width + 0.5);
  if (fill > width)
    fill = width;
  if (fill < 0)
    fill = 0;
  fprintf(stderr, "\r\033[Kjob %" PRIu64 " [%.*s%*s] %3.0f%% %-9s %6.1fs", j->id, fill,
          "##############################", width - fill, "", 100 * j->progress, j->stage,
          now_s() - t0);
  fflush(stderr);
}

int job_exit(const ctl *c, const Graphd__V1__Job *j) {
  if (c->json)
    print_json(job_json(j));
  else
    print_job(j);
  if (j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_SUCCEEDED)
    return EXIT_OK;
  if (j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_FAILED ||
      j->state == GRAPHD__V1__JOB_STATE__JOB_STATE_CANCELLED) {
    char b[512];
    fprintf(stderr, "graphctl: job %" PRIu64 " %s: %s\n", j->id, state_name(j->state),
            safe(j->reason[0] ? j->reason : "(no reason)", b, sizeof b));
    return EXIT_RPC;
  }
  return EXIT_OK;
}

/*
 * Follows job id to its end; prints it; returns the exit code. graphctl
 * sends no deadline, so the server applies its own (--default-deadline-ms,
 * clamped by --max-deadline-ms) and ends the watch with DEADLINE_EXCEEDED
 * while a long job runs on: then it watches again, for as long as the job
 * takes. The server's deadline can also cut a watch just after its final
 * Job (the job's end is known: that is the end), or a watch just opened,
 * before any message, on a slow server (watched again, WATCH_REOPENS
 * times in a row at most).
 */
#define WATCH_REOPENS 20
static int watch_job(ctl *c, uint64_t id, bool progress) {
  Graphd__V1__JobRequest req = GRAPHD__V1__JOB_REQUEST__INIT;
  req.job_id = id;
  gc_status st;
  Graphd__V1__Job *last = NULL;
  double t0 = now_s();
  int rc = EXIT_OK;
  bool again = true;
  int empty = 0; /* watches in a row cut before any message */
  while (again) {
    gc_sstream *s = NULL;
    again = false;
    if (gc_sstream_open(c->client, M_WATCH, &req.base, 0, &s, &st) != 0) {
      if (st.code == GRPC_STATUS_DEADLINE_EXCEEDED && ++empty < WATCH_REOPENS) {
        again = true;
        continue;
      }
      rc = report_status(c, &st);
      break;
    }
    for (bool got = false;;) {
      ProtobufCMessage *m = NULL;
      if (gc_sstream_next(s, &graphd__v1__job__descriptor, &m, &st) != 0) {
        if (st.code == GRPC_STATUS_DEADLINE_EXCEEDED && last && job_final(last))
          break; /* the job's end was sent: the deadline only cut the close */
        if (st.code == GRPC_STATUS_DEADLINE_EXCEEDED &&
            (got || ++empty < WATCH_REOPENS)) {
          again = true; /* the server's deadline, not the job's end */
          break;
        }
        if (progress)
          fputs("\r\033[K", stderr);
        rc = report_status(c, &st);
        break;
      }
      if (!m)
        break;
      got = true;
      empty = 0;
      if (last)
        graphd__v1__job__free_unpacked(last, NULL);
      last = (Graphd__V1__Job *)m;
      if (progress)
        bar_draw(last, t0);
    }
    gc_sstream_free(s);
  }
  if (progress && rc == EXIT_OK)
    fputs("\r\033[K", stderr);
  if (rc == EXIT_OK && last)
    rc = job_exit(c, last);
  else if (rc == EXIT_OK)
    rc = report_status(c, &(gc_status){.code = 13, .message = "client: WatchJob sent nothing"});
  if (last)
    graphd__v1__job__free_unpacked(last, NULL);
  return rc;
}

static int show_cluster(ctl *c, const command *cmd, args *a);

/* Whether the snapshot recorded member id as flagged. */
static bool member_flagged(const Graphd__V1__GetClusterReply *rep, uint64_t id) {
  for (size_t i = 0; i < rep->n_flagged_members; i++)
    if (rep->flagged_members[i] == id)
      return true;
  return false;
}

/* The key of seller id: the tie's own (the snapshot's), else from the
 * members shown, else GetEntity (snapshots written before keys were kept);
 * into buf (the id in decimal if it cannot be read). */
static const char *tie_seller(ctl *c, const Graphd__V1__GetClusterReply *rep, uint64_t id,
                              const char *key, char *buf, size_t size) {
  if (key && key[0])
    return safe(key, buf, size);
  for (size_t i = 0; i < rep->n_members; i++)
    if (rep->members[i]->id == id)
      return safe(rep->members[i]->key, buf, size);
  Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  Graphd__V1__GetEntityReply *er = NULL;
  ref.id = id;
  req.ref = &ref;
  gc_status st;
  if (gc_unary(c->client, M_GET_ENTITY, &req.base, &graphd__v1__get_entity_reply__descriptor,
               (ProtobufCMessage **)&er, &st, (int)c->timeout_ms) == 0 && er && er->entity) {
    safe(er->entity->key, buf, size);
  } else {
    snprintf(buf, size, "%" PRIu64, id);
  }
  if (er)
    graphd__v1__get_entity_reply__free_unpacked(er, NULL);
  return buf;
}

void spec_from_args(const args *a, spec_buf *b) {
  Graphd__V1__ClusteringSpec *spec = &b->spec;
  graphd__v1__clustering_spec__init(spec);
  graphd__v1__time_window__init(&b->win);
  if (a->algorithm)
    for (size_t i = 0; i < N_ALGOS; i++)
      if (strcmp(a->algorithm, algos[i].name) == 0)
        spec->algorithm = algos[i].algo;
  spec->name = (char *)(a->name ? a->name : "");
  spec->resolution = a->have_resolution ? a->resolution : 0;
  spec->evidence = (Graphd__V1__EvidenceRule)a->evidence;
  spec->iterations = (uint32_t)a->iterations;
  spec->seed = a->seed;
  spec->min_tie_weight = a->have_min_tie ? a->min_tie : 0;
  if (a->have_since || a->have_until) {
    b->win.since = a->since;
    b->win.until = a->until;
    spec->window = &b->win;
  }
  spec->flagged_labels = a->labels;
  spec->n_flagged_labels = a->nlabels;
  b->caps = xcalloc(a->ncaps, sizeof *b->caps);
  for (size_t i = 0; i < a->ncaps; i++)
    b->caps[i] = &a->caps[i];
  spec->hub_caps = b->caps;
  spec->n_hub_caps = a->ncaps;
  b->weights = xcalloc(a->nweights, sizeof *b->weights);
  for (size_t i = 0; i < a->nweights; i++)
    b->weights[i] = &a->weights[i];
  spec->type_weights = b->weights;
  spec->n_type_weights = a->nweights;
}

void spec_buf_free(spec_buf *b) {
  free(b->caps);
  free(b->weights);
}

int run_cluster(ctl *c, const command *cmd, args *a) {
  if (a->npos > 0)
    return show_cluster(c, cmd, a);
  spec_buf sb;
  spec_from_args(a, &sb);
  Graphd__V1__StartClusteringRequest req = GRAPHD__V1__START_CLUSTERING_REQUEST__INIT;
  req.spec = &sb.spec;
  Graphd__V1__Job *job = NULL;
  int rc = rpc(c, M_START, &req.base, &graphd__v1__job__descriptor, (ProtobufCMessage **)&job);
  spec_buf_free(&sb);
  if (rc)
    return rc;
  if (a->no_wait) {
    rc = job_exit(c, job);
  } else {
    uint64_t id = job->id;
    rc = watch_job(c, id, !a->no_progress && !c->json && isatty(STDERR_FILENO));
  }
  graphd__v1__job__free_unpacked(job, NULL);
  return rc;
}

/* After a cancel's watch ended in a failure status: exit 0 if the job
 * ended CANCELLED (what was asked), else the error. */
static int cancel_outcome(ctl *c, uint64_t id) {
  Graphd__V1__JobRequest req = GRAPHD__V1__JOB_REQUEST__INIT;
  req.job_id = id;
  Graphd__V1__Job *job = NULL;
  int rc = rpc(c, M_GET_JOB, &req.base, &graphd__v1__job__descriptor, (ProtobufCMessage **)&job);
  if (rc)
    return rc;
  rc = job->state == GRAPHD__V1__JOB_STATE__JOB_STATE_CANCELLED ? EXIT_OK : EXIT_RPC;
  graphd__v1__job__free_unpacked(job, NULL);
  return rc;
}

int run_job(ctl *c, const command *cmd, args *a) {
  int rc;
  uint64_t id = 0;
  if (a->npos < 1)
    return usage_error(cmd, "job needs a job ID");
  if ((rc = parse_id_arg(cmd, "ID", a->pos[0], false, &id)) || (rc = no_more_args(cmd, a, 1)))
    return rc;
  Graphd__V1__JobRequest req = GRAPHD__V1__JOB_REQUEST__INIT;
  req.job_id = id;
  Graphd__V1__Job *job = NULL;
  rc = rpc(c, M_GET_JOB, &req.base, &graphd__v1__job__descriptor, (ProtobufCMessage **)&job);
  if (rc)
    return rc;
  if (a->cancel && job_final(job)) {
    fprintf(stderr, "graphctl: job %" PRIu64 " already ended %s: nothing to cancel\n", id,
            state_name(job->state));
  } else if (a->cancel) {
    /* A queued job ends at once; a running one about a second after the
     * worker's SIGTERM: follow it to its end. */
    graphd__v1__job__free_unpacked(job, NULL);
    job = NULL;
    if ((rc = rpc(c, M_CANCEL, &req.base, &graphd__v1__job__descriptor,
                  (ProtobufCMessage **)&job)))
      return rc;
    if (!job_final(job)) {
      graphd__v1__job__free_unpacked(job, NULL);
      fprintf(stderr, "graphctl: cancel requested; waiting for job %" PRIu64 " to end\n", id);
      rc = watch_job(c, id, false);
      /* CANCELLED is what was asked for; a job already writing its
       * snapshot ends SUCCEEDED (watch_job said so): both are done. */
      return rc == EXIT_RPC ? cancel_outcome(c, id) : rc;
    }
  }
  if (c->json)
    print_json(job_json(job));
  else
    print_job(job);
  graphd__v1__job__free_unpacked(job, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* snapshots                                                            */

static json_object *manifest_json(const Graphd__V1__SnapshotManifest *m) {
  json_object *o = jobj();
  jset(o, "id", json_object_new_uint64(m->id));
  jset(o, "name", jstr(m->spec ? m->spec->name : ""));
  jset(o, "algorithm", jstr(algo_name(m->spec ? m->spec->algorithm : 0)));
  jset(o, "seed", json_object_new_uint64(m->seed));
  jset(o, "input_checksum", jstr(m->input_checksum));
  jset(o, "sellers", json_object_new_uint64(m->sellers));
  jset(o, "ties", json_object_new_uint64(m->ties));
  jset(o, "hubs_skipped", json_object_new_uint64(m->hubs_skipped));
  jset(o, "clusters", json_object_new_uint64(m->clusters));
  jset(o, "objective", json_object_new_double(m->objective));
  jset(o, "modularity", json_object_new_double(m->modularity));
  json_object *t = jobj();
  for (size_t i = 0; i < m->n_timings; i++)
    jset(t, m->timings[i]->stage, json_object_new_double(m->timings[i]->seconds));
  jset(o, "timings", t);
  jset(o, "peak_rss_bytes", json_object_new_uint64(m->peak_rss_bytes));
  jset(o, "created_at", json_object_new_int64(m->created_at));
  jset(o, "previous_snapshot_id", json_object_new_uint64(m->previous_snapshot_id));
  return o;
}

int run_snapshots(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  Graphd__V1__ListSnapshotsRequest req = GRAPHD__V1__LIST_SNAPSHOTS_REQUEST__INIT;
  req.limit = (uint32_t)a->limit;
  req.page_token = (char *)(a->page_token ? a->page_token : "");
  Graphd__V1__ListSnapshotsReply *rep = NULL;
  if ((rc = rpc(c, M_SNAPSHOTS, &req.base, &graphd__v1__list_snapshots_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_snapshots; i++)
      json_object_array_add(arr, manifest_json(rep->snapshots[i]));
    jset(o, "snapshots", arr);
    jset(o, "next_page_token", jstr(rep->next_page_token));
    print_json(o);
  } else if (rep->n_snapshots == 0) {
    printf("no snapshots\n");
  } else {
    printf("%-6s %-20s %-18s %10s %10s %9s %10s  %s\n", "ID", "CREATED", "ALGORITHM", "SELLERS",
           "TIES", "CLUSTERS", "MODULARITY", "NAME");
    for (size_t i = 0; i < rep->n_snapshots; i++) {
      const Graphd__V1__SnapshotManifest *m = rep->snapshots[i];
      char t[32], nb[256];
      printf("%-6" PRIu64 " %-20s %-18s %10" PRIu64 " %10" PRIu64 " %9" PRIu64 " %10.4f  %s\n",
             m->id, fmt_time(m->created_at, t, sizeof t),
             algo_name(m->spec ? m->spec->algorithm : 0), m->sellers, m->ties, m->clusters,
             m->modularity, safe(m->spec ? m->spec->name : "", nb, sizeof nb));
    }
    if (rep->next_page_token[0])
      printf("more: --page-token %s\n", rep->next_page_token);
  }
  graphd__v1__list_snapshots_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* clusters, cluster ID                                                 */

static json_object *summary_json(const Graphd__V1__ClusterSummary *s) {
  json_object *o = jobj(), *top = jarr();
  jset(o, "id", json_object_new_uint64(s->id));
  jset(o, "size", json_object_new_uint64(s->size));
  jset(o, "flagged", json_object_new_uint64(s->flagged));
  jset(o, "risk", json_object_new_double(s->risk));
  jset(o, "cohesion", json_object_new_double(s->cohesion));
  for (size_t i = 0; i < s->n_top_shared; i++) {
    const Graphd__V1__SupplySource *x = s->top_shared[i];
    json_object *e = jobj();
    if (x->entity)
      jset(e, "entity", entity_json(x->entity, false));
    jset(e, "cluster_sellers", json_object_new_uint64(x->cluster_sellers));
    jset(e, "total_sellers", json_object_new_uint64(x->total_sellers));
    jset(e, "score", json_object_new_double(x->score));
    json_object_array_add(top, e);
  }
  jset(o, "top_shared", top);
  return o;
}

/* "address addr-3fa9 (12/14)" */
static const char *source_text(const Graphd__V1__SupplySource *x, char *buf, size_t size) {
  char kb[256];
  if (!x->entity) {
    snprintf(buf, size, "?");
    return buf;
  }
  gd_etype t = (gd_etype)x->entity->type;
  snprintf(buf, size, "%s %s (%" PRIu64 "/%" PRIu64 ")", gd_type_name(t),
           safe(x->entity->key, kb, sizeof kb), x->cluster_sellers, x->total_sellers);
  return buf;
}

int run_clusters(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  Graphd__V1__ListClustersRequest req = GRAPHD__V1__LIST_CLUSTERS_REQUEST__INIT;
  req.snapshot_id = a->snapshot;
  req.order = a->order && strcmp(a->order, "size") == 0
                  ? GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_SIZE
                  : GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_RISK;
  req.min_size = a->min_size;
  req.limit = (uint32_t)a->limit;
  req.page_token = (char *)(a->page_token ? a->page_token : "");
  Graphd__V1__ListClustersReply *rep = NULL;
  if ((rc = rpc(c, M_CLUSTERS, &req.base, &graphd__v1__list_clusters_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_clusters; i++)
      json_object_array_add(arr, summary_json(rep->clusters[i]));
    jset(o, "clusters", arr);
    jset(o, "next_page_token", jstr(rep->next_page_token));
    print_json(o);
  } else if (rep->n_clusters == 0) {
    printf("no clusters\n");
  } else {
    printf("%-8s %7s %7s %6s %8s  %s\n", "ID", "SIZE", "FLAGGED", "RISK", "COHESION",
           "TOP SHARED ENTITY");
    for (size_t i = 0; i < rep->n_clusters; i++) {
      const Graphd__V1__ClusterSummary *s = rep->clusters[i];
      char sb[512];
      printf("%-8" PRIu64 " %7" PRIu64 " %7" PRIu64 " %6.3f %8.3f  %s\n", s->id, s->size,
             s->flagged, s->risk, s->cohesion,
             s->n_top_shared ? source_text(s->top_shared[0], sb, sizeof sb) : "-");
    }
    if (rep->next_page_token[0])
      printf("more: --page-token %s\n", rep->next_page_token);
  }
  graphd__v1__list_clusters_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

static int show_cluster(ctl *c, const command *cmd, args *a) {
  int rc;
  uint64_t id;
  if ((rc = parse_id_arg(cmd, "ID", a->pos[0], false, &id)) || (rc = no_more_args(cmd, a, 1)))
    return rc;
  Graphd__V1__GetClusterRequest req = GRAPHD__V1__GET_CLUSTER_REQUEST__INIT;
  req.snapshot_id = a->snapshot;
  req.cluster_id = id;
  req.max_members = (uint32_t)a->max_members;
  req.live = 1; /* today's labels, shown apart from the snapshot's flagged state */
  Graphd__V1__GetClusterReply *rep = NULL;
  if ((rc = rpc(c, M_CLUSTER, &req.base, &graphd__v1__get_cluster_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  const Graphd__V1__ClusterSummary *s = rep->cluster;
  if (c->json) {
    json_object *o = jobj(), *mem = jarr(), *ties = jarr();
    jset(o, "cluster", s ? summary_json(s) : json_object_new_null());
    for (size_t i = 0; i < rep->n_members; i++) {
      json_object *e = entity_json(rep->members[i], false);
      jset(e, "flagged", json_object_new_boolean(member_flagged(rep, rep->members[i]->id)));
      json_object_array_add(mem, e);
    }
    jset(o, "members", mem);
    json_object *live = jarr();
    for (size_t i = 0; i < rep->n_live_members; i++)
      json_object_array_add(live, entity_json(rep->live_members[i], false));
    jset(o, "live_members", live);
    for (size_t i = 0; i < rep->n_ties; i++) {
      json_object *t = jobj();
      jset(t, "seller_a", json_object_new_uint64(rep->ties[i]->seller_a));
      jset(t, "key_a", json_object_new_string(rep->ties[i]->key_a));
      jset(t, "key_b", json_object_new_string(rep->ties[i]->key_b));
      jset(t, "seller_b", json_object_new_uint64(rep->ties[i]->seller_b));
      jset(t, "weight", json_object_new_double(rep->ties[i]->weight));
      json_object_array_add(ties, t);
    }
    jset(o, "ties", ties);
    jset(o, "ties_stored", json_object_new_uint64(rep->ties_stored));
    jset(o, "more_members", json_object_new_boolean(rep->more_members));
    json_object *prov = jarr();
    for (size_t i = 0; i < rep->n_provisional_members; i++)
      json_object_array_add(prov, entity_json(rep->provisional_members[i], false));
    jset(o, "provisional_members", prov);
    jset(o, "more_provisional", json_object_new_boolean(rep->more_provisional));
    print_json(o);
  } else if (s) {
    printf("cluster %" PRIu64 ": %" PRIu64 " sellers, %" PRIu64 " flagged, risk %.3f, cohesion "
           "%.3f\n",
           s->id, s->size, s->flagged, s->risk, s->cohesion);
    printf("top shared entities (sellers in cluster / overall):\n");
    for (size_t i = 0; i < s->n_top_shared; i++) {
      char sb[512];
      printf("  %2zu. %s\n", i + 1, source_text(s->top_shared[i], sb, sizeof sb));
    }
    printf("members (%zu shown; flagged: as the snapshot recorded; labels: today's):\n",
           rep->n_members);
    for (size_t i = 0; i < rep->n_members; i++) {
      const Graphd__V1__Entity *e = rep->members[i], *now = NULL;
      char kb[256];
      for (size_t j = 0; j < rep->n_live_members && !now; j++)
        if (rep->live_members[j]->id == e->id)
          now = rep->live_members[j];
      printf("  %-10" PRIu64 " %s%s", e->id, safe(e->key, kb, sizeof kb),
             member_flagged(rep, e->id) ? "  flagged" : "");
      if (!now)
        printf("  (deleted since)");
      for (size_t j = 0; now && j < now->n_labels; j++)
        printf("%s%s", j ? ", " : "  [", safe(now->labels[j], kb, sizeof kb));
      printf("%s\n", now && now->n_labels ? "]" : "");
    }
    if (rep->n_provisional_members) {
      /* Placed in this cluster since the snapshot was written (latest
       * snapshot only): not members of the snapshot. */
      printf("provisional members (%zu shown%s; placed since the snapshot was written):\n",
             rep->n_provisional_members, rep->more_provisional ? ", more not shown" : "");
      for (size_t i = 0; i < rep->n_provisional_members; i++) {
        const Graphd__V1__Entity *e = rep->provisional_members[i];
        const Graphd__V1__Placement *p = e->provisional;
        char kb[256], t[40];
        printf("  %-10" PRIu64 " %s  provisional", e->id, safe(e->key, kb, sizeof kb));
        if (p)
          printf(" since %s, tie %.3f%s", fmt_time(p->placed_at / 1000, t, sizeof t), p->tie,
                 p->previous_cluster_id ? "" : ", new");
        if (p && p->previous_cluster_id)
          printf(", before: cluster %" PRIu64, p->previous_cluster_id);
        printf("\n");
      }
    }
    if (rep->ties_stored) {
      printf("ties holding it together (%" PRIu64 " stored, strongest first):\n",
             rep->ties_stored);
      for (size_t i = 0; i < rep->n_ties && i < 10; i++) {
        char ka[300], kb2[300];
        const Graphd__V1__EvidenceTie *t = rep->ties[i];
        printf("  %s - %s  %.3f\n", tie_seller(c, rep, t->seller_a, t->key_a, ka, sizeof ka),
               tie_seller(c, rep, t->seller_b, t->key_b, kb2, sizeof kb2), t->weight);
      }
    }
  }
  graphd__v1__get_cluster_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* assignments                                                          */

int run_assignments(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  bool jsonl = a->have_format && a->format == GC_INGEST_JSONL;
  /* Ask first, so an error (no snapshot, bad id) leaves no file behind. */
  Graphd__V1__StreamAssignmentsRequest req = GRAPHD__V1__STREAM_ASSIGNMENTS_REQUEST__INIT;
  req.snapshot_id = a->snapshot;
  gc_status st;
  gc_sstream *s = NULL;
  uint64_t n = 0;
  double t0 = now_s();
  if (gc_sstream_open(c->client, M_ASSIGN, &req.base, a->timeout_set ? c->timeout_ms : 0, &s,
                      &st) != 0)
    return report_status(c, &st);
  outfile of;
  if ((rc = outfile_open(&of, a->out))) {
    gc_sstream_free(s);
    return rc;
  }
  FILE *out = of.f;
  /* CSV: a header line, then two unsigned integer columns; no value needs
   * quoting, so any CSV reader (pandas.read_csv with no options) reads
   * two int64 columns. */
  if (!jsonl)
    fputs("seller_id,cluster_id\n", out);
  for (;;) {
    ProtobufCMessage *m = NULL;
    if (gc_sstream_next(s, &graphd__v1__assignment_batch__descriptor, &m, &st) != 0) {
      rc = report_status(c, &st);
      break;
    }
    if (!m)
      break;
    const Graphd__V1__AssignmentBatch *b = (const Graphd__V1__AssignmentBatch *)m;
    size_t k = b->n_seller_ids < b->n_cluster_ids ? b->n_seller_ids : b->n_cluster_ids;
    for (size_t i = 0; i < k; i++) {
      if (jsonl)
        fprintf(out, "{\"seller_id\":%" PRIu64 ",\"cluster_id\":%" PRIu64 "}\n",
                b->seller_ids[i], b->cluster_ids[i]);
      else
        fprintf(out, "%" PRIu64 ",%" PRIu64 "\n", b->seller_ids[i], b->cluster_ids[i]);
    }
    n += k;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  gc_sstream_free(s);
  rc = outfile_close(&of, rc);
  if (!rc) {
    double dt = now_s() - t0;
    bool to_file = !outfile_is_stdout(a->out);
    fprintf(stderr, "graphctl: %" PRIu64 " assignments in %.2f s (%.0f/s)%s%s\n", n, dt,
            dt > 0 ? (double)n / dt : 0.0, to_file ? " to " : "", to_file ? a->out : "");
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* diff                                                                 */

static const char *kind_name(Graphd__V1__DiffEvent__Kind k) {
  switch (k) {
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_MOVED:
    return "moved";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_CONTINUED:
    return "continued";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_MERGED:
    return "merged";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_SPLIT:
    return "split";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_BORN:
    return "born";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_DISSOLVED:
    return "dissolved";
  case GRAPHD__V1__DIFF_EVENT__KIND__KIND_SUMMARY:
    return "summary";
  default:
    return "unknown";
  }
}

static json_object *ids_json(const uint64_t *ids, size_t n) {
  json_object *arr = jarr();
  for (size_t i = 0; i < n; i++)
    json_object_array_add(arr, json_object_new_uint64(ids[i]));
  return arr;
}

static void print_ids(const uint64_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    printf("%s%" PRIu64, i ? "," : "", ids[i]);
}

static json_object *diff_summary_json(const Graphd__V1__DiffSummary *s) {
  json_object *o = jobj();
  jset(o, "from_snapshot_id", json_object_new_uint64(s->from_snapshot_id));
  jset(o, "to_snapshot_id", json_object_new_uint64(s->to_snapshot_id));
  jset(o, "sellers", json_object_new_uint64(s->sellers));
  jset(o, "sellers_stayed", json_object_new_uint64(s->sellers_stayed));
  jset(o, "sellers_moved", json_object_new_uint64(s->sellers_moved));
  jset(o, "sellers_added", json_object_new_uint64(s->sellers_added));
  jset(o, "sellers_removed", json_object_new_uint64(s->sellers_removed));
  jset(o, "clusters_from", json_object_new_uint64(s->clusters_from));
  jset(o, "clusters_to", json_object_new_uint64(s->clusters_to));
  jset(o, "continued", json_object_new_uint64(s->continued));
  jset(o, "merged", json_object_new_uint64(s->merged));
  jset(o, "split", json_object_new_uint64(s->split));
  jset(o, "born", json_object_new_uint64(s->born));
  jset(o, "dissolved", json_object_new_uint64(s->dissolved));
  return o;
}

int run_diff(ctl *c, const command *cmd, args *a) {
  int rc;
  uint64_t from, to;
  if (a->npos < 2)
    return usage_error(cmd, "diff needs two snapshot ids: A B");
  if ((rc = parse_id_arg(cmd, "A", a->pos[0], false, &from)) ||
      (rc = parse_id_arg(cmd, "B", a->pos[1], true, &to)) || (rc = no_more_args(cmd, a, 2)))
    return rc;
  Graphd__V1__DiffSnapshotsRequest req = GRAPHD__V1__DIFF_SNAPSHOTS_REQUEST__INIT;
  req.from_snapshot_id = from;
  req.to_snapshot_id = to;
  req.min_part_size = (uint32_t)a->min_part;
  gc_status st;
  gc_sstream *s = NULL;
  if (gc_sstream_open(c->client, M_DIFF, &req.base, a->timeout_set ? c->timeout_ms : 0, &s,
                      &st) != 0)
    return report_status(c, &st);
  json_object *doc = c->json ? jobj() : NULL, *events = c->json ? jarr() : NULL;
  uint64_t n_continued = 0; /* text mode: continued clusters not listed */
  for (;;) {
    ProtobufCMessage *m = NULL;
    if (gc_sstream_next(s, &graphd__v1__diff_event__descriptor, &m, &st) != 0) {
      rc = report_status(c, &st);
      break;
    }
    if (!m)
      break;
    const Graphd__V1__DiffEvent *e = (const Graphd__V1__DiffEvent *)m;
    bool skip = a->no_moves && e->kind == GRAPHD__V1__DIFF_EVENT__KIND__KIND_MOVED;
    if (!doc && !a->continued && e->kind == GRAPHD__V1__DIFF_EVENT__KIND__KIND_CONTINUED) {
      n_continued++;
    } else if (skip) {
    } else if (e->kind == GRAPHD__V1__DIFF_EVENT__KIND__KIND_SUMMARY) {
      if (doc && e->counts)
        jset(doc, "summary", diff_summary_json(e->counts));
      else if (!doc)
        printf("%s\n", e->summary);
    } else if (doc) {
      json_object *o = jobj();
      jset(o, "kind", jstr(kind_name(e->kind)));
      if (e->kind == GRAPHD__V1__DIFF_EVENT__KIND__KIND_MOVED)
        jset(o, "seller_id", json_object_new_uint64(e->seller_id));
      jset(o, "from", ids_json(e->from_clusters, e->n_from_clusters));
      jset(o, "to", ids_json(e->to_clusters, e->n_to_clusters));
      json_object_array_add(events, o);
    } else {
      printf("%-9s ", kind_name(e->kind));
      if (e->kind == GRAPHD__V1__DIFF_EVENT__KIND__KIND_MOVED)
        printf("seller %" PRIu64 " ", e->seller_id);
      print_ids(e->from_clusters, e->n_from_clusters);
      if (e->n_from_clusters && e->n_to_clusters)
        printf(" -> ");
      print_ids(e->to_clusters, e->n_to_clusters);
      putchar('\n');
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
  gc_sstream_free(s);
  if (!doc && rc == EXIT_OK && n_continued)
    printf("(%" PRIu64 " cluster%s continued; --continued lists them)\n", n_continued,
           n_continued == 1 ? "" : "s");
  if (doc) {
    jset(doc, "events", events);
    if (rc == EXIT_OK)
      print_json(doc);
    else
      json_object_put(doc);
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* audit                                                                */

const optspec audit_opts[] = {
    {"since", true, O_SINCE},         {"until", true, O_UNTIL},
    {"principal", true, O_PRINCIPAL}, {"case", true, O_CASE},
    {"method", true, O_METHOD},       {"limit", true, O_LIMIT},
    {"page-token", true, O_PAGE_TOKEN}, {"verify", false, O_VERIFY},
    {NULL, false, 0},
};

const char audit_help[] =
    "usage: graphctl audit [OPTIONS]      list audit records (admin)\n"
    "       graphctl audit --verify       check the hash chain\n"
    "\n"
    "One record per call, refused ones included: TIME, SEQ, PRINCIPAL, ROLE,\n"
    "CASE, METHOD, STATUS, TARGET, oldest first.\n"
    "  --since T, --until T  time window (unix seconds or ISO-8601)\n"
    "  --principal NAME      only this caller\n"
    "  --case ID             only calls that sent this x-case-id\n"
    "  --method NAME         only this rpc (GetEntity or its full path)\n"
    "  --limit N, --page-token T\n"
    "--verify walks the whole chain; exit 1 if a record was altered, removed\n"
    "or reordered (the first bad one is named).\n";

int run_audit(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  if (a->verify) {
    Graphd__V1__VerifyAuditRequest req = GRAPHD__V1__VERIFY_AUDIT_REQUEST__INIT;
    Graphd__V1__VerifyAuditReply *rep = NULL;
    if ((rc = rpc(c, M_VERIFY, &req.base, &graphd__v1__verify_audit_reply__descriptor,
                  (ProtobufCMessage **)&rep)))
      return rc;
    if (c->json) {
      json_object *o = jobj();
      jset(o, "ok", json_object_new_boolean(rep->ok));
      jset(o, "records", json_object_new_uint64(rep->records));
      jset(o, "first_bad_seq", json_object_new_uint64(rep->first_bad_seq));
      jset(o, "problem", jstr(rep->problem));
      print_json(o);
    } else if (rep->ok) {
      printf("audit chain verified: %" PRIu64 " records\n", rep->records);
    } else {
      printf("audit chain BROKEN: %s (%" PRIu64 " records verified before it)\n", rep->problem,
             rep->records);
    }
    rc = rep->ok ? EXIT_OK : EXIT_RPC;
    graphd__v1__verify_audit_reply__free_unpacked(rep, NULL);
    return rc;
  }
  Graphd__V1__ListAuditRequest req = GRAPHD__V1__LIST_AUDIT_REQUEST__INIT;
  char method[256];
  req.since = a->have_since ? a->since * 1000 : 0;
  req.until = a->have_until ? a->until * 1000 + 999 : 0;
  req.principal = (char *)(a->principal ? a->principal : "");
  req.case_id = (char *)(a->case_id ? a->case_id : "");
  if (a->method && a->method[0] != '/')
    snprintf(method, sizeof method, "%s%s", SVC, a->method);
  else
    snprintf(method, sizeof method, "%s", a->method ? a->method : "");
  req.method = method;
  req.limit = (uint32_t)a->limit;
  req.page_token = (char *)(a->page_token ? a->page_token : "");
  Graphd__V1__ListAuditReply *rep = NULL;
  if ((rc = rpc(c, M_AUDIT, &req.base, &graphd__v1__list_audit_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_records; i++) {
      const Graphd__V1__AuditRecord *r = rep->records[i];
      json_object *x = jobj();
      char hex[65];
      for (size_t k = 0; k < r->hash.len && k < 32; k++)
        snprintf(hex + 2 * k, 3, "%02x", r->hash.data[k]);
      hex[r->hash.len < 32 ? 2 * r->hash.len : 64] = 0;
      jset(x, "time_ms", json_object_new_int64(r->time));
      jset(x, "seq", json_object_new_uint64(r->seq));
      jset(x, "principal", jstr(r->principal));
      jset(x, "role", jstr(r->role));
      jset(x, "peer", jstr(r->peer));
      jset(x, "case_id", jstr(r->case_id));
      jset(x, "method", jstr(r->method));
      jset(x, "target", jstr(r->target));
      jset(x, "status", json_object_new_int(r->status));
      jset(x, "hash", jstr(hex));
      json_object_array_add(arr, x);
    }
    jset(o, "records", arr);
    jset(o, "next_page_token", jstr(rep->next_page_token));
    print_json(o);
  } else {
    printf("%-24s %6s %-14s %-12s %-10s %-26s %-18s %s\n", "TIME", "SEQ", "PRINCIPAL", "ROLE",
           "CASE", "METHOD", "STATUS", "TARGET");
    for (size_t i = 0; i < rep->n_records; i++) {
      const Graphd__V1__AuditRecord *r = rep->records[i];
      char t[40], b1[256], b2[256], b3[1100];
      time_t sec = (time_t)(r->time / 1000);
      struct tm tm;
      gmtime_r(&sec, &tm);
      size_t k = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf(t + k, sizeof t - k, ".%03dZ", (int)(r->time % 1000));
      const char *m = strrchr(r->method, '/');
      printf("%-24s %6" PRIu64 " %-14s %-12s %-10s %-26s %-18s %s\n", t, r->seq,
             safe(r->principal, b1, sizeof b1), r->role, safe(r->case_id, b2, sizeof b2),
             m ? m + 1 : r->method, gc_status_code_name(r->status), safe(r->target, b3, sizeof b3));
    }
    if (rep->next_page_token[0])
      printf("more: --page-token %s\n", rep->next_page_token);
  }
  graphd__v1__list_audit_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* backup                                                               */

const char backup_help[] =
    "usage: graphctl backup DIR\n"
    "\n"
    "Writes a compacted, consistent copy of graphd's store into DIR, an\n"
    "existing empty directory on the server's machine (absolute path), while\n"
    "writes go on (admin role). Restore by starting graphd on it:\n"
    "graphd --data DIR. The deadline is --timeout if given, else none.\n";

int run_backup(ctl *c, const command *cmd, args *a) {
  int rc;
  if (a->npos < 1)
    return usage_error(cmd, "backup needs a directory");
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  Graphd__V1__BackupRequest req = GRAPHD__V1__BACKUP_REQUEST__INIT;
  req.path = a->pos[0];
  Graphd__V1__BackupReply *rep = NULL;
  ctl c2 = *c;
  if (!a->timeout_set)
    c2.timeout_ms = 0;
  double t0 = now_s();
  if ((rc = rpc(&c2, SVC "Backup", &req.base, &graphd__v1__backup_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  char hb[64];
  if (c->json) {
    json_object *o = jobj();
    jset(o, "path", jstr(a->pos[0]));
    jset(o, "bytes", json_object_new_uint64(rep->bytes));
    print_json(o);
  } else {
    printf("backup written to %s: %s in %.1f s\n", a->pos[0],
           human_bytes(rep->bytes, hb, sizeof hb), now_s() - t0);
  }
  graphd__v1__backup_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}
