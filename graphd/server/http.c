/*
 * The HTTP/JSON transport (server/transport.h), with libmicrohttpd.
 *
 * What it serves:
 *   POST /v1/<Method>   a method whose path is http_prefix + Method, with a
 *                       proto3 JSON body (server/pbjson.h, by the method's
 *                       request descriptor). A unary reply is one JSON
 *                       object; a server stream's messages are JSON Lines
 *                       (application/x-ndjson), and a status other than OK
 *                       after the first message is a last line
 *                       {"error": {...}}; a client stream's body is JSON
 *                       Lines, one request message per line.
 *   GET  /, /<file>     the files of http_static_dir (the console).
 * An error is the HTTP status of its gRPC status (gd_grpc_http_status) and
 * {"code": N, "status": "NOT_FOUND", "message": "..."}; every API reply
 * carries X-Grpc-Status too. Policy is the call core's: the caller's
 * identity comes from `Authorization: Bearer TOKEN`, the case id from
 * `X-Case-Id`, the deadline from `X-Deadline-Ms` (else the server's
 * default); the call limits and the audit trail apply as to gRPC calls.
 * A POST must say `Content-Type: application/json` (or
 * application/x-ndjson): a browser cannot send that cross-site without a
 * preflight, which is never granted, so a web page elsewhere cannot drive
 * a daemon that runs without tokens.
 *
 * Threads. libmicrohttpd runs one thread per connection (at most
 * http_connections). A connection's thread reads the body, hands the call
 * to the core, then waits for the method on the call's lock and condition:
 * for the final status (a unary call), or for a stream message, which its
 * content-reader callback passes on as it is sent. A client stream's
 * reads are served by the same thread from the body's lines. So a method
 * sees the same callbacks, on other threads, as under gRPC. The thread
 * polls its socket while it waits: a client that goes away cancels the
 * call (gd_call_check sees it). Deadlines are the reaper's (the core).
 *
 * A call has two references here besides the method's: the connection's,
 * from creation until its response is done (a unary response queued, or a
 * stream response freed), and one per outstanding read or write.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/listen.h"
#include "core/log.h"
#include "server/pbjson.h"
#include "server/transport.h"

#define API_PREFIX "/v1/"
#define JSON_TYPE "application/json"
#define NDJSON_TYPE "application/x-ndjson"
/* Nothing from elsewhere, no inline script or style, no framing. */
#define CSP                                                                              \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " \
  "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "            \
  "frame-ancestors 'none'"
#define WAIT_STEP_MS 100     /* how often a waiting thread looks at its socket */
#define STATIC_MAX (8u << 20) /* largest static file served */

typedef struct hlisten {
  gd_server *srv;
  struct MHD_Daemon *d;
  const gd_method *methods;
  size_t nmethods;
  size_t max_body;
  const char *prefix;
  char *static_dir;
  atomic_bool starting;
  char start_err[200];
} hlisten;

typedef struct hcall {
  gd_call base; /* first: a gd_call * is an hcall * */
  hlisten *l;
  pthread_cond_t cv;     /* with base.mu */
  char peer[96];
  char *hdrs;            /* "key\0value\0" pairs, keys lower-case */
  size_t hdrs_len;
  char upath[160];       /* the path asked for, for an unknown method */
  int fd;                /* the connection's socket (hang-up checks) */
  /* client stream: the body's lines, as protobuf */
  uint8_t **lines;
  size_t *line_len;
  size_t nlines, next_line;
  bool read_wanted;
  /* server stream: JSON Lines waiting to be sent */
  char *out;
  size_t out_len, out_cap, out_off;
  bool write_pending; /* a write's bytes are in out; on_written follows */
  /* the end */
  bool finished;      /* send_final came */
  int status;
  char *msg;
  uint8_t *reply;
  size_t reply_len;
  bool has_reply;
  bool cancelled;     /* cancel: what the client is told */
  int cancel_status;
  char cancel_msg[200];
  bool died_told;     /* gd__call_died was called for it */
  bool gone;          /* the connection has let go */
  bool error_sent;    /* a stream's last error line went out */
  int http_override;  /* 413 for an over-size body; 0 = by the status */
  bool bad_deadline;  /* X-Deadline-Ms that is not one */
} hcall;

/* Per request (MHD's con_cls): the body as it comes in. */
typedef struct hreq {
  hcall *h; /* accepted, its body still coming */
  char *body;
  size_t len, cap;
  bool too_big;
} hreq;

static const gd_transport http_transport;

#define H(c) ((hcall *)(c))

/* ---- transport ops ------------------------------------------------------- */

static gd_str h_metadata(gd_call *c, const char *key) {
  hcall *h = H(c);
  for (size_t i = 0; i < h->hdrs_len;) {
    const char *k = h->hdrs + i, *v = k + strlen(k) + 1;
    if (strcmp(k, key) == 0)
      return (gd_str){v, strlen(v)};
    i = (size_t)(v + strlen(v) + 1 - h->hdrs);
  }
  return (gd_str){"", 0};
}

static const char *h_peer(gd_call *c) { return H(c)->peer; }
static const char *h_unknown_path(gd_call *c) { return H(c)->upath; }

static void read_failed(void *arg);

static void h_read_next(gd_call *c) {
  hcall *h = H(c);
  gd__call_ref_locked(c);
  if (h->gone) { /* nobody serves reads any more */
    gd_call_defer(c, read_failed, c); /* never within gd_call_read_next */
    return;
  }
  h->read_wanted = true;
  pthread_cond_broadcast(&h->cv);
}

static void written_failed(void *arg) {
  gd_call *c = arg;
  c->m->on_written(c, false);
  gd__call_unref(c);
}

static void read_failed(void *arg) {
  gd_call *c = arg;
  gd__call_read_done(c, GD_READ_FAILED, NULL, 0);
  gd__call_unref(c);
}

/* Grows *buf (of *cap bytes) to hold need bytes, doubling from 4 KiB;
 * false without memory (*buf unchanged). */
static bool grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return true;
  size_t c = *cap ? *cap : 4096;
  while (c < need)
    c *= 2;
  char *p = realloc(*buf, c);
  if (!p)
    return false;
  *buf = p;
  *cap = c;
  return true;
}

static bool out_append(hcall *h, const char *s, size_t n) {
  if (!grow(&h->out, &h->out_cap, h->out_len + n))
    return false;
  memcpy(h->out + h->out_len, s, n);
  h->out_len += n;
  return true;
}

static void h_write(gd_call *c, const uint8_t *msg, size_t len, bool buffer_hint) {
  hcall *h = H(c);
  (void)buffer_hint;
  gd__call_ref_locked(c);
  if (h->gone || h->cancelled) {
    gd_call_defer(c, written_failed, c); /* never within gd_call_write */
    return;
  }
  char *json = NULL;
  size_t n = 0;
  gd_err err;
  if (gd_pbjson_from_pb(c->m->reply, msg, len, &json, &n, &err) != GD_OK ||
      !out_append(h, json, n) || !out_append(h, "\n", 1))
    gd_error("http: %s: a stream message could not be sent as JSON: %s", c->m->path,
             json ? "out of memory" : err.msg);
  free(json);
  h->write_pending = true;
  pthread_cond_broadcast(&h->cv);
}

static void h_send_final(gd_call *c, int status, const char *msg, const uint8_t *reply,
                         size_t len) {
  hcall *h = H(c);
  h->finished = true;
  h->status = status;
  h->msg = strdup(msg ? msg : "");
  h->has_reply = reply != NULL;
  h->reply = reply && len ? malloc(len) : NULL;
  if (h->reply)
    memcpy(h->reply, reply, len);
  h->reply_len = h->reply ? len : 0;
  pthread_cond_broadcast(&h->cv);
}

static void h_cancel(gd_call *c, int status, const char *msg) {
  hcall *h = H(c);
  pthread_mutex_lock(&c->mu);
  if (!h->cancelled && !h->gone) {
    h->cancelled = true;
    h->cancel_status = status;
    snprintf(h->cancel_msg, sizeof h->cancel_msg, "%s", msg);
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&c->mu);
}

static void h_free(gd_call *c) {
  hcall *h = H(c);
  for (size_t i = 0; i < h->nlines; i++)
    free(h->lines[i]);
  free(h->lines);
  free(h->line_len);
  free(h->out);
  free(h->msg);
  free(h->reply);
  free(h->hdrs);
  pthread_cond_destroy(&h->cv);
  free(h);
}

/* ---- replies ------------------------------------------------------------- */

static void api_headers(struct MHD_Response *r, const char *type, int grpc_status) {
  char st[16];
  snprintf(st, sizeof st, "%d", grpc_status);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, "X-Grpc-Status", st);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "Content-Security-Policy", CSP);
}

/* {"code": N, "status": "NAME", "message": "..."} (malloc'd). */
static char *error_json(int status, const char *msg, bool wrapped) {
  json_object *o = json_object_new_object();
  const char *name = gd_grpc_status_name(status);
  json_object_object_add(o, "code", json_object_new_int(status));
  json_object_object_add(o, "status", json_object_new_string(name ? name : "UNKNOWN"));
  json_object_object_add(o, "message", json_object_new_string(msg ? msg : ""));
  if (wrapped) {
    json_object *w = json_object_new_object();
    json_object_object_add(w, "error", o);
    o = w;
  }
  char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(o);
  return s;
}

/* Queues body (malloc'd, taken) as an API response; allow: an Allow
 * header, or NULL. */
static enum MHD_Result queue_body(struct MHD_Connection *conn, unsigned code, char *body,
                                  const char *type, int grpc_status, const char *allow) {
  if (!body)
    return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  api_headers(r, type, grpc_status);
  if (allow)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result rc = MHD_queue_response(conn, code, r);
  MHD_destroy_response(r);
  return rc;
}

/* An error that never became a call (no method, draining, wrong verb). */
static enum MHD_Result queue_error(struct MHD_Connection *conn, unsigned code, int grpc_status,
                                   const char *msg, const char *allow) {
  return queue_body(conn, code, error_json(grpc_status, msg, false), JSON_TYPE, grpc_status,
                    allow);
}

/* ---- waiting ------------------------------------------------------------- */

/* True when the client has closed its end (or the socket broke). */
static bool hung_up(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Marks the call cancelled because the client went away (c->mu held). */
static void client_gone(hcall *h) {
  if (!h->cancelled) {
    h->cancelled = true;
    h->cancel_status = GD_GRPC_CANCELLED;
    snprintf(h->cancel_msg, sizeof h->cancel_msg, "the client closed the connection");
  }
}

/* Tells the method once that the call died (c->mu held; released across). */
static void tell_died(hcall *h) {
  if (h->died_told)
    return;
  h->died_told = true;
  pthread_mutex_unlock(&h->base.mu);
  gd__call_died(&h->base);
  pthread_mutex_lock(&h->base.mu);
}

/* Serves a wanted read from the body's lines (c->mu held; released
 * across the method's callback). */
static void serve_read(hcall *h) {
  gd_call *c = &h->base;
  h->read_wanted = false;
  gd_read_result r = h->cancelled                  ? GD_READ_FAILED
                     : h->next_line < h->nlines ? GD_READ_MESSAGE
                                                : GD_READ_END;
  const uint8_t *msg = NULL;
  size_t len = 0;
  if (r == GD_READ_MESSAGE) {
    msg = h->lines[h->next_line] ? h->lines[h->next_line] : (const uint8_t *)"";
    len = h->line_len[h->next_line];
    h->next_line++;
  }
  pthread_mutex_unlock(&c->mu);
  gd__call_read_done(c, r, msg, len);
  gd__call_unref(c); /* the read's reference; the connection holds one */
  pthread_mutex_lock(&c->mu);
}

/* Waits (c->mu held) until the call finished, was cancelled, or (a stream)
 * has bytes to send, serving reads meanwhile. */
static void wait_call(hcall *h, bool for_bytes) {
  for (;;) {
    if (h->read_wanted) {
      serve_read(h);
      continue;
    }
    if (h->cancelled) {
      tell_died(h);
      if (h->read_wanted)
        continue;
    }
    if (h->finished || h->cancelled || (for_bytes && h->out_off < h->out_len))
      return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_STEP_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (pthread_cond_timedwait(&h->cv, &h->base.mu, &ts) == ETIMEDOUT && hung_up(h->fd))
      client_gone(h);
  }
}

/* ---- server streams -------------------------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  hcall *h = cls;
  gd_call *c = &h->base;
  (void)pos;
  pthread_mutex_lock(&c->mu);
  wait_call(h, true);
  if (h->out_off < h->out_len) {
    size_t n = h->out_len - h->out_off;
    if (n > max)
      n = max;
    memcpy(buf, h->out + h->out_off, n);
    h->out_off += n;
    bool done = h->out_off == h->out_len && h->write_pending;
    if (h->out_off == h->out_len)
      h->out_off = h->out_len = 0;
    if (done) {
      h->write_pending = false;
      pthread_mutex_unlock(&c->mu);
      c->m->on_written(c, true);
      gd__call_unref(c); /* the write's reference */
      return (ssize_t)n;
    }
    pthread_mutex_unlock(&c->mu);
    return (ssize_t)n;
  }
  /* Nothing left to send: the end, with an error line unless OK. */
  int status = h->cancelled && !h->finished ? h->cancel_status : h->status;
  const char *msg = h->cancelled && !h->finished ? h->cancel_msg : h->msg;
  if (status != 0 && !h->error_sent) {
    h->error_sent = true;
    char *e = error_json(status, msg, true);
    size_t n = e ? strlen(e) : 0;
    if (e && n + 1 <= max) {
      memcpy(buf, e, n);
      buf[n++] = '\n';
      free(e);
      pthread_mutex_unlock(&c->mu);
      return (ssize_t)n;
    }
    free(e);
  }
  pthread_mutex_unlock(&c->mu);
  return MHD_CONTENT_READER_END_OF_STREAM;
}

/* The stream's response is done with (sent, or the connection broke). */
static void stream_free(void *cls) {
  hcall *h = cls;
  gd_call *c = &h->base;
  pthread_mutex_lock(&c->mu);
  if (!h->finished)
    client_gone(h);
  h->gone = true;
  tell_died(h);
  bool pending = h->write_pending;
  h->write_pending = false;
  bool reading = h->read_wanted;
  h->read_wanted = false;
  pthread_mutex_unlock(&c->mu);
  if (pending)
    written_failed(c);
  if (reading)
    read_failed(c);
  gd__call_unref(c); /* the connection's reference */
}

/* ---- calls --------------------------------------------------------------- */

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
  hcall *h = cls;
  (void)kind;
  size_t kn = strlen(key), vn = value ? strlen(value) : 0;
  char *p = realloc(h->hdrs, h->hdrs_len + kn + vn + 2);
  if (!p)
    return MHD_NO;
  h->hdrs = p;
  for (size_t i = 0; i < kn; i++)
    p[h->hdrs_len + i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
  p[h->hdrs_len + kn] = 0;
  memcpy(p + h->hdrs_len + kn + 1, value ? value : "", vn + 1);
  h->hdrs_len += kn + vn + 2;
  return MHD_YES;
}

static void peer_name(struct MHD_Connection *conn, char *buf, size_t size) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char host[64] = "?", port[8] = "0";
  const struct sockaddr *sa = ci ? ci->client_addr : NULL;
  socklen_t sl = sa && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                 : sizeof(struct sockaddr_in);
  if (sa)
    getnameinfo(sa, sl, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  if (sa && sa->sa_family == AF_INET6)
    snprintf(buf, size, "ipv6:[%s]:%s", host, port);
  else
    snprintf(buf, size, "ipv4:%s:%s", host, port);
}

/* Splits a client stream's body into lines and transcodes each; blank
 * lines are skipped. Errors name the line. */
static int split_lines(hcall *h, const char *body, size_t len, gd_err *err) {
  const ProtobufCMessageDescriptor *d = h->base.m->request;
  size_t cap = 0, lineno = 0;
  for (size_t i = 0; i < len;) {
    const char *nl = memchr(body + i, '\n', len - i);
    size_t n = nl ? (size_t)(nl - (body + i)) : len - i;
    const char *s = body + i;
    i += n + (nl != NULL);
    lineno++;
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
      k++;
    if (k == n)
      continue;
    if (h->nlines == cap) {
      cap = cap ? cap * 2 : 16;
      uint8_t **l = realloc(h->lines, cap * sizeof *l);
      if (l)
        h->lines = l;
      size_t *ll = l ? realloc(h->line_len, cap * sizeof *ll) : NULL;
      if (!l || !ll)
        return gd_err_set(err, GD_ENOMEM, "out of memory reading the request lines");
      h->line_len = ll;
    }
    if (gd_pbjson_to_pb(d, s, n, &h->lines[h->nlines], &h->line_len[h->nlines], err) != GD_OK)
      return gd_err_prefix(err, "request line %zu", lineno);
    h->nlines++;
  }
  return GD_OK;
}

/* The deadline from X-Deadline-Ms: INT64_MAX when absent, -1 when bad. */
static int64_t header_deadline(hcall *h) {
  gd_str v = h_metadata(&h->base, "x-deadline-ms");
  if (!v.n)
    return INT64_MAX;
  char *end;
  errno = 0;
  long long ms = strtoll(v.p, &end, 10);
  if (errno || *end || ms <= 0 || ms > 86400000LL * 365)
    return -1;
  return gd_now_ns() + ms * 1000000LL;
}

/* Opens a call for POST /v1/<name> when its headers have come, and
 * applies the call policy (token, role, limits) before any of its body is
 * read. NULL without memory. *accepted: the method holds the call. */
static hcall *call_open(hlisten *l, struct MHD_Connection *conn, const char *url,
                        bool *accepted) {
  const char *name = url + strlen(API_PREFIX);
  const gd_method *m = NULL;
  size_t midx = 0, plen = strlen(l->prefix);
  for (size_t i = 0; i < l->nmethods && *name; i++)
    if (strncmp(l->methods[i].path, l->prefix, plen) == 0 &&
        strcmp(l->methods[i].path + plen, name) == 0 && l->methods[i].request &&
        l->methods[i].kind != GD_RPC_BIDI_STREAM) {
      m = &l->methods[i];
      midx = i;
    }
  hcall *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  gd__call_init(&h->base, l->srv, &http_transport, m, midx);
  pthread_cond_init(&h->cv, NULL);
  h->l = l;
  h->base.refs = 1; /* the connection's */
  snprintf(h->upath, sizeof h->upath, "%s%.*s", l->prefix, 100, name);
  peer_name(conn, h->peer, sizeof h->peer);
  const union MHD_ConnectionInfo *fi =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  h->fd = fi ? fi->connect_fd : -1;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, h);
  int64_t deadline = header_deadline(h);
  h->bad_deadline = deadline < 0;
  *accepted = gd__call_accept(&h->base, deadline < 0 ? INT64_MAX : deadline);
  return h;
}

static bool has_type(gd_str ct, const char *type) {
  size_t n = strlen(type);
  return ct.n >= n && strncmp(ct.p, type, n) == 0 && (ct.n == n || ct.p[n] == ';');
}

/* Starts an accepted call once its whole body has come: checks the
 * request, transcodes it and hands it to the method, or finishes the call
 * with the fault named. */
static void call_start(hcall *h, hreq *rq) {
  gd_call *c = &h->base;
  const gd_method *m = c->m;
  hlisten *l = h->l;
  gd_err err = {0};
  uint8_t *pb = NULL;
  size_t pblen = 0;
  gd_str ct = h_metadata(c, "content-type");
  bool client_stream = m->kind == GD_RPC_CLIENT_STREAM;
  if (rq->too_big) {
    char t[160];
    snprintf(t, sizeof t, "request body larger than %zu bytes (--max-message-bytes)",
             l->max_body);
    h->http_override = MHD_HTTP_CONTENT_TOO_LARGE;
    gd_call_finish(c, GD_ERESOURCE, t, NULL, 0);
  } else if (h->bad_deadline) {
    gd_call_finish(c, GD_EINVALID,
                   "X-Deadline-Ms: a whole number of milliseconds, 1 or more, expected", NULL, 0);
  } else if (!has_type(ct, JSON_TYPE) && !has_type(ct, NDJSON_TYPE)) {
    gd_call_finish(c, GD_EINVALID,
                   "Content-Type: application/json (or application/x-ndjson) expected", NULL, 0);
  } else if (client_stream ? split_lines(h, rq->body ? rq->body : "", rq->len, &err)
                           : gd_pbjson_to_pb(m->request, rq->body ? rq->body : "", rq->len, &pb,
                                             &pblen, &err)) {
    char t[GD_ERR_MSG_MAX + 32];
    snprintf(t, sizeof t, "request body: %s", err.msg);
    gd_call_finish(c, err.code, t, NULL, 0);
  } else if (client_stream) {
    gd_call_read_next(c);
  } else {
    gd__call_request(c, pb ? pb : (const uint8_t *)"", pblen, true);
  }
  free(pb);
}

/* Waits for the call's outcome and queues the response: the reply or the
 * error, or (a stream's first message) a JSON Lines response fed as the
 * method writes. Drops the connection's reference (a stream's when its
 * response is freed). */
static enum MHD_Result call_respond(struct MHD_Connection *conn, hcall *h) {
  gd_call *c = &h->base;
  const gd_method *m = c->m;
  pthread_mutex_lock(&c->mu);
  wait_call(h, m && m->kind == GD_RPC_SERVER_STREAM);
  if (!h->finished && !h->cancelled) {
    /* A stream's first message: 200, then JSON Lines as they come. */
    pthread_mutex_unlock(&c->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, h, stream_free);
    if (!r) {
      stream_free(h);
      return MHD_NO;
    }
    api_headers(r, NDJSON_TYPE, 0);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* stream_free runs when libmicrohttpd is done with it */
    return rc;
  }
  /* Finished (or cancelled) before any stream message. */
  bool fin = h->finished;
  int status = fin ? h->status : h->cancel_status;
  const char *msg = fin ? h->msg : h->cancel_msg;
  unsigned code = h->http_override && fin ? (unsigned)h->http_override
                                          : (unsigned)gd_grpc_http_status(status);
  char *body = NULL;
  const char *type = JSON_TYPE;
  if (status == 0 && m->kind == GD_RPC_SERVER_STREAM) {
    body = strdup(""); /* a stream that sent nothing */
    type = NDJSON_TYPE;
  } else if (status == 0) {
    gd_err err;
    size_t n;
    if (gd_pbjson_from_pb(m->reply, h->reply ? h->reply : (const uint8_t *)"", h->reply_len,
                          &body, &n, &err) != GD_OK) {
      gd_error("http: %s: the reply could not be written as JSON: %s", m->path, err.msg);
      status = 13;
      code = 500;
      body = error_json(status, "the reply could not be written as JSON", false);
    }
  } else {
    body = error_json(status, msg, false);
  }
  if (!fin)
    tell_died(h);
  h->gone = true;
  bool reading = h->read_wanted;
  h->read_wanted = false;
  pthread_mutex_unlock(&c->mu);
  if (reading)
    gd_call_defer(c, read_failed, c);
  gd__call_unref(c); /* the connection's reference */
  return queue_body(conn, code, body, type, status, NULL);
}

/* ---- static files ---------------------------------------------------------- */

static const char *mime(const char *path) {
  const char *dot = strrchr(path, '.');
  static const char *const map[][2] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
      {".png", "image/png"},                 {".json", "application/json"},
      {".ico", "image/x-icon"},              {".txt", "text/plain; charset=utf-8"},
  };
  for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
    if (strcmp(dot, map[i][0]) == 0)
      return map[i][1];
  return "application/octet-stream";
}

static enum MHD_Result static_file(hlisten *l, struct MHD_Connection *conn, const char *url) {
  if (!l->static_dir)
    return queue_error(conn, 404, 5, "not found: the API is at POST /v1/<Method>", NULL);
  const char *rel = strcmp(url, "/") == 0 ? "index.html" : url + 1;
  bool ok = *rel && rel[0] != '.' && strlen(rel) < 200;
  for (const char *p = rel; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
         *p == '-' || *p == '_' || (*p == '.' && p[-1] != '.' && p[-1] != '/') ||
         (*p == '/' && p[-1] != '/');
  char path[512];
  struct stat st;
  int fd = -1;
  if (ok) {
    snprintf(path, sizeof path, "%s/%s", l->static_dir, rel);
    fd = open(path, O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
    if (fd >= 0)
      close(fd);
    return queue_error(conn, 404, 5, "not found", NULL);
  }
  /* libmicrohttpd answers HEAD with this response's headers (its real
   * length) and no body. */
  struct MHD_Response *r = MHD_create_response_from_fd((size_t)st.st_size, fd);
  if (!r) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, mime(rel));
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Content-Security-Policy", CSP);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

/* ---- libmicrohttpd callbacks ----------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
  hlisten *l = cls;
  (void)version;
  bool api = strncmp(url, API_PREFIX, strlen(API_PREFIX)) == 0;
  bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  hreq *rq = *con_cls;
  if (!rq) {
    if (!api) {
      bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0,
           head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
      if (!get && !head)
        return queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, 12,
                           "method not allowed: GET a console file, POST /v1/<Method>",
                           "GET, HEAD");
      return static_file(l, conn, url);
    }
    if (!post)
      return queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, 12,
                         "method not allowed: the API takes POST /v1/<Method>", "POST");
    if (gd__server_draining(l->srv))
      return queue_error(conn, 503, 14, "the server is shutting down", NULL);
    bool accepted;
    hcall *h = call_open(l, conn, url, &accepted);
    if (!h)
      return queue_error(conn, 500, 8, "out of memory", NULL);
    if (!accepted) /* refused before its body is read */
      return call_respond(conn, h);
    if (!(rq = calloc(1, sizeof *rq))) {
      gd_call_finish(&h->base, GD_ENOMEM, "out of memory", NULL, 0);
      return call_respond(conn, h);
    }
    rq->h = h;
    *con_cls = rq;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!rq->too_big && rq->len + *upload_size <= l->max_body) {
      if (!grow(&rq->body, &rq->cap, rq->len + *upload_size + 1))
        return MHD_NO;
      memcpy(rq->body + rq->len, upload, *upload_size);
      rq->len += *upload_size;
      rq->body[rq->len] = 0;
    } else {
      rq->too_big = true; /* the rest is read and dropped */
      free(rq->body);
      rq->body = NULL;
      rq->len = rq->cap = 0;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (!rq->h)
    return MHD_YES; /* answered already */
  hcall *h = rq->h;
  rq->h = NULL;
  call_start(h, rq);
  return call_respond(conn, h);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  hreq *rq = *con_cls;
  (void)cls, (void)conn, (void)toe;
  if (rq && rq->h) {
    /* The connection broke before the whole body came: the method never
     * saw the call; end it here (audited like any other). */
    gd_call *c = &rq->h->base;
    pthread_mutex_lock(&c->mu);
    rq->h->gone = true;
    pthread_mutex_unlock(&c->mu);
    gd_call_finish(c, GD_ECANCELLED, "the client went away before sending the whole body",
                   NULL, 0);
    gd__call_unref(c); /* the connection's reference */
  }
  if (rq) {
    free(rq->body);
    free(rq);
    *con_cls = NULL;
  }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  hlisten *l = cls;
  char msg[200];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = 0;
  if (atomic_load(&l->starting))
    snprintf(l->start_err, sizeof l->start_err, "%s", msg);
  else
    gd_debug("http: %s", msg);
}

/* ---- listener -------------------------------------------------------------- */

static void h_cancel_all(void *lctx) {
  hlisten *l = lctx;
  gd__server_cancel_calls(l->srv, &http_transport, 14, "the server is shutting down");
}

static void h_destroy(void *lctx) {
  hlisten *l = lctx;
  MHD_stop_daemon(l->d);
  free(l->static_dir);
  free(l);
}

static const gd_transport http_transport = {
    .name = "http",
    .own_deadlines = false,
    .metadata = h_metadata,
    .peer = h_peer,
    .unknown_path = h_unknown_path,
    .cert_cn = NULL,
    .read_next = h_read_next,
    .write = h_write,
    .send_final = h_send_final,
    .cancel = h_cancel,
    .free = h_free,
    .drain = NULL,
    .cancel_all = h_cancel_all,
    .destroy = h_destroy,
};

int gd__http_start(gd_server *s, int *ret_port, gd_err *err) {
  const gd_server_opts *o = gd__server_opts(s);
  struct addrinfo *ai = NULL;
  int port;
  if (gd_listen_resolve("--http-listen", o->http_listen, &ai, &port, err))
    return err ? err->code : GD_EINVALID;
  hlisten *l = calloc(1, sizeof *l);
  if (!l || (o->http_static_dir && !(l->static_dir = strdup(o->http_static_dir)))) {
    free(l);
    freeaddrinfo(ai);
    return gd_err_set(err, GD_ENOMEM, "http: out of memory");
  }
  l->srv = s;
  l->methods = gd__server_methods(s, &l->nmethods);
  l->max_body = o->max_recv_bytes > 0 ? (size_t)o->max_recv_bytes : 4u << 20;
  l->prefix = o->http_prefix ? o->http_prefix : "/graphd.v1.SellerGraph/";
  atomic_store(&l->starting, true);
  bool tls = o->tls_cert_pem && o->tls_key_pem;
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0) |
                   (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  unsigned conns = o->http_connections ? o->http_connections : 64;
  /* The certificate and key when serving TLS; nothing otherwise. */
  struct MHD_OptionItem tls_opts[] = {
      {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)o->tls_key_pem},
      {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->tls_cert_pem},
      {MHD_OPTION_END, 0, NULL},
  };
  l->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, l,
                          MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, conns,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, l,
                          MHD_OPTION_ARRAY, tls_opts,
                          MHD_OPTION_END);
  freeaddrinfo(ai);
  atomic_store(&l->starting, false);
  if (!l->d) {
    gd_err_set(err, GD_EIO, "--http-listen %s: cannot listen: %s", o->http_listen,
               l->start_err[0] ? l->start_err : "libmicrohttpd could not start");
    free(l->static_dir);
    free(l);
    return GD_EIO;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
  *ret_port = di && di->port ? di->port : port;
  gd__server_add_transport(s, &http_transport, l);
  return GD_OK;
}
