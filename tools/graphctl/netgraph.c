/*
 * Fetching clusters and neighbourhoods into an ng_graph (netgraph.h).
 *
 * Sellers come first, each with its cluster and the cluster's risk; then
 * every seller's links are read (Neighbors, paged) and kept as "pending"
 * (seller, neighbour) pairs inside the replies, which stay alive until
 * ng_finish. ng_finish groups the pairs by neighbour, keeps the entities
 * two or more of the graph's sellers link to, applies the node bound and
 * makes the edges; then the replies are freed. ng_fetch_evidence then asks
 * GetEntity for the evidence weights that need the daemon's corroboration.
 */
#include "netgraph.h"

#include "evidence.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_GET SVC "GetEntity"
#define M_NEIGHBORS SVC "Neighbors"
#define M_LINKED SVC "LinkedSellers"
#define M_SNAPSHOT SVC "GetSnapshot"
#define M_CLUSTERS SVC "ListClusters"
#define M_CLUSTER SVC "GetCluster"

/* Rows asked for per page: under graphd's default result cap (10000). */
#define PAGE 1000
/* Of a bigger cluster, a snapshot keeps the links of this many members
 * (graphd.v1.GetClusterRequest.links). */
#define NG_SNAPSHOT_LINK_MEMBERS 5000
/* Members asked for per GetCluster page with their links: a page's reply
 * holds every link of its members, so it stays well under the daemon's
 * message size (4 MiB by default) at ~100 links a member. */
#define LINK_PAGE 250

/* A link read (Neighbors, or a snapshot's kept links), until ng_finish. */
struct ng_pending {
  size_t seller;                    /* node index */
  const Graphd__V1__Entity *entity; /* inside a kept reply */
  int64_t first_seen, last_seen;
  uint64_t count;
};

typedef struct risk_entry {
  uint64_t cluster_id;
  double risk;
} risk_entry;

struct ng_ctx {
  bool manifest_read;
  Graphd__V1__SnapshotManifest *manifest; /* NULL: no snapshot */
  gd_evidence_params ev;
  char **flagged;
  size_t nflagged;
  risk_entry *risks;
  size_t nrisks, risks_cap;
  const Graphd__V1__Entity *root; /* neighbourhood root (in a kept reply) */
};

static char *default_flagged[] = {"counterfeit"};

/* ------------------------------------------------------------------ */
/* Small containers                                                     */

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return p;
  size_t nc = *cap ? *cap : 16;
  while (nc < need)
    nc *= 2;
  void *q = realloc(p, nc * size);
  if (!q)
    die_nomem();
  *cap = nc;
  return q;
}

/* The node index of entity id, if it is one. */
static bool map_get(const gd_u64map *m, uint64_t id, size_t *ret) {
  const uint64_t *v = gd_u64map_get(m, id);
  if (v)
    *ret = (size_t)*v;
  return v != NULL;
}

static void map_put(gd_u64map *m, uint64_t id, size_t i) {
  uint64_t *v = gd_u64map_put(m, id, NULL);
  if (!v)
    die_nomem();
  *v = i;
}

/* ------------------------------------------------------------------ */
/* Graph                                                                */

void ng_graph_init(ng_graph *g) {
  memset(g, 0, sizeof *g);
  g->ctx = xcalloc(1, sizeof *g->ctx);
  g->root = -1;
}

static void free_replies(ng_graph *g) {
  for (size_t i = 0; i < g->nreplies; i++)
    protobuf_c_message_free_unpacked(g->replies[i], NULL);
  free(g->replies);
  g->replies = NULL;
  g->nreplies = g->replies_cap = 0;
  free(g->pend);
  g->pend = NULL;
  g->npend = g->pend_cap = 0;
  if (g->ctx)
    g->ctx->root = NULL;
}

void ng_graph_free(ng_graph *g) {
  if (!g)
    return;
  free_replies(g);
  for (size_t i = 0; i < g->nnodes; i++) {
    free(g->nodes[i].key);
    free(g->nodes[i].labels);
  }
  free(g->nodes);
  free(g->edges);
  gd_u64map_free(&g->map);
  if (g->ctx) {
    if (g->ctx->manifest)
      graphd__v1__snapshot_manifest__free_unpacked(g->ctx->manifest, NULL);
    free(g->ctx->risks);
    free(g->ctx);
  }
  memset(g, 0, sizeof *g);
}

void ng_note_cut(ng_graph *g, const char *fmt, ...) {
  size_t n = strlen(g->cut_note);
  if (n && n + 2 < sizeof g->cut_note) {
    memcpy(g->cut_note + n, "; ", 3);
    n += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  if (n < sizeof g->cut_note)
    vsnprintf(g->cut_note + n, sizeof g->cut_note - n, fmt, ap);
  va_end(ap);
  g->cut = true;
}

static void keep_reply(ng_graph *g, void *reply) {
  g->replies = grow(g->replies, &g->replies_cap, g->nreplies + 1, sizeof *g->replies);
  g->replies[g->nreplies++] = reply;
}

static char *join_labels(char **labels, size_t n) {
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(labels[i]) + 1;
  char *s = xcalloc(len, 1);
  for (size_t i = 0; i < n; i++) {
    if (i)
      strcat(s, ";");
    strcat(s, labels[i]);
  }
  return s;
}

static bool is_flagged(const struct ng_ctx *x, char **labels, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < x->nflagged; j++)
      if (strcmp(labels[i], x->flagged[j]) == 0)
        return true;
  return false;
}

static size_t add_node(ng_graph *g, const Graphd__V1__Entity *e) {
  g->nodes = grow(g->nodes, &g->nodes_cap, g->nnodes + 1, sizeof *g->nodes);
  ng_node *n = &g->nodes[g->nnodes];
  memset(n, 0, sizeof *n);
  n->id = e->id;
  n->type = (int)e->type;
  n->seller = e->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
  n->key = xstrdup(e->key);
  n->labels = join_labels(e->labels, e->n_labels);
  n->flagged = is_flagged(g->ctx, e->labels, e->n_labels);
  n->seller_count = e->seller_count;
  n->hub = !n->seller && gd_is_hub(&g->ctx->ev, n->type, e->seller_count);
  if (!n->seller && gd_evidence_needs_corroboration(&g->ctx->ev, n->type, e->seller_count)) {
    n->weight = NAN; /* the daemon's corroboration: ng_fetch_evidence */
    n->corroboration = NAN;
  } else if (!n->seller) {
    /* Hubs, fewer than 3 sellers, a zero type weight, the RARITY rule:
     * no corroboration needed (evidence.h). */
    n->weight = gd_evidence_weight(&g->ctx->ev, n->type, e->seller_count, 0.0);
    n->context = gd_evidence_is_context(&g->ctx->ev, n->type, e->seller_count, 0.0);
  }
  n->first_seen = e->first_seen;
  n->last_seen = e->last_seen;
  n->cluster_risk = NAN;
  n->hops = -1;
  return g->nnodes++;
}

/* Adds a seller once; returns its index and whether it is new. */
static size_t add_seller(ng_graph *g, const Graphd__V1__Entity *e, uint64_t cluster_id,
                         double risk, int hops, bool *ret_new) {
  size_t i;
  if (map_get(&g->map, e->id, &i)) {
    if (hops >= 0 && (g->nodes[i].hops < 0 || hops < g->nodes[i].hops))
      g->nodes[i].hops = hops;
    *ret_new = false;
    return i;
  }
  i = add_node(g, e);
  g->nodes[i].cluster_id = cluster_id;
  g->nodes[i].cluster_risk = cluster_id ? risk : NAN;
  g->nodes[i].hops = hops;
  map_put(&g->map, e->id, i);
  *ret_new = true;
  return i;
}

/* ------------------------------------------------------------------ */
/* Snapshot manifest, evidence parameters, cluster risks                */

/* Reads the manifest of snapshot_id (0 = latest) once. With optional, "no
 * snapshot yet" is not an error: defaults are used. */
static int load_manifest(ctl *c, ng_graph *g, uint64_t snapshot_id, bool optional) {
  struct ng_ctx *x = g->ctx;
  if (x->manifest_read &&
      (snapshot_id == 0 || (x->manifest && x->manifest->id == snapshot_id)))
    return EXIT_OK;
  if (x->manifest)
    graphd__v1__snapshot_manifest__free_unpacked(x->manifest, NULL);
  x->manifest = NULL;
  x->manifest_read = true;
  gd_evidence_defaults(&x->ev);
  x->flagged = default_flagged;
  x->nflagged = 1;
  Graphd__V1__SnapshotRequest req = GRAPHD__V1__SNAPSHOT_REQUEST__INIT;
  req.snapshot_id = snapshot_id;
  gc_status st;
  if (gc_unary(c->client, M_SNAPSHOT, &req.base, &graphd__v1__snapshot_manifest__descriptor,
               (ProtobufCMessage **)&x->manifest, &st, c->timeout_ms) != 0) {
    x->manifest = NULL;
    if (optional && st.code == 9 /* FAILED_PRECONDITION: no snapshot */)
      return EXIT_OK;
    return report_status(c, &st);
  }
  const Graphd__V1__ClusteringSpec *sp = x->manifest->spec;
  if (sp) {
    if (sp->evidence == GRAPHD__V1__EVIDENCE_RULE__EVIDENCE_RULE_RARITY)
      x->ev.rule = GD_EV_RARITY;
    for (size_t i = 0; i < sp->n_type_weights; i++) {
      int t = (int)sp->type_weights[i]->type;
      if (t > 0 && t < GD_EV_TYPES)
        x->ev.type_weight[t] = sp->type_weights[i]->weight;
    }
    for (size_t i = 0; i < sp->n_hub_caps; i++) {
      int t = (int)sp->hub_caps[i]->type;
      if (t > 0 && t < GD_EV_TYPES)
        x->ev.hub_cap[t] = sp->hub_caps[i]->max_sellers;
    }
    if (sp->n_flagged_labels) {
      x->flagged = sp->flagged_labels;
      x->nflagged = sp->n_flagged_labels;
    }
  }
  g->snapshot_id = x->manifest->id;
  return EXIT_OK;
}

static void risk_put(struct ng_ctx *x, uint64_t id, double risk) {
  x->risks = grow(x->risks, &x->risks_cap, x->nrisks + 1, sizeof *x->risks);
  x->risks[x->nrisks++] = (risk_entry){id, risk};
}

/* The risk of a cluster of the loaded snapshot (GetCluster, cached); NAN
 * when it cannot be read. */
static double risk_of(ctl *c, ng_graph *g, uint64_t cluster_id) {
  struct ng_ctx *x = g->ctx;
  if (!cluster_id || !x->manifest)
    return NAN;
  for (size_t i = 0; i < x->nrisks; i++)
    if (x->risks[i].cluster_id == cluster_id)
      return x->risks[i].risk;
  Graphd__V1__GetClusterRequest req = GRAPHD__V1__GET_CLUSTER_REQUEST__INIT;
  req.snapshot_id = x->manifest->id;
  req.cluster_id = cluster_id;
  req.max_members = 1;
  req.max_ties = 1;
  Graphd__V1__GetClusterReply *rep = NULL;
  gc_status st;
  double r = NAN;
  if (gc_unary(c->client, M_CLUSTER, &req.base, &graphd__v1__get_cluster_reply__descriptor,
               (ProtobufCMessage **)&rep, &st, c->timeout_ms) == 0) {
    if (rep->cluster)
      r = rep->cluster->risk;
    graphd__v1__get_cluster_reply__free_unpacked(rep, NULL);
  }
  risk_put(x, cluster_id, r);
  return r;
}

/* A seller's cluster in the loaded snapshot (the latest): from its Entity
 * fields when they hold it (GetEntity fills them; Neighbors and
 * LinkedSellers do not), else from GetEntity. 0 when unknown. */
static uint64_t cluster_of(ctl *c, const ng_graph *g, const Graphd__V1__Entity *e) {
  const struct ng_ctx *x = g->ctx;
  if (!x->manifest)
    return 0;
  if (e->cluster_snapshot_id)
    return e->cluster_snapshot_id == x->manifest->id ? e->cluster_id : 0;
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  ref.id = e->id;
  Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  req.ref = &ref;
  Graphd__V1__GetEntityReply *rep = NULL;
  gc_status st;
  uint64_t cl = 0;
  if (gc_unary(c->client, M_GET, &req.base, &graphd__v1__get_entity_reply__descriptor,
               (ProtobufCMessage **)&rep, &st, c->timeout_ms) == 0) {
    if (rep->entity && rep->entity->cluster_snapshot_id == x->manifest->id)
      cl = rep->entity->cluster_id;
    graphd__v1__get_entity_reply__free_unpacked(rep, NULL);
  }
  return cl;
}

/* ------------------------------------------------------------------ */
/* Links                                                                */

/* Reads the links of sellers [from, g->nnodes) that were added new. */
static int fetch_links(ctl *c, ng_graph *g, size_t from, const ng_limits *lim) {
  uint32_t max_links = lim->max_links ? lim->max_links : NG_DEFAULT_MAX_LINKS;
  size_t cut_sellers = 0;
  for (size_t i = from; i < g->nnodes; i++) {
    if (!g->nodes[i].seller)
      continue;
    Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
    ref.id = g->nodes[i].id;
    char token[512] = "";
    uint32_t read = 0;
    for (;;) {
      Graphd__V1__NeighborsRequest req = GRAPHD__V1__NEIGHBORS_REQUEST__INIT;
      req.ref = &ref;
      uint32_t want = max_links - read;
      req.limit = want < PAGE ? want : PAGE;
      req.page_token = token;
      Graphd__V1__NeighborsReply *rep = NULL;
      int rc = rpc(c, M_NEIGHBORS, &req.base, &graphd__v1__neighbors_reply__descriptor,
                   (ProtobufCMessage **)&rep);
      if (rc)
        return rc;
      keep_reply(g, rep);
      g->pend = grow(g->pend, &g->pend_cap, g->npend + rep->n_neighbors, sizeof *g->pend);
      for (size_t k = 0; k < rep->n_neighbors; k++)
        if (rep->neighbors[k]->entity && rep->neighbors[k]->link)
          g->pend[g->npend++] =
              (ng_pending){i, rep->neighbors[k]->entity, rep->neighbors[k]->link->first_seen,
                           rep->neighbors[k]->link->last_seen, rep->neighbors[k]->link->count};
      read += (uint32_t)rep->n_neighbors;
      if (!rep->next_page_token[0])
        break;
      if (read >= max_links) {
        cut_sellers++;
        break;
      }
      snprintf(token, sizeof token, "%s", rep->next_page_token);
    }
  }
  if (cut_sellers)
    ng_note_cut(g, "%zu seller%s with more than %" PRIu32 " links: only the first %" PRIu32
                   " read (--max-links)",
                cut_sellers, cut_sellers == 1 ? "" : "s", max_links, max_links);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Clusters                                                             */

static int cmp_entity_id(const void *key, const void *elem) {
  uint64_t id = *(const uint64_t *)key, e = (*(Graphd__V1__Entity *const *)elem)->id;
  return id < e ? -1 : id > e;
}

/* A page's kept links (GetCluster links) as pending links of g. */
static void add_kept_links(ng_graph *g, const Graphd__V1__GetClusterReply *rep) {
  g->pend = grow(g->pend, &g->pend_cap, g->npend + rep->n_links, sizeof *g->pend);
  for (size_t i = 0; i < rep->n_links; i++) {
    const Graphd__V1__ClusterLink *l = rep->links[i];
    size_t seller;
    Graphd__V1__Entity *const *e =
        bsearch(&l->entity_id, rep->linked, rep->n_linked, sizeof *rep->linked, cmp_entity_id);
    if (e && map_get(&g->map, l->seller_id, &seller))
      g->pend[g->npend++] = (ng_pending){seller, *e, l->first_seen, l->last_seen, l->count};
  }
}

int ng_fetch_cluster(ctl *c, ng_graph *g, uint64_t snapshot_id, uint64_t cluster_id,
                     const ng_limits *lim) {
  int rc = load_manifest(c, g, snapshot_id, false);
  if (rc)
    return rc;
  uint32_t max = lim->max_sellers ? lim->max_sellers : NG_DEFAULT_MAX_SELLERS;
  size_t first = g->nnodes;
  uint64_t after = 0, size = 0;
  uint32_t got = 0;
  double risk = NAN;
  bool more = false, kept = false;
  for (;;) {
    Graphd__V1__GetClusterRequest req = GRAPHD__V1__GET_CLUSTER_REQUEST__INIT;
    req.snapshot_id = g->ctx->manifest->id;
    req.cluster_id = cluster_id;
    uint32_t want = max - got;
    req.max_members = want < LINK_PAGE ? want : LINK_PAGE;
    req.max_ties = 1;
    req.after_seller = after;
    /* The links the snapshot kept, with its members' labels and times;
     * when it kept none for this cluster, today's (live_members, then
     * Neighbors). */
    req.links = 1;
    req.live = after == 0 || !kept;
    Graphd__V1__GetClusterReply *rep = NULL;
    if ((rc = rpc(c, M_CLUSTER, &req.base, &graphd__v1__get_cluster_reply__descriptor,
                  (ProtobufCMessage **)&rep)))
      return rc;
    if (rep->cluster) {
      risk = rep->cluster->risk;
      size = rep->cluster->size;
    }
    kept = rep->links_kept;
    /* Without kept links, live_members: the members' records today, in
     * member order, without those deleted since (which keep the
     * snapshot's id and key). */
    for (size_t i = 0, l = 0; i < rep->n_members; i++) {
      bool isnew;
      const Graphd__V1__Entity *e = rep->members[i];
      if (!kept && l < rep->n_live_members && rep->live_members[l]->id == e->id)
        e = rep->live_members[l++];
      size_t k = add_seller(g, e, cluster_id, risk, -1, &isnew);
      /* Flagged as the snapshot recorded it, like the cluster's count. */
      g->nodes[k].flagged = false;
      for (size_t f = 0; f < rep->n_flagged_members; f++)
        g->nodes[k].flagged |= rep->flagged_members[f] == rep->members[i]->id;
      after = rep->members[i]->id;
      got++;
    }
    more = rep->more_members && rep->n_members > 0;
    if (kept) {
      add_kept_links(g, rep);
      keep_reply(g, rep);
    } else {
      graphd__v1__get_cluster_reply__free_unpacked(rep, NULL);
    }
    if (!more || got >= max)
      break;
  }
  risk_put(g->ctx, cluster_id, risk);
  if (more)
    ng_note_cut(g, "cluster %" PRIu64 ": %" PRIu32 " of its %" PRIu64 " sellers (--max-sellers)",
                cluster_id, got, size);
  if (!g->source[0])
    snprintf(g->source, sizeof g->source, "cluster %" PRIu64 " of snapshot %" PRIu64,
             cluster_id, g->ctx->manifest->id);
  if (kept) {
    if (got > NG_SNAPSHOT_LINK_MEMBERS)
      ng_note_cut(g, "cluster %" PRIu64 ": the snapshot kept the links of its %d lowest-id "
                     "members only",
                  cluster_id, NG_SNAPSHOT_LINK_MEMBERS);
    return EXIT_OK;
  }
  ng_note_cut(g, "cluster %" PRIu64 ": links as of today (snapshot %" PRIu64 " kept none for "
                 "it: it keeps them for clusters of 2 or more sellers with a flagged one)",
              cluster_id, g->ctx->manifest->id);
  return fetch_links(c, g, first, lim);
}

int ng_fetch_snapshot(ctl *c, ng_graph *g, uint64_t snapshot_id, double min_risk,
                      uint64_t min_size, uint32_t top, const ng_limits *lim,
                      size_t *ret_clusters) {
  *ret_clusters = 0;
  int rc = load_manifest(c, g, snapshot_id, false);
  if (rc)
    return rc;
  uint64_t sid = g->ctx->manifest->id;
  uint64_t *ids = xcalloc(top ? top : 1, sizeof *ids);
  size_t n = 0;
  bool more = false;
  char token[512] = "";
  for (;;) {
    Graphd__V1__ListClustersRequest req = GRAPHD__V1__LIST_CLUSTERS_REQUEST__INIT;
    req.snapshot_id = sid;
    req.order = GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_RISK;
    req.min_size = min_size;
    size_t want = top - n + 1; /* one more: is anything left out? */
    req.limit = (uint32_t)(want < PAGE ? want : PAGE);
    req.page_token = token;
    Graphd__V1__ListClustersReply *rep = NULL;
    if ((rc = rpc(c, M_CLUSTERS, &req.base, &graphd__v1__list_clusters_reply__descriptor,
                  (ProtobufCMessage **)&rep))) {
      free(ids);
      return rc;
    }
    bool stop = !rep->next_page_token[0];
    for (size_t i = 0; i < rep->n_clusters; i++) {
      if (rep->clusters[i]->risk < min_risk) {
        stop = true;
        break;
      }
      if (n == top) {
        more = true;
        stop = true;
        break;
      }
      ids[n++] = rep->clusters[i]->id;
      risk_put(g->ctx, rep->clusters[i]->id, rep->clusters[i]->risk);
    }
    snprintf(token, sizeof token, "%s", rep->next_page_token);
    graphd__v1__list_clusters_reply__free_unpacked(rep, NULL);
    if (stop)
      break;
  }
  snprintf(g->source, sizeof g->source,
           "snapshot %" PRIu64 ": the %zu riskiest clusters with risk >= %g and at least %" PRIu64
           " sellers",
           sid, n, min_risk, min_size ? min_size : 1);
  if (more)
    ng_note_cut(g, "more clusters have risk >= %g: only the riskiest %" PRIu32 " (--top)",
                min_risk, top);
  for (size_t i = 0; i < n && rc == EXIT_OK; i++)
    rc = ng_fetch_cluster(c, g, sid, ids[i], lim);
  free(ids);
  *ret_clusters = n;
  return rc;
}

/* ------------------------------------------------------------------ */
/* Neighbourhoods                                                       */

/* LinkedSellers from seller id within hops; adds up to *left sellers at
 * base_hops + their hops. */
static int add_linked(ctl *c, ng_graph *g, uint64_t id, int hops, int base_hops,
                      uint32_t *left, bool *ret_cut) {
  Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
  ref.id = id;
  Graphd__V1__LinkedSellersRequest req = GRAPHD__V1__LINKED_SELLERS_REQUEST__INIT;
  req.seller = &ref;
  req.max_hops = (uint32_t)hops;
  uint32_t want = *left + 1; /* one more: is anything left out? */
  req.limit = want < 10000 ? want : 10000;
  Graphd__V1__LinkedSellersReply *rep = NULL;
  int rc = rpc(c, M_LINKED, &req.base, &graphd__v1__linked_sellers_reply__descriptor,
               (ProtobufCMessage **)&rep);
  if (rc)
    return rc;
  if (rep->truncated)
    ng_note_cut(g, "LinkedSellers from seller %" PRIu64 " stopped at its work bound", id);
  for (size_t i = 0; i < rep->n_sellers; i++) {
    const Graphd__V1__LinkedSeller *ls = rep->sellers[i];
    if (!ls->seller)
      continue;
    size_t idx;
    if (map_get(&g->map, ls->seller->id, &idx)) {
      bool isnew;
      add_seller(g, ls->seller, 0, NAN, base_hops + (int)ls->hops, &isnew);
      continue;
    }
    if (*left == 0) {
      *ret_cut = true;
      break;
    }
    uint64_t cl = cluster_of(c, g, ls->seller);
    bool isnew;
    add_seller(g, ls->seller, cl, risk_of(c, g, cl), base_hops + (int)ls->hops, &isnew);
    (*left)--;
  }
  graphd__v1__linked_sellers_reply__free_unpacked(rep, NULL);
  return EXIT_OK;
}

int ng_fetch_entity(ctl *c, ng_graph *g, const Graphd__V1__EntityRef *ref, int hops,
                    const ng_limits *lim) {
  int rc = load_manifest(c, g, 0, true);
  if (rc)
    return rc;
  uint32_t max = lim->max_sellers ? lim->max_sellers : NG_DEFAULT_MAX_SELLERS;
  Graphd__V1__GetEntityRequest greq = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  greq.ref = (Graphd__V1__EntityRef *)ref;
  Graphd__V1__GetEntityReply *grep = NULL;
  if ((rc = rpc(c, M_GET, &greq.base, &graphd__v1__get_entity_reply__descriptor,
                (ProtobufCMessage **)&grep)))
    return rc;
  keep_reply(g, grep);
  const Graphd__V1__Entity *root = grep->entity;
  if (!root)
    return report_status(c, &(gc_status){.code = 13, .message = "client: GetEntity without entity"});
  g->root_id = root->id;
  g->ctx->root = root;
  char kb[256];
  snprintf(g->source, sizeof g->source, "neighbourhood of %s %s within %d hop%s%s", 
           gd_type_name((int)root->type), safe(root->key, kb, sizeof kb), hops,
           hops == 1 ? "" : "s", g->ctx->manifest ? "" : " (no snapshot: no clusters)");
  bool cut = false;
  uint32_t left = max;
  if (root->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER) {
    uint64_t cl = cluster_of(c, g, root);
    bool isnew;
    g->root = (int64_t)add_seller(g, root, cl, risk_of(c, g, cl), 0, &isnew);
    left = max > 1 ? max - 1 : 0;
    if ((rc = add_linked(c, g, root->id, hops, 0, &left, &cut)))
      return rc;
  } else {
    /* The sellers that use it: one step. */
    Graphd__V1__EntityType seller_type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    char token[512] = "";
    Graphd__V1__EntityRef rr = GRAPHD__V1__ENTITY_REF__INIT;
    rr.id = root->id;
    for (;;) {
      Graphd__V1__NeighborsRequest req = GRAPHD__V1__NEIGHBORS_REQUEST__INIT;
      req.ref = &rr;
      req.types = &seller_type;
      req.n_types = 1;
      uint32_t want = left + 1;
      req.limit = want < PAGE ? want : PAGE;
      req.page_token = token;
      Graphd__V1__NeighborsReply *rep = NULL;
      if ((rc = rpc(c, M_NEIGHBORS, &req.base, &graphd__v1__neighbors_reply__descriptor,
                    (ProtobufCMessage **)&rep)))
        return rc;
      for (size_t i = 0; i < rep->n_neighbors && !cut; i++) {
        const Graphd__V1__Entity *e = rep->neighbors[i]->entity;
        if (!e)
          continue;
        if (left == 0) {
          cut = true;
          break;
        }
        uint64_t cl = cluster_of(c, g, e);
        bool isnew;
        add_seller(g, e, cl, risk_of(c, g, cl), 1, &isnew);
        left--;
      }
      snprintf(token, sizeof token, "%s", rep->next_page_token);
      graphd__v1__neighbors_reply__free_unpacked(rep, NULL);
      if (cut || !token[0])
        break;
    }
    size_t n1 = g->nnodes;
    for (size_t i = 0; hops >= 2 && i < n1 && !cut; i++)
      if ((rc = add_linked(c, g, g->nodes[i].id, hops - 1, 1, &left, &cut)))
        return rc;
  }
  if (cut)
    ng_note_cut(g, "at most %" PRIu32 " sellers (--max-sellers)", max);
  return fetch_links(c, g, 0, lim);
}

/* ------------------------------------------------------------------ */
/* Finishing: entity nodes and edges                                    */

static int pend_cmp(const void *x, const void *y) {
  const ng_pending *a = x, *b = y;
  uint64_t ia = a->entity->id, ib = b->entity->id;
  if (ia != ib)
    return ia < ib ? -1 : 1;
  return a->seller < b->seller ? -1 : a->seller > b->seller;
}

typedef struct cand {
  size_t start, end; /* range in g->pend */
  uint32_t users;
  bool root;
} cand;

static int cand_cmp(const void *x, const void *y) {
  const cand *a = x, *b = y;
  if (a->root != b->root)
    return a->root ? -1 : 1;
  if (a->users != b->users)
    return a->users > b->users ? -1 : 1;
  return a->start < b->start ? -1 : a->start > b->start;
}

static void add_edge(ng_graph *g, ng_edge e) {
  g->edges = grow(g->edges, &g->edges_cap, g->nedges + 1, sizeof *g->edges);
  g->edges[g->nedges++] = e;
}

void ng_finish(ng_graph *g, const ng_limits *lim) {
  if (g->npend)
    qsort(g->pend, g->npend, sizeof *g->pend, pend_cmp);
  cand *cands = xcalloc(g->npend + 1, sizeof *cands);
  size_t ncand = 0;
  for (size_t i = 0; i < g->npend;) {
    const Graphd__V1__Entity *e = g->pend[i].entity;
    size_t j = i;
    uint32_t users = 0;
    while (j < g->npend && g->pend[j].entity->id == e->id) {
      if (j == i || g->pend[j].seller != g->pend[j - 1].seller)
        users++;
      j++;
    }
    if (e->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER) {
      /* A direct link: an edge when both sellers are in the graph, once. */
      size_t other;
      if (map_get(&g->map, e->id, &other))
        for (size_t k = i; k < j; k++)
          if (g->pend[k].seller < other) {
            const ng_pending *l = &g->pend[k];
            add_edge(g, (ng_edge){g->pend[k].seller, other, true, l->first_seen, l->last_seen,
                                  l->count, g->ctx->ev.type_weight[GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER]});
          }
    } else if (users >= 2 || e->id == g->root_id) {
      cands[ncand++] = (cand){i, j, users, e->id == g->root_id};
    }
    i = j;
  }
  /* A root nobody in the graph links to (an isolated entity) is still a
   * node. */
  bool root_seen = g->root >= 0 || g->root_id == 0;
  for (size_t k = 0; k < ncand && !root_seen; k++)
    root_seen = cands[k].root;
  if (!root_seen && g->ctx->root) {
    g->root = (int64_t)add_node(g, g->ctx->root);
    g->nodes[g->root].hops = 0;
  }
  if (ncand)
    qsort(cands, ncand, sizeof *cands, cand_cmp);
  size_t keep = ncand;
  if (lim->max_nodes) {
    size_t budget = lim->max_nodes > g->nnodes ? lim->max_nodes - g->nnodes : 0;
    if (keep > budget) {
      ng_note_cut(g, "%zu of %zu shared entities shown, those shared by the most sellers "
                     "first (at most %" PRIu32 " nodes)",
                  budget, keep, lim->max_nodes);
      keep = budget;
    }
  }
  for (size_t k = 0; k < keep; k++) {
    const cand *cd = &cands[k];
    const Graphd__V1__Entity *e = g->pend[cd->start].entity;
    size_t ni = add_node(g, e);
    ng_node *n = &g->nodes[ni];
    n->users = cd->users;
    if (cd->root) {
      g->root = (int64_t)ni;
      n->hops = 0;
    }
    /* Its cluster: the one most of its sellers here are in (the first
     * fetched on a tie, i.e. the riskiest for a snapshot export). */
    uint32_t best = 0;
    for (size_t a = cd->start; a < cd->end; a++) {
      const ng_node *s = &g->nodes[g->pend[a].seller];
      if (!s->cluster_id)
        continue;
      uint32_t cnt = 0;
      for (size_t b = cd->start; b < cd->end; b++)
        cnt += g->nodes[g->pend[b].seller].cluster_id == s->cluster_id;
      if (cnt > best) {
        best = cnt;
        n->cluster_id = s->cluster_id;
        n->cluster_risk = s->cluster_risk;
      }
    }
    for (size_t a = cd->start; a < cd->end; a++) {
      const ng_pending *l = &g->pend[a];
      add_edge(g, (ng_edge){g->pend[a].seller, ni, false, l->first_seen, l->last_seen,
                            l->count, n->weight});
    }
  }
  free(cands);
  free_replies(g);
}

/* ------------------------------------------------------------------ */
/* Evidence weights                                                     */

/* True if p is the daemon's default evidence rule, caps and weights: what
 * GetEntity's evidence fields are computed with. */
static bool default_params(const gd_evidence_params *p) {
  gd_evidence_params d;
  gd_evidence_defaults(&d);
  if (p->rule != d.rule)
    return false;
  for (int t = 1; t < GD_EV_TYPES; t++)
    if (p->hub_cap[t] != d.hub_cap[t] || p->type_weight[t] != d.type_weight[t])
      return false;
  return true;
}

int ng_fetch_evidence(ctl *c, ng_graph *g) {
  const gd_evidence_params *ev = &g->ctx->ev;
  bool defaults = default_params(ev);
  gd_evidence_params dflt;
  gd_evidence_defaults(&dflt);
  bool fetched = false;
  for (size_t i = 0; i < g->nnodes; i++) {
    ng_node *n = &g->nodes[i];
    if (n->seller || !isnan(n->weight))
      continue;
    Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
    ref.id = n->id;
    Graphd__V1__GetEntityRequest req = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
    req.ref = &ref;
    Graphd__V1__GetEntityReply *rep = NULL;
    int rc = rpc(c, M_GET, &req.base, &graphd__v1__get_entity_reply__descriptor,
                 (ProtobufCMessage **)&rep);
    if (rc)
      return rc;
    const Graphd__V1__Entity *e = rep->entity;
    if (e) {
      n->seller_count = e->seller_count;
      n->hub = gd_is_hub(ev, n->type, e->seller_count);
      if (defaults) {
        n->weight = e->evidence_weight;
        n->corroboration = e->corroboration;
        n->context = e->evidence_context;
      } else if (!gd_evidence_needs_corroboration(ev, n->type, e->seller_count)) {
        /* (the count changed meanwhile) */
        n->weight = gd_evidence_weight(ev, n->type, e->seller_count, 0.0);
        n->corroboration = 0;
        n->context = gd_evidence_is_context(ev, n->type, e->seller_count, 0.0);
      } else if (gd_evidence_needs_corroboration(&dflt, n->type, e->seller_count)) {
        /* The spec's rule on the daemon's c (default caps and weights). */
        n->corroboration = e->corroboration;
        n->weight = gd_evidence_weight(ev, n->type, e->seller_count, e->corroboration);
        n->context = gd_evidence_is_context(ev, n->type, e->seller_count, e->corroboration);
      } else {
        /* Over the default cap (or a zero default weight), not the spec's:
         * the daemon computes no c for it. Unknown. */
        n->weight = NAN;
        n->corroboration = NAN;
        n->context = false;
      }
    }
    graphd__v1__get_entity_reply__free_unpacked(rep, NULL);
    fetched = true;
  }
  if (!fetched)
    return EXIT_OK;
  for (size_t i = 0; i < g->nedges; i++) {
    ng_edge *ed = &g->edges[i];
    if (!ed->direct)
      ed->weight = g->nodes[ed->b].weight;
  }
  return EXIT_OK;
}
