/*
 * collector - `taskwatch collector`: parses the command line, opens the
 * store, and runs the server (server.h) until SIGTERM or SIGINT.
 */
#include "collector.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"
#include "proto.h"
#include "server.h"
#include "store.h"
#include "url.h"
#include "xalloc.h"

#define DEFAULT_LISTEN "tcp://127.0.0.1:7460"
#define MAX_LISTEN 16

typedef struct options {
  const char *db;
  const char *listen[MAX_LISTEN];
  size_t nlisten;
  const char *token_file;
  int sync_full;
  int max_connections;
  double lost_after_s;
  double handshake_timeout_s;
  double retain_days, retain_failures_days;
  long long max_tasks;
  long long flush_ms;
  int log_level;
} options;

static const char usage_text[] =
    "usage: taskwatch collector [--db PATH] [--listen URL]... [options]\n"
    "\n"
    "Receives agents' events and stores them in SQLite, each exactly once.\n"
    "\n"
    "  --db PATH                  store file (default taskwatch.db)\n"
    "  --listen URL               tcp://HOST:PORT or unix:/PATH, repeatable\n"
    "                             (default " DEFAULT_LISTEN ")\n"
    "  --token-file PATH          require agents to present this token\n"
    "  --sync normal|full         SQLite synchronous mode (default normal)\n"
    "  --max-connections N        default 1024\n"
    "  --handshake-timeout SEC    time to send HELLO or finish a frame "
    "(default 10)\n"
    "  --lost-after SEC           grace before a vanished instance's open\n"
    "                             tasks become lost (default 30)\n"
    "  --retain-days D            prune tasks older than D days\n"
    "  --retain-failures-days D   keep failed/skipped/dropped/lost tasks D "
    "days\n"
    "  --max-tasks N              keep at most N tasks, oldest pruned first\n"
    "  --flush-ms N               longest a batch fills before commit "
    "(default 10)\n"
    "  --log-level LEVEL          error, warn, info (default) or debug\n"
    "  --help                     this text\n";

static int bad(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "taskwatch collector: ");
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  return 2;
}

static int parse_double(const char *s, double min, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v < min)
    return -1;
  *out = v;
  return 0;
}

static int parse_ll(const char *s, long long min, long long max,
                    long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* Applies one option with its value. Returns 0 or the exit status 2. */
static int apply_option(options *o, const char *name, const char *value) {
  long long n;
  if (strcmp(name, "--db") == 0) {
    o->db = value;
  } else if (strcmp(name, "--listen") == 0) {
    if (o->nlisten == MAX_LISTEN)
      return bad("too many --listen options%s%s", "", "");
    url u;
    int rc = url_parse(value, URL_LISTEN, &u);
    if (rc != 0)
      return bad("bad --listen '%s': %s", value, url_strerror(rc));
    o->listen[o->nlisten++] = value;
  } else if (strcmp(name, "--token-file") == 0) {
    o->token_file = value;
  } else if (strcmp(name, "--sync") == 0) {
    if (strcmp(value, "full") != 0 && strcmp(value, "normal") != 0)
      return bad("--sync must be normal or full, not '%s'%s", value, "");
    o->sync_full = strcmp(value, "full") == 0;
  } else if (strcmp(name, "--max-connections") == 0) {
    if (parse_ll(value, 1, 1000000, &n) != 0)
      return bad("bad --max-connections '%s'%s", value, "");
    o->max_connections = (int)n;
  } else if (strcmp(name, "--handshake-timeout") == 0) {
    if (parse_double(value, 0.001, &o->handshake_timeout_s) != 0)
      return bad("bad --handshake-timeout '%s'%s", value, "");
  } else if (strcmp(name, "--lost-after") == 0) {
    if (parse_double(value, 0, &o->lost_after_s) != 0)
      return bad("bad --lost-after '%s'%s", value, "");
  } else if (strcmp(name, "--retain-days") == 0) {
    if (parse_double(value, 0, &o->retain_days) != 0)
      return bad("bad --retain-days '%s'%s", value, "");
  } else if (strcmp(name, "--retain-failures-days") == 0) {
    if (parse_double(value, 0, &o->retain_failures_days) != 0)
      return bad("bad --retain-failures-days '%s'%s", value, "");
  } else if (strcmp(name, "--max-tasks") == 0) {
    if (parse_ll(value, 1, INT64_MAX, &o->max_tasks) != 0)
      return bad("bad --max-tasks '%s'%s", value, "");
  } else if (strcmp(name, "--flush-ms") == 0) {
    if (parse_ll(value, 1, 60000, &o->flush_ms) != 0)
      return bad("bad --flush-ms '%s'%s", value, "");
  } else if (strcmp(name, "--log-level") == 0) {
    if ((o->log_level = log_level_parse(value)) < 0)
      return bad("bad --log-level '%s' (error, warn, info, debug)%s", value,
                 "");
  } else {
    return bad("unknown option '%s'%s", name, " (try --help)");
  }
  return 0;
}

/* Returns -1 when --help was printed, 0, or the exit status 2. */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof(*o));
  o->db = "taskwatch.db";
  o->max_connections = 1024;
  o->lost_after_s = 30;
  o->handshake_timeout_s = 10;
  o->flush_ms = 10;
  o->log_level = LOG_INFO;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(usage_text, stdout);
      return -1;
    }
    if (strncmp(arg, "--", 2) != 0)
      return bad("unexpected argument '%s'%s", arg, " (try --help)");
    static const char *const known[] = {
        "--db",         "--listen",          "--token-file",
        "--sync",       "--max-connections", "--handshake-timeout",
        "--lost-after", "--retain-days",     "--retain-failures-days",
        "--max-tasks",  "--flush-ms",        "--log-level"};
    size_t arglen = strcspn(arg, "=");
    int found = 0;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
      if (strlen(known[k]) == arglen && strncmp(known[k], arg, arglen) == 0)
        found = 1;
    if (!found)
      return bad("unknown option '%s'%s", arg, " (try --help)");
    char name[64];
    const char *eq = strchr(arg, '=');
    const char *value;
    if (eq) {
      size_t len = (size_t)(eq - arg);
      if (len >= sizeof(name))
        return bad("unknown option '%s'%s", arg, " (try --help)");
      memcpy(name, arg, len);
      name[len] = '\0';
      value = eq + 1;
    } else {
      snprintf(name, sizeof(name), "%s", arg);
      if (i + 1 >= argc)
        return bad("option '%s' needs a value%s", arg, "");
      value = argv[++i];
    }
    int rc = apply_option(o, name, value);
    if (rc)
      return rc;
  }
  if (o->nlisten == 0)
    o->listen[o->nlisten++] = DEFAULT_LISTEN;
  return 0;
}

/* Reads the shared secret: the file's first line, without its newline. */
static char *read_token(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "taskwatch collector: cannot read token file %s: %s\n",
            path, strerror(errno));
    return NULL;
  }
  char buf[PROTO_IDENT_MAX + 2];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  size_t end = 0;
  while (end < n && buf[end] != '\n' && buf[end] != '\r')
    end++;
  if (end == 0 || end > PROTO_IDENT_MAX) {
    fprintf(stderr, "taskwatch collector: token in %s must be 1 to %u bytes\n",
            path, PROTO_IDENT_MAX);
    return NULL;
  }
  *len = end;
  return xstrndup(buf, end);
}

/* 1000 idle agents need 1000 descriptors: take all the hard limit allows. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int open_reader(const char *path, sqlite3 **db) {
  if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    fprintf(stderr, "taskwatch collector: cannot open %s: %s\n", path,
            *db ? sqlite3_errmsg(*db) : "out of memory");
    return -1;
  }
  sqlite3_busy_timeout(*db, 5000);
  return 0;
}

static void log_summary(store *st, const server_summary *sum) {
  store_stats stats;
  store_get_stats(st, &stats);
  log_msg(
      LOG_INFO,
      "stopped events=%llu transactions=%llu inserted=%llu "
      "updated=%llu unmatched=%llu lost=%llu pruned=%llu connections=%llu "
      "rejected=%llu latency_p50_us=%lld latency_p99_us=%lld",
      (unsigned long long)stats.events, (unsigned long long)stats.transactions,
      (unsigned long long)stats.rows_inserted,
      (unsigned long long)stats.rows_updated,
      (unsigned long long)stats.updates_unmatched,
      (unsigned long long)stats.tasks_lost,
      (unsigned long long)stats.tasks_pruned,
      (unsigned long long)sum->connections, (unsigned long long)sum->rejected,
      (long long)sum->latency_p50_us, (long long)sum->latency_p99_us);
}

int collector_main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  log_set_level(o.log_level);
  size_t token_len = 0;
  char *token = NULL;
  if (o.token_file && (token = read_token(o.token_file, &token_len)) == NULL)
    return 1;
  raise_fd_limit();
  /* The writer is SQLite's only heavy user: its global allocation
   * statistics would cost a mutex round trip per malloc. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  const double day_us = 86400e6;
  store_config sc = {o.db,
                     o.sync_full,
                     (int64_t)(o.retain_days * day_us),
                     (int64_t)(o.retain_failures_days * day_us),
                     o.max_tasks,
                     /* Long after the loop has forgotten the instance
                      * (it keeps one only through --lost-after). */
                     (int64_t)(o.lost_after_s * 1e6 + day_us),
                     0};
  store *st = NULL;
  sqlite3 *reader = NULL;
  char *err = NULL;
  if (store_open(&sc, &st, &err) != 0) {
    fprintf(stderr, "taskwatch collector: cannot open %s: %s\n", o.db, err);
    free(err);
    free(token);
    return 1;
  }
  if (open_reader(o.db, &reader) != 0) {
    sqlite3_close(reader);
    store_close(st);
    free(token);
    return 1;
  }
  server_config cfg = {o.listen,
                       o.nlisten,
                       token,
                       token_len,
                       o.max_connections,
                       (int64_t)(o.handshake_timeout_s * 1000),
                       (int64_t)(o.lost_after_s * 1000),
                       o.flush_ms,
                       (size_t)8 << 20,
                       sc.retain_us > 0 || sc.retain_fail_us > 0 ||
                           sc.max_tasks > 0};
  server_summary sum;
  rc = server_run(&cfg, st, reader, &sum);
  if (sum.started)
    log_summary(st, &sum);
  sqlite3_close(reader);
  store_close(st);
  free(token);
  return rc;
}
