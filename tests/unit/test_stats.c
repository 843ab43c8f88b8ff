/*
 * test_stats - nearest-rank percentiles, checked against the definition
 * computed by brute force: the smallest sample with at least p of all
 * samples at or below it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stats.h"

static void small_sets(void **state) {
  (void)state;
  stats_values s;
  int64_t v;
  stats_values_init(&s);
  assert_int_equal(stats_percentile(&s, 500, &v), -1);
  stats_values_push(&s, 42);
  stats_values_sort(&s);
  assert_int_equal(stats_percentile(&s, 1, &v), 0);
  assert_true(v == 42);
  assert_int_equal(stats_percentile(&s, 0, &v), -1);
  assert_int_equal(stats_percentile(&s, 1001, &v), -1);
  /* 20 samples 1..20 pushed in reverse: p95 is the 19th, p50 the 10th. */
  stats_values_fini(&s);
  for (int i = 20; i >= 1; i--)
    stats_values_push(&s, i);
  stats_values_sort(&s);
  stats_percentile(&s, 950, &v);
  assert_true(v == 19);
  stats_percentile(&s, 500, &v);
  assert_true(v == 10);
  stats_percentile(&s, 990, &v);
  assert_true(v == 20);
  stats_percentile(&s, 1000, &v);
  assert_true(v == 20);
  stats_values_fini(&s);
}

/* Brute force from the definition, no sorting involved. */
static int64_t by_definition(const int64_t *x, size_t n, unsigned per_mille) {
  int64_t best = INT64_MAX;
  for (size_t i = 0; i < n; i++) {
    size_t at_or_below = 0;
    for (size_t j = 0; j < n; j++)
      at_or_below += x[j] <= x[i];
    if (at_or_below * 1000 >= (size_t)per_mille * n && x[i] < best)
      best = x[i];
  }
  return best;
}

static void random_sets(void **state) {
  (void)state;
  uint64_t seed = 88172645463325252u;
  int64_t raw[400];
  for (int round = 0; round < 40; round++) {
    size_t n = 1 + (size_t)round * 9;
    stats_values s;
    stats_values_init(&s);
    for (size_t i = 0; i < n; i++) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      raw[i] = (int64_t)(seed % 1000) - 100; /* duplicates and negatives */
      stats_values_push(&s, raw[i]);
    }
    /* Selection first (it reorders the samples), then the sort. */
    const unsigned pm[] = {1, 10, 250, 500, 900, 950, 990, 999, 1000};
    size_t npm = sizeof(pm) / sizeof(pm[0]);
    int64_t selected[sizeof(pm) / sizeof(pm[0])];
    assert_int_equal(stats_values_select(&s, pm, npm, selected), 0);
    stats_values_sort(&s);
    for (size_t k = 0; k < npm; k++) {
      int64_t v;
      assert_int_equal(stats_percentile(&s, pm[k], &v), 0);
      assert_true(v == by_definition(raw, n, pm[k]));
      assert_true(selected[k] == v);
    }
    stats_values_fini(&s);
  }
}

/* Selection refuses what stats_percentile() refuses, and percentiles out
 * of order; one percentile alone, and many equal samples, work too. */
static void selection_edges(void **state) {
  (void)state;
  stats_values s;
  int64_t out[3];
  stats_values_init(&s);
  const unsigned p50[] = {500}, bad_order[] = {950, 500}, zero[] = {0};
  assert_int_equal(stats_values_select(&s, p50, 1, out), -1);
  for (int i = 0; i < 100000; i++)
    stats_values_push(&s, i % 3 == 0 ? 7 : 1000 - i % 5);
  assert_int_equal(stats_values_select(&s, bad_order, 2, out), -1);
  assert_int_equal(stats_values_select(&s, zero, 1, out), -1);
  /* Appending keeps every sample (and leaves the source as it was). */
  stats_values copy;
  stats_values_init(&copy);
  stats_values_append(&copy, &s);
  stats_values_append(&copy, &s);
  assert_int_equal(copy.n, 2 * s.n);
  const unsigned half[] = {500};
  assert_int_equal(stats_values_select(&copy, half, 1, out), 0);
  assert_true(out[0] == 997);
  stats_values_fini(&copy);
  const unsigned three[] = {300, 334, 1000};
  assert_int_equal(stats_values_select(&s, three, 3, out), 0);
  assert_true(out[0] == 7);
  assert_true(out[1] == 996);
  assert_true(out[2] == 1000);
  stats_values_fini(&s);
}

/* Banded selection answers exactly what selection over every sample
 * answers, when each rank lies in its band; says so (1) when one does
 * not. */
static void banded_matches_selection(void **state) {
  (void)state;
  static const unsigned pm[4] = {500, 950, 990, 1000};
  uint64_t seed = 7;
  for (int round = 0; round < 50; round++) {
    stats_values all;
    stats_banded b, half;
    stats_values_init(&all);
    stats_banded_init(&b);
    stats_banded_init(&half);
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int n = 1 + (int)(seed % 5000);
    /* Bands around the true ranks of values 0..n-1 shuffled, widened;
     * every other round one band is placed wrong on purpose. */
    int wrong = round % 2;
    for (int i = 0; i < 3; i++) {
      int64_t rank = ((int64_t)pm[i] * n + 999) / 1000 - 1;
      int64_t lo = rank - 20, hi = rank + 20;
      if (wrong && i == 1)
        lo = hi + 1, hi = lo + 10;
      stats_banded_band(&b, i, lo, hi);
      stats_banded_band(&half, i, lo, hi);
    }
    for (int i = 0; i < n; i++) {
      /* A permutation of 0..n-1 (7919 is a prime above every n). */
      int64_t v = (int64_t)(((uint64_t)i * 7919u) % (uint64_t)n);
      stats_values_push(&all, v);
      stats_banded_add(i % 2 ? &half : &b, v);
    }
    stats_banded_merge(&b, &half);
    int64_t want[4], got[4];
    assert_int_equal(stats_values_select(&all, pm, 4, want), 0);
    int rc = stats_banded_select(&b, pm, 4, got);
    if (wrong) {
      assert_int_equal(rc, 1);
    } else {
      assert_int_equal(rc, 0);
      for (int i = 0; i < 4; i++)
        assert_true(got[i] == want[i]);
    }
    stats_values_fini(&all);
    stats_banded_fini(&b);
    stats_banded_fini(&half);
  }
  /* No bands: every sample kept, exact. */
  stats_banded b;
  stats_banded_init(&b);
  int64_t out[4];
  assert_int_equal(stats_banded_select(&b, pm, 4, out), -1);
  for (int i = 1; i <= 20; i++)
    stats_banded_add(&b, i);
  assert_int_equal(stats_banded_select(&b, pm, 4, out), 0);
  assert_true(out[0] == 10 && out[1] == 19 && out[2] == 20 && out[3] == 20);
  stats_banded_fini(&b);
}

static void weighted(void **state) {
  (void)state;
  stats_weighted s;
  int64_t v;
  stats_weighted_init(&s);
  assert_int_equal(stats_weighted_percentile(&s, 500, &v), -1);
  /* 12 tasks around 100, 4 around 150: the median is 100, p95 is 150. */
  stats_weighted_push(&s, 150, 4);
  stats_weighted_push(&s, 100, 12);
  stats_weighted_push(&s, 999, 0); /* no weight, no say */
  assert_int_equal(stats_weighted_percentile(&s, 500, &v), 0);
  assert_true(v == 100);
  stats_weighted_percentile(&s, 750, &v);
  assert_true(v == 100);
  stats_weighted_percentile(&s, 751, &v);
  assert_true(v == 150);
  stats_weighted_percentile(&s, 1000, &v);
  assert_true(v == 150);
  assert_int_equal(stats_weighted_percentile(&s, 0, &v), -1);
  stats_weighted_fini(&s);
  /* Unit weights agree with the unweighted percentile. */
  stats_values u;
  stats_values_init(&u);
  for (int i = 0; i < 37; i++) {
    int64_t x = (i * 7919) % 101;
    stats_weighted_push(&s, x, 1);
    stats_values_push(&u, x);
  }
  stats_values_sort(&u);
  for (unsigned pm = 1; pm <= 1000; pm += 37) {
    int64_t a, b;
    stats_weighted_percentile(&s, pm, &a);
    stats_percentile(&u, pm, &b);
    assert_true(a == b);
  }
  stats_values_fini(&u);
  stats_weighted_fini(&s);
}

/* Cleared samples are gone (the dashboard reuses one set per figure), and
 * samples pushed after a percentile are sorted in before the next. */
static void weighted_clear_and_reuse(void **state) {
  (void)state;
  stats_weighted s;
  int64_t v;
  stats_weighted_init(&s);
  for (int i = 1; i <= 100; i++)
    stats_weighted_push(&s, i, 1);
  assert_int_equal(stats_weighted_percentile(&s, 1000, &v), 0);
  assert_true(v == 100);
  stats_weighted_clear(&s);
  assert_int_equal(stats_weighted_percentile(&s, 500, &v), -1);
  stats_weighted_push(&s, 7, 3);
  stats_weighted_push(&s, 5, 1);
  assert_int_equal(stats_weighted_percentile(&s, 250, &v), 0);
  assert_true(v == 5);
  assert_int_equal(stats_weighted_percentile(&s, 251, &v), 0);
  assert_true(v == 7);
  stats_weighted_push(&s, 1, 4); /* after a percentile: sorted in again */
  assert_int_equal(stats_weighted_percentile(&s, 500, &v), 0);
  assert_true(v == 1);
  stats_weighted_fini(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(small_sets),
      cmocka_unit_test(random_sets),
      cmocka_unit_test(selection_edges),
      cmocka_unit_test(banded_matches_selection),
      cmocka_unit_test(weighted),
      cmocka_unit_test(weighted_clear_and_reuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
