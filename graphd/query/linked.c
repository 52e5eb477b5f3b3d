/*
 * LinkedSellers: sellers linked to a seller through shared entities.
 *
 * Each seller-to-seller step has a tie: the sum of the evidence weights
 * (evidence.h: type weight, seller count, corroboration) of the entities
 * the two sellers share (plus w(seller) for a direct link). Hubs and
 * context entities tie nobody and are reported as skipped. A path's strength combines its ties like conductances in series,
 * score = 1 / sum(1 / tie), so we look for the path of least "resistance"
 * sum(1 / tie) with at most max_hops steps: a hop-bounded Bellman-Ford over
 * the sellers met, expanding in round h only the sellers whose best path
 * improved in round h - 1. Each seller keeps a copy of its best path's steps
 * (at most 3), so the evidence always matches the reported score and hops.
 */
#include <math.h>
#include <string.h>

#include "query/query_int.h"

typedef struct lnode {
  uint64_t id;
  double res;
  unsigned hops;
  gd_step *steps; /* arena */
  bool queued;    /* in the next frontier */
  /* A frontier node's path as the round began: what it is relaxed from,
   * so that a node another frontier node improved in the same round does
   * not pass on a path one step longer than the round allows. */
  double round_res;
  unsigned round_hops;
  gd_step *round_steps;
} lnode;

/* Evidence gathered while expanding one seller: per neighbour seller, its
 * tie and a list of shared entities (indices into a pool). */
typedef struct acc {
  uint64_t v;
  double tie;
  int32_t head, tail;
  uint32_t nshared;
} acc;

typedef struct sh_item {
  gd_shared s;
  int32_t next;
} sh_item;

typedef struct lstate {
  qctx q;
  uint64_t start;
  lnode *nodes;
  size_t nnodes, capnodes;
  gd_u64map node_idx; /* id -> index + 1 */
  acc *accs;
  size_t naccs, capaccs;
  gd_u64map acc_idx;
  sh_item *pool;
  size_t npool, cappool;
  qlinks ulinks;
} lstate;

static lnode *node_get(lstate *s, uint64_t id, bool *ret_new) {
  uint64_t *slot = gd_u64map_put(&s->node_idx, id, ret_new);
  if (!slot)
    return NULL;
  if (!*ret_new)
    return &s->nodes[*slot - 1];
  if (!qgrow(&s->nodes, &s->capnodes, s->nnodes, sizeof *s->nodes))
    return NULL;
  lnode *n = &s->nodes[s->nnodes++];
  memset(n, 0, sizeof *n);
  n->id = id;
  n->res = INFINITY;
  *slot = s->nnodes;
  return n;
}

static int add_shared(lstate *s, uint64_t v, const gd_shared *sh, gd_err *err) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&s->acc_idx, v, &fresh);
  if (!slot)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if (fresh) {
    if (!qgrow(&s->accs, &s->capaccs, s->naccs, sizeof *s->accs))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    s->accs[s->naccs] = (acc){v, 0, -1, -1, 0};
    *slot = ++s->naccs;
  }
  if (!qgrow(&s->pool, &s->cappool, s->npool, sizeof *s->pool))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  acc *a = &s->accs[*slot - 1];
  int32_t idx = (int32_t)s->npool++;
  s->pool[idx] = (sh_item){*sh, -1};
  if (a->tail >= 0)
    s->pool[a->tail].next = idx;
  else
    a->head = idx;
  a->tail = idx;
  a->nshared++;
  a->tie += sh->weight;
  return GD_OK;
}

/* Gathers the ties of seller u to every seller it shares something with. */
static int gather(lstate *s, uint64_t u, gd_err *err) {
  qctx *q = &s->q;
  const gd_evidence_params *ev = &q->p->ev;
  int rc;

  s->naccs = 0;
  s->npool = 0;
  gd_u64map_clear(&s->acc_idx);
  if ((rc = qctx_links(q, u, q->p->type_mask, &s->ulinks, err)))
    return rc;
  for (size_t i = 0; i < s->ulinks.n && !qctx_over(q); i++) {
    const gd_link *l = &s->ulinks.v[i];
    if (l->nbr_type == GD_TYPE_SELLER) {
      const qinfo *vi = qctx_info(q, l->nbr, err);
      if (!vi)
        return err->code;
      gd_shared sh = {l->nbr,       GD_TYPE_SELLER, vi->sellers,
                      1.0,          l->first_seen,  l->last_seen,
                      ev->type_weight[GD_TYPE_SELLER]};
      if (sh.weight > 0 && (rc = add_shared(s, l->nbr, &sh, err)))
        return rc;
      continue;
    }
    const qinfo *ei;
    if ((rc = qctx_evidence(q, l->nbr, &ei, err)))
      return rc;
    if (ei->hub || ei->context) {
      if ((rc = qctx_hub(q, ei, err)))
        return rc;
      continue;
    }
    double w = ei->weight, ec = ei->corroboration;
    if (w <= 0)
      continue;
    int etype = ei->type;
    uint64_t esellers = ei->sellers, eid = ei->id;
    const gd_link *sellers = NULL;
    size_t nsellers = 0;
    if ((rc = qctx_sellers(q, eid, &sellers, &nsellers, err)))
      return rc;
    /* The list is cached: walking it again for every seller that shares
     * the entity is work too (a raised hub cap makes it most of it). */
    qctx_work(q, nsellers);
    if (qctx_over(q))
      break;
    for (size_t j = 0; j < nsellers; j++) {
      const gd_link *m = &sellers[j];
      if (m->nbr == u)
        continue;
      gd_shared sh = {eid,
                      etype,
                      esellers,
                      ec,
                      l->first_seen > m->first_seen ? l->first_seen : m->first_seen,
                      l->last_seen > m->last_seen ? l->last_seen : m->last_seen,
                      w};
      if ((rc = add_shared(s, m->nbr, &sh, err)))
        return rc;
    }
  }
  return GD_OK;
}

static int cmp_shared(const void *a, const void *b) {
  const gd_shared *x = a, *y = b;
  if (x->weight != y->weight)
    return x->weight > y->weight ? -1 : 1;
  return (x->entity > y->entity) - (x->entity < y->entity);
}

/* Relaxes every tie gathered from u; appends improved sellers to next. */
static int relax(lstate *s, size_t ui, uint64_t **next, size_t *nnext, size_t *capnext,
                 gd_err *err) {
  qctx_work(&s->q, s->naccs);
  for (size_t k = 0; k < s->naccs; k++) {
    acc *a = &s->accs[k];
    if (a->v == s->start)
      continue;
    double ures = s->nodes[ui].round_res;
    unsigned uhops = s->nodes[ui].round_hops;
    double cand = ures + 1.0 / a->tie;
    bool fresh;
    lnode *n = node_get(s, a->v, &fresh);
    if (!n)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    lnode *u = &s->nodes[ui]; /* node_get may have moved the array */
    if (!(cand < n->res * (1 - 1e-12)))
      continue;
    gd_step *steps = gd_arena_alloc(s->q.arena, (uhops + 1) * sizeof *steps);
    gd_shared *sh = gd_arena_alloc(s->q.arena, a->nshared * sizeof *sh);
    if (!steps || !sh)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    if (uhops)
      memcpy(steps, u->round_steps, uhops * sizeof *steps);
    size_t m = 0;
    for (int32_t i = a->head; i >= 0; i = s->pool[i].next)
      sh[m++] = s->pool[i].s;
    if (m > 1)
      qsort(sh, m, sizeof *sh, cmp_shared);
    steps[uhops] = (gd_step){u->id, a->v, a->tie, sh, m};
    n->res = cand;
    n->hops = uhops + 1;
    n->steps = steps;
    if (!n->queued) {
      if (!qgrow(next, capnext, *nnext, sizeof **next))
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      (*next)[(*nnext)++] = a->v;
      n->queued = true;
    }
  }
  return GD_OK;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static int cmp_linked(const void *a, const void *b) {
  const gd_linked *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return (x->seller > y->seller) - (x->seller < y->seller);
}

int gd_query_linked(gd_rtxn *r, uint64_t seller, unsigned max_hops, const gd_query_params *p,
                    size_t limit, double min_score, gd_linked_result *ret, gd_err *err) {
  memset(ret, 0, sizeof *ret);
  int rc = gd__query_linked_in(r, seller, max_hops, p, limit, min_score, &ret->arena, ret, err);
  if (rc) {
    gd_arena_free(ret->arena);
    memset(ret, 0, sizeof *ret);
  }
  return rc;
}

int gd__query_linked_in(gd_rtxn *r, uint64_t seller, unsigned max_hops,
                        const gd_query_params *p, size_t limit, double min_score,
                        gd_arena **arena, gd_linked_result *ret, gd_err *err) {
  lstate s;
  uint64_t *frontier = NULL, *next = NULL;
  size_t nfront = 0, capfront = 0, nnext = 0, capnext = 0;
  int rc = GD_OK;

  memset(&s, 0, sizeof s);
  qctx_init(&s.q, r, p, arena);
  s.start = seller;

  const qinfo *si = qctx_info(&s.q, seller, err);
  if (!si) {
    rc = err->code;
    goto out;
  }
  if (si->type != GD_TYPE_SELLER) {
    rc = gd_err_set(err, GD_EINVALID, "seller: entity %llu is a %s, not a seller",
                    (unsigned long long)seller, gd_type_name(si->type));
    goto out;
  }
  bool fresh;
  lnode *start = node_get(&s, seller, &fresh);
  if (!start || !(frontier = malloc(sizeof *frontier))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  start->res = 0;
  frontier[0] = seller;
  nfront = 1;
  capfront = 1;

  for (unsigned h = 1; h <= max_hops && nfront && !qctx_over(&s.q); h++) {
    if (nfront > 1)
      qsort(frontier, nfront, sizeof *frontier, cmp_u64);
    for (size_t i = 0; i < nfront; i++) {
      lnode *f = &s.nodes[*gd_u64map_get(&s.node_idx, frontier[i]) - 1];
      f->queued = false;
      f->round_res = f->res;
      f->round_hops = f->hops;
      f->round_steps = f->steps;
    }
    nnext = 0;
    for (size_t i = 0; i < nfront && !qctx_over(&s.q); i++) {
      if ((rc = gather(&s, frontier[i], err)))
        goto out;
      if ((rc = relax(&s, *gd_u64map_get(&s.node_idx, frontier[i]) - 1, &next, &nnext, &capnext,
                      err)))
        goto out;
    }
    uint64_t *tmp = frontier;
    frontier = next;
    next = tmp;
    size_t tcap = capfront;
    capfront = capnext;
    capnext = tcap;
    nfront = nnext;
  }

  if ((rc = qctx_stopped(&s.q, err)))
    goto out;
  /* Results: every seller met but the start, best first. */
  gd_linked *out = gd_arena_alloc(arena, (s.nnodes + 1) * sizeof *out);
  if (!out) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  size_t n = 0;
  for (size_t i = 0; i < s.nnodes; i++) {
    lnode *nd = &s.nodes[i];
    if (nd->id == seller || !nd->steps)
      continue;
    double score = 1.0 / nd->res;
    if (score < min_score)
      continue;
    out[n++] = (gd_linked){nd->id, nd->hops, score, nd->steps};
  }
  if (n > 1)
    qsort(out, n, sizeof *out, cmp_linked);
  ret->sellers = out;
  ret->n = n < limit ? n : limit;
  if ((rc = qctx_hubs_out(&s.q, &ret->hubs, &ret->nhubs, err)))
    goto out;
  ret->truncated = s.q.truncated;
  ret->work_bound = qctx_work_bound(&s.q);
  ret->touched = s.q.touched;
out:
  free(frontier);
  free(next);
  free(s.nodes);
  free(s.accs);
  free(s.pool);
  free(s.ulinks.v);
  gd_u64map_free(&s.node_idx);
  gd_u64map_free(&s.acc_idx);
  qctx_free(&s.q);
  return rc;
}

void gd_linked_result_free(gd_linked_result *res) {
  if (res) {
    gd_arena_free(res->arena);
    memset(res, 0, sizeof *res);
  }
}
