/*
 * query_follow - `taskwatch query --follow`: after the listing, print each
 * matching task once as it reaches a final state, until SIGINT or SIGTERM.
 *
 * The store has no change log, so follow works from what the collector
 * keeps per agent: `events` (how many it stored) and `last_event_at` (the
 * newest event time, on that agent's own clock). An agent derives all its
 * times from one monotonic clock, so anything new from it is stamped after
 * the `last_event_at` seen at the previous look, give or take the few
 * milliseconds by which its threads' buffers drain out of order (SLACK).
 * Hence each look:
 *
 *   1. skips everything when the reader says nobody committed (PRAGMA
 *      data_version, common/reader);
 *   2. reads the agents, and for those whose counters moved scans the tasks
 *      enqueued since that agent's previous `last_event_at` - SLACK (one
 *      index range; new tasks and quick ones are all there);
 *      An agent that appeared since the previous look is read whole, by
 *      its id range (store ids carry the agent in their high bits);
 *   3. re-reads by id the tasks that were queued or running when last seen
 *      (the "pending" set), which catches slow tasks, tasks of agents that
 *      come back after an outage, and tasks the collector declares lost;
 *   4. adds to the pending set the tasks the collector holds in memory
 *      (the table inflight, common/held.h): their events moved the
 *      counters, but their rows come later (when they end, or as queued or
 *      running after a quarter of a second), out of reach of the windows.
 *
 * A task is printed when first seen in a final state and matching the
 * filter; the "done" set remembers it (until its agent's window has moved
 * past it) so overlapping scans never print it twice. This needs no
 * clock agreement between agents, the collector and this process.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "held.h"
#include "query.h"
#include "schema.h"
#include "xalloc.h"

#define SLACK_US INT64_C(2000000)

/* ---- id map: int64 id (> 0) -> int64 value, with deletion ---------------- */

#define SLOT_EMPTY 0
#define SLOT_GONE (-1)

typedef struct idmap {
  int64_t *keys;
  int64_t *values;
  size_t cap, used, live; /* used counts live and deleted slots */
} idmap;

static size_t slot_of(int64_t key, size_t cap) {
  uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15u;
  return (size_t)(h >> 17) & (cap - 1);
}

static void idmap_put(idmap *m, int64_t key, int64_t value);

static void idmap_rehash(idmap *m, size_t cap) {
  idmap old = *m;
  m->cap = cap;
  m->keys = xcalloc(cap, sizeof(int64_t));
  m->values = xcalloc(cap, sizeof(int64_t));
  m->used = m->live = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.keys[i] > 0)
      idmap_put(m, old.keys[i], old.values[i]);
  free(old.keys);
  free(old.values);
}

static int64_t *idmap_find(const idmap *m, int64_t key) {
  if (m->cap == 0)
    return NULL;
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key)
      return &m->values[i];
    if (m->keys[i] == SLOT_EMPTY)
      return NULL;
  }
}

static void idmap_put(idmap *m, int64_t key, int64_t value) {
  int64_t *v = idmap_find(m, key);
  if (v != NULL) {
    *v = value;
    return;
  }
  if ((m->used + 1) * 2 > m->cap) {
    /* Probing masks with cap - 1, so cap must stay a power of two. */
    size_t cap = 64;
    while (cap < m->live * 4)
      cap *= 2;
    idmap_rehash(m, cap);
  }
  size_t i = slot_of(key, m->cap);
  while (m->keys[i] > 0)
    i = (i + 1) & (m->cap - 1);
  m->used += m->keys[i] == SLOT_EMPTY;
  m->live++;
  m->keys[i] = key;
  m->values[i] = value;
}

static void idmap_remove(idmap *m, int64_t key) {
  int64_t *v = idmap_find(m, key);
  if (v == NULL)
    return;
  m->keys[v - m->values] = SLOT_GONE;
  m->live--;
}

static void idmap_fini(idmap *m) {
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof(*m));
}

/* ---- state --------------------------------------------------------------- */

typedef struct follow {
  reader *r;
  sqlite3 *db; /* the reader's connection */
  const query_opts *o;
  query_out *out;
  sqlite3_stmt *agents, *scan, *by_id, *by_agent;
  sqlite3_stmt *held; /* NULL: a store without the table inflight */
  /* Agents that appeared since the last look: all their tasks are new. */
  int64_t *fresh;
  size_t nfresh, capfresh;
  /* Per agent (store id): events and last_event_at at the last look. */
  idmap events, last_at;
  /* Per agent, the start of the window the next scan must cover. */
  idmap window;
  idmap pending; /* task id -> enqueued_at, queued or running when seen */
  idmap done;    /* task id -> enqueued_at, seen final */
  size_t done_pruned_at;
} follow;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static int64_t agent_of(int64_t task_id) {
  return (int64_t)((uint64_t)task_id >> SCHEMA_LOCAL_BITS);
}

/* The filter's match comes as one more column after the task's. */
static sqlite3_stmt *prepare_tasks(follow *f, const char *where) {
  char *filter = filter_sql_at(f->o->filter, 3);
  format_buf sql;
  format_buf_init(&sql);
  format_buf_printf(
      &sql, "SELECT " READER_TASK_COLUMNS ", (%s)" READER_TASK_FROM " WHERE %s",
      filter, where);
  free(filter);
  sqlite3_stmt *st = query_prepare(f->db, format_buf_str(&sql));
  format_buf_fini(&sql);
  if (st != NULL && filter_bind(f->o->filter, st, 3) < 0) {
    sqlite3_finalize(st);
    st = NULL;
  }
  return st;
}

/* Handles one task read by `scan`, `by_id` or `by_agent`: prints it when
 * it is final, new and matching (the statement's column after the task's);
 * tracks it as pending otherwise. */
static void consider(follow *f, sqlite3_stmt *st, const reader_task *t,
                     int printing) {
  if (t->status == SCHEMA_QUEUED || t->status == SCHEMA_RUNNING) {
    idmap_put(&f->pending, t->id, t->enqueued_at);
    return;
  }
  idmap_remove(&f->pending, t->id);
  if (idmap_find(&f->done, t->id) != NULL)
    return;
  idmap_put(&f->done, t->id, t->enqueued_at);
  if (printing && sqlite3_column_int(st, READER_TASK_NCOLUMNS))
    query_out_task(f->out, t);
}

static int step_all(follow *f, sqlite3_stmt *st, int printing) {
  int rc;
  reader_task t;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    reader_task_read(st, 0, &t);
    consider(f, st, &t, printing);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(f->db));
    return -1;
  }
  return 0;
}

/* Scans tasks enqueued from `from` on, keeping those of agents whose
 * window they fall in. */
static int scan_windows(follow *f, int64_t from, int printing) {
  sqlite3_bind_int64(f->scan, 1, from);
  int rc;
  reader_task t;
  while ((rc = sqlite3_step(f->scan)) == SQLITE_ROW) {
    reader_task_read(f->scan, 0, &t);
    const int64_t *start = idmap_find(&f->window, t.agent);
    if (start != NULL && t.enqueued_at >= *start)
      consider(f, f->scan, &t, printing);
  }
  sqlite3_reset(f->scan);
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "taskwatch query: %s\n", sqlite3_errmsg(f->db));
    return -1;
  }
  return 0;
}

/* Reads the agents; opens a window for each whose counters moved (all of
 * them on the first look). Returns the earliest window start, or
 * INT64_MAX when no agent moved. */
static int64_t moved_agents(follow *f, int first) {
  int64_t earliest = INT64_MAX;
  while (sqlite3_step(f->agents) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(f->agents, 0);
    int64_t events = sqlite3_column_int64(f->agents, 1);
    int has_last = sqlite3_column_type(f->agents, 2) != SQLITE_NULL;
    int64_t last = has_last ? sqlite3_column_int64(f->agents, 2)
                            : sqlite3_column_int64(f->agents, 3);
    const int64_t *prev_events = idmap_find(&f->events, id);
    const int64_t *prev_last = idmap_find(&f->last_at, id);
    int moved = first || prev_events == NULL || *prev_events != events ||
                prev_last == NULL || *prev_last != last;
    if (moved) {
      /* New activity is stamped after what was newest before (or, for a
       * new agent, after it started), minus the slack. */
      if (!first && prev_last == NULL) {
        if (f->nfresh == f->capfresh) {
          f->capfresh = f->capfresh ? 2 * f->capfresh : 8;
          f->fresh = xrealloc(f->fresh, f->capfresh * sizeof(int64_t));
        }
        f->fresh[f->nfresh++] = id;
      }
      int64_t start =
          (first || prev_last == NULL ? last : *prev_last) - SLACK_US;
      idmap_put(&f->window, id, start);
      if (start < earliest)
        earliest = start;
    } else {
      idmap_remove(&f->window, id);
    }
    idmap_put(&f->events, id, events);
    idmap_put(&f->last_at, id, last);
  }
  sqlite3_reset(f->agents);
  return earliest;
}

/* Reads every task of the agents that are new since the last look, by
 * their id range (their clocks need not agree with anyone's). */
static int scan_fresh(follow *f, int printing) {
  int rc = 0;
  for (size_t i = 0; i < f->nfresh && rc == 0; i++) {
    int64_t lo = (int64_t)((uint64_t)f->fresh[i] << SCHEMA_LOCAL_BITS);
    sqlite3_bind_int64(f->by_agent, 1, lo);
    sqlite3_bind_int64(f->by_agent, 2, lo + (int64_t)SCHEMA_LOCAL_MASK);
    rc = step_all(f, f->by_agent, printing);
  }
  f->nfresh = 0;
  return rc;
}

/* Re-reads every pending task by id. */
static int recheck_pending(follow *f, int printing) {
  size_t n = 0;
  int64_t *ids = xmalloc((f->pending.live + 1) * sizeof(int64_t));
  for (size_t i = 0; i < f->pending.cap; i++)
    if (f->pending.keys[i] > 0)
      ids[n++] = f->pending.keys[i];
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    sqlite3_bind_int64(f->by_id, 1, ids[i]);
    idmap_remove(&f->pending, ids[i]); /* back in if still pending */
    rc = step_all(f, f->by_id, printing);
  }
  free(ids);
  return rc;
}

static void held_pending(const held_task *t, void *arg) {
  follow *f = arg;
  if (idmap_find(&f->done, t->id) == NULL)
    idmap_put(&f->pending, t->id, t->enqueued_at);
}

/* Makes every task the collector holds pending: its row is looked for by
 * id from the next look on. */
static void add_held(follow *f) {
  if (f->held == NULL)
    return;
  while (sqlite3_step(f->held) == SQLITE_ROW)
    held_decode(sqlite3_column_blob(f->held, 0),
                (size_t)sqlite3_column_bytes(f->held, 0), held_pending, f);
  sqlite3_reset(f->held);
}

/* Forgets done tasks that no window can reach any more. */
static void prune_done(follow *f) {
  if (f->done.live < 2 * f->done_pruned_at + 4096)
    return;
  for (size_t i = 0; i < f->done.cap; i++) {
    int64_t id = f->done.keys[i];
    if (id <= 0)
      continue;
    const int64_t *last = idmap_find(&f->last_at, agent_of(id));
    if (last == NULL || f->done.values[i] < *last - 2 * SLACK_US) {
      f->done.keys[i] = SLOT_GONE;
      f->done.live--;
    }
  }
  f->done_pruned_at = f->done.live;
}

/* One look at the store; printing is 0 for the first, which only learns
 * what is already there. */
static int look(follow *f, int printing) {
  if (!reader_changed(f->r) && printing)
    return 0;
  /* One read transaction, so the agents and tasks agree. */
  sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL);
  int64_t from = moved_agents(f, !printing);
  int rc = 0;
  if (from != INT64_MAX)
    rc = scan_windows(f, from, printing);
  if (rc == 0)
    rc = scan_fresh(f, printing);
  if (rc == 0)
    rc = recheck_pending(f, printing);
  if (rc == 0)
    add_held(f);
  sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL);
  prune_done(f);
  return rc;
}

static int follow_init(follow *f) {
  f->agents = query_prepare(
      f->db, "SELECT id, events, last_event_at, started_at FROM agents");
  f->scan = prepare_tasks(f, "t.enqueued_at >= ?1");
  f->by_id = prepare_tasks(f, "t.id = ?1");
  f->by_agent = prepare_tasks(f, "t.id BETWEEN ?1 AND ?2");
  if (!f->agents || !f->scan || !f->by_id || !f->by_agent)
    return -1;
  /* Version 6 on (docs/schema.md); older stores have nothing held. */
  if (sqlite3_prepare_v2(f->db, "SELECT tasks FROM inflight", -1, &f->held,
                         NULL) != SQLITE_OK)
    f->held = NULL;
  /* Everything queued or running now is pending (the partial index
   * answers this without touching succeeded tasks). */
  sqlite3_stmt *st = query_prepare(
      f->db, "SELECT id, enqueued_at FROM tasks WHERE " SCHEMA_SQL_ACTIVE);
  if (st == NULL)
    return -1;
  while (sqlite3_step(st) == SQLITE_ROW)
    idmap_put(&f->pending, sqlite3_column_int64(st, 0),
              sqlite3_column_int64(st, 1));
  sqlite3_finalize(st);
  return look(f, 0);
}

static void pause_for(int64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int query_follow(reader *r, const query_opts *o, query_out *out) {
  follow f;
  memset(&f, 0, sizeof(f));
  f.r = r;
  f.db = reader_db(r);
  f.o = o;
  f.out = out;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int rc = follow_init(&f);
  while (rc == 0 && !stop_requested) {
    pause_for(o->interval_us);
    if (!stop_requested)
      rc = look(&f, 1);
    query_out_flush(out);
  }
  sqlite3_finalize(f.agents);
  sqlite3_finalize(f.scan);
  sqlite3_finalize(f.by_id);
  sqlite3_finalize(f.by_agent);
  sqlite3_finalize(f.held);
  free(f.fresh);
  idmap_fini(&f.events);
  idmap_fini(&f.last_at);
  idmap_fini(&f.window);
  idmap_fini(&f.pending);
  idmap_fini(&f.done);
  return rc == 0 ? 0 : 2;
}
