/*
 * Unit tests for store/snapshot (graph export, snapshot tables) and the
 * clustering worker, which runs as the real graphd-worker executable
 * (path in $GD_WORKER) on stores built here with the store API:
 *
 *   ring A: ra0..ra11 share a pool of 3 devices and warehouse wA (11 of 12)
 *   ring B: rb0..rb7 share 2 devices, warehouse wB, mule account mB, and
 *           rb4-rb5 are linked directly
 *   400 honest sellers h0..h399 share only hub address "hub" (plus ra0 and
 *           rb0), each with a device of its own
 *   solo0..solo4 have own entities only; "lonely" has no link at all
 *
 * and, for cancel, a generated store of 200k sellers with random links.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/snapshot.h"
#include "store/writer.h"
#include "tap.h"
#include "worker/snapfmt.h"
#include "worker/worker.h"

extern char **environ;

static char root[128];
static const char *worker_path;

static double now_s(void) { return (double)gd_now_ns() / 1e9; }

static void rm_rf(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    abort();
}

static gd_store *open_at(const char *dir) {
  gd_store_opts o = {.path = dir};
  gd_store *s = NULL;
  gd_err e;
  if (gd_store_open(&o, &s, &e)) {
    fprintf(stderr, "open %s: %s\n", dir, e.msg);
    abort();
  }
  return s;
}

/* ---- synchronous writes through the writer ---- */

typedef int (*wfn)(gd_wtxn *t, void *ctx, gd_err *err);

typedef struct wop {
  gd_write_op op;
  wfn fn;
  void *ctx;
  int done, code;
  char msg[GD_ERR_MSG_MAX];
  pthread_mutex_t mu;
  pthread_cond_t cv;
} wop;

static int wop_apply(gd_wtxn *t, gd_write_op *o, gd_err *err) {
  wop *w = (wop *)o;
  return w->fn(t, w->ctx, err);
}

static void wop_done(gd_write_op *o, const gd_err *err) {
  wop *w = (wop *)o;
  pthread_mutex_lock(&w->mu);
  w->code = err->code;
  snprintf(w->msg, sizeof w->msg, "%s", err->msg);
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int write_sync(gd_writer *wr, wfn fn, void *ctx, char *msg) {
  wop w;
  memset(&w, 0, sizeof w);
  w.op.apply = wop_apply;
  w.op.done = wop_done;
  w.fn = fn;
  w.ctx = ctx;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  gd_writer_submit(wr, &w.op);
  pthread_mutex_lock(&w.mu);
  while (!w.done)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  if (msg)
    strcpy(msg, w.msg);
  if (w.code)
    fprintf(stderr, "  (write: %s)\n", w.msg);
  return w.code;
}

static int upsert_fn(gd_wtxn *t, void *ctx, gd_err *err) {
  gd_upsert_result res;
  return gd_store_upsert(t, ctx, &res, err);
}

static gd_ref R(int t, const char *k) { return (gd_ref){0, t, gd_str_c(k)}; }

/* A growing list of links whose keys live in a string pool. */
typedef struct linkset {
  gd_link_in *l;
  size_t n, cap;
  char **pool;
  size_t np, pcap;
} linkset;

static const char *pool_str(linkset *s, const char *k) {
  if (s->np == s->pcap) {
    s->pcap = s->pcap ? 2 * s->pcap : 1024;
    s->pool = realloc(s->pool, s->pcap * sizeof *s->pool);
  }
  return s->pool[s->np++] = strdup(k);
}

static void add_link(linkset *s, int ta, const char *a, int tb, const char *b, int64_t seen) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->l = realloc(s->l, s->cap * sizeof *s->l);
  }
  s->l[s->n++] = (gd_link_in){R(ta, pool_str(s, a)), R(tb, pool_str(s, b)), seen};
}

static void linkset_free(linkset *s) {
  for (size_t i = 0; i < s->np; i++)
    free(s->pool[i]);
  free(s->pool);
  free(s->l);
  memset(s, 0, sizeof *s);
}

static void write_links(gd_writer *w, linkset *s, size_t batch) {
  for (size_t i = 0; i < s->n; i += batch) {
    gd_upsert u = {.links = s->l + i, .nlinks = s->n - i < batch ? s->n - i : batch};
    CHECK(write_sync(w, upsert_fn, &u, NULL) == GD_OK);
  }
}

static void write_entity(gd_writer *w, int type, const char *key, const char *label,
                         int64_t seen) {
  gd_str lab = gd_str_c(label);
  gd_entity_in e = {type, gd_str_c(key), NULL, 0, label ? &lab : NULL, label ? 1 : 0, seen};
  gd_upsert u = {.entities = &e, .nentities = 1};
  CHECK(write_sync(w, upsert_fn, &u, NULL) == GD_OK);
}

static uint64_t id_of(gd_store *st, int type, const char *key) {
  gd_rtxn *r;
  uint64_t id = 0;
  gd_ref ref = R(type, key);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_lookup(r, &ref, &id, NULL) == GD_OK);
  gd_store_read_end(r);
  return id;
}

/* ---- running the worker ---- */

typedef struct proc {
  pid_t pid;
  int fd;       /* progress, read end */
  char out[16384];
  size_t n;     /* bytes in out */
  size_t taken; /* bytes already returned as lines */
} proc;

/* Starts graphd-worker on dir with the spec on stdin, progress on fd 3. */
static int spawn_worker(proc *p, const char *dir, const char *spec, const char *const *extra) {
  int sp[2], pp[2];
  const char *argv[16] = {worker_path, "--data", dir, "--progress-fd", "3"};
  int argc = 5;
  for (; extra && *extra; extra++)
    argv[argc++] = *extra;
  argv[argc] = NULL;
  memset(p, 0, sizeof *p);
  if (pipe2(sp, O_CLOEXEC) || pipe2(pp, O_CLOEXEC))
    abort();
  size_t len = strlen(spec);
  if (write(sp[1], spec, len) != (ssize_t)len) /* specs here fit the pipe buffer */
    abort();
  close(sp[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sp[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pp[1], 3);
  int rc = posix_spawn(&p->pid, worker_path, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sp[0]);
  close(pp[1]);
  p->fd = pp[0];
  if (rc) {
    fprintf(stderr, "posix_spawn %s: %s\n", worker_path, strerror(rc));
    close(p->fd);
    return -1;
  }
  return 0;
}

/* Next progress line (without '\n') or NULL at EOF. */
static const char *next_line(proc *p) {
  for (;;) {
    char *nl = memchr(p->out + p->taken, '\n', p->n - p->taken);
    if (nl) {
      *nl = '\0';
      const char *line = p->out + p->taken;
      p->taken = (size_t)(nl - p->out) + 1;
      return line;
    }
    if (p->n == sizeof p->out - 1)
      return NULL;
    ssize_t r = read(p->fd, p->out + p->n, sizeof p->out - 1 - p->n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return NULL;
    p->n += (size_t)r;
  }
}

/* Drains progress and waits; returns the exit code (128 + signal if killed). */
static int finish(proc *p) {
  while (next_line(p))
    ;
  close(p->fd);
  int status;
  while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs the worker to the end. The whole progress text goes to out (lines
 * NUL-separated are turned back to '\n'); returns the exit code. */
static int run_worker(const char *dir, const char *spec, const char *const *extra, char *out,
                      size_t cap) {
  proc p;
  if (spawn_worker(&p, dir, spec, extra))
    return -1;
  int code = finish(&p);
  for (size_t i = 0; i < p.n; i++)
    if (p.out[i] == '\0')
      p.out[i] = '\n';
  p.out[p.n] = '\0';
  if (out)
    snprintf(out, cap, "%s", p.out);
  return code;
}

static uint64_t done_id(const char *out) {
  const char *d = strstr(out, "\ndone ");
  if (!d && strncmp(out, "done ", 5) == 0)
    d = out - 1;
  return d ? strtoull(d + 6, NULL, 10) : 0;
}

/* One stage timing from a progress text, in seconds (-1 if absent). */
static double timing(const char *out, const char *stage) {
  char pat[64];
  snprintf(pat, sizeof pat, "timing %s ", stage);
  const char *t = strstr(out, pat);
  return t ? strtod(t + strlen(pat), NULL) : -1;
}

/* ---- reading snapshots back ---- */

typedef struct alist {
  uint64_t *s, *c;
  size_t n, cap;
} alist;

static int alist_add(void *ctx, const uint64_t *s, const uint64_t *c, size_t n) {
  alist *a = ctx;
  if (a->n + n > a->cap) {
    a->cap = (a->n + n) * 2;
    a->s = realloc(a->s, a->cap * sizeof *a->s);
    a->c = realloc(a->c, a->cap * sizeof *a->c);
  }
  memcpy(a->s + a->n, s, n * sizeof *s);
  memcpy(a->c + a->n, c, n * sizeof *c);
  a->n += n;
  return 0;
}

static alist assignments(gd_store *st, uint64_t snap) {
  alist a = {0};
  gd_rtxn *r;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_assignments_visit(r, snap, 0, alist_add, &a, NULL, NULL) == GD_OK);
  gd_store_read_end(r);
  return a;
}

static void alist_free(alist *a) {
  free(a->s);
  free(a->c);
  memset(a, 0, sizeof *a);
}

static uint64_t cluster_of(const alist *a, uint64_t seller) {
  for (size_t i = 0; i < a->n; i++)
    if (a->s[i] == seller)
      return a->c[i];
  return 0;
}

/* A snapshot's manifest, parsed (put it with json_object_put). */
static json_object *manifest(gd_store *st, uint64_t snap, json_object **ret_root) {
  gd_rtxn *r;
  gd_snapshot_view v;
  json_object *m = NULL;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  if (gd_store_snapshot_get(r, snap, &v, NULL) == GD_OK) {
    char *text = strndup(v.manifest, v.manifest_len);
    m = text ? json_tokener_parse(text) : NULL;
    free(text);
  }
  gd_store_read_end(r);
  *ret_root = m;
  return m;
}

static json_object *jget(json_object *o, const char *a, const char *b) {
  json_object *x = NULL, *y = NULL;
  if (!o || !json_object_object_get_ex(o, a, &x))
    return NULL;
  if (!b)
    return x;
  return json_object_object_get_ex(x, b, &y) ? y : NULL;
}

/* ======================================================================== */
/* Snapshot tables                                                           */

typedef struct put_ctx {
  uint64_t id; /* out */
  gd_snapshot_in in;
  uint64_t fixed_id; /* 0 = allocate */
} put_ctx;

static int put_fn(gd_wtxn *t, void *ctx, gd_err *err) {
  put_ctx *p = ctx;
  int rc = GD_OK;
  p->id = p->fixed_id;
  if (!p->id && (rc = gd_store_snapshot_next_id(t, &p->id, err)))
    return rc;
  return gd_store_snapshot_put(t, p->id, &p->in, err);
}

static int del_fn(gd_wtxn *t, void *ctx, gd_err *err) {
  return gd_store_snapshot_delete(t, *(uint64_t *)ctx, err);
}

typedef struct cl_ctx {
  size_t n;
  uint64_t first, last;
  int bad;
} cl_ctx;

static int cl_visit(void *ctx, uint64_t cluster, const void *sum, size_t len) {
  cl_ctx *c = ctx;
  if (c->n == 0)
    c->first = cluster;
  if (c->n && cluster <= c->last)
    c->bad = 1;
  if (len != 8 || memcmp(sum, &cluster, 8) != 0)
    c->bad = 1;
  c->last = cluster;
  c->n++;
  return 0;
}

static void test_snapshot_tables(void) {
  char dir[160];
  snprintf(dir, sizeof dir, "%s/snap", root);
  gd_store *st = open_at(dir);
  gd_writer *w;
  gd_rtxn *r;
  gd_err e;
  gd_snapshot_view v;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);

  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, &e) == GD_EPRECONDITION);
  CHECK(gd_store_snapshot_get(r, 3, &v, &e) == GD_ENOTFOUND);
  uint64_t c;
  CHECK(gd_store_assignment_get(r, 0, 1, &c, &e) == GD_EPRECONDITION);
  gd_store_read_end(r);

  /* Three snapshots of 5000 sellers (several pages of rows) and 1500
   * clusters; summaries are the cluster id's 8 bytes. */
  enum { NS = 5000, NC = 1500 };
  static uint64_t sellers[NS], clusters[NS], cids[NC], sdata[NC];
  static size_t offs[NC + 1];
  for (int i = 0; i < NS; i++) {
    sellers[i] = 10 + 3 * (uint64_t)i;
    clusters[i] = 100 + (uint64_t)(i % NC);
  }
  for (int i = 0; i < NC; i++) {
    cids[i] = 100 + (uint64_t)i;
    sdata[i] = cids[i];
    offs[i] = 8 * (size_t)i;
  }
  offs[NC] = 8 * NC;
  /* Members cluster by cluster; ties: each member to the cluster's first,
   * weight = its rank in the cluster. */
  static uint64_t members[NS];
  static gd_snap_tie ties[NS];
  static size_t moff[NC + 1], toff[NC + 1];
  size_t nm = 0, nt = 0;
  for (int i = 0; i < NC; i++) {
    moff[i] = nm;
    toff[i] = nt;
    for (int j = i, rank = 0; j < NS; j += NC, rank++) {
      members[nm++] = sellers[j];
      if (rank)
        ties[nt++] = (gd_snap_tie){sellers[i], sellers[j], (double)rank};
    }
  }
  moff[NC] = nm;
  toff[NC] = nt;
  put_ctx p = {.in = {"{\"m\":1}", 7, NS, sellers, clusters, NC, cids, (const uint8_t *)sdata,
                      offs, members, moff, ties, toff}};
  for (int k = 0; k < 3; k++) {
    CHECK(write_sync(w, put_fn, &p, NULL) == GD_OK);
    CHECK_EQ_U(p.id, k + 1);
  }
  /* Errors: an existing id, unsorted sellers. */
  char msg[GD_ERR_MSG_MAX];
  put_ctx dup = p;
  dup.fixed_id = 2;
  CHECK(write_sync(w, put_fn, &dup, msg) == GD_EEXISTS);
  put_ctx bad = p;
  uint64_t unsorted[3] = {5, 4, 6};
  bad.in.sellers = unsorted;
  bad.in.n_assign = 3;
  CHECK(write_sync(w, put_fn, &bad, msg) == GD_EINVALID);
  CHECK(strstr(msg, "assignments[1]") != NULL);
  bad = p;
  bad.in.ties = (gd_snap_tie[]){{5, 4, 1.0}};
  size_t bad_toff[NC + 1] = {0};
  for (int i = 1; i <= NC; i++)
    bad_toff[i] = 1;
  bad.in.tie_off = bad_toff;
  CHECK(write_sync(w, put_fn, &bad, msg) == GD_EINVALID);
  CHECK(strstr(msg, "ties out of order") != NULL);

  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  bool has_names = true;
  CHECK(gd_store_snapshot_has_names(r, 3, &has_names, NULL) == GD_OK && !has_names);
  CHECK(gd_store_snapshot_get(r, 0, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.id, 3);
  CHECK_EQ_U(v.n_assignments, NS);
  CHECK_EQ_U(v.n_clusters, NC);
  CHECK(v.manifest_len == 7 && memcmp(v.manifest, "{\"m\":1}", 7) == 0);
  CHECK(v.created_at > 0);
  /* Point lookups: every seller, and ids that are not there. */
  int ok = 1;
  for (int i = 0; i < NS; i++)
    ok &= gd_store_assignment_get(r, 2, sellers[i], &c, NULL) == GD_OK && c == clusters[i];
  CHECK(ok);
  CHECK(gd_store_assignment_get(r, 2, 11, &c, &e) == GD_ENOTFOUND);
  CHECK(strstr(e.msg, "seller 11") != NULL);
  CHECK(gd_store_assignment_get(r, 9, 10, &c, &e) == GD_ENOTFOUND);
  /* Streaming from the middle of a page. */
  alist a = {0};
  uint64_t got;
  CHECK(gd_store_assignments_visit(r, 0, sellers[1234], alist_add, &a, &got, NULL) == GD_OK);
  CHECK_EQ_U(got, 3);
  CHECK_EQ_U(a.n, NS - 1235);
  CHECK(a.n && a.s[0] == sellers[1235] && a.c[0] == clusters[1235]);
  CHECK(a.n && a.s[a.n - 1] == sellers[NS - 1]);
  alist_free(&a);
  const void *sum;
  size_t slen;
  CHECK(gd_store_cluster_get(r, 1, 777, &sum, &slen, NULL) == GD_OK);
  CHECK(slen == 8 && *(const uint64_t *)sum == 777);
  CHECK(gd_store_cluster_get(r, 1, 99, &sum, &slen, &e) == GD_ENOTFOUND);
  cl_ctx cc = {0};
  CHECK(gd_store_clusters_visit(r, 2, 1000, cl_visit, &cc, NULL, NULL) == GD_OK);
  CHECK(cc.n == NC - 901 && cc.first == 1001 && cc.last == 100 + NC - 1 && !cc.bad);
  /* Members of cluster 107 (sellers 7, 1507, 3007, 4507), two at a time. */
  uint64_t mb[4];
  size_t mn;
  bool mmore, indexed;
  CHECK(gd_store_cluster_members(r, 0, 107, 0, 2, mb, &mn, &mmore, &indexed, NULL) == GD_OK);
  CHECK(indexed && mn == 2 && mmore && mb[0] == sellers[7] && mb[1] == sellers[1507]);
  CHECK(gd_store_cluster_members(r, 0, 107, mb[1], 2, mb, &mn, &mmore, &indexed, NULL) == GD_OK);
  CHECK(mn == 2 && !mmore && mb[0] == sellers[3007] && mb[1] == sellers[4507]);
  CHECK(gd_store_cluster_members(r, 0, 107, sellers[4507], 2, mb, &mn, &mmore, &indexed,
                                 NULL) == GD_OK);
  CHECK(mn == 0 && !mmore && indexed);
  CHECK(gd_store_cluster_members(r, 0, 99, 0, 2, mb, &mn, &mmore, &indexed, NULL) == GD_OK);
  CHECK(mn == 0 && !indexed);
  /* Ties, strongest first. */
  gd_snap_tie tb[2];
  size_t tn;
  uint64_t ttotal;
  CHECK(gd_store_cluster_ties(r, 1, 107, 2, tb, &tn, &ttotal, NULL) == GD_OK);
  CHECK(tn == 2 && ttotal == 3 && tb[0].weight == 3 && tb[0].b == sellers[4507] &&
        tb[1].weight == 2 && tb[0].a == sellers[7]);
  /* List, newest first, in pages of 2. */
  gd_snapshot_view lv[2];
  size_t n;
  bool more;
  CHECK(gd_store_snapshot_list(r, 0, 2, lv, &n, &more, NULL) == GD_OK);
  CHECK(n == 2 && lv[0].id == 3 && lv[1].id == 2 && more);
  CHECK(gd_store_snapshot_list(r, lv[1].id, 2, lv, &n, &more, NULL) == GD_OK);
  CHECK(n == 1 && lv[0].id == 1 && !more);
  gd_store_read_end(r);

  /* Delete the middle one: its three parts go, its neighbours stay whole. */
  uint64_t del = 2;
  CHECK(write_sync(w, del_fn, &del, NULL) == GD_OK);
  CHECK(write_sync(w, del_fn, &del, msg) == GD_ENOTFOUND);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 2, &v, NULL) == GD_ENOTFOUND);
  CHECK(gd_store_assignment_get(r, 2, sellers[0], &c, NULL) == GD_ENOTFOUND);
  CHECK(gd_store_cluster_get(r, 2, 100, &sum, &slen, NULL) == GD_ENOTFOUND);
  CHECK(gd_store_cluster_members(r, 2, 107, 0, 4, mb, &mn, &mmore, &indexed, &e) ==
        GD_ENOTFOUND);
  for (uint64_t s = 1; s <= 3; s += 2) {
    CHECK(gd_store_cluster_members(r, s, 107, 0, 4, mb, &mn, &mmore, &indexed, NULL) == GD_OK);
    CHECK(mn == 4 && indexed && mb[3] == sellers[4507]);
    CHECK(gd_store_cluster_ties(r, s, 100 + NC - 1, 2, tb, &tn, &ttotal, NULL) == GD_OK);
    CHECK(tn == 2 && ttotal == 2);
    cc = (cl_ctx){0};
    CHECK(gd_store_clusters_visit(r, s, 0, cl_visit, &cc, NULL, NULL) == GD_OK);
    CHECK(cc.n == NC && !cc.bad);
    a = (alist){0};
    CHECK(gd_store_assignments_visit(r, s, 0, alist_add, &a, NULL, NULL) == GD_OK);
    CHECK(a.n == NS && memcmp(a.s, sellers, sizeof sellers) == 0 &&
          memcmp(a.c, clusters, sizeof clusters) == 0);
    alist_free(&a);
  }
  gd_store_read_end(r);
  /* Ids are never reused. */
  CHECK(write_sync(w, put_fn, &p, NULL) == GD_OK);
  CHECK_EQ_U(p.id, 4);
  /* An older id put again (not the newest: no append path) reads back
   * whole and leaves its neighbours alone. */
  put_ctx old = p;
  old.fixed_id = 2;
  CHECK(write_sync(w, put_fn, &old, NULL) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  for (uint64_t s = 1; s <= 4; s++) {
    cc = (cl_ctx){0};
    CHECK(gd_store_clusters_visit(r, s, 0, cl_visit, &cc, NULL, NULL) == GD_OK);
    CHECK(cc.n == NC && !cc.bad);
    a = (alist){0};
    CHECK(gd_store_assignments_visit(r, s, 0, alist_add, &a, NULL, NULL) == GD_OK);
    CHECK(a.n == NS && memcmp(a.s, sellers, sizeof sellers) == 0 &&
          memcmp(a.c, clusters, sizeof clusters) == 0);
    alist_free(&a);
  }
  gd_store_read_end(r);
  gd_writer_stop(w);
  gd_store_close(st);
}

/* ======================================================================== */
/* Export                                                                    */

static void test_export(void) {
  char dir[160];
  snprintf(dir, sizeof dir, "%s/export", root);
  gd_store *st = open_at(dir);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  linkset ls = {0};
  add_link(&ls, GD_TYPE_SELLER, "s1", GD_TYPE_DEVICE, "d1", 100);
  add_link(&ls, GD_TYPE_SELLER, "s2", GD_TYPE_DEVICE, "d1", 200);
  add_link(&ls, GD_TYPE_ADDRESS, "a1", GD_TYPE_SELLER, "s2", 200);
  add_link(&ls, GD_TYPE_SELLER, "s3", GD_TYPE_ADDRESS, "a1", 300);
  add_link(&ls, GD_TYPE_SELLER, "s1", GD_TYPE_ADDRESS, "a1", 900);
  add_link(&ls, GD_TYPE_SELLER, "s3", GD_TYPE_SELLER, "s1", 150);
  add_link(&ls, GD_TYPE_SELLER, "s2", GD_TYPE_SELLER, "s3", 310);
  add_link(&ls, GD_TYPE_SELLER, "s3", GD_TYPE_PHONE, "p1", 300);
  write_links(w, &ls, 100);
  linkset_free(&ls);
  write_entity(w, GD_TYPE_SELLER, "s4", NULL, 400);
  gd_writer_stop(w);

  uint64_t s[5] = {0, id_of(st, 1, "s1"), id_of(st, 1, "s2"), id_of(st, 1, "s3"),
                   id_of(st, 1, "s4")};
  uint64_t d1 = id_of(st, GD_TYPE_DEVICE, "d1"), a1 = id_of(st, GD_TYPE_ADDRESS, "a1");
  gd_rtxn *r;
  gd_graph_export x, y;
  gd_err e;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &x, &e) == GD_OK);
  CHECK_EQ_U(x.n_sellers, 4);
  for (int64_t i = 1; i < x.n_sellers; i++)
    CHECK(x.seller_ids[i] > x.seller_ids[i - 1]);
  CHECK_EQ_U(x.n_entities, 3);
  CHECK_EQ_U(x.n_incidences, 6);
  CHECK_EQ_U(x.ent_off[x.n_entities], 6);
  CHECK_EQ_U(x.n_links, 2);
  CHECK_EQ_U(strlen(x.checksum), 64);
  for (int64_t k = 0; k < x.n_entities; k++) {
    int64_t cnt = x.ent_off[k + 1] - x.ent_off[k];
    if (x.ent_ids[k] == d1)
      CHECK(x.ent_type[k] == GD_TYPE_DEVICE && cnt == 2 && x.ent_n[k] == 2);
    else if (x.ent_ids[k] == a1)
      CHECK(x.ent_type[k] == GD_TYPE_ADDRESS && cnt == 3 && x.ent_n[k] == 3);
    else
      CHECK(x.ent_type[k] == GD_TYPE_PHONE && cnt == 1 && x.ent_n[k] == 1);
    for (int64_t i = x.ent_off[k] + 1; i < x.ent_off[k + 1]; i++)
      CHECK(x.ent_sellers[i] > x.ent_sellers[i - 1]);
  }
  for (int64_t i = 0; i < x.n_links; i++) {
    uint64_t a = x.seller_ids[x.link_a[i]], b = x.seller_ids[x.link_b[i]];
    CHECK(x.link_a[i] < x.link_b[i]);
    CHECK((a == s[1] && b == s[3]) || (a == s[3] && b == s[1]) || (a == s[2] && b == s[3]) ||
          (a == s[3] && b == s[2]));
  }
  CHECK(gd_store_export_graph(r, 0, 0, &y, NULL) == GD_OK);
  CHECK_STR(x.checksum, y.checksum);
  gd_graph_export_free(&y);

  /* Window [250, 350]: s4 (seen 400 only) drops out; of the entities
   * only a1 and p1 keep a seller (s3) in the window; a1 keeps its all-time
   * count 3; of the direct links only s2-s3 (310). */
  CHECK(gd_store_export_graph(r, 250, 350, &y, NULL) == GD_OK);
  CHECK_EQ_U(y.n_sellers, 3);
  CHECK_EQ_U(y.n_entities, 2);
  CHECK_EQ_U(y.n_incidences, 2);
  CHECK_EQ_U(y.n_links, 1);
  for (int64_t k = 0; k < y.n_entities; k++) {
    CHECK(y.seller_ids[y.ent_sellers[y.ent_off[k]]] == s[3]);
    if (y.ent_ids[k] == a1)
      CHECK_EQ_U(y.ent_n[k], 3);
  }
  CHECK(y.n_links == 1 && y.seller_ids[y.link_a[0]] == s[2] && y.seller_ids[y.link_b[0]] == s[3]);
  CHECK(strcmp(x.checksum, y.checksum) != 0);
  gd_graph_export_free(&y);
  CHECK(gd_store_export_graph(r, 500, 100, &y, &e) == GD_EINVALID);
  gd_store_read_end(r);
  gd_graph_export_free(&x);
  gd_store_close(st);
}

/* ======================================================================== */
/* Worker on the planted rings                                               */

static char rings_dir[160];
static gd_store *rings;
static uint64_t snap1, snap2;

__attribute__((format(printf, 2, 3))) static const char *kf(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, 32, fmt, ap);
  va_end(ap);
  return buf;
}

static void build_rings(void) {
  char a[32], b[32];
  snprintf(rings_dir, sizeof rings_dir, "%s/rings", root);
  rings = open_at(rings_dir);
  gd_writer *w;
  CHECK(gd_writer_start(rings, 0, &w, NULL) == GD_OK);
  linkset ls = {0};
  for (int i = 0; i < 12; i++) {
    kf(a, "ra%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "dA%d", i % 3), 1000 + i);
    if (i % 4 == 0)
      add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "dA%d", (i + 1) % 3), 1000 + i);
    if (i < 11)
      add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "wA", 1000 + i);
  }
  for (int i = 0; i < 8; i++) {
    kf(a, "rb%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, i < 4 ? "dB0" : "dB1", 2000 + i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "wB", 2000 + i);
    if (i < 4)
      add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_PAYMENT_ACCOUNT, "mB", 2000 + i);
  }
  add_link(&ls, GD_TYPE_SELLER, "rb4", GD_TYPE_SELLER, "rb5", 2100);
  for (int i = 0; i < 400; i++) {
    kf(a, "h%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "hub", 500 + i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "dh%d", i), 500 + i);
  }
  add_link(&ls, GD_TYPE_SELLER, "ra0", GD_TYPE_ADDRESS, "hub", 900);
  add_link(&ls, GD_TYPE_SELLER, "rb0", GD_TYPE_ADDRESS, "hub", 900);
  for (int i = 0; i < 5; i++) {
    kf(a, "solo%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "ds%d", i), 700);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_PHONE, kf(b, "+4930%d", i), 700);
  }
  write_links(w, &ls, 10000);
  linkset_free(&ls);
  write_entity(w, GD_TYPE_SELLER, "lonely", NULL, 800);
  write_entity(w, GD_TYPE_SELLER, "ra0", "counterfeit", 0);
  write_entity(w, GD_TYPE_SELLER, "ra3", "counterfeit", 0);
  write_entity(w, GD_TYPE_SELLER, "ra7", "counterfeit", 0);
  write_entity(w, GD_TYPE_SELLER, "rb1", "counterfeit", 0);
  write_entity(w, GD_TYPE_SELLER, "h5", "complaint:x", 0);
  gd_writer_stop(w);
}

#define N_RING_SELLERS 426 /* 12 + 8 + 400 + 5 + 1 */

static const char *SPEC = "# the test spec\n"
                          "algorithm = leiden_cpm\n"
                          "seed = 7\n"
                          "name = rings\n"
                          "previous = -1\n";

static void check_summary(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t size,
                          uint64_t flagged, uint64_t warehouse, double base_rate) {
  const void *raw;
  size_t len;
  gd_cluster_summary cs;
  CHECK(gd_store_cluster_get(r, snap, cluster, &raw, &len, NULL) == GD_OK);
  CHECK(gd_summary_decode(raw, len, &cs, NULL) == GD_OK);
  CHECK_EQ_U(cs.size, size);
  CHECK_EQ_U(cs.flagged, flagged);
  CHECK(fabs(cs.risk - ((double)flagged + GD_RISK_PRIOR * base_rate) /
                           ((double)size + GD_RISK_PRIOR)) < 1e-12);
  /* ra0 / rb0 also use the 402-seller hub address, under its cap; its
   * sellers share nothing else, so it is context and ties nobody (under
   * the previous rule its weak ties were the clusters' boundary). */
  CHECK(cs.internal > 0 && cs.boundary == 0);
  CHECK(fabs(cs.cohesion - cs.internal / (cs.internal + cs.boundary)) < 1e-12);
  int found = 0;
  for (int i = 0; i < cs.n_top && i < 3; i++)
    found |= cs.top[i].id == warehouse;
  CHECK(found);
  CHECK(cs.n_top >= 1 && cs.top[0].id == warehouse && cs.top[0].type == GD_TYPE_ADDRESS);
  for (int i = 1; i < cs.n_top; i++)
    CHECK(gd_summary_score(cs.top[i].users, cs.top[i].total) <=
          gd_summary_score(cs.top[i - 1].users, cs.top[i - 1].total));
}

typedef struct lk_ctx {
  gd_snap_link l[256];
  size_t n;
} lk_ctx;

static int lk_add(void *ctx, const gd_snap_link *l) {
  lk_ctx *k = ctx;
  if (k->n == 256)
    return 1;
  k->l[k->n++] = *l;
  return 0;
}

static void test_worker_rings(void) {
  char out[16384], a[32];
  build_rings();
  double t0 = now_s();
  int code = run_worker(rings_dir, SPEC, NULL, out, sizeof out);
  double t1 = now_s();
  CHECK_EQ_U(code, 0);
  snap1 = done_id(out);
  CHECK(snap1 == 1);
  if (code || !snap1) {
    fprintf(stderr, "worker output:\n%s\n", out);
    return;
  }
  printf("# rings: worker %.3f s (read %.4f, project %.4f, cluster %.4f, write %.4f)\n", t1 - t0,
         timing(out, "read"), timing(out, "project"), timing(out, "cluster"),
         timing(out, "write"));
  /* The progress protocol: every stage in order, then done. */
  const char *stages[] = {"stage open", "stage read",      "stage project", "stage cluster",
                          "stage match", "stage summarize", "stage write",   "done 1"};
  const char *pos = out;
  for (size_t i = 0; i < sizeof stages / sizeof *stages; i++) {
    const char *f = strstr(pos, stages[i]);
    CHECK(f != NULL);
    if (f)
      pos = f;
  }

  alist as = assignments(rings, snap1);
  CHECK_EQ_U(as.n, N_RING_SELLERS);
  uint64_t ca = cluster_of(&as, id_of(rings, 1, "ra0"));
  uint64_t cb = cluster_of(&as, id_of(rings, 1, "rb0"));
  CHECK(ca != 0 && cb != 0 && ca != cb);
  int same = 1;
  for (int i = 0; i < 12; i++)
    same &= cluster_of(&as, id_of(rings, 1, kf(a, "ra%d", i))) == ca;
  for (int i = 0; i < 8; i++)
    same &= cluster_of(&as, id_of(rings, 1, kf(a, "rb%d", i))) == cb;
  CHECK(same);
  int apart = 1;
  for (int i = 0; i < 400; i++) {
    uint64_t c = cluster_of(&as, id_of(rings, 1, kf(a, "h%d", i)));
    apart &= c != 0 && c != ca && c != cb;
  }
  CHECK(apart);
  for (int i = 0; i < 5; i++) {
    uint64_t c = cluster_of(&as, id_of(rings, 1, kf(a, "solo%d", i)));
    CHECK(c != ca && c != cb);
  }

  gd_rtxn *r;
  gd_snapshot_view v;
  CHECK(gd_store_read_begin(rings, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.id, snap1);
  CHECK_EQ_U(v.n_assignments, N_RING_SELLERS);
  /* The risk prior: flagged sellers / sellers, as the manifest says. */
  json_object *mroot;
  manifest(rings, snap1, &mroot);
  json_object *fs = jget(mroot, "result", "flagged_sellers"),
              *br = jget(mroot, "result", "risk_base_rate");
  double base_rate = br ? json_object_get_double(br) : -1;
  CHECK(fs && br);
  CHECK(fabs(base_rate - (double)json_object_get_int64(fs) / N_RING_SELLERS) < 1e-12);
  json_object_put(mroot);
  check_summary(r, snap1, ca, 12, 3, id_of(rings, GD_TYPE_ADDRESS, "wA"), base_rate);
  check_summary(r, snap1, cb, 8, 1, id_of(rings, GD_TYPE_ADDRESS, "wB"), base_rate);
  /* Members come from snap_member and agree with the assignments; the
   * stored ties span the ring (size - 1, between members, strongest
   * first). */
  uint64_t mb[64];
  size_t mn;
  bool more, indexed;
  CHECK(gd_store_cluster_members(r, snap1, ca, 0, 64, mb, &mn, &more, &indexed, NULL) == GD_OK);
  CHECK(indexed && !more && mn == 12);
  for (size_t i = 0; i < mn; i++)
    CHECK(cluster_of(&as, mb[i]) == ca && (i == 0 || mb[i] > mb[i - 1]));
  gd_snap_tie tb[64];
  size_t tn;
  uint64_t ttotal;
  CHECK(gd_store_cluster_ties(r, snap1, ca, 64, tb, &tn, &ttotal, NULL) == GD_OK);
  CHECK(tn == 11 && ttotal == 11);
  for (size_t i = 0; i < tn; i++)
    CHECK(cluster_of(&as, tb[i].a) == ca && cluster_of(&as, tb[i].b) == ca && tb[i].a < tb[i].b &&
          tb[i].weight > 0 && (i == 0 || tb[i].weight <= tb[i - 1].weight));
  /* A singleton's summary: no shared entity, cohesion 0. */
  const void *raw;
  size_t len;
  gd_cluster_summary cs;
  uint64_t cl = cluster_of(&as, id_of(rings, 1, "lonely"));
  CHECK(gd_store_cluster_get(r, snap1, cl, &raw, &len, NULL) == GD_OK);
  CHECK(gd_summary_decode(raw, len, &cs, NULL) == GD_OK);
  CHECK(cs.size == 1 && cs.n_top == 0 && cs.cohesion == 0.0 && cs.flagged == 0);
  /* Names: every seller with its key and flagged state (as many flagged as
   * the manifest counts), each supply source with its type and key. */
  bool has_names = false;
  CHECK(gd_store_snapshot_has_names(r, snap1, &has_names, NULL) == GD_OK && has_names);
  gd_snap_name nm;
  int nflagged = 0, named = 0;
  for (size_t i = 0; i < as.n; i++) {
    if (gd_store_snapshot_name(r, snap1, as.s[i], &nm, NULL) != GD_OK)
      continue;
    named++;
    nflagged += nm.flagged;
    CHECK(nm.type == GD_TYPE_SELLER && nm.key.n > 0);
    /* The key is the seller's own (read on the worker's key thread). */
    gd_ref ref = {.id = as.s[i]};
    gd_entity_view ev;
    CHECK(gd_store_get(r, &ref, &ev, NULL) == GD_OK && ev.key.n == nm.key.n &&
          memcmp(ev.key.p, nm.key.p, nm.key.n) == 0);
  }
  CHECK_EQ_U(named, N_RING_SELLERS);
  CHECK_EQ_U(nflagged, 4);
  CHECK(gd_store_snapshot_name(r, snap1, id_of(rings, 1, "ra0"), &nm, NULL) == GD_OK &&
        nm.key.n == 3 && memcmp(nm.key.p, "ra0", 3) == 0);
  CHECK(gd_store_snapshot_name(r, snap1, id_of(rings, GD_TYPE_ADDRESS, "wA"), &nm, NULL) ==
            GD_OK && nm.type == GD_TYPE_ADDRESS && nm.key.n == 2 && !nm.flagged);
  /* An entity that is no supply source is not named. */
  CHECK(gd_store_snapshot_name(r, snap1, id_of(rings, GD_TYPE_DEVICE, "ds0"), &nm, NULL) ==
        GD_ENOTFOUND);
  /* Kept links (a drawn cluster: 2+ sellers, one flagged): every link of
   * each member. Ring B's: wB (8), dB0 and dB1 (4 each), mB (4), the
   * rb4-rb5 link from both ends, rb0's hub. Sorted by (seller, entity). */
  CHECK(gd_store_cluster_get(r, snap1, cb, &raw, &len, NULL) == GD_OK);
  CHECK(gd_summary_decode(raw, len, &cs, NULL) == GD_OK && cs.links_kept);
  lk_ctx lk = {0};
  bool kept = false;
  CHECK(gd_store_cluster_links(r, snap1, cb, 0, UINT64_MAX, lk_add, &lk, &kept, NULL) == GD_OK);
  CHECK(kept);
  CHECK_EQ_U(lk.n, 23);
  uint64_t hub = id_of(rings, GD_TYPE_ADDRESS, "hub"), wb = id_of(rings, GD_TYPE_ADDRESS, "wB");
  size_t nwb = 0, ndirect = 0, nhub = 0;
  for (size_t i = 0; i < lk.n; i++) {
    CHECK(cluster_of(&as, lk.l[i].seller) == cb);
    nhub += lk.l[i].entity == hub;
    CHECK(i == 0 || lk.l[i].seller > lk.l[i - 1].seller ||
          (lk.l[i].seller == lk.l[i - 1].seller && lk.l[i].entity > lk.l[i - 1].entity));
    CHECK(lk.l[i].first_seen > 0 && lk.l[i].count >= 1);
    nwb += lk.l[i].entity == wb;
    ndirect += cluster_of(&as, lk.l[i].entity) == cb;
  }
  CHECK(nwb == 8 && ndirect == 2 && nhub == 1);
  /* Paging: the links of the members after rb3, up to rb5. */
  size_t all = lk.n;
  lk.n = 0;
  CHECK(gd_store_cluster_links(r, snap1, cb, id_of(rings, 1, "rb3"), id_of(rings, 1, "rb5"),
                               lk_add, &lk, &kept, NULL) == GD_OK);
  CHECK(kept && lk.n == 6 && lk.l[0].seller == id_of(rings, 1, "rb4"));
  CHECK(all == 23);
  /* The members and the shared entities have detailed names. */
  CHECK(gd_store_snapshot_name(r, snap1, id_of(rings, 1, "rb1"), &nm, NULL) == GD_OK &&
        nm.detail && nm.flagged && nm.d.nlabels == 1 && nm.d.first_seen > 0);
  gd_str lb = gd_snap_name_label(&nm, 0);
  CHECK(lb.n == 11 && memcmp(lb.p, "counterfeit", 11) == 0);
  CHECK(gd_store_snapshot_name(r, snap1, id_of(rings, GD_TYPE_DEVICE, "dB0"), &nm, NULL) ==
            GD_OK && nm.detail && nm.d.seller_count == 4 && nm.d.nlabels == 0);
  /* An unflagged cluster keeps none. */
  uint64_t ch = cluster_of(&as, id_of(rings, 1, "h0"));
  CHECK(gd_store_cluster_get(r, snap1, ch, &raw, &len, NULL) == GD_OK);
  CHECK(gd_summary_decode(raw, len, &cs, NULL) == GD_OK && !cs.links_kept);
  lk.n = 0;
  CHECK(gd_store_cluster_links(r, snap1, ch, 0, UINT64_MAX, lk_add, &lk, &kept, NULL) == GD_OK);
  CHECK(!kept && lk.n == 0);
  json_object *lm;
  manifest(rings, snap1, &lm);
  CHECK(json_object_get_int64(jget(lm, "result", "links_kept")) > 23);
  json_object_put(lm);
  gd_store_read_end(r);

  json_object *m, *jm = manifest(rings, snap1, &m);
  CHECK(jm != NULL);
  CHECK_EQ_U(json_object_get_int64(jget(m, "format", NULL)), 1);
  CHECK_STR(json_object_get_string(jget(m, "spec", "algorithm")), "leiden_cpm");
  CHECK_EQ_U(json_object_get_int64(jget(m, "spec", "seed")), 7);
  CHECK_STR(json_object_get_string(jget(m, "name", NULL)), "rings");
  CHECK_EQ_U(json_object_get_int64(jget(m, "input", "sellers")), N_RING_SELLERS);
  CHECK_EQ_U(strlen(json_object_get_string(jget(m, "input", "checksum"))), 64);
  CHECK_EQ_U(json_object_get_int64(jget(m, "result", "flagged_sellers")), 4);
  CHECK(json_object_get_int64(jget(m, "peak_rss_bytes", NULL)) > 0);
  CHECK(jget(m, "timings_ms", "cluster") != NULL);
  CHECK(jget(m, "previous_snapshot_id", NULL) == NULL);
  CHECK(jget(m, "warm_started", NULL) && !json_object_get_boolean(jget(m, "warm_started", NULL)));
  json_object_put(m);
  alist_free(&as);
}

static void test_worker_deterministic(void) {
  char out[16384];
  int code = run_worker(rings_dir, SPEC, NULL, out, sizeof out);
  CHECK_EQ_U(code, 0);
  snap2 = done_id(out);
  CHECK_EQ_U(snap2, 2);
  alist x = assignments(rings, snap1), y = assignments(rings, snap2);
  CHECK(x.n == N_RING_SELLERS && x.n == y.n);
  CHECK(x.n == y.n && memcmp(x.s, y.s, x.n * 8) == 0 && memcmp(x.c, y.c, x.n * 8) == 0);
  alist_free(&x);
  alist_free(&y);
  json_object *m1, *m2;
  manifest(rings, snap1, &m1);
  manifest(rings, snap2, &m2);
  CHECK_STR(json_object_get_string(jget(m1, "input", "checksum")),
            json_object_get_string(jget(m2, "input", "checksum")));
  json_object_put(m1);
  json_object_put(m2);
}

static void test_worker_stable_ids(void) {
  char out[16384];
  /* A few new links: 3 sellers join ring A, 2 join the hub, and h1 and
   * solo0 start sharing a device. */
  gd_writer *w;
  CHECK(gd_writer_start(rings, 0, &w, NULL) == GD_OK);
  linkset ls = {0};
  for (int i = 0; i < 3; i++) {
    char a[32];
    snprintf(a, sizeof a, "ra_new%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "wA", 3000);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, "dA0", 3000);
  }
  add_link(&ls, GD_TYPE_SELLER, "hn0", GD_TYPE_ADDRESS, "hub", 3000);
  add_link(&ls, GD_TYPE_SELLER, "hn1", GD_TYPE_ADDRESS, "hub", 3000);
  add_link(&ls, GD_TYPE_SELLER, "h1", GD_TYPE_DEVICE, "dnew", 3000);
  add_link(&ls, GD_TYPE_SELLER, "solo0", GD_TYPE_DEVICE, "dnew", 3000);
  write_links(w, &ls, 100);
  linkset_free(&ls);
  gd_writer_stop(w);

  const char *spec = "algorithm=leiden_cpm\nseed=7\nprevious=0\n";
  int code = run_worker(rings_dir, spec, NULL, out, sizeof out);
  CHECK_EQ_U(code, 0);
  uint64_t snap3 = done_id(out);
  CHECK_EQ_U(snap3, 3);
  alist x = assignments(rings, snap2), y = assignments(rings, snap3);
  CHECK_EQ_U(y.n, N_RING_SELLERS + 5);
  size_t both = 0, kept = 0, i = 0, k = 0;
  while (i < x.n && k < y.n) {
    if (x.s[i] < y.s[k]) {
      i++;
    } else if (x.s[i] > y.s[k]) {
      k++;
    } else {
      both++;
      kept += x.c[i] == y.c[k];
      i++;
      k++;
    }
  }
  printf("# stable ids: %zu of %zu sellers kept their cluster id\n", kept, both);
  CHECK_EQ_U(both, N_RING_SELLERS);
  CHECK(kept * 100 >= both * 95);
  uint64_t ra0 = id_of(rings, 1, "ra0");
  CHECK(cluster_of(&x, ra0) == cluster_of(&y, ra0));
  CHECK(cluster_of(&y, id_of(rings, 1, "ra_new2")) == cluster_of(&y, ra0));
  CHECK(cluster_of(&y, id_of(rings, 1, "h1")) == cluster_of(&y, id_of(rings, 1, "solo0")));
  alist_free(&x);
  alist_free(&y);
  json_object *m;
  manifest(rings, snap3, &m);
  CHECK_EQ_U(json_object_get_int64(jget(m, "previous_snapshot_id", NULL)), snap2);
  CHECK(json_object_get_int64(jget(m, "stable_ids", "inherited")) > 0);
  json_object_put(m);
}

/*
 * warm_start (worker.h): Leiden starts from the previous snapshot's
 * membership when asked (on), or under auto when the previous snapshot
 * was made with the same spec but for name, seed, previous and warm_start;
 * the manifest records the choice ("warm_started") and the spec's value.
 */
static json_object *warm_run(const char *spec, char *out, size_t cap, uint64_t *ret_id) {
  *ret_id = 0;
  int code = run_worker(rings_dir, spec, NULL, out, cap);
  CHECK_EQ_U(code, 0);
  if (code) {
    fprintf(stderr, "worker output:\n%s\n", out);
    return NULL;
  }
  *ret_id = done_id(out);
  json_object *m;
  manifest(rings, *ret_id, &m);
  return m;
}

static bool warm_started(json_object *m) {
  json_object *w = jget(m, "warm_started", NULL);
  CHECK(w != NULL && json_object_is_type(w, json_type_boolean));
  return w && json_object_get_boolean(w);
}

static void test_worker_warm_start(void) {
  char out[16384];
  uint64_t id, prev;
  /* auto, the latest snapshot made by Infomap (test_worker_errors): cold. */
  json_object *m = warm_run("seed=5\n", out, sizeof out, &prev);
  CHECK(!warm_started(m));
  CHECK(strstr(out, "info warm_started 0") != NULL);
  json_object_put(m);
  /* auto, the latest snapshot made with the same spec but for its name
   * and seed: warm. */
  m = warm_run("seed=11\nname=warm\n", out, sizeof out, &id);
  CHECK(warm_started(m));
  CHECK(strstr(out, "info warm_started 1") != NULL);
  CHECK_EQ_U(json_object_get_int64(jget(m, "previous_snapshot_id", NULL)), prev);
  CHECK_STR(json_object_get_string(jget(m, "spec", "warm_start")), "auto");
  /* From a stable partition of an unchanged graph: one iteration, every
   * seller keeps its cluster id. */
  CHECK_EQ_U(json_object_get_int64(jget(m, "result", "iterations")), 1);
  CHECK_EQ_U(json_object_get_int64(jget(m, "stable_ids", "sellers_moved")), 0);
  alist x = assignments(rings, prev), y = assignments(rings, id);
  CHECK(x.n == y.n && x.n && memcmp(x.c, y.c, x.n * sizeof *x.c) == 0);
  alist_free(&x);
  alist_free(&y);
  /* Its export is the previous job's image (store/snapshot.h), nothing
   * changed since, and it keeps an image of its own. */
  CHECK_EQ_U(json_object_get_int64(jget(jget(m, "input", NULL), "from_image", "snapshot_id")),
             prev);
  CHECK_EQ_U(json_object_get_int64(jget(jget(m, "input", NULL), "from_image", "changed_ids")), 0);
  CHECK(jget(m, "image", "nonce") != NULL);
  json_object *pm;
  manifest(rings, prev, &pm);
  CHECK_STR(json_object_get_string(jget(m, "input", "checksum")),
            json_object_get_string(jget(pm, "input", "checksum")));
  json_object_put(pm);
  json_object_put(m);

  /* The graph changes: ring A gains two members, a new pair appears. */
  gd_writer *w;
  CHECK(gd_writer_start(rings, 0, &w, NULL) == GD_OK);
  linkset ls = {0};
  add_link(&ls, GD_TYPE_SELLER, "ra_warm0", GD_TYPE_ADDRESS, "wA", 4000);
  add_link(&ls, GD_TYPE_SELLER, "ra_warm0", GD_TYPE_DEVICE, "dA1", 4000);
  add_link(&ls, GD_TYPE_SELLER, "ra_warm1", GD_TYPE_DEVICE, "dA2", 4000);
  add_link(&ls, GD_TYPE_SELLER, "ra_warm1", GD_TYPE_ADDRESS, "wA", 4000);
  add_link(&ls, GD_TYPE_SELLER, "pair0", GD_TYPE_SELLER, "pair1", 4000);
  write_links(w, &ls, 100);
  linkset_free(&ls);
  gd_writer_stop(w);

  /* on: the previous image patched with what changed reads the same
   * graph as the full read of the next (cold) job. */
  m = warm_run("warm_start=on\nname=patched\n", out, sizeof out, &id);
  CHECK(warm_started(m));
  CHECK(json_object_get_int64(jget(jget(m, "input", NULL), "from_image", "changed_ids")) >= 7);
  char patched_sum[65];
  snprintf(patched_sum, sizeof patched_sum, "%s",
           json_object_get_string(jget(m, "input", "checksum")));
  json_object_put(m);
  /* auto, another resolution than the previous snapshot's: cold, and a
   * full read. */
  m = warm_run("resolution=0.3\n", out, sizeof out, &id);
  CHECK(!warm_started(m));
  CHECK(jget(jget(m, "input", NULL), "from_image", NULL) == NULL);
  CHECK_STR(json_object_get_string(jget(m, "input", "checksum")), patched_sum);
  json_object_put(m);
  /* Only this snapshot's image and its previous one's are kept. */
  {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/images", rings_dir);
    DIR *d = opendir(dir);
    int n_img = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
      n_img += de->d_name[0] != '.';
    if (d)
      closedir(d);
    CHECK(n_img == 2);
  }
  /* off: cold, whatever the previous spec. */
  m = warm_run("resolution=0.3\nwarm_start=off\n", out, sizeof out, &id);
  CHECK(!warm_started(m));
  CHECK_STR(json_object_get_string(jget(m, "spec", "warm_start")), "off");
  json_object_put(m);
  /* auto after it: its spec differs from this one in warm_start only. */
  uint64_t before = id;
  m = warm_run("resolution=0.3\nseed=3\n", out, sizeof out, &id);
  CHECK(warm_started(m));
  CHECK_EQ_U(json_object_get_int64(jget(m, "previous_snapshot_id", NULL)), before);
  json_object_put(m);
  /* The new sellers started on their own and joined where they belong. */
  alist z = assignments(rings, id);
  uint64_t ca = cluster_of(&z, id_of(rings, GD_TYPE_SELLER, "ra0"));
  CHECK(ca != 0);
  CHECK(cluster_of(&z, id_of(rings, GD_TYPE_SELLER, "ra_warm0")) == ca);
  CHECK(cluster_of(&z, id_of(rings, GD_TYPE_SELLER, "ra_warm1")) == ca);
  CHECK(cluster_of(&z, id_of(rings, GD_TYPE_SELLER, "pair0")) ==
        cluster_of(&z, id_of(rings, GD_TYPE_SELLER, "pair1")));
  alist_free(&z);
  /* on: warm even though the spec differs. A damaged image is not used:
   * the job says why and reads the whole graph. */
  {
    char path[600];
    snprintf(path, sizeof path, "%s/images/%llu.img", rings_dir, (unsigned long long)id);
    FILE *f = fopen(path, "r+b");
    CHECK(f && fseek(f, -1, SEEK_END) == 0 && fputc(0x7f, f) != EOF && fclose(f) == 0);
  }
  m = warm_run("warm_start=on\nresolution=0.25\n", out, sizeof out, &id);
  CHECK(warm_started(m));
  CHECK(strstr(json_object_get_string(jget(m, "input", "image_unused")), "checksum") != NULL);
  CHECK_STR(json_object_get_string(jget(m, "spec", "warm_start")), "on");
  json_object_put(m);
  /* on without a previous snapshot: cold. */
  m = warm_run("warm_start=on\nprevious=-1\n", out, sizeof out, &id);
  CHECK(!warm_started(m));
  CHECK(jget(m, "previous_snapshot_id", NULL) == NULL);
  json_object_put(m);
  /* Other algorithms ignore it. */
  m = warm_run("warm_start=on\nalgorithm=components\n", out, sizeof out, &id);
  CHECK(!warm_started(m));
  json_object_put(m);
  /* Modularity Leiden starts warm as well. */
  m = warm_run("warm_start=on\nalgorithm=leiden_modularity\n", out, sizeof out, &id);
  CHECK(warm_started(m));
  json_object_put(m);
  /* A bad value names the key. */
  CHECK_EQ_U(run_worker(rings_dir, "warm_start=maybe\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "warm_start: 'maybe' is not auto, on or off") != NULL);
}

static void test_worker_errors(void) {
  char out[16384];
  gd_rtxn *r;
  gd_snapshot_view v;
  CHECK(gd_store_read_begin(rings, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, NULL) == GD_OK);
  uint64_t latest = v.id;
  gd_store_read_end(r);

  /* Bad specs: the error names the key; exit code INVALID. */
  CHECK_EQ_U(run_worker(rings_dir, "algorithm=leiden_cpm\nresolutoin=0.2\n", NULL, out,
                        sizeof out),
             2);
  CHECK(strstr(out, "error ") && strstr(out, "resolutoin"));
  CHECK_EQ_U(run_worker(rings_dir, "resolution = abc\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "spec line 1: resolution: 'abc'") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "algorithm=kmeans\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "algorithm") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "seed=1\nseed=2\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "seed") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "hub_cap.seller=3\n", NULL, out, sizeof out), 2);
  CHECK_EQ_U(run_worker(rings_dir, "evidence=loglog\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "evidence: 'loglog' is not an evidence rule") != NULL);
  CHECK_EQ_U(run_worker(rings_dir,
                        "weight.seller=0\nweight.address=0\nweight.payment_account=0\n"
                        "weight.device=0\nweight.phone=0\nweight.email=0\nweight.ip=0\n",
                        NULL, out, sizeof out),
             2);
  CHECK(strstr(out, "every type weight is 0") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "weight.ip=nan\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "weight.ip") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "previous=999\n", NULL, out, sizeof out), 3);
  CHECK(strstr(out, "previous snapshot") != NULL);

  /* Caps: RESOURCE_EXHAUSTED before igraph. */
  const char *caps1[] = {"--max-sellers", "100", NULL};
  CHECK_EQ_U(run_worker(rings_dir, SPEC, caps1, out, sizeof out), 4);
  CHECK(strstr(out, "--max-sellers") != NULL);
  CHECK(strstr(out, "stage cluster") == NULL);
  const char *caps2[] = {"--max-ties", "10", NULL};
  CHECK_EQ_U(run_worker(rings_dir, SPEC, caps2, out, sizeof out), 4);
  CHECK(strstr(out, "--max-ties") != NULL);
  CHECK(strstr(out, "stage cluster") == NULL);

  /* Every algorithm runs to a complete snapshot; the modularity ones also
   * keep ring B together. (Components at its 0.5 threshold rightly splits
   * ring B into its two device groups: across them only the warehouse, 0.25,
   * ties them; label propagation and Infomap are swayed by the hub.) */
  const char *algos[] = {"leiden_modularity", "louvain", "label_propagation", "components",
                         "infomap"};
  for (size_t i = 0; i < sizeof algos / sizeof *algos; i++) {
    char spec[128];
    snprintf(spec, sizeof spec, "algorithm=%s\nseed=3\nprevious=-1\n", algos[i]);
    CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 0);
    uint64_t id = done_id(out);
    CHECK(id > latest);
    latest = id;
    alist y = assignments(rings, id);
    CHECK_EQ_U(y.n, N_RING_SELLERS + 5);
    json_object *m;
    manifest(rings, id, &m);
    CHECK_STR(json_object_get_string(jget(m, "spec", "algorithm")), algos[i]);
    json_object_put(m);
    if (i < 2) {
      uint64_t cb = cluster_of(&y, id_of(rings, 1, "rb0"));
      int together = 1;
      for (int k = 1; k < 8; k++)
        together &= cluster_of(&y, id_of(rings, 1, kf((char[32]){0}, "rb%d", k))) == cb;
      CHECK(together);
    }
    alist_free(&y);
  }

  /* Nothing was written by the failed runs. */
  CHECK(gd_store_read_begin(rings, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.id, latest);
  gd_store_read_end(r);
}

static void test_worker_empty(void) {
  char dir[160], out[16384];
  snprintf(dir, sizeof dir, "%s/empty", root);
  gd_store_close(open_at(dir));
  CHECK_EQ_U(run_worker(dir, "", NULL, out, sizeof out), 0);
  uint64_t id = done_id(out);
  CHECK_EQ_U(id, 1);
  gd_store *st = open_at(dir);
  gd_rtxn *r;
  gd_snapshot_view v;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, NULL) == GD_OK);
  CHECK(v.id == 1 && v.n_assignments == 0 && v.n_clusters == 0);
  gd_store_read_end(r);
  gd_store_close(st);
}

/* ======================================================================== */
/* Cancel on a 200k-seller graph                                             */

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void test_worker_cancel(void) {
  enum { NS = 200000, ND = 70000, NA = 25000 };
  char dir[160], a[32], b[32];
  snprintf(dir, sizeof dir, "%s/big", root);
  gd_store *st = open_at(dir);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  double t0 = now_s();
  linkset ls = {0};
  for (int i = 0; i < NS; i++) {
    kf(a, "s%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "d%d", (int)(rnd() % ND)), 1000);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "d%d", (int)(rnd() % ND)), 1000);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, kf(b, "a%d", (int)(rnd() % NA)), 1000);
  }
  write_links(w, &ls, 30000);
  linkset_free(&ls);
  gd_writer_stop(w);
  printf("# big: %d sellers, %d links loaded in %.2f s\n", NS, 3 * NS, now_s() - t0);

  proc p;
  const char *spec = "algorithm=leiden_cpm\nseed=1\n";
  CHECK(spawn_worker(&p, dir, spec, NULL) == 0);
  const char *line;
  int in_cluster = 0;
  char seen[4096] = "";
  while ((line = next_line(&p))) {
    strncat(seen, line, sizeof seen - strlen(seen) - 2);
    strcat(seen, "\n");
    if (strncmp(line, "stage cluster", 13) == 0) {
      in_cluster = 1;
      break;
    }
  }
  CHECK(in_cluster);
  usleep(100 * 1000); /* let Leiden get going */
  double k0 = now_s();
  kill(p.pid, SIGTERM);
  const char *last = NULL;
  int got_cancelled = 0;
  while ((line = next_line(&p))) {
    last = line;
    got_cancelled |= strcmp(line, "cancelled") == 0;
  }
  (void)last;
  int code = finish(&p);
  double k1 = now_s();
  printf("# big: read %.3f s, project %.3f s; SIGTERM to exit %.3f s\n", timing(seen, "read"),
         timing(seen, "project"), k1 - k0);
  CHECK_EQ_U(code, 5);
  CHECK(got_cancelled);
  CHECK(k1 - k0 < 2.0);
  gd_rtxn *r;
  gd_snapshot_view v;
  gd_err e;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, 0, &v, &e) == GD_EPRECONDITION);
  gd_store_read_end(r);
  gd_store_close(st);
}

static void setup(void) {
  worker_path = getenv("GD_WORKER");
  if (!worker_path) {
    fprintf(stderr, "GD_WORKER is not set (meson passes the graphd-worker path)\n");
    exit(1);
  }
  strcpy(root, "/tmp/gd-test-worker-XXXXXX");
  if (!mkdtemp(root))
    abort();
}

static void teardown(void) {
  gd_store_close(rings);
  rings = NULL;
  rm_rf(root);
}

static void test_setup(void) { setup(); }
static void test_teardown(void) { teardown(); }

/*
 * A windowed run weighs entities over all time. Ring w0..w11 shares three
 * devices (seen at 1000) and a warehouse (seen at 5000); honest p0..p11
 * share one park address (5000) and nothing else. Clustered from 4000 on,
 * the window holds only the warehouse and park links: the warehouse keeps
 * the corroboration its devices give it over all time, so the ring is one
 * cluster; the park is context, its sellers stay apart. (With corroboration
 * taken inside the window the warehouse would be context too.)
 */
static void test_worker_window(void) {
  char dir[160], a[32], b[32], out[16384];
  snprintf(dir, sizeof dir, "%s/window", root);
  gd_store *st = open_at(dir);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  linkset ls = {0};
  for (int i = 0; i < 12; i++) {
    kf(a, "w%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "wd%d", i % 3), 1000);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "warehouse", 5000);
    kf(a, "p%d", i);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_ADDRESS, "park", 5000);
    add_link(&ls, GD_TYPE_SELLER, a, GD_TYPE_DEVICE, kf(b, "pd%d", i), 1000);
  }
  write_links(w, &ls, 1000);
  linkset_free(&ls);
  gd_writer_stop(w);
  gd_store_close(st);

  CHECK_EQ_U(run_worker(dir, "since = 4000\nprevious = -1\n", NULL, out, sizeof out), 0);
  uint64_t snap = done_id(out);
  CHECK(snap != 0);
  st = open_at(dir);
  alist as = assignments(st, snap);
  uint64_t ring = cluster_of(&as, id_of(st, GD_TYPE_SELLER, "w0"));
  int same = 0, apart = 0;
  for (int i = 0; i < 12; i++) {
    same += cluster_of(&as, id_of(st, GD_TYPE_SELLER, kf(a, "w%d", i))) == ring;
    for (int k = 0; k < i; k++)
      apart += cluster_of(&as, id_of(st, GD_TYPE_SELLER, kf(a, "p%d", i))) !=
               cluster_of(&as, id_of(st, GD_TYPE_SELLER, kf(b, "p%d", k)));
  }
  CHECK_EQ_U(same, 12);
  CHECK_EQ_U(apart, 66);
  json_object *root_obj = NULL, *m = manifest(st, snap, &root_obj);
  json_object *pj = NULL, *v = NULL;
  CHECK(m && json_object_object_get_ex(m, "projection", &pj) &&
        json_object_object_get_ex(pj, "entities_context", &v) && json_object_get_int64(v) == 1);
  CHECK(pj && json_object_object_get_ex(pj, "entities_corroborated", &v) &&
        json_object_get_int64(v) >= 1);
  json_object_put(root_obj);
  alist_free(&as);
  gd_store_close(st);
}

/*
 * Spec key import (worker.h): the membership file's rows become the
 * snapshot, with stable ids and the manifest's "imported"; a bad row, a
 * missing or foreign file fail the job. --ties-fd: the evidence graph's
 * ties, once each, ascending.
 */
static void write_import(const char *path, const gd_import_row *rows, uint64_t n,
                         uint64_t declared) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f)
    return;
  fwrite(GD_IMPORT_MAGIC, 1, 8, f);
  fwrite(&declared, sizeof declared, 1, f);
  fwrite(rows, sizeof *rows, n, f);
  fclose(f);
}

static void test_worker_import(void) {
  char out[16384], spec[600], path[300];
  snprintf(path, sizeof path, "%s/import.rows", root);
  /* The worker's own membership, labels renamed, one seller left out. */
  uint64_t prev;
  CHECK_EQ_U(run_worker(rings_dir, "name=base\n", NULL, out, sizeof out), 0);
  prev = done_id(out);
  alist a = assignments(rings, prev);
  CHECK(a.n > 3);
  gd_import_row *rows = calloc(a.n, sizeof *rows);
  for (size_t i = 0; i + 1 < a.n; i++)
    rows[i] = (gd_import_row){a.s[i], (int64_t)(a.c[i] * 1000003) - INT64_MAX / 2};
  write_import(path, rows, a.n - 1, a.n - 1);
  snprintf(spec, sizeof spec, "import=%s\nengine=unit test\n", path);
  CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 0);
  uint64_t id = done_id(out);
  json_object *m;
  manifest(rings, id, &m);
  CHECK_STR(json_object_get_string(jget(m, "imported", "engine")), "unit test");
  CHECK_EQ_U(json_object_get_int64(jget(m, "imported", "rows")), a.n - 1);
  CHECK_EQ_U(json_object_get_int64(jget(m, "imported", "sellers_unassigned")), 1);
  CHECK_EQ_U(json_object_get_int64(jget(m, "previous_snapshot_id", NULL)), prev);
  CHECK(strstr(out, "info import_rows ") != NULL);
  json_object_put(m);
  /* Every cluster of two or more keeps its id. */
  alist b = assignments(rings, id);
  CHECK_EQ_U(b.n, a.n);
  for (size_t i = 0; i + 1 < a.n; i++) {
    size_t size = 0;
    for (size_t k = 0; k < a.n; k++)
      size += a.c[k] == a.c[i];
    if (size >= 2 && (i + 1 < a.n - 1 || a.c[i] != a.c[a.n - 1]))
      CHECK_EQ_U(cluster_of(&b, a.s[i]), a.c[i]);
  }
  alist_free(&b);

  /* Errors: a seller twice, an id that is no seller, a short file, a
   * missing file, a relative path. Nothing is written. */
  rows[1] = rows[0];
  write_import(path, rows, 3, 3);
  CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 2);
  CHECK(strstr(out, "import row 1: seller") && strstr(out, "given twice"));
  rows[1] = (gd_import_row){id_of(rings, GD_TYPE_ADDRESS, "wA"), 1};
  write_import(path, rows, 3, 3);
  CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 2);
  CHECK(strstr(out, "import row 1: seller") && strstr(out, "is not a seller"));
  write_import(path, rows, 1, 3);
  CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 1);
  CHECK(strstr(out, "ends after 1 of 3 rows") != NULL);
  unlink(path);
  CHECK_EQ_U(run_worker(rings_dir, spec, NULL, out, sizeof out), 6);
  CHECK(strstr(out, "restarted before the import ran") != NULL);
  CHECK_EQ_U(run_worker(rings_dir, "import=rel/path\n", NULL, out, sizeof out), 2);
  CHECK(strstr(out, "import: 'rel/path' must be an absolute path") != NULL);
  gd_rtxn *r;
  gd_snapshot_view v;
  CHECK(gd_store_read_begin(rings, &r, NULL) == GD_OK);
  CHECK(gd_store_snapshot_get(r, id + 1, &v, NULL) == GD_ENOTFOUND); /* none after the import */
  gd_store_read_end(r);
  free(rows);
  alist_free(&a);

  /* Ties: what the job projected, each once, ascending. */
  char tpath[300], fdarg[16];
  snprintf(tpath, sizeof tpath, "%s/ties.bin", root);
  int fd = open(tpath, O_RDWR | O_CREAT | O_TRUNC, 0600); /* inherited by the worker */
  CHECK(fd >= 0);
  snprintf(fdarg, sizeof fdarg, "%d", fd);
  const char *extra[] = {"--ties-fd", fdarg, NULL};
  CHECK_EQ_U(run_worker(rings_dir, "min_tie_weight=0\n", extra, out, sizeof out), 0);
  uint64_t count = done_id(out);
  struct stat sb;
  CHECK(fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == count * sizeof(gd_tie_rec));
  gd_tie_rec *t = malloc((size_t)sb.st_size + 1);
  CHECK(pread(fd, t, (size_t)sb.st_size, 0) == sb.st_size);
  close(fd);
  manifest(rings, prev, &m);
  CHECK_EQ_U(count, json_object_get_int64(jget(m, "projection", "ties")));
  json_object_put(m);
  for (uint64_t i = 0; i < count; i++) {
    CHECK(t[i].a < t[i].b && t[i].w > 0);
    if (i)
      CHECK(t[i - 1].a < t[i].a || (t[i - 1].a == t[i].a && t[i - 1].b < t[i].b));
  }
  free(t);
  CHECK(strstr(out, "stage cluster") == NULL); /* no clustering, nothing written */
}

TAP_MAIN(T(test_setup), T(test_snapshot_tables), T(test_export), T(test_worker_rings),
         T(test_worker_window),
         T(test_worker_deterministic), T(test_worker_stable_ids), T(test_worker_errors),
         T(test_worker_warm_start), T(test_worker_import),
         T(test_worker_empty), T(test_worker_cancel), T(test_teardown))
