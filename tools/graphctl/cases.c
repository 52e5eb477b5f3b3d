/*
 * graphctl case: CreateCase, ListCases, GetCase and UpdateCase.
 *
 *   case new --brand B --title T [--assignee A] [--note TEXT]
 *   case list [--brand B] [--status S] [--limit N]
 *   case show ID
 *   case update ID [--title T] [--status S [--reopen]] [--assignee A |
 *                  --clear-assignee] [--note TEXT] [--add TYPE:KEY]...
 *                  [--remove TYPE:KEY]... [--add-cluster SNAP:CLUSTER]...
 *                  [--remove-cluster SNAP:CLUSTER]... [--revision N]
 *   case save ID linked SELLER [--hops N] [--limit N] [--comment C]
 *   case save ID paths FROM TO [--k N] [--max-hops N] [--comment C]
 *   case save ID suspects [--label L]... [--limit N] [--comment C]
 */
#include "graphctl.h"

#include "core/entity.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const optspec case_opts[] = {
    {"brand", true, O_BRAND},         {"title", true, O_TITLE},
    {"status", true, O_STATUS},       {"reopen", false, O_REOPEN},
    {"assignee", true, O_ASSIGNEE},   {"clear-assignee", false, O_CLEAR_ASSIGNEE},
    {"note", true, O_NOTE},           {"add", true, O_ADD},
    {"remove", true, O_REMOVE},       {"add-cluster", true, O_ADD_CLUSTER},
    {"remove-cluster", true, O_REMOVE_CLUSTER},
    {"revision", true, O_REVISION},   {"comment", true, O_COMMENT},
    {"limit", true, O_LIMIT},         {"hops", true, O_HOPS},
    {"k", true, O_K},                 {"max-hops", true, O_MAX_HOPS},
    {"label", true, O_LABEL},         {"out", true, O_OUT},
    {"o", true, O_OUT},               {NULL, false, 0},
};

const char case_help[] =
    "usage: graphctl case new --brand B --title T [--assignee A] [--note TEXT]\n"
    "       graphctl case list [--brand B] [--status open|referred|closed] [--limit N]\n"
    "       graphctl case show ID\n"
    "       graphctl case update ID [--title T] [--status S [--reopen]]\n"
    "                [--assignee A | --clear-assignee] [--note TEXT]\n"
    "                [--add TYPE:KEY]... [--remove TYPE:KEY]...\n"
    "                [--add-cluster SNAP:CLUSTER]... [--remove-cluster SNAP:CLUSTER]...\n"
    "                [--revision N]\n"
    "       graphctl case save ID linked SELLER [--hops N] [--limit N] [--comment C]\n"
    "       graphctl case save ID paths FROM TO [--k N] [--max-hops N] [--comment C]\n"
    "       graphctl case save ID suspects [--label L]... [--limit N] [--comment C]\n"
    "       graphctl case export ID -o FILE\n"
    "\n"
    "Cases tie a finding together: sellers, entities and clusters (with their\n"
    "snapshot), investigation queries saved with the reply the server computed\n"
    "then, notes, a status (open, referred, closed) and an assignee. Every\n"
    "change is audited under the case's id. A partner token (a brand's\n"
    "analyst) reaches only its brand's cases, and changes only title, status,\n"
    "assignee and notes.\n"
    "\n"
    "  new      open a case; prints its id\n"
    "  list     cases, ascending by id, all pages (--limit: per page)\n"
    "  show     the case, its notes, items and saved queries\n"
    "  update   one change, applied whole: --add/--remove seller:KEY, device:KEY,\n"
    "           ... (sellers and other entities), --add-cluster 3:17 (cluster 17\n"
    "           of snapshot 3); --status open on a closed case needs --reopen;\n"
    "           --revision N refuses the change if the case moved past N\n"
    "  save     runs LinkedSellers, FindPaths or RankSuspects as you would and\n"
    "           keeps request and reply in the case\n"
    "  export   the case's evidence pack (a zip: case.html, case.json, snapshot\n"
    "           manifests, audit records, each part's SHA-256 in MANIFEST.json,\n"
    "           signed by the server's key); check it with graphctl verify-pack\n"
    "\n"
    "Unknown case: NOT_FOUND, exit 1. A move the status rules forbid:\n"
    "FAILED_PRECONDITION, exit 1.\n";

int set_case_option(const command *cmd, args *a, const optspec *o, const char *opt,
                    const char *v) {
  switch (o->id) {
  case O_BRAND:
    a->brand = v;
    return 0;
  case O_TITLE:
    a->title = v;
    return 0;
  case O_STATUS:
    if (strcmp(v, "open") == 0)
      a->status = GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN;
    else if (strcmp(v, "referred") == 0)
      a->status = GRAPHD__V1__CASE_STATUS__CASE_STATUS_REFERRED;
    else if (strcmp(v, "closed") == 0)
      a->status = GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED;
    else
      return usage_error(cmd, "%s: expected open, referred or closed, got '%s'", opt, v);
    return 0;
  case O_REOPEN:
    a->reopen = true;
    return 0;
  case O_ASSIGNEE:
    a->assignee = v;
    return 0;
  case O_CLEAR_ASSIGNEE:
    a->clear_assignee = true;
    return 0;
  case O_NOTE:
    a->note = v;
    return 0;
  case O_ADD_CLUSTER:
  case O_REMOVE_CLUSTER: {
    uint64_t snap, cl;
    char *end;
    snap = strtoull(v, &end, 10);
    if (end == v || *end != ':' || !snap || v[0] == '-')
      return usage_error(cmd, "%s: expected SNAPSHOT:CLUSTER (e.g. 3:17), got '%s'", opt, v);
    const char *p = end + 1;
    cl = strtoull(p, &end, 10);
    if (end == p || *end || p[0] == '-')
      return usage_error(cmd, "%s: expected SNAPSHOT:CLUSTER (e.g. 3:17), got '%s'", opt, v);
    Graphd__V1__CaseCluster *c = xcalloc(1, sizeof *c);
    graphd__v1__case_cluster__init(c);
    c->snapshot_id = snap;
    c->cluster_id = cl;
    if (o->id == O_ADD_CLUSTER)
      a->add_clusters[a->nadd_clusters++] = c;
    else
      a->rm_clusters[a->nrm_clusters++] = c;
    return 0;
  }
  case O_REVISION:
    return parse_u64(cmd, opt, v, &a->revision);
  case O_COMMENT:
    a->comment = v;
    return 0;
  }
  return usage_error(cmd, "unknown option '%s'", opt);
}

static const char *status_text(Graphd__V1__CaseStatus s) {
  switch (s) {
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_OPEN:
    return "open";
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_REFERRED:
    return "referred";
  case GRAPHD__V1__CASE_STATUS__CASE_STATUS_CLOSED:
    return "closed";
  default:
    return "?";
  }
}

static const char *when(int64_t ms, char *buf, size_t size) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/* TYPE:KEY into a ref (arena: the key points into v). */
static int parse_item(const command *cmd, const char *opt, char *v, Graphd__V1__EntityRef *r) {
  char *colon = strchr(v, ':');
  gd_etype et;
  if (!colon || colon == v || !colon[1])
    return usage_error(cmd, "%s: expected TYPE:KEY (e.g. seller:s42), got '%s'", opt, v);
  *colon = 0;
  int bad = gc_type_parse(v, &et);
  *colon = ':';
  if (bad)
    return usage_error(cmd, "%s: unknown entity type in '%s'", opt, v);
  graphd__v1__entity_ref__init(r);
  r->type = (Graphd__V1__EntityType)et;
  r->key = colon + 1;
  return 0;
}

static json_object *ref_json(const Graphd__V1__EntityRef *r) {
  json_object *o = jobj();
  jset(o, "id", json_object_new_uint64(r->id));
  jset(o, "type", jstr(gd_type_name((int)r->type)));
  jset(o, "key", jstr(r->key));
  return o;
}

static const char *query_kind(const Graphd__V1__SavedQuery *q) {
  switch (q->request_case) {
  case GRAPHD__V1__SAVED_QUERY__REQUEST_LINKED_SELLERS:
    return "linked";
  case GRAPHD__V1__SAVED_QUERY__REQUEST_FIND_PATHS:
    return "paths";
  case GRAPHD__V1__SAVED_QUERY__REQUEST_RANK_SUSPECTS:
    return "suspects";
  default:
    return "?";
  }
}

static size_t query_results(const Graphd__V1__SavedQuery *q) {
  switch (q->reply_case) {
  case GRAPHD__V1__SAVED_QUERY__REPLY_LINKED_SELLERS_REPLY:
    return q->linked_sellers_reply->n_sellers;
  case GRAPHD__V1__SAVED_QUERY__REPLY_FIND_PATHS_REPLY:
    return q->find_paths_reply->n_paths;
  case GRAPHD__V1__SAVED_QUERY__REPLY_RANK_SUSPECTS_REPLY:
    return q->rank_suspects_reply->n_suspects;
  default:
    return 0;
  }
}

static json_object *case_json(const Graphd__V1__Case *k) {
  json_object *o = jobj(), *v;
  jset(o, "case_id", json_object_new_uint64(k->case_id));
  jset(o, "title", jstr(k->title));
  jset(o, "brand", jstr(k->brand));
  jset(o, "status", jstr(status_text(k->status)));
  jset(o, "assignee", jstr(k->assignee));
  jset(o, "revision", json_object_new_uint64(k->revision));
  jset(o, "created", json_object_new_int64(k->created));
  jset(o, "created_by", jstr(k->created_by));
  jset(o, "updated", json_object_new_int64(k->updated));
  jset(o, "updated_by", jstr(k->updated_by));
  jset(o, "notes", v = jarr());
  for (size_t i = 0; i < k->n_notes; i++) {
    json_object *n = jobj();
    jset(n, "time", json_object_new_int64(k->notes[i]->time));
    jset(n, "author", jstr(k->notes[i]->author));
    jset(n, "text", jstr(k->notes[i]->text));
    json_object_array_add(v, n);
  }
  jset(o, "sellers", v = jarr());
  for (size_t i = 0; i < k->n_sellers; i++)
    json_object_array_add(v, ref_json(k->sellers[i]));
  jset(o, "entities", v = jarr());
  for (size_t i = 0; i < k->n_entities; i++)
    json_object_array_add(v, ref_json(k->entities[i]));
  jset(o, "clusters", v = jarr());
  for (size_t i = 0; i < k->n_clusters; i++) {
    json_object *c = jobj();
    jset(c, "snapshot_id", json_object_new_uint64(k->clusters[i]->snapshot_id));
    jset(c, "cluster_id", json_object_new_uint64(k->clusters[i]->cluster_id));
    json_object_array_add(v, c);
  }
  jset(o, "query_count", json_object_new_uint64(k->query_count));
  jset(o, "queries", v = jarr());
  for (size_t i = 0; i < k->n_queries; i++) {
    const Graphd__V1__SavedQuery *q = k->queries[i];
    json_object *x = jobj();
    jset(x, "seq", json_object_new_uint64(q->seq));
    jset(x, "kind", jstr(query_kind(q)));
    jset(x, "saved_at", json_object_new_int64(q->saved_at));
    jset(x, "saved_by", jstr(q->saved_by));
    jset(x, "comment", jstr(q->comment));
    jset(x, "snapshot_id", json_object_new_uint64(q->snapshot_id));
    jset(x, "results", json_object_new_uint64(query_results(q)));
    json_object_array_add(v, x);
  }
  return o;
}

static void print_case(const Graphd__V1__Case *k) {
  char b[4096], t[32];
  printf("case %" PRIu64 "  %s  [%s]  brand %s  revision %" PRIu64 "\n", k->case_id,
         safe(k->title, b, sizeof b), status_text(k->status), k->brand, k->revision);
  printf("  assignee %s; opened %s by %s", k->assignee[0] ? k->assignee : "-",
         when(k->created, t, sizeof t), k->created_by);
  printf("; changed %s by %s\n", when(k->updated, t, sizeof t), k->updated_by);
  for (size_t i = 0; i < k->n_notes; i++)
    printf("  note %s %s: %s\n", when(k->notes[i]->time, t, sizeof t), k->notes[i]->author,
           safe(k->notes[i]->text, b, sizeof b));
  for (size_t i = 0; i < k->n_sellers; i++)
    printf("  seller %s (#%" PRIu64 ")\n", safe(k->sellers[i]->key, b, sizeof b),
           k->sellers[i]->id);
  for (size_t i = 0; i < k->n_entities; i++)
    printf("  %s %s (#%" PRIu64 ")\n", gd_type_name((int)k->entities[i]->type),
           safe(k->entities[i]->key, b, sizeof b), k->entities[i]->id);
  for (size_t i = 0; i < k->n_clusters; i++)
    printf("  cluster %" PRIu64 " of snapshot %" PRIu64 "\n", k->clusters[i]->cluster_id,
           k->clusters[i]->snapshot_id);
  for (size_t i = 0; i < k->n_queries; i++) {
    const Graphd__V1__SavedQuery *q = k->queries[i];
    printf("  query %u %s, %zu results, saved %s by %s (snapshot %" PRIu64 ")%s%s\n", q->seq,
           query_kind(q), query_results(q), when(q->saved_at, t, sizeof t), q->saved_by,
           q->snapshot_id, q->comment[0] ? ": " : "", safe(q->comment, b, sizeof b));
  }
}

static int case_id_arg(const command *cmd, const args *a, uint64_t *ret) {
  if (a->npos < 2)
    return usage_error(cmd, "expected a case id");
  return parse_u64(cmd, "case id", a->pos[1], ret);
}

static int reply_case(const ctl *c, int rc, Graphd__V1__Case *k) {
  if (rc)
    return rc;
  if (c->json)
    print_json(case_json(k));
  else
    print_case(k);
  protobuf_c_message_free_unpacked(&k->base, NULL);
  return EXIT_OK;
}

static int case_new(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  if (!a->title)
    return usage_error(cmd, "new: --title is required");
  Graphd__V1__CreateCaseRequest req = GRAPHD__V1__CREATE_CASE_REQUEST__INIT;
  req.title = (char *)a->title;
  req.brand = (char *)(a->brand ? a->brand : "");
  req.assignee = (char *)(a->assignee ? a->assignee : "");
  req.note = (char *)(a->note ? a->note : "");
  ProtobufCMessage *rep;
  rc = rpc(c, SVC "CreateCase", &req.base, &graphd__v1__case__descriptor, &rep);
  return reply_case(c, rc, (Graphd__V1__Case *)rep);
}

static int case_list(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  Graphd__V1__ListCasesRequest req = GRAPHD__V1__LIST_CASES_REQUEST__INIT;
  req.brand = (char *)(a->brand ? a->brand : "");
  req.status = (Graphd__V1__CaseStatus)a->status;
  req.limit = (uint32_t)a->limit;
  json_object *all = c->json ? jarr() : NULL;
  char b[4096];
  do {
    ProtobufCMessage *m;
    if ((rc = rpc(c, SVC "ListCases", &req.base, &graphd__v1__list_cases_reply__descriptor, &m))) {
      if (all)
        json_object_put(all);
      return rc;
    }
    Graphd__V1__ListCasesReply *rep = (Graphd__V1__ListCasesReply *)m;
    for (size_t i = 0; i < rep->n_cases; i++) {
      const Graphd__V1__Case *k = rep->cases[i];
      if (all)
        json_object_array_add(all, case_json(k));
      else
        printf("%" PRIu64 "\t%s\t%s\t%s\t%zu items\t%u queries\t%s\n", k->case_id, k->brand,
               status_text(k->status), k->assignee[0] ? k->assignee : "-",
               k->n_sellers + k->n_entities + k->n_clusters, k->query_count,
               safe(k->title, b, sizeof b));
    }
    req.after_case_id = rep->next_after_case_id;
    protobuf_c_message_free_unpacked(m, NULL);
  } while (req.after_case_id);
  if (all)
    print_json(all);
  return EXIT_OK;
}

static int case_show(ctl *c, const command *cmd, args *a) {
  uint64_t id;
  int rc;
  if ((rc = case_id_arg(cmd, a, &id)) || (rc = no_more_args(cmd, a, 2)))
    return rc;
  /* Every saved query, page by page, into the first reply. */
  Graphd__V1__GetCaseRequest req = GRAPHD__V1__GET_CASE_REQUEST__INIT;
  req.case_id = id;
  req.max_queries = 100;
  ProtobufCMessage *m;
  if ((rc = rpc(c, SVC "GetCase", &req.base, &graphd__v1__case__descriptor, &m)))
    return rc;
  Graphd__V1__Case *k = (Graphd__V1__Case *)m;
  Graphd__V1__Case **more = NULL;
  size_t nmore = 0;
  bool again = k->queries_more && k->n_queries;
  uint32_t after = k->n_queries ? k->queries[k->n_queries - 1]->seq : 0;
  while (again) {
    req.queries_after = after;
    ProtobufCMessage *p;
    if ((rc = rpc(c, SVC "GetCase", &req.base, &graphd__v1__case__descriptor, &p)))
      break;
    Graphd__V1__Case *pk = (Graphd__V1__Case *)p;
    more = realloc(more, (nmore + 1) * sizeof *more);
    if (!more)
      die_nomem();
    more[nmore++] = pk;
    again = pk->queries_more && pk->n_queries;
    if (pk->n_queries)
      after = pk->queries[pk->n_queries - 1]->seq;
  }
  if (!rc) {
    /* Show them as one case: borrow the pages' queries for the print. */
    size_t total = k->n_queries;
    for (size_t i = 0; i < nmore; i++)
      total += more[i]->n_queries;
    Graphd__V1__Case view = *k;
    view.queries = xcalloc(total + 1, sizeof *view.queries);
    view.n_queries = 0;
    for (size_t i = 0; i < k->n_queries; i++)
      view.queries[view.n_queries++] = k->queries[i];
    for (size_t i = 0; i < nmore; i++)
      for (size_t j = 0; j < more[i]->n_queries; j++)
        view.queries[view.n_queries++] = more[i]->queries[j];
    if (c->json)
      print_json(case_json(&view));
    else
      print_case(&view);
    free(view.queries);
  }
  for (size_t i = 0; i < nmore; i++)
    protobuf_c_message_free_unpacked(&more[i]->base, NULL);
  free(more);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

static int case_update(ctl *c, const command *cmd, args *a) {
  uint64_t id;
  int rc;
  if ((rc = case_id_arg(cmd, a, &id)) || (rc = no_more_args(cmd, a, 2)))
    return rc;
  Graphd__V1__UpdateCaseRequest req = GRAPHD__V1__UPDATE_CASE_REQUEST__INIT;
  req.case_id = id;
  req.expect_revision = a->revision;
  req.title = (char *)(a->title ? a->title : "");
  req.status = (Graphd__V1__CaseStatus)a->status;
  req.reopen = a->reopen;
  req.assignee = (char *)(a->assignee ? a->assignee : "");
  req.clear_assignee = a->clear_assignee;
  req.note = (char *)(a->note ? a->note : "");
  size_t n = a->nadd + a->nremove;
  Graphd__V1__EntityRef *refs = xcalloc(n + 1, sizeof *refs);
  Graphd__V1__EntityRef **ptrs = xcalloc(4 * (n + 1), sizeof *ptrs);
  Graphd__V1__EntityRef **as = ptrs, **rs = ptrs + n + 1, **ae = rs + n + 1, **re = ae + n + 1;
  size_t k = 0;
  for (size_t i = 0; i < a->nadd + a->nremove && !rc; i++) {
    bool add = i < a->nadd;
    char *v = add ? a->add[i] : a->remove[i - a->nadd];
    if ((rc = parse_item(cmd, add ? "--add" : "--remove", v, &refs[k])))
      break;
    bool seller = refs[k].type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    if (add && seller)
      as[req.n_add_sellers++] = &refs[k];
    else if (add)
      ae[req.n_add_entities++] = &refs[k];
    else if (seller)
      rs[req.n_remove_sellers++] = &refs[k];
    else
      re[req.n_remove_entities++] = &refs[k];
    k++;
  }
  req.add_sellers = as;
  req.remove_sellers = rs;
  req.add_entities = ae;
  req.remove_entities = re;
  req.add_clusters = a->add_clusters;
  req.n_add_clusters = a->nadd_clusters;
  req.remove_clusters = a->rm_clusters;
  req.n_remove_clusters = a->nrm_clusters;
  ProtobufCMessage *rep = NULL;
  if (!rc) {
    rc = rpc(c, SVC "UpdateCase", &req.base, &graphd__v1__case__descriptor, &rep);
    rc = reply_case(c, rc, (Graphd__V1__Case *)rep);
  }
  free(refs);
  free(ptrs);
  return rc;
}

static int case_save(ctl *c, const command *cmd, args *a) {
  uint64_t id;
  int rc;
  if ((rc = case_id_arg(cmd, a, &id)))
    return rc;
  if (a->npos < 3)
    return usage_error(cmd, "save: expected linked, paths or suspects");
  const char *kind = a->pos[2];
  Graphd__V1__UpdateCaseRequest req = GRAPHD__V1__UPDATE_CASE_REQUEST__INIT;
  Graphd__V1__LinkedSellersRequest ls = GRAPHD__V1__LINKED_SELLERS_REQUEST__INIT;
  Graphd__V1__FindPathsRequest fp = GRAPHD__V1__FIND_PATHS_REQUEST__INIT;
  Graphd__V1__RankSuspectsRequest rs = GRAPHD__V1__RANK_SUSPECTS_REQUEST__INIT;
  Graphd__V1__EntityRef r1 = GRAPHD__V1__ENTITY_REF__INIT, r2 = GRAPHD__V1__ENTITY_REF__INIT;
  req.case_id = id;
  req.save_comment = (char *)(a->comment ? a->comment : "");
  if (strcmp(kind, "linked") == 0) {
    if (a->npos != 4)
      return usage_error(cmd, "save linked: expected one SELLER key");
    r1.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    r1.key = a->pos[3];
    ls.seller = &r1;
    ls.max_hops = (uint32_t)a->hops;
    ls.limit = (uint32_t)a->limit;
    req.save_case = GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_LINKED_SELLERS;
    req.save_linked_sellers = &ls;
  } else if (strcmp(kind, "paths") == 0) {
    if (a->npos != 5)
      return usage_error(cmd, "save paths: expected FROM and TO seller keys");
    r1.type = r2.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    r1.key = a->pos[3];
    r2.key = a->pos[4];
    fp.from = &r1;
    fp.to = &r2;
    fp.k = (uint32_t)a->k;
    fp.max_hops = (uint32_t)a->max_hops;
    req.save_case = GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_FIND_PATHS;
    req.save_find_paths = &fp;
  } else if (strcmp(kind, "suspects") == 0) {
    if (a->npos != 3)
      return usage_error(cmd, "save suspects: takes no positional arguments");
    rs.seed_labels = a->labels;
    rs.n_seed_labels = a->nlabels;
    rs.limit = (uint32_t)a->limit;
    req.save_case = GRAPHD__V1__UPDATE_CASE_REQUEST__SAVE_SAVE_RANK_SUSPECTS;
    req.save_rank_suspects = &rs;
  } else {
    return usage_error(cmd, "save: expected linked, paths or suspects, got '%s'", kind);
  }
  ProtobufCMessage *rep = NULL;
  rc = rpc(c, SVC "UpdateCase", &req.base, &graphd__v1__case__descriptor, &rep);
  return reply_case(c, rc, (Graphd__V1__Case *)rep);
}

int run_case(ctl *c, const command *cmd, args *a) {
  if (a->npos < 1)
    return usage_error(cmd, "expected new, list, show, update, save or export");
  const char *sub = a->pos[0];
  if (strcmp(sub, "new") == 0)
    return case_new(c, cmd, a);
  if (strcmp(sub, "list") == 0)
    return case_list(c, cmd, a);
  if (strcmp(sub, "show") == 0)
    return case_show(c, cmd, a);
  if (strcmp(sub, "update") == 0)
    return case_update(c, cmd, a);
  if (strcmp(sub, "save") == 0)
    return case_save(c, cmd, a);
  if (strcmp(sub, "export") == 0) {
    uint64_t id;
    int rc;
    if ((rc = case_id_arg(cmd, a, &id)) || (rc = no_more_args(cmd, a, 2)))
      return rc;
    return case_export(c, cmd, a, id);
  }
  return usage_error(cmd, "unknown case command '%s' (new, list, show, update, save, export)",
                     sub);
}
