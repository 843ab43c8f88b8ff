"""taskwatch top in a real terminal: a private tmux server runs the
dashboard at 80x24 against a live collector fed by `taskwatch demo` and by
an agent driven here through libtaskwatch (ctypes) whose task names and
errors carry escape sequences; the test presses keys (views, filter, help,
detail, resize, quit) and checks what `capture-pane -p` shows. Also checks
that --once output is plain text."""

import ctypes
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402

BIN = twtest.BIN


class TwConfig(ctypes.Structure):
    _fields_ = [("collector", ctypes.c_char_p), ("service", ctypes.c_char_p),
                ("token", ctypes.c_char_p), ("buffer_bytes", ctypes.c_size_t),
                ("flush_timeout_ms", ctypes.c_uint)]


class Agent:
    """An agent in this process, through libtaskwatch's trace calls, that
    records a batch every `period` seconds in a thread until stopped."""

    def __init__(self, url, service, period):
        lib = ctypes.CDLL(os.environ["TASKWATCH_LIBRARY"])
        lib.tw_agent_free.restype = None
        self.lib = lib
        self.period = period
        cfg = TwConfig(url.encode(), service, None, 0, 2000)
        self.agent = ctypes.c_void_p()
        rc = lib.tw_agent_new(ctypes.byref(cfg), ctypes.byref(self.agent))
        assert rc == 0, rc
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def tasks(self, label, names):
        lib, a = self.lib, self.agent
        b = ctypes.c_uint64()
        lib.tw_batch_begin(a, label, ctypes.byref(b))
        ids = []
        for pos, name in enumerate(names):
            t = ctypes.c_uint64()
            lib.tw_task_enqueue(a, b, pos, name, pos % 2, ctypes.byref(t))
            ids.append(t)
        return ids

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            self.batch(n)
            n += 1
            time.sleep(self.period)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=10)
        self.lib.tw_agent_flush(self.agent, 5000)
        self.lib.tw_agent_free(self.agent)


class DemoAgent(Agent):
    """What `taskwatch demo --fail-every 4` records, for as long as the
    demo subcommand is not built: the seeds' three tasks per request."""

    def __init__(self, url):
        super().__init__(url, b"demo", 0.05)

    def batch(self, n):
        lib, a = self.lib, self.agent
        ids = self.tasks(b"POST /send-notification/{email}",
                         [b"write_notification", b"send_email", b"write_log"])
        for i, t in enumerate(ids):
            if n % 4 == 3 and i == 2:
                lib.tw_task_skip(a, t, ids[1])
                continue
            lib.tw_task_start(a, t)
            if n % 4 == 3 and i == 1:
                lib.tw_task_fail(a, t, b"SMTPError", b"timeout", b"trace")
            else:
                lib.tw_task_finish(a, t)


class HostileAgent(Agent):
    """A second service whose strings try to reach the terminal: a clear
    screen sequence in a task name, OSC 52 and C1 CSI in errors, a bidi
    override in the label. Runs in a thread until stopped."""

    def __init__(self, url):
        super().__init__(url, b"evil\x1b[31mservice", 0.2)

    def batch(self, n):
        lib, a = self.lib, self.agent
        ids = self.tasks(b"POST /x\xe2\x80\xaefdp.exe",
                         [b"wipe\x1b[2J\x1b[Hscreen", b"leak"])
        lib.tw_task_start(a, ids[0])
        if n % 2:
            lib.tw_task_fail(a, ids[0], b"Boom\x9b31m",
                             b"osc\x1b]52;c;ZXZpbA==\x07 end\r",
                             b"line1\nline2\x1b[1A")
            lib.tw_task_skip(a, ids[1], ids[0])
        else:
            lib.tw_task_finish(a, ids[0])
            lib.tw_task_start(a, ids[1])
            lib.tw_task_finish(a, ids[1])


class Tmux:
    """A tmux server of our own (its own socket), killed at the end."""

    def __init__(self, d):
        self.sock = os.path.join(d, "tmux.sock")

    def cmd(self, *args, check=True):
        p = subprocess.run(["tmux", "-S", self.sock, *args],
                           capture_output=True, text=True, timeout=20)
        if check and p.returncode != 0:
            raise AssertionError("tmux %s: %s" % (args, p.stderr))
        return p.stdout

    def start(self, command, width, height):
        self.cmd("-f", "/dev/null", "new-session", "-d", "-s", "t",
                 "-x", str(width), "-y", str(height), command)
        self.cmd("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self):
        return self.cmd("capture-pane", "-p", "-t", "t")

    def keys(self, *keys):
        self.cmd("send-keys", "-t", "t", *keys)

    def wait_for(self, text, timeout=15.0, gone=False):
        deadline = time.monotonic() + timeout
        s = ""
        while time.monotonic() < deadline:
            s = self.screen()
            if (text in s) != gone:
                return s
            time.sleep(0.1)
        raise AssertionError("%r %s on screen:\n%s" % (
            text, "still" if gone else "never", s))

    def wait_prompt(self, timeout=15.0):
        """The filter prompt is open: the bottom line starts "filter:"."""
        deadline = time.monotonic() + timeout
        s = ""
        while time.monotonic() < deadline:
            s = self.screen()
            lines = s.rstrip("\n").splitlines()
            if lines and lines[-1].startswith("filter:"):
                return s
            time.sleep(0.1)
        raise AssertionError("no filter prompt:\n" + s)

    def kill(self):
        self.cmd("kill-server", check=False)


def main():
    with twtest.tempdir() as d:
        db = os.path.join(d, "store.db")
        tmux = Tmux(d)
        demo = None
        evil = None
        with twtest.Collector(db) as col:
            try:
                evil = HostileAgent(col.url)
                if demo_built():
                    demo = subprocess.Popen(
                        [BIN, "demo", "--collector", col.url, "--batches",
                         "100000", "--fail-every", "4", "--rate", "20"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                else:
                    demo = DemoAgent(col.url)
                deadline = time.monotonic() + 15
                while not os.path.exists(db) and time.monotonic() < deadline:
                    time.sleep(0.1)
                run_dashboard(tmux, db)
                check_once(db)
            finally:
                tmux.kill()
                if evil is not None:
                    evil.stop()
                if isinstance(demo, DemoAgent):
                    demo.stop()
                elif demo is not None and demo.poll() is None:
                    demo.kill()
                    demo.wait()
    print("ok")


def demo_built():
    p = subprocess.run([BIN, "demo", "--help"], capture_output=True,
                       timeout=30)
    return p.returncode == 0


def run_dashboard(tmux, db):
    env = "env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=tmux-256color"
    tmux.start("%s %s top --db %s" % (env, BIN, db), 80, 24)
    s = tmux.wait_for("send_email")
    assert " 1 tasks " in s and "STATUS" in s, s
    assert "succeeded" in s or "ok " in s, s
    # The failures the demo makes show up (every 4th batch).
    tmux.wait_for("failed")

    # Hostile strings arrive as visible text; had the clear-screen or the
    # cursor-home sequence reached the terminal, the header would be gone.
    s = tmux.wait_for("wipe\u241b[2J\u241b[H")
    assert "taskwatch" in s.splitlines()[0], s

    tmux.keys("2")
    s = tmux.wait_for("REQUEST / TASKS IN ORDER")
    assert "POST /send-notification/" in s, s
    tmux.keys("3")
    s = tmux.wait_for("COUNT")
    assert "write_notification" in s and "write_log" in s, s
    tmux.keys("4")
    s = tmux.wait_for("connected")
    assert "SERVICE" in s, s
    tmux.keys("Tab")
    s = tmux.wait_for("TIME     STATUS")

    # Filter: only failed tasks remain in the list.
    tmux.keys("/")
    tmux.wait_prompt()
    tmux.keys("status:failed", "Enter")
    s = tmux.wait_for("filter: status:failed")
    rows = [l for l in s.splitlines() if l[:2].isdigit() and ":" in l[:8]]
    assert rows, s
    assert all(" failed " in r for r in rows), s
    # Detail of the first failed task, with its error.
    tmux.keys("Enter")
    s = tmux.wait_for("(Esc closes, j/k scroll)")
    assert "status        failed" in s, s
    # Scrolled to its end, the pane shows the error.
    tmux.keys("G")
    s = tmux.wait_for("error type")
    assert "error detail" in s, s
    tmux.keys("Escape")
    tmux.wait_for("(Esc closes, j/k scroll)", gone=True)

    # A bad filter keeps the prompt and says why.
    tmux.keys("/", "C-u")
    tmux.keys("nosuchkey:1", "Enter")
    s = tmux.wait_for("filter: unknown")
    tmux.wait_prompt()
    tmux.keys("Escape")

    tmux.keys("?")
    s = tmux.wait_for("keys  (? or Esc closes)")
    assert "sort by the next column" in s, s
    tmux.keys("Escape")
    tmux.wait_for("keys  (? or Esc closes)", gone=True)

    # Resize down to 40x10 and back; it keeps drawing within the width.
    tmux.cmd("resize-window", "-t", "t", "-x", "40", "-y", "10")
    s = tmux.wait_for(" 1 tasks ")
    lines = s.splitlines()
    assert len(lines) <= 10, s
    assert all(len(l) <= 40 for l in lines), s
    assert "fail " in s, s
    tmux.cmd("resize-window", "-t", "t", "-x", "80", "-y", "24")
    tmux.wait_for("TIME     STATUS")

    tmux.keys("q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dead = tmux.cmd("display-message", "-p", "-t", "t",
                        "#{pane_dead} #{pane_dead_status}").split()
        if dead and dead[0] == "1":
            assert dead[1] == "0", dead
            return
        time.sleep(0.1)
    raise AssertionError("top did not quit on q")


def check_once(db):
    """Not a terminal: one plain snapshot, no escape bytes, any view."""
    for view in ("tasks", "batches", "names", "agents"):
        p = subprocess.run([BIN, "top", "--db", db, "--view", view],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        out = p.stdout
        assert b"\x1b" not in out and b"\r" not in out, out[:200]
        assert all(b >= 0x20 or b == 0x0a for b in out), out[:200]
        assert b" 1 tasks " in out, out[:400]
    p = subprocess.run([BIN, "top", "--db", db, "--once", "--size", "100x30",
                        "--filter", "status:failed", "--color", "never"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 30 and max(len(l) for l in lines) <= 100, lines
    assert "filter: status:failed" in p.stdout, p.stdout
    p = subprocess.run([BIN, "top", "--db", db, "--filter", "bogus:1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr


if __name__ == "__main__":
    main()
