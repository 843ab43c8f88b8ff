/*
 * bench/top - the dashboard on big stores: for each size of --tasks
 * (default 10,000,000; a comma-separated list measures several, e.g.
 * 1000000,10000000,100000000) generates the store once (reused when it
 * exists with the right size), printing the time that took, its size and
 * its bytes per task; then prints the time of one frame (load + render)
 * for each view, for deep scrolling and for filters, of each key press,
 * and the CPU the real dashboard uses while idle on a pseudo-terminal.
 * With several sizes it ends with a table of p95 wall (CPU) ms per frame
 * and size, side by side.
 *
 *   bench_top [--tasks N[,N...]] [--db PATH] [--dir DIR]
 *             [--idle-seconds S] [--remove] [--upgrade]
 *
 * --upgrade opens the store --db names as the collector opens an older
 * version's first (schema_apply_upgrade() with rollup_upgrade(): what the
 * newer version adds is made and filled from the raw rows) and prints the
 * time that took; e.g. a store an older build generated.
 *
 * Tasks span the 24 hours before now (about 115 per second for each 10 M),
 * in batches of three, every 50th batch failing with its third task
 * skipped, over four agents. The rows go in without indexes, then the
 * schema's indexes are built and the rollups filled (collector/rollup).
 * Prints key: value lines; never fails on speed.
 */
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ctl.h"
#include "data.h"
#include "grid.h"
#include "keys.h"
#include "rollup.h"
#include "schema.h"
#include "stores.h"
#include "top.h"
#include "view.h"

#define AGENTS 4
#define DAY_US INT64_C(86400000000)

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CPU time of this thread: less disturbed than wall time when other
 * processes share the cores. */
static int64_t cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void check(int rc, sqlite3 *db, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fprintf(stderr, "bench_top: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
  }
}

static int64_t count_tasks(const char *path) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t n = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT max(rowid) FROM meta_bench", -1, &st,
                         NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

typedef struct gen {
  sqlite3 *db;
  sqlite3_stmt *task, *batch;
  uint64_t rng;
} gen;

static uint64_t next_random(gen *g) {
  g->rng ^= g->rng << 13;
  g->rng ^= g->rng >> 7;
  g->rng ^= g->rng << 17;
  return g->rng;
}

/* One task of a batch: every 50th batch fails at position 1 and skips
 * position 2. */
static void insert_task(gen *g, int64_t agent, int64_t local, int64_t batch,
                        int64_t at, int p, int fails) {
  static const char *const names[3] = {"write_notification", "send_email",
                                       "write_log"};
  sqlite3_stmt *tt = g->task;
  uint64_t r = next_random(g);
  int status = fails && p == 1   ? SCHEMA_FAILED
               : fails && p == 2 ? SCHEMA_SKIPPED
                                 : SCHEMA_SUCCEEDED;
  int64_t enq = at + p * 20, wait = 100 + (int64_t)(r % 5000);
  int64_t run = 500 + (int64_t)((r >> 20) % 200000);
  sqlite3_reset(tt);
  sqlite3_clear_bindings(tt);
  sqlite3_bind_int64(tt, 1,
                     schema_global_id(agent, (uint64_t)local * 4 + 1 + p));
  sqlite3_bind_int64(tt, 2, agent);
  sqlite3_bind_int64(tt, 3, batch);
  sqlite3_bind_int(tt, 4, p);
  sqlite3_bind_text(tt, 5, names[p], -1, SQLITE_STATIC);
  sqlite3_bind_int(tt, 6, p == 1);
  sqlite3_bind_int(tt, 7, status);
  sqlite3_bind_int64(tt, 8, 1000 + agent);
  sqlite3_bind_int64(tt, 9, enq);
  if (status != SCHEMA_SKIPPED) {
    sqlite3_bind_int64(tt, 10, enq + wait);
    sqlite3_bind_int64(tt, 11, enq + wait + run);
    sqlite3_bind_int64(tt, 12, wait);
    sqlite3_bind_int64(tt, 13, run);
  } else {
    sqlite3_bind_int64(tt, 11, enq + 1000);
    sqlite3_bind_int64(tt, 16,
                       schema_global_id(agent, (uint64_t)local * 4 + 2));
  }
  if (status == SCHEMA_FAILED) {
    sqlite3_bind_text(tt, 14, "SMTPError", -1, SQLITE_STATIC);
    sqlite3_bind_text(tt, 15, "timeout", -1, SQLITE_STATIC);
  }
  check(sqlite3_step(tt), g->db, "insert task");
}

static void insert_tasks(sqlite3 *db, int64_t ntasks, int64_t end_us) {
  gen g = {db, NULL, NULL, 88172645463325252ULL};
  check(sqlite3_prepare_v2(
            db,
            "INSERT INTO tasks (id, agent, batch, position, name, mode, "
            "status, thread, enqueued_at, started_at, finished_at, wait_us, "
            "run_us, error_type, error_message, skipped_after) VALUES "
            "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
            -1, &g.task, NULL),
        db, "prepare");
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO batches (id, agent, label, "
                           "created_at) VALUES (?1, ?2, ?3, ?4)",
                           -1, &g.batch, NULL),
        db, "prepare");
  int64_t nbatches = ntasks / 3, start = end_us - DAY_US;
  for (int64_t b = 0; b < nbatches; b++) {
    int64_t agent = 1 + b % AGENTS, local = b / AGENTS + 1;
    int64_t at = start + (DAY_US * b) / nbatches;
    int64_t batch = schema_global_id(agent, (uint64_t)local * 4);
    sqlite3_reset(g.batch);
    sqlite3_bind_int64(g.batch, 1, batch);
    sqlite3_bind_int64(g.batch, 2, agent);
    sqlite3_bind_text(g.batch, 3, "POST /send-notification/{email}", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(g.batch, 4, at);
    check(sqlite3_step(g.batch), db, "insert batch");
    for (int p = 0; p < 3; p++)
      insert_task(&g, agent, local, batch, at, p, b % 50 == 49);
  }
  sqlite3_finalize(g.task);
  sqlite3_finalize(g.batch);
}

/* Builds the store: tables without the task indexes, rows in id order in
 * one transaction, then the indexes (much faster than indexing per row). */
static void generate(const char *path, int64_t ntasks, int64_t end_us) {
  sqlite3 *db = NULL;
  char *err = NULL;
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  remove(tmp);
  check(sqlite3_open(tmp, &db), db, "open");
  if (schema_apply(db, &err) != SQLITE_OK) {
    fprintf(stderr, "bench_top: schema: %s\n", err);
    exit(1);
  }
  check(sqlite3_exec(db,
                     "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                     "PRAGMA cache_size=-262144;",
                     NULL, NULL, NULL),
        db, "setup");
  check(sqlite3_exec(db, schema_drop_index_sql(), NULL, NULL, NULL), db,
        "drop indexes");
  check(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), db, "begin");
  char sql[1024];
  for (int a = 1; a <= AGENTS; a++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO agents (id, instance, service, host, pid, "
             "started_at, connected_at, connected, events, last_event_at) "
             "VALUES (%d, randomblob(16), 'api', 'web-%d', %d, %lld, %lld, 1, "
             "%lld, %lld)",
             a, a, 1000 + a, (long long)(end_us - DAY_US),
             (long long)(end_us - DAY_US), (long long)(ntasks / AGENTS * 3),
             (long long)end_us);
    check(sqlite3_exec(db, sql, NULL, NULL, NULL), db, "agents");
  }
  insert_tasks(db, ntasks, end_us);
  check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), db, "commit");
  check(sqlite3_exec(db, "PRAGMA threads = 2", NULL, NULL, NULL), db,
        "threads");
  check(sqlite3_exec(db, schema_index_sql(), NULL, NULL, NULL), db,
        "create indexes");
  check(rollup_rebuild(db), db, "rollups");
  check(sqlite3_exec(db,
                     "CREATE TABLE meta_bench (x);"
                     "PRAGMA journal_mode=WAL;",
                     NULL, NULL, NULL),
        db, "indexes");
  snprintf(sql, sizeof sql,
           "INSERT INTO meta_bench (rowid, x) VALUES (%lld, %lld)",
           (long long)ntasks, (long long)end_us);
  check(sqlite3_exec(db, sql, NULL, NULL, NULL), db, "meta");
  sqlite3_close(db);
  if (rename(tmp, path) != 0) {
    perror("bench_top: rename");
    exit(1);
  }
}

static int64_t store_end(const char *path) {
  return bench_store_int(path, "SELECT x FROM meta_bench", 0);
}

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

#define RUNS 20
/* Frames and keys measured, for the closing table. */
#define MAX_FIGURES 32

typedef struct figure {
  char label[40];
  double wall, cpu; /* p95, ms */
} figure;

typedef struct figures {
  figure v[MAX_FIGURES];
  int n;
  double idle_percent;
} figures;

/* Prints p50, p95 and max wall and p95 CPU of RUNS measurements and
 * keeps p95 for the table. */
static void report(figures *out, const char *kind, const char *label,
                   int64_t *wall, int64_t *cpu) {
  qsort(wall, RUNS, sizeof wall[0], compare_i64);
  qsort(cpu, RUNS, sizeof cpu[0], compare_i64);
  /* Nearest rank: the 19th of 20. */
  int p95 = (RUNS * 95 + 99) / 100 - 1;
  printf("%s %-28s wall p50: %6.2f p95: %6.2f max: %6.2f  cpu p95: %6.2f "
         "ms\n",
         kind, label, (double)wall[RUNS / 2] / 1000.0,
         (double)wall[p95] / 1000.0, (double)wall[RUNS - 1] / 1000.0,
         (double)cpu[p95] / 1000.0);
  fflush(stdout);
  if (out->n < MAX_FIGURES) {
    figure *f = &out->v[out->n++];
    snprintf(f->label, sizeof f->label, "%s %s", kind, label);
    f->wall = (double)wall[p95] / 1000.0;
    f->cpu = (double)cpu[p95] / 1000.0;
  }
}

static void frame(figures *out, ctl *c, grid *g, int64_t now, const char *label,
                  int action) {
  int64_t wall[RUNS], cpu[RUNS];
  for (int i = 0; i < RUNS; i++) {
    int64_t t0 = mono_us(), c0 = cpu_us();
    if (action != ACT_NONE && i == 0)
      ctl_action(c, action, now);
    ctl_load(c, now);
    view_render(ctl_state(c), g);
    wall[i] = mono_us() - t0;
    cpu[i] = cpu_us() - c0;
  }
  report(out, "frame", label, wall, cpu);
}

/* Times one key press: the action (which reloads the list, not the
 * header) and the render. */
static void keys(figures *out, ctl *c, grid *g, int64_t now, int kind,
                 int action, const char *label) {
  int64_t wall[RUNS], cpu[RUNS];
  ctl_state(c)->kind = kind;
  ctl_action(c, ACT_TOP, now);
  for (int i = 0; i < RUNS; i++) {
    int64_t t0 = mono_us(), c0 = cpu_us();
    ctl_action(c, action, now);
    view_render(ctl_state(c), g);
    wall[i] = mono_us() - t0;
    cpu[i] = cpu_us() - c0;
  }
  report(out, "key  ", label, wall, cpu);
}

static void frames(figures *out, const char *path, int64_t now) {
  data *d = NULL;
  char err[256];
  if (data_open(path, &d, err, sizeof err) != 0) {
    fprintf(stderr, "bench_top: %s\n", err);
    exit(1);
  }
  ctl *c = ctl_new(d, path);
  ctl_set_filter(c, "", err, sizeof err);
  grid *g = grid_new(200, 60, 0);
  ctl_resize(c, 200, 60);
  view_state *s = ctl_state(c);
  static const char *const names[VIEW_COUNT] = {"tasks", "batches", "names",
                                                "agents"};
  for (int k = 0; k < VIEW_COUNT; k++) {
    s->kind = k;
    char label[64];
    snprintf(label, sizeof label, "%s_200x60", names[k]);
    frame(out, c, g, now, label, ACT_NONE);
  }
  s->kind = VIEW_TASKS;
  frame(out, c, g, now, "tasks_oldest_page(G)", ACT_BOTTOM);
  frame(out, c, g, now, "tasks_page_up_from_oldest", ACT_PAGE_UP);
  ctl_action(c, ACT_TOP, now);
  ctl_set_filter(c, "status:failed", err, sizeof err);
  frame(out, c, g, now, "tasks_filter_status:failed", ACT_NONE);
  ctl_set_filter(c, "name:send_email since:15m", err, sizeof err);
  frame(out, c, g, now, "tasks_filter_name+since", ACT_NONE);
  s->kind = VIEW_BATCHES;
  ctl_set_filter(c, "", err, sizeof err);
  ctl_action(c, ACT_FAILURES, now);
  frame(out, c, g, now, "batches_failures_only", ACT_NONE);
  ctl_action(c, ACT_FAILURES, now);
  /* Sorted by run time over the default window (s), then over the hour
   * (w): every task of the window is read and sorted. */
  s->kind = VIEW_TASKS;
  frame(out, c, g, now, "tasks_by_run_15m", ACT_SORT);
  frame(out, c, g, now, "tasks_by_run_1h", ACT_WINDOW);
  s->kind = VIEW_BATCHES;
  frame(out, c, g, now, "batches_by_run_1h", ACT_SORT);
  s->window = VIEW_WINDOW_DEFAULT;
  s->sort_column[VIEW_TASKS] = s->sort_column[VIEW_BATCHES] = DATA_BY_TIME;
  keys(out, c, g, now, VIEW_TASKS, ACT_DOWN, "key_down_tasks");
  keys(out, c, g, now, VIEW_TASKS, ACT_PAGE_DOWN, "key_pgdn_tasks");
  keys(out, c, g, now, VIEW_BATCHES, ACT_PAGE_DOWN, "key_pgdn_batches");
  keys(out, c, g, now, VIEW_NAMES, ACT_SORT, "key_sort_names");
  grid_free(g);
  ctl_free(c);
}

static double cpu_seconds(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  unsigned long long utime = 0, stime = 0;
  /* Fields after the command: state is field 3, utime 14, stime 15. */
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                          "%llu %llu",
                          &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Drains the pty for `seconds`. */
static void drain(int fd, double seconds) {
  int64_t until = mono_us() + (int64_t)(seconds * 1e6);
  char buf[65536];
  while (mono_us() < until) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {0, 100000};
    if (select(fd + 1, &set, NULL, NULL, &tv) > 0 &&
        read(fd, buf, sizeof buf) <= 0)
      return;
  }
}

static double idle_cpu(const char *path, double seconds) {
  struct winsize ws = {60, 200, 0, 0};
  int fd;
  pid_t pid = forkpty(&fd, NULL, NULL, &ws);
  if (pid < 0) {
    perror("bench_top: forkpty");
    return -1;
  }
  if (pid == 0) {
    setenv("TERM", "xterm-256color", 1);
    char *argv[] = {"top", "--db", (char *)path, NULL};
    _exit(top_main(3, argv));
  }
  drain(fd, 2.0); /* start-up and the first frames */
  double c0 = cpu_seconds(pid);
  int64_t t0 = mono_us();
  drain(fd, seconds);
  double c1 = cpu_seconds(pid);
  double wall = (double)(mono_us() - t0) / 1e6;
  if (write(fd, "q", 1) != 1)
    kill(pid, SIGTERM);
  drain(fd, 0.5);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  close(fd);
  double percent = 100.0 * (c1 - c0) / wall;
  printf("idle_cpu_percent_of_core: %.2f  (over %.1f s, 200x60 pty)\n", percent,
         wall);
  fflush(stdout);
  return percent;
}

static void bench_size(figures *out, const char *path, int64_t ntasks,
                       double idle) {
  if (count_tasks(path) != ntasks) {
    int64_t t0 = mono_us();
    generate(path, ntasks, wall_us());
    printf("generated: %lld tasks in %.1f s\n", (long long)ntasks,
           (double)(mono_us() - t0) / 1e6);
  }
  struct stat sb;
  stat(path, &sb);
  int64_t end = store_end(path);
  printf("store: %s  tasks: %lld  size: %lld MiB  bytes per task: %.0f\n", path,
         (long long)ntasks, (long long)(sb.st_size >> 20),
         (double)sb.st_size / (double)ntasks);
  fflush(stdout);
  frames(out, path, end);
  out->idle_percent = idle_cpu(path, idle);
}

/* p95 wall (CPU) ms per frame and key, one column per size. */
static void print_table(const int64_t *sizes, int nsizes, const figures *all) {
  printf("\np95 wall (cpu) ms\n%-36s", "frame or key");
  for (int j = 0; j < nsizes; j++) {
    char head[32];
    snprintf(head, sizeof head, "%lld tasks", (long long)sizes[j]);
    printf(" %16s", head);
  }
  printf("\n");
  for (int i = 0; i < all[0].n; i++) {
    printf("%-36s", all[0].v[i].label);
    for (int j = 0; j < nsizes; j++) {
      char cell[32];
      snprintf(cell, sizeof cell, "%.1f (%.1f)", all[j].v[i].wall,
               all[j].v[i].cpu);
      printf(" %16s", cell);
    }
    printf("\n");
  }
  printf("%-36s", "idle CPU, % of a core");
  for (int j = 0; j < nsizes; j++)
    printf(" %16.2f", all[j].idle_percent);
  printf("\n");
}

/* The collector's upgrade of an older store, timed. */
static void upgrade(const char *path) {
  sqlite3 *db = NULL;
  char *err = NULL;
  int64_t t0 = mono_us();
  check(sqlite3_open(path, &db), db, "open");
  if (schema_apply_upgrade(db, rollup_upgrade, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "bench_top: upgrade: %s\n", err);
    exit(1);
  }
  sqlite3_close(db);
  printf("upgraded: %s in %.1f s\n", path, (double)(mono_us() - t0) / 1e6);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *db = NULL, *dir = "/tmp", *sizes_text = "10000000";
  double idle = 10;
  int remove_after = 0, upgrade_first = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--remove") == 0)
      remove_after = 1;
    else if (strcmp(argv[i], "--upgrade") == 0)
      upgrade_first = 1;
    else if (v && strcmp(argv[i], "--db") == 0)
      db = argv[++i];
    else if (v && strcmp(argv[i], "--dir") == 0)
      dir = argv[++i];
    else if (v && strcmp(argv[i], "--tasks") == 0)
      sizes_text = argv[++i];
    else if (v && strcmp(argv[i], "--idle-seconds") == 0)
      idle = strtod(argv[++i], NULL);
    else {
      fprintf(stderr, "bench_top: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  int64_t sizes[BENCH_MAX_SIZES];
  int nsizes = bench_parse_sizes(sizes_text, sizes, BENCH_MAX_SIZES);
  if (nsizes == 0 || (db && nsizes > 1) || (upgrade_first && !db)) {
    fprintf(stderr, "bench_top: bad --tasks, --db or --upgrade\n");
    return 2;
  }
  if (upgrade_first)
    upgrade(db);
  static figures all[BENCH_MAX_SIZES];
  for (int j = 0; j < nsizes; j++) {
    char path[512];
    if (db)
      snprintf(path, sizeof path, "%s", db);
    else
      snprintf(path, sizeof path, "%s/taskwatch-bench-top-%lld.db", dir,
               (long long)sizes[j]);
    bench_size(&all[j], path, sizes[j], idle);
    if (remove_after && !db)
      bench_remove_store(path);
  }
  print_table(sizes, nsizes, all);
  return 0;
}
