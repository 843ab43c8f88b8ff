/*
 * stats - exact order statistics over a list of integer samples (run
 * times, queue waits), for `taskwatch query stats` and the dashboard.
 */
#ifndef TW_STATS_H
#define TW_STATS_H

#include <stddef.h>
#include <stdint.h>

/* A growable list of samples. Allocation failure aborts (tools only). */
typedef struct stats_values {
  int64_t *v;
  size_t n;
  size_t cap;
} stats_values;

void stats_values_init(stats_values *s);
void stats_values_fini(stats_values *s);
void stats_values_push(stats_values *s, int64_t v);
/* Sorts the samples ascending; stats_percentile() needs it. */
void stats_values_sort(stats_values *s);

/*
 * The nearest-rank percentile of sorted samples: the smallest sample such
 * that at least per_mille/1000 of all samples are at or below it, i.e. the
 * sample at 1-based rank ceil(per_mille * n / 1000). per_mille is 1..1000
 * (500 = median, 950 = p95, 1000 = max). Integer arithmetic, so exact.
 * Returns 0 and *out, or -1 when there are no samples or per_mille is out
 * of range.
 */
int stats_percentile(const stats_values *sorted, unsigned per_mille,
                     int64_t *out);

#endif /* TW_STATS_H */
