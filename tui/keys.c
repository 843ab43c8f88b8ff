/*
 * keys - the key table (see keys.h). Bindings are listed in help order,
 * grouped by action; htop's function keys are aliases of the same actions.
 */
#include "keys.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

typedef struct binding {
  int key;
  const char *label;
  int action;
} binding;

#define CTRL(c) ((c)&0x1f)

static const binding bindings[] = {
    {'k', "k", ACT_UP},
    {KEY_UP, "Up", ACT_UP},
    {'j', "j", ACT_DOWN},
    {KEY_DOWN, "Down", ACT_DOWN},
    {KEY_PPAGE, "PgUp", ACT_PAGE_UP},
    {CTRL('b'), "Ctrl-B", ACT_PAGE_UP},
    {KEY_NPAGE, "PgDn", ACT_PAGE_DOWN},
    {CTRL('f'), "Ctrl-F", ACT_PAGE_DOWN},
    {CTRL('u'), "Ctrl-U", ACT_HALF_UP},
    {CTRL('d'), "Ctrl-D", ACT_HALF_DOWN},
    {'g', "g", ACT_TOP},
    {KEY_HOME, "Home", ACT_TOP},
    {'G', "G", ACT_BOTTOM},
    {KEY_END, "End", ACT_BOTTOM},
    {'\n', "Enter", ACT_DETAIL},
    {'\r', NULL, ACT_DETAIL},
    {KEY_ENTER, NULL, ACT_DETAIL},
    {27, "Esc", ACT_CLOSE},
    {KEY_BACKSPACE, "Backspace", ACT_CLOSE},
    {'/', "/", ACT_FILTER},
    {KEY_F(3), "F3", ACT_FILTER},
    {KEY_F(4), "F4", ACT_FILTER},
    {'f', "f", ACT_FAILURES},
    {'s', "s", ACT_SORT},
    {KEY_F(6), "F6", ACT_SORT},
    {'S', "S", ACT_SORT_REVERSE},
    {'w', "w", ACT_WINDOW},
    {' ', "Space", ACT_PAUSE},
    {'\t', "Tab", ACT_NEXT_VIEW},
    {KEY_BTAB, "Shift-Tab", ACT_PREV_VIEW},
    {'1', "1", ACT_VIEW_TASKS},
    {'2', "2", ACT_VIEW_BATCHES},
    {KEY_F(5), "F5", ACT_VIEW_BATCHES},
    {'3', "3", ACT_VIEW_NAMES},
    {'4', "4", ACT_VIEW_AGENTS},
    {'?', "?", ACT_HELP},
    {'h', "h", ACT_HELP},
    {KEY_F(1), "F1", ACT_HELP},
    {'q', "q", ACT_QUIT},
    {KEY_F(10), "F10", ACT_QUIT},
};
#define NBINDINGS (sizeof bindings / sizeof bindings[0])

static const char *const help_text[ACT_COUNT] = {
    [ACT_UP] = "move up one line",
    [ACT_DOWN] = "move down one line",
    [ACT_PAGE_UP] = "up one page",
    [ACT_PAGE_DOWN] = "down one page",
    [ACT_HALF_UP] = "up half a page",
    [ACT_HALF_DOWN] = "down half a page",
    [ACT_TOP] = "top of the list (newest; follows new tasks)",
    [ACT_BOTTOM] = "bottom of the list (oldest)",
    [ACT_DETAIL] = "the task whole; on a name or agent, its tasks",
    [ACT_CLOSE] = "close help, detail or prompt",
    [ACT_FILTER] = "filter, as taskwatch query",
    [ACT_FAILURES] = "only failed, skipped, dropped, lost (on/off)",
    [ACT_SORT] = "sort: next column (time, run, wait, state)",
    [ACT_SORT_REVERSE] = "reverse the sort",
    [ACT_WINDOW] = "time window: 5m, 15m, 1h, 24h, all",
    [ACT_PAUSE] = "pause (stop following)",
    [ACT_NEXT_VIEW] = "next view",
    [ACT_PREV_VIEW] = "previous view",
    [ACT_VIEW_TASKS] = "tasks view",
    [ACT_VIEW_BATCHES] = "batches view",
    [ACT_VIEW_NAMES] = "names view",
    [ACT_VIEW_AGENTS] = "agents view",
    [ACT_HELP] = "this help",
    [ACT_QUIT] = "quit",
};

int keys_action(int key) {
  for (size_t i = 0; i < NBINDINGS; i++)
    if (bindings[i].key == key)
      return bindings[i].action;
  return ACT_NONE;
}

int keys_is_enter(int key) {
  return key == '\n' || key == '\r' || key == KEY_ENTER;
}

int keys_is_backspace(int key) {
  return key == KEY_BACKSPACE || key == 127 || key == 8;
}

int keys_help_count(void) {
  return ACT_COUNT - 1;
}

void keys_help_line(int i, int key_cols, char *buf, size_t size) {
  int action = i + 1;
  char keys[128] = "";
  size_t used = 0;
  for (size_t b = 0; b < NBINDINGS; b++) {
    if (bindings[b].action != action || bindings[b].label == NULL)
      continue;
    int n = snprintf(keys + used, sizeof keys - used, "%s%s", used ? ", " : "",
                     bindings[b].label);
    if (n < 0 || (size_t)n >= sizeof keys - used)
      break;
    used += (size_t)n;
  }
  snprintf(buf, size, "%-*s %s", key_cols, keys,
           help_text[action] ? help_text[action] : "");
}
