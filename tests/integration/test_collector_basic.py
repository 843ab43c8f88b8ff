"""The collector end to end with a fake agent: handshake, events stored as
coalesced rows, acks after commit, dedupe of resent events, a sequence gap
closing the connection with a logged reason, updates of stored tasks,
GOODBYE, HEALTH, and a clean SIGTERM."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

NAMES = [b'write_notification', b'send_email', b'write_log']
LABEL = b'POST /send-notification/{email}'


def strings(t):
    return [ev_string(t, i + 1, n) for i, n in enumerate(NAMES)] + \
        [ev_string(t, 4, LABEL)]


def main():
    with Collector() as col:
        run(col)
    with Collector('--flush-ms', '2s') as col:
        flush_commits_early(col)


def flush_commits_early(col):
    """A batch of few events waits five times --flush-ms (10 s here) for
    its commit, and its FLUSH (version 5) makes it due at --flush-ms: no
    ACK comes for three seconds, then the FLUSH brings it at once. (Load
    only delays an ACK: the first check cannot pass by accident, and the
    second allows eight seconds for what takes well under one.)"""
    t1 = now_ns()
    sock = connect(col.url)
    sock.sendall(frame(HELLO, struct.pack('<IHH', MAGIC, 5, 5) +
                       os.urandom(16) + struct.pack('<Iq', 8, t1 - 10**6) +
                       s16(b'flusher') + s16(b'host') + s16(b'') + s16(b'')))
    ftype, payload = read_frame(sock)
    check(ftype == WELCOME, 'welcomed: %r %r' % (ftype, payload))
    version, next_seq, _ = struct.unpack('<HQI', payload)
    check(version == 5, 'version chosen %r' % version)
    evs = [ev_string(t1, 1, b'f'), ev_batch(t1, 1, 1)]
    sock.sendall(compact_events(next_seq, evs))
    sock.settimeout(3)
    try:
        ftype, payload = read_frame(sock)
        check(False, 'no ACK before the FLUSH: %r %r' % (ftype, payload))
    except socket.timeout:
        pass
    sock.settimeout(8)
    sock.sendall(flush(next_seq + len(evs) - 1))
    ftype, payload = read_frame(sock)
    check(ftype == ACK and struct.unpack('<Q', payload)[0] ==
          next_seq + len(evs), 'the FLUSH brought the ACK: %r %r' %
          (ftype, payload))
    sock.close()


def run(col):
    t0 = now_ns()
    a = FakeAgent(col.url, service=b'api')
    check(a.connect() == 1, 'a new instance starts at sequence 1')
    evs = strings(t0)
    for b in range(1, 11):
        evs += batch_events(t0 + b * 10**6, b, b * 10, [1, 2, 3], label=4,
                            fail_at=1 if b % 5 == 0 else None)
    a.send(evs[:25])
    a.send(evs[25:])
    check(a.wait_ack() == len(evs) + 1, 'everything acked')

    rows = col.query('SELECT count(*), sum(status = 2), sum(status = 3), '
                     'sum(status = 4) FROM tasks')
    check(rows == [(30, 26, 2, 2)], 'task states %r' % rows)
    agent_id = col.query('SELECT id FROM agents')[0][0]
    rows = col.query('SELECT t.skipped_after, f.id, f.error_type, '
                     'f.error_message FROM tasks t JOIN tasks f ON f.batch = '
                     't.batch AND f.status = 3 WHERE t.status = 4')
    for skipped_after, failed_id, etype, msg in rows:
        check(skipped_after == failed_id, 'skipped_after names the failure')
        check((etype, msg) == ('SMTPError', 'connection refused'), 'error')
    rows = col.query('SELECT min(wait_us), min(run_us), count(*) FROM tasks '
                     'WHERE status = 2 AND enqueued_at <= started_at AND '
                     'started_at <= finished_at')
    check(rows[0][2] == 26 and rows[0][0] >= 0 and rows[0][1] >= 0,
          'times in order %r' % rows)
    rows = col.query('SELECT DISTINCT label FROM batches')
    check(rows == [(LABEL.decode(),)], 'batch label %r' % rows)
    rows = col.query('SELECT count(*) FROM tasks WHERE id >> 40 = ?',
                     (agent_id,))
    check(rows == [(30,)], 'store-wide ids carry the agent id')
    rows = col.query('SELECT events, next_seq, service, connected FROM '
                     'agents')
    check(rows == [(len(evs), len(evs) + 1, 'api', 1)], 'agent row %r' % rows)

    # Reconnect the same instance: WELCOME says what is stored, and a
    # resend of already stored events is ignored.
    a.close()
    check(a.connect() == len(evs) + 1, 'WELCOME after reconnect')
    t1 = now_ns()
    new = [ev_batch(t1, 99, 4), ev_enqueue(t1, 990, 99, 0, 1)]
    a.send(evs[-3:] + new, first_seq=len(evs) - 2)
    check(a.wait_ack() == len(evs) + 3, 'resend acked')
    # The new task is queued: it reaches tasks once the collector stops
    # holding it.
    check(col.query_until('SELECT count(*) FROM tasks', want=[(31,)]) ==
          [(31,)], 'no duplicates')
    check(col.query('SELECT events FROM agents') == [(len(evs) + 2,)],
          'events counted once')

    # The queued task is stored; its later events update the row.
    check(col.query('SELECT status FROM tasks WHERE id = ?',
                    ((agent_id << 40) | 990,)) == [(0,)], 'queued')
    a.send([ev_start(t1 + 5000, 990), ev_finish(t1 + 9000, 990)])
    a.wait_ack()
    rows = col.query('SELECT status, wait_us, run_us FROM tasks WHERE id = ?',
                     ((agent_id << 40) | 990,))
    check(rows == [(2, 5, 4)], 'updated row %r' % rows)

    # HEALTH updates the agent's counters.
    a.send([ev_health(t1 + 10000, 12, 3)])
    a.wait_ack()
    check(col.query('SELECT dropped, reconnects FROM agents') == [(12, 3)],
          'health')

    # A second instance, then a gap: its connection is closed with a reason.
    b = FakeAgent(col.url, service=b'worker')
    b.connect()
    b.send([ev_string(t1, 1, b'x')], first_seq=5)
    ftype, payload = read_frame(b.sock)
    check(ftype == ERROR and b"sequence gap" in payload, "ERROR frame %r %r" % (ftype, payload))
    check('reason="sequence gap"' in col.log(), 'logged reason')
    b.close()

    # A newer agent (versions 1 to 7) whose HELLO grew fields of its own
    # after version 6's (an empty key: no proof) is welcomed at version 6,
    # the newest both speak, and stored as usual; its events come in the
    # compact encoding of version 4 on, and its ACKs carry version 6's
    # hold_ms: once the collector measured its rate over a second, an
    # idle one at the default --flush-ms (50 ms) lets an agent keep its
    # events five times that, as long as its batches of few events wait.
    c = FakeAgent(col.url, service=b'newer')
    c.sock = connect(col.url)
    c.sock.sendall(frame(HELLO, struct.pack('<IHH', MAGIC, 7, 1) +
                         c.instance + struct.pack('<Iq', 7, t1 - 10**6) +
                         s16(b'newer') + s16(b'host') + s16(b'') +
                         s16(b'') + b'fields of version 7'))
    ftype, payload = read_frame(c.sock)
    check(ftype == WELCOME, 'newer agent welcomed: %r %r' % (ftype, payload))
    version, c.next_seq, _ = struct.unpack('<HQI', payload)
    check(version == 6, 'version chosen %r' % version)
    c.acked = c.next_seq
    # Times on both sides of the frame's base_time (the first event's).
    evs = [ev_string(t1, 1, b'y'), ev_batch(t1 - 1500, 1, 1),
           ev_enqueue(t1 + 3000, 5, 1, 0, 1, thread=4242),
           ev_start(t1 + 4000, 5, thread=4242)]
    c.sock.sendall(compact_events(c.next_seq, evs))
    c.next_seq += len(evs)
    # Version 5's FLUSH: the agent waits for these events' ack.
    c.sock.sendall(flush(c.next_seq - 1))
    c.wait_ack()
    check(c.hold_ms in (0, 250), 'hold_ms %r' % c.hold_ms)
    # A second's window has passed once this batch is handed over.
    time.sleep(1.1)
    evs = [ev_string(now_ns(), 2, b'z')]
    c.sock.sendall(compact_events(c.next_seq, evs))
    c.next_seq += len(evs)
    c.sock.sendall(flush(c.next_seq - 1))
    c.wait_ack()
    check(c.hold_ms == 250, 'hold_ms after a quiet second %r' % c.hold_ms)
    c.goodbye()
    check(col.query("SELECT pid, events FROM agents WHERE service = 'newer'")
          == [(7, 5)], 'newer agent stored')
    newer = "(SELECT id FROM agents WHERE service = 'newer')"
    got = col.query("SELECT enqueued_at, started_at, thread, name FROM tasks "
                    "WHERE agent = " + newer)
    check(got == [((t1 + 3000) // 1000, (t1 + 4000) // 1000, 4242, 'y')],
          'the compact task as sent: %r (t1 %d)' % (got, t1))
    got = col.query("SELECT created_at, label FROM batches WHERE agent = " +
                    newer)
    check(got == [((t1 - 1500) // 1000, 'y')],
          'the compact batch as sent: %r (t1 %d)' % (got, t1))
    check('version=1' in col.log(), 'the version is logged')

    # The first agent is unaffected; GOODBYE marks a clean end.
    a.send([ev_enqueue(t1, 991, 99, 1, 2)])
    a.goodbye()
    rows = col.query("SELECT ended, connected FROM agents WHERE service = "
                     "'api'")
    check(rows == [(1, 0)] or rows == [(1, 1)], 'ended %r' % rows)

    rc = col.stop(signal.SIGTERM)
    check(rc == 0, 'SIGTERM exits 0, got %r' % rc)
    check('stopped events=' in col.log(), 'summary logged')
    rows = col.query('SELECT ended, connected FROM agents WHERE service = '
                     "'api'")
    check(rows == [(1, 0)], 'disconnect recorded at shutdown %r' % rows)
    rows = col.query('SELECT sum(succeeded), sum(failed), sum(skipped) FROM '
                     'rollups')
    check(rows == [(27, 2, 2)], 'rollups %r' % rows)
    check(col.query('PRAGMA integrity_check') == [('ok',)], 'integrity')
    print('ok')


if __name__ == '__main__':
    main()
