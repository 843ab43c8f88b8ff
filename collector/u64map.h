/*
 * u64map - an open-addressing hash map from nonzero 64-bit keys to
 * pointers. Keys come from agents (task and string ids), so the hash is
 * seeded per process: an agent cannot choose keys that all collide.
 */
#ifndef TW_COLLECTOR_U64MAP_H
#define TW_COLLECTOR_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
  uint64_t *keys; /* 0 marks a free slot */
  void **values;
  size_t cap; /* a power of two, or 0 */
  size_t count;
} u64map;

void u64map_init(u64map *m);
void u64map_fini(u64map *m);
/* Forgets every entry but keeps the memory (and shrinks it when huge). */
void u64map_clear(u64map *m);
/* The value for key, or NULL. key must not be 0. */
void *u64map_get(const u64map *m, uint64_t key);
/* Inserts or replaces. key must not be 0. Aborts when memory runs out. */
void u64map_put(u64map *m, uint64_t key, void *value);

/* Removes key if present. key must not be 0. */
void u64map_del(u64map *m, uint64_t key);

/* The seeded hash, exposed for other tables keyed by outside input. */
uint64_t u64map_hash(uint64_t key);

#endif /* TW_COLLECTOR_U64MAP_H */
