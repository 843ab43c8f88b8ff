/*
 * fuzz_hist - libFuzzer target for the stored form of the rollups'
 * histograms (common/hist), which readers decode from the store: any
 * bytes are refused or decoded, never read past their end; what decodes
 * encodes back to bytes that decode to the same counts, and merging two
 * blobs (the collector's SQL function) equals adding both.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static void same(const hist_sparse *a, const hist_sparse *b) {
  if (a->total != b->total || a->max != b->max)
    abort();
  for (int i = 0; i < HIST_BLOCKS; i++)
    for (int j = 0; j < HIST_BLOCK; j++) {
      uint64_t x = a->blocks[i] ? a->blocks[i][j] : 0;
      uint64_t y = b->blocks[i] ? b->blocks[i][j] : 0;
      if (x != y)
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Copied, so a read past the end is one ASan sees. */
  uint8_t *copy = malloc(size ? size : 1);
  memcpy(copy, data, size);
  hist_sparse h, again, both;
  hist_sparse_init(&h);
  hist_sparse_init(&again);
  hist_sparse_init(&both);
  if (hist_sparse_add_blob(&h, copy, size) == 0) {
    format_buf b;
    format_buf_init(&b);
    hist_sparse_encode(&h, &b);
    if (hist_sparse_add_blob(&again, b.data, b.len) != 0)
      abort();
    same(&h, &again);
    /* The blob added twice, by decoding and by SQL's merge. */
    if (hist_sparse_add_blob(&again, copy, size) != 0)
      abort();
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        hist_sql_register(db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT taskwatch_hist_merge(?1, ?1)", -1, &st,
                           NULL) != SQLITE_OK)
      abort();
    sqlite3_bind_blob(st, 1, copy, (int)size, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW ||
        hist_sparse_add_blob(&both, sqlite3_column_blob(st, 0),
                             (size_t)sqlite3_column_bytes(st, 0)) != 0)
      abort();
    same(&again, &both);
    sqlite3_finalize(st);
    sqlite3_close(db);
    format_buf_fini(&b);
  }
  hist_sparse_fini(&h);
  hist_sparse_fini(&again);
  hist_sparse_fini(&both);
  free(copy);
  return 0;
}
