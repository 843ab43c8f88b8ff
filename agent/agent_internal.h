/*
 * agent_internal - the agent's shared internals: the agent struct, the
 * per-thread event rings and their fixed-size records, the string intern
 * table, the spill blocks, the memory budget, and the entry points the
 * modules call across files (agent.c, record.c, intern.c, spill.c,
 * runner.c, and the sender: sender.c, drain.c, resend.c). Limits shared with
 * the rest of taskwatch are in common/limit.h.
 *
 * Memory model. Every recording thread owns one single-producer ring per
 * agent; the sender thread is the only consumer of every ring. A producer
 * publishes a record by storing its ring's head with release order; the
 * sender reads the head with acquire order, copies the records out and
 * publishes the tail with release order. Nothing on the recording path takes
 * a lock, allocates or makes a system call; only the first event of a thread
 * (ring registration) may allocate.
 */
#ifndef TW_AGENT_INTERNAL_H
#define TW_AGENT_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskwatch.h>

#include "clock.h"
#include "proto.h"

/* ---- ring records ------------------------------------------------------ */

#define RING_SLOT_BYTES 32u

/* Kinds in a ring use the wire protocol's numbers (enum proto_kind). */

/*
 * One 32-byte slot. Fixed events take one slot (ENQUEUE two); FAIL, DROP
 * and LINK carry their strings in the slots that follow, or, when mode is
 * RING_SPILLED, in a spill block (below) and take one slot. Field use by
 * kind:
 *   BATCH    a batch, x label id
 *   ENQUEUE  a task, b batch, x position, mode; next slot: name id, thread
 *   START    a task, b thread
 *   FINISH   a task
 *   FAIL     a task, x type length | message length << 16, b detail length
 *   SKIP     a task, b cause
 *   DROP     a task, x reason length
 *   LINK     a batch, x traceparent length
 * A spilled record's b also holds its block's index << RING_SPILL_SHIFT.
 */
typedef struct ring_record {
  uint8_t kind;
  uint8_t mode;
  uint16_t slots; /* slots this record spans, this one included */
  uint32_t x;
  int64_t time; /* tw__clock_now() units, converted by the sender */
  uint64_t a;
  uint64_t b;
} ring_record;

/* mode of a FAIL, DROP or LINK whose strings are in a spill block. */
#define RING_SPILLED 1u
#define RING_SPILL_SHIFT 32

/* The second slot of an ENQUEUE record. */
typedef struct ring_enqueue_tail {
  uint32_t name;
  uint32_t unused;
  uint64_t thread;
  uint64_t unused2[2];
} ring_enqueue_tail;

/* Rings may hold at most half the budget, the rest is the resend buffer's.
 * Each new ring gets a sixteenth of what is left of the rings' half, the
 * first a quarter, within these bounds, so the first threads get roomy
 * rings and about sixty threads get one at the default (a thread without
 * one has its events dropped and counted). The first thread to record is
 * most often the busiest (a server's event loop): its ring, 1 MiB at the
 * default 8 MiB, holds 250 ms of 100,000 events/s, what a loaded machine
 * may keep the sender from running (and at least PACE_MAX_MS of a burst
 * of 500,000 events/s after a quiet spell). With few tasks open it
 * refuses new batches from 3/4 full (the admission marks below), after
 * about 190 ms without the sender: a machine running more CPU-bound
 * processes than it has cores keeps the sender away that long at times.
 * (From 3/8 full, about 95 ms, before the marks counted the open tasks:
 * test_agent_kill9_default beside the sanitized suite and stress-ng
 * --cpu 1 refused 39-281 batches in 4 of 20 runs.) A 2 MiB first ring
 * made that 0-1 of 20, but took from the budget either the
 * next rings' room, which the runner's pool backlog bound follows (short
 * outages at 100,000 events/s then refused batches), or the spill blocks'
 * (64 threads failing at once had strings cut under load): not taken. */
#define RING_SHARE 16
#define RING_SHARE_FIRST 4
#define RING_MIN_BYTES (8u * 1024u)
#define RING_MAX_BYTES (16u * 1024u * 1024u)
/* A thread that first records once the resend buffer has filled the
 * budget (a pool thread the loaded machine kept from running) must still
 * get a ring: its tasks were admitted while the others recorded. The
 * buffer leaves room for RING_LATE_RINGS rings of RING_LATE_BYTES while
 * the rings' half has it unclaimed (tw__record_late_keep()); a ring
 * larger than RING_LATE_BYTES leaves that room to them, and a ring the
 * budget cannot give its size takes the largest that fits, down to
 * RING_MIN_BYTES. */
#define RING_LATE_RINGS 4u
#define RING_LATE_BYTES (32u * 1024u)
#define RING_CACHE_SIZE 16 /* per-thread interned-name cache entries */
/* Admission (record.c) keeps two slots of a thread's ring for each task
 * it admitted that is still open (its START and final event), and
 * refuses a new batch while the ring's records and that room would pass
 * RING_ADMIT_BATCH/RING_ADMIT_DEN of it, a task of an admitted batch past
 * RING_ADMIT_TASK/RING_ADMIT_DEN; the last eighth is for BATCH and LINK
 * records. With few tasks open the busiest thread's first ring takes
 * batches until 3/4 full, about 190 ms without the sender at 100,000
 * events/s. (The marks were 3/8 and 1/2 of the ring's records alone
 * before: 95 ms, and tasks whose ENQUEUE the sender had drained before it
 * stopped were not kept room for.)
 * A task's later events may be recorded on another thread (a sync task
 * starts and ends on a pool thread), whose ring the admitting thread
 * cannot see: the runner bounds its pool's backlog (below), and the sender
 * also refuses new batches (admit_pressure) while the last drain found any
 * ring past RING_ADMIT_PRESSURE/RING_ADMIT_DEN, a last guard for tasks of
 * the low-level API run on other threads (a pool thread's ring, smaller
 * than the loop's, reaches it first when a loaded machine keeps the
 * sender from running). */
#define RING_ADMIT_DEN 8u
#define RING_ADMIT_BATCH 6u
#define RING_ADMIT_TASK 7u
#define RING_ADMIT_PRESSURE 7u
/* The batch runner hands each sync task of a running batch to libuv's
 * thread pool, whose queue has no bound; a pool thread records its START
 * and end on its own ring, smaller than the loop's and, while the resend
 * buffer is full, drained only as fast as the collector acks. A pool runs
 * the tasks of many batches, one after another, faster than that. So the
 * pool's backlog (the sync tasks of the batches the runner has started,
 * not yet ended or skipped) is bounded by the room of the smallest ring
 * that may run it (another thread's, or a ring yet to be made): at two
 * slots a task, a new batch is refused while the backlog would pass
 * RING_BACKLOG_BATCH/RING_ADMIT_DEN of that room in tasks (three quarters
 * of what it can hold). The runner counts a batch's sync tasks when it
 * starts it, on the loop's ring, and each one's end on the ring of the
 * thread that records it (plain stores; tw__record_pool_in/out). An
 * admitting thread sums every ring's counts only when it has used up the
 * allowance it took at its last sum (record.c, admit_window): about once
 * per few hundred batches, on every admission only at the limit. Batches
 * a server holds before it runs them, and tasks of the low-level API,
 * which the agent cannot tell are queued for a pool, are not counted:
 * their events take room as they come, under the marks above. */
#define RING_BACKLOG_BATCH 3u

/* The admission rule that refused a batch (tw_agent_stats' refused_*),
 * in the order record.c tries them. */
typedef enum refused_why {
  REFUSED_PRESSURE, /* the sender's flag: resend buffer full, ring nearly */
  REFUSED_RING,     /* the thread's ring past its batch mark, or none */
  REFUSED_BACKLOG,  /* the runner's pool backlog past its bound */
  REFUSED_WHY_COUNT
} refused_why;

typedef struct ring_name_cache {
  const char *ptr;
  uint32_t id;
  uint32_t len;
} ring_name_cache;

typedef struct ring {
  /* Producer side: written only by the owning thread. What every record
   * touches is in its first two cache lines (head, cached_tail, recorded,
   * soft_fill; closed for a final event), what an admission reads in the
   * second (opened, closed, pool_in, pool_out). */
  _Atomic uint64_t head;
  uint64_t cached_tail;
  _Atomic uint64_t recorded;
  _Atomic uint64_t dropped;
  _Atomic uint64_t cut;             /* strings cut to their limit or to fit */
  _Atomic uint64_t renamed;         /* names recorded as the overflow name */
  _Atomic uint64_t refused_batches; /* batches refused at admission */
  _Atomic uint64_t refused_tasks;   /* tasks refused at admission */
  _Atomic uint64_t pool_in;  /* sync tasks of batches the runner started */
  _Atomic uint64_t pool_out; /* their ends and skips */
  _Atomic uint64_t opened;   /* tasks admitted on this thread */
  _Atomic uint64_t closed;   /* final events recorded on it (any task's) */
  /* pool_in at the owner's last sum of the pool's backlog, and the tasks
   * it may hand over past it before it sums again (admit_window). */
  uint64_t admit_base;
  int64_t admit_allow;
  /* Slots in use past which reserve() takes its slow path: the nudge
   * mark below it, the ring's size once past it (tw__pace_nudge()). */
  uint64_t soft_fill;
  uint64_t next_id;
  uint64_t end_id;
  /* Of refused_batches, by the rule that refused them (refused_why). */
  _Atomic uint64_t refused_by[REFUSED_WHY_COUNT];
  ring_name_cache cache[RING_CACHE_SIZE];
  /* Consumer side: written only by the sender. */
  alignas(64) _Atomic uint64_t tail;
  uint64_t flush_mark; /* head seen when a flush was requested */
  int64_t time_floor;  /* monotonic ns of the last record sent */
  /* Set at registration. owner is the owning thread's token, 0 when the
   * thread has exited and the ring may be adopted by another. */
  alignas(64) _Atomic uintptr_t owner;
  struct ring *next;
  ring_record *slots;
  uint64_t mask;   /* slot count - 1 */
  size_t bytes;    /* everything charged to the budget for this ring */
  bool slots_cold; /* slot pages not faulted in (wiped by a fork) */
} ring;

/* ---- intern table ------------------------------------------------------ */

/* The table's bounds (INTERN_MAX_IDS, INTERN_ARENA, LIMIT_NAME) are in
 * common/limit.h. */
#define INTERN_SLOTS 8192u    /* open-addressing table, power of two */
#define INTERN_OVERFLOW_ID 1u /* "(too many distinct names)" */

typedef struct intern {
  _Atomic uint64_t *slots; /* hash << 32 | id; 0 = empty */
  _Atomic uint32_t *by_id; /* arena offset of each id's text */
  char *arena;             /* per entry: u16 length, bytes, NUL */
  _Atomic uint32_t arena_top;
  _Atomic uint32_t next_id;
} intern;

/* Bytes tw__intern_init() allocates; charged to the agent's budget. */
size_t tw__intern_footprint(void);
int tw__intern_init(intern *t);
void tw__intern_fini(intern *t);
/* Returns the id of s (at most LIMIT_NAME bytes of it), inserting it
 * when new. Lock-free and allocation-free; INTERN_OVERFLOW_ID when full. */
uint32_t tw__intern_get(intern *t, const char *s, size_t len);
/* The text of an id returned by tw__intern_get(); *len gets its length. */
const char *tw__intern_text(const intern *t, uint32_t id, uint32_t *len);

/* ---- spill blocks (spill.c) ------------------------------------------ */

/* Where a FAIL, DROP or LINK too large for its thread's ring puts its
 * strings (a ring holds a record of at most half its size: at the default
 * budget, a full failure fits the first nine threads' rings only). One
 * mapping of SPILL_BLOCKS blocks of LIMIT_FAIL_STRINGS bytes (in whole
 * pages), each free
 * block a bit in one of two words: `warm` blocks are charged to the budget
 * and faulted in (the spares, SPILL_SPARE_SHARE-th of the budget, at
 * least one, at most SPILL_SPARES_MAX), `cold` ones are neither. A
 * recording thread takes a block with one compare-and-swap, warm first (a
 * cold one is charged then, if the budget has room: never what the rings
 * may still claim, nor the resend buffer's last two chunks), fills it and
 * puts its index in the ring record; the sender encodes the strings from
 * the block in the ring's order, then gives the block back: warm while
 * there are fewer than `spares` warm ones, else its pages and its charge
 * go. No lock, no system call, no allocation on the recording side; a
 * block taken cold may fault its pages in (a burst of failures beyond the
 * spares). When no block can be had, the strings are cut to fit the ring,
 * as they were before spill blocks. */
#define SPILL_BLOCKS 64u /* one bit each in a 64-bit word */
#define SPILL_BLOCK_BYTES LIMIT_FAIL_STRINGS
#define SPILL_SPARE_SHARE 64u
#define SPILL_SPARES_MAX 8u

typedef struct spill {
  uint8_t *blocks;  /* nblocks blocks; NULL: none (tracing off) */
  unsigned nblocks; /* SPILL_BLOCKS, fewer on a budget too small for them */
  unsigned spares;  /* free blocks kept warm */
  size_t stride;    /* SPILL_BLOCK_BYTES in whole pages: a block's pages
                       are its own, given back alone */
  _Atomic uint64_t warm; /* free, charged, faulted in */
  _Atomic uint64_t cold; /* free, not charged, no pages */
} spill;

/* Maps the blocks and faults in and charges the spares: 0 or TW_ENOMEM. */
int tw__spill_init(tw_agent *agent);
/* Unmaps the blocks and gives back every block's charge. */
void tw__spill_fini(tw_agent *agent);
/* A recording thread: a free block's index, or -1 when none can be had. */
int tw__spill_take(tw_agent *agent);
/* A block's bytes. */
static inline uint8_t *tw__spill_block(spill *s, unsigned block) {
  return s->blocks + (size_t)block * s->stride;
}
/* The sender: gives back a block taken by tw__spill_take(). */
void tw__spill_release(tw_agent *agent, unsigned block);
/* After fork(): every block is free again (the records that held them
 * were discarded with the parent's rings); the spares are faulted in. */
void tw__spill_fork_child(tw_agent *agent);

/* ---- the agent --------------------------------------------------------- */

struct sender;

struct tw_agent {
  uint64_t serial; /* unique per agent in this process, never 0 */
  _Atomic(ring *) rings;
  intern strings;
  spill spill;
  _Atomic uint64_t next_id;
  _Atomic uint64_t dropped_unbound; /* events of threads without a ring */
  _Atomic uint64_t cut_unbound;     /* their strings cut */
  _Atomic uint64_t renamed_unbound; /* their names replaced */
  _Atomic uint64_t refused_batches_unbound;
  _Atomic uint64_t refused_tasks_unbound;
  _Atomic uint64_t refused_by_unbound[REFUSED_WHY_COUNT];
  _Atomic uint64_t pool_in_unbound, pool_out_unbound;
  /* Set by the sender while the resend buffer is full or a ring is past
   * the batch mark: admission refuses new batches (record.c). */
  _Atomic int admit_pressure;
  /* Whether the sender sleeps for PACE_ASLEEP_MS or more now: a ring
   * past its nudge mark wakes it (tw__pace_nudge()). */
  _Atomic int sender_asleep;
  _Atomic size_t reserved; /* bytes charged to the budget */
  size_t cap;
  _Atomic size_t ring_reserved; /* the part of `reserved` held by rings */
  int64_t wall_offset_ns;
  int64_t started_at_ns;
  uint8_t instance[PROTO_INSTANCE_SIZE];
  char *collector;
  char *service;
  char *host;
  char *token;
  char *tls_ca, *tls_cert, *tls_key; /* NULL: none (tw_config's) */
  unsigned flush_timeout_ms;
  bool disabled; /* tracing off: record nothing, no sender (tw_agent_new) */
  struct sender *sender;
  struct tw_agent *registry_next;
};

/* Budget: returns 0 when n more bytes fit under the cap. */
int tw__agent_reserve(tw_agent *agent, size_t n);
/* The same, leaving at least `keep` bytes of the cap free after them. */
int tw__agent_reserve_leaving(tw_agent *agent, size_t n, size_t keep);
void tw__agent_release(tw_agent *agent, size_t n);

/* Fills agent->instance with fresh random bytes. */
void tw__agent_new_instance(tw_agent *agent);

/* record.c */
void tw__record_fork_child(tw_agent *agent); /* after fork(): discard events */
void tw__record_free_rings(tw_agent *agent);
uint64_t tw__record_dropped_total(tw_agent *agent);
uint64_t tw__record_recorded_total(tw_agent *agent);
/* Strings cut and names replaced by the overflow name, every ring's. */
void tw__record_cuts(tw_agent *agent, uint64_t *cut, uint64_t *renamed);
/* The runner: it starts `batch`, which has `tasks` sync tasks (on the
 * loop thread); one of them has ended (after its FINISH or FAIL, on the
 * pool thread) or been skipped. Nothing for a refused batch or task, or
 * with tracing off. */
void tw__record_pool_in(tw_agent *agent, tw_id batch, uint64_t tasks);
void tw__record_pool_out(tw_agent *agent, tw_id task);
/* Bytes of the budget the resend buffer leaves for rings yet to be made
 * (RING_LATE_RINGS). */
size_t tw__record_late_keep(const tw_agent *agent);
/* Batches and tasks refused at admission, every ring's. */
void tw__record_refused(tw_agent *agent, uint64_t *batches, uint64_t *tasks);
/* The refused batches by the rule that refused them, every ring's. */
void tw__record_refused_why(tw_agent *agent,
                            uint64_t out[REFUSED_WHY_COUNT]);

/* Reads `n` bytes starting at byte offset `at` of a ring's slot memory,
 * wrapping at the end. */
void tw__ring_copy_out(const ring *r, uint64_t at, void *dst, size_t n);

/* sender.c */
/* 0 when url is a collector URL the sender can use, -1 otherwise. */
int tw__sender_check_url(const char *url);
int tw__sender_start(tw_agent *agent);
/* Drains and waits until everything recorded so far is acked. */
int tw__sender_flush(tw_agent *agent, unsigned timeout_ms);
/* Says goodbye (waiting at most goodbye_ms for its ack), stops the thread,
 * frees the sender. */
void tw__sender_stop(tw_agent *agent, unsigned goodbye_ms);
/* In a forked child: close the parent's collector connection and free its
 * sender without touching its thread or running its loop, and start a new
 * one. */
void tw__sender_fork_child(tw_agent *agent);
void tw__sender_stats(tw_agent *agent, tw_agent_stats *out);
/* Wakes the sender to drain now (tw__pace_nudge()): from any recording
 * thread, a system call only when no wakeup is pending already. */
void tw__sender_nudge(tw_agent *agent);
/* The last time the collector refused this agent (its ERROR reason), could
 * not be reached, or the agent closed a connection over the collector's
 * protocol: returns the code (a tw_refusal) and copies the one-line reason
 * into buf (NUL-terminated, cut to size); TW_REFUSAL_NONE and "" when
 * there was none since the sender started. Thread-safe. */
int tw__sender_refusal(tw_agent *agent, char *buf, size_t size);

/* Registry of live agents (agent.c), used at fork and thread exit. */
void tw__registry_lock(void);
void tw__registry_unlock(void);
/* The first live agent (follow registry_next); registry lock held. */
tw_agent *tw__registry_first(void);

#endif /* TW_AGENT_INTERNAL_H */
