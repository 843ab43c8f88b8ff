"""SIGTERM ends the collector within its bound whatever the store does:
commits failing because the process hit its file size limit, because the
filesystem is full (a small tmpfs, when the test may mount one), because a
page of the store is corrupt, or because another connection holds the
store's write lock. In each case the collector exits with status 1, its
last log line says how many events it received but could not commit, those
events were never acked, and (where the store recovers) the agent's resend
to the next collector stores each of them once.

The bound the collector promises is collector/stop.h's STOP_BOUND_MS (6 s);
the test allows EXIT_LIMIT, the same plus room for a loaded machine, and
prints what it measured. Without the bound, the collector waits for the
store forever."""
import errno
import os
import re
import resource
import signal
import struct
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

EXIT_LIMIT = 15.0
NAME = 1


def tasks_events(first_batch, batches):
    """Three tasks per batch, each BATCH ENQUEUE START FINISH: 10 events
    per batch, in lists that each fit one frame of a few KiB."""
    out = []
    for b in range(first_batch, first_batch + batches):
        out.append(batch_events(now_ns(), b, b * 10, [NAME] * 3, label=0))
    return out


def commit_one_batch(agent):
    """The store works: a first batch is committed and acked."""
    agent.send([ev_string(1, NAME, b'job')] + tasks_events(1, 1)[0])
    return agent.wait_ack()


def send_uncommittable(col, agent):
    """Sends batches the failing store cannot take; returns the events.
    A second instance's WELCOME then shows the loop has read them: they
    were written to the socket before it connected, and are read in the
    same loop iteration as its HELLO at the latest."""
    sent = 0
    for evs in tasks_events(2, 60):
        agent.send(evs)
        sent += len(evs)
    other = FakeAgent(col.url)
    other.connect()
    return sent, other


def sigterm(col):
    """SIGTERM; returns (status, seconds to exit)."""
    t0 = time.monotonic()
    col.proc.send_signal(signal.SIGTERM)
    try:
        rc = col.proc.wait(EXIT_LIMIT)
    except subprocess.TimeoutExpired:
        col.proc.kill()
        col.proc.wait()
        raise AssertionError('collector still running %.0f s after SIGTERM:\n%s'
                             % (EXIT_LIMIT, col.log()[-3000:]))
    elapsed = time.monotonic() - t0
    col.proc = None
    col.err.close()
    return rc, elapsed


def acks_after(agent):
    """The ACKs still on the agent's socket until the collector closed it."""
    acks = []
    agent.sock.settimeout(10)
    try:
        while True:
            ftype, payload = read_frame(agent.sock)
            if ftype == ACK:
                acks.append(struct.unpack('<Q', payload)[0])
    except (EOFError, OSError):
        pass
    agent.close()
    return acks


def check_stopped(name, col, agent, acked, sent):
    rc, elapsed = sigterm(col)
    log = col.log()
    last = log.rstrip('\n').split('\n')[-1]
    m = re.search(r' uncommitted=(\d+)', last)
    check(rc == 1, '%s: status 1, not %r\n%s' % (name, rc, log[-3000:]))
    check(m is not None and 'stopped' in last,
          '%s: the last line is the summary: %r' % (name, last))
    check(int(m.group(1)) == sent,
          '%s: uncommitted=%d, %d sent' % (name, int(m.group(1)), sent))
    check('still hold them' in last, '%s: the line says why: %r' % (name, last))
    check('transaction failed' in log, '%s: the store failed' % name)
    late = acks_after(agent)
    check(all(a <= acked for a in late),
          '%s: nothing acked past %d: %r' % (name, acked, late))
    print('%s: exited %d after %.1f s, uncommitted=%d' %
          (name, rc, elapsed, sent))


def resend(tmp, db, instance, acked, sent):
    """The next collector gets the events again from the agent that kept
    them, and stores each once."""
    col = Collector(tmp=tmp, db=db).start()
    try:
        a = FakeAgent(col.url, instance=instance)
        check(a.connect() == acked, 'resume at the first uncommitted event')
        for evs in tasks_events(2, 60):
            a.send(evs)
        a.goodbye()
        check(col.query('SELECT count(*), count(DISTINCT id) FROM tasks') ==
              [(3 * 61, 3 * 61)], 'every task once after the resend')
        check(col.stop() == 0, 'clean stop with a working store')
    finally:
        col.cleanup()


def stop_failing(name, tmp, db, make_fail, fresh_agent=False):
    """A collector on db commits a first batch, make_fail(col) breaks its
    store, more events arrive, SIGTERM: check_stopped(). Returns the
    agent's instance, its last ack and the events sent since."""
    col = Collector(tmp=tmp, db=db).start()
    try:
        a = FakeAgent(col.url)
        a.connect()
        if fresh_agent:
            # The names only: no task row touches the store yet.
            a.send([ev_string(1, NAME, b'job')])
            acked = a.wait_ack()
        else:
            acked = commit_one_batch(a)
        make_fail(col)
        sent, other = send_uncommittable(col, a)
        check_stopped(name, col, a, acked, sent)
        other.close()
        return col.log(), a.instance, acked, sent
    finally:
        col.cleanup()


def file_size_limit(tmp):
    """Every write of the store fails (EFBIG): the collector's file size
    limit is lowered while it runs, as prlimit(1) would, below the WAL's
    end (a new store's WAL holds its schema, about 450 KiB in 16 KiB
    pages, and transactions append to it) and above the log file's."""
    db = os.path.join(tmp, 'fsize.db')
    fsize = 256 << 10

    def limit(col):
        wal = os.path.getsize(db + '-wal')
        check(wal > fsize, 'the WAL is past the limit: %d' % wal)
        resource.prlimit(col.proc.pid, resource.RLIMIT_FSIZE, (fsize, fsize))

    _, instance, acked, sent = stop_failing('file size limit', tmp, db, limit)
    resend(tmp, db, instance, acked, sent)


def lock_held(tmp):
    """Another connection holds the store's write lock throughout."""
    db = os.path.join(tmp, 'locked.db')
    holder = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        _, instance, acked, sent = stop_failing(
            'write lock held', tmp, db,
            lambda col: holder.execute('BEGIN IMMEDIATE'))
    finally:
        if holder.in_transaction:
            holder.execute('ROLLBACK')
        holder.close()
    resend(tmp, db, instance, acked, sent)


def nothing_pending(tmp):
    """Every event is committed and acked when another connection takes the
    store's write lock: the stop's own transaction (the disconnects it
    records) cannot commit and is given up, but no event was lost, so the
    status is 0 and the last line says uncommitted=0, as docs/collector.md
    promises."""
    db = os.path.join(tmp, 'idle.db')
    col = Collector(tmp=tmp, db=db).start()
    holder = sqlite3.connect(db, timeout=10, isolation_level=None)
    a = FakeAgent(col.url)
    try:
        a.connect()
        commit_one_batch(a)
        holder.execute('BEGIN IMMEDIATE')
        rc, elapsed = sigterm(col)
        last = col.log().rstrip('\n').split('\n')[-1]
        check(rc == 0, 'nothing pending: status 0, not %r\n%s' %
              (rc, col.log()[-3000:]))
        check('stopped' in last and ' uncommitted=0' in last,
              'nothing pending: the last line: %r' % last)
        print('nothing pending, store locked: exited %d after %.1f s' %
              (rc, elapsed))
    finally:
        if holder.in_transaction:
            holder.execute('ROLLBACK')
        holder.close()
        a.close()
        col.cleanup()


def corrupt_store(tmp):
    """A page of an index every task insert updates is overwritten."""
    db = os.path.join(tmp, 'corrupt.db')
    col = Collector(tmp=tmp, db=db).start()
    a = FakeAgent(col.url)
    a.connect()
    commit_one_batch(a)
    a.goodbye()
    check(col.stop() == 0, 'clean stop before the corruption')
    con = sqlite3.connect(db)
    page = con.execute('PRAGMA page_size').fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master "
                       "WHERE name = 'tasks_batch'").fetchone()[0]
    con.close()
    check(not os.path.exists(db + '-wal') or
          os.path.getsize(db + '-wal') == 0, 'the WAL was checkpointed')
    with open(db, 'r+b') as f:
        f.seek((root - 1) * page)
        f.write(b'\xff' * 64)
    log, _, _, _ = stop_failing('corrupt page', tmp, db, lambda col: None,
                                fresh_agent=True)
    check('malformed' in log, 'SQLite named the corruption')


def fill(directory):
    """Writes a file until the filesystem has no block left."""
    fd = os.open(os.path.join(directory, 'filler'), os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b'\0' * 4096) > 0:
            pass
    except OSError as e:
        check(e.errno == errno.ENOSPC, 'filled: %r' % e)
    os.close(fd)


def full_filesystem_child(tmp):
    """In a private mount namespace: the store on a 4 MiB tmpfs that a
    filler file then fills to the last block (ENOSPC)."""
    mnt = os.path.join(tmp, 'mnt')
    os.mkdir(mnt)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt],
                   check=True)
    try:
        stop_failing('full filesystem', tmp, os.path.join(mnt, 'full.db'),
                     lambda col: fill(mnt))
    finally:
        subprocess.run(['umount', '-l', mnt])


def full_filesystem(tmp):
    """Runs full_filesystem_child() under unshare(1), so that the mount
    dies with it; needs the right to mount (root)."""
    probe = subprocess.run(
        ['unshare', '-m', '--propagation', 'private', 'mount', '-t',
         'tmpfs', '-o', 'size=1m', 'tmpfs', tmp],
        capture_output=True, text=True)
    if probe.returncode != 0:
        print('full filesystem: not run here (mounting a tmpfs needs root: '
              '%s); the file size limit makes commits fail the same way'
              % probe.stderr.strip())
        return
    p = subprocess.run(
        ['unshare', '-m', '--propagation', 'private', sys.executable,
         os.path.abspath(__file__), '--full-filesystem', tmp],
        capture_output=True, text=True, timeout=100)
    sys.stdout.write(p.stdout)
    check(p.returncode == 0, 'full filesystem:\n%s' % p.stderr)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--full-filesystem':
        full_filesystem_child(sys.argv[2])
        return
    tmp = tempfile.mkdtemp(prefix='twstop-')
    try:
        file_size_limit(tmp)
        lock_held(tmp)
        nothing_pending(tmp)
        corrupt_store(tmp)
        full_filesystem(tmp)
    finally:
        subprocess.run(['rm', '-rf', tmp])


if __name__ == '__main__':
    main()
