/*
 * rollup - buckets keyed by (minute, name) in a seeded hash map.
 */
#include "rollup.h"

#include <stdlib.h>
#include <string.h>

#include "hist.h"
#include "u64map.h"
#include "xalloc.h"

/* Minutes behind the newest one whose buckets stay in memory. */
#define KEEP_MINUTES 5

typedef struct bucket bucket;
struct bucket {
  bucket *next_same_hash;
  bucket *next_dirty;
  bucket *next_touched;
  int64_t minute;
  int dirty;
  int touched; /* changed since the last commit or rollback */
  int64_t delta[SCHEMA_STATUS_COUNT];
  hist wait, run;
  hist committed_wait, committed_run; /* as of the last commit */
  size_t name_len;
  char name[];
};

struct rollup {
  u64map buckets; /* key -> chain */
  bucket *dirty;
  bucket *touched;
  int64_t newest_minute;
};

static uint64_t key_of(int64_t minute, const char *name, size_t len) {
  uint64_t h = UINT64_C(1469598103934665603);
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)name[i]) * UINT64_C(1099511628211);
  uint64_t k = u64map_hash(h ^ ((uint64_t)minute * 31));
  return k ? k : 1;
}

rollup *rollup_new(void) {
  rollup *r = xcalloc(1, sizeof(*r));
  u64map_init(&r->buckets);
  return r;
}

static void free_chains(u64map *m) {
  size_t pos = 0;
  void *head;
  while (u64map_next(m, &pos, NULL, &head)) {
    bucket *b = head;
    while (b) {
      bucket *next = b->next_same_hash;
      free(b);
      b = next;
    }
  }
}

void rollup_free(rollup *r) {
  if (r == NULL)
    return;
  free_chains(&r->buckets);
  u64map_fini(&r->buckets);
  free(r);
}

static bucket *bucket_of(rollup *r, int64_t minute, const char *name,
                         size_t len) {
  uint64_t key = key_of(minute, name, len);
  bucket *head = u64map_get(&r->buckets, key);
  for (bucket *b = head; b; b = b->next_same_hash)
    if (b->minute == minute && b->name_len == len &&
        memcmp(b->name, name, len) == 0)
      return b;
  bucket *b = xcalloc(1, sizeof(*b) + len + 1);
  b->minute = minute;
  b->name_len = len;
  memcpy(b->name, name, len);
  b->next_same_hash = head;
  u64map_put(&r->buckets, key, b);
  return b;
}

void rollup_add(rollup *r, const char *name, size_t len, int64_t finished_at,
                int status, int64_t wait_us, int64_t run_us) {
  if (status < 0 || status >= SCHEMA_STATUS_COUNT)
    return;
  int64_t minute =
      finished_at - (((finished_at % ROLLUP_MINUTE_US) + ROLLUP_MINUTE_US) %
                     ROLLUP_MINUTE_US);
  bucket *b = bucket_of(r, minute, name, len);
  if (!b->touched) {
    b->committed_wait = b->wait;
    b->committed_run = b->run;
    b->touched = 1;
    b->next_touched = r->touched;
    r->touched = b;
  }
  b->delta[status]++;
  if (wait_us >= 0)
    hist_add(&b->wait, wait_us);
  if (run_us >= 0)
    hist_add(&b->run, run_us);
  if (!b->dirty) {
    b->dirty = 1;
    b->next_dirty = r->dirty;
    r->dirty = b;
  }
  if (minute > r->newest_minute)
    r->newest_minute = minute;
}

static void percentiles(const hist *h, int64_t out[3]) {
  static const double q[3] = {0.50, 0.95, 0.99};
  for (int i = 0; i < 3; i++)
    out[i] = h->total ? hist_quantile(h, q[i]) : -1;
}

/* Drops the buckets too old to be kept, rebuilding the map. */
static void evict(rollup *r) {
  int64_t oldest = r->newest_minute - KEEP_MINUTES * ROLLUP_MINUTE_US;
  u64map keep;
  u64map_init(&keep);
  size_t pos = 0;
  void *head;
  while (u64map_next(&r->buckets, &pos, NULL, &head)) {
    bucket *b = head;
    while (b) {
      bucket *next = b->next_same_hash;
      if (b->minute < oldest && !b->dirty && !b->touched) {
        free(b);
      } else {
        uint64_t key = key_of(b->minute, b->name, b->name_len);
        b->next_same_hash = u64map_get(&keep, key);
        u64map_put(&keep, key, b);
      }
      b = next;
    }
  }
  u64map_fini(&r->buckets);
  r->buckets = keep;
}

int rollup_flush(rollup *r, int (*emit)(void *arg, const rollup_row *row),
                 void *arg) {
  int rc = 0;
  bucket *b = r->dirty;
  while (b) {
    bucket *next = b->next_dirty;
    if (rc == 0) {
      rollup_row row;
      row.minute = b->minute;
      row.name = b->name;
      row.name_len = b->name_len;
      memcpy(row.counts, b->delta, sizeof(row.counts));
      percentiles(&b->wait, row.wait_p);
      percentiles(&b->run, row.run_p);
      rc = emit(arg, &row);
    }
    memset(b->delta, 0, sizeof(b->delta));
    b->dirty = 0;
    b->next_dirty = NULL;
    b = next;
  }
  r->dirty = NULL;
  if (r->buckets.count > 64)
    evict(r);
  return rc;
}

void rollup_commit(rollup *r) {
  for (bucket *b = r->touched, *next; b; b = next) {
    next = b->next_touched;
    b->touched = 0;
    b->next_touched = NULL;
  }
  r->touched = NULL;
}

void rollup_rollback(rollup *r) {
  for (bucket *b = r->touched, *next; b; b = next) {
    next = b->next_touched;
    b->wait = b->committed_wait;
    b->run = b->committed_run;
    memset(b->delta, 0, sizeof(b->delta));
    b->dirty = 0;
    b->next_dirty = NULL;
    b->touched = 0;
    b->next_touched = NULL;
  }
  r->touched = NULL;
  r->dirty = NULL;
}
