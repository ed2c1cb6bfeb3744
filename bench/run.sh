#!/usr/bin/env bash
# Side-by-side benchmark of kedge against nginx and HAProxy as reverse proxies (issue #6).
# Usage: bench/run.sh [--quick]        (see bench/README.md for the environment variables)
# Installs nginx, haproxy, wrk, nghttp2-client and valgrind from Debian when missing (as root),
# builds kedge (RelWithDebInfo, the project default: -O2 -g) into build-bench/ unless KEDGE_BIN names a binary, then runs
# bench/bench.py. Generated configurations live in a temporary folder, never in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nginx haproxy wrk nghttp2-client valgrind openssl curl procps util-linux python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "bench: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d (if any) keeps the packaged nginx/haproxy services from starting; the benchmark
  # runs its own instances on loopback ports only.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -z "${KEDGE_BIN:-}" ]; then
  build_dir=${KEDGE_BUILD_DIR:-build-bench}
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build_dir" kedge >/dev/null
  export KEDGE_BIN="$PWD/$build_dir/src/kedge"
fi

exec python3 bench/bench.py "$@"
