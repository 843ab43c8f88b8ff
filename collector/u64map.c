/*
 * u64map - linear probing with a seeded splitmix64 finaliser as the hash.
 */
#include "u64map.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "xalloc.h"

/* Set once, before the first hash, by whichever thread hashes first (the
 * loop and the writer both do). */
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static uint64_t seed;

static uint64_t mix(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* The kernel's random bytes; when they are unavailable (a kernel without
 * getrandom, a seccomp filter), the clock, the pid and a stack address,
 * which an agent on another machine cannot predict either. */
static void seed_init(void) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
        ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
  }
  seed = mix(r) | 1;
}

uint64_t u64map_hash(uint64_t key) {
  pthread_once(&seed_once, seed_init);
  return mix(key ^ seed);
}

void u64map_init(u64map *m) {
  memset(m, 0, sizeof(*m));
}

void u64map_fini(u64map *m) {
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof(*m));
}

void u64map_clear(u64map *m) {
  if (m->cap > 65536 && m->count < m->cap / 8) {
    u64map_fini(m);
    return;
  }
  if (m->keys)
    memset(m->keys, 0, m->cap * sizeof(*m->keys));
  m->count = 0;
}

size_t u64map_count(const u64map *m) {
  return m->count;
}

size_t u64map_bytes(const u64map *m) {
  return m->cap * (sizeof(*m->keys) + sizeof(*m->values));
}

int u64map_next(const u64map *m, size_t *pos, uint64_t *key, void **value) {
  for (size_t i = *pos; i < m->cap; i++) {
    if (m->keys[i] == 0)
      continue;
    if (key)
      *key = m->keys[i];
    if (value)
      *value = m->values[i];
    *pos = i + 1;
    return 1;
  }
  *pos = m->cap;
  return 0;
}

void *u64map_get(const u64map *m, uint64_t key) {
  assert(key != 0);
  if (m->cap == 0)
    return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = u64map_hash(key) & mask;; i = (i + 1) & mask) {
    if (m->keys[i] == key)
      return m->values[i];
    if (m->keys[i] == 0)
      return NULL;
  }
}

static void grow(u64map *m) {
  size_t old_cap = m->cap;
  uint64_t *old_keys = m->keys;
  void **old_values = m->values;
  m->cap = old_cap ? old_cap * 2 : 64;
  m->keys = xcalloc(m->cap, sizeof(*m->keys));
  m->values = xmalloc(m->cap * sizeof(*m->values));
  m->count = 0;
  for (size_t i = 0; i < old_cap; i++)
    if (old_keys[i])
      u64map_put(m, old_keys[i], old_values[i]);
  free(old_keys);
  free(old_values);
}

void u64map_put(u64map *m, uint64_t key, void *value) {
  assert(key != 0);
  if ((m->count + 1) * 4 > m->cap * 3)
    grow(m);
  size_t mask = m->cap - 1;
  for (size_t i = u64map_hash(key) & mask;; i = (i + 1) & mask) {
    if (m->keys[i] == key) {
      m->values[i] = value;
      return;
    }
    if (m->keys[i] == 0) {
      m->keys[i] = key;
      m->values[i] = value;
      m->count++;
      return;
    }
  }
}

/* Backward-shift deletion: entries after the removed one move up when
 * their home slot allows, so lookups never need tombstones. */
void u64map_del(u64map *m, uint64_t key) {
  assert(key != 0);
  if (m->cap == 0)
    return;
  size_t mask = m->cap - 1;
  size_t i = u64map_hash(key) & mask;
  while (m->keys[i] != key) {
    if (m->keys[i] == 0)
      return;
    i = (i + 1) & mask;
  }
  for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
    size_t home = u64map_hash(m->keys[j]) & mask;
    /* Move j into the hole at i unless its home lies cyclically in
     * (i, j]. */
    int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays)
      continue;
    m->keys[i] = m->keys[j];
    m->values[i] = m->values[j];
    i = j;
  }
  m->keys[i] = 0;
  m->count--;
}
