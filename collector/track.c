/*
 * track - a u64map from task id to a pooled entry, one from batch id to
 * its count of open tasks, and one from agent id to what the metrics need
 * of an agent. Rows are applied in the writer's order (store.c): agent ops
 * first, then the task rows, then the instances turned lost.
 */
#include "track.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "schema.h"
#include "u64map.h"
#include "xalloc.h"

#define POOL_CHUNK 4096

typedef struct open_task {
  struct open_task *next_free;
  int64_t batch;
  int64_t enqueued_at;
  int64_t started_at; /* INT64_MIN: not started */
  uint32_t series;
  uint32_t service;
  uint8_t status; /* queued or running */
} open_task;

typedef struct agent_info {
  uint32_t service;
  int connected;
  /* The newest counts the agent reported, by metrics_drop: events, and
   * tasks and batches refused whole. */
  int64_t dropped[METRICS_DROP_KINDS];
} agent_info;

typedef struct pool_chunk {
  struct pool_chunk *next;
  open_task tasks[POOL_CHUNK];
} pool_chunk;

struct track {
  metrics *metrics;
  sqlite3 *db;
  sqlite3_stmt *find_agent;
  sqlite3_stmt *find_task;
  size_t max_tasks;
  u64map tasks;   /* task id -> open_task */
  u64map batches; /* batch id -> open tasks, as a pointer-sized count */
  u64map agents;  /* agent id -> agent_info */
  pool_chunk *chunks;
  open_task *free_list;
  uint64_t untracked;
  /* Scratch of track_batch: batches a final row touched. */
  int64_t *touched;
  size_t ntouched, captouched;
};

/* ---- the pool and the maps ---------------------------------------------- */

static open_task *task_alloc(track *t) {
  if (t->free_list == NULL) {
    pool_chunk *c = xmalloc(sizeof(*c));
    c->next = t->chunks;
    t->chunks = c;
    for (size_t i = 0; i < POOL_CHUNK; i++) {
      c->tasks[i].next_free = t->free_list;
      t->free_list = &c->tasks[i];
    }
  }
  open_task *e = t->free_list;
  t->free_list = e->next_free;
  return e;
}

static void task_release(track *t, int64_t id, open_task *e) {
  u64map_del(&t->tasks, (uint64_t)id);
  e->next_free = t->free_list;
  t->free_list = e;
}

static int64_t batch_open(const track *t, int64_t batch) {
  return (int64_t)(uintptr_t)u64map_get(&t->batches, (uint64_t)batch);
}

static void batch_add(track *t, int64_t batch, int64_t delta) {
  int64_t n = batch_open(t, batch) + delta;
  if (n > 0)
    u64map_put(&t->batches, (uint64_t)batch, (void *)(uintptr_t)n);
  else
    u64map_del(&t->batches, (uint64_t)batch);
}

static void push_op(track_ops *ops, int kind, uint32_t index, int status,
                    int64_t a, int64_t b) {
  if (ops->n == ops->cap) {
    ops->cap = ops->cap ? ops->cap * 2 : 256;
    ops->ops = xrealloc(ops->ops, ops->cap * sizeof(*ops->ops));
  }
  ops->ops[ops->n++] = (track_op){(uint8_t)kind, (uint8_t)status, index, a, b};
}

/* ---- agents ------------------------------------------------------------- */

static agent_info *agent_new(track *t, int64_t id, const char *service,
                             size_t len) {
  agent_info *a = xcalloc(1, sizeof(*a));
  a->service = metrics_service(t->metrics, service, len);
  u64map_put(&t->agents, (uint64_t)id, a);
  return a;
}

/* The agent's entry; an agent this process has not seen (stored by an
 * earlier run) is read from the store. */
static agent_info *agent_get(track *t, int64_t id) {
  agent_info *a = u64map_get(&t->agents, (uint64_t)id);
  if (a != NULL)
    return a;
  sqlite3_stmt *st = t->find_agent;
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW) {
    a = agent_new(t, id, (const char *)sqlite3_column_blob(st, 0),
                  (size_t)sqlite3_column_bytes(st, 0));
    for (int k = 0; k < METRICS_DROP_KINDS; k++)
      a->dropped[k] = sqlite3_column_int64(st, 1 + k);
  } else {
    a = agent_new(t, id, "", 0);
  }
  sqlite3_reset(st);
  return a;
}

static void set_connected(track *t, const agent_op *op, int connected,
                          track_ops *ops) {
  agent_info *a = u64map_get(&t->agents, (uint64_t)op->agent);
  if (a == NULL && op->kind == AGENT_OP_NEW)
    a = agent_new(t, op->agent, op->service.ptr, op->service.len);
  else if (a == NULL)
    a = agent_get(t, op->agent);
  if (a->connected != connected)
    push_op(ops, TRACK_CONNECTED, a->service, 0, connected ? 1 : -1, 0);
  a->connected = connected;
}

static void agent_op_apply(track *t, const agent_op *op, track_ops *ops) {
  switch (op->kind) {
  case AGENT_OP_NEW:
  case AGENT_OP_CONNECT:
    set_connected(t, op, 1, ops);
    break;
  case AGENT_OP_DISCONNECT:
    set_connected(t, op, 0, ops);
    break;
  case AGENT_OP_HEALTH: {
    agent_info *a = agent_get(t, op->agent);
    int64_t now[METRICS_DROP_KINDS] = {
        [METRICS_DROP_EVENTS] = op->a,
        [METRICS_DROP_TASKS] = op->d,
        [METRICS_DROP_BATCHES] = op->c,
    };
    for (int k = 0; k < METRICS_DROP_KINDS; k++) {
      if (now[k] > a->dropped[k])
        push_op(ops, TRACK_DROPS, a->service, k, now[k] - a->dropped[k], 0);
      a->dropped[k] = now[k];
    }
    break;
  }
  default:
    break;
  }
}

/* An agent that disconnected is forgotten once its batch is worked out
 * (a fleet that recycles its processes would grow the map without end);
 * if it comes back, or a row of it remains, the store has it. */
static void forget_agent(track *t, int64_t id) {
  agent_info *a = u64map_get(&t->agents, (uint64_t)id);
  if (a == NULL || a->connected)
    return;
  u64map_del(&t->agents, (uint64_t)id);
  free(a);
}

/* ---- tasks -------------------------------------------------------------- */

static void touch(track *t, int64_t batch) {
  if (t->ntouched == t->captouched) {
    t->captouched = t->captouched ? t->captouched * 2 : 256;
    t->touched = xrealloc(t->touched, t->captouched * sizeof(*t->touched));
  }
  t->touched[t->ntouched++] = batch;
}

/* A task reached final `status`: its metrics, and its batch to check. */
static void final(track *t, track_ops *ops, uint32_t series, int status,
                  int64_t enqueued_at, int64_t started_at, int64_t end,
                  int64_t batch) {
  int64_t wait = started_at != INT64_MIN ? started_at - enqueued_at : -1;
  int64_t run = started_at != INT64_MIN &&
                        (status == SCHEMA_SUCCEEDED || status == SCHEMA_FAILED)
                    ? end - started_at
                    : -1;
  push_op(ops, TRACK_FINAL, series, status, wait, run);
  touch(t, batch);
}

static int is_final(int status) {
  return status >= SCHEMA_SUCCEEDED;
}

/* An INSERT row: a task this batch enqueues. */
static void new_task(track *t, const task_row *r, track_ops *ops) {
  if (u64map_get(&t->tasks, (uint64_t)r->id) != NULL)
    return; /* a repeated id: the store skips the row */
  agent_info *a = agent_get(t, r->agent);
  uint32_t series =
      metrics_series(t->metrics, a->service, r->name->text, r->name->len);
  int64_t started = r->have & HAVE_START ? r->started_at : INT64_MIN;
  if (is_final(r->status)) {
    final(t, ops, series, r->status, r->enqueued_at, started, r->finished_at,
          r->batch);
    return;
  }
  push_op(ops, TRACK_PROGRESS, a->service, r->status, 1, 0);
  batch_add(t, r->batch, 1);
  if (t->tasks.count >= t->max_tasks) {
    t->untracked++;
    return;
  }
  open_task *e = task_alloc(t);
  e->batch = r->batch;
  e->enqueued_at = r->enqueued_at;
  e->started_at = started;
  e->series = series;
  e->service = a->service;
  e->status = r->status;
  u64map_put(&t->tasks, (uint64_t)r->id, e);
}

/* The final row of a task the table does not hold (it was full): the
 * store has the rest, unless the task was never enqueued at all (its
 * events are then ignored, as the store ignores them). */
static void untracked_end(track *t, const task_row *r, track_ops *ops) {
  sqlite3_stmt *st = t->find_task;
  sqlite3_bind_int64(st, 1, r->id);
  if (sqlite3_step(st) == SQLITE_ROW && !is_final(sqlite3_column_int(st, 3))) {
    agent_info *a = agent_get(t, r->agent);
    uint32_t series = metrics_series(t->metrics, a->service,
                                     (const char *)sqlite3_column_blob(st, 1),
                                     (size_t)sqlite3_column_bytes(st, 1));
    int64_t batch = sqlite3_column_int64(st, 0);
    int64_t started = r->have & HAVE_START ? r->started_at
                      : sqlite3_column_type(st, 5) == SQLITE_NULL
                          ? INT64_MIN
                          : sqlite3_column_int64(st, 5);
    push_op(ops, TRACK_PROGRESS, a->service, sqlite3_column_int(st, 3), -1, 0);
    final(t, ops, series, r->status, sqlite3_column_int64(st, 4), started,
          r->finished_at, batch);
    batch_add(t, batch, -1);
  }
  sqlite3_reset(st);
}

/* An UPDATE row: later events of a task enqueued before. */
static void update_task(track *t, const task_row *r, track_ops *ops) {
  open_task *e = u64map_get(&t->tasks, (uint64_t)r->id);
  if (e == NULL) {
    if ((r->have & HAVE_END) && is_final(r->status))
      untracked_end(t, r, ops);
    return;
  }
  if (r->have & HAVE_START)
    e->started_at = r->started_at;
  if ((r->have & HAVE_END) && is_final(r->status)) {
    push_op(ops, TRACK_PROGRESS, e->service, e->status, -1, 0);
    final(t, ops, e->series, r->status, e->enqueued_at, e->started_at,
          r->finished_at, e->batch);
    batch_add(t, e->batch, -1);
    task_release(t, r->id, e);
  } else if ((r->have & HAVE_START) && e->status == SCHEMA_QUEUED) {
    push_op(ops, TRACK_PROGRESS, e->service, SCHEMA_QUEUED, -1, 0);
    push_op(ops, TRACK_PROGRESS, e->service, SCHEMA_RUNNING, 1, 0);
    e->status = SCHEMA_RUNNING;
  }
}

/* The instance's queued and running tasks turn lost when it vanished or
 * ended (store.c, mark_lost). */
static void lose_agent(track *t, int64_t agent, int64_t at, track_ops *ops) {
  /* The map must not change while it is visited (u64map_next()): the
   * instance's tasks are listed first, then let go. */
  size_t n = 0;
  uint64_t key, *ids = xmalloc((u64map_count(&t->tasks) + 1) * sizeof(*ids));
  for (size_t pos = 0; u64map_next(&t->tasks, &pos, &key, NULL);)
    if ((int64_t)(key >> SCHEMA_LOCAL_BITS) == agent)
      ids[n++] = key;
  for (size_t i = 0; i < n; i++) {
    open_task *e = u64map_get(&t->tasks, ids[i]);
    push_op(ops, TRACK_PROGRESS, e->service, e->status, -1, 0);
    final(t, ops, e->series, SCHEMA_LOST, e->enqueued_at, e->started_at, at,
          e->batch);
    batch_add(t, e->batch, -1);
    task_release(t, (int64_t)ids[i], e);
  }
  free(ids);
}

void track_batch(track *t, wbatch *b, track_ops *ops, int exports) {
  t->ntouched = 0;
  for (size_t i = 0; i < b->nops; i++)
    agent_op_apply(t, &b->ops[i], ops);
  for (size_t i = 0; i < b->nrows; i++) {
    const task_row *r = b->rows[i];
    if (r->update)
      update_task(t, r, ops);
    else if (r->have & HAVE_ENQUEUE)
      new_task(t, r, ops);
  }
  for (size_t i = 0; i < b->nops; i++) {
    if (b->ops[i].kind == AGENT_OP_LOST || b->ops[i].kind == AGENT_OP_ENDED)
      lose_agent(t, b->ops[i].agent, b->ops[i].at, ops);
    else if (b->ops[i].kind == AGENT_OP_DISCONNECT)
      forget_agent(t, b->ops[i].agent);
  }
  if (!exports)
    return;
  /* A batch completes when none of its tasks is open after b; each is
   * queued once, whatever the number of its rows in b. */
  for (size_t i = 0; i < t->ntouched; i++) {
    int64_t batch = t->touched[i];
    if (batch == 0 || batch_open(t, batch) > 0)
      continue;
    u64map_put(&t->batches, (uint64_t)batch, (void *)(uintptr_t)1);
    wbatch_add_export(b, batch);
  }
  for (size_t i = 0; i < b->nexports; i++)
    u64map_del(&t->batches, (uint64_t)b->exports[i]);
}

/* ---- setup -------------------------------------------------------------- */

/* The store's open tasks, as the table holds them after a restart. */
static void load_open_tasks(track *t) {
  static const char sql[] =
      "SELECT id, batch, agent, name, status, enqueued_at, started_at "
      "FROM tasks WHERE " SCHEMA_SQL_ACTIVE;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(t->db, sql, -1, &st, NULL) != SQLITE_OK) {
    log_msg(LOG_WARN, "cannot read the open tasks error=\"%s\"",
            sqlite3_errmsg(t->db));
    return;
  }
  track_ops ops = {0};
  while (sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    int64_t batch = sqlite3_column_int64(st, 1);
    agent_info *a = agent_get(t, sqlite3_column_int64(st, 2));
    int status = sqlite3_column_int(st, 4);
    push_op(&ops, TRACK_PROGRESS, a->service, status, 1, 0);
    batch_add(t, batch, 1);
    if (t->tasks.count >= t->max_tasks) {
      t->untracked++;
      continue;
    }
    open_task *e = task_alloc(t);
    e->batch = batch;
    e->series = metrics_series(t->metrics, a->service,
                               (const char *)sqlite3_column_blob(st, 3),
                               (size_t)sqlite3_column_bytes(st, 3));
    e->service = a->service;
    e->status = (uint8_t)status;
    e->enqueued_at = sqlite3_column_int64(st, 5);
    e->started_at = sqlite3_column_type(st, 6) == SQLITE_NULL
                        ? INT64_MIN
                        : sqlite3_column_int64(st, 6);
    u64map_put(&t->tasks, (uint64_t)id, e);
  }
  sqlite3_finalize(st);
  track_apply(t->metrics, &ops);
  track_ops_fini(&ops);
}

track *track_new(metrics *m, sqlite3 *db, size_t max_tasks) {
  track *t = xcalloc(1, sizeof(*t));
  t->metrics = m;
  t->db = db;
  t->max_tasks = max_tasks;
  u64map_init(&t->tasks);
  u64map_init(&t->batches);
  u64map_init(&t->agents);
  if (sqlite3_prepare_v2(db,
                         "SELECT service, dropped, dropped_tasks, "
                         "dropped_batches FROM agents WHERE id = ?1",
                         -1, &t->find_agent, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db,
                         "SELECT batch, name, agent, status, enqueued_at, "
                         "started_at FROM tasks WHERE id = ?1",
                         -1, &t->find_task, NULL) != SQLITE_OK) {
    log_msg(LOG_ERROR, "cannot prepare the exports' lookups error=\"%s\"",
            sqlite3_errmsg(db));
    track_free(t);
    return NULL;
  }
  load_open_tasks(t);
  return t;
}

void track_free(track *t) {
  if (t == NULL)
    return;
  void *agent;
  for (size_t pos = 0; u64map_next(&t->agents, &pos, NULL, &agent);)
    free(agent);
  u64map_fini(&t->agents);
  u64map_fini(&t->tasks);
  u64map_fini(&t->batches);
  while (t->chunks) {
    pool_chunk *next = t->chunks->next;
    free(t->chunks);
    t->chunks = next;
  }
  sqlite3_finalize(t->find_agent);
  sqlite3_finalize(t->find_task);
  free(t->touched);
  free(t);
}

void track_apply(metrics *m, track_ops *ops) {
  for (size_t i = 0; i < ops->n; i++) {
    const track_op *op = &ops->ops[i];
    switch (op->kind) {
    case TRACK_FINAL:
      metrics_task_final(m, op->index, op->status, op->a, op->b);
      break;
    case TRACK_PROGRESS:
      metrics_in_progress(m, op->index, op->status, op->a);
      break;
    case TRACK_CONNECTED:
      metrics_agents_connected(m, op->index, op->a);
      break;
    default:
      metrics_agent_drops(m, op->index, op->status, (uint64_t)op->a);
      break;
    }
  }
  ops->n = 0;
}

void track_ops_fini(track_ops *ops) {
  free(ops->ops);
  memset(ops, 0, sizeof(*ops));
}

size_t track_count(const track *t) {
  return t->tasks.count;
}

uint64_t track_untracked(const track *t) {
  return t->untracked;
}
