/*
 * test_query_fixture - a small store at fixed times, shared by the filter
 * and query tests: two agents, four batches, nine tasks covering every
 * state, a failure with its skipped follower, unicode and hostile names.
 *
 * Task local ids 1..9 (store id = agent << 40 | local; all tasks here use
 * agent 1's high bits for the id so ids are easy to name, while the agent
 * column says who ran them):
 *   1 b1 0 write_notification loop       succeeded  T0       wait 1ms   run
 * 10ms 2 b1 1 send_email         threadpool failed     T0+1ms   wait 2ms   run
 * 250ms 3 b1 2 write_log          threadpool skipped    T0+2ms   (after 2) 4 b2
 * 0 fetch              loop       succeeded  T0+60s   wait 300ms run 2s 5 b2 1
 * send_sms           loop       running    T0+61s   wait 5ms 6 b3 0 naïve_task
 * threadpool queued     T0+1h 7 b3 1 a*b                loop       dropped
 * T0+1h1s  "shutdown" 8 b3 2 evil'; DROP...     loop       lost       T0+2h
 * "agent vanished" 9 b4 0 send_email         threadpool failed     T0+120s wait
 * 10ms  run 1.5s Agents: 1 = api on web-1 pid 100 (b1, b2); 2 = worker on web-2
 * pid 200 (b3, b4). Labels: b1 and b4 "POST /send-notification/{email}", b2
 * "GET /items", b3 none.
 */
#ifndef TEST_QUERY_FIXTURE_H
#define TEST_QUERY_FIXTURE_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>

#include "rollup.h"
#include "schema.h"

/* 2026-11-22T10:00:00Z */
#define FIX_T0 INT64_C(1795341600000000)
#define FIX_NOW (FIX_T0 + INT64_C(7200000000))
#define FIX_ID(local) ((INT64_C(1) << 40) | (local))
#define FIX_BATCH(n) ((INT64_C(1) << 40) | (INT64_C(1000) + (n)))

typedef struct fix_task {
  int local, batch, position;
  const char *name;
  int mode, status;
  int64_t enqueued_off, wait, run;
  const char *error_type, *error_message, *drop_reason;
  int skipped_after;
} fix_task;

static const fix_task fix_tasks[] = {
    {1, 1, 0, "write_notification", 0, 2, 0, 1000, 10000, NULL, NULL, NULL, 0},
    {2, 1, 1, "send_email", 1, 3, 1000, 2000, 250000, "SMTPError",
     "Connection timeout", NULL, 0},
    {3, 1, 2, "write_log", 1, 4, 2000, -1, -1, NULL, NULL, NULL, 2},
    {4, 2, 0, "fetch", 0, 2, 60000000, 300000, 2000000, NULL, NULL, NULL, 0},
    {5, 2, 1, "send_sms", 0, 1, 61000000, 5000, -1, NULL, NULL, NULL, 0},
    {6, 3, 0, "na\xc3\xafve_task", 1, 0, 3600000000, -1, -1, NULL, NULL, NULL,
     0},
    {7, 3, 1, "a*b", 0, 5, 3601000000, -1, -1, NULL, NULL, "shutdown", 0},
    {8, 3, 2, "evil'; DROP TABLE tasks; --", 0, 6, 7200000000, -1, -1, NULL,
     NULL, "agent vanished", 0},
    {9, 4, 0, "send_email", 1, 3, 120000000, 10000, 1500000, "TimeoutError",
     "read timed out", NULL, 0},
};

static int fix_exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void fix_bind_opt_int(sqlite3_stmt *st, int i, int64_t v) {
  if (v < 0)
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_int64(st, i, v);
}

static void fix_bind_opt_text(sqlite3_stmt *st, int i, const char *s) {
  if (s == NULL)
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static int fix_batch_agent(int batch) {
  return batch <= 2 ? 1 : 2;
}

/* Inserts the fixture into a database that schema_apply() prepared. */
static int fixture_fill(sqlite3 *db) {
  char sql[512];
  int rc = fix_exec(db, "BEGIN");
  snprintf(sql, sizeof(sql),
           "INSERT INTO agents (id, instance, service, host, pid, started_at,"
           " connected, events, last_event_at) VALUES"
           " (1, x'01', 'api', 'web-1', 100, %lld, 1, 10, %lld),"
           " (2, x'02', 'worker', 'web-2', 200, %lld, 1, 10, %lld)",
           (long long)FIX_T0, (long long)FIX_NOW, (long long)FIX_T0,
           (long long)FIX_NOW);
  rc |= fix_exec(db, sql);
  for (int b = 1; b <= 4; b++) {
    const char *label = b == 2   ? "'GET /items'"
                        : b == 3 ? "NULL"
                                 : "'POST /send-notification/{email}'";
    snprintf(sql, sizeof(sql),
             "INSERT INTO batches (id, agent, label, created_at) VALUES"
             " (%lld, %d, %s, %lld)",
             (long long)FIX_BATCH(b), fix_batch_agent(b), label,
             (long long)FIX_T0);
    rc |= fix_exec(db, sql);
  }
  sqlite3_stmt *st = NULL;
  rc |= sqlite3_prepare_v2(
      db,
      "INSERT INTO tasks (id, agent, batch, position, name, mode, status,"
      " thread, enqueued_at, started_at, finished_at, wait_us, run_us,"
      " error_type, error_message, error_detail, skipped_after, drop_reason)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 77, ?8, ?9, ?10, ?11, ?12, ?13,"
      " ?14, ?15, ?16, ?17)",
      -1, &st, NULL);
  for (size_t i = 0;
       rc == SQLITE_OK && i < sizeof(fix_tasks) / sizeof(*fix_tasks); i++) {
    const fix_task *t = &fix_tasks[i];
    int64_t enq = FIX_T0 + t->enqueued_off;
    int64_t start = t->wait >= 0 ? enq + t->wait : -1;
    int64_t fin = t->run >= 0 ? start + t->run : t->status >= 4 ? enq + 5 : -1;
    sqlite3_bind_int64(st, 1, FIX_ID(t->local));
    sqlite3_bind_int(st, 2, fix_batch_agent(t->batch));
    sqlite3_bind_int64(st, 3, FIX_BATCH(t->batch));
    sqlite3_bind_int(st, 4, t->position);
    sqlite3_bind_text(st, 5, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, t->mode);
    sqlite3_bind_int(st, 7, t->status);
    sqlite3_bind_int64(st, 8, enq);
    fix_bind_opt_int(st, 9, start);
    fix_bind_opt_int(st, 10, fin);
    fix_bind_opt_int(st, 11, t->wait);
    fix_bind_opt_int(st, 12, t->run);
    fix_bind_opt_text(st, 13, t->error_type);
    fix_bind_opt_text(st, 14, t->error_message);
    fix_bind_opt_text(st, 15,
                      t->error_type ? "Traceback (most recent call last):\n"
                                      "  File \"app.py\", line 3\n"
                                    : NULL);
    fix_bind_opt_int(st, 16, t->skipped_after ? FIX_ID(t->skipped_after) : -1);
    fix_bind_opt_text(st, 17, t->drop_reason);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = SQLITE_ERROR;
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  rc |= fix_exec(db, "COMMIT");
  return rc;
}

/* Rebuilds the rollups from the raw rows, as the collector would have
 * written them: call after inserting tasks. */
static int fixture_rollups(sqlite3 *db) {
  return rollup_rebuild(db);
}

/* A fresh fixture database at path (":memory:" works), or NULL. */
static sqlite3 *fixture_open(const char *path) {
  sqlite3 *db = NULL;
  char *err = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK ||
      schema_apply(db, &err) != SQLITE_OK || fixture_fill(db) != SQLITE_OK ||
      fixture_rollups(db) != SQLITE_OK) {
    sqlite3_free(err);
    sqlite3_close(db);
    return NULL;
  }
  return db;
}

#endif /* TEST_QUERY_FIXTURE_H */
