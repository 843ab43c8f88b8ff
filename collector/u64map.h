/*
 * u64map - an open-addressing hash map from nonzero 64-bit keys to
 * pointers. Keys come from agents (task and string ids), so the hash is
 * seeded once per process from the kernel's random source: an agent cannot
 * choose keys that all collide.
 *
 * The struct is embedded by value, but its fields belong to u64map.c:
 * other modules go through the functions below (u64map_next() to visit
 * every entry, u64map_bytes() for its memory).
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

/* Entries in the map. */
size_t u64map_count(const u64map *m);
/* Bytes the map's arrays take (for memory budgets). */
size_t u64map_bytes(const u64map *m);

/*
 * Visits every entry once, in no particular order. Start with *pos = 0;
 * each call that returns 1 sets *key and *value (either may be NULL when
 * not wanted); 0 means there are no more. The map must not change while
 * it is visited: a put may grow it and a delete moves entries.
 */
int u64map_next(const u64map *m, size_t *pos, uint64_t *key, void **value);

/* The seeded hash, exposed for other tables keyed by outside input. */
uint64_t u64map_hash(uint64_t key);

#endif /* TW_COLLECTOR_U64MAP_H */
