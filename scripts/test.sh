#!/bin/sh
# Installs what is missing, builds taskwatch and runs every test (unit and
# integration). Usage: scripts/test.sh [BUILD_DIR [MESON_SETUP_OPTIONS...]]
# Ends with a line "tests: N passed, N failed" and a non-zero status when
# anything failed.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh

build=${1:-build}
[ $# -gt 0 ] && shift
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" "$@" >/dev/null
else
  meson setup "$build" "$@"
fi
ninja -C "$build"

log=$(mktemp)
rcfile=$(mktemp)
# sh has no pipefail: the subshell records meson's own status for us.
(
  status=0
  meson test -C "$build" --print-errorlogs --num-processes 2 || status=$?
  echo "$status" >"$rcfile"
) 2>&1 | tee "$log"
status=$(cat "$rcfile")
rm -f "$rcfile"
ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
rm -f "$log"
echo "tests: ${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed"
if [ "$status" -eq 0 ] && [ $(( ${fail:-0} + ${timeout:-0} )) -ne 0 ]; then
  status=1
fi
if [ "${ok:-0}" -eq 0 ] && [ "$status" -eq 0 ]; then
  echo "taskwatch: no test ran" >&2
  exit 1
fi
exit "$status"
