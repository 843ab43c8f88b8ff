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
  uint64_t updates_unmatched; /* task events whose task row never arrived */
  uint64_t tasks_lost;
  uint64_t tasks_pruned;
  uint64_t agents_pruned;
} store_stats;

/*
 * Opens or creates the store at cfg->path and marks every agent that an
 * earlier run left connected as disconnected. Returns 0, or -1 with a
 * one-line message in *err (free() it).
 */
int store_open(const store_config *cfg, store **out, char **err);
void store_close(store *s);

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
