#!/usr/bin/env bash
# The full comparison: builds switchboard and the harness in release mode, then runs every
# scenario (L1–L6 and L4b) against switchboard and the Node.js baseline on one Redis (and L1–L3
# again against switchboard with AUTH=token, unless --auth open), servers pinned
# to CPU 0 and the harness (with Redis) to CPU 1. The table goes to stdout and
# target/bench/results.txt, the numbers to target/bench/results.json.
#
#   loadtest/bench.sh                       # full sizes, 3 runs (about 10 minutes)
#   loadtest/bench.sh --runs 1 --l4-connections 2000 --only L1,L4   # any harness flag
#
# The Node baseline runs from ../shared/baselines/node-socketio (or $BASELINE_SRC), its packages
# installed in target/baseline by scripts/install-deps.sh; it never enters the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p switchboard --bin switchboard
cargo build --release --locked -p switchboard-bench

# 10,000 websocket clients in one process, and as many in the server and nginx.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bin_dir=${CARGO_TARGET_DIR:-target}/release
# SWITCHBOARD_BIN: another build of the server (loadtest/upstream/bench.sh sets it).
harness=("$bin_dir/switchboard-bench" --bin "${SWITCHBOARD_BIN:-$bin_dir/switchboard}" "$@")
if [ "$(nproc)" -ge 2 ]; then
  harness=(taskset -c 1 "${harness[@]}")
else
  harness+=(--server-cpus '' --redis-cpus '') # one CPU: nothing to pin apart
fi
mkdir -p target/bench
"${harness[@]}" | tee target/bench/results.txt
