/*
 * hist - a fixed-size log-linear histogram of non-negative integers
 * (microseconds): exact below 32, then 16 sub-buckets per power of two, so
 * a quantile is within about 6 % of the true value. Used for the rollups'
 * percentiles and the collector's own latency figures.
 */
#ifndef TW_COLLECTOR_HIST_H
#define TW_COLLECTOR_HIST_H

#include <stdint.h>

#define HIST_BUCKETS (32 + 16 * 59)

typedef struct hist {
  uint64_t total;
  uint32_t counts[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_add(hist *h, int64_t value); /* negative values count as 0 */
/* The value below which fraction q (0..1) of the samples lie; 0 if empty. */
int64_t hist_quantile(const hist *h, double q);

#endif /* TW_COLLECTOR_HIST_H */
