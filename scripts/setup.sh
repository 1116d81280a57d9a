#!/usr/bin/env bash
# Installs what building, running and testing the project needs, and only what
# is missing: a second run does nothing and takes well under a second.
#
#   scripts/setup.sh
#
# Debian packages:
#   libclang-dev             bindgen of the rocksdb crate (librocksdb-sys)
#   build-essential          C/C++ compiler for RocksDB (skipped when g++ and make exist)
#   curl                     the scripts talk HTTP with it
#   openssl                  scripts/cluster.sh up --tls makes its CA and certificates
#   busybox-static           shell and wget inside the locally built docker image
#   etcd-server etcd-client  the benchmark compares the registry with etcd
#   iptables iproute2        network fault injection in the chaos tests
#   prometheus               promtool: scripts/monitoring-check.sh checks a node's
#                            /metrics and the alert rules in docs/monitoring with it
#                            (Debian ships promtool only in this package; the
#                            Prometheus server it also installs is stopped and disabled)
# and the cargo subcommand nextest (the test runner).
#
# Runs unattended (CI=true, no stdin): apt runs non-interactively, and
# `apt-get update` runs at most once, only when something must be installed.
set -euo pipefail
LIB_PROG=setup
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DEBIAN_FRONTEND=noninteractive

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# The commands that stand for build-essential when it is not installed as such.
have_compiler() {
    command -v g++ >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 && command -v make >/dev/null 2>&1
}

missing=()
for pkg in libclang-dev build-essential curl openssl busybox-static etcd-server etcd-client iptables iproute2 prometheus; do
    if [[ "$pkg" == build-essential ]] && have_compiler; then
        continue
    fi
    pkg_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing packages (${missing[*]}) and no apt-get here: install them by hand"
    fi
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}): run as root or install sudo"
        sudo=(sudo -n)
    fi
    log "installing: ${missing[*]}"
    apt_log="$(mktemp)"
    trap 'rm -f "$apt_log"' EXIT
    if ! "${sudo[@]}" apt-get update -q >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get update failed"
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get install ${missing[*]} failed"
    fi
    for pkg in "${missing[@]}"; do
        pkg_installed "$pkg" || die "$pkg is still not installed after apt-get install"
        echo "setup: installed $pkg"
    done
fi

# Packages that ship a daemon may start it on install (etcd does, on Debian).
# Nothing here needs a system-wide etcd; the benchmark starts its own.
if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
    { systemctl disable --now etcd || service etcd stop; } >/dev/null 2>&1 || true
fi
# Likewise the Prometheus server (only promtool is wanted): it would take
# port 9090 and scrape nothing of ours.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    { systemctl disable --now prometheus || service prometheus stop; } >/dev/null 2>&1 || true
fi

# Rust toolchain pieces. rustup cannot download here, so only report them.
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH: install the Rust toolchain"
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest (cargo install --locked cargo-nextest)"
    cargo install --locked cargo-nextest >/dev/null 2>&1 || die "cargo install cargo-nextest failed"
    echo "setup: installed cargo-nextest"
fi
cargo fmt --version >/dev/null 2>&1 || log "warning: rustfmt is missing (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || log "warning: clippy is missing (rustup component add clippy)"
command -v python3 >/dev/null 2>&1 || die "python3 is missing (the scripts parse JSON with it)"
exit 0
