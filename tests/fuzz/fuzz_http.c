/*
 * fuzz_http - libFuzzer target for the metrics endpoint's request parser
 * (collector/http.c). Any bytes, fed whole and then again cut at a point
 * the input chooses: the parser answers the same both ways, never reads
 * more than HTTP_MAX_REQUEST bytes, and a complete request has a target
 * of at most HTTP_MAX_PATH bytes, NUL-terminated, without a '?'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static int feed(http_request *r, const uint8_t *data, size_t n, size_t cut) {
  http_request_init(r);
  int rc = http_request_feed(r, (const char *)data, cut);
  if (rc == HTTP_NEED_MORE)
    rc = http_request_feed(r, (const char *)data + cut, n - cut);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t cut = data[0] % (size);
  data++, size--;
  if (cut > size)
    cut = size;
  http_request whole, pieces;
  int a = feed(&whole, data, size, size);
  int b = feed(&pieces, data, size, cut);
  if (a != b)
    abort();
  if (whole.bytes > HTTP_MAX_REQUEST)
    abort();
  if (a == HTTP_OK) {
    if (whole.path_len > HTTP_MAX_PATH || whole.path[whole.path_len] != '\0' ||
        strchr(whole.path, '?') != NULL || strcmp(whole.path, pieces.path))
      abort();
  } else if (a != HTTP_NEED_MORE &&
             (a <= HTTP_OK || a >= HTTP_ANSWER_COUNT || whole.status != a)) {
    abort();
  }
  return 0;
}
