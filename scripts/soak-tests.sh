#!/usr/bin/env bash
# The flake hunter: runs the integration suite N times in a row, as the test command runs it
# (`cargo test --locked --test integration`, every test at once on the machine's cores), and
# prints how often each test failed. A test that fails once in N runs is a failing test.
#
#   scripts/soak-tests.sh N [--hog] [--beside] [-- CARGO_TEST_ARGS...]
#
#   --hog      a busy loop on every core for the whole soak (a loaded CI machine)
#   --beside   a second copy of the suite runs beside each run (two suites' replicas, sockets
#              and timers on one machine); its failures are counted too
#   after --   passed to the test binary, e.g. `-- identity::` to soak one module
#
# Logs of every run stay in target/soak/. It installs nothing: the test command's
# scripts/install-deps.sh must have run once (promtool, Node.js, the npm client).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:?usage: scripts/soak-tests.sh N [--hog] [--beside] [-- CARGO_TEST_ARGS...]}
shift
hog=0 beside=0 filter=()
while [ $# -gt 0 ]; do
  case $1 in
    --hog) hog=1 ;;
    --beside) beside=1 ;;
    --) shift; filter=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
export PATH="$PWD/.venv/node/bin:$PWD/.venv/tools/prometheus/usr/bin:$PATH"

dir=target/soak
rm -rf "$dir" && mkdir -p "$dir"
cargo test --locked --test integration --no-run 2>"$dir/build.log" || { cat "$dir/build.log" >&2; exit 1; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ $hog -eq 1 ]; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    pids+=($!)
  done
fi

suite() { cargo test --locked --test integration -- "${filter[@]}" >"$1" 2>&1; }

failed_runs=0
for n in $(seq "$runs"); do
  start=$(date +%s)
  if [ $beside -eq 1 ]; then
    suite "$dir/run-$n-beside.log" &
    beside_pid=$!
  fi
  status=ok
  suite "$dir/run-$n.log" || status=FAILED
  if [ $beside -eq 1 ] && ! wait "$beside_pid"; then
    status="$status (beside: FAILED)"
  fi
  [ "$status" = ok ] || failed_runs=$((failed_runs + 1))
  printf 'run %d/%d: %s in %ds\n' "$n" "$runs" "$status" "$(($(date +%s) - start))"
done

echo
printf '%-90s %s\n' "test" "failures"
{ grep -h '^test .* \.\.\. FAILED$' "$dir"/run-*.log || true; } |
  sed -e 's/^test //' -e 's/ \.\.\. FAILED$//' | sort | uniq -c | sort -rn |
  awk -v runs="$runs" '{ printf "%-90s %d of %d\n", $2, $1, runs }'
{ grep -L '^test result: ' "$dir"/run-*.log || true; } | sed 's/^/no result (build error or crash): /'
printf '%-90s %d of %d\n' "(runs with any failure)" "$failed_runs" "$runs"
grep -h '^test result: ' "$dir"/run-*.log | sed -e 's/;.*//' -e 's/^test result: //' | sort | uniq -c |
  awk '{ n = $1; $1 = ""; printf "%-90s %d runs\n", "(suite result:" $0 ")", n }'

[ "$failed_runs" -eq 0 ]
