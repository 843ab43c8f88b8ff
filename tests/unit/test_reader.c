/*
 * test_reader - the read side of the store (common/reader) and the status
 * table it reads by (common/schema): every way opening a store fails, with
 * its code and its one-line message; the version policy; the task row as
 * read and as copied; the status SQL fragments, by what they select and by
 * the index SQLite answers them with; change detection; the busy timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "filter.h"
#include "reader.h"
#include "test_query_fixture.h"

typedef struct paths {
  char dir[64];
  char path[128];
} paths;

static int setup(void **state) {
  paths *p = calloc(1, sizeof *p);
  snprintf(p->dir, sizeof p->dir, "/tmp/tw-reader-XXXXXX");
  if (mkdtemp(p->dir) == NULL)
    return -1;
  *state = p;
  return 0;
}

static int teardown(void **state) {
  paths *p = *state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
  int rc = system(cmd);
  free(p);
  return rc == 0 ? 0 : -1;
}

static const char *path_of(paths *p, const char *name) {
  snprintf(p->path, sizeof p->path, "%s/%s", p->dir, name);
  return p->path;
}

/* Opens path and expects code; the reason must be one line naming the
 * path and containing `says`. Returns the reason (static). */
static const char *expect_refusal(const char *path, int code,
                                  const char *says) {
  static char err[512];
  reader *r = (reader *)1;
  err[0] = '\0';
  int rc = reader_open(path, &r, err, sizeof err);
  if (rc != code)
    fail_msg("%s: code %d (%s), wanted %d: %s", path, rc, reader_strerror(rc),
             code, err);
  assert_null(r);
  assert_null(strchr(err, '\n'));
  assert_non_null(strstr(err, path));
  if (strstr(err, says) == NULL)
    fail_msg("%s: '%s' does not say '%s'", path, err, says);
  return err;
}

/* A store at path made by the collector's own schema_apply(), with the
 * fixture's rows; user_version then set to `version` unless it is 0. */
static void make_store(const char *path, int version) {
  sqlite3 *db = fixture_open(path);
  assert_non_null(db);
  if (version) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
    assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  }
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* ---- opening ------------------------------------------------------------ */

static void missing_file(void **state) {
  paths *p = *state;
  expect_refusal(path_of(p, "missing.db"), READER_EMISSING, "cannot open ");
  expect_refusal(p->path, READER_EMISSING, strerror(ENOENT));
  /* A path through a file is as missing as one through nothing. */
  write_file(path_of(p, "plain"), "x", 1);
  expect_refusal(path_of(p, "plain/tw.db"), READER_EMISSING, "cannot open ");
}

static void unreadable(void **state) {
  paths *p = *state;
  expect_refusal(p->dir, READER_EUNREADABLE, strerror(EISDIR));
  /* A FIFO would block SQLite's first read for ever. */
  assert_int_equal(mkfifo(path_of(p, "fifo"), 0600), 0);
  expect_refusal(p->path, READER_EUNREADABLE, "not a regular file");
  /* A store whose schema page is damaged: the header reads, the schema
   * does not, and SQLite's own reason is given. */
  make_store(path_of(p, "damaged.db"), 0);
  FILE *f = fopen(p->path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, 100, SEEK_SET), 0);
  for (int i = 0; i < 4000; i++)
    fputc(0xa5, f);
  assert_int_equal(fclose(f), 0);
  expect_refusal(p->path, READER_EUNREADABLE, "cannot read ");
  /* Root reads any file whatever its mode, so only another user can see
   * a permission refused. */
  if (geteuid() != 0) {
    make_store(path_of(p, "private.db"), 0);
    assert_int_equal(chmod(p->path, 0), 0);
    expect_refusal(p->path, READER_EUNREADABLE, strerror(EACCES));
  }
}

static void not_sqlite(void **state) {
  paths *p = *state;
  char garbage[4096];
  for (size_t i = 0; i < sizeof garbage; i++)
    garbage[i] = (char)((i * 7919) & 0xff);
  write_file(path_of(p, "garbage.db"), garbage, sizeof garbage);
  expect_refusal(p->path, READER_ENOT_SQLITE, "is not a database");
  write_file(path_of(p, "notes.txt"), "hello\n", 6);
  expect_refusal(p->path, READER_ENOT_SQLITE, "not an SQLite file");
}

static void foreign(void **state) {
  paths *p = *state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path_of(p, "other.db"), &db), SQLITE_OK);
  assert_int_equal(fix_exec(db, "CREATE TABLE x (y)"), SQLITE_OK);
  sqlite3_close(db);
  expect_refusal(p->path, READER_EFOREIGN, "is not a taskwatch store");
  /* An empty file is an empty SQLite database: not a store either. */
  write_file(path_of(p, "empty.db"), "", 0);
  expect_refusal(p->path, READER_EFOREIGN, "is not a taskwatch store");
  /* A version the store could have, but not the tables. */
  assert_int_equal(sqlite3_open(path_of(p, "tables.db"), &db), SQLITE_OK);
  assert_int_equal(
      fix_exec(db, "CREATE TABLE tasks (x); "
                   "PRAGMA user_version = " SCHEMA_SQL_TEXT(SCHEMA_VERSION)),
      SQLITE_OK);
  sqlite3_close(db);
  expect_refusal(p->path, READER_EFOREIGN, "is not a taskwatch store");
}

static void version_policy(void **state) {
  paths *p = *state;
  char says[128];
  make_store(path_of(p, "old.db"), SCHEMA_READ_MIN - 1);
  snprintf(says, sizeof says,
           "store schema version %d, older than this "
           "taskwatch reads (%d)",
           SCHEMA_READ_MIN - 1, SCHEMA_READ_MIN);
  expect_refusal(p->path, READER_ETOO_OLD, says);
  make_store(path_of(p, "new.db"), SCHEMA_VERSION + 1);
  snprintf(says, sizeof says,
           "store schema version %d, newer than this "
           "taskwatch understands (%d)",
           SCHEMA_VERSION + 1, SCHEMA_VERSION);
  expect_refusal(p->path, READER_ETOO_NEW, says);
  /* A store is known by its application_id, so one that carries ours is
   * newer when its version is, whatever its tables (a future layout). */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path_of(p, "bare.db"), &db), SQLITE_OK);
  assert_int_equal(
      fix_exec(db, "PRAGMA application_id = " SCHEMA_SQL_TEXT(
                       SCHEMA_APPLICATION_ID) "; PRAGMA user_version = 99"),
      SQLITE_OK);
  sqlite3_close(db);
  expect_refusal(p->path, READER_ETOO_NEW, "newer");
  /* Without it, a version and nothing else is some other application's. */
  assert_int_equal(sqlite3_open(path_of(p, "other99.db"), &db), SQLITE_OK);
  assert_int_equal(fix_exec(db, "PRAGMA user_version = 99"), SQLITE_OK);
  sqlite3_close(db);
  expect_refusal(p->path, READER_EFOREIGN, "is not a taskwatch store");
  /* Every version from SCHEMA_READ_MIN to SCHEMA_VERSION opens. */
  for (int v = SCHEMA_READ_MIN; v <= SCHEMA_VERSION; v++) {
    char name[32], err[256] = "";
    snprintf(name, sizeof name, "v%d.db", v);
    make_store(path_of(p, name), v);
    reader *r = NULL;
    assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
    assert_non_null(r);
    assert_non_null(reader_db(r));
    assert_int_equal(reader_check_store(reader_db(r), p->path, err, sizeof err),
                     READER_OK);
    reader_close(r);
  }
  reader_close(NULL);
}

/* Freshness is the collector's receive time where the store has it; an
 * agents row written before, and a store of a version without the
 * column, fall back to the agent's newest event time. */
static void agent_seen_is_the_receive_time(void **state) {
  paths *p = *state;
  for (int old = 0; old <= 1; old++) {
    sqlite3 *db = fixture_open(path_of(p, old ? "v4.db" : "v5.db"));
    assert_non_null(db);
    assert_int_equal(
        fix_exec(db, "DELETE FROM agents; INSERT INTO agents (id, instance, "
                     "service, host, pid, started_at, last_event_at) VALUES "
                     "(1, x'01', 's', 'h', 1, 0, 100), (2, x'02', 's', 'h', "
                     "2, 0, 200)"),
        SQLITE_OK);
    if (old)
      assert_int_equal(fix_exec(db, "ALTER TABLE agents DROP COLUMN "
                                    "last_received_at; PRAGMA user_version "
                                    "= 4"),
                       SQLITE_OK);
    else
      assert_int_equal(fix_exec(db, "UPDATE agents SET last_received_at = "
                                    "5000 WHERE id = 1"),
                       SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    reader *r = NULL;
    char err[256] = "", sql[256];
    assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
    snprintf(sql, sizeof sql,
             "SELECT group_concat(%s) FROM (SELECT * FROM "
             "agents ORDER BY id)",
             reader_agent_seen_sql(r));
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reader_db(r), sql, -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0),
                        old ? "100,200" : "5000,200");
    sqlite3_finalize(st);
    reader_close(r);
  }
}

/* The batches and tasks an agent refused whole, where the store has them
 * (version 6); 0 on a store of version 5, whose agents rows lack them. */
static void agent_dropped_whole(void **state) {
  paths *p = *state;
  for (int old = 0; old <= 1; old++) {
    sqlite3 *db = fixture_open(path_of(p, old ? "v5d.db" : "v6d.db"));
    assert_non_null(db);
    assert_int_equal(
        fix_exec(db, "DELETE FROM agents; INSERT INTO agents (id, instance, "
                     "service, host, pid, started_at) VALUES (1, x'01', 's', "
                     "'h', 1, 0), (2, x'02', 's', 'h', 2, 0)"),
        SQLITE_OK);
    if (old)
      assert_int_equal(
          fix_exec(db, "ALTER TABLE agents DROP COLUMN dropped_batches; "
                       "ALTER TABLE agents DROP COLUMN dropped_tasks; "
                       "PRAGMA user_version = 5"),
          SQLITE_OK);
    else
      assert_int_equal(fix_exec(db, "UPDATE agents SET dropped_batches = 3, "
                                    "dropped_tasks = 11 WHERE id = 2"),
                       SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    reader *r = NULL;
    char err[256] = "", sql[256];
    assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
    snprintf(sql, sizeof sql,
             "SELECT group_concat(%s || '/' || %s) FROM (SELECT * FROM "
             "agents ORDER BY id)",
             reader_agent_dropped_batches_sql(r),
             reader_agent_dropped_tasks_sql(r));
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reader_db(r), sql, -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0),
                        old ? "0/0,0/0" : "0/0,3/11");
    sqlite3_finalize(st);
    reader_close(r);
  }
}

/* Each failure has its own code, text and message. */
static void codes_and_texts(void **state) {
  (void)state;
  const char *seen[READER_ERRNO_COUNT];
  for (int i = 0; i < READER_ERRNO_COUNT; i++) {
    seen[i] = reader_strerror(-1 - i);
    assert_string_not_equal(seen[i], "unknown error");
    for (int j = 0; j < i; j++)
      assert_string_not_equal(seen[i], seen[j]);
  }
  assert_string_equal(reader_strerror(READER_OK), "unknown error");
  assert_string_equal(reader_strerror(-1 - READER_ERRNO_COUNT),
                      "unknown error");
  assert_int_equal(READER_EMISSING, -1);
}

/* ---- the task row ------------------------------------------------------- */

static sqlite3_stmt *task_by_id(sqlite3 *db, int64_t id) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(
          db, "SELECT " READER_TASK_COLUMNS READER_TASK_FROM " WHERE t.id = ?1",
          -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_column_count(st), READER_TASK_NCOLUMNS);
  sqlite3_bind_int64(st, 1, id);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  return st;
}

static void assert_text(reader_text t, const char *want, size_t len) {
  assert_non_null(t.ptr);
  assert_int_equal(t.len, len);
  assert_memory_equal(t.ptr, want, len);
  assert_int_equal(t.ptr[len], '\0');
}

static void task_row(void **state) {
  (void)state;
  sqlite3 *db = fixture_open(":memory:");
  assert_non_null(db);
  /* Task 2: failed, with every field of a failure. */
  sqlite3_stmt *st = task_by_id(db, FIX_ID(2));
  reader_task t;
  reader_task_read(st, 0, &t);
  assert_true(t.id == FIX_ID(2));
  assert_true(t.batch == FIX_BATCH(1));
  assert_true(t.agent == 1 && t.pid == 100 && t.thread == 77);
  assert_int_equal(t.position, 1);
  assert_int_equal(t.status, SCHEMA_FAILED);
  assert_int_equal(t.mode, 1);
  assert_true(t.enqueued_at == FIX_T0 + 1000);
  assert_true(t.started_at == FIX_T0 + 3000 && t.wait_us == 2000);
  assert_true(t.finished_at == FIX_T0 + 253000 && t.run_us == 250000);
  assert_true(t.skipped_after == READER_NULL);
  assert_text(t.name, "send_email", 10);
  assert_text(t.label, "POST /send-notification/{email}", 31);
  assert_text(t.service, "api", 3);
  assert_text(t.host, "web-1", 5);
  assert_text(t.error_type, "SMTPError", 9);
  assert_text(t.error_message, "Connection timeout", 18);
  assert_non_null(strstr(t.error_detail.ptr, "Traceback"));
  assert_null(t.drop_reason.ptr);
  assert_null(t.owned);
  /* The copy keeps everything after the statement is gone. */
  reader_task copy;
  reader_task_copy(&copy, &t);
  sqlite3_finalize(st);
  assert_true(copy.run_us == 250000 && copy.status == SCHEMA_FAILED);
  assert_text(copy.name, "send_email", 10);
  assert_text(copy.error_message, "Connection timeout", 18);
  assert_null(copy.drop_reason.ptr);
  reader_task_fini(&copy);
  assert_null(copy.name.ptr);
  assert_null(copy.owned);
  /* Task 3: skipped, never started; its batch has a label, task 7's not. */
  st = task_by_id(db, FIX_ID(3));
  reader_task_read(st, 0, &t);
  assert_int_equal(t.status, SCHEMA_SKIPPED);
  assert_true(t.started_at == READER_NULL && t.wait_us == READER_NULL &&
              t.run_us == READER_NULL);
  assert_true(t.skipped_after == FIX_ID(2));
  assert_null(t.error_type.ptr);
  sqlite3_finalize(st);
  st = task_by_id(db, FIX_ID(7));
  reader_task_read(st, 0, &t);
  assert_null(t.label.ptr);
  assert_text(t.drop_reason, "shutdown", 8);
  sqlite3_finalize(st);
  /* Text may hold NUL bytes: the whole of it is read and copied. */
  assert_int_equal(fix_exec(db, "UPDATE tasks SET name = CAST(X'610062' AS "
                                "TEXT) WHERE id = 1099511627777"),
                   SQLITE_OK);
  st = task_by_id(db, FIX_ID(1));
  reader_task_read(st, 0, &t);
  assert_text(t.name, "a\0b", 3);
  reader_task_copy(&copy, &t);
  sqlite3_finalize(st);
  assert_text(copy.name, "a\0b", 3);
  reader_task_fini(&copy);
  /* The join keeps a task whose agent row is gone, its agent's columns
   * NULL, rather than losing it. */
  assert_int_equal(fix_exec(db, "DELETE FROM agents WHERE id = 2"), SQLITE_OK);
  st = task_by_id(db, FIX_ID(9));
  reader_task_read(st, 0, &t);
  assert_null(t.service.ptr);
  assert_true(t.pid == READER_NULL);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* ---- the status table and its SQL -------------------------------------- */

static void status_names_and_codes(void **state) {
  (void)state;
  static const char *const names[] = {
      "queued", "running", "succeeded", "failed", "skipped", "dropped", "lost"};
  assert_int_equal(SCHEMA_STATUS_COUNT, 7);
  for (int i = 0; i < SCHEMA_STATUS_COUNT; i++) {
    assert_string_equal(schema_status_name(i), names[i]);
    assert_int_equal(schema_status_code(names[i]), i);
  }
  assert_null(schema_status_name(-1));
  assert_null(schema_status_name(SCHEMA_STATUS_COUNT));
  assert_int_equal(schema_status_code("finished"), -1);
  /* Stores hold these numbers: they never change. */
  assert_int_equal(SCHEMA_QUEUED, 0);
  assert_int_equal(SCHEMA_SUCCEEDED, 2);
  assert_int_equal(SCHEMA_LOST, 6);
  assert_string_equal(SCHEMA_SQL_CODE(FAILED), "3");
}

/* The states a fragment selects, as a bit set. */
static unsigned selected(sqlite3 *db, const char *fragment) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT status FROM states WHERE %s", fragment);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  unsigned set = 0;
  while (sqlite3_step(st) == SQLITE_ROW)
    set |= 1u << sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return set;
}

#define BIT(state) (1u << SCHEMA_##state)

static void status_fragments_select(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(fix_exec(db, "CREATE TABLE states (status INTEGER)"),
                   SQLITE_OK);
  for (int i = 0; i < SCHEMA_STATUS_COUNT + 2; i++) {
    char sql[64];
    snprintf(sql, sizeof sql, "INSERT INTO states VALUES (%d)", i);
    assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  }
  unsigned all = (1u << SCHEMA_STATUS_COUNT) - 1;
  unsigned unhappy = BIT(FAILED) | BIT(SKIPPED) | BIT(DROPPED) | BIT(LOST);
  unsigned beyond = (1u << (SCHEMA_STATUS_COUNT + 2)) - 1 - all;
  assert_int_equal(selected(db, SCHEMA_SQL_UNUSUAL),
                   (all | beyond) & ~BIT(SUCCEEDED));
  assert_int_equal(selected(db, SCHEMA_SQL_ACTIVE), BIT(QUEUED) | BIT(RUNNING));
  assert_int_equal(selected(db, SCHEMA_SQL_FAILED), BIT(FAILED));
  assert_int_equal(selected(db, SCHEMA_SQL_FAILED_OR_SKIPPED),
                   BIT(FAILED) | BIT(SKIPPED));
  assert_int_equal(selected(db, SCHEMA_SQL_UNUSUAL_EACH),
                   all & ~BIT(SUCCEEDED));
  assert_int_equal(selected(db, SCHEMA_SQL_NOT_UNHAPPY), all & ~unhappy);
  assert_int_equal(selected(db, SCHEMA_SQL_SUCCEEDED_NO_INDEX), BIT(SUCCEEDED));
  sqlite3_close(db);
}

/* How SQLite answers sql on a store: its query plan, one string. */
static void plan_of(sqlite3 *db, const char *sql, char *out, size_t size) {
  char explain[1024];
  snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
  out[0] = '\0';
  while (sqlite3_step(st) == SQLITE_ROW) {
    size_t n = strlen(out);
    snprintf(out + n, size - n, "%s; ", sqlite3_column_text(st, 3));
  }
  sqlite3_finalize(st);
}

/* The fragments state the partial index's own term, so SQLite answers
 * them from tasks_unusual: alone, through the reader's join, and as the
 * filter language writes a status term. */
static void status_fragments_use_the_index(void **state) {
  (void)state;
  sqlite3 *db = fixture_open(":memory:");
  assert_non_null(db);
  static const char *const fragments[] = {
      SCHEMA_SQL_UNUSUAL, SCHEMA_SQL_ACTIVE, SCHEMA_SQL_FAILED,
      SCHEMA_SQL_FAILED_OR_SKIPPED, SCHEMA_SQL_UNUSUAL_EACH};
  char sql[1024], plan[1024];
  for (size_t i = 0; i < sizeof fragments / sizeof *fragments; i++) {
    snprintf(sql, sizeof sql,
             "SELECT status, count(*) FROM tasks WHERE %s AND enqueued_at >= 5"
             " GROUP BY status",
             fragments[i]);
    plan_of(db, sql, plan, sizeof plan);
    if (strstr(plan, "tasks_unusual") == NULL)
      fail_msg("%s: %s", fragments[i], plan);
    /* SCHEMA_SQL_UNUSUAL alone selects most tasks: there SQLite rightly
     * walks tasks_time instead when the rows are wanted in time order. */
    if (i == 0)
      continue;
    snprintf(sql, sizeof sql,
             "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
             " WHERE %s AND t.enqueued_at >= 5 ORDER BY t.enqueued_at",
             fragments[i]);
    plan_of(db, sql, plan, sizeof plan);
    if (strstr(plan, "tasks_unusual") == NULL)
      fail_msg("joined %s: %s", fragments[i], plan);
  }
  filter *f = filter_new(FIX_NOW);
  char err[128];
  assert_int_equal(filter_add_text(f, "status:failed,lost", err, sizeof err),
                   0);
  snprintf(sql, sizeof sql,
           "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
           " WHERE %s ORDER BY t.enqueued_at DESC, t.id DESC LIMIT 50",
           filter_sql(f));
  plan_of(db, sql, plan, sizeof plan);
  if (strstr(plan, "tasks_unusual") == NULL)
    fail_msg("%s: %s", filter_sql(f), plan);
  filter_free(f);
  sqlite3_close(db);
}

/* ---- change detection and waiting -------------------------------------- */

static void changes(void **state) {
  paths *p = *state;
  make_store(path_of(p, "live.db"), 0);
  sqlite3 *writer = NULL;
  assert_int_equal(sqlite3_open(p->path, &writer), SQLITE_OK);
  assert_int_equal(fix_exec(writer, "PRAGMA journal_mode = WAL"), SQLITE_OK);
  reader *r = NULL;
  char err[256];
  assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
  assert_int_equal(reader_changed(r), 1); /* the first look */
  assert_int_equal(reader_changed(r), 0);
  /* A transaction still open is no change; its commit is one. */
  assert_int_equal(fix_exec(writer, "BEGIN; UPDATE tasks SET status = "
                                    "status"),
                   SQLITE_OK);
  assert_int_equal(reader_changed(r), 0);
  assert_int_equal(fix_exec(writer, "COMMIT"), SQLITE_OK);
  assert_int_equal(reader_changed(r), 1);
  assert_int_equal(reader_changed(r), 0);
  /* The reader's own reads change nothing. */
  sqlite3_stmt *st = task_by_id(reader_db(r), FIX_ID(1));
  sqlite3_finalize(st);
  assert_int_equal(reader_changed(r), 0);
  assert_int_equal(fix_exec(writer, "INSERT INTO meta VALUES ('k', 1)"),
                   SQLITE_OK);
  assert_int_equal(reader_changed(r), 1);
  reader_close(r);
  sqlite3_close(writer);
}

typedef struct locker {
  const char *path;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int holding;
} locker;

/* Holds an exclusive lock on a rollback-journal store for a moment (as
 * SQLite does during WAL recovery), then lets go. */
static void *hold_exclusive(void *arg) {
  locker *l = arg;
  sqlite3 *db = NULL;
  sqlite3_open(l->path, &db);
  fix_exec(db, "BEGIN EXCLUSIVE");
  pthread_mutex_lock(&l->lock);
  l->holding = 1;
  pthread_cond_signal(&l->cond);
  pthread_mutex_unlock(&l->lock);
  usleep(300 * 1000);
  fix_exec(db, "COMMIT");
  sqlite3_close(db);
  return NULL;
}

/* A reader waits out a lock (READER_BUSY_TIMEOUT_MS) instead of failing. */
static void waits_for_a_lock(void **state) {
  paths *p = *state;
  make_store(path_of(p, "locked.db"), 0);
  reader *r = NULL;
  char err[256];
  assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
  locker l = {p->path, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, hold_exclusive, &l), 0);
  pthread_mutex_lock(&l.lock);
  while (!l.holding)
    pthread_cond_wait(&l.cond, &l.lock);
  pthread_mutex_unlock(&l.lock);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(reader_db(r),
                                      "SELECT count(*) FROM tasks", -1, &st,
                                      NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 9);
  sqlite3_finalize(st);
  pthread_join(thread, NULL);
  reader_close(r);
}

/* What reader_page_cache_init() returned in main(), before any other use
 * of SQLite in this process. */
static int page_cache_init_rc = -2;

/* The read-only tools' page cache: given to SQLite before its first use
 * (once: a second call changes nothing, and says whether its slots fit
 * the store), for stores of 16 KiB pages or more, and every reader opened
 * since caches 8 MiB of pages in it (not malloc's). */
static void page_cache_of_readers(void **state) {
  paths *p = *state;
  assert_int_equal(page_cache_init_rc, 0);
  /* A file of 4 KiB pages, as stores made before 64 KiB pages were, and
   * a missing file, keep SQLite's cache. */
  FILE *fp = fopen(path_of(p, "small-pages.db"), "wb");
  assert_non_null(fp);
  unsigned char header[100] = "SQLite format 3";
  header[16] = 0x10; /* 4096, big endian */
  header[17] = 0x00;
  assert_int_equal(fwrite(header, 1, sizeof header, fp), sizeof header);
  fclose(fp);
  assert_int_equal(reader_page_cache_init(p->path), -1);
  assert_int_equal(reader_page_cache_init(path_of(p, "missing.db")), -1);
  /* A FIFO is not opened for its header (that open would block). */
  assert_int_equal(mkfifo(path_of(p, "fifo"), 0600), 0);
  assert_int_equal(reader_page_cache_init(p->path), -1);
  unlink(p->path);
  /* A store of 64 KiB pages, made before 16 KiB pages were the size: the
   * region's slots, of SCHEMA_PAGE_SIZE, are not its. */
  fp = fopen(path_of(p, "large-pages.db"), "wb");
  assert_non_null(fp);
  header[16] = 0x00; /* 1: 65536 */
  header[17] = 0x01;
  assert_int_equal(fwrite(header, 1, sizeof header, fp), sizeof header);
  fclose(fp);
  assert_int_equal(reader_page_cache_init(p->path),
                   atoi(SCHEMA_PAGE_SIZE) == 65536 ? 0 : -1);
  make_store(path_of(p, "cache.db"), 0);
  assert_int_equal(reader_page_cache_init(p->path), 0);
  reader *r = NULL;
  char err[256];
  assert_int_equal(reader_open(p->path, &r, err, sizeof err), READER_OK);
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(reader_db(r), "PRAGMA cache_size", -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0),
                   (8 << 20) / atoi(SCHEMA_PAGE_SIZE));
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(reader_db(r),
                                      "SELECT count(*) FROM tasks", -1, &st,
                                      NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 9);
  /* The pages read sit in the region while the statement holds them. */
  int used = 0, highest = 0;
  assert_int_equal(
      sqlite3_status(SQLITE_STATUS_PAGECACHE_USED, &used, &highest, 0),
      SQLITE_OK);
  assert_true(highest > 0);
  sqlite3_finalize(st);
  reader_close(r);
}

int main(void) {
  page_cache_init_rc = reader_page_cache_init(NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(page_cache_of_readers, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(unreadable, setup, teardown),
      cmocka_unit_test_setup_teardown(not_sqlite, setup, teardown),
      cmocka_unit_test_setup_teardown(foreign, setup, teardown),
      cmocka_unit_test_setup_teardown(version_policy, setup, teardown),
      cmocka_unit_test_setup_teardown(agent_seen_is_the_receive_time, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(agent_dropped_whole, setup, teardown),
      cmocka_unit_test(codes_and_texts),
      cmocka_unit_test(task_row),
      cmocka_unit_test(status_names_and_codes),
      cmocka_unit_test(status_fragments_select),
      cmocka_unit_test(status_fragments_use_the_index),
      cmocka_unit_test_setup_teardown(changes, setup, teardown),
      cmocka_unit_test_setup_teardown(waits_for_a_lock, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
