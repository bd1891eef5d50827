#!/usr/bin/env bash
# Offline checks of the Nix files (flake.nix, flake.lock, nix/): syntax, the NixOS module
# evaluated against a stub lib for several configurations (secrets in the store must be
# refused), the flake's outputs with nixpkgs replaced by a local stub, the VM test's fake model
# and, once systemd/ exists, the module's assumptions about the shipped units. Nothing is
# fetched or built; what cannot be checked here is listed at the end. See nix/README.md.
# Installs Nix (Debian's nix-bin) when missing. Exits non-zero, naming the check, on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null 2>&1 || ! command -v nix >/dev/null 2>&1; then
    source scripts/prereqs.sh
    echo "check-nix: installing nix-bin" >&2
    apt_install nix-bin >/dev/null
fi

# Keep Nix off the machine's state: no build users, no binary cache, caches in a temp dir.
# Every evaluation uses --store dummy:// or a store under a temp dir, so /nix is never created.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export NIX_CONFIG=$'build-users-group =\nsubstituters =\nwarn-dirty = false'
export XDG_CACHE_HOME="$scratch/cache" XDG_STATE_HOME="$scratch/state" XDG_DATA_HOME="$scratch/data"

python3 nix/tests/check_nix.py
