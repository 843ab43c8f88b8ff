/*
 * grid - cells of sanitized text with styles (see grid.h). Wide characters
 * take two cells, the second marked with width 0; writing over either half
 * blanks the other, so a grid never holds half a character.
 */
#include "grid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sanitize.h"
#include "xalloc.h"

struct grid {
  int width, height;
  unsigned flags;
  grid_cell *cells;
};

static const grid_style plain = {GRID_DEFAULT, 0};

grid *grid_new(int width, int height, unsigned sanitize_flags) {
  grid *g = xcalloc(1, sizeof *g);
  g->width = width < 1 ? 1 : width;
  g->height = height < 1 ? 1 : height;
  g->flags = sanitize_flags & SANITIZE_ASCII;
  g->cells = xcalloc((size_t)g->width * (size_t)g->height, sizeof *g->cells);
  grid_clear(g);
  return g;
}

void grid_free(grid *g) {
  if (g == NULL)
    return;
  free(g->cells);
  free(g);
}

int grid_width(const grid *g) {
  return g->width;
}
int grid_height(const grid *g) {
  return g->height;
}
unsigned grid_flags(const grid *g) {
  return g->flags;
}

static grid_cell *cell(grid *g, int x, int y) {
  return &g->cells[(size_t)y * (size_t)g->width + (size_t)x];
}

static void blank(grid_cell *c, grid_style style) {
  c->text[0] = ' ';
  c->text[1] = '\0';
  c->width = 1;
  c->style = style;
}

void grid_clear(grid *g) {
  for (int y = 0; y < g->height; y++)
    for (int x = 0; x < g->width; x++)
      blank(cell(g, x, y), plain);
}

const grid_cell *grid_at(const grid *g, int x, int y) {
  if (x < 0 || y < 0 || x >= g->width || y >= g->height)
    return NULL;
  return &g->cells[(size_t)y * (size_t)g->width + (size_t)x];
}

/* Frees cell (x, y) of any wide character it is part of. */
static void unshare(grid *g, int x, int y) {
  grid_cell *c = cell(g, x, y);
  if (c->width == 0 && x > 0)
    blank(cell(g, x - 1, y), cell(g, x - 1, y)->style);
  else if (c->width == 2 && x + 1 < g->width)
    blank(cell(g, x + 1, y), cell(g, x + 1, y)->style);
}

static void set_char(grid *g, int x, int y, const char *s, size_t n, int w,
                     grid_style style) {
  unshare(g, x, y);
  if (w == 2)
    unshare(g, x + 1, y);
  grid_cell *c = cell(g, x, y);
  memcpy(c->text, s, n);
  c->text[n] = '\0';
  c->width = (uint8_t)w;
  c->style = style;
  if (w == 2) {
    grid_cell *r = cell(g, x + 1, y);
    r->text[0] = '\0';
    r->width = 0;
    r->style = style;
  }
}

/* Adds a combining mark to the character left of column x, if any. */
static void add_mark(grid *g, int x, int y, const char *s, size_t n) {
  int at = x - 1;
  if (at < 0)
    return;
  if (cell(g, at, y)->width == 0 && at > 0)
    at--;
  grid_cell *c = cell(g, at, y);
  size_t used = strlen(c->text);
  if (used + n < GRID_CELL_BYTES) {
    memcpy(c->text + used, s, n);
    c->text[used + n] = '\0';
  }
}

int grid_put(grid *g, int x, int y, int max_cols, grid_style style,
             const char *text, size_t len) {
  if (y < 0 || y >= g->height || x < 0 || x >= g->width)
    return 0;
  int room = g->width - x;
  if (max_cols >= 0 && max_cols < room)
    room = max_cols;
  if (room <= 0)
    return 0;
  /* Sanitize into a bounded buffer first so truncation (with its
   * ellipsis) is decided by the sanitizer alone. */
  char buf[4096];
  sanitize(text, len, room, g->flags | SANITIZE_ELLIPSIS, buf, sizeof buf);
  size_t blen = strlen(buf), pos = 0;
  int combining = -1, col = x;
  while (pos < blen) {
    char ch[SANITIZE_CHAR_MAX];
    int w;
    size_t n = sanitize_next(buf, blen, &pos, g->flags, &combining, ch, &w);
    if (w == 0) {
      if (n > 0)
        add_mark(g, col, y, ch, n);
      continue;
    }
    if (col + w > x + room)
      break;
    set_char(g, col, y, ch, n, w, style);
    col += w;
  }
  return col - x;
}

int grid_puts(grid *g, int x, int y, int max_cols, grid_style style,
              const char *text) {
  return grid_put(g, x, y, max_cols, style, text, strlen(text));
}

int grid_printf(grid *g, int x, int y, int max_cols, grid_style style,
                const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return 0;
  return grid_puts(g, x, y, max_cols, style, buf);
}

int grid_puts_right(grid *g, int x_end, int y, int max_cols, grid_style style,
                    const char *text) {
  int w = sanitize_width(text, strlen(text), g->flags);
  if (max_cols >= 0 && w > max_cols)
    w = max_cols;
  int x = x_end - w;
  if (x < 0) {
    w += x;
    x = 0;
  }
  return grid_put(g, x, y, w, style, text, strlen(text));
}

void grid_fill(grid *g, int x, int y, int width, grid_style style) {
  if (y < 0 || y >= g->height)
    return;
  for (int i = x < 0 ? 0 : x; i < x + width && i < g->width; i++) {
    unshare(g, i, y);
    blank(cell(g, i, y), style);
  }
}

void grid_highlight_row(grid *g, int y, unsigned attr) {
  if (y < 0 || y >= g->height)
    return;
  for (int x = 0; x < g->width; x++)
    cell(g, x, y)->style.attr |= (uint8_t)attr;
}

char *grid_text(const grid *g) {
  size_t cap = (size_t)g->height * ((size_t)g->width * GRID_CELL_BYTES + 1) + 1;
  char *out = xmalloc(cap), *p = out;
  for (int y = 0; y < g->height; y++) {
    char *end = p;
    for (int x = 0; x < g->width; x++) {
      const grid_cell *c = grid_at(g, x, y);
      size_t n = strlen(c->text);
      memcpy(p, c->text, n);
      p += n;
      if (!(n == 1 && c->text[0] == ' ') && n > 0)
        end = p;
    }
    p = end;
    *p++ = '\n';
  }
  *p = '\0';
  return out;
}
