#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang 16, ASan+UBSan) into build-fuzz/ (or $KEDGE_FUZZ_DIR) and
# runs each for SECONDS (default 30), or only the harnesses named after it:
#   scripts/fuzz.sh [SECONDS] [HARNESS...]
# Each run starts from the committed seeds (tests/fuzz/corpus/HARNESS) plus what earlier runs found
# (DIR/corpus/HARNESS). A crash stops the script with its reproducer in DIR/artifacts/ and a
# non-zero status; turn the reproducer into a regression seed or unit test once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
dir=${KEDGE_FUZZ_DIR:-build-fuzz}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=$PWD
CC=clang-16 CXX=clang++-16 cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKEDGE_FUZZ=ON >/dev/null
ninja -C "$dir" fuzzers
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  harnesses=(http1_request http1_response http2_server manifest ingress_match k8s_api)
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$dir/artifacts"
for h in "${harnesses[@]}"; do
  mkdir -p "$dir/corpus/$h"
  echo "== fuzz $h (${seconds}s)"
  "$dir/tests/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/$h-" \
    "$dir/corpus/$h" "tests/fuzz/corpus/$h" 2>"$dir/fuzz-$h.log" || {
    tail -n 60 "$dir/fuzz-$h.log" >&2
    exit 1
  }
  grep -E "^stat::number_of_executed_units|^#[0-9]+ *DONE|^INFO: exiting" "$dir/fuzz-$h.log" | tail -2 || true
done
