"""Helpers for the agent's integration tests: a real collector on a
port that can be stopped (SIGSTOP), killed (SIGKILL) and restarted on the
same database and port; the demo; reading the store. Every process started
here is killed on exit, whatever happens."""

import os
import re
import signal
import sqlite3
import subprocess
import time

from twtest import (BIN, LISTENING, check, check_unmatched,  # noqa: F401
                    free_port, tempdir,  # (free_port, tempdir: used by tests)
                    wait_for_log)
LIBRARY = os.environ.get("TASKWATCH_LIBRARY", "libtaskwatch.so")


class Collector:
    """`taskwatch collector` on one port and one database, across restarts:
    the kernel's choice at the first start (read from its log), the same
    port at each restart, so the agent finds it again."""

    def __init__(self, db, port=None):
        self.db = db
        self.port = port or 0
        self.url = None
        self.proc = None
        self.log = open(db + ".collector.log", "a+")
        self.killed_at = None
        self.outages = []  # seconds from each SIGKILL to listening again

    def start(self, timeout=20.0):
        since = len(self.output())
        self.proc = subprocess.Popen(
            [BIN, "collector", "--db", self.db, "--listen",
             "tcp://127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)
        m = wait_for_log(self.proc, self.output, LISTENING, since, timeout)
        self.port = int(m.group(1))
        self.url = "tcp://127.0.0.1:%d" % self.port
        if self.killed_at is not None:
            self.outages.append(time.monotonic() - self.killed_at)
            self.killed_at = None

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self.killed_at = time.monotonic()

    def stop(self, timeout=60):
        """SIGTERM: the collector commits what it received and exits 0."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        check(rc == 0, "collector exited %s on SIGTERM" % rc)
        check_unmatched(self.output(), shown=4000)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.log.close()


SUMMARY = re.compile(
    r"demo: (\d+) batches, (\d+) tasks \(\d+ succeeded, (\d+) failed, "
    r"(\d+) skipped\); work ([0-9.]+) s, flush ([0-9.]+) s; events: (\d+) "
    r"recorded, (\d+) stored \([^)]*\), (\d+) dropped; refused whole: "
    r"(\d+) batches, (\d+) tasks(?: \(batches refused by: ring (\d+), "
    r"sender (\d+), pool (\d+)\))?")


class DemoResult:
    def __init__(self, rc, stdout, stderr, wall):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.wall = wall
        m = SUMMARY.search(stdout)
        check(m is not None, "no demo summary in %r / %r" % (stdout, stderr))
        g = m.groups()
        self.batches, self.tasks, self.failed, self.skipped = map(int, g[:4])
        self.work, self.flush = float(g[4]), float(g[5])
        (self.recorded, self.acked, self.dropped, self.dropped_batches,
         self.dropped_tasks) = map(int, g[6:11])
        # Which rule refused the batches (a build before they were told
        # apart prints none of them).
        self.refused_by = tuple(int(x) for x in g[11:] if x is not None)


def demo_start(url, batches, *extra, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    args = [BIN, "demo", "--collector", url, "--batches", str(batches),
            *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def demo_finish(proc, started, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the demo did not finish in %d s" % timeout)
    return DemoResult(proc.returncode, out, err, time.monotonic() - started)


def demo(url, batches, *extra, env=None, timeout=120):
    started = time.monotonic()
    proc = demo_start(url, batches, *extra, env=env)
    return demo_finish(proc, started, timeout)


def rows(db, sql, *params):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def check_batches_whole(db):
    """Every batch of the demo's is stored whole: its three tasks at
    positions 0, 1 and 2, each skipped one after the failed task of its
    batch that it names."""
    partial = rows(db, "SELECT count(*) FROM (SELECT batch FROM tasks GROUP "
                       "BY batch HAVING group_concat(position) NOT IN "
                       "('0,1,2'))")[0][0]
    check(partial == 0, "%d batches without positions 0,1,2" % partial)
    bad_skips = rows(db, "SELECT count(*) FROM tasks t WHERE t.status = 4 AND "
                         "NOT EXISTS (SELECT 1 FROM tasks f WHERE "
                         "f.id = t.skipped_after AND f.status = 3 AND "
                         "f.batch = t.batch)")[0][0]
    check(bad_skips == 0, "%d skips without their failed task" % bad_skips)


def kill9_while_running(col, proc, kills, gap, outage):
    """Kills the collector with SIGKILL up to `kills` times while the demo
    proc runs, gap() seconds apart, and starts it again outage() seconds
    after each kill; returns how many kills there were."""
    done = 0
    for _ in range(kills):
        time.sleep(gap())
        if proc.poll() is not None:
            break
        col.kill9()
        done += 1
        time.sleep(outage())
        col.start()
    return done
