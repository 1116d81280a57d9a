#!/usr/bin/env bash
# Runs a local registry cluster of 1, 3 or 5 nodes as plain processes.
#
#   scripts/cluster.sh up [1|3|5] [--secure] [--tls]
#                                   build (release) and start; waits until every node is ready.
#                                   Bare `up` on a cluster that exists (grown or shrunk
#                                   included) starts its stopped nodes with their own flags
#                                   --secure: access control on (--auth on); the admin token
#                                   is created in $REGISTRY_CLUSTER_DIR/admin-token
#                                   --tls: a CA and node certificates (openssl) in
#                                   $REGISTRY_CLUSTER_DIR/tls; the API over https and mutual
#                                   TLS between nodes (instead of the cluster secret)
#   scripts/cluster.sh status       role, term, leader and applied index of each node
#   scripts/cluster.sh down         SIGTERM every node (SIGKILL after REGISTRY_STOP_TIMEOUT)
#   scripts/cluster.sh kill N       SIGKILL node N (crash it)
#   scripts/cluster.sh restart N    start node N again with the same flags (stops it first if running)
#   scripts/cluster.sh rolling-restart
#                                   restart every node, one at a time, without failed writes or
#                                   heartbeats: the followers first, each ready before the next,
#                                   then leadership is handed to a follower and the old leader
#                                   restarts. An upgrade: rebuild the binary (same path), then this
#   scripts/cluster.sh logs N [-f]  the last lines of node N's log (-f: follow)
#   scripts/cluster.sh grow N       add nodes until there are N: each starts with --join and an
#                                   empty data directory and is added through the API
#                                   (POST /v1/cluster/members: a learner, promoted once caught up)
#   scripts/cluster.sh shrink N     remove the highest ids until N nodes are left
#                                   (DELETE /v1/cluster/members/{id}), stop them, delete their data
#   scripts/cluster.sh clean        down, then delete the cluster's data and logs
#
# `up` (3 nodes) runs node i on 127.0.0.1:$((8010+i)) (REGISTRY_PORT_BASE moves them); `up 1` runs one node with
# the binary's defaults (node id 1 on 127.0.0.1:8009). Files live under
# REGISTRY_CLUSTER_DIR (default: .cluster in the repository):
#   node<i>/ data   node<i>.log   node<i>.pid   node<i>.args (the flags, one a line)
#   tls/ ca.pem ca.key node<i>.crt node<i>.key (with --tls)   scheme (http or https)
#
# Environment: REGISTRY_CLUSTER_DIR, REGISTRY_BIN (use this binary, no build),
# REGISTRY_READY_TIMEOUT (s, default 90), REGISTRY_STOP_TIMEOUT (s, default 20),
# REGISTRY_PORT_BASE (default 8010: node i listens on base+i; kept by `up` for
# the cluster's later commands), RUST_LOG (passed to the nodes).
set -euo pipefail
LIB_PROG=cluster
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${REGISTRY_CLUSTER_DIR:-$REPO_ROOT/.cluster}"
[[ "$DIR" == /* ]] || DIR="$REPO_ROOT/$DIR"
READY_TIMEOUT="${REGISTRY_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-20}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

size() { cat "$DIR/size" 2>/dev/null || echo 0; }
port_base() { cat "$DIR/port-base" 2>/dev/null || echo "${REGISTRY_PORT_BASE:-8010}"; }
node_port() { if [[ "$(size)" == 1 ]]; then echo 8009; else echo $(($(port_base) + $1)); fi; }
scheme() { cat "$DIR/scheme" 2>/dev/null || echo http; }
node_url() { echo "$(scheme)://127.0.0.1:$(node_port "$1")"; }

# With --tls: the script's own requests trust the cluster's CA.
use_cluster_cacert() {
    if [[ "$(scheme)" == https ]]; then
        use_cacert "$DIR/tls/ca.pem"
    fi
}

# Makes the cluster's CA and one certificate per node (for 127.0.0.1 and
# localhost, good as server and as client: a node shows it to clients and
# to its peers), once; kept with the cluster's data.
make_certificates() {
    local n="$1" i dir="$DIR/tls"
    command -v openssl >/dev/null 2>&1 || die "--tls needs openssl"
    mkdir -p "$dir"
    if [[ ! -s "$dir/ca.pem" ]]; then
        (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
            -subj "/CN=agent-registry local cluster CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null) ||
            die "openssl could not make the CA"
        rm -f "$dir"/node*.crt
    fi
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature" \
        "basicConstraints=CA:FALSE" >"$dir/node.ext"
    for ((i = 1; i <= n; i++)); do
        [[ -s "$dir/node$i.crt" ]] && continue
        (umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/node$i.key" -out "$dir/node$i.csr" -subj "/CN=node$i" 2>/dev/null &&
            openssl x509 -req -in "$dir/node$i.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 825 -extfile "$dir/node.ext" -out "$dir/node$i.crt" 2>/dev/null) ||
            die "openssl could not make node $i's certificate"
        rm -f "$dir/node$i.csr"
    done
}

# Prints the pid of node $1 when it is running (and is an agent-registry process).
node_pid() {
    local pid
    pid="$(cat "$DIR/node$1.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be our binary (by its
    # path, so a REGISTRY_BIN of any name counts) running as this node.
    local bin
    bin="$(cat "$DIR/bin" 2>/dev/null || echo agent-registry)"
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$bin" || return 1
    echo "$pid"
}

check_node_arg() {
    local n="${1:-}" s
    s="$(size)"
    [[ "$s" != 0 ]] || die "no cluster in $DIR (run: scripts/cluster.sh up)"
    if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1 || n > s)); then
        die "node must be a number from 1 to $s, got '${n}'"
    fi
}

log_tail() {
    local i="$1"
    echo "---- last lines of $DIR/node$i.log ----" >&2
    tail -n "${2:-30}" "$DIR/node$i.log" >&2 2>/dev/null || true
    echo "----" >&2
}

# Starts node $1 in the background with the flags saved in node$1.args.
start_node() {
    local i="$1" bin port deadline
    local -a args
    bin="$(cat "$DIR/bin")"
    [[ -x "$bin" ]] || die "node binary $bin is missing (run: scripts/cluster.sh up)"
    mapfile -t args <"$DIR/node$i.args"
    port="$(node_port "$i")"
    if port_in_use "$port"; then
        die "port $port (node $i) is already in use by another process"
    fi
    mkdir -p "$DIR/node$i"
    rm -f "$DIR/node$i.pid"
    printf '==== %s: starting node %s: %s %s\n' "$(date '+%F %T')" "$i" "$bin" "${args[*]}" >>"$DIR/node$i.log"
    local -a launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # The flags are explicit: drop REGISTRY_* settings from the caller's
    # environment so that they cannot change a node behind the script's back.
    # The child writes its own pid (exec keeps it) and does not keep the lock fd.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
    "${launcher[@]}" env -u REGISTRY_NODE_ID -u REGISTRY_LISTEN -u REGISTRY_ADVERTISE \
        -u REGISTRY_DATA_DIR -u REGISTRY_INITIAL_CLUSTER -u REGISTRY_CLUSTER_SECRET_FILE \
        -u REGISTRY_INSECURE_PEERS -u REGISTRY_PEER_LISTEN -u REGISTRY_TLS_CERT_FILE \
        -u REGISTRY_TLS_KEY_FILE -u REGISTRY_PEER_TLS_CERT_FILE -u REGISTRY_PEER_TLS_KEY_FILE \
        -u REGISTRY_PEER_TLS_CA_FILE NO_COLOR="${NO_COLOR:-1}" \
        bash -c 'echo $$ >"$1"; shift; exec "$@"' start-node "$DIR/node$i.pid" "$bin" "${args[@]}" \
        </dev/null >>"$DIR/node$i.log" 2>&1 9>&- &
    deadline=$((SECONDS + 5))
    until [[ -s "$DIR/node$i.pid" ]]; do
        ((SECONDS < deadline)) || die "node $i did not start (no pid file)"
        sleep 0.05
    done
}

# Waits until every node given answers /health/ready with 200.
wait_ready() {
    local start deadline i code
    local -a pending=("$@") still
    start="$(now)"
    deadline=$((SECONDS + READY_TIMEOUT))
    while ((${#pending[@]} > 0)); do
        still=()
        for i in "${pending[@]}"; do
            if ! node_pid "$i" >/dev/null; then
                log_tail "$i"
                die "node $i exited while starting (log: $DIR/node$i.log)"
            fi
            code="$(HTTP_TIMEOUT=1 http_code "$(node_url "$i")/health/ready")"
            [[ "$code" == 200 ]] || still+=("$i")
        done
        pending=("${still[@]+"${still[@]}"}")
        ((${#pending[@]} > 0)) || break
        if ((SECONDS >= deadline)); then
            for i in "${pending[@]}"; do
                log "node $i ($(node_url "$i")) is not ready: /health/ready answers $(http_code "$(node_url "$i")/health/ready")"
                log_tail "$i" 20
            done
            die "not ready after ${READY_TIMEOUT}s: node(s) ${pending[*]}"
        fi
        sleep 0.2
    done
    log "ready in $(elapsed "$start")"
}

# Prints the leader's node id as some node sees it (empty if none known).
leader_id() {
    local i body id
    for ((i = 1; i <= $(size); i++)); do
        node_pid "$i" >/dev/null || continue
        body="$(http_get "$(node_url "$i")/v1/cluster")" || continue
        id="$(json_field leader_id <<<"$body")"
        if [[ -n "$id" ]]; then
            echo "$id"
            return 0
        fi
    done
    return 0
}

print_nodes() {
    local n i leader mark
    n="$(size)"
    leader="$(leader_id)"
    for ((i = 1; i <= n; i++)); do
        mark=""
        [[ "$i" == "$leader" ]] && mark="  (leader)"
        printf '  node%s  %s%s\n' "$i" "$(node_url "$i")" "$mark"
    done
    [[ -n "$leader" ]] || echo "  (no leader known yet)"
}

# Sends the admin token of a secure cluster with this script's requests.
use_admin_token() {
    if [[ -s "$DIR/admin-token" ]]; then
        REGISTRY_TOKEN="$(head -n1 "$DIR/admin-token")"
    fi
}

print_hint() {
    local u1 u2 ctl auth=""
    u1="$(node_url 1)"
    u2="$(node_url "$(($(size) > 1 ? 2 : 1))")"
    ctl="$(cargo_target_dir)/release/registryctl"
    [[ -x "$ctl" ]] || ctl="cargo run -q --release -p registryctl --"
    echo
    if [[ -s "$DIR/admin-token" ]]; then
        auth=' -H "Authorization: Bearer $REGISTRY_TOKEN"'
        cat <<EOF
Access control is on: the admin token is in $DIR/admin-token
  export REGISTRY_TOKEN=\$(cat $DIR/admin-token)
  $ctl token create --name team-a --role agent --agents 'team-a-*'
EOF
    fi
    cat <<EOF
Try it:
  curl -s${CACERT:+ --cacert $CACERT}$auth -X POST $u1/v1/agents -H 'content-type: application/json' \\
       -d '{"agent_id":"a1","name":"demo","endpoint":"http://127.0.0.1:9000","capabilities":[{"name":"python"}]}'
  curl -s${CACERT:+ --cacert $CACERT}$auth $u2/v1/agents/a1
  export REGISTRY_NODES=$(endpoints)${CACERT:+
  export REGISTRY_CACERT=$CACERT}
  $ctl register --id a2 --name demo2 --endpoint http://127.0.0.1:9001 --capability python
  $ctl get a2
  $ctl cluster
Manage it:
  scripts/cluster.sh status | kill N | restart N | rolling-restart | logs N | grow N | shrink N | down | clean
EOF
}

endpoints() {
    local i out=""
    for ((i = 1; i <= $(size); i++)); do out+="${out:+,}$(node_url "$i")"; done
    echo "$out"
}

lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another scripts/cluster.sh is running on $DIR"
}

# Starts the stopped nodes of the cluster in $DIR with the flags each was
# last started with (node<i>.args): `up` without a size on a cluster that
# grow or shrink changed, whose nodes no fresh set of flags describes (the
# added ones joined with --join).
resume_cluster() {
    local n="$1" i
    local -a started=()
    "$REPO_ROOT/scripts/setup.sh" 9>&-
    build_registry 9>&-
    resolved_bin >"$DIR/bin"
    for ((i = 1; i <= n; i++)); do
        if node_pid "$i" >/dev/null; then continue; fi
        start_node "$i"
        started+=("$i")
        log "started node $i (pid $(cat "$DIR/node$i.pid")) with its recorded flags on $(node_url "$i")"
    done
    ((${#started[@]} == 0)) || wait_ready "${started[@]}"
    echo "cluster: $n node(s) up"
    print_nodes
    print_hint
}

cmd_up() {
    local n=3 bare=$(($# == 0)) secure=0 tls=0 arg i running=() stopped=() existing
    for arg in "$@"; do
        case "$arg" in
            --secure) secure=1 ;;
            --tls) tls=1 ;;
            *) n="$arg" ;;
        esac
    done
    lock
    existing="$(size)"
    if ((bare && existing > 1)) && compgen -G "$DIR/node[0-9]*/*" >/dev/null; then
        for ((i = 1; i <= existing; i++)); do
            [[ -s "$DIR/node$i.args" ]] || die "$DIR/node$i.args is missing; run scripts/cluster.sh clean first"
        done
        resume_cluster "$existing"
        return 0
    fi
    [[ "$n" =~ ^(1|3|5)$ ]] || die "cluster size must be 1, 3 or 5, got '$n'"
    if [[ "$existing" != 0 ]]; then
        for ((i = 1; i <= existing; i++)); do
            if node_pid "$i" >/dev/null; then running+=("$i"); else stopped+=("$i"); fi
        done
        if ((${#running[@]} > 0)) && [[ "$existing" != "$n" ]]; then
            die "a $existing-node cluster is running in $DIR; run scripts/cluster.sh down first"
        fi
        if [[ "$existing" != "$n" ]] && compgen -G "$DIR/node[0-9]*/*" >/dev/null; then
            die "$DIR holds the data of a $existing-node cluster; run scripts/cluster.sh clean first (or set REGISTRY_CLUSTER_DIR)"
        fi
        if ((${#running[@]} == existing)) && [[ "$existing" == "$n" ]]; then
            echo "cluster: already running ($n node(s)) in $DIR"
            print_nodes
            return 0
        fi
    fi

    # (fd 9 is the lock: children must not keep it)
    "$REPO_ROOT/scripts/setup.sh" 9>&-
    build_registry 9>&-
    resolved_bin >"$DIR/bin"

    echo "$n" >"$DIR/size"
    if ((tls)); then
        make_certificates "$n"
        echo https >"$DIR/scheme"
    else
        echo http >"$DIR/scheme"
    fi
    use_cluster_cacert
    # The cluster secret signs every node-to-node request; kept with the
    # cluster's data, readable by its owner only, created once. With --tls
    # mutual TLS authenticates the nodes instead.
    if ((n > 1 && !tls)) && [[ ! -s "$DIR/cluster-secret" ]]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$DIR/cluster-secret" && echo >>"$DIR/cluster-secret")
    fi
    # --secure: the first admin token's secret, created once, given to
    # every node (the leader creates that token); this script then sends it.
    local -a auth=()
    if ((secure)); then
        if [[ ! -s "$DIR/admin-token" ]]; then
            (umask 077 && printf 'areg_%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$DIR/admin-token")
        fi
        auth=(--auth on --bootstrap-token-file "$DIR/admin-token")
    elif [[ -s "$DIR/admin-token" ]]; then
        die "$DIR holds a secure cluster (admin-token): run scripts/cluster.sh up $n --secure, or clean first"
    fi
    use_admin_token
    local initial="" base
    base="$(port_base)"
    [[ "$base" =~ ^[0-9]+$ ]] && ((base >= 1024 && base <= 65000)) ||
        die "REGISTRY_PORT_BASE must be a port from 1024 to 65000, got '$base'"
    echo "$base" >"$DIR/port-base"
    for ((i = 1; i <= n; i++)); do initial+="${initial:+,}$i=127.0.0.1:$((base + i))"; done
    local -a tls_args peers
    for ((i = 1; i <= n; i++)); do
        tls_args=()
        peers=(--cluster-secret-file "$DIR/cluster-secret")
        if ((tls)); then
            tls_args=(--tls-cert-file "$DIR/tls/node$i.crt" --tls-key-file "$DIR/tls/node$i.key")
            peers=(--peer-tls-cert-file "$DIR/tls/node$i.crt" --peer-tls-key-file "$DIR/tls/node$i.key"
                --peer-tls-ca-file "$DIR/tls/ca.pem")
        fi
        if ((n == 1)); then
            # The binary's defaults (node 1, 127.0.0.1:8009), data under the cluster dir.
            printf '%s\n' --data-dir "$DIR/node1" "${auth[@]}" "${tls_args[@]}" >"$DIR/node1.args"
        else
            printf '%s\n' --node-id "$i" --listen "127.0.0.1:$((base + i))" \
                --data-dir "$DIR/node$i" --initial-cluster "$initial" \
                "${peers[@]}" "${auth[@]}" "${tls_args[@]}" >"$DIR/node$i.args"
        fi
    done

    local -a started=()
    for ((i = 1; i <= n; i++)); do
        if node_pid "$i" >/dev/null; then continue; fi
        start_node "$i"
        started+=("$i")
        log "started node $i (pid $(cat "$DIR/node$i.pid")) on $(node_url "$i"), log $DIR/node$i.log"
    done
    wait_ready "${started[@]}"
    echo "cluster: $n node(s) up"
    print_nodes
    print_hint
}

cmd_status() {
    local n i pid body all_up=0
    n="$(size)"
    if [[ "$n" == 0 ]]; then
        echo "cluster: no cluster in $DIR"
        return 3
    fi
    printf '%-6s %-8s %-24s %-10s %-6s %-7s %-8s %s\n' NODE PID URL ROLE TERM LEADER APPLIED READY
    for ((i = 1; i <= n; i++)); do
        if ! pid="$(node_pid "$i")"; then
            printf '%-6s %-8s %-24s %s\n' "node$i" - "$(node_url "$i")" "down"
            all_up=3
            continue
        fi
        body="$(http_get "$(node_url "$i")/v1/cluster" || true)"
        printf '%-6s %-8s %-24s %s %s\n' "node$i" "$pid" "$(node_url "$i")" \
            "$(python3 -c '
import json, sys
try:
    c = json.loads(sys.argv[1])
    f = lambda k: "-" if c.get(k) is None else str(c.get(k))
    print("%-10s %-6s %-7s %-8s" % (f("role"), f("term"), f("leader_id"), f("applied_index")))
except Exception:
    print("%-10s %-6s %-7s %-8s" % ("no-answer", "-", "-", "-"))
' "$body")" "$(http_code "$(node_url "$i")/health/ready")"
    done
    return "$all_up"
}

# Sends SIGTERM to the nodes given, waits for them to exit, SIGKILLs stragglers.
stop_nodes() {
    local i pid deadline
    local -a pids=() nodes=()
    for i in "$@"; do
        pid="$(node_pid "$i")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        nodes+=("$i")
    done
    ((${#pids[@]} > 0)) || return 0
    deadline=$((SECONDS + STOP_TIMEOUT))
    for idx in "${!pids[@]}"; do
        pid="${pids[$idx]}"
        i="${nodes[$idx]}"
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                log "node $i (pid $pid) did not exit within ${STOP_TIMEOUT}s of SIGTERM: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        rm -f "$DIR/node$i.pid"
        echo "cluster: stopped node $i"
    done
}

cmd_down() {
    local n i
    n="$(size)"
    [[ "$n" != 0 ]] || {
        echo "cluster: nothing to stop in $DIR"
        return 0
    }
    lock
    local -a all
    mapfile -t all < <(seq 1 "$n")
    stop_nodes "${all[@]}"
    echo "cluster: down (data kept in $DIR; scripts/cluster.sh clean deletes it)"
}

cmd_clean() {
    cmd_down
    local i
    for i in "$DIR"/node[0-9]*; do
        [[ -e "$i" ]] && rm -rf -- "$i"
    done
    rm -f -- "$DIR/size" "$DIR/bin" "$DIR/scheme" "$DIR/port-base"
    echo "cluster: cleaned $DIR"
}

cmd_kill() {
    local i="${1:-}" pid deadline
    check_node_arg "$i"
    pid="$(node_pid "$i")" || die "node $i is not running"
    kill -KILL "$pid"
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    rm -f "$DIR/node$i.pid"
    echo "cluster: killed node $i (pid $pid, SIGKILL)"
}

cmd_restart() {
    local i="${1:-}"
    check_node_arg "$i"
    lock
    stop_nodes "$i"
    start_node "$i"
    log "started node $i (pid $(cat "$DIR/node$i.pid")) on $(node_url "$i")"
    wait_ready "$i"
    echo "cluster: node $i restarted"
}

# membership_call METHOD PATH [BODY] -> prints the answer's body, then its
# status on a line of its own; sent to the first running node other than
# $EXCEPT (a follower forwards it to the leader). A change may take a while:
# a node answers within half its request timeout (202 if still running).
membership_call() {
    local method="$1" path="$2" body="${3:-}" i
    local -a auth=() data=()
    [[ -n "${REGISTRY_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $REGISTRY_TOKEN")
    [[ -n "$body" ]] && data=(-H 'content-type: application/json' -d "$body")
    for ((i = 1; i <= $(size); i++)); do
        [[ "$i" == "${EXCEPT:-}" ]] && continue
        node_pid "$i" >/dev/null || continue
        curl -s -w '\n%{http_code}\n' --connect-timeout 1 --max-time 70 -X "$method" \
            "${CACERT_ARGS[@]+"${CACERT_ARGS[@]}"}" "${auth[@]+"${auth[@]}"}" \
            "${data[@]+"${data[@]}"}" "$(node_url "$i")$path" && return 0
    done
    die "no running node answered $method $path"
}

# Waits until node $1 serves /health/live (a --join node is not ready
# before it is added).
wait_live() {
    local i="$1" deadline=$((SECONDS + READY_TIMEOUT))
    until [[ "$(HTTP_TIMEOUT=1 http_code "$(node_url "$i")/health/live")" == 200 ]]; do
        node_pid "$i" >/dev/null || { log_tail "$i"; die "node $i exited while starting"; }
        ((SECONDS < deadline)) || die "node $i is not live after ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

cmd_grow() {
    local n="${1:-}" s i base answer status
    s="$(size)"
    [[ "$s" != 0 ]] || die "no cluster in $DIR (run: scripts/cluster.sh up)"
    [[ "$s" != 1 ]] || die "grow needs a cluster started with up 3 or up 5 (a single node runs without peer authentication)"
    [[ "$n" =~ ^[0-9]+$ ]] && ((n > s && n <= 9)) || die "grow N: N must be above the current size ($s) and at most 9, got '$n'"
    lock
    base="$(port_base)"
    local -a peers auth=() tls_args=()
    [[ -s "$DIR/admin-token" ]] && auth=(--auth on --bootstrap-token-file "$DIR/admin-token")
    for ((i = s + 1; i <= n; i++)); do
        peers=(--cluster-secret-file "$DIR/cluster-secret")
        tls_args=()
        if [[ "$(scheme)" == https ]]; then
            make_certificates "$i"
            tls_args=(--tls-cert-file "$DIR/tls/node$i.crt" --tls-key-file "$DIR/tls/node$i.key")
            peers=(--peer-tls-cert-file "$DIR/tls/node$i.crt" --peer-tls-key-file "$DIR/tls/node$i.key"
                --peer-tls-ca-file "$DIR/tls/ca.pem")
        fi
        rm -rf -- "$DIR/node$i"
        printf '%s\n' --node-id "$i" --listen "127.0.0.1:$((base + i))" --data-dir "$DIR/node$i" \
            --join "${peers[@]}" "${auth[@]+"${auth[@]}"}" "${tls_args[@]+"${tls_args[@]}"}" >"$DIR/node$i.args"
        # Counted from now on, so that the commands below know the node.
        echo "$i" >"$DIR/size"
        start_node "$i"
        log "started node $i (pid $(cat "$DIR/node$i.pid")) with --join on $(node_url "$i")"
        wait_live "$i"
        answer="$(EXCEPT="$i" membership_call POST /v1/cluster/members \
            "{\"node_id\": $i, \"address\": \"127.0.0.1:$((base + i))\"}")"
        status="$(tail -n1 <<<"$answer")"
        case "$status" in
            200) log "node $i added: $(head -n1 <<<"$answer")" ;;
            202) log "node $i: still catching up or promoting; follow it in GET /v1/cluster of the leader" ;;
            *)
                stop_nodes "$i"
                echo "$((i - 1))" >"$DIR/size"
                die "adding node $i failed (HTTP $status): $(head -n1 <<<"$answer")"
                ;;
        esac
        wait_ready "$i"
    done
    echo "cluster: $n node(s)"
    print_nodes
}

cmd_shrink() {
    local n="${1:-}" s i answer status
    s="$(size)"
    [[ "$s" != 0 ]] || die "no cluster in $DIR (run: scripts/cluster.sh up)"
    [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 3 && n < s)) || die "shrink N: N must be from 3 to below the current size ($s), got '$n'"
    lock
    for ((i = s; i > n; i--)); do
        answer="$(EXCEPT="$i" membership_call DELETE "/v1/cluster/members/$i")"
        status="$(tail -n1 <<<"$answer")"
        [[ "$status" == 200 || "$status" == 202 ]] ||
            die "removing node $i failed (HTTP $status): $(head -n1 <<<"$answer")"
        log "node $i removed"
        stop_nodes "$i"
        # Its data must never come back under its id.
        rm -rf -- "$DIR/node$i" "$DIR/node$i.args"
        echo "$((i - 1))" >"$DIR/size"
    done
    echo "cluster: $n node(s)"
    print_nodes
}

# POSTs /v1/cluster/leader to node $1 with body $2; prints the answer's body,
# then its HTTP status on a line of its own.
post_handover() {
    local -a auth=()
    [[ -n "${REGISTRY_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $REGISTRY_TOKEN")
    curl -sS --connect-timeout 1 --max-time 30 "${CACERT_ARGS[@]+"${CACERT_ARGS[@]}"}" \
        "${auth[@]+"${auth[@]}"}" -X POST -H 'content-type: application/json' -d "$2" \
        -w '\n%{http_code}\n' "$(node_url "$1")/v1/cluster/leader" 2>&1 || true
}

# Hands leadership from node $1 (the leader) to another voter; fails (and
# the caller restarts nothing) when it cannot, so the leader's node is never
# stopped while it still leads.
hand_over_from() {
    local leader="$1" out code body attempt
    for attempt in 1 2 3; do
        out="$(post_handover "$leader" '{}')"
        code="$(tail -n1 <<<"$out")"
        body="$(sed '$d' <<<"$out")"
        if [[ "$code" == 200 ]]; then
            log "leadership handed from node $leader to node $(json_field leader_id <<<"$body") (writes held back $(json_field paused_ms <<<"$body") ms)"
            return 0
        fi
        log "handover attempt $attempt from node $leader failed (HTTP $code): $body"
        sleep 1
    done
    die "leadership could not be handed over from node $leader; it was not restarted"
}

# Restarts node $1 and waits until it is ready (it knows the leader and has
# applied what the leader had committed).
restart_one() {
    stop_nodes "$1"
    start_node "$1"
    log "started node $1 (pid $(cat "$DIR/node$1.pid")) on $(node_url "$1")"
    wait_ready "$1"
}

cmd_rolling_restart() {
    local n i leader start
    n="$(size)"
    [[ "$n" != 0 ]] || die "no cluster in $DIR (run: scripts/cluster.sh up)"
    lock
    start="$(now)"
    for ((i = 1; i <= n; i++)); do
        node_pid "$i" >/dev/null || die "node $i is not running: start it (scripts/cluster.sh restart $i) before a rolling restart"
    done
    local -a all
    mapfile -t all < <(seq 1 "$n")
    wait_ready "${all[@]}"
    leader="$(leader_id)"
    [[ -n "$leader" ]] || die "no leader known: not restarting anything"
    for ((i = 1; i <= n; i++)); do
        ((i == leader)) && continue
        log "restarting follower node $i"
        restart_one "$i"
    done
    # It may have lost leadership meanwhile (then there is nothing to hand over).
    if ((n > 1)) && [[ "$(http_get "$(node_url "$leader")/v1/cluster" | json_field role)" == leader ]]; then
        hand_over_from "$leader"
    fi
    log "restarting node $leader (the former leader)"
    restart_one "$leader"
    wait_ready "${all[@]}"
    echo "cluster: rolling restart of $n node(s) done in $(elapsed "$start"); leader now node $(leader_id)"
}

cmd_logs() {
    local i="${1:-}"
    check_node_arg "$i"
    [[ -f "$DIR/node$i.log" ]] || die "no log for node $i"
    if [[ "${2:-}" == "-f" ]]; then
        exec tail -n "${LOG_LINES:-100}" -f "$DIR/node$i.log"
    fi
    tail -n "${LOG_LINES:-100}" "$DIR/node$i.log"
}

cmd="${1:-}"
shift || true
use_admin_token
use_cluster_cacert
case "$cmd" in
    up) cmd_up "$@" ;;
    status) cmd_status ;;
    down | stop) cmd_down ;;
    clean) cmd_clean ;;
    kill) cmd_kill "$@" ;;
    restart) cmd_restart "$@" ;;
    rolling-restart) cmd_rolling_restart ;;
    logs) cmd_logs "$@" ;;
    grow) cmd_grow "$@" ;;
    shrink) cmd_shrink "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
