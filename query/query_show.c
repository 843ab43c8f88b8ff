/*
 * query_show - `taskwatch query show ID` (one task whole, then its batch's
 * timeline: what ran, which task failed, which were skipped because of it)
 * and `taskwatch query batch ID` (the batch's header and timeline). In JSON
 * or CSV both print task rows as the listing does; the text form is for
 * people and goes through the display sanitizer line by line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "query.h"
#include "sanitize.h"
#include "schema.h"

static int parse_id(const char *text, int64_t *id) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v <= 0)
    return -1;
  *id = v;
  return 0;
}

/* Appends s sanitized, at most max_cols columns (negative: no limit). */
static void put_clean(format_buf *b, const char *s, size_t len, int max_cols) {
  char *shown = sanitize_dup(s, len, max_cols,
                             query_sanitize_flags() | SANITIZE_ELLIPSIS, NULL);
  format_buf_puts(b, shown);
  free(shown);
}

/* The same, padded with blanks to exactly `cols` columns. */
static void put_padded(format_buf *b, const char *s, size_t len, int cols) {
  int w;
  char *shown = sanitize_dup(s, len, cols,
                             query_sanitize_flags() | SANITIZE_ELLIPSIS, &w);
  format_buf_puts(b, shown);
  for (; w < cols; w++)
    format_buf_putc(b, ' ');
  free(shown);
}

static void field(format_buf *b, const char *key, reader_text s) {
  if (s.ptr == NULL)
    return;
  format_buf_printf(b, "  %-14s ", key);
  put_clean(b, s.ptr, s.len, -1);
  format_buf_putc(b, '\n');
}

static void time_field(format_buf *b, const char *key, int64_t us, int local) {
  char when[FORMAT_TIME_SIZE];
  if (us == READER_NULL)
    return;
  query_format_time(when, sizeof(when), us, local);
  format_buf_printf(b, "  %-14s %s\n", key, when);
}

static void duration_field(format_buf *b, const char *key, int64_t us) {
  char text[32];
  if (us == READER_NULL)
    return;
  format_duration(us, text, sizeof(text));
  format_buf_printf(b, "  %-14s %s (%lld us)\n", key, text, (long long)us);
}

/* The error detail (a traceback) keeps its lines, each one sanitized. */
static void detail_field(format_buf *b, reader_text detail) {
  if (detail.ptr == NULL)
    return;
  format_buf_puts(b, "  error_detail:\n");
  const char *s = detail.ptr;
  size_t len = detail.len, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != '\n')
      continue;
    if (i == len && i == start && start > 0)
      break; /* the detail's final newline ends it; no empty last line */
    size_t end = i > start && s[i - 1] == '\r' ? i - 1 : i;
    format_buf_puts(b, "    ");
    put_clean(b, s + start, end - start, -1);
    format_buf_putc(b, '\n');
    start = i + 1;
  }
}

static void describe_task(format_buf *b, const reader_task *t, int local) {
  const char *status = schema_status_name(t->status);
  const char *mode = schema_mode_name(t->mode);
  format_buf_printf(b, "task %lld\n", (long long)t->id);
  field(b, "name:", t->name);
  format_buf_printf(b, "  %-14s %s\n", "status:", status ? status : "?");
  format_buf_printf(b, "  %-14s %lld\n", "batch:", (long long)t->batch);
  field(b, "batch_label:", t->label);
  format_buf_printf(b, "  %-14s %lld\n", "position:", (long long)t->position);
  format_buf_printf(b, "  %-14s %s\n", "mode:", mode ? mode : "?");
  field(b, "service:", t->service);
  field(b, "host:", t->host);
  if (t->pid != READER_NULL)
    format_buf_printf(b, "  %-14s %lld\n", "pid:", (long long)t->pid);
  if (t->thread != READER_NULL)
    format_buf_printf(b, "  %-14s %llu\n",
                      "thread:", (unsigned long long)t->thread);
  time_field(b, "enqueued_at:", t->enqueued_at, local);
  time_field(b, "started_at:", t->started_at, local);
  time_field(b, "finished_at:", t->finished_at, local);
  duration_field(b, "wait:", t->wait_us);
  duration_field(b, "run:", t->run_us);
  field(b, "error_type:", t->error_type);
  field(b, "error_message:", t->error_message);
  detail_field(b, t->error_detail);
  if (t->skipped_after != READER_NULL)
    format_buf_printf(b, "  %-14s %lld\n",
                      "skipped_after:", (long long)t->skipped_after);
  field(b, "drop_reason:", t->drop_reason);
}

/* What the timeline says about one task of the batch. */
static void timeline_note(format_buf *b, const reader_task *t,
                          const reader_task *failed) {
  if (t->status == SCHEMA_FAILED) {
    format_buf_puts(b, "FAILED ");
    if (t->error_type.ptr)
      put_clean(b, t->error_type.ptr, t->error_type.len, 40);
    if (t->error_message.ptr) {
      format_buf_puts(b, ": ");
      put_clean(b, t->error_message.ptr, t->error_message.len, 60);
    }
  } else if (t->status == SCHEMA_SKIPPED && t->skipped_after != READER_NULL) {
    format_buf_printf(b, "skipped because task %lld",
                      (long long)t->skipped_after);
    if (failed != NULL && failed->id == t->skipped_after) {
      format_buf_printf(b, " (#%lld ", (long long)failed->position);
      put_clean(b, failed->name.ptr ? failed->name.ptr : "", failed->name.len,
                40);
      format_buf_puts(b, ") failed");
    } else {
      format_buf_puts(b, " failed");
    }
  } else if (t->drop_reason.ptr != NULL) {
    put_clean(b, t->drop_reason.ptr, t->drop_reason.len, 60);
  }
}

/* Prints the batch's tasks in position order, marking `mark` (0: none).
 * Returns the number of tasks, or -1 on a database error. */
static int timeline(sqlite3 *db, int64_t batch, int64_t mark, query_out *out) {
  sqlite3_stmt *st =
      query_prepare(db, "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
                        " WHERE t.batch = ?1 ORDER BY t.position, t.id");
  if (st == NULL)
    return -1;
  sqlite3_bind_int64(st, 1, batch);
  format_buf b;
  format_buf_init(&b);
  /* The failed task comes before those it caused to be skipped, so one
   * pass can name it in their lines. */
  reader_task t, failed = {0};
  int has_failed = 0, n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    reader_task_read(st, 0, &t);
    n++;
    if (out != NULL) {
      query_out_task(out, &t);
      continue;
    }
    char run[32] = "-";
    if (t.run_us != READER_NULL)
      format_duration(t.run_us, run, sizeof(run));
    format_buf_printf(&b, "%s %4lld  %-20lld ", t.id == mark ? ">" : " ",
                      (long long)t.position, (long long)t.id);
    put_padded(&b, t.name.ptr ? t.name.ptr : "", t.name.len, 24);
    const char *status = schema_status_name(t.status);
    format_buf_printf(&b, "  %-9s %8s  ", status ? status : "?", run);
    timeline_note(&b, &t, has_failed ? &failed : NULL);
    format_buf_putc(&b, '\n');
    if (t.status == SCHEMA_FAILED && !has_failed) {
      reader_task_copy(&failed, &t); /* its text outlives the row */
      has_failed = 1;
    }
  }
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
  reader_task_fini(&failed);
  if (rc != SQLITE_DONE)
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? n : -1;
}

static void batch_header(sqlite3 *db, int64_t batch, int local) {
  sqlite3_stmt *st = query_prepare(
      db, "SELECT b.label, b.created_at, a.service, a.host, a.pid"
          " FROM batches b JOIN agents a ON a.id = b.agent WHERE b.id = ?1");
  if (st == NULL)
    return;
  sqlite3_bind_int64(st, 1, batch);
  format_buf b;
  format_buf_init(&b);
  format_buf_printf(&b, "batch %lld", (long long)batch);
  if (sqlite3_step(st) == SQLITE_ROW) {
    const char *label = (const char *)sqlite3_column_text(st, 0);
    const char *service = (const char *)sqlite3_column_text(st, 2);
    const char *host = (const char *)sqlite3_column_text(st, 3);
    char when[FORMAT_TIME_SIZE];
    query_format_time(when, sizeof(when), sqlite3_column_int64(st, 1), local);
    if (label != NULL) {
      format_buf_puts(&b, "  ");
      put_clean(&b, label, (size_t)sqlite3_column_bytes(st, 0), 80);
    }
    format_buf_printf(&b, "\n  created %s by ", when);
    put_clean(&b, service ? service : "", strlen(service ? service : ""), 40);
    format_buf_puts(&b, " on ");
    put_clean(&b, host ? host : "", strlen(host ? host : ""), 40);
    format_buf_printf(&b, " pid %lld", (long long)sqlite3_column_int64(st, 4));
  }
  format_buf_puts(&b, "\n   POS  ID                   NAME                    "
                      "  STATUS         RUN  NOTE\n");
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
  sqlite3_finalize(st);
}

int query_show(reader *r, const query_opts *o) {
  sqlite3 *db = reader_db(r);
  int64_t id;
  if (parse_id(o->target, &id) != 0) {
    fprintf(stderr, "taskwatch query: '%s' is not a task id\n", o->target);
    return 2;
  }
  sqlite3_stmt *st = query_prepare(
      db, "SELECT " READER_TASK_COLUMNS READER_TASK_FROM " WHERE t.id = ?1");
  if (st == NULL)
    return 2;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    if (rc == SQLITE_DONE)
      fprintf(stderr, "taskwatch query: no task %lld\n", (long long)id);
    else
      fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 1 : 2;
  }
  reader_task t;
  reader_task_read(st, 0, &t);
  int64_t batch = t.batch;
  if (o->format != QUERY_TABLE) {
    query_out *out = query_out_new(o->format, o->local, stdout);
    query_out_task(out, &t);
    query_out_flush(out);
    query_out_free(out);
    sqlite3_finalize(st);
    return 0;
  }
  format_buf b;
  format_buf_init(&b);
  describe_task(&b, &t, o->local);
  format_buf_putc(&b, '\n');
  fputs(format_buf_str(&b), stdout);
  format_buf_fini(&b);
  sqlite3_finalize(st);
  batch_header(db, batch, o->local);
  int n = timeline(db, batch, id, NULL);
  fflush(stdout);
  return n < 0 ? 2 : 0;
}

int query_batch(reader *r, const query_opts *o) {
  sqlite3 *db = reader_db(r);
  int64_t id;
  if (parse_id(o->target, &id) != 0) {
    fprintf(stderr, "taskwatch query: '%s' is not a batch id\n", o->target);
    return 2;
  }
  int n;
  if (o->format == QUERY_TABLE) {
    batch_header(db, id, o->local);
    n = timeline(db, id, 0, NULL);
  } else {
    query_out *out = query_out_new(o->format, o->local, stdout);
    n = timeline(db, id, 0, out);
    query_out_flush(out);
    query_out_free(out);
  }
  fflush(stdout);
  if (n < 0)
    return 2;
  if (n == 0) {
    fprintf(stderr, "taskwatch query: no tasks in batch %lld\n", (long long)id);
    return 1;
  }
  return 0;
}
