"""Overload at the defaults: whole tasks or none. An unpaced demo of
300,000 batches (900,000 tasks, about 2.7 M events in a second or two)
offers more than the pipeline takes, so the agent, at its default 8 MiB
budget, must drop. So that it must whatever the build's and the
machine's speed (a sanitized demo on a loaded machine records a fifth as
fast, and a collector can keep up with that), the collector is stopped
(SIGSTOP) from before the demo connects until the demo has recorded
everything, and goes on from there. The agent drops whole batches and
tasks, decided when they begin, and says so in-band (HEALTH, protocol
version 3):

- the agents row's dropped, dropped_batches and dropped_tasks equal the
  agent's own counts (the demo's summary line, from tw_agent_stats);
- every task the agent admitted is stored, whole: its batch has all three
  tasks at positions 0, 1, 2, none is left queued or running after the
  GOODBYE, none lacks its start or its end, none is stored from events
  whose ENQUEUE never came (batch 0), and skips point at the failure of
  their batch;
- the collector stored every event it received (unmatched=0, which
  Collector.stop() asserts);
- `taskwatch query agents` and `taskwatch top` show the same counts.

No limit is changed: this is the twin of itself.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agent_util import (BIN, Collector, check,  # noqa: E402
                             check_batches_whole, demo_finish, demo_start,
                             rows, tempdir)

BATCHES = 300000
TASKS = 3 * BATCHES
FAIL_EVERY = 7


def main():
    # The agent's defaults, whatever the caller's environment says.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TASKWATCH_")}
    with tempdir() as d:
        col = Collector(os.path.join(d, "overload.db"))
        try:
            col.start()
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(env)
            try:
                # The demo's own wait for the last acks (not a limit of the
                # agent), twice its 60 s default, so that the admitted part
                # of an unpaced run is stored before the demo gives up even
                # in an ASan build on a loaded machine.
                col.signal(signal.SIGSTOP)
                started = time.monotonic()
                proc = demo_start(col.url, BATCHES, "--fail-every",
                                  str(FAIL_EVERY), "--flush-timeout", "120")
                wait_recorded(proc)
                col.signal(signal.SIGCONT)
                r = demo_finish(proc, started, timeout=300)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            check(r.rc == 0, "demo exited %d: %s" % (r.rc, r.stderr))
            col.stop()  # asserts unmatched=0
            unmatched = [int(n) for n in
                         re.findall(r"\bunmatched=(\d+)", col.output())]
        finally:
            col.close()
        check_store(col.db, r)
        check_readers(col.db, r)
        open_tasks = rows(col.db, "SELECT count(*) FROM tasks WHERE "
                                  "status IN (0, 1)")[0][0]
        stored = rows(col.db, "SELECT count(*), count(DISTINCT batch) "
                              "FROM tasks")[0]
        events = rows(col.db, "SELECT events FROM agents")[0][0]
        print("overload_default: batches %d (stored %d, dropped %d), tasks "
              "%d (stored %d, dropped %d), events recorded %d, stored %d, "
              "dropped %d, unmatched %d, open tasks %d" % (
                  BATCHES, stored[1], r.dropped_batches, TASKS, stored[0],
                  r.dropped_tasks, r.recorded, events, r.dropped,
                  sum(unmatched), open_tasks))


def cpu_ticks(pid):
    """The process's user and system time in clock ticks, or None once it
    has exited."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def wait_recorded(proc):
    """Returns once the demo has recorded every batch: it then only waits
    for acks, and its CPU time stands still (less than a tick in a second:
    a demo still recording takes at least a core's share of a loaded
    machine). Or once it has exited."""
    idle_since, last = None, cpu_ticks(proc.pid)
    while proc.poll() is None:
        time.sleep(0.1)
        now = cpu_ticks(proc.pid)
        if now is None:
            return
        if now != last:
            idle_since, last = None, now
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= 1.0:
            return


def check_store(db, r):
    # The run overloaded the agent: the test is about what it dropped.
    check(r.dropped_batches > 0, "nothing refused: %r" % vars(r))
    agent = rows(db, "SELECT dropped, dropped_batches, dropped_tasks, ended "
                     "FROM agents")
    check(agent == [(r.dropped, r.dropped_batches, r.dropped_tasks, 1)],
          "agents row %r, the agent counted dropped %d, batches %d, tasks "
          "%d" % (agent, r.dropped, r.dropped_batches, r.dropped_tasks))
    # Every admitted task is stored: none was cut after admission.
    total, distinct = rows(db, "SELECT count(*), count(DISTINCT id) "
                               "FROM tasks")[0]
    check(total == distinct == TASKS - r.dropped_tasks,
          "%d tasks stored (%d distinct), %d admitted" % (
              total, distinct, TASKS - r.dropped_tasks))
    # Whole batches: all three tasks, at their positions, each skip after
    # its batch's failure.
    check_batches_whole(db)
    # Whole tasks: each in a final state reached through its events.
    by = dict(((s,), c) for s, c in rows(
        db, "SELECT status, count(*) FROM tasks GROUP BY 1"))
    check(set(by) <= {(2,), (3,), (4,)},
          "states other than succeeded, failed, skipped: %r; by name, "
          "position, started, reason: %r" % (by, rows(
              db, "SELECT name, position, started_at IS NOT NULL, "
                  "drop_reason, count(*) FROM tasks WHERE status NOT IN "
                  "(2, 3, 4) GROUP BY 1, 2, 3, 4")))
    missing = rows(db, "SELECT count(*) FROM tasks WHERE batch = 0 OR "
                       "finished_at IS NULL OR (status IN (2, 3) AND "
                       "started_at IS NULL)")[0][0]
    check(missing == 0, "%d tasks missing an event" % missing)
    check(by.get((3,), 0) == by.get((4,), 0),
          "failed %d, skipped %d" % (by.get((3,), 0), by.get((4,), 0)))


def check_readers(db, r):
    out = subprocess.run([BIN, "query", "agents", "--db", db, "--format",
                          "json"], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "query agents exited %d: %s" % (
        out.returncode, out.stderr))
    got = [json.loads(line) for line in out.stdout.splitlines()]
    check(len(got) == 1, "query agents: %r" % got)
    check((got[0]["dropped"], got[0]["dropped_batches"],
           got[0]["dropped_tasks"], got[0]["state"]) ==
          (r.dropped, r.dropped_batches, r.dropped_tasks, "ended"),
          "query agents says %r" % got[0])
    top = subprocess.run([BIN, "top", "--db", db, "--once"],
                         capture_output=True, text=True, timeout=60)
    check(top.returncode == 0, "top --once exited %d" % top.returncode)
    want = "dropped %de %dt %db" % (r.dropped, r.dropped_tasks,
                                    r.dropped_batches)
    check(want in top.stdout, "top does not say %r:\n%s" % (want, top.stdout))


if __name__ == "__main__":
    main()
