/*
 * log - the collector's structured one-line logs on stderr: a UTC time, a
 * level and a message followed by key=value pairs. Each line is written
 * with one write(2), so lines of the loop and the writer thread never mix.
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

/* Prints one line: time, level, then the formatted text. Thread-safe. */
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Writes bytes that came from outside as a double-quoted value into out
 * (size bytes, always NUL-terminated): quotes, backslashes and control
 * bytes are escaped, so a hostile string cannot forge a log line. Returns
 * out.
 */
char *log_quote(char *out, size_t size, const char *p, size_t len);

#endif /* TW_COLLECTOR_LOG_H */
