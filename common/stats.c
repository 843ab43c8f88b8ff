/*
 * stats - nearest-rank percentiles. Exact rather than estimated: the
 * samples are sorted once, and each percentile is one index computed in
 * integers, so p95 of 20 samples is the 19th, never a rounding accident.
 */
#include "stats.h"

#include <stdlib.h>

#include "xalloc.h"

void stats_values_init(stats_values *s) {
  s->v = NULL;
  s->n = 0;
  s->cap = 0;
}

void stats_values_fini(stats_values *s) {
  free(s->v);
  stats_values_init(s);
}

void stats_values_push(stats_values *s, int64_t v) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->v = xrealloc(s->v, s->cap * sizeof(int64_t));
  }
  s->v[s->n++] = v;
}

static int compare(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

void stats_values_sort(stats_values *s) {
  if (s->n > 1)
    qsort(s->v, s->n, sizeof(int64_t), compare);
}

int stats_percentile(const stats_values *sorted, unsigned per_mille,
                     int64_t *out) {
  if (sorted->n == 0 || per_mille == 0 || per_mille > 1000)
    return -1;
  /* n is far below 2^54, so the product cannot overflow 64 bits. */
  uint64_t rank = ((uint64_t)per_mille * sorted->n + 999) / 1000;
  *out = sorted->v[rank - 1];
  return 0;
}
