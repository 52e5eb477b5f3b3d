/*
 * server: the call core and its transports.
 *
 * The server knows nothing of graphd's messages. It accepts calls for the
 * methods of a table (gd_method, data owned by rpc/), hands each call's
 * request bytes to the method's callbacks, and sends what they answer. Its
 * call core (server.c) applies every per-call policy the same way whatever
 * carried the call: identity and role, the call limits, the deadline, the
 * audit hold, the heavy-call queue and the status. Two transports carry
 * calls to it (server/transport.h): gRPC over the C core API (grpc.c: the
 * completion queue, the handler threads, the four call state machines) and,
 * with opts.http_listen, HTTP/JSON (http.c: POST /v1/<Method> with proto3
 * JSON bodies, transcoded through server/pbjson.h by the method's request
 * and reply descriptors, and static files for the console).
 *
 * The one rule for methods: every call handed to a method callback belongs
 * to the method until it calls gd_call_finish() exactly once, from any
 * thread, even if the call was cancelled meanwhile. The server frees the
 * call after that and after core has returned every batch.
 *
 * Bidirectional streams (GD_RPC_BIDI_STREAM) combine the two streaming
 * kinds: the server starts the first read (on_read follows, as for a client
 * stream); the method answers with gd_call_write (on_written follows) and
 * asks for the next message with gd_call_read_next, at most one read and
 * one write outstanding at a time. The simplest correct protocol is: read a
 * request, write its answer, read the next; GD_READ_END then finishes the
 * call with GD_OK and no reply message. A dead call (cancelled, deadline,
 * peer gone, shutdown past its grace period) completes the outstanding read
 * (GD_READ_FAILED) or write (ok = false), and a later one fails at once:
 * the method then finishes the call (the status no longer reaches anyone);
 * on_cancel is optional. Refusals
 * (authentication, --max-calls, a broken audit trail) end the call before
 * the first read, like every other kind.
 *
 * Threads: callbacks run on handler threads. gd_call_* functions may be
 * called from any thread (the writer thread finishes write calls); they
 * serialise on the call's own lock.
 */
#ifndef GD_SERVER_SERVER_H
#define GD_SERVER_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "server/auth.h"
#include "core/util.h"

typedef struct gd_server gd_server;
typedef struct gd_call gd_call;

typedef enum {
  GD_RPC_UNARY,
  GD_RPC_CLIENT_STREAM,
  GD_RPC_SERVER_STREAM,
  GD_RPC_BIDI_STREAM, /* on_read + on_written (see above) */
} gd_rpc_kind;

/* What a client-stream (or bidirectional-stream) read produced. */
typedef enum {
  GD_READ_MESSAGE, /* a message: bytes valid during the callback only */
  GD_READ_END,     /* the client half-closed: no more messages */
  GD_READ_FAILED,  /* the call is dead (cancelled, deadline, peer gone) */
} gd_read_result;

typedef struct gd_method {
  const char *path; /* "/graphd.v1.SellerGraph/Upsert" */
  gd_rpc_kind kind;
  /*
   * UNARY and SERVER_STREAM: the request. has_msg is false when the client
   * sent no message at all. NULL = answer UNIMPLEMENTED.
   */
  void (*on_request)(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);
  /* CLIENT_STREAM and BIDI_STREAM: called once per gd_call_read_next() (the
   * first read is started by the server). */
  void (*on_read)(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len);
  /* SERVER_STREAM and BIDI_STREAM: the last gd_call_write() completed; ok
   * is false when the call died (stop writing and finish). */
  void (*on_written)(gd_call *c, bool ok);
  /* Optional: the call died while the method held it. Any thread; once. The
   * method must still call gd_call_finish(). */
  void (*on_cancel)(gd_call *c);
  /* The least role a caller needs (server/auth.h); GD_ROLE_NONE = anyone,
   * even without a token. Checked before the method runs, only when the
   * server has a token table. */
  gd_role role;
  /* A partner (a brand-scoped principal, server/auth.h) may call it; the
   * method then scopes everything to gd_call_brand(c). Partners are
   * refused every other method, whatever its role. */
  bool partner;
  /* UNARY only: on_request may take long (an investigator query): it runs
   * on the server's query threads, in arrival order, so the handler
   * threads stay free for everything else; or on the handler thread that
   * took it, when nothing is queued for the query threads and another
   * handler thread stays free (server.c, heavy_inline_take). */
  bool heavy;
  /* Never refused by the call limits (--max-calls, the stream share, the
   * per-peer limit): the health check. Must be cheap. */
  bool essential;
  /* The request and reply message types (for a stream: of each message),
   * from the service's descriptor; NULL when the method's service is not
   * compiled in (reflection). A transport that is not gRPC transcodes with
   * them (server/pbjson.h). */
  const ProtobufCMessageDescriptor *request, *reply;
  /* The method's own context, set by whoever builds the table; handlers
   * read it with gd_call_ctx(c). The server never looks at it. */
  void *ctx;
} gd_method;

typedef struct gd_server_opts {
  const char *listen;         /* "HOST:PORT"; port 0 = a free port */
  /*
   * The HTTP/JSON transport (NULL = none): "HOST:PORT". Serves the methods
   * whose path starts with http_prefix ("/graphd.v1.SellerGraph/") as
   * POST /v1/<Method>, the files of http_static_dir (NULL = none) as GET,
   * under the same policy as gRPC (tokens from `Authorization: Bearer`,
   * `X-Case-Id`, `X-Deadline-Ms`, the call limits, the audit trail) and
   * the same TLS certificate. Client certificates are not asked for.
   */
  const char *http_listen;
  const char *http_prefix;
  const char *http_static_dir;
  unsigned http_connections; /* connections at once (each a thread); 0 = 64 */
  unsigned threads;           /* handler threads; 0 = number of cores */
  int max_recv_bytes;         /* largest request message */
  int max_send_bytes;         /* largest reply message */
  int64_t default_deadline_ms; /* for calls that carry none */
  int64_t max_deadline_ms;     /* clamp on every call */
  int max_concurrent_streams; /* per connection */
  unsigned max_calls;         /* calls in flight, all connections; 0 = no limit:
                               * beyond it RESOURCE_EXHAUSTED naming --max-calls */
  /* Of max_calls, this many are kept for unary calls: streams (any
   * streaming kind) may hold at most max_calls - reserved_calls; beyond
   * that a new stream gets RESOURCE_EXHAUSTED naming --reserved-calls. */
  unsigned reserved_calls;
  /* Calls in flight per connection, and per principal when there is a
   * token table; 0 = no limit; beyond it RESOURCE_EXHAUSTED naming
   * --max-calls-per-peer. */
  unsigned max_calls_per_peer;
  /* A client stream (or bidirectional) waiting for a message that does
   * not come for this long is ended with DEADLINE_EXCEEDED naming
   * --stream-idle-ms. 0 = never. */
  int64_t stream_idle_ms;
  /* Threads that run heavy methods (gd_method.heavy); 0 = as threads. */
  unsigned query_threads;
  /* Keepalive and ping policy (0 = default): the server pings an idle
   * connection every keepalive_time_ms and drops it if no answer comes in
   * keepalive_timeout_ms; a client pinging more often than
   * min_ping_interval_ms without data is told to go away (GOAWAY). */
  int keepalive_time_ms, keepalive_timeout_ms, min_ping_interval_ms;
  /* Token table (server/auth.h), borrowed; NULL = no authentication:
   * every caller is admin, principal "local". With a table, a call to a
   * method that needs a role must carry `authorization: Bearer TOKEN`:
   * missing or unknown -> UNAUTHENTICATED, a role below the method's ->
   * PERMISSION_DENIED (the message names the method, the role it needs
   * and the caller's), before the method runs. */
  gd_auth *auth;
  /* TLS: PEM text (NUL-terminated; only needed during gd_server_start).
   * With tls_cert_pem and tls_key_pem the port speaks TLS only. With
   * tls_client_ca_pem too, clients must present a certificate that CA
   * signed (verified by gRPC); its subject CN is the caller's identity
   * for the token table ("x509:CN" lines, server/auth.h) when the call
   * carries no bearer token. */
  const char *tls_cert_pem, *tls_key_pem, *tls_client_ca_pem;
  /*
   * Audit (NULL = none). Every gd_call_finish (any outcome, refusals
   * included) is held and handed to audit(ctx, call, grpc_status) instead;
   * the hook records the call and then calls gd_call_audit_done(): with
   * ok the held finish goes out, without it the caller gets UNAVAILABLE
   * (fail closed). Skipped for a call the method marked recorded
   * (gd_call_mark_audited: it wrote the record in its own transaction).
   * audit_ready(ctx) is asked when a call starts; false refuses it with
   * UNAVAILABLE (the trail is known to be broken).
   * audit_now (NULL = never) is asked first: true means it has queued
   * the call's record and the finish need not wait for it, so it goes
   * out at once and nothing is held or copied (a successful read under
   * --audit-reads async); false, the finish is held and audit() called.
   */
  void (*audit)(void *ctx, gd_call *c, int grpc_status);
  bool (*audit_now)(void *ctx, gd_call *c, int grpc_status);
  bool (*audit_ready)(void *ctx);
  void *audit_ctx;
  /*
   * Call observer (NULL = none; metrics). call_begin(ctx, method) when a
   * call is accepted, and call_end(ctx, method, grpc_status, ns) once for
   * each, when its status goes out (after any audit hold), with the
   * nanoseconds since it was accepted. method: the call's index in the
   * method table, or nmethods for an unknown method. grpc_status: what the
   * client sees: the status sent; DEADLINE_EXCEEDED if the call ends past
   * its (clamped) deadline; CANCELLED if it died before (the client went
   * away). Handler threads or the writer (call_end with the call's lock
   * held): both must be cheap (atomics), never block or call the server.
   */
  void (*call_begin)(void *ctx, size_t method);
  void (*call_end)(void *ctx, size_t method, int grpc_status, int64_t ns);
  void *call_ctx;
} gd_server_opts;

/*
 * Creates the server, registers every method of the table (which must
 * outlive the server), binds the port (and the HTTP port) and starts
 * serving. *ret_port is the bound gRPC port. Errors: GD_EIO (cannot bind:
 * the message says which and why), GD_EINVALID (bad table, bad
 * http_listen, TLS credentials the HTTP transport cannot load), GD_ENOMEM.
 */
int gd_server_start(const gd_server_opts *opts, const gd_method *methods, size_t nmethods,
                    gd_server **ret, int *ret_port, gd_err *err);

/*
 * Drains: stops accepting calls (new ones get UNAVAILABLE), lets calls in
 * flight finish for up to grace_ms, then cancels the rest, waits for every
 * call to be finished and freed, stops the threads and frees the server.
 */
void gd_server_shutdown(gd_server *s, int64_t grace_ms);

/* The HTTP/JSON transport's bound port; 0 without one. */
int gd_server_http_port(gd_server *s);

/* Calls in flight (accepted and not yet freed). */
uint64_t gd_server_active_calls(gd_server *s);

/* ---- per call ---- */

/* Who is calling: the principal name (valid for the call's life; "local"
 * without authentication, "" for an anonymous call to an open method) and
 * the role. */
const char *gd_call_principal(gd_call *c, gd_role *ret_role);

/* A partner's brand (role GD_ROLE_PARTNER, server/auth.h), else "": a
 * method open to partners scopes what it reads and changes to it. */
const char *gd_call_brand(gd_call *c);

/* ---- audit facts (any thread while the call lives) ---- */
#define GD_CASE_ID_MAX 129
const char *gd_call_peer(gd_call *c);    /* "ipv4:127.0.0.1:5555" */
const char *gd_call_case_id(gd_call *c); /* x-case-id metadata (header), "" if none */
/* Sets the call's case id (copied, cut to GD_CASE_ID_MAX - 1 bytes): a
 * case method records the case it touched, whatever x-case-id said. Any
 * thread, before the call is finished. */
void gd_call_set_case_id(gd_call *c, const char *id);
const char *gd_call_path(gd_call *c);    /* method path, "" for an unknown one */
int64_t gd_call_start_ms(gd_call *c);    /* wall clock when accepted, unix ms */
/* What the call touched, as short text (copied; "" until set). */
void gd_call_set_target(gd_call *c, const char *target);
const char *gd_call_target(gd_call *c);
/* The method wrote this call's audit record in its write transaction (or
 * yes = false: that transaction failed, let the hook record it). */
void gd_call_mark_audited(gd_call *c, bool yes);
/* The hook's answer (see gd_server_opts.audit); any thread, once. */
void gd_call_audit_done(gd_call *c, bool ok, const char *why);

/* The method-owned pointer attached to a call (initially NULL). */
void gd_call_set_user(gd_call *c, void *user);
void *gd_call_user(gd_call *c);

/* The method's table entry. */
const gd_method *gd_call_method(gd_call *c);

/* The method's context (its row's ctx); NULL for an unknown method. */
void *gd_call_ctx(gd_call *c);

/* True once the call is known to be dead or past its (clamped) deadline:
 * check before expensive steps. */
bool gd_call_expired(gd_call *c);

/* The same as a gd_errno: GD_OK while the call lives; GD_EDEADLINE once
 * past its deadline; GD_ECANCELLED once the client cancelled or went away
 * (seen by a handler thread). err (may be NULL) gets a message. Cheap (a
 * lock and a clock read): long loops ask it every few thousand steps. */
int gd_call_check(gd_call *c, gd_err *err);

/* The value of request metadata `key` (lower-case), or an empty string. The
 * view lives as long as the call. */
gd_str gd_call_metadata(gd_call *c, const char *key);

/* CLIENT_STREAM and BIDI_STREAM: starts the next read; on_read follows. One
 * at a time. */
void gd_call_read_next(gd_call *c);

/* Runs fn(arg) on a query thread, after the work queued before it (heavy
 * calls, other deferred functions), so that a long step (decoding a large
 * streamed message) leaves the handler threads free. The call must stay
 * the method's until fn has run. Without memory for the queue, fn runs at
 * once on the calling thread. */
void gd_call_defer(gd_call *c, void (*fn)(void *arg), void *arg);

/* Runs fn(arg) as a heavy method's on_request runs (gd_method.heavy): on
 * the calling handler thread when nothing waits for the query threads and
 * another handler thread stays free, else on a query thread in arrival
 * order. For a method that decides from its request whether it is heavy
 * (LinkedSellers: a 1-hop call is tried inline first). The call must stay
 * the method's until fn has run. */
void gd_call_offload(gd_call *c, void (*fn)(void *arg), void *arg);

/* SERVER_STREAM and BIDI_STREAM: sends one message (the bytes are copied);
 * on_written follows. One at a time. buffer_hint lets core coalesce it with
 * the next (a bidirectional stream answering requests one by one passes
 * false, or the answer may wait for a next one that never comes). */
void gd_call_write(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint);

/*
 * Ends the call with a status: code is a gd_errno (mapped to a gRPC status
 * through gd_err_grpc_status, the one mapping), msg the status text (NULL
 * = none), and for GD_OK an optional reply message (copied; streams that
 * wrote their messages pass NULL). Must not be called while a
 * gd_call_write() is outstanding. The call belongs to the server
 * afterwards.
 */
void gd_call_finish(gd_call *c, int code, const char *msg, const uint8_t *reply, size_t len);

#endif
