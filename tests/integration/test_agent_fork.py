"""Lifecycle across fork() (issue 3, point 5), in a real process: Python
loads libtaskwatch.so through ctypes, records tasks, forks; the child
records its own tasks and shuts its agent down; the parent records more and
shuts down. The real collector must hold two instances (two pids), the
child's tasks once under the child, the parent's under the parent, none of
the parent's events resent by the child.
"""
import ctypes
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agent_util import (BIN, LIBRARY, Collector, check,  # noqa: E402
                             rows, tempdir)


def load():
    lib = ctypes.CDLL(LIBRARY)
    p = ctypes.c_void_p
    u64 = ctypes.c_uint64
    lib.tw_agent_new.argtypes = [p, ctypes.POINTER(p)]
    lib.tw_agent_flush.argtypes = [p, ctypes.c_uint]
    lib.tw_agent_free.argtypes = [p]
    lib.tw_batch_begin.argtypes = [p, ctypes.c_char_p, ctypes.POINTER(u64)]
    lib.tw_task_enqueue.argtypes = [p, u64, ctypes.c_uint32, ctypes.c_char_p,
                                    ctypes.c_int, ctypes.POINTER(u64)]
    lib.tw_task_start.argtypes = [p, u64]
    lib.tw_task_finish.argtypes = [p, u64]
    return lib


def record(lib, agent, label, name, count):
    batch = ctypes.c_uint64()
    check(lib.tw_batch_begin(agent, label, ctypes.byref(batch)) == 0,
          "tw_batch_begin")
    for i in range(count):
        task = ctypes.c_uint64()
        check(lib.tw_task_enqueue(agent, batch, i, name, 1,
                                  ctypes.byref(task)) == 0, "enqueue")
        check(lib.tw_task_start(agent, task) == 0, "start")
        check(lib.tw_task_finish(agent, task) == 0, "finish")


def preload_sanitizer():
    """An ASan-built library can only be loaded into Python with the ASan
    runtime preloaded: re-execute with it when the library needs it."""
    if os.environ.get("TW_FORK_TEST_PRELOADED"):
        return
    out = subprocess.run(["ldd", LIBRARY], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            path = line.split("=>")[1].split("(")[0].strip()
            env = dict(os.environ, LD_PRELOAD=path,
                       TW_FORK_TEST_PRELOADED="1",
                       ASAN_OPTIONS="detect_leaks=0")
            os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main():
    preload_sanitizer()
    with tempdir() as d:
        col = Collector(os.path.join(d, "fork.db"))
        try:
            col.start()
            os.environ["TASKWATCH_COLLECTOR"] = col.url
            os.environ["TASKWATCH_SERVICE"] = "forker"
            lib = load()
            agent = ctypes.c_void_p()
            check(lib.tw_agent_new(None, ctypes.byref(agent)) == 0,
                  "tw_agent_new")
            record(lib, agent, b"flushed", b"parent_before", 2)
            check(lib.tw_agent_flush(agent, 10000) == 0, "first flush")
            record(lib, agent, b"before fork", b"parent_before", 1)
            # That last one may still sit in the parent's buffers at fork
            # time: the child must not send it. (The flush first lets the
            # sender settle, with a spare chunk, so it is not inside the
            # allocator at fork time: under ASan, whose allocator locks do
            # not survive fork, a child would otherwise hang.)
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    record(lib, agent, b"in child", b"child_task", 2)
                    code = 0 if lib.tw_agent_flush(agent, 10000) == 0 else 3
                    lib.tw_agent_free(agent)
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                  "child status %r" % status)
            record(lib, agent, b"after fork", b"parent_after", 1)
            check(lib.tw_agent_flush(agent, 10000) == 0, "parent flush")
            lib.tw_agent_free(agent)
            col.stop()
        finally:
            col.close()
        q = subprocess.run([BIN, "query", "--db", col.db, "--format", "json"],
                           capture_output=True, text=True, timeout=60)
        check(q.returncode == 0, "query failed: %s" % q.stderr)
        tasks = [json.loads(line) for line in q.stdout.splitlines() if line]
        by_pid = {}
        for t in tasks:
            by_pid.setdefault(t["pid"], []).append(t["name"])
        me = os.getpid()
        check(sorted(by_pid) == sorted([me, pid]), "pids %r" % by_pid.keys())
        check(sorted(by_pid[me]) == ["parent_after"] + ["parent_before"] * 3,
              "parent tasks %r" % by_pid[me])
        check(by_pid[pid] == ["child_task"] * 2, "child tasks %r" %
              by_pid[pid])
        check(all(t["status"] == "succeeded" for t in tasks),
              "statuses %r" % [t["status"] for t in tasks])
        agents = rows(col.db, "SELECT pid, instance FROM agents ORDER BY pid")
        check(len(agents) == 2 and agents[0][1] != agents[1][1],
              "agents %r" % agents)
        print("fork: parent %d tasks, child %d tasks, 2 instances" % (
            len(by_pid[me]), len(by_pid[pid])))


if __name__ == "__main__":
    main()
