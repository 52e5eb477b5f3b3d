/*
 * server/transport: the interface between the call core (server.c) and the
 * transports that carry calls to it (grpc.c, http.c). Private to the
 * server library; methods see only server.h.
 *
 * The core owns every per-call policy, whatever carried the call: who the
 * caller is (tokens, roles), the call limits (--max-calls and friends), the
 * deadline (default, clamp, the reaper), the audit hold, the heavy-call
 * queue, the call observer, and the one mapping from a gd_errno to a
 * status. A transport only moves bytes: it accepts a call, hands the core
 * the request metadata and message bytes, and carries out what the core
 * asks through its ops table (struct gd_transport), in the way Redis 7
 * puts its connections behind ConnectionType.
 *
 * A transport's call embeds struct gd_call as its first member (the
 * transport allocates it, gd__call_init initialises the core part) and
 * frees it in ops->free, which the core calls once the last reference is
 * gone. References: the method holds one from gd__call_accept until its
 * gd_call_finish; a transport takes one (gd__call_ref_locked) for each
 * operation it has outstanding and drops it (gd__call_unref) when the
 * operation completes.
 *
 * The life of a call, as a transport drives it:
 *   gd__call_init(c, srv, t, m, midx)
 *   if (gd__call_accept(c, client_deadline_ns))   -- policy; false: refused
 *     UNARY, SERVER_STREAM: gd__call_request(c, msg, len, has_msg)
 *     CLIENT_STREAM, BIDI:  gd_call_read_next(c)
 *   ... completions: gd__call_read_done / m->on_written / gd__call_died ...
 *   ops->send_final, then the last unref, then ops->free.
 */
#ifndef GD_SERVER_TRANSPORT_H
#define GD_SERVER_TRANSPORT_H

#include <pthread.h>

#include "server/server.h"

typedef struct gd_transport gd_transport;

struct gd_call {
  gd_server *srv;
  const gd_transport *t;
  const gd_method *m; /* NULL for an unknown method */
  size_t midx;
  pthread_mutex_t mu; /* everything below that changes after accept */
  int refs;
  bool owned;   /* the method holds it (until gd_call_finish) */
  bool dead;    /* cancelled, peer gone, or past its deadline */
  bool cancel_notified;
  bool reaped;  /* the reaper cancelled it */
  bool clamped; /* deadline_ns is the server's, not the client's */
  int64_t deadline_ns; /* effective (clamped) deadline, monotonic */
  int64_t start_ns;    /* accepted, monotonic */
  int64_t start_ms;    /* accepted, wall clock */
  void *user;
  gd_role role;
  char principal[GD_PRINCIPAL_MAX];
  char brand[GD_BRAND_MAX]; /* a partner's brand, else "" */
  char case_id[GD_CASE_ID_MAX];
  const char *case_bad; /* why the case id was refused (static text), or NULL */
  char *target; /* gd_call_set_target, free */
  /* audit hold */
  bool audit_started, audited;
  int p_code;
  char *p_msg;
  uint8_t *p_reply;
  size_t p_len;
  bool p_has_msg, p_has_reply;
  /* admission (srv lock): what this call counts against, undone at free */
  gd_call *prev, *next; /* active list */
  bool active, counted_stream;
  uint64_t peer_key, principal_key; /* 0 = not counted */
  /* client streams: a read is outstanding since read_since_ns */
  bool reading, idle_cut;
  int64_t read_since_ns;
};

struct gd_transport {
  const char *name; /* "grpc", "http" */
  /* The transport itself ends calls at the client's deadline (gRPC core
   * does); otherwise the reaper ends every call at its deadline. */
  bool own_deadlines;
  /* Request metadata (a header): the value for a lower-case key, or an
   * empty view. Valid for the call's life. */
  gd_str (*metadata)(gd_call *c, const char *key);
  /* "ipv4:127.0.0.1:5555"; valid for the call's life. */
  const char *(*peer)(gd_call *c);
  /* The path an unknown method was called with. */
  const char *(*unknown_path)(gd_call *c);
  /* Optional: the verified client certificate's subject CN, copied into
   * buf (NUL-terminated); false when there is none. */
  bool (*cert_cn)(gd_call *c, char *buf, size_t size);
  /* Starts a read (c->mu held; take a reference); the transport calls
   * gd__call_read_done when it completes. */
  void (*read_next)(gd_call *c);
  /* Sends one stream message (c->mu held; bytes copied; take a reference);
   * the transport calls m->on_written, then drops the reference. */
  void (*write)(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint);
  /* Sends the final status, with a reply message for OK when reply is not
   * NULL (c->mu held). grpc_status: already mapped. */
  void (*send_final)(gd_call *c, int grpc_status, const char *msg, const uint8_t *reply,
                     size_t len);
  /* Ends the call now with a status, from any thread, with the server's
   * lock held (the reaper, shutdown): what the client sees; the method
   * still finishes the call. */
  void (*cancel)(gd_call *c, int grpc_status, const char *msg);
  /* Frees the transport's call (the last reference is gone). */
  void (*free)(gd_call *c);
  /* Listener (lctx: the transport's own state): stop accepting; cancel
   * what is left and wait until the transport has let go of every call;
   * release everything once no call is left. Each may be NULL. */
  void (*drain)(void *lctx);
  void (*cancel_all)(void *lctx);
  void (*destroy)(void *lctx);
};

/* Initialises the core part of a transport's call. */
void gd__call_init(gd_call *c, gd_server *s, const gd_transport *t, const gd_method *m,
                   size_t midx);

/*
 * Applies the call policy to a new call: deadline (client_deadline_ns,
 * monotonic; INT64_MAX = none), the call observer, the case id, then in
 * order: unknown method (UNIMPLEMENTED), authentication and role, the
 * call limits, the audit trail's state, a method without a handler. True:
 * the method holds the call, the transport starts it. False: the call was
 * finished (refused) through the transport.
 */
bool gd__call_accept(gd_call *c, int64_t client_deadline_ns);

/* UNARY and SERVER_STREAM: hands the request to the method; a heavy
 * method's is queued for the query threads (msg is copied) or run here
 * (server.h, gd_method.heavy). */
void gd__call_request(gd_call *c, const uint8_t *msg, size_t len, bool has_msg);

/* A read started by ops->read_next completed: hands it to m->on_read. */
void gd__call_read_done(gd_call *c, gd_read_result r, const uint8_t *msg, size_t len);

/* The call died (cancelled, peer gone, deadline): marks it dead and calls
 * m->on_cancel once, if the method holds it. Any thread. */
void gd__call_died(gd_call *c);

/* References (see the top of this file). */
void gd__call_ref_locked(gd_call *c);
void gd__call_unref(gd_call *c);
void gd__call_unref_locked(gd_call *c); /* releases c->mu */

/* True once the server drains: a transport refuses new calls UNAVAILABLE. */
bool gd__server_draining(gd_server *s);

/* The method table, for a transport to find a method by path. */
const gd_method *gd__server_methods(gd_server *s, size_t *ret_n);
const gd_server_opts *gd__server_opts(gd_server *s);

/* Calls t->cancel on every call of transport t that is in flight (for a
 * transport's cancel_all). */
void gd__server_cancel_calls(gd_server *s, const gd_transport *t, int grpc_status,
                             const char *msg);

/* Registers a started transport (at most GD__MAX_TRANSPORTS), so that
 * shutdown drains, cancels and destroys it. */
#define GD__MAX_TRANSPORTS 2
void gd__server_add_transport(gd_server *s, const gd_transport *t, void *lctx);

/* The gRPC transport (grpc.c): starts serving s's methods on
 * opts->listen. */
int gd__grpc_start(gd_server *s, int *ret_port, gd_err *err);

/* The HTTP/JSON transport (http.c): starts serving on opts->http_listen. */
int gd__http_start(gd_server *s, int *ret_port, gd_err *err);

#endif
