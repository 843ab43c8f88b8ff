/*
 * ctl - the dashboard's controller: owns the store connection, the parsed
 * filter and the view_state, loads what the current view shows, and turns
 * key actions into state changes (scrolling by keyset pages, switching
 * views, the filter prompt, pause, sort). It never touches the terminal,
 * so tests drive it with a fixture store, a fixed clock and key codes.
 */
#ifndef TW_CTL_H
#define TW_CTL_H

#include <stdint.h>

#include "data.h"
#include "view.h"

typedef struct ctl ctl;

/* Takes ownership of d. Returns NULL never (aborts on out-of-memory). */
ctl *ctl_new(data *d, const char *db_label);
void ctl_free(ctl *c);

view_state *ctl_state(ctl *c);

/* Sets the filter text; returns 0, or -1 with the parser's reason in err
 * (the old filter stays). */
int ctl_set_filter(ctl *c, const char *text, char *err, size_t errlen);

/* Sets the screen size (the list rows follow from it). */
void ctl_resize(ctl *c, int width, int height);

/* 1 when the store changed since the last ctl_load() (PRAGMA
 * data_version), else 0. */
int ctl_store_changed(ctl *c);

/* Reloads the header and the current view as of now_us. Returns 0 or -1
 * (the message line then says why). */
int ctl_load(ctl *c, int64_t now_us);

/* Applies one key action (enum key_action). Returns 1 when the program
 * should quit. Anything that changes what is shown reloads it at now_us. */
int ctl_action(ctl *c, int action, int64_t now_us);

/* While the filter prompt is open, every key goes here: printable text
 * (UTF-8, one character) is added; Enter, Esc, Backspace, Ctrl-U edit.
 * key is a curses code or the first byte when text is given. */
void ctl_prompt_key(ctl *c, int key, const char *text, int64_t now_us);

#endif /* TW_CTL_H */
