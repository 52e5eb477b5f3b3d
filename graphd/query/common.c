/* Shared pieces of the query layer: a small map, the entity info cache,
 * hub bookkeeping and link collection. */
#include "query/query_int.h"

#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x;
}

uint32_t *qmap_get(const qmap *m, uint64_t key) {
  if (!m->cap)
    return NULL;
  for (size_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key)
      return &m->vals[i];
    if (m->keys[i] == 0)
      return NULL;
  }
}

uint32_t *qmap_put(qmap *m, uint64_t key, bool *ret_new) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = calloc(ncap, sizeof *nk);
    uint32_t *nv = calloc(ncap, sizeof *nv);
    if (!nk || !nv) {
      free(nk);
      free(nv);
      return NULL;
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->keys[i])
        continue;
      size_t j = mix(m->keys[i]) & (ncap - 1);
      while (nk[j])
        j = (j + 1) & (ncap - 1);
      nk[j] = m->keys[i];
      nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
  }
  size_t i = mix(key) & (m->cap - 1);
  while (m->keys[i] && m->keys[i] != key)
    i = (i + 1) & (m->cap - 1);
  *ret_new = m->keys[i] == 0;
  if (*ret_new) {
    m->keys[i] = key;
    m->vals[i] = 0;
    m->n++;
  }
  return &m->vals[i];
}

void qmap_free(qmap *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

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

void qctx_init(qctx *q, gd_rtxn *r, const gd_query_params *p, gd_arena **arena) {
  memset(q, 0, sizeof *q);
  q->r = r;
  q->p = p;
  q->arena = arena;
}

void qctx_free(qctx *q) {
  qmap_free(&q->info_idx);
  qmap_free(&q->hub_idx);
  free(q->infos);
  free(q->hubs);
}

const qinfo *qctx_info(qctx *q, uint64_t id, gd_err *err) {
  bool fresh;
  uint32_t *slot = qmap_put(&q->info_idx, id, &fresh);
  if (!slot) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (!fresh)
    return &q->infos[*slot - 1];
  gd_entity_view v;
  gd_ref ref = {id, 0, GD_STR_NULL};
  /* Errors end the whole query, so the half-made slot is never read. */
  if (gd_store_get(q->r, &ref, &v, err))
    return NULL;
  if (!qgrow(&q->infos, &q->capinfo, q->ninfo, sizeof *q->infos)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  qinfo *in = &q->infos[q->ninfo++];
  in->id = id;
  in->type = v.type;
  in->sellers = v.seller_count;
  in->degree = v.degree;
  in->cap = GD_TYPE_VALID(v.type) ? q->p->ev.hub_cap[v.type] : 0;
  /* Direct seller-seller links are never hubs: a seller is not shared. */
  in->hub = v.type != GD_TYPE_SELLER && gd_is_hub(&q->p->ev, v.type, v.seller_count);
  *slot = (uint32_t)q->ninfo;
  return in;
}

int qctx_hub(qctx *q, const qinfo *in, gd_err *err) {
  bool fresh;
  uint32_t *slot = qmap_put(&q->hub_idx, in->id, &fresh);
  if (!slot)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if (!fresh)
    return GD_OK;
  if (!qgrow(&q->hubs, &q->caphubs, q->nhubs, sizeof *q->hubs))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  q->hubs[q->nhubs++] = (gd_hub){in->id, in->type, in->sellers, in->cap};
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

int qctx_links(qctx *q, uint64_t id, uint32_t type_mask, qlinks *out, gd_err *err) {
  out->n = 0;
  out->oom = false;
  int rc = gd_store_visit_links(q->r, id, type_mask, q->p->since, q->p->until, collect, out,
                                &q->touched, err);
  if (rc)
    return rc;
  if (out->oom)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  return GD_OK;
}
