#!/bin/sh
# Installs what is missing, builds taskwatch, then shows it working: a
# collector on a private unix socket, the demo server simulation (and the
# example HTTP server when built) as load, and the dashboard - live in a
# terminal (press q to quit), or a plain snapshot and a summary otherwise.
# Usage: scripts/demo.sh [BATCHES]
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

tw=build/cli/taskwatch
batches=${1:-3000}
tmp=$(mktemp -d)
db=$tmp/taskwatch.db
url=unix:$tmp/collector.sock
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  if [ -n "${collector:-}" ]; then
    kill -TERM "$collector" 2>/dev/null || true
    wait "$collector" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$tw" collector --db "$db" --listen "$url" 2>"$tmp/collector.log" &
collector=$!
i=0
while [ ! -S "$tmp/collector.sock" ]; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 "$collector" 2>/dev/null; then
    echo "taskwatch: the collector did not start:" >&2
    cat "$tmp/collector.log" >&2
    exit 1
  fi
  sleep 0.05
done
echo "collector: $url -> $db"

# The example servers under a small load: the C HTTP server that links the
# agent, and the FastAPI app traced through the Python binding.
loads=""
if [ -x build/examples/notify_server/notify_server ]; then
  loads="c"
fi
if /usr/bin/python3 -c 'import fastapi, uvicorn' 2>/dev/null; then
  loads="$loads fastapi"
fi
start_loads() {
  for kind in $loads; do
    scripts/example-load.sh "$url" build "$kind" "$1" "$2" \
      >"$tmp/example-$kind.log" 2>&1 &
    pids="$pids $!"
  done
}

if [ -t 1 ]; then
  # Live: a steady load while the dashboard runs; quit with q.
  start_loads 3000 20
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 100 --email-ms 20 --quiet >"$tmp/demo.log" 2>&1 &
  pids="$pids $!"
  "$tw" top --db "$db"
else
  start_loads 200 100
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 2000 --email-ms 5
  for p in $pids; do
    wait "$p" || echo "taskwatch: a load run failed (see its log)" >&2
  done
  pids=""
  for kind in $loads; do
    echo "example server ($kind): $(tail -n 1 "$tmp/example-$kind.log")"
  done
  echo
  "$tw" top --db "$db" --once
  echo
  echo "by service:"
  "$tw" query stats --db "$db" --by service
  echo
  echo "newest failures:"
  "$tw" query --db "$db" status:failed --sort enqueued --reverse \
    --limit 5 --format table
fi
