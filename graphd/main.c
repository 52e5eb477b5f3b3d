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
 * the writer commits what is queued and stops, the store closes, and the
 * process exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "jobs/jobs.h"
#include "rpc/rpc.h"
#include "server/server.h"

#include <openssl/crypto.h>
#include "store/store.h"
#include "store/writer.h"

typedef struct config {
  const char *data;
  const char *listen;
  const char *worker;
  unsigned threads;
  uint64_t map_size_mb, map_size_max_mb;
  long max_message_bytes;
  long max_batch_items;
  long result_cap;
  long default_deadline_ms, max_deadline_ms;
  long grace_ms;
  long max_streams;
  long max_calls, keepalive_time_ms, keepalive_timeout_ms, min_ping_interval_ms;
  long cluster_max_sellers, cluster_max_ties;
  const char *tokens;
  const char *tls_cert, *tls_key, *tls_client_ca;
  bool insecure_no_auth;
  bool no_audit;
  bool audit_reads_sync;
  bool verbose;
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
        "  --threads N              gRPC handler threads (default: number of cores)\n"
        "  --map-size-mb N          initial LMDB map size (default 1024); grows x2 when full\n"
        "  --map-size-max-mb N      map growth limit (default 1048576)\n"
        "  --max-message-bytes N    largest request or reply message (default 4194304)\n"
        "  --max-batch-items N      entities plus links per UpsertRequest (default 100000)\n"
        "  --result-cap N           largest 'limit' a read accepts (default 10000)\n"
        "  --default-deadline-ms N  deadline for calls that carry none (default 60000)\n"
        "  --max-deadline-ms N      clamp on every call's deadline (default 3600000)\n"
        "  --grace-ms N             shutdown drain period (default 10000)\n"
        "  --max-streams N          concurrent streams per connection (default 1000)\n"
        "  --max-calls N            calls in flight over all connections (default 10000)\n"
        "  --keepalive-time-ms N    ping an idle connection this often (default 60000)\n"
        "  --keepalive-timeout-ms N ... and drop it without an answer by then (default 20000)\n"
        "  --min-ping-interval-ms N clients may ping no more often (default 10000)\n"
        "  --worker PATH            the graphd-worker executable (default: next to graphd)\n"
        "  --cluster-max-sellers N  largest graph a clustering job takes, in sellers\n"
        "                           (default 20000000; StartClustering checks it first)\n"
        "  --cluster-max-ties N     ... and in seller-seller ties (default 200000000;\n"
        "                           checked before igraph is called: the job fails)\n"
        "  --tokens FILE            bearer tokens, 'TOKEN ROLE NAME' per line (roles:\n"
        "                           reader, investigator, writer, admin); reloaded on\n"
        "                           SIGHUP. Without it every caller is admin, and graphd\n"
        "                           listens on loopback only unless --insecure-no-auth\n"
        "  --insecure-no-auth       allow a non-loopback --listen without --tokens\n"
        "  --no-audit               keep no audit trail (benchmarks; not for production)\n"
        "  --audit-reads MODE       async (default): a successful read replies at once and\n"
        "                           its record commits with the next group; sync: it waits\n"
        "                           for its record to be durable, like writes and refusals\n"
        "  --tls-cert FILE          serve TLS with this PEM certificate chain ...\n"
        "  --tls-key FILE           ... and this PEM private key\n"
        "  --tls-client-ca FILE     require client certificates signed by this CA (mTLS);\n"
        "                           a certificate's CN may stand in for a token\n"
        "                           ('x509:CN ROLE NAME' in --tokens)\n"
        "  -v, --verbose            debug logging\n"
        "  -h, --help               this text\n"
        "\n"
        "Signals: SIGTERM or SIGINT drain and exit 0; SIGHUP reloads --tokens.\n"
        "Exit codes: 0 clean shutdown; 1 cannot start (the log says why); 2 usage.\n",
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

static int parse_args(int argc, char **argv, config *c) {
  enum {
    O_DATA = 256, O_LISTEN, O_THREADS, O_MAP, O_MAPMAX, O_MSG, O_BATCH, O_CAP, O_DDL, O_MDL,
    O_GRACE, O_STREAMS, O_WORKER, O_CMAXS, O_CMAXT, O_TOKENS, O_INSECURE, O_TLS_CERT,
    O_TLS_KEY, O_TLS_CA, O_NO_AUDIT, O_MAXCALLS, O_KA_TIME, O_KA_TIMEOUT, O_MIN_PING,
    O_AUDIT_READS,
  };
  static const struct option opts[] = {
      {"data", required_argument, NULL, O_DATA},
      {"listen", required_argument, NULL, O_LISTEN},
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
      {"insecure-no-auth", no_argument, NULL, O_INSECURE},
      {"no-audit", no_argument, NULL, O_NO_AUDIT},
      {"audit-reads", required_argument, NULL, O_AUDIT_READS},
      {"max-calls", required_argument, NULL, O_MAXCALLS},
      {"keepalive-time-ms", required_argument, NULL, O_KA_TIME},
      {"keepalive-timeout-ms", required_argument, NULL, O_KA_TIMEOUT},
      {"min-ping-interval-ms", required_argument, NULL, O_MIN_PING},
      {"tls-cert", required_argument, NULL, O_TLS_CERT},
      {"tls-key", required_argument, NULL, O_TLS_KEY},
      {"tls-client-ca", required_argument, NULL, O_TLS_CA},
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
  };
  int ch;
  long v;
  while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    const char *name = NULL;
    bool ok = true;
    switch (ch) {
    case O_DATA: c->data = optarg; break;
    case O_LISTEN: c->listen = optarg; break;
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
    case O_INSECURE: c->insecure_no_auth = true; break;
    case O_NO_AUDIT: c->no_audit = true; break;
    case O_AUDIT_READS:
      ok = strcmp(optarg, "sync") == 0 || strcmp(optarg, "async") == 0;
      c->audit_reads_sync = strcmp(optarg, "sync") == 0;
      name = "--audit-reads";
      break;
    case O_MAXCALLS: ok = parse_long(optarg, 1, 10000000, &c->max_calls); name = "--max-calls"; break;
    case O_KA_TIME: ok = parse_long(optarg, 1000, 86400000, &c->keepalive_time_ms); name = "--keepalive-time-ms"; break;
    case O_KA_TIMEOUT: ok = parse_long(optarg, 100, 3600000, &c->keepalive_timeout_ms); name = "--keepalive-timeout-ms"; break;
    case O_MIN_PING: ok = parse_long(optarg, 100, 86400000, &c->min_ping_interval_ms); name = "--min-ping-interval-ms"; break;
    case O_TLS_CERT: c->tls_cert = optarg; break;
    case O_TLS_KEY: c->tls_key = optarg; break;
    case O_TLS_CA: c->tls_client_ca = optarg; break;
    case O_CMAXT: ok = parse_long(optarg, 1, 1L << 40, &c->cluster_max_ties); name = "--cluster-max-ties"; break;
    case 'v': c->verbose = true; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
    if (!ok) {
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

int main(int argc, char **argv) {
  config cfg;
  gd_store *store = NULL;
  gd_writer *writer = NULL;
  gd_server *server = NULL;
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
  if (cfg.verbose)
    gd_log_set_level(GD_LOG_DEBUG);

  /* Before any thread exists: every thread inherits the mask, and main
   * takes the signals synchronously. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  /* The schema served by reflection (embedded at build time). */
  if (gd_rpc_reflection_load(&err)) {
    gd_error("reflection: %s", err.msg);
    return 1;
  }

  gd_auth *auth = NULL;
  if (cfg.tokens) {
    if (gd_auth_load(cfg.tokens, &auth, &err)) {
      gd_error("%s", err.msg);
      return 1;
    }
    gd_info("%zu token(s) loaded from %s", gd_auth_count(auth), cfg.tokens);
  } else if (!loopback_only(cfg.listen) && !cfg.insecure_no_auth && !cfg.tls_client_ca) {
    gd_error("refusing to listen on %s without --tokens: every caller would be admin "
             "(use a loopback address, give --tokens FILE, or --insecure-no-auth)",
             cfg.listen);
    return 1;
  }

  char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
  if (cfg.tls_cert && (!(tls_cert = read_pem("--tls-cert", cfg.tls_cert)) ||
                       !(tls_key = read_pem("--tls-key", cfg.tls_key)) ||
                       (cfg.tls_client_ca &&
                        !(tls_ca = read_pem("--tls-client-ca", cfg.tls_client_ca))))) {
    free(tls_cert), free(tls_key), free(tls_ca);
    gd_auth_free(auth);
    return 1;
  }

  gd_store_opts so = {
      .path = cfg.data,
      .map_size = cfg.map_size_mb << 20,
      .map_size_max = cfg.map_size_max_mb << 20,
  };
  if (gd_store_open(&so, &store, &err)) {
    gd_error("%s", err.msg);
    gd_auth_free(auth);
    return 1;
  }
  if (gd_writer_start(store, 0, &writer, &err)) {
    gd_error("%s", err.msg);
    gd_store_close(store);
    gd_auth_free(auth);
    return 1;
  }
  gd_rpc_limits lim = {
      .max_batch_items = (size_t)cfg.max_batch_items,
      .result_cap = (size_t)cfg.result_cap,
      .max_reply_bytes = (size_t)cfg.max_message_bytes,
      .ingest_inflight = 256,
      .ingest_window_bytes = 16 << 20,
      .cluster_max_sellers = (uint64_t)cfg.cluster_max_sellers,
      .audit = !cfg.no_audit,
      .audit_reads_async = !cfg.audit_reads_sync,
  };
  /* The clustering worker: --worker, or graphd-worker next to graphd. */
  char worker_path[4096];
  if (cfg.worker) {
    snprintf(worker_path, sizeof worker_path, "%s", cfg.worker);
  } else {
    ssize_t n = readlink("/proc/self/exe", worker_path, sizeof worker_path - 32);
    if (n < 0)
      n = 0;
    worker_path[n] = 0;
    char *slash = strrchr(worker_path, '/');
    snprintf(slash ? slash + 1 : worker_path,
             sizeof worker_path - (size_t)(slash ? slash + 1 - worker_path : 0), "%s",
             "graphd-worker");
  }
  if (access(worker_path, X_OK) != 0)
    gd_warn("worker %s: %s (clustering jobs will fail)", worker_path, strerror(errno));
  size_t nmethods, restored = 0;
  const gd_method *methods = gd_rpc_methods(store, writer, &lim, &nmethods);
  gd_jobs *jobs = NULL;
  gd_jobs_opts jo = {
      .worker_path = worker_path,
      .data_dir = cfg.data,
      .journal = gd_rpc_jobs_journal(),
      .max_sellers = (uint64_t)cfg.cluster_max_sellers,
      .max_ties = (uint64_t)cfg.cluster_max_ties,
  };
  if (gd_jobs_start(&jo, &jobs, &err) ||
      gd_rpc_jobs_restore(jobs, &restored, &err)) {
    gd_error("%s", err.msg);
    gd_jobs_stop(jobs);
    gd_jobs_free(jobs);
    gd_writer_stop(writer);
    gd_store_close(store);
    gd_auth_free(auth);
    return 1;
  }
  if (restored)
    gd_info("restored %zu clustering job record(s)", restored);
  gd_rpc_set_jobs(jobs);

  grpc_init();
  gd_server_opts sv = {
      .listen = cfg.listen,
      .threads = cfg.threads,
      .max_recv_bytes = (int)cfg.max_message_bytes,
      .max_send_bytes = (int)cfg.max_message_bytes,
      .default_deadline_ms = cfg.default_deadline_ms,
      .max_deadline_ms = cfg.max_deadline_ms,
      .max_concurrent_streams = (int)cfg.max_streams,
      .max_calls = (unsigned)cfg.max_calls,
      .keepalive_time_ms = (int)cfg.keepalive_time_ms,
      .keepalive_timeout_ms = (int)cfg.keepalive_timeout_ms,
      .min_ping_interval_ms = (int)cfg.min_ping_interval_ms,
      .auth = auth,
      .tls_cert_pem = tls_cert,
      .tls_key_pem = tls_key,
      .tls_client_ca_pem = tls_ca,
  };
  if (!cfg.no_audit)
    gd_rpc_audit_hooks(&sv.audit, &sv.audit_ready);
  rc = gd_server_start(&sv, methods, nmethods, &server, &port, &err);
  if (tls_key)
    OPENSSL_cleanse(tls_key, strlen(tls_key));
  free(tls_cert), free(tls_key), free(tls_ca);
  if (rc) {
    gd_error("%s", err.msg);
    gd_jobs_stop(jobs);
    gd_jobs_free(jobs);
    gd_writer_stop(writer);
    gd_store_close(store);
    grpc_shutdown_blocking();
    gd_auth_free(auth);
    return 1;
  }

  /* HOST part as given, real port. */
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
    if (gd_now_ns() - last_check > 60LL * 1000000000) {
      int dead = gd_store_reader_check(store);
      if (dead)
        gd_info("cleared %d stale reader slot(s)", dead);
      last_check = gd_now_ns();
    }
  }

  gd_rpc_set_serving(0);
  /* Jobs first: queued ones are cancelled, the running worker is signalled
   * and reaped (so job watchers see their job end and the drain is not held
   * by them), before the server drains and the store closes. */
  gd_jobs_stop(jobs);
  gd_server_shutdown(server, cfg.grace_ms);
  gd_writer_stop(writer);
  gd_jobs_free(jobs);
  gd_store_close(store);
  grpc_shutdown_blocking();
  gd_auth_free(auth);
  gd_rpc_reflection_free();
  gd_info("stopped");
  return 0;
}
