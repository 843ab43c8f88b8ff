/*
 * url - the one parser of taskwatch's endpoint URLs, used by the agent
 * (TASKWATCH_COLLECTOR, tw_config.collector), the collector (--listen) and
 * the tools. The grammar:
 *
 *   tcp://HOST:PORT     HOST a name or an IPv4 address
 *   tcp://[V6]:PORT     an IPv6 address in brackets
 *   tls://HOST:PORT     the same, over TLS (docs/tls.md; URL_TLS_OK)
 *   unix:/PATH          an absolute path to a unix socket
 *
 * Every rejection has its own one-line reason (tw__url_strerror()), so a user
 * is told what is wrong rather than that something is.
 */
#ifndef TW_URL_H
#define TW_URL_H

#include <stddef.h>

#include "limit.h"

typedef enum url_scheme { URL_TCP = 1, URL_TLS, URL_UNIX } url_scheme;

/* Rejection reasons, each with its text; one list for both. */
#define URL_ERROR_MAP(XX)                                                      \
  XX(SCHEME, -1, "unknown scheme (tcp://HOST:PORT or unix:/PATH)")             \
  XX(HOST_MISSING, -2, "missing host")                                         \
  XX(HOST_LONG, -3, "host too long (at most 255 bytes)")                       \
  XX(HOST_CHAR, -4, "host contains a character not allowed in a host")         \
  XX(BRACKET, -5, "unclosed [ around an IPv6 address")                         \
  XX(IPV6, -6, "not an IPv6 address inside [ ]")                               \
  XX(IPV6_BARE, -7, "an IPv6 address goes in brackets: tcp://[ADDRESS]:PORT")  \
  XX(PORT_MISSING, -8, "missing :PORT")                                        \
  XX(PORT_NUMBER, -9, "port is not a number")                                  \
  XX(PORT_RANGE, -10, "port out of range (at most 65535)")                     \
  XX(PORT_ZERO, -11, "port 0 (any free port) is for listening only")           \
  XX(PATH_MISSING, -12, "missing path after unix:")                            \
  XX(PATH_RELATIVE, -13, "unix: path must be absolute")                        \
  XX(PATH_LONG, -14, "unix: path too long (at most 107 bytes)")                \
  XX(TLS, -15, "tls:// is not supported yet (this build has no TLS)")

enum url_error {
#define URL__ERROR_ENUM(name, value, text) URL_E_##name = (value),
  URL_ERROR_MAP(URL__ERROR_ENUM)
#undef URL__ERROR_ENUM
};

/* Flags for tw__url_parse(). */
#define URL_LISTEN 1u /* port 0 (the system picks one) is allowed */
#define URL_TLS_OK 2u /* tls:// is accepted (a build with a TLS transport) */

typedef struct url {
  url_scheme scheme;
  char host[URL_HOST_MAX + 1]; /* tcp, tls: without the brackets */
  int port;                    /* tcp, tls */
  int ipv6;                    /* tcp, tls: host was in brackets */
  char path[URL_PATH_MAX + 1]; /* unix */
} url;

/*
 * Parses text into *out. Returns 0, or a negative URL_E_* code and *out
 * is unspecified, except that tls:// without URL_TLS_OK fills *out fully
 * and returns URL_E_TLS, so a caller may say more. Never allocates.
 */
int tw__url_parse(const char *text, unsigned flags, url *out);

/* The reason for a tw__url_parse() code; static storage. */
const char *tw__url_strerror(int code);

/* 1 when u is a unix socket or a tcp/tls address on the loopback
 * interface (127.0.0.0/8, ::1, localhost): a listener other hosts cannot
 * reach. */
int tw__url_loopback(const url *u);

/* Writes u back as text ("tcp://[::1]:7460"); snprintf's return value. */
int tw__url_format(const url *u, char *buf, size_t size);

#endif /* TW_URL_H */
