#!/usr/bin/env bash
# Check the systemd integration in systemd/ against the daemons built into BINDIR:
#
#   1. render it (scripts/render-units.sh) with @bindir@ = BINDIR;
#   2. `systemd-analyze verify` every system and --user unit: any output is a failure (verify
#      only warns about bad keys and values, and still exits 0);
#   3. `systemd-analyze security --offline=yes`: every system service under its ceiling; the
#      --user services' scores are printed, not gated;
#   4. apply sysusers.d and tmpfiles.d to a scratch root and check what they made;
#   5. static checks of the bus policy, polkit actions and D-Bus activation files
#      (systemd/tests/check_bus_files.py lint);
#   6. start a system-bus-style dbus-daemon with the bus policy and activation files and check,
#      from connections of the real users, who may own and call each name (check_bus_files.py
#      bus; in a private mount namespace whose /etc/passwd and /etc/group name the users).
#
#   scripts/check-units.sh BINDIR
#
# BINDIR must hold talaria-gatewayd, talaria-agentd, talaria-executord and talaria-schedulerd
# (verify checks that ExecStart= programs exist). Run as root on Debian 12 (systemd 252);
# missing tools are installed with apt-get. Exits non-zero, naming each failure, on any.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

# Ceilings for `systemd-analyze security` (0 = locked down, 10 = unprotected). The executor's
# is highest: whatever it forbids, it forbids every tool (see its unit).
declare -A CEILING=(
    [talaria-gateway.service]=2.5
    [talaria-agent.service]=2.5
    [talaria-executor.service]=5.0
    [talaria-scheduler.service]=1.5
)
DAEMONS=(talaria-gatewayd talaria-agentd talaria-executord talaria-schedulerd)

if [ $# -ne 1 ]; then
    echo "usage: $0 BINDIR" >&2
    exit 2
fi
bindir=$(cd "$1" 2>/dev/null && pwd) || { echo "check-units: BINDIR $1 is not a directory" >&2; exit 1; }
for daemon in "${DAEMONS[@]}"; do
    [ -x "$bindir/$daemon" ] || { echo "check-units: $bindir/$daemon is missing or not executable" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "check-units: run as root (the bus policy check connects as the service users)" >&2
    exit 1
fi

failures=()
fail() {
    failures+=("$1")
    echo "FAIL: $1" >&2
}
section() { printf '\n== %s\n' "$1"; }
errors_of() { # the "error: …" lines of check_bus_files.py, with their indented continuations
    awk '/^error: /{ sub(/^error: /, ""); p = 1; print; next } p && /^  /{ print; next } { p = 0 }' <<<"$1"
}

# -- tools -------------------------------------------------------------------------------------
have_unit() { [ -e "/usr/lib/systemd/$1" ] || [ -e "/lib/systemd/$1" ]; }
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
have_unit system/dbus.socket || missing+=(dbus)
have_unit user/dbus.socket || missing+=(dbus-user-session)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
# The bus check re-runs python as the service users: it must be a python they can execute
# (not one under /root, as pyenv's).
python=/usr/bin/python3
[ -x "$python" ] || missing+=(python3)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    # shellcheck source-path=SCRIPTDIR source=prereqs.sh
    source "$here/prereqs.sh"
    apt_install "${missing[@]}"
fi

# In /tmp whatever TMPDIR says: the service users the bus check switches to must be able to
# reach the bus socket and the checker in it.
work=$(mktemp -d /tmp/talaria-check-units.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
rendered=$work/rendered
"$here/render-units.sh" "$repo/systemd" "$rendered" "$bindir"

# -- 2. verify ---------------------------------------------------------------------------------
section "systemd-analyze verify"
mkdir -m 0700 "$work/xdg-runtime"
verify() { # SCOPE-FLAGS... -- UNITS...: fails on any output
    local out
    out=$(XDG_RUNTIME_DIR=$work/xdg-runtime systemd-analyze verify --man=no "$@" 2>&1) || true
    if [ -n "$out" ]; then
        fail "systemd-analyze verify $*:"$'\n'"$out"
    fi
}
for unit in "$rendered"/system/*; do
    verify "$unit"
    echo "system/$(basename "$unit"): verified"
done
for unit in "$rendered"/user/*; do
    verify --user "$unit"
    echo "user/$(basename "$unit"): verified"
done

# The --user units' state goes under ~/.local/state on every systemd: StateDirectory= of a user
# unit is ~/.config on systemd 252. Seeing where a unit's state really lands needs a running
# user manager, so the rule is checked on the rendered files: no StateDirectory=, and the
# directory the daemon is told (STATE_DIRECTORY) is the one made and the one opened for writing.
for unit in "$rendered"/user/*.service; do
    name=$(basename "$unit")
    grep -q '^StateDirectory=' "$unit" && fail "$name: StateDirectory= in a --user unit lands in ~/.config on systemd 252"
    state=$(sed -n 's/^Environment=STATE_DIRECTORY=//p' "$unit")
    case "$state" in
        %h/.local/state/*) ;;
        *) fail "$name: STATE_DIRECTORY is ${state:-unset}, not under %h/.local/state"; continue ;;
    esac
    grep -qxF "ExecStartPre=+/bin/mkdir -p -m 0700 $state" "$unit" || fail "$name: $state is not made before the sandbox"
    grep -qxF "ReadWritePaths=$state" "$unit" || fail "$name: $state is not writable in the sandbox"
    echo "user/$name: state in $state"
done

# -- 3. security -------------------------------------------------------------------------------
section "systemd-analyze security --offline=yes"
score_of() { # SCOPE-FLAGS... UNIT: prints the overall exposure, or nothing
    XDG_RUNTIME_DIR=$work/xdg-runtime systemd-analyze security --offline=yes "$@" 2>/dev/null \
        | sed -n 's/^→ Overall exposure level for [^:]*: \([0-9][0-9.]*\) .*/\1/p'
}
printf '%-28s %-7s %-6s %-8s %s\n' UNIT SCOPE SCORE CEILING RESULT
for unit in "$rendered"/system/*.service; do
    name=$(basename "$unit")
    ceiling=${CEILING[$name]:-}
    score=$(score_of "$unit")
    if [ -z "$ceiling" ]; then
        fail "$name has no security ceiling in scripts/check-units.sh"
        continue
    fi
    if [ -z "$score" ]; then
        fail "systemd-analyze security printed no overall exposure for system/$name"
        continue
    fi
    # systemd compares against --threshold in tenths.
    threshold=$(awk -v c="$ceiling" 'BEGIN { printf "%d", c * 10 + 0.5 }')
    if XDG_RUNTIME_DIR=$work/xdg-runtime systemd-analyze security --offline=yes --threshold="$threshold" "$unit" >/dev/null 2>&1; then
        result=ok
    else
        result="OVER CEILING"
        fail "system/$name: exposure $score is over its ceiling $ceiling"
    fi
    printf '%-28s %-7s %-6s %-8s %s\n' "$name" system "$score" "$ceiling" "$result"
done
for unit in "$rendered"/user/*.service; do
    name=$(basename "$unit")
    score=$(score_of --user "$unit")
    [ -n "$score" ] || fail "systemd-analyze security printed no overall exposure for user/$name"
    printf '%-28s %-7s %-6s %-8s %s\n' "$name" user "${score:-?}" - "not gated"
done

# -- 4. sysusers.d and tmpfiles.d ----------------------------------------------------------------
section "sysusers.d and tmpfiles.d (applied to a scratch root)"
sysroot=$work/sysroot
mkdir -p "$sysroot/etc"
# Start from this machine's accounts, so the users the check adds get free ids and root and
# the system users stay resolvable inside the bus check's mount namespace.
for db in passwd group shadow gshadow; do
    [ -e "/etc/$db" ] && cp "/etc/$db" "$sysroot/etc/$db"
done
if out=$(systemd-sysusers --root="$sysroot" "$rendered/sysusers.d/talaria.conf" 2>&1); then
    [ -z "$out" ] || echo "$out"
    # Two people for the bus check: one in talaria-admins, one in no Talaria group.
    out=$(systemd-sysusers --root="$sysroot" --inline \
        'u talaria-check-admin - "Talaria check, an admin"' \
        'm talaria-check-admin talaria-admins' \
        'u talaria-check-other - "Talaria check, anyone else"' 2>&1) \
        || fail "systemd-sysusers could not add the check's test users: $out"
else
    fail "systemd-sysusers rejected sysusers.d/talaria.conf:"$'\n'"$out"
fi
if out=$(systemd-tmpfiles --root="$sysroot" --create "$rendered/tmpfiles.d/talaria.conf" 2>&1); then
    [ -z "$out" ] || fail "systemd-tmpfiles complained about tmpfiles.d/talaria.conf:"$'\n'"$out"
    out=$("$python" "$repo/systemd/tests/check_bus_files.py" tmpfiles "$rendered/tmpfiles.d/talaria.conf" "$sysroot" 2>&1) \
        || fail "tmpfiles.d/talaria.conf did not create what it declares:"$'\n'"$(errors_of "$out")"
    echo "$out"
else
    fail "systemd-tmpfiles rejected tmpfiles.d/talaria.conf:"$'\n'"$out"
fi

# -- 5. static checks --------------------------------------------------------------------------
section "bus policy, polkit actions, activation files (static)"
if out=$("$python" "$repo/systemd/tests/check_bus_files.py" lint "$rendered" 2>&1); then
    echo "ok"
else
    echo "$out"
    fail "static checks of the D-Bus and polkit files:"$'\n'"$(errors_of "$out")"
fi

# -- 6. the bus policy, enforced ---------------------------------------------------------------
section "bus policy on a running dbus-daemon"
install -m 0644 "$repo/systemd/tests/check_bus_files.py" "$work/check_bus_files.py"
mkdir -m 0755 "$work/bus"
# The policy names users by name, so dbus-daemon must resolve them: bind the scratch root's
# passwd and group over /etc's in a mount namespace of our own (nothing on the host changes).
# shellcheck disable=SC2016 # the inner script's $1.. are its own arguments
if out=$(unshare --mount --propagation private -- sh -c '
        mount --bind "$1/etc/passwd" /etc/passwd && mount --bind "$1/etc/group" /etc/group &&
        exec "$2" "$3" bus "$4" "$5"' sh "$sysroot" "$python" "$work/check_bus_files.py" "$rendered" "$work/bus" 2>&1); then
    echo "$out"
else
    echo "$out"
    fail "the bus policy on a running dbus-daemon:"$'\n'"$(errors_of "$out")"
fi

# -- result ------------------------------------------------------------------------------------
echo
if [ ${#failures[@]} -gt 0 ]; then
    echo "check-units: ${#failures[@]} failure(s):" >&2
    for f in "${failures[@]}"; do
        echo "  - ${f//$'\n'/$'\n'    }" >&2
    done
    exit 1
fi
echo "check-units: all checks passed"
