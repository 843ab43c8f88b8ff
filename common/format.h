/*
 * format - text forms shared by the tools: RFC 3339 times with microseconds
 * (UTC or local), durations as people write them (200ms, 1.5s, 2h30m),
 * JSON string escaping and RFC 4180 CSV quoting, all into one growable
 * buffer type. Nothing here touches the terminal; display sanitizing lives
 * in common/sanitize.
 */
#ifndef TW_FORMAT_H
#define TW_FORMAT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer, always NUL-terminated after the first append.
 * Allocation failure aborts through xmalloc (tools only, never the agent). */
typedef struct format_buf {
  char *data;
  size_t len;
  size_t cap;
} format_buf;

void format_buf_init(format_buf *b);
void format_buf_fini(format_buf *b);
/* Empties the buffer, keeping its memory. */
void format_buf_reset(format_buf *b);
void format_buf_append(format_buf *b, const char *s, size_t n);
void format_buf_puts(format_buf *b, const char *s);
void format_buf_putc(format_buf *b, char c);
void format_buf_printf(format_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Decimal integers, without printf's machinery (hot in exports). */
void format_buf_put_int(format_buf *b, int64_t v);
void format_buf_put_uint(format_buf *b, uint64_t v);
/* The text so far ("" when nothing was appended). */
const char *format_buf_str(const format_buf *b);

/* Room for any time format_time_* writes, NUL included. */
#define FORMAT_TIME_SIZE 40

/* Writes `us` (microseconds since the Unix epoch) as RFC 3339 in UTC,
 * e.g. "2026-11-22T10:00:00.123456Z". Returns the length written, or -1
 * when buf is too small or the time is outside years 0000-9999. */
int format_time_utc(int64_t us, char *buf, size_t len);
/* The same in the local time zone with its offset,
 * e.g. "2026-11-22T11:00:00.123456+01:00". */
int format_time_local(int64_t us, char *buf, size_t len);

/* Parses a duration: one or more number-unit pairs, units us (or µs), ms,
 * s, m, h, d, numbers possibly with a fraction: "200ms", "1.5s", "2h30m".
 * A bare "0" is zero. Returns 0 and *out_us, or -1 on bad syntax or
 * overflow. */
int format_parse_duration(const char *text, int64_t *out_us);

/* The wall clock now, in microseconds since the Unix epoch (UTC). */
int64_t format_now_us(void);

/* Parses a point in time: RFC 3339 ("2026-11-22T10:00:00Z", fraction and
 * offset optional, 't'/' ' allowed as separator), a bare date (midnight
 * UTC), "now", or a duration meaning that long before now_us ("1h"). */
int format_parse_time(const char *text, int64_t now_us, int64_t *out_us);

/* Writes a duration with three significant digits and the largest fitting
 * unit: "850us", "12.3ms", "1.50s", "2m05s", "3h07m", "2d04h". Negative
 * values get a '-'. Returns the length written (truncated to fit len). */
int format_duration(int64_t us, char *buf, size_t len);

/* Appends s (n bytes, any content) as a JSON string with its quotes.
 * Control characters, DEL, C1 controls and U+2028/9 are escaped; bytes
 * that are not valid UTF-8 become U+FFFD, so the output is valid JSON. */
void format_json_string(format_buf *b, const char *s, size_t n);
/* Appends s as one RFC 4180 field: quoted, with quotes doubled, when it
 * holds a comma, quote, CR or LF, or starts or ends with a space. The
 * bytes are otherwise kept as they are (CSV is an export, not a display). */
void format_csv_field(format_buf *b, const char *s, size_t n);

#endif /* TW_FORMAT_H */
