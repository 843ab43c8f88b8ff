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


def wait_for_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                "collector exited early with status %s" % proc.returncode)
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        time.sleep(0.05)
    raise AssertionError("collector did not listen on port %d" % port)


@contextlib.contextmanager
def tempdir():
    d = tempfile.mkdtemp(prefix="tw-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Collector:
    """A real `taskwatch collector` on a free TCP port."""

    def __init__(self, db, extra=(), port=None, env=None):
        self.db = db
        # free_port() only finds a port that was free: another process may
        # bind it before the collector does (the suite runs tests side by
        # side), so a start refused for that reason is tried on a new port.
        for attempt in range(5):
            self.port = port or free_port()
            self.url = "tcp://127.0.0.1:%d" % self.port
            self.log = open(db + ".collector.log", "w+")
            self.proc = subprocess.Popen(
                [BIN, "collector", "--db", db, "--listen", self.url, *extra],
                stdout=self.log, stderr=subprocess.STDOUT,
                env=None if env is None else dict(os.environ, **env))
            try:
                wait_for_port(self.port, self.proc)
                return
            except AssertionError as e:
                text = self.output()
                if (port is not None or attempt == 4 or
                        "already in use" not in text or
                        self.url not in text):
                    raise AssertionError("%s; its log:\n%s" % (e, text))
                self.log.close()

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
