#!/usr/bin/env bash
# Kills the Redis primary (SIGKILL) under a steady load through two replicas and measures what
# happens to acknowledged writes and events: for the Sentinel deployment (the primary that the
# sentinels watch) and for the Cluster (the primary that owns the slot of `{switchboard}:`,
# where every key of the replicas lives).
#
#   loadtest/failover.sh [--shape sentinel|cluster|both] [--rate N] [--secs S] [--kill-at S]
#                        [--bin PATH] [--wait-replicas N] [--settle S]
#
#   --shape          which deployment [both, one after the other]
#   --rate, --secs   POST /users per second, for how long [50, 30]
#   --kill-at        seconds into the load when the primary gets SIGKILL [10]
#   --bin            switchboard binary [built: cargo build --release --locked --bin switchboard]
#   --wait-replicas  REDIS_WAIT_REPLICAS for the replicas (after each write, wait for that many
#                    Redis replicas); dropped, with a warning, when the binary does not know it
#   --settle         longest wait for events after the load [10]
#
# For each shape: a private set of Redis shapes (scripts/redis-shapes.sh, in
# target/failover/shapes-SHAPE), two replicas on it without a load balancer (scripts/cluster.sh,
# in target/failover/cluster-SHAPE, logs in its logs/), then loadtest/failover.mjs drives the
# load, runs the kill and prints a table and one JSON line (also in
# target/failover/result-SHAPE[-waitN].json; every request and /readyz sample in
# result-SHAPE[-waitN].raw.json). Everything is stopped on exit. The exit status is
# non-zero only when a run broke, never because of the figures.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/failover"

die() { echo "failover.sh: $*" >&2; exit 1; }
log() { echo "failover.sh: $*" >&2; }

shape=both rate=50 secs=30 kill_at=10 bin="" wait_replicas="" settle=10
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --kill-at) kill_at=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --wait-replicas) wait_replicas=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
case "$shape" in sentinel | cluster) shapes=$shape ;; both) shapes="sentinel cluster" ;; *) die "--shape must be sentinel, cluster or both" ;; esac
[ -z "$wait_replicas" ] || [[ $wait_replicas =~ ^[0-9]+$ ]] || die "--wait-replicas must be a number"

# ------------------------------------------------------------------------------ tools
for tool in redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the tools)"
done
NODE=$(command -v node || true)
for candidate in "$ROOT/.venv/node/bin/node" /tmp/fresh/.venv/node/bin/node; do
  [ -n "$NODE" ] || { [ -x "$candidate" ] && NODE=$candidate; } || true
done
[ -n "$NODE" ] || die "node not found (scripts/install-deps.sh installs Node.js)"
[ -d "$ROOT/tests/client/node_modules/socket.io-client" ] ||
  die "socket.io-client is not installed in tests/client (scripts/install-deps.sh installs it)"

if [ -z "$bin" ]; then
  log "building: cargo build --release --locked --bin switchboard"
  (cd "$ROOT" && cargo build --release --locked --bin switchboard) ||
    die "the build failed (pass --bin PATH to use a binary built earlier)"
  bin="$ROOT/target/release/switchboard"
fi
[ -x "$bin" ] || die "no switchboard binary at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

label=""
if [ -n "$wait_replicas" ]; then
  if "$bin" --help 2>/dev/null | grep -q REDIS_WAIT_REPLICAS; then
    export REDIS_WAIT_REPLICAS=$wait_replicas
    label="WAIT $wait_replicas"
    log "replicas run with REDIS_WAIT_REPLICAS=$wait_replicas"
  else
    log "WARNING: $bin does not know REDIS_WAIT_REPLICAS: --wait-replicas $wait_replicas is dropped"
    wait_replicas=""
  fi
fi
unset REDIS_URL PORT

# ------------------------------------------------------------------- start and stop
STARTED_CLUSTERS=() STARTED_SHAPES=()
cleanup() {
  local d
  for d in ${STARTED_CLUSTERS[@]+"${STARTED_CLUSTERS[@]}"}; do "$ROOT/scripts/cluster.sh" down --dir "$d" >/dev/null 2>&1 || true; done
  for d in ${STARTED_SHAPES[@]+"${STARTED_SHAPES[@]}"}; do "$ROOT/scripts/redis-shapes.sh" down --dir "$d" >/dev/null 2>&1 || true; done
  STARTED_CLUSTERS=() STARTED_SHAPES=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two consecutive free loopback ports below the ephemeral range.
free_ports() {
  python3 - <<'EOF'
import random, socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    b = random.randrange(20000, 32000)
    if free(b) and free(b + 1):
        print(b); sys.exit(0)
sys.exit(1)
EOF
}

# DIR/env of redis-shapes.sh: KEY=VALUE lines, values unquoted (with `&`): split at the first `=`.
declare -A SH
read_shapes_env() {
  local line
  SH=()
  while IFS= read -r line || [ -n "$line" ]; do
    [[ $line == *=* ]] || continue
    SH[${line%%=*}]=${line#*=}
  done <"$1"
}

cli() { timeout 5 redis-cli -h 127.0.0.1 "$@" 2>/dev/null | tr -d '\r'; }

# The port of the Cluster primary that owns SLOT, asked of the node on port $1.
slot_owner_port() {
  cli -p "$1" cluster nodes | awk -v slot="$2" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        if ($i ~ /^\[/) continue
        n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
        if (slot >= lo && slot <= hi) { split($2, a, "@"); m = split(a[1], b, ":"); print b[m]; exit }
      }
    }'
}

# The process listens on PORT: redis-server rewrites its command line to "redis-server 127.0.0.1:PORT".
pid_is_port() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q ":$2\b"; }

RESULTS=() BROKEN=0
run_shape() {
  local name=$1 shapes_dir="$OUT/shapes-$1" cluster_dir="$OUT/cluster-$1" url victim victim_port slot port i
  local result="$OUT/result-$name${wait_replicas:+-wait$wait_replicas}.json" before after
  mkdir -p "$OUT"
  rm -f "$result"
  log "[$name] starting the Redis shapes in $shapes_dir"
  "$ROOT/scripts/redis-shapes.sh" down --dir "$shapes_dir" >/dev/null 2>&1 || true
  STARTED_SHAPES+=("$shapes_dir")
  "$ROOT/scripts/redis-shapes.sh" up --dir "$shapes_dir" --owner-pid $$ >/dev/null || { log "[$name] redis-shapes.sh up failed"; return 1; }
  read_shapes_env "$shapes_dir/env"

  case "$name" in
    sentinel)
      url=${SH[REDIS_SENTINEL_URL]}
      victim_port=${SH[REDIS_SENTINEL_PRIMARY_PORT]}
      victim=$(cat "$shapes_dir/pids/primary.pid")
      cli -p "$victim_port" info replication | grep -qx 'role:master' || { log "[$name] port $victim_port is not a primary"; return 1; }
      before="primary 127.0.0.1:$victim_port"
      ;;
    cluster)
      url=${SH[REDIS_CLUSTER_URL]}
      read -r -a ports <<<"${SH[REDIS_CLUSTER_PORTS]}"
      slot=$(cli -p "${ports[0]}" cluster keyslot '{switchboard}:')
      victim_port=$(slot_owner_port "${ports[0]}" "$slot")
      [ -n "$victim_port" ] || { log "[$name] found no owner of slot $slot"; return 1; }
      victim=""
      for i in "${!ports[@]}"; do
        [ "${ports[$i]}" != "$victim_port" ] || victim=$(cat "$shapes_dir/pids/cluster-$((i + 1)).pid")
      done
      before="slot $slot on 127.0.0.1:$victim_port"
      ;;
  esac
  [ -n "$victim" ] && pid_is_port "$victim" "$victim_port" || { log "[$name] pid '$victim' is not the redis-server on port $victim_port"; return 1; }
  log "[$name] $before (pid $victim) gets SIGKILL at ${kill_at}s"

  port=$(free_ports) || { log "no free ports for the replicas"; return 1; }
  "$ROOT/scripts/cluster.sh" down --dir "$cluster_dir" >/dev/null 2>&1 || true
  STARTED_CLUSTERS+=("$cluster_dir")
  log "[$name] starting 2 replicas on ports $port-$((port + 1)) (logs in $cluster_dir/logs)"
  "$ROOT/scripts/cluster.sh" up --replicas 2 --redis-url "$url" --bin "$bin" --dir "$cluster_dir" \
    --lb-port 0 --base-port "$port" >/dev/null || { log "[$name] cluster.sh up failed"; return 1; }
  local urls pids
  urls=$(. "$cluster_dir/env" && echo "$REPLICA_URLS")
  pids=$(. "$cluster_dir/env" && echo "$REPLICA_PIDS")

  local rc=0
  "$NODE" "$ROOT/loadtest/failover.mjs" --shape "$name" ${label:+--label "$label"} --urls "$urls" \
    --rate "$rate" --secs "$secs" --kill-at "$kill_at" --settle "$settle" \
    --kill "kill -KILL $victim" --out "$result" --raw "${result%.json}.raw.json" || rc=$?

  # Afterwards: who is primary now, and are the very same replica processes alive and ready.
  case "$name" in
    sentinel) after="primary $(cli -p "${SH[REDIS_SENTINEL_PORTS]%% *}" sentinel get-master-addr-by-name switchboard | paste -sd:)" ;;
    cluster)
      for p in "${ports[@]}"; do [ "$p" = "$victim_port" ] || break; done
      after="slot $slot on 127.0.0.1:$(slot_owner_port "$p" "$slot")"
      ;;
  esac
  echo "after: $before (killed) -> $after"
  local pid u
  for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null; then echo "after: replica pid $pid still running (not restarted)"; else echo "after: replica pid $pid is gone"; fi
  done
  for u in $urls; do echo "after: $u/readyz -> $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$u/readyz")"; done
  # What the replicas complained about (LOG_FORMAT=json, one object per line), by message.
  local f
  for f in "$cluster_dir"/logs/replica-*.log; do
    [ -f "$f" ] || continue
    echo "after: warnings in $(basename "$f"):$(grep -o '"level":"\(WARN\|ERROR\)","message":"[^"]\{0,60\}' "$f" |
      sed 's/.*"message":"//' | sort | uniq -c | sort -rn | awk '{c = $1; $1 = ""; printf " %d×%s;", c, $0}')"
  done

  "$ROOT/scripts/cluster.sh" down --dir "$cluster_dir" >/dev/null 2>&1 || true
  "$ROOT/scripts/redis-shapes.sh" down --dir "$shapes_dir" >/dev/null 2>&1 || true
  STARTED_CLUSTERS=() STARTED_SHAPES=()
  [ "$rc" = 0 ] || { log "[$name] failover.mjs broke (exit $rc)"; return 1; }
  RESULTS+=("$result")
}

for s in $shapes; do
  run_shape "$s" || BROKEN=1
done
if [ ${#RESULTS[@]} -gt 1 ]; then
  echo
  "$NODE" "$ROOT/loadtest/failover.mjs" --summary "${RESULTS[@]}"
fi
exit "$BROKEN"
