"""The request's trace, end to end: a FastAPI app instrumented by the Python
binding under uvicorn, a collector exporting OTLP to a test endpoint. A
request that carries a W3C traceparent header gets, on its batch span, a
link to that trace; one without the header, or with a malformed one,
gets none. The link travels as the batch's LINK event (docs/protocol.md)
and the store's batches.traceparent.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import otlp_endpoint  # noqa: E402
import twtest  # noqa: E402
from test_python_common import Uvicorn, check, python_env  # noqa: E402

APP = '''
from fastapi import BackgroundTasks, FastAPI

import taskwatch

taskwatch.instrument()
app = FastAPI()


def write_log(message: str):
    pass


@app.post("/notify/{n}")
def notify(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(write_log, "a")
    background_tasks.add_task(write_log, "b")
    return {"n": n}
'''

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def request(port, n, traceparent):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"traceparent": traceparent} if traceparent else {}
        conn.request("POST", "/notify/%d" % n, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def main():
    with twtest.tempdir() as tmp:
        with open(os.path.join(tmp, "link_app.py"), "w") as f:
            f.write(APP)
        ep = otlp_endpoint.Endpoint().start()
        try:
            with twtest.Collector(os.path.join(tmp, "t.db"), [
                    "--otlp-endpoint", ep.url]) as col:
                server = Uvicorn(tmp, "link_app:app",
                                 python_env(col.url, "linked"),
                                 os.path.join(tmp, "uvicorn.log"))
                cases = {1: "00-%s-%s-01" % (TRACE, PARENT), 2: None,
                         3: "00-%s-%s-01" % (TRACE.upper(), PARENT),
                         4: "  00-%s-%s-00 " % (TRACE[::-1], PARENT)}
                for n, tp in cases.items():
                    check(request(server.port, n, tp) == 200, "status")
                server.stop()
                ep.wait_for(4 * 3)
                roots = {}
                for spans in ep.traces().values():
                    for s in spans:
                        if "parentSpanId" not in s:
                            roots[s["attrs"]["messaging.batch.message_count"],
                                  s["traceId"]] = s
                check(len(roots) == 4, "four batches: %r" % list(roots))
                links = sorted((tuple((link["traceId"], link["spanId"])
                                      for link in s.get("links", [])))
                               for s in roots.values())
                want = sorted([((TRACE, PARENT),), (), (),
                               ((TRACE[::-1], PARENT),)])
                check(links == want, "links %r, expected %r" % (links, want))
                for s in roots.values():
                    check(s["name"] == "POST /notify/{n}", s["name"])
                    check(s["resource"]["service.name"] == "linked",
                          s["resource"])
                check(not ep.errors and not ep.duplicates, ep.errors)
                check(col.stop() == 0, col.output())
        finally:
            ep.stop()
    print("ok")


if __name__ == "__main__":
    main()
