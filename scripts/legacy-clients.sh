#!/usr/bin/env bash
# Runs the legacy-client compatibility tests (clients/legacy): the Python
# clients of the Dev-Tools and configurable-agents registries, re-created
# from their contracts, against a real 3-node cluster of the release binary.
#
#   scripts/legacy-clients.sh [PYTEST ARGS...]
#
#   venv     a Python virtual environment at LEGACY_VENV
#            (default /var/cache/agent-registry/venv-legacy), made with
#            `python3 -m venv`; clients/legacy/requirements.txt is installed
#            into it only when it changed (a hash stamp in the venv)
#   build    cargo build --release -p agent-registry (skipped with REGISTRY_BIN)
#   ruff     ruff check + ruff format --check on clients/legacy
#   mypy     mypy --strict on clients/legacy
#   pytest   pytest clients/legacy/tests -v (extra arguments are passed on)
#
# Environment: LEGACY_VENV, REGISTRY_BIN (use this node binary, no build),
# CARGO_TARGET_DIR, REGISTRY_READY_TIMEOUT (s the cluster gets to be ready).
# Exits non-zero on the first failure.
set -euo pipefail
LIB_PROG=legacy-clients
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LEGACY_DIR="$REPO_ROOT/clients/legacy"
REQUIREMENTS="$LEGACY_DIR/requirements.txt"
VENV="${LEGACY_VENV:-/var/cache/agent-registry/venv-legacy}"

step() {
    local name="$1" t0 rc=0
    shift
    echo "==> [legacy:$name] $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "legacy-clients: FAILED at '$name' (exit $rc) after $(elapsed "$t0")"
        exit "$rc"
    fi
    echo "<== [legacy:$name] ok ($(elapsed "$t0"))"
}

step venv make_venv "$VENV" LEGACY_VENV
step deps install_requirements "$VENV" "$REQUIREMENTS"
step build build_registry
REGISTRY_BIN="$(resolved_bin)"
export REGISTRY_BIN
log "node binary: $REGISTRY_BIN"

# The tools find their configuration (clients/legacy/pyproject.toml) from here,
# and their caches stay in clients/legacy (ignored by git).
cd "$LEGACY_DIR"
step ruff "$VENV/bin/ruff" check .
step ruff-format "$VENV/bin/ruff" format --check .
step mypy "$VENV/bin/mypy" --strict .
step pytest "$VENV/bin/python" -m pytest tests -v "$@"
