/*
 * collector - `taskwatch collector`: receives agents' events over TCP and
 * unix sockets and stores them in SQLite exactly once.
 */
#ifndef TW_COLLECTOR_H
#define TW_COLLECTOR_H

/* The subcommand's entry point; argv[0] is "collector". Returns the exit
 * status. */
int collector_main(int argc, char **argv);

#endif /* TW_COLLECTOR_H */
