/*
 * graphd-worker: the clustering worker process (docs/ARCHITECTURE.md, "The
 * clustering worker" and "Evidence weighting").
 *
 * The daemon starts one per clustering job with posix_spawn; it is a
 * separate process because igraph is not thread-safe, aborts on internal
 * errors and is only safely interruptible with care: in a child, a crash
 * fails one job, and cancel is a signal. It opens its own LMDB environment
 * (never one inherited across fork), reads the graph in one read
 * transaction, clusters it, and writes the whole snapshot in one durable
 * write transaction at the very end: a run that fails or is cancelled
 * writes nothing.
 *
 * ---- Command line ----
 *
 *   graphd-worker --data DIR [--spec FILE] [--progress-fd N] [--ties-fd N]
 *                 [--max-sellers N] [--max-ties N]
 *                 [--map-size-max-mb N] [--max-memory-mb N]
 *
 *   --data DIR          the graphd data directory (must hold data.mdb)
 *   --spec FILE         the job spec (below); "-" or absent: read stdin
 *                       (the daemon writes the spec into a pipe, so no
 *                       temporary file is needed). At most 64 KiB.
 *   --progress-fd N     where progress lines go (default 1, stdout)
 *   --ties-fd N         ties only (gd_worker_ties): write the evidence
 *                       graph's ties to fd N instead of clustering; the
 *                       final line is "done COUNT" (ties written)
 *   --max-sellers N     refuse graphs with more sellers (default 20000000)
 *   --max-ties N        refuse evidence graphs with more ties (default
 *                       200000000); both are checked before igraph runs
 *   --map-size-max-mb N the map may grow up to this when the snapshot is
 *                       written (default 1 TiB, as the store's default)
 *   --max-memory-mb N   RLIMIT_AS for the process (default: none). The
 *                       LMDB map counts: give map size + working memory.
 *
 * ---- Spec (text, one key=value a line) ----
 *
 * Blank lines and lines starting with '#' are ignored; spaces around keys
 * and values are trimmed; every key at most once; unknown keys are errors.
 * Errors name the line and the key: "spec line 3: resolution: 'abc' is not
 * a number".
 *
 *   algorithm        leiden_cpm (default) | leiden_modularity | louvain |
 *                    label_propagation | components | infomap
 *                    ('-' may replace '_')
 *   resolution       number >= 0; default per algorithm: CPM takes the
 *                    evidence rule's (evidence.h: 0.2 corroborated, 0.1
 *                    rarity), modularity/Louvain 1 (community.h)
 *   beta             Leiden refinement randomness, > 0 (default 0.01)
 *   iterations       Leiden: > 0, or -1 = until stable (default);
 *                    Infomap: trials > 0 (default 10); others ignore it
 *   threshold        components: minimum tie weight (default 0.5)
 *   seed             unsigned 64-bit integer (default 1)
 *   min_tie_weight   number >= 0: lighter ties are dropped from the
 *                    evidence graph (default 0)
 *   since, until     unix seconds, 0 = open (default 0): only sellers and
 *                    links seen in the window (store/snapshot.h)
 *   flagged_labels   comma-separated labels that make a seller "flagged"
 *                    for cluster risk (default "counterfeit"; empty = none)
 *   hub_cap.TYPE     an entity of TYPE (address, payment_account, device,
 *                    phone, email, ip) with more sellers is a hub: left
 *                    out of the projection (evidence.c has the defaults)
 *   weight.TYPE      type weight >= 0; weight.seller weighs direct
 *                    seller-seller links; not all of them 0
 *   evidence         corroborated (default) | rarity: the evidence rule
 *                    (algorithms/evidence.h)
 *   name             free text, at most 128 bytes of UTF-8
 *   previous         snapshot to match cluster ids against: an id, 0 =
 *                    the latest (default; none if there is none yet), -1 =
 *                    none (every cluster gets a fresh id)
 *   warm_start       auto (default) | on | off: Leiden (CPM or modularity)
 *                    starts from the previous snapshot's membership instead
 *                    of singletons: each seller in its previous cluster,
 *                    sellers new since then (or not assigned then) each on
 *                    their own. on: whenever there is a previous snapshot;
 *                    auto: when the previous snapshot's spec (its
 *                    manifest's "spec") equals this job's in everything
 *                    but name, seed, previous and warm_start; off: never.
 *                    Without a previous snapshot, and for the other
 *                    algorithms, the run is cold. The manifest says which
 *                    it was ("warm_started", snapfmt.h). On a slightly
 *                    changed graph a warm run usually takes two Leiden
 *                    iterations (one repairs the start, one confirms it)
 *                    where a cold one may take more, and keeps a few more
 *                    sellers in their cluster. A warm job also reads the
 *                    graph from the previous snapshot's export image
 *                    (store/snapshot.h, "Export images") patched with the
 *                    change log, not whole; the manifest's
 *                    input.from_image says so (snapshot, changed_ids), or
 *                    input.image_unused why not (no image, a damaged one,
 *                    the log reset by a bulk load). Every open-window job
 *                    saves its export as an image (manifest "image": txn,
 *                    nonce; file images/<snapshot id>.img under the data
 *                    directory; the images of the job's snapshot and of
 *                    its previous snapshot are kept, others removed).
 *   import           absolute path of a membership file (gd_import_*
 *                    below): the cluster stage takes that membership
 *                    instead of running the algorithm (ImportSnapshot);
 *                    sellers it does not name are singletons, a row
 *                    naming no seller of the export fails the job (the
 *                    error names the row). The manifest gets "imported"
 *                    (engine, rows, sellers_unassigned), objective null.
 *   engine           free text, at most 128 bytes: who computed an
 *                    imported membership (recorded in the manifest)
 *
 * ---- Progress (one ASCII line each, on --progress-fd) ----
 *
 *   stage NAME FRACTION   a stage starts; FRACTION (0..1) is a rough share
 *                         of the job done. NAMEs in order: open, read,
 *                         project, cluster, match, summarize, write
 *   timing NAME SECONDS   the stage ended
 *   info KEY VALUE        figures as they become known: stale_readers,
 *                         sellers, entities, links, ties, hubs_skipped,
 *                         previous_snapshot, warm_started (0 or 1, before
 *                         the cluster stage), clusters, image_changed_ids
 *                         (a warm read from an image), image_unused
 *                         REASON, image_unsaved REASON; in the write
 *                         stage, milliseconds: write_keys_wait_ms (waiting
 *                         for the sellers' keys, read on a thread since
 *                         the read stage), write_names_ms (the rest of the
 *                         names and the kept links), write_put_ms (the
 *                         snapshot's rows), write_commit_ms (the commit
 *                         and its fdatasync)
 *   done ID               the snapshot is committed (durable); exit 0
 *   cancelled             cancelled; nothing written
 *   error MESSAGE         failed; nothing written. MESSAGE starts with the
 *                         graphd error description ("invalid argument: ...")
 *
 * If writing a progress line fails with EPIPE (the daemon is gone), the
 * job cancels itself.
 *
 * ---- Cancel ----
 *
 * SIGTERM or SIGINT sets an atomic flag. igraph sees it at its next
 * interruption check (Leiden about every 10,000 node moves); the worker
 * checks it between stages and inside its own loops, frees everything and
 * prints "cancelled". Some steps cannot be interrupted (the projection,
 * igraph's graph conversion, Leiden's set-up: about a second each at 2M
 * ties), so the first signal also arms a one-second alarm: if the job is
 * still running then, or on a second signal, the worker prints "cancelled"
 * and _exits at once. That is safe because nothing is written before the
 * final transaction (a read transaction left open becomes a stale reader
 * slot, which mdb_reader_check clears). Cancel latency is therefore at most
 * about one second plus process exit. Once the write stage has begun,
 * signals are ignored: the snapshot commits whole or not at all, and a job
 * that committed reports done.
 *
 * ---- Empty graph ----
 *
 * A store (or window) with no seller gives a valid empty snapshot: no
 * assignments, no clusters, igraph not called, objective and modularity
 * null in the manifest.
 */
#ifndef GD_WORKER_WORKER_H
#define GD_WORKER_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "community.h"
#include "core/error.h"
#include "evidence.h"

/* Exit codes: one per outcome the daemon tells apart. A worker killed by a
 * signal (a crash, or the watchdog) is seen by the daemon as such. */
#define GD_WORKER_EXIT_OK 0
#define GD_WORKER_EXIT_FAILED 1       /* INTERNAL, I/O: FAILED / INTERNAL */
#define GD_WORKER_EXIT_INVALID 2      /* command line or spec: INVALID_ARGUMENT */
#define GD_WORKER_EXIT_NOTFOUND 3     /* data dir or previous snapshot: NOT_FOUND */
#define GD_WORKER_EXIT_RESOURCE 4     /* caps, memory, map at maximum: RESOURCE_EXHAUSTED */
#define GD_WORKER_EXIT_CANCELLED 5    /* SIGTERM/SIGINT: CANCELLED */
#define GD_WORKER_EXIT_PRECONDITION 6 /* e.g. data schema newer: FAILED_PRECONDITION */

/* The exit code for a graphd error code. */
int gd_worker_exit_code(int gd_code);

/* The graphd error code a worker's exit code stands for: the inverse of
 * gd_worker_exit_code (GD_WORKER_EXIT_FAILED and unknown codes:
 * GD_EINTERNAL; 127, a shell's "could not exec": GD_EPRECONDITION). */
int gd_worker_exit_status(int exit_code);

#define GD_WORKER_SPEC_MAX (64 * 1024)
#define GD_WORKER_NAME_MAX 128
#define GD_WORKER_FLAGGED_MAX 64

/* Spec key warm_start. */
typedef enum gd_worker_warm { GD_WARM_AUTO = 0, GD_WARM_ON, GD_WARM_OFF } gd_worker_warm;

/* "auto", "on", "off". */
const char *gd_worker_warm_name(gd_worker_warm w);

typedef struct gd_worker_spec {
  gd_comm_params comm; /* algo and its parameters, defaults filled in */
  uint64_t seed;
  double min_tie_weight;
  int64_t since, until;
  char **flagged; /* n_flagged labels, owned */
  size_t n_flagged;
  gd_evidence_params ev;
  char *name;       /* owned; "" if none */
  int64_t previous; /* -1 none, 0 latest, > 0 an id */
  gd_worker_warm warm_start;
  char *import_path; /* owned; NULL: run the algorithm (spec key import) */
  char *engine;      /* owned; NULL if not given (spec key engine) */
} gd_worker_spec;

/*
 * Parses a spec (format above) into *ret. On success free it with
 * gd_worker_spec_free. Errors: GD_EINVALID naming the line and key,
 * GD_ENOMEM.
 */
int gd_worker_spec_parse(const char *text, size_t len, gd_worker_spec *ret, gd_err *err);
void gd_worker_spec_free(gd_worker_spec *s);

/*
 * The spec with every default filled in, as the manifest's "spec" object
 * (snapfmt.h): algorithm, evidence, resolution, beta, iterations,
 * threshold, seed, min_tie_weight, since, until, flagged_labels, hub_caps,
 * type_weights, name, previous, warm_start. The daemon answers Job.spec
 * from the same object, so a job and its snapshot report the same spec.
 * NULL when out of memory; release with json_object_put.
 */
struct json_object;
struct json_object *gd_worker_spec_json(const gd_worker_spec *s);

/*
 * Whether a job with spec object a (gd_worker_spec_json) may start warm
 * from a snapshot made with spec object b (a manifest's "spec") under
 * warm_start auto: equal in every key but name, seed, previous and
 * warm_start (numbers compared as the manifest's JSON text writes them, so
 * a spec read back from a manifest equals the one it was written from).
 * False when either is not an object or out of memory.
 */
bool gd_worker_spec_same_for_warm(struct json_object *a, struct json_object *b);

/* The spec's algorithm name as written in specs ("leiden_cpm"). */
const char *gd_worker_algo_name(gd_comm_algo algo);

typedef struct gd_worker_opts {
  const char *data_dir;
  uint64_t max_sellers, max_ties;
  uint64_t map_size_max; /* bytes; 0 = the store's default */
  int progress_fd;       /* < 0: no progress */
  atomic_int *cancel;    /* set by signals; the worker sets it on EPIPE */
  atomic_int *committing; /* may be NULL; set to 1 just before the write
                           * transaction begins: from then on, cancel is
                           * ignored (signal handlers must not exit) */
} gd_worker_opts;

/*
 * Runs the whole job: open, read, project, cluster, match, summarize,
 * write. Progress goes to o->progress_fd as it happens, except the final
 * "done" / "error" / "cancelled" line, which the caller prints. On success
 * *ret_snapshot is the committed snapshot id.
 * Errors: GD_ECANCELLED, GD_EINVALID, GD_ENOTFOUND, GD_ERESOURCE,
 * GD_ENOMEM, GD_EMAPFULL, GD_EPRECONDITION, GD_EIO, GD_EINTERNAL.
 */
int gd_worker_run(const gd_worker_opts *o, const gd_worker_spec *spec, uint64_t *ret_snapshot,
                  gd_err *err);

/*
 * Ties only (graphd-worker --ties-fd N, rpc ExportTies): the open, read
 * and project stages of a job under spec, then every tie of the evidence
 * graph once, as gd_tie_rec records written to fd: a < b, ascending (a,
 * b). Nothing is written to the store. *ret_ties gets the number written.
 * A reader that closes fd early (EPIPE) is a cancel. Errors: as
 * gd_worker_run but GD_EMAPFULL; GD_EIO when fd cannot be written.
 */
typedef struct gd_tie_rec {
  uint64_t a, b; /* seller ids */
  double w;
} gd_tie_rec;
int gd_worker_ties(const gd_worker_opts *o, const gd_worker_spec *spec, int fd,
                   uint64_t *ret_ties, gd_err *err);

/*
 * The membership file of spec key import, written by the daemon
 * (ImportSnapshot) and read once by the worker: GD_IMPORT_MAGIC (8
 * bytes), the row count (uint64_t), then that many gd_import_row, all in
 * the machine's byte order (the file never leaves it). The daemon checks
 * before writing it that the rows name distinct sellers; the worker
 * checks again against what it read.
 */
#define GD_IMPORT_MAGIC "GDIMPRT1"
typedef struct gd_import_row {
  uint64_t seller;
  int64_t label; /* the engine's cluster label */
} gd_import_row;

/* Writes one progress line (printf-style, '\n' added) to fd; on EPIPE sets
 * *cancel. Async-signal-safe it is not; call it from the main flow only. */
void gd_worker_progress(int fd, atomic_int *cancel, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
