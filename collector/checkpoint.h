/*
 * checkpoint - moves WAL checkpoints off the writer thread. SQLite's
 * automatic checkpoint runs inside the COMMIT that crosses its threshold,
 * so the writer would spend part of its time copying pages into the
 * database file and syncing it. Here a thread with its own connection runs
 * PASSIVE checkpoints whenever the writer's WAL has grown past a threshold,
 * on the other core, without blocking the writer.
 */
#ifndef TW_COLLECTOR_CHECKPOINT_H
#define TW_COLLECTOR_CHECKPOINT_H

#include <sqlite3.h>

typedef struct checkpointer checkpointer;

/*
 * Starts the thread for the database at path and installs a WAL hook on
 * writer_db (which replaces its automatic checkpoints). If the thread
 * falls far behind, the writer checkpoints itself, so the WAL stays
 * bounded. Returns NULL (and leaves automatic checkpoints on) when the
 * thread or its connection cannot be set up.
 */
checkpointer *checkpointer_start(sqlite3 *writer_db, const char *path,
                                 int threshold_pages);
/* Stops and joins the thread. NULL is a no-op. */
void checkpointer_stop(checkpointer *c);

#endif /* TW_COLLECTOR_CHECKPOINT_H */
