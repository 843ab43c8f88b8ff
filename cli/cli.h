/*
 * cli - entry points of the subcommands that live in cli/.
 */
#ifndef TW_CLI_H
#define TW_CLI_H

int query_main(int argc, char **argv);
int demo_main(int argc, char **argv);

#endif /* TW_CLI_H */
