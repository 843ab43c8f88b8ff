/*
 * schema - the SQLite store's layout (docs/schema.md): the DDL, its version,
 * and the numeric codes of task states shared by every reader and writer.
 */
#ifndef TW_SCHEMA_H
#define TW_SCHEMA_H

#include <sqlite3.h>
#include <stdint.h>

#define SCHEMA_VERSION 8
/* The oldest version the readers (top, query) read: version 4 made the
 * rollups the source of their statistics; version 5 added the agents
 * columns of instance ownership, which readers do not name, and
 * agents.last_received_at, which readers ask for through
 * reader_agent_seen_sql() (common/reader.h); version 6 added
 * agents.dropped_batches and dropped_tasks, which readers ask for through
 * reader_agent_dropped_batches_sql() and reader_agent_dropped_tasks_sql(),
 * and the table inflight, which only `query --follow` reads; version 7
 * added the table slowest, which `top` reads when the store has it;
 * version 8 made the table inflight a log of blobs (common/held.h), which
 * `query --follow` reads whatever their number. */
#define SCHEMA_READ_MIN 4

/* PRAGMA application_id of a taskwatch store: 0x74777374, "twst" in
 * ASCII at offset 68 of the file (docs/schema.md). A decimal literal,
 * because the PRAGMA text is built from it. */
#define SCHEMA_APPLICATION_ID 1953985396

/* Page size of a new store (docs/schema.md, "Page size"). A transaction
 * writes each page it dirtied whole, whatever it changed of it, and a
 * server's transaction dirties about nine pages whatever its rows: at
 * 16 KiB instead of 64 the collector writes a quarter of the bytes per
 * event at low rates and spends about an eighth less CPU with many
 * agents, and about 8 % more at its peak rate with a few. An existing
 * store keeps the page size it was created with. */
#define SCHEMA_PAGE_SIZE "16384" /* SQL text: PRAGMA values cannot be bound */

/* Store-wide ids: the agent's row id in the high bits, the agent's own id
 * of the task or batch in the low SCHEMA_LOCAL_BITS bits. */
#define SCHEMA_LOCAL_BITS 40
#define SCHEMA_LOCAL_MASK ((UINT64_C(1) << SCHEMA_LOCAL_BITS) - 1)
static inline int64_t schema_global_id(int64_t agent, uint64_t local) {
  return (int64_t)(((uint64_t)agent << SCHEMA_LOCAL_BITS) |
                   (local & SCHEMA_LOCAL_MASK));
}

/*
 * Task states. The one table of them: the enum, the names (what users type
 * and read) and the SQL fragments below all come from it. The code of each
 * state is what tasks.status stores, so a code never changes once a store
 * may hold it. X(STATE, name), in code order.
 */
#define SCHEMA_CODE_QUEUED 0
#define SCHEMA_CODE_RUNNING 1
#define SCHEMA_CODE_SUCCEEDED 2
#define SCHEMA_CODE_FAILED 3
#define SCHEMA_CODE_SKIPPED 4
#define SCHEMA_CODE_DROPPED 5
#define SCHEMA_CODE_LOST 6
#define SCHEMA_STATUS_MAP(X)                                                   \
  X(QUEUED, "queued")                                                          \
  X(RUNNING, "running")                                                        \
  X(SUCCEEDED, "succeeded")                                                    \
  X(FAILED, "failed")                                                          \
  X(SKIPPED, "skipped")                                                        \
  X(DROPPED, "dropped")                                                        \
  X(LOST, "lost")

#define SCHEMA_STATUS_ENUM(state, name) SCHEMA_##state = SCHEMA_CODE_##state,
enum schema_status {
  SCHEMA_STATUS_MAP(SCHEMA_STATUS_ENUM) SCHEMA_STATUS_COUNT
};
#undef SCHEMA_STATUS_ENUM

/*
 * SQL fragments over tasks.status, text to join into a statement at compile
 * time, so no status code is written in SQL anywhere else. They name the
 * column `status` unqualified: tasks is the only table that has one, so
 * the name holds in every join of tasks. SQLite uses the partial index
 * tasks_unusual only when a query states the index's own term,
 * SCHEMA_SQL_UNUSUAL, literally (docs/schema.md), so every set without
 * "succeeded" starts with it.
 */
#define SCHEMA_SQL_TEXT_(x) #x
#define SCHEMA_SQL_TEXT(x) SCHEMA_SQL_TEXT_(x)
/* The code of one state as SQL text: SCHEMA_SQL_CODE(FAILED) is "3". */
#define SCHEMA_SQL_CODE(state) SCHEMA_SQL_TEXT(SCHEMA_CODE_##state)
/* Not succeeded: the condition of the partial index tasks_unusual. */
#define SCHEMA_SQL_UNUSUAL "status <> " SCHEMA_SQL_CODE(SUCCEEDED)
/* Queued or running: not final yet. */
#define SCHEMA_SQL_ACTIVE                                                      \
  SCHEMA_SQL_UNUSUAL " AND status IN (" SCHEMA_SQL_CODE(                       \
      QUEUED) ", " SCHEMA_SQL_CODE(RUNNING) ")"
/* Failed. */
#define SCHEMA_SQL_FAILED                                                      \
  SCHEMA_SQL_UNUSUAL " AND status = " SCHEMA_SQL_CODE(FAILED)
/* Failed or skipped: what the dashboard counts per task name. */
#define SCHEMA_SQL_FAILED_OR_SKIPPED                                           \
  SCHEMA_SQL_UNUSUAL " AND status IN (" SCHEMA_SQL_CODE(                       \
      FAILED) ", " SCHEMA_SQL_CODE(SKIPPED) ")"
/* Every state but succeeded, one by one: an IN list lets SQLite look up
 * each state in tasks_unusual (status, enqueued_at) with a time range. */
#define SCHEMA_SQL_UNUSUAL_EACH                                                                                              \
  SCHEMA_SQL_UNUSUAL                                                                                                         \
  " AND status IN (" SCHEMA_SQL_CODE(QUEUED) ", " SCHEMA_SQL_CODE(                                                           \
      RUNNING) ", " SCHEMA_SQL_CODE(FAILED) ", " SCHEMA_SQL_CODE(SKIPPED) ","                                                \
                                                                          " " SCHEMA_SQL_CODE(DROPPED) ", " SCHEMA_SQL_CODE( \
                                                                              LOST) ")"
/* A final state: succeeded and every state after it in the table. */
#define SCHEMA_SQL_FINAL "status >= " SCHEMA_SQL_CODE(SUCCEEDED)
/* Queued, running or succeeded: what retention prunes by age alone. */
#define SCHEMA_SQL_NOT_UNHAPPY                                                 \
  "status IN (" SCHEMA_SQL_CODE(QUEUED) ", " SCHEMA_SQL_CODE(                  \
      RUNNING) ", " SCHEMA_SQL_CODE(SUCCEEDED) ")"
/* Succeeded, worded so that SQLite does not take it for an index term
 * (unary +): for scans that must walk another index in order. */
#define SCHEMA_SQL_SUCCEEDED_NO_INDEX "+status = " SCHEMA_SQL_CODE(SUCCEEDED)
/* The name of a task stored from events whose ENQUEUE the store has not
 * seen (batch 0 too), until that ENQUEUE arrives (docs/schema.md). */
#define SCHEMA_ORPHAN_NAME "(enqueue not received)"
/* The name a folded name or label reads, in tasks and in the rollups
 * (collector/guard.h, GUARD_OTHER_NAME). */
#define SCHEMA_OTHER_NAME "(other)"

/* The assignment that marks a task lost. */
#define SCHEMA_SQL_SET_LOST "status = " SCHEMA_SQL_CODE(LOST)

/*
 * The columns of the two indexes that lists and statistics read instead of
 * the table (docs/schema.md): tasks_time leads with (enqueued_at, id), the
 * order of every listing, and holds what filters and statistics read of a
 * task in a time range; tasks_unusual, over the tasks that did not
 * succeed, holds every column of a task, so listing failures reads no
 * table page.
 */
#define SCHEMA_TIME_COLUMNS                                                    \
  "enqueued_at, id, name, status, wait_us, run_us, agent, batch"
#define SCHEMA_UNUSUAL_COLUMNS                                                 \
  "status, enqueued_at, id, agent, batch, thread, started_at, finished_at, "   \
  "wait_us, run_us, skipped_after, position, mode, name, error_type, "         \
  "error_message, error_detail, drop_reason"

/*
 * The table slowest (version 7): the SCHEMA_SLOWEST_PER_MINUTE slowest
 * tasks that ran of each minute of enqueue time, by (run_us, id), kept by
 * the collector with the rollups (docs/schema.md). A reader finds the
 * slowest tasks of a window as the slowest of each minute, merged, instead
 * of sorting every task of the window; a minute holding that many rows may
 * have faster tasks that are not in it.
 */
#define SCHEMA_SLOWEST_PER_MINUTE 128
#define SCHEMA_SLOWEST_MINUTE_US INT64_C(60000000)

/*
 * How bad each state is, for lists ordered "worst first" (the dashboard's
 * sort by status): X(STATE, severity), highest first. The SQL expression
 * and schema_status_severity() both come from this table.
 */
#define SCHEMA_SEVERITY_MAP(X)                                                 \
  X(FAILED, 6)                                                                 \
  X(LOST, 5)                                                                   \
  X(DROPPED, 4)                                                                \
  X(SKIPPED, 3)                                                                \
  X(RUNNING, 2)                                                                \
  X(QUEUED, 1)                                                                 \
  X(SUCCEEDED, 0)
#define SCHEMA_SQL_SEVERITY_WHEN(state, severity)                              \
  " WHEN " SCHEMA_SQL_CODE(state) " THEN " #severity
/* The severity of `status` as an SQL expression. */
#define SCHEMA_SQL_SEVERITY                                                    \
  "(CASE status" SCHEMA_SEVERITY_MAP(SCHEMA_SQL_SEVERITY_WHEN) " ELSE 0 END)"
/* The severity of a state code; 0 for an out-of-range value. */
int schema_status_severity(int status);

/* "queued", "running", ...; NULL for an out-of-range value. */
const char *schema_status_name(int status);
/* The code for a state name, or -1. */
int schema_status_code(const char *name);
/* "loop" or "threadpool"; NULL for an out-of-range value. */
const char *schema_mode_name(int mode);

/* meta key: rollups of minutes before this time (µs) hold counts only,
 * carried over from a store of version 3 or older whose raw rows of those
 * minutes were pruned before the upgrade. */
#define SCHEMA_META_COUNTS_ONLY_BEFORE "rollups_counts_only_before"

/*
 * Fills what a new version derives from an older store's rows, inside the
 * upgrade's transaction, after the new tables and indexes exist: `from` is
 * the store's version before. Called for stores older than version 7:
 * the rollups for those older than 4 (later versions keep theirs), the
 * table slowest for all of them. Returns an SQLite result
 * code, with a message in *err (sqlite3_free() it). The collector's is
 * rollup_upgrade().
 */
typedef int (*schema_upgrade_fn)(sqlite3 *db, int from, void *arg, char **err);

/* The store's path when a command is given no --db: TASKWATCH_DB when it
 * is set and not empty, else SCHEMA_DEFAULT_DB in the current directory,
 * the same for the collector that writes it and top and query that read
 * it. Points into the environment or static storage. */
#define SCHEMA_DEFAULT_DB "taskwatch.db"
const char *schema_default_db(void);

/* What a database is to taskwatch (schema_identify()). */
enum schema_identity {
  SCHEMA_ID_EMPTY = 0,     /* nothing in it yet: a new store can be made */
  SCHEMA_ID_TASKWATCH = 1, /* a taskwatch store, of any version */
  SCHEMA_ID_FOREIGN = 2    /* a database of another application */
};

/*
 * Tells what db is by reading it only: nothing is written and the journal
 * mode is left alone, so a database that is not a store stays as it was.
 * Sets *identity to
 *   SCHEMA_ID_TASKWATCH when its application_id is SCHEMA_APPLICATION_ID,
 *     or 0 in a store made before stores carried one, recognised by its
 *     tables (agents, strings, batches, tasks and meta all present; others
 *     may be added) and a user_version of 1 or more;
 *   SCHEMA_ID_EMPTY when it has no table, index, view or trigger and its
 *     application_id and user_version are 0 (a new or 0-byte file);
 *   SCHEMA_ID_FOREIGN otherwise (another application_id, tables that are
 *     not a store's, a user_version without tables), with a static
 *     one-line *why ("its application_id is another application's", ...).
 * The version policy stays the caller's (schema_apply() for the collector,
 * SCHEMA_READ_MIN for readers). Returns SQLITE_OK, or the SQLite error
 * code of a database that cannot be read (SQLITE_NOTADB for a file that
 * is not one, SQLITE_BUSY, ...; sqlite3_errmsg(db) has the text). Works
 * on read-only connections; thread-safety is the connection's.
 */
int schema_identify(sqlite3 *db, int *identity, const char **why);

/*
 * schema_identify() for a writer about to change db: SQLITE_OK for a
 * taskwatch store or an empty database; SQLITE_MISMATCH with "not a
 * taskwatch store (<why>); left unchanged" in *err (sqlite3_free() it) for
 * a database of another application; or the SQLite error, its message in
 * *err.
 */
int schema_check_ours(sqlite3 *db, char **err);

/*
 * Creates the tables and indexes when the database is new, upgrades an
 * older version in one transaction (version 3 replaced the indexes
 * tasks_enqueued and tasks_name with tasks_time; version 4 added the table
 * export_queue and the column batches.traceparent, replaced the rollups,
 * which `fill` fills from the raw rows, and made tasks_time and
 * tasks_unusual covering; version 5 added the agents columns of instance
 * ownership and agents.last_received_at; version 6 the table inflight
 * and the agents' drop counts; version 7 the table slowest, which `fill`
 * fills from the raw rows; version 8 made the table inflight a log, whose
 * version 7 row, one blob of format 1, reads as its first entry),
 * checks the version when it is
 * not, and marks the store with SCHEMA_APPLICATION_ID (stores of earlier
 * versions get it here). Returns SQLITE_OK, or an SQLite error code with a
 * message in *err (sqlite3_free() it) - a database that is not a taskwatch
 * store (schema_identify()) or one of a newer schema version is
 * SQLITE_MISMATCH, and is left unchanged; an older one without `fill`
 * SQLITE_MISUSE.
 */
int schema_apply_upgrade(sqlite3 *db, schema_upgrade_fn fill, void *arg,
                         char **err);
/* schema_apply_upgrade() without `fill`: new stores (tools, tests). */
int schema_apply(sqlite3 *db, char **err);

/* The statements that create and drop the indexes of tasks, for tools
 * that fill a store in bulk and index it afterwards (the benchmarks). */
const char *schema_index_sql(void);
const char *schema_drop_index_sql(void);

#endif /* TW_SCHEMA_H */
