/*
 * The clustering job, stage by stage (worker.h):
 *
 *   open       own LMDB environment, stale reader slots cleared
 *   read       one read transaction: the graph export, the flagged sellers,
 *              the previous snapshot's assignments; then the txn ends, so
 *              the long computation pins no pages. A warm job loads the
 *              previous snapshot's export image and patches it from the
 *              change log instead of reading the whole graph (store/
 *              snapshot.h, "Export images"); every open-window job saves
 *              its own export as an image, on a thread, while it goes on;
 *              another thread reads every seller's key for the snapshot's
 *              names (seller_keys_main), joined in the write stage
 *   project    the evidence graph (algorithms/projection.h), tie cap
 *   cluster    gd_comm_run, seeded, with the cancel flag; Leiden warm
 *              from the previous snapshot's membership when the spec's
 *              warm_start says so (warm_decide)
 *   match      stable ids against the previous snapshot
 *   summarize  per cluster: size, flagged, risk, cohesion, supply sources
 *   write      the names and kept links that depend on the clustering
 *              (read_names); then one write transaction: id, manifest,
 *              assignments, summaries, names; durable commit; map growth
 *              and retry on MDB_MAP_FULL
 *
 * Nothing is written before the last stage, so any failure or cancel
 * leaves the store as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <sys/random.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/u64map.h"
#include "igraph_bridge.h"
#include "match.h"
#include "projection.h"
#include "store/snapshot.h"
#include "worker/snapfmt.h"
#include "worker/worker.h"

#ifndef GD_VERSION
#define GD_VERSION "unknown"
#endif

enum { ST_OPEN, ST_READ, ST_PROJECT, ST_CLUSTER, ST_MATCH, ST_SUMMARIZE, ST_WRITE, ST__COUNT };
static const char *const stage_names[ST__COUNT] = {"open",  "read",      "project", "cluster",
                                                   "match", "summarize", "write"};
/* Rough share of a job done when each stage starts (Leiden dominates). */
static const double stage_start[ST__COUNT] = {0.0, 0.02, 0.2, 0.35, 0.85, 0.88, 0.94};

typedef struct top_ent {
  double score;
  uint64_t users;
  int64_t ent; /* export index */
} top_ent;

#define NAMED_SOURCE 1 /* job.named: a supply source */
#define NAMED_DETAIL 2 /* job.named: linked from a drawn cluster: a detailed name */

typedef struct job {
  const gd_worker_opts *o;
  const gd_worker_spec *spec;
  gd_store *store;
  gd_graph_export x;
  uint8_t *flagged; /* per seller */
  uint8_t *context; /* per entity: context under the evidence rule */
  double *corr;     /* windowed runs: per entity, its all-time corroboration */
  uint64_t *corr_ids; /* while reading: all-time entity ids and their c */
  double *corr_all;
  int64_t corr_n;
  int64_t flagged_total;
  double base_rate; /* flagged_total / sellers: the risk prior */
  int64_t *prev;    /* per seller: previous cluster id, -1 none; NULL without previous */
  uint64_t prev_snap;
  bool prev_same_spec; /* the previous snapshot's spec = this one's (warm_start auto) */
  bool warm;           /* Leiden started from the previous membership */
  gd_image_id prev_image; /* the previous snapshot's image (txn 0: none) */
  bool from_image;        /* the export is the previous image, patched */
  gd_patch_stats patch;
  char image_note[GD_ERR_MSG_MAX]; /* why a warm job read the whole graph */
  /* This job's image, saved on a thread from the end of the read stage
   * (the export's arrays are not changed until it is joined). */
  pthread_t image_thread;
  bool image_saving, image_saved;
  gd_image_id image;
  char image_tmp[4200];
  gd_err image_err;
  bool ties_only;             /* gd_worker_ties: no previous snapshot */
  uint64_t import_rows;       /* spec import: rows read */
  int64_t import_unassigned;  /* spec import: sellers no row named */
  int64_t next_cluster_id;
  int64_t stale_readers;
  int64_t read_at; /* unix ns just before the export's read transaction began */
  gd_csr g;
  gd_projection_stats ps;
  gd_comm_result cr;
  gd_match_result mr;
  bool have_match;
  /* Output, in the order the store wants. */
  uint64_t *assign;       /* per seller: stable cluster id */
  uint64_t *cluster_ids;  /* ascending */
  uint8_t *sum_data;
  size_t *sum_off;
  size_t n_clusters;
  uint64_t *members;      /* cluster by cluster, in cluster_ids order */
  size_t *member_off;
  gd_snap_tie *ties;      /* the spanning forest, cluster by cluster */
  size_t *tie_off;
  uint8_t *named;         /* per entity: NAMED_SOURCE | NAMED_DETAIL */
  uint8_t *draw;          /* per cluster position: its links are kept */
  uint8_t *sdetail;       /* per seller: a detailed name (a member of a drawn cluster) */
  gd_snap_link *links;    /* kept links, cluster by cluster */
  size_t *link_off, n_links, cap_links;
  uint8_t *orders[GD_ORDERS]; /* snap_order rows (snapfmt.h), sorted */
  size_t n_order[GD_ORDERS];
  /* Names (read_names): sellers and supply sources, ascending id. */
  size_t n_names;
  uint64_t *name_ids;
  uint8_t *name_type, *name_flags;
  char *name_keys;
  size_t *name_off, cap_keys;
  gd_snap_detail *name_detail;
  uint8_t *labels;        /* detailed names' labels, back to back */
  /* Every exported seller's key, read on a thread from the end of the read
   * stage (seller_keys_start) so the write stage does not wait for them:
   * seller s's key is sk_keys[sk_off[s] .. sk_off[s + 1]), absent when
   * sk_gone[s] (deleted before the thread's read). Joined (sk_reading
   * false) before anyone else uses them; sk_failed when the thread could
   * not read them all. */
  pthread_t sk_thread;
  bool sk_reading, sk_failed;
  char *sk_keys;
  size_t *sk_off;
  uint8_t *sk_gone;
  size_t n_labels, cap_labels;
  int64_t singletons, largest;
  double t_ms[ST__COUNT];
  int64_t t0, t_stage;
  int stage;
} job;

/* ---- progress ------------------------------------------------------------ */

void gd_worker_progress(int fd, atomic_int *cancel, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  if (fd < 0)
    return;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n > sizeof buf - 2)
    n = (int)sizeof buf - 2;
  for (int i = 0; i < n; i++)
    if (buf[i] == '\n' || buf[i] == '\r')
      buf[i] = ' ';
  buf[n++] = '\n';
  for (int off = 0; off < n;) {
    ssize_t w = write(fd, buf + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      if (errno == EPIPE && cancel)
        atomic_store(cancel, 1);
      return;
    }
    off += (int)w;
  }
}

static bool cancelled(const job *j) {
  return j->o->cancel && atomic_load(j->o->cancel) != 0;
}

static void stage_begin(job *j, int st) {
  j->stage = st;
  j->t_stage = gd_now_ns();
  gd_worker_progress(j->o->progress_fd, j->o->cancel, "stage %s %.2f", stage_names[st],
                     stage_start[st]);
}

/* Ends the current stage; GD_ECANCELLED if a cancel arrived meanwhile. */
static int stage_end(job *j, gd_err *err) {
  double ms = (double)(gd_now_ns() - j->t_stage) / 1e6;
  j->t_ms[j->stage] = ms;
  gd_worker_progress(j->o->progress_fd, j->o->cancel, "timing %s %.3f", stage_names[j->stage],
                     ms / 1e3);
  if (j->stage != ST_WRITE && cancelled(j))
    return gd_err_set(err, GD_ECANCELLED, "cancelled during %s", stage_names[j->stage]);
  return GD_OK;
}

static void info(job *j, const char *key, long long v) {
  gd_worker_progress(j->o->progress_fd, j->o->cancel, "info %s %lld", key, v);
}

static int alg_err(const gd_alg_error *e, gd_alg_status st, gd_err *err, const char *what) {
  static const int map[GD_ALG__COUNT] = {
#define XX(name, desc, gd) [GD_ALG_##name] = gd,
      GD_ALG_STATUS_MAP(XX)
#undef XX
  };
  int code = st >= 0 && st < GD_ALG__COUNT ? map[st] : GD_EINTERNAL;
  if (code == GD_ECANCELLED)
    return gd_err_set(err, code, "cancelled during %s", what);
  return gd_err_set(err, code, "%s: %s", what, e->msg[0] ? e->msg : gd_alg_strerror(st));
}

/* ---- stages ------------------------------------------------------------- */

static int do_open(job *j, gd_err *err) {
  char path[4096];
  struct stat sb;
  snprintf(path, sizeof path, "%s/data.mdb", j->o->data_dir);
  if (stat(path, &sb) != 0)
    return gd_err_set(err, GD_ENOTFOUND, "no graphd data in %s (%s)", j->o->data_dir,
                      strerror(errno));
  gd_store_opts so = {.path = j->o->data_dir, .map_size_max = j->o->map_size_max};
  int rc = gd_store_open(&so, &j->store, err);
  if (rc)
    return rc;
  /* gd_store_open cleared dead readers once; count any left for the log. */
  j->stale_readers = gd_store_reader_check(j->store);
  info(j, "stale_readers", j->stale_readers);
  return GD_OK;
}

static int64_t seller_index(const gd_graph_export *x, uint64_t id) {
  return gd_u64_index(x->seller_ids, x->n_sellers, id);
}

typedef struct prev_ctx {
  job *j;
  int64_t pos;
  bool bad;
} prev_ctx;

/* Aligns previous assignments (ascending seller ids) with the export's
 * sellers (ascending): a merge. */
static int prev_visit(void *ctx, const uint64_t *sellers, const uint64_t *clusters, size_t n) {
  prev_ctx *c = ctx;
  const gd_graph_export *x = &c->j->x;
  for (size_t i = 0; i < n; i++) {
    while (c->pos < x->n_sellers && x->seller_ids[c->pos] < sellers[i])
      c->pos++;
    if (c->pos == x->n_sellers)
      return 1;
    if (x->seller_ids[c->pos] == sellers[i]) {
      if (clusters[i] > INT64_MAX) {
        c->bad = true;
        return 1;
      }
      c->j->prev[c->pos] = (int64_t)clusters[i];
    }
  }
  return 0;
}

/* The hex of n bytes into out (2n + 1 bytes). */
static void hex_of(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The image a manifest names ("image": {"txn", "nonce"}), or txn 0. */
static gd_image_id manifest_image(json_object *m) {
  gd_image_id id = {0};
  json_object *im, *t, *n;
  if (!m || !json_object_object_get_ex(m, "image", &im) ||
      !json_object_object_get_ex(im, "txn", &t) || !json_object_object_get_ex(im, "nonce", &n))
    return id;
  const char *h = json_object_get_string(n);
  if (!h || strlen(h) != 32)
    return id;
  for (int i = 0; i < 16; i++) {
    unsigned v;
    if (sscanf(h + 2 * i, "%2x", &v) != 1)
      return (gd_image_id){0};
    id.nonce[i] = (uint8_t)v;
  }
  id.txn = json_object_get_uint64(t);
  return id;
}

/* The previous snapshot's manifest: its id, the id counter, whether its
 * spec is this job's (warm_start auto), its image. Before the export. */
static int read_previous_manifest(job *j, gd_rtxn *r, gd_err *err) {
  gd_snapshot_view sv;
  int64_t want = j->spec->previous;
  if (want < 0)
    return GD_OK;
  int rc = gd_store_snapshot_get(r, (uint64_t)want, &sv, err);
  if (rc == GD_EPRECONDITION && want == 0)
    return GD_OK; /* "latest" and there is none: a first snapshot */
  if (rc)
    return gd_err_prefix(err, "previous snapshot");
  j->prev_snap = sv.id;

  /* Fresh ids continue from the previous manifest's counter, so an id is
   * never reused, even one whose cluster has since dissolved. */
  json_tokener *tok = json_tokener_new();
  if (!tok)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  json_object *m =
      sv.manifest_len <= INT32_MAX
          ? json_tokener_parse_ex(tok, (const char *)sv.manifest, (int)sv.manifest_len)
          : NULL;
  json_tokener_free(tok);
  json_object *st, *nid, *pspec;
  if (m && json_object_object_get_ex(m, "stable_ids", &st) &&
      json_object_object_get_ex(st, "next_cluster_id", &nid))
    j->next_cluster_id = json_object_get_int64(nid);
  if (m && j->spec->warm_start == GD_WARM_AUTO && json_object_object_get_ex(m, "spec", &pspec)) {
    json_object *mine = gd_worker_spec_json(j->spec);
    j->prev_same_spec = gd_worker_spec_same_for_warm(mine, pspec);
    json_object_put(mine);
  }
  j->prev_image = manifest_image(m);
  json_object_put(m);
  return GD_OK;
}

/* The previous snapshot's assignments aligned with the export's sellers. */
static int read_previous_assign(job *j, gd_rtxn *r, gd_err *err) {
  if (!j->prev_snap)
    return GD_OK;
  if (!(j->prev = malloc((size_t)(j->x.n_sellers ? j->x.n_sellers : 1) * sizeof *j->prev)))
    return gd_err_set(err, GD_ENOMEM, "out of memory for previous assignments");
  for (int64_t i = 0; i < j->x.n_sellers; i++)
    j->prev[i] = -1;
  prev_ctx c = {j, 0, false};
  int rc = gd_store_assignments_visit(r, j->prev_snap, 0, prev_visit, &c, NULL, err);
  if (rc)
    return gd_err_prefix(err, "previous snapshot %llu", (unsigned long long)j->prev_snap);
  if (c.bad)
    return gd_err_set(err, GD_EINTERNAL, "previous snapshot %llu: cluster id out of range",
                      (unsigned long long)j->prev_snap);
  return GD_OK;
}

/* Whether the spec lets this job start warm (warm_decide also needs a
 * previous membership covering today's sellers, known after the export). */
static bool warm_allowed(const job *j) {
  const gd_worker_spec *s = j->spec;
  if (s->comm.algo != GD_COMM_LEIDEN_CPM && s->comm.algo != GD_COMM_LEIDEN_MODULARITY)
    return false;
  if (!j->prev_snap || s->warm_start == GD_WARM_OFF || s->import_path)
    return false;
  return s->warm_start == GD_WARM_ON || j->prev_same_spec;
}

static void image_path(const job *j, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/%s/%s", j->o->data_dir, GD_IMAGE_DIR, name);
}

typedef struct image_load {
  const char *path;
  const gd_image_id *want;
  gd_graph_export x;
  int rc;
  gd_err err;
} image_load;

static void *image_load_main(void *arg) {
  image_load *l = arg;
  l->rc = gd_export_image_load(l->path, l->want, &l->x, &l->err);
  return NULL;
}

/*
 * A warm job's export: the previous snapshot's image patched up to r. The
 * image loads (and its SHA-256 is checked) on a thread while this one
 * reads the changes from the store; the patched export's checksum is left
 * to the image thread (image_save_main). Returns false, with
 * j->image_note saying why, when the job must read the whole graph
 * instead (no image, another's, damaged, the change log reset since).
 */
static bool export_from_image(job *j, gd_rtxn *r) {
  char path[4200];
  gd_err e;
  gd_graph_changes *c = NULL;
  gd_err_clear(&e);
  if (!j->prev_image.txn) {
    snprintf(j->image_note, sizeof j->image_note, "snapshot %llu has no image",
             (unsigned long long)j->prev_snap);
    return false;
  }
  gd_image_path(j->o->data_dir, j->prev_snap, path, sizeof path);
  image_load l = {.path = path, .want = &j->prev_image};
  pthread_t t;
  bool threaded = pthread_create(&t, NULL, image_load_main, &l) == 0;
  if (!threaded)
    image_load_main(&l);
  int rc = gd_store_changes_read(r, j->prev_image.txn, &c, &e);
  if (threaded)
    pthread_join(t, NULL);
  if (!rc && l.rc) {
    rc = l.rc;
    e = l.err;
  }
  if (!rc && !(rc = gd_graph_export_apply(&l.x, c, &e))) {
    gd_graph_changes_stats(c, &j->patch);
    j->x = l.x;
  } else {
    gd_graph_export_free(&l.x);
    snprintf(j->image_note, sizeof j->image_note, "%s", e.msg);
  }
  gd_graph_changes_free(c);
  return rc == GD_OK;
}

static void *image_save_main(void *arg) {
  job *j = arg;
  j->image_saved =
      (j->x.checksum[0] || gd_graph_export_checksum(&j->x, &j->image_err) == GD_OK) &&
      gd_export_image_save(&j->x, &j->image, j->image_tmp, &j->image_err) == GD_OK;
  return NULL;
}

/* Starts saving the export as this job's image (open window only), under
 * a temporary name until the snapshot commits. Best effort. */
static void image_save_start(job *j) {
  char dir[4200];
  if (j->ties_only || j->x.since || j->x.until)
    return;
  snprintf(dir, sizeof dir, "%s/%s", j->o->data_dir, GD_IMAGE_DIR);
  if ((mkdir(dir, 0750) != 0 && errno != EEXIST) ||
      getrandom(j->image.nonce, sizeof j->image.nonce, 0) != (ssize_t)sizeof j->image.nonce) {
    gd_err_set(&j->image_err, GD_EIO, "image: %s: %s", dir, strerror(errno));
    return;
  }
  j->image.txn = j->x.txn;
  char hex[33], name[64];
  hex_of(j->image.nonce, 16, hex);
  snprintf(name, sizeof name, "job-%s.img", hex);
  image_path(j, name, j->image_tmp, sizeof j->image_tmp);
  j->image_saving = pthread_create(&j->image_thread, NULL, image_save_main, j) == 0;
}

/* Joins the image thread; then the export has its checksum (a patched
 * export got it there), or an error. */
static int image_save_join(job *j, gd_err *err) {
  if (j->image_saving) {
    pthread_join(j->image_thread, NULL);
    j->image_saving = false;
    if (!j->image_saved)
      gd_worker_progress(j->o->progress_fd, j->o->cancel, "info image_unsaved %s",
                         j->image_err.msg);
  }
  return j->x.checksum[0] ? GD_OK : gd_graph_export_checksum(&j->x, err);
}

/*
 * After the commit: this job's image takes the snapshot's name, and the
 * images of other snapshots than this one and its previous one go, as do
 * temporary files of jobs that did not finish. Best effort: a missing
 * image only makes the next job read the whole graph.
 */
static void image_settle(job *j, uint64_t snap) {
  char dir[4200], keep_new[4200] = "", keep_prev[4200] = "", path[4500];
  snprintf(dir, sizeof dir, "%s/%s", j->o->data_dir, GD_IMAGE_DIR);
  if (j->image_saved && gd_image_path(j->o->data_dir, snap, keep_new, sizeof keep_new) &&
      rename(j->image_tmp, keep_new) != 0)
    keep_new[0] = 0;
  if (j->prev_snap)
    gd_image_path(j->o->data_dir, j->prev_snap, keep_prev, sizeof keep_prev);
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    const char *n = de->d_name;
    size_t len = strlen(n);
    if (n[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, n);
    if (!strcmp(path, keep_new) || !strcmp(path, keep_prev))
      continue;
    if ((len > 4 && !strcmp(n + len - 4, ".img")) || (len > 8 && !strcmp(n + len - 8, ".img.tmp")))
      unlink(path);
  }
  if (d)
    closedir(d);
  if (!j->image_saved && j->image_tmp[0])
    unlink(j->image_tmp);
  j->image_tmp[0] = 0;
}

/* ---- seller keys --------------------------------------------------------- */

/* The seller-key thread: every exported seller's key, in its own read
 * transaction, in id order. The map's pages it touched are dropped every
 * SK_DROP_EVERY sellers and at the end, so the resident set does not grow
 * by the records table while the job clusters. Stops early on a cancel. */
#define SK_DROP_EVERY 131072
static void *seller_keys_main(void *arg) {
  job *j = arg;
  const gd_graph_export *x = &j->x;
  size_t n = (size_t)x->n_sellers, cap = n * 16 + 64, used = 0;
  gd_rtxn *r = NULL;
  gd_err e, *err = &e; /* only that it failed matters: read_names then reads them */
  int rc = GD_OK;
  if (!(j->sk_keys = malloc(cap)) || !(j->sk_off = malloc((n + 1) * sizeof *j->sk_off)) ||
      !(j->sk_gone = calloc(n ? n : 1, 1))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory for the sellers' keys");
    goto out;
  }
  if ((rc = gd_store_read_begin(j->store, &r, err)))
    goto out;
  j->sk_off[0] = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    gd_ref ref = {.id = x->seller_ids[i]};
    gd_entity_view v;
    if ((i & 4095) == 4095 && cancelled(j)) {
      rc = gd_err_set(err, GD_ECANCELLED, "cancelled");
      break;
    }
    if (i && i % SK_DROP_EVERY == 0)
      (void)gd_store_drop_resident(j->store, NULL);
    rc = gd_store_get(r, &ref, &v, err);
    if (rc == GD_ENOTFOUND) {
      gd_err_clear(err);
      rc = GD_OK;
      j->sk_gone[i] = 1;
      v.key.n = 0;
    } else if (rc) {
      break;
    }
    if (used + v.key.n > cap) {
      size_t ncap = 2 * cap + v.key.n;
      char *nk = realloc(j->sk_keys, ncap);
      if (!nk) {
        rc = gd_err_set(err, GD_ENOMEM, "out of memory for the sellers' keys");
        break;
      }
      j->sk_keys = nk;
      cap = ncap;
    }
    memcpy(j->sk_keys + used, v.key.p, v.key.n);
    used += v.key.n;
    j->sk_off[i + 1] = used;
  }
out:
  gd_store_read_end(r);
  (void)gd_store_drop_resident(j->store, NULL);
  j->sk_failed = rc != GD_OK;
  return NULL;
}

/* Starts the seller-key thread; without one (or when it failed), read_names
 * reads the keys itself (sk_off NULL). */
static void seller_keys_start(job *j) {
  if (j->ties_only || !j->x.n_sellers)
    return;
  j->sk_reading = pthread_create(&j->sk_thread, NULL, seller_keys_main, j) == 0;
}

/* Joins the seller-key thread. When it failed, its keys are dropped and
 * read_names reads them itself, so any error is that read's. */
static void seller_keys_join(job *j) {
  if (!j->sk_reading)
    return;
  pthread_join(j->sk_thread, NULL);
  j->sk_reading = false;
  if (j->sk_failed) {
    free(j->sk_off);
    j->sk_off = NULL;
  }
}

/* The projection's view of an export: the arrays match (snapshot.h). */
static gd_projection_input projection_input(const gd_graph_export *x) {
  return (gd_projection_input){
      .n_sellers = x->n_sellers,
      .n_entities = x->n_entities,
      .ent_type = x->ent_type,
      .ent_off = x->ent_off,
      .ent_sellers = x->ent_sellers,
      .ent_n = x->ent_n,
      .n_links = x->n_links,
      .link_a = x->link_a,
      .link_b = x->link_b,
      .population = (uint64_t)x->n_sellers,
  };
}

/*
 * A windowed run weighs entities by what they are over all time (their
 * seller count and their corroboration, evidence.h), and follows only the
 * window's links: so first the whole graph is exported in the same read
 * transaction, its corroboration computed, and the values kept by entity
 * id (the export is freed before the window's is read).
 */
static int read_all_time_corroboration(job *j, gd_rtxn *r, gd_err *err) {
  gd_graph_export all;
  int rc = gd_store_export_graph(r, 0, 0, &all, err);
  if (rc)
    return rc;
  gd_projection_input in = projection_input(&all);
  double *c = malloc((size_t)(all.n_entities ? all.n_entities : 1) * sizeof *c);
  gd_alg_error ae = {0};
  gd_alg_status st = c ? gd_projection_corroboration(&in, &j->spec->ev, c, &ae) : GD_ALG_NOMEM;
  if (st != GD_ALG_OK) {
    free(c);
    gd_graph_export_free(&all);
    return alg_err(&ae, st, err, "corroboration");
  }
  j->corr_ids = all.ent_ids; /* kept: ascending, as c */
  all.ent_ids = NULL;
  j->corr_all = c;
  j->corr_n = all.n_entities;
  gd_graph_export_free(&all);
  return GD_OK;
}

/* Maps the all-time corroboration onto the window's entities (both id
 * lists ascending: a merge). */
static int map_corroboration(job *j, gd_err *err) {
  const gd_graph_export *x = &j->x;
  if (!(j->corr = calloc((size_t)(x->n_entities ? x->n_entities : 1), sizeof *j->corr)))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  int64_t a = 0;
  for (int64_t e = 0; e < x->n_entities; e++) {
    while (a < j->corr_n && j->corr_ids[a] < x->ent_ids[e])
      a++;
    if (a < j->corr_n && j->corr_ids[a] == x->ent_ids[e])
      j->corr[e] = j->corr_all[a];
  }
  free(j->corr_ids);
  free(j->corr_all);
  j->corr_ids = NULL;
  j->corr_all = NULL;
  return GD_OK;
}

static int do_read(job *j, gd_err *err) {
  gd_rtxn *r;
  const gd_worker_spec *s = j->spec;
  j->read_at = gd_now_unix_ns();
  int rc = gd_store_read_begin(j->store, &r, err);
  if (rc)
    return rc;
  bool windowed = s->since || s->until;
  if (!j->ties_only && (rc = read_previous_manifest(j, r, err)))
    goto out;
  if (windowed && s->ev.rule == GD_EV_CORROBORATED &&
      (rc = read_all_time_corroboration(j, r, err)))
    goto out;
  if (!windowed && !j->ties_only && warm_allowed(j)) {
    j->from_image = export_from_image(j, r);
    if (j->from_image) {
      info(j, "image_changed_ids", (long long)j->patch.changed);
    } else {
      gd_worker_progress(j->o->progress_fd, j->o->cancel, "info image_unused %s", j->image_note);
    }
  }
  if (!j->from_image && (rc = gd_store_export_graph(r, s->since, s->until, &j->x, err)))
    goto out;
  if (j->corr_all && (rc = map_corroboration(j, err)))
    goto out;
  info(j, "sellers", j->x.n_sellers);
  info(j, "entities", j->x.n_entities);
  info(j, "links", j->x.n_links);
  if ((uint64_t)j->x.n_sellers > j->o->max_sellers) {
    rc = gd_err_set(err, GD_ERESOURCE, "%lld sellers exceed the limit of %llu (--max-sellers; graphd --cluster-max-sellers)",
                    (long long)j->x.n_sellers, (unsigned long long)j->o->max_sellers);
    goto out;
  }
  if (!(j->flagged = calloc((size_t)(j->x.n_sellers ? j->x.n_sellers : 1), 1))) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t l = 0; l < s->n_flagged; l++) {
    uint64_t *ids;
    size_t n;
    if ((rc = gd_store_label_members(r, gd_str_c(s->flagged[l]), &ids, &n, err)))
      goto out;
    for (size_t i = 0; i < n; i++) {
      int64_t k = seller_index(&j->x, ids[i]);
      if (k >= 0 && !j->flagged[k]) {
        j->flagged[k] = 1;
        j->flagged_total++;
      }
    }
    free(ids);
  }
  rc = read_previous_assign(j, r, err);
  if (!rc && j->prev_snap)
    info(j, "previous_snapshot", (long long)j->prev_snap);
out:
  gd_store_read_end(r);
  /* The export touched much of the data file; what the job holds from
   * here on is its arrays. Best effort: a failure only leaves RSS high. */
  if (!rc)
    info(j, "map_pages_dropped", gd_store_drop_resident(j->store, NULL) == GD_OK);
  if (!rc) {
    image_save_start(j);
    seller_keys_start(j);
  }
  return rc;
}

static int do_project(job *j, gd_err *err) {
  const gd_graph_export *x = &j->x;
  if (!(j->context = calloc((size_t)(x->n_entities ? x->n_entities : 1), 1)))
    return gd_err_set(err, GD_ENOMEM, "out of memory (%lld entities)", (long long)x->n_entities);
  gd_projection_input in = projection_input(x);
  in.ent_context_out = j->context;
  in.ent_corroboration = j->corr;
  gd_alg_error ae = {0};
  gd_alg_status st =
      gd_projection_build(&in, &j->spec->ev, j->spec->min_tie_weight, &j->g, &j->ps, &ae);
  if (st != GD_ALG_OK)
    return alg_err(&ae, st, err, "projection");
  /* Direct links are in the graph now; summaries need the rest (the image
   * thread needs them all: they go with the export then). */
  if (!j->image_saving) {
    free(j->x.link_a);
    free(j->x.link_b);
    j->x.link_a = j->x.link_b = NULL;
  }
  info(j, "ties", j->g.m);
  info(j, "hubs_skipped", j->ps.hubs_skipped);
  if ((uint64_t)j->g.m > j->o->max_ties)
    return gd_err_set(err, GD_ERESOURCE, "%lld ties exceed the limit of %llu (--max-ties; graphd --cluster-max-ties)",
                      (long long)j->g.m, (unsigned long long)j->o->max_ties);
  return GD_OK;
}

/*
 * Warm or cold (worker.h, warm_start): warm needs Leiden, a previous
 * snapshot with at least one of today's sellers assigned, and either
 * warm_start on, or auto and the previous snapshot made with the same spec
 * (read_previous compared them).
 */
static bool warm_decide(const job *j) {
  if (!j->prev || !warm_allowed(j))
    return false;
  for (int64_t i = 0; i < j->x.n_sellers; i++)
    if (j->prev[i] >= 0)
      return true;
  return false;
}

/* The start partition from the previous snapshot: previous cluster ids
 * numbered densely in order of first appearance, -1 (a singleton of its
 * own: community.h) for sellers the previous snapshot did not assign. */
static int warm_labels(const job *j, int64_t **ret, gd_err *err) {
  int64_t n = j->x.n_sellers;
  int64_t *lab = malloc((size_t)(n ? n : 1) * sizeof *lab);
  gd_u64map ids = GD_U64MAP_INIT;
  if (!lab || !gd_u64map_reserve(&ids, 1024)) {
    free(lab);
    return gd_err_set(err, GD_ENOMEM, "out of memory for the start partition");
  }
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    if (j->prev[i] < 0) {
      lab[i] = -1;
      continue;
    }
    bool fresh;
    uint64_t *v = gd_u64map_put(&ids, (uint64_t)j->prev[i] + 1, &fresh);
    if (!v) {
      free(lab);
      gd_u64map_free(&ids);
      return gd_err_set(err, GD_ENOMEM, "out of memory for the start partition");
    }
    if (fresh)
      *v = (uint64_t)k++;
    lab[i] = (int64_t)*v;
  }
  gd_u64map_free(&ids);
  *ret = lab;
  return GD_OK;
}

/* The engine's label of a row as a non-zero map key; *zero_key stands
 * for the one label that maps to 0. */
static uint64_t label_key(int64_t label) { return (uint64_t)label ^ UINT64_C(0x8000000000000000); }

/*
 * The cluster stage of an import (spec key import): the membership file's
 * rows become the membership, the engine's labels numbered in order of
 * first appearance, sellers no row names singletons; then canonical.
 */
static int do_import(job *j, gd_err *err) {
  const char *path = j->spec->import_path;
  int64_t n = j->x.n_sellers;
  FILE *f = fopen(path, "rb");
  if (!f)
    return gd_err_set(err, errno == ENOENT ? GD_EPRECONDITION : GD_EIO,
                      "import: %s: %s%s", path, strerror(errno),
                      errno == ENOENT ? " (the daemon restarted before the import ran; "
                                        "import again)"
                                      : "");
  char magic[8];
  uint64_t rows = 0;
  int64_t *lab = malloc((size_t)(n ? n : 1) * sizeof *lab);
  gd_u64map ids = GD_U64MAP_INIT;
  int rc = GD_OK;
  bool have_zero = false;
  int64_t zero_id = 0, k = 0;
  if (!lab) {
    fclose(f);
    return gd_err_set(err, GD_ENOMEM, "out of memory for the imported membership");
  }
  for (int64_t i = 0; i < n; i++)
    lab[i] = -1;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, GD_IMPORT_MAGIC, 8) != 0 ||
      fread(&rows, sizeof rows, 1, f) != 1) {
    rc = gd_err_set(err, GD_EINTERNAL, "import: %s: not a membership file", path);
    goto out;
  }
  for (uint64_t r = 0; r < rows; r++) {
    gd_import_row row;
    if (fread(&row, sizeof row, 1, f) != 1) {
      rc = gd_err_set(err, GD_EINTERNAL, "import: %s: ends after %llu of %llu rows", path,
                      (unsigned long long)r, (unsigned long long)rows);
      goto out;
    }
    if ((r & 0xffff) == 0 && cancelled(j)) {
      rc = gd_err_set(err, GD_ECANCELLED, "cancelled during cluster");
      goto out;
    }
    int64_t s = seller_index(&j->x, row.seller);
    if (s < 0) {
      rc = gd_err_set(err, GD_EINVALID,
                      "import row %llu: seller %llu is not a seller of the graph read (deleted "
                      "since the import was checked, or outside spec.window)",
                      (unsigned long long)r, (unsigned long long)row.seller);
      goto out;
    }
    if (lab[s] >= 0) {
      rc = gd_err_set(err, GD_EINVALID, "import row %llu: seller %llu given twice",
                      (unsigned long long)r, (unsigned long long)row.seller);
      goto out;
    }
    uint64_t key = label_key(row.label);
    if (!key) {
      if (!have_zero) {
        zero_id = k++;
        have_zero = true;
      }
      lab[s] = zero_id;
      continue;
    }
    bool fresh;
    uint64_t *v = gd_u64map_put(&ids, key, &fresh);
    if (!v) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory for the imported membership");
      goto out;
    }
    if (fresh)
      *v = (uint64_t)k++;
    lab[s] = (int64_t)*v;
  }
  if (fgetc(f) != EOF) {
    rc = gd_err_set(err, GD_EINTERNAL, "import: %s: more than %llu rows", path,
                    (unsigned long long)rows);
    goto out;
  }
  j->import_rows = rows;
  for (int64_t i = 0; i < n; i++)
    j->import_unassigned += lab[i] < 0;
  gd_alg_error ae = {0};
  gd_alg_status st = gd_membership_canonical(lab, n, lab, &j->cr.n_clusters, &ae);
  if (st == GD_ALG_OK && j->g.m > 0)
    st = gd_comm_modularity(&j->g, lab, 1.0, &j->cr.modularity, &ae);
  else
    j->cr.modularity = NAN;
  if (st != GD_ALG_OK) {
    rc = alg_err(&ae, st, err, "imported membership");
    goto out;
  }
  j->cr.n = n;
  j->cr.membership = lab;
  j->cr.quality = NAN;
  lab = NULL;
  info(j, "import_rows", (long long)rows);
  info(j, "clusters", j->cr.n_clusters);
out:
  free(lab);
  gd_u64map_free(&ids);
  fclose(f);
  return rc;
}

static int do_cluster(job *j, gd_err *err) {
  if (j->spec->import_path)
    return do_import(j, err);
  if (j->g.n == 0) { /* empty graph: nothing for igraph to do */
    j->cr.n = 0;
    j->cr.membership = malloc(sizeof *j->cr.membership);
    j->cr.quality = j->cr.modularity = NAN;
    return j->cr.membership ? GD_OK : gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  gd_comm_params p = j->spec->comm;
  int64_t *start = NULL;
  j->warm = warm_decide(j);
  if (j->warm) {
    int rc = warm_labels(j, &start, err);
    if (rc)
      return rc;
    p.initial = start;
  }
  info(j, "warm_started", j->warm);
  gd_alg_ctl ctl = {.seed = j->spec->seed, .cancel = j->o->cancel};
  gd_alg_error ae = {0};
  gd_alg_status st = gd_comm_run(&j->g, &p, &ctl, &j->cr, &ae);
  free(start);
  if (st != GD_ALG_OK)
    return alg_err(&ae, st, err, gd_comm_algo_name(j->spec->comm.algo));
  info(j, "clusters", j->cr.n_clusters);
  return GD_OK;
}

static int do_match(job *j, gd_err *err) {
  int64_t next = j->next_cluster_id > 1 ? j->next_cluster_id : 1;
  gd_alg_error ae = {0};
  if (j->x.n_sellers == 0) {
    j->next_cluster_id = next;
    return GD_OK;
  }
  gd_alg_status st = gd_match_snapshots(j->x.n_sellers, j->prev, j->cr.membership,
                                        GD_MATCH_MIN_PART_SIZE, &next, &j->mr, &ae);
  if (st != GD_ALG_OK)
    return alg_err(&ae, st, err, "stable ids");
  j->have_match = true;
  j->next_cluster_id = next;
  return GD_OK;
}

/* Better supply source first: score, then users, then the smaller id
 * (entities are offered in ascending id order, so "not better" keeps the
 * earlier one ahead on a full tie). */
static bool top_better(const top_ent *a, const top_ent *b) {
  if (a->score != b->score)
    return a->score > b->score;
  return a->users > b->users;
}

static void top_insert(top_ent *t, uint8_t *n, const top_ent *e) {
  int k = *n;
  if (k == GD_SUMMARY_TOP && !top_better(e, &t[k - 1]))
    return;
  int i = k < GD_SUMMARY_TOP ? k : GD_SUMMARY_TOP - 1;
  while (i > 0 && top_better(e, &t[i - 1])) {
    t[i] = t[i - 1];
    i--;
  }
  t[i] = *e;
  if (k < GD_SUMMARY_TOP)
    (*n)++;
}

typedef struct idpair {
  uint64_t id;
  int64_t c;
} idpair;

static int cmp_idpair(const void *a, const void *b) {
  uint64_t x = ((const idpair *)a)->id, y = ((const idpair *)b)->id;
  return (x > y) - (x < y);
}

typedef struct itie {
  int64_t u, v; /* seller indices, u < v */
  double w;
} itie;

static int cmp_itie(const void *pa, const void *pb) {
  const itie *a = pa, *b = pb;
  if (a->w != b->w)
    return a->w > b->w ? -1 : 1;
  if (a->u != b->u)
    return a->u < b->u ? -1 : 1;
  return (a->v > b->v) - (a->v < b->v);
}

static int cmp_itie_uv(const void *pa, const void *pb) {
  const itie *a = pa, *b = pb;
  if (a->u != b->u)
    return a->u < b->u ? -1 : 1;
  return (a->v > b->v) - (a->v < b->v);
}

static int64_t uf_find(int64_t *parent, int64_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

/*
 * Members and ties of every cluster, for snap_member and snap_tie. pos[c]:
 * cluster index c's position in cluster_ids order. Members: a stable
 * counting sort of the sellers (ascending store id) by position. Ties: a
 * maximum spanning forest of the internal ties (Kruskal: strongest first,
 * equal weights by seller index; deterministic), so each connected
 * cluster keeps size - 1 ties, those that hold it together most strongly.
 * O(n + m log m) for m internal ties.
 */
static int do_members_ties(job *j, const int64_t *pos, gd_err *err) {
  const gd_graph_export *x = &j->x;
  const int64_t n = x->n_sellers, k = (int64_t)j->n_clusters;
  const int64_t *mem = j->cr.membership;
  int64_t *parent = NULL;
  itie *it = NULL;
  size_t *fill = NULL;
  int rc = GD_OK;
  j->members = malloc((size_t)(n ? n : 1) * sizeof *j->members);
  j->member_off = calloc((size_t)k + 1, sizeof *j->member_off);
  j->tie_off = calloc((size_t)k + 1, sizeof *j->tie_off);
  fill = malloc(((size_t)k + 1) * sizeof *fill);
  if (!j->members || !j->member_off || !j->tie_off || !fill)
    goto nomem;
  for (int64_t s = 0; s < n; s++)
    j->member_off[pos[mem[s]] + 1]++;
  for (int64_t i = 0; i < k; i++)
    j->member_off[i + 1] += j->member_off[i];
  memcpy(fill, j->member_off, ((size_t)k + 1) * sizeof *fill);
  for (int64_t s = 0; s < n; s++)
    j->members[fill[pos[mem[s]]]++] = x->seller_ids[s];

  int64_t m = 0;
  for (int64_t v = 0; v < n; v++)
    for (int64_t p = j->g.off[v]; p < j->g.off[v + 1]; p++)
      m += j->g.nbr[p] > v && mem[j->g.nbr[p]] == mem[v];
  it = malloc((size_t)(m ? m : 1) * sizeof *it);
  parent = malloc((size_t)(n ? n : 1) * sizeof *parent);
  j->ties = malloc((size_t)(n ? n : 1) * sizeof *j->ties);
  if (!it || !parent || !j->ties)
    goto nomem;
  int64_t q = 0;
  for (int64_t v = 0; v < n; v++)
    for (int64_t p = j->g.off[v]; p < j->g.off[v + 1]; p++)
      if (j->g.nbr[p] > v && mem[j->g.nbr[p]] == mem[v])
        it[q++] = (itie){v, j->g.nbr[p], j->g.w[p]};
  if (cancelled(j)) {
    rc = gd_err_set(err, GD_ECANCELLED, "cancelled during summarize");
    goto out;
  }
  qsort(it, (size_t)m, sizeof *it, cmp_itie);
  for (int64_t s = 0; s < n; s++)
    parent[s] = s;
  int64_t kept = 0;
  for (int64_t i = 0; i < m; i++) {
    int64_t a = uf_find(parent, it[i].u), b = uf_find(parent, it[i].v);
    if (a == b)
      continue;
    parent[a] = b;
    it[kept++] = it[i];
  }
  /* Group by cluster position, then (u, v) within: the store's row order. */
  for (int64_t i = 0; i < kept; i++)
    j->tie_off[pos[mem[it[i].u]] + 1]++;
  for (int64_t i = 0; i < k; i++)
    j->tie_off[i + 1] += j->tie_off[i];
  memcpy(fill, j->tie_off, ((size_t)k + 1) * sizeof *fill);
  itie *tmp = malloc((size_t)(kept ? kept : 1) * sizeof *tmp);
  if (!tmp)
    goto nomem;
  for (int64_t i = 0; i < kept; i++)
    tmp[fill[pos[mem[it[i].u]]]++] = it[i];
  for (int64_t c = 0; c < k; c++)
    qsort(tmp + j->tie_off[c], j->tie_off[c + 1] - j->tie_off[c], sizeof *tmp, cmp_itie_uv);
  for (int64_t i = 0; i < kept; i++)
    j->ties[i] = (gd_snap_tie){x->seller_ids[tmp[i].u], x->seller_ids[tmp[i].v], tmp[i].w};
  free(tmp);
  goto out;
nomem:
  rc = gd_err_set(err, GD_ENOMEM, "out of memory for cluster members and ties");
out:
  free(parent);
  free(it);
  free(fill);
  return rc;
}

static int cmp_row(const void *a, const void *b) { return memcmp(a, b, GD_ORDER_ROW); }

static int do_summarize(job *j, gd_err *err) {
  const gd_graph_export *x = &j->x;
  const int64_t n = x->n_sellers, k = j->cr.n_clusters;
  const int64_t *mem = j->cr.membership;
  int rc = GD_OK;
  int64_t *size = NULL, *flg = NULL, *slot = NULL, *cnt = NULL, *touched = NULL;
  double *win = NULL, *wout = NULL;
  top_ent *top = NULL;
  uint8_t *ntop = NULL;
  idpair *order = NULL;
  size_t kk = (size_t)(k ? k : 1);

  if (n == 0)
    goto done_empty;
  size = calloc(kk, sizeof *size);
  flg = calloc(kk, sizeof *flg);
  slot = malloc(kk * sizeof *slot);
  cnt = calloc(kk, sizeof *cnt);
  touched = malloc(kk * sizeof *touched);
  win = calloc(kk, sizeof *win);
  wout = calloc(kk, sizeof *wout);
  order = malloc(kk * sizeof *order);
  j->assign = malloc((size_t)n * sizeof *j->assign);
  if (!size || !flg || !slot || !cnt || !touched || !win || !wout || !order || !j->assign)
    goto nomem;

  for (int64_t s = 0; s < n; s++) {
    size[mem[s]]++;
    flg[mem[s]] += j->flagged[s];
    j->assign[s] = (uint64_t)j->mr.new_id[mem[s]];
  }
  j->base_rate = n ? (double)j->flagged_total / (double)n : 0.0;
  /* Tie weight inside and across, from the evidence graph, in CSR order
   * (deterministic sums): an inner edge once (u < v), a crossing edge
   * once for each side's cluster. */
  for (int64_t v = 0; v < n; v++) {
    for (int64_t p = j->g.off[v]; p < j->g.off[v + 1]; p++) {
      int64_t u = j->g.nbr[p];
      if (mem[u] == mem[v]) {
        if (u > v)
          win[mem[v]] += j->g.w[p];
      } else {
        wout[mem[v]] += j->g.w[p];
      }
    }
  }
  /* Supply sources only for clusters that can share one (>= 2 sellers). */
  int64_t nslots = 0;
  j->singletons = 0;
  j->largest = 0;
  for (int64_t c = 0; c < k; c++) {
    slot[c] = size[c] >= 2 ? nslots++ : -1;
    j->singletons += size[c] == 1;
    if (size[c] > j->largest)
      j->largest = size[c];
  }
  top = malloc((size_t)(nslots ? nslots : 1) * GD_SUMMARY_TOP * sizeof *top);
  ntop = calloc((size_t)(nslots ? nslots : 1), 1);
  if (!top || !ntop)
    goto nomem;
  for (int64_t e = 0; e < x->n_entities; e++) {
    int64_t nt = 0;
    if ((e & 0xffff) == 0 && cancelled(j)) {
      rc = gd_err_set(err, GD_ECANCELLED, "cancelled during summarize");
      goto out;
    }
    for (int64_t i = x->ent_off[e]; i < x->ent_off[e + 1]; i++) {
      int64_t c = mem[x->ent_sellers[i]];
      if (slot[c] < 0)
        continue;
      if (cnt[c]++ == 0)
        touched[nt++] = c;
    }
    for (int64_t t = 0; t < nt; t++) {
      int64_t c = touched[t];
      uint64_t users = (uint64_t)cnt[c];
      cnt[c] = 0;
      /* Supply sources are evidence: a hub (over its type's cap) or a
       * crowd the evidence rule calls context ties nobody, so it is never
       * one, however concentrated in the cluster. */
      if (users < 2 || j->context[e] || gd_is_hub(&j->spec->ev, x->ent_type[e], x->ent_n[e]))
        continue;
      top_ent te = {gd_summary_score(users, x->ent_n[e]), users, e};
      top_insert(top + slot[c] * GD_SUMMARY_TOP, &ntop[slot[c]], &te);
    }
  }

  /* Encode in stable-id order, the order the store appends in. */
  if (!(j->named = calloc((size_t)(x->n_entities ? x->n_entities : 1), 1)))
    goto nomem;
  for (int64_t c = 0; c < k; c++)
    order[c] = (idpair){(uint64_t)j->mr.new_id[c], c};
  qsort(order, (size_t)k, sizeof *order, cmp_idpair);
  j->n_clusters = (size_t)k;
  j->cluster_ids = malloc(kk * sizeof *j->cluster_ids);
  j->sum_off = malloc((kk + 1) * sizeof *j->sum_off);
  j->sum_data = malloc(kk * GD_SUMMARY_HDR + (size_t)nslots * GD_SUMMARY_TOP * GD_SUMMARY_ENTITY);
  if (!j->cluster_ids || !j->sum_off || !j->sum_data || !(j->draw = calloc(kk, 1)))
    goto nomem;
  for (int o = 0; o < GD_ORDERS; o++)
    if (!(j->orders[o] = malloc(kk * GD_ORDER_ROW)))
      goto nomem;
  size_t off = 0;
  for (int64_t i = 0; i < k; i++) {
    int64_t c = order[i].c;
    gd_cluster_summary cs = {
        .size = (uint64_t)size[c],
        .flagged = (uint64_t)flg[c],
        .risk = gd_summary_risk((uint64_t)flg[c], (uint64_t)size[c], j->base_rate),
        .internal = win[c],
        .boundary = wout[c],
    };
    cs.cohesion = win[c] + wout[c] > 0 ? win[c] / (win[c] + wout[c]) : 0.0;
    /* The clusters a report can list keep what their drawings need. */
    j->draw[i] = size[c] >= 2 && flg[c] >= 1;
    cs.links_kept = j->draw[i];
    if (slot[c] >= 0) {
      const top_ent *t = top + slot[c] * GD_SUMMARY_TOP;
      cs.n_top = ntop[slot[c]];
      for (int q = 0; q < cs.n_top; q++)
        j->named[t[q].ent] |= NAMED_SOURCE;
      for (int q = 0; q < cs.n_top; q++)
        cs.top[q] = (gd_summary_entity){x->ent_ids[t[q].ent], x->ent_type[t[q].ent], t[q].users,
                                        x->ent_n[t[q].ent] < t[q].users ? t[q].users
                                                                        : x->ent_n[t[q].ent]};
    }
    j->cluster_ids[i] = order[i].id;
    j->sum_off[i] = off;
    off += gd_summary_encode(&cs, j->sum_data + off);
    for (int o = 0; o < GD_ORDERS; o++)
      if (o != GD_ORDER_RISK_MULTI || cs.size >= 2)
        gd_order_row(o, order[i].id, cs.size, cs.risk,
                     j->orders[o] + GD_ORDER_ROW * j->n_order[o]++);
  }
  for (int o = 0; o < GD_ORDERS; o++)
    qsort(j->orders[o], j->n_order[o], GD_ORDER_ROW, cmp_row);
  j->sum_off[k] = off;
  for (int64_t i = 0; i < k; i++)
    slot[order[i].c] = i; /* slot is free now: reused as position by cluster index */
  rc = do_members_ties(j, slot, err);
  goto out;

done_empty:
  j->n_clusters = 0;
  if (!(j->assign = malloc(8)) || !(j->cluster_ids = malloc(8)) ||
      !(j->sum_off = calloc(1, sizeof *j->sum_off)) || !(j->sum_data = malloc(8)))
    goto nomem;
  goto out;
nomem:
  rc = gd_err_set(err, GD_ENOMEM, "out of memory for cluster summaries");
out:
  free(size);
  free(flg);
  free(slot);
  free(cnt);
  free(touched);
  free(win);
  free(wout);
  free(top);
  free(ntop);
  free(order);
  return rc;
}

/* ---- manifest ----------------------------------------------------------- */

static void jadd(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }
static json_object *jnum(double d) { return isfinite(d) ? json_object_new_double(d) : NULL; }
static json_object *jint(int64_t v) { return json_object_new_int64(v); }

/*
 * The worker's own peak RSS: VmHWM of /proc/self/status, the high-water
 * mark of this process image's memory. Not getrusage's ru_maxrss: Linux
 * carries the pre-exec image's peak into it across execve, and the worker
 * is spawned from the daemon, so a daemon that had just ingested a few
 * GB of file pages made ru_maxrss report those. ru_maxrss only where
 * /proc is missing.
 */
static int64_t peak_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %lld kB", &kib) == 1)
      break;
  if (f)
    fclose(f);
  if (kib >= 0)
    return (int64_t)kib * 1024;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return (int64_t)ru.ru_maxrss * 1024; /* KiB on Linux */
}

/* The manifest as a malloc'd string (NULL when out of memory). */
static char *manifest_encode(job *j, uint64_t id, size_t *ret_len) {
  const gd_graph_export *x = &j->x;
  const gd_match_summary *ms = &j->mr.summary;
  json_object *m = json_object_new_object();
  if (!m)
    return NULL;
  jadd(m, "format", jint(GD_MANIFEST_FORMAT));
  jadd(m, "snapshot_id", json_object_new_uint64(id));
  jadd(m, "name", json_object_new_string(j->spec->name));
  jadd(m, "created_at", jint(gd_now_unix()));
  jadd(m, "previous_snapshot_id", j->prev_snap ? json_object_new_uint64(j->prev_snap) : NULL);
  jadd(m, "spec", gd_worker_spec_json(j->spec));
  jadd(m, "warm_started", json_object_new_boolean(j->warm));
  if (j->image_saved) {
    char hex[33];
    json_object *im = json_object_new_object();
    hex_of(j->image.nonce, 16, hex);
    jadd(im, "txn", json_object_new_uint64(j->image.txn));
    jadd(im, "nonce", json_object_new_string(hex));
    jadd(m, "image", im);
  }
  if (j->spec->import_path) {
    json_object *im = json_object_new_object();
    jadd(im, "engine", json_object_new_string(j->spec->engine ? j->spec->engine : ""));
    jadd(im, "rows", json_object_new_uint64(j->import_rows));
    jadd(im, "sellers_unassigned", jint(j->import_unassigned));
    jadd(m, "imported", im);
  }

  json_object *in = json_object_new_object();
  jadd(in, "checksum", json_object_new_string(x->checksum));
  jadd(in, "sellers", jint(x->n_sellers));
  jadd(in, "entities", jint(x->n_entities));
  jadd(in, "incidences", jint(x->n_incidences));
  jadd(in, "links", jint(x->n_links));
  jadd(in, "records_read", json_object_new_uint64(x->records_read));
  jadd(in, "rows_read", json_object_new_uint64(x->rows_read));
  jadd(in, "read_at_ns", jint(j->read_at));
  if (j->from_image) {
    json_object *fi = json_object_new_object();
    jadd(fi, "snapshot_id", json_object_new_uint64(j->prev_snap));
    jadd(fi, "changed_ids", json_object_new_uint64(j->patch.changed));
    jadd(fi, "log_entries", json_object_new_uint64(j->patch.log_entries));
    jadd(in, "from_image", fi);
  } else if (j->image_note[0]) {
    jadd(in, "image_unused", json_object_new_string(j->image_note));
  }
  jadd(m, "input", in);

  json_object *pj = json_object_new_object(), *hb = json_object_new_object();
  jadd(pj, "entities_used", jint(j->ps.entities_used));
  jadd(pj, "entities_single", jint(j->ps.entities_single));
  jadd(pj, "entities_zero_weight", jint(j->ps.entities_zero_weight));
  jadd(pj, "entities_context", jint(j->ps.entities_context));
  jadd(pj, "entities_corroborated", jint(j->ps.entities_corroborated));
  jadd(pj, "corroboration_visits", jint(j->ps.corroboration_visits));
  jadd(pj, "hubs_skipped", jint(j->ps.hubs_skipped));
  for (int t = GD_TYPE_MIN + 1; t <= GD_TYPE_MAX && t < GD_EV_TYPES; t++)
    jadd(hb, gd_type_name(t), jint(j->ps.hubs_skipped_by_type[t]));
  jadd(pj, "hubs_skipped_by_type", hb);
  jadd(pj, "hub_incidences_skipped", jint(j->ps.hub_incidences_skipped));
  jadd(pj, "links_used", jint(j->ps.links_used));
  jadd(pj, "pair_visits", jint(j->ps.pair_visits));
  jadd(pj, "ties", jint(j->ps.ties));
  jadd(pj, "ties_filtered", jint(j->ps.ties_filtered));
  jadd(m, "projection", pj);

  json_object *res = json_object_new_object();
  jadd(res, "clusters", jint((int64_t)j->n_clusters));
  jadd(res, "singletons", jint(j->singletons));
  jadd(res, "largest_cluster", jint(j->largest));
  jadd(res, "flagged_sellers", jint(j->flagged_total));
  jadd(res, "objective", jnum(j->cr.quality));
  jadd(res, "modularity", jnum(j->cr.modularity));
  jadd(res, "risk_base_rate", jnum(j->base_rate));
  jadd(res, "iterations", jint(j->cr.iterations));
  jadd(res, "igraph_warnings", jint(j->cr.warnings));
  int64_t drawn = 0;
  for (size_t i = 0; j->draw && i < j->n_clusters; i++)
    drawn += j->draw[i];
  jadd(res, "links_kept_clusters", jint(drawn));
  jadd(res, "links_kept", jint((int64_t)j->n_links));
  jadd(m, "result", res);

  json_object *si = json_object_new_object();
  jadd(si, "next_cluster_id", jint(j->next_cluster_id));
  jadd(si, "inherited", jint(ms->ids_inherited));
  jadd(si, "fresh", jint(ms->ids_fresh));
  jadd(si, "sellers_stayed", jint(ms->sellers_stayed));
  jadd(si, "sellers_moved", jint(ms->sellers_moved));
  jadd(si, "sellers_added", jint(ms->sellers_added));
  jadd(si, "sellers_removed", jint(ms->sellers_removed));
  jadd(si, "continued", jint(ms->continued));
  jadd(si, "merged", jint(ms->merged));
  jadd(si, "split", jint(ms->split));
  jadd(si, "born", jint(ms->born));
  jadd(si, "dissolved", jint(ms->dissolved));
  jadd(m, "stable_ids", si);

  json_object *lim = json_object_new_object();
  jadd(lim, "max_sellers", json_object_new_uint64(j->o->max_sellers));
  jadd(lim, "max_ties", json_object_new_uint64(j->o->max_ties));
  jadd(m, "limits", lim);

  json_object *tm = json_object_new_object();
  for (int st = 0; st < ST_WRITE; st++)
    jadd(tm, stage_names[st], jnum(j->t_ms[st]));
  jadd(tm, "total", jnum((double)(gd_now_ns() - j->t0) / 1e6));
  jadd(m, "timings_ms", tm);
  jadd(m, "peak_rss_bytes", jint(peak_rss_bytes()));

  json_object *ver = json_object_new_object();
  jadd(ver, "graphd", json_object_new_string(GD_VERSION));
  jadd(ver, "igraph", json_object_new_string(gd_ig_version()));
  jadd(m, "versions", ver);

  size_t len = 0;
  const char *s = json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN, &len);
  char *out = s ? malloc(len + 1) : NULL;
  if (out) {
    memcpy(out, s, len + 1);
    *ret_len = len;
  }
  json_object_put(m);
  return out;
}

/* Appends a name: id's type and key, flags; detail (NULL unless flags has
 * GD_SNAP_DETAIL) gives the times, seller count and labels. */
static int name_put(job *j, uint64_t id, uint8_t type, const char *key, size_t key_len,
                    const gd_entity_view *detail, uint8_t flags, gd_err *err) {
  size_t off = j->name_off[j->n_names];
  while (off + key_len > j->cap_keys) {
    size_t cap = j->cap_keys ? 2 * j->cap_keys : 1 << 20;
    char *nk = realloc(j->name_keys, cap);
    if (!nk)
      return gd_err_set(err, GD_ENOMEM, "out of memory for the snapshot's names");
    j->name_keys = nk;
    j->cap_keys = cap;
  }
  memcpy(j->name_keys + off, key, key_len);
  if (detail) {
    const gd_entity_view *v = detail;
    size_t lb = 0;
    for (size_t i = 0; i < v->nlabels; i++)
      lb += 2 + gd_entity_label(v, i).n;
    while (j->n_labels + lb > j->cap_labels) {
      size_t cap = j->cap_labels ? 2 * j->cap_labels : 1 << 16;
      uint8_t *nl = realloc(j->labels, cap);
      if (!nl)
        return gd_err_set(err, GD_ENOMEM, "out of memory for the snapshot's names");
      j->labels = nl;
      j->cap_labels = cap;
    }
    if (lb)
      memcpy(j->labels + j->n_labels, v->labels_raw, lb);
    /* labels_raw is set once every name is read (the buffer moves as it
     * grows): read_names. */
    j->name_detail[j->n_names] =
        (gd_snap_detail){v->first_seen, v->last_seen, v->seller_count, v->nlabels, lb, NULL};
    j->n_labels += lb;
  }
  j->name_ids[j->n_names] = id;
  j->name_type[j->n_names] = type;
  j->name_flags[j->n_names] = flags;
  j->name_off[++j->n_names] = off + key_len;
  return GD_OK;
}

/* Appends entity id's name (its record's type and key, flags; with
 * GD_SNAP_DETAIL also its times, seller count and labels) to j's names; an
 * entity deleted since the export is left out. */
static int name_add(job *j, gd_rtxn *r, uint64_t id, uint8_t flags, gd_err *err) {
  gd_ref ref = {.id = id};
  gd_entity_view v;
  int rc = gd_store_get(r, &ref, &v, err);
  if (rc == GD_ENOTFOUND)
    return GD_OK;
  if (rc)
    return rc;
  return name_put(j, id, (uint8_t)v.type, v.key.p, v.key.n, flags & GD_SNAP_DETAIL ? &v : NULL,
                  flags, err);
}

/* ---- kept links ---------------------------------------------------------- */

typedef struct lvisit {
  job *j;
  uint64_t seller;
  bool nomem;
} lvisit;

/* gd_store_visit_links callback: appends the link of lv->seller to
 * j->links and marks a non-seller entity for a detailed name. */
static int link_add(void *ctx, const gd_link *l) {
  lvisit *lv = ctx;
  job *j = lv->j;
  if (j->n_links == j->cap_links) {
    size_t cap = j->cap_links ? 2 * j->cap_links : 4096;
    gd_snap_link *nl = realloc(j->links, cap * sizeof *nl);
    if (!nl) {
      lv->nomem = true;
      return 1;
    }
    j->links = nl;
    j->cap_links = cap;
  }
  j->links[j->n_links++] =
      (gd_snap_link){lv->seller, l->nbr, l->first_seen, l->last_seen, l->count};
  int64_t e = l->nbr_type == GD_TYPE_SELLER ? -1 : gd_u64_index(j->x.ent_ids, j->x.n_entities, l->nbr);
  if (e >= 0)
    j->named[e] |= NAMED_DETAIL;
  return 0;
}

static int cmp_link(const void *pa, const void *pb) {
  const gd_snap_link *a = pa, *b = pb;
  if (a->seller != b->seller)
    return a->seller < b->seller ? -1 : 1;
  return a->entity < b->entity ? -1 : a->entity > b->entity;
}


/*
 * The links of the drawn clusters (j->draw; snapfmt.h), read in r with the
 * spec's time window: every link of each of a cluster's (first
 * GD_LINKS_MAX_MEMBERS) members, so that a drawing of any set of such
 * clusters finds the entities they share, within a cluster or across.
 * Marks the members (sdetail) and the non-seller entities they link to
 * (named) for detailed names. Cost: the drawn members' adjacency lists, a
 * sort per cluster.
 */
static int read_links(job *j, gd_rtxn *r, gd_err *err) {
  const gd_graph_export *x = &j->x;
  lvisit lv = {.j = j};
  int rc = GD_OK;
  uint64_t touched = 0;
  if (!(j->link_off = calloc(j->n_clusters + 1, sizeof *j->link_off)) ||
      !(j->sdetail = calloc((size_t)(x->n_sellers ? x->n_sellers : 1), 1)))
    return gd_err_set(err, GD_ENOMEM, "out of memory for the snapshot's links");
  for (size_t i = 0; i < j->n_clusters && !rc; i++) {
    size_t first = j->n_links;
    const uint64_t *mem = j->members + j->member_off[i];
    size_t nm = j->member_off[i + 1] - j->member_off[i];
    if (nm > GD_LINKS_MAX_MEMBERS)
      nm = GD_LINKS_MAX_MEMBERS;
    for (size_t m = 0; j->draw[i] && m < nm && !rc; m++) {
      lv.seller = mem[m];
      rc = gd_store_visit_links(r, mem[m], 0, j->spec->since, j->spec->until, link_add, &lv,
                                &touched, err);
      if (!rc && lv.nomem)
        rc = gd_err_set(err, GD_ENOMEM, "out of memory for the snapshot's links");
      int64_t s = seller_index(x, mem[m]);
      if (s >= 0)
        j->sdetail[s] = 1;
    }
    /* Each member's rows come in adjacency order (type, id): sort the
     * cluster's by (seller, entity), the store's row order. */
    if (j->n_links > first)
      qsort(j->links + first, j->n_links - first, sizeof *j->links, cmp_link);
    j->link_off[i + 1] = j->n_links;
  }
  return rc;
}

/*
 * What the snapshot keeps beyond the clustering (store/snapshot.h,
 * snap_name and snap_link), read in one read transaction before the write:
 * the drawn clusters' links (read_links); every seller's key and whether
 * it was flagged when the graph was read; each supply source's type and
 * key; details for the drawn clusters' members and shared entities.
 * Sellers and entities are merged in ascending id.
 */
static int read_names(job *j, gd_err *err) {
  const gd_graph_export *x = &j->x;
  gd_rtxn *r;
  int rc = gd_store_read_begin(j->store, &r, err);
  if (rc)
    return rc;
  if ((rc = read_links(j, r, err)))
    goto out;
  size_t cap = (size_t)x->n_sellers;
  for (int64_t e = 0; j->named && e < x->n_entities; e++)
    cap += j->named[e] != 0;
  j->name_ids = malloc((cap ? cap : 1) * sizeof *j->name_ids);
  j->name_type = malloc(cap ? cap : 1);
  j->name_flags = malloc(cap ? cap : 1);
  j->name_off = calloc(cap + 1, sizeof *j->name_off);
  j->name_detail = calloc(cap ? cap : 1, sizeof *j->name_detail);
  if (!j->name_ids || !j->name_type || !j->name_flags || !j->name_off || !j->name_detail) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory for the snapshot's names");
    goto out;
  }
  int64_t s = 0, e = 0;
  while (!rc && (s < x->n_sellers || e < x->n_entities)) {
    if (e < x->n_entities && !(j->named && j->named[e])) {
      e++;
      continue;
    }
    if (s < x->n_sellers && (e >= x->n_entities || x->seller_ids[s] < x->ent_ids[e])) {
      uint8_t fl = (j->flagged[s] ? GD_SNAP_FLAGGED : 0) | (j->sdetail[s] ? GD_SNAP_DETAIL : 0);
      if (j->sdetail[s] || !j->sk_off)
        rc = name_add(j, r, x->seller_ids[s], fl, err);
      else if (!j->sk_gone[s])
        rc = name_put(j, x->seller_ids[s], GD_TYPE_SELLER, j->sk_keys + j->sk_off[s],
                      j->sk_off[s + 1] - j->sk_off[s], NULL, fl, err);
      s++;
    } else {
      rc = name_add(j, r, x->ent_ids[e], j->named[e] & NAMED_DETAIL ? GD_SNAP_DETAIL : 0, err);
      e++;
    }
  }
  /* Detailed names' labels lie back to back in j->labels, in name order. */
  for (size_t i = 0, off = 0; !rc && i < j->n_names; i++)
    if (j->name_flags[i] & GD_SNAP_DETAIL && j->name_detail[i].labels_len) {
      j->name_detail[i].labels_raw = j->labels + off;
      off += j->name_detail[i].labels_len;
    }
out:
  gd_store_read_end(r);
  return rc;
}

static int do_write(job *j, uint64_t *ret_id, gd_err *err) {
  int nrc = image_save_join(j, err);
  if (nrc)
    return nrc;
  int64_t t = gd_now_ns();
  seller_keys_join(j);
  info(j, "write_keys_wait_ms", (long long)((gd_now_ns() - t) / 1000000));
  t = gd_now_ns();
  nrc = read_names(j, err);
  if (nrc)
    return nrc;
  (void)gd_store_drop_resident(j->store, NULL); /* the names' pages: as after the export */
  info(j, "write_names_ms", (long long)((gd_now_ns() - t) / 1000000));
  for (int attempt = 0;; attempt++) {
    t = gd_now_ns();
    gd_wtxn *wt = NULL;
    uint64_t id = 0;
    size_t mlen = 0;
    char *man = NULL;
    int rc = gd__wtxn_begin(j->store, &wt, err);
    if (!rc)
      rc = gd_store_snapshot_next_id(wt, &id, err);
    /* The change log is kept back to the oldest image kept: this job's and
     * its previous snapshot's (image_settle removes the others). */
    if (!rc) {
      uint64_t keep = j->image_saved ? j->image.txn : j->x.txn;
      if (j->prev_image.txn && j->prev_image.txn < keep)
        keep = j->prev_image.txn;
      rc = gd_store_glog_trim(wt, keep, err);
    }
    if (!rc && !(man = manifest_encode(j, id, &mlen)))
      rc = gd_err_set(err, GD_ENOMEM, "out of memory for the manifest");
    if (!rc) {
      gd_snapshot_in in = {
          .manifest = man,
          .manifest_len = mlen,
          .n_assign = (size_t)j->x.n_sellers,
          .sellers = j->x.seller_ids,
          .clusters = j->assign,
          .n_clusters = j->n_clusters,
          .cluster_ids = j->cluster_ids,
          .summary_data = j->sum_data,
          .summary_off = j->sum_off,
          .members = j->members,
          .member_off = j->member_off,
          .ties = j->ties,
          .tie_off = j->tie_off,
          .n_names = j->n_names,
          .name_ids = j->name_ids,
          .name_type = j->name_type,
          .name_flags = j->name_flags,
          .name_keys = j->name_keys,
          .name_key_off = j->name_off,
          .name_detail = j->name_detail,
          .links = j->links,
          .link_off = j->link_off,
      };
      for (int o = 0; o < GD_ORDERS; o++) {
        in.n_order[o] = j->n_order[o];
        in.orders[o] = j->orders[o];
      }
      rc = gd_store_snapshot_put(wt, id, &in, err);
    }
    free(man);
    if (!rc) {
      info(j, "write_put_ms", (long long)((gd_now_ns() - t) / 1000000));
      t = gd_now_ns();
      rc = gd__wtxn_commit(wt, err); /* frees wt */
      wt = NULL;
      if (!rc)
        info(j, "write_commit_ms", (long long)((gd_now_ns() - t) / 1000000));
    }
    gd__wtxn_abort(wt);
    if (rc == GD_OK) {
      *ret_id = id;
      image_settle(j, id);
      return GD_OK;
    }
    if (rc != GD_EMAPFULL || attempt >= 40)
      return rc;
    if ((rc = gd__store_grow(j->store, err)))
      return rc;
  }
}

/* ---- the job ------------------------------------------------------------ */

static void job_free(job *j) {
  if (j->image_saving)
    pthread_join(j->image_thread, NULL);
  if (j->sk_reading)
    pthread_join(j->sk_thread, NULL);
  free(j->sk_keys);
  free(j->sk_off);
  free(j->sk_gone);
  if (j->image_saved && j->image_tmp[0])
    unlink(j->image_tmp); /* a job that did not commit: no snapshot names it */
  gd_graph_export_free(&j->x);
  free(j->flagged);
  free(j->context);
  free(j->corr);
  free(j->corr_ids);
  free(j->corr_all);
  free(j->prev);
  gd_csr_free(&j->g);
  gd_comm_result_free(&j->cr);
  gd_match_result_free(&j->mr);
  free(j->assign);
  free(j->cluster_ids);
  free(j->sum_data);
  free(j->sum_off);
  free(j->members);
  free(j->member_off);
  free(j->ties);
  free(j->tie_off);
  free(j->named);
  free(j->draw);
  free(j->sdetail);
  free(j->links);
  free(j->link_off);
  free(j->name_detail);
  free(j->labels);
  for (int o = 0; o < GD_ORDERS; o++)
    free(j->orders[o]);
  free(j->name_ids);
  free(j->name_type);
  free(j->name_flags);
  free(j->name_keys);
  free(j->name_off);
  gd_store_close(j->store);
}

/* Runs the stages from open through `last` (before write), each checked
 * for a cancel first. */
static int run_stages(job *j, int last, gd_err *err) {
  static int (*const steps[ST_WRITE])(job *, gd_err *) = {do_open,    do_read,  do_project,
                                                          do_cluster, do_match, do_summarize};
  int rc;
  for (int st = 0; st <= last; st++) {
    if (cancelled(j))
      return gd_err_set(err, GD_ECANCELLED, "cancelled before %s", stage_names[st]);
    stage_begin(j, st);
    if ((rc = steps[st](j, err)) || (rc = stage_end(j, err)))
      return rc;
  }
  return GD_OK;
}

int gd_worker_run(const gd_worker_opts *o, const gd_worker_spec *spec, uint64_t *ret_snapshot,
                  gd_err *err) {
  job j;
  int rc;
  memset(&j, 0, sizeof j);
  j.o = o;
  j.spec = spec;
  j.t0 = gd_now_ns();

  if ((rc = run_stages(&j, ST_SUMMARIZE, err)))
    goto out;
  /* Past this point a cancel is ignored: the snapshot commits whole. */
  if (o->committing)
    atomic_store(o->committing, 1);
  if (cancelled(&j)) {
    if (o->committing)
      atomic_store(o->committing, 0);
    rc = gd_err_set(err, GD_ECANCELLED, "cancelled before write");
    goto out;
  }
  stage_begin(&j, ST_WRITE);
  uint64_t id;
  if ((rc = do_write(&j, &id, err)))
    goto out;
  stage_end(&j, err);
  *ret_snapshot = id;
out:
  job_free(&j);
  return rc;
}

/* ---- ties only ----------------------------------------------------------- */

/* Writes all of buf to fd; EPIPE (the reader is gone) is a cancel. */
static int write_all(int fd, const void *buf, size_t n, gd_err *err) {
  if (gd_fd_write_all(fd, buf, n) == 0)
    return GD_OK;
  return errno == EPIPE ? gd_err_set(err, GD_ECANCELLED, "the ties' reader is gone")
                        : gd_err_set(err, GD_EIO, "writing ties: %s", strerror(errno));
}

int gd_worker_ties(const gd_worker_opts *o, const gd_worker_spec *spec, int fd,
                   uint64_t *ret_ties, gd_err *err) {
  job j;
  int rc = GD_OK;
  memset(&j, 0, sizeof j);
  j.o = o;
  j.spec = spec;
  j.ties_only = true;
  j.t0 = gd_now_ns();
  if ((rc = run_stages(&j, ST_PROJECT, err)))
    goto out;
  enum { CHUNK = 4096 };
  gd_tie_rec *buf = malloc(CHUNK * sizeof *buf);
  if (!buf) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  const gd_csr *g = &j.g;
  size_t k = 0;
  uint64_t total = 0;
  for (int64_t u = 0; u < g->n && !rc; u++) {
    for (int64_t e = g->off[u]; e < g->off[u + 1] && !rc; e++) {
      int64_t v = g->nbr[e];
      if (v <= u)
        continue;
      buf[k++] = (gd_tie_rec){j.x.seller_ids[u], j.x.seller_ids[v], g->w[e]};
      if (k == CHUNK) {
        rc = write_all(fd, buf, k * sizeof *buf, err);
        total += k;
        k = 0;
        if (!rc && cancelled(&j))
          rc = gd_err_set(err, GD_ECANCELLED, "cancelled while writing ties");
      }
    }
  }
  if (!rc && k) {
    rc = write_all(fd, buf, k * sizeof *buf, err);
    total += k;
  }
  free(buf);
  if (!rc)
    *ret_ties = total;
out:
  job_free(&j);
  return rc;
}
