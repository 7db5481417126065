#!/usr/bin/env bash
# Installs everything pollcast needs on Debian bookworm. The one install path: .ci/run, the
# README's commands and the Dockerfile's stages all call this script.
#   scripts/install-deps.sh            build and test dependencies (what CI needs)
#   scripts/install-deps.sh --build    only what building the daemon needs (Dockerfile)
#   scripts/install-deps.sh --runtime  only the shared libraries the daemon runs with
set -euo pipefail

runtime_pkgs="libmicrohttpd12 libcurl4 libcjson1 libssl3 libinih1 libhiredis0.14 ca-certificates"
build_pkgs="build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev
  libssl-dev libinih-dev libhiredis-dev curl ca-certificates"
# Tests: node and npm for the independent oracles (fast-json-patch, eventsource, jsondiffpatch,
# playwright-core), clang and its sanitizer runtime for the fuzz targets, Debian's chromium for the
# viewer test, tmux for the terminal test of pollcast watch, openssl for the JWT fixtures, nginx
# for the README's reverse-proxy example and the cluster tests' load balancer, redis-server for the
# cluster tests, docker-compose (its `config` command) and python3-yaml to check compose.yaml.
test_pkgs="nodejs npm clang libclang-rt-14-dev chromium tmux openssl nginx redis-server
  docker-compose python3-yaml"

mode=${1:-}
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

case $mode in
  --runtime) want=$runtime_pkgs ;;
  --build) want=$build_pkgs ;;
  "")
    want=$build_pkgs
    # Keep a node that is already installed (the browser test needs node 20); install Debian's
    # otherwise.
    for p in $test_pkgs; do
      case $p in
        nodejs) command -v node >/dev/null 2>&1 || want="$want nodejs" ;;
        npm) command -v npm >/dev/null 2>&1 || want="$want npm" ;;
        *) want="$want $p" ;;
      esac
    done
    ;;
  *) echo "usage: install-deps.sh [--build | --runtime]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ -z "$mode" ]; then
  for dir in tests/oracle tests/browser; do
    if [ -f "$dir/package-lock.json" ]; then
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
fi
