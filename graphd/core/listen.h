/*
 * core/listen: "HOST:PORT" listen addresses, for the endpoints graphd
 * serves with libmicrohttpd (metrics, the HTTP/JSON transport).
 */
#ifndef GD_CORE_LISTEN_H
#define GD_CORE_LISTEN_H

#include <stddef.h>

#include "core/error.h"

struct addrinfo;

/* Splits "HOST:PORT" ("[::1]:9100" for IPv6; port 0..65535, 0 = any
 * free port) into host (brackets removed) and port. Errors: GD_EINVALID
 * with a message saying what is wrong. */
int gd_listen_parse(const char *listen, char *ret_host, size_t host_size, int *ret_port,
                    gd_err *err);

/* Parses and resolves listen (numeric port, passive): *ret is the first
 * address (freeaddrinfo it), the one to bind, so exactly the host asked
 * for is bound; *ret_port the port. Errors: GD_EINVALID (the message
 * starts with flag, e.g. "--http-listen", and says what is wrong). */
int gd_listen_resolve(const char *flag, const char *listen, struct addrinfo **ret,
                      int *ret_port, gd_err *err);

#endif
