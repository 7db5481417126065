#!/usr/bin/env bash
# The newcomer's check: the README's two commands, exactly as written, on a truly fresh Debian
# bookworm. It makes a `debootstrap --variant=minbase bookworm` root from this machine's Debian
# mirror, clones the committed tree (HEAD) into it with ../shared laid beside it as CI lays it,
# and runs the two commands of README.md's "commands" block (read from the file, not retyped) in
# a chroot as root, printing each step's time and the final ctest summary.
#
# The machine's part, kept apart from the README's commands: the Debian sources (this machine's
# bookworm entries), its /etc/hosts and /etc/resolv.conf, its CA certificates (/usr/local/share/ca-certificates: HTTPS to the package
# registries may pass through a proxy with its own CA; NODE_EXTRA_CA_CERTS names them for node),
# apt proxy settings and http(s)_proxy variables if it has any. When 127.0.0.1:8080 is taken on
# this machine, POLLCAST_SERVER_LISTEN moves the demo to a free port (the chroot shares the
# network).
#
# The first command ends by starting the daemon: it runs in the background until the demo stream
# serves a data event (curl), then its pollcast gets SIGTERM and must exit. The second command
# (bash .ci/run) runs the whole suite: about 6-10 minutes on a quiet machine, more when it is busy.
#
#   sudo scripts/fresh-check.sh [--keep] [--first-only] [--work DIR]
#
# --first-only stops after the first command (a quick look, not the check).
# Needs root (debootstrap, chroot, mount), debootstrap, git and curl. Full logs in DIR (default
# /var/tmp/pollcast-fresh-check); the root is removed at the end unless --keep.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=/var/tmp/pollcast-fresh-check
keep=0
first_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1 ;;
    --first-only) first_only=1 ;;
    --work) work=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "fresh-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

t_all=$SECONDS
say() { printf '\n== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'fresh-check: FAIL: %s\n' "$*" >&2; exit 1; }
took() { printf '   (%s: %d s)\n' "$1" $((SECONDS - $2)); }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
for c in debootstrap git curl chroot; do command -v $c >/dev/null || die "$c is not installed"; done
[ -d "$top/../shared" ] || die "$top/../shared is missing (the test corpora CI lays beside the tree)"
mkdir -p "$work"
work=$(cd "$work" && pwd)
root=$work/root

# ---- cleanup: every mount under the root goes, and every process still running in it ----
mounted=()
in_root_pids() { # processes whose root directory is the chroot
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  local pids
  pids=$(in_root_pids)
  if [ -n "$pids" ]; then kill -TERM $pids 2>/dev/null || true; sleep 1; fi
  pids=$(in_root_pids)
  if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; fi
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -R "${mounted[$i]}" 2>/dev/null || umount -R -l "${mounted[$i]}" 2>/dev/null || true
  done
  mounted=()
}
trap cleanup EXIT
safe_rm() {
  if findmnt -rn -o TARGET | grep "^$1" >/dev/null; then die "$1 still has mounts; not removing it"; fi
  rm -rf --one-file-system "$1"
}

# ---- this machine's Debian bookworm sources, as deb822 paragraphs ----
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # One-line style: deb [options] URI SUITE COMPONENT...
    awk '$1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      uri = $i; suite = $(i + 1)
      if (suite !~ /^bookworm(-updates|-security)?$/) next
      printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", uri, suite
    }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 style: paragraphs whose suites are Debian bookworm ones, without comments.
    awk 'BEGIN { RS = ""; FS = "\n" } {
      keep = 0; out = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^#/) continue
        if ($i ~ /^Suites:/ && $i ~ /[ :]bookworm(-updates|-security)?( |$)/) keep = 1
        out = out $i "\n"
      }
      if (keep && out ~ /debian-archive-keyring/) printf "%s\n", out
    }' "$f"
  done
}
sources=$(debian_sources)
mirror=$(printf '%s\n' "$sources" | awk '/^URIs:/ { uri = $2 } /^Suites:/ && / bookworm( |$)/ { print uri; exit }')
[ -n "$mirror" ] || die "no Debian bookworm entry in /etc/apt/sources.list{,.d}"

# ---- the README's commands, as written ----
mapfile -t readme_cmds < <(awk '
  prev == "<!-- test: commands -->" && /^```/ { inblock = 1; prev = $0; next }
  inblock && /^```/ { exit }
  inblock { print }
  { prev = $0 }' "$top/README.md")
[ ${#readme_cmds[@]} = 2 ] || die "README.md's commands block should hold two commands, not ${#readme_cmds[@]}"
head_sha=$(git -C "$top" rev-parse HEAD)
git -C "$top" diff --quiet HEAD -- README.md scripts .ci ||
  echo "fresh-check: note: uncommitted changes in the tree are not part of the check (it clones HEAD)"

say "fresh-check of $(git -C "$top" log -1 --format='%h %s' | cut -c1-90)"
printf '   command 1: %s\n   command 2: %s\n' "${readme_cmds[0]}" "${readme_cmds[1]}"

# ---- 1. a fresh root ----
say "debootstrap --variant=minbase bookworm $root $mirror"
t=$SECONDS
safe_rm "$root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; die "debootstrap failed (log: $work/debootstrap.log)"; }
took debootstrap $t

# ---- 2. the machine's part ----
say "the machine's part: Debian sources, CA certificates, proxy settings"
rm -f "$root/etc/apt/sources.list"
printf '%s\n' "$sources" >"$root/etc/apt/sources.list.d/debian.sources"
sed -n 's/^URIs: /   source: /p; s/^Suites: /     suites: /p' "$root/etc/apt/sources.list.d/debian.sources"
machine_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/machine"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  # For node (it does not read the system store): the same certificates, one file.
  cat /usr/local/share/ca-certificates/*.crt >"$root/etc/ssl/machine/ca.pem"
  machine_env+=(NODE_EXTRA_CA_CERTS=/etc/ssl/machine/ca.pem)
  echo "   CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
fi
for f in /etc/apt/apt.conf.d/*; do
  if [ -f "$f" ] && grep -qi 'proxy' "$f"; then
    cp "$f" "$root/etc/apt/apt.conf.d/"
    echo "   apt proxy settings: $f"
  fi
done
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!v:-}" ]; then machine_env+=("$v=${!v}"); echo "   $v set"; fi
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Name service as an installed Debian has it: debootstrap writes no /etc/hosts, so "localhost"
# would not resolve (the installer and container runtimes write one; tests resolve it).
cp /etc/hosts "$root/etc/hosts"
echo "   /etc/hosts and /etc/resolv.conf: this machine's"
port=8080
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo 18080)
  machine_env+=(POLLCAST_SERVER_LISTEN=127.0.0.1:$port)
  echo "   127.0.0.1:8080 is taken on this machine: POLLCAST_SERVER_LISTEN=127.0.0.1:$port"
fi

# ---- 3. the tree, as a newcomer gets it ----
say "git clone (HEAD $head_sha) and ../shared"
mkdir -p "$root/src"
git clone -q --no-checkout "$top" "$root/src/pollcast"
git -C "$root/src/pollcast" checkout -q "$head_sha"
cp -a "$(cd "$top/../shared" && pwd -P)" "$root/src/shared"
echo "   /src/pollcast at $(git -C "$root/src/pollcast" log -1 --format=%h), /src/shared ($(du -sh "$root/src/shared" | cut -f1))"

# ---- mounts for the chroot ----
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"; mounted+=("$root/sys")
mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; mounted+=("$root/dev")

in_chroot() { # command text: run by bash in /src/pollcast, as root, with a fresh login's environment
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${machine_env[@]}" \
    bash -c "cd /src/pollcast && $1"
}

# ---- 4. the first command: install, build, install, start the demo ----
say "command 1: ${readme_cmds[0]}"
t=$SECONDS
log1=$work/command1.log
in_chroot "${readme_cmds[0]}" >"$log1" 2>&1 &
c1=$!
up=0
for _ in $(seq 1 1800); do # 15 minutes at most
  if ! kill -0 $c1 2>/dev/null; then break; fi
  if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null; then up=1; break; fi
  sleep 0.5
done
if [ $up = 0 ]; then
  tail -30 "$log1"
  die "the first command did not start pollcast (log: $log1)"
fi
took "command 1 until the daemon answers" $t
grep -E '^install-deps: ' "$log1" | sed 's/^/   /'
grep -E '^-- Install|^-- Installing' "$log1" | sed 's/^/   /'
grep -E 'listening on' "$log1" | sed 's/^/   /'
timeout 4 curl -sN "http://127.0.0.1:$port/streams/demo" >"$work/demo.sse" || true
grep -q '^event: data' "$work/demo.sse" || { cat "$work/demo.sse"; die "the demo stream served no data event"; }
echo "   curl -N localhost:$port/streams/demo for 4 s: $(grep -c '^event: data' "$work/demo.sse") data, $(grep -c '^event: patch' "$work/demo.sse") patch events; the first patch:"
grep -m1 '^data: \[' "$work/demo.sse" | cut -c1-150 | sed 's/^/     /'
daemon=""
for p in $(in_root_pids); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pollcast ] && daemon=$p; done
[ -n "$daemon" ] || die "no pollcast process in the root"
exe=$(readlink "/proc/$daemon/exe" || true)
echo "   the daemon: ${exe#"$root"} (pid $daemon)"
kill -TERM "$daemon"
rc1=0
wait $c1 || rc1=$?
echo "   SIGTERM: the first command exited with status $rc1"
[ $rc1 = 0 ] || die "the first command ended with status $rc1"
took "command 1" $t
if [ $first_only = 1 ]; then
  cleanup
  if [ $keep = 0 ]; then safe_rm "$root"; fi
  say "fresh-check: --first-only: command 1 passed; command 2 not run ($((SECONDS - t_all)) s)"
  exit 0
fi

# ---- 5. the second command: the whole suite, as CI runs it ----
say "command 2: ${readme_cmds[1]}"
t=$SECONDS
log2=$work/command2.log
rc2=0
in_chroot "${readme_cmds[1]}" >"$log2" 2>&1 || rc2=$?
took "command 2" $t
grep -E '^install-deps: |EBADENGINE|npm (WARN|warn)' "$log2" | sed 's/^/   /'
echo "   node in the root: $(chroot "$root" node --version 2>/dev/null || echo none)"
echo "   ctest summaries (fuzz tree, then the main suite):"
grep -E 'tests passed|tests failed|^Total Test time' "$log2" | sed 's/^/     /'
awk '/The following tests FAILED/,0' "$log2" | sed 's/^/     /'
# The main suite's summary is the last one .ci/run prints.
summary=$(grep -E '[0-9]+% tests passed' "$log2" | tail -1)

cleanup
if [ $keep = 0 ]; then safe_rm "$root"; fi
say "fresh-check: command 1 exit 0 (after SIGTERM), command 2 exit $rc2; main suite: ${summary:-no ctest summary}; $((SECONDS - t_all)) s in all (logs: $work)"
[ $rc2 = 0 ] || exit 1
