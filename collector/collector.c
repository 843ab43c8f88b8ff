/* collector - placeholder until the collector lands. */
#include "collector.h"

#include <stdio.h>

int collector_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "taskwatch collector: not built yet\n");
  return 1;
}
