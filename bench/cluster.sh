#!/usr/bin/env bash
# Fan-out through three pollcast nodes in cluster mode (one redis-server) against the same
# subscribers on one node: latency p50/p99, CPU per node, Redis CPU and Redis commands per change.
# Loopback only, bounded in time; results in bench/RESULTS.md ("Cluster mode").
#
#   bench/cluster.sh [REPEATS] [--subs N] [--secs S] [--interval MS]
#       REPEATS (3) runs of each: one node (no [cluster]), three nodes; JSON lines appended to
#       bench/load/results/cluster-DATE.jsonl, and a summary (medians) printed at the end.
#   bench/cluster.sh once [--nodes K | --single] [options]     one run, one JSON line
#
# It raises the open-file limit, builds a Release pollcast in build-perf/ (POLLCAST_BIN=path
# skips that) and the load client (make -C bench/load).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v redis-server >/dev/null || { echo "cluster.sh: redis-server is missing (scripts/install-deps.sh)" >&2; exit 1; }
make -s -C "$here/load" sseload
if [ -z "${POLLCAST_BIN:-}" ]; then
  cmake -S "$root" -B "$root/build-perf" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build-perf" -j2 --target pollcast >/dev/null
  POLLCAST_BIN="$root/build-perf/pollcast"
fi
run() { node "$here/cluster.mjs" "$@" --pollcast "$POLLCAST_BIN" --sseload "$here/load/sseload"; }

if [ "${1:-}" = once ]; then
  shift
  run "$@"
  exit
fi
reps=3
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then reps=$1; shift; fi
mkdir -p "$here/load/results"
out="$here/load/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "cluster.sh: writing $out" >&2
for rep in $(seq 1 "$reps"); do
  # One node and three nodes alternate, so that both see the same machine load.
  run --single "$@" >>"$out" || echo "cluster.sh: single-node run $rep failed" >&2
  run --nodes 3 "$@" >>"$out" || echo "cluster.sh: cluster run $rep failed" >&2
done
node "$here/cluster-summary.mjs" "$out"
