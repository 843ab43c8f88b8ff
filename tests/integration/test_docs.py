"""The documentation works as written: every shell block of README.md and
docs/*.md runs, in the order written, one shell session (bash) per page,
from the root of a copy of the source tree - starting with the README's
first command, scripts/demo.sh, which installs what is missing, builds,
installs taskwatch with meson install and runs the demo.

It all happens in a sandbox: new user, network, mount and PID namespaces,
with /tmp and /run private directories and /usr/local and /etc overlays,
so the default port 7460, /tmp/tw.db, /run/taskwatch, `meson install` into
/usr/local and the ldconfig after it touch nothing outside, and every process a page started
ends with its session. Commands run verbatim: nothing in them is rewritten.

A block's kind is its fence's language, with a directive on the line
before the fence when needed:

- `sh`: commands, run.
- `<!-- docs-test: file NAME -->` before any block: its text is written to
  NAME (the README's server.c, which the next block compiles against the
  installed pkg-config file and runs).
- `<!-- docs-test: exit N -->`: a single command expected to exit N.
- `<!-- docs-test: interrupt DUR -->`: a single command that runs until
  interrupted (query --follow), sent SIGINT after DUR; it must exit 0.
- `<!-- docs-test: skip: REASON -->`: not run, for the reason given (a
  block needing systemd as PID 1, or running this very suite).
- `text`: output or syntax shown, never a command.

Any other block (no language, or code without `file` or `skip`) fails the
test, so nothing escapes it unsaid. The test prints every command it ran
and every block it skipped with the reason.

Then, in the same sandbox, scripts/demo.sh runs as a newcomer sees it, in
a terminal (tmux): the dashboard comes up with the load, says FINISHED
when the load is over, and after q the script says where its store is and
three queries to try.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

SOURCE = os.environ.get("TASKWATCH_SOURCE_ROOT", "")
BUILD = os.environ.get("TASKWATCH_BUILD_ROOT", "")
PAGES = ["README.md", "docs/integrations.md", "docs/query.md", "docs/top.md",
         "docs/collector.md", "docs/schema.md", "docs/protocol.md",
         "docs/tls.md"]
DIRECTIVE = re.compile(r"^<!-- docs-test: (skip: .+|file \S+|exit \d+|"
                       r"interrupt \S+) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")
# The whole run: a fresh build of the tree (the README's first command)
# takes most of it.
SESSION_TIMEOUT = 1500


class Block:
    def __init__(self, page, line, lang, directive, text):
        self.page, self.line, self.lang = page, line, lang
        self.directive, self.text = directive, text

    def where(self):
        return "%s:%d" % (self.page, self.line)


def blocks_of(page, text):
    """The fenced blocks of a page, with the directive before each."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            # An indented block (after a blank line, outside a list) is
            # code Markdown shows as such: it must be fenced, so that it
            # is run or said to be output.
            if (lines[i].startswith("    ") and i > 0 and
                    not lines[i - 1].strip() and
                    not re.match(r"^(\s*[-*] |\s*\d+\. |  )",
                                 next((l for l in reversed(lines[:i])
                                       if l.strip()), ""))):
                raise AssertionError(
                    "%s:%d: an indented block: fence it (```sh to run it, "
                    "```text for output)" % (page, i + 1))
            i += 1
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        d = DIRECTIVE.match(lines[j]) if j >= 0 else None
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError("%s:%d: unterminated block" % (page, i + 1))
        out.append(Block(page, i + 1, m.group(1), d.group(1) if d else None,
                         "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return out


def classify(b):
    """'run', 'file', 'exit', 'interrupt', 'skip' or 'text'; raises for a
    block the test cannot place."""
    d = b.directive or ""
    if d.startswith("skip: "):
        return "skip"
    if d.startswith("file "):
        return "file"
    if b.lang == "text" and not d:
        return "text"
    if b.lang == "sh":
        if d.startswith("exit ") or d.startswith("interrupt "):
            single = [l for l in b.text.splitlines() if l.strip()]
            if len(single) != 1:
                raise AssertionError("%s: '%s' needs a single command" % (
                    b.where(), d))
            return d.split()[0]
        if not d:
            return "run"
    raise AssertionError(
        "%s: a ```%s block the docs test cannot place: mark it with a "
        "docs-test directive (file NAME, or skip: REASON), or make it "
        "```text" % (b.where(), b.lang))


def session_script(page, blocks):
    """One bash session for a page: its blocks in order, each announced on
    stderr so a failure names its block."""
    out = ["set -e"]
    for n, b in enumerate(blocks):
        kind = classify(b)
        if kind in ("skip", "text"):
            continue
        out.append("echo '@@ %s (%s)' >&2" % (b.where(), kind))
        if kind == "file":
            name = b.directive.split()[1]
            out.append("cat >%s <<'TASKWATCH_DOCS_EOF'\n%sTASKWATCH_DOCS_EOF"
                       % (name, b.text))
        elif kind == "run":
            out.append(b.text)
        elif kind == "exit":
            want = int(b.directive.split()[1])
            out.append("set +e\n%s\nrc=$?\nset -e\n"
                       "[ $rc -eq %d ] || { echo \"@@ exit $rc, not %d\" >&2;"
                       " exit 1; }" % (b.text.strip(), want, want))
        elif kind == "interrupt":
            dur = b.directive.split()[1]
            out.append("timeout --preserve-status -s INT %s %s"
                       % (dur, b.text.strip()))
    out.append("echo '@@ %s: every block ran' >&2" % page)
    return "\n".join(out) + "\n"


SANDBOX_SETUP = textwrap.dedent("""\
    set -eu
    S=$1
    ip link set lo up
    # The sandbox may lie under /tmp (a clone in /tmp), which the bind
    # mount of $S/tmp below replaces: reach it through /mnt from here on.
    mount --bind "$S" /mnt
    S=/mnt
    for d in etc usr/local; do
      mkdir -p "$S/upper/$d" "$S/work/$d"
      mount -t overlay overlay \\
        -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d"
    done
    mkdir -p "$S/tmp"
    mount --bind "$S/tmp" /tmp
    mount -t tmpfs tmpfs /run
    mkdir -p /tmp/home
    cd "$S/src"
    shift
    for page in "$@"; do
      name=$(echo "$page" | tr / _)
      rc=0
      env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
        HOME=/tmp/home LANG=C.UTF-8 TERM=dumb \\
        unshare -p -f --mount-proc bash "$S/sessions/$name.sh" \\
        >"$S/logs/$name.log" 2>&1 || rc=$?
      echo "$rc" >"$S/logs/$name.rc"
    done
    # The demo as a newcomer in a terminal sees it (tmux), once built.
    rc=0
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
      HOME=/tmp/home LANG=C.UTF-8 \\
      unshare -p -f --mount-proc python3 "$S/test_docs.py" --live-demo \\
      >"$S/logs/live-demo.log" 2>&1 || rc=$?
    echo "$rc" >"$S/logs/live-demo.rc"
    """)


def screen(sock, history=False):
    return subprocess.run(["tmux", "-S", sock, "capture-pane", "-p", "-t",
                           "demo"] + (["-S", "-2000"] if history else []),
                          capture_output=True, text=True).stdout


def wait_screen(sock, pred, what, timeout):
    deadline = time.monotonic() + timeout
    s = ""
    while time.monotonic() < deadline:
        s = screen(sock)
        if pred(s):
            return s
        time.sleep(0.2)
    raise AssertionError("never %s:\n%s" % (what, s))


def live_demo():
    """scripts/demo.sh in a 100x30 terminal (run in the sandbox, from the
    tree the README built): the dashboard with the load running, FINISHED
    once every server has stopped, and after q where the store is and what
    to ask it."""
    sock = "/tmp/tmux-demo.sock"
    subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session",
                    "-d", "-s", "demo", "-x", "100", "-y", "30",
                    "env TERM=tmux-256color scripts/demo.sh 250; "
                    "echo demo-exit=$?; sleep 600"], check=True)
    try:
        first = wait_screen(
            sock, lambda s: s.startswith("taskwatch") and " 1 tasks " in s
            and "send_email" in s and "succeeded " in s,
            "the dashboard with the load", 300)
        print("the demo's first screen of the dashboard:\n" + first)
        done = wait_screen(sock, lambda s: "FINISHED" in s,
                           "FINISHED once the load is over", 120)
        print("once the load is over:\n" + done)
        keys = ["tmux", "-S", sock, "send-keys", "-t", "demo"]
        subprocess.run(keys + ["s"], check=True)
        by_run = wait_screen(sock, lambda s: "RUNv" in s,
                             "the tasks sorted by run time", 30)
        print("s, sorted by run time:\n" + by_run)
        subprocess.run(keys + ["q"], check=True)
        wait_screen(sock, lambda s: "demo-exit=" in s, "the script's end", 60)
        text = screen(sock, history=True)
        print("after q:\n" + text[text.find("taskwatch: building"):])
        assert "taskwatch: building" in text, text[-3000:]
        assert "demo-exit=0" in text, text[-3000:]
        m = re.search(r"The demo's store is (\S+) \(kept", text)
        assert m and os.path.exists(m.group(1)), text[-3000:]
        assert text.count("  taskwatch query ") >= 3, text[-3000:]
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"])


def copy_tree(dst):
    """The source tree as a fresh clone has it: tracked files and new ones
    not ignored, the working copy's contents."""
    files = subprocess.run(
        ["git", "-C", SOURCE, "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"], check=True, capture_output=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or not os.path.exists(os.path.join(SOURCE, rel)):
            continue
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(os.path.join(SOURCE, rel), os.path.join(dst, rel),
                     follow_symlinks=False)


def main():
    if sys.argv[1:] == ["--live-demo"]:
        live_demo()
        return 0
    pages = {}
    for page in PAGES:
        with open(os.path.join(SOURCE, page)) as f:
            pages[page] = blocks_of(page, f.read())
    sandbox = os.path.join(BUILD, "docs-sandbox")
    shutil.rmtree(sandbox, ignore_errors=True)
    for d in ("src", "sessions", "logs"):
        os.makedirs(os.path.join(sandbox, d))
    copy_tree(os.path.join(sandbox, "src"))
    shutil.copy(os.path.abspath(__file__), sandbox)
    ran, skipped = [], []
    for page, blocks in pages.items():
        with open(os.path.join(sandbox, "sessions",
                               page.replace("/", "_") + ".sh"), "w") as f:
            f.write(session_script(page, blocks))
        for b in blocks:
            kind = classify(b)
            if kind == "skip":
                skipped.append((b, b.directive[len("skip: "):]))
            elif kind == "file":
                ran.append((b, "written to %s" % b.directive.split()[1]))
            elif kind != "text":
                ran.append((b, b.text))
    try:
        p = subprocess.run(
            ["unshare", "-r", "-n", "-m", "-p", "-f", "--mount-proc",
             "--propagation", "private", "sh", "-c", SANDBOX_SETUP, "sh",
             sandbox] + PAGES, capture_output=True, text=True,
            timeout=SESSION_TIMEOUT)
        if p.returncode != 0:
            raise AssertionError("the sandbox failed (%d): %s" % (
                p.returncode, p.stderr))
        failed = []
        for page in PAGES:
            name = page.replace("/", "_")
            with open(os.path.join(sandbox, "logs", name + ".rc")) as f:
                rc = int(f.read())
            with open(os.path.join(sandbox, "logs", name + ".log")) as f:
                log = f.read()
            if rc != 0:
                failed.append("%s exited %d; its session:\n%s" % (
                    page, rc, log[-6000:]))
            else:
                print("%s: every block ran" % page)
        print("\ncommands run, in order:")
        for b, text in ran:
            print("--- %s" % b.where())
            print(text.rstrip())
        print("\nblocks not run:")
        for b, reason in skipped:
            print("--- %s: %s" % (b.where(), reason))
        with open(os.path.join(sandbox, "logs", "live-demo.log")) as f:
            live = f.read()
        with open(os.path.join(sandbox, "logs", "live-demo.rc")) as f:
            if int(f.read()) != 0:
                failed.append("scripts/demo.sh in a terminal:\n" +
                              live[-6000:])
            else:
                print("\nscripts/demo.sh in a terminal (tmux, 100x30):\n" +
                      live)
        if failed:
            raise AssertionError("\n\n".join(failed))
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
