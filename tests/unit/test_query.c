/*
 * Unit tests for graphd/query on a small hand-made graph:
 *
 *   ring sellers r1..r4 share device D (4 sellers) and warehouse W (4);
 *   r1 and r2 also share mule account M (2 sellers);
 *   hub address H is shared by r1 and 600 honest sellers h0..h599;
 *   x1 is linked to r4 through phone P (2 sellers): two steps from r1;
 *   iso1 has its own device, nothing shared.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "query/query.h"
#include "store/writer.h"
#include "tap.h"

static char dir[64];
static gd_store *st;

typedef struct {
  gd_write_op op;
  gd_upsert u;
  gd_upsert_result res;
  int done, code;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} wop;

static int wapply(gd_wtxn *t, gd_write_op *o, gd_err *e) {
  return gd_store_upsert(t, &((wop *)o)->u, &((wop *)o)->res, e);
}
static void wdone(gd_write_op *o, const gd_err *e) {
  wop *w = (wop *)o;
  pthread_mutex_lock(&w->mu);
  w->code = e->code;
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static gd_ref R(int t, const char *k) { return (gd_ref){0, t, gd_str_c(k)}; }

/* Commits L[0..n) through a writer; GD_OK or the error. */
static int upsert(gd_link_in *L, size_t n, gd_entity_in *E, size_t ne) {
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  wop x = {.op = {.apply = wapply, .done = wdone},
           .u = {.links = L, .nlinks = n, .entities = E, .nentities = ne}};
  pthread_mutex_init(&x.mu, NULL);
  pthread_cond_init(&x.cv, NULL);
  gd_writer_submit(w, &x.op);
  pthread_mutex_lock(&x.mu);
  while (!x.done)
    pthread_cond_wait(&x.cv, &x.mu);
  pthread_mutex_unlock(&x.mu);
  gd_writer_stop(w);
  pthread_mutex_destroy(&x.mu);
  pthread_cond_destroy(&x.cv);
  return x.code;
}

static void build(void) {
  static char hk[600][8];
  static gd_link_in L[700];
  static gd_entity_in E[2];
  static gd_str lab = {"counterfeit", 11};
  size_t n = 0;
  const char *ring[] = {"r1", "r2", "r3", "r4"};
  for (int i = 0; i < 4; i++) {
    L[n++] = (gd_link_in){R(GD_TYPE_SELLER, ring[i]), R(GD_TYPE_DEVICE, "D"), 100 + i};
    L[n++] = (gd_link_in){R(GD_TYPE_SELLER, ring[i]), R(GD_TYPE_ADDRESS, "W"), 100 + i};
  }
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "r1"), R(GD_TYPE_PAYMENT_ACCOUNT, "M"), 50};
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "r2"), R(GD_TYPE_PAYMENT_ACCOUNT, "M"), 60};
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "r1"), R(GD_TYPE_ADDRESS, "H"), 10};
  for (int i = 0; i < 600; i++) {
    snprintf(hk[i], sizeof hk[i], "h%d", i);
    L[n++] = (gd_link_in){R(GD_TYPE_SELLER, hk[i]), R(GD_TYPE_ADDRESS, "H"), 10};
  }
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "r4"), R(GD_TYPE_PHONE, "+1"), 70};
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "x1"), R(GD_TYPE_PHONE, "+1"), 70};
  L[n++] = (gd_link_in){R(GD_TYPE_SELLER, "iso1"), R(GD_TYPE_DEVICE, "Diso"), 70};
  /* A hop bound case: q0-qa strong (3 devices), q0-qb weak (1), qa-qb
   * strong (3), qb-qc weak (1); qa has the smaller id. */
  static const char *const qdev[][3] = {{"q0", "qa", "qd1"}, {"q0", "qa", "qd2"},
                                        {"q0", "qa", "qd3"}, {"q0", "qb", "qd4"},
                                        {"qa", "qb", "qd5"}, {"qa", "qb", "qd6"},
                                        {"qa", "qb", "qd7"}, {"qb", "qc", "qd8"}};
  for (size_t i = 0; i < sizeof qdev / sizeof qdev[0]; i++)
    for (int k = 0; k < 2; k++)
      L[n++] = (gd_link_in){R(GD_TYPE_SELLER, qdev[i][k]), R(GD_TYPE_DEVICE, qdev[i][2]), 80};
  E[0] = (gd_entity_in){GD_TYPE_SELLER, gd_str_c("r1"), NULL, 0, &lab, 1, 1};
  E[1] = (gd_entity_in){GD_TYPE_SELLER, gd_str_c("r2"), NULL, 0, &lab, 1, 1};

  strcpy(dir, "/tmp/gd-test-query-XXXXXX");
  if (!mkdtemp(dir))
    abort();
  gd_store_opts o = {.path = dir};
  CHECK(gd_store_open(&o, &st, NULL) == GD_OK);
  CHECK(upsert(L, n, E, 2) == GD_OK);
}

static uint64_t id_of(gd_rtxn *r, int t, const char *k) {
  gd_ref ref = R(t, k);
  uint64_t id = 0;
  CHECK(gd_store_lookup(r, &ref, &id, NULL) == GD_OK);
  return id;
}

static const gd_linked *find(const gd_linked_result *res, uint64_t id) {
  for (size_t i = 0; i < res->n; i++)
    if (res->sellers[i].seller == id)
      return &res->sellers[i];
  return NULL;
}

static void test_linked(void) {
  gd_rtxn *r;
  gd_query_params p;
  gd_linked_result res;
  gd_err err;
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t r1 = id_of(r, GD_TYPE_SELLER, "r1"), r2 = id_of(r, GD_TYPE_SELLER, "r2");
  uint64_t r4 = id_of(r, GD_TYPE_SELLER, "r4"), x1 = id_of(r, GD_TYPE_SELLER, "x1");
  uint64_t hub = id_of(r, GD_TYPE_ADDRESS, "H");

  /* One hop: r2, r3, r4; r2 strongest (it also shares M). */
  CHECK(gd_query_linked(r, r1, 1, &p, 100, 0, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 3);
  CHECK_EQ_U(res.sellers[0].seller, r2);
  const gd_linked *l2 = find(&res, r2);
  /* D and W corroborate each other (all four use both), so both count
   * with their full type weight; M and P have 2 sellers: Newman's 1. */
  double wd = 1.0, ww = 0.8, wm = 1.0;
  CHECK(l2 && l2->hops == 1 && l2->steps[0].nshared == 3);
  CHECK(l2 && fabs(l2->score - (wd + ww + wm)) < 1e-9);
  /* Strongest evidence first: M and D (1.0; ties by id), then W. D's
   * corroboration: reading r1 then r2, W (0.8) and M (1.0) already tie
   * one pair each, 1.8 of the 0.1 C(4, 2) = 0.6 that make c = 1. W's: D
   * covers its pairs: c = 1. */
  CHECK(l2 && l2->steps[0].shared[0].type == GD_TYPE_PAYMENT_ACCOUNT);
  CHECK(l2 && l2->steps[0].shared[0].sellers == 2);
  CHECK(l2 && l2->steps[0].shared[1].type == GD_TYPE_DEVICE);
  CHECK(l2 && l2->steps[0].shared[1].corroboration == 1.0);
  CHECK(l2 && l2->steps[0].shared[2].type == GD_TYPE_ADDRESS);
  CHECK(l2 && l2->steps[0].shared[2].corroboration == 1.0);
  const gd_linked *l4 = find(&res, r4);
  CHECK(l4 && fabs(l4->score - (wd + ww)) < 1e-9);
  /* The hub is skipped and reported, never evidence. */
  CHECK_EQ_U(res.nhubs, 1);
  CHECK_EQ_U(res.hubs[0].entity, hub);
  CHECK_EQ_U(res.hubs[0].sellers, 601);
  CHECK_EQ_U(res.hubs[0].cap, 500);
  CHECK(!res.hubs[0].context);
  gd_linked_result_free(&res);

  /* Two hops reach x1 through r4, with both steps as evidence. */
  CHECK(gd_query_linked(r, r1, 2, &p, 100, 0, &res, &err) == GD_OK);
  const gd_linked *lx = find(&res, x1);
  CHECK(lx && lx->hops == 2);
  if (lx) {
    CHECK_EQ_U(lx->steps[0].from, r1);
    CHECK_EQ_U(lx->steps[0].to, r4);
    CHECK_EQ_U(lx->steps[1].from, r4);
    CHECK_EQ_U(lx->steps[1].to, x1);
    double t1 = lx->steps[0].tie, t2 = lx->steps[1].tie;
    CHECK(fabs(lx->score - 1.0 / (1.0 / t1 + 1.0 / t2)) < 1e-9);
    CHECK(lx->score < t1 && lx->score < t2);
  }
  gd_linked_result_free(&res);

  /* Raising the address cap does not turn the crowd into evidence: its
   * 601 sellers share nothing else, so H is context, reported as such. */
  p.ev.hub_cap[GD_TYPE_ADDRESS] = 1000;
  CHECK(gd_query_linked(r, r1, 1, &p, 1000, 0, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 3);
  CHECK_EQ_U(res.nhubs, 1);
  CHECK(res.nhubs == 1 && res.hubs[0].context && res.hubs[0].entity == hub);
  CHECK(res.nhubs == 1 && res.hubs[0].corroboration == 0.0);
  gd_linked_result_free(&res);

  /* The previous rule still lets it through: 603 linked sellers. */
  p.ev.rule = GD_EV_RARITY;
  CHECK(gd_query_linked(r, r1, 1, &p, 1000, 0, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 603);
  CHECK_EQ_U(res.nhubs, 0);
  const gd_linked *o2 = find(&res, r2);
  CHECK(o2 && fabs(o2->score - (1.0 / log2(5.0) + 0.8 / log2(5.0) + 1.0 / log2(3.0))) < 1e-9);
  gd_linked_result_free(&res);

  /* The work bound truncates. */
  gd_query_params_default(&p);
  p.max_touched = 5;
  CHECK(gd_query_linked(r, r1, 2, &p, 100, 0, &res, &err) == GD_OK);
  CHECK(res.truncated);
  gd_linked_result_free(&res);

  /* Not a seller. */
  gd_query_params_default(&p);
  CHECK(gd_query_linked(r, hub, 1, &p, 100, 0, &res, &err) == GD_EINVALID);
  gd_store_read_end(r);
}

static void test_paths(void) {
  gd_rtxn *r;
  gd_query_params p;
  gd_paths_result res;
  gd_err err;
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t r1 = id_of(r, GD_TYPE_SELLER, "r1"), r2 = id_of(r, GD_TYPE_SELLER, "r2");
  uint64_t x1 = id_of(r, GD_TYPE_SELLER, "x1"), h0 = id_of(r, GD_TYPE_SELLER, "h0");
  uint64_t iso = id_of(r, GD_TYPE_SELLER, "iso1");

  /* r1 - r2: three 2-link paths (D, W, M), shortest first. */
  CHECK(gd_query_paths(r, r1, r2, 5, 4, &p, &res, &err) == GD_OK);
  CHECK(res.n >= 3);
  for (size_t i = 0; i < 3 && i < res.n; i++) {
    CHECK_EQ_U(res.paths[i].len, 2);
    CHECK_EQ_U(res.paths[i].ids[0], r1);
    CHECK_EQ_U(res.paths[i].ids[2], r2);
  }
  for (size_t i = 1; i < res.n; i++)
    CHECK(res.paths[i].len >= res.paths[i - 1].len);
  gd_paths_result_free(&res);

  /* r1 - x1: 4 links through r4 and the phone. */
  CHECK(gd_query_paths(r, r1, x1, 1, 4, &p, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 1);
  if (res.n)
    CHECK_EQ_U(res.paths[0].len, 4);
  gd_paths_result_free(&res);
  CHECK(gd_query_paths(r, r1, x1, 1, 3, &p, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 0);
  gd_paths_result_free(&res);

  /* r1 - h0 only through the hub: no path (and the hub is reported). */
  CHECK(gd_query_paths(r, r1, h0, 3, 6, &p, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 0);
  CHECK(res.nhubs >= 1);
  gd_paths_result_free(&res);

  /* Unconnected. */
  CHECK(gd_query_paths(r, r1, iso, 3, 8, &p, &res, &err) == GD_OK);
  CHECK_EQ_U(res.n, 0);
  gd_paths_result_free(&res);
  gd_store_read_end(r);
}

static void test_suspects(void) {
  gd_rtxn *r;
  gd_query_params p;
  gd_suspects_result res;
  gd_err err;
  gd_str lab = gd_str_c("counterfeit"), none = gd_str_c("nobody");
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t r1 = id_of(r, GD_TYPE_SELLER, "r1"), r2 = id_of(r, GD_TYPE_SELLER, "r2");
  uint64_t r3 = id_of(r, GD_TYPE_SELLER, "r3"), r4 = id_of(r, GD_TYPE_SELLER, "r4");
  CHECK(gd_query_suspects(r, &lab, 1, 0.15, 1e-7, 100, 2, &p, &res, &err) == GD_OK);
  CHECK_EQ_U(res.seeds, 2);
  CHECK(res.n >= 2);
  /* The unlabelled ring members come first; the seeds never appear. */
  if (res.n >= 2) {
    CHECK(res.suspects[0].seller == r3 || res.suspects[0].seller == r4);
    CHECK(res.suspects[1].seller == r3 || res.suspects[1].seller == r4);
    CHECK(res.suspects[0].nnearest >= 1);
  }
  for (size_t i = 0; i < res.n; i++)
    CHECK(res.suspects[i].seller != r1 && res.suspects[i].seller != r2);
  for (size_t i = 1; i < res.n; i++)
    CHECK(res.suspects[i].score <= res.suspects[i - 1].score);
  gd_suspects_result_free(&res);
  CHECK(gd_query_suspects(r, &none, 1, 0.15, 1e-7, 100, 2, &p, &res, &err) == GD_EPRECONDITION);
  gd_store_read_end(r);
}

static void teardown(void) {
  char cmd[128];
  gd_store_close(st);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    abort();
}

static int cmp_key(const void *a, const void *b) { return strcmp(a, b); }

static bool same_linked(const gd_linked_result *a, const gd_linked_result *b) {
  if (a->n != b->n || a->nhubs != b->nhubs || a->touched != b->touched ||
      a->truncated != b->truncated)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (a->sellers[i].seller != b->sellers[i].seller || a->sellers[i].score != b->sellers[i].score)
      return false;
  for (size_t i = 0; i < a->nhubs; i++)
    if (a->hubs[i].entity != b->hubs[i].entity ||
        a->hubs[i].corroboration != b->hubs[i].corroboration)
      return false;
  return true;
}

/* Corroboration is kept between queries of one committed state (common.c's
 * memo): a second query answers exactly as the first, touched and
 * truncation included, and a commit that changes an entity's corroboration
 * is seen by the next query. Runs last: it writes. */
static void test_memo(void) {
  gd_rtxn *r;
  gd_query_params p;
  gd_linked_result a, b;
  gd_err err;
  gd_query_params_default(&p);
  p.ev.hub_cap[GD_TYPE_ADDRESS] = 1000; /* H (601 sellers) is weighed, not capped */
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t r1 = id_of(r, GD_TYPE_SELLER, "r1"), hub = id_of(r, GD_TYPE_ADDRESS, "H");
  CHECK(gd_query_linked(r, r1, 2, &p, 1000, 0, &a, &err) == GD_OK);
  CHECK(gd_query_linked(r, r1, 2, &p, 1000, 0, &b, &err) == GD_OK);
  CHECK(same_linked(&a, &b));
  CHECK(a.nhubs == 1 && a.hubs[0].entity == hub && a.hubs[0].context);
  CHECK_EQ_U(a.n, 4);
  gd_linked_result_free(&a);
  gd_linked_result_free(&b);
  /* A bound that cuts the walk cuts it at the same place both times. */
  for (uint64_t bound = 1; bound < 200; bound += 13) {
    p.max_touched = bound;
    CHECK(gd_query_linked(r, r1, 2, &p, 1000, 0, &a, &err) == GD_OK);
    CHECK(gd_query_linked(r, r1, 2, &p, 1000, 0, &b, &err) == GD_OK);
    CHECK(same_linked(&a, &b));
    gd_linked_result_free(&a);
    gd_linked_result_free(&b);
  }
  p.max_touched = 0;
  gd_store_read_end(r);

  /* Sixty of H's lowest-id sellers now share a device: H is corroborated
   * (evidence, c = 1) in the next state, although this thread computed
   * c = 0 for it a moment ago. (A request's new entities get ids in key
   * order, so those are the first sixty h-keys in strcmp order.) */
  static gd_link_in L[60];
  static char hk[600][8];
  for (int i = 0; i < 600; i++)
    snprintf(hk[i], sizeof hk[i], "h%d", i);
  qsort(hk, 600, sizeof hk[0], cmp_key);
  for (int i = 0; i < 60; i++)
    L[i] = (gd_link_in){R(GD_TYPE_SELLER, hk[i]), R(GD_TYPE_DEVICE, "G"), 80};
  CHECK(upsert(L, 60, NULL, 0) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  gd_evidence_info ei;
  CHECK(gd_query_evidence(r, hub, &p, &ei, &err) == GD_OK);
  CHECK(!ei.context && ei.corroboration == 1.0);
  CHECK(gd_query_linked(r, r1, 1, &p, 1000, 0, &a, &err) == GD_OK);
  CHECK(a.n == 603 && a.nhubs == 0);
  gd_linked_result_free(&a);
  /* Other parameters, same state: the memo is not reused across them. */
  p.ev.type_weight[GD_TYPE_DEVICE] = 0; /* G no longer corroborates */
  CHECK(gd_query_evidence(r, hub, &p, &ei, &err) == GD_OK);
  CHECK(ei.context && ei.corroboration < 0.2);
  gd_store_read_end(r);
}

/* The entity cache (common.c): an entry read in a later state never
 * serves an earlier one, a write invalidates what it changed, and a
 * cached list is visited as the store would be (rows alike). */
typedef struct lv {
  gd_link v[64];
  size_t n;
} lv;

static int lv_add(void *ctx, const gd_link *l) {
  lv *x = ctx;
  if (x->n < 64)
    x->v[x->n++] = *l;
  return 0;
}

static void test_entity_cache(void) {
  gd_rtxn *old, *r;
  gd_query_params p;
  gd_linked_result a;
  gd_err err;
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &old, NULL) == GD_OK);
  uint64_t r1 = id_of(old, GD_TYPE_SELLER, "r1");
  CHECK(gd_query_linked(old, r1, 1, &p, 1000, 0, &a, &err) == GD_OK);
  size_t before = a.n;
  gd_linked_result_free(&a);
  /* r1 and a new seller share two new devices. */
  static gd_link_in L[4];
  L[0] = (gd_link_in){R(GD_TYPE_SELLER, "r1"), R(GD_TYPE_DEVICE, "ND1"), 90};
  L[1] = (gd_link_in){R(GD_TYPE_SELLER, "z1"), R(GD_TYPE_DEVICE, "ND1"), 90};
  L[2] = (gd_link_in){R(GD_TYPE_SELLER, "r1"), R(GD_TYPE_DEVICE, "ND2"), 90};
  L[3] = (gd_link_in){R(GD_TYPE_SELLER, "z1"), R(GD_TYPE_DEVICE, "ND2"), 90};
  CHECK(upsert(L, 4, NULL, 0) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t z1 = id_of(r, GD_TYPE_SELLER, "z1");
  CHECK(gd_query_linked(r, r1, 1, &p, 1000, 0, &a, &err) == GD_OK);
  CHECK_EQ_U(a.n, before + 1);
  CHECK(find(&a, z1) != NULL);
  uint64_t touched_new = a.touched;
  gd_linked_result_free(&a);
  /* The same thread, the older state again: the entries the newer read
   * made do not serve it. */
  CHECK(gd_query_linked(old, r1, 1, &p, 1000, 0, &a, &err) == GD_OK);
  CHECK_EQ_U(a.n, before);
  CHECK(find(&a, z1) == NULL);
  gd_linked_result_free(&a);
  CHECK(gd_query_linked(r, r1, 1, &p, 1000, 0, &a, &err) == GD_OK);
  CHECK_EQ_U(a.touched, touched_new); /* from the cache now: rows charged alike */
  gd_linked_result_free(&a);
  /* Lists visited from memory as from the store, for every mask and
   * window: the same links, the same rows. */
  static const uint32_t masks[] = {0, 1u << GD_TYPE_SELLER, 1u << GD_TYPE_DEVICE,
                                   (1u << GD_TYPE_ADDRESS) | (1u << GD_TYPE_PHONE),
                                   1u << GD_TYPE_IP};
  static const int64_t win[][2] = {{0, 0}, {95, 0}, {0, 60}, {55, 100}};
  const char *keys[][2] = {{"s", "r1"}, {"s", "r4"}, {"d", "D"}, {"a", "W"}, {"s", "z1"}};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    uint64_t id = id_of(r, keys[k][0][0] == 's' ? GD_TYPE_SELLER
                           : keys[k][0][0] == 'd' ? GD_TYPE_DEVICE
                                                  : GD_TYPE_ADDRESS,
                        keys[k][1]);
    lv all = {0};
    CHECK(gd_store_visit_links(r, id, 0, 0, 0, lv_add, &all, NULL, NULL) == GD_OK);
    for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++)
      for (size_t w = 0; w < sizeof win / sizeof win[0]; w++) {
        lv x = {0}, y = {0};
        uint64_t tx = 0, ty = 0;
        CHECK(gd_store_visit_links(r, id, masks[m], win[w][0], win[w][1], lv_add, &x, &tx,
                                   NULL) == GD_OK);
        gd_links_visit_list(all.v, all.n, masks[m], win[w][0], win[w][1], lv_add, &y, &ty);
        CHECK_EQ_U(tx, ty);
        CHECK(x.n == y.n && memcmp(x.v, y.v, x.n * sizeof *x.v) == 0);
      }
  }
  gd_store_read_end(r);
  gd_store_read_end(old);
  /* A seller with no links: its list is empty and was never buffered, and
   * a fresh query still caches it and answers nothing (found by
   * fuzz_requests: memcpy from a NULL buffer). */
  static gd_entity_in E[1];
  E[0] = (gd_entity_in){GD_TYPE_SELLER, gd_str_c("alone"), NULL, 0, NULL, 0, 1};
  CHECK(upsert(NULL, 0, E, 1) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t alone = id_of(r, GD_TYPE_SELLER, "alone");
  for (int i = 0; i < 2; i++) {
    CHECK(gd_query_linked(r, alone, 2, &p, 1000, 0, &a, &err) == GD_OK);
    CHECK_EQ_U(a.n, 0);
    gd_linked_result_free(&a);
  }
  gd_store_read_end(r);
}

/* gd_query_entity_brief: what gd_store_get reads but the attributes, from
 * the store or from this thread's cache alike; a write that changes an
 * entity's record (labels here) is seen by a later read transaction, never
 * by an earlier one. */
static bool same_brief(gd_rtxn *r, uint64_t id) {
  gd_entity_view a, b;
  gd_err err;
  gd_ref ref = {id, 0, GD_STR_NULL};
  CHECK(gd_store_get(r, &ref, &a, &err) == GD_OK);
  CHECK(gd_query_entity_brief(r, id, &b, &err) == GD_OK);
  bool same = b.id == id && a.type == b.type && gd_str_eq(a.key, b.key) &&
              a.first_seen == b.first_seen && a.last_seen == b.last_seen &&
              a.degree == b.degree && a.seller_count == b.seller_count &&
              a.nlabels == b.nlabels && b.nattrs == 0;
  for (size_t i = 0; same && i < a.nlabels; i++)
    same = gd_str_eq(gd_entity_label(&a, i), gd_entity_label(&b, i));
  return same;
}

static bool has_label(gd_rtxn *r, uint64_t id, const char *label) {
  gd_entity_view v;
  gd_err err;
  CHECK(gd_query_entity_brief(r, id, &v, &err) == GD_OK);
  for (size_t i = 0; i < v.nlabels; i++)
    if (gd_str_eq(gd_entity_label(&v, i), gd_str_c(label)))
      return true;
  return false;
}

static void test_entity_brief(void) {
  gd_rtxn *old, *r;
  gd_err err;
  gd_entity_view v;
  CHECK(gd_store_read_begin(st, &old, NULL) == GD_OK);
  uint64_t ids[] = {id_of(old, GD_TYPE_SELLER, "r1"), id_of(old, GD_TYPE_SELLER, "r2"),
                    id_of(old, GD_TYPE_DEVICE, "D"), id_of(old, GD_TYPE_ADDRESS, "W"),
                    id_of(old, GD_TYPE_ADDRESS, "H")};
  for (int round = 0; round < 2; round++) /* read, then from the cache */
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
      CHECK(same_brief(old, ids[i]));
  CHECK(gd_query_entity_brief(old, 987654321, &v, &err) == GD_ENOTFOUND);
  CHECK(!has_label(old, ids[1], "brief-label"));

  static gd_str lab[1];
  static gd_attr_in at[1];
  static gd_entity_in E[1];
  lab[0] = gd_str_c("brief-label");
  at[0] = (gd_attr_in){gd_str_c("note"), gd_str_c("x")};
  E[0] = (gd_entity_in){GD_TYPE_SELLER, gd_str_c("r2"), at, 1, lab, 1, 0};
  CHECK(upsert(NULL, 0, E, 1) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(has_label(r, ids[1], "brief-label"));   /* the write is seen ... */
  CHECK(!has_label(old, ids[1], "brief-label")); /* ... by later reads only */
  CHECK(same_brief(r, ids[1]));
  CHECK(same_brief(old, ids[1]));
  gd_store_read_end(r);
  gd_store_read_end(old);
}

static void test_setup(void) { build(); }

/* Within max_hops, whatever order the frontier is relaxed in: in round 2,
 * qa improves qb (q0-qa-qb beats q0-qb), and qb must still be relaxed from
 * its round-1 path, so qc is reached in 2 hops (q0-qb-qc), not in 3. */
static void test_linked_hop_bound(void) {
  gd_rtxn *r;
  gd_query_params p;
  gd_linked_result res;
  gd_err err;
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t q0 = id_of(r, GD_TYPE_SELLER, "q0"), qa = id_of(r, GD_TYPE_SELLER, "qa");
  uint64_t qb = id_of(r, GD_TYPE_SELLER, "qb"), qc = id_of(r, GD_TYPE_SELLER, "qc");
  CHECK(qa < qb);
  for (unsigned h = 1; h <= 3; h++) {
    CHECK(gd_query_linked(r, q0, h, &p, 100, 0, &res, &err) == GD_OK);
    for (size_t i = 0; i < res.n; i++)
      CHECK(res.sellers[i].hops >= 1 && res.sellers[i].hops <= h);
    const gd_linked *lb = find(&res, qb), *lc = find(&res, qc);
    CHECK(lb && lb->hops == (h == 1 ? 1u : 2u));
    CHECK(h == 1 ? !lc : lc != NULL);
    if (h == 2 && lc) {
      CHECK_EQ_U(lc->hops, 2);
      CHECK_EQ_U(lc->steps[0].from, q0);
      CHECK_EQ_U(lc->steps[0].to, qb);
      CHECK_EQ_U(lc->steps[1].to, qc);
    }
    if (h == 3 && lc) /* the better path through qa fits now */
      CHECK_EQ_U(lc->hops, 3);
    gd_linked_result_free(&res);
  }
  gd_store_read_end(r);
}

/*
 * LinkedSellers against an oracle on a random graph (fixed seed): ties
 * summed from what the sellers share (entities weighed by
 * gd_query_evidence; a direct link by type_weight[SELLER]), then a
 * hop-bounded Bellman-Ford over every pair. For 1 to 3 hops the query
 * must find exactly the sellers the oracle reaches, each with the
 * oracle's best resistance, along a path whose every step carries the
 * oracle's tie and lists exactly the entities the two sellers share,
 * strongest first. Entities are shared by several sellers, so in 2 and 3
 * hops each list is met from many sellers (the query walks a list it
 * already mapped to its nodes again).
 */
#define ON 40 /* sellers */
#define OE 36 /* entities */
static void test_linked_oracle(void) {
  static char sk[ON][8], ek[OE][8], own[ON][8];
  static gd_link_in L[ON * OE + 2 * ON];
  static const int etypes[] = {GD_TYPE_DEVICE, GD_TYPE_ADDRESS, GD_TYPE_PHONE, GD_TYPE_EMAIL,
                               GD_TYPE_PAYMENT_ACCOUNT};
  static bool has[ON][OE], direct[ON][ON];
  uint64_t rng = 12345;
#define RND(n) ((rng = rng * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (n)
  size_t n = 0;
  for (int i = 0; i < ON; i++) { /* each seller's own device: it exists */
    snprintf(sk[i], sizeof sk[i], "o%d", i);
    snprintf(own[i], sizeof own[i], "od%d", i);
    L[n++] = (gd_link_in){R(GD_TYPE_SELLER, sk[i]), R(GD_TYPE_DEVICE, own[i]), 200};
  }
  for (int e = 0; e < OE; e++) {
    snprintf(ek[e], sizeof ek[e], "oe%d", e);
    int users = 1 + (int)RND(e % 6 == 0 ? 9 : 4);
    for (int k = 0; k < users; k++) {
      int v = (int)RND(ON);
      if (has[v][e])
        continue;
      has[v][e] = true;
      L[n++] = (gd_link_in){R(GD_TYPE_SELLER, sk[v]), R(etypes[e % 5], ek[e]), 200 + (int)RND(50)};
    }
  }
  for (int k = 0; k < 12; k++) {
    int a = (int)RND(ON), b = (int)RND(ON);
    if (a == b || direct[a][b])
      continue;
    direct[a][b] = direct[b][a] = true;
    L[n++] = (gd_link_in){R(GD_TYPE_SELLER, sk[a]), R(GD_TYPE_SELLER, sk[b]), 300};
  }
#undef RND
  CHECK(upsert(L, n, NULL, 0) == GD_OK);

  gd_rtxn *r;
  gd_query_params p;
  gd_err err;
  gd_query_params_default(&p);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  static uint64_t sid[ON], eid[OE];
  static double w[OE], tie[ON][ON];
  for (int i = 0; i < ON; i++)
    sid[i] = id_of(r, GD_TYPE_SELLER, sk[i]);
  for (int e = 0; e < OE; e++) {
    eid[e] = id_of(r, etypes[e % 5], ek[e]);
    gd_evidence_info ei;
    CHECK(gd_query_evidence(r, eid[e], &p, &ei, &err) == GD_OK);
    w[e] = ei.hub || ei.context ? 0 : ei.weight;
  }
  int weighed = 0;
  for (int e = 0; e < OE; e++)
    weighed += w[e] > 0;
  CHECK(weighed > OE / 2);
  for (int a = 0; a < ON; a++)
    for (int b = 0; b < ON; b++) {
      tie[a][b] = a != b && direct[a][b] ? p.ev.type_weight[GD_TYPE_SELLER] : 0;
      for (int e = 0; e < OE && a != b; e++)
        if (has[a][e] && has[b][e])
          tie[a][b] += w[e];
    }

  for (unsigned hops = 1; hops <= 3; hops++)
    for (int s0 = 0; s0 < ON; s0++) {
      double res[ON], prev[ON];
      for (int v = 0; v < ON; v++)
        res[v] = v == s0 ? 0 : INFINITY;
      for (unsigned h = 0; h < hops; h++) {
        memcpy(prev, res, sizeof res);
        for (int u = 0; u < ON; u++)
          for (int v = 0; v < ON; v++)
            if (isfinite(prev[u]) && tie[u][v] > 0 && prev[u] + 1 / tie[u][v] < res[v])
              res[v] = prev[u] + 1 / tie[u][v];
      }
      gd_linked_result lr;
      CHECK(gd_query_linked(r, sid[s0], hops, &p, 1000, 0, &lr, &err) == GD_OK);
      size_t want = 0;
      for (int v = 0; v < ON; v++)
        want += v != s0 && isfinite(res[v]);
      CHECK_EQ_U(lr.n, want);
      for (size_t i = 0; i < lr.n; i++) {
        const gd_linked *l = &lr.sellers[i];
        int v = -1;
        for (int k = 0; k < ON; k++)
          if (sid[k] == l->seller)
            v = k;
        CHECK(v >= 0 && v != s0 && isfinite(res[v]));
        if (v < 0 || !isfinite(res[v]))
          continue;
        CHECK(fabs(1 / l->score - res[v]) <= 1e-9 * res[v]);
        CHECK(l->hops >= 1 && l->hops <= hops);
        double sum = 0;
        uint64_t at = sid[s0];
        for (unsigned h = 0; h < l->hops; h++) {
          const gd_step *st_ = &l->steps[h];
          int a = -1, b = -1;
          for (int k = 0; k < ON; k++) {
            if (sid[k] == st_->from)
              a = k;
            if (sid[k] == st_->to)
              b = k;
          }
          CHECK(st_->from == at && a >= 0 && b >= 0);
          if (a < 0 || b < 0)
            break;
          at = st_->to;
          CHECK(fabs(st_->tie - tie[a][b]) <= 1e-9 * tie[a][b]);
          sum += 1 / st_->tie;
          size_t nsh = direct[a][b];
          for (int e = 0; e < OE; e++)
            nsh += has[a][e] && has[b][e] && w[e] > 0;
          CHECK_EQ_U(st_->nshared, nsh);
          for (size_t k = 0; k < st_->nshared; k++) {
            const gd_shared *sh = &st_->shared[k];
            if (k)
              CHECK(sh->weight <= st_->shared[k - 1].weight);
            if (sh->type == GD_TYPE_SELLER) {
              CHECK(direct[a][b] && sh->entity == sid[b]);
              continue;
            }
            int e = -1;
            for (int z = 0; z < OE; z++)
              if (eid[z] == sh->entity)
                e = z;
            CHECK(e >= 0 && has[a][e] && has[b][e] && sh->weight == w[e]);
          }
        }
        CHECK(at == l->seller);
        CHECK(fabs(sum - res[v]) <= 1e-9 * res[v]);
      }
      gd_linked_result_free(&lr);
    }
  gd_store_read_end(r);
}

TAP_MAIN(T(test_setup), T(test_linked), T(test_linked_hop_bound), T(test_paths), T(test_suspects), T(test_memo),
         T(test_entity_cache), T(test_entity_brief), T(test_linked_oracle), T(teardown))
