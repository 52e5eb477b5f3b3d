/*
 * Cases: CreateCase, GetCase, ListCases, UpdateCase (docs/ARCHITECTURE.md,
 * "Cases"; the contract is graphd.proto's, at Case).
 *
 * A case is one store record (store/case.h): a header the store reads
 * (brand, status, revision, saved queries) and a body, the packed Case
 * message without case_id, revision, query_count and queries. Saved
 * queries are records of their own (packed SavedQuery), written once.
 *
 * Brand scope: a partner (server/auth.h) reaches only cases of its brand
 * (gd_call_brand). Another brand's case answers exactly as a case that
 * does not exist, so nothing of it shows in a message, a listing or a
 * count. Every case call is audited with the case's id as its case_id
 * (gd_call_set_case_id); a change's record is written in the change's
 * own transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "rpc/rpc_int.h"
#include "store/case.h"
#include "store/snapshot.h"

#define TITLE_MAX 256
#define ASSIGNEE_MAX 128
#define NOTE_MAX 4096
#define NOTES_MAX 200
#define ITEMS_MAX 5000
#define QUERIES_MAX 100
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define GET_QUERIES_DEFAULT 20

const char *rpc_case_status_name(int s) {
  switch (s) {
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN:
    return "open";
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_REFERRED:
    return "referred";
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED:
    return "closed";
  default:
    return "unspecified";
  }
}

static bool status_valid(int s) {
  return s >= GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN &&
         s <= GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED;
}

bool rpc_case_visible(gd_call *c, const gd_case_view *v) {
  gd_role role;
  gd_call_principal(c, &role);
  if (role != GD_ROLE_PARTNER)
    return true;
  const char *b = gd_call_brand(c);
  return strlen(b) == v->brand.n && memcmp(b, v->brand.p, v->brand.n) == 0;
}

static bool is_partner(gd_call *c) {
  gd_role role;
  gd_call_principal(c, &role);
  return role == GD_ROLE_PARTNER;
}

void rpc_case_set_id(gd_call *c, uint64_t id) {
  char b[24];
  snprintf(b, sizeof b, "%llu", (unsigned long long)id);
  gd_call_set_case_id(c, b);
}

/* A one-line text field: at most max bytes, UTF-8, no control characters. */
static int check_line(const char *s, size_t max, bool required, const char *field, gd_err *err) {
  if (gd_pb_check_str(s, max, required, err, field))
    return err->code;
  if (rpc_has_ctl(s))
    return gd_err_set(err, GD_EINVALID, "%s: control characters", field);
  return GD_OK;
}

/* A note: 1..NOTE_MAX bytes of UTF-8; newlines and tabs allowed. */
static int check_note(const char *s, const char *field, gd_err *err) {
  if (strlen(s) > NOTE_MAX)
    return gd_err_set(err, GD_EINVALID, "%s: %zu bytes is over the limit of %d bytes", field,
                      strlen(s), NOTE_MAX);
  if (gd_pb_check_str(s, NOTE_MAX, true, err, field))
    return err->code;
  for (const char *p = s; *p; p++)
    if (((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
      return gd_err_set(err, GD_EINVALID, "%s: control characters", field);
  return GD_OK;
}

Graphd__V1__Case *rpc_case_unpack(const gd_case_view *v, gd_err *err) {
  Graphd__V1__Case *m = graphd__v1__case__unpack(NULL, v->body_len, v->body);
  if (!m) {
    gd_err_set(err, GD_EINTERNAL, "case %llu: body does not parse", (unsigned long long)v->id);
    return NULL;
  }
  m->case_id = v->id;
  m->revision = v->revision;
  m->query_count = v->nqueries;
  m->status = (Graphd__V1__CaseStatus)v->status;
  return m;
}

/* Writes m as case v->id's record (m's case_id, revision and query_count
 * come from v, not from the body). */
static int body_put(gd_wtxn *t, const Graphd__V1__Case *m, const gd_case_view *hdr, gd_err *err) {
  Graphd__V1__Case b = *m;
  b.case_id = 0;
  b.revision = 0;
  b.query_count = 0;
  b.n_queries = 0;
  b.queries = NULL;
  b.queries_more = false;
  size_t n = protobuf_c_message_get_packed_size(&b.base);
  if (n > GD_CASE_BODY_MAX)
    return gd_err_set(err, GD_ERESOURCE, "case %llu: %zu bytes is over the limit of %u bytes",
                      (unsigned long long)hdr->id, n, GD_CASE_BODY_MAX);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  protobuf_c_message_pack(&b.base, buf);
  gd_case_view v = *hdr;
  v.body = buf;
  v.body_len = n;
  int rc = gd_store_case_put(t, &v, err);
  free(buf);
  return rc;
}

/* Packs a reply case into a malloc'd buffer. */
static int pack(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len, gd_err *err) {
  size_t n = protobuf_c_message_get_packed_size(m);
  if (!(*ret = malloc(n ? n : 1)))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  protobuf_c_message_pack(m, *ret);
  *ret_len = n;
  return GD_OK;
}

/* Packs the case a change replies with, inside the change's transaction:
 * a reply over the server's maximum fails the change itself, so nothing
 * is written that the caller is told failed. */
static int pack_reply(gd_call *c, const Graphd__V1__Case *m, uint8_t **ret, size_t *ret_len,
                      gd_err *err) {
  size_t n = protobuf_c_message_get_packed_size(&m->base), max = rpc_ctx(c)->lim.max_reply_bytes;
  if (n > max)
    return gd_err_set(err, GD_ERESOURCE,
                      "the case would reply with %zu bytes, over the server's maximum message "
                      "size of %zu bytes (--max-message-bytes): nothing was changed",
                      n, max);
  free(*ret);
  *ret = NULL;
  return pack(&m->base, ret, ret_len, err);
}

/* A finished write op answers its call with the packed case, or fails
 * it. */
static void answer(gd_call *c, const gd_err *err, uint8_t *reply, size_t len) {
  if (err->code) {
    gd_call_mark_audited(c, false);
    rpc_fail(c, err);
  } else {
    gd_call_finish(c, GD_OK, NULL, reply, len);
  }
}

/* ---- CreateCase ----------------------------------------------------------------- */

typedef struct create_op {
  gd_write_op op;
  gd_call *call;
  Graphd__V1__CreateCaseRequest *req;
  const char *brand;
  uint8_t *reply;
  size_t reply_len;
} create_op;

static int create_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  create_op *op = (create_op *)wop;
  gd_call *c = op->call;
  Graphd__V1__CreateCaseRequest *req = op->req;
  int64_t now = gd_call_start_ms(c);
  const char *who = gd_call_principal(c, NULL);
  gd_case_view hdr = {.revision = 1,
                      .status = GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN,
                      .brand = gd_str_c(op->brand)};
  int rc = gd_store_case_new_id(t, &hdr.id, err);
  if (rc)
    return rc;
  rpc_case_set_id(c, hdr.id);
  Graphd__V1__Case m = GRAPHD__V1__CASE__INIT;
  Graphd__V1__CaseNote note = GRAPHD__V1__CASE_NOTE__INIT, *notes[1] = {&note};
  m.title = req->title;
  m.brand = (char *)op->brand;
  m.status = GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN;
  m.assignee = req->assignee;
  if (req->note[0]) {
    note.time = now;
    note.author = (char *)who;
    note.text = req->note;
    m.notes = notes;
    m.n_notes = 1;
  }
  m.created = m.updated = now;
  m.created_by = m.updated_by = (char *)who;
  if ((rc = body_put(t, &m, &hdr, err)))
    return rc;
  m.case_id = hdr.id;
  m.revision = 1;
  if ((rc = pack_reply(c, &m, &op->reply, &op->reply_len, err)))
    return rc;
  return rpc_audit_txn(t, c, err);
}

static void create_done(gd_write_op *wop, const gd_err *err) {
  create_op *op = (create_op *)wop;
  answer(op->call, err, op->reply, op->reply_len);
  free(op->reply);
  protobuf_c_message_free_unpacked(&op->req->base, NULL);
  free(op);
}

void rpc_create_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__CreateCaseRequest *req = (Graphd__V1__CreateCaseRequest *)rpc_unpack(
      c, &graphd__v1__create_case_request__descriptor, msg, len, has_msg);
  gd_err err;
  if (!req)
    return;
  gd_err_clear(&err);
  create_op *op = calloc(1, sizeof *op);
  if (!op) {
    protobuf_c_message_free_unpacked(&req->base, NULL);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  op->call = c;
  op->req = req;
  op->brand = req->brand;
  if (is_partner(c)) {
    if (req->brand[0] && strcmp(req->brand, gd_call_brand(c)) != 0) {
      gd_err_set(&err, GD_EPERM, "brand: a partner opens cases of its own brand only");
      goto fail;
    }
    op->brand = gd_call_brand(c);
  } else if (!req->brand[0]) {
    gd_err_set(&err, GD_EINVALID, "brand: required");
    goto fail;
  }
  if (!gd_brand_valid(op->brand, strlen(op->brand))) {
    gd_err_set(&err, GD_EINVALID, "brand: must be 1..%d of [A-Za-z0-9._-]", GD_BRAND_MAX - 1);
    goto fail;
  }
  if (check_line(req->title, TITLE_MAX, true, "title", &err) ||
      check_line(req->assignee, ASSIGNEE_MAX, false, "assignee", &err) ||
      (req->note[0] && check_note(req->note, "note", &err)))
    goto fail;
  op->op.apply = create_apply;
  op->op.done = create_done;
  gd_writer_submit(rpc_ctx(c)->writer, &op->op);
  return;
fail:
  create_done(&op->op, &err);
}

/* ---- GetCase ----------------------------------------------------------------------- */

typedef struct get_ctx {
  Graphd__V1__Case *m;
  size_t max, budget, used;
  bool more;
  gd_err *err;
  int rc;
} get_ctx;

static int get_query(void *ctx, uint32_t seq, const void *q, size_t len) {
  (void)seq;
  get_ctx *g = ctx;
  if (g->m->n_queries == g->max || (g->m->n_queries && g->used + len > g->budget)) {
    g->more = true;
    return 1;
  }
  Graphd__V1__SavedQuery *sq = graphd__v1__saved_query__unpack(NULL, len, q);
  if (!sq) {
    g->rc = gd_err_set(g->err, GD_EINTERNAL, "case %llu: saved query %u does not parse",
                       (unsigned long long)g->m->case_id, seq);
    return 1;
  }
  g->m->queries[g->m->n_queries++] = sq;
  g->used += len;
  return 0;
}

void rpc_get_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__GetCaseRequest *req = (Graphd__V1__GetCaseRequest *)rpc_unpack(
      c, &graphd__v1__get_case_request__descriptor, msg, len, has_msg);
  gd_rtxn *r = NULL;
  Graphd__V1__Case *m = NULL;
  gd_case_view v;
  gd_err err;
  if (!req)
    return;
  gd_err_clear(&err);
  rpc_case_set_id(c, req->case_id);
  size_t max = req->max_queries ? req->max_queries : GET_QUERIES_DEFAULT;
  if (max > QUERIES_MAX) {
    gd_err_set(&err, GD_EINVALID, "max_queries: %u is over the maximum of %d", req->max_queries,
               QUERIES_MAX);
    goto fail;
  }
  if (gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      gd_store_case_get(r, req->case_id, &v, &err))
    goto fail;
  if (!rpc_case_visible(c, &v)) {
    gd_err_set(&err, GD_ENOTFOUND, "case_id: no case %llu", (unsigned long long)req->case_id);
    goto fail;
  }
  if (!(m = rpc_case_unpack(&v, &err)))
    goto fail;
  if (!(m->queries = calloc(max + 1, sizeof *m->queries))) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  /* What the queries may add: the reply's maximum less the rest, with
   * room for each query's framing. */
  size_t lim = rpc_ctx(c)->lim.max_reply_bytes, base = v.body_len + 64;
  get_ctx g = {.m = m, .max = max, .budget = lim > base ? (lim - base) * 15 / 16 : 0,
               .err = &err};
  if (gd_store_case_queries_visit(r, v.id, req->queries_after, get_query, &g, &err) || g.rc)
    goto fail;
  m->queries_more = g.more;
  rpc_reply(c, &m->base);
  goto out;
fail:
  rpc_fail(c, &err);
out:
  gd_store_read_end(r);
  if (m)
    protobuf_c_message_free_unpacked(&m->base, NULL); /* frees queries and each query */
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- ListCases ---------------------------------------------------------------------- */

typedef struct list_ctx {
  gd_call *c;
  const char *brand;
  int status;
  size_t limit, budget, used;
  Graphd__V1__Case **v;
  size_t n;
  uint64_t last;
  bool more;
  gd_err *err;
  int rc;
} list_ctx;

static int list_one(void *ctx, const gd_case_view *v) {
  list_ctx *l = ctx;
  if (!rpc_case_visible(l->c, v))
    return 0;
  if (l->brand[0] && (strlen(l->brand) != v->brand.n || memcmp(l->brand, v->brand.p, v->brand.n)))
    return 0;
  if (l->status && v->status != l->status)
    return 0;
  if (l->n == l->limit || (l->n && l->used + v->body_len + 64 > l->budget)) {
    l->more = true;
    return 1;
  }
  if (!(l->v[l->n] = rpc_case_unpack(v, l->err))) {
    l->rc = l->err->code;
    return 1;
  }
  l->n++;
  l->used += v->body_len + 64;
  l->last = v->id;
  return 0;
}

void rpc_list_cases(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ListCasesRequest *req = (Graphd__V1__ListCasesRequest *)rpc_unpack(
      c, &graphd__v1__list_cases_request__descriptor, msg, len, has_msg);
  gd_rtxn *r = NULL;
  gd_err err;
  list_ctx l = {.c = c, .err = &err};
  if (!req)
    return;
  gd_err_clear(&err);
  l.brand = req->brand;
  l.status = req->status;
  l.limit = req->limit ? req->limit : LIST_DEFAULT;
  if (is_partner(c) && req->brand[0] && strcmp(req->brand, gd_call_brand(c)) != 0) {
    gd_err_set(&err, GD_EPERM, "brand: a partner lists cases of its own brand only");
    goto fail;
  }
  if (req->brand[0] && !gd_brand_valid(req->brand, strlen(req->brand))) {
    gd_err_set(&err, GD_EINVALID, "brand: must be 1..%d of [A-Za-z0-9._-]", GD_BRAND_MAX - 1);
    goto fail;
  }
  if (req->status && !status_valid(req->status)) {
    gd_err_set(&err, GD_EINVALID, "status: unknown case status %d", (int)req->status);
    goto fail;
  }
  if (l.limit > LIST_MAX) {
    gd_err_set(&err, GD_EINVALID, "limit: %u is over the maximum of %d", req->limit, LIST_MAX);
    goto fail;
  }
  size_t lim = rpc_ctx(c)->lim.max_reply_bytes;
  l.budget = lim * 15 / 16;
  if (!(l.v = calloc(l.limit + 1, sizeof *l.v))) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  if (gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      gd_store_cases_visit(r, req->after_case_id, list_one, &l, &err) || l.rc)
    goto fail;
  Graphd__V1__ListCasesReply rep = GRAPHD__V1__LIST_CASES_REPLY__INIT;
  rep.cases = l.v;
  rep.n_cases = l.n;
  rep.next_after_case_id = l.more ? l.last : 0;
  rpc_reply(c, &rep.base);
  goto out;
fail:
  rpc_fail(c, &err);
out:
  gd_store_read_end(r);
  for (size_t i = 0; i < l.n; i++)
    protobuf_c_message_free_unpacked(&l.v[i]->base, NULL);
  free(l.v);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- UpdateCase ----------------------------------------------------------------------- */

/* An item of a case, resolved against the store before the write. */
typedef struct item {
  uint64_t id;
  int type;
  char *key; /* normalised, arena memory */
} item;

typedef struct update_op {
  gd_write_op op;
  gd_call *call;
  Graphd__V1__UpdateCaseRequest *req;
  gd_arena *arena;
  item *add_sellers, *rm_sellers, *add_entities, *rm_entities;
  uint8_t *saved; /* the SavedQuery, packed (seq set in apply) */
  size_t saved_len;
  uint8_t *reply;
  size_t reply_len;
} update_op;

/* Whether the allowed moves include from -> to (reopen: closed -> open). */
static int transition(int from, int to, bool reopen, gd_err *err) {
  enum { OPEN = GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN,
         REFERRED = GRAPHD__V1__CASE_STATUS__CASE_STATUS_REFERRED,
         CLOSED = GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED };
  if (reopen && !(from == CLOSED && to == OPEN))
    return gd_err_set(err, GD_EPRECONDITION,
                      "reopen: only a closed case reopens, with status open (the case is %s)",
                      rpc_case_status_name(from));
  if (to == 0 || to == from)
    return GD_OK;
  bool ok = (from == OPEN && (to == REFERRED || to == CLOSED)) ||
            (from == REFERRED && (to == CLOSED || to == OPEN)) ||
            (from == CLOSED && to == OPEN && reopen);
  if (ok)
    return GD_OK;
  if (from == CLOSED && to == OPEN)
    return gd_err_set(err, GD_EPRECONDITION,
                      "status: a closed case opens again only with reopen (closed -> open)");
  return gd_err_set(err, GD_EPRECONDITION, "status: %s -> %s is not allowed%s",
                    rpc_case_status_name(from), rpc_case_status_name(to),
                    from == CLOSED ? ": reopen the case first" : "");
}

/* it: by id, or (an entity gone from the store) by type and key. */
static bool ref_eq(const Graphd__V1__EntityRef *e, const item *it) {
  if (it->id)
    return e->id == it->id;
  return (int)e->type == it->type && strcmp(e->key, it->key) == 0;
}

/*
 * The case's refs after adding add and removing rm: a new array (arena)
 * of the kept old refs (pointers into the old message) and new ones
 * (arena). *ret_changed says whether anything changed.
 */
static int merge_refs(gd_arena **a, Graphd__V1__EntityRef **old, size_t nold, const item *add,
                      size_t nadd, const item *rm, size_t nrm, Graphd__V1__EntityRef ***ret,
                      size_t *ret_n, bool *ret_changed, gd_err *err) {
  Graphd__V1__EntityRef **v = gd_arena_alloc(a, (nold + nadd + 1) * sizeof *v);
  if (!v)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  size_t n = 0;
  for (size_t i = 0; i < nold; i++) {
    bool drop = false;
    for (size_t k = 0; k < nrm && !drop; k++)
      drop = ref_eq(old[i], &rm[k]);
    if (drop)
      *ret_changed = true;
    else
      v[n++] = old[i];
  }
  for (size_t k = 0; k < nadd; k++) {
    bool have = false;
    for (size_t i = 0; i < n && !have; i++)
      have = ref_eq(v[i], &add[k]);
    if (have)
      continue;
    Graphd__V1__EntityRef *e = gd_arena_alloc(a, sizeof *e);
    if (!e)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    graphd__v1__entity_ref__init(e);
    e->id = add[k].id;
    e->type = (Graphd__V1__EntityType)add[k].type;
    e->key = add[k].key;
    v[n++] = e;
    *ret_changed = true;
  }
  *ret = v;
  *ret_n = n;
  return GD_OK;
}

static int merge_clusters(gd_arena **a, Graphd__V1__CaseCluster **old, size_t nold,
                          Graphd__V1__CaseCluster **add, size_t nadd,
                          Graphd__V1__CaseCluster **rm, size_t nrm,
                          Graphd__V1__CaseCluster ***ret, size_t *ret_n, bool *ret_changed,
                          gd_err *err) {
  Graphd__V1__CaseCluster **v = gd_arena_alloc(a, (nold + nadd + 1) * sizeof *v);
  if (!v)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  size_t n = 0;
  for (size_t i = 0; i < nold; i++) {
    bool drop = false;
    for (size_t k = 0; k < nrm && !drop; k++)
      drop = old[i]->snapshot_id == rm[k]->snapshot_id && old[i]->cluster_id == rm[k]->cluster_id;
    if (drop)
      *ret_changed = true;
    else
      v[n++] = old[i];
  }
  for (size_t k = 0; k < nadd; k++) {
    bool have = false;
    for (size_t i = 0; i < n && !have; i++)
      have = v[i]->snapshot_id == add[k]->snapshot_id && v[i]->cluster_id == add[k]->cluster_id;
    if (!have) {
      v[n++] = add[k];
      *ret_changed = true;
    }
  }
  *ret = v;
  *ret_n = n;
  return GD_OK;
}

static const char *save_field(const Graphd__V1__UpdateCaseRequest *req) {
  switch (req->save_case) {
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_LINKED_SELLERS:
    return "save_linked_sellers";
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_FIND_PATHS:
    return "save_find_paths";
  default:
    return "save_rank_suspects";
  }
}

/* The saved query of req (its save_* field), or NULL. */
static const ProtobufCMessage *save_request(const Graphd__V1__UpdateCaseRequest *req) {
  switch (req->save_case) {
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_LINKED_SELLERS:
    return &req->save_linked_sellers->base;
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_FIND_PATHS:
    return &req->save_find_paths->base;
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_RANK_SUSPECTS:
    return &req->save_rank_suspects->base;
  default:
    return NULL;
  }
}

/* The first field of req that would change a closed case's title,
 * assignee, items or saved queries, or NULL. A closed case keeps those as
 * they were when it closed (what was referred or acted on) until it is
 * reopened; notes may still be added. */
static const char *closed_field(const Graphd__V1__UpdateCaseRequest *req) {
  if (req->title[0])
    return "title";
  if (req->assignee[0] || req->clear_assignee)
    return req->clear_assignee ? "clear_assignee" : "assignee";
  const struct {
    size_t n;
    const char *field;
  } items[] = {{req->n_add_sellers, "add_sellers"},     {req->n_remove_sellers, "remove_sellers"},
               {req->n_add_entities, "add_entities"},   {req->n_remove_entities, "remove_entities"},
               {req->n_add_clusters, "add_clusters"},   {req->n_remove_clusters, "remove_clusters"}};
  for (size_t i = 0; i < sizeof items / sizeof *items; i++)
    if (items[i].n)
      return items[i].field;
  if (save_request(req))
    return save_field(req);
  return NULL;
}

/* Whether req may be applied to case v (as c's caller sees it): GD_OK, or
 * GD_ENOTFOUND (not visible to the caller), GD_EPRECONDITION
 * (expect_revision differs, a closed case's frozen field) or GD_EINVALID
 * (a status move not allowed), naming the field. The writer checks again
 * when it applies the request; a request with a saved query is checked
 * before the query runs too, so a refused one costs no query. */
static int update_check(gd_call *c, const Graphd__V1__UpdateCaseRequest *req,
                        const gd_case_view *v, gd_err *err) {
  int rc;
  if (!rpc_case_visible(c, v))
    return gd_err_set(err, GD_ENOTFOUND, "case_id: no case %llu",
                      (unsigned long long)req->case_id);
  if (req->expect_revision && req->expect_revision != v->revision)
    return gd_err_set(err, GD_EPRECONDITION,
                      "expect_revision: the case is at revision %llu, not %llu (changed since)",
                      (unsigned long long)v->revision, (unsigned long long)req->expect_revision);
  if ((rc = transition(v->status, req->status, req->reopen, err)))
    return rc;
  const char *frozen = v->status == GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED && !req->reopen
                           ? closed_field(req)
                           : NULL;
  if (frozen)
    return gd_err_set(err, GD_EPRECONDITION,
                      "%s: the case is closed; reopen it first (reopen, status open) to change "
                      "its title, assignee, items or saved queries (a note may be added)",
                      frozen);
  return GD_OK;
}

static int update_apply(gd_wtxn *t, gd_write_op *wop, gd_err *err) {
  update_op *op = (update_op *)wop;
  gd_call *c = op->call;
  Graphd__V1__UpdateCaseRequest *req = op->req;
  gd_arena *a = NULL;
  Graphd__V1__Case *m = NULL;
  gd_case_view v;
  int rc;
  if ((rc = gd_store_case_get_w(t, req->case_id, &v, err)) ||
      (rc = update_check(c, req, &v, err)))
    return rc;
  if (!(m = rpc_case_unpack(&v, err)))
    return err->code;
  gd_case_view hdr = v; /* v's views die with the put below */
  char brand[GD_BRAND_MAX];
  snprintf(brand, sizeof brand, "%.*s", (int)v.brand.n, v.brand.p);
  hdr.brand = gd_str_c(brand);
  Graphd__V1__Case n = *m;
  bool changed = false;
  const char *who = gd_call_principal(c, NULL);
  int64_t now = gd_call_start_ms(c);
  if (req->title[0] && strcmp(req->title, m->title) != 0)
    n.title = req->title, changed = true;
  if (req->status && (int)req->status != v.status)
    n.status = req->status, hdr.status = (int)req->status, changed = true;
  if (req->clear_assignee && m->assignee[0])
    n.assignee = (char *)"", changed = true;
  else if (req->assignee[0] && strcmp(req->assignee, m->assignee) != 0)
    n.assignee = req->assignee, changed = true;
  if (req->note[0]) {
    if (m->n_notes >= NOTES_MAX) {
      rc = gd_err_set(err, GD_ERESOURCE, "note: the case holds the limit of %d notes", NOTES_MAX);
      goto out;
    }
    Graphd__V1__CaseNote **notes = gd_arena_alloc(&a, (m->n_notes + 1) * sizeof *notes);
    Graphd__V1__CaseNote *note = gd_arena_alloc(&a, sizeof *note);
    if (!notes || !note) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      goto out;
    }
    if (m->n_notes)
      memcpy(notes, m->notes, m->n_notes * sizeof *notes);
    graphd__v1__case_note__init(note);
    note->time = now;
    note->author = (char *)who;
    note->text = req->note;
    notes[m->n_notes] = note;
    n.notes = notes;
    n.n_notes = m->n_notes + 1;
    changed = true;
  }
  if ((rc = merge_refs(&a, m->sellers, m->n_sellers, op->add_sellers, req->n_add_sellers,
                       op->rm_sellers, req->n_remove_sellers, &n.sellers, &n.n_sellers, &changed,
                       err)) ||
      (rc = merge_refs(&a, m->entities, m->n_entities, op->add_entities, req->n_add_entities,
                       op->rm_entities, req->n_remove_entities, &n.entities, &n.n_entities,
                       &changed, err)) ||
      (rc = merge_clusters(&a, m->clusters, m->n_clusters, req->add_clusters,
                           req->n_add_clusters, req->remove_clusters, req->n_remove_clusters,
                           &n.clusters, &n.n_clusters, &changed, err)))
    goto out;
  if (n.n_sellers + n.n_entities + n.n_clusters > ITEMS_MAX &&
      n.n_sellers + n.n_entities + n.n_clusters >
          m->n_sellers + m->n_entities + m->n_clusters) {
    rc = gd_err_set(err, GD_ERESOURCE,
                    "add_*: the case would hold %zu sellers, entities and clusters, over the "
                    "limit of %d",
                    n.n_sellers + n.n_entities + n.n_clusters, ITEMS_MAX);
    goto out;
  }
  if (op->saved) {
    if (v.nqueries >= QUERIES_MAX) {
      rc = gd_err_set(err, GD_ERESOURCE, "save: the case holds the limit of %d saved queries",
                      QUERIES_MAX);
      goto out;
    }
    /* Its seq is known only here. */
    Graphd__V1__SavedQuery *sq = graphd__v1__saved_query__unpack(NULL, op->saved_len, op->saved);
    if (!sq) {
      rc = gd_err_set(err, GD_EINTERNAL, "saved query does not parse");
      goto out;
    }
    sq->seq = v.nqueries + 1;
    uint8_t *buf = NULL;
    size_t blen = 0;
    rc = pack(&sq->base, &buf, &blen, err);
    protobuf_c_message_free_unpacked(&sq->base, NULL);
    if (!rc)
      rc = gd_store_case_query_put(t, v.id, v.nqueries + 1, buf, blen, err);
    free(buf);
    if (rc)
      goto out;
    hdr.nqueries = v.nqueries + 1;
    changed = true;
  }
  if (changed) {
    hdr.revision = v.revision + 1;
    n.updated = now;
    n.updated_by = (char *)who;
    if ((rc = body_put(t, &n, &hdr, err)))
      goto out;
  }
  n.case_id = hdr.id;
  n.revision = hdr.revision;
  n.query_count = hdr.nqueries;
  n.status = (Graphd__V1__CaseStatus)hdr.status;
  n.n_queries = 0;
  n.queries = NULL;
  if ((rc = pack_reply(c, &n, &op->reply, &op->reply_len, err)))
    goto out;
  rc = rpc_audit_txn(t, c, err);
out:
  protobuf_c_message_free_unpacked(&m->base, NULL);
  gd_arena_free(a);
  return rc;
}

static void update_done(gd_write_op *wop, const gd_err *err) {
  update_op *op = (update_op *)wop;
  answer(op->call, err, op->reply, op->reply_len);
  free(op->reply);
  free(op->saved);
  gd_arena_free(op->arena);
  protobuf_c_message_free_unpacked(&op->req->base, NULL);
  free(op);
}

/* Resolves refs[i] into items (the stored id, type and key); adding:
 * each must exist (and with sellers_only be a seller), else a removal of
 * an entity gone from the store matches by type and key. Errors:
 * INVALID_ARGUMENT, NOT_FOUND, naming the field. */
static int resolve_items(gd_rtxn *r, gd_arena **a, Graphd__V1__EntityRef **refs, size_t n,
                         bool adding, bool sellers_only, const char *field, item **ret,
                         gd_err *err) {
  item *v = gd_arena_alloc(a, (n + 1) * sizeof *v);
  char f[64];
  if (!v)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    gd_ref ref;
    gd_entity_view e;
    snprintf(f, sizeof f, "%s[%zu]", field, i);
    if (gd_pb_ref(refs[i], a, &ref, err, f))
      return err->code;
    if (gd_store_get(r, &ref, &e, err)) {
      if (adding || err->code != GD_ENOTFOUND || ref.id || !ref.key.p)
        return gd_err_prefix(err, "%s", f);
      v[i] = (item){0, ref.type, NULL};
      if (!(v[i].key = gd_arena_alloc(a, ref.key.n + 1)))
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      memcpy(v[i].key, ref.key.p, ref.key.n);
      v[i].key[ref.key.n] = 0;
      continue;
    }
    if (sellers_only && e.type != GD_TYPE_SELLER)
      return gd_err_set(err, GD_EINVALID, "%s: not a seller", f);
    v[i].id = e.id;
    v[i].type = e.type;
    if (!(v[i].key = gd_arena_alloc(a, e.key.n + 1)))
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    memcpy(v[i].key, e.key.p, e.key.n);
    v[i].key[e.key.n] = 0;
  }
  *ret = v;
  return GD_OK;
}

/* Runs the saved query (on a query thread) and packs it as a SavedQuery
 * into op->saved. */
static int update_save(update_op *op, gd_err *err) {
  gd_call *c = op->call;
  const Graphd__V1__UpdateCaseRequest *req = op->req;
  const ProtobufCMessage *q = save_request(req);
  uint8_t *rbuf = NULL;
  size_t rlen = 0;
  int rc = rpc_investigate_packed(c, q, &rbuf, &rlen, err);
  if (rc)
    return gd_err_prefix(err, "%s", save_field(req));
  Graphd__V1__SavedQuery sq = GRAPHD__V1__SAVED_QUERY__INIT;
  ProtobufCMessage *reply = NULL;
  sq.saved_at = gd_call_start_ms(c);
  sq.saved_by = (char *)gd_call_principal(c, NULL);
  sq.comment = req->save_comment;
  switch (req->save_case) {
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_LINKED_SELLERS:
    sq.request_case = GRAPHD__V1__SAVED_QUERY__REQUEST_LINKED_SELLERS;
    sq.linked_sellers = req->save_linked_sellers;
    reply = protobuf_c_message_unpack(&graphd__v1__linked_sellers_reply__descriptor, NULL, rlen,
                                      rbuf);
    sq.reply_case = GRAPHD__V1__SAVED_QUERY__REPLY_LINKED_SELLERS_REPLY;
    sq.linked_sellers_reply = (Graphd__V1__LinkedSellersReply *)reply;
    break;
  case GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_FIND_PATHS:
    sq.request_case = GRAPHD__V1__SAVED_QUERY__REQUEST_FIND_PATHS;
    sq.find_paths = req->save_find_paths;
    reply = protobuf_c_message_unpack(&graphd__v1__find_paths_reply__descriptor, NULL, rlen, rbuf);
    sq.reply_case = GRAPHD__V1__SAVED_QUERY__REPLY_FIND_PATHS_REPLY;
    sq.find_paths_reply = (Graphd__V1__FindPathsReply *)reply;
    break;
  default:
    sq.request_case = GRAPHD__V1__SAVED_QUERY__REQUEST_RANK_SUSPECTS;
    sq.rank_suspects = req->save_rank_suspects;
    reply = protobuf_c_message_unpack(&graphd__v1__rank_suspects_reply__descriptor, NULL, rlen,
                                      rbuf);
    sq.reply_case = GRAPHD__V1__SAVED_QUERY__REPLY_RANK_SUSPECTS_REPLY;
    sq.rank_suspects_reply = (Graphd__V1__RankSuspectsReply *)reply;
    break;
  }
  free(rbuf);
  if (!reply)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  gd_rtxn *r = NULL;
  gd_snapshot_view sv;
  size_t ns = 0;
  bool more;
  if (gd_store_read_begin(rpc_ctx(c)->store, &r, err) == GD_OK &&
      gd_store_snapshot_list(r, 0, 1, &sv, &ns, &more, err) == GD_OK && ns == 1)
    sq.snapshot_id = sv.id;
  gd_store_read_end(r);
  gd_err_clear(err);
  rc = pack(&sq.base, &op->saved, &op->saved_len, err);
  protobuf_c_message_free_unpacked(reply, NULL);
  return rc;
}

static void update_heavy(void *arg) {
  update_op *op = arg;
  gd_err err;
  gd_err_clear(&err);
  if (update_save(op, &err)) {
    update_done(&op->op, &err);
    return;
  }
  gd_writer_submit(rpc_ctx(op->call)->writer, &op->op);
}

void rpc_update_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__UpdateCaseRequest *req = (Graphd__V1__UpdateCaseRequest *)rpc_unpack(
      c, &graphd__v1__update_case_request__descriptor, msg, len, has_msg);
  gd_rtxn *r = NULL;
  gd_err err;
  char f[64];
  if (!req)
    return;
  gd_err_clear(&err);
  rpc_case_set_id(c, req->case_id);
  update_op *op = calloc(1, sizeof *op);
  if (!op) {
    protobuf_c_message_free_unpacked(&req->base, NULL);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  op->call = c;
  op->req = req;
  op->op.apply = update_apply;
  op->op.done = update_done;
  if (req->case_id == 0) {
    gd_err_set(&err, GD_EINVALID, "case_id: required");
    goto fail;
  }
  if (is_partner(c)) {
    const char *field = req->n_add_sellers      ? "add_sellers"
                        : req->n_remove_sellers ? "remove_sellers"
                        : req->n_add_entities   ? "add_entities"
                        : req->n_remove_entities ? "remove_entities"
                        : req->n_add_clusters   ? "add_clusters"
                        : req->n_remove_clusters ? "remove_clusters"
                        : save_request(req)     ? save_field(req)
                                                : NULL;
    if (field) {
      gd_err_set(&err, GD_EPERM,
                 "%s: a partner changes a case's title, status, assignee and notes only "
                 "(what it holds comes from the graph, which partners do not query)",
                 field);
      goto fail;
    }
  }
  if (req->status && !status_valid(req->status)) {
    gd_err_set(&err, GD_EINVALID, "status: unknown case status %d", (int)req->status);
    goto fail;
  }
  if (req->clear_assignee && req->assignee[0]) {
    gd_err_set(&err, GD_EINVALID, "assignee: not with clear_assignee");
    goto fail;
  }
  if (check_line(req->title, TITLE_MAX, false, "title", &err) ||
      check_line(req->assignee, ASSIGNEE_MAX, false, "assignee", &err) ||
      (req->note[0] && check_note(req->note, "note", &err)) ||
      check_line(req->save_comment, TITLE_MAX, false, "save_comment", &err))
    goto fail;
  size_t nitems = req->n_add_sellers + req->n_add_entities + req->n_add_clusters +
                  req->n_remove_sellers + req->n_remove_entities + req->n_remove_clusters;
  if (nitems > ITEMS_MAX) {
    gd_err_set(&err, GD_ERESOURCE, "add_*, remove_*: %zu items is over the limit of %d", nitems,
               ITEMS_MAX);
    goto fail;
  }
  if (req->save_comment[0] && !save_request(req)) {
    gd_err_set(&err, GD_EINVALID, "save_comment: no save_* query given");
    goto fail;
  }
  /* One read transaction for the items and, with a saved query, the case. */
  if ((nitems || save_request(req)) && gd_store_read_begin(rpc_ctx(c)->store, &r, &err))
    goto fail;
  if (nitems) {
    if (resolve_items(r, &op->arena, req->add_sellers, req->n_add_sellers, true, true, "add_sellers",
                      &op->add_sellers, &err) ||
        resolve_items(r, &op->arena, req->remove_sellers, req->n_remove_sellers, false, false,
                      "remove_sellers", &op->rm_sellers, &err) ||
        resolve_items(r, &op->arena, req->add_entities, req->n_add_entities, true, false,
                      "add_entities", &op->add_entities, &err) ||
        resolve_items(r, &op->arena, req->remove_entities, req->n_remove_entities, false, false,
                      "remove_entities", &op->rm_entities, &err))
      goto fail;
    for (size_t i = 0; i < req->n_add_clusters; i++) {
      const Graphd__V1__CaseCluster *cl = req->add_clusters[i];
      const void *sum;
      size_t sl;
      snprintf(f, sizeof f, "add_clusters[%zu]", i);
      if (!cl || !cl->snapshot_id) {
        gd_err_set(&err, GD_EINVALID, "%s.snapshot_id: required", f);
        goto fail;
      }
      if (gd_store_cluster_get(r, cl->snapshot_id, cl->cluster_id, &sum, &sl, &err)) {
        gd_err_prefix(&err, "%s", f);
        goto fail;
      }
    }
    for (size_t i = 0; i < req->n_remove_clusters; i++)
      if (!req->remove_clusters[i]) {
        gd_err_set(&err, GD_EINVALID, "remove_clusters[%zu]: missing", i);
        goto fail;
      }
  }
  if (save_request(req)) {
    /* Refused now rather than after the query has run (the writer checks
     * again: the case may change meanwhile). */
    gd_case_view v;
    if (gd_store_case_get(r, req->case_id, &v, &err) || update_check(c, req, &v, &err))
      goto fail;
  }
  gd_store_read_end(r);
  r = NULL;
  if (save_request(req)) {
    gd_call_offload(c, update_heavy, op); /* the query runs where heavy calls run */
    return;
  }
  gd_writer_submit(rpc_ctx(c)->writer, &op->op);
  return;
fail:
  gd_store_read_end(r);
  update_done(&op->op, &err);
}
