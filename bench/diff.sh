#!/usr/bin/env bash
# The diff benchmark in one command: builds a Release pollcast in build/bench, then runs
# bench/diff-bench.mjs (pollcast diff vs fast-json-patch vs jsondiffpatch, see bench/README.md).
# Arguments are passed on, e.g. bench/diff.sh --repeat=30 --only=p4 --no-pathological.
# Set POLLCAST_BIN to benchmark an existing binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d tests/oracle/node_modules ]; then
  echo "bench: tests/oracle/node_modules is missing: run scripts/install-deps.sh" >&2
  exit 1
fi
bin=${POLLCAST_BIN:-}
if [ -z "$bin" ]; then
  cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/bench -j "$(nproc)" --target pollcast >/dev/null
  bin=build/bench/pollcast
fi
exec node bench/diff-bench.mjs "$bin" "$@"
