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

#include "display_check.h"
#include "log.h"

/* Inside the quotes, every quote and backslash is escaped; the rest is
 * display-safe text. */
static void check_quoted(const char *s, size_t size) {
  size_t len = strlen(s);
  if (len >= size)
    abort();
  if (size < 3)
    return;
  if (len < 2 || s[0] != '"' || s[len - 1] != '"')
    abort();
  for (size_t i = 1; i + 1 < len; i++) {
    if (s[i] == '"')
      abort();
    if (s[i] != '\\')
      continue;
    /* The escaped character is inside, not the closing quote. */
    if (i + 2 >= len || (s[i + 1] != '\\' && s[i + 1] != '"'))
      abort();
    i++;
  }
  check_display_text(s + 1, len - 2, 0);
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
