/*
 * The gRPC transport, over the gRPC core C API (server/transport.h).
 *
 * How it works. One completion queue (CQ) is shared by N handler threads,
 * each blocked in grpc_completion_queue_next(). For every registered method
 * a few request slots are kept posted; when core matches an incoming call
 * to a slot, the slot's tag comes back, a fresh slot is posted at once, and
 * the call is handed to the call core (gd__call_accept). Unknown paths land
 * in generic slots and are answered UNIMPLEMENTED (without those slots such
 * calls would hang until their deadline).
 *
 * Every batch started on a call holds one reference on it (the core counts
 * them, server.c). Unary calls send their reply, status and
 * RECV_CLOSE_ON_SERVER in one batch: two CQ events per call. Streaming
 * calls, and unary ones, start RECV_CLOSE at once so that cancellation is
 * seen while the method runs. Bidirectional streams are the client-stream
 * machine (server-started first read, gd_call_read_next) and the
 * server-stream one (gd_call_write, on_written) on the same call.
 *
 * gRPC core enforces the client's deadline; the core's reaper cancels
 * calls past the server's default or clamp (grpc_call_cancel_with_status).
 *
 * Shutdown follows the order core requires: stop posting slots (the
 * server's draining flag, read under the slot lock),
 * grpc_server_shutdown_and_notify, then after the grace period cancel all
 * calls and wait for the shutdown tag; once every call is freed, destroy
 * the server, shut the CQ down and join the threads.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/transport.h"

#define SLOTS_PER_METHOD 4
#define GENERIC_SLOTS 4

enum tag_kind { TAG_NEW, TAG_CLOSE, TAG_READ, TAG_WRITE, TAG_FINAL, TAG_SHUTDOWN };

typedef struct gcall gcall;

typedef struct tag {
  enum tag_kind kind;
  gcall *call;
} tag;

typedef struct glisten glisten;

struct gcall {
  gd_call base; /* first: a gd_call * is a gcall * */
  glisten *l;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* generic slots only */
  grpc_byte_buffer *payload; /* registered unary/server-stream request */
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *send_buf;
  grpc_byte_buffer *final_buf;
  int close_cancelled;
  bool md_sent; /* initial metadata sent */
  bool close_started;
  char *peer;  /* grpc_call_get_peer, gpr_free */
  char *gpath; /* an unknown method's path, gpr_free */
  tag t_new, t_close, t_read, t_write, t_final;
};

struct glisten {
  gd_server *srv;
  grpc_server *server;
  grpc_completion_queue *cq;
  const gd_method *methods;
  size_t nmethods;
  void **handles; /* registered method handles */
  pthread_t *threads;
  unsigned nthreads, started;
  pthread_mutex_t mu; /* slot posting vs shutdown */
  pthread_cond_t cv;
  bool stopped;       /* no more slots */
  bool shutdown_done; /* the shutdown tag came back */
  bool shutdown_asked;
  tag t_shutdown;
};

static const gd_transport grpc_transport;

#define G(c) ((gcall *)(c))

/* ---- helpers ----------------------------------------------------------- */

static void start_batch(gcall *g, const grpc_op *ops, size_t n, tag *t) {
  grpc_call_error e = grpc_call_start_batch(g->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    /* A broken precondition is a bug in this file: fail loudly. */
    gd_error("grpc_call_start_batch: %s", grpc_call_error_to_string(e));
    abort();
  }
  gd__call_ref_locked(&g->base);
}

static gcall *gcall_new(glisten *l, const gd_method *m, size_t midx) {
  gcall *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  gd__call_init(&g->base, l->srv, &grpc_transport, m, midx);
  g->l = l;
  grpc_metadata_array_init(&g->md);
  grpc_call_details_init(&g->details);
  g->t_new = (tag){TAG_NEW, g};
  g->t_close = (tag){TAG_CLOSE, g};
  g->t_read = (tag){TAG_READ, g};
  g->t_write = (tag){TAG_WRITE, g};
  g->t_final = (tag){TAG_FINAL, g};
  return g;
}

/* Frees a call's transport part (also a slot that never became a call). */
static void gcall_free(gd_call *c) {
  gcall *g = G(c);
  if (g->call)
    grpc_call_unref(g->call);
  if (g->recv_buf)
    grpc_byte_buffer_destroy(g->recv_buf);
  if (g->send_buf)
    grpc_byte_buffer_destroy(g->send_buf);
  if (g->final_buf)
    grpc_byte_buffer_destroy(g->final_buf);
  if (g->payload)
    grpc_byte_buffer_destroy(g->payload);
  if (g->peer)
    gpr_free(g->peer);
  if (g->gpath)
    gpr_free(g->gpath);
  grpc_metadata_array_destroy(&g->md);
  grpc_call_details_destroy(&g->details);
  free(g);
}

static void slot_free(gcall *g) {
  pthread_mutex_destroy(&g->base.mu);
  gcall_free(&g->base);
}

/* Posts one request slot; false when the server is draining. Called with
 * l->mu held so the check and the post are atomic with the drain. */
static bool post_slot_locked(glisten *l, const gd_method *m, size_t midx) {
  if (l->stopped)
    return false;
  gcall *g = gcall_new(l, m, midx);
  if (!g) {
    gd_error("out of memory posting a request slot");
    return false;
  }
  grpc_call_error e;
  if (m) {
    bool with_payload = m->kind != GD_RPC_CLIENT_STREAM && m->kind != GD_RPC_BIDI_STREAM;
    e = grpc_server_request_registered_call(l->server, l->handles[midx], &g->call, &g->deadline,
                                            &g->md, with_payload ? &g->payload : NULL, l->cq,
                                            l->cq, &g->t_new);
  } else {
    e = grpc_server_request_call(l->server, &g->call, &g->details, &g->md, l->cq, l->cq,
                                 &g->t_new);
  }
  if (e != GRPC_CALL_OK) {
    gd_error("request slot: %s", grpc_call_error_to_string(e));
    slot_free(g);
    return false;
  }
  return true;
}

static void post_slot(glisten *l, const gd_method *m, size_t midx) {
  pthread_mutex_lock(&l->mu);
  post_slot_locked(l, m, midx);
  pthread_mutex_unlock(&l->mu);
}

static int64_t timespec_to_mono_ns(gpr_timespec t) {
  if (gpr_time_cmp(t, gpr_inf_future(t.clock_type)) == 0)
    return INT64_MAX;
  gpr_timespec m = gpr_convert_clock_type(t, GPR_CLOCK_MONOTONIC);
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  int64_t left_ns = (m.tv_sec - now.tv_sec) * 1000000000LL + (m.tv_nsec - now.tv_nsec);
  return gd_now_ns() + left_ns;
}

static grpc_byte_buffer *make_buffer(const uint8_t *p, size_t n) {
  grpc_slice sl = grpc_slice_from_copied_buffer((const char *)p, n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

/* Reads a whole byte buffer into one slice. */
static grpc_slice read_all(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader rd;
  grpc_slice sl;
  if (!grpc_byte_buffer_reader_init(&rd, bb))
    return grpc_empty_slice();
  sl = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  return sl;
}

/* ---- transport ops ------------------------------------------------------- */

static gd_str g_metadata(gd_call *c, const char *key) {
  gcall *g = G(c);
  for (size_t i = 0; i < g->md.count; i++)
    if (grpc_slice_str_cmp(g->md.metadata[i].key, key) == 0)
      return (gd_str){(const char *)GRPC_SLICE_START_PTR(g->md.metadata[i].value),
                      GRPC_SLICE_LENGTH(g->md.metadata[i].value)};
  return (gd_str){"", 0};
}

static const char *g_peer(gd_call *c) {
  gcall *g = G(c);
  pthread_mutex_lock(&c->mu);
  if (!g->peer)
    g->peer = grpc_call_get_peer(g->call);
  pthread_mutex_unlock(&c->mu);
  return g->peer ? g->peer : "";
}

static const char *g_unknown_path(gd_call *c) {
  gcall *g = G(c);
  if (!g->gpath)
    g->gpath = grpc_slice_to_c_string(g->details.method);
  return g->gpath ? g->gpath : "";
}

static bool g_cert_cn(gd_call *c, char *buf, size_t size) {
  grpc_auth_context *ctx = grpc_call_auth_context(G(c)->call);
  grpc_auth_property_iterator it =
      ctx ? grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME)
          : (grpc_auth_property_iterator){0};
  const grpc_auth_property *p = ctx ? grpc_auth_property_iterator_next(&it) : NULL;
  bool ok = p && p->value_length > 0 && p->value_length < size;
  if (ok) {
    memcpy(buf, p->value, p->value_length);
    buf[p->value_length] = 0;
  }
  grpc_auth_context_release(ctx);
  return ok;
}

static void g_read_next(gd_call *c) {
  gcall *g = G(c);
  grpc_op op = {0};
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &g->recv_buf;
  start_batch(g, &op, 1, &g->t_read);
}

static void g_write(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint) {
  gcall *g = G(c);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!g->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    g->md_sent = true;
    buffer_hint = false; /* a hint on the batch with metadata stalls the stream */
  }
  if (g->send_buf)
    grpc_byte_buffer_destroy(g->send_buf);
  g->send_buf = make_buffer(msg, len);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].flags = buffer_hint ? GRPC_WRITE_BUFFER_HINT : 0;
  ops[n++].data.send_message.send_message = g->send_buf;
  start_batch(g, ops, n, &g->t_write);
}

static void g_send_final(gd_call *c, int status, const char *msg, const uint8_t *reply,
                         size_t len) {
  gcall *g = G(c);
  grpc_op ops[4];
  size_t n = 0;
  grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
  memset(ops, 0, sizeof ops);
  if (!g->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    g->md_sent = true;
  }
  if (reply) {
    g->final_buf = make_buffer(reply, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = g->final_buf;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)status;
  ops[n++].data.send_status_from_server.status_details = msg ? &details : NULL;
  if (!g->close_started) {
    g->close_started = true;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &g->close_cancelled;
  }
  start_batch(g, ops, n, &g->t_final);
  grpc_slice_unref(details);
}

static void g_cancel(gd_call *c, int status, const char *msg) {
  /* Thread-safe in core; the call is valid while the caller holds the
   * server's lock (it is on the active list). */
  grpc_call_cancel_with_status(G(c)->call, (grpc_status_code)status, msg, NULL);
}

/* ---- event handling ----------------------------------------------------- */

static void start_close(gcall *g) {
  grpc_op op = {0};
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &g->close_cancelled;
  g->close_started = true;
  start_batch(g, &op, 1, &g->t_close);
}

static void on_new_call(gcall *g, bool ok) {
  glisten *l = g->l;
  gd_call *c = &g->base;
  const gd_method *m = c->m;

  /* Re-post first, so the method never runs out of slots. */
  post_slot(l, m, c->midx);
  if (!ok) {
    slot_free(g);
    return;
  }
  if (!gd__call_accept(c, timespec_to_mono_ns(m ? g->deadline : g->details.deadline)))
    return;
  /* Ask for the close now, so a client that cancels or goes away marks
   * the call dead while the method still works on it (gd_call_check). */
  pthread_mutex_lock(&c->mu);
  start_close(g);
  pthread_mutex_unlock(&c->mu);
  switch (m->kind) {
  case GD_RPC_CLIENT_STREAM:
  case GD_RPC_BIDI_STREAM:
    gd_call_read_next(c);
    return;
  case GD_RPC_SERVER_STREAM:
  case GD_RPC_UNARY:
    if (g->payload) {
      grpc_slice sl = read_all(g->payload);
      grpc_byte_buffer_destroy(g->payload);
      g->payload = NULL;
      gd__call_request(c, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), true);
      grpc_slice_unref(sl);
    } else {
      gd__call_request(c, NULL, 0, false);
    }
    return;
  }
}

static void on_read_done(gcall *g, bool ok) {
  gd_call *c = &g->base;
  grpc_byte_buffer *bb;
  pthread_mutex_lock(&c->mu);
  bb = g->recv_buf;
  g->recv_buf = NULL;
  pthread_mutex_unlock(&c->mu);
  if (!ok) {
    if (bb)
      grpc_byte_buffer_destroy(bb);
    gd__call_read_done(c, GD_READ_FAILED, NULL, 0);
  } else if (!bb) {
    gd__call_read_done(c, GD_READ_END, NULL, 0);
  } else {
    grpc_slice sl = read_all(bb);
    grpc_byte_buffer_destroy(bb);
    gd__call_read_done(c, GD_READ_MESSAGE, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
  }
  gd__call_unref(c);
}

static void on_close_done(gcall *g) {
  if (g->close_cancelled)
    gd__call_died(&g->base);
  gd__call_unref(&g->base);
}

static void *handler_main(void *arg) {
  glisten *l = arg;
  pthread_setname_np(pthread_self(), "gd-handler"); /* top -H, perf --sort comm */
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type != GRPC_OP_COMPLETE)
      continue;
    tag *t = ev.tag;
    gcall *g = t->call;
    switch (t->kind) {
    case TAG_NEW:
      on_new_call(g, ev.success);
      break;
    case TAG_READ:
      on_read_done(g, ev.success);
      break;
    case TAG_WRITE:
      g->base.m->on_written(&g->base, ev.success);
      gd__call_unref(&g->base);
      break;
    case TAG_CLOSE:
      on_close_done(g);
      break;
    case TAG_FINAL:
      gd__call_unref(&g->base);
      break;
    case TAG_SHUTDOWN:
      pthread_mutex_lock(&l->mu);
      l->shutdown_done = true;
      pthread_cond_broadcast(&l->cv);
      pthread_mutex_unlock(&l->mu);
      break;
    }
  }
  return NULL;
}

/* ---- listener -------------------------------------------------------------- */

static void g_drain(void *lctx) {
  glisten *l = lctx;
  pthread_mutex_lock(&l->mu);
  l->stopped = true;
  l->shutdown_asked = true;
  pthread_mutex_unlock(&l->mu);
  grpc_server_shutdown_and_notify(l->server, l->cq, &l->t_shutdown);
}

static void g_cancel_all(void *lctx) {
  glisten *l = lctx;
  grpc_server_cancel_all_calls(l->server);
  pthread_mutex_lock(&l->mu);
  while (!l->shutdown_done)
    pthread_cond_wait(&l->cv, &l->mu);
  pthread_mutex_unlock(&l->mu);
}

static void g_destroy(void *lctx) {
  glisten *l = lctx;
  grpc_server_destroy(l->server);
  grpc_completion_queue_shutdown(l->cq);
  for (unsigned i = 0; i < l->started; i++)
    pthread_join(l->threads[i], NULL);
  if (!l->started) /* (never served: drain the queue here) */
    while (grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
      ;
  grpc_completion_queue_destroy(l->cq);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l->handles);
  free(l->threads);
  free(l);
}

static const gd_transport grpc_transport = {
    .name = "grpc",
    .own_deadlines = true,
    .metadata = g_metadata,
    .peer = g_peer,
    .unknown_path = g_unknown_path,
    .cert_cn = g_cert_cn,
    .read_next = g_read_next,
    .write = g_write,
    .send_final = g_send_final,
    .cancel = g_cancel,
    .free = gcall_free,
    .drain = g_drain,
    .cancel_all = g_cancel_all,
    .destroy = g_destroy,
};

int gd__grpc_start(gd_server *s, int *ret_port, gd_err *err) {
  const gd_server_opts *o = gd__server_opts(s);
  glisten *l = calloc(1, sizeof *l);
  if (!l)
    return gd_err_set(err, GD_ENOMEM, "server: out of memory");
  l->srv = s;
  l->methods = gd__server_methods(s, &l->nmethods);
  l->nthreads = o->threads;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->t_shutdown = (tag){TAG_SHUTDOWN, NULL};

  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = o->max_recv_bytes}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = o->max_send_bytes}},
      /* A stale server must not silently share our port. */
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = o->max_concurrent_streams}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS,
       {.integer = o->keepalive_time_ms ? o->keepalive_time_ms : 60000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
       {.integer = o->keepalive_timeout_ms ? o->keepalive_timeout_ms : 20000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       {.integer = o->min_ping_interval_ms ? o->min_ping_interval_ms : 10000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
  };
  grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
  l->server = grpc_server_create(&cargs, NULL);
  l->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(l->server, l->cq, NULL);

  l->handles = calloc(l->nmethods ? l->nmethods : 1, sizeof *l->handles);
  l->threads = calloc(l->nthreads, sizeof *l->threads);
  if (!l->handles || !l->threads) {
    gd_err_set(err, GD_ENOMEM, "server: out of memory");
    goto fail;
  }
  for (size_t i = 0; i < l->nmethods; i++) {
    grpc_server_register_method_payload_handling mode =
        l->methods[i].kind == GD_RPC_CLIENT_STREAM || l->methods[i].kind == GD_RPC_BIDI_STREAM
            ? GRPC_SRM_PAYLOAD_NONE
            : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;
    l->handles[i] = grpc_server_register_method(l->server, l->methods[i].path, NULL, mode, 0);
    if (!l->handles[i]) {
      gd_err_set(err, GD_EINVALID, "cannot register method %s", l->methods[i].path);
      goto fail;
    }
  }
  grpc_server_credentials *creds;
  if (o->tls_cert_pem && o->tls_key_pem) {
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem}; /* key first */
    creds = grpc_ssl_server_credentials_create_ex(
        o->tls_client_ca_pem, &pair, 1,
        o->tls_client_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
  } else {
    creds = grpc_insecure_server_credentials_create();
  }
  if (!creds) {
    gd_err_set(err, GD_EINVALID, "cannot create TLS credentials from the given PEM files");
    goto fail;
  }
  int port = grpc_server_add_http2_port(l->server, o->listen, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    gd_err_set(err, GD_EIO, "cannot listen on %s (address in use or not valid)", o->listen);
    goto fail;
  }
  grpc_server_start(l->server);

  pthread_mutex_lock(&l->mu);
  for (size_t i = 0; i < l->nmethods; i++)
    for (int k = 0; k < SLOTS_PER_METHOD; k++)
      post_slot_locked(l, &l->methods[i], i);
  for (int k = 0; k < GENERIC_SLOTS; k++)
    post_slot_locked(l, NULL, 0);
  pthread_mutex_unlock(&l->mu);

  for (unsigned i = 0; i < l->nthreads; i++)
    if (pthread_create(&l->threads[i], NULL, handler_main, l) == 0)
      l->started++;
  gd__server_add_transport(s, &grpc_transport, l);
  *ret_port = port;
  return GD_OK;

fail:
  g_destroy(l); /* never started: it drains the queue itself */
  return err ? err->code : GD_EIO;
}
