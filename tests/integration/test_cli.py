"""The command-line contract shared by every subcommand: --help, --version,
and a one-line reason with exit status 2 for bad arguments."""

import sys

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
        ["demo", "--batches", "5", "--collector", "tls://127.0.0.1:7461"],
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
