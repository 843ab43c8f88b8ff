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
assert taskwatch.get_agent().flush(20), "flush timed out"
stats = taskwatch.get_agent().stats()
assert stats["recorded"] > 0 and stats["dropped"] == 0, stats
print("script ok", stats["recorded"])
'''


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


def check_tasks(collector):
    tasks = collector.wait_tasks(
        lambda t: t["service"] == "binding_test" and t["status"] not in (
            "queued", "running"), 8, what="binding_test tasks")
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


def main():
    tmp = tempdir("tw-binding-")
    collector = Collector(tmp)
    python = install(tmp)
    out = subprocess.run(
        [python, "-c", SCRIPT], cwd=tmp, capture_output=True, text=True,
        timeout=120, env=clean_env(TASKWATCH_LIBRARY=LIBRARY,
                                   TASKWATCH_COLLECTOR=collector.url,
                                   TASKWATCH_SERVICE="binding_test"))
    check(out.returncode == 0 and "script ok" in out.stdout,
          "script failed: " + out.stdout + out.stderr[-3000:])
    check_tasks(collector)
    check_library_lookup(python, tmp)
    collector.stop()
    print("ok")


if __name__ == "__main__":
    main()
