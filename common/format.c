/*
 * format - times, durations, JSON strings and CSV fields as text. Dates are
 * computed with the proleptic Gregorian day arithmetic of H. Hinnant's
 * "chrono-compatible low-level date algorithms" rather than gmtime/timegm,
 * so UTC formatting and parsing need no time zone state and behave the same
 * on every libc.
 */
#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xalloc.h"

#define US_PER_SEC INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_SEC)

/* ---- buffer ------------------------------------------------------------ */

void format_buf_init(format_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void format_buf_fini(format_buf *b) {
  free(b->data);
  format_buf_init(b);
}

void format_buf_reset(format_buf *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

static void reserve(format_buf *b, size_t more) {
  if (b->len + more + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + more + 1)
    cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
}

void format_buf_append(format_buf *b, const char *s, size_t n) {
  reserve(b, n);
  if (n > 0)
    memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void format_buf_puts(format_buf *b, const char *s) {
  format_buf_append(b, s, strlen(s));
}

void format_buf_putc(format_buf *b, char c) {
  format_buf_append(b, &c, 1);
}

void format_buf_printf(format_buf *b, const char *fmt, ...) {
  /* Usually one pass: print into the room left, grow and redo only when
   * it did not fit. */
  reserve(b, 32);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->data[b->len] = '\0';
    return;
  }
  if ((size_t)n >= b->cap - b->len) {
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
}

void format_buf_put_uint(format_buf *b, uint64_t v) {
  char digits[24];
  int n = sizeof(digits);
  do {
    digits[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  format_buf_append(b, digits + n, sizeof(digits) - (size_t)n);
}

void format_buf_put_int(format_buf *b, int64_t v) {
  if (v < 0)
    format_buf_putc(b, '-');
  format_buf_put_uint(b, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

const char *format_buf_str(const format_buf *b) {
  return b->data != NULL ? b->data : "";
}

/* ---- calendar ---------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    q--;
  return q;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = floor_div(y, 400);
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = floor_div(z, 146097);
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned days[12] = {31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    return 29;
  return days[m - 1];
}

/* Writes v as exactly `width` decimal digits, zero-padded. */
static void put_digits(char *out, uint64_t v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    out[i] = (char)('0' + v % 10);
    v /= 10;
  }
}

/* Writes the civil time of `us` shifted by offset_s and the zone suffix. */
static int format_time(int64_t us, long offset_s, char *buf, size_t len) {
  if (us < INT64_MIN / 2 || us > INT64_MAX / 2)
    return -1;
  int64_t local = us + (int64_t)offset_s * US_PER_SEC;
  int64_t day = floor_div(local, US_PER_DAY);
  int64_t in_day = local - day * US_PER_DAY;
  int64_t y;
  unsigned m, d;
  civil_from_days(day, &y, &m, &d);
  if (y < 0 || y > 9999)
    return -1;
  int64_t sec = in_day / US_PER_SEC;
  char zone[48] = "Z";
  if (offset_s != 0) {
    long a = offset_s < 0 ? -offset_s : offset_s;
    snprintf(zone, sizeof(zone), "%c%02ld:%02ld", offset_s < 0 ? '-' : '+',
             a / 3600, (a / 60) % 60);
  }
  /* Digits by hand: this runs three times per exported row. */
  size_t zlen = strlen(zone);
  if (len < 26 + zlen + 1)
    return -1;
  put_digits(buf, (uint64_t)y, 4);
  buf[4] = '-';
  put_digits(buf + 5, m, 2);
  buf[7] = '-';
  put_digits(buf + 8, d, 2);
  buf[10] = 'T';
  put_digits(buf + 11, (uint64_t)(sec / 3600), 2);
  buf[13] = ':';
  put_digits(buf + 14, (uint64_t)(sec / 60 % 60), 2);
  buf[16] = ':';
  put_digits(buf + 17, (uint64_t)(sec % 60), 2);
  buf[19] = '.';
  put_digits(buf + 20, (uint64_t)(in_day % US_PER_SEC), 6);
  memcpy(buf + 26, zone, zlen + 1);
  return (int)(26 + zlen);
}

int format_time_utc(int64_t us, char *buf, size_t len) {
  return format_time(us, 0, buf, len);
}

int format_time_local(int64_t us, char *buf, size_t len) {
  time_t secs = (time_t)floor_div(us, US_PER_SEC);
  struct tm tm;
  if (localtime_r(&secs, &tm) == NULL)
    return -1;
  return format_time(us, tm.tm_gmtoff, buf, len);
}

/* ---- parsing ----------------------------------------------------------- */

/* Reads exactly `digits` decimal digits. */
static int fixed_digits(const char **p, int digits, int *out) {
  int v = 0;
  for (int i = 0; i < digits; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9')
      return -1;
    v = v * 10 + (c - '0');
  }
  *p += digits;
  *out = v;
  return 0;
}

/* Reads a fraction's digits (after the dot) as microseconds, keeping six
 * digits and ignoring the rest. */
static int fraction_us(const char **p, int64_t *out) {
  const char *s = *p;
  int64_t v = 0;
  int n = 0;
  while (*s >= '0' && *s <= '9') {
    if (n < 6)
      v = v * 10 + (*s - '0');
    n++;
    s++;
  }
  if (n == 0)
    return -1;
  for (int i = n; i < 6; i++)
    v *= 10;
  *p = s;
  *out = v;
  return 0;
}

static int parse_clock(const char **p, int64_t *sec_of_day, int64_t *frac) {
  int hh, mm, ss = 0;
  const char *s = *p;
  if (fixed_digits(&s, 2, &hh) || *s++ != ':' || fixed_digits(&s, 2, &mm))
    return -1;
  if (*s == ':') {
    s++;
    if (fixed_digits(&s, 2, &ss))
      return -1;
    if (*s == '.' || *s == ',') {
      s++;
      if (fraction_us(&s, frac))
        return -1;
    }
  }
  if (hh > 23 || mm > 59 || ss > 60)
    return -1;
  *sec_of_day = hh * 3600 + mm * 60 + ss;
  *p = s;
  return 0;
}

static int parse_zone(const char **p, int64_t *offset_s) {
  const char *s = *p;
  *offset_s = 0;
  if (*s == 'Z' || *s == 'z') {
    *p = s + 1;
    return 0;
  }
  if (*s != '+' && *s != '-')
    return *s == '\0' ? 0 : -1;
  int sign = *s == '-' ? -1 : 1;
  int hh, mm;
  s++;
  if (fixed_digits(&s, 2, &hh) || *s++ != ':' || fixed_digits(&s, 2, &mm) ||
      hh > 23 || mm > 59)
    return -1;
  *offset_s = sign * (hh * 3600 + mm * 60);
  *p = s;
  return 0;
}

static int parse_rfc3339(const char *text, int64_t *out_us) {
  const char *s = text;
  int y, m, d;
  if (fixed_digits(&s, 4, &y) || *s++ != '-' || fixed_digits(&s, 2, &m) ||
      *s++ != '-' || fixed_digits(&s, 2, &d))
    return -1;
  if (m < 1 || m > 12 || d < 1 || (unsigned)d > days_in_month(y, (unsigned)m))
    return -1;
  int64_t sec_of_day = 0, frac = 0, offset = 0;
  if (*s == 'T' || *s == 't' || *s == ' ') {
    s++;
    if (parse_clock(&s, &sec_of_day, &frac) || parse_zone(&s, &offset))
      return -1;
  }
  if (*s != '\0')
    return -1;
  int64_t days = days_from_civil(y, (unsigned)m, (unsigned)d);
  *out_us = (days * 86400 + sec_of_day - offset) * US_PER_SEC + frac;
  return 0;
}

static int64_t unit_us(const char **p) {
  static const struct {
    const char *name;
    int64_t us;
  } units[] = {
      {"us", 1},         {"\xc2\xb5s", 1},       {"ms", 1000},
      {"s", US_PER_SEC}, {"m", 60 * US_PER_SEC}, {"h", 3600 * US_PER_SEC},
      {"d", US_PER_DAY}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    size_t n = strlen(units[i].name);
    if (strncmp(*p, units[i].name, n) == 0) {
      *p += n;
      return units[i].us;
    }
  }
  return 0;
}

int format_parse_duration(const char *text, int64_t *out_us) {
  const char *s = text;
  int64_t total = 0;
  if (strcmp(text, "0") == 0) {
    *out_us = 0;
    return 0;
  }
  if (*s == '\0')
    return -1;
  while (*s != '\0') {
    int64_t whole = 0, frac = 0;
    if (*s < '0' || *s > '9')
      return -1;
    while (*s >= '0' && *s <= '9') {
      if (__builtin_mul_overflow(whole, 10, &whole) ||
          __builtin_add_overflow(whole, *s - '0', &whole))
        return -1;
      s++;
    }
    if (*s == '.') {
      s++;
      if (fraction_us(&s, &frac))
        return -1;
    }
    int64_t unit = unit_us(&s);
    int64_t part;
    if (unit == 0 || __builtin_mul_overflow(whole, unit, &part) ||
        __builtin_add_overflow(part, frac * unit / US_PER_SEC, &part) ||
        __builtin_add_overflow(total, part, &total))
      return -1;
  }
  *out_us = total;
  return 0;
}

int format_parse_time(const char *text, int64_t now_us, int64_t *out_us) {
  if (strcmp(text, "now") == 0) {
    *out_us = now_us;
    return 0;
  }
  if (strlen(text) >= 10 && text[4] == '-')
    return parse_rfc3339(text, out_us);
  int64_t ago;
  if (format_parse_duration(text, &ago) != 0 ||
      __builtin_sub_overflow(now_us, ago, out_us))
    return -1;
  return 0;
}

/* ---- durations --------------------------------------------------------- */

/* Three significant digits of us/unit, or -1 when that rounds to 1000. */
static int sig3(uint64_t us, uint64_t unit, const char *name, char *buf,
                size_t len) {
  double v = (double)us / (double)unit;
  int decimals = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
  char tmp[32];
  snprintf(tmp, sizeof(tmp), "%.*f", decimals, v);
  if (strncmp(tmp, "1000", 4) == 0)
    return -1;
  return snprintf(buf, len, "%s%s", tmp, name);
}

int format_duration(int64_t us, char *buf, size_t len) {
  if (len == 0)
    return 0;
  const char *sign = us < 0 ? "-" : "";
  uint64_t a = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
  char body[48];
  int n = -1;
  if (a < 1000)
    n = snprintf(body, sizeof(body), "%uus", (unsigned)a);
  if (n < 0 && a < 1000000)
    n = sig3(a, 1000, "ms", body, sizeof(body));
  if (n < 0 && a < 60000000)
    n = sig3(a, 1000000, "s", body, sizeof(body));
  if (n < 0) {
    uint64_t s = (a + 500000) / 1000000;
    if (s < 3600)
      n = snprintf(body, sizeof(body), "%um%02us", (unsigned)(s / 60),
                   (unsigned)(s % 60));
    else if (s < 86400)
      n = snprintf(body, sizeof(body), "%uh%02um", (unsigned)(s / 3600),
                   (unsigned)(s / 60 % 60));
    else
      n = snprintf(body, sizeof(body), "%llud%02uh",
                   (unsigned long long)(s / 86400), (unsigned)(s / 3600 % 24));
  }
  n = snprintf(buf, len, "%s%s", sign, body);
  return n < 0 ? 0 : (size_t)n >= len ? (int)len - 1 : n;
}

/* ---- JSON and CSV ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (code point in *cp), or 0. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  size_t len;
  uint32_t c, min;
  if ((s[0] & 0xe0) == 0xc0) {
    len = 2, c = s[0] & 0x1f, min = 0x80;
  } else if ((s[0] & 0xf0) == 0xe0) {
    len = 3, c = s[0] & 0x0f, min = 0x800;
  } else if ((s[0] & 0xf8) == 0xf0) {
    len = 4, c = s[0] & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
    return 0;
  *cp = c;
  return len;
}

void format_json_string(format_buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  format_buf_putc(b, '"');
  size_t i = 0;
  while (i < n) {
    /* Plain printable ASCII goes in runs. */
    size_t run = i;
    while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' &&
           u[run] != '\\')
      run++;
    if (run > i) {
      format_buf_append(b, s + i, run - i);
      i = run;
      continue;
    }
    uint32_t cp;
    size_t len = utf8_decode(u + i, n - i, &cp);
    if (len == 0) {
      format_buf_puts(b, "\\ufffd");
      i++;
      continue;
    }
    if (cp == '"' || cp == '\\') {
      format_buf_putc(b, '\\');
      format_buf_putc(b, (char)cp);
    } else if (cp == '\n') {
      format_buf_puts(b, "\\n");
    } else if (cp == '\t') {
      format_buf_puts(b, "\\t");
    } else if (cp == '\r') {
      format_buf_puts(b, "\\r");
    } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
               cp == 0x2029) {
      format_buf_printf(b, "\\u%04x", (unsigned)cp);
    } else {
      format_buf_append(b, s + i, len);
    }
    i += len;
  }
  format_buf_putc(b, '"');
}

void format_csv_field(format_buf *b, const char *s, size_t n) {
  int quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
  for (size_t i = 0; i < n && !quote; i++)
    quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
  if (!quote) {
    format_buf_append(b, s, n);
    return;
  }
  format_buf_putc(b, '"');
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"')
      format_buf_putc(b, '"');
    format_buf_putc(b, s[i]);
  }
  format_buf_putc(b, '"');
}

int64_t format_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
