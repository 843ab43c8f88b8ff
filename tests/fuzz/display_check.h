/*
 * display_check - the fuzz targets' test of display-safe text: aborts
 * unless s[0 .. len) is valid UTF-8 holding no control (C0, DEL, C1 raw or
 * encoded), or, with ascii, only bytes 0x20-0x7E.
 */
#ifndef TW_FUZZ_DISPLAY_CHECK_H
#define TW_FUZZ_DISPLAY_CHECK_H

#include <stddef.h>
#include <stdlib.h>

static inline void check_display_text(const char *s, size_t len, int ascii) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    unsigned char b = u[i];
    if (b < 0x20 || b == 0x7F)
      abort();
    if (b < 0x80) {
      i++;
      continue;
    }
    if (ascii)
      abort();
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
    if (n == 0 || i + n > len)
      abort();
    for (size_t k = 1; k < n; k++)
      if ((u[i + k] & 0xC0) != 0x80)
        abort();
    if (b == 0xC2 && u[i + 1] <= 0x9F)
      abort();
    i += n;
  }
}

#endif /* TW_FUZZ_DISPLAY_CHECK_H */
