"""`taskwatch query --follow` against a live collector: the listing first,
then each matching task exactly once as it reaches a final state - tasks
that finish long after they were enqueued, an agent whose clock is an hour
behind, a task the collector declares lost when its agent vanishes - and
exit 0 on SIGINT. Fake agents speak the wire protocol (test_collector_util).
"""
import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import (  # noqa: E402
    Collector, FakeAgent, batch_events, check, ev_enqueue, ev_fail,
    ev_finish, ev_start, ev_string, ev_batch, now_ns)

BIN = os.environ['TASKWATCH_BIN']
NAMES = [b'write_notification', b'send_email', b'write_log']
LABEL = b'POST /send-notification/{email}'
HOUR_NS = 3600 * 10**9


def strings(t):
    return [ev_string(t, i + 1, n) for i, n in enumerate(NAMES)] + \
        [ev_string(t, 4, LABEL)]


class Follower:
    """The follow process, its stdout read line by line with deadlines."""

    def __init__(self, db, *terms):
        self.proc = subprocess.Popen(
            [BIN, 'query', '--db', db, '--follow', '-o', 'json',
             '--interval', '50ms', *terms],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b''
        self.seen = []

    def lines(self, n, timeout=20.0):
        """The next n NDJSON lines; fails if they do not come in time."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            while b'\n' in self.buf and len(out) < n:
                line, self.buf = self.buf.split(b'\n', 1)
                out.append(json.loads(line))
            if len(out) == n:
                break
            left = deadline - time.monotonic()
            check(left > 0, 'follow printed %d of %d lines: %r' %
                  (len(out), n, out))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError('follow exited early: %r' %
                                         self.proc.stderr.read())
                self.buf += chunk
        self.seen += out
        return out

    def stop(self):
        """SIGINT; returns (exit status, lines printed after the last read,
        stderr)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rest, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError('follow ignored SIGINT')
        rest = self.buf + rest
        extra = [json.loads(x) for x in rest.splitlines() if x.strip()]
        return self.proc.returncode, extra, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def brief(rows):
    return sorted((r['service'], r['name'], r['status']) for r in rows)


def churn(a, f):
    """Tasks seen queued and then finished leave deleted slots in the
    pending map; 20 pending, 15 of them finished, then 13 more pending
    make it grow while 17 are live. Its capacity once became 68, not a
    power of two, and follow looped forever in the map."""
    def enqueue(batch, first, n):
        t = now_ns()
        a.send([ev_batch(t, batch, 4)] +
               [ev_enqueue(t + 1 + i, first + i, batch, i, 2)
                for i in range(n)])
        a.wait_ack()
        time.sleep(0.3)

    def finish(ids):
        t = now_ns()
        evs = []
        for k, task in enumerate(ids):
            evs += [ev_start(t + 2 * k, task), ev_finish(t + 2 * k + 1, task)]
        a.send(evs)
        a.wait_ack()
        got = f.lines(len(ids))
        check(sorted(r['id'] & ((1 << 40) - 1) for r in got) == sorted(ids),
              'finished %r' % got)

    enqueue(5, 100, 20)
    finish(list(range(100, 115)))
    enqueue(6, 200, 13)
    finish(list(range(115, 120)) + list(range(200, 213)))


def run(col, follower_box):
    t0 = now_ns()
    a = FakeAgent(col.url, service=b'api')
    a.connect()
    evs = strings(t0)
    evs += batch_events(t0 + 10**6, 1, 10, [1, 2, 3], label=4)
    evs += batch_events(t0 + 2 * 10**6, 2, 20, [1, 2, 3], label=4, fail_at=1)
    a.send(evs)
    a.wait_ack()

    f = Follower(col.db, '!name:write_notification')
    follower_box.append(f)
    history = f.lines(4)
    check(brief(history) == [('api', 'send_email', 'failed'),
                             ('api', 'send_email', 'succeeded'),
                             ('api', 'write_log', 'skipped'),
                             ('api', 'write_log', 'succeeded')],
          'history %r' % brief(history))

    # Enqueued now, finished later: nothing until they finish.
    t1 = now_ns()
    a.send([ev_batch(t1, 3, 4)] +
           [ev_enqueue(t1 + 1 + i, 30 + i, 3, i, i + 1) for i in range(3)])
    a.wait_ack()
    time.sleep(0.3)
    t2 = now_ns()
    a.send([ev_start(t2, 30), ev_finish(t2 + 1000, 30),
            ev_start(t2 + 2000, 31), ev_finish(t2 + 3000, 31)])
    a.wait_ack()
    got = f.lines(1)
    check(brief(got) == [('api', 'send_email', 'succeeded')], 'got %r' % got)
    check(got[0]['id'] & ((1 << 40) - 1) == 31, 'task 31 %r' % got)
    a.send([ev_start(t2 + 4000, 32),
            ev_fail(t2 + 5000, 32, b'IOError', b'disk full', b'')])
    a.wait_ack()
    got = f.lines(1)
    check(brief(got) == [('api', 'write_log', 'failed')], 'got %r' % got)
    check(got[0]['error_message'] == 'disk full', 'error %r' % got)

    # Another agent whose clock runs an hour behind everybody else's.
    b = FakeAgent(col.url, service=b'worker')
    b.connect()
    tb = now_ns() - HOUR_NS
    b.send(strings(tb) + batch_events(tb + 10**6, 1, 40, [1, 2, 3], label=4))
    b.wait_ack()
    got = f.lines(2)
    check(brief(got) == [('worker', 'send_email', 'succeeded'),
                         ('worker', 'write_log', 'succeeded')],
          'skewed agent %r' % brief(got))

    # An agent that vanishes with a task running: the collector calls it
    # lost, and follow reports that.
    c = FakeAgent(col.url, service=b'doomed')
    c.connect()
    tc = now_ns()
    c.send(strings(tc) + [ev_batch(tc, 1, 4), ev_enqueue(tc + 1, 50, 1, 0, 2),
                          ev_start(tc + 2, 50)])
    c.wait_ack()
    c.close()
    got = f.lines(1, timeout=30)
    check(brief(got) == [('doomed', 'send_email', 'lost')], 'lost %r' % got)

    churn(a, f)

    time.sleep(0.3)
    status, extra, err = f.stop()
    check(status == 0, 'exit status %d, stderr %r' % (status, err))
    check(extra == [], 'nothing printed twice or unexpectedly: %r' % extra)
    ids = [r['id'] for r in f.seen]
    check(len(ids) == len(set(ids)), 'each task once: %r' % ids)
    a.goodbye()
    b.goodbye()


def table_into_a_file(col, box):
    """The table format into a file: the header at once (the listing is
    empty), and a task that finishes later written whole - its long error
    message is not cut to any width, as a terminal's would be."""
    out_path = col.db + '.follow.txt'
    with open(out_path, 'wb') as out:
        proc = subprocess.Popen(
            [BIN, 'query', '--db', col.db, '--follow', '--interval', '50ms',
             'name:report'], stdout=out, stderr=subprocess.PIPE)
    box.append(proc)

    def wait_lines(n):
        deadline = time.monotonic() + 20
        while True:
            with open(out_path, 'rb') as f:
                lines = f.read().decode().splitlines()
            if len(lines) >= n or proc.poll() is not None or \
                    time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    lines = wait_lines(1)
    check(lines and lines[0].split()[:3] == ['ID', 'BATCH', 'POS'],
          'the empty listing prints its header: %r' % lines)
    message = ('the report could not be written because ' + 'x' * 200)
    a = FakeAgent(col.url, service=b'reports')
    a.connect()
    t = now_ns()
    a.send([ev_string(t, 1, b'report'), ev_batch(t, 1, 0),
            ev_enqueue(t + 1, 1, 1, 0, 1), ev_start(t + 2, 1),
            ev_fail(t + 3, 1, b'ReportError', message.encode(), b'')])
    a.wait_ack()
    lines = wait_lines(2)
    check(len(lines) == 2 and lines[1].endswith('ReportError: ' + message),
          'the whole message in the file: %r' % lines)
    proc.send_signal(signal.SIGINT)
    check(proc.wait(timeout=20) == 0, 'follow exits 0 on SIGINT')
    a.goodbye()


def main():
    col = Collector('--lost-after', '0.5').start()
    box = []
    try:
        run(col, box)
        table_into_a_file(col, box)
    finally:
        for f in box:
            f.kill()
        col.cleanup()
    print('ok')


if __name__ == '__main__':
    main()
