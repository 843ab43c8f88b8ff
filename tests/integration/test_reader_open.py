"""`taskwatch top` and `taskwatch query` refuse a bad store with the same
one-line reason and exit status 2: both open it through common/reader.
Every way to fail is tried on real files - missing, a directory, a FIFO, a
damaged store, not SQLite, an SQLite database of another program, a store
too old and one too new - and a good store opens in both."""

import os
import sqlite3
import sys

import twtest


def refusal(args, path):
    """Runs one tool on path; returns its reason without the tool's
    prefix, after checking the exit status and the single line."""
    p = twtest.run(args + ["--db", path], check=False, timeout=30)
    prefix = "taskwatch %s: " % args[0]
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (args, path, p.returncode, p.stderr)
    assert len(lines) == 1 and lines[0].startswith(prefix), (args, p.stderr)
    assert p.stdout == "", (args, p.stdout)
    return lines[0][len(prefix):]


def set_version(path, version):
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = %d" % version)
    db.commit()
    db.close()


def make_store(d):
    """A store as the collector creates it, then closed."""
    path = os.path.join(d, "store.db")
    with twtest.Collector(path) as col:
        assert col.stop() == 0, col.output()
    return path


def copy(src, dst):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    return dst


def bad_stores(d):
    """(name, path, words the reason must contain)."""
    store = make_store(d)
    out = []
    out.append(("missing", os.path.join(d, "missing.db"),
                "cannot open"))
    out.append(("directory", d, "Is a directory"))
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    out.append(("fifo", fifo, "not a regular file"))
    garbage = os.path.join(d, "garbage.db")
    with open(garbage, "wb") as f:
        f.write(bytes((i * 7919) & 0xff for i in range(4096)))
    out.append(("not sqlite", garbage, "is not a database"))
    other = os.path.join(d, "other.db")
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (text)")
    db.commit()
    db.close()
    out.append(("foreign", other, "is not a taskwatch store"))
    old = copy(store, os.path.join(d, "old.db"))
    set_version(old, 1)
    out.append(("too old", old, "older than this taskwatch reads"))
    new = copy(store, os.path.join(d, "new.db"))
    set_version(new, 99)
    out.append(("too new", new, "newer than this taskwatch understands"))
    damaged = copy(store, os.path.join(d, "damaged.db"))
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(b"\xa5" * 4000)
    out.append(("damaged", damaged, "cannot read"))
    return store, out


def main():
    with twtest.tempdir() as d:
        store, cases = bad_stores(d)
        for name, path, words in cases:
            top = refusal(["top", "--once"], path)
            query = refusal(["query"], path)
            assert top == query, (name, top, query)
            assert path in top and words in top, (name, top)
        # Each failure reads differently from the others.
        reasons = [refusal(["query"], p) for _, p, _ in cases]
        assert len(set(reasons)) == len(reasons), reasons
        # The good store opens in both.
        p = twtest.run(["top", "--once", "--db", store], check=False)
        assert p.returncode == 0, p.stderr
        p = twtest.run(["query", "--db", store], check=False)
        assert p.returncode == 0, p.stderr
    print("reader_open: %d bad stores, the same reason from top and query"
          % len(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
