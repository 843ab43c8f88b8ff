/*
 * hist - log-linear histograms of non-negative integers (durations in
 * microseconds), the one bucket layout of every histogram taskwatch keeps:
 * the collector's latency figures, the rollups' wait and run histograms
 * (docs/schema.md) and the readers that add those up.
 *
 * Values below HIST_EXACT have a bucket each; above, every power of two is
 * cut into HIST_SUB equal buckets. A bucket's representative value is its
 * middle, so a percentile read from a histogram is within 1/HIST_ERROR_DIV
 * (1.6 %) of the exact nearest-rank sample: the bucket that holds the
 * sample of that rank is found exactly, and no sample of a bucket is
 * farther than half its width, 1/64 of its lower bound, from its middle.
 * Histograms merge by adding counts, so per-minute histograms add up to
 * any range of minutes, and rows written by several collector runs add up
 * to one.
 *
 * Two in-memory forms share the layout: `hist`, fixed counts inline (the
 * collector's latency figures: one struct, copied by value), and
 * `hist_sparse`, counts in blocks allocated on first use plus the exact
 * maximum (the rollups' deltas and the readers' sums, where thousands of
 * histograms may be live at once). The stored form (hist_sparse_encode)
 * is a versioned blob: a format byte, the maximum, then (gap, count)
 * pairs of the non-empty buckets, all as LEB128 varints.
 */
#ifndef TW_HIST_H
#define TW_HIST_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

#define HIST_SUB_BITS 5
#define HIST_SUB (1 << HIST_SUB_BITS) /* buckets per power of two */
#define HIST_EXACT (2 * HIST_SUB)     /* values below have a bucket each */
#define HIST_BUCKETS (HIST_EXACT + HIST_SUB * (63 - HIST_SUB_BITS))
/* A percentile read from a histogram is within 1/HIST_ERROR_DIV of the
 * exact one; HIST_ERROR_PCT is that bound in percent, as printed. */
#define HIST_ERROR_DIV 64
#define HIST_ERROR_PCT (100.0 / HIST_ERROR_DIV)
#define HIST_ERROR_TEXT "1.6 %" /* HIST_ERROR_PCT in help texts */
/* The first byte of a stored histogram. */
#define HIST_FORMAT 1

/* The bucket of a value (negative values count as 0). */
int hist_bucket(int64_t value);
/* The value a bucket stands for: its middle. */
int64_t hist_bucket_value(int bucket);
/* The smallest and the largest value of a bucket (negative values count
 * in bucket 0, whose smallest value is given as INT64_MIN; the bucket of
 * INT64_MAX reaches up to it, and those above hold no int64_t value). */
int64_t hist_bucket_low(int bucket);
int64_t hist_bucket_high(int bucket);

/* ---- fixed counts ---------------------------------------------------- */

typedef struct hist {
  uint64_t total;
  uint32_t counts[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_add(hist *h, int64_t value); /* negative values count as 0 */
/* The value below which fraction q (0..1) of the samples lie; 0 if empty. */
int64_t hist_quantile(const hist *h, double q);

/* ---- sparse counts, mergeable ---------------------------------------- */

#define HIST_BLOCK 32
#define HIST_BLOCKS (HIST_BUCKETS / HIST_BLOCK)

typedef struct hist_sparse {
  uint64_t total;
  int64_t max; /* the largest value added, exactly; -1 when empty */
  uint64_t *blocks[HIST_BLOCKS];
} hist_sparse;

void hist_sparse_init(hist_sparse *h);
/* Frees the blocks; h is empty (and usable) afterwards. */
void hist_sparse_fini(hist_sparse *h);
/* Empties h, keeping its blocks for the next values. */
void hist_sparse_clear(hist_sparse *h);
/* Adds value (negative counts as 0). Aborts when memory runs out. */
void hist_sparse_add(hist_sparse *h, int64_t value);
/* Adds every count of src. */
void hist_sparse_merge(hist_sparse *dst, const hist_sparse *src);
/*
 * The nearest-rank percentile (as common/stats: the bucket of the sample
 * at rank ceil(per_mille * total / 1000)), as its bucket's value but never
 * above the exact maximum; per_mille 1000 is the maximum itself. Returns 0
 * and *out, or -1 when h is empty or per_mille is outside 1..1000.
 */
int hist_sparse_percentile(const hist_sparse *h, unsigned per_mille,
                           int64_t *out);

/* The bucket of the sample at 1-based rank `rank` (clamped to
 * 1..total), or -1 when h is empty. */
int hist_sparse_rank_bucket(const hist_sparse *h, uint64_t rank);

/* Appends the stored form of h to out; nothing when h is empty. */
void hist_sparse_encode(const hist_sparse *h, format_buf *out);
/* Adds a stored histogram to h. Returns 0, or -1 for bytes that are not
 * one (h is then unchanged). */
int hist_sparse_add_blob(hist_sparse *h, const void *blob, size_t len);

/*
 * Registers taskwatch_hist_merge(a, b) on db: the stored histogram holding
 * the counts of both stored histograms a and b (either may be NULL), for
 * the rollups' upserts. A blob that is not a histogram is an SQL error.
 * Returns an SQLite result code.
 */
int hist_sql_register(sqlite3 *db);

#endif /* TW_HIST_H */
