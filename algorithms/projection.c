#include "projection.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *alloc_n(int64_t count, size_t size) {
  if (count < 0 || (uint64_t)count > SIZE_MAX / size)
    return NULL;
  return malloc((size_t)(count ? count : 1) * size);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Output rows, grown by doubling. */
typedef struct {
  int64_t len, cap;
  int64_t *nbr;
  double *w;
} row_buf;

static int row_buf_push(row_buf *r, int64_t b, double w) {
  if (r->len == r->cap) {
    int64_t cap = r->cap ? r->cap * 2 : 1024;
    int64_t *nn = realloc(r->nbr, (size_t)cap * sizeof *nn);
    if (!nn)
      return -1;
    r->nbr = nn;
    double *nw = realloc(r->w, (size_t)cap * sizeof *nw);
    if (!nw)
      return -1;
    r->w = nw;
    r->cap = cap;
  }
  r->nbr[r->len] = b;
  r->w[r->len] = w;
  r->len++;
  return 0;
}

/* The projection; with ret_corr (and no ret_graph), stops after writing
 * each entity's corroboration. */
static gd_alg_status build(const gd_projection_input *in, const gd_evidence_params *params,
                           double min_tie_weight, gd_csr *ret_graph,
                           gd_projection_stats *ret_stats, double *ret_corr, gd_alg_error *err) {
  if (!in || !params || (!ret_graph && !ret_corr) || in->n_sellers < 0 || in->n_entities < 0 ||
      in->n_links < 0 ||
      (in->n_entities > 0 && (!in->ent_type || !in->ent_off)) ||
      (in->n_links > 0 && (!in->link_a || !in->link_b)))
    return gd_alg_error_set(err, GD_ALG_INVALID, "projection: bad arguments");
  if (!isfinite(min_tie_weight) || min_tie_weight < 0)
    return gd_alg_error_set(err, GD_ALG_INVALID, "projection: min_tie_weight %g", min_tie_weight);

  const int64_t n = in->n_sellers, ne = in->n_entities, nl = in->n_links;
  gd_alg_status rc = GD_ALG_OK;
  gd_projection_stats st;
  memset(&st, 0, sizeof st);
  st.entities = ne;

  int64_t *stamp = NULL, *kcnt = NULL, *kl_off = NULL, *kl = NULL, *se_off = NULL, *se = NULL;
  int64_t *kent = NULL, *mcnt = NULL, *mtouch = NULL;
  int64_t *lk_off = NULL, *lk = NULL, *touched = NULL, *off = NULL;
  double *kw = NULL, *acc = NULL;
  row_buf out = {0, 0, NULL, NULL};

  /* Pass A: validate, count distinct sellers per entity, classify. Every
   * entity that can corroborate (not a hub, a positive type weight, >= 2
   * sellers) is a candidate; its weight comes after corroboration. */
  if (ne > 0 && (in->ent_off[0] < 0 || (in->ent_off[ne] > 0 && !in->ent_sellers))) {
    rc = gd_alg_error_set(err, GD_ALG_INVALID, "projection: bad entity offsets");
    goto done;
  }
  stamp = alloc_n(n, sizeof *stamp);
  kcnt = alloc_n(ne, sizeof *kcnt); /* distinct sellers of a candidate, else 0 */
  kw = alloc_n(ne, sizeof *kw);
  if (!stamp || !kcnt || !kw)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    stamp[s] = -1;
  const double tw = params->type_weight[GD_PROJ_SELLER_TYPE];
  const double link_w = isfinite(tw) && tw > 0 ? tw : 0.0;
  int64_t kept = 0, kept_inc = 0;
  for (int64_t e = 0; e < ne; e++) {
    int64_t a = in->ent_off[e], b = in->ent_off[e + 1];
    if (b < a) {
      rc = gd_alg_error_set(err, GD_ALG_INVALID, "projection: entities[%lld]: offsets decrease",
                            (long long)e);
      goto done;
    }
    int64_t cnt = 0;
    for (int64_t p = a; p < b; p++) {
      int64_t s = in->ent_sellers[p];
      if (s < 0 || s >= n) {
        rc = gd_alg_error_set(err, GD_ALG_INVALID,
                              "projection: entities[%lld]: seller %lld outside [0, %lld)",
                              (long long)e, (long long)s, (long long)n);
        goto done;
      }
      if (stamp[s] != e)
        stamp[s] = e, cnt++;
    }
    int type = in->ent_type[e];
    uint64_t n_e = in->ent_n ? in->ent_n[e] : (uint64_t)cnt;
    kcnt[e] = 0;
    if (ret_corr)
      ret_corr[e] = 0.0;
    if (in->ent_weight_out)
      in->ent_weight_out[e] = 0.0;
    if (in->ent_context_out)
      in->ent_context_out[e] = 0;
    double tw_e = type > GD_PROJ_SELLER_TYPE && type < GD_EV_TYPES ? params->type_weight[type] : 0;
    if (!(isfinite(tw_e) && tw_e > 0)) {
      st.entities_zero_weight++; /* unknown type, zero weight (or a seller) */
    } else if (gd_is_hub(params, type, n_e)) {
      st.hubs_skipped++;
      st.hubs_skipped_by_type[type]++;
      st.hub_incidences_skipped += cnt;
    } else if (cnt < 2 || n_e < 2) {
      st.entities_single++;
    } else {
      kcnt[e] = cnt;
      kept++;
      kept_inc += cnt;
    }
  }

  /* Candidates as compact lists of distinct sellers (kl, in listed order),
   * and the transpose seller -> candidates (se), ascending by candidate. */
  kl_off = alloc_n(kept + 1, sizeof *kl_off);
  kl = alloc_n(kept_inc, sizeof *kl);
  kent = alloc_n(kept, sizeof *kent);
  se_off = calloc((size_t)n + 2, sizeof *se_off);
  se = alloc_n(kept_inc, sizeof *se);
  if (!kl_off || !kl || !kent || !se_off || !se)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    stamp[s] = -1;
  int64_t k = 0, q = 0;
  kl_off[0] = 0;
  for (int64_t e = 0; e < ne; e++) {
    if (!kcnt[e])
      continue;
    for (int64_t p = in->ent_off[e]; p < in->ent_off[e + 1]; p++) {
      int64_t s = in->ent_sellers[p];
      if (stamp[s] != e) {
        stamp[s] = e;
        kl[q++] = s;
        se_off[s + 2]++;
      }
    }
    kent[k] = e;
    kl_off[++k] = q;
  }
  for (int64_t s = 0; s < n; s++)
    se_off[s + 2] += se_off[s + 1];
  for (int64_t j = 0; j < kept; j++)
    for (int64_t p = kl_off[j]; p < kl_off[j + 1]; p++)
      se[se_off[kl[p] + 1]++] = j;
  /* now se_off[s] .. se_off[s + 1] is seller s's range */

  /* Direct links as adjacency lists, in input order. */
  lk_off = calloc((size_t)n + 2, sizeof *lk_off);
  if (!lk_off)
    goto nomem;
  int64_t halves = 0;
  for (int64_t i = 0; i < nl; i++) {
    int64_t a = in->link_a[i], b = in->link_b[i];
    if (a < 0 || a >= n || b < 0 || b >= n) {
      rc = gd_alg_error_set(err, GD_ALG_INVALID,
                            "projection: links[%lld] = (%lld, %lld): seller outside [0, %lld)",
                            (long long)i, (long long)a, (long long)b, (long long)n);
      goto done;
    }
    if (a == b || link_w == 0.0)
      continue;
    lk_off[a + 2]++, lk_off[b + 2]++;
    halves += 2;
    st.links_used++;
  }
  lk = alloc_n(halves, sizeof *lk);
  if (!lk)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    lk_off[s + 2] += lk_off[s + 1];
  if (link_w != 0.0) {
    for (int64_t i = 0; i < nl; i++) {
      int64_t a = in->link_a[i], b = in->link_b[i];
      if (a == b)
        continue;
      lk[lk_off[a + 1]++] = b;
      lk[lk_off[b + 1]++] = a;
    }
  }

  /* Weights: each candidate's corroboration over its first GD_EV_SAMPLE
   * listed sellers (evidence.h), then the rule. Candidates weighing 0 are
   * context: they corroborated others but tie nobody. */
  mcnt = calloc((size_t)(kept ? kept : 1), sizeof *mcnt);
  mtouch = alloc_n(kept, sizeof *mtouch);
  if (!mcnt || !mtouch)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    stamp[s] = -1;
  const uint64_t population = in->population ? in->population : (uint64_t)n;
  int64_t used = 0;
  for (int64_t j = 0; j < kept; j++) {
    int64_t e = kent[j];
    int type = in->ent_type[e];
    uint64_t n_e = in->ent_n ? in->ent_n[e] : (uint64_t)kcnt[e];
    double c = 0.0;
    if (in->ent_corroboration && gd_evidence_needs_corroboration(params, type, n_e)) {
      c = in->ent_corroboration[e];
      st.entities_corroborated += c > 0;
    } else if (gd_evidence_needs_corroboration(params, type, n_e)) {
      int64_t ks = kl_off[j + 1] - kl_off[j];
      if (ks > GD_EV_SAMPLE)
        ks = GD_EV_SAMPLE;
      const int64_t *smp = kl + kl_off[j];
      int64_t nt = 0;
      gd_corroboration cb;
      gd_corroboration_begin(&cb, ks, population);
      for (int64_t i = 0; i < ks; i++)
        stamp[smp[i]] = j;
      /* Seller by seller in sample order, as the queries do, until full. */
      for (int64_t i = 0; i < ks && !gd_corroboration_full(&cb); i++) {
        int64_t s = smp[i], direct = 0;
        for (int64_t p = se_off[s]; p < se_off[s + 1]; p++) {
          int64_t f = se[p], fe = kent[f];
          if (f == j)
            continue;
          if (mcnt[f] == 0)
            mtouch[nt++] = f;
          uint64_t n_f = in->ent_n ? in->ent_n[fe] : (uint64_t)kcnt[fe];
          gd_corroboration_use(&cb, params, in->ent_type[fe], n_f, mcnt[f]++);
        }
        for (int64_t p = lk_off[s]; p < lk_off[s + 1]; p++)
          direct += lk[p] > s && stamp[lk[p]] == j;
        gd_corroboration_links(&cb, params, direct);
        st.corroboration_visits += (se_off[s + 1] - se_off[s]) + (lk_off[s + 1] - lk_off[s]);
      }
      for (int64_t t = 0; t < nt; t++)
        mcnt[mtouch[t]] = 0;
      c = gd_corroboration_end(&cb);
      st.entities_corroborated += c > 0;
    }
    if (ret_corr)
      ret_corr[e] = c;
    double w = gd_evidence_weight(params, type, n_e, c);
    kw[j] = w;
    if (in->ent_weight_out)
      in->ent_weight_out[e] = w;
    if (w > 0) {
      int64_t cnt = kl_off[j + 1] - kl_off[j];
      used++;
      st.pair_visits += cnt * (cnt - 1);
    } else {
      st.entities_context++;
      if (in->ent_context_out)
        in->ent_context_out[e] = 1;
    }
  }
  st.entities_used = used;
  if (!ret_graph) {
    if (ret_stats)
      *ret_stats = st;
    goto done;
  }

  /* Rows: accumulate seller a's ties in a dense scratch, then sort. */
  acc = alloc_n(n, sizeof *acc);
  touched = alloc_n(n, sizeof *touched);
  off = alloc_n(n + 1, sizeof *off);
  if (!acc || !touched || !off)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    stamp[s] = -1;
  off[0] = 0;
  for (int64_t a = 0; a < n; a++) {
    int64_t t = 0;
    for (int64_t p = se_off[a]; p < se_off[a + 1]; p++) {
      int64_t j = se[p];
      double w = kw[j];
      if (w <= 0)
        continue;
      for (int64_t r = kl_off[j]; r < kl_off[j + 1]; r++) {
        int64_t b = kl[r];
        if (b == a)
          continue;
        if (stamp[b] != a)
          stamp[b] = a, acc[b] = 0.0, touched[t++] = b;
        acc[b] += w;
      }
    }
    for (int64_t p = lk_off[a]; p < lk_off[a + 1]; p++) {
      int64_t b = lk[p];
      if (stamp[b] != a)
        stamp[b] = a, acc[b] = 0.0, touched[t++] = b;
      acc[b] += link_w;
    }
    qsort(touched, (size_t)t, sizeof *touched, cmp_i64);
    for (int64_t i = 0; i < t; i++) {
      int64_t b = touched[i];
      if (acc[b] < min_tie_weight) {
        st.ties_filtered += b > a;
        continue;
      }
      if (row_buf_push(&out, b, acc[b]) != 0)
        goto nomem;
      st.ties += b > a;
    }
    off[a + 1] = out.len;
  }

  if (out.len == 0 && !out.nbr) { /* keep the "arrays are never NULL" shape */
    out.nbr = malloc(sizeof *out.nbr);
    out.w = malloc(sizeof *out.w);
    if (!out.nbr || !out.w)
      goto nomem;
  }
  ret_graph->n = n;
  ret_graph->m = out.len / 2;
  ret_graph->off = off;
  ret_graph->nbr = out.nbr;
  ret_graph->w = out.w;
  off = NULL;
  out.nbr = NULL;
  out.w = NULL;
  if (ret_stats)
    *ret_stats = st;
  goto done;

nomem:
  rc = gd_alg_error_set(err, GD_ALG_NOMEM, "projection: out of memory (%lld sellers, %lld entities)",
                        (long long)n, (long long)ne);
done:
  free(stamp), free(kcnt), free(kw), free(kl_off), free(kl), free(se_off), free(se);
  free(kent), free(mcnt), free(mtouch);
  free(lk_off), free(lk), free(acc), free(touched), free(off), free(out.nbr), free(out.w);
  return rc;
}

gd_alg_status gd_projection_build(const gd_projection_input *in, const gd_evidence_params *params,
                                  double min_tie_weight, gd_csr *ret_graph,
                                  gd_projection_stats *ret_stats, gd_alg_error *err) {
  if (!ret_graph)
    return gd_alg_error_set(err, GD_ALG_INVALID, "projection: bad arguments");
  return build(in, params, min_tie_weight, ret_graph, ret_stats, NULL, err);
}

gd_alg_status gd_projection_corroboration(const gd_projection_input *in,
                                          const gd_evidence_params *params, double *ret_c,
                                          gd_alg_error *err) {
  if (!ret_c || (in && in->ent_corroboration))
    return gd_alg_error_set(err, GD_ALG_INVALID, "projection: bad arguments");
  return build(in, params, 0.0, NULL, NULL, ret_c, err);
}
