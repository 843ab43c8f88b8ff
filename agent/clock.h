/*
 * clock - timestamps for the recording path, and their conversion to
 * monotonic nanoseconds on the sender thread.
 *
 * clock_gettime() through the vDSO costs 20-30 ns on a kvm-clock guest,
 * most of an event's budget; reading the CPU's time-stamp counter costs a
 * third of that. Where the counter is invariant (the CPU flags constant_tsc
 * and nonstop_tsc: it ticks at one rate through frequency and sleep
 * states), a record carries the raw counter and the sender converts it: at
 * every drain it takes an anchor, a (counter, CLOCK_MONOTONIC) pair read
 * back to back, and maps a record's counter by linear interpolation between
 * the two anchors around it. The mapping is continuous and non-decreasing,
 * equal to CLOCK_MONOTONIC at every anchor, and only records stamped before
 * the newest anchor are drained, so none is extrapolated forward. Elsewhere
 * a record carries CLOCK_MONOTONIC itself, tagged (CLOCK_MONO_TAG), and the
 * mapping strips the tag.
 *
 * The kernel's own clocksource is not required to be "tsc": a kvm-clock
 * guest reads the same counter through the hypervisor's scale and offset.
 * What can still go wrong, and the guard for each:
 *
 *  - The counters of two CPUs disagree (a hypervisor or firmware that does
 *    not synchronise them). A thread that moves between such CPUs would
 *    stamp times that go backwards. The sender never lets a ring's times
 *    go backwards (tw__clock_map_ring() holds each ring to its previous time),
 *    so durations on one thread stay non-negative; and a step back of more
 *    than CLOCK_SKEW_NS is proof of such counters, upon which every
 *    recording thread of the process moves to CLOCK_MONOTONIC for good.
 *    Records already stamped keep their counter values and are still
 *    mapped; the tag tells the two kinds apart.
 *  - The kernel itself rejected the counter and keeps time with another
 *    timer (hpet, acpi_pm): the automatic choice is then CLOCK_MONOTONIC.
 *  - A hypervisor traps the counter read: the automatic choice measures
 *    both reads once and keeps the cheaper.
 *  - The sender is preempted between the two reads of an anchor: an anchor
 *    whose counter reads are more than CLOCK_ANCHOR_SPREAD_NS apart is
 *    taken again, and kept out of the map when every try is that wide.
 *  - Long idle gaps, drift between the counter and an NTP-slewed
 *    CLOCK_MONOTONIC, a counter whose rate changes (live migration): each
 *    segment between two anchors has its own slope, so the mapping follows
 *    the drift and is exact at every anchor; within a long segment the
 *    error is the drift over that segment, and times stay in order.
 *
 * TASKWATCH_CLOCK=tsc|monotonic|auto forces the choice (auto, the default,
 * is the rule above); see taskwatch.h.
 */
#ifndef TW_CLOCK_H
#define TW_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define CLOCK_HAVE_COUNTER 1
#else
#define CLOCK_HAVE_COUNTER 0
#endif

/* ---- the choice --------------------------------------------------------- */

typedef enum clock_source {
  CLOCK_SOURCE_MONOTONIC = 0,
  CLOCK_SOURCE_TSC = 1
} clock_source;

/* What TASKWATCH_CLOCK asks for. */
typedef enum clock_request {
  CLOCK_REQUEST_AUTO = 0,
  CLOCK_REQUEST_TSC,
  CLOCK_REQUEST_MONOTONIC
} clock_request;

/* What the automatic choice is made from; tw__clock_init() gathers them. */
typedef struct clock_facts {
  bool have_counter;   /* built for a CPU with a time-stamp counter */
  bool invariant;      /* constant_tsc and nonstop_tsc, or CPUID's bit */
  bool kernel_refuses; /* the kernel keeps time with a non-counter timer */
  bool counter_slow;   /* a counter read costs no less than clock_gettime */
} clock_facts;

/* Parses a TASKWATCH_CLOCK value: NULL, "" and "auto" are AUTO, then "tsc"
 * and "monotonic". Returns 0, or -1 for anything else (*out is then AUTO). */
int tw__clock_parse_request(const char *value, clock_request *out);

/* From the text of /proc/cpuinfo: 1 when every "flags" line holds both
 * constant_tsc and nonstop_tsc, 0 when one lacks either, -1 when the text
 * has no flags line at all (then ask CPUID). */
int tw__clock_cpuinfo_invariant(const char *cpuinfo);

/* From the name in .../clocksource0/current_clocksource (trailing newline
 * allowed): true when the kernel keeps time with a timer that is not the
 * counter nor a paravirtual clock built on it, which it only does when it
 * found the counter unusable. */
bool tw__clock_kernel_refuses(const char *clocksource);

/* The decision: a forced choice is honoured when the build can read a
 * counter; AUTO takes the counter when it is invariant, the kernel has not
 * refused it and it is cheaper to read than the clock. */
clock_source tw__clock_decide(clock_request request, const clock_facts *facts);

/* Decides once per process, from TASKWATCH_CLOCK and this machine;
 * idempotent and thread-safe. */
void tw__clock_init(void);

/* The clock the recording path reads now (it may move from the counter to
 * CLOCK_MONOTONIC once, see above). */
clock_source tw__clock_current(void);
const char *tw__clock_source_name(clock_source source);

/* ---- the recording path ------------------------------------------------- */

/* Records stamped with CLOCK_MONOTONIC carry this bit; counter values stay
 * below it (tw__clock_init() refuses a counter that does not). */
#define CLOCK_MONO_TAG ((int64_t)1 << 62)

/* Nonzero while records carry the counter. Alone in its cache line: every
 * record reads it, and it is written at most twice. */
typedef struct clock_flag {
  _Alignas(64) _Atomic int counter;
  char pad[64 - sizeof(int)];
} clock_flag;
extern clock_flag tw__clock_use;

/* CLOCK_MONOTONIC in ns. */
int64_t tw__clock_mono_ns(void);

/* The recording path's timestamp: counter ticks, or tagged monotonic ns. */
static inline int64_t tw__clock_now(void) {
#if CLOCK_HAVE_COUNTER
  if (__builtin_expect(
          atomic_load_explicit(&tw__clock_use.counter, memory_order_relaxed),
          1))
    return (int64_t)__rdtsc();
#endif
  return tw__clock_mono_ns() | CLOCK_MONO_TAG;
}

/* ---- the sender's mapping ----------------------------------------------- */

#define CLOCK_ANCHORS 1024
/* Widest gap between an anchor's two counter reads that is trusted. */
#define CLOCK_ANCHOR_SPREAD_NS 20000
/* A ring whose times step back by more than this proves counters that
 * disagree between CPUs. Far above what a map revision moves a time (the
 * anchors' own error, a few µs). */
#define CLOCK_SKEW_NS 50000

typedef struct clock_anchor {
  int64_t tick;
  int64_t ns;
} clock_anchor;

/* The sender's anchors, oldest first, strictly increasing in both fields.
 * When full, every other one is let go (the first and last stay), so the
 * history keeps covering the oldest record still waiting in a ring, at a
 * coarser grain. */
typedef struct clock_map {
  clock_anchor a[CLOCK_ANCHORS];
  size_t n;
  double slope;      /* ns per tick of the newest segment */
  int64_t ceiling;   /* monotonic ns of the newest mark or anchor */
  unsigned too_wide; /* marks in a row whose anchor was refused as wide */
  bool counter;      /* anchors read the counter (the process chose it) */
  bool skew;         /* a ring's times stepped back by more than the bound */
} clock_map;

/* Starts a map with its first anchor. Call before any record is stamped
 * that the map will convert. */
void tw__clock_map_init(clock_map *m);

/* Appends an anchor when it is past the last one in both fields (thinning
 * the history when full); returns whether it was taken. */
bool tw__clock_map_add(clock_map *m, clock_anchor x);

/* Takes a new anchor and returns the drain limit: every record stamped
 * before the call has a time at most this (comparable with raw record
 * times), and every time at most this maps without extrapolation. Moves
 * the process to CLOCK_MONOTONIC when tw__clock_map_ring() found skew. */
int64_t tw__clock_map_mark(clock_map *m);

/* The anchor's ns plus the ticks since it at `slope`. Only the offset goes
 * through a double: a monotonic time past 2^53 ns (104 days of uptime)
 * would lose its last bits there, and the mapping its exactness at every
 * anchor. */
static inline int64_t tw__clock_along(const clock_anchor *lo, double slope,
                                      int64_t tick) {
  double offset = (double)(tick - lo->tick) * slope;
  /* Only a garbage counter gets this far; keep the result defined. */
  if (offset >= (double)(CLOCK_MONO_TAG - 1 - lo->ns))
    return CLOCK_MONO_TAG - 1;
  return lo->ns + (int64_t)offset;
}

/* tw__clock_map_ns() of a counter time before the newest segment. */
int64_t tw__clock_map_older(const clock_map *m, int64_t time);

/* Monotonic ns of a record time. Inline (the sender calls it for every
 * record): most records fall in the newest segment, mapped without a
 * search. */
static inline int64_t tw__clock_map_ns(const clock_map *m, int64_t time) {
  if (time >= CLOCK_MONO_TAG)
    return time & (CLOCK_MONO_TAG - 1);
  /* Before the first anchor (or with no rate yet) only a counter that
   * disagrees with the sender's can stamp; pin it to the anchor. */
  if (m->n < 2 || time <= m->a[0].tick)
    return m->a[0].ns;
  const clock_anchor *base = &m->a[m->n - 2];
  if (time >= base->tick)
    return tw__clock_along(base, m->slope, time);
  return tw__clock_map_older(m, time);
}

/* Monotonic ns of a ring's next record, drained after the newest mark:
 * never below *floor, the ring's previous one, which it then becomes, nor
 * above the mark's own time (only a counter ahead of the sender's can
 * map there). Notes skew in the map. */
static inline int64_t tw__clock_map_ring(clock_map *m, int64_t time,
                                         int64_t *floor) {
  int64_t ns = tw__clock_map_ns(m, time);
  if (ns > m->ceiling)
    ns = m->ceiling;
  if (ns < *floor) {
    if (time < CLOCK_MONO_TAG && (*floor - ns) > CLOCK_SKEW_NS)
      m->skew = true;
    ns = *floor;
  }
  *floor = ns;
  return ns;
}

#endif /* TW_CLOCK_H */
