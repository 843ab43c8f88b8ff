/*
 * tty - grid to ncursesw, keys and wheel from it (see tty.h).
 */
#include "tty.h"

#include <curses.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static int colors_on;
static SCREEN *screen;

int tty_open(int color_wanted) {
  /* A short ESCDELAY keeps Esc responsive; function keys still parse. */
  if (getenv("ESCDELAY") == NULL)
    set_escdelay(25);
  /* newterm, unlike initscr, returns an error for an unknown terminal
   * type instead of exiting the process. */
  screen = newterm(NULL, stdout, stdin);
  if (screen == NULL)
    return -1;
  set_term(screen);
  cbreak();
  noecho();
  nonl();
  keypad(stdscr, TRUE);
  curs_set(0);
  mousemask(BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
  mouseinterval(0);
  colors_on = 0;
  if (color_wanted && has_colors() && start_color() == OK) {
    static const short map[GRID_COLOR_COUNT] = {
        -1,         COLOR_RED,     COLOR_GREEN, COLOR_YELLOW,
        COLOR_BLUE, COLOR_MAGENTA, COLOR_CYAN};
    use_default_colors();
    for (short i = 1; i < GRID_COLOR_COUNT; i++)
      init_pair(i, map[i], -1);
    colors_on = 1;
  }
  return 0;
}

void tty_close(void) {
  endwin();
}

void tty_size(int *width, int *height) {
  getmaxyx(stdscr, *height, *width);
}

static attr_t attributes(grid_style st) {
  attr_t a = A_NORMAL;
  if (st.attr & GRID_BOLD)
    a |= A_BOLD;
  if (st.attr & GRID_REVERSE)
    a |= A_REVERSE;
  if (st.attr & GRID_DIM)
    a |= A_DIM;
  if (st.attr & GRID_UNDERLINE)
    a |= A_UNDERLINE;
  if (colors_on && st.fg != GRID_DEFAULT)
    a |= COLOR_PAIR(st.fg);
  return a;
}

void tty_draw(const grid *g) {
  int w, h;
  getmaxyx(stdscr, h, w);
  erase();
  for (int y = 0; y < grid_height(g) && y < h; y++) {
    for (int x = 0; x < grid_width(g) && x < w; x++) {
      const grid_cell *c = grid_at(g, x, y);
      if (c->width == 0 || (c->width == 2 && x + 1 >= w))
        continue;
      attrset(attributes(c->style));
      /* The cell text came out of the sanitizer: printable only. */
      mvaddstr(y, x, c->text);
    }
  }
  attrset(A_NORMAL);
  refresh();
}

int tty_read(int timeout_ms, char *text, size_t size) {
  wint_t ch;
  timeout(timeout_ms);
  int rc = get_wch(&ch);
  text[0] = '\0';
  if (rc == ERR)
    return TTY_NONE;
  if (rc == KEY_CODE_YES) {
    if (ch == KEY_MOUSE) {
      MEVENT ev;
      if (getmouse(&ev) == OK) {
        if (ev.bstate & BUTTON4_PRESSED)
          return TTY_WHEEL_UP;
        if (ev.bstate & BUTTON5_PRESSED)
          return TTY_WHEEL_DOWN;
      }
      return TTY_NONE;
    }
    return ch == KEY_RESIZE ? TTY_RESIZE : (int)ch;
  }
  mbstate_t mb;
  memset(&mb, 0, sizeof mb);
  char buf[MB_LEN_MAX];
  size_t n = wcrtomb(buf, (wchar_t)ch, &mb);
  if (n != (size_t)-1 && n < size) {
    memcpy(text, buf, n);
    text[n] = '\0';
  }
  return ch < 0x80 ? (int)ch : 0x80;
}
