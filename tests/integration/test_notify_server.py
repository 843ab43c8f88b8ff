"""examples/notify_server end to end: a private collector, the C server on a
free port, a few hundred requests over real sockets (a fifth of them for
addresses in the failing domain), malformed requests, SIGTERM; then every
task is checked in `taskwatch query --format json`, and the log file the
tasks wrote is checked against it.
"""

import concurrent.futures
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_python_common import (BUILD_ROOT, Collector, by_batch, check,  # noqa
                                fail, spawn, tempdir)

SERVER = os.path.join(BUILD_ROOT, "examples", "notify_server",
                      "notify_server")
LABEL = "POST /send-notification/{email}"
REQUESTS = 300
CLIENTS = 8


def start_server(collector, tmp, service, *options):
    env = dict(os.environ, TASKWATCH_COLLECTOR=collector.url)
    log = os.path.join(tmp, service + ".log")
    proc = spawn([SERVER, "--listen", "127.0.0.1:0", "--log", log,
                  "--service", service, *options], env=env,
                 stdout=subprocess.PIPE, stderr=open(
                     os.path.join(tmp, service + ".err"), "w"), text=True)
    line = proc.stdout.readline()
    check(line.startswith("listening on http://127.0.0.1:"),
          "unexpected first line from notify_server: %r" % line)
    return proc, int(line.rsplit(":", 1)[1]), log


def email_for(i):
    if i % 5 == 4:
        return "user%d@invalid.test" % i
    return "user%d@example.org" % i


def send_share(port, indexes):
    """One keep-alive connection sending its share of the requests."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers = []
    for i in indexes:
        path = "/send-notification/" + urllib.parse.quote(email_for(i))
        conn.request("POST", path)
        response = conn.getresponse()
        answers.append((response.status, response.read()))
    conn.close()
    return answers


def raw(port, data, read_all=True):
    """Sends raw bytes, returns everything read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_all:
                break
        return b"".join(chunks)


def check_malformed(port):
    out = raw(port, b"GARBAGE\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400 "), "garbage: %r" % out[:80])
    out = raw(port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 414 "), "long target: %r" % out[:80])
    out = raw(port, b"GET /send-notification/x@y HTTP/1.1\r\n"
              b"Connection: close\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 405 "), "wrong method: %r" % out[:80])
    out = raw(port, b"POST /send-notification/%zz HTTP/1.1\r\n"
              b"Connection: close\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400 "), "bad escape: %r" % out[:80])
    out = raw(port, b"POST /send-notification/a@b HTTP/1.1\r\n"
              b"Content-Length: 12x\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400 "), "bad length: %r" % out[:80])
    # Two pipelined requests, then one that closes: three answers in order.
    out = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    check(statuses == [b"200", b"404", b"200"], "pipelined: %r" % statuses)
    check_upgrade_and_head(port)
    # A client that vanishes mid-request costs nothing.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /send-notif")
    status = raw(port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(status.startswith(b"HTTP/1.1 200 "), "healthz after abuse")


def check_upgrade_and_head(port):
    """Upgrade and CONNECT get exactly one 400 and never reach the handler
    (the POST would enqueue a batch, which check_tasks would count); HEAD
    gets the headers of GET without the body, so a pipelined request after
    it is read correctly."""
    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    for request in (b"GET /healthz HTTP/1.1\r\n" + upgrade,
                    b"GET /send-notification/x@y HTTP/1.1\r\n" + upgrade,
                    b"POST /send-notification/up@example.org HTTP/1.1\r\n"
                    + upgrade,
                    b"CONNECT example.org:443 HTTP/1.1\r\n"
                    b"Host: example.org:443\r\n\r\n"):
        out = raw(port, request)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
        check(statuses == [b"400"], "upgrade %r: %r" % (request[:20], out))
    out = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    first, _, rest = out.partition(b"\r\n\r\n")
    check(first.startswith(b"HTTP/1.1 200 ") and
          b"\r\nContent-Length: 3\r\n" in first + b"\r\n",
          "HEAD headers: %r" % first)
    second, _, body = rest.partition(b"\r\n\r\n")
    check(second.startswith(b"HTTP/1.1 200 ") and body == b"ok\n",
          "GET after HEAD: %r" % rest)


def check_tasks(collector, log_path):
    tasks = collector.wait_tasks(
        lambda t: t["service"] == "notify_server" and t["status"] in (
            "succeeded", "failed", "skipped"), REQUESTS * 3,
        what="finished notify_server tasks")
    check(all(t["service"] == "notify_server" for t in tasks), "service")
    batches = by_batch(tasks)
    check(len(batches) == REQUESTS, "%d batches" % len(batches))
    failed_emails = set()
    for batch in batches.values():
        names = [t["name"] for t in batch]
        check(names == ["write_notification", "send_email", "write_log"],
              "names %r" % names)
        check([t["position"] for t in batch] == [0, 1, 2], "positions")
        check([t["mode"] for t in batch] == ["threadpool", "loop",
                                             "threadpool"], "modes")
        check(all(t["batch_label"] == LABEL for t in batch), "label")
        first, email, last = batch
        check(first["status"] == "succeeded", "write_notification status")
        for t in batch:
            check(t["enqueued_at"] is not None, "enqueued_at")
        check(email["started_at"] >= first["finished_at"], "order 0 < 1")
        if email["status"] == "failed":
            check(email["error_type"] == "SMTPRecipientRefused",
                  "error_type %r" % email["error_type"])
            check("@invalid.test" in email["error_message"], "message")
            failed_emails.add(email["error_message"].rsplit(" ", 1)[1])
            check(last["status"] == "skipped", "write_log after failure")
            check(last["skipped_after"] == email["id"], "skipped_after")
            check(last["started_at"] is None, "skipped never started")
        else:
            check(email["status"] == "succeeded", "send_email status")
            check(last["status"] == "succeeded", "write_log status")
            check(last["started_at"] >= email["finished_at"], "order 1 < 2")
            check(last["wait_us"] >= 0 and last["run_us"] >= 0, "durations")
    expected = {email_for(i) for i in range(REQUESTS)
                if email_for(i).endswith("@invalid.test")}
    check(failed_emails == expected, "failed emails differ")
    with open(log_path) as f:
        lines = f.read().splitlines()
    notes = [l for l in lines if l.startswith("notification for ")]
    logs = [l for l in lines if l.startswith("log: sent notification to ")]
    check(len(notes) == REQUESTS, "%d notification lines" % len(notes))
    check(len(logs) == REQUESTS - len(expected), "%d log lines" % len(logs))
    print("notify_server: %d batches, %d tasks, %d failed as expected"
          % (len(batches), len(tasks), len(expected)))


def load_and_check(collector, tmp):
    proc, port, log_path = start_server(collector, tmp, "notify_server",
                                        "--email-delay-ms", "2")
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        shares = [range(c, REQUESTS, CLIENTS) for c in range(CLIENTS)]
        answers = [a for share in pool.map(lambda s: send_share(port, s),
                                           shares) for a in share]
    check(len(answers) == REQUESTS, "answers")
    for status, body in answers:
        check(status == 200 and b"Notification sent" in body,
              "answer %d %r" % (status, body))
    check_malformed(port)
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(timeout=30) == 0, "notify_server exit status")
    check_tasks(collector, log_path)


def shutdown_mode(collector, tmp, mode):
    """--max-running 1 and a slow send_email keep batches queued; SIGTERM
    must run them (run) or record them dropped (drop), never lose them."""
    service = "notify_" + mode
    proc, port, _ = start_server(collector, tmp, service, "--max-running",
                                 "1", "--email-delay-ms", "150",
                                 "--on-shutdown", mode)
    for i in (0, 1, 2, 3, 5, 6):  # addresses that do not fail
        status, _ = send_share(port, [i])[0]
        check(status == 200, "status")
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(timeout=30) == 0, "%s exit status" % service)
    tasks = collector.wait_tasks(
        lambda t: t["service"] == service and t["status"] not in (
            "queued", "running"), 18, what=service + " tasks")
    statuses = sorted(t["status"] for t in tasks)
    if mode == "run":
        check(statuses == ["succeeded"] * 18, "run: %r" % statuses)
        return
    dropped = [t for t in tasks if t["status"] == "dropped"]
    check(len(dropped) >= 3 and len(dropped) % 3 == 0,
          "drop: %d dropped" % len(dropped))
    reasons = collector.drop_reasons()
    check(all(reasons[t["id"]] == "shutdown" for t in dropped), "reasons")
    check(statuses.count("succeeded") + len(dropped) == 18, "drop: rest")
    print("notify_server --on-shutdown drop: %d of 6 batches dropped"
          % (len(dropped) // 3))


def main():
    if not os.path.exists(SERVER):
        fail("notify_server not built at " + SERVER)
    tmp = tempdir("tw-notify-")
    collector = Collector(tmp)
    load_and_check(collector, tmp)
    shutdown_mode(collector, tmp, "run")
    shutdown_mode(collector, tmp, "drop")
    collector.stop()
    print("ok")


if __name__ == "__main__":
    main()
