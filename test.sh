#!/usr/bin/env bash
# Run Talaria's whole test suite: every crate's unit and integration tests.
# Installs what the build and the tests need first (when missing).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/prereqs.sh
ensure_build_tools
ensure_test_tools
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
