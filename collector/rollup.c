/*
 * rollup - deltas keyed by (minute, agent, name) in a seeded hash map,
 * written as upserts of a minute row and an hour row each.
 *
 * An agent's service is looked up once per agent (the agents row is
 * written before its tasks, in the same or an earlier transaction) and
 * kept: rollups hold the service's text, so they outlive the agents rows
 * that retention removes.
 *
 * A minute holds at most GUARD_ROLLUP_NAMES_PER_MINUTE rows (guard.h):
 * a name that would be the minute's next row past it is written under
 * GUARD_OTHER_NAME instead (its hour row too), counted as rollup_folded.
 * Whether a name is new to its minute is the store's answer (a lookup by
 * the primary key); the minute's row count is read once and then kept,
 * for at most KEEP_MINUTES minutes.
 *
 * The slowest tasks of each minute (table slowest, schema.h): a
 * transaction's tasks that ran are kept per minute in a heap of the
 * SCHEMA_SLOWEST_PER_MINUTE slowest; the flush inserts them and trims the
 * minute back to that many, its fastest rows going first.
 */
#include "rollup.h"

#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "guard.h"
#include "hist.h"
#include "log.h"
#include "schema.h"
#include "u64map.h"
#include "xalloc.h"

/* Clean buckets kept after a flush, for the next transaction's tasks of
 * the same minutes; beyond this many they are freed. */
#define KEEP_BUCKETS 1024
/* Buckets that make rollup_fill() write what it has so far. */
#define FILL_BUCKETS 65536
/* Minutes whose row count is kept; beyond this many all are forgotten
 * (and read again when needed). */
#define KEEP_MINUTES 256
/* Minutes of slowest candidates that make rollup_fill() write. */
#define FILL_SLOW_MINUTES 4096

/* A task that ran, for its minute's slowest. */
typedef struct slow_task {
  int64_t run, id, batch, enqueued_at;
} slow_task;

/* One minute's candidates: a heap whose root is the fastest. */
typedef struct slow_minute {
  int64_t minute;
  int n;
  slow_task v[SCHEMA_SLOWEST_PER_MINUTE];
} slow_minute;

typedef struct bucket bucket;
struct bucket {
  bucket *next_same_hash;
  bucket *next_dirty;
  int64_t minute, agent;
  int dirty;
  int64_t counts[SCHEMA_STATUS_COUNT];
  hist_sparse wait, run;
  size_t name_len;
  char name[];
};

typedef struct service {
  size_t len;
  char text[];
} service;

enum {
  ST_MINUTE,
  ST_HOUR,
  ST_SERVICE,
  ST_FILL,
  ST_ROW_EXISTS,
  ST_MINUTE_ROWS,
  ST_SLOW_FLOOR,
  ST_SLOW_INSERT,
  ST_SLOW_TRIM,
  ST_COUNT
};

/* The upsert of a minute or an hour row: counts add up, histograms merge. */
#define UPSERT(table, column)                                                  \
  "INSERT INTO " table " (" column ", service, name, succeeded, failed, "      \
  "skipped, dropped, lost, wait_hist, run_hist) VALUES (?1, ?2, ?3, ?4, ?5, "  \
  "?6, ?7, ?8, ?9, ?10) ON CONFLICT (" column ", service, name) DO UPDATE "    \
  "SET succeeded = succeeded + excluded.succeeded, "                           \
  "failed = failed + excluded.failed, skipped = skipped + excluded.skipped, "  \
  "dropped = dropped + excluded.dropped, lost = lost + excluded.lost, "        \
  "wait_hist = taskwatch_hist_merge(wait_hist, excluded.wait_hist), "          \
  "run_hist = taskwatch_hist_merge(run_hist, excluded.run_hist)"

static const char *const sql_text[ST_COUNT] = {
    [ST_MINUTE] = UPSERT("rollups", "minute"),
    [ST_HOUR] = UPSERT("rollups_hour", "hour"),
    [ST_SERVICE] = "SELECT service FROM agents WHERE id = ?1",
    /* Table order (unary + keeps SQLite off the indexes): each agent's
     * tasks lie together, in about the order of their minutes. */
    [ST_FILL] = "SELECT agent, name, enqueued_at, status, wait_us, run_us, "
                "id, batch FROM tasks WHERE +" SCHEMA_SQL_FINAL
                " AND +enqueued_at >= ?1",
    [ST_ROW_EXISTS] = "SELECT 1 FROM rollups WHERE minute = ?1 AND service = "
                      "?2 AND name = ?3",
    [ST_MINUTE_ROWS] = "SELECT count(*) FROM rollups WHERE minute = ?1",
    /* The minute's fastest kept row, when it keeps as many as it may. */
    [ST_SLOW_FLOOR] = "SELECT run_us, id FROM slowest WHERE minute = ?1 "
                      "ORDER BY run_us DESC, id DESC LIMIT 1 OFFSET ?2",
    [ST_SLOW_INSERT] = "INSERT OR IGNORE INTO slowest (minute, run_us, id, "
                       "batch, enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    /* Every row past the minute's ?2 slowest. */
    [ST_SLOW_TRIM] = "DELETE FROM slowest WHERE minute = ?1 AND (run_us, id) "
                     "<= (SELECT run_us, id FROM slowest WHERE minute = ?1 "
                     "ORDER BY run_us DESC, id DESC LIMIT 1 OFFSET ?2)",
};

struct rollup {
  sqlite3 *db;
  sqlite3_stmt *st[ST_COUNT];
  u64map buckets; /* key_of() -> chain of buckets */
  bucket *dirty;
  u64map services;    /* agent -> service */
  u64map minute_rows; /* minute key -> rows of the minute + 1 (uintptr_t) */
  u64map slow;        /* minute key -> slow_minute */
  int only_slowest;   /* rollup_add() feeds slowest alone (an upgrade) */
  format_buf wait_blob, run_blob;
};

static uint64_t key_of(int64_t minute, int64_t agent, const char *name,
                       size_t len) {
  uint64_t h = UINT64_C(1469598103934665603);
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)name[i]) * UINT64_C(1099511628211);
  h ^= (uint64_t)agent * UINT64_C(0x9e3779b97f4a7c15);
  uint64_t k = u64map_hash(h ^ ((uint64_t)minute * 31));
  return k ? k : 1;
}

/* The start of the span of `span_us` that holds t. */
static int64_t floor_to(int64_t t, int64_t span_us) {
  return t - (((t % span_us) + span_us) % span_us);
}

int rollup_open(sqlite3 *db, rollup **out) {
  rollup *r = xcalloc(1, sizeof(*r));
  r->db = db;
  u64map_init(&r->buckets);
  u64map_init(&r->services);
  u64map_init(&r->minute_rows);
  u64map_init(&r->slow);
  format_buf_init(&r->wait_blob);
  format_buf_init(&r->run_blob);
  *out = NULL;
  int rc = hist_sql_register(db);
  for (int i = 0; i < ST_COUNT && rc == SQLITE_OK; i++)
    rc = sqlite3_prepare_v3(db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &r->st[i], NULL);
  if (rc != SQLITE_OK) {
    rollup_free(r);
    return rc;
  }
  *out = r;
  return SQLITE_OK;
}

static void bucket_free(bucket *b) {
  hist_sparse_fini(&b->wait);
  hist_sparse_fini(&b->run);
  free(b);
}

/* Frees every bucket; none may be dirty. */
static void drop_buckets(u64map *m) {
  size_t pos = 0;
  void *head;
  while (u64map_next(m, &pos, NULL, &head)) {
    for (bucket *b = head, *next; b; b = next) {
      next = b->next_same_hash;
      bucket_free(b);
    }
  }
  u64map_clear(m);
}

static void drop_slow(u64map *m) {
  size_t pos = 0;
  void *v;
  while (u64map_next(m, &pos, NULL, &v))
    free(v);
  u64map_clear(m);
}

void rollup_free(rollup *r) {
  if (r == NULL)
    return;
  drop_buckets(&r->buckets);
  u64map_fini(&r->buckets);
  size_t pos = 0;
  void *svc;
  while (u64map_next(&r->services, &pos, NULL, &svc))
    free(svc);
  u64map_fini(&r->services);
  u64map_fini(&r->minute_rows);
  drop_slow(&r->slow);
  u64map_fini(&r->slow);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(r->st[i]);
  format_buf_fini(&r->wait_blob);
  format_buf_fini(&r->run_blob);
  free(r);
}

static bucket *bucket_of(rollup *r, int64_t minute, int64_t agent,
                         const char *name, size_t len) {
  uint64_t key = key_of(minute, agent, name, len);
  bucket *head = u64map_get(&r->buckets, key);
  for (bucket *b = head; b; b = b->next_same_hash)
    if (b->minute == minute && b->agent == agent && b->name_len == len &&
        memcmp(b->name, name, len) == 0)
      return b;
  bucket *b = xcalloc(1, sizeof(*b) + len + 1);
  b->minute = minute;
  b->agent = agent;
  b->name_len = len;
  memcpy(b->name, name, len);
  hist_sparse_init(&b->wait);
  hist_sparse_init(&b->run);
  b->next_same_hash = head;
  u64map_put(&r->buckets, key, b);
  return b;
}

static uint64_t minute_key(int64_t minute);

/* a is faster than b: later in the list of the slowest. */
static int slow_before(const slow_task *a, const slow_task *b) {
  return a->run < b->run || (a->run == b->run && a->id < b->id);
}

static void slow_add(rollup *r, int64_t minute, slow_task t) {
  uint64_t key = minute_key(minute);
  slow_minute *m = u64map_get(&r->slow, key);
  if (m == NULL) {
    m = xcalloc(1, sizeof(*m));
    m->minute = minute;
    u64map_put(&r->slow, key, m);
  }
  int i;
  if (m->n < SCHEMA_SLOWEST_PER_MINUTE) {
    for (i = m->n++; i > 0 && slow_before(&t, &m->v[(i - 1) / 2]);
         i = (i - 1) / 2)
      m->v[i] = m->v[(i - 1) / 2];
    m->v[i] = t;
    return;
  }
  if (!slow_before(&m->v[0], &t))
    return;
  for (i = 0;;) { /* t replaces the fastest and sinks */
    int c = 2 * i + 1;
    if (c >= m->n)
      break;
    if (c + 1 < m->n && slow_before(&m->v[c + 1], &m->v[c]))
      c++;
    if (!slow_before(&m->v[c], &t))
      break;
    m->v[i] = m->v[c];
    i = c;
  }
  m->v[i] = t;
}

void rollup_add(rollup *r, int64_t agent, const char *name, size_t len,
                int64_t enqueued_at, int status, int64_t wait_us,
                int64_t run_us, int64_t id, int64_t batch) {
  if (status < SCHEMA_SUCCEEDED || status >= SCHEMA_STATUS_COUNT)
    return;
  if (run_us != ROLLUP_NONE && run_us >= 0)
    slow_add(r, floor_to(enqueued_at, SCHEMA_SLOWEST_MINUTE_US),
             (slow_task){run_us, id, batch, enqueued_at});
  if (r->only_slowest)
    return;
  bucket *b =
      bucket_of(r, floor_to(enqueued_at, ROLLUP_MINUTE_US), agent, name, len);
  b->counts[status]++;
  if (wait_us != ROLLUP_NONE)
    hist_sparse_add(&b->wait, wait_us);
  if (run_us != ROLLUP_NONE)
    hist_sparse_add(&b->run, run_us);
  if (!b->dirty) {
    b->dirty = 1;
    b->next_dirty = r->dirty;
    r->dirty = b;
  }
}

/* The service of an agent, looked up once ("" for an agent without a
 * row, which the writer never produces). */
static const service *service_of(rollup *r, int64_t agent, int *rc) {
  uint64_t key = (uint64_t)agent * 2 + 1;
  service *s = u64map_get(&r->services, key);
  if (s)
    return s;
  sqlite3_stmt *st = r->st[ST_SERVICE];
  sqlite3_bind_int64(st, 1, agent);
  int step = sqlite3_step(st);
  const char *text = "";
  size_t len = 0;
  if (step == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    text = (const char *)sqlite3_column_text(st, 0);
    len = (size_t)sqlite3_column_bytes(st, 0);
  }
  s = xmalloc(sizeof(*s) + len + 1);
  s->len = len;
  memcpy(s->text, text, len);
  s->text[len] = '\0';
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE) {
    *rc = step;
    free(s);
    return NULL;
  }
  /* Only a row that exists is remembered: a rolled-back agent may yet
   * be written. */
  if (step == SQLITE_ROW)
    u64map_put(&r->services, key, s);
  return s;
}

static int upsert(rollup *r, sqlite3_stmt *st, int64_t start,
                  const service *svc, const bucket *b, const char *name,
                  size_t len) {
  sqlite3_bind_int64(st, 1, start);
  sqlite3_bind_text(st, 2, svc->text, (int)svc->len, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, name, (int)len, SQLITE_STATIC);
  for (int i = 0; i < 5; i++)
    sqlite3_bind_int64(st, 4 + i, b->counts[SCHEMA_SUCCEEDED + i]);
  format_buf *blobs[2] = {&r->wait_blob, &r->run_blob};
  for (int i = 0; i < 2; i++) {
    if (blobs[i]->len)
      sqlite3_bind_blob(st, 9 + i, blobs[i]->data, (int)blobs[i]->len,
                        SQLITE_STATIC);
    else
      sqlite3_bind_null(st, 9 + i);
  }
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static uint64_t minute_key(int64_t minute) {
  return (uint64_t)minute ^ UINT64_C(0x8000000000000000); /* never 0 */
}

/* The first column of st's row for (minute[, service, name of b]), 0
 * without a row. An SQLite result code. */
static int query_count(sqlite3_stmt *st, int64_t minute, const service *svc,
                       const bucket *b, int64_t *out) {
  sqlite3_bind_int64(st, 1, minute);
  if (svc != NULL) {
    sqlite3_bind_text(st, 2, svc->text, (int)svc->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, b->name, (int)b->name_len, SQLITE_STATIC);
  }
  int rc = sqlite3_step(st);
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Whether b's name gets a row of its own in its minute (guard.h): it has
 * one already, or the minute has room. Sets *own; an SQLite result code. */
static int name_has_room(rollup *r, const service *svc, const bucket *b,
                         int *own) {
  int64_t n;
  int rc = query_count(r->st[ST_ROW_EXISTS], b->minute, svc, b, &n);
  *own = 1;
  if (rc != SQLITE_OK || n > 0)
    return rc;
  uint64_t key = minute_key(b->minute);
  uintptr_t rows = (uintptr_t)u64map_get(&r->minute_rows, key);
  if (rows == 0) {
    if (u64map_count(&r->minute_rows) >= KEEP_MINUTES)
      u64map_clear(&r->minute_rows);
    if ((rc = query_count(r->st[ST_MINUTE_ROWS], b->minute, NULL, b, &n)) !=
        SQLITE_OK)
      return rc;
    rows = (uintptr_t)n + 1;
  }
  *own = rows - 1 < GUARD_ROLLUP_NAMES_PER_MINUTE;
  u64map_put(&r->minute_rows, key, (void *)(rows + (uintptr_t)*own));
  return SQLITE_OK;
}

/* A bucket past its minute's cap of names: its tasks counted, logged at
 * the 1st, 2nd, 4th, ... time. */
static void count_folded(const bucket *b) {
  uint64_t tasks = 0, n = 0;
  for (int i = 0; i < SCHEMA_STATUS_COUNT; i++)
    tasks += (uint64_t)b->counts[i];
  for (uint64_t i = 0; i < tasks; i++)
    if (guard_log_due(n = guard_count(GUARD_rollup_folded)))
      log_msg(LOG_WARN,
              "rollups at their cap of names minute=%lld "
              "rollup_folded_total=%llu",
              (long long)(b->minute / 1000000), (unsigned long long)n);
}

static int write_bucket(rollup *r, const bucket *b) {
  int rc = SQLITE_OK, own = 1;
  const service *svc = service_of(r, b->agent, &rc);
  if (svc == NULL)
    return rc;
  const char *name = b->name;
  size_t len = b->name_len;
  rc = name_has_room(r, svc, b, &own);
  if (rc == SQLITE_OK && !own) {
    name = GUARD_OTHER_NAME;
    len = sizeof(GUARD_OTHER_NAME) - 1;
    count_folded(b);
  }
  format_buf_reset(&r->wait_blob);
  format_buf_reset(&r->run_blob);
  hist_sparse_encode(&b->wait, &r->wait_blob);
  hist_sparse_encode(&b->run, &r->run_blob);
  if (rc == SQLITE_OK)
    rc = upsert(r, r->st[ST_MINUTE], b->minute, svc, b, name, len);
  if (rc == SQLITE_OK)
    rc = upsert(r, r->st[ST_HOUR], floor_to(b->minute, ROLLUP_HOUR_US), svc, b,
                name, len);
  /* Only a service read in this transaction can be new; free it unless
   * it is the one remembered. */
  if (u64map_get(&r->services, (uint64_t)b->agent * 2 + 1) != svc)
    free((void *)svc);
  return rc;
}

static void clean(bucket *b) {
  memset(b->counts, 0, sizeof(b->counts));
  hist_sparse_clear(&b->wait);
  hist_sparse_clear(&b->run);
  b->dirty = 0;
  b->next_dirty = NULL;
}

/* Writes one minute's candidates that rank above the minute's fastest
 * kept row (all when it keeps fewer than it may), then trims the minute
 * to its slowest: a transaction of a busy minute mostly writes nothing. */
static int write_slow(rollup *r, const slow_minute *m) {
  sqlite3_stmt *st = r->st[ST_SLOW_FLOOR];
  sqlite3_bind_int64(st, 1, m->minute);
  sqlite3_bind_int(st, 2, SCHEMA_SLOWEST_PER_MINUTE - 1);
  int step = sqlite3_step(st), full = step == SQLITE_ROW, wrote = 0;
  slow_task floor = {0, 0, 0, 0};
  if (full) {
    floor.run = sqlite3_column_int64(st, 0);
    floor.id = sqlite3_column_int64(st, 1);
  }
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    return step;
  int rc = SQLITE_OK;
  st = r->st[ST_SLOW_INSERT];
  for (int i = 0; i < m->n && rc == SQLITE_OK; i++) {
    if (full && !slow_before(&floor, &m->v[i]))
      continue;
    wrote = 1;
    sqlite3_bind_int64(st, 1, m->minute);
    sqlite3_bind_int64(st, 2, m->v[i].run);
    sqlite3_bind_int64(st, 3, m->v[i].id);
    sqlite3_bind_int64(st, 4, m->v[i].batch);
    sqlite3_bind_int64(st, 5, m->v[i].enqueued_at);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(r->db);
    sqlite3_reset(st);
  }
  if (rc != SQLITE_OK || !wrote)
    return rc;
  st = r->st[ST_SLOW_TRIM];
  sqlite3_bind_int64(st, 1, m->minute);
  sqlite3_bind_int(st, 2, SCHEMA_SLOWEST_PER_MINUTE);
  rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(r->db);
  sqlite3_reset(st);
  return rc;
}

int rollup_flush(rollup *r) {
  int rc = SQLITE_OK;
  size_t pos = 0;
  void *m;
  while (rc == SQLITE_OK && u64map_next(&r->slow, &pos, NULL, &m))
    rc = write_slow(r, m);
  drop_slow(&r->slow);
  for (bucket *b = r->dirty, *next; b; b = next) {
    next = b->next_dirty;
    if (rc == SQLITE_OK)
      rc = write_bucket(r, b);
    clean(b);
  }
  r->dirty = NULL;
  if (u64map_count(&r->buckets) > KEEP_BUCKETS)
    drop_buckets(&r->buckets);
  return rc;
}

void rollup_rollback(rollup *r) {
  drop_slow(&r->slow);
  for (bucket *b = r->dirty, *next; b; b = next) {
    next = b->next_dirty;
    clean(b);
  }
  r->dirty = NULL;
  u64map_clear(&r->minute_rows); /* it counted rows that were not written */
}

static int64_t column_or_none(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL
             ? ROLLUP_NONE
             : sqlite3_column_int64(st, i);
}

int rollup_fill(rollup *r, int64_t from) {
  sqlite3_stmt *st = r->st[ST_FILL];
  int rc = SQLITE_OK, step;
  sqlite3_bind_int64(st, 1, from);
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    rollup_add(r, sqlite3_column_int64(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_int64(st, 2),
               sqlite3_column_int(st, 3), column_or_none(st, 4),
               column_or_none(st, 5), sqlite3_column_int64(st, 6),
               sqlite3_column_int64(st, 7));
    if ((u64map_count(&r->buckets) >= FILL_BUCKETS ||
         u64map_count(&r->slow) >= FILL_SLOW_MINUTES) &&
        (rc = rollup_flush(r)) != 0)
      break;
  }
  sqlite3_reset(st);
  if (rc == SQLITE_OK && step != SQLITE_DONE && step != SQLITE_ROW)
    rc = step;
  if (rc == SQLITE_OK)
    rc = rollup_flush(r);
  else
    rollup_rollback(r);
  return rc;
}

/* ---- the upgrade from version 1 to 3 ------------------------------------
 */

/* The first column of the first row of sql, ?1 bound to a; `none` when
 * there is no row or it is NULL. */
static int single_int(sqlite3 *db, const char *sql, int64_t a, int64_t none,
                      int64_t *out) {
  sqlite3_stmt *st = NULL;
  *out = none;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  if (sqlite3_bind_parameter_count(st) >= 1)
    sqlite3_bind_int64(st, 1, a);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Raw rows are taken to be complete from the minute of the oldest
 * succeeded task on (retention may keep failures longer); INT64_MAX when
 * the store holds no task. */
static int raw_boundary(sqlite3 *db, int64_t *out) {
  int64_t oldest;
  int rc = single_int(db,
                      "SELECT enqueued_at FROM tasks WHERE "
                      "" SCHEMA_SQL_SUCCEEDED_NO_INDEX
                      " ORDER BY enqueued_at LIMIT 1",
                      0, INT64_MAX, &oldest);
  if (rc == SQLITE_OK && oldest == INT64_MAX)
    rc = single_int(db, "SELECT min(enqueued_at) FROM tasks", 0, INT64_MAX,
                    &oldest);
  *out = oldest == INT64_MAX ? oldest : floor_to(oldest, ROLLUP_MINUTE_US);
  return rc;
}

/* The old rollups' counts before the boundary: minutes as they were
 * (a task counted in the minute it finished), service unknown (''),
 * no histograms. */
#define CARRY_COUNTS                                                           \
  "sum(succeeded), sum(failed), sum(skipped), sum(dropped), sum(lost) FROM "   \
  "rollups_v3 WHERE minute < ?1 GROUP BY 1, 3 ON CONFLICT DO UPDATE SET "      \
  "succeeded = succeeded + excluded.succeeded, failed = failed + "             \
  "excluded.failed, skipped = skipped + excluded.skipped, dropped = dropped "  \
  "+ excluded.dropped, lost = lost + excluded.lost"
static const char carry_minutes[] =
    "INSERT INTO rollups (minute, service, name, succeeded, failed, skipped, "
    "dropped, lost) SELECT minute, '', name, " CARRY_COUNTS;
static const char carry_hours[] =
    "INSERT INTO rollups_hour (hour, service, name, succeeded, failed, "
    "skipped, dropped, lost) SELECT minute - ((minute % 3600000000) + "
    "3600000000) % 3600000000, '', name, " CARRY_COUNTS;

static int carry_over(sqlite3 *db, int64_t boundary) {
  int64_t n;
  int rc = single_int(db, "SELECT count(*) FROM rollups_v3 WHERE minute < ?1",
                      boundary, 0, &n);
  if (rc != SQLITE_OK || n == 0)
    return rc;
  rc = single_int(db, carry_minutes, boundary, 0, &n);
  if (rc == SQLITE_OK)
    rc = single_int(db, carry_hours, boundary, 0, &n);
  if (rc == SQLITE_OK)
    rc = single_int(db,
                    "INSERT OR REPLACE INTO meta (key, value) VALUES "
                    "('" SCHEMA_META_COUNTS_ONLY_BEFORE "', ?1)",
                    boundary, 0, &n);
  return rc;
}

int rollup_upgrade(sqlite3 *db, int from, void *arg, char **err) {
  (void)arg;
  rollup *r = NULL;
  int64_t boundary, old = 0;
  /* Version 4 on keep their rollups: slowest alone is new. */
  if (from >= 4) {
    int rc = rollup_open(db, &r);
    if (rc == SQLITE_OK) {
      r->only_slowest = 1;
      rc = rollup_fill(r, INT64_MIN);
    }
    if (rc != SQLITE_OK)
      *err = sqlite3_mprintf("filling slowest: %s", sqlite3_errmsg(db));
    rollup_free(r);
    return rc;
  }
  int rc = single_int(db,
                      "SELECT count(*) FROM sqlite_master WHERE name = "
                      "'rollups_v3'",
                      0, 0, &old);
  if (rc == SQLITE_OK)
    rc = raw_boundary(db, &boundary);
  if (rc == SQLITE_OK)
    rc = rollup_open(db, &r);
  /* Without old rollups (version 1), the raw rows are all there is. */
  if (rc == SQLITE_OK)
    rc = rollup_fill(r, old && boundary != INT64_MAX ? boundary : INT64_MIN);
  if (rc == SQLITE_OK && old)
    rc = carry_over(db, boundary);
  if (rc == SQLITE_OK && old)
    rc = sqlite3_exec(db, "DROP TABLE rollups_v3", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    *err = sqlite3_mprintf("filling the rollups: %s", sqlite3_errmsg(db));
  rollup_free(r);
  return rc;
}

int rollup_rebuild(sqlite3 *db) {
  rollup *r = NULL;
  int rc = sqlite3_exec(db,
                        "BEGIN IMMEDIATE; DELETE FROM rollups; DELETE FROM "
                        "rollups_hour; DELETE FROM slowest",
                        NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return rc;
  rc = rollup_open(db, &r);
  if (rc == SQLITE_OK)
    rc = rollup_fill(r, INT64_MIN);
  rollup_free(r);
  int end = sqlite3_exec(db, rc == SQLITE_OK ? "COMMIT" : "ROLLBACK", NULL,
                         NULL, NULL);
  return rc != SQLITE_OK ? rc : end;
}
