/*
 * stats - order statistics over integer samples (run times, queue waits):
 * the one implementation of percentiles, for `taskwatch query stats`
 * (exact, and approximate from rollups) and the dashboard (weighted
 * samples).
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
/* Appends every sample of src to s. */
void stats_values_append(stats_values *s, const stats_values *src);
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

/*
 * The nearest-rank percentiles per_mille[0..n) (each 1..1000, ascending)
 * of unsorted samples, by selection rather than sorting: expected linear
 * time in the samples, which it reorders. Returns 0 and out[0..n), or -1
 * when there are no samples or a per_mille is out of range or order.
 */
int stats_values_select(stats_values *s, const unsigned *per_mille, size_t n,
                        int64_t *out);

/*
 * Exact nearest-rank percentiles in one pass without keeping every
 * sample: when a histogram of (nearly) the same samples is known
 * beforehand (the rollups'), each wanted percentile lies in a band of
 * values around the histogram's; the pass counts the samples below each
 * band and keeps only those inside one. A percentile whose rank falls
 * outside its band (the histogram was further off than its margin) is not
 * answered: the caller then reads every sample (stats_values).
 */
#define STATS_BANDS 4
typedef struct stats_banded {
  int nbands;
  int64_t lo[STATS_BANDS], hi[STATS_BANDS]; /* band i: [lo, hi] */
  int64_t below[STATS_BANDS];               /* samples < lo[i] */
  int64_t n, max;                           /* every sample; max: -1 none */
  stats_values kept;                        /* the samples inside a band */
} stats_banded;

/* Empty, keeping every sample (one band over all values) until
 * stats_banded_band() narrows it. */
void stats_banded_init(stats_banded *s);
void stats_banded_fini(stats_banded *s);
/* Replaces the bands with [lo, hi] for band i (i < STATS_BANDS), bands
 * 0..i-1 kept; call before the first sample. */
void stats_banded_band(stats_banded *s, int i, int64_t lo, int64_t hi);
static inline void stats_banded_add(stats_banded *s, int64_t v) {
  int keep = 0;
  s->n++;
  if (v > s->max)
    s->max = v;
  for (int i = 0; i < s->nbands; i++) {
    if (v < s->lo[i])
      s->below[i]++;
    else if (v <= s->hi[i])
      keep = 1;
  }
  if (keep)
    stats_values_push(&s->kept, v);
}
/* Adds the samples of src, whose bands must be the same as s's. */
void stats_banded_merge(stats_banded *s, const stats_banded *src);
/*
 * Percentile per_mille[i] (ascending, 1..1000) from band i (1000: the
 * maximum, no band needed). Returns 0 and out[0..n); -1 when there are no
 * samples, or 1 when a rank lies outside its band (read every sample).
 */
int stats_banded_select(stats_banded *s, const unsigned *per_mille, size_t n,
                        int64_t *out);

/* Samples with weights, e.g. per-minute percentiles weighted by how many
 * tasks each minute held, for an approximate percentile across minutes. */
typedef struct stats_weighted {
  int64_t *v;
  int64_t *w;
  size_t n;
  size_t cap;
  int sorted;
} stats_weighted;

void stats_weighted_init(stats_weighted *s);
void stats_weighted_fini(stats_weighted *s);
/* Forgets the samples, keeping the memory for the next ones. */
void stats_weighted_clear(stats_weighted *s);
/* Adds v with weight w (w <= 0 is ignored). */
void stats_weighted_push(stats_weighted *s, int64_t v, int64_t w);
/* The smallest sample whose cumulative weight reaches per_mille/1000 of
 * the total (sorting the samples on first use). Returns 0 and *out, or -1
 * when there is no weight or per_mille is out of 1..1000. */
int stats_weighted_percentile(stats_weighted *s, unsigned per_mille,
                              int64_t *out);

#endif /* TW_STATS_H */
