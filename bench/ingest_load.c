/*
 * ingest_load - a fast synthetic agent for bench/ingest: it speaks the wire
 * protocol directly (common/proto.h) and streams demo-shaped batches (one
 * BATCH and three tasks: ENQUEUE, START, FINISH or FAIL/SKIP), then sends
 * GOODBYE and waits for the last ack. It measures the collector without
 * the agent library's own costs; the demo measures both.
 *
 * usage: ingest_load [--agents K] [--fail-every K] [--rate R]
 *                    [--wait-ms Q] [--email-ms E] [--frame-ms F]
 *                    [--proto-version V] URL BATCHES
 *
 * --agents K opens K connections, each its own instance, and spreads the
 * batches over them. --rate R caps batches per second in total (0: as
 * fast as the collector takes them). With a rate, events are made every
 * millisecond, and each agent writes what it made when the agent
 * library's sender would drain next, as its pace decides it from what
 * each write took (tw__pace_next(), agent/pace.h, with no hold advised:
 * every PACE_FLOW_MS = 30 ms at bench/ingest's `realistic` rate). The
 * agents' first writes are spread evenly over PACE_FLOW_MS, as those of
 * unrelated servers are. --frame-ms F writes every F ms instead. At 1
 * the collector reads a frame from every agent every millisecond, 30
 * times the frames of real agents at `realistic`'s rate, though in about
 * as many wakeups of its loop as the agents' own pace brings.
 *
 * Without --wait-ms and --email-ms a batch's events all go at once, so
 * the collector sees each task whole in one transaction. With them the
 * events spread over time as in a real server (`taskwatch demo
 * --email-ms`): the BATCH and the three ENQUEUEs when the request is
 * handled, write_notification's START and FINISH and send_email's START Q
 * ms later, and send_email's end with write_log's events E ms after that.
 * A task's enqueue, start and end then reach the collector milliseconds
 * apart, in different transactions. Spreading needs a rate.
 *
 * --proto-version V speaks that version of the protocol only (default:
 * the newest), so one load tool can measure collectors of several builds.
 *
 * Prints key: value lines.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "pace.h"
#include "proto.h"
#include "url.h"
#include "xalloc.h"

#define EVENTS_PER_FRAME 2000

/* The protocol version spoken (--proto-version). */
static uint16_t version = PROTO_VERSION;
#define TICK_NS 1000000

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int dial(const char *text) {
  url u;
  if (tw__url_parse(text, 0, &u) != 0)
    return -1;
  if (u.scheme == URL_UNIX) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, u.path, strlen(u.path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
      return fd;
    return -1;
  }
  char port[8];
  snprintf(port, sizeof(port), "%d", u.port);
  struct addrinfo hints = {0}, *ai;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(u.host, port, &hints, &ai) != 0)
    return -1;
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A request in flight: its events of the later stages are still due. */
typedef struct pending {
  int64_t at; /* when the request was handled */
  uint64_t batch, first_task;
  int fail;
} pending;

typedef struct load_agent {
  int fd;
  proto_buf b;
  uint64_t seq; /* next sequence number */
  uint32_t in_frame;
  uint64_t acked;
  uint8_t rbuf[1 << 16];
  size_t rlen;
  uint64_t batches, tasks;     /* ids handed out */
  int64_t frame_at;            /* when its next frame goes (paced) */
  pace pace;                   /* the sender's pace, without --frame-ms */
  uint64_t frames;             /* frames sent (paced) */
  pending *ring;               /* requests whose later stages are due */
  size_t cap, head, mid, tail; /* [tail, mid): stage B due; [mid, head): C */
} load_agent;

typedef struct load {
  const char *url;
  long long batches, agents, fail_every, rate;
  int64_t wait_ns, email_ns;
  int64_t frame_ns; /* paced: each agent's frames this far apart; 0: pace */
  load_agent *a;
} load;

/* Reads what the collector sent; with block, until acked >= until or the
 * connection ends. */
static void read_acks(load_agent *g, int block, uint64_t until) {
  for (;;) {
    proto_frame f;
    while (tw__proto_frame_next(g->rbuf, g->rlen, 0, &f) == 0) {
      proto_ack a;
      if (f.type == PROTO_ACK &&
          tw__proto_decode_ack(f.payload, f.payload_len, version, &a) == 0)
        g->acked = a.next_seq;
      else if (f.type == PROTO_ERROR)
        fprintf(stderr, "ingest_load: collector sent ERROR\n");
      memmove(g->rbuf, g->rbuf + f.frame_len, g->rlen - f.frame_len);
      g->rlen -= f.frame_len;
    }
    if (!block || g->acked >= until)
      return;
    ssize_t r = recv(g->fd, g->rbuf + g->rlen, sizeof(g->rbuf) - g->rlen, 0);
    if (r <= 0)
      return;
    g->rlen += (size_t)r;
  }
}

static void drain_acks(load_agent *g) {
  ssize_t r;
  while ((r = recv(g->fd, g->rbuf + g->rlen, sizeof(g->rbuf) - g->rlen,
                   MSG_DONTWAIT)) > 0) {
    g->rlen += (size_t)r;
    read_acks(g, 0, 0);
  }
}

static void put(load_agent *g, const proto_event *ev) {
  if (g->in_frame == 0)
    tw__proto_events_open(&g->b, version, g->seq);
  tw__proto_put_event(&g->b, ev);
  g->seq++;
  g->in_frame++;
}

/* Sends the open frame, if any. */
static int flush_frame(load_agent *g) {
  if (g->in_frame == 0)
    return 0;
  tw__proto_events_close(&g->b);
  int rc = send_all(g->fd, g->b.data, g->b.len);
  tw__proto_buf_reset(&g->b);
  g->in_frame = 0;
  drain_acks(g);
  return rc;
}

static proto_str cs(const char *s) {
  proto_str r = {s, (uint32_t)strlen(s)};
  return r;
}

static void put_task(load_agent *g, int kind, uint64_t task, int64_t t,
                     uint64_t other) {
  proto_event e = {.kind = (uint8_t)kind, .time_ns = t, .task = task};
  e.other = other;
  if (kind == PROTO_EV_FAIL) {
    e.text = cs("SMTPError");
    e.message = cs("connection refused");
    e.detail = cs("Traceback (most recent call last): ...");
  }
  put(g, &e);
}

/* Stage A: the request is handled; its batch and three tasks enqueued. */
static pending stage_a(const load *l, load_agent *g, int64_t t) {
  pending p = {t, ++g->batches, g->tasks + 1, 0};
  p.fail = l->fail_every > 0 && (long long)p.batch % l->fail_every == 0;
  proto_event ev = {.kind = PROTO_EV_BATCH, .time_ns = t, .batch = p.batch};
  ev.string = 4;
  put(g, &ev);
  for (uint32_t i = 0; i < 3; i++) {
    proto_event e = {.kind = PROTO_EV_ENQUEUE,
                     .time_ns = t,
                     .task = p.first_task + i,
                     .batch = p.batch,
                     .position = i,
                     .string = i + 1,
                     .mode = i == 1 ? 0 : 1,
                     .other = 1};
    put(g, &e);
  }
  g->tasks += 3;
  return p;
}

/* Stage B: write_notification runs, send_email starts. */
static void stage_b(load_agent *g, const pending *p, int64_t t) {
  put_task(g, PROTO_EV_START, p->first_task, t, 2);
  put_task(g, PROTO_EV_FINISH, p->first_task, t + 50000, 0);
  put_task(g, PROTO_EV_START, p->first_task + 1, t + 60000, 1);
}

/* Stage C: send_email ends; write_log runs or is skipped. */
static void stage_c(load_agent *g, const pending *p, int64_t t) {
  uint64_t email = p->first_task + 1, log = p->first_task + 2;
  if (p->fail) {
    put_task(g, PROTO_EV_FAIL, email, t, 0);
    put_task(g, PROTO_EV_SKIP, log, t + 10000, email);
    return;
  }
  put_task(g, PROTO_EV_FINISH, email, t, 0);
  put_task(g, PROTO_EV_START, log, t + 10000, 2);
  put_task(g, PROTO_EV_FINISH, log, t + 60000, 0);
}

static void push_pending(load_agent *g, pending p) {
  if (g->head - g->tail == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 1024;
    pending *ring = xcalloc(cap, sizeof(*ring));
    for (size_t i = g->tail; i < g->head; i++)
      ring[i - g->tail] = g->ring[i % g->cap];
    g->head -= g->tail;
    g->mid -= g->tail;
    g->tail = 0;
    free(g->ring);
    g->ring = ring;
    g->cap = cap;
  }
  g->ring[g->head++ % g->cap] = p;
}

/* The later stages whose time has come, in order. */
static void due_stages(const load *l, load_agent *g, int64_t now) {
  while (g->mid < g->head && g->ring[g->mid % g->cap].at + l->wait_ns <= now)
    stage_b(g, &g->ring[g->mid++ % g->cap], now);
  while (g->tail < g->mid &&
         g->ring[g->tail % g->cap].at + l->wait_ns + l->email_ns <= now)
    stage_c(g, &g->ring[g->tail++ % g->cap], now);
}

static int hello(load_agent *g, int n) {
  proto_hello h = {0};
  for (int i = 0; i < PROTO_INSTANCE_SIZE; i++)
    h.instance[i] = (uint8_t)(rand() ^ (getpid() >> (i % 3)) ^ time(NULL));
  h.instance[0] = (uint8_t)n;
  h.version = h.version_min = version;
  h.pid = (uint32_t)getpid();
  h.started_at_ns = now_ns();
  h.service = cs("bench");
  h.host = cs("localhost");
  const char *token = getenv("TASKWATCH_TOKEN");
  h.token = cs(token ? token : "");
  tw__proto_put_hello(&g->b, &h);
  int rc = send_all(g->fd, g->b.data, g->b.len);
  tw__proto_buf_reset(&g->b);
  g->seq = 1;
  const char *names[] = {"write_notification", "send_email", "write_log",
                         "POST /send-notification/{email}"};
  for (uint32_t i = 0; i < 4; i++) {
    proto_event ev = {.kind = PROTO_EV_STRING, .time_ns = h.started_at_ns};
    ev.string = i + 1;
    ev.text = cs(names[i]);
    put(g, &ev);
  }
  return rc;
}

/* As fast as the collector takes it: each agent's batches whole, in
 * frames of EVENTS_PER_FRAME events. */
static int run_unpaced(load *l) {
  for (long long n = 0; n < l->batches; n++) {
    load_agent *g = &l->a[n % l->agents];
    int64_t t = now_ns();
    pending p = stage_a(l, g, t);
    stage_b(g, &p, t + 1000);
    stage_c(g, &p, t + 3000);
    if (g->in_frame >= EVENTS_PER_FRAME && flush_frame(g) != 0)
      return -1;
  }
  return 0;
}

/* Sends g's frame, due at now, and sets when the next one is due. */
static int paced_flush(const load *l, load_agent *g, int64_t now) {
  uint32_t taken = g->in_frame;
  if (flush_frame(g) != 0)
    return -1;
  g->frames++;
  int64_t wait = l->frame_ns;
  if (wait == 0)
    wait = (int64_t)tw__pace_next(&g->pace, (uint64_t)(now / 1000000), taken,
                                  0.0, 0) *
           1000000;
  g->frame_at = now + wait;
  return 0;
}

/* Paced: every millisecond, the requests that fell due and the later
 * stages of earlier ones; each agent's frame when its time comes. */
static int run_paced(load *l, int64_t t0) {
  long long started = 0;
  int64_t spread = l->frame_ns ? l->frame_ns : PACE_FLOW_MS * 1000000;
  for (long long i = 0; i < l->agents; i++)
    l->a[i].frame_at = t0 + spread * (i + 1) / l->agents;
  for (;;) {
    int64_t now = now_ns();
    long long due = (long long)((double)(now - t0) / 1e9 * (double)l->rate);
    if (due > l->batches)
      due = l->batches;
    for (; started < due; started++) {
      load_agent *g = &l->a[started % l->agents];
      pending p = stage_a(l, g, now);
      if (l->wait_ns == 0 && l->email_ns == 0) {
        stage_b(g, &p, now + 1000);
        stage_c(g, &p, now + 3000);
      } else {
        push_pending(g, p);
      }
    }
    int busy = started < l->batches;
    for (long long i = 0; i < l->agents; i++) {
      load_agent *g = &l->a[i];
      due_stages(l, g, now);
      if ((g->frame_at <= now || g->in_frame >= EVENTS_PER_FRAME) &&
          paced_flush(l, g, now) != 0)
        return -1;
      busy |= g->tail < g->head;
    }
    if (!busy)
      return 0;
    int64_t wait = TICK_NS - (now_ns() - now);
    if (wait > 0) {
      struct timespec ts = {0, (long)wait};
      nanosleep(&ts, NULL);
    }
  }
}

static const struct option long_options[] = {
    {"agents", required_argument, NULL, 'a'},
    {"fail-every", required_argument, NULL, 'f'},
    {"rate", required_argument, NULL, 'r'},
    {"wait-ms", required_argument, NULL, 'w'},
    {"email-ms", required_argument, NULL, 'e'},
    {"frame-ms", required_argument, NULL, 'F'},
    {"proto-version", required_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};

static int parse(int argc, char **argv, load *l) {
  args a;
  int c, rc = 0;
  long long wait_ms = 0, email_ms = 0, frame_ms = 0, v = PROTO_VERSION;
  l->agents = 1;
  args_init(&a, "ingest_load", argc, argv, "", long_options);
  while (rc == 0 && (c = args_next(&a)) != -1) {
    if (c == ARGS_ERROR)
      return ARGS_USAGE;
    rc = c == 'a'   ? args_int(&a, 1, 4096, &l->agents)
         : c == 'f' ? args_int(&a, 0, INT32_MAX, &l->fail_every)
         : c == 'r' ? args_int(&a, 0, 100000000, &l->rate)
         : c == 'w' ? args_int(&a, 0, 60000, &wait_ms)
         : c == 'p' ? args_int(&a, PROTO_VERSION_MIN, PROTO_VERSION, &v)
         : c == 'F' ? args_int(&a, 1, 60000, &frame_ms)
                    : args_int(&a, 0, 60000, &email_ms);
  }
  int first = args_first_operand(&a);
  if (rc == 0 && argc - first != 2)
    rc = args_fail("ingest_load", "usage: ingest_load [--agents K] "
                                  "[--fail-every K] [--rate R] [--wait-ms Q] "
                                  "[--email-ms E] [--frame-ms F] "
                                  "[--proto-version V] URL BATCHES");
  if (rc == 0 &&
      args_parse_int(argv[first + 1], 1, INT64_MAX / 8, &l->batches) != 0)
    rc = args_fail("ingest_load", "BATCHES must be a positive number");
  if (rc == 0 && (wait_ms || email_ms) && l->rate == 0)
    rc = args_fail("ingest_load", "--wait-ms and --email-ms need a --rate");
  l->url = argv[first];
  version = (uint16_t)v;
  l->wait_ns = wait_ms * 1000000;
  l->email_ns = email_ms * 1000000;
  l->frame_ns = frame_ms * 1000000;
  return rc;
}

int main(int argc, char **argv) {
  load l = {0};
  if (parse(argc, argv, &l) != 0)
    return 2;
  l.a = xcalloc((size_t)l.agents, sizeof(*l.a));
  for (long long i = 0; i < l.agents; i++) {
    load_agent *g = &l.a[i];
    tw__proto_buf_init(&g->b);
    g->fd = dial(l.url);
    if (g->fd < 0 || hello(g, (int)i) != 0) {
      fprintf(stderr, "ingest_load: cannot connect to %s\n", l.url);
      return 1;
    }
  }
  int64_t t0 = now_ns();
  int rc = l.rate > 0 ? run_paced(&l, t0) : run_unpaced(&l);
  uint64_t events = 0;
  int ok = rc == 0;
  for (long long i = 0; ok && i < l.agents; i++) {
    load_agent *g = &l.a[i];
    ok = flush_frame(g) == 0;
    tw__proto_put_goodbye(&g->b, version, g->seq - 1);
    ok = ok && send_all(g->fd, g->b.data, g->b.len) == 0;
    events += g->seq - 1;
  }
  for (long long i = 0; ok && i < l.agents; i++) {
    load_agent *g = &l.a[i];
    read_acks(g, 1, g->seq);
    ok = g->acked >= g->seq;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("load_events: %llu\n", (unsigned long long)events);
  printf("load_seconds: %.3f\n", secs);
  printf("load_events_per_s: %.0f\n", (double)events / secs);
  uint64_t frames = 0;
  for (long long i = 0; i < l.agents; i++)
    frames += l.a[i].frames;
  if (frames > 0)
    printf("load_frame_ms_mean: %.1f\n",
           secs * 1e3 * (double)l.agents / (double)frames);
  for (long long i = 0; i < l.agents; i++) {
    close(l.a[i].fd);
    tw__proto_buf_fini(&l.a[i].b);
    free(l.a[i].ring);
  }
  free(l.a);
  if (!ok)
    fprintf(stderr, "ingest_load: not every event was acked\n");
  return ok ? 0 : 1;
}
