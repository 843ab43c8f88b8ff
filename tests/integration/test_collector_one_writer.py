"""One writer per store. While a collector holds a store, a second
collector on it - on another TCP port, on a unix socket, through a symlink
to the file - is refused at start: one line on stderr naming the store and
the holder (its pid and listen addresses), a non-zero exit, no listener.
The first goes on undisturbed: its agent stays connected in the store and
keeps being acked. After a kill -9 of the holder, the lock is gone with it
and the next collector starts and stores everything once."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

NAME = 1


def second(db, listen):
    """A second collector; returns (status, stderr)."""
    p = subprocess.run(
        [os.environ['TASKWATCH_BIN'], 'collector', '--db', db, '--listen',
         listen], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


def send_batch(agent, batch):
    agent.send(batch_events(now_ns(), batch, batch * 10, [NAME] * 3, label=0))
    return agent.wait_ack()


def main():
    tmp = tempfile.mkdtemp(prefix='twone-')
    db = os.path.join(tmp, 'store.db')
    first_sock = os.path.join(tmp, 'first.sock')
    first = Collector('--listen', 'unix:' + first_sock, tcp=True, tmp=tmp,
                      db=db)
    try:
        first.start()
        # start() returns at the first listener's line; the collector
        # records both addresses in the store once it listens on both.
        deadline = time.time() + 20
        listen = [(None,)]
        while listen == [(None,)] and time.time() < deadline:
            listen = first.query("SELECT value FROM meta WHERE key = "
                                 "'collector_listen'")
            time.sleep(0.02)
        urls = re.findall(r'listening url=(\S+)', first.log())
        check(len(urls) == 2 and listen == [(' '.join(urls),)],
              'two listeners recorded: %r %r' % (urls, listen))
        a = FakeAgent(first.url)
        a.connect()
        a.send([ev_string(1, NAME, b'job')])
        send_batch(a, 1)
        link = os.path.join(tmp, 'link.db')
        os.symlink(db, link)
        tries = [(db, 'tcp://127.0.0.1:0'),
                 (db, 'unix:' + os.path.join(tmp, 'second.sock')),
                 (link, 'tcp://127.0.0.1:0')]
        for path, listen in tries:
            rc, err = second(path, listen)
            lines = err.strip().split('\n')
            check(rc != 0, 'refused: %d %r' % (rc, err))
            check(len(lines) == 1, 'one line: %r' % err)
            check(path in lines[0], 'names the store: %r' % err)
            check('another collector is writing to it (pid %d, listening on '
                  '%s)' % (first.proc.pid, ' '.join(urls)) in lines[0],
                  'names the holder: %r' % err)
            check(not os.path.exists(os.path.join(tmp, 'second.sock')),
                  'no listener left')
            print('refused: %s' % lines[0])
        # The first collector never noticed: its agent is still connected
        # in the store (a second collector used to mark every agent
        # disconnected) and is acked as before.
        check(first.query('SELECT connected FROM agents') == [(1,)],
              'agent still connected')
        check(first.query("SELECT value FROM meta WHERE key = "
                          "'collector_pid'") == [(first.proc.pid,)],
              'the holder is still recorded')
        acked = send_batch(a, 2)
        check(first.query('SELECT count(*) FROM tasks') == [(6,)],
              'first collector stores on')
        # kill -9: the lock goes with the process.
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.proc = None
        first.err.close()
        a.close()
        with Collector(tmp=tmp, db=db) as third:
            a2 = FakeAgent(third.url, instance=a.instance)
            check(a2.connect() == acked, 'resumes after the last commit')
            send_batch(a2, 3)
            a2.goodbye()
            check(third.query('SELECT count(*), count(DISTINCT id) FROM '
                              'tasks') == [(9, 9)], 'every task once')
            check(third.stop() == 0, 'clean stop')
        print('one writer per store: 3 refusals, holder undisturbed, '
              'taken over after kill -9')
    finally:
        first.own_tmp = True
        first.cleanup()


if __name__ == '__main__':
    main()
