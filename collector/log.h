/*
 * log - the collector's structured one-line logs on stderr: a UTC time, a
 * level and a message followed by key=value pairs. Each line is written
 * with one write(2), so lines of the loop and the writer thread never mix.
 *
 * Whoever tails the log sees text, never a terminal command: values from
 * the wire are quoted with log_quote(), and every line as a whole passes
 * the terminal's sanitizer (common/sanitize.h) before it is written, so a
 * string that reached a line some other way still arrives escaped.
 */
#ifndef TW_COLLECTOR_LOG_H
#define TW_COLLECTOR_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(int level);
/* "error", "warn", "info", "debug" to a level, or -1. */
int log_level_parse(const char *name);
int log_enabled(int level);

/* Prints one line: time, level, then the formatted text, sanitized (see
 * above; a line longer than about 2 KiB ends in "…"). Thread-safe. */
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The size log_quote() needs to quote len bytes without cutting them:
 * each byte becomes at most 3 (a control picture or U+FFFD), plus the two
 * quotes and the NUL. */
#define LOG_QUOTE_SIZE(len) (3 * (size_t)(len) + 3)

/*
 * Writes bytes that came from outside as a double-quoted value into out
 * (size bytes, always NUL-terminated when size > 0). Each character goes
 * through sanitize_next(): C0 controls become control pictures ("␛"),
 * C1 controls (raw or UTF-8 encoded), bidi and other invisible format
 * characters and invalid UTF-8 become U+FFFD; quotes and backslashes are
 * escaped with a backslash. So a hostile string can neither forge a log
 * line nor reach a terminal as a command. A value that does not fit is
 * cut at a character boundary and ends in "…". Returns out.
 */
char *log_quote(char *out, size_t size, const char *p, size_t len);

#endif /* TW_COLLECTOR_LOG_H */
