"""`taskwatch query` while a live collector is writing: a demo streams
batches into the collector and queries of every kind run back to back the
whole time; none may fail or print anything but complete, valid rows (WAL,
read-only, busy timeout). Afterwards the stored history answers exactly
what SQLite itself says: filters, exit statuses, stats and percentiles.
(The expected figures come from the store, not from the demo's arguments:
on a loaded machine the agent may drop events by design, and counts them.)
"""
import json
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import Collector, check  # noqa: E402

BIN = os.environ['TASKWATCH_BIN']
BATCHES = 3000


def query(db, *args, status=0):
    sub = [args[0]] if args and args[0] in ('stats', 'show', 'batch') else []
    p = subprocess.run([BIN, 'query', *sub, '--db', db, *args[len(sub):]],
                       capture_output=True, timeout=60)
    check(p.returncode == status, 'query %r exited %d: %r' %
          (args, p.returncode, p.stderr))
    return p.stdout.decode()


def rows(text):
    return [json.loads(line) for line in text.splitlines() if line]


def during(db, demo):
    """Queries until the demo is done; returns how many ran."""
    kinds = [
        ['-o', 'json', 'status:failed'],
        ['-o', 'csv', '--name', 'send_*', '--limit', '500'],
        ['--reverse', '--limit', '50'],
        ['stats', '-o', 'json', '--by', 'name'],
        ['-o', 'json', 'error:mailbox', 'run>=0us'],
    ]
    n = 0
    while demo.poll() is None or n < len(kinds):
        args = kinds[n % len(kinds)]
        if args[0] == 'stats':
            out = subprocess.run([BIN, 'query', 'stats', '--db', db,
                                  *args[1:]], capture_output=True, timeout=60)
            check(out.returncode == 0, 'stats failed: %r' % out.stderr)
            for r in rows(out.stdout.decode()):
                check(r['count'] >= r['failed'], 'stats row %r' % r)
        elif '-o' in args and 'json' in args:
            for r in rows(query(db, *args)):
                check(r['status'] == 'failed', 'row %r' % r)
        else:
            query(db, *args)
        n += 1
    return n


def main():
    col = Collector(tcp=True).start()
    try:
        demo = subprocess.Popen(
            [BIN, 'demo', '--collector', col.url, '--batches', str(BATCHES),
             '--fail-every', '10', '--rate', '2000', '--quiet'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ran = during(col.db, demo)
            check(demo.wait(timeout=120) == 0, 'demo: %r' %
                  demo.stderr.read())
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        check(ran >= 5, 'queries ran: %d' % ran)
        db = col.db
        con = sqlite3.connect('file:%s?mode=ro' % db, uri=True)

        def count(where, *args):
            return con.execute('SELECT count(*) FROM tasks WHERE ' + where,
                               args).fetchone()[0]

        failed = rows(query(db, '-o', 'json', '--status', 'failed'))
        check(len(failed) == count('status = 3') > 0,
              'failed %d' % len(failed))
        skipped = rows(query(db, '-o', 'json', 'status:skipped'))
        check(len(skipped) == count('status = 4'), 'skipped')
        by_id = {r['id']: r for r in failed}
        for r in skipped:
            cause = by_id.get(r['skipped_after'])
            check(r['name'] == 'write_log' and
                  (cause is None or cause['batch'] == r['batch']),
                  'skipped %r' % r)
        check(len(rows(query(db, '-o', 'json', 'name:send_*', 'error:mail')))
              == count("name GLOB 'send_*' AND error_message LIKE '%mail%'"),
              'name and error')
        query(db, '--fail-if-any', 'status:failed', status=1)
        query(db, '--fail-if-empty', 'name:nothing', status=1)
        query(db, '--fail-if-any', 'name:nothing', status=0)
        text = query(db, '-o', 'csv', '!status:succeeded')
        check(text.count('\r\n') == 1 + count('status <> 2'), 'csv rows')
        stats = rows(query(db, 'stats', '-o', 'json', '--by', 'name'))
        for s in stats:
            want = con.execute(
                'SELECT count(*), sum(status = 3), sum(status = 4),'
                ' max(run_us) FROM tasks WHERE name = ?',
                (s['name'],)).fetchone()
            check((s['count'], s['failed'], s['skipped'], s['run_max_us'])
                  == want, 'stats %r vs %r' % (s, want))
            runs = [r for (r,) in con.execute(
                'SELECT run_us FROM tasks WHERE name = ? AND run_us IS NOT'
                ' NULL ORDER BY run_us', (s['name'],))]
            rank = (len(runs) * 95 + 99) // 100
            check(s['run_p95_us'] == runs[rank - 1], 'p95 of %s' % s['name'])
        check(sum(s['count'] for s in stats) == count('1'), 'total')
        con.close()
    finally:
        col.cleanup()
    print('ok')


if __name__ == '__main__':
    main()
