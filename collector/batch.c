/*
 * batch - arena and array helpers of the loop-to-writer work unit.
 */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define CHUNK_SIZE (256 * 1024)

struct arena_chunk {
  arena_chunk *next;
  size_t size;
  size_t used;
  _Alignas(16) unsigned char data[];
};

void arena_init(arena *a) {
  memset(a, 0, sizeof(*a));
}

static void free_chunks(arena_chunk *c) {
  while (c) {
    arena_chunk *next = c->next;
    free(c);
    c = next;
  }
}

void arena_fini(arena *a) {
  free_chunks(a->head);
  free_chunks(a->spare);
  memset(a, 0, sizeof(*a));
}

void arena_reset(arena *a) {
  arena_chunk *c = a->head;
  while (c) {
    arena_chunk *next = c->next;
    if (c->size == CHUNK_SIZE) {
      c->used = 0;
      c->next = a->spare;
      a->spare = c;
    } else {
      free(c);
    }
    c = next;
  }
  a->head = NULL;
  a->used = 0;
}

void *arena_alloc(arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_chunk *c = a->head;
  if (c == NULL || c->size - c->used < n) {
    size_t size = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
    if (size == CHUNK_SIZE && a->spare) {
      c = a->spare;
      a->spare = c->next;
    } else {
      c = xmalloc(sizeof(*c) + size);
      c->size = size;
    }
    c->used = 0;
    /* A big allocation goes behind the current chunk so the rest of the
     * current chunk stays usable. */
    if (size != CHUNK_SIZE && a->head) {
      c->next = a->head->next;
      a->head->next = c;
    } else {
      c->next = a->head;
      a->head = c;
    }
  }
  void *p = c->data + c->used;
  c->used += n;
  a->used += n;
  return p;
}

blob arena_copy(arena *a, proto_str s) {
  blob b = {"", 0};
  if (s.len == 0)
    return b;
  char *p = arena_alloc(a, s.len);
  memcpy(p, s.ptr, s.len);
  b.ptr = p;
  b.len = s.len;
  return b;
}

wbatch *wbatch_new(uint64_t generation) {
  wbatch *b = xcalloc(1, sizeof(*b));
  arena_init(&b->mem);
  u64map_init(&b->pending);
  b->generation = generation;
  b->held_due_ms = -1;
  b->agent_hold_ms = 0;
  return b;
}

void wbatch_free(wbatch *b) {
  if (b == NULL)
    return;
  arena_fini(&b->mem);
  u64map_fini(&b->pending);
  free(b->rows);
  free(b->batches);
  free(b->strings);
  free(b->links);
  free(b->ops);
  free(b->progress);
  free(b->exports);
  free(b);
}

/* Empties an array, freeing it when a burst grew it past the bound. */
static void reset_array(void **array, size_t *n, size_t *cap, size_t size) {
  *n = 0;
  if (*cap * size > WBATCH_KEEP_BYTES) {
    free(*array);
    *array = NULL;
    *cap = 0;
  }
}

void wbatch_reset(wbatch *b, uint64_t generation) {
  arena_reset(&b->mem);
  reset_array((void **)&b->rows, &b->nrows, &b->caprows, sizeof(*b->rows));
  reset_array((void **)&b->batches, &b->nbatches, &b->capbatches,
              sizeof(*b->batches));
  reset_array((void **)&b->strings, &b->nstrings, &b->capstrings,
              sizeof(*b->strings));
  reset_array((void **)&b->links, &b->nlinks, &b->caplinks, sizeof(*b->links));
  reset_array((void **)&b->ops, &b->nops, &b->capops, sizeof(*b->ops));
  reset_array((void **)&b->progress, &b->nprogress, &b->capprogress,
              sizeof(*b->progress));
  reset_array((void **)&b->exports, &b->nexports, &b->capexports,
              sizeof(*b->exports));
  u64map_clear(&b->pending);
  b->events = b->refused = b->clamped = 0;
  b->generation = generation;
  b->nsamples = 0;
  b->prune = 0;
  b->flush_wanted = 0;
  b->export_seq = 0;
  b->failed = 0;
  b->committed_ns = 0;
  b->held_due_ms = -1;
  b->agent_hold_ms = 0;
}

int wbatch_empty(const wbatch *b) {
  return b->nrows == 0 && b->nbatches == 0 && b->nstrings == 0 &&
         b->nlinks == 0 && b->nops == 0 && b->nprogress == 0 && !b->prune;
}

/* Grows an array by one element and returns a pointer to it, zeroed. */
static void *push(void **array, size_t *n, size_t *cap, size_t size) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    *array = xrealloc(*array, *cap * size);
  }
  void *p = (char *)*array + (*n)++ * size;
  memset(p, 0, size);
  return p;
}

task_row *wbatch_add_row(wbatch *b) {
  task_row *r = arena_alloc(&b->mem, sizeof(*r));
  memset(r, 0, sizeof(*r));
  task_row **slot =
      push((void **)&b->rows, &b->nrows, &b->caprows, sizeof(*b->rows));
  *slot = r;
  return r;
}

batch_row *wbatch_add_batch(wbatch *b) {
  return push((void **)&b->batches, &b->nbatches, &b->capbatches,
              sizeof(*b->batches));
}

string_row *wbatch_add_string(wbatch *b) {
  return push((void **)&b->strings, &b->nstrings, &b->capstrings,
              sizeof(*b->strings));
}

link_row *wbatch_add_link(wbatch *b) {
  return push((void **)&b->links, &b->nlinks, &b->caplinks, sizeof(*b->links));
}

agent_op *wbatch_add_op(wbatch *b, int kind, int64_t agent, int64_t at) {
  agent_op *op = push((void **)&b->ops, &b->nops, &b->capops, sizeof(*b->ops));
  op->kind = kind;
  op->agent = agent;
  op->at = at;
  return op;
}

agent_progress *wbatch_add_progress(wbatch *b) {
  return push((void **)&b->progress, &b->nprogress, &b->capprogress,
              sizeof(*b->progress));
}

void wbatch_add_export(wbatch *b, int64_t batch) {
  int64_t *slot = push((void **)&b->exports, &b->nexports, &b->capexports,
                       sizeof(*b->exports));
  *slot = batch;
}

/* Every array counts at its capacity: a peer can grow any of them (one
 * HEALTH event is 25 bytes on the wire but costs an agent_op), so leaving
 * one out would let the batch grow without ever reaching the high
 * watermark that pauses reading. */
size_t wbatch_bytes(const wbatch *b) {
  return b->mem.used + b->caprows * sizeof(*b->rows) +
         b->capbatches * sizeof(*b->batches) +
         b->capstrings * sizeof(*b->strings) + b->caplinks * sizeof(*b->links) +
         b->capops * sizeof(*b->ops) + b->capprogress * sizeof(*b->progress) +
         b->capexports * sizeof(*b->exports) + u64map_bytes(&b->pending);
}

int64_t wbatch_commit_wait_ms(const wbatch *b, int64_t age_ms,
                              int64_t flush_ms, int early) {
  int full = early || b->flush_wanted || b->events >= BATCH_FULL_EVENTS;
  return (full ? flush_ms : BATCH_IDLE_FACTOR * flush_ms) - age_ms;
}

int64_t wbatch_hold_ms(double events_per_s, int64_t flush_ms, int holding) {
  double full = BATCH_FULL_EVENTS * 1000.0 / (double)flush_ms;
  if (events_per_s >= (holding ? full : full * BATCH_HOLD_ENTER))
    return 0;
  /* How long a batch waits: until it holds BATCH_FULL_EVENTS at the rate,
   * BATCH_IDLE_FACTOR times flush_ms at most (BATCH_HOLD_FACTOR). */
  double hold = (double)BATCH_HOLD_FACTOR * (double)flush_ms;
  if (events_per_s * hold > BATCH_FULL_EVENTS * 1000.0)
    hold = BATCH_FULL_EVENTS * 1000.0 / events_per_s;
  return hold < PROTO_HOLD_MAX_MS ? (int64_t)hold : PROTO_HOLD_MAX_MS;
}

uint32_t hold_advice_count(hold_advice *h, int64_t now_ms, uint64_t events,
                           int64_t flush_ms) {
  if (h->since_ms == 0) {
    h->since_ms = h->part_since_ms = now_ms;
    h->cap_ms = UINT32_MAX;
  }
  h->events += events;
  h->part_events += events;
  int64_t part = now_ms - h->part_since_ms;
  if (part >= HOLD_RISE_MS) {
    double r = (double)h->part_events * 1000.0 / (double)part;
    uint32_t cap = (uint32_t)wbatch_hold_ms(r / HOLD_RISE, flush_ms, 1);
    if (cap < h->hold_ms)
      h->hold_ms = cap;
    if (cap < h->cap_ms)
      h->cap_ms = cap;
    h->part_since_ms = now_ms;
    h->part_events = 0;
  }
  int64_t span = now_ms - h->since_ms;
  if (span < HOLD_WINDOW_MS)
    return h->hold_ms;
  double r = (double)h->events * 1000.0 / (double)span;
  uint32_t hold = (uint32_t)wbatch_hold_ms(r, flush_ms, h->hold_ms != 0);
  h->hold_ms = hold < h->cap_ms ? hold : h->cap_ms;
  h->since_ms = h->part_since_ms = now_ms;
  h->events = h->part_events = 0;
  h->cap_ms = UINT32_MAX;
  return h->hold_ms;
}
