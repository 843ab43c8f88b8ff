/*
 * stop - counters, the watchdog thread and the claim on the last line.
 */
#include "stop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static atomic_uint_fast64_t received, committed;
static atomic_int begun, last_line_claimed;

void stop_count_received(uint64_t events) {
  atomic_fetch_add(&received, events);
}

void stop_count_committed(uint64_t events) {
  atomic_fetch_add(&committed, events);
}

uint64_t stop_uncommitted(void) {
  uint64_t c = atomic_load(&committed), r = atomic_load(&received);
  return r > c ? r - c : 0;
}

int stop_last_line(void) {
  return atomic_exchange(&last_line_claimed, 1) == 0;
}

static void *watchdog(void *arg) {
  (void)arg;
  struct timespec rest = {STOP_BOUND_MS / 1000,
                          (STOP_BOUND_MS % 1000) * 1000000L};
  /* Relative, from stop_begin(): a signal handler that interrupts the
   * sleep leaves the rest in `rest`. */
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &rest, &rest) != 0)
    ;
  /* The normal end has written its line and is returning from main. */
  if (!stop_last_line())
    return NULL;
  uint64_t left = stop_uncommitted();
  log_msg(left ? LOG_ERROR : LOG_WARN,
          "stopped at the shutdown bound seconds=%d uncommitted=%llu "
          "note=\"%s\"",
          STOP_BOUND_S, (unsigned long long)left,
          left ? STOP_UNCOMMITTED_NOTE : "every event received was committed");
  _exit(left ? 1 : 0);
}

void stop_begin(void) {
  if (atomic_exchange(&begun, 1))
    return;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, watchdog, NULL) != 0)
    log_msg(LOG_WARN, "shutdown watchdog not started: the stop is bounded "
                      "only by the store");
  pthread_attr_destroy(&attr);
}
