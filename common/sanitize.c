/*
 * sanitize - turns untrusted task strings into display-safe text measured
 * in terminal columns. The rules are in sanitize.h; this file holds a
 * strict UTF-8 decoder, the list of characters that are never shown raw,
 * and the column widths (wcwidth() under a private UTF-8 locale object, so
 * the result is the same whatever locale the process runs in).
 */
#include "sanitize.h"

#include <langinfo.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "xalloc.h"

#define REPLACEMENT "\xEF\xBF\xBD"   /* U+FFFD */
#define ELLIPSIS_UTF8 "\xE2\x80\xA6" /* U+2026 */
#define BAD_CODEPOINT UINT32_MAX

typedef struct range {
  uint32_t first, last;
} range;

/* Characters that change the direction or the joining of the text around
 * them, or that are invisible: shown as U+FFFD so a name cannot hide or
 * reorder what follows it (the "Trojan Source" class of tricks). */
static const range hidden[] = {
    {0x061C, 0x061C}, {0x180E, 0x180E}, {0x200B, 0x200F},
    {0x2028, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F},
    {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0xE0000, 0xE007F},
};

/* Variation selectors: dropped (see sanitize.h). */
static const range dropped[] = {
    {0xFE00, 0xFE0F},
    {0xE0100, 0xE01EF},
};

/* Used only when the C library has no UTF-8 locale: East Asian wide and
 * fullwidth ranges, and the common combining blocks. */
static const range fallback_wide[] = {
    {0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},
    {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
    {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE30, 0xFE4F},
    {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
    {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};
static const range fallback_combining[] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x1AB0, 0x1AFF},
    {0x1DC0, 0x1DFF}, {0x20D0, 0x20FF}, {0xFE20, 0xFE2F},
};

static int in_ranges(uint32_t c, const range *r, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (c >= r[i].first && c <= r[i].last)
      return 1;
  return 0;
}
#define IN(c, table) in_ranges((c), (table), sizeof(table) / sizeof(table[0]))

static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale = (locale_t)0;

static void utf8_locale_init(void) {
  static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    utf8_locale = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
    if (utf8_locale != (locale_t)0)
      return;
  }
}

/* Columns of a code point past ASCII: -1 unprintable, 0 combining, 1, 2. */
static int unicode_width(uint32_t c) {
  pthread_once(&utf8_once, utf8_locale_init);
  if (utf8_locale == (locale_t)0) {
    if (IN(c, fallback_combining))
      return 0;
    return IN(c, fallback_wide) ? 2 : 1;
  }
  locale_t old = uselocale(utf8_locale);
  int w = wcwidth((wchar_t)c);
  uselocale(old);
  return w;
}

/* Decodes one strict UTF-8 sequence at in[pos]; returns BAD_CODEPOINT and
 * *used = 1 for any byte that does not start a valid, shortest-form,
 * non-surrogate sequence. */
static uint32_t decode_utf8(const unsigned char *in, size_t len, size_t pos,
                            size_t *used) {
  unsigned char b = in[pos];
  size_t n;
  uint32_t c;
  unsigned char lo = 0x80, hi = 0xBF;
  *used = 1;
  if (b < 0x80)
    return b;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
    c = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    c = b & 0x0F;
    if (b == 0xE0)
      lo = 0xA0;
    else if (b == 0xED)
      hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    c = b & 0x07;
    if (b == 0xF0)
      lo = 0x90;
    else if (b == 0xF4)
      hi = 0x8F;
  } else {
    return BAD_CODEPOINT;
  }
  if (len - pos < n)
    return BAD_CODEPOINT;
  for (size_t i = 1; i < n; i++) {
    unsigned char cb = in[pos + i];
    if (cb < lo || cb > hi)
      return BAD_CODEPOINT;
    lo = 0x80;
    hi = 0xBF;
    c = (c << 6) | (cb & 0x3F);
  }
  *used = n;
  return c;
}

static size_t put_utf8(uint32_t c, char *out) {
  if (c < 0x80) {
    out[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = (char)(0xE0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (c >> 18));
  out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  out[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

/* A C0 control or DEL: a Control Picture, or caret notation in ASCII. */
static size_t put_control(unsigned char b, unsigned flags, char *out,
                          int *width) {
  if (flags & SANITIZE_ASCII) {
    out[0] = '^';
    out[1] = b == 0x7F ? '?' : (char)(b + 0x40);
    *width = 2;
    return 2;
  }
  *width = 1;
  return put_utf8(b == 0x7F ? 0x2421 : 0x2400 + b, out);
}

static size_t put_placeholder(unsigned flags, char *out, int *width) {
  *width = 1;
  if (flags & SANITIZE_ASCII) {
    out[0] = '?';
    return 1;
  }
  memcpy(out, REPLACEMENT, 3);
  return 3;
}

size_t sanitize_next(const char *in, size_t len, size_t *pos, unsigned flags,
                     int *combining, char out[SANITIZE_CHAR_MAX], int *width) {
  const unsigned char *u = (const unsigned char *)in;
  size_t used;
  uint32_t c = decode_utf8(u, len, *pos, &used);
  *pos += used;
  if (c < 0x20 || c == 0x7F) {
    *combining = -1;
    return put_control((unsigned char)c, flags, out, width);
  }
  if (c < 0x7F) {
    *combining = 0;
    out[0] = (char)c;
    *width = 1;
    return 1;
  }
  if (c != BAD_CODEPOINT && IN(c, dropped)) {
    *width = 0;
    return 0;
  }
  int w = -1;
  if (c != BAD_CODEPOINT && c >= 0xA0 && !IN(c, hidden))
    w = unicode_width(c);
  if (w == 0 && *combining >= 0 && *combining < SANITIZE_MAX_COMBINING &&
      !(flags & SANITIZE_ASCII)) {
    ++*combining;
    *width = 0;
    return put_utf8(c, out);
  }
  if (w <= 0) {
    *combining = -1;
    return put_placeholder(flags, out, width);
  }
  *combining = 0;
  if (flags & SANITIZE_ASCII) {
    out[0] = '?';
    *width = 1;
    return 1;
  }
  *width = w;
  return put_utf8(c, out);
}

int sanitize(const char *in, size_t len, int max_cols, unsigned flags,
             char *out, size_t outsize) {
  int ascii = (flags & SANITIZE_ASCII) != 0;
  size_t ell_len = ascii ? 1 : 3;
  int measure = out == NULL;
  size_t n = 0, safe_n = 0;
  int cols = 0, safe_cols = 0, combining = -1, truncated = 0;
  size_t pos = 0;
  if (max_cols == 0 || (!measure && outsize == 0)) {
    if (!measure && outsize > 0)
      out[0] = '\0';
    return 0;
  }
  while (pos < len) {
    char buf[SANITIZE_CHAR_MAX];
    int w;
    size_t b = sanitize_next(in, len, &pos, flags, &combining, buf, &w);
    if ((max_cols >= 0 && cols + w > max_cols) ||
        (!measure && n + b + 1 > outsize)) {
      truncated = 1;
      break;
    }
    if (!measure)
      memcpy(out + n, buf, b);
    n += b;
    cols += w;
    if ((max_cols < 0 || cols + 1 <= max_cols) &&
        (measure || n + ell_len + 1 <= outsize)) {
      safe_n = n;
      safe_cols = cols;
    }
  }
  if (truncated && (flags & SANITIZE_ELLIPSIS)) {
    n = safe_n;
    cols = safe_cols;
    if (!measure)
      memcpy(out + n, ascii ? "~" : ELLIPSIS_UTF8, ell_len);
    n += ell_len;
    cols += 1;
  }
  if (!measure)
    out[n] = '\0';
  return cols;
}

int sanitize_width(const char *in, size_t len, unsigned flags) {
  return sanitize(in, len, -1, flags, NULL, 0);
}

char *sanitize_dup(const char *in, size_t len, int max_cols, unsigned flags,
                   int *cols) {
  /* Each input byte yields at most one 3-byte placeholder or character of
   * at most its own length plus an ellipsis, so 3 bytes per input byte
   * plus 4 always suffice. */
  size_t size = len * 3 + 4;
  char *out = xmalloc(size);
  int c = sanitize(in, len, max_cols, flags, out, size);
  if (cols)
    *cols = c;
  return out;
}

int sanitize_locale_is_utf8(void) {
  const char *codeset = nl_langinfo(CODESET);
  return codeset != NULL &&
         (strcmp(codeset, "UTF-8") == 0 || strcmp(codeset, "utf8") == 0);
}
