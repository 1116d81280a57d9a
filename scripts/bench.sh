#!/usr/bin/env bash
# The agent registry against etcd, side by side in one run.
#
#   scripts/bench.sh [all|<scenario>[,<scenario>...]] [--quick] [extra flags]
#
# Scenarios: ceiling, register, heartbeat, discover, mixed, expiry, failover,
# footprint, cards (agents with ~4 KiB A2A Agent Cards: memory with and
# without cards, discovery by skill and input mode; docs/benchmarks.md says
# what each measures on both sides), and security: the registry against
# itself with auth off and auth on (no etcd); `all` runs every scenario, then
# security.
# Each one starts a fresh 3-node registry cluster and then a fresh 3-node etcd
# cluster on this machine (registry on 127.0.0.1:27310-27313, etcd clients on
# 23791-23793, peers on 23801-23803; BENCH_PORT_BASE=P moves them to P..P+3,
# P+11..P+13, P+21..P+23), one after the other, with the same client
# concurrency and ~512-byte records, and removes them afterwards (also on
# error and on Ctrl-C).
#
# --quick: 1,000 agents and a few seconds per step, to prove the harness works
# (about 2-3 minutes; the figures are not asserted, but the run fails when a
# scenario errors out or measures nothing).
#
# Extra flags go to `registry-bench compare` (e.g. --agents 20000, --seconds 5,
# --concurrency 64; --include-card: cards asks for the cards in discovery
# hits). Results: JSON per scenario, results.md and benchmarks.svg in BENCH_OUT
# (default $CARGO_TARGET_DIR/bench-results), with the registry nodes' logs of
# every scenario in BENCH_OUT/logs; a full run (not --quick) of all scenarios
# also writes docs/benchmarks.svg.
#
# Environment: CARGO_TARGET_DIR (default target), REGISTRY_BIN (use this node
# binary, no build), ETCD_BIN (default /usr/bin/etcd), BENCH_OUT,
# BENCH_KEEP_LOGS (where the node logs go; default BENCH_OUT/logs),
# BENCH_PORT_BASE (see above).
set -euo pipefail
LIB_PROG=bench
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario=all
quick=()
extra=()
for a in "$@"; do
    case "$a" in
        --quick) quick=(--quick) ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
            exit 2
            ;;
        -*) extra+=("$a") ;;
        *)
            if ((${#extra[@]} > 0)) && [[ "${extra[-1]}" == --* && "${extra[-1]}" != *=* ]]; then
                extra+=("$a") # the value of an extra flag
            else
                scenario="$a"
            fi
            ;;
    esac
done

ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
if [[ ! -x "$ETCD_BIN" ]]; then
    if [[ "$ETCD_BIN" != /usr/bin/etcd ]]; then
        die "ETCD_BIN=$ETCD_BIN is not an executable file"
    fi
    log "etcd is not installed: installing the etcd-server package (apt-get install -y etcd-server)"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get install -y etcd-server >&2 ||
        { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y etcd-server >&2; } ||
        die "could not install etcd-server"
    # The package starts a system etcd on 2379/2380; the harness uses its
    # own ports, so it does not clash, but it is not wanted running.
    if command -v systemctl >/dev/null 2>&1; then
        "${sudo[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
log "$("$ETCD_BIN" --version | head -n1)"

build_registry
cargo_build_package registry-bench
bench="$(cargo_target_dir)/release/registry-bench"

out="${BENCH_OUT:-$(cargo_target_dir)/bench-results}"
export BENCH_KEEP_LOGS="${BENCH_KEEP_LOGS:-$out/logs}"
svg=()
if [[ "$scenario" == all && ${#quick[@]} == 0 ]]; then
    svg=(--svg "$REPO_ROOT/docs/benchmarks.svg")
fi

start="$(now)"
set +e
if [[ "$scenario" == security ]]; then
    "$bench" security "${quick[@]}" --out-dir "$out" --registry-bin "$(resolved_bin)" "${extra[@]}"
    rc=$?
else
    "$bench" compare "$scenario" "${quick[@]}" --out-dir "$out" \
        --registry-bin "$(resolved_bin)" --etcd-bin "$ETCD_BIN" "${svg[@]}" "${extra[@]}"
    rc=$?
    if [[ "$scenario" == all && $rc == 0 ]]; then
        log "security: the registry with auth off and on"
        "$bench" security "${quick[@]}" --out-dir "$out" --registry-bin "$(resolved_bin)"
        rc=$?
    fi
fi
set -e
log "finished in $(elapsed "$start") (exit $rc); results in $out"
exit "$rc"
