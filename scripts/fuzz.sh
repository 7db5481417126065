#!/usr/bin/env bash
# Long libFuzzer runs of pollcast's fuzz targets (fuzz/README.md). Builds them with clang in
# build-fuzz (unless -n), then runs each target for SECONDS from its seed corpus
# fuzz/corpus/<target>/ plus a working corpus fuzz/corpus-run/<target>/ that grows from run to
# run (ignored by git). Crashing inputs land in fuzz/crashes/ (also ignored). Prints one line per
# target with the executions it ran and exits 1 if any target found something.
#
#   scripts/fuzz.sh [-t SECONDS] [-j PARALLEL] [-b BUILD_DIR] [-n] [-m] [TARGET...]
#     -t  seconds per target (default 600)
#     -j  targets run at once (default 1)
#     -b  build directory (default build-fuzz)
#     -n  do not (re)build
#     -m  afterwards, merge what the working corpus adds into the seed corpus (minimized)
#   TARGET: json diff pointer config url sse_id jwt (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
parallel=1
build=build-fuzz
do_build=1
merge=0
while getopts "t:j:b:nm" opt; do
  case $opt in
  t) seconds=$OPTARG ;;
  j) parallel=$OPTARG ;;
  b) build=$OPTARG ;;
  n) do_build=0 ;;
  m) merge=1 ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json diff pointer config url sse_id jwt)

if [ "$do_build" = 1 ]; then
  cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DPOLLCAST_FUZZ=ON >/dev/null
  cmake --build "$build" -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null
fi

declare -A max_len=([json]=8192 [diff]=8192 [pointer]=1024 [config]=16384 [url]=9000
                    [sse_id]=128 [jwt]=10000)
mkdir -p fuzz/crashes fuzz/corpus-run
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {
  local t=$1 dict=()
  mkdir -p "fuzz/corpus-run/$t"
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="${max_len[$t]:-4096}" -print_final_stats=1 -artifact_prefix="fuzz/crashes/$t-" \
    "${dict[@]}" "fuzz/corpus-run/$t" "fuzz/corpus/$t" >"$logs/$t.log" 2>&1
}

status=0
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

for t in "${targets[@]}"; do
  log="$logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$({ grep -o 'cov: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
  if grep -qE '^==[0-9]+==ERROR|runtime error|invariant broken|Test unit written' "$log"; then
    echo "$t: FINDING after ${execs:-?} execs; log follows"
    grep -E 'ERROR|runtime error|invariant broken|SUMMARY|Test unit written' "$log" | head -20 || true
    status=1
  else
    echo "$t: ${execs:-?} execs in ${seconds} s, no finding (coverage ${cov:-?} edges, corpus $(ls "fuzz/corpus-run/$t" | wc -l) files)"
  fi
  if [ "$merge" = 1 ]; then
    "$build/fuzz/fuzz_$t" -merge=1 -max_len="${max_len[$t]:-4096}" "fuzz/corpus/$t" \
      "fuzz/corpus-run/$t" >/dev/null 2>&1
  fi
done
exit $status
