#!/usr/bin/env bash
# Smoke test of docker-compose.yml: a three-node cluster of containers keeps
# accepting and serving registrations when its leader is stopped.
#
#   scripts/compose-smoke.sh
#
# Builds agent-registry:local (scripts/docker-image.sh), starts node1..node3
# under a unique compose project, waits until all are ready, registers an agent
# through node1 and reads it on every node, stops the leader's container,
# registers a second agent (retrying across the remaining nodes while they
# elect a new leader) and reads both agents on the remaining nodes. Then it
# starts the stopped node again and brings up the `five` profile: node4 and
# node5 start with --join and the `grow` service adds them through the
# membership API; all five must be voters and serve both agents. The project
# and its volumes are always removed at the end. Prints PASS or FAIL; exits
# non-zero on failure.
#
# Environment: SMOKE_READY_TIMEOUT (s, default 120), SMOKE_FAILOVER_TIMEOUT
# (s, default 60), SMOKE_GROW_TIMEOUT (s, default 240), REGISTRY_NODE{1..5}_PORT
# (host ports, default 8021..8025).
set -euo pipefail
LIB_PROG=compose-smoke
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

READY_TIMEOUT="${SMOKE_READY_TIMEOUT:-120}"
FAILOVER_TIMEOUT="${SMOKE_FAILOVER_TIMEOUT:-60}"
GROW_TIMEOUT="${SMOKE_GROW_TIMEOUT:-240}"
PORTS=("${REGISTRY_NODE1_PORT:-8021}" "${REGISTRY_NODE2_PORT:-8022}" "${REGISTRY_NODE3_PORT:-8023}"
    "${REGISTRY_NODE4_PORT:-8024}" "${REGISTRY_NODE5_PORT:-8025}")
url() { echo "http://127.0.0.1:${PORTS[$(($1 - 1))]}"; }

passed=0
started_at="$(now)"
pass() {
    passed=$((passed + 1))
    echo "compose-smoke: ok: $*"
}
fail() {
    echo "compose-smoke: FAIL: $*"
    echo "compose-smoke: $passed passed, 1 failed"
    exit 1
}

docker_available || fail "no docker daemon answers (docker info failed)"
detect_compose || fail "neither 'docker compose' nor 'docker-compose' works"
"$REPO_ROOT/scripts/docker-image.sh" || fail "building the image failed"

for p in "${PORTS[@]}"; do
    if port_in_use "$p"; then
        fail "host port 127.0.0.1:$p is already in use (another compose cluster? docker ps)"
    fi
done

PROJECT="arsmoke$$$(date +%s)"
DC=("${COMPOSE[@]}" -p "$PROJECT" -f "$REPO_ROOT/docker-compose.yml")
# The same project with the `five` profile's services (node4, node5, grow).
DC5=("${DC[@]}" --profile five)
BODY="$(mktemp)"

cleanup() {
    local rc=$?
    if ((rc != 0)); then
        echo "---- compose ps ----"
        "${DC5[@]}" ps 2>&1 || true
        echo "---- compose logs (last 60 lines per node) ----"
        "${DC5[@]}" logs --no-color --tail=60 2>&1 || true
        echo "----"
    fi
    "${DC5[@]}" down -v --remove-orphans -t 10 >/dev/null 2>&1 ||
        echo "compose-smoke: warning: '${DC[*]} down -v' failed; remove project $PROJECT by hand"
    rm -f "$BODY"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# request METHOD URL [JSON] -> sets CODE, body in $BODY. Sends the admin
# token once it has been read from the secrets volume (TOKEN).
TOKEN=""
request() {
    local -a data=() auth=()
    [[ $# -ge 3 ]] && data=(-H 'content-type: application/json' --data "$3")
    [[ -n "$TOKEN" ]] && auth=(-H "authorization: Bearer $TOKEN")
    CODE="$(curl -s -L -o "$BODY" -w '%{http_code}' --connect-timeout 2 --max-time 10 \
        -X "$1" "${auth[@]+"${auth[@]}"}" "${data[@]+"${data[@]}"}" "$2" 2>/dev/null || true)"
    [[ -n "$CODE" ]] || CODE=000
}

agent_json() {
    printf '{"agent_id":"%s","name":"%s","endpoint":"http://127.0.0.1:9/%s","capabilities":[{"name":"python"}]}' "$1" "$1" "$1"
}

# register NODE ID: one attempt; returns 0 on 2xx, 1 on a transient answer,
# fails the test on any other 4xx.
register() {
    request POST "$(url "$1")/v1/agents" "$(agent_json "$2")"
    case "$CODE" in
        2??) return 0 ;;
        408 | 421 | 429) return 1 ;;
        4??) fail "registering $2 on node$1 answered $CODE: $(head -c 500 "$BODY")" ;;
        *) return 1 ;;
    esac
}

# read_agent NODE ID DEADLINE: linearizable read; retried only on transient
# answers (5xx, no answer) until DEADLINE (in $SECONDS). A 404 after an
# acknowledged write is a consistency bug and fails at once.
read_agent() {
    local node="$1" id="$2" deadline="$3" got
    while :; do
        request GET "$(url "$node")/v1/agents/$id"
        case "$CODE" in
            200)
                got="$(json_field agent.agent_id <"$BODY")"
                [[ "$got" == "$id" ]] || fail "node$node returned agent '$got' for $id: $(head -c 500 "$BODY")"
                pass "node$node reads $id"
                return 0
                ;;
            404) fail "node$node does not have $id after the write was acknowledged (404)" ;;
            408 | 421 | 429) ;;
            4??) fail "reading $id on node$node answered $CODE: $(head -c 500 "$BODY")" ;;
        esac
        ((SECONDS < deadline)) || fail "reading $id on node$node: last answer $CODE after retrying: $(head -c 300 "$BODY")"
        sleep 0.5
    done
}

echo "compose-smoke: project $PROJECT (${COMPOSE[*]})"
up_at="$(now)"
env -u REGISTRY_INITIAL_CLUSTER "${DC[@]}" up -d node1 node2 node3 || fail "compose up failed"

# 1. all three nodes ready
deadline=$((SECONDS + READY_TIMEOUT))
for n in 1 2 3; do
    until [[ "$(http_code "$(url "$n")/health/ready")" == 200 ]]; do
        ((SECONDS < deadline)) || fail "node$n ($(url "$n")) not ready within ${READY_TIMEOUT}s (/health/ready: $(http_code "$(url "$n")/health/ready"))"
        sleep 0.5
    done
done
pass "3 nodes ready $(elapsed "$up_at") after compose up"

# 1b. access control is on: anonymous writes are refused, the admin token
# compose created in the secrets volume works
request POST "$(url 1)/v1/agents" "$(agent_json "smoke-anon-$RANDOM")"
[[ "$CODE" == 401 ]] || fail "an anonymous registration got HTTP $CODE, not 401: $(head -c 300 "$BODY")"
TOKEN="$("${DC[@]}" exec -T node1 /bin/busybox cat /run/registry/admin-token | tr -d '\r\n')"
[[ "$TOKEN" == areg_* ]] || fail "no admin token in the secrets volume (read '${TOKEN:0:8}...')"
deadline=$((SECONDS + 30))
until request GET "$(url 1)/v1/auth/tokens" && [[ "$CODE" == 200 ]]; do
    ((SECONDS < deadline)) || fail "the admin token is not accepted: GET /v1/auth/tokens answered $CODE: $(head -c 300 "$BODY")"
    sleep 0.5
done
pass "auth on: anonymous write refused (401), admin token from the secrets volume accepted"

# 1c. node-to-node requests are signed with the secret compose created, and
# all three nodes belong to one cluster
ids=()
for n in 1 2 3; do
    request GET "$(url "$n")/v1/cluster"
    info="$(cat "$BODY")"
    [[ "$info" == *'"peer_auth":"hmac_sha256"'* ]] || fail "node$n does not sign node-to-node requests: $info"
    ids+=("$(sed -n 's/.*"cluster_id":"\([^"]*\)".*/\1/p' <<<"$info")")
done
[[ -n "${ids[0]}" && "${ids[0]}" == "${ids[1]}" && "${ids[0]}" == "${ids[2]}" ]] ||
    fail "the nodes do not share one cluster id: ${ids[*]}"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/x-bincode; registry-format=2' \
    --data-binary x "$(url 1)/internal/forward")"
[[ "$code" == 401 ]] || fail "an unsigned /internal/forward got HTTP $code, not 401"
pass "peers authenticated (hmac_sha256), one cluster id ${ids[0]}, unsigned internal request refused"

# 2. write through node1, read on every node
A="smoke-a-$RANDOM$RANDOM"
deadline=$((SECONDS + 30))
until register 1 "$A"; do
    ((SECONDS < deadline)) || fail "registering $A on node1: last answer $CODE: $(head -c 300 "$BODY")"
    sleep 0.5
done
pass "registered $A through node1 ($CODE)"
for n in 1 2 3; do read_agent "$n" "$A" $((SECONDS + 15)); done

# 3. stop the leader
request GET "$(url 1)/v1/cluster"
leader="$(json_field leader_id <"$BODY")"
[[ "$leader" =~ ^[123]$ ]] || fail "node1 reports no valid leader (leader_id='$leader'): $(head -c 300 "$BODY")"
"${DC[@]}" stop -t 10 "node$leader" >/dev/null 2>&1 || fail "compose stop node$leader failed"
pass "stopped the leader's container node$leader"
remaining=()
for n in 1 2 3; do [[ "$n" == "$leader" ]] || remaining+=("$n"); done

# 4. a new write succeeds on the remaining nodes (after an election)
B="smoke-b-$RANDOM$RANDOM"
deadline=$((SECONDS + FAILOVER_TIMEOUT))
t0="$(now)"
i=0
until register "${remaining[$((i % 2))]}" "$B"; do
    ((SECONDS < deadline)) || fail "no node accepted $B within ${FAILOVER_TIMEOUT}s of stopping the leader (last: node${remaining[$((i % 2))]} answered $CODE: $(head -c 300 "$BODY"))"
    i=$((i + 1))
    sleep 0.3
done
pass "registered $B through node${remaining[$((i % 2))]} $(elapsed "$t0") after stopping the leader"
for n in "${remaining[@]}"; do
    read_agent "$n" "$B" $((SECONDS + 30))
    read_agent "$n" "$A" $((SECONDS + 30))
done

# 5. the survivors agree on a new leader
request GET "$(url "${remaining[0]}")/v1/cluster"
new_leader="$(json_field leader_id <"$BODY")"
[[ -n "$new_leader" && "$new_leader" != "$leader" ]] || fail "node${remaining[0]} reports leader '$new_leader' after node$leader stopped"
pass "node$new_leader is the new leader"

# 6. the `five` profile grows the cluster through the membership API: the
# stopped node comes back, node4 and node5 start with --join, `grow` adds them
"${DC[@]}" start "node$leader" >/dev/null 2>&1 || fail "compose start node$leader failed"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(http_code "$(url "$leader")/health/ready")" == 200 ]]; do
    ((SECONDS < deadline)) || fail "node$leader not ready within ${READY_TIMEOUT}s of being started again"
    sleep 0.5
done
grow_at="$(now)"
env -u REGISTRY_INITIAL_CLUSTER "${DC5[@]}" up -d || fail "compose --profile five up failed"
grow_id="$("${DC5[@]}" ps -q grow)"
[[ -n "$grow_id" ]] || fail "the grow service has no container"
deadline=$((SECONDS + GROW_TIMEOUT))
until [[ "$(docker inspect -f '{{.State.Status}}' "$grow_id" 2>/dev/null)" == exited ]]; do
    ((SECONDS < deadline)) || fail "grow still runs after ${GROW_TIMEOUT}s: $("${DC5[@]}" logs --no-color --tail=20 grow 2>&1)"
    sleep 1
done
grow_rc="$(docker inspect -f '{{.State.ExitCode}}' "$grow_id")"
[[ "$grow_rc" == 0 ]] || fail "grow exited $grow_rc: $("${DC5[@]}" logs --no-color --tail=30 grow 2>&1)"
request GET "$(url 1)/v1/cluster/members"
voters="$(python3 -c 'import json,sys; print(",".join(str(m["node_id"]) for m in json.load(sys.stdin)["members"] if m["voter"]))' <"$BODY" 2>/dev/null || true)"
[[ "$voters" == 1,2,3,4,5 ]] || fail "after grow, node1 counts voters '$voters', not 1..5: $(head -c 500 "$BODY")"
pass "grown to 5 voters through the membership API $(elapsed "$grow_at") after compose --profile five up"
for n in 4 5; do
    read_agent "$n" "$A" $((SECONDS + 30))
    read_agent "$n" "$B" $((SECONDS + 30))
done

echo "compose-smoke: PASS in $(elapsed "$started_at")"
echo "compose-smoke: $passed passed, 0 failed"
