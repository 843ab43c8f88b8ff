/*
 * test_url - the one parser of endpoint URLs: every form of the grammar,
 * and each rejection with its own reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "url.h"

static void accepts_the_grammar(void **state) {
  (void)state;
  url u;
  assert_int_equal(tw__url_parse("tcp://127.0.0.1:7460", 0, &u), 0);
  assert_int_equal(u.scheme, URL_TCP);
  assert_string_equal(u.host, "127.0.0.1");
  assert_int_equal(u.port, 7460);
  assert_false(u.ipv6);
  assert_int_equal(tw__url_parse("tcp://collector.example:1", 0, &u), 0);
  assert_string_equal(u.host, "collector.example");
  assert_int_equal(u.port, 1);
  assert_int_equal(tw__url_parse("tcp://[::1]:65535", 0, &u), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 65535);
  assert_true(u.ipv6);
  assert_int_equal(tw__url_parse("tcp://[fe80::1%eth0]:80", 0, &u), 0);
  assert_string_equal(u.host, "fe80::1%eth0");
  assert_int_equal(tw__url_parse("unix:/run/taskwatch.sock", 0, &u), 0);
  assert_int_equal(u.scheme, URL_UNIX);
  assert_string_equal(u.path, "/run/taskwatch.sock");
  /* Port 0, the system's choice, when listening. */
  assert_int_equal(tw__url_parse("tcp://127.0.0.1:0", URL_LISTEN, &u), 0);
  assert_int_equal(u.port, 0);
}

static void formats_back(void **state) {
  (void)state;
  const char *texts[] = {"tcp://127.0.0.1:7460", "tcp://[::1]:9",
                         "unix:/tmp/x.sock", "tls://h:443"};
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    url u;
    char back[64];
    assert_int_equal(tw__url_parse(texts[i], URL_TLS_OK, &u), 0);
    tw__url_format(&u, back, sizeof(back));
    assert_string_equal(back, texts[i]);
  }
}

/* tls:// is a scheme of the grammar, refused until a transport exists. */
/* Loopback: what other hosts cannot reach (the collector refuses plaintext
 * elsewhere without --allow-plaintext). */
static void loopback_addresses(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int loopback;
  } cases[] = {
      {"tcp://127.0.0.1:1", 1},   {"tcp://127.1.2.3:1", 1},
      {"tls://[::1]:1", 1},       {"tcp://localhost:1", 1},
      {"unix:/tmp/c.sock", 1},    {"tcp://0.0.0.0:1", 0},
      {"tcp://[::]:1", 0},        {"tcp://10.0.0.1:1", 0},
      {"tls://128.0.0.1:1", 0},   {"tcp://[::ffff:127.0.0.1]:1", 0},
      {"tcp://example.com:1", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    url u;
    assert_int_equal(tw__url_parse(cases[i].text, URL_TLS_OK, &u), 0);
    if (tw__url_loopback(&u) != cases[i].loopback)
      fail_msg("%s: loopback %d", cases[i].text, !cases[i].loopback);
  }
}

static void tls_is_recognised_and_refused(void **state) {
  (void)state;
  url u;
  assert_int_equal(tw__url_parse("tls://collector:7461", 0, &u), URL_E_TLS);
  assert_int_equal(u.scheme, URL_TLS);
  assert_string_equal(u.host, "collector");
  assert_int_equal(u.port, 7461);
  assert_string_equal(tw__url_strerror(URL_E_TLS),
                      "tls:// is not supported yet (this build has no TLS)");
  assert_int_equal(tw__url_parse("tls://collector:7461", URL_TLS_OK, &u), 0);
  /* Its host and port are checked first. */
  assert_int_equal(tw__url_parse("tls://collector", 0, &u), URL_E_PORT_MISSING);
}

static void rejects_with_reasons(void **state) {
  (void)state;
  char long_host[300], long_path[200];
  snprintf(long_host, sizeof(long_host), "tcp://%0256d:80", 0);
  snprintf(long_path, sizeof(long_path), "unix:/%0107d", 0);
  const struct {
    const char *text;
    int want;
  } cases[] = {
      {"http://x:1", URL_E_SCHEME},
      {"", URL_E_SCHEME},
      {"TCP://x:1", URL_E_SCHEME},
      {"tcp://", URL_E_HOST_MISSING},
      {"tcp://:80", URL_E_HOST_MISSING},
      {"tcp://[]:80", URL_E_HOST_MISSING},
      {long_host, URL_E_HOST_LONG},
      {"tcp://a b:80", URL_E_HOST_CHAR},
      {"tcp://user@h:80", URL_E_HOST_CHAR},
      {"tcp://h/x:80", URL_E_HOST_CHAR},
      {"tcp://[::1:80", URL_E_BRACKET},
      {"tcp://[nothost]:80", URL_E_IPV6},
      {"tcp://[::1%]:80", URL_E_IPV6},
      {"tcp://::1:80", URL_E_IPV6_BARE},
      {"tcp://x", URL_E_PORT_MISSING},
      {"tcp://x:", URL_E_PORT_MISSING},
      {"tcp://[::1]", URL_E_PORT_MISSING},
      {"tcp://[::1]x", URL_E_PORT_NUMBER},
      {"tcp://h:1x", URL_E_PORT_NUMBER},
      {"tcp://h:+80", URL_E_PORT_NUMBER},
      {"tcp://h: 80", URL_E_PORT_NUMBER},
      {"tcp://h:80/", URL_E_PORT_NUMBER},
      {"tcp://h:70000", URL_E_PORT_RANGE},
      {"tcp://h:99999999999999999999", URL_E_PORT_RANGE},
      {"tcp://h:0", URL_E_PORT_ZERO},
      {"unix:", URL_E_PATH_MISSING},
      {"unix:rel/path", URL_E_PATH_RELATIVE},
      {long_path, URL_E_PATH_LONG},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    url u;
    int rc = tw__url_parse(cases[i].text, 0, &u);
    if (rc != cases[i].want)
      fail_msg("%s: got %d (%s), want %d (%s)", cases[i].text, rc,
               tw__url_strerror(rc), cases[i].want,
               tw__url_strerror(cases[i].want));
  }
  /* The longest path that fits is accepted. */
  url u;
  long_path[strlen(long_path) - 1] = '\0';
  assert_int_equal(tw__url_parse(long_path, 0, &u), 0);
  assert_int_equal(strlen(u.path), URL_PATH_MAX);
  assert_int_equal(tw__url_parse(NULL, 0, &u), URL_E_SCHEME);
}

/* Every code has its own text. */
static void every_reason_is_distinct(void **state) {
  (void)state;
  const int codes[] = {
#define URL__CODE(name, value, text) value,
      URL_ERROR_MAP(URL__CODE)
#undef URL__CODE
  };
  size_t n = sizeof(codes) / sizeof(codes[0]);
  for (size_t i = 0; i < n; i++) {
    assert_string_not_equal(tw__url_strerror(codes[i]), "malformed URL");
    for (size_t j = i + 1; j < n; j++)
      assert_string_not_equal(tw__url_strerror(codes[i]),
                              tw__url_strerror(codes[j]));
  }
  assert_string_equal(tw__url_strerror(-1000), "malformed URL");
  assert_string_equal(tw__url_strerror(0), "ok");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accepts_the_grammar),
      cmocka_unit_test(formats_back),
      cmocka_unit_test(tls_is_recognised_and_refused),
      cmocka_unit_test(loopback_addresses),
      cmocka_unit_test(rejects_with_reasons),
      cmocka_unit_test(every_reason_is_distinct),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
