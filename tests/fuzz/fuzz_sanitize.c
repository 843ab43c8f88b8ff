/*
 * fuzz_sanitize - libFuzzer target for the display sanitizer: for any bytes,
 * in both modes and at several widths, the output holds no control byte
 * (C0, DEL, raw or encoded C1), is valid UTF-8 (pure ASCII in ASCII mode),
 * fits the column limit, and the unlimited width matches sanitize_width().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "display_check.h"
#include "sanitize.h"

static void check_output(const char *s, unsigned flags) {
  check_display_text(s, strlen(s), (flags & SANITIZE_ASCII) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int widths[] = {-1, 0, 1, 2, 7, 40};
  char out[4096];
  for (unsigned flags = 0; flags < 4; flags++) {
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
      int cols =
          sanitize((const char *)data, size, widths[w], flags, out, sizeof out);
      check_output(out, flags);
      if (widths[w] >= 0 && cols > widths[w])
        abort();
      if (widths[w] < 0 && size * 4 + 4 < sizeof out &&
          cols != sanitize_width((const char *)data, size, flags))
        abort();
    }
  }
  return 0;
}
