/*
 * agent_overhead - what recording one event costs the calling thread, side
 * by side with the alternatives a server would otherwise use: an LTTng-UST
 * tracepoint with the same fields (task id, thread id, timestamp), a
 * buffered fprintf to a log file, and fprintf + fflush per line (the seeds'
 * log.txt habit). Each is run from 1, 2 and 8 threads.
 *
 * Cost is the recording thread's own CPU time (CLOCK_THREAD_CPUTIME_ID)
 * divided by the events it recorded, so on a 2-core machine eight threads
 * are not charged for waiting their turn. Events are recorded in rounds
 * that fit the agent's ring; between rounds the agent is flushed to an
 * in-process sink collector that acks everything, so the figure is the
 * steady recording cost and not the cost of dropping. Drops are printed
 * anyway, for every method that can drop.
 *
 * Every row is measured --repeat times (at least 5), the methods taking
 * turns within each repetition so that a noisy moment of the shared
 * machine falls on all of them alike; a repetition's figure is the median
 * over its (round, thread) samples, and the row prints the median and the
 * worst repetition, and the ratio of the medians to LTTng's. Each thread
 * records one untimed round before its timed ones, so rings (and LTTng's
 * buffers) are warm. What a cold ring costs is printed on its own lines,
 * for fresh agents at the benchmark's budget and at the default one: the
 * wall time of a fresh thread's first event (ring registration, which
 * faults the ring in) and the CPU per event of its first round.
 *
 * The sender's own CPU per event is measured apart, at full speed: the
 * sender thread's CPU time over the events it sent while one thread
 * records as fast as it can, in rounds that fit its ring with a flush
 * after each (bulk), and without ever waiting (saturated); and at fixed
 * rates, inside a server: 1,000, 5,000 and 20,000 batches a second of
 * three tasks each (ten events a batch), at the default budget, where
 * the cost is the sender's wakeups and writes more than its
 * encoding. Those rows run against a real `taskwatch collector` on the
 * same machine (a fresh store in a temp directory), which acks after
 * its commits and advises how long the agent may hold its events
 * (protocol version 6), as a server's collector does; the rows named
 * `_sink` repeat them against the sink, which acks every frame at once
 * and advises nothing (the sender's own pace alone). Each sender row is
 * measured --repeat times too, the rows taking turns within each
 * repetition (bulk and saturated; each rate against each collector), and
 * prints the median and the worst run of each figure, the events the
 * median run sent and the drops of all runs. Before them,
 * thread_wakeup_cpu_us: what one sleep and wakeup of an idle thread costs on
 * the machine (the sender wakes at least every PACE_MAX_MS), and the same
 * by the length of the sleep (thread_wakeup_cpu_us_by_sleep_ms, the
 * sender's intervals from flooded to quiet). After each rate
 * row, its floor: the CPU time of a tick that drains nothing (sleep, read
 * the acks, write a chunk a peer thread reads and acks) at the row's mean
 * interval (`_tick_floor_cpu_us`, `_tick_floor_interval_ms`), and that times
 * the row's wakeups over its events (`_floor_ns_per_event`): what the row would
 * cost if draining and encoding were free, which only fewer wakeups or a
 * machine where they cost less can lower. --sender-only prints these rows
 * alone.
 *
 * LTTng needs a session daemon and an active session: the benchmark starts
 * `lttng-sessiond` when none runs, creates a private session, enables the
 * tracepoint, and re-executes itself so the fresh process registers with
 * the daemon at startup. When any of that fails it prints a skip line and
 * measures the rest.
 *
 * Output: one `key: value` per line; nothing here fails on speed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <taskwatch.h>

#include "proto.h"

#if TW_BENCH_LTTNG
#include "agent_overhead_tp.h"
#endif

extern char **environ;

/* taskwatch records START (task, thread, time): the fields of the LTTng
 * event. taskwatch_enqueue records ENQUEUE (task id taken, batch,
 * position, interned name, mode, thread, time), the richest fixed event,
 * and its task's FINISH in turn: admission keeps two slots for each task
 * still open, so tasks that never end would be refused after about a
 * ring's worth (the row then timed refusals). */
enum method {
  M_TASKWATCH,
  M_LTTNG,
  M_FPRINTF,
  M_FFLUSH,
  M_CLOCK,
  M_ENQUEUE,
  M_COUNT
};
static const char *method_name[M_COUNT] = {
    "taskwatch",      "lttng",         "fprintf",
    "fprintf_fflush", "clock_gettime", "taskwatch_enqueue"};

#define PER_ROUND 16384u
#define MIN_REPEAT 5
/* Room for rounds of PER_ROUND events from every thread: the first
 * threads get 16 MiB rings. */
#define BENCH_BUDGET ((size_t)512 << 20)

static uint64_t now_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- a sink collector: WELCOME, then ack every frame ----------------------
 */

typedef struct sink {
  char dir[64];
  char path[128];
  char url[140];
  int listen_fd;
  int stop_pipe[2];
  pthread_t thread;
} sink;

static void sink_reply(int fd, proto_buf *b) {
  size_t off = 0;
  while (off < b->len) {
    ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    off += (size_t)n;
  }
  tw__proto_buf_reset(b);
}

static void sink_serve(sink *s, int fd) {
  size_t cap = PROTO_FRAME_MAX + PROTO_HEADER_SIZE, len = 0;
  uint8_t *buf = malloc(cap);
  proto_buf out;
  tw__proto_buf_init(&out);
  struct pollfd p[2] = {{fd, POLLIN, 0}, {s->stop_pipe[0], POLLIN, 0}};
  while (buf != NULL && poll(p, 2, -1) > 0 && p[1].revents == 0) {
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n <= 0)
      break;
    len += (size_t)n;
    size_t at = 0;
    proto_frame f;
    while (tw__proto_frame_next(buf + at, len - at, 0, &f) == 0) {
      proto_events it;
      if (f.type == PROTO_HELLO) {
        proto_welcome w = {PROTO_VERSION, 1, PROTO_FRAME_MAX};
        tw__proto_put_welcome(&out, &w);
      } else if (f.type == PROTO_EVENTS &&
                 tw__proto_events_begin(&it, f.payload, f.payload_len,
                                        PROTO_VERSION) == 0) {
        proto_ack a = {it.first_seq + it.count, 0};
        tw__proto_put_ack(&out, PROTO_VERSION, &a);
      } else if (f.type == PROTO_GOODBYE) {
        uint64_t last = 0;
        tw__proto_decode_goodbye(f.payload, f.payload_len, PROTO_VERSION,
                                 &last);
        proto_ack a = {last + 1, 0};
        tw__proto_put_ack(&out, PROTO_VERSION, &a);
      }
      at += f.frame_len;
    }
    sink_reply(fd, &out);
    memmove(buf, buf + at, len - at);
    len -= at;
  }
  tw__proto_buf_fini(&out);
  free(buf);
  close(fd);
}

static void *sink_main(void *arg) {
  sink *s = arg;
  struct pollfd p[2] = {{s->listen_fd, POLLIN, 0},
                        {s->stop_pipe[0], POLLIN, 0}};
  while (poll(p, 2, -1) > 0 && p[1].revents == 0) {
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd >= 0)
      sink_serve(s, fd); /* one agent at a time is all this needs */
  }
  return NULL;
}

static int sink_start(sink *s) {
  snprintf(s->dir, sizeof(s->dir), "/tmp/twbench.XXXXXX");
  if (mkdtemp(s->dir) == NULL || pipe(s->stop_pipe) != 0)
    return -1;
  snprintf(s->path, sizeof(s->path), "%s/sink.sock", s->dir);
  snprintf(s->url, sizeof(s->url), "unix:%s", s->path);
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  if (strlen(s->path) >= sizeof(a.sun_path))
    return -1;
  memcpy(a.sun_path, s->path, strlen(s->path) + 1);
  s->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s->listen_fd < 0 ||
      bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
      listen(s->listen_fd, 4))
    return -1;
  return pthread_create(&s->thread, NULL, sink_main, s) == 0 ? 0 : -1;
}

static void sink_stop(sink *s) {
  (void)!write(s->stop_pipe[1], "x", 1);
  pthread_join(s->thread, NULL);
  close(s->listen_fd);
  unlink(s->path);
  rmdir(s->dir);
}

/* ---- the measured loops ---------------------------------------------------
 */

typedef struct bench {
  enum method m;
  int threads;
  uint64_t rounds;
  uint64_t per_round;
  tw_agent *agent;
  FILE *log;
  pthread_barrier_t go;
  pthread_barrier_t done;
  double *samples; /* ns/event for each (round, thread) */
} bench;

typedef struct worker {
  bench *b;
  int index;
} worker;

/* The task the calling thread enqueued last (M_ENQUEUE). */
static __thread tw_id open_task;

static void record(bench *b, uint64_t task, uint64_t thread) {
  struct timespec ts;
  switch (b->m) {
  case M_TASKWATCH:
    tw_task_start(b->agent, task);
    break;
  case M_LTTNG:
#if TW_BENCH_LTTNG
    lttng_ust_tracepoint(taskwatch_bench, task_start, task, thread);
#endif
    break;
  case M_FPRINTF:
  case M_FFLUSH:
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(b->log, "%lld.%09ld start task=%llu thread=%llu\n",
            (long long)ts.tv_sec, ts.tv_nsec, (unsigned long long)task,
            (unsigned long long)thread);
    if (b->m == M_FFLUSH)
      fflush(b->log);
    break;
  case M_ENQUEUE:
    if (task & 1)
      tw_task_enqueue(b->agent, 1, (uint32_t)task, "send_email",
                      TW_MODE_THREADPOOL, &open_task);
    else
      tw_task_finish(b->agent, open_task);
    break;
  case M_CLOCK:
    clock_gettime(CLOCK_MONOTONIC, &ts);
    __asm__ volatile("" : : "r"(&ts) : "memory");
    break;
  default:
    break;
  }
}

/* Round 0 is the warm-up: recorded, not timed. */
static void *worker_main(void *arg) {
  worker *w = arg;
  bench *b = w->b;
  uint64_t thread = (uint64_t)gettid();
  uint64_t task = (uint64_t)w->index << 32 | 1;
  for (uint64_t r = 0; r <= b->rounds; r++) {
    pthread_barrier_wait(&b->go);
    uint64_t t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    for (uint64_t i = 0; i < b->per_round; i++)
      record(b, task++, thread);
    uint64_t t1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    if (r > 0)
      b->samples[(r - 1) * (uint64_t)b->threads + (uint64_t)w->index] =
          (double)(t1 - t0) / (double)b->per_round;
    pthread_barrier_wait(&b->done);
  }
  return NULL;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts v in place. */
static double median_of(double *v, size_t n) {
  qsort(v, n, sizeof(double), compare_double);
  return v[n / 2];
}

/* Runs one method from b->threads threads; returns the median ns/event
 * over all (round, thread) samples. */
static double run_bench(bench *b) {
  pthread_t th[64];
  worker w[64];
  size_t n = (size_t)b->rounds * (size_t)b->threads;
  b->samples = calloc(n, sizeof(double));
  pthread_barrier_init(&b->go, NULL, (unsigned)b->threads + 1);
  pthread_barrier_init(&b->done, NULL, (unsigned)b->threads + 1);
  for (int i = 0; i < b->threads; i++) {
    w[i] = (worker){b, i};
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  for (uint64_t r = 0; r <= b->rounds; r++) {
    pthread_barrier_wait(&b->go);
    pthread_barrier_wait(&b->done);
    /* Between rounds: let the agent's sender (or LTTng's consumer) catch
     * up, outside the measured loops. */
    if (b->m == M_TASKWATCH || b->m == M_ENQUEUE)
      tw_agent_flush(b->agent, 10000);
    else if (b->m == M_LTTNG) {
      struct timespec ts = {0, 20 * 1000000};
      nanosleep(&ts, NULL);
    }
  }
  for (int i = 0; i < b->threads; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&b->go);
  pthread_barrier_destroy(&b->done);
  double median = median_of(b->samples, n);
  free(b->samples);
  return median;
}

/* ---- LTTng session --------------------------------------------------------
 */

static int shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shell(const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Prepares a session and re-executes; returns only on failure, with a
 * reason. */
static const char *lttng_prepare(char **argv) {
  if (shell("lttng version >/dev/null 2>&1") != 0)
    return "the lttng command is not available";
  pid_t daemon = 0;
  if (shell("lttng list >/dev/null 2>&1") != 0) {
    char *args[] = {"lttng-sessiond", "--no-kernel", "--quiet", NULL};
    if (posix_spawnp(&daemon, "lttng-sessiond", NULL, NULL, args, environ))
      return "cannot start lttng-sessiond";
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
      struct timespec ts = {0, 50 * 1000000};
      nanosleep(&ts, NULL);
      up = shell("lttng list >/dev/null 2>&1") == 0;
    }
    if (!up) {
      kill(daemon, SIGTERM);
      waitpid(daemon, NULL, 0);
      return "lttng-sessiond did not come up";
    }
  }
  char dir[] = "/tmp/twlttng.XXXXXX";
  char session[64], value[32];
  if (mkdtemp(dir) == NULL)
    return "cannot create a trace directory";
  snprintf(session, sizeof(session), "twbench-%d", (int)getpid());
  if (shell("lttng create %s --output=%s >/dev/null 2>&1", session, dir) ||
      shell("lttng enable-channel -u -s %s --subbuf-size=2M --num-subbuf=8 "
            "twchan >/dev/null 2>&1",
            session) ||
      shell("lttng enable-event -u -s %s -c twchan taskwatch_bench:task_start "
            ">/dev/null 2>&1",
            session) ||
      shell("lttng start %s >/dev/null 2>&1", session)) {
    shell("lttng destroy %s >/dev/null 2>&1", session);
    shell("rm -rf %s", dir);
    if (daemon > 0) {
      kill(daemon, SIGTERM);
      waitpid(daemon, NULL, 0);
    }
    return "cannot set up an lttng session";
  }
  setenv("TW_BENCH_LTTNG_SESSION", session, 1);
  setenv("TW_BENCH_LTTNG_DIR", dir, 1);
  snprintf(value, sizeof(value), "%d", (int)daemon);
  setenv("TW_BENCH_LTTNG_DAEMON", value, 1);
  fflush(stdout);
  execv("/proc/self/exe", argv);
  return "cannot re-execute the benchmark";
}

/* Stops the session, returns its discarded-event count, cleans up. */
static long long lttng_finish(void) {
  const char *session = getenv("TW_BENCH_LTTNG_SESSION");
  const char *dir = getenv("TW_BENCH_LTTNG_DIR");
  const char *daemon = getenv("TW_BENCH_LTTNG_DAEMON");
  long long discarded = -1;
  char cmd[256], line[512];
  shell("lttng stop %s >/dev/null 2>&1", session);
  snprintf(cmd, sizeof(cmd), "lttng list %s 2>/dev/null", session);
  FILE *p = popen(cmd, "r");
  while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
    const char *at = strstr(line, "Discarded events:");
    if (at != NULL) {
      discarded = discarded < 0 ? 0 : discarded;
      discarded += strtoll(at + strlen("Discarded events:"), NULL, 10);
    }
  }
  if (p != NULL)
    pclose(p);
  shell("lttng destroy %s >/dev/null 2>&1", session);
  shell("rm -rf %s", dir);
  pid_t pid = (pid_t)strtol(daemon ? daemon : "0", NULL, 10);
  /* The daemon this run started may serve other sessions by now (another
   * benchmark on the same machine found it running): it stays for them. */
  if (pid > 0 &&
      shell("lttng --mi xml list 2>/dev/null | grep -q '<session>'") == 0)
    pid = 0;
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
  }
  return discarded;
}

static int lttng_active(void) {
#if TW_BENCH_LTTNG
  if (getenv("TW_BENCH_LTTNG_SESSION") == NULL)
    return 0;
  for (int i = 0; i < 100; i++) {
    if (lttng_ust_tracepoint_enabled(taskwatch_bench, task_start))
      return 1;
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
  }
#endif
  return 0;
}

/* ---- the rows -------------------------------------------------------------
 */

typedef struct plan {
  uint64_t rounds; /* timed rounds per thread and repetition */
  int repeat;
  tw_agent *agent;
  FILE *log;
  int lttng;
  int lttng_lost; /* the tracepoint went off during a run: no figures */
} plan;

/* Whether the session still records: a daemon stopped by someone else
 * (another benchmark that started it) turns the tracepoint off, and an
 * LTTng row would time a disabled tracepoint. */
static int lttng_still_on(void) {
#if TW_BENCH_LTTNG
  return lttng_ust_tracepoint_enabled(taskwatch_bench, task_start) != 0;
#else
  return 0;
#endif
}

/* One repetition of one method from t threads: its median ns/event. */
static double run_once(const plan *p, int t, enum method m,
                       long long *dropped) {
  bench b;
  memset(&b, 0, sizeof(b));
  b.m = m;
  b.threads = t;
  b.rounds = p->rounds;
  b.per_round = PER_ROUND;
  b.agent = p->agent;
  b.log = p->log;
  if (m == M_FFLUSH) /* a write(2) per event: fewer of them */
    b.rounds = p->rounds / 16 ? p->rounds / 16 : 1;
  tw_agent_stats before, after;
  tw_agent_get_stats(p->agent, &before);
  double ns = run_bench(&b);
  tw_agent_get_stats(p->agent, &after);
  *dropped += (long long)(after.dropped - before.dropped);
  return ns;
}

/* Runs every method from t threads, p->repeat times, and prints its rows:
 * median and worst repetition, drops, ratios of the medians. */
static void report_threads(int t, plan *p) {
  double *ns = calloc((size_t)M_COUNT * (size_t)p->repeat, sizeof(double));
  double median[M_COUNT] = {0}, worst[M_COUNT] = {0};
  long long dropped[M_COUNT] = {0};
  for (int rep = 0; rep < p->repeat; rep++)
    for (int m = 0; m < M_COUNT; m++)
      if (m != M_LTTNG || p->lttng) {
        ns[m * p->repeat + rep] = run_once(p, t, (enum method)m, &dropped[m]);
        if (m == M_LTTNG && !lttng_still_on())
          p->lttng_lost = 1;
      }
  for (int m = 0; m < M_COUNT; m++) {
    if (m == M_LTTNG && !p->lttng)
      continue;
    if (m == M_LTTNG && p->lttng_lost) {
      printf("t%d_lttng: lost (the session stopped recording during the "
             "run)\n",
             t);
      continue;
    }
    double *v = &ns[m * p->repeat];
    median[m] = median_of(v, (size_t)p->repeat);
    worst[m] = v[p->repeat - 1];
    printf("t%d_%s_ns_per_event_median: %.1f\n", t, method_name[m], median[m]);
    printf("t%d_%s_ns_per_event_worst: %.1f\n", t, method_name[m], worst[m]);
  }
  printf("t%d_taskwatch_dropped: %lld\n", t, dropped[M_TASKWATCH]);
  printf("t%d_taskwatch_enqueue_dropped: %lld\n", t, dropped[M_ENQUEUE]);
  printf("t%d_fprintf_dropped: 0\n", t);
  if (p->lttng && !p->lttng_lost) {
    printf("t%d_ratio_taskwatch_lttng: %.3f\n", t,
           median[M_TASKWATCH] / median[M_LTTNG]);
    printf("t%d_ratio_taskwatch_enqueue_lttng: %.3f\n", t,
           median[M_ENQUEUE] / median[M_LTTNG]);
  }
  printf("t%d_ratio_taskwatch_fprintf: %.3f\n", t,
         median[M_TASKWATCH] / median[M_FPRINTF]);
  printf("t%d_ratio_taskwatch_fprintf_fflush: %.3f\n", t,
         median[M_TASKWATCH] / median[M_FFLUSH]);
  fflush(stdout);
  free(ns);
}

/* ---- a cold ring ----------------------------------------------------------
 */

typedef struct cold {
  tw_agent *agent;
  uint64_t events;    /* in the first round */
  double register_us; /* wall time of a fresh thread's first event */
  double round_ns;    /* CPU ns/event of its first round after that */
} cold;

static void *cold_main(void *arg) {
  cold *c = arg;
  uint64_t task = 1;
  uint64_t t0 = now_ns(CLOCK_MONOTONIC);
  tw_task_start(c->agent, task++);
  uint64_t t1 = now_ns(CLOCK_MONOTONIC);
  c->register_us = (double)(t1 - t0) / 1000.0;
  t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  for (uint64_t i = 0; i < c->events; i++)
    tw_task_start(c->agent, task++);
  t1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  c->round_ns = (double)(t1 - t0) / (double)c->events;
  return NULL;
}

/* The first thread of a fresh agent with a budget of `budget` bytes (0:
 * the default), `repeat` times: its ring is new each time. Its first
 * round is `events` long, within what the ring holds. */
static void report_first_touch(const char *url, const char *name, size_t budget,
                               uint64_t events, int repeat) {
  double *us = calloc((size_t)repeat, sizeof(double));
  double *ns = calloc((size_t)repeat, sizeof(double));
  for (int i = 0; i < repeat; i++) {
    tw_config cfg;
    tw_config_init(&cfg);
    cfg.collector = url;
    cfg.service = "agent_overhead";
    cfg.buffer_bytes = budget;
    cold c = {NULL, events, 0, 0};
    if (tw_agent_new(&cfg, &c.agent) != 0)
      break;
    pthread_t th;
    pthread_create(&th, NULL, cold_main, &c);
    pthread_join(th, NULL);
    tw_agent_free(c.agent);
    us[i] = c.register_us;
    ns[i] = c.round_ns;
  }
  printf("first_touch_%s_register_us_median: %.1f\n", name,
         median_of(us, (size_t)repeat));
  printf("first_touch_%s_register_us_worst: %.1f\n", name, us[repeat - 1]);
  printf("first_touch_%s_round_ns_per_event_median: %.1f\n", name,
         median_of(ns, (size_t)repeat));
  printf("first_touch_%s_round_ns_per_event_worst: %.1f\n", name,
         ns[repeat - 1]);
  fflush(stdout);
  free(us);
  free(ns);
}

/* ---- the sender at full speed ---------------------------------------------
 */

#define TIDS_MAX 256

/* The ids of this process's threads; returns how many. */
static size_t list_threads(pid_t *tids) {
  size_t n = 0;
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL && n < TIDS_MAX)
    if (e->d_name[0] != '.')
      tids[n++] = (pid_t)strtol(e->d_name, NULL, 10);
  if (d != NULL)
    closedir(d);
  return n;
}

/* The CPU time of another thread of this process: Linux's per-thread CPU
 * clock id, as glibc's pthread_getcpuclockid() builds it. */
static uint64_t thread_cpu_ns(pid_t tid) {
  return now_ns(((~(clockid_t)tid) << 3) | 6);
}

typedef struct sender_threads {
  pid_t tids[TIDS_MAX];
  size_t n;
} sender_threads;

static uint64_t sender_cpu_ns(const sender_threads *st) {
  uint64_t ns = 0;
  for (size_t i = 0; i < st->n; i++)
    ns += thread_cpu_ns(st->tids[i]);
  return ns;
}

/* How many times the sender's threads went to sleep and woke (their
 * voluntary context switches, /proc/self/task/TID/status): with the cost
 * of one (thread_wakeup_cpu_us) the part of their CPU time that is
 * wakeups rather than events. */
static uint64_t sender_wakeups(const sender_threads *st) {
  uint64_t n = 0;
  for (size_t i = 0; i < st->n; i++) {
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)st->tids[i]);
    FILE *f = fopen(path, "r");
    unsigned long long v;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
      if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1)
        n += v;
    if (f != NULL)
      fclose(f);
  }
  return n;
}

#define FULL_SPEED_MS 1000
#define BULK_ROUNDS 32
#define BULK_EVENTS (256u * 1024u) /* fits the smallest ring of the rows */

typedef struct full_speed {
  tw_agent *agent;
  bool bulk; /* rounds that fit the ring, each flushed; else nonstop */
  atomic_bool stop;
} full_speed;

static void *full_speed_main(void *arg) {
  full_speed *f = arg;
  uint64_t task = 1;
  if (f->bulk) {
    for (int r = 0; r < BULK_ROUNDS; r++) {
      for (uint64_t i = 0; i < BULK_EVENTS; i++)
        tw_task_start(f->agent, task++);
      tw_agent_flush(f->agent, 30000);
    }
    return NULL;
  }
  while (!atomic_load_explicit(&f->stop, memory_order_relaxed))
    for (int i = 0; i < 1024; i++)
      tw_task_start(f->agent, task++);
  return NULL;
}

/* One run of a sender row. */
typedef struct sender_run {
  uint64_t sent, dropped;
  double ns_per_event;  /* the sender's CPU time over the events it sent */
  double us_per_s;      /* that CPU time per second of the run */
  double wakeups_per_s; /* its sleeps and wakeups per second */
} sender_run;

/* The sender's CPU time over the events it sent, while one thread
 * records as fast as it can: in rounds that fit its ring, flushed after
 * each (bulk: the sender drains what is there as fast as it can), or for
 * FULL_SPEED_MS without ever waiting (saturated: the sender is never idle
 * and most events are dropped; it also reads slots the recording thread
 * has just written, from the other core's cache). */
static sender_run run_full_speed(tw_agent *agent, const sender_threads *st,
                                 bool bulk) {
  tw_agent_flush(agent, 10000);
  tw_agent_stats before, after;
  tw_agent_get_stats(agent, &before);
  uint64_t cpu0 = sender_cpu_ns(st);
  full_speed f = {agent, bulk, false};
  pthread_t th;
  pthread_create(&th, NULL, full_speed_main, &f);
  if (!bulk) {
    struct timespec ts = {FULL_SPEED_MS / 1000, FULL_SPEED_MS % 1000 * 1000000};
    nanosleep(&ts, NULL);
    atomic_store(&f.stop, true);
  }
  pthread_join(th, NULL);
  tw_agent_flush(agent, 30000);
  uint64_t cpu1 = sender_cpu_ns(st);
  tw_agent_get_stats(agent, &after);
  sender_run r = {0};
  r.sent = after.sent - before.sent;
  r.dropped = after.dropped - before.dropped;
  r.ns_per_event = r.sent ? (double)(cpu1 - cpu0) / (double)r.sent : 0.0;
  return r;
}

/* The median and the worst (largest) of one figure over a row's runs. */
static void runs_stat(const sender_run *runs, int n, size_t field,
                      double *median, double *worst) {
  double *v = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++)
    memcpy(&v[i], (const char *)&runs[i] + field, sizeof(double));
  *median = median_of(v, (size_t)n);
  *worst = v[n - 1];
  free(v);
}

/* The events the median run sent. */
static double sent_median(const sender_run *runs, int n) {
  double *v = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++)
    v[i] = (double)runs[i].sent;
  double median = median_of(v, (size_t)n);
  free(v);
  return median;
}

/* A sender row over its runs: the events sent by the median run, every
 * drop of every run, and the median and worst of each figure (`rate`:
 * the per-second figures too). */
static void print_sender_row(const char *name, const sender_run *runs, int n,
                             bool rate) {
  uint64_t dropped = 0;
  for (int i = 0; i < n; i++)
    dropped += runs[i].dropped;
  double median, worst;
  printf("sender_%s_events_sent_per_run_median: %.0f\n", name,
         sent_median(runs, n));
  printf("sender_%s_dropped: %llu\n", name, (unsigned long long)dropped);
  runs_stat(runs, n, offsetof(sender_run, ns_per_event), &median, &worst);
  printf("sender_%s_cpu_ns_per_event_median: %.1f\n", name, median);
  printf("sender_%s_cpu_ns_per_event_worst: %.1f\n", name, worst);
  if (rate) {
    runs_stat(runs, n, offsetof(sender_run, us_per_s), &median, &worst);
    printf("sender_%s_cpu_us_per_s_median: %.1f\n", name, median);
    printf("sender_%s_cpu_us_per_s_worst: %.1f\n", name, worst);
    runs_stat(runs, n, offsetof(sender_run, wakeups_per_s), &median, &worst);
    printf("sender_%s_wakeups_per_s_median: %.1f\n", name, median);
    printf("sender_%s_wakeups_per_s_worst: %.1f\n", name, worst);
  }
  fflush(stdout);
}

/* The full-speed rows, `repeat` runs each, bulk and saturated taking
 * turns within a repetition. */
static void report_full_speed(tw_agent *agent, const sender_threads *st,
                              int repeat) {
  sender_run *bulk = calloc((size_t)repeat, sizeof(*bulk));
  sender_run *sat = calloc((size_t)repeat, sizeof(*sat));
  for (int i = 0; i < repeat; i++) {
    bulk[i] = run_full_speed(agent, st, true);
    sat[i] = run_full_speed(agent, st, false);
  }
  print_sender_row("bulk", bulk, repeat, false);
  print_sender_row("saturated", sat, repeat, false);
  free(bulk);
  free(sat);
}

/* ---- the sender at fixed rates ---------------------------------------------
 */

static tw_agent *start_agent(const char *url, size_t budget,
                             sender_threads *st);

#define RATE_MS 3000
/* Recorded at the rate before RATE_MS is measured: the collector's advice
 * (a window of a second of its rate) and the sender's pace settle. */
#define RATE_WARM_MS 1500
#define RATE_TASKS 3 /* a request of examples/notify_server: three tasks */
#define RATE_EVENTS_PER_BATCH (1 + 3 * RATE_TASKS)

typedef struct fixed_rate {
  tw_agent *agent;
  unsigned per_s; /* batches a second */
  int ms;         /* for how long */
} fixed_rate;

/* One batch of RATE_TASKS tasks, each enqueued, started and finished,
 * every millisecond's share of the rate at once (a server's requests
 * arrive unevenly too). */
static void *fixed_rate_main(void *arg) {
  fixed_rate *f = arg;
  static const char *names[RATE_TASKS] = {"send_email", "send_sms",
                                          "write_log"};
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  double owed = 0;
  for (int ms = 0; ms < f->ms; ms++) {
    owed += f->per_s / 1000.0;
    for (; owed >= 1; owed--) {
      tw_id b, t[RATE_TASKS];
      tw_batch_begin(f->agent, "POST /send-notification/{email}", &b);
      for (uint32_t i = 0; i < RATE_TASKS; i++)
        tw_task_enqueue(f->agent, b, i, names[i], TW_MODE_LOOP, &t[i]);
      for (uint32_t i = 0; i < RATE_TASKS; i++) {
        tw_task_start(f->agent, t[i]);
        tw_task_finish(f->agent, t[i]);
      }
    }
    next.tv_nsec += 1000000;
    if (next.tv_nsec >= 1000000000) {
      next.tv_nsec -= 1000000000;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  return NULL;
}

/* A real collector for the rate rows (TASKWATCH_BIN, on a store in dir),
 * as a server has one: it acks after its commits and advises the agent
 * how long it may hold its events (protocol version 6), where the sink
 * acks every frame at once and advises nothing. */
typedef struct real_collector {
  pid_t pid;
  char db[200];
  char path[200];
  char url[210];
} real_collector;

static int collector_start(real_collector *c, const char *dir) {
  snprintf(c->db, sizeof(c->db), "%s/rate.db", dir);
  snprintf(c->path, sizeof(c->path), "%s/collector.sock", dir);
  snprintf(c->url, sizeof(c->url), "unix:%s", c->path);
  if (strlen(c->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return -1;
  char *args[] = {"taskwatch", "collector",   "--db", c->db, "--listen",
                  c->url,      "--log-level", "warn", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawn(&c->pid, TASKWATCH_BIN, &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return -1;
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, c->path, strlen(c->path) + 1);
  for (int i = 0; i < 1000; i++) { /* 10 s */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
      close(fd);
    if (ok)
      return 0;
    if (waitpid(c->pid, NULL, WNOHANG) == c->pid)
      return -1;
    poll(NULL, 0, 10);
  }
  kill(c->pid, SIGKILL);
  waitpid(c->pid, NULL, 0);
  return -1;
}

static void collector_stop(real_collector *c) {
  kill(c->pid, SIGTERM);
  waitpid(c->pid, NULL, 0);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char p[220];
    snprintf(p, sizeof(p), "%s%s", c->db, suffix[i]);
    unlink(p);
  }
}

/* The sender's CPU time over the events it sent while one thread records
 * batches at a fixed rate for RATE_MS (after RATE_WARM_MS of the same,
 * unmeasured), at the default budget: the
 * sender's cost inside a server, where it wakes, drains, writes and reads
 * acks for a trickle of events rather than a flood. False when no agent
 * could start. */
static bool run_rate(const char *url, unsigned per_s, sender_run *r) {
  sender_threads st;
  tw_agent *agent = start_agent(url, 0, &st);
  if (agent == NULL)
    return false;
  tw_agent_flush(agent, 10000);
  fixed_rate warm = {agent, per_s, RATE_WARM_MS};
  pthread_t th;
  pthread_create(&th, NULL, fixed_rate_main, &warm);
  pthread_join(th, NULL);
  tw_agent_stats before, after;
  tw_agent_get_stats(agent, &before);
  uint64_t cpu0 = sender_cpu_ns(&st);
  uint64_t woke0 = sender_wakeups(&st);
  fixed_rate f = {agent, per_s, RATE_MS};
  pthread_create(&th, NULL, fixed_rate_main, &f);
  pthread_join(th, NULL);
  tw_agent_flush(agent, 30000);
  uint64_t cpu1 = sender_cpu_ns(&st);
  uint64_t woke1 = sender_wakeups(&st);
  tw_agent_get_stats(agent, &after);
  r->sent = after.sent - before.sent;
  r->dropped = after.dropped - before.dropped;
  r->ns_per_event = r->sent ? (double)(cpu1 - cpu0) / (double)r->sent : 0.0;
  r->us_per_s = (double)(cpu1 - cpu0) / 1e3 / (RATE_MS / 1000.0);
  r->wakeups_per_s = (double)(woke1 - woke0) / (RATE_MS / 1000.0);
  tw_agent_free(agent);
  return true;
}

/* ---- the floor under the rate rows ----------------------------------------
 */

/* Ticks timed: FLOOR_MS of them, FLOOR_TICKS_MIN at least (one tick's
 * cost moved by a third from one run of 12 to the next at 15 ms). */
#define FLOOR_MS 3000u
#define FLOOR_TICKS_MIN 12u
/* Bytes an empty tick writes: about what a drain at the rate rows' pace
 * writes (bench/server printed 28-58 KB writes at 1,000-20,000 req/s). */
#define FLOOR_CHUNK 32768
#define FLOOR_ACK 18 /* bytes of an ACK frame (docs/protocol.md) */

/* The collector's part: reads what the tick writes, acks each chunk. */
static void *floor_peer_main(void *arg) {
  int fd = *(int *)arg;
  char *buf = malloc(FLOOR_CHUNK);
  static const char ack[FLOOR_ACK];
  size_t got = 0;
  ssize_t n;
  while (buf != NULL && (n = read(fd, buf, FLOOR_CHUNK)) > 0)
    for (got += (size_t)n; got >= FLOOR_CHUNK; got -= FLOOR_CHUNK)
      if (send(fd, ack, sizeof(ack), MSG_NOSIGNAL) != (ssize_t)sizeof(ack))
        break;
  free(buf);
  return NULL;
}

/* The CPU time of a sender's tick that drains nothing, every
 * `interval_ms`: sleep in poll() as the sender's loop sleeps, read the
 * acks that came without waiting (poll_socket() in sender.c), write a
 * chunk to a peer thread that reads and acks it (a collector's loop on a
 * unix socket, woken by the write). What the sender pays per wakeup
 * before it reads its first record; negative on failure. */
static double tick_floor_us(unsigned interval_ms) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  pthread_t th;
  char *chunk = calloc(1, FLOOR_CHUNK);
  if (chunk == NULL || fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0 ||
      pthread_create(&th, NULL, floor_peer_main, &sv[1]) != 0) {
    free(chunk);
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  uint64_t cpu0 = 0;
  bool ok = true;
  /* The first tick warms the path and is not counted. */
  unsigned ticks = FLOOR_MS / interval_ms;
  if (ticks < FLOOR_TICKS_MIN)
    ticks = FLOOR_TICKS_MIN;
  for (unsigned i = 0; i <= ticks && ok; i++) {
    if (i == 1)
      cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    poll(NULL, 0, (int)interval_ms);
    char ack[256];
    while (read(sv[0], ack, sizeof(ack)) == (ssize_t)sizeof(ack))
      ;
    for (size_t off = 0; off < FLOOR_CHUNK && ok;) {
      ssize_t n = send(sv[0], chunk + off, FLOOR_CHUNK - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += (size_t)n;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct pollfd pf = {.fd = sv[0], .events = POLLOUT};
        poll(&pf, 1, 1000);
      } else {
        ok = false;
      }
    }
  }
  uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  /* The peer reads to the end and stops; its last ack still finds the
   * socket open. */
  shutdown(sv[0], SHUT_WR);
  pthread_join(th, NULL);
  close(sv[0]);
  close(sv[1]);
  free(chunk);
  return ok ? (double)(cpu1 - cpu0) / 1e3 / ticks : -1;
}

/* A rate row's floor: its median wakeups a second, each an empty tick
 * (tick_floor_us() at the row's mean interval), over its median events
 * a second. What the row would cost if draining, encoding and writing
 * its events were free: the part of its CPU per event that only fewer
 * wakeups or cheaper ones (the machine's) can lower. */
static void print_rate_floor(const char *name, const sender_run *runs, int n) {
  double wakeups, worst, sent = sent_median(runs, n);
  runs_stat(runs, n, offsetof(sender_run, wakeups_per_s), &wakeups, &worst);
  if (wakeups <= 0 || sent <= 0)
    return;
  double interval = 1000.0 / wakeups;
  unsigned ms = interval < 1      ? 1u
                : interval > 1000 ? 1000u
                                  : (unsigned)interval;
  double tick = tick_floor_us(ms);
  if (tick < 0)
    return;
  printf("sender_%s_tick_floor_cpu_us: %.1f\n", name, tick);
  printf("sender_%s_tick_floor_interval_ms: %u\n", name, ms);
  printf("sender_%s_floor_ns_per_event: %.1f\n", name,
         wakeups * tick * 1e3 / (sent / (RATE_MS / 1000.0)));
  fflush(stdout);
}

#define RATE_COUNT 3
static const unsigned rates[RATE_COUNT] = {1000, 5000, 20000};

/* The fixed-rate rows, `repeat` runs each, every rate against the real
 * collector (when it started) and the sink taking turns within a
 * repetition; `only` (nonzero) keeps that rate alone. `key` names the
 * collector in the row: "" for the real one, "_sink" for the sink. */
static void report_rates(const char *real_url, const char *sink_url,
                         unsigned only, int repeat) {
  const char *urls[2] = {real_url, sink_url}, *keys[2] = {"", "_sink"};
  /* Row (k, c): the runs of rates[k] against urls[c], repeat of them. */
  sender_run *rows[RATE_COUNT][2];
  int done[RATE_COUNT][2] = {{0}};
  for (int k = 0; k < RATE_COUNT; k++)
    for (int c = 0; c < 2; c++)
      rows[k][c] = calloc((size_t)repeat, sizeof(sender_run));
  for (int i = 0; i < repeat; i++)
    for (int k = 0; k < RATE_COUNT; k++)
      for (int c = 0; c < 2; c++)
        if ((only == 0 || only == rates[k]) && urls[c] != NULL &&
            run_rate(urls[c], rates[k], &rows[k][c][done[k][c]]))
          done[k][c]++;
  for (int k = 0; k < RATE_COUNT; k++)
    for (int c = 0; c < 2; c++) {
      if (done[k][c] > 0) {
        char name[64];
        snprintf(name, sizeof(name), "rate_%u_batches_per_s%s", rates[k],
                 keys[c]);
        print_sender_row(name, rows[k][c], done[k][c], true);
        print_rate_floor(name, rows[k][c], done[k][c]);
      }
      free(rows[k][c]);
    }
}

/* ---- what a wakeup costs ---------------------------------------------------
 */

#define WAKEUP_SLEEPS 100
#define WAKEUP_SLEEP_MS 10
/* The same at the intervals the sender sleeps between drains (its pace
 * and the collector's advice: 1 ms when flooded to 250 ms when quiet),
 * each for about WAKEUP_CURVE_MS (WAKEUP_CURVE_MIN sleeps at least). */
#define WAKEUP_CURVE_MS 1500
#define WAKEUP_CURVE_MIN 6
static const int wakeup_curve_ms[] = {1, 5, 20, 100, 250};

/* The CPU time per sleep of `sleeps` sleeps of `ms` in poll(), the first
 * (which starts from a warm thread) not counted. */
static double wakeup_cpu_us(int ms, int sleeps) {
  poll(NULL, 0, ms);
  uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < sleeps; i++)
    poll(NULL, 0, ms);
  uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  return (double)(cpu1 - cpu0) / 1e3 / sleeps;
}

/* The CPU time a thread spends per sleep and wakeup with nothing else to
 * do (poll() with a timeout, as the sender's loop sleeps): the floor of
 * the sender's cost per second at a low rate, whatever it drains. A few
 * microseconds on bare metal; tens on a VM, where the timer interrupt,
 * the halt and the wakeup of the vCPU go through the hypervisor. Then the
 * same by the length of the sleep (`thread_wakeup_cpu_us_by_sleep_ms`):
 * on a VM a longer sleep leaves the thread colder caches and translations
 * to refill, so a sender that sleeps longer to wake less often saves
 * fewer microseconds than its wakeups suggest. */
static void report_wakeup(void) {
  printf("thread_wakeup_cpu_us: %.1f\n",
         wakeup_cpu_us(WAKEUP_SLEEP_MS, WAKEUP_SLEEPS));
  printf("thread_wakeup_cpu_us_by_sleep_ms:");
  for (size_t i = 0; i < sizeof(wakeup_curve_ms) / sizeof(*wakeup_curve_ms);
       i++) {
    int ms = wakeup_curve_ms[i];
    int sleeps = WAKEUP_CURVE_MS / ms;
    if (sleeps < WAKEUP_CURVE_MIN)
      sleeps = WAKEUP_CURVE_MIN;
    printf(" %d=%.1f", ms, wakeup_cpu_us(ms, sleeps));
  }
  printf("\n");
  fflush(stdout);
}

/* ---- main -----------------------------------------------------------------
 */

static void print_load(const char *key) {
  char line[128] = "";
  FILE *f = fopen("/proc/loadavg", "r");
  if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    char *end = line;
    for (int field = 0; field < 3 && end != NULL; field++)
      end = strchr(end + 1, ' ');
    if (end != NULL)
      *end = '\0';
  }
  if (f != NULL)
    fclose(f);
  printf("%s: %s\n", key, line);
}

static void usage(void) {
  fprintf(stderr, "usage: agent_overhead [--events N] [--repeat R] "
                  "[--sender-only] [--rate N] (events per thread and "
                  "repetition, default 262144; repetitions of each row, "
                  "default and minimum 5; --sender-only: the sender's rows "
                  "alone; --rate N: its row at N batches/s alone, N one of "
                  "1000, 5000, 20000)\n");
}

/* Creates the agent and tells which of the process's threads it started
 * (the sender). */
static tw_agent *start_agent(const char *url, size_t budget,
                             sender_threads *st) {
  pid_t before[TIDS_MAX], after[TIDS_MAX];
  size_t nb = list_threads(before);
  tw_config cfg;
  tw_config_init(&cfg);
  cfg.collector = url;
  cfg.service = "agent_overhead";
  cfg.buffer_bytes = budget;
  tw_agent *agent;
  if (tw_agent_new(&cfg, &agent) != 0)
    return NULL;
  size_t na = list_threads(after);
  st->n = 0;
  for (size_t i = 0; i < na; i++) {
    size_t k = 0;
    while (k < nb && before[k] != after[i])
      k++;
    if (k == nb)
      st->tids[st->n++] = after[i];
  }
  return agent;
}

int main(int argc, char **argv) {
  uint64_t events = 1u << 18;
  int repeat = MIN_REPEAT;
  bool sender_only = false;
  unsigned only_rate = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
      events = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
      only_rate = (unsigned)strtoul(argv[++i], NULL, 10);
      sender_only = true;
    } else if (strcmp(argv[i], "--sender-only") == 0) {
      sender_only = true;
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = atoi(argv[++i]);
      if (repeat < MIN_REPEAT || repeat > 1000) {
        usage();
        return 2;
      }
    } else {
      usage();
      return 2;
    }
  }
  const char *skip = NULL;
#if TW_BENCH_LTTNG
  if (sender_only)
    skip = "--sender-only";
  else if (getenv("TW_BENCH_LTTNG_SESSION") == NULL)
    skip = lttng_prepare(argv);
#else
  skip = "built without lttng-ust";
#endif
  int lttng = skip == NULL && !sender_only && lttng_active();
  if (skip == NULL && !lttng)
    skip = "the tracepoint was not enabled by the session";

  sink s;
  if (sink_start(&s) != 0) {
    fprintf(stderr, "agent_overhead: cannot start the sink collector\n");
    return 1;
  }
  print_load("loadavg_start");
  /* The cold rings first, each agent alone with the sink (it serves one
   * connection at a time). */
  if (!sender_only) {
    report_first_touch(s.url, "bench_budget", BENCH_BUDGET, PER_ROUND, repeat);
    /* The default budget's first ring holds 32768 events. */
    report_first_touch(s.url, "default_budget", 0, 4096, repeat);
  }
  sender_threads st;
  tw_agent *agent = start_agent(s.url, BENCH_BUDGET, &st);
  if (agent == NULL)
    return 1;
  char logpath[160];
  snprintf(logpath, sizeof(logpath), "%s/log.txt", s.dir);
  FILE *log = fopen(logpath, "w");

  plan p = {events / PER_ROUND ? events / PER_ROUND : 1,
            repeat,
            agent,
            log,
            lttng,
            0};
  printf("clock_source: %s\n", tw_clock_source());
  printf("events_per_thread_per_repeat: %llu\n",
         (unsigned long long)(p.rounds * PER_ROUND));
  printf("repeat: %d\n", p.repeat);
  printf("cpus_online: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
  if (skip != NULL)
    printf("lttng: skipped (%s)\n", skip);
  const int thread_counts[] = {1, 2, 8};
  for (size_t k = 0; k < 3 && !sender_only; k++)
    report_threads(thread_counts[k], &p);
  tw_agent_stats stats;
  tw_agent_get_stats(agent, &stats);
  printf("taskwatch_recorded: %llu\n", (unsigned long long)stats.recorded);
  printf("taskwatch_dropped: %llu\n", (unsigned long long)stats.dropped);
  printf("sender_threads: %zu\n", st.n);
  if (only_rate == 0)
    report_full_speed(agent, &st, repeat);
  if (lttng)
    printf("lttng_dropped: %lld\n", lttng_finish());
  else if (getenv("TW_BENCH_LTTNG_SESSION") != NULL)
    lttng_finish();
  /* The clock may have moved to monotonic during the run (see
   * tw_clock_source()). */
  printf("clock_source_end: %s\n", tw_clock_source());
  tw_agent_free(agent);
  report_wakeup();
  real_collector rc;
  int real = collector_start(&rc, s.dir) == 0;
  printf("sender_rate_collector: %s\n",
         real ? "taskwatch collector (" TASKWATCH_BIN ")"
              : "unavailable, rows against the sink only");
  report_rates(real ? rc.url : NULL, s.url, only_rate, repeat);
  if (real)
    collector_stop(&rc);
  print_load("loadavg_end");
  fclose(log);
  unlink(logpath);
  sink_stop(&s);
  return 0;
}
