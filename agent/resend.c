/*
 * resend - the agent's resend buffer; see resend.h. Every change to a
 * chunk's frame (append, close, cut, renumber) is a proto.h call, so the
 * bytes are those the protocol's table describes.
 */
#include "resend.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void tw__resend_init(resend *r, tw_agent *agent) {
  memset(r, 0, sizeof(*r));
  r->agent = agent;
  r->max_chunks = agent->cap / RESEND_CHUNK_COST;
  r->max_spares = agent->cap / RESEND_SPARE_SHARE / RESEND_CHUNK_COST;
  if (r->max_spares < RESEND_SPARES_MIN)
    r->max_spares = RESEND_SPARES_MIN;
  r->version = PROTO_VERSION;
  r->next_seq = 1;
  r->acked = 1;
}

/* The pool: max_chunks chunks of data in one mapping (address space only:
 * a page is the kernel's to provide at its first write) and their
 * headers. A forked child gets the data wiped (it only ever unmaps it),
 * so the parent's chunks are not copied on write after a fork(). */
static bool pool_open(resend *r) {
  if (r->pool != NULL)
    return true;
  if (r->max_chunks == 0)
    return false;
  size_t bytes = r->max_chunks * (size_t)RESEND_CHUNK_BYTES;
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return false;
  r->heads = calloc(r->max_chunks, sizeof(*r->heads));
  if (r->heads == NULL) {
    munmap(p, bytes);
    return false;
  }
#ifdef MADV_WIPEONFORK
  madvise(p, bytes, MADV_WIPEONFORK);
#endif
  r->pool = p;
  for (size_t i = r->max_chunks; i-- > 0;) {
    r->heads[i].frame.data = r->pool + i * (size_t)RESEND_CHUNK_BYTES;
    r->heads[i].next = r->cold;
    r->cold = &r->heads[i];
  }
  return true;
}

void tw__resend_fini(resend *r) {
  if (r->pool != NULL)
    munmap(r->pool, r->max_chunks * (size_t)RESEND_CHUNK_BYTES);
  free(r->heads);
  tw__agent_release(r->agent, r->charged * RESEND_CHUNK_COST);
  r->pool = NULL;
  r->heads = NULL;
  r->charged = 0;
  r->first = r->last = r->spare = r->cold = NULL;
  r->nspare = 0;
}

/* A freed chunk is a spare: still charged, its pages still there, so the
 * next chunk needs neither the budget nor a page fault. Spares beyond
 * max_spares (after a long outage filled the buffer) give their pages
 * and their charge back. */
static void chunk_free(resend *r, resend_chunk *c) {
  assert(!c->pinned);
  if (r->nspare < r->max_spares) {
    c->next = r->spare;
    r->spare = c;
    r->nspare++;
    return;
  }
  madvise(c->frame.data, RESEND_CHUNK_BYTES, MADV_DONTNEED);
  tw__agent_release(r->agent, RESEND_CHUNK_COST);
  r->charged--;
  c->next = r->cold;
  r->cold = c;
}

static void free_chain(resend *r, resend_chunk *c) {
  while (c != NULL) {
    resend_chunk *next = c->next;
    chunk_free(r, c);
    c = next;
  }
}

/* Links the chain first .. last after the buffer's last chunk. */
static void link_tail(resend *r, resend_chunk *first, resend_chunk *last) {
  if (r->last != NULL)
    r->last->next = first;
  else
    r->first = first;
  r->last = last;
}

/* A new open chunk at the end, starting at next_seq; NULL when taking it
 * would leave no chunk's room for HEALTH (unless it is for HEALTH), or
 * not the room kept for rings of threads yet to record. */
static resend_chunk *chunk_new(resend *r, bool health) {
  tw_agent *a = r->agent;
  size_t held = atomic_load_explicit(&a->reserved, memory_order_relaxed);
  size_t keep = held + tw__record_late_keep(a);
  size_t room = keep > a->cap ? 0 : a->cap - keep;
  room += r->nspare * RESEND_CHUNK_COST;
  if (room < (health ? 1u : 2u) * RESEND_CHUNK_COST)
    return NULL;
  resend_chunk *c = r->spare;
  if (c != NULL) {
    r->spare = c->next;
    r->nspare--;
  } else {
    if (!pool_open(r) || r->cold == NULL ||
        tw__agent_reserve(a, RESEND_CHUNK_COST) != 0)
      return NULL;
    c = r->cold;
    r->cold = c->next;
    r->charged++;
  }
  uint8_t *data = c->frame.data;
  memset(c, 0, sizeof(*c));
  c->frame.data = data;
  c->frame.cap = RESEND_CHUNK_BYTES;
  c->opened_ms = r->now_ms;
  tw__proto_events_open(&c->frame, r->version, r->next_seq);
  link_tail(r, c, c);
  return c;
}

void tw__resend_seal(resend_chunk *c) {
  if (!c->sealed) {
    tw__proto_events_close(&c->frame);
    c->sealed = true;
  }
}

bool tw__resend_append(resend *r, const proto_event *ev, bool health) {
  resend_chunk *c = r->last;
  if (c == NULL || c->sealed || tw__proto_events_append(&c->frame, ev) != 0) {
    if (c != NULL && c->frame.count > 0)
      tw__resend_seal(c);
    if ((c = chunk_new(r, health)) == NULL)
      return false;
    /* Every event the agent makes fits an empty chunk: its strings are
     * cut to LIMIT_* on the recording path, well below a chunk. */
    int rc = tw__proto_events_append(&c->frame, ev);
    assert(rc == 0);
    (void)rc;
  }
  r->next_seq++;
  return true;
}

void tw__resend_ack(resend *r, uint64_t next_seq) {
  if (next_seq > r->acked && next_seq <= r->next_seq)
    r->acked = next_seq;
  while (r->first != NULL && r->first->sealed && !r->first->pinned &&
         tw__resend_chunk_end(r->first) <= r->acked) {
    resend_chunk *c = r->first;
    r->first = c->next;
    if (r->first == NULL)
      r->last = NULL;
    chunk_free(r, c);
  }
}

void tw__resend_cut(resend *r) {
  resend_chunk *c = r->first;
  if (c == NULL || c->frame.first_seq >= r->acked)
    return;
  assert(!c->pinned); /* cut between connections only */
  uint64_t n = r->acked - c->frame.first_seq;
  tw__resend_seal(c);
  int rc = tw__proto_events_cut(
      &c->frame, (uint32_t)(n < c->frame.count ? n : c->frame.count));
  assert(rc == 0); /* the frame is this buffer's own encoding */
  (void)rc;
  tw__resend_ack(r, r->acked); /* a chunk cut to nothing goes */
}

resend_chunk *tw__resend_detach(resend *r) {
  resend_chunk *chain = r->first;
  if (r->last != NULL)
    tw__resend_seal(r->last);
  r->first = r->last = NULL;
  return chain;
}

uint64_t tw__resend_attach(resend *r, resend_chunk *chain) {
  uint64_t n = 0;
  resend_chunk *last = NULL;
  if (chain == NULL)
    return 0;
  if (r->last != NULL)
    tw__resend_seal(r->last);
  for (resend_chunk *c = chain; c != NULL; c = c->next) {
    assert(c->sealed && !c->pinned);
    tw__proto_events_renumber(&c->frame, r->next_seq);
    r->next_seq += c->frame.count;
    n += c->frame.count;
    last = c;
  }
  link_tail(r, chain, last);
  return n;
}

void tw__resend_clear(resend *r) {
  free_chain(r, r->first);
  r->first = r->last = NULL;
}

uint64_t tw__resend_recode(resend *r, uint16_t version) {
  resend_chunk *old = tw__resend_detach(r);
  uint64_t dropped = 0;
  r->version = version;
  if (old != NULL)
    r->next_seq = old->frame.first_seq;
  /* One chunk at a time: a chunk's events are appended anew (their
   * strings still point into it), then it becomes the spare the next new
   * chunk is made of, so the budget holds about one chunk extra. */
  while (old != NULL) {
    resend_chunk *c = old;
    old = c->next;
    const uint8_t *payload = c->frame.data + PROTO_HEADER_SIZE;
    proto_events it;
    proto_event ev;
    int rc = tw__proto_events_begin(
        &it, payload, c->frame.len - PROTO_HEADER_SIZE, c->frame.version);
    assert(rc == 0); /* the frame is this buffer's own encoding */
    while (rc == 0 && (rc = tw__proto_events_next(&it, &ev)) == 0)
      if (tw__proto_event_size(&ev, version, ev.time_ns) == 0 ||
          !tw__resend_append(r, &ev, true))
        dropped++;
    c->next = NULL;
    chunk_free(r, c);
  }
  return dropped;
}
