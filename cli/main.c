/*
 * main - the `taskwatch` entry point: one binary whose first argument picks
 * the subcommand (collector, top, query, demo), in the manner of tmux and
 * git. Each subcommand parses the rest of argv itself, through args.h.
 */
#include <stdio.h>
#include <string.h>

#include <taskwatch.h>

#include "args.h"
#include "cli.h"
#include "collector.h"
#include "query.h"
#include "top.h"

typedef struct command {
  const char *name;
  int (*main)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"collector", collector_main, "receive agents' events and store them"},
    {"top", top_main, "live dashboard of tasks, batches, names, agents"},
    {"query", query_main, "filter, summarise and export stored tasks"},
    {"demo", demo_main, "simulate a server that runs background tasks"},
};

static void usage(FILE *out) {
  fprintf(out,
          "Usage: taskwatch COMMAND [ARG]...\n"
          "  or:  taskwatch --version | --help\n\n"
          "Traces the background tasks of servers that link the agent\n"
          "library, libtaskwatch: a collector stores their events in SQLite,\n"
          "a dashboard and a query tool read them.\n\n"
          "Commands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(out, "  %-26s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\nRun 'taskwatch COMMAND --help' for a command's options.\n\n"
          "Options:\n"
          "  -h, --help                 print this help and exit\n"
          "  -V, --version              print the version and exit\n\n"
          "Environment:\n"
          "  TASKWATCH_COLLECTOR        the agent's collector URL (default\n"
          "                             " TW_DEFAULT_COLLECTOR ")\n"
          "  TASKWATCH_SERVICE          the agent's service name (default: "
          "the\n"
          "                             program's name)\n"
          "  TASKWATCH_TOKEN            the secret the collector requires, if "
          "any\n"
          "  TASKWATCH_BUFFER_BYTES     the agent's memory cap, e.g. 8MiB or "
          "512k\n"
          "                             (default %uMiB)\n"
          "  TASKWATCH_FLUSH_TIMEOUT_MS\n"
          "                             how long the agent's shutdown waits "
          "for\n"
          "                             the collector, in ms (default %u)\n"
          "  TASKWATCH_CLOCK            the agent's clock: auto (default), "
          "tsc\n"
          "                             or monotonic\n"
          "  TASKWATCH_DB               the store collector, top and query\n"
          "                             use without --db (default\n"
          "                             taskwatch.db)\n",
          TW_DEFAULT_BUFFER_BYTES >> 20, TW_DEFAULT_FLUSH_TIMEOUT_MS);
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  args a;
  args_init(&a, NULL, argc, argv, "+hV", options);
  int c;
  while ((c = args_next(&a)) != -1) {
    if (c == ARGS_ERROR)
      return ARGS_USAGE;
    if (c == 'V') {
      printf("taskwatch %s\n", tw_version());
      return 0;
    }
    usage(stdout);
    return 0;
  }
  int first = args_first_operand(&a);
  if (first >= argc)
    return args_error(&a, "missing command");
  const char *name = argv[first];
  if (strcmp(name, "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(name, commands[i].name) == 0)
      return commands[i].main(argc - first, argv + first);
  return args_error(&a, "unknown command '%s'", name);
}
