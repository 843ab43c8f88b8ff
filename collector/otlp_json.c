/*
 * otlp_json - the span model in JSON (see otlp_json.h and docs/export.md).
 */
#include "otlp_json.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "schema.h"
#include "taskwatch.h"

/* OTLP's Span.SpanKind and Status.StatusCode. */
enum { SPAN_KIND_INTERNAL = 1, SPAN_KIND_CONSUMER = 5 };
enum { STATUS_UNSET = 0, STATUS_ERROR = 2 };

/* ---- ids ------------------------------------------------------------------
 */

static uint64_t mix(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t load64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void store64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* The agent's own id: the low bits of a store-wide one. */
static uint64_t local_id(int64_t id) {
  return (uint64_t)id & SCHEMA_LOCAL_MASK;
}

void otlp_trace_id(const uint8_t *instance, int64_t batch, uint8_t out[16]) {
  uint64_t b = local_id(batch);
  uint64_t hi = mix(load64(instance) ^ mix(b ^ UINT64_C(0x7472616365)));
  uint64_t lo = mix(load64(instance + 8) ^ mix(b ^ UINT64_C(0x6964)));
  store64(out, hi);
  store64(out + 8, lo ? lo : 1); /* an all-zero id is invalid */
}

void otlp_span_id(const uint8_t *instance, int64_t id, int is_task,
                  uint8_t out[8]) {
  uint64_t salt = is_task ? UINT64_C(0x7461736b) : UINT64_C(0x6261746368);
  uint64_t v = mix(load64(instance) ^
                   mix(load64(instance + 8) ^ mix(local_id(id) ^ salt)));
  store64(out, v ? v : 1);
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1; /* W3C: lowercase only */
}

static int parse_hex(const char *s, uint8_t *out, size_t bytes) {
  int nonzero = 0;
  for (size_t i = 0; i < bytes; i++) {
    int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
    nonzero |= out[i];
  }
  return nonzero ? 0 : -1;
}

int otlp_parse_traceparent(const char *s, size_t n, uint8_t trace[16],
                           uint8_t span[8]) {
  /* version "00" is 55 characters; later versions may append "-..." */
  uint8_t version;
  if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' ||
      (n > 55 && s[55] != '-'))
    return -1;
  if (hex_digit(s[0]) < 0 || hex_digit(s[1]) < 0 || hex_digit(s[53]) < 0 ||
      hex_digit(s[54]) < 0)
    return -1;
  version = (uint8_t)(hex_digit(s[0]) << 4 | hex_digit(s[1]));
  if (version == 0xff || (version == 0 && n != 55))
    return -1;
  if (parse_hex(s + 3, trace, 16) != 0 || parse_hex(s + 36, span, 8) != 0)
    return -1;
  return 0;
}

/* ---- JSON pieces ----------------------------------------------------------
 */

static void put_hex(json_writer *w, const uint8_t *id, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char text[33];
  for (size_t i = 0; i < n; i++) {
    text[2 * i] = digits[id[i] >> 4];
    text[2 * i + 1] = digits[id[i] & 15];
  }
  json_string(w, text, 2 * n);
}

static void key_hex(json_writer *w, const char *key, const uint8_t *id,
                    size_t n) {
  json_key(w, key);
  put_hex(w, id, n);
}

/* Microseconds to OTLP's fixed64 nanoseconds, a decimal string. */
static void key_time(json_writer *w, const char *key, int64_t us) {
  json_key(w, key);
  json_int_string(w, us < 0 ? 0 : us * 1000);
}

static void attr_begin(json_writer *w, const char *key, const char *type) {
  json_begin_object(w);
  json_key(w, "key");
  json_cstring(w, key);
  json_key(w, "value");
  json_begin_object(w);
  json_key(w, type);
}

static void attr_end(json_writer *w) {
  json_end_object(w);
  json_end_object(w);
}

static void attr_text(json_writer *w, const char *key, reader_text s) {
  if (s.ptr == NULL)
    return;
  attr_begin(w, key, "stringValue");
  json_string(w, s.ptr, s.len);
  attr_end(w);
}

static void attr_cstring(json_writer *w, const char *key, const char *s) {
  attr_text(w, key, (reader_text){s, s ? strlen(s) : 0});
}

static void attr_int(json_writer *w, const char *key, int64_t v) {
  if (v == READER_NULL)
    return;
  attr_begin(w, key, "intValue");
  json_int_string(w, v);
  attr_end(w);
}

/* ---- spans ----------------------------------------------------------------
 */

/* When a task was settled: its end, else (never for a final task as the
 * collector writes them) its enqueue. */
static int64_t settled_at(const reader_task *t) {
  return t->finished_at != READER_NULL ? t->finished_at : t->enqueued_at;
}

static void task_attributes(json_writer *w, const reader_task *t, int ran) {
  json_key(w, "attributes");
  json_begin_array(w);
  attr_cstring(w, "taskwatch.task.status", schema_status_name(t->status));
  attr_int(w, "taskwatch.task.id", t->id);
  attr_int(w, "taskwatch.task.position", t->position);
  attr_cstring(w, "taskwatch.task.mode", schema_mode_name(t->mode));
  attr_int(w, "taskwatch.task.wait_us", t->wait_us);
  attr_int(w, "taskwatch.task.skip_cause", t->skipped_after);
  attr_text(w, "taskwatch.task.drop_reason", t->drop_reason);
  attr_text(w, "code.function.name", t->name);
  attr_int(w, "thread.id", t->thread);
  attr_cstring(w, "messaging.system", "taskwatch");
  if (ran)
    attr_cstring(w, "messaging.operation.type", "process");
  char id[24];
  snprintf(id, sizeof(id), "%lld", (long long)t->id);
  attr_cstring(w, "messaging.message.id", id);
  json_end_array(w);
}

/* The exception event and ERROR status of a failed task. */
static void task_failure(json_writer *w, const reader_task *t) {
  json_key(w, "events");
  json_begin_array(w);
  json_begin_object(w);
  key_time(w, "timeUnixNano", settled_at(t));
  json_key(w, "name");
  json_cstring(w, "exception");
  json_key(w, "attributes");
  json_begin_array(w);
  attr_text(w, "exception.type", t->error_type);
  attr_text(w, "exception.message", t->error_message);
  attr_text(w, "exception.stacktrace", t->error_detail);
  json_end_array(w);
  json_end_object(w);
  json_end_array(w);
  json_key(w, "status");
  json_begin_object(w);
  json_key(w, "code");
  json_int(w, STATUS_ERROR);
  json_key(w, "message");
  json_string(w, t->error_message.ptr ? t->error_message.ptr : "",
              t->error_message.len);
  json_end_object(w);
}

static void task_span(json_writer *w, const otlp_batch *b,
                      const uint8_t trace[16], const uint8_t parent[8],
                      const reader_task *t) {
  uint8_t span[8];
  otlp_span_id(b->instance, t->id, 1, span);
  int ran = (t->status == SCHEMA_SUCCEEDED || t->status == SCHEMA_FAILED) &&
            t->started_at != READER_NULL;
  int64_t end = settled_at(t);
  json_begin_object(w);
  key_hex(w, "traceId", trace, 16);
  key_hex(w, "spanId", span, 8);
  key_hex(w, "parentSpanId", parent, 8);
  json_key(w, "name");
  json_string(w, t->name.ptr ? t->name.ptr : "", t->name.len);
  json_key(w, "kind");
  json_int(w, SPAN_KIND_CONSUMER);
  /* Skipped, dropped and lost tasks never ran: zero-length spans at the
   * moment they were settled. */
  key_time(w, "startTimeUnixNano", ran ? t->started_at : end);
  key_time(w, "endTimeUnixNano", end);
  task_attributes(w, t, ran);
  if (t->status == SCHEMA_FAILED) {
    task_failure(w, t);
  } else {
    json_key(w, "status");
    json_begin_object(w);
    json_end_object(w);
  }
  json_end_object(w);
}

static void batch_link(json_writer *w, const otlp_batch *b) {
  uint8_t trace[16], span[8];
  if (b->traceparent.ptr == NULL ||
      otlp_parse_traceparent(b->traceparent.ptr, b->traceparent.len, trace,
                             span) != 0)
    return;
  json_key(w, "links");
  json_begin_array(w);
  json_begin_object(w);
  key_hex(w, "traceId", trace, 16);
  key_hex(w, "spanId", span, 8);
  json_key(w, "attributes");
  json_begin_array(w);
  attr_cstring(w, "taskwatch.link", "request");
  json_end_array(w);
  json_end_object(w);
  json_end_array(w);
}

static void batch_span(json_writer *w, const otlp_batch *b,
                       const uint8_t trace[16], const uint8_t span[8]) {
  /* From the batch's creation (its first task's enqueue when the batch
   * row is missing) to the last task's end. */
  int64_t start = b->created_at, first = INT64_MAX, end = INT64_MIN;
  int failed = 0;
  for (size_t i = 0; i < b->ntasks; i++) {
    const reader_task *t = &b->tasks[i];
    if (t->enqueued_at < first)
      first = t->enqueued_at;
    if (settled_at(t) > end)
      end = settled_at(t);
    failed += t->status == SCHEMA_FAILED;
  }
  if (start == READER_NULL)
    start = first;
  if (end < start)
    end = start;
  json_begin_object(w);
  key_hex(w, "traceId", trace, 16);
  key_hex(w, "spanId", span, 8);
  json_key(w, "name");
  if (b->label.ptr)
    json_string(w, b->label.ptr, b->label.len);
  else
    json_cstring(w, "batch");
  json_key(w, "kind");
  json_int(w, SPAN_KIND_INTERNAL);
  key_time(w, "startTimeUnixNano", start);
  key_time(w, "endTimeUnixNano", end);
  json_key(w, "attributes");
  json_begin_array(w);
  attr_int(w, "taskwatch.batch.id", b->id);
  attr_text(w, "taskwatch.batch.label", b->label);
  attr_int(w, "messaging.batch.message_count", (int64_t)b->ntasks);
  json_end_array(w);
  batch_link(w, b);
  json_key(w, "status");
  json_begin_object(w);
  if (failed) {
    json_key(w, "code");
    json_int(w, STATUS_ERROR);
    json_key(w, "message");
    json_cstring(w, failed == 1 ? "a task failed" : "tasks failed");
  }
  json_end_object(w);
  json_end_object(w);
}

/* The trace of one batch: its span, then its tasks'. */
static size_t batch_spans(json_writer *w, const otlp_batch *b) {
  uint8_t trace[16], span[8];
  otlp_trace_id(b->instance, b->id, trace);
  otlp_span_id(b->instance, b->id, 0, span);
  batch_span(w, b, trace, span);
  for (size_t i = 0; i < b->ntasks; i++)
    task_span(w, b, trace, span, &b->tasks[i]);
  return b->ntasks + 1;
}

static void resource(json_writer *w, const reader_task *t) {
  json_key(w, "resource");
  json_begin_object(w);
  json_key(w, "attributes");
  json_begin_array(w);
  attr_text(w, "service.name", t->service);
  attr_text(w, "host.name", t->host);
  attr_int(w, "process.pid", t->pid);
  json_end_array(w);
  json_end_object(w);
}

size_t otlp_encode(format_buf *out, const otlp_batch *batches, size_t n) {
  json_writer w;
  size_t spans = 0;
  json_init(&w, out);
  json_begin_object(&w);
  json_key(&w, "resourceSpans");
  json_begin_array(&w);
  /* One resourceSpans per agent, in the order agents first appear. */
  for (size_t i = 0; i < n; i++) {
    int64_t agent = batches[i].tasks[0].agent;
    int seen = 0;
    for (size_t k = 0; k < i && !seen; k++)
      seen = batches[k].tasks[0].agent == agent;
    if (seen)
      continue;
    json_begin_object(&w);
    resource(&w, &batches[i].tasks[0]);
    json_key(&w, "scopeSpans");
    json_begin_array(&w);
    json_begin_object(&w);
    json_key(&w, "scope");
    json_begin_object(&w);
    json_key(&w, "name");
    json_cstring(&w, "taskwatch");
    json_key(&w, "version");
    json_cstring(&w, TW_VERSION_STRING);
    json_end_object(&w);
    json_key(&w, "spans");
    json_begin_array(&w);
    for (size_t k = i; k < n; k++)
      if (batches[k].tasks[0].agent == agent)
        spans += batch_spans(&w, &batches[k]);
    json_end_array(&w);
    json_end_object(&w);
    json_end_array(&w);
    json_end_object(&w);
  }
  json_end_array(&w);
  json_end_object(&w);
  return spans;
}
