/*
 * test_json - the JSON writer: commas and colons in nested objects and
 * arrays, every kind of value, strings with hostile bytes, and the
 * integers at their limits (also as OTLP's decimal strings).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static void nesting_and_commas(void **state) {
  (void)state;
  format_buf b;
  json_writer w;
  format_buf_init(&b);
  json_init(&w, &b);
  json_begin_object(&w);
  json_key(&w, "a");
  json_begin_array(&w);
  json_end_array(&w);
  json_key(&w, "b");
  json_begin_array(&w);
  json_int(&w, 1);
  json_begin_object(&w);
  json_end_object(&w);
  json_begin_array(&w);
  json_null(&w);
  json_bool(&w, 1);
  json_bool(&w, 0);
  json_end_array(&w);
  json_cstring(&w, "x");
  json_end_array(&w);
  json_key(&w, "c");
  json_begin_object(&w);
  json_key(&w, "d");
  json_fixed(&w, 12.345, 2);
  json_key(&w, "e");
  json_cstring(&w, NULL);
  json_end_object(&w);
  json_end_object(&w);
  assert_string_equal(format_buf_str(&b),
                      "{\"a\":[],\"b\":[1,{},[null,true,false],\"x\"],"
                      "\"c\":{\"d\":12.35,\"e\":null}}");
  assert_int_equal(w.depth, 0);
  format_buf_fini(&b);
}

static void values(void **state) {
  (void)state;
  format_buf b;
  json_writer w;
  format_buf_init(&b);
  format_buf_puts(&b, "prefix ");
  json_init(&w, &b);
  json_begin_array(&w);
  json_int(&w, INT64_MIN);
  json_int(&w, INT64_MAX);
  json_int(&w, 0);
  json_uint(&w, UINT64_MAX);
  json_int_string(&w, INT64_C(1700000000123456789));
  json_int_string(&w, -5);
  json_string(&w, "q\"\\\n\x01\xff", 6);
  json_string(&w, "", 0);
  json_end_array(&w);
  assert_string_equal(format_buf_str(&b),
                      "prefix [-9223372036854775808,9223372036854775807,0,"
                      "18446744073709551615,\"1700000000123456789\",\"-5\","
                      "\"q\\\"\\\\\\n\\u0001\\ufffd\",\"\"]");
  format_buf_fini(&b);
}

/* A second writer on the same buffer starts a new top-level value. */
static void writers_in_turn(void **state) {
  (void)state;
  format_buf b;
  json_writer w;
  format_buf_init(&b);
  for (int i = 0; i < 2; i++) {
    json_init(&w, &b);
    json_begin_object(&w);
    json_key(&w, "n");
    json_int(&w, i);
    json_end_object(&w);
    format_buf_putc(&b, '\n');
  }
  assert_string_equal(format_buf_str(&b), "{\"n\":0}\n{\"n\":1}\n");
  format_buf_fini(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(nesting_and_commas),
      cmocka_unit_test(values),
      cmocka_unit_test(writers_in_turn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
