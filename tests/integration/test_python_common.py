"""Helpers shared by the integration tests of the example servers and the
Python binding (test_notify_server*.py, test_python_*.py). Not a test itself.

Every process started here is registered and killed when the test exits,
however it exits, so a failing test leaves nothing behind.
"""

import atexit
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import shutil
import time

from twtest import free_port, wait_until

BIN = os.environ.get("TASKWATCH_BIN", "")
LIBRARY = os.environ.get("TASKWATCH_LIBRARY", "")
BUILD_ROOT = os.environ.get("TASKWATCH_BUILD_ROOT", "")
SOURCE_ROOT = os.environ.get(
    "TASKWATCH_SOURCE_ROOT",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable

_procs = []
_dirs = []


def _cleanup():
    for proc in _procs:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    if os.environ.get("TW_KEEP_TMP"):
        print("kept: " + " ".join(_dirs), file=sys.stderr)
        return
    for path in _dirs:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def tempdir(prefix):
    path = tempfile.mkdtemp(prefix=prefix)
    _dirs.append(path)
    return path


def spawn(args, **kwargs):
    proc = subprocess.Popen(args, **kwargs)
    _procs.append(proc)
    return proc


def wait_for(predicate, timeout, what):
    value = wait_until(predicate, timeout)
    if not value:
        fail("timed out waiting for " + what)
    return value


class Collector:
    """A private collector on a unix socket under a fresh temp dir."""

    def __init__(self, tmp):
        check(BIN and os.path.exists(BIN), "TASKWATCH_BIN not set or missing")
        self.db = os.path.join(tmp, "tw.db")
        self.sock = os.path.join(tmp, "collector.sock")
        self.url = "unix:" + self.sock
        self.log = open(os.path.join(tmp, "collector.log"), "w")
        self.proc = spawn([BIN, "collector", "--db", self.db, "--listen",
                           self.url], stdout=self.log,
                          stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll()
                 is not None, 15, "the collector's socket")
        check(self.proc.poll() is None, "the collector exited early")

    def query(self, *filters):
        out = subprocess.run([BIN, "query", "--db", self.db, *filters,
                              "--format", "json"], capture_output=True,
                             text=True, timeout=60)
        check(out.returncode == 0, "taskwatch query failed: " + out.stderr)
        return [json.loads(line) for line in out.stdout.splitlines()
                if line.strip()]

    def wait_tasks(self, predicate, count, timeout=30, what="tasks"):
        """Polls query until `count` tasks satisfy predicate (the collector
        commits in the background)."""
        last = []

        def ready():
            nonlocal last
            last = [t for t in self.query() if predicate(t)]
            return len(last) >= count

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return last
            time.sleep(0.2)
        fail("expected %d %s, found %d" % (count, what, len(last)))

    def drop_reasons(self):
        """task id -> drop_reason, read from the store (docs/schema.md)."""
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True,
                              timeout=10)
        try:
            return dict(con.execute(
                "SELECT id, drop_reason FROM tasks WHERE status IN (5, 6)"))
        finally:
            con.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
            check(code == 0, "collector exited %d" % code)


def by_batch(tasks):
    """batch id -> its tasks ordered by position."""
    batches = {}
    for task in tasks:
        batches.setdefault(task["batch"], []).append(task)
    for tasks_of_batch in batches.values():
        tasks_of_batch.sort(key=lambda t: t["position"])
    return batches


def python_env(collector_url, service, extra=None):
    """Environment for a Python process that imports the binding from the
    source tree and records to the collector."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(SOURCE_ROOT, "python")
    env["TASKWATCH_COLLECTOR"] = collector_url
    env["TASKWATCH_SERVICE"] = service
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


class Uvicorn:
    """A uvicorn process serving module:app from app_dir on a free port."""

    def __init__(self, app_dir, target, env, log_path):
        for attempt in range(5):
            self.port = free_port()
            self.log = open(log_path, "w")
            self.proc = spawn([PYTHON, "-m", "uvicorn", target, "--host",
                               "127.0.0.1", "--port", str(self.port),
                               "--log-level", "warning", "--no-access-log"],
                              cwd=app_dir, env=env, stdout=self.log,
                              stderr=subprocess.STDOUT)
            if wait_for(lambda: self._listening() or
                        self.proc.poll() is not None, 30, "uvicorn") and \
                    self.proc.poll() is None:
                return
            self.log.close()
        fail("uvicorn did not start; see " + log_path)

    def _listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM, as a service manager would: uvicorn shuts down, the
        binding's atexit hook flushes the agent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
            check(code == 0, "uvicorn exited %d" % code)
        self.log.close()


def http(port, method, path, body=b"", timeout=30):
    """One request on a fresh connection; returns (status, body bytes)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as exc:
            return response.status, b"incomplete: " + exc.partial
    finally:
        conn.close()


def store_column(db, column, ids):
    """task id -> tasks.<column> for the given ids, read from the store."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(ids))
        return dict(con.execute("SELECT id, %s FROM tasks WHERE id IN (%s)"
                                % (column, marks), list(ids)))
    finally:
        con.close()


# The FastAPI app the Python tests serve. APP_MODE picks how it is traced:
# "instrument" (taskwatch.instrument()), "middleware" (TaskwatchMiddleware
# only) or "off". Tasks write marks to APP_MARKS so a test can tell which
# ones really ran.
SCENARIO_APP = r'''
import asyncio
import os
from typing import Optional

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

MODE = os.environ.get("APP_MODE", "instrument")
MARKS = os.environ["APP_MARKS"]
if MODE != "off":
    import taskwatch
if MODE == "instrument":
    taskwatch.instrument()

app = FastAPI()


# APP_USER_MIDDLEWARE=1 adds a user middleware of the common kind
# (BaseHTTPMiddleware): the endpoint and its background then run in a task
# of their own, and the response is complete before the background ends.
if os.environ.get("APP_USER_MIDDLEWARE") == "1":
    @app.middleware("http")
    async def add_header(request, call_next):
        response = await call_next(request)
        response.headers["x-app"] = "scenario"
        return response


if MODE == "middleware":
    app.add_middleware(taskwatch.TaskwatchMiddleware)


def mark(text: str):
    with open(MARKS, "a") as f:
        f.write(text + "\n")


def audit(what: str):
    mark("audit " + what)


def write_log(message: str):
    mark("log " + message)


def write_notification(email: str, message: str = ""):
    mark("notification %s %s" % (email, message))


async def send_email(email: str):
    await asyncio.sleep(0.001)
    mark("email " + email)


async def async_mark(text: str):
    await asyncio.sleep(0)
    mark(text)


def boom(n: int):
    raise ValueError("boom %d" % n)


async def boom_async(n: int):
    await asyncio.sleep(0)
    raise LookupError("async boom %d" % n)


def get_audit(background_tasks: BackgroundTasks):
    background_tasks.add_task(audit, "request")
    return "audited"


def get_query(background_tasks: BackgroundTasks, q: Optional[str] = None,
              audited: str = Depends(get_audit)):
    if q:
        background_tasks.add_task(write_log, "found query: " + q)
    return q


@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks,
                            q: str = Depends(get_query)):
    background_tasks.add_task(write_notification, email, message="hi")
    background_tasks.add_task(send_email, email)
    return {"message": "Notification sent in the background"}


@app.post("/mixed/{n}")
def mixed(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(async_mark, "mixed-a %d" % n)
    background_tasks.add_task(mark, "mixed-s %d" % n)
    background_tasks.add_task(async_mark, "mixed-b %d" % n)
    return {"n": n}


@app.post("/middle/{n}")
async def middle(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(mark, "middle-first %d" % n)
    background_tasks.add_task(boom, n)
    background_tasks.add_task(mark, "middle-after %d" % n)
    return {"n": n}


@app.post("/first/{n}")
async def first(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(boom_async, n)
    background_tasks.add_task(mark, "first-second %d" % n)
    background_tasks.add_task(async_mark, "first-third %d" % n)
    return {"n": n}


@app.post("/raise-after-add/{n}")
async def raise_after_add(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(mark, "never %d" % n)
    raise RuntimeError("endpoint failed %d" % n)


@app.post("/http-error-after-add/{n}")
def http_error_after_add(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(mark, "never-http %d" % n)
    raise HTTPException(status_code=409, detail="conflict")


@app.post("/starlette-style/{n}")
async def starlette_style(n: int):
    return JSONResponse({"n": n},
                        background=BackgroundTask(mark, "standalone %d" % n))


@app.post("/own-background/{n}")
async def own_background(n: int, background_tasks: BackgroundTasks,
                         audited: str = Depends(get_audit)):
    # FastAPI keeps a returned response's own background and silently
    # forgets the injected BackgroundTasks: the audit task never runs.
    return JSONResponse({"n": n},
                        background=BackgroundTask(mark, "own %d" % n))


@app.post("/stream-fails/{n}")
async def stream_fails(n: int, background_tasks: BackgroundTasks):
    # The response starts (200), then its body fails: the background that
    # FastAPI attached to it never runs.
    background_tasks.add_task(mark, "never-stream %d" % n)

    async def body():
        yield b"partial"
        raise RuntimeError("stream broke %d" % n)

    return StreamingResponse(body())


sub = FastAPI()


@sub.post("/jobs/{job}")
async def job(job: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(async_mark, "job " + job)
    return {"job": job}


app.mount("/v1", sub)


@app.get("/healthz")
async def healthz():
    return {"ok": True}
'''


def write_scenario_app(tmp):
    with open(os.path.join(tmp, "scenario_app.py"), "w") as f:
        f.write(SCENARIO_APP)
    return tmp
