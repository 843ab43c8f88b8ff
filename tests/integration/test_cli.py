"""The command-line contract shared by every subcommand: --help, --version,
and a one-line reason with exit status 2 for bad arguments."""

import os
import signal
import subprocess
import sys
import time

import twtest


def main():
    p = twtest.run(["--version"])
    assert p.stdout.startswith("taskwatch "), p.stdout
    for cmd in ["collector", "top", "query", "demo"]:
        p = twtest.run([cmd, "--help"])
        assert "usage" in p.stdout.lower(), (cmd, p.stdout)
        p = twtest.run([cmd, "--no-such-option"], check=False)
        assert p.returncode == 2, (cmd, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0], (cmd, p.stderr)
    bad = [
        ["nonsense"],
        [],
        ["demo", "--batches", "ten"],
        ["demo", "--batches", "5", "--rate", "-3"],
        ["demo", "--batches", "5", "--collector", "http://x"],
        ["demo", "--batches", "5", "--collector", "tls://127.0.0.1"],
        ["query", "--db", "/nonexistent/dir/tw.db"],
        ["query", "--db", "/dev/null", "--format", "yaml"],
        ["collector", "--db", "/tmp/x.db", "--listen", "ftp://nowhere"],
    ]
    for args in bad:
        p = twtest.run(args, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, (args, p.stderr)
    print("cli: %d bad invocations rejected cleanly" % len(bad))
    same_words()
    both_spellings()
    default_store()
    negation_is_not_an_option()
    return 0


def usage_line(cmd, args, line):
    """The exact one line and exit 2 of a usage error."""
    p = twtest.run([cmd] + args, check=False)
    want = "taskwatch %s: %s (see --help)\n" % (cmd, line)
    assert p.returncode == 2 and p.stderr == want, (cmd, args, p.stderr)


def same_words():
    """Every subcommand words the same mistakes the same way."""
    needs_value = {"collector": "--db", "top": "--db", "query": "--db",
                   "demo": "--batches"}
    for cmd, opt in needs_value.items():
        usage_line(cmd, ["--no-such-option"],
                   "unknown option --no-such-option")
        usage_line(cmd, ["--no-such-option=1"],
                   "unknown option --no-such-option")
        usage_line(cmd, ["-Z"], "unknown option -Z")
        usage_line(cmd, ["--help=yes"], "option --help takes no value")
        usage_line(cmd, [opt], "option %s needs a value" % opt)
    for cmd in ("collector", "top", "demo"):
        usage_line(cmd, ["--db=x.db" if cmd != "demo" else "--batches=1",
                         "stray"], "unexpected argument 'stray'")
    usage_line("query", ["show", "--db", "x.db", "1", "2"],
               "unexpected argument '2'")
    usage_line("collector", ["--max-connections=0"],
               "invalid --max-connections '0': expected a whole number from "
               "1 to 1000000")
    usage_line("top", ["--db", "x.db", "--view", "trees"],
               "invalid --view 'trees': expected one of tasks, batches, "
               "names, agents")
    usage_line("demo", ["--batches", "ten"],
               "invalid --batches 'ten': expected a whole number from 0 to "
               "1099511627776")
    p = twtest.run(["--no-such-option"], check=False)
    assert p.returncode == 2 and p.stderr == (
        "taskwatch: unknown option --no-such-option (see --help)\n"), p.stderr
    print("cli: the same wording and exit 2 in all four subcommands")


def both_spellings():
    """--opt=value and --opt value mean the same in every subcommand."""
    with twtest.tempdir() as d:
        missing = d + "/missing.db"
        for cmd in ("top", "query"):
            joined = twtest.run([cmd, "--db=" + missing], check=False)
            apart = twtest.run([cmd, "--db", missing], check=False)
            assert joined.returncode == apart.returncode == 2, cmd
            assert joined.stderr == apart.stderr and missing in apart.stderr, \
                (cmd, joined.stderr, apart.stderr)
        for spelled in (["--lost-after=1h", "--flush-ms=5"],
                        ["--lost-after", "1h", "--flush-ms", "5"]):
            p = twtest.run(["collector", "--db", d + "/c.db"] + spelled +
                           ["--max-connections=0"], check=False)
            assert "--max-connections" in p.stderr, (spelled, p.stderr)
        for spelled in (["--batches=0", "--collector=unix:" + d + "/no.sock",
                         "--flush-timeout=1s"],
                        ["--batches", "0", "--collector", "unix:" + d +
                         "/no.sock", "--flush-timeout", "1"]):
            p = twtest.run(["demo", "--quiet"] + spelled, check=False)
            assert p.returncode == 0, (spelled, p.returncode, p.stderr)
    print("cli: --opt=value and --opt value agree")


def in_dir(cwd, args, env=None):
    return subprocess.run([twtest.BIN] + args, cwd=cwd, capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


def default_store():
    """Without --db, the collector writes and top and query read the same
    store: taskwatch.db in the current directory, or TASKWATCH_DB."""
    env = {k: v for k, v in os.environ.items() if k != "TASKWATCH_DB"}
    with twtest.tempdir() as d:
        sock = "unix:" + d + "/c.sock"
        col = subprocess.Popen([twtest.BIN, "collector", "--listen", sock],
                               cwd=d, env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(d + "/c.sock"):
                assert col.poll() is None and time.monotonic() < deadline, \
                    "the collector did not start"
                time.sleep(0.05)
            p = in_dir(d, ["demo", "--collector", sock, "--batches", "5",
                           "--quiet"])
            assert p.returncode == 0, p.stderr
        finally:
            col.send_signal(signal.SIGTERM)
            assert col.wait(timeout=30) == 0
        assert os.path.exists(d + "/taskwatch.db")
        q = in_dir(d, ["query", "--format", "json"], env=env)
        assert q.returncode == 0 and len(q.stdout.splitlines()) == 15, \
            (q.returncode, q.stderr)
        # Negation as two shell words, either spelling.
        for neg in ("not", "!"):
            q = in_dir(d, ["query", "--format", "json", neg,
                           "name:send_email"], env=env)
            assert q.returncode == 0 and len(q.stdout.splitlines()) == 10, \
                (neg, q.returncode, q.stderr)
        t = in_dir(d, ["top", "--once", "--size", "120x30"], env=env)
        assert t.returncode == 0 and "succeeded 15" in t.stdout, t.stdout
        other = d + "/elsewhere"
        os.mkdir(other)
        env_db = {"TASKWATCH_DB": d + "/taskwatch.db"}
        q = in_dir(other, ["query", "--format", "json"], env=env_db)
        assert q.returncode == 0 and len(q.stdout.splitlines()) == 15, \
            q.stderr
        t = in_dir(other, ["top", "--once", "--size", "120x30"], env=env_db)
        assert t.returncode == 0 and "succeeded 15" in t.stdout, t.stdout
        # The filter language refuses a value cut at a blank alike.
        t = in_dir(other, ["top", "--filter", "label:POST /send*"],
                   env=env_db)
        assert t.returncode == 2 and t.stderr == (
            "taskwatch top: bad --filter: 'label:POST /send*' splits at the "
            "blank; to keep it, quote the value: label:\"POST /send*\"\n"), \
            t.stderr
        for cmd in (["top"], ["query"]):
            p = in_dir(other, cmd)
            assert p.returncode == 2 and p.stderr == (
                "taskwatch %s: cannot open taskwatch.db: No such file or "
                "directory (no --db given: give one, set TASKWATCH_DB, or "
                "start taskwatch collector here, which writes "
                "taskwatch.db)\n" % cmd[0]), p.stderr
    print("cli: collector, top and query agree on the default store")


def negation_is_not_an_option():
    """-status:succeeded is a negation written as options would be: named
    as such, not as the unknown option -s."""
    usage_line("query", ["--db", "x.db", "-status:succeeded"],
               "'-status:succeeded' is not an option; to negate a filter "
               "term, write '!status:succeeded' or 'not status:succeeded'")
    usage_line("query", ["--db", "x.db", "--", "-status:succeeded"],
               "'-status:succeeded': a term cannot start with '-' (it reads "
               "as an option); negate with !TERM or not TERM")
    usage_line("query", ["--db", "x.db", "label:POST /send*"],
               "'label:POST /send*' splits at the blank; to keep it, quote "
               "the value: label:\"POST /send*\"")
    print("cli: negation and values with blanks are explained, not misread")


if __name__ == "__main__":
    sys.exit(main())
