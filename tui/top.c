/*
 * top - `taskwatch top`: argument parsing, the --once snapshot, and the
 * live loop. The loop wakes at least every 250 ms to check PRAGMA
 * data_version (one cheap query) and reloads only when the store changed,
 * or once a second so running tasks' durations advance; a key press
 * redraws at once. Drawing goes view -> grid -> tty, so the snapshot and
 * the tests see exactly the cells the terminal gets.
 */
#include "top.h"

#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "ctl.h"
#include "format.h"
#include "grid.h"
#include "keys.h"
#include "sanitize.h"
#include "tty.h"
#include "view.h"

/* How often an unchanged store is read again anyway. */
#define RELOAD_IDLE_US INT64_C(10000000)

typedef struct options {
  const char *db;
  const char *filter;
  int view;
  int window; /* enum view_window */
  int sort;   /* enum data_by, for the tasks and batches views */
  int once;
  int color; /* 0 never, 1 always, 2 auto */
  int width, height;
} options;

static const char usage_text[] =
    "Usage: taskwatch top [--db PATH] [OPTION]...\n"
    "\n"
    "Live dashboard of the store at PATH (read-only): tasks, batches,\n"
    "names and agents. Press ? in the dashboard for its keys.\n"
    "\n"
    "Options:\n"
    "  --db PATH                  the collector's store (default\n"
    "                             $TASKWATCH_DB, else taskwatch.db)\n"
    "  --view VIEW                tasks (default), batches, names or agents\n"
    "  --filter TEXT              filter terms, as for taskwatch query\n"
    "  --window W                 5m, 15m (default), 1h, 24h or all: what\n"
    "                             the figures and lists cover (key w)\n"
    "  --sort ORDER               the tasks and batches views: time\n"
    "                             (default), run, wait or status, largest\n"
    "                             first (key s)\n"
    "  --color WHEN               auto (default), always or never; NO_COLOR\n"
    "                             in the environment turns auto off\n"
    "  --once                     print one plain-text snapshot and exit;\n"
    "                             the default when stdout is not a terminal\n"
    "  --size COLSxROWS           the snapshot's size (default: COLUMNS and\n"
    "                             LINES, else 80x24)\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Exit status: 0 when quit, 1 when the terminal or the store fails while\n"
    "running, 2 for a bad argument or a store that cannot be opened.\n";

static int64_t monotonic_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int parse_size(const char *text, int *w, int *h) {
  char *end;
  long a = strtol(text, &end, 10);
  if (end == text || (*end != 'x' && *end != 'X'))
    return -1;
  const char *rest = end + 1;
  long b = strtol(rest, &end, 10);
  if (end == rest || *end != '\0' || a < 1 || b < 1 || a > 1000 || b > 1000)
    return -1;
  *w = (int)a;
  *h = (int)b;
  return 0;
}

enum {
  OPT_DB = 256,
  OPT_FILTER,
  OPT_VIEW,
  OPT_WINDOW,
  OPT_SORT,
  OPT_COLOR,
  OPT_ONCE,
  OPT_SIZE
};

static const struct option long_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"filter", required_argument, NULL, OPT_FILTER},
    {"view", required_argument, NULL, OPT_VIEW},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"sort", required_argument, NULL, OPT_SORT},
    {"color", required_argument, NULL, OPT_COLOR},
    {"once", no_argument, NULL, OPT_ONCE},
    {"size", required_argument, NULL, OPT_SIZE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Applies one option; returns 0 or ARGS_USAGE. */
static int apply_option(const args *a, int c, options *o) {
  static const char *const colors[] = {"never", "always", "auto", NULL};
  /* In the order of enum data_by. */
  static const char *const sorts[] = {"time", "run", "wait", "status", NULL};
  switch (c) {
  case OPT_DB:
    o->db = a->value;
    return 0;
  case OPT_FILTER:
    o->filter = a->value;
    return 0;
  case OPT_VIEW:
    if ((o->view = view_kind_of(a->value)) < 0)
      return args_invalid(a, "one of tasks, batches, names, agents");
    return 0;
  case OPT_WINDOW:
    if ((o->window = view_window_of(a->value)) < 0)
      return args_invalid(a, "one of 5m, 15m, 1h, 24h, all");
    return 0;
  case OPT_SORT:
    return args_choice(a, sorts, &o->sort);
  case OPT_COLOR:
    return args_choice(a, colors, &o->color);
  case OPT_ONCE:
    o->once = 1;
    return 0;
  case OPT_SIZE:
    if (parse_size(a->value, &o->width, &o->height) != 0)
      return args_invalid(a, "COLSxROWS such as 80x24, each 1 to 1000");
    return 0;
  default:
    return ARGS_USAGE;
  }
}

/* Returns 0, 1 after --help, or 2 after a one-line complaint. */
static int parse_args(int argc, char **argv, options *o) {
  args a;
  args_init(&a, "top", argc, argv, "h", long_options);
  int c;
  while ((c = args_next(&a)) != -1) {
    if (c == ARGS_ERROR)
      return ARGS_USAGE;
    if (c == 'h') {
      fputs(usage_text, stdout);
      return 1;
    }
    if (apply_option(&a, c, o) != 0)
      return ARGS_USAGE;
  }
  if (args_no_operands(&a))
    return ARGS_USAGE;
  return 0;
}

/* A size from the environment (COLUMNS, LINES), or the fallback. */
static int env_size(const char *name, int fallback) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0')
    return fallback;
  char *end;
  long n = strtol(v, &end, 10);
  return *end == '\0' && n >= 1 && n <= 1000 ? (int)n : fallback;
}

static int snapshot(ctl *c, const options *o, unsigned flags) {
  int w = o->width ? o->width : env_size("COLUMNS", 80);
  int h = o->height ? o->height : env_size("LINES", 24);
  grid *g = grid_new(w, h, flags);
  ctl_resize(c, w, h);
  int rc = ctl_load(c, format_now_us());
  view_render(ctl_state(c), g);
  char *text = grid_text(g);
  fputs(text, stdout);
  free(text);
  grid_free(g);
  return rc == 0 ? 0 : 1;
}

/* Handles one input; returns 1 to quit. */
static int handle_input(ctl *c, int key, const char *text) {
  view_state *s = ctl_state(c);
  int64_t now = format_now_us();
  if (key == TTY_WHEEL_UP || key == TTY_WHEEL_DOWN) {
    int act = key == TTY_WHEEL_UP ? ACT_UP : ACT_DOWN;
    for (int i = 0; i < 3; i++)
      ctl_action(c, act, now);
    return 0;
  }
  if (s->editing) {
    ctl_prompt_key(c, key, text, now);
    return 0;
  }
  return ctl_action(c, keys_action(key), now);
}

/* Set by SIGINT, SIGTERM or SIGHUP: the loop ends and curses restores the
 * terminal, instead of the process dying in raw mode. */
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) {
  stop_signal = sig;
}

static void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
}

static int live(ctl *c, int color, unsigned flags) {
  if (tty_open(color) != 0) {
    const char *term = getenv("TERM");
    fprintf(stderr,
            "taskwatch top: cannot use terminal type '%s' (--once prints a "
            "snapshot instead)\n",
            term ? term : "");
    return 1;
  }
  int w, h, quit = 0;
  tty_size(&w, &h);
  grid *g = grid_new(w, h, flags);
  ctl_resize(c, w, h);
  ctl_load(c, format_now_us());
  int64_t last_load = monotonic_us(), last_tick = last_load, load_us = 0;
  int dirty = 1;
  catch_stop_signals();
  while (!quit && !stop_signal) {
    if (dirty) {
      view_render(ctl_state(c), g);
      tty_draw(g);
      dirty = 0;
    }
    char text[16];
    int key = tty_read(250, text, sizeof text);
    if (key == TTY_RESIZE) {
      tty_size(&w, &h);
      grid_free(g);
      g = grid_new(w, h, flags);
      ctl_resize(c, w, h);
      ctl_load(c, format_now_us());
      last_load = monotonic_us();
      dirty = 1;
    } else if (key != TTY_NONE) {
      quit = handle_input(c, key, text);
      dirty = 1;
    }
    /* Reload when the store changed, at most four times a second, and
     * never spending more than a quarter of the time loading (a list
     * sorted by run time over a large window reads every task of it). An
     * unchanged store costs no query: once a second only the clock moves
     * (running durations, "ago"), and every RELOAD_IDLE_US the windows
     * of the header are recomputed as they slide. */
    int64_t mono = monotonic_us();
    int64_t gap = 4 * load_us > 250000 ? 4 * load_us : 250000;
    if ((ctl_store_changed(c) && mono - last_load >= gap) ||
        mono - last_load >= RELOAD_IDLE_US) {
      ctl_load(c, format_now_us());
      last_load = last_tick = mono;
      load_us = monotonic_us() - mono;
      dirty = 1;
    } else if (mono - last_tick >= 1000000) {
      ctl_state(c)->now_us = format_now_us();
      last_tick = mono;
      dirty = 1;
    }
  }
  grid_free(g);
  tty_close();
  return stop_signal ? 128 + stop_signal : 0;
}

int top_main(int argc, char **argv) {
  options o = {0};
  o.color = 2;
  o.view = VIEW_TASKS;
  o.window = VIEW_WINDOW_DEFAULT;
  o.sort = DATA_BY_TIME;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc == 1 ? 0 : 2;
  setlocale(LC_ALL, "");
  unsigned flags = sanitize_locale_is_utf8() ? 0 : SANITIZE_ASCII;
  char err[256];
  data *d = NULL;
  int defaulted = o.db == NULL;
  if (defaulted)
    o.db = schema_default_db();
  rc = data_open(o.db, &d, err, sizeof err);
  if (rc != 0) {
    /* A missing or unreadable store is a bad argument, as for query. */
    fprintf(stderr, "taskwatch top: %s%s\n", err,
            defaulted && rc == READER_EMISSING ? READER_DEFAULT_MISSING_HINT
                                               : "");
    return 2;
  }
  ctl *c = ctl_new(d, o.db);
  view_state *s = ctl_state(c);
  s->kind = o.view;
  s->window = o.window;
  s->sort_column[VIEW_TASKS] = s->sort_column[VIEW_BATCHES] = o.sort;
  if (ctl_set_filter(c, o.filter ? o.filter : "", err, sizeof err) != 0) {
    fprintf(stderr, "taskwatch top: bad --filter: %s\n", err);
    ctl_free(c);
    return 2;
  }
  if (o.once || !isatty(STDOUT_FILENO)) {
    rc = snapshot(c, &o, flags);
  } else {
    const char *no_color = getenv("NO_COLOR");
    int color = o.color == 1 ||
                (o.color == 2 && (no_color == NULL || no_color[0] == '\0'));
    rc = live(c, color, flags);
  }
  ctl_free(c);
  return rc;
}
