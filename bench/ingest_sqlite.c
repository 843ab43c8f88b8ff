/*
 * ingest_sqlite - SQLite's own limit for bench/ingest: a plain loop of
 * prepared INSERTs in batched transactions into the same schema (with the
 * production indexes) and the same pragmas as the collector, writing the
 * rows a demo batch produces (one batches row, three tasks rows). The ratio
 * of the collector's figure to this one shows how close it gets.
 *
 * usage: ingest_sqlite DB BATCHES
 * Prints key: value lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "schema.h"

#define PER_TRANSACTION 20000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ingest_sqlite DB BATCHES\n");
    return 2;
  }
  long batches = strtol(argv[2], NULL, 10);
  sqlite3 *db;
  char *err = NULL;
  /* The collector's settings: its page size, no allocation statistics. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  const char *pragma = "PRAGMA page_size=" SCHEMA_PAGE_SIZE;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK ||
      sqlite3_exec(db, pragma, NULL, NULL, &err) != SQLITE_OK ||
      sqlite3_exec(db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                   "PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; "
                   "PRAGMA wal_autocheckpoint=8192",
                   NULL, NULL, &err) != SQLITE_OK ||
      schema_apply(db, &err) != SQLITE_OK) {
    fprintf(stderr, "ingest_sqlite: %s\n", err ? err : sqlite3_errmsg(db));
    return 1;
  }
  sqlite3_stmt *task, *batch;
  sqlite3_prepare_v2(db,
                     "INSERT INTO tasks (id, agent, batch, position, name, "
                     "mode, status, thread, enqueued_at, started_at, "
                     "finished_at, wait_us, run_us) VALUES (?1, 1, ?2, ?3, "
                     "?4, 1, 2, 2, ?5, ?6, ?7, ?8, ?9)",
                     -1, &task, NULL);
  sqlite3_prepare_v2(db,
                     "INSERT INTO batches (id, agent, label, created_at) "
                     "VALUES (?1, 1, 'POST /send-notification/{email}', ?2)",
                     -1, &batch, NULL);
  static const char *names[] = {"write_notification", "send_email",
                                "write_log"};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t t = (int64_t)ts.tv_sec * 1000000;
  double t0 = now_s();
  long rows = 0;
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  for (long n = 1; n <= batches; n++, t++) {
    int64_t bid = ((int64_t)1 << 40) | n;
    sqlite3_bind_int64(batch, 1, bid);
    sqlite3_bind_int64(batch, 2, t);
    sqlite3_step(batch);
    sqlite3_reset(batch);
    for (int p = 0; p < 3; p++) {
      sqlite3_bind_int64(task, 1, ((int64_t)1 << 40) | (n * 3 + p));
      sqlite3_bind_int64(task, 2, bid);
      sqlite3_bind_int(task, 3, p);
      sqlite3_bind_text(task, 4, names[p], -1, SQLITE_STATIC);
      sqlite3_bind_int64(task, 5, t);
      sqlite3_bind_int64(task, 6, t + 1);
      sqlite3_bind_int64(task, 7, t + 2);
      sqlite3_bind_int64(task, 8, 1);
      sqlite3_bind_int64(task, 9, 1);
      sqlite3_step(task);
      sqlite3_reset(task);
    }
    rows += 4;
    if (rows >= PER_TRANSACTION) {
      sqlite3_exec(db, "COMMIT; BEGIN", NULL, NULL, NULL);
      rows = 0;
    }
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  double secs = now_s() - t0;
  /* A demo batch is 10 events: BATCH, and ENQUEUE, START, FINISH x 3. */
  printf("sqlite_tasks_per_s: %.0f\n", (double)batches * 3 / secs);
  printf("sqlite_events_per_s: %.0f\n", (double)batches * 10 / secs);
  sqlite3_finalize(task);
  sqlite3_finalize(batch);
  sqlite3_close(db);
  return 0;
}
