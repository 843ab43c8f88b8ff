/*
 * log - one-line structured logs for the collector.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sanitize.h"

/* Formatted text of one line, before sanitizing. */
#define LOG_TEXT_MAX 2048
/* Time and level, e.g. "2026-01-01T00:00:00.000000Z error ". */
#define LOG_PREFIX_MAX 48

static int max_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(int level) {
  max_level = level;
}

int log_level_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0)
      return i;
  return -1;
}

int log_enabled(int level) {
  return level <= max_level;
}

void log_msg(int level, const char *fmt, ...) {
  if (level > max_level)
    return;
  char text[LOG_TEXT_MAX];
  /* Sanitizing at most triples the text (see LOG_QUOTE_SIZE). */
  char line[LOG_PREFIX_MAX + 3 * LOG_TEXT_MAX + 5];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, LOG_PREFIX_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, LOG_PREFIX_MAX - n, ".%06ldZ %s ",
                        ts.tv_nsec / 1000, level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  size_t len = k < 0 ? 0 : (size_t)k;
  int cut = len >= sizeof(text);
  if (cut)
    len = sizeof(text) - 1;
  /* Room is left for the "…" of a cut and the newline. */
  sanitize(text, len, -1, SANITIZE_ELLIPSIS, line + n, sizeof(line) - n - 4);
  n += strlen(line + n);
  if (cut) {
    memcpy(line + n, "\xE2\x80\xA6", 3);
    n += 3;
  }
  line[n++] = '\n';
  /* A log line that cannot be written has nowhere else to go. */
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

char *log_quote(char *out, size_t size, const char *p, size_t len) {
  size_t o = 0, pos = 0;
  int combining = -1, cut = 0;
  if (size < 3) {
    if (size)
      out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  while (pos < len) {
    char c[SANITIZE_CHAR_MAX];
    int width;
    size_t n = sanitize_next(p, len, &pos, 0, &combining, c, &width);
    if (n == 1 && (c[0] == '"' || c[0] == '\\')) {
      c[1] = c[0];
      c[0] = '\\';
      n = 2;
    }
    /* The closing quote and the NUL, and before the last character room
     * for the "…" of a cut as well. */
    if (o + n + (pos < len ? 5 : 2) > size) {
      cut = 1;
      break;
    }
    memcpy(out + o, c, n);
    o += n;
  }
  if (cut && o + 5 <= size) {
    memcpy(out + o, "\xE2\x80\xA6", 3);
    o += 3;
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
