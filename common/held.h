/*
 * held - the blob of the store's table inflight (docs/schema.md): the
 * tasks in flight that the collector holds in memory instead of in tasks
 * (collector/inflight.h), made durable as one blob per transaction. The
 * collector writes it and reads it back after a crash; `query --follow`
 * reads it to learn which tasks exist though no row shows them yet.
 *
 * The layout: a 4-byte format number (HELD_FORMAT), the task count (4
 * bytes), then per task id, agent, batch, thread, enqueued_at, started_at
 * (8 bytes each), position (4), mode, status, have (1 each; `have` as
 * the collector's HAVE_ bits: 1 enqueued, 2 started, 64 thread known),
 * the name's length (4) and bytes. Integers are little-endian.
 */
#ifndef TW_HELD_H
#define TW_HELD_H

#include <stddef.h>
#include <stdint.h>

#define HELD_FORMAT 1

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

/*
 * Calls each(t, arg) for every task of a blob: t->name points into the
 * blob. Returns the number of tasks, or -1 when the blob is malformed or
 * of another format (the tasks before the bad one were passed on).
 */
long held_decode(const void *blob, size_t n,
                 void (*each)(const held_task *t, void *arg), void *arg);

#endif /* TW_HELD_H */
