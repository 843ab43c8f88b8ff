/*
 * reader - the read side of the store (docs/schema.md), for every tool that
 * reads what the collector writes: `taskwatch top`, `taskwatch query` and
 * the exporters. It owns opening a store read-only (with one message per
 * way that can fail, the same in every tool), the version policy
 * (SCHEMA_READ_MIN..SCHEMA_VERSION), the busy timeout, the task row as read
 * (one column list, one join, one struct) and change detection.
 *
 * A reader is one SQLite connection: use it from one thread at a time.
 */
#ifndef TW_READER_H
#define TW_READER_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/*
 * How long a statement waits for a lock before it fails. The collector
 * writes in WAL mode, so readers wait only in rare moments (recovery after a
 * crash, a change of journal mode); 10 s covers the recovery of a large WAL
 * rather than failing a query, and the dashboard waits as long only when
 * there is nothing it could show.
 */
#define READER_BUSY_TIMEOUT_MS 10000

/* The ways opening a store fails: X(NAME, what). */
#define READER_ERRNO_MAP(X)                                                    \
  X(MISSING, "no such file")                                                   \
  X(UNREADABLE, "cannot be read")                                              \
  X(NOT_SQLITE, "not an SQLite database")                                      \
  X(FOREIGN, "not a taskwatch store")                                          \
  X(TOO_OLD, "store schema too old")                                           \
  X(TOO_NEW, "store schema too new")

/* Negative codes, as TW_E…: READER_EMISSING is -1, and so on. */
#define READER_ERRNO_INDEX(name, what) READER_INDEX_##name,
enum reader_error_index {
  READER_ERRNO_MAP(READER_ERRNO_INDEX) READER_ERRNO_COUNT
};
#undef READER_ERRNO_INDEX
#define READER_ERRNO_ENUM(name, what) READER_E##name = -1 - READER_INDEX_##name,
enum reader_error { READER_OK = 0, READER_ERRNO_MAP(READER_ERRNO_ENUM) };
#undef READER_ERRNO_ENUM

/* What a READER_E… code means, in a few words; "unknown error" else. */
const char *reader_strerror(int code);

typedef struct reader reader;

/*
 * Gives SQLite the page cache of a read-only tool, before anything else in
 * the process uses SQLite (sqlite3_config() refuses it afterwards; the
 * process then keeps SQLite's own cache). Readers opened afterwards cache
 * up to 8 MiB of pages (128 of a 64 KiB store, 512 of a 16 KiB one), in
 * one region asked for as transparent huge pages: on a virtual machine
 * each 4 KiB page a process first touches costs a fault of about 12 µs,
 * so malloc's fresh pages cost more than the reads they save
 * (docs/schema.md, "Opening the store"). The slots are of that file's page
 * size (without a path, SCHEMA_PAGE_SIZE's), and only of 16 KiB or more: a
 * store made with 4 KiB pages keeps SQLite's cache of 2 MB. Returns 0
 * (also when called again for a file of the same page size), or -1 when
 * SQLite keeps its own or the region's slots are of another size. For `taskwatch query`,
 * a process per question. `taskwatch top` and the collector keep SQLite's
 * cache: a dashboard pays its faults once, and its frames read about 60
 * rows; with this cache its heaviest frame took 2-3 ms more (100 M tasks,
 * batches_failures_only: 15 against 12.8 ms p95).
 */
int reader_page_cache_init(const char *path);

/*
 * Opens the store at path read-only and checks that it is a taskwatch
 * store this version reads (reader_check_store()). Returns 0 and *out, or a
 * negative READER_E… code with a one-line reason naming path in err (the
 * text every tool prints after its own "taskwatch NAME: "). path is copied.
 */
int reader_open(const char *path, reader **out, char *err, size_t errlen);
/* What a tool adds to the reason when the store it was not told of
 * (no --db: schema_default_db()) is missing. */
#define READER_DEFAULT_MISSING_HINT                                            \
  " (no --db given: give one, set TASKWATCH_DB, or start taskwatch "           \
  "collector here, which writes taskwatch.db)"
/* Closes the connection; NULL is ignored. */
void reader_close(reader *r);
/* The connection, for statements of the caller's own; owned by r. */
sqlite3 *reader_db(const reader *r);

/*
 * The identity and version check of an open database: refuses a file that
 * is not SQLite, an SQLite database that is not a taskwatch store, and a
 * schema version outside SCHEMA_READ_MIN..SCHEMA_VERSION. Returns 0 or a
 * READER_E… code with the reason in err, as reader_open().
 */
int reader_check_store(sqlite3 *db, const char *path, char *err, size_t errlen);

/*
 * 1 when another connection committed since the previous call, else 0; the
 * first call returns 1. It asks PRAGMA data_version, which in WAL mode
 * compares the WAL index in shared memory: no page is read, so polling it
 * a few times a second costs next to nothing. An error counts as a change
 * (the caller's next read reports it).
 */
int reader_changed(reader *r);

/*
 * An SQL expression over agents (unqualified columns) for when the
 * collector last received an event of the agent, on the collector's clock
 * (microseconds since the epoch; NULL when none): the freshness a
 * dashboard shows ("last event 3s ago", STALE), which an agent's clock
 * running ahead or behind must not move. On rows written before stores
 * had agents.last_received_at, the agent's own newest event time.
 */
const char *reader_agent_seen_sql(const reader *r);

/*
 * SQL expressions over agents (unqualified columns) for the batches and
 * the tasks the agent refused whole because its buffer was full (HEALTH
 * of protocol version 3): the columns, or "0" on a store of a version
 * before 6, which has none.
 */
const char *reader_agent_dropped_batches_sql(const reader *r);
const char *reader_agent_dropped_tasks_sql(const reader *r);

/* ---- the task row ------------------------------------------------------ */

/* An integer column that was NULL. */
#define READER_NULL INT64_MIN

/* Text from the store: any bytes, NULs included; ptr is NULL for SQL NULL,
 * else NUL-terminated after len bytes. */
typedef struct reader_text {
  const char *ptr;
  size_t len;
} reader_text;

/*
 * One task as read, with its batch's label and its agent's service, host
 * and pid. Numbers that may be NULL are READER_NULL then. As read by
 * reader_task_read() the texts point into SQLite's row and last until the
 * statement steps again; reader_task_copy() makes a row that owns them.
 */
typedef struct reader_task {
  int64_t id, batch, agent, thread, pid;
  int64_t enqueued_at, started_at, finished_at, wait_us, run_us;
  int64_t skipped_after;
  int position, status, mode;
  reader_text name, label, service, host;
  reader_text error_type, error_message, error_detail, drop_reason;
  void *owned; /* the copy's text, or NULL */
} reader_task;

/*
 * The columns of a task row, in the order reader_task_read() reads them,
 * and the one join they come from: tasks `t`, agents `a`, batches `b` (the
 * names the filter language's SQL uses). Left joins keep tasks the outer
 * loop, so ORDER BY t.enqueued_at walks the tasks_time index and stops at
 * LIMIT, and let SQLite leave out a table that no column or term names.
 * Every task has its agent and batch rows (the collector writes them
 * first, and retention removes them last).
 */
#define READER_TASK_COLUMNS                                                    \
  "t.id, t.batch, t.agent, t.thread, a.pid, t.enqueued_at, t.started_at, "     \
  "t.finished_at, t.wait_us, t.run_us, t.skipped_after, t.position, "          \
  "t.status, t.mode, t.name, b.label, a.service, a.host, t.error_type, "       \
  "t.error_message, t.error_detail, t.drop_reason"
#define READER_TASK_NCOLUMNS 22
/* 1-based positions of t.id and t.enqueued_at in READER_TASK_COLUMNS, for
 * the ORDER BY of a compound SELECT (which names result columns). */
#define READER_TASK_ID_POSITION "1"
#define READER_TASK_ENQUEUED_POSITION "6"
/* The joins that give READER_TASK_COLUMNS the task's agent (a) and batch
 * (b); a listing that reads its page by id after a covering scan
 * (query/query.c) joins them to its tasks the same way. */
#define READER_TASK_JOINS                                                      \
  " LEFT JOIN agents a ON a.id = t.agent LEFT JOIN batches b ON b.id = t.batch"
#define READER_TASK_FROM " FROM tasks t" READER_TASK_JOINS
/* The same for a statement that reads no column of agents or batches
 * (filter_uses() without FILTER_USES_JOIN): SQLite keeps a LEFT JOIN in an
 * aggregate even when nothing reads it, and would look up both rows of
 * every task. */
#define READER_TASK_ALONE_FROM " FROM tasks t"

/* Fills *t from the current row of st, from column `first` on. */
void reader_task_read(sqlite3_stmt *st, int first, reader_task *t);
/* Makes *dst a copy of src that owns its text (one allocation; aborts when
 * memory runs out). Free with reader_task_fini(). */
void reader_task_copy(reader_task *dst, const reader_task *src);
/* Frees a copy's text and zeroes *t; a row as read has nothing to free. */
void reader_task_fini(reader_task *t);

#endif /* TW_READER_H */
