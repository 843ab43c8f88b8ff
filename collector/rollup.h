/*
 * rollup - per-minute and per-hour summaries of finished tasks, per service
 * and task name (tables rollups and rollups_hour, docs/schema.md): counts
 * by final state and mergeable histograms of queue wait and run time
 * (common/hist). A task counts in the minute and the hour of its
 * enqueued_at, the time every filter and retention go by, so a reader adds
 * whole minutes from here and the rest from raw rows.
 *
 * The writer adds each task once, when its row reaches a final state in
 * the transaction being written, and flushes before COMMIT: the deltas are
 * merged into the stored rows (counts added, histograms merged by SQL
 * function taskwatch_hist_merge), so rows written by several collector
 * runs, or by one run in several transactions, add up, and what the store
 * holds always agrees with its committed task rows.
 *
 * Used by one thread at a time, on the connection it was opened with.
 */
#ifndef TW_COLLECTOR_ROLLUP_H
#define TW_COLLECTOR_ROLLUP_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define ROLLUP_MINUTE_US INT64_C(60000000)
#define ROLLUP_HOUR_US INT64_C(3600000000)
/* A wait or run time the task's row does not hold. */
#define ROLLUP_NONE INT64_MIN

typedef struct rollup rollup;

/* Prepares the statements on db (schema current) and registers the merge
 * function. Returns SQLITE_OK and *out, or an SQLite error code. */
int rollup_open(sqlite3 *db, rollup **out);
void rollup_free(rollup *r);

/* Counts one task of agent (its id and batch) that reached a final state,
 * with the wait and run times its row holds (ROLLUP_NONE for NULL;
 * negative ones count as 0); a task with a run time of 0 or more is also
 * a candidate for its minute's slowest (schema.h). */
void rollup_add(rollup *r, int64_t agent, const char *name, size_t len,
                int64_t enqueued_at, int status, int64_t wait_us,
                int64_t run_us, int64_t id, int64_t batch);

/* Writes what was added since the last flush into the caller's open
 * transaction, and forgets it (also when it fails: the caller rolls back
 * and adds the same tasks again). Returns an SQLite result code. */
int rollup_flush(rollup *r);

/* The transaction rolled back before rollup_flush(): forgets what was
 * added since the last flush. */
void rollup_rollback(rollup *r);

/*
 * Adds every task in a final state enqueued at or after `from` to the
 * rollups, reading the tasks table, inside the caller's transaction: the
 * upgrade of a store from before version 4, and tools that fill a store in
 * bulk. Returns an SQLite result code.
 */
int rollup_fill(rollup *r, int64_t from);

/* Empties the rollups (and slowest) and fills them from the raw rows, in a transaction
 * of its own: for tools that write task rows themselves (benchmarks, test
 * fixtures). Returns an SQLite result code. */
int rollup_rebuild(sqlite3 *db);

/*
 * The upgrade of a store of version `from` (1 to 5), inside the upgrade's
 * transaction (schema_upgrade_fn): from 1 to 3, fills the rollups from the
 * raw rows, and carries over the counts of the old per-minute rollups
 * (table rollups_v3) of the minutes whose raw rows were pruned, then drops
 * that table; from every one, fills the table slowest (version 6) from
 * the raw rows. Returns an SQLite result code, with a message in *err
 * (sqlite3_free() it).
 */
int rollup_upgrade(sqlite3 *db, int from, void *arg, char **err);

#endif /* TW_COLLECTOR_ROLLUP_H */
