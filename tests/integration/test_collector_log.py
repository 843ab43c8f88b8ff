"""A hostile peer's strings reach the collector's log escaped: a service
name carrying an 8-bit OSC 52 clipboard write, CSI 0x9b, U+202E, a 7-bit
OSC 52, an encoded C1 control, invalid UTF-8 and a forged key=value pair
arrives as text (U+FFFD, control pictures, escaped quotes), so a terminal
tailing the log is told nothing. The peer's events are stored as sent."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

HOSTILE = (b'\x9d52;c;aGVsbG8=\x9c' b'\x9b31m' + '\u202e'.encode() +
           b'\x1b]52;c;eA==\x07' b'\xc2\x9b' b'\xff' b'" agent=999 x="')
SAFE = ('"\ufffd52;c;aGVsbG8=\ufffd\ufffd31m\ufffd\u241b]52;c;eA==\u2407'
        '\ufffd\ufffd\\" agent=999 x=\\""')


def display_safe(raw):
    """No C0 but newlines, no DEL, no C1, no bidi control; strict UTF-8."""
    text = raw.decode('utf-8')  # raises on invalid UTF-8
    for ch in text:
        c = ord(ch)
        if ch == '\n':
            continue
        if c < 0x20 or c == 0x7f or 0x80 <= c <= 0x9f:
            return 'control %#x' % c
        if c in (0x61c, 0x200e, 0x200f) or 0x202a <= c <= 0x202e or \
                0x2066 <= c <= 0x2069:
            return 'bidi control %#x' % c
    return None


def main():
    col = Collector(tcp=True).start()
    try:
        a = FakeAgent(col.url, service=HOSTILE)
        a.connect()
        a.send([ev_string(1, 1, b'job\x9b\x1b')] +
               batch_events(now_ns(), 1, 1, [1], label=0))
        a.wait_ack()
        a.goodbye()
        check(col.stop() == 0, 'clean exit')
        with open(col.errpath, 'rb') as f:
            raw = f.read()
        problem = display_safe(raw)
        check(problem is None, 'log is display-safe: %s\n%r' % (problem, raw))
        # Bytes 0x80-0xbf are legitimate inside UTF-8 sequences (the
        # picture of ESC, U+241B, ends in 0x9b): C1 is checked as code
        # points, by display_safe() and here.
        check(b'\x1b' not in raw and b'\x07' not in raw, 'no ESC or BEL')
        text = raw.decode('utf-8')
        for ch in ('\x9b', '\x9c', '\x9d', '\u202e'):
            check(ch not in text, '%r not in the log' % ch)
        line = [l for l in text.splitlines() if 'agent connected' in l]
        check(len(line) == 1, 'one connect line: %r' % text)
        check(' service=' + SAFE + ' ' in line[0],
              'service quoted and escaped: %r' % line[0])
        # Parsed as key=value pairs (quoted values with backslash
        # escapes), the line has its own keys only.
        pairs = re.findall(r' (\w+)=("(?:[^"\\]|\\.)*"|[^ "]\S*)',
                           line[0])
        check([k for k, _ in pairs] ==
              ['peer', 'conn', 'agent', 'service', 'pid', 'version',
               'next_seq', 'proof'] and
              dict(pairs)['agent'] == '1', 'no forged pair: %r' % pairs)
        # The store keeps what was sent; readers sanitize on display.
        check(col.query('SELECT CAST(service AS BLOB) FROM agents') ==
              [(HOSTILE,)], 'service stored as sent')
        print('log: hostile service name escaped')
    finally:
        col.cleanup()


if __name__ == '__main__':
    main()
