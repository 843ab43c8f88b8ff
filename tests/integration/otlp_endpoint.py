"""An OTLP/HTTP JSON test endpoint for the export tests: a real HTTP server
on a free port that checks every request against the OTLP JSON mapping
(ExportTraceServiceRequest: camelCase keys, lowercase hex ids, enums as
integers, 64-bit integers as decimal strings, no unknown keys) and records
what it accepted, span by span, so a test can tell a lost span from one
accepted twice. It can answer with a scripted status first (503 with
Retry-After, 400) and delay its answers.

Not a test itself; the test_export_*.py scripts import it.
"""

import http.server
import json
import re
import threading
import time

import twtest

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UINT = re.compile(r"^(0|[1-9][0-9]*)$")
INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


class Invalid(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Invalid(what)


def keys(obj, required, optional, where):
    need(isinstance(obj, dict), "%s is not an object" % where)
    for k in required:
        need(k in obj, "%s lacks %s" % (where, k))
    extra = set(obj) - set(required) - set(optional)
    need(not extra, "%s has unknown keys %s" % (where, sorted(extra)))


def fixed64(v, where):
    need(isinstance(v, str) and UINT.match(v) and int(v) < 2 ** 64,
         "%s is not a decimal string: %r" % (where, v))
    return int(v)


def any_value(v, where):
    keys(v, [], ["stringValue", "boolValue", "intValue", "doubleValue",
                 "arrayValue", "kvlistValue", "bytesValue"], where)
    need(len(v) == 1, "%s must hold one value" % where)
    (kind, val), = v.items()
    if kind == "stringValue":
        need(isinstance(val, str), "%s: stringValue" % where)
    elif kind == "boolValue":
        need(isinstance(val, bool), "%s: boolValue" % where)
    elif kind == "intValue":
        need(isinstance(val, str) and INT.match(val),
             "%s: intValue must be a decimal string: %r" % (where, val))
    elif kind == "doubleValue":
        need(isinstance(val, (int, float)), "%s: doubleValue" % where)
    return kind, val


def attributes(attrs, where):
    need(isinstance(attrs, list), "%s: attributes is not a list" % where)
    out = {}
    for i, kv in enumerate(attrs):
        keys(kv, ["key", "value"], [], "%s.attributes[%d]" % (where, i))
        need(isinstance(kv["key"], str) and kv["key"], "%s: key" % where)
        need(kv["key"] not in out, "%s: key %s twice" % (where, kv["key"]))
        kind, val = any_value(kv["value"], "%s.%s" % (where, kv["key"]))
        out[kv["key"]] = int(val) if kind == "intValue" else val
    return out


def span(s, where):
    keys(s, ["traceId", "spanId", "name", "kind", "startTimeUnixNano",
             "endTimeUnixNano"],
         ["parentSpanId", "traceState", "flags", "attributes",
          "droppedAttributesCount", "events", "droppedEventsCount", "links",
          "droppedLinksCount", "status"], where)
    need(HEX32.match(s["traceId"]) and s["traceId"] != "0" * 32,
         "%s: traceId %r" % (where, s["traceId"]))
    need(HEX16.match(s["spanId"]) and s["spanId"] != "0" * 16,
         "%s: spanId %r" % (where, s["spanId"]))
    if "parentSpanId" in s:
        need(HEX16.match(s["parentSpanId"]), "%s: parentSpanId" % where)
    need(isinstance(s["name"], str), "%s: name" % where)
    need(type(s["kind"]) is int and 0 <= s["kind"] <= 5,
         "%s: kind must be an integer enum" % where)
    start = fixed64(s["startTimeUnixNano"], where + ".startTimeUnixNano")
    end = fixed64(s["endTimeUnixNano"], where + ".endTimeUnixNano")
    need(start <= end, "%s ends before it starts" % where)
    out = dict(s)
    out["start"], out["end"] = start, end
    out["attrs"] = attributes(s.get("attributes", []), where)
    out["event_list"] = []
    for i, e in enumerate(s.get("events", [])):
        w = "%s.events[%d]" % (where, i)
        keys(e, ["timeUnixNano", "name"],
             ["attributes", "droppedAttributesCount"], w)
        fixed64(e["timeUnixNano"], w)
        out["event_list"].append((e["name"],
                                  attributes(e.get("attributes", []), w)))
    for i, link in enumerate(s.get("links", [])):
        w = "%s.links[%d]" % (where, i)
        keys(link, ["traceId", "spanId"],
             ["traceState", "attributes", "droppedAttributesCount", "flags"],
             w)
        need(HEX32.match(link["traceId"]) and HEX16.match(link["spanId"]),
             "%s: ids" % w)
        attributes(link.get("attributes", []), w)
    status = s.get("status", {})
    keys(status, [], ["code", "message"], where + ".status")
    if "code" in status:
        need(type(status["code"]) is int and 0 <= status["code"] <= 2,
             "%s: status code must be an integer enum" % where)
    if "message" in status:
        need(isinstance(status["message"], str), "%s: message" % where)
    return out


def request(body):
    """Validates an ExportTraceServiceRequest; returns its spans, each with
    its resource attributes under "resource"."""
    keys(body, ["resourceSpans"], [], "request")
    need(isinstance(body["resourceSpans"], list), "resourceSpans")
    spans = []
    for i, rs in enumerate(body["resourceSpans"]):
        w = "resourceSpans[%d]" % i
        keys(rs, ["resource", "scopeSpans"], ["schemaUrl"], w)
        keys(rs["resource"], ["attributes"], ["droppedAttributesCount"],
             w + ".resource")
        res = attributes(rs["resource"]["attributes"], w + ".resource")
        need(isinstance(rs["scopeSpans"], list), w + ".scopeSpans")
        for k, ss in enumerate(rs["scopeSpans"]):
            ws = "%s.scopeSpans[%d]" % (w, k)
            keys(ss, ["scope", "spans"], ["schemaUrl"], ws)
            keys(ss["scope"], ["name"],
                 ["version", "attributes", "droppedAttributesCount"],
                 ws + ".scope")
            for n, s in enumerate(ss["spans"]):
                out = span(s, "%s.spans[%d]" % (ws, n))
                out["resource"] = res
                spans.append(out)
    return spans


class Endpoint:
    """The endpoint. `script` is a list of (status, headers) answers given
    to the first requests, in order, before it answers 200; `delay` holds
    each answer back that many seconds."""

    def __init__(self, port=None, script=(), delay=0.0):
        self.port = port or twtest.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.script = list(script)
        self.delay = delay
        self.lock = threading.Condition()
        self.accepted = {}     # (traceId, spanId) -> span
        self.duplicates = []   # spans accepted again
        self.requests = []     # (time, status, span count, headers)
        self.errors = []       # requests that broke the mapping
        self.server = None

    def start(self):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Answer at once, not after the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_POST(self):
                endpoint.handle(self)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client killed mid-request (the kill -9 test)

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, h):
        length = int(h.headers.get("Content-Length", "0"))
        raw = h.rfile.read(length)
        now = time.monotonic()
        status, extra = 200, {}
        spans = []
        try:
            need(h.path == "/v1/traces", "path %s" % h.path)
            need(h.headers.get("Content-Type") == "application/json",
                 "Content-Type %s" % h.headers.get("Content-Type"))
            spans = request(json.loads(raw))
        except (Invalid, ValueError) as exc:
            with self.lock:
                self.errors.append(str(exc))
            status = 400
        with self.lock:
            if status == 200 and self.script:
                status, extra = self.script.pop(0)
            self.requests.append((now, status, len(spans),
                                  dict(h.headers.items())))
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if status == 200:
                for s in spans:
                    key = (s["traceId"], s["spanId"])
                    if key in self.accepted:
                        self.duplicates.append(key)
                    self.accepted[key] = s
            self.lock.notify_all()
        body = b"{}" if status == 200 else b'{"message":"scripted"}'
        h.send_response(status)
        for k, v in extra.items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def wait_for(self, count, timeout=60.0):
        """Waits until `count` distinct spans are accepted."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.accepted) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "the endpoint accepted %d spans of %d; errors: %s" %
                        (len(self.accepted), count, self.errors[:3]))
                self.lock.wait(left)

    def traces(self):
        """Accepted spans grouped by trace id."""
        out = {}
        with self.lock:
            for s in self.accepted.values():
                out.setdefault(s["traceId"], []).append(s)
        return out
