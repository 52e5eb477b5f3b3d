/* Listen addresses (listen.h). */
#include "core/listen.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int gd_listen_parse(const char *listen, char *ret_host, size_t host_size, int *ret_port,
                    gd_err *err) {
  const char *colon = strrchr(listen, ':');
  const char *h = listen;
  size_t hn;
  if (!colon)
    return gd_err_set(err, GD_EINVALID, "'%s': HOST:PORT expected", listen);
  hn = (size_t)(colon - listen);
  if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
    h++;
    hn -= 2;
  } else if (memchr(h, ':', hn)) {
    return gd_err_set(err, GD_EINVALID, "'%s': write an IPv6 host in brackets, [::1]:PORT",
                      listen);
  }
  if (hn == 0)
    return gd_err_set(err, GD_EINVALID, "'%s': no host before the port (e.g. 127.0.0.1:9464)",
                      listen);
  if (hn >= host_size)
    return gd_err_set(err, GD_EINVALID, "'%s': host too long", listen);
  const char *p = colon + 1;
  char *end;
  long port = strtol(p, &end, 10);
  if (!*p || *end || *p == '-' || *p == '+' || port < 0 || port > 65535)
    return gd_err_set(err, GD_EINVALID, "'%s': port must be a number 0..65535", listen);
  memcpy(ret_host, h, hn);
  ret_host[hn] = 0;
  *ret_port = (int)port;
  return GD_OK;
}

int gd_listen_resolve(const char *flag, const char *listen, struct addrinfo **ret,
                      int *ret_port, gd_err *err) {
  char host[256], port_s[8];
  int port, rc;
  if (gd_listen_parse(listen, host, sizeof host, &port, err))
    return gd_err_prefix(err, "%s", flag);
  snprintf(port_s, sizeof port_s, "%d", port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  if ((rc = getaddrinfo(host, port_s, &hints, ret)) != 0)
    return gd_err_set(err, GD_EINVALID, "%s %s: cannot resolve '%s': %s", flag, listen, host,
                      gai_strerror(rc));
  *ret_port = port;
  return GD_OK;
}
