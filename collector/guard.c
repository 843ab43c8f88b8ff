/*
 * guard - the counters of guard.h, one atomic each.
 */
#include "guard.h"

#include <stdatomic.h>
#include <stdio.h>

static _Atomic uint64_t counters[GUARD_COUNT];

static const char *const names[GUARD_COUNT] = {
#define GUARD__NAME(name, help) [GUARD_##name] = #name,
    GUARD_COUNTER_MAP(GUARD__NAME)
#undef GUARD__NAME
};

static const char *const helps[GUARD_COUNT] = {
#define GUARD__HELP(name, help) [GUARD_##name] = help,
    GUARD_COUNTER_MAP(GUARD__HELP)
#undef GUARD__HELP
};

uint64_t guard_count(enum guard_counter which) {
  return atomic_fetch_add_explicit(&counters[which], 1, memory_order_relaxed) +
         1;
}

int guard_log_due(uint64_t n) {
  return n > 0 && (n & (n - 1)) == 0;
}

void guard_get(guard_stats *out) {
#define GUARD__GET(name, help)                                                 \
  out->name =                                                                  \
      atomic_load_explicit(&counters[GUARD_##name], memory_order_relaxed);
  GUARD_COUNTER_MAP(GUARD__GET)
#undef GUARD__GET
}

const char *guard_name(enum guard_counter which) {
  return (unsigned)which < GUARD_COUNT ? names[which] : "?";
}

const char *guard_help(enum guard_counter which) {
  return (unsigned)which < GUARD_COUNT ? helps[which] : "?";
}

int guard_format(char *buf, size_t size) {
  int used = 0;
  for (int i = 0; i < GUARD_COUNT; i++) {
    size_t at = (size_t)used < size ? (size_t)used : size;
    int n = snprintf(buf + at, size - at, "%s%s=%llu", i ? " " : "", names[i],
                     (unsigned long long)atomic_load_explicit(
                         &counters[i], memory_order_relaxed));
    if (n < 0)
      return n;
    used += n;
  }
  return used;
}
