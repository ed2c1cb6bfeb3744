#!/usr/bin/env bash
# Update cost of kedge's nftables data plane at scale (not part of the test run; needs root and
# a built tree):  tests/net/measure_nft.sh BUILD_DIR [SERVICES] [ENDPOINTS] [CHANGES]
#
# In a one-node lab of its own (prefix km-, 10.79.0.0/16), with a UDP forwarding probe from the
# client through a NodePort of the same table to a pod (one datagram per ms), it runs
# nft_bench three times: with libnftables, then (with the probe running) with `nft -f -` and
# with libnftables again. Each run loads SERVICES Services of ENDPOINTS endpoints in one
# transaction (the later runs replace the table while the probe's traffic flows through it),
# then changes one endpoint CHANGES times. Prints the JSON of each run and the probe's gaps;
# the lab is removed at the end, even on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: measure_nft.sh BUILD_DIR [SERVICES] [ENDPOINTS] [CHANGES]}
services=${2:-10000} endpoints=${3:-10} changes=${4:-50}
bench=$(cd "$build" && pwd)/tests/net/nft_bench
[[ -x $bench ]] || { echo "no $bench: build the tree first" >&2; exit 1; }
export KLAB_PREFIX=km KLAB_NET=10.79 KLAB_NODES=1 KLAB_PODS=1 KLAB_VERIFY=0
lab() { bash "$here/lab.sh" "$@"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT
lab up >/dev/null
ip netns exec km-node1-pod1 python3 "$here/tools/pod_server.py" --name pod --port 8080 >/dev/null &
pids+=($!)
bench_run() {
  echo "== $1: $(date +%s.%N)"
  ip netns exec km-node1 "$bench" --services "$services" --endpoints "$endpoints" \
    --changes "$changes" --runner "$1" --probe-node-port 30099 --probe-endpoint 10.79.11.10:8080
  echo "   done: $(date +%s.%N)"
}
# The first load makes the table; the probe starts once it forwards, then the table is loaded
# again whole (a replace under traffic) and changed, once per runner.
bench_run library
out=$(mktemp)
ip netns exec km-ext python3 "$here/tools/udp_probe.py" --host 10.79.0.11 --port 30099 \
  --seconds $(( 10 + 2 * (services / 1000 + changes) )) >"$out" &
probe=$!
pids+=($probe)
sleep 2
bench_run command
sleep 1
bench_run library
wait "$probe" || true
echo "== probe (one UDP datagram per ms through the table; gaps in ms, at epoch seconds)"
cat "$out"
rm -f "$out"
