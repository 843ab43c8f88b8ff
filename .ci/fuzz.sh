#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for a short while
# (FUZZ_SECONDS, default 60) starting from its seed corpus, if it has one
# in tests/fuzz/corpus/<target>/. A crash fails the run and leaves the
# reproducer in the build directory.
set -eu
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
build=build-fuzz
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is missing (scripts/deps.sh installs it)" >&2
  exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzz=enabled -Dbuildtype=debugoptimized >/dev/null
fi
# Only the fuzz targets (and what they link) are needed here.
wanted=$(ninja -C "$build" -t targets all | sed -n 's|^\(tests/fuzz/fuzz_[A-Za-z0-9_]*\): .*|\1|p' | sort -u)
if [ -z "$wanted" ]; then
  echo "fuzz: no fuzz targets are defined" >&2
  exit 1
fi
# shellcheck disable=SC2086
ninja -C "$build" $wanted
targets=$(find "$build/tests/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x 2>/dev/null | sort)
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets were built" >&2
  exit 1
fi
ran=0
for t in $targets; do
  name=$(basename "$t")
  corpus="$build/corpus-$name"
  mkdir -p "$corpus"
  seeds=""
  [ -d "tests/fuzz/corpus/$name" ] && seeds="tests/fuzz/corpus/$name"
  echo "fuzz: $name for ${seconds}s"
  # shellcheck disable=SC2086
  (cd "$build" && "./tests/fuzz/$name" -max_total_time="$seconds" \
      -print_final_stats=1 "$(basename "$corpus")" ${seeds:+"../$seeds"}) \
      >"$build/$name.log" 2>&1 || {
    tail -n 40 "$build/$name.log" >&2
    echo "fuzz: $name FAILED" >&2
    exit 1
  }
  grep -E '^stat::number_of_executed_units' "$build/$name.log" || true
  ran=$((ran + 1))
done
echo "fuzz: $ran targets ran clean"
