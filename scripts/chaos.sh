#!/usr/bin/env bash
# Runs the chaos harness (jepsen-like-tests) against a local cluster of real
# agent-registry processes, then checks every recorded history.
#
#   scripts/chaos.sh ci                  every fault family briefly (3 nodes, a few minutes)
#   scripts/chaos.sh soak                every nemesis, 5 nodes, 60 s each, 2 seeds (long)
#   scripts/chaos.sh <nemesis> [args]    one scenario, e.g. partition-ring --nodes 5 --seed 7
#   scripts/chaos.sh list                the nemeses and tiers
#   scripts/chaos.sh check <history.json>
#
# Extra arguments go to `registry-chaos run` (--seed, --duration, --nodes,
# --target compose, ...). Runs land in target/chaos/<scenario>-<seed>/:
# history.json, report.md/report.json/latency.svg and the node logs.
#
# Needs root: partitions are iptables rules and delay/loss are tc qdiscs on
# lo (only ever on 127.0.1.x, removed at exit). Builds with --release in
# CARGO_TARGET_DIR (see scripts/lib.sh); REGISTRY_BIN=/path skips building
# the node binary. Exits non-zero on any anomaly or undecided verdict.
set -euo pipefail
LIB_PROG=chaos
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift || true
case "$cmd" in -h | --help | help) usage ;; esac

cargo_build_package jepsen-like-tests
CHAOS="$(cargo_target_dir)/release/registry-chaos"
[[ -x "$CHAOS" ]] || die "build succeeded but $CHAOS is missing"

case "$cmd" in
    list) exec "$CHAOS" list ;;
    check) exec "$CHAOS" check "$@" ;;
esac

if [[ "$(id -u)" != 0 ]]; then
    die "the chaos tests need root (iptables and tc on lo); run: sudo $0 $cmd $*"
fi
for tool in iptables tc; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install iptables iproute2)"
done

build_registry
start="$(now)"
rc=0
"$CHAOS" run --scenario "$cmd" --bin "$(resolved_bin)" --out "$REPO_ROOT/target/chaos" "$@" || rc=$?
log "registry-chaos exited $rc after $(elapsed "$start"); runs in $REPO_ROOT/target/chaos"
exit "$rc"
