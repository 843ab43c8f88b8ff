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

/*
 * Creates the tables and indexes when the database is new, upgrades an
 * older version (version 3 replaced the indexes tasks_enqueued and
 * tasks_name with tasks_time, rebuilt on the first open), checks the
 * version when it is not. Returns SQLITE_OK, or an SQLite error code with
 * a message in *err (sqlite3_free() it) - a database of a newer schema
 * version is SQLITE_MISMATCH.
 */
int schema_apply(sqlite3 *db, char **err);

/* The statements that create and drop the indexes of tasks, for tools
 * that fill a store in bulk and index it afterwards (the benchmarks). */
const char *schema_index_sql(void);
const char *schema_drop_index_sql(void);

#endif /* TW_SCHEMA_H */
