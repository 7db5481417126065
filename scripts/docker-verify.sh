#!/usr/bin/env bash
# Verifies the Dockerfile where no Docker daemon runs: builds a Debian bookworm root with
# debootstrap (the stand-in for debian:bookworm-slim), then executes the Dockerfile itself, stage
# by stage, in chroots: WORKDIR, COPY (from the context filtered by .dockerignore, or --from an
# earlier stage), RUN (as /bin/sh -c, with the ENV so far) and ENV/USER/ARG. It refuses any
# instruction or flag it does not implement, so what it runs cannot drift from the Dockerfile.
# Then it starts the final image's ENTRYPOINT + CMD as its USER, in its own network namespace
# (port 8080 as in the image), runs the HEALTHCHECK command, and checks /healthz, /streams, the
# demo stream, the viewer page, `pollcast watch` inside the image, and a clean SIGTERM exit.
#
#   sudo scripts/docker-verify.sh [--keep] [--work DIR] [--mirror URL]
#
# Needs root (chroot, mount, unshare), debootstrap, curl and network access to the Debian mirror.
# Slow (the build stage installs the toolchain): minutes, not part of .ci/run. The debootstrapped
# base is cached as DIR/base.tar.gz (default DIR: build/docker-verify).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=$top/build/docker-verify
mirror=http://deb.debian.org/debian
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1 ;;
    --work) work=$2; shift ;;
    --mirror) mirror=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "docker-verify: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\n== %s\n' "$*"; }
die() { printf 'docker-verify: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (chroot, mount, unshare)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v curl >/dev/null || die "curl is not installed"
mkdir -p "$work"
work=$(cd "$work" && pwd)

# ---- cleanup: nothing mounted may stay under $work, and nothing is deleted while mounted ----
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  mounts=()
}
trap cleanup EXIT
safe_rm() {
  if findmnt -rn -o TARGET | grep -q "^$1"; then die "$1 still has mounts; not removing it"; fi
  rm -rf --one-file-system "$1"
}

# ---- the base: debian:bookworm-slim's stand-in ----
base=$work/base.tar.gz
if [ ! -f "$base" ]; then
  say "debootstrap --variant=minbase bookworm ($mirror)"
  safe_rm "$work/base"
  debootstrap --variant=minbase bookworm "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap failed (log: $work/debootstrap.log)"; }
  # What the official slim image has on top of minbase: deb822 sources with updates and
  # security, and the docker-* apt/dpkg settings (no docs, no translations, clean caches).
  rm -f "$work/base/etc/apt/sources.list"
  cat >"$work/base/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
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
  tar -C "$work/base" -czf "$base.tmp" . && mv "$base.tmp" "$base"
  safe_rm "$work/base"
fi

# ---- the Dockerfile, as a list of instructions ----
# Continuation lines joined, comments and blank lines dropped.
mapfile -t instr < <(awk '
  /^[ \t]*#/ { next }
  { line = cont $0; cont = "" }
  /\\$/ { sub(/\\$/, "", line); cont = line; next }
  line ~ /^[ \t]*$/ { next }
  { print line }
' "$top/Dockerfile")

# ---- .dockerignore: Docker's matching (a pattern matches a path or any of its parents;
# "*" and "?" stay within one path segment, "**" spans any number) ----
ignore_re=()
if [ -f "$top/.dockerignore" ]; then
  while IFS= read -r p || [ -n "$p" ]; do
    p=${p%%$'\r'}
    p=$(printf '%s' "$p" | sed 's/^[ \t]*//; s/[ \t]*$//')
    case $p in ''|'#'*) continue ;; '!'*) die ".dockerignore exceptions (!) are not implemented here" ;; esac
    p=${p#/}
    re=$(printf '%s' "$p" | sed -e 's/[.+^$(){}|[\]\\]/\\&/g' -e 's/\*\*\//\x01/g' -e 's/\*\*/\x02/g' \
      -e 's/\*/[^\/]*/g' -e 's/?/[^\/]/g' -e 's/\x01/(.*\/)?/g' -e 's/\x02/.*/g')
    ignore_re+=("^${re}\$")
  done <"$top/.dockerignore"
fi
ignored() { # relative path
  local path=$1 prefix="" seg re
  local IFS=/
  for seg in $path; do
    prefix=${prefix:+$prefix/}$seg
    for re in "${ignore_re[@]}"; do [[ $prefix =~ $re ]] && return 0; done
  done
  return 1
}
context=$work/context
make_context() {
  safe_rm "$context"
  mkdir -p "$context"
  local n=0 f
  while IFS= read -r -d '' f; do
    f=${f#./}
    if ignored "$f"; then continue; fi
    if [ -d "$top/$f" ] && [ ! -L "$top/$f" ]; then mkdir -p "$context/$f"; else cp -a "$top/$f" "$context/$f"; n=$((n + 1)); fi
  done < <(cd "$top" && find . -mindepth 1 \( -type d -exec bash -c '
      f=${1#./}; for re in "${@:2}"; do
        p=""; IFS=/; for s in $f; do p=${p:+$p/}$s; [[ $p =~ $re ]] && exit 0; done; done; exit 1' _ {} "${ignore_re[@]}" \; -prune \) -o -print0)
  echo "build context: $n files ($(du -sh "$context" | cut -f1)) after .dockerignore"
}

# ---- executing it ----
declare -A stage_root=()
stage=-1
root="" wd="/" user="" envs=() entry=() cmd=() health=() exposed=""

json_args() { # a JSON array of strings -> one per line in the global array "args"
  local s=$1 i=0 c out="" inq=0
  args=()
  s=$(printf '%s' "$s" | sed 's/^[ \t]*\[//; s/\][ \t]*$//')
  while [ $i -lt ${#s} ]; do
    c=${s:$i:1}
    if [ $inq = 1 ]; then
      if [ "$c" = '\' ]; then
        i=$((i + 1)); c=${s:$i:1}
        case $c in n) out+=$'\n' ;; t) out+=$'\t' ;; *) out+=$c ;; esac
      elif [ "$c" = '"' ]; then inq=0; args+=("$out"); out=""
      else out+=$c; fi
    elif [ "$c" = '"' ]; then inq=1
    elif [[ $c != [\ ,$'\t'] ]]; then die "cannot read JSON array: [$1]"; fi
    i=$((i + 1))
  done
  [ $inq = 0 ] || die "unterminated string in [$1]"
}

in_root() { # runs "$@" in the stage root with /proc and /dev/pts mounted and the build's DNS
  mount -t proc proc "$root/proc"; mounts+=("$root/proc")
  mkdir -p "$root/dev/pts"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; mounts+=("$root/dev/pts")
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  local rc=0
  "$@" || rc=$?
  umount "$root/dev/pts"; unset 'mounts[${#mounts[@]}-1]'
  umount "$root/proc"; unset 'mounts[${#mounts[@]}-1]'
  return $rc
}

abs_in() { # path relative to the working directory -> absolute
  case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "${wd%/}" "$1" ;; esac
}

do_copy() {
  local from="" a
  local -a parts
  read -r -a parts <<<"$1"
  while [[ ${parts[0]} == --* ]]; do
    case ${parts[0]} in
      --from=*) from=${parts[0]#--from=} ;;
      *) die "COPY flag ${parts[0]} is not implemented" ;;
    esac
    parts=("${parts[@]:1}")
  done
  [ ${#parts[@]} -ge 2 ] || die "COPY needs a source and a destination: $1"
  local dst=${parts[-1]} srcbase
  unset 'parts[${#parts[@]}-1]'
  if [ -n "$from" ]; then
    [ -n "${stage_root[$from]:-}" ] || die "COPY --from=$from: no such stage"
    srcbase=${stage_root[$from]}
  else
    [ -d "$context" ] || make_context
    srcbase=$context
  fi
  local target=$root$(abs_in "$dst")
  for a in "${parts[@]}"; do
    local src=$srcbase/${a#/}
    [ -e "$src" ] || die "COPY: $a not found in the ${from:-build context}"
    if [ -d "$src" ]; then
      mkdir -p "$target"
      cp -a "$src/." "$target/"
    elif [[ $dst == */ ]] || [ -d "$target" ]; then
      mkdir -p "$target"
      cp -a "$src" "$target/"
    else
      mkdir -p "$(dirname "$target")"
      cp -a "$src" "$target"
    fi
  done
}

for line in "${instr[@]}"; do
  line=$(printf '%s' "$line" | sed 's/^[ \t]*//')
  kw=${line%%[[:space:]]*}
  rest=$(printf '%s' "${line#"$kw"}" | sed 's/^[ \t]*//')
  kw=${kw^^}
  case $kw in
    FROM)
      read -r image as name _ <<<"$rest"
      [ "$image" = debian:bookworm-slim ] || die "FROM $image: only debian:bookworm-slim is emulated"
      stage=$((stage + 1))
      root=$work/stage$stage
      say "stage $stage: FROM $image${name:+ AS $name}"
      safe_rm "$root"
      mkdir -p "$root"
      tar -C "$root" -xzf "$base"
      stage_root[$stage]=$root
      if [ "${as,,}" = as ] && [ -n "$name" ]; then stage_root[$name]=$root; fi
      wd="/" user="" envs=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
      entry=() cmd=() health=() exposed=""
      ;;
    WORKDIR)
      wd=$(abs_in "$rest"); mkdir -p "$root$wd"; echo "WORKDIR $wd" ;;
    COPY)
      echo "COPY $rest"; do_copy "$rest" ;;
    ENV|ARG)
      # KEY=VALUE pairs without quotes or spaces in values (what this Dockerfile uses).
      for kv in $rest; do
        [[ $kv == *=* ]] || { [ "$kw" = ARG ] && continue; die "ENV $rest: only KEY=VALUE is implemented"; }
        [[ $kv != *[\"\'\$]* ]] || die "$kw $kv: quotes and variables are not implemented"
        envs+=("$kv")
      done
      echo "$kw $rest" ;;
    RUN)
      [[ $rest != \[* ]] || die "RUN in exec form is not implemented"
      say "RUN $rest"
      start=$SECONDS
      spec=()
      if [ -n "$user" ]; then spec=(--userspec="$user"); fi
      in_root chroot "${spec[@]}" "$root" /usr/bin/env -i HOME=/root "${envs[@]}" /bin/sh -c "cd '$wd' && $rest" ||
        die "RUN failed: $rest"
      echo "(RUN took $((SECONDS - start)) s)" ;;
    USER) user=$rest; echo "USER $user" ;;
    EXPOSE) exposed=$rest; echo "EXPOSE $rest" ;;
    HEALTHCHECK)
      hc=$(printf '%s' "$rest" | sed 's/^\(--[a-z-]*=[^ ]* *\)*//')
      [[ $hc == CMD\ \[* ]] || die "HEALTHCHECK: only CMD [\"exec\", \"form\"] is implemented"
      json_args "${hc#CMD }"; health=("${args[@]}"); echo "HEALTHCHECK $rest" ;;
    ENTRYPOINT) json_args "$rest"; entry=("${args[@]}"); echo "ENTRYPOINT $rest" ;;
    CMD) json_args "$rest"; cmd=("${args[@]}"); echo "CMD $rest" ;;
    STOPSIGNAL|LABEL) echo "$kw $rest" ;;
    *) die "Dockerfile instruction $kw is not implemented by this script" ;;
  esac
done
[ "$stage" -ge 0 ] || die "no FROM in the Dockerfile"

# ---- the image ----
say "image: stage $stage ($(du -sh "$root" | cut -f1) unpacked)"
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || die "the image runs as root (USER: '${user:-unset}')"
[ "$exposed" = 8080 ] || die "EXPOSE is '$exposed', not 8080"
[ ${#health[@]} -gt 0 ] || die "no HEALTHCHECK"
bin=/usr/local/bin/pollcast
[ -x "$root$bin" ] || die "$bin is not in the image"
missing=$(in_root chroot "$root" ldd "$bin" | grep 'not found' || true)
[ -z "$missing" ] || die "shared libraries missing from the runtime image: $missing"
in_root chroot "$root" ldd "$bin" | sed 's/^/  /'
if chroot "$root" sh -c 'command -v cc || command -v gcc || command -v cmake' >/dev/null; then
  die "the runtime image holds a compiler or cmake"
fi
uid=${user%%:*}
gid=${user#*:}; [ "$gid" != "$user" ] || gid=$uid
chroot "$root" getent passwd "$uid" >/dev/null || echo "(note: uid $uid has no passwd entry)"
echo "user: $(chroot "$root" getent passwd "$uid" || echo "$uid")"

# ---- run it: its own network namespace, as its user, port 8080 ----
say "run: ${entry[*]} ${cmd[*]} as $user (own network namespace)"
out=$work/run
rm -rf "$out"; mkdir -p "$out"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '%s\n' "${health[@]}" >"$out/health.args"
printf '%s\n' "${entry[@]}" "${cmd[@]}" >"$out/run.args"
printf '%s\n' "${envs[@]}" >"$out/env"
# What `docker run -v ./pollcast.ini:/etc/pollcast/pollcast.ini -e POLLCAST_...` would give.
cat >"$out/mounted.ini" <<'EOF'
[server]
listen = 127.0.0.1:9999
[upstream mounted]
url = builtin:demo
interval = 1s
EOF
chmod 644 "$out/mounted.ini"
export root out uid gid
unshare --net bash -euo pipefail -c '
  ip link set lo up
  mapfile -t env <"$out/env"
  mapfile -t argv <"$out/run.args"
  mapfile -t health <"$out/health.args"
  as_user() { chroot --userspec="$uid:$gid" "$root" /usr/bin/env -i HOME=/nonexistent "${env[@]}" "$@"; }
  pid=""
  trap "[ -z \"\$pid\" ] || kill -9 \$pid 2>/dev/null; umount \"$root/etc/pollcast/pollcast.ini\" 2>/dev/null || true" EXIT
  start() { # extra environment...; the image command, in the background, as its user
    : >"$out/stdout"
    chroot --userspec="$uid:$gid" "$root" /usr/bin/env -i HOME=/nonexistent "${env[@]}" "$@" "${argv[@]}" >"$out/stdout" 2>>"$out/stderr" &
    pid=$!
    for i in $(seq 1 100); do grep -q "^listening on port" "$out/stdout" 2>/dev/null && break; sleep 0.1; done
    grep -q "^listening on port 8080$" "$out/stdout" || { cat "$out/stderr"; echo "pollcast did not start on 8080"; exit 1; }
  }
  stop() {
    kill -TERM "$pid"
    local t0=$(date +%s%N) rc=0
    wait "$pid" || rc=$?
    echo "SIGTERM: exit status $rc after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    pid=""
    [ "$rc" = 0 ] || exit 1
  }

  start
  running_uid=$(awk "/^Uid:/ {print \$2}" /proc/$pid/status)
  echo "daemon: $(cat "$out/stdout") (uid $running_uid, pid $pid)"
  [ "$running_uid" = "$uid" ] || { echo "not running as uid $uid"; exit 1; }
  grep -q "00000000:1F90 00000000:0000 0A" /proc/net/tcp || { echo "not listening on 0.0.0.0:8080"; exit 1; }
  echo "listening on 0.0.0.0:8080 (/proc/net/tcp)"
  if as_user "${health[@]}"; then echo "HEALTHCHECK command: exit 0 (healthy)"; else echo "HEALTHCHECK command failed"; exit 1; fi
  echo "GET /healthz: $(curl -fsS http://127.0.0.1:8080/healthz)"
  echo "GET /streams: $(curl -fsS http://127.0.0.1:8080/streams)"
  curl -fsS http://127.0.0.1:8080/ | grep -q "<title>pollcast live viewer</title>" ||
    { echo "GET / is not the viewer"; exit 1; }
  echo "GET /: the viewer page ($(curl -fsS http://127.0.0.1:8080/ | wc -c) bytes)"
  timeout 3.5 curl -sN http://127.0.0.1:8080/streams/demo >"$out/sse" || true
  echo "GET /streams/demo for 3.5 s: $(grep -c "^event: data" "$out/sse") data, $(grep -c "^event: patch" "$out/sse") patch events"
  grep -q "^event: patch" "$out/sse" || { echo "no patch from the demo stream"; exit 1; }
  as_user pollcast watch http://127.0.0.1:8080/streams/demo --changes --count 4 --quiet >"$out/watch" ||
    { echo "pollcast watch failed in the image"; exit 1; }
  echo "pollcast watch --changes in the image:"; cut -c1-96 "$out/watch" | sed "s/^/  /"
  stop

  # A mounted config file and an upstream added by the environment; the listen key of the file
  # is overridden by the image ENV.
  mount --bind "$out/mounted.ini" "$root/etc/pollcast/pollcast.ini"
  start POLLCAST_UPSTREAM_FROMENV_URL=builtin:demo POLLCAST_UPSTREAM_FROMENV_INTERVAL=2s
  streams=$(curl -fsS http://127.0.0.1:8080/streams)
  echo "mounted file + environment: GET /streams: $streams"
  case $streams in *\"mounted\"*\"fromenv\"*) ;; *) echo "the mounted file or the environment was not used"; exit 1 ;; esac
  as_user "${health[@]}" && echo "HEALTHCHECK command: exit 0 (healthy)"
  stop
  umount "$root/etc/pollcast/pollcast.ini"
' || { echo "--- daemon stderr:"; tail -20 "$out/stderr" 2>/dev/null; die "the image does not run as it should"; }
echo "daemon log:"; sed 's/^/  /' "$out/stderr" | head -10
cleanup

if [ $keep = 0 ]; then
  for ((s = 0; s <= stage; s++)); do safe_rm "$work/stage$s"; done
  safe_rm "$context"
fi
say "docker-verify: OK: the Dockerfile builds and its image runs as uid $uid, healthy on 0.0.0.0:8080"
