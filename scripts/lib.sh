# shellcheck shell=bash
# Shared helpers for the scripts in this directory. Source it, do not run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# After sourcing, REPO_ROOT is the repository root and the cwd is REPO_ROOT.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1

# The script name used as the prefix of every message.
LIB_PROG="${LIB_PROG:-$(basename "${BASH_SOURCE[1]:-$0}" .sh)}"

log() { printf '%s: %s\n' "$LIB_PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LIB_PROG" "$*" >&2
    exit 1
}

# Seconds since the epoch with a fraction (for timings and deadlines).
now() { date +%s.%N; }

# elapsed START -> "12.3s"
elapsed() { python3 -c 'import sys; print("%.1fs" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

# Absolute cargo target directory (honours CARGO_TARGET_DIR, relative paths are
# taken from the repository root, which is where cargo runs).
cargo_target_dir() {
    local dir="${CARGO_TARGET_DIR:-target}"
    case "$dir" in
        /*) printf '%s\n' "$dir" ;;
        *) printf '%s\n' "$REPO_ROOT/$dir" ;;
    esac
}

# Path of the release node binary.
registry_bin() { printf '%s/release/agent-registry\n' "$(cargo_target_dir)"; }

# Build the release node binary (once; cargo is a no-op when up to date).
# REGISTRY_BIN=/path/to/agent-registry skips the build and uses that binary.
# cargo_build_package PKG -> PKG's release binaries, built (dies on failure).
# Alone, `cargo build --release -p PKG`: the least to compile. Once the whole
# workspace is built with its tests (scripts/test.sh sets
# REGISTRY_WORKSPACE_BUILT=1 after its nextest stage), `-p PKG` would resolve
# other features for shared dependencies and compile them again (minutes per
# script); building the workspace's own selection then is a no-op that still
# checks every binary is fresh.
cargo_build_package() {
    local args=(--release -p "$1")
    [[ "${REGISTRY_WORKSPACE_BUILT:-}" == 1 ]] && args=(--release --workspace --all-targets)
    log "building $1: cargo build ${args[*]}"
    cargo build "${args[@]}" || die "cargo build ${args[*]} failed"
}

build_registry() {
    if [[ -n "${REGISTRY_BIN:-}" ]]; then
        [[ -x "$REGISTRY_BIN" ]] || die "REGISTRY_BIN=$REGISTRY_BIN is not an executable file"
        return 0
    fi
    cargo_build_package agent-registry
    [[ -x "$(registry_bin)" ]] || die "build succeeded but $(registry_bin) is missing"
}

# The binary to run: REGISTRY_BIN if set, else the release build.
resolved_bin() {
    if [[ -n "${REGISTRY_BIN:-}" ]]; then
        printf '%s\n' "$REGISTRY_BIN"
    else
        registry_bin
    fi
}

# http_code URL -> prints the HTTP status ("000" when nothing answered).
http_code() {
    local -a auth=()
    [[ -n "${REGISTRY_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $REGISTRY_TOKEN")
    curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time "${HTTP_TIMEOUT:-2}" \
        "${CACERT_ARGS[@]+"${CACERT_ARGS[@]}"}" "${auth[@]+"${auth[@]}"}" "$1" 2>/dev/null || true
}

# http_get URL -> prints the body; fails unless the status is 2xx.
# Both send REGISTRY_TOKEN, when set, as a bearer token (a cluster with
# --auth on).
http_get() {
    local -a auth=()
    [[ -n "${REGISTRY_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $REGISTRY_TOKEN")
    curl -sf --connect-timeout 1 --max-time "${HTTP_TIMEOUT:-2}" "${CACERT_ARGS[@]+"${CACERT_ARGS[@]}"}" \
        "${auth[@]+"${auth[@]}"}" "$1" 2>/dev/null
}

# use_cacert FILE -> http_code and http_get trust the CA in FILE (for
# https nodes with a private CA); an empty FILE: the system's roots only.
use_cacert() {
    CACERT="${1:-}"
    CACERT_ARGS=()
    if [[ -n "$CACERT" ]]; then
        CACERT_ARGS=(--cacert "$CACERT")
    fi
}
# CACERT (or REGISTRY_CACERT, as the client and registryctl read it) when
# set.
use_cacert "${CACERT:-${REGISTRY_CACERT:-}}"

# json_field FIELD < json -> prints the top-level field (empty when absent or
# null; nested: "a.b"). Never fails on bad input.
json_field() {
    python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[int(k)] if isinstance(v, list) else v.get(k)
except Exception:
    v = None
if v is None:
    print("")
elif isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (dict, list)):
    print(json.dumps(v))
else:
    print(v)
' "$1"
}

# Whether a TCP port on 127.0.0.1 accepts connections.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether a docker daemon answers.
docker_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Sets the array COMPOSE to the Compose command that works here:
# the v2 plugin (`docker compose`) if present, else `docker-compose` (v1).
# shellcheck disable=SC2034  # COMPOSE is used by the sourcing script
detect_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        return 1
    fi
}

# make_venv DIR OVERRIDE_VAR -> a working Python virtual environment at DIR
# (made with `python3 -m venv`, installing python3-venv first when that is
# missing and we are root). A DIR that no longer runs is made again; a DIR
# that is not a virtual environment is never deleted (set OVERRIDE_VAR).
make_venv() {
    local venv="$1" override="$2"
    command -v python3 >/dev/null 2>&1 || die "python3 is missing (Debian: apt-get install python3 python3-venv)"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    if [[ -e "$venv" ]]; then
        # Only ever delete what is recognisably a virtual environment.
        [[ -f "$venv/pyvenv.cfg" ]] || die "$venv exists and is not a virtual environment; set $override"
        log "the virtual environment at $venv no longer runs: making it again"
        rm -rf -- "$venv"
    fi
    mkdir -p "$(dirname "$venv")"
    log "creating the virtual environment $venv ($(python3 --version 2>&1))"
    if ! python3 -m venv "$venv"; then
        rm -rf -- "$venv"
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
            log "python3 -m venv failed: installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null ||
                { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; } ||
                die "could not install python3-venv"
            python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        else
            die "python3 -m venv $venv failed (Debian: apt-get install python3-venv)"
        fi
    fi
}

# install_requirements DIR REQUIREMENTS -> pip installs the requirements
# file into the virtual environment at DIR, only when it (or the Python
# version) changed since the last install (a hash stamp in DIR).
install_requirements() {
    local venv="$1" requirements="$2" stamp want
    stamp="$venv/.requirements.sha256"
    want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$venv/bin/python" --version 2>&1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "requirements unchanged since the last install ($venv)"
        return 0
    fi
    log "installing ${requirements#"$REPO_ROOT"/} into $venv"
    rm -f -- "$stamp"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements" ||
        die "pip install -r $requirements failed"
    printf '%s\n' "$want" >"$stamp"
}
