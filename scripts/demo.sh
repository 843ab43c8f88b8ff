#!/bin/sh
# Installs what is missing, builds taskwatch and installs it (meson install
# into /usr/local, with sudo when not root), then shows it working: a
# collector on a private unix socket, traced servers under a steady load -
# the demo server simulation, and the example C and FastAPI servers when
# they can run - and the dashboard: live in a terminal (q quits), a plain
# snapshot and a summary otherwise. At exit it says where the demo's store
# is and what to ask it.
#
# Usage: scripts/demo.sh [BATCHES]
#   BATCHES  requests the demo simulation makes (default: 6000 in a
#            terminal, at 50 a second: two minutes; 300 otherwise)
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh

if [ ! -f build/build.ninja ]; then
  echo "taskwatch: configuring the build (meson setup build)"
  if ! meson setup build >build-setup.log 2>&1; then
    cat build-setup.log >&2
    exit 1
  fi
  rm -f build-setup.log
fi
echo "taskwatch: building (ninja -C build; a first build takes a few minutes)"
ninja -C build
echo "taskwatch: installing into /usr/local (meson install -C build)"
sh scripts/as-root.sh meson install -C build --no-rebuild --quiet
sh scripts/as-root.sh ldconfig

tw=taskwatch
if [ "$(command -v taskwatch)" != /usr/local/bin/taskwatch ]; then
  echo "taskwatch: /usr/local/bin is not first on PATH; running the" \
    "installed /usr/local/bin/taskwatch" >&2
  tw=/usr/local/bin/taskwatch
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/taskwatch-demo.XXXXXX")
db=$tmp/taskwatch.db
url=unix:$tmp/collector.sock
pids=""
collector=""
finish() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  if [ -n "$collector" ]; then
    kill -TERM "$collector" 2>/dev/null || true
    wait "$collector" 2>/dev/null || true
  fi
  rm -f "$tmp/collector.sock"
  if [ -s "$db" ]; then
    cat <<EOF

The demo's store is $db (kept; the logs are beside it).
Ask it, for instance:
  taskwatch query --db $db status:failed --limit 5
  taskwatch query --db $db --sort run --reverse --limit 5
  taskwatch query stats --db $db --by name
or look again with: taskwatch top --db $db
EOF
  fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$tw" collector --db "$db" --listen "$url" 2>"$tmp/collector.log" &
collector=$!
i=0
while [ ! -S "$tmp/collector.sock" ]; do
  i=$((i + 1))
  if [ $i -gt 200 ] || ! kill -0 "$collector" 2>/dev/null; then
    echo "taskwatch: the collector did not start:" >&2
    cat "$tmp/collector.log" >&2
    exit 1
  fi
  sleep 0.05
done
echo "collector: $url -> $db"

# The example servers beside the simulation: the C HTTP server that links
# the agent, and the FastAPI app traced through the Python binding.
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
  # Live: requests at a realistic pace, and a mail server that takes 30 ms,
  # for about two minutes; the dashboard says FINISHED once every server
  # has stopped. Quit with q.
  batches=${1:-6000}
  start_loads $((batches / 5)) 10
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 50 --email-ms 30ms >"$tmp/demo.log" 2>&1 &
  pids="$pids $!"
  "$tw" top --db "$db"
else
  batches=${1:-300}
  start_loads 100 100
  "$tw" demo --collector "$url" --batches "$batches" --fail-every 10 \
    --rate 200 --email-ms 5ms
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
  "$tw" query --db "$db" status:failed --sort enqueued --reverse --limit 5
fi
