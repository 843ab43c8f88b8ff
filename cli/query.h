/*
 * query - internals of `taskwatch query` shared by its modules: the options
 * after parsing, the task row as read from the store, the output writers
 * (query_out.c), stats (query_stats.c), show/batch (query_show.c) and
 * follow (query_follow.c).
 */
#ifndef TW_QUERY_H
#define TW_QUERY_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "filter.h"

enum query_format { QUERY_TABLE, QUERY_JSON, QUERY_CSV };

typedef struct query_opts {
  const char *db_path;
  enum query_format format;
  int local;
  const char *sort_column; /* SQL column chosen from a fixed list */
  int reverse;
  int64_t limit; /* -1: none */
  int follow;
  int64_t interval_us;
  int fail_if_empty;
  int fail_if_any;
  const char *by; /* stats: name, service, batch_label or NULL */
  filter *filter;
  int64_t now_us;
  const char *target; /* show/batch: the id as typed */
} query_opts;

/* One task as read from the store. Strings point into SQLite's row
 * memory and stay valid until the statement steps again; a NULL column is
 * a NULL pointer (strings) or has_* == 0 (numbers). */
typedef struct query_task {
  int64_t id, batch, position, pid, thread;
  int status, mode;
  const char *batch_label, *name, *service, *host;
  const char *error_type, *error_message, *error_detail, *drop_reason;
  int batch_label_len, name_len, service_len, host_len;
  int error_type_len, error_message_len, error_detail_len, drop_reason_len;
  int64_t enqueued_at, started_at, finished_at, wait_us, run_us, skipped_after;
  int has_thread, has_started, has_finished, has_wait, has_run,
      has_skipped_after;
} query_task;

/* The column list and joins every task query starts with; the columns are
 * in the order query_task_read() expects. */
#define QUERY_TASK_COLUMNS                                                     \
  "t.id, t.batch, b.label, t.position, t.name, a.service, a.host, a.pid, "     \
  "t.thread, t.status, t.mode, t.enqueued_at, t.started_at, t.finished_at, "   \
  "t.wait_us, t.run_us, t.error_type, t.error_message, t.error_detail, "       \
  "t.skipped_after, t.drop_reason"
/* Left joins, so SQLite can leave out a table no column or term uses
 * (every task has its agent and batch rows; the collector writes them
 * first). */
#define QUERY_TASK_FROM                                                        \
  " FROM tasks t LEFT JOIN agents a ON a.id = t.agent"                         \
  " LEFT JOIN batches b ON b.id = t.batch"
#define QUERY_TASK_NCOLUMNS 21

/* Fills *t from the current row, starting at column `first`. */
void query_task_read(sqlite3_stmt *st, int first, query_task *t);

/* Opens the store read-only with a busy timeout and checks its schema
 * version. Returns 0, or -1 with a one-line reason in err. */
int query_open(const char *path, sqlite3 **db, char *err, size_t errlen);

/* Prepares sql, or prints a one-line error and returns NULL. */
sqlite3_stmt *query_prepare(sqlite3 *db, const char *sql);

/* ---- output ---- */

typedef struct query_out query_out;

/* Writes tasks to fp in the chosen format. The table is sized to the
 * terminal when fp is one (and sanitized always). */
query_out *query_out_new(enum query_format format, int local, FILE *fp);
void query_out_task(query_out *o, const query_task *t);
/* Prints what the table held back to measure its columns; JSON and CSV
 * rows are written at once. Flushes fp. */
void query_out_flush(query_out *o);
/* Rows written so far. */
int64_t query_out_count(const query_out *o);
void query_out_free(query_out *o);

/* Width of the terminal on fp, or -1 when fp is not a terminal. */
int query_terminal_width(FILE *fp);
/* Sanitize flags for fp's terminal (ASCII unless the locale is UTF-8). */
unsigned query_sanitize_flags(void);

/* Writes a time as the table, JSON or CSV shows it. A time RFC 3339
 * cannot express is written as "-" and gives -1 (JSON then says null and
 * CSV leaves the field empty); else 0. */
int query_format_time(char *buf, size_t len, int64_t us, int local);

/* ---- subcommands; each returns the exit status ---- */

int query_list(sqlite3 *db, const query_opts *o);
int query_stats(sqlite3 *db, const query_opts *o);
int query_show(sqlite3 *db, const query_opts *o);
int query_batch(sqlite3 *db, const query_opts *o);
/* Prints tasks matching o->filter as they reach a final state, until
 * SIGINT/SIGTERM; returns the exit status. */
int query_follow(sqlite3 *db, const query_opts *o, query_out *out);

#endif /* TW_QUERY_H */
