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
#include <stddef.h>
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
  /* Evidence gathered while expanding one seller (valid while gen is the
   * state's): the node's tie to it and the entities they share, a list
   * of indices into the pool. */
  uint32_t gen;
  uint32_t nshared;
  int32_t head, tail;
  double tie;
} lnode;

/* One entity shared with the seller being expanded, as indices: made
 * into a gd_shared (shared_of) only for a node whose path improves. */
typedef struct sh_item {
  int32_t next;  /* the node's next item; -1 ends its list */
  uint32_t info; /* the entity's qinfo (q.infos) */
  uint32_t ul;   /* the expanded seller's link to it (ulinks.v) */
  uint32_t row;  /* the node's link to it (q.epool); NO_ROW: a direct link */
} sh_item;

#define NO_ROW UINT32_MAX

typedef struct lstate {
  qctx q;
  uint64_t start;
  lnode *nodes;
  size_t nnodes, capnodes;
  gd_u64map node_idx; /* id -> index + 1 */
  uint32_t gen;       /* the current gather's */
  size_t *accs;       /* the nodes the current gather met, in order */
  size_t naccs, capaccs;
  sh_item *pool;
  size_t npool, cappool;
  qlinks ulinks;
  /* The node of each seller in the query's entity lists (q.epool), so a
   * list met again (a ring's warehouse, from every member) is walked
   * without hashing: enode[i] for pool row i, filled for list l once
   * emapped[l] (l indexes q.elists). */
  int32_t *enode;
  size_t capenode;
  uint8_t *emapped;
  size_t capemapped;
} lstate;

/* The index of seller id's node, made if new; -1 on out of memory. */
static ptrdiff_t node_get(lstate *s, uint64_t id) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&s->node_idx, id, &fresh);
  if (!slot)
    return -1;
  if (!fresh)
    return (ptrdiff_t)*slot - 1;
  if (!qgrow(&s->nodes, &s->capnodes, s->nnodes, sizeof *s->nodes))
    return -1; /* the slot stays 0: the next put of id finds it fresh */
  lnode *n = &s->nodes[s->nnodes++];
  memset(n, 0, sizeof *n);
  n->id = id;
  n->res = INFINITY;
  *slot = s->nnodes;
  return (ptrdiff_t)s->nnodes - 1;
}

/* Makes room for n more items (and as many new nodes met) of entity
 * qinfo `info` through link ul of the seller being expanded, with rows
 * below `row_end`. */
static int pool_reserve(lstate *s, size_t n, size_t info, size_t ul, size_t row_end,
                        gd_err *err) {
  if (info > UINT32_MAX || ul > UINT32_MAX || row_end > NO_ROW || n > INT32_MAX - s->npool)
    return gd_err_set(err, GD_ERESOURCE,
                      "seller %llu: more than 2^31 entity uses in one expansion: query too large",
                      (unsigned long long)s->q.infos[info].id);
  while (s->cappool < s->npool + n)
    if (!qgrow(&s->pool, &s->cappool, s->cappool, sizeof *s->pool))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
  while (s->capaccs < s->naccs + n)
    if (!qgrow(&s->accs, &s->capaccs, s->capaccs, sizeof *s->accs))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
  return GD_OK;
}

/* Adds what node k shares with the seller being expanded: the entity of
 * qinfo `info` (weight w), through link ul of that seller and pool row
 * `row` (NO_ROW for a direct link, `info` being k's seller). Room made
 * by pool_reserve. */
static inline void add_shared(lstate *s, size_t k, uint32_t info, uint32_t ul, uint32_t row,
                              double w) {
  lnode *a = &s->nodes[k];
  if (a->gen != s->gen) {
    s->accs[s->naccs++] = k;
    a->gen = s->gen;
    a->tie = 0;
    a->head = a->tail = -1;
    a->nshared = 0;
  }
  int32_t idx = (int32_t)s->npool++;
  s->pool[idx] = (sh_item){-1, info, ul, row};
  if (a->tail >= 0)
    s->pool[a->tail].next = idx;
  else
    a->head = idx;
  a->tail = idx;
  a->nshared++;
  a->tie += w;
}

/* The evidence an item stands for. */
static gd_shared shared_of(const lstate *s, const sh_item *it) {
  const qinfo *in = &s->q.infos[it->info];
  const gd_link *l = &s->ulinks.v[it->ul];
  if (it->row == NO_ROW)
    return (gd_shared){in->id,        GD_TYPE_SELLER, in->sellers,
                       1.0,           l->first_seen,  l->last_seen,
                       s->q.p->ev.type_weight[GD_TYPE_SELLER]};
  const gd_link *m = &s->q.epool[it->row];
  return (gd_shared){in->id,
                     in->type,
                     in->sellers,
                     in->corroboration,
                     l->first_seen > m->first_seen ? l->first_seen : m->first_seen,
                     l->last_seen > m->last_seen ? l->last_seen : m->last_seen,
                     in->weight};
}

/* The nodes of the sellers of entity ei (its list, from qctx_sellers, is
 * sellers[0 .. n)): made on the list's first visit in the query. */
static int list_nodes(lstate *s, const qinfo *ei, const gd_link *sellers, size_t n,
                      const int32_t **ret, gd_err *err) {
  qctx *q = &s->q;
  size_t li = ei->elist - 1, off = (size_t)(sellers - q->epool);
  if (q->nelists > s->capemapped) {
    size_t cap = s->capemapped ? 2 * s->capemapped : 64;
    while (cap < q->nelists)
      cap *= 2;
    uint8_t *m = realloc(s->emapped, cap);
    if (!m)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    memset(m + s->capemapped, 0, cap - s->capemapped);
    s->emapped = m;
    s->capemapped = cap;
  }
  if (q->nepool > s->capenode) {
    int32_t *e = realloc(s->enode, q->capepool * sizeof *e);
    if (!e)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    s->enode = e;
    s->capenode = q->capepool;
  }
  if (!s->emapped[li]) {
    for (size_t j = 0; j < n; j++) {
      ptrdiff_t k = node_get(s, sellers[j].nbr);
      if (k < 0 || k > INT32_MAX)
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      s->enode[off + j] = (int32_t)k;
    }
    s->emapped[li] = 1;
  }
  *ret = s->enode + off;
  return GD_OK;
}

/* Gathers the ties of seller u to every seller it shares something with. */
static int gather(lstate *s, uint64_t u, gd_err *err) {
  qctx *q = &s->q;
  const gd_evidence_params *ev = &q->p->ev;
  int rc;

  s->naccs = 0;
  s->npool = 0;
  s->gen++;
  if ((rc = qctx_links(q, u, q->p->type_mask, &s->ulinks, err)))
    return rc;
  for (size_t i = 0; i < s->ulinks.n; i++)
    qctx_prefetch(q, s->ulinks.v[i].nbr);
  for (size_t i = 0; i < s->ulinks.n && !qctx_over(q); i++) {
    const gd_link *l = &s->ulinks.v[i];
    if (l->nbr_type == GD_TYPE_SELLER) {
      const qinfo *vi = qctx_info(q, l->nbr, err);
      if (!vi)
        return err->code;
      double w = ev->type_weight[GD_TYPE_SELLER];
      if (w <= 0)
        continue;
      size_t vinfo = (size_t)(vi - q->infos);
      ptrdiff_t k = node_get(s, l->nbr);
      if (k < 0)
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      if ((rc = pool_reserve(s, 1, vinfo, i, NO_ROW, err)))
        return rc;
      add_shared(s, (size_t)k, (uint32_t)vinfo, (uint32_t)i, NO_ROW, w);
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
    double w = ei->weight;
    if (w <= 0)
      continue;
    size_t einfo = (size_t)(ei - q->infos);
    const gd_link *sellers = NULL;
    size_t nsellers = 0;
    const int32_t *nodes = NULL;
    if ((rc = qctx_sellers(q, einfo, &sellers, &nsellers, err)))
      return rc;
    /* The list is cached: walking it again for every seller that shares
     * the entity is work too (a raised hub cap makes it most of it). */
    qctx_work(q, nsellers);
    if (qctx_over(q))
      break;
    if ((rc = list_nodes(s, ei, sellers, nsellers, &nodes, err)))
      return rc;
    size_t row0 = (size_t)(sellers - q->epool);
    if ((rc = pool_reserve(s, nsellers, einfo, i, row0 + nsellers, err)))
      return rc;
    for (size_t j = 0; j < nsellers; j++)
      if (sellers[j].nbr != u)
        add_shared(s, (size_t)nodes[j], (uint32_t)einfo, (uint32_t)i, (uint32_t)(row0 + j), w);
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
  const lnode *u = &s->nodes[ui]; /* nothing below grows the array */
  double ures = u->round_res;
  unsigned uhops = u->round_hops;
  for (size_t k = 0; k < s->naccs; k++) {
    lnode *n = &s->nodes[s->accs[k]];
    if (n->id == s->start)
      continue;
    double cand = ures + 1.0 / n->tie;
    if (!(cand < n->res * (1 - 1e-12)))
      continue;
    gd_step *steps = gd_arena_alloc(s->q.arena, (uhops + 1) * sizeof *steps);
    gd_shared *sh = gd_arena_alloc(s->q.arena, n->nshared * sizeof *sh);
    if (!steps || !sh)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    if (uhops)
      memcpy(steps, u->round_steps, uhops * sizeof *steps);
    size_t m = 0;
    for (int32_t i = n->head; i >= 0; i = s->pool[i].next)
      sh[m++] = shared_of(s, &s->pool[i]);
    if (m > 1)
      qsort(sh, m, sizeof *sh, cmp_shared);
    steps[uhops] = (gd_step){u->id, n->id, n->tie, sh, m};
    n->res = cand;
    n->hops = uhops + 1;
    n->steps = steps;
    if (!n->queued) {
      if (!qgrow(next, capnext, *nnext, sizeof **next))
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      (*next)[(*nnext)++] = n->id;
      n->queued = true;
    }
  }
  return GD_OK;
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
  /* A deeper query meets a few hundred sellers and entities: room for
   * them at once (growing the maps a doubling at a time was about 3% of
   * a 2-hop query), while a 1-hop one keeps the maps' small start. */
  if (max_hops >= 2 &&
      (!gd_u64map_reserve(&s.node_idx, 512) || !gd_u64map_reserve(&s.q.info_idx, 256))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }

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
  ptrdiff_t start = node_get(&s, seller);
  if (start < 0 || !(frontier = malloc(sizeof *frontier))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  s.nodes[start].res = 0;
  frontier[0] = seller;
  nfront = 1;
  capfront = 1;

  for (unsigned h = 1; h <= max_hops && nfront && !qctx_over(&s.q); h++) {
    if (nfront > 1)
      qsort(frontier, nfront, sizeof *frontier, gd_cmp_u64);
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
  free(s.enode);
  free(s.emapped);
  gd_u64map_free(&s.node_idx);
  qctx_free(&s.q);
  return rc;
}

void gd_linked_result_free(gd_linked_result *res) {
  if (res) {
    gd_arena_free(res->arena);
    memset(res, 0, sizeof *res);
  }
}
