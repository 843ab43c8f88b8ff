/*
 * test_log - the collector's log lines escape whatever they quote: C0 and
 * C1 controls (8-bit OSC 52, CSI 0x9b, their UTF-8 forms), bidi controls
 * and invalid UTF-8 never reach the log raw, through log_quote() or through
 * a value that reached a line without it; quotes and backslashes cannot
 * forge a key=value pair; cuts fall on a character boundary and are marked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Strict UTF-8 with no C0 (but the line's own newline when allowed), no
 * DEL, no C1 code point and no bidi or invisible format control. */
static void assert_display_safe(const char *s, size_t len, int newline_ok) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    uint32_t c = u[i];
    size_t n = 1;
    if (c >= 0x80) {
      n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      assert_true(c >= 0xC2 && c <= 0xF4);
      assert_true(i + n <= len);
      c &= 0x3F >> (n - 1);
      for (size_t k = 1; k < n; k++) {
        assert_int_equal(u[i + k] & 0xC0, 0x80);
        c = (c << 6) | (u[i + k] & 0x3F);
      }
    }
    if (c == '\n' && newline_ok && i + 1 == len)
      return;
    assert_false(c < 0x20 || c == 0x7F);
    assert_false(c >= 0x80 && c <= 0x9F);
    assert_false(c == 0x061C || (c >= 0x200B && c <= 0x200F) ||
                 (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069));
    i += n;
  }
}

static const char *quote(char *out, size_t size, const char *s, size_t len) {
  log_quote(out, size, s, len);
  assert_display_safe(out, strlen(out), 0);
  return out;
}

/* A string literal, NUL bytes inside included. */
#define QUOTE(out, lit) quote(out, sizeof(out), lit, sizeof(lit) - 1)

static void hostile_bytes_are_escaped(void **state) {
  (void)state;
  char out[LOG_QUOTE_SIZE(64)];
  /* 8-bit OSC 52 (set the clipboard): OSC, payload, ST. */
  static const char osc52[] = "\x9d"
                              "52;c;aGVsbG8=\x9c";
  assert_string_equal(QUOTE(out, osc52), "\"\xEF\xBF\xBD"
                                         "52;c;aGVsbG8=\xEF\xBF\xBD\"");
  assert_string_equal(QUOTE(out, "a\x9b"
                                 "31mb"),
                      "\"a\xEF\xBF\xBD"
                      "31mb\"");
  /* C1 in its UTF-8 form, U+202E (right-to-left override), U+2066. */
  assert_string_equal(QUOTE(out, "\xC2\x9B|\xE2\x80\xAEz|\xE2\x81\xA6"),
                      "\"\xEF\xBF\xBD|\xEF\xBF\xBDz|\xEF\xBF\xBD\"");
  /* 7-bit escape sequences and line breaks: control pictures. */
  assert_string_equal(
      QUOTE(out, "\x1b]52;c;x\x07\r\n"),
      "\"\xE2\x90\x9B]52;c;x\xE2\x90\x87\xE2\x90\x8D\xE2\x90\x8A\"");
  /* Invalid UTF-8: a lone continuation byte, an overlong '/', 0xFF. */
  assert_string_equal(QUOTE(out, "\x80\xC0\xAF\xFF"),
                      "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
  /* NUL inside a value does not end it. */
  assert_string_equal(QUOTE(out, "a\0b"), "\"a\xE2\x90\x80"
                                          "b\"");
}

static void quotes_cannot_forge_pairs(void **state) {
  (void)state;
  char out[LOG_QUOTE_SIZE(64)];
  const char *forged = "x\" agent=1 reason=\"ok\\";
  assert_string_equal(quote(out, sizeof(out), forged, strlen(forged)),
                      "\"x\\\" agent=1 reason=\\\"ok\\\\\"");
}

static void text_is_kept(void **state) {
  (void)state;
  char out[LOG_QUOTE_SIZE(64)];
  const char *s = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC e\xCC\x81";
  char want[128];
  snprintf(want, sizeof(want), "\"%s\"", s);
  assert_string_equal(quote(out, sizeof(out), s, strlen(s)), want);
  assert_string_equal(quote(out, sizeof(out), "", 0), "\"\"");
}

/* LOG_QUOTE_SIZE holds the worst case, every byte a control picture or a
 * replacement character, without a cut. */
static void worst_case_fits(void **state) {
  (void)state;
  char in[256], out[LOG_QUOTE_SIZE(256)];
  for (int fill = 0; fill < 3; fill++) {
    memset(in, fill == 0 ? 0x01 : fill == 1 ? 0x9b : '"', sizeof(in));
    quote(out, sizeof(out), in, sizeof(in));
    assert_null(strstr(out, "\xE2\x80\xA6"));
    assert_int_equal(strlen(out), 2 + sizeof(in) * (fill == 2 ? 2 : 3));
  }
}

/* Too long: cut at a character boundary, marked, closed, still safe. */
static void cuts_are_marked(void **state) {
  (void)state;
  char out[16];
  const char *s =
      "\xE6\x97\xA5\xE6\x9C\xAC\xE6\x97\xA5\xE6\x9C\xAC\xE6\x97\xA5";
  quote(out, sizeof(out), s, strlen(s));
  assert_string_equal(out,
                      "\"\xE6\x97\xA5\xE6\x9C\xAC\xE6\x97\xA5\xE2\x80\xA6\"");
  for (size_t size = 0; size < 12; size++) {
    char small[12];
    memset(small, 'z', sizeof(small));
    log_quote(small, size, "\x1b\x1b\x1b\x1b", 4);
    if (size > 0) {
      assert_true(strlen(small) < size);
      assert_display_safe(small, strlen(small), 0);
    }
    if (size >= 3)
      assert_int_equal(small[strlen(small) - 1], '"');
  }
}

/* Captures what log_msg() writes to stderr. */
static size_t capture(char *buf, size_t size, const char *fmt, const char *v) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
  log_msg(LOG_WARN, fmt, v);
  assert_true(dup2(saved, STDERR_FILENO) >= 0);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, size - 1, tmp);
  buf[n] = '\0';
  fclose(tmp);
  return n;
}

/* A value that reached a line without log_quote() is escaped all the
 * same: the whole line passes the sanitizer. */
static void lines_are_sanitized(void **state) {
  (void)state;
  char buf[16384];
  size_t n = capture(buf, sizeof(buf), "service=%s",
                     "\x9d"
                     "52;c;aGVsbG8=\x9c\x1b[2J\n2026 error forged\xE2\x80\xAE");
  assert_display_safe(buf, n, 1);
  assert_int_equal(buf[n - 1], '\n');
  assert_non_null(strstr(buf, " warn service=\xEF\xBF\xBD"
                              "52;c;aGVsbG8=\xEF\xBF\xBD\xE2\x90\x9B[2J"
                              "\xE2\x90\x8A"
                              "2026 error forged\xEF\xBF\xBD\n"));
  /* A line past the limit is cut and marked, still one line. */
  static char big[6000];
  memset(big, 0x9b, sizeof(big) - 1);
  n = capture(buf, sizeof(buf), "v=%s", big);
  assert_display_safe(buf, n, 1);
  assert_non_null(strstr(buf, "\xE2\x80\xA6\n"));
  assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hostile_bytes_are_escaped),
      cmocka_unit_test(quotes_cannot_forge_pairs),
      cmocka_unit_test(text_is_kept),
      cmocka_unit_test(worst_case_fits),
      cmocka_unit_test(cuts_are_marked),
      cmocka_unit_test(lines_are_sanitized),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
