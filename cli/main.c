/*
 * main - the `taskwatch` entry point: one binary whose first argument picks
 * the subcommand (collector, top, query, demo), in the manner of tmux and
 * git. Each subcommand parses the rest of argv itself.
 */
#include <stdio.h>
#include <string.h>

#include <taskwatch.h>

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
  fprintf(out, "usage: taskwatch COMMAND [ARGS...]\n"
               "       taskwatch --version | --help\n\n"
               "commands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nRun 'taskwatch COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "taskwatch: missing command (try 'taskwatch --help')\n");
    return 2;
  }
  const char *name = argv[1];
  if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
    printf("taskwatch %s\n", tw_version());
    return 0;
  }
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
      strcmp(name, "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(name, commands[i].name) == 0)
      return commands[i].main(argc - 1, argv + 1);
  fprintf(stderr, "taskwatch: unknown command '%s' (try 'taskwatch --help')\n",
          name);
  return 2;
}
