/*
 * test_clock - the agent's clock: the choice between the time-stamp counter
 * and CLOCK_MONOTONIC (CPU flags read from a given text, the kernel's
 * clocksource, TASKWATCH_CLOCK), the sender's mapping from counter ticks to
 * monotonic ns (interpolation, long gaps, drift, a full history, times that
 * step back), and, in child processes started with each TASKWATCH_CLOCK,
 * the times a collector receives.
 */
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <taskwatch.h>

#include "agent_fake_collector.h"
/* The clock's decision and mapping are internal; the test links the
 * static library, where they are reachable. */
#include "../../agent/clock.h"

extern char **environ;

/* ---- the choice ---------------------------------------------------------- */

static void request_values(void **state) {
  (void)state;
  clock_request r;
  assert_int_equal(tw__clock_parse_request(NULL, &r), 0);
  assert_int_equal(r, CLOCK_REQUEST_AUTO);
  assert_int_equal(tw__clock_parse_request("", &r), 0);
  assert_int_equal(r, CLOCK_REQUEST_AUTO);
  assert_int_equal(tw__clock_parse_request("auto", &r), 0);
  assert_int_equal(r, CLOCK_REQUEST_AUTO);
  assert_int_equal(tw__clock_parse_request("tsc", &r), 0);
  assert_int_equal(r, CLOCK_REQUEST_TSC);
  assert_int_equal(tw__clock_parse_request("monotonic", &r), 0);
  assert_int_equal(r, CLOCK_REQUEST_MONOTONIC);
  const char *bad[] = {"TSC", "tsc ", " tsc", "mono", "monotonic\n", "x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    r = CLOCK_REQUEST_TSC;
    assert_int_equal(tw__clock_parse_request(bad[i], &r), -1);
    assert_int_equal(r, CLOCK_REQUEST_AUTO);
  }
}

/* Two processors as Linux prints them on a KVM guest, cut down. */
#define CPU(n, flags)                                                          \
  "processor\t: " #n "\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"   \
  "flags\t\t: " flags "\nbugs\t\t: sysret_ss_attrs\n"                          \
  "power management:\n\n"
#define GOOD "fpu tsc msr constant_tsc rep_good nopl tsc_reliable nonstop_tsc"

static void cpuinfo_flags(void **state) {
  (void)state;
  assert_int_equal(tw__clock_cpuinfo_invariant(CPU(0, GOOD) CPU(1, GOOD)), 1);
  /* One processor without nonstop_tsc spoils it. */
  assert_int_equal(
      tw__clock_cpuinfo_invariant(CPU(0, GOOD) CPU(1, "fpu tsc constant_tsc")), 0);
  assert_int_equal(tw__clock_cpuinfo_invariant(CPU(0, "tsc nonstop_tsc")), 0);
  /* Words, not substrings. */
  assert_int_equal(
      tw__clock_cpuinfo_invariant(CPU(0, "xconstant_tsc nonstop_tsc_x")), 0);
  /* The last word of the line, without a trailing newline. */
  assert_int_equal(tw__clock_cpuinfo_invariant("flags\t: constant_tsc nonstop_tsc"),
                   1);
  /* Intel's "vmx flags" line is not the CPU's flags line. */
  assert_int_equal(tw__clock_cpuinfo_invariant("vmx flags\t: constant_tsc "
                                           "nonstop_tsc\n"),
                   -1);
  /* arm64 says "Features"; no flags line: CPUID decides. */
  assert_int_equal(tw__clock_cpuinfo_invariant("processor\t: 0\nFeatures\t: fp "
                                           "asimd evtstrm\n"),
                   -1);
  assert_int_equal(tw__clock_cpuinfo_invariant(""), -1);
}

static void kernel_clocksource(void **state) {
  (void)state;
  assert_false(tw__clock_kernel_refuses("tsc\n"));
  assert_false(tw__clock_kernel_refuses("kvm-clock\n"));
  assert_false(tw__clock_kernel_refuses("hyperv_clocksource_tsc_page\n"));
  assert_false(tw__clock_kernel_refuses("arch_sys_counter"));
  assert_true(tw__clock_kernel_refuses("hpet\n"));
  assert_true(tw__clock_kernel_refuses("acpi_pm\n"));
  assert_true(tw__clock_kernel_refuses("jiffies"));
  assert_false(tw__clock_kernel_refuses("hpet2\n"));
}

static void decision(void **state) {
  (void)state;
  clock_facts good = {.have_counter = true, .invariant = true};
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_AUTO, &good), CLOCK_SOURCE_TSC);
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_MONOTONIC, &good),
                   CLOCK_SOURCE_MONOTONIC);
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_TSC, &good), CLOCK_SOURCE_TSC);

  clock_facts f = good;
  f.invariant = false;
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_AUTO, &f),
                   CLOCK_SOURCE_MONOTONIC);
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_TSC, &f), CLOCK_SOURCE_TSC);
  f = good;
  f.kernel_refuses = true;
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_AUTO, &f),
                   CLOCK_SOURCE_MONOTONIC);
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_TSC, &f), CLOCK_SOURCE_TSC);
  f = good;
  f.counter_slow = true;
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_AUTO, &f),
                   CLOCK_SOURCE_MONOTONIC);
  /* No counter in this build: nothing forces one. */
  f = good;
  f.have_counter = false;
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_AUTO, &f),
                   CLOCK_SOURCE_MONOTONIC);
  assert_int_equal(tw__clock_decide(CLOCK_REQUEST_TSC, &f), CLOCK_SOURCE_MONOTONIC);
}

static void env_is_validated(void **state) {
  (void)state;
  tw_config cfg;
  setenv("TASKWATCH_CLOCK", "tsc", 1);
  assert_int_equal(tw_config_from_env(&cfg), 0);
  setenv("TASKWATCH_CLOCK", "monotonic", 1);
  assert_int_equal(tw_config_from_env(&cfg), 0);
  setenv("TASKWATCH_CLOCK", "rdtsc", 1);
  assert_int_equal(tw_config_from_env(&cfg), TW_EINVAL);
  unsetenv("TASKWATCH_CLOCK");
  assert_int_equal(tw_config_from_env(&cfg), 0);
}

/* ---- the mapping --------------------------------------------------------- */

/* A map of a counter's own, anchors set by the test. */
static void map_start(clock_map *m, int64_t tick, int64_t ns) {
  memset(m, 0, sizeof(*m));
  m->counter = true;
  m->slope = 1.0;
  m->a[0] = (clock_anchor){tick, ns};
  m->n = 1;
  m->ceiling = ns;
}

/* The mapping never goes back over ticks [from, to], and is exact at
 * every anchor the map holds. */
static void assert_in_order(const clock_map *m, int64_t from, int64_t to,
                            int64_t step) {
  int64_t prev = INT64_MIN;
  for (int64_t t = from; t <= to; t += step) {
    int64_t got = tw__clock_map_ns(m, t);
    assert_true(got >= prev);
    prev = got;
  }
  for (size_t i = 0; i < m->n; i++)
    assert_int_equal(tw__clock_map_ns(m, m->a[i].tick), m->a[i].ns);
}

static void map_interpolates(void **state) {
  (void)state;
  static clock_map m;
  /* A 2 GHz counter: 2 ticks a ns. */
  map_start(&m, 1000000, 5000000);
  /* No rate yet: everything pins to the one anchor. */
  assert_int_equal(tw__clock_map_ns(&m, 3000000), 5000000);
  assert_true(tw__clock_map_add(&m, (clock_anchor){3000000, 6000000}));
  assert_true(tw__clock_map_add(&m, (clock_anchor){5000000, 7000000}));
  assert_int_equal(tw__clock_map_ns(&m, 1000000), 5000000);
  assert_int_equal(tw__clock_map_ns(&m, 2000000), 5500000);
  assert_int_equal(tw__clock_map_ns(&m, 3000000), 6000000);
  assert_int_equal(tw__clock_map_ns(&m, 4000000), 6500000);
  assert_int_equal(tw__clock_map_ns(&m, 5000000), 7000000);
  /* Before the first anchor: pinned to it. */
  assert_int_equal(tw__clock_map_ns(&m, 10), 5000000);
  /* Monotonic records carry their own time. */
  assert_int_equal(tw__clock_map_ns(&m, 123456789 | CLOCK_MONO_TAG), 123456789);
  /* Anchors must move forward in both fields. */
  assert_false(tw__clock_map_add(&m, (clock_anchor){5000000, 8000000}));
  assert_false(tw__clock_map_add(&m, (clock_anchor){6000000, 7000000}));
  assert_false(tw__clock_map_add(&m, (clock_anchor){4000000, 9000000}));
  assert_int_equal(m.n, 3);
}

/* A counter whose rate drifts against CLOCK_MONOTONIC (NTP slewing the
 * clock, a host that changes the guest's rate): exact at every anchor,
 * between anchors within the drift of that segment, never out of order. */
static void map_follows_drift(void **state) {
  (void)state;
  static clock_map m;
  map_start(&m, 0, 1000000000);
  double rate = 2.1; /* ticks per ns */
  int64_t tick = 0, ns = 1000000000;
  clock_anchor kept[64];
  for (int i = 0; i < 64; i++) {
    rate *= i % 2 ? 1.0001 : 0.99995;
    ns += 16000000;
    tick += (int64_t)(16000000 * rate);
    kept[i] = (clock_anchor){tick, ns};
    assert_true(tw__clock_map_add(&m, kept[i]));
  }
  for (int i = 0; i < 64; i++) /* none let go */
    assert_int_equal(m.a[i + 1].ns, kept[i].ns);
  assert_in_order(&m, 0, tick, 977777);
}

/* After 200 days of uptime monotonic ns no longer fit a double's
 * mantissa: the mapping stays exact at anchors and in order between. */
static void map_exact_after_months(void **state) {
  (void)state;
  static clock_map m;
  const int64_t base = 200LL * 86400 * 1000000000 + 1; /* odd: not a double */
  map_start(&m, 3LL << 52, base);
  for (int64_t i = 1; i <= 8; i++)
    assert_true(tw__clock_map_add(
        &m, (clock_anchor){(3LL << 52) + i * 33333331, base + i * 15872999}));
  assert_in_order(&m, 3LL << 52, (3LL << 52) + 8 * 33333331, 4999);
}

/* A sender idle for an hour takes no anchor meanwhile: records of the gap
 * are spread along it, in order, exact at both ends. */
static void map_spans_a_long_gap(void **state) {
  (void)state;
  static clock_map m;
  const int64_t hour = 3600LL * 1000000000;
  map_start(&m, 0, 0);
  assert_true(tw__clock_map_add(&m, (clock_anchor){2000000, 1000000}));
  assert_true(
      tw__clock_map_add(&m, (clock_anchor){2000000 + 2 * hour, 1000000 + hour}));
  assert_int_equal(tw__clock_map_ns(&m, 2000000 + hour), 1000000 + hour / 2);
  assert_int_equal(tw__clock_map_ns(&m, 2000000 + 2 * hour), 1000000 + hour);
  assert_in_order(&m, 0, 2000000 + 2 * hour, hour / 7);
}

/* A full history lets every other anchor go and keeps covering the oldest
 * ticks: the first and the newest anchors stay, the mapping stays in order
 * and exact at every anchor still held. */
static void map_thins_out_when_full(void **state) {
  (void)state;
  static clock_map m;
  map_start(&m, 100, 100);
  for (int64_t i = 1; i <= 3 * CLOCK_ANCHORS; i++)
    assert_true(tw__clock_map_add(
        &m, (clock_anchor){100 + i * 3000, 100 + i * 1000 + i % 7}));
  assert_true(m.n <= CLOCK_ANCHORS);
  assert_int_equal(m.a[0].tick, 100);
  assert_int_equal(m.a[m.n - 1].tick, 100 + 3 * CLOCK_ANCHORS * 3000);
  for (size_t i = 1; i < m.n; i++) {
    assert_true(m.a[i].tick > m.a[i - 1].tick);
    assert_true(m.a[i].ns > m.a[i - 1].ns);
  }
  assert_in_order(&m, 0, m.a[m.n - 1].tick, 1234);
}

/* A thread moved between CPUs whose counters disagree stamps times that
 * step back. The ring's times never go back; a small step is held to the
 * previous time (durations on the thread stay >= 0), a step beyond the
 * bound is noted as skew. */
static void ring_times_never_go_back(void **state) {
  (void)state;
  static clock_map m;
  map_start(&m, 0, 0);
  assert_true(tw__clock_map_add(&m, (clock_anchor){1000000000, 1000000000}));
  int64_t floor = 0;
  assert_int_equal(tw__clock_map_ring(&m, 500000, &floor), 500000);
  assert_int_equal(tw__clock_map_ring(&m, 500000, &floor), 500000);
  /* 10 µs back: held, not skew. */
  assert_int_equal(tw__clock_map_ring(&m, 490000, &floor), 500000);
  assert_false(m.skew);
  assert_int_equal(tw__clock_map_ring(&m, 600000, &floor), 600000);
  /* Beyond the bound: held, and noted. */
  assert_int_equal(tw__clock_map_ring(&m, 600000 - CLOCK_SKEW_NS - 1, &floor),
                   600000);
  assert_true(m.skew);
  /* After a move to CLOCK_MONOTONIC, a ring's monotonic times are held to
   * the counter times before them too. */
  assert_int_equal(tw__clock_map_ring(&m, 550000 | CLOCK_MONO_TAG, &floor), 600000);
  assert_int_equal(tw__clock_map_ring(&m, 700000 | CLOCK_MONO_TAG, &floor), 700000);
  /* A counter far ahead of the sender's (drained once the process has
   * moved to CLOCK_MONOTONIC) maps no later than the newest mark. */
  int64_t ahead = 3000000000;
  assert_true(tw__clock_map_ns(&m, ahead) > 1000000000);
  assert_int_equal(tw__clock_map_ring(&m, ahead, &floor), 1000000000);
  assert_int_equal(floor, 1000000000);
}

/* Counters of two CPUs 1 ms apart, a thread hopping between them: what
 * the sender sends for its ring is in order, and the hop is seen. */
static void skewed_cpus_are_detected(void **state) {
  (void)state;
  static clock_map m;
  map_start(&m, 0, 0);
  assert_true(tw__clock_map_add(&m, (clock_anchor){2000000000, 1000000000}));
  int64_t floor = 0, prev = 0;
  for (int64_t i = 0; i < 1000; i++) {
    int64_t tick = 1000000 + i * 20000 + (i / 10 % 2 ? 2000000 : 0);
    int64_t ns = tw__clock_map_ring(&m, tick, &floor);
    assert_true(ns >= prev);
    prev = ns;
  }
  assert_true(m.skew);
}

/* The sender's drain limit: with the counter, the newest anchor (nothing
 * due before a rate is known); once skew is found the process moves to
 * CLOCK_MONOTONIC and the limit, a tagged time, admits the counter records
 * stamped before the move as well. */
static void mark_moves_to_monotonic_on_skew(void **state) {
  (void)state;
  if (tw__clock_current() != CLOCK_SOURCE_TSC) {
    /* Needs a process that chose the counter; main() re-runs this test
     * in a child with TASKWATCH_CLOCK=tsc where the build has one. */
    skip();
  }
  static clock_map m;
  tw__clock_map_init(&m);
  assert_int_equal(m.n, 1);
  int64_t before = tw__clock_now();
  int64_t limit = tw__clock_map_mark(&m);
  /* The second anchor came in (unless the first read was refused as wide:
   * then nothing is due yet). */
  if (m.n == 2) {
    assert_true(limit >= before);
    assert_true(limit < CLOCK_MONO_TAG);
  } else {
    assert_int_equal(limit, INT64_MIN);
  }
  int64_t stamped = tw__clock_now();
  assert_true(stamped < CLOCK_MONO_TAG);
  m.skew = true;
  limit = tw__clock_map_mark(&m);
  assert_int_equal(tw__clock_current(), CLOCK_SOURCE_MONOTONIC);
  assert_string_equal(tw_clock_source(), "monotonic");
  assert_true(limit >= CLOCK_MONO_TAG);
  assert_true(stamped <= limit);
  int64_t after = tw__clock_now();
  assert_true(after >= CLOCK_MONO_TAG);
  assert_true(after > limit);
  assert_true(tw__clock_map_ns(&m, after) >= tw__clock_map_ns(&m, limit));
}

/* ---- end to end, one process per TASKWATCH_CLOCK --------------------------
 */

static bool has_events(fake_collector *fc, void *arg) {
  size_t want = *(size_t *)arg;
  return fake_instance_count(fc) == 1 &&
         fake_instance_at(fc, 0)->committed >= want;
}

static int64_t mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define CHILD_TASKS 2000

/*
 * In a process of its own (the clock is chosen once per process): prints
 * the clock source, records a task that sleeps 20 ms and a run of tasks on
 * one thread, and checks what the collector got: the sleeping task's run
 * time is what the test measured itself with CLOCK_MONOTONIC around it, at
 * least the 20 ms slept (within 1 ms either way: the counter's
 * calibration, not the machine's speed), and the
 * thread's times never go back. Returns the number of the failed check.
 */
static int child_main(void) {
  fake_collector *fc = fake_start();
  tw_config cfg;
  tw_config_init(&cfg);
  cfg.collector = fake_url(fc);
  cfg.service = "test-clock";
  tw_agent *a;
  if (tw_agent_new(&cfg, &a) != 0)
    return 1;
  printf("%s\n", tw_clock_source());
  fflush(stdout);
  tw_id batch, task, t;
  if (tw_batch_begin(a, "clock", &batch) ||
      tw_task_enqueue(a, batch, 0, "sleep", TW_MODE_LOOP, &task))
    return 2;
  int64_t t0 = mono_now();
  tw_task_start(a, task);
  struct timespec ts = {0, 20 * 1000000};
  nanosleep(&ts, NULL);
  tw_task_finish(a, task);
  int64_t t1 = mono_now();
  for (uint32_t i = 0; i < CHILD_TASKS; i++) {
    tw_task_enqueue(a, batch, i + 1, "run", TW_MODE_LOOP, &t);
    tw_task_start(a, t);
    tw_task_finish(a, t);
  }
  if (tw_agent_flush(a, 10000) != 0)
    return 3;
  size_t want = 3 + 3 * CHILD_TASKS;
  if (!fake_wait(fc, has_events, &want, 10000))
    return 4;
  int rc = 0;
  fake_lock(fc);
  fake_instance *in = fake_instance_at(fc, 0);
  int64_t start = 0, finish = 0, prev = 0;
  for (size_t i = 0; i < in->count; i++) {
    const fake_event *e = &in->events[i];
    if (e->kind == PROTO_EV_START && e->task == task)
      start = e->time_ns;
    if (e->kind == PROTO_EV_FINISH && e->task == task)
      finish = e->time_ns;
    if (e->kind == PROTO_EV_ENQUEUE || e->kind == PROTO_EV_START ||
        e->kind == PROTO_EV_FINISH) {
      if (e->time_ns < prev)
        rc = rc ? rc : 5;
      prev = e->time_ns;
    }
  }
  fake_unlock(fc);
  if (start == 0 || finish == 0)
    rc = rc ? rc : 6;
  else if (finish - start < 19 * 1000000 ||
           finish - start > (t1 - t0) + 1000000)
    rc = rc ? rc : 7;
  tw_agent_free(a);
  fake_free(fc);
  return rc;
}

/* Runs this test binary as a child with TASKWATCH_CLOCK=value (NULL:
 * unset) and argument `what`; returns its first output line in out. */
static int run_child(const char *value, const char *what, char *out,
                     size_t size) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  assert_true(n > 0);
  self[n] = '\0';
  if (value != NULL)
    setenv("TASKWATCH_CLOCK", value, 1);
  else
    unsetenv("TASKWATCH_CLOCK");
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char *argv[] = {self, (char *)what, NULL};
  pid_t pid;
  assert_int_equal(posix_spawn(&pid, self, &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  unsetenv("TASKWATCH_CLOCK");
  close(fds[1]);
  /* The first line is the answer; the rest (cmocka's report) is read to
   * the end so that the child never writes into a closed pipe. */
  FILE *f = fdopen(fds[0], "r");
  char line[512];
  out[0] = '\0';
  for (bool first = true; fgets(line, sizeof(line), f) != NULL; first = false)
    if (first)
      snprintf(out, size, "%.*s", (int)strcspn(line, "\n"), line);
  fclose(f);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

static void forced_monotonic(void **state) {
  (void)state;
  char name[64];
  assert_int_equal(run_child("monotonic", "child", name, sizeof(name)), 0);
  assert_string_equal(name, "monotonic");
}

static void forced_tsc(void **state) {
  (void)state;
  char name[64];
  assert_int_equal(run_child("tsc", "child", name, sizeof(name)), 0);
  assert_string_equal(name, CLOCK_HAVE_COUNTER ? "tsc" : "monotonic");
}

/* Unset, "auto" and a malformed value all take the automatic choice. */
static void automatic(void **state) {
  (void)state;
  char unset[64], named[64], bad[64];
  assert_int_equal(run_child(NULL, "child", unset, sizeof(unset)), 0);
  assert_int_equal(run_child("auto", "child", named, sizeof(named)), 0);
  assert_int_equal(run_child("bogus", "child", bad, sizeof(bad)), 0);
  assert_true(strcmp(unset, "tsc") == 0 || strcmp(unset, "monotonic") == 0);
  assert_string_equal(named, unset);
  assert_string_equal(bad, unset);
}

static void skew_moves_the_process(void **state) {
  (void)state;
  char out[64];
  if (!CLOCK_HAVE_COUNTER)
    skip();
  assert_int_equal(run_child("tsc", "skew", out, sizeof(out)), 0);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "child") == 0)
    return child_main();
  if (argc == 2 && strcmp(argv[1], "skew") == 0) {
    tw__clock_init();
    printf("%s\n", tw_clock_source());
    fflush(stdout);
    const struct CMUnitTest one[] = {
        cmocka_unit_test(mark_moves_to_monotonic_on_skew)};
    return cmocka_run_group_tests(one, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_values),
      cmocka_unit_test(cpuinfo_flags),
      cmocka_unit_test(kernel_clocksource),
      cmocka_unit_test(decision),
      cmocka_unit_test(env_is_validated),
      cmocka_unit_test(map_interpolates),
      cmocka_unit_test(map_follows_drift),
      cmocka_unit_test(map_spans_a_long_gap),
      cmocka_unit_test(map_exact_after_months),
      cmocka_unit_test(map_thins_out_when_full),
      cmocka_unit_test(ring_times_never_go_back),
      cmocka_unit_test(skewed_cpus_are_detected),
      cmocka_unit_test(forced_monotonic),
      cmocka_unit_test(forced_tsc),
      cmocka_unit_test(automatic),
      cmocka_unit_test(skew_moves_the_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
