/*
 * track - the loop's table of the tasks in flight (queued or running) and
 * of the agents it has seen, from which the exports learn what a batch
 * handed to the writer will change once committed: tasks that reach a
 * final state (with their service, name, queue wait and run time), tasks
 * that start, agents that connect, disconnect or report drops, and batches
 * whose last open task ends (for the OTLP export's queue, written in the
 * same transaction).
 *
 * A task's events may span many batches (a task runs for minutes), and an
 * UPDATE row of the writer carries only what its events set; the table
 * keeps what the later rows need: the task's batch, its (service, task)
 * series, when it was enqueued and started, and its state. It is rebuilt
 * from the store's open tasks when the collector starts, and holds at most
 * max_tasks entries (documented in docs/export.md); a task enqueued while
 * it is full is counted as untracked, and its final row is looked up in
 * the store instead.
 *
 * Loop thread only.
 */
#ifndef TW_COLLECTOR_TRACK_H
#define TW_COLLECTOR_TRACK_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "metrics.h"

/* The default bound of the table (about 80 bytes a task). */
#define TRACK_DEFAULT_MAX_TASKS 262144

/* One change to the metrics, applied once its batch is committed. */
enum track_op_kind {
  TRACK_FINAL,     /* series `index` got a task in `status`; a: wait, b: run */
  TRACK_PROGRESS,  /* service `index`: tasks in `status` change by a */
  TRACK_CONNECTED, /* service `index`: agents connected change by a */
  TRACK_DROPS      /* service `index`: agents dropped a more events, tasks
                      or batches (status: a metrics_drop) */
};

typedef struct track_op {
  uint8_t kind;
  uint8_t status;
  uint32_t index;
  int64_t a, b;
} track_op;

typedef struct track_ops {
  track_op *ops;
  size_t n, cap;
} track_ops;

typedef struct track track;

/*
 * Creates the table and loads the store's queued and running tasks (and
 * their agents) through db, a read-only connection the caller keeps open
 * (used again for lookups of agents and tasks the table does not know).
 * m gives the service and series numbers; borrowed.
 */
track *track_new(metrics *m, sqlite3 *db, size_t max_tasks);
void track_free(track *t);

/*
 * Works out what committing b will change: appends its metrics changes to
 * ops, and when `exports` is set, the batches it completes to b's exports
 * (wbatch_add_export). The table moves on to the state after b. Call for
 * every batch, in the order they go to the writer.
 */
void track_batch(track *t, wbatch *b, track_ops *ops, int exports);

/* Applies and empties ops. */
void track_apply(metrics *m, track_ops *ops);
void track_ops_fini(track_ops *ops);

/* Tasks in the table, and those that found it full. */
size_t track_count(const track *t);
uint64_t track_untracked(const track *t);

#endif /* TW_COLLECTOR_TRACK_H */
