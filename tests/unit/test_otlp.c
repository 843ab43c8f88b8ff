/*
 * test_otlp - the OTLP export's pure parts: trace and span ids (the same
 * for the same store ids, different across batches, tasks and agent
 * instances, never zero), the JSON of a batch (span per batch and per
 * task, parents, zero-length spans, the failure's status and exception
 * event, resources per agent, the request's link), W3C traceparent,
 * Retry-After, the OTEL_EXPORTER_OTLP_HEADERS list and the traces URL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "otlp.h"
#include "otlp_json.h"
#include "schema.h"

static const uint8_t inst1[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                  9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t inst2[16] = {16, 15, 14, 13, 12, 11, 10, 9,
                                  8,  7,  6,  5,  4,  3,  2,  1};

static void hex(const uint8_t *id, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void ids(void **state) {
  (void)state;
  uint8_t a[16], b[16], s1[8], s2[8], zero[16] = {0};
  int64_t batch = schema_global_id(3, 77);
  otlp_trace_id(inst1, batch, a);
  otlp_trace_id(inst1, batch, b);
  assert_memory_equal(a, b, 16);
  /* The agent's row id does not matter, only its instance and local id. */
  otlp_trace_id(inst1, schema_global_id(9, 77), b);
  assert_memory_equal(a, b, 16);
  otlp_trace_id(inst1, schema_global_id(3, 78), b);
  assert_memory_not_equal(a, b, 16);
  otlp_trace_id(inst2, batch, b);
  assert_memory_not_equal(a, b, 16);
  assert_memory_not_equal(a, zero, 16);
  otlp_span_id(inst1, batch, 0, s1);
  otlp_span_id(inst1, batch, 1, s2); /* a task with the same local id */
  assert_memory_not_equal(s1, s2, 8);
  otlp_span_id(inst1, batch, 0, s2);
  assert_memory_equal(s1, s2, 8);
  for (int i = 0; i < 10000; i++) {
    otlp_span_id(zero, i, i & 1, s1);
    assert_memory_not_equal(s1, zero, 8);
  }
}

static void traceparents(void **state) {
  (void)state;
  uint8_t t[16], s[8];
  const char good[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  assert_int_equal(otlp_parse_traceparent(good, strlen(good), t, s), 0);
  assert_int_equal(t[0], 0x4b);
  assert_int_equal(t[15], 0x36);
  assert_int_equal(s[7], 0xb7);
  const char later[] =
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
  assert_int_equal(otlp_parse_traceparent(later, strlen(later), t, s), 0);
  const char *bad[] = {
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
      "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(otlp_parse_traceparent(bad[i], strlen(bad[i]), t, s), -1);
}

static reader_task task(int64_t id, int pos, const char *name, int status) {
  reader_task t;
  memset(&t, 0, sizeof(t));
  t.id = schema_global_id(1, (uint64_t)id);
  t.batch = schema_global_id(1, 50);
  t.agent = 1;
  t.thread = 99;
  t.pid = 4242;
  t.position = pos;
  t.status = status;
  t.mode = 1;
  t.enqueued_at = 1000;
  t.started_at = t.finished_at = t.wait_us = t.run_us = READER_NULL;
  t.skipped_after = READER_NULL;
  t.name = (reader_text){name, strlen(name)};
  t.service = (reader_text){"api", 3};
  t.host = (reader_text){"web1", 4};
  return t;
}

static const char *find(const char *text, const char *what) {
  const char *p = strstr(text, what);
  if (p == NULL)
    fail_msg("not in the JSON: %s", what);
  return p;
}

static void encodes_a_batch(void **state) {
  (void)state;
  reader_task t[4];
  t[0] = task(51, 0, "write_notification", SCHEMA_SUCCEEDED);
  t[0].started_at = 2000, t[0].finished_at = 5000, t[0].wait_us = 1000;
  t[1] = task(52, 1, "send_email", SCHEMA_FAILED);
  t[1].started_at = 5000, t[1].finished_at = 6000;
  t[1].error_type = (reader_text){"ValueError", 10};
  t[1].error_message = (reader_text){"bad \"address\"", 13};
  t[1].error_detail = (reader_text){"Traceback\n  line 1", 18};
  t[2] = task(53, 2, "write_log", SCHEMA_SKIPPED);
  t[2].finished_at = 6001;
  t[2].skipped_after = t[1].id;
  t[3] = task(54, 3, "cleanup", SCHEMA_LOST);
  t[3].started_at = 6100, t[3].finished_at = 9000;
  t[3].drop_reason = (reader_text){"agent disconnected", 18};
  const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  otlp_batch b = {0};
  b.id = t[0].batch;
  memcpy(b.instance, inst1, 16);
  b.label = (reader_text){"POST /send", 10};
  b.created_at = 900;
  b.traceparent = (reader_text){tp, strlen(tp)};
  b.tasks = t;
  b.ntasks = 4;
  format_buf out;
  format_buf_init(&out);
  assert_int_equal(otlp_encode(&out, &b, 1), 5);
  const char *j = out.data;
  uint8_t trace[16], bspan[8], tspan[8];
  char want[200], h[40];
  otlp_trace_id(inst1, b.id, trace);
  otlp_span_id(inst1, b.id, 0, bspan);
  hex(trace, 16, h);
  snprintf(want, sizeof(want), "{\"traceId\":\"%s\",\"spanId\":\"", h);
  find(j, want);
  hex(bspan, 8, h);
  /* The batch span: label, creation to the last end, ERROR (a task
   * failed), the link to the request. */
  snprintf(want, sizeof(want),
           "\"spanId\":\"%s\",\"name\":\"POST /send\",\"kind\":1,"
           "\"startTimeUnixNano\":\"900000\",\"endTimeUnixNano\":\"9000000\"",
           h);
  find(j, want);
  find(j, "\"links\":[{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
          "\"spanId\":\"00f067aa0ba902b7\"");
  find(j, "\"status\":{\"code\":2,\"message\":\"a task failed\"}");
  /* Every task span has the batch span as parent. */
  snprintf(want, sizeof(want), "\"parentSpanId\":\"%s\"", h);
  int parents = 0;
  for (const char *p = j; (p = strstr(p, want)) != NULL; p++)
    parents++;
  assert_int_equal(parents, 4);
  otlp_span_id(inst1, t[1].id, 1, tspan);
  hex(tspan, 8, h);
  snprintf(want, sizeof(want), "\"spanId\":\"%s\",\"parentSpanId\":", h);
  find(j, want);
  /* The failure: ERROR status with its message, an exception event. */
  find(j, "\"name\":\"send_email\",\"kind\":5,\"startTimeUnixNano\":"
          "\"5000000\",\"endTimeUnixNano\":\"6000000\"");
  find(j, "\"events\":[{\"timeUnixNano\":\"6000000\",\"name\":\"exception\","
          "\"attributes\":[{\"key\":\"exception.type\",\"value\":{"
          "\"stringValue\":\"ValueError\"}},{\"key\":\"exception.message\","
          "\"value\":{\"stringValue\":\"bad \\\"address\\\"\"}},{\"key\":"
          "\"exception.stacktrace\",\"value\":{\"stringValue\":"
          "\"Traceback\\n  line 1\"}}]}],\"status\":{\"code\":2,"
          "\"message\":\"bad \\\"address\\\"\"}");
  /* Skipped and lost: zero-length, with their cause and reason. */
  find(j, "\"name\":\"write_log\",\"kind\":5,\"startTimeUnixNano\":"
          "\"6001000\",\"endTimeUnixNano\":\"6001000\"");
  snprintf(want, sizeof(want),
           "{\"key\":\"taskwatch.task.skip_cause\",\"value\":{\"intValue\":"
           "\"%lld\"}}",
           (long long)t[1].id);
  find(j, want);
  find(j, "\"name\":\"cleanup\",\"kind\":5,\"startTimeUnixNano\":"
          "\"9000000\",\"endTimeUnixNano\":\"9000000\"");
  find(j, "{\"key\":\"taskwatch.task.status\",\"value\":{\"stringValue\":"
          "\"lost\"}}");
  find(j, "{\"key\":\"taskwatch.task.drop_reason\",\"value\":{"
          "\"stringValue\":\"agent disconnected\"}}");
  find(j, "{\"key\":\"taskwatch.task.position\",\"value\":{\"intValue\":"
          "\"1\"}}");
  find(j, "{\"key\":\"taskwatch.task.mode\",\"value\":{\"stringValue\":"
          "\"threadpool\"}}");
  /* The resource: service, host, pid. */
  find(j, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
          "\"service.name\",\"value\":{\"stringValue\":\"api\"}},{\"key\":"
          "\"host.name\",\"value\":{\"stringValue\":\"web1\"}},{\"key\":"
          "\"process.pid\",\"value\":{\"intValue\":\"4242\"}}]}");
  format_buf_fini(&out);
}

/* Batches of two agents, interleaved: one resourceSpans each. */
static void one_resource_per_agent(void **state) {
  (void)state;
  reader_task t[3];
  t[0] = task(1, 0, "a", SCHEMA_SUCCEEDED);
  t[1] = task(2, 0, "b", SCHEMA_DROPPED);
  t[1].agent = 2;
  t[1].service = (reader_text){"worker", 6};
  t[2] = task(3, 0, "c", SCHEMA_SUCCEEDED);
  otlp_batch b[3];
  memset(b, 0, sizeof(b));
  for (int i = 0; i < 3; i++) {
    b[i].id = schema_global_id(t[i].agent, (uint64_t)(100 + i));
    memcpy(b[i].instance, t[i].agent == 1 ? inst1 : inst2, 16);
    b[i].created_at = READER_NULL;
    b[i].tasks = &t[i];
    b[i].ntasks = 1;
  }
  format_buf out;
  format_buf_init(&out);
  assert_int_equal(otlp_encode(&out, b, 3), 6);
  int resources = 0;
  for (const char *p = out.data; (p = strstr(p, "\"resource\":")) != NULL; p++)
    resources++;
  assert_int_equal(resources, 2);
  const char *api = find(out.data, "\"stringValue\":\"api\"");
  const char *worker = find(out.data, "\"stringValue\":\"worker\"");
  assert_true(api < worker);
  /* Without a batch row the batch span is named "batch" and starts at
   * its first enqueue; a succeeded task has no status code. */
  find(out.data, "\"name\":\"batch\",\"kind\":1,\"startTimeUnixNano\":"
                 "\"1000000\"");
  format_buf_fini(&out);
}

static void retry_after(void **state) {
  (void)state;
  assert_int_equal(otlp_retry_after("5", 0), 5);
  assert_int_equal(otlp_retry_after(" 120 \r\n", 0), 120);
  assert_int_equal(otlp_retry_after("-1", 0), -1);
  assert_int_equal(otlp_retry_after("soon", 0), -1);
  assert_int_equal(otlp_retry_after("5x", 0), -1);
  /* Wed, 21 Oct 2015 07:28:00 GMT is 1445412480. */
  assert_int_equal(
      otlp_retry_after("Wed, 21 Oct 2015 07:28:00 GMT\r\n", 1445412480 - 30),
      30);
  assert_int_equal(
      otlp_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 30), 0);
}

static void headers(void **state) {
  (void)state;
  char *out[4];
  const char *why = NULL;
  assert_int_equal(
      otlp_parse_headers(" api-key = s3cret ,X-Scope-OrgID=a%20b%2Cc", out, 4,
                         &why),
      2);
  assert_string_equal(out[0], "api-key: s3cret");
  assert_string_equal(out[1], "X-Scope-OrgID: a b,c");
  free(out[0]);
  free(out[1]);
  assert_int_equal(otlp_parse_headers("", out, 4, &why), 0);
  const char *bad[] = {"novalue", "=x",   "a b=c", "a=%zz",
                       "a=%0a",   "a=%4", "a:b=c", "a=b,c=d,e=f,g=h,i=j"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    why = NULL;
    assert_int_equal(otlp_parse_headers(bad[i], out, 4, &why), -1);
    assert_non_null(why);
  }
}

static void traces_urls(void **state) {
  (void)state;
  const char *cases[][2] = {
      {"http://collector:4318", "http://collector:4318/v1/traces"},
      {"http://collector:4318/", "http://collector:4318/v1/traces"},
      {"https://otel.example/otlp", "https://otel.example/otlp/v1/traces"},
      {"http://h:1/v1/traces", "http://h:1/v1/traces"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *url = otlp_traces_url(cases[i][0]);
    assert_string_equal(url, cases[i][1]);
    free(url);
  }
  const char *bad[] = {"ftp://x", "http://", "collector:4318", "http:///x",
                       "http://a b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_null(otlp_traces_url(bad[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ids),
      cmocka_unit_test(traceparents),
      cmocka_unit_test(encodes_a_batch),
      cmocka_unit_test(one_resource_per_agent),
      cmocka_unit_test(retry_after),
      cmocka_unit_test(headers),
      cmocka_unit_test(traces_urls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
