/*
 * pace - when the sender drains the rings next. Producers never wake the
 * sender (that would be a system call on the recording path), so it
 * decides at each drain how long to sleep, from what it saw: the rate
 * records arrive at, and how full the fullest ring was when the drain
 * began (the rate falls in the estimate over about a second, rises at
 * once). Every wakeup, drain, write and ack costs the sender some
 * microseconds whatever it carries, so it sleeps until a drain would take
 * about PACE_BATCH records, but never so long that a ring would pass
 * PACE_FILL of its size at the rate it filled since the last drain, and
 * never longer than PACE_MAX_MS, which bounds how late an event reaches
 * the collector and how much a burst after a quiet spell can put in a
 * ring before the sender looks (the default budget's first rings hold a
 * 50 ms burst at 100,000 events/s). A ring found past PACE_FILL_NOW is
 * drained again at once. Pure arithmetic, tested on its own
 * (tests/unit/test_resend.c).
 */
#ifndef TW_AGENT_PACE_H
#define TW_AGENT_PACE_H

#include <stdint.h>

#define PACE_BATCH 2048.0  /* records a drain aims to take */
#define PACE_FILL 0.0625   /* the fullest ring's share at a drain, at most */
#define PACE_FILL_NOW 0.25 /* past this, drain again at once */
#define PACE_MIN_MS 1u
#define PACE_MAX_MS 50u
#define PACE_DECAY_MS 2000.0 /* a falling rate estimate loses dt/this */

typedef struct pace {
  double rate;      /* records per ms, smoothed */
  uint64_t last_ms; /* when the previous drain began; 0: none yet */
} pace;

/* After a drain that began at now_ms and took `taken` records, the
 * fullest ring having had `peak_fill` of it in use when it began: the
 * milliseconds to wait before the next one (0: at once). */
unsigned tw__pace_next(pace *p, uint64_t now_ms, uint64_t taken,
                       double peak_fill);

#endif /* TW_AGENT_PACE_H */
