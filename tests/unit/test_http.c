/*
 * test_http - the metrics endpoint's request parser: whole requests in one
 * piece or byte by byte, the target without its query string, and each
 * way a request is refused (malformed, too long a target, too large
 * headers, a body, an upgrade), which is its answer's status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static int feed_all(http_request *r, const char *text) {
  http_request_init(r);
  return http_request_feed(r, text, strlen(text));
}

static void good_requests(void **state) {
  (void)state;
  http_request r;
  assert_int_equal(feed_all(&r, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                "Accept: */*\r\n\r\n"),
                   HTTP_OK);
  assert_int_equal(r.method, HTTP_GET);
  assert_string_equal(r.path, "/metrics");
  assert_int_equal(feed_all(&r, "HEAD /metrics?x=1&y HTTP/1.0\r\n\r\n"),
                   HTTP_OK);
  assert_int_equal(r.method, HTTP_HEAD);
  assert_string_equal(r.path, "/metrics");
  /* Another method parses; the server answers it with 405. */
  assert_int_equal(feed_all(&r, "DELETE / HTTP/1.1\r\n\r\n"), HTTP_OK);
  assert_int_equal(r.method, HTTP_DELETE);
  /* Bytes after the request (a pipelined one) are not looked at. */
  assert_int_equal(feed_all(&r, "GET /a HTTP/1.1\r\n\r\nGARBAGE\x01\x02"),
                   HTTP_OK);
  assert_string_equal(r.path, "/a");
}

static void byte_by_byte(void **state) {
  (void)state;
  const char text[] = "GET /metrics?name[]=a HTTP/1.1\r\nHost: localhost\r\n"
                      "User-Agent: Prometheus/2.42.0\r\n\r\n";
  http_request r;
  http_request_init(&r);
  /* Nothing read is not the end of the request. */
  assert_int_equal(http_request_feed(&r, text, 0), HTTP_NEED_MORE);
  for (size_t i = 0; i < sizeof(text) - 2; i++)
    assert_int_equal(http_request_feed(&r, text + i, 1), HTTP_NEED_MORE);
  assert_int_equal(http_request_feed(&r, text + sizeof(text) - 2, 1), HTTP_OK);
  assert_string_equal(r.path, "/metrics");
  /* Once done, more bytes change nothing. */
  assert_int_equal(http_request_feed(&r, "xyz", 3), HTTP_OK);
}

static void refused_requests(void **state) {
  (void)state;
  http_request r;
  assert_int_equal(feed_all(&r, "garbage\r\n\r\n"), HTTP_BAD_REQUEST);
  assert_int_equal(r.status, HTTP_BAD_REQUEST);
  /* A refused request stays refused. */
  assert_int_equal(http_request_feed(&r, "GET / HTTP/1.1\r\n\r\n", 18),
                   HTTP_BAD_REQUEST);
  assert_int_equal(feed_all(&r, "GET / HTTP/1.1\r\nHost\r\n\r\n"),
                   HTTP_BAD_REQUEST);
  assert_int_equal(
      feed_all(&r, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
      HTTP_BODY);
  assert_int_equal(feed_all(&r, "GET / HTTP/1.1\r\nTransfer-Encoding: "
                                "chunked\r\n\r\n0\r\n\r\n"),
                   HTTP_BODY);
  assert_int_equal(feed_all(&r, "GET / HTTP/1.1\r\nConnection: Upgrade\r\n"
                                "Upgrade: websocket\r\n\r\n"),
                   HTTP_BAD_REQUEST);
  static char big[HTTP_MAX_REQUEST * 2];
  static const char tail[] = " HTTP/1.1\r\n\r\n";
  /* A target longer than HTTP_MAX_PATH. */
  memcpy(big, "GET /", 5);
  memset(big + 5, 'a', HTTP_MAX_PATH + 10);
  memcpy(big + 5 + HTTP_MAX_PATH + 10, tail, sizeof(tail));
  assert_int_equal(feed_all(&r, big), HTTP_URI_TOO_LONG);
  /* Headers that never end within HTTP_MAX_REQUEST, in one piece and in
   * small ones. */
  static const char head[] = "GET / HTTP/1.1\r\nX: ";
  memcpy(big, head, sizeof(head) - 1);
  memset(big + sizeof(head) - 1, 'b', sizeof(big) - sizeof(head));
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(feed_all(&r, big), HTTP_HEADERS_TOO_LARGE);
  http_request_init(&r);
  int rc = HTTP_NEED_MORE;
  size_t at = 0;
  while (rc == HTTP_NEED_MORE && at < sizeof(big) - 100) {
    rc = http_request_feed(&r, big + at, 100);
    at += 100;
  }
  assert_int_equal(rc, HTTP_HEADERS_TOO_LARGE);
  assert_true(at <= HTTP_MAX_REQUEST + 100);
}

static void status_table(void **state) {
  (void)state;
  assert_int_equal(http_status_code(HTTP_OK), 200);
  assert_string_equal(http_status_reason(HTTP_TIMEOUT), "Request Timeout");
  assert_int_equal(http_status_code(HTTP_HEADERS_TOO_LARGE), 431);
  assert_int_equal(http_status_code(-1), 500);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(good_requests),
      cmocka_unit_test(byte_by_byte),
      cmocka_unit_test(refused_requests),
      cmocka_unit_test(status_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
