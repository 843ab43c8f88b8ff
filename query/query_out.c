/*
 * query_out - writes task rows as NDJSON, RFC 4180 CSV or an aligned table.
 *
 * JSON and CSV are exports: every row is written as soon as it is read, with
 * all fields, strings escaped (JSON) or quoted (CSV) but otherwise kept.
 * The table is for people at a terminal: every cell goes through the one
 * display sanitizer (common/sanitize), and column widths come from the
 * first TABLE_SAMPLE rows, held back until then, so a million-row result
 * streams in constant memory while short results are sized exactly. When
 * the table is wider than the terminal, the error, name and service
 * columns give up their room, in that order, and their cells end in "…";
 * if that is not enough, the batch, position, wait, service and id columns
 * are left out, in that order (`query show` and the JSON have them all).
 * Only a terminal cuts values: into a file or a pipe every cell is
 * written whole (the widths then only align), and an empty result still
 * prints the header.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "format.h"
#include "json.h"
#include "query.h"
#include "sanitize.h"
#include "schema.h"
#include "xalloc.h"

#define TABLE_SAMPLE 500

enum column {
  COL_ID,
  COL_BATCH,
  COL_POS,
  COL_NAME,
  COL_SERVICE,
  COL_STATUS,
  COL_ENQUEUED,
  COL_WAIT,
  COL_RUN,
  COL_ERROR,
  COL_COUNT
};

static const char *const headers[COL_COUNT] = {
    "ID",     "BATCH",    "POS",  "NAME", "SERVICE",
    "STATUS", "ENQUEUED", "WAIT", "RUN",  "ERROR"};
/* Numbers and durations are right-aligned. */
static const int right_aligned[COL_COUNT] = {1, 1, 1, 0, 0, 0, 0, 1, 1, 0};
/* How narrow a column may become to fit the terminal (0: never shrinks). */
static const int min_width[COL_COUNT] = {0, 0, 0, 10, 8, 0, 0, 0, 0, 12};

/* One table row: the raw (unsanitized) text of each cell. */
typedef struct row {
  char *cell[COL_COUNT];
} row;

struct query_out {
  enum query_format format;
  int local;
  FILE *fp;
  int64_t count;
  format_buf line;
  /* table */
  row *held;
  int nheld;
  int widths_fixed;
  int width[COL_COUNT];
  int hidden[COL_COUNT];
  int terminal_width;
  unsigned flags;
};

/* ---- time and terminal ----------------------------------------------------
 */

int query_format_time(char *buf, size_t len, int64_t us, int local) {
  int n =
      local ? format_time_local(us, buf, len) : format_time_utc(us, buf, len);
  if (n >= 0)
    return 0;
  snprintf(buf, len, "-");
  return -1;
}

int query_terminal_width(FILE *fp) {
  struct winsize ws;
  int fd = fileno(fp);
  if (fd < 0 || !isatty(fd) || ioctl(fd, TIOCGWINSZ, &ws) != 0 ||
      ws.ws_col == 0)
    return -1;
  return ws.ws_col;
}

unsigned query_sanitize_flags(void) {
  return sanitize_locale_is_utf8() ? 0 : SANITIZE_ASCII;
}

/* ---- JSON and CSV -------------------------------------------------------- */

/*
 * The fields of an exported task, in order: X(key, kind, member). The kind
 * names the writer of the field (json_<kind>, csv_<kind>): integer (NULL as
 * READER_NULL), thread (unsigned), text, time, status and mode (names).
 */
#define TASK_FIELDS(X)                                                         \
  X("id", integer, id)                                                         \
  X("batch", integer, batch)                                                   \
  X("batch_label", text, label)                                                \
  X("position", integer, position)                                             \
  X("name", text, name)                                                        \
  X("service", text, service)                                                  \
  X("host", text, host)                                                        \
  X("pid", integer, pid)                                                       \
  X("thread", thread, thread)                                                  \
  X("status", status, status)                                                  \
  X("mode", mode, mode)                                                        \
  X("enqueued_at", time, enqueued_at)                                          \
  X("started_at", time, started_at)                                            \
  X("finished_at", time, finished_at)                                          \
  X("wait_us", integer, wait_us)                                               \
  X("run_us", integer, run_us)                                                 \
  X("error_type", text, error_type)                                            \
  X("error_message", text, error_message)                                      \
  X("error_detail", text, error_detail)                                        \
  X("skipped_after", integer, skipped_after)                                   \
  X("drop_reason", text, drop_reason)

/* A name from the schema's tables as text; NULL when the code has none. */
static reader_text name_text(const char *name) {
  return (reader_text){name, name ? strlen(name) : 0};
}

static void json_text(json_writer *w, const char *key, reader_text s) {
  json_key(w, key);
  json_string(w, s.ptr, s.len);
}

static void json_status(json_writer *w, const char *key, int status) {
  json_text(w, key, name_text(schema_status_name(status)));
}

static void json_mode(json_writer *w, const char *key, int mode) {
  json_text(w, key, name_text(schema_mode_name(mode)));
}

static void json_integer(json_writer *w, const char *key, int64_t v) {
  json_key(w, key);
  if (v != READER_NULL)
    json_int(w, v);
  else
    json_null(w);
}

static void json_thread(json_writer *w, const char *key, int64_t v) {
  json_key(w, key);
  if (v != READER_NULL)
    json_uint(w, (uint64_t)v);
  else
    json_null(w);
}

void query_json_time(json_writer *w, const char *key, int64_t v) {
  char when[FORMAT_TIME_SIZE];
  json_key(w, key);
  /* null also for a time out of RFC 3339's range */
  if (v == READER_NULL || query_format_time(when, sizeof(when), v, 0) != 0)
    json_null(w);
  else
    json_cstring(w, when);
}

/* json_<kind> for the time fields of READER_TASK_FIELDS. */
#define json_time query_json_time

void query_csv_time(format_buf *b, int64_t v) {
  char when[FORMAT_TIME_SIZE];
  if (v != READER_NULL && query_format_time(when, sizeof(when), v, 0) == 0)
    format_buf_puts(b, when);
}

static void write_json(query_out *o, const reader_task *t) {
  json_writer w;
  assert(o->line.len == 0);
  json_init(&w, &o->line);
  json_begin_object(&w);
#define JSON_FIELD(key, kind, member) json_##kind(&w, key, t->member);
  TASK_FIELDS(JSON_FIELD)
#undef JSON_FIELD
  json_end_object(&w);
  format_buf_putc(&o->line, '\n');
}

/* Fields after the first start with the separator. */
static void csv_separator(format_buf *b) {
  if (b->len)
    format_buf_putc(b, ',');
}

static void csv_text(format_buf *b, const char *key, reader_text s) {
  (void)key;
  csv_separator(b);
  if (s.ptr != NULL)
    format_csv_field(b, s.ptr, s.len);
}

/* A status or mode without a name is an empty field. */
static void csv_status(format_buf *b, const char *key, int status) {
  const char *name = schema_status_name(status);
  csv_text(b, key, name_text(name ? name : ""));
}

static void csv_mode(format_buf *b, const char *key, int mode) {
  const char *name = schema_mode_name(mode);
  csv_text(b, key, name_text(name ? name : ""));
}

static void csv_integer(format_buf *b, const char *key, int64_t v) {
  (void)key;
  csv_separator(b);
  if (v != READER_NULL)
    format_buf_put_int(b, v);
}

static void csv_thread(format_buf *b, const char *key, int64_t v) {
  (void)key;
  csv_separator(b);
  if (v != READER_NULL)
    format_buf_put_uint(b, (uint64_t)v);
}

static void csv_time(format_buf *b, const char *key, int64_t v) {
  (void)key;
  csv_separator(b);
  query_csv_time(b, v);
}

static void write_csv(query_out *o, const reader_task *t) {
  format_buf *b = &o->line;
  assert(b->len == 0);
#define CSV_FIELD(key, kind, member) csv_##kind(b, key, t->member);
  TASK_FIELDS(CSV_FIELD)
#undef CSV_FIELD
  format_buf_puts(b, "\r\n");
}

static void write_csv_header(FILE *fp) {
  static const char *const keys[] = {
#define FIELD_KEY(key, kind, member) key,
      TASK_FIELDS(FIELD_KEY)
#undef FIELD_KEY
  };
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    fprintf(fp, "%s%s", i ? "," : "", keys[i]);
  fputs("\r\n", fp);
}

/* ---- table -------------------------------------------------------------- */

/* Cells are held as NUL-terminated strings, so a text that may hold NUL
 * bytes is sanitized here, whole (NUL shows as its placeholder); the
 * second pass at output leaves sanitized text as it is. */
static char *dup_text(const query_out *o, reader_text s) {
  return s.ptr != NULL ? sanitize_dup(s.ptr, s.len, -1, o->flags, NULL)
                       : xstrdup("");
}

/* What the ERROR column says: the error for a failed task, the cause for a
 * skipped one, the reason for a dropped or lost one. */
static char *error_cell(const reader_task *t) {
  format_buf b;
  format_buf_init(&b);
  if (t->error_type.ptr != NULL || t->error_message.ptr != NULL) {
    format_buf_append(&b, t->error_type.ptr ? t->error_type.ptr : "",
                      t->error_type.len);
    if (t->error_message.ptr != NULL && t->error_message.len > 0) {
      format_buf_puts(&b, t->error_type.len > 0 ? ": " : "");
      format_buf_append(&b, t->error_message.ptr, t->error_message.len);
    }
  } else if (t->skipped_after != READER_NULL) {
    format_buf_printf(&b, "after %lld", (long long)t->skipped_after);
  } else if (t->drop_reason.ptr != NULL) {
    format_buf_append(&b, t->drop_reason.ptr, t->drop_reason.len);
  }
  char *s = xstrdup(format_buf_str(&b));
  format_buf_fini(&b);
  return s;
}

static void duration_cell(char **cell, int64_t us) {
  char text[32] = "";
  if (us != READER_NULL)
    format_duration(us, text, sizeof(text));
  *cell = xstrdup(text);
}

static void make_row(const query_out *o, const reader_task *t, row *r) {
  char text[FORMAT_TIME_SIZE];
  const char *status = schema_status_name(t->status);
  snprintf(text, sizeof(text), "%lld", (long long)t->id);
  r->cell[COL_ID] = xstrdup(text);
  snprintf(text, sizeof(text), "%lld", (long long)t->batch);
  r->cell[COL_BATCH] = xstrdup(text);
  snprintf(text, sizeof(text), "%lld", (long long)t->position);
  r->cell[COL_POS] = xstrdup(text);
  r->cell[COL_NAME] = dup_text(o, t->name);
  r->cell[COL_SERVICE] = dup_text(o, t->service);
  r->cell[COL_STATUS] = xstrdup(status ? status : "?");
  query_format_time(text, sizeof(text), t->enqueued_at, o->local);
  r->cell[COL_ENQUEUED] = xstrdup(text);
  duration_cell(&r->cell[COL_WAIT], t->wait_us);
  duration_cell(&r->cell[COL_RUN], t->run_us);
  r->cell[COL_ERROR] = error_cell(t);
}

static void row_free(row *r) {
  for (int i = 0; i < COL_COUNT; i++)
    free(r->cell[i]);
}

/* Widths for a table that starts without rows (`--follow` after an empty
 * listing): room for typical values, so the rows that follow on a
 * terminal are not all cut to the width of the headings. */
static const int typical_width[COL_COUNT] = {13, 13, 3, 20, 10,
                                             9,  27, 7, 7,  30};

/* Sets the column widths from the held rows, then narrows the shrinkable
 * columns until the table fits the terminal. */
static void fix_widths(query_out *o) {
  for (int c = 0; c < COL_COUNT; c++) {
    o->width[c] = (int)strlen(headers[c]);
    if (o->nheld == 0 && o->terminal_width >= 0 &&
        typical_width[c] > o->width[c])
      o->width[c] = typical_width[c];
    for (int i = 0; i < o->nheld; i++) {
      const char *s = o->held[i].cell[c];
      int w = sanitize_width(s, strlen(s), o->flags);
      if (w > o->width[c])
        o->width[c] = w;
    }
  }
  o->widths_fixed = 1;
  if (o->terminal_width < 0)
    return;
  int total = COL_COUNT - 1;
  for (int c = 0; c < COL_COUNT; c++)
    total += o->width[c];
  static const int shrink_order[] = {COL_ERROR, COL_NAME, COL_SERVICE};
  for (size_t k = 0; k < 3 && total > o->terminal_width; k++) {
    int c = shrink_order[k];
    int room = o->width[c] - min_width[c];
    int cut = total - o->terminal_width;
    if (room <= 0)
      continue;
    if (cut > room)
      cut = room;
    o->width[c] -= cut;
    total -= cut;
  }
  /* Still too wide: leave out the columns a reader misses least. */
  static const int hide_order[] = {COL_BATCH, COL_POS, COL_WAIT, COL_SERVICE,
                                   COL_ID};
  for (size_t k = 0; k < 5 && total > o->terminal_width; k++) {
    o->hidden[hide_order[k]] = 1;
    total -= o->width[hide_order[k]] + 1;
  }
}

static void put_cell(query_out *o, int c, const char *s, int last) {
  /* Only a terminal cuts cells to the columns; a file or a pipe gets every
   * value whole, whatever rows set the widths. */
  int max = o->terminal_width < 0 ? -1 : o->width[c];
  char *shown =
      sanitize_dup(s, strlen(s), max, o->flags | SANITIZE_ELLIPSIS, NULL);
  int w = sanitize_width(shown, strlen(shown), o->flags);
  int pad = o->width[c] > w ? o->width[c] - w : 0;
  if (right_aligned[c])
    for (int i = 0; i < pad; i++)
      format_buf_putc(&o->line, ' ');
  format_buf_puts(&o->line, shown);
  if (!right_aligned[c] && !last)
    for (int i = 0; i < pad; i++)
      format_buf_putc(&o->line, ' ');
  format_buf_puts(&o->line, last ? "\n" : " ");
  free(shown);
}

static void put_row(query_out *o, const char *const *cells) {
  for (int c = 0; c < COL_COUNT; c++)
    if (!o->hidden[c])
      put_cell(o, c, cells[c], c == COL_COUNT - 1);
  /* An empty last cell leaves the separator behind; lines end clean. */
  while (o->line.len >= 2 && o->line.data[o->line.len - 2] == ' ') {
    o->line.data[o->line.len - 2] = '\n';
    o->line.len--;
  }
  fwrite(o->line.data, 1, o->line.len, o->fp);
  format_buf_reset(&o->line);
}

static void release_held(query_out *o) {
  if (!o->widths_fixed) {
    fix_widths(o);
    put_row(o, headers);
  }
  for (int i = 0; i < o->nheld; i++) {
    put_row(o, (const char *const *)o->held[i].cell);
    row_free(&o->held[i]);
  }
  o->nheld = 0;
}

/* ---- public ------------------------------------------------------------- */

query_out *query_out_new(enum query_format format, int local, FILE *fp) {
  query_out *o = xcalloc(1, sizeof(*o));
  o->format = format;
  o->local = local;
  o->fp = fp;
  format_buf_init(&o->line);
  o->terminal_width = query_terminal_width(fp);
  o->flags = query_sanitize_flags();
  if (format == QUERY_CSV)
    write_csv_header(fp);
  if (format == QUERY_TABLE)
    o->held = xcalloc(TABLE_SAMPLE, sizeof(row));
  return o;
}

void query_out_task(query_out *o, const reader_task *t) {
  o->count++;
  if (o->format == QUERY_TABLE) {
    make_row(o, t, &o->held[o->nheld++]);
    if (o->nheld == TABLE_SAMPLE || o->widths_fixed)
      release_held(o);
    return;
  }
  if (o->format == QUERY_JSON)
    write_json(o, t);
  else
    write_csv(o, t);
  fwrite(o->line.data, 1, o->line.len, o->fp);
  format_buf_reset(&o->line);
}

void query_out_flush(query_out *o) {
  /* An empty result still prints its header, so a reader sees the
   * columns and that nothing matched. */
  if (o->format == QUERY_TABLE)
    release_held(o);
  fflush(o->fp);
}

int64_t query_out_count(const query_out *o) {
  return o->count;
}

void query_out_free(query_out *o) {
  if (o == NULL)
    return;
  for (int i = 0; i < o->nheld; i++)
    row_free(&o->held[i]);
  free(o->held);
  format_buf_fini(&o->line);
  free(o);
}
