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
 * count. Acked chunks are kept as spares (still charged to the budget)
 * rather than freed, so a sender in steady state does not call the
 * allocator at all.
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
/* Acked chunks kept for reuse. */
#define RESEND_SPARES 2u

typedef struct resend {
  tw_agent *agent; /* whose budget the chunks are charged to */
  resend_chunk *first;
  resend_chunk *last;
  resend_chunk *spare;
  unsigned nspare;
  uint16_t version;  /* the protocol version new events are encoded at */
  uint64_t next_seq; /* the next event's sequence number */
  uint64_t acked;    /* every event below is committed by the collector */
  uint64_t now_ms;   /* the owner's clock, which new chunks are stamped with */
} resend;

/* An empty buffer; events are encoded at PROTO_VERSION until told
 * otherwise (tw__resend_recode()). Never fails: chunks come later. */
void tw__resend_init(resend *r, tw_agent *agent);
/* Frees every chunk and spare and gives their budget back. */
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
