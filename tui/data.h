/*
 * data - what the dashboard reads from the store (docs/schema.md): the
 * header's aggregates and one screenful of each view, through a read-only
 * SQLite connection that the collector writes beside.
 *
 * Every query covers a time window: lists in time order are keyset pages
 * over the tasks_time index ("rows at or before this (enqueued_at, id)"),
 * lists in another order are keyset pages of the window sorted by that
 * value, aggregates cover the window through indexes, and percentiles
 * come from every task of a small window; of a large one, from the
 * per-minute and per-hour rollups (docs/schema.md) when the filter names
 * nothing beyond services, names and words, else from a sample of bounded
 * size (see data.c). Strings are returned exactly as stored (any bytes):
 * callers sanitize before display.
 */
#ifndef TW_DATA_H
#define TW_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "reader.h"
#include "schema.h"

/* The dashboard reads tasks as common/reader reads them; these are the
 * reader's types under the names the dashboard's code uses. */
typedef reader_text data_text;
typedef reader_task data_task;
/* An integer column that was NULL. */
#define DATA_NULL READER_NULL
/* Sparkline: buckets of DATA_SPARK_US over the last DATA_SPARK_N of them. */
#define DATA_SPARK_N 30
#define DATA_SPARK_US INT64_C(10000000)

/*
 * What a list covers and how it is ordered. Every figure and list of the
 * dashboard covers the tasks enqueued from `since` on (the time window);
 * lists are ordered by one value - enqueue time, run time, queue wait or
 * the state's severity (schema_status_severity()) - largest first when
 * desc, ties broken by id the same way. A running task's run time and a
 * queued task's wait are how long so far, as of `now`.
 */
enum data_by { DATA_BY_TIME, DATA_BY_RUN, DATA_BY_WAIT, DATA_BY_STATUS };

typedef struct data_scope {
  int64_t since; /* INT64_MIN: all */
  int64_t now;
  int by;   /* enum data_by */
  int desc; /* 1: largest (newest) first */
} data_scope;

/* A keyset position in a list: the row's value in the list's order (its
 * enqueued_at in time order) and its id (a task's; a batch's when a
 * batches list is ordered by anything but time). */
typedef struct data_key {
  int64_t at, id;
} data_key;

/* Tasks windows of up to this many tasks are read whole: counts and
 * percentiles are exact. Larger ones are read from the rollups or sampled
 * (see data.c). */
#define DATA_EXACT_MAX 10000

/* Rates: tasks per second over the last DATA_RATE_S seconds, from
 * one-second buckets, so they fall to zero as soon as events stop. */
#define DATA_RATE_S 10

/* The percentile spans of the header: the last minute and the window. */
#define DATA_WINDOWS 2
#define DATA_MINUTE_US INT64_C(60000000)

typedef struct data_stats {
  int64_t since; /* the window the figures cover */
  /* Tasks enqueued in the window, by state (queued and running too). */
  int64_t counts[SCHEMA_STATUS_COUNT];
  int64_t total; /* their sum */
  /* Queued and running now, whenever enqueued. */
  int64_t queued_now, running_now;
  int64_t spark_tasks[DATA_SPARK_N], spark_failed[DATA_SPARK_N];
  /* Tasks (and failed ones) enqueued in each second from rate_t0 on;
   * data_rate() sums the ones that fall in the last DATA_RATE_S s. */
  int64_t rate_t0;
  int64_t rate_tasks[DATA_RATE_S + 1], rate_failed[DATA_RATE_S + 1];
  /* [last minute, window][p50, p95, p99] in microseconds, DATA_NULL when
   * no task; exact when the window held at most DATA_EXACT_MAX tasks, else
   * within pct_error % of exact when pct_error > 0 (the rollups'
   * histograms, common/hist, over the spans' whole minutes:
   * data_rollup_start()), else from a sample. */
  int64_t run[DATA_WINDOWS][3], wait[DATA_WINDOWS][3];
  int exact;
  double pct_error;
  int64_t agents, agents_connected, agents_dropped;
  /* Tasks and batches the agents refused whole (their buffer was full). */
  int64_t agents_dropped_tasks, agents_dropped_batches;
  /* When the collector last received an event (its clock, reader.h
   * reader_agent_seen_sql()); DATA_NULL when the store is empty. */
  int64_t last_event_at;
} data_stats;

/* The first enqueue time the rollups' figures of a span from `since`
 * cover: the start of since's minute (INT64_MIN: all). */
int64_t data_rollup_start(int64_t since);

/* Tasks (failed: failed tasks) per second as of now_us, from the buckets
 * of s: 0 once DATA_RATE_S seconds passed without one. */
double data_rate(const data_stats *s, int64_t now_us, int failed);

typedef struct data_batch {
  int64_t id, created_at;
  data_text label, service;
  data_key key; /* for paging: in time order, its newest listed task */
  /* In the other orders, the batch's value over its matching tasks: total
   * run time, longest wait or worst severity. */
  int64_t value;
  /* Its place in that order was found among the batches of the window's
   * slowest tasks, not every batch of it (a large window by run time:
   * data.c, slowest_batches()). */
  int estimated;
  int ntasks;
  data_task *tasks; /* in position order */
} data_batch;

typedef struct data_name {
  data_text name;
  int64_t count, failed, skipped;
  int64_t run[3], wait[3]; /* p50, p95, p99; DATA_NULL when none */
  int estimated;           /* count and percentiles come from a sample */
  double pct_error;        /* percentiles within this % (0: exact) */
} data_name;

typedef struct data_agent {
  int64_t id, pid, started_at, connected_at, disconnected_at, last_event_at;
  int64_t events, dropped, reconnects;
  int64_t dropped_tasks, dropped_batches; /* refused whole */
  int connected, ended;
  data_text service, host;
} data_agent;

typedef struct data data;

/* Opens the store read-only (reader_open()). Returns 0, or the reader's
 * negative READER_E… code with its one-line reason in err. */
int data_open(const char *path, data **out, char *err, size_t errlen);
void data_close(data *d);

/* 1 when another connection committed since the last call, else 0; the
 * first call returns 1 (reader_changed()). */
int data_changed(data *d);

/* data_stats_load() keeps the sparklines' counts of settled seconds for
 * the filter object it was last given (compared by address): call this
 * before freeing a filter given to it, or to count everything again. */
void data_filter_changed(data *d);

/* The header's figures over the tasks matching f (NULL: all) enqueued
 * from `since` on, as of now_us. Returns 0 or -1. */
int data_stats_load(data *d, const filter *f, int64_t since, int64_t now_us,
                    data_stats *out);

/*
 * One page of the list of tasks matching f (NULL: all) in scope (NULL:
 * every task, newest first). dir < 0: up to limit tasks from *from on
 * (from included), in list order (from NULL: the top of the list); dir >
 * 0: up to limit tasks before *from, nearest first (from NULL: the bottom
 * of the list, last first). *rows is an array to free with
 * data_tasks_free(). Returns 0 or -1.
 */
int data_tasks_page(data *d, const filter *f, const data_scope *scope,
                    const data_key *from, int dir, int limit, data_task **rows,
                    int *n);
void data_tasks_free(data_task *rows, int n);
/* A task's key in the list order of scope (NULL: time). */
data_key data_task_key(const data_task *t, const data_scope *scope);

/* One task by id. Returns 0, 1 when it is gone, or -1. Free with
 * data_task_fini(). */
int data_task_detail(data *d, int64_t id, data_task *out);
void data_task_fini(data_task *t);

/*
 * Up to n batches having a task that matches f in scope (NULL: all, by
 * time), in the list order from *from on (NULL: the top), each with all of
 * its tasks. In time order a batch is placed by its newest matching task;
 * in the others by its value (data_batch). Free with data_batches_free().
 * Returns 0 or -1.
 */
int data_batches_page(data *d, const filter *f, const data_scope *scope,
                      const data_key *from, int n, data_batch **out,
                      int *count);
/* The key of the batch listed n places above the one at *key (batch: its
 * id; key NULL: the bottom of the list), or of the topmost when fewer are
 * there, for scrolling up: 0 and *out, or 1 when there is none. */
int data_batch_before(data *d, const filter *f, const data_scope *scope,
                      const data_key *key, int64_t batch, int n, data_key *out);
void data_batches_free(data_batch *b, int n);

/*
 * One row per task name over the tasks matching f enqueued from `since` on.
 * Failed and skipped counts are exact; the total and the percentiles are
 * exact too when the window holds at most DATA_EXACT_MAX tasks. A larger
 * window is answered from the rollups when f names nothing beyond
 * services, names and words (whole minutes from data_rollup_start(since):
 * exact counts, percentiles within pct_error), else from a sample (see
 * data.c), and the rows are marked estimated.
 */
int data_names_load(data *d, const filter *f, int64_t since, int64_t now_us,
                    data_name **out, int *n);
void data_names_free(data_name *rows, int n);

/* Every agent, connected ones first, then by newest event. */
int data_agents_load(data *d, data_agent **out, int *n);
void data_agents_free(data_agent *rows, int n);

#endif /* TW_DATA_H */
