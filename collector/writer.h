/*
 * writer - the collector's writer thread. The loop submits batches; the
 * thread commits each with store_write() and hands it back to the loop
 * through a uv_async, where done() runs (and sends the acks: acks follow
 * COMMIT, never precede it). The thread is the store's only user while it
 * runs.
 */
#ifndef TW_COLLECTOR_WRITER_H
#define TW_COLLECTOR_WRITER_H

#include <stdint.h>
#include <uv.h>

#include "batch.h"
#include "hist.h"
#include "store.h"

typedef struct writer writer;

/* done(b, arg) runs on the loop thread for each batch, in submit order,
 * once it is committed, or with b->failed set when it was given up after
 * writer_abort() (a failed transaction is retried every second until
 * then). The callee owns b. Returns NULL when the thread cannot start. */
writer *writer_start(store *s, uv_loop_t *loop,
                     void (*done)(wbatch *b, void *arg), void *arg);
/* Queues b (the writer owns it until done). Loop thread only. */
void writer_submit(writer *w, wbatch *b);
/* Batches submitted and not yet done. Loop thread only. */
size_t writer_in_flight(const writer *w);
/* Sleeps ns nanoseconds, or until the thread finishes a batch (w NULL:
 * the whole time). For the loop's pacing (server.c). Loop thread only. */
void writer_nap(writer *w, uint64_t ns);
/*
 * Gives up what is not committed yet: the transaction running is
 * interrupted (store_abort()), and that batch and every one queued or
 * submitted later come back failed, at once. For a shutdown whose time is
 * up. Loop thread only.
 */
void writer_abort(writer *w);
/*
 * Writes what is queued (which waits for a failing store until
 * writer_abort(): the server calls it once nothing is in flight), joins
 * the thread and closes the async handle (the writer is freed in its
 * close callback). Copies the event-to-commit
 * latencies (µs) of every sampled event into *latency unless NULL. Loop
 * thread only.
 */
void writer_stop(writer *w, hist *latency);

#endif /* TW_COLLECTOR_WRITER_H */
