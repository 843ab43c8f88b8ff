/*
 * args - getopt_long(3) with one wording for every usage error, and the
 * value parsers the subcommands share (see args.h). getopt_long prints
 * nothing here (opterr = 0, and a leading ':' in the short options): this
 * module names the offending option itself, in full, so "--li" missing its
 * value is reported as "--listen".
 */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

#define US_PER_SEC INT64_C(1000000)

void args_init(args *a, const char *command, int argc, char **argv,
               const char *shortopts, const struct option *longopts) {
  memset(a, 0, sizeof(*a));
  a->command = command;
  a->argc = argc;
  a->argv = argv;
  a->longopts = longopts;
  a->err = stderr;
  /* getopt's ':' (report a missing value apart) follows a leading '+'
   * (stop at the first operand, for the entry point's COMMAND). */
  if (shortopts[0] == '+')
    snprintf(a->shortopts, sizeof(a->shortopts), "+:%s", shortopts + 1);
  else
    snprintf(a->shortopts, sizeof(a->shortopts), ":%s", shortopts);
  /* 0, not 1: glibc then also forgets a half-read cluster such as -zq
   * from an earlier parse. */
  optind = 0;
  opterr = 0;
}

static void vreport(FILE *err, const char *command, const char *fmt,
                    va_list ap) {
  fprintf(err, "taskwatch%s%s: ", command ? " " : "", command ? command : "");
  vfprintf(err, fmt, ap);
  fputs(" (see --help)\n", err);
}

int args_error(const args *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(a->err, a->command, fmt, ap);
  va_end(ap);
  return ARGS_USAGE;
}

int args_fail(const char *command, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(stderr, command, fmt, ap);
  va_end(ap);
  return ARGS_USAGE;
}

/* The long options that `word` (a name without its dashes, ending at '='
 * or NUL) names: the exact match alone, else every option it begins. */
static size_t lookup(const args *a, const char *word, const struct option **m,
                     size_t max) {
  size_t len = strcspn(word, "=");
  size_t n = 0;
  for (const struct option *o = a->longopts; o->name; o++) {
    if (strncmp(o->name, word, len) != 0)
      continue;
    if (strlen(o->name) == len) {
      m[0] = o;
      return 1;
    }
    if (n < max)
      m[n] = o;
    n++;
  }
  return n;
}

/* The argument getopt_long just stepped over, if it was a long option. */
static const char *long_token(const args *a) {
  if (optind < 1 || optind > a->argc)
    return NULL;
  const char *t = a->argv[optind - 1];
  return t && strncmp(t, "--", 2) == 0 && t[2] != '\0' ? t + 2 : NULL;
}

static int unknown_long(const args *a, const char *word) {
  const struct option *m[8];
  size_t n = lookup(a, word, m, 8);
  int len = (int)strcspn(word, "=");
  if (n <= 1)
    return args_error(a, "unknown option --%.*s", len, word);
  char list[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < n && i < 8 && used < sizeof(list); i++)
    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s--%s",
                             i ? ", " : "", m[i]->name);
  return args_error(a, "ambiguous option --%.*s (%s)", len, word, list);
}

/* getopt_long returned '?': an unknown or ambiguous option, or a value
 * given to an option that takes none. */
static int bad_option(const args *a) {
  const char *word = long_token(a);
  if (optopt == 0 && word)
    return unknown_long(a, word);
  if (word && strchr(word, '=')) {
    const struct option *m[1];
    if (lookup(a, word, m, 1) == 1 && m[0]->has_arg == no_argument &&
        m[0]->val == optopt)
      return args_error(a, "option --%s takes no value", m[0]->name);
  }
  if (optopt > 0 && optopt < 128)
    return args_error(a, "unknown option -%c", optopt);
  return args_error(a, "unknown option %s",
                    optind >= 1 && optind <= a->argc ? a->argv[optind - 1]
                                                     : "");
}

/* getopt_long returned ':': an option at the end without its value. */
static int missing_value(const args *a) {
  const char *word = long_token(a);
  const struct option *m[1];
  if (word && lookup(a, word, m, 1) == 1)
    return args_error(a, "option --%s needs a value", m[0]->name);
  return args_error(a, "option -%c needs a value", optopt);
}

int args_next(args *a) {
  int index = -1;
  a->value = NULL;
  a->name[0] = '\0';
  int c = getopt_long(a->argc, a->argv, a->shortopts, a->longopts, &index);
  if (c == -1)
    return -1;
  if (c == ':') {
    missing_value(a);
    return ARGS_ERROR;
  }
  if (c == '?') {
    bad_option(a);
    return ARGS_ERROR;
  }
  a->value = optarg;
  if (index >= 0)
    snprintf(a->name, sizeof(a->name), "--%s", a->longopts[index].name);
  else
    snprintf(a->name, sizeof(a->name), "-%c", c);
  return c;
}

int args_options(args *a, const char *usage_text, args_apply_fn *apply,
                 void *ctx) {
  int c;
  while ((c = args_next(a)) != -1) {
    if (c == ARGS_ERROR)
      return ARGS_USAGE;
    if (c == 'h') {
      fputs(usage_text, stdout);
      return ARGS_HELP;
    }
    if (apply(a, c, ctx) != 0)
      return ARGS_USAGE;
  }
  return args_no_operands(a);
}

int args_first_operand(const args *a) {
  return optind < 1 ? 1 : optind > a->argc ? a->argc : optind;
}

int args_no_operands(const args *a) {
  int first = args_first_operand(a);
  if (first < a->argc)
    return args_error(a, "unexpected argument '%s'", a->argv[first]);
  return 0;
}

int args_invalid(const args *a, const char *what) {
  return args_error(a, "invalid %s '%s': expected %s", a->name,
                    a->value ? a->value : "", what);
}

/* ---- values ------------------------------------------------------------- */

int args_parse_int(const char *s, long long min, long long max,
                   long long *out) {
  if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '-'))
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

int args_parse_double(const char *s, double min, double max, double *out) {
  /* Plain decimal only: strtod would also take "nan", "inf", hex floats
   * and leading blanks. */
  if (s == NULL || *s == '\0' || strspn(s, "0123456789.-+eE") != strlen(s))
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min ||
      v > max)
    return -1;
  *out = v;
  return 0;
}

int args_parse_duration(const char *s, int64_t unit_us, int64_t min_us,
                        int64_t max_us, int64_t *out_us) {
  double bare;
  int64_t v;
  if (args_parse_double(s, 0, 1e18, &bare) == 0) {
    double us = bare * (double)unit_us;
    if (!(us < 9.2e18))
      return -1;
    v = llround(us);
  } else if (s == NULL || format_parse_duration(s, &v) != 0) {
    return -1;
  }
  if (v < min_us || v > max_us)
    return -1;
  *out_us = v;
  return 0;
}

/* ---- values of the current option, with the message ------------------- */

int args_int(const args *a, long long min, long long max, long long *out) {
  if (args_parse_int(a->value, min, max, out) == 0)
    return 0;
  char what[96];
  if (max == INT64_MAX)
    snprintf(what, sizeof(what), "a whole number of at least %lld", min);
  else
    snprintf(what, sizeof(what), "a whole number from %lld to %lld", min, max);
  return args_invalid(a, what);
}

int args_double(const args *a, double min, double max, double *out) {
  if (args_parse_double(a->value, min, max, out) == 0)
    return 0;
  char what[96];
  snprintf(what, sizeof(what), "a number from %.15g to %.15g", min, max);
  return args_invalid(a, what);
}

/* A duration in the largest unit that divides it exactly: "1ms", "2d". */
static void exact_duration(int64_t us, char *buf, size_t len) {
  static const struct {
    int64_t us;
    const char *name;
  } units[] = {{86400 * US_PER_SEC, "d"},
               {3600 * US_PER_SEC, "h"},
               {60 * US_PER_SEC, "m"},
               {US_PER_SEC, "s"},
               {1000, "ms"},
               {1, "us"}};
  if (us == 0) {
    snprintf(buf, len, "0");
    return;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (us % units[i].us == 0 || units[i].us == 1) {
      snprintf(buf, len, "%lld%s", (long long)(us / units[i].us),
               units[i].name);
      return;
    }
}

static const char *unit_name(int64_t unit_us) {
  switch (unit_us) {
  case 1:
    return "microseconds";
  case 1000:
    return "milliseconds";
  case US_PER_SEC:
    return "seconds";
  case 60 * US_PER_SEC:
    return "minutes";
  case 3600 * US_PER_SEC:
    return "hours";
  default:
    return "days";
  }
}

int args_duration(const args *a, int64_t unit_us, int64_t min_us,
                  int64_t max_us, int64_t *out_us) {
  if (args_parse_duration(a->value, unit_us, min_us, max_us, out_us) == 0)
    return 0;
  char lo[32], hi[32], range[80], what[192];
  exact_duration(min_us, lo, sizeof(lo));
  exact_duration(max_us, hi, sizeof(hi));
  if (max_us == INT64_MAX)
    snprintf(range, sizeof(range), "of at least %s", lo);
  else
    snprintf(range, sizeof(range), "from %s to %s", lo, hi);
  snprintf(what, sizeof(what),
           "a duration %s, such as 30s, 1.5m or 2h (a bare number is %s)",
           range, unit_name(unit_us));
  return args_invalid(a, what);
}

int args_choice(const args *a, const char *const *choices, int *out) {
  for (int i = 0; choices[i]; i++)
    if (a->value && strcmp(a->value, choices[i]) == 0) {
      *out = i;
      return 0;
    }
  char what[256] = "one of ";
  size_t used = strlen(what);
  for (int i = 0; choices[i] && used < sizeof(what); i++)
    used += (size_t)snprintf(what + used, sizeof(what) - used, "%s%s",
                             i ? ", " : "", choices[i]);
  return args_invalid(a, what);
}
