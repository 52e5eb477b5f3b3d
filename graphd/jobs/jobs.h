/*
 * jobs: the daemon's clustering job manager (docs/ARCHITECTURE.md,
 * "Clustering jobs"). No grpc, no
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
 * Durability: with a journal (gd_jobs_journal), every state change is
 * saved before anyone can see it: a submit returns only once the QUEUED
 * record is durable, a job is RUNNING in memory only after that record is
 * saved, and the end is saved as soon as it is known. On the next start
 * the daemon feeds the records back (gd_jobs_restore, before serving):
 *   QUEUED     queued again, in id order (the queue survives a restart);
 *   RUNNING    FAILED, "interrupted: the daemon stopped while the job was
 *              running" (a crash or kill: no snapshot was committed, or
 *              the job would have been saved as SUCCEEDED), and saved;
 *   finished   kept as history.
 * Job ids continue after the largest restored. A clean shutdown leaves
 * queued jobs QUEUED in the journal (they run after the restart) and
 * saves the running one as CANCELLED "daemon shutting down". Without a
 * journal, jobs live in memory only. Finished jobs are kept in memory up
 * to GD_JOBS_KEEP (the oldest dropped first; their records stay).
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
#include <sys/types.h>

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

/*
 * The journal: save(ctx, job, spec_text, err) makes the job's record
 * durable (encode it with gd_job_encode) and returns GD_OK or an error.
 * Called without the manager's lock, at most once at a time per job, from
 * the thread that made the change (submit, cancel: the caller's; start
 * and end: the manager's).
 */
typedef struct gd_jobs_journal {
  int (*save)(void *ctx, const gd_job_info *ji, const char *spec_text, gd_err *err);
  void *ctx;
} gd_jobs_journal;

typedef struct gd_jobs_opts {
  const char *worker_path;         /* the graphd-worker executable */
  const char *data_dir;            /* passed as --data */
  const gd_jobs_journal *journal;  /* NULL = memory only (copied) */
  uint64_t max_sellers, max_ties;  /* passed as --max-sellers / --max-ties (0 = the worker's) */
  /* Optional (metrics): stage_done(stage_ctx, stage, seconds) each time a
   * running job leaves a stage: "start" (spawn to the worker's first
   * stage line), then each stage the worker reports, the last one ending
   * when the worker closes its progress fd. Manager thread, no lock held;
   * must be cheap. */
  void (*stage_done)(void *ctx, const char *stage, double seconds);
  void *stage_ctx;
} gd_jobs_opts;

/* Starts the manager thread. Errors: GD_ENOMEM, GD_EINTERNAL. */
int gd_jobs_start(const gd_jobs_opts *o, gd_jobs **ret, gd_err *err);

/*
 * Restores a journal record (see "Durability"); records must come in
 * ascending id order, before the first gd_jobs_submit. Errors:
 * GD_EINVALID (id not above the last one, or after a submit), GD_ENOMEM,
 * or the journal's error when a RUNNING record is saved as FAILED.
 */
int gd_jobs_restore(gd_jobs *j, const gd_job_info *ji, const char *spec_text, gd_err *err);

/*
 * A job record: ji (spec blob included) and the worker spec text.
 * gd_job_encode returns a malloc'd buffer (NULL on ENOMEM) and its length;
 * gd_job_decode fills *ret (free with gd_job_info_free) and a malloc'd
 * *ret_spec_text. Decode errors: GD_EINTERNAL (corrupt), GD_ENOMEM.
 */
void *gd_job_encode(const gd_job_info *ji, const char *spec_text, size_t *ret_len);
int gd_job_decode(const void *rec, size_t len, gd_job_info *ret, char **ret_spec_text,
                  gd_err *err);

/*
 * A worker outside the queue, for ties only (worker.h, --ties-fd; the rpc
 * ExportTies): spawned as a job's worker is, with spec_text on its stdin.
 * *ret_ties_fd reads its gd_tie_rec records, *ret_progress_fd its
 * progress lines (both O_CLOEXEC; the caller closes them), and the caller
 * reaps *ret_pid (waitpid) and may SIGTERM it; the worker also dies with
 * the daemon. Such a worker runs beside the queue's, so the caller bounds
 * how many run. Errors: GD_EUNAVAILABLE (gd_jobs_stop was called),
 * GD_EPRECONDITION (the worker executable is missing or not executable),
 * GD_EINTERNAL (pipe or spawn failed otherwise).
 */
int gd_jobs_spawn_ties(gd_jobs *j, const char *spec_text, pid_t *ret_pid, int *ret_ties_fd,
                       int *ret_progress_fd, gd_err *err);

/*
 * Why a reaped worker (waitpid status) failed, into buf: "worker killed by
 * signal N"; else its "error" line (err_line, may be NULL or empty) when it
 * printed one; else "cannot run worker PATH (exit code 127)" or "worker
 * exited with code N". A job's reason and an export's status text alike.
 */
void gd_jobs_worker_reason(const gd_jobs *j, int status, const char *err_line, char *buf,
                           size_t n);

/* The data directory the workers get (gd_jobs_opts.data_dir). */
const char *gd_jobs_data_dir(const gd_jobs *j);

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

/* The jobs the manager holds, by state: ret[GD_JOB_QUEUED] ...
 * ret[GD_JOB_CANCELLED] (ret[0] is 0). Finished jobs count as long as they
 * are kept (GD_JOBS_KEEP, restored records included). */
void gd_jobs_count(gd_jobs *j, uint64_t ret[GD_JOB_CANCELLED + 1]);

/* The change counter. */
uint64_t gd_jobs_version(gd_jobs *j);

/* Listener: fn(ctx) after each change. Returns a handle for
 * gd_jobs_unlisten (0 on ENOMEM). fn must not call gd_jobs_listen or
 * gd_jobs_unlisten. After gd_jobs_unlisten returns, fn is not running and
 * will not be called again. */
uint64_t gd_jobs_listen(gd_jobs *j, void (*fn)(void *ctx), void *ctx);
void gd_jobs_unlisten(gd_jobs *j, uint64_t handle);
/* Calls listener handle's fn once now, as a change would (under the same
 * lock, so gd_jobs_unlisten waits for it too): for a listener that must
 * also look at a state reached before it learnt what to look for. */
void gd_jobs_listen_now(gd_jobs *j, uint64_t handle);

#endif
