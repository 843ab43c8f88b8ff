/*
 * filter - the filter language shared by `taskwatch query` and
 * `taskwatch top`, compiled to an SQL boolean expression whose values are
 * all bound parameters, never spliced into the text.
 *
 * A filter is a list of terms separated by blanks; all must hold:
 *
 *   status:failed,skipped    state is one of these (comma = "or")
 *   name:send_*              task name glob (* any run, ? one character)
 *   service:api  host:web-1  the agent's service / host, globs
 *   label:"POST /send*"      the batch label, glob
 *   batch:123                batch id (a non-number is a label glob)
 *   id:456                   task id
 *   error:timeout            error type or message contains the text
 *                            (ASCII case-insensitive)
 *   mode:loop|threadpool   pid:1234   position:2 (also position>1 ...)
 *   since:1h  until:2026-11-22T10:00:00Z
 *                            enqueued at or after / before; a duration is
 *                            that long before now, or RFC 3339, a date,
 *                            or "now"
 *   wait>200ms  run>=1s  run<5s  wait:>1s
 *                            queue wait / run time compared with a
 *                            duration (tasks that never got there do not
 *                            match)
 *   !TERM  or  not TERM      negation (a task matches unless TERM holds);
 *                            a term starting with '-' is refused, since on
 *                            a command line it reads as an option
 *   word                     task name contains the word
 *
 * Values may be quoted with "..." or '...'; a backslash takes the next
 * character literally (in globs too, so name:a\* is the name "a*"). A value
 * ends at a blank unless quoted, and a bare word right after a keyed term
 * with an unquoted value is refused with a reason, since it is almost
 * always the rest of a value with a blank (`label:POST /send*`).
 */
#ifndef TW_FILTER_H
#define TW_FILTER_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

typedef struct filter filter;

/* Parses e.g. `status:failed name:send_* service:api batch:ID !error:timeout
 * since:1h until:2026-11-22T10:00:00Z wait>200ms run>1s label:POST*
 * host:web-1`. Returns 0 and *out, or -1 with a one-line reason in err.
 * Empty text is a filter that matches everything. The caller frees *out
 * with filter_free(). */
int filter_parse(const char *text, int64_t now_us, filter **out, char *err,
                 size_t errlen);

/* A filter matching everything, to which terms can be added. */
filter *filter_new(int64_t now_us);

/* Adds one term given as key, operator (":", ">", ">=", "<", "<=" or "=")
 * and value, the value taken as is (no quoting or backslashes needed), so
 * command-line flags and typed terms mean the same thing. negate != 0 is
 * the `!` prefix. Returns 0, or -1 with a reason in err and f unchanged. */
int filter_add(filter *f, const char *key, const char *op, const char *value,
               int negate, char *err, size_t errlen);

/* Adds every term of `text`, as filter_parse does. */
int filter_add_text(filter *f, const char *text, char *err, size_t errlen);

/* 1 when text starts with a filter key and its operator (`status:`,
 * `run>`), so a command line can tell `-status:failed` (a negation written
 * the way options are) from an unknown option. */
int filter_is_keyed_term(const char *text);

void filter_free(filter *f);

/* SQL boolean expression over `tasks t` joined `agents a ON a.id = t.agent`
 * and `batches b ON b.id = t.batch`, with ?NNN parameters only (never
 * spliced values) numbered from ?1; "1" when empty. Owned by f, valid until
 * the next change to f. */
const char *filter_sql(const filter *f);

/* The same expression with parameters numbered from ?first, for statements
 * that have parameters of their own before the filter's. The caller frees
 * the result with free(). */
char *filter_sql_at(const filter *f, int first);

/* The same again, with the columns map[i][0] (as filter_sql() names them:
 * "t.name", "a.service", "t.enqueued_at", ...) written as map[i][1], for
 * a summary table that holds some of them under other names (the
 * rollups). The caller frees the result with free(). */
char *filter_sql_map(const filter *f, int first, const char *const (*map)[2],
                     size_t n);

/* Number of parameters filter_sql() uses. */
int filter_param_count(const filter *f);

/* Binds the filter's parameters starting at index `first` (the index the
 * SQL text was numbered from: 1 for filter_sql()); returns the next free
 * index, or -1. */
int filter_bind(const filter *f, sqlite3_stmt *st, int first);

/* Which kinds of term a filter holds, as FILTER_USES_* bits, so a caller
 * can tell whether a summary that only knows services, names and times
 * (the rollups) can answer it. */
#define FILTER_USES_NAME 1u    /* name: and bare words */
#define FILTER_USES_TIME 2u    /* since: and until: (not negated) */
#define FILTER_USES_OTHER 4u   /* anything else */
#define FILTER_USES_SERVICE 8u /* service: */
/* A column of agents `a` or batches `b` (service, host, pid, label):
 * without it a statement may read tasks alone, whose indexes then answer
 * a count without reading rows. */
#define FILTER_USES_JOIN 16u
unsigned filter_uses(const filter *f);

/* The states a task may be in to match, a bit (1u << code) each: every
 * state without status terms, else those every status term lets through
 * (`status:failed,lost !status:lost` is failed alone); an error term lets
 * failed tasks alone through, the only ones with an error. A listing of
 * several states that exclude succeeded reads each from the index of
 * unusual tasks in time order and merges them, rather than sorting. */
#define FILTER_ALL_STATUSES ((1u << SCHEMA_STATUS_COUNT) - 1)
unsigned filter_statuses(const filter *f);

/* The enqueue-time range the filter's since:/until: terms allow, as
 * [*since, *until); INT64_MIN / INT64_MAX when unbounded. Negated time
 * terms do not narrow it. */
void filter_time_range(const filter *f, int64_t *since, int64_t *until);

/* 1 when the filter has no terms. */
int filter_is_empty(const filter *f);

#endif /* TW_FILTER_H */
