/*
 * test_sanitize - the display sanitizer against hostile strings: escape
 * sequences (CSI, OSC 52), C0 and C1 controls in raw and encoded form, CR
 * and BS, bidi overrides, invalid UTF-8, and width-aware truncation of CJK
 * text. The process locale is deliberately left as "C" so the tests show
 * that results do not depend on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sanitize.h"

/* Sanitizes a NUL-free literal (or the first len bytes) and checks both the
 * text and the width. */
static void check_n(const char *in, size_t len, int max_cols, unsigned flags,
                    const char *want, int want_cols) {
  char out[512];
  int cols = sanitize(in, len, max_cols, flags, out, sizeof out);
  assert_string_equal(out, want);
  assert_int_equal(cols, want_cols);
}

static void check(const char *in, int max_cols, unsigned flags,
                  const char *want, int want_cols) {
  check_n(in, strlen(in), max_cols, flags, want, want_cols);
}

/* No byte of the output may be a C0 control, DEL, or a C1 control in
 * either raw or UTF-8 encoded form. */
static void assert_no_controls(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; u[i]; i++) {
    assert_true(u[i] >= 0x20);
    assert_true(u[i] != 0x7F);
    if (u[i] == 0xC2)
      assert_true(u[i + 1] < 0x80 || u[i + 1] > 0x9F);
  }
}

static void plain_text_passes(void **state) {
  (void)state;
  check("send_email", -1, 0, "send_email", 10);
  check("POST /send-notification/{email}", -1, 0,
        "POST /send-notification/{email}", 31);
  check("", 5, 0, "", 0);
  check("caf\xC3\xA9", -1, 0, "caf\xC3\xA9", 4);
  check("caf\xC3\xA9", -1, SANITIZE_ASCII, "caf?", 4);
}

static void escape_sequences_are_neutralized(void **state) {
  (void)state;
  /* CSI: colour change and cursor movement. */
  check("\x1b[31mred\x1b[0m", -1, 0, "\xE2\x90\x9B[31mred\xE2\x90\x9B[0m", 12);
  check("\x1b[2J\x1b[H", -1, SANITIZE_ASCII, "^[[2J^[[H", 9);
  /* OSC 52 would set the clipboard; the BEL terminator too is shown. */
  const char *osc = "\x1b]52;c;ZXZpbA==\x07";
  char out[128];
  int cols = sanitize(osc, strlen(osc), -1, 0, out, sizeof out);
  assert_string_equal(out, "\xE2\x90\x9B]52;c;ZXZpbA==\xE2\x90\x87");
  assert_int_equal(cols, 16);
  assert_no_controls(out);
  /* The same with the ST terminator ESC \. */
  check("\x1b]0;title\x1b\\", -1, SANITIZE_ASCII, "^[]0;title^[\\", 13);
}

static void c1_controls_raw_and_encoded(void **state) {
  (void)state;
  /* Raw 0x9B is an 8-bit CSI to some terminals and invalid UTF-8. */
  check("a\x9b"
        "31mb",
        -1, 0,
        "a\xEF\xBF\xBD"
        "31mb",
        6);
  /* U+009B encoded as C2 9B, and NEL U+0085. */
  check("a\xC2\x9b"
        "31mb",
        -1, 0,
        "a\xEF\xBF\xBD"
        "31mb",
        6);
  check("x\xC2\x85y", -1, 0, "x\xEF\xBF\xBDy", 3);
  check("a\xC2\x9b"
        "b\x9b",
        -1, SANITIZE_ASCII, "a?b?", 4);
}

static void cr_bs_tab_newline_del(void **state) {
  (void)state;
  /* CR and BS would let a name overwrite what was printed before it. */
  check("ok\rFAILED", -1, 0,
        "ok\xE2\x90\x8D"
        "FAILED",
        9);
  check("abc\b\b\bxyz", -1, 0, "abc\xE2\x90\x88\xE2\x90\x88\xE2\x90\x88xyz", 9);
  check("a\tb\nc\x7f", -1, 0,
        "a\xE2\x90\x89"
        "b\xE2\x90\x8A"
        "c\xE2\x90\xA1",
        6);
  check("a\tb\nc\x7f", -1, SANITIZE_ASCII, "a^Ib^Jc^?", 9);
  /* An embedded NUL is data too. */
  check_n("a\0b", 3, -1, 0,
          "a\xE2\x90\x80"
          "b",
          3);
}

static void bidi_and_invisible_characters(void **state) {
  (void)state;
  /* RLO U+202E would display "fdp.exe" as "exe.pdf". */
  check("fdp\xE2\x80\xAE.exe", -1, 0, "fdp\xEF\xBF\xBD.exe", 8);
  /* LRI U+2066 ... PDI U+2069, ALM U+061C, RLM U+200F, ZWSP U+200B,
   * BOM U+FEFF, tag U+E0041. */
  check("\xE2\x81\xA6x\xE2\x81\xA9", -1, 0, "\xEF\xBF\xBDx\xEF\xBF\xBD", 3);
  check("\xD8\x9C\xE2\x80\x8F\xE2\x80\x8B\xEF\xBB\xBF\xF3\xA0\x81\x81", -1, 0,
        "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 5);
  check("a\xE2\x80\xAA"
        "b",
        -1, SANITIZE_ASCII, "a?b", 3);
}

static void invalid_utf8(void **state) {
  (void)state;
  /* Lone continuation, truncated sequence, overlong '/', surrogate
   * U+D800, past U+10FFFF, and bytes that never occur. */
  check("\x80", -1, 0, "\xEF\xBF\xBD", 1);
  check("a\xE4\xB8", -1, 0, "a\xEF\xBF\xBD\xEF\xBF\xBD", 3);
  check("\xC0\xAF", -1, 0, "\xEF\xBF\xBD\xEF\xBF\xBD", 2);
  check("\xED\xA0\x80", -1, SANITIZE_ASCII, "???", 3);
  check("\xF4\x90\x80\x80", -1, SANITIZE_ASCII, "????", 4);
  check("\xFE\xFF", -1, SANITIZE_ASCII, "??", 2);
  /* A valid sequence right after a bad byte is still decoded. */
  check("\xE4\xE4\xB8\xAD", -1, 0, "\xEF\xBF\xBD\xE4\xB8\xAD", 3);
}

static void cjk_counts_two_columns(void **state) {
  (void)state;
  /* "中文名" is 3 characters, 6 columns. */
  const char *cjk = "\xE4\xB8\xAD\xE6\x96\x87\xE5\x90\x8D";
  check(cjk, -1, 0, cjk, 6);
  assert_int_equal(sanitize_width(cjk, strlen(cjk), 0), 6);
  /* Truncation never splits a wide character: 5 columns hold two. */
  check(cjk, 5, 0, "\xE4\xB8\xAD\xE6\x96\x87", 4);
  check(cjk, 5, SANITIZE_ELLIPSIS, "\xE4\xB8\xAD\xE6\x96\x87\xE2\x80\xA6", 5);
  check(cjk, 4, SANITIZE_ELLIPSIS, "\xE4\xB8\xAD\xE2\x80\xA6", 3);
  /* Fullwidth Latin and Hangul are wide too; ASCII mode shows one '?'. */
  check("\xEF\xBC\xA1\xEA\xB0\x80", -1, 0, "\xEF\xBC\xA1\xEA\xB0\x80", 4);
  check(cjk, -1, SANITIZE_ASCII, "???", 3);
}

static void truncation_by_columns(void **state) {
  (void)state;
  check("send_notification", 8, 0, "send_not", 8);
  check("send_notification", 8, SANITIZE_ELLIPSIS, "send_no\xE2\x80\xA6", 8);
  check("send_notification", 8, SANITIZE_ELLIPSIS | SANITIZE_ASCII, "send_no~",
        8);
  check("exactly8", 8, SANITIZE_ELLIPSIS, "exactly8", 8);
  check("abc", 0, 0, "", 0);
  check("abc", 1, SANITIZE_ELLIPSIS, "\xE2\x80\xA6", 1);
  /* A placeholder is one column like any other character. */
  check("\x1b\x1b\x1b", 2, 0, "\xE2\x90\x9B\xE2\x90\x9B", 2);
  /* Caret forms are two columns and are not split. */
  check("a\x1b", 2, SANITIZE_ASCII, "a", 1);
}

static void small_output_buffer(void **state) {
  (void)state;
  char out[6];
  /* Room for 5 bytes: "中" (3) fits, "文" (3) does not. */
  int cols = sanitize("\xE4\xB8\xAD\xE6\x96\x87", 6, -1, 0, out, sizeof out);
  assert_string_equal(out, "\xE4\xB8\xAD");
  assert_int_equal(cols, 2);
  cols = sanitize("abcdefgh", 8, -1, SANITIZE_ELLIPSIS | SANITIZE_ASCII, out,
                  sizeof out);
  assert_string_equal(out, "abcd~");
  assert_int_equal(cols, 5);
  assert_int_equal(sanitize("abc", 3, -1, 0, out, 0), 0);
}

static void combining_marks(void **state) {
  (void)state;
  /* e + COMBINING ACUTE stays one column. */
  check("e\xCC\x81", -1, 0, "e\xCC\x81", 1);
  /* A mark with nothing before it would join the previous cell. */
  check("\xCC\x81x", -1, 0, "\xEF\xBF\xBDx", 2);
  /* At most two marks per character; the rest become visible. */
  check("e\xCC\x81\xCC\x82\xCC\x83", -1, 0, "e\xCC\x81\xCC\x82\xEF\xBF\xBD", 2);
  /* A mark after a control picture does not attach to it. */
  check("\x1b\xCC\x81", -1, 0, "\xE2\x90\x9B\xEF\xBF\xBD", 2);
  check("e\xCC\x81", -1, SANITIZE_ASCII, "e?", 2);
  /* Variation selector 16 is dropped: "❤️" is one column of "❤". */
  check("\xE2\x9D\xA4\xEF\xB8\x8F", -1, 0, "\xE2\x9D\xA4", 1);
}

static void next_reports_each_character(void **state) {
  (void)state;
  const char *s = "a\x1b\xE4\xB8\xAD";
  size_t len = strlen(s), pos = 0;
  int combining = -1, width;
  char buf[SANITIZE_CHAR_MAX];
  assert_int_equal(sanitize_next(s, len, &pos, 0, &combining, buf, &width), 1);
  assert_int_equal(width, 1);
  assert_int_equal(pos, 1);
  assert_int_equal(sanitize_next(s, len, &pos, 0, &combining, buf, &width), 3);
  assert_memory_equal(buf, "\xE2\x90\x9B", 3);
  assert_int_equal(width, 1);
  assert_int_equal(sanitize_next(s, len, &pos, 0, &combining, buf, &width), 3);
  assert_int_equal(width, 2);
  assert_int_equal(pos, len);
}

static void dup_and_every_byte(void **state) {
  (void)state;
  /* Every single byte, and every byte pair, gives control-free output. */
  char in[2];
  for (int a = 0; a < 256; a++) {
    in[0] = (char)a;
    for (int b = 0; b < 256; b++) {
      in[1] = (char)b;
      int cols;
      char *out = sanitize_dup(in, 2, -1, 0, &cols);
      assert_no_controls(out);
      assert_true(cols >= 1 && cols <= 4);
      free(out);
    }
  }
  int cols;
  char *out = sanitize_dup("x\x1b[1;1H", 7, 4, SANITIZE_ELLIPSIS, &cols);
  assert_string_equal(out, "x\xE2\x90\x9B[\xE2\x80\xA6");
  assert_int_equal(cols, 4);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plain_text_passes),
      cmocka_unit_test(escape_sequences_are_neutralized),
      cmocka_unit_test(c1_controls_raw_and_encoded),
      cmocka_unit_test(cr_bs_tab_newline_del),
      cmocka_unit_test(bidi_and_invisible_characters),
      cmocka_unit_test(invalid_utf8),
      cmocka_unit_test(cjk_counts_two_columns),
      cmocka_unit_test(truncation_by_columns),
      cmocka_unit_test(small_output_buffer),
      cmocka_unit_test(combining_marks),
      cmocka_unit_test(next_reports_each_character),
      cmocka_unit_test(dup_and_every_byte),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
