/*
 * test_args - the shared command line: both spellings of a value, prefixes,
 * permuted operands, every usage error's exact line, and the value parsers'
 * ranges and units.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "args.h"

enum { OPT_DB = 256, OPT_LISTEN, OPT_LOST_AFTER, OPT_LOG_LEVEL, OPT_ONCE };

static const struct option options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"lost-after", required_argument, NULL, OPT_LOST_AFTER},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"once", no_argument, NULL, OPT_ONCE},
    {"format", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One parse of a command line, with what it printed. */
typedef struct parse {
  char *argv[16];
  int argc;
  int codes[16]; /* args_next()'s answers, up to the first -1 or error */
  const char *values[16];
  char names[16][48];
  int n;
  int first; /* args_first_operand() */
  char err[512];
} parse;

static void run(parse *p, ...) {
  memset(p, 0, sizeof(*p));
  va_list ap;
  va_start(ap, p);
  p->argv[p->argc++] = "taskwatch-test";
  const char *s;
  while ((s = va_arg(ap, const char *)) != NULL)
    p->argv[p->argc++] = (char *)s;
  va_end(ap);
  args a;
  args_init(&a, "collector", p->argc, p->argv, "ho:", options);
  char *buf = NULL;
  size_t len = 0;
  a.err = open_memstream(&buf, &len);
  int c;
  do {
    c = args_next(&a);
    p->codes[p->n] = c;
    p->values[p->n] = a.value;
    snprintf(p->names[p->n], sizeof(p->names[0]), "%s", a.name);
    p->n++;
  } while (c != -1 && c != ARGS_ERROR && p->n < 16);
  p->first = args_first_operand(&a);
  if (c == -1)
    args_no_operands(&a);
  fclose(a.err);
  snprintf(p->err, sizeof(p->err), "%s", buf ? buf : "");
  free(buf);
}

static void both_spellings(void **state) {
  (void)state;
  parse p;
  run(&p, "--db=a.db", "--listen", "unix:/x", "-o", "json", "--once", NULL);
  assert_int_equal(p.n, 5);
  assert_int_equal(p.codes[0], OPT_DB);
  assert_string_equal(p.values[0], "a.db");
  assert_string_equal(p.names[0], "--db");
  assert_int_equal(p.codes[1], OPT_LISTEN);
  assert_string_equal(p.values[1], "unix:/x");
  assert_int_equal(p.codes[2], 'o');
  assert_string_equal(p.values[2], "json");
  assert_string_equal(p.names[2], "-o");
  assert_int_equal(p.codes[3], OPT_ONCE);
  assert_null(p.values[3]);
  assert_int_equal(p.codes[4], -1);
  assert_string_equal(p.err, "");
  /* A value may itself begin with '-' or hold '='. */
  run(&p, "--db", "-odd=name", "-ojson", NULL);
  assert_string_equal(p.values[0], "-odd=name");
  assert_string_equal(p.values[1], "json");
  assert_string_equal(p.err, "");
}

static void prefixes_and_operands(void **state) {
  (void)state;
  parse p;
  /* A unique prefix names the whole option. */
  run(&p, "--li=tcp://h:1", "--d", "x.db", NULL);
  assert_int_equal(p.codes[0], OPT_LISTEN);
  assert_string_equal(p.names[0], "--listen");
  assert_int_equal(p.codes[1], OPT_DB);
  /* Operands may come first; `--` ends the options. */
  run(&p, "stray", "--once", "--", "--db", NULL);
  assert_int_equal(p.codes[0], OPT_ONCE);
  assert_int_equal(p.codes[1], -1);
  assert_string_equal(p.argv[p.first], "stray");
  assert_string_equal(p.argv[p.first + 1], "--db");
  assert_string_equal(p.err, "taskwatch collector: unexpected argument "
                             "'stray' (see --help)\n");
}

/* The one line each mistake gets. */
static void messages(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    const char *line;
  } cases[] = {
      {{"--foo"}, "unknown option --foo"},
      {{"--foo=bar"}, "unknown option --foo"},
      {{"-z"}, "unknown option -z"},
      {{"-hz"}, "unknown option -z"},
      {{"--db"}, "option --db needs a value"},
      {{"--d"}, "option --db needs a value"},
      {{"-o"}, "option -o needs a value"},
      {{"--format"}, "option --format needs a value"},
      {{"--once=yes"}, "option --once takes no value"},
      {{"--help=1"}, "option --help takes no value"},
      {{"--l", "x"},
       "ambiguous option --l (--listen, --lost-after, "
       "--log-level)"},
      {{"--lo=3"}, "ambiguous option --lo (--lost-after, --log-level)"},
      {{"x.db"}, "unexpected argument 'x.db'"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    parse p;
    run(&p, cases[i].args[0], cases[i].args[1], cases[i].args[2], NULL);
    char want[256];
    snprintf(want, sizeof(want), "taskwatch collector: %s (see --help)\n",
             cases[i].line);
    if (strcmp(p.err, want) != 0)
      fail_msg("%s: got '%s', want '%s'", cases[i].args[0], p.err, want);
    /* An option error stops the parse at once. */
    if (strchr(cases[i].args[0], '-'))
      assert_int_equal(p.codes[p.n - 1], ARGS_ERROR);
  }
}

/* A parse that leaves a, on the option `--name value`. */
static void current(args *a, char **argv, FILE *err) {
  args_init(a, "demo", 3, argv, "", options);
  a->err = err;
  assert_int_equal(args_next(a), OPT_LOST_AFTER);
}

static void value_messages(void **state) {
  (void)state;
  char *argv[] = {"t", "--lost-after", "soon", NULL};
  char *buf = NULL;
  size_t len = 0;
  FILE *err = open_memstream(&buf, &len);
  args a;
  current(&a, argv, err);
  long long n = 42;
  double d = 4.2;
  int64_t us = 42;
  int idx = 7;
  static const char *const words[] = {"normal", "full", NULL};
  assert_int_equal(args_int(&a, 1, 10, &n), ARGS_USAGE);
  assert_int_equal(args_int(&a, 1, INT64_MAX, &n), ARGS_USAGE);
  assert_int_equal(args_double(&a, 0, 1e12, &d), ARGS_USAGE);
  assert_int_equal(args_duration(&a, 1000000, 0, 86400000000, &us), ARGS_USAGE);
  assert_int_equal(args_duration(&a, 1000, 1000, INT64_MAX, &us), ARGS_USAGE);
  assert_int_equal(args_choice(&a, words, &idx), ARGS_USAGE);
  assert_true(n == 42 && d == 4.2 && us == 42 && idx == 7);
  fclose(err);
  assert_string_equal(
      buf, "taskwatch demo: invalid --lost-after 'soon': expected a whole "
           "number from 1 to 10 (see --help)\n"
           "taskwatch demo: invalid --lost-after 'soon': expected a whole "
           "number of at least 1 (see --help)\n"
           "taskwatch demo: invalid --lost-after 'soon': expected a number "
           "from 0 to 1000000000000 (see --help)\n"
           "taskwatch demo: invalid --lost-after 'soon': expected a duration "
           "from 0 to 1d, such as 30s, 1.5m or 2h (a bare number is seconds) "
           "(see --help)\n"
           "taskwatch demo: invalid --lost-after 'soon': expected a duration "
           "of at least 1ms, such as 30s, 1.5m or 2h (a bare number is "
           "milliseconds) (see --help)\n"
           "taskwatch demo: invalid --lost-after 'soon': expected one of "
           "normal, full (see --help)\n");
  free(buf);
  argv[2] = "full";
  current(&a, argv, stderr);
  assert_int_equal(args_choice(&a, words, &idx), 0);
  assert_int_equal(idx, 1);
}

static void numbers(void **state) {
  (void)state;
  long long n = 0;
  assert_int_equal(args_parse_int("1024", 1, 2000, &n), 0);
  assert_true(n == 1024);
  assert_int_equal(args_parse_int("-5", -10, 10, &n), 0);
  assert_true(n == -5);
  const char *bad_ints[] = {"",    " 1",   "+1",
                            "1 ",  "12x",  "0x10",
                            "1e3", "2001", "99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad_ints) / sizeof(bad_ints[0]); i++)
    assert_int_equal(args_parse_int(bad_ints[i], 1, 2000, &n), -1);
  assert_int_equal(args_parse_int(NULL, 1, 2000, &n), -1);
  double d = 0;
  assert_int_equal(args_parse_double("2.5", 0, 10, &d), 0);
  assert_true(d == 2.5);
  assert_int_equal(args_parse_double("1e3", 0, 1e4, &d), 0);
  assert_true(d == 1000);
  const char *bad_doubles[] = {"",    "nan", "inf", "0x1p3", " 1",
                               "1,5", "-1",  "11",  "1e400"};
  for (size_t i = 0; i < sizeof(bad_doubles) / sizeof(bad_doubles[0]); i++)
    assert_int_equal(args_parse_double(bad_doubles[i], 0, 10, &d), -1);
}

static void durations(void **state) {
  (void)state;
  const int64_t s = 1000000, day = 86400 * s;
  int64_t us = 0;
  /* A bare number counts in the option's unit, fractions included. */
  assert_int_equal(args_parse_duration("30", s, 0, day, &us), 0);
  assert_true(us == 30 * s);
  assert_int_equal(args_parse_duration("1.5", s, 0, day, &us), 0);
  assert_true(us == 1500000);
  assert_int_equal(args_parse_duration("7", day, 0, 100 * day, &us), 0);
  assert_true(us == 7 * day);
  assert_int_equal(args_parse_duration("10", 1000, 0, day, &us), 0);
  assert_true(us == 10000);
  /* Units win over the option's own. */
  assert_int_equal(args_parse_duration("250ms", s, 0, day, &us), 0);
  assert_true(us == 250000);
  assert_int_equal(args_parse_duration("2m30s", s, 0, day, &us), 0);
  assert_true(us == 150 * s);
  assert_int_equal(args_parse_duration("12h", day, 0, 100 * day, &us), 0);
  assert_true(us == 12 * 3600 * s);
  /* Ranges, signs, junk. */
  const char *bad[] = {"", "-1", "2d", "1x", "nan", "1e30", "s"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    us = 5;
    assert_int_equal(args_parse_duration(bad[i], s, 0, day, &us), -1);
    assert_true(us == 5);
  }
  assert_int_equal(args_parse_duration("0.5ms", 1000, 1000, day, &us), -1);
}

/* What args_options() gave its apply: the options, up to 8. */
typedef struct applied {
  int codes[8];
  const char *values[8];
  int n;
} applied;

/* Takes every option but --listen, which it refuses as a bad value. */
static int apply_recorded(const args *a, int c, void *ctx) {
  applied *got = ctx;
  got->codes[got->n] = c;
  got->values[got->n++] = a->value;
  return c == OPT_LISTEN ? args_invalid(a, "no listen here") : 0;
}

/* args_options() over argv (NULL-terminated, after the program's name),
 * what it printed on a.err in err. */
static int options_of(applied *got, char *err, size_t size, ...) {
  char *argv[16] = {"taskwatch-test"};
  int argc = 1;
  va_list ap;
  va_start(ap, size);
  const char *s;
  while ((s = va_arg(ap, const char *)) != NULL)
    argv[argc++] = (char *)s;
  va_end(ap);
  memset(got, 0, sizeof(*got));
  args a;
  args_init(&a, "collector", argc, argv, "ho:", options);
  char *buf = NULL;
  size_t len = 0;
  a.err = open_memstream(&buf, &len);
  int rc = args_options(&a, "", apply_recorded, got);
  fclose(a.err);
  snprintf(err, size, "%s", buf ? buf : "");
  free(buf);
  return rc;
}

/* A subcommand's whole parse: every option to its apply in order, --help
 * before the rest, and any usage error (the apply's own, an unknown
 * option, an operand) as ARGS_USAGE with its one line. */
static void options_read_to_the_end(void **state) {
  (void)state;
  applied got;
  char err[256];
  assert_int_equal(
      options_of(&got, err, sizeof err, "--db", "a.db", "--once", NULL), 0);
  assert_int_equal(got.n, 2);
  assert_int_equal(got.codes[0], OPT_DB);
  assert_string_equal(got.values[0], "a.db");
  assert_int_equal(got.codes[1], OPT_ONCE);
  assert_string_equal(err, "");
  assert_int_equal(
      options_of(&got, err, sizeof err, "--help", "--db", "x", NULL),
      ARGS_HELP);
  assert_int_equal(got.n, 0);
  assert_int_equal(options_of(&got, err, sizeof err, "--once", "stray", NULL),
                   ARGS_USAGE);
  assert_string_equal(err, "taskwatch collector: unexpected argument "
                           "'stray' (see --help)\n");
  assert_int_equal(
      options_of(&got, err, sizeof err, "--listen", "x", "--once", NULL),
      ARGS_USAGE);
  assert_int_equal(got.n, 1);
  assert_string_equal(err, "taskwatch collector: invalid --listen 'x': "
                           "expected no listen here (see --help)\n");
  assert_int_equal(options_of(&got, err, sizeof err, "--bogus", NULL),
                   ARGS_USAGE);
  assert_int_equal(got.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(both_spellings),
      cmocka_unit_test(prefixes_and_operands),
      cmocka_unit_test(options_read_to_the_end),
      cmocka_unit_test(messages),
      cmocka_unit_test(value_messages),
      cmocka_unit_test(numbers),
      cmocka_unit_test(durations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
