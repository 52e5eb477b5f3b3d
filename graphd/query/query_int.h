/* Internals shared by the query files. */
#ifndef GD_QUERY_QUERY_INT_H
#define GD_QUERY_QUERY_INT_H

#include <stdlib.h>

#include "core/u64map.h"
#include "query/query.h"

/*
 * Makes room for element n of the growable array whose address is arrp
 * (a T **), of *cap elements of elem bytes, doubling it when full. Returns
 * false on out of memory, leaving the array as it was.
 */
bool qgrow(void *arrp, size_t *cap, size_t n, size_t elem);

/* A growable array of links, for collecting an entity's rows. */
typedef struct qlinks {
  gd_link *v;
  size_t n, cap;
  bool oom;
} qlinks;

/* Scratch for corroboration (common.c). */
typedef struct qlinks_buf qlinks_buf;

/* What the queries need to know about an entity, read once per query. */
typedef struct qinfo {
  uint64_t id;
  int type;
  uint64_t sellers;
  uint64_t degree;
  bool hub; /* over its type's hub cap */
  uint64_t cap;
  /* Filled by qctx_evidence: */
  bool ev_done;
  bool context;         /* not a hub, but weight 0 under the rule */
  double corroboration; /* c (evidence.h); 0 when not needed */
  double weight;        /* what one shared use adds to a tie; 0: not evidence */
  size_t elist;         /* qctx_sellers: index + 1 into elists; 0 = not read */
} qinfo;

typedef struct qctx {
  gd_rtxn *r;
  const gd_query_params *p;
  uint64_t touched;
  bool truncated;
  uint64_t work;       /* all steps (gd_query_params.max_work) */
  uint64_t next_check; /* work at which the check hook is asked next */
  int stop_rc;         /* the check hook's error: the query ends with it */
  gd_err stop_err;
  gd_u64map info_idx; /* id -> index + 1 into infos */
  qinfo *infos;
  size_t ninfo, capinfo;
  gd_arena **arena; /* the result's */
  gd_hub *hubs;     /* hubs met (malloc'd while running) */
  size_t nhubs, caphubs;
  gd_u64map hub_idx;
  uint64_t population; /* sellers in the store, read on first need */
  uint64_t state[2];   /* gd_rtxn_state: the store's serial, the txn id read */
  uint64_t gstate[2];  /* gd_rtxn_graph_state, once the memo asks (have_gstate) */
  bool have_gstate;
  struct icache *ic;   /* this thread's entity cache (common.c); NULL = none */
  qlinks full;         /* scratch: a whole adjacency list read for the cache */
  qlinks_buf *cbuf;    /* corroboration scratch (lazily made) */
  /* Seller lists of entities read so far (in the query's window): a ring's
   * warehouse is met from every member and weighed once, read once
   * (indexed by qinfo.elist). */
  struct qelist {
    size_t off, n;
  } *elists;
  size_t nelists, capelists;
  gd_link *epool;
  size_t nepool, capepool;
} qctx;

void qctx_init(qctx *q, gd_rtxn *r, const gd_query_params *p, gd_arena **arena);
void qctx_free(qctx *q);

/* Hints that qctx_info(q, id) comes soon (see gd_u64map_prefetch). */
void qctx_prefetch(const qctx *q, uint64_t id);

/* Reads (once) and returns the entity's info; NULL with err set if it is
 * missing or on error. The pointer dies at the next qctx_info call. */
const qinfo *qctx_info(qctx *q, uint64_t id, gd_err *err);

/*
 * Reads (once) the entity's info and its evidence weight under the rule:
 * for an entity whose weight depends on its corroboration, reads the links
 * of its first GD_EV_SAMPLE sellers (over all time, whatever the window:
 * like the seller count, it is a property of the entity; counted in touched)
 * and computes c as the projection does (evidence.h). *ret as qctx_info.
 * Direct links (sellers) get weight type_weight[SELLER].
 */
int qctx_evidence(qctx *q, uint64_t id, const qinfo **ret, gd_err *err);

/*
 * The sellers linked to entity infos[info].id in the query's window, read
 * once per query (info: the index of the entity's qinfo, from qctx_info).
 * The pointer is valid until the next qctx_sellers call.
 */
int qctx_sellers(qctx *q, size_t info, const gd_link **ret, size_t *ret_n, gd_err *err);

/* Records a hub or context entity met (once per entity). */
int qctx_hub(qctx *q, const qinfo *in, gd_err *err);

/* Copies the hubs met into the arena, sorted; sets *ret / *ret_n. */
int qctx_hubs_out(qctx *q, gd_hub **ret, size_t *ret_n, gd_err *err);

/* Asks the check hook (common.c); on its error sets stop_rc and truncated,
 * so every loop testing qctx_over ends. */
void qctx_check_slow(qctx *q);

/* Counts n steps of work; asks the check hook every GD_QUERY_CHECK_EVERY. */
static inline void qctx_work(qctx *q, uint64_t n) {
  q->work += n;
  if (q->work >= q->next_check)
    qctx_check_slow(q);
}

/* True once the server's bound on all work (p->max_work) is passed. */
static inline bool qctx_work_bound(const qctx *q) {
  return q->p->max_work && q->work > q->p->max_work;
}

/* True (and marks truncated) once a work bound is passed or the check hook
 * said stop. */
static inline bool qctx_over(qctx *q) {
  if ((q->p->max_touched && q->touched > q->p->max_touched) || qctx_work_bound(q))
    q->truncated = true;
  return q->truncated;
}

/* The check hook's error, if it said stop (copied to err), else GD_OK. Every
 * query returns through this before building its result. */
static inline int qctx_stopped(qctx *q, gd_err *err) {
  if (q->stop_rc)
    *err = q->stop_err;
  return q->stop_rc;
}


/* Reads the links of id passing the type mask and the window into *out
 * (reset first). */
int qctx_links(qctx *q, uint64_t id, uint32_t type_mask, qlinks *out, gd_err *err);

/* gd_query_linked with results allocated in *arena (ret->arena untouched). */
int gd__query_linked_in(gd_rtxn *r, uint64_t seller, unsigned max_hops,
                        const gd_query_params *p, size_t limit, double min_score,
                        gd_arena **arena, gd_linked_result *ret, gd_err *err);

#endif
