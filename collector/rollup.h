/*
 * rollup - per-minute, per-task-name summaries (counts by final state and
 * wait and run percentiles) built in memory from the rows the writer
 * commits, so history stays answerable after raw rows are pruned. A task
 * counts in the minute of its finished_at. Buckets of the last few minutes
 * stay in memory; counts reach the store as deltas, percentiles as the
 * value over everything this process saw for that minute.
 */
#ifndef TW_COLLECTOR_ROLLUP_H
#define TW_COLLECTOR_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define ROLLUP_MINUTE_US INT64_C(60000000)

typedef struct rollup rollup;

typedef struct rollup_row {
  int64_t minute; /* start of the minute, microseconds since the epoch */
  const char *name;
  size_t name_len;
  int64_t counts[SCHEMA_STATUS_COUNT]; /* new since the last flush */
  int64_t wait_p[3], run_p[3];         /* p50, p95, p99; -1 when unknown */
} rollup_row;

rollup *rollup_new(void);
void rollup_free(rollup *r);

/* Counts one task that reached a final state. wait_us and run_us are
 * negative when unknown. */
void rollup_add(rollup *r, const char *name, size_t len, int64_t finished_at,
                int status, int64_t wait_us, int64_t run_us);

/*
 * Calls emit for every bucket changed since the last flush, then forgets
 * the deltas and the buckets too old to change much. Returns the first
 * non-zero return of emit, after which emit is not called again.
 */
int rollup_flush(rollup *r, int (*emit)(void *arg, const rollup_row *row),
                 void *arg);

/* The transaction that holds the flushed rows committed: what was added
 * since the last commit or rollback stays. */
void rollup_commit(rollup *r);

/* It was rolled back: everything added since the last commit or rollback
 * is forgotten, the tasks behind percentiles included (the caller adds the
 * same tasks again when it retries). */
void rollup_rollback(rollup *r);

#endif /* TW_COLLECTOR_ROLLUP_H */
