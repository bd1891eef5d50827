#!/usr/bin/env bash
# Install the systemd integration (units, D-Bus activation files and bus policy, polkit
# actions, sysusers.d and tmpfiles.d entries) under DESTDIR, with @bindir@ rendered to BINDIR.
#
#   scripts/install-units.sh DESTDIR BINDIR
#
# DESTDIR is a staging root ("/" installs for real); PREFIX (default /usr) is where below it.
# Nix: DESTDIR=$out PREFIX= gives $out/lib/systemd/system, $out/share/dbus-1/... .
# Installing only copies files; see systemd/README.md for the steps after a real install.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DESTDIR BINDIR" >&2
    exit 2
fi
destdir=${1%/} bindir=$2
prefix=${PREFIX-/usr}
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../systemd

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/render-units.sh" "$src" "$work" "$bindir"

install_dir() { # FROM TO: every file of rendered FROM into DESTDIR/PREFIX/TO, mode 0644
    local from=$work/$1 to=$destdir$prefix/$2 file
    install -d -m 0755 "$to"
    for file in "$from"/*; do
        install -m 0644 "$file" "$to/"
        echo "installed $to/$(basename "$file")"
    done
}

install_dir system               lib/systemd/system
install_dir user                 lib/systemd/user
install_dir dbus/system-services share/dbus-1/system-services
install_dir dbus/system.d        share/dbus-1/system.d
install_dir dbus/services        share/dbus-1/services
install_dir polkit               share/polkit-1/actions
install_dir sysusers.d           lib/sysusers.d
install_dir tmpfiles.d           lib/tmpfiles.d

if [ -z "$destdir" ]; then
    cat <<'EOF'
Installed into the running system. Next:
  systemd-sysusers talaria.conf && systemd-tmpfiles --create talaria.conf
  put the secrets in /etc/talaria/credentials/ (gateway-key, model-api-key; mode 0600, root)
  systemctl daemon-reload && systemctl reload dbus
  systemctl enable --now talaria.target
EOF
fi
