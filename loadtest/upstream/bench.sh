#!/usr/bin/env bash
# Runs loadtest/bench.sh against switchboard built with the patches beside this script applied
# to the versions of engineioxide, engineioxide-core and hyper in Cargo.lock: the upstream
# changes issue 12 proposes, measured before they are proposed. The repository's own build
# never uses them.
#
#   loadtest/upstream/bench.sh --only L4,L4b --runs 3      # any harness flag
#
# The patched tree (HEAD, exported with git archive) builds in target/upstream.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$root/target/upstream

rm -rf "$work/tree" "$work/crates"
mkdir -p "$work/tree" "$work/crates"
cargo fetch --locked
manifest() {
  cargo metadata --locked --format-version 1 |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1]))' "$1"
}
git archive HEAD | tar -x -C "$work/tree"
printf '\n[patch.crates-io]\n' >>"$work/tree/Cargo.toml"
for crate in engineioxide engineioxide-core hyper; do
  src=$(dirname "$(manifest "$crate")")
  cp -r "$src" "$work/crates/"
  printf '%s = { path = "%s" }\n' "$crate" "$work/crates/$(basename "$src")" >>"$work/tree/Cargo.toml"
done
# Paths in the patches are relative to the crates directory (inside this work tree, hence --directory).
git apply --directory=target/upstream/crates loadtest/upstream/engineioxide.patch loadtest/upstream/hyper.patch
(cd "$work/tree" && CARGO_TARGET_DIR="$work/target" cargo build --release -p switchboard --bin switchboard)

SWITCHBOARD_BIN="$work/target/release/switchboard" exec loadtest/bench.sh "$@"
