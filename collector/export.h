/*
 * export - the collector's exports, on its loop: the Prometheus metrics
 * endpoint (metrics.h, http.h) and the OTLP/HTTP JSON export (otlp.h), fed
 * from what the writer commits (docs/export.md).
 *
 * The server calls it at two points of a batch's life: export_submit()
 * just before the batch goes to the writer (the exports work out what its
 * commit will change, and queue the batches it completes for the OTLP
 * export in the same transaction), and export_committed() once it is
 * committed (the metrics change then). Loop thread only.
 */
#ifndef TW_COLLECTOR_EXPORT_H
#define TW_COLLECTOR_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "batch.h"
#include "otlp.h"

typedef struct export_config {
  const char *metrics_listen; /* tcp://HOST:PORT; NULL: no endpoint */
  const double *buckets;      /* run and wait buckets, seconds */
  size_t nbuckets;
  size_t max_series;       /* (service, task) pairs before task="(other)" */
  size_t max_tasks;        /* tasks in flight followed in memory */
  const otlp_config *otlp; /* NULL: no OTLP export */
  const char *db_path;
} export_config;

/* What the server knows at a scrape. */
typedef struct export_sample {
  uint64_t events_pending; /* received into the batch being filled */
  uint64_t bytes_pending;  /* that batch's bytes */
  uint64_t connections;
  uint64_t rejected; /* connections refused or closed for cause */
  uint32_t hold_ms;  /* the hold the acks advise (batch.h): 0 none */
} export_sample;

typedef void (*export_sample_fn)(void *arg, export_sample *out);

typedef struct exporter exporter;

/*
 * Starts the exports cfg asks for (NULL when it asks for none). Logs and
 * returns NULL with *failed set when one cannot start (the address is
 * taken, the store cannot be read). sample(arg) is called at each scrape.
 */
exporter *export_start(const export_config *cfg, uv_loop_t *loop,
                       export_sample_fn sample, void *arg, int *failed);
/* b goes to the writer next (may add rows to its exports). */
void export_submit(exporter *x, wbatch *b);
/* b, submitted before, is committed. */
void export_committed(exporter *x, const wbatch *b);
/* The collector is stopping (its signal came): the OTLP export starts no
 * new request, and the one under way gets a bounded time to end. NULL:
 * no-op. */
void export_stopping(exporter *x);
/* Stops both exports and frees x (handles close on the loop's next run).
 * NULL: no-op. */
void export_stop(exporter *x);

#endif /* TW_COLLECTOR_EXPORT_H */
