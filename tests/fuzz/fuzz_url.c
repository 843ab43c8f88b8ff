/*
 * fuzz_url - libFuzzer target for the endpoint URL parser: for any bytes,
 * with every combination of flags, tw__url_parse() either refuses with a
 * reason or gives a URL whose fields are in range and that formats back to
 * text parsing to the same URL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static void check_round_trip(const url *u, unsigned flags) {
  char text[URL_HOST_MAX + URL_PATH_MAX + 32];
  url again;
  if (u->scheme == URL_UNIX) {
    if (u->path[0] != '/' || strlen(u->path) > URL_PATH_MAX)
      abort();
  } else if (u->port < 0 || u->port > 65535 ||
             (u->port == 0 && !(flags & URL_LISTEN)) || u->host[0] == '\0' ||
             strlen(u->host) > URL_HOST_MAX) {
    abort();
  }
  tw__url_format(u, text, sizeof(text));
  if (tw__url_parse(text, flags, &again) != 0 || again.scheme != u->scheme ||
      again.port != u->port || again.ipv6 != u->ipv6 ||
      strcmp(again.host, u->host) != 0 || strcmp(again.path, u->path) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  for (unsigned flags = 0; flags < 4; flags++) {
    url u;
    int rc = tw__url_parse(text, flags, &u);
    if (tw__url_strerror(rc) == NULL)
      abort();
    if (rc == 0) {
      check_round_trip(&u, flags);
      (void)tw__url_loopback(&u); /* reads what the parser gave, safely */
    } else if (rc == URL_E_TLS && (u.scheme != URL_TLS || (flags & URL_TLS_OK)))
      abort();
  }
  free(text);
  return 0;
}
