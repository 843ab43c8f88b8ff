#!/usr/bin/env python3
"""outage - the longest collector outage the agent rides out without a
drop, at the default 8 MiB buffer, at 10,000 and at 100,000 events/s.

For each rate, `taskwatch demo` (batches of three tasks, ten events each)
streams to a real collector; 1.5 s in, the collector is killed with
SIGKILL, and restarted on the same database and port after the outage
being tried. The demo's own summary says how many events the agent
dropped. Outages are tried from short to long, each in a fresh run, and
a rate's series stops at the first one with drops. What limits the
outage: the resend buffer's share of the budget (about 7 MiB) over the
bytes per second the demo's events take on the wire (about 12 bytes an
event in protocol version 4's compact encoding, 27 in the fixed one of
versions 1 to 3), plus the time the restarted collector needs to take
the backlog while new events arrive. --bin of an older build measures
that build (its own demo and collector) for a side-by-side table.

Usage: bench/outage.py [--bin build/cli/taskwatch] [--quick]
Prints one `key: value` line per trial, then the table. The machine is
shared and the figures move with its load: indicative, not exact.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

RATES = {10000: [1, 2, 4, 8, 16, 32, 48, 64],
         100000: [0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10]}
KILL_AT = 1.5  # seconds into the run
TAIL = 3.0     # seconds of traffic after the restart


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(binary, db, url, port, log):
    proc = subprocess.Popen([binary, "collector", "--db", db, "--listen", url],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("outage: the collector did not listen")


def trial(binary, events_per_s, outage):
    batches_per_s = events_per_s // 10
    seconds = KILL_AT + outage + TAIL
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        url = "tcp://127.0.0.1:%d" % port
        db = os.path.join(d, "outage.db")
        log = open(os.path.join(d, "collector.log"), "w")
        col = start_collector(binary, db, url, port, log)
        env = dict(os.environ)
        env.pop("TASKWATCH_BUFFER_BYTES", None)  # the default budget
        demo = subprocess.Popen(
            [binary, "demo", "--collector", url, "--batches",
             str(int(batches_per_s * seconds)), "--rate", str(batches_per_s),
             "--flush-timeout", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        try:
            time.sleep(KILL_AT)
            col.send_signal(signal.SIGKILL)
            col.wait()
            time.sleep(outage)
            col = start_collector(binary, db, url, port, log)
            out, err = demo.communicate(timeout=300)
        finally:
            if demo.poll() is None:
                demo.kill()
            col.send_signal(signal.SIGKILL)
            col.wait()
            log.close()
    m = re.search(r"(\d+) dropped", out)
    if m is None:
        raise SystemExit("outage: no demo summary: %r %r" % (out, err))
    return int(m.group(1)), demo.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(
        HERE, "..", "build", "cli", "taskwatch"))
    ap.add_argument("--quick", action="store_true",
                    help="fewer outages: a smoke run")
    args = ap.parse_args()
    print("loadavg_start: %s" % " ".join(open("/proc/loadavg").read()
                                         .split()[:3]))
    best = {}
    for rate, outages in RATES.items():
        best[rate] = None
        first_drop = None
        for outage in (outages[:2] if args.quick else outages):
            dropped, rc = trial(args.bin, rate, outage)
            print("outage_%d_events_per_s_%.1f_s_dropped: %s" %
                  (rate, outage, dropped))
            sys.stdout.flush()
            if dropped == 0:
                best[rate] = outage
            else:
                first_drop = outage
                break
        best[rate] = (best[rate], first_drop)
    print("loadavg_end: %s" % " ".join(open("/proc/loadavg").read()
                                       .split()[:3]))
    print()
    print("%-14s %-28s %s" % ("events/s", "longest outage, no drop",
                              "first outage with drops"))
    for rate, (ok, bad) in best.items():
        print("%-14d %-28s %s" % (rate, "%.1f s" % ok if ok else "none",
                                  "%.1f s" % bad if bad else "none tried"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
