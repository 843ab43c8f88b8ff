"""The metrics endpoint as a client sees it, at its default limits: the
answers to good and bad requests (200, HEAD, 404, 405, 400, 413, 414,
431), the 10 s limit on a client that does not finish its request (408)
or sends nothing (closed), at most 16 connections (the next gets 503),
ingest going on at full speed while every slot is held by slow clients,
the answers counted in the metrics, and the one-line errors of a bad
--metrics-listen.
"""

import os
import socket
import subprocess
import time

import twtest

TIMEOUT = 10.0  # HTTP_TIMEOUT_MS
SLOTS = 16      # HTTP_MAX_CONNECTIONS


def exchange(port, data, read=True):
    """Sends data on a new connection; returns the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def status(answer):
    return int(answer.split(b" ", 2)[1])


def answers(port):
    get = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(get) == 200, get[:200]
    head, body = get.split(b"\r\n\r\n", 1)
    assert b"Content-Type: text/plain; version=0.0.4" in head, head
    assert b"Connection: close" in head, head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length == len(body) and body.startswith(b"# HELP"), head
    head_only = exchange(port, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
    assert status(head_only) == 200 and head_only.endswith(b"\r\n\r\n")
    assert status(exchange(port, b"GET / HTTP/1.0\r\n\r\n")) == 200
    assert status(exchange(port, b"GET /nope HTTP/1.1\r\n\r\n")) == 404
    post = exchange(port, b"POST /metrics HTTP/1.1\r\n\r\n")
    assert status(post) == 405 and b"Allow: GET, HEAD" in post, post
    assert status(exchange(port, b"\x16\x03\x01 hello\r\n\r\n")) == 400
    assert status(exchange(port, b"GET /metrics HTTP/1.1\r\n"
                                 b"Content-Length: 3\r\n\r\nabc")) == 413
    assert status(exchange(port, b"GET /" + b"a" * 2000 +
                           b" HTTP/1.1\r\n\r\n")) == 414
    big = b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"b" * 9000 + b"\r\n\r\n"
    assert status(exchange(port, big)) == 431


def slow_clients(col, port):
    """Every slot held by clients that never finish (half of them send a
    part of a request, half nothing): the 17th connection gets 503 at
    once, ingest and commits go on, and after 10 s the slow ones get 408
    (or are closed) and the endpoint answers again."""
    held = []
    t0 = time.monotonic()
    for i in range(SLOTS):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if i % 2 == 0:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: ")
        held.append(s)
    extra = exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert status(extra) == 503, extra[:100]
    # Ingest does not wait for the endpoint.
    twtest.run(["demo", "--collector", col.url, "--batches", "300",
                "--fail-every", "10"])
    assert len(twtest.query_json(col.db)) == 900
    for i, s in enumerate(held):
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        waited = time.monotonic() - t0
        assert waited >= TIMEOUT - 0.5, waited
        if i % 2 == 0:
            assert status(got) == 408, got[:100]
        else:
            assert got == b"", got[:100]
        s.close()
    m = exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert status(m) == 200
    text = m.decode()
    assert 'taskwatch_tasks_total{service="demo",task="write_log",' \
        'status="skipped"} 30' in text, text[:500]
    return text


def counted(text, code, at_least):
    line = 'taskwatch_http_requests_total{code="%d"} ' % code
    value = int(text.split(line)[1].split("\n")[0])
    assert value >= at_least, (code, value)


def bad_listen(tmp):
    db = os.path.join(tmp, "bad.db")
    p = subprocess.run([twtest.BIN, "collector", "--db", db,
                        "--metrics-listen", "0.0.0.0:9100"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p
    assert "invalid --metrics-listen '0.0.0.0:9100': expected " \
        "tcp://HOST:PORT" in p.stderr, p.stderr
    assert not os.path.exists(db)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = subprocess.run([twtest.BIN, "collector", "--db", db, "--listen",
                            "tcp://127.0.0.1:0",
                            "--metrics-listen", "tcp://127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p
    assert "cannot listen url=tcp://127.0.0.1:%d error=\"address already " \
        "in use\"" % port in p.stderr, p.stderr


def main():
    with twtest.tempdir() as tmp:
        with twtest.Collector(os.path.join(tmp, "t.db"),
                              metrics=True) as col:
            port = col.metrics_port
            answers(port)
            text = slow_clients(col, port)
            for code in (200, 400, 404, 405, 408, 413, 414, 431, 503):
                counted(text, code, 1)
            assert col.stop() == 0, col.output()
        bad_listen(tmp)
    print("ok")


if __name__ == "__main__":
    main()
