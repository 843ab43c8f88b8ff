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
 * The sender thread's cost is measured too: its CPU time over a method's
 * run (from /proc/self/task/TID/schedstat) divided by the events it sent
 * (tw_agent_stats.sent), printed as tN_METHOD_sender_ns_per_event. The
 * sender is the thread tw_agent_new() started.
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
 * position, interned name, mode, thread, time), the richest fixed event. */
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

static uint64_t now_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the sender's CPU time -------------------------------------------------
 */

#define MAX_TASKS 256

static int list_tasks(pid_t *out, int max) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  while (d != NULL && (e = readdir(d)) != NULL && n < max)
    if (e->d_name[0] != '.')
      out[n++] = (pid_t)strtol(e->d_name, NULL, 10);
  if (d != NULL)
    closedir(d);
  return n;
}

/* The one thread listed now that was not in before[]; 0 if not exactly
 * one. */
static pid_t new_task(const pid_t *before, int nbefore) {
  pid_t now[MAX_TASKS], found = 0;
  int n = list_tasks(now, MAX_TASKS), count = 0;
  for (int i = 0; i < n; i++) {
    int old = 0;
    for (int j = 0; j < nbefore; j++)
      old |= now[i] == before[j];
    if (!old) {
      found = now[i];
      count++;
    }
  }
  return count == 1 ? found : 0;
}

/* A thread's CPU time in ns, or -1. */
static long long task_cpu_ns(pid_t tid) {
  char path[64];
  long long ns = -1;
  snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
  FILE *f = tid > 0 ? fopen(path, "r") : NULL;
  if (f != NULL) {
    if (fscanf(f, "%lld", &ns) != 1)
      ns = -1;
    fclose(f);
  }
  return ns;
}

static pid_t sender_tid;

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
  proto_buf_reset(b);
}

static void sink_serve(sink *s, int fd) {
  size_t cap = PROTO_FRAME_MAX + PROTO_HEADER_SIZE, len = 0;
  uint8_t *buf = malloc(cap);
  proto_buf out;
  proto_buf_init(&out);
  struct pollfd p[2] = {{fd, POLLIN, 0}, {s->stop_pipe[0], POLLIN, 0}};
  while (buf != NULL && poll(p, 2, -1) > 0 && p[1].revents == 0) {
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n <= 0)
      break;
    len += (size_t)n;
    size_t at = 0;
    proto_frame f;
    while (proto_frame_next(buf + at, len - at, 0, &f) == 0) {
      proto_events it;
      if (f.type == PROTO_HELLO) {
        proto_welcome w = {PROTO_VERSION, 1, PROTO_FRAME_MAX};
        proto_put_welcome(&out, &w);
      } else if (f.type == PROTO_EVENTS &&
                 proto_events_begin(&it, f.payload, f.payload_len,
                                    PROTO_VERSION) == 0) {
        proto_put_ack(&out, PROTO_VERSION, it.first_seq + it.count);
      } else if (f.type == PROTO_GOODBYE) {
        uint64_t last = 0;
        proto_decode_goodbye(f.payload, f.payload_len, PROTO_VERSION, &last);
        proto_put_ack(&out, PROTO_VERSION, last + 1);
      }
      at += f.frame_len;
    }
    sink_reply(fd, &out);
    memmove(buf, buf + at, len - at);
    len -= at;
  }
  proto_buf_fini(&out);
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
    tw_task_enqueue(b->agent, 1, (uint32_t)task, "send_email",
                    TW_MODE_THREADPOOL, &task);
    break;
  case M_CLOCK:
    clock_gettime(CLOCK_MONOTONIC, &ts);
    __asm__ volatile("" : : "r"(&ts) : "memory");
    break;
  default:
    break;
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  bench *b = w->b;
  uint64_t thread = (uint64_t)gettid();
  uint64_t task = (uint64_t)w->index << 32 | 1;
  for (uint64_t r = 0; r < b->rounds; r++) {
    pthread_barrier_wait(&b->go);
    uint64_t t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    for (uint64_t i = 0; i < b->per_round; i++)
      record(b, task++, thread);
    uint64_t t1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    b->samples[r * (uint64_t)b->threads + (uint64_t)w->index] =
        (double)(t1 - t0) / (double)b->per_round;
    pthread_barrier_wait(&b->done);
  }
  return NULL;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
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
  for (uint64_t r = 0; r < b->rounds; r++) {
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
  qsort(b->samples, n, sizeof(double), compare_double);
  double median = b->samples[n / 2];
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

/* ---- main -----------------------------------------------------------------
 */

/* Runs every method from t threads and prints its rows. */
static void report_threads(int t, uint64_t rounds, tw_agent *agent, FILE *log,
                           int lttng) {
  double ns[M_COUNT] = {0};
  long long dropped = 0, enqueue_dropped = 0;
  for (int m = 0; m < M_COUNT; m++) {
    if (m == M_LTTNG && !lttng)
      continue;
    bench b;
    memset(&b, 0, sizeof(b));
    b.m = (enum method)m;
    b.threads = t;
    b.rounds = rounds;
    b.per_round = PER_ROUND;
    b.agent = agent;
    b.log = log;
    if (m == M_FFLUSH) /* a write(2) per event: fewer of them */
      b.rounds = rounds / 16 ? rounds / 16 : 1;
    tw_agent_stats before, after;
    tw_agent_get_stats(agent, &before);
    long long cpu0 = task_cpu_ns(sender_tid);
    ns[m] = run_bench(&b);
    long long cpu1 = task_cpu_ns(sender_tid);
    tw_agent_get_stats(agent, &after);
    if ((m == M_TASKWATCH || m == M_ENQUEUE) && cpu0 >= 0 && cpu1 >= 0 &&
        after.sent > before.sent)
      printf("t%d_%s_sender_ns_per_event: %.1f\n", t, method_name[m],
             (double)(cpu1 - cpu0) / (double)(after.sent - before.sent));
    if (m == M_TASKWATCH)
      dropped = (long long)(after.dropped - before.dropped);
    if (m == M_ENQUEUE)
      enqueue_dropped = (long long)(after.dropped - before.dropped);
    printf("t%d_%s_ns_per_event: %.1f\n", t, method_name[m], ns[m]);
  }
  printf("t%d_taskwatch_dropped: %lld\n", t, dropped);
  printf("t%d_taskwatch_enqueue_dropped: %lld\n", t, enqueue_dropped);
  printf("t%d_fprintf_dropped: 0\n", t);
  if (lttng)
    printf("t%d_ratio_taskwatch_lttng: %.3f\n", t,
           ns[M_TASKWATCH] / ns[M_LTTNG]);
  printf("t%d_ratio_taskwatch_fprintf: %.3f\n", t,
         ns[M_TASKWATCH] / ns[M_FPRINTF]);
  printf("t%d_ratio_taskwatch_fprintf_fflush: %.3f\n", t,
         ns[M_TASKWATCH] / ns[M_FFLUSH]);
  fflush(stdout);
}

static void usage(void) {
  fprintf(stderr, "usage: agent_overhead [--events N] (events per thread, "
                  "default 1048576)\n");
}

int main(int argc, char **argv) {
  uint64_t events = 1u << 20;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
      events = strtoull(argv[++i], NULL, 10);
    } else {
      usage();
      return 2;
    }
  }
  const char *skip = NULL;
#if TW_BENCH_LTTNG
  if (getenv("TW_BENCH_LTTNG_SESSION") == NULL)
    skip = lttng_prepare(argv);
#else
  skip = "built without lttng-ust";
#endif
  int lttng = skip == NULL && lttng_active();
  if (skip == NULL && !lttng)
    skip = "the tracepoint was not enabled by the session";

  sink s;
  if (sink_start(&s) != 0) {
    fprintf(stderr, "agent_overhead: cannot start the sink collector\n");
    return 1;
  }
  tw_config cfg;
  tw_config_init(&cfg);
  cfg.collector = s.url;
  cfg.service = "agent_overhead";
  cfg.buffer_bytes = (size_t)512 << 20;
  tw_agent *agent;
  pid_t tasks[MAX_TASKS];
  int ntasks = list_tasks(tasks, MAX_TASKS);
  if (tw_agent_new(&cfg, &agent) != 0)
    return 1;
  sender_tid = new_task(tasks, ntasks);
  if (sender_tid == 0)
    printf("sender: not found, its cost is not measured\n");
  char logpath[160];
  snprintf(logpath, sizeof(logpath), "%s/log.txt", s.dir);
  FILE *log = fopen(logpath, "w");

  uint64_t rounds = events / PER_ROUND ? events / PER_ROUND : 1;
  printf("events_per_thread: %llu\n", (unsigned long long)(rounds * PER_ROUND));
  printf("cpus_online: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
  if (skip != NULL)
    printf("lttng: skipped (%s)\n", skip);
  const int thread_counts[] = {1, 2, 8};
  for (size_t k = 0; k < 3; k++)
    report_threads(thread_counts[k], rounds, agent, log, lttng);
  tw_agent_stats st;
  tw_agent_get_stats(agent, &st);
  printf("taskwatch_recorded: %llu\n", (unsigned long long)st.recorded);
  printf("taskwatch_dropped: %llu\n", (unsigned long long)st.dropped);
  if (lttng)
    printf("lttng_dropped: %lld\n", lttng_finish());
  else if (getenv("TW_BENCH_LTTNG_SESSION") != NULL)
    lttng_finish();
  tw_agent_free(agent);
  fclose(log);
  unlink(logpath);
  sink_stop(&s);
  return 0;
}
