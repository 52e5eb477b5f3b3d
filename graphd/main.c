/*
 * graphd: the seller graph daemon.
 *
 * main() owns start-up and shutdown order: block the termination signals
 * before any thread exists (gRPC starts threads in grpc_init), open the
 * store, start the writer and the job manager, start the server, print
 * the listening line, then wait in sigtimedwait(). On SIGTERM/SIGINT:
 * health goes NOT_SERVING, clustering jobs stop (queued ones cancelled,
 * the running graphd-worker signalled and reaped), the server drains
 * (in-flight calls finish, including writes waiting for their commit),
 * the metrics endpoint (--metrics-listen) stops, the writer commits what
 * is queued and stops, the store closes, and the process exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/listen.h"
#include "core/log.h"
#include "jobs/jobs.h"
#include "metrics/metrics.h"
#include "rpc/rpc.h"
#include "rpc/signer.h"
#include "server/server.h"

#include <openssl/crypto.h>
#include "store/store.h"
#include "store/writer.h"

#ifndef GD_VERSION
#define GD_VERSION "unknown"
#endif

typedef struct config {
  const char *data;
  const char *listen;
  const char *metrics_listen; /* NULL = no metrics endpoint */
  const char *http_listen;    /* NULL = no HTTP/JSON gateway */
  const char *console_dir;    /* NULL = the installed (or source) console */
  const char *worker;
  unsigned threads;
  uint64_t map_size_mb, map_size_max_mb;
  long max_message_bytes;
  long max_request_alloc;
  long max_batch_items;
  long result_cap;
  long default_deadline_ms, max_deadline_ms;
  long grace_ms;
  long max_streams;
  long max_calls, keepalive_time_ms, keepalive_timeout_ms, min_ping_interval_ms;
  long cluster_max_sellers, cluster_max_ties;
  long max_query_work;
  long reserved_calls, max_calls_per_peer, stream_idle_ms, query_threads;
  long write_budget;
  long bulk_max;
  long import_max_rows;
  long placement_queue, alert_history;
  long max_hub_cap[GD_ROLE_ADMIN + 1];
  const char *tokens;
  const char *signing_key; /* NULL = <data>/signing-key.pem */
  const char *tls_cert, *tls_key, *tls_client_ca;
  bool insecure_no_auth;
  bool no_audit;
  bool audit_reads_sync;
  bool verbose;
  bool check_config;
  int log_level;
  bool log_json;
  /* --config: the file and the settings given (file, then flags; the
   * last value of a key wins), for --check-config to print. */
  const char *config_file;
  int nsettings;
  const char *setting_key[64], *setting_val[64];
} config;

static void usage(FILE *f) {
  fputs("usage: graphd --data DIR [options]\n"
        "\n"
        "Serves the seller graph stored in DIR (created if missing) over gRPC.\n"
        "Prints 'listening on HOST:PORT' on stdout once serving.\n"
        "\n"
        "options:\n"
        "  --data DIR               LMDB environment directory (required)\n"
        "  --listen HOST:PORT       address to serve on; port 0 = any free port\n"
        "                           (default 127.0.0.1:7419)\n"
        "  --metrics-listen HOST:PORT\n"
        "                           serve Prometheus metrics at http://HOST:PORT/metrics\n"
        "                           (bound to HOST only; port 0 = any free port, logged;\n"
        "                           no authentication; default: off)\n"
        "  --http-listen HOST:PORT  also serve the API as HTTP/JSON (POST /v1/<Method>) and\n"
        "                           the investigator console (GET /), under the same tokens,\n"
        "                           limits, audit trail and TLS certificate (default: off)\n"
        "  --console-dir DIR        the console's files (default: the installed ones)\n"
        "  --threads N              gRPC handler threads (default: number of cores)\n"
        "  --map-size-mb N          initial LMDB map size (default 1024); grows x2 while\n"
        "                           less than half of it is free\n"
        "  --map-size-max-mb N      map growth limit (default 1048576)\n"
        "  --max-message-bytes N    largest request or reply message (default 4194304)\n"
        "  --max-batch-items N      entities plus links per UpsertRequest (default 100000)\n"
        "  --max-request-alloc-bytes N  memory one request message may take when decoded\n"
        "                           (default 67108864; 0 = no budget)\n"
        "  --result-cap N           largest 'limit' a read accepts (default 10000)\n"
        "  --default-deadline-ms N  deadline for calls that carry none (default 60000)\n"
        "  --max-deadline-ms N      clamp on every call's deadline (default 3600000)\n"
        "  --grace-ms N             shutdown drain period (default 10000)\n"
        "  --max-streams N          concurrent streams per connection (default 1000)\n"
        "  --max-calls N            calls in flight over all connections (default 10000)\n"
        "  --write-budget-bytes N   decoded bytes of all writes in flight; Ingest streams\n"
        "                           wait, Upserts over it are refused (default: an eighth\n"
        "                           of the machine's memory, at least 256 MiB; 0 = none)\n"
        "  --bulk-load-max-bytes N  memory one BulkLoad may hold (default: a quarter of\n"
        "                           the machine's memory, at least 256 MiB; 0 = none)\n"
        "  --import-max-rows N      rows one ImportSnapshot may carry (default: as\n"
        "                           --cluster-max-sellers; 0 = none)\n"
        "  --reserved-calls N       of --max-calls, kept for unary calls: streams never\n"
        "                           take them (default: a tenth of --max-calls)\n"
        "  --max-calls-per-peer N   calls in flight per connection, and per token's\n"
        "                           principal with --tokens (default 1000; 0 = none)\n"
        "  --stream-idle-ms N       end a client stream that sends nothing for this long\n"
        "                           (default 120000; 0 = never)\n"
        "  --query-threads N        threads for LinkedSellers, FindPaths, RankSuspects,\n"
        "                           apart from the handler threads (default: as --threads)\n"
        "  --max-query-work N       steps one investigator query may take: rows read,\n"
        "                           cached lists walked, pushes (default 20000000; 0 = none)\n"
        "  --max-hub-cap [ROLE=]N   the largest hub cap a request may ask for, for every\n"
        "                           role or for ROLE (reader, investigator, writer, admin;\n"
        "                           repeat per role; default 10000; 0 = none)\n"
        "  --keepalive-time-ms N    ping an idle connection this often (default 60000)\n"
        "  --keepalive-timeout-ms N ... and drop it without an answer by then (default 20000)\n"
        "  --min-ping-interval-ms N clients may ping no more often (default 10000)\n"
        "  --worker PATH            the graphd-worker executable (default: next to graphd)\n"
        "  --cluster-max-sellers N  largest graph a clustering job takes, in sellers\n"
        "                           (default 20000000; StartClustering checks it first)\n"
        "  --cluster-max-ties N     ... and in seller-seller ties (default 200000000;\n"
        "                           checked before igraph is called: the job fails)\n"
        "  --tokens FILE            bearer tokens, 'TOKEN ROLE NAME [brand=B]' per line\n"
        "                           (roles: reader, investigator, writer, admin, partner\n"
        "                           with brand=B); reloaded on SIGHUP. Without it every\n"
        "                           caller is admin, and graphd listens on loopback only\n"
        "                           unless --insecure-no-auth\n"
        "  --signing-key FILE       Ed25519 key (PEM) that signs evidence packs; made,\n"
        "                           with FILE.pub, when missing (default\n"
        "                           DATA/signing-key.pem)\n"
        "  --insecure-no-auth       allow a non-loopback --listen without --tokens\n"
        "  --no-audit               keep no audit trail (benchmarks; not for production)\n"
        "  --placement-queue N      sellers whose ties changed, queued for provisional\n"
        "                           placement; more are shed and counted (default 100000;\n"
        "                           0 = no placement and no alerts)\n"
        "  --alert-history N        alerts kept for WatchAlerts to resume from (default\n"
        "                           100000)\n"
        "  --audit-reads MODE       async (default): a successful read replies at once and\n"
        "                           its record commits with the next group; sync: it waits\n"
        "                           for its record to be durable, like writes and refusals\n"
        "  --tls-cert FILE          serve TLS with this PEM certificate chain ...\n"
        "  --tls-key FILE           ... and this PEM private key\n"
        "  --tls-client-ca FILE     require client certificates signed by this CA (mTLS);\n"
        "                           a certificate's CN may stand in for a token\n"
        "                           ('x509:CN ROLE NAME' in --tokens)\n"
        "  --config FILE            read settings from FILE: 'key = value' lines, a key\n"
        "                           being any long option's name ('#' comments; true or\n"
        "                           false for options without a value); flags given on\n"
        "                           the command line take precedence over the file\n"
        "  --check-config           validate the settings (file and flags: values, tokens,\n"
        "                           TLS files, data directory, worker), print them, exit\n"
        "                           0 if valid, 1 if not\n"
        "  --log-format FORMAT      text (default) or json (JSON Lines: ts, level, msg)\n"
        "  --log-level LEVEL        debug, info (default), warn or error\n"
        "  -v, --verbose            debug logging (--log-level debug)\n"
        "  -h, --help               this text\n"
        "\n"
        "Signals: SIGTERM or SIGINT drain and exit 0; SIGHUP reloads --tokens and\n"
        "clears the reader slots of dead processes (also done every minute).\n"
        "Exit codes: 0 clean shutdown; 1 cannot start (the log says why); 2 usage.\n"
        "Files: a systemd unit (graphd.service) and an example configuration\n"
        "(graphd.conf.example) are installed with graphd; see docs/OPERATIONS.md.\n",
        f);
}

static bool parse_long(const char *s, long min, long max, long *ret) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < min || v > max)
    return false;
  *ret = v;
  return true;
}

/* Strings made while reading the arguments live as long as the process;
 * kept here so they stay reachable. */
static bool keep_string(char *str) {
  static char *volatile kept[64]; /* volatile: the stores must stay */
  static int nkept;
  if (nkept == 64)
    return false;
  kept[nkept++] = str;
  return kept[nkept - 1] == str;
}

/* Splits "--key=value" / "--key" into the settings list (last one wins). */
static void note_setting(config *c, const char *arg, const struct option *opts) {
  if (strncmp(arg, "--", 2) != 0)
    return;
  const char *k = arg + 2, *eq = strchr(k, '=');
  size_t klen = eq ? (size_t)(eq - k) : strlen(k);
  for (const struct option *o = opts; o->name; o++) {
    if (strlen(o->name) != klen || strncmp(o->name, k, klen) != 0)
      continue;
    if (!strcmp(o->name, "config") || !strcmp(o->name, "check-config"))
      return;
    for (int i = 0; i < c->nsettings; i++)
      if (strcmp(c->setting_key[i], o->name) == 0) {
        c->setting_val[i] = eq ? eq + 1 : "true";
        return;
      }
    if (c->nsettings < 64) {
      c->setting_key[c->nsettings] = o->name;
      c->setting_val[c->nsettings++] = eq ? eq + 1 : "true";
    }
    return;
  }
}

/* config_lines[i]: the --config file's line argv[i] came from (0: the
 * command line). */
static int *config_lines;

/*
 * --config FILE: reads FILE's "key = value" lines into "--key=value"
 * arguments placed before the command line's (which therefore take
 * precedence: getopt applies the last value). The new argv is kept for the
 * life of the process (c's strings point into it). Returns 0, or 2 with a
 * message naming FILE:LINE and the key for an unknown key or a bad line.
 */
static int merge_config(int *argc, char ***argv, const struct option *opts, config *c) {
  const char *path = NULL;
  int n = *argc;
  for (int i = 1; i < n; i++) {
    const char *a = (*argv)[i];
    if (strcmp(a, "--") == 0)
      break;
    if (strcmp(a, "--config") == 0 && i + 1 < n)
      path = (*argv)[++i];
    else if (strncmp(a, "--config=", 9) == 0)
      path = a + 9;
  }
  if (!path)
    goto settings;
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "graphd: --config %s: %s\n", path, strerror(errno));
    return 2;
  }
  c->config_file = path;
  /* At most one argument per line; the file is small. */
  static char **nargv;
  size_t cap = (size_t)n + 64, nargc = 1;
  nargv = calloc(cap + 1, sizeof *nargv);
  if (!nargv) {
    fclose(f);
    fprintf(stderr, "graphd: out of memory\n");
    return 2;
  }
  nargv[0] = (*argv)[0];
  config_lines = calloc(cap + 1, sizeof *config_lines);
  if (!config_lines) {
    fclose(f);
    free(nargv);
    nargv = NULL;
    fprintf(stderr, "graphd: out of memory\n");
    return 2;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      fprintf(stderr, "graphd: %s:%d: line over %zu bytes\n", path, lineno, sizeof line - 2);
      rc = 2;
      break;
    }
    char *p = line, *e = line + len;
    while (e > p && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
      *--e = 0;
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p || *p == '#')
      continue;
    char *eq = strchr(p, '=');
    if (!eq) {
      fprintf(stderr, "graphd: %s:%d: expected 'key = value', got '%s'\n", path, lineno, p);
      rc = 2;
      break;
    }
    char *k = p, *ke = eq, *val = eq + 1;
    while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
      *--ke = 0;
    *eq = 0;
    while (*val == ' ' || *val == '\t')
      val++;
    size_t vlen = strlen(val);
    if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"')
      val[vlen - 1] = 0, val++;
    const struct option *o = opts;
    while (o->name && strcmp(o->name, k) != 0)
      o++;
    if (!o->name || !strcmp(k, "config") || !strcmp(k, "check-config") || !strcmp(k, "help")) {
      fprintf(stderr, "graphd: %s:%d: unknown key '%s' (keys are graphd's long option names; "
                      "see graphd --help)\n", path, lineno, k);
      rc = 2;
      break;
    }
    char *arg;
    if (o->has_arg == no_argument) {
      if (!strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "0"))
        continue;
      if (strcmp(val, "true") && strcmp(val, "yes") && strcmp(val, "1")) {
        fprintf(stderr, "graphd: %s:%d: %s takes true or false, got '%s'\n", path, lineno, k, val);
        rc = 2;
        break;
      }
      arg = malloc(strlen(k) + 3);
      if (arg)
        sprintf(arg, "--%s", k);
    } else {
      arg = malloc(strlen(k) + strlen(val) + 4);
      if (arg)
        sprintf(arg, "--%s=%s", k, val);
    }
    if (!arg || nargc + (size_t)n >= cap) {
      fprintf(stderr, "graphd: %s:%d: %s\n", path, lineno, arg ? "too many settings" : "out of memory");
      free(arg);
      rc = 2;
      break;
    }
    config_lines[nargc] = lineno;
    nargv[nargc++] = arg;
  }
  if (!rc && ferror(f)) {
    fprintf(stderr, "graphd: --config %s: read error\n", path);
    rc = 2;
  }
  fclose(f);
  if (rc) {
    for (size_t i = 1; i < nargc; i++)
      free(nargv[i]);
    free(nargv);
    free(config_lines);
    nargv = NULL;
    config_lines = NULL;
    return rc;
  }
  for (int i = 1; i < n; i++)
    nargv[nargc++] = (*argv)[i];
  nargv[nargc] = NULL;
  *argc = (int)nargc;
  *argv = nargv;
settings:
  for (int i = 1; i < *argc; i++) {
    const char *a = (*argv)[i];
    /* "--key value": fold into one for the list. */
    if (strncmp(a, "--", 2) == 0 && !strchr(a, '=') && i + 1 < *argc) {
      const struct option *o = opts;
      while (o->name && strcmp(o->name, a + 2) != 0)
        o++;
      if (o->name && o->has_arg == required_argument) {
        char *kv = malloc(strlen(a) + strlen((*argv)[i + 1]) + 2);
        if (kv && keep_string(kv)) {
          sprintf(kv, "%s=%s", a, (*argv)[i + 1]);
          note_setting(c, kv, opts);
        } else {
          free(kv); /* only the printed list misses it */
        }
        i++;
        continue;
      }
    }
    note_setting(c, a, opts);
  }
  return 0;
}

static int parse_args(int argc, char **argv, config *c) {
  enum {
    O_DATA = 256, O_LISTEN, O_THREADS, O_MAP, O_MAPMAX, O_MSG, O_BATCH, O_CAP, O_DDL, O_MDL,
    O_GRACE, O_STREAMS, O_WORKER, O_CMAXS, O_CMAXT, O_TOKENS, O_SIGNING_KEY, O_INSECURE, O_TLS_CERT,
    O_TLS_KEY, O_TLS_CA, O_NO_AUDIT, O_MAXCALLS, O_KA_TIME, O_KA_TIMEOUT, O_MIN_PING,
    O_AUDIT_READS, O_CONFIG, O_CHECK_CONFIG, O_ALLOC, O_LOG_FORMAT, O_LOG_LEVEL,
    O_METRICS_LISTEN, O_HTTP_LISTEN, O_CONSOLE_DIR, O_QUERY_WORK, O_HUB_CAP, O_RESERVED, O_PER_PEER, O_IDLE, O_QTHREADS,
    O_WRITE_BUDGET, O_PLACE_QUEUE, O_ALERT_HISTORY, O_BULK_MAX, O_IMPORT_MAX,
  };
  static const struct option opts[] = {
      {"data", required_argument, NULL, O_DATA},
      {"listen", required_argument, NULL, O_LISTEN},
      {"metrics-listen", required_argument, NULL, O_METRICS_LISTEN},
      {"http-listen", required_argument, NULL, O_HTTP_LISTEN},
      {"console-dir", required_argument, NULL, O_CONSOLE_DIR},
      {"threads", required_argument, NULL, O_THREADS},
      {"map-size-mb", required_argument, NULL, O_MAP},
      {"map-size-max-mb", required_argument, NULL, O_MAPMAX},
      {"max-message-bytes", required_argument, NULL, O_MSG},
      {"max-batch-items", required_argument, NULL, O_BATCH},
      {"result-cap", required_argument, NULL, O_CAP},
      {"default-deadline-ms", required_argument, NULL, O_DDL},
      {"max-deadline-ms", required_argument, NULL, O_MDL},
      {"grace-ms", required_argument, NULL, O_GRACE},
      {"max-streams", required_argument, NULL, O_STREAMS},
      {"worker", required_argument, NULL, O_WORKER},
      {"cluster-max-sellers", required_argument, NULL, O_CMAXS},
      {"cluster-max-ties", required_argument, NULL, O_CMAXT},
      {"tokens", required_argument, NULL, O_TOKENS},
      {"signing-key", required_argument, NULL, O_SIGNING_KEY},
      {"insecure-no-auth", no_argument, NULL, O_INSECURE},
      {"no-audit", no_argument, NULL, O_NO_AUDIT},
      {"audit-reads", required_argument, NULL, O_AUDIT_READS},
      {"max-calls", required_argument, NULL, O_MAXCALLS},
      {"max-query-work", required_argument, NULL, O_QUERY_WORK},
      {"reserved-calls", required_argument, NULL, O_RESERVED},
      {"write-budget-bytes", required_argument, NULL, O_WRITE_BUDGET},
      {"bulk-load-max-bytes", required_argument, NULL, O_BULK_MAX},
      {"import-max-rows", required_argument, NULL, O_IMPORT_MAX},
      {"placement-queue", required_argument, NULL, O_PLACE_QUEUE},
      {"alert-history", required_argument, NULL, O_ALERT_HISTORY},
      {"max-calls-per-peer", required_argument, NULL, O_PER_PEER},
      {"stream-idle-ms", required_argument, NULL, O_IDLE},
      {"query-threads", required_argument, NULL, O_QTHREADS},
      {"max-hub-cap", required_argument, NULL, O_HUB_CAP},
      {"keepalive-time-ms", required_argument, NULL, O_KA_TIME},
      {"keepalive-timeout-ms", required_argument, NULL, O_KA_TIMEOUT},
      {"min-ping-interval-ms", required_argument, NULL, O_MIN_PING},
      {"tls-cert", required_argument, NULL, O_TLS_CERT},
      {"tls-key", required_argument, NULL, O_TLS_KEY},
      {"tls-client-ca", required_argument, NULL, O_TLS_CA},
      {"config", required_argument, NULL, O_CONFIG},
      {"max-request-alloc-bytes", required_argument, NULL, O_ALLOC},
      {"check-config", no_argument, NULL, O_CHECK_CONFIG},
      {"log-format", required_argument, NULL, O_LOG_FORMAT},
      {"log-level", required_argument, NULL, O_LOG_LEVEL},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  *c = (config){
      .listen = "127.0.0.1:7419",
      .map_size_mb = 1024,
      .map_size_max_mb = 1048576,
      .max_message_bytes = 4 << 20,
      .max_batch_items = 100000,
      .max_request_alloc = 64L << 20,
      .result_cap = 10000,
      .default_deadline_ms = 60000,
      .max_deadline_ms = 3600000,
      .grace_ms = 10000,
      .max_streams = 1000,
      .max_calls = 10000,
      .keepalive_time_ms = 60000,
      .keepalive_timeout_ms = 20000,
      .min_ping_interval_ms = 10000,
      .cluster_max_sellers = 20000000,
      .cluster_max_ties = 200000000,
      .max_query_work = 20000000,
      .reserved_calls = -1, /* a tenth of max_calls */
      .write_budget = -1,   /* a share of the machine's memory */
      .bulk_max = -1,       /* a share of the machine's memory */
      .import_max_rows = -1, /* as --cluster-max-sellers */
      .placement_queue = GD_PLACE_QUEUE_DEFAULT,
      .alert_history = GD_ALERT_HISTORY_DEFAULT,
      .max_calls_per_peer = 1000,
      .stream_idle_ms = 120000,
      .max_hub_cap = {10000, 10000, 10000, 10000, 10000},
      .log_level = GD_LOG_INFO,
  };
  int ch, rc;
  long v;
  /* The file's settings go first, so the command line's come later and
   * win. */
  if ((rc = merge_config(&argc, &argv, opts, c)))
    return rc;
  while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    const char *name = NULL;
    bool ok = true;
    switch (ch) {
    case O_DATA: c->data = optarg; break;
    case O_LISTEN: c->listen = optarg; break;
    case O_METRICS_LISTEN:
    case O_HTTP_LISTEN: {
      char host[256];
      int port;
      gd_err e;
      const char *flag = ch == O_HTTP_LISTEN ? "--http-listen" : "--metrics-listen";
      if (gd_listen_parse(optarg, host, sizeof host, &port, &e)) {
        fprintf(stderr, "graphd: %s: %s\n", flag, e.msg);
        return 2;
      }
      *(ch == O_HTTP_LISTEN ? &c->http_listen : &c->metrics_listen) = optarg;
      break;
    }
    case O_CONSOLE_DIR: c->console_dir = optarg; break;
    case O_THREADS: ok = parse_long(optarg, 1, 256, &v); c->threads = (unsigned)v; name = "--threads"; break;
    case O_MAP: ok = parse_long(optarg, 1, 1L << 30, &v); c->map_size_mb = (uint64_t)v; name = "--map-size-mb"; break;
    case O_MAPMAX: ok = parse_long(optarg, 1, 1L << 30, &v); c->map_size_max_mb = (uint64_t)v; name = "--map-size-max-mb"; break;
    case O_MSG: ok = parse_long(optarg, 1024, 1L << 30, &c->max_message_bytes); name = "--max-message-bytes"; break;
    case O_BATCH: ok = parse_long(optarg, 1, 10000000, &c->max_batch_items); name = "--max-batch-items"; break;
    case O_CAP: ok = parse_long(optarg, 1, 10000000, &c->result_cap); name = "--result-cap"; break;
    case O_DDL: ok = parse_long(optarg, 1, 86400000L * 365, &c->default_deadline_ms); name = "--default-deadline-ms"; break;
    case O_MDL: ok = parse_long(optarg, 1, 86400000L * 365, &c->max_deadline_ms); name = "--max-deadline-ms"; break;
    case O_GRACE: ok = parse_long(optarg, 0, 3600000, &c->grace_ms); name = "--grace-ms"; break;
    case O_STREAMS: ok = parse_long(optarg, 1, 1000000, &c->max_streams); name = "--max-streams"; break;
    case O_WORKER: c->worker = optarg; break;
    case O_CMAXS: ok = parse_long(optarg, 1, 1L << 31, &c->cluster_max_sellers); name = "--cluster-max-sellers"; break;
    case O_TOKENS: c->tokens = optarg; break;
    case O_SIGNING_KEY: c->signing_key = optarg; break;
    case O_INSECURE: c->insecure_no_auth = true; break;
    case O_NO_AUDIT: c->no_audit = true; break;
    case O_AUDIT_READS:
      ok = strcmp(optarg, "sync") == 0 || strcmp(optarg, "async") == 0;
      c->audit_reads_sync = strcmp(optarg, "sync") == 0;
      name = "--audit-reads";
      break;
    case O_WRITE_BUDGET: ok = parse_long(optarg, 0, 1L << 50, &c->write_budget); name = "--write-budget-bytes"; break;
    case O_BULK_MAX: ok = parse_long(optarg, 0, 1L << 50, &c->bulk_max); name = "--bulk-load-max-bytes"; break;
    case O_IMPORT_MAX: ok = parse_long(optarg, 0, 1L << 40, &c->import_max_rows); name = "--import-max-rows"; break;
    case O_PLACE_QUEUE: ok = parse_long(optarg, 0, 100000000, &c->placement_queue); name = "--placement-queue"; break;
    case O_ALERT_HISTORY: ok = parse_long(optarg, 1, 100000000, &c->alert_history); name = "--alert-history"; break;
    case O_RESERVED: ok = parse_long(optarg, 0, 10000000, &c->reserved_calls); name = "--reserved-calls"; break;
    case O_PER_PEER: ok = parse_long(optarg, 0, 10000000, &c->max_calls_per_peer); name = "--max-calls-per-peer"; break;
    case O_IDLE: ok = parse_long(optarg, 0, 86400000L * 365, &c->stream_idle_ms); name = "--stream-idle-ms"; break;
    case O_QTHREADS: ok = parse_long(optarg, 1, 256, &c->query_threads); name = "--query-threads"; break;
    case O_QUERY_WORK: ok = parse_long(optarg, 0, 1L << 50, &c->max_query_work); name = "--max-query-work"; break;
    case O_HUB_CAP: {
      const char *eq = strchr(optarg, '=');
      name = "--max-hub-cap";
      if (!eq) {
        ok = parse_long(optarg, 0, 1L << 40, &v);
        for (int r = 0; ok && r <= GD_ROLE_ADMIN; r++)
          c->max_hub_cap[r] = v;
        break;
      }
      char role[32];
      gd_role r;
      ok = (size_t)(eq - optarg) < sizeof role;
      if (ok) {
        memcpy(role, optarg, (size_t)(eq - optarg));
        role[eq - optarg] = 0;
        ok = gd_role_parse(role, &r) == 0 && r <= GD_ROLE_ADMIN && /* partners run no queries */
             parse_long(eq + 1, 0, 1L << 40, &v);
      }
      if (ok) {
        c->max_hub_cap[r] = v;
        if (r == GD_ROLE_READER) /* the open methods' callers count as readers */
          c->max_hub_cap[GD_ROLE_NONE] = v;
      }
      break;
    }
    case O_MAXCALLS: ok = parse_long(optarg, 1, 10000000, &c->max_calls); name = "--max-calls"; break;
    case O_KA_TIME: ok = parse_long(optarg, 1000, 86400000, &c->keepalive_time_ms); name = "--keepalive-time-ms"; break;
    case O_KA_TIMEOUT: ok = parse_long(optarg, 100, 3600000, &c->keepalive_timeout_ms); name = "--keepalive-timeout-ms"; break;
    case O_MIN_PING: ok = parse_long(optarg, 100, 86400000, &c->min_ping_interval_ms); name = "--min-ping-interval-ms"; break;
    case O_TLS_CERT: c->tls_cert = optarg; break;
    case O_TLS_KEY: c->tls_key = optarg; break;
    case O_TLS_CA: c->tls_client_ca = optarg; break;
    case O_CMAXT: ok = parse_long(optarg, 1, 1L << 40, &c->cluster_max_ties); name = "--cluster-max-ties"; break;
    case O_CONFIG: break; /* read by merge_config */
    case O_ALLOC: ok = parse_long(optarg, 0, 1L << 40, &c->max_request_alloc); name = "--max-request-alloc-bytes"; break;
    case O_CHECK_CONFIG: c->check_config = true; break;
    case O_LOG_FORMAT:
      ok = strcmp(optarg, "text") == 0 || strcmp(optarg, "json") == 0;
      c->log_json = strcmp(optarg, "json") == 0;
      name = "--log-format";
      break;
    case O_LOG_LEVEL:
      c->log_level = gd_log_level_parse(optarg);
      ok = c->log_level >= 0;
      name = "--log-level";
      break;
    case 'v': c->verbose = true; c->log_level = GD_LOG_DEBUG; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
    if (!ok) {
      int at = optind - 1; /* file settings are all "--key=value": one argument */
      if (config_lines && at > 0 && config_lines[at])
        fprintf(stderr, "graphd: %s:%d: %s: invalid value '%s'\n", c->config_file,
                config_lines[at], name + 2, optarg);
      else
        fprintf(stderr, "graphd: %s: invalid value '%s'\n", name, optarg);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "graphd: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!c->tls_cert != !c->tls_key) {
    fprintf(stderr, "graphd: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (c->tls_client_ca && !c->tls_cert) {
    fprintf(stderr, "graphd: --tls-client-ca needs --tls-cert and --tls-key\n");
    return 2;
  }
  if (!c->data) {
    fprintf(stderr, "graphd: --data DIR is required\n");
    usage(stderr);
    return 2;
  }
  return 0;
}

/* Reads a whole (PEM) file into a NUL-terminated string; NULL + message. */
static char *read_pem(const char *flag, const char *path) {
  FILE *f = fopen(path, "r");
  char *buf = NULL;
  size_t n = 0;
  if (f) {
    buf = malloc(1 << 20);
    n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    bool bad = ferror(f) || !feof(f);
    fclose(f);
    if (!buf || bad || n == 0) {
      gd_error("%s %s: %s", flag, path, !buf ? "out of memory" : n == 0 ? "empty" : "over 1 MiB or unreadable");
      free(buf);
      return NULL;
    }
    buf[n] = 0;
    return buf;
  }
  gd_error("%s %s: %s", flag, path, strerror(errno));
  return NULL;
}

/*
 * The clustering worker: --worker; else graphd-worker next to graphd (a
 * build tree); else the installed one (GD_WORKER_INSTALLED, under
 * libexecdir).
 */
static void find_worker(const config *c, char *path, size_t n) {
  if (c->worker) {
    snprintf(path, n, "%s", c->worker);
    return;
  }
  ssize_t len = readlink("/proc/self/exe", path, n - 32);
  if (len < 0)
    len = 0;
  path[len] = 0;
  char *slash = strrchr(path, '/');
  snprintf(slash ? slash + 1 : path, n - (size_t)(slash ? slash + 1 - path : 0), "%s",
           "graphd-worker");
#ifdef GD_WORKER_INSTALLED
  if (access(path, X_OK) != 0)
    snprintf(path, n, "%s", GD_WORKER_INSTALLED);
#endif
}

/*
 * The console's files: --console-dir; else those installed with graphd
 * (GD_CONSOLE_INSTALLED, under datadir) when this is the installed graphd
 * or they are there; else the source tree's (a build tree).
 */
static void find_console(const config *c, char *path, size_t n) {
  if (c->console_dir) {
    snprintf(path, n, "%s", c->console_dir);
    return;
  }
  path[0] = 0;
#if defined(GD_CONSOLE_INSTALLED) && defined(GD_CONSOLE_SRC)
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[len > 0 ? len : 0] = 0;
  bool installed = strcmp(exe, GD_BIN_INSTALLED) == 0;
  snprintf(path, n, "%s",
           installed || access(GD_CONSOLE_SRC "/index.html", R_OK) != 0 ? GD_CONSOLE_INSTALLED
                                                                       : GD_CONSOLE_SRC);
#endif
}

/* Whether HOST:PORT (or a unix: target) can only be reached from this
 * machine. */
static bool loopback_only(const char *listen) {
  if (strncmp(listen, "unix:", 5) == 0)
    return true;
  const char *colon = strrchr(listen, ':');
  size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
  char host[256];
  if (n >= sizeof host)
    return false;
  memcpy(host, listen, n);
  host[n] = 0;
  return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
         strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* Whether the data directory exists and is writable, or can be created. */
static bool data_dir_usable(const char *dir, char *why, size_t n) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return snprintf(why, n, "not a directory"), false;
    if (access(dir, R_OK | W_OK | X_OK) != 0)
      return snprintf(why, n, "%s", strerror(errno)), false;
    return true;
  }
  if (errno != ENOENT)
    return snprintf(why, n, "%s", strerror(errno)), false;
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash == parent)
    slash[1] = 0;
  else if (slash)
    *slash = 0;
  else
    snprintf(parent, sizeof parent, ".");
  if (access(parent, W_OK | X_OK) != 0)
    return snprintf(why, n, "missing, and cannot be created in %.300s: %s", parent, strerror(errno)), false;
  return true;
}

/*
 * --check-config: everything graphd would check at start without starting
 * (no store is opened, no port bound). Prints the settings given and one
 * line per problem; 0 when valid, 1 when not.
 */
static int check_config(const config *c) {
  int bad = 0;
  char why[512];
  printf("# graphd %s: settings given%s%s (the rest take their defaults)\n", GD_VERSION,
         c->config_file ? " in " : "", c->config_file ? c->config_file : "");
  for (int i = 0; i < c->nsettings; i++)
    printf("%s = %s\n", c->setting_key[i], c->setting_val[i]);
  if (!data_dir_usable(c->data, why, sizeof why)) {
    fprintf(stderr, "graphd: --data %s: %s\n", c->data, why);
    bad++;
  }
  const char *colon = strrchr(c->listen, ':');
  long port;
  if (strncmp(c->listen, "unix:", 5) != 0 &&
      (!colon || colon == c->listen || !parse_long(colon + 1, 0, 65535, &port))) {
    fprintf(stderr, "graphd: --listen %s: expected HOST:PORT\n", c->listen);
    bad++;
  }
  if (c->tokens) {
    gd_auth *auth;
    gd_err err;
    if (gd_auth_load(c->tokens, &auth, &err)) {
      fprintf(stderr, "graphd: %s\n", err.msg);
      bad++;
    } else {
      printf("# %zu token(s) in %s\n", gd_auth_count(auth), c->tokens);
      gd_auth_free(auth);
    }
  } else if (!loopback_only(c->listen) && !c->insecure_no_auth && !c->tls_client_ca) {
    fprintf(stderr, "graphd: --listen %s without --tokens: refused (every caller would be "
                    "admin; use a loopback address, --tokens FILE, or --insecure-no-auth)\n",
            c->listen);
    bad++;
  }
  if (c->http_listen && !c->tokens && !loopback_only(c->http_listen) && !c->insecure_no_auth) {
    fprintf(stderr, "graphd: --http-listen %s without --tokens: refused (the HTTP gateway "
                    "does not ask for client certificates; every caller would be admin)\n",
            c->http_listen);
    bad++;
  }
  const char *pem_flag[] = {"--tls-cert", "--tls-key", "--tls-client-ca"};
  const char *pem_path[] = {c->tls_cert, c->tls_key, c->tls_client_ca};
  for (int i = 0; i < 3; i++) {
    if (!pem_path[i])
      continue;
    char *pem = read_pem(pem_flag[i], pem_path[i]);
    if (!pem)
      bad++; /* read_pem logged why */
    else if (!strstr(pem, "-----BEGIN "))
      fprintf(stderr, "graphd: %s %s: not PEM\n", pem_flag[i], pem_path[i]), bad++;
    if (pem)
      OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
  }
  char worker_path[4096];
  find_worker(c, worker_path, sizeof worker_path);
  if (access(worker_path, X_OK) != 0) {
    fprintf(stderr, "graphd: worker %s: %s (clustering jobs would fail)\n", worker_path,
            strerror(errno));
    bad++;
  }
  if (c->default_deadline_ms > c->max_deadline_ms)
    fprintf(stderr, "graphd: note: --default-deadline-ms %ld is over --max-deadline-ms %ld "
                    "and will be clamped\n", c->default_deadline_ms, c->max_deadline_ms);
  if (bad) {
    fprintf(stderr, "graphd: configuration invalid: %d problem(s)\n", bad);
    return 1;
  }
  printf("# configuration OK\n");
  return 0;
}

/* Frees the PEM texts, wiping the private key first. */
static void free_pems(char **cert, char **key, char **ca) {
  if (*key)
    OPENSSL_cleanse(*key, strlen(*key));
  free(*cert), free(*key), free(*ca);
  *cert = *key = *ca = NULL;
}

/* gd_metrics_set_budget's reader: the rpc context's write budget. */
static void budget_read(void *ctx, gd_metrics_budget *ret) {
  gd_budget_stats st;
  gd_rpc_budget_stats(ctx, &st);
  *ret = (gd_metrics_budget){st.in_use, st.cap, st.trims};
}

int main(int argc, char **argv) {
  config cfg;
  gd_store *store = NULL;
  gd_writer *writer = NULL;
  gd_rpc *rpc = NULL;
  gd_server *server = NULL;
  gd_auth *auth = NULL;
  gd_jobs *jobs = NULL;
  gd_signer *signer = NULL;
  gd_metrics *metrics = NULL;
  gd_metrics_http *metrics_http = NULL;
  char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
  bool grpc_up = false;
  int status = 1; /* until the drain */
  gd_err err;
  int port, rc;

  if ((rc = parse_args(argc, argv, &cfg)))
    return rc;
  /* Requests allocate and free short-lived blocks on several threads.
   * glibc's defaults hand such memory back to the kernel (trim, munmap) as
   * soon as it is free, and each return costs a TLB shootdown across the
   * handler threads; keep it instead (measured: ~15% of a 2-hop
   * LinkedSellers call went to that churn). */
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  gd_log_set_level(cfg.log_level);
  gd_log_set_json(cfg.log_json);
  if (cfg.check_config)
    return check_config(&cfg);

  /* Before any thread exists: every thread inherits the mask, and main
   * takes the signals synchronously. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (cfg.tokens) {
    if (gd_auth_load(cfg.tokens, &auth, &err)) {
      gd_error("%s", err.msg);
      goto out;
    }
    gd_info("%zu token(s) loaded from %s", gd_auth_count(auth), cfg.tokens);
  } else if (!loopback_only(cfg.listen) && !cfg.insecure_no_auth && !cfg.tls_client_ca) {
    gd_error("refusing to listen on %s without --tokens: every caller would be admin "
             "(use a loopback address, give --tokens FILE, or --insecure-no-auth)",
             cfg.listen);
    goto out;
  }
  if (cfg.http_listen && !cfg.tokens && !loopback_only(cfg.http_listen) &&
      !cfg.insecure_no_auth) {
    gd_error("refusing --http-listen %s without --tokens: the HTTP gateway does not ask for "
             "client certificates, so every caller would be admin (use a loopback address, "
             "give --tokens FILE, or --insecure-no-auth)",
             cfg.http_listen);
    goto out;
  }

  if (cfg.tls_cert && (!(tls_cert = read_pem("--tls-cert", cfg.tls_cert)) ||
                       !(tls_key = read_pem("--tls-key", cfg.tls_key)) ||
                       (cfg.tls_client_ca &&
                        !(tls_ca = read_pem("--tls-client-ca", cfg.tls_client_ca)))))
    goto out; /* read_pem logged why */

  gd_store_opts so = {
      .path = cfg.data,
      .map_size = cfg.map_size_mb << 20,
      .map_size_max = cfg.map_size_max_mb << 20,
  };
  if (gd_store_open(&so, &store, &err) || gd_writer_start(store, 0, &writer, &err)) {
    gd_error("%s", err.msg);
    goto out;
  }
  gd_rpc_limits lim = {
      .max_batch_items = (size_t)cfg.max_batch_items,
      .result_cap = (size_t)cfg.result_cap,
      .max_reply_bytes = (size_t)cfg.max_message_bytes,
      .max_request_alloc = (size_t)cfg.max_request_alloc,
      .ingest_inflight = 256,
      .ingest_window_bytes = 64 << 20,
      .cluster_max_sellers = (uint64_t)cfg.cluster_max_sellers,
      .max_query_work = (uint64_t)cfg.max_query_work,
      .audit = !cfg.no_audit,
      .audit_reads_async = !cfg.audit_reads_sync,
  };
  for (int r = 0; r <= GD_ROLE_ADMIN; r++)
    lim.max_hub_cap[r] = (uint64_t)cfg.max_hub_cap[r];
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  size_t mem = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)2 << 30;
  if (cfg.write_budget >= 0)
    lim.write_budget_bytes = (size_t)cfg.write_budget;
  else
    lim.write_budget_bytes = mem / 8 > ((size_t)256 << 20) ? mem / 8 : (size_t)256 << 20;
  lim.import_max_rows = (uint64_t)(cfg.import_max_rows >= 0 ? cfg.import_max_rows
                                                            : cfg.cluster_max_sellers);
  if (cfg.bulk_max >= 0)
    lim.bulk_max_bytes = (size_t)cfg.bulk_max;
  else
    lim.bulk_max_bytes = mem / 4 > ((size_t)256 << 20) ? mem / 4 : (size_t)256 << 20;
  if (lim.write_budget_bytes)
    gd_info("write budget: %zu MiB of decoded writes in flight (--write-budget-bytes)",
            lim.write_budget_bytes >> 20);
  char worker_path[4096];
  find_worker(&cfg, worker_path, sizeof worker_path);
  if (access(worker_path, X_OK) != 0)
    gd_warn("worker %s: %s (clustering jobs will fail)", worker_path, strerror(errno));
  size_t nmethods, restored = 0;
  if (gd_rpc_new(store, writer, &lim, &rpc, &err)) {
    gd_error("%s", err.msg);
    goto out;
  }
  const gd_method *methods = gd_rpc_methods(rpc, &nmethods);
  /* Metrics: the registry exists before anything reports to it (the job
   * restore below already commits). */
  if (cfg.metrics_listen) {
    gd_metrics_opts mo = {.methods = methods, .nmethods = nmethods, .version = GD_VERSION};
    if (gd_metrics_new(&mo, &metrics, &err)) {
      gd_error("%s", err.msg);
      goto out;
    }
    gd_writer_observe(writer, gd_metrics_commit, metrics);
  }
  gd_jobs_opts jo = {
      .worker_path = worker_path,
      .data_dir = cfg.data,
      .journal = gd_rpc_jobs_journal(rpc),
      .max_sellers = (uint64_t)cfg.cluster_max_sellers,
      .max_ties = (uint64_t)cfg.cluster_max_ties,
      .stage_done = metrics ? gd_metrics_job_stage : NULL,
      .stage_ctx = metrics,
  };
  if (gd_jobs_start(&jo, &jobs, &err) ||
      gd_rpc_jobs_restore(rpc, jobs, &restored, &err)) {
    gd_error("%s", err.msg);
    goto out;
  }
  if (restored)
    gd_info("restored %zu clustering job record(s)", restored);
  gd_rpc_set_jobs(rpc, jobs);
  {
    char kp[4096];
    const char *path = cfg.signing_key;
    if (!path) {
      snprintf(kp, sizeof kp, "%s/signing-key.pem", cfg.data);
      path = kp;
    }
    if (gd_signer_open(path, true, &signer, &err)) {
      gd_error("%s", err.msg);
      goto out;
    }
    gd_rpc_set_signer(rpc, signer);
    gd_info("evidence packs signed with key %s (%s)", gd_signer_key_id(signer), path);
  }
  if (cfg.placement_queue > 0) {
    gd_place_opts po = {.queue_max = (uint64_t)cfg.placement_queue,
                        .alert_history = (uint64_t)cfg.alert_history};
    if (metrics) {
      po.observe = gd_metrics_placement;
      po.observe_ctx = metrics;
    }
    if (gd_rpc_place_start(rpc, &po, &err)) {
      gd_error("%s", err.msg);
      goto out;
    }
  }

  if (metrics) {
    int mport;
    gd_metrics_set_sources(metrics, store, writer, jobs);
    gd_metrics_set_budget(metrics, budget_read, rpc);
    if (gd_metrics_http_start(metrics, cfg.metrics_listen, &metrics_http, &mport, &err)) {
      gd_error("%s", err.msg);
      goto out;
    }
    /* HOST part as given, real port. */
    const char *mc = strrchr(cfg.metrics_listen, ':');
    gd_info("metrics on %.*s:%d", (int)(mc - cfg.metrics_listen), cfg.metrics_listen, mport);
  }

  grpc_init();
  grpc_up = true;
  char console_dir[4096];
  find_console(&cfg, console_dir, sizeof console_dir);
  gd_server_opts sv = {
      .listen = cfg.listen,
      .threads = cfg.threads,
      .max_recv_bytes = (int)cfg.max_message_bytes,
      .max_send_bytes = (int)cfg.max_message_bytes,
      .default_deadline_ms = cfg.default_deadline_ms,
      .max_deadline_ms = cfg.max_deadline_ms,
      .max_concurrent_streams = (int)cfg.max_streams,
      .max_calls = (unsigned)cfg.max_calls,
      .reserved_calls = (unsigned)(cfg.reserved_calls >= 0 ? cfg.reserved_calls : cfg.max_calls / 10),
      .max_calls_per_peer = (unsigned)cfg.max_calls_per_peer,
      .stream_idle_ms = cfg.stream_idle_ms,
      .query_threads = (unsigned)cfg.query_threads,
      .keepalive_time_ms = (int)cfg.keepalive_time_ms,
      .keepalive_timeout_ms = (int)cfg.keepalive_timeout_ms,
      .min_ping_interval_ms = (int)cfg.min_ping_interval_ms,
      .auth = auth,
      .tls_cert_pem = tls_cert,
      .tls_key_pem = tls_key,
      .tls_client_ca_pem = tls_ca,
      .http_listen = cfg.http_listen,
      .http_prefix = "/graphd.v1.SellerGraph/",
      .http_static_dir = console_dir[0] ? console_dir : NULL,
  };
  if (metrics) {
    sv.call_begin = gd_metrics_call_begin;
    sv.call_end = gd_metrics_call_end;
    sv.call_ctx = metrics;
  }
  if (!cfg.no_audit)
    gd_rpc_audit_hooks(rpc, &sv.audit, &sv.audit_now, &sv.audit_ready, &sv.audit_ctx);
  rc = gd_server_start(&sv, methods, nmethods, &server, &port, &err);
  free_pems(&tls_cert, &tls_key, &tls_ca); /* only needed to start */
  if (rc) {
    gd_error("%s", err.msg);
    goto out;
  }

  /* HOST part as given, real port. */
  if (cfg.http_listen) {
    const char *hc = strrchr(cfg.http_listen, ':');
    printf("http listening on %.*s:%d\n", (int)(hc - cfg.http_listen), cfg.http_listen,
           gd_server_http_port(server));
    gd_info("HTTP/JSON and the console on port %d (files: %s)", gd_server_http_port(server),
            console_dir[0] ? console_dir : "none");
  }
  const char *colon = strrchr(cfg.listen, ':');
  int hostlen = colon ? (int)(colon - cfg.listen) : (int)strlen(cfg.listen);
  printf("listening on %.*s:%d\n", hostlen, cfg.listen, port);
  fflush(stdout);
  gd_info("serving %s on port %d", cfg.data, port);

  /* Wait for a termination signal; clear dead readers now and then. */
  int64_t last_check = gd_now_ns();
  for (;;) {
    struct timespec ts = {1, 0};
    int sig = sigtimedwait(&sigs, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      gd_info("signal %d: draining", sig);
      break;
    }
    if (sig == SIGHUP && auth) {
      size_t n;
      if (gd_auth_reload(auth, &n, &err))
        gd_error("SIGHUP: tokens not reloaded, the old ones stay in force: %s", err.msg);
      else
        gd_info("SIGHUP: %zu token(s) reloaded from %s", n, cfg.tokens);
    }
    /* Slots of reader processes that died holding a transaction pin old
     * pages (the file grows): cleared every minute, and on SIGHUP. */
    if (sig == SIGHUP || gd_now_ns() - last_check > 60LL * 1000000000) {
      int dead = gd_store_reader_check(store);
      if (dead)
        gd_info("cleared %d stale reader slot(s)", dead);
      last_check = gd_now_ns();
    }
  }

  gd_rpc_set_serving(rpc, 0);
  status = 0;

out:
  /* One teardown, for the drain and for a start that failed part way
   * (each step accepts what was never made). Jobs first: queued ones are
   * cancelled, the running worker is signalled and reaped (so job watchers
   * see their job end and the drain is not held by them), before the server
   * drains and the store closes. Scrapes read the store, the writer, the
   * jobs and the rpc context's budget: stop serving them first; every hook
   * user (server, writer, jobs) is done before the registry is freed. The
   * rpc context goes once no call runs and the writer has called back every
   * op that carries it. */
  gd_jobs_stop(jobs);
  if (server)
    gd_server_shutdown(server, cfg.grace_ms);
  gd_metrics_http_stop(metrics_http);
  gd_rpc_place_stop(rpc); /* its last batch commits through the writer */
  gd_writer_stop(writer);
  gd_rpc_free(rpc);
  gd_signer_free(signer);
  gd_jobs_free(jobs);
  gd_store_close(store);
  gd_metrics_free(metrics);
  if (grpc_up)
    grpc_shutdown_blocking();
  gd_auth_free(auth);
  free_pems(&tls_cert, &tls_key, &tls_ca);
  if (status == 0)
    gd_info("stopped");
  return status;
}
