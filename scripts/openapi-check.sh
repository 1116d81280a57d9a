#!/usr/bin/env bash
# Validates the generated OpenAPI document against the OpenAPI 3
# specification with openapi-spec-validator (PyPI).
#
#   scripts/openapi-check.sh
#
#   venv      a Python virtual environment at OPENAPI_VENV
#             (default /var/cache/agent-registry/venv-openapi), made with
#             `python3 -m venv`; scripts/openapi/requirements.txt is
#             installed into it only when it changed
#   build     cargo build --release -p agent-registry (skipped with REGISTRY_BIN)
#   dump      agent-registry --print-openapi: the document GET /openapi.json
#             serves, printed without starting a node
#   validate  openapi-spec-validator on the document
#   canary    the validator must refuse a copy with a dangling $ref and one
#             without `info`, so a validator that accepts anything fails here
#
# Environment: OPENAPI_VENV, REGISTRY_BIN (use this node binary, no build),
# CARGO_TARGET_DIR. Exits non-zero on the first failure.
set -euo pipefail
LIB_PROG=openapi-check
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUIREMENTS="$REPO_ROOT/scripts/openapi/requirements.txt"
VENV="${OPENAPI_VENV:-/var/cache/agent-registry/venv-openapi}"
WORK="$(mktemp -d)"
trap 'rm -rf -- "$WORK"' EXIT
DOC="$WORK/openapi.json"

step() {
    local name="$1" t0 rc=0
    shift
    echo "==> [openapi:$name] $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "openapi-check: FAILED at '$name' (exit $rc) after $(elapsed "$t0")"
        exit "$rc"
    fi
    echo "<== [openapi:$name] ok ($(elapsed "$t0"))"
}

dump() {
    "$(resolved_bin)" --print-openapi >"$DOC" || die "agent-registry --print-openapi failed"
    log "document: $(wc -c <"$DOC") bytes, $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("OpenAPI", d["openapi"] + ",", len(d["paths"]), "paths,", len(d["components"]["schemas"]), "schemas")' "$DOC")"
}

validate() {
    "$VENV/bin/openapi-spec-validator" "$@"
}

# A broken copy of the document must be refused: proves the validator runs
# and reads what it is given.
refuses() {
    local what="$1" edit="$2" broken="$WORK/broken.json"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))
' "$DOC" "$broken" "$edit"
    if validate "$broken" >"$WORK/refusal.txt" 2>&1; then
        die "the validator accepted a document with $what"
    fi
    log "refused, as it must, a document with $what"
}

canary() {
    refuses "a dangling \$ref" 'd["components"]["schemas"]["AgentList"]["properties"]["agents"]["items"] = {"$ref": "#/components/schemas/NoSuchSchema"}'
    refuses "no info" 'del d["info"]'
}

step venv make_venv "$VENV" OPENAPI_VENV
step deps install_requirements "$VENV" "$REQUIREMENTS"
step build build_registry
step dump dump
step validate validate "$DOC"
step canary canary
echo "openapi-check: the generated document is valid OpenAPI"
