/*
 * query_hours - which hours of a wide time range can hold a task that
 * matches a filter of service, name and time terms, from the per-hour
 * rollups (docs/schema.md): a listing then reads the tasks_time index of
 * those hours only, so a name filter over a week, or with no time range
 * at all, costs what the hours of that name cost rather than a scan of
 * every task. The rollups hold finished tasks; the hours of matching
 * tasks not final yet come from the partial index tasks_unusual.
 */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "query.h"
#include "schema.h"
#include "xalloc.h"

#define HOUR_US INT64_C(3600000000)

static int64_t floor_hour(int64_t t) {
  if (t == INT64_MIN || t == INT64_MAX)
    return t;
  return t - (((t % HOUR_US) + HOUR_US) % HOUR_US);
}

int query_hours_apply(const query_opts *o, int64_t since, int64_t until) {
  unsigned uses = filter_uses(o->filter);
  if (!(uses & (FILTER_USES_NAME | FILTER_USES_SERVICE)) ||
      (uses & FILTER_USES_OTHER))
    return 0;
  if (o->sort_column && strcmp(o->sort_column, "t.enqueued_at") != 0)
    return 0;
  return since == INT64_MIN || until == INT64_MAX ||
         until - since > QUERY_HOURS_WIDER_THAN;
}

typedef struct hour_list {
  int64_t *v;
  size_t n, cap;
} hour_list;

static void push_hour(hour_list *l, int64_t h) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 256;
    l->v = xrealloc(l->v, l->cap * sizeof(int64_t));
  }
  l->v[l->n++] = h;
}

/* Runs sql (?1 and ?2: the hours' range; the filter from ?3; ?K: a time
 * inside the range) and adds the hour of each row. */
static int add_hours(sqlite3 *db, const query_opts *o, const char *sql,
                     int64_t since, int64_t until, hour_list *l) {
  sqlite3_stmt *st = query_prepare(db, sql);
  if (st == NULL)
    return -1;
  int n = filter_param_count(o->filter);
  sqlite3_bind_int64(st, 1, floor_hour(since));
  sqlite3_bind_int64(st, 2, until);
  filter_bind(o->filter, st, 3);
  sqlite3_bind_int64(st, n + 3,
                     since != INT64_MIN   ? since
                     : until != INT64_MAX ? until - 1
                                          : 0);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    push_hour(l, sqlite3_column_int64(st, 0));
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int query_hours(sqlite3 *db, const query_opts *o, int64_t since, int64_t until,
                query_span **out, size_t *nout) {
  int n = filter_param_count(o->filter);
  char at[16];
  snprintf(at, sizeof(at), "?%d", n + 3);
  /* The time terms hold for every hour of the range (it is clipped to it
   * below), so they are asked of a time inside it. */
  const char *const rollup_columns[][2] = {
      {"t.name", "r.name"}, {"a.service", "r.service"}, {"t.enqueued_at", at}};
  char unindexed[32];
  snprintf(unindexed, sizeof(unindexed), "+%s", at);
  const char *const task_columns[][2] = {{"t.enqueued_at", unindexed}};
  char *rollup_where = filter_sql_map(o->filter, 3, rollup_columns, 3);
  char *task_where = filter_sql_map(o->filter, 3, task_columns, 1);
  format_buf a, b;
  format_buf_init(&a);
  format_buf_init(&b);
  format_buf_printf(&a,
                    "SELECT DISTINCT r.hour FROM rollups_hour r WHERE r.hour "
                    ">= ?1 AND r.hour < ?2 AND %s",
                    rollup_where);
  format_buf_printf(
      &b,
      "SELECT DISTINCT t.enqueued_at - ((t.enqueued_at %% "
      "3600000000) + 3600000000) %% 3600000000 FROM tasks t "
      "LEFT JOIN agents a ON a.id = t.agent WHERE " SCHEMA_SQL_ACTIVE
      " AND t.enqueued_at >= ?1 AND t.enqueued_at < ?2 AND %s",
      task_where);
  free(rollup_where);
  free(task_where);
  hour_list l = {0};
  int rc = add_hours(db, o, format_buf_str(&a), since, until, &l);
  if (rc == 0)
    rc = add_hours(db, o, format_buf_str(&b), since, until, &l);
  format_buf_fini(&a);
  format_buf_fini(&b);
  if (rc != 0) {
    free(l.v);
    return -1;
  }
  if (l.n > 1)
    qsort(l.v, l.n, sizeof(int64_t), compare_i64);
  /* Consecutive hours make one span, clipped to the range. */
  query_span *spans = xcalloc(l.n + 1, sizeof(query_span));
  size_t k = 0;
  for (size_t i = 0; i < l.n; i++) {
    int64_t from = l.v[i] > since ? l.v[i] : since;
    int64_t to = l.v[i] + HOUR_US < until ? l.v[i] + HOUR_US : until;
    if (k > 0 && spans[k - 1].to >= from) {
      if (to > spans[k - 1].to)
        spans[k - 1].to = to;
    } else {
      spans[k].from = from;
      spans[k++].to = to;
    }
  }
  free(l.v);
  *out = spans;
  *nout = k;
  return 0;
}
