/*
 * grid - the dashboard's drawing surface: a rectangle of cells, each one
 * terminal column holding a sanitized character and a style. Views draw
 * into a grid; the curses backend (tty.c) copies it to the terminal and
 * the tests compare its text with golden snapshots, so everything but the
 * last step is testable without a terminal (tmux's grid -> screen -> tty).
 *
 * Text enters a grid only through grid_put() and grid_printf(), which run
 * it through the display sanitizer: no byte of task data reaches a cell
 * unsanitized. Not thread-safe; one grid per thread.
 */
#ifndef TW_GRID_H
#define TW_GRID_H

#include <stddef.h>
#include <stdint.h>

/* Foreground colours; GRID_DEFAULT is the terminal's own. */
enum grid_color {
  GRID_DEFAULT = 0,
  GRID_RED,
  GRID_GREEN,
  GRID_YELLOW,
  GRID_BLUE,
  GRID_MAGENTA,
  GRID_CYAN,
  GRID_COLOR_COUNT
};

/* Attributes, or-ed. */
#define GRID_BOLD 1u
#define GRID_REVERSE 2u
#define GRID_DIM 4u
#define GRID_UNDERLINE 8u

typedef struct grid_style {
  uint8_t fg;   /* enum grid_color */
  uint8_t attr; /* GRID_BOLD | ... */
} grid_style;

/* A base character and its few combining marks, NUL-terminated. */
#define GRID_CELL_BYTES 16

typedef struct grid_cell {
  char text[GRID_CELL_BYTES];
  /* 1 or 2 for a character, 0 for the right half of a wide one. */
  uint8_t width;
  grid_style style;
} grid_cell;

typedef struct grid grid;

/* A width x height grid of blanks (both at least 1). sanitize_flags are
 * the SANITIZE_ASCII bit or 0, applied to every text put into it. */
grid *grid_new(int width, int height, unsigned sanitize_flags);
void grid_free(grid *g);
int grid_width(const grid *g);
int grid_height(const grid *g);
unsigned grid_flags(const grid *g);

/* Fills every cell with a blank of the default style. */
void grid_clear(grid *g);
/* The cell at (x, y), or NULL outside the grid. */
const grid_cell *grid_at(const grid *g, int x, int y);

/*
 * Writes text (len bytes, any content) at (x, y), sanitized, within at most
 * max_cols columns and the grid's right edge (max_cols < 0: up to the
 * edge); text that does not fit ends with an ellipsis. Returns the
 * columns written.
 */
int grid_put(grid *g, int x, int y, int max_cols, grid_style style,
             const char *text, size_t len);
/* grid_put() of a NUL-terminated string. */
int grid_puts(grid *g, int x, int y, int max_cols, grid_style style,
              const char *text);
/* grid_put() of formatted text (which is sanitized like any other). */
int grid_printf(grid *g, int x, int y, int max_cols, grid_style style,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Writes text right-aligned so it ends at column x_end (exclusive). */
int grid_puts_right(grid *g, int x_end, int y, int max_cols, grid_style style,
                    const char *text);

/* Blanks width cells from (x, y) in the given style (a bar, a selection). */
void grid_fill(grid *g, int x, int y, int width, grid_style style);
/* Or-s attr into every cell of row y (e.g. GRID_REVERSE for the cursor). */
void grid_highlight_row(grid *g, int y, unsigned attr);

/* The grid as text: one line per row, trailing blanks removed, each line
 * ending in '\n'; no styles, no escape bytes. The caller free()s it. */
char *grid_text(const grid *g);

#endif /* TW_GRID_H */
