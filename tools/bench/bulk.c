/*
 * graphd-bench bulk: a first load through BulkLoad, against bare LMDB
 * writing the same rows, and against Ingest, in the same run.
 *
 * The links (sellergen --sellers N, default 1M, or --links FILE) are parsed
 * once. Each repeat runs three steps, the first two in alternating order
 * (graphd first in repeats 1, 3, ...):
 *
 * (a) BULKLOAD: a daemon on a fresh data dir (graphd --data DIR --listen
 *     127.0.0.1:0 [--graphd-arg ...]), every link record through one
 *     BulkLoad call (UpsertRequests of --batch links, file order). The rate
 *     is records / seconds from opening the call to the reply (which means
 *     durable: one transaction, committed). Reported with the daemon's CPU
 *     over the call and its peak RSS (VmHWM), the data dir's size after it;
 *     the reply must count every record, and Stats the distinct links.
 * (b) RAW: bare LMDB writing the same rows. The graph tables of the first
 *     BulkLoad's data dir (meta, ekey, entity, adj, label, request; every
 *     row, read once with a cursor, not timed) are written into a fresh
 *     environment: mdb_env_open, one write transaction, every row with
 *     MDB_APPEND (in the dupsort tables, which are dupfixed, all rows of a
 *     key in one put with MDB_MULTIPLE, as graphd writes adjacency),
 *     commit (synchronous, as graphd's), env close; in a child process
 *     forked for it, so that, like each daemon, it starts with no memory
 *     faulted in.
 *     records / those seconds is the sorted-append rate of LMDB itself on
 *     these rows: what graphd's load could reach if receiving, decoding,
 *     interning and sorting cost nothing.
 * (c) INGEST: the same records through one Ingest call on another fresh
 *     daemon (skipped with --no-ingest): the online path, for the ratio.
 *
 * Every step starts after sync(2), so that the gigabyte the step before
 * wrote is not written back during it. Ratios are per repeat (paired),
 * then the median; targets: BulkLoad at
 * least 500k links/s and at least 0.5x raw; Ingest at least 200k links/s.
 *
 * Anomalies: a failed call, a count that differs, a daemon dying or not
 * exiting 0, an LMDB error in the raw copy.
 */
#include <errno.h>
#include <grpc/status.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_int.h"
#include "client.h"
#include "graphd.pb-c.h"

/* ---- the raw rows ---- */

static const struct {
  const char *name;
  unsigned flags;
} raw_tables[] = {
    {"meta", 0},  {"ekey", 0}, {"entity", 0}, {"adj", MDB_DUPSORT | MDB_DUPFIXED},
    {"label", MDB_DUPSORT | MDB_DUPFIXED}, {"request", 0},
};
#define RAW_TABLES (sizeof raw_tables / sizeof raw_tables[0])

typedef struct raw_rows {
  /* Per table, records (u32 key length, u32 value length, u32 values, key,
   * values...): the rows of one key together (dupsort tables are dupfixed,
   * so their values are contiguous, as MDB_MULTIPLE takes them). */
  uint8_t *buf;
  size_t len, cap;
  size_t off[RAW_TABLES + 1];
  size_t last; /* offset of the record being extended (dupsort) */
  uint64_t rows, bytes;
} raw_rows;

static void raw_reserve(raw_rows *r, size_t need) {
  if (r->len + need <= r->cap)
    return;
  r->cap = r->cap ? r->cap * 2 : (size_t)64 << 20;
  while (r->len + need > r->cap)
    r->cap *= 2;
  r->buf = xrealloc(r->buf, r->cap);
}

/* Appends a row; same_key: the previous row's key (a dupsort table). */
static void raw_put(raw_rows *r, const MDB_val *k, const MDB_val *v, bool same_key) {
  uint32_t kl = (uint32_t)k->mv_size, vl = (uint32_t)v->mv_size, cnt;
  if (same_key) {
    raw_reserve(r, vl);
    memcpy(r->buf + r->len, v->mv_data, vl);
    r->len += vl;
    memcpy(&cnt, r->buf + r->last + 8, 4);
    cnt++;
    memcpy(r->buf + r->last + 8, &cnt, 4);
  } else {
    raw_reserve(r, 12 + kl + vl);
    cnt = 1;
    r->last = r->len;
    memcpy(r->buf + r->len, &kl, 4);
    memcpy(r->buf + r->len + 4, &vl, 4);
    memcpy(r->buf + r->len + 8, &cnt, 4);
    memcpy(r->buf + r->len + 12, k->mv_data, kl);
    memcpy(r->buf + r->len + 12 + kl, v->mv_data, vl);
    r->len += 12 + kl + vl;
    r->bytes += kl;
  }
  r->rows++;
  r->bytes += vl;
}

#define MDB_CHECK(rc, what)                                                                  \
  do {                                                                                       \
    int rc_ = (rc);                                                                          \
    if (rc_) {                                                                               \
      anomaly("bulk: raw copy: %s: %s", what, mdb_strerror(rc_));                            \
      goto out;                                                                              \
    }                                                                                        \
  } while (0)

/* Reads every row of the graph tables of data_dir into r. */
static bool raw_read(const char *data_dir, raw_rows *r) {
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  bool ok = false;
  memset(r, 0, sizeof *r);
  MDB_CHECK(mdb_env_create(&env), "mdb_env_create");
  MDB_CHECK(mdb_env_set_maxdbs(env, 64), "mdb_env_set_maxdbs");
  MDB_CHECK(mdb_env_open(env, data_dir, MDB_RDONLY | MDB_NOTLS, 0644), "mdb_env_open (read)");
  MDB_CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin (read)");
  for (size_t t = 0; t < RAW_TABLES; t++) {
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    r->off[t] = r->len;
    MDB_CHECK(mdb_dbi_open(txn, raw_tables[t].name, raw_tables[t].flags, &dbi), raw_tables[t].name);
    MDB_CHECK(mdb_cursor_open(txn, dbi, &cur), "mdb_cursor_open");
    bool dup = raw_tables[t].flags & MDB_DUPSORT;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      bool same = false;
      if (dup && r->len > r->off[t]) {
        uint32_t pkl;
        memcpy(&pkl, r->buf + r->last, 4);
        same = pkl == k.mv_size && !memcmp(r->buf + r->last + 12, k.mv_data, pkl);
      }
      raw_put(r, &k, &v, same);
    }
    mdb_cursor_close(cur);
  }
  r->off[RAW_TABLES] = r->len;
  ok = true;
out:
  if (txn)
    mdb_txn_abort(txn);
  if (env)
    mdb_env_close(env);
  return ok;
}

/* Writes r into a fresh environment at dir by sorted appends; the seconds
 * from mdb_env_create to mdb_env_close, NAN on failure. */
static double raw_write(const char *dir, const raw_rows *r) {
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  double s = NAN;
  if (mkdir(dir, 0755) != 0)
    die("mkdir %s: %s", dir, strerror(errno));
  sync(); /* as before each load */
  int64_t t0 = now_ns();
  MDB_CHECK(mdb_env_create(&env), "mdb_env_create");
  MDB_CHECK(mdb_env_set_maxdbs(env, 64), "mdb_env_set_maxdbs");
  MDB_CHECK(mdb_env_set_mapsize(env, (size_t)(r->bytes * 3 + ((uint64_t)64 << 20))),
            "mdb_env_set_mapsize");
  MDB_CHECK(mdb_env_open(env, dir, MDB_NOTLS, 0644), "mdb_env_open (write)");
  MDB_CHECK(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin (write)");
  for (size_t t = 0; t < RAW_TABLES; t++) {
    MDB_dbi dbi;
    MDB_cursor *cur;
    bool dup = raw_tables[t].flags & MDB_DUPSORT;
    MDB_CHECK(mdb_dbi_open(txn, raw_tables[t].name, raw_tables[t].flags | MDB_CREATE, &dbi),
              raw_tables[t].name);
    MDB_CHECK(mdb_cursor_open(txn, dbi, &cur), "mdb_cursor_open");
    for (size_t o = r->off[t]; o < r->off[t + 1];) {
      uint32_t kl, vl, cnt;
      memcpy(&kl, r->buf + o, 4);
      memcpy(&vl, r->buf + o + 4, 4);
      memcpy(&cnt, r->buf + o + 8, 4);
      MDB_val k = {kl, r->buf + o + 12}, v[2] = {{vl, r->buf + o + 12 + kl}, {cnt, NULL}};
      if (dup)
        MDB_CHECK(mdb_cursor_put(cur, &k, v, MDB_APPEND | MDB_MULTIPLE), "append (multiple)");
      else
        MDB_CHECK(mdb_cursor_put(cur, &k, v, MDB_APPEND), "append");
      o += 12 + (size_t)kl + (size_t)vl * cnt;
    }
    mdb_cursor_close(cur);
  }
  MDB_CHECK(mdb_txn_commit(txn), "mdb_txn_commit");
  txn = NULL;
  mdb_env_close(env);
  env = NULL;
  s = (double)(now_ns() - t0) / 1e9;
out:
  if (txn)
    mdb_txn_abort(txn);
  if (env)
    mdb_env_close(env);
  return s;
}

/*
 * raw_write in a child process: a fresh address space, as each daemon is
 * fresh (in this process a second raw run would find LMDB's dirty pages
 * already faulted in by the first: 3.8 s against 7 s at 1M sellers).
 */
static double raw_write_fresh(const char *dir, const raw_rows *r) {
  int fds[2];
  if (pipe(fds) != 0)
    die("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    double s = raw_write(dir, r);
    ssize_t w = write(fds[1], &s, sizeof s);
    _exit(w == (ssize_t)sizeof s && !isnan(s) ? 0 : 1);
  }
  close(fds[1]);
  children_add(pid);
  double s = NAN;
  ssize_t n;
  do
    n = read(fds[0], &s, sizeof s);
  while (n < 0 && errno == EINTR);
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  children_remove(pid);
  if (n != (ssize_t)sizeof s || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    anomaly("bulk: raw copy: the child process failed");
    return NAN;
  }
  return s;
}

/* ---- one load through the daemon ---- */

typedef struct load_run {
  double seconds, rate, daemon_cpu_s, rss, dir_bytes;
  bool ok;
} load_run;

static void run_load(const bench_cfg *cfg, const char *run_dir, const char *data_dir,
                     const dataset *d, const char *method, load_run *ret) {
  *ret = (load_run){NAN, NAN, NAN, NAN, NAN, false};
  sync(); /* the step before it may leave a gigabyte to write back */
  char *log = xasprintf("%s/graphd-%s.log", run_dir, method);
  daemon_proc dp;
  bool up = daemon_start(cfg, data_dir, log, &dp);
  free(log);
  if (!up) {
    anomaly("bulk: %s: graphd did not start", method);
    daemon_free(&dp);
    return;
  }
  gc_client *c = NULL;
  gc_status st;
  gc_client_opts co = {.own_connection = true};
  if (gc_client_open(dp.addr, &co, &c, &st) || gc_client_wait_ready(c, 10000, &st)) {
    anomaly("bulk: %s: cannot connect to %s: %s", method, dp.addr, st.message);
  } else {
    uint64_t records;
    double cpu0 = proc_cpu_s(dp.pid);
    ret->ok = bench_load_range(cfg, c, d, 0, dataset_links(d), method, "bulk", "", &ret->seconds,
                               &records);
    ret->daemon_cpu_s = proc_cpu_s(dp.pid) - cpu0;
    ret->rate = (double)records / ret->seconds;
    Graphd__V1__StatsRequest sreq = GRAPHD__V1__STATS_REQUEST__INIT;
    Graphd__V1__StatsReply *srep = NULL;
    if (ret->ok &&
        gc_unary(c, SVC "Stats", &sreq.base, &graphd__v1__stats_reply__descriptor,
                 (ProtobufCMessage **)&srep, &st, cfg->call_timeout_ms) == GRPC_STATUS_OK) {
      if (srep->links != dataset_distinct_links(d)) {
        anomaly("bulk: %s: Stats counts %" PRIu64 " links, the file holds %" PRIu64, method,
                srep->links, dataset_distinct_links(d));
        ret->ok = false;
      }
      protobuf_c_message_free_unpacked(&srep->base, NULL);
    } else if (ret->ok) {
      anomaly("bulk: %s: Stats failed: %s", method, st.message);
      ret->ok = false;
    }
  }
  gc_client_close(c);
  if (dp.pid && daemon_alive(&dp, "after the load"))
    ret->rss = (double)proc_status_kb(dp.pid, "VmHWM");
  daemon_exit ex;
  daemon_stop(cfg, &dp, &ex);
  if (!ex.exited_ok) {
    anomaly("bulk: %s: graphd did not exit 0: %s", method, ex.desc);
    ret->ok = false;
  }
  daemon_free(&dp);
  uint64_t ap, al;
  dir_bytes(data_dir, &ap, &al);
  ret->dir_bytes = (double)ap;
}

/* ---- the mode ---- */

json_object *bench_bulk(const bench_cfg *cfg, const char *workroot, const dataset *d,
                        bool no_ingest, bool *ret_ok) {
  int n = cfg->repeat;
  load_run bl[MAX_REPEAT], in[MAX_REPEAT];
  double raw_s[MAX_REPEAT], raw_rate[MAX_REPEAT], r_raw[MAX_REPEAT], r_ingest[MAX_REPEAT];
  raw_rows rows;
  bool have_rows = false, ok = true;
  double records = (double)dataset_links(d);

  for (int r = 0; r < n; r++) {
    char *run_dir = xasprintf("%s/bulk-%d", workroot, r + 1);
    if (mkdir(run_dir, 0755) != 0)
      die("mkdir %s: %s", run_dir, strerror(errno));
    char *bdir = xasprintf("%s/bulk-data", run_dir), *rdir = xasprintf("%s/raw-data", run_dir),
         *idir = xasprintf("%s/ingest-data", run_dir);
    raw_s[r] = raw_rate[r] = NAN;
    /* graphd first on odd-numbered repeats, and whenever there are no rows yet. */
    bool graphd_first = r % 2 == 0 || !have_rows;
    for (int step = 0; step < 2; step++) {
      if ((step == 0) == graphd_first) {
        fprintf(stderr, "graphd-bench: bulk %d/%d: graphd BulkLoad...\n", r + 1, n);
        run_load(cfg, run_dir, bdir, d, "BulkLoad", &bl[r]);
        fprintf(stderr, "graphd-bench:   BulkLoad %.0f links/s (%.3f s)\n", bl[r].rate,
                bl[r].seconds);
        ok &= bl[r].ok;
        if (!have_rows && bl[r].ok) {
          have_rows = raw_read(bdir, &rows);
          ok &= have_rows;
        }
        if (!cfg->keep)
          rm_rf(bdir);
      } else if (have_rows) {
        fprintf(stderr, "graphd-bench: bulk %d/%d: raw LMDB sorted appends...\n", r + 1, n);
        raw_s[r] = raw_write_fresh(rdir, &rows);
        raw_rate[r] = records / raw_s[r];
        ok &= !isnan(raw_s[r]);
        fprintf(stderr, "graphd-bench:   raw %.0f links/s (%.3f s)\n", raw_rate[r], raw_s[r]);
        if (!cfg->keep)
          rm_rf(rdir);
      }
    }
    if (!no_ingest) {
      fprintf(stderr, "graphd-bench: bulk %d/%d: graphd Ingest...\n", r + 1, n);
      run_load(cfg, run_dir, idir, d, "Ingest", &in[r]);
      fprintf(stderr, "graphd-bench:   Ingest %.0f links/s (%.3f s)\n", in[r].rate, in[r].seconds);
      ok &= in[r].ok;
      if (!cfg->keep)
        rm_rf(idir);
    } else {
      in[r] = (load_run){NAN, NAN, NAN, NAN, NAN, false};
    }
    r_raw[r] = bl[r].rate / raw_rate[r];
    r_ingest[r] = bl[r].rate / in[r].rate;
    free(bdir);
    free(rdir);
    free(idir);
    if (!cfg->keep)
      rm_rf(run_dir);
    free(run_dir);
  }

  double bl_rate[MAX_REPEAT], bl_s[MAX_REPEAT], bl_cpu[MAX_REPEAT], bl_rss[MAX_REPEAT], bl_dir[MAX_REPEAT], in_rate[MAX_REPEAT], in_s[MAX_REPEAT],
      in_cpu[MAX_REPEAT], in_dir[MAX_REPEAT];
  for (int r = 0; r < n; r++) {
    bl_rate[r] = bl[r].rate;
    bl_s[r] = bl[r].seconds;
    bl_cpu[r] = bl[r].daemon_cpu_s;
    bl_rss[r] = bl[r].rss;
    bl_dir[r] = bl[r].dir_bytes;
    in_rate[r] = in[r].rate;
    in_s[r] = in[r].seconds;
    in_cpu[r] = in[r].daemon_cpu_s;
    in_dir[r] = in[r].dir_bytes;
  }
  double m_bl = median(bl_rate, n), m_bs = median(bl_s, n), m_raw = median(raw_rate, n),
         m_rs = median(raw_s, n), m_in = median(in_rate, n), m_is = median(in_s, n);
  double m_rr = median(r_raw, n), m_ri = median(r_ingest, n);
  double m_cpu = median(bl_cpu, n), m_rss = median(bl_rss, n), m_dir = median(bl_dir, n),
         m_idir = median(in_dir, n), m_icpu = median(in_cpu, n);
  bool t_rate = m_bl >= 500000, t_raw = m_rr >= 0.5, t_in = m_in >= 200000;

  char b1[32], b2[32], b3[32];
  printf("\nBULK  %zu link records (%" PRIu64 " distinct links), batches of %zu; median of %d "
         "repeat(s)\n",
         dataset_links(d), dataset_distinct_links(d), cfg->batch, n);
  printf("  %-34s %12s %9s %11s\n", "", "links/s", "seconds", "data dir");
  printf("  %-34s %12s %9.3f %11s\n", "graphd BulkLoad (to the reply)", fmt_count(b1, sizeof b1, m_bl),
         m_bs, fmt_bytes(b2, sizeof b2, m_dir));
  printf("  %-34s %12s %9.3f %11s\n", "raw LMDB, the same rows appended", fmt_count(b1, sizeof b1, m_raw),
         m_rs, have_rows ? fmt_bytes(b3, sizeof b3, (double)rows.bytes) : "-");
  printf("  %-34s %12s %9.3f %11s\n", "graphd Ingest (online)", fmt_count(b1, sizeof b1, m_in), m_is,
         fmt_bytes(b2, sizeof b2, m_idir));
  printf("  BulkLoad / raw %.3f (target >= 0.5: %s), BulkLoad / Ingest %.2f\n", m_rr,
         met(t_raw, m_rr), m_ri);
  printf("  BulkLoad >= 500k links/s: %s; Ingest >= 200k links/s: %s\n", met(t_rate, m_bl),
         met(t_in, m_in));
  printf("  BulkLoad daemon CPU %.2f s, peak RSS %s; Ingest daemon CPU %.2f s\n", m_cpu,
         fmt_bytes(b1, sizeof b1, m_rss), m_icpu);
  if (have_rows)
    printf("  raw rows: %" PRIu64 " (%s of keys and values)\n", rows.rows,
           fmt_bytes(b1, sizeof b1, (double)rows.bytes));
  printf("  per repeat links/s: bulk");
  for (int r = 0; r < n; r++)
    printf(" %s", fmt_count(b1, sizeof b1, bl[r].rate));
  printf("  raw");
  for (int r = 0; r < n; r++)
    printf(" %s", fmt_count(b1, sizeof b1, raw_rate[r]));
  printf("  ingest");
  for (int r = 0; r < n; r++)
    printf(" %s", fmt_count(b1, sizeof b1, in[r].rate));
  printf("\n");

  json_object *j = json_object_new_object();
  jput(j, "records", json_object_new_uint64(dataset_links(d)));
  jput(j, "repeats", json_object_new_int(n));
  json_object *jb = json_object_new_object();
  jput(jb, "links_per_s_median", jnum(m_bl));
  jput(jb, "seconds_median", jnum(m_bs));
  jput(jb, "daemon_cpu_s_median", jnum(m_cpu));
  jput(jb, "peak_rss_bytes_median", jnum(m_rss));
  jput(jb, "data_dir_bytes_median", jnum(m_dir));
  jput(jb, "links_per_s", jdouble_array(bl_rate, n));
  jput(j, "bulkload", jb);
  json_object *jr = json_object_new_object();
  jput(jr, "links_per_s_median", jnum(m_raw));
  jput(jr, "seconds_median", jnum(m_rs));
  jput(jr, "links_per_s", jdouble_array(raw_rate, n));
  jput(jr, "rows", json_object_new_uint64(have_rows ? rows.rows : 0));
  jput(j, "raw", jr);
  json_object *ji = json_object_new_object();
  jput(ji, "links_per_s_median", jnum(m_in));
  jput(ji, "seconds_median", jnum(m_is));
  jput(ji, "links_per_s", jdouble_array(in_rate, n));
  jput(j, "ingest", ji);
  jput(j, "ratio_bulk_raw", jdouble_array(r_raw, n));
  jput(j, "ratio_bulk_ingest", jdouble_array(r_ingest, n));
  json_object *jt = json_object_new_object();
  jput(jt, "bulk_links_per_s", jtarget("min", 500000, m_bl, t_rate));
  jput(jt, "bulk_over_raw", jtarget("min", 0.5, m_rr, t_raw));
  if (!no_ingest)
    jput(jt, "ingest_links_per_s", jtarget("min", 200000, m_in, t_in));
  jput(j, "targets", jt);
  if (have_rows)
    free(rows.buf);
  *ret_ok = ok;
  return j;
}
