/*
 * Fresh clusters (docs/ARCHITECTURE.md, "Fresh clusters"): the placer
 * thread, and the WatchAlerts stream that follows what it writes.
 *
 * The placer works the placement queue (store/place.h) in batches of up
 * to PLACE_BATCH sellers, each batch in one read transaction:
 *
 *   1. The latest snapshot and its spec. When it changed since the last
 *      batch, the spec is read from the manifest (the worker's own parser
 *      makes the evidence parameters and the objective, so placement
 *      weighs ties exactly as that job did) and placements made against
 *      older snapshots are requeued (gd_store_prov_rebase). With no
 *      snapshot at all there is nothing to place against: the queue is
 *      emptied, at most once a second (so a load before the first job
 *      costs one extra commit a second, not one a write).
 *   2. Per seller: its ties, as the snapshot's spec weighs them (a 1-hop
 *      LinkedSellers under the spec's evidence rule, hub caps, weights and
 *      window; ties under min_tie_weight dropped); each tied seller's
 *      cluster (its own placement against this snapshot if it has one,
 *      else its assignment); per cluster the summed and strongest tie; the
 *      clusters' sizes and volumes from their summaries; then
 *      gd_place_best (algorithms/place.h) with the spec's objective.
 *   3. One write op through the writer: each seller's queue row cleared
 *      (unless a later write marked it again), its placement written or
 *      removed (a seller that stays in its snapshot cluster needs none),
 *      and an alert appended when it joined a cluster it was not in.
 *
 * The write waits for its commit before the next batch, so placements and
 * alerts are durable and in order; listeners (the WatchAlerts streams) are
 * woken after each commit that appended alerts.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "place.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/u64map.h"
#include "query/query.h"
#include "rpc/rpc_int.h"
#include "store/place.h"
#include "store/snapshot.h"
#include "worker/snapfmt.h"
#include "worker/worker.h"

/* Sellers placed per read transaction and write op: everything queued, up
 * to this. A batch waits for its commit behind whatever the writer holds
 * (a bulk load's large groups), so under a steady write load the batch
 * size, not the placement itself, sets the placer's pace. */
#define PLACE_BATCH 4096
#define PLACE_MAX_NBRS 10000
#define PLACE_LABEL_SCAN 2000
#define PLACE_EVIDENCE 5
#define PLACE_SHARED 8

typedef struct alisten {
  void (*fn)(void *ctx);
  void *ctx;
  uint64_t handle;
} alisten;

struct rpc_placer {
  gd_rpc *R;
  gd_place_opts o;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop, kicked;
  /* Listeners (lmu). */
  pthread_mutex_t lmu;
  alisten *ls;
  size_t nls, capls;
  uint64_t next_handle;
  /* The snapshot placed against (placer thread only). */
  uint64_t snap;
  bool have_spec;
  gd_worker_spec spec;
  int64_t snap_read_at; /* its graph was read after this (unix ns; 0 unknown) */
  double total_weight; /* modularity objectives: W */
  gd_place_params pp;
  /* A batch's arrays, PLACE_BATCH each (placer thread only). */
  uint64_t *sellers;
  int64_t *stamps;
  struct pitem *items;
  int64_t *lat;
  int64_t last_clear; /* gd_now_ns of the last queue clear without a snapshot */
  bool draining;      /* stopping: only clear, and only without a snapshot */
  gd_u64map batch;    /* seller -> cluster + 1, placed in the batch being worked */
  /* Figures. */
  atomic_uint_fast64_t placed, alerts, rebased, idle_cleared;
};

/* ---- listeners ------------------------------------------------------------ */

static uint64_t alerts_listen(rpc_placer *P, void (*fn)(void *), void *ctx) {
  pthread_mutex_lock(&P->lmu);
  uint64_t h = 0;
  if (P->nls == P->capls) {
    size_t nc = P->capls ? 2 * P->capls : 8;
    alisten *nl = realloc(P->ls, nc * sizeof *nl);
    if (!nl)
      goto out;
    P->ls = nl;
    P->capls = nc;
  }
  h = ++P->next_handle;
  P->ls[P->nls++] = (alisten){fn, ctx, h};
out:
  pthread_mutex_unlock(&P->lmu);
  return h;
}

static void alerts_unlisten(rpc_placer *P, uint64_t h) {
  pthread_mutex_lock(&P->lmu);
  for (size_t i = 0; i < P->nls; i++)
    if (P->ls[i].handle == h) {
      P->ls[i] = P->ls[--P->nls];
      break;
    }
  pthread_mutex_unlock(&P->lmu);
}

static void alerts_notify(rpc_placer *P) {
  pthread_mutex_lock(&P->lmu);
  for (size_t i = 0; i < P->nls; i++)
    P->ls[i].fn(P->ls[i].ctx);
  pthread_mutex_unlock(&P->lmu);
}

/* ---- the snapshot's spec ---------------------------------------------------- */

/*
 * The manifest's "spec" object (snapfmt.h) as the worker's spec text, so
 * that gd_worker_spec_parse resolves it exactly as the job did. Only what
 * placement uses is carried over. *ret_read_at gets input.read_at_ns (0
 * when absent: a snapshot from before it was recorded).
 */
static int spec_from_manifest(const gd_snapshot_view *v, gd_worker_spec *ret,
                              int64_t *ret_read_at, gd_err *err) {
  *ret_read_at = 0;
  json_tokener *tok = json_tokener_new();
  if (!tok)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  json_object *root = json_tokener_parse_ex(tok, v->manifest, (int)v->manifest_len);
  json_tokener_free(tok);
  json_object *spec;
  if (!root || !json_object_object_get_ex(root, "spec", &spec) ||
      !json_object_is_type(spec, json_type_object)) {
    if (root)
      json_object_put(root);
    return gd_err_set(err, GD_EINTERNAL, "snapshot %llu: the manifest has no spec",
                      (unsigned long long)v->id);
  }
  json_object *in, *at;
  *ret_read_at = json_object_object_get_ex(root, "input", &in) &&
                         json_object_object_get_ex(in, "read_at_ns", &at)
                     ? json_object_get_int64(at)
                     : 0;
  gd_strbuf b = {0};
  json_object_object_foreach(spec, key, val) {
    if (!strcmp(key, "algorithm") || !strcmp(key, "evidence")) {
      gd_strbuf_printf(&b, "%s=%s\n", key, json_object_get_string(val));
    } else if (!strcmp(key, "resolution") || !strcmp(key, "threshold") ||
               !strcmp(key, "min_tie_weight") || !strcmp(key, "beta")) {
      if (json_object_is_type(val, json_type_double) || json_object_is_type(val, json_type_int))
        gd_strbuf_printf(&b, "%s=%.17g\n", key, json_object_get_double(val));
    } else if (!strcmp(key, "since") || !strcmp(key, "until")) {
      gd_strbuf_printf(&b, "%s=%lld\n", key, (long long)json_object_get_int64(val));
    } else if (!strcmp(key, "flagged_labels") && json_object_is_type(val, json_type_array)) {
      gd_strbuf_printf(&b, "flagged_labels=");
      for (size_t i = 0; i < json_object_array_length(val); i++)
        gd_strbuf_printf(&b, "%s%s", i ? "," : "",
               json_object_get_string(json_object_array_get_idx(val, i)));
      gd_strbuf_printf(&b, "\n");
    } else if ((!strcmp(key, "hub_caps") || !strcmp(key, "type_weights")) &&
               json_object_is_type(val, json_type_object)) {
      bool caps = key[0] == 'h';
      json_object_object_foreach(val, tname, x) {
        if (caps)
          gd_strbuf_printf(&b, "hub_cap.%s=%lld\n", tname, (long long)json_object_get_int64(x));
        else
          gd_strbuf_printf(&b, "weight.%s=%.17g\n", tname, json_object_get_double(x));
      }
    }
  }
  json_object_put(root);
  if (b.oom) {
    free(b.p);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  int rc = gd_worker_spec_parse(b.p ? b.p : "", b.n, ret, err);
  free(b.p);
  if (rc)
    gd_err_prefix(err, "snapshot %llu: spec", (unsigned long long)v->id);
  return rc;
}

typedef struct wsum {
  double w;
} wsum;

static int sum_weight(void *ctx, uint64_t cluster, const void *summary, size_t len) {
  (void)cluster;
  gd_cluster_summary s;
  if (gd_summary_decode(summary, len, &s, NULL) == GD_OK)
    ((wsum *)ctx)->w += s.internal + s.boundary / 2;
  return 0;
}

/* Switches to snapshot v: its spec, and W for modularity objectives. */
static int use_snapshot(rpc_placer *P, gd_rtxn *r, const gd_snapshot_view *v, gd_err *err) {
  gd_worker_spec s;
  int64_t read_at;
  int rc = spec_from_manifest(v, &s, &read_at, err);
  if (rc)
    return rc;
  if (P->have_spec)
    gd_worker_spec_free(&P->spec);
  P->spec = s;
  P->have_spec = true;
  P->snap = v->id;
  P->snap_read_at = read_at;
  P->total_weight = 0;
  if (s.comm.algo == GD_COMM_LEIDEN_MODULARITY || s.comm.algo == GD_COMM_LOUVAIN) {
    wsum w = {0};
    if ((rc = gd_store_clusters_visit(r, v->id, 0, sum_weight, &w, NULL, err)))
      return rc;
    P->total_weight = w.w;
  }
  P->pp = (gd_place_params){.algo = s.comm.algo,
                            .resolution = s.comm.resolution,
                            .threshold = s.comm.threshold,
                            .total_weight = P->total_weight};
  return GD_OK;
}

/* ---- placing one seller -------------------------------------------------- */

typedef struct pitem {
  uint64_t seller;
  int64_t stamp;
  enum { PI_CLEAR, PI_PUT, PI_DEL } action;
  gd_prov p;
  uint8_t *ev; /* a packed AlertEvent (no seq), or NULL */
  size_t evlen;
} pitem;

typedef struct ccand {
  uint64_t cluster;
  gd_place_cand c;
  size_t first; /* its strongest tie: index into the linked result */
} ccand;

/* The cluster seller sits in for placement purposes (0: none). */
static uint64_t cluster_of(rpc_placer *P, gd_rtxn *r, uint64_t seller) {
  gd_prov p;
  uint64_t cl;
  const uint64_t *b = gd_u64map_get(&P->batch, seller);
  if (b)
    return *b - 1; /* placed earlier in this batch */
  if (gd_store_prov_get(r, seller, &p, NULL) == GD_OK && p.snapshot == P->snap)
    return p.cluster;
  if (gd_store_assignment_get(r, P->snap, seller, &cl, NULL) == GD_OK)
    return cl;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The labels carried by the cluster's first PLACE_LABEL_SCAN members
 * (sorted, distinct, malloc'd strings) and how many members carry any. */
static void cluster_labels(rpc_placer *P, gd_rtxn *r, uint64_t cluster, char ***ret,
                           size_t *ret_n, uint64_t *ret_labelled) {
  uint64_t *ids = malloc(PLACE_LABEL_SCAN * sizeof *ids);
  size_t n = 0, nl = 0, cap = 0;
  bool more, indexed;
  char **ls = NULL;
  *ret_labelled = 0;
  if (ids && gd_store_cluster_members(r, P->snap, cluster, 0, PLACE_LABEL_SCAN, ids, &n, &more,
                                      &indexed, NULL) == GD_OK) {
    for (size_t i = 0; i < n; i++) {
      gd_ref ref = {.id = ids[i]};
      gd_entity_view v;
      if (gd_store_get(r, &ref, &v, NULL) || !v.nlabels)
        continue;
      (*ret_labelled)++;
      for (size_t j = 0; j < v.nlabels; j++) {
        gd_str l = gd_entity_label(&v, j);
        bool seen = false;
        for (size_t k = 0; k < nl && !seen; k++)
          seen = strlen(ls[k]) == l.n && memcmp(ls[k], l.p, l.n) == 0;
        if (seen)
          continue;
        if (nl == cap) {
          size_t nc = cap ? 2 * cap : 8;
          char **np = realloc(ls, nc * sizeof *np);
          if (!np)
            goto done;
          ls = np;
          cap = nc;
        }
        if (!(ls[nl] = strndup(l.p, l.n)))
          goto done;
        nl++;
      }
    }
  }
done:
  free(ids);
  if (nl)
    qsort(ls, nl, sizeof *ls, cmp_str);
  *ret = ls;
  *ret_n = nl;
}

/* Packs the alert for seller joining cand (linked: the seller's ties). */
static int make_event(rpc_placer *P, gd_rtxn *r, const gd_entity_view *sv, const gd_prov *pv,
                      const gd_linked_result *lr, const uint64_t *ncl, pitem *it) {
  Graphd__V1__AlertEvent ev = GRAPHD__V1__ALERT_EVENT__INIT;
  Graphd__V1__AlertEvidence evd[PLACE_EVIDENCE], *evd_p[PLACE_EVIDENCE];
  Graphd__V1__SharedEntity se[PLACE_EVIDENCE][PLACE_SHARED], *se_p[PLACE_EVIDENCE][PLACE_SHARED];
  Graphd__V1__Entity ent[PLACE_EVIDENCE][PLACE_SHARED];
  char *keys[PLACE_EVIDENCE * (PLACE_SHARED + 1)];
  size_t nkeys = 0;
  char *skey = strndup(sv->key.p, sv->key.n);
  ev.time = gd_now_unix_ns() / 1000000;
  ev.seller_id = sv->id;
  ev.seller_key = skey ? skey : "";
  ev.snapshot_id = pv->snapshot;
  ev.cluster_id = pv->cluster;
  ev.cluster_risk = pv->risk;
  ev.cluster_size = pv->size;
  ev.previous_cluster_id = pv->previous;
  ev.gain = pv->gain;
  ev.tie = pv->tie;
  char **labels = NULL;
  size_t nlabels = 0;
  uint64_t labelled = 0;
  cluster_labels(P, r, pv->cluster, &labels, &nlabels, &labelled);
  ev.cluster_labels = labels;
  ev.n_cluster_labels = nlabels;
  ev.labelled_members = labelled;
  for (size_t i = 0; i < lr->n && ev.n_evidence < PLACE_EVIDENCE; i++) {
    if (ncl[i] != pv->cluster)
      continue;
    const gd_linked *l = &lr->sellers[i];
    size_t k = ev.n_evidence;
    Graphd__V1__AlertEvidence *e = &evd[k];
    graphd__v1__alert_evidence__init(e);
    gd_ref mref = {.id = l->seller};
    gd_entity_view mv;
    e->member_id = l->seller;
    e->member_key = "";
    if (gd_store_get(r, &mref, &mv, NULL) == GD_OK &&
        (keys[nkeys] = strndup(mv.key.p, mv.key.n)))
      e->member_key = keys[nkeys++];
    e->tie = l->steps[0].tie;
    const gd_step *st = &l->steps[0];
    for (size_t j = 0; j < st->nshared && j < PLACE_SHARED; j++) {
      const gd_shared *sh = &st->shared[j];
      Graphd__V1__SharedEntity *s = &se[k][j];
      Graphd__V1__Entity *en = &ent[k][j];
      graphd__v1__shared_entity__init(s);
      graphd__v1__entity__init(en);
      en->id = sh->entity;
      en->type = (Graphd__V1__EntityType)sh->type;
      en->seller_count = sh->sellers;
      en->key = "";
      gd_ref eref = {.id = sh->entity};
      gd_entity_view xv;
      if (gd_store_get(r, &eref, &xv, NULL) == GD_OK &&
          (keys[nkeys] = strndup(xv.key.p, xv.key.n)))
        en->key = keys[nkeys++];
      s->entity = en;
      s->first_seen = sh->first;
      s->last_seen = sh->last;
      s->weight = sh->weight;
      s->corroboration = sh->corroboration;
      se_p[k][j] = s;
      e->n_shared = j + 1;
    }
    e->shared = se_p[k];
    evd_p[k] = e;
    ev.n_evidence++;
  }
  ev.evidence = evd_p;
  size_t n = protobuf_c_message_get_packed_size(&ev.base);
  it->ev = malloc(n ? n : 1);
  if (it->ev) {
    protobuf_c_message_pack(&ev.base, it->ev);
    it->evlen = n;
  }
  for (size_t i = 0; i < nkeys; i++)
    free(keys[i]);
  for (size_t i = 0; i < nlabels; i++)
    free(labels[i]);
  free(labels);
  free(skey);
  return it->ev ? GD_OK : GD_ENOMEM;
}

static int place_one(rpc_placer *P, gd_rtxn *r, pitem *it, gd_err *err) {
  gd_ref ref = {.id = it->seller};
  gd_entity_view sv;
  int rc = gd_store_get(r, &ref, &sv, err);
  it->action = PI_DEL;
  if (rc == GD_ENOTFOUND || (!rc && sv.type != GD_TYPE_SELLER))
    return GD_OK; /* deleted since: no placement */
  if (rc)
    return rc;
  uint64_t c0 = 0, prev;
  gd_store_assignment_get(r, P->snap, it->seller, &c0, NULL);
  gd_prov old;
  prev = gd_store_prov_get(r, it->seller, &old, NULL) == GD_OK && old.snapshot == P->snap
             ? old.cluster
             : c0;

  gd_query_params qp;
  gd_query_params_default(&qp);
  qp.ev = P->spec.ev;
  qp.since = P->spec.since;
  qp.until = P->spec.until;
  qp.max_work = P->R->lim.max_query_work;
  gd_linked_result lr = {0};
  if ((rc = gd_query_linked(r, it->seller, 1, &qp, PLACE_MAX_NBRS, 0, &lr, err)))
    return rc;
  uint64_t *ncl = calloc(lr.n ? lr.n : 1, sizeof *ncl);
  ccand *cs = calloc(lr.n ? lr.n : 1, sizeof *cs);
  size_t ncs = 0;
  double degree = 0;
  if (!ncl || !cs) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory placing seller %llu",
                    (unsigned long long)it->seller);
    goto out;
  }
  for (size_t i = 0; i < lr.n; i++) {
    double tie = lr.sellers[i].steps[0].tie;
    if (!(tie > 0) || tie < P->spec.min_tie_weight)
      continue;
    degree += tie;
    uint64_t cl = cluster_of(P, r, lr.sellers[i].seller);
    ncl[i] = cl;
    if (!cl)
      continue;
    size_t k = 0;
    while (k < ncs && cs[k].cluster != cl)
      k++;
    if (k == ncs)
      cs[ncs++] = (ccand){.cluster = cl, .first = i};
    cs[k].c.tie += tie;
    if (tie > cs[k].c.max_tie)
      cs[k].c.max_tie = tie;
  }
  double *risk = calloc(ncs ? ncs : 1, sizeof *risk);
  gd_place_cand *pc = calloc(ncs ? ncs : 1, sizeof *pc);
  uint64_t *full = calloc(ncs ? ncs : 1, sizeof *full);
  if (!risk || !pc || !full) {
    free(risk);
    free(pc);
    free(full);
    rc = gd_err_set(err, GD_ENOMEM, "out of memory placing seller %llu",
                    (unsigned long long)it->seller);
    goto out;
  }
  for (size_t k = 0; k < ncs; k++) {
    const void *blob;
    size_t len;
    gd_cluster_summary s = {0};
    if (gd_store_cluster_get(r, P->snap, cs[k].cluster, &blob, &len, NULL) == GD_OK)
      gd_summary_decode(blob, len, &s, NULL);
    double vol = 2 * s.internal + s.boundary;
    cs[k].c.size = (double)s.size;
    cs[k].c.volume = vol;
    if (cs[k].cluster == c0) {
      cs[k].c.size = s.size ? (double)s.size - 1 : 0;
      cs[k].c.volume = vol > degree ? vol - degree : 0;
    }
    risk[k] = s.risk;
    full[k] = s.size;
    pc[k] = cs[k].c;
  }
  gd_place_params pp = P->pp;
  pp.degree = degree;
  double gain = 0;
  long best = gd_place_best(&pp, pc, ncs, &gain);
  uint64_t now_cl = best < 0 ? 0 : cs[best].cluster;
  bool fresh;
  uint64_t *slot = gd_u64map_put(&P->batch, it->seller, &fresh);
  if (slot)
    *slot = now_cl + 1; /* later sellers of the batch see it (cluster_of) */
  if (now_cl && now_cl == c0) {
    it->action = PI_DEL; /* where the snapshot has it */
  } else {
    it->action = PI_PUT;
    it->p = (gd_prov){.snapshot = P->snap,
                      .cluster = now_cl,
                      .previous = prev,
                      .size = best < 0 ? 0 : full[best],
                      .risk = best < 0 ? 0 : risk[best],
                      .gain = gain,
                      .tie = best < 0 ? 0 : cs[best].c.tie,
                      .placed_at = gd_now_unix_ns() / 1000000};
    if (now_cl && now_cl != prev)
      rc = make_event(P, r, &sv, &it->p, &lr, ncl, it);
    if (rc)
      gd_err_set(err, rc, "out of memory for an alert");
  }
  free(risk);
  free(pc);
  free(full);
out:
  free(ncl);
  free(cs);
  gd_linked_result_free(&lr);
  return rc;
}

/* ---- the write ------------------------------------------------------------- */

typedef struct pop {
  rpc_sync_op s; /* first */
  rpc_placer *P;
  pitem *items;
  size_t n;
  bool rebase;
  uint64_t rebase_snap, rebased;
  size_t nalerts;
} pop;

static int pop_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  pop *o = (pop *)wop;
  int rc;
  o->nalerts = 0;
  if (o->rebase && (rc = gd_store_prov_rebase(t, o->rebase_snap, &o->rebased, err)))
    return rc;
  for (size_t i = 0; i < o->n; i++) {
    pitem *it = &o->items[i];
    uint64_t seq;
    if ((rc = gd_store_dirty_clear(t, it->seller, it->stamp, err)))
      return rc;
    if (it->action == PI_PUT && (rc = gd_store_prov_put(t, it->seller, &it->p, err)))
      return rc;
    if (it->action == PI_DEL && (rc = gd_store_prov_put(t, it->seller, NULL, err)))
      return rc;
    if (it->ev) {
      if ((rc = gd_store_alert_append(t, it->ev, it->evlen, o->P->o.alert_history, &seq, err)))
        return rc;
      o->nalerts++;
    }
  }
  return GD_OK;
}

/* Submits o and waits for its commit. */
static int pop_run(rpc_placer *P, pop *o, gd_err *err) {
  o->P = P;
  o->s.op.bulk = true; /* placements wait for Ingest, not the other way round */
  return rpc_write_sync(P->R, &o->s, pop_apply, err);
}

/* ---- the thread ------------------------------------------------------------ */

/* One batch. *ret_more: the queue held a full batch (go on at once). */
static int place_batch(rpc_placer *P, bool *ret_more, gd_err *err) {
  gd_rtxn *r = NULL;
  pop o = {0};
  size_t n = 0;
  *ret_more = false;
  if (!P->sellers) {
    P->sellers = malloc(PLACE_BATCH * sizeof *P->sellers);
    P->stamps = malloc(PLACE_BATCH * sizeof *P->stamps);
    P->items = malloc(PLACE_BATCH * sizeof *P->items);
    P->lat = malloc(PLACE_BATCH * sizeof *P->lat);
    if (!P->sellers || !P->stamps || !P->items || !P->lat)
      return gd_err_set(err, GD_ENOMEM, "out of memory for a placement batch");
  }
  uint64_t *sellers = P->sellers;
  int64_t *stamps = P->stamps;
  pitem *items = P->items;
  int rc = gd_store_read_begin(P->R->store, &r, err);
  if (rc)
    return rc;
  gd_snapshot_view sv;
  int src = gd_store_snapshot_get(r, 0, &sv, err);
  if (src && src != GD_EPRECONDITION) {
    gd_store_read_end(r);
    return src;
  }
  if (!src && !P->draining && (!P->have_spec || sv.id != P->snap)) {
    if ((rc = use_snapshot(P, r, &sv, err))) {
      gd_store_read_end(r);
      return rc;
    }
    gd_store_read_end(r);
    /* Placements against older snapshots go back to the queue. */
    o.rebase = true;
    o.rebase_snap = P->snap;
    if ((rc = pop_run(P, &o, err)))
      return rc;
    atomic_fetch_add(&P->rebased, o.rebased);
    *ret_more = true;
    return GD_OK;
  }
  /* Without a snapshot the queue is only emptied, and at most once a
   * second: not one extra commit per write. */
  if ((src && !P->draining && P->last_clear && gd_now_ns() - P->last_clear < 1000000000) ||
      (!src && P->draining)) {
    gd_store_read_end(r);
    return GD_OK;
  }
  if ((rc = gd_store_dirty_list(r, PLACE_BATCH, sellers, stamps, &n, err)) || !n) {
    gd_store_read_end(r);
    return rc;
  }
  if (src)
    P->last_clear = gd_now_ns();
  memset(items, 0, n * sizeof *items);
  for (size_t i = 0; i < n; i++) {
    items[i].seller = sellers[i];
    items[i].stamp = stamps[i];
    /* No snapshot to place against; or a change the snapshot already
     * holds (queued a second or more before its graph was read: a write
     * is stamped when applied, a few milliseconds before it commits). */
    if (src || stamps[i] < P->snap_read_at - 1000000000) {
      items[i].action = PI_CLEAR;
      continue;
    }
    if ((rc = place_one(P, r, &items[i], err)))
      break;
  }
  /* Sellers that arrive together (a ring's new members, tied to each
   * other) see each other's placements: a second pass over those placed
   * alone, now that every other seller of the batch is placed. */
  for (size_t i = 0; !rc && !src && i < n; i++) {
    if (items[i].action != PI_PUT || items[i].p.cluster)
      continue;
    items[i].action = PI_CLEAR;
    if ((rc = place_one(P, r, &items[i], err)))
      break;
  }
  gd_u64map_clear(&P->batch);
  gd_store_read_end(r);
  if (!rc) {
    o.items = items;
    o.n = n;
    rc = pop_run(P, &o, err);
  }
  if (!rc) {
    int64_t *lat = P->lat;
    int64_t now = gd_now_unix_ns();
    size_t placed = 0;
    for (size_t i = 0; i < n; i++)
      if (items[i].action != PI_CLEAR)
        lat[placed++] = now - items[i].stamp;
    if (src)
      atomic_fetch_add(&P->idle_cleared, n);
    atomic_fetch_add(&P->placed, placed);
    atomic_fetch_add(&P->alerts, o.nalerts);
    if (P->o.observe)
      P->o.observe(P->o.observe_ctx, placed, o.nalerts, lat);
    if (o.nalerts)
      alerts_notify(P);
    *ret_more = n == PLACE_BATCH;
  }
  for (size_t i = 0; i < n; i++)
    free(items[i].ev);
  return rc;
}

static void *placer_main(void *arg) {
  rpc_placer *P = arg;
  pthread_setname_np(pthread_self(), "gd-placer"); /* top -H, perf --sort comm */
  bool more = false;
  for (;;) {
    pthread_mutex_lock(&P->mu);
    if (!more && !P->kicked && !P->stop) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1; /* new snapshots are noticed within a second */
      pthread_cond_timedwait(&P->cv, &P->mu, &ts);
    }
    P->kicked = false;
    bool stop = P->stop;
    pthread_mutex_unlock(&P->mu);
    if (stop)
      break;
    gd_err err = {0};
    if (place_batch(P, &more, &err)) {
      more = false;
      if (err.code != GD_EUNAVAILABLE)
        gd_log(GD_LOG_WARN, "placement: %s", err.msg);
      /* Try again at the next tick. */
    }
  }
  /* Stopping: without a snapshot, what is queued can only be cleared, so
   * clear it now (the next start then has nothing to do); with one, the
   * queue stays for the next start to place. */
  P->draining = true;
  P->last_clear = 0;
  do {
    gd_err err = {0};
    if (place_batch(P, &more, &err))
      break;
  } while (more);
  return NULL;
}

/* ---- public --------------------------------------------------------------- */

int gd_rpc_place_start(gd_rpc *R, const gd_place_opts *o, gd_err *err) {
  rpc_placer *P = calloc(1, sizeof *P);
  if (!P)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  P->R = R;
  P->o = *o;
  if (!P->o.queue_max)
    P->o.queue_max = GD_PLACE_QUEUE_DEFAULT;
  if (!P->o.alert_history)
    P->o.alert_history = GD_ALERT_HISTORY_DEFAULT;
  pthread_mutex_init(&P->mu, NULL);
  pthread_cond_init(&P->cv, NULL);
  pthread_mutex_init(&P->lmu, NULL);
  if (pthread_create(&P->thread, NULL, placer_main, P)) {
    pthread_mutex_destroy(&P->mu);
    pthread_cond_destroy(&P->cv);
    pthread_mutex_destroy(&P->lmu);
    free(P);
    return gd_err_set(err, GD_EINTERNAL, "cannot start the placement thread");
  }
  P->started = true;
  gd_store_place_config(R->store, P->o.queue_max);
  R->placer = P;
  rpc_place_kick(R); /* what a previous run left queued */
  return GD_OK;
}

void gd_rpc_place_stop(gd_rpc *R) {
  rpc_placer *P = R ? R->placer : NULL;
  if (!P)
    return;
  gd_store_place_config(R->store, 0);
  pthread_mutex_lock(&P->mu);
  P->stop = true;
  pthread_cond_signal(&P->cv);
  pthread_mutex_unlock(&P->mu);
  if (P->started)
    pthread_join(P->thread, NULL);
  R->placer = NULL;
  if (P->have_spec)
    gd_worker_spec_free(&P->spec);
  free(P->ls);
  gd_u64map_free(&P->batch);
  free(P->sellers);
  free(P->stamps);
  free(P->items);
  free(P->lat);
  pthread_mutex_destroy(&P->mu);
  pthread_cond_destroy(&P->cv);
  pthread_mutex_destroy(&P->lmu);
  free(P);
}

void gd_rpc_place_stats(gd_rpc *R, gd_place_stats *ret) {
  memset(ret, 0, sizeof *ret);
  rpc_placer *P = R ? R->placer : NULL;
  if (!P)
    return;
  ret->placed = atomic_load(&P->placed);
  ret->alerts = atomic_load(&P->alerts);
  ret->rebased = atomic_load(&P->rebased);
  ret->shed = gd_store_place_shed(R->store);
}

void rpc_place_kick(gd_rpc *R) {
  rpc_placer *P = R->placer;
  if (!P)
    return;
  pthread_mutex_lock(&P->mu);
  P->kicked = true;
  pthread_cond_signal(&P->cv);
  pthread_mutex_unlock(&P->mu);
}

/* ---- GetEntity and GetCluster ------------------------------------------------- */

void rpc_entity_placement(gd_rtxn *r, Graphd__V1__Entity *e, Graphd__V1__Placement *pl) {
  if (e->type != GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
    return;
  if (e->cluster_id) {
    const void *blob;
    size_t len;
    gd_cluster_summary s;
    if (gd_store_cluster_get(r, e->cluster_snapshot_id, e->cluster_id, &blob, &len, NULL) ==
            GD_OK &&
        gd_summary_decode(blob, len, &s, NULL) == GD_OK)
      e->cluster_risk = s.risk;
  }
  gd_prov p;
  gd_snapshot_view v;
  if (gd_store_prov_get(r, e->id, &p, NULL) || gd_store_snapshot_get(r, 0, &v, NULL) ||
      v.id != p.snapshot)
    return; /* none, or made against an older snapshot */
  graphd__v1__placement__init(pl);
  pl->snapshot_id = p.snapshot;
  pl->cluster_id = p.cluster;
  pl->cluster_risk = p.risk;
  pl->cluster_size = p.size;
  pl->gain = p.gain;
  pl->tie = p.tie;
  pl->placed_at = p.placed_at;
  pl->previous_cluster_id = p.previous;
  e->provisional = pl;
}

/* ---- WatchAlerts --------------------------------------------------------- */

/*
 * One event per write, at most one write outstanding (rpc_follow). The
 * stream reads the events after its position in a read transaction of its
 * own each time it may send, skipping those the filters drop; with nothing
 * to send it waits for the placer's notice.
 */
typedef struct awatch {
  rpc_follow f; /* first */
  gd_rpc *rpc;
  rpc_placer *P;
  uint64_t handle;
  uint64_t pos; /* the last seq sent or passed over */
  double min_risk;
  char *label;
  uint64_t cluster;
  uint8_t *buf;
  size_t cap;
} awatch;

static void awatch_unlisten(rpc_follow *f) {
  awatch *w = (awatch *)f;
  alerts_unlisten(w->P, w->handle);
}

static void awatch_destroy(rpc_follow *f) {
  awatch *w = (awatch *)f;
  free(w->label);
  free(w->buf);
  free(w);
}

typedef struct afind {
  awatch *w;
  Graphd__V1__AlertEvent *ev;
  uint64_t seq;
  int rc;
} afind;

static int afind_fn(void *ctx, uint64_t seq, const void *blob, size_t len) {
  afind *f = ctx;
  awatch *w = f->w;
  w->pos = seq;
  Graphd__V1__AlertEvent *ev = graphd__v1__alert_event__unpack(NULL, len, blob);
  if (!ev)
    return 0; /* cannot happen: we wrote it */
  bool ok = ev->cluster_risk >= w->min_risk && (!w->cluster || ev->cluster_id == w->cluster);
  if (ok && w->label) {
    ok = false;
    for (size_t i = 0; i < ev->n_cluster_labels && !ok; i++)
      ok = strcmp(ev->cluster_labels[i], w->label) == 0;
  }
  if (!ok) {
    graphd__v1__alert_event__free_unpacked(ev, NULL);
    return 0;
  }
  f->ev = ev;
  f->seq = seq;
  return 1;
}

/* With w->mu held and no write outstanding: sends the next event that
 * passes, if any. */
static void awatch_send(awatch *w) {
  gd_rtxn *r;
  gd_err err;
  afind f = {.w = w};
  if (gd_store_read_begin(w->rpc->store, &r, &err))
    return; /* the next notice tries again */
  gd_store_alert_visit(r, w->pos, afind_fn, &f, &err);
  gd_store_read_end(r);
  if (!f.ev)
    return;
  Graphd__V1__AlertEvent *ev = f.ev;
  char *reasons[4];
  size_t nr = 0;
  if (w->min_risk > 0)
    reasons[nr++] = "risk";
  if (w->label)
    reasons[nr++] = "label";
  if (w->cluster)
    reasons[nr++] = "cluster";
  if (ev->labelled_members)
    reasons[nr++] = "labelled";
  ev->seq = f.seq;
  ev->reasons = reasons;
  ev->n_reasons = nr;
  size_t n;
  int rc = rpc_pack_stream(&ev->base, &w->buf, &w->cap, &n);
  ev->reasons = NULL;
  ev->n_reasons = 0;
  graphd__v1__alert_event__free_unpacked(ev, NULL);
  if (rc)
    return;
  w->f.writing = true;
  gd_call_write(w->f.call, w->buf, n, false);
}

static void awatch_send_f(rpc_follow *f) { awatch_send((awatch *)f); }

static void awatch_changed(void *ctx) {
  awatch *w = ctx;
  pthread_mutex_lock(&w->f.mu);
  if (!w->f.done && !w->f.writing)
    awatch_send(w);
  pthread_mutex_unlock(&w->f.mu);
}

void rpc_alerts_written(gd_call *c, bool ok) {
  awatch *w = gd_call_user(c);
  pthread_mutex_lock(&w->f.mu);
  bool end = rpc_follow_written(&w->f, !ok);
  if (!end && !w->f.done)
    awatch_send(w);
  pthread_mutex_unlock(&w->f.mu);
  if (end)
    rpc_follow_end(&w->f, GD_ECANCELLED, "call cancelled");
}

/* Checks the request against the store; *ret_pos gets the position to
 * start after. */
static int alerts_check(gd_rpc *R, const Graphd__V1__WatchAlertsRequest *q, uint64_t *ret_pos,
                        gd_err *err) {
  if (!(q->min_risk >= 0 && q->min_risk <= 1))
    return gd_err_set(err, GD_EINVALID, "min_risk: %g is outside [0, 1]", q->min_risk);
  if (q->label[0] && gd_pb_check_label(q->label, err, "label"))
    return err->code;
  if (q->from_now && q->after_seq)
    return gd_err_set(err, GD_EINVALID, "from_now: cannot be given with after_seq");
  gd_rtxn *r;
  int rc = gd_store_read_begin(R->store, &r, err);
  if (rc)
    return rc;
  if (q->cluster_id) {
    gd_snapshot_view v;
    const void *blob;
    size_t len;
    if (gd_store_snapshot_get(r, 0, &v, NULL) ||
        gd_store_cluster_get(r, v.id, q->cluster_id, &blob, &len, NULL)) {
      gd_store_read_end(r);
      return gd_err_set(err, GD_ENOTFOUND, "cluster_id: %llu is not a cluster of the latest "
                        "snapshot", (unsigned long long)q->cluster_id);
    }
  }
  uint64_t oldest, last;
  rc = gd_store_alert_bounds(r, &oldest, &last, err);
  gd_store_read_end(r);
  if (rc)
    return rc;
  if (q->from_now) {
    *ret_pos = last;
  } else if (!q->after_seq) {
    *ret_pos = oldest ? oldest - 1 : 0;
  } else if (q->after_seq > last) {
    return gd_err_set(err, GD_ERANGE,
                      "after_seq: %llu is past the last event written (%llu)",
                      (unsigned long long)q->after_seq, (unsigned long long)last);
  } else if (q->after_seq + 1 < oldest) {
    return gd_err_set(err, GD_ERANGE,
                      "after_seq: events after %llu were dropped; the oldest kept is %llu "
                      "(--alert-history %llu)",
                      (unsigned long long)q->after_seq, (unsigned long long)oldest,
                      (unsigned long long)R->placer->o.alert_history);
  } else {
    *ret_pos = q->after_seq;
  }
  return GD_OK;
}

void rpc_watch_alerts(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__WatchAlertsRequest *q = (Graphd__V1__WatchAlertsRequest *)rpc_unpack(
      c, &graphd__v1__watch_alerts_request__descriptor, msg, len, has_msg);
  if (!q)
    return;
  gd_rpc *R = rpc_ctx(c);
  gd_err err = {0};
  uint64_t pos = 0;
  if (!R->placer) {
    gd_err_set(&err, GD_EPRECONDITION, "placement is off (--placement-queue 0): there are no alerts");
  } else {
    alerts_check(R, q, &pos, &err);
  }
  awatch *w = err.code ? NULL : calloc(1, sizeof *w);
  if (!err.code && (!w || (q->label[0] && !(w->label = strdup(q->label))))) {
    free(w);
    w = NULL;
    gd_err_set(&err, GD_ENOMEM, "out of memory");
  }
  if (err.code) {
    protobuf_c_message_free_unpacked(&q->base, NULL);
    rpc_fail(c, &err);
    return;
  }
  w->rpc = R;
  w->P = R->placer;
  w->pos = pos;
  w->min_risk = q->min_risk;
  w->cluster = q->cluster_id;
  protobuf_c_message_free_unpacked(&q->base, NULL);
  rpc_follow_init(&w->f, c, awatch_unlisten, awatch_destroy);
  w->handle = alerts_listen(w->P, awatch_changed, w); /* before w->f.mu: rpc_follow */
  rpc_follow_start(&w->f, w->handle != 0, awatch_send_f);
}

/* ---- GetCluster's placed members --------------------------------------------- */

int rpc_cluster_provisional(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                            size_t max, gd_arena **a, Graphd__V1__GetClusterReply *rep,
                            gd_err *err) {
  gd_snapshot_view v;
  if (gd_store_snapshot_get(r, 0, &v, NULL) || v.id != snap || !max)
    return GD_OK; /* placements are made against the latest snapshot only */
  uint64_t *ids = gd_arena_alloc(a, max * sizeof *ids);
  Graphd__V1__Entity *ents = gd_arena_alloc(a, max * sizeof *ents);
  Graphd__V1__Entity **ep = gd_arena_alloc(a, max * sizeof *ep);
  Graphd__V1__Placement *pls = gd_arena_alloc(a, max * sizeof *pls);
  size_t n = 0;
  bool more = false;
  if (!ids || !ents || !ep || !pls)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  int rc = gd_store_prov_members(r, snap, cluster, after, max, ids, &n, &more, err);
  if (rc)
    return rc;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    gd_ref ref = {.id = ids[i]};
    gd_entity_view ev;
    if ((rc = gd_store_get(r, &ref, &ev, err)) == GD_ENOTFOUND)
      continue;
    if (rc)
      return rc;
    if (gd_pb_entity(&ev, false, a, &ents[k]))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    rpc_entity_placement(r, &ents[k], &pls[k]);
    ep[k] = &ents[k];
    k++;
  }
  rep->provisional_members = ep;
  rep->n_provisional_members = k;
  rep->more_provisional = more;
  return GD_OK;
}
