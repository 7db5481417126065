#!/usr/bin/env bash
# Load scenarios for pollcast and nginx + nchan, loopback only, each bounded in time.
#
#   bench/load/run.sh SCENARIO [options]     one run, one JSON line on stdout (see run.mjs)
#   bench/load/run.sh all [REPEATS]          the matrix of bench/RESULTS.md, REPEATS (3)
#                                            times each, JSON lines appended to
#                                            bench/load/results/DATE.jsonl (~60 min for 3)
#
# Options of one run include --io-threads N (pollcast: io_threads = N in [server]) and
# --workers N (nchan: nginx's worker_processes); see run.mjs.
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
make -s -C "$here" sseload cpuprobe
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
  # RUN_SH_DRY=1: list the runs (to stderr) instead of running them.
  if [ -n "${RUN_SH_DRY:-}" ]; then echo "run.sh: would run: $*" >&2; return 0; fi
  case "$1" in nchan-*) need_nchan ;; esac
  node "$here/run.mjs" "$@" --pollcast "$POLLCAST_BIN" --sseload "$here/sseload"
}

if [ "${1:-}" != all ]; then
  [ $# -ge 1 ] || { sed -n 2,15p "$0"; exit 2; }
  run "$@"
  exit
fi

# ---- the full matrix ------------------------------------------------------------------------------
reps=${2:-3}
mkdir -p "$here/results"
out="$here/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "run.sh: writing $out" >&2
need_nchan

# Does this pollcast have [server] io_threads and io_cpu_affinity? A daemon from before them
# refuses the keys: then the io_threads rows are skipped and the 10,000-subscriber fan-out and burst run at its default.
# The probe config without the key must pass, so that only the key decides.
probe=$(mktemp -d)
printf '[server]\nlisten = 127.0.0.1:0\n' >"$probe/plain.ini"
printf '[server]\nlisten = 127.0.0.1:0\nio_threads = 2\nio_cpu_affinity = none\n' >"$probe/io.ini"
"$POLLCAST_BIN" check-config "$probe/plain.ini" >/dev/null ||
  { echo "run.sh: $POLLCAST_BIN check-config refuses a minimal config" >&2; rm -rf "$probe"; exit 1; }
if "$POLLCAST_BIN" check-config "$probe/io.ini" >/dev/null 2>"$probe/err"; then
  io_threads=1
else
  io_threads=0
  echo "run.sh: this pollcast refuses io_threads ($(tail -n1 "$probe/err")): io_threads rows skipped," \
    "fan-out and burst at 10,000 subscribers run at its default" >&2
fi
rm -rf "$probe"

# pollcast at 1 and at 2 I/O threads beside nchan at 1 and 2 workers, alternating (issue 13,
# item 3); without io_threads, pollcast once at its default. Arguments: the scenario's options.
threads_pair() {
  local name=$1
  shift
  if [ "$io_threads" = 1 ]; then
    run "$name" "$@" --io-threads 1 >>"$out" || echo "run.sh: $name $* --io-threads 1 failed" >&2
  else
    run "$name" "$@" >>"$out" || echo "run.sh: $name $* failed" >&2
  fi
  run "nchan-$name" "$@" --workers 1 >>"$out" || echo "run.sh: nchan-$name $* --workers 1 failed" >&2
  if [ "$io_threads" = 1 ]; then
    run "$name" "$@" --io-threads 2 >>"$out" || echo "run.sh: $name $* --io-threads 2 failed" >&2
  fi
  run "nchan-$name" "$@" --workers 2 >>"$out" || echo "run.sh: nchan-$name $* --workers 2 failed" >&2
}

for rep in $(seq 1 "$reps"); do
  # pollcast and nchan alternate, so that both see the same machine load.
  # At the defaults: pollcast's io_threads left out, nchan at 1 worker.
  for subs in 1000 5000; do
    run fanout --subs "$subs" --secs 30 >>"$out" || echo "run.sh: fanout $subs failed" >&2
    run nchan-fanout --subs "$subs" --secs 30 >>"$out" || echo "run.sh: nchan-fanout $subs failed" >&2
  done
  threads_pair fanout --subs 10000 --secs 30
  # The same with the load client at normal priority: it then takes CPU from the server it
  # measures (on a machine of its own it would not; run.mjs, --client-priority).
  threads_pair fanout --subs 10000 --secs 30 --client-priority normal
  # pollcast's two I/O threads left to the kernel's placement (io_cpu_affinity = none).
  if [ "$io_threads" = 1 ]; then
    run fanout --subs 10000 --secs 30 --io-threads 2 --cpu-affinity none >>"$out" ||
      echo "run.sh: fanout --cpu-affinity none failed" >&2
  fi
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
  # Saturation: 100,000 events/s offered to each, at 1 and 2 threads / workers.
  threads_pair burst --subs 10000 --secs 30 --hz 10
  run pollers --upstreams 1000 --secs 30 >>"$out" || echo "run.sh: pollers failed" >&2
  run pollers --upstreams 1000 --secs 30 --change >>"$out" || echo "run.sh: pollers --change failed" >&2
  # The same beside 10,000 idle subscribers of another upstream (parked streams).
  run pollers --upstreams 1000 --secs 30 --change --bystanders 10000 >>"$out" ||
    echo "run.sh: pollers --bystanders failed" >&2
done
[ -n "${RUN_SH_DRY:-}" ] && { rm -f "$out"; exit 0; }
node "$here/summarize.mjs" "$out"
