/*
 * collector - `taskwatch collector`: parses the command line, opens the
 * store, and runs the server (server.h) until SIGTERM or SIGINT.
 */
#include "collector.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "args.h"
#include "auth.h"
#include "guard.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "proto.h"
#include "schema.h"
#include "server.h"
#include "stop.h"
#include "store.h"
#include "tls.h"
#include "taskwatch.h"
#include "track.h"
#include "url.h"
#include "xalloc.h"

/* Where agents look by default: the collector listens there too. */
#define DEFAULT_LISTEN TW_DEFAULT_COLLECTOR
#define MAX_LISTEN 16

typedef struct options {
  const char *db;
  const char *listen[MAX_LISTEN];
  size_t nlisten;
  const char *token_file;
  const char *tls_cert, *tls_key, *tls_client_ca;
  int allow_plaintext;
  int require_proof;
  long long max_agents_per_token; /* 0: GUARD_AGENTS_PER_TOKEN */
  int sync_full;
  int socket_mode; /* -1: 0600 */
  long socket_gid; /* -1: the collector's own group */
  long long max_connections;
  int64_t lost_after_us;
  int64_t handshake_timeout_us;
  int64_t retain_us, retain_failures_us;
  long long max_tasks;
  int64_t flush_us;
  int64_t max_clock_skew_us;
  int log_level;
  const char *metrics_listen;
  double buckets[METRICS_MAX_BUCKETS];
  size_t nbuckets;
  long long max_series;
  const char *otlp_endpoint;
} options;

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define STOP_BOUND_TEXT STRINGIFY(STOP_BOUND_S)
#define AGENTS_PER_TOKEN_TEXT STRINGIFY(GUARD_AGENTS_PER_TOKEN)

static const char usage_text[] =
    "Usage: taskwatch collector [OPTION]...\n"
    "\n"
    "Receives agents' events and stores them in SQLite, each exactly once.\n"
    "SIGTERM or SIGINT: stop accepting, commit everything received, send\n"
    "the acks, exit 0; within " STOP_BOUND_TEXT
    " seconds whatever the store does (what it\n"
    "cannot commit stays with the agents, unacked: exit 1).\n"
    "\n"
    "Options:\n"
    "  --db PATH                  store file, created when missing (default\n"
    "                             $TASKWATCH_DB, else taskwatch.db)\n"
    "  --listen URL               tcp://HOST:PORT, tls://HOST:PORT or\n"
    "                             unix:/PATH, repeatable (default\n"
    "                             " DEFAULT_LISTEN ")\n"
    "  --tls-cert FILE            certificate (PEM, with its chain) of\n"
    "                             tls:// listeners\n"
    "  --tls-key FILE             its private key (PEM)\n"
    "  --tls-client-ca FILE       require agents to present a certificate\n"
    "                             signed by a CA in FILE (mutual TLS)\n"
    "  --allow-plaintext          allow tcp:// on addresses other hosts can\n"
    "                             reach (refused otherwise)\n"
    "  --socket-mode MODE         permissions of unix: sockets, in octal\n"
    "                             (default 0600: the collector's user only)\n"
    "  --socket-group GROUP       group of unix: sockets, a name or number\n"
    "                             (default: the collector's own group)\n"
    "  --token-file PATH          require agents to present a token of PATH\n"
    "                             (one per line, then the services it may\n"
    "                             speak for)\n"
    "  --max-agents-per-token N   agents connected at once with one token\n"
    "                             (default " AGENTS_PER_TOKEN_TEXT ")\n"
    "  --require-proof            refuse agents that cannot prove they own\n"
    "                             their instance (protocol version 1)\n"
    "  --sync normal|full         SQLite synchronous mode (default normal)\n"
    "  --max-connections N        more are accepted and closed (default "
    "1024)\n"
    "  --handshake-timeout DUR    time to send HELLO or finish a frame "
    "(default\n"
    "                             10s)\n"
    "  --lost-after DUR           grace before a vanished instance's open "
    "tasks\n"
    "                             become lost (default 30s)\n"
    "  --retain-days DUR          prune tasks older than this (default: keep)\n"
    "  --retain-failures-days DUR\n"
    "                             keep failed, skipped, dropped and lost "
    "tasks\n"
    "                             this long (default: --retain-days)\n"
    "  --max-tasks N              keep at most N tasks, oldest pruned first\n"
    "  --flush-ms DUR             how long a batch of 4,096 events, a "
    "GOODBYE\n"
    "                             or a FLUSH fills before its commit; a\n"
    "                             smaller one waits five times as long\n"
    "                             (default 50ms)\n"
    "  --max-clock-skew DUR       event times further ahead of the "
    "collector's\n"
    "                             clock, or before their agent started, are\n"
    "                             clamped and counted (default 5m)\n"
    "  --log-level LEVEL          error, warn, info (default) or debug\n"
    "  --metrics-listen URL       serve Prometheus metrics at URL/metrics,\n"
    "                             tcp://HOST:PORT (default: off)\n"
    "  --metrics-buckets LIST     run and wait time buckets in seconds\n"
    "                             (default 0.005,0.01,...,1800,3600)\n"
    "  --metrics-max-series N     (service, task) pairs before the rest\n"
    "                             count as task=\"(other)\" (default 1000)\n"
    "  --otlp-endpoint URL        export finished tasks as OTLP/HTTP JSON\n"
    "                             spans to URL/v1/traces (default:\n"
    "                             $OTEL_EXPORTER_OTLP_ENDPOINT, else off)\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "A duration DUR takes units (250ms, 30s, 2m, 1.5h, 7d); a bare number\n"
    "counts in the unit the option names: seconds, days or milliseconds.\n"
    "SIGHUP reads the TLS files and the token file again.\n"
    "\n"
    "The OTLP export also reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the\n"
    "whole URL) and OTEL_EXPORTER_OTLP_HEADERS (k1=v1,k2=v2).\n"
    "\n"
    "Exit status: 0 after SIGTERM or SIGINT, 1 when the store or a listener\n"
    "cannot be set up, 2 for a bad argument.\n";

enum {
  OPT_DB = 256,
  OPT_LISTEN,
  OPT_SOCKET_MODE,
  OPT_SOCKET_GROUP,
  OPT_TOKEN_FILE,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_TLS_CLIENT_CA,
  OPT_ALLOW_PLAINTEXT,
  OPT_REQUIRE_PROOF,
  OPT_MAX_AGENTS_PER_TOKEN,
  OPT_SYNC,
  OPT_MAX_CONNECTIONS,
  OPT_HANDSHAKE_TIMEOUT,
  OPT_LOST_AFTER,
  OPT_RETAIN_DAYS,
  OPT_RETAIN_FAILURES_DAYS,
  OPT_MAX_TASKS,
  OPT_FLUSH_MS,
  OPT_MAX_CLOCK_SKEW,
  OPT_LOG_LEVEL,
  OPT_METRICS_LISTEN,
  OPT_METRICS_BUCKETS,
  OPT_METRICS_MAX_SERIES,
  OPT_OTLP_ENDPOINT,
};

static const struct option long_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
    {"socket-group", required_argument, NULL, OPT_SOCKET_GROUP},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"allow-plaintext", no_argument, NULL, OPT_ALLOW_PLAINTEXT},
    {"require-proof", no_argument, NULL, OPT_REQUIRE_PROOF},
    {"max-agents-per-token", required_argument, NULL, OPT_MAX_AGENTS_PER_TOKEN},
    {"sync", required_argument, NULL, OPT_SYNC},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
    {"lost-after", required_argument, NULL, OPT_LOST_AFTER},
    {"retain-days", required_argument, NULL, OPT_RETAIN_DAYS},
    {"retain-failures-days", required_argument, NULL, OPT_RETAIN_FAILURES_DAYS},
    {"max-tasks", required_argument, NULL, OPT_MAX_TASKS},
    {"flush-ms", required_argument, NULL, OPT_FLUSH_MS},
    {"max-clock-skew", required_argument, NULL, OPT_MAX_CLOCK_SKEW},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
    {"metrics-buckets", required_argument, NULL, OPT_METRICS_BUCKETS},
    {"metrics-max-series", required_argument, NULL, OPT_METRICS_MAX_SERIES},
    {"otlp-endpoint", required_argument, NULL, OPT_OTLP_ENDPOINT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define SEC INT64_C(1000000)
#define DAY (86400 * SEC)

/* An octal permission mode such as 0660 or 660. */
static int set_socket_mode(const args *a, options *o) {
  const char *v = a->value;
  size_t n = strlen(v);
  if (n == 0 || n > 4 || strspn(v, "01234567") != n ||
      strtol(v, NULL, 8) > 0777)
    return args_invalid(a, "an octal mode from 0000 to 0777, such as 0660");
  o->socket_mode = (int)strtol(v, NULL, 8);
  return 0;
}

/* A group name, or a number. The collector must belong to the group
 * (or run as root) to give its sockets to it; that is checked at bind. */
static int set_socket_group(const args *a, options *o) {
  long long gid;
  if (args_parse_int(a->value, 0, INT32_MAX - 1, &gid) == 0) {
    o->socket_gid = (long)gid;
    return 0;
  }
  struct group *g = getgrnam(a->value);
  if (g == NULL)
    return args_error(a, "invalid --socket-group '%s': no such group",
                      a->value);
  o->socket_gid = (long)g->gr_gid;
  return 0;
}

static int set_listen(const args *a, options *o) {
  if (o->nlisten == MAX_LISTEN)
    return args_error(a, "at most %d --listen options", MAX_LISTEN);
  url u;
  int rc = tw__url_parse(a->value, URL_LISTEN | URL_TLS_OK, &u);
  if (rc != 0)
    return args_error(a, "invalid %s '%s': %s", a->name, a->value,
                      tw__url_strerror(rc));
  o->listen[o->nlisten++] = a->value;
  return 0;
}

/* The exports' options (docs/export.md). */
static int apply_export_option(const args *a, int c, options *o) {
  int n;
  switch (c) {
  case OPT_METRICS_LISTEN: {
    url u;
    int rc = tw__url_parse(a->value, URL_LISTEN, &u);
    if (rc == URL_E_SCHEME || rc == URL_E_TLS ||
        (rc == 0 && u.scheme != URL_TCP))
      return args_invalid(a, "tcp://HOST:PORT");
    if (rc != 0)
      return args_error(a, "invalid %s '%s': %s", a->name, a->value,
                        tw__url_strerror(rc));
    o->metrics_listen = a->value;
    return 0;
  }
  case OPT_METRICS_BUCKETS:
    n = metrics_parse_buckets(a->value, o->buckets, METRICS_MAX_BUCKETS);
    if (n < 0)
      return args_invalid(a, "increasing seconds above 0 separated by "
                             "commas, such as 0.1,1,10 (at most 64)");
    o->nbuckets = (size_t)n;
    return 0;
  case OPT_METRICS_MAX_SERIES:
    return args_int(a, 1, 100000, &o->max_series);
  case OPT_OTLP_ENDPOINT:
    o->otlp_endpoint = a->value;
    return 0;
  default:
    return ARGS_USAGE;
  }
}

/* Applies one option to the options ctx; returns 0 or ARGS_USAGE. */
static int apply_option(const args *a, int c, void *ctx) {
  options *o = ctx;
  static const char *const syncs[] = {"normal", "full", NULL};
  switch (c) {
  case OPT_DB:
    o->db = a->value;
    return 0;
  case OPT_LISTEN:
    return set_listen(a, o);
  case OPT_SOCKET_MODE:
    return set_socket_mode(a, o);
  case OPT_SOCKET_GROUP:
    return set_socket_group(a, o);
  case OPT_TOKEN_FILE:
    o->token_file = a->value;
    return 0;
  case OPT_TLS_CERT:
    o->tls_cert = a->value;
    return 0;
  case OPT_TLS_KEY:
    o->tls_key = a->value;
    return 0;
  case OPT_TLS_CLIENT_CA:
    o->tls_client_ca = a->value;
    return 0;
  case OPT_ALLOW_PLAINTEXT:
    o->allow_plaintext = 1;
    return 0;
  case OPT_REQUIRE_PROOF:
    o->require_proof = 1;
    return 0;
  case OPT_MAX_AGENTS_PER_TOKEN:
    return args_int(a, 1, 1000000, &o->max_agents_per_token);
  case OPT_SYNC:
    return args_choice(a, syncs, &o->sync_full);
  case OPT_MAX_CONNECTIONS:
    return args_int(a, 1, 1000000, &o->max_connections);
  case OPT_HANDSHAKE_TIMEOUT:
    return args_duration(a, SEC, 1000, 3600 * SEC, &o->handshake_timeout_us);
  case OPT_LOST_AFTER:
    return args_duration(a, SEC, 0, 30 * DAY, &o->lost_after_us);
  case OPT_RETAIN_DAYS:
    return args_duration(a, DAY, 0, 36500 * DAY, &o->retain_us);
  case OPT_RETAIN_FAILURES_DAYS:
    return args_duration(a, DAY, 0, 36500 * DAY, &o->retain_failures_us);
  case OPT_MAX_TASKS:
    return args_int(a, 1, INT64_MAX, &o->max_tasks);
  case OPT_FLUSH_MS:
    return args_duration(a, 1000, 1000, 60 * SEC, &o->flush_us);
  case OPT_MAX_CLOCK_SKEW:
    return args_duration(a, SEC, 0, 30 * DAY, &o->max_clock_skew_us);
  case OPT_LOG_LEVEL:
    if ((o->log_level = log_level_parse(a->value)) < 0)
      return args_invalid(a, "one of error, warn, info, debug");
    return 0;
  default:
    return apply_export_option(a, c, o);
  }
}

/* The first listener of a scheme, or NULL. */
static const char *listener_of(const options *o, url_scheme scheme) {
  for (size_t i = 0; i < o->nlisten; i++) {
    url u;
    if (tw__url_parse(o->listen[i], URL_LISTEN | URL_TLS_OK, &u) == 0 &&
        u.scheme == scheme)
      return o->listen[i];
  }
  return NULL;
}

/* Plaintext where other hosts can reach it carries tokens and task data
 * in clear: refused unless --allow-plaintext says so. */
static const char *exposed_plaintext(const options *o) {
  for (size_t i = 0; i < o->nlisten; i++) {
    url u;
    if (tw__url_parse(o->listen[i], URL_LISTEN | URL_TLS_OK, &u) == 0 &&
        u.scheme == URL_TCP && !tw__url_loopback(&u))
      return o->listen[i];
  }
  return NULL;
}

/* The TLS, transport and token options agree with the listeners and each
 * other. */
static int check_auth(const args *a, const options *o) {
  const char *tls = listener_of(o, URL_TLS), *open = exposed_plaintext(o);
  if (tls && (!o->tls_cert || !o->tls_key))
    return args_error(a, "--listen %s needs --tls-cert FILE and --tls-key FILE",
                      tls);
  if (!tls && (o->tls_cert || o->tls_key || o->tls_client_ca))
    return args_error(a, "--tls-cert, --tls-key and --tls-client-ca need a "
                         "--listen tls://HOST:PORT");
  if (open && !o->allow_plaintext)
    return args_error(a,
                      "--listen %s: plaintext on an address other hosts can "
                      "reach; listen on tls:// (with --tls-cert and "
                      "--tls-key), or add --allow-plaintext",
                      open);
  if (o->max_agents_per_token && !o->token_file)
    return args_error(a, "--max-agents-per-token needs --token-file");
  return 0;
}

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof(*o));
  o->db = schema_default_db();
  o->socket_mode = -1;
  o->socket_gid = -1;
  o->max_connections = 1024;
  o->lost_after_us = 30 * SEC;
  o->handshake_timeout_us = 10 * SEC;
  /* Group commit: a transaction costs about the pages it dirties (a page
   * per agent and index, whatever its rows), so fewer, larger ones cost
   * less per event; 50 ms, and five times that for a batch of few events
   * (batch.h), keeps acks and commits well within the agents' budget and
   * the readers' second (docs/collector.md). */
  o->flush_us = 50000;
  o->max_clock_skew_us = 300 * SEC;
  o->log_level = LOG_INFO;
  o->max_series = METRICS_DEFAULT_MAX_SERIES;
  static const double default_buckets[] = METRICS_DEFAULT_BUCKETS;
  o->nbuckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
  memcpy(o->buckets, default_buckets, sizeof(default_buckets));
  args a;
  args_init(&a, "collector", argc, argv, "h", long_options);
  int rc = args_options(&a, usage_text, apply_option, o);
  if (rc)
    return rc;
  if ((o->socket_mode >= 0 || o->socket_gid >= 0) && !listener_of(o, URL_UNIX))
    return args_error(&a, "--socket-mode and --socket-group need a "
                          "--listen unix:/PATH");
  if (o->nlisten == 0)
    o->listen[o->nlisten++] = DEFAULT_LISTEN;
  return check_auth(&a, o);
}

/* The token file and the TLS files, each refused with one line. */
static int load_secrets(const options *o, token_table **tokens,
                        tls_server **tls) {
  char err[PATH_MAX + 256];
  *tokens = NULL;
  *tls = NULL;
  if (o->token_file &&
      (*tokens = auth_tokens_load(o->token_file, err, sizeof(err))) == NULL) {
    fprintf(stderr, "taskwatch collector: %s\n", err);
    return -1;
  }
  tls_files files = {o->tls_cert, o->tls_key, o->tls_client_ca};
  if (o->tls_cert &&
      (*tls = tls_server_new(&files, err, sizeof(err))) == NULL) {
    fprintf(stderr, "taskwatch collector: %s\n", err);
    auth_tokens_free(*tokens);
    *tokens = NULL;
    return -1;
  }
  return 0;
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

/* The last line of the log (stop.h): what was done, and what could not be
 * committed (uncommitted=, with a note when there was some). */
static void log_summary(const store_stats *stats, const server_summary *sum) {
  uint64_t left = stop_uncommitted();
  char caps[1024];
  if (!stop_last_line())
    return;
  guard_format(caps, sizeof(caps));
  log_msg(left ? LOG_ERROR : LOG_INFO,
          "stopped events=%llu transactions=%llu inserted=%llu "
          "updated=%llu unmatched=%llu orphans=%llu refused=%llu "
          "clamped=%llu lost=%llu pruned=%llu connections=%llu "
          "rejected=%llu latency_p50_us=%lld latency_p99_us=%lld %s "
          "uncommitted=%llu%s",
          (unsigned long long)stats->events,
          (unsigned long long)stats->transactions,
          (unsigned long long)stats->rows_inserted,
          (unsigned long long)stats->rows_updated,
          (unsigned long long)stats->updates_unmatched,
          (unsigned long long)stats->orphans,
          (unsigned long long)stats->events_refused,
          (unsigned long long)stats->times_clamped,
          (unsigned long long)stats->tasks_lost,
          (unsigned long long)stats->tasks_pruned,
          (unsigned long long)sum->connections,
          (unsigned long long)sum->rejected, (long long)sum->latency_p50_us,
          (long long)sum->latency_p99_us, caps, (unsigned long long)left,
          left ? " note=\"" STOP_UNCOMMITTED_NOTE "\"" : "");
}

#define MAX_OTLP_HEADERS 32

/* The OTLP settings: --otlp-endpoint, else the OpenTelemetry variables.
 * Returns 0 (oc->url NULL when the export is off) or the exit status 2
 * after a one-line message. */
static int otlp_settings(const options *o, otlp_config *oc, char **headers) {
  const char *traces = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const char *base = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  const char *name = "--otlp-endpoint", *value = o->otlp_endpoint;
  memset(oc, 0, sizeof(*oc));
  oc->db_path = o->db;
  if (value == NULL && traces && *traces) {
    name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    value = traces;
  } else if (value == NULL && base && *base) {
    name = "OTEL_EXPORTER_OTLP_ENDPOINT";
    value = base;
  }
  if (value == NULL)
    return 0;
  /* The traces variable is the whole URL; the others are a base. */
  char *url =
      value == traces
          ? (strncmp(value, "http", 4) == 0 ? otlp_traces_url(value) : NULL)
          : otlp_traces_url(value);
  if (url && value == traces) {
    free(url);
    url = xstrdup(value);
  }
  if (url == NULL)
    return args_fail("collector",
                     "invalid %s '%s': expected an http:// or https:// URL",
                     name, value);
  const char *env = getenv("OTEL_EXPORTER_OTLP_HEADERS"), *why = NULL;
  int n = env ? otlp_parse_headers(env, headers, MAX_OTLP_HEADERS, &why) : 0;
  if (n < 0) {
    free(url);
    return args_fail("collector", "invalid OTEL_EXPORTER_OTLP_HEADERS: %s",
                     why);
  }
  oc->url = url;
  oc->headers = (const char *const *)headers;
  oc->nheaders = (size_t)n;
  return 0;
}

static void otlp_settings_free(otlp_config *oc, char **headers) {
  free((char *)oc->url);
  for (size_t i = 0; i < oc->nheaders; i++)
    free(headers[i]);
}

/*
 * The heap keeps what it grew to. SQLite's page cache and B-tree balancing
 * allocate and free buffers of the store's pages (16 or 64 KiB) and more
 * in every transaction; with glibc's defaults the larger ones were mapped
 * and unmapped each time and the heap's top trimmed and grown again, a
 * page fault for every 4 KiB touched (about 10 % of the writer's CPU at
 * 100,000 events/s). The collector's memory is bounded by its caches and
 * caps (guard.h), not by what malloc gives back.
 */
static void keep_heap(void) {
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int collector_main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  keep_heap();
  log_set_level(o.log_level);
  otlp_config oc;
  char *otlp_headers[MAX_OTLP_HEADERS];
  if ((rc = otlp_settings(&o, &oc, otlp_headers)) != 0)
    return rc;
  export_config ec = {o.metrics_listen,
                      o.buckets,
                      o.nbuckets,
                      (size_t)o.max_series,
                      TRACK_DEFAULT_MAX_TASKS,
                      oc.url ? &oc : NULL,
                      o.db};
  token_table *tokens;
  tls_server *tls;
  if (load_secrets(&o, &tokens, &tls) != 0) {
    otlp_settings_free(&oc, otlp_headers);
    return 1;
  }
  raise_fd_limit();
  /* The writer is SQLite's only heavy user: its global allocation
   * statistics would cost a mutex round trip per malloc. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  store_config sc = {o.db, o.sync_full, o.retain_us, o.retain_failures_us,
                     o.max_tasks,
                     /* Long after the loop has forgotten the instance
                      * (it keeps one only through --lost-after). */
                     o.lost_after_us + DAY, 0, STORE_HOLD_MS};
  store *st = NULL;
  sqlite3 *reader = NULL;
  char *err = NULL;
  if (store_open(&sc, &st, &err) != 0 || open_reader(o.db, &reader) != 0) {
    if (err != NULL)
      fprintf(stderr, "taskwatch collector: cannot open %s: %s\n", o.db, err);
    free(err);
    sqlite3_close(reader);
    if (st)
      store_close(st);
    auth_tokens_free(tokens);
    tls_server_free(tls);
    otlp_settings_free(&oc, otlp_headers);
    return 1;
  }
  server_config cfg = {
      .listen = o.listen,
      .nlisten = o.nlisten,
      .socket_mode = o.socket_mode >= 0 ? o.socket_mode : 0600,
      .socket_gid = o.socket_gid,
      .tokens = tokens,
      .token_file = o.token_file,
      .tls = tls,
      .require_proof = o.require_proof,
      .max_agents_per_token = o.max_agents_per_token
                                  ? (int)o.max_agents_per_token
                                  : GUARD_AGENTS_PER_TOKEN,
      .max_connections = (int)o.max_connections,
      .handshake_timeout_ms = o.handshake_timeout_us / 1000,
      .lost_after_ms = o.lost_after_us / 1000,
      .flush_ms = o.flush_us / 1000,
      .high_watermark = (size_t)8 << 20,
      .prune = sc.retain_us > 0 || sc.retain_fail_us > 0 || sc.max_tasks > 0,
      .exports = &ec,
      .max_clock_skew_us = o.max_clock_skew_us,
  };
  server_summary sum;
  rc = server_run(&cfg, st, reader, &sum);
  store_stats stats;
  store_get_stats(st, &stats);
  sqlite3_close(reader);
  store_close(st);
  if (sum.started)
    log_summary(&stats, &sum);
  otlp_settings_free(&oc, otlp_headers);
  return rc;
}
