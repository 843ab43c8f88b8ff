/*
 * fuzz_otlp - libFuzzer target for what the exports read from outside or
 * write from agents' strings: Retry-After values and W3C traceparents
 * (from peers), OTEL_EXPORTER_OTLP_HEADERS lists (from the environment),
 * and service and task names in the Prometheus text (from agents). The
 * parsers accept or refuse without crashing; header lines they make hold
 * no control byte; a metrics text with any names stays one sample a line,
 * valid UTF-8, every line a comment or a taskwatch_ sample.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "otlp.h"
#include "otlp_json.h"
#include "schema.h"

static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], len = c < 0x80             ? 1
                             : (c & 0xe0) == 0xc0 ? 2
                             : (c & 0xf0) == 0xe0 ? 3
                             : (c & 0xf8) == 0xf0 ? 4
                                                  : 0;
    if (len == 0 || i + len > n)
      return 0;
    for (unsigned k = 1; k < len; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return 0;
    i += len;
  }
  return 1;
}

static void parsers(const char *text, size_t n) {
  uint8_t trace[16], span[8];
  otlp_retry_after(text, 1700000000);
  if (otlp_parse_traceparent(text, n, trace, span) == 0 && n < 55)
    abort();
  char *lines[8];
  const char *why = NULL;
  int k = otlp_parse_headers(text, lines, 8, &why);
  if (k < 0 && why == NULL)
    abort();
  for (int i = 0; i < k; i++) {
    for (const unsigned char *p = (unsigned char *)lines[i]; *p; p++)
      if (*p < 0x20 || *p == 0x7f)
        abort();
    free(lines[i]);
  }
}

static void names(const char *text, size_t n) {
  static const double buckets[] = {0.1, 1};
  metrics_config cfg = {buckets, 2, 3};
  metrics *m = metrics_new(&cfg);
  size_t half = n / 2;
  uint32_t svc = metrics_service(m, text, half);
  uint32_t s = metrics_series(m, svc, text + half, n - half);
  metrics_task_final(m, s, SCHEMA_SUCCEEDED, 5, 5);
  metrics_in_progress(m, svc, SCHEMA_QUEUED, 1);
  format_buf out;
  format_buf_init(&out);
  metrics_render(m, &out);
  if (!valid_utf8((unsigned char *)out.data, out.len))
    abort();
  for (const char *line = out.data; *line;) {
    const char *end = strchr(line, '\n');
    if (end == NULL || (line[0] != '#' && strncmp(line, "taskwatch_", 10)))
      abort();
    line = end + 1;
  }
  format_buf_fini(&out);
  metrics_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  parsers(text, strlen(text));
  names(text, size);
  free(text);
  return 0;
}
