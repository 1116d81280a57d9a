#!/usr/bin/env bash
# Checks what operators monitor the registry with, against a live cluster:
#
#   scripts/monitoring-check.sh
#
#   rules      promtool check rules docs/monitoring/alerts.yml
#   rule-tests promtool test rules docs/monitoring/alerts.test.yml (the alerts
#              fire, and only, when they must)
#   dashboard  docs/monitoring/grafana-dashboard.json is JSON, every panel has
#              a query
#   build      cargo build --release -p agent-registry (skipped with REGISTRY_BIN)
#   cluster    scripts/cluster.sh up 3 in a temporary directory, on ports
#              MONITORING_PORT_BASE+1..3 (default 8310)
#   load       agents registered, heartbeats, searches and discoveries, so
#              the metrics have values (and the leader its per-member ones)
#   metrics    promtool check metrics on every node's GET /metrics: any
#              complaint fails; a canary exposition it must refuse proves it
#              lints
#   names      every metric the rules and the dashboard query is served by
#              the cluster (a renamed metric cannot leave them behind)
#
# promtool comes with Debian's prometheus package (scripts/setup.sh installs
# it). Environment: REGISTRY_BIN (use this node binary, no build),
# MONITORING_PORT_BASE, CARGO_TARGET_DIR. Exits non-zero on the first failure;
# the cluster is stopped and removed on exit.
set -euo pipefail
LIB_PROG=monitoring-check
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MON="$REPO_ROOT/docs/monitoring"
WORK="$(mktemp -d)"
export REGISTRY_CLUSTER_DIR="$WORK/cluster"
export REGISTRY_PORT_BASE="${MONITORING_PORT_BASE:-8310}"
NODES=3

cleanup() {
    if [[ -d "$REGISTRY_CLUSTER_DIR" ]]; then
        "$REPO_ROOT/scripts/cluster.sh" clean >/dev/null 2>&1 || true
    fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT

step() {
    local name="$1" t0 rc=0
    shift
    echo "==> [monitoring:$name] $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "monitoring-check: FAILED at '$name' (exit $rc) after $(elapsed "$t0")"
        exit "$rc"
    fi
    echo "<== [monitoring:$name] ok ($(elapsed "$t0"))"
}

need_promtool() {
    command -v promtool >/dev/null 2>&1 || die "promtool is missing: run scripts/setup.sh (Debian package prometheus)"
    promtool --version 2>&1 | head -n1 >&2
}

check_rules() { promtool check rules "$MON/alerts.yml"; }

test_rules() { (cd "$MON" && promtool test rules alerts.test.yml); }

check_dashboard() {
    python3 - "$MON/grafana-dashboard.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
panels = [p for p in d["panels"] if p.get("type") != "row"]
assert panels, "no panels"
for p in panels:
    targets = p.get("targets") or []
    assert targets and all(t.get("expr") for t in targets), f"panel {p.get('title')!r} has no query"
print(f"dashboard {d['title']!r}: {len(panels)} panels", file=sys.stderr)
EOF
}

start_cluster() {
    "$REPO_ROOT/scripts/cluster.sh" up "$NODES" >"$WORK/up.log" 2>&1 || {
        tail -n 30 "$WORK/up.log" >&2
        return 1
    }
}

url() { echo "http://127.0.0.1:$((REGISTRY_PORT_BASE + $1))"; }

# post NODE PATH BODY: fails unless 2xx.
post() {
    curl -sf --max-time 10 -X POST -H 'content-type: application/json' -d "$3" "$(url "$1")$2" >/dev/null ||
        die "POST $2 on node $1 failed"
}

load() {
    local i
    for ((i = 0; i < 20; i++)); do
        post $((i % NODES + 1)) /v1/agents "{\"agent_id\":\"mon-$i\",\"name\":\"m$i\",\"endpoint\":\"http://127.0.0.1:9\",\"capabilities\":[{\"name\":\"python\"},{\"name\":\"cap-$((i % 4))\"}]}"
    done
    for ((i = 0; i < 20; i++)); do
        post $((i % NODES + 1)) "/v1/agents/mon-$i/heartbeat" '{}'
        http_get "$(url $((i % NODES + 1)))/v1/capabilities/search?q=python" >/dev/null || die "search failed"
    done
    post 2 /v1/discover '{"capabilities":["python"],"any_capabilities":["cap-1","cap-2"]}'
    post 3 /v1/discover '{"text":"python"}'
    # The leader lists its per-member series once it has heard from both.
    local deadline=$((SECONDS + 30)) leader
    while :; do
        leader="$(http_get "$(url 1)/v1/cluster" | json_field leader_id)"
        if [[ -n "$leader" ]] && http_get "$(url "$leader")/metrics" | grep -c '^registry_raft_member_reachable{.*} 1$' | grep -qx 2; then
            break
        fi
        ((SECONDS < deadline)) || die "the leader does not report both members reachable"
        sleep 0.2
    done
}

check_metrics() {
    local i out
    # The canary: promtool must refuse a gauge named like a counter.
    printf '# HELP bad_total A gauge.\n# TYPE bad_total gauge\nbad_total 1\n' >"$WORK/canary.txt"
    if promtool check metrics <"$WORK/canary.txt" >"$WORK/canary.out" 2>&1; then
        die "promtool check metrics accepted a gauge named bad_total: it does not lint"
    fi
    for ((i = 1; i <= NODES; i++)); do
        http_get "$(url "$i")/metrics" >"$WORK/metrics-$i.txt" || die "GET /metrics on node $i failed"
        if ! out="$(promtool check metrics <"$WORK/metrics-$i.txt" 2>&1)" || [[ -n "$out" ]]; then
            echo "$out" >&2
            die "promtool check metrics complains about node $i's /metrics"
        fi
        log "node $i: $(grep -vc '^#' "$WORK/metrics-$i.txt") samples, promtool has nothing to say"
    done
}

check_names() {
    python3 - "$MON/alerts.yml" "$MON/grafana-dashboard.json" "$WORK"/metrics-*.txt <<'EOF'
import json, re, sys
rules, dashboard, scrapes = sys.argv[1], sys.argv[2], sys.argv[3:]
served = set()
for path in scrapes:
    for line in open(path):
        if line and not line.startswith("#"):
            served.add(re.split(r"[{ ]", line, maxsplit=1)[0])
name = re.compile(r"\b(?:agent_registry|registry)_[a-z0-9_]+\b")
queries = [l for l in open(rules) if "expr:" in l]
d = json.load(open(dashboard))
queries += [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
queries += [v["query"]["query"] for v in d["templating"]["list"] if isinstance(v.get("query"), dict)]
used = {n for q in queries for n in name.findall(q)}
missing = sorted(used - served)
if missing:
    sys.exit("queried but not served by the cluster: " + ", ".join(missing))
print(f"{len(used)} metric names queried by the rules and the dashboard, all served", file=sys.stderr)
EOF
}

step promtool need_promtool
step rules check_rules
step rule-tests test_rules
step dashboard check_dashboard
step build build_registry
REGISTRY_BIN="$(resolved_bin)"
export REGISTRY_BIN
step cluster start_cluster
step load load
step metrics check_metrics
step names check_names
echo "monitoring-check: rules, dashboard and every node's metrics pass"
