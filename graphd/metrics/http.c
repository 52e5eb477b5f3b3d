/*
 * The metrics endpoint over HTTP (metrics.h), with libmicrohttpd.
 *
 * libmicrohttpd runs its own polling thread (MHD_USE_AUTO_INTERNAL_THREAD:
 * epoll or poll, whichever it finds best), so a scrape never takes a gRPC
 * handler thread, and MHD_stop_daemon closes the port and joins that
 * thread. A scrape composes the whole text (gd_metrics_render) and hands
 * the buffer to the response, which frees it. Connections are few and
 * short: at most 16 at a time, each closed after 10 s idle.
 */
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/listen.h"
#include "core/log.h"
#include "metrics/metrics.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct gd_metrics_http {
  struct MHD_Daemon *d;
  gd_metrics *m;
  atomic_bool starting;
  char start_err[200]; /* MHD's last message while starting (main thread) */
};

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  gd_metrics_http *h = cls;
  char msg[200];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = 0;
  if (atomic_load(&h->starting))
    snprintf(h->start_err, sizeof h->start_err, "%s", msg);
  else
    gd_debug("metrics http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *text,
                             const char *allow) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
  if (allow)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result rc = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
  gd_metrics_http *h = cls;
  (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
  bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
  bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  if (!get && !head)
    return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET /metrics\n",
                 "GET, HEAD");
  if (strcmp(url, "/metrics") != 0)
    return reply(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n", NULL);
  size_t len;
  char *text = gd_metrics_render(h->m, &len);
  if (!text)
    return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
  struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
  enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

int gd_metrics_http_start(gd_metrics *m, const char *listen, gd_metrics_http **ret,
                          int *ret_port, gd_err *err) {
  struct addrinfo *ai = NULL;
  int port;
  if (gd_listen_resolve("--metrics-listen", listen, &ai, &port, err))
    return err ? err->code : GD_EINVALID;
  gd_metrics_http *h = calloc(1, sizeof *h);
  if (!h) {
    freeaddrinfo(ai);
    return gd_err_set(err, GD_ENOMEM, "metrics: out of memory");
  }
  h->m = m;
  atomic_store(&h->starting, true);
  /* The first address only: bind exactly the host asked for. */
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
                   (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                          MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                          MHD_OPTION_END);
  freeaddrinfo(ai);
  atomic_store(&h->starting, false);
  if (!h->d) {
    gd_err_set(err, GD_EIO, "--metrics-listen %s: cannot listen: %s", listen,
               h->start_err[0] ? h->start_err : "libmicrohttpd could not start");
    free(h);
    return GD_EIO;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  *ret_port = di && di->port ? di->port : port;
  *ret = h;
  return GD_OK;
}

void gd_metrics_http_stop(gd_metrics_http *h) {
  if (!h)
    return;
  MHD_stop_daemon(h->d);
  free(h);
}
