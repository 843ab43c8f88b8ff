/*
 * stores - see stores.h.
 */
#include "stores.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

int bench_parse_sizes(const char *text, int64_t *sizes, int max) {
  int n = 0;
  for (const char *p = text;;) {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 3 || n == max)
      return 0;
    sizes[n++] = v;
    if (*end == '\0')
      return n;
    if (*end != ',')
      return 0;
    p = end + 1;
  }
}

void bench_remove_store(const char *path) {
  char side[600];
  unlink(path);
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
}

int64_t bench_store_int(const char *path, const char *sql, int64_t otherwise) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = otherwise;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}
