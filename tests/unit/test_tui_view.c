/*
 * test_tui_view - the dashboard without a terminal: a fixture store with
 * fixed times is loaded through the controller and rendered into a cell
 * grid, whose text must equal the golden snapshots in golden/ (at 40x10,
 * 80x24 and 200x60). Run with TW_UPDATE_GOLDEN=1 to rewrite them after an
 * intended change, then review the diff. Also: keys drive the controller
 * (cursor, pause, filter prompt, views, sort, detail), hostile strings
 * never reach the grid raw, and every size from 1x1 up renders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ctl.h"
#include "data.h"
#include "grid.h"
#include "hist.h"
#include "keys.h"
#include "rollup.h"
#include "sanitize.h"
#include "schema.h"
#include "stats.h"
#include "tui_fixture.h"
#include "view.h"

static const char *golden_dir = "golden";

/* The window the dashboard covers by default, as of FIXTURE_NOW. */
#define WINDOW_15M (FIXTURE_NOW - INT64_C(900000000))

typedef struct fixture {
  char dir[64];
  char path[96];
  ctl *c;
} fixture;

static int setup_with(void **state, int64_t last_event_ago) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/tw-tui-XXXXXX");
  if (mkdtemp(f->dir) == NULL)
    return -1;
  snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
  if (fixture_build(f->path, last_event_ago) != 0)
    return -1;
  data *d = NULL;
  char err[256];
  if (data_open(f->path, &d, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  f->c = ctl_new(d, "store.db");
  ctl_state(f->c)->now_us = FIXTURE_NOW;
  if (ctl_set_filter(f->c, "", err, sizeof err) != 0)
    return -1;
  *state = f;
  return 0;
}

static int setup(void **state) {
  return setup_with(state, INT64_C(2000000));
}

static int setup_stale(void **state) {
  return setup_with(state, INT64_C(300000000));
}

static int teardown(void **state) {
  fixture *f = *state;
  ctl_free(f->c);
  remove(f->path);
  rmdir(f->dir);
  free(f);
  return 0;
}

/* Renders the controller's state at w x h with the given sanitizer flags
 * and returns the text. */
static char *render_flags(ctl *c, int w, int h, unsigned flags) {
  ctl_resize(c, w, h);
  assert_int_equal(ctl_load(c, FIXTURE_NOW), 0);
  grid *g = grid_new(w, h, flags);
  view_render(ctl_state(c), g);
  char *text = grid_text(g);
  grid_free(g);
  /* Whatever the data, the text holds no control byte but newlines. */
  for (const unsigned char *p = (const unsigned char *)text; *p; p++)
    assert_true(*p == '\n' || (*p >= 0x20 && *p != 0x7f));
  return text;
}

static char *render(ctl *c, int w, int h) {
  return render_flags(c, w, h, 0);
}

static char *read_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  return strdup(buf);
}

static void golden(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.txt", golden_dir, name);
  const char *update = getenv("TW_UPDATE_GOLDEN");
  if (update && *update) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return;
  }
  char *want = read_file(path);
  if (want == NULL)
    fail_msg("missing golden file %s", path);
  if (strcmp(want, text) != 0)
    fprintf(stderr, "--- %s expected:\n%s--- got:\n%s", path, want, text);
  assert_string_equal(want, text);
  free(want);
}

static void snap(fixture *f, int kind, int w, int h, const char *name) {
  ctl_state(f->c)->kind = kind;
  char *text = render(f->c, w, h);
  golden(name, text);
  free(text);
}

static void golden_views(void **state) {
  fixture *f = *state;
  static const int sizes[3][2] = {{40, 10}, {80, 24}, {200, 60}};
  for (int s = 0; s < 3; s++)
    for (int k = 0; k < VIEW_COUNT; k++) {
      char name[64];
      snprintf(name, sizeof name, "%s_%dx%d", view_name(k), sizes[s][0],
               sizes[s][1]);
      snap(f, k, sizes[s][0], sizes[s][1], name);
    }
}

/* A terminal whose locale is not UTF-8: printable ASCII only. */
static void golden_ascii(void **state) {
  fixture *f = *state;
  for (int k = 0; k < 2; k++) {
    ctl_state(f->c)->kind = k;
    char *text = render_flags(f->c, 80, 24, SANITIZE_ASCII);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
      assert_true(*p < 0x80);
    golden(k ? "batches_80x24_ascii" : "tasks_80x24_ascii", text);
    free(text);
  }
}

static void golden_help_and_detail(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  ctl_resize(c, 80, 24);
  assert_int_equal(ctl_action(c, ACT_HELP, FIXTURE_NOW), 0);
  snap(f, VIEW_TASKS, 80, 24, "help_80x24");
  snap(f, VIEW_TASKS, 200, 60, "help_200x60");
  ctl_resize(c, 80, 24);
  ctl_action(c, ACT_CLOSE, FIXTURE_NOW);
  assert_false(ctl_state(c)->help);
  char err[128];
  assert_int_equal(ctl_set_filter(c, "status:failed", err, sizeof err), 0);
  ctl_load(c, FIXTURE_NOW);
  assert_int_equal(ctl_state(c)->ntasks, 1);
  ctl_action(c, ACT_DETAIL, FIXTURE_NOW);
  assert_true(ctl_state(c)->detail);
  snap(f, VIEW_TASKS, 80, 24, "detail_80x24");
  /* The detail pane scrolls to the end of the traceback and no further. */
  for (int i = 0; i < 40; i++)
    ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  snap(f, VIEW_TASKS, 80, 24, "detail_scrolled_80x24");
  ctl_action(c, ACT_CLOSE, FIXTURE_NOW);
  assert_false(ctl_state(c)->detail);
}

/* No event for a while: the header says so in words; once no agent is
 * connected either, that the load has finished. */
static void stale_store(void **state) {
  fixture *f = *state;
  char *text = render(f->c, 80, 24);
  assert_non_null(strstr(text, "IDLE no event for 2m"));
  free(text);
  text = render(f->c, 40, 10);
  assert_non_null(strstr(text, "IDLE"));
  free(text);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "UPDATE agents SET connected = 0", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  text = render(f->c, 80, 24);
  assert_non_null(
      strstr(text, "FINISHED no agent connected, last event 2m ago"));
  free(text);
}

static void hostile_strings_are_visible(void **state) {
  fixture *f = *state;
  char *text = render(f->c, 200, 60);
  /* The CSI in a name shows as text; the bidi override as U+FFFD. */
  assert_non_null(strstr(text, "evil\xe2\x90\x9b[2J\xe2\x90\x9b[Hname"));
  assert_non_null(strstr(text, "POST /x\xef\xbf\xbd"
                               "fdp.exe"));
  assert_null(strstr(text, "\xe2\x80\xae"));
  /* Raw 0x9B and C2 9B, CR and BS in the error message. */
  assert_non_null(strstr(text, "bad\xef\xbf\xbd"
                               "31m \xef\xbf\xbd"
                               "1m"
                               "\xe2\x90\x8dOK\xe2\x90\x88!"));
  free(text);
  ctl_state(f->c)->kind = VIEW_AGENTS;
  text = render(f->c, 80, 24);
  assert_non_null(strstr(text, "worker\xe2\x90\x9b[1m"));
  free(text);
}

static void keys_move_pause_and_follow(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  char *text = render(c, 80, 24);
  free(text);
  assert_true(s->following);
  int64_t first = s->tasks[0].id;
  ctl_action(c, keys_action('j'), FIXTURE_NOW);
  assert_int_equal(s->cursor, 1);
  assert_false(s->following);
  /* Scrolling past the bottom moves the list by keyset pages. */
  for (int i = 0; i < 30; i++)
    ctl_action(c, keys_action('j'), FIXTURE_NOW);
  assert_true(s->tasks[0].id != first);
  int last = s->ntasks - 1;
  assert_int_equal(s->cursor, last);
  ctl_action(c, keys_action('g'), FIXTURE_NOW);
  assert_true(s->following);
  assert_int_equal(s->tasks[0].id, first);
  ctl_action(c, keys_action('G'), FIXTURE_NOW);
  assert_false(s->following);
  assert_int_equal(s->tasks[s->ntasks - 1].position, 0); /* oldest task */
  ctl_action(c, keys_action('g'), FIXTURE_NOW);
  ctl_action(c, keys_action(' '), FIXTURE_NOW);
  assert_true(s->paused);
  assert_false(s->following);
  ctl_action(c, keys_action(' '), FIXTURE_NOW);
  assert_false(s->paused);
  assert_true(s->following);
  assert_int_equal(keys_action('q'), ACT_QUIT);
  assert_int_equal(ctl_action(c, ACT_QUIT, FIXTURE_NOW), 1);
}

static void type(ctl *c, const char *text) {
  for (const char *p = text; *p; p++) {
    char one[2] = {*p, '\0'};
    ctl_prompt_key(c, (unsigned char)*p, one, FIXTURE_NOW);
  }
}

static void filter_prompt_and_failures(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  free(render(c, 80, 24));
  ctl_action(c, keys_action('/'), FIXTURE_NOW);
  assert_true(s->editing);
  type(c, "name:send_*");
  ctl_prompt_key(c, '\n', NULL, FIXTURE_NOW);
  assert_false(s->editing);
  assert_string_equal(s->filter_text, "name:send_*");
  assert_int_equal(s->ntasks, 7);
  /* A bad filter keeps the prompt open with the reason. */
  ctl_action(c, keys_action('/'), FIXTURE_NOW);
  ctl_prompt_key(c, ('u' & 0x1f), NULL, FIXTURE_NOW);
  type(c, "bogus:1");
  ctl_prompt_key(c, '\n', NULL, FIXTURE_NOW);
  assert_true(s->editing);
  assert_non_null(strstr(s->message, "filter"));
  char *shown = render(c, 80, 24);
  golden("prompt_error_80x24", shown);
  free(shown);
  ctl_prompt_key(c, 27, NULL, FIXTURE_NOW);
  assert_false(s->editing);
  assert_string_equal(s->filter_text, "name:send_*");
  /* f: failures only, in the batches view the whole failed batch. */
  ctl_action(c, keys_action('f'), FIXTURE_NOW);
  assert_true(s->failures_only);
  assert_int_equal(s->ntasks, 1);
  ctl_action(c, keys_action('2'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_BATCHES);
  assert_int_equal(s->nbatches, 1);
  assert_int_equal(s->batches[0].ntasks, 3);
  assert_int_equal(s->batches[0].tasks[2].status, 4 /* skipped */);
  char *text = render(c, 80, 24);
  golden("batches_failed_80x24", text);
  free(text);
}

static void views_and_sort(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  free(render(c, 80, 24));
  ctl_action(c, keys_action('\t'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_BATCHES);
  ctl_action(c, keys_action('\t'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_NAMES);
  assert_int_equal(s->nnames, 4);
  /* Sorted by count, descending: the three default names have 7 each. */
  assert_int_equal(s->names[0].count, 7);
  ctl_action(c, keys_action('s'), FIXTURE_NOW); /* FAIL% */
  ctl_action(c, keys_action('s'), FIXTURE_NOW); /* SKIP% */
  ctl_action(c, keys_action('S'), FIXTURE_NOW);
  assert_int_equal(s->sort_desc[VIEW_NAMES], 0);
  ctl_action(c, keys_action((0410 + 6)), FIXTURE_NOW);
  /* Enter on a name: its tasks, through a literal name filter. */
  ctl_action(c, ACT_TOP, FIXTURE_NOW);
  int evil = -1;
  for (int i = 0; i < s->nnames; i++)
    if (s->names[i].name.ptr && strncmp(s->names[i].name.ptr, "evil", 4) == 0)
      evil = i;
  assert_true(evil >= 0 && evil < 4);
  s->cursor = evil;
  ctl_action(c, keys_action('\n'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_TASKS);
  assert_string_equal(s->filter_text, "name:\"evil\x1b\\[2J\x1b\\[Hname\"");
  assert_int_equal(s->ntasks, 1);
  ctl_action(c, keys_action('4'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_AGENTS);
  assert_int_equal(s->nagents, 2);
  char err[128];
  assert_int_equal(ctl_set_filter(c, "", err, sizeof err), 0);
  s->cursor = 1; /* worker, host web-2 */
  ctl_action(c, keys_action('\n'), FIXTURE_NOW);
  assert_int_equal(s->kind, VIEW_TASKS);
  assert_int_equal(s->ntasks, 6); /* batches 3 and 6 ran on agent 2 */
  ctl_action(c, keys_action('4'), FIXTURE_NOW);
  ctl_action(c, keys_action('1'), FIXTURE_NOW);
  ctl_action(c, keys_action('s'), FIXTURE_NOW);
  assert_int_equal(s->sort_column[VIEW_TASKS], DATA_BY_RUN);
  assert_true(s->sort_desc[VIEW_TASKS]);
}

/* The store's own order of the tasks in the window, as task_value()
 * defines it (largest first, ties by id), for checking the lists. */
static int expected_order(sqlite3 *db, const char *value, int64_t since,
                          int64_t now, int64_t *ids, int max) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT id FROM tasks WHERE enqueued_at >= ?1 ORDER BY %s DESC, "
           "id DESC",
           value);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int64(st, 1, since);
  sqlite3_bind_int64(st, 2, now);
  int n = 0;
  while (n < max && sqlite3_step(st) == SQLITE_ROW)
    ids[n++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* s sorts the tasks view by run time, then wait, then state, over the
 * window; the list scrolls through every task in that order, a page at a
 * time and back, and S reverses it. */
static void tasks_sorted_by_run_wait_and_state(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  static const struct {
    int by;
    const char *sql;
  } orders[] = {
      {DATA_BY_RUN, "(CASE WHEN run_us IS NOT NULL THEN run_us WHEN status "
                    "= 1 THEN ?2 - started_at ELSE -1 END)"},
      {DATA_BY_WAIT, "(CASE WHEN wait_us IS NOT NULL THEN wait_us WHEN "
                     "status = 0 THEN ?2 - enqueued_at ELSE -1 END)"},
      {DATA_BY_STATUS, "(CASE status WHEN 3 THEN 6 WHEN 6 THEN 5 WHEN 5 THEN "
                       "4 WHEN 4 THEN 3 WHEN 1 THEN 2 WHEN 0 THEN 1 ELSE 0 "
                       "END)"},
  };
  free(render(c, 80, 12)); /* three list rows: the list must page */
  for (size_t o = 0; o < 3; o++) {
    ctl_action(c, keys_action('s'), FIXTURE_NOW);
    assert_int_equal(s->sort_column[VIEW_TASKS], orders[o].by);
    int64_t want[64], got[64];
    int n =
        expected_order(db, orders[o].sql, WINDOW_15M, FIXTURE_NOW, want, 64);
    assert_int_equal(n, 21);
    /* Down through the whole list, one line at a time. */
    int m = 0;
    got[m++] = s->tasks[0].id;
    for (int i = 0; i < 40 && m < n; i++) {
      ctl_action(c, ACT_DOWN, FIXTURE_NOW);
      int64_t id = s->tasks[s->cursor].id;
      if (id != got[m - 1])
        got[m++] = id;
    }
    assert_int_equal(m, n);
    assert_memory_equal(got, want, sizeof(int64_t) * (size_t)n);
    /* And back up to the top, which follows again. */
    for (int i = 0; i < 40; i++)
      ctl_action(c, ACT_UP, FIXTURE_NOW);
    assert_int_equal(s->tasks[0].id, want[0]);
    assert_true(s->following);
    /* S: smallest first, which is the same list upside down. */
    ctl_action(c, keys_action('S'), FIXTURE_NOW);
    assert_false(s->sort_desc[VIEW_TASKS]);
    assert_int_equal(s->tasks[0].id, want[n - 1]);
    ctl_action(c, keys_action('G'), FIXTURE_NOW);
    assert_int_equal(s->tasks[s->ntasks - 1].id, want[0]);
    ctl_action(c, keys_action('S'), FIXTURE_NOW);
  }
  ctl_action(c, keys_action('s'), FIXTURE_NOW);
  assert_int_equal(s->sort_column[VIEW_TASKS], DATA_BY_TIME);
  sqlite3_close(db);
}

/* The batches view sorted by total run time: the largest first, the value
 * in the heading, and every batch reachable by scrolling. */
static void batches_sorted_by_run(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  s->kind = VIEW_BATCHES;
  free(render(c, 80, 14)); /* four batches a page */
  ctl_action(c, keys_action('s'), FIXTURE_NOW);
  assert_int_equal(s->sort_column[VIEW_BATCHES], DATA_BY_RUN);
  for (int i = 1; i < s->nbatches; i++)
    assert_true(s->batches[i - 1].value >= s->batches[i].value);
  char *text = render(c, 80, 14);
  assert_non_null(strstr(text, "by total run time, longest first"));
  assert_non_null(strstr(text, "  run "));
  free(text);
  int64_t top = s->batches[0].id, seen[16];
  int nseen = 0;
  for (int i = 0; i < 60; i++) {
    for (int k = 0; k < s->nbatches; k++) {
      int known = 0;
      for (int j = 0; j < nseen; j++)
        known |= seen[j] == s->batches[k].id;
      if (!known && nseen < 16)
        seen[nseen++] = s->batches[k].id;
    }
    ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  }
  assert_int_equal(nseen, 7);
  ctl_action(c, keys_action('G'), FIXTURE_NOW);
  assert_true(s->nbatches > 0);
  for (int i = 0; i < 60; i++)
    ctl_action(c, ACT_UP, FIXTURE_NOW);
  assert_int_equal(s->batches[0].id, top);
}

/* w steps through 5m, 15m, 1h, 24h and all: the header counts and the
 * lists cover the window (the fixture's batches are 1.5 minutes apart,
 * from 10 minutes before now). */
static void window_key_covers_header_and_lists(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  free(render(c, 120, 30));
  assert_int_equal(s->window, VIEW_WINDOW_15M);
  assert_int_equal(s->stats.total, 21);
  ctl_action(c, keys_action('w'), FIXTURE_NOW);
  assert_int_equal(s->window, VIEW_WINDOW_1H);
  ctl_action(c, keys_action('w'), FIXTURE_NOW);
  ctl_action(c, keys_action('w'), FIXTURE_NOW);
  assert_int_equal(s->window, VIEW_WINDOW_ALL);
  assert_int_equal(s->stats.total, 21);
  ctl_action(c, keys_action('w'), FIXTURE_NOW);
  assert_int_equal(s->window, VIEW_WINDOW_5M);
  /* Batches 4, 5 and 6 (at -240 s, -150 s and -60 s) are in the last 5
   * minutes; the failed batch 3 (at -330 s) is not. */
  assert_int_equal(s->stats.total, 9);
  assert_int_equal(s->ntasks, 9);
  assert_int_equal(s->stats.counts[SCHEMA_FAILED], 0);
  assert_int_equal(s->stats.running_now, 2);
  char *text = render(c, 120, 30);
  assert_non_null(strstr(text, "last 5m succeeded 6"));
  assert_non_null(strstr(text, "now queued 1  running 2"));
  free(text);
  ctl_action(c, keys_action('2'), FIXTURE_NOW);
  assert_int_equal(s->nbatches, 3);
  ctl_action(c, keys_action('3'), FIXTURE_NOW);
  int64_t named = 0;
  for (int i = 0; i < s->nnames; i++)
    named += s->names[i].count;
  assert_int_equal(named, 9);
}

/* The header follows the filter: counts, percentiles and rates of the
 * matching tasks only; f adds every unhappy state. */
static void header_follows_the_filter(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  char err[128];
  free(render(c, 120, 30));
  int64_t all_succeeded = s->stats.counts[SCHEMA_SUCCEEDED];
  assert_int_equal(ctl_set_filter(c, "name:send_email", err, sizeof err), 0);
  ctl_load(c, FIXTURE_NOW);
  assert_int_equal(s->stats.total, 7);
  assert_int_equal(s->stats.counts[SCHEMA_FAILED], 1);
  assert_int_equal(s->stats.counts[SCHEMA_SUCCEEDED], 5);
  assert_int_equal(s->stats.running_now, 1);
  assert_true(s->stats.counts[SCHEMA_SUCCEEDED] < all_succeeded);
  assert_int_equal(ctl_set_filter(c, "", err, sizeof err), 0);
  ctl_action(c, keys_action('f'), FIXTURE_NOW);
  assert_true(s->failures_only);
  /* failed and skipped in the fixture; dropped and lost would count. */
  assert_int_equal(s->ntasks, 2);
  assert_int_equal(s->stats.total, 2);
  char *text = render(c, 120, 30);
  assert_non_null(strstr(text, "failed/skipped/dropped/lost only"));
  free(text);
}

static void batches_scroll_both_ways(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  s->kind = VIEW_BATCHES;
  free(render(c, 80, 24));
  int64_t newest = s->batches[0].id;
  assert_int_equal(s->nbatches, 7); /* all seven fit the 16-row page */
  for (int i = 0; i < 20; i++)
    ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  assert_false(s->following);
  assert_true(s->batches[0].id != newest);
  /* The oldest batch is reachable and the list ends there. */
  for (int i = 0; i < 40; i++)
    ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  assert_int_equal(s->batches[s->nbatches - 1].tasks[0].position, 0);
  int64_t oldest = s->batches[s->nbatches - 1].id;
  assert_int_equal(oldest & 0xff, 1);
  for (int i = 0; i < 60; i++)
    ctl_action(c, ACT_UP, FIXTURE_NOW);
  assert_int_equal(s->batches[0].id, newest);
  assert_true(s->following);
  ctl_action(c, ACT_PAGE_DOWN, FIXTURE_NOW);
  assert_true(s->batches[0].id != newest);
  ctl_action(c, ACT_PAGE_UP, FIXTURE_NOW);
  assert_int_equal(s->batches[0].id, newest);
}

static void names_page_and_mouse_sized_steps(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  view_state *s = ctl_state(c);
  s->kind = VIEW_NAMES;
  free(render(c, 40, 7)); /* two list rows for four names */
  for (int i = 0; i < 3; i++)
    ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  assert_int_equal(s->offset + s->cursor, 3);
  ctl_action(c, ACT_DOWN, FIXTURE_NOW);
  assert_int_equal(s->offset + s->cursor, 3);
  ctl_action(c, ACT_TOP, FIXTURE_NOW);
  assert_int_equal(s->offset + s->cursor, 0);
  ctl_action(c, ACT_BOTTOM, FIXTURE_NOW);
  assert_int_equal(s->offset + s->cursor, 3);
}

static void every_size_renders(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  for (int k = 0; k < VIEW_COUNT; k++)
    for (int w = 1; w <= 82; w += 3)
      for (int h = 1; h <= 26; h += 2) {
        ctl_state(c)->kind = k;
        free(render(c, w, h));
      }
  ctl_state(c)->help = 1;
  free(render(c, 1, 1));
  free(render(c, 40, 10));
}

/* Finds the first cell of `word` on the screen; returns its style. */
static grid_style style_of(const grid *g, const char *word) {
  for (int y = 0; y < grid_height(g); y++)
    for (int x = 0; x < grid_width(g); x++) {
      size_t n = strlen(word);
      int ok = 1;
      for (size_t i = 0; i < n && ok; i++) {
        const grid_cell *cell = grid_at(g, x + (int)i, y);
        ok = cell && cell->text[0] == word[i] && cell->text[1] == '\0';
      }
      if (ok)
        return grid_at(g, x, y)->style;
    }
  fail_msg("%s not on screen", word);
  grid_style none = {0, 0};
  return none;
}

static void states_are_words_and_colours(void **state) {
  fixture *f = *state;
  ctl *c = f->c;
  ctl_resize(c, 80, 24);
  assert_int_equal(ctl_load(c, FIXTURE_NOW), 0);
  grid *g = grid_new(80, 24, 0);
  view_render(ctl_state(c), g);
  grid_style st = style_of(g, "failed ");
  assert_int_equal(st.fg, GRID_RED);
  assert_true(st.attr & GRID_BOLD);
  assert_int_equal(style_of(g, "skipped").fg, GRID_YELLOW);
  assert_int_equal(style_of(g, "succeeded").fg, GRID_GREEN);
  assert_int_equal(style_of(g, "running").fg, GRID_CYAN);
  assert_int_equal(style_of(g, "queued").fg, GRID_BLUE);
  grid_free(g);
}

static void open_refuses_what_is_not_a_store(void **state) {
  (void)state;
  char dir[] = "/tmp/tw-tui-open-XXXXXX", path[64], err[256];
  assert_non_null(mkdtemp(dir));
  data *d = NULL;
  snprintf(path, sizeof path, "%s/missing.db", dir);
  assert_int_equal(data_open(path, &d, err, sizeof err), READER_EMISSING);
  assert_non_null(strstr(err, "cannot open"));
  snprintf(path, sizeof path, "%s/garbage.db", dir);
  FILE *fp = fopen(path, "wb");
  for (int i = 0; i < 4096; i++)
    fputc((i * 7919) & 0xff, fp);
  fclose(fp);
  assert_int_equal(data_open(path, &d, err, sizeof err), READER_ENOT_SQLITE);
  assert_non_null(strstr(err, "not a database"));
  remove(path);
  snprintf(path, sizeof path, "%s/newer.db", dir);
  sqlite3 *db = NULL;
  /* A whole store, of a schema version from the future. */
  char *why = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(schema_apply(db, &why), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(data_open(path, &d, err, sizeof err), READER_ETOO_NEW);
  assert_non_null(strstr(err, "newer"));
  assert_null(strchr(err, '\n'));
  remove(path);
  rmdir(dir);
}

/* A fixture store with succeeded tasks of one name added in bulk, for
 * the sampling tests. */
typedef struct bulk {
  char dir[32], path[64];
  sqlite3 *db;
  sqlite3_stmt *insert;
} bulk;

static void bulk_begin(bulk *b, const char *name) {
  snprintf(b->dir, sizeof b->dir, "/tmp/tw-tui-bulk-XXXXXX");
  assert_non_null(mkdtemp(b->dir));
  snprintf(b->path, sizeof b->path, "%s/bulk.db", b->dir);
  assert_int_equal(fixture_build(b->path, INT64_C(1000000)), 0);
  assert_int_equal(sqlite3_open(b->path, &b->db), SQLITE_OK);
  assert_int_equal(
      sqlite3_prepare_v2(b->db,
                         "INSERT INTO tasks (id, agent, batch, position, "
                         "name, mode, status, enqueued_at, started_at, "
                         "finished_at, wait_us, run_us) VALUES (?1, 1, ?2, "
                         "0, ?5, 0, 2, ?3, ?3, ?3, 5, ?4)",
                         -1, &b->insert, NULL),
      SQLITE_OK);
  sqlite3_bind_text(b->insert, 5, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(b->insert, 2, schema_global_id(1, 1));
  assert_int_equal(sqlite3_exec(b->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
}

static void bulk_add(bulk *b, int64_t id, int64_t at, int64_t run_us) {
  sqlite3_reset(b->insert);
  sqlite3_bind_int64(b->insert, 1, id);
  sqlite3_bind_int64(b->insert, 3, at);
  sqlite3_bind_int64(b->insert, 4, run_us);
  assert_int_equal(sqlite3_step(b->insert), SQLITE_DONE);
}

static void bulk_commit(bulk *b) {
  sqlite3_finalize(b->insert);
  assert_int_equal(sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(rollup_rebuild(b->db), SQLITE_OK);
}

static void bulk_remove(bulk *b) {
  sqlite3_close(b->db);
  remove(b->path);
  rmdir(b->dir);
}

/* The dashboard's data over the bulk store (data_close() it). */
static data *bulk_data(const bulk *b) {
  char err[256];
  data *d = NULL;
  assert_int_equal(data_open(b->path, &d, err, sizeof err), 0);
  return d;
}

static void check_exact_run_percentiles(sqlite3 *db, const data_stats *stats,
                                        int64_t since);

/* A store of `recent` tasks named "bulk" in the last minute with run times
 * 1..recent us (shuffled: in an order unrelated to time, as they would
 * be), and twice as many in the minute before at 10 ms. */
static void bulk_two_minutes(bulk *b, int recent) {
  bulk_begin(b, "bulk");
  for (int i = 0; i < 3 * recent; i++) {
    int64_t at = i < recent
                     ? FIXTURE_NOW - 59000000 + i * (INT64_C(57000000) / recent)
                     : FIXTURE_NOW - 119000000 +
                           (i - recent) * (INT64_C(28500000) / recent);
    bulk_add(b, INT64_C(1000000) + i, at,
             i < recent ? (i * 7919) % recent + 1 : 10000);
  }
  bulk_commit(b);
}

/* The names row of "bulk" over the window with filter f (NULL: none),
 * which must be there. */
static data_name bulk_row(data *d, const filter *f, int64_t since) {
  data_name *names = NULL, row;
  int n = 0, found = 0;
  assert_int_equal(data_names_load(d, f, since, FIXTURE_NOW, &names, &n), 0);
  for (int i = 0; i < n; i++)
    if (names[i].name.ptr && strcmp(names[i].name.ptr, "bulk") == 0) {
      row = names[i];
      row.name = (data_text){NULL, 0};
      found = 1;
    }
  assert_true(found);
  data_names_free(names, n);
  return row;
}

/* A window of up to DATA_EXACT_MAX tasks is read whole: 9000 tasks, 3000
 * in the last minute, give exact counts (no "~") and exact percentiles. */
static void small_window_is_exact(void **state) {
  (void)state;
  bulk b;
  bulk_two_minutes(&b, 3000);
  data *d = bulk_data(&b);
  data_stats stats;
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, FIXTURE_NOW, &stats),
                   0);
  assert_true(stats.exact);
  check_exact_run_percentiles(b.db, &stats, WINDOW_15M);
  data_name row = bulk_row(d, NULL, WINDOW_15M);
  assert_false(row.estimated);
  assert_int_equal(row.count, 9000);
  data_close(d);
  bulk_remove(&b);
}

/* A percentile read from the rollups is within their bound of the exact
 * one. */
static void assert_near(int64_t got, int64_t exact) {
  if (llabs(got - exact) > exact / HIST_ERROR_DIV)
    fail_msg("%lld is not within %.2f %% of %lld", (long long)got,
             HIST_ERROR_PCT, (long long)exact);
}

static int64_t exact_run_percentile(sqlite3 *db, int64_t since,
                                    unsigned per_mille);

/* A window denser than DATA_EXACT_MAX without a filter (or with service
 * and name terms alone) is read from the rollups: 9000 tasks in the last
 * minute with run times 1..9000 us, 18000 in the minute before at 10 ms.
 * Counts are exact, percentiles within the rollups' bound, which the
 * header states; the names view's counts are exact, not estimated. */
static void dense_window_from_rollups(void **state) {
  (void)state;
  char err[256];
  bulk b;
  bulk_two_minutes(&b, 9000);
  data *d = bulk_data(&b);
  data_stats stats;
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, FIXTURE_NOW, &stats),
                   0);
  assert_false(stats.exact);
  assert_true(stats.pct_error == HIST_ERROR_PCT);
  /* The last minute: bulk 1..9000 plus a few fixture tasks. */
  int64_t minute = data_rollup_start(FIXTURE_NOW - DATA_MINUTE_US);
  assert_near(stats.run[0][0], exact_run_percentile(b.db, minute, 500));
  assert_near(stats.run[0][2], exact_run_percentile(b.db, minute, 990));
  /* The window: 18000 at 10 ms outweigh the 9000 faster ones. */
  assert_near(stats.run[1][0], 10000);
  assert_int_equal(stats.counts[SCHEMA_SUCCEEDED], 27000 + 16);
  data_name row = bulk_row(d, NULL, WINDOW_15M);
  assert_false(row.estimated);
  assert_true(row.pct_error == HIST_ERROR_PCT);
  assert_int_equal(row.count, 27000);
  assert_near(row.run[0], 10000);
  /* A name filter is answered from the rollups too. */
  filter *f = NULL;
  assert_int_equal(filter_parse("bulk", FIXTURE_NOW, &f, err, sizeof err), 0);
  row = bulk_row(d, f, WINDOW_15M);
  assert_false(row.estimated);
  assert_int_equal(row.count, 27000);
  filter_free(f);
  /* On the screen: the bound beside the percentiles, no "~". */
  ctl *c = ctl_new(d, "bulk.db");
  char *text = render(c, 120, 30);
  assert_non_null(strstr(text, "\xC2\xB1"
                               "1.6%"));
  assert_null(strstr(text, "~"));
  free(text);
  ctl_free(c);
  bulk_remove(&b);
}

/* A window denser than DATA_EXACT_MAX under a filter the rollups cannot
 * answer (host:) is sampled, with weights: 9000 tasks in the last minute
 * with run times 1..9000 us, 18000 in the minute before at 10 ms. The
 * names view marks its counts, and the weighted percentiles stay close. */
static void dense_window_is_sampled_with_weights(void **state) {
  (void)state;
  char err[256];
  bulk b;
  bulk_two_minutes(&b, 9000);
  data *d = bulk_data(&b);
  filter *f = NULL;
  assert_int_equal(filter_parse("host:web-1", FIXTURE_NOW, &f, err, sizeof err),
                   0);
  data_stats stats;
  assert_int_equal(data_stats_load(d, f, WINDOW_15M, FIXTURE_NOW, &stats), 0);
  assert_false(stats.exact);
  assert_true(stats.pct_error == 0);
  /* The last minute: bulk 1..9000 (sampled) plus a few fixture tasks. */
  assert_true(stats.run[0][0] > 4050 && stats.run[0][0] < 4950);
  assert_true(stats.run[0][2] > 8400 && stats.run[0][2] < 9300);
  /* The window: 18000 at 10 ms outweigh the 9000 faster ones. */
  assert_int_equal(stats.run[1][0], 10000);
  /* Counts are exact whatever the sample. */
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(b.db,
                         "SELECT count(*) FROM tasks t JOIN agents a ON a.id "
                         "= t.agent WHERE t.status = 2 AND a.host = 'web-1' "
                         "AND t.enqueued_at >= ?1",
                         -1, &st, NULL),
      SQLITE_OK);
  sqlite3_bind_int64(st, 1, WINDOW_15M);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(stats.counts[SCHEMA_SUCCEEDED], sqlite3_column_int64(st, 0));
  assert_true(sqlite3_column_int64(st, 0) >= 27000);
  sqlite3_finalize(st);
  data_name row = bulk_row(d, f, WINDOW_15M);
  assert_true(row.estimated);
  assert_true(row.count > 26700 && row.count < 27300);
  filter_free(f);
  /* On the screen: "~" on the estimated counts, and what it means. */
  ctl *c = ctl_new(d, "bulk.db");
  ctl_state(c)->kind = VIEW_NAMES;
  assert_int_equal(ctl_set_filter(c, "host:web-1", err, sizeof err), 0);
  char *text = render(c, 120, 30);
  assert_non_null(strstr(text, "~2")); /* ~27000, give or take */
  assert_non_null(
      strstr(text, "~ estimated from a sample: the window holds over 10000"));
  free(text);
  ctl_free(c);
  bulk_remove(&b);
}

/* The burst's figures over 20 frames, one a second, are the same in each;
 * from the rollups (rollups) or a sample. */
static void figures_hold_still(data *d, const filter *f, int rollups) {
  data_stats first;
  data_name *names = NULL;
  int n = 0;
  int64_t first_count = -1, first_p99 = -1;
  for (int k = 0; k < 20; k++) {
    int64_t now = FIXTURE_NOW + k * INT64_C(1000000);
    data_stats stats;
    assert_int_equal(
        data_stats_load(d, f, now - INT64_C(900000000), now, &stats), 0);
    assert_false(stats.exact);
    assert_true((stats.pct_error > 0) == rollups);
    assert_int_equal(
        data_names_load(d, f, now - INT64_C(900000000), now, &names, &n), 0);
    for (int i = 0; i < n; i++)
      if (names[i].name.ptr && strcmp(names[i].name.ptr, "burst") == 0) {
        if (k == 0) {
          first_count = names[i].count;
          first_p99 = names[i].run[2];
        }
        assert_int_equal(names[i].count, first_count);
        assert_int_equal(names[i].run[2], first_p99);
      }
    data_names_free(names, n);
    if (k == 0)
      first = stats;
    for (int w = 0; w < DATA_WINDOWS; w++)
      for (int p = 0; p < 3; p++) {
        assert_int_equal(stats.run[w][p], first.run[w][p]);
        assert_int_equal(stats.wait[w][p], first.wait[w][p]);
      }
  }
  assert_true(first_count > 24000 && first_count < 26000);
}

/* The sample's strata are aligned to the clock, not to "now", and the
 * rollups hold whole minutes: on a store that does not change, a burst of
 * 25000 tasks (more than is read whole) gives the same figures frame after
 * frame while it stays in the last minute, from the rollups (no filter)
 * and from the sample (a filter they cannot answer). */
static void sampled_figures_hold_still(void **state) {
  (void)state;
  char err[256];
  bulk b;
  bulk_begin(&b, "burst");
  for (int i = 0; i < 25000; i++)
    bulk_add(&b, INT64_C(1000000) + i,
             FIXTURE_NOW - INT64_C(30000000) + i * INT64_C(80),
             (i * 7919) % 25000 + 1);
  bulk_commit(&b);
  data *d = bulk_data(&b);
  static const char *const filters[2] = {"", "host:web-1"};
  for (int p = 0; p < 2; p++) {
    filter *f = NULL;
    assert_int_equal(filter_parse(filters[p], FIXTURE_NOW, &f, err, sizeof err),
                     0);
    figures_hold_still(d, f, p == 0);
    filter_free(f);
  }
  data_close(d);
  bulk_remove(&b);
}
/* The nearest-rank percentile (common/stats) of the run times of the tasks
 * enqueued from `since` on, straight from the store. */
static int64_t exact_run_percentile(sqlite3 *db, int64_t since,
                                    unsigned per_mille) {
  sqlite3_stmt *st = NULL;
  stats_values v;
  stats_values_init(&v);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT run_us FROM tasks WHERE "
                                      "enqueued_at >= ?1 AND run_us NOT NULL",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_int64(st, 1, since);
  while (sqlite3_step(st) == SQLITE_ROW)
    stats_values_push(&v, sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  stats_values_sort(&v);
  int64_t out = DATA_NULL;
  stats_percentile(&v, per_mille, &out);
  stats_values_fini(&v);
  return out;
}

/* The header's run percentiles, over the last minute and the window, equal
 * common/stats's nearest rank over every task. */
static void check_exact_run_percentiles(sqlite3 *db, const data_stats *stats,
                                        int64_t since) {
  static const unsigned per_mille[3] = {500, 950, 990};
  int64_t from[DATA_WINDOWS] = {FIXTURE_NOW - DATA_MINUTE_US, since};
  for (int w = 0; w < DATA_WINDOWS; w++)
    for (int k = 0; k < 3; k++) {
      int64_t want = exact_run_percentile(db, from[w], per_mille[k]);
      if (stats->run[w][k] != want)
        fail_msg("window %d p%u: %lld, exact %lld", w, per_mille[k] / 10,
                 (long long)stats->run[w][k], (long long)want);
    }
}

/* A store of n tasks named "spread" evenly over the last 15 minutes, with
 * run times 1..5003 us in an order unrelated to time. */
static void bulk_spread(bulk *b, int n) {
  bulk_begin(b, "spread");
  for (int i = 0; i < n; i++)
    bulk_add(b, INT64_C(2000000) + i,
             FIXTURE_NOW - 899900000 + i * (INT64_C(900000000) / n),
             (i * 7919) % 5003 + 1);
  bulk_commit(b);
}

/* One task a second over 15 minutes, in each window the key offers: the
 * header's percentiles are exact (the window is read whole). */
static void sparse_minutes_give_exact_percentiles(void **state) {
  (void)state;
  bulk b;
  bulk_spread(&b, 900);
  data *d = bulk_data(&b);
  static const int64_t windows[] = {300, 900, 3600, 86400};
  for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
    data_stats stats;
    int64_t since = FIXTURE_NOW - windows[i] * INT64_C(1000000);
    assert_int_equal(data_stats_load(d, NULL, since, FIXTURE_NOW, &stats), 0);
    assert_true(stats.exact);
    check_exact_run_percentiles(b.db, &stats, since);
  }
  data_close(d);
  bulk_remove(&b);
}

/* 12000 tasks over 15 minutes, more than is read whole: the header's
 * percentiles of the last minute and of each window (15 minutes: minutes
 * from the rollups; an hour and a day: whole hours from rollups_hour)
 * are within the stated bound of common/stats's nearest rank over every
 * task of the span's minutes, and the same again when loaded again a
 * second later (the store did not change). */
static void header_percentiles_within_their_bound(void **state) {
  (void)state;
  bulk b;
  bulk_spread(&b, 12000);
  data *d = bulk_data(&b);
  static const int64_t windows[] = {900, 3600, 86400};
  static const unsigned per_mille[3] = {500, 950, 990};
  for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
    data_stats stats, again;
    int64_t since = FIXTURE_NOW - windows[i] * INT64_C(1000000);
    assert_int_equal(data_stats_load(d, NULL, since, FIXTURE_NOW, &stats), 0);
    assert_false(stats.exact);
    assert_true(stats.pct_error == HIST_ERROR_PCT);
    int64_t from[DATA_WINDOWS] = {FIXTURE_NOW - DATA_MINUTE_US, since};
    for (int w = 0; w < DATA_WINDOWS; w++)
      for (int k = 0; k < 3; k++)
        assert_near(stats.run[w][k],
                    exact_run_percentile(b.db, data_rollup_start(from[w]),
                                         per_mille[k]));
    assert_int_equal(data_stats_load(d, NULL, since + 1000000,
                                     FIXTURE_NOW + 1000000, &again),
                     0);
    assert_memory_equal(stats.run, again.run, sizeof stats.run);
    assert_memory_equal(stats.wait, again.wait, sizeof stats.wait);
  }
  data_close(d);
  bulk_remove(&b);
}

/* A store of the fixture's tasks and `n` more over the 70 minutes before
 * now, in batches of three: run times with many ties, the 3 newest
 * batches (local ids from 1000 on, of agent 2) far slower than the rest. */
static void bulk_batches(bulk *b, int n) {
  bulk_begin(b, "bulk");
  sqlite3_stmt *ins = NULL, *bat = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(b->db,
                         "INSERT INTO tasks (id, agent, batch, position, "
                         "name, mode, status, enqueued_at, started_at, "
                         "finished_at, wait_us, run_us) VALUES (?1, 2, ?2, "
                         "?3, 'bulk', 0, 2, ?4, ?4, ?4 + ?5, 5, ?5)",
                         -1, &ins, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(b->db,
                                      "INSERT INTO batches (id, agent, label, "
                                      "created_at) VALUES (?1, 2, 'b', ?2)",
                                      -1, &bat, NULL),
                   SQLITE_OK);
  for (int i = 0; i < n; i++) {
    int64_t batch = schema_global_id(2, (uint64_t)(i / 3 + 1000));
    int64_t at = FIXTURE_NOW - INT64_C(4200000000) +
                 (INT64_C(4200000000) / n) * i;
    int64_t run = i >= n - 9 ? INT64_C(500000000000) + i : (i * 7919) % 5000;
    if (i % 3 == 0) {
      sqlite3_reset(bat);
      sqlite3_bind_int64(bat, 1, batch);
      sqlite3_bind_int64(bat, 2, at);
      assert_int_equal(sqlite3_step(bat), SQLITE_DONE);
    }
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, schema_global_id(2, (uint64_t)(n + i + 1)));
    sqlite3_bind_int64(ins, 2, batch);
    sqlite3_bind_int(ins, 3, i % 3);
    sqlite3_bind_int64(ins, 4, at);
    sqlite3_bind_int64(ins, 5, run);
    assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
  }
  sqlite3_finalize(ins);
  sqlite3_finalize(bat);
  bulk_commit(b);
}

/* The ids of the list by run time over the window, longest first, a page
 * of 50 at a time from the top (each page from the last row's key). */
static int walk_by_run(data *d, const data_scope *sc, int64_t *ids, int max) {
  int n = 0;
  data_key key;
  for (int page = 0; n < max; page++) {
    data_task *rows = NULL;
    int got = 0;
    assert_int_equal(data_tasks_page(d, NULL, sc, page ? &key : NULL, -1, 50,
                                     &rows, &got),
                     0);
    /* A page from a key starts with that row again. */
    for (int i = page ? 1 : 0; i < got && n < max; i++)
      ids[n++] = rows[i].id;
    int last = got < 2 && page;
    if (got > 0)
      key = data_task_key(&rows[got - 1], sc);
    data_tasks_free(rows, got);
    if (got == 0 || last)
      break;
  }
  return n;
}

/* Tasks by run time over an hour (and everything) come minute by minute
 * from the table slowest, in the order of the sort of the whole window
 * (the same list with the table dropped), page after page, past the
 * minutes' slowest too (700 rows: the sort takes over); batches by total run
 * time over a window of more than 50,000 tasks come from the batches of
 * the slowest tasks, marked, each with its exact total. */
static void slowest_minute_by_minute(void **state) {
  (void)state;
  bulk b;
  bulk_batches(&b, 60000);
  /* The last: 2.5 minutes, whose 700 slowest go past the minutes'
   * SCHEMA_SLOWEST_PER_MINUTE. */
  static const int64_t since[] = {FIXTURE_NOW - INT64_C(3617000000),
                                  INT64_MIN, FIXTURE_NOW - INT64_C(150000000)};
  static const char by_run[] =
      "(CASE WHEN run_us IS NOT NULL THEN run_us WHEN status = 1 THEN ?2 - "
      "started_at ELSE -1 END)";
  enum { N = 700 };
  static int64_t want[N], got[N], plain[N];
  for (int w = 0; w < 3; w++) {
    data *d = bulk_data(&b);
    data_scope sc = {since[w], FIXTURE_NOW, DATA_BY_RUN, 1};
    int n = expected_order(b.db, by_run, since[w], FIXTURE_NOW, want, N);
    assert_int_equal(n, N);
    assert_int_equal(walk_by_run(d, &sc, got, N), N);
    assert_memory_equal(got, want, sizeof want);
    data_close(d);
  }
  /* Batches: the three slow ones first, marked, with exact totals. */
  data *d = bulk_data(&b);
  data_scope sc = {since[0], FIXTURE_NOW, DATA_BY_RUN, 1};
  data_batch *rows = NULL;
  int nb = 0;
  assert_int_equal(data_batches_page(d, NULL, &sc, NULL, 10, &rows, &nb), 0);
  assert_int_equal(nb, 10);
  sqlite3_stmt *sum = NULL;
  /* A running task's run so far counts (the fixture's). */
  assert_int_equal(
      sqlite3_prepare_v2(b.db,
                         "SELECT sum(max(CASE WHEN run_us IS NOT NULL THEN "
                         "run_us WHEN status = 1 THEN ?3 - started_at ELSE -1 "
                         "END, 0)) FROM tasks WHERE batch = ?1 AND "
                         "enqueued_at >= ?2",
                         -1, &sum, NULL),
      SQLITE_OK);
  sqlite3_bind_int64(sum, 3, FIXTURE_NOW);
  for (int i = 0; i < nb; i++) {
    assert_true(rows[i].estimated);
    if (i < 3)
      assert_int_equal(rows[i].id,
                       schema_global_id(2, (uint64_t)(1000 + 20000 - 1 - i)));
    else
      assert_true(rows[i].value <= rows[i - 1].value);
    sqlite3_reset(sum);
    sqlite3_bind_int64(sum, 1, rows[i].id);
    sqlite3_bind_int64(sum, 2, since[0]);
    assert_int_equal(sqlite3_step(sum), SQLITE_ROW);
    assert_int_equal(rows[i].value, sqlite3_column_int64(sum, 0));
  }
  /* The next page goes on from the last one, and back up finds it. */
  data_key key = rows[nb - 1].key, above;
  int64_t first = rows[0].id;
  data_batches_free(rows, nb);
  assert_int_equal(data_batches_page(d, NULL, &sc, &key, 10, &rows, &nb), 0);
  assert_int_equal(nb, 10);
  assert_true(rows[0].estimated);
  assert_int_equal(data_batch_before(d, NULL, &sc, &rows[0].key, rows[0].id,
                                     9, &above),
                   0);
  assert_int_equal(above.id, first);
  data_batches_free(rows, nb);
  sqlite3_finalize(sum);
  data_close(d);
  /* Without the table (a store made before it): the sort of the window,
   * the same list. */
  assert_int_equal(
      sqlite3_exec(b.db, "DROP TABLE slowest", NULL, NULL, NULL), SQLITE_OK);
  d = bulk_data(&b);
  assert_int_equal(walk_by_run(d, &sc, plain, N), N);
  expected_order(b.db, by_run, since[0], FIXTURE_NOW, want, N);
  assert_memory_equal(plain, want, sizeof want);
  data_close(d);
  bulk_remove(&b);
}

/* The header's counts over a large window come from the rollups' whole
 * minutes, the raw rows of the edge and the tasks not final yet: the same
 * as counting the raw rows, in total and by state, with and without a
 * name filter. */
static void header_total_from_rollups(void **state) {
  (void)state;
  char err[256];
  bulk b;
  bulk_batches(&b, 30000);
  static const int64_t since[] = {FIXTURE_NOW - INT64_C(3617000000),
                                  FIXTURE_NOW - INT64_C(900000000),
                                  FIXTURE_NOW - INT64_C(61000000), INT64_MIN};
  /* A since: term narrows the window; the rollups still answer. */
  static const struct {
    const char *terms, *name;
    int64_t since;
  } filters[] = {{"", "", INT64_MIN},
                 {"name:bulk", "bulk", INT64_MIN},
                 {"name:send_email", "send_email", INT64_MIN},
                 {"name:bulk since:20m", "bulk", FIXTURE_NOW - INT64_C(1200000000)},
                 {"since:50m", "", FIXTURE_NOW - INT64_C(3000000000)}};
  data *d = bulk_data(&b);
  sqlite3_stmt *count = NULL;
  assert_int_equal(sqlite3_prepare_v2(b.db,
                                      "SELECT count(*), sum(status = ?4) "
                                      "FROM tasks WHERE enqueued_at >= "
                                      "max(?1, ?3) AND (?2 = '' OR name = "
                                      "?2)",
                                      -1, &count, NULL),
                   SQLITE_OK);
  for (size_t t = 0; t < sizeof filters / sizeof filters[0]; t++) {
    filter *f = NULL;
    assert_int_equal(
        filter_parse(filters[t].terms, FIXTURE_NOW, &f, err, sizeof err), 0);
    for (size_t w = 0; w < 4; w++) {
      data_stats stats;
      assert_int_equal(data_stats_load(d, f, since[w], FIXTURE_NOW, &stats),
                       0);
      /* The total, and each state's count. */
      for (int state = 0; state < SCHEMA_STATUS_COUNT; state++) {
        sqlite3_reset(count);
        sqlite3_bind_int64(count, 1, since[w]);
        sqlite3_bind_text(count, 2, filters[t].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(count, 3, filters[t].since);
        sqlite3_bind_int(count, 4, state);
        assert_int_equal(sqlite3_step(count), SQLITE_ROW);
        assert_int_equal(stats.total, sqlite3_column_int64(count, 0));
        assert_int_equal(stats.counts[state], sqlite3_column_int64(count, 1));
      }
    }
    filter_free(f);
  }
  sqlite3_finalize(count);
  data_close(d);
  bulk_remove(&b);
}

/* A store of 50 tasks named "recent" of 100 us, one every `step` us from
 * `first` on. */
static void bulk_recent(bulk *b, int64_t first, int64_t step) {
  bulk_begin(b, "recent");
  for (int i = 0; i < 50; i++)
    bulk_add(b, INT64_C(3000000) + i, first + i * step, 100);
  bulk_commit(b);
}

static int64_t spark_sum(const data_stats *s) {
  int64_t n = 0;
  for (int i = 0; i < DATA_SPARK_N; i++)
    n += s->spark_tasks[i];
  return n;
}

/* The sparkline's counts of seconds that settled (ended 2 s before now)
 * are kept from one load to the next, the recent ones counted again each
 * time; kept counts are counted again after 30 s, so a row that comes
 * late into a settled second shows then. A new filter counts anew. */
static void spark_keeps_settled_seconds(void **state) {
  (void)state;
  char err[256];
  bulk b;
  bulk_recent(&b, FIXTURE_NOW - INT64_C(100000000), INT64_C(1000000));
  data *d = bulk_data(&b);
  data_stats first, again;
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, FIXTURE_NOW, &first),
                   0);
  /* One task late into a settled second, one into the last second. */
  char *sql = sqlite3_mprintf(
      "INSERT INTO tasks (id, agent, batch, position, name, mode, status, "
      "enqueued_at, run_us) VALUES (4000000, 1, 0, 0, 'late', 0, 2, %lld, 5), "
      "(4000001, 1, 0, 0, 'late', 0, 2, %lld, 5)",
      (long long)(FIXTURE_NOW - INT64_C(100000000)),
      (long long)(FIXTURE_NOW - INT64_C(500000)));
  assert_int_equal(sqlite3_exec(b.db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_free(sql);
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, FIXTURE_NOW, &again),
                   0);
  assert_int_equal(spark_sum(&again), spark_sum(&first) + 1);
  filter *f = NULL;
  assert_int_equal(filter_parse("late", FIXTURE_NOW, &f, err, sizeof err), 0);
  assert_int_equal(data_stats_load(d, f, WINDOW_15M, FIXTURE_NOW, &again), 0);
  assert_int_equal(spark_sum(&again), 2);
  data_filter_changed(d);
  filter_free(f);
  int64_t later = FIXTURE_NOW + INT64_C(31000000);
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, later, &again), 0);
  assert_int_equal(spark_sum(&again), spark_sum(&first) + 2);
  data_close(d);
  bulk_remove(&b);
}

/* tasks/s is over the last 10 seconds: once events stop it falls to 0,
 * as the clock moves, with nothing read from the store. */
static void rates_fall_to_zero(void **state) {
  (void)state;
  bulk b;
  bulk_recent(&b, FIXTURE_NOW - INT64_C(4000000), INT64_C(60000));
  data *d = bulk_data(&b);
  data_stats stats;
  assert_int_equal(data_stats_load(d, NULL, WINDOW_15M, FIXTURE_NOW, &stats),
                   0);
  assert_true(data_rate(&stats, FIXTURE_NOW, 0) >= 5.0);
  assert_true(data_rate(&stats, FIXTURE_NOW + INT64_C(5000000), 0) >= 5.0);
  assert_true(data_rate(&stats, FIXTURE_NOW + INT64_C(7000000), 0) > 0);
  assert_true(data_rate(&stats, FIXTURE_NOW + INT64_C(11000000), 0) == 0.0);
  assert_true(data_rate(&stats, FIXTURE_NOW + INT64_C(600000000), 0) == 0.0);
  data_close(d);
  bulk_remove(&b);
}

static void grid_keeps_wide_characters_whole(void **state) {
  (void)state;
  grid *g = grid_new(6, 1, 0);
  grid_style st = {0, 0};
  /* "中文名" at column 1: the third character does not fit whole. */
  assert_int_equal(
      grid_puts(g, 1, 0, -1, st, "\xe4\xb8\xad\xe6\x96\x87\xe5\x90\x8d"), 5);
  char *t = grid_text(g);
  assert_string_equal(t, " \xe4\xb8\xad\xe6\x96\x87\xe2\x80\xa6\n");
  free(t);
  /* Overwriting the right half of a wide character blanks its left. */
  grid_puts(g, 2, 0, 1, st, "x");
  t = grid_text(g);
  assert_string_equal(t, "  x\xe6\x96\x87\xe2\x80\xa6\n");
  free(t);
  grid_free(g);
  g = grid_new(4, 1, SANITIZE_ASCII);
  grid_puts(g, 0, 0, -1, st, "\x1b\xe4\xb8\xad");
  t = grid_text(g);
  assert_string_equal(t, "^[?\n");
  free(t);
  grid_free(g);
}

/* Names and labels may hold NUL bytes: the copies keep every byte, so the
 * lists compare and show the whole text, the NUL as a visible symbol. */
static void nul_bytes_in_names_and_labels(void **state) {
  fixture *f = *state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db,
                   "UPDATE batches SET label = CAST(X'4c005858585858585858' "
                   "AS TEXT); UPDATE tasks SET name = "
                   "CAST(X'4e005959595959595959' AS TEXT) WHERE id = "
                   "(SELECT min(id) FROM tasks)",
                   NULL, NULL, NULL),
      SQLITE_OK);
  /* The rollups as the collector would have written them. */
  assert_int_equal(rollup_rebuild(db), SQLITE_OK);
  sqlite3_close(db);
  view_state *s = ctl_state(f->c);
  s->kind = VIEW_NAMES;
  char *text = render(f->c, 200, 60);
  int found = 0;
  for (int i = 0; i < s->nnames; i++)
    found |= s->names[i].name.len == 10 &&
             memcmp(s->names[i].name.ptr, "N\0YYYYYYYY", 10) == 0;
  assert_true(found);
  assert_non_null(strstr(text, "N\xe2\x90\x80YYYYYYYY"));
  free(text);
  s->kind = VIEW_BATCHES;
  text = render(f->c, 200, 60);
  assert_true(s->nbatches > 0);
  assert_int_equal(s->batches[0].label.len, 10);
  assert_memory_equal(s->batches[0].label.ptr, "L\0XXXXXXXX", 10);
  assert_non_null(strstr(text, "L\xe2\x90\x80XXXXXXXX"));
  free(text);
}

/* No event yet (an empty store): the header says so, without computing
 * now - DATA_NULL (signed overflow; UBSan reports it). */
static void no_event_yet(void **state) {
  fixture *f = *state;
  ctl_resize(f->c, 80, 24);
  assert_int_equal(ctl_load(f->c, FIXTURE_NOW), 0);
  ctl_state(f->c)->stats.last_event_at = DATA_NULL;
  grid *g = grid_new(80, 24, 0);
  view_render(ctl_state(f->c), g);
  char *text = grid_text(g);
  grid_free(g);
  assert_non_null(strstr(text, "WAITING no event yet"));
  free(text);
}

int main(int argc, char **argv) {
  if (argc > 1)
    golden_dir = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(golden_views, setup, teardown),
      cmocka_unit_test_setup_teardown(golden_ascii, setup, teardown),
      cmocka_unit_test_setup_teardown(golden_help_and_detail, setup, teardown),
      cmocka_unit_test_setup_teardown(stale_store, setup_stale, teardown),
      cmocka_unit_test_setup_teardown(hostile_strings_are_visible, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(keys_move_pause_and_follow, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(filter_prompt_and_failures, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(views_and_sort, setup, teardown),
      cmocka_unit_test_setup_teardown(batches_scroll_both_ways, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(tasks_sorted_by_run_wait_and_state, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(batches_sorted_by_run, setup, teardown),
      cmocka_unit_test_setup_teardown(window_key_covers_header_and_lists, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(header_follows_the_filter, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(names_page_and_mouse_sized_steps, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(every_size_renders, setup, teardown),
      cmocka_unit_test_setup_teardown(states_are_words_and_colours, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(nul_bytes_in_names_and_labels, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(no_event_yet, setup, teardown),
      cmocka_unit_test(grid_keeps_wide_characters_whole),
      cmocka_unit_test(open_refuses_what_is_not_a_store),
      cmocka_unit_test(small_window_is_exact),
      cmocka_unit_test(dense_window_from_rollups),
      cmocka_unit_test(slowest_minute_by_minute),
      cmocka_unit_test(header_total_from_rollups),
      cmocka_unit_test(spark_keeps_settled_seconds),
      cmocka_unit_test(dense_window_is_sampled_with_weights),
      cmocka_unit_test(sampled_figures_hold_still),
      cmocka_unit_test(sparse_minutes_give_exact_percentiles),
      cmocka_unit_test(header_percentiles_within_their_bound),
      cmocka_unit_test(rates_fall_to_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
