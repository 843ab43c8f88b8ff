"""Response latency of a FastAPI app with tracing on and off, side by side.

Two uvicorn processes serve the same app (SCENARIO_APP), one with
taskwatch.instrument() and one untraced. One client alternates requests
between them on keep-alive connections (so machine noise hits both alike)
to the tutorial's /send-notification/{email}?q=..., whose four background
tasks (one added by a sub-dependency, one by a dependency) are traced. It
prints the latency figures and the on/off ratio; timing is never asserted
(the machine is shared). It does assert that every traced request's tasks
reached the collector.
"""

import http.client
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_python_common import (Collector, Uvicorn, check, python_env,  # noqa
                                tempdir, write_scenario_app)

WARMUP = 50
ROUNDS = 400


def timed_request(conn, i):
    path = "/send-notification/l%d@example.org?q=l%d" % (i, i)
    start = time.perf_counter()
    conn.request("POST", path)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    check(response.status == 200, "status %d" % response.status)
    return elapsed


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


def main():
    tmp = tempdir("tw-latency-")
    write_scenario_app(tmp)
    collector = Collector(tmp)
    servers = {}
    for mode in ("off", "instrument"):
        env = python_env(collector.url, "lat_" + mode, {
            "APP_MODE": mode,
            "APP_MARKS": os.path.join(tmp, "marks-%s.txt" % mode)})
        servers[mode] = Uvicorn(tmp, "scenario_app:app", env,
                                os.path.join(tmp, "uvicorn-%s.log" % mode))
    conns = {m: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
             for m, s in servers.items()}
    times = {m: [] for m in servers}
    for i in range(WARMUP + ROUNDS):
        # Alternate which goes first, so neither always follows the other.
        order = ("off", "instrument") if i % 2 else ("instrument", "off")
        for mode in order:
            elapsed = timed_request(conns[mode], i)
            if i >= WARMUP:
                times[mode].append(elapsed)
    for conn in conns.values():
        conn.close()
    for server in servers.values():
        server.stop()
    rows = {}
    for mode in ("off", "instrument"):
        t = times[mode]
        rows[mode] = (statistics.median(t), statistics.mean(t),
                      percentile(t, 90), percentile(t, 99))
        print("latency %-10s median %7.1f us  mean %7.1f us  p90 %7.1f us  "
              "p99 %7.1f us  (%d requests)" % (
                  "on:" if mode == "instrument" else "off:",
                  *(v * 1e6 for v in rows[mode]), len(t)))
    ratio_median = rows["instrument"][0] / rows["off"][0]
    ratio_mean = rows["instrument"][1] / rows["off"][1]
    print("latency ratio (tracing on / off): median %.3f, mean %.3f"
          % (ratio_median, ratio_mean))
    traced = WARMUP + ROUNDS
    tasks = collector.wait_tasks(
        lambda t: t["service"] == "lat_instrument" and
        t["status"] == "succeeded", 4 * traced, what="traced tasks")
    check(len(tasks) == 4 * traced, "%d traced tasks" % len(tasks))
    check(not [t for t in collector.query() if t["service"] == "lat_off"],
          "the untraced app recorded tasks")
    collector.stop()
    print("ok")


if __name__ == "__main__":
    main()
