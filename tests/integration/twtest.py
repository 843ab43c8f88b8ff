"""Shared helpers for taskwatch integration tests: free ports, a collector
that is always stopped, running the CLI, reading NDJSON query output, and
the checks every collector's test makes."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.environ.get("TASKWATCH_BIN", "taskwatch")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_unmatched(log, shown=None):
    """Every event the collector received was stored or refused by rule:
    none for an unknown task went unstored (its summary's unmatched=, in
    each run the log holds). A failure shows the log, or its last `shown`
    characters."""
    for n in re.findall(r"\bunmatched=(\d+)", log):
        check(int(n) == 0, "collector left events unmatched: %s"
              % (log if shown is None else log[-shown:]))


def wait_until(fn, timeout=15):
    """fn()'s first true answer, asked again and again for timeout seconds
    at the most; then its last answer, whatever it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    return fn()


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LISTENING = re.compile(r"listening url=tcp://127\.0\.0\.1:(\d+)\b")
SERVING = re.compile(r"serving metrics url=tcp://127\.0\.0\.1:(\d+)/metrics")


def wait_for_log(proc, output, pattern, since=0, timeout=20.0):
    """The first match of pattern in the log output() of proc, past its
    first `since` characters. The process's own log says which port it
    bound: a connection to the port could reach another process that took
    it, while this one exited for want of it."""
    deadline = time.monotonic() + timeout
    while True:
        m = pattern.search(output(), since)
        if m:
            return m
        if proc.poll() is not None:
            raise AssertionError("collector exited early with status %s; "
                                 "its log:\n%s" % (proc.returncode, output()))
        if time.monotonic() > deadline:
            raise AssertionError("collector did not log %r; its log:\n%s"
                                 % (pattern.pattern, output()))
        time.sleep(0.02)


@contextlib.contextmanager
def tempdir():
    d = tempfile.mkdtemp(prefix="tw-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Collector:
    """A real `taskwatch collector` on a TCP port of its own: port 0 unless
    one is named, the kernel's choice read from its log (no other process
    can take it in between); with metrics=True, its metrics endpoint too
    (metrics_port)."""

    def __init__(self, db, extra=(), port=None, env=None, metrics=False):
        self.db = db
        self.log = open(db + ".collector.log", "w+")
        args = ["--listen", "tcp://127.0.0.1:%d" % (port or 0)]
        if metrics:
            args += ["--metrics-listen", "tcp://127.0.0.1:0"]
        self.proc = subprocess.Popen(
            [BIN, "collector", "--db", db, *args, *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
            env=None if env is None else dict(os.environ, **env))
        self.port = int(wait_for_log(self.proc, self.output,
                                     LISTENING).group(1))
        self.url = "tcp://127.0.0.1:%d" % self.port
        if metrics:
            # Served before the agents' listeners start (collector.md).
            self.metrics_port = int(SERVING.search(self.output()).group(1))

    def stop(self, timeout=30):
        """SIGTERM, and the collector must exit 0 after committing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("collector ignored SIGTERM")
        check_unmatched(self.output())
        return rc

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run(args, timeout=120, check=True, env=None):
    p = subprocess.run([BIN, *args], capture_output=True, text=True,
                       timeout=timeout,
                       env=None if env is None else dict(os.environ, **env))
    if check and p.returncode != 0:
        raise AssertionError("taskwatch %s exited %d: %s" % (
            " ".join(args), p.returncode, p.stderr.strip()))
    return p


def query_json(db, *filters):
    p = run(["query", "--db", db, "--format", "json", *filters])
    return [json.loads(line) for line in p.stdout.splitlines() if line]
