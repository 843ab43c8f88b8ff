#!/bin/sh
# Runs its arguments as root: directly when root already, else through
# sudo. A fresh Debian may have no sudo: then it says what to do rather
# than fail with "sudo: not found".
# Usage: scripts/as-root.sh COMMAND [ARGUMENT]...
set -eu
if [ "$(id -u)" -eq 0 ]; then
  exec "$@"
fi
if ! command -v sudo >/dev/null 2>&1; then
  echo "taskwatch: sudo is not installed; run this script as root" >&2
  exit 1
fi
exec sudo "$@"
