/*
 * ingest_load - a fast synthetic agent for bench/ingest: it speaks the wire
 * protocol directly (common/proto.h) and streams demo-shaped batches (one
 * BATCH and three tasks: ENQUEUE, START, FINISH or FAIL/SKIP) as fast as
 * the collector takes them, then sends GOODBYE and waits for the last ack.
 * It measures the collector without the agent library's own costs; the
 * demo measures both.
 *
 * usage: ingest_load URL BATCHES [FAIL_EVERY [RATE]]
 * RATE caps batches per second (0: as fast as possible); with a rate,
 * frames are sent every millisecond, like an agent's sender would.
 * Prints key: value lines.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "url.h"

#define EVENTS_PER_FRAME 2000

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

/* Reads frames; returns the newest ACK value seen (0 if none). With
 * block 0 only what is already there is read. */
static uint64_t read_acks(int fd, int block, uint64_t until) {
  static uint8_t buf[1 << 16];
  static size_t len;
  uint64_t acked = 0;
  for (;;) {
    proto_frame f;
    while (tw__proto_frame_next(buf, len, 0, &f) == 0) {
      uint64_t v;
      if (f.type == PROTO_ACK &&
          tw__proto_decode_ack(f.payload, f.payload_len, PROTO_VERSION, &v) == 0)
        acked = v;
      else if (f.type == PROTO_ERROR)
        fprintf(stderr, "ingest_load: collector sent ERROR\n");
      memmove(buf, buf + f.frame_len, len - f.frame_len);
      len -= f.frame_len;
    }
    if (block && acked >= until)
      return acked;
    ssize_t r =
        recv(fd, buf + len, sizeof(buf) - len, block ? 0 : MSG_DONTWAIT);
    if (r <= 0)
      return acked;
    len += (size_t)r;
  }
}

static void put(proto_buf *b, const proto_event *ev, uint64_t *seq,
                uint32_t *in_frame) {
  if (*in_frame == 0)
    tw__proto_events_open(b, PROTO_VERSION, *seq);
  tw__proto_put_event(b, ev);
  (*seq)++;
  (*in_frame)++;
}

static proto_str cs(const char *s) {
  proto_str r = {s, (uint32_t)strlen(s)};
  return r;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ingest_load URL BATCHES [FAIL_EVERY [RATE]]\n");
    return 2;
  }
  long batches = strtol(argv[2], NULL, 10);
  long fail_every = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
  long rate = argc > 4 ? strtol(argv[4], NULL, 10) : 0;
  long per_ms = rate > 0 ? (rate + 999) / 1000 : 0;
  int fd = dial(argv[1]);
  if (fd < 0) {
    fprintf(stderr, "ingest_load: cannot connect to %s\n", argv[1]);
    return 1;
  }
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_hello h = {0};
  for (int i = 0; i < PROTO_INSTANCE_SIZE; i++)
    h.instance[i] = (uint8_t)(rand() ^ (getpid() >> (i % 3)) ^ time(NULL));
  h.pid = (uint32_t)getpid();
  h.started_at_ns = now_ns();
  h.service = cs("bench");
  h.host = cs("localhost");
  const char *token = getenv("TASKWATCH_TOKEN");
  h.token = cs(token ? token : "");
  tw__proto_put_hello(&b, &h);
  send_all(fd, b.data, b.len);
  tw__proto_buf_reset(&b);

  uint64_t seq = 1;
  uint32_t in_frame = 0;
  const char *names[] = {"write_notification", "send_email", "write_log",
                         "POST /send-notification/{email}"};
  int64_t t0 = now_ns();
  for (uint32_t i = 0; i < 4; i++) {
    proto_event ev = {.kind = PROTO_EV_STRING, .time_ns = t0, .string = i + 1};
    ev.text = cs(names[i]);
    put(&b, &ev, &seq, &in_frame);
  }
  uint64_t task = 0;
  t0 = now_ns();
  for (long n = 1; n <= batches; n++) {
    int64_t t = now_ns();
    proto_event ev = {.kind = PROTO_EV_BATCH,
                      .time_ns = t,
                      .batch = (uint64_t)n,
                      .string = 4};
    put(&b, &ev, &seq, &in_frame);
    int fail = fail_every > 0 && n % fail_every == 0;
    uint64_t first = task + 1, failed = 0;
    for (uint32_t p = 0; p < 3; p++) {
      proto_event e = {.kind = PROTO_EV_ENQUEUE,
                       .time_ns = t,
                       .task = first + p,
                       .batch = (uint64_t)n,
                       .position = p,
                       .string = p + 1,
                       .mode = 1,
                       .other = 1};
      put(&b, &e, &seq, &in_frame);
    }
    for (uint32_t p = 0; p < 3; p++) {
      proto_event e = {.time_ns = t + 1000 * (p + 1), .task = first + p};
      if (failed) {
        e.kind = PROTO_EV_SKIP;
        e.other = failed;
        put(&b, &e, &seq, &in_frame);
        continue;
      }
      e.kind = PROTO_EV_START;
      e.other = 2;
      put(&b, &e, &seq, &in_frame);
      e.time_ns += 500;
      if (fail && p == 1) {
        e.kind = PROTO_EV_FAIL;
        e.text = cs("SMTPError");
        e.message = cs("connection refused");
        e.detail = cs("Traceback (most recent call last): ...");
        failed = e.task;
      } else {
        e.kind = PROTO_EV_FINISH;
      }
      put(&b, &e, &seq, &in_frame);
    }
    task += 3;
    int tick = per_ms > 0 && n % per_ms == 0;
    if (in_frame >= EVENTS_PER_FRAME || n == batches || tick) {
      tw__proto_events_close(&b);
      if (send_all(fd, b.data, b.len) != 0) {
        fprintf(stderr, "ingest_load: send failed\n");
        return 1;
      }
      tw__proto_buf_reset(&b);
      in_frame = 0;
      read_acks(fd, 0, 0);
    }
    if (tick) {
      int64_t due = t0 + (int64_t)((double)n / (double)rate * 1e9);
      int64_t wait = due - now_ns();
      if (wait > 0) {
        struct timespec ts = {wait / 1000000000, wait % 1000000000};
        nanosleep(&ts, NULL);
      }
    }
  }
  tw__proto_put_goodbye(&b, PROTO_VERSION, seq - 1);
  send_all(fd, b.data, b.len);
  uint64_t acked = read_acks(fd, 1, seq);
  int64_t t1 = now_ns();
  double secs = (double)(t1 - t0) / 1e9;
  printf("load_events: %llu\n", (unsigned long long)(seq - 1));
  printf("load_seconds: %.3f\n", secs);
  printf("load_events_per_s: %.0f\n", (double)(seq - 1) / secs);
  close(fd);
  tw__proto_buf_fini(&b);
  return acked >= seq ? 0 : 1;
}
