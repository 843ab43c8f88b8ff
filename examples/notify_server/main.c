/*
 * notify_server - the FastAPI tutorial's background-task endpoint, written
 * as a C server on libuv that links libtaskwatch through its public header
 * only, the way a user's server would.
 *
 *   POST /send-notification/{email}   answers 200 at once; after the answer
 *                                      is written, a batch runs in order:
 *     write_notification   sync, thread pool: appends a line to the log file
 *     send_email           async, on the loop: a timer stands in for the
 *                          mail server; addresses in the failing domain
 *                          (default "@invalid.test") fail
 *     write_log            sync, thread pool: appends a line to the log file
 *   GET /healthz                       answers 200
 *
 * When send_email fails, write_log is skipped, just as Starlette skips the
 * tasks after one that raised; taskwatch records both. Batches wait in a
 * FIFO when --max-running are already running. SIGTERM or SIGINT stop the
 * listener, finish the responses owed, and then either run the queued
 * batches (--on-shutdown run, the default) or drop them (recorded as
 * dropped with reason "shutdown"); the agent flushes before exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskwatch.h>
#include <uv.h>

#include "route.h"
#include "server.h"

#define BATCH_LABEL "POST /send-notification/{email}"
#define EMAIL_MAX ROUTE_EMAIL_MAX

typedef struct options {
  const char *host;
  int port;
  const char *log_path;
  const char *fail_domain;
  const char *collector;
  const char *service;
  unsigned long email_delay_ms;
  unsigned long max_running;
  int drop_on_shutdown;
} options;

typedef struct pending {
  tw_batch *batch;
  struct pending *next;
} pending;

typedef struct app {
  options opt;
  uv_loop_t *loop;
  tw_agent *agent;
  server *srv;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  int log_fd;
  pending *head;
  pending *tail;
  unsigned long running;
  int stopping;
  int server_closed;
  int signals_closed;
  unsigned long batches_ok;
  unsigned long batches_failed;
  unsigned long batches_dropped;
} app;

/* What the three tasks of one request share. The last task owns it. */
typedef struct notification {
  app *a;
  char email[EMAIL_MAX + 1];
} notification;

typedef struct email_timer {
  uv_timer_t timer;
  tw_task *task;
  int fail;
  char email[EMAIL_MAX + 1];
} email_timer;

static void pump(app *a);
static void maybe_exit(app *a);

/* Appends one line; O_APPEND keeps lines from different threads whole. */
static int append_line(int fd, const char *what, const char *email) {
  char line[EMAIL_MAX + 128];
  int n = snprintf(line, sizeof(line), "%s %s\n", what, email);
  if (n < 0 || (size_t)n >= sizeof(line))
    return -1;
  return write(fd, line, (size_t)n) == n ? 0 : -1;
}

static int write_notification(tw_task *task, void *arg) {
  notification *n = arg;
  if (append_line(n->a->log_fd, "notification for", n->email) == 0)
    return 0;
  tw_task_set_error(task, "OSError", strerror(errno), NULL);
  return -1;
}

static int write_log(tw_task *task, void *arg) {
  notification *n = arg;
  if (append_line(n->a->log_fd, "log: sent notification to", n->email) == 0)
    return 0;
  tw_task_set_error(task, "OSError", strerror(errno), NULL);
  return -1;
}

static void on_email_timer_closed(uv_handle_t *handle) {
  free(handle->data);
}

static void on_email_sent(uv_timer_t *timer) {
  email_timer *t = timer->data;
  if (t->fail) {
    char message[EMAIL_MAX + 64];
    snprintf(message, sizeof(message), "550 recipient rejected: %s", t->email);
    tw_task_set_error(t->task, "SMTPRecipientRefused", message,
                      "the mail server refused the recipient's domain");
    tw_task_done(t->task, -1);
  } else {
    tw_task_done(t->task, 0);
  }
  uv_close((uv_handle_t *)&t->timer, on_email_timer_closed);
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return m > 0 && n >= m && strcmp(s + n - m, suffix) == 0;
}

static void send_email(tw_task *task, uv_loop_t *loop, void *arg) {
  notification *n = arg;
  email_timer *t = malloc(sizeof(*t));
  if (t == NULL) {
    tw_task_set_error(task, "MemoryError", "out of memory", NULL);
    tw_task_done(task, -1);
    return;
  }
  t->task = task;
  t->fail = has_suffix(n->email, n->a->opt.fail_domain);
  memcpy(t->email, n->email, sizeof(t->email));
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_start(&t->timer, on_email_sent, n->a->opt.email_delay_ms, 0);
}

static void on_batch_done(void *data, int failed) {
  app *a = data;
  a->running--;
  if (failed >= 0)
    a->batches_failed++;
  else
    a->batches_ok++;
  pump(a);
  maybe_exit(a);
}

/* Starts queued batches while fewer than --max-running are running. */
static void pump(app *a) {
  while (a->head != NULL && a->running < a->opt.max_running) {
    pending *p = a->head;
    a->head = p->next;
    if (a->head == NULL)
      a->tail = NULL;
    int err = tw_batch_run(p->batch, on_batch_done, a);
    if (err != 0) {
      tw_batch_drop(p->batch, tw_strerror(err));
      a->batches_dropped++;
    } else {
      a->running++;
    }
    free(p);
  }
}

static void drop_queued(app *a, const char *reason) {
  while (a->head != NULL) {
    pending *p = a->head;
    a->head = p->next;
    tw_batch_drop(p->batch, reason);
    a->batches_dropped++;
    free(p);
  }
  a->tail = NULL;
}

/* The response carrying this batch is written (status 0) or failed. */
static void on_response_sent(void *data, void *after, int status) {
  app *a = data;
  tw_batch *batch = after;
  if (status != 0) {
    tw_batch_drop(batch, "response failed");
    a->batches_dropped++;
  } else if (a->stopping && a->opt.drop_on_shutdown) {
    tw_batch_drop(batch, "shutdown");
    a->batches_dropped++;
  } else {
    pending *p = malloc(sizeof(*p));
    if (p == NULL) {
      tw_batch_drop(batch, "out of memory");
      a->batches_dropped++;
      return;
    }
    p->batch = batch;
    p->next = NULL;
    if (a->tail != NULL)
      a->tail->next = p;
    else
      a->head = p;
    a->tail = p;
    pump(a);
  }
  maybe_exit(a);
}

/* Builds the request's batch; on failure nothing is left behind. */
static tw_batch *make_batch(app *a, const char *email) {
  notification *n = malloc(sizeof(*n));
  if (n == NULL)
    return NULL;
  n->a = a;
  memcpy(n->email, email, strlen(email) + 1);
  tw_batch *b = NULL;
  if (tw_batch_new(a->agent, a->loop, BATCH_LABEL, &b) != 0) {
    free(n);
    return NULL;
  }
  if (tw_batch_add(b, "write_notification", write_notification, n, NULL) != 0 ||
      tw_batch_add_async(b, "send_email", send_email, n, NULL) != 0 ||
      tw_batch_add(b, "write_log", write_log, n, free) != 0) {
    tw_batch_drop(b, "out of memory");
    free(n);
    return NULL;
  }
  return b;
}

static void handle(void *data, const char *method, const char *path,
                   server_response *out) {
  app *a = data;
  char email[ROUTE_EMAIL_MAX + 1];
  switch (route_match(method, path, email)) {
  case ROUTE_HEALTHZ:
    *out = (server_response){200, "text/plain", "ok\n", NULL};
    break;
  case ROUTE_BAD_METHOD:
    *out = (server_response){405, "text/plain", "method not allowed\n", NULL};
    break;
  case ROUTE_BAD_EMAIL:
    *out = (server_response){400, "text/plain", "bad email\n", NULL};
    break;
  case ROUTE_NOTIFY: {
    tw_batch *b = make_batch(a, email);
    if (b == NULL)
      *out = (server_response){503, "text/plain", "out of memory\n", NULL};
    else
      *out = (server_response){
          200, "application/json",
          "{\"message\":\"Notification sent in the background\"}", b};
    break;
  }
  case ROUTE_NOT_FOUND:
    break;
  }
}

static void on_signals_closed(uv_handle_t *handle) {
  app *a = handle->data;
  a->signals_closed++;
}

/* Ends the loop once the server is closed and no batch is left. */
static void maybe_exit(app *a) {
  if (!a->stopping || !a->server_closed || a->head != NULL || a->running > 0)
    return;
  if (!uv_is_closing((uv_handle_t *)&a->sigterm)) {
    uv_close((uv_handle_t *)&a->sigterm, on_signals_closed);
    uv_close((uv_handle_t *)&a->sigint, on_signals_closed);
  }
}

static void on_server_closed(void *data) {
  app *a = data;
  a->server_closed = 1;
  a->srv = NULL;
  maybe_exit(a);
}

static void on_signal(uv_signal_t *handle, int signum) {
  app *a = handle->data;
  if (a->stopping)
    return;
  fprintf(stderr, "notify_server: signal %d, shutting down (%s queued)\n",
          signum, a->opt.drop_on_shutdown ? "dropping" : "running");
  a->stopping = 1;
  if (a->opt.drop_on_shutdown)
    drop_queued(a, "shutdown");
  server_stop(a->srv, on_server_closed);
  maybe_exit(a);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: notify_server [--listen HOST:PORT] [--log PATH]\n"
          "                     [--fail-domain SUFFIX] [--email-delay-ms N]\n"
          "                     [--max-running N] [--on-shutdown run|drop]\n"
          "                     [--collector URL] [--service NAME]\n\n"
          "  --listen HOST:PORT   address to serve (default 127.0.0.1:8000;\n"
          "                       port 0 picks a free port)\n"
          "  --log PATH           file the tasks append to (notify-log.txt)\n"
          "  --fail-domain SUFFIX send_email fails for addresses ending so\n"
          "                       (default @invalid.test)\n"
          "  --email-delay-ms N   how long send_email takes (default 10)\n"
          "  --max-running N      batches running at once (default 1024)\n"
          "  --on-shutdown MODE   on SIGTERM, run or drop queued batches\n"
          "  --collector URL      taskwatch collector (default:\n"
          "                       $TASKWATCH_COLLECTOR or " TW_DEFAULT_COLLECTOR
          ")\n"
          "  --service NAME       service name (default notify_server)\n\n"
          "It prints \"listening on http://HOST:PORT\" once it accepts.\n");
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
    return -1;
  *out = v;
  return 0;
}

/* Splits "HOST:PORT" (the last colon separates, so IPv6 works unbracketed). */
static int parse_listen(char *s, options *opt) {
  char *colon = strrchr(s, ':');
  unsigned long port;
  if (colon == NULL || colon == s || parse_ulong(colon + 1, 65535, &port))
    return -1;
  *colon = '\0';
  opt->host = s;
  opt->port = (int)port;
  return 0;
}

static int bad_arg(const char *what, const char *value) {
  fprintf(stderr, "notify_server: bad %s '%s' (try --help)\n", what,
          value != NULL ? value : "");
  return 2;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, options *opt) {
  for (int i = 1; i < argc; i++) {
    const char *name = argv[i];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    static const char *const known[] = {"--listen",      "--log",
                                        "--fail-domain", "--collector",
                                        "--service",     "--email-delay-ms",
                                        "--max-running", "--on-shutdown"};
    size_t k = 0;
    while (k < sizeof(known) / sizeof(known[0]) && strcmp(name, known[k]))
      k++;
    if (k == sizeof(known) / sizeof(known[0]))
      return bad_arg("option", name);
    char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (value == NULL)
      return bad_arg("option (missing value)", name);
    i++;
    if (strcmp(name, "--listen") == 0) {
      if (parse_listen(value, opt) != 0)
        return bad_arg("--listen", value);
    } else if (strcmp(name, "--log") == 0) {
      opt->log_path = value;
    } else if (strcmp(name, "--fail-domain") == 0) {
      opt->fail_domain = value;
    } else if (strcmp(name, "--collector") == 0) {
      opt->collector = value;
    } else if (strcmp(name, "--service") == 0) {
      opt->service = value;
    } else if (strcmp(name, "--email-delay-ms") == 0) {
      if (parse_ulong(value, 3600000, &opt->email_delay_ms) != 0)
        return bad_arg("--email-delay-ms", value);
    } else if (strcmp(name, "--max-running") == 0) {
      if (parse_ulong(value, 1000000, &opt->max_running) != 0 ||
          opt->max_running == 0)
        return bad_arg("--max-running", value);
    } else if (strcmp(name, "--on-shutdown") == 0) {
      if (strcmp(value, "run") != 0 && strcmp(value, "drop") != 0)
        return bad_arg("--on-shutdown", value);
      opt->drop_on_shutdown = strcmp(value, "drop") == 0;
    } else {
      return bad_arg("option", name);
    }
  }
  return -1;
}

static int start_agent(app *a) {
  tw_config cfg;
  if (tw_config_from_env(&cfg) != 0)
    fprintf(stderr, "notify_server: ignoring a malformed TASKWATCH_ number\n");
  if (a->opt.collector != NULL)
    cfg.collector = a->opt.collector;
  if (a->opt.service != NULL)
    cfg.service = a->opt.service;
  else if (cfg.service == NULL)
    cfg.service = "notify_server";
  int err = tw_agent_new(&cfg, &a->agent);
  if (err != 0)
    fprintf(stderr, "notify_server: taskwatch agent: %s\n", tw_strerror(err));
  return err;
}

static void report(app *a) {
  tw_agent_stats st;
  tw_agent_get_stats(a->agent, &st);
  fprintf(stderr,
          "notify_server: batches %lu ok, %lu failed, %lu dropped; agent "
          "events %llu recorded, %llu dropped, %llu acked; batches refused "
          "%llu (ring %llu, pressure %llu, backlog %llu)\n",
          a->batches_ok, a->batches_failed, a->batches_dropped,
          (unsigned long long)st.recorded, (unsigned long long)st.dropped,
          (unsigned long long)st.acked,
          (unsigned long long)st.dropped_batches,
          (unsigned long long)st.refused_ring,
          (unsigned long long)st.refused_pressure,
          (unsigned long long)st.refused_backlog);
}

static int serve(app *a) {
  int err = server_start(a->loop, a->opt.host, a->opt.port, handle,
                         on_response_sent, a, &a->srv);
  if (err != 0) {
    fprintf(stderr, "notify_server: cannot listen on %s:%d: %s\n", a->opt.host,
            a->opt.port, uv_strerror(err));
    /* Lets the listener's close callback free what server_start made. */
    uv_run(a->loop, UV_RUN_DEFAULT);
    return 1;
  }
  uv_signal_init(a->loop, &a->sigterm);
  uv_signal_init(a->loop, &a->sigint);
  a->sigterm.data = a;
  a->sigint.data = a;
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  printf("listening on http://%s:%d\n", a->opt.host, server_port(a->srv));
  fflush(stdout);
  uv_run(a->loop, UV_RUN_DEFAULT);
  return 0;
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof(a));
  /* 1024 batches at once, each at least its 10 ms send_email, run up to
   * 100,000 a second: a server at 20,000 requests a second stays far from
   * the limit when the machine hiccups. (At 256, about 25,000 a second at
   * best, its queue of batches not yet run grew at 20,000, and the agent,
   * which keeps ring room for every task it admitted that has not ended,
   * refused new batches.) Starlette itself has no such limit. */
  a.opt = (options){
      "127.0.0.1", 8000, "notify-log.txt", "@invalid.test", NULL, NULL, 10,
      1024,        0};
  int status = parse_args(argc, argv, &a.opt);
  if (status >= 0)
    return status;
  /* A client that hangs up mid-write must cost an error code, not the
   * process. */
  struct sigaction ign;
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, NULL);
  a.log_fd =
      open(a.opt.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (a.log_fd < 0) {
    fprintf(stderr, "notify_server: cannot open %s: %s\n", a.opt.log_path,
            strerror(errno));
    return 1;
  }
  a.loop = uv_default_loop();
  if (start_agent(&a) != 0) {
    close(a.log_fd);
    return 1;
  }
  status = serve(&a);
  /* Flushed first so the report's acked count is final; tw_agent_free()
   * would flush as well. */
  tw_agent_flush(a.agent, TW_DEFAULT_FLUSH_TIMEOUT_MS);
  report(&a);
  tw_agent_free(a.agent);
  uv_loop_close(a.loop);
  close(a.log_fd);
  return status;
}
