/*
 * jobs: the daemon's clustering job manager (DESIGN §2). No grpc, no
 * protobuf, no lmdb.
 *
 * A FIFO queue of jobs, one running at a time. Running a job spawns
 * `graphd-worker --data DIR --progress-fd 3` (worker/worker.h) with
 * posix_spawn, writes the spec (the worker's text format) to its stdin,
 * reads its progress lines on fd 3 from the manager thread, reaps it and
 * maps the outcome:
 *
 *   exit 0 and "done ID"         SUCCEEDED, snapshot_id = ID
 *   exit 5 ("cancelled")         CANCELLED
 *   other exit code              FAILED, reason = the "error" line (or the
 *                                exit code when there was none)
 *   killed by a signal           FAILED, "worker killed by signal N"
 *                                (SIGTERM after a cancel: CANCELLED, the
 *                                worker had not yet installed its handler)
 *
 * Cancel: a queued job is cancelled at once; a running one gets SIGTERM
 * (the worker stops within about a second and writes nothing). A worker
 * that already began its write stage commits and the job succeeds.
 *
 * Jobs live in memory only: on daemon start there is no queue; jobs of a
 * previous run (queued or running) are gone, snapshots they committed are
 * kept. Finished jobs are kept for the daemon's lifetime (the oldest
 * finished ones are dropped beyond GD_JOBS_KEEP).
 *
 * Change notification: every change bumps a version counter and broadcasts
 * a condition (gd_jobs_version reads the counter).
 * Listeners (gd_jobs_listen) are called, without the manager's lock held,
 * after every change, from whichever thread made it.
 *
 * Shutdown (gd_jobs_stop): queued jobs are cancelled, the running worker
 * gets SIGTERM and is waited for; call it before the store is closed.
 */
#ifndef GD_JOBS_JOBS_H
#define GD_JOBS_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define GD_JOBS_KEEP 1000
#define GD_JOB_STAGE_MAX 32
#define GD_JOB_REASON_MAX 512

typedef enum {
  GD_JOB_QUEUED = 1,
  GD_JOB_RUNNING = 2,
  GD_JOB_SUCCEEDED = 3,
  GD_JOB_FAILED = 4,
  GD_JOB_CANCELLED = 5,
} gd_job_state;

/* A job as seen from outside: a copy. spec is the caller's opaque copy of
 * what was submitted (the rpc layer keeps the request's packed spec there,
 * to echo it back); free with gd_job_info_free. */
typedef struct gd_job_info {
  uint64_t id;
  gd_job_state state;
  char stage[GD_JOB_STAGE_MAX];
  double progress;
  char reason[GD_JOB_REASON_MAX];
  uint64_t snapshot_id;
  int64_t created_at, started_at, ended_at; /* unix seconds, 0 = not yet */
  void *spec;
  size_t spec_len;
} gd_job_info;

void gd_job_info_free(gd_job_info *i);

static inline int gd_job_state_final(gd_job_state s) {
  return s == GD_JOB_SUCCEEDED || s == GD_JOB_FAILED || s == GD_JOB_CANCELLED;
}

typedef struct gd_jobs gd_jobs;

/* Starts the manager thread. worker_path: the graphd-worker executable;
 * data_dir: passed as --data. Errors: GD_ENOMEM, GD_EINTERNAL. */
int gd_jobs_start(const char *worker_path, const char *data_dir, gd_jobs **ret, gd_err *err);

/* Cancels queued jobs, SIGTERMs and reaps the running worker, joins the
 * thread. Afterwards reads still work and submits fail UNAVAILABLE.
 * Accepts NULL; a second call does nothing. */
void gd_jobs_stop(gd_jobs *j);
/* Frees everything (after gd_jobs_stop, once no caller uses j). */
void gd_jobs_free(gd_jobs *j);

/* Queues a job. spec_text: the worker spec (copied); blob: opaque, copied,
 * returned in gd_job_info.spec. *ret (may be NULL) gets the job.
 * Errors: GD_ENOMEM, GD_EUNAVAILABLE (stopping). */
int gd_jobs_submit(gd_jobs *j, const char *spec_text, const void *blob, size_t blob_len,
                   gd_job_info *ret, gd_err *err);

/* A copy of job id. Errors: GD_ENOTFOUND, GD_ENOMEM. */
int gd_jobs_get(gd_jobs *j, uint64_t id, gd_job_info *ret, gd_err *err);

/* Cancels job id (no-op on a finished job); *ret (may be NULL) gets the job
 * after the request (a running job is still RUNNING until its worker has
 * left). Errors: GD_ENOTFOUND, GD_ENOMEM. */
int gd_jobs_cancel(gd_jobs *j, uint64_t id, gd_job_info *ret, gd_err *err);

/* The change counter. */
uint64_t gd_jobs_version(gd_jobs *j);

/* Listener: fn(ctx) after each change. Returns a handle for
 * gd_jobs_unlisten (0 on ENOMEM). fn must not call gd_jobs_listen or
 * gd_jobs_unlisten. After gd_jobs_unlisten returns, fn is not running and
 * will not be called again. */
uint64_t gd_jobs_listen(gd_jobs *j, void (*fn)(void *ctx), void *ctx);
void gd_jobs_unlisten(gd_jobs *j, uint64_t handle);

#endif
