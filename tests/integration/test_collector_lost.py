"""Lost tasks: an instance whose connection ends without GOODBYE and that
does not come back within --lost-after has its queued and running tasks
turned lost; one that says GOODBYE has them turned lost at once (no task
outlives its instance), each with a reason that says why and what the
agent reported dropping; one that comes back in time keeps them; and
after a collector restart (here a SIGKILL) the instances left with open
tasks get the same grace period."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403


def open_tasks(url, service, close=True):
    a = FakeAgent(url, service=service)
    a.connect()
    t = now_ns()
    a.send([ev_string(t, 1, b'job'), ev_batch(t, 1, 0),
            ev_enqueue(t, 1, 1, 0, 1), ev_enqueue(t, 2, 1, 1, 1),
            ev_enqueue(t, 3, 1, 2, 1), ev_start(t + 1000, 1)])
    a.wait_ack()
    if close:
        a.close()
    return a


def states(col, service):
    return col.query("SELECT t.status, count(*) FROM tasks t JOIN agents a "
                     "ON a.id = t.agent WHERE a.service = ? GROUP BY "
                     "t.status ORDER BY t.status", (service.decode(),))


def main():
    with Collector('--lost-after', '0.5') as col:
        run(col)


def run(col):
    open_tasks(col.url, b'vanished')
    clean = open_tasks(col.url, b'clean', close=False)
    clean.goodbye()
    back = open_tasks(col.url, b'returned')
    back.connect()
    check(wait_until(lambda: states(col, b'vanished') == [(6, 3)]),
          'vanished instance: tasks lost')
    rows = col.query("SELECT drop_reason, finished_at >= "
                     "enqueued_at, run_us IS NOT NULL FROM tasks t JOIN "
                     "agents a ON a.id = t.agent WHERE a.service = "
                     "'vanished' ORDER BY t.id")
    why = ('agent disconnected and did not return; it reported 0 events '
           'dropped')
    check(rows == [(why, 1, 1), (why, 1, 0), (why, 1, 0)],
          'lost rows %r' % rows)
    # The GOODBYE was acked, so its transaction is committed.
    check(states(col, b'clean') == [(6, 3)], 'GOODBYE: no task left open')
    rows = col.query("SELECT DISTINCT drop_reason FROM tasks t JOIN agents "
                     "a ON a.id = t.agent WHERE a.service = 'clean'")
    check(rows == [('agent ended before the task finished; it reported 0 '
                    'events dropped',)], 'ended rows %r' % rows)
    time.sleep(1.0)
    check(states(col, b'returned') == [(0, 2), (1, 1)], 'returned in time')
    rows = col.query("SELECT sum(lost) FROM rollups WHERE name = 'job'")
    check(rows == [(6,)], 'rollup counts lost %r' % rows)

    # SIGKILL with an instance connected; after the restart it does not
    # come back, so its open tasks become lost too.
    check(col.stop(signal.SIGKILL) == -signal.SIGKILL, 'killed')
    back.close()
    col.start()
    check(wait_until(lambda: states(col, b'returned') == [(6, 3)]),
          'after a restart the vanished instance is lost')
    check(states(col, b'clean') == [(6, 3)], 'clean stays')
    check(col.stop() == 0, 'clean exit')
    print('ok')


if __name__ == '__main__':
    main()
