/*
 * query_agents - `taskwatch query agents`: one row per agent instance the
 * store knows, as the dashboard's agents view lists them (connected ones
 * first, then by newest event), with what each dropped because its buffer
 * was full: events, and the tasks and batches it refused whole. As a
 * table (strings through the display sanitizer), NDJSON or CSV.
 *
 * Filter terms on the agent's own fields (service:, host:, pid:) apply;
 * any other term is about tasks and is refused with a one-line reason.
 */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "json.h"
#include "query.h"
#include "sanitize.h"
#include "xalloc.h"

typedef struct agent_row {
  int64_t id, pid, started_at, connected_at, disconnected_at, last_event_at;
  int64_t events, dropped, dropped_tasks, dropped_batches, reconnects;
  int connected, ended;
  char *service, *host;
  size_t service_len, host_len;
} agent_row;

/* What the dashboard calls an agent's state. */
static const char *state_of(const agent_row *a) {
  return a->connected ? "connected" : a->ended ? "ended" : "gone";
}

/*
 * The exported fields, in order: X(key, kind, member). The kind names the
 * writer (json_<kind>, csv_<kind>): integer, time (NULL as READER_NULL),
 * text, state.
 */
#define AGENT_FIELDS(X)                                                        \
  X("id", integer, id)                                                         \
  X("service", text, service)                                                  \
  X("host", text, host)                                                        \
  X("pid", integer, pid)                                                       \
  X("state", state, connected)                                                 \
  X("started_at", time, started_at)                                            \
  X("connected_at", time, connected_at)                                        \
  X("disconnected_at", time, disconnected_at)                                  \
  X("last_event_at", time, last_event_at)                                      \
  X("events", integer, events)                                                 \
  X("dropped", integer, dropped)                                               \
  X("dropped_tasks", integer, dropped_tasks)                                   \
  X("dropped_batches", integer, dropped_batches)                               \
  X("reconnects", integer, reconnects)

/* ---- reading ------------------------------------------------------------- */

static int64_t column_or_null(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL
             ? READER_NULL
             : sqlite3_column_int64(st, i);
}

static char *column_text(sqlite3_stmt *st, int i, size_t *len) {
  const void *p = sqlite3_column_blob(st, i);
  *len = (size_t)sqlite3_column_bytes(st, i);
  char *s = xmalloc(*len + 1);
  if (*len)
    memcpy(s, p, *len);
  s[*len] = '\0';
  return s;
}

static void read_row(sqlite3_stmt *st, agent_row *a) {
  a->id = sqlite3_column_int64(st, 0);
  a->service = column_text(st, 1, &a->service_len);
  a->host = column_text(st, 2, &a->host_len);
  a->pid = sqlite3_column_int64(st, 3);
  a->connected = sqlite3_column_int(st, 4);
  a->ended = sqlite3_column_int(st, 5);
  a->started_at = column_or_null(st, 6);
  a->connected_at = column_or_null(st, 7);
  a->disconnected_at = column_or_null(st, 8);
  a->last_event_at = column_or_null(st, 9);
  a->events = sqlite3_column_int64(st, 10);
  a->dropped = sqlite3_column_int64(st, 11);
  a->dropped_tasks = sqlite3_column_int64(st, 12);
  a->dropped_batches = sqlite3_column_int64(st, 13);
  a->reconnects = sqlite3_column_int64(st, 14);
}

/* The statement over `agents a`, or NULL after printing why. A term the
 * agents table cannot answer names a column of tasks or batches, which
 * SQLite refuses to prepare. */
static sqlite3_stmt *prepare(reader *r, const query_opts *o) {
  const char *seen = reader_agent_seen_sql(r);
  char *sql = sqlite3_mprintf(
      "SELECT id, service, host, pid, connected, ended, started_at, "
      "connected_at, disconnected_at, %s, events, dropped, %s, %s, "
      "reconnects FROM agents a WHERE %s ORDER BY connected DESC, %s DESC, "
      "id LIMIT ?%d",
      seen, reader_agent_dropped_tasks_sql(r),
      reader_agent_dropped_batches_sql(r), filter_sql(o->filter), seen,
      filter_param_count(o->filter) + 1);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(reader_db(r), sql, -1, &st, NULL);
  sqlite3_free(sql);
  if (rc != SQLITE_OK) {
    if (strstr(sqlite3_errmsg(reader_db(r)), "no such column") != NULL)
      fprintf(stderr, "taskwatch query: agents are filtered by service:, "
                      "host: and pid: only\n");
    else
      fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(reader_db(r)));
    return NULL;
  }
  int next = filter_bind(o->filter, st, 1);
  sqlite3_bind_int64(st, next, o->limit);
  return st;
}

/* ---- JSON and CSV -------------------------------------------------------- */

/* One writer per kind of field, for the rows of AGENT_FIELDS. */
#define JSON_integer(key, m) (json_key(&w, key), json_int(&w, a->m))
#define JSON_time(key, m) query_json_time(&w, key, a->m)
#define JSON_text(key, m) (json_key(&w, key), json_string(&w, a->m, a->m##_len))
#define JSON_state(key, m) (json_key(&w, key), json_cstring(&w, state_of(a)))
#define JSON_FIELD(key, kind, member) JSON_##kind(key, member);

static void json_row(format_buf *b, const agent_row *a) {
  json_writer w;
  json_init(&w, b);
  json_begin_object(&w);
  AGENT_FIELDS(JSON_FIELD)
  json_end_object(&w);
  format_buf_putc(b, '\n');
}

#define CSV_integer(m) format_buf_printf(b, "%lld", (long long)a->m)
#define CSV_time(m) query_csv_time(b, a->m)
#define CSV_text(m) format_csv_field(b, a->m, a->m##_len)
#define CSV_state(m) format_buf_puts(b, state_of(a))
/* Every field after the first starts with the separator. */
#define CSV_FIELD(key, kind, member)                                           \
  if (b->len > start)                                                          \
    format_buf_putc(b, ',');                                                   \
  CSV_##kind(member);

static void csv_row(format_buf *b, const agent_row *a) {
  size_t start = b->len;
  AGENT_FIELDS(CSV_FIELD)
  format_buf_puts(b, "\r\n");
}

static void csv_header(format_buf *b) {
  const char *sep = "";
#define CSV_KEY(key, kind, member)                                             \
  format_buf_printf(b, "%s%s", sep, key);                                      \
  sep = ",";
  AGENT_FIELDS(CSV_KEY)
#undef CSV_KEY
  format_buf_puts(b, "\r\n");
}

/* ---- the table ----------------------------------------------------------- */

/* A sanitized cell of width w, left-aligned, and the blank after it. */
static void table_text(format_buf *b, const char *s, size_t len, int w,
                       unsigned flags) {
  int shown;
  char *text = sanitize_dup(s, len, w, flags | SANITIZE_ELLIPSIS, &shown);
  format_buf_puts(b, text);
  for (int i = shown; i < w + 1; i++)
    format_buf_putc(b, ' ');
  free(text);
}

static int text_width(const char *s, size_t len, unsigned flags, int least) {
  int w = sanitize_width(s, len, flags);
  if (w < least)
    w = least;
  return w > 40 ? 40 : w;
}

static void write_table(const query_opts *o, const agent_row *rows, size_t n) {
  format_buf b;
  format_buf_init(&b);
  unsigned flags = query_sanitize_flags();
  int sw = 7, hw = 4; /* "SERVICE", "HOST" */
  for (size_t i = 0; i < n; i++) {
    sw = text_width(rows[i].service, rows[i].service_len, flags, sw);
    hw = text_width(rows[i].host, rows[i].host_len, flags, hw);
  }
  table_text(&b, "SERVICE", 7, sw, flags);
  table_text(&b, "HOST", 4, hw, flags);
  format_buf_printf(&b, "%8s %-9s %-27s %10s %10s %10s %12s %10s\n", "PID",
                    "STATE", "LAST EVENT", "EVENTS", "DROPPED", "DROP TASKS",
                    "DROP BATCHES", "RECONNECTS");
  for (size_t i = 0; i < n; i++) {
    const agent_row *a = &rows[i];
    char when[FORMAT_TIME_SIZE] = "-";
    if (a->last_event_at != READER_NULL)
      query_format_time(when, sizeof(when), a->last_event_at, o->local);
    table_text(&b, a->service, a->service_len, sw, flags);
    table_text(&b, a->host, a->host_len, hw, flags);
    format_buf_printf(
        &b, "%8lld %-9s %-27s %10lld %10lld %10lld %12lld %10lld\n",
        (long long)a->pid, state_of(a), when, (long long)a->events,
        (long long)a->dropped, (long long)a->dropped_tasks,
        (long long)a->dropped_batches, (long long)a->reconnects);
  }
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
}

/* ---- the subcommand ------------------------------------------------------ */

int query_agents(reader *r, const query_opts *o) {
  sqlite3_stmt *st = prepare(r, o);
  if (st == NULL)
    return 2;
  size_t n = 0, cap = 16;
  agent_row *rows = xcalloc(cap, sizeof(*rows));
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      cap *= 2;
      rows = xrealloc(rows, cap * sizeof(*rows));
    }
    read_row(st, &rows[n++]);
  }
  int status = 0;
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(reader_db(r)));
    status = 2;
  }
  sqlite3_finalize(st);
  if (status == 0 && o->format == QUERY_TABLE) {
    write_table(o, rows, n);
  } else if (status == 0) {
    format_buf b;
    format_buf_init(&b);
    if (o->format == QUERY_CSV)
      csv_header(&b);
    for (size_t i = 0; i < n; i++) {
      if (o->format == QUERY_JSON)
        json_row(&b, &rows[i]);
      else
        csv_row(&b, &rows[i]);
    }
    fputs(format_buf_str(&b), stdout);
    format_buf_fini(&b);
  }
  fflush(stdout);
  if (status == 0)
    status = query_exit_status(o, (int64_t)n);
  for (size_t i = 0; i < n; i++) {
    free(rows[i].service);
    free(rows[i].host);
  }
  free(rows);
  return status;
}
