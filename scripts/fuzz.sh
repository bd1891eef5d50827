#!/usr/bin/env bash
# Longer fuzz runs than CI's: every target of the talaria-fuzz harness (tests/fuzz) runs for
# SECONDS per round with a fresh random seed, round after round, until BUDGET seconds have
# passed. The first failing round stops the script and prints its seed; the failing test's own
# report names the case and how to rerun exactly that case.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60 (at most 3000)] [BUDGET_SECONDS=600] [nextest filter]
#   scripts/fuzz.sh 30 300 'test(/gateway_http/)'
#
# The CI run is `cargo nextest run -p talaria-fuzz` (fixed seed, bounded cases).
set -euo pipefail
cd "$(dirname "$0")/.."
per_target="${1:-60}"
budget="${2:-600}"
filter="${3:-all()}"

# The service targets drive the real daemons and the talaria binary.
cargo build --workspace --bins --quiet
cargo test -p talaria-fuzz --no-run --quiet

started=$(date +%s)
round=0
while (( $(date +%s) - started < budget )); do
    round=$((round + 1))
    seed=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
    echo "fuzz round $round: seed 0x$seed, $per_target s per target"
    # Each target is one test that stops at its time budget; the `fuzz` nextest profile lets
    # a test run up to an hour.
    if ! TALARIA_FUZZ_SEED="0x$seed" TALARIA_FUZZ_SECS="$per_target" \
        cargo nextest run -p talaria-fuzz --profile fuzz --no-fail-fast \
        --final-status-level fail -E "$filter"; then
        echo
        echo "FUZZ FAILURE in round $round: TALARIA_FUZZ_SEED=0x$seed"
        echo "rerun the round:  TALARIA_FUZZ_SEED=0x$seed TALARIA_FUZZ_SECS=$per_target cargo nextest run -p talaria-fuzz"
        echo "(the failing test's report above names the case: add TALARIA_FUZZ_CASE=<index>)"
        exit 1
    fi
done
echo "fuzz: $round rounds, no failure in ${budget} s"
