"""Bounded whatever a peer sends (collector/guard.h): one peer defines
100,000 distinct names and runs a task under each, while another agent
streams ordinary batches. The collector, at its default settings, stays
under 128 MiB of peak resident memory (VmHWM, read from /proc), keeps
serving the other agent (all of its tasks stored, with their own names),
stores every task of the flood (the names past the cap read "(other)"),
folds the rollups' names past their cap per minute into "(other)" and
counts all of it in the stopped line.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

NAMES = 100000
CHUNK = 2000
RSS_LIMIT_KIB = 128 * 1024
STEADY_BATCHES = 400
# The caps of collector/guard.h this test meets.
AGENT_STRINGS = 8192            # GUARD_AGENT_STRINGS
ROLLUP_NAMES_PER_MINUTE = 256   # GUARD_ROLLUP_NAMES_PER_MINUTE


def flood(url, out):
    agent = FakeAgent(url, service=b'flood')
    agent.connect()
    task = 1
    for first in range(1, NAMES + 1, CHUNK):
        t = now_ns()
        ids = range(first, min(first + CHUNK, NAMES + 1))
        evs = [ev_string(t, i, b'name-%06d-%s' % (i, b'x' * 24)) for i in ids]
        evs.append(ev_batch(t, first, 0))
        for pos, i in enumerate(ids):
            evs.append(ev_enqueue(t + 1, task + pos, first, pos, i))
        for pos, _ in enumerate(ids):
            evs.append(ev_start(t + 2, task + pos))
            evs.append(ev_finish(t + 1000 + pos, task + pos))
        task += len(ids)
        agent.send(evs)
    agent.wait_ack()
    agent.goodbye()
    out.append(task - 1)


def steady(url, out):
    agent = FakeAgent(url, service=b'steady')
    agent.connect()
    t = now_ns()
    agent.send([ev_string(t, 1, b'label'), ev_string(t, 2, b'send_email'),
                ev_string(t, 3, b'write_log')])
    task = 1
    for b in range(1, STEADY_BATCHES + 1):
        agent.send(batch_events(now_ns(), b, task, [2, 3], label=1))
        task += 2
        if b % 50 == 0:
            agent.wait_ack()
            out.append(('acked', b, time.time()))
    agent.goodbye()
    out.append(('done', task - 1, time.time()))


def main():
    no_asan_quarantine()
    with Collector(tcp=True) as col:
        flooded, steadied = [], []
        th_flood = threading.Thread(target=flood, args=(col.url, flooded),
                                    daemon=True)
        th_steady = threading.Thread(target=steady, args=(col.url, steadied),
                                     daemon=True)
        t0 = time.time()
        th_flood.start()
        time.sleep(0.2)  # the flood is under way before the other starts
        th_steady.start()
        th_steady.join(120)
        steady_done = time.time()
        th_flood.join(300)
        flood_done = time.time()
        check(flooded == [NAMES], 'the flood was acked: %r' % flooded)
        check(steadied and steadied[-1][0] == 'done',
              'the other agent was served: %r' % steadied[-3:])
        hwm = peak_rss_kib(col.proc.pid)
        rows = col.query(
            "SELECT t.name, count(*), sum(t.status = 2) FROM tasks t JOIN "
            "agents a ON a.id = t.agent WHERE a.service = 'steady' "
            "GROUP BY t.name ORDER BY t.name")
        check(rows == [('send_email', STEADY_BATCHES, STEADY_BATCHES),
                       ('write_log', STEADY_BATCHES, STEADY_BATCHES)],
              "the other agent's tasks stored with their names %r" % rows)
        rows = col.query(
            "SELECT count(*), sum(t.name = '(other)'), "
            "count(DISTINCT t.name), sum(t.status = 2) FROM tasks t JOIN "
            "agents a ON a.id = t.agent WHERE a.service = 'flood'")
        total, other, distinct, succeeded = rows[0]
        check(total == NAMES and succeeded == NAMES,
              'every task of the flood stored %r' % (rows,))
        rows = col.query("SELECT max(n) FROM (SELECT count(*) AS n FROM "
                         "rollups GROUP BY minute)")
        # The cap is the minute's in total; past it each service's later
        # names share one (other) row (two services here).
        check(rows[0][0] <= ROLLUP_NAMES_PER_MINUTE + 2,
              'rollup names per minute capped, (other) besides: %r' % rows)
        rows = col.query("SELECT sum(succeeded) FROM rollups")
        check(rows[0][0] == NAMES + 2 * STEADY_BATCHES,
              'every task counted in the rollups: %r' % rows)
        check(col.stop() == 0, 'clean exit')
        log = col.log()
        line = [l for l in log.splitlines() if 'stopped events=' in l][0]
        counters = dict(kv.split('=', 1) for kv in line.split()
                        if '=' in kv and not kv.startswith('note'))
        check(int(counters['strings_folded']) == other ==
              NAMES - AGENT_STRINGS and distinct == AGENT_STRINGS + 1,
              'names past the cap of %d folded and counted: %s' %
              (AGENT_STRINGS, line))
        check(int(counters['rollup_folded']) > 0,
              'rollup folds counted in the stopped line: %s' % line)
        check('instance past its cap of interned strings' in log,
              'the cap logged once')
        check(hwm < RSS_LIMIT_KIB, 'peak RSS %d KiB under %d KiB' %
              (hwm, RSS_LIMIT_KIB))
        print('caps: names=%d peak_rss_kib=%d (limit %d) other_tasks=%d '
              'distinct_names_stored=%d strings_folded=%s rollup_folded=%s '
              'steady_seconds=%.2f flood_seconds=%.2f' %
              (NAMES, hwm, RSS_LIMIT_KIB, other, distinct,
               counters['strings_folded'], counters['rollup_folded'],
               steady_done - t0, flood_done - t0))


if __name__ == '__main__':
    main()
