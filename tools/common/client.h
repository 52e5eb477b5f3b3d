/*
 * A small synchronous client for graphd over the gRPC core C API.
 *
 * One gc_client owns one grpc_channel. Every call (gc_unary, or one
 * gc_stream) gets its own completion queue, created with
 * grpc_completion_queue_create_for_pluck() and destroyed when the call
 * ends, and the calling thread blocks in grpc_completion_queue_pluck()
 * until its operations complete. Nothing runs in the background that this
 * library owns; gRPC's own threads do the I/O.
 *
 * Threads
 * -------
 * A gc_client may be shared by any number of threads: the channel is
 * thread-safe and each call has its own queue, so gc_unary() and
 * gc_stream_open() may run concurrently on one client. All calls then
 * share one HTTP/2 connection (multiplexed streams). For a benchmark that
 * wants one TCP connection per thread, open one client per thread with
 * gc_client_opts.own_connection = true (otherwise channels to the same
 * target share a connection: gRPC core pools subchannels by target and
 * channel arguments). A gc_stream is
 * used by one thread at a time. gc_client_close() may run only after every
 * call and stream on the client has finished.
 *
 * Library lifetime: gc_client_open() calls grpc_init() and
 * gc_client_close() the matching grpc_shutdown_blocking(); gRPC counts
 * these, so clients may be opened and closed in any order.
 *
 * Status
 * ------
 * Functions that talk to the server return a gRPC status code (a
 * grpc_status_code value, 0 = OK) and also fill a gc_status with the code
 * and a copy of the status message. Errors found on the client side use the
 * same codes with a message starting with "client: ":
 *   INVALID_ARGUMENT    bad arguments to this library (NULL, empty method);
 *   INTERNAL            a request could not be packed, the reply does not
 *                       parse as reply_desc, or an OK status came without a
 *                       reply message; also a grpc_call_start_batch
 *                       precondition failure (a bug in this library);
 *   RESOURCE_EXHAUSTED  out of memory;
 *   DEADLINE_EXCEEDED   a stream step timed out (gc_stream_opts).
 * Everything else comes from gRPC or from the server, e.g.
 *   UNAVAILABLE         no connection could be made ("failed to connect to
 *                       all addresses ..."), or the server is shutting down;
 *   DEADLINE_EXCEEDED   the call's deadline passed;
 *   and the statuses each rpc documents in graphd.proto.
 * gc_status.connect_failed tells a failure to connect apart from a slow
 * server: it is true when the code is UNAVAILABLE or DEADLINE_EXCEEDED and
 * the channel was not connected (not READY) when the call ended.
 *
 * Ownership
 * ---------
 * Requests are borrowed (packed during the call). Replies are returned
 * through ret_reply as protobuf-c messages the caller owns and frees with
 * protobuf_c_message_free_unpacked(reply, NULL) (or the generated
 * xxx__free_unpacked). ret_reply is set only when the call returns OK;
 * otherwise it is set to NULL.
 */
#ifndef GC_CLIENT_H
#define GC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

/* Longest status message kept, including the NUL. Longer ones are cut. */
#define GC_STATUS_MSG_MAX 1024

/* Status of a call; see "Status" above. */
typedef struct gc_status {
  int code;            /* grpc_status_code; 0 = OK */
  bool connect_failed; /* see "Status" above */
  char message[GC_STATUS_MSG_MAX]; /* "" when the server sent none */
} gc_status;

/* Name of a status code: "OK", "NOT_FOUND", ...; codes outside 0..16 give
 * "UNKNOWN". Never NULL, static storage. */
const char *gc_status_code_name(int code);

/*
 * Options for gc_client_open. Zero-initialise (`gc_client_opts o = {0};`)
 * and set what you need; every field's zero value is its default, so new
 * fields can be added without breaking callers. NULL options = defaults.
 */
typedef struct gc_client_opts {
  /* TLS. With tls false the channel is plaintext (h2c) and the other tls_*
   * fields must be NULL. With tls true: tls_root_certs_pem is the PEM of
   * the CAs to trust (NULL = gRPC's default roots); tls_cert_chain_pem and
   * tls_private_key_pem give a client certificate for mTLS (both or none).
   * The strings need only live during gc_client_open. */
  bool tls;
  const char *tls_root_certs_pem;
  const char *tls_cert_chain_pem;
  const char *tls_private_key_pem;
  /* Host name to check the server certificate against instead of the one
   * in addr (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG); NULL = from addr. */
  const char *tls_server_name;

  /* Open a connection of this client's own instead of sharing one with
   * other channels to the same target (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL).
   * For benchmarks with one client per thread. */
  bool own_connection;

  /* Largest reply accepted, in bytes; 0 = 64 MiB; -1 = unlimited. */
  int max_receive_message_bytes;

  /* Bearer token sent with every call as `authorization: Bearer TOKEN`
   * (NULL = none). Copied. INVALID_ARGUMENT if empty or with blanks. */
  const char *token;

  /* Sent with every call as `x-case-id` (NULL = none): the investigation
   * the calls belong to, recorded in graphd's audit trail. Copied. */
  const char *case_id;
} gc_client_opts;

typedef struct gc_client gc_client;

/*
 * Creates a client for addr ("host:port", "127.0.0.1:7419", "[::1]:7419",
 * or any gRPC target URI such as "unix:/run/graphd.sock"). No connection
 * is made yet: the first call (or gc_client_wait_ready) connects, and an
 * unreachable server shows up as UNAVAILABLE there.
 * Returns OK and sets *ret_client, or INVALID_ARGUMENT (addr NULL or empty,
 * inconsistent TLS options) or RESOURCE_EXHAUSTED; then *ret_client is NULL.
 * st may be NULL.
 */
int gc_client_open(const char *addr, const gc_client_opts *opts,
                   gc_client **ret_client, gc_status *st);

/* Destroys the client and its channel (NULL is fine). All calls and
 * streams on it must have finished. */
void gc_client_close(gc_client *c);

/* The address given to gc_client_open. Valid until gc_client_close. */
const char *gc_client_addr(const gc_client *c);

/*
 * Connects now and waits until the channel is ready, for at most
 * timeout_ms (<= 0: wait forever). Keeps retrying (with gRPC's backoff)
 * while the server is unreachable, so it also serves to wait for a server
 * that is starting. Returns OK, or UNAVAILABLE with connect_failed set when
 * the channel is not ready by then. Thread-safe. st may be NULL.
 */
int gc_client_wait_ready(gc_client *c, int timeout_ms, gc_status *st);

/*
 * A unary call: sends req to method (a full path such as
 * "/graphd.v1.SellerGraph/GetEntity") and waits for the reply and status.
 * timeout_ms is the call's deadline, sent to the server (<= 0: none).
 * The call does not wait for the channel to connect: if the server cannot
 * be reached it fails with UNAVAILABLE (connect_failed set).
 * On OK, *ret_reply is the reply unpacked with reply_desc (caller frees).
 * Returns the status code; st (may be NULL) gets code and message.
 * Thread-safe (see "Threads").
 */
int gc_unary(gc_client *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc,
             ProtobufCMessage **ret_reply, gc_status *st, int timeout_ms);

/* ---------------------------------------------------------------- */
/* Client streaming (Ingest)                                          */

/*
 * Options for gc_stream_open; zero-initialise, as gc_client_opts.
 */
typedef struct gc_stream_opts {
  /* Deadline of the whole call, sent to the server; 0 = none (a bulk load
   * may take as long as it takes). */
  int deadline_ms;
  /* Longest wait for one step: for gc_stream_send to have its message
   * accepted by flow control, and for gc_stream_finish to get the reply
   * after the half-close. When it passes, the call is cancelled and the
   * step returns DEADLINE_EXCEEDED ("client: no progress for N ms").
   * 0 = no limit. */
  int step_timeout_ms;
  /* Do not coalesce writes. By default every message but the first is sent
   * with GRPC_WRITE_BUFFER_HINT, which lets gRPC pack several messages into
   * one write (about 6x faster for small messages). The first message is
   * never hinted, since it carries the initial metadata and a hinted
   * initial batch is never flushed (gRPC core 1.51 holds it for the next
 * message, which never comes if the client then waits for a reply); the
   * half-close flushes the rest. A hinted message may wait in the buffer
   * until the next message or the half-close: set this when you pause
   * between messages and want each one on the wire at once. */
  bool no_coalesce;
} gc_stream_opts;

typedef struct gc_stream gc_stream;

/*
 * Starts a client-streaming call to method (e.g.
 * "/graphd.v1.SellerGraph/Ingest"). Nothing is sent until the first
 * gc_stream_send (or gc_stream_finish). opts may be NULL.
 * Returns OK and sets *ret_stream (free with gc_stream_free), or
 * INVALID_ARGUMENT / RESOURCE_EXHAUSTED with *ret_stream NULL.
 */
int gc_stream_open(gc_client *c, const char *method, const gc_stream_opts *opts,
                   gc_stream **ret_stream, gc_status *st);

/*
 * Sends one message and waits until gRPC has accepted it (flow control:
 * a slow server slows the sender down). Returns OK, or the status that
 * ended the call: the server may end a client stream early (graphd does on
 * the first bad message, with the message's index in the status text), the
 * connection may fail (UNAVAILABLE), or the step or call deadline pass.
 * Once a send has failed the stream is over: later sends return the same
 * status, and gc_stream_finish returns it too (with no reply).
 * Before each send the stream also checks, without blocking, whether the
 * server has already ended the call, so a sender learns of a server error
 * within one message.
 */
int gc_stream_send(gc_stream *s, const ProtobufCMessage *msg, gc_status *st);

/*
 * Half-closes the stream (flushing coalesced messages), then waits for the
 * single reply and the status. On OK, *ret_reply is the reply unpacked
 * with reply_desc (caller frees). Returns the final status code. Call it at
 * most once; after it only gc_stream_free is allowed.
 */
int gc_stream_finish(gc_stream *s, const ProtobufCMessageDescriptor *reply_desc,
                     ProtobufCMessage **ret_reply, gc_status *st);

/* Messages accepted by gc_stream_send so far. */
uint64_t gc_stream_messages_sent(const gc_stream *s);

/*
 * Frees the stream (NULL is fine). A stream not finished is cancelled
 * first: the server sees CANCELLED, and (for Ingest) messages it has
 * already committed stay committed.
 */
void gc_stream_free(gc_stream *s);

/* ---------------------------------------------------------------- */
/* Server streaming (WatchJob, StreamAssignments, DiffSnapshots,      */
/* WatchAlerts)                                                       */

typedef struct gc_sstream gc_sstream;

/*
 * Starts a server-streaming call: sends req to method and half-closes.
 * timeout_ms is the whole call's deadline (<= 0: none). Returns OK and
 * sets *ret_stream (free with gc_sstream_free), or an error status (then
 * *ret_stream is NULL): INVALID_ARGUMENT (missing argument), INTERNAL
 * (req cannot be packed, or grpc_call_start_batch failed), or what the
 * server or gRPC answered before any message. st may be NULL.
 * Thread-safe; the stream itself is used by one thread at a time.
 */
int gc_sstream_open(gc_client *c, const char *method, const ProtobufCMessage *req,
                    int timeout_ms, gc_sstream **ret_stream, gc_status *st);

/*
 * As gc_sstream_open, but returns as soon as the call is started, without
 * waiting for the server's first answer: graphd sends its initial metadata
 * with the first message, so gc_sstream_open of a stream that has nothing
 * to send yet (WatchAlerts) blocks until it has. Here the first
 * gc_sstream_next waits instead, and returns what the server or gRPC
 * answered before any message; meanwhile another thread may
 * gc_sstream_cancel the stream. Errors returned here are the client's own
 * (INVALID_ARGUMENT, INTERNAL, RESOURCE_EXHAUSTED).
 */
int gc_sstream_start(gc_client *c, const char *method, const ProtobufCMessage *req,
                     int timeout_ms, gc_sstream **ret_stream, gc_status *st);

/*
 * Cancels the stream's call; callable from any thread while the stream is
 * not freed (the owner makes sure of that). A gc_sstream_next waiting in
 * another thread, or called later, then returns CANCELLED (unless the call
 * had already ended with another status); the server sees CANCELLED. The
 * owner still frees the stream. NULL is fine.
 */
void gc_sstream_cancel(gc_sstream *s);

/*
 * Waits for the next message. Returns OK with *ret_msg set (unpacked with
 * desc, caller frees) for a message; OK with *ret_msg NULL when the stream
 * ended with an OK status; otherwise the final error status (the server's,
 * DEADLINE_EXCEEDED for the call's deadline, or INTERNAL when a message
 * does not parse as desc; the call is then cancelled). After the end only
 * gc_sstream_free is allowed. st may be NULL.
 */
int gc_sstream_next(gc_sstream *s, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **ret_msg, gc_status *st);

/* Messages received so far, and their total size in bytes. */
uint64_t gc_sstream_messages(const gc_sstream *s);
uint64_t gc_sstream_bytes(const gc_sstream *s);

/* Frees the stream (NULL is fine); a stream not at its end is cancelled
 * first (the server sees CANCELLED). */
void gc_sstream_free(gc_sstream *s);

#endif /* GC_CLIENT_H */
