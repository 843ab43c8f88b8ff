/*
 * log - one-line structured logs for the collector.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ldZ %s ",
                        ts.tv_nsec / 1000, level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  if (k < 0)
    k = 0;
  n += (size_t)k;
  if (n > sizeof(line) - 2)
    n = sizeof(line) - 2;
  line[n++] = '\n';
  /* A log line that cannot be written has nowhere else to go. */
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

char *log_quote(char *out, size_t size, const char *p, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (size < 3) {
    if (size)
      out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (size_t i = 0; i < len && o + 6 < size; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
