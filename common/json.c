/*
 * json - commas and nesting over format_buf (see json.h).
 */
#include "json.h"

#include <assert.h>
#include <string.h>

void json_init(json_writer *w, format_buf *out) {
  w->out = out;
  w->depth = 0;
  w->has_items = 0;
  w->after_key = 0;
}

/* Before any value or key: the comma that separates it from the previous
 * item of its container, unless it is the value of a key just written. */
static void item(json_writer *w) {
  if (w->after_key) {
    w->after_key = 0;
    return;
  }
  uint32_t bit = UINT32_C(1) << w->depth;
  if (w->has_items & bit)
    format_buf_putc(w->out, ',');
  w->has_items |= bit;
}

static void open_container(json_writer *w, char c) {
  item(w);
  assert(w->depth + 1 < JSON_MAX_DEPTH);
  w->depth++;
  w->has_items &= ~(UINT32_C(1) << w->depth);
  format_buf_putc(w->out, c);
}

static void close_container(json_writer *w, char c) {
  assert(w->depth > 0 && !w->after_key);
  w->depth--;
  format_buf_putc(w->out, c);
}

void json_begin_object(json_writer *w) {
  open_container(w, '{');
}

void json_end_object(json_writer *w) {
  close_container(w, '}');
}

void json_begin_array(json_writer *w) {
  open_container(w, '[');
}

void json_end_array(json_writer *w) {
  close_container(w, ']');
}

void json_key(json_writer *w, const char *key) {
  item(w);
  format_buf_putc(w->out, '"');
  format_buf_puts(w->out, key);
  format_buf_puts(w->out, "\":");
  w->after_key = 1;
}

void json_string(json_writer *w, const char *s, size_t n) {
  item(w);
  if (s == NULL)
    format_buf_puts(w->out, "null");
  else
    format_json_string(w->out, s, n);
}

void json_cstring(json_writer *w, const char *s) {
  json_string(w, s, s ? strlen(s) : 0);
}

void json_int(json_writer *w, int64_t v) {
  item(w);
  format_buf_put_int(w->out, v);
}

void json_uint(json_writer *w, uint64_t v) {
  item(w);
  format_buf_put_uint(w->out, v);
}

void json_int_string(json_writer *w, int64_t v) {
  item(w);
  format_buf_putc(w->out, '"');
  format_buf_put_int(w->out, v);
  format_buf_putc(w->out, '"');
}

void json_fixed(json_writer *w, double v, int decimals) {
  item(w);
  format_buf_printf(w->out, "%.*f", decimals, v);
}

void json_bool(json_writer *w, int v) {
  item(w);
  format_buf_puts(w->out, v ? "true" : "false");
}

void json_null(json_writer *w) {
  item(w);
  format_buf_puts(w->out, "null");
}
