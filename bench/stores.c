/*
 * stores - see stores.h.
 */
#include "stores.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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
