/*
 * store - the collector's write side of the SQLite store: opens it (WAL,
 * the schema of common/schema.c), and commits one batch (batch.h) per
 * transaction through prepared statements. It also keeps the per-minute
 * rollups and prunes old rows in small steps. Used by one thread at a time
 * (the writer thread, or a unit test).
 */
#ifndef TW_COLLECTOR_STORE_H
#define TW_COLLECTOR_STORE_H

#include <stdint.h>

#include "batch.h"

typedef struct store store;

typedef struct store_config {
  const char *path;
  int sync_full;          /* synchronous=FULL instead of NORMAL */
  int64_t retain_us;      /* 0: keep tasks forever */
  int64_t retain_fail_us; /* failed, skipped, dropped, lost; 0: retain_us */
  int64_t max_tasks;      /* 0: no limit */
  /* An instance's agents row and names go once it has been disconnected
   * this long and none of its tasks and batches are left; 0: never. */
  int64_t agent_grace_us;
  /* WAL size that starts a checkpoint; 0: the default, 128 MiB (set
   * otherwise by tests, to see checkpoints happen in a small store). */
  int64_t checkpoint_bytes;
  /* How long a task in flight may stay in the writer's memory
   * (inflight.h) before it is written as a queued or running row; a task
   * that ends sooner is written once, final. 0: every task is written in
   * the transaction that receives its ENQUEUE. */
  int64_t hold_ms;
} store_config;

/* The collector's hold_ms: readers see a task queued or running within a
 * quarter of a second of its ENQUEUE's arrival (plus the commit interval),
 * less the hold its agent took (batch.h, agent_hold_ms). */
#define STORE_HOLD_MS 250

/* Statistics of the writes so far. */
typedef struct store_stats {
  uint64_t transactions;
  uint64_t events;
  uint64_t rows_inserted;
  uint64_t rows_updated;
  uint64_t rows_held; /* tasks held in memory at first (inflight.h) */
  /* Task events for a task the store does not know that could not be
   * stored either (an orphan row that broke a constraint): 0 unless
   * something is wrong. */
  uint64_t updates_unmatched;
  uint64_t orphans;        /* tasks stored without their ENQUEUE (yet) */
  uint64_t events_refused; /* late or repeated events, not applied */
  uint64_t times_clamped;  /* event times brought into the sane window */
  uint64_t tasks_lost;
  uint64_t tasks_pruned;
  uint64_t agents_pruned;
} store_stats;

/*
 * Opens or creates the store at cfg->path, as its only writer: the file is
 * locked for this process until store_close() (store.c says how). Marks
 * every agent that an earlier run left connected as disconnected, and
 * records this process in meta as the store's collector. Returns 0, or -1
 * with a one-line message in *err (free() it): another collector holds
 * the store (named by pid and addresses when it recorded them), the file
 * is not a taskwatch store (left unchanged), not a database, or of a newer
 * schema version.
 */
int store_open(const store_config *cfg, store **out, char **err);
/* Closes the connections, then releases the lock. NULL is a no-op. */
void store_close(store *s);

/*
 * Records the addresses the collector listens on (meta collector_listen),
 * for a second collector to name. Call before the writer thread starts.
 * Returns SQLITE_OK or the SQLite error (logged; the store works on).
 */
int store_set_listeners(store *s, const char *const *urls, size_t n);

/*
 * Gives up every write from now on: the statement running in another
 * thread is interrupted, a wait for a lock ends, and store_write() fails
 * with SQLITE_INTERRUPT. For a shutdown whose time is up. Any thread; s
 * must stay open until it returns.
 */
void store_abort(store *s);

/*
 * Writes b in one transaction: agents, strings, batches, task rows,
 * instances turned lost, rollups, a retention step, and the tasks held in
 * memory (see hold_ms; their set is rewritten in the table inflight in the
 * same transaction, so whatever b holds is as durable as what it writes).
 * Returns 0 or an SQLite error code (the transaction is rolled back, the
 * held tasks are as before; b can be written again). Sets
 * b->committed_ns. A constraint violation of one row (a hostile agent
 * repeating an id) skips that row and is not an error. The names of held
 * tasks are b's (batch.h): they must live until store_settle().
 */
int store_write(store *s, wbatch *b);

/*
 * Writes every held task as its row, queued or running, and empties the
 * table inflight: after a clean stop the store holds every task for its
 * readers. (After a crash store_open() does the same from the table.)
 * Returns 0 or an SQLite error code.
 */
int store_settle(store *s);

void store_get_stats(const store *s, store_stats *out);

#endif /* TW_COLLECTOR_STORE_H */
