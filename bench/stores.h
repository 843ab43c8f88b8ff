/*
 * stores - what the store benchmarks (bench_query, bench_top) share: the
 * list of sizes they measure side by side, and removing a store they
 * generated (with its WAL and shared-memory files).
 */
#ifndef TW_BENCH_STORES_H
#define TW_BENCH_STORES_H

#include <stdint.h>

#define BENCH_MAX_SIZES 8

/* Parses "1000000,10000000,..." into sizes; returns how many, or 0 when
 * the text is not such a list (or holds more than max). */
int bench_parse_sizes(const char *text, int64_t *sizes, int max);

/* The first column of the first row of `sql` on the store at path, opened
 * read-only; `otherwise` when it cannot be read. */
int64_t bench_store_int(const char *path, const char *sql, int64_t otherwise);

/* Deletes path and its -wal and -shm files. */
void bench_remove_store(const char *path);

#endif /* TW_BENCH_STORES_H */
