/*
 * RankSuspects: personalised PageRank from labelled sellers, by local push.
 *
 * The walk runs on the seller-entity graph, hubs and context entities
 * removed. From a seller it moves to one of its entities e with
 * probability proportional to e's evidence weight (evidence.h; to a
 * directly linked seller with weight w(seller));
 * from an entity it moves to one of its sellers, uniformly. With
 * probability alpha it jumps back to a seed (uniform over the seeds).
 * Local push (Andersen, Chung, Lang, "Local graph partitioning using
 * PageRank vectors", FOCS 2006) keeps an estimate p and a residual r per
 * node and repeatedly pushes a node whose residual is at least epsilon per
 * neighbour: p += alpha * r, and (1 - alpha) * r is spread over its
 * neighbours by the walk's probabilities. It touches only the part of the
 * graph near the seeds, and every push is counted against the work bound.
 *
 * Suspects are the unlabelled sellers with the most mass; for each of the
 * first NEAREST_SUSPECTS, the labelled sellers linked to it within two
 * steps are found with LinkedSellers (a small work bound and a scratch
 * arena each) as its evidence. A ring none of whose members is labelled,
 * and which shares no evidence with labelled sellers, gets no mass at all:
 * when the limit leaves room after the sellers with mass, the members of
 * the latest snapshot's multi-seller clusters that the walk did not reach
 * follow, larger groups first (unreached_groups).
 */
#include <math.h>
#include <string.h>

#include "query/query_int.h"
#include "store/snapshot.h"

#define NEAREST_TOUCH_BOUND 20000
#define NEAREST_SUSPECTS 100

typedef struct wnbr {
  uint64_t id;
  double w;
} wnbr;

typedef struct rnode {
  uint64_t id;
  int type;
  double p, r;
  double deg;        /* sum of out weights */
  double threshold;  /* push when r >= threshold */
  wnbr *out;         /* malloc'd; NULL until loaded */
  size_t nout;
  bool loaded, queued, seed;
} rnode;

typedef struct rstate {
  qctx q;
  rnode *nodes;
  size_t nnodes, capnodes;
  gd_u64map idx;
  qlinks tmp;
  uint64_t *queue; /* ring buffer of ids */
  size_t qhead, qlen, qcap;
  double eps;
} rstate;

static rnode *rnode_get(rstate *s, uint64_t id, gd_err *err) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&s->idx, id, &fresh);
  if (!slot) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (!fresh)
    return &s->nodes[*slot - 1];
  const qinfo *in = qctx_info(&s->q, id, err);
  if (!in)
    return NULL;
  if (!qgrow(&s->nodes, &s->capnodes, s->nnodes, sizeof *s->nodes)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  rnode *n = &s->nodes[s->nnodes++];
  memset(n, 0, sizeof *n);
  n->id = id;
  n->type = in->type;
  /* Residual per neighbour, with the stored degree as the neighbour count. */
  n->threshold = s->eps * (double)(in->degree ? in->degree : 1);
  *slot = s->nnodes;
  return n;
}

/* Loads the walk's out-edges of node id. Returns it (the array may move). */
static rnode *rnode_load(rstate *s, uint64_t id, gd_err *err) {
  rnode *n = rnode_get(s, id, err);
  if (!n || n->loaded)
    return n;
  const gd_evidence_params *ev = &s->q.p->ev;
  bool seller = n->type == GD_TYPE_SELLER;
  uint32_t mask = seller ? s->q.p->type_mask : (1u << GD_TYPE_SELLER);
  if (qctx_links(&s->q, id, mask, &s->tmp, err))
    return NULL;
  wnbr *out = malloc((s->tmp.n ? s->tmp.n : 1) * sizeof *out);
  if (!out) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  size_t m = 0;
  double deg = 0;
  for (size_t i = 0; i < s->tmp.n; i++) {
    const gd_link *l = &s->tmp.v[i];
    double w;
    if (!seller || l->nbr_type == GD_TYPE_SELLER) {
      w = seller ? ev->type_weight[GD_TYPE_SELLER] : 1.0;
    } else {
      const qinfo *ei;
      if (qctx_evidence(&s->q, l->nbr, &ei, err)) {
        free(out);
        return NULL;
      }
      w = ei->hub ? 0 : ei->weight;
    }
    if (w <= 0)
      continue;
    out[m++] = (wnbr){l->nbr, w};
    deg += w;
  }
  n = &s->nodes[*gd_u64map_get(&s->idx, id) - 1];
  n->out = out;
  n->nout = m;
  n->deg = deg;
  n->loaded = true;
  return n;
}

static int enqueue(rstate *s, rnode *n, gd_err *err) {
  if (n->queued)
    return GD_OK;
  if (s->qlen == s->qcap) {
    size_t ncap = s->qcap ? s->qcap * 2 : 1024;
    uint64_t *nq = malloc(ncap * sizeof *nq);
    if (!nq)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->qlen; i++)
      nq[i] = s->queue[(s->qhead + i) % s->qcap];
    free(s->queue);
    s->queue = nq;
    s->qhead = 0;
    s->qcap = ncap;
  }
  s->queue[(s->qhead + s->qlen++) % s->qcap] = n->id;
  n->queued = true;
  return GD_OK;
}

static int push_all(rstate *s, double alpha, uint64_t max_pushes, gd_err *err) {
  uint64_t pushes = 0;
  while (s->qlen) {
    /* max_touched counts pushes here, so only the work bound and the
     * check hook are asked besides. */
    if ((max_pushes && pushes >= max_pushes) || qctx_work_bound(&s->q) || s->q.stop_rc) {
      s->q.truncated = true;
      break;
    }
    uint64_t id = s->queue[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    rnode *x = rnode_load(s, id, err);
    if (!x)
      return err->code;
    x->queued = false;
    double rx = x->r;
    if (rx < x->threshold)
      continue;
    pushes++;
    x->p += alpha * rx;
    x->r = 0;
    if (x->deg <= 0)
      continue; /* dangling: its walk ends here */
    double mass = (1 - alpha) * rx / x->deg;
    size_t nout = x->nout;
    wnbr *out = x->out;
    qctx_work(&s->q, nout + 1); /* the out-edges are cached: each push walks them */
    for (size_t i = 0; i < nout; i++) {
      rnode *y = rnode_get(s, out[i].id, err);
      if (!y)
        return err->code;
      y->r += mass * out[i].w;
      if (y->r >= y->threshold && enqueue(s, y, err))
        return err->code;
    }
  }
  s->q.touched = pushes;
  return GD_OK;
}

/* Deep-copies a linked seller (its steps and their evidence) into arena. */
static int linked_copy(gd_arena **arena, const gd_linked *src, gd_linked *dst) {
  *dst = *src;
  dst->steps = gd_arena_alloc(arena, src->hops * sizeof *dst->steps);
  if (!dst->steps)
    return GD_ENOMEM;
  for (unsigned h = 0; h < src->hops; h++) {
    const gd_step *st = &src->steps[h];
    dst->steps[h] = *st;
    dst->steps[h].shared = gd_arena_alloc(arena, (st->nshared + 1) * sizeof *st->shared);
    if (!dst->steps[h].shared)
      return GD_ENOMEM;
    if (st->nshared)
      memcpy(dst->steps[h].shared, st->shared, st->nshared * sizeof *st->shared);
  }
  return GD_OK;
}

static int cmp_suspect(const void *a, const void *b) {
  const gd_suspect *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return (x->seller > y->seller) - (x->seller < y->seller);
}

/*
 * Sellers the walk cannot reach: the unlabelled members of the latest
 * snapshot's clusters of 2 or more sellers that the walk left at mass 0.
 * Under the corroborated evidence rule such a cluster is a group held
 * together by evidence (a crowd on one entity never is), so its members
 * come before sellers in no group; larger groups first, then by id. No
 * snapshot: none. Two passes over the latest snapshot's assignments
 * (counted in touched), at most `room` kept.
 */
typedef struct group_item {
  uint64_t seller, cluster, size;
} group_item;

typedef struct group_list {
  group_item *v;
  size_t n, cap;
} group_list;

typedef struct group_ctx {
  rstate *s;
  const uint64_t *seeds;
  size_t nseeds;
  gd_u64map sizes; /* cluster id + 1 -> members */
  group_list *out;
  bool counting, oom;
} group_ctx;

static int group_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  group_ctx *g = ctx;
  g->s->q.touched += n;
  for (size_t i = 0; i < n; i++) {
    bool fresh;
    if (g->counting) {
      uint64_t *v = gd_u64map_put(&g->sizes, clusters[i] + 1, &fresh);
      if (!v) {
        g->oom = true;
        return -1;
      }
      (*v)++;
      continue;
    }
    uint64_t *size = gd_u64map_get(&g->sizes, clusters[i] + 1);
    if (!size || *size < 2)
      continue;
    uint64_t *slot = gd_u64map_get(&g->s->idx, sellers[i]);
    if (slot && g->s->nodes[*slot - 1].p > 0)
      continue; /* reached: ranked by its mass */
    if (bsearch(&sellers[i], g->seeds, g->nseeds, sizeof *g->seeds, gd_cmp_u64))
      continue; /* a seed */
    if (!qgrow(&g->out->v, &g->out->cap, g->out->n, sizeof *g->out->v)) {
      g->oom = true;
      return -1;
    }
    g->out->v[g->out->n++] = (group_item){sellers[i], clusters[i], *size};
  }
  return 0;
}

static int cmp_group(const void *a, const void *b) {
  const group_item *x = a, *y = b;
  if (x->size != y->size)
    return x->size > y->size ? -1 : 1;
  return (x->seller > y->seller) - (x->seller < y->seller);
}

static int unreached_groups(rstate *s, gd_rtxn *r, const uint64_t *seeds, size_t nseeds,
                            size_t room, group_list *ret, gd_err *err) {
  group_ctx g = {s, seeds, nseeds, {0}, ret, true, false};
  int rc = gd_store_assignments_visit(r, 0, 0, group_visit, &g, NULL, err);
  if (rc == GD_OK && !g.oom) {
    g.counting = false;
    rc = gd_store_assignments_visit(r, 0, 0, group_visit, &g, NULL, err);
  }
  gd_u64map_free(&g.sizes);
  if (g.oom)
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
  if (rc == GD_EPRECONDITION) { /* no snapshot yet */
    gd_err_clear(err);
    rc = GD_OK;
  }
  if (rc) {
    free(ret->v);
    memset(ret, 0, sizeof *ret);
    return rc;
  }
  if (ret->n > 1)
    qsort(ret->v, ret->n, sizeof *ret->v, cmp_group);
  if (ret->n > room)
    ret->n = room;
  return GD_OK;
}

int gd_query_suspects(gd_rtxn *r, const gd_str *labels, size_t nlabels, double alpha,
                      double epsilon, size_t limit, size_t max_nearest,
                      const gd_query_params *p, gd_suspects_result *ret, gd_err *err) {
  rstate s;
  uint64_t *seeds = NULL;
  size_t nseeds = 0;
  int rc = GD_OK;

  memset(ret, 0, sizeof *ret);
  memset(&s, 0, sizeof s);
  /* The walk's own bound is pushes; row reads are not bounded here. */
  gd_query_params walk = *p;
  walk.max_touched = 0;
  qctx_init(&s.q, r, &walk, &ret->arena);
  s.eps = epsilon;

  /* Seeds: sellers carrying any of the labels. */
  for (size_t i = 0; i < nlabels; i++) {
    uint64_t *ids;
    size_t n;
    if ((rc = gd_store_label_members(r, labels[i], &ids, &n, err)))
      goto out;
    uint64_t *ns = realloc(seeds, (nseeds + n + 1) * sizeof *ns);
    if (!ns) {
      free(ids);
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      goto out;
    }
    seeds = ns;
    if (n)
      memcpy(seeds + nseeds, ids, n * sizeof *ids);
    nseeds += n;
    free(ids);
  }
  if (nseeds > 1)
    qsort(seeds, nseeds, sizeof *seeds, gd_cmp_u64);
  size_t m = 0;
  for (size_t i = 0; i < nseeds; i++) {
    if (m && seeds[m - 1] == seeds[i])
      continue;
    const qinfo *in = qctx_info(&s.q, seeds[i], err);
    if (!in) {
      rc = err->code;
      goto out;
    }
    if (in->type == GD_TYPE_SELLER)
      seeds[m++] = seeds[i];
  }
  nseeds = m;
  if (nseeds == 0) {
    rc = gd_err_set(err, GD_EPRECONDITION, "seed_labels: no seller carries any of them");
    goto out;
  }
  for (size_t i = 0; i < nseeds; i++) {
    rnode *n = rnode_get(&s, seeds[i], err);
    if (!n) {
      rc = err->code;
      goto out;
    }
    n->seed = true;
    n->r = 1.0 / (double)nseeds;
    if ((rc = enqueue(&s, n, err)))
      goto out;
  }
  if ((rc = push_all(&s, alpha, p->max_touched, err)) || (rc = qctx_stopped(&s.q, err)))
    goto out;

  /* Rank the unlabelled sellers the walk reached... */
  size_t nwalk = 0;
  for (size_t i = 0; i < s.nnodes; i++) {
    rnode *x = &s.nodes[i];
    nwalk += x->type == GD_TYPE_SELLER && !x->seed && x->p > 0;
  }
  size_t n = 0, cap = nwalk < limit ? nwalk : limit;
  group_list grp = {0};
  if (nwalk < limit && (rc = unreached_groups(&s, r, seeds, nseeds, limit - nwalk, &grp, err)))
    goto out;
  gd_suspect *sus = gd_arena_alloc(&ret->arena, (nwalk + grp.n + 1) * sizeof *sus);
  if (!sus) {
    free(grp.v);
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < s.nnodes; i++) {
    rnode *x = &s.nodes[i];
    if (x->type == GD_TYPE_SELLER && !x->seed && x->p > 0)
      sus[n++] = (gd_suspect){x->id, x->p, NULL, 0, 0, 0};
  }
  if (n > 1)
    qsort(sus, n, sizeof *sus, cmp_suspect);
  n = cap;
  /* ...then, with room left, the members of groups it did not reach. */
  for (size_t i = 0; i < grp.n && n < limit; i++)
    sus[n++] = (gd_suspect){grp.v[i].seller, 0.0, NULL, 0, grp.v[i].cluster, grp.v[i].size};
  free(grp.v);

  /* Evidence: labelled sellers within two steps of each of the first
   * NEAREST_SUSPECTS suspects. Each search runs in a scratch arena with a
   * small work bound; only the few labelled results are copied out. */
  gd_query_params near = *p;
  near.max_touched = NEAREST_TOUCH_BOUND;
  for (size_t i = 0; i < cap && i < NEAREST_SUSPECTS && max_nearest; i++) {
    gd_arena *scratch = NULL;
    gd_linked_result lr;
    if ((rc = gd__query_linked_in(r, sus[i].seller, 2, &near, SIZE_MAX, 0, &scratch, &lr,
                                  err))) {
      gd_arena_free(scratch);
      goto out;
    }
    gd_linked *best = gd_arena_alloc(&ret->arena, max_nearest * sizeof *best);
    size_t k = 0;
    bool oom = !best;
    for (size_t j = 0; !oom && j < lr.n && k < max_nearest; j++) {
      if (!bsearch(&lr.sellers[j].seller, seeds, nseeds, sizeof *seeds, gd_cmp_u64))
        continue;
      if (linked_copy(&ret->arena, &lr.sellers[j], &best[k]))
        oom = true;
      else
        k++;
    }
    gd_arena_free(scratch);
    if (oom) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      goto out;
    }
    sus[i].nearest = best;
    sus[i].nnearest = k;
  }
  ret->suspects = sus;
  ret->n = n;
  ret->seeds = nseeds;
  ret->truncated = s.q.truncated;
  ret->work_bound = qctx_work_bound(&s.q);
  ret->touched = s.q.touched;
out:
  for (size_t i = 0; i < s.nnodes; i++)
    free(s.nodes[i].out);
  free(s.nodes);
  free(s.tmp.v);
  free(s.queue);
  free(seeds);
  gd_u64map_free(&s.idx);
  qctx_free(&s.q);
  if (rc) {
    gd_arena_free(ret->arena);
    memset(ret, 0, sizeof *ret);
  }
  return rc;
}

void gd_suspects_result_free(gd_suspects_result *res) {
  if (res) {
    gd_arena_free(res->arena);
    memset(res, 0, sizeof *res);
  }
}
