/* The clustering job manager (jobs.h). */
#include "jobs/jobs.h"

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

extern char **environ;

typedef struct job {
  gd_job_info info;
  char *spec_text;
  bool cancel;
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

/* Moves fd to a number above 3 (so the child's dup2 to 0 and 3 cannot
 * collide with it), close-on-exec. */
static int high_fd(int fd) {
  if (fd > 3)
    return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return n;
}

/* Runs one job to its end; called without j->mu. */
static void run_job(gd_jobs *j, job *jb) {
  int in[2] = {-1, -1}, pr[2] = {-1, -1};
  char reason[GD_JOB_REASON_MAX] = "";
  posix_spawn_file_actions_t fa;
  pid_t pid = 0;
  if (pipe2(in, O_CLOEXEC) || pipe2(pr, O_CLOEXEC)) {
    snprintf(reason, sizeof reason, "internal error: pipe: %s", strerror(errno));
    goto fail;
  }
  in[0] = high_fd(in[0]);
  in[1] = high_fd(in[1]);
  pr[0] = high_fd(pr[0]);
  pr[1] = high_fd(pr[1]);
  if (in[0] < 0 || in[1] < 0 || pr[0] < 0 || pr[1] < 0) {
    snprintf(reason, sizeof reason, "internal error: fcntl: %s", strerror(errno));
    goto fail;
  }
  char *argv[] = {j->worker, "--data", j->data, "--progress-fd", "3", NULL};
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pr[1], 3);
  posix_spawnattr_t sa;
  posix_spawnattr_init(&sa);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&sa, &none);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGTERM);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigdefault(&sa, &def);
  posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  (void)all;
  pthread_mutex_lock(&j->mu);
  int e = posix_spawn(&pid, j->worker, &fa, &sa, argv, environ);
  if (e == 0)
    j->running_pid = pid;
  bool cancel = jb->cancel;
  pthread_mutex_unlock(&j->mu);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&sa);
  close(in[0]);
  close(pr[1]);
  in[0] = pr[1] = -1;
  if (e) {
    snprintf(reason, sizeof reason, "internal error: spawn %s: %s", j->worker, strerror(e));
    goto fail;
  }
  if (cancel)
    kill(pid, SIGTERM);
  /* The spec: at most 64 KiB, which the worker reads whole. */
  {
    const char *p = jb->spec_text;
    size_t left = strlen(p);
    while (left) {
      ssize_t w = write(in[1], p, left);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break; /* the worker is gone: its exit says why */
      p += w;
      left -= (size_t)w;
    }
    close(in[1]);
    in[1] = -1;
  }
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
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  pthread_mutex_lock(&j->mu);
  j->running_pid = 0;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM && jb->cancel) {
    /* cancelled before the worker installed its handler */
    finish(j, jb, GD_JOB_CANCELLED, "cancelled");
  } else if (WIFSIGNALED(status)) {
    snprintf(reason, sizeof reason, "worker killed by signal %d", WTERMSIG(status));
    finish(j, jb, GD_JOB_FAILED, reason);
  } else {
    int code = WEXITSTATUS(status);
    if (code == 0 && got_done) {
      jb->info.snapshot_id = done_id;
      finish(j, jb, GD_JOB_SUCCEEDED, "");
    } else if (code == 5 || (got_cancel && code != 0)) {
      finish(j, jb, GD_JOB_CANCELLED, "cancelled");
    } else {
      if (err_line[0])
        snprintf(reason, sizeof reason, "%s", err_line);
      else if (code == 127)
        /* The shell convention for "could not exec": some posix_spawn
         * implementations (valgrind's, for one) report a failed exec this
         * way instead of returning an error. */
        snprintf(reason, sizeof reason, "cannot run worker %.200s (exit code 127)", j->worker);
      else
        snprintf(reason, sizeof reason, "worker exited with code %d", code);
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
    next->info.state = GD_JOB_RUNNING;
    next->info.started_at = now_s();
    snprintf(next->info.stage, sizeof next->info.stage, "start");
    j->running = next;
    changed(j);
    pthread_mutex_unlock(&j->mu);
    notify(j);
    run_job(j, next);
    pthread_mutex_lock(&j->mu);
    j->running = NULL;
    trim(j);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

int gd_jobs_start(const char *worker_path, const char *data_dir, gd_jobs **ret, gd_err *err) {
  gd_jobs *j = calloc(1, sizeof *j);
  if (!j || !(j->worker = strdup(worker_path)) || !(j->data = strdup(data_dir))) {
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
  if (j->n == j->cap) {
    size_t nc = j->cap ? j->cap * 2 : 16;
    job **nj = realloc(j->jobs, nc * sizeof *nj);
    if (!nj) {
      pthread_mutex_unlock(&j->mu);
      job_free(jb);
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    }
    j->jobs = nj;
    j->cap = nc;
  }
  jb->info.id = j->next_id++;
  j->jobs[j->n++] = jb;
  int rc = ret ? copy_info(jb, ret, err) : GD_OK;
  changed(j);
  pthread_mutex_unlock(&j->mu);
  notify(j);
  return rc;
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
  pthread_mutex_lock(&j->mu);
  job *jb = find(j, id);
  if (!jb) {
    pthread_mutex_unlock(&j->mu);
    return gd_err_set(err, GD_ENOTFOUND, "job_id: no job %llu", (unsigned long long)id);
  }
  if (jb->info.state == GD_JOB_QUEUED) {
    finish(j, jb, GD_JOB_CANCELLED, "cancelled before it started");
    chg = true;
  } else if (jb->info.state == GD_JOB_RUNNING && !jb->cancel) {
    jb->cancel = true;
    if (j->running == jb && j->running_pid > 0)
      kill(j->running_pid, SIGTERM);
  }
  int rc = ret ? copy_info(jb, ret, err) : GD_OK;
  pthread_mutex_unlock(&j->mu);
  if (chg)
    notify(j);
  return rc;
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

void gd_jobs_unlisten(gd_jobs *j, uint64_t handle) {
  pthread_mutex_lock(&j->lmu);
  for (size_t i = 0; i < j->nl; i++)
    if (j->ls[i].handle == handle) {
      j->ls[i] = j->ls[--j->nl];
      break;
    }
  pthread_mutex_unlock(&j->lmu);
}
