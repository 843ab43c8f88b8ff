#!/bin/sh
# Installs the Debian packages taskwatch needs to build, test, benchmark and
# run its demos. Safe to run again: it only installs what is missing.
set -eu

PACKAGES="meson ninja-build gcc pkg-config libuv1-dev libsqlite3-dev libncurses-dev libcmocka-dev sqlite3 tmux clang libclang-rt-14-dev liblttng-ust-dev lttng-tools python3 python3-fastapi python3-uvicorn python3-httpx python3-pip python3-venv libhttp-parser-dev libcurl4-openssl-dev prometheus help2man systemd"

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
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  # A fresh Debian may have no sudo: say what to do rather than fail with
  # "sudo: not found".
  if ! command -v sudo >/dev/null 2>&1; then
    echo "taskwatch: sudo is not installed; run scripts/deps.sh as root" >&2
    exit 1
  fi
  SUDO="sudo"
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
