/*
 * test_track - what the exports learn from each batch the writer takes:
 * tasks reaching final states with their wait and run times, whether
 * their events come in one batch or spread over several; queued and
 * running counts; agents connecting, leaving and reporting drops; the
 * batches whose last open task ends (queued for the OTLP export once
 * each); lost instances; a restart that finds open tasks in the store; and
 * a full table falling back to the store.
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

#include "batch.h"
#include "schema.h"
#include "store.h"
#include "track.h"

#define A1 INT64_C(1) /* agent ids */
#define A2 INT64_C(2)

typedef struct fixture {
  char dir[64];
  char path[96];
  store *store; /* writes what the test commits */
  sqlite3 *db;  /* the track's read connection */
  metrics *m;
  track *t;
  track_ops ops;
  istr *name[3];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/tw-track-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
  store_config cfg = {f->path, 0, 0, 0, 0, 0, 0, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), 0);
  assert_int_equal(sqlite3_open_v2(f->path, &f->db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  const char *names[3] = {"first", "second", "third"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(names[i]);
    f->name[i] = malloc(sizeof(istr) + n + 1);
    f->name[i]->len = (uint32_t)n;
    memcpy(f->name[i]->text, names[i], n + 1);
  }
  static const double buckets[] = {0.001, 1};
  metrics_config mc = {buckets, 2, 100};
  f->m = metrics_new(&mc);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  track_free(f->t);
  track_ops_fini(&f->ops);
  metrics_free(f->m);
  sqlite3_close(f->db);
  store_close(f->store);
  for (int i = 0; i < 3; i++)
    free(f->name[i]);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void start_track(fixture *f, size_t max_tasks) {
  f->t = track_new(f->m, f->db, max_tasks);
  assert_non_null(f->t);
}

static agent_op *new_agent(wbatch *b, int64_t agent, const char *service) {
  agent_op *op = wbatch_add_op(b, AGENT_OP_NEW, agent, 1000);
  memset(op->instance, (int)agent, PROTO_INSTANCE_SIZE);
  op->service = arena_copy(&b->mem, (proto_str){service, strlen(service)});
  op->host = arena_copy(&b->mem, (proto_str){"h", 1});
  op->pid = 7;
  return op;
}

static int64_t task_id(int64_t agent, int64_t local) {
  return schema_global_id(agent, (uint64_t)local);
}

/* An INSERT row: the task's ENQUEUE at `at`, and more when have says. */
static task_row *enqueue(fixture *f, wbatch *b, int64_t agent, int64_t local,
                         int64_t batch, int pos, int64_t at) {
  task_row *r = wbatch_add_row(b);
  r->id = task_id(agent, local);
  r->agent = agent;
  r->batch = task_id(agent, batch);
  r->position = (uint32_t)pos;
  r->name = f->name[pos % 3];
  r->enqueued_at = at;
  r->status = SCHEMA_QUEUED;
  r->have = HAVE_ENQUEUE | HAVE_THREAD;
  return r;
}

static task_row *update(wbatch *b, int64_t agent, int64_t local) {
  task_row *r = wbatch_add_row(b);
  r->id = task_id(agent, local);
  r->agent = agent;
  r->update = 1;
  return r;
}

static void start(task_row *r, int64_t at) {
  r->started_at = at;
  r->have |= HAVE_START | HAVE_THREAD;
  r->status = SCHEMA_RUNNING;
}

static void end(task_row *r, int status, int64_t at) {
  r->finished_at = at;
  r->status = (uint8_t)status;
  r->have |= HAVE_END;
}

/* Works b out and commits it, as the server does; returns its exports. */
static size_t submit(fixture *f, wbatch *b) {
  track_batch(f->t, b, &f->ops, 1);
  assert_int_equal(store_write(f->store, b), 0);
  size_t n = b->nexports;
  return n;
}

/* The op of the given kind and index that came n-th (0: first). */
static const track_op *find_op(const fixture *f, int kind, int status, int n) {
  for (size_t i = 0; i < f->ops.n; i++) {
    const track_op *op = &f->ops.ops[i];
    if (op->kind == kind && op->status == status && n-- == 0)
      return op;
  }
  return NULL;
}

static int64_t sum_progress(const fixture *f, int status) {
  int64_t sum = 0;
  for (size_t i = 0; i < f->ops.n; i++)
    if (f->ops.ops[i].kind == TRACK_PROGRESS && f->ops.ops[i].status == status)
      sum += f->ops.ops[i].a;
  return sum;
}

/* All of a batch in one writer batch: three finals with their times, the
 * batch queued once, nothing left open. */
static void whole_batch_at_once(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  task_row *r = enqueue(f, b, A1, 1, 100, 0, 1000);
  start(r, 1500);
  end(r, SCHEMA_SUCCEEDED, 4000);
  r = enqueue(f, b, A1, 2, 100, 1, 1000);
  start(r, 4000);
  end(r, SCHEMA_FAILED, 4100);
  r = enqueue(f, b, A1, 3, 100, 2, 1000);
  end(r, SCHEMA_SKIPPED, 4100);
  assert_int_equal(submit(f, b), 1);
  assert_int_equal(b->exports[0], task_id(A1, 100));
  wbatch_free(b);
  const track_op *op = find_op(f, TRACK_FINAL, SCHEMA_SUCCEEDED, 0);
  assert_non_null(op);
  assert_int_equal(op->a, 500);  /* wait */
  assert_int_equal(op->b, 2500); /* run */
  op = find_op(f, TRACK_FINAL, SCHEMA_FAILED, 0);
  assert_int_equal(op->a, 3000);
  assert_int_equal(op->b, 100);
  op = find_op(f, TRACK_FINAL, SCHEMA_SKIPPED, 0);
  assert_int_equal(op->a, -1);
  assert_int_equal(op->b, -1);
  assert_non_null(find_op(f, TRACK_CONNECTED, 0, 0));
  assert_int_equal(track_count(f->t), 0);
}

/* Enqueue, start and end in three writer batches: queued, then running,
 * then final with the times of the earlier batches; the batch is queued
 * for export only when its last task ends. */
static void events_spread_over_batches(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  enqueue(f, b, A1, 1, 100, 0, 1000);
  enqueue(f, b, A1, 2, 100, 1, 1000);
  assert_int_equal(submit(f, b), 0);
  wbatch_free(b);
  assert_int_equal(sum_progress(f, SCHEMA_QUEUED), 2);
  assert_int_equal(track_count(f->t), 2);

  b = wbatch_new(2);
  start(update(b, A1, 1), 3000);
  assert_int_equal(submit(f, b), 0);
  wbatch_free(b);
  assert_int_equal(sum_progress(f, SCHEMA_QUEUED), 1);
  assert_int_equal(sum_progress(f, SCHEMA_RUNNING), 1);

  b = wbatch_new(3);
  end(update(b, A1, 1), SCHEMA_SUCCEEDED, 10000);
  assert_int_equal(submit(f, b), 0); /* task 2 is still queued */
  wbatch_free(b);
  const track_op *op = find_op(f, TRACK_FINAL, SCHEMA_SUCCEEDED, 0);
  assert_non_null(op);
  assert_int_equal(op->a, 2000);
  assert_int_equal(op->b, 7000);

  b = wbatch_new(4);
  end(update(b, A1, 2), SCHEMA_DROPPED, 11000);
  assert_int_equal(submit(f, b), 1);
  wbatch_free(b);
  assert_int_equal(sum_progress(f, SCHEMA_QUEUED), 0);
  assert_int_equal(sum_progress(f, SCHEMA_RUNNING), 0);
  assert_int_equal(track_count(f->t), 0);
  /* Events of a task never enqueued change nothing (the store ignores
   * them too). */
  size_t before = f->ops.n;
  b = wbatch_new(5);
  end(update(b, A1, 99), SCHEMA_SUCCEEDED, 12000);
  assert_int_equal(submit(f, b), 0);
  wbatch_free(b);
  assert_int_equal(f->ops.n, before);
}

/* Connections and HEALTH: a count per service, drops (events, and tasks
 * and batches refused whole) as increments of the agent's running
 * totals. */
static void agents(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  new_agent(b, A2, "api");
  agent_op *h = wbatch_add_op(b, AGENT_OP_HEALTH, A1, 0);
  h->a = 5;
  h->c = 1; /* batches */
  h->d = 2; /* tasks */
  submit(f, b);
  wbatch_free(b);
  b = wbatch_new(2);
  h = wbatch_add_op(b, AGENT_OP_HEALTH, A1, 0);
  h->a = 8;
  h->c = 1;
  h->d = 5;
  wbatch_add_op(b, AGENT_OP_DISCONNECT, A2, 2000);
  submit(f, b);
  wbatch_free(b);
  /* The agent comes back: known from the store, counted once more. */
  b = wbatch_new(3);
  wbatch_add_op(b, AGENT_OP_CONNECT, A2, 3000);
  submit(f, b);
  wbatch_free(b);
  int64_t connected = 0, drops[METRICS_DROP_KINDS] = {0};
  for (size_t i = 0; i < f->ops.n; i++) {
    if (f->ops.ops[i].kind == TRACK_CONNECTED)
      connected += f->ops.ops[i].a;
    if (f->ops.ops[i].kind == TRACK_DROPS)
      drops[f->ops.ops[i].status] += f->ops.ops[i].a;
  }
  assert_int_equal(connected, 2);
  assert_int_equal(drops[METRICS_DROP_EVENTS], 8);
  assert_int_equal(drops[METRICS_DROP_TASKS], 5);
  assert_int_equal(drops[METRICS_DROP_BATCHES], 1);
  /* Applied, the registry agrees. */
  track_apply(f->m, &f->ops);
  format_buf text;
  format_buf_init(&text);
  metrics_render(f->m, &text);
  assert_non_null(
      strstr(text.data, "taskwatch_agents_connected{service=\"api\"} 2\n"));
  assert_non_null(strstr(
      text.data, "taskwatch_agent_dropped_events_total{service=\"api\"} 8\n"));
  assert_non_null(strstr(
      text.data, "taskwatch_agent_dropped_tasks_total{service=\"api\"} 5\n"));
  assert_non_null(strstr(
      text.data, "taskwatch_agent_dropped_batches_total{service=\"api\"} 1\n"));
  format_buf_fini(&text);
}

/* An instance that did not return: its open tasks turn lost, their
 * batches complete; another agent's are untouched. */
static void lost_instances(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  new_agent(b, A2, "worker");
  for (int i = 1; i <= 40; i++)
    start(enqueue(f, b, A1, i, 100 + i / 2, i % 2, 1000), 2000);
  enqueue(f, b, A2, 1, 500, 0, 1000);
  submit(f, b);
  wbatch_free(b);
  b = wbatch_new(2);
  wbatch_add_op(b, AGENT_OP_LOST, A1, 9000);
  assert_int_equal(submit(f, b), 21); /* batches 100 to 120 */
  wbatch_free(b);
  int lost = 0;
  for (size_t i = 0; i < f->ops.n; i++)
    if (f->ops.ops[i].kind == TRACK_FINAL) {
      assert_int_equal(f->ops.ops[i].status, SCHEMA_LOST);
      assert_int_equal(f->ops.ops[i].a, 1000); /* they had started */
      assert_int_equal(f->ops.ops[i].b, -1);
      lost++;
    }
  assert_int_equal(lost, 40);
  assert_int_equal(track_count(f->t), 1);
}

/* A restart: the open tasks come from the store, and their ends are
 * worked out as if the collector had never stopped. */
static void restart_finds_open_tasks(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  start(enqueue(f, b, A1, 1, 100, 0, 1000), 1200);
  enqueue(f, b, A1, 2, 100, 1, 1000);
  submit(f, b);
  wbatch_free(b);
  track_free(f->t);
  track_ops_fini(&f->ops);
  metrics_free(f->m);
  static const double buckets[] = {1};
  metrics_config mc = {buckets, 1, 100};
  f->m = metrics_new(&mc);
  start_track(f, 100); /* loads and counts them */
  assert_int_equal(track_count(f->t), 2);
  format_buf text;
  format_buf_init(&text);
  metrics_render(f->m, &text);
  assert_non_null(strstr(
      text.data,
      "taskwatch_tasks_in_progress{service=\"api\",status=\"queued\"} 1\n"));
  assert_non_null(strstr(
      text.data,
      "taskwatch_tasks_in_progress{service=\"api\",status=\"running\"} 1\n"));
  format_buf_fini(&text);
  b = wbatch_new(2);
  end(update(b, A1, 1), SCHEMA_SUCCEEDED, 5000);
  assert_int_equal(submit(f, b), 0);
  wbatch_free(b);
  b = wbatch_new(3);
  task_row *r = update(b, A1, 2);
  start(r, 5000);
  end(r, SCHEMA_FAILED, 6000);
  assert_int_equal(submit(f, b), 1);
  wbatch_free(b);
  const track_op *op = find_op(f, TRACK_FINAL, SCHEMA_SUCCEEDED, 0);
  assert_int_equal(op->a, 200);
  assert_int_equal(op->b, 3800);
  op = find_op(f, TRACK_FINAL, SCHEMA_FAILED, 0);
  assert_int_equal(op->a, 4000);
  assert_int_equal(op->b, 1000);
}

/* A full table: the task is counted as untracked, and its end, once its
 * row is committed, is read from the store. */
static void full_table_falls_back_to_the_store(void **state) {
  fixture *f = *state;
  start_track(f, 1);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  enqueue(f, b, A1, 1, 100, 0, 1000);
  enqueue(f, b, A1, 2, 101, 1, 1000);
  submit(f, b);
  wbatch_free(b);
  assert_int_equal(track_count(f->t), 1);
  assert_int_equal(track_untracked(f->t), 1);
  b = wbatch_new(2);
  task_row *r = update(b, A1, 2);
  start(r, 3000);
  end(r, SCHEMA_SUCCEEDED, 3500);
  assert_int_equal(submit(f, b), 1);
  assert_int_equal(b->exports[0], task_id(A1, 101));
  wbatch_free(b);
  const track_op *op = find_op(f, TRACK_FINAL, SCHEMA_SUCCEEDED, 0);
  assert_non_null(op);
  assert_int_equal(op->a, 2000);
  assert_int_equal(op->b, 500);
  assert_int_equal(sum_progress(f, SCHEMA_QUEUED), 1);
}

/* A repeated id in an INSERT row (a hostile agent) changes nothing: the
 * store skips that row. */
static void repeated_ids_are_ignored(void **state) {
  fixture *f = *state;
  start_track(f, 100);
  wbatch *b = wbatch_new(1);
  new_agent(b, A1, "api");
  enqueue(f, b, A1, 1, 100, 0, 1000);
  submit(f, b);
  wbatch_free(b);
  size_t before = f->ops.n;
  b = wbatch_new(2);
  enqueue(f, b, A1, 1, 100, 0, 1000);
  track_batch(f->t, b, &f->ops, 1);
  wbatch_free(b);
  assert_int_equal(f->ops.n, before);
  assert_int_equal(track_count(f->t), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(whole_batch_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(events_spread_over_batches, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(agents, setup, teardown),
      cmocka_unit_test_setup_teardown(lost_instances, setup, teardown),
      cmocka_unit_test_setup_teardown(restart_finds_open_tasks, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(full_table_falls_back_to_the_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(repeated_ids_are_ignored, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
