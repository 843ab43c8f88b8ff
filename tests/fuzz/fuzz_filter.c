/*
 * fuzz_filter - libFuzzer target for the filter language and the parsers
 * under it. For any input: filter_parse either fails with a one-line,
 * printable-ASCII reason, or yields SQL that prepares and runs against the
 * real schema, binds exactly its parameters, and holds no string literal
 * but the fixed ESCAPE '\' (so no input was spliced into the text). The
 * same bytes also go through the duration and time parsers and the JSON
 * escaper, whose output must be valid UTF-8 without raw control bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "format.h"
#include "schema.h"

static sqlite3 *db;

static void check_reason(const char *err) {
  if (err[0] == '\0')
    abort();
  for (const unsigned char *p = (const unsigned char *)err; *p; p++)
    if (*p < 0x20 || *p >= 0x7f)
      abort();
}

static void check_sql(const char *sql) {
  /* The only quote may be the ESCAPE clause's '\'. */
  for (const char *p = strchr(sql, '\''); p; p = strchr(p + 3, '\'')) {
    if (strncmp(p, "'\\'", 3) != 0)
      abort();
  }
}

static void run_filter(const char *text) {
  filter *f = NULL;
  char err[256] = "";
  if (filter_parse(text, INT64_C(1795341600000000), &f, err, sizeof(err)) !=
      0) {
    if (f != NULL)
      abort();
    check_reason(err);
    return;
  }
  const char *where = filter_sql(f);
  check_sql(where);
  char *sql = sqlite3_mprintf(
      "SELECT t.id FROM tasks t JOIN agents a ON a.id = t.agent LEFT JOIN "
      "batches b ON b.id = t.batch WHERE %s LIMIT 5",
      where);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    abort();
  if (sqlite3_bind_parameter_count(st) != filter_param_count(f))
    abort();
  if (filter_bind(f, st, 1) != filter_param_count(f) + 1)
    abort();
  while (sqlite3_step(st) == SQLITE_ROW)
    ;
  sqlite3_finalize(st);
  sqlite3_free(sql);
  char *at = filter_sql_at(f, 7);
  check_sql(at);
  free(at);
  filter_free(f);
}

static void check_json(const char *s, size_t n) {
  format_buf b;
  format_buf_init(&b);
  format_json_string(&b, s, n);
  const unsigned char *u = (const unsigned char *)format_buf_str(&b);
  for (size_t i = 0; i < b.len;) {
    unsigned char c = u[i];
    if (c < 0x20 || c == 0x7f)
      abort();
    size_t len = c < 0x80    ? 1
                 : c >= 0xf0 ? 4
                 : c >= 0xe0 ? 3
                 : c >= 0xc2 ? 2
                             : 0;
    if (len == 0 || i + len > b.len)
      abort();
    for (size_t k = 1; k < len; k++)
      if ((u[i + k] & 0xc0) != 0x80)
        abort();
    i += len;
  }
  format_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (db == NULL) {
    char *err = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        schema_apply(db, &err) != SQLITE_OK)
      abort();
    sqlite3_exec(
        db,
        "INSERT INTO agents (id, instance, service, host, pid,"
        " started_at) VALUES (1, x'01', 'api', 'h', 1, 0);"
        "INSERT INTO batches (id, agent, label, created_at) VALUES (1, 1, "
        "'GET /', 0);"
        "INSERT INTO tasks (id, agent, batch, position, name, mode,"
        " status, enqueued_at, run_us, error_message) VALUES"
        " (1, 1, 1, 0, 'send_email', 0, 3, 5, 10, 'timeout')",
        NULL, NULL, NULL);
  }
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  run_filter(text);
  int64_t v;
  format_parse_duration(text, &v);
  format_parse_time(text, 0, &v);
  char buf[FORMAT_TIME_SIZE];
  if (size >= 8) {
    int64_t us;
    memcpy(&us, data, 8);
    if (format_time_utc(us, buf, sizeof(buf)) >= 0 &&
        (format_parse_time(buf, 0, &v) != 0 || v != us))
      abort();
    format_duration(us, buf, sizeof(buf));
  }
  check_json((const char *)data, size);
  free(text);
  return 0;
}
