/*
 * test_ingest - the loop side of the collector: events coalesce into one
 * row per task, resent events are skipped, gaps and undefined strings are
 * refused, GOODBYE must match the last event, acks follow commits, and an
 * instance that vanished turns lost after its grace period. Then the
 * store writes what ingest built, and the rows are checked in SQLite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"
#include "ingest.h"
#include "proto.h"
#include "schema.h"
#include "store.h"

typedef struct fixture {
  char dir[64];
  char path[96];
  store *store;
  sqlite3 *reader;
  ingest *in;
  proto_buf buf;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/tw-ingest-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
  store_config cfg = {f->path, 0, 0, 0, 0, 0, 0, 0};
  char *err = NULL;
  assert_int_equal(store_open(&cfg, &f->store, &err), 0);
  assert_int_equal(
      sqlite3_open_v2(f->path, &f->reader, SQLITE_OPEN_READONLY, NULL),
      SQLITE_OK);
  f->in = ingest_new(f->reader, 1000, INT64_C(300000000), 0);
  assert_non_null(f->in);
  tw__proto_buf_init(&f->buf);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  ingest_free(f->in);
  sqlite3_close(f->reader);
  store_close(f->store);
  tw__proto_buf_fini(&f->buf);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static proto_str S(const char *s) {
  proto_str r = {s, (uint32_t)strlen(s)};
  return r;
}

static agent *hello(fixture *f, uint8_t id) {
  proto_hello h = {0};
  memset(h.instance, id, sizeof(h.instance));
  h.pid = 42;
  h.started_at_ns = 1000;
  h.service = S("api");
  h.host = S("web-1");
  const char *reason = NULL;
  agent *a = ingest_hello(f->in, &h, NULL, NULL, 5, &reason);
  assert_non_null(a);
  return a;
}

/* Encodes events as one EVENTS frame of `version` and feeds its payload
 * to ingest. */
static int feed_at(fixture *f, agent *a, uint16_t version, uint64_t first_seq,
                   const proto_event *evs, size_t n, const char **reason) {
  tw__proto_buf_reset(&f->buf);
  tw__proto_events_open(&f->buf, version, first_seq);
  for (size_t i = 0; i < n; i++)
    tw__proto_put_event(&f->buf, &evs[i]);
  tw__proto_events_close(&f->buf);
  proto_frame fr;
  assert_int_equal(tw__proto_frame_next(f->buf.data, f->buf.len, 0, &fr), 0);
  *reason = NULL;
  return ingest_events(f->in, a, version, fr.payload, fr.payload_len, reason);
}

static int feed(fixture *f, agent *a, uint64_t first_seq,
                const proto_event *evs, size_t n, const char **reason) {
  return feed_at(f, a, PROTO_VERSION, first_seq, evs, n, reason);
}

static proto_event ev_string(uint32_t id, const char *text) {
  proto_event e = {.kind = PROTO_EV_STRING, .time_ns = 1000, .string = id};
  e.text = S(text);
  return e;
}

static proto_event ev_task(int kind, uint64_t task, int64_t t) {
  proto_event e = {.kind = (uint8_t)kind, .time_ns = t, .task = task};
  if (kind == PROTO_EV_ENQUEUE) {
    e.batch = 1;
    e.string = 1;
    e.mode = 1;
    e.other = 7;
  }
  return e;
}

/* A connected instance (hello(f, id)) that sent a name and the ENQUEUE of
 * task 1: events 1 and 2. */
static agent *one_task_agent(fixture *f, uint8_t id) {
  agent *a = hello(f, id);
  agent_set_conn(a, f);
  const char *reason;
  proto_event evs[] = {ev_string(1, "job"), ev_task(PROTO_EV_ENQUEUE, 1, 10)};
  assert_int_equal(feed(f, a, 1, evs, 2, &reason), 0);
  return a;
}

static uint64_t last_ack;
static int acks;
static void on_ack(void *conn, uint64_t next_seq, void *arg) {
  (void)conn;
  (void)arg;
  last_ack = next_seq;
  acks++;
}

/* Commits the current batch as the writer would and delivers acks. */
static void commit(fixture *f) {
  wbatch *b = ingest_take(f->in);
  assert_int_equal(store_write(f->store, b), 0);
  ingest_committed(f->in, b, on_ack, NULL);
  wbatch_free(b);
}

static int64_t query_int(fixture *f, const char *sql) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->reader, sql, -1, &st, NULL),
                   SQLITE_OK);
  int64_t v = -1;
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -2
                                                  : sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void coalesces_one_row_per_task(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 1);
  agent_set_conn(a, f);
  assert_int_equal(agent_commit_seq(a), 1);
  proto_event evs[] = {ev_string(1, "a"), ev_task(PROTO_EV_ENQUEUE, 5, 1000),
                       ev_task(PROTO_EV_START, 5, 4000),
                       ev_task(PROTO_EV_FINISH, 5, 9000)};
  const char *reason;
  assert_int_equal(feed(f, a, 1, evs, 4, &reason), 0);
  wbatch *b = ingest_current(f->in);
  assert_int_equal(b->nrows, 1);
  assert_int_equal(b->rows[0]->update, 0);
  assert_int_equal(b->rows[0]->status, SCHEMA_SUCCEEDED);
  acks = 0;
  commit(f);
  assert_int_equal(acks, 1);
  assert_int_equal(last_ack, 5);
  assert_int_equal(agent_commit_seq(a), 5);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks"), 1);
  assert_int_equal(query_int(f, "SELECT wait_us FROM tasks"), 3);
  assert_int_equal(query_int(f, "SELECT run_us FROM tasks"), 5);
  assert_int_equal(query_int(f, "SELECT name = 'a' FROM tasks"), 1);
  assert_int_equal(query_int(f, "SELECT events FROM agents"), 4);
  assert_int_equal(query_int(f, "SELECT next_seq FROM agents"), 5);
}

static void later_events_update_the_stored_row(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 2);
  const char *reason;
  proto_event first[] = {ev_string(1, "send_email"),
                         ev_task(PROTO_EV_ENQUEUE, 9, 1000),
                         ev_task(PROTO_EV_START, 9, 2000)};
  assert_int_equal(feed(f, a, 1, first, 3, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT status FROM tasks"), SCHEMA_RUNNING);
  proto_event fail = ev_task(PROTO_EV_FAIL, 9, 7000);
  fail.text = S("ValueError");
  fail.message = S("bad");
  fail.detail = S("trace");
  assert_int_equal(feed(f, a, 4, &fail, 1, &reason), 0);
  assert_int_equal(ingest_current(f->in)->rows[0]->update, 1);
  commit(f);
  assert_int_equal(query_int(f, "SELECT status FROM tasks"), SCHEMA_FAILED);
  assert_int_equal(query_int(f, "SELECT run_us FROM tasks"), 5);
  assert_int_equal(query_int(f, "SELECT wait_us FROM tasks"), 1);
  assert_int_equal(query_int(f, "SELECT error_type = 'ValueError' FROM tasks"),
                   1);
  assert_int_equal(query_int(f, "SELECT sum(failed) FROM rollups"), 1);
}

static void enqueue_after_start_in_one_batch(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 10);
  const char *reason;
  proto_event evs[] = {ev_string(1, "job"), ev_task(PROTO_EV_START, 4, 30000),
                       ev_task(PROTO_EV_ENQUEUE, 4, 10000),
                       ev_task(PROTO_EV_FINISH, 4, 70000)};
  assert_int_equal(feed(f, a, 1, evs, 4, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT status FROM tasks"), SCHEMA_SUCCEEDED);
  assert_int_equal(query_int(f, "SELECT wait_us FROM tasks"), 20);
  assert_int_equal(query_int(f, "SELECT run_us FROM tasks"), 40);
}

static void resent_events_are_skipped(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 3);
  const char *reason;
  proto_event evs[] = {ev_string(1, "x"), ev_task(PROTO_EV_ENQUEUE, 1, 10),
                       ev_task(PROTO_EV_ENQUEUE, 2, 20)};
  assert_int_equal(feed(f, a, 1, evs, 3, &reason), 0);
  /* The same events again, before and after the commit. */
  assert_int_equal(feed(f, a, 1, evs, 3, &reason), 0);
  commit(f);
  assert_int_equal(feed(f, a, 1, evs, 3, &reason), 0);
  assert_true(wbatch_empty(ingest_current(f->in)));
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks"), 2);
  assert_int_equal(query_int(f, "SELECT events FROM agents"), 3);
  /* An overlapping resend stores only what is new. */
  proto_event more[] = {ev_task(PROTO_EV_ENQUEUE, 2, 20),
                        ev_task(PROTO_EV_ENQUEUE, 3, 30)};
  assert_int_equal(feed(f, a, 3, more, 2, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks"), 3);
  assert_int_equal(agent_commit_seq(a), 5);
}

static void protocol_errors_are_refused(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 4);
  const char *reason;
  proto_event s = ev_string(1, "x");
  assert_int_equal(feed(f, a, 3, &s, 1, &reason), -1);
  assert_string_equal(reason, "sequence gap");
  proto_event e = ev_task(PROTO_EV_ENQUEUE, 1, 10);
  e.string = 9;
  assert_int_equal(feed(f, a, 1, &e, 1, &reason), -1);
  assert_string_equal(reason, "task name uses an undefined string id");
  proto_event big = ev_task(PROTO_EV_START, UINT64_C(1) << 41, 10);
  assert_int_equal(feed(f, a, 1, &big, 1, &reason), -1);
  assert_string_equal(reason, "task or batch id does not fit in 40 bits");
  proto_event lbl = {
      .kind = PROTO_EV_BATCH, .time_ns = 1, .batch = 1, .string = 3};
  assert_int_equal(feed(f, a, 1, &lbl, 1, &reason), -1);
  assert_string_equal(reason, "batch label uses an undefined string id");
  /* Valid events before a bad one in the same frame are kept. */
  proto_event mixed[] = {ev_string(1, "ok"), e};
  assert_int_equal(feed(f, a, 1, mixed, 2, &reason), -1);
  assert_int_equal(ingest_current(f->in)->nstrings, 1);
  assert_int_equal(ingest_goodbye(f->in, a, 5, &reason), -1);
  assert_int_equal(ingest_goodbye(f->in, a, 1, &reason), 0);
  /* Garbage that the decoder refuses. */
  uint8_t junk[20] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 99};
  assert_int_equal(
      ingest_events(f->in, a, PROTO_VERSION, junk, sizeof(junk), &reason), -1);
}

static void short_strings_are_valid(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 5);
  const char *reason;
  proto_event evs[] = {ev_string(1, ""), ev_string(2, "a")};
  assert_int_equal(feed(f, a, 1, evs, 1, &reason), 0);
  assert_int_equal(feed(f, a, 2, evs + 1, 1, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM strings"), 2);
}

static void vanished_instance_turns_lost(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 6);
  agent_set_conn(a, f);
  const char *reason;
  proto_event evs[] = {ev_string(1, "job"),
                       ev_task(PROTO_EV_ENQUEUE, 1, 10),
                       ev_task(PROTO_EV_ENQUEUE, 2, 20),
                       ev_task(PROTO_EV_START, 2, 30),
                       ev_task(PROTO_EV_ENQUEUE, 3, 40),
                       ev_task(PROTO_EV_FINISH, 2, 50)};
  assert_int_equal(feed(f, a, 1, evs, 4, &reason), 0);
  commit(f);
  assert_int_equal(feed(f, a, 5, evs + 4, 1, &reason), 0);
  agent_set_conn(a, NULL);
  ingest_disconnect(f->in, a, 100, 10);
  ingest_tick(f->in, 200, 500);
  assert_int_equal(ingest_current(f->in)->nops, 1); /* the disconnect */
  ingest_tick(f->in, 2000, 1011);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE status = 6"),
                   3);
  assert_int_equal(query_int(f, "SELECT finished_at FROM tasks WHERE id & "
                                "255 = 1"),
                   2000);
  assert_int_equal(query_int(f, "SELECT connected FROM agents"), 0);
  assert_int_equal(query_int(f, "SELECT sum(lost) FROM rollups"), 3);
  /* Coming back in time cancels it; a clean GOODBYE prevents it. */
  agent *b = hello(f, 7);
  ingest_disconnect(f->in, b, 100, 2000);
  hello(f, 7);
  ingest_tick(f->in, 5000, 5000);
  wbatch *cur = ingest_current(f->in);
  for (size_t i = 0; i < cur->nops; i++)
    assert_int_not_equal(cur->ops[i].kind, AGENT_OP_LOST);
}

static void restart_reloads_instances(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 8);
  const char *reason;
  proto_event evs[] = {ev_string(1, "job"), ev_task(PROTO_EV_ENQUEUE, 1, 10)};
  assert_int_equal(feed(f, a, 1, evs, 2, &reason), 0);
  commit(f);
  /* A new process: the instance is known with its strings and its
   * sequence, and its queued task starts a grace period. */
  ingest_free(f->in);
  f->in = ingest_new(f->reader, 1000, INT64_C(300000000), 0);
  ingest_tick(f->in, 100, 2000);
  assert_int_equal(ingest_current(f->in)->nops, 1);
  assert_int_equal(ingest_current(f->in)->ops[0].kind, AGENT_OP_LOST);
  a = hello(f, 8);
  assert_int_equal(agent_commit_seq(a), 3);
  proto_event more = ev_task(PROTO_EV_ENQUEUE, 2, 20);
  assert_int_equal(feed(f, a, 3, &more, 1, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM agents"), 1);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE name = "
                                "'job'"),
                   2);
}

static void ended_instances_are_forgotten(void **state) {
  fixture *f = *state;
  agent *a = one_task_agent(f, 9);
  const char *reason;
  assert_int_equal(ingest_goodbye(f->in, a, 2, &reason), 0);
  agent_set_conn(a, NULL);
  ingest_disconnect(f->in, a, 100, 10);
  assert_int_equal(ingest_agent_count(f->in), 1);
  commit(f);
  assert_int_equal(ingest_agent_count(f->in), 0);
  assert_int_equal(query_int(f, "SELECT ended FROM agents"), 1);
  /* It comes back: loaded from the store, strings included. */
  a = hello(f, 9);
  assert_int_equal(agent_commit_seq(a), 3);
  proto_event more = ev_task(PROTO_EV_ENQUEUE, 2, 20);
  assert_int_equal(feed(f, a, 3, &more, 1, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE name = "
                                "'job'"),
                   2);
  assert_int_equal(query_int(f, "SELECT ended FROM agents"), 0);
}

/* HEALTH of protocol version 3 carries the batches and tasks refused
 * whole; they land on the agents row with the events dropped. An agent of
 * version 2 cannot tell, and its row says 0. */
static void health_stores_whole_drops(void **state) {
  fixture *f = *state;
  const char *reason;
  agent *a = hello(f, 11);
  proto_event ev = {.kind = PROTO_EV_HEALTH, .time_ns = 1000};
  ev.other = 40;
  ev.other2 = 1;
  ev.dropped_batches = 7;
  ev.dropped_tasks = 9;
  assert_int_equal(feed(f, a, 1, &ev, 1, &reason), 0);
  /* A later HEALTH in the same batch: the newest counters win. */
  ev.other = 44, ev.dropped_batches = 8, ev.dropped_tasks = 10;
  assert_int_equal(feed(f, a, 2, &ev, 1, &reason), 0);
  agent *old = hello(f, 12);
  assert_int_equal(feed_at(f, old, 2, 1, &ev, 1, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT dropped * 1000000 + dropped_batches "
                                "* 1000 + dropped_tasks FROM agents WHERE "
                                "instance = x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"
                                "0b'"),
                   44008010);
  assert_int_equal(query_int(f, "SELECT dropped * 1000000 + dropped_batches "
                                "* 1000 + dropped_tasks FROM agents WHERE "
                                "instance = x'0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c"
                                "0c'"),
                   44000000);
}

/* A peer sending nothing but HEALTH events: one op per agent and batch
 * holds the newest counters, and every op the batch holds is counted by
 * wbatch_bytes, so the high watermark pauses such a peer. */
static void health_flood_stays_bounded(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 10);
  const char *reason;
  enum { PER_FRAME = 1000, FRAMES = 50 };
  static proto_event evs[PER_FRAME];
  uint64_t seq = 1;
  for (int fr = 0; fr < FRAMES; fr++) {
    for (int i = 0; i < PER_FRAME; i++) {
      evs[i] = (proto_event){.kind = PROTO_EV_HEALTH, .time_ns = 1000};
      evs[i].other = seq;
      evs[i].other2 = seq * 2;
      seq++;
    }
    assert_int_equal(feed(f, a, seq - PER_FRAME, evs, PER_FRAME, &reason), 0);
  }
  wbatch *b = ingest_current(f->in);
  assert_int_equal(b->nops, 2); /* AGENT_OP_NEW and one HEALTH */
  assert_true(wbatch_bytes(b) < 64 * 1024);
  commit(f);
  assert_int_equal(query_int(f, "SELECT dropped FROM agents"), seq - 1);
  assert_int_equal(query_int(f, "SELECT reconnects FROM agents"),
                   (seq - 1) * 2);
  assert_int_equal(query_int(f, "SELECT next_seq FROM agents"), seq);
  /* The ops array counts toward the watermark, whatever filled it. */
  b = wbatch_new(99);
  for (int i = 0; i < 10000; i++)
    wbatch_add_op(b, AGENT_OP_DISCONNECT, 1, i);
  assert_true(wbatch_bytes(b) >= 10000 * sizeof(agent_op));
  wbatch_free(b);
}

/* An instance that vanished without GOODBYE is forgotten once its LOST is
 * committed (its strings count against the collector's budget no more);
 * when it returns it is loaded from the store like an ended one. */
static void lost_instances_are_forgotten(void **state) {
  fixture *f = *state;
  agent *a = one_task_agent(f, 11);
  const char *reason;
  commit(f);
  agent_set_conn(a, NULL);
  ingest_disconnect(f->in, a, 100, 10);
  ingest_tick(f->in, 2000, 1011);
  assert_int_equal(ingest_agent_count(f->in), 1); /* LOST not committed */
  commit(f);
  assert_int_equal(ingest_agent_count(f->in), 0);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE status = 6"),
                   1);
  a = hello(f, 11);
  assert_int_equal(ingest_agent_count(f->in), 1);
  assert_int_equal(agent_commit_seq(a), 3);
  proto_event more = ev_task(PROTO_EV_ENQUEUE, 2, 20);
  assert_int_equal(feed(f, a, 3, &more, 1, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE name = "
                                "'job'"),
                   2);
  /* Reconnecting between the LOST and its commit keeps it in memory. */
  agent_set_conn(a, f);
  agent_set_conn(a, NULL);
  ingest_disconnect(f->in, a, 3000, 3000);
  ingest_tick(f->in, 5000, 4001);
  a = hello(f, 11);
  agent_set_conn(a, f);
  commit(f);
  assert_int_equal(ingest_agent_count(f->in), 1);
  assert_int_equal(agent_commit_seq(a), 4);
}

/* A view that shadows agents on the reader's connection and fails when a
 * row is read (abs() of the smallest integer overflows): the store
 * cannot be read, as with an I/O error or a corrupt page. */
static const char failing_agents[] =
    "CREATE TEMP VIEW agents AS SELECT 1 AS id, x'00' AS instance, "
    "1 AS next_seq, 0 AS ended WHERE abs(-9223372036854775807 - 1)";

/* A store that cannot be read says nothing about an instance: its HELLO
 * is refused with a reason, and it is not taken for a new instance (which
 * would store its events again under a new id). */
static void unreadable_store_refuses_hello(void **state) {
  fixture *f = *state;
  assert_int_equal(sqlite3_exec(f->reader, failing_agents, NULL, NULL, NULL),
                   SQLITE_OK);
  proto_hello h = {0};
  memset(h.instance, 7, sizeof(h.instance));
  h.service = S("api");
  h.host = S("web-1");
  const char *reason = NULL;
  assert_null(ingest_hello(f->in, &h, NULL, NULL, 5, &reason));
  assert_non_null(strstr(reason, "store cannot be read"));
  assert_int_equal(ingest_agent_count(f->in), 0);
  assert_true(wbatch_empty(ingest_current(f->in)));
  assert_int_equal(
      sqlite3_exec(f->reader, "DROP VIEW temp.agents", NULL, NULL, NULL),
      SQLITE_OK);
  agent *a = ingest_hello(f->in, &h, NULL, NULL, 5, &reason);
  assert_non_null(a);
  assert_int_equal(agent_id(a), 1);
  /* And a collector whose store cannot be read does not start. */
  assert_int_equal(sqlite3_exec(f->reader, failing_agents, NULL, NULL, NULL),
                   SQLITE_OK);
  assert_null(ingest_new(f->reader, 1000, INT64_C(300000000), 0));
}

static void map_deletes_keep_lookups_whole(void **state) {
  (void)state;
  u64map m;
  u64map_init(&m);
  static int values[5000];
  for (uint64_t k = 1; k <= 5000; k++)
    u64map_put(&m, k, &values[k - 1]);
  for (uint64_t k = 1; k <= 5000; k += 2)
    u64map_del(&m, k);
  u64map_del(&m, 999999);
  assert_int_equal(u64map_count(&m), 2500);
  for (uint64_t k = 1; k <= 5000; k++) {
    if (k % 2)
      assert_null(u64map_get(&m, k));
    else
      assert_ptr_equal(u64map_get(&m, k), &values[k - 1]);
  }
  u64map_fini(&m);
}

/* Past the cap of interned strings per instance, its later names are not
 * kept: tasks that use them read (other), counted; the instance goes on.
 * Before the cap an undefined id is still a protocol error. */
static void strings_past_the_cap_read_other(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 30);
  const char *reason;
  proto_event undefined = ev_task(PROTO_EV_ENQUEUE, 1, 1000);
  undefined.string = 77;
  assert_int_equal(feed(f, a, 1, &undefined, 1, &reason), -1);
  assert_non_null(strstr(reason, "undefined string id"));
  a = hello(f, 31);
  size_t n = GUARD_AGENT_STRINGS + 2;
  proto_event *evs = calloc(n + 2, sizeof(*evs));
  char(*names)[16] = calloc(n, sizeof(*names));
  for (size_t i = 0; i < n; i++) {
    snprintf(names[i], sizeof(names[i]), "n%zu", i + 1);
    evs[i] = ev_string((uint32_t)(i + 1), names[i]);
  }
  evs[n] = ev_task(PROTO_EV_ENQUEUE, 1, 1000);
  evs[n].string = (uint32_t)n; /* past the cap */
  evs[n + 1] = ev_task(PROTO_EV_ENQUEUE, 2, 1000);
  evs[n + 1].string = 1; /* kept */
  guard_stats before, after;
  guard_get(&before);
  assert_int_equal(feed(f, a, 1, evs, n + 2, &reason), 0);
  guard_get(&after);
  assert_int_equal(after.strings_folded - before.strings_folded, 2);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM strings WHERE agent = "
                                "(SELECT id FROM agents WHERE pid = 42 "
                                "ORDER BY id DESC LIMIT 1)"),
                   GUARD_AGENT_STRINGS);
  assert_int_equal(
      query_int(f, "SELECT count(*) FROM tasks WHERE name = '(other)'"), 1);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE name = 'n1'"),
                   1);
  free(evs);
  free(names);
}

/* The first key of an instance binds it, in memory and in the store: a
 * HELLO without it or with another is refused, one with it passes, and a
 * collector that starts again knows the key from the store. */
static void first_key_binds_the_instance(void **state) {
  fixture *f = *state;
  uint8_t key[PROTO_KEY_SIZE], other[PROTO_KEY_SIZE], inst[PROTO_INSTANCE_SIZE];
  memset(key, 1, sizeof(key));
  memset(other, 2, sizeof(other));
  memset(inst, 40, sizeof(inst));
  const char *reason = NULL;
  assert_int_equal(ingest_owner_check(f->in, inst, NULL, &reason), 0);
  proto_hello h = {0};
  memcpy(h.instance, inst, sizeof(inst));
  h.service = S("api");
  h.host = S("web-1");
  assert_non_null(ingest_hello(f->in, &h, key, NULL, 5, &reason));
  assert_int_equal(ingest_owner_check(f->in, inst, NULL, &reason), -1);
  assert_string_equal(reason,
                      "instance is bound to a key: HELLO without its proof "
                      "refused");
  assert_int_equal(ingest_owner_check(f->in, inst, other, &reason), -1);
  assert_string_equal(reason, "instance is bound to another key");
  assert_int_equal(ingest_owner_check(f->in, inst, key, &reason), 0);
  commit(f);
  assert_int_equal(query_int(f, "SELECT length(auth_key) FROM agents"),
                   PROTO_KEY_SIZE);
  /* A new run: the instance is not in memory, its key is in the store. */
  ingest_free(f->in);
  f->in = ingest_new(f->reader, 1000, INT64_C(300000000), 0);
  assert_int_equal(ingest_owner_check(f->in, inst, NULL, &reason), -1);
  assert_int_equal(ingest_owner_check(f->in, inst, other, &reason), -1);
  assert_int_equal(ingest_owner_check(f->in, inst, key, &reason), 0);
}

/* In one batch a task's state only moves forward (a repeated START, an
 * end after the end, a second ENQUEUE are counted, not applied), and times
 * outside the sane window are clamped and counted. */
static void refuses_backward_events_and_clamps_times(void **state) {
  fixture *f = *state;
  agent *a = hello(f, 9);
  int64_t far = INT64_C(9000000000000000000); /* the year 2255 */
  proto_event evs[] = {
      ev_string(1, "job"),
      ev_task(PROTO_EV_ENQUEUE, 1, 5000),
      ev_task(PROTO_EV_START, 1, 6000),
      ev_task(PROTO_EV_START, 1, 7000), /* again */
      ev_task(PROTO_EV_FINISH, 1, 8000),
      ev_task(PROTO_EV_FAIL, 1, 9000),    /* after the end */
      ev_task(PROTO_EV_ENQUEUE, 1, 9500), /* again */
      ev_task(PROTO_EV_ENQUEUE, 2, 0),    /* before the instance started */
      ev_task(PROTO_EV_ENQUEUE, 3, far),  /* beyond the skew */
  };
  const char *reason;
  int64_t before = (int64_t)time(NULL) * 1000000;
  assert_int_equal(feed(f, a, 1, evs, sizeof(evs) / sizeof(evs[0]), &reason),
                   0);
  wbatch *b = ingest_current(f->in);
  assert_int_equal(b->refused, 3);
  assert_int_equal(b->clamped, 2);
  commit(f);
  assert_int_equal(query_int(f, "SELECT count(*) FROM tasks WHERE status = 2 "
                                "AND enqueued_at = 5 AND started_at = 6 AND "
                                "finished_at = 8 AND error_type IS NULL"),
                   1);
  assert_int_equal(query_int(f, "SELECT enqueued_at FROM tasks WHERE id & "
                                "1099511627775 = 2"),
                   1); /* HELLO's started_at, 1 µs */
  int64_t at = query_int(f, "SELECT enqueued_at FROM tasks WHERE id & "
                            "1099511627775 = 3");
  int64_t after = (int64_t)(time(NULL) + 1) * 1000000;
  if (at < before || at > after)
    print_error("clamped to %lld, outside [%lld, %lld] (the wall clock "
                "around the feed)\n",
                (long long)at, (long long)before, (long long)after);
  assert_true(at >= before && at <= after);
}

/* Group commit: a batch of few events waits BATCH_IDLE_FACTOR times
 * flush_ms; BATCH_FULL_EVENTS events, a GOODBYE, or a full batch before
 * it make it due at flush_ms. */
static void small_batches_wait_longer(void **state) {
  fixture *f = *state;
  agent *a = one_task_agent(f, 12);
  const char *reason;
  wbatch *b = ingest_current(f->in);
  assert_int_equal(wbatch_commit_wait_ms(b, 0, 50, 0), BATCH_IDLE_FACTOR * 50);
  assert_int_equal(wbatch_commit_wait_ms(b, 60, 50, 0),
                   BATCH_IDLE_FACTOR * 50 - 60);
  /* The batch after a full one is due at flush_ms, whatever it holds. */
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 1), 40);
  assert_true(wbatch_commit_wait_ms(b, BATCH_IDLE_FACTOR * 50, 50, 0) <= 0);
  assert_int_equal(ingest_goodbye(f->in, a, 2, &reason), 0);
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0), 40);
  assert_true(wbatch_commit_wait_ms(b, 50, 50, 0) <= 0);
  commit(f);

  agent *c = hello(f, 13);
  agent_set_conn(c, f);
  proto_event name = ev_string(1, "job");
  assert_int_equal(feed(f, c, 1, &name, 1, &reason), 0);
  uint64_t seq = 2;
  proto_event many[64];
  for (uint64_t task = 1; seq <= BATCH_FULL_EVENTS; task += 64) {
    for (int i = 0; i < 64; i++)
      many[i] = ev_task(PROTO_EV_ENQUEUE, task + (uint64_t)i, 10);
    b = ingest_current(f->in);
    assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0),
                     BATCH_IDLE_FACTOR * 50 - 10);
    assert_int_equal(feed(f, c, seq, many, 64, &reason), 0);
    seq += 64;
  }
  b = ingest_current(f->in);
  assert_true(b->events >= BATCH_FULL_EVENTS);
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0), 40);
  commit(f);
}

/* The acks' hold_ms (protocol version 6): as long as a batch waits for
 * its commit anyway. While the collector takes fewer events than fill a
 * batch in the BATCH_IDLE_FACTOR times flush_ms that a batch of few
 * events waits, BATCH_HOLD_FACTOR times flush_ms; up to a batch per
 * flush_ms, the time a batch takes to fill; faster, no advice. Advice
 * starts below BATCH_HOLD_ENTER of that rate and, once given, lasts up
 * to it. */
static void acks_advise_a_hold_while_batches_wait_anyway(void **state) {
  (void)state;
  /* 4,096 events per 250 ms: 16,384 a second; per 50 ms: 81,920. */
  double idle = BATCH_FULL_EVENTS * 1000.0 / (BATCH_IDLE_FACTOR * 50);
  double full = BATCH_FULL_EVENTS * 1000.0 / 50;
  int64_t most = BATCH_HOLD_FACTOR * 50;
  assert_int_equal(most, 250);
  assert_int_equal(wbatch_hold_ms(0, 50, 0), most);
  assert_int_equal(wbatch_hold_ms(10000, 50, 0), most);
  assert_int_equal(wbatch_hold_ms(idle, 50, 0), most);
  /* Past it, a batch commits once it holds 4,096 events. */
  assert_int_equal(wbatch_hold_ms(20480, 50, 0), 200);
  assert_int_equal(wbatch_hold_ms(40960, 50, 0), 100);
  assert_int_equal(wbatch_hold_ms(full * BATCH_HOLD_ENTER - 1, 50, 0), 66);
  assert_int_equal(wbatch_hold_ms(full * BATCH_HOLD_ENTER, 50, 0), 0);
  assert_int_equal(wbatch_hold_ms(full * BATCH_HOLD_ENTER, 50, 1), 66);
  assert_int_equal(wbatch_hold_ms(full - 1, 50, 1), 50);
  /* From a batch per flush_ms on, batches commit flush_ms after their
   * first event: no advice. */
  assert_int_equal(wbatch_hold_ms(full, 50, 1), 0);
  assert_int_equal(wbatch_hold_ms(100000, 50, 1), 0);
  assert_int_equal(wbatch_hold_ms(100000, 50, 0), 0);
  /* A longer flush_ms waits longer for fewer events; the advice never
   * passes what the protocol carries. */
  assert_int_equal(wbatch_hold_ms(1000, 1000, 0), 4096);
  assert_int_equal(wbatch_hold_ms(4096, 1000, 1), 0);
  assert_int_equal(wbatch_hold_ms(0, 3600000, 0), PROTO_HOLD_MAX_MS);
}

/* A part of HOLD_RISE_MS of `rise` events after `t`, then a trickle:
 * the advice is `lowered` at once and until the window it was in ends,
 * however quiet the rest; a quiet window after it advises the whole hold
 * again. Returns the time of that window's end. */
static int64_t rise_then_quiet(hold_advice *h, int64_t t, uint64_t rise,
                               uint32_t lowered) {
  t += HOLD_RISE_MS;
  assert_int_equal(hold_advice_count(h, t, rise, 50), lowered);
  while (h->since_ms + HOLD_WINDOW_MS > t + 100) {
    t += 100;
    assert_int_equal(hold_advice_count(h, t, 1, 50), lowered);
  }
  t += 100;
  assert_int_equal(hold_advice_count(h, t, 1, 50), lowered);
  t += HOLD_WINDOW_MS;
  assert_int_equal(hold_advice_count(h, t, 10, 50), BATCH_HOLD_FACTOR * 50);
  return t;
}

/* The advice as batches go to the writer (hold_advice_count()): none
 * until a first window of HOLD_WINDOW_MS ended; then the window's rate
 * decides. Bursts keep it; a part of HOLD_RISE_MS whose rate over
 * HOLD_RISE advises less lowers it at once (to nothing at HOLD_RISE
 * times a batch per flush_ms), and the window that held such a part
 * advises no more at its end. */
static void hold_advice_follows_the_rate_not_its_bursts(void **state) {
  (void)state;
  double full = BATCH_FULL_EVENTS * 1000.0 / 50;
  uint32_t hold = BATCH_HOLD_FACTOR * 50;
  hold_advice h = {0};
  int64_t t = 1000000;
  /* 10,600 events a second (two thirds of the first mark) in bursts of
   * 2,650 every 250 ms, each handed over as two batches: one in the part
   * that just began, one that ends it. */
  uint64_t burst = 2650;
  assert_int_equal(hold_advice_count(&h, t, 0, 50), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(hold_advice_count(&h, t + 10, burst / 2, 50), 0);
    t += HOLD_RISE_MS;
    hold_advice_count(&h, t, burst / 2, 50);
  }
  assert_int_equal(h.hold_ms, hold);
  /* Two bursts fall into one part: 5,300 in 250 ms is 21,200 a second,
   * past the mark but not HOLD_RISE times it. */
  for (int i = 0; i < 8; i++) {
    t += HOLD_RISE_MS / 2;
    assert_int_equal(hold_advice_count(&h, t, i % 4 == 0 ? 2 * burst : 10, 50),
                     hold);
  }
  /* A rise to 81,920 a second (HOLD_RISE times 40,960, whose batches
   * fill in 100 ms) lowers the advice at once to 100 ms; HOLD_RISE times
   * a batch per flush_ms ends it. */
  t = rise_then_quiet(&h, t, 20480, 100);
  t = rise_then_quiet(
      &h, t, (uint64_t)(full * HOLD_RISE * HOLD_RISE_MS / 1000) + 1, 0);
  /* The edge, within one window: a part of one event less than
   * HOLD_RISE times a batch per flush_ms leaves the shortest hold (a
   * batch per flush_ms), one at it ends the advice. */
  uint64_t edge = (uint64_t)(full * HOLD_RISE * HOLD_RISE_MS / 1000);
  t += HOLD_RISE_MS;
  assert_int_equal(hold_advice_count(&h, t, edge - 1, 50), 50);
  t += HOLD_RISE_MS;
  assert_int_equal(hold_advice_count(&h, t, edge, 50), 0);
  /* A steady rate in the fill band: the time a batch takes to fill. */
  hold_advice g = {0};
  t = 1000000;
  for (int i = 0; i <= 8; i++, t += HOLD_RISE_MS)
    hold_advice_count(&g, t, 40960 / 4, 50);
  assert_int_equal(g.hold_ms, 100);
}

/* FLUSH (protocol version 5): the agent waits for the ack of its events
 * up to last_seq, so the batch that holds them is due at flush_ms; a
 * last_seq past the events received is refused. */
static void flush_makes_the_batch_due(void **state) {
  fixture *f = *state;
  agent *a = one_task_agent(f, 14);
  const char *reason = NULL;
  wbatch *b = ingest_current(f->in);
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0),
                   BATCH_IDLE_FACTOR * 50 - 10);
  assert_int_equal(ingest_flush(f->in, a, 3, &reason), -1);
  assert_string_equal(reason, "FLUSH past the events received");
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0),
                   BATCH_IDLE_FACTOR * 50 - 10);
  assert_int_equal(ingest_flush(f->in, a, 2, &reason), 0);
  assert_int_equal(wbatch_commit_wait_ms(b, 10, 50, 0), 40);
  commit(f);
  /* The next batch waits as any other. */
  proto_event more[] = {ev_task(PROTO_EV_ENQUEUE, 2, 20)};
  assert_int_equal(feed(f, a, 3, more, 1, &reason), 0);
  assert_int_equal(wbatch_commit_wait_ms(ingest_current(f->in), 10, 50, 0),
                   BATCH_IDLE_FACTOR * 50 - 10);
  commit(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(strings_past_the_cap_read_other, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(first_key_binds_the_instance, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(refuses_backward_events_and_clamps_times,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(coalesces_one_row_per_task, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(later_events_update_the_stored_row, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(resent_events_are_skipped, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(enqueue_after_start_in_one_batch, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(protocol_errors_are_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(short_strings_are_valid, setup, teardown),
      cmocka_unit_test_setup_teardown(vanished_instance_turns_lost, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(restart_reloads_instances, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(ended_instances_are_forgotten, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(health_stores_whole_drops, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(health_flood_stays_bounded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(lost_instances_are_forgotten, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(unreadable_store_refuses_hello, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(small_batches_wait_longer, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(flush_makes_the_batch_due, setup,
                                      teardown),
      cmocka_unit_test(acks_advise_a_hold_while_batches_wait_anyway),
      cmocka_unit_test(hold_advice_follows_the_rate_not_its_bursts),
      cmocka_unit_test(map_deletes_keep_lookups_whole),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
