/*
 * inflight - the writer's tasks in flight: tasks enqueued and not final
 * yet that the writer holds in memory instead of in the tasks table, so
 * that a task whose events span several transactions is written once, at
 * its final state (one INSERT), instead of once per transaction (an
 * INSERT, then UPDATEs that rewrite the row and move it through the
 * partial index tasks_unusual).
 *
 * What is held is made durable before the ack all the same: each
 * transaction that changes the set appends to the table inflight
 * (docs/schema.md) one blob of what changed: the tasks it held or
 * changed and the ids it let go (inflight_encode()). No index is touched,
 * and a transaction writes O(changes), not O(held tasks): at 40,000 tasks
 * a second the set is full (INFLIGHT_MAX, about 700 KB as a blob), and it
 * was written whole by each of 8 to 20 transactions a second. When the
 * log has grown to a few times the size of the set, the store replaces it
 * by one blob of the whole set.
 *
 * The set lives in one dense array with an index by id, so that a copy of
 * the set as of the last commit (inflight_save(), inflight_restore()) is
 * one memcpy: a transaction that fails leaves the set as it was.
 *
 * Used by the writer thread alone (store.c says when a task is held, and
 * when it is written).
 */
#ifndef TW_COLLECTOR_INFLIGHT_H
#define TW_COLLECTOR_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "held.h"
#include "u64map.h"

/* Tasks held at most; past it a new task is written at once. About 64
 * bytes each in memory, and 60 plus its name in the blob. */
#define INFLIGHT_MAX 8192

/* A held task: the columns of its row that its events set so far. Never
 * final, so it has no end, error, skip or drop. */
typedef struct inflight_task {
  int64_t id;
  int64_t agent;
  int64_t batch;
  int64_t thread;
  int64_t enqueued_at;
  int64_t started_at;
  int64_t since_ms; /* the writer's monotonic clock when it was held */
  const istr *name; /* the loop's interned name (batch.h) */
  uint32_t position;
  uint8_t mode;
  uint8_t status;
  uint8_t have; /* HAVE_ENQUEUE, HAVE_START, HAVE_THREAD */
  uint8_t logged;  /* in the table inflight as of the last encode */
  uint8_t touched; /* changed since the last encode */
} inflight_task;

typedef struct inflight {
  inflight_task *items;
  size_t n, cap;
  u64map index; /* id -> position in items + 1 */
  inflight_task *saved;
  size_t nsaved, capsaved;
  int changed; /* since inflight_save() */
  int64_t *touched; /* ids changed since the last encode (some let go) */
  size_t ntouched, captouched;
  int64_t *gone; /* ids of logged tasks let go since the last encode */
  size_t ngone, capgone;
} inflight;

void inflight_init(inflight *f);
void inflight_fini(inflight *f);

/* The held task of that id, or NULL. The pointer is good until the set
 * changes. */
inflight_task *inflight_get(const inflight *f, int64_t id);
/* Holds a new task of id (not held yet), zeroed but for its id. */
inflight_task *inflight_add(inflight *f, int64_t id);
/* Lets go of t (from inflight_get() or items): the last task moves into
 * its place, so a caller walking items looks at the same index again. */
void inflight_remove(inflight *f, inflight_task *t);
/* Marks t changed in place. */
void inflight_touch(inflight *f, inflight_task *t);

/* Keeps a copy of the set, to go back to with inflight_restore() (which
 * also forgets what was encoded since: the transaction that would have
 * logged it failed). */
void inflight_save(inflight *f);
void inflight_restore(inflight *f);

/* What changed since the last encode (whole: the whole set, with no ids
 * let go) as a blob of the table inflight (common/held.h), into *buf
 * (grown as needed, *cap its size); returns its length. The tasks it
 * holds count as logged from now on. */
size_t inflight_encode(inflight *f, int whole, unsigned char **buf,
                       size_t *cap);
/* Bytes of the whole set as one blob. */
size_t inflight_whole_size(const inflight *f);
/* A task of the blob (held_decode()) into *t, named name. */
void inflight_from_blob(inflight_task *t, const held_task *h,
                        const istr *name);

#endif /* TW_COLLECTOR_INFLIGHT_H */
