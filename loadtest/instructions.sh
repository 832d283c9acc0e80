#!/usr/bin/env bash
# User-space instructions per `POST /users` of one replica on Redis, counted by valgrind's
# callgrind: deterministic to about half a per cent, where requests per CPU-second on a
# shared machine drift by tens of per cent. Use it to decide a change of a few per cent; the
# kernel's share (syscalls) is not counted, so confirm with bench.sh L1 side by side.
#
#   loadtest/instructions.sh [BINARY] [REQUESTS]
#
# BINARY defaults to target/perf/release/switchboard, REQUESTS to 2000 (after 500 warm-up
# requests, not counted), from 16 k6 workers. Needs valgrind (Debian's `valgrind`), k6
# (scripts/install-deps.sh puts it in .venv/bin) and redis-server. Add
# CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only to the build,
# and KEEP=FILE to keep callgrind's output: `callgrind_annotate --inclusive=yes FILE` shows
# where the instructions go.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/perf/release/switchboard}
requests=${2:-2000}
k6=${K6:-$PWD/.venv/bin/k6}
for tool in valgrind callgrind_control redis-server "$k6"; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "instructions.sh: no binary at $bin (cargo build --release)" >&2; exit 2; }

WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
redis_port=$(free_port)
# valgrind's gdb server names its pipes after the user and host; callgrind_control must agree.
export USER=${USER:-$(id -un)} LOGNAME=${LOGNAME:-$(id -un)}
cleanup() {
  [ -n "${vg:-}" ] && kill "$vg" 2>/dev/null || true
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$redis_port" --save '' --appendonly no --daemonize yes --dir "$WORK" \
  --logfile "$WORK/redis.log" >/dev/null
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

HOST=127.0.0.1 PORT=$port REDIS_URL=redis://127.0.0.1:$redis_port LOG_FORMAT=json \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" "$bin" \
  >"$WORK/replica.log" 2>&1 &
vg=$!
for _ in $(seq 600); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
  kill -0 "$vg" 2>/dev/null || { cat "$WORK/replica.log" >&2; exit 1; }
  sleep 0.2
done

cat >"$WORK/load.js" <<'EOF'
import http from 'k6/http';
export const options = {
  scenarios: { s: { executor: 'shared-iterations', vus: 16, iterations: Number(__ENV.N), maxDuration: '600s' } },
};
const body = JSON.stringify({ name: 'Ana' });
const params = { headers: { 'content-type': 'application/json' } };
export default function () {
  const r = http.post(`${__ENV.BASE}/users`, body, params);
  if (r.status !== 201) throw new Error(`POST /users answered ${r.status}`);
}
EOF
load() { BASE=http://127.0.0.1:$port N=$1 "$k6" run -q --no-summary "$WORK/load.js" >"$WORK/k6.log" 2>&1; }

load 500
HOST=127.0.0.1 callgrind_control -i on "$vg" >/dev/null 2>&1
load "$requests"
HOST=127.0.0.1 callgrind_control -i off "$vg" >/dev/null 2>&1
kill -TERM "$vg"
wait "$vg" || true
vg=
total=$(awk '/^totals:/ {print $2; exit}' "$WORK/callgrind.out")
echo "instructions per POST /users: $((total / requests)) (user space, $requests requests, $(basename "$bin"))"
if [ -n "${KEEP:-}" ]; then cp "$WORK/callgrind.out" "$KEEP"; echo "callgrind output: $KEEP"; fi
