/*
 * metrics - the registry: names in one arena, services and series in
 * arrays indexed by number, one open-addressing table from (service, name)
 * to that number, and the histograms' bucket counts in two flat arrays.
 * Everything is plain memory, so metrics_copy() is a handful of memcpy.
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "schema.h"
#include "taskwatch.h"
#include "u64map.h"
#include "xalloc.h"

#define FINAL_STATES (SCHEMA_LOST - SCHEMA_SUCCEEDED + 1)
#define NO_INDEX UINT32_MAX

/* Event-to-commit latency buckets, in seconds. */
static const double latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define LATENCY_BUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

typedef struct service {
  uint32_t name, len;     /* in the arena */
  int64_t in_progress[2]; /* queued, running */
  int64_t connected;
  uint64_t drops[METRICS_DROP_KINDS];
} service;

typedef struct series {
  uint32_t service;
  uint32_t name, len;
  int folded;
  uint64_t count[FINAL_STATES];
  uint64_t run_count, wait_count;
  uint64_t run_sum_us, wait_sum_us;
} series;

struct metrics {
  double buckets[METRICS_MAX_BUCKETS];
  size_t nbuckets;
  size_t max_series;
  char *names;
  size_t names_len, names_cap;
  service *services;
  size_t nservices, capservices, regular_services;
  uint32_t other_service; /* NO_INDEX until first folded */
  series *series;
  size_t nseries, capseries, regular_series;
  uint64_t *run_buckets, *wait_buckets; /* nbuckets per series */
  uint32_t *slots; /* index + 1 of a service or series; 0 = free */
  size_t nslots;   /* a power of two */
  uint64_t latency[LATENCY_BUCKETS];
  uint64_t latency_count, latency_sum_us;
  metrics_collector collector;
};

/* ---- names -------------------------------------------------------------- */

static uint32_t add_name(metrics *m, const char *s, size_t len) {
  if (m->names_len + len > m->names_cap) {
    m->names_cap = (m->names_len + len) * 2 + 256;
    m->names = xrealloc(m->names, m->names_cap);
  }
  uint32_t at = (uint32_t)m->names_len;
  if (len > 0)
    memcpy(m->names + at, s, len);
  m->names_len += len;
  return at;
}

/* Services are namespace 0, the series of service i namespace i + 1. */
static uint64_t key_hash(uint32_t ns, const char *s, size_t len) {
  uint64_t h = UINT64_C(1469598103934665603) ^ ns;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= UINT64_C(1099511628211);
  }
  return u64map_hash(h ^ ((uint64_t)len << 32));
}

static int key_equal(const metrics *m, uint32_t index, uint32_t ns,
                     const char *s, size_t len) {
  uint32_t at, n;
  if (index & 0x80000000u) {
    const series *r = &m->series[index & 0x7fffffffu];
    if (ns != r->service + 1)
      return 0;
    at = r->name, n = r->len;
  } else {
    if (ns != 0)
      return 0;
    at = m->services[index].name, n = m->services[index].len;
  }
  return n == len && (len == 0 || memcmp(m->names + at, s, len) == 0);
}

/* The slot holding (ns, name), or the free slot where it goes. Series
 * indexes carry the top bit in the table. */
static uint32_t *find_slot(metrics *m, uint32_t ns, const char *s, size_t len) {
  size_t mask = m->nslots - 1;
  for (size_t i = key_hash(ns, s, len) & mask;; i = (i + 1) & mask) {
    uint32_t v = m->slots[i];
    if (v == 0 || key_equal(m, v - 1, ns, s, len))
      return &m->slots[i];
  }
}

/* ---- lifetime ----------------------------------------------------------- */

metrics *metrics_new(const metrics_config *cfg) {
  metrics *m = xcalloc(1, sizeof(*m));
  m->nbuckets = cfg->nbuckets;
  memcpy(m->buckets, cfg->buckets, cfg->nbuckets * sizeof(double));
  m->max_series = cfg->max_series;
  m->other_service = NO_INDEX;
  /* Services, series and their folded series: at most three entries per
   * allowed series (plus the folded service's), at most half full. */
  size_t entries = 3 * m->max_series + 4;
  m->nslots = 64;
  while (m->nslots < 2 * entries)
    m->nslots *= 2;
  m->slots = xcalloc(m->nslots, sizeof(*m->slots));
  return m;
}

void metrics_free(metrics *m) {
  if (m == NULL)
    return;
  free(m->names);
  free(m->services);
  free(m->series);
  free(m->run_buckets);
  free(m->wait_buckets);
  free(m->slots);
  free(m);
}

static void *dup_array(const void *p, size_t n, size_t size) {
  if (n == 0)
    return NULL;
  void *q = xmalloc(n * size);
  memcpy(q, p, n * size);
  return q;
}

metrics *metrics_copy(const metrics *m) {
  metrics *c = xmalloc(sizeof(*c));
  *c = *m;
  c->names = dup_array(m->names, m->names_len, 1);
  c->names_cap = m->names_len;
  c->services = dup_array(m->services, m->nservices, sizeof(service));
  c->capservices = m->nservices;
  c->series = dup_array(m->series, m->nseries, sizeof(series));
  c->capseries = m->nseries;
  c->run_buckets =
      dup_array(m->run_buckets, m->nseries * m->nbuckets, sizeof(uint64_t));
  c->wait_buckets =
      dup_array(m->wait_buckets, m->nseries * m->nbuckets, sizeof(uint64_t));
  c->slots = dup_array(m->slots, m->nslots, sizeof(uint32_t));
  return c;
}

/* ---- services and series ------------------------------------------------ */

static uint32_t new_service(metrics *m, const char *name, size_t len) {
  if (m->nservices == m->capservices) {
    m->capservices = m->capservices ? m->capservices * 2 : 16;
    m->services = xrealloc(m->services, m->capservices * sizeof(*m->services));
  }
  service *v = &m->services[m->nservices];
  memset(v, 0, sizeof(*v));
  v->name = add_name(m, name, len);
  v->len = (uint32_t)len;
  return (uint32_t)m->nservices++;
}

uint32_t metrics_service(metrics *m, const char *name, size_t len) {
  uint32_t *slot = find_slot(m, 0, name, len);
  if (*slot)
    return *slot - 1;
  if (m->regular_services >= m->max_series) {
    /* Past the cap every new service shares one, "(other)" (a service
     * really named so shares it too). */
    name = METRICS_OTHER;
    len = sizeof(METRICS_OTHER) - 1;
    slot = find_slot(m, 0, name, len);
    if (*slot)
      return *slot - 1;
  } else {
    m->regular_services++;
  }
  uint32_t i = new_service(m, name, len);
  *slot = i + 1;
  if (len == sizeof(METRICS_OTHER) - 1 && memcmp(name, METRICS_OTHER, len) == 0)
    m->other_service = i;
  return i;
}

static uint32_t new_series(metrics *m, uint32_t svc, const char *name,
                           size_t len, int folded) {
  if (m->nseries == m->capseries) {
    m->capseries = m->capseries ? m->capseries * 2 : 32;
    m->series = xrealloc(m->series, m->capseries * sizeof(*m->series));
    size_t bytes = m->capseries * m->nbuckets * sizeof(uint64_t);
    m->run_buckets = xrealloc(m->run_buckets, bytes);
    m->wait_buckets = xrealloc(m->wait_buckets, bytes);
  }
  series *r = &m->series[m->nseries];
  memset(r, 0, sizeof(*r));
  r->service = svc;
  r->name = add_name(m, name, len);
  r->len = (uint32_t)len;
  r->folded = folded;
  memset(m->run_buckets + m->nseries * m->nbuckets, 0,
         m->nbuckets * sizeof(uint64_t));
  memset(m->wait_buckets + m->nseries * m->nbuckets, 0,
         m->nbuckets * sizeof(uint64_t));
  return (uint32_t)m->nseries++;
}

uint32_t metrics_series(metrics *m, uint32_t svc, const char *task,
                        size_t len) {
  int fold = svc == m->other_service;
  uint32_t *slot = NULL;
  if (!fold) {
    slot = find_slot(m, svc + 1, task, len);
    if (*slot)
      return (*slot - 1) & 0x7fffffffu;
    fold = m->regular_series >= m->max_series;
  }
  if (fold) {
    /* Every task of a folded service, and every new task past the cap,
     * counts under its service's task="(other)". */
    task = METRICS_OTHER;
    len = sizeof(METRICS_OTHER) - 1;
    slot = find_slot(m, svc + 1, task, len);
    if (*slot) {
      uint32_t i = (*slot - 1) & 0x7fffffffu;
      m->series[i].folded = 1;
      return i;
    }
  } else {
    m->regular_series++;
  }
  uint32_t i = new_series(m, svc, task, len, fold);
  *slot = (i | 0x80000000u) + 1;
  return i;
}

uint32_t metrics_series_service(const metrics *m, uint32_t i) {
  return m->series[i].service;
}

/* ---- observations ------------------------------------------------------- */

static size_t bucket_of(const double *bounds, size_t n, int64_t us) {
  double s = (double)us / 1e6;
  size_t lo = 0, hi = n; /* first bound >= s, or n for +Inf only */
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (bounds[mid] < s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void observe(const metrics *m, uint64_t *buckets, uint64_t *count,
                    uint64_t *sum, int64_t us) {
  if (us < 0)
    us = 0;
  size_t b = bucket_of(m->buckets, m->nbuckets, us);
  if (b < m->nbuckets)
    buckets[b]++;
  (*count)++;
  *sum += (uint64_t)us;
}

void metrics_task_final(metrics *m, uint32_t i, int status, int64_t wait_us,
                        int64_t run_us) {
  series *r = &m->series[i];
  if (status < SCHEMA_SUCCEEDED || status > SCHEMA_LOST)
    return;
  r->count[status - SCHEMA_SUCCEEDED]++;
  if (r->folded)
    m->collector.series_folded++;
  if (wait_us >= 0)
    observe(m, m->wait_buckets + (size_t)i * m->nbuckets, &r->wait_count,
            &r->wait_sum_us, wait_us);
  if (run_us >= 0 && (status == SCHEMA_SUCCEEDED || status == SCHEMA_FAILED))
    observe(m, m->run_buckets + (size_t)i * m->nbuckets, &r->run_count,
            &r->run_sum_us, run_us);
}

void metrics_in_progress(metrics *m, uint32_t svc, int status, int64_t delta) {
  if (status == SCHEMA_QUEUED || status == SCHEMA_RUNNING)
    m->services[svc].in_progress[status] += delta;
}

void metrics_agents_connected(metrics *m, uint32_t svc, int64_t delta) {
  m->services[svc].connected += delta;
}

void metrics_agent_drops(metrics *m, uint32_t svc, int kind, uint64_t n) {
  if (kind >= 0 && kind < METRICS_DROP_KINDS)
    m->services[svc].drops[kind] += n;
}

void metrics_commit_latency(metrics *m, int64_t us) {
  if (us < 0)
    us = 0;
  size_t b = bucket_of(latency_buckets, LATENCY_BUCKETS, us);
  if (b < LATENCY_BUCKETS)
    m->latency[b]++;
  m->latency_count++;
  m->latency_sum_us += (uint64_t)us;
}

void metrics_set_collector(metrics *m, const metrics_collector *c) {
  uint64_t folded = m->collector.series_folded;
  m->collector = *c;
  m->collector.series_folded = folded;
}

const metrics_collector *metrics_get_collector(const metrics *m) {
  return &m->collector;
}

/* ---- rendering ---------------------------------------------------------- */

/* A label value: \, " and newline escaped, other control bytes and bytes
 * that are not UTF-8 shown as U+FFFD (the format wants UTF-8). */
static void put_label_value(format_buf *b, const char *s, size_t n) {
  format_buf tmp;
  format_buf_init(&tmp);
  /* format_json_string() already validates UTF-8 and escapes controls;
   * its output is turned into the exposition format's escapes. */
  format_json_string(&tmp, s, n);
  const char *p = tmp.data + 1, *end = tmp.data + tmp.len - 1;
  while (p < end) {
    if (*p != '\\') {
      format_buf_putc(b, *p++);
      continue;
    }
    char c = p[1];
    if (c == '"' || c == '\\') {
      format_buf_putc(b, '\\');
      format_buf_putc(b, c);
    } else if (c == 'n') {
      format_buf_puts(b, "\\n");
    } else {
      format_buf_puts(b, "\xef\xbf\xbd"); /* \t \r \uXXXX: a control */
    }
    p += c == 'u' ? 6 : 2;
  }
  format_buf_fini(&tmp);
}

static void put_name(format_buf *b, const metrics *m, uint32_t at,
                     uint32_t len) {
  put_label_value(b, m->names + at, len);
}

/* The shortest decimal that reads back as v ("0.005", "2.5", "3600"). */
static void put_double(format_buf *b, double v) {
  char text[40];
  if (v == floor(v) && fabs(v) < 1e15) {
    format_buf_printf(b, "%.0f", v);
    return;
  }
  for (int digits = 1; digits <= 17; digits++) {
    snprintf(text, sizeof(text), "%.*g", digits, v);
    if (strtod(text, NULL) == v)
      break;
  }
  format_buf_puts(b, text);
}

static void put_seconds(format_buf *b, uint64_t us) {
  format_buf_put_uint(b, us / 1000000);
  format_buf_printf(b, ".%06u", (unsigned)(us % 1000000));
}

static void header(format_buf *b, const char *name, const char *type,
                   const char *help) {
  format_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(format_buf *b, const char *name, const char *type,
                   const char *help, uint64_t v) {
  header(b, name, type, help);
  format_buf_printf(b, "%s ", name);
  format_buf_put_uint(b, v);
  format_buf_putc(b, '\n');
}

/* `{service="..."` for service i, without the closing brace. */
static void service_labels(format_buf *b, const metrics *m, uint32_t i) {
  format_buf_puts(b, "{service=\"");
  put_name(b, m, m->services[i].name, m->services[i].len);
  format_buf_putc(b, '"');
}

/* `{service="...",task="..."` for series i, without the closing brace. */
static void series_labels(format_buf *b, const metrics *m, uint32_t i) {
  const series *r = &m->series[i];
  service_labels(b, m, r->service);
  format_buf_puts(b, ",task=\"");
  put_name(b, m, r->name, r->len);
  format_buf_putc(b, '"');
}

/* One histogram's lines; labels() writes its labels without the brace. */
static void
histogram_lines(format_buf *b, const char *name, const double *bounds, size_t n,
                const uint64_t *counts, uint64_t count, uint64_t sum_us,
                const metrics *m, uint32_t i,
                void (*labels)(format_buf *, const metrics *, uint32_t)) {
  uint64_t cumulative = 0;
  for (size_t k = 0; k <= n; k++) {
    format_buf_printf(b, "%s_bucket", name);
    if (labels) {
      labels(b, m, i);
      format_buf_puts(b, ",le=\"");
    } else {
      format_buf_puts(b, "{le=\"");
    }
    if (k < n) {
      put_double(b, bounds[k]);
      cumulative += counts[k];
    } else {
      format_buf_puts(b, "+Inf");
      cumulative = count;
    }
    format_buf_puts(b, "\"} ");
    format_buf_put_uint(b, cumulative);
    format_buf_putc(b, '\n');
  }
  const char *suffix[2] = {"_sum", "_count"};
  for (int k = 0; k < 2; k++) {
    format_buf_printf(b, "%s%s", name, suffix[k]);
    if (labels) {
      labels(b, m, i);
      format_buf_putc(b, '}');
    }
    format_buf_putc(b, ' ');
    if (k == 0)
      put_seconds(b, sum_us);
    else
      format_buf_put_uint(b, count);
    format_buf_putc(b, '\n');
  }
}

static void render_collector(const metrics *m, format_buf *b) {
  const metrics_collector *c = &m->collector;
  header(b, "taskwatch_build_info", "gauge",
         "The collector's version and the store schema and wire protocol "
         "versions it speaks; always 1.");
  format_buf_printf(b,
                    "taskwatch_build_info{version=\"%s\",schema=\"%d\","
                    "protocol=\"%d\"} 1\n",
                    TW_VERSION_STRING, SCHEMA_VERSION, PROTO_VERSION);
  scalar(b, "taskwatch_events_received_total", "counter",
         "Events accepted from agents into a transaction.", c->events_received);
  scalar(b, "taskwatch_events_committed_total", "counter",
         "Events committed to the store.", c->events_committed);
  scalar(b, "taskwatch_transactions_total", "counter",
         "Transactions committed to the store.", c->transactions);
  header(b, "taskwatch_commit_latency_seconds", "histogram",
         "Time from an event (the agent's clock) to the commit that "
         "stored it, for one event in 32.");
  histogram_lines(b, "taskwatch_commit_latency_seconds", latency_buckets,
                  LATENCY_BUCKETS, m->latency, m->latency_count,
                  m->latency_sum_us, m, 0, NULL);
  scalar(b, "taskwatch_write_queue_bytes", "gauge",
         "Bytes of received events waiting for their commit.",
         c->write_queue_bytes);
  scalar(b, "taskwatch_connections", "gauge", "Agent connections open.",
         c->connections);
  scalar(b, "taskwatch_rejected_connections_total", "counter",
         "Agent connections refused or closed for cause.",
         c->rejected_connections);
  header(b, "taskwatch_ack_hold_seconds", "gauge",
         "How long the acks let agents keep their events before writing "
         "them (hold_ms, protocol version 6); 0: no advice.");
  format_buf_puts(b, "taskwatch_ack_hold_seconds ");
  put_seconds(b, (uint64_t)c->ack_hold_ms * 1000);
  format_buf_putc(b, '\n');
  scalar(b, "taskwatch_tasks_tracked", "gauge",
         "Queued and running tasks the collector follows in memory.",
         c->tasks_tracked);
  scalar(b, "taskwatch_tasks_untracked_total", "counter",
         "Tasks enqueued while that table was full (docs/export.md).",
         c->tasks_untracked);
  scalar(b, "taskwatch_series_folded_total", "counter",
         "Tasks counted under task=\"(other)\" past the series cap.",
         c->series_folded);
  /* The guard's counters, one metric each, named and described by its
   * table (docs/collector.md, "Caps"). */
#define GUARD_METRIC(name, help)                                               \
  scalar(b, "taskwatch_" #name "_total", "counter", help ".", c->guard.name);
  GUARD_COUNTER_MAP(GUARD_METRIC)
#undef GUARD_METRIC
}

static void render_http(const metrics *m, format_buf *b) {
  header(b, "taskwatch_http_requests_total", "counter",
         "Requests to this endpoint, by the status code of the answer.");
  for (int i = 0; i < HTTP_ANSWER_COUNT; i++) {
    format_buf_printf(b, "taskwatch_http_requests_total{code=\"%d\"} ",
                      http_status_code(i));
    format_buf_put_uint(b, m->collector.http[i]);
    format_buf_putc(b, '\n');
  }
}

static void render_otlp(const metrics *m, format_buf *b) {
  const metrics_collector *c = &m->collector;
  if (!c->otlp)
    return;
  scalar(b, "taskwatch_otlp_spans_exported_total", "counter",
         "Spans the OTLP endpoint accepted.", c->otlp_spans_exported);
  scalar(b, "taskwatch_otlp_spans_rejected_total", "counter",
         "Spans the OTLP endpoint refused for good (not retried).",
         c->otlp_spans_rejected);
  scalar(b, "taskwatch_otlp_requests_failed_total", "counter",
         "Export requests that failed and are retried (endpoint down, "
         "429, 502, 503, 504).",
         c->otlp_requests_failed);
  scalar(b, "taskwatch_otlp_batches_expired_total", "counter",
         "Completed batches that retention removed before their export.",
         c->otlp_batches_expired);
  scalar(b, "taskwatch_otlp_queue_batches", "gauge",
         "Completed batches committed and not exported yet.",
         c->otlp_queue_batches);
}

static void render_services(const metrics *m, format_buf *b) {
  static const char *const progress[2] = {"queued", "running"};
  header(b, "taskwatch_tasks_in_progress", "gauge",
         "Tasks queued or running, by service.");
  for (uint32_t i = 0; i < m->nservices; i++)
    for (int s = 0; s < 2; s++) {
      format_buf_puts(b, "taskwatch_tasks_in_progress");
      service_labels(b, m, i);
      format_buf_printf(b, ",status=\"%s\"} %lld\n", progress[s],
                        (long long)m->services[i].in_progress[s]);
    }
  header(b, "taskwatch_agents_connected", "gauge",
         "Agent instances connected, by service.");
  for (uint32_t i = 0; i < m->nservices; i++) {
    format_buf_puts(b, "taskwatch_agents_connected");
    service_labels(b, m, i);
    format_buf_printf(b, "} %lld\n", (long long)m->services[i].connected);
  }
  static const char *const drop_names[] = {
#define DROP_NAME(kind, name, help) name,
      METRICS_DROP_MAP(DROP_NAME)
#undef DROP_NAME
  };
  static const char *const drop_help[] = {
#define DROP_HELP(kind, name, help) help,
      METRICS_DROP_MAP(DROP_HELP)
#undef DROP_HELP
  };
  for (int k = 0; k < METRICS_DROP_KINDS; k++) {
    header(b, drop_names[k], "counter", drop_help[k]);
    for (uint32_t i = 0; i < m->nservices; i++) {
      format_buf_puts(b, drop_names[k]);
      service_labels(b, m, i);
      format_buf_puts(b, "} ");
      format_buf_put_uint(b, m->services[i].drops[k]);
      format_buf_putc(b, '\n');
    }
  }
}

static void render_series(const metrics *m, format_buf *b) {
  header(b, "taskwatch_tasks_total", "counter",
         "Tasks whose final state was committed, by service, task and "
         "status.");
  for (uint32_t i = 0; i < m->nseries; i++)
    for (int s = 0; s < FINAL_STATES; s++) {
      format_buf_puts(b, "taskwatch_tasks_total");
      series_labels(b, m, i);
      format_buf_printf(b, ",status=\"%s\"} ",
                        schema_status_name(SCHEMA_SUCCEEDED + s));
      format_buf_put_uint(b, m->series[i].count[s]);
      format_buf_putc(b, '\n');
    }
  header(b, "taskwatch_task_run_seconds", "histogram",
         "Run time of the tasks that ran (succeeded or failed).");
  for (uint32_t i = 0; i < m->nseries; i++)
    histogram_lines(b, "taskwatch_task_run_seconds", m->buckets, m->nbuckets,
                    m->run_buckets + (size_t)i * m->nbuckets,
                    m->series[i].run_count, m->series[i].run_sum_us, m, i,
                    series_labels);
  header(b, "taskwatch_task_wait_seconds", "histogram",
         "Queue wait (enqueue to start) of the tasks that started.");
  for (uint32_t i = 0; i < m->nseries; i++)
    histogram_lines(b, "taskwatch_task_wait_seconds", m->buckets, m->nbuckets,
                    m->wait_buckets + (size_t)i * m->nbuckets,
                    m->series[i].wait_count, m->series[i].wait_sum_us, m, i,
                    series_labels);
}

void metrics_render(const metrics *m, format_buf *b) {
  render_collector(m, b);
  render_services(m, b);
  render_series(m, b);
  render_otlp(m, b);
  render_http(m, b);
}

int metrics_parse_buckets(const char *text, double *out, size_t max) {
  size_t n = 0;
  const char *p = text;
  for (;;) {
    char *end;
    if (*p == '\0' || *p == ',' || *p == ' ' || n == max)
      return -1;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v <= 0 || (n > 0 && v <= out[n - 1]))
      return -1;
    out[n++] = v;
    if (*end == '\0')
      return (int)n;
    if (*end != ',')
      return -1;
    p = end + 1;
  }
}
