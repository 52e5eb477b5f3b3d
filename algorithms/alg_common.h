/*
 * What every algorithms/ module shares: the status table, the error record,
 * the run control (seed and cancel flag) and canonical membership arrays.
 *
 * algorithms/ depends on nothing in graphd/, so it has its own small status
 * list instead of core/error.h. The caller maps it once, at the edge; the
 * natural mapping is given in the table (OK -> GD_EOK, INVALID ->
 * GD_EINVALID, NOMEM -> GD_ENOMEM, INTERRUPTED -> GD_ECANCELLED, FAILED ->
 * GD_EINTERNAL).
 *
 * Nothing here logs.
 */
#ifndef GD_ALGORITHMS_ALG_COMMON_H
#define GD_ALGORITHMS_ALG_COMMON_H

#include <stdatomic.h>
#include <stdint.h>

/* XX(name, description, graphd code it maps to) */
#define GD_ALG_STATUS_MAP(XX)                                  \
  XX(OK, "ok", GD_EOK)                                         \
  XX(INVALID, "invalid argument", GD_EINVALID)                 \
  XX(NOMEM, "out of memory", GD_ENOMEM)                        \
  XX(INTERRUPTED, "interrupted", GD_ECANCELLED)                \
  XX(FAILED, "algorithm failed", GD_EINTERNAL)

typedef enum gd_alg_status {
#define XX(name, desc, gd) GD_ALG_##name,
  GD_ALG_STATUS_MAP(XX)
#undef XX
  GD_ALG__COUNT
} gd_alg_status;

/* Longest message kept with an error, including the NUL. */
#define GD_ALG_MSG_MAX 256

/*
 * An error with its message. Functions that can fail take a
 * `gd_alg_error *err` (may be NULL), fill it only when they fail, and
 * return the status. igraph_errno is igraph's own code when the failure
 * came from igraph (0 otherwise), for the manifest and for debugging.
 */
typedef struct gd_alg_error {
  gd_alg_status code;
  int igraph_errno;
  char msg[GD_ALG_MSG_MAX];
} gd_alg_error;

/* Short description of a status ("interrupted"). Never NULL. */
const char *gd_alg_strerror(gd_alg_status code);

/* Sets err (if not NULL) to code and a printf-style message; returns code. */
gd_alg_status gd_alg_error_set(gd_alg_error *err, gd_alg_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * How one algorithm run is controlled.
 *
 * seed: the igraph RNG is seeded with it at the start of every call, so a
 *   call's result depends only on its input and this number.
 * cancel: optional. When *cancel becomes non-zero the running computation
 *   stops at its next interruption check and the call returns
 *   GD_ALG_INTERRUPTED. An atomic_int (lock-free on every platform we
 *   build for), so it may be set from another thread or from a signal
 *   handler (C11 7.14.1.1 allows lock-free atomics there); a plain
 *   volatile int would be a data race when set from another thread.
 *   Checks are coarse (see igraph_bridge.h): Leiden about every 10,000
 *   node moves, Louvain once per pass, label propagation never inside its
 *   main loop.
 */
typedef struct gd_alg_ctl {
  uint64_t seed;
  const atomic_int *cancel;
} gd_alg_ctl;

/* True if ctl asks the current computation to stop. NULL-safe. */
static inline int gd_alg_cancelled(const gd_alg_ctl *ctl) {
  return ctl && ctl->cancel && atomic_load_explicit(ctl->cancel, memory_order_relaxed) != 0;
}

/*
 * Canonical membership: renumbers labels[0..n) into out[0..n) so that
 * clusters are numbered 0..k-1 in order of first appearance (vertex 0 is
 * always in cluster 0). Two partitions are equal iff their canonical
 * arrays are equal. Negative labels mean "no cluster": each such vertex
 * becomes a singleton cluster of its own. out may equal labels.
 * ret_k (may be NULL) gets k.
 *
 * O(n) when every label is in [0, n) (what algorithms return), otherwise
 * O(n log n) (a sort of the distinct labels). Errors: NOMEM, INVALID (n <
 * 0 or NULL arrays with n > 0).
 */
gd_alg_status gd_membership_canonical(const int64_t *labels, int64_t n, int64_t *out,
                                      int64_t *ret_k, gd_alg_error *err);

#endif
