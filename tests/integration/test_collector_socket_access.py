"""Who may use the collector's unix socket: --socket-mode and
--socket-group, as on a machine where a web server running as its own user
(www-data) shares a socket with a collector running as another.

Without root (no users to create), the argument checks run and the rest is
skipped with its reason (exit 77). As root the test creates a shared group,
a collector user and a client user in it, and an outsider, then checks:

- the collector, as its user, creates the socket with the mode and group
  asked for, and the client user's `taskwatch demo` delivers every event
  through it;
- the outsider cannot connect; nor can the group's client when the socket
  keeps the default mode 0600;
- a group the collector does not belong to is refused at start with one
  line naming the cause (exit 1);
- a socket in a directory that does not exist says so (exit 1).

The users and groups are removed at the end, whatever happened."""

import os
import pwd
import grp
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

BIN = os.environ["TASKWATCH_BIN"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def one_line(text):
    return len(text.strip().splitlines()) == 1


def run(args, user=None, timeout=60):
    return subprocess.run([BIN] + args, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=as_user(user))


def as_user(name):
    """A preexec_fn that drops root for the user `name` and its groups."""
    if name is None:
        return None
    pw = pwd.getpwnam(name)

    def drop():
        os.initgroups(name, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


def argument_checks(tmp):
    """Bad values are refused before anything starts (exit 2, one line)."""
    sock = "unix:" + os.path.join(tmp, "a.sock")
    db = os.path.join(tmp, "a.db")
    for args, words in (
            (["--socket-mode", "0999"], "octal"),
            (["--socket-mode", "rw"], "octal"),
            (["--socket-mode", "01660"], "octal"),
            (["--socket-group", "no-such-group-tw"], "no such group"),
            (["--socket-group="], "no such group")):
        p = run(["collector", "--db", db, "--listen", sock] + args)
        check(p.returncode == 2 and one_line(p.stderr) and words in p.stderr,
              "%r: %d %r" % (args, p.returncode, p.stderr))
    p = run(["collector", "--db", db, "--socket-mode", "0660"])
    check(p.returncode == 2 and "need a --listen unix:" in p.stderr,
          "--socket-mode without a unix listener: %r" % p.stderr)
    check(not os.path.exists(db), "a refused command line created the store")


def missing_directory(tmp):
    db = os.path.join(tmp, "m.db")
    p = run(["collector", "--db", db, "--listen",
             "unix:/nonexistent-tw/dir/c.sock"], timeout=30)
    check(p.returncode == 1 and one_line(p.stderr) and
          "directory /nonexistent-tw/dir does not exist" in p.stderr,
          "missing directory: %d %r" % (p.returncode, p.stderr))


class Accounts:
    """System users and groups made for the test, removed by close()."""

    def __init__(self, tag):
        self.tag = tag
        self.users, self.groups = [], []

    def group(self, name):
        subprocess.run(["groupadd", "--system", name], check=True)
        self.groups.append(name)
        return grp.getgrnam(name).gr_gid

    def user(self, name, groups=()):
        args = ["useradd", "--system", "--no-create-home", "--user-group",
                "--shell", "/usr/sbin/nologin"]
        if groups:
            args += ["--groups", ",".join(groups)]
        subprocess.run(args + [name], check=True)
        self.users.append(name)
        return pwd.getpwnam(name)

    def close(self):
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True)


def start_collector(user, db, path, *extra):
    proc = subprocess.Popen(
        [BIN, "collector", "--db", db, "--listen", "unix:" + path] +
        list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, preexec_fn=as_user(user))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening url=unix:" in line:
            return proc
        if line == "" and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("collector did not listen: %s" % proc.stderr.read())


def stop(proc):
    proc.terminate()
    rc = proc.wait(timeout=30)
    check(rc == 0, "collector exit status %d after SIGTERM" % rc)


def can_connect(user, path):
    """Whether `user` may connect to the unix socket at path."""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "except PermissionError:\n"
            "    sys.exit(13)\n")
    p = subprocess.run([sys.executable, "-c", code, path],
                       preexec_fn=as_user(user), capture_output=True,
                       timeout=30)
    check(p.returncode in (0, 13), "connect probe failed: %r" % p.stderr)
    return p.returncode == 0


def shared_socket(acc, tmp):
    tag = acc.tag
    shared = "tws" + tag
    shared_gid = acc.group(shared)
    collector = acc.user("twc" + tag, [shared])
    client = acc.user("twa" + tag, [shared])
    outsider = acc.user("twx" + tag)
    home = os.path.join(tmp, "run")
    os.mkdir(home)
    os.chown(home, collector.pw_uid, collector.pw_gid)
    os.chmod(home, 0o755)
    db = os.path.join(home, "tw.db")
    path = os.path.join(home, "c.sock")

    proc = start_collector(collector.pw_name, db, path,
                           "--socket-mode", "0660", "--socket-group", shared)
    try:
        st = os.stat(path)
        check(stat.S_ISSOCK(st.st_mode), "not a socket")
        check(stat.S_IMODE(st.st_mode) == 0o660,
              "socket mode %o, not 660" % stat.S_IMODE(st.st_mode))
        check(st.st_gid == shared_gid and st.st_uid == collector.pw_uid,
              "socket owned by %d:%d" % (st.st_uid, st.st_gid))
        p = run(["demo", "--collector", "unix:" + path, "--batches", "20",
                 "--fail-every", "5", "--quiet"], user=client.pw_name)
        check(p.returncode == 0, "demo as the group's client: %d %r" %
              (p.returncode, p.stderr))
        check(not can_connect(outsider.pw_name, path),
              "a user outside the group connected")
    finally:
        stop(proc)
    con = sqlite3.connect(db)
    count = con.execute("SELECT count(*) FROM tasks").fetchone()[0]
    con.close()
    check(count == 60, "stored %d tasks, not 60" % count)

    # The default stays 0600: the group's client is kept out.
    proc = start_collector(collector.pw_name, db, path)
    try:
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "default mode")
        check(not can_connect(client.pw_name, path),
              "the default socket let another user in")
    finally:
        stop(proc)

    # A group the collector's user is not in: refused, with the cause.
    p = subprocess.run(
        [BIN, "collector", "--db", db, "--listen", "unix:" + path,
         "--socket-mode", "0660", "--socket-group", outsider.pw_name],
        capture_output=True, text=True, timeout=30,
        preexec_fn=as_user(collector.pw_name))
    check(p.returncode == 1 and one_line(p.stderr) and
          "cannot give the socket to group" in p.stderr and
          "must be a member" in p.stderr,
          "foreign group: %d %r" % (p.returncode, p.stderr))
    check(not os.path.exists(path), "the refused socket was left behind")


def main():
    tmp = tempfile.mkdtemp(prefix="tw-sock-")
    os.chmod(tmp, 0o755)
    try:
        argument_checks(tmp)
        missing_directory(tmp)
        if os.geteuid() != 0:
            print("SKIP: creating users and groups needs root; the "
                  "argument checks passed")
            return 77
        acc = Accounts("%d" % (os.getpid() % 1000000))
        try:
            shared_socket(acc, tmp)
        finally:
            acc.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok: mode and group applied, group member served, others refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
