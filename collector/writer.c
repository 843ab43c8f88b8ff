/*
 * writer - a mutex-protected queue into the thread, another out of it.
 */
#include "writer.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "log.h"
#include "stop.h"
#include "xalloc.h"

/* How often a failed transaction is retried (a full disk may get room, a
 * lock be released), until writer_abort(). */
#define RETRY_MS 1000

typedef struct node {
  struct node *next;
  wbatch *batch;
} node;

struct writer {
  store *store;
  uv_async_t async;
  void (*done)(wbatch *b, void *arg);
  void *arg;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake; /* on CLOCK_MONOTONIC */
  node *in_head, *in_tail;
  node *out_head, *out_tail;
  int stopping;
  int aborted;
  size_t in_flight; /* loop thread only */
  int nudge;        /* eventfd written when a batch is done, or -1 */
  hist latency;     /* writer thread while it runs */
};

static void push(node **head, node **tail, wbatch *b) {
  node *n = xmalloc(sizeof(*n));
  n->next = NULL;
  n->batch = b;
  if (*tail)
    (*tail)->next = n;
  else
    *head = n;
  *tail = n;
}

static wbatch *pop(node **head, node **tail) {
  node *n = *head;
  if (n == NULL)
    return NULL;
  *head = n->next;
  if (*head == NULL)
    *tail = NULL;
  wbatch *b = n->batch;
  free(n);
  return b;
}

/* Waits RETRY_MS or until writer_abort(); returns whether aborted. */
static int wait_retry(writer *w) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += RETRY_MS / 1000;
  until.tv_nsec += (RETRY_MS % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&w->lock);
  while (!w->aborted &&
         pthread_cond_timedwait(&w->wake, &w->lock, &until) != ETIMEDOUT)
    ;
  int aborted = w->aborted;
  pthread_mutex_unlock(&w->lock);
  return aborted;
}

static void write_batch(writer *w, wbatch *b) {
  while (store_write(w->store, b) != 0) {
    if (wait_retry(w)) {
      b->failed = 1;
      log_msg(LOG_ERROR, "batch given up events=%llu",
              (unsigned long long)b->events);
      return;
    }
  }
  stop_count_committed(b->events);
  for (uint32_t i = 0; i < b->nsamples; i++)
    hist_add(&w->latency, (b->committed_ns - b->samples[i]) / 1000);
}

static void *thread_main(void *arg) {
  writer *w = arg;
  pthread_setname_np(pthread_self(), "tw-writer"); /* top -H, perf */
  pthread_mutex_lock(&w->lock);
  for (;;) {
    wbatch *b = pop(&w->in_head, &w->in_tail);
    if (b == NULL) {
      if (w->stopping)
        break;
      pthread_cond_wait(&w->wake, &w->lock);
      continue;
    }
    pthread_mutex_unlock(&w->lock);
    write_batch(w, b);
    pthread_mutex_lock(&w->lock);
    push(&w->out_head, &w->out_tail, b);
    uv_async_send(&w->async);
    if (w->nudge >= 0) {
      uint64_t one = 1;
      (void)!write(w->nudge, &one, sizeof(one));
    }
  }
  int aborted = w->aborted;
  pthread_mutex_unlock(&w->lock);
  /* The tasks still held become rows, so the stopped collector's store
   * shows them to readers; if that fails the next start writes them. */
  if (!aborted && store_settle(w->store) != 0)
    log_msg(LOG_WARN, "tasks in flight left to the next start");
  return NULL;
}

static void on_async(uv_async_t *handle) {
  writer *w = handle->data;
  for (;;) {
    pthread_mutex_lock(&w->lock);
    wbatch *b = pop(&w->out_head, &w->out_tail);
    pthread_mutex_unlock(&w->lock);
    if (b == NULL)
      return;
    assert(w->in_flight > 0);
    w->in_flight--;
    w->done(b, w->arg);
  }
}

/* The close callback of a writer whose thread could not start. */
static void free_unstarted(uv_handle_t *h) {
  writer *w = h->data;
  if (w->nudge >= 0)
    close(w->nudge);
  free(w);
}

writer *writer_start(store *s, uv_loop_t *loop,
                     void (*done)(wbatch *b, void *arg), void *arg) {
  writer *w = xcalloc(1, sizeof(*w));
  w->store = s;
  w->done = done;
  w->arg = arg;
  w->nudge = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  hist_init(&w->latency);
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w->wake, &attr);
  pthread_condattr_destroy(&attr);
  if (uv_async_init(loop, &w->async, on_async) != 0) {
    if (w->nudge >= 0)
      close(w->nudge);
    free(w);
    return NULL;
  }
  w->async.data = w;
  if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
    uv_close((uv_handle_t *)&w->async, free_unstarted);
    return NULL;
  }
  return w;
}

void writer_submit(writer *w, wbatch *b) {
  stop_count_received(b->events);
  w->in_flight++;
  pthread_mutex_lock(&w->lock);
  push(&w->in_head, &w->in_tail, b);
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
}

size_t writer_in_flight(const writer *w) {
  return w->in_flight;
}

void writer_nap(writer *w, uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  if (w == NULL || w->nudge < 0) {
    nanosleep(&ts, NULL);
    return;
  }
  struct pollfd p = {w->nudge, POLLIN, 0};
  if (ppoll(&p, 1, &ts, NULL) > 0) {
    uint64_t n;
    (void)!read(w->nudge, &n, sizeof(n));
  }
}

static void on_close(uv_handle_t *handle) {
  writer *w = handle->data;
  wbatch *b;
  while ((b = pop(&w->out_head, &w->out_tail)) != NULL)
    wbatch_free(b);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->wake);
  if (w->nudge >= 0)
    close(w->nudge);
  free(w);
}

void writer_abort(writer *w) {
  pthread_mutex_lock(&w->lock);
  w->aborted = 1;
  pthread_cond_broadcast(&w->wake);
  pthread_mutex_unlock(&w->lock);
  store_abort(w->store);
}

void writer_stop(writer *w, hist *latency) {
  pthread_mutex_lock(&w->lock);
  w->stopping = 1;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  if (latency)
    *latency = w->latency;
  on_async(&w->async);
  uv_close((uv_handle_t *)&w->async, on_close);
}
