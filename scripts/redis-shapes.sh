#!/usr/bin/env bash
# Every Redis deployment shape an operator runs switchboard against, started on loopback for
# the integration tests: a Cluster (three primaries with one replica each), a Sentinel set (a
# primary, its replica and three sentinels watching them as `switchboard`) and a TLS-only
# server with its own CA. All are plain processes whose PIDs, logs, data and certificates
# live under one directory, so that test processes can share one set and stop it.
#
#   scripts/redis-shapes.sh up --dir DIR [--owner-pid PID] [--base-port N] [--timeout S]
#   scripts/redis-shapes.sh down --dir DIR      stop exactly what `up` started (by PID files)
#   scripts/redis-shapes.sh status --dir DIR    print DIR/env and which processes are alive
#   scripts/redis-shapes.sh kill --dir DIR --server NAME
#                                               SIGKILL one server of the set (cluster-1..6,
#                                               primary, replica, sentinel-1..3, tls), as a
#                                               crashed machine; waits until it is gone
#   scripts/redis-shapes.sh revive --dir DIR --server NAME
#                                               start a killed server again, as it was started
#                                               (its data is gone: it rejoins as a replica)
#
# `up` starts everything, waits until every shape is ready, writes DIR/env and prints it on
# stdout (progress and errors go to stderr). DIR/env holds KEY=VALUE lines, unquoted (so it
# is not shell-sourceable: split each line at its first `=`):
#   REDIS_CLUSTER_URL       redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&...&node=127.0.0.1:P6
#   REDIS_CLUSTER_PORTS     P1 P2 P3 P4 P5 P6
#   REDIS_SENTINEL_URL      redis-sentinel://127.0.0.1:S1?node=127.0.0.1:S2&node=127.0.0.1:S3&sentinelServiceName=switchboard
#                           (fred's format: the host:port after the scheme is a sentinel)
#   REDIS_SENTINEL_SERVICE_NAME, REDIS_SENTINEL_PRIMARY_PORT, REDIS_SENTINEL_REPLICA_PORT,
#   REDIS_SENTINEL_PORTS    S1 S2 S3
#   REDIS_TLS_URL           rediss://localhost:P (certificate for DNS:localhost and IP:127.0.0.1)
#   REDIS_TLS_CA_FILE       DIR/tls/ca.crt
#   REDIS_TLS_PORT          P
#   REDIS_SHAPES_DIR        DIR
#
# `up` options:
#   --dir DIR          state directory (required); `up` and `down` serialize on the lock file DIR.lock
#   --owner-pid PID    stop everything once PID has exited: a detached watchdog polls every
#                      second. Every `up` that passes one adds an owner; the watchdog stops
#                      the set once no owner is left, so several test processes can share it.
#   --base-port N      use ports N..N+17 [a free random range below the ephemeral ports]:
#                      N..N+5 cluster nodes, N+6 sentinel primary, N+7 its replica,
#                      N+8..N+10 sentinels, N+11 TLS, N+12..N+17 the cluster nodes' bus ports
#   --timeout S        longest wait for each shape to become ready [30]
#
# `up` is safe to repeat: when DIR/env exists and every recorded process is alive, it only
# registers --owner-pid and prints DIR/env. When some recorded process is dead, it stops
# the rest and starts a fresh set. If anything fails, it stops what it started, prints the
# logs' tails on stderr and exits 1. `down` is idempotent and exits 0 when nothing runs.
#
# It installs nothing: redis-server (Debian's redis-server, built with TLS), redis-cli
# (redis-tools) and openssl must be there (scripts/install-deps.sh installs them).
set -euo pipefail

SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
DIR=""
SERVER=""
TIMEOUT=30
SERVICE=switchboard
NPORTS=18
# Every server this script starts, by PID file name (the watchdog is not one of them).
SERVERS="cluster-1 cluster-2 cluster-3 cluster-4 cluster-5 cluster-6 primary replica sentinel-1 sentinel-2 sentinel-3 tls"

die() { echo "redis-shapes.sh: $*" >&2; exit 1; }
log() { echo "redis-shapes.sh: $*" >&2; }

need_tool() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: install Debian's $2 package (scripts/install-deps.sh installs the tests' tools)"; }

# A process that has exited but is not reaped yet (a zombie: this script is not its parent)
# counts as gone.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# A PID file names a process we started; the command-line check avoids signalling a
# process that reused the PID after ours exited.
pid_alive() {
  local pidfile=$1 pid want
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && running "$pid" || return 1
  want=$(cat "${pidfile%.pid}.cmd" 2>/dev/null || true)
  [ -z "$want" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"
}

# Starts a detached process: its own session (a Ctrl-C in the caller's terminal does not reach
# it), no descriptor of the caller (a harness reading the caller's output sees EOF when the
# caller exits; fd 9, the lock, stays with the caller), PID and command-line fragment recorded.
spawn() {
  local name=$1 match=$2; shift 2
  setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/pids/$name.pid"
  echo "$match" >"$DIR/pids/$name.cmd"
  printf '%s\0' "$match" "$@" >"$DIR/pids/$name.argv"
}

# Every recorded process but the caller itself: TERM to its process group (each one leads
# its own session), a wait, KILL after 10 s; then the PID files go.
stop_all() {
  local f pid pids=() i left
  [ -d "$DIR/pids" ] || return 0
  for f in "$DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then
      pid=$(cat "$f")
      if [ "$pid" != "$$" ]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
      fi
    fi
  done
  for ((i = 0; i < 100 && ${#pids[@]} > 0; i++)); do
    left=()
    for pid in "${pids[@]}"; do running "$pid" && left+=("$pid"); done
    pids=(${left[@]+"${left[@]}"})
    [ ${#pids[@]} -eq 0 ] || sleep 0.1
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$DIR"/pids/*.pid "$DIR"/pids/*.cmd "$DIR"/pids/*.argv
}

shapes_alive() {
  local name
  for name in $SERVERS; do pid_alive "$DIR/pids/$name.pid" || return 1; done
}

lock() {
  exec 9>"$DIR.lock"
  flock -w 300 9 || die "another up or down of $DIR has held $DIR.lock for 5 minutes"
}

# ------------------------------------------------------------------------------- owners
# DIR/owners: one "PID START-TIME" line per owner; the start time (field 22 of
# /proc/PID/stat) tells a live owner from a process that reused its PID. An exited owner
# that its parent has not reaped yet (a zombie) has no start time.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ] || return 1
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

any_owner_alive() {
  local pid start
  [ -f "$DIR/owners" ] || return 1
  while read -r pid start; do
    [ -n "$pid" ] && [ "$(proc_start "$pid" || true)" = "$start" ] && return 0
  done <"$DIR/owners"
  return 1
}

# Adds PID (if any) to the owners, forgets dead ones, and makes sure a watchdog runs while
# there is an owner, or when PID was given (should it have exited already, the watchdog
# stops everything at once). Called with the lock held.
register_owner() {
  local owner=$1 pid start live=""
  if [ -f "$DIR/owners" ]; then
    while read -r pid start; do
      if [ -n "$pid" ] && [ "$(proc_start "$pid" || true)" = "$start" ]; then live="$live$pid $start"$'\n'; fi
    done <"$DIR/owners"
  fi
  if [ -n "$owner" ] && start=$(proc_start "$owner"); then
    grep -qxF "$owner $start" <<<"$live" || live="$live$owner $start"$'\n'
  fi
  printf '%s' "$live" >"$DIR/owners"
  if [ -n "$live$owner" ] && ! pid_alive "$DIR/pids/watchdog.pid"; then
    spawn watchdog "redis-shapes.sh __watch" nohup "$SELF" __watch --dir "$DIR"
    log "watchdog $(cat "$DIR/pids/watchdog.pid") stops everything once owner(s) $(awk '{printf "%s%s", s, $1; s=" "}' "$DIR/owners") exited"
  fi
}

cmd_watch() {
  exec 9>"$DIR.lock"
  while :; do
    sleep 1
    # A `down` or a fresh `up` replaced or removed this watchdog: nothing left to do.
    [ "$(cat "$DIR/pids/watchdog.pid" 2>/dev/null)" = "$$" ] || exit 0
    any_owner_alive && continue
    flock 9
    if [ "$(cat "$DIR/pids/watchdog.pid" 2>/dev/null)" != "$$" ] || any_owner_alive; then
      flock -u 9
      continue
    fi
    log "$(date -u +%FT%TZ) every owner has exited; stopping everything in $DIR"
    stop_all
    rm -f "$DIR/env" "$DIR/owners"
    exit 0
  done
}

# -------------------------------------------------------------------------------- ports
# Prints the first port of N consecutive free loopback ports (BASE..BASE+N-1 when BASE is
# given, else a random range below the ephemeral ports, so that no outgoing connection takes
# one between this check and the bind); fails when there is none.
free_base() {
  local n=$1 base=${2:-} hi
  hi=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$hi" -le 32768 ] || hi=32768
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" "$hi" "$base" <<'EOF'
import random, socket, sys
n, hi, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
bases = [int(base)] if base else [random.randrange(20000, hi - n) for _ in range(500)]
for b in bases:
    if 0 < b and b + n <= 65536 and all(free(b + i) for i in range(n)):
        print(b)
        sys.exit(0)
sys.exit(1)
EOF
  else
    need_tool ss iproute2
    local used b i try ok
    used=" $(ss -Htan | awk '{n = split($4, a, ":"); printf "%s ", a[n]}') "
    for ((try = 0; try < 500; try++)); do
      if [ -n "$base" ]; then b=$base; else b=$((20000 + RANDOM % (hi - n - 20000))); fi
      ok=1
      for ((i = 0; i < n; i++)); do [[ $used == *" $((b + i)) "* ]] && { ok=0; break; }; done
      [ $ok = 1 ] && { echo "$b"; return 0; }
      [ -z "$base" ] || return 1
    done
    return 1
  fi
}

# ------------------------------------------------------------------------------- waiting
# Fails when a started server has exited (naming its log).
check_running() {
  local f
  for f in "$DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    [ "$(basename "$f")" != watchdog.pid ] || continue
    pid_alive "$f" || die "$(basename "$f" .pid) exited; see $DIR/logs/$(basename "$f" .pid).log"
  done
}

# wait_for WHAT PREDICATE...: runs PREDICATE every 0.2 s until it succeeds, for --timeout s.
# Our servers are checked first: one that could not bind its port has left that port to
# someone else, whose answer would mean nothing.
wait_for() {
  local what=$1 deadline=$(($(date +%s) + TIMEOUT)); shift
  while check_running && ! "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

# redis-cli has no connect or read timeout: a port that accepts and never answers (a TLS
# handshake with a stranger) would hang it.
cli() { timeout 3 redis-cli -h 127.0.0.1 "$@" 2>/dev/null | tr -d '\r'; }

pings() {
  local p
  for p in "$@"; do [ "$(cli -p "$p" ping)" = PONG ] || return 1; done
}

tls_ping() { [ "$(cli --tls --cacert "$DIR/tls/ca.crt" -p "$TLS_PORT" ping)" = PONG ]; }

# The primary streams to its replica (connected_slaves:1, state=online).
replica_online() {
  local info
  info=$(cli -p "$PRIMARY_PORT" info replication)
  grep -qx 'connected_slaves:1' <<<"$info" && grep -q '^slave0:.*state=online' <<<"$info"
}

# Every node: cluster_state:ok, all 16384 slots served, 6 nodes known, 3 primaries; every
# replica's link to its primary up.
cluster_ready() {
  local p info
  for p in $CLUSTER_PORTS; do
    info=$(cli -p "$p" cluster info)
    grep -qx 'cluster_state:ok' <<<"$info" && grep -qx 'cluster_slots_assigned:16384' <<<"$info" &&
      grep -qx 'cluster_slots_ok:16384' <<<"$info" && grep -qx 'cluster_known_nodes:6' <<<"$info" &&
      grep -qx 'cluster_size:3' <<<"$info" || return 1
    info=$(cli -p "$p" info replication)
    grep -qx 'role:master' <<<"$info" || grep -qx 'master_link_status:up' <<<"$info" || return 1
  done
}

# Every sentinel: names the primary, knows the replica and the 2 other sentinels, and the
# quorum and a failover majority can be reached.
sentinels_ready() {
  local s fields
  for s in $SENTINEL_PORTS; do
    [ "$(cli -p "$s" sentinel get-master-addr-by-name "$SERVICE" | paste -sd:)" = "127.0.0.1:$PRIMARY_PORT" ] || return 1
    # `sentinel master` answers field/value lines.
    fields=$(cli -p "$s" sentinel master "$SERVICE" |
      awk 'NR % 2 { k = $0; next } { v[k] = $0 } END { print v["flags"], v["num-slaves"], v["num-other-sentinels"] }')
    [ "$fields" = "master 1 2" ] || return 1
    [ "$(cli -p "$s" sentinel sentinels "$SERVICE" | grep -cx name)" = 2 ] || return 1
    cli -p "$s" sentinel ckquorum "$SERVICE" | grep -q '^OK' || return 1
  done
}

# --------------------------------------------------------------------------------- TLS
# A CA and a server certificate for localhost and 127.0.0.1 signed by it: EC P-256,
# valid for 3 days, with the extensions rustls/webpki insists on (a CA with
# basicConstraints CA:TRUE, a leaf that is not a CA, with a subjectAltName).
make_certs() {
  local t=$DIR/tls
  mkdir -p "$t"
  chmod 700 "$t"
  cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = switchboard test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/ca.key" &&
      openssl req -new -x509 -sha256 -days 3 -config "$t/openssl.cnf" -extensions ca \
        -key "$t/ca.key" -subj "/CN=switchboard redis-shapes test CA" -out "$t/ca.crt" &&
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/server.key" &&
      openssl req -new -sha256 -config "$t/openssl.cnf" -key "$t/server.key" -subj "/CN=localhost" \
        -out "$t/server.csr" &&
      openssl x509 -req -sha256 -days 3 -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
        -set_serial "0x$(openssl rand -hex 15)" -extfile "$t/openssl.cnf" -extensions server \
        -out "$t/server.crt" &&
      openssl verify -CAfile "$t/ca.crt" "$t/server.crt"
  } >"$DIR/logs/openssl.log" 2>&1 || die "openssl could not make the certificates: $(tail -n 5 "$DIR/logs/openssl.log")"
  chmod 600 "$t/ca.key" "$t/server.key"
}

# --------------------------------------------------------------------------------- up
# Starts every shape on ports BASE..BASE+17, writes DIR/env and registers OWNER (may be
# empty). Runs in a subshell: on any failure its EXIT trap stops what it started.
start_shapes() {
  local base=$1 owner=$2 i p bus
  CLUSTER_PORTS="" SENTINEL_PORTS=""
  for i in 0 1 2 3 4 5; do CLUSTER_PORTS="$CLUSTER_PORTS $((base + i))"; done
  CLUSTER_PORTS=${CLUSTER_PORTS# }
  PRIMARY_PORT=$((base + 6)) REPLICA_PORT=$((base + 7))
  SENTINEL_PORTS="$((base + 8)) $((base + 9)) $((base + 10))"
  TLS_PORT=$((base + 11))
  UP_OK=0
  trap 'rc=$?; [ "$UP_OK" = 1 ] || stop_all; exit $rc' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT

  rm -rf "$DIR/pids" "$DIR/logs" "$DIR/cluster" "$DIR/sentinel" "$DIR/tls" "$DIR/env" "$DIR"/sentinel-*.conf
  mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/cluster" "$DIR/sentinel"
  log "starting in $DIR on ports $base-$((base + NPORTS - 1))"
  make_certs

  # Replication starts at once rather than after the default 5 s diskless-sync delay.
  local common=(--bind 127.0.0.1 --save '' --appendonly no --repl-diskless-sync-delay 0)
  i=0
  for p in $CLUSTER_PORTS; do
    i=$((i + 1)) bus=$((base + 11 + i))
    mkdir -p "$DIR/cluster/node-$i"
    # The bus port is set explicitly: the default (port + 10000) could land in the
    # ephemeral range or on someone else's port.
    spawn "cluster-$i" redis-server redis-server --port "$p" "${common[@]}" --dir "$DIR/cluster/node-$i" \
      --cluster-enabled yes --cluster-config-file "$DIR/cluster/node-$i/nodes.conf" \
      --cluster-node-timeout 2000 --cluster-port "$bus"
  done
  mkdir -p "$DIR/sentinel/primary" "$DIR/sentinel/replica"
  spawn primary redis-server redis-server --port "$PRIMARY_PORT" "${common[@]}" --dir "$DIR/sentinel/primary"
  spawn replica redis-server redis-server --port "$REPLICA_PORT" "${common[@]}" --dir "$DIR/sentinel/replica" \
    --replicaof 127.0.0.1 "$PRIMARY_PORT"
  mkdir -p "$DIR/tls/data"
  spawn tls redis-server redis-server --port 0 --tls-port "$TLS_PORT" --bind 127.0.0.1 \
    --tls-cert-file "$DIR/tls/server.crt" --tls-key-file "$DIR/tls/server.key" \
    --tls-ca-cert-file "$DIR/tls/ca.crt" --tls-auth-clients no --save '' --appendonly no --dir "$DIR/tls/data"

  # shellcheck disable=SC2086
  wait_for "the cluster nodes, the sentinel primary and its replica to answer PING" pings $CLUSTER_PORTS "$PRIMARY_PORT" "$REPLICA_PORT"
  wait_for "the TLS server to answer PING on port $TLS_PORT" tls_ping
  # Sentinels learn replicas from the primary's INFO, at once when they connect and every
  # 10 s after: they start once the replica is attached so that they know it at once.
  wait_for "the replica to attach to the sentinel primary" replica_online

  i=0
  for p in $SENTINEL_PORTS; do
    i=$((i + 1))
    mkdir -p "$DIR/sentinel/sentinel-$i"
    # A sentinel rewrites its own config file (its id, the replicas and sentinels it found).
    cat >"$DIR/sentinel-$i.conf" <<EOF
port $p
bind 127.0.0.1
dir "$DIR/sentinel/sentinel-$i"
sentinel resolve-hostnames no
sentinel monitor $SERVICE 127.0.0.1 $PRIMARY_PORT 2
sentinel down-after-milliseconds $SERVICE 1000
sentinel failover-timeout $SERVICE 5000
EOF
    spawn "sentinel-$i" redis-server redis-server "$DIR/sentinel-$i.conf" --sentinel
  done

  # While the sentinels find each other (hello messages every 2 s), the cluster forms.
  local addrs=()
  for p in $CLUSTER_PORTS; do addrs+=("127.0.0.1:$p"); done
  timeout "$((TIMEOUT + 30))" redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$DIR/logs/cluster-create.log" 2>&1 </dev/null ||
    die "redis-cli --cluster create failed; see $DIR/logs/cluster-create.log"
  wait_for "cluster_state:ok with all 16384 slots on every cluster node" cluster_ready
  # shellcheck disable=SC2086
  wait_for "the sentinels to answer PING" pings $SENTINEL_PORTS
  wait_for "every sentinel to know the primary, its replica and the other sentinels" sentinels_ready
  check_running

  local node_list="" sentinel_list="" first_s
  for p in ${CLUSTER_PORTS#* }; do node_list="$node_list&node=127.0.0.1:$p"; done
  first_s=${SENTINEL_PORTS%% *}
  for p in ${SENTINEL_PORTS#* }; do sentinel_list="${sentinel_list}node=127.0.0.1:$p&"; done
  cat >"$DIR/env.tmp" <<EOF
REDIS_CLUSTER_URL=redis-cluster://127.0.0.1:${CLUSTER_PORTS%% *}?${node_list#&}
REDIS_CLUSTER_PORTS=$CLUSTER_PORTS
REDIS_SENTINEL_URL=redis-sentinel://127.0.0.1:$first_s?${sentinel_list}sentinelServiceName=$SERVICE
REDIS_SENTINEL_SERVICE_NAME=$SERVICE
REDIS_SENTINEL_PRIMARY_PORT=$PRIMARY_PORT
REDIS_SENTINEL_REPLICA_PORT=$REPLICA_PORT
REDIS_SENTINEL_PORTS=$SENTINEL_PORTS
REDIS_TLS_URL=rediss://localhost:$TLS_PORT
REDIS_TLS_CA_FILE=$DIR/tls/ca.crt
REDIS_TLS_PORT=$TLS_PORT
REDIS_SHAPES_DIR=$DIR
EOF
  mv "$DIR/env.tmp" "$DIR/env"
  UP_OK=1
  # Here rather than in the caller: should the caller be killed now, the owner is still watched.
  register_owner "$owner"
}

show_log_tails() {
  local f
  for f in "$DIR"/logs/*.log; do
    [ -s "$f" ] || continue
    echo "----- $f (last 15 lines)" >&2
    tail -n 15 "$f" >&2
  done
}

cmd_up() {
  local owner="" base_port="" attempt rc base child started
  TIMEOUT=30
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --base-port) base_port=$2; shift 2 ;;
      --timeout) TIMEOUT=$2; shift 2 ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  [ -n "$DIR" ] || die "up needs --dir DIR"
  [ -z "$owner" ] || [[ $owner =~ ^[0-9]+$ ]] || die "--owner-pid must be a PID"
  [ -z "$base_port" ] || [[ $base_port =~ ^[0-9]+$ ]] || die "--base-port must be a port number"
  [[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
  # Every tool is looked for before anything starts, so a missing one fails at once.
  need_tool redis-server redis-server
  need_tool redis-cli redis-tools
  need_tool openssl openssl
  need_tool flock util-linux
  need_tool setsid util-linux
  need_tool timeout coreutils
  [ -z "$owner" ] || proc_start "$owner" >/dev/null || die "--owner-pid $owner: no such process"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  [ "$DIR" != / ] || die "--dir must not be /"
  lock

  if [ -f "$DIR/env" ] && shapes_alive; then
    log "already up in $DIR"
    register_owner "$owner"
    cat "$DIR/env"
    return 0
  fi
  if compgen -G "$DIR/pids/*.pid" >/dev/null; then
    log "a previous set in $DIR is incomplete; stopping what is left of it"
    stop_all
  fi
  # DIR/owners stays: test processes that shared the old set share the new one.
  rm -f "$DIR/env"

  started=$(date +%s.%N)
  for attempt in 1 2 3; do
    if [ -n "$base_port" ]; then
      base=$(free_base "$NPORTS" "$base_port") ||
        die "ports $base_port-$((base_port + NPORTS - 1)) are not all free on 127.0.0.1"
    else
      base=$(free_base "$NPORTS") || die "found no $NPORTS consecutive free ports below the ephemeral range"
    fi
    # In the background so that a TERM or INT sent to this script reaches the subshell,
    # whose EXIT trap then stops what it started.
    set +e
    (
      set -e
      start_shapes "$base" "$owner"
    ) &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
    trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
    wait "$child"
    rc=$?
    trap - TERM INT
    set -e
    [ "$rc" -ne 0 ] || break
    # Another process took one of the ports between the check and the bind: try elsewhere.
    if [ -z "$base_port" ] && [ "$attempt" -lt 3 ] && grep -qs 'Address already in use' "$DIR"/logs/*.log; then
      log "a port of $base-$((base + NPORTS - 1)) was taken meanwhile; trying another range"
      continue
    fi
    show_log_tails
    die "up failed; everything it started is stopped"
  done
  log "up in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  cat "$DIR/env"
}

cmd_down() {
  [ -n "$DIR" ] || die "down needs --dir DIR"
  [ -d "$DIR" ] || { log "nothing runs in $DIR"; return 0; }
  DIR=$(cd "$DIR" && pwd)
  need_tool flock util-linux
  lock
  if compgen -G "$DIR/pids/*.pid" >/dev/null; then
    stop_all
    log "stopped everything started in $DIR"
  else
    log "nothing runs in $DIR"
  fi
  rm -f "$DIR/env" "$DIR/owners"
}

cmd_status() {
  [ -n "$DIR" ] || die "status needs --dir DIR"
  [ -f "$DIR/env" ] && cat "$DIR/env"
  local f
  for f in "$DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then echo "# $(basename "$f" .pid): running ($(cat "$f"))"; else echo "# $(basename "$f" .pid): dead"; fi
  done
  [ ! -s "$DIR/owners" ] || echo "# owners: $(awk '{printf "%s%s", s, $1; s=" "}' "$DIR/owners")"
}

cmd_kill() {
  [ -n "$DIR" ] && [ -n "$SERVER" ] || die "kill needs --dir DIR --server NAME"
  lock
  pid_alive "$DIR/pids/$SERVER.pid" || die "$SERVER is not running in $DIR"
  local pid i
  pid=$(cat "$DIR/pids/$SERVER.pid")
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do running "$pid" || return 0; sleep 0.1; done
  die "$SERVER (pid $pid) did not exit after SIGKILL"
}

cmd_revive() {
  [ -n "$DIR" ] && [ -n "$SERVER" ] || die "revive needs --dir DIR --server NAME"
  lock
  [ -f "$DIR/pids/$SERVER.argv" ] || die "$SERVER was never started in $DIR"
  ! pid_alive "$DIR/pids/$SERVER.pid" || die "$SERVER is running in $DIR"
  local argv=()
  mapfile -d '' argv <"$DIR/pids/$SERVER.argv"
  spawn "$SERVER" "${argv[@]}"
  # shellcheck disable=SC2086
  wait_for "$SERVER to answer PING" pings $(port_of "$SERVER")
}

# The port a server of the set listens on (DIR/env names them all).
port_of() {
  local key index
  case "$1" in
    cluster-*) key=REDIS_CLUSTER_PORTS index=${1#cluster-} ;;
    sentinel-*) key=REDIS_SENTINEL_PORTS index=${1#sentinel-} ;;
    primary) key=REDIS_SENTINEL_PRIMARY_PORT index=1 ;;
    replica) key=REDIS_SENTINEL_REPLICA_PORT index=1 ;;
    *) die "no port known for $1" ;;
  esac
  grep "^$key=" "$DIR/env" | cut -d= -f2 | tr ' ' '\n' | sed -n "${index}p"
}

main() {
  local cmd=${1:-}
  [ $# -eq 0 ] || shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down | status | kill | revive | __watch)
      while [ $# -gt 0 ]; do
        case "$1" in
          --dir) DIR=$2; shift 2 ;;
          --server) SERVER=$2; shift 2 ;;
          *) die "unknown option for $cmd: $1" ;;
        esac
      done
      case "$cmd" in
        down) cmd_down ;;
        status) cmd_status ;;
        kill) cmd_kill ;;
        revive) cmd_revive ;;
        __watch) cmd_watch ;;
      esac
      ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2 ;;
  esac
}

main "$@"
