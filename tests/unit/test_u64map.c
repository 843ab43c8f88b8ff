/*
 * test_u64map - the collector's hash map: u64map_next() visits every
 * entry once whatever was deleted before, the byte size follows the
 * arrays, and the hash seed is set once per process (the same from every
 * thread, different in another process).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <cmocka.h>

#include "u64map.h"

static void iterates_each_entry_once(void **state) {
  (void)state;
  u64map m;
  u64map_init(&m);
  size_t pos = 0;
  uint64_t key;
  void *value;
  assert_int_equal(u64map_next(&m, &pos, &key, &value), 0);
  static char seen[3001];
  for (uint64_t k = 1; k <= 3000; k++)
    u64map_put(&m, k * 7919, &seen[k]);
  for (uint64_t k = 3; k <= 3000; k += 3)
    u64map_del(&m, k * 7919);
  size_t n = 0;
  pos = 0;
  while (u64map_next(&m, &pos, &key, &value)) {
    assert_int_equal(key % 7919, 0);
    uint64_t k = key / 7919;
    assert_true(k >= 1 && k <= 3000 && k % 3 != 0);
    assert_ptr_equal(value, &seen[k]);
    assert_int_equal(seen[k], 0);
    seen[k] = 1;
    n++;
  }
  assert_int_equal(n, 2000);
  assert_int_equal(u64map_count(&m), 2000);
  /* At the end it stays at the end; keys alone or values alone. */
  assert_int_equal(u64map_next(&m, &pos, &key, &value), 0);
  pos = 0;
  n = 0;
  while (u64map_next(&m, &pos, NULL, &value))
    n++;
  pos = 0;
  while (u64map_next(&m, &pos, &key, NULL))
    n++;
  assert_int_equal(n, 4000);
  assert_true(u64map_bytes(&m) >= 2000 * (sizeof(uint64_t) + sizeof(void *)));
  u64map_clear(&m);
  pos = 0;
  assert_int_equal(u64map_next(&m, &pos, &key, &value), 0);
  u64map_fini(&m);
  assert_int_equal(u64map_bytes(&m), 0);
}

static void *hash_in_thread(void *arg) {
  *(uint64_t *)arg = u64map_hash(42);
  return NULL;
}

/* Threads that hash first at the same time agree on the seed. */
static void seed_is_set_once(void **state) {
  (void)state;
  pthread_t t[8];
  uint64_t h[8];
  for (int i = 0; i < 8; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hash_in_thread, &h[i]), 0);
  for (int i = 0; i < 8; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
  for (int i = 1; i < 8; i++)
    assert_true(h[i] == h[0]);
  assert_true(u64map_hash(42) == h[0]);
  assert_true(u64map_hash(43) != h[0]);
}

/* Another process hashes differently: the seed is not a constant. */
static void seed_differs_between_processes(void **state) {
  const char *self = *(const char **)*state;
  char cmd[1024];
  unsigned long long a = 0, b = 0;
  snprintf(cmd, sizeof(cmd), "'%s' --print-hash", self);
  for (int i = 0; i < 2; i++) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%llu", i ? &b : &a), 1);
    assert_int_equal(pclose(p), 0);
  }
  assert_true(a != b);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--print-hash") == 0) {
    printf("%llu\n", (unsigned long long)u64map_hash(1));
    return 0;
  }
  static const char *self;
  self = argv[0];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(iterates_each_entry_once),
      cmocka_unit_test(seed_is_set_once),
      cmocka_unit_test_prestate(seed_differs_between_processes, &self),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
