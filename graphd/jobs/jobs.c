/* The clustering job manager (jobs.h). */
#include "jobs/jobs.h"

#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

extern char **environ;

typedef struct job {
  gd_job_info info;
  char *spec_text;
  bool cancel;
  bool starting; /* picked by the manager, RUNNING record being saved */
} job;

typedef struct listener {
  uint64_t handle;
  void (*fn)(void *ctx);
  void *ctx;
} listener;

struct gd_jobs {
  char *worker, *data;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool stopping;
  job **jobs; /* ascending id */
  size_t n, cap;
  uint64_t next_id, version;
  pid_t running_pid; /* 0 none */
  job *running;
  gd_jobs_journal journal; /* save NULL: memory only */
  uint64_t max_sellers, max_ties;
  void (*stage_done)(void *ctx, const char *stage, double seconds);
  void *stage_ctx;
  bool submitted;          /* a job was submitted: no more restores */
  /* listeners: own lock, held while calling them, so unlisten waits */
  pthread_mutex_t lmu;
  listener *ls;
  size_t nl, capl;
  uint64_t next_handle;
};

void gd_job_info_free(gd_job_info *i) {
  if (i) {
    free(i->spec);
    i->spec = NULL;
    i->spec_len = 0;
  }
}

static int64_t now_s(void) { return (int64_t)time(NULL); }

static int copy_info(const job *jb, gd_job_info *ret, gd_err *err) {
  *ret = jb->info;
  ret->spec = NULL;
  if (jb->info.spec_len) {
    ret->spec = malloc(jb->info.spec_len);
    if (!ret->spec)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    memcpy(ret->spec, jb->info.spec, jb->info.spec_len);
  }
  return GD_OK;
}

/* Calls the listeners; without j->mu held. */
static void notify(gd_jobs *j) {
  pthread_mutex_lock(&j->lmu);
  for (size_t i = 0; i < j->nl; i++)
    j->ls[i].fn(j->ls[i].ctx);
  pthread_mutex_unlock(&j->lmu);
}

/* With j->mu held. */
static void changed(gd_jobs *j) {
  j->version++;
  pthread_cond_broadcast(&j->cv);
}

static void job_free(job *jb) {
  if (jb) {
    free(jb->info.spec);
    free(jb->spec_text);
    free(jb);
  }
}

/* Drops the oldest finished jobs beyond GD_JOBS_KEEP; with j->mu held. */
static void trim(gd_jobs *j) {
  size_t i = 0;
  while (j->n > GD_JOBS_KEEP && i < j->n) {
    if (gd_job_state_final(j->jobs[i]->info.state)) {
      job_free(j->jobs[i]);
      memmove(&j->jobs[i], &j->jobs[i + 1], (j->n - i - 1) * sizeof *j->jobs);
      j->n--;
    } else {
      i++;
    }
  }
}

static job *find(gd_jobs *j, uint64_t id) {
  size_t lo = 0, hi = j->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (j->jobs[mid]->info.id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < j->n && j->jobs[lo]->info.id == id ? j->jobs[lo] : NULL;
}

static void finish(gd_jobs *j, job *jb, gd_job_state st, const char *reason) {
  jb->info.state = st;
  jb->info.ended_at = now_s();
  if (reason)
    snprintf(jb->info.reason, sizeof jb->info.reason, "%s", reason);
  if (st == GD_JOB_SUCCEEDED)
    jb->info.progress = 1.0;
  changed(j);
}

/* Saves jb's record through the journal (without j->mu held). */
static int save(gd_jobs *j, job *jb, gd_err *err) {
  if (!j->journal.save)
    return GD_OK;
  pthread_mutex_lock(&j->mu);
  gd_job_info copy = jb->info; /* spec blob and spec_text never change */
  pthread_mutex_unlock(&j->mu);
  return j->journal.save(j->journal.ctx, &copy, jb->spec_text, err);
}

/* ---- records -------------------------------------------------------------- */

#define REC_VERSION 1
#define REC_HDR 72


/*
 * Layout (little-endian): u64 version, u64 id, u64 state, u64 snapshot_id,
 * i64 created_at, started_at, ended_at, f64 progress (IEEE bits), u16
 * stage length, u16 reason length, u32 spec_text length; then stage,
 * reason, spec_text, and the spec blob (the rest).
 */
void *gd_job_encode(const gd_job_info *ji, const char *spec_text, size_t *ret_len) {
  size_t ls = strnlen(ji->stage, sizeof ji->stage - 1), lr = strnlen(ji->reason, sizeof ji->reason - 1);
  size_t lt = spec_text ? strlen(spec_text) : 0;
  if (lt > UINT32_MAX)
    return NULL;
  size_t n = REC_HDR + ls + lr + lt + ji->spec_len;
  uint8_t *p = malloc(n);
  if (!p)
    return NULL;
  uint64_t prog;
  memcpy(&prog, &ji->progress, 8);
  gd_le64_put(p, REC_VERSION);
  gd_le64_put(p + 8, ji->id);
  gd_le64_put(p + 16, (uint64_t)ji->state);
  gd_le64_put(p + 24, ji->snapshot_id);
  gd_le64_put(p + 32, (uint64_t)ji->created_at);
  gd_le64_put(p + 40, (uint64_t)ji->started_at);
  gd_le64_put(p + 48, (uint64_t)ji->ended_at);
  gd_le64_put(p + 56, prog);
  gd_le64_put(p + 64, (uint64_t)ls | (uint64_t)lr << 16 | (uint64_t)lt << 32);
  uint8_t *q = p + REC_HDR;
  memcpy(q, ji->stage, ls);
  memcpy(q + ls, ji->reason, lr);
  if (lt)
    memcpy(q + ls + lr, spec_text, lt);
  if (ji->spec_len)
    memcpy(q + ls + lr + lt, ji->spec, ji->spec_len);
  *ret_len = n;
  return p;
}

int gd_job_decode(const void *rec, size_t len, gd_job_info *ret, char **ret_spec_text,
                  gd_err *err) {
  const uint8_t *p = rec;
  memset(ret, 0, sizeof *ret);
  *ret_spec_text = NULL;
  if (len < REC_HDR || gd_le64_get(p) != REC_VERSION)
    return gd_err_set(err, GD_EINTERNAL, "job record: bad header (%zu bytes)", len);
  uint64_t lens = gd_le64_get(p + 64), prog = gd_le64_get(p + 56), state = gd_le64_get(p + 16);
  size_t ls = lens & 0xffff, lr = (lens >> 16) & 0xffff, lt = lens >> 32;
  if (ls >= sizeof ret->stage || lr >= sizeof ret->reason || REC_HDR + ls + lr + lt > len ||
      state < GD_JOB_QUEUED || state > GD_JOB_CANCELLED)
    return gd_err_set(err, GD_EINTERNAL, "job record: bad lengths or state");
  ret->id = gd_le64_get(p + 8);
  ret->state = (gd_job_state)state;
  ret->snapshot_id = gd_le64_get(p + 24);
  ret->created_at = (int64_t)gd_le64_get(p + 32);
  ret->started_at = (int64_t)gd_le64_get(p + 40);
  ret->ended_at = (int64_t)gd_le64_get(p + 48);
  memcpy(&ret->progress, &prog, 8);
  const uint8_t *q = p + REC_HDR;
  memcpy(ret->stage, q, ls);
  memcpy(ret->reason, q + ls, lr);
  size_t lb = len - REC_HDR - ls - lr - lt;
  char *text = malloc(lt + 1);
  if (!text || (lb && !(ret->spec = malloc(lb)))) {
    free(text);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  memcpy(text, q + ls + lr, lt);
  text[lt] = 0;
  if (lb)
    memcpy(ret->spec, q + ls + lr + lt, lb);
  ret->spec_len = lb;
  *ret_spec_text = text;
  return GD_OK;
}

/* Moves fd to a number above 3 (so the child's dup2 to 0 and 3 cannot
 * collide with it), close-on-exec. */
static int high_fd(int fd) {
  if (fd > 3)
    return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return n;
}

/*
 * The worker's environment: this process's, with glibc.malloc.hugetlb=1
 * added to GLIBC_TUNABLES, so that malloc asks for transparent huge pages
 * (madvise) for the worker's large arrays. Where THP is "madvise" (the
 * kernel's setting) a page fault is otherwise taken per 4 KiB of the
 * export, the projection and igraph's graph, and on a virtual machine a
 * fault is dear: at 1M sellers a job ran 1.3-1.5x faster with it, at the
 * same peak RSS (docs/ARCHITECTURE.md, "The clustering worker"). Where
 * THP is off, or glibc older than 2.35, it changes nothing. Returns a
 * malloc'd array whose strings are environ's but for *ret_tunables, the
 * GLIBC_TUNABLES entry, malloc'd too; the caller frees both. NULL when out
 * of memory: the worker then runs with environ as it is.
 */
static char **worker_env(char **ret_tunables) {
  static const char add[] = "glibc.malloc.hugetlb=1";
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 2, sizeof *env);
  if (!env)
    return NULL;
  const char *old = NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "GLIBC_TUNABLES=", 15) == 0)
      old = environ[i] + 15;
    else
      env[k++] = environ[i];
  }
  size_t len = 15 + (old ? strlen(old) + 1 : 0) + sizeof add;
  char *t = malloc(len);
  if (!t) {
    free(env);
    return NULL;
  }
  snprintf(t, len, "GLIBC_TUNABLES=%s%s%s", old ? old : "", old && *old ? ":" : "", add);
  env[k++] = t;
  env[k] = NULL;
  *ret_tunables = t;
  return env;
}

/*
 * Spawns the worker: stdin from in_fd, progress lines to fd 3 from pr_fd,
 * and when ties_fd >= 0, ties to fd 4 ("--ties-fd 4"). The child's signal
 * mask is empty and SIGTERM, SIGINT and SIGPIPE are default. Returns
 * posix_spawn's error number (0 = spawned, *ret_pid set).
 */
static int spawn_worker(gd_jobs *j, int in_fd, int pr_fd, int ties_fd, pid_t *ret_pid) {
  char ppid[24], maxs[24], maxt[24];
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  snprintf(maxs, sizeof maxs, "%llu", (unsigned long long)j->max_sellers);
  snprintf(maxt, sizeof maxt, "%llu", (unsigned long long)j->max_ties);
  char *argv[14] = {j->worker, "--data", j->data, "--progress-fd", "3", "--parent-pid", ppid};
  int argc = 7;
  if (j->max_sellers) {
    argv[argc++] = "--max-sellers";
    argv[argc++] = maxs;
  }
  if (j->max_ties) {
    argv[argc++] = "--max-ties";
    argv[argc++] = maxt;
  }
  if (ties_fd >= 0) {
    argv[argc++] = "--ties-fd";
    argv[argc++] = "4";
  }
  argv[argc] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  posix_spawn_file_actions_adddup2(&fa, pr_fd, 3);
  if (ties_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, ties_fd, 4);
  posix_spawnattr_t sa;
  posix_spawnattr_init(&sa);
  sigset_t none, def;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&sa, &none);
  sigemptyset(&def);
  sigaddset(&def, SIGTERM);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigdefault(&sa, &def);
  posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char *tunables = NULL;
  char **env = worker_env(&tunables);
  int e = posix_spawn(ret_pid, j->worker, &fa, &sa, argv, env ? env : environ);
  free(tunables);
  free(env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&sa);
  return e;
}

/* Writes the spec text (at most 64 KiB, which the worker reads whole) to
 * fd and closes it. A short write means the worker is gone: its exit
 * says why. */
static void write_spec(int fd, const char *p) {
  size_t left = strlen(p);
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    p += w;
    left -= (size_t)w;
  }
  close(fd);
}

void gd_jobs_worker_reason(const gd_jobs *j, int status, const char *err_line, char *buf,
                           size_t n) {
  if (WIFSIGNALED(status))
    snprintf(buf, n, "worker killed by signal %d", WTERMSIG(status));
  else if (err_line && err_line[0])
    snprintf(buf, n, "%s", err_line);
  else if (WEXITSTATUS(status) == 127)
    /* The shell convention for "could not exec": some posix_spawn
     * implementations (valgrind's, for one) report a failed exec this way
     * instead of returning an error. */
    snprintf(buf, n, "cannot run worker %.200s (exit code 127)", j->worker);
  else
    snprintf(buf, n, "worker exited with code %d", WEXITSTATUS(status));
}

/* A pipe whose both ends are above fd 3 (so the dup2s of spawn_worker
 * never clobber one) and close-on-exec. -1 with errno on failure, both
 * ends closed. */
static int pipe_high(int p[2]) {
  if (pipe2(p, O_CLOEXEC))
    return -1;
  p[0] = high_fd(p[0]);
  p[1] = high_fd(p[1]);
  if (p[0] >= 0 && p[1] >= 0)
    return 0;
  int e = errno;
  for (int i = 0; i < 2; i++)
    if (p[i] >= 0)
      close(p[i]);
  p[0] = p[1] = -1;
  errno = e;
  return -1;
}

/* Runs one job to its end; called without j->mu. */
static void run_job(gd_jobs *j, job *jb) {
  int in[2] = {-1, -1}, pr[2] = {-1, -1};
  char reason[GD_JOB_REASON_MAX] = "";
  pid_t pid = 0;
  /* The stage being timed (stage_done). */
  char stage[GD_JOB_STAGE_MAX] = "start";
  int64_t stage_t0 = gd_now_ns();
  if (pipe_high(in) || pipe_high(pr)) {
    snprintf(reason, sizeof reason, "internal error: pipe: %s", strerror(errno));
    goto fail;
  }
  pthread_mutex_lock(&j->mu);
  int e = spawn_worker(j, in[0], pr[1], -1, &pid);
  if (e == 0)
    j->running_pid = pid;
  bool cancel = jb->cancel;
  pthread_mutex_unlock(&j->mu);
  close(in[0]);
  close(pr[1]);
  in[0] = pr[1] = -1;
  if (e) {
    snprintf(reason, sizeof reason, "internal error: spawn %s: %s", j->worker, strerror(e));
    goto fail;
  }
  if (cancel)
    kill(pid, SIGTERM);
  write_spec(in[1], jb->spec_text);
  in[1] = -1;
  FILE *f = fdopen(pr[0], "r");
  if (!f) {
    kill(pid, SIGKILL);
    close(pr[0]);
  }
  pr[0] = -1;
  uint64_t done_id = 0;
  bool got_done = false, got_cancel = false;
  char err_line[GD_JOB_REASON_MAX] = "";
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while (f && (n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] == '\n')
      line[--n] = 0;
    char name[GD_JOB_STAGE_MAX];
    double frac;
    unsigned long long id;
    if (sscanf(line, "stage %31s %lf", name, &frac) == 2) {
      if (j->stage_done && strcmp(name, stage) != 0) {
        int64_t t = gd_now_ns();
        j->stage_done(j->stage_ctx, stage, (double)(t - stage_t0) / 1e9);
        snprintf(stage, sizeof stage, "%s", name);
        stage_t0 = t;
      }
      pthread_mutex_lock(&j->mu);
      snprintf(jb->info.stage, sizeof jb->info.stage, "%s", name);
      if (frac >= 0 && frac <= 1)
        jb->info.progress = frac;
      changed(j);
      pthread_mutex_unlock(&j->mu);
      notify(j);
    } else if (sscanf(line, "done %llu", &id) == 1) {
      done_id = id;
      got_done = true;
    } else if (strncmp(line, "error ", 6) == 0) {
      snprintf(err_line, sizeof err_line, "%s", line + 6);
    } else if (strcmp(line, "cancelled") == 0) {
      got_cancel = true;
    }
  }
  free(line);
  if (f)
    fclose(f);
  if (j->stage_done) /* the worker closed its progress fd: its last stage is over */
    j->stage_done(j->stage_ctx, stage, (double)(gd_now_ns() - stage_t0) / 1e9);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  pthread_mutex_lock(&j->mu);
  j->running_pid = 0;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM && jb->cancel) {
    /* cancelled before the worker installed its handler */
    finish(j, jb, GD_JOB_CANCELLED, j->stopping ? "daemon shutting down" : "cancelled");
  } else if (WIFSIGNALED(status)) {
    gd_jobs_worker_reason(j, status, err_line, reason, sizeof reason);
    finish(j, jb, GD_JOB_FAILED, reason);
  } else {
    int code = WEXITSTATUS(status);
    if (code == 0 && got_done) {
      jb->info.snapshot_id = done_id;
      finish(j, jb, GD_JOB_SUCCEEDED, "");
    } else if (code == 5 || (got_cancel && code != 0)) {
      finish(j, jb, GD_JOB_CANCELLED, j->stopping ? "daemon shutting down" : "cancelled");
    } else {
      gd_jobs_worker_reason(j, status, err_line, reason, sizeof reason);
      finish(j, jb, GD_JOB_FAILED, reason);
    }
  }
  pthread_mutex_unlock(&j->mu);
  notify(j);
  return;
fail:
  for (int i = 0; i < 2; i++) {
    if (in[i] >= 0)
      close(in[i]);
    if (pr[i] >= 0)
      close(pr[i]);
  }
  pthread_mutex_lock(&j->mu);
  j->running_pid = 0;
  finish(j, jb, GD_JOB_FAILED, reason);
  pthread_mutex_unlock(&j->mu);
  notify(j);
}

static void *manager(void *arg) {
  gd_jobs *j = arg;
  pthread_setname_np(pthread_self(), "gd-jobs"); /* top -H, perf --sort comm */
  pthread_mutex_lock(&j->mu);
  for (;;) {
    job *next = NULL;
    for (size_t i = 0; i < j->n && !next; i++)
      if (j->jobs[i]->info.state == GD_JOB_QUEUED)
        next = j->jobs[i];
    if (j->stopping)
      break;
    if (!next) {
      pthread_cond_wait(&j->cv, &j->mu);
      continue;
    }
    /* RUNNING is saved before anyone sees it; a cancel meanwhile sets
     * next->cancel (see gd_jobs_cancel), which run_job honours. */
    next->starting = true;
    j->running = next;
    pthread_mutex_unlock(&j->mu);
    gd_err err = {0};
    if (j->journal.save) {
      gd_job_info copy;
      pthread_mutex_lock(&j->mu);
      copy = next->info;
      pthread_mutex_unlock(&j->mu);
      copy.state = GD_JOB_RUNNING;
      copy.started_at = now_s();
      snprintf(copy.stage, sizeof copy.stage, "start");
      if (j->journal.save(j->journal.ctx, &copy, next->spec_text, &err) != GD_OK) {
        char reason[GD_JOB_REASON_MAX];
        snprintf(reason, sizeof reason, "cannot save the job's state: %s", err.msg);
        pthread_mutex_lock(&j->mu);
        next->starting = false;
        j->running = NULL;
        finish(j, next, GD_JOB_FAILED, reason);
        pthread_mutex_unlock(&j->mu);
        notify(j);
        save(j, next, &err);
        pthread_mutex_lock(&j->mu);
        continue;
      }
    }
    pthread_mutex_lock(&j->mu);
    next->starting = false;
    next->info.state = GD_JOB_RUNNING;
    next->info.started_at = now_s();
    snprintf(next->info.stage, sizeof next->info.stage, "start");
    changed(j);
    pthread_mutex_unlock(&j->mu);
    notify(j);
    run_job(j, next);
    if (save(j, next, &err) != GD_OK)
      gd_error("job %llu: cannot save its end: %s",
              (unsigned long long)next->info.id, err.msg);
    pthread_mutex_lock(&j->mu);
    j->running = NULL;
    trim(j);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

int gd_jobs_start(const gd_jobs_opts *o, gd_jobs **ret, gd_err *err) {
  gd_jobs *j = calloc(1, sizeof *j);
  if (!j || !(j->worker = strdup(o->worker_path)) || !(j->data = strdup(o->data_dir))) {
    if (j)
      free(j->worker);
    free(j);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&j->mu, NULL);
  pthread_mutex_init(&j->lmu, NULL);
  pthread_cond_init(&j->cv, NULL);
  j->next_id = 1;
  j->next_handle = 1;
  if (o->journal)
    j->journal = *o->journal;
  j->max_sellers = o->max_sellers;
  j->max_ties = o->max_ties;
  j->stage_done = o->stage_done;
  j->stage_ctx = o->stage_ctx;
  if (pthread_create(&j->thread, NULL, manager, j)) {
    free(j->worker);
    free(j->data);
    free(j);
    return gd_err_set(err, GD_EINTERNAL, "jobs: cannot start thread");
  }
  *ret = j;
  return GD_OK;
}

void gd_jobs_stop(gd_jobs *j) {
  if (!j)
    return;
  pthread_mutex_lock(&j->mu);
  if (j->stopping) {
    pthread_mutex_unlock(&j->mu);
    return;
  }
  j->stopping = true;
  for (size_t i = 0; i < j->n; i++)
    if (j->jobs[i]->info.state == GD_JOB_QUEUED)
      finish(j, j->jobs[i], GD_JOB_CANCELLED, "daemon shutting down");
  if (j->running) {
    j->running->cancel = true;
    if (j->running_pid > 0)
      kill(j->running_pid, SIGTERM);
  }
  changed(j);
  pthread_mutex_unlock(&j->mu);
  notify(j);
  pthread_join(j->thread, NULL);
}

void gd_jobs_free(gd_jobs *j) {
  if (!j)
    return;
  for (size_t i = 0; i < j->n; i++)
    job_free(j->jobs[i]);
  free(j->jobs);
  free(j->ls);
  free(j->worker);
  free(j->data);
  pthread_mutex_destroy(&j->mu);
  pthread_mutex_destroy(&j->lmu);
  pthread_cond_destroy(&j->cv);
  free(j);
}

/* Inserts jb in id order; with j->mu held. Errors: GD_ENOMEM. */
static int insert(gd_jobs *j, job *jb, gd_err *err) {
  if (j->n == j->cap) {
    size_t nc = j->cap ? j->cap * 2 : 16;
    job **nj = realloc(j->jobs, nc * sizeof *nj);
    if (!nj)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    j->jobs = nj;
    j->cap = nc;
  }
  size_t i = j->n;
  while (i > 0 && j->jobs[i - 1]->info.id > jb->info.id) {
    j->jobs[i] = j->jobs[i - 1];
    i--;
  }
  j->jobs[i] = jb;
  j->n++;
  return GD_OK;
}

int gd_jobs_submit(gd_jobs *j, const char *spec_text, const void *blob, size_t blob_len,
                   gd_job_info *ret, gd_err *err) {
  job *jb = calloc(1, sizeof *jb);
  if (!jb || !(jb->spec_text = strdup(spec_text)) ||
      (blob_len && !(jb->info.spec = malloc(blob_len)))) {
    job_free(jb);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  if (blob_len)
    memcpy(jb->info.spec, blob, blob_len);
  jb->info.spec_len = blob_len;
  jb->info.state = GD_JOB_QUEUED;
  jb->info.created_at = now_s();
  snprintf(jb->info.stage, sizeof jb->info.stage, "queued");
  pthread_mutex_lock(&j->mu);
  if (j->stopping) {
    pthread_mutex_unlock(&j->mu);
    job_free(jb);
    return gd_err_set(err, GD_EUNAVAILABLE, "shutting down");
  }
  jb->info.id = j->next_id++;
  j->submitted = true;
  pthread_mutex_unlock(&j->mu);
  /* Durable before anyone can see it (nobody else has jb yet). */
  int rc = j->journal.save ? j->journal.save(j->journal.ctx, &jb->info, jb->spec_text, err)
                           : GD_OK;
  if (rc) {
    job_free(jb);
    return rc;
  }
  pthread_mutex_lock(&j->mu);
  rc = insert(j, jb, err);
  if (rc) {
    pthread_mutex_unlock(&j->mu);
    job_free(jb); /* the QUEUED record runs after a restart */
    return rc;
  }
  rc = ret ? copy_info(jb, ret, err) : GD_OK;
  changed(j);
  pthread_mutex_unlock(&j->mu);
  notify(j);
  return rc;
}

int gd_jobs_restore(gd_jobs *j, const gd_job_info *ji, const char *spec_text, gd_err *err) {
  job *jb = calloc(1, sizeof *jb);
  if (!jb || !(jb->spec_text = strdup(spec_text ? spec_text : "")) ||
      (ji->spec_len && !(jb->info.spec = malloc(ji->spec_len)))) {
    job_free(jb);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  void *blob = jb->info.spec;
  jb->info = *ji;
  jb->info.spec = blob;
  if (ji->spec_len)
    memcpy(blob, ji->spec, ji->spec_len);
  pthread_mutex_lock(&j->mu);
  bool ok = !j->submitted && ji->id >= j->next_id && ji->id > 0;
  if (ok)
    j->next_id = ji->id + 1;
  pthread_mutex_unlock(&j->mu);
  if (!ok) {
    job_free(jb);
    return gd_err_set(err, GD_EINVALID, "job %llu: restored out of order or after a submit",
                      (unsigned long long)ji->id);
  }
  int rc = GD_OK;
  if (jb->info.state == GD_JOB_RUNNING) {
    jb->info.state = GD_JOB_FAILED;
    jb->info.ended_at = now_s();
    snprintf(jb->info.reason, sizeof jb->info.reason, "%s",
             "interrupted: the daemon stopped while the job was running");
    rc = j->journal.save ? j->journal.save(j->journal.ctx, &jb->info, jb->spec_text, err)
                         : GD_OK;
  } else if (jb->info.state == GD_JOB_QUEUED) {
    jb->info.progress = 0;
    jb->info.started_at = jb->info.ended_at = 0;
    snprintf(jb->info.stage, sizeof jb->info.stage, "queued");
  }
  pthread_mutex_lock(&j->mu);
  if (!rc)
    rc = insert(j, jb, err);
  if (!rc) {
    trim(j);
    changed(j);
  }
  pthread_mutex_unlock(&j->mu);
  if (rc) {
    job_free(jb);
    return rc;
  }
  notify(j);
  return GD_OK;
}

int gd_jobs_get(gd_jobs *j, uint64_t id, gd_job_info *ret, gd_err *err) {
  pthread_mutex_lock(&j->mu);
  job *jb = find(j, id);
  int rc = jb ? copy_info(jb, ret, err)
              : gd_err_set(err, GD_ENOTFOUND, "job_id: no job %llu", (unsigned long long)id);
  pthread_mutex_unlock(&j->mu);
  return rc;
}

int gd_jobs_cancel(gd_jobs *j, uint64_t id, gd_job_info *ret, gd_err *err) {
  bool chg = false;
  gd_job_info rec = {0}; /* deep copies: the manager may trim jb once unlocked */
  char *rec_text = NULL;
  pthread_mutex_lock(&j->mu);
  job *jb = find(j, id);
  if (!jb) {
    pthread_mutex_unlock(&j->mu);
    return gd_err_set(err, GD_ENOTFOUND, "job_id: no job %llu", (unsigned long long)id);
  }
  if (jb->info.state == GD_JOB_QUEUED && jb->starting) {
    jb->cancel = true; /* being started: run_job kills it at once */
  } else if (jb->info.state == GD_JOB_QUEUED) {
    finish(j, jb, GD_JOB_CANCELLED, "cancelled before it started");
    chg = true;
    if (j->journal.save && (copy_info(jb, &rec, NULL) || !(rec_text = strdup(jb->spec_text))))
      chg = false; /* out of memory: the record stays QUEUED */
  } else if (jb->info.state == GD_JOB_RUNNING && !jb->cancel) {
    jb->cancel = true;
    if (j->running == jb && j->running_pid > 0)
      kill(j->running_pid, SIGTERM);
  }
  int rc = ret ? copy_info(jb, ret, err) : GD_OK;
  pthread_mutex_unlock(&j->mu);
  notify(j);
  gd_err serr;
  if (chg && j->journal.save && j->journal.save(j->journal.ctx, &rec, rec_text, &serr) != GD_OK)
    gd_error("job %llu: cannot save its cancellation: %s",
            (unsigned long long)id, serr.msg); /* the record stays QUEUED */
  gd_job_info_free(&rec);
  free(rec_text);
  return rc;
}

void gd_jobs_count(gd_jobs *j, uint64_t ret[GD_JOB_CANCELLED + 1]) {
  memset(ret, 0, (GD_JOB_CANCELLED + 1) * sizeof *ret);
  pthread_mutex_lock(&j->mu);
  for (size_t i = 0; i < j->n; i++) {
    gd_job_state st = j->jobs[i]->info.state;
    if (st >= GD_JOB_QUEUED && st <= GD_JOB_CANCELLED)
      ret[st]++;
  }
  pthread_mutex_unlock(&j->mu);
}

uint64_t gd_jobs_version(gd_jobs *j) {
  pthread_mutex_lock(&j->mu);
  uint64_t v = j->version;
  pthread_mutex_unlock(&j->mu);
  return v;
}

uint64_t gd_jobs_listen(gd_jobs *j, void (*fn)(void *ctx), void *ctx) {
  uint64_t h = 0;
  pthread_mutex_lock(&j->lmu);
  if (j->nl == j->capl) {
    size_t nc = j->capl ? j->capl * 2 : 8;
    listener *nl = realloc(j->ls, nc * sizeof *nl);
    if (!nl)
      goto out;
    j->ls = nl;
    j->capl = nc;
  }
  h = j->next_handle++;
  j->ls[j->nl++] = (listener){h, fn, ctx};
out:
  pthread_mutex_unlock(&j->lmu);
  return h;
}

void gd_jobs_listen_now(gd_jobs *j, uint64_t handle) {
  pthread_mutex_lock(&j->lmu);
  for (size_t i = 0; i < j->nl; i++)
    if (j->ls[i].handle == handle) {
      j->ls[i].fn(j->ls[i].ctx);
      break;
    }
  pthread_mutex_unlock(&j->lmu);
}

void gd_jobs_unlisten(gd_jobs *j, uint64_t handle) {
  pthread_mutex_lock(&j->lmu);
  for (size_t i = 0; i < j->nl; i++)
    if (j->ls[i].handle == handle) {
      j->ls[i] = j->ls[--j->nl];
      break;
    }
  pthread_mutex_unlock(&j->lmu);
}

int gd_jobs_spawn_ties(gd_jobs *j, const char *spec_text, pid_t *ret_pid, int *ret_ties_fd,
                       int *ret_progress_fd, gd_err *err) {
  int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}}; /* stdin, progress, ties */
  int rc = GD_OK;
  for (int i = 0; i < 3 && !rc; i++)
    if (pipe_high(p[i]))
      rc = gd_err_set(err, GD_EINTERNAL, "pipe: %s", strerror(errno));
  pid_t pid = 0;
  if (!rc) {
    pthread_mutex_lock(&j->mu);
    bool stopping = j->stopping;
    int e = stopping ? 0 : spawn_worker(j, p[0][0], p[1][1], p[2][1], &pid);
    pthread_mutex_unlock(&j->mu);
    if (stopping)
      rc = gd_err_set(err, GD_EUNAVAILABLE, "shutting down");
    else if (e)
      rc = gd_err_set(err, e == ENOENT || e == EACCES ? GD_EPRECONDITION : GD_EINTERNAL,
                      "cannot run the clustering worker %s: %s", j->worker, strerror(e));
  }
  for (int i = 0; i < 3; i++) { /* the child's ends */
    if (p[i][i == 0 ? 0 : 1] >= 0)
      close(p[i][i == 0 ? 0 : 1]);
    p[i][i == 0 ? 0 : 1] = -1;
  }
  if (rc) {
    for (int i = 0; i < 3; i++)
      for (int k = 0; k < 2; k++)
        if (p[i][k] >= 0)
          close(p[i][k]);
    return rc;
  }
  write_spec(p[0][1], spec_text);
  *ret_pid = pid;
  *ret_progress_fd = p[1][0];
  *ret_ties_fd = p[2][0];
  return GD_OK;
}

const char *gd_jobs_data_dir(const gd_jobs *j) { return j->data; }
