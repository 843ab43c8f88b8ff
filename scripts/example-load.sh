#!/bin/sh
# Runs an example server traced by taskwatch under a small load against a
# running collector, then stops it gracefully and exits 0.
#
# Usage: scripts/example-load.sh COLLECTOR_URL [BUILD_DIR] [c|fastapi]
#                                [REQUESTS] [RATE]
#
#   COLLECTOR_URL  where the server's agent sends its events, e.g.
#                  unix:/tmp/x/collector.sock or tcp://127.0.0.1:7460
#   BUILD_DIR      the meson build directory (default: build)
#   c|fastapi      which server: the C example (build/examples/notify_server/
#                  notify_server, the default) or the FastAPI app
#                  (examples/fastapi_notify, needs Debian's python3-fastapi
#                  and python3-uvicorn)
#   REQUESTS       how many POST /send-notification/{email} (default 200)
#   RATE           requests per second (default 50)
#
# Every 10th request is for an address at @invalid.test, so its send_email
# fails and its write_log is skipped. The server listens on a free port of
# 127.0.0.1; its log and output go to a temp dir removed at exit. Killing
# the script (TERM, INT) stops the server too.
set -eu
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -ge 1 ] && exit 0
  exit 2
fi
url=$1
build=${2:-build}
kind=${3:-c}
requests=${4:-200}
rate=${5:-50}
python=/usr/bin/python3
[ -x "$python" ] || python=python3

tmp=$(mktemp -d)
# The load reads the server's address from server.out: it exists before
# either starts (the server's redirection is made in its own process,
# which may run after the load's first look).
: >"$tmp/server.out"
server=""
load=""
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null || true
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

case $kind in
c)
  bin=$build/examples/notify_server/notify_server
  if [ ! -x "$bin" ]; then
    echo "example-load: $bin is not built (ninja -C $build)" >&2
    exit 1
  fi
  TASKWATCH_COLLECTOR=$url "$bin" --listen 127.0.0.1:0 \
    --log "$tmp/notify-log.txt" --email-delay-ms 20 >"$tmp/server.out" \
    2>"$tmp/server.err" &
  server=$!
  ;;
fastapi)
  port=$("$python" -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  TASKWATCH_COLLECTOR=$url TASKWATCH_SERVICE=fastapi_notify \
    TASKWATCH_LIBRARY=$build/agent/libtaskwatch.so PYTHONPATH=python \
    NOTIFY_LOG=$tmp/notify-log.txt NOTIFY_EMAIL_DELAY_MS=20 \
    "$python" -m uvicorn --app-dir examples/fastapi_notify app:app \
    --host 127.0.0.1 --port "$port" --log-level warning --no-access-log \
    >"$tmp/server.err" 2>&1 &
  server=$!
  echo "listening on http://127.0.0.1:$port" >"$tmp/server.out"
  ;;
*)
  echo "example-load: unknown server '$kind' (c or fastapi)" >&2
  exit 2
  ;;
esac

# The load: paced to RATE requests per second.
# It runs in the background so that a TERM to this script is handled at
# once (a shell runs traps only between foreground commands).
"$python" - "$tmp/server.out" "$requests" "$rate" "$kind" <<'EOF' &
import http.client, socket, sys, time

out_path, requests, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
# uvicorn closes a keep-alive connection after a background task raised,
# sometimes with the next request already taken, so a retry could run a
# request twice: the FastAPI app gets a connection per request instead.
keep_alive = sys.argv[4] == "c"
deadline = time.monotonic() + 30
port = None
while port is None and time.monotonic() < deadline:
    try:
        with open(out_path) as f:
            line = f.readline()
    except FileNotFoundError:  # the server's shell has not made it yet
        line = ""

    if line.startswith("listening on http://"):
        candidate = int(line.rsplit(":", 1)[1])
        try:
            socket.create_connection(("127.0.0.1", candidate), 0.5).close()
            port = candidate
        except OSError:
            pass
    if port is None:
        time.sleep(0.1)
if port is None:
    sys.exit("example-load: the server did not start")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
start = time.monotonic()
failed = 0
for i in range(requests):
    email = "user%d@%s" % (i, "invalid.test" if i % 10 == 9 else "example.org")
    if not keep_alive:
        conn.close()
    conn.request("POST", "/send-notification/" + email)
    response = conn.getresponse()
    response.read()
    failed += response.status != 200
    pause = start + (i + 1) / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
conn.close()
print("example-load: %d requests to port %d, %d non-200" % (requests, port,
                                                           failed))
EOF

load=$!
status=0
wait "$load" || status=$?
load=""

# Graceful stop: the server runs what is queued and its agent flushes.
kill -TERM "$server"
wait "$server" || true
server=""
if [ "$kind" = c ]; then
  cat "$tmp/server.err" >&2
else
  echo "example-load: uvicorn logged $(grep -c 'Exception in ASGI' \
    "$tmp/server.err" || true) task exceptions" >&2
fi
exit $status
