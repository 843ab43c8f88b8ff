/*
 * held - the inflight blob's encoder and decoder. See held.h.
 */
#include "held.h"

#include <string.h>

/* Bytes of a task before its name. */
#define FIXED (6 * 8 + 4 + 3 + 4)

static unsigned char *put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    *p++ = (unsigned char)(v >> (8 * i));
  return p;
}

static unsigned char *put_i64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++)
    *p++ = (unsigned char)(u >> (8 * i));
  return p;
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)p[i] << (8 * i);
  return v;
}

static int64_t get_i64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return (int64_t)v;
}

size_t held_task_size(uint32_t name_len) {
  return FIXED + (size_t)name_len;
}

unsigned char *held_put_header(unsigned char *p, uint32_t count) {
  p = put_u32(p, HELD_FORMAT);
  return put_u32(p, count);
}

unsigned char *held_put(unsigned char *p, const held_task *t) {
  p = put_i64(p, t->id);
  p = put_i64(p, t->agent);
  p = put_i64(p, t->batch);
  p = put_i64(p, t->thread);
  p = put_i64(p, t->enqueued_at);
  p = put_i64(p, t->started_at);
  p = put_u32(p, t->position);
  *p++ = t->mode;
  *p++ = t->status;
  *p++ = t->have;
  p = put_u32(p, t->name_len);
  memcpy(p, t->name, t->name_len);
  return p + t->name_len;
}

size_t held_gone_size(size_t n) {
  return 4 + 8 * n;
}

unsigned char *held_put_gone(unsigned char *p, const int64_t *ids, size_t n) {
  p = put_u32(p, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    p = put_i64(p, ids[i]);
  return p;
}

long held_decode(const void *blob, size_t n,
                 void (*each)(const held_task *t, void *arg), void *arg) {
  return held_decode_log(blob, n, each, NULL, arg);
}

long held_decode_log(const void *blob, size_t n,
                     void (*each)(const held_task *t, void *arg),
                     void (*gone)(int64_t id, void *arg), void *arg) {
  const unsigned char *p = blob, *end = p + n;
  if (blob == NULL || n < HELD_HEADER)
    return -1;
  uint32_t format = get_u32(p);
  if (format != 1 && format != HELD_FORMAT)
    return -1;
  uint32_t count = get_u32(p + 4);
  p += HELD_HEADER;
  for (uint32_t k = 0; k < count; k++) {
    if ((size_t)(end - p) < FIXED)
      return -1;
    held_task t;
    t.id = get_i64(p);
    t.agent = get_i64(p + 8);
    t.batch = get_i64(p + 16);
    t.thread = get_i64(p + 24);
    t.enqueued_at = get_i64(p + 32);
    t.started_at = get_i64(p + 40);
    t.position = get_u32(p + 48);
    t.mode = p[52];
    t.status = p[53];
    t.have = p[54];
    t.name_len = get_u32(p + 55);
    p += FIXED;
    if ((size_t)(end - p) < t.name_len)
      return -1;
    t.name = (const char *)p;
    each(&t, arg);
    p += t.name_len;
  }
  if (format == 1)
    return p == end ? (long)count : -1;
  if ((size_t)(end - p) < 4)
    return -1;
  uint32_t ngone = get_u32(p);
  p += 4;
  if ((size_t)(end - p) / 8 < ngone)
    return -1;
  for (uint32_t k = 0; k < ngone; k++, p += 8)
    if (gone)
      gone(get_i64(p), arg);
  return p == end ? (long)count : -1;
}
