/*
 * query - `taskwatch query`: its entry point, and the internals its modules
 * share: the options after parsing, the output writers (query_out.c), stats
 * (query_stats.c), show/batch (query_show.c) and follow (query_follow.c).
 * The store is read through common/reader.
 */
#ifndef TW_QUERY_H
#define TW_QUERY_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "filter.h"
#include "reader.h"

/* The subcommand's entry point; argv[0] is "query". Returns the exit
 * status. */
int query_main(int argc, char **argv);

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
  int exact;      /* stats: raw rows only, exact percentiles */
  filter *filter;
  int64_t now_us;
  const char *target; /* show/batch: the id as typed */
} query_opts;

/* The filter's SQL (parameters from ?first) with its time terms written
 * so that SQLite does not take them for index bounds: for statements that
 * state a tighter range of their own, which SQLite must use (with several
 * bounds on a column and bound values, it may pick any). free() it. */
char *query_filter_unindexed_time(const filter *f, int first);

/* Prepares sql, or prints a one-line error and returns NULL. */
sqlite3_stmt *query_prepare(sqlite3 *db, const char *sql);

/* ---- output ---- */

typedef struct query_out query_out;

/* Writes tasks to fp in the chosen format. The table is sized to the
 * terminal when fp is one (and sanitized always). */
query_out *query_out_new(enum query_format format, int local, FILE *fp);
void query_out_task(query_out *o, const reader_task *t);
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

struct json_writer;
struct format_buf;
/* The key and a time as JSON shows it: null for NULL (READER_NULL) or a
 * time query_format_time() cannot express. */
void query_json_time(struct json_writer *w, const char *key, int64_t v);
/* A time as a CSV field: empty for NULL or a time it cannot express. */
void query_csv_time(struct format_buf *b, int64_t v);

/* ---- hours from the rollups (query_hours.c) ---- */

/* A listing of a range wider than this reads the hours query_hours()
 * finds rather than the whole range. */
#define QUERY_HOURS_WIDER_THAN INT64_C(7200000000)

/* [from, to): a span of enqueue times. */
typedef struct query_span {
  int64_t from, to;
} query_span;

/* 1 when o's listing of [since, until) is worth reading by hours: a
 * filter of service, name and time terms with a service or name term,
 * oldest or newest first, over a wide range or none. */
int query_hours_apply(const query_opts *o, int64_t since, int64_t until);
/* The spans of [since, until) that can hold a task matching o's filter,
 * ascending and disjoint (an array to free()). Returns 0, or -1 after
 * printing the reason. */
int query_hours(sqlite3 *db, const query_opts *o, int64_t since, int64_t until,
                query_span **out, size_t *n);

/* ---- subcommands; each returns the exit status ---- */

int query_list(reader *r, const query_opts *o);
int query_stats(reader *r, const query_opts *o);
int query_show(reader *r, const query_opts *o);
int query_batch(reader *r, const query_opts *o);
/* Every agent instance, with what it dropped (query_agents.c). */
int query_agents(reader *r, const query_opts *o);
/* The exit status after printing `count` rows: 1 when --fail-if-empty or
 * --fail-if-any holds, else 0. */
int query_exit_status(const query_opts *o, int64_t count);
/* Prints tasks matching o->filter as they reach a final state, until
 * SIGINT/SIGTERM; returns the exit status. */
int query_follow(reader *r, const query_opts *o, query_out *out);

#endif /* TW_QUERY_H */
