/*
 * Unit tests of examples/notify_server/route.c: which route a request
 * target names, and how the {email} segment is decoded or refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static void test_healthz(void **state) {
  (void)state;
  char email[ROUTE_EMAIL_MAX + 1];
  assert_int_equal(route_match("GET", "/healthz", email), ROUTE_HEALTHZ);
  assert_int_equal(route_match("HEAD", "/healthz", email), ROUTE_HEALTHZ);
  assert_int_equal(route_match("POST", "/healthz", email), ROUTE_BAD_METHOD);
  assert_int_equal(route_match("GET", "/healthz/", email), ROUTE_NOT_FOUND);
}

static void test_notify_decodes_email(void **state) {
  (void)state;
  char email[ROUTE_EMAIL_MAX + 1];
  assert_int_equal(route_match("POST", "/send-notification/a@b.org", email),
                   ROUTE_NOTIFY);
  assert_string_equal(email, "a@b.org");
  assert_int_equal(
      route_match("POST", "/send-notification/x%40invalid%2Etest", email),
      ROUTE_NOTIFY);
  assert_string_equal(email, "x@invalid.test");
}

static void test_notify_refusals(void **state) {
  (void)state;
  char email[ROUTE_EMAIL_MAX + 1];
  assert_int_equal(route_match("GET", "/send-notification/a@b", email),
                   ROUTE_BAD_METHOD);
  assert_int_equal(route_match("POST", "/send-notification/", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a/b", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a%2Fb", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a%00b", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a%4", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a%+1", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notification/a%zz", email),
                   ROUTE_BAD_EMAIL);
  assert_int_equal(route_match("POST", "/send-notificatio", email),
                   ROUTE_NOT_FOUND);
}

static void test_email_length_bound(void **state) {
  (void)state;
  char email[ROUTE_EMAIL_MAX + 1];
  char path[64 + 3 * ROUTE_EMAIL_MAX];
  size_t prefix = strlen("/send-notification/");
  memcpy(path, "/send-notification/", prefix);
  memset(path + prefix, 'a', ROUTE_EMAIL_MAX);
  path[prefix + ROUTE_EMAIL_MAX] = '\0';
  assert_int_equal(route_match("POST", path, email), ROUTE_NOTIFY);
  assert_int_equal(strlen(email), ROUTE_EMAIL_MAX);
  path[prefix + ROUTE_EMAIL_MAX] = 'a';
  path[prefix + ROUTE_EMAIL_MAX + 1] = '\0';
  assert_int_equal(route_match("POST", path, email), ROUTE_BAD_EMAIL);
  /* Escapes count once each in the decoded length. */
  for (size_t i = 0; i < ROUTE_EMAIL_MAX; i++)
    memcpy(path + prefix + 3 * i, "%41", 3);
  path[prefix + 3 * ROUTE_EMAIL_MAX] = '\0';
  assert_int_equal(route_match("POST", path, email), ROUTE_NOTIFY);
  assert_int_equal(strlen(email), ROUTE_EMAIL_MAX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_healthz),
      cmocka_unit_test(test_notify_decodes_email),
      cmocka_unit_test(test_notify_refusals),
      cmocka_unit_test(test_email_length_bound),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
