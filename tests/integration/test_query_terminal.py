"""`taskwatch query` table output on a real terminal (a pty of a given
width): tasks stored by a live collector carry escape sequences, C1 and
bidi controls, wide characters and very long errors; every line printed
must be free of control bytes and fit the terminal, in UTF-8 and in a
non-UTF-8 locale (pure ASCII then), and `query show` must be as clean.
"""
import os
import pty
import struct
import subprocess
import sys
import termios
import fcntl
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import (  # noqa: E402
    Collector, FakeAgent, batch_events, check, ev_string, now_ns)

BIN = os.environ['TASKWATCH_BIN']

NAMES = [b'write_notification',
         b'\xe9\x80\x81\xe4\xbf\xa1_email\x1b[2J',          # 送信_email + ESC
         b'write_log\xc2\x9b31m\xe2\x80\xaeevil']             # C1 CSI, RLO
LABEL = b'POST /x\x1b]52;c;aGVsbG8=\x07'


def run_in_pty(args, cols, lang):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, cols, 0, 0))
    env = dict(os.environ, LANG=lang, LC_ALL=lang, TZ='UTC0')
    proc = subprocess.Popen([BIN, 'query'] + args, stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b''
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    err = proc.communicate(timeout=30)[1]
    check(proc.returncode == 0, 'exit %d: %r' % (proc.returncode, err))
    return out


def width(line):
    w = 0
    for ch in line:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ('W', 'F') else 1
    return w


def check_clean(out, cols, ascii_only):
    text = out.decode('utf-8')  # must be valid UTF-8
    lines = text.replace('\r\n', '\n').split('\n')
    for line in lines:
        for ch in line:
            o = ord(ch)
            check(o >= 0x20 and o != 0x7f and not 0x80 <= o <= 0x9f,
                  'control %r in %r' % (ch, line))
            check(not 0x202a <= o <= 0x202e and not 0x2066 <= o <= 0x2069,
                  'bidi control in %r' % line)
            if ascii_only:
                check(o < 0x80, 'non-ASCII %r in %r' % (ch, line))
        if cols:
            check(width(line) <= cols, 'line of %d columns in %d: %r' %
                  (width(line), cols, line))
    return [x for x in lines if x]


def main():
    col = Collector().start()
    try:
        t = now_ns()
        a = FakeAgent(col.url, service=b'api\x1b[31m')
        a.connect()
        evs = [ev_string(t, i + 1, n) for i, n in enumerate(NAMES)]
        evs += [ev_string(t, 4, LABEL)]
        for b in range(1, 6):
            evs += batch_events(t + b * 10**6, b, b * 10, [1, 2, 3], label=4,
                                fail_at=1 if b % 2 else None)
        a.send(evs)
        a.wait_ack()
        db = col.db
        for cols in (80, 100, 132, 200):
            out = run_in_pty(['--db', db], cols, 'C.UTF-8')
            lines = check_clean(out, cols, False)
            check(len(lines) == 1 + 15, '%d lines at %d columns' %
                  (len(lines), cols))
        out = run_in_pty(['--db', db, '--status', 'failed'], 200, 'C.UTF-8')
        text = out.decode()
        check('\u241b[2J' in text, 'ESC shown as a picture: %r' % text)
        check('\u9001\u4fe1_email' in text, 'wide characters kept')
        lines = check_clean(run_in_pty(['--db', db], 100, 'C'), 100, True)
        check(len(lines) == 16, 'ASCII table rows')
        ids = subprocess.run(
            [BIN, 'query', '--db', db, '-o', 'csv', '--status', 'failed'],
            capture_output=True, check=True).stdout.decode().split('\r\n')
        task_id = ids[1].split(',')[0]
        for lang, ascii_only in (('C.UTF-8', False), ('C', True)):
            out = run_in_pty(['show', '--db', db, task_id], 100, lang)
            lines = check_clean(out, 0, ascii_only)
            check(any('FAILED' in x for x in lines), 'timeline %r' % lines)
            out = run_in_pty(['stats', '--db', db, '--by', 'name'], 0, lang)
            check_clean(out, 0, ascii_only)
        a.goodbye()
    finally:
        col.cleanup()
    print('ok')


if __name__ == '__main__':
    main()
