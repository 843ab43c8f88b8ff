/*
 * view - draws the dashboard into a grid: the header (counts, rates and
 * sparklines, percentiles, agents, staleness), the view tabs, the current
 * list (tasks, batches, names, agents) or the help or detail pane, and the
 * footer. Layout degrades with the size: the header collapses to short
 * words in fewer rows, and list columns are dropped by priority, so any
 * size down to 1x1 draws without overflow.
 */
#include "view.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "keys.h"
#include "sanitize.h"

static const char *const view_names[VIEW_COUNT] = {"tasks", "batches", "names",
                                                   "agents"};

const char *view_name(int kind) {
  return kind >= 0 && kind < VIEW_COUNT ? view_names[kind] : "?";
}

int view_kind_of(const char *name) {
  for (int i = 0; i < VIEW_COUNT; i++)
    if (strcmp(view_names[i], name) == 0)
      return i;
  return -1;
}

static const struct {
  const char *name;
  int64_t us; /* 0: all */
} windows[VIEW_WINDOW_COUNT] = {
    [VIEW_WINDOW_5M] = {"5m", INT64_C(300000000)},
    [VIEW_WINDOW_15M] = {"15m", INT64_C(900000000)},
    [VIEW_WINDOW_1H] = {"1h", INT64_C(3600000000)},
    [VIEW_WINDOW_24H] = {"24h", INT64_C(86400000000)},
    [VIEW_WINDOW_ALL] = {"all", 0},
};

const char *view_window_name(int window) {
  return window >= 0 && window < VIEW_WINDOW_COUNT ? windows[window].name : "?";
}

int view_window_of(const char *name) {
  for (int i = 0; i < VIEW_WINDOW_COUNT; i++)
    if (strcmp(windows[i].name, name) == 0)
      return i;
  return -1;
}

int64_t view_since(const view_state *s) {
  int w = s->window >= 0 && s->window < VIEW_WINDOW_COUNT ? s->window
                                                          : VIEW_WINDOW_ALL;
  return windows[w].us ? s->now_us - windows[w].us : INT64_MIN;
}

data_scope view_scope(const view_state *s) {
  data_scope sc = {view_since(s), s->now_us, DATA_BY_TIME, 1};
  if (s->kind == VIEW_TASKS || s->kind == VIEW_BATCHES) {
    sc.by =
        s->sort_column[s->kind] < 0 ? DATA_BY_TIME : s->sort_column[s->kind];
    sc.desc = s->sort_desc[s->kind];
  }
  return sc;
}

/* "last 15m", or "all time". */
static void window_words(const view_state *s, char *buf, size_t size) {
  if (view_since(s) == INT64_MIN)
    snprintf(buf, size, "all time");
  else
    snprintf(buf, size, "last %s", view_window_name(s->window));
}

/* Styles. Every state has a word as well as a colour. */
static grid_style style(int fg, unsigned attr) {
  grid_style s = {(uint8_t)fg, (uint8_t)attr};
  return s;
}
static const grid_style normal = {GRID_DEFAULT, 0};

/* The colour and attributes of a task state (always shown with its word). */
static grid_style status_style(int status) {
  switch (status) {
  case SCHEMA_QUEUED:
    return style(GRID_BLUE, 0);
  case SCHEMA_RUNNING:
    return style(GRID_CYAN, GRID_BOLD);
  case SCHEMA_SUCCEEDED:
    return style(GRID_GREEN, 0);
  case SCHEMA_FAILED:
    return style(GRID_RED, GRID_BOLD);
  case SCHEMA_SKIPPED:
    return style(GRID_YELLOW, 0);
  case SCHEMA_DROPPED:
    return style(GRID_MAGENTA, 0);
  case SCHEMA_LOST:
    return style(GRID_RED, GRID_UNDERLINE);
  default:
    return normal;
  }
}

static const char *status_word(int status) {
  const char *n = schema_status_name(status);
  return n ? n : "?";
}

/* Short words for narrow screens: still words, never colour alone. */
static const char *const short_status[SCHEMA_STATUS_COUNT] = {
    "queue", "run", "ok", "fail", "skip", "drop", "lost"};

static void duration(int64_t us, char *buf, size_t size) {
  if (us == DATA_NULL)
    snprintf(buf, size, "-");
  else
    format_duration(us, buf, size);
}

/* "HH:MM:SS" of a time, UTC. */
static void clock_time(int64_t us, char *buf, size_t size) {
  char full[FORMAT_TIME_SIZE];
  if (us == DATA_NULL || format_time_utc(us, full, sizeof full) < 19)
    snprintf(buf, size, "-");
  else
    snprintf(buf, size, "%.8s", full + 11);
}

/* now - then, saturated: times come from agents' clocks and may be far
 * off, and DATA_NULL is INT64_MIN. */
static int64_t elapsed_us(int64_t now, int64_t then) {
  if (then < 0 && now > INT64_MAX + then)
    return INT64_MAX;
  if (then > 0 && now < INT64_MIN + then)
    return INT64_MIN;
  return now - then;
}

/* How long ago, in the largest unit: "5s", "3m", "2h", "4d". */
static void ago(int64_t now, int64_t then, char *buf, size_t size) {
  int64_t s = elapsed_us(now, then) / 1000000;
  if (then == DATA_NULL)
    snprintf(buf, size, "never");
  else if (s < 0)
    snprintf(buf, size, "0s");
  else if (s < 120)
    snprintf(buf, size, "%llds", (long long)s);
  else if (s < 7200)
    snprintf(buf, size, "%lldm", (long long)(s / 60));
  else if (s < 172800)
    snprintf(buf, size, "%lldh", (long long)(s / 3600));
  else
    snprintf(buf, size, "%lldd", (long long)(s / 86400));
}

/* ---- header: segments flowed into a row budget ---------------------- */

#define PIECES_MAX 4
typedef struct segment {
  int brk;      /* starts a new row when the header has room for rows */
  int optional; /* left out rather than wrapped when it does not fit */
  int npieces;
  char text[PIECES_MAX][96];
  grid_style style[PIECES_MAX];
} segment;

typedef struct flow {
  grid *g;
  int width, budget, roomy;
  int x, y;
  int done;
} flow;

static void piece(segment *seg, grid_style st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void piece(segment *seg, grid_style st, const char *fmt, ...) {
  if (seg->npieces == PIECES_MAX)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(seg->text[seg->npieces], sizeof seg->text[0], fmt, ap);
  va_end(ap);
  seg->style[seg->npieces++] = st;
}

static int segment_width(const segment *seg, unsigned flags) {
  int w = 0;
  for (int i = 0; i < seg->npieces; i++)
    w += sanitize_width(seg->text[i], strlen(seg->text[i]), flags);
  return w;
}

static void flow_put(flow *f, const segment *seg) {
  if (f->done)
    return;
  int w = segment_width(seg, grid_flags(f->g));
  if (seg->optional && f->x + 2 + w > f->width)
    return;
  if (f->x > 0 && ((seg->brk && f->roomy) || f->x + 2 + w > f->width)) {
    f->y++;
    f->x = 0;
  } else if (f->x > 0) {
    f->x += 2;
  }
  if (f->y >= f->budget) {
    f->done = 1;
    return;
  }
  for (int i = 0; i < seg->npieces; i++)
    f->x += grid_puts(f->g, f->x, f->y, f->width - f->x, seg->style[i],
                      seg->text[i]);
}

static void sparkline(const int64_t *v, int n, unsigned flags, char *buf,
                      size_t size) {
  static const char *const bars[8] = {
      "\xE2\x96\x81", "\xE2\x96\x82", "\xE2\x96\x83", "\xE2\x96\x84",
      "\xE2\x96\x85", "\xE2\x96\x86", "\xE2\x96\x87", "\xE2\x96\x88"};
  static const char ascii[] = "_.-:=+*#";
  int64_t max = 0;
  for (int i = 0; i < n; i++)
    if (v[i] > max)
      max = v[i];
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < n; i++) {
    int level = max ? (int)((v[i] * 7 + max - 1) / max) : 0;
    const char *c = v[i] == 0 ? " " : NULL;
    char one[2] = {ascii[level], '\0'};
    if (c == NULL)
      c = (flags & SANITIZE_ASCII) ? one : bars[level];
    size_t len = strlen(c);
    if (used + len + 1 > size)
      break;
    memcpy(buf + used, c, len + 1);
    used += len;
  }
}

static int header_budget(int height) {
  if (height >= 20)
    return 5;
  if (height >= 10)
    return 3;
  if (height >= 7)
    return 2;
  return height >= 5 ? 1 : 0;
}

static void header_title(const view_state *s, flow *f) {
  segment seg = {0};
  char t[16];
  piece(&seg, style(GRID_DEFAULT, GRID_BOLD), "taskwatch");
  flow_put(f, &seg);
  clock_time(s->now_us, t, sizeof t);
  memset(&seg, 0, sizeof seg);
  piece(&seg, normal, "%sZ", t);
  flow_put(f, &seg);
}

/* The store's path, when the title row has room left for it. */
static void header_db(const view_state *s, flow *f) {
  segment seg = {0};
  if (s->db_label == NULL)
    return;
  seg.optional = 1;
  piece(&seg, style(GRID_DEFAULT, GRID_DIM), "%s", s->db_label);
  flow_put(f, &seg);
}

/* Idle after this long without an event. */
#define IDLE_US INT64_C(10000000)

/* Whether events are coming, in words: a newcomer watching a load end
 * reads "FINISHED" rather than guessing from a clock. */
static void header_last_event(const view_state *s, flow *f) {
  segment seg = {0};
  char a[16];
  const data_stats *st = &s->stats;
  grid_style badge = style(GRID_YELLOW, GRID_BOLD | GRID_REVERSE);
  ago(s->now_us, st->last_event_at, a, sizeof a);
  if (st->last_event_at == DATA_NULL) {
    piece(&seg, badge, "WAITING");
    piece(&seg, normal, " no event yet");
  } else if (st->agents > 0 && st->agents_connected == 0) {
    piece(&seg, badge, "FINISHED");
    piece(&seg, normal, " no agent connected, last event %s ago", a);
  } else if (elapsed_us(s->now_us, st->last_event_at) > IDLE_US) {
    piece(&seg, badge, "IDLE");
    piece(&seg, normal, " no event for %s", a);
  } else {
    piece(&seg, normal, "last event %s ago", a);
  }
  flow_put(f, &seg);
}

static const char *plural(int64_t n) {
  return n == 1 ? "" : "s";
}

/* The agents, and what they dropped: events, and the tasks and batches
 * they refused whole ("dropped 12e 5t 2b" when narrow). */
static void header_agents(const view_state *s, flow *f) {
  segment seg = {0};
  const data_stats *st = &s->stats;
  int wide = f->width >= 120;
  if (wide)
    piece(&seg, normal, "agents %lld of %lld connected",
          (long long)st->agents_connected, (long long)st->agents);
  else
    piece(&seg, normal, "agents %lld/%lld", (long long)st->agents_connected,
          (long long)st->agents);
  grid_style drops = st->agents_dropped || st->agents_dropped_tasks ||
                             st->agents_dropped_batches
                         ? style(GRID_RED, GRID_BOLD)
                         : normal;
  if (wide)
    piece(&seg, drops, " dropped %lld event%s, %lld task%s, %lld batch%s",
          (long long)st->agents_dropped, plural(st->agents_dropped),
          (long long)st->agents_dropped_tasks, plural(st->agents_dropped_tasks),
          (long long)st->agents_dropped_batches,
          st->agents_dropped_batches == 1 ? "" : "es");
  else
    piece(&seg, drops, " dropped %llde %lldt %lldb",
          (long long)st->agents_dropped, (long long)st->agents_dropped_tasks,
          (long long)st->agents_dropped_batches);
  flow_put(f, &seg);
}

static void header_count(flow *f, int status, int64_t n, int brk,
                         const char *before) {
  segment seg = {0};
  seg.brk = brk;
  const char *word =
      f->width >= 100 ? status_word(status) : short_status[status];
  if (before)
    piece(&seg, style(GRID_DEFAULT, GRID_BOLD), "%s ", before);
  piece(&seg, status_style(status), "%s", word);
  piece(&seg, normal, " %lld", (long long)n);
  flow_put(f, &seg);
}

/* The window's final states, then what is queued and running now. */
static void header_counts(const view_state *s, flow *f) {
  char w[32];
  window_words(s, w, sizeof w);
  if (f->width < 100)
    snprintf(w, sizeof w, "%s",
             view_since(s) == INT64_MIN ? "all" : view_window_name(s->window));
  for (int i = SCHEMA_SUCCEEDED; i < SCHEMA_STATUS_COUNT; i++)
    header_count(f, i, s->stats.counts[i], i == SCHEMA_SUCCEEDED,
                 i == SCHEMA_SUCCEEDED ? w : NULL);
  header_count(f, SCHEMA_QUEUED, s->stats.queued_now, 0, "now");
  header_count(f, SCHEMA_RUNNING, s->stats.running_now, 0, NULL);
}

static void header_rates(const view_state *s, flow *f) {
  unsigned flags = grid_flags(f->g);
  int n = f->width >= 100 ? DATA_SPARK_N : f->width >= 80 ? 14 : 8;
  char spark[DATA_SPARK_N * 3 + 1];
  segment seg = {0};
  seg.brk = 1;
  sparkline(s->stats.spark_tasks + DATA_SPARK_N - n, n, flags, spark,
            sizeof spark);
  piece(&seg, normal, "tasks/s %.1f ", data_rate(&s->stats, s->now_us, 0));
  piece(&seg, style(GRID_GREEN, 0), "%s", spark);
  flow_put(f, &seg);
  memset(&seg, 0, sizeof seg);
  sparkline(s->stats.spark_failed + DATA_SPARK_N - n, n, flags, spark,
            sizeof spark);
  piece(&seg, normal, "failed/s %.2f ", data_rate(&s->stats, s->now_us, 1));
  piece(&seg, style(GRID_RED, 0), "%s", spark);
  flow_put(f, &seg);
}

static const char *plus_minus(unsigned flags) {
  return flags & SANITIZE_ASCII ? "+-" : "\xC2\xB1";
}

/* p50/p95/p99 of run time and wait over the last minute and the window;
 * "~" when they come from a sample, the bound when from the rollups. */
static void header_percentiles(const view_state *s, flow *f) {
  const char *spans[DATA_WINDOWS] = {"1m", view_window_name(s->window)};
  const char *mark = s->stats.exact || s->stats.pct_error > 0 ? "" : "~";
  for (int which = 0; which < 2; which++) {
    segment seg = {0};
    seg.brk = 1;
    if (f->width >= 100)
      piece(&seg, style(GRID_DEFAULT, GRID_BOLD), "%s p50/p95/p99",
            which ? "wait" : "run ");
    else
      piece(&seg, style(GRID_DEFAULT, GRID_BOLD), "%s",
            which ? "wait" : "run ");
    /* Percentiles from histograms say how far they may be from exact. */
    if (f->width >= 100 && s->stats.pct_error > 0)
      piece(&seg, style(GRID_DEFAULT, GRID_DIM), " %s%.1f%%",
            plus_minus(grid_flags(f->g)), s->stats.pct_error);
    flow_put(f, &seg);
    for (int w = 0; w < DATA_WINDOWS; w++) {
      const int64_t *p = which ? s->stats.wait[w] : s->stats.run[w];
      char a[16], b[16], c[16];
      duration(p[0], a, sizeof a);
      duration(p[1], b, sizeof b);
      duration(p[2], c, sizeof c);
      memset(&seg, 0, sizeof seg);
      piece(&seg, style(GRID_DEFAULT, GRID_DIM), "%s ", spans[w]);
      piece(&seg, normal, "%s%s/%s/%s", p[0] == DATA_NULL ? "" : mark, a, b, c);
      flow_put(f, &seg);
    }
  }
  if (f->width < 100 && s->stats.pct_error > 0) {
    segment seg = {0};
    seg.optional = 1;
    piece(&seg, style(GRID_DEFAULT, GRID_DIM), "%s%.1f%%",
          plus_minus(grid_flags(f->g)), s->stats.pct_error);
    flow_put(f, &seg);
  }
}

/* Fills the header's rows (header_budget() of them): roomy screens get a
 * row per topic, small ones the most important segments first. */
static void draw_header(const view_state *s, grid *g) {
  flow f = {g, grid_width(g), header_budget(grid_height(g)), 0, 0, 0, 0};
  f.roomy = f.budget >= 5 && f.width >= 80;
  if (f.budget == 0)
    return;
  if (f.roomy) {
    header_title(s, &f);
    header_last_event(s, &f);
    header_agents(s, &f);
    header_db(s, &f);
    header_counts(s, &f);
  } else {
    header_last_event(s, &f);
    header_counts(s, &f);
    header_agents(s, &f);
  }
  header_rates(s, &f);
  header_percentiles(s, &f);
}

/* ---- columns -------------------------------------------------------- */

typedef struct column {
  const char *title;
  int width;    /* minimum */
  int flex;     /* share of the spare columns */
  int priority; /* 0 is kept longest */
  int right;    /* right-aligned */
} column;

#define COLUMNS_MAX 12

typedef struct layout {
  int x[COLUMNS_MAX], w[COLUMNS_MAX]; /* w 0: dropped */
} layout;

/* Keeps the most important columns that fit in width (one blank between
 * columns) and shares what is left among the flexible ones. */
static layout lay_out(const column *c, int n, int width) {
  layout l;
  int keep[COLUMNS_MAX];
  for (int i = 0; i < n; i++)
    keep[i] = 1;
  for (;;) {
    int used = -1, worst = -1;
    for (int i = 0; i < n; i++)
      if (keep[i]) {
        used += c[i].width + 1;
        if (worst < 0 || c[i].priority >= c[worst].priority)
          worst = i;
      }
    if (used <= width || worst < 0 || c[worst].priority == 0)
      break;
    keep[worst] = 0;
  }
  int used = -1, flex = 0;
  for (int i = 0; i < n; i++)
    if (keep[i]) {
      used += c[i].width + 1;
      flex += c[i].flex;
    }
  int spare = width > used ? width - used : 0, x = 0;
  for (int i = 0; i < n; i++) {
    l.w[i] = 0;
    l.x[i] = x;
    if (!keep[i])
      continue;
    int extra = 0;
    if (c[i].flex && flex) {
      extra = spare * c[i].flex / flex;
      flex -= c[i].flex;
      spare -= extra;
    }
    l.w[i] = c[i].width + extra;
    x += l.w[i] + 1;
  }
  return l;
}

static void cell_text(grid *g, const layout *l, const column *c, int i, int y,
                      grid_style st, const char *text, size_t len) {
  if (l->w[i] <= 0)
    return;
  if (c[i].right) {
    char buf[256];
    sanitize(text, len, l->w[i], grid_flags(g) | SANITIZE_ELLIPSIS, buf,
             sizeof buf);
    grid_puts_right(g, l->x[i] + l->w[i], y, l->w[i], st, buf);
  } else {
    grid_put(g, l->x[i], y, l->w[i], st, text, len);
  }
}

static void cell_str(grid *g, const layout *l, const column *c, int i, int y,
                     grid_style st, const char *text) {
  cell_text(g, l, c, i, y, st, text, strlen(text));
}

static void cell_data(grid *g, const layout *l, const column *c, int i, int y,
                      grid_style st, data_text t) {
  if (t.ptr)
    cell_text(g, l, c, i, y, st, t.ptr, t.len);
  else
    cell_str(g, l, c, i, y, style(GRID_DEFAULT, GRID_DIM), "-");
}

static void draw_titles(grid *g, const layout *l, const column *c, int n, int y,
                        int sorted, int desc) {
  grid_fill(g, 0, y, grid_width(g), style(GRID_DEFAULT, GRID_REVERSE));
  for (int i = 0; i < n; i++) {
    char t[64];
    snprintf(t, sizeof t, "%s%s", c[i].title,
             i == sorted ? (desc ? "v" : "^") : "");
    cell_str(g, l, c, i, y, style(GRID_DEFAULT, GRID_REVERSE | GRID_BOLD), t);
  }
}

/* ---- tasks ---------------------------------------------------------- */

enum {
  TC_TIME,
  TC_STATUS,
  TC_NAME,
  TC_RUN,
  TC_WAIT,
  TC_LABEL,
  TC_SERVICE,
  TC_ERROR,
  TC_COUNT
};
static const column task_columns[TC_COUNT] = {
    [TC_TIME] = {"TIME", 8, 0, 2, 0},
    [TC_STATUS] = {"STATUS", 9, 0, 0, 0},
    [TC_NAME] = {"NAME", 12, 2, 0, 0},
    [TC_RUN] = {"RUN", 7, 0, 1, 1},
    [TC_WAIT] = {"WAIT", 7, 0, 4, 1},
    [TC_LABEL] = {"REQUEST", 12, 2, 5, 0},
    [TC_SERVICE] = {"SERVICE", 8, 1, 6, 0},
    [TC_ERROR] = {"ERROR", 12, 3, 3, 0},
};

/* The run time; for a running task, how long it has run so far. */
static void run_text(const view_state *s, const data_task *t, char *buf,
                     size_t size) {
  if (t->status == SCHEMA_RUNNING && t->started_at != DATA_NULL)
    duration(s->now_us - t->started_at, buf, size);
  else
    duration(t->run_us, buf, size);
}

static void error_text(const data_task *t, char *buf, size_t size) {
  buf[0] = '\0';
  if (t->error_type.ptr && t->error_message.ptr)
    snprintf(buf, size, "%s: %s", t->error_type.ptr, t->error_message.ptr);
  else if (t->error_type.ptr)
    snprintf(buf, size, "%s", t->error_type.ptr);
  else if (t->error_message.ptr)
    snprintf(buf, size, "%s", t->error_message.ptr);
}

static void draw_task_row(const view_state *s, grid *g, const layout *l, int y,
                          const data_task *t) {
  const column *c = task_columns;
  char buf[512];
  grid_style dim = style(GRID_DEFAULT, GRID_DIM);
  clock_time(t->enqueued_at, buf, sizeof buf);
  cell_str(g, l, c, TC_TIME, y, dim, buf);
  cell_str(g, l, c, TC_STATUS, y, status_style(t->status),
           status_word(t->status));
  cell_data(g, l, c, TC_NAME, y, normal, t->name);
  run_text(s, t, buf, sizeof buf);
  cell_str(g, l, c, TC_RUN, y,
           t->status == SCHEMA_RUNNING ? style(GRID_CYAN, 0) : normal, buf);
  duration(t->wait_us, buf, sizeof buf);
  cell_str(g, l, c, TC_WAIT, y, normal, buf);
  cell_data(g, l, c, TC_LABEL, y, dim, t->label);
  cell_data(g, l, c, TC_SERVICE, y, normal, t->service);
  /* Error text goes through the sanitizer like everything else; it is
   * joined here with a plain snprintf only to add ": ". NUL bytes inside
   * the stored strings end the text early, which is safe. */
  error_text(t, buf, sizeof buf);
  if (t->status == SCHEMA_SKIPPED && t->skipped_after != DATA_NULL)
    snprintf(buf, sizeof buf, "skipped after a failure");
  else if ((t->status == SCHEMA_DROPPED || t->status == SCHEMA_LOST) &&
           t->drop_reason.ptr)
    snprintf(buf, sizeof buf, "%s", t->drop_reason.ptr);
  cell_str(g, l, c, TC_ERROR, y, style(GRID_RED, 0), buf);
}

/* What an empty list says: which window, and what would widen it. */
static void draw_empty(const view_state *s, grid *g, int y, const char *what) {
  char w[32], text[160];
  const char *filtered =
      s->filter_text[0] || s->failures_only ? " matches the filter" : "";
  window_words(s, w, sizeof w);
  if (view_since(s) == INT64_MIN)
    snprintf(text, sizeof text, "no %s%s", what,
             filtered[0] ? filtered : " yet");
  else
    snprintf(text, sizeof text, "no %s%s in the %s (w: a wider window)", what,
             filtered, w);
  grid_puts(g, 1, y, -1, style(GRID_DEFAULT, GRID_DIM), text);
}

/* The tasks view's column of each order (enum data_by). */
static const int task_order_column[] = {TC_TIME, TC_RUN, TC_WAIT, TC_STATUS};

static void draw_tasks(const view_state *s, grid *g, int top, int rows) {
  layout l = lay_out(task_columns, TC_COUNT, grid_width(g));
  data_scope sc = view_scope(s);
  draw_titles(g, &l, task_columns, TC_COUNT, top, task_order_column[sc.by],
              sc.desc);
  for (int i = 0; i < s->ntasks && i < rows; i++)
    draw_task_row(s, g, &l, top + 1 + i, &s->tasks[i]);
  if (s->ntasks == 0 && rows > 0)
    draw_empty(s, g, top + 1, "task");
  if (s->cursor >= 0 && s->cursor < s->ntasks && s->cursor < rows)
    grid_highlight_row(g, top + 1 + s->cursor, GRID_REVERSE);
}

/* ---- batches -------------------------------------------------------- */

enum { BC_POS, BC_NAME, BC_STATUS, BC_RUN, BC_NOTE, BC_COUNT };
static const column batch_columns[BC_COUNT] = {
    [BC_POS] = {"#", 2, 0, 0, 1},         [BC_NAME] = {"NAME", 12, 1, 0, 0},
    [BC_STATUS] = {"STATUS", 9, 0, 0, 0}, [BC_RUN] = {"RUN", 7, 0, 2, 1},
    [BC_NOTE] = {"ERROR", 12, 2, 1, 0},
};

int view_batch_lines(const data_batch *b) {
  return 1 + b->ntasks;
}

/* Finds the batch and task (-1: the heading) on list line `line`. */
static int batch_line(const view_state *s, int line, int *batch, int *task) {
  for (int i = 0; i < s->nbatches; i++) {
    int n = view_batch_lines(&s->batches[i]);
    if (line < n) {
      *batch = i;
      *task = line - 1;
      return 1;
    }
    line -= n;
  }
  return 0;
}

static const data_task *failed_task(const data_batch *b) {
  for (int i = 0; i < b->ntasks; i++)
    if (b->tasks[i].status == SCHEMA_FAILED)
      return &b->tasks[i];
  return NULL;
}

/* The worst state of a batch's tasks (schema_status_severity()). */
static int worst_status(const data_batch *b) {
  int worst = SCHEMA_SUCCEEDED;
  for (int i = 0; i < b->ntasks; i++)
    if (schema_status_severity(b->tasks[i].status) >
        schema_status_severity(worst))
      worst = b->tasks[i].status;
  return worst;
}

/* The batch's value in the list's order, as the heading shows it. */
static void batch_value_text(const view_state *s, const data_batch *b,
                             char *buf, size_t size) {
  data_scope sc = view_scope(s);
  char d[32];
  buf[0] = '\0';
  if (b->value == DATA_NULL || (sc.by != DATA_BY_RUN && sc.by != DATA_BY_WAIT))
    return;
  duration(b->value < 0 ? DATA_NULL : b->value, d, sizeof d);
  snprintf(buf, size, "  %s %s", sc.by == DATA_BY_RUN ? "run" : "longest wait",
           d);
}

static void draw_batch_heading(const view_state *s, grid *g, int y,
                               const data_batch *b) {
  char buf[64];
  int x = 0, w = grid_width(g);
  clock_time(b->created_at, buf, sizeof buf);
  x += grid_puts(g, x, y, w - x, style(GRID_DEFAULT, GRID_DIM), buf);
  x += grid_puts(g, x, y, w - x, normal, " ");
  if (b->label.ptr)
    x += grid_put(g, x, y, w - x, style(GRID_DEFAULT, GRID_BOLD), b->label.ptr,
                  b->label.len);
  else
    x +=
        grid_puts(g, x, y, w - x, style(GRID_DEFAULT, GRID_BOLD), "(no label)");
  int worst = worst_status(b);
  if (worst != SCHEMA_SUCCEEDED && worst != SCHEMA_RUNNING &&
      worst != SCHEMA_QUEUED) {
    char badge[16];
    const char *word = status_word(worst);
    for (size_t i = 0; word[i] && i + 1 < sizeof badge; i++)
      badge[i] = (char)(word[i] - 'a' + 'A'), badge[i + 1] = '\0';
    x += grid_puts(g, x, y, w - x, normal, "  ");
    x += grid_puts(g, x, y, w - x,
                   style(status_style(worst).fg, GRID_BOLD | GRID_REVERSE),
                   badge);
  }
  batch_value_text(s, b, buf, sizeof buf);
  if (buf[0])
    x += grid_puts(g, x, y, w - x, style(GRID_DEFAULT, GRID_BOLD), buf);
  if (b->service.ptr) {
    x += grid_puts(g, x, y, w - x, normal, "  ");
    x += grid_put(g, x, y, w - x, style(GRID_DEFAULT, GRID_DIM), b->service.ptr,
                  b->service.len);
  }
  snprintf(buf, sizeof buf, "  batch %lld", (long long)b->id);
  grid_puts(g, x, y, w - x, style(GRID_DEFAULT, GRID_DIM), buf);
}

static void draw_batch_task(const view_state *s, grid *g, const layout *l,
                            int y, const data_batch *b, const data_task *t) {
  const column *c = batch_columns;
  char buf[512];
  int failed = t->status == SCHEMA_FAILED,
      skipped = t->status == SCHEMA_SKIPPED;
  grid_style st = failed    ? style(GRID_RED, GRID_BOLD)
                  : skipped ? style(GRID_YELLOW, GRID_DIM)
                            : normal;
  snprintf(buf, sizeof buf, "%d", t->position);
  cell_str(g, l, c, BC_POS, y, st, buf);
  cell_data(g, l, c, BC_NAME, y, st, t->name);
  cell_str(g, l, c, BC_STATUS, y, status_style(t->status),
           status_word(t->status));
  run_text(s, t, buf, sizeof buf);
  cell_str(g, l, c, BC_RUN, y, st, buf);
  error_text(t, buf, sizeof buf);
  if (skipped) {
    const data_task *f = failed_task(b);
    if (f && f->name.ptr)
      snprintf(buf, sizeof buf, "skipped: %s failed", f->name.ptr);
    else
      snprintf(buf, sizeof buf, "skipped after a failure");
  }
  cell_str(g, l, c, BC_NOTE, y, failed ? style(GRID_RED, 0) : st, buf);
}

static void draw_batches(const view_state *s, grid *g, int top, int rows) {
  int w = grid_width(g);
  layout l = lay_out(batch_columns, BC_COUNT, w - 2);
  for (int i = 0; i < BC_COUNT; i++)
    l.x[i] += 2;
  grid_fill(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE));
  /* Per order (enum data_by): what it is, its two directions. */
  static const char *const orders[][3] = {
      {"time", "newest first", "oldest first"},
      {"total run time", "longest first", "shortest first"},
      {"longest wait", "longest first", "shortest first"},
      {"state", "worst first", "best first"}};
  data_scope sc = view_scope(s);
  char title[160];
  /* An order found among the batches of the slowest tasks says so. */
  snprintf(title, sizeof title, "REQUEST / TASKS IN ORDER   by %s, %s%s",
           orders[sc.by][0], orders[sc.by][sc.desc ? 1 : 2],
           s->nbatches > 0 && s->batches[0].estimated
               ? " ~ among the batches of the slowest tasks"
               : "");
  grid_puts(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE | GRID_BOLD), title);
  int y = top + 1;
  for (int i = 0; i < s->nbatches && y < top + 1 + rows; i++) {
    const data_batch *b = &s->batches[i];
    draw_batch_heading(s, g, y++, b);
    for (int k = 0; k < b->ntasks && y < top + 1 + rows; k++)
      draw_batch_task(s, g, &l, y++, b, &b->tasks[k]);
  }
  if (s->nbatches == 0 && rows > 0)
    draw_empty(s, g, top + 1, "batch");
  if (s->cursor >= 0 && s->cursor < rows && s->cursor < y - top - 1)
    grid_highlight_row(g, top + 1 + s->cursor, GRID_REVERSE);
}

const data_task *view_selected_task(const view_state *s) {
  if (s->kind == VIEW_TASKS)
    return s->cursor >= 0 && s->cursor < s->ntasks ? &s->tasks[s->cursor]
                                                   : NULL;
  if (s->kind == VIEW_BATCHES) {
    int b, t;
    if (!batch_line(s, s->cursor, &b, &t) || s->batches[b].ntasks == 0)
      return NULL;
    return &s->batches[b].tasks[t < 0 ? 0 : t];
  }
  return NULL;
}

/* ---- names ---------------------------------------------------------- */

enum {
  NC_NAME,
  NC_COUNT,
  NC_FAIL,
  NC_SKIP,
  NC_RUN50,
  NC_RUN95,
  NC_RUN99,
  NC_WAIT50,
  NC_WAIT95,
  NC_WAIT99,
  NC_N
};
static const column name_columns[NC_N] = {
    [NC_NAME] = {"NAME", 12, 1, 0, 0},    [NC_COUNT] = {"COUNT", 7, 0, 0, 1},
    [NC_FAIL] = {"FAIL%", 6, 0, 1, 1},    [NC_SKIP] = {"SKIP%", 6, 0, 5, 1},
    [NC_RUN50] = {"RUN50", 7, 0, 3, 1},   [NC_RUN95] = {"RUN95", 7, 0, 2, 1},
    [NC_RUN99] = {"RUN99", 7, 0, 4, 1},   [NC_WAIT50] = {"WAIT50", 7, 0, 7, 1},
    [NC_WAIT95] = {"WAIT95", 7, 0, 6, 1}, [NC_WAIT99] = {"WAIT99", 7, 0, 8, 1},
};

static void percent(int64_t part, int64_t whole, char *buf, size_t size) {
  if (whole == 0)
    snprintf(buf, size, "-");
  else
    snprintf(buf, size, "%.1f", 100.0 * (double)part / (double)whole);
}

static void draw_names(const view_state *s, grid *g, int top, int rows) {
  const column *c = name_columns;
  layout l = lay_out(c, NC_N, grid_width(g));
  draw_titles(g, &l, c, NC_N, top, s->sort_column[VIEW_NAMES],
              s->sort_desc[VIEW_NAMES]);
  for (int i = 0; i + s->offset < s->nnames && i < rows; i++) {
    const data_name *n = &s->names[i + s->offset];
    int y = top + 1 + i;
    char buf[32];
    cell_data(g, &l, c, NC_NAME, y, normal, n->name);
    snprintf(buf, sizeof buf, "%s%lld", n->estimated ? "~" : "",
             (long long)n->count);
    cell_str(g, &l, c, NC_COUNT, y, normal, buf);
    percent(n->failed, n->count, buf, sizeof buf);
    cell_str(g, &l, c, NC_FAIL, y,
             n->failed ? style(GRID_RED, GRID_BOLD) : normal, buf);
    percent(n->skipped, n->count, buf, sizeof buf);
    cell_str(g, &l, c, NC_SKIP, y, n->skipped ? style(GRID_YELLOW, 0) : normal,
             buf);
    for (int k = 0; k < 3; k++) {
      duration(n->run[k], buf, sizeof buf);
      cell_str(g, &l, c, NC_RUN50 + k, y, normal, buf);
      duration(n->wait[k], buf, sizeof buf);
      cell_str(g, &l, c, NC_WAIT50 + k, y, normal, buf);
    }
  }
  if (s->nnames == 0 && rows > 0)
    draw_empty(s, g, top + 1, "task");
  int shown = s->nnames - s->offset < rows ? s->nnames - s->offset : rows;
  int estimated = 0;
  for (int i = 0; i < s->nnames; i++)
    estimated |= s->names[i].estimated;
  if (estimated && shown + 1 < rows) { /* a blank line, then the legend */
    char legend[128];
    snprintf(legend, sizeof legend,
             "~ estimated from a sample: the window holds over %d tasks",
             DATA_EXACT_MAX);
    grid_puts(g, 1, top + 2 + shown, -1, style(GRID_DEFAULT, GRID_DIM), legend);
  }
  if (s->cursor >= 0 && s->cursor + s->offset < s->nnames && s->cursor < rows)
    grid_highlight_row(g, top + 1 + s->cursor, GRID_REVERSE);
}

/* ---- agents --------------------------------------------------------- */

enum {
  AC_SERVICE,
  AC_HOST,
  AC_PID,
  AC_STATE,
  AC_SINCE,
  AC_EVENTS,
  AC_DROPPED,
  AC_DROPPED_TASKS,
  AC_DROPPED_BATCHES,
  AC_RECONNECTS,
  AC_LAST,
  AC_N
};
/* What an agent dropped goes last when the width runs out: at 80
 * columns PID, SINCE and RECONN make room for it. */
static const column agent_columns[AC_N] = {
    [AC_SERVICE] = {"SERVICE", 10, 1, 0, 0},
    [AC_HOST] = {"HOST", 8, 1, 5, 0},
    [AC_PID] = {"PID", 7, 0, 7, 1},
    [AC_STATE] = {"STATE", 9, 0, 0, 0},
    [AC_SINCE] = {"SINCE", 8, 0, 8, 0},
    [AC_EVENTS] = {"EVENTS", 9, 0, 4, 1},
    [AC_DROPPED] = {"DROPPED", 8, 0, 1, 1},
    [AC_DROPPED_TASKS] = {"DROP TASKS", 11, 0, 2, 1},
    [AC_DROPPED_BATCHES] = {"DROP BATCH", 11, 0, 3, 1},
    [AC_RECONNECTS] = {"RECONN", 6, 0, 9, 1},
    [AC_LAST] = {"LAST", 6, 0, 6, 1},
};

/* A count of what was dropped: red when there is any. */
static void cell_drops(grid *g, const layout *l, int i, int y, int64_t n) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)n);
  cell_str(g, l, agent_columns, i, y, n ? style(GRID_RED, GRID_BOLD) : normal,
           buf);
}

static void draw_agent_row(const view_state *s, grid *g, const layout *l, int y,
                           const data_agent *a) {
  const column *c = agent_columns;
  char buf[32];
  cell_data(g, l, c, AC_SERVICE, y, normal, a->service);
  cell_data(g, l, c, AC_HOST, y, normal, a->host);
  snprintf(buf, sizeof buf, "%lld", (long long)a->pid);
  cell_str(g, l, c, AC_PID, y, normal, buf);
  cell_str(g, l, c, AC_STATE, y,
           a->connected ? style(GRID_GREEN, 0)
           : a->ended   ? style(GRID_DEFAULT, GRID_DIM)
                        : style(GRID_YELLOW, 0),
           a->connected ? "connected"
           : a->ended   ? "ended"
                        : "gone");
  clock_time(a->connected ? a->connected_at : a->disconnected_at, buf,
             sizeof buf);
  cell_str(g, l, c, AC_SINCE, y, normal, buf);
  snprintf(buf, sizeof buf, "%lld", (long long)a->events);
  cell_str(g, l, c, AC_EVENTS, y, normal, buf);
  cell_drops(g, l, AC_DROPPED, y, a->dropped);
  cell_drops(g, l, AC_DROPPED_TASKS, y, a->dropped_tasks);
  cell_drops(g, l, AC_DROPPED_BATCHES, y, a->dropped_batches);
  snprintf(buf, sizeof buf, "%lld", (long long)a->reconnects);
  cell_str(g, l, c, AC_RECONNECTS, y, normal, buf);
  ago(s->now_us, a->last_event_at, buf, sizeof buf);
  cell_str(g, l, c, AC_LAST, y, normal, buf);
}

static void draw_agents(const view_state *s, grid *g, int top, int rows) {
  layout l = lay_out(agent_columns, AC_N, grid_width(g));
  draw_titles(g, &l, agent_columns, AC_N, top, s->sort_column[VIEW_AGENTS],
              s->sort_desc[VIEW_AGENTS]);
  for (int i = 0; i + s->offset < s->nagents && i < rows; i++)
    draw_agent_row(s, g, &l, top + 1 + i, &s->agents[i + s->offset]);
  if (s->nagents == 0 && rows > 0)
    grid_puts(g, 1, top + 1, -1, style(GRID_DEFAULT, GRID_DIM),
              "no agent has connected yet");
  if (s->cursor >= 0 && s->cursor + s->offset < s->nagents && s->cursor < rows)
    grid_highlight_row(g, top + 1 + s->cursor, GRID_REVERSE);
}

/* ---- sorting -------------------------------------------------------- */

int view_sort_columns(int kind) {
  /* Tasks and batches: the orders of enum data_by. */
  return kind == VIEW_NAMES ? NC_N : kind == VIEW_AGENTS ? AC_N : 4;
}

static int cmp_int(int64_t a, int64_t b) {
  return (a > b) - (a < b);
}

static int cmp_text(data_text a, data_text b) {
  size_t n = a.len < b.len ? a.len : b.len;
  int c = n ? memcmp(a.ptr ? a.ptr : "", b.ptr ? b.ptr : "", n) : 0;
  return c ? c : cmp_int((int64_t)a.len, (int64_t)b.len);
}

/* Compares ratios part/whole without division. */
static int cmp_ratio(int64_t pa, int64_t wa, int64_t pb, int64_t wb) {
  return cmp_int((int64_t)((double)pa * (double)wb),
                 (int64_t)((double)pb * (double)wa));
}

static int cmp_name(const void *x, const void *y, void *arg) {
  const data_name *a = x, *b = y;
  const int *how = arg;
  int c;
  switch (how[0]) {
  case NC_NAME:
    c = cmp_text(a->name, b->name);
    break;
  case NC_FAIL:
    c = cmp_ratio(a->failed, a->count, b->failed, b->count);
    break;
  case NC_SKIP:
    c = cmp_ratio(a->skipped, a->count, b->skipped, b->count);
    break;
  case NC_RUN50:
  case NC_RUN95:
  case NC_RUN99:
    c = cmp_int(a->run[how[0] - NC_RUN50], b->run[how[0] - NC_RUN50]);
    break;
  case NC_WAIT50:
  case NC_WAIT95:
  case NC_WAIT99:
    c = cmp_int(a->wait[how[0] - NC_WAIT50], b->wait[how[0] - NC_WAIT50]);
    break;
  default:
    c = cmp_int(a->count, b->count);
  }
  if (c == 0)
    c = -cmp_text(a->name, b->name) * (how[1] ? 1 : -1);
  return how[1] ? -c : c;
}

static int cmp_agent(const void *x, const void *y, void *arg) {
  const data_agent *a = x, *b = y;
  const int *how = arg;
  int c;
  switch (how[0]) {
  case AC_SERVICE:
    c = cmp_text(a->service, b->service);
    break;
  case AC_HOST:
    c = cmp_text(a->host, b->host);
    break;
  case AC_PID:
    c = cmp_int(a->pid, b->pid);
    break;
  case AC_STATE:
    c = cmp_int(a->connected * 2 - a->ended, b->connected * 2 - b->ended);
    break;
  case AC_SINCE:
    c = cmp_int(a->connected_at, b->connected_at);
    break;
  case AC_EVENTS:
    c = cmp_int(a->events, b->events);
    break;
  case AC_DROPPED:
    c = cmp_int(a->dropped, b->dropped);
    break;
  case AC_DROPPED_TASKS:
    c = cmp_int(a->dropped_tasks, b->dropped_tasks);
    break;
  case AC_DROPPED_BATCHES:
    c = cmp_int(a->dropped_batches, b->dropped_batches);
    break;
  case AC_RECONNECTS:
    c = cmp_int(a->reconnects, b->reconnects);
    break;
  default:
    c = cmp_int(a->last_event_at, b->last_event_at);
  }
  if (c == 0)
    c = cmp_int(a->id, b->id) * (how[1] ? -1 : 1);
  return how[1] ? -c : c;
}

void view_sort(view_state *s) {
  int how[2];
  how[0] = s->sort_column[VIEW_NAMES];
  how[1] = s->sort_desc[VIEW_NAMES];
  if (s->names && s->nnames > 1)
    qsort_r(s->names, (size_t)s->nnames, sizeof *s->names, cmp_name, how);
  how[0] = s->sort_column[VIEW_AGENTS];
  how[1] = s->sort_desc[VIEW_AGENTS];
  if (s->agents && s->nagents > 1 && how[0] >= 0)
    qsort_r(s->agents, (size_t)s->nagents, sizeof *s->agents, cmp_agent, how);
}

/* ---- detail pane ---------------------------------------------------- */

/* The input bytes of the longest prefix of p[0 .. len) that fits in cols
 * columns once sanitized (at least one character, so wrapping advances). */
static size_t wrap_take(const char *p, size_t len, int cols, unsigned flags) {
  size_t pos = 0;
  int used = 0, combining = -1;
  while (pos < len) {
    size_t before = pos;
    char buf[SANITIZE_CHAR_MAX];
    int w;
    sanitize_next(p, len, &pos, flags, &combining, buf, &w);
    if (used + w > cols && before > 0)
      return before;
    used += w;
  }
  return pos;
}

typedef struct detail_out {
  grid *g;
  int x, y, width, height, scroll;
  int line; /* lines produced so far */
} detail_out;

static void detail_emit(detail_out *o, const char *label, grid_style st,
                        const char *text, size_t len) {
  unsigned flags = o->g ? grid_flags(o->g) : 0;
  int label_w = label ? 14 : 2;
  int cols = o->width - label_w;
  if (cols < 1)
    cols = 1;
  size_t pos = 0;
  int first = 1;
  do {
    size_t n = wrap_take(text + pos, len - pos, cols, flags);
    int y = o->line - o->scroll;
    if (o->g && y >= 0 && y < o->height) {
      if (label && first)
        grid_puts(o->g, o->x, o->y + y, label_w - 1,
                  style(GRID_DEFAULT, GRID_BOLD), label);
      grid_put(o->g, o->x + label_w, o->y + y, cols, st, text + pos, n);
    }
    o->line++;
    pos += n;
    first = 0;
  } while (pos < len);
}

static void detail_int(detail_out *o, const char *label, int64_t v) {
  char buf[32];
  if (v == DATA_NULL)
    snprintf(buf, sizeof buf, "-");
  else
    snprintf(buf, sizeof buf, "%lld", (long long)v);
  detail_emit(o, label, normal, buf, strlen(buf));
}

static void detail_time(detail_out *o, const char *label, int64_t v) {
  char buf[FORMAT_TIME_SIZE];
  if (v == DATA_NULL || format_time_utc(v, buf, sizeof buf) < 0)
    snprintf(buf, sizeof buf, "-");
  detail_emit(o, label, normal, buf, strlen(buf));
}

static void detail_text(detail_out *o, const char *label, grid_style st,
                        data_text t) {
  if (t.ptr)
    detail_emit(o, label, st, t.ptr, t.len);
  else
    detail_emit(o, label, style(GRID_DEFAULT, GRID_DIM), "-", 1);
}

static void detail_lines(detail_out *o, const data_task *t) {
  char buf[64];
  detail_int(o, "id", t->id);
  detail_int(o, "batch", t->batch);
  detail_text(o, "request", normal, t->label);
  detail_int(o, "position", t->position);
  detail_text(o, "name", style(GRID_DEFAULT, GRID_BOLD), t->name);
  const char *mode = schema_mode_name(t->mode);
  detail_emit(o, "mode", normal, mode ? mode : "?", strlen(mode ? mode : "?"));
  const char *st = status_word(t->status);
  detail_emit(o, "status", status_style(t->status), st, strlen(st));
  detail_text(o, "service", normal, t->service);
  detail_text(o, "host", normal, t->host);
  detail_int(o, "pid", t->pid);
  detail_int(o, "thread", t->thread);
  detail_time(o, "enqueued", t->enqueued_at);
  detail_time(o, "started", t->started_at);
  detail_time(o, "finished", t->finished_at);
  duration(t->wait_us, buf, sizeof buf);
  detail_emit(o, "wait", normal, buf, strlen(buf));
  duration(t->run_us, buf, sizeof buf);
  detail_emit(o, "run", normal, buf, strlen(buf));
  detail_text(o, "error type", style(GRID_RED, GRID_BOLD), t->error_type);
  detail_text(o, "error", style(GRID_RED, 0), t->error_message);
  detail_int(o, "skipped after", t->skipped_after);
  detail_text(o, "drop reason", normal, t->drop_reason);
  if (t->error_detail.ptr == NULL)
    return;
  detail_emit(o, "error detail", normal, "", 0);
  const char *p = t->error_detail.ptr, *end = p + t->error_detail.len;
  /* One display line per stored line: the newlines are the only control
   * characters given their meaning; everything else is sanitized. */
  while (p <= end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *stop = nl ? nl : end;
    detail_emit(o, NULL, normal, p, (size_t)(stop - p));
    if (!nl)
      break;
    p = nl + 1;
  }
}

int view_detail_lines(const view_state *s, int width) {
  detail_out o = {NULL, 0, 0, width, 0, 0, 0};
  if (!s->detail_found)
    return 1;
  detail_lines(&o, &s->detail_task);
  return o.line;
}

static void draw_detail(const view_state *s, grid *g, int top, int rows) {
  int w = grid_width(g);
  char title[96];
  grid_fill(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE));
  snprintf(title, sizeof title, "task %lld  (Esc closes, j/k scroll)",
           (long long)s->detail_task.id);
  grid_puts(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE | GRID_BOLD),
            s->detail_found ? title : "task gone (Esc closes)");
  if (!s->detail_found)
    return;
  detail_out o = {g, 0, top + 1, w, rows, s->detail_scroll, 0};
  detail_lines(&o, &s->detail_task);
}

/* ---- help, tabs, footer --------------------------------------------- */

/* The legend of every sign the dashboard uses, after the keys. */
static const char *const legend[][2] = {
    {"", "The mouse wheel scrolls. Times are UTC."},
    {"", ""},
    {"Signs", ""},
    {"last 15m", "the window: counts, percentiles and lists cover it (w)"},
    {"now", "queued and running at this moment, whenever enqueued"},
    {"1m 15m", "p50/p95/p99 of run time and wait: last minute, the window"},
    {"~", "estimated from a sample (the window holds too many tasks)"},
    {"agents 2/3", "2 agents connected of the 3 the store knows"},
    {"dropped", "events agents dropped because their buffer was full"},
    {"12e 5t 2b", "12 events dropped; 5 tasks and 2 batches refused whole"},
    {"tasks/s", "tasks enqueued per second in the last 10 s (0 when idle)"},
    {"IDLE", "no event for 10 s; FINISHED: no agent is connected"},
    {"TIMEv RUN^", "the column a list is sorted by: largest, smallest first"},
    {"-", "no value: not started or finished, or none in the window"},
};
#define LEGEND_LINES ((int)(sizeof legend / sizeof legend[0]))

int view_help_lines(void) {
  return keys_help_count() + LEGEND_LINES;
}

static void draw_help(const view_state *s, grid *g, int top, int rows) {
  int w = grid_width(g);
  grid_fill(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE));
  grid_puts(g, 0, top, w, style(GRID_DEFAULT, GRID_REVERSE | GRID_BOLD),
            "keys  (? or Esc closes)");
  int n = keys_help_count(), cols = w >= 60 ? 26 : 14;
  for (int i = 0; i < rows; i++) {
    int k = i + s->help_scroll;
    char line[256];
    if (k >= view_help_lines())
      break;
    if (k < n) {
      keys_help_line(k, cols, line, sizeof line);
      grid_puts(g, 1, top + 1 + i, w - 1, normal, line);
      continue;
    }
    const char *const *l = legend[k - n];
    if (l[0][0] == '\0') {
      grid_puts(g, 1, top + 1 + i, w - 1, style(GRID_DEFAULT, GRID_DIM), l[1]);
      continue;
    }
    snprintf(line, sizeof line, "%-*s %s", w >= 60 ? 12 : 10, l[0], l[1]);
    grid_puts(g, 1, top + 1 + i, w - 1,
              l[1][0] ? normal : style(GRID_DEFAULT, GRID_BOLD), line);
  }
}

static void draw_tabs(const view_state *s, grid *g, int y) {
  int x = 0, w = grid_width(g);
  for (int i = 0; i < VIEW_COUNT && x < w; i++) {
    char t[32];
    snprintf(t, sizeof t, " %d %s ", i + 1, view_names[i]);
    x += grid_puts(g, x, y, w - x,
                   i == s->kind ? style(GRID_DEFAULT, GRID_REVERSE | GRID_BOLD)
                                : normal,
                   t);
  }
  char right[VIEW_TEXT_MAX + 64];
  snprintf(right, sizeof right, "%s%s%s%s", s->paused ? " PAUSED" : "",
           s->failures_only ? " failed/skipped/dropped/lost only" : "",
           s->filter_text[0] ? " filter: " : "", s->filter_text);
  if (right[0] && x + 2 < w)
    grid_puts(g, x + 1, y, w - x - 1, style(GRID_YELLOW, GRID_BOLD), right);
}

static void draw_footer(const view_state *s, grid *g, int y) {
  int w = grid_width(g);
  if (s->editing) {
    /* A rejected filter: the reason goes on the line above the prompt. */
    if (s->message[0] && y > 0) {
      grid_fill(g, 0, y - 1, w, normal);
      grid_puts(g, 0, y - 1, w, style(GRID_YELLOW, GRID_BOLD), s->message);
    }
    int x = grid_puts(g, 0, y, w, style(GRID_DEFAULT, GRID_BOLD), "filter: ");
    x += grid_puts(g, x, y, w - x - 1, normal, s->edit);
    grid_puts(g, x, y, w - x, style(GRID_DEFAULT, GRID_REVERSE), " ");
    return;
  }
  if (s->message[0]) {
    grid_puts(g, 0, y, w, style(GRID_YELLOW, GRID_BOLD), s->message);
    return;
  }
  grid_puts(g, 0, y, w, style(GRID_DEFAULT, GRID_DIM),
            "?:help  /:filter  f:problems  s:sort  w:window  Space:pause  "
            "Tab:view  q:quit");
}

int view_list_rows(const view_state *s, int width, int height) {
  (void)s;
  (void)width;
  int rows = height - header_budget(height) - 3;
  return rows > 0 ? rows : 0;
}

void view_render(const view_state *s, grid *g) {
  int h = grid_height(g);
  grid_clear(g);
  draw_header(s, g);
  int y = header_budget(h);
  if (y < h - 1)
    draw_tabs(s, g, y++);
  int rows = view_list_rows(s, grid_width(g), h);
  if (y < h - 1) {
    if (s->help)
      draw_help(s, g, y, rows);
    else if (s->detail)
      draw_detail(s, g, y, rows);
    else if (s->kind == VIEW_TASKS)
      draw_tasks(s, g, y, rows);
    else if (s->kind == VIEW_BATCHES)
      draw_batches(s, g, y, rows);
    else if (s->kind == VIEW_NAMES)
      draw_names(s, g, y, rows);
    else
      draw_agents(s, g, y, rows);
  }
  draw_footer(s, g, h - 1);
}
