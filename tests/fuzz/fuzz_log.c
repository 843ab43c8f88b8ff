/*
 * fuzz_log - libFuzzer target for the collector's log quoting: for any
 * bytes and any buffer size, log_quote() writes a NUL-terminated value
 * inside the buffer that opens and closes with a quote, has every inner
 * quote and backslash escaped, holds no control byte (C0, DEL, raw or
 * encoded C1) and is valid UTF-8; with LOG_QUOTE_SIZE() it is never cut.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void check_quoted(const char *s, size_t size) {
  const unsigned char *u = (const unsigned char *)s;
  size_t len = strlen(s);
  if (len >= size)
    abort();
  if (size < 3)
    return;
  if (len < 2 || u[0] != '"' || u[len - 1] != '"')
    abort();
  for (size_t i = 1; i + 1 < len;) {
    unsigned char b = u[i];
    if (b < 0x20 || b == 0x7F)
      abort();
    if (b == '\\') {
      if (u[i + 1] != '\\' && u[i + 1] != '"')
        abort();
      i += 2;
      continue;
    }
    if (b == '"')
      abort();
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
    if (n == 0 || i + n > len - 1)
      abort();
    for (size_t k = 1; k < n; k++)
      if ((u[i + k] & 0xC0) != 0x80)
        abort();
    if (b == 0xC2 && u[i + 1] <= 0x9F)
      abort();
    i += n;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char out[LOG_QUOTE_SIZE(4096)];
  if (size > 4096)
    return 0;
  const char *in = (const char *)data;
  size_t sizes[] = {0, 1, 2, 3, 4, 5, 6, 9, 17, 64, LOG_QUOTE_SIZE(size)};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    memset(out, 'x', sizes[i]);
    log_quote(out, sizes[i], in, size);
    if (sizes[i] > 0)
      check_quoted(out, sizes[i]);
  }
  /* At LOG_QUOTE_SIZE nothing is cut: more room changes nothing. */
  static char roomy[LOG_QUOTE_SIZE(4096) + 64];
  log_quote(roomy, sizeof(roomy), in, size);
  if (strcmp(out, roomy) != 0)
    abort();
  return 0;
}
