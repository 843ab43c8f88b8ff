/*
 * test_agent_oom - the agent when memory runs out, as libuv's
 * test-loop-oom.c and curl's torture tests do it: every allocation the
 * library makes is failed in turn, and each call must then report
 * TW_ENOMEM (or drop and count, on the recording path), leak nothing and
 * leave the agent working.
 *
 * The executable is linked with --wrap for the allocator's entry points,
 * so every allocation of the library's own code (linked in statically)
 * comes here first; libuv, libc and the test framework allocate as usual.
 * A thread-local role says whose allocation it is: the test thread's
 * (tw_agent_new, the batch calls), the fake collector's (never failed), or
 * any other thread's (the sender, recording threads). A count of live
 * allocations shows leaks.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <taskwatch.h>
#include <uv.h>

#include "../../agent/agent_internal.h"
#include "agent_fake_collector.h"

enum role { OTHER, TEST, EXEMPT };
static __thread int role;
static _Atomic long live;
static _Atomic long test_calls, test_fail_at = -1;
static _Atomic long other_calls, other_fail_at = -1;
static _Atomic int other_persistent;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void __real_free(void *p);

static int should_fail(void) {
  if (role == EXEMPT)
    return 0;
  if (role == TEST) {
    long n = test_calls++;
    return n == test_fail_at;
  }
  long n = other_calls++, at = other_fail_at;
  return at >= 0 && (n == at || (other_persistent && n > at));
}

static void *counted(void *p) {
  if (p != NULL)
    live++;
  return p;
}

void *__wrap_malloc(size_t n) {
  return should_fail() ? NULL : counted(__real_malloc(n));
}
void *__wrap_calloc(size_t n, size_t size) {
  return should_fail() ? NULL : counted(__real_calloc(n, size));
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
  return should_fail() ? NULL : counted(__real_aligned_alloc(align, n));
}
void *__wrap_realloc(void *p, size_t n) {
  if (should_fail())
    return NULL;
  return p == NULL ? counted(__real_realloc(p, n)) : __real_realloc(p, n);
}
void __wrap_free(void *p) {
  if (p != NULL)
    live--;
  __real_free(p);
}
char *__wrap_strndup(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  char *d = __wrap_malloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}
char *__wrap_strdup(const char *s) {
  return __wrap_strndup(s, SIZE_MAX);
}

static void arm_test(long at) {
  test_calls = 0;
  test_fail_at = at;
}
/* Whether the test thread's allocation number `at` was reached (so
 * failed) since arm_test(); disarms. */
static int disarm_test(long at) {
  test_fail_at = -1;
  return test_calls > at;
}

static void exempt(void) {
  role = EXEMPT;
}

static int setup(void **state) {
  (void)state;
  fake_thread_start = exempt;
  /* The clock is chosen once per process, by the first tw_agent_new()
   * (it reads /proc/cpuinfo, and falls back to CLOCK_MONOTONIC when it
   * cannot allocate). It is made here, unfailed, so the tests count the
   * allocations of an agent and not that one-time decision. */
  role = EXEMPT;
  tw__clock_init();
  role = TEST;
  return 0;
}

static tw_config config(const char *url) {
  tw_config cfg;
  tw_config_init(&cfg);
  cfg.collector = url;
  cfg.service = "oom";
  cfg.flush_timeout_ms = 200;
  return cfg;
}

/* No agent is live (a failed tw_agent_new() left none behind for fork()
 * or thread exit to find). */
static int registry_empty(void) {
  tw__registry_lock();
  int empty = tw__registry_first() == NULL;
  tw__registry_unlock();
  return empty;
}

/* tw_agent_new with each of its allocations failed in turn. */
static void agent_new_fails_cleanly(void **state) {
  (void)state;
  tw_config cfg = config("unix:/nonexistent/oom.sock");
  long base = live;
  long at;
  for (at = 0; at < 1000; at++) {
    tw_agent *a = (tw_agent *)1;
    arm_test(at);
    int rc = tw_agent_new(&cfg, &a);
    int failed = disarm_test(at);
    if (!failed) {
      assert_int_equal(rc, 0);
      tw_agent_free(a);
      break;
    }
    assert_int_equal(rc, TW_ENOMEM);
    assert_null(a);
    assert_int_equal(live, base);
    assert_true(registry_empty());
  }
  assert_true(at > 5 && at < 1000); /* it allocates, and finitely */
  assert_int_equal(live, base);
}

static int ran;
static int sync_task(tw_task *task, void *arg) {
  (void)task, (void)arg;
  ran++;
  return 0;
}

/* tw_batch_new and tw_batch_add with each allocation failed in turn: the
 * failing call returns TW_ENOMEM, the others work, the batch runs the
 * tasks it took. (The first event of the thread allocates its ring; that
 * failing drops and counts the event, or the next attempt succeeds, and
 * the batch goes on.) */
static void batch_calls_fail_cleanly(void **state) {
  (void)state;
  long base = live;
  tw_config cfg = config("unix:/nonexistent/oom.sock");
  tw_agent *agent;
  assert_int_equal(tw_agent_new(&cfg, &agent), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  long at;
  for (at = 0; at < 1000; at++) {
    tw_batch *b = NULL;
    int added = 0, enomem = 0;
    tw_agent_stats before, after;
    tw_agent_get_stats(agent, &before);
    arm_test(at);
    int rc = tw_batch_new(agent, &loop, "POST /oom", &b);
    if (rc == 0)
      for (int i = 0; i < 10; i++) {
        int r = tw_batch_add(b, "task", sync_task, NULL, NULL);
        added += r == 0;
        enomem += r == TW_ENOMEM;
      }
    int failed = disarm_test(at);
    tw_agent_get_stats(agent, &after);
    if (rc != 0) {
      assert_int_equal(rc, TW_ENOMEM);
      assert_true(failed);
      continue;
    }
    assert_int_equal(added + enomem, 10);
    /* The failure showed as TW_ENOMEM, as a counted drop, or as a batch
     * refused whole (its ring could not be had: the batch's event and
     * those of every task added to it are dropped and counted), or was
     * taken in the stride (a ring allocation tried again at once). */
    uint64_t refused = after.dropped_batches - before.dropped_batches;
    uint64_t dropped = after.dropped - before.dropped;
    assert_true(refused <= 1);
    if (refused) {
      assert_int_equal(dropped, 1 + (uint64_t)added);
      assert_int_equal(after.dropped_tasks - before.dropped_tasks, added);
      dropped = 1;
    }
    assert_true(enomem + dropped <= (uint64_t)failed);
    ran = 0;
    assert_int_equal(tw_batch_run(b, NULL, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(ran, added);
    if (!failed)
      break;
  }
  assert_true(at > 3 && at < 1000);
  uv_loop_close(&loop);
  tw_agent_free(agent);
  assert_int_equal(live, base);
}

static void *record_some(void *arg) {
  tw_agent *a = arg;
  intptr_t full = 0;
  for (int i = 0; i < 100; i++)
    full += tw_task_start(a, 1 + (tw_id)i) == TW_EFULL;
  return (void *)full;
}

/* A thread whose ring cannot be allocated drops and counts its events. */
static void recording_without_memory_drops_and_counts(void **state) {
  (void)state;
  long base = live;
  tw_config cfg = config("unix:/nonexistent/oom.sock");
  tw_agent *a;
  assert_int_equal(tw_agent_new(&cfg, &a), 0);
  other_calls = 0;
  other_persistent = 1;
  other_fail_at = 0;
  pthread_t th;
  void *full;
  assert_int_equal(pthread_create(&th, NULL, record_some, a), 0);
  assert_int_equal(pthread_join(th, &full), 0);
  tw_agent_stats st;
  tw_agent_get_stats(a, &st);
  assert_int_equal((intptr_t)full, 100);
  assert_int_equal(st.dropped, 100);
  assert_int_equal(st.recorded, 0);
  tw_agent_free(a);
  other_fail_at = -1;
  other_persistent = 0;
  assert_int_equal(live, base);
}

/* The sender with each of its allocations failed in turn, once: it retries
 * and delivers everything. Failed from some point on for good, it still
 * shuts down, accounting for every event, leaking nothing. */
static void sender_survives_failed_allocations(void **state) {
  (void)state;
  long base = live;
  fake_collector *fc = fake_start();
  tw_config cfg = config(fake_url(fc));
  long at;
  for (at = 0; at < 1000; at++) {
    tw_agent *a;
    assert_int_equal(tw_agent_new(&cfg, &a), 0);
    other_calls = 0;
    other_fail_at = at;
    tw_id batch, task;
    assert_int_equal(tw_batch_begin(a, "oom", &batch), 0);
    for (uint32_t i = 0; i < 100; i++) {
      assert_int_equal(
          tw_task_enqueue(a, batch, i, "t", TW_MODE_THREADPOOL, &task), 0);
      assert_int_equal(tw_task_finish(a, task), 0);
    }
    int rc = tw_agent_flush(a, 20000);
    tw_agent_stats st;
    tw_agent_get_stats(a, &st);
    tw_agent_free(a);
    long calls = other_calls;
    other_fail_at = -1;
    assert_int_equal(rc, 0);
    assert_int_equal(st.dropped, 0);
    assert_true(st.acked >= 201);
    if (calls <= at)
      break;
  }
  assert_true(at > 2 && at < 1000);
  for (long from = 0; from < 4; from++) {
    tw_agent *a;
    assert_int_equal(tw_agent_new(&cfg, &a), 0);
    other_calls = 0;
    other_persistent = 1;
    other_fail_at = from;
    tw_id batch;
    assert_int_equal(tw_batch_begin(a, "starved", &batch), 0);
    for (int i = 0; i < 1000; i++)
      tw_task_start(a, batch);
    tw_agent_flush(a, 100);
    tw_agent_free(a);
    other_fail_at = -1;
    other_persistent = 0;
  }
  fake_free(fc);
  assert_int_equal(live, base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(agent_new_fails_cleanly, setup),
      cmocka_unit_test_setup(batch_calls_fail_cleanly, setup),
      cmocka_unit_test_setup(recording_without_memory_drops_and_counts, setup),
      cmocka_unit_test_setup(sender_survives_failed_allocations, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
