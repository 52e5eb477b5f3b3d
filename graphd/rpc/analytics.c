/*
 * Analytics handlers: clustering jobs (jobs/jobs.h) and snapshot reads
 * (store/snapshot.h, blobs decoded with worker/snapfmt.h).
 *
 * Jobs are journalled in the store (jobs.h "Durability"; the journal is
 * below): queued jobs survive a restart, interrupted ones end FAILED.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/entity.h"
#include "evidence.h"
#include "jobs/jobs.h"
#include "core/limits.h"
#include "core/strbuf.h"
#include "rpc/rpc_int.h"
#include "match.h"
#include "store/snapshot.h"
#include "worker/snapfmt.h"
#include "worker/worker.h"

void gd_rpc_set_jobs(gd_rpc *r, gd_jobs *jobs) { r->jobs = jobs; }

/* ---- the jobs journal ---------------------------------------------------- */

typedef struct jsave {
  rpc_sync_op s; /* first */
  uint64_t id;
  void *rec;
  size_t len;
} jsave;

static int jsave_apply(gd_wtxn *t, gd_write_op *op, gd_err *err) {
  jsave *s = (jsave *)op;
  return gd_store_job_put(t, s->id, s->rec, s->len, err);
}

int rpc_journal_save(void *ctx, const gd_job_info *ji, const char *spec_text, gd_err *err) {
  gd_rpc *R = ctx;
  jsave s = {.id = ji->id};
  if (!(s.rec = gd_job_encode(ji, spec_text, &s.len)))
    return gd_err_set(err, GD_ENOMEM, "out of memory for a job record");
  int rc = rpc_write_sync(R, &s.s, jsave_apply, err);
  free(s.rec);
  return rc;
}

const gd_jobs_journal *gd_rpc_jobs_journal(gd_rpc *r) { return &r->journal; }

typedef struct jrec {
  gd_job_info ji;
  char *text;
} jrec;

typedef struct jload {
  jrec *v;
  size_t n, cap;
  gd_err err;
  int rc;
} jload;

static int jload_visit(void *ctx, uint64_t id, const void *rec, size_t len) {
  jload *l = ctx;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 64;
    jrec *nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) {
      l->rc = gd_err_set(&l->err, GD_ENOMEM, "out of memory for job records");
      return 1;
    }
    l->v = nv;
    l->cap = nc;
  }
  if ((l->rc = gd_job_decode(rec, len, &l->v[l->n].ji, &l->v[l->n].text, &l->err))) {
    gd_err_set(&l->err, l->rc, "job record %llu: %s", (unsigned long long)id, l->err.msg);
    return 1;
  }
  l->n++;
  return 0;
}

int gd_rpc_jobs_restore(gd_rpc *R, gd_jobs *j, size_t *ret_n, gd_err *err) {
  jload l = {0};
  rpc_import_sweep(j);
  gd_rtxn *r = NULL;
  int rc = gd_store_read_begin(R->store, &r, err);
  if (!rc)
    rc = gd_store_jobs_visit(r, jload_visit, &l, err);
  gd_store_read_end(r); /* restoring may write: no reader held meanwhile */
  if (!rc && l.rc) {
    rc = l.rc;
    if (err)
      *err = l.err;
  }
  size_t done = 0;
  for (size_t i = 0; i < l.n; i++) {
    if (!rc && !(rc = gd_jobs_restore(j, &l.v[i].ji, l.v[i].text, err)))
      done++;
    gd_job_info_free(&l.v[i].ji);
    free(l.v[i].text);
  }
  free(l.v);
  if (ret_n)
    *ret_n = done;
  return rc;
}

/* The job manager of c's context; without one, c is answered UNAVAILABLE
 * and the result is NULL. */
gd_jobs *rpc_need_jobs(gd_call *c) {
  gd_jobs *jobs = rpc_ctx(c)->jobs;
  if (!jobs)
    rpc_fail_code(c, GD_EUNAVAILABLE, "clustering jobs are not available");
  return jobs;
}

/* ---- spec -> worker spec text ----------------------------------------- */

static const char *algo_names[] = {
    NULL, "leiden_cpm", "leiden_modularity", "louvain", "label_propagation", "components",
    "infomap",
};

static bool finite_nonneg(double x) { return isfinite(x) && x >= 0; }

bool rpc_has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

int rpc_spec_text(const Graphd__V1__ClusteringSpec *s, gd_strbuf *b, gd_err *err) {
  if (!s)
    return GD_OK; /* all defaults */
  if (gd_pb_check_str(s->name, 128, false, err, "spec.name"))
    return err->code;
  if (rpc_has_ctl(s->name))
    return gd_err_set(err, GD_EINVALID, "spec.name: control characters");
  if (s->algorithm < 0 || s->algorithm > 6)
    return gd_err_set(err, GD_EINVALID, "spec.algorithm: unknown algorithm %d", s->algorithm);
  if (s->evidence < 0 || s->evidence > 2)
    return gd_err_set(err, GD_EINVALID, "spec.evidence: unknown evidence rule %d", s->evidence);
  if (s->warm_start < GRAPHD__V1__WARM_START__WARM_START_AUTO ||
      s->warm_start > GRAPHD__V1__WARM_START__WARM_START_OFF)
    return gd_err_set(err, GD_EINVALID, "spec.warm_start: unknown value %d", s->warm_start);
  if (!finite_nonneg(s->resolution))
    return gd_err_set(err, GD_EINVALID, "spec.resolution: must be a finite number >= 0");
  if (s->iterations > 1000000)
    return gd_err_set(err, GD_EINVALID, "spec.iterations: at most 1000000");
  if (!finite_nonneg(s->min_tie_weight))
    return gd_err_set(err, GD_EINVALID, "spec.min_tie_weight: must be a finite number >= 0");
  int64_t since = 0, until = 0;
  if (gd_pb_window(s->window, &since, &until, err, "spec.window"))
    return err->code;
  if (s->n_flagged_labels > 64)
    return gd_err_set(err, GD_EINVALID, "spec.flagged_labels: at most 64");
  for (size_t i = 0; i < s->n_flagged_labels; i++) {
    char f[48];
    snprintf(f, sizeof f, "spec.flagged_labels[%zu]", i);
    if (gd_pb_check_label(s->flagged_labels[i], err, f))
      return err->code;
    if (strchr(s->flagged_labels[i], ','))
      return gd_err_set(err, GD_EINVALID, "%s: contains ','", f);
  }
  gd_strbuf_printf(b, "name=%s\n", s->name);
  if (s->algorithm)
    gd_strbuf_printf(b, "algorithm=%s\n", algo_names[s->algorithm]);
  if (s->evidence == GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_RARITY)
    gd_strbuf_printf(b, "evidence=rarity\n");
  if (s->resolution > 0)
    gd_strbuf_printf(b, "resolution=%.17g\n", s->resolution);
  if (s->iterations) {
    if (s->algorithm == GRAPHD__V1__ALGORITHM__ALGORITHM_CONNECTED_COMPONENTS ||
        s->algorithm == GRAPHD__V1__ALGORITHM__ALGORITHM_LOUVAIN ||
        s->algorithm == GRAPHD__V1__ALGORITHM__ALGORITHM_LABEL_PROPAGATION)
      ; /* ignored by these algorithms */
    else
      gd_strbuf_printf(b, "iterations=%u\n", s->iterations);
  }
  if (s->seed)
    gd_strbuf_printf(b, "seed=%llu\n", (unsigned long long)s->seed);
  if (s->warm_start == GRAPHD__V1__WARM_START__WARM_START_ON)
    gd_strbuf_printf(b, "warm_start=on\n");
  else if (s->warm_start == GRAPHD__V1__WARM_START__WARM_START_OFF)
    gd_strbuf_printf(b, "warm_start=off\n");
  if (s->min_tie_weight > 0)
    gd_strbuf_printf(b, "min_tie_weight=%.17g\n", s->min_tie_weight);
  if (since)
    gd_strbuf_printf(b, "since=%lld\n", (long long)since);
  if (until)
    gd_strbuf_printf(b, "until=%lld\n", (long long)until);
  if (s->n_flagged_labels) {
    gd_strbuf_printf(b, "flagged_labels=");
    for (size_t i = 0; i < s->n_flagged_labels; i++)
      gd_strbuf_printf(b, "%s%s", i ? "," : "", s->flagged_labels[i]);
    gd_strbuf_printf(b, "\n");
  }
  bool seen_w[GD_TYPE_MAX + 1] = {0}, seen_h[GD_TYPE_MAX + 1] = {0};
  if (s->n_type_weights) { /* types not listed keep their default weight */
    gd_evidence_params def;
    gd_evidence_defaults(&def);
    bool any = false;
    for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX && t < GD_EV_TYPES; t++) {
      double w = def.type_weight[t];
      for (size_t i = 0; i < s->n_type_weights; i++)
        if (s->type_weights[i] && (int)s->type_weights[i]->type == t)
          w = s->type_weights[i]->weight;
      any |= w > 0;
    }
    if (!any)
      return gd_err_set(err, GD_EINVALID,
                        "spec.type_weights: every type weight is 0, so nothing is evidence");
  }
  for (size_t i = 0; i < s->n_type_weights; i++) {
    const Graphd__V1__TypeWeight *w = s->type_weights[i];
    int t = (int)w->type;
    if (!GD_TYPE_VALID(t))
      return gd_err_set(err, GD_EINVALID, "spec.type_weights[%zu].type: unknown type", i);
    if (seen_w[t])
      return gd_err_set(err, GD_EINVALID, "spec.type_weights[%zu].type: %s given twice", i,
                        gd_type_name(t));
    seen_w[t] = true;
    if (!finite_nonneg(w->weight))
      return gd_err_set(err, GD_EINVALID,
                        "spec.type_weights[%zu].weight: must be a finite number >= 0", i);
    gd_strbuf_printf(b, "weight.%s=%.17g\n", gd_type_name(t), w->weight);
  }
  for (size_t i = 0; i < s->n_hub_caps; i++) {
    const Graphd__V1__HubCap *h = s->hub_caps[i];
    int t = (int)h->type;
    if (!GD_TYPE_VALID(t) || t == GD_TYPE_SELLER)
      return gd_err_set(err, GD_EINVALID,
                        "spec.hub_caps[%zu].type: must be a non-seller entity type", i);
    if (seen_h[t])
      return gd_err_set(err, GD_EINVALID, "spec.hub_caps[%zu].type: %s given twice", i,
                        gd_type_name(t));
    seen_h[t] = true;
    if (h->max_sellers < 1)
      return gd_err_set(err, GD_EINVALID, "spec.hub_caps[%zu].max_sellers: must be >= 1", i);
    gd_strbuf_printf(b, "hub_cap.%s=%llu\n", gd_type_name(t), (unsigned long long)h->max_sellers);
  }
  if (b->oom)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  return GD_OK;
}

static int64_t jint(json_object *o, const char *k) {
  json_object *v;
  return json_object_object_get_ex(o, k, &v) && v ? json_object_get_int64(v) : 0;
}

static double jdbl(json_object *o, const char *k) {
  json_object *v;
  return json_object_object_get_ex(o, k, &v) && v ? json_object_get_double(v) : 0;
}

static json_object *jobj(json_object *o, const char *k) {
  json_object *v;
  return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* A ClusteringSpec read from a spec object as the worker writes it
 * (gd_worker_spec_json): strings point into that object. */
typedef struct spec_pb {
  Graphd__V1__ClusteringSpec spec;
  Graphd__V1__TimeWindow window;
  Graphd__V1__TypeWeight tw[GD_TYPE_MAX + 1];
  Graphd__V1__TypeWeight *tw_p[GD_TYPE_MAX + 1];
  Graphd__V1__HubCap hc[GD_TYPE_MAX + 1];
  Graphd__V1__HubCap *hc_p[GD_TYPE_MAX + 1];
  char **labels;
} spec_pb;

static void spec_pb_fill(json_object *spec, spec_pb *p) {
  graphd__v1__clustering_spec__init(&p->spec);
  graphd__v1__time_window__init(&p->window);
  json_object *name = jobj(spec, "name");
  if (name)
    p->spec.name = (char *)json_object_get_string(name);
  json_object *algo = jobj(spec, "algorithm");
  const char *an = algo ? json_object_get_string(algo) : "";
  for (int i = 1; i <= 6; i++)
    if (an && strcmp(an, algo_names[i]) == 0)
      p->spec.algorithm = (Graphd__V1__Algorithm)i;
  p->spec.resolution = jdbl(spec, "resolution");
  json_object *evr = jobj(spec, "evidence");
  const char *evn = evr ? json_object_get_string(evr) : NULL;
  p->spec.evidence = evn && strcmp(evn, "rarity") == 0
                         ? GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_RARITY
                         : GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_CORROBORATED;
  json_object *warm = jobj(spec, "warm_start");
  const char *wn = warm ? json_object_get_string(warm) : NULL;
  p->spec.warm_start = wn && strcmp(wn, "on") == 0    ? GRAPHD__V1__WARM_START__WARM_START_ON
                       : wn && strcmp(wn, "off") == 0 ? GRAPHD__V1__WARM_START__WARM_START_OFF
                                                      : GRAPHD__V1__WARM_START__WARM_START_AUTO;
  int64_t it = jint(spec, "iterations");
  p->spec.iterations = it > 0 ? (uint32_t)it : 0;
  p->spec.seed = (uint64_t)jint(spec, "seed");
  p->spec.min_tie_weight = jdbl(spec, "min_tie_weight");
  p->window.since = jint(spec, "since");
  p->window.until = jint(spec, "until");
  if (p->window.since || p->window.until)
    p->spec.window = &p->window;
  json_object *fl = jobj(spec, "flagged_labels");
  if (fl && json_object_is_type(fl, json_type_array)) {
    size_t n = json_object_array_length(fl);
    p->labels = calloc(n ? n : 1, sizeof *p->labels);
    if (p->labels) {
      for (size_t i = 0; i < n; i++)
        p->labels[i] = (char *)json_object_get_string(json_object_array_get_idx(fl, i));
      p->spec.flagged_labels = p->labels;
      p->spec.n_flagged_labels = n;
    }
  }
  json_object *hc = jobj(spec, "hub_caps"), *tw = jobj(spec, "type_weights");
  for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX; t++) {
    json_object *x;
    if (hc && json_object_object_get_ex(hc, gd_type_name(t), &x) && x) {
      Graphd__V1__HubCap *h = &p->hc[p->spec.n_hub_caps];
      graphd__v1__hub_cap__init(h);
      h->type = (Graphd__V1__EntityType)t;
      h->max_sellers = (uint64_t)json_object_get_int64(x);
      p->hc_p[p->spec.n_hub_caps++] = h;
    }
    if (tw && json_object_object_get_ex(tw, gd_type_name(t), &x) && x) {
      Graphd__V1__TypeWeight *w = &p->tw[p->spec.n_type_weights];
      graphd__v1__type_weight__init(w);
      w->type = (Graphd__V1__EntityType)t;
      w->weight = json_object_get_double(x);
      p->tw_p[p->spec.n_type_weights++] = w;
    }
  }
  p->spec.hub_caps = p->hc_p;
  p->spec.type_weights = p->tw_p;
}

/* ---- Job messages ------------------------------------------------------ */

/* Packs a job; *ret is malloc'd. */
static int pack_job(const gd_job_info *ji, uint8_t **ret, size_t *ret_len) {
  Graphd__V1__Job m = GRAPHD__V1__JOB__INIT;
  Graphd__V1__ClusteringSpec *spec = NULL;
  if (ji->spec_len)
    spec = graphd__v1__clustering_spec__unpack(NULL, ji->spec_len, ji->spec);
  m.id = ji->id;
  m.spec = spec;
  m.state = (Graphd__V1__JobState)ji->state;
  m.stage = (char *)ji->stage;
  m.progress = ji->progress;
  m.reason = (char *)ji->reason;
  m.snapshot_id = ji->snapshot_id;
  m.created_at = ji->created_at;
  m.started_at = ji->started_at;
  m.ended_at = ji->ended_at;
  size_t n = protobuf_c_message_get_packed_size(&m.base);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf)
    protobuf_c_message_pack(&m.base, buf);
  if (spec)
    graphd__v1__clustering_spec__free_unpacked(spec, NULL);
  *ret = buf;
  *ret_len = n;
  return buf ? GD_OK : GD_ENOMEM;
}

void rpc_reply_job(gd_call *c, const gd_job_info *ji) {
  uint8_t *buf;
  size_t n;
  if (pack_job(ji, &buf, &n)) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  gd_call_finish(c, GD_OK, NULL, buf, n);
  free(buf);
}

/* Job.spec is the spec the worker will use, defaults resolved: the
 * worker's own parser reads the same text, and the spec object is the one
 * the manifest records (gd_worker_spec_json). */
int rpc_spec_blob(const char *text, size_t len, uint8_t **ret, size_t *ret_len, gd_err *err) {
  gd_worker_spec ws;
  int rc = gd_worker_spec_parse(text, len, &ws, err);
  if (rc)
    return rc;
  json_object *sj = gd_worker_spec_json(&ws);
  gd_worker_spec_free(&ws);
  spec_pb sp = {0};
  if (sj)
    spec_pb_fill(sj, &sp);
  size_t n = sj ? protobuf_c_message_get_packed_size(&sp.spec.base) : 0;
  uint8_t *blob = sj ? malloc(n ? n : 1) : NULL;
  if (blob)
    protobuf_c_message_pack(&sp.spec.base, blob);
  free(sp.labels);
  if (sj)
    json_object_put(sj);
  if (!blob)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  *ret = blob;
  *ret_len = n;
  return GD_OK;
}

/* ---- StartClustering / GetJob / CancelJob ----------------------------- */

void rpc_start_clustering(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__StartClusteringRequest *req = (Graphd__V1__StartClusteringRequest *)rpc_unpack(
      c, &graphd__v1__start_clustering_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_strbuf b = {0};
  gd_err err = {0};
  gd_job_info ji = {0};
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  gd_rpc *R = rpc_ctx(c);
  gd_strbuf_printf(&b, "# StartClustering\n");
  gd_jobs *jobs = rpc_need_jobs(c);
  if (!jobs)
    goto out;
  if (b.oom || rpc_spec_text(req->spec, &b, &err)) {
    if (b.oom && !err.code)
      gd_err_set(&err, GD_ENOMEM, "out of memory");
    rpc_fail(c, &err);
    goto out;
  }
  if (R->lim.cluster_max_sellers) { /* the cheap check first: counters */
    gd_rtxn *r = NULL;
    gd_stats st;
    int rc = gd_store_read_begin(R->store, &r, &err);
    if (!rc)
      rc = gd_store_stats(r, &st, &err);
    gd_store_read_end(r);
    if (!rc && st.entities[GD_TYPE_SELLER] > R->lim.cluster_max_sellers)
      rc = gd_err_set(&err, GD_ERESOURCE,
                      "the graph has %llu sellers, over the clustering limit of %llu "
                      "(--cluster-max-sellers)",
                      (unsigned long long)st.entities[GD_TYPE_SELLER],
                      (unsigned long long)R->lim.cluster_max_sellers);
    if (rc) {
      rpc_fail(c, &err);
      goto out;
    }
  }
  if (rpc_spec_blob(b.p, b.n, &blob, &blob_len, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  if (gd_jobs_submit(jobs, b.p, blob, blob_len, &ji, &err))
    rpc_fail(c, &err);
  else
    rpc_reply_job(c, &ji);
  gd_job_info_free(&ji);
out:
  free(blob);
  free(b.p);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void job_call(gd_call *c, const uint8_t *msg, size_t len, bool has_msg, bool cancel) {
  Graphd__V1__JobRequest *req = (Graphd__V1__JobRequest *)rpc_unpack(
      c, &graphd__v1__job_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_err err = {0};
  gd_job_info ji = {0};
  gd_jobs *jobs = rpc_need_jobs(c);
  if (jobs) {
    int rc = cancel ? gd_jobs_cancel(jobs, req->job_id, &ji, &err)
                    : gd_jobs_get(jobs, req->job_id, &ji, &err);
    if (rc)
      rpc_fail(c, &err);
    else
      rpc_reply_job(c, &ji);
    gd_job_info_free(&ji);
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

void rpc_get_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  job_call(c, msg, len, has_msg, false);
}

void rpc_cancel_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  job_call(c, msg, len, has_msg, true);
}

/* ---- WatchJob ------------------------------------------------------------ */

/*
 * One message per change of the job (state, stage, progress), the first at
 * once, until the job has ended; then OK. A listener on the job manager
 * wakes the call; at most one write is outstanding, changes meanwhile are
 * folded into the next message.
 */
typedef struct watch {
  rpc_follow f; /* first */
  gd_rpc *rpc;
  uint64_t job_id, handle;
  bool pending, sent_final, sent_any;
  gd_job_state last_state;
  char last_stage[GD_JOB_STAGE_MAX];
  double last_progress;
} watch;

/* With w->f.mu held and no write outstanding. */
static void watch_send(watch *w) {
  gd_job_info ji = {0};
  gd_err err;
  if (gd_jobs_get(w->rpc->jobs, w->job_id, &ji, &err))
    return; /* dropped from memory: cannot happen while not final */
  if (w->sent_any && ji.state == w->last_state && ji.progress == w->last_progress &&
      strcmp(ji.stage, w->last_stage) == 0) {
    gd_job_info_free(&ji);
    return;
  }
  uint8_t *buf;
  size_t n;
  if (pack_job(&ji, &buf, &n) == GD_OK) {
    w->sent_any = true;
    w->last_state = ji.state;
    w->last_progress = ji.progress;
    memcpy(w->last_stage, ji.stage, sizeof w->last_stage);
    w->sent_final = gd_job_state_final(ji.state);
    w->f.writing = true;
    gd_call_write(w->f.call, buf, n, false);
    free(buf);
  }
  gd_job_info_free(&ji);
}

static void watch_unlisten(rpc_follow *f) {
  watch *w = (watch *)f;
  gd_jobs_unlisten(w->rpc->jobs, w->handle);
}

static void watch_destroy(rpc_follow *f) { free(f); }

static void watch_send_f(rpc_follow *f) { watch_send((watch *)f); }

static void watch_changed(void *ctx) {
  watch *w = ctx;
  pthread_mutex_lock(&w->f.mu);
  if (!w->f.done) {
    if (w->f.writing)
      w->pending = true;
    else
      watch_send(w);
  }
  pthread_mutex_unlock(&w->f.mu);
}

void rpc_watch_written(gd_call *c, bool ok) {
  watch *w = gd_call_user(c);
  pthread_mutex_lock(&w->f.mu);
  bool stop = !ok || w->sent_final;
  bool end = rpc_follow_written(&w->f, stop);
  if (!end && !stop && !w->f.done && w->pending) {
    w->pending = false;
    watch_send(w);
  }
  bool final = ok && w->sent_final;
  pthread_mutex_unlock(&w->f.mu);
  if (end)
    rpc_follow_end(&w->f, final ? GD_OK : GD_ECANCELLED, final ? NULL : "call cancelled");
}

void rpc_watch_job(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__JobRequest *req = (Graphd__V1__JobRequest *)rpc_unpack(
      c, &graphd__v1__job_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  uint64_t id = req->job_id;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  gd_jobs *jobs = rpc_need_jobs(c);
  if (!jobs)
    return;
  gd_job_info ji = {0};
  gd_err err;
  if (gd_jobs_get(jobs, id, &ji, &err)) {
    rpc_fail(c, &err);
    return;
  }
  gd_job_info_free(&ji);
  watch *w = calloc(1, sizeof *w);
  if (!w) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  w->rpc = rpc_ctx(c);
  w->job_id = id;
  rpc_follow_init(&w->f, c, watch_unlisten, watch_destroy);
  w->handle = gd_jobs_listen(jobs, watch_changed, w); /* before w->f.mu: rpc_follow */
  rpc_follow_start(&w->f, w->handle != 0, watch_send_f);
}


/* ---- snapshots ------------------------------------------------------------ */

/* Everything a SnapshotManifest points to, in one arena-like holder. */
typedef struct manifest_pb {
  Graphd__V1__SnapshotManifest m;
  spec_pb sp;
  Graphd__V1__StageTiming timings[8];
  Graphd__V1__StageTiming *timing_p[8];
  Graphd__V1__ImportedFrom imported;
  json_object *root; /* strings point into it */
} manifest_pb;

static void manifest_free(manifest_pb *p) {
  free(p->sp.labels);
  if (p->root)
    json_object_put(p->root);
}

static void manifest_fill(const gd_snapshot_view *v, manifest_pb *p) {
  memset(p, 0, sizeof *p);
  graphd__v1__snapshot_manifest__init(&p->m);
  graphd__v1__clustering_spec__init(&p->sp.spec);
  p->m.id = v->id;
  p->m.created_at = v->created_at;
  p->m.clusters = v->n_clusters;
  p->m.sellers = v->n_assignments;
  p->m.spec = &p->sp.spec;
  struct json_tokener *tok = json_tokener_new();
  if (tok) {
    p->root = json_tokener_parse_ex(tok, v->manifest, (int)v->manifest_len);
    json_tokener_free(tok);
  }
  json_object *r = p->root;
  if (!r || !json_object_is_type(r, json_type_object))
    return;
  p->m.previous_snapshot_id = (uint64_t)jint(r, "previous_snapshot_id");
  json_object *warm = jobj(r, "warm_started");
  p->m.warm_started = warm && json_object_get_boolean(warm);
  json_object *im = jobj(r, "imported");
  if (im) {
    graphd__v1__imported_from__init(&p->imported);
    json_object *eng = jobj(im, "engine");
    p->imported.engine = eng ? (char *)json_object_get_string(eng) : (char *)"";
    p->imported.rows = (uint64_t)jint(im, "rows");
    p->imported.sellers_unassigned = (uint64_t)jint(im, "sellers_unassigned");
    p->m.imported = &p->imported;
  }
  json_object *spec = jobj(r, "spec");
  if (spec) {
    spec_pb_fill(spec, &p->sp);
    p->m.seed = p->sp.spec.seed;
  }
  json_object *name = jobj(r, "name");
  if (name)
    p->sp.spec.name = (char *)json_object_get_string(name);
  json_object *in = jobj(r, "input");
  if (in) {
    json_object *ck = jobj(in, "checksum");
    if (ck)
      p->m.input_checksum = (char *)json_object_get_string(ck);
    p->m.sellers = (uint64_t)jint(in, "sellers");
    json_object *fi = jobj(in, "from_image");
    if (fi) {
      p->m.read_from_image = (uint64_t)jint(fi, "snapshot_id");
      p->m.patched_ids = (uint64_t)jint(fi, "changed_ids");
    }
  }
  json_object *pr = jobj(r, "projection");
  if (pr) {
    p->m.ties = (uint64_t)jint(pr, "ties");
    p->m.hubs_skipped = (uint64_t)jint(pr, "hubs_skipped");
  }
  json_object *res = jobj(r, "result");
  if (res) {
    p->m.objective = jdbl(res, "objective");
    p->m.modularity = jdbl(res, "modularity");
    p->m.flagged_sellers = (uint64_t)jint(res, "flagged_sellers");
    p->m.risk_base_rate = jdbl(res, "risk_base_rate");
  }
  static const char *stages[] = {"open", "read", "project", "cluster", "match", "summarize",
                                 "total"};
  json_object *tm = jobj(r, "timings_ms");
  for (size_t i = 0; tm && i < sizeof stages / sizeof *stages; i++) {
    json_object *x;
    if (!json_object_object_get_ex(tm, stages[i], &x) || !x)
      continue;
    Graphd__V1__StageTiming *st = &p->timings[p->m.n_timings];
    graphd__v1__stage_timing__init(st);
    st->stage = (char *)stages[i];
    st->seconds = json_object_get_double(x) / 1000.0;
    p->timing_p[p->m.n_timings++] = st;
  }
  p->m.timings = p->timing_p;
  p->m.peak_rss_bytes = (uint64_t)jint(r, "peak_rss_bytes");
  if (p->sp.spec.name == NULL)
    p->sp.spec.name = (char *)"";
}

void rpc_get_snapshot(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__SnapshotRequest *req = (Graphd__V1__SnapshotRequest *)rpc_unpack(
      c, &graphd__v1__snapshot_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rtxn *r = NULL;
  gd_snapshot_view v;
  gd_err err;
  if (gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      gd_store_snapshot_get(r, req->snapshot_id, &v, &err)) {
    rpc_fail(c, &err);
  } else {
    manifest_pb p;
    manifest_fill(&v, &p);
    rpc_reply(c, &p.m.base);
    manifest_free(&p);
  }
  gd_store_read_end(r);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Page tokens "s<id>" / "c<offset>". */
static int parse_tok(const char *tok, char kind, uint64_t *ret, gd_err *err) {
  *ret = 0;
  if (!tok[0])
    return GD_OK;
  char *end;
  if (tok[0] != kind || !tok[1] || tok[1] == '-')
    return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
  unsigned long long v = strtoull(tok + 1, &end, 10);
  if (*end)
    return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
  *ret = v;
  return GD_OK;
}

void rpc_list_snapshots(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ListSnapshotsRequest *req = (Graphd__V1__ListSnapshotsRequest *)rpc_unpack(
      c, &graphd__v1__list_snapshots_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rtxn *r = NULL;
  gd_err err;
  uint64_t before;
  size_t limit = req->limit ? req->limit : 100, n = 0;
  bool more = false;
  gd_snapshot_view *vs = NULL;
  manifest_pb *ps = NULL;
  gd_rpc *R = rpc_ctx(c);
  if (limit > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "limit: at most %zu", R->lim.result_cap);
    rpc_fail(c, &err);
    goto out;
  }
  if (parse_tok(req->page_token, 's', &before, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  vs = calloc(limit, sizeof *vs);
  if (!vs) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    goto out;
  }
  if (gd_store_read_begin(R->store, &r, &err) ||
      gd_store_snapshot_list(r, before, limit, vs, &n, &more, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  ps = calloc(n ? n : 1, sizeof *ps);
  Graphd__V1__SnapshotManifest **mp = calloc(n ? n : 1, sizeof *mp);
  if (!ps || !mp) {
    free(mp);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    manifest_fill(&vs[i], &ps[i]);
    mp[i] = &ps[i].m;
  }
  Graphd__V1__ListSnapshotsReply rep = GRAPHD__V1__LIST_SNAPSHOTS_REPLY__INIT;
  char tok[32] = "";
  rep.snapshots = mp;
  rep.n_snapshots = n;
  if (more && n)
    snprintf(tok, sizeof tok, "s%llu", (unsigned long long)vs[n - 1].id);
  rep.next_page_token = tok;
  rpc_reply(c, &rep.base);
  for (size_t i = 0; i < n; i++)
    manifest_free(&ps[i]);
  free(mp);
out:
  free(ps);
  free(vs);
  gd_store_read_end(r);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* DeleteSnapshot: through the writer. */
typedef struct del_op {
  gd_write_op op;
  gd_call *call;
  uint64_t id;
} del_op;

static int del_apply(gd_wtxn *t, gd_write_op *op, gd_err *err) {
  int rc = gd_store_snapshot_delete(t, ((del_op *)op)->id, err);
  return rc ? rc : rpc_audit_txn(t, ((del_op *)op)->call, err);
}

/* After the commit, on a query thread (an unlink of a large file is not
 * the writer thread's to wait for): the snapshot's export image, if a job
 * kept one, goes; then the reply. No job can use the image now (a job
 * loads an image only for its previous snapshot, and checks the id the
 * manifest names), and it can take as much room as the graph. Best
 * effort: a job that loaded it before the delete keeps its mapping. */
static void del_finish(void *arg) {
  del_op *d = arg;
  gd_jobs *jobs = rpc_ctx(d->call)->jobs;
  char path[4200];
  if (jobs && gd_image_path(gd_jobs_data_dir(jobs), d->id, path, sizeof path))
    unlink(path);
  Graphd__V1__DeleteSnapshotReply rep = GRAPHD__V1__DELETE_SNAPSHOT_REPLY__INIT;
  rpc_reply(d->call, &rep.base);
  free(d);
}

static void del_done(gd_write_op *op, const gd_err *err) {
  del_op *d = (del_op *)op;
  if (!err->code) {
    gd_call_defer(d->call, del_finish, d);
    return;
  }
  gd_call_mark_audited(d->call, false);
  rpc_fail(d->call, err);
  free(d);
}

void rpc_delete_snapshot(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__SnapshotRequest *req = (Graphd__V1__SnapshotRequest *)rpc_unpack(
      c, &graphd__v1__snapshot_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  uint64_t id = req->snapshot_id;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  if (!id) {
    rpc_fail_code(c, GD_EINVALID, "snapshot_id: required (0 is not accepted for deletes)");
    return;
  }
  del_op *d = calloc(1, sizeof *d);
  if (!d) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  d->op.apply = del_apply;
  d->op.done = del_done;
  d->call = c;
  d->id = id;
  gd_writer_submit(rpc_ctx(c)->writer, &d->op);
}

/* ---- clusters ------------------------------------------------------------- */

typedef struct cl_row {
  uint64_t id;
  gd_cluster_summary s;
} cl_row;

typedef struct cl_collect {
  cl_row *rows;
  size_t n, cap;
  uint64_t min_size;
  gd_err *err;
} cl_collect;

static int cl_visit(void *ctx, uint64_t cluster, const void *summary, size_t len) {
  cl_collect *cc = ctx;
  gd_cluster_summary s;
  if (gd_summary_decode(summary, len, &s, cc->err))
    return -1;
  if (s.size < cc->min_size)
    return 0;
  if (cc->n == cc->cap) {
    size_t nc = cc->cap ? cc->cap * 2 : 256;
    cl_row *nr = realloc(cc->rows, nc * sizeof *nr);
    if (!nr) {
      gd_err_set(cc->err, GD_ENOMEM, "out of memory");
      return -1;
    }
    cc->rows = nr;
    cc->cap = nc;
  }
  cc->rows[cc->n++] = (cl_row){cluster, s};
  return 0;
}

static int by_risk(const void *pa, const void *pb) {
  const cl_row *a = pa, *b = pb;
  if (a->s.risk != b->s.risk)
    return a->s.risk > b->s.risk ? -1 : 1;
  if (a->s.size != b->s.size)
    return a->s.size > b->s.size ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static int by_size(const void *pa, const void *pb) {
  const cl_row *a = pa, *b = pb;
  if (a->s.size != b->s.size)
    return a->s.size > b->s.size ? -1 : 1;
  if (a->s.risk != b->s.risk)
    return a->s.risk > b->s.risk ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* A summary as a ClusterSummary; top entities are read in r (Entity
 * strings point into the read transaction: pack before it ends). */
typedef struct cl_pb {
  Graphd__V1__ClusterSummary m;
  Graphd__V1__SupplySource src[GD_SUMMARY_TOP];
  Graphd__V1__SupplySource *src_p[GD_SUMMARY_TOP];
  Graphd__V1__Entity ent[GD_SUMMARY_TOP];
} cl_pb;

/*
 * Entity id as snapshot snap named it (store/snapshot.h, snap_name): id,
 * type and key, and for a detailed name also its labels, times and seller
 * count when detail is asked for, copied into the arena. *flagged (may be NULL) gets its flagged
 * state. GD_ENOTFOUND: not named (deleted before the snapshot was
 * written). A snapshot without names (has_names false: written before they
 * were kept) reads today's record instead.
 */
static int snap_entity(gd_rtxn *r, uint64_t snap, bool has_names, uint64_t id, bool detail,
                       gd_arena **a, Graphd__V1__Entity *out, bool *flagged, gd_err *err) {
  if (flagged)
    *flagged = false;
  if (!has_names) {
    gd_ref ref = {.id = id};
    gd_entity_view v;
    int rc = gd_store_get(r, &ref, &v, err);
    if (rc)
      return rc;
    if (gd_pb_entity(&v, false, a, out))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    return GD_OK;
  }
  gd_snap_name nm;
  int rc = gd_store_snapshot_name(r, snap, id, &nm, err);
  if (rc)
    return rc;
  if (flagged)
    *flagged = nm.flagged;
  if (detail && nm.detail) {
    /* The snapshot kept the record's labels region as is. */
    gd_entity_view v = {.id = id,
                        .type = nm.type,
                        .key = nm.key,
                        .first_seen = nm.d.first_seen,
                        .last_seen = nm.d.last_seen,
                        .seller_count = nm.d.seller_count,
                        .nlabels = nm.d.nlabels,
                        .labels_raw = nm.d.labels_raw};
    if (gd_pb_entity(&v, false, a, out))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    return GD_OK;
  }
  char *key = gd_arena_alloc(a, nm.key.n + 1);
  if (!key)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memcpy(key, nm.key.p, nm.key.n);
  key[nm.key.n] = 0;
  graphd__v1__entity__init(out);
  out->id = id;
  out->type = (Graphd__V1__EntityType)nm.type;
  out->key = key;
  return GD_OK;
}

static int cl_fill(gd_rtxn *r, uint64_t snap, bool has_names, uint64_t id,
                   const gd_cluster_summary *s, gd_arena **a, cl_pb *p, gd_err *err) {
  graphd__v1__cluster_summary__init(&p->m);
  p->m.id = id;
  p->m.size = s->size;
  p->m.flagged = s->flagged;
  p->m.risk = s->risk;
  p->m.cohesion = s->cohesion;
  p->m.top_shared = p->src_p;
  for (int i = 0; i < s->n_top; i++) {
    Graphd__V1__SupplySource *src = &p->src[p->m.n_top_shared];
    graphd__v1__supply_source__init(src);
    int rc = snap_entity(r, snap, has_names, s->top[i].id, false, a, &p->ent[p->m.n_top_shared], NULL,
                         err);
    if (rc == GD_ENOTFOUND)
      continue; /* deleted before the snapshot was written (or since, without names) */
    if (rc)
      return rc;
    src->entity = &p->ent[p->m.n_top_shared];
    src->cluster_sellers = s->top[i].users;
    src->total_sellers = s->top[i].total;
    src->score = gd_summary_score(s->top[i].users, s->top[i].total);
    p->src_p[p->m.n_top_shared++] = src;
  }
  return GD_OK;
}

/* ListClusters through a stored order (worker/snapfmt.h, snap_order). */
typedef struct ord_collect {
  int order;
  uint64_t min_size;
  size_t want; /* limit + 1: one more tells whether more follow */
  size_t n;
  uint64_t *ids;
  uint8_t *rows;
} ord_collect;

static int ord_visit(void *ctx, const uint8_t *row) {
  ord_collect *oc = ctx;
  uint64_t id, size;
  gd_order_row_decode(oc->order, row, &id, &size);
  if (size < oc->min_size)
    return oc->order == GD_ORDER_SIZE; /* by size: none of the rest is big enough */
  oc->ids[oc->n] = id;
  memcpy(oc->rows + oc->n * GD_ORDER_ROW, row, GD_ORDER_ROW);
  return ++oc->n == oc->want;
}

/*
 * The page token of an ordered listing: "o<snapshot>.<order>.<min_size>."
 * then the last row sent in hex, so a page starts with one seek whatever
 * its position (O(page size); by risk with min_size, also the smaller
 * clusters passed over, 24 bytes each). A token of another snapshot, order
 * or min_size is INVALID_ARGUMENT.
 */
static int ord_token_parse(const char *tok, uint64_t snap, int order, uint64_t min_size,
                           uint8_t *row, gd_err *err) {
  unsigned long long ts, tm;
  int to, used = 0;
  if (sscanf(tok, "o%llu.%d.%llu.%n", &ts, &to, &tm, &used) != 3 || !used ||
      strlen(tok + used) != 2 * GD_ORDER_ROW)
    return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
  for (int i = 0; i < GD_ORDER_ROW; i++) {
    unsigned b;
    if (sscanf(tok + used + 2 * i, "%2x", &b) != 1)
      return gd_err_set(err, GD_EINVALID, "page_token: not a token issued by this server");
    row[i] = (uint8_t)b;
  }
  if (ts != snap || to != order || tm != min_size)
    return gd_err_set(err, GD_EINVALID,
                      "page_token: from another listing (snapshot %llu, order %d, min_size %llu; "
                      "this one: snapshot %llu, order %d, min_size %llu)",
                      ts, to, tm, (unsigned long long)snap, order, (unsigned long long)min_size);
  return GD_OK;
}

/* Answers c with the summaries rows[0 .. n) (supply sources named as
 * snapshot snap recorded them) and next_page_token tok. GD_OK: answered;
 * otherwise the error in err, nothing sent. */
static int cl_reply(gd_call *c, gd_rtxn *r, uint64_t snap, bool has_names, const cl_row *rows,
                    size_t n, const char *tok, gd_err *err) {
  gd_arena *a = NULL;
  cl_pb *ps = calloc(n ? n : 1, sizeof *ps);
  Graphd__V1__ClusterSummary **mp = calloc(n ? n : 1, sizeof *mp);
  int rc = ps && mp ? GD_OK : gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < n && !rc; i++) {
    rc = cl_fill(r, snap, has_names, rows[i].id, &rows[i].s, &a, &ps[i], err);
    mp[i] = &ps[i].m;
  }
  if (!rc) {
    Graphd__V1__ListClustersReply rep = GRAPHD__V1__LIST_CLUSTERS_REPLY__INIT;
    rep.clusters = mp;
    rep.n_clusters = n;
    rep.next_page_token = (char *)tok;
    rpc_reply(c, &rep.base);
  }
  gd_arena_free(a);
  free(ps);
  free(mp);
  return rc;
}

/* Answers c from a stored order: 1 done, 0 the snapshot has none (the
 * caller sorts), -1 error in err (not answered). */
static int list_ordered(gd_call *c, gd_rtxn *r, const Graphd__V1__ListClustersRequest *req,
                        uint64_t snap, bool has_names, size_t limit, gd_err *err) {
  bool by_size = req->order == GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_SIZE;
  ord_collect oc = {.order = by_size ? GD_ORDER_SIZE
                             : req->min_size >= 2 ? GD_ORDER_RISK_MULTI
                                                  : GD_ORDER_RISK,
                    .min_size = req->min_size,
                    .want = limit + 1};
  uint8_t after[GD_ORDER_ROW];
  bool indexed;
  int ret = -1;
  cl_row *rows = NULL;
  if (gd_store_order_visit(r, snap, oc.order, NULL, NULL, NULL, &indexed, err))
    return -1;
  if (!indexed) {
    /* No rows: an old snapshot, or one without clusters (ask which). */
    gd_snapshot_view sv;
    if (gd_store_snapshot_get(r, snap, &sv, err))
      return -1;
    if (sv.n_clusters)
      return 0;
  }
  if (req->page_token[0] && ord_token_parse(req->page_token, snap, (int)req->order,
                                            req->min_size, after, err))
    return -1;
  oc.ids = malloc(oc.want * sizeof *oc.ids);
  oc.rows = malloc(oc.want * GD_ORDER_ROW);
  rows = malloc(oc.want * sizeof *rows);
  if (!oc.ids || !oc.rows || !rows) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  if (indexed && gd_store_order_visit(r, snap, oc.order, req->page_token[0] ? after : NULL,
                                      ord_visit, &oc, &indexed, err))
    goto out;
  size_t n = oc.n < limit ? oc.n : limit;
  for (size_t i = 0; i < n; i++) {
    const void *raw;
    size_t raw_len;
    rows[i].id = oc.ids[i];
    if (gd_store_cluster_get(r, snap, oc.ids[i], &raw, &raw_len, err) ||
        gd_summary_decode(raw, raw_len, &rows[i].s, err))
      goto out;
  }
  char tok[96] = "";
  if (oc.n > limit) {
    int k = snprintf(tok, sizeof tok, "o%llu.%d.%llu.", (unsigned long long)snap, (int)req->order,
                     (unsigned long long)req->min_size);
    for (int i = 0; i < GD_ORDER_ROW; i++)
      k += snprintf(tok + k, sizeof tok - (size_t)k, "%02x",
                    oc.rows[(n - 1) * GD_ORDER_ROW + (size_t)i]);
  }
  ret = cl_reply(c, r, snap, has_names, rows, n, tok, err) ? -1 : 1;
out:
  free(rows);
  free(oc.ids);
  free(oc.rows);
  return ret;
}

void rpc_list_clusters(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ListClustersRequest *req = (Graphd__V1__ListClustersRequest *)rpc_unpack(
      c, &graphd__v1__list_clusters_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rtxn *r = NULL;
  gd_err err = {0};
  uint64_t off;
  size_t limit = req->limit ? req->limit : 100;
  cl_collect cc = {.min_size = req->min_size, .err = &err};
  bool has_names = false;
  gd_rpc *R = rpc_ctx(c);
  if (req->order < 0 || req->order > 2) {
    rpc_fail_code(c, GD_EINVALID, "order: unknown order");
    goto out;
  }
  if (limit > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "limit: at most %zu", R->lim.result_cap);
    rpc_fail(c, &err);
    goto out;
  }
  gd_snapshot_view sv;
  if (gd_store_read_begin(R->store, &r, &err) ||
      gd_store_snapshot_get(r, req->snapshot_id, &sv, &err) ||
      gd_store_snapshot_has_names(r, sv.id, &has_names, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  int done = list_ordered(c, r, req, sv.id, has_names, limit, &err);
  if (done < 0)
    rpc_fail(c, &err);
  if (done)
    goto out;
  /* A snapshot written before orders were stored: sort its summaries. */
  if (parse_tok(req->page_token, 'c', &off, &err) ||
      gd_store_clusters_visit(r, sv.id, 0, cl_visit, &cc, NULL, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  if (cc.n > 1)
    qsort(cc.rows, cc.n, sizeof *cc.rows,
        req->order == GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_SIZE ? by_size : by_risk);
  size_t start = off < cc.n ? (size_t)off : cc.n;
  size_t n = cc.n - start < limit ? cc.n - start : limit;
  char tok[32] = "";
  if (start + n < cc.n)
    snprintf(tok, sizeof tok, "c%zu", start + n);
  if (cl_reply(c, r, sv.id, has_names, cc.rows ? cc.rows + start : NULL, n, tok, &err))
    rpc_fail(c, &err);
out:
  gd_store_read_end(r);
  free(cc.rows);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* GetCluster's links: the page's kept links, then their entities. */
typedef struct link_collect {
  gd_snap_link *l;
  size_t n, cap;
  bool nomem;
} link_collect;

static int link_visit(void *ctx, const gd_snap_link *l) {
  link_collect *lc = ctx;
  if (lc->n == lc->cap) {
    size_t cap = lc->cap ? 2 * lc->cap : 256;
    gd_snap_link *nl = realloc(lc->l, cap * sizeof *nl);
    if (!nl) {
      lc->nomem = true;
      return 1;
    }
    lc->l = nl;
    lc->cap = cap;
  }
  lc->l[lc->n++] = *l;
  return 0;
}

/*
 * Fills rep's links and linked from the links of the page's members
 * (sellers in (after, upto]) that snapshot snap kept for cluster.
 * Links to an entity the snapshot does not name are left out. Arrays come
 * from the arena; lc's is the caller's to free.
 */
static int cluster_links(gd_rtxn *r, uint64_t snap, uint64_t cluster, uint64_t after,
                         uint64_t upto, link_collect *lc, gd_arena **a,
                         Graphd__V1__GetClusterReply *rep, gd_err *err) {
  bool kept;
  int rc = gd_store_cluster_links(r, snap, cluster, after, upto, link_visit, lc, &kept, err);
  if (rc)
    return rc;
  if (lc->nomem)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  uint64_t *ids = gd_arena_alloc(a, (lc->n ? lc->n : 1) * sizeof *ids);
  if (!ids)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  size_t nid = 0;
  for (size_t i = 0; i < lc->n; i++)
    ids[nid++] = lc->l[i].entity;
  qsort(ids, nid, sizeof *ids, gd_cmp_u64);
  size_t u = 0;
  for (size_t i = 0; i < nid; i++)
    if (!u || ids[i] != ids[u - 1])
      ids[u++] = ids[i];
  Graphd__V1__Entity *ents = gd_arena_alloc(a, (u ? u : 1) * sizeof *ents);
  Graphd__V1__Entity **ep = gd_arena_alloc(a, (u ? u : 1) * sizeof *ep);
  Graphd__V1__ClusterLink *lv = gd_arena_alloc(a, (lc->n ? lc->n : 1) * sizeof *lv);
  Graphd__V1__ClusterLink **lp = gd_arena_alloc(a, (lc->n ? lc->n : 1) * sizeof *lp);
  if (!ents || !ep || !lv || !lp)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  size_t ne = 0;
  for (size_t i = 0; i < u; i++) {
    rc = snap_entity(r, snap, true, ids[i], true, a, &ents[ne], NULL, err);
    if (rc == GD_ENOTFOUND)
      continue;
    if (rc)
      return rc;
    ids[ne] = ids[i];
    ep[ne] = &ents[ne];
    ne++;
  }
  size_t nl = 0;
  for (size_t i = 0; i < lc->n; i++) {
    if (!bsearch(&lc->l[i].entity, ids, ne, sizeof *ids, gd_cmp_u64))
      continue;
    graphd__v1__cluster_link__init(&lv[nl]);
    lv[nl].seller_id = lc->l[i].seller;
    lv[nl].entity_id = lc->l[i].entity;
    lv[nl].first_seen = lc->l[i].first_seen;
    lv[nl].last_seen = lc->l[i].last_seen;
    lv[nl].count = lc->l[i].count;
    lp[nl] = &lv[nl];
    nl++;
  }
  rep->links_kept = kept;
  rep->links = lp;
  rep->n_links = nl;
  rep->linked = ep;
  rep->n_linked = ne;
  return GD_OK;
}

typedef struct mem_collect {
  uint64_t cluster, after;
  uint64_t *ids;
  size_t n, max;
  bool more;
} mem_collect;

/* The scan for snapshots written before snap_member existed. */
static int mem_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  mem_collect *m = ctx;
  for (size_t i = 0; i < n; i++)
    if (clusters[i] == m->cluster && sellers[i] > m->after) {
      if (m->n == m->max) {
        m->more = true;
        return 1;
      }
      m->ids[m->n++] = sellers[i];
    }
  return 0;
}

/*
 * GetCluster: the summary, members from snap_member (O(log n + members);
 * a scan of the assignments for older snapshots) and the strongest stored
 * ties.
 */
void rpc_get_cluster(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__GetClusterRequest *req = (Graphd__V1__GetClusterRequest *)rpc_unpack(
      c, &graphd__v1__get_cluster_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  gd_rtxn *r = NULL;
  gd_err err = {0};
  gd_arena *a = NULL;
  const void *raw;
  size_t raw_len;
  gd_cluster_summary s;
  uint64_t snap = req->snapshot_id;
  size_t max = req->max_members ? req->max_members : 100;
  size_t max_ties = req->max_ties ? req->max_ties : 100;
  mem_collect mc = {.cluster = req->cluster_id, .after = req->after_seller};
  Graphd__V1__Entity *ents = NULL, **ep = NULL, *live = NULL, **lp = NULL;
  uint64_t *flg = NULL;
  bool has_names = false;
  Graphd__V1__EvidenceTie *tv = NULL, **tp = NULL;
  gd_snap_tie *ties = NULL;
  size_t n_ties = 0;
  uint64_t ties_total = 0;
  bool indexed;
  bool links = req->links;
  link_collect lc = {0};
  cl_pb p;
  gd_rpc *R = rpc_ctx(c);
  if (max > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "max_members: at most %zu", R->lim.result_cap);
    rpc_fail(c, &err);
    goto out;
  }
  if (max_ties > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "max_ties: at most %zu", R->lim.result_cap);
    rpc_fail(c, &err);
    goto out;
  }
  if (!req->cluster_id) {
    rpc_fail_code(c, GD_EINVALID, "cluster_id: required");
    goto out;
  }
  mc.max = max;
  mc.ids = calloc(max, sizeof *mc.ids);
  ents = calloc(max, sizeof *ents);
  ep = calloc(max, sizeof *ep);
  flg = calloc(max, sizeof *flg);
  live = req->live ? calloc(max, sizeof *live) : NULL;
  lp = req->live ? calloc(max, sizeof *lp) : NULL;
  ties = calloc(max_ties, sizeof *ties);
  tv = calloc(max_ties, sizeof *tv);
  tp = calloc(max_ties, sizeof *tp);
  if (!mc.ids || !ents || !ep || !flg || (req->live && (!live || !lp)) || !ties || !tv || !tp) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    goto out;
  }
  if (gd_store_read_begin(R->store, &r, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  if (!snap) {
    gd_snapshot_view v;
    if (gd_store_snapshot_get(r, 0, &v, &err)) {
      rpc_fail(c, &err);
      goto out;
    }
    snap = v.id;
  }
  if (gd_store_snapshot_has_names(r, snap, &has_names, &err) ||
      gd_store_cluster_get(r, snap, req->cluster_id, &raw, &raw_len, &err) ||
      gd_summary_decode(raw, raw_len, &s, &err) ||
      cl_fill(r, snap, has_names, req->cluster_id, &s, &a, &p, &err) ||
      gd_store_cluster_members(r, snap, req->cluster_id, req->after_seller, max, mc.ids, &mc.n,
                               &mc.more, &indexed, &err) ||
      (!indexed && gd_store_assignments_visit(r, snap, 0, mem_visit, &mc, NULL, &err)) ||
      gd_store_cluster_ties(r, snap, req->cluster_id, max_ties, ties, &n_ties, &ties_total,
                            &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  Graphd__V1__GetClusterReply rep = GRAPHD__V1__GET_CLUSTER_REPLY__INIT;
  rep.cluster = &p.m;
  for (size_t i = 0; i < mc.n; i++) {
    bool flagged;
    int rc = snap_entity(r, snap, has_names, mc.ids[i], links, &a, &ents[rep.n_members],
                         &flagged, &err);
    if (rc == GD_ENOTFOUND)
      continue; /* deleted before the snapshot was written (or since, without names) */
    if (rc) {
      rpc_fail(c, &err);
      goto out;
    }
    ents[rep.n_members].cluster_id = req->cluster_id;
    ents[rep.n_members].cluster_snapshot_id = snap;
    ep[rep.n_members] = &ents[rep.n_members];
    if (flagged)
      flg[rep.n_flagged_members++] = mc.ids[i];
    if (req->live) {
      gd_ref ref = {.id = mc.ids[i]};
      gd_entity_view v;
      rc = gd_store_get(r, &ref, &v, &err);
      if (rc && rc != GD_ENOTFOUND) {
        rpc_fail(c, &err);
        goto out;
      }
      if (rc == GD_OK) {
        if (gd_pb_entity(&v, true, &a, &live[rep.n_live_members])) {
          rpc_fail_code(c, GD_ENOMEM, "out of memory");
          goto out;
        }
        lp[rep.n_live_members] = &live[rep.n_live_members];
        rep.n_live_members++;
      }
    }
    rep.n_members++;
  }
  rep.members = ep;
  rep.flagged_members = flg;
  rep.live_members = lp;
  rep.more_members = mc.more;
  if (rpc_cluster_provisional(r, snap, req->cluster_id, req->after_seller, max, &a, &rep,
                              &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  if (links && s.links_kept &&
      cluster_links(r, snap, req->cluster_id, req->after_seller,
                    mc.more && mc.n ? mc.ids[mc.n - 1] : UINT64_MAX, &lc, &a, &rep, &err)) {
    rpc_fail(c, &err);
    goto out;
  }
  for (size_t i = 0; i < n_ties; i++) {
    graphd__v1__evidence_tie__init(&tv[i]);
    tv[i].seller_a = ties[i].a;
    tv[i].seller_b = ties[i].b;
    tv[i].weight = ties[i].weight;
    for (int end = 0; end < 2 && has_names; end++) {
      Graphd__V1__Entity e;
      int rc = snap_entity(r, snap, true, end ? ties[i].b : ties[i].a, false, &a, &e, NULL, &err);
      if (rc && rc != GD_ENOTFOUND) {
        rpc_fail(c, &err);
        goto out;
      }
      if (!rc)
        *(end ? &tv[i].key_b : &tv[i].key_a) = e.key;
    }
    tp[i] = &tv[i];
  }
  rep.ties = tp;
  rep.n_ties = n_ties;
  rep.ties_stored = ties_total;
  rpc_reply(c, &rep.base);
out:
  gd_store_read_end(r);
  gd_arena_free(a);
  free(mc.ids);
  free(ents);
  free(ep);
  free(flg);
  free(live);
  free(lp);
  free(ties);
  free(tv);
  free(tp);
  free(lc.l);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- StreamAssignments ------------------------------------------------------ */

/*
 * Batches of up to ASSIGN_BATCH pairs in seller order. Each batch is read
 * in its own short read transaction, from after the last seller sent, so a
 * slow client holds no reader; a snapshot deleted meanwhile ends the
 * stream NOT_FOUND. Writes carry the buffer hint (coalesced), the status
 * flushes the last.
 */
#define ASSIGN_BATCH 4096

/* NUL-terminated keys in one growing buffer, addressed by offset (the
 * buffer moves as it grows). */
typedef struct keypool {
  char *p;
  size_t n, cap;
} keypool;

static int keypool_add(keypool *kp, gd_str key, size_t *ret_off, gd_err *err) {
  if (kp->n + key.n + 1 > kp->cap) {
    size_t nc = kp->cap ? 2 * kp->cap : 1 << 16;
    while (nc < kp->n + key.n + 1)
      nc *= 2;
    char *nb = realloc(kp->p, nc);
    if (!nb)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    kp->p = nb;
    kp->cap = nc;
  }
  memcpy(kp->p + kp->n, key.p, key.n);
  kp->p[kp->n + key.n] = 0;
  *ret_off = kp->n;
  kp->n += key.n + 1;
  return GD_OK;
}

/* The key snapshot snap recorded for seller id, or today's record's for a
 * snapshot without names (has_names false); "" when there is none (a
 * seller deleted before the snapshot was written, or since). A view. */
static int snap_key(gd_rtxn *r, uint64_t snap, bool has_names, uint64_t id, gd_str *ret,
                    gd_err *err) {
  gd_snap_name nm;
  gd_entity_view v;
  gd_ref ref = {.id = id};
  int rc = has_names ? gd_store_snapshot_name(r, snap, id, &nm, err)
                     : gd_store_get(r, &ref, &v, err);
  *ret = rc ? (gd_str){"", 0} : has_names ? nm.key : v.key;
  return rc == GD_ENOTFOUND ? GD_OK : rc;
}

typedef struct astream {
  gd_rpc *rpc;
  uint64_t snap, after;
  uint64_t sellers[ASSIGN_BATCH], clusters[ASSIGN_BATCH];
  size_t n;
  bool end;
  bool keys, has_names;
  char *kp[ASSIGN_BATCH]; /* keys: into kpool */
  size_t koff[ASSIGN_BATCH];
  keypool kpool;
  uint8_t *buf;
  size_t cap;
} astream;

/* The batch's keys as snapshot s->snap recorded them (today's records for
 * a snapshot without names). */
static int as_keys(astream *s, gd_rtxn *r, gd_err *err) {
  s->kpool.n = 0;
  for (size_t i = 0; i < s->n; i++) {
    gd_str key;
    int rc = snap_key(r, s->snap, s->has_names, s->sellers[i], &key, err);
    if (!rc)
      rc = keypool_add(&s->kpool, key, &s->koff[i], err);
    if (rc)
      return rc;
  }
  for (size_t i = 0; i < s->n; i++) /* the pool has stopped moving */
    s->kp[i] = s->kpool.p + s->koff[i];
  return GD_OK;
}

static int as_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  astream *s = ctx;
  size_t k = ASSIGN_BATCH - s->n < n ? ASSIGN_BATCH - s->n : n;
  memcpy(s->sellers + s->n, sellers, k * sizeof *sellers);
  memcpy(s->clusters + s->n, clusters, k * sizeof *clusters);
  s->n += k;
  return s->n == ASSIGN_BATCH;
}

static void as_free(astream *s) {
  if (s) {
    free(s->kpool.p);
    free(s->buf);
    free(s);
  }
}

/* Reads and sends the next batch, or finishes the call. */
static void as_next(gd_call *c, astream *s) {
  gd_rtxn *r = NULL;
  gd_err err = {0};
  if (s->end || gd_call_expired(c)) {
    gd_call_set_user(c, NULL);
    bool expired = !s->end;
    as_free(s);
    if (expired)
      gd_call_finish(c, GD_EDEADLINE, "call expired", NULL, 0);
    else
      gd_call_finish(c, GD_OK, NULL, NULL, 0);
    return;
  }
  s->n = 0;
  int rc = gd_store_read_begin(s->rpc->store, &r, &err);
  if (!rc)
    rc = gd_store_assignments_visit(r, s->snap, s->after, as_visit, s, &s->snap, &err);
  if (!rc && s->keys)
    rc = as_keys(s, r, &err);
  gd_store_read_end(r);
  if (rc) {
    gd_call_set_user(c, NULL);
    as_free(s);
    rpc_fail(c, &err);
    return;
  }
  if (s->n < ASSIGN_BATCH)
    s->end = true;
  if (s->n == 0) {
    as_next(c, s);
    return;
  }
  s->after = s->sellers[s->n - 1];
  Graphd__V1__AssignmentBatch m = GRAPHD__V1__ASSIGNMENT_BATCH__INIT;
  m.seller_ids = s->sellers;
  m.n_seller_ids = s->n;
  m.cluster_ids = s->clusters;
  m.n_cluster_ids = s->n;
  if (s->keys) {
    m.seller_keys = s->kp;
    m.n_seller_keys = s->n;
  }
  size_t n;
  if (rpc_pack_stream(&m.base, &s->buf, &s->cap, &n)) {
    gd_call_set_user(c, NULL);
    as_free(s);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  gd_call_write(c, s->buf, n, !s->end);
}

void rpc_assign_written(gd_call *c, bool ok) {
  astream *s = gd_call_user(c);
  if (!ok) {
    gd_call_set_user(c, NULL);
    as_free(s);
    gd_call_finish(c, GD_ECANCELLED, "call cancelled", NULL, 0);
    return;
  }
  as_next(c, s);
}

void rpc_stream_assignments(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__StreamAssignmentsRequest *req =
      (Graphd__V1__StreamAssignmentsRequest *)rpc_unpack(
          c, &graphd__v1__stream_assignments_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  uint64_t snap = req->snapshot_id;
  bool keys = req->keys;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  astream *s = calloc(1, sizeof *s);
  if (!s) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  s->rpc = rpc_ctx(c);
  s->snap = snap;
  s->keys = keys;
  /* Pin "latest" to one snapshot for the whole stream; whether it keeps
   * names decides where keys come from. */
  {
    gd_rtxn *r = NULL;
    gd_err err;
    gd_snapshot_view v;
    int rc = gd_store_read_begin(s->rpc->store, &r, &err);
    if (!rc)
      rc = gd_store_snapshot_get(r, snap, &v, &err);
    if (!rc)
      rc = gd_store_snapshot_has_names(r, v.id, &s->has_names, &err);
    gd_store_read_end(r);
    if (rc) {
      free(s);
      rpc_fail(c, &err);
      return;
    }
    s->snap = v.id;
  }
  gd_call_set_user(c, s);
  as_next(c, s);
}


/* ---- GetEntity's cluster ------------------------------------------------------ */

void rpc_entity_cluster(gd_rtxn *r, uint64_t *latest, Graphd__V1__Entity *e) {
  if (e->type != GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER)
    return;
  gd_err err;
  uint64_t cl;
  if (!*latest) {
    gd_snapshot_view v;
    *latest = gd_store_snapshot_get(r, 0, &v, &err) ? UINT64_MAX : v.id;
  }
  if (*latest == UINT64_MAX || gd_store_assignment_get(r, *latest, e->id, &cl, &err))
    return;
  e->cluster_id = cl;
  e->cluster_snapshot_id = *latest;
}

/* ---- DiffSnapshots ----------------------------------------------------------- */

/*
 * The diff is computed when the call starts (both snapshots' assignments
 * read in one read transaction, aligned by seller id, then gd_match_diff),
 * and streamed one event per message in DiffEvent's order. Memory: about
 * 40 bytes per seller for the alignment plus the match result, freed at
 * the end of the call.
 */
typedef struct assign_buf {
  uint64_t *sellers, *clusters;
  size_t n, cap;
  bool oom;
} assign_buf;

static int ab_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  assign_buf *b = ctx;
  if (b->n + n > b->cap) {
    size_t nc = (b->cap ? b->cap * 2 : 4096) + n;
    uint64_t *ns = realloc(b->sellers, nc * sizeof *ns);
    if (ns)
      b->sellers = ns;
    uint64_t *ncl = realloc(b->clusters, nc * sizeof *ncl);
    if (ncl)
      b->clusters = ncl;
    if (!ns || !ncl) {
      b->oom = true;
      return 1;
    }
    b->cap = nc;
  }
  memcpy(b->sellers + b->n, sellers, n * sizeof *sellers);
  memcpy(b->clusters + b->n, clusters, n * sizeof *clusters);
  b->n += n;
  return 0;
}

enum { D_SUMMARY, D_CONTINUED, D_MERGED, D_SPLIT, D_BORN, D_DISSOLVED, D_MOVED, D_END };

typedef struct dstream {
  gd_rpc *rpc;
  gd_match_result r;
  uint64_t *sellers; /* store id of seller index s */
  keypool keys;      /* keys asked for: move i's key at keys.p + key_off[i] */
  size_t *key_off;
  uint64_t from, to;
  int phase;
  int64_t i; /* position in the phase's list */
  uint8_t *buf;
  size_t cap;
} dstream;

static void ds_free(dstream *d) {
  if (d) {
    gd_match_result_free(&d->r);
    free(d->sellers);
    free(d->keys.p);
    free(d->key_off);
    free(d->buf);
    free(d);
  }
}

/* Reads snapshots from and to (0 = latest) in one transaction and diffs them. */
static int ds_compute(dstream *d, uint64_t from, uint64_t to, int64_t min_part, gd_err *err) {
  gd_rtxn *r = NULL;
  assign_buf a = {0}, b = {0};
  int64_t *old_id = NULL, *new_id = NULL;
  gd_snapshot_view v;
  int rc = gd_store_read_begin(d->rpc->store, &r, err);
  if (!rc && (rc = gd_store_snapshot_get(r, from, &v, err)) == GD_ENOTFOUND)
    gd_err_set(err, rc, "from_snapshot_id: no snapshot %llu", (unsigned long long)from);
  if (!rc && (rc = gd_store_snapshot_get(r, to, &v, err)) == GD_ENOTFOUND)
    gd_err_set(err, rc, "to_snapshot_id: no snapshot %llu", (unsigned long long)to);
  if (!rc) {
    d->from = from;
    d->to = v.id;
  }
  if (!rc)
    rc = gd_store_assignments_visit(r, d->from, 0, ab_visit, &a, NULL, err);
  if (!rc)
    rc = gd_store_assignments_visit(r, d->to, 0, ab_visit, &b, NULL, err);
  gd_store_read_end(r);
  if (!rc && (a.oom || b.oom || a.n + b.n > INT32_MAX))
    rc = gd_err_set(err, GD_ENOMEM, "out of memory (%zu + %zu assignments)", a.n, b.n);
  size_t n = 0, cap = a.n + b.n;
  if (!rc) {
    d->sellers = malloc((cap ? cap : 1) * sizeof *d->sellers);
    old_id = malloc((cap ? cap : 1) * sizeof *old_id);
    new_id = malloc((cap ? cap : 1) * sizeof *new_id);
    if (!d->sellers || !old_id || !new_id)
      rc = gd_err_set(err, GD_ENOMEM, "out of memory (%zu sellers)", cap);
  }
  /* Merge join: both lists ascend by seller id. */
  for (size_t i = 0, j = 0; !rc && (i < a.n || j < b.n); n++) {
    uint64_t sa = i < a.n ? a.sellers[i] : UINT64_MAX, sb = j < b.n ? b.sellers[j] : UINT64_MAX;
    uint64_t s = sa < sb ? sa : sb;
    d->sellers[n] = s;
    old_id[n] = sa == s ? (int64_t)a.clusters[i++] : -1;
    new_id[n] = sb == s ? (int64_t)b.clusters[j++] : -1;
  }
  free(a.sellers), free(a.clusters), free(b.sellers), free(b.clusters);
  if (!rc) {
    gd_alg_error ae = {0};
    if (gd_match_diff((int64_t)n, old_id, new_id, min_part, &d->r, &ae) != GD_ALG_OK)
      rc = gd_err_set(err, ae.code == GD_ALG_NOMEM ? GD_ENOMEM : GD_EINTERNAL, "diff: %s",
                      ae.msg);
  }
  free(old_id);
  free(new_id);
  return rc;
}

/* The keys of the moved sellers, as snapshot d->to recorded them (today's
 * records for a snapshot without names; "" for one deleted before). */
static int ds_keys(dstream *d, gd_err *err) {
  gd_rtxn *r = NULL;
  bool has_names = false;
  int rc = gd_store_read_begin(d->rpc->store, &r, err);
  if (!rc)
    rc = gd_store_snapshot_has_names(r, d->to, &has_names, err);
  if (!rc && !(d->key_off = malloc(((size_t)d->r.n_moves + 1) * sizeof *d->key_off)))
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
  for (int64_t i = 0; !rc && i < d->r.n_moves; i++) {
    gd_str key;
    rc = snap_key(r, d->to, has_names, d->sellers[d->r.moves[i].seller], &key, err);
    if (!rc)
      rc = keypool_add(&d->keys, key, &d->key_off[i], err);
  }
  gd_store_read_end(r);
  return rc;
}

static void ds_ids(uint64_t *dst, const int64_t *src, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = (uint64_t)src[i];
}

/* Writes the next event, or finishes the call. */
static void ds_next(gd_call *c, dstream *d) {
  Graphd__V1__DiffEvent e = GRAPHD__V1__DIFF_EVENT__INIT;
  Graphd__V1__DiffSummary sum = GRAPHD__V1__DIFF_SUMMARY__INIT;
  const gd_match_result *r = &d->r;
  uint64_t one_from, one_to, *parts = NULL;
  char text[320];
  /* Skip empty phases. */
  static const int kinds[] = {
      [D_SUMMARY] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_SUMMARY,
      [D_CONTINUED] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_CONTINUED,
      [D_MERGED] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_MERGED,
      [D_SPLIT] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_SPLIT,
      [D_BORN] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_BORN,
      [D_DISSOLVED] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_DISSOLVED,
      [D_MOVED] = GRAPHD__V1__DIFF_EVENT__KIND__KIND_MOVED};
  const int64_t lens[] = {1, r->n_continued, r->n_merges, r->n_splits,
                          r->n_born, r->n_dissolved, r->n_moves};
  while (d->phase < D_END && d->i >= lens[d->phase]) {
    d->phase++;
    d->i = 0;
  }
  if (d->phase == D_END || gd_call_expired(c)) {
    bool expired = d->phase != D_END;
    gd_call_set_user(c, NULL);
    ds_free(d);
    if (expired)
      gd_call_finish(c, GD_EDEADLINE, "call expired", NULL, 0);
    else
      gd_call_finish(c, GD_OK, NULL, NULL, 0);
    return;
  }
  int64_t i = d->i++;
  e.kind = kinds[d->phase];
  switch (d->phase) {
  case D_SUMMARY: {
    const gd_match_summary *m = &r->summary;
    sum.from_snapshot_id = d->from;
    sum.to_snapshot_id = d->to;
    sum.sellers = (uint64_t)m->sellers;
    sum.sellers_stayed = (uint64_t)m->sellers_stayed;
    sum.sellers_moved = (uint64_t)m->sellers_moved;
    sum.sellers_added = (uint64_t)m->sellers_added;
    sum.sellers_removed = (uint64_t)m->sellers_removed;
    sum.clusters_from = (uint64_t)m->clusters_old;
    sum.clusters_to = (uint64_t)m->clusters_new;
    sum.continued = (uint64_t)m->continued;
    sum.merged = (uint64_t)m->merged;
    sum.split = (uint64_t)m->split;
    sum.born = (uint64_t)m->born;
    sum.dissolved = (uint64_t)m->dissolved;
    snprintf(text, sizeof text,
             "snapshot %llu -> %llu: %lld sellers (%lld stayed, %lld moved, %lld added, %lld "
             "removed); clusters %lld -> %lld: %lld continued, %lld merged, %lld split, %lld "
             "born, %lld dissolved",
             (unsigned long long)d->from, (unsigned long long)d->to, (long long)m->sellers,
             (long long)m->sellers_stayed, (long long)m->sellers_moved,
             (long long)m->sellers_added, (long long)m->sellers_removed,
             (long long)m->clusters_old, (long long)m->clusters_new, (long long)m->continued,
             (long long)m->merged, (long long)m->split, (long long)m->born,
             (long long)m->dissolved);
    e.summary = text;
    e.counts = &sum;
    break;
  }
  case D_CONTINUED:
    one_from = one_to = (uint64_t)r->continued[i].id;
    e.from_clusters = &one_from, e.n_from_clusters = 1;
    e.to_clusters = &one_to, e.n_to_clusters = 1;
    break;
  case D_MERGED:
  case D_SPLIT: {
    const gd_match_group *g = d->phase == D_MERGED ? &r->merges[i] : &r->splits[i];
    parts = malloc((size_t)g->n_parts * sizeof *parts);
    if (!parts) {
      gd_call_set_user(c, NULL);
      ds_free(d);
      rpc_fail_code(c, GD_ENOMEM, "out of memory");
      return;
    }
    ds_ids(parts, g->parts, g->n_parts);
    one_from = one_to = (uint64_t)g->id;
    if (d->phase == D_MERGED) {
      e.from_clusters = parts, e.n_from_clusters = (size_t)g->n_parts;
      e.to_clusters = &one_to, e.n_to_clusters = 1;
    } else {
      e.from_clusters = &one_from, e.n_from_clusters = 1;
      e.to_clusters = parts, e.n_to_clusters = (size_t)g->n_parts;
    }
    break;
  }
  case D_BORN:
    one_to = (uint64_t)r->born[i];
    e.to_clusters = &one_to, e.n_to_clusters = 1;
    break;
  case D_DISSOLVED:
    one_from = (uint64_t)r->dissolved[i];
    e.from_clusters = &one_from, e.n_from_clusters = 1;
    break;
  default: /* D_MOVED */
    e.seller_id = d->sellers[r->moves[i].seller];
    if (d->key_off)
      e.seller_key = d->keys.p + d->key_off[i];
    one_from = (uint64_t)r->moves[i].from;
    one_to = (uint64_t)r->moves[i].to;
    e.from_clusters = &one_from, e.n_from_clusters = 1;
    e.to_clusters = &one_to, e.n_to_clusters = 1;
    break;
  }
  size_t n;
  int prc = rpc_pack_stream(&e.base, &d->buf, &d->cap, &n);
  free(parts);
  if (prc) {
    gd_call_set_user(c, NULL);
    ds_free(d);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  bool last = d->phase == D_MOVED && d->i == r->n_moves;
  gd_call_write(c, d->buf, n, !last);
}

void rpc_diff_written(gd_call *c, bool ok) {
  dstream *d = gd_call_user(c);
  if (!ok) {
    gd_call_set_user(c, NULL);
    ds_free(d);
    gd_call_finish(c, GD_ECANCELLED, "call cancelled", NULL, 0);
    return;
  }
  ds_next(c, d);
}

void rpc_diff_snapshots(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__DiffSnapshotsRequest *req = (Graphd__V1__DiffSnapshotsRequest *)rpc_unpack(
      c, &graphd__v1__diff_snapshots_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  uint64_t from = req->from_snapshot_id, to = req->to_snapshot_id;
  uint32_t min_part = req->min_part_size ? req->min_part_size : GD_MATCH_MIN_PART_SIZE;
  bool keys = req->keys;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  if (!from) {
    rpc_fail_code(c, GD_EINVALID, "from_snapshot_id: required (0 is not a snapshot)");
    return;
  }
  if (min_part > 1000000) {
    rpc_fail_code(c, GD_EINVALID, "min_part_size: at most 1000000");
    return;
  }
  dstream *d = calloc(1, sizeof *d);
  gd_err err = {0};
  if (!d) {
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  d->rpc = rpc_ctx(c);
  if (ds_compute(d, from, to, min_part, &err) || (keys && ds_keys(d, &err))) {
    ds_free(d);
    rpc_fail(c, &err);
    return;
  }
  gd_call_set_user(c, d);
  ds_next(c, d);
}
