/*
 * size - parsing byte counts with units (see size.h for the grammar).
 * No locale, no allocation: the agent calls it while configuring.
 */
#include "size.h"

#include <stddef.h>
#include <strings.h>

/* Every accepted suffix with its multiplier. */
static const struct {
  const char *suffix;
  uint64_t factor;
} units[] = {
    {"", 1},
    {"b", 1},
    {"k", UINT64_C(1) << 10},
    {"kib", UINT64_C(1) << 10},
    {"kb", UINT64_C(1000)},
    {"m", UINT64_C(1) << 20},
    {"mib", UINT64_C(1) << 20},
    {"mb", UINT64_C(1000000)},
    {"g", UINT64_C(1) << 30},
    {"gib", UINT64_C(1) << 30},
    {"gb", UINT64_C(1000000000)},
    {"t", UINT64_C(1) << 40},
    {"tib", UINT64_C(1) << 40},
    {"tb", UINT64_C(1000000000000)},
};

int tw__size_parse(const char *text, uint64_t max, uint64_t *out) {
  const char *s = text;
  uint64_t n = 0;
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  while (*s >= '0' && *s <= '9') {
    if (__builtin_mul_overflow(n, 10, &n) ||
        __builtin_add_overflow(n, (uint64_t)(*s - '0'), &n))
      return -1;
    s++;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    uint64_t v;
    if (strcasecmp(s, units[i].suffix) != 0)
      continue;
    if (__builtin_mul_overflow(n, units[i].factor, &v) || v > max)
      return -1;
    *out = v;
    return 0;
  }
  return -1;
}
