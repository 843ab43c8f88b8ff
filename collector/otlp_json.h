/*
 * otlp_json - finished batches as an OTLP/HTTP JSON trace request
 * (ExportTraceServiceRequest in the OTLP JSON mapping: lowercase hex ids,
 * enums as integers, 64-bit integers and times as decimal strings,
 * camelCase keys), written with the one JSON writer (common/json.h).
 *
 * The span model (docs/export.md): one trace per batch; a span for the
 * batch, the parent of one span per task; skipped, dropped and lost tasks
 * are zero-length spans at the moment they were settled; a failed task
 * has status ERROR with its message and an `exception` event. Trace and
 * span ids derive from the agent instance's random id and the agent's own
 * batch and task ids, so exporting a batch again (after a restart) gives
 * the same ids, and two stores never give the same ones.
 *
 * Pure functions of their input; any thread.
 */
#ifndef TW_COLLECTOR_OTLP_JSON_H
#define TW_COLLECTOR_OTLP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "proto.h"
#include "reader.h"

/* One finished batch as read from the store. */
typedef struct otlp_batch {
  int64_t id;                            /* store-wide batch id */
  uint8_t instance[PROTO_INSTANCE_SIZE]; /* its agent instance's id */
  reader_text label;                     /* ptr NULL: none */
  int64_t created_at;                    /* READER_NULL: no batch row */
  reader_text traceparent;  /* the request's W3C traceparent, or NULL */
  const reader_task *tasks; /* by position; service, host, pid of tasks[0] */
  size_t ntasks;            /* >= 1 */
} otlp_batch;

/* 16-byte trace and 8-byte span ids. */
void otlp_trace_id(const uint8_t *instance, int64_t batch, uint8_t out[16]);
void otlp_span_id(const uint8_t *instance, int64_t id, int is_task,
                  uint8_t out[8]);

/* Reads a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"): 0 with its
 * trace and parent ids, or -1 when it is malformed or all-zero. */
int otlp_parse_traceparent(const char *s, size_t n, uint8_t trace[16],
                           uint8_t span[8]);

/* Appends the request holding n batches to out (one resourceSpans per run
 * of batches of the same agent). Returns the number of spans written. */
size_t otlp_encode(format_buf *out, const otlp_batch *batches, size_t n);

#endif /* TW_COLLECTOR_OTLP_JSON_H */
