/* query - placeholder until the query command lands. */
#include "cli.h"

#include <stdio.h>

int query_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "taskwatch query: not built yet\n");
  return 1;
}
