/*
 * The audit trail in the rpc layer: the server's audit hook (one write op
 * per call through the group writer, the reply held until it is durable),
 * in-transaction records for writes, the target text of a request, and
 * ListAudit / VerifyAudit.
 */
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/limits.h"
#include "rpc/rpc_int.h"
#include "store/audit.h"

/* Records of reads not yet committed (rpc->async_pending); beyond
 * ASYNC_MAX a read waits for its record like a write (backpressure: the
 * queue cannot grow without bound when the disk is slower than the calls). */
#define ASYNC_MAX 4096

static void fill(gd_audit_in *in, gd_call *c, int status) {
  gd_role role;
  const char *who = gd_call_principal(c, &role);
  *in = (gd_audit_in){
      .time_ms = gd_call_start_ms(c),
      .status = status,
      .role = (uint8_t)role,
      .principal = who,
      .peer = gd_call_peer(c),
      .case_id = gd_call_case_id(c),
      .method = gd_call_path(c),
      .target = gd_call_target(c),
  };
}

/*
 * One record through the writer. Held (call != NULL): the call's reply
 * waits for the commit, and the record is built from the call in apply.
 * Not held (a successful read with --audit-reads async): the call has
 * gone on, so the record's strings were copied into the op (`in`).
 */
typedef struct aop {
  gd_write_op op;
  gd_rpc *rpc;
  gd_call *call;
  int status;
  gd_audit_in in;
  char strings[]; /* the copies behind in's strings */
} aop;

static int aop_apply(gd_wtxn *t, gd_write_op *op, gd_err *err) {
  aop *a = (aop *)op;
  gd_audit_in in;
  if (a->call)
    fill(&in, a->call, a->status);
  else
    in = a->in;
  return gd_store_audit_append(t, &in, NULL, err);
}

static void aop_done(gd_write_op *op, const gd_err *err) {
  aop *a = (aop *)op;
  gd_rpc *R = a->rpc;
  bool ok = err->code == GD_OK;
  if (!ok && !atomic_exchange(&R->audit_broken, true))
    gd_error("audit trail cannot be written, refusing calls from now on: %s", err->msg);
  if (a->call)
    gd_call_audit_done(a->call, ok, ok ? NULL : err->msg);
  else
    atomic_fetch_sub(&R->async_pending, 1);
  free(a);
}

/* A copy of the call's record for an op that outlives the call. */
static aop *aop_copy(gd_call *c, int status) {
  gd_audit_in in;
  fill(&in, c, status);
  const char *src[5] = {in.principal, in.peer, in.case_id, in.method, in.target};
  size_t len[5], total = 0;
  for (int i = 0; i < 5; i++)
    total += (len[i] = strnlen(src[i], i == 4 ? GD_AUDIT_TARGET_MAX : GD_AUDIT_FIELD_MAX)) + 1;
  aop *a = calloc(1, sizeof *a + total);
  if (!a)
    return NULL;
  char *p = a->strings, *dst[5];
  for (int i = 0; i < 5; i++) {
    memcpy(p, src[i], len[i]);
    p[len[i]] = 0;
    dst[i] = p;
    p += len[i] + 1;
  }
  a->in = in;
  a->in.principal = dst[0], a->in.peer = dst[1], a->in.case_id = dst[2], a->in.method = dst[3],
  a->in.target = dst[4];
  return a;
}

static void submit(gd_rpc *R, aop *a, int status) {
  a->rpc = R;
  a->op.apply = aop_apply;
  a->op.done = aop_done;
  a->op.lazy_sync = true; /* see writer.h: one fdatasync, never a torn environment */
  a->status = status;
  gd_writer_submit(R->writer, &a->op);
}

/* The audit_now hook: a successful read under --audit-reads async replies
 * at once, its record (copied: the call goes on) lingering to share a
 * commit, unless ASYNC_MAX records wait already. ctx: the gd_rpc. */
static bool hook_now(void *ctx, gd_call *c, int status) {
  gd_rpc *R = ctx;
  const gd_method *m = gd_call_method(c);
  if (!R->audit_reads_async || status != 0 || !m || m->role > GD_ROLE_READER)
    return false;
  if (atomic_fetch_add(&R->async_pending, 1) >= ASYNC_MAX) {
    atomic_fetch_sub(&R->async_pending, 1); /* too many wait: this one waits too */
    return false;
  }
  aop *a = aop_copy(c, status);
  if (!a) {
    atomic_fetch_sub(&R->async_pending, 1); /* the held path tries again, or fails the call */
    return false;
  }
  a->op.linger = true; /* answered already: it may wait to share a commit */
  submit(R, a, status);
  return true;
}

/* The audit hook: the call's finish is held until its record is durable.
 * ctx: the gd_rpc (gd_rpc_audit_hooks); c may be a call to an unknown
 * method, so the context comes from ctx, not from the call. */
static void hook(void *ctx, gd_call *c, int status) {
  aop *a = calloc(1, sizeof *a);
  if (!a) {
    gd_call_audit_done(c, false, "out of memory");
    return;
  }
  a->call = c;
  submit(ctx, a, status);
}

static bool ready(void *ctx) {
  gd_rpc *R = ctx;
  return !atomic_load(&R->audit_broken);
}

void gd_rpc_audit_hooks(gd_rpc *r, void (**ret_audit)(void *, gd_call *, int),
                        bool (**ret_now)(void *, gd_call *, int), bool (**ret_ready)(void *),
                        void **ret_ctx) {
  *ret_audit = hook;
  *ret_now = hook_now;
  *ret_ready = ready;
  *ret_ctx = r;
}

int rpc_audit_txn_status(gd_wtxn *t, gd_call *c, int status, const char *target, gd_err *err) {
  if (!rpc_ctx(c)->audit)
    return GD_OK;
  gd_audit_in in;
  fill(&in, c, status);
  in.target = target;
  return gd_store_audit_append(t, &in, NULL, err);
}

int rpc_audit_txn(gd_wtxn *t, gd_call *c, gd_err *err) {
  if (!rpc_ctx(c)->audit)
    return GD_OK;
  gd_audit_in in;
  fill(&in, c, 0);
  int rc = gd_store_audit_append(t, &in, NULL, err);
  if (!rc)
    gd_call_mark_audited(c, true);
  return rc;
}

/* ---- the target of a request -------------------------------------------- */

/* Appends " NAME=VALUE" (VALUE: v, with a prefix and/or suffix). */
static void add(char *buf, size_t size, size_t *n, const char *name, const char *pre,
                unsigned long long v, const char *post) {
  if (*n >= size)
    return;
  int k = snprintf(buf + *n, size - *n, "%s%s=%s%llu%s", *n ? " " : "", name, pre, v, post);
  if (k > 0)
    *n += (size_t)k;
}

/*
 * "ref=seller:s17 snapshot_id=3": the entity references (EntityRef fields,
 * as type:key or id:N) and the non-zero *_id fields of the request, one
 * level deep, plus the number of items of repeated message fields.
 */
void rpc_audit_target(gd_call *c, const ProtobufCMessage *m) {
  char buf[GD_AUDIT_TARGET_MAX];
  size_t n = 0;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *p = (const char *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t cnt = *(const size_t *)((const char *)m + f->quantifier_offset);
      if (cnt && f->type == PROTOBUF_C_TYPE_MESSAGE)
        add(buf, sizeof buf, &n, f->name, "", cnt, " items");
      continue;
    }
    if (f->type == PROTOBUF_C_TYPE_UINT64 && strstr(f->name, "id")) {
      uint64_t v = *(const uint64_t *)p;
      if (v)
        add(buf, sizeof buf, &n, f->name, "", v, "");
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &graphd__v1__entity_ref__descriptor) {
      const Graphd__V1__EntityRef *r = *(Graphd__V1__EntityRef *const *)p;
      if (!r)
        continue;
      if (r->id) {
        add(buf, sizeof buf, &n, f->name, "id:", r->id, "");
      } else {
        char key[300];
        snprintf(key, sizeof key, ":%.290s", r->key ? r->key : "");
        add(buf, sizeof buf, &n, f->name, "type", (unsigned long long)r->type, key);
      }
    }
  }
  if (n >= sizeof buf)
    n = sizeof buf - 1;
  buf[n] = 0;
  if (n)
    gd_call_set_target(c, buf);
}

/* ---- ListAudit, VerifyAudit ------------------------------------------------ */

typedef struct lctx {
  const Graphd__V1__ListAuditRequest *q;
  size_t limit, n;
  bool more;
  uint64_t last;
  Graphd__V1__AuditRecord *recs;
  Graphd__V1__AuditRecord **ptrs;
  gd_arena **a;
  bool oom;
} lctx;

static bool str_eq(const char *want, const char *s, size_t len) {
  return !want[0] || (strlen(want) == len && memcmp(want, s, len) == 0);
}

static char *dup_n(gd_arena **a, const char *s, size_t n) {
  char *p = gd_arena_alloc(a, n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

static int l_visit(void *ctx, const gd_audit_view *v) {
  lctx *l = ctx;
  const Graphd__V1__ListAuditRequest *q = l->q;
  if (q->until && v->time_ms > q->until)
    return 0;
  if ((q->since && v->time_ms < q->since) || !str_eq(q->principal, v->principal, v->principal_len) ||
      !str_eq(q->case_id, v->case_id, v->case_id_len) ||
      !str_eq(q->method, v->method, v->method_len))
    return 0;
  if (l->n == l->limit) {
    l->more = true;
    return 1;
  }
  Graphd__V1__AuditRecord *r = &l->recs[l->n];
  graphd__v1__audit_record__init(r);
  r->time = v->time_ms;
  r->seq = v->seq;
  r->status = v->status;
  r->role = (char *)gd_role_name((gd_role)v->role);
  if (!(r->principal = dup_n(l->a, v->principal, v->principal_len)) ||
      !(r->peer = dup_n(l->a, v->peer, v->peer_len)) ||
      !(r->case_id = dup_n(l->a, v->case_id, v->case_id_len)) ||
      !(r->method = dup_n(l->a, v->method, v->method_len)) ||
      !(r->target = dup_n(l->a, v->target, v->target_len)) ||
      !(r->hash.data = (uint8_t *)dup_n(l->a, (const char *)v->hash, 32)) ||
      !(r->prev_hash.data = (uint8_t *)dup_n(l->a, (const char *)v->prev, 32))) {
    l->oom = true;
    return 1;
  }
  r->hash.len = r->prev_hash.len = 32;
  l->ptrs[l->n++] = r;
  l->last = v->seq;
  return 0;
}

void rpc_list_audit(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ListAuditRequest *q = (Graphd__V1__ListAuditRequest *)rpc_unpack(
      c, &graphd__v1__list_audit_request__descriptor, msg, len, has_msg);
  if (!q)
    return;
  gd_err err = {0};
  gd_rtxn *r = NULL;
  gd_arena *a = NULL;
  lctx l = {.q = q, .a = &a};
  uint64_t after = 0;
  char tok[32];
  gd_rpc *R = rpc_ctx(c);
  l.limit = q->limit ? q->limit : 100;
  if (l.limit > R->lim.result_cap) {
    gd_limit_hit(GD_LIMIT_RESULT_CAP);
    gd_err_set(&err, GD_EINVALID, "limit: at most %zu", R->lim.result_cap);
    goto fail;
  }
  if (q->since < 0 || q->until < 0 || (q->since && q->until && q->since > q->until)) {
    gd_err_set(&err, GD_EINVALID, "since, until: not a window (since %lld, until %lld)",
               (long long)q->since, (long long)q->until);
    goto fail;
  }
  if (q->page_token[0]) {
    char *end;
    after = strtoull(q->page_token + 1, &end, 10);
    if (q->page_token[0] != 'a' || *end || !after) {
      gd_err_set(&err, GD_EINVALID, "page_token: not a token from ListAudit");
      goto fail;
    }
  }
  l.recs = calloc(l.limit, sizeof *l.recs);
  l.ptrs = calloc(l.limit, sizeof *l.ptrs);
  if (!l.recs || !l.ptrs) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  /* A case's records come from the case index (their number, not the
   * trail's, sets the cost); the other filters apply to them as usual. */
  if (gd_store_read_begin(R->store, &r, &err) ||
      (q->case_id[0] ? gd_store_audit_visit_case(r, q->case_id, strlen(q->case_id), after,
                                                 l_visit, &l, &err)
                     : gd_store_audit_visit(r, after, l_visit, &l, &err)))
    goto fail;
  if (l.oom) {
    gd_err_set(&err, GD_ENOMEM, "out of memory");
    goto fail;
  }
  Graphd__V1__ListAuditReply rep = GRAPHD__V1__LIST_AUDIT_REPLY__INIT;
  rep.records = l.ptrs;
  rep.n_records = l.n;
  snprintf(tok, sizeof tok, "a%llu", (unsigned long long)l.last);
  rep.next_page_token = l.more ? tok : "";
  rpc_reply(c, &rep.base);
  goto out;
fail:
  rpc_fail(c, &err);
out:
  gd_store_read_end(r);
  gd_arena_free(a);
  free(l.recs);
  free(l.ptrs);
  protobuf_c_message_free_unpacked(&q->base, NULL);
}

void rpc_verify_audit(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  ProtobufCMessage *q =
      rpc_unpack(c, &graphd__v1__verify_audit_request__descriptor, msg, len, has_msg);
  if (!q)
    return;
  protobuf_c_message_free_unpacked(q, NULL);
  gd_err err = {0};
  gd_rtxn *r = NULL;
  uint64_t n = 0, bad = 0;
  char why[256];
  if (gd_store_read_begin(rpc_ctx(c)->store, &r, &err) ||
      gd_store_audit_verify(r, &n, &bad, why, sizeof why, &err)) {
    gd_store_read_end(r);
    rpc_fail(c, &err);
    return;
  }
  gd_store_read_end(r);
  Graphd__V1__VerifyAuditReply rep = GRAPHD__V1__VERIFY_AUDIT_REPLY__INIT;
  rep.records = n;
  rep.ok = bad == 0;
  rep.first_bad_seq = bad;
  rep.problem = bad ? why : "";
  if (bad)
    gd_error("%s", why);
  rpc_reply(c, &rep.base);
}
