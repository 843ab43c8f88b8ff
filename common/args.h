/*
 * args - the command line every subcommand shares: a thin layer over
 * getopt_long(3), so that collector, top, query and demo all accept
 * `--opt=value` and `--opt value`, unique prefixes of long options, and
 * options and operands in any order (`--` ends the options), and word
 * every usage error the same way, on one line of stderr:
 *
 *   taskwatch collector: unknown option --foo (see --help)
 *   taskwatch collector: option --db needs a value (see --help)
 *   taskwatch top: option --once takes no value (see --help)
 *   taskwatch collector: ambiguous option --l (--listen, --lost-after,
 *                        --log-level) (see --help)
 *   taskwatch demo: invalid --batches 'ten': expected a whole number from
 *                   0 to 1099511627776 (see --help)
 *   taskwatch top: unexpected argument 'stray' (see --help)
 *
 * after which the subcommand exits with ARGS_USAGE (2). The value parsers
 * (numbers, durations with units, one word of a list) print that
 * message themselves and return ARGS_USAGE, so a subcommand's option
 * switch reads `return args_int(&a, 1, 100, &n);`.
 *
 * getopt_long keeps its state in globals (optind, optarg), so one parse
 * runs at a time; that is the only thread-safety a command line needs.
 */
#ifndef TW_ARGS_H
#define TW_ARGS_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

/* The exit status of every bad argument. */
#define ARGS_USAGE 2
/* args_next()'s answer after it printed a usage error. */
#define ARGS_ERROR (-2)

typedef struct args {
  const char *command; /* "collector": messages say "taskwatch collector";
                          NULL: "taskwatch" */
  int argc;
  char **argv;
  const struct option *longopts;
  char shortopts[64]; /* the caller's, after a ':' */
  FILE *err;          /* where messages go; stderr */
  const char *value;  /* the current option's value, or NULL */
  char name[48];      /* the current option as named: "--db" or "-o" */
} args;

/*
 * Starts a parse of argv[1..argc-1] for `taskwatch command`. shortopts is
 * getopt's string without the ':' (e.g. "ho:", or "+hV" to stop at the
 * first operand); longopts ends with a zeroed entry. Both are borrowed for
 * the parse.
 */
void args_init(args *a, const char *command, int argc, char **argv,
               const char *shortopts, const struct option *longopts);

/*
 * The next option: its `val` (with a->value and a->name set), -1 when the
 * options are over, or ARGS_ERROR after printing the reason (unknown,
 * ambiguous, missing or unwanted value).
 */
int args_next(args *a);

/* One option for args_options(): 0, or ARGS_USAGE after printing why
 * (as the value parsers below do). ctx is args_options()'s. */
typedef int args_apply_fn(const args *a, int c, void *ctx);

/* args_options()'s answer after it printed the usage text. */
#define ARGS_HELP (-1)

/*
 * The whole of a subcommand's parse, after args_init(): -h (--help) prints
 * usage_text on stdout; every other option goes to apply; operands are
 * refused. Returns 0, ARGS_HELP after --help, or ARGS_USAGE after a usage
 * error (printed).
 */
int args_options(args *a, const char *usage_text, args_apply_fn *apply,
                 void *ctx);

/* After args_next() returned -1: the operands, argv[*first..argc-1]. */
int args_first_operand(const args *a);

/* ARGS_USAGE after printing "unexpected argument 'X'" when operands are
 * left; 0 when there are none. */
int args_no_operands(const args *a);

/* Prints "taskwatch COMMAND: <message> (see --help)"; returns ARGS_USAGE. */
int args_error(const args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same for a usage error found outside a parse (e.g. a missing
 * operand), with the subcommand's name: "query". */
int args_fail(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "invalid NAME 'VALUE': expected <what>" for the current option;
 * returns ARGS_USAGE. */
int args_invalid(const args *a, const char *what);

/*
 * Value parsers for the current option. Each returns 0 and stores the
 * value, or prints args_invalid() and returns ARGS_USAGE (the output is
 * then unchanged).
 */
/* A whole decimal number from min to max. */
int args_int(const args *a, long long min, long long max, long long *out);
/* A finite decimal number from min to max. */
int args_double(const args *a, double min, double max, double *out);
/* A duration, in microseconds, from min_us to max_us: a bare number
 * (fraction allowed) counts in unit_us, e.g. seconds for `--lost-after`;
 * else number-unit pairs as format_parse_duration() reads them ("30s",
 * "1.5m", "2h30m", "250ms"). */
int args_duration(const args *a, int64_t unit_us, int64_t min_us,
                  int64_t max_us, int64_t *out_us);
/* One of the words in choices (NULL-terminated); *out is its index. */
int args_choice(const args *a, const char *const *choices, int *out);

/* The pure parsers under the above, for values from elsewhere (the
 * environment): 0, or -1 on anything else. */
int args_parse_int(const char *s, long long min, long long max, long long *out);
int args_parse_double(const char *s, double min, double max, double *out);
int args_parse_duration(const char *s, int64_t unit_us, int64_t min_us,
                        int64_t max_us, int64_t *out_us);

#endif /* TW_ARGS_H */
