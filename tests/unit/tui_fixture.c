/*
 * tui_fixture - see tui_fixture.h.
 */
#include "tui_fixture.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "rollup.h"
#include "schema.h"

#define S(sec) ((int64_t)(sec)*INT64_C(1000000))

static int exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "fixture: %s\n", err);
    sqlite3_free(err);
    return -1;
  }
  return 0;
}

typedef struct task_spec {
  int status;
  const char *name; /* NULL: the default name for the position */
  const char *error_type, *error_message, *error_detail;
  size_t message_len; /* 0: strlen */
} task_spec;

static const char *const default_names[3] = {"write_notification", "send_email",
                                             "write_log"};

static int insert_task(sqlite3_stmt *st, int64_t agent, int64_t batch,
                       int64_t id, int pos, int64_t at, const task_spec *t,
                       int64_t failed_id) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  sqlite3_bind_int64(st, 1, schema_global_id(agent, (uint64_t)id));
  sqlite3_bind_int64(st, 2, agent);
  sqlite3_bind_int64(st, 3, schema_global_id(agent, (uint64_t)batch));
  sqlite3_bind_int(st, 4, pos);
  const char *name = t->name ? t->name : default_names[pos % 3];
  sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 6, pos == 1);
  sqlite3_bind_int(st, 7, t->status);
  sqlite3_bind_int64(st, 8, 140000 + pos);
  int64_t enq = at + pos * 10, wait = 200 + pos * 150 + (id % 7) * 40;
  int64_t run = 1000 + (id % 5) * 2500 + pos * 700;
  sqlite3_bind_int64(st, 9, enq);
  if (t->status != SCHEMA_QUEUED && t->status != SCHEMA_SKIPPED &&
      t->status != SCHEMA_DROPPED) {
    sqlite3_bind_int64(st, 10, enq + wait);
    sqlite3_bind_int64(st, 12, wait);
  }
  if (t->status == SCHEMA_SUCCEEDED || t->status == SCHEMA_FAILED) {
    sqlite3_bind_int64(st, 11, enq + wait + run);
    sqlite3_bind_int64(st, 13, run);
  }
  if (t->status == SCHEMA_SKIPPED) {
    sqlite3_bind_int64(st, 11, enq + 5000);
    sqlite3_bind_int64(st, 17, schema_global_id(agent, (uint64_t)failed_id));
  }
  if (t->error_type)
    sqlite3_bind_text(st, 14, t->error_type, -1, SQLITE_STATIC);
  if (t->error_message)
    sqlite3_bind_text(st, 15, t->error_message,
                      t->message_len ? (int)t->message_len : -1, SQLITE_STATIC);
  if (t->error_detail)
    sqlite3_bind_text(st, 16, t->error_detail, -1, SQLITE_STATIC);
  return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static const char traceback[] =
    "Traceback (most recent call last):\n"
    "  File \"app.py\", line 12, in send_email\n"
    "    smtp.send(msg)\n"
    "SMTPError: timeout after 30s\x1b]52;c;ZXZpbA==\x07\n"
    "  (relay \xe5\x8f\x91\xe9\x80\x81 mx.example.com)";

static const char hostile_message[] = "bad\x9b"
                                      "31m \xc2\x9b"
                                      "1m\rOK\b!";

static int insert_batches(sqlite3 *db, int64_t now) {
  sqlite3_stmt *bt = NULL, *tt = NULL;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO batches (id, agent, label, created_at) "
                         "VALUES (?1, ?2, ?3, ?4)",
                         -1, &bt, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(
          db,
          "INSERT INTO tasks (id, agent, batch, position, name, mode, status, "
          "thread, enqueued_at, started_at, finished_at, wait_us, run_us, "
          "error_type, error_message, error_detail, skipped_after) VALUES "
          "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
          "?16, ?17)",
          -1, &tt, NULL) != SQLITE_OK)
    return -1;
  static const char *const labels[] = {
      "POST /send-notification/{email}",
      "POST /send-notification/{email}",
      "POST /\xe9\x80\x9a\xe7\x9f\xa5/{email}", /* 通知: CJK */
      "POST /send-notification/{email}",
      "POST /x\xe2\x80\xae\x66\x64\x70.exe", /* RLO bidi override, "fdp" */
      "POST /send-notification/{email}",
      "POST /send-notification/{email}"};
  int rc = 0;
  int64_t id = 1;
  for (int b = 0; b < 7 && rc == 0; b++) {
    int64_t agent = b % 3 == 2 ? 2 : 1, at = now - S(600) + S(b * 90);
    task_spec t[3] = {{SCHEMA_SUCCEEDED, 0, 0, 0, 0, 0},
                      {SCHEMA_SUCCEEDED, 0, 0, 0, 0, 0},
                      {SCHEMA_SUCCEEDED, 0, 0, 0, 0, 0}};
    if (b == 3) {
      t[1] = (task_spec){SCHEMA_FAILED,   0,         "SMTPError",
                         hostile_message, traceback, 0};
      t[2].status = SCHEMA_SKIPPED;
    } else if (b == 4) {
      t[0].name = "evil\x1b[2J\x1b[Hname";
    } else if (b == 5) {
      t[2].status = SCHEMA_RUNNING;
    } else if (b == 6) {
      t[1].status = SCHEMA_RUNNING;
      t[2].status = SCHEMA_QUEUED;
    }
    sqlite3_reset(bt);
    sqlite3_bind_int64(bt, 1, schema_global_id(agent, (uint64_t)b + 1));
    sqlite3_bind_int64(bt, 2, agent);
    sqlite3_bind_text(bt, 3, labels[b], -1, SQLITE_STATIC);
    sqlite3_bind_int64(bt, 4, at);
    if (sqlite3_step(bt) != SQLITE_DONE)
      rc = -1;
    int64_t failed = id + 1;
    for (int p = 0; p < 3 && rc == 0; p++, id++)
      rc = insert_task(tt, agent, b + 1, id, p, at, &t[p], failed);
  }
  sqlite3_finalize(bt);
  sqlite3_finalize(tt);
  return rc;
}

int fixture_build(const char *path, int64_t last_event_ago_us) {
  sqlite3 *db = NULL;
  char *err = NULL;
  int rc = -1;
  remove(path);
  if (sqlite3_open(path, &db) != SQLITE_OK)
    goto out;
  if (schema_apply(db, &err) != SQLITE_OK)
    goto out;
  char sql[1024];
  int64_t last = FIXTURE_NOW - last_event_ago_us;
  snprintf(
      sql, sizeof sql,
      "INSERT INTO agents (id, instance, service, host, pid, started_at, "
      "connected_at, disconnected_at, connected, ended, events, dropped, "
      "reconnects, last_event_at, dropped_tasks, dropped_batches) VALUES "
      "(1, x'01', 'api', 'web-1', 4242, %lld, %lld, NULL, 1, 0, 60, 0, "
      "0, %lld, 0, 0), "
      "(2, x'02', 'worker\x1b[1m', 'web-2', 777, %lld, %lld, %lld, 0, 0, "
      "24, 12, 3, %lld, 5, 2)",
      (long long)(FIXTURE_NOW - S(3600)), (long long)(FIXTURE_NOW - S(900)),
      (long long)last, (long long)(FIXTURE_NOW - S(3000)),
      (long long)(FIXTURE_NOW - S(2000)), (long long)(FIXTURE_NOW - S(120)),
      (long long)(FIXTURE_NOW - S(120)));
  if (exec(db, "BEGIN") || exec(db, sql) || insert_batches(db, FIXTURE_NOW) ||
      exec(db, "COMMIT") || rollup_rebuild(db) != SQLITE_OK)
    goto out;
  rc = 0;
out:
  if (err) {
    fprintf(stderr, "fixture: %s\n", err);
    sqlite3_free(err);
  }
  sqlite3_close(db);
  return rc;
}
