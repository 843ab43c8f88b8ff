/*
 * clock - see clock.h.
 */
#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if CLOCK_HAVE_COUNTER
#include <cpuid.h>
#endif

int clock_counter;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

int64_t clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The kernel's own choice says whether the counter is synchronised across
 * CPUs and stable; the CPU's invariant-TSC bit says it ticks at a constant
 * rate through power states. Both, or no counter. */
static int counter_trusted(void) {
#if CLOCK_HAVE_COUNTER
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000007u, &a, &b, &c, &d) || !(d & (1u << 8)))
    return 0;
  char source[32] = "";
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
                  "current_clocksource",
                  "r");
  if (f == NULL)
    return 0;
  if (fgets(source, sizeof(source), f) == NULL)
    source[0] = '\0';
  fclose(f);
  return strncmp(source, "tsc", 3) == 0 &&
         (source[3] == '\n' || source[3] == '\0');
#else
  return 0;
#endif
}

static void decide(void) {
  clock_counter = counter_trusted();
}

void clock_init(void) {
  pthread_once(&init_once, decide);
}

/* A (tick, ns) pair read back to back; the tick is the middle of two
 * counter reads around the clock read. Fenced, so it is not reordered
 * before the loads that follow it (the drain reads ring heads next). */
static clock_anchor take_anchor(void) {
  clock_anchor x;
#if CLOCK_HAVE_COUNTER
  if (clock_counter) {
    _mm_lfence();
    int64_t t0 = (int64_t)__rdtsc();
    x.ns = clock_mono_ns();
    int64_t t1 = (int64_t)__rdtsc();
    _mm_lfence();
    x.tick = t0 + (t1 - t0) / 2;
    return x;
  }
#endif
  x.ns = clock_mono_ns();
  x.tick = x.ns;
  return x;
}

void clock_map_init(clock_map *m) {
  m->n = 1;
  m->a[0] = take_anchor();
  m->slope = 1.0;
}

static void thin_out(clock_map *m) {
  size_t k = 1;
  for (size_t i = 2; i + 1 < m->n; i += 2)
    m->a[k++] = m->a[i];
  m->a[k++] = m->a[m->n - 1];
  m->n = k;
}

int64_t clock_map_mark(clock_map *m) {
  clock_anchor x = take_anchor();
  clock_anchor *last = &m->a[m->n - 1];
  /* Keep the map strictly increasing in both coordinates. */
  if (x.tick <= last->tick || x.ns <= last->ns)
    return x.tick > last->tick ? x.tick : last->tick;
  if (m->n == CLOCK_ANCHORS)
    thin_out(m);
  m->a[m->n++] = x;
  const clock_anchor *lo = &m->a[m->n - 2];
  m->slope = (double)(x.ns - lo->ns) / (double)(x.tick - lo->tick);
  return x.tick;
}

static int64_t interpolate(const clock_anchor *lo, const clock_anchor *hi,
                           int64_t tick) {
  double slope = (double)(hi->ns - lo->ns) / (double)(hi->tick - lo->tick);
  return lo->ns + (int64_t)((double)(tick - lo->tick) * slope);
}

int64_t clock_map_ns(const clock_map *m, int64_t tick) {
  if (!clock_counter)
    return tick;
  if (m->n == 1) /* no segment yet: the anchor alone, at nominal 1 GHz */
    return m->a[0].ns + (tick - m->a[0].tick);
  /* Most records fall in the newest segment: no search for them. */
  const clock_anchor *base = &m->a[m->n - 2];
  if (tick >= base->tick)
    return base->ns + (int64_t)((double)(tick - base->tick) * m->slope);
  if (tick <= m->a[0].tick)
    return interpolate(&m->a[0], &m->a[1], tick);
  size_t lo = 0, hi = m->n - 1; /* a[lo].tick < tick < a[hi].tick */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->a[mid].tick <= tick)
      lo = mid;
    else
      hi = mid;
  }
  return interpolate(&m->a[lo], &m->a[hi], tick);
}
