"""The OTLP/HTTP JSON export end to end: a real collector exporting a real
demo to a test endpoint (otlp_endpoint.py) that checks every request
against the OTLP JSON mapping and counts each span it accepts.

- every task and batch arrives once, as the span model says, and agrees
  with the store;
- 503 with Retry-After, then 200: the retry waits as long as it was told;
- a collector stopped in the middle of an export and started again goes
  on where it stopped: no span lost, none accepted twice (and after
  kill -9, only the request that was under way may come again, with the
  same ids);
- an endpoint that is down costs ingest nothing: everything is stored,
  the backlog shows in /metrics, and goes out once the endpoint is up;
- an answer that is final (400) is counted as rejected, and the export
  moves on;
- OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS, and one-line
  errors for bad ones.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import otlp_endpoint
import twtest

LABEL = "POST /send-notification/{email}"


def scrape(port):
    """The collector's metrics as {'name{labels}': value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_metric(port, key, want, timeout=60.0, at_least=False):
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(port).get(key)
        if got == want or (at_least and got is not None and got >= want):
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s is %s, expected %s" % (key, got, want))
        time.sleep(0.1)


def collector(tmp, endpoint_url, extra=(), env=None, name="t.db"):
    args = [*extra]
    if endpoint_url:
        args += ["--otlp-endpoint", endpoint_url]
    return twtest.Collector(os.path.join(tmp, name), args, env=env,
                            metrics=True)


def demo(col, batches, fail_every=10):
    """A demo paced at 20,000 events/s, which its agent sends without
    dropping at the default budget even on a loaded machine (unpaced, its
    rings overflow, which is the agent's business, not the export's)."""
    twtest.run(["demo", "--collector", col.url, "--batches", str(batches),
                "--fail-every", str(fail_every), "--rate", "2000"],
               timeout=240)


def stored_batches(db):
    """The store's finished batches: batch id -> tasks by position."""
    out = {}
    for t in twtest.query_json(db):
        out.setdefault(t["batch"], []).append(t)
    for tasks in out.values():
        tasks.sort(key=lambda t: t["position"])
    return {b: tasks for b, tasks in out.items()
            if all(t["status"] not in ("queued", "running") for t in tasks)}


def expected_spans(db):
    return sum(1 + len(tasks) for tasks in stored_batches(db).values())


def check_traces(ep, db):
    """Every finished batch of the store is one trace: a span for the
    batch, one per task, as stored. Returns the number of batches."""
    traces = ep.traces()
    batches = stored_batches(db)
    assert len(traces) == len(batches), "%d traces for %d batches" % (
        len(traces), len(batches))
    seen = set()
    for trace_id, spans in traces.items():
        roots = [s for s in spans if "parentSpanId" not in s]
        assert len(roots) == 1, spans
        root = roots[0]
        rows = batches[root["attrs"]["taskwatch.batch.id"]]
        seen.add(root["attrs"]["taskwatch.batch.id"])
        assert len(spans) == 1 + len(rows), (spans, rows)
        assert root["name"] == LABEL and root["kind"] == 1, root
        assert root["attrs"]["taskwatch.batch.label"] == LABEL
        assert root["attrs"]["messaging.batch.message_count"] == len(rows)
        tasks = sorted((s for s in spans if s is not root),
                       key=lambda s: s["attrs"]["taskwatch.task.position"])
        for s, row in zip(tasks, rows):
            assert s["parentSpanId"] == root["spanId"], s
            assert s["kind"] == 5, s
            assert root["start"] <= s["start"] <= s["end"] <= root["end"]
            res = s["resource"]
            assert res["service.name"] == "demo", res
            assert res["host.name"] == socket.gethostname(), res
            assert isinstance(res["process.pid"], int), res
            assert s["attrs"]["taskwatch.task.id"] == row["id"], (s, row)
            assert s["name"] == row["name"], (s, row)
            assert s["attrs"]["code.function.name"] == row["name"]
            assert s["attrs"]["taskwatch.task.status"] == row["status"]
            assert s["attrs"]["taskwatch.task.mode"] == row["mode"]
            assert s["attrs"]["taskwatch.task.position"] == row["position"]
            check_status(s, row)
        if any(row["status"] == "failed" for row in rows):
            assert root["status"]["code"] == 2, root
        else:
            assert root["status"].get("code", 0) == 0, root
    assert seen == set(batches)
    return len(batches)


def check_status(s, row):
    """A task span's status, events and times, by the task's state."""
    if row["status"] == "failed":
        assert s["status"]["code"] == 2, s
        assert s["status"]["message"] == row["error_message"], s
        (name, attrs), = s["event_list"]
        assert name == "exception", s
        assert attrs["exception.type"] == row["error_type"], attrs
        assert attrs["exception.message"] == row["error_message"], attrs
        assert attrs["exception.stacktrace"] == row["error_detail"], attrs
    else:
        assert s["status"].get("code", 0) == 0, s
        assert not s["event_list"], s
    if row["status"] in ("succeeded", "failed"):
        assert s["attrs"]["messaging.operation.type"] == "process"
        assert s["end"] - s["start"] == row["run_us"] * 1000, (s, row)
    else:
        # Skipped, dropped, lost: zero-length, at the moment it happened.
        assert s["start"] == s["end"], s
        assert "messaging.operation.type" not in s["attrs"]
    if row["status"] == "skipped":
        assert s["attrs"]["taskwatch.task.skip_cause"] == row[
            "skipped_after"], s


def every_span_once(tmp):
    ep = otlp_endpoint.Endpoint().start()
    try:
        with collector(tmp, ep.url) as col:
            demo(col, 300)
            spans = expected_spans(col.db)
            ep.wait_for(spans)
            assert check_traces(ep, col.db) == 300
            assert not ep.errors, ep.errors
            assert not ep.duplicates, ep.duplicates[:3]
            wait_metric(col.metrics_port, "taskwatch_otlp_queue_batches", 0)
            m = scrape(col.metrics_port)
            assert m["taskwatch_otlp_spans_exported_total"] == spans, m
            assert m["taskwatch_otlp_requests_failed_total"] == 0, m
            assert col.stop() == 0, col.output()
    finally:
        ep.stop()


def retry_after(tmp):
    ep = otlp_endpoint.Endpoint(
        script=[(503, {"Retry-After": "2"})]).start()
    try:
        with collector(tmp, ep.url) as col:
            demo(col, 50)
            spans = expected_spans(col.db)
            ep.wait_for(spans)
            first, second = ep.requests[0], ep.requests[1]
            assert first[1] == 503 and second[1] == 200, ep.requests
            # The backoff alone would retry after 1 s.
            assert second[0] - first[0] >= 2.0, (first[0], second[0])
            assert not ep.duplicates and not ep.errors
            wait_metric(col.metrics_port,
                        "taskwatch_otlp_spans_exported_total", spans)
            m = scrape(col.metrics_port)
            assert m["taskwatch_otlp_requests_failed_total"] == 1, m
            assert col.stop() == 0, col.output()
    finally:
        ep.stop()


def restart_mid_export(tmp, sig):
    """2000 batches go out in 8 requests, each held 0.5 s by the endpoint;
    the collector is stopped after the second and started again."""
    ep = otlp_endpoint.Endpoint(delay=0.5).start()
    try:
        col = collector(tmp, ep.url)
        with col:
            demo(col, 2000)
            spans = expected_spans(col.db)
            ep.wait_for(2 * 256 * 4)
            col.proc.send_signal(sig)
            rc = col.proc.wait(timeout=30)
            assert rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL), (
                rc, col.output())
            with ep.lock:
                sent = len(ep.accepted)
            assert sent < spans, "the export ended before the stop"
        with collector(tmp, ep.url) as again:
            ep.wait_for(spans, timeout=120)
            check_traces(ep, again.db)
            assert not ep.errors, ep.errors
            if sig == signal.SIGTERM:
                assert not ep.duplicates, len(ep.duplicates)
            else:
                # Only the request under way at the kill: the same spans,
                # the same ids.
                assert len(set(ep.duplicates)) <= 256 * 4, len(
                    ep.duplicates)
            wait_metric(again.metrics_port, "taskwatch_otlp_queue_batches",
                        0)
            assert again.stop() == 0, again.output()
    finally:
        ep.stop()


def endpoint_down(tmp):
    port = twtest.free_port()
    url = "http://127.0.0.1:%d" % port
    with collector(tmp, url) as col:
        demo(col, 500)
        # Ingest did not wait: every task is stored, and counted.
        stored = stored_batches(col.db)
        m = scrape(col.metrics_port)
        for name in ("write_notification", "send_email", "write_log"):
            key = 'taskwatch_tasks_total{service="demo",task="%s",' \
                  'status="succeeded"}' % name
            want = sum(1 for rows in stored.values() for t in rows
                       if t["name"] == name and t["status"] == "succeeded")
            assert m[key] == want, (key, m[key], want)
        wait_metric(col.metrics_port, "taskwatch_otlp_queue_batches",
                    len(stored))
        # The export thread (nice 10) tries its first request when it gets
        # the CPU: the batches can all be queued before it has.
        wait_metric(col.metrics_port, "taskwatch_otlp_requests_failed_total",
                    1, at_least=True)
        assert scrape(col.metrics_port)[
            "taskwatch_otlp_spans_exported_total"] == 0
        ep = otlp_endpoint.Endpoint(port=port).start()
        try:
            ep.wait_for(expected_spans(col.db), timeout=90)
            check_traces(ep, col.db)
            wait_metric(col.metrics_port, "taskwatch_otlp_queue_batches", 0)
            assert not ep.duplicates and not ep.errors
            assert col.stop() == 0, col.output()
        finally:
            ep.stop()


def rejected(tmp):
    ep = otlp_endpoint.Endpoint(script=[(400, {})]).start()
    try:
        with collector(tmp, ep.url) as col:
            demo(col, 50)
            spans = expected_spans(col.db)
            deadline = time.monotonic() + 60
            while True:
                with ep.lock:
                    refused = [r for r in ep.requests if r[1] == 400]
                    if refused and sum(r[2] for r in ep.requests) == spans:
                        break
                assert time.monotonic() < deadline, ep.requests
                time.sleep(0.05)
            lost = refused[0][2]
            assert len(ep.accepted) == spans - lost
            wait_metric(col.metrics_port, "taskwatch_otlp_spans_rejected_total",
                        lost)
            # The export goes on after a final refusal.
            demo(col, 10)
            ep.wait_for(expected_spans(col.db) - lost)
            assert col.stop() == 0, col.output()
            assert "refused the spans" in col.output()
    finally:
        ep.stop()


def environment(tmp):
    ep = otlp_endpoint.Endpoint().start()
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": ep.url + "/",
               "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret, "
                                             "x-team = a%20b%2Cc"}
        with collector(tmp, None, env=env) as col:
            demo(col, 5)
            ep.wait_for(expected_spans(col.db))
            headers = {k.lower(): v for k, v in ep.requests[0][3].items()}
            assert headers["x-api-key"] == "s3cret", headers
            assert headers["x-team"] == "a b,c", headers
            assert headers["user-agent"].startswith("taskwatch/"), headers
            assert col.stop() == 0, col.output()
    finally:
        ep.stop()
    db = os.path.join(tmp, "bad.db")
    cases = [
        (["--otlp-endpoint", "collector:4318"], {},
         "invalid --otlp-endpoint 'collector:4318': expected an http:// or "
         "https:// URL"),
        ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"},
         "invalid OTEL_EXPORTER_OTLP_ENDPOINT 'ftp://x'"),
        (["--otlp-endpoint", "http://127.0.0.1:1"],
         {"OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
         "invalid OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs"),
    ]
    for args, env, message in cases:
        p = subprocess.run(
            [twtest.BIN, "collector", "--db", db, *args],
            capture_output=True, text=True, timeout=30,
            env=dict(os.environ, **env))
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert message in p.stderr, p.stderr
        assert not os.path.exists(db), "a bad argument created the store"


def main():
    for case in (every_span_once, retry_after, endpoint_down, rejected,
                 environment):
        with twtest.tempdir() as tmp:
            case(tmp)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with twtest.tempdir() as tmp:
            restart_mid_export(tmp, sig)
    print("ok")


if __name__ == "__main__":
    main()
