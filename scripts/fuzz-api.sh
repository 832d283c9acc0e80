#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis (from .venv, which
# scripts/install-deps.sh installs; this script installs nothing): a replica on the embedded
# store, the same with AUTH=token (acting with a server token), then one on a real
# redis-server, then the same replica with Redis stopped. Every
# response must be documented (status, content type, schema, problem `code`), and none may be
# a 5xx, except 503 `store_unavailable` while Redis is down.
#
#   scripts/fuzz-api.sh                 # CI size: about 2,000 cases per store
#   MAX_EXAMPLES=1000 scripts/fuzz-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/debug/switchboard}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
WORK=$(mktemp -d)
ST=$ROOT/.venv/bin/schemathesis

die() { echo "fuzz: $*" >&2; exit 1; }
[ -x "$ST" ] || die "schemathesis not found in .venv: run scripts/install-deps.sh"
command -v redis-server >/dev/null || die "redis-server not found: install Debian's redis-server"
[ -x "$BIN" ] || cargo build --locked --quiet --bin switchboard

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for URL STATUS: polls for at most 20 s
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  die "$1 did not answer $2"
}
replica() { # replica NAME [ENV=VALUE...]: starts the binary; its base URL goes to $URL
  local name=$1 port; shift
  port=$(free_port)
  env -u REDIS_URL "$@" "$BIN" --host 127.0.0.1 --port "$port" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  URL="http://127.0.0.1:$port"
  wait_for "$URL/healthz" 200
}
fuzz() { # fuzz NAME URL CHECKS [ARGS...]
  local name=$1 url=$2 checks=$3; shift 3
  echo "== fuzz: $name" >&2
  "$ST" run "$ROOT/docs/openapi.json" --url "$url" --checks "$checks" \
    --max-examples "$MAX_EXAMPLES" --workers 1 --no-color \
    --report junit --report-dir "$ROOT/target/fuzz/$name" "$@" \
    || { tail -n 50 "$WORK"/*.log >&2; die "$name: schemathesis found problems (above)"; }
}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection

replica memory
fuzz memory "$URL" "$CHECKS"

secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
replica memory-token AUTH=token AUTH_SECRET="$secret"
server_token=$(AUTH_SECRET="$secret" "$BIN" token --server --ttl 3600)
fuzz memory-token "$URL" "$CHECKS" -H "Authorization: Bearer $server_token"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
replica redis REDIS_URL="redis://127.0.0.1:$redis_port" REDIS_TIMEOUT_MS=500
redis=$URL
wait_for "$redis/readyz" 200
fuzz redis "$redis" "$CHECKS"

# Redis down: every answer is still documented; the only 5xx allowed is 503
# store_unavailable, which the document lists, so not_a_server_error is left out.
kill "$redis_pid"
wait_for "$redis/readyz" 503
fuzz redis-down "$redis" "${CHECKS/not_a_server_error,/}" --phases examples,coverage,fuzzing --max-examples 20
echo "fuzz: ok (memory, memory with AUTH=token, redis, redis down)" >&2
