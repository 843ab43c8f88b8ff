/*
 * libFuzzer target for examples/notify_server/route.c: the part of the
 * example server's request handling that is not http-parser's. The input
 * is "METHOD\0PATH"; whatever it is, route_match must not read or write out
 * of bounds, and an accepted email must obey its documented shape.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy = malloc(size + 2);
  if (copy == NULL)
    return 0;
  memcpy(copy, data, size);
  copy[size] = '\0';
  copy[size + 1] = '\0';
  const char *method = copy;
  const char *path = copy + strlen(copy) + (strlen(copy) < size ? 1 : 0);
  char email[ROUTE_EMAIL_MAX + 1];
  if (route_match(method, path, email) == ROUTE_NOTIFY) {
    size_t n = strlen(email);
    assert(n > 0 && n <= ROUTE_EMAIL_MAX);
    assert(strchr(email, '/') == NULL);
  }
  free(copy);
  return 0;
}
