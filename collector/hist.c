/*
 * hist - log-linear buckets: values below 32 map to themselves; above, the
 * bucket is (exponent, top four bits below the leading one).
 */
#include "hist.h"

#include <string.h>

void hist_init(hist *h) {
  memset(h, 0, sizeof(*h));
}

static int bucket_of(uint64_t v) {
  if (v < 32)
    return (int)v;
  int e = 63 - __builtin_clzll(v); /* 5..63 */
  int sub = (int)((v >> (e - 4)) & 15);
  return 32 + (e - 5) * 16 + sub;
}

/* The middle of a bucket's range, as its representative value. */
static int64_t value_of(int b) {
  if (b < 32)
    return b;
  int e = (b - 32) / 16 + 5;
  int sub = (b - 32) % 16;
  uint64_t lo = ((uint64_t)1 << e) | ((uint64_t)sub << (e - 4));
  uint64_t width = (uint64_t)1 << (e - 4);
  uint64_t mid = lo + width / 2;
  return mid > INT64_MAX ? INT64_MAX : (int64_t)mid;
}

void hist_add(hist *h, int64_t value) {
  int b = bucket_of(value < 0 ? 0 : (uint64_t)value);
  if (b >= HIST_BUCKETS)
    b = HIST_BUCKETS - 1;
  h->counts[b]++;
  h->total++;
}

int64_t hist_quantile(const hist *h, double q) {
  if (h->total == 0)
    return 0;
  uint64_t rank = (uint64_t)(q * (double)h->total);
  if (rank >= h->total)
    rank = h->total - 1;
  uint64_t seen = 0;
  for (int b = 0; b < HIST_BUCKETS; b++) {
    seen += h->counts[b];
    if (seen > rank)
      return value_of(b);
  }
  return value_of(HIST_BUCKETS - 1);
}
