#!/usr/bin/env bash
# Installs everything pollcast needs to build and test on Debian bookworm. The one install path:
# .ci/run, the README's commands and the Dockerfile's build stage all call this script.
#   scripts/install-deps.sh            build and test dependencies
#   scripts/install-deps.sh --runtime  only the shared libraries the daemon runs with
set -euo pipefail

runtime_pkgs="libmicrohttpd12 libcurl4 libcjson1 libssl3 libinih1 ca-certificates"
build_pkgs="build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev
  libssl-dev libinih-dev curl ca-certificates"
# Tests: node and npm for the independent oracles (fast-json-patch, eventsource), clang for the
# fuzz targets.
test_pkgs="nodejs npm clang"

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

want=$build_pkgs
if [ "${1:-}" = "--runtime" ]; then
  want=$runtime_pkgs
else
  want="$build_pkgs"
  # Keep a newer node that is already installed; install Debian's otherwise.
  for p in $test_pkgs; do
    case $p in
      nodejs) command -v node >/dev/null 2>&1 || want="$want nodejs" ;;
      npm) command -v npm >/dev/null 2>&1 || want="$want npm" ;;
      *) want="$want $p" ;;
    esac
  done
fi

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ "${1:-}" != "--runtime" ] && [ -f tests/oracle/package-lock.json ]; then
  (cd tests/oracle && npm ci --no-audit --no-fund --loglevel=error)
fi
