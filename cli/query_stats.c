/*
 * query_stats - `taskwatch query stats`: per group (all tasks, or by name,
 * service or batch label) the count of each state, the failure share, and
 * exact p50/p95/p99/max of run time and queue wait.
 *
 * Exact means computed from every raw row that matches: one pass reads
 * (group, status, run, wait) for the matching tasks, the samples of each
 * group are sorted, and the percentiles are nearest-rank (common/stats).
 * The store keeps raw rows only, so every figure says "source": "raw".
 */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "query.h"
#include "sanitize.h"
#include "schema.h"
#include "stats.h"
#include "xalloc.h"

typedef struct group {
  char *key; /* NULL: the column was NULL, or no grouping */
  int64_t count;
  int64_t by_status[SCHEMA_STATUS_COUNT];
  stats_values run, wait;
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
  return strlen(g->key) == len && memcmp(g->key, s, len) == 0;
}

static void map_grow(group_map *m) {
  size_t nslots = m->nslots ? m->nslots * 2 : 64;
  size_t *slots = xcalloc(nslots, sizeof(size_t));
  for (size_t i = 0; i < m->n; i++) {
    const group *g = &m->groups[i];
    size_t len = g->key ? strlen(g->key) : 0;
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
  g->key = s ? xstrndup(s, len) : NULL;
  stats_values_init(&g->run);
  stats_values_init(&g->wait);
  m->slots[j] = ++m->n;
  return g;
}

static void map_fini(group_map *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->groups[i].key);
    stats_values_fini(&m->groups[i].run);
    stats_values_fini(&m->groups[i].wait);
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

/* Reads every matching task into the groups. */
static int collect(sqlite3 *db, const query_opts *o, group_map *m) {
  format_buf sql;
  format_buf_init(&sql);
  format_buf_printf(&sql,
                    "SELECT %s, t.status, t.run_us, t.wait_us" QUERY_TASK_FROM
                    " WHERE %s",
                    key_column(o->by), filter_sql(o->filter));
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st == NULL)
    return -1;
  filter_bind(o->filter, st, 1);
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

static int by_count(const void *a, const void *b) {
  const group *x = a, *y = b;
  if (x->count != y->count)
    return x->count < y->count ? 1 : -1;
  if (x->key == NULL || y->key == NULL)
    return (x->key == NULL) - (y->key == NULL);
  return strcmp(x->key, y->key);
}

static const unsigned per_mille[4] = {500, 950, 990, 1000};
static const char *const pct_names[4] = {"p50", "p95", "p99", "max"};

/* ---- writers -------------------------------------------------------------- */

static void json_group(format_buf *b, const query_opts *o, const group *g) {
  format_buf_putc(b, '{');
  if (o->by != NULL) {
    format_buf_printf(b, "\"%s\":", o->by);
    if (g->key)
      format_json_string(b, g->key, strlen(g->key));
    else
      format_buf_puts(b, "null");
    format_buf_putc(b, ',');
  }
  format_buf_printf(b, "\"count\":%lld", (long long)g->count);
  for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
    format_buf_printf(b, ",\"%s\":%lld", schema_status_name(s),
                      (long long)g->by_status[s]);
  if (g->count > 0)
    format_buf_printf(b, ",\"failure_pct\":%.2f",
                      100.0 * (double)g->by_status[SCHEMA_FAILED] /
                          (double)g->count);
  else
    format_buf_puts(b, ",\"failure_pct\":null");
  const stats_values *sets[2] = {&g->run, &g->wait};
  const char *set_names[2] = {"run", "wait"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      int64_t v;
      if (stats_percentile(sets[k], per_mille[i], &v) == 0)
        format_buf_printf(b, ",\"%s_%s_us\":%lld", set_names[k], pct_names[i],
                          (long long)v);
      else
        format_buf_printf(b, ",\"%s_%s_us\":null", set_names[k],
                          pct_names[i]);
    }
  format_buf_puts(b, ",\"source\":\"raw\"}\n");
}

static void csv_group(format_buf *b, const query_opts *o, const group *g,
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
      format_csv_field(b, g->key, strlen(g->key));
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
      if (stats_percentile(k ? &g->wait : &g->run, per_mille[i], &v) == 0)
        format_buf_printf(b, ",%lld", (long long)v);
      else
        format_buf_putc(b, ',');
    }
  format_buf_puts(b, ",raw\r\n");
}

/* The table: fixed numeric columns after a sanitized group column. */
static void table_group(format_buf *b, const group *g, int key_width,
                        unsigned flags, int has_key) {
  if (has_key) {
    const char *k = g->key ? g->key : "(none)";
    int w;
    char *shown = sanitize_dup(k, strlen(k), key_width,
                               flags | SANITIZE_ELLIPSIS, &w);
    format_buf_puts(b, shown);
    for (int i = w; i < key_width + 1; i++)
      format_buf_putc(b, ' ');
    free(shown);
  }
  format_buf_printf(b, "%8lld %8lld %7lld %7lld %7lld %5lld", (long long)g->count,
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
      if (stats_percentile(k ? &g->wait : &g->run, per_mille[i], &v) == 0)
        format_duration(v, text, sizeof(text));
      format_buf_printf(b, " %8s", text);
    }
  format_buf_putc(b, '\n');
}

static void write_table(const query_opts *o, group_map *m) {
  format_buf b;
  format_buf_init(&b);
  unsigned flags = query_sanitize_flags();
  int key_width = o->by ? (int)strlen(o->by) : 0;
  for (size_t i = 0; o->by && i < m->n; i++) {
    const char *k = m->groups[i].key ? m->groups[i].key : "(none)";
    int w = sanitize_width(k, strlen(k), flags);
    key_width = w > key_width ? w : key_width;
  }
  if (key_width > 40)
    key_width = 40;
  if (o->by) {
    format_buf_puts(&b, o->by);
    for (int i = (int)strlen(o->by); i < key_width + 1; i++)
      format_buf_putc(&b, ' ');
  }
  format_buf_printf(&b, "%8s %8s %7s %7s %7s %5s %7s", "COUNT", "OK",
                    "FAILED", "SKIPPED", "DROPPED", "LOST", "FAIL%");
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++)
      format_buf_printf(&b, " %4s_%-3s", k ? "WAIT" : "RUN", pct_names[i]);
  format_buf_putc(&b, '\n');
  for (size_t i = 0; i < m->n; i++)
    table_group(&b, &m->groups[i], key_width, flags, o->by != NULL);
  format_buf_puts(&b, "source: raw rows, exact (nearest-rank percentiles)\n");
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
}

int query_stats(sqlite3 *db, const query_opts *o) {
  group_map m = {0};
  if (collect(db, o, &m) != 0) {
    map_fini(&m);
    return 2;
  }
  int64_t total = 0;
  for (size_t i = 0; i < m.n; i++) {
    total += m.groups[i].count;
    stats_values_sort(&m.groups[i].run);
    stats_values_sort(&m.groups[i].wait);
  }
  /* Group order is by count; qsort moves groups, so the slots are stale
   * from here on (nothing looks them up again). */
  qsort(m.groups, m.n, sizeof(group), by_count);
  if (o->format == QUERY_TABLE) {
    write_table(o, &m);
  } else {
    format_buf b;
    format_buf_init(&b);
    if (o->format == QUERY_CSV)
      csv_group(&b, o, NULL, 1);
    for (size_t i = 0; i < m.n; i++) {
      if (o->format == QUERY_JSON)
        json_group(&b, o, &m.groups[i]);
      else
        csv_group(&b, o, &m.groups[i], 0);
    }
    fputs(format_buf_str(&b), stdout);
    format_buf_fini(&b);
  }
  fflush(stdout);
  map_fini(&m);
  if (o->fail_if_empty && total == 0)
    return 1;
  if (o->fail_if_any && total > 0)
    return 1;
  return 0;
}
