/*
 * ExportCase: a case's evidence pack (docs/ARCHITECTURE.md, "Evidence
 * packs"; the parts are listed at ExportCaseRequest in graphd.proto).
 *
 * Everything is read in one read transaction (the case, its saved
 * queries, the manifests of the snapshots it names, its audit records and
 * the trail's tip), rendered (case.json through the proto3 JSON
 * transcoder, case.html here, audit.jsonl), hashed, listed in
 * MANIFEST.json, signed (rpc/signer.h) and zipped (libarchive) in memory,
 * then streamed in 1 MiB messages. The building runs where heavy calls run
 * (gd_call_offload).
 */
#include <archive.h>
#include <archive_entry.h>
#include <json-c/json.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/entity.h"
#include "core/strbuf.h"
#include "rpc/rpc_int.h"
#include "rpc/signer.h"
#include "server/pbjson.h"
#include "store/audit.h"
#include "store/case.h"
#include "store/snapshot.h"

#define CHUNK (1u << 20)
#define PACK_MAX ((size_t)512 << 20) /* the zip, bytes */
#define DRAW_SELLERS 40
#define DRAW_ENTITIES 60
#define MAX_PARTS 64
#define ITEMS_SNAPS_MAX 5100 /* clusters (5000) and saved queries (100) of a case */

typedef struct part {
  char name[64];
  uint8_t *data; /* malloc'd */
  size_t n;
} part;

typedef struct pack {
  part parts[MAX_PARTS];
  size_t nparts;
  gd_strbuf zip;
} pack;

static void pack_free(pack *p) {
  for (size_t i = 0; i < p->nparts; i++)
    free(p->parts[i].data);
  gd_strbuf_free(&p->zip);
}

/* Takes data (malloc'd) as part name. */
static int add_part(pack *p, const char *name, void *data, size_t n, gd_err *err) {
  if (p->nparts == MAX_PARTS) {
    free(data);
    return gd_err_set(err, GD_ERESOURCE, "a pack holds at most %d parts", MAX_PARTS);
  }
  part *x = &p->parts[p->nparts++];
  snprintf(x->name, sizeof x->name, "%s", name);
  x->data = data;
  x->n = n;
  return GD_OK;
}

static int add_strbuf(pack *p, const char *name, gd_strbuf *b, gd_err *err) {
  if (b->oom) {
    gd_strbuf_free(b);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  char *d = b->p ? b->p : calloc(1, 1);
  size_t n = b->n;
  *b = (gd_strbuf)GD_STRBUF_INIT;
  if (!d)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  return add_part(p, name, d, n, err);
}

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- HTML --------------------------------------------------------------------- */

static void esc(gd_strbuf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<':
      gd_strbuf_printf(b, "&lt;");
      break;
    case '>':
      gd_strbuf_printf(b, "&gt;");
      break;
    case '&':
      gd_strbuf_printf(b, "&amp;");
      break;
    case '"':
      gd_strbuf_printf(b, "&quot;");
      break;
    default:
      gd_strbuf_printf(b, "%c", *s);
    }
  }
}


static void when(gd_strbuf *b, int64_t ms) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  char buf[32];
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  gd_strbuf_printf(b, "%s", buf);
}

/* A drawing node: a seller or a shared entity. */
typedef struct node {
  uint64_t id;
  int type;
  const char *key;
  bool query;
} node;

static size_t node_at(node *v, size_t *n, size_t max, uint64_t id, int type, const char *key) {
  for (size_t i = 0; i < *n; i++)
    if (v[i].id == id)
      return i;
  if (*n == max)
    return SIZE_MAX;
  v[*n] = (node){id, type, key, false};
  return (*n)++;
}

/* An SVG of a LinkedSellers reply: sellers on the outer ring (the query
 * seller first, marked), the entities they share on the inner ring, a line
 * for each seller-entity link the evidence names. */
static void draw_linked(gd_strbuf *b, const Graphd__V1__LinkedSellersReply *r,
                        const char *query_key) {
  node s[DRAW_SELLERS + 1], e[DRAW_ENTITIES];
  size_t ns = 0, ne = 0, nedges = 0;
  struct {
    size_t s, e;
  } edges[(DRAW_SELLERS + 1) * 16];
  uint64_t qid = 0;
  for (size_t i = 0; i < r->n_sellers && !qid; i++)
    if (r->sellers[i]->n_evidence)
      qid = r->sellers[i]->evidence[0]->from_seller_id;
  node_at(s, &ns, DRAW_SELLERS + 1, qid, 1, query_key);
  s[0].query = true;
  for (size_t i = 0; i < r->n_sellers && ns <= DRAW_SELLERS; i++) {
    const Graphd__V1__LinkedSeller *ls = r->sellers[i];
    if (!ls->seller)
      continue;
    node_at(s, &ns, DRAW_SELLERS + 1, ls->seller->id, 1, ls->seller->key);
    for (size_t k = 0; k < ls->n_evidence; k++) {
      const Graphd__V1__EvidenceStep *st = ls->evidence[k];
      for (size_t j = 0; j < st->n_shared; j++) {
        const Graphd__V1__Entity *en = st->shared[j]->entity;
        if (!en)
          continue;
        size_t ei = node_at(e, &ne, DRAW_ENTITIES, en->id, en->type, en->key);
        size_t a = node_at(s, &ns, DRAW_SELLERS + 1, st->from_seller_id, 1, "");
        size_t c = node_at(s, &ns, DRAW_SELLERS + 1, st->to_seller_id, 1, "");
        if (ls->seller->id == st->to_seller_id)
          s[c].key = ls->seller->key;
        if (ei == SIZE_MAX)
          continue;
        if (a != SIZE_MAX && nedges < sizeof edges / sizeof edges[0])
          edges[nedges].s = a, edges[nedges++].e = ei;
        if (c != SIZE_MAX && nedges < sizeof edges / sizeof edges[0])
          edges[nedges].s = c, edges[nedges++].e = ei;
      }
    }
  }
  const double W = 640, H = 640, cx = W / 2, cy = H / 2, ro = 270, ri = 150;
  double sx[DRAW_SELLERS + 1], sy[DRAW_SELLERS + 1], ex[DRAW_ENTITIES], ey[DRAW_ENTITIES];
  for (size_t i = 0; i < ns; i++) {
    double a = 2 * M_PI * (double)i / (double)ns - M_PI / 2;
    sx[i] = cx + ro * cos(a), sy[i] = cy + ro * sin(a);
  }
  for (size_t i = 0; i < ne; i++) {
    double a = 2 * M_PI * ((double)i + 0.5) / (double)(ne ? ne : 1) - M_PI / 2;
    ex[i] = cx + ri * cos(a), ey[i] = cy + ri * sin(a);
  }
  gd_strbuf_printf(b, "<svg class=\"draw\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
                      "height=\"%.0f\" role=\"img\">\n", W, H, W, H);
  for (size_t i = 0; i < nedges; i++)
    gd_strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                     sx[edges[i].s], sy[edges[i].s], ex[edges[i].e], ey[edges[i].e]);
  for (size_t i = 0; i < ne; i++) {
    gd_strbuf_printf(b, "<rect class=\"ent\" x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\">"
                        "<title>%s ", ex[i] - 6, ey[i] - 6, gd_type_name(e[i].type));
    esc(b, e[i].key);
    gd_strbuf_printf(b, "</title></rect><text x=\"%.1f\" y=\"%.1f\">", ex[i] + 8, ey[i] + 4);
    esc(b, e[i].key);
    gd_strbuf_printf(b, "</text>\n");
  }
  for (size_t i = 0; i < ns; i++) {
    gd_strbuf_printf(b, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"><title>seller ",
                     s[i].query ? "query" : "seller", sx[i], sy[i], s[i].query ? 10 : 7);
    esc(b, s[i].key);
    gd_strbuf_printf(b, "</title></circle><text x=\"%.1f\" y=\"%.1f\">", sx[i] + 10, sy[i] + 4);
    esc(b, s[i].key);
    gd_strbuf_printf(b, "</text>\n");
  }
  gd_strbuf_printf(b, "</svg>\n");
}

static void shared_cells(gd_strbuf *b, const Graphd__V1__EvidenceStep *st) {
  for (size_t j = 0; j < st->n_shared; j++) {
    const Graphd__V1__SharedEntity *sh = st->shared[j];
    if (!sh->entity)
      continue;
    gd_strbuf_printf(b, "%s%s <b>", j ? "; " : "", gd_type_name(sh->entity->type));
    esc(b, sh->entity->key);
    gd_strbuf_printf(b, "</b> (shared by %llu, weight %.3f)",
                     (unsigned long long)sh->entity->seller_count, sh->weight);
  }
}

static void html_linked(gd_strbuf *b, const Graphd__V1__SavedQuery *q) {
  const Graphd__V1__LinkedSellersReply *r = q->linked_sellers_reply;
  const char *key = q->linked_sellers->seller ? q->linked_sellers->seller->key : "";
  gd_strbuf_printf(b, "<p>Sellers linked to <b>");
  esc(b, key);
  gd_strbuf_printf(b, "</b> within %u steps: %zu.</p>\n",
                   q->linked_sellers->max_hops ? q->linked_sellers->max_hops : 1, r->n_sellers);
  draw_linked(b, r, key);
  gd_strbuf_printf(b, "<table><tr><th>seller</th><th>steps</th><th>score</th>"
                      "<th>evidence: the entities each step shares</th></tr>\n");
  for (size_t i = 0; i < r->n_sellers; i++) {
    const Graphd__V1__LinkedSeller *ls = r->sellers[i];
    gd_strbuf_printf(b, "<tr><td>");
    esc(b, ls->seller ? ls->seller->key : "");
    gd_strbuf_printf(b, "</td><td>%u</td><td>%.4f</td><td>", ls->hops, ls->score);
    for (size_t k = 0; k < ls->n_evidence; k++) {
      gd_strbuf_printf(b, "%sstep %zu (tie %.3f): ", k ? "<br>" : "", k + 1,
                       ls->evidence[k]->tie);
      shared_cells(b, ls->evidence[k]);
    }
    gd_strbuf_printf(b, "</td></tr>\n");
  }
  gd_strbuf_printf(b, "</table>\n");
}

static void html_paths(gd_strbuf *b, const Graphd__V1__SavedQuery *q) {
  const Graphd__V1__FindPathsReply *r = q->find_paths_reply;
  gd_strbuf_printf(b, "<p>%zu paths.</p>\n<ol>\n", r->n_paths);
  for (size_t i = 0; i < r->n_paths; i++) {
    const Graphd__V1__Path *p = r->paths[i];
    gd_strbuf_printf(b, "<li>");
    for (size_t k = 0; k < p->n_entities; k++) {
      if (k) {
        const Graphd__V1__Link *l = k - 1 < p->n_links ? p->links[k - 1] : NULL;
        gd_strbuf_printf(b, " &mdash;[%llu&times;]&rarr; ",
                         (unsigned long long)(l ? l->count : 0));
      }
      gd_strbuf_printf(b, "%s <b>", gd_type_name(p->entities[k]->type));
      esc(b, p->entities[k]->key);
      gd_strbuf_printf(b, "</b>");
    }
    gd_strbuf_printf(b, "</li>\n");
  }
  gd_strbuf_printf(b, "</ol>\n");
}

static void html_suspects(gd_strbuf *b, const Graphd__V1__SavedQuery *q) {
  const Graphd__V1__RankSuspectsReply *r = q->rank_suspects_reply;
  gd_strbuf_printf(b, "<table><tr><th>suspect</th><th>score</th><th>nearest labelled seller "
                      "and the evidence</th></tr>\n");
  for (size_t i = 0; i < r->n_suspects; i++) {
    const Graphd__V1__Suspect *s = r->suspects[i];
    gd_strbuf_printf(b, "<tr><td>");
    esc(b, s->seller ? s->seller->key : "");
    gd_strbuf_printf(b, "</td><td>%.6f</td><td>", s->score);
    for (size_t k = 0; k < s->n_nearest_labelled; k++) {
      const Graphd__V1__LinkedSeller *ls = s->nearest_labelled[k];
      gd_strbuf_printf(b, "%s<b>", k ? "<br>" : "");
      esc(b, ls->seller ? ls->seller->key : "");
      gd_strbuf_printf(b, "</b>: ");
      for (size_t j = 0; j < ls->n_evidence; j++)
        shared_cells(b, ls->evidence[j]);
    }
    gd_strbuf_printf(b, "</td></tr>\n");
  }
  gd_strbuf_printf(b, "</table>\n");
}

static void html_refs(gd_strbuf *b, const char *what, Graphd__V1__EntityRef **v, size_t n) {
  if (!n)
    return;
  gd_strbuf_printf(b, "<h3>%s</h3>\n<ul>\n", what);
  for (size_t i = 0; i < n; i++) {
    gd_strbuf_printf(b, "<li>%s <b>", gd_type_name(v[i]->type));
    esc(b, v[i]->key);
    gd_strbuf_printf(b, "</b> (#%llu)</li>\n", (unsigned long long)v[i]->id);
  }
  gd_strbuf_printf(b, "</ul>\n");
}

static void html_case(gd_strbuf *b, const Graphd__V1__Case *k, const char *key_id,
                      int64_t now, const char *who, json_object *audit) {
  gd_strbuf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                      "<title>Case %llu: ", (unsigned long long)k->case_id);
  esc(b, k->title);
  gd_strbuf_printf(
      b, "</title>\n<style>\nbody{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}\n"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:3px 6px;vertical-align:top;text-align:left}\n"
         ".draw line{stroke:#999;stroke-width:1}.draw .seller{fill:#3a6ea5}"
         ".draw .query{fill:#c0392b}.draw .ent{fill:#e67e22}.draw text{font-size:10px}\n"
         ".meta{color:#555}\n</style></head><body>\n<h1>Case %llu: ",
      (unsigned long long)k->case_id);
  esc(b, k->title);
  gd_strbuf_printf(b, "</h1>\n<p class=\"meta\">Brand <b>");
  esc(b, k->brand);
  gd_strbuf_printf(b, "</b>; status <b>%s</b>; assignee ", rpc_case_status_name(k->status));
  esc(b, k->assignee[0] ? k->assignee : "none");
  gd_strbuf_printf(b, "; revision %llu. Opened ", (unsigned long long)k->revision);
  when(b, k->created);
  gd_strbuf_printf(b, " by ");
  esc(b, k->created_by);
  gd_strbuf_printf(b, "; last changed ");
  when(b, k->updated);
  gd_strbuf_printf(b, " by ");
  esc(b, k->updated_by);
  gd_strbuf_printf(b, ".<br>Exported ");
  when(b, now);
  gd_strbuf_printf(b, " by ");
  esc(b, who);
  gd_strbuf_printf(b, ", signed with key %s. Check this pack with <code>graphctl verify-pack "
                      "FILE --pubkey KEY</code>: every part's SHA-256 is in MANIFEST.json, "
                      "whose Ed25519 signature is MANIFEST.sig.</p>\n", key_id);
  if (k->n_notes) {
    gd_strbuf_printf(b, "<h2>Notes</h2>\n<ul>\n");
    for (size_t i = 0; i < k->n_notes; i++) {
      gd_strbuf_printf(b, "<li><span class=\"meta\">");
      when(b, k->notes[i]->time);
      gd_strbuf_printf(b, ", ");
      esc(b, k->notes[i]->author);
      gd_strbuf_printf(b, ":</span> ");
      esc(b, k->notes[i]->text);
      gd_strbuf_printf(b, "</li>\n");
    }
    gd_strbuf_printf(b, "</ul>\n");
  }
  gd_strbuf_printf(b, "<h2>What the case holds</h2>\n");
  html_refs(b, "Sellers", k->sellers, k->n_sellers);
  html_refs(b, "Shared entities", k->entities, k->n_entities);
  if (k->n_clusters) {
    gd_strbuf_printf(b, "<h3>Clusters</h3>\n<ul>\n");
    for (size_t i = 0; i < k->n_clusters; i++)
      gd_strbuf_printf(b, "<li>cluster %llu of snapshot %llu (its manifest: "
                          "snapshots/snapshot-%llu.json)</li>\n",
                       (unsigned long long)k->clusters[i]->cluster_id,
                       (unsigned long long)k->clusters[i]->snapshot_id,
                       (unsigned long long)k->clusters[i]->snapshot_id);
    gd_strbuf_printf(b, "</ul>\n");
  }
  for (size_t i = 0; i < k->n_queries; i++) {
    const Graphd__V1__SavedQuery *q = k->queries[i];
    /* The replies are a oneof: one union, told apart by reply_case. */
    int rk = q->reply_case;
    const char *kind = rk == GRAPHD__V1__SAVED_QUERY__REPLY_LINKED_SELLERS_REPLY ? "Linked sellers"
                       : rk == GRAPHD__V1__SAVED_QUERY__REPLY_FIND_PATHS_REPLY ? "Paths"
                                                                               : "Suspects";
    gd_strbuf_printf(b, "<h2>Saved query %u: %s</h2>\n<p class=\"meta\">Saved ", q->seq, kind);
    when(b, q->saved_at);
    gd_strbuf_printf(b, " by ");
    esc(b, q->saved_by);
    gd_strbuf_printf(b, " (latest snapshot then: %llu). The reply below is the one the "
                        "server gave then.",
                     (unsigned long long)q->snapshot_id);
    if (q->comment[0]) {
      gd_strbuf_printf(b, "<br>Comment: ");
      esc(b, q->comment);
    }
    gd_strbuf_printf(b, "</p>\n");
    if (rk == GRAPHD__V1__SAVED_QUERY__REPLY_LINKED_SELLERS_REPLY &&
        q->request_case == GRAPHD__V1__SAVED_QUERY__REQUEST_LINKED_SELLERS)
      html_linked(b, q);
    else if (rk == GRAPHD__V1__SAVED_QUERY__REPLY_FIND_PATHS_REPLY)
      html_paths(b, q);
    else if (rk == GRAPHD__V1__SAVED_QUERY__REPLY_RANK_SUSPECTS_REPLY)
      html_suspects(b, q);
  }
  gd_strbuf_printf(b, "<h2>Audit trail of the case</h2>\n<table><tr><th>seq</th><th>time</th>"
                      "<th>principal</th><th>method</th><th>status</th><th>hash</th></tr>\n");
  for (size_t i = 0; i < json_object_array_length(audit); i++) {
    json_object *o = json_object_array_get_idx(audit, i), *f;
    gd_strbuf_printf(b, "<tr><td>%lld</td><td>",
                     (long long)(json_object_object_get_ex(o, "seq", &f)
                                     ? json_object_get_int64(f) : 0));
    when(b, json_object_object_get_ex(o, "time_ms", &f) ? json_object_get_int64(f) : 0);
    gd_strbuf_printf(b, "</td><td>");
    esc(b, json_object_object_get_ex(o, "principal", &f) ? json_object_get_string(f) : "");
    gd_strbuf_printf(b, "</td><td>");
    esc(b, json_object_object_get_ex(o, "method", &f) ? json_object_get_string(f) : "");
    gd_strbuf_printf(b, "</td><td>%d</td><td><code>%.16s</code></td></tr>\n",
                     json_object_object_get_ex(o, "status", &f) ? json_object_get_int(f) : 0,
                     json_object_object_get_ex(o, "hash", &f) ? json_object_get_string(f) : "");
  }
  gd_strbuf_printf(b, "</table>\n</body></html>\n");
}

/* ---- gathering ------------------------------------------------------------------- */

typedef struct gather {
  Graphd__V1__Case *m;
  size_t cap;
  gd_err *err;
  int rc;
} gather;

static int gather_query(void *ctx, uint32_t seq, const void *q, size_t len) {
  gather *g = ctx;
  if (g->m->n_queries == g->cap) {
    size_t nc = g->cap ? 2 * g->cap : 16;
    Graphd__V1__SavedQuery **v = realloc(g->m->queries, nc * sizeof *v);
    if (!v) {
      g->rc = gd_err_set(g->err, GD_ENOMEM, "out of memory");
      return 1;
    }
    g->m->queries = v;
    g->cap = nc;
  }
  Graphd__V1__SavedQuery *sq = graphd__v1__saved_query__unpack(NULL, len, q);
  if (!sq) {
    g->rc = gd_err_set(g->err, GD_EINTERNAL, "case %llu: saved query %u does not parse",
                       (unsigned long long)g->m->case_id, seq);
    return 1;
  }
  g->m->queries[g->m->n_queries++] = sq;
  return 0;
}

typedef struct audit_ctx {
  const char *case_id;
  size_t case_len;
  json_object *records; /* array */
  gd_strbuf lines;
  uint64_t tip_seq;
  uint8_t tip_hash[32];
} audit_ctx;

static json_object *jstrn(const char *s, size_t n) { return json_object_new_string_len(s, (int)n); }

/* gd_store_audit_visit_case callback: one record of the case. */
static int audit_one(void *ctx, const gd_audit_view *v) {
  audit_ctx *a = ctx;
  char ph[65], hh[65];
  hex(v->prev, 32, ph);
  hex(v->hash, 32, hh);
  json_object *o = json_object_new_object();
  json_object_object_add(o, "seq", json_object_new_uint64(v->seq));
  json_object_object_add(o, "time_ms", json_object_new_int64(v->time_ms));
  json_object_object_add(o, "status", json_object_new_int(v->status));
  json_object_object_add(o, "role", json_object_new_int(v->role));
  json_object_object_add(o, "principal", jstrn(v->principal, v->principal_len));
  json_object_object_add(o, "peer", jstrn(v->peer, v->peer_len));
  json_object_object_add(o, "case_id", jstrn(v->case_id, v->case_id_len));
  json_object_object_add(o, "method", jstrn(v->method, v->method_len));
  json_object_object_add(o, "target", jstrn(v->target, v->target_len));
  json_object_object_add(o, "prev", json_object_new_string(ph));
  json_object_object_add(o, "hash", json_object_new_string(hh));
  gd_strbuf_printf(&a->lines, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
  json_object_array_add(a->records, o);
  return 0;
}

static la_ssize_t zip_write(struct archive *ar, void *ctx, const void *buf, size_t n) {
  (void)ar;
  gd_strbuf *z = ctx;
  if (z->n + n > PACK_MAX)
    return -1;
  gd_strbuf_reserve(z, n);
  if (z->oom)
    return -1;
  memcpy(z->p + z->n, buf, n);
  z->n += n;
  z->p[z->n] = 0;
  return (la_ssize_t)n;
}

static int zip_parts(pack *p, int64_t now_ms, gd_err *err) {
  struct archive *ar = archive_write_new();
  if (!ar)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  int rc = GD_OK;
  if (archive_write_set_format_zip(ar) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(ar, 1) != ARCHIVE_OK || /* no padding */
      archive_write_open(ar, &p->zip, NULL, zip_write, NULL) != ARCHIVE_OK) {
    rc = gd_err_set(err, GD_EINTERNAL, "zip: %s", archive_error_string(ar));
    archive_write_free(ar);
    return rc;
  }
  for (size_t i = 0; i < p->nparts && !rc; i++) {
    struct archive_entry *e = archive_entry_new();
    if (!e) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      break;
    }
    archive_entry_set_pathname(e, p->parts[i].name);
    archive_entry_set_size(e, (la_int64_t)p->parts[i].n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, (time_t)(now_ms / 1000), 0);
    if (archive_write_header(ar, e) != ARCHIVE_OK ||
        (p->parts[i].n &&
         archive_write_data(ar, p->parts[i].data, p->parts[i].n) != (la_ssize_t)p->parts[i].n))
      rc = p->zip.n + p->parts[i].n > PACK_MAX
               ? gd_err_set(err, GD_ERESOURCE, "the pack is over %zu MiB", PACK_MAX >> 20)
               : gd_err_set(err, GD_EINTERNAL, "zip: %s", archive_error_string(ar));
    archive_entry_free(e);
  }
  if (archive_write_close(ar) != ARCHIVE_OK && !rc)
    rc = gd_err_set(err, GD_EINTERNAL, "zip: %s", archive_error_string(ar));
  archive_write_free(ar);
  return rc;
}

/* Builds case id's pack for call c into p->zip. */
static int build(gd_call *c, uint64_t id, pack *p, gd_err *err) {
  gd_rpc *R = rpc_ctx(c);
  gd_rtxn *r = NULL;
  Graphd__V1__Case *m = NULL;
  json_object *manifest = NULL;
  audit_ctx au = {0};
  char idtext[24];
  int rc;
  snprintf(idtext, sizeof idtext, "%llu", (unsigned long long)id);
  if (!R->signer)
    return gd_err_set(err, GD_EPRECONDITION, "the server has no signing key (--signing-key)");
  gd_case_view v;
  if ((rc = gd_store_read_begin(R->store, &r, err)) || (rc = gd_store_case_get(r, id, &v, err)))
    goto out;
  if (!rpc_case_visible(c, &v)) {
    rc = gd_err_set(err, GD_ENOTFOUND, "case_id: no case %llu", (unsigned long long)id);
    goto out;
  }
  if (!(m = rpc_case_unpack(&v, err))) {
    rc = err->code;
    goto out;
  }
  gather g = {.m = m, .err = err};
  if ((rc = gd_store_case_queries_visit(r, id, 0, gather_query, &g, err)) || (rc = g.rc))
    goto out;
  int64_t now = gd_call_start_ms(c);
  const char *who = gd_call_principal(c, NULL);

  /* case.json */
  char *json = NULL;
  size_t jn = 0;
  if ((rc = gd_pbjson_from_msg(&m->base, &json, &jn, err)) ||
      (rc = add_part(p, "case.json", json, jn, err)))
    goto out;

  /* snapshots/: every snapshot the case names, once, ascending. */
  uint64_t snaps[ITEMS_SNAPS_MAX];
  size_t nsnaps = 0;
  json_object *missing = json_object_new_array();
  manifest = json_object_new_object();
  json_object_object_add(manifest, "snapshots_missing", missing);
  for (size_t i = 0; i < m->n_clusters + m->n_queries; i++) {
    uint64_t s = i < m->n_clusters ? m->clusters[i]->snapshot_id
                                   : m->queries[i - m->n_clusters]->snapshot_id;
    bool have = s == 0;
    for (size_t k = 0; k < nsnaps && !have; k++)
      have = snaps[k] == s;
    if (!have && nsnaps < ITEMS_SNAPS_MAX)
      snaps[nsnaps++] = s;
  }
  for (size_t i = 1; i < nsnaps; i++)
    for (size_t k = i; k > 0 && snaps[k - 1] > snaps[k]; k--) {
      uint64_t t = snaps[k];
      snaps[k] = snaps[k - 1];
      snaps[k - 1] = t;
    }
  for (size_t i = 0; i < nsnaps; i++) {
    gd_snapshot_view sv;
    gd_err e2;
    if (gd_store_snapshot_get(r, snaps[i], &sv, &e2)) {
      json_object_array_add(missing, json_object_new_uint64(snaps[i]));
      continue;
    }
    char name[64];
    char *d = malloc(sv.manifest_len ? sv.manifest_len : 1);
    if (!d) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      goto out;
    }
    memcpy(d, sv.manifest, sv.manifest_len);
    snprintf(name, sizeof name, "snapshots/snapshot-%llu.json", (unsigned long long)snaps[i]);
    if ((rc = add_part(p, name, d, sv.manifest_len, err)))
      goto out;
  }

  /* audit.jsonl: the case's records, and the trail's tip now. */
  au.case_id = idtext;
  au.case_len = strlen(idtext);
  au.records = json_object_new_array();
  gd_audit_view last;
  rc = gd_store_audit_last(r, &last, err);
  if (rc == GD_OK) {
    au.tip_seq = last.seq;
    memcpy(au.tip_hash, last.hash, 32);
  } else if (rc != GD_ENOTFOUND) {
    goto out;
  }
  if ((rc = gd_store_audit_visit_case(r, au.case_id, au.case_len, 0, audit_one, &au, err)))
    goto out;
  gd_store_read_end(r);
  r = NULL;
  if ((rc = add_strbuf(p, "audit.jsonl", &au.lines, err)))
    goto out;

  /* case.html */
  gd_strbuf html = GD_STRBUF_INIT;
  html_case(&html, m, gd_signer_key_id(R->signer), now, who, au.records);
  if ((rc = add_strbuf(p, "case.html", &html, err)))
    goto out;
  const char *pub = gd_signer_public_pem(R->signer);
  char *pubc = strdup(pub);
  if (!pubc || (rc = add_part(p, "signing-key.pub.pem", pubc, strlen(pub), err))) {
    if (!pubc)
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }

  /* MANIFEST.json over every part so far, and its signature. */
  json_object *parts = json_object_new_array();
  for (size_t i = 0; i < p->nparts; i++) {
    uint8_t d[32];
    char h[65];
    SHA256(p->parts[i].data, p->parts[i].n, d);
    hex(d, 32, h);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(p->parts[i].name));
    json_object_object_add(o, "sha256", json_object_new_string(h));
    json_object_object_add(o, "bytes", json_object_new_uint64(p->parts[i].n));
    json_object_array_add(parts, o);
  }
  char tiph[65];
  hex(au.tip_hash, 32, tiph);
  json_object *tip = json_object_new_object();
  json_object_object_add(tip, "seq", json_object_new_uint64(au.tip_seq));
  json_object_object_add(tip, "hash", json_object_new_string(au.tip_seq ? tiph : ""));
  json_object_object_add(manifest, "format", json_object_new_string("graphd-evidence-pack/1"));
  json_object_object_add(manifest, "case_id", json_object_new_uint64(id));
  json_object_object_add(manifest, "brand", jstrn(v.brand.p, v.brand.n));
  json_object_object_add(manifest, "revision", json_object_new_uint64(m->revision));
  json_object_object_add(manifest, "exported_at_ms", json_object_new_int64(now));
  json_object_object_add(manifest, "exported_by", json_object_new_string(who));
  json_object_object_add(manifest, "key_id", json_object_new_string(gd_signer_key_id(R->signer)));
  json_object_object_add(manifest, "audit_records",
                         json_object_new_uint64(json_object_array_length(au.records)));
  json_object_object_add(manifest, "audit_tip", tip);
  json_object_object_add(manifest, "parts", parts);
  const char *mt = json_object_to_json_string_ext(manifest, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
  size_t mn = strlen(mt);
  char *mcopy = malloc(mn + 1);
  uint8_t *sig = malloc(GD_SIG_BYTES);
  if (!mcopy || !sig) {
    free(mcopy);
    free(sig);
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  memcpy(mcopy, mt, mn + 1);
  if ((rc = gd_signer_sign(R->signer, mcopy, mn, sig, err))) {
    free(mcopy);
    free(sig);
    goto out;
  }
  if ((rc = add_part(p, "MANIFEST.json", mcopy, mn, err)) ||
      (rc = add_part(p, "MANIFEST.sig", sig, GD_SIG_BYTES, err)))
    goto out;
  rc = zip_parts(p, now, err);
out:
  gd_store_read_end(r);
  if (au.records)
    json_object_put(au.records);
  gd_strbuf_free(&au.lines);
  if (manifest)
    json_object_put(manifest);
  if (m)
    protobuf_c_message_free_unpacked(&m->base, NULL);
  return rc;
}

/* ---- the stream --------------------------------------------------------------- */

typedef struct xstream {
  gd_call *call;
  pack p;
  size_t pos;
  uint64_t id;
  uint8_t *buf;
  size_t cap;
} xstream;

static void xs_free(xstream *s) {
  if (!s)
    return;
  pack_free(&s->p);
  free(s->buf);
  free(s);
}

static void xs_next(gd_call *c, xstream *s) {
  if (s->pos == s->p.zip.n && s->pos) {
    gd_call_set_user(c, NULL);
    xs_free(s);
    gd_call_finish(c, GD_OK, NULL, NULL, 0);
    return;
  }
  Graphd__V1__PackChunk m = GRAPHD__V1__PACK_CHUNK__INIT;
  char name[48];
  size_t k = s->p.zip.n - s->pos < CHUNK ? s->p.zip.n - s->pos : CHUNK;
  if (s->pos == 0) {
    snprintf(name, sizeof name, "case-%llu.zip", (unsigned long long)s->id);
    m.file_name = name;
    m.total_bytes = s->p.zip.n;
  }
  m.data.data = (uint8_t *)s->p.zip.p + s->pos;
  m.data.len = k;
  size_t n = 0;
  if (rpc_pack_stream(&m.base, &s->buf, &s->cap, &n)) {
    gd_call_set_user(c, NULL);
    xs_free(s);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  s->pos += k;
  gd_call_write(c, s->buf, n, false);
}

void rpc_pack_written(gd_call *c, bool ok) {
  xstream *s = gd_call_user(c);
  if (!ok) {
    gd_call_set_user(c, NULL);
    xs_free(s);
    gd_call_finish(c, GD_ECANCELLED, "call cancelled", NULL, 0);
    return;
  }
  xs_next(c, s);
}

/* Builds the pack and sends its first message: on a query thread, where
 * heavy calls run. */
static void export_build(void *arg) {
  xstream *s = arg;
  gd_call *c = s->call;
  gd_err err;
  gd_err_clear(&err);
  if (build(c, s->id, &s->p, &err)) {
    xs_free(s);
    rpc_fail(c, &err);
    return;
  }
  gd_call_set_user(c, s);
  xs_next(c, s);
}

void rpc_export_case(gd_call *c, const uint8_t *msg, size_t len, bool has_msg) {
  Graphd__V1__ExportCaseRequest *req = (Graphd__V1__ExportCaseRequest *)rpc_unpack(
      c, &graphd__v1__export_case_request__descriptor, msg, len, has_msg);
  if (!req)
    return;
  rpc_case_set_id(c, req->case_id);
  xstream *s = calloc(1, sizeof *s);
  if (!s) {
    protobuf_c_message_free_unpacked(&req->base, NULL);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  s->id = req->case_id;
  s->call = c;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  gd_call_offload(c, export_build, s);
}

void gd_rpc_set_signer(gd_rpc *r, struct gd_signer *s) { r->signer = s; }
