/*
 * metrics - the collector's Prometheus metrics, kept in memory: a registry
 * of per-service and per-(service, task) series with their counters, gauges
 * and histograms, and its rendering in the text exposition format 0.0.4
 * (docs/export.md lists every metric). The loop thread updates it as
 * commits happen (export.c); a scrape renders a copy (metrics_copy) off the
 * loop, so a large registry never holds up ingest.
 *
 * Label values come from agents (service and task names): the registry
 * caps the distinct (service, task) pairs and the services at max_series
 * each, and folds whatever comes after into task="(other)" (and
 * service="(other)"), so no peer can grow it without bound. Rendering
 * escapes label values and replaces bytes that are not UTF-8.
 *
 * A registry is used by one thread at a time.
 */
#ifndef TW_COLLECTOR_METRICS_H
#define TW_COLLECTOR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "guard.h"
#include "http.h"

/* The default run and wait time buckets, in seconds. */
#define METRICS_DEFAULT_BUCKETS                                                \
  {                                                                            \
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, \
        600, 1800, 3600                                                        \
  }
#define METRICS_MAX_BUCKETS 64
/* Distinct (service, task) pairs, and services, before folding. */
#define METRICS_DEFAULT_MAX_SERIES 1000
/* The label value that folded series share. */
#define METRICS_OTHER "(other)"

typedef struct metrics metrics;

typedef struct metrics_config {
  const double *buckets; /* upper bounds in seconds, increasing, > 0 */
  size_t nbuckets;       /* 1..METRICS_MAX_BUCKETS */
  size_t max_series;     /* >= 1 */
} metrics_config;

/* Figures of the collector itself, set by its owner before rendering. */
typedef struct metrics_collector {
  uint64_t events_received;
  uint64_t events_committed;
  uint64_t transactions;
  uint64_t write_queue_bytes;
  uint64_t connections; /* agent connections open */
  uint64_t rejected_connections;
  uint32_t ack_hold_ms;     /* the hold the acks advise agents (batch.h) */
  uint64_t tasks_tracked;   /* tasks in flight the loop follows */
  uint64_t tasks_untracked; /* tasks it could not follow (over its cap) */
  uint64_t series_folded;   /* observations folded into "(other)" */
  /* What the caps on peers refused or folded (guard.h), each rendered as
   * taskwatch_<name>_total. */
  guard_stats guard;
  /* Answers of the metrics endpoint, by http_status. */
  uint64_t http[HTTP_ANSWER_COUNT];
  /* The OTLP export (zero and left out when it is off). */
  int otlp;
  uint64_t otlp_spans_exported, otlp_spans_rejected, otlp_requests_failed,
      otlp_batches_expired, otlp_queue_batches;
} metrics_collector;

/* Copies cfg's buckets. Aborts when memory runs out. */
metrics *metrics_new(const metrics_config *cfg);
void metrics_free(metrics *m);
/* A copy of everything, for rendering on another thread. */
metrics *metrics_copy(const metrics *m);

/* The index of a service (created on first use; "(other)" past the
 * cap). name is any bytes, copied. */
uint32_t metrics_service(metrics *m, const char *name, size_t len);
/* The index of the (service, task) series, likewise. */
uint32_t metrics_series(metrics *m, uint32_t service, const char *task,
                        size_t len);
/* The service a series belongs to. */
uint32_t metrics_series_service(const metrics *m, uint32_t series);

/* A task of `series` reached final `status` (schema.h, succeeded..lost).
 * wait_us < 0: it never started; run_us < 0: it did not run (only
 * succeeded and failed tasks have a run time). */
void metrics_task_final(metrics *m, uint32_t series, int status,
                        int64_t wait_us, int64_t run_us);
/* Tasks of a service queued or running (status) change by delta. */
void metrics_in_progress(metrics *m, uint32_t service, int status,
                         int64_t delta);
void metrics_agents_connected(metrics *m, uint32_t service, int64_t delta);
/* What agents drop, as they report it in HEALTH: X(KIND, metric name,
 * help text). Events, and the tasks and batches refused whole. */
#define METRICS_DROP_MAP(X)                                                    \
  X(EVENTS, "taskwatch_agent_dropped_events_total",                            \
    "Events agents reported dropping (their buffer was full), by service.")    \
  X(TASKS, "taskwatch_agent_dropped_tasks_total",                              \
    "Tasks agents refused whole when they were enqueued (their buffer was "    \
    "full), by service.")                                                      \
  X(BATCHES, "taskwatch_agent_dropped_batches_total",                          \
    "Batches agents refused whole when they began (their buffer was full), "   \
    "by service.")
enum metrics_drop {
#define METRICS__DROP_ENUM(kind, name, help) METRICS_DROP_##kind,
  METRICS_DROP_MAP(METRICS__DROP_ENUM)
#undef METRICS__DROP_ENUM
      METRICS_DROP_KINDS
};
/* Events, tasks or batches (`kind`, a metrics_drop) its agents reported
 * dropping, since the collector started. */
void metrics_agent_drops(metrics *m, uint32_t service, int kind, uint64_t n);
/* One sampled event-to-commit latency. */
void metrics_commit_latency(metrics *m, int64_t us);

/* The collector's own figures (copied). */
void metrics_set_collector(metrics *m, const metrics_collector *c);
const metrics_collector *metrics_get_collector(const metrics *m);

/* Appends the exposition text of every metric to out. */
void metrics_render(const metrics *m, format_buf *out);

/* Parses a bucket list "0.01,0.1,1,10" (seconds, increasing, > 0, at
 * most METRICS_MAX_BUCKETS). Returns the count, or -1. */
int metrics_parse_buckets(const char *text, double *out, size_t max);

#endif /* TW_COLLECTOR_METRICS_H */
