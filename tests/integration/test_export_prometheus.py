"""A real Prometheus (Debian's package) scraping a real collector every
second while a demo runs, with the project's rules loaded: through
Prometheus's HTTP query API, every count equals what the store holds
(tasks by service, task and status; runs and waits in the histograms;
events committed), the counts were scraped while they grew, the rules
load and evaluate, and `promtool check metrics` finds nothing to say
about a scrape.
"""

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request

import twtest

SOURCE = os.environ.get("TASKWATCH_SOURCE_ROOT",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(SOURCE, "docs", "prometheus", "taskwatch.rules.yml")
NAMES = ["write_notification", "send_email", "write_log"]
FINAL = ["succeeded", "failed", "skipped", "dropped", "lost"]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Prometheus:
    def __init__(self, tmp, target):
        self.port = twtest.free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: taskwatch\n"
                    "    static_configs:\n      - targets: ['%s']\n" %
                    (RULES, target))
        self.log = open(os.path.join(tmp, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait(lambda: get(self.base + "/-/ready") and True,
                  "Prometheus ready")

    def wait(self, cond, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise AssertionError("prometheus exited: %s" %
                                     self.log.read()[-2000:])
            try:
                last = cond()
                if last:
                    return last
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError("%s: not within %ss (last: %r)" % (
            what, timeout, last))

    def api(self, path, **params):
        url = self.base + "/api/v1/" + path + "?" + urllib.parse.urlencode(
            params)
        body = json.loads(get(url))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        """{frozenset(labels without __name__): value}"""
        out = {}
        for r in self.api("query", query=expr)["result"]:
            labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
            out[frozenset(labels.items())] = float(r["value"][1])
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def store_counts(db):
    """From the store: (task, status) -> tasks, task -> runs and waits."""
    counts = {(n, s): 0 for n in NAMES for s in FINAL}
    runs = dict.fromkeys(NAMES, 0)
    waits = dict.fromkeys(NAMES, 0)
    for t in twtest.query_json(db):
        if t["status"] in FINAL:
            counts[(t["name"], t["status"])] += 1
            if t["status"] in ("succeeded", "failed"):
                runs[t["name"]] += 1
            if t["started_at"] is not None:
                waits[t["name"]] += 1
    return counts, runs, waits


def key(**labels):
    return frozenset(labels.items())


def check_counts(prom, db):
    counts, runs, waits = store_counts(db)
    assert counts[("send_email", "failed")] > 0, counts
    common = {"job": "taskwatch", "instance": prom.target,
              "service": "demo"}

    def exact():
        got = prom.query('taskwatch_tasks_total{service="demo"}')
        want = {key(task=n, status=s, **common): float(v)
                for (n, s), v in counts.items()}
        return got == want or (got, want)

    result = prom.wait(lambda: exact() is True, "exact task counts")
    assert result is True
    got = prom.query('taskwatch_task_run_seconds_count{service="demo"}')
    assert got == {key(task=n, **common): float(runs[n]) for n in NAMES}, got
    got = prom.query('taskwatch_task_wait_seconds_count{service="demo"}')
    assert got == {key(task=n, **common): float(waits[n])
                   for n in NAMES}, got
    # Every run fits a bucket: +Inf equals the count.
    inf = prom.query('taskwatch_task_run_seconds_bucket{le="+Inf"}')
    assert sum(inf.values()) == sum(runs.values()), inf
    got = prom.query('taskwatch_agents_connected')
    assert list(got.values()) == [0.0], got
    con = sqlite3.connect(db)
    events = con.execute("SELECT sum(events) FROM agents").fetchone()[0]
    version = con.execute("PRAGMA user_version").fetchone()[0]
    con.close()
    got = prom.query("taskwatch_events_committed_total")
    assert list(got.values()) == [float(events)], (got, events)
    got = prom.query("taskwatch_build_info")
    (labels, value), = got.items()
    # The schema version of the store the collector made.
    assert value == 1.0 and dict(labels)["schema"] == str(version), got


def main():
    with twtest.tempdir() as tmp:
        with twtest.Collector(os.path.join(tmp, "t.db"),
                              metrics=True) as col:
            mport = col.metrics_port
            target = "127.0.0.1:%d" % mport
            prom = Prometheus(tmp, target)
            prom.target = target
            try:
                prom.wait(lambda: prom.query('up{job="taskwatch"}') ==
                          {key(job="taskwatch", instance=target): 1.0},
                          "the collector scraped")
                start = time.time()
                # 1000 batches at 250 a second: four seconds of scrapes.
                twtest.run(["demo", "--collector", col.url, "--batches",
                            "1000", "--fail-every", "10", "--rate", "250"],
                           timeout=240)
                end = time.time()
                check_counts(prom, col.db)
                # The collector took about 2,500 events a second: its acks
                # advise the whole hold (docs/protocol.md, ACK).
                got = prom.query("taskwatch_ack_hold_seconds")
                assert list(got.values()) == [0.25], got
                # Scraped while it grew: a value between none and all.
                final = list(prom.query(
                    "taskwatch_events_committed_total").values())[0]
                series = prom.api("query_range",
                                  query="taskwatch_events_committed_total",
                                  start=start, end=end, step="0.5")
                values = [float(v) for r in series["result"]
                          for _, v in r["values"]]
                assert any(0 < v < final for v in values), values
                # The rules load and evaluate.
                groups = prom.api("rules")["groups"]
                names = sorted(g["name"] for g in groups)
                assert names == ["taskwatch.alerts", "taskwatch.rules"], names
                for g in groups:
                    for r in g["rules"]:
                        assert r["health"] in ("ok", "unknown"), r
                prom.wait(lambda: prom.query(
                    'taskwatch:task_failure_ratio:rate5m{task="send_email"}'),
                    "the failure ratio recorded")
            finally:
                prom.stop()
            scrape = get("http://%s/metrics" % target)
            p = subprocess.run(["promtool", "check", "metrics"],
                               input=scrape, capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 0 and not p.stdout.strip() and \
                not p.stderr.strip(), (p.returncode, p.stdout, p.stderr)
            assert col.stop() == 0, col.output()
    print("ok")


if __name__ == "__main__":
    main()
