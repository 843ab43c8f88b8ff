/*
 * view - the dashboard's state and its rendering into a grid. view_render()
 * is a pure function of a view_state: it reads nothing but the state (the
 * data was loaded before, "now" is a field), so the golden tests render a
 * fixture at fixed times without a terminal, and --once prints the same
 * cells as the live screen shows.
 */
#ifndef TW_VIEW_H
#define TW_VIEW_H

#include <stdint.h>

#include "data.h"
#include "grid.h"

enum view_kind {
  VIEW_TASKS,
  VIEW_BATCHES,
  VIEW_NAMES,
  VIEW_AGENTS,
  VIEW_COUNT
};

/* "tasks", "batches", "names", "agents". */
const char *view_name(int kind);
/* The kind for a name, or -1. */
int view_kind_of(const char *name);

#define VIEW_TEXT_MAX 256

/* The time windows `w` steps through: every figure and list covers the
 * tasks enqueued in the current one. */
enum view_window {
  VIEW_WINDOW_5M,
  VIEW_WINDOW_15M,
  VIEW_WINDOW_1H,
  VIEW_WINDOW_24H,
  VIEW_WINDOW_ALL,
  VIEW_WINDOW_COUNT
};
#define VIEW_WINDOW_DEFAULT VIEW_WINDOW_15M
/* "5m", "15m", "1h", "24h", "all". */
const char *view_window_name(int window);
/* The window for a name, or -1. */
int view_window_of(const char *name);

typedef struct view_state {
  int64_t now_us;
  const char *db_label; /* shown in the title */
  int color;            /* colours on (the grid always keeps them) */
  int kind;             /* enum view_kind */

  data_stats stats;
  int have_stats;

  /* The current view's rows (only the one for `kind` is loaded). */
  data_task *tasks;
  int ntasks;
  data_batch *batches;
  int nbatches;
  data_name *names;
  int nnames;
  data_agent *agents;
  int nagents;

  int cursor; /* selected line of the list, from its top */
  int offset; /* names and agents: the first row shown */
  /* Names and agents: the column sorted by; tasks and batches: the order
   * (enum data_by). */
  int sort_column[VIEW_COUNT], sort_desc[VIEW_COUNT];
  int window;    /* enum view_window */
  int following; /* the list shows its top rows and keeps up */
  int paused;
  int failures_only; /* only failed, skipped, dropped and lost tasks */
  char filter_text[VIEW_TEXT_MAX];

  /* The filter prompt, while it is being typed. */
  int editing;
  char edit[VIEW_TEXT_MAX];
  char message[VIEW_TEXT_MAX]; /* one-line notice (a filter error, ...) */

  int help;
  int help_scroll;
  int detail;
  data_task detail_task;
  int detail_found;
  int detail_scroll;
} view_state;

/* The start of the current window as of s->now_us (INT64_MIN: all). */
int64_t view_since(const view_state *s);
/* What the current tasks or batches list covers, in its order. */
data_scope view_scope(const view_state *s);

/* Rows of the list area (the lines data must be loaded for) on a screen of
 * the given size. */
int view_list_rows(const view_state *s, int width, int height);
/* Lines the batches view takes for batch i (its heading and tasks). */
int view_batch_lines(const data_batch *b);
/* Columns (names, agents) or orders (tasks, batches) a view sorts by. */
int view_sort_columns(int kind);

/* Sorts the names or agents rows by the view's sort column. */
void view_sort(view_state *s);

/* The task under the cursor in the tasks or batches view, or NULL. */
const data_task *view_selected_task(const view_state *s);

/* Draws everything into g (cleared first). */
void view_render(const view_state *s, grid *g);

/* Lines of the help screen: the keys, then the legend of the signs. */
int view_help_lines(void);

/* Lines of the detail pane at this width (for scrolling bounds). */
int view_detail_lines(const view_state *s, int width);

#endif /* TW_VIEW_H */
