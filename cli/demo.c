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
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <taskwatch.h>
#include <uv.h>

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

static void timer_closed(uv_handle_t *h) { request_unref(h->data); }

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
      double wait = (double)(i - 1) / d->opts.rate -
                    (double)(uv_hrtime() - origin) / 1e9;
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
    tw_task_enqueue(d->agent, batch, 2, "write_log", TW_MODE_THREADPOOL,
                    &t[2]);
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

static void usage(FILE *out) {
  fprintf(out,
          "usage: taskwatch demo [--collector URL] --batches N [options]\n"
          "\n"
          "Simulates a server handling POST /send-notification/{email}: each\n"
          "batch runs write_notification (sync), send_email (async) and\n"
          "write_log (sync) through the agent's runner.\n"
          "\n"
          "  --collector URL      tcp://HOST:PORT or unix:/PATH (default:\n"
          "                       $TASKWATCH_COLLECTOR or " TW_DEFAULT_COLLECTOR
          ")\n"
          "  --batches N          number of batches (requests) to run\n"
          "  --fail-every K       send_email fails in every K-th batch\n"
          "  --rate R             at most R batches per second (default: as\n"
          "                       fast as possible)\n"
          "  --concurrency C      batches in flight at once (default 64)\n"
          "  --email-ms MS        simulated network time of send_email\n"
          "  --service NAME       service name (default: $TASKWATCH_SERVICE "
          "or demo)\n"
          "  --direct             record the same events with the low-level\n"
          "                       calls on one thread, running nothing\n"
          "  --flush-timeout S    seconds to wait for the collector's acks at\n"
          "                       the end (default 60)\n"
          "  --quiet              no summary line\n"
          "  -h, --help           this help\n");
}

/* Parses a whole non-negative decimal number; -1 on anything else. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  char *end = NULL;
  if (s == NULL || *s == '\0' || *s == '-')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end = NULL;
  if (s == NULL || *s == '\0')
    return -1;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !(v >= 0) || v > 1e12)
    return -1;
  *out = v;
  return 0;
}

static int bad(const char *what, const char *value) {
  fprintf(stderr, "taskwatch demo: invalid %s '%s' (try --help)\n", what,
          value ? value : "");
  return 2;
}

static int parse_args(int argc, char **argv, demo_opts *o) {
  enum { OPT_FAIL = 256, OPT_RATE, OPT_CONC, OPT_EMAIL, OPT_SERVICE, OPT_DIRECT,
         OPT_FLUSH, OPT_QUIET };
  static const struct option longopts[] = {
      {"collector", required_argument, NULL, 'c'},
      {"batches", required_argument, NULL, 'n'},
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
  int have_batches = 0, c;
  uint64_t v;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o->collector = optarg;
      break;
    case 'n':
      if (parse_u64(optarg, UINT64_C(1) << 40, &o->batches) != 0)
        return bad("--batches", optarg);
      have_batches = 1;
      break;
    case OPT_FAIL:
      if (parse_u64(optarg, UINT64_MAX, &o->fail_every) != 0)
        return bad("--fail-every", optarg);
      break;
    case OPT_RATE:
      if (parse_double(optarg, &o->rate) != 0)
        return bad("--rate", optarg);
      break;
    case OPT_CONC:
      if (parse_u64(optarg, 1u << 20, &v) != 0 || v == 0)
        return bad("--concurrency", optarg);
      o->concurrency = (unsigned)v;
      break;
    case OPT_EMAIL:
      if (parse_u64(optarg, 3600000, &v) != 0)
        return bad("--email-ms", optarg);
      o->email_ms = (unsigned)v;
      break;
    case OPT_SERVICE:
      if (*optarg == '\0')
        return bad("--service", optarg);
      o->service = optarg;
      break;
    case OPT_DIRECT:
      o->direct = 1;
      break;
    case OPT_FLUSH:
      if (parse_double(optarg, &o->flush_timeout_s) != 0 ||
          o->flush_timeout_s > 86400)
        return bad("--flush-timeout", optarg);
      break;
    case OPT_QUIET:
      o->quiet = 1;
      break;
    case 'h':
      usage(stdout);
      return -1;
    case ':':
      fprintf(stderr, "taskwatch demo: %s needs a value (try --help)\n",
              argv[optind - 1]);
      return 2;
    default:
      fprintf(stderr, "taskwatch demo: unknown option '%s' (try --help)\n",
              argv[optind - 1]);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "taskwatch demo: unexpected argument '%s' (try --help)\n",
            argv[optind]);
    return 2;
  }
  if (!have_batches) {
    fprintf(stderr, "taskwatch demo: --batches is required (try --help)\n");
    return 2;
  }
  return 0;
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
    int why = url_parse(target, 0, &u);
    if (rc == TW_EURL && why != 0)
      fprintf(stderr, "taskwatch demo: bad collector URL '%s': %s\n", target,
              url_strerror(why));
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
  tw_agent_free(d.agent);

  if (rc != 0)
    fprintf(stderr, "taskwatch demo: the runner failed: %s\n",
            tw_strerror(rc));
  if (!d.opts.quiet)
    printf("demo: %" PRIu64 " batches, %" PRIu64 " tasks, %" PRIu64
           " failed, %" PRIu64 " skipped; work %.3f s, flush %.3f s; "
           "events recorded %" PRIu64 ", acked %" PRIu64 ", dropped %" PRIu64
           "\n",
           d.finished, d.finished * 3, d.failed, d.failed,
           (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, st.recorded,
           st.acked, st.dropped);
  if (flushed != 0) {
    fprintf(stderr,
            "taskwatch demo: the collector did not acknowledge every event "
            "within %.0f s\n",
            d.opts.flush_timeout_s);
    return 1;
  }
  return rc == 0 ? 0 : 1;
}
