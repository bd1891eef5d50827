# Shared by run.sh and test.sh: install what building and testing Talaria needs, when missing.
# Debian/Ubuntu packages are installed with apt-get (as root, or through sudo).

apt_install() {
    command -v apt-get >/dev/null 2>&1 || { echo "please install: $*" >&2; return 1; }
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

ensure_build_tools() {
    command -v cc >/dev/null 2>&1 || apt_install build-essential
    # The executor links libseccomp through youki's libcontainer (the OCI backend).
    local missing=()
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# The lint gate (`cargo fmt --check`, `cargo clippy`): a minimal rustup profile has neither.
ensure_lint_tools() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v rustup >/dev/null 2>&1 || { echo "please install: ${missing[*]}" >&2; return 1; }
    rustup component add "${missing[@]}"
}

ensure_test_tools() {
    command -v bash >/dev/null 2>&1 || apt_install bash
    # talaria-oci's tests build a busybox root filesystem for the containers they start.
    local missing=()
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
            || missing+=(busybox-static)
    else
        [ -x /bin/busybox ] || missing+=(busybox-static)
    fi
    # The bus and e2e suites start private dbus-daemons and call them with dbus-send; the
    # gateway runs under systemd-socket-activate; the unit files are checked with
    # systemd-analyze (PID 1 need not be systemd for any of these).
    command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
    # The scheduler's time-zone tests read the IANA database.
    [ -e /usr/share/zoneinfo/Europe/Berlin ] || missing+=(tzdata)
    command -v dbus-send >/dev/null 2>&1 || missing+=(dbus-bin)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
    [ ${#missing[@]} -eq 0 ] || apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
}
