#!/usr/bin/env bash
# Runs the checks of the Python SDK (clients/python, issue 17): the package
# installed into a virtual environment, linted, type-checked, and tested
# against real clusters of the release binary.
#
#   scripts/python-sdk.sh [PYTEST ARGS...]
#
#   venv     a Python virtual environment at PYTHON_SDK_VENV
#            (default /var/cache/agent-registry/venv-python-sdk), made with
#            `python3 -m venv`; clients/python/requirements-test.txt (pinned
#            test tools) is installed into it only when it changed
#   install  pip install ./clients/python[fastapi,a2a] (the package as a
#            user gets it, with the FastAPI extra the examples need and the
#            a2a extra (a2a-sdk) the A2A card tests need)
#   build    cargo build --release -p agent-registry (skipped with REGISTRY_BIN)
#   ruff     ruff check + ruff format --check on clients/python
#   mypy     mypy --strict on the package, the tests and the examples
#   pytest   pytest clients/python/tests -v (extra arguments are passed on)
#
# Environment: PYTHON_SDK_VENV, REGISTRY_BIN (use this node binary, no
# build), CARGO_TARGET_DIR, REGISTRY_READY_TIMEOUT (s a cluster gets to be
# ready). Exits non-zero on the first failure.
set -euo pipefail
LIB_PROG=python-sdk
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SDK_DIR="$REPO_ROOT/clients/python"
REQUIREMENTS="$SDK_DIR/requirements-test.txt"
VENV="${PYTHON_SDK_VENV:-/var/cache/agent-registry/venv-python-sdk}"

step() {
    local name="$1" t0 rc=0
    shift
    echo "==> [python:$name] $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "python-sdk: FAILED at '$name' (exit $rc) after $(elapsed "$t0")"
        exit "$rc"
    fi
    echo "<== [python:$name] ok ($(elapsed "$t0"))"
}

# The package is installed from its directory every run (it is small; pip
# rebuilds the wheel), so the tests always import what is checked out.
install_sdk() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$SDK_DIR[fastapi,a2a]"
}

step venv make_venv "$VENV" PYTHON_SDK_VENV
step deps install_requirements "$VENV" "$REQUIREMENTS"
step install install_sdk
step build build_registry
REGISTRY_BIN="$(resolved_bin)"
export REGISTRY_BIN
log "node binary: $REGISTRY_BIN"

# The tools find their configuration (clients/python/pyproject.toml) from
# here, and their caches stay in clients/python (ignored by git).
cd "$SDK_DIR"
step ruff "$VENV/bin/ruff" check .
step ruff-format "$VENV/bin/ruff" format --check .
step mypy "$VENV/bin/mypy" --strict src tests examples
step pytest "$VENV/bin/python" -m pytest tests -v "$@"
