/*
 * Exchange with engines outside graphd (docs/SCALING.md, "Clustering on a
 * distributed engine"):
 *
 *   ExportTies      the evidence graph's ties, computed by a worker process
 *                   of its own (graphd-worker --ties-fd, worker.h) and
 *                   streamed as they come off its pipe
 *   ImportSnapshot  a membership computed elsewhere, checked here, handed
 *                   to a clustering job (spec key import) that makes it a
 *                   snapshot; the reply waits for the job's end
 *
 * ExportTies runs one at a time, on a thread of its own: the worker reads
 * and projects the whole graph for seconds before its first tie, which no
 * handler or query thread may wait for. The thread writes a batch, waits
 * for its on_written, writes the next; on_cancel SIGTERMs the worker
 * (R->ties names the call and the worker under a lock, so a cancel never
 * reaches a worker already reaped).
 *
 * ImportSnapshot reads its messages one at a time on the handler threads
 * (a row is 16 bytes: decoding is cheap next to the job), and does the
 * end of the stream on a query thread: the rows are checked against the
 * store, written to a file in <data>/imports, and the job is submitted;
 * a jobs listener answers the call when the job reaches a final state,
 * and the file is removed then. One upload at a time (R->import_running,
 * held until the job is queued).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "rpc/rpc_int.h"
#include "worker/worker.h"

/* ---- ExportTies ------------------------------------------------------------ */

#define TIES_BATCH 8192

typedef struct ties_call {
  gd_rpc *rpc;
  gd_call *call;
  gd_jobs *jobs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool writing, write_ok;
  pid_t pid;
  int tfd, pfd;
} ties_call;

/* Sends one batch and waits for it to be written. false: the call died. */
static bool ties_send(ties_call *t, const uint8_t *buf, size_t n) {
  pthread_mutex_lock(&t->mu);
  t->writing = true;
  pthread_mutex_unlock(&t->mu);
  gd_call_write(t->call, buf, n, false);
  pthread_mutex_lock(&t->mu);
  while (t->writing)
    pthread_cond_wait(&t->cv, &t->mu);
  bool ok = t->write_ok;
  pthread_mutex_unlock(&t->mu);
  return ok;
}

static void *ties_main(void *arg) {
  ties_call *t = arg;
  pthread_setname_np(pthread_self(), "gd-ties"); /* top -H, perf --sort comm */
  gd_rpc *R = t->rpc;
  gd_tie_rec *recs = malloc(TIES_BATCH * sizeof *recs);
  uint64_t *a = malloc(TIES_BATCH * sizeof *a), *b = malloc(TIES_BATCH * sizeof *b);
  double *w = malloc(TIES_BATCH * sizeof *w);
  uint8_t *buf = NULL;
  size_t cap = 0;
  int code = GD_OK;
  char msg[GD_ERR_MSG_MAX] = "";
  uint64_t sent = 0;
  if (!recs || !a || !b || !w) {
    code = GD_ENOMEM;
    snprintf(msg, sizeof msg, "out of memory");
  }
  while (!code) {
    ssize_t r = gd_fd_read_full(t->tfd, recs, TIES_BATCH * sizeof *recs);
    if (r < 0) {
      code = GD_EINTERNAL;
      snprintf(msg, sizeof msg, "reading the worker's ties: %s", strerror(errno));
      break;
    }
    size_t n = (size_t)r / sizeof *recs;
    if (n == 0)
      break; /* the worker is done (or gone: its exit says which) */
    for (size_t i = 0; i < n; i++) {
      a[i] = recs[i].a;
      b[i] = recs[i].b;
      w[i] = recs[i].w;
    }
    Graphd__V1__TieBatch m = GRAPHD__V1__TIE_BATCH__INIT;
    m.seller_a = a;
    m.n_seller_a = n;
    m.seller_b = b;
    m.n_seller_b = n;
    m.weight = w;
    m.n_weight = n;
    size_t len;
    if (rpc_pack_stream(&m.base, &buf, &cap, &len)) {
      code = GD_ENOMEM;
      snprintf(msg, sizeof msg, "out of memory");
      break;
    }
    if (!ties_send(t, buf, len)) {
      code = GD_ECANCELLED;
      snprintf(msg, sizeof msg, "the client went away after %llu ties",
               (unsigned long long)sent);
      break;
    }
    sent += n;
  }
  /* The worker: stopped unless it finished, then reaped. */
  pthread_mutex_lock(&R->ties.mu);
  if (code)
    kill(t->pid, SIGTERM);
  R->ties.pid = 0;
  pthread_mutex_unlock(&R->ties.mu);
  close(t->tfd);
  char err_line[GD_ERR_MSG_MAX] = "";
  unsigned long long done = 0;
  bool got_done = false;
  FILE *pf = fdopen(t->pfd, "r");
  if (pf) {
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ln;
    while ((ln = getline(&line, &lcap, pf)) > 0) {
      if (line[ln - 1] == '\n')
        line[--ln] = 0;
      if (strncmp(line, "error ", 6) == 0)
        snprintf(err_line, sizeof err_line, "%s", line + 6);
      else if (sscanf(line, "done %llu", &done) == 1)
        got_done = true;
    }
    free(line);
    fclose(pf);
  } else {
    close(t->pfd);
  }
  int status = 0;
  while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!code) {
    code = WIFEXITED(status) ? gd_worker_exit_status(WEXITSTATUS(status)) : GD_EINTERNAL;
    if (!code && (!got_done || done != sent)) {
      code = GD_EINTERNAL;
      snprintf(msg, sizeof msg, "the worker sent %llu ties but reported %s",
               (unsigned long long)sent, got_done ? "another count" : "no end");
    } else if (code) {
      gd_jobs_worker_reason(t->jobs, status, err_line, msg, sizeof msg);
    }
  }
  free(recs);
  free(a);
  free(b);
  free(w);
  free(buf);
  gd_call *c = t->call;
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t);
  pthread_mutex_lock(&R->ties.mu);
  R->ties.call = NULL; /* the next export may start */
  pthread_mutex_unlock(&R->ties.mu);
  gd_call_finish(c, code, code ? msg : NULL, NULL, 0);
  return NULL;
}

void rpc_ties_written(gd_call *c, bool ok) {
  ties_call *t = gd_call_user(c);
  pthread_mutex_lock(&t->mu);
  t->writing = false;
  t->write_ok = ok;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

void rpc_ties_cancel(gd_call *c) {
  gd_rpc *R = rpc_ctx(c);
  pthread_mutex_lock(&R->ties.mu);
  if (R->ties.call == c && R->ties.pid > 0)
    kill(R->ties.pid, SIGTERM);
  pthread_mutex_unlock(&R->ties.mu);
}

void rpc_export_ties(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ExportTiesRequest *req = (Graphd__V1__ExportTiesRequest *)rpc_unpack(
      c, &graphd__v1__export_ties_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rpc *R = rpc_ctx(c);
  gd_strbuf b = {0};
  gd_err err = {0};
  ties_call *t = NULL;
  gd_jobs *jobs = rpc_need_jobs(c);
  if (!jobs)
    goto out;
  gd_strbuf_printf(&b, "# ExportTies\n");
  if (rpc_spec_text(req->spec, &b, &err) || b.oom) {
    if (!err.code)
      gd_err_set(&err, GD_ENOMEM, "out of memory");
    rpc_fail(c, &err);
    goto out;
  }
  /* Held while the worker starts: a cancel waits until it is known, and
   * R->ties.call says an export runs. */
  pthread_mutex_lock(&R->ties.mu);
  int rc = GD_OK;
  if (R->ties.call)
    rc = gd_err_set(&err, GD_ERESOURCE, "another ExportTies is running; one at a time");
  else if (!(t = calloc(1, sizeof *t)))
    rc = gd_err_set(&err, GD_ENOMEM, "out of memory");
  else
    rc = gd_jobs_spawn_ties(jobs, b.p, &t->pid, &t->tfd, &t->pfd, &err);
  if (!rc) {
    t->rpc = R;
    t->call = c;
    t->jobs = jobs;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    R->ties.call = c;
    R->ties.pid = t->pid;
    gd_call_set_user(c, t);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, ties_main, t)) {
      kill(t->pid, SIGKILL);
      waitpid(t->pid, NULL, 0);
      close(t->tfd);
      close(t->pfd);
      pthread_mutex_destroy(&t->mu);
      pthread_cond_destroy(&t->cv);
      R->ties.call = NULL;
      R->ties.pid = 0;
      rc = gd_err_set(&err, GD_EINTERNAL, "cannot start the export thread");
    }
    pthread_attr_destroy(&at);
  }
  pthread_mutex_unlock(&R->ties.mu);
  if (rc) {
    free(t);
    rpc_fail(c, &err);
  }
out:
  free(b.p);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- ImportSnapshot -------------------------------------------------------- */

typedef struct import_call {
  gd_rpc *rpc;
  gd_call *call;
  gd_jobs *jobs;
  gd_import_row *rows;
  uint64_t n, cap, declared;
  uint64_t messages;
  gd_strbuf spec; /* worker spec text, from the header */
  char engine[GD_WORKER_NAME_MAX + 1];
  char path[PATH_MAX];
  /* Waiting for the job: the listener is on before the job is submitted;
   * job_id is 0 until it is. */
  _Atomic uint64_t job_id;
  atomic_bool finishing;
  uint64_t handle;
} import_call;

static void import_free(import_call *s) {
  free(s->rows);
  free(s->spec.p);
  free(s);
}

/* Ends the upload with an error: nothing was written. */
static void import_fail(import_call *s, int code, const char *msg) {
  gd_rpc *R = s->rpc;
  gd_call *c = s->call;
  char m[GD_ERR_MSG_MAX + 40];
  snprintf(m, sizeof m, "%s; nothing was written", msg);
  import_free(s);
  atomic_store(&R->import_running, false);
  gd_call_finish(c, code, m, NULL, 0);
}

/* The first message's header: the job's spec text, engine, row count. */
static int import_header(import_call *s, const Graphd__V1__ImportHeader *h, gd_err *err) {
  gd_rpc *R = s->rpc;
  if (!h)
    return gd_err_set(err, GD_EINVALID,
                      "message 0: header: missing (the first message carries the header)");
  gd_strbuf_printf(&s->spec, "# ImportSnapshot\n");
  if (rpc_spec_text(h->spec, &s->spec, err))
    return gd_err_prefix(err, "message 0: header");
  if (gd_pb_check_str(h->engine, GD_WORKER_NAME_MAX, false, err, "message 0: header.engine"))
    return err->code;
  if (rpc_has_ctl(h->engine))
    return gd_err_set(err, GD_EINVALID, "message 0: header.engine: control characters");
  if (h->rows == 0)
    return gd_err_set(err, GD_EINVALID, "message 0: header.rows: must be >= 1");
  if (R->lim.import_max_rows && h->rows > R->lim.import_max_rows)
    return gd_err_set(err, GD_ERESOURCE,
                      "message 0: header.rows: %llu rows, over the limit of %llu "
                      "(--import-max-rows)",
                      (unsigned long long)h->rows, (unsigned long long)R->lim.import_max_rows);
  snprintf(s->engine, sizeof s->engine, "%s", h->engine);
  s->declared = h->rows;
  return s->spec.oom ? gd_err_set(err, GD_ENOMEM, "out of memory") : GD_OK;
}

static int import_message(import_call *s, const uint8_t *msg, size_t len, gd_err *err) {
  uint64_t index = s->messages++;
  Graphd__V1__ImportSnapshotRequest *m = (Graphd__V1__ImportSnapshotRequest *)rpc_decode(
      s->rpc, &graphd__v1__import_snapshot_request__descriptor, msg, len, err);
  if (!m)
    return gd_err_prefix(err, "message %llu", (unsigned long long)index);
  int rc = GD_OK;
  if (index == 0)
    rc = import_header(s, m->header, err);
  else if (m->header)
    rc = gd_err_set(err, GD_EINVALID,
                    "message %llu: header: only the first message carries one",
                    (unsigned long long)index);
  if (!rc && m->n_seller_ids != m->n_clusters)
    rc = gd_err_set(err, GD_EINVALID,
                    "message %llu: seller_ids has %zu values and clusters %zu; they are "
                    "parallel",
                    (unsigned long long)index, m->n_seller_ids, m->n_clusters);
  if (!rc && m->n_seller_ids > s->declared - s->n)
    rc = gd_err_set(err, GD_EINVALID,
                    "message %llu: rows: more than the %llu declared in header.rows",
                    (unsigned long long)index, (unsigned long long)s->declared);
  if (!rc && s->n + m->n_seller_ids > s->cap) {
    uint64_t nc = s->cap ? s->cap : 4096;
    while (nc < s->n + m->n_seller_ids)
      nc *= 2;
    if (nc > s->declared)
      nc = s->declared;
    gd_import_row *p = realloc(s->rows, nc * sizeof *p);
    if (!p)
      rc = gd_err_set(err, GD_ENOMEM, "out of memory for %llu rows", (unsigned long long)nc);
    else {
      s->rows = p;
      s->cap = nc;
    }
  }
  for (size_t i = 0; !rc && i < m->n_seller_ids; i++)
    s->rows[s->n++] = (gd_import_row){m->seller_ids[i], m->clusters[i]};
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return rc;
}

typedef struct row_ix {
  uint64_t seller, row;
} row_ix;

static int cmp_row_ix(const void *pa, const void *pb) {
  const row_ix *a = pa, *b = pb;
  if (a->seller != b->seller)
    return a->seller < b->seller ? -1 : 1;
  return a->row < b->row ? -1 : a->row > b->row;
}

/* The first bad row, if any: a seller id that is no seller of the graph,
 * or one given in an earlier row. */
static int import_check(import_call *s, gd_err *err) {
  uint64_t bad = UINT64_MAX;
  char why[GD_ERR_MSG_MAX] = "";
  row_ix *ix = malloc((s->n ? s->n : 1) * sizeof *ix);
  if (!ix)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (uint64_t i = 0; i < s->n; i++)
    ix[i] = (row_ix){s->rows[i].seller, i};
  qsort(ix, s->n, sizeof *ix, cmp_row_ix);
  /* Sorted by (seller, row): in each run of one seller, the second row
   * is the first repeat. */
  for (uint64_t i = 1; i < s->n; i++)
    if (ix[i].seller == ix[i - 1].seller && (i < 2 || ix[i - 2].seller != ix[i].seller) &&
        ix[i].row < bad) {
      bad = ix[i].row;
      snprintf(why, sizeof why, "seller %llu given twice (first in row %llu)",
               (unsigned long long)ix[i].seller, (unsigned long long)ix[i - 1].row);
    }
  free(ix);
  gd_rtxn *r;
  int rc = gd_store_read_begin(s->rpc->store, &r, err);
  if (rc)
    return rc;
  for (uint64_t i = 0; i < s->n && i < bad; i++) {
    gd_entity_view v;
    gd_ref ref = {.id = s->rows[i].seller};
    gd_err e2;
    int grc = ref.id ? gd_store_get(r, &ref, &v, &e2) : GD_ENOTFOUND;
    if (grc == GD_ENOTFOUND) {
      bad = i;
      snprintf(why, sizeof why, "no entity has id %llu", (unsigned long long)ref.id);
    } else if (grc) {
      rc = gd_err_set(err, grc, "%s", e2.msg);
      break;
    } else if (v.type != GD_TYPE_SELLER) {
      bad = i;
      snprintf(why, sizeof why, "entity %llu is a %s, not a seller", (unsigned long long)ref.id,
               gd_type_name(v.type));
    }
  }
  gd_store_read_end(r);
  if (!rc && bad != UINT64_MAX)
    rc = gd_err_set(err, GD_EINVALID, "row %llu: seller_ids: %s", (unsigned long long)bad, why);
  return rc;
}

/* Writes the rows where the worker will read them (worker.h, the
 * membership file). */
static int import_file(import_call *s, gd_err *err) {
  char dir[PATH_MAX];
  if (!realpath(gd_jobs_data_dir(s->jobs), dir))
    return gd_err_set(err, GD_EIO, "data directory: %s", strerror(errno));
  int k = snprintf(s->path, sizeof s->path, "%s/imports", dir);
  if (k < 0 || (size_t)k + 64 >= sizeof s->path)
    return gd_err_set(err, GD_EIO, "data directory path too long");
  if (mkdir(s->path, 0700) && errno != EEXIST)
    return gd_err_set(err, GD_EIO, "%s: %s", s->path, strerror(errno));
  k = snprintf(s->path + k, sizeof s->path - (size_t)k, "/import-%lld-%llu.rows",
               (long long)gd_now_unix_ns(), (unsigned long long)s->n);
  if (k < 0)
    return gd_err_set(err, GD_EIO, "data directory path too long");
  int fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return gd_err_set(err, GD_EIO, "%s: %s", s->path, strerror(errno));
  uint64_t n = s->n;
  bool ok = write(fd, GD_IMPORT_MAGIC, 8) == 8 && write(fd, &n, sizeof n) == sizeof n;
  const char *p = (const char *)s->rows;
  size_t left = n * sizeof *s->rows;
  while (ok && left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      ok = false;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  int e = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    unlink(s->path);
    s->path[0] = 0;
    return gd_err_set(err, GD_EIO, "writing the import's rows: %s", strerror(e));
  }
  return GD_OK;
}

/* On a query thread, once the job is final: the answer. */
static void import_finish(void *arg) {
  import_call *s = arg;
  gd_jobs_unlisten(s->jobs, s->handle);
  unlink(s->path);
  gd_job_info ji = {0};
  gd_err err;
  gd_call *c = s->call;
  int rc = gd_jobs_get(s->jobs, atomic_load(&s->job_id), &ji, &err);
  import_free(s);
  if (rc)
    rpc_fail(c, &err);
  else
    rpc_reply_job(c, &ji);
  gd_job_info_free(&ji);
}

static void import_changed(void *ctx) {
  import_call *s = ctx;
  uint64_t id = atomic_load(&s->job_id);
  if (!id || atomic_load(&s->finishing))
    return;
  gd_job_info ji = {0};
  gd_err err;
  bool final = gd_jobs_get(s->jobs, id, &ji, &err) != GD_OK ||
               gd_job_state_final(ji.state);
  gd_job_info_free(&ji);
  if (final && !atomic_exchange(&s->finishing, true))
    gd_call_defer(s->call, import_finish, s);
}

/* The end of the stream, on a query thread. */
static void import_end(void *arg) {
  import_call *s = arg;
  gd_rpc *R = s->rpc;
  gd_jobs *jobs;
  gd_err err = {0};
  char m[GD_ERR_MSG_MAX];
  if (rpc_stream_settle(s->call, &err)) {
    import_fail(s, err.code, "the stream was broken off");
    return;
  }
  if (s->messages == 0 || s->n < s->declared) {
    snprintf(m, sizeof m,
             s->messages ? "the stream ended after %llu of the %llu rows declared in header.rows"
                         : "the stream ended before its first message (the header)",
             (unsigned long long)s->n, (unsigned long long)s->declared);
    import_fail(s, GD_EINVALID, m);
    return;
  }
  int rc = import_check(s, &err);
  if (!rc)
    rc = import_file(s, &err);
  free(s->rows);
  s->rows = NULL;
  if (rc) {
    import_fail(s, rc, err.msg);
    return;
  }
  char target[200];
  snprintf(target, sizeof target, "import: %llu rows, engine '%.64s'", (unsigned long long)s->n,
           s->engine);
  gd_call_set_target(s->call, target);
  gd_strbuf_printf(&s->spec, "import=%s\nengine=%s\n", s->path, s->engine);
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  gd_job_info ji = {0};
  rc = s->spec.oom ? gd_err_set(&err, GD_ENOMEM, "out of memory")
                   : rpc_spec_blob(s->spec.p, s->spec.n, &blob, &blob_len, &err);
  if (!rc && !(s->handle = gd_jobs_listen(s->jobs, import_changed, s)))
    rc = gd_err_set(&err, GD_ENOMEM, "out of memory to wait for the import's job");
  if (!rc && (rc = gd_jobs_submit(s->jobs, s->spec.p, blob, blob_len, &ji, &err)))
    gd_jobs_unlisten(s->jobs, s->handle);
  free(blob);
  if (rc) {
    unlink(s->path);
    import_fail(s, rc, err.msg);
    return;
  }
  atomic_store(&R->import_running, false); /* the rows are in the job's hands */
  jobs = s->jobs;
  uint64_t handle = s->handle;
  atomic_store(&s->job_id, ji.id); /* from here a listener call may finish and free s */
  gd_job_info_free(&ji);
  gd_jobs_listen_now(jobs, handle); /* it may have ended already */
}

void rpc_import_read(gd_call *c, gd_read_result rr, const uint8_t *msg, size_t len) {
  gd_rpc *R = rpc_ctx(c);
  import_call *s = gd_call_user(c);
  gd_err err = {0};
  if (!s) {
    gd_jobs *jobs = rpc_need_jobs(c);
    if (!jobs)
      return;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&R->import_running, &idle, true)) {
      gd_call_finish(c, GD_EPRECONDITION, "another ImportSnapshot is uploading; one at a time",
                     NULL, 0);
      return;
    }
    if (!(s = calloc(1, sizeof *s))) {
      atomic_store(&R->import_running, false);
      gd_call_finish(c, GD_ENOMEM, "out of memory", NULL, 0);
      return;
    }
    s->rpc = R;
    s->call = c;
    s->jobs = jobs;
    gd_call_set_user(c, s);
    if (R->audit)
      gd_call_set_target(c, "import");
  }
  if (rr == GD_READ_FAILED) {
    char m[120];
    snprintf(m, sizeof m, "stream broken by the client after %llu rows",
             (unsigned long long)s->n);
    import_fail(s, GD_ECANCELLED, m);
    return;
  }
  if (rr == GD_READ_END) {
    gd_call_defer(c, import_end, s);
    return;
  }
  if (import_message(s, msg, len, &err)) {
    import_fail(s, err.code, err.msg);
    return;
  }
  gd_call_read_next(c);
}

void rpc_import_sweep(gd_jobs *j) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/imports", gd_jobs_data_dir(j));
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  size_t n = 0;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "import-", 7) != 0)
      continue;
    char p[PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    n += unlink(p) == 0;
  }
  closedir(d);
  if (n)
    gd_info("removed %zu import file(s) left by the last run: their jobs fail", n);
}
