/*
 * test_format - times, durations, JSON strings and CSV fields: known
 * values both ways, the calendar's corners, and hostile bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "format.h"

#define T0 INT64_C(1795341600000000) /* 2026-11-22T10:00:00Z */

static void utc_times(void **state) {
  (void)state;
  char buf[FORMAT_TIME_SIZE];
  assert_int_equal(format_time_utc(T0, buf, sizeof(buf)), 27);
  assert_string_equal(buf, "2026-11-22T10:00:00.000000Z");
  format_time_utc(T0 + 123456, buf, sizeof(buf));
  assert_string_equal(buf, "2026-11-22T10:00:00.123456Z");
  format_time_utc(0, buf, sizeof(buf));
  assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
  format_time_utc(-1, buf, sizeof(buf));
  assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
  /* 2024-02-29T23:59:59.5Z, a leap day; 2000-03-01 after a 400-year leap. */
  format_time_utc(INT64_C(1709251199500000), buf, sizeof(buf));
  assert_string_equal(buf, "2024-02-29T23:59:59.500000Z");
  format_time_utc(INT64_C(951868800000000), buf, sizeof(buf));
  assert_string_equal(buf, "2000-03-01T00:00:00.000000Z");
  /* Too small a buffer, and years outside 0000-9999. */
  assert_int_equal(format_time_utc(T0, buf, 10), -1);
  assert_int_equal(format_time_utc(INT64_MAX, buf, sizeof(buf)), -1);
  assert_int_equal(format_time_utc(INT64_MIN, buf, sizeof(buf)), -1);
}

static void local_times(void **state) {
  (void)state;
  char buf[FORMAT_TIME_SIZE];
  setenv("TZ", "UTC0", 1);
  tzset();
  format_time_local(T0, buf, sizeof(buf));
  assert_string_equal(buf, "2026-11-22T10:00:00.000000Z");
  /* POSIX TZ: "CET-1" is one hour east of UTC. */
  setenv("TZ", "CET-1", 1);
  tzset();
  format_time_local(T0 + 7, buf, sizeof(buf));
  assert_string_equal(buf, "2026-11-22T11:00:00.000007+01:00");
  setenv("TZ", "XST+5:30", 1);
  tzset();
  format_time_local(T0, buf, sizeof(buf));
  assert_string_equal(buf, "2026-11-22T04:30:00.000000-05:30");
  int64_t back;
  assert_int_equal(format_parse_time(buf, 0, &back), 0);
  assert_true(back == T0);
  unsetenv("TZ");
}

static int64_t parsed_time(const char *text) {
  int64_t v = 0;
  assert_int_equal(format_parse_time(text, T0, &v), 0);
  return v;
}

static void parse_times(void **state) {
  (void)state;
  assert_true(parsed_time("2026-11-22T10:00:00Z") == T0);
  assert_true(parsed_time("2026-11-22t10:00:00z") == T0);
  assert_true(parsed_time("2026-11-22 10:00:00") == T0);
  assert_true(parsed_time("2026-11-22T10:00") == T0);
  assert_true(parsed_time("2026-11-22T10:00:00.5Z") == T0 + 500000);
  assert_true(parsed_time("2026-11-22T10:00:00.1234567Z") == T0 + 123456);
  assert_true(parsed_time("2026-11-22T12:30:00+02:30") == T0);
  assert_true(parsed_time("2026-11-22T09:00:00-01:00") == T0);
  assert_true(parsed_time("2026-11-22") == T0 - INT64_C(36000000000));
  assert_true(parsed_time("now") == T0);
  assert_true(parsed_time("1h") == T0 - INT64_C(3600000000));
  assert_true(parsed_time("1.5s") == T0 - 1500000);
  assert_true(parsed_time("2024-02-29") == INT64_C(1709164800000000));
  int64_t v;
  const char *bad[] = {"",
                       "2026-11-22T",
                       "2026-11-22T10",
                       "2026-11-22T10:00:00Zjunk",
                       "2026-11-31",
                       "2025-02-29",
                       "2026-00-10",
                       "2026-11-22T24:00:00Z",
                       "2026-11-22T10:60:00Z",
                       "2026-11-22T10:00:00+2:00",
                       "2026-11-22T10:00:00.Z",
                       "26-11-22",
                       "-1h",
                       "yesterday",
                       "99999999999999999999d"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_parse_time(bad[i], T0, &v) == 0)
      fail_msg("'%s' parsed", bad[i]);
}

static int64_t parsed_duration(const char *text) {
  int64_t v = -1;
  if (format_parse_duration(text, &v) != 0)
    fail_msg("'%s' did not parse", text);
  return v;
}

static void parse_durations(void **state) {
  (void)state;
  assert_true(parsed_duration("0") == 0);
  assert_true(parsed_duration("200ms") == 200000);
  assert_true(parsed_duration("1.5s") == 1500000);
  assert_true(parsed_duration("850us") == 850);
  assert_true(parsed_duration("850\xc2\xb5s") == 850);
  assert_true(parsed_duration("2m05s") == 125000000);
  assert_true(parsed_duration("2h30m") == INT64_C(9000000000));
  assert_true(parsed_duration("1d") == INT64_C(86400000000));
  assert_true(parsed_duration("0.000001s") == 1);
  assert_true(parsed_duration("0.0000009s") == 0);
  assert_true(parsed_duration("12.5ms") == 12500);
  int64_t v;
  const char *bad[] = {"",
                       "10",
                       "ms",
                       "1.s",
                       ".5s",
                       "-1s",
                       "1 s",
                       "1sx",
                       "1x",
                       "1e3s",
                       "s1",
                       "1ss",
                       "106751991167d",
                       "99999999999999999999us",
                       "9223372036854775807us1us"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_parse_duration(bad[i], &v) == 0)
      fail_msg("'%s' parsed", bad[i]);
}

static const char *dur(int64_t us) {
  static char buf[32];
  format_duration(us, buf, sizeof(buf));
  return buf;
}

static void print_durations(void **state) {
  (void)state;
  assert_string_equal(dur(0), "0us");
  assert_string_equal(dur(850), "850us");
  assert_string_equal(dur(999), "999us");
  assert_string_equal(dur(1000), "1.00ms");
  assert_string_equal(dur(12345), "12.3ms");
  assert_string_equal(dur(200000), "200ms");
  assert_string_equal(dur(999999), "1.00s");
  assert_string_equal(dur(1500000), "1.50s");
  assert_string_equal(dur(59990000), "60.0s");
  assert_string_equal(dur(60000000), "1m00s");
  assert_string_equal(dur(125000000), "2m05s");
  assert_string_equal(dur(INT64_C(11220000000)), "3h07m");
  assert_string_equal(dur(INT64_C(187200000000)), "2d04h");
  assert_string_equal(dur(-1500), "-1.50ms");
  assert_string_equal(dur(INT64_MIN), "-106751991d04h");
  /* What it prints parses back to about the same. */
  int64_t v;
  assert_int_equal(format_parse_duration(dur(125000000), &v), 0);
  assert_true(v == 125000000);
  char small[4];
  assert_int_equal(format_duration(1500000, small, sizeof(small)), 3);
  assert_string_equal(small, "1.5");
}

static const char *json(const char *s, size_t n) {
  static format_buf b;
  format_buf_fini(&b);
  format_json_string(&b, s, n);
  return format_buf_str(&b);
}

static void json_strings(void **state) {
  (void)state;
  assert_string_equal(json("", 0), "\"\"");
  assert_string_equal(json("send_email", 10), "\"send_email\"");
  assert_string_equal(json("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
  assert_string_equal(json("l1\nl2\tx\r", 8), "\"l1\\nl2\\tx\\r\"");
  assert_string_equal(json("\x1b[31m\x07", 6), "\"\\u001b[31m\\u0007\"");
  assert_string_equal(json("\0x", 2), "\"\\u0000x\"");
  assert_string_equal(json("\x7f", 1), "\"\\u007f\"");
  /* UTF-8 passes; C1 controls and line separators are escaped. */
  assert_string_equal(json("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80", 15),
                      "\"na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80\"");
  assert_string_equal(json("\xc2\x9b", 2), "\"\\u009b\"");
  assert_string_equal(json("\xe2\x80\xa8", 3), "\"\\u2028\"");
  /* Invalid UTF-8: stray bytes, overlong, surrogates, truncated, > U+10FFFF. */
  assert_string_equal(json("\xff", 1), "\"\\ufffd\"");
  assert_string_equal(json("\xc0\xaf", 2), "\"\\ufffd\\ufffd\"");
  assert_string_equal(json("\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\"");
  assert_string_equal(json("a\xe2\x82", 3), "\"a\\ufffd\\ufffd\"");
  assert_string_equal(json("\xf4\x90\x80\x80", 4),
                      "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
  json(NULL, 0);
}

static const char *csv(const char *s) {
  static format_buf b;
  format_buf_fini(&b);
  format_csv_field(&b, s, strlen(s));
  return format_buf_str(&b);
}

static void csv_fields(void **state) {
  (void)state;
  assert_string_equal(csv(""), "");
  assert_string_equal(csv("plain"), "plain");
  assert_string_equal(csv("a,b"), "\"a,b\"");
  assert_string_equal(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
  assert_string_equal(csv("l1\nl2"), "\"l1\nl2\"");
  assert_string_equal(csv("cr\r"), "\"cr\r\"");
  assert_string_equal(csv(" padded "), "\" padded \"");
  assert_string_equal(csv("na\xc3\xafve"), "na\xc3\xafve");
  csv("");
}

static void buffer(void **state) {
  (void)state;
  format_buf b;
  format_buf_init(&b);
  assert_string_equal(format_buf_str(&b), "");
  for (int i = 0; i < 1000; i++)
    format_buf_printf(&b, "%d,", i);
  assert_int_equal(b.len, strlen(b.data));
  assert_non_null(strstr(b.data, ",999,"));
  format_buf_reset(&b);
  assert_string_equal(format_buf_str(&b), "");
  format_buf_putc(&b, 'x');
  format_buf_puts(&b, "yz");
  assert_string_equal(format_buf_str(&b), "xyz");
  format_buf_fini(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(utc_times),       cmocka_unit_test(local_times),
      cmocka_unit_test(parse_times),     cmocka_unit_test(parse_durations),
      cmocka_unit_test(print_durations), cmocka_unit_test(json_strings),
      cmocka_unit_test(csv_fields),      cmocka_unit_test(buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
