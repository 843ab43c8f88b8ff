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
  int sort_column[VIEW_COUNT], sort_desc[VIEW_COUNT];
  int following; /* the list shows the newest tasks and keeps up */
  int paused;
  int failures_only;
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

/* Rows of the list area (the lines data must be loaded for) on a screen of
 * the given size. */
int view_list_rows(const view_state *s, int width, int height);
/* Lines the batches view takes for batch i (its heading and tasks). */
int view_batch_lines(const data_batch *b);
/* Columns the current view can sort by, for `s`. */
int view_sort_columns(int kind);

/* Sorts the names or agents rows by the view's sort column. */
void view_sort(view_state *s);

/* The task under the cursor in the tasks or batches view, or NULL. */
const data_task *view_selected_task(const view_state *s);

/* Draws everything into g (cleared first). */
void view_render(const view_state *s, grid *g);

/* Lines of the detail pane at this width (for scrolling bounds). */
int view_detail_lines(const view_state *s, int width);

#endif /* TW_VIEW_H */
