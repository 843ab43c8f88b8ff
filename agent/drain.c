/*
 * drain - see drain.h. Records are taken in time order across rings: a
 * task's enqueue (recorded on the request's thread) precedes its start
 * (on a pool thread) in the stream. Only records stamped before a drain
 * began are taken: a record that causally precedes one of them was
 * published before that one was even stamped, so it is visible too and
 * cannot be overtaken. The merge takes a run at a time: from the ring
 * whose next record is oldest, every record up to the next ring's oldest,
 * so its cost per record does not grow with the number of rings while
 * threads record in bursts.
 */
#include "drain.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* A ring being drained: its records [tail, head) up to the time limit. */
struct drain_cursor {
  ring *r;
  uint64_t tail;
  uint64_t head;
};

_Static_assert(LIMIT_DROP_REASON <= LIMIT_FAIL_STRINGS,
               "a DROP's reason fits the scratch copy");

int tw__drain_init(drain *d, tw_agent *agent, resend *out) {
  memset(d, 0, sizeof(*d));
  d->agent = agent;
  d->out = out;
  tw__clock_map_init(&d->clock);
  d->emitted = calloc(INTERN_MAX_IDS, 1);
  d->scratch = malloc(LIMIT_FAIL_STRINGS);
  if (d->emitted == NULL || d->scratch == NULL)
    return TW_ENOMEM;
  return 0;
}

void tw__drain_fini(drain *d) {
  free(d->emitted);
  free(d->scratch);
  free(d->cursors);
  d->emitted = NULL;
  d->scratch = NULL;
  d->cursors = NULL;
  d->ncursors_cap = 0;
}

static bool put_string(drain *d, uint32_t id, int64_t time) {
  proto_event ev = {0};
  ev.kind = PROTO_EV_STRING;
  ev.time_ns = time;
  ev.string = id;
  ev.text.ptr = tw__intern_text(&d->agent->strings, id, &ev.text.len);
  return tw__resend_append(d->out, &ev, false);
}

/* The STRING event of an id before its first use. */
static bool ensure_string(drain *d, uint32_t id, int64_t time) {
  if (id == 0 || id >= INTERN_MAX_IDS || d->emitted[id])
    return true;
  if (!put_string(d, id, time))
    return false;
  d->emitted[id] = 1;
  return true;
}

/* The spill block holding a record's strings, or -1. */
static int spilled_block(const ring_record *rec) {
  if (rec->mode != RING_SPILLED ||
      (rec->kind != PROTO_EV_FAIL && rec->kind != PROTO_EV_DROP &&
       rec->kind != PROTO_EV_LINK))
    return -1;
  return (int)(rec->b >> RING_SPILL_SHIFT);
}

/* A record taken for good (encoded or discarded) gives its block back. */
static void release_spilled(tw_agent *agent, const ring_record *rec) {
  int block = spilled_block(rec);
  if (block >= 0)
    tw__spill_release(agent, (unsigned)block);
}

/* Turns the record at `tail` into wire events; false when out of space
 * (the record stays, its spill block too). */
static bool encode_record(drain *d, ring *r, uint64_t tail,
                          const ring_record *rec) {
  /* The fields the encoder reads for each kind are set below; the struct
   * is not cleared as a whole, which cost a third of the drain. */
  proto_event ev;
  ev.kind = rec->kind;
  ev.time_ns = tw__clock_map_ring(&d->clock, rec->time, &r->time_floor) +
               d->agent->wall_offset_ns;
  ev.task = rec->a;
  ev.batch = 0;
  ev.other = 0;
  ev.string = 0;
  switch (rec->kind) {
  case PROTO_EV_BATCH:
    ev.task = 0;
    ev.batch = rec->a;
    ev.string = rec->x;
    if (!ensure_string(d, ev.string, ev.time_ns))
      return false;
    break;
  case PROTO_EV_ENQUEUE: {
    const ring_enqueue_tail *t =
        (const ring_enqueue_tail *)&r->slots[(tail + 1) & r->mask];
    ev.batch = rec->b;
    ev.position = rec->x;
    ev.mode = rec->mode;
    ev.string = t->name;
    ev.other = t->thread;
    if (!ensure_string(d, ev.string, ev.time_ns))
      return false;
    break;
  }
  case PROTO_EV_START:
  case PROTO_EV_SKIP:
    ev.other = rec->b;
    break;
  case PROTO_EV_FINISH:
    break;
  case PROTO_EV_FAIL:
  case PROTO_EV_DROP:
  case PROTO_EV_LINK: {
    size_t l0 = rec->x & 0xffff, l1 = rec->x >> 16;
    size_t l2 = (size_t)(rec->b & 0xffffffffu);
    if (rec->kind != PROTO_EV_FAIL)
      l1 = l2 = 0;
    if (rec->kind == PROTO_EV_LINK) {
      ev.batch = rec->a;
      ev.task = 0;
    }
    assert(l0 + l1 + l2 <= LIMIT_FAIL_STRINGS); /* record.c cuts them */
    const char *text = d->scratch;
    if (spilled_block(rec) >= 0)
      text = (const char *)tw__spill_block(&d->agent->spill,
                                           (unsigned)spilled_block(rec));
    else
      tw__ring_copy_out(r, (tail + 1) * RING_SLOT_BYTES, d->scratch,
                        l0 + l1 + l2);
    ev.text.ptr = text;
    ev.text.len = (uint32_t)l0;
    ev.message.ptr = text + l0;
    ev.message.len = (uint32_t)l1;
    ev.detail.ptr = text + l0 + l1;
    ev.detail.len = (uint32_t)l2;
    break;
  }
  default:
    assert(!"a record kind record.c does not make");
    return true;
  }
  /* A kind newer than the version agreed with the collector (LINK for a
   * version 1 collector) is an optional attribute it could not read. */
  if (tw__proto_event_known(ev.kind, d->out->version) &&
      !tw__resend_append(d->out, &ev, false))
    return false;
  release_spilled(d->agent, rec);
  return true;
}

/* A record's slot count is set before its head is published, and a
 * record never spans more than what was published. */
static void assert_well_formed(const ring_record *rec, uint64_t left) {
  assert(rec->slots > 0 && rec->slots <= left);
  (void)rec, (void)left;
}

/* The cursor's next record if it is complete and not after `limit`. */
static inline const ring_record *cursor_next(drain_cursor *c, int64_t limit) {
  if (c->tail >= c->head)
    return NULL;
  const ring_record *rec = &c->r->slots[c->tail & c->r->mask];
  assert_well_formed(rec, c->head - c->tail);
  return rec->time <= limit ? rec : NULL;
}

/* The share of its ring a cursor just made has in use. */
static double fill_of(const drain_cursor *c) {
  return (double)(c->head - c->tail) / (double)(c->r->mask + 1);
}

static bool gather_cursors(drain *d, int64_t limit, size_t *count) {
  size_t n = 0;
  ring *first = atomic_load_explicit(&d->agent->rings, memory_order_acquire);
  for (ring *r = first; r != NULL; r = r->next)
    n++;
  if (n > d->ncursors_cap) {
    drain_cursor *c = realloc(d->cursors, n * sizeof(*c));
    if (c == NULL)
      return false;
    d->cursors = c;
    d->ncursors_cap = n;
  }
  n = 0;
  d->peak_fill = 0;
  for (ring *r = first; r != NULL; r = r->next) {
    drain_cursor *c = &d->cursors[n];
    c->r = r;
    c->tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    c->head = atomic_load_explicit(&r->head, memory_order_acquire);
    double fill = fill_of(c);
    if (fill > d->peak_fill)
      d->peak_fill = fill;
    if (cursor_next(c, limit) != NULL)
      n++;
    else
      atomic_store_explicit(&r->tail, c->tail, memory_order_release);
  }
  *count = n;
  return true;
}

/* The index of the cursor whose next record is oldest, and the time of
 * the second oldest (where the first's run ends). */
static size_t oldest(drain *d, size_t n, int64_t limit, int64_t *run_end) {
  size_t best = 0;
  int64_t t0 = cursor_next(&d->cursors[0], limit)->time, t1 = limit;
  for (size_t i = 1; i < n; i++) {
    int64_t t = cursor_next(&d->cursors[i], limit)->time;
    if (t < t0) {
      t1 = t0;
      t0 = t;
      best = i;
    } else if (t < t1) {
      t1 = t;
    }
  }
  *run_end = t1;
  return best;
}

/* Takes the oldest cursor's run: its records up to the next cursor's
 * oldest. False when the resend buffer is full. */
static bool take_run(drain *d, size_t *n, int64_t limit, uint64_t *taken) {
  int64_t run_end;
  size_t best = oldest(d, *n, limit, &run_end);
  drain_cursor *c = &d->cursors[best];
  const ring_record *rec = cursor_next(c, limit);
  do {
    if (!encode_record(d, c->r, c->tail, rec))
      return false;
    c->tail += rec->slots;
    (*taken)++;
    rec = cursor_next(c, limit);
  } while (rec != NULL && rec->time <= run_end);
  if (rec == NULL) {
    atomic_store_explicit(&c->r->tail, c->tail, memory_order_release);
    d->cursors[best] = d->cursors[--*n];
  }
  return true;
}

uint64_t tw__drain_run(drain *d) {
  int64_t limit = tw__clock_map_mark(&d->clock);
  size_t n;
  uint64_t taken = 0;
  d->out_of_room = false;
  if (!gather_cursors(d, limit, &n))
    return 0;
  while (n > 0)
    if (!take_run(d, &n, limit, &taken)) {
      d->out_of_room = true;
      break;
    }
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&d->cursors[i].r->tail, d->cursors[i].tail,
                          memory_order_release);
  return taken;
}

void tw__drain_discard(drain *d) {
  uint64_t n = 0;
  ring *r = atomic_load_explicit(&d->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    while (tail < head) {
      const ring_record *rec = &r->slots[tail & r->mask];
      assert_well_formed(rec, head - tail);
      release_spilled(d->agent, rec);
      tail += rec->slots;
      n++;
    }
    atomic_store_explicit(&r->tail, head, memory_order_release);
  }
  atomic_fetch_add_explicit(&d->agent->dropped_unbound, n,
                            memory_order_relaxed);
}

bool tw__drain_resend_names(drain *d) {
  int64_t now = tw__clock_mono_ns() + d->agent->wall_offset_ns;
  for (uint32_t id = 1; id < INTERN_MAX_IDS; id++)
    if (d->emitted[id] && !put_string(d, id, now))
      return false;
  return true;
}

void tw__drain_forget_names(drain *d) {
  memset(d->emitted, 0, INTERN_MAX_IDS);
}

void tw__drain_mark(drain *d) {
  ring *r = atomic_load_explicit(&d->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next)
    r->flush_mark = atomic_load_explicit(&r->head, memory_order_acquire);
}

bool tw__drain_past_marks(drain *d) {
  ring *r = atomic_load_explicit(&d->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next)
    if (atomic_load_explicit(&r->tail, memory_order_relaxed) < r->flush_mark)
      return false;
  return true;
}
