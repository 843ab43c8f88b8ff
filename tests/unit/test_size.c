/*
 * test_size - byte counts with units: every suffix, both cases, the
 * limits, and what is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "size.h"

static uint64_t parsed(const char *text) {
  uint64_t v = 12345;
  assert_int_equal(tw__size_parse(text, UINT64_MAX, &v), 0);
  return v;
}

static void units(void **state) {
  (void)state;
  assert_true(parsed("0") == 0);
  assert_true(parsed("8388608") == 8388608);
  assert_true(parsed("100B") == 100);
  assert_true(parsed("512k") == 512 * 1024);
  assert_true(parsed("512K") == 512 * 1024);
  assert_true(parsed("512KiB") == 512 * 1024);
  assert_true(parsed("512kB") == 512000);
  assert_true(parsed("8M") == 8 << 20);
  assert_true(parsed("8MiB") == 8 << 20);
  assert_true(parsed("8mib") == 8 << 20);
  assert_true(parsed("8MB") == 8000000);
  assert_true(parsed("2G") == UINT64_C(2) << 30);
  assert_true(parsed("2GiB") == UINT64_C(2) << 30);
  assert_true(parsed("2GB") == UINT64_C(2000000000));
  assert_true(parsed("3T") == UINT64_C(3) << 40);
  assert_true(parsed("3TiB") == UINT64_C(3) << 40);
  assert_true(parsed("3TB") == UINT64_C(3000000000000));
  assert_true(parsed("18446744073709551615") == UINT64_MAX);
}

static void refused(void **state) {
  (void)state;
  const char *bad[] = {"",
                       "MiB",
                       "-1",
                       "+1",
                       " 1",
                       "1 ",
                       "1.5M",
                       "1e6",
                       "8Mi",
                       "8MiBs",
                       "8 MiB",
                       "8P",
                       "0x10",
                       "12abc",
                       "18446744073709551616",
                       "17179869184T"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t v = 7;
    assert_int_equal(tw__size_parse(bad[i], UINT64_MAX, &v), -1);
    assert_true(v == 7);
  }
  uint64_t v = 7;
  assert_int_equal(tw__size_parse(NULL, UINT64_MAX, &v), -1);
}

static void limit(void **state) {
  (void)state;
  uint64_t v = 0;
  assert_int_equal(tw__size_parse("1MiB", 1 << 20, &v), 0);
  assert_true(v == 1 << 20);
  assert_int_equal(tw__size_parse("1025KiB", 1 << 20, &v), -1);
  assert_true(v == 1 << 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(units),
      cmocka_unit_test(refused),
      cmocka_unit_test(limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
