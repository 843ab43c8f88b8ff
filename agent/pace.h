/*
 * pace - when the sender drains the rings next. It decides at each drain
 * how long to sleep, from what it saw: the rate
 * records arrive at (their mean over about the last PACE_RATE_MS), and
 * how full the fullest ring was when the drain began. Every wakeup, drain,
 * write and ack costs the sender some microseconds whatever it carries, so it
 * sleeps until a drain would take about PACE_BATCH records, but never so long
 * that a ring would pass PACE_FILL of its size at the rate it filled since the
 * last drain, and never longer than PACE_FLOW_MS while records come
 * (PACE_LIVE_MS at a high rate), which bounds how late an event reaches the
 * collector, and PACE_MAX_MS while none do; a collector's advice (hold_ms,
 * below) may lengthen the first two up to PACE_HOLD_MAX_MS. A ring found past
 * PACE_FILL_NOW is drained again at once.
 *
 * A burst that comes faster than the pace foresaw (after a quiet spell)
 * must not wait for the timer: a recording thread whose ring passes
 * 1/PACE_NUDGE_DEN of its size while the sender sleeps for PACE_ASLEEP_MS
 * or more wakes it (tw__pace_nudge()). It looks at that mark on reserve()'s
 * slow path only (record.c), and once past it looks again only when the
 * ring seems full, so a ring's worth of records costs one system call at
 * most, and none while the sender keeps up or is awake already (a flood
 * is drained at once).
 *
 * Pure arithmetic, tested on its own (tests/unit/test_resend.c).
 */
#ifndef TW_AGENT_PACE_H
#define TW_AGENT_PACE_H

#include <stdint.h>

#define PACE_BATCH 8192.0   /* records a drain aims to take */
#define PACE_FILL 0.125     /* the fullest ring's share at a drain, at most */
#define PACE_FILL_NOW 0.375 /* past this, drain again at once */
#define PACE_MIN_MS 1u
#define PACE_MAX_MS 100u
/* The rate is the mean over about PACE_RATE_MS: long enough that a
 * burst of requests counts as its share of it; a flood of k times
 * PACE_LIVE_RATE from a quiet start passes PACE_LIVE_RATE in the mean
 * after about PACE_RATE_MS / k (sooner through a ring past PACE_FILL,
 * whose last interval's rate counts then). */
#define PACE_RATE_MS 240u
#define PACE_RATE_SLOTS 8u
#define PACE_NUDGE_DEN 4u /* a ring past 1/this wakes a sleeping sender */
#define PACE_ASLEEP_MS 5u /* a wait this long or longer is asleep */
/* Past PACE_LIVE_RATE records a ms, drains come PACE_LIVE_MS apart at
 * most, and each writes what it took (the next drain is further than
 * PACE_WRITE_LIVE_MS away, tw__pace_hold()): the collector's
 * event-to-commit target (p99 100 ms at 100k events/s) leaves the agent
 * about 20 ms, drain and write together. Drains 10 ms apart, each chunk
 * written at every other one, kept events as long at twice the wakeups,
 * on a VM where one costs 50-75 us of CPU: at 50k events a second
 * (bench/agent_overhead --rate 5000) 99 wakeups a second and 154 ns an
 * event against 50 and 93, with the same p99 (bench/ingest steady, 78.8
 * against 76.8 ms). A ring's fill still brings drains sooner at higher
 * rates. Below the rate, PACE_FLOW_MS apart while records come, up to
 * PACE_MAX_MS when none do. */
#define PACE_LIVE_RATE 20.0
#define PACE_LIVE_MS 20u
/* Below PACE_LIVE_RATE, while records come (the last drain took some),
 * drains come PACE_FLOW_MS apart at most, and each writes what it took
 * (tw__pace_hold()): an event waits in the agent about PACE_FLOW_MS at
 * most, which with the collector's 50 ms batches keeps the p99 within the
 * target when many agents each send a few thousand events a second
 * (bench/ingest's `fleet` load: 16 agents, 100k events/s in all, p99
 * 250 ms when drains came 100 ms apart and each chunk waited a drain
 * more). It costs about 33 wakeups a second while records come, each
 * reading an ack, draining and writing (bench/agent_overhead at 10k
 * events/s: 125-360 ns an event on a VM where a bare wakeup costs
 * 15-34 us, against 100-160 ns at 10 drains a second); an idle agent's
 * sender wakes PACE_MAX_MS apart.
 *
 * Both bounds are for a collector whose batches fill soon. One whose
 * batches wait for their commit anyway says how long in its ACKs
 * (hold_ms, protocol version 6; docs/collector.md "Transactions"): 250 ms
 * while it takes fewer than about 16,000 events a second from all its
 * agents, the time its batch takes to fill up to about 82,000 (250 down
 * to 50 ms). The drains may then come up to that far apart
 * (PACE_HOLD_MAX_MS at most): a sixth of the wakeups below the first
 * rate, and at 50,000 events a second about a quarter (a drain every
 * 80 ms instead of 20). The ring's fill still bounds the wait. */
#define PACE_FLOW_MS 30u
/* The longest hold the sender takes from a collector's advice: an event
 * then reaches the collector within about a quarter of a second, and a
 * collector at its defaults commits it within another (its batches of
 * few events wait as long), so `top` shows it within a second. */
#define PACE_HOLD_MAX_MS 250u

/* The last chunk of the resend buffer (sender.c) is held back, to take
 * the next drains' events too, until it is full or PACE_WRITE_MS old.
 * While acks keep up (no more than PACE_WRITE_LIVE_CHUNKS chunks in use)
 * the hold is PACE_WRITE_LIVE_MS at most, and none when the next drain
 * comes later than that (PACE_LIVE_MS and PACE_FLOW_MS apart do): the
 * drain that opened the chunk writes it. Drains that a filling ring
 * brings closer share a write. */
#define PACE_WRITE_MS 100u
#define PACE_WRITE_LIVE_MS 10u
#define PACE_WRITE_LIVE_CHUNKS 4u

typedef struct pace {
  double rate;      /* records per ms, the mean of about PACE_RATE_MS */
  uint64_t last_ms; /* when the previous drain began; 0: none yet */
  /* Records taken by the drains that began in each slot of
   * PACE_RATE_MS / PACE_RATE_SLOTS ms (the records came in the interval
   * before: its end is the drain's now_ms), which slot (now_ms / its
   * length) each is, and when the first of those intervals began. */
  uint64_t slot_taken[PACE_RATE_SLOTS];
  uint64_t slot_epoch[PACE_RATE_SLOTS];
  uint64_t slot_from[PACE_RATE_SLOTS];
  double now_fill_rate; /* peak_fill / dt of a drain that returned 0 */
} pace;

/* After a drain that began at now_ms and took `taken` records, the
 * fullest ring having had `peak_fill` of it in use when it began, with
 * the collector's last ACK allowing events to wait hold_ms (0: no
 * advice): the milliseconds to wait before the next one (0: at once). */
unsigned tw__pace_next(pace *p, uint64_t now_ms, uint64_t taken,
                       double peak_fill, unsigned hold_ms);

/* Whether the open last chunk, opened at opened_ms, stays back at now_ms
 * when the next drain comes at next_ms and `in_use` chunks are in use. */
int tw__pace_hold(uint64_t now_ms, uint64_t opened_ms, uint64_t next_ms,
                  uint64_t in_use);

/* A ring of `size` slots has `fill` in use after a record that found it
 * past *soft_fill (the slots in use past which the recording thread looks
 * at the tail again): updates *soft_fill, the mark while the ring is below
 * it and its size once past it, and returns 1 when the thread must wake
 * the sender: the ring just passed the mark while the sender is asleep. */
int tw__pace_nudge(uint64_t fill, uint64_t size, uint64_t *soft_fill,
                   int asleep);
/* The first *soft_fill of a ring of `size` slots. */
static inline uint64_t tw__pace_nudge_mark(uint64_t size) {
  return size / PACE_NUDGE_DEN;
}

#endif /* TW_AGENT_PACE_H */
