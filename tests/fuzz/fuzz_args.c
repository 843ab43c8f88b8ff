/*
 * fuzz_args - libFuzzer target for what reads the command line and the
 * agent's size settings: any argv (the input split at NUL bytes) goes
 * through args_next() with a collector-like option table to its end or its
 * one usage error, and every piece through the value parsers, which must
 * keep their ranges and read their own output back.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "size.h"

static const struct option options[] = {
    {"db", required_argument, NULL, 256},
    {"listen", required_argument, NULL, 257},
    {"lost-after", required_argument, NULL, 258},
    {"log-level", required_argument, NULL, 259},
    {"once", no_argument, NULL, 260},
    {"format", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void values(const char *s) {
  uint64_t size;
  if (tw__size_parse(s, UINT64_C(1) << 40, &size) == 0) {
    char again[32];
    uint64_t back;
    if (size > UINT64_C(1) << 40)
      abort();
    snprintf(again, sizeof(again), "%" PRIu64, size);
    if (tw__size_parse(again, UINT64_MAX, &back) != 0 || back != size)
      abort();
  }
  long long n;
  if (args_parse_int(s, -5, 1000, &n) == 0 && (n < -5 || n > 1000))
    abort();
  double d;
  if (args_parse_double(s, 0, 1e9, &d) == 0 && !(d >= 0 && d <= 1e9))
    abort();
  int64_t us;
  if (args_parse_duration(s, 1000000, 1000, INT64_C(86400000000), &us) == 0 &&
      (us < 1000 || us > INT64_C(86400000000)))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *sink;
  if (sink == NULL && (sink = fopen("/dev/null", "w")) == NULL)
    abort();
  char *copy = malloc(size + 1);
  memcpy(copy, data, size);
  copy[size] = '\0';
  char *argv[18] = {"taskwatch"};
  int argc = 1;
  for (char *p = copy; argc < 17 && p <= copy + size; p += strlen(p) + 1) {
    argv[argc++] = p;
    values(p);
  }
  argv[argc] = NULL;
  args a;
  args_init(&a, "fuzz", argc, argv, "ho:", options);
  a.err = sink;
  int c, seen = 0;
  while ((c = args_next(&a)) != -1 && c != ARGS_ERROR) {
    /* At most one option per byte (a cluster: -hhh). */
    if (++seen > (int)size + argc)
      abort();
    if (c == 'o' || (c >= 256 && c != 260)) {
      if (a.value == NULL)
        abort();
    }
  }
  if (c == -1) {
    int first = args_first_operand(&a);
    if (first < 1 || first > argc)
      abort();
    args_no_operands(&a);
  }
  free(copy);
  return 0;
}
