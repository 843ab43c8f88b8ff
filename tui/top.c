/* top - placeholder until the dashboard lands. */
#include "top.h"

#include <stdio.h>

int top_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "taskwatch top: not built yet\n");
  return 1;
}
