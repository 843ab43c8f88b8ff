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

# The example HTTP server under a small load, when it is part of the build.
if [ -x scripts/example-load.sh ] && [ -x build/examples/notify_server/notify_server ]; then
  scripts/example-load.sh "$url" build >"$tmp/example.log" 2>&1 &
  pids="$pids $!"
fi

if [ -t 1 ]; then
  # Live: a steady load while the dashboard runs; quit with q.
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 100 --email-ms 20 --quiet >"$tmp/demo.log" 2>&1 &
  pids="$pids $!"
  "$tw" top --db "$db"
else
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 2000 --email-ms 5
  wait_pids=$pids
  for p in $wait_pids; do wait "$p" 2>/dev/null || true; done
  pids=""
  echo
  "$tw" top --db "$db" --once
  echo
  echo "failed tasks (newest 5):"
  "$tw" query --db "$db" --status failed --limit 5 --format table
fi
