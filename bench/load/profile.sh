#!/usr/bin/env bash
# One load run with pollcast's CPU profiled in its steady window (issue 13, round six).
#
#   bench/load/profile.sh OUT.data [run.sh options...]
#       e.g. bench/load/profile.sh /tmp/p1.data fanout --subs 10000 --secs 50 --io-threads 1
#
# Starts `bench/load/run.sh OPTIONS` (its JSON line goes to OUT.json), waits for the pollcast it
# started, lets PROFILE_DELAY seconds (14) pass for the clients to connect, then samples every
# thread of that pollcast with `perf record -e cpu-clock -F 1999 -g` for PROFILE_SECS (36; keep
# it inside the run's --secs window). Then `node bench/load/perfsplit.mjs OUT.data` shows where
# the samples went. Needs perf (Debian: linux-perf) and kernel.perf_event_paranoid <= 1 or root.
# The run must be the only pollcast started meanwhile: it is found as the newest one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { sed -n 2,13p "$0"; exit 2; }
out=$1
shift
command -v perf >/dev/null || { echo "profile.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
before=$(pgrep -n -x pollcast || true)
"$here/run.sh" "$@" >"${out%.data}.json" &
job=$!
pid=
for _ in $(seq 1 600); do
  pid=$(pgrep -n -x pollcast || true)
  [ -n "$pid" ] && [ "$pid" != "$before" ] && break
  pid=
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
[ -n "$pid" ] || { echo "profile.sh: no pollcast started" >&2; wait "$job"; exit 1; }
sleep "${PROFILE_DELAY:-14}"
if ! perf record -q -e cpu-clock -F 1999 -g -p "$pid" -o "$out" -- sleep "${PROFILE_SECS:-36}" 2>"$out.err"; then
  echo "profile.sh: perf record failed: $(tail -1 "$out.err")" >&2
  wait "$job" || true
  exit 1
fi
rm -f "$out.err"
wait "$job"
echo "profile.sh: $out (pollcast $pid), the run's line in ${out%.data}.json" >&2
