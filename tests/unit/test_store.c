/*
 * Unit tests for graphd/store: key normalisation, the write path through
 * the group-commit writer, reads, paging, deletes, map growth, reopen.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/audit.h"
#include "store/case.h"
#include "store/place.h"
#include "store/snapshot.h"
#include "store/store.h"
#include "store/store_int.h"
#include "store/writer.h"
#include "tap.h"

/* ---- fixtures ---- */

static char tmpdir[256];

static gd_store *open_store(uint64_t map_size) {
  gd_store_opts o = {.path = tmpdir, .map_size = map_size};
  gd_store *s = NULL;
  gd_err e;
  int rc = gd_store_open(&o, &s, &e);
  if (rc)
    fprintf(stderr, "open: %s\n", e.msg);
  CHECK(rc == GD_OK);
  return s;
}

static void fresh_dir(void) {
  char cmd[300];
  if (tmpdir[0]) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
      abort();
  }
  strcpy(tmpdir, "/tmp/gd-test-store-XXXXXX");
  if (!mkdtemp(tmpdir))
    abort();
}

/* A synchronous op: an upsert, a label change or a delete. */
typedef struct sync_op {
  gd_write_op op;
  int kind; /* 0 upsert, 1 labels, 2 delete, 3 bulk apply */
  const gd_bulk *bulk;
  gd_bulk_result bres;
  gd_upsert u;
  gd_upsert_result res;
  gd_ref ref;
  const gd_str *add, *rem;
  size_t nadd, nrem;
  char **labels;
  size_t nlabels;
  uint64_t removed;
  int code;
  char msg[GD_ERR_MSG_MAX];
  int done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} sync_op;

static int sync_apply(gd_wtxn *t, gd_write_op *op, gd_err *err) {
  sync_op *s = (sync_op *)op;
  switch (s->kind) {
  case 0:
    return gd_store_upsert(t, &s->u, &s->res, err);
  case 1:
    free(s->labels);
    s->labels = NULL;
    return gd_store_set_labels(t, &s->ref, s->add, s->nadd, s->rem, s->nrem, &s->labels,
                               &s->nlabels, err);
  case 3:
    return gd_store_bulk_apply(t, s->bulk, &s->bres, err);
  default:
    return gd_store_delete(t, &s->ref, &s->removed, err);
  }
}

static void sync_done(gd_write_op *op, const gd_err *err) {
  sync_op *s = (sync_op *)op;
  pthread_mutex_lock(&s->mu);
  s->code = err->code;
  snprintf(s->msg, sizeof s->msg, "%s", err->msg);
  s->done = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void sync_init(sync_op *s, int kind) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->op.apply = sync_apply;
  s->op.done = sync_done;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
}

static int sync_run(gd_writer *w, sync_op *s) {
  gd_writer_submit(w, &s->op);
  pthread_mutex_lock(&s->mu);
  while (!s->done)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  return s->code;
}

static gd_ref R(int type, const char *key) { return (gd_ref){0, type, gd_str_c(key)}; }

static int upsert_links(gd_writer *w, const gd_link_in *links, size_t n, gd_upsert_result *ret) {
  sync_op s;
  sync_init(&s, 0);
  s.u.links = links;
  s.u.nlinks = n;
  int rc = sync_run(w, &s);
  if (ret)
    *ret = s.res;
  if (rc)
    fprintf(stderr, "  (upsert: %s)\n", s.msg);
  return rc;
}

static int get(gd_store *st, gd_ref ref, gd_entity_view *ret) {
  gd_rtxn *r;
  gd_err e;
  CHECK(gd_store_read_begin(st, &r, &e) == GD_OK);
  int rc = gd_store_get(r, &ref, ret, &e);
  gd_store_read_end(r); /* views are not used after this in the tests below
                           except the scalar fields, which were copied */
  return rc;
}

/* ---- tests ---- */

static void test_normalize(void) {
  char out[64];
  size_t n;
  gd_err e;
  CHECK(gd_key_normalize(GD_TYPE_SELLER, gd_str_c("  Acme \t Shop "), out, &n, &e) == 0);
  CHECK(n == 9 && memcmp(out, "acme shop", 9) == 0);
  CHECK(gd_key_normalize(GD_TYPE_PHONE, gd_str_c("+49 (30) 123-45"), out, &n, &e) == 0);
  CHECK(n == 10 && memcmp(out, "+493012345", 10) == 0);
  CHECK(gd_key_normalize(GD_TYPE_PHONE, gd_str_c("0049+30"), out, &n, &e) == 0);
  CHECK(n == 6 && memcmp(out, "004930", 6) == 0);
  CHECK(gd_key_normalize(GD_TYPE_EMAIL, gd_str_c("Bob@Example.COM"), out, &n, &e) == 0);
  CHECK(memcmp(out, "bob@example.com", n) == 0);
  CHECK(gd_key_normalize(GD_TYPE_SELLER, gd_str_c(""), out, &n, &e) == GD_EINVALID);
  CHECK(gd_key_normalize(GD_TYPE_SELLER, gd_str_c("   "), out, &n, &e) == GD_EINVALID);
  CHECK(gd_key_normalize(GD_TYPE_PHONE, gd_str_c("call me"), out, &n, &e) == GD_EINVALID);
  CHECK(gd_key_normalize(GD_TYPE_SELLER, (gd_str){"a\xff", 2}, out, &n, &e) == GD_EINVALID);
  CHECK_STR(e.msg, "key is not valid UTF-8");
  CHECK(gd_type_parse("payment_account", 15) == GD_TYPE_PAYMENT_ACCOUNT);
  CHECK(gd_type_parse("ENTITY_TYPE_IP", 14) == GD_TYPE_IP);
  CHECK(gd_type_parse("Seller", 6) == GD_TYPE_SELLER);
  CHECK(gd_type_parse("vehicle", 7) == 0);
}

static void test_upsert_and_read(void) {
  fresh_dir();
  gd_store *st = open_store(0);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);

  gd_link_in links[] = {
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_DEVICE, "d1"), 100},
      {R(GD_TYPE_SELLER, "s2"), R(GD_TYPE_DEVICE, "d1"), 200},
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_ADDRESS, "a1"), 150},
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_SELLER, "s2"), 120},
  };
  gd_upsert_result res;
  CHECK(upsert_links(w, links, 4, &res) == GD_OK);
  CHECK_EQ_U(res.totals.entities_created, 4);
  CHECK_EQ_U(res.totals.links_created, 4);
  CHECK_EQ_U(res.totals.links_updated, 0);

  /* Observe s1-d1 again, earlier and later. */
  gd_link_in again[] = {
      {R(GD_TYPE_DEVICE, "d1"), R(GD_TYPE_SELLER, "s1"), 50},
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_DEVICE, "d1"), 300},
  };
  CHECK(upsert_links(w, again, 2, &res) == GD_OK);
  CHECK_EQ_U(res.totals.links_created, 0);
  CHECK_EQ_U(res.totals.links_updated, 2); /* observations, not distinct links */
  CHECK_EQ_U(res.totals.entities_created, 0);

  gd_entity_view v;
  CHECK(get(st, R(GD_TYPE_SELLER, "s1"), &v) == GD_OK);
  CHECK_EQ_U(v.degree, 3);
  CHECK_EQ_U(v.seller_count, 1);
  CHECK_EQ_U(v.first_seen, 50);
  CHECK_EQ_U(v.last_seen, 300);
  CHECK(get(st, R(GD_TYPE_DEVICE, "d1"), &v) == GD_OK);
  CHECK_EQ_U(v.degree, 2);
  CHECK_EQ_U(v.seller_count, 2);
  uint64_t d1 = v.id;

  /* Adjacency is symmetric and carries counts and times. */
  gd_rtxn *r;
  gd_link out[8];
  size_t n;
  bool more;
  gd_adj_query q = {.limit = 8};
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_links(r, d1, &q, out, &n, &more, NULL) == GD_OK);
  CHECK_EQ_U(n, 2);
  CHECK(!more);
  CHECK_EQ_U(out[0].nbr_type, GD_TYPE_SELLER);
  CHECK_EQ_U(out[0].count, 3);
  CHECK_EQ_U(out[0].first_seen, 50);
  CHECK_EQ_U(out[0].last_seen, 300);
  gd_link back[8];
  CHECK(gd_store_links(r, out[0].nbr, &q, back, &n, &more, NULL) == GD_OK);
  int found = 0;
  for (size_t i = 0; i < n; i++)
    if (back[i].nbr == d1) {
      found = 1;
      CHECK_EQ_U(back[i].count, 3);
      CHECK_EQ_U(back[i].nbr_type, GD_TYPE_DEVICE);
    }
  CHECK(found);

  /* Stats. */
  gd_stats stt;
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], 2);
  CHECK_EQ_U(stt.entities[GD_TYPE_DEVICE], 1);
  CHECK_EQ_U(stt.entities_total, 4);
  CHECK_EQ_U(stt.links, 4);
  CHECK_EQ_U(stt.schema_version, GD_SCHEMA_VERSION);
  gd_store_read_end(r);

  gd_writer_stop(w);
  gd_store_close(st);

  /* Everything survives a reopen. */
  st = open_store(0);
  CHECK(get(st, R(GD_TYPE_SELLER, "s2"), &v) == GD_OK);
  CHECK_EQ_U(v.degree, 2);
  gd_store_close(st);
}

static void test_atomic_and_errors(void) {
  fresh_dir();
  gd_store *st = open_store(0);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);

  /* A self-link at the end rolls back the whole request. */
  gd_link_in bad[] = {
      {R(GD_TYPE_SELLER, "x1"), R(GD_TYPE_DEVICE, "dx"), 1},
      {R(GD_TYPE_SELLER, "x2"), R(GD_TYPE_SELLER, "x2"), 1},
  };
  sync_op s;
  sync_init(&s, 0);
  s.u.links = bad;
  s.u.nlinks = 2;
  CHECK(sync_run(w, &s) == GD_EINVALID);
  CHECK(strstr(s.msg, "links[1]") != NULL);
  gd_entity_view v;
  CHECK(get(st, R(GD_TYPE_SELLER, "x1"), &v) == GD_ENOTFOUND);

  /* A link to a missing id. */
  gd_link_in byid[] = {{R(GD_TYPE_SELLER, "x1"), {12345, 0, GD_STR_NULL}, 1}};
  sync_init(&s, 0);
  s.u.links = byid;
  s.u.nlinks = 1;
  CHECK(sync_run(w, &s) == GD_ENOTFOUND);
  CHECK(strstr(s.msg, "links[0].b") != NULL);
  CHECK(get(st, R(GD_TYPE_SELLER, "x1"), &v) == GD_ENOTFOUND);

  /* request_id: the retry is a no-op that says so. */
  gd_link_in one[] = {{R(GD_TYPE_SELLER, "y1"), R(GD_TYPE_PHONE, "+1555"), 7}};
  sync_init(&s, 0);
  s.u.links = one;
  s.u.nlinks = 1;
  s.u.request_id = gd_str_c("req-1");
  CHECK(sync_run(w, &s) == GD_OK);
  CHECK(!s.res.duplicate);
  CHECK_EQ_U(s.res.totals.links_created, 1);
  sync_init(&s, 0);
  s.u.links = one;
  s.u.nlinks = 1;
  s.u.request_id = gd_str_c("req-1");
  CHECK(sync_run(w, &s) == GD_OK);
  CHECK(s.res.duplicate);
  CHECK_EQ_U(s.res.totals.links_created + s.res.totals.links_updated, 0);
  CHECK(get(st, R(GD_TYPE_SELLER, "y1"), &v) == GD_OK);
  gd_rtxn *r;
  gd_link out[4];
  size_t n;
  bool more;
  gd_adj_query q = {.limit = 4};
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_links(r, v.id, &q, out, &n, &more, NULL) == GD_OK);
  CHECK_EQ_U(n, 1);
  CHECK_EQ_U(out[0].count, 1);
  gd_store_read_end(r);

  gd_writer_stop(w);
  gd_store_close(st);
}

static void test_entities_labels_delete(void) {
  fresh_dir();
  gd_store *st = open_store(0);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);

  /* A 600-byte key is stored by hash and found again. */
  char longkey[601];
  memset(longkey, 'k', 600);
  longkey[600] = '\0';
  gd_attr_in attrs[] = {{gd_str_c("name"), gd_str_c("Acme")}, {gd_str_c("country"), gd_str_c("DE")}};
  gd_str labels[] = {gd_str_c("counterfeit")};
  gd_entity_in ents[] = {
      {GD_TYPE_SELLER, gd_str_c("s1"), attrs, 2, labels, 1, 10},
      {GD_TYPE_ADDRESS, gd_str_c(longkey), NULL, 0, NULL, 0, 10},
  };
  sync_op s;
  sync_init(&s, 0);
  s.u.entities = ents;
  s.u.nentities = 2;
  CHECK(sync_run(w, &s) == GD_OK);
  CHECK_EQ_U(s.res.totals.entities_created, 2);

  gd_link_in links[] = {
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_ADDRESS, longkey), 20},
      {R(GD_TYPE_SELLER, "s2"), R(GD_TYPE_ADDRESS, longkey), 20},
      {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_DEVICE, "d"), 20},
  };
  CHECK(upsert_links(w, links, 3, NULL) == GD_OK);

  gd_rtxn *r;
  gd_entity_view v;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  gd_ref ref = R(GD_TYPE_SELLER, "s1");
  CHECK(gd_store_get(r, &ref, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.nattrs, 2);
  gd_str an, av;
  gd_entity_attr(&v, 0, &an, &av);
  CHECK(gd_str_eq(an, gd_str_c("country")) && gd_str_eq(av, gd_str_c("DE")));
  CHECK_EQ_U(v.nlabels, 1);
  CHECK(gd_str_eq(gd_entity_label(&v, 0), gd_str_c("counterfeit")));
  ref = R(GD_TYPE_ADDRESS, longkey);
  CHECK(gd_store_get(r, &ref, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.key.n, 600);
  CHECK_EQ_U(v.seller_count, 2);
  gd_store_read_end(r);

  /* Labels: add two, remove one. */
  gd_str add[] = {gd_str_c("complaint:brand"), gd_str_c("cleared")};
  gd_str rem[] = {gd_str_c("counterfeit"), gd_str_c("absent")};
  sync_init(&s, 1);
  s.ref = R(GD_TYPE_SELLER, "s1");
  s.add = add;
  s.nadd = 2;
  s.rem = rem;
  s.nrem = 2;
  CHECK(sync_run(w, &s) == GD_OK);
  CHECK_EQ_U(s.nlabels, 2);
  if (s.nlabels == 2) {
    CHECK_STR(s.labels[0], "cleared");
    CHECK_STR(s.labels[1], "complaint:brand");
  }
  free(s.labels);

  /* Delete s1: links gone on both sides. */
  sync_init(&s, 2);
  s.ref = R(GD_TYPE_SELLER, "s1");
  CHECK(sync_run(w, &s) == GD_OK);
  CHECK_EQ_U(s.removed, 2);
  CHECK(get(st, R(GD_TYPE_SELLER, "s1"), &v) == GD_ENOTFOUND);
  CHECK(get(st, R(GD_TYPE_DEVICE, "d"), &v) == GD_OK);
  CHECK_EQ_U(v.degree, 0);
  CHECK(get(st, R(GD_TYPE_ADDRESS, longkey), &v) == GD_OK);
  CHECK_EQ_U(v.degree, 1);
  CHECK_EQ_U(v.seller_count, 1);
  gd_stats stt;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.links, 1);
  CHECK_EQ_U(stt.labels, 0);
  CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], 1);
  gd_store_read_end(r);

  gd_writer_stop(w);
  gd_store_close(st);
}

static void test_links_paging_filters(void) {
  fresh_dir();
  gd_store *st = open_store(0);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  /* A hub address linked to 50 sellers, 10 devices and 5 phones. */
  gd_link_in links[65];
  char keys[65][16];
  for (int i = 0; i < 65; i++) {
    int type = i < 50 ? GD_TYPE_SELLER : i < 60 ? GD_TYPE_DEVICE : GD_TYPE_PHONE;
    snprintf(keys[i], sizeof keys[i], "%d", 1000 + i);
    links[i] = (gd_link_in){R(GD_TYPE_ADDRESS, "hub"), R(type, keys[i]), 100 + i};
  }
  CHECK(upsert_links(w, links, 65, NULL) == GD_OK);

  gd_rtxn *r;
  gd_entity_view v;
  gd_ref hub = R(GD_TYPE_ADDRESS, "hub");
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_get(r, &hub, &v, NULL) == GD_OK);
  CHECK_EQ_U(v.seller_count, 50);
  CHECK_EQ_U(v.degree, 65);

  gd_link out[20];
  size_t n, total = 0;
  bool more = true;
  gd_adj_query q = {.limit = 20};
  uint64_t prev = 0;
  while (more) {
    CHECK(gd_store_links(r, v.id, &q, out, &n, &more, NULL) == GD_OK);
    for (size_t i = 0; i < n; i++) {
      uint64_t pos = GD_ADJ_POS(out[i].nbr_type, out[i].nbr);
      CHECK(pos > prev);
      prev = pos;
    }
    total += n;
    if (n)
      q.after = GD_ADJ_POS(out[n - 1].nbr_type, out[n - 1].nbr);
  }
  CHECK_EQ_U(total, 65);

  /* Type filter: devices and phones only. */
  q = (gd_adj_query){.limit = 20, .type_mask = (1u << GD_TYPE_DEVICE) | (1u << GD_TYPE_PHONE)};
  CHECK(gd_store_links(r, v.id, &q, out, &n, &more, NULL) == GD_OK);
  CHECK_EQ_U(n, 15);
  CHECK(!more);
  CHECK_EQ_U(out[0].nbr_type, GD_TYPE_DEVICE);
  CHECK_EQ_U(out[14].nbr_type, GD_TYPE_PHONE);

  /* Time window: observations at 100+i; [155, 158] holds i = 55..58. */
  q = (gd_adj_query){.limit = 20, .since = 155, .until = 158};
  CHECK(gd_store_links(r, v.id, &q, out, &n, &more, NULL) == GD_OK);
  CHECK_EQ_U(n, 4);
  gd_store_read_end(r);
  gd_writer_stop(w);
  gd_store_close(st);
}

/* Upserts n links, seller "s<i>" to device "<dprefix><i / 2>", in
 * `batches` equal calls through w. */
static void load_seller_devices(gd_writer *w, int n, int batches, const char *dprefix) {
  gd_link_in *links = calloc((size_t)n, sizeof *links);
  char(*sk)[16] = calloc((size_t)n, sizeof *sk);
  char(*dk)[48] = calloc((size_t)n, sizeof *dk);
  CHECK(links && sk && dk);
  for (int i = 0; links && sk && dk && i < n; i++) {
    snprintf(sk[i], sizeof *sk, "s%d", i);
    snprintf(dk[i], sizeof *dk, "%s%d", dprefix, i / 2);
    links[i] = (gd_link_in){R(GD_TYPE_SELLER, sk[i]), R(GD_TYPE_DEVICE, dk[i]), 5};
  }
  for (int b = 0; links && sk && dk && b < batches; b++)
    CHECK(upsert_links(w, links + b * (n / batches), (size_t)(n / batches), NULL) == GD_OK);
  free(links), free(sk), free(dk);
}

/* RssFile of this process, in KiB (/proc/self/status), or -1. */
static long rss_file_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "RssFile: %ld kB", &kib) == 1)
      break;
  if (f)
    fclose(f);
  return kib;
}

/*
 * gd_store_drop_resident: after a read of every record, dropping the
 * map's pages takes them out of RssFile (by at least half the data
 * file), and the store reads the same afterwards, within the same read
 * transaction too.
 */
static void test_drop_resident(void) {
  fresh_dir();
  gd_store *st = open_store(64u << 20);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  enum { N = 20000 };
  load_seller_devices(w, N, 4, "device-with-a-longer-key-");
  gd_writer_stop(w);
  char path[300];
  struct stat sb;
  snprintf(path, sizeof path, "%s/data.mdb", tmpdir);
  CHECK(stat(path, &sb) == 0);

  gd_rtxn *r;
  gd_graph_export a, b;
  gd_err e;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &a, NULL) == GD_OK);
  gd_store_read_end(r);
  long before = rss_file_kib();
  CHECK(gd_store_drop_resident(st, &e) == GD_OK);
  long after = rss_file_kib();
  printf("# drop_resident: data file %lld KiB, RssFile %ld -> %ld KiB\n",
         (long long)sb.st_size / 1024, before, after);
  CHECK(before > 0 && after >= 0 && (before - after) * 1024 * 2 >= (long)sb.st_size);
  /* Inside a read transaction (the export's own drops): the internal form,
   * and the pages come back with the same bytes. */
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &b, NULL) == GD_OK);
  CHECK(gd__store_drop_resident(st, &e) == GD_OK);
  CHECK(strcmp(a.checksum, b.checksum) == 0 && a.n_sellers == N);
  gd_graph_export_free(&b);
  CHECK(gd_store_export_graph(r, 0, 0, &b, NULL) == GD_OK);
  CHECK(strcmp(a.checksum, b.checksum) == 0);
  gd_store_read_end(r);
  gd_graph_export_free(&a);
  gd_graph_export_free(&b);
  gd_store_close(st);
}

static void test_map_growth(void) {
  fresh_dir();
  /* A 1 MiB map fills after a few thousand links. Small groups find it
   * grown before they start (gd__store_grow_ahead: never less than half
   * free), so none is applied twice. */
  gd_store *st = open_store(1 << 20);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  enum { N = 4000 };
  load_seller_devices(w, N, 40, "d");
  gd_writer_stats ws;
  gd_writer_stats_get(w, &ws);
  printf("# map growth: %llu growths ahead, %llu groups applied again\n",
         (unsigned long long)(ws.grows - ws.retries), (unsigned long long)ws.retries);
  CHECK(ws.grows >= 1);
  CHECK_EQ_U(ws.retries, 0);
  gd_rtxn *r;
  gd_stats stt;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.links, N);
  CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], N);
  CHECK_EQ_U(stt.entities[GD_TYPE_DEVICE], N / 2);
  CHECK(stt.map_bytes > (1 << 20));
  uint64_t map_before = stt.map_bytes;
  gd_store_read_end(r);

  /* One group larger than the free half: it fills the map, which grows,
   * and the whole group is applied again without losing or duplicating
   * anything. */
  enum { BIG = 60000 };
  gd_link_in *big = calloc(BIG, sizeof *big);
  char(*bk)[24] = calloc(BIG, sizeof *bk);
  CHECK(big && bk);
  for (int i = 0; big && bk && i < BIG; i++) {
    snprintf(bk[i], sizeof *bk, "big-seller-%d", i);
    big[i] = (gd_link_in){R(GD_TYPE_SELLER, bk[i]), R(GD_TYPE_DEVICE, "d0"), 5};
  }
  if (big && bk)
    CHECK(upsert_links(w, big, BIG, NULL) == GD_OK);
  free(big), free(bk);
  gd_writer_stats_get(w, &ws);
  CHECK(ws.retries >= 1);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.links, N + BIG);
  CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], N + BIG);
  CHECK_EQ_U(stt.entities[GD_TYPE_DEVICE], N / 2);
  CHECK(stt.map_bytes > map_before);
  gd_store_read_end(r);
  gd_writer_stop(w);
  gd_store_close(st);
}

/*
 * Map full during a put and during a commit. LMDB can report MDB_MAP_FULL
 * at commit time (saving the freelist and our
 * counters needs pages) after every put of the transaction succeeded. The
 * commit must then fail as a whole: nothing of the transaction visible,
 * the counters matching the data, and the same write succeeding once the
 * map has grown (never MDB_BAD_TXN). Transactions of k links fill a map
 * with no room to grow; for some k the first failure comes from the
 * commit, and that is the case checked.
 */
static void test_map_full_at_commit(void) {
  int commit_failures = 0, put_failures = 0;
  for (int k = 1; k <= 24; k++) {
    fresh_dir();
    gd_store_opts o = {.path = tmpdir, .map_size = 1 << 20, .map_size_max = 1 << 20};
    gd_store *st = NULL;
    CHECK(gd_store_open(&o, &st, NULL) == GD_OK);
    static char sk[64][32], dk[64][32];
    gd_link_in links[64];
    uint64_t committed = 0;
    int rc = GD_OK;
    gd_err err;
    for (int round = 0; round < 100000; round++) {
      for (int i = 0; i < k; i++) {
        snprintf(sk[i], 32, "seller-%d-%d", round, i);
        snprintf(dk[i], 32, "device-%d", (round * k + i) / 3);
        links[i] = (gd_link_in){R(GD_TYPE_SELLER, sk[i]), R(GD_TYPE_DEVICE, dk[i]), 7};
      }
      gd_upsert u = {.links = links, .nlinks = (size_t)k};
      gd_upsert_result res;
      gd_wtxn *t;
      CHECK(gd__wtxn_begin(st, &t, &err) == GD_OK);
      rc = gd_store_upsert(t, &u, &res, &err);
      if (rc) {
        gd__wtxn_abort(t);
        break;
      }
      rc = gd__wtxn_commit(t, &err);
      if (rc)
        break;
      committed += (uint64_t)k;
    }
    CHECK(rc == GD_EMAPFULL);
    if (rc == GD_EMAPFULL && strstr(err.msg, "commit")) {
      commit_failures++;
      /* Nothing of the failed transaction is visible; counters agree. */
      gd_rtxn *r;
      gd_stats stt;
      CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
      CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
      CHECK_EQ_U(stt.links, committed);
      CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], committed);
      gd_entity_view v;
      CHECK(gd_store_get(r, &links[0].a, &v, NULL) == GD_ENOTFOUND);
      gd_store_read_end(r);
      /* Room to grow: the same transaction now commits. */
      st->map_size_max = st->map_size * 4; /* (the store rounds a small map up) */
      CHECK(gd__store_grow(st, &err) == GD_OK);
      gd_upsert u = {.links = links, .nlinks = (size_t)k};
      gd_upsert_result res;
      gd_wtxn *t;
      CHECK(gd__wtxn_begin(st, &t, &err) == GD_OK);
      CHECK(gd_store_upsert(t, &u, &res, &err) == GD_OK);
      CHECK(gd__wtxn_commit(t, &err) == GD_OK);
      CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
      CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
      CHECK_EQ_U(stt.links, committed + (uint64_t)k);
      CHECK(gd_store_get(r, &links[0].a, &v, NULL) == GD_OK);
      gd_store_read_end(r);
    }
    gd_store_close(st);
  }
  /* One large transaction: the map fills during a put instead. */
  fresh_dir();
  gd_store_opts o = {.path = tmpdir, .map_size = 1 << 20, .map_size_max = 1 << 20};
  gd_store *st = NULL;
  CHECK(gd_store_open(&o, &st, NULL) == GD_OK);
  enum { BIG = 20000 };
  static gd_link_in big[BIG];
  static char bk[BIG][24];
  for (int i = 0; i < BIG; i++) {
    snprintf(bk[i], sizeof bk[i], "big-seller-%d", i);
    big[i] = (gd_link_in){R(GD_TYPE_SELLER, bk[i]), R(GD_TYPE_DEVICE, "shared-device"), 3};
  }
  gd_upsert u = {.links = big, .nlinks = BIG};
  gd_upsert_result res;
  gd_wtxn *t;
  gd_err err;
  CHECK(gd__wtxn_begin(st, &t, &err) == GD_OK);
  int rc = gd_store_upsert(t, &u, &res, &err);
  CHECK(rc == GD_EMAPFULL);
  if (rc == GD_EMAPFULL)
    put_failures++;
  gd__wtxn_abort(t);
  gd_rtxn *r;
  gd_stats stt;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.links, 0);
  gd_store_read_end(r);
  st->map_size_max = 64 << 20;
  for (int i = 0; i < 6 && rc == GD_EMAPFULL; i++) {
    CHECK(gd__store_grow(st, &err) == GD_OK);
    CHECK(gd__wtxn_begin(st, &t, &err) == GD_OK);
    if ((rc = gd_store_upsert(t, &u, &res, &err)) == GD_OK)
      rc = gd__wtxn_commit(t, &err);
    else
      gd__wtxn_abort(t);
  }
  CHECK(rc == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.links, BIG);
  gd_store_read_end(r);
  gd_store_close(st);
  printf("# map full: %d of 24 fills failed at commit; %d at a put\n", commit_failures,
         put_failures);
  CHECK(commit_failures > 0);
  CHECK(put_failures > 0);
}

/* Many concurrent submitters share commits. */
typedef struct {
  gd_writer *w;
  int id;
} thr_arg;

static void *submitter(void *p) {
  thr_arg *a = p;
  for (int i = 0; i < 20; i++) {
    char sk[32], dk[32];
    snprintf(sk, sizeof sk, "t%d-%d", a->id, i);
    snprintf(dk, sizeof dk, "dev%d", i);
    gd_link_in l = {R(GD_TYPE_SELLER, sk), R(GD_TYPE_DEVICE, dk), 1};
    if (upsert_links(a->w, &l, 1, NULL) != GD_OK)
      return (void *)1;
  }
  return NULL;
}

static void test_group_commit(void) {
  fresh_dir();
  gd_store *st = open_store(0);
  gd_writer *w;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  pthread_t th[16];
  thr_arg args[16];
  for (int i = 0; i < 16; i++) {
    args[i] = (thr_arg){w, i};
    pthread_create(&th[i], NULL, submitter, &args[i]);
  }
  for (int i = 0; i < 16; i++) {
    void *rv;
    pthread_join(th[i], &rv);
    CHECK(rv == NULL);
  }
  gd_writer_stats ws;
  gd_writer_stats_get(w, &ws);
  CHECK_EQ_U(ws.requests, 320);
  CHECK(ws.commits < ws.requests);
  printf("# group commit: %llu requests in %llu commits\n", (unsigned long long)ws.requests,
         (unsigned long long)ws.commits);
  gd_writer_stop(w);
  gd_store_close(st);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0)
    abort();
}

/* A test op whose apply can be held at a gate; done records its order. */
typedef struct bop {
  gd_write_op op;
  pthread_mutex_t *mu;
  pthread_cond_t *cv;
  int *gate;               /* apply waits while *gate is 0 (NULL: no wait) */
  _Atomic int started;
  int order;               /* place among the done callbacks, from 1 */
  int64_t done_at;
  int txnfull;             /* applies fail with GD_ETXNFULL this many times (-1: always) */
  int code;                /* the done callback's code (checked GD_OK unless txnfull) */
  _Atomic int applied;     /* applies begun */
} bop;

static _Atomic int bop_ndone;

static int bop_apply(gd_wtxn *t, gd_write_op *op, gd_err *err) {
  (void)t;
  bop *b = (bop *)op;
  atomic_store(&b->started, 1);
  atomic_fetch_add(&b->applied, 1);
  if (b->txnfull) {
    if (b->txnfull > 0)
      b->txnfull--;
    return gd_err_set(err, GD_ETXNFULL, "transaction too large");
  }
  if (b->gate) {
    pthread_mutex_lock(b->mu);
    while (!*b->gate)
      pthread_cond_wait(b->cv, b->mu);
    pthread_mutex_unlock(b->mu);
  }
  return GD_OK;
}

static void bop_done(gd_write_op *op, const gd_err *err) {
  ((bop *)op)->code = err->code;
  if (!((bop *)op)->txnfull)
    CHECK(err->code == GD_OK);
  ((bop *)op)->done_at = gd_now_ns();
  ((bop *)op)->order = atomic_fetch_add(&bop_ndone, 1) + 1;
}

static void bop_open(bop *b) {
  pthread_mutex_lock(b->mu);
  *b->gate = 1;
  pthread_cond_broadcast(b->cv);
  pthread_mutex_unlock(b->mu);
}

static size_t groups[16], ngroups;
static void observe_group(void *ctx, size_t ops, int64_t ns) {
  (void)ctx, (void)ns;
  if (ngroups < 16)
    groups[ngroups++] = ops;
}

/* A store and a writer for the writer tests, and an op that holds the
 * writer at a gate (wtest_hold, wtest_release) so that what is submitted
 * meanwhile queues behind it. */
typedef struct wtest {
  gd_store *st;
  gd_writer *w;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int gate;
  bop hold;
} wtest;

static void wtest_start(wtest *t) {
  fresh_dir();
  t->st = open_store(0);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  atomic_store(&bop_ndone, 0);
  CHECK(gd_writer_start(t->st, 0, &t->w, NULL) == GD_OK);
  ngroups = 0;
  gd_writer_observe(t->w, observe_group, NULL);
}

/* Submits the holding op and waits until the writer is inside it. */
static void wtest_hold(wtest *t) {
  t->gate = 0;
  t->hold = (bop){{.apply = bop_apply, .done = bop_done}, .mu = &t->mu, .cv = &t->cv,
                  .gate = &t->gate};
  gd_writer_submit(t->w, &t->hold.op);
  while (!atomic_load(&t->hold.started))
    usleep(1000);
}

static void wtest_wait(int ndone) {
  while (atomic_load(&bop_ndone) < ndone)
    usleep(1000);
}

static void wtest_stop(wtest *t) {
  gd_writer_stop(t->w);
  gd_store_close(t->st);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
}

/* Ops nobody waits for (gd_write_op.linger) wait for company: ten queued
 * behind a busy writer share one commit, and one alone is held for the
 * linger before it commits. */
static void test_writer_linger(void) {
  wtest t;
  wtest_start(&t);
  bop l[10];
  wtest_hold(&t);
  for (int i = 0; i < 10; i++) {
    l[i] = (bop){{.apply = bop_apply, .done = bop_done, .lazy_sync = true, .linger = true}, .mu = NULL};
    gd_writer_submit(t.w, &l[i].op);
  }
  bop_open(&t.hold);
  wtest_wait(11);
  CHECK_EQ_U(ngroups, 2);
  CHECK_EQ_U(groups[0], 1);  /* the busy op: the writer had taken it alone */
  CHECK_EQ_U(groups[1], 10); /* the ten that queued behind it, one commit */

  bop one = {{.apply = bop_apply, .done = bop_done, .lazy_sync = true, .linger = true}, .mu = NULL};
  int64_t t0 = gd_now_ns();
  gd_writer_submit(t.w, &one.op);
  wtest_wait(12);
  CHECK(one.done_at - t0 >= GD_WRITER_LINGER_NS); /* held for company first */
  CHECK_EQ_U(ngroups, 3);
  wtest_stop(&t);
}

/* Bulk ops (gd_write_op.bulk) give way. An op someone waits on, queued
 * while a group of bulk ops has been applied for GD_WRITER_CUT_NS, joins
 * that group's transaction after the op in hand, and the bulk ops left go
 * back to the queue in order. One queued beside bulk ops goes first in the
 * next group and takes at most GD_WRITER_SHARE_BYTES of bulk input with
 * it. */
static void test_writer_bulk(void) {
  wtest t;
  wtest_start(&t);
  int gate2 = 0;
  bop b[4], u = {{.apply = bop_apply, .done = bop_done}, .mu = NULL};
  for (int i = 0; i < 4; i++)
    b[i] = (bop){{.apply = bop_apply, .done = bop_done, .bulk = true,
                  .bytes = i ? (size_t)5 << 20 : 0},
                 .mu = &t.mu, .cv = &t.cv, .gate = i ? NULL : &gate2};
  wtest_hold(&t);
  for (int i = 0; i < 4; i++)
    gd_writer_submit(t.w, &b[i].op);
  bop_open(&t.hold);
  while (!atomic_load(&b[0].started)) /* b[0..3] are one group, in b[0] */
    usleep(1000);
  gd_writer_submit(t.w, &u.op);
  usleep(GD_WRITER_CUT_NS / 1000 + 50000); /* the group has run long enough */
  bop_open(&b[0]);
  wtest_wait(6);
  CHECK_EQ_U(t.hold.order, 1);
  CHECK_EQ_U(b[0].order, 2);
  CHECK_EQ_U(u.order, 3); /* ahead of the bulk ops queued before it */
  CHECK_EQ_U(b[1].order, 4);
  CHECK_EQ_U(b[2].order, 5);
  CHECK_EQ_U(b[3].order, 6);
  CHECK_EQ_U(ngroups, 3);
  CHECK_EQ_U(groups[0], 1); /* the holding op */
  CHECK_EQ_U(groups[1], 2); /* b[0], then u in the place of the rest */
  CHECK_EQ_U(groups[2], 3); /* b[1..3], in order */

  /* Queued beside bulk ops: first, with 5 MiB of bulk input of the 8. */
  bop c[3], u2 = {{.apply = bop_apply, .done = bop_done}, .mu = NULL};
  for (int i = 0; i < 3; i++)
    c[i] = (bop){{.apply = bop_apply, .done = bop_done, .bulk = true, .bytes = (size_t)5 << 20}, .mu = NULL};
  wtest_hold(&t);
  for (int i = 0; i < 3; i++)
    gd_writer_submit(t.w, &c[i].op);
  gd_writer_submit(t.w, &u2.op);
  bop_open(&t.hold);
  wtest_wait(11);
  CHECK_EQ_U(u2.order, 8);
  CHECK_EQ_U(c[0].order, 9);
  CHECK_EQ_U(c[1].order, 10);
  CHECK_EQ_U(c[2].order, 11);
  CHECK_EQ_U(ngroups, 6);
  CHECK_EQ_U(groups[3], 1); /* the holding op */
  CHECK_EQ_U(groups[4], 2); /* u2, c[0] */
  CHECK_EQ_U(groups[5], 2); /* c[1], c[2] */
  wtest_stop(&t);
}

/* A transaction too large (GD_ETXNFULL): with the ops before it, the op
 * goes to the next group and commits there; on its own, it fails and ends
 * its group, so its done callback runs before the ops after it apply. */
static void test_writer_txn_full(void) {
  wtest t;
  wtest_start(&t);
  bop a = {{.apply = bop_apply, .done = bop_done}, .mu = NULL};
  bop b = {{.apply = bop_apply, .done = bop_done}, .txnfull = 1};
  bop c = {{.apply = bop_apply, .done = bop_done}, .mu = NULL};
  bop d = {{.apply = bop_apply, .done = bop_done}, .txnfull = -1};
  bop e = {{.apply = bop_apply, .done = bop_done}, .mu = NULL};
  bop *ops[5] = {&a, &b, &c, &d, &e};
  wtest_hold(&t);
  for (int i = 0; i < 5; i++)
    gd_writer_submit(t.w, &ops[i]->op);
  bop_open(&t.hold);
  wtest_wait(6);
  CHECK_EQ_U(ngroups, 5);
  CHECK_EQ_U(groups[0], 1); /* the holding op */
  CHECK_EQ_U(groups[1], 1); /* a: cut before b */
  CHECK_EQ_U(groups[2], 2); /* b (fits now), c: cut before d */
  CHECK_EQ_U(groups[3], 1); /* d alone: too large, fails, ends the group */
  CHECK_EQ_U(groups[4], 1); /* e */
  CHECK(a.code == GD_OK && b.code == GD_OK && c.code == GD_OK && e.code == GD_OK);
  CHECK(d.code == GD_ETXNFULL);
  CHECK(d.order < e.order && atomic_load(&e.applied) == 1);
  wtest_stop(&t);
}

/* Bulk ops queued together share one nested transaction; when one of them
 * fails, each is applied again alone, so the others commit and the failed
 * one leaves no trace (here: a self-link, refused after its seller was
 * created). */
static void test_writer_bulk_run(void) {
  wtest t;
  wtest_start(&t);
  static const char *sk[5] = {"r1", "r2", "r3", "r4", "r5"};
  gd_link_in links[5];
  sync_op u[5];
  for (int i = 0; i < 5; i++) {
    links[i] = (gd_link_in){R(GD_TYPE_SELLER, sk[i]),
                            i == 2 ? R(GD_TYPE_SELLER, sk[i]) : R(GD_TYPE_DEVICE, sk[i]), 9};
    sync_init(&u[i], 0);
    u[i].op.bulk = true;
    u[i].u.links = &links[i];
    u[i].u.nlinks = 1;
  }
  wtest_hold(&t);
  for (int i = 0; i < 5; i++)
    gd_writer_submit(t.w, &u[i].op);
  bop_open(&t.hold);
  for (int i = 0; i < 5; i++) {
    pthread_mutex_lock(&u[i].mu);
    while (!u[i].done)
      pthread_cond_wait(&u[i].cv, &u[i].mu);
    pthread_mutex_unlock(&u[i].mu);
  }
  CHECK_EQ_U(ngroups, 2);
  CHECK_EQ_U(groups[1], 5); /* one commit */
  for (int i = 0; i < 5; i++)
    CHECK(u[i].code == (i == 2 ? GD_EINVALID : GD_OK));
  CHECK(strstr(u[2].msg, "same entity") != NULL);
  gd_entity_view v;
  for (int i = 0; i < 5; i++)
    CHECK(get(t.st, R(GD_TYPE_SELLER, sk[i]), &v) == (i == 2 ? GD_ENOTFOUND : GD_OK));
  gd_rtxn *r;
  gd_stats stt;
  CHECK(gd_store_read_begin(t.st, &r, NULL) == GD_OK);
  CHECK(gd_store_stats(r, &stt, NULL) == GD_OK);
  CHECK_EQ_U(stt.entities[GD_TYPE_SELLER], 4);
  CHECK_EQ_U(stt.entities_total, 8);
  CHECK_EQ_U(stt.links, 4);
  gd_store_read_end(r);
  wtest_stop(&t);
}

/* The audit chain: appends across transactions (one aborted), visit,
 * verify, and tampering detected: a changed byte, a deleted record. */
static void test_audit_chain(void) {
  fresh_dir();
  gd_store *s = open_store(64 << 20);
  gd_wtxn *t;
  gd_err e;
  uint64_t seq;
  char target[2000];
  memset(target, 'x', sizeof target - 1);
  target[sizeof target - 1] = 0;
  for (int round = 0; round < 3; round++) {
    CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
    for (int i = 0; i < 10; i++) {
      gd_audit_in in = {.time_ms = 1000 * round + i, .status = i % 3, .role = 2,
                        .principal = "alice", .peer = "ipv4:127.0.0.1:5", .case_id = "case-7",
                        .method = "/graphd.v1.SellerGraph/GetEntity",
                        .target = i == 3 ? target : "seller:17"};
      CHECK(gd_store_audit_append(t, &in, &seq, &e) == GD_OK);
    }
    if (round == 1)
      gd__wtxn_abort(t); /* its ten records never happened */
    else
      CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  }
  CHECK_EQ_U(seq, 20);
  gd_rtxn *r;
  uint64_t n, bad;
  char why[256];
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_store_audit_verify(r, &n, &bad, why, sizeof why, NULL) == GD_OK);
  CHECK(n == 20 && bad == 0);
  gd_store_read_end(r);

  /* Tamper: change one byte of record 7's method. */
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  uint8_t kb[8];
  MDB_val k, v;
  gd__id_key(7, kb, &k);
  CHECK(mdb_get(t->txn, s->audit, &k, &v) == MDB_SUCCESS);
  uint8_t copy[4096];
  memcpy(copy, v.mv_data, v.mv_size);
  copy[60] ^= 1;
  MDB_val nv = {v.mv_size, copy};
  CHECK(mdb_put(t->txn, s->audit, &k, &nv, 0) == MDB_SUCCESS);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_store_audit_verify(r, &n, &bad, why, sizeof why, NULL) == GD_OK);
  CHECK(bad == 7 && n == 6 && strstr(why, "hash does not match") != NULL);
  gd_store_read_end(r);

  /* Put it back, then delete record 12: the gap is found. */
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  copy[60] ^= 1;
  CHECK(mdb_put(t->txn, s->audit, &k, &nv, 0) == MDB_SUCCESS);
  gd__id_key(12, kb, &k);
  CHECK(mdb_del(t->txn, s->audit, &k, NULL) == MDB_SUCCESS);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_store_audit_verify(r, &n, &bad, why, sizeof why, NULL) == GD_OK);
  CHECK(bad == 13 && n == 11 && strstr(why, "gap") != NULL);
  /* Visit from the middle; a long target is cut. */
  gd_store_read_end(r);
  gd_store_close(s);
}

/* The case index: a case's records in seq order, from a seq on, none of
 * another case's or of the records naming none; an aborted transaction
 * leaves no entry; a data directory from before the index (entries and
 * the meta mark gone) is scanned, and gets the index built when it opens;
 * the tip. */
typedef struct seqs_seen {
  uint64_t v[64];
  size_t n;
} seqs_seen;

static int seq_collect(void *ctx, const gd_audit_view *a) {
  seqs_seen *x = ctx;
  if (x->n < 64)
    x->v[x->n++] = a->seq;
  return 0;
}

static void check_case_index(gd_store *s) {
  gd_rtxn *r;
  gd_err e;
  seqs_seen a = {0}, b = {0}, none = {0};
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_store_audit_visit_case(r, "case-a", 6, 0, seq_collect, &a, &e) == GD_OK);
  CHECK(a.n == 10);
  for (size_t i = 0; i < a.n; i++)
    CHECK_EQ_U(a.v[i], 3 * i + 1); /* seqs 1, 4, 7, ...: every third record */
  CHECK(gd_store_audit_visit_case(r, "case-a", 6, 7, seq_collect, &b, &e) == GD_OK);
  CHECK(b.n == 7 && b.v[0] == 10);
  CHECK(gd_store_audit_visit_case(r, "case-z", 6, 0, seq_collect, &none, &e) == GD_OK);
  CHECK(none.n == 0);
  CHECK(gd_store_audit_visit_case(r, "", 0, 0, seq_collect, &none, &e) == GD_EINVALID &&
        strstr(e.msg, "case_id"));
  gd_audit_view tip;
  CHECK(gd_store_audit_last(r, &tip, &e) == GD_OK && tip.seq == 30);
  gd_store_read_end(r);
}

static void test_audit_case_index(void) {
  fresh_dir();
  gd_store *s = open_store(64 << 20);
  gd_wtxn *t;
  gd_rtxn *r;
  gd_err e;
  gd_audit_view tip;
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_store_audit_last(r, &tip, &e) == GD_ENOTFOUND);
  gd_store_read_end(r);
  for (int round = 0; round < 2; round++) {
    CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
    for (int i = 0; i < 30; i++) {
      gd_audit_in in = {.time_ms = i, .principal = "p", .method = "/m",
                        .case_id = i % 3 == 0 ? "case-a" : i % 3 == 1 ? "case-b" : NULL};
      CHECK(gd_store_audit_append(t, &in, NULL, &e) == GD_OK);
    }
    if (round == 0)
      gd__wtxn_abort(t);
    else
      CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  }
  check_case_index(s);
  /* As written before the index: no entries, no mark. */
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(mdb_drop(t->txn, s->audit_case, 0) == MDB_SUCCESS);
  MDB_val mk = {strlen("audit_case.built"), "audit_case.built"};
  CHECK(mdb_del(t->txn, s->meta, &mk, NULL) == MDB_SUCCESS);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  check_case_index(s); /* found by scanning the trail */
  gd_store_close(s);
  s = open_store(64 << 20);
  uint64_t built = 0;
  MDB_val bv;
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(mdb_get(r->txn, s->meta, &mk, &bv) == MDB_SUCCESS && bv.mv_size == 8);
  built = gd_be64_get(bv.mv_data);
  MDB_cursor *cur;
  MDB_val ck, cv;
  size_t entries = 0;
  CHECK(mdb_cursor_open(r->txn, s->audit_case, &cur) == MDB_SUCCESS);
  while (mdb_cursor_get(cur, &ck, &cv, MDB_NEXT) == MDB_SUCCESS)
    entries++;
  mdb_cursor_close(cur);
  gd_store_read_end(r);
  CHECK(built == 1 && entries == 20); /* built at the open: case-a's ten, case-b's ten */
  check_case_index(s);
  gd_store_close(s);
}

/* Cases: random ids, header fields read back, views, listing from an id,
 * saved queries per case in seq order, a missing case named. */
typedef struct case_seen {
  uint64_t ids[8];
  size_t n;
} case_seen;

static int case_collect(void *ctx, const gd_case_view *c) {
  case_seen *cs = ctx;
  cs->ids[cs->n++] = c->id;
  return cs->n == 8;
}

typedef struct query_seen {
  uint32_t seqs[8];
  size_t n;
} query_seen;

static int query_collect(void *ctx, uint32_t seq, const void *q, size_t len) {
  query_seen *qs = ctx;
  CHECK(len == 3 && memcmp(q, "q", 1) == 0);
  qs->seqs[qs->n++] = seq;
  return 0;
}

static void test_cases(void) {
  fresh_dir();
  gd_store *s = open_store(64 << 20);
  gd_wtxn *t;
  gd_rtxn *r;
  gd_err e;
  uint64_t ids[3];
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  for (int i = 0; i < 3; i++) {
    CHECK(gd_store_case_new_id(t, &ids[i], &e) == GD_OK);
    CHECK(ids[i] > 0 && ids[i] < GD_CASE_ID_LIMIT);
    gd_case_view c = {.id = ids[i], .revision = 1 + (uint64_t)i, .status = 1 + i,
                      .nqueries = (uint32_t)i, .brand = gd_str_c(i == 2 ? "globex" : "acme"),
                      .body = "body", .body_len = 4};
    CHECK(gd_store_case_put(t, &c, &e) == GD_OK);
  }
  CHECK(ids[0] != ids[1] && ids[1] != ids[2]);
  gd_case_view bad = {.id = ids[0], .brand = GD_STR_NULL};
  CHECK(gd_store_case_put(t, &bad, &e) == GD_EINVALID);
  CHECK(gd_store_case_query_put(t, ids[1], 2, "q-2", 3, &e) == GD_OK);
  CHECK(gd_store_case_query_put(t, ids[1], 1, "q-1", 3, &e) == GD_OK);
  CHECK(gd_store_case_query_put(t, ids[0], 1, "q-x", 3, &e) == GD_OK);
  CHECK(gd_store_case_query_put(t, ids[1], 0, "q", 1, &e) == GD_EINVALID);
  gd_case_view w;
  CHECK(gd_store_case_get_w(t, ids[2], &w, &e) == GD_OK && w.status == 3);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);

  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  gd_case_view v;
  CHECK(gd_store_case_get(r, ids[1], &v, &e) == GD_OK);
  CHECK(v.id == ids[1] && v.revision == 2 && v.status == 2 && v.nqueries == 1);
  CHECK(v.brand.n == 4 && memcmp(v.brand.p, "acme", 4) == 0);
  CHECK(v.body_len == 4 && memcmp(v.body, "body", 4) == 0);
  CHECK(gd_store_case_get(r, 77, &v, &e) == GD_ENOTFOUND && strstr(e.msg, "case_id") &&
        strstr(e.msg, "77"));
  CHECK(gd_store_case_get(r, 0, &v, &e) == GD_ENOTFOUND);
  case_seen cs = {0};
  CHECK(gd_store_cases_visit(r, 0, case_collect, &cs, &e) == GD_OK && cs.n == 3);
  CHECK(cs.ids[0] < cs.ids[1] && cs.ids[1] < cs.ids[2]);
  case_seen after = {0};
  CHECK(gd_store_cases_visit(r, cs.ids[0], case_collect, &after, &e) == GD_OK);
  CHECK(after.n == 2 && after.ids[0] == cs.ids[1]);
  query_seen qs = {0};
  CHECK(gd_store_case_queries_visit(r, ids[1], 0, query_collect, &qs, &e) == GD_OK);
  CHECK(qs.n == 2 && qs.seqs[0] == 1 && qs.seqs[1] == 2);
  query_seen q2 = {0};
  CHECK(gd_store_case_queries_visit(r, ids[1], 1, query_collect, &q2, &e) == GD_OK);
  CHECK(q2.n == 1 && q2.seqs[0] == 2);
  query_seen none = {0};
  CHECK(gd_store_case_queries_visit(r, ids[2], 0, query_collect, &none, &e) == GD_OK &&
        none.n == 0);
  gd_store_read_end(r);
  gd_store_close(s);
}

/* gd_rtxn_graph_state names the graph, not the commit: a commit of other
 * tables (a case here; the audit trail, snapshots) keeps the name that
 * gd_rtxn_state changes, a write to the graph changes both, and the name
 * survives a reopen. */
static void graph_state(gd_store *s, uint64_t g[2], uint64_t c[2]) {
  gd_rtxn *r;
  gd_err e;
  CHECK(gd_store_read_begin(s, &r, NULL) == GD_OK);
  CHECK(gd_rtxn_graph_state(r, g, &e) == GD_OK);
  gd_rtxn_state(r, c);
  gd_store_read_end(r);
}

static void test_graph_state(void) {
  fresh_dir();
  gd_store *s = open_store(64 << 20);
  gd_writer *w;
  gd_wtxn *t;
  gd_err e;
  uint64_t g0[2], c0[2], g1[2], c1[2], g2[2], c2[2], g3[2], c3[2];
  graph_state(s, g0, c0);
  CHECK(g0[0] == c0[0] && g0[1] == c0[1]); /* nothing written since the open */

  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  uint64_t id;
  CHECK(gd_store_case_new_id(t, &id, &e) == GD_OK);
  gd_case_view cv = {.id = id, .revision = 1, .status = 1, .brand = gd_str_c("acme"),
                     .body = "b", .body_len = 1};
  CHECK(gd_store_case_put(t, &cv, &e) == GD_OK);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  graph_state(s, g1, c1);
  CHECK(c1[1] > c0[1]);                    /* a new commit ... */
  CHECK(g1[0] == g0[0] && g1[1] == g0[1]); /* ... of the same graph */

  CHECK(gd_writer_start(s, 0, &w, NULL) == GD_OK);
  gd_link_in l = {R(GD_TYPE_SELLER, "gs1"), R(GD_TYPE_DEVICE, "gsd"), 5};
  CHECK(upsert_links(w, &l, 1, NULL) == GD_OK);
  gd_writer_stop(w);
  graph_state(s, g2, c2);
  CHECK(g2[1] == c2[1] && g2[1] > g1[1]); /* the graph changed in that commit */

  gd_store_close(s);
  s = open_store(64 << 20);
  graph_state(s, g3, c3);
  CHECK(g3[0] != g2[0]);   /* another open, another serial */
  CHECK(g3[1] == g2[1]);   /* the stamp was kept */
  gd_store_close(s);
}

/* Fresh clustering's tables: marks by writes (only when on), the queue's
 * bound, versioned clears, placements and their inverse, rebase, the
 * bounded alert log. */
static void test_placement_tables(void) {
  fresh_dir();
  gd_store *s = open_store(64 << 20);
  gd_writer *w;
  gd_err e;
  gd_rtxn *r;
  gd_wtxn *t;
  uint64_t sellers[16], n64;
  int64_t stamps[16];
  size_t n;
  CHECK(gd_writer_start(s, 0, &w, &e) == GD_OK);
  /* Off: a write marks nothing. */
  gd_link_in l1[] = {{R(GD_TYPE_SELLER, "a"), R(GD_TYPE_DEVICE, "d"), 0}};
  CHECK(upsert_links(w, l1, 1, NULL) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_count(r, &n64, &e) == GD_OK && n64 == 0);
  gd_store_read_end(r);
  /* On, bound 3: a new link marks its sellers (a seller-seller link both);
   * a repeated observation marks nothing; past the bound marks are shed. */
  gd_store_place_config(s, 3);
  gd_link_in l2[] = {{R(GD_TYPE_SELLER, "b"), R(GD_TYPE_DEVICE, "d"), 0},
                     {R(GD_TYPE_SELLER, "a"), R(GD_TYPE_DEVICE, "d"), 0},
                     {R(GD_TYPE_SELLER, "c"), R(GD_TYPE_SELLER, "b"), 0}};
  CHECK(upsert_links(w, l2, 3, NULL) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_list(r, 16, sellers, stamps, &n, &e) == GD_OK);
  CHECK_EQ_U(n, 2); /* b, c: a's link was only seen again */
  gd_store_read_end(r);
  gd_link_in l3[] = {{R(GD_TYPE_SELLER, "e1"), R(GD_TYPE_PHONE, "+1555"), 0},
                     {R(GD_TYPE_SELLER, "e2"), R(GD_TYPE_PHONE, "+1555"), 0},
                     {R(GD_TYPE_SELLER, "e3"), R(GD_TYPE_PHONE, "+1555"), 0}};
  CHECK(upsert_links(w, l3, 3, NULL) == GD_OK);
  CHECK_EQ_U(gd_store_place_shed(s), 2);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_list(r, 16, sellers, stamps, &n, &e) == GD_OK);
  CHECK_EQ_U(n, 3);
  gd_store_read_end(r);
  /* Full, in one group: b (queued, below the largest queued id) is marked
   * again, not shed; a (not queued, below it) and e4 (new, above it) are
   * shed; e4 again is shed again. */
  gd_link_in l4[] = {{R(GD_TYPE_SELLER, "b"), R(GD_TYPE_PHONE, "+1666"), 0},
                     {R(GD_TYPE_SELLER, "a"), R(GD_TYPE_PHONE, "+1666"), 0},
                     {R(GD_TYPE_SELLER, "e4"), R(GD_TYPE_PHONE, "+1666"), 0},
                     {R(GD_TYPE_SELLER, "e4"), R(GD_TYPE_EMAIL, "x@y.z"), 0}};
  int64_t b_stamp = stamps[0];
  CHECK(upsert_links(w, l4, 4, NULL) == GD_OK);
  CHECK_EQ_U(gd_store_place_shed(s), 5);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_list(r, 16, sellers, stamps, &n, &e) == GD_OK);
  CHECK_EQ_U(n, 3);
  CHECK(stamps[0] > b_stamp); /* b's row, written again */
  gd_store_read_end(r);
  /* A clear with a stale stamp keeps the row; the right one removes it. */
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(gd_store_dirty_clear(t, sellers[0], stamps[0] - 1, &e) == GD_OK);
  CHECK(gd_store_dirty_clear(t, sellers[1], stamps[1], &e) == GD_OK);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_count(r, &n64, &e) == GD_OK && n64 == 2);
  gd_store_read_end(r);
  /* Deleting a device marks its sellers. */
  sync_op d;
  sync_init(&d, 2);
  d.ref = R(GD_TYPE_DEVICE, "d");
  CHECK(sync_run(w, &d) == GD_OK);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_dirty_list(r, 16, sellers, stamps, &n, &e) == GD_OK);
  gd_store_read_end(r);
  bool has_a = false;
  for (size_t i = 0; i < n; i++)
    has_a |= sellers[i] == 1; /* a is entity 1 */
  CHECK(has_a);

  /* Placements: put, move, members, remove, rebase. */
  gd_prov p = {.snapshot = 5, .cluster = 9, .previous = 0, .size = 4, .risk = 0.5,
               .gain = 1.5, .tie = 2, .placed_at = 1234};
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(gd_store_prov_put(t, 100, &p, &e) == GD_OK);
  CHECK(gd_store_prov_put(t, 101, &p, &e) == GD_OK);
  p.cluster = 10;
  CHECK(gd_store_prov_put(t, 101, &p, &e) == GD_OK); /* moves: 9 loses it */
  p.snapshot = 4;
  p.cluster = 9;
  CHECK(gd_store_prov_put(t, 102, &p, &e) == GD_OK); /* an older snapshot */
  p.snapshot = 0;
  CHECK(gd_store_prov_put(t, 103, &p, &e) == GD_EINVALID);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  gd_prov got;
  bool more;
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_prov_get(r, 101, &got, &e) == GD_OK);
  CHECK(got.snapshot == 5 && got.cluster == 10 && got.size == 4 && got.risk == 0.5 &&
        got.gain == 1.5 && got.tie == 2 && got.placed_at == 1234);
  CHECK(gd_store_prov_get(r, 999, &got, &e) == GD_ENOTFOUND);
  CHECK(gd_store_prov_members(r, 5, 9, 0, 16, sellers, &n, &more, &e) == GD_OK);
  CHECK(n == 1 && sellers[0] == 100 && !more);
  CHECK(gd_store_prov_members(r, 5, 10, 0, 16, sellers, &n, &more, &e) == GD_OK);
  CHECK(n == 1 && sellers[0] == 101);
  CHECK(gd_store_prov_members(r, 4, 9, 0, 16, sellers, &n, &more, &e) == GD_OK);
  CHECK(n == 1 && sellers[0] == 102);
  CHECK(gd_store_dirty_count(r, &n64, &e) == GD_OK);
  gd_store_read_end(r);
  uint64_t before = n64, moved;
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(gd_store_prov_put(t, 100, NULL, &e) == GD_OK);
  CHECK(gd_store_prov_rebase(t, 5, &moved, &e) == GD_OK);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  CHECK_EQ_U(moved, 1); /* 102, made against snapshot 4 */
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_prov_get(r, 100, &got, &e) == GD_ENOTFOUND);
  CHECK(gd_store_prov_get(r, 102, &got, &e) == GD_ENOTFOUND);
  CHECK(gd_store_prov_get(r, 101, &got, &e) == GD_OK);
  CHECK(gd_store_prov_members(r, 5, 9, 0, 16, sellers, &n, &more, &e) == GD_OK && n == 0);
  CHECK(gd_store_prov_members(r, 4, 9, 0, 16, sellers, &n, &more, &e) == GD_OK && n == 0);
  CHECK(gd_store_dirty_count(r, &n64, &e) == GD_OK && n64 == before + 1);
  gd_store_read_end(r);

  /* Alerts: sequence numbers from 1, the oldest beyond keep dropped, an
   * aborted append uses no number. */
  uint64_t seq, oldest, last;
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_alert_bounds(r, &oldest, &last, &e) == GD_OK && oldest == 0 && last == 0);
  gd_store_read_end(r);
  for (int i = 1; i <= 5; i++) {
    char ev[16];
    snprintf(ev, sizeof ev, "ev%d", i);
    CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
    CHECK(gd_store_alert_append(t, ev, strlen(ev), 3, &seq, &e) == GD_OK);
    CHECK_EQ_U(seq, (uint64_t)i);
    CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  }
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(gd_store_alert_append(t, "x", 1, 3, &seq, &e) == GD_OK && seq == 6);
  CHECK(gd_store_alert_append(t, "", 0, 3, &seq, &e) == GD_EINVALID);
  gd__wtxn_abort(t);
  CHECK(gd_store_read_begin(s, &r, &e) == GD_OK);
  CHECK(gd_store_alert_bounds(r, &oldest, &last, &e) == GD_OK);
  CHECK(oldest == 3 && last == 5);
  gd_store_read_end(r);
  CHECK(gd__wtxn_begin(s, &t, &e) == GD_OK);
  CHECK(gd_store_alert_append(t, "ev6", 3, 3, &seq, &e) == GD_OK && seq == 6);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  gd_writer_stop(w);
  gd_store_close(s);
}


/* ---- bulk load ---- */

/* A deterministic mixed load: messages of links among sellers, devices and
 * addresses (repeated pairs within and across messages, a shared hub),
 * entity items with attributes overwritten later, labels added twice,
 * request ids with one repeat. Times are never 0 (commit times differ
 * between the two stores compared). */
enum { BL_MSGS = 40, BL_LINKS = 60, BL_ITEMS = 6 };

typedef struct bl_msg {
  char keys[BL_LINKS][2][16];
  gd_link_in links[BL_LINKS];
  char ikeys[BL_ITEMS][16], vals[BL_ITEMS][16];
  gd_attr_in attrs[BL_ITEMS][2];
  gd_str labels[BL_ITEMS][2];
  gd_entity_in items[BL_ITEMS];
  char rid[16];
  gd_upsert u;
} bl_msg;

static uint64_t bl_rng = 88172645463325252ULL;
static uint64_t bl_next(void) {
  bl_rng ^= bl_rng << 13;
  bl_rng ^= bl_rng >> 7;
  bl_rng ^= bl_rng << 17;
  return bl_rng;
}

static void bl_build(bl_msg *ms) {
  static const int types[3] = {GD_TYPE_SELLER, GD_TYPE_DEVICE, GD_TYPE_ADDRESS};
  for (int m = 0; m < BL_MSGS; m++) {
    bl_msg *x = &ms[m];
    for (int i = 0; i < BL_LINKS; i++) {
      int ta = (int)(bl_next() % 4 == 0); /* a seller, or sometimes a device */
      int tb = ta ? 2 : (int)(bl_next() % 3);
      int ka = (int)(bl_next() % (ta ? 50 : 300)), kb = (int)(bl_next() % 120);
      if (bl_next() % 10 == 0)
        tb = 1, kb = 0; /* a hub device */
      if (tb == 0 && !ta && kb == ka)
        kb = ka + 1;
      snprintf(x->keys[i][0], 16, "%c%d", ta ? 'd' : 's', ka);
      snprintf(x->keys[i][1], 16, "%c%d", "sda"[tb], kb);
      x->links[i] = (gd_link_in){R(types[ta], x->keys[i][0]), R(types[tb], x->keys[i][1]),
                                 (int64_t)(1700000000 + bl_next() % 100000)};
    }
    for (int i = 0; i < BL_ITEMS; i++) {
      snprintf(x->ikeys[i], 16, "s%d", (int)(bl_next() % 320)); /* some only here */
      snprintf(x->vals[i], 16, "v%d", m);
      x->attrs[i][0] = (gd_attr_in){gd_str_c("name"), gd_str_c(x->vals[i])};
      x->attrs[i][1] = (gd_attr_in){gd_str_c(i % 2 ? "zone" : "age"), gd_str_c(x->ikeys[i])};
      x->labels[i][0] = gd_str_c(i % 3 == 1 ? "vip" : "flagged");
      x->labels[i][1] = gd_str_c("flagged");
      x->items[i] = (gd_entity_in){.type = GD_TYPE_SELLER, .key = gd_str_c(x->ikeys[i]),
                                   .attrs = x->attrs[i], .nattrs = (size_t)(i % 3),
                                   .labels = x->labels[i], .nlabels = (size_t)(i % 3),
                                   .seen = i % 2 ? 0 : (int64_t)(1600000000 + m)};
    }
    snprintf(x->rid, sizeof x->rid, "r-%d", m == 20 ? 5 : m); /* message 20 repeats 5 */
    x->u = (gd_upsert){.request_id = gd_str_c(x->rid), .entities = x->items,
                       .nentities = BL_ITEMS, .links = x->links, .nlinks = BL_LINKS};
  }
}

typedef struct bl_nb {
  char key[40];
  uint32_t count;
  int64_t first, last;
} bl_nb;

static int cmp_bl_nb(const void *a, const void *b) { return strcmp(((const bl_nb *)a)->key, ((const bl_nb *)b)->key); }

/* The links of (type, key) in st as sorted (neighbour "type:key", count, times). */
static size_t bl_links(gd_store *st, int type, const char *key, bl_nb *out, size_t cap) {
  gd_rtxn *r;
  gd_ref ref = R(type, key);
  uint64_t id;
  gd_link ls[512];
  size_t n = 0;
  bool more;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_lookup(r, &ref, &id, NULL) == GD_OK);
  gd_adj_query q = {.limit = 512};
  CHECK(gd_store_links(r, id, &q, ls, &n, &more, NULL) == GD_OK && !more && n <= cap);
  for (size_t i = 0; i < n; i++) {
    gd_ref nr = {ls[i].nbr, 0, {0}};
    gd_entity_view v;
    CHECK(gd_store_get(r, &nr, &v, NULL) == GD_OK);
    snprintf(out[i].key, sizeof out[i].key, "%d:%.*s", v.type, (int)v.key.n, v.key.p);
    out[i].count = ls[i].count;
    out[i].first = ls[i].first_seen;
    out[i].last = ls[i].last_seen;
  }
  gd_store_read_end(r);
  qsort(out, n, sizeof *out, cmp_bl_nb);
  return n;
}

/* Everything one entity shows, as text (attributes and labels included). */
static bool bl_entity(gd_store *st, int type, const char *key, char *out, size_t cap) {
  gd_rtxn *r;
  gd_entity_view v;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  gd_ref ref = R(type, key);
  int rc = gd_store_get(r, &ref, &v, NULL);
  if (rc == GD_OK) {
    int k = snprintf(out, cap, "%lld %lld %llu %llu |", (long long)v.first_seen,
                     (long long)v.last_seen, (unsigned long long)v.degree,
                     (unsigned long long)v.seller_count);
    for (size_t i = 0; i < v.nattrs && k < (int)cap; i++) {
      gd_str n, val;
      gd_entity_attr(&v, i, &n, &val);
      k += snprintf(out + k, cap - (size_t)k, " %.*s=%.*s", (int)n.n, n.p, (int)val.n, val.p);
    }
    for (size_t i = 0; i < v.nlabels && k < (int)cap; i++) {
      gd_str l = gd_entity_label(&v, i);
      k += snprintf(out + k, cap - (size_t)k, " #%.*s", (int)l.n, l.p);
    }
  }
  gd_store_read_end(r);
  return rc == GD_OK;
}

static size_t bl_label_keys(gd_store *st, const char *label, char keys[][16], size_t cap) {
  gd_rtxn *r;
  uint64_t *ids;
  size_t n;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_label_members(r, gd_str_c(label), &ids, &n, NULL) == GD_OK && n <= cap);
  for (size_t i = 0; i < n; i++) {
    gd_ref ref = {ids[i], 0, {0}};
    gd_entity_view v;
    CHECK(gd_store_get(r, &ref, &v, NULL) == GD_OK);
    snprintf(keys[i], 16, "%.*s", (int)v.key.n, v.key.p);
  }
  free(ids);
  gd_store_read_end(r);
  qsort(keys, n, 16, (int (*)(const void *, const void *))strcmp);
  return n;
}

static int bulk_run(gd_writer *w, const gd_bulk *b, gd_bulk_result *ret, char *msg) {
  sync_op s;
  sync_init(&s, 3);
  s.bulk = b;
  int rc = sync_run(w, &s);
  *ret = s.bres;
  if (msg)
    strcpy(msg, s.msg);
  return rc;
}

/* A store in a directory of its own, kept when fresh_dir() moves on, and
 * its writer. */
static gd_store *open_kept(char *dir, gd_writer **w) {
  gd_err e;
  gd_store *st = NULL;
  fresh_dir();
  strcpy(dir, tmpdir);
  tmpdir[0] = 0;
  gd_store_opts o = {.path = dir};
  CHECK(gd_store_open(&o, &st, &e) == GD_OK);
  CHECK(gd_writer_start(st, 0, w, NULL) == GD_OK);
  return st;
}

static void close_kept(char *dir, gd_store *st, gd_writer *w) {
  char cmd[300];
  gd_writer_stop(w);
  gd_store_close(st);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* Compares every key bl_build can name in a and b: found in both or
 * neither, the same record (times, counts, attributes, labels), the same
 * links and, with ids, the same id. Returns the mismatches; *ret_compared
 * counts the entities found in both. */
static int bl_compare(gd_store *a, gd_store *b, bool ids, int *ret_compared) {
  static const int types[3] = {GD_TYPE_SELLER, GD_TYPE_DEVICE, GD_TYPE_ADDRESS};
  int compared = 0, mism = 0;
  gd_rtxn *r;
  gd_stats sa, sb;
  CHECK(gd_store_read_begin(a, &r, NULL) == GD_OK && gd_store_stats(r, &sa, NULL) == GD_OK);
  gd_store_read_end(r);
  CHECK(gd_store_read_begin(b, &r, NULL) == GD_OK && gd_store_stats(r, &sb, NULL) == GD_OK);
  gd_store_read_end(r);
  mism += sa.links != sb.links || sa.labels != sb.labels || sa.entities_total != sb.entities_total;
  for (int ty = 1; ty <= GD_TYPE_MAX; ty++)
    mism += sa.entities[ty] != sb.entities[ty];
  for (int ti = 0; ti < 3; ti++)
    for (int k = 0; k < 330; k++) {
      char key[16], ea[512], eb[512];
      snprintf(key, sizeof key, "%c%d", "sda"[ti], k);
      bool fa = bl_entity(a, types[ti], key, ea, sizeof ea);
      bool fb = bl_entity(b, types[ti], key, eb, sizeof eb);
      mism += fa != fb;
      if (!fa || !fb)
        continue;
      compared++;
      if (strcmp(ea, eb)) {
        if (mism++ < 3)
          fprintf(stderr, "  %s: '%s' against '%s'\n", key, ea, eb);
        continue;
      }
      if (ids) {
        gd_ref ref = R(types[ti], key);
        uint64_t ida = 0, idb = 0;
        CHECK(gd_store_read_begin(a, &r, NULL) == GD_OK);
        CHECK(gd_store_lookup(r, &ref, &ida, NULL) == GD_OK);
        gd_store_read_end(r);
        CHECK(gd_store_read_begin(b, &r, NULL) == GD_OK);
        CHECK(gd_store_lookup(r, &ref, &idb, NULL) == GD_OK);
        gd_store_read_end(r);
        mism += ida != idb;
      }
      static bl_nb la[512], lb[512];
      size_t na = bl_links(a, types[ti], key, la, 512), nb = bl_links(b, types[ti], key, lb, 512);
      mism += na != nb;
      for (size_t i = 0; i < na && i < nb; i++)
        mism += strcmp(la[i].key, lb[i].key) || la[i].count != lb[i].count ||
                la[i].first != lb[i].first || la[i].last != lb[i].last;
    }
  *ret_compared = compared;
  return mism;
}

static void test_bulk_load(void) {
  static bl_msg ms[BL_MSGS];
  static char dir_a[256];
  gd_err e;
  bl_build(ms);

  /* A: the upserts one by one. */
  gd_writer *wa;
  gd_store *a = open_kept(dir_a, &wa);
  gd_totals ta = {0};
  uint64_t dups_a = 0;
  for (int m = 0; m < BL_MSGS; m++) {
    sync_op s;
    sync_init(&s, 0);
    s.u = ms[m].u;
    CHECK(sync_run(wa, &s) == GD_OK);
    dups_a += s.res.duplicate;
    if (s.res.duplicate)
      continue;
    ta.entities_created += s.res.totals.entities_created;
    ta.entities_updated += s.res.totals.entities_updated;
    ta.links_created += s.res.totals.links_created;
    ta.links_updated += s.res.totals.links_updated;
  }
  CHECK_EQ_U(dups_a, 1);

  /* B: one bulk load, in a 1 MiB map that must grow. */
  fresh_dir();
  gd_store *b = open_store(1 << 20);
  gd_writer *wb;
  CHECK(gd_writer_start(b, 0, &wb, NULL) == GD_OK);
  gd_bulk *bk;
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  for (int m = 0; m < BL_MSGS; m++) {
    bool dup;
    CHECK(gd_bulk_add(bk, &ms[m].u, &dup, &e) == GD_OK);
    CHECK(dup == (m == 20));
  }
  gd_bulk_result br;
  char msg[GD_ERR_MSG_MAX];
  CHECK(bulk_run(wb, bk, &br, msg) == GD_OK);
  CHECK_EQ_U(br.messages, BL_MSGS);
  CHECK_EQ_U(br.duplicates, 1);
  CHECK_EQ_U(br.totals.entities_created, ta.entities_created);
  CHECK_EQ_U(br.totals.entities_updated, ta.entities_updated);
  CHECK_EQ_U(br.totals.links_created, ta.links_created);
  CHECK_EQ_U(br.totals.links_updated, ta.links_updated);
  gd_writer_stats ws;
  gd_writer_stats_get(wb, &ws);
  CHECK(ws.grows >= 1);

  /* The same graph, entity by entity, link by link. */
  int compared = 0, mism = bl_compare(a, b, false, &compared);
  CHECK(compared > 300);
  CHECK_EQ_U(mism, 0);
  static char ka[400][16], kb2[400][16];
  for (int l = 0; l < 2; l++) {
    const char *label = l ? "vip" : "flagged";
    size_t na = bl_label_keys(a, label, ka, 400), nb = bl_label_keys(b, label, kb2, 400);
    CHECK(na > 0);
    CHECK_EQ_U(nb, na);
    for (size_t i = 0; i < na && i < nb; i++)
      CHECK_STR(kb2[i], ka[i]);
  }
  /* Request ids were recorded: a retry is a duplicate. */
  sync_op s;
  sync_init(&s, 0);
  s.u = ms[7].u;
  CHECK(sync_run(wb, &s) == GD_OK && s.res.duplicate);

  /* A second bulk load into a graph that is no longer empty: refused,
   * nothing written. */
  CHECK(bulk_run(wb, bk, &br, msg) == GD_EPRECONDITION);
  CHECK(strstr(msg, "empty") && strstr(msg, "Ingest"));
  gd_bulk_free(bk);
  close_kept(dir_a, a, wa);

  /* Bad input, refused in gd_bulk_add with the field named. */
  gd_link_in bad[2] = {{R(GD_TYPE_SELLER, "x"), R(GD_TYPE_DEVICE, "y"), 5}};
  gd_upsert bu = {.links = bad, .nlinks = 1};
  bool dup;
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  bad[0].b.id = 7;
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_EINVALID && strstr(e.msg, "links[0].b"));
  gd_bulk_free(bk);
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  bad[0].b = R(GD_TYPE_SELLER, "x");
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_EINVALID && strstr(e.msg, "links[0]") &&
        strstr(e.msg, "same entity"));
  gd_bulk_free(bk);
  /* The memory bound. */
  CHECK(gd_bulk_new(64 << 10, &bk, &e) == GD_OK);
  int rc = GD_OK;
  for (int m = 0; m < BL_MSGS && !rc; m++)
    rc = gd_bulk_add(bk, &ms[m].u, &dup, &e);
  CHECK(rc == GD_ERESOURCE && strstr(e.msg, "65536 bytes"));
  gd_bulk_free(bk);
  /* Too many attributes across items: refused at apply, nothing written. */
  gd_writer_stop(wb);
  gd_store_close(b);
  fresh_dir();
  b = open_store(0);
  CHECK(gd_writer_start(b, 0, &wb, NULL) == GD_OK);
  static gd_attr_in many[GD_ATTRS_MAX + 1];
  static char names[GD_ATTRS_MAX + 1][8];
  for (int i = 0; i <= GD_ATTRS_MAX; i++) {
    snprintf(names[i], 8, "a%d", i);
    many[i] = (gd_attr_in){gd_str_c(names[i]), gd_str_c("v")};
  }
  gd_entity_in half1 = {.type = GD_TYPE_SELLER, .key = gd_str_c("s1"), .attrs = many, .nattrs = 40};
  gd_entity_in half2 = {.type = GD_TYPE_SELLER, .key = gd_str_c("s1"), .attrs = many + 40,
                        .nattrs = GD_ATTRS_MAX + 1 - 40};
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  bu = (gd_upsert){.entities = &half1, .nentities = 1, .links = ms[0].links, .nlinks = 5};
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_OK);
  bu = (gd_upsert){.entities = &half2, .nentities = 1};
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_OK);
  CHECK(bulk_run(wb, bk, &br, msg) == GD_EINVALID && strstr(msg, "seller 's1'") &&
        strstr(msg, "65 attributes"));
  gd_rtxn *r;
  gd_stats sb;
  CHECK(gd_store_read_begin(b, &r, NULL) == GD_OK && gd_store_stats(r, &sb, NULL) == GD_OK);
  gd_store_read_end(r);
  CHECK_EQ_U(sb.entities_total, 0);
  CHECK_EQ_U(sb.links, 0);
  gd_bulk_free(bk);
  /* Growth: 400k links to new keys take the arrays of the load through
   * several remaps past 2 MiB (advised huge pages: an advice on part of a
   * mapping used to split it, and mremap then failed). */
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  {
    static gd_link_in big[10000];
    static char keys[10000][2][24];
    int rc2 = GD_OK;
    for (int m = 0; m < 40 && !rc2; m++) {
      for (int i = 0; i < 10000; i++) {
        snprintf(keys[i][0], 24, "gs%d", (m * 10000 + i) / 4);
        snprintf(keys[i][1], 24, "gd%d", m * 10000 + i);
        big[i] = (gd_link_in){R(GD_TYPE_SELLER, keys[i][0]), R(GD_TYPE_DEVICE, keys[i][1]), 7};
      }
      bu = (gd_upsert){.links = big, .nlinks = 10000};
      rc2 = gd_bulk_add(bk, &bu, &dup, &e);
    }
    if (rc2)
      fprintf(stderr, "  (growth: %s)\n", e.msg);
    CHECK(rc2 == GD_OK);
    CHECK(gd_bulk_bytes(bk) > (size_t)(16 << 20));
  }
  gd_bulk_free(bk);
  /* A link observed without a time gets the commit time. */
  gd_link_in now_link = {R(GD_TYPE_SELLER, "n1"), R(GD_TYPE_PHONE, "p1"), 0};
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  bu = (gd_upsert){.links = &now_link, .nlinks = 1};
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_OK);
  CHECK(bulk_run(wb, bk, &br, msg) == GD_OK);
  gd_entity_view v;
  CHECK(get(b, R(GD_TYPE_PHONE, "p1"), &v) == GD_OK);
  CHECK(v.first_seen == br.committed_at && v.last_seen == br.committed_at && v.degree == 1 &&
        v.seller_count == 1);
  gd_bulk_free(bk);
  gd_writer_stop(wb);
  gd_store_close(b);
}

/* ---- export images and the change log (image.c) ---- */

static bool export_same(const gd_graph_export *a, const gd_graph_export *b) {
  size_t ns = (size_t)a->n_sellers, ne = (size_t)a->n_entities;
  return a->n_sellers == b->n_sellers && a->n_entities == b->n_entities &&
         a->n_incidences == b->n_incidences && a->n_links == b->n_links &&
         !memcmp(a->seller_ids, b->seller_ids, ns * 8) && !memcmp(a->ent_ids, b->ent_ids, ne * 8) &&
         !memcmp(a->ent_type, b->ent_type, ne) && !memcmp(a->ent_n, b->ent_n, ne * 8) &&
         !memcmp(a->ent_off, b->ent_off, (ne + 1) * 8) &&
         !memcmp(a->ent_sellers, b->ent_sellers, (size_t)a->n_incidences * 8) &&
         !memcmp(a->link_a, b->link_a, (size_t)a->n_links * 8) &&
         !memcmp(a->link_b, b->link_b, (size_t)a->n_links * 8) &&
         strcmp(a->checksum, b->checksum) == 0;
}

/* One random write: links among sellers "s<k>" and entities of 3 types
 * ("e<t>-<k>"), now and then a seller-seller link, a delete of a seller or
 * an entity, or a request that fails (and must leave nothing behind). */
static void image_random_write(gd_writer *w, unsigned *seed, int round) {
  static const int types[] = {GD_TYPE_DEVICE, GD_TYPE_PHONE, GD_TYPE_ADDRESS};
  char sk[16][24], ek[16][24];
  gd_link_in l[8];
  int n = 1 + rand_r(seed) % 8;
  int kind = rand_r(seed) % 10;
  if (kind == 0 || kind == 1) {
    sync_op d;
    sync_init(&d, 2);
    if (kind == 0) {
      snprintf(sk[0], sizeof sk[0], "s%d", rand_r(seed) % (60 + round * 4));
      d.ref = R(GD_TYPE_SELLER, sk[0]);
    } else {
      int t = rand_r(seed) % 3;
      snprintf(ek[0], sizeof ek[0], "e%d-%d", t, rand_r(seed) % 40);
      d.ref = R(types[t], ek[0]);
    }
    int rc = sync_run(w, &d);
    CHECK(rc == GD_OK || rc == GD_ENOTFOUND);
    return;
  }
  for (int i = 0; i < n; i++) {
    int t = rand_r(seed) % 4;
    snprintf(sk[2 * i], sizeof sk[0], "s%d", rand_r(seed) % (60 + round * 4));
    if (t == 3) {
      snprintf(sk[2 * i + 1], sizeof sk[0], "s%d", rand_r(seed) % (60 + round * 4));
      if (!strcmp(sk[2 * i], sk[2 * i + 1]))
        strcat(sk[2 * i + 1], "x");
      l[i] = (gd_link_in){R(GD_TYPE_SELLER, sk[2 * i]), R(GD_TYPE_SELLER, sk[2 * i + 1]), 5};
    } else {
      snprintf(ek[i], sizeof ek[0], "e%d-%d", t, rand_r(seed) % 40);
      l[i] = (gd_link_in){R(GD_TYPE_SELLER, sk[2 * i]), R(types[t], ek[i]), 5};
    }
  }
  if (kind == 2) /* a link from an entity to itself fails the request */
    l[n - 1] = (gd_link_in){R(GD_TYPE_SELLER, "bad"), R(GD_TYPE_SELLER, "bad"), 5};
  sync_op u;
  sync_init(&u, 0);
  u.u.links = l;
  u.u.nlinks = (size_t)n;
  int rc = sync_run(w, &u);
  CHECK(kind == 2 ? rc != GD_OK : rc == GD_OK);
}

/*
 * gd_store_export_patch against a full read of the same transaction, over
 * rounds of random writes (new, linked, deleted sellers and entities,
 * seller-seller links, failed requests): the patched export is the full
 * one, array for array. Also: the image file round trip and its checks
 * (nonce, damage), the log's trim, and a bulk load voiding older images.
 */
static void test_export_patch(void) {
  fresh_dir();
  gd_store *st = open_store(64u << 20);
  gd_writer *w;
  gd_err e;
  gd_rtxn *r;
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  /* Ids s0 = 1, s1 = 2 (rows: s0, then D), D = 3 (one row: s1). The export
   * stops in s1's list at D's row and moves to D, a key with one row,
   * where LMDB's GET_MULTIPLE once returned s1's page: D was read as
   * shared by s0. */
  gd_link_in ss = {R(GD_TYPE_SELLER, "s0"), R(GD_TYPE_SELLER, "s1"), 5};
  gd_link_in sd = {R(GD_TYPE_SELLER, "s1"), R(GD_TYPE_DEVICE, "D"), 5};
  CHECK(upsert_links(w, &ss, 1, NULL) == GD_OK);
  CHECK(upsert_links(w, &sd, 1, NULL) == GD_OK);
  gd_graph_export img, full;
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &full, NULL) == GD_OK);
  gd_store_read_end(r);
  CHECK(full.n_sellers == 2 && full.n_links == 1 && full.n_entities == 1 &&
        full.n_incidences == 1);
  CHECK(full.n_incidences == 1 && full.ent_sellers[0] == 1);
  gd_graph_export_free(&full);
  unsigned seed = 7;
  for (int i = 0; i < 40; i++)
    image_random_write(w, &seed, 0);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &img, NULL) == GD_OK);
  gd_store_read_end(r);
  int patched_nonempty = 0;
  for (int round = 1; round <= 30; round++) {
    int writes = round % 5 == 0 ? 0 : 1 + (int)(rand_r(&seed) % 12);
    for (int i = 0; i < writes; i++)
      image_random_write(w, &seed, round);
    CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
    CHECK(gd_store_export_graph(r, 0, 0, &full, NULL) == GD_OK);
    gd_patch_stats ps;
    int rc = gd_store_export_patch(r, &img, &ps, &e);
    if (rc)
      fprintf(stderr, "  (patch: %s)\n", e.msg);
    CHECK(rc == GD_OK);
    gd_store_read_end(r);
    CHECK(export_same(&img, &full));
    CHECK(img.txn == full.txn);
    CHECK(writes > 0 || ps.changed == 0);
    if (!export_same(&img, &full))
      fprintf(stderr, "  round %d: %lld/%lld sellers %lld/%lld entities %lld/%lld links\n", round,
              (long long)img.n_sellers, (long long)full.n_sellers, (long long)img.n_entities,
              (long long)full.n_entities, (long long)img.n_links, (long long)full.n_links);
    patched_nonempty += ps.changed > 0;
    gd_graph_export_free(&full);
  }
  CHECK(patched_nonempty >= 20);
  CHECK(img.n_links > 0 && img.n_entities > 10);

  /* The file: a round trip, another nonce, a damaged byte. */
  char path[300];
  snprintf(path, sizeof path, "%s/x.img", tmpdir);
  gd_image_id id = {.txn = img.txn, .nonce = {1, 2, 3}};
  CHECK(gd_export_image_save(&img, &id, path, &e) == GD_OK);
  CHECK(gd_export_image_load(path, &id, &full, &e) == GD_OK);
  CHECK(export_same(&img, &full) && full.txn == img.txn);
  /* The arrays are the file's pages, mapped: no copy. Patching such an
   * export makes new arrays (and unmaps it). */
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && full.map && full.map_len == (size_t)sb.st_size &&
        (const uint8_t *)full.seller_ids > (const uint8_t *)full.map &&
        (const uint8_t *)(full.link_b + full.n_links) <= (const uint8_t *)full.map + full.map_len);
  {
    gd_rtxn *pr;
    gd_graph_changes *pc = NULL;
    CHECK(gd_store_read_begin(st, &pr, &e) == GD_OK);
    CHECK(gd_store_changes_read(pr, full.txn, &pc, &e) == GD_OK);
    CHECK(gd_graph_export_apply(&full, pc, &e) == GD_OK && full.map == NULL);
    CHECK(gd_graph_export_checksum(&full, &e) == GD_OK);
    gd_graph_export now;
    CHECK(gd_store_export_graph(pr, 0, 0, &now, &e) == GD_OK);
    CHECK(export_same(&now, &full));
    gd_graph_export_free(&now);
    gd_graph_changes_free(pc);
    gd_store_read_end(pr);
  }
  gd_graph_export_free(&full);
  gd_image_id other = id;
  other.nonce[0] = 9;
  CHECK(gd_export_image_load(path, &other, &full, &e) == GD_EPRECONDITION);
  CHECK(full.seller_ids == NULL);
  FILE *f = fopen(path, "r+b");
  CHECK(f && fseek(f, -3, SEEK_END) == 0 && fputc(0x5a, f) != EOF && fclose(f) == 0);
  CHECK(gd_export_image_load(path, &id, &full, &e) == GD_EINTERNAL);
  CHECK(strstr(e.msg, "checksum") != NULL);
  snprintf(path, sizeof path, "%s/none.img", tmpdir);
  CHECK(gd_export_image_load(path, &id, &full, &e) == GD_ENOTFOUND);

  /* Trim: entries up to the image's transaction go; the image still
   * patches; one older than the trim no longer can (it would miss
   * changes), which the floor does not say, so jobs trim only below the
   * oldest image they keep. */
  image_random_write(w, &seed, 31);
  image_random_write(w, &seed, 31);
  gd_wtxn *t;
  CHECK(gd__wtxn_begin(st, &t, &e) == GD_OK);
  CHECK(gd_store_glog_trim(t, img.txn, &e) == GD_OK);
  CHECK(gd__wtxn_commit(t, &e) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  uint64_t held = 0;
  CHECK(gd__meta_u64(r->txn, st, "glog.ids", &held) == 0 && held > 0);
  CHECK(gd_store_export_graph(r, 0, 0, &full, NULL) == GD_OK);
  CHECK(gd_store_export_patch(r, &img, NULL, &e) == GD_OK);
  CHECK(export_same(&img, &full));
  gd_graph_export_free(&full);
  gd_store_read_end(r);
  gd_graph_export_free(&img);
  gd_writer_stop(w);
  gd_store_close(st);

  /* A bulk load empties the log and moves its floor past every image. */
  fresh_dir();
  st = open_store(64u << 20);
  CHECK(gd_writer_start(st, 0, &w, NULL) == GD_OK);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_graph(r, 0, 0, &img, NULL) == GD_OK);
  gd_store_read_end(r);
  gd_bulk *bk;
  gd_bulk_result br;
  bool dup;
  gd_link_in bl = {R(GD_TYPE_SELLER, "b1"), R(GD_TYPE_PHONE, "p1"), 3};
  gd_upsert bu = {.links = &bl, .nlinks = 1};
  CHECK(gd_bulk_new(0, &bk, &e) == GD_OK);
  CHECK(gd_bulk_add(bk, &bu, &dup, &e) == GD_OK);
  CHECK(bulk_run(w, bk, &br, NULL) == GD_OK);
  gd_bulk_free(bk);
  CHECK(gd_store_read_begin(st, &r, NULL) == GD_OK);
  CHECK(gd_store_export_patch(r, &img, NULL, &e) == GD_EPRECONDITION);
  CHECK(strstr(e.msg, "change log starts after") != NULL);
  gd_store_read_end(r);
  gd_graph_export_free(&img);
  gd_writer_stop(w);
  gd_store_close(st);
}

/* ---- upserts with their keys indexed ---- */

static int key_cmp(const gd_ref *x, const gd_ref *y) {
  if (x->type != y->type)
    return x->type - y->type;
  size_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
  int r = memcmp(x->key.p, y->key.p, n);
  return r ? r : (x->key.n > y->key.n) - (x->key.n < y->key.n);
}

static bool ref_is(const gd_ref *r, int type, gd_str key) {
  return r->id == 0 && r->type == type && gd_str_eq(r->key, key);
}

/* gd_upsert_index: keys sorted and distinct, every entity and endpoint
 * mapped to its own key, endpoints by id to none. Then the same messages
 * into two stores, once as they are (gd_store_upsert indexes them on the
 * writer thread) and once indexed beforehand and queued at once as bulk
 * ops (so that runs of them share a nested transaction): the stores must
 * be equal, ids included, which also covers the rows of new entities
 * appended at the end of the adjacency and entity tables. */
static void test_upsert_index(void) {
  static bl_msg ms[BL_MSGS];
  static sync_op ops[BL_MSGS];
  static char dir_a[256];
  static void *ix[BL_MSGS];
  int codes[BL_MSGS], nfailed = 0;
  bl_build(ms);

  for (int m = 0; m < BL_MSGS; m++) {
    gd_upsert *u = &ms[m].u;
    ix[m] = malloc(gd_upsert_index_size(u));
    CHECK(ix[m] != NULL);
    gd_upsert_index(u, ix[m]);
    int bad = 0;
    for (size_t i = 1; i < u->nkeys; i++)
      bad += key_cmp(u->keys[i - 1], u->keys[i]) >= 0;
    for (size_t i = 0; i < u->nentities; i++)
      bad += !(u->key_of[i] < u->nkeys &&
               ref_is(u->keys[u->key_of[i]], u->entities[i].type, u->entities[i].key));
    for (size_t i = 0; i < u->nlinks; i++) {
      uint32_t a = u->key_of[u->nentities + 2 * i], b = u->key_of[u->nentities + 2 * i + 1];
      bad += !(a < u->nkeys && ref_is(u->keys[a], u->links[i].a.type, u->links[i].a.key));
      bad += !(b < u->nkeys && ref_is(u->keys[b], u->links[i].b.type, u->links[i].b.key));
    }
    CHECK_EQ_U(bad, 0);
  }
  gd_link_in byid[2] = {{{7, 0, {0}}, R(GD_TYPE_PHONE, "p1"), 1},
                        {R(GD_TYPE_PHONE, "p1"), R(GD_TYPE_PHONE, "p0"), 1}};
  gd_upsert iu = {.links = byid, .nlinks = 2};
  void *ib = malloc(gd_upsert_index_size(&iu));
  gd_upsert_index(&iu, ib);
  CHECK_EQ_U(iu.nkeys, 2);
  CHECK(ref_is(iu.keys[0], GD_TYPE_PHONE, gd_str_c("p0")));
  CHECK(iu.key_of[0] == UINT32_MAX && iu.key_of[1] == 1 && iu.key_of[2] == 1 &&
        iu.key_of[3] == 0);
  free(ib);

  /* A: plain upserts, one at a time. */
  gd_writer *wa;
  gd_store *a = open_kept(dir_a, &wa);
  for (int m = 0; m < BL_MSGS; m++) {
    sync_op s;
    sync_init(&s, 0);
    s.u = ms[m].u;
    s.u.keys = NULL;
    s.u.key_of = NULL;
    s.u.nkeys = 0;
    codes[m] = sync_run(wa, &s); /* a message with a self-link fails, in both */
    nfailed += codes[m] != GD_OK;
  }

  /* B: indexed, queued together as bulk ops. */
  fresh_dir();
  gd_store *b = open_store(64u << 20);
  gd_writer *wb;
  CHECK(gd_writer_start(b, 0, &wb, NULL) == GD_OK);
  for (int m = 0; m < BL_MSGS; m++) {
    sync_init(&ops[m], 0);
    ops[m].u = ms[m].u;
    ops[m].op.bulk = true;
  }
  for (int m = 0; m < BL_MSGS; m++)
    gd_writer_submit(wb, &ops[m].op);
  int differ = 0;
  for (int m = 0; m < BL_MSGS; m++) {
    pthread_mutex_lock(&ops[m].mu);
    while (!ops[m].done)
      pthread_cond_wait(&ops[m].cv, &ops[m].mu);
    pthread_mutex_unlock(&ops[m].mu);
    differ += ops[m].code != codes[m];
  }
  CHECK_EQ_U(differ, 0);
  CHECK(nfailed <= 2);
  gd_writer_stats ws;
  gd_writer_stats_get(wb, &ws);
  CHECK(ws.commits < BL_MSGS); /* runs shared commits */

  int compared = 0, mism = bl_compare(a, b, true, &compared);
  CHECK(compared > 300);
  CHECK_EQ_U(mism, 0);

  /* One entity named by key (a label) and by id (a link) in one message:
   * both changes land on the one cached copy. */
  gd_entity_view v0, v1;
  CHECK(get(b, R(GD_TYPE_SELLER, "s1"), &v0) == GD_OK);
  gd_str lab = gd_str_c("by-key");
  gd_entity_in ein = {.type = GD_TYPE_SELLER, .key = gd_str_c("s1"), .labels = &lab, .nlabels = 1};
  gd_link_in lk = {{v0.id, 0, {0}}, R(GD_TYPE_PHONE, "p-new"), 1700000000};
  sync_op s;
  sync_init(&s, 0);
  s.u = (gd_upsert){.entities = &ein, .nentities = 1, .links = &lk, .nlinks = 1};
  void *mix = malloc(gd_upsert_index_size(&s.u));
  gd_upsert_index(&s.u, mix);
  CHECK(sync_run(wb, &s) == GD_OK);
  free(mix);
  CHECK(get(b, R(GD_TYPE_SELLER, "s1"), &v1) == GD_OK);
  CHECK_EQ_U(v1.degree, v0.degree + 1);
  char eb1[512];
  CHECK(bl_entity(b, GD_TYPE_SELLER, "s1", eb1, sizeof eb1) && strstr(eb1, " #by-key"));

  for (int m = 0; m < BL_MSGS; m++)
    free(ix[m]);
  close_kept(dir_a, a, wa);
  gd_writer_stop(wb);
  gd_store_close(b);
}

TAP_MAIN(T(test_normalize), T(test_bulk_load), T(test_drop_resident), T(test_upsert_and_read), T(test_atomic_and_errors),
         T(test_entities_labels_delete), T(test_links_paging_filters), T(test_map_growth),
         T(test_map_full_at_commit), T(test_group_commit), T(test_audit_chain),
         T(test_placement_tables), T(test_cases), T(test_graph_state),
         T(test_writer_linger), T(test_writer_bulk), T(test_writer_txn_full), T(test_writer_bulk_run), T(test_audit_case_index), T(test_export_patch),
         T(test_upsert_index))
