#!/usr/bin/env bash
# Syscalls of pollcast during fan-out: runs `run.sh fanout --subs SUBS --secs 25` and, once the
# subscribers are streaming, counts pollcast's system calls with `strace -c -f -p PID` over
# SECONDS (6). Prints strace's table on stdout.
#
#   bench/load/strace.sh [SUBS] [SECONDS]       (POLLCAST_BIN=path as for run.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
subs=${1:-1000}
secs=${2:-6}
out=$(mktemp -d)
"$here/run.sh" fanout --subs "$subs" --secs 25 >"$out/run.json" 2>"$out/run.err" &
runpid=$!
# The pollcast that this run.sh started: the first child of its node driver that is not sseload.
pc=
for _ in $(seq 1 300); do
  sleep 0.2
  for p in $(pgrep -P "$runpid" node || true); do
    for c in $(pgrep -P "$p" || true); do
      [ "$(cat "/proc/$c/comm" 2>/dev/null)" != sseload ] && pc=$c && break
    done
  done
  [ -n "$pc" ] && break
done
[ -n "$pc" ] || { echo "strace.sh: pollcast did not start" >&2; cat "$out/run.err" >&2; exit 1; }
# Ramp-up (subs / 2000 per second), the 1 s settle, the first changes.
sleep $((subs / 2000 + 6))
timeout -s INT "$secs" strace -c -f -p "$pc" -o "$out/strace.txt" || true
wait "$runpid" || true
cat "$out/strace.txt"
echo "run: $(head -c 300 "$out/run.json")" >&2
rm -rf "$out"
