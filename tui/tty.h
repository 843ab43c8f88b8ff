/*
 * tty - the curses backend: the only part of the dashboard that talks to
 * the terminal. It copies a grid to the screen (curses sends only what
 * changed), maps grid styles to attributes and colour pairs, and reads
 * keys and the mouse wheel.
 */
#ifndef TW_TTY_H
#define TW_TTY_H

#include "grid.h"

/* Starts curses. color_wanted: colours when the terminal has them.
 * Returns 0, or -1 when the terminal cannot be used. */
int tty_open(int color_wanted);
void tty_close(void);
/* The terminal's size now. */
void tty_size(int *width, int *height);
/* Draws g to the terminal and refreshes. */
void tty_draw(const grid *g);

#define TTY_NONE (-1)
#define TTY_WHEEL_UP (-2)
#define TTY_WHEEL_DOWN (-3)
#define TTY_RESIZE (-4)
/*
 * Waits up to timeout_ms for input. Returns TTY_NONE when there was none, a
 * wheel code, or a curses key code; for a typed character it also writes
 * its UTF-8 form to text (size >= 8) and returns the first byte (or, for a
 * character past ASCII, 0x80).
 */
int tty_read(int timeout_ms, char *text, size_t size);

#endif /* TW_TTY_H */
