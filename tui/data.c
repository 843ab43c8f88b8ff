/*
 * data - the dashboard's queries over the store (see data.h), through
 * common/reader (opening, task rows, change detection) and common/stats
 * (percentiles). All values are bound; the only text joined into SQL is the
 * filter's own expression, which itself holds nothing but ?NNN parameters,
 * and the status fragments of common/schema.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "stats.h"
#include "xalloc.h"

const int64_t data_window_us[DATA_WINDOWS] = {
    INT64_C(60000000), INT64_C(300000000), INT64_C(900000000)};

struct sample_set;

struct data {
  reader *r;
  sqlite3 *db; /* the reader's connection */
  /* The unfiltered sample of the last data_stats_load(), which the names
   * view reuses when it has no filter and the same "now". */
  struct sample_set *sample;
  int64_t sample_now;
};

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

data_key data_task_key(const data_task *t) {
  data_key k = {t->enqueued_at, t->id};
  return k;
}

static int prepare(data *d, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v2(d->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -1;
}

int data_open(const char *path, data **out, char *err, size_t errlen) {
  reader *r = NULL;
  if (reader_open(path, &r, err, errlen) != READER_OK)
    return -1;
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

/* Counts: the partial index tasks_unusual holds every task that did not
 * succeed, so succeeded = all in the window - the unusual ones in it. */
static int load_counts(data *d, int64_t now_us, data_stats *s) {
  sqlite3_stmt *st = NULL;
  int64_t since = now_us - data_window_us[DATA_WINDOWS - 1];
  int64_t window[SCHEMA_STATUS_COUNT] = {0}, total = 0, unusual = 0;
  int rc = -1;
  if (prepare(d, "SELECT count(*) FROM tasks WHERE enqueued_at >= ?1", &st))
    goto out;
  sqlite3_bind_int64(st, 1, since);
  if (sqlite3_step(st) == SQLITE_ROW)
    total = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (prepare(
          d,
          "SELECT status, count(*) FROM tasks WHERE " SCHEMA_SQL_UNUSUAL_EACH
          " AND enqueued_at >= ?1 GROUP BY status",
          &st))
    goto out;
  sqlite3_bind_int64(st, 1, since);
  if (each_pair(st, add_count, window))
    goto out;
  sqlite3_finalize(st);
  if (prepare(d,
              "SELECT status, count(*) FROM tasks WHERE " SCHEMA_SQL_ACTIVE
              " GROUP BY status",
              &st))
    goto out;
  if (each_pair(st, add_count, s->counts))
    goto out;
  for (int i = 0; i < SCHEMA_STATUS_COUNT; i++)
    if (i != SCHEMA_SUCCEEDED)
      unusual += window[i];
  for (int i = SCHEMA_FAILED; i < SCHEMA_STATUS_COUNT; i++)
    s->counts[i] = window[i];
  s->counts[SCHEMA_SUCCEEDED] = total - unusual;
  rc = 0;
out:
  sqlite3_finalize(st);
  return rc;
}

/* Counts per DATA_SPARK_US bucket: one range count per bucket through the
 * covering index, cheaper than a GROUP BY over an expression (which sorts
 * every row of the five minutes). */
static int spark_counts(data *d, const char *sql, int64_t t0, int64_t *out) {
  sqlite3_stmt *st = NULL;
  if (prepare(d, sql, &st))
    return -1;
  int rc = 0;
  for (int i = 0; i < DATA_SPARK_N && rc == 0; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, t0 + i * DATA_SPARK_US);
    sqlite3_bind_int64(st, 2,
                       i == DATA_SPARK_N - 1 ? INT64_MAX
                                             : t0 + (i + 1) * DATA_SPARK_US);
    if (sqlite3_step(st) == SQLITE_ROW)
      out[i] = sqlite3_column_int64(st, 0);
    else
      rc = -1;
  }
  sqlite3_finalize(st);
  return rc;
}

static int load_sparks(data *d, int64_t now_us, data_stats *s) {
  int64_t t0 = now_us - DATA_SPARK_N * DATA_SPARK_US;
  if (spark_counts(d,
                   "SELECT count(*) FROM tasks WHERE enqueued_at >= ?1 AND "
                   "enqueued_at < ?2",
                   t0, s->spark_tasks) ||
      spark_counts(d,
                   "SELECT count(*) FROM tasks WHERE " SCHEMA_SQL_FAILED
                   " AND enqueued_at >= ?1 AND enqueued_at < ?2",
                   t0, s->spark_failed))
    return -1;
  int64_t last_minute[2] = {0, 0};
  int per_minute = (int)(INT64_C(60000000) / DATA_SPARK_US);
  for (int i = DATA_SPARK_N - per_minute; i < DATA_SPARK_N; i++) {
    last_minute[0] += s->spark_tasks[i];
    last_minute[1] += s->spark_failed[i];
  }
  s->tasks_per_s = (double)last_minute[0] / 60.0;
  s->failed_per_s = (double)last_minute[1] / 60.0;
  return 0;
}

static int prepare_filtered(data *d, const filter *f, const char *head,
                            const char *tail, int first, sqlite3_stmt **st);

/* ---- stratified samples of the last 15 minutes ----------------------
 *
 * Percentiles need the values themselves, and the widest window can hold
 * hundreds of thousands of tasks. So the 15 minutes are cut into strata of
 * STRATUM_US: each stratum's newest tasks are read, up to SAMPLE_RECENT
 * per stratum in the last minute (which alone makes the 1-minute figures)
 * and SAMPLE_OLDER before it, and when a stratum holds more, each of its
 * samples weighs count / samples. Strata are short so that "newest first"
 * within one is as good as uniform. Figures are exact whenever no stratum
 * is over its cap, and the cost of a frame stays bounded on any store. */

#define STRATUM_US INT64_C(5000000)
#define STRATA 180       /* 15 minutes */
#define STRATA_RECENT 12 /* the last minute */
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

/* f, or NULL when it matches everything (so no join is needed). */
static const filter *effective(const filter *f) {
  return f && filter_param_count(f) == 0 && strcmp(filter_sql(f), "1") == 0
             ? NULL
             : f;
}

/* The two statements of a sample: the newest rows of a stratum, and the
 * count of a stratum; both take [?1, ?2) and the first a LIMIT ?3. */
static int prepare_sample(data *d, const filter *f, sqlite3_stmt **rows,
                          sqlite3_stmt **count) {
  /* Without a filter the sample reads tasks alone, no join. */
  static const char *const head[2] = {
      "SELECT t.enqueued_at, t.status, t.run_us, t.wait_us, t.name"
      " FROM tasks t WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2",
      "SELECT t.enqueued_at, t.status, t.run_us, t.wait_us, "
      "t.name" READER_TASK_FROM
      " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2"};
  static const char *const count_head[2] = {
      "SELECT count(*) FROM tasks t WHERE t.enqueued_at >= ?1 AND "
      "t.enqueued_at < ?2",
      "SELECT count(*)" READER_TASK_FROM
      " WHERE t.enqueued_at >= ?1 AND t.enqueued_at < ?2"};
  *rows = *count = NULL;
  if (prepare_filtered(d, f, head[f != NULL],
                       "ORDER BY t.enqueued_at DESC LIMIT ?3", 4, rows) == 0 &&
      prepare_filtered(d, f, count_head[f != NULL], "", 4, count) == 0)
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
  if ((int)got < limit)
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

/* Samples the 15 minutes before now_us, newest stratum first. */
static int sample_window(data *d, const filter *f, int64_t now_us,
                         sample_set *set) {
  sqlite3_stmt *rows, *count;
  memset(set, 0, sizeof *set);
  if (prepare_sample(d, effective(f), &rows, &count))
    return -1;
  int rc = 0;
  for (int i = 0; i < STRATA && rc == 0; i++) {
    /* The newest stratum is open-ended: a task stamped a little after
     * now_us (another host's clock) still counts. */
    int64_t from = now_us - (i + 1) * STRATUM_US;
    int64_t to = i == 0 ? INT64_MAX : now_us - i * STRATUM_US;
    rc = sample_stratum(rows, count, from, to,
                        i < STRATA_RECENT ? SAMPLE_RECENT : SAMPLE_OLDER, set);
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

static int load_percentiles(data *d, int64_t now_us, data_stats *s) {
  sample_set *set = xmalloc(sizeof *set);
  drop_sample(d);
  if (sample_window(d, NULL, now_us, set)) {
    free(set);
    return -1;
  }
  stats_weighted buf;
  stats_weighted_init(&buf);
  for (int w = 0; w < DATA_WINDOWS; w++) {
    int64_t since = now_us - data_window_us[w];
    percentiles_of(set, since, 0, &buf, s->run[w]);
    percentiles_of(set, since, 1, &buf, s->wait[w]);
  }
  stats_weighted_fini(&buf);
  d->sample = set;
  d->sample_now = now_us;
  return 0;
}
static int load_agent_totals(data *d, data_stats *s) {
  sqlite3_stmt *st = NULL;
  char *sql = sqlite3_mprintf("SELECT count(*), coalesce(sum(connected), 0), "
                              "coalesce(sum(dropped), 0), max(%s) FROM agents",
                              reader_agent_seen_sql(d->r));
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
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

int data_stats_load(data *d, int64_t now_us, data_stats *out) {
  memset(out, 0, sizeof *out);
  out->last_event_at = DATA_NULL;
  int rc = 0;
  /* One read transaction, so the figures agree with each other. */
  sqlite3_exec(d->db, "BEGIN", NULL, NULL, NULL);
  if (load_counts(d, now_us, out) || load_sparks(d, now_us, out) ||
      load_percentiles(d, now_us, out) || load_agent_totals(d, out))
    rc = -1;
  sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
  return rc;
}

/* Prepares "SELECT columns FROM ... WHERE (filter) AND extra ..." with the
 * filter's parameters numbered from ?first and bound. */
static int prepare_filtered(data *d, const filter *f, const char *head,
                            const char *tail, int first, sqlite3_stmt **st) {
  char *where = f ? filter_sql_at(f, first) : NULL;
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

int data_tasks_page(data *d, const filter *f, const data_key *from, int dir,
                    int limit, data_task **rows, int *n) {
  static const char *const head[2] = {
      "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
      " WHERE t.enqueued_at <= ?1 AND "
      "(t.enqueued_at < ?1 OR t.id <= ?2)",
      "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
      " WHERE t.enqueued_at >= ?1 AND "
      "(t.enqueued_at > ?1 OR t.id > ?2)"};
  static const char *const tail[2] = {
      "ORDER BY t.enqueued_at DESC, t.id DESC LIMIT ?3",
      "ORDER BY t.enqueued_at ASC, t.id ASC LIMIT ?3"};
  int k = dir > 0;
  sqlite3_stmt *st = NULL;
  *rows = NULL;
  *n = 0;
  if (limit <= 0)
    return 0;
  if (prepare_filtered(d, f, head[k], tail[k], 4, &st))
    return -1;
  data_key edge = {k ? INT64_MIN : INT64_MAX, k ? INT64_MIN : INT64_MAX};
  if (from)
    edge = *from;
  sqlite3_bind_int64(st, 1, edge.at);
  sqlite3_bind_int64(st, 2, edge.id);
  sqlite3_bind_int(st, 3, limit);
  data_task *out = xcalloc((size_t)limit, sizeof *out);
  int count = 0, rc = SQLITE_DONE;
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

int data_batches_page(data *d, const filter *f, const data_key *from, int n,
                      data_batch **out, int *count) {
  sqlite3_stmt *st = NULL;
  *out = NULL;
  *count = 0;
  if (n <= 0)
    return 0;
  if (prepare_filtered(d, f,
                       "SELECT t.batch, t.enqueued_at, t.id" READER_TASK_FROM
                       " WHERE t.enqueued_at <= ?1 AND "
                       "(t.enqueued_at < ?1 OR t.id <= ?2)",
                       "ORDER BY t.enqueued_at DESC, t.id DESC", 3, &st))
    return -1;
  sqlite3_bind_int64(st, 1, from ? from->at : INT64_MAX);
  sqlite3_bind_int64(st, 2, from ? from->id : INT64_MAX);
  data_batch *b = xcalloc((size_t)n, sizeof *b);
  int m = 0, scanned = 0, rc = 0;
  /* Tasks of one batch sit close together in time, so a bounded scan
   * finds n batches unless the filter is very selective. */
  while (m < n && scanned < n * 64 && sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    scanned++;
    if (have_batch(b, m, id))
      continue;
    b[m].id = id;
    b[m].key.at = sqlite3_column_int64(st, 1);
    b[m].key.id = sqlite3_column_int64(st, 2);
    b[m].created_at = b[m].key.at;
    m++;
  }
  sqlite3_finalize(st);
  for (int i = 0; i < m && rc == 0; i++)
    rc = load_batch_tasks(d, &b[i]);
  *out = b;
  *count = m;
  return rc;
}

int data_batch_before(data *d, const filter *f, const data_key *key,
                      int64_t batch, data_key *out) {
  sqlite3_stmt *st = NULL;
  if (prepare_filtered(d, f,
                       "SELECT t.batch, t.enqueued_at, t.id" READER_TASK_FROM
                       " WHERE t.enqueued_at >= ?1 AND "
                       "(t.enqueued_at > ?1 OR t.id > ?2)",
                       "ORDER BY t.enqueued_at ASC, t.id ASC LIMIT 256", 3,
                       &st))
    return -1;
  sqlite3_bind_int64(st, 1, key->at);
  sqlite3_bind_int64(st, 2, key->id);
  int64_t found = 0;
  int have = 0;
  /* The first other batch above, at its newest task seen in the scan. */
  while (sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    if (id == batch)
      continue;
    if (!have) {
      found = id;
      have = 1;
    }
    if (id == found) {
      out->at = sqlite3_column_int64(st, 1);
      out->id = sqlite3_column_int64(st, 2);
    }
  }
  sqlite3_finalize(st);
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
  if (prepare_filtered(d, f,
                       "SELECT t.name, t.status, count(*)" READER_TASK_FROM
                       " WHERE " SCHEMA_SQL_FAILED_OR_SKIPPED
                       " AND t.enqueued_at >= ?1",
                       "GROUP BY t.name, t.status", 2, &st))
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

int data_names_load(data *d, const filter *f, int64_t now_us, data_name **out,
                    int *n) {
  sample_set set;
  *out = NULL;
  *n = 0;
  int reuse = effective(f) == NULL && d->sample && d->sample_now == now_us;
  if (reuse) {
    set = *d->sample;
    memset(d->sample, 0, sizeof *d->sample);
    drop_sample(d);
  } else if (sample_window(d, f, now_us, &set)) {
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
  int rc = add_unusual(d, f, now_us - STRATA * STRATUM_US, &rows, &count, &cap);
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
      "events, dropped, reconnects, connected, ended, service, host FROM "
      "agents ORDER BY connected DESC, %s DESC, id LIMIT 10000",
      seen, seen);
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
