/*
 * json - the one writer of JSON text: `taskwatch query`'s NDJSON rows and
 * stats, and the collector's OTLP/HTTP JSON export. It appends to a
 * format_buf, places the commas and the colons, escapes strings with
 * format_json_string() (valid JSON for any bytes) and writes integers
 * without printf. The caller says what comes next; the writer keeps track
 * of where a comma is due, so a value is never preceded by a stray one.
 *
 * A writer is the caller's memory (json_init, no _fini: it owns nothing)
 * and is used from one thread at a time.
 */
#ifndef TW_JSON_H
#define TW_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* Objects and arrays nest at most this deep; deeper is a caller's bug. */
#define JSON_MAX_DEPTH 32

typedef struct json_writer {
  format_buf *out;
  int depth;
  uint32_t has_items; /* bit d: the container at depth d holds an item */
  int after_key;      /* a key was written; its value comes next */
} json_writer;

/* Starts writing values into out, at its current end. out is borrowed. */
void json_init(json_writer *w, format_buf *out);

void json_begin_object(json_writer *w);
void json_end_object(json_writer *w);
void json_begin_array(json_writer *w);
void json_end_array(json_writer *w);

/* A member's key inside an object. key is the caller's literal: plain
 * ASCII without quotes or backslashes, written as it is. */
void json_key(json_writer *w, const char *key);

/* n bytes of any content as a JSON string; s NULL writes null. */
void json_string(json_writer *w, const char *s, size_t n);
/* A NUL-terminated string; NULL writes null. */
void json_cstring(json_writer *w, const char *s);
void json_int(json_writer *w, int64_t v);
void json_uint(json_writer *w, uint64_t v);
/* A 64-bit integer as a decimal string ("1700000000000000000"), as the
 * OTLP JSON mapping (and protobuf's) writes int64 and fixed64 fields. */
void json_int_string(json_writer *w, int64_t v);
/* A number with `decimals` digits after the point (printf's %.Nf). */
void json_fixed(json_writer *w, double v, int decimals);
void json_bool(json_writer *w, int v);
void json_null(json_writer *w);

#endif /* TW_JSON_H */
