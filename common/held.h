/*
 * held - the blobs of the store's table inflight (docs/schema.md): the
 * tasks in flight that the collector holds in memory instead of in tasks
 * (collector/inflight.h). The table is a log: each transaction that
 * changes the held set appends one blob with the tasks it held or changed
 * and the ids it let go (written as rows), so a transaction writes what
 * changed, not the whole set; now and then the collector replaces the log
 * by one blob of the whole set. Replayed in order, the blobs give the set.
 * The collector writes them and replays them after a crash; `query
 * --follow` reads them to learn which tasks exist though no row shows
 * them yet.
 *
 * The layout: a 4-byte format number, the task count (4 bytes), then per
 * task id, agent, batch, thread, enqueued_at, started_at (8 bytes each),
 * position (4), mode, status, have (1 each; `have` as the collector's
 * HAVE_ bits: 1 enqueued, 2 started, 64 thread known), the name's length
 * (4) and bytes; format 2 (schema version 8) then the count of ids let go
 * (4 bytes) and the ids (8 bytes each). Format 1 (versions 6 and 7: one
 * blob, the whole set) has no such ids. Integers are little-endian.
 */
#ifndef TW_HELD_H
#define TW_HELD_H

#include <stddef.h>
#include <stdint.h>

#define HELD_FORMAT 2

typedef struct held_task {
  int64_t id, agent, batch, thread, enqueued_at, started_at;
  uint32_t position;
  uint8_t mode, status, have;
  const char *name; /* not NUL-terminated */
  uint32_t name_len;
} held_task;

/* Bytes of the blob's header, and of one task with a name of len bytes. */
#define HELD_HEADER 8
size_t held_task_size(uint32_t name_len);
/* Writes the header for `count` tasks at p; returns p past it. */
unsigned char *held_put_header(unsigned char *p, uint32_t count);
/* Writes t at p (held_task_size() bytes); returns p past it. */
unsigned char *held_put(unsigned char *p, const held_task *t);
/* Bytes of the ids let go, n of them, after the tasks. */
size_t held_gone_size(size_t n);
/* Writes the n ids let go at p (held_gone_size(n) bytes); returns p past
 * them. */
unsigned char *held_put_gone(unsigned char *p, const int64_t *ids, size_t n);

/*
 * Calls each(t, arg) for every task of a blob, then gone(id, arg) (unless
 * NULL) for every id it lets go: t->name points into the blob. Returns
 * the number of tasks, or -1 when the blob is malformed or of another
 * format (what came before the bad part was passed on).
 */
long held_decode_log(const void *blob, size_t n,
                     void (*each)(const held_task *t, void *arg),
                     void (*gone)(int64_t id, void *arg), void *arg);
/* held_decode_log() without the ids let go. */
long held_decode(const void *blob, size_t n,
                 void (*each)(const held_task *t, void *arg), void *arg);

#endif /* TW_HELD_H */
