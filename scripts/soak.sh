#!/usr/bin/env bash
# Soak test of pollcast (issue 4), bounded and on loopback only: SOAK_SECONDS (default 600) of
# SOAK_SUBSCRIBERS (1000) SSE subscribers on one stream, SOAK_CHURN (100) of them leaving and as
# many joining every second, the upstream document changing every SOAK_CHANGE_MS (200) ms. The
# RSS and the open file descriptors of pollcast are sampled every SOAK_SAMPLE_S (10) s with the
# load's counters and /metrics' subscriber gauge; at the end a table and a verdict: after the
# warm-up (the first third), the largest RSS and fd count of the last third may exceed those of
# the first third by at most SOAK_RSS_TOLERANCE (10) percent (plus 1 MiB of allocator slack)
# and SOAK_FD_TOLERANCE (10) percent. Exit status 0 when flat, 1 when growing, 2 on error.
#
# Usage: scripts/soak.sh [POLLCAST_BINARY]        (default: build/pollcast)
#        scripts/soak.sh --report SAMPLES.tsv     (table and verdict of an earlier run)
# The samples are kept in $SOAK_OUT (default: a temporary directory, printed at the end).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SUBSCRIBERS=${SOAK_SUBSCRIBERS:-1000}
SOAK_CHURN=${SOAK_CHURN:-100}
SOAK_CHANGE_MS=${SOAK_CHANGE_MS:-200}
SOAK_SAMPLE_S=${SOAK_SAMPLE_S:-10}
SOAK_RSS_TOLERANCE=${SOAK_RSS_TOLERANCE:-10}
SOAK_FD_TOLERANCE=${SOAK_FD_TOLERANCE:-10}
export SOAK_SECONDS SOAK_SUBSCRIBERS SOAK_CHURN SOAK_CHANGE_MS SOAK_SAMPLE_S

# report FILE: the table and the verdict of a samples file (tab-separated, one header line:
# t rss_kb fds subscribers connected opened closed_by_server errors events changes).
report() {
  awk -v rtol="$SOAK_RSS_TOLERANCE" -v ftol="$SOAK_FD_TOLERANCE" -F'\t' '
    NR == 1 { next }
    { n++; t[n] = $1; rss[n] = $2; fd[n] = $3; sub_[n] = $4; con[n] = $5; op[n] = $6; cbs[n] = $7;
      err[n] = $8; ev[n] = $9; ch[n] = $10 }
    END {
      printf "%6s %10s %6s %12s %10s %10s %12s %7s %10s %8s\n", "t(s)", "RSS(KiB)", "fds",
        "subscribers", "connected", "opened", "server-ends", "errors", "events", "changes"
      for (i = 1; i <= n; i++)
        printf "%6d %10d %6d %12d %10d %10d %12d %7d %10d %8d\n", t[i], rss[i], fd[i], sub_[i],
          con[i], op[i], cbs[i], err[i], ev[i], ch[i]
      if (n < 6) { print "verdict: INCONCLUSIVE (fewer than 6 samples)"; exit 2 }
      third = int(n / 3)
      for (i = 1; i <= third; i++) { if (rss[i] > r1) r1 = rss[i]; if (fd[i] > f1) f1 = fd[i] }
      for (i = n - third + 1; i <= n; i++) { if (rss[i] > r3) r3 = rss[i]; if (fd[i] > f3) f3 = fd[i] }
      rmax = r1 * (1 + rtol / 100) + 1024
      fmax = f1 * (1 + ftol / 100)
      printf "first third (warm-up): max RSS %d KiB, max fds %d\n", r1, f1
      printf "last third:            max RSS %d KiB (%+.1f%%), max fds %d (%+.1f%%)\n", r3,
        (r3 - r1) * 100 / r1, f3, (f3 - f1) * 100 / f1
      ok = r3 <= rmax && f3 <= fmax
      printf "verdict: %s (limits: RSS %d KiB, fds %d)\n", ok ? "FLAT" : "GROWING", rmax, fmax
      exit ok ? 0 : 1
    }' "$1"
}

if [ "${1:-}" = "--report" ]; then
  report "$2"
  exit $?
fi

BIN=${1:-build/pollcast}
[ -x "$BIN" ] || { echo "soak: no pollcast binary at $BIN" >&2; exit 2; }
command -v node >/dev/null || { echo "soak: node is required" >&2; exit 2; }
OUT=${SOAK_OUT:-$(mktemp -d /tmp/pollcast-soak.XXXXXX)}
mkdir -p "$OUT"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The scripted upstream (exits when its stdin closes: fed by a sleeping process we own).
mkfifo "$OUT/up.in"
sleep $((SOAK_SECONDS + 120)) > "$OUT/up.in" &
PIDS+=($!)
node tests/integration/upstream_server.js < "$OUT/up.in" > "$OUT/upstream.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  UP_PORT=$(sed -n 's/^{"port":\([0-9]*\)}$/\1/p' "$OUT/upstream.out" | head -1)
  [ -n "$UP_PORT" ] && break
  sleep 0.1
done
[ -n "${UP_PORT:-}" ] || { echo "soak: the upstream did not start" >&2; exit 2; }
curl -sf -X PUT --data '{"t":0,"n":0,"items":[]}' \
  "http://127.0.0.1:$UP_PORT/_control/doc?path=/soak" > /dev/null

cat > "$OUT/pollcast.ini" <<EOF
[server]
listen = 127.0.0.1:0
max_subscribers_per_ip = 0
connect_rate_per_ip = 0
access_log = false
log_level = warn

[upstream soak]
url = http://127.0.0.1:$UP_PORT/soak
interval = ${SOAK_CHANGE_MS}ms
EOF
"$BIN" -c "$OUT/pollcast.ini" > "$OUT/pollcast.out" 2> "$OUT/pollcast.err" &
PC_PID=$!
PIDS+=($PC_PID)
for _ in $(seq 100); do
  PC_PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$OUT/pollcast.out" | head -1)
  [ -n "$PC_PORT" ] && break
  sleep 0.1
done
[ -n "${PC_PORT:-}" ] || { echo "soak: pollcast did not start" >&2; cat "$OUT/pollcast.err" >&2; exit 2; }

echo "soak: pollcast pid $PC_PID on port $PC_PORT, upstream port $UP_PORT; $SOAK_SECONDS s of" \
  "$SOAK_SUBSCRIBERS subscribers, churn $SOAK_CHURN/s, a change every $SOAK_CHANGE_MS ms;" \
  "samples in $OUT/samples.tsv"
printf 't\trss_kb\tfds\tsubscribers\tconnected\topened\tclosed_by_server\terrors\tevents\tchanges\n' \
  > "$OUT/samples.tsv"

# Each line of the load's counters triggers one sample of the daemon.
node scripts/soak_load.js "http://127.0.0.1:$PC_PORT/streams/soak" "http://127.0.0.1:$UP_PORT" \
  2> "$OUT/load.err" | while read -r line; do
  if ! kill -0 "$PC_PID" 2>/dev/null; then
    echo "soak: pollcast died" >&2
    break
  fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PC_PID/status")
  fds=$(ls "/proc/$PC_PID/fd" | wc -l)
  subs=$(curl -s --max-time 5 "http://127.0.0.1:$PC_PORT/metrics" |
    awk '$1 == "pollcast_subscribers" {print $2}')
  vals=$(node -e 'const j = JSON.parse(process.argv[1]); console.log([j.t, j.connected, j.opened,
    j.closed_by_server, j.errors, j.events, j.changes].join("\t"))' "$line")
  t=${vals%%$'\t'*}
  rest=${vals#*$'\t'}
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "${subs:-0}" "$rest" >> "$OUT/samples.tsv"
  printf 'soak: t=%ss RSS %s KiB, fds %s, subscribers %s\n' "$t" "$rss" "$fds" "${subs:-?}"
done

if ! kill -0 "$PC_PID" 2>/dev/null; then
  echo "soak: FAIL: pollcast exited during the run" >&2
  cat "$OUT/pollcast.err" >&2
  exit 2
fi
kill -TERM "$PC_PID"
rc=0
wait "$PC_PID" || rc=$?
echo "soak: pollcast exit status after SIGTERM: $rc"
rc=0
report "$OUT/samples.tsv" || rc=$?
echo "soak: samples and logs in $OUT"
exit $rc
