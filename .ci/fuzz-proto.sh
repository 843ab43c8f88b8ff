#!/bin/sh
# Short fuzz run of the protocol decoder and the collector's ingest
# (tests/fuzz/fuzz_proto.c): builds the libFuzzer target with clang in
# build-fuzz and runs it for FUZZ_SECONDS (default 60) from a seed corpus of
# valid frames. Fails on any crash, leak or sanitizer report.
set -eu
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if [ ! -d build-fuzz ]; then
  CC=clang meson setup build-fuzz -Dfuzz=enabled -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz tests/fuzz/fuzz_proto
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
python3 tests/fuzz/proto_seeds.py "$corpus"
build-fuzz/tests/fuzz/fuzz_proto -max_total_time="$seconds" -max_len=70000 \
  -print_final_stats=1 "$corpus"
