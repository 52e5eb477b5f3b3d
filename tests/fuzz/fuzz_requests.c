/*
 * libFuzzer target: every rpc's request decoding and validation, through
 * the real handlers. LLVMFuzzerInitialize starts the daemon's layers in
 * this process (store in a temp dir, writer, job manager with a worker
 * that does not exist, the gRPC server on a free loopback port) and seeds
 * a few entities. Each input is one call: the first byte picks the method
 * (Backup excluded: its path would name real directories), the second,
 * for Ingest and reflection, how many messages the rest is cut into; the rest is the raw
 * request bytes. Oracle, besides the sanitizers: the server answers every
 * call with a status that is neither INTERNAL nor UNKNOWN nor (the server
 * being alive) UNAVAILABLE.
 */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphd.pb-c.h"
#include "jobs/jobs.h"
#include "rpc/rpc.h"
#include "server/server.h"
#include "store/store.h"
#include "store/writer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static grpc_channel *ch;
static char dir[] = "/tmp/graphd-fuzz-XXXXXX";

/* libFuzzer leaves with exit(): take the store's files with us. */
static void remove_dir(void) {
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz_requests: could not remove %s\n", dir);
}
static const gd_method *methods;
static size_t nmethods;

static void die(const char *what, const gd_err *e) {
  fprintf(stderr, "fuzz_requests: %s: %s\n", what, e ? e->msg : "");
  abort();
}

/* One call with raw request messages; returns the status. */
static grpc_status_code call(const char *path, const uint8_t *const *msgs, const size_t *lens,
                             size_t n) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice method = grpc_slice_from_static_string(path);
  gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(10, GPR_TIMESPAN));
  grpc_call *c = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, dl, NULL);
  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op op;
  char tag;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_INITIAL_METADATA;
  grpc_call_start_batch(c, &op, 1, &tag, NULL);
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  for (size_t i = 0; i < n; i++) {
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msgs[i], lens[i]);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    grpc_call_start_batch(c, &op, 1, &tag, NULL);
    grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_byte_buffer_destroy(bb);
  }
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[1].data.recv_initial_metadata.recv_initial_metadata = &init_md;
  grpc_call_start_batch(c, ops, 2, &tag, NULL);
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  for (int k = 0; k < 100000; k++) { /* drain replies (streams) */
    grpc_byte_buffer *bb = NULL;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    grpc_call_start_batch(c, &op, 1, &tag, NULL);
    grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (!bb)
      break;
    grpc_byte_buffer_destroy(bb);
  }
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &trail_md;
  op.data.recv_status_on_client.status = &status;
  op.data.recv_status_on_client.status_details = &details;
  grpc_call_start_batch(c, &op, 1, &tag, NULL);
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  grpc_call_unref(c);
  grpc_completion_queue_shutdown(cq);
  grpc_completion_queue_destroy(cq);
  return status;
}

static void seed(void) {
  Graphd__V1__EntityRef a[4], b[4];
  Graphd__V1__LinkInput l[4], *lp[4];
  const char *keys[4] = {"s1", "s2", "s3", "s4"};
  for (int i = 0; i < 4; i++) {
    graphd__v1__entity_ref__init(&a[i]);
    graphd__v1__entity_ref__init(&b[i]);
    graphd__v1__link_input__init(&l[i]);
    a[i].type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
    a[i].key = (char *)keys[i];
    b[i].type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE;
    b[i].key = "d1";
    l[i].a = &a[i];
    l[i].b = &b[i];
    lp[i] = &l[i];
  }
  Graphd__V1__UpsertRequest r = GRAPHD__V1__UPSERT_REQUEST__INIT;
  r.links = lp;
  r.n_links = 4;
  uint8_t buf[1024];
  size_t n = protobuf_c_message_pack(&r.base, buf);
  const uint8_t *m[1] = {buf};
  if (call("/graphd.v1.SellerGraph/Upsert", m, &n, 1) != GRPC_STATUS_OK)
    die("seed upsert", NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  gd_err e;
  gd_store *store;
  gd_writer *writer = NULL;
  gd_rpc *rpc;
  gd_jobs *jobs;
  gd_server *server;
  int port;
  if (!mkdtemp(dir))
    die("mkdtemp", NULL);
  atexit(remove_dir);
  gd_store_opts so = {.path = dir, .map_size = 64 << 20, .map_size_max = 1ULL << 30};
  if (gd_store_open(&so, &store, &e) || gd_writer_start(store, 0, &writer, &e))
    die("store", &e);
  gd_rpc_limits lim = {.max_batch_items = 1000, .result_cap = 1000, .max_reply_bytes = 4 << 20,
                       .ingest_inflight = 16, .ingest_window_bytes = 1 << 20};
  if (gd_rpc_new(store, writer, &lim, &rpc, &e))
    die("rpc", &e);
  methods = gd_rpc_methods(rpc, &nmethods);
  gd_jobs_opts jo = {.worker_path = "/nonexistent/graphd-worker", .data_dir = dir};
  if (gd_jobs_start(&jo, &jobs, &e))
    die("jobs", &e);
  gd_rpc_set_jobs(rpc, jobs);
  grpc_init();
  gd_server_opts sv = {.listen = "127.0.0.1:0", .threads = 2, .max_recv_bytes = 4 << 20,
                       .max_send_bytes = 4 << 20, .default_deadline_ms = 5000,
                       .max_deadline_ms = 10000, .max_concurrent_streams = 100};
  if (gd_server_start(&sv, methods, nmethods, &server, &port, &e))
    die("server", &e);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  grpc_channel_credentials *cr = grpc_insecure_credentials_create();
  ch = grpc_channel_create(target, cr, NULL);
  grpc_channel_credentials_release(cr);
  seed();
  /* The daemon lives until the process exits: libFuzzer never returns. */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  const gd_method *m = &methods[data[0] % nmethods];
  if (strstr(m->path, "/Backup"))
    return 0;
  const uint8_t *msgs[3];
  size_t lens[3], n = 1;
  const uint8_t *p = data + 2;
  size_t left = size - 2;
  if (m->kind == GD_RPC_CLIENT_STREAM || m->kind == GD_RPC_BIDI_STREAM) {
    n = 1 + data[1] % 3;
    for (size_t i = 0; i < n; i++) {
      size_t k = i + 1 == n ? left : left / (n - i);
      msgs[i] = p;
      lens[i] = k;
      p += k;
      left -= k;
    }
  } else {
    msgs[0] = p;
    lens[0] = left;
  }
  grpc_status_code st = call(m->path, msgs, lens, n);
  if (st == GRPC_STATUS_INTERNAL || st == GRPC_STATUS_UNKNOWN || st == GRPC_STATUS_UNAVAILABLE) {
    fprintf(stderr, "fuzz_requests: %s answered status %d\n", m->path, (int)st);
    abort();
  }
  return 0;
}
