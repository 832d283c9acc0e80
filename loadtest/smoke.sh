#!/usr/bin/env bash
# Smoke test of the load-testing kit, for CI: with k6 from .venv (scripts/install-deps.sh
# installs it; this script installs nothing), starts a 2-replica cluster
# (scripts/cluster.sh), runs rest.js and sockets.js for a few seconds at tiny rates, then both
# again against a second cluster with AUTH=token (users' bearer tokens, private calls, a
# server token for the listeners, resuming with an offset), runs the benchmark harness in
# --smoke mode, and stops everything on exit. Fails when a script errors or a scenario
# produces no numbers; never because something was slow (timing thresholds are off here).
#
#   loadtest/smoke.sh            # about a minute once built
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/smoke

step() { echo "== smoke: $*" >&2; }

cleanup() {
  scripts/cluster.sh down --dir "$WORK/cluster" >/dev/null 2>&1 || true
  scripts/cluster.sh down --dir "$WORK/cluster-token" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# k6 1.1.0 (scripts/requirements.txt): sockets.js uses k6/experimental/websockets, as it names it.
K6=$ROOT/.venv/bin/k6
"$K6" version >/dev/null 2>&1 || { echo "smoke: k6 not found in .venv: run scripts/install-deps.sh" >&2; exit 1; }

step "building (debug) switchboard and the harness"
cargo build --quiet --locked -p switchboard --bin switchboard && cargo build --quiet --locked -p switchboard-bench
BIN=$ROOT/target/debug/switchboard

failures=()
run() { # run NAME SECONDS CMD...: records a failure instead of stopping, so cleanup still runs
  local name=$1 limit=$2; shift 2
  step "$name"
  if ! timeout "$limit" "$@"; then failures+=("$name"); fi
}

step "cluster: 2 replicas + nginx"
rm -rf "$WORK"
scripts/cluster.sh up --replicas 2 --bin "$BIN" --dir "$WORK/cluster" \
  --redis-port 6392 --base-port 3401 --lb-port 3400 --lb sticky
# shellcheck disable=SC1091
. "$WORK/cluster/env"

export TIMING_THRESHOLDS=0 K6_NO_USAGE_REPORT=true
run "k6 rest.js" 60 env BASE_URL="$LB_URL" RATE=5 VUS=5 DURATION=3s \
  "$K6" run --quiet --no-color loadtest/rest.js
run "k6 sockets.js" 60 env BASE_URL="$REPLICA_1_URL" SOCKET_URLS="$REPLICA_URLS" SOCKETS=10 \
  RATE=3 VUS=3 DURATION=5s "$K6" run --quiet --no-color loadtest/sockets.js
cleanup

# The same two scripts with AUTH=token (about 15 s more): the replicas inherit AUTH and
# AUTH_SECRET from cluster.sh's environment; the listeners use a server token.
step "cluster (AUTH=token): 2 replicas + nginx"
secret=$(head -c 48 /dev/urandom | base64 -w0)
AUTH=token AUTH_SECRET=$secret scripts/cluster.sh up --replicas 2 --bin "$BIN" \
  --dir "$WORK/cluster-token" --redis-port 6393 --base-port 3411 --lb-port 3410 --lb sticky
# shellcheck disable=SC1091
. "$WORK/cluster-token/env"
server_token=$(AUTH_SECRET=$secret "$BIN" token --server --ttl 600)
run "k6 rest.js (AUTH=token)" 60 env AUTH=token BASE_URL="$LB_URL" RATE=5 VUS=5 DURATION=3s \
  "$K6" run --quiet --no-color loadtest/rest.js
run "k6 sockets.js (AUTH=token)" 60 env AUTH=token SERVER_TOKEN="$server_token" BASE_URL="$REPLICA_1_URL" \
  SOCKET_URLS="$REPLICA_URLS" SOCKETS=10 RATE=3 VUS=3 DURATION=5s \
  "$K6" run --quiet --no-color loadtest/sockets.js
cleanup

# Both implementations when the Node baseline is beside the repository (as in CI).
impls=switchboard
[ -f "$ROOT/../shared/baselines/node-socketio/server.js" ] && impls=switchboard,node
run "harness --smoke ($impls)" 150 target/debug/switchboard-bench --smoke --impls "$impls" \
  --bin "$BIN" --work-dir "$WORK/bench" --out "$WORK/results.json" --server-cpus '' --redis-cpus ''

if [ ${#failures[@]} -gt 0 ]; then
  echo "smoke: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "smoke: ok (k6 rest.js, k6 sockets.js, both also with AUTH=token; harness: every scenario produced numbers)" >&2
