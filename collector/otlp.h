/*
 * otlp - the OTLP/HTTP JSON export: a thread of its own that reads the
 * batches the collector queued in the store (export_queue, docs/schema.md)
 * after its persisted cursor, through common/reader, encodes them
 * (otlp_json.h), POSTs them with libcurl, and moves the cursor once the
 * endpoint accepted them. So ingest never waits for the endpoint, memory
 * stays bounded by one request, and a restarted collector goes on where
 * it stopped: each span is accepted once.
 *
 * Delivery: at most OTLP_MAX_BATCHES batches (and about OTLP_MAX_BYTES of
 * JSON) per request; 429, 502, 503, 504 and transport errors are retried
 * with exponential backoff from 1 s to 30 s, or after the Retry-After the
 * endpoint gave (up to 5 min); any other answer is final (the spans are
 * counted as rejected and the cursor moves on).
 */
#ifndef TW_COLLECTOR_OTLP_H
#define TW_COLLECTOR_OTLP_H

#include <stddef.h>
#include <stdint.h>

#define OTLP_MAX_BATCHES 256
#define OTLP_MAX_BYTES ((size_t)4 << 20)
#define OTLP_TIMEOUT_MS 10000
/* The export thread's nice value: below the loop and the writer. */
#define OTLP_NICE 10
/* After a stop is asked, a request under way gets this long to end: the
 * collector asks at its signal, within its 6 s stop bound (stop.h). */
#define OTLP_STOP_GRACE_MS 3000

typedef struct otlp otlp;

typedef struct otlp_config {
  const char *url;            /* the traces URL, .../v1/traces */
  const char *const *headers; /* "Name: value" lines sent with each POST */
  size_t nheaders;
  const char *db_path; /* the store */
  int64_t timeout_ms;  /* per request; 0: OTLP_TIMEOUT_MS */
} otlp_config;

typedef struct otlp_stats {
  uint64_t spans_exported;  /* accepted by the endpoint */
  uint64_t spans_rejected;  /* refused for good */
  uint64_t requests_failed; /* failed attempts, retried */
  uint64_t batches_expired; /* pruned before their export */
  int64_t cursor;           /* the last export_queue seq done */
} otlp_stats;

/*
 * Starts the thread (strings are copied). Returns NULL with a one-line
 * reason in err when the store cannot be opened for the cursor or the
 * thread cannot start. curl_global_init() happens here: call it before
 * any other thread of the process uses libcurl.
 */
otlp *otlp_start(const otlp_config *cfg, char *err, size_t errlen);
/* The store has new rows in export_queue. Any thread. */
void otlp_wake(otlp *o);
/* The counters so far. Any thread. */
void otlp_get_stats(otlp *o, otlp_stats *out);
/* The cursor as the store had it when the thread started. */
int64_t otlp_start_cursor(const otlp *o);
/* Asks the thread to stop: it starts no new request, and the one under
 * way gets OTLP_STOP_GRACE_MS from now to end. Any thread. */
void otlp_request_stop(otlp *o);
/* Stops the thread (asking first, unless that was done), waits for it
 * (the cursor of what was accepted is persisted) and frees o. NULL:
 * no-op. */
void otlp_stop(otlp *o);

/*
 * The traces URL for an endpoint given as OTEL_EXPORTER_OTLP_ENDPOINT
 * is: the base URL with "/v1/traces" appended (unless it ends so
 * already). Returns a malloc'd URL, or NULL when it is not an http:// or
 * https:// URL.
 */
char *otlp_traces_url(const char *base);
/*
 * OTEL_EXPORTER_OTLP_HEADERS ("k1=v1,k2=v2", values percent-encoded) as
 * "Name: value" lines: returns how many (at most max, each malloc'd into
 * out), or -1 with a static reason in *why for a malformed list.
 */
int otlp_parse_headers(const char *text, char **out, size_t max,
                       const char **why);

/* The seconds of a Retry-After value (delta seconds or an HTTP date),
 * from now_s; -1 when it is neither. */
int64_t otlp_retry_after(const char *value, int64_t now_s);

#endif /* TW_COLLECTOR_OTLP_H */
