#!/usr/bin/env bash
# Writes docs/openapi.json from the code (the handlers' types and annotations).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked --quiet --bin switchboard -- openapi > docs/openapi.json
echo "wrote docs/openapi.json"
