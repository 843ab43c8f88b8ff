"""The Python binding outside Starlette's request cycle, installed the way a
user installs it: `pip install --no-index --no-build-isolation` of a copy
of python/ into a fresh venv (with Debian's site packages, offline; the
venv is made without its own pip, Debian's does the install). Then a
script run by that venv's interpreter uses the Batch context manager,
request_scope() around Starlette BackgroundTasks, and the agent's flush;
every task is checked in `taskwatch query`. Also: an explicit
TASKWATCH_LIBRARY that does not exist is a clear error, and a source
checkout finds the library in the build tree.
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_python_common import (BUILD_ROOT, LIBRARY, PYTHON,  # noqa
                                SOURCE_ROOT, Collector, by_batch, check,
                                store_column, tempdir)

SCRIPT = r'''
import asyncio
import sys

import taskwatch

assert taskwatch.__file__.startswith(sys.prefix), taskwatch.__file__

with taskwatch.Batch("nightly cleanup") as batch:
    purge = batch.enqueue("purge_sessions")
    report = batch.enqueue("send_report", mode="loop")
    archive = batch.enqueue("archive")
    with purge:
        pass
    try:
        with report:
            raise KeyError("no report")
    except KeyError:
        pass
    else:
        raise AssertionError("the exception did not propagate")

try:
    with taskwatch.Batch("import job") as batch:
        batch.enqueue("fetch")
        batch.enqueue("load")
        raise OSError("disk full")
except OSError:
    pass

taskwatch.instrument()
from starlette.background import BackgroundTasks


def resize(n):
    return n * 2


async def notify():
    await asyncio.sleep(0)


async def main():
    with taskwatch.request_scope("worker: resize"):
        tasks = BackgroundTasks()
        tasks.add_task(resize, 1)
        tasks.add_task(notify)
        await tasks()
    with taskwatch.request_scope("worker: never run"):
        tasks = BackgroundTasks()
        tasks.add_task(resize, 2)

asyncio.run(main())

# Strings over the library's limits: cut there, marked and counted, even
# ASCII ones that the binding trims before the call.
agent = taskwatch.get_agent()
limits = taskwatch.limits()
before = agent.stats()["strings_cut"]
batch = agent.batch_begin("limits")
task = agent.task_enqueue(batch, 0, "too_long", 0)
agent.task_start(task)
agent.task_fail(task, "E" * (limits["error_type"] + 10), "m",
                "d" * (limits["error_detail"] + 5000))
assert agent.stats()["strings_cut"] == before + 2, agent.stats()
print("limits", limits["error_type"], limits["error_detail"])

assert taskwatch.get_agent().flush(20), "flush timed out"
stats = taskwatch.get_agent().stats()
assert stats["recorded"] > 0 and stats["dropped"] == 0, stats
assert stats["dropped_batches"] == 0 and stats["dropped_tasks"] == 0, stats
conn = taskwatch.get_agent().connection()
assert conn == {"state": "connected", "refusal": None, "reason": ""}, conn
print("script ok", stats["recorded"])
'''

# Run from the source tree: an agent closed while threads record (close()
# must wait for calls in flight; later calls are no-ops), and Starlette
# tracing whose recording raises must leave the tasks and their exceptions
# as they were.
ROBUST_SCRIPT = r'''
import asyncio
import os
import threading
import time

import taskwatch
from taskwatch import agent as tw_agent


def close_race(url):
    agent = taskwatch.Agent(collector=url, service="close_race",
                            flush_timeout_ms=100)
    stop = threading.Event()
    after = []

    def record():
        while not stop.is_set():
            closed = agent.closed
            batch = agent.batch_begin("race")
            task = agent.task_enqueue(batch, 0, "t", 1)
            agent.task_start(task)
            agent.task_fail(task, "E", "m", "d")
            agent.task_finish(task)
            agent.stats()
            if closed:
                after.append(batch)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.02)
    agent.close()
    time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert agent.closed
    assert all(b == 0 for b in after), "recorded after close"
    assert agent.batch_begin("late") == 0
    assert agent.flush(0.1) is False
    assert set(agent.stats().values()) == {0}, agent.stats()
    agent.close()


def says_why():
    """An agent that cannot deliver says why; a closed one is stopped."""
    agent = taskwatch.Agent(collector="tcp://127.0.0.1:1", service="why",
                            flush_timeout_ms=100)
    deadline = time.monotonic() + 10
    while agent.connection()["refusal"] is None:
        assert time.monotonic() < deadline, agent.connection()
        time.sleep(0.01)
    conn = agent.connection()
    assert conn["state"] in ("connecting", "waiting to reconnect"), conn
    assert conn["refusal"] == "collector unreachable", conn
    assert conn["reason"].endswith("(tcp://127.0.0.1:1)"), conn
    assert agent.stats()["refusal"] == 1, agent.stats()
    agent.close()
    assert agent.connection() == {"state": "stopped", "refusal": None,
                                  "reason": ""}


def close_waits():
    """A native call in progress (here a slow stand-in for tw_task_start)
    holds close() back: tw_agent_free runs only after it returned."""
    agent = taskwatch.Agent(collector="tcp://127.0.0.1:9", service="waits",
                            flush_timeout_ms=10)
    entered, release, order = threading.Event(), threading.Event(), []

    def slow_start(handle, task):
        entered.set()
        release.wait()
        order.append("start returned")

    class Lib:
        def __init__(self, lib):
            self.lib = lib

        def __getattr__(self, name):
            return getattr(self.lib, name)

        def tw_agent_free(self, handle):
            order.append("free")
            self.lib.tw_agent_free(handle)

    agent._start = slow_start
    agent._lib = Lib(agent._lib)
    caller = threading.Thread(target=agent.task_start, args=(1,),
                              daemon=True)
    caller.start()
    entered.wait()
    closer = threading.Thread(target=agent.close, daemon=True)
    closer.start()
    closer.join(0.2)
    assert order == [], order
    release.set()
    caller.join()
    closer.join()
    assert order == ["start returned", "free"], order
    entered.clear()
    agent.task_start(2)
    assert not entered.is_set(), "a call after close reached the library"


def broken_tracing():
    agent = taskwatch.Agent(collector="tcp://127.0.0.1:9", service="broken",
                            flush_timeout_ms=10)

    def boom(*args, **kwargs):
        raise RuntimeError("tracing broke")

    for name in ("task_start", "task_finish", "task_fail", "task_fail_exc",
                 "task_skip", "task_drop"):
        setattr(agent, name, boom)
    taskwatch.instrument(agent)
    from starlette.background import BackgroundTasks
    ran = []

    def sync_ok():
        ran.append("sync_ok")

    async def async_ok():
        ran.append("async_ok")

    def sync_bad():
        ran.append("sync_bad")
        raise ValueError("sync")

    async def async_bad():
        ran.append("async_bad")
        raise ValueError("async")

    async def main():
        with taskwatch.request_scope("ok", agent):
            tasks = BackgroundTasks()
            tasks.add_task(sync_ok)
            tasks.add_task(async_ok)
            await tasks()
        for bad in (sync_bad, async_bad):
            try:
                with taskwatch.request_scope("bad", agent):
                    tasks = BackgroundTasks()
                    tasks.add_task(bad)
                    tasks.add_task(sync_ok)
                    await tasks()
            except ValueError:
                pass
            else:
                raise AssertionError("the ValueError was replaced")

    asyncio.run(main())
    assert ran == ["sync_ok", "async_ok", "sync_bad", "async_bad"], ran
    agent.close()


for _ in range(10):
    close_race(os.environ["TASKWATCH_COLLECTOR"])
says_why()
close_waits()
broken_tracing()
print("robust ok")
'''


def check_robust(collector, tmp):
    out = subprocess.run(
        [PYTHON, "-c", ROBUST_SCRIPT], cwd=tmp, capture_output=True,
        text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.path.join(SOURCE_ROOT, "python"),
                 TASKWATCH_LIBRARY=LIBRARY,
                 TASKWATCH_COLLECTOR=collector.url))
    check(out.returncode == 0 and "robust ok" in out.stdout,
          "robustness script failed (%d): %s" % (
              out.returncode, out.stdout + out.stderr[-3000:]))


def install(tmp):
    """A venv with the binding pip-installed from a copy of python/."""
    source = os.path.join(tmp, "python-src")
    shutil.copytree(os.path.join(SOURCE_ROOT, "python"), source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                  "__pycache__"))
    venv = os.path.join(tmp, "venv")
    # Debian's pip, seen through the system site packages, installs into
    # the venv; skipping ensurepip saves half a minute.
    subprocess.run([PYTHON, "-m", "venv", "--system-site-packages",
                    "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    out = subprocess.run([python, "-m", "pip", "install", "--no-index",
                          "--no-build-isolation", "--quiet", source],
                         capture_output=True, text=True, timeout=300)
    check(out.returncode == 0, "pip install failed: " + out.stderr[-2000:])
    return python


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in (
        "PYTHONPATH", "TASKWATCH_LIBRARY", "TASKWATCH_BUILD_ROOT")}
    env.update(extra)
    return env


def check_library_lookup(python, tmp):
    out = subprocess.run(
        [python, "-c", "import taskwatch; taskwatch.instrument()"],
        cwd=tmp, env=clean_env(TASKWATCH_LIBRARY="/nonexistent/libtw.so"),
        capture_output=True, text=True, timeout=60)
    check(out.returncode != 0 and "LibraryNotFound" in out.stderr and
          "/nonexistent/libtw.so" in out.stderr,
          "a missing TASKWATCH_LIBRARY: " + out.stderr[-500:])
    # The library as the dynamic linker found it (the path, or a soname
    # resolved through LD_LIBRARY_PATH).
    code = ("from taskwatch import _native; import os; "
            "lib = _native.load()._name; "
            "print([l.split()[-1] for l in open('/proc/self/maps') "
            "if 'libtaskwatch' in l][0]); "
            "print(os.path.join(os.environ['TASKWATCH_BUILD_ROOT'], "
            "'agent', 'libtaskwatch.so') in list(_native.candidates()))")
    out = subprocess.run(
        [PYTHON, "-c", code], cwd=tmp,
        env=clean_env(PYTHONPATH=os.path.join(SOURCE_ROOT, "python"),
                      TASKWATCH_BUILD_ROOT=BUILD_ROOT),
        capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "build-tree lookup: " + out.stderr[-500:])
    loaded, listed = out.stdout.split()
    check(listed == "True", "the build tree is not searched")
    print("without TASKWATCH_LIBRARY the binding loaded " + loaded)


def check_tasks(collector, limits):
    tasks = collector.wait_tasks(
        lambda t: t["service"] == "binding_test" and t["status"] not in (
            "queued", "running"), 9, what="binding_test tasks")
    labels = {}
    for batch in by_batch(tasks).values():
        labels[batch[0]["batch_label"]] = batch
    nightly = labels["nightly cleanup"]
    check([(t["name"], t["mode"], t["status"]) for t in nightly] == [
        ("purge_sessions", "threadpool", "succeeded"),
        ("send_report", "loop", "failed"),
        ("archive", "threadpool", "skipped")], "nightly %r" % nightly)
    check(nightly[1]["error_type"] == "KeyError", "error_type")
    check(nightly[2]["skipped_after"] == nightly[1]["id"], "skipped_after")
    job = labels["import job"]
    check([t["status"] for t in job] == ["dropped"] * 2, "import job")
    resize = labels["worker: resize"]
    check([(t["name"], t["mode"], t["status"]) for t in resize] == [
        ("resize", "threadpool", "succeeded"),
        ("notify", "loop", "succeeded")], "resize %r" % resize)
    never = labels["worker: never run"]
    check([t["status"] for t in never] == ["dropped"], "never run")
    reasons = store_column(collector.db, "drop_reason",
                           [t["id"] for t in job + never])
    check(reasons[job[0]["id"]] == "OSError raised", "reason %r" % reasons)
    check(reasons[never[0]["id"]] == "not run", "reason %r" % reasons)
    # Cut at the library's limits (ASCII: the limit exactly, mark
    # included).
    too_long = labels["limits"][0]
    details = store_column(collector.db, "error_detail", [too_long["id"]])
    for text, limit in ((too_long["error_type"], limits[0]),
                        (details[too_long["id"]], limits[1])):
        check(text.endswith("\u2026") and len(text.encode()) == limit,
              "cut at %d: %d bytes, ends %r" % (
                  limit, len(text.encode()), text[-3:]))


def main():
    tmp = tempdir("tw-binding-")
    collector = Collector(tmp)
    check_robust(collector, tmp)
    python = install(tmp)
    out = subprocess.run(
        [python, "-c", SCRIPT], cwd=tmp, capture_output=True, text=True,
        timeout=120, env=clean_env(TASKWATCH_LIBRARY=LIBRARY,
                                   TASKWATCH_COLLECTOR=collector.url,
                                   TASKWATCH_SERVICE="binding_test"))
    check(out.returncode == 0 and "script ok" in out.stdout,
          "script failed: " + out.stdout + out.stderr[-3000:])
    limits = [int(n) for n in out.stdout.split("limits ")[1].split()[:2]]
    check_tasks(collector, limits)
    check_library_lookup(python, tmp)
    collector.stop()
    print("ok")


if __name__ == "__main__":
    main()
