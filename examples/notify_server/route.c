/*
 * route - matching the example server's routes and decoding {email}.
 */
#include "route.h"

#include <stddef.h>
#include <string.h>

#define NOTIFY_PREFIX "/send-notification/"

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes one path segment; returns 0, or -1 when it is empty, too
 * long, malformed, or would hold a '/' or a NUL. */
static int decode_segment(const char *in, char *out, size_t max) {
  size_t n = 0;
  for (const char *p = in; *p != '\0'; p++) {
    char c = *p;
    if (c == '%') {
      int high = hex_value(p[1]);
      int low = high < 0 ? -1 : hex_value(p[2]);
      if (low < 0 || (high == 0 && low == 0))
        return -1;
      c = (char)(high * 16 + low);
      p += 2;
    }
    if (c == '/' || n == max)
      return -1;
    out[n++] = c;
  }
  out[n] = '\0';
  return n > 0 ? 0 : -1;
}

route_kind route_match(const char *method, const char *path,
                       char email[ROUTE_EMAIL_MAX + 1]) {
  if (strcmp(path, "/healthz") == 0) {
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
      return ROUTE_HEALTHZ;
    return ROUTE_BAD_METHOD;
  }
  if (strncmp(path, NOTIFY_PREFIX, strlen(NOTIFY_PREFIX)) != 0)
    return ROUTE_NOT_FOUND;
  if (strcmp(method, "POST") != 0)
    return ROUTE_BAD_METHOD;
  if (decode_segment(path + strlen(NOTIFY_PREFIX), email, ROUTE_EMAIL_MAX))
    return ROUTE_BAD_EMAIL;
  return ROUTE_NOTIFY;
}
