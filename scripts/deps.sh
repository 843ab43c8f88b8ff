#!/bin/sh
# Installs the Debian packages taskwatch needs to build, test, benchmark and
# run its demos. Safe to run again: it only installs what is missing.
set -eu

PACKAGES="meson ninja-build gcc pkg-config libuv1-dev libsqlite3-dev libncurses-dev libcmocka-dev sqlite3 tmux clang libclang-rt-14-dev liblttng-ust-dev lttng-tools python3 python3-fastapi python3-uvicorn python3-httpx python3-pip python3-venv libhttp-parser-dev libcurl4-openssl-dev prometheus help2man systemd libssl-dev openssl wrk curl iproute2"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done
if [ -z "$missing" ]; then
  exit 0
fi
echo "taskwatch: installing:$missing"
root="$(dirname "$0")/as-root.sh"
sh "$root" apt-get update -qq
# shellcheck disable=SC2086
sh "$root" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends $missing
