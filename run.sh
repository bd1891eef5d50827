#!/usr/bin/env bash
# Build Talaria (installing what the build needs, if missing) and run it.
#   ./run.sh chat --base-url http://127.0.0.1:8080/v1        # or: TALARIA_BASE_URL=... ./run.sh chat
# Any arguments are passed to the `talaria` binary.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/prereqs.sh
ensure_build_tools
# `talaria serve` hosts the units on a private bus daemon.
if [ "${1:-}" = serve ] && ! command -v dbus-daemon >/dev/null 2>&1; then
    apt_install dbus-daemon
fi
cargo build --release -p talaria --quiet
exec "${CARGO_TARGET_DIR:-target}/release/talaria" "$@"
