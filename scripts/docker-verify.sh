#!/usr/bin/env bash
# Builds the Dockerfile with a real OCI image builder and runs the image it gives, where no Docker
# daemon is available:
#  1. a base image named debian:bookworm-slim, imported from a debootstrap root (minbase, with
#     the official slim image's apt and dpkg settings), cached as DIR/base.tar;
#  2. `buildah bud` (Debian's buildah: chroot isolation, vfs storage kept under DIR, no pull)
#     builds the Dockerfile unchanged;
#  3. the image is run from its own filesystem (`buildah mount`) with its own config read by
#     `buildah inspect` (ENTRYPOINT, CMD, ENV, USER, WORKDIR, EXPOSE, HEALTHCHECK): in a chroot,
#     as its user, in its own network namespace, with a /dev of the usual container devices.
#     (`podman run` stops at crun's setrlimit and cgroup setup on these machines.)
#     Checked: the user is not root and uid matches USER, no compiler in the runtime image, every
#     shared library found, it listens on 0.0.0.0 at the EXPOSEd port, the HEALTHCHECK command
#     passes (and fails once the daemon is gone), /healthz, /streams, the viewer page, the demo
#     stream, `pollcast watch` inside the image, a config file bind-mounted at the path CMD
#     names plus an upstream added by the environment, and SIGTERM: exit 0 within the grace.
#
#   sudo scripts/docker-verify.sh [--keep] [--work DIR] [--mirror URL]
#
# Needs root (chroot, mount, unshare), buildah, podman (the import), debootstrap, curl and the
# Debian mirror. About two minutes when the mirror is near; not part of .ci/run. --keep keeps the
# built image (localhost/pollcast:verify in DIR/storage; default DIR: /var/tmp/pollcast-docker-verify).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=/var/tmp/pollcast-docker-verify
mirror=http://deb.debian.org/debian
keep=0

# ---- the run inside its own network namespace (the script calls itself with --run-image) ----
if [ "${1:-}" = --run-image ]; then
  # From the parent: root, out, uid, gid, workdir, port, conf; the files out/{env,argv,health}.
  ip link set lo up
  mapfile -t env <"$out/env"
  mapfile -t argv <"$out/argv"
  mapfile -t health <"$out/health"
  base=http://127.0.0.1:$port
  # As the image's user, in its root, its working directory and only its environment.
  as_user() { chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i -C "$workdir" "${env[@]}" "$@"; }
  pid=""
  trap '[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true' EXIT
  fail() { echo "FAIL: $*"; echo "--- daemon stderr:"; tail -20 "$out/stderr"; exit 1; }
  start() { # extra environment...: the image's ENTRYPOINT + CMD, in the background
    : >"$out/stdout"
    # A simple command (not the function), so that $! is the daemon itself: chroot and env exec.
    chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i -C "$workdir" "${env[@]}" \
      "$@" "${argv[@]}" >"$out/stdout" 2>>"$out/stderr" &
    pid=$!
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && return 0; sleep 0.1; done
    fail "pollcast did not answer /healthz on port $port"
  }
  stop() {
    local t0 rc=0
    t0=$(date +%s%N)
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    echo "SIGTERM: exit status $rc after $ms ms"
    pid=""
    [ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
    [ "$ms" -le 4000 ] || fail "SIGTERM took $ms ms, more than the 4 s shutdown_grace"
  }
  healthcheck() {
    local t0 rc=0
    t0=$(date +%s%N)
    timeout 3 chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i -C "$workdir" "${env[@]}" "${health[@]}" || rc=$?
    echo "HEALTHCHECK command: exit $rc ($((($(date +%s%N) - t0) / 1000000)) ms)"
    return $rc
  }

  start
  running_uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  echo "daemon: pid $pid, uid $running_uid; stderr: $(head -1 "$out/stderr")"
  [ "$running_uid" = "$uid" ] || fail "running as uid $running_uid, not $uid"
  hexport=$(printf '%04X' "$port")
  grep -q "00000000:$hexport 00000000:0000 0A" /proc/net/tcp || fail "not listening on 0.0.0.0:$port"
  echo "listening on 0.0.0.0:$port (/proc/net/tcp)"
  healthcheck || fail "the HEALTHCHECK command failed"
  echo "GET /healthz: $(curl -fsS "$base/healthz")"
  echo "GET /streams: $(curl -fsS "$base/streams")"
  curl -fsS -o "$out/viewer.html" "$base/" || fail "GET / failed"
  grep -q "<title>pollcast live viewer</title>" "$out/viewer.html" || fail "GET / is not the viewer"
  echo "GET /: the viewer page ($(wc -c <"$out/viewer.html") bytes)"
  timeout 4.5 curl -sN "$base/streams/demo" >"$out/sse" || true
  echo "GET /streams/demo for 4.5 s: $(grep -c '^event: data' "$out/sse") data, $(grep -c '^event: patch' "$out/sse") patch events; the first patch:"
  grep -m1 -A0 '^data: \[' "$out/sse" | cut -c1-160 | sed 's/^/  /'
  grep -q '^event: data' "$out/sse" && grep -q '^event: patch' "$out/sse" || fail "no data and patch events"
  as_user pollcast watch "$base/streams/demo" --changes --count 4 --quiet >"$out/watch" ||
    fail "pollcast watch failed in the image"
  echo "pollcast watch --changes in the image:"
  cut -c1-96 "$out/watch" | sed 's/^/  /'
  # SIGTERM with a subscriber connected: its stream ends, the daemon exits 0 within the grace.
  curl -sN "$base/streams/demo" >"$out/sse-term" &
  sub=$!
  sleep 1.5
  stop
  for _ in $(seq 1 30); do kill -0 "$sub" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$sub" 2>/dev/null; then kill "$sub"; fail "the subscriber's stream did not end"; fi
  echo "the subscriber's stream ended ($(grep -c '^event: ' "$out/sse-term") events received)"
  if healthcheck 2>/dev/null; then fail "the HEALTHCHECK command passes with no daemon"; fi
  echo "(the HEALTHCHECK command fails once the daemon is gone, as it should)"

  # A config file mounted where CMD reads it, and an upstream added by the environment; the
  # image's POLLCAST_SERVER_LISTEN overrides the file's listen key.
  mount --bind -o ro "$out/mounted.ini" "$root$conf"
  trap '[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; umount "$root$conf" 2>/dev/null || true' EXIT
  start POLLCAST_UPSTREAM_FROMENV_URL=builtin:demo POLLCAST_UPSTREAM_FROMENV_INTERVAL=2s
  streams=$(curl -fsS "$base/streams")
  echo "mounted $conf + environment: GET /streams: $streams"
  case $streams in *'"mounted"'*'"fromenv"'*) ;; *) fail "the mounted file or the environment was not used" ;; esac
  timeout 2.5 curl -sN "$base/streams/mounted" >"$out/sse2" || true
  grep -q '^event: data' "$out/sse2" || fail "no data event from the mounted config's upstream"
  echo "GET /streams/mounted: a data event"
  healthcheck || fail "the HEALTHCHECK command failed"
  stop
  umount "$root$conf"
  exit 0
fi

while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1 ;;
    --work) work=$2; shift ;;
    --mirror) mirror=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "docker-verify: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

t_all=$SECONDS
say() { printf '\n== %s\n' "$*"; }
die() { printf 'docker-verify: FAIL: %s\n' "$*" >&2; exit 1; }
took() { echo "($1: $((SECONDS - $2)) s)"; }

[ "$(id -u)" = 0 ] || die "needs root (chroot, mount, unshare)"
for c in buildah podman debootstrap curl unshare chroot; do
  command -v $c >/dev/null || die "$c is not installed (apt-get install buildah podman debootstrap curl)"
done
mkdir -p "$work"
work=$(cd "$work" && pwd)
storage=(--root "$work/storage" --runroot "$work/runroot" --storage-driver vfs)
image=localhost/pollcast:verify

# ---- cleanup: nothing mounted may stay under $work, and nothing is deleted while mounted ----
mounts=() ctr=""
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  mounts=()
  if [ -n "$ctr" ]; then
    buildah "${storage[@]}" umount "$ctr" >/dev/null 2>&1 || true
    buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true
    ctr=""
  fi
}
trap cleanup EXIT
safe_rm() {
  if findmnt -rn -o TARGET | grep "^$1" >/dev/null; then die "$1 still has mounts; not removing it"; fi
  rm -rf --one-file-system "$1"
}

# ---- 1. the base image: debian:bookworm-slim from a debootstrap root ----
base=$work/base.tar
if [ ! -f "$base" ]; then
  say "debootstrap --variant=minbase bookworm ($mirror)"
  t=$SECONDS
  safe_rm "$work/base"
  debootstrap --variant=minbase bookworm "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap failed (log: $work/debootstrap.log)"; }
  # What the official slim image has on top of minbase: deb822 sources with updates and
  # security, and the docker-* apt/dpkg settings (no docs, no translations, clean caches).
  rm -f "$work/base/etc/apt/sources.list"
  cat >"$work/base/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$work/base/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$work/base/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$work/base/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$work/base/etc/apt/apt.conf.d/docker-autoremove-suggests"
  cat >"$work/base/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  rm -rf "$work/base/var/cache/apt/archives/"*.deb "$work/base/var/lib/apt/lists/"*
  tar -C "$work/base" -cf "$base.tmp" . && mv "$base.tmp" "$base"
  safe_rm "$work/base"
  took debootstrap $t
fi
if ! buildah "${storage[@]}" inspect --type image debian:bookworm-slim >/dev/null 2>&1; then
  say "podman import: debian:bookworm-slim from $base"
  podman "${storage[@]}" import - debian:bookworm-slim <"$base" >/dev/null
fi

# ---- 2. the build ----
say "buildah bud --isolation chroot --storage-driver vfs --format docker --pull=never -t $image"
t=$SECONDS
buildah "${storage[@]}" rmi -f "$image" >/dev/null 2>&1 || true
buildah "${storage[@]}" bud --isolation chroot --format docker --pull=never -t "$image" "$top" \
  >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; die "the image build failed (log: $work/build.log)"; }
grep -E '^\[[0-9]+/[0-9]+\] STEP|^install-deps: [0-9]+ Debian|^pollcast [0-9]' "$work/build.log" | cut -c1-120 | sed 's/^/  /'
took "buildah bud" $t
echo "image: $image, $(buildah "${storage[@]}" images --format '{{.Size}}' "$image")"

# ---- 3. its config ----
cfg() { buildah "${storage[@]}" inspect --type image --format "$1" "$image"; }
mapfile -t entry < <(cfg '{{range .Docker.Config.Entrypoint}}{{println .}}{{end}}')
mapfile -t cmd < <(cfg '{{range .Docker.Config.Cmd}}{{println .}}{{end}}')
mapfile -t env < <(cfg '{{range .Docker.Config.Env}}{{println .}}{{end}}')
mapfile -t health < <(cfg '{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}')
user=$(cfg '{{.Docker.Config.User}}')
workdir=$(cfg '{{.Docker.Config.WorkingDir}}')
exposed=$(cfg '{{range $k, $v := .Docker.Config.ExposedPorts}}{{$k}} {{end}}')
stopsignal=$(cfg '{{.Docker.Config.StopSignal}}')
echo "ENTRYPOINT ${entry[*]}; CMD ${cmd[*]}; USER $user; WORKDIR ${workdir:-/}; EXPOSE $exposed; STOPSIGNAL $stopsignal"
printf 'ENV %s\n' "${env[@]}"
[ -n "$user" ] && [ "${user%%:*}" != root ] && [ "${user%%:*}" != 0 ] || die "the image runs as root (USER: '${user:-unset}')"
[ "$exposed" = "8080/tcp " ] || die "EXPOSE is '$exposed', not 8080/tcp"
[ "${health[0]:-}" = CMD ] || die "no HEALTHCHECK in exec form (${health[*]:-none})"
health=("${health[@]:1}")
[ "$stopsignal" = SIGTERM ] || die "STOPSIGNAL is '$stopsignal'"
conf=""
for ((i = 0; i + 1 < ${#cmd[@]}; i++)); do [ "${cmd[$i]}" = -c ] && conf=${cmd[$((i + 1))]}; done
[ -n "$conf" ] || die "CMD names no config file (-c)"
port=""
for e in "${env[@]}"; do case $e in POLLCAST_SERVER_LISTEN=*) port=${e##*:} ;; esac; done
[ "${port:-8080}" = 8080 ] || die "POLLCAST_SERVER_LISTEN is not on the EXPOSEd port 8080"
port=8080

# ---- 4. its filesystem ----
ctr=$(buildah "${storage[@]}" from --pull=never "$image")
root=$(buildah "${storage[@]}" mount "$ctr")
say "image filesystem: $root ($(du -sh "$root" | cut -f1))"
uid=${user%%:*}
gid=${user#*:}; [ "$gid" != "$user" ] || gid=$uid
case $uid in *[!0-9]*) uid=$(chroot "$root" id -u "$uid") ;; esac
case $gid in *[!0-9]*) gid=$(chroot "$root" getent group "$gid" | cut -d: -f3) ;; esac
echo "user: $(chroot "$root" getent passwd "$uid" || echo "uid $uid (no passwd entry)")"
[ -f "$root$conf" ] || die "$conf is not in the image"
bin=$(chroot "$root" /usr/bin/env -i "${env[@]}" sh -c "command -v '${entry[0]}'") || die "${entry[0]} is not on the image's PATH"
# A container's /dev: the usual devices, nothing else of the host; /proc of its own.
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"; mounts+=("$root/dev")
for d in null zero full random urandom tty; do
  touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; mounts+=("$root/dev/$d")
done
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
missing=$(chroot "$root" ldd "$bin" | grep 'not found' || true)
[ -z "$missing" ] || die "shared libraries missing from the runtime image: $missing"
echo "$bin: $(chroot "$root" ldd "$bin" | wc -l) shared libraries, all found"
if chroot "$root" sh -c 'command -v cc || command -v gcc || command -v cmake' >/dev/null; then
  die "the runtime image holds a compiler or cmake"
fi
echo "no compiler, no cmake in the runtime image"

# ---- 5. run it ----
say "run: ${entry[*]} ${cmd[*]} as $uid:$gid (own network namespace, port $port)"
t=$SECONDS
out=$work/run
safe_rm "$out"; mkdir -p "$out"
printf '%s\n' "${env[@]}" >"$out/env"
printf '%s\n' "${entry[@]}" "${cmd[@]}" >"$out/argv"
printf '%s\n' "${health[@]}" >"$out/health"
# What `docker run -v ./pollcast.ini:/etc/pollcast/pollcast.ini:ro -e POLLCAST_...` gives.
cat >"$out/mounted.ini" <<'EOF'
[server]
listen = 127.0.0.1:9999
[upstream mounted]
url = builtin:demo
interval = 1s
EOF
chmod 644 "$out/mounted.ini"
touch "$out/stderr"
chmod 666 "$out/stderr"
root=$root out=$out uid=$uid gid=$gid workdir=${workdir:-/} port=$port conf=$conf \
  unshare --net -- bash "$0" --run-image || die "the image does not run as it should"
echo "daemon log:"; head -8 "$out/stderr" | sed "s/^/  /"
took run $t
cleanup

if [ $keep = 0 ]; then
  buildah "${storage[@]}" rmi -f "$image" >/dev/null 2>&1 || true
  buildah "${storage[@]}" rmi --prune >/dev/null 2>&1 || true
fi
say "docker-verify: OK: buildah built the Dockerfile; its image runs as uid $uid, healthy on 0.0.0.0:$port ($((SECONDS - t_all)) s in all)"
