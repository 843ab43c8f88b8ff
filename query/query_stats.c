/*
 * query_stats - `taskwatch query stats`: per group (all tasks, or by name,
 * service or batch label) the count of each state, the failure share, and
 * p50/p95/p99/max of run time and queue wait.
 *
 * Where the numbers come from (docs/query.md, "stats"):
 *
 * - Rollups, by default: the whole minutes of the asked range from the
 *   per-minute and per-hour rollups (docs/schema.md), the seconds before
 *   the first and after the last whole minute from raw rows, and the tasks
 *   of the whole minutes that are not final yet (which rollups do not
 *   hold) from raw rows through the partial index tasks_unusual. Counts
 *   and max are exact; percentiles come from the merged histograms, within
 *   HIST_ERROR_PCT of the exact ones. The cost follows the number of
 *   minutes and hours, not of tasks.
 * - Raw rows, exact: with --exact, when the filter has terms the rollups
 *   do not know (they know service, name and time), for --by batch_label,
 *   and when the range holds few tasks (EXACT_BELOW) so that reading them
 *   costs little. Percentiles are nearest-rank, found by selection
 *   (common/stats) rather than by sorting every sample.
 *
 * Raw rows are taken to be complete from the minute of the oldest
 * remaining succeeded task on (retention may prune older ones). Before
 * that, only rollups know the history: the rollup path takes an edge
 * minute whole from them (and says so), the raw path leaves that part out
 * (and says so).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "hist.h"
#include "json.h"
#include "query.h"
#include "sanitize.h"
#include "schema.h"
#include "stats.h"
#include "xalloc.h"

#define MINUTE_US INT64_C(60000000)
#define HOUR_US INT64_C(3600000000)
/* A range whose rollups hold fewer tasks than this is read from raw rows,
 * exactly: a few milliseconds at most. */
#define EXACT_BELOW 20000

/* The percentiles every group reports: p50, p95, p99 and max. */
static const unsigned per_mille[4] = {500, 950, 990, 1000};

typedef struct group {
  char *key;      /* NULL: the column was NULL, or no grouping */
  size_t key_len; /* the key may hold NUL bytes */
  int64_t count;
  int64_t by_status[SCHEMA_STATUS_COUNT];
  stats_values run, wait;    /* raw samples, for exact percentiles */
  hist_sparse run_h, wait_h; /* with rollups: every sample */
  stats_banded run_b, wait_b; /* exact, in bands the rollups place */
  int banded;                 /* run_b and wait_b have their bands */
  int64_t pct[2][4];         /* [run, wait][p50, p95, p99, max] */
  int have[2];
} group;

typedef struct group_map {
  group *groups;
  size_t n, cap;
  size_t *slots; /* index + 1 into groups; 0 is empty */
  size_t nslots;
} group_map;

/* A key's hash, eight bytes at a time: it runs once per raw row. */
static uint64_t hash(const char *s, size_t len, int is_null) {
  const uint64_t k = 0x9e3779b97f4a7c15u;
  uint64_t h = (is_null ? 0x2545f4914f6cdd1du : 1469598103934665603u) ^ len;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  memcpy(&w, s + i, len - i);
  h = (h ^ w) * k;
  return h ^ (h >> 32);
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
    size_t j =
        hash(g->key ? g->key : "", g->key_len, g->key == NULL) & (nslots - 1);
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
  hist_sparse_init(&g->run_h);
  hist_sparse_init(&g->wait_h);
  stats_banded_init(&g->run_b);
  stats_banded_init(&g->wait_b);
  m->slots[j] = ++m->n;
  return g;
}

/* The group of a key, or NULL: no insert, so threads may share a map
 * that none of them changes. */
static const group *map_find(const group_map *m, const char *s, size_t len) {
  if (m == NULL || m->nslots == 0)
    return NULL;
  size_t j = hash(s ? s : "", len, s == NULL) & (m->nslots - 1);
  while (m->slots[j] != 0) {
    const group *g = &m->groups[m->slots[j] - 1];
    if (same_key(g, s, len))
      return g;
    j = (j + 1) & (m->nslots - 1);
  }
  return NULL;
}

static void map_fini(group_map *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->groups[i].key);
    stats_values_fini(&m->groups[i].run);
    stats_values_fini(&m->groups[i].wait);
    hist_sparse_fini(&m->groups[i].run_h);
    hist_sparse_fini(&m->groups[i].wait_h);
    stats_banded_fini(&m->groups[i].run_b);
    stats_banded_fini(&m->groups[i].wait_b);
  }
  free(m->groups);
  free(m->slots);
  memset(m, 0, sizeof(*m));
}

/* ---- the plan ------------------------------------------------------------
 */

/* Why raw rows answered: nothing (rollups did), or one of these. */
enum raw_reason { VIA_ROLLUPS, RAW_EXACT, RAW_FILTER, RAW_SMALL, RAW_SHORT };

typedef struct plan {
  int64_t since, until;       /* the asked range, [since, until) */
  int rollups;                /* the body from rollups, the rest raw */
  int reason;                 /* enum raw_reason */
  int64_t body_from, body_to; /* whole minutes rollups answer */
  int64_t raw_from;   /* raw rows complete from here on; INT64_MAX: none */
  int rounded;        /* an edge minute came whole from rollups */
  int left_out;       /* raw rows only, and the range reaches pruned minutes */
  int pruned_in_body; /* rollups hold minutes of the body before raw_from */
  int64_t counts_only_before; /* rollups without histograms before this */
} plan;

static int64_t floor_to(int64_t t, int64_t span) {
  if (t == INT64_MIN || t == INT64_MAX)
    return t;
  return t - (((t % span) + span) % span);
}

static int64_t ceil_to(int64_t t, int64_t span) {
  int64_t f = floor_to(t, span);
  return f == t || f > INT64_MAX - span ? f : f + span;
}

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

/* Where raw rows become complete: the minute of the oldest succeeded task
 * (any task when none succeeded), INT64_MAX in a store without tasks. */
static int64_t raw_boundary(sqlite3 *db) {
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
  return floor_to(oldest, MINUTE_US);
}

/* 1 when rollups hold a minute in [lo, hi). */
static int rollups_between(sqlite3 *db, int64_t lo, int64_t hi) {
  return lo < hi && single_int(db,
                               "SELECT 1 FROM rollups WHERE minute >= ?1 AND "
                               "minute < ?2 LIMIT 1",
                               lo, hi, 0);
}

static void make_plan(sqlite3 *db, const query_opts *o, plan *p) {
  memset(p, 0, sizeof(*p));
  filter_time_range(o->filter, &p->since, &p->until);
  p->raw_from = raw_boundary(db);
  p->counts_only_before = single_int(
      db,
      "SELECT value FROM meta WHERE key = '" SCHEMA_META_COUNTS_ONLY_BEFORE "'",
      0, 0, INT64_MIN);
  int by_ok = o->by == NULL || strcmp(o->by, "batch_label") != 0;
  p->reason = o->exact ? RAW_EXACT
              : (filter_uses(o->filter) & FILTER_USES_OTHER) || !by_ok
                  ? RAW_FILTER
                  : VIA_ROLLUPS;
  if (p->reason == VIA_ROLLUPS) {
    p->body_from = ceil_to(p->since, MINUTE_US);
    p->body_to = floor_to(p->until, MINUTE_US);
    /* An edge minute whose raw rows were pruned comes whole from the
     * rollups. */
    int64_t head = floor_to(p->since, MINUTE_US);
    if (p->body_from != p->since && head < p->raw_from &&
        rollups_between(db, head, head + MINUTE_US)) {
      p->body_from = head;
      p->rounded = 1;
    }
    if (p->body_to != p->until && p->body_to < p->raw_from &&
        rollups_between(db, p->body_to, p->body_to + MINUTE_US)) {
      p->body_to += MINUTE_US;
      p->rounded = 1;
    }
    p->pruned_in_body = rollups_between(
        db, p->body_from, p->body_to < p->raw_from ? p->body_to : p->raw_from);
    p->rollups = p->body_from < p->body_to;
    if (!p->rollups)
      p->reason = RAW_SHORT;
  }
  /* Raw rows alone cannot see pruned minutes that rollups hold. */
  if (!p->rollups)
    p->left_out =
        rollups_between(db, floor_to(p->since, MINUTE_US),
                        p->until < p->raw_from ? p->until : p->raw_from);
}

/* ---- reading ---------------------------------------------------------------
 */

static const char *key_column(const char *by) {
  if (by == NULL)
    return "NULL";
  if (strcmp(by, "name") == 0)
    return "t.name";
  if (strcmp(by, "service") == 0)
    return "a.service";
  return "b.label";
}

static group *group_of(group_map *m, sqlite3_stmt *st) {
  const char *key = (const char *)sqlite3_column_text(st, 0);
  return map_get(m, key, key ? (size_t)sqlite3_column_bytes(st, 0) : 0);
}

static int step_error(sqlite3 *db, sqlite3_stmt *st, int rc) {
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Where collect_raw() puts a task's durations. */
enum into { INTO_VALUES, INTO_HIST, INTO_BANDS };

/* The bands of a new group's exact samples, from the rollups' group of
 * the same key in `hints` (set_bands() placed them there). */
static void take_bands(group *g, const group_map *hints) {
  const group *h = map_find(hints, g->key, g->key_len);
  g->banded = 1;
  if (h == NULL)
    return; /* every sample kept: exact all the same */
  g->run_b = h->run_b;
  g->wait_b = h->wait_b;
  stats_values_init(&g->run_b.kept);
  stats_values_init(&g->wait_b.kept);
}

/* What collect_raw()'s SQL function takes each task into. */
typedef struct take {
  group_map *m;
  enum into into;
  const group_map *hints;
} take;

#define TAKE_FUNCTION "taskwatch_stats_take"

/* taskwatch_stats_take(key, status, run_us, wait_us): one task into its
 * group. SQLite calls it for each row the SELECT finds, an aggregate over
 * the rows, so that no row comes back through sqlite3_step() and
 * sqlite3_column_*(): about 150 ns a row rather than 250 ns over half a
 * day of 10 M tasks, in a loop of SQLite alone (docs/query.md, "stats").
 * Its `take` is the function's user data, which collect_raw() registers
 * for its one statement (a pointer argument would cost a string compare
 * of its type on every row). */
static void take_step(sqlite3_context *ctx, int argc, sqlite3_value **v) {
  (void)argc;
  take *t = sqlite3_user_data(ctx);
  const char *key = (const char *)sqlite3_value_text(v[0]);
  group *g = map_get(t->m, key, key ? (size_t)sqlite3_value_bytes(v[0]) : 0);
  int status = sqlite3_value_int(v[1]);
  g->count++;
  if (status >= 0 && status < SCHEMA_STATUS_COUNT)
    g->by_status[status]++;
  if (t->into == INTO_BANDS && !g->banded)
    take_bands(g, t->hints);
  for (int k = 0; k < 2; k++) {
    if (sqlite3_value_type(v[2 + k]) == SQLITE_NULL)
      continue;
    int64_t x = sqlite3_value_int64(v[2 + k]);
    if (t->into == INTO_HIST)
      hist_sparse_add(k ? &g->wait_h : &g->run_h, x);
    else if (t->into == INTO_BANDS)
      stats_banded_add(k ? &g->wait_b : &g->run_b, x);
    else
      stats_values_push(k ? &g->wait : &g->run, x);
  }
}

static void take_final(sqlite3_context *ctx) {
  sqlite3_result_null(ctx);
}

/*
 * Reads the matching raw tasks enqueued in [lo, hi) (and, with `extra`,
 * also meeting that SQL condition) into the groups: their values into the
 * samples, the histograms, or the bands that `hints` gives each group.
 */
static int collect_raw(sqlite3 *db, const query_opts *o, int64_t lo, int64_t hi,
                       const char *extra, enum into into,
                       const group_map *hints, group_map *m) {
  if (lo >= hi)
    return 0;
  take t = {m, into, hints};
  if (sqlite3_create_function(db, TAKE_FUNCTION, 4,
                              SQLITE_UTF8 | SQLITE_DIRECTONLY, &t, NULL,
                              take_step, take_final) != SQLITE_OK) {
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
    return -1;
  }
  int n = filter_param_count(o->filter);
  /* [lo, hi) lies inside the filter's time range, so when every time term
   * narrows it (none is negated: those count as other terms) each holds
   * for every row read, and is asked once of lo instead of per row. */
  char at[16];
  snprintf(at, sizeof(at), "?%d", n + 1);
  const char *const map[][2] = {{"t.enqueued_at", at}};
  char *where = filter_uses(o->filter) & FILTER_USES_OTHER
                    ? query_filter_unindexed_time(o->filter, 1)
                    : filter_sql_map(o->filter, 1, map, 1);
  format_buf sql;
  format_buf_init(&sql);
  int alone = (o->by == NULL || strcmp(o->by, "name") == 0) &&
              !(filter_uses(o->filter) & FILTER_USES_JOIN);
  format_buf_printf(&sql,
                    "SELECT " TAKE_FUNCTION "(%s, t.status, t.run_us, "
                    "t.wait_us)%s WHERE %s AND t.enqueued_at >= ?%d AND "
                    "t.enqueued_at < ?%d%s%s",
                    key_column(o->by),
                    alone ? READER_TASK_ALONE_FROM : READER_TASK_FROM, where,
                    n + 1, n + 2, extra ? " AND " : "", extra ? extra : "");
  free(where);
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  int rc = SQLITE_ERROR;
  if (st != NULL) {
    filter_bind(o->filter, st, 1);
    sqlite3_bind_int64(st, n + 1, lo);
    sqlite3_bind_int64(st, n + 2, hi);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      ;
    rc = step_error(db, st, rc);
  }
  /* `t` ends here: the function goes with it. */
  sqlite3_create_function(db, TAKE_FUNCTION, 4, SQLITE_UTF8, NULL, NULL, NULL,
                          NULL);
  return st == NULL ? -1 : rc;
}

/* Reads the rollup rows of `table` (keyed by `column`) in [lo, hi) that
 * match the filter. The filter's columns are the rollups' own; its time
 * terms hold for every row of the range (the range lies inside them, but
 * for an edge minute taken whole), so they are asked of a time inside. */
static int collect_table(sqlite3 *db, const query_opts *o, const plan *p,
                         const char *table, const char *column, int64_t lo,
                         int64_t hi, group_map *m) {
  if (lo >= hi)
    return 0;
  int n = filter_param_count(o->filter);
  char at[16];
  snprintf(at, sizeof(at), "?%d", n + 3);
  const char *const map[][2] = {
      {"t.name", "r.name"}, {"a.service", "r.service"}, {"t.enqueued_at", at}};
  char *where = filter_sql_map(o->filter, 3, map, 3);
  const char *key = o->by == NULL                ? "NULL"
                    : strcmp(o->by, "name") == 0 ? "r.name"
                                                 : "r.service";
  format_buf sql;
  format_buf_init(&sql);
  format_buf_printf(&sql,
                    "SELECT %s, r.succeeded, r.failed, r.skipped, r.dropped, "
                    "r.lost, r.run_hist, r.wait_hist FROM %s r WHERE r.%s >= "
                    "?1 AND r.%s < ?2 AND %s",
                    key, table, column, column, where);
  free(where);
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st == NULL)
    return -1;
  sqlite3_bind_int64(st, 1, lo);
  sqlite3_bind_int64(st, 2, hi);
  filter_bind(o->filter, st, 3);
  sqlite3_bind_int64(st, n + 3,
                     p->since != INT64_MIN   ? p->since
                     : p->until != INT64_MAX ? p->until - 1
                                             : 0);
  int rc, damaged = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    group *g = group_of(m, st);
    for (int i = 0; i < 5; i++) {
      int64_t k = sqlite3_column_int64(st, 1 + i);
      g->by_status[SCHEMA_SUCCEEDED + i] += k;
      g->count += k;
    }
    for (int k = 0; k < 2; k++)
      if (sqlite3_column_type(st, 6 + k) != SQLITE_NULL &&
          hist_sparse_add_blob(k ? &g->wait_h : &g->run_h,
                               sqlite3_column_blob(st, 6 + k),
                               (size_t)sqlite3_column_bytes(st, 6 + k)) != 0)
        damaged++;
  }
  if (damaged)
    fprintf(stderr,
            "taskwatch query: %d damaged histograms in %s left out of the "
            "percentiles\n",
            damaged, table);
  return step_error(db, st, rc);
}

/* The rollups of [from, to): minutes up to the first whole hour, whole
 * hours, minutes after the last. */
static int collect_rollups(sqlite3 *db, const query_opts *o, const plan *p,
                           group_map *m) {
  int64_t from = p->body_from, to = p->body_to;
  int64_t h1 = ceil_to(from, HOUR_US), h0 = floor_to(to, HOUR_US);
  if (h1 >= h0)
    return collect_table(db, o, p, "rollups", "minute", from, to, m);
  if (collect_table(db, o, p, "rollups", "minute", from, h1, m) ||
      collect_table(db, o, p, "rollups_hour", "hour", h1, h0, m) ||
      collect_table(db, o, p, "rollups", "minute", h0, to, m))
    return -1;
  return 0;
}

/* Adds the groups of `from` to m (keys, counts and samples). */
static void merge_groups(group_map *m, group_map *from) {
  for (size_t i = 0; i < from->n; i++) {
    group *src = &from->groups[i];
    group *g = map_get(m, src->key, src->key_len);
    g->count += src->count;
    for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
      g->by_status[s] += src->by_status[s];
    stats_values_append(&g->run, &src->run);
    stats_values_append(&g->wait, &src->wait);
    if (!src->banded)
      continue;
    if (!g->banded) {
      /* A group the first half did not meet: the second half's bands. */
      g->run_b = src->run_b;
      g->wait_b = src->wait_b;
      stats_values_init(&g->run_b.kept);
      stats_values_init(&g->wait_b.kept);
      g->run_b.n = g->wait_b.n = 0;
      g->run_b.max = g->wait_b.max = -1;
      memset(g->run_b.below, 0, sizeof(g->run_b.below));
      memset(g->wait_b.below, 0, sizeof(g->wait_b.below));
      g->banded = 1;
    }
    stats_banded_merge(&g->run_b, &src->run_b);
    stats_banded_merge(&g->wait_b, &src->wait_b);
  }
}

/* The later half of a range, read on a connection of its own. */
typedef struct half {
  const query_opts *o;
  enum into into;
  const group_map *hints;
  int64_t lo, hi;
  group_map m;
  int rc;
} half;

static void *read_half(void *arg) {
  half *h = arg;
  reader *r = NULL;
  char err[512];
  h->rc = -1;
  if (reader_open(h->o->db_path, &r, err, sizeof(err)) != READER_OK) {
    fprintf(stderr, "taskwatch query: %s\n", err);
    return NULL;
  }
  sqlite3 *db = reader_db(r);
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  h->rc = collect_raw(db, h->o, h->lo, h->hi, NULL, h->into, h->hints, &h->m);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  reader_close(r);
  return NULL;
}

/*
 * Every raw row of [since, until), exactly. A range of more than
 * HALVES_FROM is read in two halves at once, the later one on a second
 * connection in a thread of its own: the machine has cores to spare for
 * a day of 10 M tasks (a second's worth of rows), and SQLite reads its
 * rows one at a time. The second connection sees the store as it is when
 * it begins, a few milliseconds after the first (a task committed in
 * between may count in one half).
 */
#define HALVES_FROM (10 * MINUTE_US)
static int collect_raw_halves(sqlite3 *db, const query_opts *o, int64_t since,
                              int64_t until, const group_map *hints,
                              group_map *m) {
  enum into into = hints ? INTO_BANDS : INTO_VALUES;
  int64_t lo = since, hi = until;
  if (lo == INT64_MIN)
    lo = single_int(db, "SELECT min(enqueued_at) FROM tasks", 0, 0, 0);
  if (hi == INT64_MAX)
    hi = single_int(db, "SELECT max(enqueued_at) FROM tasks", 0, 0, -1) + 1;
  if (hi - lo <= HALVES_FROM || o->db_path == NULL)
    return collect_raw(db, o, since, until, NULL, into, hints, m);
  half later = {o, into, hints, lo + (hi - lo) / 2, until, {0}, -1};
  pthread_t thread;
  if (pthread_create(&thread, NULL, read_half, &later) != 0)
    return collect_raw(db, o, since, until, NULL, into, hints, m);
  int rc = collect_raw(db, o, since, later.lo, NULL, into, hints, m);
  pthread_join(thread, NULL);
  if (rc == 0 && later.rc == 0)
    merge_groups(m, &later.m);
  map_fini(&later.m);
  return rc == 0 ? later.rc : rc;
}

/*
 * The bands of exact percentiles (stats_banded), per group, from the
 * rollups of the whole minutes of the range that raw rows also hold: an
 * --exact over a day then keeps a few percent of the samples instead of
 * every one (no array of 1.4 M values to grow, merge and select in). A
 * percentile's band spans the ranks around the rollups' own, widened by
 * 1 % of the group, by the tasks the rollups cannot know of (the edge
 * seconds, in proportion; tasks not final yet) and by 100. Returns 1 with
 * the bands in *hints, or 0 when the rollups cannot place them (a filter
 * or grouping they do not know, or too few tasks to be worth it).
 */
#define BAND_MARGIN_DIV 100
#define BAND_MARGIN_MIN 100
static int exact_hints(sqlite3 *db, const query_opts *o, const plan *p,
                       group_map *hints) {
  if ((filter_uses(o->filter) & FILTER_USES_OTHER) ||
      (o->by != NULL && strcmp(o->by, "batch_label") == 0))
    return 0;
  plan q = *p;
  q.body_from = ceil_to(p->since, MINUTE_US);
  q.body_to = floor_to(p->until, MINUTE_US);
  if (q.raw_from != INT64_MAX && q.body_from < q.raw_from)
    q.body_from = q.raw_from;
  if (q.body_from >= q.body_to || collect_rollups(db, o, &q, hints) != 0)
    return 0;
  /* The share of the range outside the whole minutes. */
  double edge = 0;
  if (p->since != INT64_MIN && p->until != INT64_MAX)
    edge = (double)((q.body_from - p->since) + (p->until - q.body_to)) /
           (double)(q.body_to - q.body_from);
  int64_t total = 0;
  for (size_t i = 0; i < hints->n; i++) {
    group *g = &hints->groups[i];
    total += g->count;
    for (int k = 0; k < 2; k++) {
      const hist_sparse *h = k ? &g->wait_h : &g->run_h;
      stats_banded *b = k ? &g->wait_b : &g->run_b;
      if (h->total == 0)
        continue;
      int64_t t = (int64_t)h->total;
      int64_t margin =
          t / BAND_MARGIN_DIV + (int64_t)(edge * (double)t) + BAND_MARGIN_MIN;
      for (int i = 0; i < 3; i++) {
        int64_t rank = (int64_t)(((uint64_t)per_mille[i] * (uint64_t)t + 999) /
                                 1000);
        int64_t lo = rank - margin < 1 ? INT64_MIN
                                       : hist_bucket_low(hist_sparse_rank_bucket(
                                             h, (uint64_t)(rank - margin)));
        int64_t hi = rank + margin > t ? INT64_MAX
                                       : hist_bucket_high(hist_sparse_rank_bucket(
                                             h, (uint64_t)(rank + margin)));
        stats_banded_band(b, i, lo, hi);
      }
    }
  }
  return total >= EXACT_BELOW;
}

/* Everything the plan says, into m; raw rows exactly in the bands of
 * `hints` when given (exact_hints()). */
static int collect(sqlite3 *db, const query_opts *o, plan *p,
                   const group_map *hints, group_map *m) {
  if (o->by == NULL)
    map_get(m, NULL, 0);
  if (p->rollups) {
    if (collect_rollups(db, o, p, m))
      return -1;
    int64_t total = 0;
    for (size_t i = 0; i < m->n; i++)
      total += m->groups[i].count;
    if (total >= EXACT_BELOW || p->rounded || p->pruned_in_body) {
      /* The edges, and what is still queued or running inside. */
      return collect_raw(db, o, p->since, p->body_from, NULL, INTO_HIST,
                         NULL, m) ||
                     collect_raw(db, o, p->body_from, p->body_to,
                                 SCHEMA_SQL_ACTIVE, INTO_HIST, NULL, m) ||
                     collect_raw(db, o, p->body_to, p->until, NULL, INTO_HIST,
                                 NULL, m)
                 ? -1
                 : 0;
    }
    /* Few tasks: read them exactly instead. */
    map_fini(m);
    if (o->by == NULL)
      map_get(m, NULL, 0);
    p->rollups = 0;
    p->reason = RAW_SMALL;
  }
  return collect_raw_halves(db, o, p->since, p->until, hints, m);
}

/* ---- percentiles ----------------------------------------------------------
 */

static const char *const pct_names[4] = {"p50", "p95", "p99", "max"};

/* Returns 0, or 1 when a banded percentile fell outside its band. */
static int finish_group(group *g, int from_hist) {
  for (int k = 0; k < 2; k++) {
    if (g->banded) {
      int rc = stats_banded_select(k ? &g->wait_b : &g->run_b, per_mille, 4,
                                   g->pct[k]);
      if (rc == 1)
        return 1;
      g->have[k] = rc == 0;
    } else if (from_hist) {
      hist_sparse *h = k ? &g->wait_h : &g->run_h;
      g->have[k] = h->total > 0;
      for (int i = 0; g->have[k] && i < 4; i++)
        hist_sparse_percentile(h, per_mille[i], &g->pct[k][i]);
    } else {
      g->have[k] = stats_values_select(k ? &g->wait : &g->run, per_mille, 4,
                                       g->pct[k]) == 0;
    }
  }
  return 0;
}

/* Finishes every group; 1 when a banded one must be read again whole. */
static int finish_groups(group_map *m, int from_hist) {
  int again = 0;
  for (size_t i = 0; i < m->n && !again; i++)
    again = finish_group(&m->groups[i], from_hist);
  return again;
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

/* ---- writers --------------------------------------------------------------
 */

static double failure_pct(const group *g) {
  return 100.0 * (double)g->by_status[SCHEMA_FAILED] / (double)g->count;
}

static void json_group(format_buf *b, const query_opts *o, const group *g,
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
    json_fixed(&w, failure_pct(g), 2);
  else
    json_null(&w);
  const char *set_names[2] = {"run", "wait"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      char key[32];
      snprintf(key, sizeof(key), "%s_%s_us", set_names[k], pct_names[i]);
      json_key(&w, key);
      if (g->have[k])
        json_int(&w, g->pct[k][i]);
      else
        json_null(&w);
    }
  json_key(&w, "source");
  json_cstring(&w, p->rollups ? "rollups" : "raw");
  json_key(&w, "percentile_error_pct");
  if (p->rollups)
    json_fixed(&w, HIST_ERROR_PCT, 2);
  else
    json_int(&w, 0);
  json_end_object(&w);
  format_buf_putc(b, '\n');
}

static void csv_group(format_buf *b, const query_opts *o, const group *g,
                      const plan *p) {
  if (g == NULL) {
    if (o->by)
      format_buf_printf(b, "%s,", o->by);
    format_buf_puts(b, "count");
    for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
      format_buf_printf(b, ",%s", schema_status_name(s));
    format_buf_puts(b, ",failure_pct");
    for (int k = 0; k < 2; k++)
      for (int i = 0; i < 4; i++)
        format_buf_printf(b, ",%s_%s_us", k ? "wait" : "run", pct_names[i]);
    format_buf_puts(b, ",source,percentile_error_pct\r\n");
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
    format_buf_printf(b, ",%.2f", failure_pct(g));
  else
    format_buf_putc(b, ',');
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      if (g->have[k])
        format_buf_printf(b, ",%lld", (long long)g->pct[k][i]);
      else
        format_buf_putc(b, ',');
    }
  if (p->rollups)
    format_buf_printf(b, ",rollups,%.2f\r\n", HIST_ERROR_PCT);
  else
    format_buf_puts(b, ",raw,0\r\n");
}

/* The table: fixed numeric columns after a sanitized group column. */
static void table_group(format_buf *b, const group *g, int key_width,
                        unsigned flags, int has_key) {
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
    format_buf_printf(b, " %6.2f%%", failure_pct(g));
  else
    format_buf_printf(b, " %7s", "-");
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      char text[32] = "-";
      if (g->have[k])
        format_duration(g->pct[k][i], text, sizeof(text));
      format_buf_printf(b, " %8s", text);
    }
  format_buf_putc(b, '\n');
}

/* The source line and the notes, as the table prints them; `notes_only`
 * leaves out the source line (JSON and CSV say it in every row). */
static void footer(format_buf *b, const plan *p, int notes_only) {
  char when[FORMAT_TIME_SIZE];
  query_format_time(when, sizeof(when), p->raw_from, 0);
  static const char *const why[] = {
      [RAW_EXACT] = "--exact",
      [RAW_FILTER] = "the filter or grouping needs them",
      [RAW_SMALL] = "few tasks",
      [RAW_SHORT] = "no whole minute in the range"};
  if (notes_only) {
    /* JSON and CSV name the source in every row. */
  } else if (p->rollups) {
    format_buf_printf(b,
                      "source: rollups of whole minutes, raw rows for the "
                      "rest; counts and max exact, percentiles within %.2f %% "
                      "(--exact: exact, from raw rows)\n",
                      HIST_ERROR_PCT);
  } else {
    format_buf_printf(b,
                      "source: raw rows, exact (nearest-rank percentiles; "
                      "%s)\n",
                      why[p->reason]);
  }
  if (p->rounded)
    format_buf_printf(b,
                      "note: raw rows before %s were pruned: the range "
                      "takes its edge minutes whole from the rollups\n",
                      when);
  if (p->left_out)
    format_buf_printf(b,
                      "note: raw rows before %s were pruned and the rollups "
                      "only answer service, name and time filters (by name "
                      "or service, without --exact); that part is left out\n",
                      when);
  if (p->rollups && p->body_from < p->counts_only_before) {
    query_format_time(when, sizeof(when), p->counts_only_before, 0);
    format_buf_printf(b,
                      "note: the rollups before %s hold counts only (carried "
                      "over from an older store): their tasks are not in the "
                      "percentiles\n",
                      when);
  }
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
  format_buf_putc(&b, '\n');
  for (size_t i = 0; i < n; i++)
    table_group(&b, rows[i], key_width, flags, o->by != NULL);
  footer(&b, p, 0);
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
}

static void write_rows(const query_opts *o, group **rows, size_t n,
                       const plan *p) {
  format_buf b;
  format_buf_init(&b);
  if (o->format == QUERY_CSV)
    csv_group(&b, o, NULL, p);
  for (size_t i = 0; i < n; i++) {
    if (o->format == QUERY_JSON)
      json_group(&b, o, rows[i], p);
    else
      csv_group(&b, o, rows[i], p);
  }
  fputs(format_buf_str(&b), stdout);
  format_buf_reset(&b);
  /* Notes go to stderr, one line each, after the tool's name. */
  footer(&b, p, 1);
  for (const char *s = format_buf_str(&b), *e; *s; s = e + 1) {
    e = strchr(s, '\n');
    fprintf(stderr, "taskwatch query: %.*s\n", (int)(e - s), s);
  }
  format_buf_fini(&b);
}

int query_stats(reader *r, const query_opts *o) {
  sqlite3 *db = reader_db(r);
  group_map m = {0}, hints = {0};
  plan p;
  /* One read transaction: rollups and raw rows of one moment. */
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  make_plan(db, o, &p);
  int banded = p.reason == RAW_EXACT && exact_hints(db, o, &p, &hints);
  int rc = collect(db, o, &p, banded ? &hints : NULL, &m);
  if (rc == 0 && finish_groups(&m, p.rollups)) {
    /* The rollups placed a band wrong (rows they do not hold, such as
     * pruned ones, or names they fold): every sample, as before. */
    map_fini(&m);
    rc = collect(db, o, &p, NULL, &m);
    if (rc == 0)
      finish_groups(&m, p.rollups);
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  map_fini(&hints);
  if (rc != 0) {
    map_fini(&m);
    return 2;
  }
  int64_t total = 0;
  for (size_t i = 0; i < m.n; i++)
    total += m.groups[i].count;
  if (m.n > 1)
    qsort(m.groups, m.n, sizeof(group), by_count);
  /* The map's slots are stale after the sort; only the rows are used. */
  group **rows = xcalloc(m.n + 1, sizeof(group *));
  for (size_t i = 0; i < m.n; i++)
    rows[i] = &m.groups[i];
  if (o->format == QUERY_TABLE)
    write_table(o, rows, m.n, &p);
  else
    write_rows(o, rows, m.n, &p);
  fflush(stdout);
  free(rows);
  map_fini(&m);
  if (o->fail_if_empty && total == 0)
    return 1;
  if (o->fail_if_any && total > 0)
    return 1;
  return 0;
}
