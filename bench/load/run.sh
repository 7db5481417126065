#!/usr/bin/env bash
# Load scenarios for pollcast and nginx + nchan, loopback only, each bounded in time.
#
#   bench/load/run.sh SCENARIO [options]     one run, one JSON line on stdout (see run.mjs)
#   bench/load/run.sh all [REPEATS]          the matrix of bench/RESULTS.md, REPEATS (3)
#                                            times each, JSON lines appended to
#                                            bench/load/results/DATE.jsonl
#
# It raises the limits an operator would (open files; net.core.somaxconn when permitted), builds
# a Release pollcast in build-perf/ and the load client, and installs nginx + nchan from Debian
# when they are missing. POLLCAST_BIN=path skips the pollcast build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# ---- limits -----------------------------------------------------------------------------------
# Every subscriber is one descriptor on each side; the client and the server inherit this.
want_nofile=200000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_nofile" ]; then
  ulimit -Hn "$want_nofile" 2>/dev/null || want_nofile=$hard
fi
ulimit -n "$want_nofile" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The accept queue: pollcast asks for listen_backlog (4096 by default); the kernel caps it here.
somax=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 0)
if [ "$somax" -lt 4096 ]; then
  sysctl -q -w net.core.somaxconn=4096 2>/dev/null ||
    echo "run.sh: net.core.somaxconn is $somax and cannot be raised here" >&2
fi

# ---- binaries -----------------------------------------------------------------------------------
make -s -C "$here" sseload
if [ -z "${POLLCAST_BIN:-}" ]; then
  cmake -S "$root" -B "$root/build-perf" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build-perf" -j2 --target pollcast >/dev/null
  POLLCAST_BIN="$root/build-perf/pollcast"
fi
need_nchan() {
  [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] && command -v nginx >/dev/null && return 0
  echo "run.sh: installing nginx and libnginx-mod-nchan (Debian)" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q nginx libnginx-mod-nchan >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q nginx libnginx-mod-nchan >/dev/null; }
  else
    sudo apt-get install -y -q nginx libnginx-mod-nchan >/dev/null
  fi
}

run() {
  case "$1" in nchan-*) need_nchan ;; esac
  node "$here/run.mjs" "$@" --pollcast "$POLLCAST_BIN" --sseload "$here/sseload"
}

if [ "${1:-}" != all ]; then
  [ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
  run "$@"
  exit
fi

# ---- the full matrix ------------------------------------------------------------------------------
reps=${2:-3}
mkdir -p "$here/results"
out="$here/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "run.sh: writing $out" >&2
need_nchan
for rep in $(seq 1 "$reps"); do
  # pollcast and nchan alternate, so that both see the same machine load.
  for subs in 1000 5000 10000; do
    run fanout --subs "$subs" --secs 30 >>"$out" || echo "run.sh: fanout $subs failed" >&2
    run nchan-fanout --subs "$subs" --secs 30 >>"$out" || echo "run.sh: nchan-fanout $subs failed" >&2
  done
  run idle --subs 10000 --secs 20 >>"$out" || echo "run.sh: idle failed" >&2
  run nchan-idle --subs 10000 --secs 20 >>"$out" || echo "run.sh: nchan-idle failed" >&2
  run idle --subs 10000 --secs 20 --max-header-bytes 1KiB >>"$out" || echo "run.sh: idle 1KiB failed" >&2
  # Reconnect storm: all drop, come back with Last-Event-ID at once or after 3 s of changes.
  for gap in 0 3; do
    run reconnect --subs 10000 --secs 30 --gap "$gap" >>"$out" || echo "run.sh: reconnect failed" >&2
    run nchan-reconnect --subs 10000 --secs 30 --gap "$gap" >>"$out" || echo "run.sh: nchan-reconnect failed" >&2
  done
  run burst --subs 5000 --secs 30 --hz 20 >>"$out" || echo "run.sh: burst failed" >&2
  run nchan-burst --subs 5000 --secs 30 --hz 20 >>"$out" || echo "run.sh: nchan-burst failed" >&2
  # pollcast polls at most every 100 ms: nchan at the same delivered rate too.
  run nchan-burst --subs 5000 --secs 30 --hz 10 >>"$out" || echo "run.sh: nchan-burst 10 failed" >&2
  # Saturation: 100,000 events/s offered to each.
  run burst --subs 10000 --secs 30 --hz 10 >>"$out" || echo "run.sh: burst 10k failed" >&2
  run nchan-burst --subs 10000 --secs 30 --hz 10 >>"$out" || echo "run.sh: nchan-burst 10k failed" >&2
  run pollers --upstreams 1000 --secs 30 >>"$out" || echo "run.sh: pollers failed" >&2
  run pollers --upstreams 1000 --secs 30 --change >>"$out" || echo "run.sh: pollers --change failed" >&2
  # The same beside 10,000 idle subscribers of another upstream (parked streams).
  run pollers --upstreams 1000 --secs 30 --change --bystanders 10000 >>"$out" ||
    echo "run.sh: pollers --bystanders failed" >&2
done
node "$here/summarize.mjs" "$out"
