/*
 * top - `taskwatch top`: the live dashboard over the SQLite store.
 */
#ifndef TW_TOP_H
#define TW_TOP_H

/* The subcommand's entry point; argv[0] is "top". Returns the exit status. */
int top_main(int argc, char **argv);

#endif /* TW_TOP_H */
