/*
 * clock - see clock.h.
 */
#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskwatch.h>
#include <time.h>

#if CLOCK_HAVE_COUNTER
#include <cpuid.h>
#endif

clock_flag tw__clock_use;
static clock_source chosen = CLOCK_SOURCE_MONOTONIC;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

int64_t tw__clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the choice --------------------------------------------------------- */

int tw__clock_parse_request(const char *value, clock_request *out) {
  *out = CLOCK_REQUEST_AUTO;
  if (value == NULL || *value == '\0' || strcmp(value, "auto") == 0)
    return 0;
  if (strcmp(value, "tsc") == 0)
    *out = CLOCK_REQUEST_TSC;
  else if (strcmp(value, "monotonic") == 0)
    *out = CLOCK_REQUEST_MONOTONIC;
  else
    return -1;
  return 0;
}

/* Whether the blank-separated words [s, end) include `word`. */
static bool has_word(const char *s, const char *end, const char *word) {
  size_t n = strlen(word);
  while (s < end) {
    while (s < end && (*s == ' ' || *s == '\t'))
      s++;
    const char *w = s;
    while (s < end && *s != ' ' && *s != '\t')
      s++;
    if ((size_t)(s - w) == n && memcmp(w, word, n) == 0)
      return true;
  }
  return false;
}

int tw__clock_cpuinfo_invariant(const char *cpuinfo) {
  int verdict = -1;
  for (const char *line = cpuinfo; line != NULL && *line != '\0';) {
    const char *end = strchr(line, '\n');
    const char *next = end != NULL ? end + 1 : NULL;
    if (end == NULL)
      end = line + strlen(line);
    const char *colon = memchr(line, ':', (size_t)(end - line));
    /* x86 names the line "flags"; the key is padded with tabs. */
    if (colon != NULL && (size_t)(end - line) > 5 &&
        memcmp(line, "flags", 5) == 0 &&
        (line[5] == '\t' || line[5] == ' ' || line[5] == ':')) {
      bool both = has_word(colon + 1, end, "constant_tsc") &&
                  has_word(colon + 1, end, "nonstop_tsc");
      if (!both)
        return 0;
      verdict = 1;
    }
    line = next;
  }
  return verdict;
}

bool tw__clock_kernel_refuses(const char *clocksource) {
  static const char *const timers[] = {"hpet", "acpi_pm", "jiffies",
                                       "refined-jiffies", "pit"};
  size_t n = strcspn(clocksource, "\n");
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
    if (strlen(timers[i]) == n && memcmp(clocksource, timers[i], n) == 0)
      return true;
  return false;
}

clock_source tw__clock_decide(clock_request request, const clock_facts *facts) {
  if (!facts->have_counter || request == CLOCK_REQUEST_MONOTONIC)
    return CLOCK_SOURCE_MONOTONIC;
  if (request == CLOCK_REQUEST_TSC)
    return CLOCK_SOURCE_TSC;
  if (facts->invariant && !facts->kernel_refuses && !facts->counter_slow)
    return CLOCK_SOURCE_TSC;
  return CLOCK_SOURCE_MONOTONIC;
}

/* The whole of a small /proc or /sys file, NUL-terminated; NULL when it
 * cannot be read. The caller frees it. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return NULL;
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  while (text != NULL) {
    len += fread(text + len, 1, cap - 1 - len, f);
    if (len < cap - 1)
      break;
    char *bigger = cap < ((size_t)8 << 20) ? realloc(text, cap * 2) : NULL;
    if (bigger == NULL) {
      free(text);
      text = NULL;
      break;
    }
    text = bigger;
    cap *= 2;
  }
  fclose(f);
  if (text != NULL)
    text[len] = '\0';
  return text;
}

#if CLOCK_HAVE_COUNTER
/* The cheapest of a few short runs, in counter ticks per read: the minimum
 * is what a read costs when nothing else runs. */
static int64_t read_cost(bool counter) {
  int64_t best = INT64_MAX;
  for (int run = 0; run < 8; run++) {
    int64_t t0 = (int64_t)__rdtsc();
    for (int i = 0; i < 16; i++) {
      if (counter)
        __asm__ volatile("" : : "r"(__rdtsc()));
      else
        __asm__ volatile("" : : "r"(tw__clock_mono_ns()));
    }
    int64_t t = ((int64_t)__rdtsc() - t0) / 16;
    best = t < best ? t : best;
  }
  return best;
}
#endif

static void gather_facts(clock_facts *f) {
  memset(f, 0, sizeof(*f));
#if CLOCK_HAVE_COUNTER
  /* A counter this high would collide with CLOCK_MONO_TAG within years. */
  f->have_counter = __rdtsc() < ((uint64_t)1 << 61);
  char *cpuinfo = read_text("/proc/cpuinfo");
  int flags = cpuinfo != NULL ? tw__clock_cpuinfo_invariant(cpuinfo) : -1;
  free(cpuinfo);
  unsigned a, b, c, d;
  if (flags < 0) /* CPUID 0x80000007, EDX bit 8: invariant TSC */
    flags = __get_cpuid(0x80000007u, &a, &b, &c, &d) && (d & (1u << 8));
  f->invariant = flags == 1;
  char *source = read_text("/sys/devices/system/clocksource/clocksource0/"
                           "current_clocksource");
  f->kernel_refuses = source != NULL && tw__clock_kernel_refuses(source);
  free(source);
  f->counter_slow = read_cost(true) >= read_cost(false);
#endif
}

static void decide(void) {
  clock_request request;
  clock_facts facts;
  /* A malformed value means automatic here; tw_config_from_env() is where
   * it is reported (TW_EINVAL). */
  tw__clock_parse_request(getenv("TASKWATCH_CLOCK"), &request);
  gather_facts(&facts);
  chosen = tw__clock_decide(request, &facts);
  atomic_store(&tw__clock_use.counter, chosen == CLOCK_SOURCE_TSC);
}

void tw__clock_init(void) {
  pthread_once(&init_once, decide);
}

clock_source tw__clock_current(void) {
  return atomic_load_explicit(&tw__clock_use.counter, memory_order_relaxed)
             ? CLOCK_SOURCE_TSC
             : CLOCK_SOURCE_MONOTONIC;
}

const char *tw__clock_source_name(clock_source source) {
  return source == CLOCK_SOURCE_TSC ? "tsc" : "monotonic";
}

const char *tw_clock_source(void) {
  return tw__clock_source_name(tw__clock_current());
}

/* ---- the sender's mapping ----------------------------------------------- */

/* Reads (counter, CLOCK_MONOTONIC) back to back; the tick is the middle of
 * two counter reads around the clock read, *spread their distance. Fenced,
 * so the drain's loads of ring heads that follow are not done first. */
static clock_anchor read_anchor(bool counter, int64_t *spread) {
  clock_anchor x;
  *spread = 0;
#if CLOCK_HAVE_COUNTER
  if (counter) {
    _mm_lfence();
    int64_t t0 = (int64_t)__rdtsc();
    _mm_lfence();
    x.ns = tw__clock_mono_ns();
    _mm_lfence();
    int64_t t1 = (int64_t)__rdtsc();
    _mm_lfence();
    x.tick = t0 + (t1 - t0) / 2;
    *spread = t1 - t0;
    return x;
  }
#endif
  (void)counter;
  x.ns = tw__clock_mono_ns();
  x.tick = x.ns;
  return x;
}

/* The narrowest of a few tries; *wide when even that one is too wide to
 * trust (the sender was preempted or moved between the reads each time). */
static clock_anchor take_anchor(const clock_map *m, bool *wide) {
  int64_t spread, best_spread;
  clock_anchor best = read_anchor(m->counter, &best_spread);
  for (int i = 0;
       i < 3 && (double)best_spread * m->slope > (double)CLOCK_ANCHOR_SPREAD_NS;
       i++) {
    clock_anchor x = read_anchor(m->counter, &spread);
    if (spread < best_spread) {
      best = x;
      best_spread = spread;
    }
  }
  *wide = (double)best_spread * m->slope > (double)CLOCK_ANCHOR_SPREAD_NS;
  return best;
}

void tw__clock_map_init(clock_map *m) {
  bool wide;
  memset(m, 0, sizeof(*m));
  m->counter = chosen == CLOCK_SOURCE_TSC;
  /* Until two anchors give a rate, a tick counts as a nanosecond: counters
   * run at 1 GHz or more, so this overstates an anchor's spread, never
   * understates it. */
  m->slope = 1.0;
  m->a[0] = take_anchor(m, &wide);
  m->n = 1;
  m->ceiling = m->a[0].ns;
}

static void thin_out(clock_map *m) {
  size_t k = 1;
  for (size_t i = 2; i + 1 < m->n; i += 2)
    m->a[k++] = m->a[i];
  m->a[k++] = m->a[m->n - 1];
  m->n = k;
}

bool tw__clock_map_add(clock_map *m, clock_anchor x) {
  const clock_anchor *last = &m->a[m->n - 1];
  if (x.tick <= last->tick || x.ns <= last->ns)
    return false;
  if (m->n == CLOCK_ANCHORS)
    thin_out(m);
  m->a[m->n++] = x;
  m->ceiling = x.ns > m->ceiling ? x.ns : m->ceiling;
  const clock_anchor *lo = &m->a[m->n - 2];
  m->slope = (double)(x.ns - lo->ns) / (double)(x.tick - lo->tick);
  return true;
}

int64_t tw__clock_map_mark(clock_map *m) {
  if (m->skew) /* see clock.h: records from now on carry monotonic ns */
    atomic_store_explicit(&tw__clock_use.counter, 0, memory_order_relaxed);
  if (!m->counter) {
    m->ceiling = tw__clock_mono_ns();
    return m->ceiling | CLOCK_MONO_TAG;
  }
  bool wide;
  clock_anchor x = take_anchor(m, &wide);
  /* The clock read is exact even when the anchor's tick is not. */
  m->ceiling = x.ns > m->ceiling ? x.ns : m->ceiling;
  /* A wide anchor is refused, unless every try has been wide for a while:
   * a map that never moves would hold every record back. */
  m->too_wide = wide ? m->too_wide + 1 : 0;
  if ((!wide || m->too_wide >= 8) && tw__clock_map_add(m, x))
    m->too_wide = 0;
  if (!atomic_load_explicit(&tw__clock_use.counter, memory_order_relaxed))
    return x.ns | CLOCK_MONO_TAG; /* ticks stamped before the move too */
  /* With one anchor there is no rate yet: nothing is due. */
  return m->n >= 2 ? m->a[m->n - 1].tick : INT64_MIN;
}

int64_t tw__clock_map_older(const clock_map *m, int64_t time) {
  size_t lo = 0, hi = m->n - 1; /* a[lo].tick < time < a[hi].tick */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->a[mid].tick <= time)
      lo = mid;
    else
      hi = mid;
  }
  const clock_anchor *a = &m->a[lo], *b = &m->a[hi];
  return tw__clock_along(
      a, (double)(b->ns - a->ns) / (double)(b->tick - a->tick), time);
}
