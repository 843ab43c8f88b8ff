/*
 * pace - see pace.h.
 */
#include "pace.h"

unsigned tw__pace_next(pace *p, uint64_t now_ms, uint64_t taken,
                       double peak_fill, unsigned hold_ms) {
  double dt = p->last_ms == 0       ? PACE_MAX_MS
              : now_ms > p->last_ms ? (double)(now_ms - p->last_ms)
                                    : 1.0;
  p->last_ms = now_ms;
  /* A rate that rises is taken at once (a burst must not overrun the
   * rings); one that falls is followed slowly, losing about half in a
   * second: a host that stalls (a loaded machine) catches up in a burst
   * at the rate it had before. */
  double rate = (double)taken / dt;
  if (rate >= p->rate) {
    p->rate = rate;
  } else {
    double keep = 1.0 - dt / PACE_DECAY_MS;
    p->rate = keep > 0 ? p->rate * keep : 0;
    p->rate = p->rate > rate ? p->rate : rate;
  }
  if (peak_fill > PACE_FILL_NOW)
    return 0;
  double wait = p->rate > 0 ? PACE_BATCH / p->rate : PACE_MAX_MS;
  if (peak_fill > 0) {
    double by_fill = dt * PACE_FILL / peak_fill;
    wait = by_fill < wait ? by_fill : wait;
  }
  double most = p->rate >= PACE_LIVE_RATE ? PACE_LIVE_MS
                : taken > 0               ? PACE_FLOW_MS
                                          : PACE_MAX_MS;
  /* The collector's batches wait longer than that anyway (pace.h): a
   * drain every hold_ms (PACE_MAX_MS at most) mostly lands its events in
   * the transaction they would have reached. */
  unsigned hold = hold_ms < PACE_MAX_MS ? hold_ms : PACE_MAX_MS;
  if (hold > most)
    most = hold;
  if (wait < PACE_MIN_MS)
    return PACE_MIN_MS;
  return wait > most ? (unsigned)most : (unsigned)wait;
}

int tw__pace_hold(uint64_t now_ms, uint64_t opened_ms, uint64_t next_ms,
                  uint64_t in_use) {
  uint64_t age = now_ms > opened_ms ? now_ms - opened_ms : 0;
  if (in_use > PACE_WRITE_LIVE_CHUNKS)
    return age < PACE_WRITE_MS;
  return age < PACE_WRITE_LIVE_MS && next_ms <= opened_ms + PACE_WRITE_LIVE_MS;
}

int tw__pace_nudge(uint64_t fill, uint64_t size, uint64_t *soft_fill,
                   int asleep) {
  uint64_t mark = tw__pace_nudge_mark(size);
  if (fill <= mark) {
    *soft_fill = mark;
    return 0;
  }
  if (*soft_fill != mark)
    return 0; /* past it since the last wakeup or look */
  *soft_fill = size;
  return asleep;
}
