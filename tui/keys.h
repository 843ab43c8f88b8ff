/*
 * keys - the one key table: every binding of the dashboard, the action it
 * triggers, and the help text. top.c dispatches through keys_action() and
 * the `?` screen is generated from the same table, so help cannot drift
 * from behaviour. Key codes are curses' (KEY_UP, KEY_F(1), ...).
 */
#ifndef TW_KEYS_H
#define TW_KEYS_H

#include <stddef.h>

enum key_action {
  ACT_NONE = 0,
  ACT_UP,
  ACT_DOWN,
  ACT_PAGE_UP,
  ACT_PAGE_DOWN,
  ACT_HALF_UP,
  ACT_HALF_DOWN,
  ACT_TOP,
  ACT_BOTTOM,
  ACT_DETAIL,
  ACT_CLOSE,
  ACT_FILTER,
  ACT_FAILURES,
  ACT_SORT,
  ACT_SORT_REVERSE,
  ACT_WINDOW,
  ACT_PAUSE,
  ACT_NEXT_VIEW,
  ACT_PREV_VIEW,
  ACT_VIEW_TASKS,
  ACT_VIEW_BATCHES,
  ACT_VIEW_NAMES,
  ACT_VIEW_AGENTS,
  ACT_HELP,
  ACT_QUIT,
  ACT_COUNT
};

/* The action bound to a curses key code, or ACT_NONE. */
int keys_action(int key);

/* Keys with a fixed meaning in the filter prompt. */
int keys_is_enter(int key);
int keys_is_backspace(int key);

/* Lines of the help screen. */
int keys_help_count(void);
/* Writes help line i ("j, Down, ...   move down one line") into buf,
 * the keys padded to key_cols columns. */
void keys_help_line(int i, int key_cols, char *buf, size_t size);

#endif /* TW_KEYS_H */
