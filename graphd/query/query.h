/*
 * query: investigator reads over one read transaction.
 *
 * Three questions an investigator asks about a flagged seller:
 *   gd_query_linked    who is linked to it, through what, how strongly;
 *   gd_query_paths     how two entities are connected;
 *   gd_query_suspects  which unlabelled sellers sit closest to labelled ones.
 * All three weigh shared entities with algorithms/evidence.h (the
 * corroborated evidence rule and hub caps, the same implementation
 * clustering uses; common.c computes corroboration), honour a
 * time window on links, and stop at a work bound (rows of adjacency read,
 * or pushes, and the server's bound on all steps, walks over cached lists
 * included) with what they found, marked truncated: no query runs
 * unbounded. A check hook (deadline, cancellation) is asked every few
 * thousand steps; when it says stop, the query ends with its error.
 *
 * Results live in an arena owned by the result; free it with the matching
 * *_free function. Entity ids in results are plain ids: the caller reads
 * the entities it wants to show (inside the same read transaction).
 *
 * Errors: GD_ENOTFOUND (a start entity is missing), GD_EINVALID (a seller
 * is required and the entity is not one; from == to), GD_EPRECONDITION
 * (no seed), GD_ENOMEM, GD_EIO, GD_EINTERNAL, and whatever the check hook
 * returns (GD_EDEADLINE, GD_ECANCELLED). Messages name the field.
 */
#ifndef GD_QUERY_QUERY_H
#define GD_QUERY_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "evidence.h"
#include "store/store.h"

typedef struct gd_query_params {
  gd_evidence_params ev;  /* hub caps and type weights */
  uint32_t type_mask;     /* types followed (bit t); 0 = all */
  int64_t since, until;   /* link window; 0 = open */
  uint64_t max_touched;   /* the request's bound (rows read; RankSuspects:
                             pushes); 0 = no bound */
  /* The bound on all traversal work, whatever the request asked: rows
   * read, plus every entry of a cached seller list or adjacency walked,
   * plus pushes. 0 = no bound. Past either bound a query stops with what
   * it found, marked truncated. */
  uint64_t max_work;
  /* Asked once at the start and then every GD_QUERY_CHECK_EVERY steps of
   * work: a non-zero gd_errno (GD_EDEADLINE, GD_ECANCELLED, with err
   * filled) ends the query with that error and no result. NULL = never. */
  int (*check)(void *ctx, gd_err *err);
  void *check_ctx;
} gd_query_params;

/* Steps of work between two checks: about a millisecond at most. */
#define GD_QUERY_CHECK_EVERY 4096

/* Fills p with the defaults: evidence defaults, every type, no window. */
void gd_query_params_default(gd_query_params *p);

/* An entity met and not counted as evidence: over its type's hub cap, or
 * context under the evidence rule (evidence.h: shared by a crowd that
 * shares nothing else). */
typedef struct gd_hub {
  uint64_t entity;
  int type;
  uint64_t sellers, cap;
  bool context;         /* under the cap, but context */
  double corroboration; /* context only: its corroboration c */
} gd_hub;

/* ---- One entity under the evidence rule ---- */

typedef struct gd_evidence_info {
  double weight;        /* what one shared use adds to a tie; 0: not evidence */
  double corroboration; /* c (evidence.h); 0 when the rule does not need it */
  bool hub;             /* over its type's hub cap */
  bool context;         /* under the cap, but weight 0 under the rule */
} gd_evidence_info;

/*
 * How p's evidence rule weighs entity id, exactly as LinkedSellers,
 * FindPaths, RankSuspects and the clustering projection do (evidence.h):
 * for an entity whose weight depends on its corroboration, reads the links
 * of its first GD_EV_SAMPLE sellers. A seller gets type_weight[SELLER] (its
 * weight as a direct link). Time: O(GD_EV_SAMPLE x degree) row reads.
 * Errors: GD_ENOTFOUND, GD_ENOMEM, GD_EIO.
 */
int gd_query_evidence(gd_rtxn *r, uint64_t id, const gd_query_params *p, gd_evidence_info *ret,
                      gd_err *err);

/*
 * Entity id as gd_store_get reads it in r, without its attributes (nattrs
 * is 0): what a reply shows of an entity a query met. Served from this
 * thread's entity cache (common.c) when the cache holds what r would read,
 * else read and kept. The view's strings point into the store's map or
 * into the cache: valid until this thread's next call into the query
 * layer, so copy them before. Errors: GD_ENOTFOUND, GD_EINTERNAL, GD_EIO.
 */
int gd_query_entity_brief(gd_rtxn *r, uint64_t id, gd_entity_view *ret, gd_err *err);

/* ---- LinkedSellers ---- */

typedef struct gd_shared {
  uint64_t entity;
  int type;
  uint64_t sellers;       /* the entity's seller count */
  double corroboration;   /* its corroboration c (evidence.h); 1 for a direct link */
  int64_t first, last;    /* later first_seen / later last_seen of the two links */
  double weight;          /* w(type) * r(sellers) */
} gd_shared;

typedef struct gd_step {
  uint64_t from, to;
  double tie;
  /* Strongest first. A list belongs to one step: a path copies the
   * steps it extends by value, lists included, so two steps with the
   * same list are the same step (the rpc layer packs each once). */
  gd_shared *shared;
  size_t nshared;
} gd_step;

typedef struct gd_linked {
  uint64_t seller;
  unsigned hops;
  double score; /* 1 / sum of 1/tie over the steps */
  gd_step *steps; /* hops entries, from the query seller */
} gd_linked;

typedef struct gd_linked_result {
  gd_linked *sellers; /* by score desc, then id */
  size_t n;
  gd_hub *hubs; /* by sellers desc, then id */
  size_t nhubs;
  bool truncated;
  bool work_bound;  /* truncated by p->max_work (not max_touched) */
  uint64_t touched;
  gd_arena *arena;
} gd_linked_result;

/*
 * Sellers reachable from `seller` through shared entities within max_hops
 * (1..3) seller-to-seller steps, each with its best path (highest score)
 * and the evidence of every step. At most `limit` results with score >=
 * min_score. Time: O(touched), bounded by p->max_touched.
 */
int gd_query_linked(gd_rtxn *r, uint64_t seller, unsigned max_hops, const gd_query_params *p,
                    size_t limit, double min_score, gd_linked_result *ret, gd_err *err);
void gd_linked_result_free(gd_linked_result *res);

/* ---- FindPaths ---- */

typedef struct gd_path {
  uint64_t *ids;  /* len + 1 entities */
  gd_link *links; /* len links; links[i] joins ids[i] and ids[i+1] */
  size_t len;
} gd_path;

typedef struct gd_paths_result {
  gd_path *paths; /* shortest first, then lexicographic by (type, id) */
  size_t n;
  gd_hub *hubs;
  size_t nhubs;
  bool truncated;
  bool work_bound;  /* truncated by p->max_work (not max_touched) */
  uint64_t touched;
  gd_arena *arena;
} gd_paths_result;

/*
 * Up to k shortest simple paths of at most max_hops links between two
 * entities, with no hub inside a path. Bidirectional breadth-first search
 * for distances, then a depth-first enumeration pruned by them, by
 * increasing length. No path is not an error (n = 0).
 */
int gd_query_paths(gd_rtxn *r, uint64_t from, uint64_t to, size_t k, unsigned max_hops,
                   const gd_query_params *p, gd_paths_result *ret, gd_err *err);
void gd_paths_result_free(gd_paths_result *res);

/* ---- RankSuspects ---- */

typedef struct gd_suspect {
  uint64_t seller;
  double score;
  gd_linked *nearest; /* labelled sellers within 2 steps, best first */
  size_t nnearest;
  /* Score 0, not reached by the walk: its cluster in the latest snapshot
   * and that cluster's size (>= 2); both 0 for sellers the walk reached. */
  uint64_t group_cluster, group_size;
} gd_suspect;

typedef struct gd_suspects_result {
  gd_suspect *suspects; /* by score desc, then id */
  size_t n;
  uint64_t seeds;
  bool truncated;
  bool work_bound;  /* truncated by p->max_work (not max_touched) */
  uint64_t touched; /* pushes */
  gd_arena *arena;
} gd_suspects_result;

/*
 * Personalised PageRank from the sellers carrying any of `labels`, by
 * local push (Andersen, Chung, Lang, FOCS 2006) on the seller-entity graph
 * with the evidence weights (suspects.c's file comment gives the walk).
 * Returns the `limit` unlabelled sellers with the most mass, each with up
 * to max_nearest labelled sellers linked within 2 steps; when fewer than
 * `limit` have mass, the rest are the unlabelled members of the latest
 * snapshot's clusters of 2 or more sellers that the walk did not reach
 * (score 0, group_cluster / group_size set), larger clusters first. Time:
 * O(pushes x degree), bounded by p->max_touched pushes, plus two passes
 * over the latest snapshot's assignments when the walk returns fewer than
 * `limit`.
 */
int gd_query_suspects(gd_rtxn *r, const gd_str *labels, size_t nlabels, double alpha,
                      double epsilon, size_t limit, size_t max_nearest,
                      const gd_query_params *p, gd_suspects_result *ret, gd_err *err);
void gd_suspects_result_free(gd_suspects_result *res);

#endif
