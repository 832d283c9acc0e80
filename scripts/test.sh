#!/usr/bin/env bash
# The one test command (CI runs exactly this): installs everything the tests need, once, up
# front (scripts/install-deps.sh), then runs formatting, lints, the deploy checks, the API
# document check, every test, the API fuzzer and a smoke run of the load tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# promtool, and Node.js when the machine's was too old (see install-deps.sh).
export PATH="$PWD/.venv/node/bin:$PWD/.venv/tools/prometheus/usr/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Static checks of deploy/ and k8s/.
scripts/check-deploy.sh

# Every test; among them, docs/openapi.json must be what the code generates and serves.
cargo test --workspace --locked

# The Socket.IO side's document is valid AsyncAPI 3 and names every event of the code.
node tests/client/asyncapi-check.mjs docs/asyncapi.yaml

# Every metric the dashboard and the alerts query exists in a real scrape (saved by the
# metrics test above).
.venv/bin/python scripts/check_deploy.py metrics target/tmp/metrics-scrape.txt

# Thousands of generated requests against the documented API, on both stores.
scripts/fuzz-api.sh

# The load-test kit cannot rot: each k6 script and every harness scenario, for seconds, at
# tiny numbers (no timing is asserted).
loadtest/smoke.sh
