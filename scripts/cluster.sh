#!/usr/bin/env bash
# A local cluster without containers: redis-server, N replicas on loopback ports, nginx in
# front and optionally Prometheus, all as plain processes whose PIDs and logs live in one
# directory, so that tests, k6 and the benchmark harness can start, break and stop it.
#
#   scripts/cluster.sh up [options]          start everything, wait until ready, write DIR/env
#   scripts/cluster.sh down [--dir DIR]      stop exactly what `up` started (by PID files)
#   scripts/cluster.sh kill-replica I [--dir DIR] [--signal TERM|KILL]   (I counts from 1)
#   scripts/cluster.sh drain-replica I [--dir DIR]   take replica I out of nginx (as Kubernetes
#                                            removes a terminating pod's endpoint), then SIGTERM it
#   scripts/cluster.sh status [--dir DIR]    print DIR/env and which processes are alive
#
# `up` options (defaults in brackets):
#   --replicas N          replicas to start [2]
#   --impl IMPL           switchboard | node (the Node.js baseline) [switchboard]
#   --bin PATH            switchboard binary [target/release/switchboard, else target/debug/switchboard]
#   --baseline PATH       Node baseline sources, run from target/baseline (packages installed there by scripts/install-deps.sh)
#                         [$BASELINE_SRC, else ../shared/baselines/node-socketio]
#   --dir DIR             state directory (PIDs, logs, generated configs, env) [target/cluster]
#   --redis-port P        port of the redis-server this script starts [6390]
#   --redis-url URL       use this Redis instead of starting one (it is not stopped by `down`)
#   --namespace NS        switchboard's REDIS_NAMESPACE [switchboard]
#   --base-port P         replica I listens on P+I-1 [3101]
#   --lb-port P           nginx port; 0 = no load balancer [3100]
#   --lb MODE             sticky (hash $remote_addr consistent: every loopback client lands on
#                         one replica, needed by the polling transport) | roundrobin
#                         (least_conn: spreads websocket-only clients) | cookie (like the
#                         Kubernetes ingress: a first response sets the cookie SWITCHBOARD_ROUTE,
#                         requests that carry it stick to one replica) [sticky]
#                         Every response names the replica that answered in `X-Upstream`.
#   --cors-origins LIST   switchboard's CORS_ORIGINS (comma-separated) [unset: `*`]
#   --drain-period S      switchboard's DRAIN_PERIOD [0]
#   --cpus LIST           pin the replicas with `taskset -c LIST` (e.g. 0) []
#   --prometheus          also run Prometheus scraping every replica
#   --prometheus-port P   [9090]
#   --timeout S           longest wait for readiness [60]
#
# It installs nothing: redis-server, nginx (nginx-light), prometheus and, for the baseline,
# nodejs and npm must be there (scripts/install-deps.sh installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/target/cluster"

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

# Debian puts nginx and prometheus in /usr/sbin and /usr/bin; a non-root PATH may lack sbin.
find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
# Prints the path of tool $1, or stops naming the Debian package $2 that provides it.
need_tool() {
  local path
  path=$(find_tool "$1")
  [ -n "$path" ] || die "$1 not found: install Debian's $2 (scripts/install-deps.sh installs it)"
  echo "$path"
}

# A PID file names a process we started; the command-line check avoids signalling a
# process that reused the PID after ours exited.
pid_alive() {
  local pidfile=$1 pid want
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  want=$(cat "${pidfile%.pid}.cmd" 2>/dev/null || true)
  [ -z "$want" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"
}

# Starts a detached process (own session, so a Ctrl-C in the caller's terminal does not reach
# it) and records its PID and a fragment of its command line. Returns once the program runs:
# until the forked shell has exec'd it, the PID's command line is this script's, and
# pid_alive would take the starting program for a dead one (seen on a loaded machine: nginx
# "exited" before it started, then was stopped by the clean-up).
spawn() {
  local name=$1 match=$2 pid i; shift 2
  setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DIR/pids/$name.pid"
  echo "$match" >"$DIR/pids/$name.cmd"
  for ((i = 0; i < 1000; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$match" && return 0
    sleep 0.01
  done
}

stop_pidfile() {
  local pidfile=$1 sig=${2:-TERM} wait_s=${3:-15} pid i
  if pid_alive "$pidfile"; then
    pid=$(cat "$pidfile")
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$(basename "$pidfile" .pid) ($pid) ignored SIG$sig for ${wait_s}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile" "${pidfile%.pid}.cmd"
}

wait_http() {
  local url=$1 deadline=$2 pidfile=${3:-}
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then
      die "$(basename "$pidfile" .pid) exited before $url answered; see $DIR/logs/$(basename "$pidfile" .pid).log"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $url"
    sleep 0.2
  done
}

cmd_down() {
  [ -d "$DIR/pids" ] || { log "nothing running in $DIR"; return 0; }
  local f
  # Front to back: the load balancer first, Redis last, so replicas drain cleanly.
  for f in "$DIR"/pids/prometheus.pid "$DIR"/pids/nginx.pid; do stop_pidfile "$f" TERM 10; done
  # Wait for these stops only: a bare `wait` would also wait for the processes that a
  # failed `up` in this same shell started, Redis included, and never return.
  local stops=()
  for f in "$DIR"/pids/replica-*.pid; do
    [ -e "$f" ] || continue
    stop_pidfile "$f" TERM $((15 + ${DRAIN:-0})) &
    stops+=($!)
  done
  [ ${#stops[@]} -eq 0 ] || wait "${stops[@]}"
  stop_pidfile "$DIR/pids/redis.pid" TERM 10
  log "stopped everything started in $DIR"
}

cmd_kill_replica() {
  local idx=$1 sig=$2 pidfile
  pidfile="$DIR/pids/replica-$idx.pid"
  pid_alive "$pidfile" || die "replica $idx is not running (no live $pidfile)"
  kill "-$sig" "$(cat "$pidfile")"
  log "sent SIG$sig to replica $idx (pid $(cat "$pidfile"))"
}

cmd_drain_replica() {
  local idx=$1 port old new i
  pid_alive "$DIR/pids/replica-$idx.pid" || die "replica $idx is not running"
  pid_alive "$DIR/pids/nginx.pid" || die "no load balancer runs in $DIR"
  port=$(. "$DIR/env" && echo "$REPLICA_URLS" | tr ' ' '\n' | sed -n "${idx}p" | sed 's/.*://')
  sed -i "s|server 127.0.0.1:$port |server 127.0.0.1:$port down |" "$DIR/nginx/nginx.conf"
  old=$(pgrep -P "$(cat "$DIR/pids/nginx.pid")" | sort)
  kill -HUP "$(cat "$DIR/pids/nginx.pid")"
  # The reload is done once new workers run; old ones linger only for open websockets.
  for ((i = 0; i < 100; i++)); do
    new=$(pgrep -P "$(cat "$DIR/pids/nginx.pid")" | sort | comm -13 <(echo "$old") -)
    [ -z "$new" ] || break
    sleep 0.05
  done
  [ -n "$new" ] || die "nginx did not reload"
  log "replica $idx (port $port) taken out of the load balancer"
  cmd_kill_replica "$idx" TERM
}

cmd_status() {
  [ -f "$DIR/env" ] && cat "$DIR/env"
  local f
  for f in "$DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then echo "# $(basename "$f" .pid): running ($(cat "$f"))"; else echo "# $(basename "$f" .pid): dead"; fi
  done
}

# The Node baseline is someone else's code: it is copied into a git-ignored directory at run
# time and never into the repository.
prepare_baseline() {
  local src=$1 dst=$2
  [ -f "$src/server.js" ] || die "no Node baseline at $src (use --baseline PATH)"
  # Its packages are installed up front by scripts/install-deps.sh, never from here.
  if ! cmp -s "$src/package-lock.json" "$dst/package-lock.json" || [ ! -d "$dst/node_modules" ]; then
    die "the Node baseline's packages are not installed in $dst: run scripts/install-deps.sh"
  fi
  cp "$src/server.js" "$dst/server.js"
}

write_nginx_conf() {
  local mode=$1 ports=$2 balance user_line="" route_maps="" route_cookie=""
  case "$mode" in
    sticky) balance="hash \$remote_addr consistent;" ;;
    roundrobin) balance="least_conn;" ;;
    cookie)
      # ingress-nginx's cookie affinity in nginx OSS: a request without the cookie gets a
      # fresh random route (its request id) and a cookie naming it; a request with the
      # cookie hashes its route to the same replica every time. SameSite unset = Lax, the
      # browser default: sent on same-site requests, credentialed cross-origin ones too.
      balance="hash \$route consistent;"
      route_maps="map \$cookie_SWITCHBOARD_ROUTE \$route { '' \$request_id; default \$cookie_SWITCHBOARD_ROUTE; }
  map \$cookie_SWITCHBOARD_ROUTE \$route_cookie { '' 'SWITCHBOARD_ROUTE=\$request_id; Path=/; HttpOnly'; default ''; }"
      # An empty value adds no header: only requests without the cookie get one.
      route_cookie="add_header Set-Cookie \$route_cookie always;"
      ;;
  esac
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  mkdir -p "$DIR/nginx"
  {
    cat <<EOF
# Generated by scripts/cluster.sh; every path points into $DIR.
$user_line
daemon off;
master_process on;
# Two workers: each has its own descriptor limit (20,000 here), and 10,000 proxied clients
# take 20,000 descriptors (client side + replica side).
worker_processes 2;
worker_rlimit_nofile $(ulimit -Hn);
pid $DIR/nginx/nginx.pid;
error_log $DIR/logs/nginx-error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/client_body;
  proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fastcgi;
  uwsgi_temp_path $DIR/nginx/uwsgi;
  scgi_temp_path $DIR/nginx/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  $route_maps
  upstream replicas {
    $balance
EOF
    local p
    for p in $ports; do echo "    server 127.0.0.1:$p max_fails=1 fail_timeout=5s;"; done
    cat <<EOF
    keepalive 64;
    # Below the replicas' HEADER_TIMEOUT (20 s), which also closes idle keep-alive
    # connections: nginx must never reuse one the replica is closing.
    keepalive_timeout 15s;
  }
  server {
    # No reuseport: on a reload, connections queued on an old worker's own socket would be reset.
    listen 127.0.0.1:$LB_PORT backlog=4096;
    location / {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      # Longer than Engine.IO's pingInterval + pingTimeout (25 s + 20 s).
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
      proxy_next_upstream error timeout http_502 http_503;
      # Which replica answered: lets tests see where a load balancer mode sends requests.
      add_header X-Upstream \$upstream_addr always;
      $route_cookie
    }
  }
}
EOF
  } >"$DIR/nginx/nginx.conf"
}

write_prometheus_conf() {
  local ports=$1 p
  {
    echo "# Generated by scripts/cluster.sh."
    echo "global: { scrape_interval: 5s, evaluation_interval: 5s }"
    echo "scrape_configs:"
    echo "  - job_name: $IMPL"
    echo "    static_configs:"
    echo "      - targets:"
    for p in $ports; do echo "          - 127.0.0.1:$p"; done
  } >"$DIR/prometheus.yml"
}

cmd_up() {
  local replicas=2 bin="" baseline="${BASELINE_SRC:-$ROOT/../shared/baselines/node-socketio}"
  local redis_port=6390 redis_url="" namespace=switchboard base_port=3101 lb_mode=sticky
  local drain=0 cpus="" prometheus=0 prom_port=9090 timeout=60 cors_origins=""
  IMPL=switchboard LB_PORT=3100
  while [ $# -gt 0 ]; do
    case "$1" in
      --replicas) replicas=$2; shift 2 ;;
      --impl) IMPL=$2; shift 2 ;;
      --bin) bin=$2; shift 2 ;;
      --baseline) baseline=$2; shift 2 ;;
      --dir) DIR=$2; shift 2 ;;
      --redis-port) redis_port=$2; shift 2 ;;
      --redis-url) redis_url=$2; shift 2 ;;
      --namespace) namespace=$2; shift 2 ;;
      --base-port) base_port=$2; shift 2 ;;
      --lb-port) LB_PORT=$2; shift 2 ;;
      --lb) lb_mode=$2; shift 2 ;;
      --cors-origins) cors_origins=$2; shift 2 ;;
      --drain-period) drain=$2; shift 2 ;;
      --cpus) cpus=$2; shift 2 ;;
      --prometheus) prometheus=1; shift ;;
      --prometheus-port) prom_port=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  case "$IMPL" in switchboard | node) ;; *) die "--impl must be switchboard or node" ;; esac
  case "$lb_mode" in sticky | roundrobin | cookie) ;; *) die "--lb must be sticky, roundrobin or cookie" ;; esac
  # Every tool is looked for before anything starts, so a missing one fails at once.
  local nginx="" prom=""
  need_tool curl curl >/dev/null
  if [ "$IMPL" = node ]; then
    need_tool node nodejs >/dev/null
    need_tool npm npm >/dev/null
  fi
  if [ -z "$redis_url" ]; then
    need_tool redis-server redis-server >/dev/null
    need_tool redis-cli redis-tools >/dev/null
  fi
  if [ "$LB_PORT" != 0 ] && [ "$replicas" -gt 0 ]; then nginx=$(need_tool nginx nginx-light); fi
  if [ "$prometheus" = 1 ]; then prom=$(need_tool prometheus prometheus); fi
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  if compgen -G "$DIR/pids/*.pid" >/dev/null; then
    local f
    for f in "$DIR"/pids/*.pid; do pid_alive "$f" && die "a cluster is already up in $DIR: run '$0 down --dir $DIR' first"; done
  fi
  rm -rf "$DIR/pids" "$DIR/logs" "$DIR/env"
  mkdir -p "$DIR/pids" "$DIR/logs"
  echo "$drain" >"$DIR/drain-period"
  # Anything that fails from here on (die, a failing command) stops what was already started.
  UP_OK=0
  trap '[ "$UP_OK" = 1 ] || { log "start-up failed; stopping what was started"; DRAIN=0 cmd_down; }' EXIT
  trap 'exit 130' INT TERM

  # 10,000 websocket clients need more descriptors than the usual 1,024.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

  local deadline=$(($(date +%s) + timeout))
  local run=()
  case "$IMPL" in
    switchboard)
      if [ -z "$bin" ]; then
        for bin in "$ROOT/target/release/switchboard" "$ROOT/target/debug/switchboard"; do [ -x "$bin" ] && break; done
      fi
      [ -x "$bin" ] || die "no switchboard binary at $bin (cargo build --release --bin switchboard, or --bin PATH)"
      bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
      run=("$bin")
      ;;
    node)
      local work
      work="$ROOT/target/baseline"
      prepare_baseline "$baseline" "$work"
      run=(node "$work/server.js")
      ;;
  esac
  [ -z "$cpus" ] || run=(taskset -c "$cpus" "${run[@]}")

  local redis_pid=""
  if [ -z "$redis_url" ]; then
    # Match on the program name only: redis rewrites its command line once it runs.
    spawn redis "redis-server" redis-server --bind 127.0.0.1 --port "$redis_port" \
      --save '' --appendonly no --dir "$DIR" --maxclients 10000
    redis_url="redis://127.0.0.1:$redis_port"
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
      pid_alive "$DIR/pids/redis.pid" || die "redis-server exited; see $DIR/logs/redis.log"
      [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for redis-server"
      sleep 0.1
    done
    redis_pid=$(cat "$DIR/pids/redis.pid")
  fi

  local i port ports="" urls="" pids="" per="" cors=()
  [ -z "$cors_origins" ] || cors=(CORS_ORIGINS="$cors_origins")
  for ((i = 1; i <= replicas; i++)); do
    port=$((base_port + i - 1))
    ports="$ports $port"
    if [ "$IMPL" = switchboard ]; then
      spawn "replica-$i" "$bin" env PORT="$port" HOST=127.0.0.1 REDIS_URL="$redis_url" \
        REDIS_NAMESPACE="$namespace" LOG_FORMAT=json DRAIN_PERIOD="$drain" "${cors[@]}" "${run[@]}"
    else
      spawn "replica-$i" "server.js" env PORT="$port" HOST=127.0.0.1 REDIS_URL="$redis_url" "${cors[@]}" "${run[@]}"
    fi
  done
  for ((i = 1; i <= replicas; i++)); do
    port=$((base_port + i - 1))
    # Both implementations answer /readyz (store reachable, event relay subscribed).
    wait_http "http://127.0.0.1:$port/readyz" "$deadline" "$DIR/pids/replica-$i.pid"
    urls="$urls http://127.0.0.1:$port"
    pids="$pids $(cat "$DIR/pids/replica-$i.pid")"
    per="${per}REPLICA_${i}_URL=http://127.0.0.1:$port
REPLICA_${i}_PID=$(cat "$DIR/pids/replica-$i.pid")
"
  done

  local lb_url="" nginx_pid=""
  if [ "$LB_PORT" != 0 ] && [ "$replicas" -gt 0 ]; then
    write_nginx_conf "$lb_mode" "$ports"
    mkdir -p "$DIR/nginx/client_body" "$DIR/nginx/proxy" "$DIR/nginx/fastcgi" "$DIR/nginx/uwsgi" "$DIR/nginx/scgi"
    "$nginx" -t -q -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" 2>"$DIR/logs/nginx-test.log" ||
      die "nginx rejected its config: $(cat "$DIR/logs/nginx-test.log")"
    spawn nginx "$DIR/nginx/nginx.conf" "$nginx" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf"
    lb_url="http://127.0.0.1:$LB_PORT"
    wait_http "$lb_url/healthz" "$deadline" "$DIR/pids/nginx.pid"
    nginx_pid=$(cat "$DIR/pids/nginx.pid")
  fi

  local prom_url="" prom_pid=""
  if [ "$prometheus" = 1 ]; then
    write_prometheus_conf "$ports"
    spawn prometheus "$DIR/prometheus.yml" "$prom" --config.file="$DIR/prometheus.yml" \
      --storage.tsdb.path="$DIR/prometheus-data" --web.listen-address="127.0.0.1:$prom_port"
    prom_url="http://127.0.0.1:$prom_port"
    wait_http "$prom_url/-/ready" "$deadline" "$DIR/pids/prometheus.pid"
    prom_pid=$(cat "$DIR/pids/prometheus.pid")
  fi
  UP_OK=1
  trap - INT TERM

  cat >"$DIR/env" <<EOF
# Written by scripts/cluster.sh up; source it: . $DIR/env
CLUSTER_DIR=$DIR
IMPL=$IMPL
LB_URL=$lb_url
LB_MODE=$lb_mode
NGINX_PID=$nginx_pid
REPLICAS=$replicas
REPLICA_URLS="${urls# }"
REPLICA_PIDS="${pids# }"
${per}REDIS_URL=$redis_url
REDIS_PID=$redis_pid
REDIS_NAMESPACE=$namespace
PROMETHEUS_URL=$prom_url
PROMETHEUS_PID=$prom_pid
EOF
  echo "cluster up ($IMPL, $replicas replicas, $DIR):"
  [ -z "$lb_url" ] || echo "  load balancer  $lb_url ($lb_mode)"
  for ((i = 1; i <= replicas; i++)); do
    echo "  replica $i      http://127.0.0.1:$((base_port + i - 1)) (pid $(cat "$DIR/pids/replica-$i.pid"))"
  done
  echo "  redis          $redis_url"
  [ -z "$prom_url" ] || echo "  prometheus     $prom_url"
  echo "  env            $DIR/env"
}

main() {
  local cmd=${1:-}
  [ $# -eq 0 ] || shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down | status | kill-replica | drain-replica)
      local idx="" sig=TERM
      if [ "$cmd" = kill-replica ] || [ "$cmd" = drain-replica ]; then
        [ $# -gt 0 ] || die "usage: $0 kill-replica I [--dir DIR] [--signal TERM|KILL]"
        idx=$1; shift
      fi
      while [ $# -gt 0 ]; do
        case "$1" in
          --dir) DIR=$2; shift 2 ;;
          --signal) sig=${2#SIG}; shift 2 ;;
          *) die "unknown option for $cmd: $1" ;;
        esac
      done
      case "$cmd" in
        down) DRAIN=$(cat "$DIR/drain-period" 2>/dev/null || echo 0) cmd_down ;;
        status) cmd_status ;;
        kill-replica) cmd_kill_replica "$idx" "$sig" ;;
        drain-replica) cmd_drain_replica "$idx" ;;
      esac
      ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2 ;;
  esac
}

main "$@"
