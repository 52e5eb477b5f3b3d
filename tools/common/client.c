/*
 * Synchronous graphd client over the gRPC core API (see client.h).
 *
 * Call sequences (the rules gRPC core 1.51's C API imposes, learnt the hard
 * way; each one below says what breaks without it):
 *
 * unary:   one batch [SEND_INITIAL_METADATA + SEND_MESSAGE +
 *          SEND_CLOSE_FROM_CLIENT + RECV_INITIAL_METADATA + RECV_MESSAGE +
 *          RECV_STATUS_ON_CLIENT], then pluck its tag. The call deadline
 *          bounds the wait: core completes the batch when it passes.
 *
 * stream:  first send: [SEND_INITIAL_METADATA + SEND_MESSAGE] without the
 *          buffer hint (a hinted batch that carries initial metadata is
 *          never flushed), and right after it the receive batch
 *          [RECV_INITIAL_METADATA + RECV_MESSAGE + RECV_STATUS_ON_CLIENT],
 *          which stays pending. Posting RECV_MESSAGE there matters: without
 *          a read of the reply, RECV_STATUS_ON_CLIENT never completes.
 *          Later sends: [SEND_MESSAGE] with GRPC_WRITE_BUFFER_HINT, one at a
 *          time (at most one SEND_MESSAGE may be pending). Finish:
 *          [SEND_CLOSE_FROM_CLIENT], which flushes, then pluck the receive
 *          batch. A send that fails (success = 0) means the call is over;
 *          its status comes from the receive batch.
 *
 * Every call has its own pluck completion queue, so calls on one channel
 * never see each other's events, and threads can share the client.
 */
#include "client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gc_client {
  grpc_channel *channel;
  char *addr;
  grpc_metadata md[2]; /* sent with every call: authorization, x-case-id */
  size_t n_md;
};

/* Points op (SEND_INITIAL_METADATA) at the client's metadata. */
static void initial_md(const gc_client *c, grpc_op *op) {
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  op->data.send_initial_metadata.count = c->n_md;
  op->data.send_initial_metadata.metadata = c->n_md ? (grpc_metadata *)c->md : NULL;
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *gc_status_code_name(int code) {
  if (code < 0 || (size_t)code >= sizeof status_names / sizeof status_names[0])
    return "UNKNOWN";
  return status_names[code];
}

/* ---- status helpers ---- */

static int st_set(gc_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills st with a client-side status; returns code. */
static int st_set(gc_status *st, int code, const char *fmt, ...) {
  if (st) {
    st->code = code;
    st->connect_failed = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
  }
  return code;
}

static int st_ok(gc_status *st) {
  if (st) {
    st->code = GRPC_STATUS_OK;
    st->connect_failed = false;
    st->message[0] = '\0';
  }
  return GRPC_STATUS_OK;
}

/* Fills st from a status received from gRPC; returns code. */
static int st_from_call(gc_status *st, gc_client *c, grpc_status_code code,
                        grpc_slice details) {
  if (!st)
    return (int)code;
  st->code = (int)code;
  size_t n = GRPC_SLICE_LENGTH(details);
  if (n >= sizeof st->message)
    n = sizeof st->message - 1;
  memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
  st->message[n] = '\0';
  st->connect_failed =
      (code == GRPC_STATUS_UNAVAILABLE ||
       code == GRPC_STATUS_DEADLINE_EXCEEDED) &&
      grpc_channel_check_connectivity_state(c->channel, 0) != GRPC_CHANNEL_READY;
  return (int)code;
}

static gpr_timespec deadline_after(int ms) {
  if (ms <= 0)
    return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  grpc_slice slice = grpc_slice_malloc(n);
  size_t w = protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(slice));
  if (w != n) {
    grpc_slice_unref(slice);
    return NULL;
  }
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice); /* the buffer holds its own reference */
  return bb;
}

static ProtobufCMessage *unpack_message(const ProtobufCMessageDescriptor *d,
                                        grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb))
    return NULL;
  grpc_slice slice = grpc_byte_buffer_reader_readall(&r);
  ProtobufCMessage *m = protobuf_c_message_unpack(
      d, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
  grpc_slice_unref(slice);
  grpc_byte_buffer_reader_destroy(&r);
  return m;
}

/* Turns a received reply into *ret_reply; returns the status code. */
static int take_reply(gc_status *st, grpc_byte_buffer *bb,
                      const ProtobufCMessageDescriptor *d,
                      ProtobufCMessage **ret_reply) {
  if (!bb)
    return st_set(st, GRPC_STATUS_INTERNAL,
                  "client: OK status without a reply message");
  ProtobufCMessage *m = unpack_message(d, bb);
  if (!m)
    return st_set(st, GRPC_STATUS_INTERNAL,
                  "client: the reply does not parse as %s", d->name);
  if (ret_reply)
    *ret_reply = m;
  else
    protobuf_c_message_free_unpacked(m, NULL);
  return GRPC_STATUS_OK;
}

static grpc_call *create_call(gc_client *c, grpc_completion_queue *cq,
                              const char *method, gpr_timespec deadline) {
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(
      c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
  grpc_slice_unref(m);
  return call;
}

/* ---- client ---- */

int gc_client_open(const char *addr, const gc_client_opts *opts,
                   gc_client **ret_client, gc_status *st) {
  static const gc_client_opts defaults;
  const gc_client_opts *o = opts ? opts : &defaults;
  *ret_client = NULL;
  if (!addr || !*addr)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: empty address");
  if (!o->tls && (o->tls_root_certs_pem || o->tls_cert_chain_pem ||
                  o->tls_private_key_pem || o->tls_server_name))
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: TLS options given without tls");
  if (!o->tls_cert_chain_pem != !o->tls_private_key_pem)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: a client certificate needs both the chain and the "
                  "private key");

  if (o->token && (!*o->token || strpbrk(o->token, " \t\r\n")))
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: a token is non-empty, no blanks");
  gc_client *c = calloc(1, sizeof *c);
  if (!c || !(c->addr = strdup(addr))) {
    free(c);
    return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
  }

  grpc_init();
  if (o->token) {
    size_t n = strlen(o->token) + 8;
    char *v = malloc(n);
    if (!v) {
      free(c->addr);
      free(c);
      grpc_shutdown_blocking();
      return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
    }
    snprintf(v, n, "Bearer %s", o->token);
    c->md[0].key = grpc_slice_from_static_string("authorization");
    c->md[0].value = grpc_slice_from_copied_string(v);
    free(v);
    c->n_md = 1;
  }
  if (o->case_id && *o->case_id) {
    c->md[c->n_md].key = grpc_slice_from_static_string("x-case-id");
    c->md[c->n_md].value = grpc_slice_from_copied_string(o->case_id);
    c->n_md++;
  }

  grpc_channel_credentials *creds;
  if (o->tls) {
    grpc_ssl_pem_key_cert_pair pair = {o->tls_private_key_pem,
                                       o->tls_cert_chain_pem};
    creds = grpc_ssl_credentials_create(o->tls_root_certs_pem,
                                        o->tls_cert_chain_pem ? &pair : NULL,
                                        NULL, NULL);
  } else {
    creds = grpc_insecure_credentials_create();
  }

  grpc_arg args[3];
  size_t n = 0;
  int max_recv = o->max_receive_message_bytes == 0
                     ? 64 * 1024 * 1024
                     : o->max_receive_message_bytes;
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n].value.integer = max_recv;
  n++;
  if (o->own_connection) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[n].value.integer = 1;
    n++;
  }
  if (o->tls && o->tls_server_name) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n].value.string = (char *)o->tls_server_name;
    n++;
  }
  grpc_channel_args ca = {n, args};
  c->channel = grpc_channel_create(addr, creds, &ca);
  grpc_channel_credentials_release(creds);
  if (!c->channel) {
    free(c->addr);
    free(c);
    grpc_shutdown_blocking();
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: cannot create a channel to '%s'", addr);
  }
  *ret_client = c;
  return st_ok(st);
}

void gc_client_close(gc_client *c) {
  if (!c)
    return;
  grpc_channel_destroy(c->channel);
  for (size_t i = 0; i < c->n_md; i++) {
    grpc_slice_unref(c->md[i].key);
    grpc_slice_unref(c->md[i].value);
  }
  free(c->addr);
  free(c);
  grpc_shutdown_blocking();
}

const char *gc_client_addr(const gc_client *c) { return c->addr; }

static const char *conn_state_name(grpc_connectivity_state s) {
  switch (s) {
  case GRPC_CHANNEL_IDLE:
    return "idle";
  case GRPC_CHANNEL_CONNECTING:
    return "connecting";
  case GRPC_CHANNEL_READY:
    return "ready";
  case GRPC_CHANNEL_TRANSIENT_FAILURE:
    return "transient failure";
  case GRPC_CHANNEL_SHUTDOWN:
    return "shut down";
  }
  return "unknown";
}

int gc_client_wait_ready(gc_client *c, int timeout_ms, gc_status *st) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec deadline = deadline_after(timeout_ms);
  char tag;
  grpc_connectivity_state s = grpc_channel_check_connectivity_state(c->channel, 1);
  while (s != GRPC_CHANNEL_READY && s != GRPC_CHANNEL_SHUTDOWN) {
    grpc_channel_watch_connectivity_state(c->channel, s, deadline, cq, &tag);
    grpc_event ev = grpc_completion_queue_pluck(
        cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (!ev.success)
      break; /* deadline */
    s = grpc_channel_check_connectivity_state(c->channel, 1);
  }
  grpc_completion_queue_shutdown(cq);
  grpc_completion_queue_destroy(cq);
  if (s == GRPC_CHANNEL_READY)
    return st_ok(st);
  int code = st_set(st, GRPC_STATUS_UNAVAILABLE,
                    "cannot connect to %s within %d ms (channel %s)", c->addr,
                    timeout_ms, conn_state_name(s));
  if (st)
    st->connect_failed = true;
  return code;
}

int gc_unary(gc_client *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc,
             ProtobufCMessage **ret_reply, gc_status *st, int timeout_ms) {
  if (ret_reply)
    *ret_reply = NULL;
  if (!c || !method || !*method || !req || !reply_desc)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_unary: missing argument");
  grpc_byte_buffer *send = pack_message(req);
  if (!send)
    return st_set(st, GRPC_STATUS_INTERNAL, "client: cannot pack %s",
                  req->descriptor->name);

  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_call *call = create_call(c, cq, method, deadline_after(timeout_ms));

  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_byte_buffer *recv = NULL;
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();

  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  initial_md(c, &ops[0]);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;

  int code;
  char tag;
  grpc_call_error err = grpc_call_start_batch(call, ops, 6, &tag, NULL);
  if (err != GRPC_CALL_OK) {
    code = st_set(st, GRPC_STATUS_INTERNAL, "client: grpc_call_start_batch: %s",
                  grpc_call_error_to_string(err));
  } else {
    grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                NULL);
    if (status == GRPC_STATUS_OK) {
      code = take_reply(st, recv, reply_desc, ret_reply);
      if (code == GRPC_STATUS_OK)
        st_ok(st);
    } else {
      code = st_from_call(st, c, status, details);
    }
  }

  grpc_byte_buffer_destroy(send);
  if (recv)
    grpc_byte_buffer_destroy(recv);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  grpc_completion_queue_destroy(cq);
  return code;
}

/* ---- client streaming ---- */

struct gc_stream {
  gc_client *c;
  grpc_completion_queue *cq;
  grpc_call *call;
  gc_stream_opts o;
  bool started;     /* the first batch (with initial metadata) went out */
  bool recv_posted; /* the receive batch is started */
  bool recv_done;   /* ... and has completed */
  bool ended;       /* the call is over; s->final holds its status */
  bool finished;    /* gc_stream_finish was called */
  uint64_t sent;
  grpc_metadata_array init_md, trail_md;
  grpc_byte_buffer *reply;
  grpc_status_code status;
  grpc_slice details;
  gc_status final;
  char tag_send, tag_recv; /* their addresses are the tags */
};

int gc_stream_open(gc_client *c, const char *method, const gc_stream_opts *opts,
                   gc_stream **ret_stream, gc_status *st) {
  *ret_stream = NULL;
  if (!c || !method || !*method)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_stream_open: missing argument");
  gc_stream *s = calloc(1, sizeof *s);
  if (!s)
    return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
  s->c = c;
  if (opts)
    s->o = *opts;
  s->cq = grpc_completion_queue_create_for_pluck(NULL);
  s->call = create_call(c, s->cq, method, deadline_after(s->o.deadline_ms));
  grpc_metadata_array_init(&s->init_md);
  grpc_metadata_array_init(&s->trail_md);
  s->details = grpc_empty_slice();
  s->status = GRPC_STATUS_UNKNOWN;
  *ret_stream = s;
  return st_ok(st);
}

uint64_t gc_stream_messages_sent(const gc_stream *s) { return s->sent; }

static int post_recv(gc_stream *s) {
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &s->reply;
  ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[2].data.recv_status_on_client.trailing_metadata = &s->trail_md;
  ops[2].data.recv_status_on_client.status = &s->status;
  ops[2].data.recv_status_on_client.status_details = &s->details;
  grpc_call_error err = grpc_call_start_batch(s->call, ops, 3, &s->tag_recv, NULL);
  if (err != GRPC_CALL_OK)
    return st_set(&s->final, GRPC_STATUS_INTERNAL,
                  "client: grpc_call_start_batch (receive): %s",
                  grpc_call_error_to_string(err));
  s->recv_posted = true;
  return GRPC_STATUS_OK;
}

/* Ends the call with a client-side status (cancelling it on the wire). */
static void stream_abort(gc_stream *s, int code, const char *msg) {
  grpc_call_cancel_with_status(s->call, (grpc_status_code)code, msg, NULL);
}

/* Records the received status as the stream's final status. */
static void stream_ended(gc_stream *s) {
  s->recv_done = true;
  s->ended = true;
  st_from_call(&s->final, s->c, s->status, s->details);
}

/* Waits for the receive batch (so for the end of the call) at most
 * timeout_ms (<= 0: no limit); cancels the call when that passes. */
static void wait_recv(gc_stream *s, int timeout_ms) {
  if (s->recv_done)
    return;
  if (!s->recv_posted) {
    /* Nothing was ever started on the call: nothing to wait for. */
    s->ended = true;
    st_set(&s->final, GRPC_STATUS_INTERNAL, "client: the call was never started");
    return;
  }
  grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tag_recv,
                                              deadline_after(timeout_ms), NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) {
    char msg[96];
    snprintf(msg, sizeof msg, "client: no reply for %d ms", timeout_ms);
    stream_abort(s, GRPC_STATUS_DEADLINE_EXCEEDED, msg);
    grpc_completion_queue_pluck(s->cq, &s->tag_recv,
                                gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  }
  stream_ended(s);
}

/* Non-blocking: has the server already ended the call? */
static void poll_recv(gc_stream *s) {
  if (!s->recv_posted || s->recv_done)
    return;
  grpc_event ev = grpc_completion_queue_pluck(
      s->cq, &s->tag_recv, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
  if (ev.type == GRPC_OP_COMPLETE)
    stream_ended(s);
}

/* The status to return for a stream that is over. */
static int ended_status(gc_stream *s, gc_status *st) {
  if (s->final.code == GRPC_STATUS_OK && !s->finished)
    return st_set(st, GRPC_STATUS_INTERNAL,
                  "client: the server ended the stream with OK before the "
                  "client half-closed (%llu messages sent)",
                  (unsigned long long)s->sent);
  if (st)
    *st = s->final;
  return s->final.code;
}

int gc_stream_send(gc_stream *s, const ProtobufCMessage *msg, gc_status *st) {
  if (!s || !msg)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_stream_send: missing argument");
  if (s->finished)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_stream_send after gc_stream_finish");
  poll_recv(s);
  if (s->ended)
    return ended_status(s, st);

  grpc_byte_buffer *bb = pack_message(msg);
  if (!bb)
    return st_set(st, GRPC_STATUS_INTERNAL, "client: cannot pack %s",
                  msg->descriptor->name);
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!s->started) {
    initial_md(s->c, &ops[n++]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++; /* no buffer hint on the batch with initial metadata */
  } else {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].flags = s->o.no_coalesce ? 0 : GRPC_WRITE_BUFFER_HINT;
    ops[n].data.send_message.send_message = bb;
    n++;
  }
  grpc_call_error err = grpc_call_start_batch(s->call, ops, n, &s->tag_send, NULL);
  if (err != GRPC_CALL_OK) {
    grpc_byte_buffer_destroy(bb);
    return st_set(st, GRPC_STATUS_INTERNAL, "client: grpc_call_start_batch: %s",
                  grpc_call_error_to_string(err));
  }
  if (!s->started) {
    s->started = true;
    if (post_recv(s) != GRPC_STATUS_OK) {
      /* Cannot happen unless this file is wrong; end the call cleanly. */
      stream_abort(s, GRPC_STATUS_INTERNAL, s->final.message);
      grpc_completion_queue_pluck(s->cq, &s->tag_send,
                                  gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
      grpc_byte_buffer_destroy(bb);
      s->ended = true;
      if (st)
        *st = s->final;
      return s->final.code;
    }
  }
  grpc_event ev = grpc_completion_queue_pluck(
      s->cq, &s->tag_send, deadline_after(s->o.step_timeout_ms), NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) {
    char m[96];
    snprintf(m, sizeof m, "client: no progress for %d ms (send not accepted)",
             s->o.step_timeout_ms);
    stream_abort(s, GRPC_STATUS_DEADLINE_EXCEEDED, m);
    ev = grpc_completion_queue_pluck(s->cq, &s->tag_send,
                                     gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    ev.success = 0;
  }
  grpc_byte_buffer_destroy(bb);
  if (ev.success) {
    s->sent++;
    return st_ok(st);
  }
  /* The call is over; its status tells why. */
  wait_recv(s, s->o.step_timeout_ms);
  return ended_status(s, st);
}

int gc_stream_finish(gc_stream *s, const ProtobufCMessageDescriptor *reply_desc,
                     ProtobufCMessage **ret_reply, gc_status *st) {
  if (ret_reply)
    *ret_reply = NULL;
  if (!s || !reply_desc)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_stream_finish: missing argument");
  if (s->finished)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                  "client: gc_stream_finish called twice");
  s->finished = true;
  if (!s->ended) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->started)
      initial_md(s->c, &ops[n++]);
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    grpc_call_error err =
        grpc_call_start_batch(s->call, ops, n, &s->tag_send, NULL);
    if (err != GRPC_CALL_OK) {
      stream_abort(s, GRPC_STATUS_INTERNAL, "client: half-close failed");
      wait_recv(s, 0);
      return st_set(st, GRPC_STATUS_INTERNAL,
                    "client: grpc_call_start_batch (half-close): %s",
                    grpc_call_error_to_string(err));
    }
    bool posted = true;
    if (!s->started) {
      s->started = true;
      posted = post_recv(s) == GRPC_STATUS_OK;
      if (!posted)
        stream_abort(s, GRPC_STATUS_INTERNAL, s->final.message);
    }
    grpc_event ev = grpc_completion_queue_pluck(
        s->cq, &s->tag_send, deadline_after(s->o.step_timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
      stream_abort(s, GRPC_STATUS_DEADLINE_EXCEEDED,
                   "client: no progress (half-close not sent)");
      grpc_completion_queue_pluck(s->cq, &s->tag_send,
                                  gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    if (!posted) {
      s->ended = true;
      if (st)
        *st = s->final;
      return s->final.code;
    }
    wait_recv(s, s->o.step_timeout_ms);
  }
  if (s->final.code != GRPC_STATUS_OK)
    return ended_status(s, st);
  int code = take_reply(st, s->reply, reply_desc, ret_reply);
  if (code == GRPC_STATUS_OK)
    st_ok(st);
  return code;
}

void gc_stream_free(gc_stream *s) {
  if (!s)
    return;
  if (!s->ended) {
    grpc_call_cancel(s->call, NULL);
    if (s->recv_posted && !s->recv_done)
      grpc_completion_queue_pluck(s->cq, &s->tag_recv,
                                  gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  }
  grpc_call_unref(s->call);
  if (s->reply)
    grpc_byte_buffer_destroy(s->reply);
  grpc_slice_unref(s->details);
  grpc_metadata_array_destroy(&s->init_md);
  grpc_metadata_array_destroy(&s->trail_md);
  grpc_completion_queue_shutdown(s->cq);
  grpc_completion_queue_destroy(s->cq);
  free(s);
}

/* ---- server streaming ---- */

struct gc_sstream {
  gc_client *c;
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata_array init_md, trail_md;
  grpc_status_code status;
  grpc_slice details;
  bool ended;
  bool start_pending; /* gc_sstream_start: the start batch not plucked yet */
  grpc_byte_buffer *send; /* its request, while start_pending */
  uint64_t messages, bytes;
  char tag_start, tag_recv, tag_status;
};

/* Receives the final status; the stream has ended after this. */
static int sstream_status(gc_sstream *s, gc_status *st) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
  op.data.recv_status_on_client.status = &s->status;
  op.data.recv_status_on_client.status_details = &s->details;
  s->ended = true;
  grpc_call_error err = grpc_call_start_batch(s->call, &op, 1, &s->tag_status, NULL);
  if (err != GRPC_CALL_OK)
    return st_set(st, GRPC_STATUS_INTERNAL, "client: grpc_call_start_batch: %s",
                  grpc_call_error_to_string(err));
  grpc_completion_queue_pluck(s->cq, &s->tag_status, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  if (s->status == GRPC_STATUS_OK)
    return st_ok(st);
  return st_from_call(st, s->c, s->status, s->details);
}

/* Starts the call; with wait, also waits for the start batch (the server's
 * initial metadata, which graphd sends with the first message or the
 * status), else leaves that to the first gc_sstream_next. */
static int sstream_begin(gc_client *c, const char *method, const ProtobufCMessage *req,
                         int timeout_ms, bool wait, gc_sstream **ret_stream, gc_status *st) {
  if (ret_stream)
    *ret_stream = NULL;
  if (!c || !method || !*method || !req || !ret_stream)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: gc_sstream_open: missing argument");
  gc_sstream *s = calloc(1, sizeof *s);
  if (!s)
    return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
  grpc_byte_buffer *send = pack_message(req);
  if (!send) {
    free(s);
    return st_set(st, GRPC_STATUS_INTERNAL, "client: cannot pack %s", req->descriptor->name);
  }
  s->c = c;
  s->cq = grpc_completion_queue_create_for_pluck(NULL);
  s->call = create_call(c, s->cq, method, deadline_after(timeout_ms));
  s->details = grpc_empty_slice();
  s->status = GRPC_STATUS_UNKNOWN;
  grpc_metadata_array_init(&s->init_md);
  grpc_metadata_array_init(&s->trail_md);
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  initial_md(c, &ops[0]);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
  grpc_call_error err = grpc_call_start_batch(s->call, ops, 4, &s->tag_start, NULL);
  if (err != GRPC_CALL_OK) {
    grpc_byte_buffer_destroy(send);
    s->ended = true;
    gc_sstream_free(s);
    return st_set(st, GRPC_STATUS_INTERNAL, "client: grpc_call_start_batch: %s",
                  grpc_call_error_to_string(err));
  }
  if (!wait) {
    s->start_pending = true;
    s->send = send; /* destroyed once the start batch is back */
    *ret_stream = s;
    return st_ok(st);
  }
  grpc_event ev =
      grpc_completion_queue_pluck(s->cq, &s->tag_start, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  grpc_byte_buffer_destroy(send);
  if (!ev.success) { /* the call failed before the server answered: get why */
    int code = sstream_status(s, st);
    gc_sstream_free(s);
    return code ? code : st_set(st, GRPC_STATUS_INTERNAL, "client: stream ended at once");
  }
  *ret_stream = s;
  return st_ok(st);
}

int gc_sstream_open(gc_client *c, const char *method, const ProtobufCMessage *req,
                    int timeout_ms, gc_sstream **ret_stream, gc_status *st) {
  return sstream_begin(c, method, req, timeout_ms, true, ret_stream, st);
}

int gc_sstream_start(gc_client *c, const char *method, const ProtobufCMessage *req,
                     int timeout_ms, gc_sstream **ret_stream, gc_status *st) {
  return sstream_begin(c, method, req, timeout_ms, false, ret_stream, st);
}

void gc_sstream_cancel(gc_sstream *s) {
  if (s)
    grpc_call_cancel(s->call, NULL); /* thread-safe until grpc_call_unref */
}

int gc_sstream_next(gc_sstream *s, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **ret_msg, gc_status *st) {
  if (ret_msg)
    *ret_msg = NULL;
  if (!s || !desc || !ret_msg)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: gc_sstream_next: missing argument");
  if (s->ended)
    return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: gc_sstream_next after the end");
  if (s->start_pending) {
    s->start_pending = false;
    grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tag_start,
                                                gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_byte_buffer_destroy(s->send);
    s->send = NULL;
    if (!ev.success) { /* the call ended before the server answered: get why */
      int code = sstream_status(s, st);
      return code ? code : st_set(st, GRPC_STATUS_INTERNAL, "client: stream ended at once");
    }
  }
  grpc_byte_buffer *bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  grpc_call_error err = grpc_call_start_batch(s->call, &op, 1, &s->tag_recv, NULL);
  if (err != GRPC_CALL_OK) {
    grpc_call_cancel(s->call, NULL);
    sstream_status(s, NULL);
    return st_set(st, GRPC_STATUS_INTERNAL, "client: grpc_call_start_batch: %s",
                  grpc_call_error_to_string(err));
  }
  grpc_completion_queue_pluck(s->cq, &s->tag_recv, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  if (!bb)
    return sstream_status(s, st);
  s->messages++;
  s->bytes += grpc_byte_buffer_length(bb);
  ProtobufCMessage *m = unpack_message(desc, bb);
  grpc_byte_buffer_destroy(bb);
  if (!m) {
    grpc_call_cancel(s->call, NULL);
    sstream_status(s, NULL);
    return st_set(st, GRPC_STATUS_INTERNAL, "client: a message does not parse as %s", desc->name);
  }
  *ret_msg = m;
  return st_ok(st);
}

uint64_t gc_sstream_messages(const gc_sstream *s) { return s ? s->messages : 0; }
uint64_t gc_sstream_bytes(const gc_sstream *s) { return s ? s->bytes : 0; }

void gc_sstream_free(gc_sstream *s) {
  if (!s)
    return;
  if (s->start_pending) { /* its tag must come back before the queue goes */
    grpc_call_cancel(s->call, NULL);
    grpc_completion_queue_pluck(s->cq, &s->tag_start, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_byte_buffer_destroy(s->send);
    s->send = NULL;
    s->start_pending = false;
  }
  if (!s->ended) {
    grpc_call_cancel(s->call, NULL);
    sstream_status(s, NULL);
  }
  grpc_call_unref(s->call);
  grpc_slice_unref(s->details);
  grpc_metadata_array_destroy(&s->init_md);
  grpc_metadata_array_destroy(&s->trail_md);
  grpc_completion_queue_shutdown(s->cq);
  grpc_completion_queue_destroy(s->cq);
  free(s);
}
