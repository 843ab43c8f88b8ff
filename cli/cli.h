/*
 * cli - entry points of the subcommands that live in cli/ (the others come
 * from collector/, tui/ and query/).
 */
#ifndef TW_CLI_H
#define TW_CLI_H

int demo_main(int argc, char **argv);

#endif /* TW_CLI_H */
