"""A hostile peer floods HEALTH events (25 bytes each on the wire) in
1 MiB EVENTS frames. The collector keeps one HEALTH op per instance and
write batch, and counts every array of the batch toward the watermark
that pauses reading, so its memory stays bounded, the newest counters are
stored, and SIGTERM ends it cleanly. Prints the collector's peak RSS."""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

FRAMES = int(os.environ.get('TW_FLOOD_FRAMES', '40'))
# The largest EVENTS frame: 1 MiB minus its type and first_seq/count.
PER_FRAME = ((1 << 20) - 2 - 12) // 25


def main():
    no_asan_quarantine()
    with Collector(tcp=True) as col:
        agent = FakeAgent(col.url, service=b'flood')
        agent.connect()
        seq = agent.next_seq
        t = now_ns()
        for _ in range(FRAMES):
            evs = b''.join(ev_health(t, seq + i, 2 * (seq + i))
                           for i in range(PER_FRAME))
            agent.sock.sendall(frame(EVENTS, struct.pack('<QI', seq,
                                                         PER_FRAME) + evs))
            seq += PER_FRAME
        agent.next_seq = seq
        agent.sock.settimeout(120)
        agent.wait_ack()
        rss = peak_rss_kib(col.proc.pid)
        agent.goodbye()
        rows = col.query("SELECT dropped, reconnects, events FROM agents "
                         "WHERE service = 'flood'")
        last = seq - 1
        check(rows == [(last, 2 * last, FRAMES * PER_FRAME)],
              'the newest counters stored: %r' % rows)
        check(col.stop() == 0, 'SIGTERM ends the collector cleanly')
        # Without the bound the ops alone (~100 bytes per event) would
        # take FRAMES * PER_FRAME * 100 bytes, over 160 MiB here.
        check(rss < 128 * 1024, 'peak RSS bounded: %d KiB' % rss)
        print('health_flood: events=%d bytes_sent=%d peak_rss_kib=%d' %
              (FRAMES * PER_FRAME, FRAMES * (1 << 20), rss))


if __name__ == '__main__':
    main()
