"""Hostile input: while `taskwatch demo` streams, a corpus of bad connections
(garbage, oversized, undersized, truncated, malformed handshakes and
events, protocol violations, silent and slow peers, a wrong token) hits
the collector. Each must be closed with one logged line naming the peer
and the reason, and the demo's tasks must all arrive."""
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

TOKEN = b's3cret-token'
BATCHES = 3000
INST = b'\x42' * 16


def good_hello(instance=None):
    return hello(instance or os.urandom(16), token=TOKEN)


def corpus():
    """(name, bytes to send, reason expected in the log)."""
    h = good_hello()
    bad_magic = bytearray(h)
    bad_magic[6] ^= 0xff
    # An agent that speaks version 9 only (from version 2 on, HELLO's
    # version is followed by the oldest version the agent speaks).
    bad_version = frame(HELLO, struct.pack('<IHH', MAGIC, 9, 9) + h[12:])
    trunc_hello = struct.pack('<IH', 12, HELLO) + h[6:16]
    trailing = frame(HELLO, h[6:] + b'xx')
    s = ev_string(1, 1, b'n')
    cases = [
        ('http', b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
         'frame larger than the limit'),
        ('oversized', struct.pack('<IH', 0xffffffff, EVENTS),
         'frame larger than the limit'),
        ('oversized-just', struct.pack('<IH', (1 << 20) + 1, EVENTS),
         'frame larger than the limit'),
        # Before HELLO nothing longer than the largest HELLO is buffered.
        ('big-before-hello', struct.pack('<IH', 1 << 20, HELLO) +
         b'\0' * 4000, 'frame larger than the limit for a HELLO'),
        # The largest HELLO itself is read whole (and refused for its token).
        ('max-hello', hello(os.urandom(16), service=b's' * 256,
                            host=b'h' * 256, token=b't' * 256),
         'authentication failed'),
        ('undersized', struct.pack('<I', 1) + b'\0' * 8,
         'frame shorter than its header'),
        ('events-first', events(1, [s]), 'expected HELLO first'),
        ('bad-magic', bytes(bad_magic), 'bad handshake magic'),
        ('bad-version', bad_version,
         'unsupported protocol version: agent speaks 9..9, collector 1..6'),
        ('truncated-hello', trunc_hello, 'payload ends inside a field'),
        ('trailing-hello', trailing, 'payload has trailing bytes'),
        ('unknown-kind', good_hello() + events(1, [struct.pack('<Bq', 77, 1) +
                                         b'\0' * 16]),
         'unknown event kind'),
        ('truncated-event', good_hello() + frame(EVENTS, struct.pack('<QI', 1, 1) +
                                      s[:-1] + b'\0' * 2),
         'payload'),
        ('gap', good_hello() + events(9, [s]), 'sequence gap'),
        ('undefined-name', good_hello() + events(1, [ev_enqueue(1, 1, 1, 0, 5)]),
         'undefined string id'),
        ('second-hello', good_hello() + good_hello(), 'second HELLO'),
        ('wrong-direction', good_hello() + frame(WELCOME, b'\0' * 14),
         'unexpected message type'),
        # FLUSH is version 5's; this HELLO agrees on version 1.
        ('flush-before-version-5', good_hello() + events(1, [s]) + flush(1),
         'unexpected message type'),
        ('long-string', good_hello() + frame(EVENTS, struct.pack('<QIBqIH', 1, 1, 1, 1,
                                                      1, 5000) +
                                  b'a' * 5000),
         'field value out of range'),
        ('zero-count', good_hello() + frame(EVENTS, struct.pack('<QI', 1, 0)),
         'field value out of range'),
        ('zero-seq', good_hello() + events(0, [s]), 'field value out of range'),
        ('bad-goodbye', good_hello() + goodbye(77), 'GOODBYE after a sequence gap'),
        ('wrong-token', hello(os.urandom(16), token=b'guess'),
         'authentication failed'),
        ('no-token', hello(os.urandom(16)), 'authentication failed'),
        ('ends-in-frame', good_hello() + events(1, [s])[:-3], 'ended inside a frame'),
        ('silent', b'', 'handshake timeout'),
        ('slow', good_hello() + events(1, [s])[:9], 'frame not completed in time'),
    ]
    rnd = random.Random(4)
    for i in range(40):
        blob = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
        cases.append(('random-%d' % i, blob, ''))
    return cases


def attack(url, name, data, results):
    """Sends data, then waits until the collector closes the connection."""
    try:
        sock = connect(url)
        sock.settimeout(15)
        if data:
            sock.sendall(data)
        if name == 'ends-in-frame':
            sock.shutdown(socket.SHUT_WR)
        got = b''
        t0 = time.time()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        results[name] = (True, time.time() - t0, got)
        sock.close()
    except (OSError, EOFError) as e:
        # A reset also means the collector closed it.
        results[name] = (isinstance(e, ConnectionResetError), 0, repr(e))


def stream(url, done):
    """The real agent: the demo, paced so that it streams throughout."""
    stream_demo(url, done, TOKEN, BATCHES, BATCHES // 2)


def main():
    tmp = tempfile.mkdtemp(prefix='twhostile-')
    token_file = os.path.join(tmp, 'token')
    with open(token_file, 'wb') as f:
        f.write(TOKEN + b'\n')
    col = Collector('--token-file', token_file, '--handshake-timeout', '1',
                    tcp=True, tmp=tmp)
    try:
        col.start()
        run(col)
    finally:
        col.own_tmp = True
        col.cleanup()


def run(col):
    done = []
    streamer = threading.Thread(target=stream, args=(col.url, done))
    t0 = time.time()
    streamer.start()
    cases = corpus()
    results = {}
    threads = []
    for name, data, _ in cases:
        th = threading.Thread(target=attack,
                              args=(col.url, name, data, results))
        th.start()
        threads.append(th)
        time.sleep(0.005)
    for th in threads:
        th.join(30)
    streamer.join(120)
    elapsed = time.time() - t0
    check(done and done[0][0] == 0, 'the demo finished: %r' % (done,))
    for name, data, reason in cases:
        closed, _, got = results.get(name, (False, 0, 'no result'))
        check(closed, '%s: connection was closed (%r)' % (name, got))
    # Each peer got its own reason in an ERROR frame before the close.
    for name, want in (('max-hello', b'authentication failed'),
                       ('big-before-hello', b'limit for a HELLO'),
                       ('bad-version', b'agent speaks 9..9, collector 1..6')):
        got = results.get(name, (False, 0, b''))[2]
        check(isinstance(got, bytes) and want in got,
              '%s: ERROR frame says %r (%r)' % (name, want, got))
    log = col.log()
    closed_lines = [line for line in log.splitlines()
                    if 'connection closed peer=' in line and 'reason=' in line]
    for name, data, reason in cases:
        if reason:
            check(any(reason in line for line in closed_lines),
                  '%s: logged reason %r' % (name, reason))
    check(len(closed_lines) >= len(cases),
          'one closing line per bad connection: %d for %d' %
          (len(closed_lines), len(cases)))
    check(all(re.search(r'peer=(127\.0\.0\.1|\[::1\]):\d+', line)
              for line in closed_lines), 'every line names the peer')
    check_streamed(col, BATCHES)
    rows = col.query("SELECT events, dropped, ended FROM agents WHERE "
                     "service = 'steady'")
    check(len(rows) == 1 and rows[0][0] >= BATCHES * 9 and
          rows[0][1:] == (0, 1), 'every event once, none dropped %r' % rows)
    streamed = rows[0][0]
    check(col.proc.poll() is None, 'the collector is still running')
    check(col.stop() == 0, 'clean exit')
    check(col.query('PRAGMA integrity_check') == [('ok',)], 'integrity')
    print('hostile: bad_connections=%d closed_with_logged_reason=%d '
          'streamed_events=%d streamed_tasks=%d tasks_stored=%d '
          'seconds=%.2f' % (len(cases), len(closed_lines), streamed,
                            BATCHES * 3, BATCHES * 3, elapsed))


if __name__ == '__main__':
    main()
