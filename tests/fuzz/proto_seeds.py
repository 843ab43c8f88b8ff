"""Writes the seed corpus of fuzz_proto (committed in
tests/fuzz/corpus/fuzz_proto): valid connection streams (first
byte 0: after a synthetic HELLO of this version, compact events; 2: after
one of version 3, fixed-width events; 1: bringing their own HELLO)."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'integration'))
from test_collector_util import (ACK, HELLO, MAGIC, batch_events,  # noqa
                                 compact_events, ev_drop, ev_health,
                                 ev_string, events, flush, frame, goodbye,
                                 hello, s16)


def newer_hello(version_min, version=3):
    return frame(HELLO, struct.pack('<IHH', MAGIC, version, version_min) +
                 b'\2' * 16 + struct.pack('<Iq', 1, 0) + s16(b'svc') +
                 s16(b'host') + s16(b'') + b'later fields')


def main(out):
    os.makedirs(out, exist_ok=True)
    names = [ev_string(1, 1, b'write_notification'),
             ev_string(1, 2, b'send_email'), ev_string(1, 3, b'write_log'),
             ev_string(1, 4, b'POST /x')]
    evs = names + batch_events(10, 1, 1, [1, 2, 3], label=4) + \
        batch_events(20, 2, 4, [1, 2, 3], label=4, fail_at=0) + \
        [ev_drop(30, 9, b'shutdown'), ev_health(31, 2, 1)]
    seeds = {
        'stream': b'\2' + events(1, evs) + goodbye(len(evs)),
        'split': b'\2' + events(1, evs[:7]) + events(8, evs[7:]),
        'resend': b'\2' + events(1, evs[:7]) + events(3, evs[2:]),
        'hello': b'\1' + hello(b'\1' * 16) + events(1, evs[:5]),
        'frame': b'\0' + struct.pack('<IH', 2, 999),
        # An agent of versions 1..3 whose HELLO grew fields of its own, and
        # one of 2..3 that this version cannot serve.
        'newer-hello': b'\1' + newer_hello(1) + events(1, evs[:5]),
        'refused-hello': b'\1' + newer_hello(2) + events(1, evs[:5]),
        # Version 4's compact events, after the synthetic HELLO and after
        # one of an agent of 1..7 (welcomed at 6, its own fields skipped).
        'compact': b'\0' + compact_events(1, evs) + goodbye(len(evs)),
        'compact-hello': b'\1' + frame(
            HELLO, struct.pack('<IHH', MAGIC, 7, 1) + b'\3' * 16 +
            struct.pack('<Iq', 1, 0) + s16(b'svc') + s16(b'host') +
            s16(b'') + s16(b'') + b'fields of version 7') +
        compact_events(1, evs[:7]) + compact_events(8, evs[7:]),
        # Version 5's FLUSH after part of the events, then the rest.
        'flush': b'\0' + compact_events(1, evs[:7]) + flush(7) +
        compact_events(8, evs[7:]) + goodbye(len(evs)),
        # ACKs as the agent reads them: version 6's with hold_ms, and one
        # of an older version (every frame is decoded as each message).
        'ack': b'\0' + frame(ACK, struct.pack('<QI', 9, 100)) +
        frame(ACK, struct.pack('<Q', 9)) + compact_events(1, evs[:3]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main(sys.argv[1])
