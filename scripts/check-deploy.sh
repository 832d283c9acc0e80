#!/usr/bin/env bash
# Offline checks for the operations files: deploy/ (Dockerfile, compose,
# nginx, Prometheus, Grafana) and k8s/ (Kustomize base + overlays).
#
#   scripts/check-deploy.sh               # all static checks (among them: every
#                                         # metric the dashboard and the alert rules
#                                         # query is one src/ declares)
#   scripts/check-deploy.sh metrics.txt   # also: every metric name, label and label
#                                         # value they use is in this saved
#                                         # `curl .../metrics` output
#   scripts/check-deploy.sh --binary target/debug/switchboard
#                                         # the same against a scrape of that binary,
#                                         # started on loopback with a throwaway
#                                         # redis-server and driven through every
#                                         # path that records those metrics
#
# Installs nothing: scripts/install-deps.sh (run first by the test command) provides the
# Python venv .venv/ (kubernetes-validate, PyYAML), promtool (unpacked into .venv/tools/
# when not on PATH), nginx, a Compose validator and a Kustomize renderer. A missing tool
# stops this script with the package that provides it.
#
# Environment: KUBE_VERSIONS (default "1.29.0 1.37.0") lists the Kubernetes
# versions whose schemas every rendered object must satisfy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRAPE=""
BINARY=""
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
if [[ $# -gt 0 && "$1" == "--binary" ]]; then
  [[ $# -ge 2 && -x "$2" ]] || { echo "--binary needs an executable: ${2:-}" >&2; exit 2; }
  BINARY="$(abspath "$2")"
elif [[ $# -gt 0 ]]; then
  [[ -f "$1" ]] || { echo "scrape file not found: $1" >&2; exit 2; }
  SCRAPE="$(abspath "$1")"
fi
cd "$ROOT"

VENV="$ROOT/.venv"
TOOLS="$VENV/tools"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.29.0 1.37.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

step "tools"
missing() { die "$1 not found: install $2 (scripts/install-deps.sh does)"; }

PY="$VENV/bin/python"
[[ -x "$PY" ]] && "$PY" -c 'import kubernetes_validate, yaml' 2>/dev/null \
  || missing "the Python venv .venv with kubernetes-validate" "scripts/requirements.txt into .venv"
echo "python:    $("$PY" --version) (.venv)"

PROMTOOL="$(command -v promtool || echo "$TOOLS/prometheus/usr/bin/promtool")"
[[ -x "$PROMTOOL" ]] || missing promtool "Debian's prometheus (unpacked into .venv/tools/prometheus)"
echo "promtool:  $("$PROMTOOL" --version 2>&1 | head -1)"

NGINX="$(command -v nginx || true)"
[[ -n "$NGINX" ]] || missing nginx "Debian's nginx-light"
echo "nginx:     $("$NGINX" -v 2>&1)"

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  command -v docker-compose >/dev/null || missing "a Compose validator" "Debian's docker-compose"
  COMPOSE=(docker-compose)
fi
echo "compose:   $("${COMPOSE[@]}" version 2>&1 | head -1)"

# Kustomize renderer: kustomize v4+ (kubectl >= 1.21 embeds it; Debian's old
# kubernetes-client 1.20 embeds v2, which lacks `labels` and patch targets).
kubectl_kustomize_ok() {
  command -v kubectl >/dev/null || return 1
  local v
  v="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
  [[ -n "$v" && "$v" -ge 4 ]]
}
if command -v kustomize >/dev/null; then
  RENDER=(kustomize build)
  RENDER_VERSION="$(kustomize version 2>&1 | head -1)"
else
  kubectl_kustomize_ok || missing "a Kustomize v4+ renderer" "kustomize, or a kubectl >= 1.21"
  RENDER=(kubectl kustomize)
  RENDER_VERSION="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')"
fi
echo "kustomize: ${RENDER[*]} ($RENDER_VERSION)"

# ---------------------------------------------------------------- checks

FAILED=()
check() {
  # check NAME COMMAND...: runs one check, records a failure, carries on.
  local name="$1"; shift
  step "$name"
  if "$@"; then :; else FAILED+=("$name"); fi
}

check "promtool check config" "$PROMTOOL" check config deploy/prometheus/prometheus.yml
check "promtool check rules" "$PROMTOOL" check rules deploy/prometheus/alerts.yml
check "promtool test rules" "$PROMTOOL" test rules deploy/prometheus/alerts_test.yml
check "PrometheusRule generated from alerts.yml" "$PY" scripts/check_deploy.py gen-prometheusrule --check

render_and_validate() {
  local overlay="$1" out
  out="$WORK/$(basename "$1").yaml"
  shift
  "${RENDER[@]}" "$overlay" > "$out" || return 1
  local versions=()
  for v in $KUBE_VERSIONS; do versions+=(--kube-version "$v"); done
  "$PY" scripts/check_deploy.py k8s "${versions[@]}" "$@" "$out"
}
check "kustomize k8s/base" render_and_validate k8s/base
check "kustomize k8s/overlays/dev" render_and_validate k8s/overlays/dev
check "kustomize k8s/overlays/prod" render_and_validate k8s/overlays/prod --forbid-latest --require-auth token

auth_secret_required() {
  # The prod render minus every AUTH_SECRET source must be refused: with AUTH=token and no
  # signing key the replicas only crash-loop.
  local src="$WORK/prod.yaml" out="$WORK/prod-no-auth-secret.yaml" log="$WORK/prod-no-auth-secret.log"
  [[ -s "$src" ]] || { echo "  no prod render to check"; return 1; }
  "$PY" - "$src" "$out" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")) if d]
for d in docs:
    for c in (d.get("spec") or {}).get("template", {}).get("spec", {}).get("containers", []):
        c["env"] = [e for e in c.get("env") or [] if e.get("name") != "AUTH_SECRET"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w", encoding="utf-8"), sort_keys=False)
PY
  if "$PY" scripts/check_deploy.py k8s --require-auth token "$out" >"$log" 2>&1; then
    cat "$log"; echo "  FAIL: a prod render with AUTH=token and no AUTH_SECRET source passed"; return 1
  fi
  grep -q "AUTH=token but AUTH_SECRET has no source" "$log" || { cat "$log"; return 1; }
  echo "  ok: a prod render with AUTH=token and no AUTH_SECRET source is refused"
}
check "prod without an AUTH_SECRET source is refused" auth_secret_required
renders=()
for f in base dev prod; do [[ -s "$WORK/$f.yaml" ]] && renders+=("$WORK/$f.yaml"); done
if [[ ${#renders[@]} -gt 0 ]]; then
  check "PrometheusRule == alerts.yml in every render" "$PY" scripts/check_deploy.py rules-match "${renders[@]}"
fi

check "Grafana dashboard" "$PY" scripts/check_deploy.py dashboard --promtool "$PROMTOOL"
check "metric names declared by the service (src/)" "$PY" scripts/check_deploy.py exports
compose_config() {
  "${COMPOSE[@]}" -f deploy/compose.yaml config -q && echo "  ok: deploy/compose.yaml matches the Compose schema"
}
check "compose schema (${COMPOSE[*]} config)" compose_config
check "compose / nginx / Prometheus consistency" "$PY" scripts/check_deploy.py compose

nginx_test() {
  # nginx -t resolves upstream hosts, which only exist inside the compose
  # network: test a copy with the replicas mapped to loopback addresses and
  # temp paths that need no /var/lib/nginx.
  local dir="$WORK/nginx"
  mkdir -p "$dir/tmp"
  sed -e 's/server switchboard-\([0-9][0-9]*\):3000/server 127.0.0.\1:3000/' \
      -e "s|^http {|http {\n    client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy; fastcgi_temp_path $dir/tmp/fastcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;|" \
      deploy/nginx/nginx.conf > "$dir/nginx.conf"
  "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e stderr && echo "  ok: deploy/nginx/nginx.conf syntax"
}
check "nginx -t" nginx_test
check "Dockerfile" "$PY" scripts/check_deploy.py dockerfile

if [[ -n "$SCRAPE" ]]; then
  check "metric names and labels vs $SCRAPE" "$PY" scripts/check_deploy.py metrics "$SCRAPE"
elif [[ -n "$BINARY" ]]; then
  check "metric names and labels vs a scrape of $BINARY" "$PY" scripts/check_deploy.py metrics --binary "$BINARY"
else
  step "metric names and labels vs a /metrics scrape"
  echo "  skipped: pass a saved scrape (curl -s localhost:9091/metrics > m.txt), or --binary target/debug/switchboard"
fi

echo
if [[ ${#FAILED[@]} -gt 0 ]]; then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "all deploy checks passed"
