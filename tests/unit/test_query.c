/*
 * test_query - `taskwatch query` as a program: the real binary (argv[1])
 * runs against a fixture store built here (test_query_fixture.h plus a
 * hostile task and a bulk set for percentiles), and its output, stderr and
 * exit status are checked: every format, sorting, stats against
 * independently computed percentiles, show/batch, exit statuses, bad
 * arguments and bad files, and a writer holding the database meanwhile.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_query_fixture.h"

static const char *taskwatch;
static char dir[256];
static char db_path[300];

/* The hostile task: escape sequences and C1 controls in every string. */
#define EVIL_ID FIX_ID(10)
#define BULK_N 1001

typedef struct result {
  int status;
  char *out;
  char *err;
} result;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

/* Runs taskwatch with the given arguments (NULL-terminated, "query"
 * prepended) and an optional TZ. */
static result run_tz(const char *tz, const char *first, ...) {
  const char *argv[64] = {taskwatch, "query"};
  int argc = 2;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a != NULL; a = va_arg(ap, const char *))
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  char out_path[320], err_path[320];
  snprintf(out_path, sizeof(out_path), "%s/out", dir);
  snprintf(err_path, sizeof(err_path), "%s/err", dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(o, 1);
    dup2(e, 2);
    if (tz != NULL)
      setenv("TZ", tz, 1);
    else
      setenv("TZ", "UTC0", 1);
    execv(taskwatch, (char *const *)argv);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  result r = {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
              slurp(out_path), slurp(err_path)};
  return r;
}

#define run(...) run_tz(NULL, __VA_ARGS__, NULL)

static void result_free(result *r) {
  free(r->out);
  free(r->err);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* The line of `text` that contains `needle`, copied, or NULL. */
static char *line_with(const char *text, const char *needle) {
  const char *p = strstr(text, needle);
  if (p == NULL)
    return NULL;
  const char *start = p;
  while (start > text && start[-1] != '\n')
    start--;
  const char *end = strchr(p, '\n');
  size_t n = end ? (size_t)(end - start) : strlen(start);
  char *line = malloc(n + 1);
  memcpy(line, start, n);
  line[n] = '\0';
  return line;
}

static int64_t json_number(const char *line, const char *key) {
  char pattern[64];
  snprintf(pattern, sizeof(pattern), "\"%s\":", key);
  const char *p = strstr(line, pattern);
  if (p == NULL)
    fail_msg("no %s in %s", key, line);
  return strtoll(p + strlen(pattern), NULL, 10);
}

/* ---- fixture ---------------------------------------------------------- */

static void add_extra(sqlite3 *db) {
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "INSERT INTO batches (id, agent, label, created_at) VALUES (%lld, 2,"
           " 'BULK', %lld);"
           "INSERT INTO tasks (id, agent, batch, position, name, mode, status,"
           " enqueued_at, started_at, finished_at, wait_us, run_us,"
           " error_type, error_message) VALUES (%lld, 2, %lld, 0,"
           " 'esc' || char(27) || '[2J' || char(27) || ']0;pwned' || char(7),"
           " 0, 3, %lld, %lld, %lld, 1, 1, 'E' || char(155) || '31m',"
           " 'line1' || char(10) || 'line2' || char(13) || char(8) || char(127)"
           " || char(8238) || 'x')",
           (long long)FIX_BATCH(5), (long long)FIX_T0, (long long)EVIL_ID,
           (long long)FIX_BATCH(3), (long long)(FIX_T0 + 10),
           (long long)(FIX_T0 + 11), (long long)(FIX_T0 + 12));
  assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  /* The bulk set: pseudo-random run and wait times, a few NULL runs. */
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db,
                         "INSERT INTO tasks (id, agent, batch, position,"
                         " name, mode, status, enqueued_at, wait_us, run_us)"
                         " VALUES (?1, 2, ?2, 0, 'bulk', 0, ?3, ?4, ?5, ?6)",
                         -1, &st, NULL),
      SQLITE_OK);
  uint64_t seed = 0x2545f4914f6cdd1du;
  fix_exec(db, "BEGIN");
  for (int i = 0; i < BULK_N; i++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    sqlite3_bind_int64(st, 1, FIX_ID(100 + i));
    sqlite3_bind_int64(st, 2, FIX_BATCH(5));
    sqlite3_bind_int(st, 3, i % 10 == 0 ? 3 : i % 17 == 0 ? 0 : 2);
    sqlite3_bind_int64(st, 4, FIX_T0 + 20 + i);
    sqlite3_bind_int64(st, 5, (int64_t)(seed % 5000));
    if (i % 17 == 0)
      sqlite3_bind_null(st, 6);
    else
      sqlite3_bind_int64(st, 6, (int64_t)((seed >> 20) % 1000000));
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  fix_exec(db, "COMMIT");
  sqlite3_finalize(st);
  assert_int_equal(fixture_rollups(db), SQLITE_OK);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/test_query.XXXXXX");
  if (mkdtemp(dir) == NULL)
    return -1;
  snprintf(db_path, sizeof(db_path), "%s/store.db", dir);
  sqlite3 *db = fixture_open(db_path);
  if (db == NULL)
    return -1;
  fix_exec(db, "PRAGMA journal_mode=WAL");
  add_extra(db);
  sqlite3_close(db);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- listing formats ---------------------------------------------------- */

static void json_lines(void **state) {
  (void)state;
  result r = run("--db", db_path, "--format", "json", "status:failed");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.err, "");
  assert_int_equal(count_lines(r.out), 3 + BULK_N / 10 + 1);
  char *line = line_with(r.out, "\"id\":1099511627778,");
  assert_non_null(line);
  assert_string_equal(
      line,
      "{\"id\":1099511627778,\"batch\":1099511628777,"
      "\"batch_label\":\"POST /send-notification/{email}\",\"position\":1,"
      "\"name\":\"send_email\",\"service\":\"api\",\"host\":\"web-1\","
      "\"pid\":100,\"thread\":77,\"status\":\"failed\",\"mode\":"
      "\"threadpool\",\"enqueued_at\":\"2026-11-22T10:00:00.001000Z\","
      "\"started_at\":\"2026-11-22T10:00:00.003000Z\",\"finished_at\":"
      "\"2026-11-22T10:00:00.253000Z\",\"wait_us\":2000,\"run_us\":250000,"
      "\"error_type\":\"SMTPError\",\"error_message\":\"Connection timeout\","
      "\"error_detail\":\"Traceback (most recent call last):\\n  File "
      "\\\"app.py\\\", line 3\\n\",\"skipped_after\":null,"
      "\"drop_reason\":null}");
  free(line);
  result_free(&r);

  r = run("--db", db_path, "-o", "json", "--name", "write_log");
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 1);
  assert_non_null(strstr(r.out, "\"status\":\"skipped\""));
  assert_non_null(strstr(r.out, "\"skipped_after\":1099511627778,"));
  assert_non_null(strstr(r.out, "\"started_at\":null"));
  assert_non_null(strstr(r.out, "\"run_us\":null"));
  assert_non_null(strstr(r.out, "\"error_type\":null"));
  result_free(&r);

  /* The hostile strings arrive escaped, the JSON stays one line. */
  r = run("--db", db_path, "-o", "json", "name:esc*", "status:failed");
  assert_int_equal(count_lines(r.out), 1);
  assert_non_null(strstr(r.out, "\"name\":\"esc\\u001b[2J\\u001b]0;pwned"
                                "\\u0007\""));
  assert_non_null(strstr(r.out, "\"error_type\":\"E\\u009b31m\""));
  assert_non_null(strstr(r.out, "line1\\nline2\\r\\u0008\\u007f\xe2\x80\xaex"));
  result_free(&r);
}

static void csv_rows(void **state) {
  (void)state;
  result r = run("--db", db_path, "--format", "csv", "--status", "failed",
                 "--service", "api");
  assert_int_equal(r.status, 0);
  assert_string_equal(
      r.out,
      "id,batch,batch_label,position,name,service,host,pid,thread,status,"
      "mode,enqueued_at,started_at,finished_at,wait_us,run_us,error_type,"
      "error_message,error_detail,skipped_after,drop_reason\r\n"
      "1099511627778,1099511628777,POST /send-notification/{email},1,"
      "send_email,api,web-1,100,77,failed,threadpool,"
      "2026-11-22T10:00:00.001000Z,2026-11-22T10:00:00.003000Z,"
      "2026-11-22T10:00:00.253000Z,2000,250000,SMTPError,Connection timeout,"
      "\"Traceback (most recent call last):\n  File \"\"app.py\"\", line "
      "3\n\",,\r\n");
  result_free(&r);
  r = run("--db", db_path, "--format", "csv", "status:lost");
  assert_non_null(strstr(r.out, ",lost,loop,"));
  assert_non_null(strstr(r.out, "evil'; DROP TABLE tasks; --"));
  assert_non_null(strstr(r.out, ",,agent vanished\r\n"));
  result_free(&r);
}

/* Display columns of a UTF-8 line up to byte offset n (every character in
 * these tables is one column wide). */
static int columns(const char *s, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++)
    c += ((unsigned char)s[i] & 0xc0) != 0x80;
  return c;
}

static void table_is_aligned_and_clean(void **state) {
  (void)state;
  result r = run("--db", db_path, "!name:bulk");
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 1 + 10);
  /* Nothing a terminal would interpret: no C0 but newline, no DEL, no C1
   * (raw or UTF-8 encoded), no bidi override. */
  for (const unsigned char *p = (const unsigned char *)r.out; *p; p++) {
    assert_true(*p >= 0x20 || *p == '\n');
    assert_true(*p != 0x7f);
    if (*p == 0xc2)
      assert_false(p[1] >= 0x80 && p[1] <= 0x9f);
    if (*p == 0xe2 && p[1] == 0x80)
      assert_false(p[2] >= 0xaa && p[2] <= 0xae);
  }
  assert_null(strstr(r.out, "\x1b"));
  assert_non_null(strstr(r.out, "esc\xe2\x90\x9b[2J")); /* ␛ shown */
  /* Every row's ENQUEUED starts in the header's column. */
  const char *header = r.out;
  int col = columns(header, (size_t)(strstr(header, "ENQUEUED") - header));
  const char *line = strchr(r.out, '\n') + 1;
  int rows = 0;
  while (*line) {
    const char *at = strstr(line, "2026-11-22T");
    assert_non_null(at);
    assert_int_equal(columns(line, (size_t)(at - line)), col);
    line = strchr(line, '\n') + 1;
    rows++;
  }
  assert_int_equal(rows, 10);
  assert_non_null(strstr(r.out, "SMTPError: Connection timeout"));
  assert_non_null(strstr(r.out, "after 1099511627778"));
  result_free(&r);
}

/* Widths come from the first rows; into a file, a longer value further
 * down is still written whole (here: past the bulk set, sorted by name). */
static void table_into_a_file_is_never_cut(void **state) {
  (void)state;
  result r = run("--db", db_path, "--sort", "name");
  assert_int_equal(r.status, 0);
  char *evil = line_with(r.out, "evil'");
  assert_non_null(evil);
  assert_non_null(strstr(evil, "evil'; DROP TABLE tasks; --"));
  free(evil);
  char *smtp = line_with(r.out, "SMTPError");
  assert_non_null(smtp);
  assert_non_null(strstr(smtp, "SMTPError: Connection timeout"));
  free(smtp);
  assert_null(strstr(r.out, "\xe2\x80\xa6")); /* no ellipsis anywhere */
  result_free(&r);
}

static void table_local_time(void **state) {
  (void)state;
  result r = run_tz("CET-1", "--db", db_path, "--local", "name:fetch", NULL);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "2026-11-22T11:01:00.000000+01:00"));
  result_free(&r);
  r = run_tz("CET-1", "--db", db_path, "name:fetch", NULL);
  assert_non_null(strstr(r.out, "2026-11-22T10:01:00.000000Z"));
  result_free(&r);
}

static void sort_reverse_limit(void **state) {
  (void)state;
  result r = run("--db", db_path, "-o", "json", "--sort", "run", "--reverse",
                 "--limit", "2", "!name:bulk");
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 2);
  assert_int_equal(strncmp(r.out, "{\"id\":1099511627780,", 20), 0); /* 2s */
  const char *second = strchr(r.out, '\n') + 1;
  assert_int_equal(strncmp(second, "{\"id\":1099511627785,", 20), 0); /* 1.5s */
  result_free(&r);
  /* Default order: enqueue time, oldest first; --reverse flips it. */
  r = run("--db", db_path, "-o", "json", "--limit", "1", "!name:bulk");
  assert_non_null(strstr(r.out, "\"id\":1099511627777,"));
  result_free(&r);
  r = run("--db", db_path, "-o", "json", "--limit", "1", "--reverse");
  assert_non_null(strstr(r.out, "\"id\":1099511627784,")); /* T0+2h */
  result_free(&r);
  r = run("--db", db_path, "-o", "json", "--sort", "name", "--limit", "1");
  assert_non_null(strstr(r.out, "\"name\":\"a*b\""));
  result_free(&r);
  r = run("--db", db_path, "--limit", "0");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out,
                      "ID BATCH POS NAME SERVICE STATUS ENQUEUED WAIT RUN "
                      "ERROR\n");
  result_free(&r);
}

/* ---- stats -------------------------------------------------------------- */

/* The nearest-rank percentile by SQL alone: the value at 1-based rank
 * ceil(n * pm / 1000) in ascending order. */
static int64_t sql_percentile(const char *column, unsigned per_mille) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT %s FROM tasks WHERE name = 'bulk' AND %s IS NOT NULL"
           " ORDER BY 1 LIMIT 1 OFFSET ((SELECT count(%s) FROM tasks WHERE"
           " name = 'bulk') * %u + 999) / 1000 - 1",
           column, column, column, per_mille);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void stats_percentiles_exact(void **state) {
  (void)state;
  result r = run("stats", "--db", db_path, "--by", "name", "-o", "json");
  assert_int_equal(r.status, 0);
  char *line = line_with(r.out, "\"name\":\"bulk\"");
  assert_non_null(line);
  assert_int_equal(json_number(line, "count"), BULK_N);
  assert_int_equal(json_number(line, "failed"), (BULK_N + 9) / 10);
  const char *sets[] = {"run", "wait"};
  const char *names[] = {"p50", "p95", "p99", "max"};
  const unsigned pm[] = {500, 950, 990, 1000};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++) {
      char key[32];
      snprintf(key, sizeof(key), "%s_%s_us", sets[k], names[i]);
      char column[16];
      snprintf(column, sizeof(column), "%s_us", sets[k]);
      assert_true(json_number(line, key) == sql_percentile(column, pm[i]));
    }
  assert_non_null(strstr(line, "\"source\":\"raw\""));
  free(line);
  /* The first line is the largest group. */
  assert_int_equal(strncmp(r.out, "{\"name\":\"bulk\"", 14), 0);
  result_free(&r);
}

static void stats_small_and_formats(void **state) {
  (void)state;
  result r =
      run("stats", "--db", db_path, "-o", "json", "!name:bulk", "!name:esc*");
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 1);
  /* runs 10ms 250ms 1.5s 2s; waits 1 2 5 10 300 ms */
  assert_string_equal(
      r.out,
      "{\"count\":9,\"queued\":1,\"running\":1,\"succeeded\":2,\"failed\":2,"
      "\"skipped\":1,\"dropped\":1,\"lost\":1,\"failure_pct\":22.22,"
      "\"run_p50_us\":250000,\"run_p95_us\":2000000,\"run_p99_us\":2000000,"
      "\"run_max_us\":2000000,\"wait_p50_us\":5000,\"wait_p95_us\":300000,"
      "\"wait_p99_us\":300000,\"wait_max_us\":300000,\"source\":\"raw\","
      "\"percentile_error_pct\":0}\n");
  result_free(&r);
  r = run("stats", "--db", db_path, "-o", "csv", "--by", "service",
          "service:api");
  assert_string_equal(
      r.out,
      "service,count,queued,running,succeeded,failed,skipped,dropped,lost,"
      "failure_pct,run_p50_us,run_p95_us,run_p99_us,run_max_us,wait_p50_us,"
      "wait_p95_us,wait_p99_us,wait_max_us,source,percentile_error_pct\r\n"
      "api,5,0,1,2,1,1,0,0,20.00,250000,2000000,2000000,2000000,2000,300000,"
      "300000,300000,raw,0\r\n");
  result_free(&r);
  r = run("stats", "--db", db_path, "--by", "batch_label", "!name:bulk");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "batch_label"));
  assert_non_null(strstr(r.out, "POST /send-notification/{email}"));
  assert_non_null(strstr(r.out, "(none)"));
  assert_non_null(strstr(r.out, "source: raw rows"));
  result_free(&r);
  /* Nothing matched: one all-zero line, null percentiles. */
  r = run("stats", "--db", db_path, "-o", "json", "name:nothing");
  assert_non_null(strstr(r.out, "\"count\":0,"));
  assert_non_null(strstr(r.out, "\"run_p50_us\":null"));
  result_free(&r);
}

/* The tasks of the minutes before T0 that make_pruned() rolls up and
 * then prunes: send_email 12 at T0-120m (2 failed) and 4 at T0-119m,
 * write_log 5 at T0-60m and 2 skipped. */
#define PRUNED_EMAILS 16
static int64_t pruned_run(int i) {
  return 100000 + 10000 * i;
}

/* A store whose raw rows before T0 were pruned, leaving their rollups: the
 * tasks are written, rolled up as the collector does, and deleted. */
static void make_pruned(char *path, size_t len) {
  snprintf(path, len, "%s/pruned.db", dir);
  sqlite3 *db = fixture_open(path);
  assert_non_null(db);
  const int64_t m = INT64_C(60000000);
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db,
                         "INSERT INTO tasks (id, agent, batch, position,"
                         " name, mode, status, enqueued_at, wait_us, run_us)"
                         " VALUES (?1, 1, ?2, 0, ?3, 0, ?4, ?5, ?6, ?7)",
                         -1, &st, NULL),
      SQLITE_OK);
  for (int i = 0; i < PRUNED_EMAILS + 7; i++) {
    int email = i < PRUNED_EMAILS;
    sqlite3_bind_int64(st, 1, FIX_ID(5000 + i));
    sqlite3_bind_int64(st, 2, FIX_BATCH(1));
    sqlite3_bind_text(st, 3, email ? "send_email" : "write_log", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(st, 4, i == 10 || i == 11 ? 3 : i >= 21 ? 4 : 2);
    sqlite3_bind_int64(st, 5,
                       FIX_T0 -
                           (i < 12  ? 120
                            : email ? 119
                                    : 60) *
                               m +
                           i);
    sqlite3_bind_int64(st, 6, 1000 + 100 * i);
    sqlite3_bind_int64(st, 7, pruned_run(i));
    if (i >= 21) {
      sqlite3_bind_null(st, 6);
      sqlite3_bind_null(st, 7);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  assert_int_equal(fixture_rollups(db), SQLITE_OK);
  char sql[128];
  snprintf(sql, sizeof(sql), "DELETE FROM tasks WHERE enqueued_at < %lld",
           (long long)FIX_T0);
  assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  sqlite3_close(db);
}

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Rollups answer the pruned minutes: the counts of pruned and raw tasks
 * add up, max is exact and percentiles are within the stated bound of the
 * exact ones over all of them. Raw rows alone (--exact, or a filter the
 * rollups cannot answer) leave the pruned part out and say so. */
static void stats_from_rollups(void **state) {
  (void)state;
  char pruned[400];
  make_pruned(pruned, sizeof(pruned));
  result r = run("stats", "--db", pruned, "-o", "json", "--by", "name",
                 "name:send_email");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.err, "");
  assert_int_equal(count_lines(r.out), 1);
  assert_int_equal(json_number(r.out, "count"), PRUNED_EMAILS + 2);
  assert_int_equal(json_number(r.out, "succeeded"), PRUNED_EMAILS - 2);
  assert_int_equal(json_number(r.out, "failed"), 4);
  assert_non_null(strstr(r.out, "\"source\":\"rollups\","
                                "\"percentile_error_pct\":1.56}"));
  /* The exact figures over the 18 runs: 16 pruned, 250ms and 1.5s raw. */
  int64_t runs[PRUNED_EMAILS + 2];
  for (int i = 0; i < PRUNED_EMAILS; i++)
    runs[i] = pruned_run(i);
  runs[PRUNED_EMAILS] = 250000;
  runs[PRUNED_EMAILS + 1] = 1500000;
  qsort(runs, PRUNED_EMAILS + 2, sizeof(int64_t), compare_i64);
  const char *keys[] = {"run_p50_us", "run_p95_us", "run_p99_us"};
  const unsigned pm[] = {500, 950, 990};
  for (int k = 0; k < 3; k++) {
    int64_t exact = runs[((PRUNED_EMAILS + 2) * pm[k] + 999) / 1000 - 1];
    int64_t got = json_number(r.out, keys[k]);
    assert_true(llabs(got - exact) <= exact / 64);
  }
  assert_int_equal(json_number(r.out, "run_max_us"), 1500000);
  result_free(&r);
  /* Services are in the rollups too. */
  r = run("stats", "--db", pruned, "-o", "csv", "--by", "service",
          "name:send_email");
  assert_non_null(strstr(r.out, "\r\napi,17,"));
  assert_non_null(strstr(r.out, "\r\nworker,1,"));
  assert_string_equal(r.err, "");
  result_free(&r);
  /* Overall, in the table, with the source named. */
  r = run("stats", "--db", pruned);
  assert_int_equal(count_lines(r.out), 1 + 1 + 1);
  assert_non_null(strstr(r.out, "source: rollups of whole minutes"));
  assert_non_null(strstr(r.out, "within 1.56 %"));
  result_free(&r);
  /* A range that starts inside a pruned minute takes that minute whole. */
  r = run("stats", "--db", pruned, "-o", "json", "name:send_email",
          "since:2026-11-22T08:00:30Z");
  assert_int_equal(json_number(r.out, "count"), PRUNED_EMAILS + 2);
  assert_int_equal(count_lines(r.err), 1);
  assert_non_null(strstr(r.err, "edge minutes whole"));
  result_free(&r);
  /* Raw rows only: the pruned part is left out, and that is said. */
  const char *raw_only[][2] = {{"host:web-*", NULL}, {"--exact", NULL}};
  for (int i = 0; i < 2; i++) {
    r = run("stats", "--db", pruned, "-o", "json", raw_only[i][0],
            "name:send_email");
    assert_int_equal(r.status, 0);
    assert_int_equal(json_number(r.out, "count"), 2);
    assert_non_null(strstr(r.out, "\"source\":\"raw\""));
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "pruned"));
    result_free(&r);
  }
  /* ... unless the range does not reach the pruned part. */
  r = run("stats", "--db", pruned, "-o", "json", "--exact",
          "since:2026-11-22T10:00:00Z");
  assert_string_equal(r.err, "");
  result_free(&r);
}

/* A range of many tasks, with edges inside minutes: the rollups' answer
 * (whole minutes) plus raw rows (the edges, and tasks not final yet) has
 * the exact counts and max of --exact, and percentiles within the bound. */
static void stats_rollups_agree_with_exact(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof(path), "%s/many.db", dir);
  sqlite3 *db = fixture_open(path);
  assert_non_null(db);
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db,
                         "INSERT INTO tasks (id, agent, batch, position,"
                         " name, mode, status, enqueued_at, wait_us, run_us)"
                         " VALUES (?1, ?2, ?3, 0, ?4, 0, ?5, ?6, ?7, ?8)",
                         -1, &st, NULL),
      SQLITE_OK);
  uint64_t seed = 0x9e3779b97f4a7c15u;
  fix_exec(db, "BEGIN");
  for (int i = 0; i < 40000; i++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int status = seed % 50 == 0 ? 3 : seed % 97 == 0 ? 1 : 2;
    sqlite3_bind_int64(st, 1, FIX_ID(10000 + i));
    sqlite3_bind_int(st, 2, 1 + (int)((seed >> 8) % 2));
    sqlite3_bind_int64(st, 3, FIX_BATCH(1));
    sqlite3_bind_text(st, 4, (seed >> 12) % 3 ? "send_email" : "write_log", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(st, 5, status);
    sqlite3_bind_int64(st, 6, FIX_T0 + 3600000000 + i * INT64_C(15000));
    sqlite3_bind_int64(st, 7, (int64_t)((seed >> 16) % 90000));
    if (status == 1)
      sqlite3_bind_null(st, 8);
    else
      sqlite3_bind_int64(st, 8, (int64_t)((seed >> 24) % 5000000));
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  fix_exec(db, "COMMIT");
  sqlite3_finalize(st);
  assert_int_equal(fixture_rollups(db), SQLITE_OK);
  sqlite3_close(db);
  /* 10 minutes and 7.5 s, starting 20.25 s into a minute. */
  const char *range[] = {"since:2026-11-22T11:00:20.25Z",
                         "until:2026-11-22T11:10:27.75Z"};
  result a = run("stats", "--db", path, "-o", "json", "--by", "service",
                 range[0], range[1]);
  result e = run("stats", "--db", path, "-o", "json", "--by", "service",
                 "--exact", range[0], range[1]);
  assert_int_equal(a.status, 0);
  assert_int_equal(e.status, 0);
  assert_int_equal(count_lines(a.out), 2);
  assert_non_null(strstr(a.out, "\"source\":\"rollups\""));
  assert_non_null(strstr(e.out, "\"source\":\"raw\""));
  const char *groups[] = {"\"service\":\"api\"", "\"service\":\"worker\""};
  const char *same[] = {"count",  "queued",     "running",    "succeeded",
                        "failed", "run_max_us", "wait_max_us"};
  const char *near[] = {"run_p50_us",  "run_p95_us",  "run_p99_us",
                        "wait_p50_us", "wait_p95_us", "wait_p99_us"};
  for (int g = 0; g < 2; g++) {
    char *la = line_with(a.out, groups[g]), *le = line_with(e.out, groups[g]);
    assert_non_null(la);
    assert_non_null(le);
    assert_true(json_number(la, "count") > 10000);
    for (size_t k = 0; k < sizeof(same) / sizeof(*same); k++)
      assert_int_equal(json_number(la, same[k]), json_number(le, same[k]));
    for (size_t k = 0; k < sizeof(near) / sizeof(*near); k++) {
      int64_t exact = json_number(le, near[k]);
      assert_true(llabs(json_number(la, near[k]) - exact) <= exact / 64);
    }
    free(la);
    free(le);
  }
  result_free(&a);
  result_free(&e);
}

/* The nearest-rank percentile of `column` over the tasks of `name`
 * enqueued in [lo, hi) of the store at path, by SQL alone. */
static int64_t sql_percentile_in(const char *path, const char *name,
                                 const char *column, int64_t lo, int64_t hi,
                                 unsigned per_mille) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *sql = sqlite3_mprintf(
      "SELECT %s FROM tasks WHERE name = ?1 AND enqueued_at >= ?2 AND"
      " enqueued_at < ?3 AND %s IS NOT NULL ORDER BY 1 LIMIT 1 OFFSET"
      " ((SELECT count(%s) FROM tasks WHERE name = ?1 AND enqueued_at >= ?2"
      " AND enqueued_at < ?3) * %u + 999) / 1000 - 1",
      column, column, column, per_mille);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, lo);
  sqlite3_bind_int64(st, 3, hi);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_free(sql);
  sqlite3_close(db);
  return v;
}

/* --exact by name over the store of stats_rollups_agree_with_exact: every
 * percentile is SQL's nearest rank, whether the rollups placed the bands
 * right (as they do) or not (rows they do not hold shift every rank past
 * the bands' margin, and every sample is read again). */
static void check_exact_by_name(const char *path) {
  const char *range[] = {"since:2026-11-22T11:00:20.25Z",
                         "until:2026-11-22T11:10:27.75Z"};
  int64_t lo = FIX_T0 + INT64_C(3620250000), hi = FIX_T0 + INT64_C(4227750000);
  result e = run("stats", "--db", path, "-o", "json", "--by", "name",
                 "--exact", range[0], range[1]);
  assert_int_equal(e.status, 0);
  static const char *const names[] = {"send_email", "write_log"};
  static const char *const keys[] = {"p50", "p95", "p99"};
  static const unsigned pm[] = {500, 950, 990};
  for (int g = 0; g < 2; g++) {
    char needle[64];
    snprintf(needle, sizeof(needle), "\"name\":\"%s\"", names[g]);
    char *line = line_with(e.out, needle);
    assert_non_null(line);
    for (int c = 0; c < 2; c++)
      for (int k = 0; k < 3; k++) {
        char key[32];
        snprintf(key, sizeof(key), "%s_%s_us", c ? "wait" : "run", keys[k]);
        assert_int_equal(json_number(line, key),
                         sql_percentile_in(path, names[g],
                                           c ? "wait_us" : "run_us", lo, hi,
                                           pm[k]));
      }
    free(line);
  }
  result_free(&e);
}

static void stats_exact_in_bands_and_not(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof(path), "%s/many.db", dir);
  check_exact_by_name(path);
  /* 6,000 slow tasks the rollups never saw, in the middle of the range. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  fix_exec(db, "BEGIN");
  for (int i = 0; i < 6000; i++) {
    char *sql = sqlite3_mprintf(
        "INSERT INTO tasks (id, agent, batch, position, name, mode, status,"
        " enqueued_at, wait_us, run_us) VALUES (%lld, 1, %lld, 0,"
        " 'send_email', 0, 2, %lld, %d, %d)",
        (long long)FIX_ID(100000 + i), (long long)FIX_BATCH(1),
        (long long)(FIX_T0 + INT64_C(3900000000) + i), 900000 + i,
        90000000 + i);
    fix_exec(db, sql);
    sqlite3_free(sql);
  }
  fix_exec(db, "COMMIT");
  sqlite3_close(db);
  check_exact_by_name(path);
}

/* A name filter over a wide range, or none, reads only the hours the
 * rollups (and the unfinished tasks) name: the same tasks, in the same
 * order, as a listing that reads every hour. */
static void list_by_hours_of_the_rollups(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof(path), "%s/hours.db", dir);
  sqlite3 *db = fixture_open(path);
  assert_non_null(db);
  const int64_t h = INT64_C(3600000000);
  const int64_t at[] = {3 * h, 30 * h, 30 * h + 5, 31 * h + 7, 50 * h};
  const int status[] = {2, 3, 2, 1, 0};
  for (int i = 0; i < 5; i++) {
    char sql[300];
    snprintf(sql, sizeof(sql),
             "INSERT INTO tasks (id, agent, batch, position, name, mode,"
             " status, enqueued_at, wait_us, run_us) VALUES (%lld, 1, %lld,"
             " 0, 'rare', %d, %d, %lld, 10, %s)",
             (long long)FIX_ID(7000 + i), (long long)FIX_BATCH(1), i % 2,
             status[i], (long long)(FIX_T0 + at[i]), status[i] >= 2 ? "5" : "NULL");
    assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  }
  assert_int_equal(fixture_rollups(db), SQLITE_OK);
  sqlite3_close(db);
  const char *cases[][3] = {
      {"name:rare", NULL, NULL},
      {"name:rare", "--reverse", NULL},
      {"name:rare", "--limit", "2"},
      {"name:rare", "since:2026-11-23T15:00:00Z", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    const char *extra = cases[i][1] ? cases[i][1] : "-o";
    const char *value = cases[i][1] ? cases[i][2] : "json";
    result a = cases[i][2] || !cases[i][1]
                   ? run("--db", path, "-o", "json", cases[i][0], extra, value)
                   : run("--db", path, "-o", "json", cases[i][0], extra);
    /* mode: is a term the rollups do not know: every hour is read. */
    result b = cases[i][2] || !cases[i][1]
                   ? run("--db", path, "-o", "json", cases[i][0],
                         "mode:loop,threadpool", extra, value)
                   : run("--db", path, "-o", "json", cases[i][0],
                         "mode:loop,threadpool", extra);
    assert_int_equal(a.status, 0);
    assert_string_equal(a.out, b.out);
    assert_true(count_lines(a.out) >= 2);
    result_free(&a);
    result_free(&b);
  }
  result r = run("--db", path, "-o", "json", "name:rare", "--reverse",
                 "--limit", "2");
  assert_int_equal(count_lines(r.out), 2);
  /* The newest is the one still queued, which no rollup holds yet. */
  assert_non_null(strstr(r.out, "\"status\":\"queued\""));
  result_free(&r);
}

/* ---- show and batch --------------------------------------------------------
 */

static void show_task(void **state) {
  (void)state;
  result r = run("show", "--db", db_path, "1099511627779");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "task 1099511627779\n"));
  assert_non_null(strstr(r.out, "status:        skipped"));
  assert_non_null(strstr(r.out, "skipped_after: 1099511627778"));
  char *failed = line_with(r.out, "FAILED");
  assert_non_null(failed);
  assert_non_null(strstr(failed, "send_email"));
  assert_non_null(strstr(failed, "SMTPError: Connection timeout"));
  char *marked = line_with(r.out, "> ");
  assert_non_null(marked);
  assert_non_null(strstr(marked, "write_log"));
  assert_non_null(
      strstr(marked, "skipped because task 1099511627778 (#1 send_email)"));
  free(failed);
  free(marked);
  result_free(&r);
  r = run("show", "--db", db_path, "1099511627778");
  assert_non_null(strstr(r.out, "  error_detail:\n    Traceback (most"));
  assert_non_null(strstr(r.out, "\n      File \"app.py\", line 3\n"));
  result_free(&r);
  r = run("show", "--db", db_path, "-o", "json", "1099511627778");
  assert_int_equal(count_lines(r.out), 1);
  assert_int_equal(strncmp(r.out, "{\"id\":1099511627778,", 20), 0);
  result_free(&r);
  char evil[32];
  snprintf(evil, sizeof(evil), "%lld", (long long)EVIL_ID);
  r = run("show", "--db", db_path, evil);
  assert_null(strchr(r.out, '\x1b'));
  assert_null(strchr(r.out, '\x07'));
  assert_non_null(strstr(r.out, "line1\xe2\x90\x8aline2"));
  result_free(&r);
  r = run("show", "--db", db_path, "1099511699999");
  assert_int_equal(r.status, 1);
  assert_int_equal(count_lines(r.err), 1);
  result_free(&r);
  r = run("show", "--db", db_path, "abc");
  assert_int_equal(r.status, 2);
  result_free(&r);
}

static void batch_view(void **state) {
  (void)state;
  result r = run("batch", "--db", db_path, "1099511628777");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "batch 1099511628777  POST /send-notif"));
  assert_non_null(strstr(r.out, "by api on web-1 pid 100"));
  assert_int_equal(count_lines(r.out), 3 + 3);
  result_free(&r);
  r = run("batch", "--db", db_path, "-o", "json", "1099511628777");
  assert_int_equal(count_lines(r.out), 3);
  char *last = line_with(r.out, "\"position\":2,");
  assert_non_null(last);
  assert_non_null(strstr(last, "write_log"));
  free(last);
  result_free(&r);
  r = run("batch", "--db", db_path, "42");
  assert_int_equal(r.status, 1);
  result_free(&r);
}

/* ---- agents --------------------------------------------------------------- */

/* `query agents`: one row per instance, connected first, with what it
 * dropped as events, tasks and batches, in every format; filtered by the
 * agent's own fields only. */
static void agents_listing(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(fix_exec(db, "UPDATE agents SET dropped = 40, "
                                "dropped_tasks = 9, dropped_batches = 3, "
                                "reconnects = 2, connected = 0, ended = 1 "
                                "WHERE id = 2"),
                   SQLITE_OK);
  sqlite3_close(db);
  result r = run("agents", "--db", db_path);
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 3);
  assert_non_null(strstr(r.out, "DROPPED DROP TASKS DROP BATCHES"));
  /* Connected first. */
  assert_true(strstr(r.out, "api") < strstr(r.out, "worker"));
  char *line = line_with(r.out, "worker");
  assert_non_null(line);
  assert_non_null(strstr(line, " ended "));
  assert_non_null(strstr(line, " 40          9            3          2"));
  free(line);
  result_free(&r);

  r = run("agents", "--db", db_path, "-o", "json");
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 2);
  line = line_with(r.out, "\"service\":\"worker\"");
  assert_non_null(line);
  assert_int_equal(json_number(line, "id"), 2);
  assert_int_equal(json_number(line, "pid"), 200);
  assert_int_equal(json_number(line, "dropped"), 40);
  assert_int_equal(json_number(line, "dropped_tasks"), 9);
  assert_int_equal(json_number(line, "dropped_batches"), 3);
  assert_int_equal(json_number(line, "reconnects"), 2);
  assert_non_null(strstr(line, "\"state\":\"ended\""));
  assert_non_null(strstr(line, "\"disconnected_at\":null"));
  free(line);
  result_free(&r);

  r = run("agents", "--db", db_path, "-o", "csv", "service:work*");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "id,service,host,pid,state,started_at,"
                                "connected_at,disconnected_at,last_event_at,"
                                "events,dropped,dropped_tasks,dropped_batches,"
                                "reconnects\r\n2,worker,web-2,200,ended,"));
  assert_non_null(strstr(r.out, ",10,40,9,3,2\r\n"));
  assert_null(strstr(r.out, "api"));
  result_free(&r);

  /* A term about tasks is refused, in one line. */
  r = run("agents", "--db", db_path, "status:failed");
  assert_int_equal(r.status, 2);
  assert_string_equal(r.err, "taskwatch query: agents are filtered by "
                             "service:, host: and pid: only\n");
  result_free(&r);
  r = run("agents", "--db", db_path, "--fail-if-empty", "pid:7");
  assert_int_equal(r.status, 1);
  result_free(&r);
}

/* ---- exit statuses and errors ----------------------------------------------
 */

static void exit_statuses(void **state) {
  (void)state;
  result r = run("--db", db_path, "--fail-if-empty", "name:nothing");
  assert_int_equal(r.status, 1);
  /* Nothing matched: the table still says which columns it has. */
  assert_string_equal(r.out,
                      "ID BATCH POS NAME SERVICE STATUS ENQUEUED WAIT RUN "
                      "ERROR\n");
  result_free(&r);
  r = run("--db", db_path, "--fail-if-empty", "name:fetch");
  assert_int_equal(r.status, 0);
  result_free(&r);
  r = run("--db", db_path, "--fail-if-any", "status:failed");
  assert_int_equal(r.status, 1);
  assert_true(count_lines(r.out) > 1);
  result_free(&r);
  r = run("--db", db_path, "--fail-if-any", "status:failed",
          "since:2026-11-22T12:00:00Z");
  assert_int_equal(r.status, 0);
  result_free(&r);
  r = run("--db", db_path, "name:nothing");
  assert_int_equal(r.status, 0);
  result_free(&r);
  r = run("stats", "--db", db_path, "--fail-if-any", "status:lost");
  assert_int_equal(r.status, 1);
  result_free(&r);
}

static void one_line_error(const char *what, result r) {
  if (r.status != 2 || count_lines(r.err) != 1 || r.out[0] != '\0')
    fail_msg("%s: status %d, stderr '%s'", what, r.status, r.err);
  assert_int_equal(strncmp(r.err, "taskwatch query: ", 17), 0);
  result_free(&r);
}

static void bad_arguments(void **state) {
  (void)state;
  one_line_error("no db", run("status:failed"));
  one_line_error("bad option", run("--db", db_path, "--frobnicate"));
  one_line_error("no value", run("--db", db_path, "--status"));
  one_line_error("bad status", run("--db", db_path, "--status", "nope"));
  one_line_error("bad term", run("--db", db_path, "colour:red"));
  one_line_error("bad format", run("--db", db_path, "-o", "xml"));
  one_line_error("bad sort", run("--db", db_path, "--sort", "id; DROP"));
  one_line_error("bad limit", run("--db", db_path, "--limit", "-3"));
  one_line_error("bad since", run("--db", db_path, "--since", "tomorrow"));
  one_line_error("bad wait", run("--db", db_path, "--min-wait", "2"));
  one_line_error("bad by", run("stats", "--db", db_path, "--by", "colour"));
  one_line_error("by on list", run("--db", db_path, "--by", "name"));
  one_line_error("show no id", run("show", "--db", db_path));
  one_line_error("quote", run("--db", db_path, "name:\"open"));
  /* The option named is the unknown letter, even inside a cluster. */
  result r = run("--db", db_path, "-zq");
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "unknown option -z (see --help)"));
  result_free(&r);
  r = run("--help");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "Usage: taskwatch query"));
  result_free(&r);
}

static void bad_files(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof(path), "%s/missing.db", dir);
  one_line_error("missing", run("--db", path));
  snprintf(path, sizeof(path), "%s/garbage.db", dir);
  FILE *f = fopen(path, "wb");
  for (int i = 0; i < 4096; i++)
    fputc((i * 7919) & 0xff, f);
  fclose(f);
  one_line_error("garbage", run("--db", path));
  snprintf(path, sizeof(path), "%s/other.db", dir);
  sqlite3 *db = NULL;
  sqlite3_open(path, &db);
  fix_exec(db, "CREATE TABLE x (y)");
  sqlite3_close(db);
  one_line_error("not ours", run("--db", path));
  snprintf(path, sizeof(path), "%s/newer.db", dir);
  sqlite3_open(path, &db);
  fix_exec(db, "PRAGMA user_version = 99");
  sqlite3_close(db);
  result r = run("--db", path);
  assert_non_null(strstr(r.err, "newer"));
  one_line_error("newer", r);
  one_line_error("directory", run("--db", dir));
  /* top says the same with the same status. */
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "'%s' top --once --db '%s/missing.db' 2>/dev/null",
           taskwatch, dir);
  int status = system(cmd);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 2);
}

/* A writer in the middle of a transaction (as the collector always is)
 * neither blocks nor fails a query, which sees the last commit. */
static void writer_holds_the_database(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(fix_exec(db, "BEGIN IMMEDIATE"), SQLITE_OK);
  assert_int_equal(fix_exec(db, "UPDATE tasks SET status = 6"), SQLITE_OK);
  result r = run("--db", db_path, "-o", "json", "--fail-if-any", "status:lost",
                 "!name:esc*");
  assert_int_equal(r.status, 1);
  assert_int_equal(count_lines(r.out), 1);
  result_free(&r);
  r = run("stats", "--db", db_path, "-o", "json");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "\"lost\":1,"));
  result_free(&r);
  assert_int_equal(fix_exec(db, "ROLLBACK"), SQLITE_OK);
  sqlite3_close(db);
}

/* ---- odd stored values -----------------------------------------------------
 */

/* Names may hold NUL bytes: every output keeps the whole text (the NUL
 * shown as "␀" in the table and the timeline) and stats groups them. An
 * unknown status code reads "?". Runs last: it changes the store. */
static void nul_bytes_and_unknown_status(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  char sql[256];
  snprintf(sql, sizeof(sql),
           "UPDATE tasks SET name = CAST(X'53005a5a5a5a5a5a5a5a5a5a' AS TEXT)"
           " WHERE id IN (1099511627778, 1099511627779);"
           "UPDATE tasks SET status = 9 WHERE id = %lld",
           (long long)FIX_ID(100));
  assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  sqlite3_close(db);
  const char *shown = "S\xe2\x90\x80ZZZZZZZZZZ";
  result r = run("show", "--db", db_path, "1099511627779");
  assert_int_equal(r.status, 0);
  char *marked = line_with(r.out, "> ");
  assert_non_null(marked);
  char want[64];
  snprintf(want, sizeof(want), "(#1 %s) failed", shown);
  assert_non_null(strstr(marked, want));
  free(marked);
  result_free(&r);
  r = run("--db", db_path, "id:1099511627778");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, shown));
  result_free(&r);
  r = run("stats", "--db", db_path, "--by", "name");
  assert_int_equal(r.status, 0);
  char *group = line_with(r.out, shown);
  assert_non_null(group);
  assert_null(strstr(strstr(r.out, shown) + 1, shown));
  assert_non_null(strstr(group, " 2 "));
  free(group);
  result_free(&r);
  snprintf(want, sizeof(want), "%lld", (long long)FIX_ID(100));
  r = run("show", "--db", db_path, want);
  assert_int_equal(r.status, 0);
  char *row = line_with(r.out, "> ");
  assert_non_null(row);
  assert_non_null(strstr(row, " ?  "));
  free(row);
  result_free(&r);
}

/* A time RFC 3339 cannot express (year 287000): JSON says null, CSV
 * leaves the field empty, the table shows "-". Changes the store. */
static void out_of_range_times(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  char sql[256], id[32];
  snprintf(sql, sizeof(sql),
           "UPDATE tasks SET enqueued_at = 9000000000000000000, started_at ="
           " 9000000000000000000 WHERE id = %lld",
           (long long)FIX_ID(101));
  assert_int_equal(fix_exec(db, sql), SQLITE_OK);
  sqlite3_close(db);
  snprintf(id, sizeof(id), "id:%lld", (long long)FIX_ID(101));
  result r = run("--db", db_path, "-o", "json", id);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "\"enqueued_at\":null,\"started_at\":null,"));
  result_free(&r);
  r = run("--db", db_path, "-o", "csv", id);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, ",,,"));
  assert_null(strstr(r.out, "9000000000000000000"));
  result_free(&r);
  r = run("--db", db_path, id);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, " - "));
  assert_null(strstr(r.out, "9000000000000000000"));
  result_free(&r);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_query PATH_TO_TASKWATCH\n");
    return 2;
  }
  taskwatch = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(json_lines),
      cmocka_unit_test(csv_rows),
      cmocka_unit_test(table_is_aligned_and_clean),
      cmocka_unit_test(table_into_a_file_is_never_cut),
      cmocka_unit_test(table_local_time),
      cmocka_unit_test(sort_reverse_limit),
      cmocka_unit_test(stats_percentiles_exact),
      cmocka_unit_test(stats_small_and_formats),
      cmocka_unit_test(stats_from_rollups),
      cmocka_unit_test(stats_rollups_agree_with_exact),
      cmocka_unit_test(stats_exact_in_bands_and_not),
      cmocka_unit_test(list_by_hours_of_the_rollups),
      cmocka_unit_test(show_task),
      cmocka_unit_test(batch_view),
      cmocka_unit_test(agents_listing),
      cmocka_unit_test(exit_statuses),
      cmocka_unit_test(bad_arguments),
      cmocka_unit_test(bad_files),
      cmocka_unit_test(writer_holds_the_database),
      cmocka_unit_test(nul_bytes_and_unknown_status),
      cmocka_unit_test(out_of_range_times),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
