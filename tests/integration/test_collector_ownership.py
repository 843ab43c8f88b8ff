"""Instance ownership and per-service tokens (docs/collector.md,
"Authentication").

The attack: while a real `taskwatch demo` streams, a peer holding a valid
token reads the demo's instance id (and even its public key) from
agents.instance / agents.auth_key and says HELLO with it, then sends forged
FAIL, FINISH, DROP and HEALTH events: as a version 1 agent without a key,
with a key of its own (and a valid proof of that key), with the demo's key
(and a proof it cannot make), and with the demo's key and no proof at all.
Each is refused with a logged reason; nothing of it is stored; the demo's
connection is untouched (connected once, never replaced) and every one of
its batches is stored. After a restart the stored key still refuses them.

Then the token file: a token that may speak for some services only, and a
reload on SIGHUP (a new token admitted, a removed one refused, a connected
agent kept, a broken file leaving the old tokens in use); and
--require-proof refusing version 1 agents while admitting proven ones.
"""
import os
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_collector_util import *  # noqa: E402,F403

def collector(*args, **kw):
    return tracked(Collector(*args, **kw))

PROOF, CHALLENGE = 102, 303
PROOF_CONTEXT = b'taskwatch instance proof v2\0'
BATCHES = 3000
DEMO_TOKEN = b'demo-token-0123456789'
WIDE_TOKEN = b'wide-token-9876543210'  # any service: an insider's token
OTHER_TOKEN = b'other-token-555'       # service "other" only
NEW_TOKEN = b'new-token-777'


class Key:
    """An Ed25519 key made and used with the openssl tool, as an attacker
    with its own key would."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, 'key-%s.pem' % os.urandom(4).hex())
        subprocess.run(['openssl', 'genpkey', '-algorithm', 'ed25519',
                        '-out', self.path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        der = subprocess.run(['openssl', 'pkey', '-in', self.path, '-pubout',
                              '-outform', 'DER'], check=True,
                             stdout=subprocess.PIPE).stdout
        self.public = der[-32:]

    def sign(self, message):
        path = self.path + '.msg'
        with open(path, 'wb') as f:
            f.write(message)
        return subprocess.run(['openssl', 'pkeyutl', '-sign', '-rawin',
                               '-inkey', self.path, '-in', path],
                              check=True, stdout=subprocess.PIPE).stdout


def hello2(instance, service, token, key):
    """A version 2 HELLO (version range 1..2) carrying a public key."""
    return frame(HELLO, struct.pack('<IHH', MAGIC, 2, 1) + instance +
                 struct.pack('<Iq', os.getpid(), now_ns()) + s16(service) +
                 s16(b'attacker') + s16(token) + s16(key))


def forged(first_seq):
    """FAIL, FINISH, DROP of the demo's first tasks and a HEALTH claiming
    drops: what must never reach its rows."""
    t = now_ns()
    return events(first_seq, [
        ev_fail(t, 1, b'Forged', b'forged failure', b'forged'),
        ev_finish(t, 2), ev_drop(t, 3, b'forged'),
        ev_health(t, 999999, 999999)])


def read_all(sock):
    """Frames until the collector closes the connection."""
    frames, buf = [], b''
    sock.settimeout(10)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    while len(buf) >= 6:
        length, ftype = struct.unpack('<IH', buf[:6])
        frames.append((ftype, buf[6:4 + length]))
        buf = buf[4 + length:]
    return frames


def error_text(frames):
    for ftype, payload in frames:
        if ftype == ERROR:
            (n,) = struct.unpack('<H', payload[:2])
            return payload[2:2 + n].decode()
    return None


def challenge(sock):
    ftype, payload = read_frame(sock)
    check(ftype == CHALLENGE, 'CHALLENGE after a HELLO with a key: %d %r' %
          (ftype, payload))
    (n,) = struct.unpack('<H', payload[:2])
    check(n == 32, 'a 32-byte nonce')
    return payload[2:2 + n]


def proof(signature):
    return frame(PROOF, s16(signature))


def attack_v1(url, instance):
    s = connect(url)
    s.sendall(hello(instance, service=b'steady', token=WIDE_TOKEN) +
              forged(1))
    return error_text(read_all(s))


def attack_own_key(url, instance, key):
    s = connect(url)
    s.sendall(hello2(instance, b'steady', WIDE_TOKEN, key.public))
    nonce = challenge(s)
    s.sendall(proof(key.sign(PROOF_CONTEXT + instance + nonce)) + forged(1))
    return error_text(read_all(s))


def attack_stolen_key(url, instance, public):
    s = connect(url)
    s.sendall(hello2(instance, b'steady', WIDE_TOKEN, public))
    challenge(s)
    s.sendall(proof(os.urandom(64)) + forged(1))
    return error_text(read_all(s))


def attack_no_proof(url, instance, public):
    s = connect(url)
    s.sendall(hello2(instance, b'steady', WIDE_TOKEN, public) + forged(1))
    return error_text(read_all(s))


def stream(url, done):
    stream_demo(url, done, DEMO_TOKEN, BATCHES, BATCHES // 4)


def write_tokens(path, lines):
    with open(path, 'wb') as f:
        f.write(b'# token  services\n' + b'\n'.join(lines) + b'\n')


def stopped_counter(log, name):
    for line in log.splitlines():
        if 'stopped events=' in line:
            return int(line.split(' %s=' % name)[1].split()[0])
    return None


def the_attack(tmp):
    tokens = os.path.join(tmp, 'tokens')
    write_tokens(tokens, [DEMO_TOKEN + b' steady', WIDE_TOKEN + b' *'])
    col = collector('--token-file', tokens, tcp=True, tmp=tmp)
    col.start()
    done = []
    streamer = threading.Thread(target=stream, args=(col.url, done),
                                daemon=True)
    streamer.start()
    # The demo's instance and key, as whoever reads the store sees them.
    row = None
    deadline = time.time() + 30
    while row is None and time.time() < deadline:
        try:
            rows = col.query("SELECT instance, auth_key FROM agents WHERE "
                             "service = 'steady' AND auth_key IS NOT NULL")
            row = rows[0] if rows else None
        except Exception:  # the store may not exist yet
            pass
        if row is None:
            time.sleep(0.05)
    check(row is not None, 'the demo agent is stored with its key')
    instance, public = bytes(row[0]), bytes(row[1])
    check(len(public) == 32, 'a 32-byte public key')
    check(not done, 'the demo still streams during the attack')
    own = Key(tmp)
    reasons = {
        'v1': attack_v1(col.url, instance),
        'own-key': attack_own_key(col.url, instance, own),
        'stolen-key': attack_stolen_key(col.url, instance, public),
        'no-proof': attack_no_proof(col.url, instance, public),
    }
    check(not done, 'the demo still streamed after the attack')
    want = {
        'v1': 'instance is bound to a key: HELLO without its proof refused',
        'own-key': 'instance is bound to another key',
        'stolen-key': 'proof of instance ownership failed',
        'no-proof': 'expected PROOF',
    }
    for name, reason in want.items():
        check(reasons[name] == reason, '%s: refused with %r, got %r' %
              (name, reason, reasons[name]))
    streamer.join(120)
    check(done and done[0][0] == 0, 'the demo finished: %r' % (done,))
    check_streamed(col, BATCHES)
    rows = col.query("SELECT count(*) FROM tasks WHERE error_type = 'Forged' "
                     "OR drop_reason = 'forged'")
    check(rows == [(0,)], 'nothing forged stored %r' % rows)
    rows = col.query("SELECT dropped, reconnects, ended FROM agents WHERE "
                     "service = 'steady'")
    check(rows == [(0, 0, 1)], 'no forged HEALTH, no reconnect %r' % rows)
    log = col.log()
    connected = [line for line in log.splitlines()
                 if 'agent connected' in line and 'service="steady"' in line]
    check(len(connected) == 1 and 'proof=key' in connected[0],
          'the demo connected once, with its key: %r' % connected)
    for name, reason in want.items():
        check(any('connection closed' in line and reason in line
                  for line in log.splitlines()),
              '%s: one logged line with the reason' % name)
    check(col.stop() == 0, 'clean exit')
    check(stopped_counter(col.log(), 'proof_refused') == 3,
          'proof_refused counts the three refusals')
    # A new run knows the owner from the store alone.
    col.start()
    check(attack_v1(col.url, instance) == want['v1'],
          'after a restart the stored key refuses a HELLO without proof')
    check(col.stop() == 0, 'clean exit after the restart')
    print('ownership: attacks=%d refused=%d demo_tasks_stored=%d' %
          (len(want), len(want), BATCHES * 3))


def expect_refused(url, service, token, reason):
    agent = FakeAgent(url, service=service, token=token)
    try:
        agent.connect()
    except RuntimeError as e:
        check(reason in str(e), '%s with %r: %r' % (service, token, e))
        return
    finally:
        agent.close()
    raise AssertionError('%s with %r was admitted' % (service, token))


def tokens_and_reload(tmp):
    tokens = os.path.join(tmp, 'tokens')
    write_tokens(tokens, [OTHER_TOKEN + b'\tother  second', WIDE_TOKEN])
    col = collector('--token-file', tokens, tmp=tmp)
    col.start()
    expect_refused(col.url, b'steady', OTHER_TOKEN,
                   'the token may not speak for this service')
    kept = FakeAgent(col.url, service=b'other', token=OTHER_TOKEN)
    kept.connect()
    FakeAgent(col.url, service=b'second', token=OTHER_TOKEN).connect()
    FakeAgent(col.url, service=b'steady', token=WIDE_TOKEN).connect()
    expect_refused(col.url, b'other', NEW_TOKEN, 'authentication failed')
    # The new file: OTHER_TOKEN gone, NEW_TOKEN for "steady".
    write_tokens(tokens, [NEW_TOKEN + b' steady', WIDE_TOKEN + b' *'])
    col.proc.send_signal(signal.SIGHUP)
    wait_log(col, 'reloaded on SIGHUP tokens=2')
    expect_refused(col.url, b'other', OTHER_TOKEN, 'authentication failed')
    FakeAgent(col.url, service=b'steady', token=NEW_TOKEN).connect()
    # The agent admitted before the reload keeps its connection.
    kept.send([ev_string(now_ns(), 1, b'still here')])
    check(kept.wait_ack() == kept.next_seq, 'connected agent kept')
    # A broken file: logged, the tokens before stay in use.
    with open(tokens, 'wb') as f:
        f.write(b'x' * 300 + b'\n')
    col.proc.send_signal(signal.SIGHUP)
    wait_log(col, 'reload failed what=tokens')
    FakeAgent(col.url, service=b'steady', token=NEW_TOKEN).connect()
    kept.close()
    check(col.stop() == 0, 'clean exit')
    check(stopped_counter(col.log(), 'auth_refused') == 3,
          'auth_refused counts the three refusals')


def require_proof(tmp):
    col = collector('--require-proof', tmp=tmp)
    col.start()
    s = connect(col.url)
    s.sendall(hello(os.urandom(16)))
    reason = error_text(read_all(s))
    check(reason is not None and 'requires a proof' in reason,
          'a version 1 HELLO refused: %r' % reason)
    key = Key(tmp)
    instance = os.urandom(16)
    s = connect(col.url)
    s.sendall(hello2(instance, b'proven', b'', key.public))
    nonce = challenge(s)
    s.sendall(proof(key.sign(PROOF_CONTEXT + instance + nonce)))
    ftype, payload = read_frame(s)
    check(ftype == WELCOME, 'a proven HELLO welcomed: %d %r' % (ftype,
                                                               payload))
    s.close()
    # The real agent proves its instance too.
    subprocess.run([os.environ['TASKWATCH_BIN'], 'demo', '--collector',
                    col.url, '--batches', '20'], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    check(col.stop() == 0, 'clean exit')
    rows = col.query("SELECT count(*) FROM tasks")
    check(rows == [(60,)], 'the demo admitted under --require-proof %r' %
          rows)


def agents_per_token(tmp):
    tokens = os.path.join(tmp, 'tokens')
    write_tokens(tokens, [OTHER_TOKEN + b' other'])
    col = collector('--token-file', tokens, '--max-agents-per-token', '2',
                    tmp=tmp)
    col.start()
    first = FakeAgent(col.url, service=b'other', token=OTHER_TOKEN)
    first.connect()
    second = FakeAgent(col.url, service=b'other', token=OTHER_TOKEN)
    second.connect()
    expect_refused(col.url, b'other', OTHER_TOKEN,
                   'too many agents connected with this token')
    first.close()
    wait_log(col, 'connection ended')
    FakeAgent(col.url, service=b'other', token=OTHER_TOKEN).connect()
    second.close()
    check(col.stop() == 0, 'clean exit')
    check(stopped_counter(col.log(), 'token_agents_refused') == 1,
          'token_agents_refused counts the refusal')


def wait_log(col, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in col.log():
            return
        time.sleep(0.02)
    raise AssertionError('no %r in the log: %s' % (text, col.log()))


def main():
    run_parts((the_attack, tokens_and_reload, agents_per_token,
               require_proof), 'twown-')


if __name__ == '__main__':
    main()
