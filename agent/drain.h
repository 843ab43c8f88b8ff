/*
 * drain - the sender's consumer side of the per-thread rings: it turns
 * ring records into wire events and appends them to the resend buffer,
 * merged across rings in time order, with the STRING event of each name
 * before its first use. It also keeps the rings' flush marks. Sender
 * thread only; no I/O.
 */
#ifndef TW_AGENT_DRAIN_H
#define TW_AGENT_DRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "agent_internal.h"
#include "resend.h"

typedef struct drain_cursor drain_cursor;

typedef struct drain {
  tw_agent *agent;
  resend *out;
  clock_map clock;  /* record ticks to monotonic ns */
  uint8_t *emitted; /* per string id: its STRING is in `out` */
  drain_cursor *cursors;
  size_t ncursors_cap;
  char *scratch; /* a FAIL's or DROP's strings, copied out of its ring */
  /* The fullest ring's share in use when the last tw__drain_run() began
   * (0 to 1): how close the rings came to dropping (sender.c paces on
   * it). */
  double peak_fill;
  bool out_of_room; /* the last tw__drain_run() found `out` full */
} drain;

/* 0 or TW_ENOMEM (then tw__drain_fini() is still safe to call). */
int tw__drain_init(drain *d, tw_agent *agent, resend *out);
void tw__drain_fini(drain *d);

/* Moves what the rings hold into `out` until it is full. Returns the
 * number of records taken. */
uint64_t tw__drain_run(drain *d);
/* At shutdown: every record still in a ring (`out` was full) is counted
 * as dropped and released. */
void tw__drain_discard(drain *d);

/* A STRING event, at the head of a new instance, for every name sent so
 * far. False when `out` had no room (some may have been appended). */
bool tw__drain_resend_names(drain *d);
/* Names go again before their next use. */
void tw__drain_forget_names(drain *d);

/* Remembers every ring's head: what a flush asked for. */
void tw__drain_mark(drain *d);
/* Whether every ring has been drained past its mark. */
bool tw__drain_past_marks(drain *d);

#endif /* TW_AGENT_DRAIN_H */
