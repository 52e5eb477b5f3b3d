/*
 * Unit tests for the rpc layer's context (graphd/rpc/rpc.h): two contexts
 * over two stores live side by side in one process, each bound table's
 * rows carry their own context, and calls served from each table reach
 * that context's store and health status, never the other's.
 */
#include <grpc/grpc.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "graphd.pb-c.h"
#include "health.pb-c.h"
#include "rpc/rpc.h"
#include "server/server.h"
#include "store/store.h"
#include "store/writer.h"
#include "tap.h"

/* One daemon's layers: a store in its own temporary directory, its writer,
 * a context over them and (for calls) a server and a client. */
typedef struct side {
  char dir[64];
  gd_store *store;
  gd_writer *writer;
  gd_rpc *rpc;
  gd_server *server;
  gc_client *client;
} side;

static bool side_open(side *s) {
  gd_err e;
  gd_rpc_limits lim = {.max_batch_items = 1000, .result_cap = 1000};
  memset(s, 0, sizeof *s);
  strcpy(s->dir, "/tmp/gd-test-rpc-ctx-XXXXXX");
  if (!mkdtemp(s->dir))
    abort();
  gd_store_opts so = {.path = s->dir, .map_size = 16 << 20};
  int rc = gd_store_open(&so, &s->store, &e);
  if (!rc)
    rc = gd_writer_start(s->store, 0, &s->writer, &e);
  if (!rc)
    rc = gd_rpc_new(s->store, s->writer, &lim, &s->rpc, &e);
  if (rc)
    fprintf(stderr, "%s: %s\n", s->dir, e.msg);
  CHECK_EQ_U(rc, GD_OK);
  return rc == GD_OK;
}

/* Serves s's bound table on a free loopback port and connects a client. */
static bool side_serve(side *s) {
  gd_err e;
  size_t n;
  int port;
  const gd_method *m = gd_rpc_methods(s->rpc, &n);
  gd_server_opts sv = {.listen = "127.0.0.1:0", .threads = 2, .max_recv_bytes = 4 << 20,
                       .max_send_bytes = 4 << 20, .default_deadline_ms = 5000,
                       .max_deadline_ms = 10000, .max_concurrent_streams = 100};
  int rc = gd_server_start(&sv, m, n, &s->server, &port, &e);
  if (rc)
    fprintf(stderr, "server: %s\n", e.msg);
  CHECK_EQ_U(rc, GD_OK);
  if (rc)
    return false;
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  gc_client_opts co = {0};
  gc_status st;
  rc = gc_client_open(addr, &co, &s->client, &st);
  if (!rc)
    rc = gc_client_wait_ready(s->client, 10000, &st);
  if (rc)
    fprintf(stderr, "client: %s\n", st.message);
  CHECK_EQ_U(rc, 0);
  return rc == 0;
}

/* In the order main.c uses: no call runs, the writer is done, then the
 * context goes. */
static void side_close(side *s) {
  char cmd[100];
  gc_client_close(s->client);
  if (s->server)
    gd_server_shutdown(s->server, 0);
  gd_writer_stop(s->writer);
  gd_rpc_free(s->rpc);
  gd_store_close(s->store);
  snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", s->dir);
}

/* Upserts n links seller:<prefix>i -- device:<prefix>d; returns the status. */
static int upsert(side *s, const char *prefix, int n) {
  Graphd__V1__EntityRef a[8], b[8];
  Graphd__V1__LinkInput l[8], *lp[8];
  char keys[8][32], dev[32];
  snprintf(dev, sizeof dev, "%sd", prefix);
  for (int i = 0; i < n; i++) {
    snprintf(keys[i], sizeof keys[i], "%s%d", prefix, i);
    graphd__v1__entity_ref__init(&a[i]);
    graphd__v1__entity_ref__init(&b[i]);
    graphd__v1__link_input__init(&l[i]);
    a[i].type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    a[i].key = keys[i];
    b[i].type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE;
    b[i].key = dev;
    l[i].a = &a[i];
    l[i].b = &b[i];
    lp[i] = &l[i];
  }
  Graphd__V1__UpsertRequest req = GRAPHD__V1__UPSERT_REQUEST__INIT;
  req.links = lp;
  req.n_links = (size_t)n;
  ProtobufCMessage *rep = NULL;
  gc_status st;
  int rc = gc_unary(s->client, "/graphd.v1.SellerGraph/Upsert", &req.base,
                    &graphd__v1__upsert_reply__descriptor, &rep, &st, 10000);
  if (rc)
    fprintf(stderr, "Upsert: %s\n", st.message);
  if (rep)
    protobuf_c_message_free_unpacked(rep, NULL);
  return rc;
}

/* The entities Stats counts through s's server; UINT64_MAX on failure. */
static uint64_t stats_total(side *s) {
  Graphd__V1__StatsRequest req = GRAPHD__V1__STATS_REQUEST__INIT;
  ProtobufCMessage *rep = NULL;
  gc_status st;
  if (gc_unary(s->client, "/graphd.v1.SellerGraph/Stats", &req.base,
               &graphd__v1__stats_reply__descriptor, &rep, &st, 10000)) {
    fprintf(stderr, "Stats: %s\n", st.message);
    return UINT64_MAX;
  }
  uint64_t n = ((Graphd__V1__StatsReply *)rep)->entities_total;
  protobuf_c_message_free_unpacked(rep, NULL);
  return n;
}

/* The health status through s's server; -1 on failure. */
static int health(side *s) {
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  ProtobufCMessage *rep = NULL;
  gc_status st;
  if (gc_unary(s->client, "/grpc.health.v1.Health/Check", &req.base,
               &grpc__health__v1__health_check_response__descriptor, &rep, &st, 10000)) {
    fprintf(stderr, "Health: %s\n", st.message);
    return -1;
  }
  int status = (int)((Grpc__Health__V1__HealthCheckResponse *)rep)->status;
  protobuf_c_message_free_unpacked(rep, NULL);
  return status;
}

/* Each bound table is the unbound one with every row's ctx set to its own
 * context; the two tables share nothing. */
static void test_tables(void) {
  side a, b;
  size_t n, na = 0, nb = 0;
  bool ok_a = side_open(&a), ok_b = side_open(&b);
  if (ok_a && ok_b) {
    const gd_method *u = gd_rpc_method_table(&n);
    const gd_method *ma = gd_rpc_methods(a.rpc, &na), *mb = gd_rpc_methods(b.rpc, &nb);
    CHECK(n > 20);
    CHECK_EQ_U(na, n);
    CHECK_EQ_U(nb, n);
    CHECK(ma != mb && ma != u && mb != u);
    for (size_t i = 0; i < n && i < na && i < nb; i++) {
      CHECK(u[i].ctx == NULL);
      CHECK(ma[i].ctx == a.rpc);
      CHECK(mb[i].ctx == b.rpc);
      CHECK_STR(ma[i].path, u[i].path);
      CHECK_STR(mb[i].path, u[i].path);
      CHECK(ma[i].on_request == u[i].on_request && ma[i].on_read == u[i].on_read);
      CHECK(ma[i].request == u[i].request && ma[i].reply == u[i].reply);
    }
    /* The audit hooks are the same code, each over its own context. */
    void (*audit_a)(void *, gd_call *, int), (*audit_b)(void *, gd_call *, int);
    bool (*now_a)(void *, gd_call *, int), (*now_b)(void *, gd_call *, int);
    bool (*ready_a)(void *), (*ready_b)(void *);
    void *ctx_a = NULL, *ctx_b = NULL;
    gd_rpc_audit_hooks(a.rpc, &audit_a, &now_a, &ready_a, &ctx_a);
    gd_rpc_audit_hooks(b.rpc, &audit_b, &now_b, &ready_b, &ctx_b);
    CHECK(ctx_a == a.rpc && ctx_b == b.rpc);
    CHECK(audit_a == audit_b && now_a == now_b && ready_a == ready_b);
    CHECK(ready_a(ctx_a) && ready_b(ctx_b));
    CHECK(gd_rpc_jobs_journal(a.rpc) != gd_rpc_jobs_journal(b.rpc));
  }
  side_close(&a);
  side_close(&b);
  gd_rpc_free(NULL);
}

/* Calls through each server read their own context: writes land in its
 * store, Stats counts its store, Health answers its serving flag. */
static void test_calls(void) {
  side a, b;
  grpc_init();
  bool ok = side_open(&a);
  ok = side_open(&b) && ok;
  ok = ok && side_serve(&a) && side_serve(&b);
  if (ok) {
    CHECK_EQ_U(upsert(&a, "a", 1), 0); /* 2 entities */
    CHECK_EQ_U(upsert(&b, "b", 3), 0); /* 4 entities */
    CHECK_EQ_U(stats_total(&a), 2);
    CHECK_EQ_U(stats_total(&b), 4);
    enum { SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
           NOT_SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING };
    CHECK_EQ_U(health(&a), SERVING);
    gd_rpc_set_serving(a.rpc, 0);
    CHECK_EQ_U(health(&a), NOT_SERVING);
    CHECK_EQ_U(health(&b), SERVING);
  }
  side_close(&a);
  side_close(&b);
  grpc_shutdown_blocking();
}

TAP_MAIN({"two tables", test_tables}, {"two servers", test_calls})
