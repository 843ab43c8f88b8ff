"""The collector's command line and start-up failures: --help, one-line
reasons with exit 2 for bad arguments, exit 1 with one line for a store
that is not a database, one of a newer schema, a database of another
application (left unchanged), and addresses already in use (TCP, and a
unix socket a live collector holds)."""
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

BIN = os.environ['TASKWATCH_BIN']


def run(*args):
    p = subprocess.run([BIN, 'collector'] + list(args), capture_output=True,
                       timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def one_line(err):
    return len(err.strip().splitlines()) == 1


def main():
    tmp = tempfile.mkdtemp(prefix='twcli-')
    try:
        cases(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('ok')


def foreign(tmp):
    """Another application's database, or a bare user_version, is refused
    with one line and left byte for byte as it was: no tables added, no
    user_version or application_id, no switch to WAL."""
    setups = {
        'app.db': ['CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)',
                   "INSERT INTO users (name) VALUES ('ada')",
                   'PRAGMA user_version = 7'],
        'todo.db': ['CREATE TABLE tasks (id, title)',
                    'CREATE TABLE meta (k, v)'],
        'other-id.db': ['PRAGMA application_id = 42'],
        'bare.db': ['PRAGMA user_version = 99'],
    }
    for name, sql in setups.items():
        path = os.path.join(tmp, name)
        con = sqlite3.connect(path)
        for stmt in sql:
            con.execute(stmt)
        con.commit()
        con.close()
        with open(path, 'rb') as f:
            before = f.read()
        rc, _, err = run('--db', path, '--listen', 'unix:' + tmp + '/f.sock')
        check(rc == 1 and one_line(err) and
              'not a taskwatch store' in err and path in err,
              '%s: %d %r' % (name, rc, err))
        with open(path, 'rb') as f:
            check(f.read() == before, '%s left unchanged' % name)
        for side in ('-wal', '-shm', '-journal'):
            check(not os.path.exists(path + side), '%s: no %s' % (name, side))
        print('refused: %s' % err.strip())


def cases(tmp):
    rc, out, _ = run('--help')
    check(rc == 0 and '--listen' in out and '--token-file' in out, 'help')
    db = os.path.join(tmp, 'x.db')
    for args in (['--bogus'], ['--max-connections', '0'],
                 ['--max-connections', '12x'], ['--sync', 'sometimes'],
                 ['--lost-after', '-1'], ['--log-level', 'loud'],
                 ['--listen', 'http://x'], ['--db'], ['stray'],
                 ['--retain-days', 'nan']):
        rc, _, err = run('--db', db, *args) if args[0] != '--db' else \
            run(*args)
        check(rc == 2 and one_line(err), '%r: exit 2, one line (%d %r)' %
              (args, rc, err))
    # The URL parser's own reasons, and tls:// without its certificate.
    for url, why in (('tls://127.0.0.1:7461',
                      'needs --tls-cert FILE and --tls-key FILE'),
                     ('tls://127.0.0.1', 'missing :PORT'),
                     ('tcp://127.0.0.1:70000', 'port out of range'),
                     ('tcp://::1:7460', 'IPv6 address goes in brackets'),
                     ('unix:run/c.sock', 'path must be absolute')):
        rc, _, err = run('--db', db, '--listen', url)
        check(rc == 2 and one_line(err) and why in err,
              '--listen %s: exit 2 naming the reason (%d %r)' % (url, rc, err))
    junk = os.path.join(tmp, 'junk.db')
    with open(junk, 'wb') as f:
        f.write(os.urandom(4096))
    rc, _, err = run('--db', junk, '--listen', 'unix:' + tmp + '/j.sock')
    check(rc == 1 and one_line(err) and 'not a database' in err,
          'junk store: %d %r' % (rc, err))
    # A store of a later version: it carries the application_id.
    newer = os.path.join(tmp, 'later.db')
    con = sqlite3.connect(newer)
    con.execute('PRAGMA application_id = 1953985396')
    con.execute('PRAGMA user_version = 99')
    con.close()
    rc, _, err = run('--db', newer, '--listen', 'unix:' + tmp + '/n.sock')
    check(rc == 1 and one_line(err) and 'is newer than' in err,
          'newer schema: %d %r' % (rc, err))
    foreign(tmp)
    rc, _, err = run('--db', db, '--token-file', tmp + '/missing')
    check(rc == 1 and one_line(err), 'missing token file: %r' % err)

    # --sync full: the same behaviour, every commit on disk before its ack.
    col = Collector('--sync', 'full', tmp=tmp, db=os.path.join(tmp, 'f.db'))
    col.start()
    try:
        a = FakeAgent(col.url)
        a.connect()
        a.send([ev_string(1, 1, b'job')] +
               batch_events(now_ns(), 1, 1, [1, 1], label=0))
        a.goodbye()
        check(col.query('SELECT count(*) FROM tasks WHERE status = 2') ==
              [(2,)], 'stored with --sync full')
    finally:
        check(col.stop() == 0, 'clean exit')

    col = Collector(tcp=True, tmp=tmp)
    col.start()
    try:
        port_url = col.url
        rc, _, err = run('--db', os.path.join(tmp, 'y.db'), '--listen',
                         port_url)
        check(rc == 1 and 'cannot listen' in err and one_line(err),
              'TCP port in use: %d %r' % (rc, err))
    finally:
        col.stop()
    col = Collector(tmp=tmp)
    col.start()
    try:
        rc, _, err = run('--db', os.path.join(tmp, 'z.db'), '--listen',
                         col.url)
        check(rc == 1 and 'cannot listen' in err,
              'unix socket in use: %d %r' % (rc, err))
        check(os.path.exists(col.sock_path), 'the live socket stays')
        a = FakeAgent(col.url)
        a.connect()
        a.goodbye()
    finally:
        col.stop()


if __name__ == '__main__':
    main()
