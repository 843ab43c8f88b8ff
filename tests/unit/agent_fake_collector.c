/*
 * agent_fake_collector - see the header. One thread polls the listener, the
 * connections and a wakeup pipe; commands from the test (kill, restart)
 * are flags under the mutex plus a byte on the pipe.
 */
#include "agent_fake_collector.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FAKE_MAX_CLIENTS 32
#define FAKE_MAX_INSTANCES 32

typedef struct client {
  int fd;
  fake_instance *inst;
  uint8_t *buf;
  size_t len;
  size_t cap;
  uint16_t version; /* welcomed at */
} client;

struct fake_collector {
  char dir[64];
  char path[128];
  char url[140];
  pthread_t thread;
  pthread_mutex_t mu;
  int wake[2];
  int listen_fd;
  client clients[FAKE_MAX_CLIENTS];
  fake_instance *instances[FAKE_MAX_INSTANCES];
  size_t ninstances;
  bool hold;
  bool kill_req;
  bool restart_req;
  bool quit;
  uint64_t received;
  uint64_t hangups;
  char refusal[128]; /* "" when not refusing */
  uint16_t welcome_version;
  uint32_t ack_hold_ms; /* the hold_ms of its acks (version 6) */
};

static int listen_at(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  unlink(path);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(fd, 64) != 0) {
    perror("fake collector listen");
    abort();
  }
  return fd;
}

static void send_all(int fd, const proto_buf *b) {
  size_t off = 0;
  while (off < b->len) {
    ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    off += (size_t)n;
  }
}

static void send_ack(fake_collector *fc, client *c, uint64_t next_seq,
                     int type) {
  proto_buf b;
  tw__proto_buf_init(&b);
  if (type == PROTO_WELCOME) {
    proto_welcome w = {fc->welcome_version, next_seq, PROTO_FRAME_MAX};
    c->version = w.version ? w.version : PROTO_VERSION;
    tw__proto_put_welcome(&b, &w);
  } else {
    proto_ack a = {next_seq, fc->ack_hold_ms};
    tw__proto_put_ack(&b, c->version, &a);
  }
  send_all(c->fd, &b);
  tw__proto_buf_fini(&b);
}

static char *copy(proto_str s, size_t *len) {
  char *p = malloc(s.len + 1);
  memcpy(p, s.ptr ? s.ptr : "", s.len);
  p[s.len] = '\0';
  *len = s.len;
  return p;
}

static fake_instance *find_instance(fake_collector *fc, const proto_hello *h) {
  for (size_t i = 0; i < fc->ninstances; i++)
    if (!fc->instances[i]->forgotten &&
        memcmp(fc->instances[i]->id, h->instance, PROTO_INSTANCE_SIZE) == 0)
      return fc->instances[i];
  fake_instance *in = calloc(1, sizeof(*in));
  memcpy(in->id, h->instance, PROTO_INSTANCE_SIZE);
  in->pid = h->pid;
  memcpy(in->service, h->service.ptr, h->service.len);
  in->next_seq = 1;
  fc->instances[fc->ninstances++] = in;
  return in;
}

static void free_event(fake_event *e) {
  free(e->text);
  free(e->message);
  free(e->detail);
}

static void add_event(fake_instance *in, const proto_event *ev, uint64_t seq) {
  if (in->count == in->cap) {
    in->cap = in->cap ? in->cap * 2 : 1024;
    in->events = realloc(in->events, in->cap * sizeof(*in->events));
  }
  fake_event *e = &in->events[in->count++];
  memset(e, 0, sizeof(*e));
  e->seq = seq;
  e->kind = ev->kind;
  e->mode = ev->mode;
  e->position = ev->position;
  e->string = ev->string;
  e->time_ns = ev->time_ns;
  e->task = ev->task;
  e->batch = ev->batch;
  e->other = ev->other;
  e->other2 = ev->other2;
  e->dropped_batches = ev->dropped_batches;
  e->dropped_tasks = ev->dropped_tasks;
  if (ev->kind == PROTO_EV_STRING || ev->kind == PROTO_EV_FAIL ||
      ev->kind == PROTO_EV_DROP)
    e->text = copy(ev->text, &e->text_len);
  if (ev->kind == PROTO_EV_FAIL) {
    e->message = copy(ev->message, &e->message_len);
    e->detail = copy(ev->detail, &e->detail_len);
  }
  if (ev->kind == PROTO_EV_STRING && ev->string < FAKE_MAX_STRINGS) {
    free(in->strings[ev->string]);
    size_t n;
    in->strings[ev->string] = copy(ev->text, &n);
  }
}

/* Commits what c's instance received and acks it. */
static void commit_and_ack(fake_collector *fc, client *c) {
  c->inst->committed = c->inst->count;
  c->inst->next_seq = c->inst->count + 1;
  send_ack(fc, c, c->inst->next_seq, PROTO_ACK);
}

/* Returns false when the frame is malformed (the connection is closed). */
static bool handle_events(fake_collector *fc, client *c, const proto_frame *f) {
  proto_events it;
  proto_event ev;
  fake_instance *in = c->inst;
  uint64_t have = in->events ? in->count : 0;
  uint64_t expect = have + 1; /* next sequence number to store */
  if (tw__proto_events_begin(&it, f->payload, f->payload_len, PROTO_VERSION) != 0)
    return false;
  if (it.first_seq > expect) {
    in->gaps++;
    return false;
  }
  uint64_t seq = it.first_seq;
  int rc;
  while ((rc = tw__proto_events_next(&it, &ev)) == 0) {
    fc->received++;
    if (seq < expect) {
      in->duplicates++;
    } else {
      add_event(in, &ev, seq);
      expect++;
    }
    seq++;
  }
  if (rc != 1)
    return false;
  in->frames++;
  if (!fc->hold)
    commit_and_ack(fc, c);
  return true;
}

static bool handle_frame(fake_collector *fc, client *c, const proto_frame *f) {
  proto_hello h;
  uint64_t v;
  if (c->inst == NULL) {
    if (f->type != PROTO_HELLO ||
        tw__proto_decode_hello(f->payload, f->payload_len, &h) != 0)
      return false;
    if (fc->refusal[0] != '\0') {
      proto_buf b;
      tw__proto_buf_init(&b);
      tw__proto_put_error(&b, fc->refusal);
      send_all(c->fd, &b);
      tw__proto_buf_fini(&b);
      return false;
    }
    c->inst = find_instance(fc, &h);
    c->inst->hellos++;
    send_ack(fc, c, c->inst->next_seq, PROTO_WELCOME);
    return true;
  }
  if (f->type == PROTO_EVENTS)
    return handle_events(fc, c, f);
  if (f->type == PROTO_FLUSH &&
      tw__proto_decode_flush(f->payload, f->payload_len, PROTO_VERSION, &v) ==
          0) {
    c->inst->flushes++;
    c->inst->flush_last_seq = v;
    c->inst->flush_received = c->inst->count;
    return true;
  }
  if (f->type == PROTO_GOODBYE &&
      tw__proto_decode_goodbye(f->payload, f->payload_len, PROTO_VERSION, &v) ==
          0) {
    c->inst->ended = true;
    if (!fc->hold) {
      c->inst->committed = c->inst->count;
      c->inst->next_seq = c->inst->count + 1;
    }
    send_ack(fc, c, c->inst->next_seq, PROTO_ACK);
    return true;
  }
  return false;
}

static void close_client(client *c) {
  close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
}

static void read_client(fake_collector *fc, client *c) {
  if (c->cap - c->len < 65536) {
    c->cap = c->cap ? c->cap * 2 : 1 << 17;
    c->buf = realloc(c->buf, c->cap);
  }
  ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
  if (n <= 0) {
    fc->hangups++;
    close_client(c);
    return;
  }
  c->len += (size_t)n;
  size_t at = 0;
  proto_frame f;
  int rc;
  while ((rc = tw__proto_frame_next(c->buf + at, c->len - at, 0, &f)) == 0) {
    at += f.frame_len;
    if (!handle_frame(fc, c, &f)) {
      close_client(c);
      return;
    }
  }
  if (rc < 0) {
    close_client(c);
    return;
  }
  memmove(c->buf, c->buf + at, c->len - at);
  c->len -= at;
}

/* A SIGKILL: connections and listener gone, unacked events forgotten. */
static void do_kill(fake_collector *fc) {
  for (int i = 0; i < FAKE_MAX_CLIENTS; i++)
    if (fc->clients[i].fd >= 0)
      close_client(&fc->clients[i]);
  if (fc->listen_fd >= 0)
    close(fc->listen_fd);
  fc->listen_fd = -1;
  for (size_t i = 0; i < fc->ninstances; i++) {
    fake_instance *in = fc->instances[i];
    while (in->count > in->committed)
      free_event(&in->events[--in->count]);
  }
}

static void accept_client(fake_collector *fc) {
  int fd = accept4(fc->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    return;
  for (int i = 0; i < FAKE_MAX_CLIENTS; i++)
    if (fc->clients[i].fd < 0) {
      fc->clients[i].fd = fd;
      return;
    }
  close(fd);
}

void (*fake_thread_start)(void);

static void *fake_main(void *arg) {
  fake_collector *fc = arg;
  if (fake_thread_start != NULL)
    fake_thread_start();
  struct pollfd p[FAKE_MAX_CLIENTS + 2];
  int who[FAKE_MAX_CLIENTS + 2];
  for (;;) {
    pthread_mutex_lock(&fc->mu);
    if (fc->quit) {
      do_kill(fc);
      pthread_mutex_unlock(&fc->mu);
      return NULL;
    }
    if (fc->kill_req)
      do_kill(fc);
    if (fc->restart_req && fc->listen_fd < 0)
      fc->listen_fd = listen_at(fc->path);
    fc->kill_req = fc->restart_req = false;
    int n = 0;
    p[n] = (struct pollfd){fc->wake[0], POLLIN, 0};
    who[n++] = -2;
    if (fc->listen_fd >= 0) {
      p[n] = (struct pollfd){fc->listen_fd, POLLIN, 0};
      who[n++] = -1;
    }
    for (int i = 0; i < FAKE_MAX_CLIENTS; i++)
      if (fc->clients[i].fd >= 0) {
        p[n] = (struct pollfd){fc->clients[i].fd, POLLIN, 0};
        who[n++] = i;
      }
    pthread_mutex_unlock(&fc->mu);
    if (poll(p, (nfds_t)n, 100) <= 0)
      continue;
    pthread_mutex_lock(&fc->mu);
    for (int k = 0; k < n; k++) {
      if (p[k].revents == 0)
        continue;
      if (who[k] == -2) {
        char b[64];
        (void)!read(fc->wake[0], b, sizeof(b));
      } else if (who[k] == -1 && fc->listen_fd >= 0 && !fc->kill_req) {
        accept_client(fc);
      } else if (who[k] >= 0 && fc->clients[who[k]].fd >= 0 && !fc->kill_req) {
        read_client(fc, &fc->clients[who[k]]);
      }
    }
    pthread_mutex_unlock(&fc->mu);
  }
}

static void poke(fake_collector *fc) {
  (void)!write(fc->wake[1], "x", 1);
}

fake_collector *fake_start(void) {
  fake_collector *fc = calloc(1, sizeof(*fc));
  snprintf(fc->dir, sizeof(fc->dir), "/tmp/twfake.XXXXXX");
  if (mkdtemp(fc->dir) == NULL)
    abort();
  snprintf(fc->path, sizeof(fc->path), "%s/c.sock", fc->dir);
  snprintf(fc->url, sizeof(fc->url), "unix:%s", fc->path);
  /* Error-checking, so fake_free() can let go of a lock a failed
   * assertion left held by the test thread. */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&fc->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  if (pipe2(fc->wake, O_CLOEXEC) != 0)
    abort();
  for (int i = 0; i < FAKE_MAX_CLIENTS; i++)
    fc->clients[i].fd = -1;
  fc->listen_fd = listen_at(fc->path);
  pthread_create(&fc->thread, NULL, fake_main, fc);
  return fc;
}

void fake_free(fake_collector *fc) {
  if (fc == NULL)
    return;
  pthread_mutex_unlock(&fc->mu); /* EPERM unless a failed test held it */
  pthread_mutex_lock(&fc->mu);
  fc->quit = true;
  pthread_mutex_unlock(&fc->mu);
  poke(fc);
  pthread_join(fc->thread, NULL);
  for (size_t i = 0; i < fc->ninstances; i++) {
    fake_instance *in = fc->instances[i];
    for (size_t k = 0; k < in->count; k++)
      free_event(&in->events[k]);
    for (int k = 0; k < FAKE_MAX_STRINGS; k++)
      free(in->strings[k]);
    free(in->events);
    free(in);
  }
  close(fc->wake[0]);
  close(fc->wake[1]);
  unlink(fc->path);
  rmdir(fc->dir);
  pthread_mutex_destroy(&fc->mu);
  free(fc);
}

const char *fake_url(const fake_collector *fc) {
  return fc->url;
}

void fake_kill(fake_collector *fc) {
  pthread_mutex_lock(&fc->mu);
  do_kill(fc);
  pthread_mutex_unlock(&fc->mu);
  poke(fc);
}

void fake_forget(fake_collector *fc) {
  pthread_mutex_lock(&fc->mu);
  do_kill(fc);
  for (size_t i = 0; i < fc->ninstances; i++)
    fc->instances[i]->forgotten = true;
  pthread_mutex_unlock(&fc->mu);
  poke(fc);
}

void fake_restart(fake_collector *fc) {
  pthread_mutex_lock(&fc->mu);
  fc->restart_req = true;
  pthread_mutex_unlock(&fc->mu);
  poke(fc);
}

void fake_hold_acks(fake_collector *fc, bool hold) {
  pthread_mutex_lock(&fc->mu);
  fc->hold = hold;
  for (int i = 0; !hold && i < FAKE_MAX_CLIENTS; i++) {
    client *c = &fc->clients[i];
    if (c->fd >= 0 && c->inst != NULL && c->inst->committed < c->inst->count)
      commit_and_ack(fc, c);
  }
  pthread_mutex_unlock(&fc->mu);
}

void fake_refuse(fake_collector *fc, const char *reason) {
  pthread_mutex_lock(&fc->mu);
  snprintf(fc->refusal, sizeof(fc->refusal), "%s", reason ? reason : "");
  pthread_mutex_unlock(&fc->mu);
}

void fake_ack_hold(fake_collector *fc, uint32_t hold_ms) {
  pthread_mutex_lock(&fc->mu);
  fc->ack_hold_ms = hold_ms;
  pthread_mutex_unlock(&fc->mu);
}

void fake_welcome_version(fake_collector *fc, uint16_t version) {
  pthread_mutex_lock(&fc->mu);
  fc->welcome_version = version;
  pthread_mutex_unlock(&fc->mu);
}

uint64_t fake_hangups(fake_collector *fc) {
  return fc->hangups;
}

void fake_lock(fake_collector *fc) {
  pthread_mutex_lock(&fc->mu);
}
void fake_unlock(fake_collector *fc) {
  pthread_mutex_unlock(&fc->mu);
}
size_t fake_instance_count(fake_collector *fc) {
  return fc->ninstances;
}
fake_instance *fake_instance_at(fake_collector *fc, size_t i) {
  return i < fc->ninstances ? fc->instances[i] : NULL;
}
const char *fake_string(fake_collector *fc, size_t instance, uint32_t id) {
  fake_instance *in = fake_instance_at(fc, instance);
  return in != NULL && id < FAKE_MAX_STRINGS ? in->strings[id] : NULL;
}
uint64_t fake_received(fake_collector *fc) {
  return fc->received;
}

bool fake_wait(fake_collector *fc, bool (*pred)(fake_collector *, void *),
               void *arg, int timeout_ms) {
  bool ok = false;
  for (int waited = 0;; waited += 5) {
    pthread_mutex_lock(&fc->mu);
    ok = pred(fc, arg);
    pthread_mutex_unlock(&fc->mu);
    if (ok || waited >= timeout_ms)
      return ok;
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
  }
}
