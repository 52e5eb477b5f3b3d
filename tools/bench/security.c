/*
 * graphd-bench security: what TLS, and authentication plus the audit trail,
 * cost in read throughput and latency, against a plaintext daemon with no
 * tokens and no audit trail measured in the same run on the same data.
 *
 * main (bench.c) generates the data (sellergen, or --links) and ingests
 * it once through graphd's Ingest rpc (bench_ingest, one repeat, data dir
 * kept), samples the request keys as the read mode does (read_keys_build:
 * --sample random sellers), and calls bench_security, which:
 *
 * 1. Makes the credentials in WORKROOT/security: a self-signed certificate
 *    with `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj
 *    /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1`
 *    (key.pem, cert.pem; the client trusts cert.pem and checks the name
 *    "localhost" while connecting to 127.0.0.1), and a tokens file (mode
 *    0600) with one random 64-hex-digit token of role reader. A second
 *    random token, not in the file, serves the "wrong token" check.
 *
 * 2. Per repeat, per configuration (the order rotates by one each repeat:
 *    repeat 1 plain, tls, auth+audit, tls+auth+audit; repeat 2 tls, ...,
 *    plain; ... so that every configuration takes every position and slow
 *    drift of the machine does not always favour the same one):
 *      plain           graphd --no-audit (plaintext, no --tokens): the
 *                      reference every ratio is taken to
 *      tls             --no-audit --tls-cert --tls-key
 *      auth+audit      --tokens FILE, audit on (graphd's default: every
 *                      call's audit record goes through the group writer
 *                      and the reply waits until it is durable)
 *      tls+auth+audit  --tokens FILE --tls-cert --tls-key, audit on
 *      auth            --tokens FILE --no-audit, plaintext: only with
 *                      --configs (auth or all), to tell the cost of
 *                      checking tokens from that of the audit trail
 *    (plus every --graphd-arg), each a daemon of its own started on the
 *    same data dir (graphd --data DIR --listen 127.0.0.1:0), one at a
 *    time:
 *    (a) Checks, with blocking gc_unary calls on their own connections:
 *        the configuration's own client (TLS trusting cert.pem, the
 *        reader token) gets OK from Health/Check and Stats; with tokens,
 *        Stats without a token and with the wrong token must be refused
 *        UNAUTHENTICATED, and Health/Check without a token must be OK
 *        (it needs no role); with TLS, a plaintext client's Health/Check
 *        must fail. Stats gives the group-commit counters before (b).
 *    (b) The read measurements, exactly as `read` makes them
 *        (read_measure: --client, default async, at each
 *        --concurrency-list value, default 1 and 16 in flight, for
 *        --duration seconds each after the untimed warm-up calls on a
 *        fresh connection, so TCP and TLS handshakes are not timed), for
 *        each rpc of --rpcs (default health, get: Health/Check, the floor,
 *        and GetEntity of a random sampled seller). In the secure
 *        configurations the async client makes its channel with
 *        grpc_ssl_credentials_create(cert.pem) (and
 *        GRPC_SSL_TARGET_NAME_OVERRIDE_ARG "localhost"), and every call's
 *        SEND_INITIAL_METADATA carries `authorization: Bearer TOKEN` (one
 *        grpc_metadata array per measurement); the sync client passes the
 *        same through gc_client_opts. Health/Check also carries the token;
 *        graphd does not record health checks in its audit trail.
 *    (c) Stats again: the commits and committed requests since (a). With
 *        audit on they must have grown by at least the timed calls other
 *        than health checks (each leaves a record; successful reads reply
 *        before their record commits, with --audit-reads async, graphd's
 *        default; the count also has warm-up calls and the checks), and
 *        their ratio is the audit records per commit (per
 *        fdatasync); with --no-audit a read-only daemon commits nothing,
 *        so any growth is an anomaly. Then VmHWM, SIGTERM, exit 0
 *        expected.
 *    Any failed check or call is an anomaly (exit 1).
 *
 * 3. Reported per configuration, point and rpc: medians over the repeats
 *    of QPS, p50, p99, p99.9, client and daemon CPU per call and other
 *    tenants' cores, and against plain: QPS, p50 and p99 ratios, each the
 *    median of the per-repeat ratios (same point, same repeat), and the
 *    cost in percent: QPS cost = (1 - QPS ratio) * 100 (throughput lost),
 *    p99 cost = (p99 ratio - 1) * 100 (added tail latency); negative
 *    means faster than plain, which happens within the noise. There is no
 *    target: nothing is marked met or missed.
 *
 * Notes. The audit records the secure configurations write stay in the
 * data dir, so later daemons (plain included) serve a data file that has
 * grown by them; GetEntity reads other tables and the growth is a few
 * tens of MB at most, but the LMDB file size is in the JSON per daemon.
 * Every daemon starts cold in its own process but the data dir's pages
 * stay in the OS page cache between daemons (the ingest loaded them
 * first), so no configuration pays a cold cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"
#include "health.pb-c.h"

const char *const sec_config_names[SEC__COUNT] = {"plain", "tls", "auth", "auth+audit",
                                                  "tls+auth+audit"};
static const char *const sec_json_names[SEC__COUNT] = {"plain", "tls", "auth", "auth_audit",
                                                       "tls_auth_audit"};
static const char *const sec_descs[SEC__COUNT] = {
    "plaintext, no --tokens, --no-audit (the reference)",
    "TLS (self-signed RSA-2048 certificate the client trusts), no --tokens, --no-audit",
    "plaintext, --tokens (a reader token sent as 'authorization: Bearer' on every call), "
    "--no-audit",
    "plaintext, --tokens (a reader token sent as 'authorization: Bearer' on every call), "
    "audit on",
    "TLS and --tokens as above, audit on",
};

static bool cfg_tls(int c) { return c == SEC_TLS || c == SEC_TLS_AUTH_AUDIT; }
static bool cfg_auth(int c) {
  return c == SEC_AUTH || c == SEC_AUTH_AUDIT || c == SEC_TLS_AUTH_AUDIT;
}
static bool cfg_audit(int c) { return c == SEC_AUTH_AUDIT || c == SEC_TLS_AUTH_AUDIT; }

#define SEC_MAX_POINTS (2 * MAX_CONC)
#define CHECK_TIMEOUT_MS 10000

/* Stats counters read around the measurements. */
typedef struct sec_stats {
  bool ok;
  uint64_t commits, committed_requests, lmdb_size, refused_unauth;
} sec_stats;

/* One daemon: one configuration in one repeat. */
typedef struct sec_run {
  bool started, ok;
  int position; /* 0-based place in its repeat's order */
  double start_s, stop_s;
  bool exited_ok;
  char exit_desc[128];
  int64_t peak_rss;
  sec_stats s0, s1;
  uint64_t timed_calls;
  read_result res[SEC_MAX_POINTS][RPC__COUNT];
} sec_run;

typedef struct sec_report {
  int repeats, npoints, nconfigs;
  unsigned rpcs;
  int configs[SEC__COUNT]; /* the configurations measured, in bit order */
  read_point pt[SEC_MAX_POINTS];
  int order[MAX_REPEAT][SEC__COUNT];
  sec_run run[MAX_REPEAT][SEC__COUNT];
} sec_report;

/* ---- credentials ---- */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    die("cannot open %s: %s", path, strerror(errno));
  size_t cap = 8192, n = 0;
  char *buf = xmalloc(cap);
  for (;;) {
    if (n + 1 >= cap)
      buf = xrealloc(buf, cap *= 2);
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    if (r == 0)
      break;
    n += r;
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* 32 random bytes as 64 hex digits (a valid graphd token: 16..256
 * printable characters). */
static char *random_token(void) {
  unsigned char b[32];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = getrandom(b + got, sizeof b - got, 0);
    if (r < 0 && errno != EINTR)
      die("getrandom: %s", strerror(errno));
    if (r > 0)
      got += (size_t)r;
  }
  char *t = xmalloc(2 * sizeof b + 1);
  for (size_t i = 0; i < sizeof b; i++)
    snprintf(t + 2 * i, 3, "%02x", b[i]);
  return t;
}

/* The self-signed certificate for 127.0.0.1 / localhost; dies if openssl
 * fails (its output is in log). */
static void make_cert(const bench_cfg *cfg, const char *cert, const char *key, const char *log) {
  const char *argv[] = {cfg->openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out",
                        cert, NULL};
  fprintf(stderr, "graphd-bench:");
  for (int i = 0; argv[i]; i++)
    fprintf(stderr, " %s", argv[i]);
  fputc('\n', stderr);
  fflush(NULL);
  int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0)
    die("cannot create %s: %s", log, strerror(errno));
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(logfd, 1);
    dup2(logfd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      dup2(devnull, 0);
    execvp(cfg->openssl, (char *const *)argv);
    fprintf(stderr, "graphd-bench: cannot run %s: %s\n", cfg->openssl, strerror(errno));
    _exit(127);
  }
  close(logfd);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char d[128];
    describe_status(status, d, sizeof d);
    print_log_tail(log);
    die("openssl could not make the certificate (%s); see %s", d, log);
  }
}

static void write_tokens(const char *path, const char *token) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    die("cannot create %s: %s", path, strerror(errno));
  FILE *f = fdopen(fd, "w");
  if (!f)
    die("fdopen %s: %s", path, strerror(errno));
  fprintf(f, "# graphd-bench security: generated for one run\n%s reader graphd-bench\n", token);
  if (fclose(f) != 0)
    die("cannot write %s: %s", path, strerror(errno));
}

/* ---- checks ---- */

static gc_client *open_client(const char *addr, bool tls, const char *root_pem,
                              const char *token, gc_status *st) {
  gc_client_opts o = {.own_connection = true, .token = token};
  if (tls) {
    o.tls = true;
    o.tls_root_certs_pem = root_pem;
    o.tls_server_name = "localhost";
  }
  gc_client *c = NULL;
  if (gc_client_open(addr, &o, &c, st))
    die("gc_client_open(%s): %s", addr, st->message);
  return c;
}

static int call_health(gc_client *c, gc_status *st) {
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  ProtobufCMessage *rep = NULL;
  int code = gc_unary(c, "/grpc.health.v1.Health/Check", &req.base,
                      &grpc__health__v1__health_check_response__descriptor, &rep, st,
                      CHECK_TIMEOUT_MS);
  if (rep)
    protobuf_c_message_free_unpacked(rep, NULL);
  return code;
}

static int call_stats(gc_client *c, gc_status *st, sec_stats *ret) {
  Graphd__V1__StatsRequest req = GRAPHD__V1__STATS_REQUEST__INIT;
  ProtobufCMessage *rep = NULL;
  int code = gc_unary(c, SVC "Stats", &req.base, &graphd__v1__stats_reply__descriptor, &rep, st,
                      CHECK_TIMEOUT_MS);
  if (ret)
    memset(ret, 0, sizeof *ret);
  if (code == 0 && rep && ret) {
    const Graphd__V1__StatsReply *s = (const Graphd__V1__StatsReply *)rep;
    ret->ok = true;
    ret->commits = s->commits;
    ret->committed_requests = s->committed_requests;
    ret->lmdb_size = s->lmdb_size_bytes;
    for (size_t i = 0; i < s->n_refused; i++)
      if (s->refused[i]->limit && !strcmp(s->refused[i]->limit, "unauthenticated"))
        ret->refused_unauth = s->refused[i]->count;
  }
  if (rep)
    protobuf_c_message_free_unpacked(rep, NULL);
  return code;
}

/* Expects code `want` (want < 0: anything but OK). */
static bool expect(int r, const char *cname, const char *what, int code, const gc_status *st,
                   int want) {
  bool good = want < 0 ? code != 0 : code == want;
  if (!good)
    anomaly("security %d (%s): %s: got %s (%.200s), expected %s", r + 1, cname, what,
            gc_status_code_name(code), st->message,
            want < 0 ? "a failure" : gc_status_code_name(want));
  return good;
}

/* Step (a): returns false when a check failed; *ret_stats gets Stats. */
static bool run_checks(int r, int cfgi, const char *addr, const client_sec *sec,
                       const char *wrong_token, sec_stats *ret_stats) {
  const char *cname = sec_config_names[cfgi];
  bool ok = true;
  gc_status st;
  gc_client *c = open_client(addr, sec->tls, sec->root_pem, sec->token, &st);
  if (gc_client_wait_ready(c, CHECK_TIMEOUT_MS, &st)) {
    anomaly("security %d (%s): cannot connect to %s: %s", r + 1, cname, addr, st.message);
    gc_client_close(c);
    return false;
  }
  ok &= expect(r, cname, "Health/Check with the configuration's client", call_health(c, &st),
               &st, 0);
  ok &= expect(r, cname, "Stats with the configuration's client", call_stats(c, &st, ret_stats),
               &st, 0);
  gc_client_close(c);

  if (cfg_auth(cfgi)) {
    c = open_client(addr, sec->tls, sec->root_pem, NULL, &st);
    ok &= expect(r, cname, "Stats without a token", call_stats(c, &st, NULL), &st,
                 16 /* UNAUTHENTICATED */);
    ok &= expect(r, cname, "Health/Check without a token (needs no role)", call_health(c, &st),
                 &st, 0);
    gc_client_close(c);
    c = open_client(addr, sec->tls, sec->root_pem, wrong_token, &st);
    ok &= expect(r, cname, "Stats with a token not in the file", call_stats(c, &st, NULL), &st,
                 16 /* UNAUTHENTICATED */);
    gc_client_close(c);
  }
  if (cfg_tls(cfgi)) {
    c = open_client(addr, false, NULL, sec->token, &st);
    ok &= expect(r, cname, "Health/Check over plaintext on the TLS port", call_health(c, &st),
                 &st, -1);
    gc_client_close(c);
  }
  return ok;
}

/* ---- one daemon ---- */

static void run_config(const bench_cfg *cfg, const char *dir, const char *data_dir,
                       const read_keys *keys, sec_report *rep, int r, int cfgi,
                       const char *cert, const char *key, const char *tokens,
                       const char *root_pem, const char *token, const char *wrong_token) {
  sec_run *run = &rep->run[r][cfgi];
  const char *cname = sec_config_names[cfgi];
  bench_cfg dcfg = *cfg;
  if (dcfg.n_graphd_args + 5 > MAX_GRAPHD_ARGS)
    die("too many --graphd-arg for the security mode (at most %d)", MAX_GRAPHD_ARGS - 5);
  if (!cfg_audit(cfgi))
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--no-audit";
  if (cfg_auth(cfgi)) {
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--tokens";
    dcfg.graphd_args[dcfg.n_graphd_args++] = tokens;
  }
  if (cfg_tls(cfgi)) {
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--tls-cert";
    dcfg.graphd_args[dcfg.n_graphd_args++] = cert;
    dcfg.graphd_args[dcfg.n_graphd_args++] = "--tls-key";
    dcfg.graphd_args[dcfg.n_graphd_args++] = key;
  }
  client_sec sec = {
      .tls = cfg_tls(cfgi),
      .root_pem = cfg_tls(cfgi) ? root_pem : NULL,
      .server_name = cfg_tls(cfgi) ? "localhost" : NULL,
      .token = cfg_auth(cfgi) ? token : NULL,
  };

  char *log = xasprintf("%s/graphd-%s-%d.log", dir, sec_json_names[cfgi], r + 1);
  daemon_proc dp;
  run->peak_rss = -1;
  fprintf(stderr, "graphd-bench: security %d/%d: %s: starting graphd", r + 1, cfg->repeat, cname);
  for (int i = cfg->n_graphd_args; i < dcfg.n_graphd_args; i++)
    fprintf(stderr, " %s", dcfg.graphd_args[i]);
  fputc('\n', stderr);
  if (!daemon_start(&dcfg, data_dir, log, &dp)) {
    daemon_free(&dp);
    free(log);
    return;
  }
  run->started = true;
  run->start_s = dp.start_s;
  bool ok = run_checks(r, cfgi, dp.addr, &sec, wrong_token, &run->s0);

  char pname[64];
  for (int p = 0; p < rep->npoints && ok; p++) {
    const read_point *pt = &rep->pt[p];
    snprintf(pname, sizeof pname, "%s/%d", client_names[pt->client], pt->conc);
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      fprintf(stderr, "graphd-bench: security %d/%d: %s: %s client, %d in flight: %s, %.1f s...\n",
              r + 1, cfg->repeat, cname, client_names[pt->client], pt->conc, rpc_names[k],
              cfg->duration);
      read_result *res = &run->res[p][k];
      read_measure(cfg, dp.addr, dp.pid, keys, pt, (rpc_kind)k, &sec, res);
      if (k != RPC_HEALTH) /* graphd does not record health checks */
        run->timed_calls += res->calls + res->errors;
      fprintf(stderr, "graphd-bench:   %.0f QPS, p50 %.0f us, p99 %.0f us, client %.1f us/call, "
                      "daemon %.1f us/call, %" PRIu64 " errors\n",
              res->qps, res->p50_us, res->p99_us, read_field(res, RF_CLI_US),
              read_field(res, RF_SRV_US), res->errors);
      if (res->errors || res->calls == 0) {
        anomaly("security %d (%s, %s): %s: %" PRIu64 " error(s) in %" PRIu64 " calls; first: %s",
                r + 1, cname, pname, rpc_names[k], res->errors, res->calls + res->errors,
                res->first_err[0] ? res->first_err : "(no calls completed)");
        ok = false;
      }
    }
  }

  /* (c) */
  if (ok && daemon_alive(&dp, "during the security benchmark")) {
    gc_status st;
    gc_client *c = open_client(dp.addr, sec.tls, sec.root_pem, sec.token, &st);
    if (!expect(r, cname, "Stats after the measurements", call_stats(c, &st, &run->s1), &st, 0))
      ok = false;
    /* Reads' records may still be queued (they commit after the reply):
     * give the writer up to 10 s to catch up before counting. */
    for (int w = 0; ok && cfg_audit(cfgi) && run->s0.ok && run->s1.ok && w < 100 &&
                    run->s1.committed_requests - run->s0.committed_requests < run->timed_calls;
         w++) {
      usleep(100000);
      if (call_stats(c, &st, &run->s1) != 0)
        break;
    }
    gc_client_close(c);
    if (run->s0.ok && run->s1.ok) {
      uint64_t dreq = run->s1.committed_requests - run->s0.committed_requests;
      if (cfg_audit(cfgi) && dreq < run->timed_calls) {
        anomaly("security %d (%s): audit on, but only %" PRIu64 " requests committed for %" PRIu64
                " timed calls (one audit record each)",
                r + 1, cname, dreq, run->timed_calls);
        ok = false;
      }
      if (!cfg_audit(cfgi) && dreq) {
        anomaly("security %d (%s): --no-audit, read-only calls, yet %" PRIu64
                " requests committed",
                r + 1, cname, dreq);
        ok = false;
      }
    }
  }
  if (dp.pid && daemon_alive(&dp, "during the security benchmark"))
    run->peak_rss = proc_status_kb(dp.pid, "VmHWM");
  else
    ok = false;
  daemon_exit ex;
  daemon_stop(cfg, &dp, &ex);
  run->stop_s = ex.stop_s;
  run->exited_ok = ex.exited_ok;
  snprintf(run->exit_desc, sizeof run->exit_desc, "%s", ex.desc[0] ? ex.desc : "-");
  ok &= ex.exited_ok;
  run->ok = ok;
  fprintf(stderr, "graphd-bench: security %d/%d: %s: graphd stopped (%s)%s\n", r + 1, cfg->repeat,
          cname, run->exit_desc, ok ? "" : ", FAILED");
  daemon_free(&dp);
  free(log);
}

/* ---- figures ---- */

/* A field of one measurement; NAN when it was not made (the daemon did
 * not start, or a check failed before it). */
static double fld(const sec_run *run, int p, int k, int f) {
  const read_result *res = &run->res[p][k];
  if (!run->started || (res->calls == 0 && res->errors == 0 && !res->first_err[0]))
    return NAN;
  return read_field(res, f);
}

static double med_field(const sec_report *rep, int c, int p, int k, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = fld(&rep->run[r][c], p, k, f);
  return median(v, rep->repeats);
}

/* Median over repeats of field(c) / field(plain), same point and repeat. */
static double med_ratio(const sec_report *rep, int c, int p, int k, int f) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = fld(&rep->run[r][c], p, k, f) / fld(&rep->run[r][SEC_PLAIN], p, k, f);
  return median(v, rep->repeats);
}

static double run_d(const sec_run *run, int what) {
  if (!run->started)
    return NAN;
  uint64_t dc = run->s1.commits - run->s0.commits;
  uint64_t dr = run->s1.committed_requests - run->s0.committed_requests;
  bool st = run->s0.ok && run->s1.ok;
  switch (what) {
  case 0: return run->start_s;
  case 1: return run->stop_s;
  case 2: return (double)run->peak_rss;
  case 3: return st ? (double)dc : NAN;
  case 4: return st ? (double)dr : NAN;
  case 5: return st && dc ? (double)dr / (double)dc : NAN;
  case 6: return run->s1.ok ? (double)run->s1.lmdb_size : NAN;
  case 7: return run->s1.ok ? (double)run->s1.refused_unauth : NAN;
  case 8: return (double)run->timed_calls;
  default: return NAN;
  }
}

static const char *const run_d_names[] = {
    "start_s", "stop_s", "peak_rss_bytes", "commits", "committed_requests",
    "committed_requests_per_commit", "lmdb_size_bytes_at_end", "refused_unauthenticated",
    "timed_calls",
};
#define RUN_D_N ((int)(sizeof run_d_names / sizeof run_d_names[0]))

static double med_run(const sec_report *rep, int c, int what) {
  double v[MAX_REPEAT];
  for (int r = 0; r < rep->repeats; r++)
    v[r] = run_d(&rep->run[r][c], what);
  return median(v, rep->repeats);
}

/* "-12.3%" style: v as a signed percentage, "-" when not finite. */
static const char *fmt_pct(char *buf, size_t size, double v) {
  if (isfinite(v))
    snprintf(buf, size, "%+.1f%%", v);
  else
    snprintf(buf, size, "-");
  return buf;
}

static void print_report(const bench_cfg *cfg, const read_keys *keys, const sec_report *rep,
                         bool ok) {
  char b[16][32], b1[64], pname[64];
  printf("\nSECURITY  %.1f s per measurement, %s; medians of %d interleaved repeat(s), "
         "one daemon per configuration and repeat\n",
         cfg->duration,
         cfg->conn == CONN_OWN ? "one connection per client thread" : "one shared connection",
         rep->repeats);
  printf("      GetEntity: %zu random sellers; Health/Check: the gRPC floor (also authenticated "
         "and audited)\n",
         read_keys_sellers(keys));
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    printf("      %-15s %s\n", sec_config_names[c], sec_descs[c]);
  }
  printf("      x/plain = median of per-repeat ratios to plain at the same point; QPS cost = "
         "(1 - QPS/plain) x 100,\n      p99 cost = (p99/plain - 1) x 100 (negative: faster than "
         "plain, i.e. noise)\n");
  printf("  %-15s %-6s %4s %-12s %9s %8s %8s %9s %7s %7s %7s %8s %8s %8s %8s %5s %6s\n", "config",
         "client", "infl", "rpc", "QPS", "p50 us", "p99 us", "p99.9 us", "QPS/pl", "p50/pl",
         "p99/pl", "QPScost", "p99cost", "cli us/c", "srv us/c", "oth", "errors");
  for (int p = 0; p < rep->npoints; p++) {
    const read_point *pt = &rep->pt[p];
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      for (int i = 0; i < rep->nconfigs; i++) {
        int c = rep->configs[i];
        bool ref = c == SEC_PLAIN;
        double qr = ref ? NAN : med_ratio(rep, c, p, k, RF_QPS);
        double pr = ref ? NAN : med_ratio(rep, c, p, k, RF_P99);
        printf("  %-15s %-6s %4d %-12s %9s %8.1f %8.1f %9.1f %7s %7s %7s %8s %8s %8s %8s %5s "
               "%6.0f\n",
               sec_config_names[c], client_names[pt->client], pt->conc, rpc_names[k],
               fmt_count(b1, sizeof b1, med_field(rep, c, p, k, RF_QPS)),
               med_field(rep, c, p, k, RF_P50), med_field(rep, c, p, k, RF_P99),
               med_field(rep, c, p, k, RF_P999), fmtf(b[0], 32, 3, qr),
               fmtf(b[1], 32, 3, ref ? NAN : med_ratio(rep, c, p, k, RF_P50)),
               fmtf(b[2], 32, 3, pr), fmt_pct(b[3], 32, (1 - qr) * 100),
               fmt_pct(b[4], 32, (pr - 1) * 100),
               fmtf(b[5], 32, 1, med_field(rep, c, p, k, RF_CLI_US)),
               fmtf(b[6], 32, 1, med_field(rep, c, p, k, RF_SRV_US)),
               fmtf(b[7], 32, 2, med_field(rep, c, p, k, RF_OTHER_CORES)),
               med_field(rep, c, p, k, RF_ERRORS));
      }
    }
  }
  printf("  (infl = calls in flight; cli/srv us/c = CPU time per call in this client / in the "
         "daemon;\n   oth = cores busy elsewhere on the machine: other tenants)\n");

  printf("  cost against plain (QPS cost = throughput lost, p99 cost = p99 latency added, in %% "
         "of plain's;\n  from the medians of per-repeat ratios):\n");
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    if (c == SEC_PLAIN)
      continue;
    for (int k = 0; k < RPC__COUNT; k++) {
      if (!(rep->rpcs & 1u << k))
        continue;
      printf("    %-15s %-12s", sec_config_names[c], rpc_names[k]);
      for (int p = 0; p < rep->npoints; p++) {
        snprintf(pname, sizeof pname, "%s/%d", client_names[rep->pt[p].client], rep->pt[p].conc);
        double qr = med_ratio(rep, c, p, k, RF_QPS), pr = med_ratio(rep, c, p, k, RF_P99);
        printf("  %s: QPS cost %s, p99 cost %s", pname, fmt_pct(b[0], 32, (1 - qr) * 100),
               fmt_pct(b[1], 32, (pr - 1) * 100));
      }
      printf("\n");
    }
  }

  printf("  per repeat QPS (order of the repeat's daemons in brackets):\n");
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    for (int p = 0; p < rep->npoints; p++) {
      snprintf(pname, sizeof pname, "%s/%d", client_names[rep->pt[p].client], rep->pt[p].conc);
      printf("    %-15s %-9s", sec_config_names[c], pname);
      for (int k = 0; k < RPC__COUNT; k++) {
        if (!(rep->rpcs & 1u << k))
          continue;
        printf("  %s", rpc_names[k]);
        for (int r = 0; r < rep->repeats; r++)
          printf(" %s[%d]", fmt_count(b1, sizeof b1, fld(&rep->run[r][c], p, k, RF_QPS)),
                 rep->run[r][c].position + 1);
      }
      printf("\n");
    }
  }

  printf("  daemons (medians): start s, SIGTERM->exit s, VmHWM, audit: committed requests / "
         "commits during a daemon's run\n");
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    printf("    %-15s start %.3f s, stop %.3f s, VmHWM %s, ", sec_config_names[c], med_run(rep, c, 0),
           med_run(rep, c, 1), fmt_bytes(b1, sizeof b1, med_run(rep, c, 2)));
    if (cfg_audit(c))
      printf("audit: %s requests in %s commits (%s per commit, %s timed calls)",
             fmt_count(b[0], 32, med_run(rep, c, 4)), fmt_count(b[1], 32, med_run(rep, c, 3)),
             fmtf(b[2], 32, 1, med_run(rep, c, 5)), fmt_count(b[3], 32, med_run(rep, c, 8)));
    else
      printf("no audit: %s requests committed", fmt_count(b[0], 32, med_run(rep, c, 4)));
    if (cfg_auth(c))
      printf(", %s refused unauthenticated", fmt_count(b[4], 32, med_run(rep, c, 7)));
    printf("\n");
  }
  printf("    exits:");
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    printf(" %s", sec_config_names[c]);
    for (int r = 0; r < rep->repeats; r++)
      printf("%s%s", r ? "," : " ", rep->run[r][c].started ? rep->run[r][c].exit_desc : "-");
    printf(";");
  }
  printf("\n  checks: %s\n", ok ? "passed (tokens required and checked, plaintext refused on "
                                  "the TLS port, audit records written only with audit on)"
                                : "FAILED (see anomalies)");
}

static json_object *result_json(const read_result *res) {
  json_object *j = json_object_new_object();
  for (int f = 0; f < RF_COMMON; f++)
    json_object_object_add(j, read_field_names[f], jnum(read_field(res, f)));
  json_object_object_add(j, "elapsed_s", jnum(res->elapsed_s));
  if (res->first_err[0])
    json_object_object_add(j, "first_error", json_object_new_string(res->first_err));
  return j;
}

static json_object *report_json(const bench_cfg *cfg, const read_keys *keys,
                                const sec_report *rep, const char *data_dir, bool ok) {
  static const struct {
    int f;
    const char *name;
  } ratios[] = {{RF_QPS, "qps"}, {RF_P50, "p50"}, {RF_P99, "p99"}, {RF_P999, "p999"}};
  json_object *j = json_object_new_object();
  json_object_object_add(j, "ok", json_object_new_boolean(ok));
  json_object_object_add(j, "repeats", json_object_new_int(rep->repeats));
  json_object_object_add(j, "duration_s", json_object_new_double(cfg->duration));
  json_object_object_add(j, "conn",
                         json_object_new_string(cfg->conn == CONN_OWN ? "own" : "shared"));
  json_object_object_add(j, "async_client_threads", json_object_new_int(cfg->client_threads));
  json_object_object_add(j, "call_timeout_ms", json_object_new_int(cfg->call_timeout_ms));
  json_object_object_add(j, "get_entity_sellers", json_object_new_uint64(read_keys_sellers(keys)));
  json_object_object_add(j, "data_dir", json_object_new_string(data_dir));
  json_object_object_add(j, "reference", json_object_new_string("plain"));
  json_object_object_add(j, "order", json_object_new_string(
      "rotating: repeat R runs the measured configurations starting at the (R-1)-th, in the "
      "order plain, tls, auth, auth+audit, tls+auth+audit"));
  json_object_object_add(j, "ratio", json_object_new_string(
      "median over repeats of x(config) / x(plain) at the same point in the same repeat"));
  json_object_object_add(j, "cost_pct", json_object_new_string(
      "qps_cost_pct = (1 - qps_ratio_to_plain) * 100, p99_cost_pct = (p99_ratio_to_plain - 1) * "
      "100"));
  json_object_object_add(j, "certificate", json_object_new_string(
      "self-signed, openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1; client: 127.0.0.1, name override "
      "localhost"));
  json_object *jr = json_object_new_array();
  for (int k = 0; k < RPC__COUNT; k++)
    if (rep->rpcs & 1u << k)
      json_object_array_add(jr, json_object_new_string(rpc_json_names[k]));
  json_object_object_add(j, "rpcs", jr);
  json_object *jorder = json_object_new_array();
  for (int r = 0; r < rep->repeats; r++) {
    json_object *o = json_object_new_array();
    for (int i = 0; i < rep->nconfigs; i++)
      json_object_array_add(o, json_object_new_string(sec_config_names[rep->order[r][i]]));
    json_object_array_add(jorder, o);
  }
  json_object_object_add(j, "order_per_repeat", jorder);

  json_object *jc = json_object_new_object();
  for (int i = 0; i < rep->nconfigs; i++) {
    int c = rep->configs[i];
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(sec_config_names[c]));
    json_object_object_add(o, "description", json_object_new_string(sec_descs[c]));
    json_object_object_add(o, "tls", json_object_new_boolean(cfg_tls(c)));
    json_object_object_add(o, "tokens", json_object_new_boolean(cfg_auth(c)));
    json_object_object_add(o, "audit", json_object_new_boolean(cfg_audit(c)));
    json_object *ga = json_object_new_array();
    if (!cfg_audit(c))
      json_object_array_add(ga, json_object_new_string("--no-audit"));
    if (cfg_auth(c)) {
      json_object_array_add(ga, json_object_new_string("--tokens"));
      json_object_array_add(ga, json_object_new_string("TOKENS"));
    }
    if (cfg_tls(c)) {
      json_object_array_add(ga, json_object_new_string("--tls-cert"));
      json_object_array_add(ga, json_object_new_string("CERT"));
      json_object_array_add(ga, json_object_new_string("--tls-key"));
      json_object_array_add(ga, json_object_new_string("KEY"));
    }
    json_object_object_add(o, "graphd_args", ga);

    json_object *pts = json_object_new_array();
    for (int p = 0; p < rep->npoints; p++) {
      const read_point *pt = &rep->pt[p];
      json_object *jp = json_object_new_object();
      json_object_object_add(jp, "client", json_object_new_string(client_names[pt->client]));
      json_object_object_add(jp, "concurrency", json_object_new_int(pt->conc));
      json_object_object_add(jp, "client_threads", json_object_new_int(pt->threads));
      for (int k = 0; k < RPC__COUNT; k++) {
        if (!(rep->rpcs & 1u << k))
          continue;
        json_object *jk = json_object_new_object();
        for (int f = 0; f < RF_COMMON; f++)
          json_object_object_add(jk, read_field_names[f], jnum(med_field(rep, c, p, k, f)));
        if (c != SEC_PLAIN) {
          char name[64];
          for (size_t x = 0; x < sizeof ratios / sizeof ratios[0]; x++) {
            snprintf(name, sizeof name, "%s_ratio_to_plain", ratios[x].name);
            json_object_object_add(jk, name, jnum(med_ratio(rep, c, p, k, ratios[x].f)));
          }
          double qr = med_ratio(rep, c, p, k, RF_QPS), pr = med_ratio(rep, c, p, k, RF_P99);
          json_object_object_add(jk, "qps_cost_pct", jnum((1 - qr) * 100));
          json_object_object_add(jk, "p99_cost_pct", jnum((pr - 1) * 100));
          double va[MAX_REPEAT], vb[MAX_REPEAT];
          for (int r = 0; r < rep->repeats; r++) {
            va[r] = fld(&rep->run[r][c], p, k, RF_QPS) / fld(&rep->run[r][SEC_PLAIN], p, k, RF_QPS);
            vb[r] = fld(&rep->run[r][c], p, k, RF_P99) / fld(&rep->run[r][SEC_PLAIN], p, k, RF_P99);
          }
          json_object_object_add(jk, "qps_ratio_per_repeat", jdouble_array(va, rep->repeats));
          json_object_object_add(jk, "p99_ratio_per_repeat", jdouble_array(vb, rep->repeats));
          json_object_object_add(
              jk, "qps_ratio_of_medians",
              jnum(med_field(rep, c, p, k, RF_QPS) / med_field(rep, SEC_PLAIN, p, k, RF_QPS)));
          json_object_object_add(
              jk, "p99_ratio_of_medians",
              jnum(med_field(rep, c, p, k, RF_P99) / med_field(rep, SEC_PLAIN, p, k, RF_P99)));
        }
        json_object *per = json_object_new_array();
        for (int r = 0; r < rep->repeats; r++)
          json_object_array_add(per, isfinite(fld(&rep->run[r][c], p, k, RF_CALLS))
                                         ? result_json(&rep->run[r][c].res[p][k])
                                         : NULL);
        json_object_object_add(jk, "per_repeat", per);
        json_object_object_add(jp, rpc_json_names[k], jk);
      }
      json_object_array_add(pts, jp);
    }
    json_object_object_add(o, "points", pts);

    json_object *jd = json_object_new_object();
    for (int w = 0; w < RUN_D_N; w++) {
      double v[MAX_REPEAT];
      for (int r = 0; r < rep->repeats; r++)
        v[r] = run_d(&rep->run[r][c], w);
      json_object *a = json_object_new_array();
      for (int r = 0; r < rep->repeats; r++)
        json_object_array_add(a, jnum(v[r]));
      char name[96];
      snprintf(name, sizeof name, "%s_median", run_d_names[w]);
      json_object_object_add(jd, name, jnum(median(v, rep->repeats)));
      json_object_object_add(jd, run_d_names[w], a);
    }
    json_object *jx = json_object_new_array(), *jpos = json_object_new_array();
    for (int r = 0; r < rep->repeats; r++) {
      json_object_array_add(jx, rep->run[r][c].started
                                    ? json_object_new_string(rep->run[r][c].exit_desc)
                                    : NULL);
      json_object_array_add(jpos, json_object_new_int(rep->run[r][c].position + 1));
    }
    json_object_object_add(jd, "exit", jx);
    json_object_object_add(jd, "position_in_repeat", jpos);
    json_object_object_add(o, "daemon", jd);
    json_object_object_add(jc, sec_json_names[c], o);
  }
  json_object_object_add(j, "configs", jc);
  return j;
}

/* ---- the mode ---- */

json_object *bench_security(const bench_cfg *cfg, const char *workroot, const char *data_dir,
                            const read_keys *keys, bool *ret_ok) {
  *ret_ok = false;
  char *dir = xasprintf("%s/security", workroot);
  if (mkdir(dir, 0700) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
  char *tokens = xasprintf("%s/tokens", dir), *oslog = xasprintf("%s/openssl.log", dir);

  sec_report *rep = xcalloc(1, sizeof *rep);
  rep->repeats = cfg->repeat;
  rep->rpcs = read_keys_rpcs(keys) & cfg->rpcs;
  for (int c = 0; c < SEC__COUNT; c++)
    if (cfg->sec_configs & 1u << c)
      rep->configs[rep->nconfigs++] = c;
  for (int ci = 0; ci < cfg->n_clients; ci++)
    for (int i = 0; i < cfg->n_conc; i++) {
      read_point *p = &rep->pt[rep->npoints++];
      p->client = cfg->clients[ci];
      p->conc = cfg->conc[i];
      p->threads = p->client == CLIENT_SYNC ? p->conc
                   : cfg->client_threads < p->conc ? cfg->client_threads
                                                   : p->conc;
    }

  char *root_pem = NULL;
  bool any_tls = false, any_auth = false;
  for (int i = 0; i < rep->nconfigs; i++) {
    any_tls |= cfg_tls(rep->configs[i]);
    any_auth |= cfg_auth(rep->configs[i]);
  }
  if (any_tls) {
    make_cert(cfg, cert, key, oslog);
    root_pem = read_file(cert);
  }
  char *token = random_token(), *wrong = random_token();
  if (any_auth)
    write_tokens(tokens, token);

  bool ok = true;
  for (int r = 0; r < cfg->repeat; r++) {
    for (int i = 0; i < rep->nconfigs; i++) {
      int c = rep->configs[(i + r) % rep->nconfigs];
      rep->order[r][i] = c;
      rep->run[r][c].position = i;
      run_config(cfg, dir, data_dir, keys, rep, r, c, cert, key, tokens, root_pem, token, wrong);
      ok &= rep->run[r][c].ok;
    }
  }

  print_report(cfg, keys, rep, ok);
  json_object *j = report_json(cfg, keys, rep, data_dir, ok);
  *ret_ok = ok;

  if (!cfg->keep) {
    /* The credentials are of no use after the run. */
    unlink(key);
    unlink(tokens);
  }
  free(rep);
  free(root_pem);
  free(token);
  free(wrong);
  free(cert), free(key), free(tokens), free(oslog), free(dir);
  return j;
}
