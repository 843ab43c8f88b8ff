"""Retention through the command line: --max-tasks keeps the newest tasks,
--retain-days prunes old ones while --retain-failures-days keeps failures
longer; rollups survive the pruning."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

DAY = 86400 * 10**9


def send_batches(url, start_ns, count, service):
    a = FakeAgent(url, service=service, started=start_ns)
    a.connect()
    evs = [ev_string(start_ns, 1, b'a'), ev_string(start_ns, 2, b'b'),
           ev_string(start_ns, 3, b'c')]
    for b in range(1, count + 1):
        evs += batch_events(start_ns + b * 10**6, b, b * 3, [1, 2, 3],
                            label=0, fail_at=1 if b % 4 == 0 else None)
    a.send(evs)
    a.goodbye()


def main():
    with Collector('--max-tasks', '100') as col:
        send_batches(col.url, now_ns(), 400, b'many')
        check(wait_until(lambda: col.query('SELECT count(*) FROM tasks')[0][0]
                         <= 100), 'pruned to --max-tasks')
        rows = col.query('SELECT count(*), min(enqueued_at) > (SELECT '
                         'min(created_at) FROM batches) FROM tasks')
        check(rows[0][0] >= 90, 'newest kept %r' % rows)
        rows = col.query('SELECT count(*) FROM batches')
        check(rows[0][0] <= 40, 'emptied batches pruned %r' % rows)
        rows = col.query('SELECT sum(succeeded + failed + skipped) FROM '
                         'rollups')
        check(rows == [(1200,)], 'rollups keep the history %r' % rows)
        check(col.stop() == 0, 'clean exit')

    with Collector('--retain-days', '1', '--retain-failures-days', '5') as col:
        send_batches(col.url, now_ns() - 3 * DAY, 40, b'old')
        send_batches(col.url, now_ns(), 4, b'new')
        check(wait_until(lambda: col.query(
            'SELECT count(*) FROM tasks WHERE enqueued_at < ?',
            ((now_ns() - DAY) // 1000,))[0][0] == 20),
            'old successes pruned, old failures kept')
        rows = col.query('SELECT status, count(*) FROM tasks WHERE '
                         'enqueued_at < ? GROUP BY status',
                         ((now_ns() - DAY) // 1000,))
        check(rows == [(3, 10), (4, 10)], 'kept failed and skipped %r' % rows)
        check(col.query('SELECT count(*) FROM tasks WHERE enqueued_at >= ?',
                        ((now_ns() - DAY) // 1000,)) == [(12,)],
              'recent tasks kept')
        check(col.stop() == 0, 'clean exit')
    print('ok')


if __name__ == '__main__':
    main()
