/*
 * data - the dashboard's queries over the store (see data.h), through
 * common/reader (opening, task rows, change detection), common/stats
 * (percentiles) and common/hist (the rollups' histograms). All values are
 * bound; the only text joined into SQL is the filter's own expression, which
 * itself holds nothing but ?NNN parameters, the status fragments of
 * common/schema and this file's fixed ordering expressions.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "hist.h"
#include "stats.h"
#include "xalloc.h"

#define SECOND_US INT64_C(1000000)
#define HOUR_US INT64_C(3600000000)

struct sample_set;

/* The sparklines' and rates' one-second counts, kept (load_sparks()). */
#define SPARK_SECONDS (DATA_SPARK_N * (DATA_SPARK_US / SECOND_US))
/* A second is counted for keeps once it ended this long ago (a task's row
 * is written within about half a second of its enqueue: docs/collector.md,
 * "Tasks in flight"), and counted again after SPARK_RECOUNT_US, for the
 * rows that come later still (an agent's events held through an outage). */
#define SPARK_SETTLE_US (2 * SECOND_US)
#define SPARK_RECOUNT_US (30 * SECOND_US)

typedef struct spark_second {
  int64_t start;      /* the second, or 0: none */
  int64_t counted_at; /* the `now` it was counted at */
  int64_t tasks;
} spark_second;

struct data {
  reader *r;
  sqlite3 *db; /* the reader's connection */
  /* The unfiltered sample of the last data_stats_load(), which the names
   * view reuses when it has no filter and the same window and "now". */
  struct sample_set *sample;
  int64_t sample_now, sample_since;
  /* Settled seconds' task counts under `seconds_filter`, by second
   * modulo (data_filter_changed()). */
  spark_second seconds[SPARK_SECONDS + 1];
  const filter *seconds_filter;
};

void data_filter_changed(data *d) {
  memset(d->seconds, 0, sizeof d->seconds);
  d->seconds_filter = NULL;
}

/* A copy of text from the store that the dashboard keeps. */
static data_text owned_text(sqlite3_stmt *st, int i) {
  data_text t = {NULL, 0};
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return t;
  const char *p = (const char *)sqlite3_column_text(st, i);
  t.len = p ? (size_t)sqlite3_column_bytes(st, i) : 0;
  t.ptr = xmemdup(p ? p : "", t.len);
  return t;
}

static data_text text_dup(data_text t) {
  return t.ptr ? (data_text){xmemdup(t.ptr, t.len), t.len} : t;
}

/* The dashboard's text is its own (owned_text, text_dup). */
static void text_free(data_text *t) {
  free((void *)t->ptr);
  t->ptr = NULL;
}

static int64_t column_int(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return DATA_NULL;
  return sqlite3_column_int64(st, i);
}

/* Rows outlive their statement: each is a copy that owns its text. */
static void read_task(sqlite3_stmt *st, data_task *t) {
  reader_task row;
  reader_task_read(st, 0, &row);
  reader_task_copy(t, &row);
}

void data_task_fini(data_task *t) {
  reader_task_fini(t);
}

void data_tasks_free(data_task *rows, int n) {
  for (int i = 0; i < n; i++)
    data_task_fini(&rows[i]);
  free(rows);
}

/* A task's value in an order (the SQL of order_value(), in C). */
static int64_t task_value(const data_task *t, const data_scope *sc) {
  switch (sc ? sc->by : DATA_BY_TIME) {
  case DATA_BY_RUN:
    if (t->run_us != DATA_NULL)
      return t->run_us;
    return t->status == SCHEMA_RUNNING && t->started_at != DATA_NULL
               ? sc->now - t->started_at
               : -1;
  case DATA_BY_WAIT:
    if (t->wait_us != DATA_NULL)
      return t->wait_us;
    return t->status == SCHEMA_QUEUED && t->enqueued_at != DATA_NULL
               ? sc->now - t->enqueued_at
               : -1;
  case DATA_BY_STATUS:
    return schema_status_severity(t->status);
  default:
    return t->enqueued_at;
  }
}

data_key data_task_key(const data_task *t, const data_scope *scope) {
  data_key k = {task_value(t, scope), t->id};
  return k;
}

static int prepare(data *d, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v2(d->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -1;
}

int data_open(const char *path, data **out, char *err, size_t errlen) {
  reader *r = NULL;
  int rc = reader_open(path, &r, err, errlen);
  if (rc != READER_OK)
    return rc;
  data *d = xcalloc(1, sizeof *d);
  d->r = r;
  d->db = reader_db(r);
  *out = d;
  return 0;
}

static void drop_sample(data *d);

void data_close(data *d) {
  if (d == NULL)
    return;
  drop_sample(d);
  reader_close(d->r);
  free(d);
}

int data_changed(data *d) {
  return reader_changed(d->r);
}

/* Runs a statement whose rows are (int, int) and calls add for each. */
static int each_pair(sqlite3_stmt *st, void (*add)(void *, int64_t, int64_t),
                     void *arg) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    add(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
  return rc == SQLITE_DONE ? 0 : -1;
}

static void add_count(void *arg, int64_t status, int64_t n) {
  int64_t *counts = arg;
  if (status >= 0 && status < SCHEMA_STATUS_COUNT)
    counts[status] += n;
}

static int prepare_mapped(data *d, const filter *f, const char *head,
                          const char *tail, int first,
                          const char *const (*map)[2], size_t nmap,
                          sqlite3_stmt **st);
static int prepare_filtered(data *d, const filter *f, const char *head,
                            const char *tail, int first, int own_range,
                            sqlite3_stmt **st);
static int prepare_tasks_only(data *d, const filter *f, const char *head,
                              const char *tail, int first, int own_range,
                              sqlite3_stmt **st);

/* f, or NULL when it matches everything (so no join is needed). */
static const filter *effective(const filter *f) {
  return f && filter_param_count(f) == 0 && strcmp(filter_sql(f), "1") == 0
             ? NULL
             : f;
}

/* Runs a (status, count) statement into counts; ?1 is `since` when the
 * statement has it (binding an unused index does no harm). */
static int count_by_status(data *d, const filter *f, const char *head,
                           const char *tail, int64_t since, int64_t *counts) {
  sqlite3_stmt *st = NULL;
  if (prepare_tasks_only(d, f, head, tail, 2, 0, &st))
    return -1;
  sqlite3_bind_int64(st, 1, since);
  int rc = each_pair(st, add_count, counts);
  sqlite3_finalize(st);
  return rc;
}

static int rollups_answer(const filter *f);
static int each_rollup(data *d, const filter *f, int64_t start,
                       void (*row)(void *, sqlite3_stmt *), void *arg);
static int64_t floor_to(int64_t t, int64_t width);

/* The first integer of a statement's first row into *out (DATA_NULL when
 * no row or NULL), then finalizes it; ?1 bound to a, and ?2 to b when
 * two. 0, or -1 on an error. */
static int first_int(sqlite3_stmt *st, int two, int64_t a, int64_t b,
                     int64_t *out) {
  sqlite3_bind_int64(st, 1, a);
  if (two)
    sqlite3_bind_int64(st, 2, b);
  int rc = sqlite3_step(st);
  *out = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
             ? sqlite3_column_int64(st, 0)
             : DATA_NULL;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* The first whole minute from which the rollups (and slowest) hold what
 * the raw rows hold, for a window from `since`: the minute after the
 * oldest succeeded task's (retention prunes raw rows before the rollups;
 * it keeps failures longer), or since's first whole minute if later.
 * Returns 0 with *start, 1 when no task succeeded yet, -1 on an error. */
static int whole_minutes_from(data *d, int64_t since, int64_t *start) {
  sqlite3_stmt *st = NULL;
  int64_t oldest;
  if (prepare(d,
              "SELECT enqueued_at FROM tasks WHERE " SCHEMA_SQL_SUCCEEDED_NO_INDEX
              " ORDER BY enqueued_at LIMIT 1",
              &st) ||
      first_int(st, 0, 0, 0, &oldest))
    return -1;
  if (oldest == DATA_NULL)
    return 1;
  *start = floor_to(oldest, DATA_MINUTE_US) + DATA_MINUTE_US;
  if (since != INT64_MIN && since > *start)
    *start = floor_to(since + DATA_MINUTE_US - 1, DATA_MINUTE_US);
  return 0;
}

static void add_final_counts(void *arg, sqlite3_stmt *st) {
  int64_t *counts = arg;
  for (int i = 0; i < 5; i++)
    counts[SCHEMA_SUCCEEDED + i] += sqlite3_column_int64(st, 1 + i);
}

/*
 * The tasks matching f enqueued from `since` on, by state, without reading
 * each: the rollups count every final task of a whole minute by state
 * (docs/schema.md), so the counts are the raw ones of the part of the
 * window before its first whole minute, plus the rollups from that minute
 * on, plus the tasks from it on that are not final yet (queued, running:
 * tasks_unusual). Exact, like the raw counts, where the rollups hold what
 * the raw rows hold: from the minute after the oldest succeeded task on
 * (retention prunes raw rows before the rollups), and, under a filter of
 * names or services, where no name was folded into SCHEMA_OTHER_NAME.
 * Returns 0 with counts added to, 1 when the rollups cannot answer, -1 on
 * an error.
 */
static int rollup_counts(data *d, const filter *f, int64_t since,
                         int64_t *counts) {
  sqlite3_stmt *st = NULL;
  int64_t start;
  if (!rollups_answer(f))
    return 1;
  int rc = whole_minutes_from(d, since, &start);
  if (rc != 0)
    return rc;
  if (f != NULL) {
    int64_t folded;
    if (prepare(d,
                "SELECT 1 FROM rollups_hour WHERE hour >= ?1 AND name = '"
                "" SCHEMA_OTHER_NAME "' LIMIT 1",
                &st) ||
        first_int(st, 0, floor_to(start, HOUR_US), 0, &folded))
      return -1;
    if (folded != DATA_NULL)
      return 1;
  }
  /* The edge as the raw path counts a window: all of it through
   * tasks_time, the few unusual ones by state through tasks_unusual (a
   * GROUP BY over the edge would sort every row of it). */
  int64_t edge, unusual[SCHEMA_STATUS_COUNT] = {0};
  if (prepare_tasks_only(d, f,
                         "SELECT count(*)" READER_TASK_FROM
                         " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
                         "", 3, 0, &st) ||
      first_int(st, 1, since, start, &edge) ||
      prepare_tasks_only(d, f,
                         "SELECT t.status, count(*)" READER_TASK_FROM
                         " WHERE " SCHEMA_SQL_UNUSUAL_EACH
                         " AND t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
                         "GROUP BY t.status", 3, 0, &st))
    return -1;
  sqlite3_bind_int64(st, 1, since);
  sqlite3_bind_int64(st, 2, start);
  rc = each_pair(st, add_count, unusual);
  sqlite3_finalize(st);
  for (int i = 0; i < SCHEMA_STATUS_COUNT; i++) {
    counts[i] += unusual[i];
    edge -= unusual[i];
  }
  counts[SCHEMA_SUCCEEDED] += edge;
  if (rc ||
      count_by_status(d, f,
                      "SELECT t.status, count(*)" READER_TASK_FROM
                      " WHERE " SCHEMA_SQL_ACTIVE " AND t.enqueued_at >= ?1",
                      "GROUP BY t.status", start, counts) ||
      each_rollup(d, f, start, add_final_counts, counts))
    return -1;
  return 0;
}

/* Counts by state in the window, and queued and running now: from the
 * rollups (rollup_counts()) when they can answer, else from the raw rows.
 * There the partial index tasks_unusual holds every task that did not
 * succeed, so succeeded = all in the window - the unusual ones in it: the
 * total comes from tasks_time (which also holds the name, so a name
 * filter reads no row) and the rest from the few unusual tasks. */
static int load_counts(data *d, const filter *f, int64_t since, data_stats *s) {
  int64_t active[SCHEMA_STATUS_COUNT] = {0}, total = 0, unusual = 0;
  sqlite3_stmt *st = NULL;
  int rc = rollup_counts(d, f, since, s->counts);
  if (rc == 1) {
    memset(s->counts, 0, sizeof s->counts);
    if (prepare_tasks_only(d, f,
                           "SELECT count(*)" READER_TASK_FROM
                           " WHERE t.enqueued_at >= ?1",
                           "", 2, 0, &st) ||
        first_int(st, 0, since, 0, &total) ||
        count_by_status(d, f,
                        "SELECT t.status, count(*)" READER_TASK_FROM
                        " WHERE " SCHEMA_SQL_UNUSUAL_EACH
                        " AND t.enqueued_at >= ?1",
                        "GROUP BY t.status", since, s->counts))
      rc = -1;
  }
  if (rc < 0 || count_by_status(d, f,
                                "SELECT t.status, count(*)" READER_TASK_FROM
                                " WHERE " SCHEMA_SQL_ACTIVE,
                                "GROUP BY t.status", since, active))
    return -1;
  if (rc == 0) {
    for (int i = 0; i < SCHEMA_STATUS_COUNT; i++)
      total += s->counts[i];
  } else {
    for (int i = 0; i < SCHEMA_STATUS_COUNT; i++)
      unusual += s->counts[i];
    s->counts[SCHEMA_SUCCEEDED] = total - unusual;
  }
  s->queued_now = active[SCHEMA_QUEUED];
  s->running_now = active[SCHEMA_RUNNING];
  s->total = total;
  return 0;
}

/* Counts of the matching tasks (failed: failed ones) enqueued in each of n
 * buckets of width_us from t0 on, the last one open-ended: one range count
 * per bucket through the index, cheaper than a GROUP BY over an expression
 * (which sorts every row). */
static int bucket_counts(data *d, const filter *f, int failed, int64_t t0,
                         int64_t width_us, int n, int64_t *out) {
  static const char *const head[2] = {
      "SELECT count(*)" READER_TASK_FROM
      " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
      "SELECT count(*)" READER_TASK_FROM " WHERE " SCHEMA_SQL_FAILED
      " AND t.enqueued_at >= ?1 AND t.enqueued_at < ?2"};
  sqlite3_stmt *st = NULL;
  if (prepare_tasks_only(d, f, head[failed], "", 3, 0, &st))
    return -1;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, t0 + i * width_us);
    sqlite3_bind_int64(st, 2, i == n - 1 ? INT64_MAX : t0 + (i + 1) * width_us);
    if (sqlite3_step(st) == SQLITE_ROW)
      out[i] = sqlite3_column_int64(st, 0);
    else
      rc = -1;
  }
  sqlite3_finalize(st);
  return rc;
}

/* The tasks matching f enqueued in each of the SPARK_SECONDS seconds
 * before now's and in now's (open-ended: SPARK_SECONDS + 1 counts) into
 * out. A second that settled is counted once and kept for
 * SPARK_RECOUNT_US, for the same filter object (data_filter_changed()):
 * counting a range reads every entry of it, and five minutes of a store
 * of 100 M tasks a day are 350 k entries, most of a frame's CPU. */
static int second_counts(data *d, const filter *f, int64_t first,
                         int64_t now_us, int64_t *out) {
  sqlite3_stmt *st = NULL;
  if (prepare_tasks_only(d, f,
                         "SELECT count(*)" READER_TASK_FROM
                         " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
                         "", 3, 0, &st))
    return -1;
  int rc = 0;
  if (f != d->seconds_filter) {
    data_filter_changed(d);
    d->seconds_filter = f;
  }
  for (int i = 0; i <= SPARK_SECONDS && rc == 0; i++) {
    int64_t start = first + i * SECOND_US;
    spark_second *c = &d->seconds[(start / SECOND_US) % (SPARK_SECONDS + 1)];
    if (c->start == start && now_us - c->counted_at < SPARK_RECOUNT_US) {
      out[i] = c->tasks;
      continue;
    }
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, start);
    sqlite3_bind_int64(st, 2,
                       i == SPARK_SECONDS ? INT64_MAX : start + SECOND_US);
    if (sqlite3_step(st) != SQLITE_ROW) {
      rc = -1;
      break;
    }
    out[i] = sqlite3_column_int64(st, 0);
    if (start + SECOND_US <= now_us - SPARK_SETTLE_US)
      *c = (spark_second){start, now_us, out[i]};
  }
  sqlite3_finalize(st);
  return rc;
}

/* The sparklines (DATA_SPARK_N buckets up to now, of whole seconds: the
 * last one open-ended) and the one-second buckets of the rates: the task
 * counts from second_counts(), the failed ones (few, through
 * tasks_unusual) counted each time. */
static int load_sparks(data *d, const filter *f, int64_t now_us,
                       data_stats *s) {
  int64_t seconds[SPARK_SECONDS + 1];
  int64_t first = now_us - now_us % SECOND_US - SPARK_SECONDS * SECOND_US;
  int64_t t0 = first;
  s->rate_t0 = now_us - now_us % SECOND_US - DATA_RATE_S * SECOND_US;
  if (second_counts(d, f, first, now_us, seconds) ||
      bucket_counts(d, f, 1, t0, DATA_SPARK_US, DATA_SPARK_N,
                    s->spark_failed) ||
      bucket_counts(d, f, 1, s->rate_t0, SECOND_US, DATA_RATE_S + 1,
                    s->rate_failed))
    return -1;
  int per = (int)(DATA_SPARK_US / SECOND_US);
  for (int i = 0; i < DATA_SPARK_N; i++) {
    s->spark_tasks[i] = 0;
    for (int k = 0; k < per; k++)
      s->spark_tasks[i] += seconds[i * per + k];
  }
  s->spark_tasks[DATA_SPARK_N - 1] += seconds[SPARK_SECONDS];
  for (int j = 0; j <= DATA_RATE_S; j++)
    s->rate_tasks[j] = seconds[SPARK_SECONDS - DATA_RATE_S + j];
  return 0;
}

double data_rate(const data_stats *s, int64_t now_us, int failed) {
  const int64_t *v = failed ? s->rate_failed : s->rate_tasks;
  int64_t sum = 0;
  for (int i = 0; i <= DATA_RATE_S; i++) {
    int64_t start = s->rate_t0 + i * SECOND_US;
    if (start >= now_us - DATA_RATE_S * SECOND_US && start <= now_us)
      sum += v[i];
  }
  return (double)sum / DATA_RATE_S;
}

/* ---- percentiles: every task of a small window, a sample of a large one
 *
 * Percentiles need the values themselves. A window of at most
 * DATA_EXACT_MAX tasks is read whole, so its figures are exact. A larger
 * one that the rollups cannot answer (below) is cut into strata: the last
 * minute into strata of STRATUM_US, the rest of the window into at most
 * STRATA_OLDER strata of a width that is a multiple of STRATUM_US. Strata are
 * aligned to whole multiples of their width since the epoch, not to "now", so a
 * store that does not change gives the same sample, and the same figures, frame
 * after frame. Each stratum's newest tasks are read, up to SAMPLE_RECENT per
 * stratum in the last minute (which alone makes the 1-minute figures) and
 * SAMPLE_OLDER before it, and when a stratum holds more, each of its samples
 * weighs count / samples. The cost of a frame stays bounded on any store. */

#define STRATUM_US INT64_C(5000000)
#define STRATA_OLDER 168
#define SAMPLE_RECENT 84
#define SAMPLE_OLDER 21
/* Sample weights are whole numbers in units of 1/WEIGHT_UNIT task: a
 * sample of a stratum over its cap weighs count / cap tasks, and a unit
 * that both caps divide makes that exact (common/stats takes integers). */
#define WEIGHT_UNIT 84
_Static_assert(WEIGHT_UNIT % SAMPLE_RECENT == 0 &&
                   WEIGHT_UNIT % SAMPLE_OLDER == 0,
               "every cap must divide WEIGHT_UNIT");

typedef struct sample {
  int64_t at, run, wait;
  int64_t weight; /* in 1/WEIGHT_UNIT tasks */
  int status;
  data_text name;
} sample;

typedef struct sample_set {
  sample *v;
  size_t n, cap;
  int estimated; /* some stratum was over its cap */
} sample_set;

static void sample_set_free(sample_set *set) {
  for (size_t i = 0; i < set->n; i++)
    text_free(&set->v[i].name);
  free(set->v);
  memset(set, 0, sizeof *set);
}

/* The two statements of a sample: the newest rows of a stratum, and the
 * count of a stratum; both take [?1, ?2) and the first a LIMIT ?3. */
static int prepare_sample(data *d, const filter *f, sqlite3_stmt **rows,
                          sqlite3_stmt **count) {
  *rows = *count = NULL;
  if (prepare_tasks_only(d, f,
                         "SELECT t.enqueued_at, t.status, t.run_us, t.wait_us, "
                         "t.name" READER_TASK_FROM
                         " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
                         "ORDER BY t.enqueued_at DESC LIMIT ?3", 4, 1,
                         rows) == 0 &&
      prepare_tasks_only(d, f,
                         "SELECT count(*)" READER_TASK_FROM
                         " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
                         "", 4, 1, count) == 0)
    return 0;
  sqlite3_finalize(*rows);
  sqlite3_finalize(*count);
  return -1;
}

static sample *sample_push(sample_set *set) {
  if (set->n == set->cap) {
    set->cap = set->cap ? set->cap * 2 : 1024;
    set->v = xrealloc(set->v, set->cap * sizeof *set->v);
  }
  sample *x = &set->v[set->n++];
  memset(x, 0, sizeof *x);
  return x;
}

/* Reads the newest `limit` tasks of [from, to) (limit < 0: all). */
static int sample_stratum(sqlite3_stmt *rows, sqlite3_stmt *count, int64_t from,
                          int64_t to, int limit, sample_set *set) {
  int rc;
  sqlite3_reset(rows);
  sqlite3_bind_int64(rows, 1, from);
  sqlite3_bind_int64(rows, 2, to);
  sqlite3_bind_int(rows, 3, limit);
  size_t first = set->n;
  while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
    sample *x = sample_push(set);
    x->at = sqlite3_column_int64(rows, 0);
    x->status = sqlite3_column_int(rows, 1);
    x->run = column_int(rows, 2);
    x->wait = column_int(rows, 3);
    x->weight = WEIGHT_UNIT;
    x->name = owned_text(rows, 4);
    if (x->name.ptr == NULL)
      x->name = (data_text){xstrdup(""), 0};
  }
  if (rc != SQLITE_DONE)
    return -1;
  size_t got = set->n - first;
  if (limit < 0 || (int)got < limit)
    return 0;
  /* Over its cap (LIMIT makes got == limit): each sample stands for
   * all / limit tasks. */
  sqlite3_reset(count);
  sqlite3_bind_int64(count, 1, from);
  sqlite3_bind_int64(count, 2, to);
  if (sqlite3_step(count) != SQLITE_ROW)
    return -1;
  int64_t all = sqlite3_column_int64(count, 0);
  set->estimated = set->estimated || all > (int64_t)got;
  for (size_t i = first; i < set->n; i++)
    set->v[i].weight = all * (WEIGHT_UNIT / limit);
  return 0;
}

/* The start of the oldest task, for the window "all": the sample's strata
 * must start somewhere. */
static int64_t oldest_task(data *d) {
  sqlite3_stmt *st = NULL;
  int64_t at = INT64_MAX;
  if (prepare(d, "SELECT min(enqueued_at) FROM tasks", &st) == 0 &&
      sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_type(st, 0) != SQLITE_NULL)
    at = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return at;
}

static int64_t floor_to(int64_t t, int64_t width) {
  int64_t r = t % width;
  return r < 0 ? t - r - width : t - r;
}

/* Samples the strata of [from, to) (to INT64_MAX: open-ended), newest
 * first: strata of `width` aligned to its multiples, clipped to the
 * range. */
static int sample_range(sqlite3_stmt *rows, sqlite3_stmt *count, int64_t from,
                        int64_t to, int64_t width, int limit, int64_t now_us,
                        sample_set *set) {
  int64_t start = floor_to(to == INT64_MAX ? now_us : to - 1, width);
  int64_t end = to;
  for (int rc = 0; end > from; end = start, start -= width) {
    rc = sample_stratum(rows, count, start > from ? start : from, end, limit,
                        set);
    if (rc)
      return rc;
  }
  return 0;
}

/* Samples the tasks enqueued from `since` on (every one when exact). */
static int sample_window(data *d, const filter *f, int64_t since,
                         int64_t now_us, int exact, sample_set *set) {
  sqlite3_stmt *rows, *count;
  memset(set, 0, sizeof *set);
  if (prepare_sample(d, effective(f), &rows, &count))
    return -1;
  int rc;
  if (exact) {
    rc = sample_stratum(rows, count, since, INT64_MAX, -1, set);
  } else {
    /* The newest stratum is open-ended: a task stamped a little after
     * now_us (another host's clock) still counts. */
    int64_t minute = now_us - DATA_MINUTE_US;
    if (since == INT64_MIN)
      since = oldest_task(d);
    int64_t from = since > minute ? since : minute;
    rc = sample_range(rows, count, from, INT64_MAX, STRATUM_US, SAMPLE_RECENT,
                      now_us, set);
    if (rc == 0 && since < minute) {
      int64_t width = (minute - since) / STRATA_OLDER + 1;
      width = (width + STRATUM_US - 1) / STRATUM_US * STRATUM_US;
      rc = sample_range(rows, count, since, minute, width, SAMPLE_OLDER, now_us,
                        set);
    }
  }
  sqlite3_finalize(rows);
  sqlite3_finalize(count);
  if (rc)
    sample_set_free(set);
  return rc;
}

/* Percentiles p50, p95, p99 of one field (run or wait) over the samples
 * enqueued since `since`, weighted (common/stats: nearest rank when all
 * weigh the same); DATA_NULL where there is none. buf is scratch. */
static void percentiles_of(const sample_set *set, int64_t since, int wait,
                           stats_weighted *buf, int64_t out[3]) {
  static const unsigned per_mille[3] = {500, 950, 990};
  stats_weighted_clear(buf);
  for (size_t i = 0; i < set->n; i++) {
    const sample *x = &set->v[i];
    int64_t v = wait ? x->wait : x->run;
    if (x->at >= since && v != DATA_NULL)
      stats_weighted_push(buf, v, x->weight);
  }
  for (int k = 0; k < 3; k++)
    if (stats_weighted_percentile(buf, per_mille[k], &out[k]) != 0)
      out[k] = DATA_NULL;
}

static void drop_sample(data *d) {
  if (d->sample) {
    sample_set_free(d->sample);
    free(d->sample);
    d->sample = NULL;
  }
}

/* ---- the rollups: whole minutes of a large window -------------------
 *
 * A window the rollups can answer (no filter beyond service, name and
 * words) that holds more than DATA_EXACT_MAX tasks takes its percentiles
 * from the rollups' histograms (docs/schema.md): whole minutes from the
 * minute `since` falls in, each hour whole from rollups_hour, so the cost
 * is a few rows per minute (hour) and name, exact counts, and percentiles
 * within HIST_ERROR_PCT of exact nearest-rank ones. They move when a
 * minute begins or the store changes, not with every frame. */

int64_t data_rollup_start(int64_t since) {
  return since == INT64_MIN ? since : floor_to(since, DATA_MINUTE_US);
}

/* The rollups answer a filter of service, name and word terms, and of
 * since: terms, which data_stats_load() and data_names_load() take into
 * the window first (narrow_since()); the rollups from the window's start
 * on then meet them all (prepare_rollups()). */
static int rollups_answer(const filter *f) {
  if (f == NULL)
    return 1;
  unsigned uses = filter_uses(f);
  int64_t since, until;
  filter_time_range(f, &since, &until);
  return (uses & FILTER_USES_OTHER) == 0 &&
         ((uses & FILTER_USES_TIME) == 0 || until == INT64_MAX);
}

/* The window from `since` narrowed by f's since: terms (the same tasks
 * match: the filter holds those terms anyway). */
static int64_t narrow_since(const filter *f, int64_t since) {
  int64_t from = INT64_MIN, until;
  if (f != NULL)
    filter_time_range(f, &from, &until);
  return from > since ? from : since;
}

/* The percentiles p50, p95, p99 of h into out (DATA_NULL when empty). */
static void hist_percentiles(const hist_sparse *h, int64_t out[3]) {
  static const unsigned per_mille[3] = {500, 950, 990};
  for (int k = 0; k < 3; k++)
    if (hist_sparse_percentile(h, per_mille[k], &out[k]) != 0)
      out[k] = DATA_NULL;
}

/* Adds a stored histogram (column i) to h; a damaged one is left out. */
static void add_hist_column(sqlite3_stmt *st, int i, hist_sparse *h) {
  if (sqlite3_column_type(st, i) != SQLITE_NULL)
    hist_sparse_add_blob(h, sqlite3_column_blob(st, i),
                         (size_t)sqlite3_column_bytes(st, i));
}

/* Prepares a statement over the rollups `r` whose filter, with columns
 * mapped to theirs, is numbered from ?first and bound. */
static int prepare_rollups(data *d, const filter *f, const char *head,
                           int first, sqlite3_stmt **st) {
  /* A since: term is met by every rollup read (rollups_answer()): its
   * "t.enqueued_at >= ?" reads as true. */
  static const char *const columns[][2] = {
      {"t.name", "r.name"},
      {"a.service", "r.service"},
      {"t.enqueued_at", "9223372036854775807"}};
  return prepare_mapped(d, f, head, "", first, columns, 3, st);
}

#define ROLLUP_COLUMNS                                                         \
  "SELECT r.name, r.succeeded, r.failed, r.skipped, r.dropped, r.lost, "       \
  "r.run_hist, r.wait_hist FROM "

/* Calls row() for every rollup row matching f from `start` (a whole
 * minute, or INT64_MIN) on: the minutes up to the first whole hour, then
 * the hours. Each row's columns are ROLLUP_COLUMNS's. */
static int each_rollup(data *d, const filter *f, int64_t start,
                       void (*row)(void *, sqlite3_stmt *), void *arg) {
  int64_t hour =
      start == INT64_MIN ? start : floor_to(start + HOUR_US - 1, HOUR_US);
  sqlite3_stmt *st = NULL;
  int rc = SQLITE_DONE;
  if (start < hour) {
    if (prepare_rollups(d, f,
                        ROLLUP_COLUMNS "rollups r WHERE r.minute >= ?1 AND "
                                       "r.minute < ?2",
                        3, &st))
      return -1;
    sqlite3_bind_int64(st, 1, start);
    sqlite3_bind_int64(st, 2, hour);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      row(arg, st);
    sqlite3_finalize(st);
    st = NULL;
  }
  if (rc != SQLITE_DONE ||
      prepare_rollups(d, f, ROLLUP_COLUMNS "rollups_hour r WHERE r.hour >= ?1",
                      2, &st))
    return -1;
  sqlite3_bind_int64(st, 1, hour);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    row(arg, st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Calls row() for each task matching f enqueued from `start` on that is
 * still queued or running (raw rows, through tasks_unusual): the rollups
 * count a task once it is final. Columns: name, wait_us. */
static int each_active(data *d, const filter *f, int64_t start,
                       void (*row)(void *, sqlite3_stmt *), void *arg) {
  sqlite3_stmt *st = NULL;
  if (prepare_filtered(d, f,
                       "SELECT t.name, t.wait_us" READER_TASK_FROM
                       " WHERE " SCHEMA_SQL_ACTIVE " AND t.enqueued_at >= ?1",
                       "", 2, 1, &st))
    return -1;
  sqlite3_bind_int64(st, 1, start);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    row(arg, st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static void rollup_hists(void *arg, sqlite3_stmt *st) {
  hist_sparse *h = arg;
  add_hist_column(st, 6, &h[0]);
  add_hist_column(st, 7, &h[1]);
}

/* A task still running has waited already: its wait counts too, as in the
 * raw rows. */
static void active_wait(void *arg, sqlite3_stmt *st) {
  hist_sparse *h = arg;
  if (sqlite3_column_type(st, 1) != SQLITE_NULL)
    hist_sparse_add(&h[1], sqlite3_column_int64(st, 1));
}

/* The header's percentiles of both spans from the rollups. */
static int load_rollups(data *d, const filter *f, int64_t since, int64_t now_us,
                        data_stats *s) {
  int64_t minute = now_us - DATA_MINUTE_US;
  int64_t from[DATA_WINDOWS] = {minute > since ? minute : since, since};
  int rc = 0;
  for (int w = 0; w < DATA_WINDOWS; w++) {
    hist_sparse h[2];
    hist_sparse_init(&h[0]);
    hist_sparse_init(&h[1]);
    int64_t start = data_rollup_start(from[w]);
    if (rc == 0 && (each_rollup(d, f, start, rollup_hists, h) ||
                    each_active(d, f, start, active_wait, h)))
      rc = -1;
    hist_percentiles(&h[0], s->run[w]);
    hist_percentiles(&h[1], s->wait[w]);
    hist_sparse_fini(&h[0]);
    hist_sparse_fini(&h[1]);
  }
  s->pct_error = HIST_ERROR_PCT;
  return rc;
}

static int load_percentiles(data *d, const filter *f, int64_t since,
                            int64_t now_us, data_stats *s) {
  drop_sample(d);
  s->exact = s->total <= DATA_EXACT_MAX;
  if (!s->exact && rollups_answer(f))
    return load_rollups(d, f, since, now_us, s);
  sample_set *set = xmalloc(sizeof *set);
  if (sample_window(d, f, since, now_us, s->exact, set)) {
    free(set);
    return -1;
  }
  stats_weighted buf;
  stats_weighted_init(&buf);
  int64_t minute = now_us - DATA_MINUTE_US;
  int64_t from[DATA_WINDOWS] = {minute > since ? minute : since, since};
  for (int w = 0; w < DATA_WINDOWS; w++) {
    percentiles_of(set, from[w], 0, &buf, s->run[w]);
    percentiles_of(set, from[w], 1, &buf, s->wait[w]);
  }
  stats_weighted_fini(&buf);
  if (f == NULL) {
    d->sample = set;
    d->sample_now = now_us;
    d->sample_since = since;
  } else {
    sample_set_free(set);
    free(set);
  }
  return 0;
}

static int load_agent_totals(data *d, data_stats *s) {
  sqlite3_stmt *st = NULL;
  char *sql = sqlite3_mprintf(
      "SELECT count(*), coalesce(sum(connected), 0), coalesce(sum(dropped), "
      "0), max(%s), coalesce(sum(%s), 0), coalesce(sum(%s), 0) FROM agents",
      reader_agent_seen_sql(d->r), reader_agent_dropped_tasks_sql(d->r),
      reader_agent_dropped_batches_sql(d->r));
  int failed = prepare(d, sql, &st);
  sqlite3_free(sql);
  if (failed)
    return -1;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    s->agents = sqlite3_column_int64(st, 0);
    s->agents_connected = sqlite3_column_int64(st, 1);
    s->agents_dropped = sqlite3_column_int64(st, 2);
    s->last_event_at = column_int(st, 3);
    s->agents_dropped_tasks = sqlite3_column_int64(st, 4);
    s->agents_dropped_batches = sqlite3_column_int64(st, 5);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

int data_stats_load(data *d, const filter *f, int64_t since, int64_t now_us,
                    data_stats *out) {
  memset(out, 0, sizeof *out);
  out->last_event_at = DATA_NULL;
  out->since = since;
  f = effective(f);
  since = narrow_since(f, since);
  int rc = 0;
  /* One read transaction, so the figures agree with each other. */
  sqlite3_exec(d->db, "BEGIN", NULL, NULL, NULL);
  if (load_counts(d, f, since, out) || load_sparks(d, f, now_us, out) ||
      load_percentiles(d, f, since, now_us, out) || load_agent_totals(d, out))
    rc = -1;
  sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
  return rc;
}

/* Prepares "head AND (filter) tail" with the filter's parameters numbered
 * from ?first and bound, its columns renamed by map (filter_sql_map()). */
static int prepare_mapped(data *d, const filter *f, const char *head,
                          const char *tail, int first,
                          const char *const (*map)[2], size_t nmap,
                          sqlite3_stmt **st) {
  char *where = f ? filter_sql_map(f, first, map, nmap) : NULL;
  char *sql =
      sqlite3_mprintf("%s AND (%s) %s", head, where ? where : "1", tail);
  free(where);
  int rc = prepare(d, sql, st);
  sqlite3_free(sql);
  if (rc == 0 && f && filter_bind(f, *st, first) < 0) {
    sqlite3_finalize(*st);
    *st = NULL;
    return -1;
  }
  return rc;
}

/* Prepares "SELECT columns FROM ... WHERE (filter) AND extra ..." with the
 * filter's parameters numbered from ?first and bound. With own_range, the
 * head states the range of enqueue times to read, and the filter's time
 * terms are written so that SQLite does not take them for index bounds
 * (with several bounds of bound values on a column, it may pick any). */
static int prepare_filtered(data *d, const filter *f, const char *head,
                            const char *tail, int first, int own_range,
                            sqlite3_stmt **st) {
  static const char *const unindexed[][2] = {
      {"t.enqueued_at", "+t.enqueued_at"}};
  return prepare_mapped(d, f, head, tail, first, unindexed, own_range ? 1 : 0,
                        st);
}

/*
 * prepare_filtered() for a statement that reads columns of tasks alone
 * (counts, samples): head names its tables as READER_TASK_FROM, and when
 * the filter needs no column of agents or batches that join is left out,
 * so an index of tasks can answer without reading a row (SQLite keeps
 * such joins in an aggregate).
 */
static int prepare_tasks_only(data *d, const filter *f, const char *head,
                              const char *tail, int first, int own_range,
                              sqlite3_stmt **st) {
  if (f && (filter_uses(f) & FILTER_USES_JOIN))
    return prepare_filtered(d, f, head, tail, first, own_range, st);
  const char *join = strstr(head, READER_TASK_FROM);
  if (join == NULL)
    return prepare_filtered(d, f, head, tail, first, own_range, st);
  char *alone = sqlite3_mprintf("%.*s" READER_TASK_ALONE_FROM "%s",
                                (int)(join - head), head,
                                join + strlen(READER_TASK_FROM));
  int rc = prepare_filtered(d, f, alone, tail, first, own_range, st);
  sqlite3_free(alone);
  return rc;
}

/* ---- lists in an order ---------------------------------------------
 *
 * A list is ordered by (value, id), both descending or both ascending.
 * Every list statement takes ?1 since, ?2 and ?3 the key (value, id), ?4
 * the limit, ?5 now, and the filter's parameters from ?6. */

#define LIST_FILTER_FIRST 6

/* A task's value in an order, as SQL (task_value() in C). */
static const char *order_value(int by) {
  switch (by) {
  case DATA_BY_RUN:
    return "(CASE WHEN t.run_us IS NOT NULL THEN t.run_us WHEN status "
           "= " SCHEMA_SQL_CODE(
               RUNNING) " AND t.started_at IS NOT NULL THEN ?5 - t.started_at "
                        "ELSE -1 END)";
  case DATA_BY_WAIT:
    return "(CASE WHEN t.wait_us IS NOT NULL THEN t.wait_us WHEN status "
           "= " SCHEMA_SQL_CODE(QUEUED) " THEN ?5 - t.enqueued_at ELSE -1 END)";
  case DATA_BY_STATUS:
    return SCHEMA_SQL_SEVERITY;
  default:
    return "t.enqueued_at";
  }
}

/* A batch's value over its matching tasks: total run time, longest wait,
 * worst state. */
static const char *batch_value(int by) {
  switch (by) {
  case DATA_BY_RUN:
    return "sum(max(%s, 0))";
  case DATA_BY_WAIT:
  case DATA_BY_STATUS:
  default:
    return "max(%s)";
  }
}

static const data_scope time_order = {INT64_MIN, 0, DATA_BY_TIME, 1};

/* The keyset condition and ORDER BY of a page, as text: rows from the key
 * on (down: the key included, in list order) or before it (up: nearest
 * first), for the value `v` and the id column `id`. */
static char *keyset(const data_scope *sc, int up, const char *v,
                    const char *id) {
  int desc = sc->desc != up; /* the direction rows are read in */
  const char *cmp = desc ? "<" : ">", *dir = desc ? "DESC" : "ASC";
  return sqlite3_mprintf("(%s %s= ?2 AND (%s %s ?2 OR %s %s%s ?3)) ORDER BY "
                         "%s %s, %s %s LIMIT ?4",
                         v, cmp, v, cmp, id, cmp, up ? "" : "=", v, dir, id,
                         dir);
}

/* Binds ?1..?5 of a list statement. A missing key is the first row in
 * the direction the rows are read in. */
static void bind_list(sqlite3_stmt *st, const data_scope *sc, int up,
                      const data_key *from, int limit) {
  int desc = sc->desc != up;
  data_key edge = {desc ? INT64_MAX : INT64_MIN, desc ? INT64_MAX : INT64_MIN};
  if (from)
    edge = *from;
  sqlite3_bind_int64(st, 1, sc->since);
  sqlite3_bind_int64(st, 2, edge.at);
  sqlite3_bind_int64(st, 3, edge.id);
  sqlite3_bind_int(st, 4, limit);
  sqlite3_bind_int64(st, 5, sc->now);
}

/* ---- the slowest tasks of a window, minute by minute ----------------
 *
 * A page by run time, longest first, with no filter: the table slowest
 * (schema.h) holds each minute's SCHEMA_SLOWEST_PER_MINUTE slowest tasks,
 * so the page is the best `limit` of each minute's best (from `since` on
 * in the first minute), merged in a bounded heap, with the raw rows of
 * minutes before the raw rows are whole (whole_minutes_from()), and the
 * tasks running now (run time so far, from tasks_unusual). Once
 * the heap is full a minute is asked only for runs at or above its last.
 * A minute holding SCHEMA_SLOWEST_PER_MINUTE rows may have faster tasks
 * that are not in it: if the page reaches below such a minute's fastest
 * row, or reaches the tasks without a run time (they sort last), it is
 * left to the sort of the whole window, as are stores without the table.
 * So the list is the same as that sort's. */

typedef struct run_key {
  int64_t v, id, batch;
} run_key;

/* a after b in the list, longest first (ties: larger id first). */
static int run_after(run_key a, run_key b) {
  return a.v < b.v || (a.v == b.v && a.id < b.id);
}

/* A heap of at most cap keys whose root is the last of them in the list. */
typedef struct run_heap {
  run_key *v;
  int n, cap;
} run_heap;

static void run_heap_push(run_heap *h, run_key k) {
  int i;
  if (h->n < h->cap) {
    i = h->n++;
    while (i > 0 && run_after(k, h->v[(i - 1) / 2])) {
      h->v[i] = h->v[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    h->v[i] = k;
    return;
  }
  if (!run_after(h->v[0], k))
    return;
  i = 0; /* k replaces the root and sinks */
  for (;;) {
    int c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && run_after(h->v[c + 1], h->v[c]))
      c++;
    if (!run_after(h->v[c], k))
      break;
    h->v[i] = h->v[c];
    i = c;
  }
  h->v[i] = k;
}

static int run_key_desc(const void *a, const void *b) {
  const run_key *x = a, *y = b;
  return run_after(*x, *y) - run_after(*y, *x);
}

/* The ids of a page by run time read longest first, from `edge` on
 * (strict: past it), and their batches when `batches` is not NULL.
 * Returns 0 with the page in ids (*n of them), 1 when it cannot answer
 * (see above), -1 on an error. With `bounded`, a page that could miss
 * faster tasks is returned as it is (0), for a ranking marked as such. */
static int slowest_ids(data *d, const data_scope *sc, data_key edge,
                       int strict, int limit, int bounded, int64_t *ids,
                       int64_t *batches, int *n) {
  sqlite3_stmt *minute = NULL, *floor_st = NULL, *running = NULL,
               *raw = NULL, *newest_st = NULL;
  *n = 0;
  int64_t start, newest;
  int rc = whole_minutes_from(d, INT64_MIN, &start);
  if (rc != 0)
    return rc;
  /* The window's first minute, partial, is read from slowest too (its
   * rows from since on): its fastest row bounds what is missing of it as
   * any minute's does. */
  if (sc->since != INT64_MIN && floor_to(sc->since, DATA_MINUTE_US) > start)
    start = floor_to(sc->since, DATA_MINUTE_US);
  if (sqlite3_prepare_v2(d->db,
                         "SELECT run_us, id, batch FROM slowest WHERE minute "
                         "= ?1 AND run_us >= ?3 AND run_us <= ?4 AND (run_us "
                         "< ?4 OR id <= ?5) AND enqueued_at >= ?2 ORDER BY "
                         "run_us DESC, id DESC LIMIT ?6",
                         -1, &minute, NULL) != SQLITE_OK)
    return 1;
  int own = sqlite3_get_autocommit(d->db);
  if (own) /* the minutes, the raw rows and the running agree */
    sqlite3_exec(d->db, "BEGIN", NULL, NULL, NULL);
  if (prepare(d,
              "SELECT run_us, id FROM slowest WHERE minute = ?1 ORDER BY "
              "run_us DESC, id DESC LIMIT 1 OFFSET " SCHEMA_SQL_TEXT(
                  SCHEMA_SLOWEST_PER_MINUTE) " - 1",
              &floor_st) ||
      prepare(d,
              "SELECT ?1 - started_at, id, batch FROM tasks WHERE "
              "" SCHEMA_SQL_UNUSUAL
              " AND status = " SCHEMA_SQL_CODE(
                  RUNNING) " AND enqueued_at >= ?2 AND run_us IS NULL AND "
                           "started_at IS NOT NULL",
              &running) ||
      prepare(d,
              "SELECT run_us, id, batch FROM tasks WHERE enqueued_at >= ?1 "
              "AND enqueued_at < ?2 AND run_us >= 0",
              &raw) ||
      prepare(d, "SELECT max(enqueued_at) FROM tasks", &newest_st) ||
      first_int(newest_st, 0, 0, 0, &newest))
    rc = -1;
  newest_st = NULL;
  int64_t last_id = strict ? edge.id - 1 : edge.id;
  if (strict && edge.id == INT64_MIN) { /* nothing comes after the edge */
    edge.at--;
    last_id = INT64_MAX;
  }
  run_heap h = {xcalloc((size_t)limit, sizeof(run_key)), 0, limit};
  /* The first full minute's fastest row that ranks highest. */
  run_key floor = {-1, INT64_MIN, 0};
  int full = 0, step = SQLITE_DONE;
  sqlite3_stmt *reads[2] = {running, raw};
  if (rc == 0) {
    sqlite3_bind_int64(running, 1, sc->now);
    sqlite3_bind_int64(running, 2, sc->since);
    sqlite3_bind_int64(raw, 1, sc->since);
    sqlite3_bind_int64(raw, 2, start);
  }
  for (int r = 0; r < 2 && rc == 0; r++) {
    while ((step = sqlite3_step(reads[r])) == SQLITE_ROW) {
      run_key k = {sqlite3_column_int64(reads[r], 0),
                   sqlite3_column_int64(reads[r], 1),
                   sqlite3_column_int64(reads[r], 2)};
      if (k.v >= 0 && (k.v < edge.at || (k.v == edge.at && k.id <= last_id)))
        run_heap_push(&h, k);
    }
    if (step != SQLITE_DONE)
      rc = -1;
  }
  if (rc == 0) {
    sqlite3_bind_int64(minute, 2, sc->since);
    sqlite3_bind_int64(minute, 4, edge.at);
    sqlite3_bind_int64(minute, 5, last_id);
    sqlite3_bind_int(minute, 6, limit);
  }
  /* Newest minute first: the same minutes, whichever the order. */
  for (int64_t m = newest == DATA_NULL ? start - 1
                                       : floor_to(newest, DATA_MINUTE_US);
       rc == 0 && m >= start; m -= DATA_MINUTE_US) {
    sqlite3_reset(floor_st);
    sqlite3_bind_int64(floor_st, 1, m);
    if ((step = sqlite3_step(floor_st)) == SQLITE_ROW) {
      run_key k = {sqlite3_column_int64(floor_st, 0),
                   sqlite3_column_int64(floor_st, 1), 0};
      if (!full || run_after(floor, k))
        floor = k;
      full = 1;
    } else if (step != SQLITE_DONE) {
      rc = -1;
    }
    sqlite3_reset(minute);
    sqlite3_bind_int64(minute, 1, m);
    sqlite3_bind_int64(minute, 3, h.n == h.cap ? h.v[0].v : 0);
    while (rc == 0 && (step = sqlite3_step(minute)) == SQLITE_ROW) {
      run_key k = {sqlite3_column_int64(minute, 0),
                   sqlite3_column_int64(minute, 1),
                   sqlite3_column_int64(minute, 2)};
      if (h.n == h.cap && !run_after(h.v[0], k))
        break; /* the rest of this minute ranks lower still */
      run_heap_push(&h, k);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
      rc = -1;
  }
  sqlite3_finalize(minute);
  sqlite3_finalize(floor_st);
  sqlite3_finalize(running);
  sqlite3_finalize(raw);
  if (own)
    sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
  /* Short of a page, or below a full minute's fastest: tasks may be
   * missing. */
  if (rc == 0 && !bounded &&
      (h.n < limit || (full && run_after(h.v[0], floor))))
    rc = 1;
  if (rc == 0) {
    qsort(h.v, (size_t)h.n, sizeof *h.v, run_key_desc);
    for (int i = 0; i < h.n; i++) {
      ids[i] = h.v[i].id;
      if (batches)
        batches[i] = h.v[i].batch;
    }
    *n = h.n;
  }
  free(h.v);
  return rc;
}

/* The rows of a page in another order than time: the ids first, from the
 * statement over tasks alone (the index tasks_time holds the values the
 * orders need, but a running task's start), then each id's row. Reading
 * whole rows in the statement that sorts would look up the row, agent and
 * batch of every task of the window before the sort keeps `limit` of
 * them: 1.6x the CPU of a sorted hour. */
static int tasks_page_by_value(data *d, const filter *f, const data_scope *sc,
                               int up, const data_key *from, int limit,
                               data_task *out, int *count) {
  sqlite3_stmt *st = NULL, *row = NULL;
  /* Longest run first: minute by minute (above), when it can answer. */
  if (sc->by == DATA_BY_RUN && f == NULL && sc->desc != up) {
    data_key edge = {INT64_MAX, INT64_MAX};
    if (from)
      edge = *from;
    int64_t *ids = xcalloc((size_t)limit, sizeof *ids);
    int got = 0,
        fast = slowest_ids(d, sc, edge, up, limit, 0, ids, NULL, &got);
    if (fast == 0 && prepare(d,
                             "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
                             " WHERE t.id = ?1",
                             &row))
      fast = -1;
    int n = 0;
    for (int i = 0; fast == 0 && i < got; i++) {
      sqlite3_reset(row);
      sqlite3_bind_int64(row, 1, ids[i]);
      /* A task the collector removed in between is left out. */
      if (sqlite3_step(row) == SQLITE_ROW)
        read_task(row, &out[n++]);
    }
    sqlite3_finalize(row);
    free(ids);
    if (fast != 1) {
      *count = n;
      return fast;
    }
    row = NULL;
  }
  char *order = keyset(sc, up, order_value(sc->by), "t.id");
  char *tail = sqlite3_mprintf("AND %s", order);
  char *head = sqlite3_mprintf("SELECT t.id" READER_TASK_FROM
                               " WHERE t.enqueued_at >= ?1");
  int rc = prepare_tasks_only(d, f, head, tail, LIST_FILTER_FIRST, 0, &st);
  sqlite3_free(order);
  sqlite3_free(tail);
  sqlite3_free(head);
  if (rc)
    return -1;
  if (prepare(d,
              "SELECT " READER_TASK_COLUMNS READER_TASK_FROM " WHERE t.id = ?1",
              &row)) {
    sqlite3_finalize(st);
    return -1;
  }
  bind_list(st, sc, up, from, limit);
  int n = 0;
  rc = SQLITE_DONE;
  while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    sqlite3_reset(row);
    sqlite3_bind_int64(row, 1, sqlite3_column_int64(st, 0));
    /* A task the collector removed in between is left out. */
    if (sqlite3_step(row) == SQLITE_ROW)
      read_task(row, &out[n++]);
  }
  sqlite3_finalize(st);
  sqlite3_finalize(row);
  *count = n;
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int data_tasks_page(data *d, const filter *f, const data_scope *scope,
                    const data_key *from, int dir, int limit, data_task **rows,
                    int *n) {
  const data_scope *sc = scope ? scope : &time_order;
  int up = dir > 0;
  sqlite3_stmt *st = NULL;
  *rows = NULL;
  *n = 0;
  if (limit <= 0)
    return 0;
  if (sc->by != DATA_BY_TIME) {
    data_task *out = xcalloc((size_t)limit, sizeof *out);
    int rc = tasks_page_by_value(d, effective(f), sc, up, from, limit, out, n);
    *rows = out;
    return rc;
  }
  char *order = keyset(sc, up, order_value(sc->by), "t.id");
  /* The keyset goes after the filter: "head AND (filter) tail". */
  char *tail = sqlite3_mprintf("AND %s", order);
  int rc = prepare_filtered(d, effective(f),
                            "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
                            " WHERE t.enqueued_at >= ?1",
                            tail, LIST_FILTER_FIRST, 0, &st);
  sqlite3_free(order);
  sqlite3_free(tail);
  if (rc)
    return -1;
  bind_list(st, sc, up, from, limit);
  data_task *out = xcalloc((size_t)limit, sizeof *out);
  int count = 0;
  rc = SQLITE_DONE;
  while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
    read_task(st, &out[count++]);
  sqlite3_finalize(st);
  *rows = out;
  *n = count;
  /* A page cut short by an error still returns what it read. */
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int data_task_detail(data *d, int64_t id, data_task *out) {
  sqlite3_stmt *st = NULL;
  memset(out, 0, sizeof *out);
  if (prepare(d,
              "SELECT " READER_TASK_COLUMNS READER_TASK_FROM " WHERE t.id = ?1",
              &st))
    return -1;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    read_task(st, out);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int load_batch_tasks(data *d, data_batch *b) {
  sqlite3_stmt *st = NULL;
  if (prepare(d,
              "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
              " WHERE t.batch = ?1 ORDER BY t.position, t.id LIMIT 1000",
              &st))
    return -1;
  sqlite3_bind_int64(st, 1, b->id);
  int cap = 4, rc;
  b->tasks = xcalloc((size_t)cap, sizeof *b->tasks);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (b->ntasks == cap) {
      cap *= 2;
      b->tasks = xrealloc(b->tasks, (size_t)cap * sizeof *b->tasks);
    }
    read_task(st, &b->tasks[b->ntasks++]);
  }
  sqlite3_finalize(st);
  if (b->ntasks > 0) {
    b->label = text_dup(b->tasks[0].label);
    b->service = text_dup(b->tasks[0].service);
  }
  return rc == SQLITE_DONE ? 0 : -1;
}

static int have_batch(const data_batch *b, int n, int64_t id) {
  for (int i = 0; i < n; i++)
    if (b[i].id == id)
      return 1;
  return 0;
}

/* The statement of batch keys in list order: (batch, key value, key id).
 * In time order it reads tasks by time (a batch at its first task met);
 * in the others one row per batch, grouped over the window. */
static int prepare_batch_keys(data *d, const filter *f, const data_scope *sc,
                              int up, sqlite3_stmt **st) {
  int rc;
  if (sc->by == DATA_BY_TIME) {
    char *order = keyset(sc, up, "t.enqueued_at", "t.id");
    char *tail = sqlite3_mprintf("AND %s", order);
    rc = prepare_filtered(d, f,
                          "SELECT t.batch, t.enqueued_at, t.id" READER_TASK_FROM
                          " WHERE t.enqueued_at >= ?1",
                          tail, LIST_FILTER_FIRST, 0, st);
    sqlite3_free(order);
    sqlite3_free(tail);
    return rc;
  }
  char *value = sqlite3_mprintf(batch_value(sc->by), order_value(sc->by));
  char *order = keyset(sc, up, "v", "t.batch");
  char *head =
      sqlite3_mprintf("SELECT t.batch, %s AS v, t.batch" READER_TASK_FROM
                      " WHERE t.enqueued_at >= ?1",
                      value);
  /* +t.batch: grouping by the plain column would have SQLite walk the
   * whole tasks_batch index for its order, every batch of the store. */
  char *tail = sqlite3_mprintf("GROUP BY +t.batch HAVING %s", order);
  rc = prepare_tasks_only(d, f, head, tail, LIST_FILTER_FIRST, 0, st);
  sqlite3_free(value);
  sqlite3_free(order);
  sqlite3_free(head);
  sqlite3_free(tail);
  return rc;
}

/* One batch's value in an order other than time: (value, batch). */
typedef struct batch_sum {
  int64_t v, batch;
} batch_sum;

static int by_value_asc(const void *a, const void *b) {
  const batch_sum *x = a, *y = b;
  if (x->v != y->v)
    return x->v < y->v ? -1 : 1;
  return (x->batch > y->batch) - (x->batch < y->batch);
}

static int by_value_desc(const void *a, const void *b) {
  return by_value_asc(b, a);
}

/*
 * The batch keys of a page in an order other than time, as the keyset
 * statement of prepare_batch_keys() would give them: (batch, value,
 * batch), at most `limit`, from `from` on (up: before it, nearest first).
 * The tasks of the window are read from tasks alone in index order and
 * summed per batch here, in a hash table: SQLite's GROUP BY +t.batch
 * sorted every task of the window first (an hour of 10 M tasks a day:
 * 400 k rows into a temporary B-tree, 275-400 ms).
 */
static int batch_keys_by_value(data *d, const filter *f, const data_scope *sc,
                               int up, const data_key *from, int limit,
                               batch_sum **out, int *count) {
  sqlite3_stmt *st = NULL;
  *out = NULL;
  *count = 0;
  char *head = sqlite3_mprintf("SELECT t.batch, %s" READER_TASK_FROM
                               " WHERE t.enqueued_at >= ?1",
                               order_value(sc->by));
  int rc = prepare_tasks_only(d, f, head, "", LIST_FILTER_FIRST, 0, &st);
  sqlite3_free(head);
  if (rc)
    return -1;
  bind_list(st, sc, up, from, limit);
  size_t cap = 1024, n = 0; /* slots, a power of two; entries */
  batch_sum *slot = xcalloc(cap, sizeof *slot);
  unsigned char *used = xcalloc(cap, 1);
  int sum = sc->by == DATA_BY_RUN;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t batch = sqlite3_column_int64(st, 0), v = sqlite3_column_int64(st, 1);
    if (sum && v < 0)
      v = 0;
    if ((n + 1) * 2 > cap) {
      batch_sum *old = slot;
      unsigned char *was = used;
      size_t oldcap = cap;
      cap *= 2;
      slot = xcalloc(cap, sizeof *slot);
      used = xcalloc(cap, 1);
      for (size_t i = 0; i < oldcap; i++) {
        if (!was[i])
          continue;
        size_t j = (size_t)((uint64_t)old[i].batch * 0x9e3779b97f4a7c15u >> 20) &
                   (cap - 1);
        while (used[j])
          j = (j + 1) & (cap - 1);
        slot[j] = old[i];
        used[j] = 1;
      }
      free(old);
      free(was);
    }
    size_t j =
        (size_t)((uint64_t)batch * 0x9e3779b97f4a7c15u >> 20) & (cap - 1);
    while (used[j] && slot[j].batch != batch)
      j = (j + 1) & (cap - 1);
    if (!used[j]) {
      used[j] = 1;
      slot[j].batch = batch;
      slot[j].v = v;
      n++;
    } else if (sum) {
      slot[j].v += v;
    } else if (v > slot[j].v) {
      slot[j].v = v;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    free(slot);
    free(used);
    return -1;
  }
  /* The keyset: in the direction rows are read, from the key on (down:
   * the key included) or past it (up). */
  int desc = sc->desc != up;
  data_key edge = {desc ? INT64_MAX : INT64_MIN, desc ? INT64_MAX : INT64_MIN};
  if (from)
    edge = *from;
  size_t m = 0;
  for (size_t i = 0; i < cap; i++) {
    if (!used[i])
      continue;
    batch_sum b = slot[i];
    int before = desc ? (b.v < edge.at || (b.v == edge.at && b.batch < edge.id))
                      : (b.v > edge.at || (b.v == edge.at && b.batch > edge.id));
    int at = b.v == edge.at && b.batch == edge.id;
    if (before || (at && !up))
      slot[m++] = b;
  }
  free(used);
  qsort(slot, m, sizeof *slot, desc ? by_value_desc : by_value_asc);
  *out = slot;
  *count = m < (size_t)limit ? (int)m : limit;
  return 0;
}

/*
 * Batches by total run time, longest first, over a window of more than
 * BATCH_EXACT_MAX tasks with no filter: ranked among the batches of the
 * window's BATCH_CANDIDATES slowest tasks (slowest_ids()), each with its
 * exact total over the window, instead of summing every task of the
 * window. A batch whose every task is faster than those can be missing or
 * out of place: such pages are marked `estimated` (the heading says so).
 * A page past the candidates is read exactly. Returns 0 with the
 * candidates in list order, 1 when this path does not apply, -1 on an
 * error.
 */
#define BATCH_EXACT_MAX 50000

static int compare_int64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

#define BATCH_CANDIDATES 128

static int slowest_batches(data *d, const filter *f, const data_scope *sc,
                           batch_sum **out, int *count) {
  sqlite3_stmt *st = NULL;
  int64_t n;
  *out = NULL;
  *count = 0;
  if (sc->by != DATA_BY_RUN || f != NULL || !sc->desc)
    return 1;
  if (prepare(d,
              "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE enqueued_at >= "
              "?1 LIMIT " SCHEMA_SQL_TEXT(BATCH_EXACT_MAX) " + 1)",
              &st) ||
      first_int(st, 0, sc->since, 0, &n))
    return -1;
  if (n <= BATCH_EXACT_MAX)
    return 1;
  int64_t *ids = xcalloc(BATCH_CANDIDATES, sizeof *ids);
  int64_t *batches = xcalloc(BATCH_CANDIDATES, sizeof *batches);
  int got = 0;
  data_key top = {INT64_MAX, INT64_MAX};
  int rc =
      slowest_ids(d, sc, top, 0, BATCH_CANDIDATES, 1, ids, batches, &got);
  free(ids);
  if (rc != 0) {
    free(batches);
    return rc;
  }
  char *sql = sqlite3_mprintf("SELECT sum(max(%s, 0)) FROM tasks t WHERE "
                              "t.batch = ?1 AND t.enqueued_at >= ?2",
                              order_value(DATA_BY_RUN));
  rc = prepare(d, sql, &st) ? -1 : 0;
  sqlite3_free(sql);
  batch_sum *sums = xcalloc(BATCH_CANDIDATES, sizeof *sums);
  int m = 0;
  sqlite3_bind_int64(st, 2, sc->since);
  sqlite3_bind_int64(st, 5, sc->now);
  /* In batch order: neighbours share index and table pages. */
  qsort(batches, (size_t)got, sizeof *batches, compare_int64);
  for (int i = 0; i < got && rc == 0; i++) {
    if (i > 0 && batches[i] == batches[i - 1])
      continue;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, batches[i]);
    if (sqlite3_step(st) != SQLITE_ROW) {
      rc = -1;
      break;
    }
    sums[m].batch = batches[i];
    sums[m++].v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  free(batches);
  if (rc != 0) {
    free(sums);
    return rc;
  }
  qsort(sums, (size_t)m, sizeof *sums, by_value_desc);
  *out = sums;
  *count = m;
  return 0;
}

int data_batches_page(data *d, const filter *f, const data_scope *scope,
                      const data_key *from, int n, data_batch **out,
                      int *count) {
  const data_scope *sc = scope ? scope : &time_order;
  sqlite3_stmt *st = NULL;
  *out = NULL;
  *count = 0;
  if (n <= 0)
    return 0;
  int timed = sc->by == DATA_BY_TIME;
  if (!timed) {
    batch_sum *keys = NULL;
    int nkeys = 0, estimated = 0;
    int rc = slowest_batches(d, effective(f), sc, &keys, &nkeys);
    if (rc < 0)
      return -1;
    if (rc == 0) {
      /* From the key on (the key included), if the candidates reach. */
      int first = 0;
      while (from && first < nkeys &&
             (keys[first].v > from->at ||
              (keys[first].v == from->at && keys[first].batch > from->id)))
        first++;
      if (nkeys - first >= n) {
        memmove(keys, keys + first, (size_t)n * sizeof *keys);
        nkeys = n;
        estimated = 1;
      } else {
        free(keys);
        keys = NULL;
        rc = 1;
      }
    }
    if (rc == 1 &&
        batch_keys_by_value(d, effective(f), sc, 0, from, n, &keys, &nkeys))
      return -1;
    data_batch *b = xcalloc((size_t)n, sizeof *b);
    rc = 0;
    for (int i = 0; i < nkeys; i++) {
      b[i].estimated = estimated;
      b[i].id = keys[i].batch;
      b[i].key.at = b[i].value = keys[i].v;
      b[i].key.id = keys[i].batch;
    }
    free(keys);
    for (int i = 0; i < nkeys && rc == 0; i++) {
      rc = load_batch_tasks(d, &b[i]);
      b[i].created_at =
          b[i].ntasks > 0 ? b[i].tasks[0].enqueued_at : DATA_NULL;
    }
    *out = b;
    *count = nkeys;
    return rc;
  }
  if (prepare_batch_keys(d, effective(f), sc, 0, &st))
    return -1;
  /* Tasks of one batch sit close together in time, so a bounded scan
   * finds n batches unless the filter is very selective. */
  bind_list(st, sc, 0, from, timed ? n * 64 : n);
  data_batch *b = xcalloc((size_t)n, sizeof *b);
  int m = 0, rc = 0;
  while (m < n && sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    if (have_batch(b, m, id))
      continue;
    b[m].id = id;
    b[m].key.at = sqlite3_column_int64(st, 1);
    b[m].key.id = sqlite3_column_int64(st, 2);
    b[m].value = timed ? DATA_NULL : b[m].key.at;
    b[m].created_at = timed ? b[m].key.at : DATA_NULL;
    m++;
  }
  sqlite3_finalize(st);
  for (int i = 0; i < m && rc == 0; i++) {
    rc = load_batch_tasks(d, &b[i]);
    if (!timed && b[i].ntasks > 0)
      b[i].created_at = b[i].tasks[0].enqueued_at;
  }
  *out = b;
  *count = m;
  return rc;
}

int data_batch_before(data *d, const filter *f, const data_scope *scope,
                      const data_key *key, int64_t batch, int n,
                      data_key *out) {
  const data_scope *sc = scope ? scope : &time_order;
  sqlite3_stmt *st = NULL;
  if (n < 1)
    n = 1;
  /* A page of the candidates (slowest_batches()): the n-th batch above. */
  batch_sum *sums = NULL;
  int nsums = 0, rc = slowest_batches(d, effective(f), sc, &sums, &nsums);
  if (rc < 0)
    return -1;
  if (rc == 0) {
    int at = 0;
    while (at < nsums && key &&
           (sums[at].v > key->at ||
            (sums[at].v == key->at && sums[at].batch > key->id)))
      at++;
    /* A key past the candidates came from an exact page: read exactly. */
    int k = at, have = 0, within = at < nsums;
    while (within && k > 0 && have < n) {
      k--;
      if (sums[k].batch != batch)
        have++;
    }
    if (have)
      *out = (data_key){sums[k].v, sums[k].batch};
    free(sums);
    if (within)
      return have ? 0 : 1;
  }
  if (prepare_batch_keys(d, effective(f), sc, 1, &st))
    return -1;
  bind_list(st, sc, 1, key, sc->by == DATA_BY_TIME ? 256 * n : n);
  /* The batches above in the order first met, each at its last row seen
   * in the scan: in time order a batch's tasks may interleave with
   * another's, and its key is its task nearest the top of the list. */
  int64_t *ids = xcalloc((size_t)n, sizeof *ids);
  data_key *keys = xcalloc((size_t)n, sizeof *keys);
  int have = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    int k = 0;
    while (k < have && ids[k] != id)
      k++;
    if (id == batch || (k == have && have == n))
      continue;
    if (k == have)
      ids[have++] = id;
    keys[k].at = sqlite3_column_int64(st, 1);
    keys[k].id = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  if (have)
    *out = keys[have - 1];
  free(ids);
  free(keys);
  return have ? 0 : 1;
}

void data_batches_free(data_batch *b, int n) {
  for (int i = 0; i < n; i++) {
    data_tasks_free(b[i].tasks, b[i].ntasks);
    text_free(&b[i].label);
    text_free(&b[i].service);
  }
  free(b);
}

static int compare_sample_name(const void *a, const void *b) {
  const sample *x = a, *y = b;
  size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
  int c = n ? memcmp(x->name.ptr, y->name.ptr, n) : 0;
  if (c)
    return c;
  return (x->name.len > y->name.len) - (x->name.len < y->name.len);
}

static data_name *find_name(data_name *rows, int n, const char *p, size_t len) {
  for (int i = 0; i < n; i++)
    if (rows[i].name.len == len && memcmp(rows[i].name.ptr, p, len) == 0)
      return &rows[i];
  return NULL;
}

/* Exact failed and skipped counts per name, through the partial index:
 * a rare failure must never be sampled away. */
static int add_unusual(data *d, const filter *f, int64_t since_us,
                       data_name **rows, int *n, int *cap) {
  sqlite3_stmt *st = NULL;
  if (prepare_tasks_only(d, f,
                         "SELECT t.name, t.status, count(*)" READER_TASK_FROM
                         " WHERE " SCHEMA_SQL_FAILED_OR_SKIPPED
                         " AND t.enqueued_at >= ?1",
                         "GROUP BY t.name, t.status", 2, 1, &st))
    return -1;
  sqlite3_bind_int64(st, 1, since_us);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    data_text name = owned_text(st, 0);
    data_name *row = find_name(*rows, *n, name.ptr ? name.ptr : "", name.len);
    if (row == NULL) {
      if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *rows = xrealloc(*rows, (size_t)*cap * sizeof **rows);
      }
      row = &(*rows)[(*n)++];
      memset(row, 0, sizeof *row);
      row->name = name.ptr ? name : (data_text){xstrdup(""), 0};
      for (int k = 0; k < 3; k++)
        row->run[k] = row->wait[k] = DATA_NULL;
      name.ptr = NULL;
    }
    text_free(&name);
    int64_t count = sqlite3_column_int64(st, 2);
    if (sqlite3_column_int(st, 1) == SCHEMA_FAILED)
      row->failed = count;
    else
      row->skipped = count;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* 1 when more than `max` tasks match f in the window: a count that stops
 * early, so its cost is bounded however big the window. */
static int window_over(data *d, const filter *f, int64_t since, int max) {
  sqlite3_stmt *st = NULL;
  if (prepare_tasks_only(d, f,
                         "SELECT count(*) FROM (SELECT 1" READER_TASK_FROM
                         " WHERE t.enqueued_at >= ?1",
                         "LIMIT ?2)", 3, 0, &st))
    return -1;
  sqlite3_bind_int64(st, 1, since);
  sqlite3_bind_int(st, 2, max + 1);
  int over = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > max;
  sqlite3_finalize(st);
  return over;
}

/* The names view's rows while the rollups are read: the row of each name,
 * with its histograms in hists[2 * index]. */
typedef struct name_rows {
  data_name *rows;
  hist_sparse *hists;
  int n, cap;
} name_rows;

/* The row of the name in column 0 of st, added when missing. */
static data_name *name_row(name_rows *r, sqlite3_stmt *st) {
  const char *p = (const char *)sqlite3_column_text(st, 0);
  size_t len = (size_t)sqlite3_column_bytes(st, 0);
  data_name *row = find_name(r->rows, r->n, p ? p : "", len);
  if (row)
    return row;
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 16;
    r->rows = xrealloc(r->rows, (size_t)r->cap * sizeof *r->rows);
    r->hists = xrealloc(r->hists, (size_t)r->cap * 2 * sizeof *r->hists);
  }
  row = &r->rows[r->n];
  memset(row, 0, sizeof *row);
  row->name = (data_text){xmemdup(p ? p : "", len), len};
  hist_sparse_init(&r->hists[2 * r->n]);
  hist_sparse_init(&r->hists[2 * r->n + 1]);
  r->n++;
  return row;
}

static void name_rollup(void *arg, sqlite3_stmt *st) {
  name_rows *r = arg;
  data_name *row = name_row(r, st);
  for (int i = 0; i < 5; i++)
    row->count += sqlite3_column_int64(st, 1 + i);
  row->failed += sqlite3_column_int64(st, 2);
  row->skipped += sqlite3_column_int64(st, 3);
  rollup_hists(&r->hists[2 * (row - r->rows)], st);
}

static void name_active(void *arg, sqlite3_stmt *st) {
  name_rows *r = arg;
  data_name *row = name_row(r, st);
  row->count++;
  active_wait(&r->hists[2 * (row - r->rows)], st);
}

/* The names view from the rollups of the window's whole minutes, plus the
 * tasks of the window still queued or running: exact counts, percentiles
 * within HIST_ERROR_PCT. */
static int names_from_rollups(data *d, const filter *f, int64_t since,
                              data_name **out, int *n) {
  name_rows r = {0};
  int64_t start = data_rollup_start(since);
  int rc = each_rollup(d, f, start, name_rollup, &r) ||
                   each_active(d, f, start, name_active, &r)
               ? -1
               : 0;
  for (int i = 0; i < r.n; i++) {
    hist_percentiles(&r.hists[2 * i], r.rows[i].run);
    hist_percentiles(&r.hists[2 * i + 1], r.rows[i].wait);
    r.rows[i].pct_error = HIST_ERROR_PCT;
    hist_sparse_fini(&r.hists[2 * i]);
    hist_sparse_fini(&r.hists[2 * i + 1]);
  }
  free(r.hists);
  *out = r.rows;
  *n = r.n;
  return rc;
}

int data_names_load(data *d, const filter *f, int64_t since, int64_t now_us,
                    data_name **out, int *n) {
  sample_set set;
  *out = NULL;
  *n = 0;
  f = effective(f);
  since = narrow_since(f, since);
  int reuse = f == NULL && d->sample && d->sample_now == now_us &&
              d->sample_since == since;
  if (reuse) {
    set = *d->sample;
    memset(d->sample, 0, sizeof *d->sample);
    drop_sample(d);
  } else {
    int over = window_over(d, f, since, DATA_EXACT_MAX);
    if (over < 0)
      return -1;
    if (over && rollups_answer(f))
      return names_from_rollups(d, f, since, out, n);
    if (sample_window(d, f, since, now_us, !over, &set))
      return -1;
  }
  qsort(set.v, set.n, sizeof *set.v, compare_sample_name);
  stats_weighted buf;
  stats_weighted_init(&buf);
  int cap = 16, count = 0;
  data_name *rows = xcalloc((size_t)cap, sizeof *rows);
  for (size_t i = 0; i < set.n;) {
    size_t j = i;
    int64_t weight = 0;
    while (j < set.n && compare_sample_name(&set.v[i], &set.v[j]) == 0)
      weight += set.v[j++].weight;
    if (count == cap) {
      cap *= 2;
      rows = xrealloc(rows, (size_t)cap * sizeof *rows);
    }
    data_name *row = &rows[count++];
    memset(row, 0, sizeof *row);
    row->name = (data_text){xmemdup(set.v[i].name.ptr, set.v[i].name.len),
                            set.v[i].name.len};
    row->count = (weight + WEIGHT_UNIT / 2) / WEIGHT_UNIT;
    row->estimated = set.estimated;
    sample_set part = {set.v + i, j - i, j - i, 0};
    percentiles_of(&part, INT64_MIN, 0, &buf, row->run);
    percentiles_of(&part, INT64_MIN, 1, &buf, row->wait);
    i = j;
  }
  stats_weighted_fini(&buf);
  int rc = add_unusual(d, f, since, &rows, &count, &cap);
  for (int i = 0; i < count; i++)
    if (rows[i].count < rows[i].failed + rows[i].skipped)
      rows[i].count = rows[i].failed + rows[i].skipped;
  sample_set_free(&set);
  *out = rows;
  *n = count;
  return rc;
}

void data_names_free(data_name *rows, int n) {
  for (int i = 0; i < n; i++)
    text_free(&rows[i].name);
  free(rows);
}

int data_agents_load(data *d, data_agent **out, int *n) {
  sqlite3_stmt *st = NULL;
  *out = NULL;
  *n = 0;
  const char *seen = reader_agent_seen_sql(d->r);
  char *sql = sqlite3_mprintf(
      "SELECT id, pid, started_at, connected_at, disconnected_at, %s, "
      "events, dropped, reconnects, connected, ended, service, host, %s, %s "
      "FROM agents ORDER BY connected DESC, %s DESC, id LIMIT 10000",
      seen, reader_agent_dropped_tasks_sql(d->r),
      reader_agent_dropped_batches_sql(d->r), seen);
  int failed = prepare(d, sql, &st);
  sqlite3_free(sql);
  if (failed)
    return -1;
  int cap = 16, count = 0, rc;
  data_agent *rows = xcalloc((size_t)cap, sizeof *rows);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (count == cap) {
      cap *= 2;
      rows = xrealloc(rows, (size_t)cap * sizeof *rows);
    }
    data_agent *a = &rows[count++];
    a->id = column_int(st, 0);
    a->pid = column_int(st, 1);
    a->started_at = column_int(st, 2);
    a->connected_at = column_int(st, 3);
    a->disconnected_at = column_int(st, 4);
    a->last_event_at = column_int(st, 5);
    a->events = column_int(st, 6);
    a->dropped = column_int(st, 7);
    a->reconnects = column_int(st, 8);
    a->connected = sqlite3_column_int(st, 9);
    a->ended = sqlite3_column_int(st, 10);
    a->service = owned_text(st, 11);
    a->host = owned_text(st, 12);
    a->dropped_tasks = column_int(st, 13);
    a->dropped_batches = column_int(st, 14);
  }
  sqlite3_finalize(st);
  *out = rows;
  *n = count;
  return rc == SQLITE_DONE ? 0 : -1;
}

void data_agents_free(data_agent *rows, int n) {
  for (int i = 0; i < n; i++) {
    text_free(&rows[i].service);
    text_free(&rows[i].host);
  }
  free(rows);
}
