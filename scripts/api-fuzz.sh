#!/usr/bin/env bash
# schemathesis against the OpenAPI document a node serves: every operation
# with generated valid and invalid inputs, checking that no request gets a
# server error (5xx) other than the documented retryable 503s (the check is
# scripts/api-fuzz/hooks.py) and that the node survives. Twice: on a node with auth
# off, then on a node with --auth on and the bootstrap admin token supplied
# (so the handlers, not the 401s, are what gets exercised).
#
#   scripts/api-fuzz.sh [extra schemathesis flags]
#
#   venv      a Python virtual environment at API_FUZZ_VENV
#             (default /var/cache/agent-registry/venv-api-fuzz);
#             scripts/api-fuzz/requirements.txt installed when it changed
#   build     cargo build --release -p agent-registry (skipped with REGISTRY_BIN)
#   auth-off  a fresh single node, schemathesis run, node still live, no panic
#   auth-on   the same with --auth on, Authorization: Bearer <admin token>
#
# The server-sent event stream (GET /v1/events) never ends by design, so it
# is left out; its query parameters are the long poll's (GET
# /v1/events/poll), which is fuzzed. Bounded: API_FUZZ_MAX_EXAMPLES examples
# per operation (default 25), API_FUZZ_MAX_TIME seconds per run (default 150).
#
# Environment: API_FUZZ_VENV, API_FUZZ_MAX_EXAMPLES, API_FUZZ_MAX_TIME,
# API_FUZZ_PORT (default 27390), REGISTRY_BIN, CARGO_TARGET_DIR.
set -euo pipefail
LIB_PROG=api-fuzz
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUIREMENTS="$REPO_ROOT/scripts/api-fuzz/requirements.txt"
VENV="${API_FUZZ_VENV:-/var/cache/agent-registry/venv-api-fuzz}"
MAX_EXAMPLES="${API_FUZZ_MAX_EXAMPLES:-25}"
MAX_TIME="${API_FUZZ_MAX_TIME:-150}"
PORT="${API_FUZZ_PORT:-27390}"
BASE="http://127.0.0.1:$PORT"
WORK="$(mktemp -d)"
NODE_PID=""

stop_node() {
    if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
    fi
    NODE_PID=""
}
trap 'stop_node; rm -rf -- "$WORK"' EXIT
trap 'exit 130' INT TERM

step() {
    local name="$1" t0 rc=0
    shift
    echo "==> [api-fuzz:$name] $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "api-fuzz: FAILED at '$name' (exit $rc) after $(elapsed "$t0")"
        exit "$rc"
    fi
    echo "<== [api-fuzz:$name] ok ($(elapsed "$t0"))"
}

# start_node NAME [flags...]: a fresh single node on $PORT, waited on until
# /health/ready answers 200.
start_node() {
    local name="$1"
    shift
    port_in_use "$PORT" && die "port $PORT is in use (API_FUZZ_PORT)"
    mkdir -p "$WORK/$name"
    "$(resolved_bin)" --node-id 1 --listen "127.0.0.1:$PORT" --data-dir "$WORK/$name/data" "$@" \
        >"$WORK/$name/node.log" 2>&1 &
    NODE_PID=$!
    local deadline=$((SECONDS + 60))
    until [[ "$(http_code "$BASE/health/ready")" == 200 ]]; do
        kill -0 "$NODE_PID" 2>/dev/null || { tail -n 30 "$WORK/$name/node.log"; die "the node exited at start"; }
        ((SECONDS < deadline)) || die "the node was not ready within 60 s"
        sleep 0.2
    done
}

# fuzz NAME [schemathesis flags...]: one schemathesis run against the node,
# then the node must still answer and its log must hold no panic.
fuzz() {
    local name="$1" rc=0
    shift
    SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$REPO_ROOT/scripts/api-fuzz" \
        "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
        --checks no_undocumented_server_error \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$MAX_TIME" \
        --workers 1 \
        --request-timeout 10 \
        --exclude-path /v1/events \
        --suppress-health-check all \
        --no-color \
        "$@" || rc=$?
    [[ "$(http_code "$BASE/health/live")" == 200 ]] || { tail -n 30 "$WORK/$name/node.log"; die "$name: the node stopped answering /health/live"; }
    if grep -n -m 5 "panicked" "$WORK/$name/node.log"; then
        die "$name: the node's log holds a panic"
    fi
    ((rc == 0)) || die "$name: schemathesis found failures (exit $rc)"
}

auth_off() {
    start_node auth-off
    fuzz auth-off "$@"
    stop_node
}

auth_on() {
    local token
    token="areg_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    (umask 077 && echo "$token" >"$WORK/admin-token")
    start_node auth-on --auth on --bootstrap-token-file "$WORK/admin-token"
    # The bootstrap token is created by the leader just after it is elected.
    local deadline=$((SECONDS + 30))
    until [[ "$(REGISTRY_TOKEN="$token" http_code "$BASE/v1/auth/tokens")" == 200 ]]; do
        ((SECONDS < deadline)) || die "the bootstrap admin token was not accepted within 30 s"
        sleep 0.2
    done
    # Anonymous calls must be refused before anything else is tried.
    [[ "$(http_code "$BASE/v1/agents")" == 401 ]] || die "auth on: an anonymous read was not refused with 401"
    fuzz auth-on --header "Authorization: Bearer $token" "$@"
    stop_node
}

step venv make_venv "$VENV" API_FUZZ_VENV
step deps install_requirements "$VENV" "$REQUIREMENTS"
step build build_registry
step auth-off auth_off "$@"
step auth-on auth_on "$@"
echo "api-fuzz: no server error and no panic, with auth off and on"
