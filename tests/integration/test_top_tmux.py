"""taskwatch top in a real terminal: a private tmux server runs the
dashboard at 80x24 against a live collector fed by `taskwatch demo` and by
an agent driven here through libtaskwatch (ctypes) whose task names and
errors carry escape sequences; the test presses keys (views, filter, help,
detail, resize, quit) and checks what `capture-pane -p` shows. Also checks
that --once output is plain text."""

import ctypes
import os
import re
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
                ("flush_timeout_ms", ctypes.c_uint),
                # The rest of struct tw_config (TLS paths, disabled, the
                # reserved room), all pointer-sized and left zero: the
                # library reads the whole struct.
                ("rest", ctypes.c_void_p * 16)]


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

    def start(self, command, width, height, session="t"):
        self.cmd("-f", "/dev/null", "new-session", "-d", "-s", session,
                 "-x", str(width), "-y", str(height), command)
        self.cmd("set-option", "-t", session, "remain-on-exit", "on")

    def screen(self, session="t", escapes=False):
        args = ["capture-pane", "-p", "-t", session]
        if escapes:
            args.insert(1, "-e")
        return self.cmd(*args)

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

    def wait_until(self, pred, what, timeout=15.0):
        """Polls until pred(screen) holds. The dashboard redraws live, so
        a capture can land mid-update; polling rides over that."""
        deadline = time.monotonic() + timeout
        s = ""
        while time.monotonic() < deadline:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError("never %s:\n%s" % (what, s))

    def wait_all(self, *texts):
        return self.wait_until(lambda s: all(t in s for t in texts),
                               "all of %r on screen" % (texts,))

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


def preload_sanitizer():
    """An ASan-built libtaskwatch loads into this uninstrumented Python only
    with the ASan runtime preloaded: re-execute with it when needed. The
    processes this test starts get the environment as it was."""
    if os.environ.get("TW_TOP_TEST_PRELOADED"):
        os.environ.pop("LD_PRELOAD", None)
        os.environ.pop("TW_TOP_TEST_PRELOADED", None)
        saved = os.environ.pop("TW_TOP_TEST_ASAN_OPTIONS", None)
        if saved:
            os.environ["ASAN_OPTIONS"] = saved
        else:
            os.environ.pop("ASAN_OPTIONS", None)
        return
    out = subprocess.run(["ldd", os.environ["TASKWATCH_LIBRARY"]],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            path = line.split("=>")[1].split("(")[0].strip()
            env = dict(os.environ, LD_PRELOAD=path,
                       TW_TOP_TEST_PRELOADED="1",
                       TW_TOP_TEST_ASAN_OPTIONS=os.environ.get(
                           "ASAN_OPTIONS", ""),
                       ASAN_OPTIONS="detect_leaks=0")
            os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main():
    preload_sanitizer()
    with twtest.tempdir() as d:
        db = os.path.join(d, "store.db")
        tmux = Tmux(d)
        demo = None
        evil = None
        with twtest.Collector(db) as col:
            try:
                evil = HostileAgent(col.url)
                demo = subprocess.Popen(
                    [BIN, "demo", "--collector", col.url, "--batches",
                     "100000", "--fail-every", "4", "--rate", "20"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 15
                while not os.path.exists(db) and time.monotonic() < deadline:
                    time.sleep(0.1)
                run_dashboard(tmux, db)
                check_colours(tmux, db)
                check_interrupt(tmux, db)
                check_once(db)
            finally:
                tmux.kill()
                if evil is not None:
                    evil.stop()
                if demo is not None and demo.poll() is None:
                    demo.kill()
                    demo.wait()
    print("ok")


def run_dashboard(tmux, db):
    env = "env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=tmux-256color"
    # The shell records top's exit status: tmux's own pane_dead_status is
    # not always filled in by the time the pane is dead.
    status_file = db + ".top-status"
    tmux.start("sh -c '%s %s top --db %s; echo exit=$? > %s'" % (
        env, BIN, db, status_file), 80, 24)
    tmux.wait_all(" 1 tasks ", "STATUS", "send_email", "succeeded")
    # The failures the demo makes show up (every 4th batch) as list rows.
    tmux.wait_for(" failed    send_email")

    # Hostile strings arrive as visible text; had the clear-screen or the
    # cursor-home sequence reached the terminal, the header would be gone.
    tmux.wait_until(lambda s: "wipe\u241b[2J\u241b[H" in s
                    and s.startswith("taskwatch"), "hostile name shown")

    tmux.keys("2")
    tmux.wait_all("REQUEST / TASKS IN ORDER", "POST /send-notification/")
    tmux.keys("3")
    tmux.wait_all("COUNT", "write_notification", "write_log")
    tmux.keys("4")
    tmux.wait_all("SERVICE", "connected")
    tmux.keys("Tab")
    tmux.wait_for("TIMEv    STATUS")

    # Filter: only failed tasks remain in the list.
    tmux.keys("/")
    tmux.wait_prompt()
    tmux.keys("status:failed", "Enter")

    # Applied (shown in the tab row, prompt closed): only failed rows.
    def only_failed(s):
        lines = s.rstrip("\n").splitlines()
        rows = [l for l in lines if l[:2].isdigit() and l[2:3] == ":"]
        return ("agents   filter: status:failed" in s and rows
                and not lines[-1].startswith("filter:")
                and all(" failed " in r for r in rows))
    tmux.wait_until(only_failed, "only failed tasks listed")
    # Detail of the first failed task; scrolled to its end, the error.
    tmux.keys("Enter")
    tmux.wait_all("(Esc closes, j/k scroll)", "status        failed")
    tmux.keys("G")
    tmux.wait_all("error type", "error detail")
    tmux.keys("Escape")
    tmux.wait_for("(Esc closes, j/k scroll)", gone=True)

    # A bad filter keeps the prompt and says why.
    tmux.keys("/", "C-u")
    tmux.keys("nosuchkey:1", "Enter")
    tmux.wait_for("filter: unknown")
    tmux.wait_prompt()
    tmux.keys("Escape")

    tmux.keys("?")
    tmux.wait_all("keys  (? or Esc closes)", "sort: next column")
    tmux.keys("Escape")
    tmux.wait_for("keys  (? or Esc closes)", gone=True)

    check_sort_and_window(tmux)

    # Resize down to 40x10 and back; it keeps drawing within the width.
    tmux.cmd("resize-window", "-t", "t", "-x", "40", "-y", "10")

    def small(s):
        lines = s.splitlines()
        return (" 1 tasks " in s and "fail " in s and len(lines) <= 10
                and all(len(l) <= 40 for l in lines))
    tmux.wait_until(small, "a 40x10 screen")
    tmux.cmd("resize-window", "-t", "t", "-x", "80", "-y", "24")
    tmux.wait_for("TIMEv    STATUS")

    tmux.keys("q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(status_file):
            with open(status_file) as f:
                status = f.read().strip()
            if status:
                assert status == "exit=0", status
                return
        time.sleep(0.1)
    raise AssertionError("top did not quit on q:\n" + tmux.screen())


DURATION = re.compile(r"^([0-9.]+)(us|ms|s)$")
UNIT_US = {"us": 1, "ms": 1000, "s": 1000000}


def run_column(s):
    """The RUN cells of the task rows on screen, in microseconds (None for
    "-"), top to bottom; None when the screen is not the tasks list."""
    lines = s.splitlines()
    title = [i for i, l in enumerate(lines) if "STATUS" in l and "RUN" in l]
    if not title:
        return None
    head = lines[title[0]]
    end = head.index("RUN") + len("RUNv")
    values = []
    for l in lines[title[0] + 1:-1]:
        if not (l[:2].isdigit() and l[2:3] == ":"):
            break
        cell = l[:end].split()[-1]
        m = DURATION.match(cell)
        values.append(float(m.group(1)) * UNIT_US[m.group(2)] if m else None)
    return values


def check_sort_and_window(tmux):
    """s sorts the tasks by run time, largest first (RUNv in the titles);
    S turns it round; w widens the window, which the header names."""
    tmux.keys("/", "C-u", "Enter")
    tmux.wait_until(lambda s: "filter:" not in s, "the filter cleared")
    tmux.keys("s")

    def by_run(s, desc=True):
        """Rows in run order; "-" (never ran: skipped) counts as the
        smallest, as the dashboard orders it."""
        runs = run_column(s)
        if not runs or len(runs) < 4 or ("RUNv" if desc else "RUN^") not in s:
            return False
        values = [-1 if r is None else r for r in runs]
        return values == sorted(values, reverse=desc)
    s = tmux.wait_until(by_run, "tasks sorted by run time, largest first")
    print("top sorted by run time (80x24):\n" + s)
    tmux.keys("S")
    tmux.wait_until(lambda s: by_run(s, desc=False),
                    "tasks sorted by run time, smallest first")
    tmux.keys("S", "s", "s", "s")
    tmux.wait_for("TIMEv    STATUS")
    tmux.wait_for("15m ok ")
    tmux.keys("w")
    tmux.wait_for("1h ok ")
    for _ in range(4):
        tmux.keys("w")
    tmux.wait_for("15m ok ")


FOREGROUND = re.compile(r"\x1b\[(?:[0-9]+;)*3[1-6][;m]")


def check_colours(tmux, db):
    """Colours by default; none with NO_COLOR or --color never (bold and
    reverse video stay, so states still read as words)."""
    env = "env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=tmux-256color"
    runs = {"c": "", "nc": "NO_COLOR=1", "never": "", "always": "NO_COLOR=1"}
    flags = {"never": "--color never", "always": "--color always"}
    for name, extra in runs.items():
        tmux.start("%s %s %s top --db %s %s" % (
            env, extra, BIN, db, flags.get(name, "")), 80, 24, session=name)
    for name in runs:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s = tmux.screen(name, escapes=True)
            if "send_email" in s and "succeeded" in s:
                break
            time.sleep(0.1)
        coloured = FOREGROUND.search(s) is not None
        assert coloured == (name in ("c", "always")), (name, s[:300])
        tmux.cmd("send-keys", "-t", name, "q")


def check_interrupt(tmux, db):
    """Ctrl-C ends the dashboard cleanly: curses restores the terminal and
    the exit status is 128 + SIGINT."""
    status_file = db + ".int-status"
    script = os.path.join(os.path.dirname(db), "int.sh")
    with open(script, "w") as f:
        f.write("trap '' INT\n"
                "env LANG=C.UTF-8 TERM=tmux-256color %s top --db %s\n"
                "echo exit=$? > %s\n" % (BIN, db, status_file))
    tmux.start("sh " + script, 80, 24, session="int")
    deadline = time.monotonic() + 15
    while "TIMEv    STATUS" not in tmux.screen("int"):
        assert time.monotonic() < deadline, tmux.screen("int")
        time.sleep(0.1)
    tmux.cmd("send-keys", "-t", "int", "C-c")
    deadline = time.monotonic() + 10
    while not (os.path.exists(status_file) and open(status_file).read()):
        assert time.monotonic() < deadline, tmux.screen("int")
        time.sleep(0.1)
    with open(status_file) as f:
        assert f.read().strip() == "exit=130"
    assert "TIMEv    STATUS" not in tmux.screen("int")


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
