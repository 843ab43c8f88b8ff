/*
 * bench_query - how fast `taskwatch query` answers from a big store.
 *
 * Generates (or reuses, with --db PATH of an earlier run) a store of N tasks
 * (default 10,000,000) spread over 7 days: 8 agents, batches of 3 tasks from
 * 10 routes, 20 task names, ~1 % failed (half of them timeouts) with their
 * followers skipped, a few dropped and lost. Rows go in with one prepared
 * INSERT in large transactions, journal off, the schema's own indexes in
 * place, and no ANALYZE (the collector's stores have none either).
 *
 * Then runs the real binary, as a user would (process start, open, query,
 * JSON to a file), REPS times per query kind (a quarter of that for the
 * day-long stats), each time over a different hour or day of the data, and
 * prints `key: value` lines: p50 and p95 of wall time and of the child's
 * CPU time (user + system; steadier on a shared machine) in milliseconds,
 * plus rows per answer. The wall times include starting the process and
 * opening the store (a few ms). Figures only; it never fails on speed.
 *
 * usage: bench_query [--db PATH] [--tasks N] [--reps N] [--bin TASKWATCH]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "format.h"
#include "schema.h"
#include "stats.h"

#ifndef TASKWATCH_BIN
#define TASKWATCH_BIN "taskwatch"
#endif

#define US_PER_HOUR INT64_C(3600000000)
#define SPAN_US (7 * 24 * US_PER_HOUR)
#define AGENTS 8

static const char *const names[20] = {
    "write_notification", "send_email",    "write_log",    "resize_image",
    "charge_card",        "refund",        "sync_crm",     "index_document",
    "send_sms",           "push_webhook",  "generate_pdf", "update_search",
    "warm_cache",         "audit_event",   "notify_slack", "compress_upload",
    "expire_sessions",    "recalc_totals", "export_csv",   "geocode_address"};
static const char *const routes[10] = {"POST /send-notification/{email}",
                                       "POST /orders",
                                       "GET /items",
                                       "POST /upload",
                                       "PUT /users/{id}",
                                       "POST /refunds",
                                       "POST /webhooks/{source}",
                                       "GET /reports/{id}",
                                       "POST /login",
                                       "DELETE /sessions/{id}"};
static const char *const services[4] = {"api", "worker", "billing", "mail"};

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exec_sql(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "bench_query: %s: %s\n", sql, err);
    sqlite3_free(err);
    return -1;
  }
  return 0;
}

/* A duration with a long tail: mostly around `typical`, sometimes 30x. */
static int64_t duration(int64_t typical) {
  uint64_t r = next_random();
  int64_t v = typical / 2 + (int64_t)(r % (uint64_t)typical);
  if (r % 100 == 0)
    v *= 30;
  return v;
}

typedef struct gen {
  sqlite3 *db;
  sqlite3_stmt *task, *batch;
  int64_t t0;
  int64_t local[AGENTS + 1];
} gen;

static void insert_task(gen *g, int agent, int64_t batch, int pos,
                        const char *name, int status, int64_t enq,
                        int64_t cause) {
  sqlite3_stmt *st = g->task;
  int64_t id = schema_global_id(agent, (uint64_t)++g->local[agent]);
  int64_t wait = duration(2000), run = duration(40000);
  int ran = status == SCHEMA_SUCCEEDED || status == SCHEMA_FAILED;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int(st, 2, agent);
  sqlite3_bind_int64(st, 3, batch);
  sqlite3_bind_int(st, 4, pos);
  sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 6, (int)(next_random() % 2));
  sqlite3_bind_int(st, 7, status);
  sqlite3_bind_int64(st, 8, enq);
  for (int i = 9; i <= 17; i++)
    sqlite3_bind_null(st, i);
  if (ran || status == SCHEMA_RUNNING) {
    sqlite3_bind_int64(st, 9, enq + wait);
    sqlite3_bind_int64(st, 11, wait);
  }
  if (ran) {
    sqlite3_bind_int64(st, 10, enq + wait + run);
    sqlite3_bind_int64(st, 12, run);
  } else if (status >= SCHEMA_SKIPPED) {
    sqlite3_bind_int64(st, 10, enq + wait);
  }
  if (status == SCHEMA_FAILED) {
    int timeout = next_random() % 2 == 0;
    sqlite3_bind_text(st, 13, timeout ? "TimeoutError" : "SMTPError", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 14,
                      timeout ? "read timed out after 30s"
                              : "550 mailbox unavailable",
                      -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 15, "Traceback (most recent call last):\n  ...", -1,
                      SQLITE_STATIC);
  }
  if (status == SCHEMA_SKIPPED)
    sqlite3_bind_int64(st, 16, cause);
  if (status == SCHEMA_DROPPED || status == SCHEMA_LOST)
    sqlite3_bind_text(
        st, 17, status == SCHEMA_LOST ? "agent vanished" : "response failed",
        -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE)
    fprintf(stderr, "bench_query: insert: %s\n", sqlite3_errmsg(g->db));
  sqlite3_reset(st);
}

/* One batch of three tasks at time `at`. */
static void insert_batch(gen *g, int64_t at, int last_minutes) {
  int agent = 1 + (int)(next_random() % AGENTS);
  int64_t batch = schema_global_id(agent, (uint64_t)++g->local[agent]);
  uint64_t r = next_random();
  const char *route = routes[r % 10];
  sqlite3_bind_int64(g->batch, 1, batch);
  sqlite3_bind_int(g->batch, 2, agent);
  sqlite3_bind_text(g->batch, 3, route, -1, SQLITE_STATIC);
  sqlite3_bind_int64(g->batch, 4, at);
  sqlite3_step(g->batch);
  sqlite3_reset(g->batch);
  /* Names skew towards the first few, as real workloads do. */
  int first = (int)((r >> 8) % 7) * 3 % 18;
  int fail_at = (r >> 20) % 100 == 0 ? (int)((r >> 28) % 3) : -1;
  int whole = (r >> 32) % 400 == 0                 ? SCHEMA_DROPPED
              : (r >> 32) % 1000 == 1              ? SCHEMA_LOST
              : last_minutes && (r >> 32) % 3 == 0 ? SCHEMA_RUNNING
                                                   : -1;
  int64_t failed = 0;
  for (int pos = 0; pos < 3; pos++) {
    int status = SCHEMA_SUCCEEDED;
    if (whole >= 0)
      status = whole;
    else if (pos == fail_at)
      status = SCHEMA_FAILED;
    else if (fail_at >= 0 && pos > fail_at)
      status = SCHEMA_SKIPPED;
    insert_task(g, agent, batch, pos, names[first + pos], status, at + pos,
                failed);
    if (status == SCHEMA_FAILED)
      failed = schema_global_id(agent, (uint64_t)g->local[agent]);
  }
}

static int generate(const char *path, int64_t tasks, int64_t t0) {
  gen g = {0};
  char *err = NULL;
  g.t0 = t0;
  if (sqlite3_open(path, &g.db) != SQLITE_OK ||
      schema_apply(g.db, &err) != SQLITE_OK) {
    fprintf(stderr, "bench_query: %s: %s\n", path,
            err ? err : sqlite3_errmsg(g.db));
    return -1;
  }
  exec_sql(g.db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                 " PRAGMA cache_size = -1000000");
  for (int a = 1; a <= AGENTS; a++) {
    char sql[256];
    snprintf(sql, sizeof(sql),
             "INSERT INTO agents (id, instance, service, host, pid,"
             " started_at, events, last_event_at) VALUES (%d, randomblob(16),"
             " '%s', 'web-%d', %d, %lld, 0, %lld)",
             a, services[a % 4], a, 1000 + a, (long long)t0,
             (long long)(t0 + SPAN_US));
    exec_sql(g.db, sql);
  }
  sqlite3_prepare_v2(g.db,
                     "INSERT INTO tasks (id, agent, batch, position, name,"
                     " mode, status, enqueued_at, started_at, finished_at,"
                     " wait_us, run_us, error_type, error_message,"
                     " error_detail, skipped_after, drop_reason) VALUES (?1,"
                     " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
                     " ?14, ?15, ?16, ?17)",
                     -1, &g.task, NULL);
  sqlite3_prepare_v2(g.db,
                     "INSERT INTO batches (id, agent, label, created_at) "
                     "VALUES (?1, ?2, ?3, ?4)",
                     -1, &g.batch, NULL);
  int64_t batches = tasks / 3;
  exec_sql(g.db, "BEGIN");
  for (int64_t b = 0; b < batches; b++) {
    int64_t at = t0 + (int64_t)((double)SPAN_US * (double)b / (double)batches);
    insert_batch(&g, at, at > t0 + SPAN_US - 60000000);
    if (b % 200000 == 199999) {
      exec_sql(g.db, "COMMIT");
      exec_sql(g.db, "BEGIN");
    }
  }
  exec_sql(g.db, "COMMIT");
  sqlite3_finalize(g.task);
  sqlite3_finalize(g.batch);
  exec_sql(g.db, "PRAGMA journal_mode = WAL");
  sqlite3_close(g.db);
  return 0;
}

/* ---- timing the binary ----------------------------------------------------
 */

static const char *bin = TASKWATCH_BIN;

/* Runs taskwatch with args; returns wall milliseconds, the child's CPU
 * milliseconds (user + system) in *cpu_ms, and the lines it printed in
 * *rows. */
static double run_query(char *const *args, int64_t *rows, double *cpu_ms) {
  char out_path[] = "/tmp/bench_query_out.XXXXXX";
  int fd = mkstemp(out_path);
  double t = now_s();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    execv(bin, args);
    _exit(127);
  }
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  double ms = (now_s() - t) * 1000.0;
  *cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
  *rows = 0;
  lseek(fd, 0, SEEK_SET);
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    for (ssize_t i = 0; i < n; i++)
      *rows += buf[i] == '\n';
  close(fd);
  unlink(out_path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
    fprintf(stderr, "bench_query: %s exited with %d\n", args[2], status);
  return ms;
}

typedef struct kind {
  const char *key;
  const char *sub;   /* "stats" or NULL */
  const char *terms; /* printf format with %s for since and until */
  int64_t window_us;
} kind;

static const kind kinds[] = {
    {"status_time_1h", NULL, "status:failed since:%s until:%s", US_PER_HOUR},
    {"status_time_24h", NULL, "status:failed,lost since:%s until:%s",
     24 * US_PER_HOUR},
    {"name_time_1h", NULL, "name:charge_card since:%s until:%s", US_PER_HOUR},
    {"name_glob_time_1h", NULL, "name:send_* since:%s until:%s", US_PER_HOUR},
    {"error_substring_1h", NULL, "error:timeout since:%s until:%s",
     US_PER_HOUR},
    {"error_substring_failed_24h", NULL,
     "status:failed error:timeout since:%s until:%s", 24 * US_PER_HOUR},
    {"service_wait_1h", NULL, "service:billing wait>50ms since:%s until:%s",
     US_PER_HOUR},
    {"batch", NULL, "batch:%s", 0},
    {"latest_100", NULL, "--reverse --limit 100 since:%s until:%s", SPAN_US},
    {"stats_by_name_1h", "stats", "--by name since:%s until:%s", US_PER_HOUR},
    {"stats_by_name_24h", "stats", "--by name since:%s until:%s",
     24 * US_PER_HOUR},
    {"stats_name_24h", "stats", "name:send_email since:%s until:%s",
     24 * US_PER_HOUR},
};

/* Splits `text` on blanks into args after the fixed ones. */
static int split_args(char *text, char **args, int n, int max) {
  char *p = text;
  while (*p && n < max - 1) {
    while (*p == ' ')
      *p++ = '\0';
    if (!*p)
      break;
    args[n++] = p;
    while (*p && *p != ' ')
      p++;
  }
  args[n] = NULL;
  return n;
}

static int64_t some_batch(const char *db_path, int64_t t) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t id = 0;
  sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
  sqlite3_prepare_v2(db,
                     "SELECT batch FROM tasks WHERE enqueued_at >= ?1 LIMIT 1",
                     -1, &st, NULL);
  sqlite3_bind_int64(st, 1, t);
  if (sqlite3_step(st) == SQLITE_ROW)
    id = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return id;
}

static void bench_kind(const char *db_path, const kind *k, int reps,
                       int64_t t0) {
  stats_values ms, cpu;
  stats_values_init(&ms);
  stats_values_init(&cpu);
  int64_t rows_total = 0;
  /* The day-long stats read 1.4 M rows each; fewer rounds of those. */
  if (k->sub != NULL && k->window_us > US_PER_HOUR && reps > 5)
    reps = reps / 4 > 5 ? reps / 4 : 5;
  for (int r = 0; r < reps; r++) {
    /* A different window each time, anywhere in the 7 days. */
    int64_t span = SPAN_US - k->window_us;
    int64_t start =
        t0 + (span > 0 ? (int64_t)(next_random() % (uint64_t)span) : 0);
    char since[FORMAT_TIME_SIZE], until[FORMAT_TIME_SIZE], text[256];
    format_time_utc(start, since, sizeof(since));
    format_time_utc(start + k->window_us, until, sizeof(until));
    if (k->window_us == 0) {
      char id[32];
      snprintf(id, sizeof(id), "%lld", (long long)some_batch(db_path, start));
      snprintf(text, sizeof(text), k->terms, id);
    } else {
      snprintf(text, sizeof(text), k->terms, since, until);
    }
    char *args[32] = {(char *)bin, "query"};
    int n = 2;
    if (k->sub)
      args[n++] = (char *)k->sub;
    args[n++] = "--db";
    args[n++] = (char *)db_path;
    args[n++] = "-o";
    args[n++] = "json";
    split_args(text, args, n, 32);
    int64_t rows;
    double cpu_ms;
    double t = run_query(args, &rows, &cpu_ms);
    stats_values_push(&ms, (int64_t)(t * 1000.0));
    stats_values_push(&cpu, (int64_t)(cpu_ms * 1000.0));
    rows_total += rows;
  }
  stats_values_sort(&ms);
  stats_values_sort(&cpu);
  int64_t p50, p95, c50, c95;
  stats_percentile(&ms, 500, &p50);
  stats_percentile(&ms, 950, &p95);
  stats_percentile(&cpu, 500, &c50);
  stats_percentile(&cpu, 950, &c95);
  printf("%s_p50_ms: %.1f\n", k->key, (double)p50 / 1000.0);
  printf("%s_p95_ms: %.1f\n", k->key, (double)p95 / 1000.0);
  printf("%s_cpu_p50_ms: %.1f\n", k->key, (double)c50 / 1000.0);
  printf("%s_cpu_p95_ms: %.1f\n", k->key, (double)c95 / 1000.0);
  printf("%s_rows_avg: %lld\n", k->key, (long long)(rows_total / reps));
  printf("%s_reps: %d\n", k->key, reps);
  fflush(stdout);
  stats_values_fini(&ms);
  stats_values_fini(&cpu);
}

int main(int argc, char **argv) {
  const char *db_path = NULL;
  int64_t tasks = 10000000;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--db") == 0)
      db_path = argv[i + 1];
    else if (strcmp(argv[i], "--tasks") == 0)
      tasks = strtoll(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--reps") == 0)
      reps = (int)strtol(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--bin") == 0)
      bin = argv[i + 1];
  }
  char tmp[64];
  if (db_path == NULL) {
    snprintf(tmp, sizeof(tmp), "/tmp/bench_query_%lld.db", (long long)tasks);
    db_path = tmp;
  }
  /* The data ends now-ish, so relative filters would also make sense. */
  int64_t t0 = INT64_C(1795341600000000) - SPAN_US;
  struct stat sb;
  if (stat(db_path, &sb) != 0) {
    double t = now_s();
    if (generate(db_path, tasks, t0) != 0)
      return 1;
    printf("generate_s: %.1f\n", now_s() - t);
    stat(db_path, &sb);
  }
  printf("db: %s\n", db_path);
  printf("tasks: %lld\n", (long long)tasks);
  printf("db_mib: %lld\n", (long long)(sb.st_size >> 20));
  printf("reps: %d\n", reps);
  fflush(stdout);
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
    bench_kind(db_path, &kinds[i], reps, t0);
  return 0;
}
