"""Collector restarts ridden out at the defaults: a demo streams 100,000
events/s (10,000 batches/s of three tasks) with the default 8 MiB buffer
to a collector that is killed with SIGKILL three times, each time
restarted 0.5 s later on the same database and port, while a busy loop
takes the machine's other core. Nothing is dropped, and every task is
stored exactly once in its final state (test_agent_kill9.check_store).

The twin of test_agent_kill9.py, which runs longer at a lower rate with a
large buffer. A sanitizer build records, drains and encodes several times
slower, and on a loaded 2-core machine its sender cannot keep up with
100,000 events/s whatever the buffer: there the rate is 20,000 events/s,
the outages and the buffer the same.
"""
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agent_kill9 import check_store  # noqa: E402
from test_agent_util import (BIN, Collector, check,  # noqa: E402
                             demo_finish, demo_start, kill9_while_running,
                             tempdir)

KILLS = 3
OUTAGE_S = 0.5


def sanitized():
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout
    return "libasan" in out


def main():
    rate = 2000 if sanitized() else 10000
    # Fourteen seconds: three kills about three seconds apart, each restart
    # given the time to take the backlog before the next kill (a collector
    # killed again before it caught up would make one long outage).
    batches = rate * 14
    rnd = random.Random(17)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with tempdir() as d:
            col = Collector(os.path.join(d, "kill9.db"))
            try:
                col.start()
                started = time.monotonic()
                proc = demo_start(col.url, batches, "--fail-every", "10",
                                  "--rate", str(rate))
                kills = kill9_while_running(col, proc, KILLS,
                                            lambda: rnd.uniform(2.5, 3.5),
                                            lambda: OUTAGE_S)
                r = demo_finish(proc, started, timeout=240)
                check(r.rc == 0, "demo exited %d: %s" % (r.rc, r.stderr))
                check(kills == KILLS,
                      "only %d kills happened during the demo" % kills)
                check(r.dropped == 0,
                      "%d events dropped (refused whole: %d batches, %d "
                      "tasks; batches refused by ring, sender, pool: %s; "
                      "work %.1f s, flush %.1f s; outages %s s)" % (
                          r.dropped, r.dropped_batches, r.dropped_tasks,
                          r.refused_by, r.work, r.flush,
                          " ".join("%.2f" % o for o in col.outages)))
                col.stop()
                check_store(col.db, r, kills, batches)
                outages = col.outages
            finally:
                col.close()
    finally:
        busy.kill()
        busy.wait()
    print("kill9 at the defaults: %d batches/s, %d kills of %.1f s; "
          "SIGKILL to listening again: %s s" % (
              rate, KILLS, OUTAGE_S, " ".join("%.2f" % o for o in outages)))


if __name__ == "__main__":
    main()
