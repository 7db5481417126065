#!/usr/bin/env bash
# Installs everything pollcast needs on Debian bookworm. The one install path: .ci/run, the
# README's commands and the Dockerfile's stages all call this script. It says what it does, phase
# by phase, and shows apt's and npm's own output.
#   scripts/install-deps.sh            build and test dependencies (.ci/run: the test toolchain)
#   scripts/install-deps.sh --build    only what building and running the daemon need (the
#                                      README's first command, the Dockerfile's build stage)
#   scripts/install-deps.sh --runtime  only the shared libraries the daemon runs with
set -euo pipefail

runtime_pkgs="libmicrohttpd12 libcurl4 libcjson1 libssl3 libinih1 libhiredis0.14 ca-certificates"
build_pkgs="build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev
  libssl-dev libinih-dev libhiredis-dev curl ca-certificates"
# Tests: node and npm for the independent oracles (fast-json-patch, eventsource, jsondiffpatch,
# playwright-core), clang and its sanitizer runtime for the fuzz targets, Debian's chromium for the
# viewer test, tmux for the terminal test of pollcast watch, openssl for the JWT fixtures, nginx
# for the README's reverse-proxy example and the cluster tests' load balancer, strace for the
# system-call count of integration.syscalls, redis-server for the cluster tests, docker-compose
# (its `config` command) and python3-yaml to check compose.yaml.
test_pkgs="nodejs npm clang libclang-rt-14-dev chromium tmux openssl nginx strace redis-server
  docker-compose python3-yaml"

mode=${1:-}
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

case $mode in
  --runtime) want=$runtime_pkgs ;;
  --build) want=$build_pkgs ;;
  "")
    want=$build_pkgs
    for p in $test_pkgs; do
      # Debian's node 18 is enough for every test. A machine that has NodeSource's nodejs (it
      # bundles npm and conflicts with Debian's npm package) keeps its npm.
      if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
      want="$want $p"
    done
    ;;
  *) echo "usage: install-deps.sh [--build | --runtime]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
say() { echo "install-deps: $*"; }
if [ -n "$missing" ]; then
  say "$(echo $missing | wc -w) Debian packages to install:$missing"
  say "apt-get update"
  $sudo apt-get update -q
  say "apt-get install (with what they depend on)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
else
  say "the Debian packages ${mode:+for $mode }are installed"
fi

if [ -z "$mode" ]; then
  for dir in tests/oracle tests/browser; do
    if [ -f "$dir/package-lock.json" ]; then
      say "npm ci in $dir (node $(node --version))"
      (cd "$dir" && npm ci --no-audit --no-fund)
    fi
  done
fi
say "done"
