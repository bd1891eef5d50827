#!/usr/bin/env bash
# Render the systemd integration for one install: copy SRC (the repository's systemd/
# directory) to DEST, replacing the placeholder @bindir@ in every file with BINDIR, the
# directory that holds talaria-gatewayd, talaria-agentd, talaria-executord, talaria-schedulerd
# and talaria-sandbox (/usr/bin for a distribution package, a Nix store path for Nix).
#
#   scripts/render-units.sh SRC DEST BINDIR
#
# The one place that defines the rendering: scripts/install-units.sh, scripts/check-units.sh,
# the Nix module and packagers all call this (or do exactly what it does).
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 SRC DEST BINDIR" >&2
    exit 2
fi
src=$1 dest=$2 bindir=$3

[ -d "$src/system" ] || { echo "render-units: $src is not the systemd/ directory (no system/ in it)" >&2; exit 1; }
# BINDIR lands verbatim in ExecStart= lines: it must be absolute, and contain nothing that a
# unit file (whitespace, quotes, %, \) or the sed expression below (|, &) would interpret.
case $bindir in
    /*) ;;
    *) echo "render-units: BINDIR must be an absolute path, got '$bindir'" >&2; exit 1 ;;
esac
if [[ $bindir =~ [[:space:]\"\'%\\|\&] ]]; then
    echo "render-units: BINDIR '$bindir' contains a character unit files or sed would interpret" >&2
    exit 1
fi
bindir=${bindir%/}

mkdir -p "$dest"
# Only what gets installed, not the checks in tests/ or the README.
for part in system user dbus polkit sysusers.d tmpfiles.d; do
    (cd "$src" && find "$part" -type f) | while IFS= read -r file; do
        mkdir -p "$dest/$(dirname "$file")"
        sed -e "s|@bindir@|$bindir|g" "$src/$file" >"$dest/$file"
    done
done
