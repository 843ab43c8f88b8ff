/*
 * url - see url.h. A hand-written parser: the grammar is three short
 * forms, and the work is in the error reasons, which a general URL library
 * would not give. Names are not resolved here (the agent resolves on its
 * sender thread, the collector binds numeric addresses only).
 */
#include "url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) - 1 == URL_PATH_MAX,
               "URL_PATH_MAX is the platform's unix socket path length");

const char *tw__url_strerror(int code) {
  switch (code) {
  case 0:
    return "ok";
#define URL__STRERROR(name, value, text)                                       \
  case value:                                                                  \
    return text;
    URL_ERROR_MAP(URL__STRERROR)
#undef URL__STRERROR
  default:
    return "malformed URL";
  }
}

static int parse_unix(const char *p, url *out) {
  size_t n = strlen(p);
  if (n == 0)
    return URL_E_PATH_MISSING;
  if (p[0] != '/')
    return URL_E_PATH_RELATIVE;
  if (n > URL_PATH_MAX)
    return URL_E_PATH_LONG;
  memcpy(out->path, p, n + 1);
  out->scheme = URL_UNIX;
  return 0;
}

/* Digits only, no sign, no spaces: strtol would take " +80". */
static int parse_port(const char *p, unsigned flags, int *port) {
  long v = 0;
  if (*p == '\0')
    return URL_E_PORT_MISSING;
  for (const char *q = p; *q; q++) {
    if (*q < '0' || *q > '9')
      return URL_E_PORT_NUMBER;
    if (v <= 65535)
      v = v * 10 + (*q - '0');
  }
  if (v > 65535)
    return URL_E_PORT_RANGE;
  if (v == 0 && !(flags & URL_LISTEN))
    return URL_E_PORT_ZERO;
  *port = (int)v;
  return 0;
}

/* Bytes a host name or IPv4 address may not hold: controls, spaces, and
 * what would make the URL ambiguous. */
static int bad_host_byte(unsigned char c) {
  return c <= 0x20 || c == 0x7f || strchr("/@[]?#\\", c) != NULL;
}

/* An IPv6 address, with an optional %zone (fe80::1%eth0). */
static int ipv6_literal(const char *host) {
  char bare[URL_HOST_MAX + 1];
  unsigned char addr[16];
  size_t n = strcspn(host, "%");
  memcpy(bare, host, n);
  bare[n] = '\0';
  return inet_pton(AF_INET6, bare, addr) == 1 &&
         (host[n] == '\0' || host[n + 1] != '\0');
}

static int parse_host_port(const char *h, unsigned flags, url *out) {
  const char *colon;
  size_t n;
  out->ipv6 = 0;
  if (*h == '[') {
    const char *close = strchr(h, ']');
    if (close == NULL)
      return URL_E_BRACKET;
    n = (size_t)(close - h - 1);
    if (n == 0)
      return URL_E_HOST_MISSING;
    if (n > URL_HOST_MAX)
      return URL_E_HOST_LONG;
    memcpy(out->host, h + 1, n);
    out->host[n] = '\0';
    if (!ipv6_literal(out->host))
      return URL_E_IPV6;
    out->ipv6 = 1;
    if (close[1] != ':')
      return close[1] == '\0' ? URL_E_PORT_MISSING : URL_E_PORT_NUMBER;
    colon = close + 1;
  } else {
    colon = strchr(h, ':');
    if (colon != NULL && strchr(colon + 1, ':') != NULL)
      return URL_E_IPV6_BARE;
    if (colon == h || *h == '\0')
      return URL_E_HOST_MISSING;
    if (colon == NULL)
      return URL_E_PORT_MISSING;
    n = (size_t)(colon - h);
    if (n > URL_HOST_MAX)
      return URL_E_HOST_LONG;
    for (size_t i = 0; i < n; i++)
      if (bad_host_byte((unsigned char)h[i]))
        return URL_E_HOST_CHAR;
    memcpy(out->host, h, n);
    out->host[n] = '\0';
  }
  return parse_port(colon + 1, flags, &out->port);
}

int tw__url_parse(const char *text, unsigned flags, url *out) {
  int rc;
  memset(out, 0, sizeof(*out));
  if (text == NULL)
    return URL_E_SCHEME;
  if (strncmp(text, "unix:", 5) == 0)
    return parse_unix(text + 5, out);
  if (strncmp(text, "tcp://", 6) == 0) {
    out->scheme = URL_TCP;
    return parse_host_port(text + 6, flags, out);
  }
  if (strncmp(text, "tls://", 6) == 0) {
    out->scheme = URL_TLS;
    if ((rc = parse_host_port(text + 6, flags, out)) != 0)
      return rc;
    return (flags & URL_TLS_OK) ? 0 : URL_E_TLS;
  }
  return URL_E_SCHEME;
}

int tw__url_loopback(const url *u) {
  struct in_addr v4;
  struct in6_addr v6;
  if (u->scheme == URL_UNIX)
    return 1;
  if (strcmp(u->host, "localhost") == 0)
    return 1;
  if (inet_pton(AF_INET, u->host, &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, u->host, &v6) == 1 &&
         memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
}

int tw__url_format(const url *u, char *buf, size_t size) {
  if (u->scheme == URL_UNIX)
    return snprintf(buf, size, "unix:%s", u->path);
  const char *scheme = u->scheme == URL_TLS ? "tls" : "tcp";
  if (u->ipv6)
    return snprintf(buf, size, "%s://[%s]:%d", scheme, u->host, u->port);
  return snprintf(buf, size, "%s://%s:%d", scheme, u->host, u->port);
}
