"""TLS (docs/tls.md) between a real `taskwatch demo` and a real collector,
with certificates made at test time (tls_pki.py): server-auth TLS; a wrong
CA; a certificate for another host; an expired certificate; reloads of the
certificate on SIGHUP (a new CA admitted, the old refused, a broken file
leaving the loaded one in use); a plaintext client on a TLS port and a TLS
client on a plaintext port; mutual TLS with the client certificate's
subject stored, and without a client certificate; plaintext listeners on
addresses other hosts can reach refused unless --allow-plaintext.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403
from tls_pki import Pki  # noqa: E402

BATCHES = 20
def collector(*args, tls=True, tmp=None, db=None):
    col = Collector(*args, tmp=tmp, db=db)
    col.listen = 'tls://127.0.0.1:0' if tls else 'tcp://127.0.0.1:0'
    return tracked(col).start()


def demo(url, service, ca=None, cert=None, key=None, timeout_s=2,
         batches=BATCHES, rate=0):
    env = dict(os.environ)
    for name, value in (('TASKWATCH_TLS_CA', ca), ('TASKWATCH_TLS_CERT', cert),
                        ('TASKWATCH_TLS_KEY', key)):
        env.pop(name, None)
        if value:
            env[name] = value
    proc = subprocess.run(
        [os.environ['TASKWATCH_BIN'], 'demo', '--collector', url, '--batches',
         str(batches), '--service', service, '--flush-timeout',
         '%ds' % timeout_s] + (['--rate', str(rate)] if rate else []),
        env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=60)
    return proc.returncode


def stored(col, service):
    return col.query("SELECT count(*) FROM tasks t JOIN agents a ON a.id = "
                     "t.agent WHERE a.service = ?", (service,))[0][0]


def wait_log(col, pattern, after=0, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, col.log()[after:])
        if m:
            return m
        time.sleep(0.02)
    raise AssertionError('no %r in the log: %s' % (pattern, col.log()[after:]))


def refused(col, url, service, why, **kw):
    """The demo cannot deliver, the collector logs one failed handshake."""
    mark = len(col.log())
    check(demo(url, service, **kw) != 0, '%s: the demo did not deliver' %
          service)
    check(stored(col, service) == 0, '%s: nothing stored' % service)
    m = wait_log(col, r'TLS handshake failed peer=\S+ conn=\d+ reason="([^"]*)"',
                 mark)
    check(why in m.group(1), '%s: reason %r in %r' % (service, why,
                                                      m.group(1)))


def server_auth_and_reload(tmp):
    pki = Pki(tmp)
    pki.ca('ca1')
    pki.ca('ca2')
    good = pki.leaf('collector', 'ca1', san='IP:127.0.0.1,DNS:localhost')
    elsewhere = pki.leaf('elsewhere', 'ca1', san='DNS:collector.invalid')
    expired = pki.leaf('expired', 'ca1', san='IP:127.0.0.1', expired=True)
    renewed = pki.leaf('renewed', 'ca2', san='IP:127.0.0.1')
    cert, key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')

    def install(pair):
        shutil.copy(pair[0], cert)
        shutil.copy(pair[1], key)

    install(good)
    col = collector('--tls-cert', cert, '--tls-key', key, tmp=tmp)
    ca1, ca2 = pki.path('ca1.pem'), pki.path('ca2.pem')
    check(demo(col.url, 'good', ca=ca1) == 0, 'server-auth TLS delivered')
    check(stored(col, 'good') == BATCHES * 3, 'its tasks stored')
    check(re.search(r'agent connected .*service="good".* tls=TLSv1\.3',
                    col.log()), 'TLS 1.3 agreed and logged')
    check(col.query("SELECT tls_subject FROM agents WHERE service = 'good'")
          == [(None,)], 'no client certificate, no subject')
    # Many chunks: more than the agent keeps in flight over TLS at once
    # (paced, so that the demo's rings keep up: unpaced they drop over any
    # transport).
    check(demo(col.url, 'bulk', ca=ca1, batches=20000, timeout_s=60,
               rate=10000) == 0, 'a bulk demo over TLS delivered')
    # Under load the demo's rings may still drop (counted, HEALTH): every
    # event it recorded is stored, none lost on the way.
    rows = col.query("SELECT events, dropped FROM agents WHERE service = "
                     "'bulk'")
    check(len(rows) == 1 and rows[0][0] + rows[0][1] >= 20000 * 10 and
          rows[0][0] > 20000, 'every event stored or counted: %r' % rows)
    # The agent trusts the system's store by default: not this CA.
    refused(col, col.url, 'system-store', 'unknown ca')
    refused(col, col.url, 'wrong-ca', 'unknown ca', ca=ca2)

    def reload(pair, outcome='tls=reloaded'):
        mark = len(col.log())
        if pair:
            install(pair)
        col.proc.send_signal(signal.SIGHUP)
        wait_log(col, 'reloaded on SIGHUP tokens=none ' + outcome, mark)

    reload(elsewhere)
    refused(col, col.url, 'wrong-host', 'bad certificate', ca=ca1)
    reload(expired)
    refused(col, col.url, 'expired', 'certificate expired', ca=ca1)
    reload(renewed)
    check(demo(col.url, 'renewed', ca=ca2) == 0, 'the new CA after SIGHUP')
    check(stored(col, 'renewed') == BATCHES * 3, 'stored after reload')
    refused(col, col.url, 'old-ca', 'unknown ca', ca=ca1)
    with open(cert, 'w') as f:
        f.write('not a certificate\n')
    mark = len(col.log())
    reload(None, 'tls=kept')
    check('reload failed what=tls' in col.log()[mark:], 'broken file logged')
    check(demo(col.url, 'kept', ca=ca2) == 0, 'the loaded one stays in use')
    check(col.stop() == 0, 'clean exit')
    line = [l for l in col.log().splitlines() if 'stopped events=' in l][0]
    # Each refused demo retried (with backoff) until its flush timed out.
    failures = int(re.search(r' tls_failures=(\d+) ', line).group(1))
    check(' tls_handshakes=4 ' in line and failures >= 6,
          'handshakes counted: %s' % line)


def wrong_transports(tmp):
    pki = Pki(tmp)
    pki.ca('ca')
    cert, key = pki.leaf('collector', 'ca', san='IP:127.0.0.1')
    col = collector('--tls-cert', cert, '--tls-key', key, tmp=tmp)
    # A plaintext agent on the TLS port.
    s = connect('tcp://' + col.url[6:])
    s.sendall(hello(os.urandom(16)))
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    m = wait_log(col, r'TLS handshake failed peer=\S+ conn=\d+ reason="([^"]*)"')
    check(m.group(1) in ('wrong version number', 'packet length too long',
                         'record layer failure'),
          'a plaintext HELLO fails the handshake: %r' % m.group(1))
    # A TLS agent on a plaintext port.
    plain = collector(tls=False, tmp=tmp, db=os.path.join(tmp, 'plain.db'))
    check(demo('tls://' + plain.url[6:], 'tls-on-plain',
               ca=pki.path('ca.pem')) != 0, 'a TLS agent on a plaintext port')
    wait_log(plain, r'reason="TLS handshake on a plaintext listener')


def mutual(tmp):
    pki = Pki(tmp)
    pki.ca('ca')
    pki.ca('clients')
    cert, key = pki.leaf('collector', 'ca', san='IP:127.0.0.1')
    client = pki.leaf('agent-1', 'clients', client=True)
    stranger = pki.leaf('stranger', 'ca', client=True)
    col = collector('--tls-cert', cert, '--tls-key', key, '--tls-client-ca',
                    pki.path('clients.pem'), tmp=tmp)
    ca = pki.path('ca.pem')
    check(demo(col.url, 'mutual', ca=ca, cert=client[0], key=client[1]) == 0,
          'mutual TLS delivered')
    rows = col.query("SELECT tls_subject FROM agents WHERE service = "
                     "'mutual'")
    check(rows == [('CN=agent-1,O=taskwatch-test',)],
          'the client certificate subject stored %r' % rows)
    check('subject="CN=agent-1,O=taskwatch-test"' in col.log(),
          'and logged')
    refused(col, col.url, 'no-client-cert', 'certificate', ca=ca)
    refused(col, col.url, 'stranger', 'certificate verify failed', ca=ca,
            cert=stranger[0], key=stranger[1])


def plaintext_refusal(tmp):
    db = os.path.join(tmp, 'refused.db')
    proc = subprocess.run([os.environ['TASKWATCH_BIN'], 'collector', '--db',
                           db, '--listen', 'tcp://0.0.0.0:0'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=10)
    err = proc.stderr.decode()
    check(proc.returncode == 2 and 'plaintext on an address other hosts '
          'can reach' in err and len(err.strip().splitlines()) == 1,
          'non-loopback plaintext refused: %d %r' % (proc.returncode, err))
    check(not os.path.exists(db), 'nothing created')
    col = Collector('--allow-plaintext', tmp=tmp)
    col.listen = 'tcp://0.0.0.0:0'
    tracked(col).start()
    check(col.stop() == 0, '--allow-plaintext starts')


def main():
    run_parts((server_auth_and_reload, wrong_transports, mutual,
               plaintext_refusal), 'twtls-')


if __name__ == '__main__':
    main()
