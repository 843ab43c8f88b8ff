/*
 * test_store - the collector's writer side: rows of a batch land as
 * written (the one-statement bulk insert and the one-row fallback alike),
 * a repeated id skips one row without failing the transaction, the
 * checkpointer copies the WAL while the store is open,
 * retention prunes in steps (by age, with failures kept longer, and by
 * count) together with emptied batches, rollups keep counts and
 * percentiles, and reopening marks agents left connected as disconnected.
 * The store is one process's at a time (a second opener is told the
 * holder's pid and addresses, and gets it after a kill -9), databases of
 * other applications are refused untouched, stores of earlier versions are
 * recognised by their tables, and an aborted store writes nothing more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <signal.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "batch.h"
#include "guard.h"
#include "held.h"
#include "hist.h"
#include "rollup.h"
#include "schema.h"
#include "store.h"

typedef struct fixture {
  char dir[64];
  char path[96];
  store *store;
  sqlite3 *db;
  istr *name;
} fixture;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void open_store(fixture *f, int64_t retain_us, int64_t fail_us,
                       int64_t max_tasks) {
  store_config cfg = {f->path, 0, retain_us, fail_us, max_tasks, 0, 0, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), 0);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/tw-store-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
  assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
  f->name = malloc(sizeof(istr) + 5);
  f->name->len = 4;
  memcpy(f->name->text, "work", 5);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  store_close(f->store);
  sqlite3_close(f->db);
  free(f->name);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static int64_t q(fixture *f, const char *sql) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db, sql, -1, &st, NULL), SQLITE_OK);
  int64_t v = -1;
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -2
                                                  : sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* A finished task enqueued at `at`, in batch id `batch`. */
static task_row *add_task(fixture *f, wbatch *b, int64_t id, int64_t batch,
                          int64_t at, int status) {
  task_row *r = wbatch_add_row(b);
  r->id = id;
  r->agent = 1;
  r->batch = batch;
  r->name = f->name;
  r->status = (uint8_t)status;
  r->enqueued_at = at;
  r->started_at = at + 10;
  r->finished_at = at + 110;
  r->have = HAVE_ENQUEUE | HAVE_START | HAVE_END;
  return r;
}

/* The agents row of `agent` on host "h", connected at `at`: its
 * instance's bytes all `fill`, with this service. */
static agent_op *add_instance(wbatch *b, int64_t agent, int64_t at, int fill,
                              const char *service) {
  agent_op *op = wbatch_add_op(b, AGENT_OP_NEW, agent, at);
  memset(op->instance, fill, sizeof(op->instance));
  op->service = (blob){service, (uint32_t)strlen(service)};
  op->host = (blob){"h", 1};
  return op;
}

/* The agents row of agent 1, with this service. */
static void add_agent(wbatch *b, const char *service) {
  add_instance(b, 1, 77, 7, service);
}

static void add_batch(wbatch *b, int64_t id, int64_t at) {
  batch_row *br = wbatch_add_batch(b);
  br->id = id;
  br->agent = 1;
  br->created_at = at;
}

/* Writes b to s and frees it. */
static void write_one(store *s, wbatch *b) {
  assert_int_equal(store_write(s, b), 0);
  wbatch_free(b);
}

/* A new transaction of batch 100 with its task 1, which succeeded. */
static wbatch *one_task(fixture *f) {
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  return b;
}

static void writes_rows_and_skips_repeated_ids(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "PRAGMA user_version"), SCHEMA_VERSION);
  wbatch *b = wbatch_new(1);
  add_instance(b, 1, 77, 9, "svc");
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED); /* repeated id */
  task_row *r = add_task(f, b, 2, 100, 2000, SCHEMA_FAILED);
  r->have |= HAVE_ERROR;
  r->error_type.ptr = "E\x1b[31m";
  r->error_type.len = 6;
  assert_int_equal(store_write(f->store, b), 0);
  assert_true(b->committed_ns > 0);
  wbatch_free(b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 2);
  assert_int_equal(q(f, "SELECT run_us FROM tasks WHERE id = 2"), 100);
  assert_int_equal(q(f, "SELECT wait_us FROM tasks WHERE id = 2"), 10);
  assert_int_equal(q(f, "SELECT length(error_type) FROM tasks WHERE id = 2"),
                   6);
  assert_int_equal(q(f, "SELECT connected FROM agents"), 1);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.rows_inserted, 2);
  /* Reopening after a crash: nobody is connected any more. */
  store_close(f->store);
  int64_t before = now_us();
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "SELECT connected FROM agents"), 0);
  /* The time is a bound integer of this moment. */
  assert_true(q(f, "SELECT disconnected_at FROM agents") >= before);
  assert_true(q(f, "SELECT disconnected_at FROM agents") <= now_us());
  assert_int_equal(
      q(f, "SELECT typeof(disconnected_at) = 'integer' FROM agents"), 1);
}

/* Rows that break a constraint anywhere in a bulk insert (first, between
 * others, two in a row, last; a row stored by an earlier transaction or
 * one earlier in the same insert) cost only themselves: the bulk insert
 * stops at each (OR FAIL) and goes on after it, so every other row is
 * stored once and counted once, in rows and in rollups. */
static void repeated_ids_anywhere_in_a_bulk_insert(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  add_task(f, b, 2, 100, 1000, SCHEMA_SUCCEEDED);
  write_one(f->store, b);
  b = wbatch_new(2);
  add_batch(b, 100, 1); /* stored already, first */
  add_batch(b, 200, 2000);
  add_batch(b, 200, 2);                     /* repeated in this insert, last */
  add_task(f, b, 1, 100, 1, SCHEMA_FAILED); /* stored already, first */
  add_task(f, b, 3, 200, 2000, SCHEMA_SUCCEEDED);
  add_task(f, b, 2, 100, 1, SCHEMA_FAILED); /* stored already */
  add_task(f, b, 3, 200, 1, SCHEMA_FAILED); /* repeated, right after */
  add_task(f, b, 4, 200, 2000, SCHEMA_SUCCEEDED);
  add_task(f, b, 5, 200, 2000, SCHEMA_SUCCEEDED);
  add_task(f, b, 5, 200, 1, SCHEMA_FAILED); /* repeated, last */
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 5);
  assert_int_equal(q(f, "SELECT count(*) FROM batches"), 2);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE status = 2"), 5);
  assert_int_equal(q(f, "SELECT sum(enqueued_at) FROM tasks"),
                   2 * 1000 + 3 * 2000);
  assert_int_equal(q(f, "SELECT sum(created_at) FROM batches"), 3000);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.rows_inserted, 5);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups"), 5);
  assert_int_equal(q(f, "SELECT sum(failed) FROM rollups"), 0);
}

/* Every kind of row, ids from `base` on: all columns the bulk insert and
 * the one-row insert write. */
static void add_varied_rows(fixture *f, wbatch *b, int64_t base) {
  static char etype[] = "TimeoutError", emsg[] = "no reply\x1b[31m",
              edetail[] = "Traceback ...", why[] = "queue full";
  add_batch(b, base, 5000 + base);
  for (int i = 0; i < 12; i++) {
    int64_t at = 10000 + base * 100 + i;
    task_row *r = add_task(f, b, base + 1 + i, base, at, SCHEMA_SUCCEEDED);
    r->position = (uint32_t)i;
    r->mode = (uint8_t)(i & 1);
    if (i % 3 == 0) {
      r->have |= HAVE_THREAD;
      r->thread = 4242 + i;
    }
    switch (i % 6) {
    case 1: /* failed, with an error */
      r->status = SCHEMA_FAILED;
      r->have |= HAVE_ERROR;
      r->error_type = (blob){etype, (uint32_t)strlen(etype)};
      r->error_message = (blob){emsg, (uint32_t)strlen(emsg)};
      r->error_detail = (blob){edetail, (uint32_t)strlen(edetail)};
      break;
    case 2: /* skipped: never started */
      r->status = SCHEMA_SKIPPED;
      r->have = HAVE_ENQUEUE | HAVE_END | HAVE_SKIP;
      r->skipped_after = base + 1 + i - 1;
      break;
    case 3: /* dropped */
      r->status = SCHEMA_DROPPED;
      r->have = HAVE_ENQUEUE | HAVE_END | HAVE_DROP;
      r->drop_reason = (blob){why, (uint32_t)strlen(why)};
      break;
    case 4: /* queued */
      r->status = SCHEMA_QUEUED;
      r->have = HAVE_ENQUEUE;
      break;
    case 5: /* running */
      r->status = SCHEMA_RUNNING;
      r->have = HAVE_ENQUEUE | HAVE_START;
      break;
    }
  }
}

/* The fast path (one INSERT ... SELECT per table) and the one-row path
 * after a constraint violation store exactly the same columns, and the
 * violation costs only the offending row. */
static void bulk_and_row_inserts_agree(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  add_varied_rows(f, b, 100);
  write_one(f->store, b);
  b = wbatch_new(2);
  add_varied_rows(f, b, 200);
  add_task(f, b, 101, 100, 1, SCHEMA_SUCCEEDED); /* stored already */
  add_batch(b, 100, 1);                          /* stored already */
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 24);
  assert_int_equal(q(f, "SELECT count(*) FROM batches"), 2);
  /* The repeated rows changed nothing. */
  assert_int_equal(q(f, "SELECT enqueued_at FROM tasks WHERE id = 101"),
                   10000 + 100 * 100);
  assert_int_equal(q(f, "SELECT created_at FROM batches WHERE id = 100"), 5100);
  /* Row i of the first batch equals row i of the second, the id-derived
   * columns aside. */
  const char *cols =
      "position, name, mode, status, thread, wait_us, run_us, error_type, "
      "error_message, error_detail, drop_reason, finished_at - enqueued_at, "
      "started_at - enqueued_at, skipped_after - batch, agent, "
      "typeof(thread), typeof(started_at), typeof(finished_at), "
      "typeof(skipped_after), typeof(error_type)";
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM (SELECT %s FROM tasks WHERE id < 200 "
           "EXCEPT SELECT %s FROM tasks WHERE id > 200)",
           cols, cols);
  assert_int_equal(q(f, sql), 0);
  snprintf(sql, sizeof(sql),
           "SELECT count(DISTINCT status) FROM (SELECT %s FROM tasks)", cols);
  assert_int_equal(q(f, sql), 6);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id > 200 AND "
                        "error_message = 'no reply' || char(27) || '[31m'"),
                   2);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.rows_inserted, 24);
}

static int64_t file_size(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    return -1;
  fseek(fp, 0, SEEK_END);
  int64_t n = ftell(fp);
  fclose(fp);
  return n;
}

/* The checkpointer copies the WAL into the database while the writer goes
 * on (it once never did: its connection had not read the store yet, so
 * SQLite did not know the store was in WAL mode). */
static void checkpoints_while_writing(void **state) {
  fixture *f = *state;
  /* Checkpoints from 1 MiB of WAL on; the writer would do one itself only
   * from 4 MiB on (checkpoint.c), which this test stays below. */
  store_config cfg = {f->path, 0, 0, 0, 0, 0, 1 << 20, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), 0);
  char wal[128];
  snprintf(wal, sizeof(wal), "%s-wal", f->path);
  int64_t empty = file_size(f->path);
  int64_t id = 1;
  for (int t = 1; file_size(wal) < 2 << 20; t++) {
    wbatch *b = wbatch_new((uint64_t)t);
    for (int i = 0; i < 500; i++, id++)
      add_task(f, b, id, 1, 1000 + id, SCHEMA_SUCCEEDED);
    write_one(f->store, b);
  }
  assert_true(file_size(wal) < 4 << 20);
  /* The store stays open: only a checkpoint can have grown the file. */
  int64_t size = file_size(f->path);
  for (int i = 0; i < 300 && size <= empty + (512 << 10); i++) {
    usleep(10000);
    size = file_size(f->path);
  }
  assert_true(size > empty + (512 << 10));
}

/* Adds the stored histograms that sql selects into h. */
static void rollup_hist(fixture *f, const char *sql, hist_sparse *h) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db, sql, -1, &st, NULL), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW)
    if (sqlite3_column_type(st, 0) != SQLITE_NULL)
      assert_int_equal(
          hist_sparse_add_blob(h, sqlite3_column_blob(st, 0),
                               (size_t)sqlite3_column_bytes(st, 0)),
          0);
  sqlite3_finalize(st);
}

/* A percentile of h is within the stated bound of the exact one. */
static void assert_near(const hist_sparse *h, unsigned per_mille,
                        int64_t exact) {
  int64_t v;
  assert_int_equal(hist_sparse_percentile(h, per_mille, &v), 0);
  assert_true(llabs(v - exact) <= exact / HIST_ERROR_DIV);
}

/* The fixture's store as an older version left it, closed: b (NULL:
 * nothing) written into a new store and freed, then sql run on the
 * closed store, which gives it the older version's layout and its
 * user_version (NULL: the caller does). */
static void make_store_at(fixture *f, wbatch *b, const char *sql) {
  open_store(f, 0, 0, 0);
  if (b != NULL)
    write_one(f->store, b);
  store_close(f->store);
  f->store = NULL;
  if (sql != NULL)
    assert_int_equal(sqlite3_exec(f->db, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* Opens the store of an older version: it is upgraded to the current one. */
static void open_upgraded(fixture *f) {
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "PRAGMA user_version"), SCHEMA_VERSION);
}

/* A closed store holding b (as make_store_at) in the layout of an older
 * version: version 3's indexes and per-minute rollups (percentiles by
 * finished minute), without export_queue and batches.traceparent, and for
 * version 2 its two indexes in place of tasks_time. */
static void make_old_store(fixture *f, wbatch *b, int version) {
  static const char v3[] =
      "DROP TABLE rollups; DROP TABLE rollups_hour;"
      "DROP TABLE export_queue;"
      "ALTER TABLE batches DROP COLUMN traceparent;"
      "CREATE TABLE rollups (minute INTEGER NOT NULL, name TEXT NOT NULL,"
      " succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL"
      " DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT"
      " NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0, wait_p50 INTEGER,"
      " wait_p95 INTEGER, wait_p99 INTEGER, run_p50 INTEGER, run_p95"
      " INTEGER, run_p99 INTEGER, PRIMARY KEY (minute, name)) WITHOUT ROWID;"
      "CREATE INDEX tasks_batch ON tasks (batch);"
      "CREATE INDEX tasks_unusual ON tasks (status, enqueued_at)"
      " WHERE status <> 2;"
      "CREATE INDEX agents_gone ON agents (disconnected_at)"
      " WHERE connected = 0;";
  make_store_at(f, b, schema_drop_index_sql());
  assert_int_equal(sqlite3_exec(f->db, v3, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(f->db,
                   version == 3
                       ? "CREATE INDEX tasks_time ON tasks (enqueued_at, name);"
                         "PRAGMA user_version = 3"
                       : "CREATE INDEX tasks_enqueued ON tasks (enqueued_at);"
                         "CREATE INDEX tasks_name ON tasks (name, "
                         "enqueued_at); PRAGMA user_version = 2",
                   NULL, NULL, NULL),
      SQLITE_OK);
}

/* What version 4 added besides the rollups and indexes: the export's
 * queue and the batches' traceparent. */
static void assert_export_tables(fixture *f) {
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE type = "
                        "'table' AND name = 'export_queue'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM pragma_table_info('batches') "
                        "WHERE name = 'traceparent'"),
                   1);
}

/* The indexes of the current version, and only those. */
static void assert_current_indexes(fixture *f) {
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE type = "
                        "'index' AND name IN ('tasks_enqueued', 'tasks_name')"),
                   0);
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE type = "
                        "'index' AND name = 'tasks_time'"),
                   1);
  /* The benchmarks' drop and create statements cover every index. */
  int64_t n = q(f, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                   "AND sql IS NOT NULL");
  assert_int_equal(
      sqlite3_exec(f->db, schema_drop_index_sql(), NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE type = "
                        "'index' AND sql IS NOT NULL"),
                   0);
  assert_int_equal(sqlite3_exec(f->db, schema_index_sql(), NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE type = "
                        "'index' AND sql IS NOT NULL"),
                   n);
}

/* A version 2 store (its indexes tasks_enqueued and tasks_name) opens at
 * the current version: tasks_time in their place, every row kept. */
static void upgrades_a_version_2_store(void **state) {
  fixture *f = *state;
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  add_task(f, b, 2, 100, 2000, SCHEMA_FAILED);
  make_old_store(f, b, 2);
  open_upgraded(f);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 2);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks INDEXED BY tasks_time "
                        "WHERE enqueued_at >= 2000"),
                   1);
  assert_int_equal(q(f, "SELECT sum(succeeded + failed) FROM rollups"), 2);
  assert_current_indexes(f);
  assert_export_tables(f);
}

/* A version 3 store opens as the current version in one transaction: it
 * gets export_queue and batches.traceparent, its rollups are rebuilt from
 * the raw rows (by enqueue minute, per service, with histograms), and the
 * old rollups of minutes whose raw rows were pruned are carried over as
 * counts, marked in meta. */
static void upgrades_a_version_3_store(void **state) {
  fixture *f = *state;
  int64_t m = INT64_C(60000000), t0 = m * 5000;
  wbatch *b = wbatch_new(1);
  add_agent(b, "mail");
  for (int i = 0; i < 120; i++) {
    task_row *r = add_task(f, b, 1 + i, 1, t0 + 2 * m + i * 1000000,
                           i % 10 ? SCHEMA_SUCCEEDED : SCHEMA_FAILED);
    r->finished_at = r->started_at + 100 * (i + 1);
  }
  make_old_store(f, b, 3);
  /* What the version 3 collector had rolled up: two pruned minutes, and
   * (wrong by now) rows of the minutes raw rows still hold. */
  assert_int_equal(
      sqlite3_exec(f->db,
                   "INSERT INTO rollups (minute, name, succeeded, failed, "
                   "run_p50) VALUES (300000000000, 'work', 40, 2, 700), "
                   "(300060000000, 'work', 50, 0, 700), (300120000000, "
                   "'work', 1, 1, 7), (300180000000, 'work', 1, 1, 7)",
                   NULL, NULL, NULL),
      SQLITE_OK);
  open_upgraded(f);
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE name = "
                        "'rollups_v3'"),
                   0);
  /* Raw minutes: from the rows. */
  assert_int_equal(q(f, "SELECT count(*) FROM rollups WHERE service = 'mail'"),
                   2);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups WHERE service = "
                        "'mail'"),
                   108);
  assert_int_equal(q(f, "SELECT sum(failed) FROM rollups WHERE service = "
                        "'mail'"),
                   12);
  hist_sparse run;
  hist_sparse_init(&run);
  rollup_hist(f, "SELECT run_hist FROM rollups WHERE service = 'mail'", &run);
  assert_int_equal(run.total, 120);
  assert_near(&run, 500, 6000);
  hist_sparse_fini(&run);
  /* Pruned minutes: the old counts, no histograms. */
  assert_int_equal(q(f, "SELECT count(*) FROM rollups WHERE service = '' AND "
                        "run_hist IS NULL AND minute < 300120000000"),
                   2);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups WHERE service = "
                        "''"),
                   90);
  assert_int_equal(q(f, "SELECT value FROM meta WHERE key = "
                        "'" SCHEMA_META_COUNTS_ONLY_BEFORE "'"),
                   t0 + 2 * m);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups_hour"), 198);
  assert_current_indexes(f);
  assert_export_tables(f);
  assert_int_equal(q(f, "PRAGMA application_id"), SCHEMA_APPLICATION_ID);
}

/* A row of later events of task id (an UPDATE row). */
static task_row *add_update(wbatch *b, int64_t id, int status) {
  task_row *r = wbatch_add_row(b);
  r->id = id;
  r->agent = 1;
  r->update = 1;
  r->status = (uint8_t)status;
  return r;
}

/* Events for a task whose ENQUEUE the store has not seen are stored with
 * what they carry (an orphan row), never ignored; the ENQUEUE, when it
 * comes, fills in the name and place; a stored task still gets its
 * update. */
static void stores_events_of_unknown_tasks(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  task_row *r = add_task(f, b, 1, 100, 1000, SCHEMA_RUNNING);
  r->have = HAVE_ENQUEUE | HAVE_START;
  write_one(f->store, b);

  b = wbatch_new(2);
  r = add_update(b, 1, SCHEMA_SUCCEEDED);
  r->finished_at = 1500;
  r->have = HAVE_END;
  r = add_update(b, 99, SCHEMA_RUNNING); /* never enqueued */
  r->started_at = 1600;
  r->thread = 4;
  r->have = HAVE_START | HAVE_THREAD;
  write_one(f->store, b);

  assert_int_equal(q(f, "SELECT status FROM tasks WHERE id = 1"),
                   SCHEMA_SUCCEEDED);
  assert_int_equal(q(f, "SELECT run_us FROM tasks WHERE id = 1"), 490);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 99 AND "
                        "status = 1 AND batch = 0 AND name = "
                        "'" SCHEMA_ORPHAN_NAME "' AND started_at = 1600 AND "
                        "enqueued_at = 1600 AND thread = 4 AND wait_us IS "
                        "NULL"),
                   1);
  /* Its ENQUEUE and end arrive later. */
  b = wbatch_new(3);
  r = add_task(f, b, 99, 100, 1200, SCHEMA_SUCCEEDED);
  r->position = 2;
  r->finished_at = 1900;
  r->have = HAVE_ENQUEUE | HAVE_END;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 99 AND "
                        "status = 2 AND batch = 100 AND name = 'work' AND "
                        "position = 2 AND enqueued_at = 1200 AND started_at "
                        "= 1600 AND finished_at = 1900 AND wait_us = 400 AND "
                        "run_us = 300 AND thread = 4"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 2);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.orphans, 1);
  assert_int_equal(st.updates_unmatched, 0);
  assert_int_equal(st.events_refused, 0);
}

/* A task's state only moves forward: a final state is never replaced, a
 * start never moved, a second ENQUEUE never replaces name and place; each
 * refused row is counted. Times stay in order. */
static void task_state_only_moves_forward(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  task_row *r = add_task(f, b, 1, 100, 1000, SCHEMA_FAILED);
  r->have |= HAVE_ERROR;
  r->error_type.ptr = "E";
  r->error_type.len = 1;
  r = add_task(f, b, 2, 100, 1000, SCHEMA_RUNNING);
  r->have = HAVE_ENQUEUE | HAVE_START;
  /* Started before it was enqueued, ended before it started: clamped. */
  r = add_task(f, b, 3, 100, 1000, SCHEMA_SUCCEEDED);
  r->started_at = 900;
  r->finished_at = 800;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT started_at - enqueued_at FROM tasks WHERE "
                        "id = 3"),
                   0);
  assert_int_equal(q(f, "SELECT run_us FROM tasks WHERE id = 3"), 0);

  b = wbatch_new(2);
  r = add_update(b, 1, SCHEMA_SUCCEEDED); /* FINISH after FAIL */
  r->finished_at = 5000;
  r->have = HAVE_END;
  r = add_update(b, 2, SCHEMA_RUNNING); /* START again */
  r->started_at = 3000;
  r->thread = 9;
  r->have = HAVE_START | HAVE_THREAD;
  /* ENQUEUE again, with another name and place */
  r = add_task(f, b, 2, 200, 4000, SCHEMA_QUEUED);
  r->have = HAVE_ENQUEUE;
  r->position = 7;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 1 AND status "
                        "= 3 AND finished_at = 1110 AND error_type = 'E'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 2 AND status "
                        "= 1 AND started_at = 1010 AND batch = 100 AND "
                        "position = 0 AND enqueued_at = 1000"),
                   1);
  /* Its end, with an end earlier than its start: it ends at its start. */
  b = wbatch_new(3);
  r = add_update(b, 2, SCHEMA_SUCCEEDED);
  r->finished_at = 1005;
  r->have = HAVE_END;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 2 AND status "
                        "= 2 AND finished_at = 1010 AND run_us = 0 AND "
                        "wait_us = 10"),
                   1);
  /* START after the end: refused. */
  b = wbatch_new(4);
  r = add_update(b, 2, SCHEMA_RUNNING);
  r->started_at = 7000;
  r->have = HAVE_START;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 2 AND status "
                        "= 2 AND started_at = 1010"),
                   1);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.events_refused, 4);
  assert_int_equal(st.orphans, 0);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups"), 2);
  assert_int_equal(q(f, "SELECT sum(failed) FROM rollups"), 1);
}

/* An instance that ends (GOODBYE) or vanishes leaves no task queued or
 * running: they become lost, saying why and what the agent dropped. */
static void ended_instances_leave_no_open_tasks(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  for (int agent = 1; agent <= 2; agent++) {
    agent_op *op = wbatch_add_op(b, AGENT_OP_NEW, agent, 77);
    memset(op->instance, agent, sizeof(op->instance));
    op->service.ptr = "svc";
    op->service.len = 3;
    op->host.ptr = "h";
    op->host.len = 1;
  }
  add_batch(b, 100, 1000);
  task_row *r = add_task(f, b, 1, 100, 1000, SCHEMA_QUEUED);
  r->have = HAVE_ENQUEUE;
  r = add_task(f, b, 2, 100, 1000, SCHEMA_RUNNING);
  r->have = HAVE_ENQUEUE | HAVE_START;
  add_task(f, b, 3, 100, 1000, SCHEMA_SUCCEEDED);
  r = add_task(f, b, 4, 100, 1000, SCHEMA_RUNNING);
  r->agent = 2;
  r->have = HAVE_ENQUEUE | HAVE_START;
  write_one(f->store, b);

  b = wbatch_new(2);
  agent_op *op = wbatch_add_op(b, AGENT_OP_HEALTH, 1, 0);
  op->a = 1204;
  wbatch_add_op(b, AGENT_OP_ENDED, 1, 5000);
  wbatch_add_op(b, AGENT_OP_LOST, 2, 6000);
  /* Ends in the same transaction as the GOODBYE: keeps its end. */
  r = add_update(b, 2, SCHEMA_SUCCEEDED);
  r->finished_at = 2000;
  r->have = HAVE_END;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE status IN (0, 1)"),
                   0);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 1 AND status "
                        "= 6 AND finished_at = 5000 AND drop_reason = 'agent "
                        "ended before the task finished; it reported 1,204 "
                        "events dropped'"),
                   1);
  assert_int_equal(q(f, "SELECT status FROM tasks WHERE id = 2"),
                   SCHEMA_SUCCEEDED);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 4 AND status "
                        "= 6 AND run_us = 4990 AND drop_reason = 'agent "
                        "disconnected and did not return; it reported 0 "
                        "events dropped'"),
                   1);
  assert_int_equal(q(f, "SELECT sum(lost) FROM rollups"), 2);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.tasks_lost, 2);
}

/* Version 5 added agents.last_received_at: a version 4 store gets it. */
static void upgrades_a_version_4_store(void **state) {
  fixture *f = *state;
  make_store_at(f, one_task(f),
                "ALTER TABLE agents DROP COLUMN last_received_at; "
                "PRAGMA user_version = 4");
  open_upgraded(f);
  assert_int_equal(q(f, "SELECT count(*) FROM pragma_table_info('agents') "
                        "WHERE name = 'last_received_at'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 1);
  /* Version 4's rollups are kept, not filled again from the rows. */
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups"), 1);
  wbatch *b = wbatch_new(2);
  add_instance(b, 1, 77, 1, "svc");
  agent_progress *p = wbatch_add_progress(b);
  p->agent = 1;
  p->next_seq = 5;
  p->events = 4;
  p->last_event_at = 1000;
  p->received_at = 123456;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT last_received_at FROM agents"), 123456);
}

/* ---- tasks in flight held by the writer (inflight.h) -------------------- */

/* A second store in the fixture's directory, holding tasks for hold_ms;
 * path (128 bytes) receives its file's path. */
static store *open_held(fixture *f, const char *name, int64_t hold_ms,
                        char *path) {
  snprintf(path, 128, "%s/%s", f->dir, name);
  store_config cfg = {path, 0, 0, 0, 0, 0, 0, hold_ms};
  store *s = NULL;
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &s, &err), 0);
  return s;
}

/* The whole of a query's result as one string (free() it). */
static char *dump(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  size_t len = 0, cap = 1024;
  char *out = malloc(cap);
  out[0] = '\0';
  while (sqlite3_step(st) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      const char *v = (const char *)sqlite3_column_text(st, i);
      size_t n = strlen(v ? v : "NULL") + 2;
      if (len + n + 1 > cap) {
        cap = 2 * (len + n + 1);
        out = realloc(out, cap);
      }
      len += (size_t)snprintf(out + len, cap - len, "%s%c", v ? v : "NULL",
                              i + 1 == sqlite3_column_count(st) ? '\n' : '|');
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

/* The query's result (as dump()) is want. */
static void assert_dump(const char *path, const char *sql, const char *want) {
  char *got = dump(path, sql);
  assert_string_equal(got, want);
  free(got);
}

static void set_error(task_row *r, const char *type, const char *message) {
  r->have |= HAVE_ERROR;
  r->error_type = (blob){type, (uint32_t)strlen(type)};
  r->error_message = (blob){message, (uint32_t)strlen(message)};
}

/* Every kind of lifecycle and refusal, spread over four transactions, in
 * batch `step` (1 to 4). Tasks 1-10 and 50 are agent 1's, task 4 agent
 * 2's. */
static wbatch *lifecycle_batch(fixture *f, int step) {
  wbatch *b = wbatch_new((uint64_t)step);
  task_row *r;
  switch (step) {
  case 1:
    for (int agent = 1; agent <= 2; agent++)
      add_instance(b, agent, 77, agent, "svc");
    add_batch(b, 100, 1000);
    for (int id = 1; id <= 8; id++) {
      r = add_task(f, b, id, 100, 1000 + id, SCHEMA_QUEUED);
      r->position = (uint32_t)id;
      r->thread = 70 + id;
      r->have = HAVE_ENQUEUE | HAVE_THREAD;
    }
    b->rows[1]->status = SCHEMA_RUNNING; /* task 2 starts at once */
    b->rows[1]->have |= HAVE_START;
    b->rows[1]->thread = 9;
    b->rows[2]->status = SCHEMA_SUCCEEDED; /* task 3 is whole */
    b->rows[2]->have |= HAVE_START | HAVE_END;
    b->rows[3]->agent = 2;
    r = add_update(b, 50, SCHEMA_RUNNING); /* never enqueued (yet) */
    r->started_at = 1600;
    r->thread = 4;
    r->have = HAVE_START | HAVE_THREAD;
    break;
  case 2:
    r = add_update(b, 1, SCHEMA_RUNNING);
    r->started_at = 2000;
    r->thread = 11;
    r->have = HAVE_START | HAVE_THREAD;
    r = add_update(b, 2, SCHEMA_RUNNING); /* START again: refused */
    r->started_at = 2100;
    r->have = HAVE_START;
    r = add_task(f, b, 2, 200, 4000, SCHEMA_QUEUED); /* ENQUEUE again */
    r->position = 77;
    r->have = HAVE_ENQUEUE;
    r = add_update(b, 5, SCHEMA_RUNNING);
    r->started_at = 900; /* before its ENQUEUE: clamped */
    r->have = HAVE_START;
    r = add_update(b, 6, SCHEMA_SKIPPED);
    r->finished_at = 2200;
    r->skipped_after = 5;
    r->have = HAVE_END | HAVE_SKIP;
    r = add_update(b, 7, SCHEMA_DROPPED);
    r->finished_at = 2300;
    r->drop_reason = (blob){"queue full", 10};
    r->have = HAVE_END | HAVE_DROP;
    r = add_task(f, b, 50, 100, 1200, SCHEMA_QUEUED); /* its ENQUEUE */
    r->position = 9;
    r->have = HAVE_ENQUEUE;
    r = add_update(b, 3, SCHEMA_SUCCEEDED); /* FINISH after FINISH */
    r->finished_at = 9000;
    r->have = HAVE_END;
    r = add_task(f, b, 9, 100, 3000, SCHEMA_RUNNING);
    r->started_at = 2500; /* started before enqueued: clamped */
    r->have = HAVE_ENQUEUE | HAVE_START;
    break;
  case 3:
    r = add_update(b, 1, SCHEMA_SUCCEEDED);
    r->finished_at = 1500; /* before its start: ends at its start */
    r->have = HAVE_END;
    r = add_update(b, 2, SCHEMA_SUCCEEDED);
    r->finished_at = 5000;
    r->have = HAVE_END;
    r = add_update(b, 5, SCHEMA_FAILED);
    r->finished_at = 5100;
    set_error(r, "E", "it broke");
    r->have |= HAVE_END;
    r = add_update(b, 9, SCHEMA_SUCCEEDED);
    r->finished_at = 5200;
    r->have = HAVE_END;
    r = add_update(b, 50, SCHEMA_SUCCEEDED);
    r->finished_at = 5300;
    r->have = HAVE_END;
    agent_op *op = wbatch_add_op(b, AGENT_OP_HEALTH, 1, 0);
    op->a = 1204;
    wbatch_add_op(b, AGENT_OP_LOST, 2, 6000);
    break;
  default:
    r = add_task(f, b, 10, 100, 7000, SCHEMA_QUEUED);
    r->have = HAVE_ENQUEUE;
    wbatch_add_op(b, AGENT_OP_ENDED, 1, 8000);
    break;
  }
  return b;
}

static const char tasks_sql[] =
    "SELECT id, agent, batch, position, name, mode, status, thread, "
    "enqueued_at, started_at, finished_at, wait_us, run_us, error_type, "
    "error_message, error_detail, skipped_after, drop_reason FROM tasks "
    "ORDER BY id";
static const char rollups_sql[] =
    "SELECT minute, service, name, succeeded, failed, skipped, dropped, "
    "lost, hex(wait_hist), hex(run_hist) FROM rollups ORDER BY 1, 2, 3";

/* Holding tasks in memory changes when rows are written, never what they
 * say: the same transactions give the same tasks and rollups as writing
 * every task at once, refusals and orphans counted alike, with fewer
 * UPDATEs. */
static void held_tasks_end_as_written_ones(void **state) {
  fixture *f = *state;
  char path[128], at_once_path[128];
  store *at_once = open_held(f, "at_once.db", 0, at_once_path);
  store *held = open_held(f, "held.db", 60000, path);
  for (int step = 1; step <= 4; step++) {
    wbatch *b = lifecycle_batch(f, step);
    write_one(at_once, b);
    b = lifecycle_batch(f, step);
    assert_int_equal(store_write(held, b), 0);
    if (step == 1)
      assert_true(b->held_due_ms > 0 && b->held_due_ms <= 60000);
    wbatch_free(b);
  }
  /* Agent 1 ended and agent 2 vanished: nothing is held any more. */
  assert_int_equal(store_settle(held), 0);
  char *got = dump(path, tasks_sql);
  char *held_rollups = dump(path, rollups_sql);
  char *inflight = dump(path, "SELECT count(*) FROM inflight");
  char *want = dump(at_once_path, tasks_sql);
  char *want_rollups = dump(at_once_path, rollups_sql);
  assert_string_equal(got, want);
  assert_string_equal(held_rollups, want_rollups);
  assert_string_equal(inflight, "0\n");
  assert_non_null(strstr(got, "|6|")); /* lost tasks are there */
  store_stats a, h;
  store_get_stats(at_once, &a);
  store_get_stats(held, &h);
  assert_int_equal(h.events_refused, a.events_refused);
  assert_int_equal(a.events_refused, 3);
  assert_int_equal(h.orphans, a.orphans);
  assert_int_equal(h.tasks_lost, a.tasks_lost);
  assert_true(h.rows_held >= 6);
  assert_true(h.rows_updated < a.rows_updated);
  free(got);
  free(want);
  free(held_rollups);
  free(want_rollups);
  free(inflight);
  store_close(at_once);
  store_close(held);
}

/* What is held is durable with the transaction that holds it: a store
 * closed without store_settle() (as after kill -9) writes the held tasks
 * as queued and running rows when it opens again, and their later events
 * update those rows. */
static void held_tasks_survive_a_crash(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "crash.db", 60000, path);
  wbatch *b = lifecycle_batch(f, 1);
  write_one(s, b);
  /* Whole, and the orphan. */
  assert_dump(path, "SELECT id FROM tasks ORDER BY id", "3\n50\n");
  store_close(s); /* not settled */
  s = open_held(f, "crash.db", 60000, path);
  assert_dump(path,
              "SELECT id, status, batch, position, thread, "
              "enqueued_at, started_at, wait_us FROM tasks "
              "WHERE id <> 50 ORDER BY id",
              "1|0|100|1|71|1001|NULL|NULL\n"
              "2|1|100|2|9|1002|1012|10\n"
              "3|2|100|3|73|1003|1013|10\n"
              "4|0|100|4|74|1004|NULL|NULL\n"
              "5|0|100|5|75|1005|NULL|NULL\n"
              "6|0|100|6|76|1006|NULL|NULL\n"
              "7|0|100|7|77|1007|NULL|NULL\n"
              "8|0|100|8|78|1008|NULL|NULL\n");
  assert_dump(path, "SELECT count(*) FROM inflight", "0\n");
  b = wbatch_new(2);
  task_row *r = add_update(b, 2, SCHEMA_SUCCEEDED);
  r->finished_at = 3000;
  r->have = HAVE_END;
  write_one(s, b);
  assert_dump(path, "SELECT status, run_us FROM tasks WHERE id = 2",
              "2|1988\n");
  store_stats st;
  store_get_stats(s, &st);
  assert_int_equal(st.rows_updated, 1);
  store_close(s);
}

/* The table inflight is a log (schema version 8): each transaction that
 * changes the held set appends what it changed, and a crash after several
 * replays them in order: a task held in one transaction and started in the
 * next comes back running, one that ended in between (let go, with its
 * row) is not written again. */
static void held_log_replays_in_order(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "log.db", 60000, path);
  wbatch *b = wbatch_new(1);
  add_agent(b, "svc");
  add_batch(b, 100, 1000);
  for (int id = 1; id <= 3; id++)
    add_task(f, b, id, 100, 1000 + id, SCHEMA_QUEUED)->have = HAVE_ENQUEUE;
  assert_int_equal(store_write(s, b), 0);
  wbatch_free(b);
  b = wbatch_new(2);
  task_row *r = add_update(b, 2, SCHEMA_RUNNING);
  r->started_at = 2000;
  r->have = HAVE_START;
  r = add_update(b, 3, SCHEMA_SUCCEEDED);
  r->finished_at = 3000;
  r->have = HAVE_END;
  assert_int_equal(store_write(s, b), 0);
  wbatch_free(b);
  b = wbatch_new(3);
  add_task(f, b, 4, 100, 4000, SCHEMA_QUEUED)->have = HAVE_ENQUEUE;
  assert_int_equal(store_write(s, b), 0);
  wbatch_free(b);
  assert_dump(path, "SELECT count(*) FROM inflight", "3\n");
  assert_dump(path, "SELECT id, status FROM tasks", "3|2\n");
  store_close(s); /* not settled */
  s = open_held(f, "log.db", 60000, path);
  assert_dump(path,
              "SELECT id, status, started_at, finished_at FROM tasks "
              "ORDER BY id",
              "1|0|NULL|NULL\n"
              "2|1|2000|NULL\n"
              "3|2|NULL|3000\n"
              "4|0|NULL|NULL\n");
  assert_dump(path, "SELECT count(*) FROM inflight", "0\n");
  store_stats st;
  store_get_stats(s, &st);
  assert_int_equal(st.events_refused, 0);
  store_close(s);
}

/* The log stays within a few times the set's size: a transaction that
 * finds it past its bound replaces it with one blob of the whole set, and
 * the replay after a crash still gives the set. 200 transactions, each
 * holding 100 tasks and ending the 100 of the one before. */
static void held_log_is_compacted(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "compact.db", 60000, path);
  for (int step = 1; step <= 200; step++) {
    wbatch *b = wbatch_new((uint64_t)step);
    if (step == 1)
      add_agent(b, "svc");
    add_batch(b, step, 1000 * step);
    for (int k = 0; k < 100; k++) {
      task_row *r =
          add_task(f, b, step * 1000 + k, step, 1000 * step + k, SCHEMA_QUEUED);
      r->have = HAVE_ENQUEUE;
      if (step > 1) {
        r = add_update(b, (step - 1) * 1000 + k, SCHEMA_SUCCEEDED);
        r->finished_at = 1000 * step + k;
        r->have = HAVE_END;
      }
    }
    assert_int_equal(store_write(s, b), 0);
    wbatch_free(b);
  }
  assert_dump(path,
              "SELECT count(*) < 50, sum(length(tasks)) < "
              "1000000 FROM inflight",
              "1|1\n");
  store_close(s); /* not settled */
  s = open_held(f, "compact.db", 60000, path);
  assert_dump(path,
              "SELECT count(*), sum(status = 0), min(id) FILTER (WHERE "
              "status = 0) FROM tasks",
              "20000|100|200000\n");
  store_stats st;
  store_get_stats(s, &st);
  assert_int_equal(st.events_refused, 0);
  store_close(s);
}

/* A held task is written as queued or running once it has been held
 * hold_ms, by any later transaction (the loop commits one for it, even an
 * empty one: batch.h, held_due_ms). */
static void held_tasks_are_written_when_due(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "due.db", 20, path);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  task_row *r = add_task(f, b, 1, 100, 1000, SCHEMA_RUNNING);
  r->have = HAVE_ENQUEUE | HAVE_START;
  assert_int_equal(store_write(s, b), 0);
  assert_true(b->held_due_ms > 0 && b->held_due_ms <= 20);
  wbatch_free(b);
  assert_dump(path, "SELECT count(*) FROM tasks", "0\n");
  /* Not due yet: an empty transaction leaves it held. */
  b = wbatch_new(2);
  assert_int_equal(store_write(s, b), 0);
  int64_t due = b->held_due_ms;
  wbatch_free(b);
  if (due > 0) {
    struct timespec ts = {0, (long)(due + 1) * 1000000L};
    nanosleep(&ts, NULL);
  }
  b = wbatch_new(3);
  assert_int_equal(store_write(s, b), 0);
  assert_int_equal(b->held_due_ms, -1);
  wbatch_free(b);
  assert_dump(path, "SELECT status, started_at FROM tasks", "1|1010\n");
  assert_dump(path, "SELECT count(*) FROM inflight", "0\n");
  store_close(s);
}

/* Writes batch n of one task in flight (enqueued only; task n of batch
 * 100 + n) whose events came while the acks advised agent_hold_ms;
 * returns the batch's held_due_ms. */
static int64_t write_in_flight(fixture *f, store *s, int n,
                               int64_t agent_hold_ms) {
  wbatch *b = wbatch_new((uint64_t)n);
  b->agent_hold_ms = agent_hold_ms;
  add_batch(b, 100 + n, 1000 * n);
  task_row *r = add_task(f, b, n, 100 + n, 1000 * n, SCHEMA_QUEUED);
  r->have = HAVE_ENQUEUE;
  assert_int_equal(store_write(s, b), 0);
  int64_t due = b->held_due_ms;
  wbatch_free(b);
  return due;
}

/* Events that came while the acks advised a hold (batch.h,
 * agent_hold_ms): their agent kept a task in flight that long already.
 * As long as the writer's own hold, the task is written at once, queued
 * or running; shorter, it is held the rest; none (an agent of before the
 * advice, or a busy collector), the whole hold as before. */
static void tasks_an_agent_held_are_held_the_rest(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "agent_held.db", 60000, path);
  store_stats st;
  /* Held the whole minute by its agent: written at once, nothing held. */
  assert_int_equal(write_in_flight(f, s, 1, 60000), -1);
  assert_dump(path, "SELECT id, status FROM tasks", "1|0\n");
  store_get_stats(s, &st);
  assert_int_equal(st.rows_held, 0);
  /* Held 59.9 s of it: due within the rest. */
  int64_t due = write_in_flight(f, s, 2, 59900);
  assert_true(due > 0 && due <= 100);
  /* No advice: the whole minute (the batch's due time is task 2's, or
   * task 3's if task 2 fell due meanwhile on a loaded machine). */
  assert_true(write_in_flight(f, s, 3, 0) > 0);
  struct timespec ts = {0, (due + 1) * 1000000L};
  nanosleep(&ts, NULL); /* until task 2 is due */
  wbatch *b = wbatch_new(4);
  assert_int_equal(store_write(s, b), 0);
  assert_true(b->held_due_ms > 59000 && b->held_due_ms <= 60000);
  wbatch_free(b);
  assert_dump(path, "SELECT id, status FROM tasks ORDER BY id",
              "1|0\n2|0\n");
  store_get_stats(s, &st);
  assert_int_equal(st.rows_held, 2);
  store_close(s);
}

/* A transaction that fails leaves the held tasks as they were, so the
 * same batch written again applies its events once. */
static void failed_transactions_keep_the_held_tasks(void **state) {
  fixture *f = *state;
  char path[128];
  store *s = open_held(f, "retry.db", 60000, path);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  task_row *r = add_task(f, b, 1, 100, 1000, SCHEMA_QUEUED);
  r->have = HAVE_ENQUEUE;
  r = add_task(f, b, 2, 100, 1000, SCHEMA_QUEUED);
  r->have = HAVE_ENQUEUE;
  write_one(s, b);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  /* Fails the transaction at its last statement (an integer overflow is
   * an error, not a constraint a row could be skipped for). */
  assert_int_equal(
      sqlite3_exec(db,
                   "CREATE TRIGGER boom BEFORE INSERT ON inflight BEGIN "
                   "SELECT abs(-9223372036854775807 - 1); END",
                   NULL, NULL, NULL),
      SQLITE_OK);
  b = wbatch_new(2);
  r = add_update(b, 1, SCHEMA_RUNNING);
  r->started_at = 1100;
  r->have = HAVE_START;
  r = add_update(b, 2, SCHEMA_RUNNING);
  r->started_at = 1200;
  r->have = HAVE_START;
  r = add_update(b, 2, SCHEMA_SUCCEEDED);
  r->finished_at = 1300;
  r->have = HAVE_END;
  assert_int_not_equal(store_write(s, b), 0);
  assert_int_equal(sqlite3_exec(db, "DROP TRIGGER boom", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  write_one(s, b);
  assert_int_equal(store_settle(s), 0);
  assert_dump(path,
              "SELECT id, status, started_at, finished_at FROM "
              "tasks ORDER BY id",
              "1|1|1100|NULL\n2|2|1200|1300\n");
  assert_dump(path, "SELECT sum(succeeded) FROM rollups", "1\n");
  store_stats st;
  store_get_stats(s, &st);
  assert_int_equal(st.events_refused, 0);
  store_close(s);
}

/* Version 8 made the table inflight a log: a version 7 store's one blob
 * of format 1 (the whole set) is its first entry, replayed at the open. */
static void upgrades_a_version_7_store(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  wbatch *b = wbatch_new(1);
  add_agent(b, "svc");
  add_batch(b, 100, 1000);
  write_one(f->store, b);
  store_close(f->store);
  f->store = NULL;
  held_task h = {77,
                 1,
                 100,
                 9,
                 1500,
                 1600,
                 3,
                 1,
                 SCHEMA_RUNNING,
                 HAVE_ENQUEUE | HAVE_START | HAVE_THREAD,
                 "work",
                 4};
  unsigned char blob[HELD_HEADER + 128];
  unsigned char *p = held_put_header(blob, 1);
  blob[0] = 1; /* format 1: version 7 wrote nothing else */
  p = held_put(p, &h);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db,
                                      "INSERT INTO inflight (id, tasks) "
                                      "VALUES (1, ?1)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_blob(st, 1, blob, (int)(p - blob), SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  assert_int_equal(
      sqlite3_exec(f->db, "PRAGMA user_version = 7", NULL, NULL, NULL),
      SQLITE_OK);
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "PRAGMA user_version"), SCHEMA_VERSION);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 77 AND status "
                        "= 1 AND started_at = 1600 AND thread = 9 AND "
                        "position = 3 AND name = 'work'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM inflight"), 0);
}

/* Version 7 added the table slowest: a version 6 store (the release
 * before) gets it, filled from its raw rows, and the collector opens it. */
static void upgrades_a_version_6_store(void **state) {
  fixture *f = *state;
  make_store_at(f, one_task(f), "DROP TABLE slowest; PRAGMA user_version = 6");
  open_upgraded(f);
  assert_int_equal(q(f, "SELECT count(*) FROM slowest WHERE minute = 0 AND "
                        "run_us = 100 AND id = 1 AND batch = 100"),
                   1);
}

/* Version 6 added agents.dropped_batches and dropped_tasks and the table
 * inflight, version 7 the table slowest: a version 5 store gets them, its rows
 * at 0 (its tasks that ran in slowest), and HEALTH writes them. */
static void upgrades_a_version_5_store(void **state) {
  fixture *f = *state;
  wbatch *b = one_task(f);
  add_instance(b, 1, 77, 1, "svc");
  agent_op *op = wbatch_add_op(b, AGENT_OP_HEALTH, 1, 0);
  op->a = 12;
  op->b = 3;
  make_store_at(f, b,
                "ALTER TABLE agents DROP COLUMN dropped_batches; "
                "ALTER TABLE agents DROP COLUMN dropped_tasks; "
                "DROP TABLE inflight; DROP TABLE slowest; "
                "PRAGMA user_version = 5");
  open_upgraded(f);
  assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE name = "
                        "'inflight'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM pragma_table_info('agents') "
                        "WHERE name IN ('dropped_batches', 'dropped_tasks')"),
                   2);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 1);
  /* The task ran: the upgrade filled slowest from the raw rows. */
  assert_int_equal(q(f, "SELECT count(*) FROM slowest WHERE minute = 0 AND "
                        "run_us = 100 AND id = 1 AND batch = 100"),
                   1);
  assert_int_equal(q(f, "SELECT dropped * 1000000 + reconnects * 10000 + "
                        "dropped_batches * 100 + dropped_tasks FROM agents"),
                   12030000);
  b = wbatch_new(2);
  op = wbatch_add_op(b, AGENT_OP_HEALTH, 1, 0);
  op->a = 20;
  op->b = 3;
  op->c = 2;
  op->d = 7;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT dropped * 1000000 + reconnects * 10000 + "
                        "dropped_batches * 100 + dropped_tasks FROM agents"),
                   20030207);
}

static void prunes_by_age_keeping_failures_longer(void **state) {
  fixture *f = *state;
  int64_t day = INT64_C(86400000000), now = now_us();
  open_store(f, day, 3 * day, 0);
  wbatch *b = wbatch_new(1);
  for (int i = 0; i < 5000; i++) {
    int64_t at = now - 2 * day + i;
    add_batch(b, 1000 + i, at);
    add_task(f, b, 1 + i, 1000 + i, at,
             i % 10 == 0 ? SCHEMA_FAILED : SCHEMA_SUCCEEDED);
  }
  add_task(f, b, 9999, 1, now, SCHEMA_SUCCEEDED);      /* recent */
  add_task(f, b, 9998, 2, now - 4 * day, SCHEMA_LOST); /* very old */
  write_one(f->store, b);
  /* One step removes at most a bounded number of rows. */
  for (int step = 0; step < 10; step++) {
    wbatch *p = wbatch_new(2 + (uint64_t)step);
    p->prune = 1;
    assert_int_equal(store_write(f->store, p), 0);
    if (step == 0)
      assert_true(q(f, "SELECT count(*) FROM tasks") > 500);
    wbatch_free(p);
  }
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE status = 2"), 1);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE status = 3"), 500);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE status = 6"), 0);
  /* Batches go with their last task. */
  assert_int_equal(q(f, "SELECT count(*) FROM batches"), 500);
  /* The slowest of the pruned minutes go too: only the recent task's
   * minute is left (the failures kept longer are read raw). */
  assert_int_equal(q(f, "SELECT count(*) FROM slowest"), 1);
}

/* A task that arrives older than what retention has already worked
 * through (an agent that held it through an outage, or whose clock runs
 * behind) is pruned by the next step all the same. */
static void prunes_tasks_that_arrive_late(void **state) {
  fixture *f = *state;
  int64_t day = INT64_C(86400000000), now = now_us();
  open_store(f, day, 0, 0);
  wbatch *p = wbatch_new(1);
  p->prune = 1; /* a step with nothing to prune yet */
  assert_int_equal(store_write(f->store, p), 0);
  wbatch_free(p);
  wbatch *b = wbatch_new(2);
  add_batch(b, 100, now - 3 * day);
  add_task(f, b, 1, 100, now - 3 * day, SCHEMA_SUCCEEDED);
  add_task(f, b, 2, 100, now, SCHEMA_SUCCEEDED);
  write_one(f->store, b);
  p = wbatch_new(3);
  p->prune = 1;
  assert_int_equal(store_write(f->store, p), 0);
  wbatch_free(p);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 1"), 0);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks WHERE id = 2"), 1);
}

static void new_agent(wbatch *b, int64_t agent, int64_t at) {
  add_instance(b, agent, at, (int)agent, "svc");
  string_row *sr = wbatch_add_string(b);
  sr->agent = agent;
  sr->id = 1;
}

/* With retention on, the agents row and names of an instance go once it
 * has been disconnected longer than the grace and nothing of it is left;
 * connected ones, recently gone ones and ones with tasks stay. */
static void prunes_gone_agents(void **state) {
  fixture *f = *state;
  int64_t hour = INT64_C(3600000000), now = now_us();
  store_config cfg = {f->path, 0, 24 * hour, 0, 0, hour, 0, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), 0);
  wbatch *b = wbatch_new(1);
  for (int64_t a = 1; a <= 4; a++)
    new_agent(b, a, now - 3 * hour);
  for (size_t i = 0; i < b->nstrings; i++)
    b->strings[i].text = f->name;
  wbatch_add_op(b, AGENT_OP_DISCONNECT, 1, now - 2 * hour); /* gone */
  wbatch_add_op(b, AGENT_OP_DISCONNECT, 2, now - 2 * hour); /* has a task */
  wbatch_add_op(b, AGENT_OP_DISCONNECT, 4, now - hour / 6); /* recently */
  add_batch(b, schema_global_id(2, 4), now);
  add_task(f, b, schema_global_id(2, 5), schema_global_id(2, 4), now,
           SCHEMA_SUCCEEDED)
      ->agent = 2;
  b->batches[0].agent = 2;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM agents"), 4);
  assert_int_equal(q(f, "SELECT count(*) FROM strings"), 4);
  wbatch *p = wbatch_new(2);
  p->prune = 1;
  assert_int_equal(store_write(f->store, p), 0);
  wbatch_free(p);
  assert_int_equal(q(f, "SELECT count(*) FROM agents"), 3);
  assert_int_equal(q(f, "SELECT count(*) FROM agents WHERE id = 1"), 0);
  assert_int_equal(q(f, "SELECT count(*) FROM strings WHERE agent = 1"), 0);
  assert_int_equal(q(f, "SELECT count(*) FROM strings"), 3);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.agents_pruned, 1);
}

static void prunes_to_max_tasks(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 100);
  wbatch *b = wbatch_new(1);
  for (int i = 0; i < 1000; i++)
    add_task(f, b, 1 + i, 1, 1000 + i, SCHEMA_SUCCEEDED);
  write_one(f->store, b);
  b = wbatch_new(2);
  b->prune = 1;
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 100);
  assert_int_equal(q(f, "SELECT min(enqueued_at) FROM tasks"), 1900);
}

static void rollups_count_and_rank(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  int64_t minute = INT64_C(60000000) * 1000;
  wbatch *b = wbatch_new(1);
  add_agent(b, "mail");
  for (int i = 0; i < 100; i++) {
    task_row *r = add_task(f, b, 1 + i, 1, minute + i * 1000,
                           i < 90 ? SCHEMA_SUCCEEDED : SCHEMA_FAILED);
    r->finished_at = r->started_at + (i + 1) * 100; /* run 100..10000 */
  }
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM rollups"), 1);
  assert_int_equal(q(f, "SELECT minute FROM rollups"), minute);
  assert_int_equal(q(f, "SELECT count(*) FROM rollups WHERE service = 'mail' "
                        "AND name = 'work'"),
                   1);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups"), 90);
  assert_int_equal(q(f, "SELECT failed FROM rollups"), 10);
  hist_sparse run, wait;
  hist_sparse_init(&run);
  hist_sparse_init(&wait);
  rollup_hist(f, "SELECT run_hist FROM rollups", &run);
  rollup_hist(f, "SELECT wait_hist FROM rollups", &wait);
  assert_int_equal(run.total, 100);
  assert_near(&run, 500, 5000);
  assert_near(&run, 990, 9900);
  int64_t v;
  assert_int_equal(hist_sparse_percentile(&run, 1000, &v), 0);
  assert_int_equal(v, 10000);
  assert_int_equal(hist_sparse_percentile(&wait, 500, &v), 0);
  assert_int_equal(v, 10); /* small values are exact */
  hist_sparse_fini(&run);
  hist_sparse_fini(&wait);
  /* The hour holds the same. */
  assert_int_equal(q(f, "SELECT hour FROM rollups_hour"),
                   minute - minute % INT64_C(3600000000));
  assert_int_equal(q(f, "SELECT succeeded + failed FROM rollups_hour"), 100);
}

/* Rows of one minute written by two transactions, and by a collector run
 * after a restart, add up: counts and histograms alike. */
static void rollups_merge_across_restarts(void **state) {
  fixture *f = *state;
  int64_t minute = INT64_C(60000000) * 2000;
  for (int run = 0; run < 3; run++) {
    open_store(f, 0, 0, 0);
    wbatch *b = wbatch_new(1);
    for (int i = 0; i < 10; i++) {
      task_row *r =
          add_task(f, b, 1 + run * 10 + i, 1, minute + i, SCHEMA_SUCCEEDED);
      r->finished_at = r->started_at + 1000 * (run + 1);
    }
    write_one(f->store, b);
    store_close(f->store);
    f->store = NULL;
    /* Closed for good: the last connection checkpointed its WAL away. */
    char wal[128];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(access(wal, F_OK), -1);
  }
  assert_int_equal(q(f, "SELECT succeeded FROM rollups"), 30);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups_hour"), 30);
  hist_sparse run;
  hist_sparse_init(&run);
  rollup_hist(f, "SELECT run_hist FROM rollups", &run);
  assert_int_equal(run.total, 30);
  assert_near(&run, 100, 1000);
  assert_near(&run, 500, 2000);
  assert_near(&run, 1000, 3000);
  hist_sparse_fini(&run);
}

/* Rollups built row by row as tasks commit equal the ones rollup_fill()
 * builds from the raw rows afterwards. */
static void rollup_fill_agrees_with_the_writer(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  int64_t t0 = INT64_C(60000000) * 3000;
  /* Three transactions, each with tasks of every minute. */
  for (int k = 0; k < 3; k++) {
    wbatch *b = wbatch_new(1 + (uint64_t)k);
    for (int i = k; i < 600; i += 3) {
      task_row *r = add_task(f, b, 1 + i, 1, t0 + i * 700000,
                             i % 7 == 0   ? SCHEMA_FAILED
                             : i % 5 == 0 ? SCHEMA_SKIPPED
                                          : SCHEMA_SUCCEEDED);
      r->finished_at = r->started_at + 37 * i;
      if (i % 5 == 0 && i % 7)
        r->have &= (uint8_t)~HAVE_START;
    }
    write_one(f->store, b);
  }
  store_close(f->store);
  f->store = NULL;
  static const char both[] =
      "SELECT count(*) FROM (SELECT * FROM rollups %s SELECT * FROM "
      "rollups_copy)";
  assert_int_equal(sqlite3_exec(f->db,
                                "CREATE TABLE rollups_copy AS SELECT * FROM "
                                "rollups; DELETE FROM rollups;"
                                "DELETE FROM rollups_hour",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(q(f, "SELECT count(*) FROM rollups_copy"), 7);
  rollup *r = NULL;
  assert_int_equal(rollup_open(f->db, &r), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(rollup_fill(r, INT64_MIN), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  rollup_free(r);
  char sql[256];
  snprintf(sql, sizeof sql, both, "EXCEPT");
  assert_int_equal(q(f, sql), 0);
  snprintf(sql, sizeof sql, both, "INTERSECT");
  assert_int_equal(q(f, sql), 7);
  assert_int_equal(q(f, "SELECT sum(succeeded + failed + skipped) FROM "
                        "rollups_hour"),
                   600);
}

/* Tasks added in a transaction that rolls back leave the rollups, their
 * histograms included: the writer retries the batch, and each retry adds
 * the same tasks again. */
static int by_run_desc(const void *a, const void *b) {
  const int64_t *x = a, *y = b; /* {run, id} */
  if (x[0] != y[0])
    return x[0] < y[0] ? 1 : -1;
  return (x[1] < y[1]) - (x[1] > y[1]);
}

/* The table slowest keeps each minute's SCHEMA_SLOWEST_PER_MINUTE slowest
 * tasks by (run, id), whatever the transactions they came in (ties
 * included), and a minute of fewer tasks keeps them all; a rolled back
 * transaction leaves nothing. */
static void rollup_keeps_each_minutes_slowest(void **state) {
  fixture *f = *state;
  char *err = NULL;
  assert_int_equal(schema_apply(f->db, &err), SQLITE_OK);
  rollup *r = NULL;
  assert_int_equal(rollup_open(f->db, &r), SQLITE_OK);
  int64_t minute = INT64_C(60000000) * 1000;
  enum { TX = 6, PER = 300 };
  static int64_t all[TX * PER][2];
  int n = 0;
  for (int t = 0; t < TX; t++) {
    assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < PER; i++, n++) {
      all[n][0] = (n * 7919) % 1000; /* many ties */
      all[n][1] = 1 + n;
      rollup_add(r, 1, "n", 1, minute + n, SCHEMA_SUCCEEDED, 5, all[n][0],
                 all[n][1], 7);
    }
    rollup_add(r, 1, "n", 1, minute + 60000000 + t, SCHEMA_FAILED, 5, t,
               100000 + t, 8);
    assert_int_equal(rollup_flush(r), SQLITE_OK);
    assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
  }
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  rollup_add(r, 1, "n", 1, minute, SCHEMA_SUCCEEDED, 5, 5000, 999999, 9);
  assert_int_equal(rollup_flush(r), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL),
                   SQLITE_OK);
  rollup_free(r);
  qsort(all, (size_t)n, sizeof all[0], by_run_desc);
  assert_int_equal(q(f, "SELECT count(*) FROM slowest WHERE minute = "
                        "60000000000"),
                   SCHEMA_SLOWEST_PER_MINUTE);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->db,
                                      "SELECT run_us, id, batch, enqueued_at "
                                      "FROM slowest WHERE minute = "
                                      "60000000000 ORDER BY run_us DESC, id "
                                      "DESC",
                                      -1, &st, NULL),
                   SQLITE_OK);
  for (int i = 0; i < SCHEMA_SLOWEST_PER_MINUTE; i++) {
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), all[i][0]);
    assert_int_equal(sqlite3_column_int64(st, 1), all[i][1]);
    assert_int_equal(sqlite3_column_int64(st, 2), 7);
    assert_int_equal(sqlite3_column_int64(st, 3), minute + all[i][1] - 1);
  }
  sqlite3_finalize(st);
  assert_int_equal(q(f, "SELECT count(*) FROM slowest WHERE minute = "
                        "60060000000"),
                   TX);
}

static void rollup_rollback_forgets_the_tasks(void **state) {
  fixture *f = *state;
  char *err = NULL;
  assert_int_equal(schema_apply(f->db, &err), SQLITE_OK);
  rollup *r = NULL;
  assert_int_equal(rollup_open(f->db, &r), SQLITE_OK);
  int64_t minute = INT64_C(60000000) * 1000;
  /* Committed. */
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  for (int i = 0; i < 10; i++)
    rollup_add(r, 1, "n", 1, minute + 1, SCHEMA_SUCCEEDED, 5, 1000, 1, 0);
  assert_int_equal(rollup_flush(r), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  /* Flushed, then rolled back. */
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  for (int i = 0; i < 10; i++)
    rollup_add(r, 1, "n", 1, minute + 2, SCHEMA_FAILED, 5, 10, 2, 0);
  assert_int_equal(rollup_flush(r), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL),
                   SQLITE_OK);
  /* Rolled back before the flush. */
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  for (int i = 0; i < 10; i++)
    rollup_add(r, 1, "n", 1, minute + 2, SCHEMA_FAILED, 5, 10, 2, 0);
  rollup_rollback(r);
  assert_int_equal(sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL),
                   SQLITE_OK);
  /* One more task, committed: only it and the first ten count. */
  assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  rollup_add(r, 1, "n", 1, minute + 3, SCHEMA_SUCCEEDED, 5, 1000, 3, 0);
  assert_int_equal(rollup_flush(r), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  rollup_free(r);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups"), 11);
  assert_int_equal(q(f, "SELECT failed FROM rollups"), 0);
  hist_sparse run;
  hist_sparse_init(&run);
  rollup_hist(f, "SELECT run_hist FROM rollups", &run);
  assert_int_equal(run.total, 11);
  assert_near(&run, 10, 1000);
  hist_sparse_fini(&run);
}

/* A minute holds GUARD_ROLLUP_NAMES_PER_MINUTE names at most: later names
 * count under (other), in the minute and its hour, and the names the
 * minute has keep their rows, also for a writer that starts again. */
static void rollup_names_past_the_cap_fold(void **state) {
  fixture *f = *state;
  char *err = NULL, name[16];
  assert_int_equal(schema_apply(f->db, &err), SQLITE_OK);
  int64_t minute = INT64_C(60000000) * 2000;
  for (int run = 0; run < 2; run++) {
    rollup *r = NULL;
    assert_int_equal(rollup_open(f->db, &r), SQLITE_OK);
    assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 300; i++) {
      /* The second run: two names of the minute's rows (which names
       * those are is the order of the flush). */
      snprintf(name, sizeof(name), "n%d", run ? 298 + i % 2 : i);
      rollup_add(r, 1, name, strlen(name), minute + i, SCHEMA_SUCCEEDED, 5,
                 1000, i + 1, 0);
    }
    if (run)
      rollup_add(r, 1, "new", 3, minute, SCHEMA_FAILED, 5, 10, 1000, 0);
    assert_int_equal(rollup_flush(r), SQLITE_OK);
    assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    rollup_free(r);
  }
  assert_int_equal(q(f, "SELECT count(*) FROM rollups"),
                   GUARD_ROLLUP_NAMES_PER_MINUTE + 1);
  assert_int_equal(q(f, "SELECT count(*) FROM rollups_hour"),
                   GUARD_ROLLUP_NAMES_PER_MINUTE + 1);
  assert_int_equal(q(f, "SELECT sum(succeeded) FROM rollups"), 600);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups WHERE name = 'n298'"),
                   151);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups WHERE name = 'n299'"),
                   151);
  assert_int_equal(q(f, "SELECT succeeded FROM rollups WHERE name = '(other)'"),
                   300 - GUARD_ROLLUP_NAMES_PER_MINUTE);
  assert_int_equal(q(f, "SELECT failed FROM rollups WHERE name = '(other)'"),
                   1);
  assert_int_equal(q(f, "SELECT count(*) FROM rollups WHERE name = 'new'"), 0);
}

static void histogram_quantiles(void **state) {
  (void)state;
  hist h;
  hist_init(&h);
  assert_int_equal(hist_quantile(&h, 0.5), 0);
  for (int i = 0; i < 1000; i++)
    hist_add(&h, i);
  hist_add(&h, -5);
  hist_add(&h, INT64_MAX);
  int64_t p50 = hist_quantile(&h, 0.5);
  assert_true(p50 > 470 && p50 < 530);
  assert_int_equal(hist_quantile(&h, 0.0), 0);
  assert_true(hist_quantile(&h, 1.0) > INT64_MAX / 2);
}

/* Opens the store in a child process that records its addresses, says so
 * on a pipe and waits to be killed. Returns its pid. */
static pid_t hold_in_child(const char *path) {
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    store_config cfg = {path, 0, 0, 0, 0, 0, 0, 0};
    store *s = NULL;
    char *err = NULL;
    if (store_open(&cfg, &s, &err) != 0)
      _exit(1);
    const char *urls[] = {"tcp://127.0.0.1:7461", "unix:/tmp/x.sock"};
    if (store_set_listeners(s, urls, 2) != SQLITE_OK ||
        write(ready[1], "y", 1) != 1)
      _exit(1);
    for (;;)
      pause();
  }
  close(ready[1]);
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  return pid;
}

/* One writer per store: while another process holds it, opening fails
 * with the holder's pid and addresses, by any path to the file, and
 * changes nothing; after a kill -9 of the holder it opens. */
static void one_writer_per_store(void **state) {
  fixture *f = *state;
  pid_t holder = hold_in_child(f->path);
  char link[128], want[64];
  snprintf(link, sizeof(link), "%s/link.db", f->dir);
  assert_int_equal(symlink(f->path, link), 0);
  snprintf(want, sizeof(want), "(pid %d, ", (int)holder);
  const char *paths[] = {f->path, link};
  for (int i = 0; i < 2; i++) {
    store_config cfg = {paths[i], 0, 0, 0, 0, 0, 0, 0};
    char *err = NULL;
    store *s = NULL;
    assert_int_equal(store_open(&cfg, &s, &err), -1);
    assert_non_null(strstr(err, "another collector is writing to it"));
    assert_non_null(strstr(err, want));
    assert_non_null(
        strstr(err, "listening on tcp://127.0.0.1:7461 unix:/tmp/x.sock)"));
    assert_null(strchr(err, '\n'));
    free(err);
  }
  assert_int_equal(q(f, "SELECT value FROM meta WHERE key = 'collector_pid'"),
                   holder);
  assert_int_equal(kill(holder, SIGKILL), 0);
  int status;
  assert_int_equal(waitpid(holder, &status, 0), holder);
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "SELECT value FROM meta WHERE key = 'collector_pid'"),
                   getpid());
  assert_int_equal(q(f, "SELECT count(*) FROM meta WHERE key = "
                        "'collector_listen' AND value IS NULL"),
                   1);
}

/* After store_abort() every write fails at once and changes nothing; the
 * store still closes. */
static void aborted_store_writes_nothing(void **state) {
  fixture *f = *state;
  open_store(f, 0, 0, 0);
  store_abort(f->store);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  assert_int_equal(store_write(f->store, b), SQLITE_INTERRUPT);
  assert_int_equal(store_write(f->store, b), SQLITE_INTERRUPT);
  wbatch_free(b);
  assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 0);
  store_stats st;
  store_get_stats(f->store, &st);
  assert_int_equal(st.transactions, 0);
}

/* A store of a later version (they all carry the application_id). */
static void refuses_a_newer_schema(void **state) {
  fixture *f = *state;
  assert_int_equal(sqlite3_exec(f->db,
                                "PRAGMA application_id = 1953985396;"
                                "PRAGMA user_version = 99",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  store_config cfg = {f->path, 0, 0, 0, 0, 0, 0, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), -1);
  assert_non_null(strstr(err, "newer"));
  free(err);
  f->store = NULL;
}

/* The batches a transaction completes go into export_queue with it, in
 * the order and with the numbers the loop gave them, and a batch's LINK
 * sets its traceparent; a version 3 store gets the table and the column
 * when it is opened. */
static void queues_exports_with_the_rows(void **state) {
  fixture *f = *state;
  make_old_store(f, NULL, 3);
  open_upgraded(f);
  wbatch *b = wbatch_new(1);
  add_batch(b, 100, 1000);
  add_task(f, b, 1, 100, 1000, SCHEMA_SUCCEEDED);
  b->export_seq = 41;
  wbatch_add_export(b, 100);
  wbatch_add_export(b, 7);
  link_row *l = wbatch_add_link(b);
  l->batch = 100;
  l->traceparent = arena_copy(&b->mem, (proto_str){"00-ab-cd-01", 11});
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT length(traceparent) FROM batches WHERE "
                        "id = 100"),
                   11);
  assert_int_equal(q(f, "SELECT count(*) FROM export_queue"), 2);
  assert_int_equal(q(f, "SELECT batch FROM export_queue WHERE seq = 41"), 100);
  assert_int_equal(q(f, "SELECT batch FROM export_queue WHERE seq = 42"), 7);
  /* A batch without exports writes none. */
  b = wbatch_new(2);
  add_task(f, b, 2, 100, 2000, SCHEMA_SUCCEEDED);
  write_one(f->store, b);
  assert_int_equal(q(f, "SELECT count(*) FROM export_queue"), 2);
}

/* The bytes of a file, or NULL when it does not exist. */
static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    return NULL;
  fseek(fp, 0, SEEK_END);
  *len = (size_t)ftell(fp);
  rewind(fp);
  char *p = malloc(*len + 1);
  assert_int_equal(fread(p, 1, *len, fp), *len);
  fclose(fp);
  return p;
}

static int exists(const char *path) {
  return access(path, F_OK) == 0;
}

static int identify(sqlite3 *db, const char **why) {
  int identity = -1;
  assert_int_equal(schema_identify(db, &identity, why), SQLITE_OK);
  return identity;
}

/* Files of other applications are refused with one line and left as they
 * were: no table added, no user_version, no application_id, no WAL. */
static void refuses_foreign_databases(void **state) {
  fixture *f = *state;
  static const struct {
    const char *sql, *why;
  } cases[] = {
      {"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
       "INSERT INTO notes (body) VALUES ('keep me')",
       "tables are another"},
      /* A to-do application whose tables share two names with ours. */
      {"CREATE TABLE tasks (id, title); CREATE TABLE meta (key, value);"
       "PRAGMA user_version = 2",
       "tables are another"},
      {"PRAGMA application_id = 1234", "application_id"},
      {"PRAGMA application_id = 1234; CREATE TABLE agents (x)",
       "application_id"},
      {"PRAGMA user_version = 99", "user_version"},
      {"CREATE VIEW v AS SELECT 1", "tables are another"},
  };
  char path[128], side[140];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(path, sizeof(path), "%s/other-%zu.db", f->dir, i);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, cases[i].sql, NULL, NULL, NULL),
                     SQLITE_OK);
    const char *why = NULL;
    assert_int_equal(identify(db, &why), SCHEMA_ID_FOREIGN);
    assert_non_null(strstr(why, cases[i].why));
    assert_null(strchr(why, '\n'));
    sqlite3_close(db);
    size_t len0 = 0, len1 = 0;
    char *before = slurp(path, &len0);
    assert_non_null(before);
    store_config cfg = {path, 0, 0, 0, 0, 0, 0, 0};
    char *err = NULL;
    store *s = NULL;
    assert_int_equal(store_open(&cfg, &s, &err), -1);
    assert_null(s);
    assert_non_null(strstr(err, "not a taskwatch store"));
    assert_non_null(strstr(err, cases[i].why));
    assert_null(strchr(err, '\n'));
    free(err);
    char *after = slurp(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    snprintf(side, sizeof(side), "%s-wal", path);
    assert_false(exists(side));
    snprintf(side, sizeof(side), "%s-shm", path);
    assert_false(exists(side));
    snprintf(side, sizeof(side), "%s-journal", path);
    assert_false(exists(side));
  }
  /* schema_apply() (the benchmarks', the fixtures') refuses them too. */
  sqlite3 *db;
  snprintf(path, sizeof(path), "%s/other-0.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  assert_int_equal(schema_apply(db, &msg), SQLITE_MISMATCH);
  assert_non_null(strstr(msg, "not a taskwatch store"));
  sqlite3_free(msg);
  sqlite3_close(db);
  /* A file that is not a database at all. */
  snprintf(path, sizeof(path), "%s/junk.db", f->dir);
  FILE *fp = fopen(path, "wb");
  for (int i = 0; i < 4096; i++)
    fputc((i * 7919) & 0xff, fp);
  fclose(fp);
  store_config cfg = {path, 0, 0, 0, 0, 0, 0, 0};
  char *err = NULL;
  store *s = NULL;
  assert_int_equal(store_open(&cfg, &s, &err), -1);
  assert_non_null(strstr(err, "not a database"));
  free(err);
}

/* A new file is empty; a store carries the application_id from its
 * creation on. */
static void new_stores_carry_the_application_id(void **state) {
  fixture *f = *state;
  const char *why = NULL;
  assert_int_equal(identify(f->db, &why), SCHEMA_ID_EMPTY);
  open_store(f, 0, 0, 0);
  assert_int_equal(q(f, "PRAGMA application_id"), SCHEMA_APPLICATION_ID);
  assert_int_equal(q(f, "PRAGMA user_version"), SCHEMA_VERSION);
  assert_int_equal(identify(f->db, &why), SCHEMA_ID_TASKWATCH);
  /* Application id 0x74777374: "twst" at offset 68 of the header, once
   * the WAL is checkpointed into the file. */
  store_close(f->store);
  f->store = NULL;
  assert_int_equal(
      sqlite3_exec(f->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
      SQLITE_OK);
  size_t len = 0;
  char *bytes = slurp(f->path, &len);
  assert_true(len >= 72);
  assert_memory_equal(bytes + 68, "twst", 4);
  free(bytes);
  /* A table of the user's own in a store keeps it a store. */
  assert_int_equal(
      sqlite3_exec(f->db, "CREATE TABLE mine (x)", NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_equal(identify(f->db, &why), SCHEMA_ID_TASKWATCH);
}

/* Stores made before the application_id (versions 1 to 3) are known by
 * their tables: accepted, upgraded and marked. */
static void accepts_older_stores_by_their_tables(void **state) {
  fixture *f = *state;
  make_store_at(f, one_task(f), NULL);
  /* Version 3 as it was written until now, then the layout of version 1:
   * no rollups, its two older indexes. */
  static const char *const older[] = {
      "PRAGMA application_id = 0",
      "PRAGMA application_id = 0;"
      "DROP TABLE rollups; DROP INDEX tasks_time; DROP INDEX agents_gone;"
      "CREATE INDEX tasks_enqueued ON tasks (enqueued_at);"
      "CREATE INDEX tasks_name ON tasks (name, enqueued_at);"
      "PRAGMA user_version = 1",
  };
  for (int i = 0; i < 2; i++) {
    assert_int_equal(sqlite3_exec(f->db, older[i], NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(q(f, "PRAGMA application_id"), 0);
    const char *why = NULL;
    assert_int_equal(identify(f->db, &why), SCHEMA_ID_TASKWATCH);
    open_upgraded(f);
    assert_int_equal(q(f, "PRAGMA application_id"), SCHEMA_APPLICATION_ID);
    assert_int_equal(q(f, "SELECT count(*) FROM sqlite_master WHERE name = "
                          "'rollups'"),
                     1);
    assert_int_equal(q(f, "SELECT count(*) FROM tasks"), 1);
    store_close(f->store);
    f->store = NULL;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(stores_events_of_unknown_tasks, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(task_state_only_moves_forward, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(ended_instances_leave_no_open_tasks,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_4_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_6_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_5_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(held_tasks_end_as_written_ones, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(held_tasks_survive_a_crash, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(held_tasks_are_written_when_due, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(tasks_an_agent_held_are_held_the_rest, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(held_log_replays_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(held_log_is_compacted, setup, teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_7_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(failed_transactions_keep_the_held_tasks,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(queues_exports_with_the_rows, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(repeated_ids_anywhere_in_a_bulk_insert,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(writes_rows_and_skips_repeated_ids, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(prunes_by_age_keeping_failures_longer,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(prunes_to_max_tasks, setup, teardown),
      cmocka_unit_test_setup_teardown(prunes_tasks_that_arrive_late, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(prunes_gone_agents, setup, teardown),
      cmocka_unit_test_setup_teardown(rollups_count_and_rank, setup, teardown),
      cmocka_unit_test(histogram_quantiles),
      cmocka_unit_test_setup_teardown(rollup_keeps_each_minutes_slowest, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(rollup_rollback_forgets_the_tasks, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(rollup_names_past_the_cap_fold, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(rollups_merge_across_restarts, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(rollup_fill_agrees_with_the_writer, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bulk_and_row_inserts_agree, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(checkpoints_while_writing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_2_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_version_3_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(refuses_a_newer_schema, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_foreign_databases, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(one_writer_per_store, setup, teardown),
      cmocka_unit_test_setup_teardown(aborted_store_writes_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(new_stores_carry_the_application_id,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(accepts_older_stores_by_their_tables,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
