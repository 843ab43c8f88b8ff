/*
 * hist - the bucket layout, fixed and sparse counts, the stored form and
 * its merge (see hist.h).
 *
 * A value v >= HIST_EXACT with highest bit e falls in bucket
 * HIST_EXACT + (e - HIST_SUB_BITS - 1) * HIST_SUB + (the HIST_SUB_BITS bits
 * below the highest one), whose width is 2^(e - HIST_SUB_BITS).
 */
#include "hist.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

_Static_assert(HIST_BUCKETS % HIST_BLOCK == 0, "whole blocks");

int hist_bucket(int64_t value) {
  uint64_t v = value < 0 ? 0 : (uint64_t)value;
  if (v < HIST_EXACT)
    return (int)v;
  int e = 63 - __builtin_clzll(v);
  int sub = (int)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
  return HIST_EXACT + (e - HIST_SUB_BITS - 1) * HIST_SUB + sub;
}

int64_t hist_bucket_value(int bucket) {
  if (bucket < HIST_EXACT)
    return bucket < 0 ? 0 : bucket;
  int e = (bucket - HIST_EXACT) / HIST_SUB + HIST_SUB_BITS + 1;
  uint64_t sub = (uint64_t)((bucket - HIST_EXACT) % HIST_SUB);
  uint64_t width = UINT64_C(1) << (e - HIST_SUB_BITS);
  uint64_t mid = (UINT64_C(1) << e) + sub * width + width / 2;
  return mid > INT64_MAX ? INT64_MAX : (int64_t)mid;
}

int64_t hist_bucket_low(int bucket) {
  if (bucket <= 0)
    return INT64_MIN;
  if (bucket < HIST_EXACT)
    return bucket;
  int e = (bucket - HIST_EXACT) / HIST_SUB + HIST_SUB_BITS + 1;
  uint64_t sub = (uint64_t)((bucket - HIST_EXACT) % HIST_SUB);
  uint64_t low = (UINT64_C(1) << e) + sub * (UINT64_C(1) << (e - HIST_SUB_BITS));
  return low > INT64_MAX ? INT64_MAX : (int64_t)low;
}

int64_t hist_bucket_high(int bucket) {
  if (bucket >= HIST_BUCKETS - 1)
    return INT64_MAX;
  int64_t next = hist_bucket_low(bucket + 1);
  /* Buckets past 2^63 hold no int64_t: the last real one reaches up. */
  return next == INT64_MAX ? INT64_MAX : next - 1;
}

/* ---- fixed counts ---------------------------------------------------- */

void hist_init(hist *h) {
  memset(h, 0, sizeof(*h));
}

void hist_add(hist *h, int64_t value) {
  h->counts[hist_bucket(value)]++;
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
      return hist_bucket_value(b);
  }
  return hist_bucket_value(HIST_BUCKETS - 1);
}

/* ---- sparse counts --------------------------------------------------- */

void hist_sparse_init(hist_sparse *h) {
  memset(h, 0, sizeof(*h));
  h->max = -1;
}

void hist_sparse_fini(hist_sparse *h) {
  for (int i = 0; i < HIST_BLOCKS; i++)
    free(h->blocks[i]);
  hist_sparse_init(h);
}

void hist_sparse_clear(hist_sparse *h) {
  for (int i = 0; i < HIST_BLOCKS; i++)
    if (h->blocks[i])
      memset(h->blocks[i], 0, HIST_BLOCK * sizeof(uint64_t));
  h->total = 0;
  h->max = -1;
}

/* a + b, or UINT64_MAX when that does not fit: counts read from a store
 * are not trusted to stay small, and merging must never wrap. */
static uint64_t add_saturating(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void add_count(hist_sparse *h, int bucket, uint64_t n) {
  uint64_t **block = &h->blocks[bucket / HIST_BLOCK];
  if (*block == NULL)
    *block = xcalloc(HIST_BLOCK, sizeof(uint64_t));
  uint64_t *c = &(*block)[bucket % HIST_BLOCK];
  *c = add_saturating(*c, n);
  h->total = add_saturating(h->total, n);
}

void hist_sparse_add(hist_sparse *h, int64_t value) {
  if (value < 0)
    value = 0;
  add_count(h, hist_bucket(value), 1);
  if (value > h->max)
    h->max = value;
}

void hist_sparse_merge(hist_sparse *dst, const hist_sparse *src) {
  for (int i = 0; i < HIST_BLOCKS; i++) {
    if (src->blocks[i] == NULL)
      continue;
    for (int j = 0; j < HIST_BLOCK; j++)
      if (src->blocks[i][j])
        add_count(dst, i * HIST_BLOCK + j, src->blocks[i][j]);
  }
  if (src->max > dst->max)
    dst->max = src->max;
}

int hist_sparse_percentile(const hist_sparse *h, unsigned per_mille,
                           int64_t *out) {
  if (h->total == 0 || per_mille == 0 || per_mille > 1000)
    return -1;
  if (per_mille == 1000) {
    *out = h->max;
    return 0;
  }
  /* 128 bits: a total read from a store may be anything. */
  uint64_t rank =
      (uint64_t)(((unsigned __int128)h->total * per_mille + 999) / 1000);
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BLOCKS; i++) {
    if (h->blocks[i] == NULL)
      continue;
    for (int j = 0; j < HIST_BLOCK; j++) {
      seen = add_saturating(seen, h->blocks[i][j]);
      if (seen >= rank) {
        int64_t v = hist_bucket_value(i * HIST_BLOCK + j);
        *out = v < h->max ? v : h->max;
        return 0;
      }
    }
  }
  *out = h->max;
  return 0;
}

int hist_sparse_rank_bucket(const hist_sparse *h, uint64_t rank) {
  if (h->total == 0)
    return -1;
  if (rank < 1)
    rank = 1;
  if (rank > h->total)
    rank = h->total;
  uint64_t seen = 0;
  int last = -1;
  for (int i = 0; i < HIST_BLOCKS; i++) {
    if (h->blocks[i] == NULL)
      continue;
    for (int j = 0; j < HIST_BLOCK; j++) {
      if (h->blocks[i][j] == 0)
        continue;
      last = i * HIST_BLOCK + j;
      seen = add_saturating(seen, h->blocks[i][j]);
      if (seen >= rank)
        return last;
    }
  }
  return last;
}

/* ---- the stored form ------------------------------------------------- */

static void put_varint(format_buf *out, uint64_t v) {
  char bytes[10];
  size_t n = 0;
  do {
    bytes[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  format_buf_append(out, bytes, n);
}

/* Reads a varint at *p; 0, or -1 when it runs past end or beyond 64
 * bits. */
static int get_varint(const unsigned char **p, const unsigned char *end,
                      uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    unsigned char c = *(*p)++;
    if (shift == 63 && (c & 0x7e))
      return -1;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

void hist_sparse_encode(const hist_sparse *h, format_buf *out) {
  if (h->total == 0)
    return;
  format_buf_putc(out, HIST_FORMAT);
  put_varint(out, (uint64_t)h->max);
  int prev = -1;
  for (int i = 0; i < HIST_BLOCKS; i++) {
    if (h->blocks[i] == NULL)
      continue;
    for (int j = 0; j < HIST_BLOCK; j++) {
      uint64_t n = h->blocks[i][j];
      if (n == 0)
        continue;
      int b = i * HIST_BLOCK + j;
      put_varint(out, (uint64_t)(b - prev - 1));
      put_varint(out, n);
      prev = b;
    }
  }
}

/* A cursor over a stored histogram's buckets. */
typedef struct blob_cursor {
  const unsigned char *p, *end;
  int bucket; /* of the last pair read */
} blob_cursor;

/* Reads the header; 0 and *max, or -1. */
static int blob_open(blob_cursor *r, const void *blob, size_t len,
                     uint64_t *max) {
  r->p = blob;
  r->end = r->p + len;
  r->bucket = -1;
  if (len < 2 || *r->p++ != HIST_FORMAT)
    return -1;
  return get_varint(&r->p, r->end, max) == 0 && *max <= INT64_MAX ? 0 : -1;
}

/* The next (bucket, count): 1, 0 at the end, -1 for bad bytes. */
static int blob_next(blob_cursor *r, int *bucket, uint64_t *count) {
  uint64_t gap;
  if (r->p == r->end)
    return 0;
  if (get_varint(&r->p, r->end, &gap) != 0 ||
      get_varint(&r->p, r->end, count) != 0 || *count == 0 ||
      gap >= (uint64_t)(HIST_BUCKETS - 1 - r->bucket))
    return -1;
  r->bucket += (int)gap + 1;
  *bucket = r->bucket;
  return 1;
}

/* Checks a whole blob before anything of it is used. */
static int blob_valid(const void *blob, size_t len) {
  blob_cursor r;
  uint64_t max, count;
  int bucket, rc, buckets = 0;
  if (blob_open(&r, blob, len, &max) != 0)
    return 0;
  while ((rc = blob_next(&r, &bucket, &count)) == 1)
    buckets++;
  return rc == 0 && buckets > 0;
}

int hist_sparse_add_blob(hist_sparse *h, const void *blob, size_t len) {
  if (!blob_valid(blob, len))
    return -1;
  blob_cursor r;
  uint64_t max, count;
  int bucket;
  blob_open(&r, blob, len, &max);
  while (blob_next(&r, &bucket, &count) == 1)
    add_count(h, bucket, count);
  if ((int64_t)max > h->max)
    h->max = (int64_t)max;
  return 0;
}

/* Merges two valid blobs bucket by bucket into out. */
static void blob_merge(const void *a, size_t alen, const void *b, size_t blen,
                       format_buf *out) {
  blob_cursor ra, rb;
  uint64_t amax, bmax, na = 0, nb = 0;
  int ba = HIST_BUCKETS, bb = HIST_BUCKETS, prev = -1;
  blob_open(&ra, a, alen, &amax);
  blob_open(&rb, b, blen, &bmax);
  if (blob_next(&ra, &ba, &na) != 1)
    ba = HIST_BUCKETS;
  if (blob_next(&rb, &bb, &nb) != 1)
    bb = HIST_BUCKETS;
  format_buf_putc(out, HIST_FORMAT);
  put_varint(out, amax > bmax ? amax : bmax);
  while (ba < HIST_BUCKETS || bb < HIST_BUCKETS) {
    int bucket = ba < bb ? ba : bb;
    uint64_t n = add_saturating(ba == bucket ? na : 0, bb == bucket ? nb : 0);
    put_varint(out, (uint64_t)(bucket - prev - 1));
    put_varint(out, n);
    prev = bucket;
    if (ba == bucket && blob_next(&ra, &ba, &na) != 1)
      ba = HIST_BUCKETS;
    if (bb == bucket && blob_next(&rb, &bb, &nb) != 1)
      bb = HIST_BUCKETS;
  }
}

static void sql_merge(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const void *blob[2];
  int len[2];
  for (int i = 0; i < 2; i++) {
    blob[i] = sqlite3_value_blob(argv[i]);
    len[i] = sqlite3_value_bytes(argv[i]);
    if (sqlite3_value_type(argv[i]) != SQLITE_NULL &&
        !blob_valid(blob[i], (size_t)len[i])) {
      sqlite3_result_error(ctx, "taskwatch_hist_merge: not a histogram", -1);
      return;
    }
  }
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL ||
      sqlite3_value_type(argv[1]) == SQLITE_NULL) {
    sqlite3_result_value(
        ctx, argv[sqlite3_value_type(argv[0]) == SQLITE_NULL ? 1 : 0]);
    return;
  }
  format_buf out;
  format_buf_init(&out);
  blob_merge(blob[0], (size_t)len[0], blob[1], (size_t)len[1], &out);
  sqlite3_result_blob(ctx, out.data, (int)out.len, free);
}

int hist_sql_register(sqlite3 *db) {
  return sqlite3_create_function(db, "taskwatch_hist_merge", 2,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                 sql_merge, NULL, NULL);
}
