/*
 * test_hist - the histograms of the rollups (common/hist): every
 * percentile within the stated bound of the exact nearest-rank one over
 * random samples of many shapes, the exact maximum, merging (in memory,
 * stored, and by the SQL function the collector's upserts use) equal to
 * adding the samples, and stored bytes that are not a histogram refused
 * without changing anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "hist.h"
#include "stats.h"

static uint64_t seed = 0x9e3779b97f4a7c15u;

static uint64_t next(void) {
  seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
  return seed;
}

/* A duration: uniform, long-tailed or spread over many powers of two. */
static int64_t sample(int shape) {
  switch (shape) {
  case 0:
    return (int64_t)(next() % 100);
  case 1:
    return 20000 + (int64_t)(next() % 40000) * (next() % 100 == 0 ? 30 : 1);
  default:
    return (int64_t)(next() >> 1 >> (next() % 60));
  }
}

static void percentiles_within_the_bound(void **state) {
  (void)state;
  const unsigned pm[] = {1, 100, 250, 500, 900, 950, 990, 999, 1000};
  for (int round = 0; round < 60; round++) {
    hist_sparse h;
    stats_values v;
    hist_sparse_init(&h);
    stats_values_init(&v);
    size_t n = 1 + (size_t)round * 97;
    for (size_t i = 0; i < n; i++) {
      int64_t x = sample(round % 3);
      hist_sparse_add(&h, x);
      stats_values_push(&v, x);
    }
    stats_values_sort(&v);
    assert_int_equal(h.total, n);
    for (size_t k = 0; k < sizeof(pm) / sizeof(*pm); k++) {
      int64_t exact, got;
      assert_int_equal(stats_percentile(&v, pm[k], &exact), 0);
      assert_int_equal(hist_sparse_percentile(&h, pm[k], &got), 0);
      if (pm[k] == 1000 || exact < HIST_EXACT)
        assert_true(got == exact);
      else if (llabs(got - exact) > exact / HIST_ERROR_DIV)
        fail_msg("p%u: %lld, exact %lld", pm[k], (long long)got,
                 (long long)exact);
    }
    hist_sparse_fini(&h);
    stats_values_fini(&v);
  }
}

static void empty_and_edges(void **state) {
  (void)state;
  hist_sparse h;
  int64_t v;
  hist_sparse_init(&h);
  assert_int_equal(hist_sparse_percentile(&h, 500, &v), -1);
  format_buf b;
  format_buf_init(&b);
  hist_sparse_encode(&h, &b);
  assert_int_equal(b.len, 0);
  hist_sparse_add(&h, -7); /* counts as 0 */
  hist_sparse_add(&h, INT64_MAX);
  assert_int_equal(hist_sparse_percentile(&h, 0, &v), -1);
  assert_int_equal(hist_sparse_percentile(&h, 1001, &v), -1);
  assert_int_equal(hist_sparse_percentile(&h, 500, &v), 0);
  assert_true(v == 0);
  assert_int_equal(hist_sparse_percentile(&h, 1000, &v), 0);
  assert_true(v == INT64_MAX);
  hist_sparse_encode(&h, &b);
  hist_sparse g;
  hist_sparse_init(&g);
  assert_int_equal(hist_sparse_add_blob(&g, b.data, b.len), 0);
  assert_int_equal(hist_sparse_percentile(&g, 1000, &v), 0);
  assert_true(v == INT64_MAX);
  assert_int_equal(g.total, 2);
  hist_sparse_clear(&g);
  assert_int_equal(g.total, 0);
  assert_int_equal(hist_sparse_percentile(&g, 500, &v), -1);
  format_buf_fini(&b);
  hist_sparse_fini(&h);
  hist_sparse_fini(&g);
}

/* Two sets merged - in memory, from their stored forms, and by
 * taskwatch_hist_merge in SQL - equal the histogram of both sets. */
static void merging_adds_up(void **state) {
  (void)state;
  hist_sparse a, b, both, merged, from_blobs;
  hist_sparse_init(&a);
  hist_sparse_init(&b);
  hist_sparse_init(&both);
  hist_sparse_init(&merged);
  hist_sparse_init(&from_blobs);
  for (int i = 0; i < 5000; i++) {
    int64_t x = sample(i % 3);
    hist_sparse_add(i % 2 ? &a : &b, x);
    hist_sparse_add(&both, x);
  }
  hist_sparse_merge(&merged, &a);
  hist_sparse_merge(&merged, &b);
  format_buf ea, eb, eboth, emerged, esql;
  format_buf_init(&ea);
  format_buf_init(&eb);
  format_buf_init(&eboth);
  format_buf_init(&emerged);
  format_buf_init(&esql);
  hist_sparse_encode(&a, &ea);
  hist_sparse_encode(&b, &eb);
  hist_sparse_encode(&both, &eboth);
  hist_sparse_encode(&merged, &emerged);
  assert_int_equal(emerged.len, eboth.len);
  assert_memory_equal(emerged.data, eboth.data, eboth.len);
  assert_int_equal(hist_sparse_add_blob(&from_blobs, ea.data, ea.len), 0);
  assert_int_equal(hist_sparse_add_blob(&from_blobs, eb.data, eb.len), 0);
  hist_sparse_encode(&from_blobs, &esql);
  assert_memory_equal(esql.data, eboth.data, eboth.len);
  /* The SQL function, and NULL on either side. */
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(hist_sql_register(db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT taskwatch_hist_merge(?1, ?2), "
                                      "taskwatch_hist_merge(?1, NULL), "
                                      "taskwatch_hist_merge(NULL, NULL)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_blob(st, 1, ea.data, (int)ea.len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, eb.data, (int)eb.len, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_bytes(st, 0), (int)eboth.len);
  assert_memory_equal(sqlite3_column_blob(st, 0), eboth.data, eboth.len);
  assert_int_equal(sqlite3_column_bytes(st, 1), (int)ea.len);
  assert_int_equal(sqlite3_column_type(st, 2), SQLITE_NULL);
  sqlite3_finalize(st);
  /* Bytes that are not a histogram are an SQL error, not a crash. */
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT taskwatch_hist_merge(x'02', ?1)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_blob(st, 1, ea.data, (int)ea.len, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
  sqlite3_finalize(st);
  sqlite3_close(db);
  format_buf_fini(&ea);
  format_buf_fini(&eb);
  format_buf_fini(&eboth);
  format_buf_fini(&emerged);
  format_buf_fini(&esql);
  hist_sparse_fini(&a);
  hist_sparse_fini(&b);
  hist_sparse_fini(&both);
  hist_sparse_fini(&merged);
  hist_sparse_fini(&from_blobs);
}

/* Each malformed form is refused and leaves the histogram as it was. */
/* Each bucket's lowest and highest value fall in it, and the buckets
 * tile the values; a rank's bucket holds the sample of that rank. */
static void bucket_bounds_and_ranks(void **state) {
  (void)state;
  assert_true(hist_bucket_low(0) == INT64_MIN);
  int top = hist_bucket(INT64_MAX);
  for (int b = 1; b < top; b++) {
    assert_int_equal(hist_bucket(hist_bucket_low(b)), b);
    assert_int_equal(hist_bucket(hist_bucket_high(b)), b);
    assert_true(hist_bucket_high(b) + 1 == hist_bucket_low(b + 1));
  }
  assert_true(hist_bucket_high(top) == INT64_MAX);
  assert_true(hist_bucket_high(0) == 0 && hist_bucket_low(1) == 1);
  hist_sparse h;
  hist_sparse_init(&h);
  assert_int_equal(hist_sparse_rank_bucket(&h, 1), -1);
  for (int64_t v = 1; v <= 1000; v++)
    hist_sparse_add(&h, v * 37);
  for (uint64_t r = 1; r <= 1000; r += 37)
    assert_int_equal(hist_sparse_rank_bucket(&h, r),
                     hist_bucket((int64_t)r * 37));
  assert_int_equal(hist_sparse_rank_bucket(&h, 0), hist_bucket(37));
  assert_int_equal(hist_sparse_rank_bucket(&h, 5000), hist_bucket(37000));
  hist_sparse_fini(&h);
}

static void bad_blobs_are_refused(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t len;
  } bad[] = {
      {"", 0},                     /* empty */
      {"\x01", 1},                 /* no maximum */
      {"\x02\x05\x00\x01", 4},     /* unknown format */
      {"\x01\x05", 2},             /* no bucket */
      {"\x01\x05\x00", 3},         /* a gap without count */
      {"\x01\x05\x00\x00", 4},     /* a count of zero */
      {"\x01\x05\x80", 3},         /* a varint cut short */
      {"\x01\x05\xff\x7f\x01", 5}, /* a bucket past the end */
      {"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x01", 13}, /* max */
  };
  hist_sparse h;
  hist_sparse_init(&h);
  hist_sparse_add(&h, 42);
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    assert_int_equal(hist_sparse_add_blob(&h, bad[i].bytes, bad[i].len), -1);
    assert_int_equal(h.total, 1);
    assert_int_equal(h.max, 42);
  }
  /* A good one: max 5, one sample in bucket 5. */
  assert_int_equal(hist_sparse_add_blob(&h, "\x01\x05\x05\x01", 4), 0);
  assert_int_equal(h.total, 2);
  hist_sparse_fini(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(percentiles_within_the_bound),
      cmocka_unit_test(empty_and_edges),
      cmocka_unit_test(merging_adds_up),
      cmocka_unit_test(bucket_bounds_and_ranks),
      cmocka_unit_test(bad_blobs_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
