/*
 * resend - the agent's resend buffer: every event the sender has encoded,
 * kept until the collector acks it after COMMIT. Pure functions over a
 * list of chunks: no I/O, no libuv, no threads (the sender thread owns a
 * buffer), so they are tested on their own (tests/unit/test_resend.c).
 *
 * A chunk is one EVENTS frame of at most RESEND_CHUNK_BYTES, encoded in
 * place (tw__proto_events_append()), oldest first; the last chunk is open for
 * appending until it is sealed. Sequence numbers are assigned as events
 * are appended, starting at 1 and without gaps, so a chunk is a contiguous
 * range: its frame's first_seq and count. Events carry no sequence number
 * of their own, so renumbering a chunk is a patch of its frame's header.
 *
 * Chunks are charged to the agent's budget. Events may fill it up to one
 * chunk short of the cap; that last chunk is kept for HEALTH, which must
 * get through exactly when the buffer is full, since that is when it has
 * drops to report. When no chunk can be had, appending fails: the sender
 * stops draining, the rings fill, and the recording threads drop and
 * count.
 *
 * Chunks come from one mapping made at the first chunk (the pool), as
 * large as the budget could ever charge, and are charged as they are
 * first used. An acked chunk becomes a spare, still charged and its pages
 * still in place (up to max_spares, an eighth of the budget), so a sender
 * in steady state neither calls the allocator nor faults a page in: a
 * chunk the heap gave back to the kernel and took again faulted on every
 * first write, which cost more than encoding its events.
 */
#ifndef TW_AGENT_RESEND_H
#define TW_AGENT_RESEND_H

#include <stdbool.h>
#include <stdint.h>

#include "agent_internal.h"

typedef struct resend_chunk {
  struct resend_chunk *next;
  bool sealed; /* its frame is closed; nothing more is appended */
  bool pinned; /* a write of its bytes is in flight: not freed or changed */
  uint64_t opened_ms; /* the buffer's now_ms when the chunk was opened */
  proto_buf frame;
} resend_chunk;

/* What one chunk costs the budget. */
#define RESEND_CHUNK_COST (sizeof(resend_chunk) + RESEND_CHUNK_BYTES)
/* Acked chunks kept for reuse: a RESEND_SPARE_SHARE-th of the budget, at
 * least RESEND_SPARES_MIN. */
#define RESEND_SPARE_SHARE 8u
#define RESEND_SPARES_MIN 2u

typedef struct resend {
  tw_agent *agent; /* whose budget the chunks are charged to */
  resend_chunk *first;
  resend_chunk *last;
  resend_chunk *spare; /* free and charged */
  unsigned nspare;
  unsigned max_spares;
  resend_chunk *cold;  /* free, not charged, no pages */
  size_t max_chunks;   /* the pool's size: what the budget could hold */
  size_t charged;      /* chunks charged to the budget */
  uint8_t *pool;       /* chunk data; NULL until the first chunk */
  resend_chunk *heads; /* the chunks' headers, max_chunks of them */
  uint16_t version;    /* the protocol version new events are encoded at */
  uint64_t next_seq;   /* the next event's sequence number */
  uint64_t acked;      /* every event below is committed by the collector */
  uint64_t now_ms; /* the owner's clock, which new chunks are stamped with */
} resend;

/* An empty buffer; events are encoded at PROTO_VERSION until told
 * otherwise (tw__resend_recode()). Never fails: chunks come later. */
void tw__resend_init(resend *r, tw_agent *agent);
/* Unmaps the pool and gives the budget of every chunk back. */
void tw__resend_fini(resend *r);

/* Appends ev with the next sequence number. False when no chunk could be
 * had (nothing appended); `health` may take the chunk kept for HEALTH. */
bool tw__resend_append(resend *r, const proto_event *ev, bool health);
/* Closes a chunk's frame: it may be sent from now on. Idempotent. */
void tw__resend_seal(resend_chunk *c);

/* The collector committed everything below next_seq (ignored unless it is
 * news, within what was appended). Frees the chunks wholly below it that
 * are sealed and not pinned. */
void tw__resend_ack(resend *r, uint64_t next_seq);
/* Drops the events below `acked` from the first chunk, so that what is
 * sent next starts at `acked` (after a WELCOME). */
void tw__resend_cut(resend *r);

/* Takes every chunk out of the buffer, sealed, oldest first. */
resend_chunk *tw__resend_detach(resend *r);
/* Appends the detached chunks in `chain`, renumbered to follow the events
 * appended since; returns how many events they hold. */
uint64_t tw__resend_attach(resend *r, resend_chunk *chain);
/* Frees every chunk of the buffer (spares kept), appended or not. */
void tw__resend_clear(resend *r);

/* Re-encodes every held event at `version`, which new events use from now
 * on; a WELCOME may name a different version than the held chunks were
 * encoded at. Sequence numbers stay. Events that no longer fit the budget
 * are dropped (oldest kept); returns how many. */
uint64_t tw__resend_recode(resend *r, uint16_t version);

/* Events appended and not yet freed. */
static inline uint64_t tw__resend_held(const resend *r) {
  return r->first ? r->next_seq - r->first->frame.first_seq : 0;
}
/* The sequence number after the chunk's last event. */
static inline uint64_t tw__resend_chunk_end(const resend_chunk *c) {
  return c->frame.first_seq + c->frame.count;
}

#endif /* TW_AGENT_RESEND_H */
