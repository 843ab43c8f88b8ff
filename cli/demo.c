/* demo - placeholder until the demo lands. */
#include "cli.h"

#include <stdio.h>

int demo_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "taskwatch demo: not built yet\n");
  return 1;
}
