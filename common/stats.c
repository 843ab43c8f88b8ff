/*
 * stats - nearest-rank percentiles. Exact rather than estimated: the
 * samples are sorted once, and each percentile is one index computed in
 * integers, so p95 of 20 samples is the 19th, never a rounding accident.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

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

void stats_values_append(stats_values *s, const stats_values *src) {
  if (s->n + src->n > s->cap) {
    s->cap = s->n + src->n;
    s->v = xrealloc(s->v, s->cap * sizeof(int64_t));
  }
  if (src->n)
    memcpy(s->v + s->n, src->v, src->n * sizeof(int64_t));
  s->n += src->n;
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

/* Moves the k-th smallest of v[lo, hi) to v[k], smaller ones before it
 * and larger ones after it: quickselect with a pseudo-random pivot and a
 * three-way partition, so runs of equal durations (common) cost nothing
 * extra and no order of the input makes it quadratic but by chance. */
static void select_kth(int64_t *v, size_t lo, size_t hi, size_t k,
                       uint64_t *seed) {
  while (hi - lo > 1) {
    *seed ^= *seed << 13, *seed ^= *seed >> 7, *seed ^= *seed << 17;
    int64_t pivot = v[lo + *seed % (hi - lo)];
    size_t lt = lo, i = lo, gt = hi;
    while (i < gt) {
      int64_t x = v[i];
      if (x < pivot) {
        v[i++] = v[lt];
        v[lt++] = x;
      } else if (x > pivot) {
        v[i] = v[--gt];
        v[gt] = x;
      } else {
        i++;
      }
    }
    if (k < lt)
      hi = lt;
    else if (k >= gt)
      lo = gt;
    else
      return;
  }
}

int stats_values_select(stats_values *s, const unsigned *per_mille, size_t n,
                        int64_t *out) {
  if (s->n == 0)
    return -1;
  uint64_t seed = 0x9e3779b97f4a7c15u ^ s->n;
  size_t lo = 0;
  for (size_t i = 0; i < n; i++) {
    if (per_mille[i] == 0 || per_mille[i] > 1000 ||
        (i > 0 && per_mille[i] < per_mille[i - 1]))
      return -1;
    /* As stats_percentile(): 1-based rank ceil(per_mille * n / 1000). */
    size_t k = (size_t)(((uint64_t)per_mille[i] * s->n + 999) / 1000) - 1;
    /* Everything before lo is at or below v[lo - 1] already. */
    if (k >= lo) {
      select_kth(s->v, lo, s->n, k, &seed);
      lo = k + 1;
    }
    out[i] = s->v[k];
  }
  return 0;
}

void stats_banded_init(stats_banded *s) {
  memset(s, 0, sizeof(*s));
  s->nbands = 1;
  s->lo[0] = INT64_MIN;
  s->hi[0] = INT64_MAX;
  s->max = -1;
  stats_values_init(&s->kept);
}

void stats_banded_fini(stats_banded *s) {
  stats_values_fini(&s->kept);
  stats_banded_init(s);
}

void stats_banded_band(stats_banded *s, int i, int64_t lo, int64_t hi) {
  if (i < 0 || i >= STATS_BANDS)
    return;
  s->lo[i] = lo;
  s->hi[i] = hi;
  s->below[i] = 0;
  s->nbands = i + 1;
}

void stats_banded_merge(stats_banded *s, const stats_banded *src) {
  for (int i = 0; i < s->nbands; i++)
    s->below[i] += src->below[i];
  s->n += src->n;
  if (src->max > s->max)
    s->max = src->max;
  stats_values_append(&s->kept, &src->kept);
}

int stats_banded_select(stats_banded *s, const unsigned *per_mille, size_t n,
                        int64_t *out) {
  if (s->n == 0)
    return -1;
  /* Not narrowed (one band over every value): plain selection. */
  if (s->nbands == 1 && s->lo[0] == INT64_MIN && s->hi[0] == INT64_MAX)
    return stats_values_select(&s->kept, per_mille, n, out);
  stats_values band;
  stats_values_init(&band);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (per_mille[i] == 0 || per_mille[i] > 1000 ||
        (i > 0 && per_mille[i] < per_mille[i - 1])) {
      rc = -1;
      break;
    }
    if (per_mille[i] == 1000) {
      out[i] = s->max;
      continue;
    }
    int j = (int)i;
    if (j >= s->nbands) {
      rc = 1;
      break;
    }
    /* As stats_percentile(): 1-based rank ceil(per_mille * n / 1000). */
    int64_t rank = (int64_t)(((uint64_t)per_mille[i] * (uint64_t)s->n + 999) /
                             1000);
    band.n = 0;
    for (size_t x = 0; x < s->kept.n; x++)
      if (s->kept.v[x] >= s->lo[j] && s->kept.v[x] <= s->hi[j])
        stats_values_push(&band, s->kept.v[x]);
    int64_t k = rank - s->below[j]; /* rank inside the band */
    if (k < 1 || k > (int64_t)band.n) {
      rc = 1;
      break;
    }
    uint64_t seed = 0x9e3779b97f4a7c15u ^ band.n;
    select_kth(band.v, 0, band.n, (size_t)(k - 1), &seed);
    out[i] = band.v[k - 1];
  }
  stats_values_fini(&band);
  return rc;
}

void stats_weighted_init(stats_weighted *s) {
  s->v = NULL;
  s->w = NULL;
  s->n = 0;
  s->cap = 0;
  s->sorted = 1;
}

void stats_weighted_fini(stats_weighted *s) {
  free(s->v);
  free(s->w);
  stats_weighted_init(s);
}

void stats_weighted_clear(stats_weighted *s) {
  s->n = 0;
  s->sorted = 1;
}

void stats_weighted_push(stats_weighted *s, int64_t v, int64_t w) {
  if (w <= 0)
    return;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->v = xrealloc(s->v, s->cap * sizeof(int64_t));
    s->w = xrealloc(s->w, s->cap * sizeof(int64_t));
  }
  s->v[s->n] = v;
  s->w[s->n] = w;
  s->n++;
  s->sorted = 0;
}

/* Sorts (value, weight) pairs by value; compare() reads the first int64
 * of each pair. */
static void sort_pairs(stats_weighted *s) {
  int64_t(*pairs)[2] = xmalloc(s->n * sizeof(*pairs));
  for (size_t i = 0; i < s->n; i++)
    pairs[i][0] = s->v[i], pairs[i][1] = s->w[i];
  qsort(pairs, s->n, sizeof(*pairs), compare);
  for (size_t i = 0; i < s->n; i++)
    s->v[i] = pairs[i][0], s->w[i] = pairs[i][1];
  free(pairs);
  s->sorted = 1;
}

int stats_weighted_percentile(stats_weighted *s, unsigned per_mille,
                              int64_t *out) {
  if (s->n == 0 || per_mille == 0 || per_mille > 1000)
    return -1;
  if (!s->sorted)
    sort_pairs(s);
  uint64_t total = 0;
  for (size_t i = 0; i < s->n; i++)
    total += (uint64_t)s->w[i];
  uint64_t rank = (total * per_mille + 999) / 1000, seen = 0;
  for (size_t i = 0; i < s->n; i++) {
    seen += (uint64_t)s->w[i];
    if (seen >= rank) {
      *out = s->v[i];
      return 0;
    }
  }
  *out = s->v[s->n - 1];
  return 0;
}
