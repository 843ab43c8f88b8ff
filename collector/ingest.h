/*
 * ingest - the event loop's view of the agents: who is connected, which
 * sequence numbers were received and committed, each instance's interned
 * strings, and the batch (batch.h) that received events are coalesced
 * into until the writer takes it. Everything here runs on the loop thread.
 *
 * Validation happens here, so a bad event closes its connection before
 * anything reaches SQLite: sequence gaps, undefined string ids, ids that
 * do not fit the store's 40 local bits. Strings past the caps of guard.h
 * are not kept (the names that use them read "(other)").
 *
 * A task's state only moves forward: queued -> running -> one final state.
 * An event that would move it back or replace what it has (a second
 * ENQUEUE, START or end) is counted (wbatch.refused), logged at powers of
 * two, and not applied; the store's UPDATE keeps to the same rule for
 * tasks of earlier transactions (store.c).
 */
#ifndef TW_COLLECTOR_INGEST_H
#define TW_COLLECTOR_INGEST_H

#include <sqlite3.h>
#include <stdint.h>

#include "batch.h"
#include "proto.h"

typedef struct ingest ingest;
typedef struct agent agent;

/*
 * Creates the loop's state. db is a read-only connection to the store,
 * used to look up instances that come back after a restart; ingest does
 * not own it. lost_after_ms is the grace period before an instance that
 * disconnected without GOODBYE has its open tasks marked lost.
 * max_skew_us is how far ahead of the collector's clock an event's time
 * may be: a later time, or one before its instance started, is clamped
 * and counted (wbatch.clamped). now_ms is
 * the loop's monotonic clock. Instances with queued or running tasks in
 * the store start that grace period now. Returns NULL (logged) when the
 * store cannot be read.
 */
ingest *ingest_new(sqlite3 *db, int64_t lost_after_ms, int64_t max_skew_us,
                   int64_t now_ms);
/* Frees the state and every agent; the current batch too. */
void ingest_free(ingest *in);

/*
 * Whether a HELLO may speak for its instance, given what the collector
 * knows of the instance's owner (auth.h): an instance bound to a key
 * needs that key (proven by the caller: key NULL means no proof). An
 * unknown instance, or one bound to no key, may be spoken for.
 * Returns 0; -1 with a static *reason when refused; -2 with *reason when
 * the store cannot be read (logged). Reads the store only for an instance
 * not in memory, and loads nothing.
 */
int ingest_owner_check(ingest *in, const uint8_t *instance, const uint8_t *key,
                       const char **reason);

/*
 * A HELLO arrived (and ingest_owner_check() allowed it). Finds or creates
 * the instance's agent and records the connection in the current batch;
 * key (PROTO_KEY_SIZE bytes), when not NULL, is recorded as the
 * instance's owner where it has none yet; subject (a TLS client
 * certificate's), when not NULL, as its authenticated identity. Returns NULL
 * with a static *reason when the store cannot be read (logged): whether the
 * instance is known is then unknown, and treating it as new would store its
 * events twice. The caller attaches its connection with agent_set_conn().
 */
agent *ingest_hello(ingest *in, const proto_hello *h, const uint8_t *key,
                    const char *subject, int64_t now_us, const char **reason);

/* Every event of the instance below this sequence number is committed. */
uint64_t agent_commit_seq(const agent *a);
int64_t agent_id(const agent *a);
void *agent_conn(const agent *a);
void agent_set_conn(agent *a, void *conn);

/*
 * An EVENTS payload from a's connection, whose handshake agreed on protocol
 * `version`. Returns 0, or -1 with a static *reason when the payload is
 * malformed or breaks the protocol; events before the bad one are kept
 * (they were valid).
 */
int ingest_events(ingest *in, agent *a, uint16_t version, const uint8_t *p,
                  size_t n, const char **reason);
/* A GOODBYE. Returns 0 or -1 with *reason. */
int ingest_goodbye(ingest *in, agent *a, uint64_t last_seq,
                   const char **reason);
/* FLUSH: a waits for the ack of its events up to last_seq, so the batch
 * that holds the last of them is due as a full one (batch.h). -1 with
 * *reason when last_seq is past the events received. */
int ingest_flush(ingest *in, agent *a, uint64_t last_seq,
                 const char **reason);
/* a's connection ended (after agent_set_conn(a, NULL) by the caller). */
void ingest_disconnect(ingest *in, agent *a, int64_t now_us, int64_t now_ms);

/* Turns instances whose grace period ran out into AGENT_OP_LOST. */
void ingest_tick(ingest *in, int64_t now_us, int64_t now_ms);
/* Asks for a retention step in the current batch. */
void ingest_request_prune(ingest *in);

/* The batch being filled (never NULL). */
wbatch *ingest_current(ingest *in);
/* Hands the current batch over (the caller owns it) and starts a new one. */
wbatch *ingest_take(ingest *in);
/* Gives back a batch the writer is done with (after ingest_committed()),
 * for reuse as a later one; ingest owns it from now on. */
void ingest_recycle(ingest *in, wbatch *b);

/*
 * The writer committed b: records the committed sequence numbers and calls
 * ack(conn, next_seq, arg) for every instance of b that is connected. The
 * caller still owns b.
 */
void ingest_committed(ingest *in, wbatch *b,
                      void (*ack)(void *conn, uint64_t next_seq, void *arg),
                      void *arg);

/* Number of agents known in memory (for logs and tests). */
size_t ingest_agent_count(const ingest *in);

#endif /* TW_COLLECTOR_INGEST_H */
