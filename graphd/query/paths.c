/*
 * FindPaths: the k shortest simple paths between two entities.
 *
 * A breadth-first search from `to`, to half the hop limit, gives every
 * entity's distance from `to` (exact within that half, and a lower bound
 * of "half + 1" beyond it). A depth-first enumeration from `from`
 * then looks for paths of length L = 1, 2, ... max_hops, cutting every
 * branch that cannot reach `to` within L; entities are visited in (type,
 * id) order, so the paths come out shortest first and deterministic. Hubs
 * are never entered (an endpoint may be one). The work bound counts
 * adjacency rows read.
 */
#include <string.h>

#include "query/query_int.h"

typedef struct pnode {
  uint64_t id;
  int dist_t; /* from `to`; -1 = not reached */
  bool hub, loaded, on_path;
  gd_link *adj; /* malloc'd */
  size_t nadj;
} pnode;

typedef struct pstate {
  qctx q;
  uint64_t from, to;
  size_t k;
  unsigned max_hops, half_t;
  pnode *nodes;
  size_t nnodes, capnodes;
  gd_u64map idx;
  qlinks tmp;
  /* the path being built */
  uint64_t *stack;
  gd_link *stack_links;
  /* results */
  gd_path *paths;
  size_t npaths;
} pstate;

static pnode *pnode_get(pstate *s, uint64_t id, gd_err *err) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&s->idx, id, &fresh);
  if (!slot) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (!fresh)
    return &s->nodes[*slot - 1];
  const qinfo *in;
  if (qctx_evidence(&s->q, id, &in, err))
    return NULL;
  bool hub = (in->hub || in->context) && id != s->from && id != s->to;
  if (hub && qctx_hub(&s->q, in, err))
    return NULL;
  if (!qgrow(&s->nodes, &s->capnodes, s->nnodes, sizeof *s->nodes)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  pnode *n = &s->nodes[s->nnodes++];
  *n = (pnode){id, -1, hub, false, false, NULL, 0};
  *slot = s->nnodes;
  return n;
}

/* Loads a node's links (once). Returns the node again (the array may move). */
static pnode *pnode_load(pstate *s, uint64_t id, gd_err *err) {
  pnode *n = pnode_get(s, id, err);
  if (!n || n->loaded)
    return n;
  if (qctx_links(&s->q, id, 0, &s->tmp, err))
    return NULL;
  n = &s->nodes[*gd_u64map_get(&s->idx, id) - 1];
  n->adj = malloc((s->tmp.n ? s->tmp.n : 1) * sizeof *n->adj);
  if (!n->adj) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (s->tmp.n)
    memcpy(n->adj, s->tmp.v, s->tmp.n * sizeof *n->adj);
  n->nadj = s->tmp.n;
  n->loaded = true;
  return n;
}

/* Breadth-first search from `to` for `depth` levels, filling dist_t.
 * Hubs are reached but not expanded. */
static int bfs(pstate *s, uint64_t src, unsigned depth, gd_err *err) {
  uint64_t *cur = malloc(sizeof *cur), *next = NULL;
  size_t ncur = 1, capcur = 1, nnext = 0, capnext = 0;
  int rc = GD_OK;
  pnode *n = pnode_get(s, src, err);
  if (!cur || !n) {
    free(cur);
    return n ? gd_err_set(err, GD_ENOMEM, "out of memory") : err->code;
  }
  cur[0] = src;
  n->dist_t = 0;
  for (unsigned d = 0; d < depth && ncur && !qctx_over(&s->q); d++) {
    nnext = 0;
    for (size_t i = 0; i < ncur && !qctx_over(&s->q); i++) {
      pnode *x = pnode_get(s, cur[i], err);
      if (x && x->hub)
        continue; /* reached, never expanded: its links are not read */
      if (x)
        x = pnode_load(s, cur[i], err);
      if (!x) {
        rc = err->code;
        goto out;
      }
      size_t nadj = x->nadj;
      gd_link *adj = x->adj;
      qctx_work(&s->q, nadj);
      for (size_t j = 0; j < nadj; j++) {
        pnode *y = pnode_get(s, adj[j].nbr, err);
        if (!y) {
          rc = err->code;
          goto out;
        }
        if (y->dist_t >= 0)
          continue;
        y->dist_t = (int)d + 1;
        if (!qgrow(&next, &capnext, nnext, sizeof *next)) {
          rc = gd_err_set(err, GD_ENOMEM, "out of memory");
          goto out;
        }
        next[nnext++] = adj[j].nbr;
      }
    }
    uint64_t *t = cur;
    cur = next;
    next = t;
    size_t tc = capcur;
    capcur = capnext;
    capnext = tc;
    ncur = nnext;
  }
out:
  free(cur);
  free(next);
  return rc;
}

static int emit(pstate *s, size_t len, gd_err *err) {
  gd_path *p = &s->paths[s->npaths];
  p->ids = gd_arena_alloc(s->q.arena, (len + 1) * sizeof *p->ids);
  p->links = gd_arena_alloc(s->q.arena, (len ? len : 1) * sizeof *p->links);
  if (!p->ids || !p->links)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memcpy(p->ids, s->stack, (len + 1) * sizeof *p->ids);
  memcpy(p->links, s->stack_links, len * sizeof *p->links);
  p->len = len;
  s->npaths++;
  return GD_OK;
}

/* Lower bound on the distance from node to `to`. */
static int lower_bound(const pstate *s, const pnode *n) {
  return n->dist_t >= 0 ? n->dist_t : (int)s->half_t + 1;
}

static int dfs(pstate *s, uint64_t x, unsigned depth, unsigned len, gd_err *err) {
  if (x == s->to)
    return depth == len ? emit(s, len, err) : GD_OK;
  pnode *n = pnode_get(s, x, err);
  if (n && (n->hub || qctx_over(&s->q)))
    return GD_OK;
  if (n)
    n = pnode_load(s, x, err);
  if (!n)
    return err->code;
  n->on_path = true;
  size_t nadj = n->nadj;
  gd_link *adj = n->adj; /* stable: owned by the node, not the array */
  int rc = GD_OK;
  for (size_t j = 0; j < nadj && s->npaths < s->k && !qctx_over(&s->q); j++) {
    qctx_work(&s->q, 1); /* the adjacency is cached: each visit is work */
    pnode *y = pnode_get(s, adj[j].nbr, err);
    if (!y) {
      rc = err->code;
      break;
    }
    if (y->on_path || (y->hub && y->id != s->to))
      continue;
    if (depth + 1 + (unsigned)lower_bound(s, y) > len)
      continue;
    s->stack[depth + 1] = adj[j].nbr;
    s->stack_links[depth] = adj[j];
    if ((rc = dfs(s, adj[j].nbr, depth + 1, len, err)))
      break;
  }
  s->nodes[*gd_u64map_get(&s->idx, x) - 1].on_path = false;
  return rc;
}

int gd_query_paths(gd_rtxn *r, uint64_t from, uint64_t to, size_t k, unsigned max_hops,
                   const gd_query_params *p, gd_paths_result *ret, gd_err *err) {
  pstate s;
  int rc;

  memset(ret, 0, sizeof *ret);
  memset(&s, 0, sizeof s);
  qctx_init(&s.q, r, p, &ret->arena);
  s.from = from;
  s.to = to;
  s.k = k;
  s.max_hops = max_hops;
  s.half_t = max_hops / 2;

  if (!qctx_info(&s.q, from, err)) {
    rc = gd_err_prefix(err, "from");
    goto out;
  }
  if (!qctx_info(&s.q, to, err)) {
    rc = gd_err_prefix(err, "to");
    goto out;
  }
  s.stack = malloc((max_hops + 1) * sizeof *s.stack);
  s.stack_links = malloc((max_hops + 1) * sizeof *s.stack_links);
  s.paths = gd_arena_alloc(&ret->arena, (k ? k : 1) * sizeof *s.paths);
  if (!s.stack || !s.stack_links || !s.paths) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = bfs(&s, to, s.half_t, err)))
    goto out;
  s.stack[0] = from;
  for (unsigned len = 1; len <= max_hops && s.npaths < k && !qctx_over(&s.q); len++)
    if ((rc = dfs(&s, from, 0, len, err)))
      goto out;
  if ((rc = qctx_stopped(&s.q, err)))
    goto out;
  ret->paths = s.paths;
  ret->n = s.npaths;
  if ((rc = qctx_hubs_out(&s.q, &ret->hubs, &ret->nhubs, err)))
    goto out;
  ret->truncated = s.q.truncated;
  ret->work_bound = qctx_work_bound(&s.q);
  ret->touched = s.q.touched;
out:
  for (size_t i = 0; i < s.nnodes; i++)
    free(s.nodes[i].adj);
  free(s.nodes);
  free(s.tmp.v);
  free(s.stack);
  free(s.stack_links);
  gd_u64map_free(&s.idx);
  qctx_free(&s.q);
  if (rc) {
    gd_arena_free(ret->arena);
    memset(ret, 0, sizeof *ret);
  }
  return rc;
}

void gd_paths_result_free(gd_paths_result *res) {
  if (res) {
    gd_arena_free(res->arena);
    memset(res, 0, sizeof *res);
  }
}
