/*
 * fuzz_sanitize - libFuzzer target for the display sanitizer: for any bytes,
 * in both modes and at several widths, the output holds no control byte
 * (C0, DEL, raw or encoded C1), is valid UTF-8 (pure ASCII in ASCII mode),
 * fits the column limit, and the unlimited width matches sanitize_width().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sanitize.h"

static void check_output(const char *s, unsigned flags) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; u[i];) {
    unsigned char b = u[i];
    if (b < 0x20 || b == 0x7F)
      abort();
    if (b < 0x80) {
      i++;
      continue;
    }
    if (flags & SANITIZE_ASCII)
      abort();
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
    if (n == 0)
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
