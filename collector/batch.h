/*
 * batch - one unit of work handed from the event loop to the writer thread:
 * everything that goes into one SQLite transaction. The loop fills it (see
 * ingest.h), the writer commits it (see store.h), then the loop sends the
 * acks it lists and frees it. Only one thread touches a batch at a time.
 *
 * Task events are coalesced here: all events of one task that arrive while
 * a batch fills become one row write, an INSERT when the batch holds the
 * task's ENQUEUE, an UPDATE of the stored row otherwise.
 */
#ifndef TW_COLLECTOR_BATCH_H
#define TW_COLLECTOR_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "u64map.h"

/* An immutable string shared by the loop and the writer: an agent's
 * interned name or label. Lives until the collector exits. */
typedef struct istr {
  uint32_t len;
  char text[];
} istr;

/* Bytes copied from a frame into a batch's arena. */
typedef struct blob {
  const char *ptr;
  uint32_t len;
} blob;

/* Bump allocation for a batch's rows and copied strings, freed at once. */
typedef struct arena_chunk arena_chunk;
typedef struct arena {
  arena_chunk *head;
  arena_chunk *spare; /* chunks kept by arena_reset() */
  size_t used;        /* bytes handed out, for the backpressure watermark */
} arena;

void arena_init(arena *a);
void arena_fini(arena *a);
/* Forgets everything handed out, keeping the standard chunks for reuse:
 * a batch reused this way costs no allocation and no page fault. */
void arena_reset(arena *a);
void *arena_alloc(arena *a, size_t n);
blob arena_copy(arena *a, proto_str s);

/* Fields of a task row that the batch's events set. */
enum task_have {
  HAVE_ENQUEUE = 1,
  HAVE_START = 2,
  HAVE_END = 4,
  HAVE_ERROR = 8,
  HAVE_SKIP = 16,
  HAVE_DROP = 32,
  HAVE_THREAD = 64
};

typedef struct task_row {
  int64_t id;
  int64_t agent;
  int64_t batch;
  int64_t thread;
  int64_t enqueued_at; /* microseconds since the epoch */
  int64_t started_at;
  int64_t finished_at;
  int64_t skipped_after;
  const istr *name;
  blob error_type, error_message, error_detail, drop_reason;
  uint32_t position;
  uint8_t mode;
  uint8_t status;
  uint8_t have;
  uint8_t update; /* 1: the row is (maybe) stored already; UPDATE it */
} task_row;

typedef struct batch_row {
  int64_t id;
  int64_t agent;
  int64_t created_at;
  const istr *label; /* NULL when none */
} batch_row;

/* A LINK event: the batch's request's W3C traceparent. */
typedef struct link_row {
  int64_t batch;
  blob traceparent;
} link_row;

typedef struct string_row {
  int64_t agent;
  uint32_t id;
  const istr *text;
} string_row;

enum agent_op_kind {
  AGENT_OP_NEW,        /* insert the agents row; connected */
  AGENT_OP_CONNECT,    /* a known instance connected again */
  AGENT_OP_DISCONNECT, /* its connection ended */
  AGENT_OP_ENDED,      /* clean GOODBYE */
  AGENT_OP_HEALTH,     /* dropped = a, reconnects = b, refused whole:
                          batches = c, tasks = d */
  AGENT_OP_LOST,       /* turn queued and running tasks into lost, at = a */
  AGENT_OP_BIND        /* a known instance's key (where unset), subject */
};

typedef struct agent_op {
  int kind;
  int64_t agent;
  int64_t at; /* microseconds */
  int64_t a, b;
  int64_t c, d; /* AGENT_OP_HEALTH */
  /* AGENT_OP_NEW only. */
  uint8_t instance[PROTO_INSTANCE_SIZE];
  blob service, host;
  int64_t pid;
  int64_t started_at;
  /* AGENT_OP_NEW and AGENT_OP_BIND: who owns the instance (auth.h). */
  uint8_t key[PROTO_KEY_SIZE];
  int has_key;
  blob subject; /* its TLS client certificate's subject; ptr NULL: none */
} agent_op;

/* Per agent and batch: what the agents row and the ack need. */
typedef struct agent_progress {
  int64_t agent;
  void *owner;       /* the loop's agent (ingest.h); the writer ignores it */
  uint64_t next_seq; /* ack value once committed */
  int64_t events;    /* events stored by this batch */
  int64_t last_event_at;
  int64_t received_at; /* collector's clock (µs) at the newest event */
} agent_progress;

#define BATCH_LATENCY_SAMPLES 4096

typedef struct wbatch {
  arena mem;
  task_row **rows;
  size_t nrows, caprows;
  batch_row *batches;
  size_t nbatches, capbatches;
  string_row *strings;
  size_t nstrings, capstrings;
  link_row *links;
  size_t nlinks, caplinks;
  agent_op *ops;
  size_t nops, capops;
  agent_progress *progress;
  size_t nprogress, capprogress;
  u64map pending; /* task id -> task_row, while the batch fills */
  uint64_t events;
  uint64_t refused; /* events received and not applied (ingest.c) */
  uint64_t clamped; /* times brought into the sane window (ingest.c) */
  uint64_t generation;
  /* Event times (ns) sampled for the event-to-commit latency. */
  int64_t samples[BATCH_LATENCY_SAMPLES];
  uint32_t nsamples;
  int prune; /* run a retention step in this transaction */
  /* An agent waits for the ack of events in this batch (its FLUSH or its
   * GOODBYE): it is due as a full one is (wbatch_commit_wait_ms()). */
  int flush_wanted;
  /* Rows of export_queue (docs/schema.md) to insert in this transaction:
   * batches whose last open task ends in it, numbered export_seq on. */
  int64_t *exports;
  size_t nexports, capexports;
  int64_t export_seq;
  /* Set by the writer. */
  int failed;
  int64_t committed_ns;
  /* Milliseconds until a task the writer holds in memory is due to be
   * written (store.h, hold_ms), or -1 when it holds none: the loop then
   * commits a batch, even an empty one. */
  int64_t held_due_ms;
  /* The hold the acks advised while this batch's events came (hold_ms,
   * set by the loop): an agent that takes it kept a task's events up to
   * that long before writing them, so the writer holds a task in flight
   * that much less (store.c, sort_rows()). */
  int64_t agent_hold_ms;
} wbatch;

wbatch *wbatch_new(uint64_t generation);
void wbatch_free(wbatch *b);
/* Empties b for reuse as batch `generation`: its memory is kept (within
 * bounds: an array grown past WBATCH_KEEP_BYTES by a burst is freed), so
 * that the loop does not allocate and fault in a batch's worth of memory
 * for every transaction. */
void wbatch_reset(wbatch *b, uint64_t generation);
#define WBATCH_KEEP_BYTES (256 * 1024)
int wbatch_empty(const wbatch *b);
/* Appends a zeroed element to one of the batch's arrays. */
task_row *wbatch_add_row(wbatch *b);
batch_row *wbatch_add_batch(wbatch *b);
string_row *wbatch_add_string(wbatch *b);
link_row *wbatch_add_link(wbatch *b);
agent_op *wbatch_add_op(wbatch *b, int kind, int64_t agent, int64_t at);
agent_progress *wbatch_add_progress(wbatch *b);
/* Queues store batch id `batch` for the OTLP export (export_queue). */
void wbatch_add_export(wbatch *b, int64_t batch);
/* Bytes the batch holds, for the backpressure watermark. */
size_t wbatch_bytes(const wbatch *b);

/*
 * Group commit. A transaction costs about the pages it dirties, whatever
 * its rows: one agent's batch of 60 events wrote 570 KB of WAL (nine
 * pages of 64 KiB, the page size of stores then: the tasks, their
 * indexes, the agents row, the rollups) and cost about 1 ms of CPU, so a
 * server sending 1,000 events a second cost the collector 16 µs of CPU
 * and 9.6 KB written per event at one transaction every 50 ms. A batch of at least BATCH_FULL_EVENTS events,
 * or one that holds an agent's GOODBYE (the agent waits for that ack to
 * exit) or a FLUSH (the agent waits in tw_agent_flush()), commits once
 * it is flush_ms old; a smaller one waits until it is
 * BATCH_IDLE_FACTOR times that old, so that its events pay for the pages.
 * At 100,000 events a second a batch fills past BATCH_FULL_EVENTS within
 * the 50 ms of the default and commits as before; so does the last one of
 * a burst (early: the batch before it was full), whose agents may be
 * waiting for their acks (an agent older than FLUSH), and one that brings
 * held tasks due (early too: store.h, hold_ms).
 */
#define BATCH_FULL_EVENTS 4096
#define BATCH_IDLE_FACTOR 5
/* Milliseconds until b, age_ms old, is due for its transaction; 0 or
 * less: due now. */
int64_t wbatch_commit_wait_ms(const wbatch *b, int64_t age_ms,
                              int64_t flush_ms, int early);

/* The hold_ms the ACKs advise (protocol version 6, docs/protocol.md): how
 * long an agent may keep its new events before writing them. As long as a
 * batch waits for its commit anyway, so that the hold costs the events
 * little latency and the agents' senders far fewer wakeups, at a rate
 * events_per_s (of about the last second: hold_advice_count(), below):
 *  - below BATCH_FULL_EVENTS per BATCH_IDLE_FACTOR times flush_ms (about
 *    16,000 a second at the default 50 ms), almost every batch waits
 *    that long from its first event: BATCH_HOLD_FACTOR times flush_ms
 *    (250 ms), and an agent's sender wakes about a sixth as often as its
 *    own pace (PACE_FLOW_MS) would have it;
 *  - up to BATCH_FULL_EVENTS per flush_ms (about 82,000 a second), a
 *    batch waits until it holds BATCH_FULL_EVENTS: the time that takes at
 *    the rate (250 ms down to 50), where the agent's own pace drains every
 *    20 ms (PACE_LIVE_MS);
 *  - faster, batches commit flush_ms after their first event and the acks
 *    advise nothing (0): the agent's own pace, and the event-to-commit
 *    target (p99 100 ms at 100,000 a second) as before.
 * An event then reaches the store up to about twice the hold after it was
 * recorded (half a second below the first mark), and `top` shows it
 * within a second (the figures: docs/collector.md, "Transactions"). A
 * collector already advising (`holding`) keeps on up to the second mark;
 * one that is not starts below BATCH_HOLD_ENTER of it, so a rate near the
 * mark does not flip the advice at every window. */
#define BATCH_HOLD_FACTOR BATCH_IDLE_FACTOR
#define BATCH_HOLD_ENTER 0.75
int64_t wbatch_hold_ms(double events_per_s, int64_t flush_ms, int holding);

/* The acks' hold_ms as the loop's batches go to the writer: from the rate
 * of each whole window of at least HOLD_WINDOW_MS (wbatch_hold_ms()),
 * and lowered at once by a part of HOLD_RISE_MS or more whose own rate,
 * taken as HOLD_RISE times the rate, advises less: a quiet server turned
 * busy, whose agents hold their events no longer than the collector's
 * batches then wait within about that (past twice the second mark, not at
 * all), and the window it happened in advises no more at its end. A part
 * only past the rate lowers nothing: a rate comes in bursts (a server's
 * clients that all wait alike after a response send their requests
 * together, and the agents' drains, held, come about hold_ms apart), and
 * a quarter second of two bursts ended the advice of one at two thirds of
 * the first mark, every other second (notify_server at 1,000 requests a
 * second from 256 connections: 10,600 events a second, the agent's sender
 * woke 13.5-14.4 times a second instead of 10.5). */
#define HOLD_WINDOW_MS 1000
#define HOLD_RISE_MS 250
#define HOLD_RISE 2.0
typedef struct hold_advice {
  int64_t since_ms, part_since_ms; /* 0: nothing counted yet */
  uint64_t events, part_events;
  /* The least the current window's parts advised (each at its rate over
   * HOLD_RISE); UINT32_MAX before one ended. */
  uint32_t cap_ms;
  uint32_t hold_ms; /* the advice: 0 until a first window ended */
} hold_advice;

/* Counts `events` handed to the writer at now_ms; returns h->hold_ms. */
uint32_t hold_advice_count(hold_advice *h, int64_t now_ms, uint64_t events,
                           int64_t flush_ms);

#endif /* TW_COLLECTOR_BATCH_H */
