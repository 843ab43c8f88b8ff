/*
 * bench_query - how fast `taskwatch query` answers from a big store.
 *
 * For each size of --tasks (default 10,000,000; a comma-separated list
 * measures several, e.g. 1000000,10000000,100000000), generates a store of
 * that many tasks spread over 7 days (or reuses the one an earlier run
 * left, or the store --db names): 8 agents, batches of 3 tasks from 10
 * routes, 20 task names, ~1 % failed (half of them timeouts) with their
 * followers skipped, a few dropped and lost. Rows go in with one prepared
 * INSERT in large transactions, journal off, without indexes; then the
 * schema's indexes are built and the rollups filled from the rows as the
 * collector's upgrade does (collector/rollup). No ANALYZE (the collector's
 * stores have none either). It prints the time each step took, the store's
 * size and its bytes per task.
 *
 * Then runs the binary (--bin, default the one built beside it), as a user
 * would (process start, open, query, JSON to a file), REPS times per query
 * kind (a quarter of that for the day-long and week-long stats), each time
 * over a different hour, day or week of the data, and prints `key: value`
 * lines: p50 and p95 of wall time and of the child's CPU time (user +
 * system; steadier on a shared machine) in milliseconds, plus rows per
 * answer. A kind the binary refuses (an older build: --exact) is `n/a`.
 * Lists ask for at most 10,000 rows. The wall times include starting the
 * process and opening the store (a few ms). With several sizes it ends
 * with a table of p95 wall (CPU) ms per kind and size, side by side.
 * Figures only; it never fails on speed.
 *
 * usage: bench_query [--tasks N[,N...]] [--db PATH] [--dir DIR]
 *                    [--reps N] [--bin TASKWATCH] [--remove] [--finish]
 *   --db PATH  the store (one size only); an existing one is used as it is
 *              (e.g. one an older build generated, with --bin of that build)
 *              and, without --tasks, says its size (its count of tasks)
 *   --finish   the store --db names was left before its rollups were filled
 *              (a generation stopped in its last step): upgrades it to this
 *              build's schema as the collector would, fills its rollups,
 *              prints the time that took, then measures it
 *   --dir DIR  where stores are generated: DIR/bench_query_N.db (/tmp)
 *   --remove   delete each generated store after measuring it
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
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

extern char **environ;

#include "format.h"
#include "rollup.h"
#include "schema.h"
#include "stats.h"
#include "stores.h"

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

/* Fills the store at path (a new file); bench_size() renames it into
 * place when every step is done. */
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
  /* Rows in one pass without indexes, then each index sorted once: far
   * faster than indexing row by row at 100 M tasks. */
  exec_sql(g.db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                 " PRAGMA cache_size = -1000000; PRAGMA threads = 2");
  exec_sql(g.db, schema_drop_index_sql());
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
  double started = now_s();
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
  printf("rows_s: %.1f\n", now_s() - started);
  double t = now_s();
  if (exec_sql(g.db, schema_index_sql()) != 0)
    return -1;
  printf("index_s: %.1f\n", now_s() - t);
  t = now_s();
  int rc = rollup_rebuild(g.db);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "bench_query: rollups: %s\n", sqlite3_errstr(rc));
    return -1;
  }
  printf("rollups_s: %.1f\n", now_s() - t);
  exec_sql(g.db, "PRAGMA journal_mode = WAL");
  sqlite3_close(g.db);
  return 0;
}

/* The last step of generate() (and the collector's upgrade) for a store
 * whose generation stopped before it. */
static int finish(const char *path) {
  sqlite3 *db = NULL;
  char *err = NULL;
  double t = now_s();
  if (sqlite3_open(path, &db) != SQLITE_OK ||
      schema_apply_upgrade(db, rollup_upgrade, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "bench_query: %s: %s\n", path,
            err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    sqlite3_close(db);
    return -1;
  }
  printf("upgrade_s: %.1f\n", now_s() - t);
  exec_sql(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
               " PRAGMA cache_size = -1000000");
  t = now_s();
  int rc = rollup_rebuild(db);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "bench_query: rollups: %s\n", sqlite3_errstr(rc));
    sqlite3_close(db);
    return -1;
  }
  printf("rollups_s: %.1f\n", now_s() - t);
  exec_sql(db, "PRAGMA journal_mode = WAL");
  sqlite3_close(db);
  return 0;
}

/* ---- timing the binary ----------------------------------------------------
 */

static const char *bin = TASKWATCH_BIN;

/* Runs taskwatch with args; returns wall milliseconds, the child's CPU
 * milliseconds (user + system) in *cpu_ms, the lines it printed in *rows
 * and its exit status in *status (128 + signal when killed). The child is
 * started with posix_spawn (a vfork, no copy of this process's page
 * tables): a fork() right after generating a store would hand the child
 * hundreds of MiB of mappings to tear down at exec, 20-30 ms of system
 * time charged to the query it measures. */
static double run_query(char *const *args, int64_t *rows, double *cpu_ms,
                        int *status) {
  char out_path[] = "/tmp/bench_query_out.XXXXXX";
  int fd = mkstemp(out_path);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  double t = now_s();
  pid_t pid;
  int st = 127 << 8;
  struct rusage ru = {0};
  if (posix_spawn(&pid, bin, &actions, NULL, args, environ) == 0)
    wait4(pid, &st, 0, &ru);
  double ms = (now_s() - t) * 1000.0;
  posix_spawn_file_actions_destroy(&actions);
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
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return ms;
}

#define DAY_US (24 * US_PER_HOUR)
#define LIST "--limit|10000|"

typedef struct kind {
  const char *key;
  const char *sub;   /* "stats" or NULL */
  const char *terms; /* printf format with %s for since and until; '|'
                        separates arguments */
  int64_t window_us;
} kind;

static const kind kinds[] = {
    {"status_time_1h", NULL, LIST "status:failed|since:%s|until:%s",
     US_PER_HOUR},
    {"status_time_24h", NULL, LIST "status:failed,lost|since:%s|until:%s",
     DAY_US},
    {"name_time_1h", NULL, LIST "name:charge_card|since:%s|until:%s",
     US_PER_HOUR},
    {"name_glob_time_1h", NULL, LIST "name:send_*|since:%s|until:%s",
     US_PER_HOUR},
    {"label_time_1h", NULL, LIST "label:'POST /refunds'|since:%s|until:%s",
     US_PER_HOUR},
    {"error_substring_1h", NULL, LIST "error:timeout|since:%s|until:%s",
     US_PER_HOUR},
    {"error_substring_failed_24h", NULL,
     LIST "status:failed|error:timeout|since:%s|until:%s", DAY_US},
    {"service_wait_1h", NULL,
     LIST "service:billing|wait>50ms|since:%s|until:%s", US_PER_HOUR},
    {"name_newest_100_no_range", NULL, "--reverse|--limit|100|name:refund", 0},
    {"batch", NULL, "batch:%s", -1},
    {"latest_100", NULL, "--reverse|--limit|100|since:%s|until:%s", SPAN_US},
    {"stats_by_name_1h", "stats", "--by|name|since:%s|until:%s", US_PER_HOUR},
    {"stats_by_name_24h", "stats", "--by|name|since:%s|until:%s", DAY_US},
    {"stats_by_service_24h", "stats", "--by|service|since:%s|until:%s", DAY_US},
    {"stats_name_24h", "stats", "name:send_email|since:%s|until:%s", DAY_US},
    {"stats_by_name_7d", "stats", "--by|name|since:%s|until:%s", SPAN_US},
    {"stats_by_service_7d", "stats", "--by|service|since:%s|until:%s", SPAN_US},
    {"stats_exact_by_name_24h", "stats", "--exact|--by|name|since:%s|until:%s",
     DAY_US},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* Splits `text` on '|' into args after the fixed ones. */
static int split_args(char *text, char **args, int n, int max) {
  char *p = text;
  while (*p && n < max - 1) {
    args[n++] = p;
    while (*p && *p != '|')
      p++;
    if (*p)
      *p++ = '\0';
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

/* The p95 of one kind at one size, for the closing table; < 0: n/a. */
typedef struct figure {
  double wall, cpu;
} figure;

static figure bench_kind(const char *db_path, const kind *k, int reps,
                         int64_t t0) {
  stats_values ms, cpu;
  stats_values_init(&ms);
  stats_values_init(&cpu);
  int64_t rows_total = 0;
  int refused = 0;
  /* The day-long stats read 1.4 M rows each; fewer rounds of those. */
  if (k->sub != NULL && k->window_us > US_PER_HOUR && reps > 5)
    reps = reps / 4 > 5 ? reps / 4 : 5;
  for (int r = 0; r < reps && !refused; r++) {
    /* A different window each time, anywhere in the 7 days. */
    int64_t window = k->window_us > 0 ? k->window_us : 0;
    int64_t span = SPAN_US - window;
    int64_t start =
        t0 + (span > 0 ? (int64_t)(next_random() % (uint64_t)span) : 0);
    char since[FORMAT_TIME_SIZE], until[FORMAT_TIME_SIZE], text[256];
    format_time_utc(start, since, sizeof(since));
    format_time_utc(start + window, until, sizeof(until));
    if (k->window_us < 0) {
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
    int status;
    double t = run_query(args, &rows, &cpu_ms, &status);
    if (status == 2) {
      refused = 1;
      break;
    }
    if (status > 2)
      fprintf(stderr, "bench_query: %s exited with %d\n", k->key, status);
    stats_values_push(&ms, (int64_t)(t * 1000.0));
    stats_values_push(&cpu, (int64_t)(cpu_ms * 1000.0));
    rows_total += rows;
  }
  figure f = {-1, -1};
  if (refused) {
    printf("%s: n/a (%s refused it)\n", k->key, bin);
  } else {
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
    f.wall = (double)p95 / 1000.0;
    f.cpu = (double)c95 / 1000.0;
  }
  fflush(stdout);
  stats_values_fini(&ms);
  stats_values_fini(&cpu);
  return f;
}

/* Generates the store when it is not there yet, then times every kind. */
static int bench_size(const char *db_path, int64_t tasks, int reps,
                      figure *out) {
  /* The data ends now-ish, so relative filters would also make sense. */
  int64_t t0 = INT64_C(1795341600000000) - SPAN_US;
  struct stat sb;
  rng = 0x9e3779b97f4a7c15u; /* the same data at every size and run */
  if (stat(db_path, &sb) != 0) {
    /* Into a side file first: a run stopped half way (100 M tasks take
     * most of an hour) leaves no store a later run would take as whole. */
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", db_path);
    bench_remove_store(tmp);
    double t = now_s();
    if (generate(tmp, tasks, t0) != 0 || rename(tmp, db_path) != 0) {
      perror("bench_query: generate");
      return -1;
    }
    printf("generate_s: %.1f\n", now_s() - t);
    fflush(stdout);
    stat(db_path, &sb);
  }
  printf("db: %s\n", db_path);
  printf("tasks: %lld\n", (long long)tasks);
  printf("db_mib: %lld\n", (long long)(sb.st_size >> 20));
  printf("bytes_per_task: %.0f\n", (double)sb.st_size / (double)tasks);
  printf("reps: %d\n", reps);
  fflush(stdout);
  rng = 0x2545f4914f6cdd1du; /* the same windows whether generated or not */
  for (size_t i = 0; i < NKINDS; i++)
    out[i] = bench_kind(db_path, &kinds[i], reps, t0);
  return 0;
}

static void print_cell(figure f) {
  char cell[32];
  if (f.wall < 0)
    snprintf(cell, sizeof(cell), "n/a");
  else
    snprintf(cell, sizeof(cell), "%.0f (%.0f)", f.wall, f.cpu);
  printf(" %16s", cell);
}

/* p95 wall (CPU) ms per kind, one column per size. */
static void print_table(const int64_t *sizes, int nsizes,
                        figure (*figures)[NKINDS]) {
  printf("\np95 wall (cpu) ms, %s\n%-28s", bin, "kind");
  for (int j = 0; j < nsizes; j++) {
    char head[32];
    snprintf(head, sizeof(head), "%lld tasks", (long long)sizes[j]);
    printf(" %16s", head);
  }
  printf("\n");
  for (size_t i = 0; i < NKINDS; i++) {
    printf("%-28s", kinds[i].key);
    for (int j = 0; j < nsizes; j++)
      print_cell(figures[j][i]);
    printf("\n");
  }
}

int main(int argc, char **argv) {
  const char *db_path = NULL, *dir = "/tmp", *sizes_text = NULL;
  int reps = 20, remove_after = 0, finish_first = 0;
  /* Each figure as it is known, also into a file (a run takes long). */
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--remove") == 0)
      remove_after = 1;
    else if (strcmp(argv[i], "--finish") == 0)
      finish_first = 1;
    else if (v && strcmp(argv[i], "--db") == 0)
      db_path = argv[++i];
    else if (v && strcmp(argv[i], "--dir") == 0)
      dir = argv[++i];
    else if (v && strcmp(argv[i], "--tasks") == 0)
      sizes_text = argv[++i];
    else if (v && strcmp(argv[i], "--reps") == 0)
      reps = (int)strtol(argv[++i], NULL, 10);
    else if (v && strcmp(argv[i], "--bin") == 0)
      bin = argv[++i];
    else {
      fprintf(stderr, "bench_query: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  int64_t sizes[BENCH_MAX_SIZES];
  int nsizes;
  if (db_path != NULL && sizes_text == NULL && access(db_path, R_OK) == 0) {
    /* An existing store says its own size. */
    sizes[0] = bench_store_int(db_path, "SELECT count(*) FROM tasks", 0);
    nsizes = sizes[0] > 0;
  } else {
    nsizes = bench_parse_sizes(sizes_text ? sizes_text : "10000000", sizes,
                               BENCH_MAX_SIZES);
  }
  if (reps < 1 || nsizes == 0 || (db_path && nsizes > 1) ||
      (finish_first && !db_path)) {
    fprintf(stderr, "bench_query: bad --tasks, --reps or --db\n");
    return 2;
  }
  if (finish_first && finish(db_path) != 0)
    return 1;
  static figure figures[BENCH_MAX_SIZES][NKINDS];
  for (int j = 0; j < nsizes; j++) {
    char path[512];
    if (db_path)
      snprintf(path, sizeof(path), "%s", db_path);
    else
      snprintf(path, sizeof(path), "%s/bench_query_%lld.db", dir,
               (long long)sizes[j]);
    if (bench_size(path, sizes[j], reps, figures[j]) != 0)
      return 1;
    if (remove_after && !db_path)
      bench_remove_store(path);
  }
  print_table(sizes, nsizes, figures);
  return 0;
}
