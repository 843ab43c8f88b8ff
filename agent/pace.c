/*
 * pace - see pace.h.
 */
#include "pace.h"

_Static_assert(PACE_RATE_MS % PACE_RATE_SLOTS == 0 &&
                   PACE_RATE_MS >= PACE_RATE_SLOTS,
               "the rate's slots are whole milliseconds");
_Static_assert(PACE_LIVE_MS > PACE_WRITE_LIVE_MS &&
                   PACE_FLOW_MS > PACE_WRITE_LIVE_MS,
               "a drain at the pace's bounds writes what it took (pace.h)");

unsigned tw__pace_next(pace *p, uint64_t now_ms, uint64_t taken,
                       double peak_fill, unsigned hold_ms) {
  double dt = p->last_ms == 0       ? PACE_MAX_MS
              : now_ms > p->last_ms ? (double)(now_ms - p->last_ms)
                                    : 1.0;
  /* The mean rate over about the last PACE_RATE_MS (the records each
   * drain took, counted in slots of PACE_RATE_MS / PACE_RATE_SLOTS): a
   * server's requests come in bursts (a load balancer, a client's pool of
   * connections), and the rate of one burst taken as the rate would be a
   * drain every few milliseconds for a trickle of events. A flood that
   * rises faster than the mean follows shows in the rings' fill below. */
  p->last_ms = now_ms;
  const uint64_t slot_ms = (uint64_t)PACE_RATE_MS / PACE_RATE_SLOTS;
  uint64_t epoch = now_ms / slot_ms;
  unsigned at = (unsigned)(epoch % PACE_RATE_SLOTS);
  uint64_t began = now_ms > (uint64_t)dt ? now_ms - (uint64_t)dt : 0;
  if (p->slot_epoch[at] != epoch) {
    p->slot_epoch[at] = epoch;
    p->slot_taken[at] = 0;
    p->slot_from[at] = began;
  }
  p->slot_taken[at] += taken;
  /* Over the span the counted drains' intervals cover. */
  uint64_t sum = 0, from = now_ms;
  for (unsigned i = 0; i < PACE_RATE_SLOTS; i++)
    if (p->slot_epoch[i] + PACE_RATE_SLOTS > epoch) {
      sum += p->slot_taken[i];
      from = p->slot_from[i] < from ? p->slot_from[i] : from;
    }
  p->rate = (double)sum / (now_ms > from ? (double)(now_ms - from) : 1.0);
  /* How fast the fullest ring filled: after a drain at once (past
   * PACE_FILL_NOW) the next one comes within the same millisecond and
   * sees almost nothing, so the rate that sent it there still counts. */
  double fill_rate = peak_fill / dt, carried = p->now_fill_rate;
  p->now_fill_rate = 0;
  if (peak_fill > PACE_FILL_NOW) {
    p->now_fill_rate = fill_rate;
    return 0;
  }
  if (carried > fill_rate)
    fill_rate = carried;
  /* A ring past PACE_FILL: the mean lags a flood that began within it
   * (a ring of 4,096 slots after a quiet spell), and the last interval's
   * rate, if higher, sets the wait and the bound (PACE_LIVE_MS). */
  double rate = p->rate;
  if (peak_fill > PACE_FILL && (double)taken / dt > rate)
    rate = (double)taken / dt;
  double wait = rate > 0 ? PACE_BATCH / rate : PACE_MAX_MS;
  if (fill_rate > 0) {
    double by_fill = PACE_FILL / fill_rate;
    wait = by_fill < wait ? by_fill : wait;
  }
  double most = rate >= PACE_LIVE_RATE ? PACE_LIVE_MS
                : taken > 0            ? PACE_FLOW_MS
                                       : PACE_MAX_MS;
  /* The collector's batches wait that long anyway (pace.h): a drain
   * every hold_ms (PACE_HOLD_MAX_MS at most). */
  unsigned hold = hold_ms < PACE_HOLD_MAX_MS ? hold_ms : PACE_HOLD_MAX_MS;
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
