#!/usr/bin/env bash
# Run Talaria's whole test suite: `cargo fmt --check` and `cargo clippy -D warnings`, every
# crate's unit and integration tests (the end-to-end suite starts the four unit daemons on a
# private bus), then the systemd units (verify,
# security ceilings, bus policy on a real dbus-daemon) and the Nix files (syntax, the module
# against a stub nixpkgs). Installs what the build and the tests need first (when missing).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/prereqs.sh
ensure_build_tools
ensure_test_tools
ensure_lint_tools
# The lint gate first: formatting and every clippy warning (workspace lints in Cargo.toml,
# among them unwrap/expect outside tests and unsafe blocks without a SAFETY comment) fail CI.
status=0
cargo fmt --all --check || status=1
cargo clippy --workspace --all-targets --quiet -- -D warnings || status=1
# The end-to-end suite and the unit check drive the real daemon binaries: build them all first
# (a test run only builds the binaries of packages whose own tests use them).
cargo build --workspace --bins --quiet
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi
scripts/check-units.sh "${CARGO_TARGET_DIR:-target}/debug" || status=1
scripts/check-nix.sh || status=1
exit "$status"
