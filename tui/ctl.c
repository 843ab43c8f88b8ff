/*
 * ctl - loading and key handling for the dashboard (see ctl.h).
 *
 * The tasks and batches views page by keyset: `anchor` is the (enqueued_at,
 * id) of the top row. While following, there is no anchor and each load
 * shows the newest rows; scrolling, moving the cursor off the top row or
 * pausing pins the anchor so new tasks no longer move the list, and `g`
 * lets go of it again.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "xalloc.h"

struct ctl {
  data *d;
  filter *f;
  view_state s;
  data_key anchor;
  int anchored;
  int width, height, rows;
  int pending; /* the store changed since the last load */
};

ctl *ctl_new(data *d, const char *db_label) {
  ctl *c = xcalloc(1, sizeof *c);
  c->d = d;
  c->s.db_label = db_label;
  c->s.following = 1;
  c->s.kind = VIEW_TASKS;
  for (int i = 0; i < VIEW_COUNT; i++) {
    c->s.sort_column[i] = -1;
    c->s.sort_desc[i] = 1;
  }
  c->s.sort_column[VIEW_TASKS] = DATA_BY_TIME;
  c->s.sort_column[VIEW_BATCHES] = DATA_BY_TIME;
  c->s.sort_column[VIEW_NAMES] = 1; /* COUNT */
  c->s.window = VIEW_WINDOW_DEFAULT;
  c->width = 80;
  c->height = 24;
  c->rows = view_list_rows(&c->s, 80, 24);
  return c;
}

static void clear_rows(view_state *s) {
  data_tasks_free(s->tasks, s->ntasks);
  data_batches_free(s->batches, s->nbatches);
  data_names_free(s->names, s->nnames);
  data_agents_free(s->agents, s->nagents);
  s->tasks = NULL;
  s->batches = NULL;
  s->names = NULL;
  s->agents = NULL;
  s->ntasks = s->nbatches = s->nnames = s->nagents = 0;
}

void ctl_free(ctl *c) {
  if (c == NULL)
    return;
  clear_rows(&c->s);
  data_task_fini(&c->s.detail_task);
  filter_free(c->f);
  data_close(c->d);
  free(c);
}

view_state *ctl_state(ctl *c) {
  return &c->s;
}

/* The filter actually used: the typed text, plus every unhappy state when
 * `f` is on. */
static int build_filter(ctl *c, const char *text, int failures, filter **out,
                        char *err, size_t errlen) {
  filter *f = NULL;
  if (filter_parse(text, c->s.now_us, &f, err, errlen) != 0)
    return -1;
  if (failures && filter_add(f, "status", ":", "failed,skipped,dropped,lost", 0,
                             err, errlen) != 0) {
    filter_free(f);
    return -1;
  }
  *out = f;
  return 0;
}

int ctl_set_filter(ctl *c, const char *text, char *err, size_t errlen) {
  filter *f = NULL;
  if (build_filter(c, text, c->s.failures_only, &f, err, errlen) != 0)
    return -1;
  data_filter_changed(c->d);
  filter_free(c->f);
  c->f = f;
  snprintf(c->s.filter_text, sizeof c->s.filter_text, "%s", text);
  c->anchored = 0;
  c->s.cursor = 0;
  c->s.offset = 0;
  return 0;
}

void ctl_resize(ctl *c, int width, int height) {
  c->width = width;
  c->height = height;
  c->rows = view_list_rows(&c->s, width, height);
}

static int list_length(const view_state *s) {
  switch (s->kind) {
  case VIEW_TASKS:
    return s->ntasks;
  case VIEW_BATCHES: {
    int n = 0;
    for (int i = 0; i < s->nbatches; i++)
      n += view_batch_lines(&s->batches[i]);
    return n;
  }
  case VIEW_NAMES:
    return s->nnames;
  default:
    return s->nagents;
  }
}

static void clamp_cursor(ctl *c) {
  view_state *s = &c->s;
  int n = list_length(s);
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS) {
    if (s->offset > n - 1)
      s->offset = n > 0 ? n - 1 : 0;
    if (s->offset < 0)
      s->offset = 0;
    n -= s->offset;
  }
  if (n > c->rows)
    n = c->rows;
  if (s->cursor >= n)
    s->cursor = n - 1;
  if (s->cursor < 0)
    s->cursor = 0;
}

static int load_list(ctl *c) {
  view_state *s = &c->s;
  const data_key *from = c->anchored ? &c->anchor : NULL;
  data_scope sc = view_scope(s);
  int rc = 0;
  clear_rows(s);
  switch (s->kind) {
  case VIEW_TASKS:
    rc = data_tasks_page(c->d, c->f, &sc, from, -1, c->rows, &s->tasks,
                         &s->ntasks);
    break;
  case VIEW_BATCHES:
    rc = data_batches_page(c->d, c->f, &sc, from, (c->rows + 1) / 2,
                           &s->batches, &s->nbatches);
    break;
  case VIEW_NAMES:
    rc =
        data_names_load(c->d, c->f, sc.since, s->now_us, &s->names, &s->nnames);
    break;
  default:
    rc = data_agents_load(c->d, &s->agents, &s->nagents);
  }
  view_sort(s);
  /* A paused view pins whatever it shows first. */
  if (!s->following && !c->anchored && s->kind == VIEW_TASKS && s->ntasks) {
    c->anchor = data_task_key(&s->tasks[0], &sc);
    c->anchored = 1;
  } else if (!s->following && !c->anchored && s->kind == VIEW_BATCHES &&
             s->nbatches) {
    c->anchor = s->batches[0].key;
    c->anchored = 1;
  }
  clamp_cursor(c);
  return rc;
}

int ctl_store_changed(ctl *c) {
  if (data_changed(c->d))
    c->pending = 1;
  return c->pending;
}

int ctl_load(ctl *c, int64_t now_us) {
  view_state *s = &c->s;
  c->pending = 0;
  s->now_us = now_us;
  int rc = data_stats_load(c->d, c->f, view_since(s), now_us, &s->stats);
  s->have_stats = rc == 0;
  if (load_list(c) != 0)
    rc = -1;
  if (s->detail) {
    int64_t id = s->detail_task.id;
    data_task_fini(&s->detail_task);
    int found = data_task_detail(c->d, id, &s->detail_task);
    s->detail_found = found == 0;
    if (!s->detail_found)
      s->detail_task.id = id;
  }
  if (rc != 0)
    snprintf(s->message, sizeof s->message, "store read failed; retrying");
  return rc;
}

/* Pins the list where it is, so new tasks stop moving it. */
static void pin(ctl *c) {
  view_state *s = &c->s;
  s->following = 0;
  if (c->anchored)
    return;
  if (s->kind == VIEW_TASKS && s->ntasks) {
    data_scope sc = view_scope(s);
    c->anchor = data_task_key(&s->tasks[0], &sc);
    c->anchored = 1;
  } else if (s->kind == VIEW_BATCHES && s->nbatches) {
    c->anchor = s->batches[0].key;
    c->anchored = 1;
  }
}

static void follow(ctl *c) {
  c->anchored = 0;
  c->s.following = !c->s.paused;
}

static int reload_view(ctl *c) {
  view_state *s = &c->s;
  int rc = load_list(c);
  if (s->detail) {
    int64_t id = s->detail_task.id;
    data_task_fini(&s->detail_task);
    s->detail_found = data_task_detail(c->d, id, &s->detail_task) == 0;
    s->detail_task.id = id;
  }
  return rc;
}

/* Scrolls the tasks view by delta rows (positive: towards older tasks). */
static void scroll_tasks(ctl *c, int delta) {
  data_task *rows = NULL;
  data_scope sc = view_scope(&c->s);
  int n = 0;
  pin(c);
  if (!c->anchored)
    return;
  if (delta > 0) {
    data_tasks_page(c->d, c->f, &sc, &c->anchor, -1, delta + 1, &rows, &n);
    if (n > 1)
      c->anchor = data_task_key(&rows[n - 1], &sc);
  } else if (delta < 0) {
    data_tasks_page(c->d, c->f, &sc, &c->anchor, 1, -delta, &rows, &n);
    if (n > 0)
      c->anchor = data_task_key(&rows[n - 1], &sc);
    if (n < -delta && !c->s.paused)
      follow(c);
  }
  data_tasks_free(rows, n);
}

static void scroll_batches(ctl *c, int batches) {
  view_state *s = &c->s;
  pin(c);
  if (!c->anchored || s->nbatches == 0)
    return;
  if (batches > 0) {
    int to = batches < s->nbatches ? batches : s->nbatches - 1;
    if (to > 0)
      c->anchor = s->batches[to].key;
    return;
  }
  data_scope sc = view_scope(s);
  data_key up;
  int rc = data_batch_before(c->d, c->f, &sc, &c->anchor, s->batches[0].id,
                             -batches, &up);
  /* Above the top batch there is nothing more: follow the list again. */
  if (rc != 0 || (up.at == c->anchor.at && up.id == c->anchor.id)) {
    if (!s->paused)
      follow(c);
    return;
  }
  c->anchor = up;
}

static void go_bottom(ctl *c) {
  view_state *s = &c->s;
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS) {
    int n = list_length(s);
    s->offset = n > c->rows ? n - c->rows : 0;
    s->cursor = c->rows;
    return;
  }
  data_scope sc = view_scope(s);
  if (s->kind == VIEW_BATCHES && sc.by != DATA_BY_TIME) {
    data_key key;
    if (data_batch_before(c->d, c->f, &sc, NULL, INT64_MIN, (c->rows + 1) / 2,
                          &key) == 0) {
      s->following = 0;
      c->anchor = key;
      c->anchored = 1;
      s->cursor = c->rows;
    }
    return;
  }
  /* In time order a batch's key is a task's, so the tasks page serves
   * both views. */
  data_task *rows = NULL;
  int n = 0;
  data_tasks_page(c->d, c->f, &sc, NULL, 1, c->rows, &rows, &n);
  if (n > 0) {
    s->following = 0;
    c->anchor = data_task_key(&rows[n - 1], &sc);
    c->anchored = 1;
    s->cursor = c->rows;
  }
  data_tasks_free(rows, n);
}

/* Moves the cursor (and scrolls) by delta lines of the current list. */
static void move(ctl *c, int delta) {
  view_state *s = &c->s;
  int visible = list_length(s);
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS)
    visible -= s->offset;
  if (visible > c->rows)
    visible = c->rows;
  int to = s->cursor + delta;
  if (to >= 0 && to < visible) {
    s->cursor = to;
    if (s->kind == VIEW_TASKS || s->kind == VIEW_BATCHES)
      pin(c);
    return;
  }
  int step = delta > 0 ? to - (visible - 1) : to;
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS) {
    s->offset += step;
    if (s->offset < 0)
      s->offset = 0;
    s->cursor = delta > 0 ? visible - 1 : 0;
    return;
  }
  if (s->kind == VIEW_TASKS) {
    scroll_tasks(c, step);
  } else {
    int lines = s->nbatches ? view_batch_lines(&s->batches[0]) : 1;
    scroll_batches(c, step > 0 ? (step + lines - 1) / lines
                               : -((-step + lines - 1) / lines));
  }
  s->cursor = delta > 0 ? visible - 1 : 0;
}

static void scroll_pane(int *scroll, int delta, int lines, int rows) {
  int max = lines - rows > 0 ? lines - rows : 0;
  *scroll += delta;
  if (*scroll > max)
    *scroll = max;
  if (*scroll < 0)
    *scroll = 0;
}

/* Movement keys inside the help or detail pane. */
static int pane_action(ctl *c, int action) {
  view_state *s = &c->s;
  int *scroll = s->help ? &s->help_scroll : &s->detail_scroll;
  int lines = s->help ? view_help_lines() : view_detail_lines(s, c->width);
  int page = c->rows > 1 ? c->rows - 1 : 1;
  switch (action) {
  case ACT_UP:
    scroll_pane(scroll, -1, lines, c->rows);
    return 1;
  case ACT_DOWN:
    scroll_pane(scroll, 1, lines, c->rows);
    return 1;
  case ACT_PAGE_UP:
  case ACT_HALF_UP:
    scroll_pane(scroll, action == ACT_PAGE_UP ? -page : -page / 2, lines,
                c->rows);
    return 1;
  case ACT_PAGE_DOWN:
  case ACT_HALF_DOWN:
    scroll_pane(scroll, action == ACT_PAGE_DOWN ? page : page / 2, lines,
                c->rows);
    return 1;
  case ACT_TOP:
    *scroll = 0;
    return 1;
  case ACT_BOTTOM:
    scroll_pane(scroll, lines, lines, c->rows);
    return 1;
  case ACT_CLOSE:
  case ACT_DETAIL:
    if (s->help)
      s->help = 0;
    else
      s->detail = 0;
    return 1;
  default:
    return 0;
  }
}

static void switch_view(ctl *c, int kind) {
  view_state *s = &c->s;
  s->kind = (kind + VIEW_COUNT) % VIEW_COUNT;
  s->cursor = 0;
  s->offset = 0;
  s->help = 0;
  s->detail = 0;
  follow(c);
}

/* Appends key:"value" to buf, the value quoted and its quotes,
 * backslashes and glob characters escaped, so it matches literally. */
static void add_term(char *buf, size_t size, const char *key, data_text v) {
  size_t n = strlen(buf);
  int w = snprintf(buf + n, size - n, "%s%s:\"", n ? " " : "", key);
  if (w < 0 || (size_t)w >= size - n)
    return;
  n += (size_t)w;
  for (size_t i = 0; i < v.len && n + 3 < size; i++) {
    char ch = v.ptr[i];
    if (ch == '\0')
      break;
    if (strchr("\\\"*?[]", ch))
      buf[n++] = '\\';
    buf[n++] = ch;
  }
  if (n + 2 <= size) {
    buf[n++] = '"';
    buf[n] = '\0';
  }
}

/* Enter on a name or an agent: the tasks view, filtered to it. */
static void drill_down(ctl *c) {
  view_state *s = &c->s;
  char text[VIEW_TEXT_MAX] = "", err[VIEW_TEXT_MAX];
  int i = s->offset + s->cursor;
  if (s->kind == VIEW_NAMES && i < s->nnames) {
    add_term(text, sizeof text, "name", s->names[i].name);
  } else if (s->kind == VIEW_AGENTS && i < s->nagents) {
    const data_agent *a = &s->agents[i];
    add_term(text, sizeof text, "service", a->service);
    add_term(text, sizeof text, "host", a->host);
    size_t n = strlen(text);
    snprintf(text + n, sizeof text - n, " pid:%lld", (long long)a->pid);
  } else {
    return;
  }
  if (ctl_set_filter(c, text, err, sizeof err) != 0) {
    snprintf(s->message, sizeof s->message, "filter: %.200s", err);
    return;
  }
  s->kind = VIEW_TASKS;
  follow(c);
}

/* Returns 1 when it set a filter (a name's or an agent's tasks). */
static int open_detail(ctl *c) {
  view_state *s = &c->s;
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS) {
    drill_down(c);
    return 1;
  }
  const data_task *t = view_selected_task(s);
  if (t == NULL)
    return 0;
  int64_t id = t->id;
  data_task_fini(&s->detail_task);
  s->detail_task.id = id;
  s->detail = 1;
  s->detail_scroll = 0;
  return 0;
}

static void toggle_failures(ctl *c) {
  view_state *s = &c->s;
  filter *f = NULL;
  char err[VIEW_TEXT_MAX];
  if (build_filter(c, s->filter_text, !s->failures_only, &f, err, sizeof err) !=
      0) {
    snprintf(s->message, sizeof s->message, "filter: %.200s", err);
    return;
  }
  data_filter_changed(c->d);
  filter_free(c->f);
  c->f = f;
  s->failures_only = !s->failures_only;
  s->cursor = 0;
  s->offset = 0;
  follow(c);
}

/* Returns 1 when the list must be read again (tasks and batches are
 * sorted by the store), 2 when the rows loaded only need sorting. */
static int sort_action(ctl *c, int reverse) {
  view_state *s = &c->s;
  int n = view_sort_columns(s->kind);
  if (reverse)
    s->sort_desc[s->kind] = !s->sort_desc[s->kind];
  else
    s->sort_column[s->kind] = (s->sort_column[s->kind] + 1) % n;
  if (s->kind == VIEW_NAMES || s->kind == VIEW_AGENTS) {
    view_sort(s);
    return 2;
  }
  s->cursor = 0;
  follow(c);
  return 1;
}

/* w: the next time window; everything is read again. */
static void next_window(ctl *c) {
  view_state *s = &c->s;
  s->window = (s->window + 1) % VIEW_WINDOW_COUNT;
  s->cursor = 0;
  s->offset = 0;
  follow(c);
}

/* Actions that do not move within a list. Returns 0 when not one of
 * them, 1 when handled and the view must be reloaded, 2 when handled and
 * what is loaded is still right, 3 when the header must be read again
 * too. */
static int other_action(ctl *c, int action) {
  view_state *s = &c->s;
  switch (action) {
  case ACT_DETAIL:
    /* On a name or an agent, a new filter: the header follows it. */
    return open_detail(c) ? 3 : 1;
  case ACT_CLOSE:
    s->message[0] = '\0';
    return 2;
  case ACT_FILTER:
    s->editing = 1;
    snprintf(s->edit, sizeof s->edit, "%s", s->filter_text);
    return 2;
  case ACT_FAILURES:
    toggle_failures(c);
    return 3;
  case ACT_SORT:
  case ACT_SORT_REVERSE:
    return sort_action(c, action == ACT_SORT_REVERSE);
  case ACT_WINDOW:
    next_window(c);
    return 3;
  case ACT_PAUSE:
    s->paused = !s->paused;
    if (s->paused)
      pin(c);
    else
      follow(c);
    return 1;
  case ACT_NEXT_VIEW:
  case ACT_PREV_VIEW:
    switch_view(c, s->kind + (action == ACT_NEXT_VIEW ? 1 : -1));
    return 1;
  case ACT_VIEW_TASKS:
  case ACT_VIEW_BATCHES:
  case ACT_VIEW_NAMES:
  case ACT_VIEW_AGENTS:
    switch_view(c, action - ACT_VIEW_TASKS);
    return 1;
  case ACT_HELP:
    s->help = !s->help;
    s->help_scroll = 0;
    return 2;
  default:
    return 0;
  }
}

int ctl_action(ctl *c, int action, int64_t now_us) {
  view_state *s = &c->s;
  int page = c->rows > 1 ? c->rows - 1 : 1;
  if (action == ACT_QUIT)
    return 1;
  s->message[0] = '\0';
  s->now_us = now_us;
  if ((s->help || s->detail) && pane_action(c, action))
    return 0;
  switch (action) {
  case ACT_UP:
  case ACT_DOWN:
    move(c, action == ACT_UP ? -1 : 1);
    break;
  case ACT_PAGE_UP:
  case ACT_PAGE_DOWN:
  case ACT_HALF_UP:
  case ACT_HALF_DOWN: {
    int d = action == ACT_PAGE_UP || action == ACT_PAGE_DOWN ? page : page / 2;
    if (d < 1)
      d = 1;
    move(c, action == ACT_PAGE_UP || action == ACT_HALF_UP
                ? -s->cursor - d
                : (list_length(s) < c->rows ? list_length(s) : c->rows) - 1 -
                      s->cursor + d);
    break;
  }
  case ACT_TOP:
    s->cursor = 0;
    s->offset = 0;
    follow(c);
    break;
  case ACT_BOTTOM:
    go_bottom(c);
    break;
  default:
    switch (other_action(c, action)) {
    case 1:
      break;
    case 3:
      ctl_load(c, now_us);
      return 0;
    default:
      return 0;
    }
  }
  reload_view(c);
  return 0;
}

void ctl_prompt_key(ctl *c, int key, const char *text, int64_t now_us) {
  view_state *s = &c->s;
  size_t len = strlen(s->edit);
  s->now_us = now_us;
  if (keys_is_enter(key)) {
    char err[VIEW_TEXT_MAX];
    if (ctl_set_filter(c, s->edit, err, sizeof err) != 0) {
      snprintf(s->message, sizeof s->message, "filter: %.200s", err);
      return;
    }
    s->editing = 0;
    s->message[0] = '\0';
    follow(c);
    ctl_load(c, now_us);
  } else if (key == 27) {
    s->editing = 0;
    s->message[0] = '\0';
  } else if (keys_is_backspace(key)) {
    while (len > 0 && ((unsigned char)s->edit[len - 1] & 0xC0) == 0x80)
      len--;
    if (len > 0)
      len--;
    s->edit[len] = '\0';
  } else if (key == ('u' & 0x1f)) {
    s->edit[0] = '\0';
  } else if (text && (unsigned char)text[0] >= 0x20 && text[0] != 0x7f) {
    size_t n = strlen(text);
    if (len + n < sizeof s->edit) {
      memcpy(s->edit + len, text, n + 1);
    }
  }
}
