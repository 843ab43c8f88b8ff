/*
 * query - `taskwatch query`: argument parsing, opening the store and the
 * plain task listing. Every flag that narrows the result becomes a term of
 * the shared filter language (common/filter), so `--status failed` and
 * `status:failed` are one and the same thing.
 *
 * Exit status, for cron and CI: 0 after printing, 1 when --fail-if-empty
 * found nothing or --fail-if-any found something, 2 for a usage or
 * database error (always with a one-line reason on stderr).
 */
#include "query.h"

#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "format.h"
#include "hist.h"
#include "schema.h"
#include "xalloc.h"

static const char usage_text[] =
    "Usage: taskwatch query [--db PATH] [FILTER]... [OPTION]...\n"
    "  or:  taskwatch query stats [--db PATH] [--by FIELD] [--exact] "
    "[FILTER]...\n"
    "  or:  taskwatch query show [--db PATH] TASK_ID\n"
    "  or:  taskwatch query batch [--db PATH] BATCH_ID\n"
    "  or:  taskwatch query agents [--db PATH] [service:GLOB host:GLOB "
    "pid:N]...\n"
    "\n"
    "Prints stored tasks, oldest first; stats summarises them per name,\n"
    "service or batch label; show prints one task, batch one batch;\n"
    "agents lists the agent instances and what each dropped.\n"
    "\n"
    "FILTER terms, as arguments or in --filter, must all hold; such as\n"
    "status:failed,skipped name:send_* service:api host:web-1\n"
    "label:'POST /x*' batch:ID id:ID error:timeout mode:loop pid:N\n"
    "since:1h until:2026-11-22T10:00:00Z wait>200ms run>=1s; negate a\n"
    "term with !TERM or not TERM (never -TERM); quote a value that has\n"
    "blanks inside the term: 'label:\"POST /send*\"'\n"
    "\n"
    "Options:\n"
    "  --db PATH                  the collector's store (default\n"
    "                             $TASKWATCH_DB, else taskwatch.db)\n"
    "  -o, --format FMT           table (default), json (NDJSON) or csv\n"
    "  -f, --filter TEXT          filter terms, as above\n"
    "  --status S[,S]...          status:S[,S]...\n"
    "  --name GLOB                name:GLOB\n"
    "  --service GLOB             service:GLOB\n"
    "  --host GLOB                host:GLOB\n"
    "  --label GLOB               label:GLOB\n"
    "  --batch ID                 batch:ID\n"
    "  --id ID                    id:ID\n"
    "  --error TEXT               error:TEXT\n"
    "  --mode MODE                mode:MODE (loop or threadpool)\n"
    "  --since TIME               since:TIME\n"
    "  --until TIME               until:TIME\n"
    "  --min-wait DUR             wait>=DUR (e.g. 200ms)\n"
    "  --max-wait DUR             wait<=DUR\n"
    "  --min-run DUR              run>=DUR\n"
    "  --max-run DUR              run<=DUR\n"
    "  --sort FIELD               enqueued (default), started, finished, "
    "wait,\n"
    "                             run, name, service, status, id, batch\n"
    "  --reverse                  newest (largest) first\n"
    "  --limit N                  print at most N tasks\n"
    "  --local                    local time instead of UTC in the table\n"
    "  --follow                   then print tasks as they finish, until ^C\n"
    "  --interval DUR             how often --follow looks (default 200ms)\n"
    "  --fail-if-empty            exit 1 when nothing matched\n"
    "  --fail-if-any              exit 1 when anything matched (alerting)\n"
    "  --by FIELD                 stats: group by name, service or "
    "batch_label\n"
    "  --exact                    stats: exact percentiles from raw rows\n"
    "                             (default: rollups, within " HIST_ERROR_TEXT
    ")\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Exit status: 0 after printing, 1 when --fail-if-empty or --fail-if-any\n"
    "holds, 2 for a usage or database error.\n";

enum {
  OPT_DB = 256,
  OPT_STATUS,
  OPT_NAME,
  OPT_SERVICE,
  OPT_HOST,
  OPT_LABEL,
  OPT_BATCH,
  OPT_ID,
  OPT_ERROR,
  OPT_MODE,
  OPT_SINCE,
  OPT_UNTIL,
  OPT_MIN_WAIT,
  OPT_MAX_WAIT,
  OPT_MIN_RUN,
  OPT_MAX_RUN,
  OPT_SORT,
  OPT_REVERSE,
  OPT_LIMIT,
  OPT_LOCAL,
  OPT_FOLLOW,
  OPT_INTERVAL,
  OPT_FAIL_EMPTY,
  OPT_FAIL_ANY,
  OPT_BY,
  OPT_EXACT,
};

static const struct option long_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"format", required_argument, NULL, 'o'},
    {"filter", required_argument, NULL, 'f'},
    {"status", required_argument, NULL, OPT_STATUS},
    {"name", required_argument, NULL, OPT_NAME},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"host", required_argument, NULL, OPT_HOST},
    {"label", required_argument, NULL, OPT_LABEL},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"id", required_argument, NULL, OPT_ID},
    {"error", required_argument, NULL, OPT_ERROR},
    {"mode", required_argument, NULL, OPT_MODE},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"min-wait", required_argument, NULL, OPT_MIN_WAIT},
    {"max-wait", required_argument, NULL, OPT_MAX_WAIT},
    {"min-run", required_argument, NULL, OPT_MIN_RUN},
    {"max-run", required_argument, NULL, OPT_MAX_RUN},
    {"sort", required_argument, NULL, OPT_SORT},
    {"reverse", no_argument, NULL, OPT_REVERSE},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"local", no_argument, NULL, OPT_LOCAL},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"fail-if-empty", no_argument, NULL, OPT_FAIL_EMPTY},
    {"fail-if-any", no_argument, NULL, OPT_FAIL_ANY},
    {"by", required_argument, NULL, OPT_BY},
    {"exact", no_argument, NULL, OPT_EXACT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Flags that are filter terms: option, key, operator. */
static const struct {
  int option;
  const char *key;
  const char *op;
} flag_terms[] = {
    {OPT_STATUS, "status", ":"},   {OPT_NAME, "name", ":"},
    {OPT_SERVICE, "service", ":"}, {OPT_HOST, "host", ":"},
    {OPT_LABEL, "label", ":"},     {OPT_BATCH, "batch", ":"},
    {OPT_ID, "id", ":"},           {OPT_ERROR, "error", ":"},
    {OPT_MODE, "mode", ":"},       {OPT_SINCE, "since", ":"},
    {OPT_UNTIL, "until", ":"},     {OPT_MIN_WAIT, "wait", ">="},
    {OPT_MAX_WAIT, "wait", "<="},  {OPT_MIN_RUN, "run", ">="},
    {OPT_MAX_RUN, "run", "<="},
};

static const struct {
  const char *field;
  const char *column;
} sort_fields[] = {
    {"enqueued", "t.enqueued_at"},
    {"enqueued_at", "t.enqueued_at"},
    {"time", "t.enqueued_at"},
    {"started", "t.started_at"},
    {"started_at", "t.started_at"},
    {"finished", "t.finished_at"},
    {"finished_at", "t.finished_at"},
    {"wait", "t.wait_us"},
    {"wait_us", "t.wait_us"},
    {"run", "t.run_us"},
    {"run_us", "t.run_us"},
    {"name", "t.name"},
    {"service", "a.service"},
    {"status", "t.status"},
    {"id", "t.id"},
    {"batch", "t.batch"},
    {"position", "t.position"},
};

static int usage_error(const char *fmt, const char *arg) {
  return args_fail("query", fmt, arg);
}

char *query_filter_unindexed_time(const filter *f, int first) {
  static const char *const map[][2] = {{"t.enqueued_at", "+t.enqueued_at"}};
  return filter_sql_map(f, first, map, 1);
}

sqlite3_stmt *query_prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
    return NULL;
  }
  return st;
}

/* The on/off flags: where each one lands in the options, or NULL. */
static int *flag_of(query_opts *o, int c) {
  switch (c) {
  case OPT_REVERSE:
    return &o->reverse;
  case OPT_LOCAL:
    return &o->local;
  case OPT_FOLLOW:
    return &o->follow;
  case OPT_FAIL_EMPTY:
    return &o->fail_if_empty;
  case OPT_FAIL_ANY:
    return &o->fail_if_any;
  case OPT_EXACT:
    return &o->exact;
  default:
    return NULL;
  }
}

static int set_format(query_opts *o, const char *arg) {
  if (strcmp(arg, "table") == 0)
    o->format = QUERY_TABLE;
  else if (strcmp(arg, "json") == 0 || strcmp(arg, "ndjson") == 0)
    o->format = QUERY_JSON;
  else if (strcmp(arg, "csv") == 0)
    o->format = QUERY_CSV;
  else
    return usage_error("unknown format '%s' (table, json, csv)", arg);
  return -1;
}

static int set_sort(query_opts *o, const char *arg) {
  o->sort_column = NULL;
  for (size_t i = 0; i < sizeof(sort_fields) / sizeof(sort_fields[0]); i++)
    if (strcmp(arg, sort_fields[i].field) == 0)
      o->sort_column = sort_fields[i].column;
  return o->sort_column ? -1 : usage_error("cannot sort by '%s'", arg);
}

static int set_limit(query_opts *o, const char *arg) {
  char *end;
  errno = 0;
  long long n = strtoll(arg, &end, 10);
  if (errno != 0 || end == arg || *end != '\0' || n < 0)
    return usage_error("--limit needs a count, not '%s'", arg);
  o->limit = n;
  return -1;
}

static int set_by(query_opts *o, const char *arg) {
  if (strcmp(arg, "name") != 0 && strcmp(arg, "service") != 0 &&
      strcmp(arg, "batch_label") != 0 && strcmp(arg, "label") != 0)
    return usage_error("cannot group by '%s' (name, service, batch_label)",
                       arg);
  o->by = strcmp(arg, "label") == 0 ? "batch_label" : arg;
  return -1;
}

/* Applies one option that is not a filter term; returns -1 to go on, else
 * an exit status. */
static int handle_option(int c, const char *arg, query_opts *o) {
  char err[256];
  int *flag = flag_of(o, c);
  if (flag != NULL) {
    *flag = 1;
    return -1;
  }
  switch (c) {
  case OPT_DB:
    o->db_path = arg;
    return -1;
  case 'o':
    return set_format(o, arg);
  case 'f':
    if (filter_add_text(o->filter, arg, err, sizeof(err)) != 0)
      return usage_error("%s", err);
    return -1;
  case OPT_SORT:
    return set_sort(o, arg);
  case OPT_LIMIT:
    return set_limit(o, arg);
  case OPT_INTERVAL:
    if (format_parse_duration(arg, &o->interval_us) != 0 ||
        o->interval_us < 1000)
      return usage_error("--interval needs a duration of 1ms or more, not "
                         "'%s'",
                         arg);
    return -1;
  case OPT_BY:
    return set_by(o, arg);
  case 'h':
    fputs(usage_text, stdout);
    return 0;
  default:
    return ARGS_USAGE;
  }
}

/* `-status:failed` would reach getopt as the options -s, -t, ...: say what
 * it is instead. Returns 0, or the exit status after the reason. */
static int refuse_dash_terms(int argc, char **argv) {
  for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *arg = argv[i];
    if (arg[0] == '-' && arg[1] != '-' && filter_is_keyed_term(arg + 1))
      return args_fail("query",
                       "'%s' is not an option; to negate a filter term, "
                       "write '!%s' or 'not %s'",
                       arg, arg + 1, arg + 1);
  }
  return 0;
}

/* Parses the options into *o; returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, query_opts *o, int command) {
  char err[256];
  int c;
  if (refuse_dash_terms(argc, argv) != 0)
    return ARGS_USAGE;
  args a;
  args_init(&a, "query", argc, argv, "o:f:h", long_options);
  while ((c = args_next(&a)) != -1) {
    if (c == ARGS_ERROR)
      return ARGS_USAGE;
    int handled = 0;
    for (size_t i = 0; i < sizeof(flag_terms) / sizeof(flag_terms[0]); i++) {
      if (flag_terms[i].option != c)
        continue;
      handled = 1;
      if (filter_add(o->filter, flag_terms[i].key, flag_terms[i].op, a.value, 0,
                     err, sizeof(err)) != 0)
        return usage_error("%s", err);
    }
    if (handled)
      continue;
    int rc = handle_option(c, a.value, o);
    if (rc >= 0)
      return rc;
  }
  /* What is left is filter terms, or the id of show/batch. Each argument
   * is read on its own (a blank inside one is inside a term), but a
   * negation standing alone goes with the next: `not status:failed`. */
  for (int i = args_first_operand(&a); i < argc; i++) {
    if ((command == 's' || command == 'b') && o->target == NULL) {
      o->target = argv[i];
      continue;
    }
    if (command == 's' || command == 'b')
      return usage_error("unexpected argument '%s'", argv[i]);
    char *text = NULL;
    if ((strcmp(argv[i], "not") == 0 || strcmp(argv[i], "!") == 0) &&
        i + 1 < argc) {
      size_t n = strlen(argv[i]) + strlen(argv[i + 1]) + 2;
      text = xmalloc(n);
      snprintf(text, n, "%s%s%s", argv[i], argv[i][0] == '!' ? "" : " ",
               argv[i + 1]);
      i++;
    }
    int rc =
        filter_add_text(o->filter, text ? text : argv[i], err, sizeof(err));
    free(text);
    if (rc != 0)
      return usage_error("%s", err);
  }
  if ((command == 's' || command == 'b') && o->target == NULL)
    return usage_error("%s", "missing the id to show");
  if (o->by != NULL && command != 'S')
    return usage_error("%s", "--by is for 'taskwatch query stats'");
  if (o->exact && command != 'S')
    return usage_error("%s", "--exact is for 'taskwatch query stats'");
  if (o->follow && command != 'l')
    return usage_error("%s", "--follow is for the task listing");
  if (o->sort_column && command == 'a')
    return usage_error("%s", "--sort is for tasks; agents come connected "
                             "first, then by their newest event");
  return -1;
}

static int run(int argc, char **argv, query_opts *o) {
  int command = 'l';
  if (argc > 1 && strcmp(argv[1], "stats") == 0)
    command = 'S';
  else if (argc > 1 && strcmp(argv[1], "show") == 0)
    command = 's';
  else if (argc > 1 && strcmp(argv[1], "batch") == 0)
    command = 'b';
  else if (argc > 1 && strcmp(argv[1], "agents") == 0)
    command = 'a';
  if (command != 'l') {
    argc--;
    argv++;
  }
  int rc = parse_args(argc, argv, o, command);
  if (rc >= 0)
    return rc;
  reader *r = NULL;
  char err[512];
  int defaulted = o->db_path == NULL;
  if (defaulted)
    o->db_path = schema_default_db();
  reader_page_cache_init(o->db_path);
  rc = reader_open(o->db_path, &r, err, sizeof(err));
  if (rc != READER_OK) {
    fprintf(stderr, "taskwatch query: %s%s\n", err,
            defaulted && rc == READER_EMISSING ? READER_DEFAULT_MISSING_HINT
                                               : "");
    return 2;
  }
  switch (command) {
  case 'S':
    rc = query_stats(r, o);
    break;
  case 's':
    rc = query_show(r, o);
    break;
  case 'b':
    rc = query_batch(r, o);
    break;
  case 'a':
    rc = query_agents(r, o);
    break;
  default:
    rc = query_list(r, o);
  }
  reader_close(r);
  return rc;
}

int query_main(int argc, char **argv) {
  /* Only the character type follows the locale (for display widths);
   * numbers keep their '.' whatever LC_NUMERIC says. */
  setlocale(LC_CTYPE, "");
  /* Into a file or a pipe, output goes out in large writes: stdio's
   * default (the file's block size, 4 KiB) cost one system call every
   * eight tasks of a JSON listing. A terminal keeps its line buffering;
   * --follow flushes after each round of rows itself. */
  static char out_buf[1 << 18];
  if (!isatty(STDOUT_FILENO))
    setvbuf(stdout, out_buf, _IOFBF, sizeof(out_buf));
  query_opts o = {0};
  o.format = QUERY_TABLE;
  o.limit = -1;
  o.interval_us = 200000;
  o.now_us = format_now_us();
  o.filter = filter_new(o.now_us);
  int rc = run(argc, argv, &o);
  filter_free(o.filter);
  return rc;
}

int query_exit_status(const query_opts *o, int64_t count) {
  if (o->fail_if_empty && count == 0)
    return 1;
  if (o->fail_if_any && count > 0)
    return 1;
  return 0;
}

/* The states a listing in time order reads one by one from tasks_unusual
 * and merges (filter_statuses()): two or more, none of them succeeded.
 * Returns how many, with their codes in codes[]; 0 when it does not
 * apply. An IN list of states would make SQLite read them all and sort
 * (a temporary B-tree of whole rows); a UNION ALL of one arm per state,
 * each in the index's own order, it merges instead, and a LIMIT stops
 * the merge early. */
static int merged_states(const query_opts *o, int *codes) {
  unsigned set = filter_statuses(o->filter);
  if ((o->sort_column && strcmp(o->sort_column, "t.enqueued_at") != 0) ||
      (set & (1u << SCHEMA_SUCCEEDED)))
    return 0;
  int n = 0;
  for (int s = 0; s < SCHEMA_STATUS_COUNT; s++)
    if (set & (1u << s))
      codes[n++] = s;
  return n >= 2 ? n : 0;
}

/* Prints the tasks of the listing enqueued in [from, to) (all of them
 * when from is INT64_MIN and to INT64_MAX), at most `limit` (< 0: all).
 * Returns 0 or 2. */
static int list_span(sqlite3 *db, const query_opts *o, int64_t from, int64_t to,
                     int64_t limit, query_out *out) {
  const char *column = o->sort_column ? o->sort_column : "t.enqueued_at";
  const char *dir = o->reverse ? "DESC" : "ASC";
  int n = filter_param_count(o->filter);
  format_buf sql;
  format_buf_init(&sql);
  /* The whole range states no term of its own, so the filter alone
   * picks the index. */
  char range[96] = "";
  if (from != INT64_MIN || to != INT64_MAX)
    snprintf(range, sizeof(range),
             " AND t.enqueued_at >= ?%d AND t.enqueued_at < ?%d", n + 1, n + 2);
  char *where = range[0] ? query_filter_unindexed_time(o->filter, 1)
                         : xstrdup(filter_sql(o->filter));
  int codes[SCHEMA_STATUS_COUNT];
  int arms = merged_states(o, codes);
  if (arms == 0 && (filter_statuses(o->filter) & (1u << SCHEMA_SUCCEEDED))) {
    /* Rows that may have succeeded come through tasks_time, which holds
     * what filters read but not every column: the inner SELECT walks it
     * alone (a covering scan) for the ids and sort keys of the page, and
     * only those rows are read whole. In one statement SQLite would
     * position the table cursor (a deferred seek) for every row the scan
     * passes, about a third of its cost. */
    format_buf_printf(
        &sql,
        "SELECT " READER_TASK_COLUMNS " FROM (SELECT t.id AS id, %s AS k"
        READER_TASK_FROM " WHERE %s%s ORDER BY %s %s, t.id %s LIMIT ?%d) s"
        " CROSS JOIN tasks t ON t.id = s.id" READER_TASK_JOINS
        " ORDER BY s.k %s, s.id %s",
        column, where, range, column, dir, dir, n + 3, dir, dir);
  } else if (arms == 0) {
    /* Unusual states alone: tasks_unusual holds every column. */
    format_buf_printf(&sql,
                      "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
                      " WHERE %s%s ORDER BY %s %s, t.id %s LIMIT ?%d",
                      where, range, column, dir, dir, n + 3);
  } else {
    /* Every arm states the filter (its parameters shared), one state and
     * the condition of tasks_unusual in its own words (a negated status
     * term alone, `!status:succeeded`, would not let SQLite use the
     * partial index); the compound's ORDER BY names result columns. */
    for (int i = 0; i < arms; i++)
      format_buf_printf(&sql,
                        "%sSELECT " READER_TASK_COLUMNS READER_TASK_FROM
                        " WHERE %s%s AND " SCHEMA_SQL_UNUSUAL
                        " AND t.status = ?%d",
                        i ? " UNION ALL " : "", where, range, n + 4 + i);
    format_buf_printf(&sql,
                      " ORDER BY " READER_TASK_ENQUEUED_POSITION
                      " %s, " READER_TASK_ID_POSITION " %s LIMIT ?%d",
                      dir, dir, n + 3);
  }
  free(where);
  sqlite3_stmt *st = query_prepare(db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st == NULL)
    return 2;
  filter_bind(o->filter, st, 1);
  if (range[0]) {
    sqlite3_bind_int64(st, n + 1, from);
    sqlite3_bind_int64(st, n + 2, to);
  }
  sqlite3_bind_int64(st, n + 3, limit);
  for (int i = 0; i < arms; i++)
    sqlite3_bind_int(st, n + 4 + i, codes[i]);
  int rc;
  reader_task t;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    reader_task_read(st, 0, &t);
    query_out_task(out, &t);
  }
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : 2;
}

/* The listing, by the hours the rollups name when that pays off
 * (query_hours.c), else in one statement. */
static int list_all(sqlite3 *db, const query_opts *o, query_out *out) {
  int64_t since, until;
  filter_time_range(o->filter, &since, &until);
  if (!query_hours_apply(o, since, until))
    return list_span(db, o, INT64_MIN, INT64_MAX, o->limit, out);
  query_span *spans = NULL;
  size_t n = 0;
  /* One read transaction: the hours and the rows of one moment. */
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  int status = query_hours(db, o, since, until, &spans, &n) == 0 ? 0 : 2;
  for (size_t i = 0; i < n && status == 0; i++) {
    const query_span *s = &spans[o->reverse ? n - 1 - i : i];
    int64_t left = o->limit < 0 ? -1 : o->limit - query_out_count(out);
    if (left == 0)
      break;
    status = list_span(db, o, s->from, s->to, left, out);
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  free(spans);
  return status;
}

int query_list(reader *r, const query_opts *o) {
  query_out *out = query_out_new(o->format, o->local, stdout);
  int status = list_all(reader_db(r), o, out);
  query_out_flush(out);
  if (status == 0 && o->follow)
    status = query_follow(r, o, out);
  if (status == 0)
    status = query_exit_status(o, query_out_count(out));
  query_out_free(out);
  return status;
}
