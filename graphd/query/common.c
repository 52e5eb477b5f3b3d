/* Shared pieces of the query layer: growable arrays, the entity info
 * cache, hub bookkeeping and link collection. */
#include "query/query_int.h"

#include <pthread.h>
#include <string.h>

bool qgrow(void *arrp, size_t *cap, size_t n, size_t elem) {
  void *old, *nv;
  if (n < *cap)
    return true;
  size_t ncap = *cap ? *cap * 2 : 64;
  memcpy(&old, arrp, sizeof old);
  if (!(nv = realloc(old, ncap * elem)))
    return false;
  memcpy(arrp, &nv, sizeof nv);
  *cap = ncap;
  return true;
}

void gd_query_params_default(gd_query_params *p) {
  memset(p, 0, sizeof *p);
  gd_evidence_defaults(&p->ev);
}

static struct icache *icache_get(const uint64_t state[2]);

void qctx_init(qctx *q, gd_rtxn *r, const gd_query_params *p, gd_arena **arena) {
  memset(q, 0, sizeof *q);
  q->r = r;
  q->p = p;
  q->arena = arena;
  gd_err_clear(&q->stop_err);
  gd_rtxn_state(r, q->state);
  q->ic = icache_get(q->state);
  qctx_check_slow(q);
}

void qctx_check_slow(qctx *q) {
  q->next_check = q->work + GD_QUERY_CHECK_EVERY;
  if (q->stop_rc || !q->p->check)
    return;
  int rc = q->p->check(q->p->check_ctx, &q->stop_err);
  if (rc) {
    q->stop_rc = rc;
    q->truncated = true;
  }
}

static int links_in(qctx *q, uint64_t id, uint32_t type_mask, int64_t since, int64_t until,
                    qlinks *out, gd_err *err);

struct qlinks_buf {
  qlinks sellers, links;
  gd_u64map count;   /* other entity id -> users among the sample so far */
  gd_u64map sample;  /* sampled seller id -> 1 once read */
};

static void qlinks_buf_free(qlinks_buf *b) {
  if (!b)
    return;
  free(b->sellers.v);
  free(b->links.v);
  gd_u64map_free(&b->count);
  gd_u64map_free(&b->sample);
  free(b);
}

void qctx_free(qctx *q) {
  free(q->full.v);
  qlinks_buf_free(q->cbuf);
  free(q->elists);
  free(q->epool);
  gd_u64map_free(&q->info_idx);
  gd_u64map_free(&q->hub_idx);
  free(q->infos);
  free(q->hubs);
}

/*
 * The entity cache, one per thread: what qctx_info reads of an entity
 * (type, seller count, degree) and whole adjacency lists of up to
 * GD_ICACHE_LIST links, each with the id of the transaction it was read
 * in. An entry read at R serves a query reading at T when the store's
 * version bound for the entity (store.h, gd_rtxn_version) is <= min(R, T),
 * so, unlike the corroboration memo below, a commit invalidates only what
 * it changed. A cached list is visited as the store would have been
 * (gd_links_visit_list), rows charged alike, so replies, truncation
 * included, are the same whether the cache served them or not. Bounded:
 * GD_ICACHE_MAX entities and GD_ICACHE_LINKS links a thread (about 10
 * MiB), then it starts over; another store (serial) empties it too.
 */
#define GD_ICACHE_MAX 65536
#define GD_ICACHE_LINKS (1u << 18)
#define GD_ICACHE_LIST 4096
#define GD_ICACHE_BYTES (1u << 22) /* brief views' keys and labels */

/* One cache line an entity (the array is line-aligned): a lookup that
 * hits costs the index slot's line and this one. */
typedef struct ic_ent {
  uint64_t info_at, list_at; /* txn ids they were read in; 0 = not held */
  uint64_t sellers, degree;
  /* The brief view (gd_query_entity_brief), read with the info: times,
   * and the key and labels back to back in bytes at boff (IC_NO_BRIEF:
   * not held). */
  int64_t first_seen, last_seen;
  uint32_t loff, ln; /* the list: links[loff .. loff + ln) */
  uint32_t boff;
  uint16_t klen;
  uint8_t nlabels; /* <= GD_LABELS_MAX */
  int8_t type;
} ic_ent;

#define IC_NO_BRIEF UINT32_MAX
#define IC_LINE 64
_Static_assert(sizeof(ic_ent) == IC_LINE, "an entry is one cache line");
_Static_assert(GD_ICACHE_BYTES < IC_NO_BRIEF && GD_ICACHE_LINKS <= UINT32_MAX &&
                   GD_LABELS_MAX <= UINT8_MAX && GD_TYPE_MAX <= INT8_MAX,
               "ic_ent's narrow fields hold what they are given");

struct icache {
  uint64_t serial;
  gd_u64map idx; /* entity id -> index + 1 into v */
  ic_ent *v;     /* GD_ICACHE_MAX, line-aligned */
  size_t n;
  gd_link *links; /* GD_ICACHE_LINKS */
  size_t nlinks;
  uint8_t *bytes; /* GD_ICACHE_BYTES */
  size_t nbytes;
};

static pthread_key_t icache_key;
static pthread_once_t icache_once = PTHREAD_ONCE_INIT;
static bool icache_ok;

static void icache_free(void *p) {
  struct icache *c = p;
  if (!c)
    return;
  gd_u64map_free(&c->idx);
  free(c->v);
  free(c->links);
  free(c->bytes);
  free(c);
}

static void icache_init(void) { icache_ok = pthread_key_create(&icache_key, icache_free) == 0; }

static void icache_clear(struct icache *c) {
  gd_u64map_clear(&c->idx);
  c->n = 0;
  c->nlinks = 0;
  c->nbytes = 0;
}

/* This thread's cache for the store of state[0]; NULL (no cache) on out
 * of memory. */
static struct icache *icache_get(const uint64_t state[2]) {
  pthread_once(&icache_once, icache_init);
  if (!icache_ok)
    return NULL;
  struct icache *c = pthread_getspecific(icache_key);
  if (!c) {
    if (!(c = calloc(1, sizeof *c)) || !(c->links = malloc(GD_ICACHE_LINKS * sizeof *c->links)) ||
        !(c->bytes = malloc(GD_ICACHE_BYTES)) ||
        !(c->v = aligned_alloc(IC_LINE, GD_ICACHE_MAX * sizeof *c->v)) ||
        pthread_setspecific(icache_key, c) != 0) {
      if (c) {
        free(c->links);
        free(c->bytes);
        free(c->v);
      }
      free(c);
      return NULL;
    }
  }
  if (c->serial != state[0]) {
    icache_clear(c);
    c->serial = state[0];
  }
  return c;
}

/* The entry of id in c, made if missing (NULL: no room, or no cache). */
static ic_ent *icache_ent(struct icache *c, uint64_t id, bool make) {
  if (!c)
    return NULL;
  uint64_t *slot = gd_u64map_get(&c->idx, id);
  if (slot)
    return &c->v[*slot - 1];
  if (!make)
    return NULL;
  if (c->n >= GD_ICACHE_MAX)
    icache_clear(c);
  bool fresh;
  if (!(slot = gd_u64map_put(&c->idx, id, &fresh)))
    return NULL;
  ic_ent *e = &c->v[c->n];
  memset(e, 0, sizeof *e);
  e->boff = IC_NO_BRIEF;
  *slot = ++c->n;
  return e;
}

static bool icache_valid(const qctx *q, uint64_t id, uint64_t at) {
  return gd_rtxn_fresh(q->r, id, at);
}

/* Bytes of v's labels as the record holds them (gd_entity_label). */
static size_t labels_len(const gd_entity_view *v) {
  size_t n = 0;
  for (size_t i = 0; i < v->nlabels; i++)
    n += 2 + gd_entity_label(v, i).n;
  return n;
}

/* Keeps what v (read in txn) says of its entity in c: the info, and the
 * brief view when its key and labels fit. Returns the entry or NULL. */
static ic_ent *icache_keep(struct icache *c, uint64_t txn, const gd_entity_view *v) {
  if (!c)
    return NULL;
  size_t lab = labels_len(v), need = v->key.n + lab;
  if (need <= GD_ICACHE_BYTES && c->nbytes + need > GD_ICACHE_BYTES)
    icache_clear(c); /* lists go too: they are read again when asked */
  ic_ent *ce = icache_ent(c, v->id, true);
  if (!ce)
    return NULL;
  ce->info_at = txn;
  ce->type = (int8_t)v->type;
  ce->sellers = v->seller_count;
  ce->degree = v->degree;
  ce->boff = IC_NO_BRIEF;
  if (need <= GD_ICACHE_BYTES && v->key.n <= UINT16_MAX) {
    if (v->key.n)
      memcpy(c->bytes + c->nbytes, v->key.p, v->key.n);
    if (lab)
      memcpy(c->bytes + c->nbytes + v->key.n, v->labels_raw, lab);
    ce->first_seen = v->first_seen;
    ce->last_seen = v->last_seen;
    ce->boff = (uint32_t)c->nbytes;
    ce->klen = (uint16_t)v->key.n;
    ce->nlabels = (uint8_t)v->nlabels;
    c->nbytes += need;
  }
  return ce;
}

void qctx_prefetch(const qctx *q, uint64_t id) {
  gd_u64map_prefetch(&q->info_idx, id);
  if (q->ic)
    gd_u64map_prefetch(&q->ic->idx, id);
}

const qinfo *qctx_info(qctx *q, uint64_t id, gd_err *err) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&q->info_idx, id, &fresh);
  if (!slot) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (!fresh)
    return &q->infos[*slot - 1];
  ic_ent *ce = icache_ent(q->ic, id, false);
  int type;
  uint64_t sellers, degree;
  if (ce && icache_valid(q, id, ce->info_at)) {
    type = ce->type;
    sellers = ce->sellers;
    degree = ce->degree;
  } else {
    gd_entity_view v;
    gd_ref ref = {id, 0, GD_STR_NULL};
    /* Errors end the whole query, so the half-made slot is never read. */
    if (gd_store_get(q->r, &ref, &v, err))
      return NULL;
    type = v.type;
    sellers = v.seller_count;
    degree = v.degree;
    (void)icache_keep(q->ic, q->state[1], &v);
  }
  if (!qgrow(&q->infos, &q->capinfo, q->ninfo, sizeof *q->infos)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  qinfo *in = &q->infos[q->ninfo++];
  memset(in, 0, sizeof *in);
  in->id = id;
  in->type = type;
  in->sellers = sellers;
  in->degree = degree;
  in->cap = GD_TYPE_VALID(type) ? q->p->ev.hub_cap[type] : 0;
  /* Direct seller-seller links are never hubs: a seller is not shared. */
  in->hub = type != GD_TYPE_SELLER && gd_is_hub(&q->p->ev, type, sellers);
  *slot = q->ninfo;
  return in;
}

int qctx_sellers(qctx *q, size_t info, const gd_link **ret, size_t *ret_n, gd_err *err) {
  if (!q->infos[info].elist) {
    if (!q->cbuf && !(q->cbuf = calloc(1, sizeof *q->cbuf)))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    qlinks *tmp = &q->cbuf->sellers;
    int rc = qctx_links(q, q->infos[info].id, 1u << GD_TYPE_SELLER, tmp, err);
    if (rc)
      return rc;
    if (!qgrow(&q->elists, &q->capelists, q->nelists, sizeof *q->elists))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    while (q->capepool < q->nepool + tmp->n)
      if (!qgrow(&q->epool, &q->capepool, q->capepool, sizeof *q->epool))
        return gd_err_set(err, GD_ENOMEM, "out of memory");
    if (tmp->n)
      memcpy(q->epool + q->nepool, tmp->v, tmp->n * sizeof *q->epool);
    q->elists[q->nelists] = (struct qelist){q->nepool, tmp->n};
    q->nepool += tmp->n;
    q->infos[info].elist = ++q->nelists;
  }
  const struct qelist *el = &q->elists[q->infos[info].elist - 1];
  *ret = q->epool + el->off;
  *ret_n = el->n;
  return GD_OK;
}

/*
 * Corroboration memo, one per thread. c of an entity is a function of the
 * graph a read transaction sees (gd_rtxn_graph_state: entities and links)
 * and of the evidence parameters alone, so a value computed by one query
 * is exact for any later query on the same graph with the same parameters:
 * an investigator walking a ring meets its warehouse and devices again and
 * again. A commit that changes the graph names a new one and empties the
 * memo, so it saves work between writes; commits of other tables (the
 * audit records of reads, above all) leave it. A hit charges the work the computation did
 * (rows read into touched, steps into the work bound), so replies,
 * truncation included, are the same whether the value came from the memo
 * or not. At most GD_CMEMO_MAX entries a thread (then it starts over):
 * about 40 bytes each.
 */
#define GD_CMEMO_MAX 65536

typedef struct cmemo_ent {
  double c;
  uint64_t touched, work; /* what computing it charged */
} cmemo_ent;

typedef struct cmemo {
  uint64_t state[2];
  gd_evidence_params ev;
  gd_u64map idx; /* entity id -> index + 1 into v */
  cmemo_ent *v;
  size_t n, cap;
} cmemo;

static pthread_key_t cmemo_key;
static pthread_once_t cmemo_once = PTHREAD_ONCE_INIT;
static bool cmemo_ok;

static void cmemo_free(void *p) {
  cmemo *m = p;
  if (!m)
    return;
  gd_u64map_free(&m->idx);
  free(m->v);
  free(m);
}

static void cmemo_init(void) { cmemo_ok = pthread_key_create(&cmemo_key, cmemo_free) == 0; }

static bool ev_same(const gd_evidence_params *a, const gd_evidence_params *b) {
  return a->rule == b->rule && memcmp(a->hub_cap, b->hub_cap, sizeof a->hub_cap) == 0 &&
         memcmp(a->type_weight, b->type_weight, sizeof a->type_weight) == 0;
}

/* This thread's memo, emptied unless it holds q's state and parameters;
 * NULL (no memo, compute) on out of memory. */
static cmemo *cmemo_get(qctx *q) {
  pthread_once(&cmemo_once, cmemo_init);
  if (!cmemo_ok)
    return NULL;
  cmemo *m = pthread_getspecific(cmemo_key);
  if (!m) {
    if (!(m = calloc(1, sizeof *m)))
      return NULL;
    if (pthread_setspecific(cmemo_key, m) != 0) {
      free(m);
      return NULL;
    }
  }
  if (!q->have_gstate) {
    gd_err e2;
    if (gd_rtxn_graph_state(q->r, q->gstate, &e2))
      return NULL; /* compute: exact either way */
    q->have_gstate = true;
  }
  const uint64_t *st = q->gstate;
  if (m->state[0] != st[0] || m->state[1] != st[1] || !ev_same(&m->ev, &q->p->ev) ||
      m->n >= GD_CMEMO_MAX) {
    gd_u64map_clear(&m->idx);
    m->n = 0;
    memcpy(m->state, st, sizeof m->state);
    m->ev = q->p->ev;
  }
  return m;
}

static void cmemo_put(cmemo *m, uint64_t id, const cmemo_ent *e) {
  bool fresh;
  if (!qgrow(&m->v, &m->cap, m->n, sizeof *m->v))
    return; /* not kept: computed again next time */
  uint64_t *slot = gd_u64map_put(&m->idx, id, &fresh);
  if (!slot || !fresh)
    return;
  m->v[m->n] = *e;
  *slot = ++m->n;
}

/* Corroboration of entity infos[info] (evidence.h) over its first
 * GD_EV_SAMPLE sellers, over all time. */
static int corroboration(qctx *q, size_t info, double *ret, gd_err *err) {
  uint64_t id = q->infos[info].id;
  const gd_evidence_params *ev = &q->p->ev;
  int rc;
  *ret = 0;
  if (!q->cbuf && !(q->cbuf = calloc(1, sizeof *q->cbuf)))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  qlinks_buf *b = q->cbuf;
  if (!q->population && (rc = gd_store_count(q->r, GD_TYPE_SELLER, &q->population, err)))
    return rc;
  /* Over all time, whatever the query's window: like the seller count,
   * corroboration says what an entity is, and the window only chooses the
   * links followed (a ring's links fall in different windows). Without a
   * window that is the list the query follows too: read once. */
  const gd_link *sl;
  size_t nsl;
  if (!q->p->since && !q->p->until) {
    if ((rc = qctx_sellers(q, info, &sl, &nsl, err)))
      return rc;
  } else {
    if ((rc = links_in(q, id, 1u << GD_TYPE_SELLER, 0, 0, &b->sellers, err)))
      return rc;
    sl = b->sellers.v;
    nsl = b->sellers.n;
  }
  cmemo *memo = cmemo_get(q);
  const uint64_t *hit = memo ? gd_u64map_get(&memo->idx, id) : NULL;
  if (hit) {
    const cmemo_ent *e = &memo->v[*hit - 1];
    q->touched += e->touched;
    qctx_work(q, e->work);
    *ret = e->c;
    return GD_OK;
  }
  uint64_t touched0 = q->touched, work0 = q->work;
  gd_u64map_clear(&b->count);
  gd_u64map_clear(&b->sample);
  size_t k = 0;
  bool fresh;
  for (size_t i = 0; i < nsl && k < GD_EV_SAMPLE; i++) {
    uint64_t *v = gd_u64map_put(&b->sample, sl[i].nbr, &fresh);
    if (!v)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    k += fresh;
  }
  gd_corroboration cb;
  gd_corroboration_begin(&cb, (int64_t)k, q->population);
  /* Seller by seller in sample order, as the projection does, until c is
   * 1 whatever the rest would add. */
  for (size_t i = 0, taken = 0; i < nsl && taken < k && !gd_corroboration_full(&cb);
       i++) {
    uint64_t sid = sl[i].nbr;
    uint64_t *mark = gd_u64map_get(&b->sample, sid);
    if (!mark || *mark)
      continue; /* a seller listed twice (cannot happen: one row per pair) */
    *mark = 1;
    taken++;
    /* Every type, whatever the query follows: corroboration is a property
     * of the entity, as in the projection. */
    qlinks *ls = &b->links;
    if ((rc = links_in(q, sid, 0, 0, 0, ls, err)))
      return rc;
    int64_t direct = 0;
    for (size_t j = 0; j < ls->n; j++) {
      const gd_link *l = &ls->v[j];
      if (l->nbr == id)
        continue;
      if (l->nbr_type == GD_TYPE_SELLER) {
        direct += l->nbr > sid && gd_u64map_get(&b->sample, l->nbr) != NULL;
        continue;
      }
      uint64_t *c = gd_u64map_put(&b->count, l->nbr, &fresh);
      if (!c)
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      uint32_t m = (*c)++;
      if (m == 0)
        continue; /* its first user: nothing to corroborate yet */
      const qinfo *fi = qctx_info(q, l->nbr, err); /* read once, at its second user */
      if (!fi)
        return err->code;
      gd_corroboration_use(&cb, ev, fi->type, fi->sellers, m);
    }
    gd_corroboration_links(&cb, ev, direct);
  }
  *ret = gd_corroboration_end(&cb);
  if (memo)
    cmemo_put(memo, id, &(cmemo_ent){*ret, q->touched - touched0, q->work - work0});
  return GD_OK;
}

int qctx_evidence(qctx *q, uint64_t id, const qinfo **ret, gd_err *err) {
  const qinfo *in = qctx_info(q, id, err);
  if (!in)
    return err->code;
  if (in->ev_done) {
    *ret = in;
    return GD_OK;
  }
  const gd_evidence_params *ev = &q->p->ev;
  size_t idx = (size_t)(in - q->infos);
  int type = in->type;
  uint64_t n = in->sellers;
  double c = 0;
  if (type != GD_TYPE_SELLER && gd_evidence_needs_corroboration(ev, type, n)) {
    int rc = corroboration(q, idx, &c, err);
    if (rc)
      return rc;
  }
  qinfo *w = &q->infos[idx]; /* qctx_info may have moved the array */
  w->corroboration = c;
  w->weight = gd_evidence_weight(ev, type, n, c);
  w->context = type != GD_TYPE_SELLER && !w->hub && gd_evidence_is_context(ev, type, n, c);
  w->ev_done = true;
  *ret = w;
  return GD_OK;
}

int gd_query_evidence(gd_rtxn *r, uint64_t id, const gd_query_params *p, gd_evidence_info *ret,
                      gd_err *err) {
  qctx q;
  const qinfo *in;
  memset(ret, 0, sizeof *ret);
  qctx_init(&q, r, p, NULL);
  int rc = qctx_evidence(&q, id, &in, err);
  if (rc == GD_OK)
    rc = qctx_stopped(&q, err);
  if (rc == GD_OK)
    *ret = (gd_evidence_info){in->weight, in->corroboration, in->hub, in->context};
  qctx_free(&q);
  return rc;
}

int qctx_hub(qctx *q, const qinfo *in, gd_err *err) {
  bool fresh;
  uint64_t *slot = gd_u64map_put(&q->hub_idx, in->id, &fresh);
  if (!slot)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if (!fresh)
    return GD_OK;
  if (!qgrow(&q->hubs, &q->caphubs, q->nhubs, sizeof *q->hubs))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  q->hubs[q->nhubs++] = (gd_hub){in->id,      in->type,    in->sellers,
                                 in->cap,     in->context, in->context ? in->corroboration : 0};
  return GD_OK;
}

static int cmp_hub(const void *a, const void *b) {
  const gd_hub *x = a, *y = b;
  if (x->sellers != y->sellers)
    return x->sellers > y->sellers ? -1 : 1;
  return (x->entity > y->entity) - (x->entity < y->entity);
}

int qctx_hubs_out(qctx *q, gd_hub **ret, size_t *ret_n, gd_err *err) {
  *ret = NULL;
  *ret_n = 0;
  if (!q->nhubs)
    return GD_OK;
  gd_hub *h = gd_arena_alloc(q->arena, q->nhubs * sizeof *h);
  if (!h)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memcpy(h, q->hubs, q->nhubs * sizeof *h);
  if (q->nhubs > 1)
    qsort(h, q->nhubs, sizeof *h, cmp_hub);
  *ret = h;
  *ret_n = q->nhubs;
  return GD_OK;
}

static int collect(void *ctx, const gd_link *l) {
  qlinks *out = ctx;
  if (!qgrow(&out->v, &out->cap, out->n, sizeof *out->v)) {
    out->oom = true;
    return -1;
  }
  out->v[out->n++] = *l;
  return 0;
}

/* Entity id's whole adjacency list from the cache, read into it first
 * when it is small enough (its degree at most GD_ICACHE_LIST); false when
 * the caller must read the store itself (too long, no cache, an error:
 * the store's own read reports it). */
static bool cached_list(qctx *q, uint64_t id, const gd_link **ret, size_t *ret_n) {
  struct icache *c = q->ic;
  if (!c)
    return false;
  ic_ent *ce = icache_ent(c, id, false);
  if (ce && icache_valid(q, id, ce->list_at)) {
    *ret = c->links + ce->loff;
    *ret_n = ce->ln;
    return true;
  }
  /* Its degree, from what this query or the cache knows, else the store
   * (not through qctx_info: a missing entity must fail nothing here). */
  gd_err e2;
  uint64_t degree;
  const uint64_t *slot = gd_u64map_get(&q->info_idx, id);
  if (slot && *slot) {
    degree = q->infos[*slot - 1].degree;
  } else if (ce && icache_valid(q, id, ce->info_at)) {
    degree = ce->degree;
  } else {
    gd_entity_view v;
    gd_ref ref = {id, 0, GD_STR_NULL};
    if (gd_store_get(q->r, &ref, &v, &e2))
      return false;
    degree = v.degree;
  }
  if (degree > GD_ICACHE_LIST)
    return false;
  q->full.n = 0;
  q->full.oom = false;
  if (gd_store_visit_links(q->r, id, 0, 0, 0, collect, &q->full, NULL, &e2) || q->full.oom)
    return false;
  size_t n = q->full.n;
  if (c->nlinks + n > GD_ICACHE_LINKS)
    icache_clear(c); /* qctx_info's entry goes too: it is read again next time */
  if (!(ce = icache_ent(c, id, true)) || n > GD_ICACHE_LINKS) {
    *ret = q->full.v;
    *ret_n = n;
    return true;
  }
  if (n) /* an empty list has no buffer: q->full.v may be NULL */
    memcpy(c->links + c->nlinks, q->full.v, n * sizeof *c->links);
  ce->loff = (uint32_t)c->nlinks;
  ce->ln = (uint32_t)n;
  ce->list_at = q->state[1];
  c->nlinks += n;
  *ret = c->links + ce->loff;
  *ret_n = n;
  return true;
}

/* qctx_links over [since, until] (0 = open). */
static int links_in(qctx *q, uint64_t id, uint32_t type_mask, int64_t since, int64_t until,
                    qlinks *out, gd_err *err) {
  out->n = 0;
  out->oom = false;
  uint64_t before = q->touched;
  const gd_link *all;
  size_t n;
  int rc = GD_OK;
  if (cached_list(q, id, &all, &n))
    gd_links_visit_list(all, n, type_mask, since, until, collect, out, &q->touched);
  else
    rc = gd_store_visit_links(q->r, id, type_mask, since, until, collect, out, &q->touched, err);
  qctx_work(q, q->touched - before);
  if (rc)
    return rc;
  if (out->oom)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  return GD_OK;
}

int qctx_links(qctx *q, uint64_t id, uint32_t type_mask, qlinks *out, gd_err *err) {
  return links_in(q, id, type_mask, q->p->since, q->p->until, out, err);
}

int gd_query_entity_brief(gd_rtxn *r, uint64_t id, gd_entity_view *ret, gd_err *err) {
  uint64_t st[2];
  gd_rtxn_state(r, st);
  struct icache *c = icache_get(st);
  ic_ent *ce = icache_ent(c, id, false);
  if (ce && ce->boff != IC_NO_BRIEF && gd_rtxn_fresh(r, id, ce->info_at)) {
    const uint8_t *b = c->bytes + ce->boff;
    *ret = (gd_entity_view){.id = id,
                            .type = ce->type,
                            .key = {(const char *)b, ce->klen},
                            .first_seen = ce->first_seen,
                            .last_seen = ce->last_seen,
                            .degree = ce->degree,
                            .seller_count = ce->sellers,
                            .nlabels = ce->nlabels,
                            .labels_raw = b + ce->klen};
    return GD_OK;
  }
  gd_ref ref = {id, 0, GD_STR_NULL};
  int rc = gd_store_get(r, &ref, ret, err);
  if (rc)
    return rc;
  ret->nattrs = 0;
  ret->attrs_raw = NULL;
  (void)icache_keep(c, st[1], ret); /* *ret still views the store's record */
  return GD_OK;
}
