"""Overload at the defaults: whole tasks or none. An unpaced demo of
300,000 batches (900,000 tasks, about 2.7 M events in a second or two)
offers more than the pipeline takes, so the agent, at its default 8 MiB
budget, must drop. It drops whole batches and tasks, decided when they
begin, and says so in-band (HEALTH, protocol version 3):

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
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agent_util import (BIN, Collector, check, demo, rows,  # noqa: E402
                             tempdir)

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
                r = demo(col.url, BATCHES, "--fail-every", str(FAIL_EVERY),
                         "--flush-timeout", "120", timeout=300)
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
    # Whole batches: all three tasks, at their positions.
    partial = rows(db, "SELECT count(*) FROM (SELECT batch FROM tasks GROUP "
                       "BY batch HAVING group_concat(position) NOT IN "
                       "('0,1,2'))")[0][0]
    check(partial == 0, "%d batches not whole" % partial)
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
    bad_skips = rows(db, "SELECT count(*) FROM tasks t WHERE t.status = 4 AND "
                         "NOT EXISTS (SELECT 1 FROM tasks f WHERE "
                         "f.id = t.skipped_after AND f.status = 3 AND "
                         "f.batch = t.batch)")[0][0]
    check(bad_skips == 0, "%d skips without their failed task" % bad_skips)
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
