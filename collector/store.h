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
} store_config;

/* Statistics of the writes so far. */
typedef struct store_stats {
  uint64_t transactions;
  uint64_t events;
  uint64_t rows_inserted;
  uint64_t rows_updated;
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
 * instances turned lost, rollups, a retention step. Returns 0 or an SQLite
 * error code (the transaction is rolled back; b can be written again).
 * Sets b->committed_ns. A constraint violation of one row (a hostile agent
 * repeating an id) skips that row and is not an error.
 */
int store_write(store *s, wbatch *b);

void store_get_stats(const store *s, store_stats *out);

#endif /* TW_COLLECTOR_STORE_H */
