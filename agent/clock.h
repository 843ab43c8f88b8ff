/*
 * clock - timestamps for the recording path, and their conversion to
 * monotonic nanoseconds on the sender thread.
 *
 * clock_gettime() through the vDSO costs about 20-28 ns here, most of an
 * event's budget. Where the CPU has an invariant time-stamp counter and the
 * kernel itself keeps time with it, a record carries the raw counter
 * instead (a few ns to read), and the sender converts it: at every drain it
 * takes an anchor, a (counter, CLOCK_MONOTONIC) pair, and maps a record's
 * counter by linear interpolation between the two anchors around it. The
 * mapping is continuous and increasing, equal to CLOCK_MONOTONIC at every
 * anchor, so times stay in order and durations stay monotonic durations;
 * every record drained is older than the newest anchor, so no record is
 * ever extrapolated forward. Without such a counter clock_now() is
 * CLOCK_MONOTONIC in ns and the mapping is the identity.
 */
#ifndef TW_CLOCK_H
#define TW_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define CLOCK_HAVE_COUNTER 1
#else
#define CLOCK_HAVE_COUNTER 0
#endif

/* Set once by clock_init(): records carry the raw counter. */
extern int clock_counter;

/* Decides between the counter and clock_gettime(); idempotent. */
void clock_init(void);

/* CLOCK_MONOTONIC in ns. */
int64_t clock_mono_ns(void);

/* The recording path's timestamp: counter ticks or monotonic ns. */
static inline int64_t clock_now(void) {
#if CLOCK_HAVE_COUNTER
  if (__builtin_expect(clock_counter, 1))
    return (int64_t)__rdtsc();
#endif
  return clock_mono_ns();
}

#define CLOCK_ANCHORS 1024

typedef struct clock_anchor {
  int64_t tick;
  int64_t ns;
} clock_anchor;

/* The sender's anchors, oldest first. When full, every other one is let go
 * (the first and last stay), so the history keeps covering the oldest
 * record still waiting in a ring, at a coarser grain. */
typedef struct clock_map {
  clock_anchor a[CLOCK_ANCHORS];
  size_t n;
  double slope; /* ns per tick of the newest segment */
} clock_map;

void clock_map_init(clock_map *m);
/* Takes a new anchor and returns its tick: every record stamped before
 * the call has a tick at most this. */
int64_t clock_map_mark(clock_map *m);
/* Monotonic ns of a tick. */
int64_t clock_map_ns(const clock_map *m, int64_t tick);

#endif /* TW_CLOCK_H */
