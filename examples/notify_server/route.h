/*
 * route - what a request to the example server asks for.
 *
 * Kept apart from the sockets so that the one piece of parsing the server
 * does itself (the request target past http-parser: the route and the
 * percent-encoded {email}) is unit-tested and fuzzed on its own.
 */
#ifndef NOTIFY_ROUTE_H
#define NOTIFY_ROUTE_H

#define ROUTE_EMAIL_MAX 320

typedef enum route_kind {
  ROUTE_NOT_FOUND = 0,
  ROUTE_HEALTHZ,
  ROUTE_NOTIFY,
  ROUTE_BAD_METHOD,
  ROUTE_BAD_EMAIL
} route_kind;

/* Decides what method + path (the target's path, NUL-terminated, still
 * percent-encoded) asks for. For ROUTE_NOTIFY, email receives the decoded
 * address (at most ROUTE_EMAIL_MAX bytes plus the NUL); it is never
 * empty and never holds '/' or NUL. */
route_kind route_match(const char *method, const char *path,
                       char email[ROUTE_EMAIL_MAX + 1]);

#endif /* NOTIFY_ROUTE_H */
