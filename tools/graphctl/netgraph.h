/*
 * graphctl's network fetcher: a cluster, a snapshot's riskiest clusters, or
 * an entity's neighbourhood, read from graphd over the public rpcs and held
 * as the bipartite seller–entity graph investigators look at: sellers, the
 * shared entities that link them (address, payment account, device, phone,
 * e-mail, ip), and the links between the two, with their times. Used by
 * `graphctl export` (GraphML) and `graphctl report` (drawings).
 *
 * netgraph.c fetches (gRPC only) into the plain ng_graph below;
 * netgraph_igraph.c is the one graphctl file that includes igraph: it turns
 * an ng_graph into an igraph_t with attributes (C attribute handler), writes
 * GraphML and computes layouts.
 *
 * What is kept. The sellers are fetched first (GetCluster members, or
 * LinkedSellers / Neighbors for a neighbourhood), then each seller's links
 * (Neighbors, paged). A cluster whose links its snapshot kept (GetCluster
 * links = true: every cluster of 2+ sellers with a flagged one) is read
 * from the snapshot alone: members with their labels and times as they
 * were, and the links it kept, so the same snapshot always gives the same
 * graph; any other cluster's links are today's, and cut_note says so. A non-seller entity becomes a node when at least two
 * of the graph's sellers link to it (the root of a neighbourhood always),
 * so a seller's private phone is left out and the warehouse address of a
 * ring is in. Hubs (over their hub cap) are kept like any other entity,
 * marked hub, with evidence weight 0 (investigators and clustering do not
 * follow them); so are context entities (under the cap, but a crowd whose
 * sellers share nothing else: weight 0 under the evidence rule). Direct
 * seller-seller links between two kept sellers are edges too (relation
 * "direct"); every other edge joins a seller and an entity (relation
 * "uses").
 *
 * Evidence weights. An entity's weight under the evidence rule
 * (algorithms/evidence.h) depends on its corroboration, which only the
 * daemon can compute (it reads the links of the entity's sellers), and
 * only GetEntity reports it. ng_finish fills what needs no corroboration
 * (hubs 0, one seller 0, two sellers w(type), the RARITY rule); for the
 * others (3 or more sellers, under the cap) ng_fetch_evidence asks
 * GetEntity, one call per such entity node, so bounded by the nodes kept.
 *
 * Bounds. ng_limits caps sellers per cluster (or neighbourhood), links
 * read per seller, and nodes in the whole graph; whatever a bound cuts is
 * said in ng_graph.cut_note (and `cut` is set), never silently dropped.
 *
 * Errors: the fetch functions return a graphctl exit code: EXIT_OK, or the
 * code report_status() returned after printing the daemon's status
 * ("graphctl: NOT_FOUND: ..."). On error the graph may hold part of the
 * data; free it with ng_graph_free. Out of memory exits (die_nomem).
 */
#ifndef GRAPHCTL_NETGRAPH_H
#define GRAPHCTL_NETGRAPH_H

#include "core/u64map.h"
#include "graphctl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct ng_node {
  uint64_t id;       /* graphd entity id */
  int type;          /* graphd.v1.EntityType, 1..7 */
  bool seller;       /* type == SELLER */
  char *key;         /* normalised key (owned) */
  char *labels;      /* ';'-joined labels, "" when none (owned) */
  bool flagged;      /* carries one of the snapshot's flagged labels */
  uint64_t cluster_id;  /* seller: its cluster (0 = none known); entity:
                           the cluster most of its sellers here are in */
  double cluster_risk;  /* risk of cluster_id; NAN when unknown */
  uint64_t seller_count; /* sellers linked to it in the whole store */
  bool hub;          /* over its type's hub cap */
  /* Entity, under the evidence rule of the snapshot's spec (no snapshot:
   * the defaults): what it adds to each pair of its sellers' tie (0 for
   * hubs and context), its corroboration c (0 when the rule does not need
   * it) and whether it is context. With the default rule, caps and type
   * weights these are the daemon's GetEntity values; otherwise the weight
   * is the spec's rule applied to the daemon's c (which GetEntity computes
   * with the default caps and type weights). NAN when unknown: before
   * ng_fetch_evidence, or c for an entity over the default cap but not
   * over the spec's. Seller: 0, 0, false. */
  double weight;
  double corroboration;
  bool context;
  uint32_t users;    /* entity: sellers of this graph linked to it */
  int64_t first_seen, last_seen;
  int hops;          /* neighbourhood: seller steps from the root; -1 n/a */
} ng_node;

typedef struct ng_edge {
  size_t a, b;       /* node indices; a is a seller */
  bool direct;       /* seller-seller link (else seller-entity) */
  int64_t first_seen, last_seen;
  uint64_t count;    /* observations of the link */
  double weight;     /* evidence weight of the shared entity (direct links:
                        the seller type weight) */
} ng_edge;

typedef struct ng_limits {
  uint32_t max_sellers; /* per cluster or neighbourhood */
  uint32_t max_links;   /* links read per seller */
  uint32_t max_nodes;   /* nodes in the whole graph (0 = no bound) */
} ng_limits;

#define NG_DEFAULT_MAX_SELLERS 500
#define NG_DEFAULT_MAX_LINKS 1000

typedef struct ng_pending ng_pending;

typedef struct ng_graph {
  ng_node *nodes;
  size_t nnodes, nodes_cap;
  ng_edge *edges;
  size_t nedges, edges_cap;
  /* What this graph shows, e.g. "cluster 904 of snapshot 12". */
  char source[512];
  uint64_t snapshot_id; /* 0 when none was used */
  bool cut;
  char cut_note[1024]; /* "; "-separated reasons */

  /* Private to netgraph.c. */
  struct ng_ctx *ctx;
  ng_pending *pend;
  size_t npend, pend_cap;
  void **replies;
  size_t nreplies, replies_cap;
  gd_u64map map; /* entity id -> node index */
  int64_t root;      /* node index of a neighbourhood's root, -1 */
  uint64_t root_id;
} ng_graph;

/* An empty graph. The snapshot's manifest is read (GetSnapshot) on the
 * first fetch that needs it. */
void ng_graph_init(ng_graph *g);
void ng_graph_free(ng_graph *g);

/*
 * Adds cluster cluster_id of snapshot snapshot_id (0 = the latest) to g:
 * GetSnapshot, GetCluster (members and the links the snapshot kept,
 * paged), or when it kept none, today's records and Neighbors of each
 * member.
 * Call ng_finish once after the last fetch. Errors: as the rpcs (NOT_FOUND
 * no such snapshot or cluster, FAILED_PRECONDITION no snapshot yet).
 */
int ng_fetch_cluster(ctl *c, ng_graph *g, uint64_t snapshot_id, uint64_t cluster_id,
                     const ng_limits *lim);

/*
 * Adds the clusters of a snapshot with risk >= min_risk and size >=
 * min_size, riskiest first, at most top of them (ListClusters, then as
 * ng_fetch_cluster for each). Sets *ret_clusters to how many were added.
 */
int ng_fetch_snapshot(ctl *c, ng_graph *g, uint64_t snapshot_id, double min_risk,
                      uint64_t min_size, uint32_t top, const ng_limits *lim,
                      size_t *ret_clusters);

/*
 * Adds the neighbourhood of an entity (GetEntity, then the investigator
 * rpcs): for a seller, itself and the sellers LinkedSellers finds within
 * hops (1..3) seller-to-seller steps; for any other entity, the sellers
 * linked to it, and with hops >= 2 the sellers linked to those within
 * hops - 1 steps. Clusters and risks are those of the latest snapshot
 * (none when there is no snapshot). Errors: NOT_FOUND (no such entity),
 * INVALID_ARGUMENT.
 */
int ng_fetch_entity(ctl *c, ng_graph *g, const Graphd__V1__EntityRef *ref, int hops,
                    const ng_limits *lim);

/* Builds the entity nodes and the edges from what was fetched, applying
 * lim->max_nodes (entities shared by most sellers kept first). Call once.
 * Entity weights that need the daemon's corroboration are NAN until
 * ng_fetch_evidence. */
void ng_finish(ng_graph *g, const ng_limits *lim);

/*
 * Fills the evidence weight, corroboration and context of the entity nodes
 * whose weight depends on their corroboration (3 or more sellers, not
 * hubs): GetEntity, one call per such node (the seller count and hub flag
 * are refreshed from the reply), then the weights of their edges. Call
 * after ng_finish. Errors: as GetEntity (NOT_FOUND when an entity was
 * deleted meanwhile).
 */
int ng_fetch_evidence(ctl *c, ng_graph *g);

/* Appends a reason to g->cut_note and sets g->cut. */
void ng_note_cut(ng_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- netgraph_igraph.c ---- */

/*
 * Writes g as GraphML (igraph_write_graph_graphml) to f. Vertex attributes:
 * kind (seller|entity), type, key, labels, flagged, cluster_id,
 * cluster_risk, seller_count, hub, evidence_weight, corroboration,
 * evidence_context, users, first_seen, last_seen, hops, graphd_id; edge
 * attributes: relation (uses|direct),
 * first_seen, last_seen, count, weight; graph attributes: source,
 * snapshot_id, cut, cut_note. Returns 0, or -1 with a message in err
 * (igraph error; the caller maps it to an exit code).
 */
int ng_write_graphml(const ng_graph *g, FILE *f, char *err, size_t errsize);

/*
 * Fruchterman-Reingold layout of g with igraph's RNG seeded with seed, so
 * the same graph and seed give the same picture. An edge to an entity
 * attracts with weight 1 / sqrt(its users in g) (direct links 1), so the
 * small groups inside a cluster stand apart around its widest entity. ret_xy gets 2 * nnodes
 * doubles (x, y pairs) scaled into [0, 1]. Returns 0 or -1 (err filled).
 */
int ng_layout(const ng_graph *g, unsigned long seed, double *ret_xy, char *err,
              size_t errsize);

#endif
