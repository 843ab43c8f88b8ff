"""Helpers for the collector's integration tests: a fake agent that speaks
the wire protocol (docs/protocol.md) with struct, and a collector process
on a private unix socket or an ephemeral TCP port.

Not a test itself; the test_collector_*.py scripts import it.
"""
import os
import re
import shutil
import signal
import sys
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time

from twtest import check, check_unmatched, wait_until  # noqa: F401

HELLO, GOODBYE, EVENTS, WELCOME, ACK, ERROR = 100, 101, 200, 300, 301, 302
FLUSH = 103
MAGIC = 0x31505754


def frame(ftype, payload):
    return struct.pack('<IH', len(payload) + 2, ftype) + payload


def s16(b):
    return struct.pack('<H', len(b)) + b


def hello(instance, pid=1, started=0, service=b'svc', host=b'host',
          token=b''):
    return frame(HELLO, struct.pack('<IH', MAGIC, 1) + instance +
                 struct.pack('<Iq', pid, started) + s16(service) +
                 s16(host) + s16(token))


def goodbye(last_seq):
    return frame(GOODBYE, struct.pack('<Q', last_seq))


def flush(last_seq):
    """FLUSH (version 5 on): ack the events up to last_seq soon."""
    return frame(FLUSH, struct.pack('<Q', last_seq))


def events(first_seq, evs):
    return frame(EVENTS, struct.pack('<QI', first_seq, len(evs)) +
                 b''.join(evs))


# The fixed layout of each event kind after its kind and time (versions 1
# to 3): integers by struct code, 's' a u16-counted string, 'l' a
# u32-counted one (docs/protocol.md).
FIXED_LAYOUT = {1: 'Is', 2: 'QI', 3: 'QQIIBQ', 4: 'QQ', 5: 'Q', 6: 'Qssl',
                7: 'QQ', 8: 'Qs', 9: 'QQQQ', 10: 'Qs'}


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def compact_events(first_seq, evs):
    """An EVENTS frame of version 4 (the compact encoding) of events built
    by the ev_* helpers in the fixed one: an encoder of the test's own,
    written from docs/protocol.md."""
    out = []
    base = struct.unpack_from('<q', evs[0], 1)[0] if evs else 0
    for ev in evs:
        kind, t = struct.unpack_from('<Bq', ev)
        d = (t - base) & 0xffffffffffffffff
        zz = ((d << 1) ^ (0xffffffffffffffff if d >> 63 else 0)) & \
            0xffffffffffffffff
        body, at = bytearray([kind]) + varint(zz), 9
        layout = FIXED_LAYOUT[kind]
        if kind == 9:  # HEALTH: two counters, four from version 3 on
            layout = 'Q' * ((len(ev) - 9) // 8)
        for code in layout:
            if code in 'sl':
                size = 2 if code == 's' else 4
                n = int.from_bytes(ev[at:at + size], 'little')
                body += ev[at:at + size + n]
                at += size + n
            elif code == 'B':
                body += ev[at:at + 1]
                at += 1
            else:
                size = struct.calcsize('<' + code)
                body += varint(struct.unpack_from('<' + code, ev, at)[0])
                at += size
        assert at == len(ev), 'event %r has bytes past its layout' % ev
        out.append(bytes(body))
    return frame(EVENTS, struct.pack('<QIq', first_seq, len(evs), base) +
                 b''.join(out))


def ev_string(t, sid, text):
    return struct.pack('<BqI', 1, t, sid) + s16(text)


def ev_batch(t, batch, label):
    return struct.pack('<BqQI', 2, t, batch, label)


def ev_enqueue(t, task, batch, pos, name, mode=1, thread=7):
    return struct.pack('<BqQQIIBQ', 3, t, task, batch, pos, name, mode,
                       thread)


def ev_start(t, task, thread=8):
    return struct.pack('<BqQQ', 4, t, task, thread)


def ev_finish(t, task):
    return struct.pack('<BqQ', 5, t, task)


def ev_fail(t, task, etype, msg, detail):
    return (struct.pack('<BqQ', 6, t, task) + s16(etype) + s16(msg) +
            struct.pack('<I', len(detail)) + detail)


def ev_skip(t, task, cause):
    return struct.pack('<BqQQ', 7, t, task, cause)


def ev_drop(t, task, reason):
    return struct.pack('<BqQ', 8, t, task) + s16(reason)


def ev_health(t, dropped, reconnects):
    return struct.pack('<BqQQ', 9, t, dropped, reconnects)


def now_ns():
    return time.time_ns()


def connect(url, timeout=10):
    if url.startswith('unix:'):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(url[5:])
    else:
        host, port = url[6:].rsplit(':', 1)
        s = socket.create_connection((host, int(port)), timeout=timeout)
    return s


def read_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError('connection closed after %d of %d bytes' %
                           (len(buf), n))
        buf += chunk
    return buf


def read_frame(sock):
    length, ftype = struct.unpack('<IH', read_exact(sock, 6))
    return ftype, read_exact(sock, length - 2)


class FakeAgent:
    """One agent instance; events are numbered from WELCOME's next_seq."""

    def __init__(self, url, instance=None, service=b'svc', token=b'',
                 started=None):
        self.url = url
        # When the instance started (ns): none of its events is older.
        self.started = started
        self.instance = instance or os.urandom(16)
        self.service = service
        self.token = token
        self.sock = None
        self.next_seq = None
        self.acked = 0
        # The last ACK's hold_ms (version 6 on; None before).
        self.hold_ms = None

    def connect(self):
        self.sock = connect(self.url)
        self.sock.sendall(hello(self.instance, pid=os.getpid(),
                                started=self.started or now_ns(),
                                service=self.service,
                                token=self.token))
        ftype, payload = read_frame(self.sock)
        if ftype != WELCOME:
            raise RuntimeError('expected WELCOME, got %d %r' %
                               (ftype, payload))
        _, self.next_seq, _ = struct.unpack('<HQI', payload)
        self.acked = self.next_seq
        return self.next_seq

    def send(self, evs, first_seq=None):
        seq = self.next_seq if first_seq is None else first_seq
        self.sock.sendall(events(seq, evs))
        self.next_seq = max(self.next_seq, seq + len(evs))

    def wait_ack(self, upto=None):
        upto = self.next_seq if upto is None else upto
        while self.acked < upto:
            ftype, payload = read_frame(self.sock)
            if ftype != ACK:
                raise RuntimeError('expected ACK, got %d %r' %
                                   (ftype, payload))
            self.acked = struct.unpack_from('<Q', payload)[0]
            if len(payload) >= 12:
                self.hold_ms = struct.unpack_from('<I', payload, 8)[0]
        return self.acked

    def goodbye(self):
        """GOODBYE once every event is acked; returns when the GOODBYE is
        acked too (the clean end committed). Waiting for the events first
        keeps their ACK from being taken for the GOODBYE's: both carry the
        same next_seq."""
        self.wait_ack()
        self.sock.sendall(goodbye(self.next_seq - 1))
        ftype, payload = read_frame(self.sock)
        if ftype != ACK:
            raise RuntimeError('expected ACK of GOODBYE, got %d %r' %
                               (ftype, payload))
        self.sock.close()
        self.sock = None

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


def batch_events(t, batch, first_task, name_ids, label=1, fail_at=None):
    """A whole batch: BATCH, then per task ENQUEUE START FINISH (or FAIL,
    and SKIP for the tasks after a failure)."""
    evs = [ev_batch(t, batch, label)]
    for i, name in enumerate(name_ids):
        evs.append(ev_enqueue(t + 1, first_task + i, batch, i, name))
    failed = None
    for i, _ in enumerate(name_ids):
        task = first_task + i
        if failed is not None:
            evs.append(ev_skip(t + 10 + i, task, failed))
            continue
        evs.append(ev_start(t + 2000 + i * 1000, task))
        if fail_at == i:
            evs.append(ev_fail(t + 2500 + i * 1000, task, b'SMTPError',
                               b'connection refused', b'Traceback ...'))
            failed = task
        else:
            evs.append(ev_finish(t + 2900 + i * 1000, task))
    return evs


class Collector:
    """A collector process with a fresh temp dir, database and socket."""

    def __init__(self, *extra, tcp=False, db=None, tmp=None, log_level='info'):
        self.bin = os.environ['TASKWATCH_BIN']
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix='twcol-')
        self.db = db or os.path.join(self.tmp, 'store.db')
        self.sock_path = os.path.join(self.tmp, 'col.sock')
        self.listen = 'tcp://127.0.0.1:0' if tcp else 'unix:' + self.sock_path
        self.extra = list(extra)
        self.log_level = log_level
        self.proc = None
        self.url = None

    def start(self):
        self.errpath = os.path.join(self.tmp, 'collector-%d.log' %
                                    int(time.time() * 1000))
        self.err = open(self.errpath, 'wb')
        self.proc = subprocess.Popen(
            [self.bin, 'collector', '--db', self.db, '--listen', self.listen,
             '--log-level', self.log_level] + self.extra,
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r'listening url=(\S+)', self.log())
            if m:
                self.url = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError('collector exited: ' + self.log())
            time.sleep(0.02)
        raise RuntimeError('collector did not start: ' + self.log())

    def log(self):
        with open(self.errpath, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.err.close()
        if rc != 0:
            # Most callers expect 0: the log's end says why it was not.
            sys.stderr.write('collector exited %d; its log ends:\n%s\n' %
                             (rc, '\n'.join(self.log().splitlines()[-8:])))
        check_unmatched(self.log())
        return rc

    def query(self, sql, args=()):
        con = sqlite3.connect('file:%s?mode=ro' % self.db, uri=True,
                              timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def query_until(self, sql, args=(), want=None, within=5.0):
        """The rows of sql once they equal want, or after `within` seconds
        (the caller checks them). A task still queued or running is held
        in the collector's memory and reaches tasks a quarter of a second
        after its events (docs/collector.md, "Tasks in flight"); the bound
        leaves room for a loaded machine."""
        deadline = time.time() + within
        while True:
            rows = self.query(sql, args)
            if rows == want or time.time() >= deadline:
                return rows
            time.sleep(0.02)

    def __enter__(self):
        """Starts the collector for a `with` block, which cleans up after
        it (cleanup()) however it ends; so does a start that fails."""
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.err.close()
            self.proc = None
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


STARTED = []  # collectors of run_parts(), killed whatever happened


def tracked(col):
    """col, to be cleaned up when its part of run_parts() ends."""
    STARTED.append(col)
    return col


def run_parts(parts, prefix):
    """Runs each part(tmp) in a temporary directory of its own, then kills
    its tracked collectors and removes the directory, pass or fail."""
    for part in parts:
        tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            part(tmp)
            print('%s: %s ok' % (prefix.strip('-'), part.__name__))
        finally:
            for col in STARTED:
                col.cleanup()
            del STARTED[:]
            shutil.rmtree(tmp, ignore_errors=True)


def stream_demo(url, done, token, batches, rate, service='steady'):
    """The real agent: `taskwatch demo` failing every 10th batch, paced at
    rate batches/s; appends (exit status, output) to done."""
    env = dict(os.environ, TASKWATCH_TOKEN=token.decode())
    proc = subprocess.run(
        [os.environ['TASKWATCH_BIN'], 'demo', '--collector', url,
         '--batches', str(batches), '--fail-every', '10', '--rate',
         str(rate), '--service', service],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=100)
    done.append((proc.returncode, proc.stdout.decode('utf-8', 'replace')))


def check_streamed(col, batches, service='steady'):
    """Every task of stream_demo()'s batches is stored: three a batch, and
    of every 10th batch one failed and one skipped."""
    rows = col.query("SELECT count(*), sum(status = 2), sum(status = 3), "
                     "sum(status = 4) FROM tasks t JOIN agents a ON a.id = "
                     "t.agent WHERE a.service = ?", (service,))
    check(rows == [(batches * 3, batches * 3 - batches // 5, batches // 10,
                    batches // 10)], 'every streamed task stored %r' % rows)


def peak_rss_kib(pid):
    """The process's peak resident memory (VmHWM), in KiB."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise RuntimeError('no VmHWM for %d' % pid)


def no_asan_quarantine():
    """Under AddressSanitizer freed memory waits in a 256 MiB quarantine,
    which would hide what a collector started after this keeps."""
    opts = os.environ.get('ASAN_OPTIONS', '')
    os.environ['ASAN_OPTIONS'] = (opts + ':' if opts else '') + \
        'quarantine_size_mb=0'
