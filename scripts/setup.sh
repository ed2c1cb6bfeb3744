#!/usr/bin/env bash
# Installs every Debian 12 package kedge needs to build, test and run its demo. Idempotent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev node-llhttp libnghttp2-dev libssl-dev nlohmann-json3-dev
  libsimdjson-dev libyaml-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  clang-format curl python3 python3-pytest python3-grpcio openssl nghttp2-client procps iproute2
  libmimalloc-dev liburing-dev nftables libnftables-dev conntrack iputils-arping iputils-ping
  clang-16 libclang-rt-16-dev nginx-light haproxy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
