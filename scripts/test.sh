#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing (Debian's
# redis-server, the npm Socket.IO client, promtool and the deploy validators, k6), then
# runs formatting, lints, the deploy checks, every test and a smoke run of the load tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

command -v redis-server >/dev/null || apt_install redis-server
command -v node >/dev/null || apt_install nodejs npm
(cd tests/client && npm ci --no-audit --no-fund --loglevel=error)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Static checks of deploy/ and k8s/; installs promtool under .venv-ops/tools.
scripts/check-deploy.sh
export PATH="$PWD/.venv-ops/tools/prometheus/usr/bin:$PATH"

cargo test --workspace --locked

# Every metric the dashboard and the alerts query exists in a real scrape (saved by the
# metrics test above).
.venv-ops/bin/python scripts/check_deploy.py metrics target/tmp/metrics-scrape.txt

# The load-test kit cannot rot: each k6 script and every harness scenario, for seconds, at
# tiny numbers (no timing is asserted).
loadtest/smoke.sh
