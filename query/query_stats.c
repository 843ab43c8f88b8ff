/*
 * query_stats - `taskwatch query stats`: per group (all tasks, or by name,
 * service or batch label) the count of each state, the failure share, and
 * exact p50/p95/p99/max of run time and queue wait.
 *
 * Exact means computed from every raw row that matches: one pass reads
 * (group, status, run, wait) for the matching tasks, the samples of each
 * group are sorted, and the percentiles are nearest-rank (common/stats).
 *
 * The collector may prune old raw rows, keeping per-minute rollups per
 * task name (docs/schema.md). Raw rows are taken to be complete from the
 * minute of the oldest remaining succeeded task on; when the asked range
 * reaches before that minute and the rollups hold data there, each group
 * gets a second figure with "source": "rollup" for that earlier part:
 * counts exact, percentiles the count-weighted percentile of the minutes'
 * percentiles (approximate; no max). Only name and time terms can be asked
 * of rollups, grouped by name or not at all; for any other filter the
 * output says that the pruned part is left out.
 */
#include <stdlib.h>
#include <string.h>

#define MINUTE_US INT64_C(60000000)

#include "format.h"
#include "json.h"
#include "query.h"
#include "sanitize.h"
#include "schema.h"
#include "stats.h"
#include "xalloc.h"

typedef struct group {
  char *key;      /* NULL: the column was NULL, or no grouping */
  size_t key_len; /* the key may hold NUL bytes */
  int rollup;     /* figures from the rollups, not raw rows */
  int64_t count;
  int64_t by_status[SCHEMA_STATUS_COUNT];
  stats_values run, wait;          /* raw */
  stats_weighted rollup_pct[2][3]; /* rollup: [run, wait][p50, p95, p99] */
} group;

typedef struct group_map {
  group *groups;
  size_t n, cap;
  size_t *slots; /* index + 1 into groups; 0 is empty */
  size_t nslots;
} group_map;

static uint64_t hash(const char *s, size_t len, int is_null) {
  uint64_t h = is_null ? 0x9e3779b97f4a7c15u : 1469598103934665603u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211u;
  return h;
}

static int same_key(const group *g, const char *s, size_t len) {
  if (g->key == NULL || s == NULL)
    return g->key == NULL && s == NULL;
  return g->key_len == len && memcmp(g->key, s, len) == 0;
}

static void map_grow(group_map *m) {
  size_t nslots = m->nslots ? m->nslots * 2 : 64;
  size_t *slots = xcalloc(nslots, sizeof(size_t));
  for (size_t i = 0; i < m->n; i++) {
    const group *g = &m->groups[i];
    size_t len = g->key_len;
    size_t j = hash(g->key ? g->key : "", len, g->key == NULL) & (nslots - 1);
    while (slots[j] != 0)
      j = (j + 1) & (nslots - 1);
    slots[j] = i + 1;
  }
  free(m->slots);
  m->slots = slots;
  m->nslots = nslots;
}

static group *map_get(group_map *m, const char *s, size_t len) {
  if ((m->n + 1) * 2 > m->nslots)
    map_grow(m);
  size_t j = hash(s ? s : "", len, s == NULL) & (m->nslots - 1);
  while (m->slots[j] != 0) {
    group *g = &m->groups[m->slots[j] - 1];
    if (same_key(g, s, len))
      return g;
    j = (j + 1) & (m->nslots - 1);
  }
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 16;
    m->groups = xrealloc(m->groups, m->cap * sizeof(group));
  }
  group *g = &m->groups[m->n];
  memset(g, 0, sizeof(*g));
  g->key = s ? xmemdup(s, len) : NULL;
  g->key_len = s ? len : 0;
  stats_values_init(&g->run);
  stats_values_init(&g->wait);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3; i++)
      stats_weighted_init(&g->rollup_pct[k][i]);
  m->slots[j] = ++m->n;
  return g;
}

static void map_fini(group_map *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->groups[i].key);
    stats_values_fini(&m->groups[i].run);
    stats_values_fini(&m->groups[i].wait);
    for (int k = 0; k < 2; k++)
      for (int j = 0; j < 3; j++)
        stats_weighted_fini(&m->groups[i].rollup_pct[k][j]);
  }
  free(m->groups);
  free(m->slots);
}

static const char *key_column(const char *by) {
  if (by == NULL)
    return "NULL";
  if (strcmp(by, "name") == 0)
    return "t.name";
  if (strcmp(by, "service") == 0)
    return "a.service";
  return "b.label";
}

/* What one stats run found out about raw rows and rollups. */
typedef struct plan {
  int64_t boundary; /* raw rows from here on; INT64_MIN: raw rows only */
  int rollups_used;
  int rollups_refused; /* a pruned range the filter cannot ask rollups */
} plan;

/* The first column of the first row of sql (?1, ?2 bound to a and b), or
 * `none`. */
static int64_t single_int(sqlite3 *db, const char *sql, int64_t a, int64_t b,
                          int64_t none) {
  sqlite3_stmt *st = NULL;
  int64_t v = none;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return none;
  if (sqlite3_bind_parameter_count(st) >= 1)
    sqlite3_bind_int64(st, 1, a);
  if (sqlite3_bind_parameter_count(st) >= 2)
    sqlite3_bind_int64(st, 2, b);
  if (sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* Decides where raw rows stop being complete and whether rollups hold
 * anything before that. A store without a rollups table, or whose rollups
 * all lie in the raw range, is answered from raw rows alone. */
static void make_plan(sqlite3 *db, const query_opts *o, plan *p) {
  p->boundary = INT64_MIN;
  p->rollups_used = p->rollups_refused = 0;
  /* "+status": the term must not steer SQLite away from walking
   * tasks_time in order (without it, it scans and sorts the table). */
  int64_t oldest = single_int(
      db,
      "SELECT enqueued_at FROM tasks WHERE " SCHEMA_SQL_SUCCEEDED_NO_INDEX
      " ORDER BY enqueued_at LIMIT 1",
      0, 0, INT64_MAX);
  if (oldest == INT64_MAX)
    oldest =
        single_int(db, "SELECT min(enqueued_at) FROM tasks", 0, 0, INT64_MAX);
  int64_t boundary =
      oldest == INT64_MAX ? INT64_MAX : oldest - (oldest % MINUTE_US);
  /* Only rollup minutes inside the asked range and before the boundary
   * matter. */
  int64_t since, until;
  filter_time_range(o->filter, &since, &until);
  if (single_int(db,
                 "SELECT count(*) FROM rollups WHERE minute >= ?1 AND"
                 " minute < ?2",
                 since, until < boundary ? until : boundary, 0) == 0)
    return;
  unsigned uses = filter_uses(o->filter);
  int by_ok = o->by == NULL || strcmp(o->by, "name") == 0;
  if ((uses & FILTER_USES_OTHER) || !by_ok) {
    p->rollups_refused = 1;
    p->boundary = boundary;
    return;
  }
  p->boundary = boundary;
  p->rollups_used = 1;
}

/* Reads every matching raw task (from the plan's boundary on) into the
 * groups. */
static int collect(sqlite3 *db, const query_opts *o, const plan *p,
                   group_map *m) {
  format_buf sql;
  format_buf_init(&sql);
  format_buf_printf(&sql,
                    "SELECT %s, t.status, t.run_us, t.wait_us" READER_TASK_FROM
                    " WHERE %s AND t.enqueued_at >= ?%d",
                    key_column(o->by), filter_sql(o->filter),
                    filter_param_count(o->filter) + 1);
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st == NULL)
    return -1;
  int next = filter_bind(o->filter, st, 1);
  sqlite3_bind_int64(st, next, p->rollups_used ? p->boundary : INT64_MIN);
  if (o->by == NULL)
    map_get(m, NULL, 0);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *key = (const char *)sqlite3_column_text(st, 0);
    group *g = map_get(m, key, key ? (size_t)sqlite3_column_bytes(st, 0) : 0);
    int status = sqlite3_column_int(st, 1);
    g->count++;
    if (status >= 0 && status < SCHEMA_STATUS_COUNT)
      g->by_status[status]++;
    if (sqlite3_column_type(st, 2) != SQLITE_NULL)
      stats_values_push(&g->run, sqlite3_column_int64(st, 2));
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
      stats_values_push(&g->wait, sqlite3_column_int64(st, 3));
  }
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Reads the rollup minutes before the boundary. The filter only has name
 * and time terms here, so it runs over the rollups seen as `t`, with the
 * minute standing in for the enqueue time. */
static int collect_rollups(sqlite3 *db, const query_opts *o, const plan *p,
                           group_map *m) {
  char *where = filter_sql_at(o->filter, 2);
  format_buf sql;
  format_buf_init(&sql);
  format_buf_printf(
      &sql,
      "SELECT %s, t.succeeded, t.failed, t.skipped, t.dropped, t.lost,"
      " t.run_p50, t.run_p95, t.run_p99, t.wait_p50, t.wait_p95, t.wait_p99"
      " FROM (SELECT minute AS enqueued_at, * FROM rollups WHERE minute < ?1)"
      " t WHERE %s",
      o->by ? "t.name" : "NULL", where);
  free(where);
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st == NULL)
    return -1;
  sqlite3_bind_int64(st, 1, p->boundary);
  filter_bind(o->filter, st, 2);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *key = (const char *)sqlite3_column_text(st, 0);
    group *g = map_get(m, key, key ? (size_t)sqlite3_column_bytes(st, 0) : 0);
    g->rollup = 1;
    static const int states[5] = {SCHEMA_SUCCEEDED, SCHEMA_FAILED,
                                  SCHEMA_SKIPPED, SCHEMA_DROPPED, SCHEMA_LOST};
    for (int i = 0; i < 5; i++) {
      int64_t n = sqlite3_column_int64(st, 1 + i);
      g->by_status[states[i]] += n;
      g->count += n;
    }
    /* Tasks that ran (and so started) weigh each minute's percentiles. */
    int64_t ran = sqlite3_column_int64(st, 1) + sqlite3_column_int64(st, 2);
    for (int k = 0; k < 2; k++)
      for (int i = 0; i < 3; i++)
        if (sqlite3_column_type(st, 6 + k * 3 + i) != SQLITE_NULL)
          stats_weighted_push(&g->rollup_pct[k][i],
                              sqlite3_column_int64(st, 6 + k * 3 + i), ran);
  }
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int by_count(const void *a, const void *b) {
  const group *x = a, *y = b;
  if (x->count != y->count)
    return x->count < y->count ? 1 : -1;
  if (x->key == NULL || y->key == NULL)
    return (x->key == NULL) - (y->key == NULL);
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);
  if (c != 0)
    return c;
  return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static const unsigned per_mille[4] = {500, 950, 990, 1000};
static const char *const pct_names[4] = {"p50", "p95", "p99", "max"};

/* Percentile i (p50, p95, p99, max) of run (k = 0) or wait (k = 1). */
static int group_percentile(group *g, int k, int i, int64_t *out) {
  if (g->rollup)
    return i < 3 ? stats_weighted_percentile(&g->rollup_pct[k][i], per_mille[i],
                                             out)
                 : -1;
  return stats_percentile(k ? &g->wait : &g->run, per_mille[i], out);
}

static const char *source_name(const group *g) {
  return g->rollup ? "rollup" : "raw";
}

/* ---- writers --------------------------------------------------------------
 */

static void json_group(format_buf *b, const query_opts *o, group *g,
                       const plan *p) {
  json_writer w;
  json_init(&w, b);
  json_begin_object(&w);
  if (o->by != NULL) {
    json_key(&w, o->by);
    json_string(&w, g->key, g->key_len);
  }
  json_key(&w, "count");
  json_int(&w, g->count);
  for (int s = 0; s < SCHEMA_STATUS_COUNT; s++) {
    json_key(&w, schema_status_name(s));
    json_int(&w, g->by_status[s]);
  }
  json_key(&w, "failure_pct");
  if (g->count > 0)
    json_fixed(
        &w, 100.0 * (double)g->by_status[SCHEMA_FAILED] / (double)g->count, 2);
  else
    json_null(&w);
  const char *set_names[2] = {"run", "wait"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      char key[32];
      int64_t v;
      snprintf(key, sizeof(key), "%s_%s_us", set_names[k], pct_names[i]);
      json_key(&w, key);
      if (group_percentile(g, k, i, &v) == 0)
        json_int(&w, v);
      else
        json_null(&w);
    }
  json_key(&w, "source");
  json_cstring(&w, source_name(g));
  if (p->rollups_used || p->rollups_refused) {
    char when[FORMAT_TIME_SIZE];
    query_format_time(when, sizeof(when), p->boundary, 0);
    json_key(&w, g->rollup ? "before" : "from");
    json_cstring(&w, when);
  }
  json_end_object(&w);
  format_buf_putc(b, '\n');
}

static void csv_group(format_buf *b, const query_opts *o, group *g,
                      int header) {
  if (header) {
    if (o->by)
      format_buf_printf(b, "%s,", o->by);
    format_buf_puts(b, "count");
    for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
      format_buf_printf(b, ",%s", schema_status_name(s));
    format_buf_puts(b, ",failure_pct");
    for (int k = 0; k < 2; k++)
      for (int i = 0; i < 4; i++)
        format_buf_printf(b, ",%s_%s_us", k ? "wait" : "run", pct_names[i]);
    format_buf_puts(b, ",source\r\n");
    return;
  }
  if (o->by) {
    if (g->key)
      format_csv_field(b, g->key, g->key_len);
    format_buf_putc(b, ',');
  }
  format_buf_printf(b, "%lld", (long long)g->count);
  for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
    format_buf_printf(b, ",%lld", (long long)g->by_status[s]);
  if (g->count > 0)
    format_buf_printf(b, ",%.2f",
                      100.0 * (double)g->by_status[SCHEMA_FAILED] /
                          (double)g->count);
  else
    format_buf_putc(b, ',');
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      int64_t v;
      if (group_percentile(g, k, i, &v) == 0)
        format_buf_printf(b, ",%lld", (long long)v);
      else
        format_buf_putc(b, ',');
    }
  format_buf_printf(b, ",%s\r\n", source_name(g));
}

/* The table: fixed numeric columns after a sanitized group column. */
static void table_group(format_buf *b, group *g, int key_width, unsigned flags,
                        int has_key, int split) {
  if (has_key) {
    const char *k = g->key ? g->key : "(none)";
    size_t klen = g->key ? g->key_len : strlen(k);
    int w;
    char *shown =
        sanitize_dup(k, klen, key_width, flags | SANITIZE_ELLIPSIS, &w);
    format_buf_puts(b, shown);
    for (int i = w; i < key_width + 1; i++)
      format_buf_putc(b, ' ');
    free(shown);
  }
  format_buf_printf(b, "%8lld %8lld %7lld %7lld %7lld %5lld",
                    (long long)g->count,
                    (long long)g->by_status[SCHEMA_SUCCEEDED],
                    (long long)g->by_status[SCHEMA_FAILED],
                    (long long)g->by_status[SCHEMA_SKIPPED],
                    (long long)g->by_status[SCHEMA_DROPPED],
                    (long long)g->by_status[SCHEMA_LOST]);
  if (g->count > 0)
    format_buf_printf(b, " %6.2f%%",
                      100.0 * (double)g->by_status[SCHEMA_FAILED] /
                          (double)g->count);
  else
    format_buf_printf(b, " %7s", "-");
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      int64_t v;
      char text[32] = "-";
      if (group_percentile(g, k, i, &v) == 0)
        format_duration(v, text, sizeof(text));
      format_buf_printf(b, " %8s", text);
    }
  if (split)
    format_buf_printf(b, " %s", source_name(g));
  format_buf_putc(b, '\n');
}

static void table_footer(format_buf *b, const plan *p) {
  char when[FORMAT_TIME_SIZE];
  query_format_time(when, sizeof(when), p->boundary, 0);
  if (p->rollups_used)
    format_buf_printf(b,
                      "source: raw rows from %s on, exact (nearest-rank); "
                      "before that raw rows were pruned: rollups, exact "
                      "counts, approximate percentiles, no max\n",
                      when);
  else
    format_buf_puts(b, "source: raw rows, exact (nearest-rank percentiles)\n");
  if (p->rollups_refused)
    format_buf_printf(b,
                      "note: raw rows before %s were pruned and the rollups "
                      "only answer name and time filters (by name or "
                      "overall); that part is left out\n",
                      when);
}

static void write_table(const query_opts *o, group **rows, size_t n,
                        const plan *p) {
  format_buf b;
  format_buf_init(&b);
  unsigned flags = query_sanitize_flags();
  int key_width = o->by ? (int)strlen(o->by) : 0;
  for (size_t i = 0; o->by && i < n; i++) {
    const char *k = rows[i]->key ? rows[i]->key : "(none)";
    int w =
        sanitize_width(k, rows[i]->key ? rows[i]->key_len : strlen(k), flags);
    key_width = w > key_width ? w : key_width;
  }
  if (key_width > 40)
    key_width = 40;
  if (o->by) {
    format_buf_puts(&b, o->by);
    for (int i = (int)strlen(o->by); i < key_width + 1; i++)
      format_buf_putc(&b, ' ');
  }
  format_buf_printf(&b, "%8s %8s %7s %7s %7s %5s %7s", "COUNT", "OK", "FAILED",
                    "SKIPPED", "DROPPED", "LOST", "FAIL%");
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++)
      format_buf_printf(&b, " %4s_%-3s", k ? "WAIT" : "RUN", pct_names[i]);
  format_buf_puts(&b, p->rollups_used ? " SOURCE\n" : "\n");
  for (size_t i = 0; i < n; i++)
    table_group(&b, rows[i], key_width, flags, o->by != NULL, p->rollups_used);
  table_footer(&b, p);
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
}

/* The output order: groups by count, each raw figure followed by the
 * rollup figure of the same group. */
static group **order_rows(group_map *raw, group_map *rollup, size_t *n) {
  if (raw->n > 1)
    qsort(raw->groups, raw->n, sizeof(group), by_count);
  if (rollup->n > 1)
    qsort(rollup->groups, rollup->n, sizeof(group), by_count);
  group **rows = xcalloc(raw->n + rollup->n + 1, sizeof(group *));
  char *taken = xcalloc(rollup->n + 1, 1);
  size_t k = 0;
  for (size_t i = 0; i < raw->n; i++) {
    rows[k++] = &raw->groups[i];
    for (size_t j = 0; j < rollup->n; j++)
      if (!taken[j] && same_key(&rollup->groups[j], raw->groups[i].key,
                                raw->groups[i].key_len)) {
        rows[k++] = &rollup->groups[j];
        taken[j] = 1;
      }
  }
  for (size_t j = 0; j < rollup->n; j++)
    if (!taken[j])
      rows[k++] = &rollup->groups[j];
  free(taken);
  *n = k;
  return rows;
}

int query_stats(reader *r, const query_opts *o) {
  sqlite3 *db = reader_db(r);
  group_map raw = {0}, rollup = {0};
  plan p;
  make_plan(db, o, &p);
  int rc = collect(db, o, &p, &raw);
  if (rc == 0 && p.rollups_used)
    rc = collect_rollups(db, o, &p, &rollup);
  if (rc != 0) {
    map_fini(&raw);
    map_fini(&rollup);
    return 2;
  }
  int64_t total = 0;
  for (size_t i = 0; i < raw.n; i++) {
    total += raw.groups[i].count;
    stats_values_sort(&raw.groups[i].run);
    stats_values_sort(&raw.groups[i].wait);
  }
  for (size_t i = 0; i < rollup.n; i++)
    total += rollup.groups[i].count;
  /* Sorting moves the groups, so the maps' slots are stale from here on
   * (nothing looks them up again). */
  size_t n;
  group **rows = order_rows(&raw, &rollup, &n);
  if (o->format == QUERY_TABLE) {
    write_table(o, rows, n, &p);
  } else {
    format_buf b;
    format_buf_init(&b);
    if (o->format == QUERY_CSV)
      csv_group(&b, o, NULL, 1);
    for (size_t i = 0; i < n; i++) {
      if (o->format == QUERY_JSON)
        json_group(&b, o, rows[i], &p);
      else
        csv_group(&b, o, rows[i], 0);
    }
    fputs(format_buf_str(&b), stdout);
    format_buf_fini(&b);
    if (p.rollups_refused) {
      format_buf_init(&b);
      table_footer(&b, &p);
      const char *note = strstr(format_buf_str(&b), "note: ");
      fprintf(stderr, "taskwatch query: %s", note ? note : "");
      format_buf_fini(&b);
    }
  }
  fflush(stdout);
  free(rows);
  map_fini(&raw);
  map_fini(&rollup);
  if (o->fail_if_empty && total == 0)
    return 1;
  if (o->fail_if_any && total > 0)
    return 1;
  return 0;
}
