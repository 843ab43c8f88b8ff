/*
 * test_metrics - the registry and its exposition text: counters, gauges
 * and histograms as Prometheus reads them (cumulative buckets, +Inf,
 * _sum in seconds, shortest `le`), the cap that folds series into
 * task="(other)" and services into service="(other)", label values from
 * hostile names, a copy that stays as it was, and bucket lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "schema.h"

static metrics *make(size_t max_series) {
  static const double buckets[] = {0.005, 0.1, 2.5, 3600};
  metrics_config cfg = {buckets, 4, max_series};
  return metrics_new(&cfg);
}

/* The exposition text of m, owned by the caller. */
static char *render(const metrics *m) {
  format_buf b;
  format_buf_init(&b);
  metrics_render(m, &b);
  return b.data;
}

static void has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
    if ((p == text || p[-1] == '\n') && p[n] == '\n')
      return;
  fail_msg("missing line: %s", line);
}

static void counts_and_histograms(void **state) {
  (void)state;
  metrics *m = make(10);
  uint32_t api = metrics_service(m, "api", 3);
  uint32_t mail = metrics_series(m, api, "send_email", 10);
  assert_int_equal(metrics_series(m, api, "send_email", 10), mail);
  assert_int_equal(metrics_series_service(m, mail), api);
  metrics_task_final(m, mail, SCHEMA_SUCCEEDED, 1000, 4000); /* 4 ms */
  metrics_task_final(m, mail, SCHEMA_FAILED, 2000, 100000);  /* 0.1 s */
  metrics_task_final(m, mail, SCHEMA_FAILED, 3000, 3000000); /* 3 s */
  metrics_task_final(m, mail, SCHEMA_SKIPPED, -1, -1);       /* no times */
  metrics_task_final(m, mail, SCHEMA_LOST, 5000, 7000);      /* no run */
  metrics_in_progress(m, api, SCHEMA_QUEUED, 3);
  metrics_in_progress(m, api, SCHEMA_RUNNING, 2);
  metrics_in_progress(m, api, SCHEMA_QUEUED, -1);
  metrics_agents_connected(m, api, 1);
  metrics_agent_drops(m, api, METRICS_DROP_EVENTS, 7);
  metrics_agent_drops(m, api, METRICS_DROP_TASKS, 2);
  metrics_agent_drops(m, api, METRICS_DROP_BATCHES, 1);
  metrics_commit_latency(m, 12000);
  metrics_collector c = {0};
  c.events_received = 11;
  c.events_committed = 10;
  c.ack_hold_ms = 82;
  c.http[HTTP_OK] = 4;
  c.guard.strings_folded = 91808;
  c.guard.proof_refused = 3;
  metrics_set_collector(m, &c);
  char *text = render(m);
  const char *lines[] = {
      "# TYPE taskwatch_strings_folded_total counter",
      "taskwatch_strings_folded_total 91808",
      "taskwatch_proof_refused_total 3",
      "taskwatch_tls_failures_total 0",
      "# TYPE taskwatch_tasks_total counter",
      "taskwatch_tasks_total{service=\"api\",task=\"send_email\","
      "status=\"succeeded\"} 1",
      "taskwatch_tasks_total{service=\"api\",task=\"send_email\","
      "status=\"failed\"} 2",
      "taskwatch_tasks_total{service=\"api\",task=\"send_email\","
      "status=\"skipped\"} 1",
      "taskwatch_tasks_total{service=\"api\",task=\"send_email\","
      "status=\"dropped\"} 0",
      "taskwatch_tasks_total{service=\"api\",task=\"send_email\","
      "status=\"lost\"} 1",
      "# TYPE taskwatch_task_run_seconds histogram",
      "taskwatch_task_run_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"0.005\"} 1",
      "taskwatch_task_run_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"0.1\"} 2",
      "taskwatch_task_run_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"2.5\"} 2",
      "taskwatch_task_run_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"3600\"} 3",
      "taskwatch_task_run_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"+Inf\"} 3",
      "taskwatch_task_run_seconds_sum{service=\"api\",task=\"send_email\"} "
      "3.104000",
      "taskwatch_task_run_seconds_count{service=\"api\",task=\"send_email\"} "
      "3",
      /* wait: 1, 2, 3 and 5 ms (the lost task had started) */
      "taskwatch_task_wait_seconds_bucket{service=\"api\",task=\"send_email\","
      "le=\"0.005\"} 4",
      "taskwatch_task_wait_seconds_sum{service=\"api\",task=\"send_email\"} "
      "0.011000",
      "taskwatch_tasks_in_progress{service=\"api\",status=\"queued\"} 2",
      "taskwatch_tasks_in_progress{service=\"api\",status=\"running\"} 2",
      "taskwatch_agents_connected{service=\"api\"} 1",
      "taskwatch_agent_dropped_events_total{service=\"api\"} 7",
      "# TYPE taskwatch_agent_dropped_tasks_total counter",
      "taskwatch_agent_dropped_tasks_total{service=\"api\"} 2",
      "# TYPE taskwatch_agent_dropped_batches_total counter",
      "taskwatch_agent_dropped_batches_total{service=\"api\"} 1",
      "taskwatch_events_received_total 11",
      "taskwatch_events_committed_total 10",
      "# TYPE taskwatch_ack_hold_seconds gauge",
      "taskwatch_ack_hold_seconds 0.082000",
      "taskwatch_commit_latency_seconds_bucket{le=\"0.01\"} 0",
      "taskwatch_commit_latency_seconds_bucket{le=\"0.025\"} 1",
      "taskwatch_commit_latency_seconds_count 1",
      "taskwatch_commit_latency_seconds_bucket{le=\"10\"} 1",
      "taskwatch_http_requests_total{code=\"200\"} 4",
      "taskwatch_http_requests_total{code=\"400\"} 0",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
    has_line(text, lines[i]);
  assert_null(strstr(text, "taskwatch_otlp_")); /* off: left out */
  assert_non_null(strstr(text, "taskwatch_build_info{version=\""));
  free(text);
  metrics_free(m);
}

/* Past max_series the new pairs count under their service's
 * task="(other)", and new services under service="(other)". */
static void folds_past_the_cap(void **state) {
  (void)state;
  metrics *m = make(2);
  uint32_t a = metrics_service(m, "a", 1);
  uint32_t b = metrics_service(m, "b", 1);
  uint32_t c = metrics_service(m, "c", 1);
  assert_int_not_equal(a, b);
  assert_int_equal(metrics_service(m, "d", 1), c); /* both "(other)" */
  uint32_t t1 = metrics_series(m, a, "t1", 2);
  uint32_t t2 = metrics_series(m, a, "t2", 2);
  uint32_t t3 = metrics_series(m, a, "t3", 2);
  uint32_t t4 = metrics_series(m, b, "t4", 2);
  assert_int_not_equal(t1, t2);
  assert_int_not_equal(t3, t4); /* each service has its own fold */
  assert_int_equal(metrics_series(m, a, "t5", 2), t3);
  assert_int_equal(metrics_series(m, a, "t1", 2), t1); /* known: kept */
  uint32_t other = metrics_series(m, c, "x", 1);
  assert_int_equal(metrics_series(m, c, "y", 1), other);
  metrics_task_final(m, t3, SCHEMA_SUCCEEDED, -1, -1);
  metrics_task_final(m, metrics_series(m, a, "t6", 2), SCHEMA_FAILED, -1, -1);
  metrics_task_final(m, other, SCHEMA_DROPPED, -1, -1);
  metrics_task_final(m, t1, SCHEMA_DROPPED, -1, -1);
  char *text = render(m);
  has_line(text, "taskwatch_tasks_total{service=\"a\",task=\"(other)\","
                 "status=\"succeeded\"} 1");
  has_line(text, "taskwatch_tasks_total{service=\"a\",task=\"(other)\","
                 "status=\"failed\"} 1");
  has_line(text, "taskwatch_tasks_total{service=\"(other)\",task=\"(other)\","
                 "status=\"dropped\"} 1");
  has_line(text, "taskwatch_series_folded_total 3");
  assert_null(strstr(text, "task=\"t3\""));
  assert_null(strstr(text, "service=\"d\""));
  free(text);
  metrics_free(m);
}

static void hostile_label_values(void **state) {
  (void)state;
  metrics *m = make(10);
  const char name[] = "a\"b\\c\nd\x01"
                      "e\xff"
                      "f\xc3\xa9";
  uint32_t s = metrics_service(m, "svc", 3);
  uint32_t t = metrics_series(m, s, name, sizeof(name) - 1);
  metrics_task_final(m, t, SCHEMA_SUCCEEDED, -1, -1);
  char *text = render(m);
  has_line(text, "taskwatch_tasks_total{service=\"svc\",task=\"a\\\"b\\\\c\\nd"
                 "\xef\xbf\xbd"
                 "e\xef\xbf\xbd"
                 "f\xc3\xa9\",status=\"succeeded\"} 1");
  free(text);
  metrics_free(m);
}

static void copies_are_independent(void **state) {
  (void)state;
  metrics *m = make(10);
  uint32_t s = metrics_service(m, "svc", 3);
  uint32_t t = metrics_series(m, s, "t", 1);
  metrics_task_final(m, t, SCHEMA_SUCCEEDED, 10, 10);
  metrics *c = metrics_copy(m);
  for (int i = 0; i < 100; i++)
    metrics_series(m, metrics_service(m, "x", 1), (char *)&i, sizeof(i));
  metrics_task_final(m, t, SCHEMA_SUCCEEDED, 10, 10);
  char *text = render(c);
  has_line(text, "taskwatch_tasks_total{service=\"svc\",task=\"t\","
                 "status=\"succeeded\"} 1");
  assert_null(strstr(text, "service=\"x\""));
  free(text);
  metrics_free(c);
  metrics_free(m);
}

static void bucket_lists(void **state) {
  (void)state;
  double b[METRICS_MAX_BUCKETS];
  assert_int_equal(metrics_parse_buckets("0.01,0.1,1,10", b, 64), 4);
  assert_true(b[0] == 0.01 && b[3] == 10);
  assert_int_equal(metrics_parse_buckets("5", b, 64), 1);
  const char *bad[] = {"",  "1,",   ",1",  "1,1", "2,1", "0",   "-1",
                       "x", "1,,2", "1 2", "inf", "nan", "1,2x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(metrics_parse_buckets(bad[i], b, 64), -1);
  assert_int_equal(metrics_parse_buckets("1,2,3", b, 2), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts_and_histograms),
      cmocka_unit_test(folds_past_the_cap),
      cmocka_unit_test(hostile_label_values),
      cmocka_unit_test(copies_are_independent),
      cmocka_unit_test(bucket_lists),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
