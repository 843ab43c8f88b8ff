/*
 * rows - the writer's new rows as SQLite virtual tables, so that one
 * statement, INSERT INTO tasks SELECT ... FROM taskwatch_new_tasks,
 * inserts a whole transaction's rows.
 *
 * Why: a prepared INSERT per row opens and closes a cursor on the table
 * and each index for every row, and every index insert descends from the
 * root. One statement keeps the cursors open across rows, and SQLite then
 * appends to an index whose keys grow (times, per-agent ids) without
 * searching: about 1.4x the rows per second of the per-row loop here, with
 * the production indexes (bench/ingest).
 *
 * The tables exist only on the writer's connection (eponymous, registered
 * by rows_register, never in the schema), are read-only and usable only
 * from top-level SQL (SQLITE_VTAB_DIRECTONLY). Their columns are those of
 * tasks and batches (docs/schema.md), in the same order.
 */
#ifndef TW_COLLECTOR_ROWS_H
#define TW_COLLECTOR_ROWS_H

#include <sqlite3.h>
#include <stddef.h>

#include "batch.h"

typedef struct rows rows;

enum rows_kind {
  ROWS_TASKS,   /* taskwatch_new_tasks: an array of task_row pointers */
  ROWS_BATCHES, /* taskwatch_new_batches: an array of batch_row */
  ROWS_KINDS
};

/* Registers both tables on db. The handle lives until db is closed.
 * Returns an SQLite code. */
int rows_register(sqlite3 *db, rows **out);

/* What the table of that kind yields until the next feed: n items of
 * items, which must stay valid while a statement reads them. */
void rows_feed(rows *r, int kind, const void *items, size_t n);

#endif /* TW_COLLECTOR_ROWS_H */
