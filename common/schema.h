/*
 * schema - the SQLite store's layout (docs/schema.md): the DDL, its version,
 * and the numeric codes of task states shared by every reader and writer.
 */
#ifndef TW_SCHEMA_H
#define TW_SCHEMA_H

#include <sqlite3.h>
#include <stdint.h>

#define SCHEMA_VERSION 3
/* The oldest version the readers (top, query) read: version 3 changed
 * only indexes, which they do not name. */
#define SCHEMA_READ_MIN 2

/* PRAGMA application_id of a taskwatch store: 0x74777374, "twst" in
 * ASCII at offset 68 of the file (docs/schema.md). A decimal literal,
 * because the PRAGMA text is built from it. */
#define SCHEMA_APPLICATION_ID 1953985396

/* Page size of a new store. Large pages make the indexes shallow: the
 * collector's inserts descend fewer levels (about 1.3x the rows per second
 * of 16 KiB pages, bench/ingest), and time-ordered scans read fewer pages.
 * An existing store keeps the page size it was created with. */
#define SCHEMA_PAGE_SIZE "65536" /* SQL text: PRAGMA values cannot be bound */

/* Store-wide ids: the agent's row id in the high bits, the agent's own id
 * of the task or batch in the low SCHEMA_LOCAL_BITS bits. */
#define SCHEMA_LOCAL_BITS 40
#define SCHEMA_LOCAL_MASK ((UINT64_C(1) << SCHEMA_LOCAL_BITS) - 1)
static inline int64_t schema_global_id(int64_t agent, uint64_t local) {
  return (int64_t)(((uint64_t)agent << SCHEMA_LOCAL_BITS) |
                   (local & SCHEMA_LOCAL_MASK));
}

/* Task states, stored as integers in tasks.status. */
enum schema_status {
  SCHEMA_QUEUED = 0,
  SCHEMA_RUNNING = 1,
  SCHEMA_SUCCEEDED = 2,
  SCHEMA_FAILED = 3,
  SCHEMA_SKIPPED = 4,
  SCHEMA_DROPPED = 5,
  SCHEMA_LOST = 6,
  SCHEMA_STATUS_COUNT = 7
};

/* "queued", "running", ...; NULL for an out-of-range value. */
const char *schema_status_name(int status);
/* The code for a state name, or -1. */
int schema_status_code(const char *name);
/* "loop" or "threadpool"; NULL for an out-of-range value. */
const char *schema_mode_name(int mode);

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
 * older version (version 3 replaced the indexes tasks_enqueued and
 * tasks_name with tasks_time, rebuilt on the first open), checks the
 * version when it is not, and marks the store with SCHEMA_APPLICATION_ID
 * (stores of earlier versions get it here). Returns SQLITE_OK, or an
 * SQLite error code with a message in *err (sqlite3_free() it) - a
 * database that is not a taskwatch store (schema_identify()) or one of a
 * newer schema version is SQLITE_MISMATCH, and is left unchanged.
 */
int schema_apply(sqlite3 *db, char **err);

/* The statements that create and drop the indexes of tasks, for tools
 * that fill a store in bulk and index it afterwards (the benchmarks). */
const char *schema_index_sql(void);
const char *schema_drop_index_sql(void);

#endif /* TW_SCHEMA_H */
