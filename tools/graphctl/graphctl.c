/*
 * graphctl: command-line client of graphd.
 *
 * Talks gRPC like any other client (tools/common/client.h), parses ingest
 * files with tools/common/ingest.h, and prints either readable text or,
 * with --json, one JSON document per command on stdout (json-c). Errors go
 * to stderr as "graphctl: ..." lines; the exit status says what kind of
 * failure it was (see main_help below: scripts rely on it).
 *
 * Layout of this file: exit codes and small output helpers; argument
 * parsing (options may appear anywhere on the line; a table per command);
 * one run_xxx function per command; main.
 */
#include "graphctl.h"
#include "health.pb-c.h"

#include "core/arena.h"
#include "core/u64map.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* The ingest parser's type numbers are the proto's. */
_Static_assert((int)GD_TYPE_SELLER == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER, "type");
_Static_assert((int)GD_TYPE_ADDRESS == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_ADDRESS, "type");
_Static_assert((int)GD_TYPE_PAYMENT_ACCOUNT == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_PAYMENT_ACCOUNT, "type");
_Static_assert((int)GD_TYPE_DEVICE == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE, "type");
_Static_assert((int)GD_TYPE_PHONE == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_PHONE, "type");
_Static_assert((int)GD_TYPE_EMAIL == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_EMAIL, "type");
_Static_assert((int)GD_TYPE_IP == (int)GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_IP, "type");


#define M_INGEST SVC "Ingest"
#define M_BULK SVC "BulkLoad"
#define M_GET SVC "GetEntity"
#define M_NEIGHBORS SVC "Neighbors"
#define M_SET_LABELS SVC "SetLabels"
#define M_DELETE SVC "DeleteEntity"
#define M_STATS SVC "Stats"
#define M_LINKED SVC "LinkedSellers"
#define M_PATHS SVC "FindPaths"
#define M_SUSPECTS SVC "RankSuspects"
#define M_HEALTH "/grpc.health.v1.Health/Check"

#define DEFAULT_ADDR "127.0.0.1:7419"
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_BATCH 10000
#define MAX_BATCH 100000 /* the server's limit of items per UpsertRequest */
/* Default cap on one UpsertRequest's size: under gRPC's (and graphd's)
 * default 4 MiB maximum message, with room to spare. */
#define DEFAULT_BATCH_BYTES (3L * 1024 * 1024)

static const char *const main_help =
    "usage: graphctl [OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "Command-line client of graphd, the seller graph service.\n"
    "\n"
    "Commands:\n"
    "  ingest FILE...             load links and entities from CSV or JSON Lines\n"
    "  get TYPE KEY | --id N      show one entity\n"
    "  neighbors TYPE KEY         list an entity's direct links\n"
    "  label TYPE KEY [+L] [-L]   add or remove labels, print the result\n"
    "  delete TYPE KEY            delete an entity with its labels and links\n"
    "  stats                      counts and sizes\n"
    "  linked TYPE KEY | --id N   sellers linked to a seller, with the evidence\n"
    "  paths TYPE KEY TYPE KEY    shortest evidence paths between two entities\n"
    "  suspects [--label L]       unlabelled sellers ranked by closeness to\n"
    "                             labelled ones\n"
    "  cluster [OPTIONS]          run a clustering job, following its progress\n"
    "  cluster ID                 one cluster: summary, supply sources, members\n"
    "  job ID [--cancel]          show (or cancel) a clustering job\n"
    "  snapshots                  list clustering snapshots\n"
    "  clusters                   a snapshot's clusters, riskiest first\n"
    "  assignments                every seller's cluster, as CSV or JSON Lines\n"
    "  diff A B                   what changed between two snapshots\n"
    "  export cluster ID | entity TYPE KEY | snapshot  -o FILE\n"
    "                             a cluster, an entity's neighbourhood or the\n"
    "                             riskiest clusters as GraphML (Gephi, yEd)\n"
    "  export ties -o FILE        the projected seller-seller ties, an edge list\n"
    "                             for an engine outside graphd\n"
    "  import FILE                a membership computed outside graphd, as a\n"
    "                             snapshot\n"
    "  report -o FILE.html        a snapshot's clusters as one HTML page\n"
    "  alerts [OPTIONS]           follow alerts as sellers join clusters of the\n"
    "                             latest snapshot (Ctrl-C stops)\n"
    "  audit [--verify]           the audit trail (admin), or check its hash chain\n"
    "  backup DIR                 consistent copy of the store into DIR on the server\n"
    "  health                     check that the server is serving\n"
    "  help [COMMAND]             this text, or a command's help\n"
    "\n"
    "Options (before or after the command):\n"
    "  --addr HOST:PORT   server address (default: $GRAPHD_ADDR, else " DEFAULT_ADDR ")\n"
    "  --json             machine-readable output: one JSON document on stdout\n"
    "  --case-id ID       send x-case-id ID with every call (audit trail; default\n"
    "                     $GRAPHD_CASE_ID)\n"
    "  --tls              connect with TLS (implied by the --tls-* options)\n"
    "  --tls-ca FILE      CA certificates to trust (PEM; default: the system's)\n"
    "  --tls-cert FILE, --tls-key FILE  client certificate and key (mTLS)\n"
    "  --tls-server-name NAME  name to check the server certificate against\n"
    "  --token-file FILE  bearer token for graphd --tokens (first line of FILE;\n"
    "                     default: $GRAPHD_TOKEN)\n"
    "  --timeout MS       deadline of each rpc in milliseconds (default 10000;\n"
    "                     0 = none); ingest: see graphctl ingest --help\n"
    "  -h, --help         help (graphctl COMMAND --help for a command)\n"
    "\n"
    "TYPE is one of seller, address, payment_account, device, phone, email, ip\n"
    "(any case; ENTITY_TYPE_SELLER etc. also work). Times are unix seconds or\n"
    "ISO-8601 in UTC: 2025-03-01, 2025-03-01T12:00:00Z, 2025-03-01T14:00+02:00.\n"
    "A KEY that starts with '-' goes after '--': graphctl get phone -- -1.\n"
    "\n"
    "Exit status:\n"
    "   0  success\n"
    "   1  the server answered with an error status; stderr has\n"
    "      \"graphctl: CODE: message\" (e.g. NOT_FOUND: no such entity);\n"
    "      also health when the server is not SERVING\n"
    "   2  usage error (bad command line)\n"
    "  65  bad input file (ingest): the message names file:line and field\n"
    "  66  an input file cannot be opened or read (ingest)\n"
    "  69  cannot reach the server: UNAVAILABLE, or DEADLINE_EXCEEDED before\n"
    "      a connection was made\n"
    "  70  internal error (out of memory)\n"
    "  73  the output file cannot be created (assignments, export, report)\n"
    "  74  an output file cannot be written (assignments, export, report)\n";

/* ------------------------------------------------------------------ */
/* Output helpers                                                       */

_Noreturn void die_nomem(void) {
  fprintf(stderr, "graphctl: out of memory\n");
  exit(EXIT_SOFTWARE);
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    die_nomem();
  return p;
}

char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    die_nomem();
  return p;
}

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a JSON document on stdout and drops it. */
void print_json(json_object *o) {
  puts(json_object_to_json_string_ext(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(o);
}

json_object *jstr(const char *s) {
  json_object *o = json_object_new_string(s ? s : "");
  if (!o)
    die_nomem();
  return o;
}

void jset(json_object *o, const char *key, json_object *v) {
  if (!v)
    die_nomem();
  json_object_object_add(o, key, v);
}

json_object *jobj(void) {
  json_object *o = json_object_new_object();
  if (!o)
    die_nomem();
  return o;
}

json_object *jarr(void) {
  json_object *o = json_object_new_array();
  if (!o)
    die_nomem();
  return o;
}

/* Copies s into buf for display on a terminal: control characters become
 * \n, \t, \xNN. Returns buf. */
const char *safe(const char *s, char *buf, size_t size) {
  size_t o = 0;
  for (; *s && o + 5 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (c == '\t') {
      buf[o++] = '\\';
      buf[o++] = 't';
    } else if (c < 0x20 || c == 0x7f) {
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o] = '\0';
  return buf;
}

/* Display width of UTF-8 text (code points; good enough for a table). */
size_t text_width(const char *s) {
  size_t w = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xc0) != 0x80)
      w++;
  return w;
}

void print_padded(const char *s, size_t width, bool right, bool last) {
  size_t w = text_width(s);
  size_t pad = w < width ? width - w : 0;
  if (right)
    printf("%*s%s", (int)pad, "", s);
  else if (last)
    fputs(s, stdout);
  else
    printf("%s%*s", s, (int)pad, "");
}

/* "1.5 MiB (1572864 bytes)" style sizes. */
const char *human_bytes(uint64_t n, char *buf, size_t size) {
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024) {
    snprintf(buf, size, "%" PRIu64 " B", n);
    return buf;
  }
  double v = (double)n / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    u++;
  }
  snprintf(buf, size, "%.1f %s", v, units[u]);
  return buf;
}

/* ------------------------------------------------------------------ */
/* Output files                                                         */

bool outfile_is_stdout(const char *path) {
  return !path || strcmp(path, "-") == 0;
}

int outfile_open(outfile *o, const char *path) {
  memset(o, 0, sizeof *o);
  if (outfile_is_stdout(path)) {
    o->f = stdout;
    return EXIT_OK;
  }
  o->path = path;
  size_t n = strlen(path) + 5;
  o->tmp = xcalloc(n, 1);
  snprintf(o->tmp, n, "%s.tmp", path);
  o->f = fopen(o->tmp, "w");
  if (!o->f) {
    fprintf(stderr, "graphctl: %s: %s\n", o->tmp, strerror(errno));
    free(o->tmp);
    o->tmp = NULL;
    return EX_CANTCREAT;
  }
  return EXIT_OK;
}

int outfile_close(outfile *o, int rc) {
  if (!o->f)
    return rc;
  const char *name = o->tmp ? o->tmp : "stdout";
  if (fflush(o->f) != 0 || ferror(o->f)) {
    fprintf(stderr, "graphctl: writing %s: %s\n", name, strerror(errno));
    if (!rc)
      rc = EX_IOERR;
  }
  if (o->tmp) {
    if (fsync(fileno(o->f)) != 0 && !rc) {
      fprintf(stderr, "graphctl: fsync %s: %s\n", name, strerror(errno));
      rc = EX_IOERR;
    }
    if (fclose(o->f) != 0 && !rc) {
      fprintf(stderr, "graphctl: closing %s: %s\n", name, strerror(errno));
      rc = EX_IOERR;
    }
    if (!rc && rename(o->tmp, o->path) != 0) {
      fprintf(stderr, "graphctl: rename %s: %s\n", name, strerror(errno));
      rc = EX_IOERR;
    }
    if (rc)
      unlink(o->tmp);
    free(o->tmp);
  }
  memset(o, 0, sizeof *o);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Status reporting                                                     */


static int exit_code_for(const gc_status *st) {
  if (st->code == 0)
    return EXIT_OK;
  if (st->code == 14 /* UNAVAILABLE */ ||
      (st->code == 4 /* DEADLINE_EXCEEDED */ && st->connect_failed))
    return EXIT_UNAVAILABLE;
  if (st->code == 8 && strcmp(st->message, "client: out of memory") == 0)
    return EXIT_SOFTWARE;
  return EXIT_RPC;
}

/* Prints "graphctl: CODE: message"; returns the exit code. */
int report_status(const ctl *c, const gc_status *st) {
  fprintf(stderr, "graphctl: %s: %s\n", gc_status_code_name(st->code),
          st->message[0] ? st->message : "(no message)");
  int rc = exit_code_for(st);
  if (rc == EXIT_UNAVAILABLE)
    fprintf(stderr,
            "graphctl: cannot reach graphd at %s (set --addr or GRAPHD_ADDR)\n",
            c->addr);
  return rc;
}

int rpc(const ctl *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret) {
  gc_status st;
  if (gc_unary(c->client, method, req, desc, ret, &st, c->timeout_ms) != 0)
    return report_status(c, &st);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Arguments                                                            */


static const optspec global_opts[] = {
    {"addr", true, O_ADDR},
    {"json", false, O_JSON},
    {"timeout", true, O_TIMEOUT},
    {"help", false, O_HELP},
    {"token-file", true, O_TOKEN_FILE},
    {"case-id", true, O_CASE_ID},
    {"tls", false, O_TLS},
    {"tls-ca", true, O_TLS_CA},
    {"tls-cert", true, O_TLS_CERT},
    {"tls-key", true, O_TLS_KEY},
    {"tls-server-name", true, O_TLS_NAME},
    {NULL, false, 0},
};

int usage_error(const command *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("graphctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (cmd)
    fprintf(stderr, "Try 'graphctl %s --help'.\n", cmd->name);
  else
    fprintf(stderr, "Try 'graphctl --help'.\n");
  return EXIT_USAGE;
}

int parse_long(const command *cmd, const char *opt, const char *v,
                      long min, long max, long *ret) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < min || x > max)
    return usage_error(cmd, "%s: expected a whole number in %ld..%ld, got '%s'",
                       opt, min, max, v);
  *ret = x;
  return 0;
}

int parse_time_opt(const command *cmd, const char *opt, const char *v,
                          int64_t *ret) {
  if (gc_time_parse(v, ret) != 0)
    return usage_error(cmd,
                       "%s: expected unix seconds or an ISO-8601 date/time "
                       "(2025-03-01, 2025-03-01T12:00:00Z), got '%s'",
                       opt, v);
  return 0;
}

static int add_types(const command *cmd, args *a, const char *opt,
                     const char *v) {
  char *copy = xstrdup(v);
  int rc = 0;
  for (char *save = NULL, *t = strtok_r(copy, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    gd_etype et;
    if (gc_type_parse(t, &et) != 0) {
      rc = usage_error(cmd,
                       "%s: unknown entity type '%s' (expected seller, "
                       "address, payment_account, device, phone, email or ip)",
                       opt, t);
      break;
    }
    if (a->ntypes == a->types_cap) {
      a->types_cap = a->types_cap ? a->types_cap * 2 : 8;
      a->types = realloc(a->types, a->types_cap * sizeof *a->types);
      if (!a->types)
        die_nomem();
    }
    a->types[a->ntypes++] = (Graphd__V1__EntityType)et;
  }
  free(copy);
  return rc;
}

/* A whole number in 1..UINT64_MAX (no sign). */
int parse_u64(const command *cmd, const char *opt, const char *v,
                     uint64_t *ret) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || end == v || *end || x == 0 || v[0] == '-' || v[0] == '+' ||
      v[0] == ' ')
    return usage_error(cmd, "%s: expected a whole number of 1 or more, got '%s'",
                       opt, v);
  *ret = (uint64_t)x;
  return 0;
}

/* A finite number; with positive, also > 0 (0 would silently mean the
 * server's default). */
int parse_double(const command *cmd, const char *opt, const char *v,
                        bool positive, double *ret) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || x != x || x > 1e308 || x < -1e308 ||
      (positive && !(x > 0)))
    return usage_error(cmd, "%s: expected a %snumber, got '%s'", opt,
                       positive ? "positive " : "", v);
  *ret = x;
  return 0;
}

/* --cap TYPE=N: a per-type hub cap (repeatable; a later one for the same
 * type replaces the earlier one). */
static int add_cap(const command *cmd, args *a, const char *v) {
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || !eq[1])
    return usage_error(cmd, "--cap: expected TYPE=N (e.g. address=1000), got '%s'",
                       v);
  char tname[64];
  size_t tl = (size_t)(eq - v);
  if (tl >= sizeof tname)
    tl = sizeof tname - 1;
  memcpy(tname, v, tl);
  tname[tl] = '\0';
  gd_etype et;
  if (gc_type_parse(tname, &et) != 0)
    return usage_error(cmd,
                       "--cap: unknown entity type '%s' (expected seller, "
                       "address, payment_account, device, phone, email or ip)",
                       tname);
  uint64_t n = 0;
  int rc = parse_u64(cmd, "--cap", eq + 1, &n);
  if (rc)
    return rc;
  for (size_t i = 0; i < a->ncaps; i++)
    if ((int)a->caps[i].type == (int)et) {
      a->caps[i].max_sellers = n;
      return 0;
    }
  if (a->ncaps == a->caps_cap) {
    a->caps_cap = a->caps_cap ? a->caps_cap * 2 : 8;
    a->caps = realloc(a->caps, a->caps_cap * sizeof *a->caps);
    if (!a->caps)
      die_nomem();
  }
  Graphd__V1__HubCap hc = GRAPHD__V1__HUB_CAP__INIT;
  hc.type = (Graphd__V1__EntityType)et;
  hc.max_sellers = n;
  a->caps[a->ncaps++] = hc;
  return 0;
}

static int set_option(const command *cmd, args *a, const optspec *o,
                      const char *v) {
  char opt[64];
  snprintf(opt, sizeof opt, "--%s", o->name);
  switch (o->id) {
  case O_ADDR:
    if (!*v)
      return usage_error(cmd, "--addr: empty address");
    a->addr = v;
    return 0;
  case O_JSON:
    a->json = true;
    return 0;
  case O_TIMEOUT:
    a->timeout_set = true;
    return parse_long(cmd, opt, v, 0, INT_MAX, &a->timeout_ms);
  case O_TLS:
    a->tls = true;
    return 0;
  case O_TLS_CA:
    a->tls = true;
    a->tls_ca = v;
    return 0;
  case O_TLS_CERT:
    a->tls = true;
    a->tls_cert = v;
    return 0;
  case O_TLS_KEY:
    a->tls = true;
    a->tls_key = v;
    return 0;
  case O_TLS_NAME:
    a->tls = true;
    a->tls_name = v;
    return 0;
  case O_CASE_ID:
    a->case_id_md = v;
    return 0;
  case O_TOKEN_FILE:
    if (!*v)
      return usage_error(cmd, "--token-file: empty file name");
    a->token_file = v;
    return 0;
  case O_HELP:
    a->help = true;
    return 0;
  case O_FORMAT:
    if (gc_ingest_format_parse(v, &a->format) != 0)
      return usage_error(cmd, "--format: expected csv or jsonl, got '%s'", v);
    a->have_format = true;
    return 0;
  case O_BATCH:
    return parse_long(cmd, opt, v, 1, MAX_BATCH, &a->batch);
  case O_BATCH_BYTES:
    return parse_long(cmd, opt, v, 4096, 1L << 30, &a->batch_bytes);
  case O_NO_PROGRESS:
    a->no_progress = true;
    return 0;
  case O_BULK:
    a->bulk = true;
    return 0;
  case O_REQUEST_ID:
    if (!*v || strlen(v) > 100)
      return usage_error(cmd, "--request-id-prefix: expected 1..100 bytes");
    a->request_id_prefix = v;
    return 0;
  case O_ID: {
    char *end;
    errno = 0;
    unsigned long long id = strtoull(v, &end, 10);
    if (errno || end == v || *end || id == 0 || v[0] == '-')
      return usage_error(cmd, "--id: expected an entity id (1 or more), got '%s'",
                         v);
    a->have_id = true;
    a->id = id;
    return 0;
  }
  case O_TYPE:
  case O_VIA:
    return add_types(cmd, a, opt, v);
  case O_SINCE:
    a->have_since = true;
    return parse_time_opt(cmd, opt, v, &a->since);
  case O_UNTIL:
    a->have_until = true;
    return parse_time_opt(cmd, opt, v, &a->until);
  case O_LIMIT:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->limit);
  case O_ALL:
    a->all = true;
    return 0;
  case O_PAGE_TOKEN:
    a->page_token = v;
    return 0;
  case O_ADD:
    a->add[a->nadd++] = (char *)v;
    return 0;
  case O_REMOVE:
    a->remove[a->nremove++] = (char *)v;
    return 0;
  case O_SERVICE:
    a->service = v;
    return 0;
  case O_HOPS:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->hops);
  case O_MAX_HOPS:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->max_hops);
  case O_K:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->k);
  case O_NEAREST:
    return parse_long(cmd, opt, v, 1, (long)UINT32_MAX, &a->nearest);
  case O_CAP:
    return add_cap(cmd, a, v);
  case O_MIN_SCORE:
    a->have_min_score = true;
    return parse_double(cmd, opt, v, false, &a->min_score);
  case O_MAX_TOUCHED:
    return parse_u64(cmd, opt, v, &a->max_touched);
  case O_FROM_ID:
    a->have_from_id = true;
    return parse_u64(cmd, opt, v, &a->from_id);
  case O_TO_ID:
    a->have_to_id = true;
    return parse_u64(cmd, opt, v, &a->to_id);
  case O_LABEL:
    if (!*v)
      return usage_error(cmd, "--label: empty label");
    a->labels[a->nlabels++] = (char *)v;
    return 0;
  case O_ALPHA:
    return parse_double(cmd, opt, v, true, &a->alpha);
  case O_EPSILON:
    return parse_double(cmd, opt, v, true, &a->epsilon);
  case O_ALERT_MIN_RISK:
  case O_CLUSTER:
  case O_AFTER_SEQ:
  case O_FROM_NOW:
  case O_COUNT:
  case O_RECONNECT:
    return set_alerts_option(cmd, a, o, opt, v);
  case O_BRAND:
  case O_TITLE:
  case O_STATUS:
  case O_REOPEN:
  case O_ASSIGNEE:
  case O_CLEAR_ASSIGNEE:
  case O_NOTE:
  case O_ADD_CLUSTER:
  case O_REMOVE_CLUSTER:
  case O_REVISION:
  case O_COMMENT:
    return set_case_option(cmd, a, o, opt, v);
  case O_PUBKEY:
    a->pubkey = v;
    return 0;
  }
  return set_analytics_option(cmd, a, o, opt, v);
}

static const optspec *find_opt(const optspec *table, const char *name,
                               size_t len) {
  for (; table && table->name; table++)
    if (strlen(table->name) == len && strncmp(table->name, name, len) == 0)
      return table;
  return NULL;
}

/* Command table */

static int run_ingest(ctl *c, const command *cmd, args *a);
static int run_get(ctl *c, const command *cmd, args *a);
static int run_neighbors(ctl *c, const command *cmd, args *a);
static int run_label(ctl *c, const command *cmd, args *a);
static int run_delete(ctl *c, const command *cmd, args *a);
static int run_stats(ctl *c, const command *cmd, args *a);
static int run_health(ctl *c, const command *cmd, args *a);
static int run_linked(ctl *c, const command *cmd, args *a);
static int run_paths(ctl *c, const command *cmd, args *a);
static int run_suspects(ctl *c, const command *cmd, args *a);
static int run_help(ctl *c, const command *cmd, args *a);

static const optspec ingest_opts[] = {
    {"format", true, O_FORMAT},
    {"batch", true, O_BATCH},
    {"batch-bytes", true, O_BATCH_BYTES},
    {"no-progress", false, O_NO_PROGRESS},
    {"request-id-prefix", true, O_REQUEST_ID},
    {"bulk", false, O_BULK},
    {NULL, false, 0},
};
static const optspec id_opts[] = {{"id", true, O_ID}, {NULL, false, 0}};
static const optspec neighbors_opts[] = {
    {"id", true, O_ID},       {"type", true, O_TYPE},
    {"since", true, O_SINCE}, {"until", true, O_UNTIL},
    {"limit", true, O_LIMIT}, {"all", false, O_ALL},
    {"page-token", true, O_PAGE_TOKEN}, {NULL, false, 0},
};
static const optspec label_opts[] = {
    {"id", true, O_ID},
    {"add", true, O_ADD},
    {"remove", true, O_REMOVE},
    {NULL, false, 0},
};
static const optspec health_opts[] = {{"service", true, O_SERVICE},
                                      {NULL, false, 0}};
static const optspec linked_opts[] = {
    {"id", true, O_ID},
    {"hops", true, O_HOPS},
    {"via", true, O_VIA},
    {"since", true, O_SINCE},
    {"until", true, O_UNTIL},
    {"cap", true, O_CAP},
    {"limit", true, O_LIMIT},
    {"min-score", true, O_MIN_SCORE},
    {"max-touched", true, O_MAX_TOUCHED},
    {NULL, false, 0},
};
static const optspec paths_opts[] = {
    {"from-id", true, O_FROM_ID},
    {"to-id", true, O_TO_ID},
    {"k", true, O_K},
    {"max-hops", true, O_MAX_HOPS},
    {"since", true, O_SINCE},
    {"until", true, O_UNTIL},
    {"cap", true, O_CAP},
    {"max-touched", true, O_MAX_TOUCHED},
    {NULL, false, 0},
};
static const optspec suspects_opts[] = {
    {"label", true, O_LABEL},
    {"limit", true, O_LIMIT},
    {"alpha", true, O_ALPHA},
    {"epsilon", true, O_EPSILON},
    {"nearest", true, O_NEAREST},
    {"since", true, O_SINCE},
    {"until", true, O_UNTIL},
    {"cap", true, O_CAP},
    {"max-touched", true, O_MAX_TOUCHED},
    {NULL, false, 0},
};

static const command commands[] = {
    {"ingest", ingest_opts, run_ingest, false,
     "usage: graphctl ingest [--bulk] [--format csv|jsonl] [--batch N] FILE...\n"
     "\n"
     "Streams links and entities from the files, in order, through one Ingest\n"
     "rpc, in messages of up to N records (each message is committed\n"
     "atomically and durably by the server). FILE '-' is stdin.\n"
     "\n"
     "Formats (picked by extension .csv / .jsonl / .ndjson, else by the first\n"
     "line: '{' means JSON Lines, anything else a CSV header):\n"
     "  links CSV     a_type,a_key,b_type,b_key[,seen]\n"
     "  entities CSV  type,key[,labels][,seen][,ATTRIBUTE...]: labels are\n"
     "                ';'-separated, each further column is an attribute named\n"
     "                by its header (empty cells are left out)\n"
     "  JSON Lines    {\"a_type\":..,\"a_key\":..,\"b_type\":..,\"b_key\":..,\"seen\":..}\n"
     "                {\"type\":..,\"key\":..,\"labels\":[..],\"attributes\":{..},\"seen\":..}\n"
     "CSV may be quoted as in RFC 4180. seen is unix seconds or ISO-8601; empty\n"
     "or absent = the commit time. Blank lines are ignored.\n"
     "\n"
     "Options:\n"
     "  --format csv|jsonl         format of every FILE (needed for stdin only\n"
     "                             when the first line does not tell)\n"
     "  --batch N                  records per message (default 10000, max 100000)\n"
     "  --batch-bytes N            also end a message before it exceeds about N\n"
     "                             bytes (default 3145728)\n"
     "  --request-id-prefix P      give message i the request id P-i, so that\n"
     "                             re-running the same load (same files, same\n"
     "                             --batch) skips messages already committed\n"
     "  --bulk                     first load of an empty graph: one BulkLoad\n"
     "                             call, all or nothing, written by sorted appends\n"
     "                             once every file is sent (several times faster\n"
     "                             on large loads). The server refuses it\n"
     "                             (FAILED_PRECONDITION) when the graph holds\n"
     "                             anything; entity ids are then numbered in\n"
     "                             order of first appearance\n"
     "  --no-progress              no progress bar (drawn on stderr when it is\n"
     "                             a terminal)\n"
     "  --timeout MS               cancel when one message is not accepted, or\n"
     "                             a call's reply does not come, within MS\n"
     "                             (default for ingest: 120000; 0 = no limit)\n"
     "\n"
     "The records go out on one Ingest call for about 30 s at a time; then\n"
     "graphctl waits for that call's reply (so everything sent on it is\n"
     "committed) and goes on with a new call. With --bulk everything goes on\n"
     "one BulkLoad call (deadline: the server's longest, 1 h by default),\n"
     "and a failure anywhere commits nothing.\n"
     "\n"
     "At the end prints how many link and entity records went in, in how\n"
     "long, then links new and seen again (a repeated pair updates its\n"
     "times and count), entities new (a link's endpoints are created on\n"
     "demand, so these are mostly endpoints) and updated (--json: one object\n"
     "with these numbers).\n"
     "\n"
     "A bad record stops the load with file:line: field: reason and exit 65.\n"
     "Nothing from the message holding the bad record on is sent; the messages\n"
     "before it are committed, and graphctl says how many records that was and\n"
     "up to which line. A file that cannot be opened: exit 66, nothing sent.\n"},
    {"get", id_opts, run_get, false,
     "usage: graphctl get TYPE KEY\n"
     "       graphctl get --id N\n"
     "\n"
     "Shows one entity: id, type, key, degree (distinct neighbours), seller\n"
     "count, how the evidence rule weighs it (a shared entity: its weight per\n"
    "pair of sellers and corroboration, or why it is no evidence: a hub or\n"
    "context), first and last seen (ISO-8601 UTC), labels and attributes.\n"
     "For a seller, its cluster in the latest snapshot with that cluster's risk,\n"
     "and, when its ties changed after that snapshot was read, its provisional\n"
     "placement:\n"
     "  provisional  cluster 7 (risk 0.812, 41 sellers) since\n"
     "               2025-06-01T10:00:00Z, against snapshot 3; before: cluster 2\n"
     "(on one line; 'no cluster (on its own)' when it joins none).\n"
     "With --json: one object (times as unix seconds; a seller in a cluster\n"
     "also has \"cluster_risk\", and, when placed, \"provisional\":{\"snapshot_id\":..,\n"
     "\"cluster_id\":..,\"cluster_risk\":..,\"cluster_size\":..,\"gain\":..,\"tie\":..,\n"
     "\"placed_at_ms\":..,\"previous_cluster_id\":..}). NOT_FOUND: exit 1.\n"},
    {"neighbors", neighbors_opts, run_neighbors, false,
     "usage: graphctl neighbors TYPE KEY [OPTIONS]\n"
     "       graphctl neighbors --id N [OPTIONS]\n"
     "\n"
     "Lists the entity's direct links as a table: TYPE, KEY, ID, COUNT (link\n"
     "observations), FIRST SEEN, LAST SEEN (of the link), LABELS; ordered by\n"
     "type, then id.\n"
     "\n"
     "Options:\n"
     "  --type T          only neighbours of type T (repeat, or T1,T2)\n"
     "  --since T         only links last seen at or after T\n"
     "  --until T         only links first seen at or before T\n"
     "  --limit N         results per page (server default 100)\n"
     "  --all             follow the pages to the end\n"
     "  --page-token TOK  start at this page (printed when more results exist)\n"
     "\n"
     "With --json: {\"neighbors\":[{\"entity\":{..},\"link\":{..}},..]} plus\n"
     "\"next_page_token\" when there are more results and --all was not given.\n"},
    {"label", label_opts, run_label, true,
     "usage: graphctl label TYPE KEY [+LABEL...] [-LABEL...]\n"
     "       graphctl label TYPE KEY [--add LABEL...] [--remove LABEL...]\n"
     "       graphctl label --id N [+LABEL...] [-LABEL...]\n"
     "\n"
     "Adds the +LABELs and removes the -LABELs in one durable change, then\n"
     "prints the entity's labels, one per line (with --json: {\"labels\":[..]}).\n"
     "With no change given, just prints the labels. Removing an absent label\n"
     "is not an error. (-h is help; use --remove h for a label called h.)\n"},
    {"delete", id_opts, run_delete, false,
     "usage: graphctl delete TYPE KEY\n"
     "       graphctl delete --id N\n"
     "\n"
     "Deletes the entity with its labels and links (durable), and prints how\n"
     "many links were removed (--json: {\"deleted\":true,\"links_removed\":N}).\n"},
    {"stats", NULL, run_stats, false,
     "usage: graphctl stats\n"
     "\n"
     "Prints entity counts per type, links, labels, the LMDB data size and map\n"
     "size, commits since the server started, schema version and reader\n"
     "slots. With --json: one object with the raw numbers.\n"},
    {"health", health_opts, run_health, false,
     "usage: graphctl health [--service NAME]\n"
     "\n"
     "Calls grpc.health.v1.Health/Check and prints the status (SERVING,\n"
     "NOT_SERVING, ...). Exit 0 iff SERVING, 1 otherwise, 69 when the server\n"
     "cannot be reached.\n"},
    {"linked", linked_opts, run_linked, false,
     "usage: graphctl linked seller KEY [OPTIONS]\n"
     "       graphctl linked --id N [OPTIONS]\n"
     "\n"
     "Sellers linked to the seller through shared entities (LinkedSellers),\n"
     "strongest first, as a tree: one line per linked seller (SCORE, HOPS,\n"
     "seller key, labels), under it the steps of its best evidence path\n"
     "  via FROM → TO  tie T\n"
     "and under each step the entities the two sellers share, with how many\n"
     "sellers share each, its weight in the tie, and when the sharing began\n"
     "and was last seen (a direct seller-seller link shows as such). Then the\n"
     "hubs and crowds that were skipped (entities shared by more sellers\n"
     "than their type's cap, or by sellers who share little else) and a\n"
     "notice when the work bound cut the search short.\n"
     "\n"
     "HOPS counts the steps of the seller's *strongest* path, not the fewest:\n"
     "with --hops 2 a seller that shares a weak entity with the query seller\n"
     "directly can show 2 hops, when a path through another seller that\n"
     "shares strong evidence with both scores higher (its steps say which).\n"
     "--hops 1 lists every seller linked directly.\n"
     "\n"
     "A tie is the sum of the shared entities' evidence weights: an entity of\n"
     "n sellers weighs w(type) * (1/(n-1) + (1 - 1/(n-1)) * c), c (0..1)\n"
     "being how much of what its sellers share besides it ties them to\n"
     "each other (at most 0.2: a crowd, no evidence; graphctl get shows it);\n"
     "a path's score combines its ties like conductances in series.\n"
     "\n"
     "Options:\n"
     "  --hops N          seller-to-seller steps, 1..3 (server default 1)\n"
     "  --via T           follow only entities of type T (repeat, or T1,T2;\n"
     "                    seller = direct seller-seller links); default all\n"
     "  --since T         only links last seen at or after T\n"
     "  --until T         only links first seen at or before T\n"
     "  --cap TYPE=N      entities of TYPE shared by more than N sellers are\n"
     "                    hubs (repeat per type; server defaults: seller 1000,\n"
     "                    address 500, payment_account 200, device 200,\n"
     "                    phone, email, ip 100)\n"
     "  --limit N         at most N sellers (server default 100)\n"
     "  --min-score X     only sellers scoring at least X\n"
     "  --max-touched N   work bound: adjacency rows read (server default\n"
     "                    200000); when reached the result is partial\n"
     "\n"
     "With --json: {\"sellers\":[{\"seller\":{..},\"hops\":..,\"score\":..,\n"
     "\"evidence\":[{\"from_seller_id\":..,\"to_seller_id\":..,\"tie\":..,\n"
     "\"shared\":[{\"entity\":{..},\"first_seen\":..,\"last_seen\":..,\"weight\":..}]}]}],\n"
     "\"skipped_hubs\":[{\"entity\":{..},\"seller_count\":..,\"hub_cap\":..,\n"
     "\"reason\":\"over_cap\"|\"crowd\",\"corroboration\":..}],\n"
     "\"truncated\":..,\"touched\":..} (times as unix seconds).\n"
     "NOT_FOUND (no such seller), INVALID_ARGUMENT (not a seller, an option\n"
     "over the server's limit): exit 1.\n"},
    {"paths", paths_opts, run_paths, false,
     "usage: graphctl paths TYPE KEY TYPE KEY [OPTIONS]\n"
     "       graphctl paths --from-id N --to-id M [OPTIONS]\n"
     "\n"
     "Up to K shortest evidence paths between two entities (FindPaths),\n"
     "avoiding hubs, one line per path:\n"
     "  seller s1 —[2025-03-01..2025-05-02 ×3]— device d-1 —[..]— seller s2\n"
     "where each link shows its first and last observation day and, when it\n"
     "was observed more than once, the number of observations. --from-id\n"
     "replaces the first TYPE KEY, --to-id the second.\n"
     "\n"
     "Options:\n"
     "  --k N             paths wanted, 1..20 (server default 3)\n"
     "  --max-hops N      links per path, 1..8 (server default 4)\n"
     "  --since T         only links last seen at or after T\n"
     "  --until T         only links first seen at or before T\n"
     "  --cap TYPE=N      hub cap per type (see graphctl linked --help)\n"
     "  --max-touched N   work bound: adjacency rows read (server default\n"
     "                    200000)\n"
     "\n"
     "Prints \"no path within N links\" when there is none (exit 0).\n"
     "With --json: {\"paths\":[{\"entities\":[{..}],\"links\":[{\"first_seen\":..,\n"
     "\"last_seen\":..,\"count\":..}]}],\"skipped_hubs\":[..],\"truncated\":..,\n"
     "\"touched\":..}.\n"},
    {"suspects", suspects_opts, run_suspects, false,
     "usage: graphctl suspects [--label L]... [OPTIONS]\n"
     "\n"
     "Unlabelled sellers ranked by their closeness to the sellers carrying\n"
     "any of the labels L (RankSuspects: personalised PageRank from those\n"
     "seeds over the seller-entity graph, rare shared entities weighing\n"
     "more, hubs skipped). Prints a table RANK, SCORE, SELLER, LABELS and\n"
     "under each suspect its nearest labelled sellers, compactly:\n"
     "  ← s251 [counterfeit]  0.912, 1 hop: device d-1f2e (4 sellers), ...\n"
     "\n"
     "Options:\n"
     "  --label L         seed label (repeat; server default counterfeit)\n"
     "  --limit N         at most N suspects (server default 100)\n"
     "  --alpha X         restart probability, in (0, 1) (server default 0.15)\n"
     "  --epsilon X       push threshold, in (0, 0.01] (server default 1e-7)\n"
     "  --nearest N       nearest labelled sellers per suspect, 1..20 (server\n"
     "                    default 3)\n"
     "  --since T         only links last seen at or after T\n"
     "  --until T         only links first seen at or before T\n"
     "  --cap TYPE=N      hub cap per type (see graphctl linked --help)\n"
     "  --max-touched N   work bound: push operations (server default\n"
     "                    1000000); when reached the ranking is partial\n"
     "\n"
     "FAILED_PRECONDITION (no seller carries a seed label): exit 1.\n"
     "With --json: {\"suspects\":[{\"seller\":{..},\"score\":..,\n"
     "\"nearest_labelled\":[{as in linked --json}]}],\"seeds\":..,\n"
     "\"truncated\":..,\"touched\":..}.\n"},
    {"cluster", cluster_opts, run_cluster, false, cluster_help},
    {"job", job_opts, run_job, false, job_help},
    {"snapshots", snapshots_opts, run_snapshots, false, snapshots_help},
    {"clusters", clusters_opts, run_clusters, false, clusters_help},
    {"assignments", assignments_opts, run_assignments, false, assignments_help},
    {"diff", diff_opts, run_diff, false, diff_help},
    {"audit", audit_opts, run_audit, false, audit_help},
    {"backup", NULL, run_backup, false, backup_help},
    {"export", export_opts, run_export, false, export_help},
    {"import", import_opts, run_import, false, import_help},
    {"report", report_opts, run_report, false, report_help},
    {"alerts", alerts_opts, run_alerts, false, alerts_help},
    {"case", case_opts, run_case, false, case_help},
    {"verify-pack", verify_pack_opts, run_verify_pack, false, verify_pack_help},
    {"help", NULL, run_help, false,
     "usage: graphctl help [COMMAND]\n"},
};
static const size_t n_commands = sizeof commands / sizeof commands[0];


static const command *find_command(const char *name) {
  for (size_t i = 0; i < n_commands; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* Parses argv into a and *ret_cmd (NULL when no command was given).
 * Returns 0 or EXIT_USAGE (the message printed). */
static int parse_args(int argc, char **argv, args *a, const command **ret_cmd) {
  const command *cmd = NULL;
  bool dashdash = false;
  for (int i = 1; i < argc; i++) {
    char *s = argv[i];
    bool positional = dashdash || s[0] != '-' || s[1] == '\0';
    if (!positional && strcmp(s, "--") == 0) {
      dashdash = true;
      continue;
    }
    /* "-o FILE": the one short option with a value (commands that write
     * a file list it as "o"). */
    bool short_o = !positional && strcmp(s, "-o") == 0 && cmd && find_opt(cmd->opts, "o", 1);
    if (!positional && s[1] != '-' && !short_o) {
      if (strcmp(s, "-h") == 0) {
        a->help = true;
        continue;
      }
      if (cmd && cmd->dash_positionals)
        positional = true;
      else
        return usage_error(cmd, "unknown option '%s'", s);
    }
    if (positional) {
      if (!cmd) {
        cmd = find_command(s);
        if (!cmd)
          return usage_error(NULL, "unknown command '%s'", s);
      } else {
        a->pos[a->npos++] = s;
      }
      continue;
    }
    const char *name = short_o ? s + 1 : s + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const optspec *o = find_opt(global_opts, name, len);
    if (!o && cmd)
      o = find_opt(cmd->opts, name, len);
    if (!o) {
      if (!cmd)
        return usage_error(NULL,
                           "unknown option '%.*s' (command options go after "
                           "the command)",
                           (int)(len + 2), s);
      return usage_error(cmd, "unknown option '%.*s' for %s", (int)(len + 2), s,
                         cmd->name);
    }
    const char *v = NULL;
    if (o->has_arg) {
      if (eq)
        v = eq + 1;
      else if (i + 1 < argc)
        v = argv[++i];
      else
        return usage_error(cmd, "option --%s needs a value", o->name);
    } else if (eq) {
      return usage_error(cmd, "option --%s takes no value", o->name);
    }
    int rc = set_option(cmd, a, o, v);
    if (rc)
      return rc;
  }
  *ret_cmd = cmd;
  return 0;
}

/* The entity named on the command line: TYPE KEY positionals, or --id.
 * Sets *consumed to the number of positionals used. */
static int make_ref(const command *cmd, const args *a,
                    Graphd__V1__EntityRef *ref, int *consumed) {
  if (a->have_id) {
    ref->id = a->id;
    *consumed = 0;
    return 0;
  }
  if (a->npos < 2)
    return usage_error(cmd, "%s needs TYPE KEY or --id N", cmd->name);
  gd_etype t;
  if (gc_type_parse(a->pos[0], &t) != 0)
    return usage_error(cmd,
                       "unknown entity type '%s' (expected seller, address, "
                       "payment_account, device, phone, email or ip)",
                       a->pos[0]);
  ref->type = (Graphd__V1__EntityType)t;
  ref->key = a->pos[1];
  *consumed = 2;
  return 0;
}

int no_more_args(const command *cmd, const args *a, int used) {
  if (a->npos > used)
    return usage_error(cmd, "unexpected argument '%s'", a->pos[used]);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Entities                                                             */

json_object *labels_json(char **labels, size_t n) {
  json_object *arr = jarr();
  for (size_t i = 0; i < n; i++)
    json_object_array_add(arr, jstr(labels[i]));
  return arr;
}

json_object *entity_json(const Graphd__V1__Entity *e, bool attrs) {
  json_object *o = jobj();
  jset(o, "id", json_object_new_uint64(e->id));
  jset(o, "type", jstr(gd_type_name((int)e->type)));
  jset(o, "key", jstr(e->key));
  jset(o, "degree", json_object_new_uint64(e->degree));
  jset(o, "seller_count", json_object_new_uint64(e->seller_count));
  jset(o, "first_seen", json_object_new_int64(e->first_seen));
  jset(o, "last_seen", json_object_new_int64(e->last_seen));
  jset(o, "labels", labels_json(e->labels, e->n_labels));
  if (attrs) {
    json_object *a = jobj();
    for (size_t i = 0; i < e->n_attributes; i++)
      jset(a, e->attributes[i]->name, jstr(e->attributes[i]->value));
    jset(o, "attributes", a);
  }
  jset(o, "over_hub_cap", json_object_new_boolean(e->over_hub_cap));
  if (e->type != GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER) {
    jset(o, "evidence_weight", json_object_new_double(e->evidence_weight));
    jset(o, "corroboration", json_object_new_double(e->corroboration));
    jset(o, "evidence_context", json_object_new_boolean(e->evidence_context));
  }
  jset(o, "cluster_id", json_object_new_uint64(e->cluster_id));
  jset(o, "cluster_snapshot_id", json_object_new_uint64(e->cluster_snapshot_id));
  if (e->cluster_risk > 0) /* GetEntity's, for a seller in a cluster */
    jset(o, "cluster_risk", json_object_new_double(e->cluster_risk));
  if (e->provisional)
    jset(o, "provisional", placement_json(e->provisional));
  return o;
}

json_object *placement_json(const Graphd__V1__Placement *p) {
  json_object *o = jobj();
  jset(o, "snapshot_id", json_object_new_uint64(p->snapshot_id));
  jset(o, "cluster_id", json_object_new_uint64(p->cluster_id));
  jset(o, "cluster_risk", json_object_new_double(p->cluster_risk));
  jset(o, "cluster_size", json_object_new_uint64(p->cluster_size));
  jset(o, "gain", json_object_new_double(p->gain));
  jset(o, "tie", json_object_new_double(p->tie));
  jset(o, "placed_at_ms", json_object_new_int64(p->placed_at));
  jset(o, "previous_cluster_id", json_object_new_uint64(p->previous_cluster_id));
  return o;
}

/* "cluster 7 (risk 0.812, 41 sellers) since 2025-06-01T10:00:00Z, against
 * snapshot 3" (or "no cluster (on its own) since ..."). */
const char *placement_text(const Graphd__V1__Placement *p, char *buf, size_t size) {
  char t[40];
  time_t sec = (time_t)(p->placed_at / 1000);
  struct tm tm;
  if (p->placed_at > 0 && gmtime_r(&sec, &tm))
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
  else
    snprintf(t, sizeof t, "-");
  if (p->cluster_id)
    snprintf(buf, size,
             "cluster %" PRIu64 " (risk %.3f, %" PRIu64 " seller%s) since %s, against snapshot "
             "%" PRIu64,
             p->cluster_id, p->cluster_risk, p->cluster_size, p->cluster_size == 1 ? "" : "s", t,
             p->snapshot_id);
  else
    snprintf(buf, size, "no cluster (on its own) since %s, against snapshot %" PRIu64, t,
             p->snapshot_id);
  return buf;
}

void print_entity(const Graphd__V1__Entity *e) {
  char b1[8192], t[40];
  printf("%-12s %" PRIu64 "\n", "id", e->id);
  printf("%-12s %s\n", "type", gd_type_name((int)e->type));
  printf("%-12s %s\n", "key", safe(e->key, b1, sizeof b1));
  printf("%-12s %" PRIu64 "\n", "degree", e->degree);
  if (e->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
    printf("%-12s %" PRIu64 " (other sellers linked to it directly, not through a shared "
           "entity)\n",
           "direct links", e->seller_count);
  else
    printf("%-12s %" PRIu64 "%s\n", "sellers", e->seller_count,
           e->over_hub_cap ? " (sharing it; over the hub cap)" : " (sharing it)");
  /* How the evidence rule weighs a shared entity (GetEntity fills it). */
  if (e->type != GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER) {
    if (e->over_hub_cap)
      printf("%-12s none: a hub\n", "evidence");
    else if (e->evidence_context)
      printf("%-12s none: context, a crowd whose sellers share little else "
             "(corroboration %.3f)\n",
             "evidence", e->corroboration);
    else if (e->seller_count < 2)
      printf("%-12s none: one seller\n", "evidence");
    else
      printf("%-12s %.3f per pair of its sellers (corroboration %.3f)\n", "evidence",
             e->evidence_weight, e->corroboration);
  }
  printf("%-12s %s\n", "first seen", gc_time_format(e->first_seen, t, sizeof t));
  printf("%-12s %s\n", "last seen", gc_time_format(e->last_seen, t, sizeof t));
  printf("%-12s ", "labels");
  if (e->n_labels == 0)
    printf("-");
  for (size_t i = 0; i < e->n_labels; i++)
    printf("%s%s", i ? ", " : "", safe(e->labels[i], b1, sizeof b1));
  printf("\n");
  if (e->cluster_id && e->cluster_risk > 0)
    printf("%-12s %" PRIu64 " (snapshot %" PRIu64 ", risk %.3f)\n", "cluster", e->cluster_id,
           e->cluster_snapshot_id, e->cluster_risk);
  else if (e->cluster_id)
    printf("%-12s %" PRIu64 " (snapshot %" PRIu64 ")\n", "cluster",
           e->cluster_id, e->cluster_snapshot_id);
  if (e->provisional) {
    /* Placed since the snapshot was read: where it sits now. */
    char pb[256];
    printf("%-12s %s", "provisional", placement_text(e->provisional, pb, sizeof pb));
    if (e->provisional->previous_cluster_id)
      printf("; before: cluster %" PRIu64, e->provisional->previous_cluster_id);
    printf("\n");
  }
  printf("%-12s", "attributes");
  if (e->n_attributes == 0)
    printf(" -\n");
  size_t w = 0;
  for (size_t i = 0; i < e->n_attributes; i++) {
    size_t tw = text_width(e->attributes[i]->name);
    if (tw > w)
      w = tw;
  }
  if (w > 32)
    w = 32;
  for (size_t i = 0; i < e->n_attributes; i++) {
    printf(i ? "%-12s " : " ", "");
    print_padded(safe(e->attributes[i]->name, b1, sizeof b1), w, false, false);
    printf("  %s\n", safe(e->attributes[i]->value, b1, sizeof b1));
  }
}

static int run_get(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  int used = 0, rc;
  if ((rc = make_ref(cmd, a, &ref, &used)) || (rc = no_more_args(cmd, a, used)))
    return rc;
  Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  req.ref = &ref;
  Graphd__V1__GetEntityReply *rep = NULL;
  if ((rc = rpc(c, M_GET, &req.base, &graphd__v1__get_entity_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  if (!rep->entity) {
    fprintf(stderr, "graphctl: INTERNAL: the reply has no entity\n");
    rc = EXIT_RPC;
  } else if (c->json) {
    print_json(entity_json(rep->entity, true));
  } else {
    print_entity(rep->entity);
  }
  graphd__v1__get_entity_reply__free_unpacked(rep, NULL);
  return rc;
}

/* ------------------------------------------------------------------ */
/* neighbors                                                            */

enum { NCOL = 7 };

static void print_neighbor_table(Graphd__V1__NeighborsReply **pages,
                                 size_t npages) {
  static const char *const head[NCOL] = {"TYPE",       "KEY",       "ID",
                                         "COUNT",      "FIRST SEEN", "LAST SEEN",
                                         "LABELS"};
  static const bool right[NCOL] = {false, false, true, true, false, false, false};
  size_t w[NCOL];
  for (int k = 0; k < NCOL; k++)
    w[k] = strlen(head[k]);
  char cell[NCOL][4200];
  /* Two passes: widths, then output. */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      if (w[1] > 48)
        w[1] = 48;
      for (int k = 0; k < NCOL; k++) {
        print_padded(head[k], w[k], right[k], k == NCOL - 1);
        fputs(k == NCOL - 1 ? "\n" : "  ", stdout);
      }
    }
    for (size_t p = 0; p < npages; p++) {
      for (size_t i = 0; i < pages[p]->n_neighbors; i++) {
        const Graphd__V1__Neighbor *nb = pages[p]->neighbors[i];
        const Graphd__V1__Entity *e = nb->entity;
        const Graphd__V1__Link *l = nb->link;
        if (!e)
          continue;
        snprintf(cell[0], sizeof cell[0], "%s", gd_type_name((int)e->type));
        safe(e->key, cell[1], sizeof cell[1]);
        snprintf(cell[2], sizeof cell[2], "%" PRIu64, e->id);
        snprintf(cell[3], sizeof cell[3], "%" PRIu64, l ? l->count : 0);
        gc_time_format(l ? l->first_seen : 0, cell[4], sizeof cell[4]);
        gc_time_format(l ? l->last_seen : 0, cell[5], sizeof cell[5]);
        size_t o = 0;
        snprintf(cell[6], sizeof cell[6], "%s", e->n_labels ? "" : "-");
        for (size_t j = 0; j < e->n_labels && o + 2 < sizeof cell[6]; j++) {
          char lb[600];
          o += (size_t)snprintf(cell[6] + o, sizeof cell[6] - o, "%s%s",
                                j ? "," : "", safe(e->labels[j], lb, sizeof lb));
          if (o >= sizeof cell[6])
            o = sizeof cell[6] - 1;
        }
        for (int k = 0; k < NCOL; k++) {
          if (pass == 0) {
            size_t tw = text_width(cell[k]);
            if (tw > w[k])
              w[k] = tw;
          } else {
            print_padded(cell[k], w[k], right[k], k == NCOL - 1);
            fputs(k == NCOL - 1 ? "\n" : "  ", stdout);
          }
        }
      }
    }
  }
}

static json_object *neighbor_json(const Graphd__V1__Neighbor *nb) {
  json_object *o = jobj();
  if (nb->entity)
    jset(o, "entity", entity_json(nb->entity, false));
  json_object *l = jobj();
  jset(l, "count", json_object_new_uint64(nb->link ? nb->link->count : 0));
  jset(l, "first_seen", json_object_new_int64(nb->link ? nb->link->first_seen : 0));
  jset(l, "last_seen", json_object_new_int64(nb->link ? nb->link->last_seen : 0));
  jset(o, "link", l);
  return o;
}

static int run_neighbors(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  int used = 0, rc;
  if ((rc = make_ref(cmd, a, &ref, &used)) || (rc = no_more_args(cmd, a, used)))
    return rc;
  if (a->have_since && a->have_until && a->since > a->until)
    return usage_error(cmd, "--since is after --until");

  Graphd__V1__NeighborsRequest req = GRAPHD__V1__NEIGHBORS_REQUEST__INIT;
  Graphd__V1__TimeWindow win = GRAPHD__V1__TIME_WINDOW__INIT;
  req.ref = &ref;
  req.n_types = a->ntypes;
  req.types = a->types;
  if (a->have_since || a->have_until) {
    win.since = a->have_since ? a->since : 0;
    win.until = a->have_until ? a->until : 0;
    req.window = &win;
  }
  req.limit = (uint32_t)a->limit;
  char *token = xstrdup(a->page_token ? a->page_token : "");

  Graphd__V1__NeighborsReply **pages = NULL;
  size_t npages = 0;
  json_object *list = c->json ? jarr() : NULL;
  char *next = NULL;
  for (;;) {
    req.page_token = token;
    Graphd__V1__NeighborsReply *rep = NULL;
    if ((rc = rpc(c, M_NEIGHBORS, &req.base,
                  &graphd__v1__neighbors_reply__descriptor,
                  (ProtobufCMessage **)&rep)))
      break;
    free(next);
    next = xstrdup(rep->next_page_token);
    if (c->json) {
      for (size_t i = 0; i < rep->n_neighbors; i++)
        json_object_array_add(list, neighbor_json(rep->neighbors[i]));
      graphd__v1__neighbors_reply__free_unpacked(rep, NULL);
    } else {
      Graphd__V1__NeighborsReply **np =
          realloc(pages, (npages + 1) * sizeof *pages);
      if (!np)
        die_nomem();
      pages = np;
      pages[npages++] = rep;
    }
    if (!a->all || !next[0])
      break;
    if (strcmp(next, token) == 0) {
      fprintf(stderr, "graphctl: the server returned the same page token "
                      "twice; stopping\n");
      rc = EXIT_RPC;
      break;
    }
    free(token);
    token = xstrdup(next);
  }
  if (rc == EXIT_OK) {
    if (c->json) {
      json_object *o = jobj();
      jset(o, "neighbors", list);
      list = NULL;
      if (next && next[0])
        jset(o, "next_page_token", jstr(next));
      print_json(o);
    } else {
      print_neighbor_table(pages, npages);
      if (next && next[0])
        fprintf(stderr,
                "graphctl: more results: repeat with --page-token %s, or use "
                "--all\n",
                next);
    }
  }
  if (list)
    json_object_put(list);
  for (size_t i = 0; i < npages; i++)
    graphd__v1__neighbors_reply__free_unpacked(pages[i], NULL);
  free(pages);
  free(token);
  free(next);
  return rc;
}

/* ------------------------------------------------------------------ */
/* label, delete                                                        */

static void print_labels(const ctl *c, char **labels, size_t n) {
  if (c->json) {
    json_object *o = jobj();
    jset(o, "labels", labels_json(labels, n));
    print_json(o);
    return;
  }
  char b[600];
  if (n == 0)
    printf("(no labels)\n");
  for (size_t i = 0; i < n; i++)
    printf("%s\n", safe(labels[i], b, sizeof b));
}

static int run_label(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  int used = 0, rc;
  if ((rc = make_ref(cmd, a, &ref, &used)))
    return rc;
  for (int i = used; i < a->npos; i++) {
    char *s = a->pos[i];
    if ((s[0] != '+' && s[0] != '-') || s[1] == '\0')
      return usage_error(cmd,
                         "'%s': a label change is +LABEL or -LABEL (or use "
                         "--add/--remove)",
                         s);
    if (s[0] == '+')
      a->add[a->nadd++] = s + 1;
    else
      a->remove[a->nremove++] = s + 1;
  }
  if (a->nadd == 0 && a->nremove == 0) {
    /* Nothing to change: show the labels. */
    Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
    req.ref = &ref;
    Graphd__V1__GetEntityReply *rep = NULL;
    if ((rc = rpc(c, M_GET, &req.base, &graphd__v1__get_entity_reply__descriptor,
                  (ProtobufCMessage **)&rep)))
      return rc;
    if (rep->entity)
      print_labels(c, rep->entity->labels, rep->entity->n_labels);
    else
      print_labels(c, NULL, 0);
    graphd__v1__get_entity_reply__free_unpacked(rep, NULL);
    return EXIT_OK;
  }
  Graphd__V1__SetLabelsRequest req = GRAPHD__V1__SET_LABELS_REQUEST__INIT;
  req.ref = &ref;
  req.n_add = a->nadd;
  req.add = a->add;
  req.n_remove = a->nremove;
  req.remove = a->remove;
  Graphd__V1__SetLabelsReply *rep = NULL;
  if ((rc = rpc(c, M_SET_LABELS, &req.base,
                &graphd__v1__set_labels_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  print_labels(c, rep->labels, rep->n_labels);
  graphd__v1__set_labels_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

static int run_delete(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  int used = 0, rc;
  if ((rc = make_ref(cmd, a, &ref, &used)) || (rc = no_more_args(cmd, a, used)))
    return rc;
  Graphd__V1__DeleteEntityRequest req = GRAPHD__V1__DELETE_ENTITY_REQUEST__INIT;
  req.ref = &ref;
  Graphd__V1__DeleteEntityReply *rep = NULL;
  if ((rc = rpc(c, M_DELETE, &req.base,
                &graphd__v1__delete_entity_reply__descriptor,
                (ProtobufCMessage **)&rep)))
    return rc;
  if (c->json) {
    json_object *o = jobj();
    jset(o, "deleted", json_object_new_boolean(1));
    jset(o, "links_removed", json_object_new_uint64(rep->links_removed));
    print_json(o);
  } else {
    char b[8192];
    if (ref.id)
      printf("deleted entity %" PRIu64, ref.id);
    else
      printf("deleted %s %s", gd_type_name((int)ref.type),
             safe(ref.key, b, sizeof b));
    printf(" (%" PRIu64 " link%s removed)\n", rep->links_removed,
           rep->links_removed == 1 ? "" : "s");
  }
  graphd__v1__delete_entity_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* stats, health                                                        */

static int run_stats(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  Graphd__V1__StatsRequest req = GRAPHD__V1__STATS_REQUEST__INIT;
  Graphd__V1__StatsReply *r = NULL;
  if ((rc = rpc(c, M_STATS, &req.base, &graphd__v1__stats_reply__descriptor,
                (ProtobufCMessage **)&r)))
    return rc;
  if (c->json) {
    json_object *o = jobj(), *ents = jobj();
    for (size_t i = 0; i < r->n_entities; i++)
      jset(ents, gd_type_name((int)r->entities[i]->type),
           json_object_new_uint64(r->entities[i]->count));
    jset(o, "entities", ents);
    jset(o, "entities_total", json_object_new_uint64(r->entities_total));
    jset(o, "links", json_object_new_uint64(r->links));
    jset(o, "labels", json_object_new_uint64(r->labels));
    jset(o, "lmdb_size_bytes", json_object_new_uint64(r->lmdb_size_bytes));
    jset(o, "map_size_bytes", json_object_new_uint64(r->map_size_bytes));
    jset(o, "schema_version", json_object_new_uint64(r->schema_version));
    jset(o, "commits", json_object_new_uint64(r->commits));
    jset(o, "committed_requests", json_object_new_uint64(r->committed_requests));
    jset(o, "readers_used", json_object_new_uint64(r->readers_used));
    jset(o, "readers_max", json_object_new_uint64(r->readers_max));
    json_object *rf = jobj();
    for (size_t i = 0; i < r->n_refused; i++)
      jset(rf, r->refused[i]->limit, json_object_new_uint64(r->refused[i]->count));
    jset(o, "refused", rf);
    print_json(o);
  } else {
    char b1[32], b2[32];
    printf("%-16s %14s\n", "TYPE", "ENTITIES");
    for (size_t i = 0; i < r->n_entities; i++)
      printf("%-16s %14" PRIu64 "\n",
             gd_type_name((int)r->entities[i]->type),
             r->entities[i]->count);
    printf("%-16s %14" PRIu64 "\n", "total", r->entities_total);
    printf("\n");
    printf("%-16s %14" PRIu64 "\n", "links", r->links);
    printf("%-16s %14" PRIu64 "\n", "labels", r->labels);
    printf("%-16s %14s  (%" PRIu64 " bytes)\n", "lmdb size",
           human_bytes(r->lmdb_size_bytes, b1, sizeof b1), r->lmdb_size_bytes);
    printf("%-16s %14s  (%" PRIu64 " bytes)\n", "map size",
           human_bytes(r->map_size_bytes, b2, sizeof b2), r->map_size_bytes);
    printf("%-16s %14" PRIu64 "  (%" PRIu64 " requests)\n", "commits",
           r->commits, r->committed_requests);
    printf("%-16s %14" PRIu32 "\n", "schema version", r->schema_version);
    snprintf(b1, sizeof b1, "%" PRIu32 "/%" PRIu32, r->readers_used,
             r->readers_max);
    printf("%-16s %14s\n", "readers", b1);
    for (size_t i = 0; i < r->n_refused; i++)
      if (r->refused[i]->count)
        printf("refused %-8s %14" PRIu64 "\n", r->refused[i]->limit, r->refused[i]->count);
  }
  graphd__v1__stats_reply__free_unpacked(r, NULL);
  return EXIT_OK;
}

static int run_health(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)(a->service ? a->service : "");
  Grpc__Health__V1__HealthCheckResponse *r = NULL;
  if ((rc = rpc(c, M_HEALTH, &req.base,
                &grpc__health__v1__health_check_response__descriptor,
                (ProtobufCMessage **)&r)))
    return rc;
  const char *name;
  switch (r->status) {
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
    name = "SERVING";
    break;
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
    name = "NOT_SERVING";
    break;
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
    name = "SERVICE_UNKNOWN";
    break;
  default:
    name = "UNKNOWN";
    break;
  }
  bool serving =
      r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  if (c->json) {
    json_object *o = jobj();
    jset(o, "status", jstr(name));
    print_json(o);
  } else {
    printf("%s\n", name);
  }
  grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  return serving ? EXIT_OK : EXIT_RPC;
}

/* ------------------------------------------------------------------ */
/* ingest                                                               */

/* Every message, pointer array entry and string of one UpsertRequest lives
 * in one arena (core/arena.h), reset per batch. */
static void *arena_alloc(gd_arena **a, size_t n) {
  void *p = gd_arena_alloc(a, n);
  if (!p)
    die_nomem();
  return p;
}

static char *arena_strdup(gd_arena **a, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = arena_alloc(a, n);
  memcpy(p, s, n);
  return p;
}

/* Ingest sends for at most this long on one Ingest call, then finishes it
 * (its reply confirms what was committed) and goes on with a new call: the
 * server bounds every call by a deadline (60 s by default when the client
 * sends none, at most 1 h), and a load may take longer than that. */
#define INGEST_ROTATE_S 30.0
/* Deadline sent with each Ingest call: generous, since a call lasts about
 * INGEST_ROTATE_S plus the commit of what was sent. */
#define INGEST_CALL_DEADLINE_MS (10 * 60 * 1000)
/* --bulk: one call for the whole load (the server clamps it to its
 * --max-deadline-ms). */
#define BULK_CALL_DEADLINE_MS (24 * 3600 * 1000)
/* Default longest wait for one message to be accepted, or for a call's
 * reply (unless --timeout is given). Not the 10 s of other commands: gRPC's
 * flow-control windows can hold several MB, so the client may run that far
 * ahead of the server's commits and then wait until the server catches up
 * (with tiny messages, seen: 6 MB = 99000 messages, 20 s). */
#define INGEST_STEP_TIMEOUT_MS (120 * 1000)

typedef struct ingest {
  ctl *c;
  args *a;
  gc_stream *stream; /* the current Ingest call, NULL between calls */
  gc_status st;      /* why the load failed on the server's side */

  /* The batch being filled. */
  gd_arena *mem;
  Graphd__V1__LinkInput **links;
  Graphd__V1__EntityInput **ents;
  size_t nlinks, nents, cap;
  size_t bytes; /* estimated packed size */
  const char *b_file;
  unsigned long b_line; /* of the batch's last record */

  /* Sent on the current call. */
  uint64_t s_msgs, s_links, s_ents;
  double s_t0;
  /* Committed: confirmed by the replies of finished calls. */
  uint64_t c_msgs, c_links, c_ents, c_dups;
  uint64_t ent_created, ent_updated, link_created, link_updated;
  /* The last record sent. */
  char last_file[512];
  unsigned long last_line;

  /* Progress. */
  const char *file; /* being read */
  bool progress;
  uint64_t bytes_read, bytes_total;
  bool total_known;
  uint64_t records;
  double t0, last_draw;
} ingest;

static size_t varint_size(size_t n) {
  size_t s = 1;
  while (n >= 0x80) {
    n >>= 7;
    s++;
  }
  return s;
}

static void progress_draw(ingest *g, bool force) {
  if (!g->progress)
    return;
  double t = now_s();
  if (!force && t - g->last_draw < 0.2)
    return;
  g->last_draw = t;
  double el = t - g->t0 > 1e-6 ? t - g->t0 : 1e-6;
  char b1[32], b2[32], b3[32];
  human_bytes(g->bytes_read, b1, sizeof b1);
  human_bytes((uint64_t)((double)g->bytes_read / el), b3, sizeof b3);
  if (g->total_known && g->bytes_total > 0) {
    int pct = (int)(g->bytes_read * 100 / g->bytes_total);
    if (pct > 100)
      pct = 100;
    char bar[26];
    int fill = pct / 4;
    for (int i = 0; i < 25; i++)
      bar[i] = i < fill ? '#' : (i == fill ? '>' : '.');
    bar[25] = '\0';
    human_bytes(g->bytes_total, b2, sizeof b2);
    fprintf(stderr, "\r[%s] %3d%%  %s / %s  %s/s  %" PRIu64 " records\033[K",
            bar, pct, b1, b2, b3, g->records);
  } else {
    fprintf(stderr, "\r%s  %s/s  %" PRIu64 " records\033[K", b1, b3,
            g->records);
  }
}

static void progress_clear(ingest *g) {
  if (g->progress)
    fprintf(stderr, "\r\033[K");
}

static void batch_reset(ingest *g) {
  gd_arena_reset(&g->mem);
  g->nlinks = g->nents = 0;
  g->bytes = 0;
}

static int call_open(ingest *g) {
  gc_stream_opts so = {0};
  so.deadline_ms = g->a->bulk ? BULK_CALL_DEADLINE_MS : INGEST_CALL_DEADLINE_MS;
  so.step_timeout_ms =
      g->a->timeout_set ? (int)g->a->timeout_ms : INGEST_STEP_TIMEOUT_MS;
  if (gc_stream_open(g->c->client, g->a->bulk ? M_BULK : M_INGEST, &so, &g->stream, &g->st) !=
      0)
    return -1;
  g->s_msgs = g->s_links = g->s_ents = 0;
  g->s_t0 = now_s();
  return 0;
}

/* Half-closes the current call and waits for its reply: everything sent
 * on it is then committed. Returns 0, or -1 with g->st set (the stream is
 * kept for gc_stream_free). */
static int call_finish(ingest *g) {
  if (!g->stream)
    return 0;
  Graphd__V1__IngestReply *rep = NULL;
  if (gc_stream_finish(g->stream, &graphd__v1__ingest_reply__descriptor,
                       (ProtobufCMessage **)&rep, &g->st) != 0)
    return -1;
  if (rep->messages != g->s_msgs)
    fprintf(stderr,
            "graphctl: warning: %" PRIu64 " messages sent but the server "
            "reports %" PRIu64 " committed\n",
            g->s_msgs, rep->messages);
  g->c_msgs += rep->messages;
  g->c_dups += rep->duplicates;
  g->c_links += g->s_links;
  g->c_ents += g->s_ents;
  if (rep->totals) {
    g->ent_created += rep->totals->entities_created;
    g->ent_updated += rep->totals->entities_updated;
    g->link_created += rep->totals->links_created;
    g->link_updated += rep->totals->links_updated;
  }
  graphd__v1__ingest_reply__free_unpacked(rep, NULL);
  gc_stream_free(g->stream);
  g->stream = NULL;
  g->s_msgs = g->s_links = g->s_ents = 0;
  return 0;
}

/* Sends the batch as one UpsertRequest. Returns 0, or -1 when the load
 * failed on the server's side (g->st says why). */
static int flush_batch(ingest *g) {
  if (g->nlinks == 0 && g->nents == 0)
    return 0;
  if (g->stream && !g->a->bulk && now_s() - g->s_t0 >= INGEST_ROTATE_S && call_finish(g))
    return -1;
  if (!g->stream && call_open(g))
    return -1;
  Graphd__V1__UpsertRequest req = GRAPHD__V1__UPSERT_REQUEST__INIT;
  char rid[160];
  if (g->a->request_id_prefix) {
    snprintf(rid, sizeof rid, "%s-%" PRIu64, g->a->request_id_prefix,
             g->c_msgs + g->s_msgs + 1);
    req.request_id = rid;
  }
  req.n_links = g->nlinks;
  req.links = g->links;
  req.n_entities = g->nents;
  req.entities = g->ents;
  if (gc_stream_send(g->stream, &req.base, &g->st) != 0)
    return -1;
  g->s_msgs++;
  g->s_links += g->nlinks;
  g->s_ents += g->nents;
  snprintf(g->last_file, sizeof g->last_file, "%s", g->b_file);
  g->last_line = g->b_line;
  batch_reset(g);
  return 0;
}

static void grow_batch(ingest *g) {
  if (g->nlinks < g->cap && g->nents < g->cap)
    return;
  size_t cap = g->cap ? g->cap * 2 : 1024;
  Graphd__V1__LinkInput **nl = realloc(g->links, cap * sizeof *nl);
  if (nl)
    g->links = nl;
  Graphd__V1__EntityInput **ne = realloc(g->ents, cap * sizeof *ne);
  if (ne)
    g->ents = ne;
  if (!nl || !ne)
    die_nomem();
  g->cap = cap;
}

static Graphd__V1__EntityRef *new_ref(gd_arena **m, gd_etype t,
                                      const char *key) {
  Graphd__V1__EntityRef *r = arena_alloc(m, sizeof *r);
  *r = (Graphd__V1__EntityRef)GRAPHD__V1__ENTITY_REF__INIT;
  r->type = (Graphd__V1__EntityType)t;
  r->key = arena_strdup(m, key);
  return r;
}

/* Parser callback: adds the record to the batch, sends full batches.
 * Returns non-zero (stopping the parser) when sending failed. */
static int on_record(void *ud, const gc_ingest_record *rec) {
  ingest *g = ud;
  grow_batch(g);
  size_t sz;
  if (rec->kind == GC_INGEST_LINK) {
    Graphd__V1__LinkInput *l = arena_alloc(&g->mem, sizeof *l);
    *l = (Graphd__V1__LinkInput)GRAPHD__V1__LINK_INPUT__INIT;
    l->a = new_ref(&g->mem, rec->link.a_type, rec->link.a_key);
    l->b = new_ref(&g->mem, rec->link.b_type, rec->link.b_key);
    l->seen = rec->link.seen;
    g->links[g->nlinks++] = l;
    sz = protobuf_c_message_get_packed_size(&l->base);
  } else {
    Graphd__V1__EntityInput *e = arena_alloc(&g->mem, sizeof *e);
    *e = (Graphd__V1__EntityInput)GRAPHD__V1__ENTITY_INPUT__INIT;
    e->type = (Graphd__V1__EntityType)rec->entity.type;
    e->key = arena_strdup(&g->mem, rec->entity.key);
    e->seen = rec->entity.seen;
    if (rec->entity.n_labels) {
      e->labels = arena_alloc(&g->mem, rec->entity.n_labels * sizeof(char *));
      for (size_t i = 0; i < rec->entity.n_labels; i++)
        e->labels[i] = arena_strdup(&g->mem, rec->entity.labels[i]);
      e->n_labels = rec->entity.n_labels;
    }
    if (rec->entity.n_attrs) {
      e->attributes = arena_alloc(
          &g->mem, rec->entity.n_attrs * sizeof(Graphd__V1__Attribute *));
      for (size_t i = 0; i < rec->entity.n_attrs; i++) {
        Graphd__V1__Attribute *at = arena_alloc(&g->mem, sizeof *at);
        *at = (Graphd__V1__Attribute)GRAPHD__V1__ATTRIBUTE__INIT;
        at->name = arena_strdup(&g->mem, rec->entity.attrs[i].name);
        at->value = arena_strdup(&g->mem, rec->entity.attrs[i].value);
        e->attributes[i] = at;
      }
      e->n_attributes = rec->entity.n_attrs;
    }
    g->ents[g->nents++] = e;
    sz = protobuf_c_message_get_packed_size(&e->base);
  }
  g->bytes += 1 + varint_size(sz) + sz;
  g->b_file = g->file;
  g->b_line = rec->line;
  g->records++;
  if (g->nlinks + g->nents >= (size_t)g->a->batch ||
      g->bytes >= (size_t)g->a->batch_bytes)
    return flush_batch(g) != 0;
  return 0;
}

/* After a failure on our side (bad input, read error): the batch being
 * filled is dropped, the current call is finished so that what was sent
 * is committed, and graphctl says how much that was (stderr; also stdout
 * as one object with --json). */
static void ingest_abort_report(ingest *g, const char *why) {
  progress_clear(g);
  if (g->a->bulk) {
    /* Half-closing would load what was sent: cancel, nothing is written. */
    gc_stream_free(g->stream);
    g->stream = NULL;
    fprintf(stderr, "graphctl: nothing was loaded (a bulk load is all or nothing)\n");
    if (g->c->json) {
      json_object *o = jobj();
      jset(o, "error", jstr(why));
      jset(o, "committed_known", json_object_new_boolean(true));
      jset(o, "committed_messages", json_object_new_uint64(0));
      print_json(o);
    }
    return;
  }
  bool known = call_finish(g) == 0;
  if (!known)
    fprintf(stderr,
            "graphctl: ending the load failed: %s: %s\n"
            "graphctl: committed for sure: %" PRIu64 " links, %" PRIu64
            " entities (%" PRIu64 " messages). Sent on the failed call: %" PRIu64
            " more messages (%" PRIu64 " links, %" PRIu64 " entities), of "
            "which the server committed those before the one that failed\n",
            gc_status_code_name(g->st.code), g->st.message, g->c_links,
            g->c_ents, g->c_msgs, g->s_msgs, g->s_links, g->s_ents);
  else if (g->c_msgs == 0)
    fprintf(stderr, "graphctl: nothing was committed\n");
  else
    fprintf(stderr,
            "graphctl: committed %" PRIu64 " links and %" PRIu64
            " entities (%" PRIu64 " messages), up to %s:%lu; nothing after "
            "that was sent\n",
            g->c_links, g->c_ents, g->c_msgs, g->last_file, g->last_line);
  if (g->c->json) {
    json_object *o = jobj();
    jset(o, "error", jstr(why));
    jset(o, "committed_known", json_object_new_boolean(known));
    jset(o, "committed_messages", json_object_new_uint64(g->c_msgs));
    jset(o, "committed_links", json_object_new_uint64(g->c_links));
    jset(o, "committed_entities", json_object_new_uint64(g->c_ents));
    if (known && g->c_msgs) {
      char where[600];
      snprintf(where, sizeof where, "%s:%lu", g->last_file, g->last_line);
      jset(o, "committed_through", jstr(where));
    }
    print_json(o);
  }
}

/* After the server ended the load with an error status. */
static int ingest_stream_failed(ingest *g) {
  progress_clear(g);
  int rc = report_status(g->c, &g->st);
  if (g->a->bulk)
    fprintf(stderr, "graphctl: nothing was loaded (a bulk load is all or nothing)\n");
  else if (g->c_msgs > 0 || g->s_msgs > 0)
    fprintf(stderr,
            "graphctl: the load stopped. Committed for sure: %" PRIu64
            " links, %" PRIu64 " entities (%" PRIu64 " messages). Sent on the "
            "failed call: %" PRIu64 " more messages (%" PRIu64 " links, %" PRIu64
            " entities), of which the server committed those before the one "
            "that failed (its message above may say how many)\n",
            g->c_links, g->c_ents, g->c_msgs, g->s_msgs, g->s_links, g->s_ents);
  return rc;
}

typedef struct input {
  const char *path; /* as given; "-" = stdin */
  const char *name; /* for messages */
  int fd;
} input;

/* Opens every input first, so that a missing file fails before anything
 * is sent. Returns EXIT_OK or EXIT_NOINPUT (message printed). */
static int open_inputs(ingest *g, input *in, int n) {
  g->total_known = true;
  for (int i = 0; i < n; i++)
    in[i].fd = -1;
  for (int i = 0; i < n; i++) {
    bool is_stdin = strcmp(in[i].path, "-") == 0;
    in[i].name = is_stdin ? "<stdin>" : in[i].path;
    in[i].fd = is_stdin ? STDIN_FILENO : open(in[i].path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (in[i].fd < 0 || fstat(in[i].fd, &sb) != 0) {
      fprintf(stderr, "graphctl: %s: %s\n", in[i].path, strerror(errno));
      return EXIT_NOINPUT;
    }
    if (S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "graphctl: %s: is a directory\n", in[i].path);
      return EXIT_NOINPUT;
    }
    if (S_ISREG(sb.st_mode))
      g->bytes_total += (uint64_t)sb.st_size;
    else
      g->total_known = false;
  }
  return EXIT_OK;
}

/* Parses one input into batches. Returns EXIT_OK or the exit code of the
 * failure (reported). */
static int ingest_file(ingest *g, const input *in, char *buf, size_t bufsize) {
  const args *a = g->a;
  gc_ingest_format fmt =
      a->have_format ? a->format : gc_ingest_format_for_path(in->path);
  gc_ingest_parser *p = gc_ingest_parser_new(in->name, fmt, on_record, g);
  if (!p)
    die_nomem();
  g->file = in->name;
  int rc = EXIT_OK, prc = GC_INGEST_OK;
  for (;;) {
    ssize_t n = read(in->fd, buf, bufsize);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      char why[700];
      snprintf(why, sizeof why, "%s: read error: %s", in->name,
               strerror(errno));
      progress_clear(g);
      fprintf(stderr, "graphctl: %s\n", why);
      ingest_abort_report(g, why);
      rc = EXIT_NOINPUT;
      break;
    }
    prc = n == 0 ? gc_ingest_parser_finish(p)
                 : gc_ingest_parser_feed(p, buf, (size_t)n);
    g->bytes_read += (uint64_t)n;
    progress_draw(g, false);
    if (prc != GC_INGEST_OK || n == 0)
      break;
  }
  if (rc == EXIT_OK && prc == GC_INGEST_EDATA) {
    progress_clear(g);
    fprintf(stderr, "graphctl: %s\n", gc_ingest_parser_error(p));
    ingest_abort_report(g, gc_ingest_parser_error(p));
    rc = EXIT_DATAERR;
  } else if (rc == EXIT_OK && prc == GC_INGEST_ENOMEM) {
    die_nomem();
  } else if (rc == EXIT_OK && prc == GC_INGEST_ESTOPPED) {
    rc = ingest_stream_failed(g); /* sending failed */
  }
  gc_ingest_parser_free(p);
  return rc;
}

static void ingest_summary(ingest *g) {
  double el = now_s() - g->t0;
  double lps = el > 0 ? (double)g->c_links / el : 0;
  if (g->c->json) {
    json_object *o = jobj();
    jset(o, "links", json_object_new_uint64(g->c_links));
    jset(o, "entities", json_object_new_uint64(g->c_ents));
    jset(o, "messages", json_object_new_uint64(g->c_msgs));
    jset(o, "duplicates", json_object_new_uint64(g->c_dups));
    jset(o, "seconds", json_object_new_double(el));
    jset(o, "links_per_second", json_object_new_double(lps));
    jset(o, "entities_created", json_object_new_uint64(g->ent_created));
    jset(o, "entities_updated", json_object_new_uint64(g->ent_updated));
    jset(o, "links_created", json_object_new_uint64(g->link_created));
    jset(o, "links_updated", json_object_new_uint64(g->link_updated));
    print_json(o);
    return;
  }
  printf("ingested %" PRIu64 " link records and %" PRIu64 " entity records in %.2f s "
         "(%.0f links/s)\n"
         "  links: %" PRIu64 " new, %" PRIu64 " seen again\n"
         "  entities: %" PRIu64 " new (the links' endpoints are created on demand), %" PRIu64
         " updated\n",
         g->c_links, g->c_ents, el, lps, g->link_created, g->link_updated, g->ent_created,
         g->ent_updated);
  if (g->c_dups)
    printf("(%" PRIu64 " of %" PRIu64 " messages had a request id that was "
           "already committed and were skipped)\n",
           g->c_dups, g->c_msgs);
}

static int run_ingest(ctl *c, const command *cmd, args *a) {
  if (a->npos == 0)
    return usage_error(cmd, "ingest needs at least one FILE (- = stdin)");
  int nstdin = 0;
  for (int i = 0; i < a->npos; i++)
    nstdin += strcmp(a->pos[i], "-") == 0;
  if (nstdin > 1)
    return usage_error(cmd, "stdin ('-') can be read only once");

  ingest g;
  memset(&g, 0, sizeof g);
  g.c = c;
  g.a = a;
  g.progress = !a->no_progress && isatty(STDERR_FILENO);

  input *in = xcalloc((size_t)a->npos, sizeof *in);
  for (int i = 0; i < a->npos; i++)
    in[i].path = a->pos[i];
  int rc = open_inputs(&g, in, a->npos);

  size_t bufsize = 256 * 1024;
  char *buf = malloc(bufsize);
  if (!buf)
    die_nomem();
  g.t0 = now_s();
  for (int i = 0; rc == EXIT_OK && i < a->npos; i++)
    rc = ingest_file(&g, &in[i], buf, bufsize);
  free(buf);
  for (int i = 0; i < a->npos; i++)
    if (in[i].fd > STDIN_FILENO)
      close(in[i].fd);
  free(in);

  if (rc == EXIT_OK && flush_batch(&g) != 0)
    rc = ingest_stream_failed(&g);
  /* With nothing to send, still make one call, so that an unreachable
   * server is reported as such. */
  if (rc == EXIT_OK && g.c_msgs == 0 && !g.stream && call_open(&g) != 0)
    rc = ingest_stream_failed(&g);
  if (rc == EXIT_OK && call_finish(&g) != 0)
    rc = ingest_stream_failed(&g);
  if (rc == EXIT_OK) {
    progress_draw(&g, true);
    progress_clear(&g);
    ingest_summary(&g);
  }
  gc_stream_free(g.stream);
  gd_arena_free(g.mem);
  free(g.links);
  free(g.ents);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Investigation: linked, paths, suspects                               */

/* "2025-03-01" (the UTC day) into buf; "-" for 0. */
static const char *day_format(int64_t t, char *buf, size_t size) {
  if (t == 0) {
    snprintf(buf, size, "-");
    return buf;
  }
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%d", &tm) == 0)
    snprintf(buf, size, "%lld", (long long)t);
  return buf;
}

/* Seller id -> key. Evidence steps name sellers by id only; the keys come
 * from the entities elsewhere in the same reply. */
typedef gd_u64map idmap; /* id -> const char * (uintptr_t), into the reply */

static void idmap_add_entity(idmap *m, const Graphd__V1__Entity *e) {
  if (!e || e->id == 0 || !e->key || !e->key[0])
    return;
  uint64_t *v = gd_u64map_put(m, e->id, NULL);
  if (!v)
    die_nomem();
  *v = (uintptr_t)e->key;
}

/* The display name of seller id: its key, or "#id" when the reply does
 * not say. */
static const char *seller_name(const idmap *m, uint64_t id, char *buf, size_t size) {
  const uint64_t *v = gd_u64map_get(m, id);
  if (v)
    return safe((const char *)(uintptr_t)*v, buf, size);
  snprintf(buf, size, "#%" PRIu64, id);
  return buf;
}

/* "a, b" (or "" without labels) into buf. */
static const char *labels_text(const Graphd__V1__Entity *e, char *buf,
                               size_t size) {
  size_t o = 0;
  buf[0] = '\0';
  for (size_t j = 0; e && j < e->n_labels && o + 2 < size; j++) {
    char lb[600];
    o += (size_t)snprintf(buf + o, size - o, "%s%s", j ? ", " : "",
                          safe(e->labels[j], lb, sizeof lb));
    if (o >= size)
      o = size - 1;
  }
  return buf;
}

/* "device d-1f2e" */
static const char *entity_text(const Graphd__V1__Entity *e, char *buf,
                               size_t size) {
  char kb[8192];
  if (!e) {
    snprintf(buf, size, "?");
    return buf;
  }
  snprintf(buf, size, "%s %s", gd_type_name((int)e->type),
           safe(e->key, kb, sizeof kb));
  return buf;
}

/* The time window of --since/--until into *win; *ret = win, or NULL when
 * neither was given. */
static int make_window(const command *cmd, const args *a,
                       Graphd__V1__TimeWindow *win,
                       Graphd__V1__TimeWindow **ret) {
  *ret = NULL;
  if (a->have_since && a->have_until && a->since > a->until)
    return usage_error(cmd, "--since is after --until");
  if (a->have_since || a->have_until) {
    win->since = a->have_since ? a->since : 0;
    win->until = a->have_until ? a->until : 0;
    *ret = win;
  }
  return 0;
}

/* Pointers to a->caps, for the request's repeated HubCap. */
static Graphd__V1__HubCap **make_caps(const args *a) {
  Graphd__V1__HubCap **p = xcalloc(a->ncaps, sizeof *p);
  for (size_t i = 0; i < a->ncaps; i++)
    p[i] = &a->caps[i];
  return p;
}

static json_object *shared_json(const Graphd__V1__SharedEntity *se) {
  json_object *o = jobj();
  if (se->entity)
    jset(o, "entity", entity_json(se->entity, false));
  jset(o, "first_seen", json_object_new_int64(se->first_seen));
  jset(o, "last_seen", json_object_new_int64(se->last_seen));
  jset(o, "weight", json_object_new_double(se->weight));
  return o;
}

static json_object *linked_seller_json(const Graphd__V1__LinkedSeller *ls) {
  json_object *o = jobj();
  if (ls->seller)
    jset(o, "seller", entity_json(ls->seller, false));
  jset(o, "hops", json_object_new_uint64(ls->hops));
  jset(o, "score", json_object_new_double(ls->score));
  json_object *ev = jarr();
  for (size_t i = 0; i < ls->n_evidence; i++) {
    const Graphd__V1__EvidenceStep *st = ls->evidence[i];
    json_object *so = jobj();
    jset(so, "from_seller_id", json_object_new_uint64(st->from_seller_id));
    jset(so, "to_seller_id", json_object_new_uint64(st->to_seller_id));
    jset(so, "tie", json_object_new_double(st->tie));
    json_object *sh = jarr();
    for (size_t j = 0; j < st->n_shared; j++)
      json_object_array_add(sh, shared_json(st->shared[j]));
    jset(so, "shared", sh);
    json_object_array_add(ev, so);
  }
  jset(o, "evidence", ev);
  return o;
}

static json_object *hubs_json(Graphd__V1__SkippedHub **h, size_t n) {
  json_object *arr = jarr();
  for (size_t i = 0; i < n; i++) {
    json_object *o = jobj();
    if (h[i]->entity)
      jset(o, "entity", entity_json(h[i]->entity, false));
    jset(o, "seller_count", json_object_new_uint64(h[i]->seller_count));
    jset(o, "hub_cap", json_object_new_uint64(h[i]->hub_cap));
    bool crowd = h[i]->reason == GRAPHD__V1__SKIP_REASON__SKIP_REASON_CROWD;
    jset(o, "reason", jstr(crowd ? "crowd" : "over_cap"));
    if (crowd)
      jset(o, "corroboration", json_object_new_double(h[i]->corroboration));
    json_object_array_add(arr, o);
  }
  return arr;
}

static void print_skipped_hubs(Graphd__V1__SkippedHub **h, size_t n) {
  if (n == 0)
    return;
  char eb[8300];
  printf("\nskipped hubs and crowds (not evidence, not followed: over their type's "
         "cap, or shared by sellers who share little else):\n");
  for (size_t i = 0; i < n; i++) {
    printf("  %s shared by %" PRIu64 " seller%s ", entity_text(h[i]->entity, eb, sizeof eb),
           h[i]->seller_count, h[i]->seller_count == 1 ? "" : "s");
    if (h[i]->reason == GRAPHD__V1__SKIP_REASON__SKIP_REASON_CROWD)
      printf("(a crowd: corroboration %.3f)\n", h[i]->corroboration);
    else
      printf("(cap %" PRIu64 ")\n", h[i]->hub_cap);
  }
}

static void print_truncated(bool truncated, bool server, uint64_t touched, const char *what) {
  if (truncated && server)
    printf("\ntruncated: the server's bound on a query's work (graphd --max-query-work) was "
           "reached after %" PRIu64 " %s; the result is partial (lower --cap or --hops; "
           "--max-touched will not help)\n",
           touched, what);
  else if (truncated)
    printf("\ntruncated: the work bound was reached after %" PRIu64
           " %s; the result is partial (raise --max-touched)\n",
           touched, what);
}

/* The steps of one evidence path, as a tree below a seller line. */
static void print_evidence(const idmap *m, Graphd__V1__EvidenceStep **ev,
                           size_t n, const char *indent) {
  char fb[8192], tb[8192], eb[8300], d1[32], d2[32];
  for (size_t i = 0; i < n; i++) {
    const Graphd__V1__EvidenceStep *st = ev[i];
    printf("%svia %s → %s  tie %.2f\n", indent,
           seller_name(m, st->from_seller_id, fb, sizeof fb),
           seller_name(m, st->to_seller_id, tb, sizeof tb), st->tie);
    for (size_t j = 0; j < st->n_shared; j++) {
      const Graphd__V1__SharedEntity *se = st->shared[j];
      uint64_t sc = se->entity ? se->entity->seller_count : 0;
      day_format(se->first_seen, d1, sizeof d1);
      day_format(se->last_seen, d2, sizeof d2);
      if (se->entity && se->entity->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
        printf("%s    direct seller-seller link  (weight %.2f, since %s, last "
               "%s)\n",
               indent, se->weight, d1, d2);
      else
        printf("%s    %s  (shared by %" PRIu64 " seller%s, weight %.2f, since "
               "%s, last %s)\n",
               indent, entity_text(se->entity, eb, sizeof eb), sc,
               sc == 1 ? "" : "s", se->weight, d1, d2);
    }
  }
}

static int run_linked(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  Graphd__V1__TimeWindow win = GRAPHD__V1__TIME_WINDOW__INIT;
  Graphd__V1__LinkedSellersRequest req =
      GRAPHD__V1__LINKED_SELLERS_REQUEST__INIT;
  int used = 0, rc;
  if ((rc = make_ref(cmd, a, &ref, &used)) ||
      (rc = no_more_args(cmd, a, used)) ||
      (rc = make_window(cmd, a, &win, &req.window)))
    return rc;
  req.seller = &ref;
  req.max_hops = (uint32_t)a->hops;
  req.n_via_types = a->ntypes;
  req.via_types = a->types;
  req.n_hub_caps = a->ncaps;
  req.hub_caps = make_caps(a);
  req.limit = (uint32_t)a->limit;
  req.min_score = a->have_min_score ? a->min_score : 0;
  req.max_touched = a->max_touched;
  Graphd__V1__LinkedSellersReply *rep = NULL;
  rc = rpc(c, M_LINKED, &req.base, &graphd__v1__linked_sellers_reply__descriptor,
           (ProtobufCMessage **)&rep);
  free(req.hub_caps);
  if (rc)
    return rc;

  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_sellers; i++)
      json_object_array_add(arr, linked_seller_json(rep->sellers[i]));
    jset(o, "sellers", arr);
    jset(o, "skipped_hubs", hubs_json(rep->skipped_hubs, rep->n_skipped_hubs));
    jset(o, "truncated", json_object_new_boolean(rep->truncated));
    jset(o, "touched", json_object_new_uint64(rep->touched));
    print_json(o);
    graphd__v1__linked_sellers_reply__free_unpacked(rep, NULL);
    return EXIT_OK;
  }

  /* The query seller's own key (the reply names it by id only). */
  Graphd__V1__GetEntityRequest greq = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  greq.ref = &ref;
  Graphd__V1__GetEntityReply *grep = NULL;
  gc_status gst;
  if (gc_unary(c->client, M_GET, &greq.base,
               &graphd__v1__get_entity_reply__descriptor,
               (ProtobufCMessage **)&grep, &gst, c->timeout_ms) != 0)
    grep = NULL;
  const Graphd__V1__Entity *self = grep ? grep->entity : NULL;

  idmap m = GD_U64MAP_INIT;
  idmap_add_entity(&m, self);
  for (size_t i = 0; i < rep->n_sellers; i++)
    idmap_add_entity(&m, rep->sellers[i]->seller);

  char kb[8192], lb[4200], sb[64];
  if (self)
    printf("seller %s (id %" PRIu64 "): ", safe(self->key, kb, sizeof kb),
           self->id);
  else if (ref.id)
    printf("seller #%" PRIu64 ": ", ref.id);
  else
    printf("seller %s: ", safe(ref.key, kb, sizeof kb));
  long hops = a->hops ? a->hops : 1;
  printf("%zu linked seller%s within %ld hop%s\n", rep->n_sellers,
         rep->n_sellers == 1 ? "" : "s", hops, hops == 1 ? "" : "s");

  if (rep->n_sellers) {
    size_t ws = strlen("SCORE"), wk = strlen("SELLER");
    for (size_t i = 0; i < rep->n_sellers; i++) {
      const Graphd__V1__LinkedSeller *ls = rep->sellers[i];
      snprintf(sb, sizeof sb, "%.3f", ls->score);
      if (strlen(sb) > ws)
        ws = strlen(sb);
      size_t tw = ls->seller ? text_width(safe(ls->seller->key, kb, sizeof kb)) : 1;
      if (tw > wk)
        wk = tw;
    }
    if (wk > 40)
      wk = 40;
    printf("\n");
    print_padded("SCORE", ws, true, false);
    printf("  HOPS  ");
    print_padded("SELLER", wk, false, false);
    printf("  LABELS\n");
    for (size_t i = 0; i < rep->n_sellers; i++) {
      const Graphd__V1__LinkedSeller *ls = rep->sellers[i];
      snprintf(sb, sizeof sb, "%.3f", ls->score);
      print_padded(sb, ws, true, false);
      printf("  %4" PRIu32 "  ", ls->hops);
      labels_text(ls->seller, lb, sizeof lb);
      print_padded(ls->seller ? safe(ls->seller->key, kb, sizeof kb) : "?", wk,
                   false, !lb[0]);
      if (lb[0])
        printf("  %s", lb);
      printf("\n");
      print_evidence(&m, ls->evidence, ls->n_evidence, "    ");
    }
  }
  print_skipped_hubs(rep->skipped_hubs, rep->n_skipped_hubs);
  print_truncated(rep->truncated, rep->server_work_bound, rep->touched, "adjacency rows");
  gd_u64map_free(&m);
  if (grep)
    graphd__v1__get_entity_reply__free_unpacked(grep, NULL);
  graphd__v1__linked_sellers_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* The two entities of `paths`: TYPE KEY each, or --from-id / --to-id. */
static int make_path_refs(const command *cmd, const args *a,
                          Graphd__V1__EntityRef *from,
                          Graphd__V1__EntityRef *to) {
  int p = 0;
  Graphd__V1__EntityRef *refs[2] = {from, to};
  bool by_id[2] = {a->have_from_id, a->have_to_id};
  uint64_t ids[2] = {a->from_id, a->to_id};
  for (int i = 0; i < 2; i++) {
    if (by_id[i]) {
      refs[i]->id = ids[i];
      continue;
    }
    if (a->npos < p + 2)
      return usage_error(cmd, "paths needs two entities: TYPE KEY TYPE KEY "
                              "(or --from-id N / --to-id N)");
    gd_etype t;
    if (gc_type_parse(a->pos[p], &t) != 0)
      return usage_error(cmd,
                         "unknown entity type '%s' (expected seller, address, "
                         "payment_account, device, phone, email or ip)",
                         a->pos[p]);
    refs[i]->type = (Graphd__V1__EntityType)t;
    refs[i]->key = a->pos[p + 1];
    p += 2;
  }
  return no_more_args(cmd, a, p);
}

static json_object *path_json(const Graphd__V1__Path *p) {
  json_object *o = jobj(), *ents = jarr(), *links = jarr();
  for (size_t i = 0; i < p->n_entities; i++)
    json_object_array_add(ents, entity_json(p->entities[i], false));
  for (size_t i = 0; i < p->n_links; i++) {
    json_object *l = jobj();
    jset(l, "first_seen", json_object_new_int64(p->links[i]->first_seen));
    jset(l, "last_seen", json_object_new_int64(p->links[i]->last_seen));
    jset(l, "count", json_object_new_uint64(p->links[i]->count));
    json_object_array_add(links, l);
  }
  jset(o, "entities", ents);
  jset(o, "links", links);
  return o;
}

/* "—[2025-03-01..2025-05-02 ×3]—" */
static void print_path_link(const Graphd__V1__Link *l) {
  char d1[32], d2[32];
  if (!l) {
    printf(" —— ");
    return;
  }
  day_format(l->first_seen, d1, sizeof d1);
  day_format(l->last_seen, d2, sizeof d2);
  printf(" —[%s", d1);
  if (strcmp(d1, d2) != 0)
    printf("..%s", d2);
  if (l->count > 1)
    printf(" ×%" PRIu64, l->count);
  printf("]— ");
}

static int run_paths(ctl *c, const command *cmd, args *a) {
  Graphd__V1__EntityRef from = GRAPHD__V1__ENTITY_REF__INIT;
  Graphd__V1__EntityRef to = GRAPHD__V1__ENTITY_REF__INIT;
  Graphd__V1__TimeWindow win = GRAPHD__V1__TIME_WINDOW__INIT;
  Graphd__V1__FindPathsRequest req = GRAPHD__V1__FIND_PATHS_REQUEST__INIT;
  int rc;
  if ((rc = make_path_refs(cmd, a, &from, &to)) ||
      (rc = make_window(cmd, a, &win, &req.window)))
    return rc;
  req.from = &from;
  req.to = &to;
  req.k = (uint32_t)a->k;
  req.max_hops = (uint32_t)a->max_hops;
  req.n_hub_caps = a->ncaps;
  req.hub_caps = make_caps(a);
  req.max_touched = a->max_touched;
  Graphd__V1__FindPathsReply *rep = NULL;
  rc = rpc(c, M_PATHS, &req.base, &graphd__v1__find_paths_reply__descriptor,
           (ProtobufCMessage **)&rep);
  free(req.hub_caps);
  if (rc)
    return rc;

  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_paths; i++)
      json_object_array_add(arr, path_json(rep->paths[i]));
    jset(o, "paths", arr);
    jset(o, "skipped_hubs", hubs_json(rep->skipped_hubs, rep->n_skipped_hubs));
    jset(o, "truncated", json_object_new_boolean(rep->truncated));
    jset(o, "touched", json_object_new_uint64(rep->touched));
    print_json(o);
    graphd__v1__find_paths_reply__free_unpacked(rep, NULL);
    return EXIT_OK;
  }

  long max_hops = a->max_hops ? a->max_hops : 4;
  char eb[8300];
  if (rep->n_paths == 0) {
    printf("no path within %ld link%s\n", max_hops, max_hops == 1 ? "" : "s");
  } else {
    const Graphd__V1__Path *p0 = rep->paths[0];
    if (p0->n_entities >= 2) {
      printf("%zu path%s from %s", rep->n_paths, rep->n_paths == 1 ? "" : "s",
             entity_text(p0->entities[0], eb, sizeof eb));
      printf(" to %s (shortest first):\n",
             entity_text(p0->entities[p0->n_entities - 1], eb, sizeof eb));
    }
    for (size_t i = 0; i < rep->n_paths; i++) {
      const Graphd__V1__Path *p = rep->paths[i];
      printf("%zu. ", i + 1);
      for (size_t j = 0; j < p->n_entities; j++) {
        if (j)
          print_path_link(j - 1 < p->n_links ? p->links[j - 1] : NULL);
        fputs(entity_text(p->entities[j], eb, sizeof eb), stdout);
      }
      printf("\n");
    }
  }
  print_skipped_hubs(rep->skipped_hubs, rep->n_skipped_hubs);
  print_truncated(rep->truncated, rep->server_work_bound, rep->touched, "adjacency rows");
  graphd__v1__find_paths_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* One nearest labelled seller, on one line: who, how strong, through what. */
static void print_nearest(const idmap *m, const Graphd__V1__LinkedSeller *ls) {
  char kb[8192], lb[4200], fb[8192], tb[8192], eb[8300];
  printf("        ← %s", ls->seller ? safe(ls->seller->key, kb, sizeof kb) : "?");
  labels_text(ls->seller, lb, sizeof lb);
  if (lb[0])
    printf(" [%s]", lb);
  printf("  %.3f, %" PRIu32 " hop%s:", ls->score, ls->hops,
         ls->hops == 1 ? "" : "s");
  for (size_t i = 0; i < ls->n_evidence; i++) {
    const Graphd__V1__EvidenceStep *st = ls->evidence[i];
    if (ls->n_evidence > 1)
      printf("%s %s → %s:", i ? ";" : "",
             seller_name(m, st->from_seller_id, fb, sizeof fb),
             seller_name(m, st->to_seller_id, tb, sizeof tb));
    for (size_t j = 0; j < st->n_shared; j++) {
      const Graphd__V1__SharedEntity *se = st->shared[j];
      uint64_t sc = se->entity ? se->entity->seller_count : 0;
      if (se->entity && se->entity->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
        printf("%s direct link", j ? "," : "");
      else
        printf("%s %s (%" PRIu64 " seller%s)", j ? "," : "",
               entity_text(se->entity, eb, sizeof eb), sc, sc == 1 ? "" : "s");
    }
  }
  printf("\n");
}

static int run_suspects(ctl *c, const command *cmd, args *a) {
  Graphd__V1__TimeWindow win = GRAPHD__V1__TIME_WINDOW__INIT;
  Graphd__V1__RankSuspectsRequest req =
      GRAPHD__V1__RANK_SUSPECTS_REQUEST__INIT;
  int rc;
  if ((rc = no_more_args(cmd, a, 0)) ||
      (rc = make_window(cmd, a, &win, &req.window)))
    return rc;
  req.n_seed_labels = a->nlabels;
  req.seed_labels = a->labels;
  req.limit = (uint32_t)a->limit;
  req.max_touched = a->max_touched;
  req.n_hub_caps = a->ncaps;
  req.hub_caps = make_caps(a);
  req.alpha = a->alpha;
  req.epsilon = a->epsilon;
  req.max_nearest = (uint32_t)a->nearest;
  Graphd__V1__RankSuspectsReply *rep = NULL;
  rc = rpc(c, M_SUSPECTS, &req.base, &graphd__v1__rank_suspects_reply__descriptor,
           (ProtobufCMessage **)&rep);
  free(req.hub_caps);
  if (rc)
    return rc;

  if (c->json) {
    json_object *o = jobj(), *arr = jarr();
    for (size_t i = 0; i < rep->n_suspects; i++) {
      const Graphd__V1__Suspect *s = rep->suspects[i];
      json_object *so = jobj(), *near = jarr();
      if (s->seller)
        jset(so, "seller", entity_json(s->seller, false));
      jset(so, "score", json_object_new_double(s->score));
      for (size_t j = 0; j < s->n_nearest_labelled; j++)
        json_object_array_add(near, linked_seller_json(s->nearest_labelled[j]));
      jset(so, "nearest_labelled", near);
      json_object_array_add(arr, so);
    }
    jset(o, "suspects", arr);
    jset(o, "seeds", json_object_new_uint64(rep->seeds));
    jset(o, "truncated", json_object_new_boolean(rep->truncated));
    jset(o, "touched", json_object_new_uint64(rep->touched));
    print_json(o);
    graphd__v1__rank_suspects_reply__free_unpacked(rep, NULL);
    return EXIT_OK;
  }

  idmap m = GD_U64MAP_INIT;
  for (size_t i = 0; i < rep->n_suspects; i++) {
    idmap_add_entity(&m, rep->suspects[i]->seller);
    for (size_t j = 0; j < rep->suspects[i]->n_nearest_labelled; j++)
      idmap_add_entity(&m, rep->suspects[i]->nearest_labelled[j]->seller);
  }

  char kb[8192], lb[4200], sb[64], rb[32];
  printf("%zu suspect%s from %" PRIu64 " seed seller%s (labels: ",
         rep->n_suspects, rep->n_suspects == 1 ? "" : "s", rep->seeds,
         rep->seeds == 1 ? "" : "s");
  if (a->nlabels == 0)
    printf("counterfeit");
  for (size_t i = 0; i < a->nlabels; i++)
    printf("%s%s", i ? ", " : "", safe(a->labels[i], kb, sizeof kb));
  printf(")\n");
  if (rep->n_suspects) {
    size_t wr = strlen("RANK"), ws = strlen("SCORE"), wk = strlen("SELLER");
    for (size_t i = 0; i < rep->n_suspects; i++) {
      const Graphd__V1__Suspect *s = rep->suspects[i];
      snprintf(rb, sizeof rb, "%zu", i + 1);
      snprintf(sb, sizeof sb, "%.4g", s->score);
      if (strlen(rb) > wr)
        wr = strlen(rb);
      if (strlen(sb) > ws)
        ws = strlen(sb);
      size_t tw = s->seller ? text_width(safe(s->seller->key, kb, sizeof kb)) : 1;
      if (tw > wk)
        wk = tw;
    }
    if (wk > 40)
      wk = 40;
    printf("\n");
    print_padded("RANK", wr, true, false);
    printf("  ");
    print_padded("SCORE", ws, true, false);
    printf("  ");
    print_padded("SELLER", wk, false, false);
    printf("  LABELS\n");
    for (size_t i = 0; i < rep->n_suspects; i++) {
      const Graphd__V1__Suspect *s = rep->suspects[i];
      snprintf(rb, sizeof rb, "%zu", i + 1);
      snprintf(sb, sizeof sb, "%.4g", s->score);
      print_padded(rb, wr, true, false);
      printf("  ");
      print_padded(sb, ws, true, false);
      printf("  ");
      labels_text(s->seller, lb, sizeof lb);
      print_padded(s->seller ? safe(s->seller->key, kb, sizeof kb) : "?", wk,
                   false, !lb[0]);
      if (lb[0])
        printf("  %s", lb);
      printf("\n");
      for (size_t j = 0; j < s->n_nearest_labelled; j++)
        print_nearest(&m, s->nearest_labelled[j]);
    }
  }
  print_truncated(rep->truncated, rep->server_work_bound, rep->touched, "push operations");
  gd_u64map_free(&m);
  graphd__v1__rank_suspects_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* help and main                                                        */


static int run_help(ctl *c, const command *cmd, args *a) {
  if (a->npos == 0) {
    fputs(main_help, stdout);
    return EXIT_OK;
  }
  const command *h = find_command(a->pos[0]);
  if (!h || a->npos > 1)
    return usage_error(cmd, "help: unknown command '%s'", a->pos[0]);
  fputs(h->help, stdout);
  return EXIT_OK;
}

int main(int argc, char **argv) {
  args a;
  memset(&a, 0, sizeof a);
  a.timeout_ms = DEFAULT_TIMEOUT_MS;
  a.batch = DEFAULT_BATCH;
  a.batch_bytes = DEFAULT_BATCH_BYTES;
  a.pos = xcalloc((size_t)argc, sizeof *a.pos);
  a.add = xcalloc((size_t)argc, sizeof *a.add);
  a.remove = xcalloc((size_t)argc, sizeof *a.remove);
  a.labels = xcalloc((size_t)argc, sizeof *a.labels);
  a.add_clusters = xcalloc((size_t)argc, sizeof *a.add_clusters);
  a.rm_clusters = xcalloc((size_t)argc, sizeof *a.rm_clusters);
  const char *env = getenv("GRAPHD_ADDR");
  a.addr = env && *env ? env : DEFAULT_ADDR;

  const command *cmd = NULL;
  int rc = parse_args(argc, argv, &a, &cmd);
  if (rc == EXIT_OK && !cmd) {
    if (a.help)
      fputs(main_help, stdout);
    else
      rc = usage_error(NULL, "no command given");
  } else if (rc == EXIT_OK && a.help) {
    fputs(cmd->help, stdout);
  } else if (rc == EXIT_OK && cmd->run == run_help) {
    rc = run_help(NULL, cmd, &a);
  } else if (rc == EXIT_OK) {
    ctl c = {a.addr, a.json, (int)a.timeout_ms, NULL};
    gc_status st;
    gc_client_opts co = {0};
    char token[512] = "";
    const char *envtok = getenv("GRAPHD_TOKEN");
    if (a.token_file) {
      FILE *tf = fopen(a.token_file, "r");
      if (!tf || !fgets(token, sizeof token, tf)) {
        fprintf(stderr, "graphctl: --token-file %s: %s\n", a.token_file,
                tf ? "empty" : strerror(errno));
        if (tf)
          fclose(tf);
        free(a.pos), free(a.add), free(a.remove), free(a.labels);
        return EXIT_NOINPUT;
      }
      fclose(tf);
      token[strcspn(token, "\r\n")] = 0;
      co.token = token;
    } else if (envtok && *envtok) {
      co.token = envtok;
    }
    char *pem[3] = {NULL, NULL, NULL};
    const char *pem_path[3] = {a.tls_ca, a.tls_cert, a.tls_key};
    for (int i = 0; i < 3; i++) {
      if (!pem_path[i])
        continue;
      FILE *pf = fopen(pem_path[i], "r");
      size_t n = 0;
      pem[i] = xcalloc(1, 1 << 20);
      if (pf)
        n = fread(pem[i], 1, (1 << 20) - 1, pf);
      if (!pf || n == 0) {
        fprintf(stderr, "graphctl: %s: %s\n", pem_path[i], pf ? "empty" : strerror(errno));
        if (pf)
          fclose(pf);
        for (int k = 0; k < 3; k++)
          free(pem[k]);
        free(a.pos), free(a.add), free(a.remove), free(a.labels);
        return EXIT_NOINPUT;
      }
      fclose(pf);
    }
    co.case_id = a.case_id_md ? a.case_id_md : getenv("GRAPHD_CASE_ID");
    co.tls = a.tls;
    co.tls_root_certs_pem = pem[0];
    co.tls_cert_chain_pem = pem[1];
    co.tls_private_key_pem = pem[2];
    co.tls_server_name = a.tls_name;
    int open_rc = gc_client_open(a.addr, &co, &c.client, &st);
    for (int k = 0; k < 3; k++)
      free(pem[k]);
    if (open_rc != 0) {
      fprintf(stderr, "graphctl: %s\n", st.message);
      rc = st.code == 3 /* INVALID_ARGUMENT */ ? EXIT_USAGE : EXIT_SOFTWARE;
    } else {
      rc = cmd->run(&c, cmd, &a);
      gc_client_close(c.client);
    }
  }
  free(a.pos);
  free(a.add);
  free(a.remove);
  free(a.types);
  free(a.caps);
  free(a.weights);
  free(a.labels);
  for (size_t i = 0; i < a.nadd_clusters; i++)
    free(a.add_clusters[i]);
  for (size_t i = 0; i < a.nrm_clusters; i++)
    free(a.rm_clusters[i]);
  free(a.add_clusters);
  free(a.rm_clusters);
  return rc;
}
