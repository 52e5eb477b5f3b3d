/*
 * Investigation handlers: LinkedSellers, FindPaths, RankSuspects.
 *
 * Each validates its request into gd_query_params, runs one query inside
 * one read transaction, and builds the reply (entities read in the same
 * transaction, strings in an arena) before the transaction ends.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/u64map.h"
#include "query/query.h"
#include "rpc/rpc_int.h"

#define MAX_HOPS_LINKED 3
#define MAX_HOPS_PATHS 8
#define MAX_K 20
#define MAX_NEAREST 20
#define DEFAULT_TOUCH_ROWS 200000
#define MAX_TOUCH_ROWS 10000000
#define DEFAULT_PUSHES 1000000
#define MAX_PUSHES 100000000

/* ---- request parts ------------------------------------------------------ */

static int query_check(void *ctx, gd_err *err) {
  return gd_call_check(ctx, err);
}

void rpc_query_params(gd_call *c, gd_query_params *p) {
  gd_query_params_default(p);
  p->max_work = rpc_ctx(c)->lim.max_query_work;
  p->check = query_check;
  p->check_ctx = c;
}

/* The request's hub caps, each at most the server's maximum for the
 * caller's role: a raised cap makes a crowd evidence and its whole seller
 * list part of every step. */
static int conv_caps(gd_call *c, Graphd__V1__HubCap **caps, size_t n, gd_query_params *p,
                     gd_err *err) {
  gd_role role = GD_ROLE_NONE;
  gd_call_principal(c, &role);
  gd_rpc *R = rpc_ctx(c);
  uint64_t max = role >= GD_ROLE_NONE && role <= GD_ROLE_ADMIN ? R->lim.max_hub_cap[role] : 0;
  for (size_t i = 0; i < n; i++) {
    if (!caps[i])
      return gd_err_set(err, GD_EINVALID, "hub_caps[%zu]: missing", i);
    if (!GD_TYPE_VALID((int)caps[i]->type))
      return gd_err_set(err, GD_EINVALID, "hub_caps[%zu].type: unknown entity type %d", i,
                        (int)caps[i]->type);
    if (caps[i]->max_sellers < 1)
      return gd_err_set(err, GD_EINVALID, "hub_caps[%zu].max_sellers: must be at least 1", i);
    if (max && caps[i]->max_sellers > max)
      return gd_err_set(err, GD_EINVALID,
                        "hub_caps[%zu].max_sellers: %llu is over the maximum of %llu for role %s "
                        "(--max-hub-cap)",
                        i, (unsigned long long)caps[i]->max_sellers, (unsigned long long)max,
                        gd_role_name(role));
    p->ev.hub_cap[caps[i]->type] = caps[i]->max_sellers;
  }
  return GD_OK;
}

static int conv_bound(uint64_t v, uint64_t dflt, uint64_t max, const char *field,
                      uint64_t *ret, gd_err *err) {
  if (v > max)
    return gd_err_set(err, GD_EINVALID, "%s: %llu is over the maximum of %llu", field,
                      (unsigned long long)v, (unsigned long long)max);
  *ret = v ? v : dflt;
  return GD_OK;
}

static int conv_limit(gd_call *c, uint32_t limit, const char *field, size_t *ret, gd_err *err) {
  gd_rpc *R = rpc_ctx(c);
  size_t v = limit ? limit : 100;
  if (v > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    return gd_err_set(err, GD_EINVALID,
                      "%s: %u is over the server's result cap of %zu (--result-cap)", field, limit,
                      R->lim.result_cap);
  }
  *ret = v;
  return GD_OK;
}

/* Resolves a ref to an id inside the read transaction. */
static int resolve(gd_rtxn *r, const Graphd__V1__EntityRef *in, gd_arena **a, const char *field,
                   uint64_t *ret, gd_err *err) {
  gd_ref ref;
  if (gd_pb_ref(in, a, &ref, err, field))
    return err->code;
  if (gd_store_lookup(r, &ref, ret, err))
    return gd_err_prefix(err, "%s", field);
  return GD_OK;
}

/* ---- where an answer goes ------------------------------------------------- */

/*
 * An investigation answers its call (the rpc) or, for a query saved into
 * a case (rpc_investigate_packed), packs its reply into a buffer. Either
 * way exactly one of sink_reply / sink_fail is called.
 */
typedef struct inv_sink {
  gd_call *c;
  bool capture;     /* pack into buf instead of answering c */
  uint8_t *buf;     /* capture: the packed reply (malloc'd) */
  size_t len;
  gd_err err;       /* capture: the failure */
} inv_sink;

static void sink_reply(inv_sink *s, const ProtobufCMessage *m) {
  if (!s->capture) {
    rpc_reply(s->c, m);
    return;
  }
  size_t n = protobuf_c_message_get_packed_size(m), max = rpc_ctx(s->c)->lim.max_reply_bytes;
  if (n > max) {
    gd_err_set(&s->err, GD_ERESOURCE,
               "the saved reply of %zu bytes is over the server's maximum message size of %zu "
               "bytes (--max-message-bytes): ask for fewer results (limit)",
               n, max);
    return;
  }
  if (!(s->buf = malloc(n ? n : 1))) {
    gd_err_set(&s->err, GD_ENOMEM, "out of memory packing the reply");
    return;
  }
  protobuf_c_message_pack(m, s->buf);
  s->len = n;
}

static void sink_fail(inv_sink *s, const gd_err *err) {
  if (!s->capture)
    rpc_fail(s->c, err);
  else
    s->err = *err;
}

/* ---- reply parts ---------------------------------------------------------- */

/*
 * Replies name the same entities many times: a ring member's 2-hop reply
 * names about 330 entities, about 100 of them distinct, since a ring's
 * warehouse is evidence on every step. So each entity is read, converted
 * and packed once per reply (gd_pb_prepack): a cache of id -> its packed
 * brief, a field-1 unknown field in arena memory. Every message that
 * carries an entity brief here (LinkedSeller.seller, SharedEntity.entity,
 * SkippedHub.entity, Path.entities, Suspect.seller) has it as field 1,
 * and none of them is read back as a struct: they are only packed.
 */
#define BRIEF_FIELD 1
#define EVIDENCE_FIELD 4 /* LinkedSeller.evidence */

typedef gd_u64map ecache; /* id -> ProtobufCMessageUnknownField * (uintptr_t) */

/*
 * The packed briefs, kept per thread across replies: the same warehouse
 * and ring members are named by reply after reply. An entry packed from
 * what a read transaction with id R saw serves a transaction with id T
 * while the entity is unchanged (store.h, gd_rtxn_fresh: the rule of the
 * query layer's entity cache); another store (serial)
 * empties it. Bounded: BCACHE_BYTES of packed bytes, then it starts over.
 */
#define BCACHE_BYTES (1u << 22)

typedef struct bcache {
  uint64_t serial;
  gd_u64map idx; /* id -> offset + 1 into bytes of its entry */
  uint8_t *bytes;
  size_t n;
} bcache;

typedef struct bc_ent {
  uint64_t at; /* txn id it was packed from */
  uint32_t len; /* then len bytes: the field's data (length prefix + Entity) */
} bc_ent;

static pthread_key_t bcache_key;
static pthread_once_t bcache_once = PTHREAD_ONCE_INIT;
static bool bcache_ok;

static void bcache_free(void *p) {
  bcache *c = p;
  if (c) {
    gd_u64map_free(&c->idx);
    free(c->bytes);
    free(c);
  }
}

static void bcache_init(void) { bcache_ok = pthread_key_create(&bcache_key, bcache_free) == 0; }

/* This thread's cache for the store of st[0]; NULL (no cache) on out of
 * memory. */
static bcache *bcache_get(const uint64_t st[2]) {
  pthread_once(&bcache_once, bcache_init);
  if (!bcache_ok)
    return NULL;
  bcache *c = pthread_getspecific(bcache_key);
  if (!c) {
    if (!(c = calloc(1, sizeof *c)) || !(c->bytes = malloc(BCACHE_BYTES)) ||
        pthread_setspecific(bcache_key, c) != 0) {
      if (c)
        free(c->bytes);
      free(c);
      return NULL;
    }
  }
  if (c->serial != st[0]) {
    gd_u64map_clear(&c->idx);
    c->n = 0;
    c->serial = st[0];
  }
  return c;
}

/* Entity id's brief (no attributes), packed once per reply: from this
 * thread's packed briefs when fresh, else read through the query layer's
 * entity cache (gd_query_entity_brief: what the query just met is usually
 * there), packed and kept. */
static ProtobufCMessageUnknownField *entity_pb(gd_rtxn *r, ecache *c, uint64_t id,
                                               gd_arena **a, gd_err *err) {
  gd_entity_view v;
  Graphd__V1__Entity e;
  ProtobufCMessageUnknownField *f;
  uint64_t st[2];
  uint64_t *slot = gd_u64map_put(c, id, NULL);
  if (!slot) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (*slot)
    return (ProtobufCMessageUnknownField *)(uintptr_t)*slot;
  if (!(f = gd_arena_alloc(a, sizeof *f))) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  gd_rtxn_state(r, st);
  bcache *bc = bcache_get(st);
  const uint64_t *hit = bc ? gd_u64map_get(&bc->idx, id) : NULL;
  if (hit) {
    bc_ent be;
    memcpy(&be, bc->bytes + *hit - 1, sizeof be);
    uint8_t *d;
    if (gd_rtxn_fresh(r, id, be.at) && (d = gd_arena_alloc(a, be.len))) {
      memcpy(d, bc->bytes + *hit - 1 + sizeof be, be.len);
      *f = (ProtobufCMessageUnknownField){.tag = BRIEF_FIELD,
                                          .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                          .len = be.len,
                                          .data = d};
      *slot = (uintptr_t)f;
      return f;
    }
  }
  if (gd_query_entity_brief(r, id, &v, err))
    return NULL;
  if (gd_pb_entity(&v, false, a, &e) || gd_pb_prepack(&e.base, BRIEF_FIELD, a, f)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  *slot = (uintptr_t)f;
  size_t need = sizeof(bc_ent) + f->len;
  if (bc && need <= BCACHE_BYTES) {
    if (bc->n + need > BCACHE_BYTES) {
      gd_u64map_clear(&bc->idx);
      bc->n = 0;
    }
    uint64_t *b = gd_u64map_put(&bc->idx, id, NULL);
    if (b) { /* (no memory for the index: not kept) */
      bc_ent be = {.at = st[1], .len = (uint32_t)f->len};
      memcpy(bc->bytes + bc->n, &be, sizeof be);
      memcpy(bc->bytes + bc->n + sizeof be, f->data, f->len);
      *b = bc->n + 1;
      bc->n += need;
    }
  }
  return f;
}

/* Gives m the entity brief f (from entity_pb) as its field BRIEF_FIELD.
 * False when f is NULL: entity_pb failed and set the error. */
static bool put_brief(ProtobufCMessage *m, ProtobufCMessageUnknownField *f) {
  if (!f)
    return false;
  m->unknown_fields = f;
  m->n_unknown_fields = 1;
  return true;
}

static Graphd__V1__SkippedHub **hubs_pb(gd_rtxn *r, ecache *ec, const gd_hub *h, size_t n,
                                        gd_arena **a, gd_err *err) {
  Graphd__V1__SkippedHub **out = gd_arena_alloc(a, (n + 1) * sizeof *out);
  Graphd__V1__SkippedHub *hs = gd_arena_alloc(a, (n + 1) * sizeof *hs);
  if (!out || !hs) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    graphd__v1__skipped_hub__init(&hs[i]);
    if (!put_brief(&hs[i].base, entity_pb(r, ec, h[i].entity, a, err)))
      return NULL;
    hs[i].seller_count = h[i].sellers;
    hs[i].hub_cap = h[i].cap;
    hs[i].reason = h[i].context ? GRAPHD__V1__SKIP_REASON__SKIP_REASON_CROWD
                                : GRAPHD__V1__SKIP_REASON__SKIP_REASON_OVER_CAP;
    hs[i].corroboration = h[i].corroboration;
    out[i] = &hs[i];
  }
  return out;
}

/*
 * Steps are packed once per reply too. A 2-hop seller's first step is
 * its intermediate seller's own step (the query copies a path's earlier
 * steps by value, sharing their lists of shared entities), so every
 * seller reached through the same intermediate names it again: about 2
 * of 5 steps in a 2-hop reply (200k-seller sample). A step's list is its
 * own (allocated when the step was made), so its address keys the step.
 * scache: list address -> ProtobufCMessageUnknownField * (uintptr_t).
 */
typedef gd_u64map scache;

/* Step s as a packed LinkedSeller.evidence field, from sc when packed
 * already in this reply. NULL on out of memory (err set). */
static ProtobufCMessageUnknownField *step_pb(gd_rtxn *r, ecache *ec, scache *sc, const gd_step *s,
                                            gd_arena **a, gd_err *err) {
  uint64_t *slot = NULL;
  if (s->nshared) { /* (no list, no key: packed each time) */
    if (!(slot = gd_u64map_put(sc, (uint64_t)(uintptr_t)s->shared, NULL))) {
      gd_err_set(err, GD_ENOMEM, "out of memory");
      return NULL;
    }
    if (*slot)
      return (ProtobufCMessageUnknownField *)(uintptr_t)*slot;
  }
  Graphd__V1__EvidenceStep st = GRAPHD__V1__EVIDENCE_STEP__INIT;
  ProtobufCMessageUnknownField *f = gd_arena_alloc(a, sizeof *f);
  st.shared = gd_arena_alloc(a, (s->nshared + 1) * sizeof *st.shared);
  Graphd__V1__SharedEntity *se = gd_arena_alloc(a, (s->nshared + 1) * sizeof *se);
  if (!f || !st.shared || !se) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  st.from_seller_id = s->from;
  st.to_seller_id = s->to;
  st.tie = s->tie;
  for (size_t k = 0; k < s->nshared; k++) {
    graphd__v1__shared_entity__init(&se[k]);
    if (!put_brief(&se[k].base, entity_pb(r, ec, s->shared[k].entity, a, err)))
      return NULL;
    se[k].first_seen = s->shared[k].first;
    se[k].last_seen = s->shared[k].last;
    se[k].weight = s->shared[k].weight;
    se[k].corroboration = s->shared[k].corroboration;
    st.shared[k] = &se[k];
  }
  st.n_shared = s->nshared;
  if (gd_pb_prepack(&st.base, EVIDENCE_FIELD, a, f)) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  if (slot)
    *slot = (uintptr_t)f;
  return f;
}

/* l as a LinkedSeller: its seller's brief (field 1) and its steps (field
 * 4, evidence, in order) are packed fields, so the message is only
 * packed, never read back. */
static Graphd__V1__LinkedSeller *linked_pb(gd_rtxn *r, ecache *ec, scache *sc, const gd_linked *l,
                                           gd_arena **a, gd_err *err) {
  Graphd__V1__LinkedSeller *ls = gd_arena_alloc(a, sizeof *ls);
  ProtobufCMessageUnknownField *fs = gd_arena_alloc(a, (l->hops + 1) * sizeof *fs), *f;
  if (!ls || !fs) {
    gd_err_set(err, GD_ENOMEM, "out of memory");
    return NULL;
  }
  graphd__v1__linked_seller__init(ls);
  if (!(f = entity_pb(r, ec, l->seller, a, err)))
    return NULL;
  fs[0] = *f;
  for (unsigned i = 0; i < l->hops; i++) {
    if (!(f = step_pb(r, ec, sc, &l->steps[i], a, err)))
      return NULL;
    fs[1 + i] = *f;
  }
  ls->base.unknown_fields = fs;
  ls->base.n_unknown_fields = 1 + l->hops;
  ls->hops = l->hops;
  ls->score = l->score;
  return ls;
}

/* ---- LinkedSellers ------------------------------------------------------------ */

/*
 * LinkedSellers runs where its cost says. A 1-hop call is tried first on
 * the handler thread that took it, under a small work bound
 * (LINKED_INLINE_WORK rows): most answer there, paying no hand-off to a
 * query thread (a wake-up and a reply sent from another thread cost about
 * as much CPU as a 1-hop query). One that needs more, and every deeper
 * call, runs (again) as a heavy call (gd_call_offload) under the server's
 * bound. So a cheap answer stays cheap, and a costly one holds a handler
 * thread for at most one small bound's work.
 */
#define LINKED_INLINE_WORK 20000

typedef struct linked_job {
  gd_rpc *rpc;
  gd_call *c;
  inv_sink *sink;
  Graphd__V1__LinkedSellersRequest *req;
  gd_query_params p;
  unsigned hops;
  size_t limit;
} linked_job;

static void linked_job_free(linked_job *j) {
  protobuf_c_message_free_unpacked(&j->req->base, NULL);
  free(j);
}

/* Runs j with work bound max_work. Returns false, with nothing sent, when
 * that bound cut the query and the server's own bound is larger (the
 * caller runs it again with that); else true: the reply or the error is
 * sent. */
static bool linked_run(linked_job *j, uint64_t max_work) {
  Graphd__V1__LinkedSellersRequest *req = j->req;
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  ecache ec = GD_U64MAP_INIT;
  scache sc = GD_U64MAP_INIT;
  gd_linked_result res = {0};
  gd_query_params p = j->p;
  gd_err err;
  uint64_t seller;
  bool done = true;
  gd_err_clear(&err);
  p.max_work = max_work;
  if (gd_store_read_begin(j->rpc->store, &r, &err) ||
      resolve(r, req->seller, &a, "seller", &seller, &err) ||
      gd_query_linked(r, seller, j->hops, &p, j->limit, req->min_score, &res, &err))
    goto fail;
  if (res.work_bound && max_work != j->p.max_work) {
    done = false; /* the inline bound cut it: again, as a heavy call */
    goto out;
  }

  Graphd__V1__LinkedSellersReply rep = GRAPHD__V1__LINKED_SELLERS_REPLY__INIT;
  rep.sellers = gd_arena_alloc(&a, (res.n + 1) * sizeof *rep.sellers);
  if (!rep.sellers) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < res.n; i++)
    if (!(rep.sellers[i] = linked_pb(r, &ec, &sc, &res.sellers[i], &a, &err)))
      goto fail;
  rep.n_sellers = res.n;
  if (!(rep.skipped_hubs = hubs_pb(r, &ec, res.hubs, res.nhubs, &a, &err)))
    goto fail;
  rep.n_skipped_hubs = res.nhubs;
  rep.truncated = res.truncated;
  rep.server_work_bound = res.work_bound;
  rep.touched = res.touched;
  sink_reply(j->sink, &rep.base);
  goto out;
fail:
  sink_fail(j->sink, &err);
out:
  gd_linked_result_free(&res);
  gd_store_read_end(r);
  gd_u64map_free(&ec);
  gd_u64map_free(&sc);
  gd_arena_free(a);
  return done;
}

static void linked_heavy(void *arg) {
  linked_job *j = arg;
  linked_run(j, j->p.max_work);
  linked_job_free(j);
}

/* Validates req into j (j->rpc, c, sink, req set). Errors: INVALID_ARGUMENT
 * naming the field. */
static int linked_prepare(linked_job *j, gd_err *err) {
  gd_call *c = j->c;
  Graphd__V1__LinkedSellersRequest *req = j->req;
  gd_query_params *p = &j->p;
  rpc_query_params(c, p);
  j->hops = req->max_hops ? req->max_hops : 1;
  if (j->hops > MAX_HOPS_LINKED)
    return gd_err_set(err, GD_EINVALID, "max_hops: %u is over the maximum of %d",
                      req->max_hops, MAX_HOPS_LINKED);
  for (size_t i = 0; i < req->n_via_types; i++) {
    if (!GD_TYPE_VALID((int)req->via_types[i]))
      return gd_err_set(err, GD_EINVALID, "via_types[%zu]: unknown entity type %d", i,
                        (int)req->via_types[i]);
    p->type_mask |= 1u << req->via_types[i];
  }
  if (!isfinite(req->min_score))
    return gd_err_set(err, GD_EINVALID, "min_score: not a finite number");
  if (gd_pb_window(req->window, &p->since, &p->until, err, "window") ||
      conv_caps(c, req->hub_caps, req->n_hub_caps, p, err) ||
      conv_limit(c, req->limit, "limit", &j->limit, err) ||
      conv_bound(req->max_touched, DEFAULT_TOUCH_ROWS, MAX_TOUCH_ROWS, "max_touched",
                 &p->max_touched, err))
    return err->code;
  return GD_OK;
}

void rpc_linked_sellers(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__LinkedSellersRequest *req = (Graphd__V1__LinkedSellersRequest *)rpc_unpack(
      c, &graphd__v1__linked_sellers_request__descriptor, msg, len, has_msg);
  gd_err err;
  linked_job *j = NULL;
  if (!req)
    return;
  gd_err_clear(&err);
  if (!(j = calloc(1, sizeof *j + sizeof(inv_sink)))) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  j->rpc = rpc_ctx(c);
  j->c = c;
  j->sink = (inv_sink *)(j + 1);
  j->sink->c = c;
  j->req = req;
  gd_query_params *p = &j->p;
  if (linked_prepare(j, &err))
    goto fail;
  if (j->hops == 1) {
    /* (max_work 0: no server bound) */
    bool small = p->max_work && p->max_work <= LINKED_INLINE_WORK;
    if (linked_run(j, small ? p->max_work : LINKED_INLINE_WORK)) {
      linked_job_free(j);
      return;
    }
  }
  gd_call_offload(c, linked_heavy, j);
  return;
fail:
  rpc_fail(c, &err);
  free(j);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- FindPaths ------------------------------------------------------------------ */

static void paths_exec(gd_call *c, const Graphd__V1__FindPathsRequest *req, inv_sink *sink) {
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  ecache ec = GD_U64MAP_INIT;
  gd_paths_result res = {0};
  gd_query_params p;
  gd_err err;
  uint64_t from, to;
  gd_err_clear(&err);
  rpc_query_params(c, &p);
  size_t k = req->k ? req->k : 3;
  unsigned hops = req->max_hops ? req->max_hops : 4;
  if (k > MAX_K) {
    gd_err_set(&err, GD_EINVALID, "k: %u is over the maximum of %d", req->k, MAX_K);
    goto fail;
  }
  if (hops > MAX_HOPS_PATHS) {
    gd_err_set(&err, GD_EINVALID, "max_hops: %u is over the maximum of %d", req->max_hops,
               MAX_HOPS_PATHS);
    goto fail;
  }
  if (gd_pb_window(req->window, &p.since, &p.until, &err, "window") ||
      conv_caps(c, req->hub_caps, req->n_hub_caps, &p, &err) ||
      conv_bound(req->max_touched, DEFAULT_TOUCH_ROWS, MAX_TOUCH_ROWS, "max_touched",
                 &p.max_touched, &err) ||
      gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      resolve(r, req->from, &a, "from", &from, &err) ||
      resolve(r, req->to, &a, "to", &to, &err))
    goto fail;
  if (from == to) {
    gd_err_set(&err, GD_EINVALID, "to: the same entity as from");
    goto fail;
  }
  if (gd_query_paths(r, from, to, k, hops, &p, &res, &err))
    goto fail;

  Graphd__V1__FindPathsReply rep = GRAPHD__V1__FIND_PATHS_REPLY__INIT;
  rep.paths = gd_arena_alloc(&a, (res.n + 1) * sizeof *rep.paths);
  Graphd__V1__Path *ps = gd_arena_alloc(&a, (res.n + 1) * sizeof *ps);
  if (!rep.paths || !ps) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < res.n; i++) {
    const gd_path *gp = &res.paths[i];
    graphd__v1__path__init(&ps[i]);
    /* entities (repeated field BRIEF_FIELD): the briefs, in order */
    ProtobufCMessageUnknownField *ents = gd_arena_alloc(&a, (gp->len + 1) * sizeof *ents);
    ps[i].links = gd_arena_alloc(&a, (gp->len + 1) * sizeof *ps[i].links);
    Graphd__V1__Link *lk = gd_arena_alloc(&a, (gp->len + 1) * sizeof *lk);
    if (!ents || !ps[i].links || !lk) {
      gd_err_set(&err, GD_ENOMEM, "out of memory");
      goto fail;
    }
    for (size_t j = 0; j <= gp->len; j++) {
      ProtobufCMessageUnknownField *f = entity_pb(r, &ec, gp->ids[j], &a, &err);
      if (!f)
        goto fail;
      ents[j] = *f;
    }
    ps[i].base.unknown_fields = ents;
    ps[i].base.n_unknown_fields = gp->len + 1;
    for (size_t j = 0; j < gp->len; j++) {
      graphd__v1__link__init(&lk[j]);
      lk[j].first_seen = gp->links[j].first_seen;
      lk[j].last_seen = gp->links[j].last_seen;
      lk[j].count = gp->links[j].count;
      ps[i].links[j] = &lk[j];
    }
    ps[i].n_links = gp->len;
    rep.paths[i] = &ps[i];
  }
  rep.n_paths = res.n;
  if (!(rep.skipped_hubs = hubs_pb(r, &ec, res.hubs, res.nhubs, &a, &err)))
    goto fail;
  rep.n_skipped_hubs = res.nhubs;
  rep.truncated = res.truncated;
  rep.server_work_bound = res.work_bound;
  rep.touched = res.touched;
  sink_reply(sink, &rep.base);
  goto out;
fail:
  sink_fail(sink, &err);
out:
  gd_paths_result_free(&res);
  gd_store_read_end(r);
  gd_u64map_free(&ec);
  gd_arena_free(a);
}

void rpc_find_paths(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__FindPathsRequest *req = (Graphd__V1__FindPathsRequest *)rpc_unpack(
      c, &graphd__v1__find_paths_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  inv_sink sink = {.c = c};
  paths_exec(c, req, &sink);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- RankSuspects ---------------------------------------------------------------- */

static void suspects_exec(gd_call *c, const Graphd__V1__RankSuspectsRequest *req,
                          inv_sink *sink) {
  gd_arena *a = NULL;
  gd_rtxn *r = NULL;
  ecache ec = GD_U64MAP_INIT;
  scache sc = GD_U64MAP_INIT;
  gd_suspects_result res = {0};
  gd_query_params p;
  gd_err err;
  size_t limit = 0;
  char f[48];
  gd_err_clear(&err);
  rpc_query_params(c, &p);
  double alpha = req->alpha == 0 ? 0.15 : req->alpha;
  double eps = req->epsilon == 0 ? 1e-7 : req->epsilon;
  size_t nearest = req->max_nearest ? req->max_nearest : 3;
  if (!(alpha > 0 && alpha < 1)) {
    gd_err_set(&err, GD_EINVALID, "alpha: must be in (0, 1)");
    goto fail;
  }
  if (!(eps > 0 && eps <= 0.01)) {
    gd_err_set(&err, GD_EINVALID, "epsilon: must be in (0, 0.01]");
    goto fail;
  }
  if (nearest > MAX_NEAREST) {
    gd_err_set(&err, GD_EINVALID, "max_nearest: %u is over the maximum of %d",
               req->max_nearest, MAX_NEAREST);
    goto fail;
  }
  size_t nlabels = req->n_seed_labels ? req->n_seed_labels : 1;
  if (nlabels > GD_LABELS_MAX) {
    gd_err_set(&err, GD_EINVALID, "seed_labels: over the limit of %d labels", GD_LABELS_MAX);
    goto fail;
  }
  gd_str labels[GD_LABELS_MAX];
  if (req->n_seed_labels == 0)
    labels[0] = gd_str_c("counterfeit");
  for (size_t i = 0; i < req->n_seed_labels; i++) {
    snprintf(f, sizeof f, "seed_labels[%zu]", i);
    if (gd_pb_check_label(req->seed_labels[i], &err, f))
      goto fail;
    labels[i] = gd_str_c(req->seed_labels[i]);
  }
  if (gd_pb_window(req->window, &p.since, &p.until, &err, "window") ||
      conv_caps(c, req->hub_caps, req->n_hub_caps, &p, &err) ||
      conv_limit(c, req->limit, "limit", &limit, &err) ||
      conv_bound(req->max_touched, DEFAULT_PUSHES, MAX_PUSHES, "max_touched", &p.max_touched,
                 &err) ||
      gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      gd_query_suspects(r, labels, nlabels, alpha, eps, limit, nearest, &p, &res, &err))
    goto fail;

  Graphd__V1__RankSuspectsReply rep = GRAPHD__V1__RANK_SUSPECTS_REPLY__INIT;
  rep.suspects = gd_arena_alloc(&a, (res.n + 1) * sizeof *rep.suspects);
  Graphd__V1__Suspect *ss = gd_arena_alloc(&a, (res.n + 1) * sizeof *ss);
  if (!rep.suspects || !ss) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < res.n; i++) {
    const gd_suspect *s = &res.suspects[i];
    graphd__v1__suspect__init(&ss[i]);
    if (!put_brief(&ss[i].base, entity_pb(r, &ec, s->seller, &a, &err)))
      goto fail;
    ss[i].score = s->score;
    ss[i].nearest_labelled = gd_arena_alloc(&a, (s->nnearest + 1) * sizeof(void *));
    if (!ss[i].nearest_labelled) {
      gd_err_set(&err, GD_ENOMEM, "out of memory");
      goto fail;
    }
    for (size_t j = 0; j < s->nnearest; j++)
      if (!(ss[i].nearest_labelled[j] = linked_pb(r, &ec, &sc, &s->nearest[j], &a, &err)))
        goto fail;
    ss[i].n_nearest_labelled = s->nnearest;
    ss[i].group_cluster_id = s->group_cluster;
    ss[i].group_size = s->group_size;
    rep.suspects[i] = &ss[i];
  }
  rep.n_suspects = res.n;
  rep.truncated = res.truncated;
  rep.server_work_bound = res.work_bound;
  rep.touched = res.touched;
  rep.seeds = res.seeds;
  sink_reply(sink, &rep.base);
  goto out;
fail:
  sink_fail(sink, &err);
out:
  gd_suspects_result_free(&res);
  gd_store_read_end(r);
  gd_u64map_free(&ec);
  gd_u64map_free(&sc);
  gd_arena_free(a);
}

void rpc_rank_suspects(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__RankSuspectsRequest *req = (Graphd__V1__RankSuspectsRequest *)rpc_unpack(
      c, &graphd__v1__rank_suspects_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  inv_sink sink = {.c = c};
  suspects_exec(c, req, &sink);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- a saved query ------------------------------------------------------------ */

int rpc_investigate_packed(gd_call *c, const ProtobufCMessage *req, uint8_t **ret,
                           size_t *ret_len, gd_err *err) {
  inv_sink sink = {.c = c, .capture = true};
  gd_err_clear(&sink.err);
  if (req->descriptor == &graphd__v1__linked_sellers_request__descriptor) {
    linked_job j = {.rpc = rpc_ctx(c), .c = c, .sink = &sink,
                    .req = (Graphd__V1__LinkedSellersRequest *)req};
    rpc_query_params(c, &j.p);
    if (linked_prepare(&j, &sink.err) == GD_OK)
      linked_run(&j, j.p.max_work);
  } else if (req->descriptor == &graphd__v1__find_paths_request__descriptor) {
    paths_exec(c, (const Graphd__V1__FindPathsRequest *)req, &sink);
  } else if (req->descriptor == &graphd__v1__rank_suspects_request__descriptor) {
    suspects_exec(c, (const Graphd__V1__RankSuspectsRequest *)req, &sink);
  } else {
    return gd_err_set(err, GD_EINTERNAL, "not an investigation request: %s",
                      req->descriptor->name);
  }
  if (sink.err.code) {
    free(sink.buf);
    *err = sink.err;
    return err->code;
  }
  *ret = sink.buf;
  *ret_len = sink.len;
  return GD_OK;
}
