/*
 * data - what the dashboard reads from the store (docs/schema.md): the
 * header's aggregates and one screenful of each view, through a read-only
 * SQLite connection that the collector writes beside.
 *
 * Every query is bounded by what is visible: lists are keyset pages over
 * the tasks_time index ("rows at or before this (enqueued_at, id)"),
 * aggregates cover recent windows through indexes, and percentiles come
 * from a per-minute sample of bounded size (see data.c), so a frame costs
 * about the same on a 10-million-task store as on a small one. Strings are
 * returned exactly as stored (any bytes): callers sanitize before display.
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

/* A keyset position: tasks are ordered by (enqueued_at, id). */
typedef struct data_key {
  int64_t at, id;
} data_key;

/* Windows of the percentile figures: 1, 5 and 15 minutes. */
#define DATA_WINDOWS 3
extern const int64_t data_window_us[DATA_WINDOWS];

typedef struct data_stats {
  /* queued and running: now, over all history; the others: tasks enqueued
   * in the last 15 minutes. */
  int64_t counts[SCHEMA_STATUS_COUNT];
  int64_t spark_tasks[DATA_SPARK_N], spark_failed[DATA_SPARK_N];
  double tasks_per_s, failed_per_s; /* over the last minute */
  /* [window][p50, p95, p99] in microseconds, DATA_NULL when no task. */
  int64_t run[DATA_WINDOWS][3], wait[DATA_WINDOWS][3];
  int64_t agents, agents_connected, agents_dropped;
  /* When the collector last received an event (its clock, reader.h
   * reader_agent_seen_sql()); DATA_NULL when the store is empty. */
  int64_t last_event_at;
} data_stats;

typedef struct data_batch {
  int64_t id, created_at;
  data_text label, service;
  data_key key; /* newest listed task of the batch, for paging */
  int ntasks;
  data_task *tasks; /* in position order */
} data_batch;

typedef struct data_name {
  data_text name;
  int64_t count, failed, skipped;
  int64_t run[3], wait[3]; /* p50, p95, p99; DATA_NULL when none */
  int estimated;           /* count is a sampled estimate */
} data_name;

typedef struct data_agent {
  int64_t id, pid, started_at, connected_at, disconnected_at, last_event_at;
  int64_t events, dropped, reconnects;
  int connected, ended;
  data_text service, host;
} data_agent;

typedef struct data data;

/* Opens the store read-only (reader_open()). Returns 0, or -1 with the
 * reader's one-line reason in err. */
int data_open(const char *path, data **out, char *err, size_t errlen);
void data_close(data *d);

/* 1 when another connection committed since the last call, else 0; the
 * first call returns 1 (reader_changed()). */
int data_changed(data *d);

/* The header's figures as of now_us. Returns 0 or -1. */
int data_stats_load(data *d, int64_t now_us, data_stats *out);

/*
 * One page of tasks matching f (NULL: all). dir < 0: up to limit tasks at
 * or before *from, newest first (from NULL: the newest tasks); dir > 0: up
 * to limit tasks strictly after *from, oldest first (from NULL: the oldest
 * tasks). *rows is an array to free with data_tasks_free(). Returns 0 or
 * -1.
 */
int data_tasks_page(data *d, const filter *f, const data_key *from, int dir,
                    int limit, data_task **rows, int *n);
void data_tasks_free(data_task *rows, int n);
data_key data_task_key(const data_task *t);

/* One task by id. Returns 0, 1 when it is gone, or -1. Free with
 * data_task_fini(). */
int data_task_detail(data *d, int64_t id, data_task *out);
void data_task_fini(data_task *t);

/*
 * Up to n batches having a task that matches f, ordered by their newest
 * matching task at or before *from (NULL: the newest), each with all of
 * its tasks. Free with data_batches_free(). Returns 0 or -1.
 */
int data_batches_page(data *d, const filter *f, const data_key *from, int n,
                      data_batch **out, int *count);
/* The key of the batch listed just above the one at *key, for scrolling
 * up: 0 and *out, or 1 when there is none. */
int data_batch_before(data *d, const filter *f, const data_key *key,
                      int64_t batch, data_key *out);
void data_batches_free(data_batch *b, int n);

/*
 * One row per task name over the tasks matching f enqueued in the 15
 * minutes before now_us. Failed and skipped counts are exact; the total
 * and the percentiles come from the per-minute sample (see data.c) and are
 * marked estimated when a minute held more tasks than its sample.
 */
int data_names_load(data *d, const filter *f, int64_t now_us, data_name **out,
                    int *n);
void data_names_free(data_name *rows, int n);

/* Every agent, connected ones first, then by newest event. */
int data_agents_load(data *d, data_agent **out, int *n);
void data_agents_free(data_agent *rows, int n);

#endif /* TW_DATA_H */
