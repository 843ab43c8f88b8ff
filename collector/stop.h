/*
 * stop - the collector's bounded stop. SIGTERM or SIGINT starts it
 * (server.c); from then on the store has STOP_COMMIT_MS to commit what was
 * received, after which the writes still pending are given up
 * (store_abort()); and whatever the rest does (a close that checkpoints on
 * a failing disk, a write stuck in the kernel), a watchdog thread ends the
 * process STOP_BOUND_MS after the signal. Events that were not committed
 * were never acked: their agents still hold them and send them again to
 * the next collector. The last log line says how many there were.
 *
 * The counts and the watchdog are process-wide, as signals are. Every
 * function is thread-safe.
 */
#ifndef TW_COLLECTOR_STOP_H
#define TW_COLLECTOR_STOP_H

#include <stdint.h>

/* Time to commit what was received, from the signal. */
#define STOP_COMMIT_MS 4000
/* When the process ends whatever it is doing, from the signal; whole
 * seconds (--help says it as text). */
#define STOP_BOUND_S 6
#define STOP_BOUND_MS (STOP_BOUND_S * 1000)

/* The note of a last line with uncommitted events. */
#define STOP_UNCOMMITTED_NOTE                                                  \
  "events received but not committed were never acked: their agents still "    \
  "hold them and resend them to the next collector"

/* Events handed to the writer (loop thread). */
void stop_count_received(uint64_t events);
/* Events whose transaction committed (writer thread). */
void stop_count_committed(uint64_t events);
/* Received and not committed: in flight, or given up. */
uint64_t stop_uncommitted(void);

/* Starts the watchdog, once: STOP_BOUND_MS from now it writes the last
 * log line (unless stop_last_line() was claimed first) and _exit()s, with
 * 0 when every received event was committed and 1 otherwise. */
void stop_begin(void);

/* Claims the last log line: 1 for the first caller (the end of
 * collector_main, or the watchdog), 0 after. */
int stop_last_line(void);

#endif /* TW_COLLECTOR_STOP_H */
