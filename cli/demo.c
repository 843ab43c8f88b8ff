/*
 * demo - `taskwatch demo`: an in-process server simulation that links the
 * agent. Each batch is the FastAPI tutorial's request
 * `POST /send-notification/{email}` with three background tasks, in order:
 * write_notification (sync, thread pool), send_email (async, event loop) and
 * write_log (sync). In every K-th batch send_email fails, so write_log is
 * skipped - the case taskwatch exists to make visible.
 *
 * Batches run through the agent's libuv runner with a bounded number in
 * flight, like requests of a busy server; --rate caps batches per second.
 * --direct records the same events with the low-level trace calls on one
 * thread instead, which makes the demo a pure event source for ingest
 * benchmarks. The demo exits 0 once its agent has flushed everything to the
 * collector.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <taskwatch.h>
#include <uv.h>

#include "args.h"
#include "cli.h"
#include "url.h"

#define DEMO_LABEL "POST /send-notification/{email}"

typedef struct demo_opts {
  const char *collector;
  const char *service;
  uint64_t batches;
  uint64_t fail_every; /* 0: never */
  double rate;         /* batches per second; 0: unlimited */
  unsigned concurrency;
  unsigned email_ms; /* simulated network time of send_email */
  double flush_timeout_s;
  int direct;
  int quiet;
  int have_batches; /* --batches was given */
} demo_opts;

typedef struct demo {
  demo_opts opts;
  tw_agent *agent;
  uv_loop_t *loop;
  uv_timer_t pacer;
  uint64_t started;  /* batches handed to the runner */
  uint64_t finished; /* batches whose done callback ran */
  uint64_t failed;   /* batches where a task failed */
  unsigned in_flight;
  uint64_t pace_origin_ns;
  int error;   /* first runner error, stops the run */
  int pumping; /* pump() is on the stack: re-entry only asks again */
  int again;
} demo;

/* The argument every task of one batch shares: the request's data. */
typedef struct request {
  demo *demo;
  uint64_t number; /* 1-based */
  char email[48];
  int refs;
  uv_timer_t timer; /* send_email's simulated network call */
  int timer_used;
  tw_task *pending;
} request;

static void request_unref(void *arg) {
  request *r = arg;
  if (--r->refs == 0)
    free(r);
}

/* Formats the line the tutorial's task would append to its log file. The
 * buffer stands in for the file so the demo measures the agent, not a
 * disk. */
static int write_notification(tw_task *task, void *arg) {
  (void)task;
  const request *r = arg;
  char line[160];
  int n = snprintf(line, sizeof(line), "notification for %s: %s\n", r->email,
                   "some notification");
  return n > 0 ? 0 : -1;
}

static int write_log(tw_task *task, void *arg) {
  (void)task;
  const request *r = arg;
  char line[160];
  int n = snprintf(line, sizeof(line), "email sent to %s\n", r->email);
  return n > 0 ? 0 : -1;
}

static int should_fail(const demo *d, uint64_t number) {
  return d->opts.fail_every > 0 && number % d->opts.fail_every == 0;
}

static void email_result(request *r, tw_task *task) {
  if (should_fail(r->demo, r->number)) {
    char msg[128];
    snprintf(msg, sizeof(msg), "550 mailbox unavailable: %s", r->email);
    tw_task_set_error(task, "SMTPRecipientsRefused", msg,
                      "Traceback (most recent call last):\n"
                      "  File \"main.py\", line 14, in send_email\n"
                      "    smtp.send_message(message)\n"
                      "SMTPRecipientsRefused: 550 mailbox unavailable\n");
    tw_task_done(task, -1);
    return;
  }
  tw_task_done(task, 0);
}

static void email_timer_cb(uv_timer_t *timer) {
  request *r = timer->data;
  tw_task *task = r->pending;
  r->pending = NULL;
  email_result(r, task);
}

static void timer_closed(uv_handle_t *h) {
  request_unref(h->data);
}

/* Async: answers at once, or after --email-ms on a loop timer. */
static void send_email(tw_task *task, uv_loop_t *loop, void *arg) {
  request *r = arg;
  if (r->demo->opts.email_ms == 0) {
    email_result(r, task);
    return;
  }
  r->pending = task;
  r->refs++;
  r->timer_used = 1;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, email_timer_cb, r->demo->opts.email_ms, 0);
}

static void pump(demo *d);

static void batch_done(void *data, int failed) {
  request *r = data;
  demo *d = r->demo;
  d->finished++;
  d->in_flight--;
  if (failed >= 0)
    d->failed++;
  if (r->timer_used)
    uv_close((uv_handle_t *)&r->timer, timer_closed);
  request_unref(r);
  pump(d);
}

static int start_batch(demo *d) {
  request *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return TW_ENOMEM;
  r->demo = d;
  r->number = d->started + 1;
  r->refs = 1; /* the done callback's reference */
  snprintf(r->email, sizeof(r->email), "user%" PRIu64 "@example.com",
           r->number);
  tw_batch *b = NULL;
  int rc = tw_batch_new(d->agent, d->loop, DEMO_LABEL, &b);
  if (rc != 0) {
    free(r);
    return rc;
  }
  /* Each task holds a reference, released by the batch when it is done. */
  if ((rc = tw_batch_add(b, "write_notification", write_notification, r,
                         NULL)) == 0 &&
      (rc = tw_batch_add_async(b, "send_email", send_email, r, NULL)) == 0 &&
      (rc = tw_batch_add(b, "write_log", write_log, r, NULL)) == 0)
    rc = tw_batch_run(b, batch_done, r);
  if (rc != 0) {
    tw_batch_drop(b, "the demo could not run the batch");
    free(r);
    return rc;
  }
  d->started++;
  d->in_flight++;
  return 0;
}

static uint64_t allowed_by_rate(const demo *d) {
  if (d->opts.rate <= 0)
    return d->opts.batches;
  double elapsed = (double)(uv_hrtime() - d->pace_origin_ns) / 1e9;
  double allowed = elapsed * d->opts.rate + 1;
  return allowed >= (double)d->opts.batches ? d->opts.batches
                                            : (uint64_t)allowed;
}

/* Starts batches while the concurrency and the rate allow. A batch can
 * complete inside tw_batch_run() and call back into pump(); that nested
 * call only asks the outer one to look again, so the stack stays flat. */
static void pump(demo *d) {
  if (d->pumping) {
    d->again = 1;
    return;
  }
  d->pumping = 1;
  do {
    d->again = 0;
    uint64_t limit = allowed_by_rate(d);
    while (!d->error && d->started < limit &&
           d->in_flight < d->opts.concurrency) {
      int rc = start_batch(d);
      if (rc != 0)
        d->error = rc;
    }
  } while (d->again && !d->error);
  d->pumping = 0;
}

static void pacer_cb(uv_timer_t *t) {
  demo *d = t->data;
  pump(d);
  if (d->started >= d->opts.batches || d->error)
    uv_timer_stop(t);
}

static int run_with_runner(demo *d) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    return TW_EUV;
  d->loop = &loop;
  uv_timer_init(&loop, &d->pacer);
  d->pacer.data = d;
  d->pace_origin_ns = uv_hrtime();
  /* With a rate, a 1 ms tick releases batches as they fall due. */
  if (d->opts.rate > 0)
    uv_timer_start(&d->pacer, pacer_cb, 1, 1);
  pump(d);
  for (;;) {
    int done = d->started >= d->opts.batches || d->error;
    if (done && d->in_flight == 0)
      break;
    if (uv_run(&loop, UV_RUN_ONCE) == 0 && d->in_flight == 0 && !done &&
        !uv_is_active((uv_handle_t *)&d->pacer))
      pump(d);
  }
  uv_close((uv_handle_t *)&d->pacer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return d->error;
}

/* The same events as the runner records, without running anything. With
 * a rate, batches are released in 1 ms steps (as the runner's tick does):
 * a sleep per batch would cost a context switch each, which at these
 * rates takes more CPU than the recording. */
static int run_direct(demo *d) {
  uint64_t origin = uv_hrtime();
  for (uint64_t i = 1; i <= d->opts.batches; i++) {
    if (d->opts.rate > 0) {
      double wait =
          (double)(i - 1) / d->opts.rate - (double)(uv_hrtime() - origin) / 1e9;
      if (wait >= 0.001) {
        struct timespec ts = {(time_t)wait,
                              (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    tw_id batch = 0, t[3] = {0, 0, 0};
    tw_batch_begin(d->agent, DEMO_LABEL, &batch);
    tw_task_enqueue(d->agent, batch, 0, "write_notification",
                    TW_MODE_THREADPOOL, &t[0]);
    tw_task_enqueue(d->agent, batch, 1, "send_email", TW_MODE_LOOP, &t[1]);
    tw_task_enqueue(d->agent, batch, 2, "write_log", TW_MODE_THREADPOOL, &t[2]);
    tw_task_start(d->agent, t[0]);
    tw_task_finish(d->agent, t[0]);
    tw_task_start(d->agent, t[1]);
    if (should_fail(d, i)) {
      tw_task_fail(d->agent, t[1], "SMTPRecipientsRefused",
                   "550 mailbox unavailable", NULL);
      tw_task_skip(d->agent, t[2], t[1]);
      d->failed++;
    } else {
      tw_task_finish(d->agent, t[1]);
      tw_task_start(d->agent, t[2]);
      tw_task_finish(d->agent, t[2]);
    }
    d->started++;
    d->finished++;
  }
  return 0;
}

static const char usage_text[] =
    "Usage: taskwatch demo --batches N [OPTION]...\n"
    "\n"
    "Simulates a server handling POST /send-notification/{email}: each\n"
    "batch runs write_notification (sync), send_email (async) and\n"
    "write_log (sync) through the agent's runner; when send_email fails,\n"
    "write_log is skipped. Exits 0 once the collector has every event.\n"
    "\n"
    "Options:\n"
    "  --collector URL            tcp://HOST:PORT or unix:/PATH (default:\n"
    "                             $TASKWATCH_COLLECTOR or " TW_DEFAULT_COLLECTOR
    ")\n"
    "  --batches N                number of batches (requests) to run\n"
    "  --fail-every K             send_email fails in every K-th batch\n"
    "  --rate R                   at most R batches per second (default: as\n"
    "                             fast as possible)\n"
    "  --concurrency C            batches in flight at once (default 64)\n"
    "  --email-ms DUR             simulated network time of send_email\n"
    "                             (default 0)\n"
    "  --service NAME             service name (default: $TASKWATCH_SERVICE\n"
    "                             or demo)\n"
    "  --direct                   record the same events with the low-level\n"
    "                             calls on one thread, running nothing\n"
    "  --flush-timeout DUR        time to wait for the collector's acks at\n"
    "                             the end (default 60s)\n"
    "  --quiet                    no summary line\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "A duration DUR takes units (250ms, 30s, 2m); a bare number counts in\n"
    "the unit the option names: milliseconds or seconds. The agent reads\n"
    "TASKWATCH_TOKEN and TASKWATCH_BUFFER_BYTES (e.g. 8MiB) too.\n"
    "\n"
    "Exit status: 0 when every event was acknowledged, 1 when the run or\n"
    "the flush failed, 2 for a bad argument.\n";

enum {
  OPT_COLLECTOR = 256,
  OPT_BATCHES,
  OPT_FAIL,
  OPT_RATE,
  OPT_CONC,
  OPT_EMAIL,
  OPT_SERVICE,
  OPT_DIRECT,
  OPT_FLUSH,
  OPT_QUIET
};

static const struct option long_options[] = {
    {"collector", required_argument, NULL, OPT_COLLECTOR},
    {"batches", required_argument, NULL, OPT_BATCHES},
    {"fail-every", required_argument, NULL, OPT_FAIL},
    {"rate", required_argument, NULL, OPT_RATE},
    {"concurrency", required_argument, NULL, OPT_CONC},
    {"email-ms", required_argument, NULL, OPT_EMAIL},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"direct", no_argument, NULL, OPT_DIRECT},
    {"flush-timeout", required_argument, NULL, OPT_FLUSH},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* Applies one option to the demo_opts ctx; returns 0 or ARGS_USAGE. */
static int apply_option(const args *a, int c, void *ctx) {
  demo_opts *o = ctx;
  long long n;
  int64_t us;
  int rc;
  switch (c) {
  case OPT_COLLECTOR:
    o->collector = a->value;
    return 0;
  case OPT_BATCHES:
    o->have_batches = 1;
    if ((rc = args_int(a, 0, INT64_C(1) << 40, &n)) == 0)
      o->batches = (uint64_t)n;
    return rc;
  case OPT_FAIL:
    if ((rc = args_int(a, 0, INT64_MAX, &n)) == 0)
      o->fail_every = (uint64_t)n;
    return rc;
  case OPT_RATE:
    return args_double(a, 0, 1e12, &o->rate);
  case OPT_CONC:
    if ((rc = args_int(a, 1, 1 << 20, &n)) == 0)
      o->concurrency = (unsigned)n;
    return rc;
  case OPT_EMAIL:
    if ((rc = args_duration(a, 1000, 0, INT64_C(3600000000), &us)) == 0)
      o->email_ms = (unsigned)(us / 1000);
    return rc;
  case OPT_SERVICE:
    if (*a->value == '\0')
      return args_invalid(a, "a name");
    o->service = a->value;
    return 0;
  case OPT_DIRECT:
    o->direct = 1;
    return 0;
  case OPT_FLUSH:
    if ((rc = args_duration(a, 1000000, 0, INT64_C(86400000000), &us)) == 0)
      o->flush_timeout_s = (double)us / 1e6;
    return rc;
  case OPT_QUIET:
    o->quiet = 1;
    return 0;
  default:
    return ARGS_USAGE;
  }
}

/* Returns -1 after --help, 0, or the exit status 2. */
static int parse_args(int argc, char **argv, demo_opts *o) {
  args a;
  args_init(&a, "demo", argc, argv, "h", long_options);
  int rc = args_options(&a, usage_text, apply_option, o);
  if (rc)
    return rc;
  if (!o->have_batches)
    return args_error(&a, "--batches N is required");
  return 0;
}

/* The one line a run ends with. Events are counted so they add up: the
 * collector stores the events recorded here and a few of the agent's own
 * (each task name once, health reports), so "stored" can exceed
 * "recorded", and the line says by how many and why. What was dropped is
 * said as the agent counts it: events, and the batches and tasks it
 * refused whole (tw_agent_stats). */
static void print_summary(const demo *d, const tw_agent_stats *st, int flushed,
                          double work_s, double flush_s) {
  uint64_t tasks = d->finished * 3, failed = d->failed;
  char own[96];
  if (flushed && st->acked >= st->recorded)
    snprintf(own, sizeof(own),
             "%" PRIu64 " of them the agent's own: task "
             "names and health",
             st->acked - st->recorded);
  else
    snprintf(own, sizeof(own),
             "the agent's own task names and health "
             "included");
  printf("demo: %" PRIu64 " batches, %" PRIu64 " tasks (%" PRIu64
         " succeeded, %" PRIu64 " failed, %" PRIu64
         " skipped); work %.3f s, flush %.3f s; events: %" PRIu64
         " recorded, %" PRIu64 " stored (%s), %" PRIu64
         " dropped; refused whole: %" PRIu64 " batches, %" PRIu64
         " tasks (batches refused by: ring %" PRIu64 ", sender %" PRIu64
         ", pool %" PRIu64 ")\n",
         d->finished, tasks, tasks - 2 * failed, failed, failed, work_s,
         flush_s, st->recorded, st->acked, own, st->dropped,
         st->dropped_batches, st->dropped_tasks, st->refused_ring,
         st->refused_pressure, st->refused_backlog);
}

int demo_main(int argc, char **argv) {
  demo d;
  memset(&d, 0, sizeof(d));
  d.opts.concurrency = 64;
  d.opts.flush_timeout_s = 60;
  int rc = parse_args(argc, argv, &d.opts);
  if (rc != 0)
    return rc < 0 ? 0 : rc;

  tw_config cfg;
  tw_config_from_env(&cfg);
  if (d.opts.collector)
    cfg.collector = d.opts.collector;
  if (d.opts.service)
    cfg.service = d.opts.service;
  else if (getenv("TASKWATCH_SERVICE") == NULL)
    cfg.service = "demo";
  if ((rc = tw_agent_new(&cfg, &d.agent)) != 0) {
    const char *target = cfg.collector ? cfg.collector : TW_DEFAULT_COLLECTOR;
    url u;
    int why = tw__url_parse(target, 0, &u);
    if (rc == TW_EURL && why != 0)
      fprintf(stderr, "taskwatch demo: bad collector URL '%s': %s\n", target,
              tw__url_strerror(why));
    else
      fprintf(stderr, "taskwatch demo: cannot start the agent: %s\n",
              tw_strerror(rc));
    return rc == TW_EURL ? 2 : 1;
  }

  uint64_t t0 = uv_hrtime();
  rc = d.opts.direct ? run_direct(&d) : run_with_runner(&d);
  uint64_t t1 = uv_hrtime();
  int flushed = tw_agent_flush(
      d.agent, (unsigned)(d.opts.flush_timeout_s * 1000.0 + 0.5));
  uint64_t t2 = uv_hrtime();
  tw_agent_stats st;
  tw_agent_get_stats(d.agent, &st);
  char why[LIMIT_REFUSAL_TEXT];
  int refusal = tw_agent_refusal(d.agent, why, sizeof(why));
  tw_agent_free(d.agent);

  if (rc != 0)
    fprintf(stderr, "taskwatch demo: the runner failed: %s\n", tw_strerror(rc));
  if (!d.opts.quiet)
    print_summary(&d, &st, flushed == 0, (double)(t1 - t0) / 1e9,
                  (double)(t2 - t1) / 1e9);
  if (flushed != 0) {
    fprintf(stderr,
            "taskwatch demo: the collector did not acknowledge every event "
            "within %.0f s (%s)\n",
            d.opts.flush_timeout_s, tw_conn_state_name((int)st.conn_state));
    if (refusal != TW_REFUSAL_NONE)
      fprintf(stderr, "taskwatch demo: %s: %s\n", tw_refusal_name(refusal),
              why);
    return 1;
  }
  return rc == 0 ? 0 : 1;
}
