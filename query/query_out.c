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
 */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "format.h"
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

/* ---- JSON --------------------------------------------------------------- */

/* Appends `,"key":`. */
static void json_key(format_buf *b, const char *key) {
  format_buf_puts(b, ",\"");
  format_buf_puts(b, key);
  format_buf_puts(b, "\":");
}

/* Appends a decimal integer without printf's machinery (hot in exports). */
static void put_int(format_buf *b, int64_t v) {
  char digits[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  if (v < 0)
    format_buf_putc(b, '-');
  while (n > 0)
    format_buf_putc(b, digits[--n]);
}

static void json_text(format_buf *b, const char *key, reader_text s) {
  json_key(b, key);
  if (s.ptr == NULL)
    format_buf_puts(b, "null");
  else
    format_json_string(b, s.ptr, s.len);
}

/* A name from the schema's tables, or null when the code has none. */
static void json_name(format_buf *b, const char *key, const char *name) {
  json_text(b, key, (reader_text){name, name ? strlen(name) : 0});
}

static void json_int(format_buf *b, const char *key, int64_t v) {
  json_key(b, key);
  if (v != READER_NULL)
    put_int(b, v);
  else
    format_buf_puts(b, "null");
}

static void json_time(format_buf *b, const char *key, int64_t v) {
  char when[FORMAT_TIME_SIZE];
  json_key(b, key);
  if (v == READER_NULL) {
    format_buf_puts(b, "null");
    return;
  }
  if (query_format_time(when, sizeof(when), v, 0) != 0) {
    format_buf_puts(b, "null"); /* out of RFC 3339's range */
    return;
  }
  format_buf_putc(b, '"');
  format_buf_puts(b, when);
  format_buf_putc(b, '"');
}

static void write_json(query_out *o, const reader_task *t) {
  format_buf *b = &o->line;
  format_buf_printf(b, "{\"id\":%lld", (long long)t->id);
  json_int(b, "batch", t->batch);
  json_text(b, "batch_label", t->label);
  json_int(b, "position", t->position);
  json_text(b, "name", t->name);
  json_text(b, "service", t->service);
  json_text(b, "host", t->host);
  json_int(b, "pid", t->pid);
  if (t->thread != READER_NULL)
    format_buf_printf(b, ",\"thread\":%llu", (unsigned long long)t->thread);
  else
    format_buf_puts(b, ",\"thread\":null");
  json_name(b, "status", schema_status_name(t->status));
  json_name(b, "mode", schema_mode_name(t->mode));
  json_time(b, "enqueued_at", t->enqueued_at);
  json_time(b, "started_at", t->started_at);
  json_time(b, "finished_at", t->finished_at);
  json_int(b, "wait_us", t->wait_us);
  json_int(b, "run_us", t->run_us);
  json_text(b, "error_type", t->error_type);
  json_text(b, "error_message", t->error_message);
  json_text(b, "error_detail", t->error_detail);
  json_int(b, "skipped_after", t->skipped_after);
  json_text(b, "drop_reason", t->drop_reason);
  format_buf_puts(b, "}\n");
}

/* ---- CSV ---------------------------------------------------------------- */

static const char csv_header[] =
    "id,batch,batch_label,position,name,service,host,pid,thread,status,mode,"
    "enqueued_at,started_at,finished_at,wait_us,run_us,error_type,"
    "error_message,error_detail,skipped_after,drop_reason\r\n";

static void csv_text(format_buf *b, reader_text s) {
  format_buf_putc(b, ',');
  if (s.ptr != NULL)
    format_csv_field(b, s.ptr, s.len);
}

/* A name from the schema's tables; an empty field when the code has none. */
static void csv_name(format_buf *b, const char *name) {
  csv_text(b, (reader_text){name ? name : "", name ? strlen(name) : 0});
}

static void csv_int(format_buf *b, int64_t v) {
  if (v != READER_NULL)
    format_buf_printf(b, ",%lld", (long long)v);
  else
    format_buf_putc(b, ',');
}

static void csv_time(format_buf *b, int64_t v) {
  char when[FORMAT_TIME_SIZE];
  format_buf_putc(b, ',');
  if (v != READER_NULL && query_format_time(when, sizeof(when), v, 0) == 0)
    format_buf_puts(b, when);
}

static void write_csv(query_out *o, const reader_task *t) {
  format_buf *b = &o->line;
  format_buf_printf(b, "%lld", (long long)t->id);
  csv_int(b, t->batch);
  csv_text(b, t->label);
  csv_int(b, t->position);
  csv_text(b, t->name);
  csv_text(b, t->service);
  csv_text(b, t->host);
  csv_int(b, t->pid);
  if (t->thread != READER_NULL)
    format_buf_printf(b, ",%llu", (unsigned long long)t->thread);
  else
    format_buf_putc(b, ',');
  csv_name(b, schema_status_name(t->status));
  csv_name(b, schema_mode_name(t->mode));
  csv_time(b, t->enqueued_at);
  csv_time(b, t->started_at);
  csv_time(b, t->finished_at);
  csv_int(b, t->wait_us);
  csv_int(b, t->run_us);
  csv_text(b, t->error_type);
  csv_text(b, t->error_message);
  csv_text(b, t->error_detail);
  csv_int(b, t->skipped_after);
  csv_text(b, t->drop_reason);
  format_buf_puts(b, "\r\n");
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

/* Sets the column widths from the held rows, then narrows the shrinkable
 * columns until the table fits the terminal. */
static void fix_widths(query_out *o) {
  for (int c = 0; c < COL_COUNT; c++) {
    o->width[c] = (int)strlen(headers[c]);
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
  char *shown = sanitize_dup(s, strlen(s), o->width[c],
                             o->flags | SANITIZE_ELLIPSIS, NULL);
  int w = sanitize_width(shown, strlen(shown), o->flags);
  int pad = o->width[c] - w;
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
    fputs(csv_header, fp);
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
  if (o->format == QUERY_TABLE && (o->nheld > 0 || o->count > 0))
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
