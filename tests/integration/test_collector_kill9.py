"""Durability: an agent streams while the collector is killed with SIGKILL
three times and restarted on the same database. After every restart
WELCOME must cover everything that was acked, the agent resends the rest,
and in the end the store passes integrity_check and holds every event
exactly once. First with a fake agent that checks WELCOME against its
acks, then with the real agent (`taskwatch demo`) and its resend buffer."""
import os
import random
import re
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

BATCHES = 15000
CHUNK = 400
KILLS = 3


def all_events():
    t = now_ns()
    evs = [ev_string(t, 1, b'a'), ev_string(t, 2, b'b'), ev_string(t, 3, b'c')]
    for b in range(1, BATCHES + 1):
        evs += batch_events(t + b * 1000, b, b * 3, [1, 2, 3], label=0,
                            fail_at=2 if b % 7 == 0 else None)
    return evs


def stream(col, evs, lock, stats):
    a = FakeAgent(col.url, service=b'durable')
    acked = 1
    while True:
        try:
            with lock:
                url = col.url
            a.url = url
            nxt = a.connect()
            check(nxt >= acked, 'WELCOME %d covers acked %d' % (nxt, acked))
            stats['welcomes'].append(nxt)
            pos = nxt - 1
            while pos < len(evs):
                a.send(evs[pos:pos + CHUNK], first_seq=pos + 1)
                pos += CHUNK
                if (pos // CHUNK) % 4 == 0:
                    acked = max(acked, a.wait_ack(min(pos, len(evs)) + 1))
            acked = a.wait_ack(len(evs) + 1)
            a.goodbye()
            return
        except (OSError, EOFError, RuntimeError):
            acked = max(acked, a.acked)
            a.close()
            time.sleep(0.05)


def main():
    with Collector() as col:
        run(col)
    with Collector() as col:
        run_demo(col)


def wait_welcomed(col, proc, what):
    """Waits until the running collector has welcomed the demo's agent."""
    deadline = time.time() + 60
    while time.time() < deadline:
        check(proc.poll() is None, 'the demo ended before %s' % what)
        if re.search(r'agent connected .*service="?demo', col.log()):
            return
        time.sleep(0.02)
    raise AssertionError('the demo was not welcomed before %s' % what)


def run_demo(col):
    # 8 s of batches: longer than the kills below take even when a loaded
    # machine slows the collector's restarts and the agent's reconnects.
    demo_batches = 4000
    proc = subprocess.Popen(
        [os.environ['TASKWATCH_BIN'], 'demo', '--collector', col.url,
         '--batches', str(demo_batches), '--fail-every', '10', '--rate',
         '500', '--service', 'demo'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        # Room for the whole run while the collector is down, even on a
        # loaded machine: this checks exactly-once storage, not dropping.
        # Its twin at the default budget is test_agent_kill9_default.py.
        env=dict(os.environ, TASKWATCH_BUFFER_BYTES=str(64 << 20)))
    try:
        for kill, pause in enumerate((0.5, 0.6), 1):
            # Each kill cuts a live connection (the agent counts a reconnect
            # when it is welcomed again), not a collector the agent has not
            # reached yet: the demo's start and each reconnect take a loaded
            # machine longer than the pause.
            wait_welcomed(col, proc, 'kill %d' % kill)
            time.sleep(pause)
            check(proc.poll() is None, 'the demo ended before kill %d' % kill)
            col.stop(signal.SIGKILL)
            col.start()
        out = proc.communicate(timeout=90)[0].decode('utf-8', 'replace')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0, 'demo exit %r: %s' % (proc.returncode, out))
    check(col.stop() == 0, 'clean exit')
    check(col.query('PRAGMA integrity_check') == [('ok',)], 'integrity')
    rows = col.query('SELECT count(*), count(DISTINCT id), sum(status = 2), '
                     'sum(status = 3), sum(status = 4) FROM tasks')
    fails = demo_batches // 10
    check(rows == [(demo_batches * 3, demo_batches * 3,
                    demo_batches * 3 - 2 * fails, fails, fails)],
          'every demo task once %r (demo: %s)' % (rows, out.strip()))
    rows = col.query('SELECT dropped, reconnects >= 2, ended FROM agents')
    check(rows == [(0, 1, 1)], 'agent row %r' % rows)
    print('kill9 demo: kills=2 tasks=%d' % (demo_batches * 3))


def run(col):
    evs = all_events()
    lock = threading.Lock()
    stats = {'welcomes': []}
    th = threading.Thread(target=stream, args=(col, evs, lock, stats))
    th.start()
    rnd = random.Random(9)
    for _ in range(KILLS):
        time.sleep(rnd.uniform(0.1, 0.4))
        with lock:
            col.stop(signal.SIGKILL)
            col.query('PRAGMA integrity_check')
            col.start()
    th.join(120)
    check(not th.is_alive(), 'the agent finished')
    check(len(stats['welcomes']) >= 2, 'the agent reconnected after a kill')
    check(col.stop() == 0, 'clean exit')
    check(col.query('PRAGMA integrity_check') == [('ok',)], 'integrity')
    rows = col.query('SELECT count(*), count(DISTINCT id), sum(status = 3), '
                     'sum(status = 2) FROM tasks')
    fails = BATCHES // 7
    check(rows == [(BATCHES * 3, BATCHES * 3, fails, BATCHES * 3 - fails)],
          'every task once %r' % rows)
    check(col.query('SELECT count(*) FROM batches') == [(BATCHES,)],
          'every batch once')
    rows = col.query('SELECT events, next_seq, ended FROM agents')
    check(rows == [(len(evs), len(evs) + 1, 1)], 'every event once %r' % rows)
    print('kill9: kills=%d welcomes=%r events=%d' %
          (KILLS, stats['welcomes'], len(evs)))


if __name__ == '__main__':
    main()
