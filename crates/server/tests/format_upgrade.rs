//! A node of this release starts on data directories that nodes of earlier
//! releases wrote, and serves exactly what those nodes served. Each folder
//! of `tests/fixtures` holds one directory and the answers (see its README
//! for how it was made):
//!
//! - `format-v1`: persisted format 1, snapshot format 2 (before text cost
//!   estimates, counters and access control). Expected differences:
//!   capabilities now carry `parameters` (empty for old data), records
//!   `registered_by` (anonymous), `agent_card` and events `actor` and
//!   `card_etag`, and numbers are compared as numbers (`2` and `2.0` are
//!   the same JSON number: jq pretty-printed those answers, and writes
//!   `1.0` as `1`).
//! - `format-v4`: log format 2, snapshot format 4 (the release before A2A
//!   Agent Cards, with access control on). The only expected differences:
//!   records gain `agent_card: null` and events `card_etag: null`; the JSON
//!   is compared exactly, numbers included.

mod common;

use std::path::{Path, PathBuf};

use common::{client_with, send, send_with_headers, wait_until, Cluster, Reply};
use reqwest::Method;
use serde_json::{json, Value};

/// One fixture folder: a data directory an older release wrote
/// (`node1/`) and what that node served (`expected/`).
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        Fixture {
            dir: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        }
    }

    /// A JSON file of the folder.
    fn json(&self, name: &str) -> Value {
        let path = self.dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    }

    /// A JSON file of `expected/`.
    fn expected(&self, name: &str) -> Value {
        self.json(&format!("expected/{name}"))
    }

    /// The events of `expected/events.sse`, a raw server-sent-events
    /// capture, in order.
    fn expected_events(&self) -> Vec<Value> {
        let path = self.dir.join("expected/events.sse");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("event JSON"))
            .collect()
    }

    /// A one-node cluster whose node 1 holds a copy of `node1/` (the
    /// fixture itself is never opened: RocksDB rewrites files it opens).
    /// Not started, so a test can set the client first.
    fn cluster(&self, args: &[&str]) -> Cluster {
        let c = Cluster::new(1, args);
        copy_dir(&self.dir.join("node1"), &c.node(1).data_dir);
        c
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// Every number as an f64, so `2` equals `2.0`.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().expect("finite")),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Where `now` and `want` first differ (a JSON path, both values), if
/// they do: an answer of hundreds of lines printed whole hides the one field
/// that changed.
fn first_difference(now: &Value, want: &Value, path: &str) -> Option<String> {
    match (now, want) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => first_difference(x, y, &format!("{path}.{k}")),
                (x, y) => Some(format!("{path}.{k}: now {x:?}, expected {y:?}")),
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: now {a}, expected {b}")),
    }
}

/// Fails naming the first difference between `now` and `want`.
#[track_caller]
fn assert_same(now: &Value, want: &Value, what: &str) {
    if let Some(d) = first_difference(now, want, "") {
        panic!("{what} differs from what the old node served: {d}");
    }
}

/// Sets `field` of an object the old release served to `value`, after
/// checking that the old release did not serve that field: a difference
/// the test expects must be an addition.
fn added(mut v: Value, field: &str, value: Value) -> Value {
    let o = v.as_object_mut().expect("a JSON object");
    assert!(
        !o.contains_key(field),
        "the old release served {field} already"
    );
    o.insert(field.to_string(), value);
    v
}

/// An old record as this release serves it: no card (there were none).
fn without_card(record: &Value) -> Value {
    added(record.clone(), "agent_card", Value::Null)
}

/// An array of old records as this release serves them.
fn cardless(records: &Value) -> Value {
    Value::Array(
        records
            .as_array()
            .expect("an array of records")
            .iter()
            .map(without_card)
            .collect(),
    )
}

/// An old event as this release serves it: no card ETag.
fn without_card_etag(event: &Value) -> Value {
    added(event.clone(), "card_etag", Value::Null)
}

async fn get(c: &Cluster, path: &str) -> Reply {
    send(&c.http, Method::GET, &format!("{}{path}", c.url(1)), None)
        .await
        .expect("the node answers")
}

/// GET `path`, expecting 200, as JSON.
async fn get_ok(c: &Cluster, path: &str) -> Value {
    let r = get(c, path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text);
    r.json()
}

/// `method path` with a JSON body, as the holder of `secret` (no token:
/// `None`).
async fn send_as(
    c: &Cluster,
    secret: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let headers: Vec<(&str, String)> = secret
        .map(|s| vec![("authorization", format!("Bearer {s}"))])
        .unwrap_or_default();
    send_with_headers(
        &c.http,
        method,
        &format!("{}{path}", c.url(1)),
        body.map(|b| b.to_string().into_bytes()),
        &headers,
    )
    .await
    .expect("the node answers")
}

async fn agents_of(c: &Cluster) -> Vec<Value> {
    get_ok(c, "/v1/agents?limit=1000").await["agents"]
        .as_array()
        .expect("agents")
        .clone()
}

/// Every event the node holds, in order, through the JSON long poll (in
/// pages of at most 1,000).
async fn events_of(c: &Cluster) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let batch = get_ok(c, &format!("/v1/events?from_revision={from}&wait=1s")).await;
        let page = batch["events"].as_array().expect("events");
        events.extend(page.iter().cloned());
        from = batch["next_from_revision"]
            .as_u64()
            .expect("next_from_revision");
        if page.is_empty() || from > batch["revision"].as_u64().expect("revision") {
            return events;
        }
    }
}

/// Waits until the node has applied at least `index` (the end of the
/// fixture's log), so every answer is about the whole of it.
async fn wait_applied(c: &Cluster, index: u64) {
    wait_until(&format!("node 1 to apply index {index}"), || async {
        let info = c.info(1).await?;
        if info.applied_index >= index {
            Ok(())
        } else {
            Err(format!("applied {}", info.applied_index))
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_reads_what_the_previous_release_wrote() {
    eprintln!("--- start this release on a copy of the format-1 data directory");
    let fx = Fixture::new("format-v1");
    let mut c = fx.cluster(&[]);
    c.start_node(1);
    c.wait_ready(1).await;

    eprintln!("--- the agents are those the old node served");
    let old_agents = fx.expected("agents.json")["agents"].clone();
    assert_eq!(old_agents.as_array().map(Vec::len), Some(32));
    let agents = Value::Array(agents_of(&c).await);
    assert_eq!(
        numbers_as_floats(&agents),
        numbers_as_floats(&with_parameters(old_agents.clone()))
    );
    let costs: Vec<&Value> = agents
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["capabilities"].as_array().unwrap())
        .map(|cap| &cap["cost_estimate"])
        .filter(|c| !c.is_null())
        .collect();
    assert!(
        !costs.is_empty() && costs.iter().all(|c| c.is_number()),
        "old numeric cost estimates read back as numbers"
    );

    eprintln!("--- counts, policies, advisories and events match");
    let stats = get_ok(&c, "/v1/stats").await;
    let old = fx.expected("stats.json");
    for field in [
        "total_agents",
        "agents_by_status",
        "total_registrations",
        "total_capabilities",
        "capability_distribution",
        "active_agents",
        "offline_agents",
        "revision",
    ] {
        assert_eq!(stats[field], old[field], "stats.{field}");
    }
    // Format 1 counted nothing: its entries advance no counter, so every
    // replica starts from the same zero whatever snapshot it restored.
    assert_eq!(stats["failed_health_checks"], 0);
    assert_eq!(stats["health_checks_performed"], 0);
    assert_eq!(stats["auto_scaling_events"], 0);
    for (route, file) in [
        ("/v1/scaling/policies", "scaling-policies.json"),
        ("/v1/scaling/advisories", "scaling-advisories.json"),
    ] {
        let now = get_ok(&c, route).await;
        assert_eq!(
            numbers_as_floats(&now),
            numbers_as_floats(&fx.expected(file)),
            "{route}"
        );
    }
    let old_events = fx.expected_events();
    assert_eq!(old_events.len(), 141);
    let events = events_of(&c).await;
    assert_eq!(
        numbers_as_floats(&Value::Array(events[..old_events.len()].to_vec())),
        numbers_as_floats(&Value::Array(with_actors(old_events)))
    );

    eprintln!("--- write in the new format, restart, and read both");
    let body = json!({"agent_id": "after-upgrade", "name": "New", "endpoint": "http://n:1",
                      "capabilities": [{"name": "code_generation", "cost_estimate": "~100 tokens",
                                        "parameters": {"language": "str"}}]});
    let r = send_as(&c, None, Method::POST, "/v1/agents", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    c.terminate(1).await;
    c.start_node(1);
    c.wait_ready(1).await;
    let agents = agents_of(&c).await;
    let new = agents
        .iter()
        .find(|a| a["agent_id"] == "after-upgrade")
        .expect("the new agent survives the restart");
    assert_eq!(new["capabilities"][0]["cost_estimate"], "~100 tokens");
    assert_eq!(
        new["capabilities"][0]["parameters"],
        json!({"language": "str"})
    );
    let old_ones: Vec<Value> = agents
        .iter()
        .filter(|a| a["agent_id"] != "after-upgrade")
        .cloned()
        .collect();
    assert_eq!(
        numbers_as_floats(&Value::Array(old_ones)),
        numbers_as_floats(&with_parameters(old_agents))
    );
}

/// The format-1 answer as this release writes it: every capability gains
/// an empty `parameters`, and every record was registered by an anonymous
/// caller (there was no other before access control).
fn with_parameters(mut agents: Value) -> Value {
    for a in agents.as_array_mut().expect("agents array") {
        for c in a["capabilities"].as_array_mut().expect("capabilities") {
            c["parameters"] = json!({});
        }
        a["registered_by"] = json!({"token_id": null, "name": "anonymous"});
        *a = without_card(a);
    }
    agents
}

/// The format-1 events as this release writes them: a registration,
/// removal or status change names an anonymous actor; the registry's own
/// changes and an agent's reports none.
fn with_actors(mut events: Vec<Value>) -> Vec<Value> {
    for e in &mut events {
        let anonymous = matches!(
            e["cause"].as_str(),
            Some("registration" | "deregistration" | "operator")
        );
        e["actor"] = if anonymous {
            json!({"token_id": null, "name": "anonymous"})
        } else {
            Value::Null
        };
        *e = without_card_etag(e);
    }
    events
}

/// The flags the format-4 fixture was written with that matter for reading
/// it: access control on, and anonymous changes of `legacy-*` agents.
/// No `--bootstrap-token-file`: the data holds an admin token, and a node
/// with auth on refuses to start on data without one, so starting at all
/// shows the token table was read.
const V4_FLAGS: [&str; 4] = ["--auth", "on", "--anonymous-agent-scope", "legacy-*"];

/// The agents the format-4 tests change (a card set on an old record, a
/// new one with a card); every other record must stay as the old node
/// served it.
const V4_CHANGED: [&str; 2] = ["team-a-coder", "team-a-carded"];

/// The secret of the fixture's token `name` (`secrets.json`).
fn v4_secret(fx: &Fixture, name: &str) -> String {
    fx.json("secrets.json")[name]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret of {name} in secrets.json"))
        .to_string()
}

/// What the old node served that a restart of this release must serve
/// again, whatever it wrote meanwhile: the records it did not change, each
/// one alone, the tokens, the scaling policies, and the old events, as the
/// first events.
async fn assert_serves_old_state(c: &Cluster, fx: &Fixture) {
    let old_agents = fx.expected("agents.json")["agents"]
        .as_array()
        .expect("agents")
        .clone();
    let unchanged = |a: &&Value| !V4_CHANGED.iter().any(|id| a["agent_id"] == *id);
    let now: Vec<Value> = agents_of(c)
        .await
        .iter()
        .filter(unchanged)
        .cloned()
        .collect();
    let old: Vec<Value> = old_agents
        .iter()
        .filter(unchanged)
        .map(without_card)
        .collect();
    assert_same(&Value::Array(now), &Value::Array(old), "GET /v1/agents");

    for entry in std::fs::read_dir(fx.dir.join("expected/agents")).expect("expected/agents") {
        let file = entry.expect("dir entry").file_name();
        let file = file.to_str().expect("file name");
        let id = file.strip_suffix(".json").expect("a JSON file");
        if V4_CHANGED.contains(&id) {
            continue;
        }
        let now = get_ok(c, &format!("/v1/agents/{id}")).await;
        let old = fx.expected(&format!("agents/{file}"));
        assert_same(
            &now["agent"],
            &without_card(&old["agent"]),
            &format!("GET /v1/agents/{id}"),
        );
    }
    for (route, file) in [
        ("/v1/auth/tokens", "tokens.json"),
        ("/v1/scaling/policies", "scaling-policies.json"),
        ("/v1/scaling/advisories", "scaling-advisories.json"),
    ] {
        // The registry's revision, which the answers carry, moves with
        // every write of the test.
        let at_any_revision = |mut v: Value| {
            v.as_object_mut().map(|o| o.remove("revision"));
            v
        };
        assert_same(
            &at_any_revision(get_ok(c, route).await),
            &at_any_revision(fx.expected(file)),
            route,
        );
    }
    let old_events: Vec<Value> = fx.expected_events().iter().map(without_card_etag).collect();
    let events = events_of(c).await;
    assert!(events.len() >= old_events.len(), "events were lost");
    assert_same(
        &Value::Array(events[..old_events.len()].to_vec()),
        &Value::Array(old_events),
        "the events",
    );
}

/// What the format-4 test wrote: a card on an old record, and a new agent
/// registered with a card by an old agent token.
async fn assert_serves_new_cards(c: &Cluster, fx: &Fixture, card: &Value) {
    let team_a = fx.json("secrets.json")["team-a"]["id"].clone();
    let carded = get_ok(c, "/v1/agents/team-a-carded").await["agent"].clone();
    assert_eq!(carded["agent_card"], *card);
    assert_eq!(
        carded["registered_by"],
        json!({"token_id": team_a, "name": "team-a"})
    );
    let coder = get_ok(c, "/v1/agents/team-a-coder").await["agent"].clone();
    assert_eq!(
        coder["agent_card"]["skills"][1]["id"], "sql-generation",
        "{coder}"
    );
    // A card replaces the five mapped fields; the rest of the old record
    // stays.
    let old = fx.expected("agents/team-a-coder.json")["agent"].clone();
    for field in [
        "metadata",
        "tags",
        "runtime_id",
        "registered_by",
        "registered_at",
        "create_revision",
    ] {
        assert_eq!(coder[field], old[field], "team-a-coder.{field}");
    }
    for id in ["team-a-carded", "team-a-coder"] {
        let r = get(c, &format!("/v1/agents/{id}/agent-card.json")).await;
        assert_eq!(r.status, 200, "{id}'s card: {}", r.text);
        assert!(r.header("etag").is_some(), "{id}'s card has an ETag");
    }
}

/// An A2A 1.0 card whose skills are named `skills` (their ids: the names
/// in lower case, dashed).
fn card(name: &str, url: &str, skills: &[&str]) -> Value {
    let skills: Vec<Value> = skills
        .iter()
        .map(|s| json!({"id": s.to_lowercase().replace(' ', "-"), "name": s, "description": "", "tags": ["code"]}))
        .collect();
    json!({
        "name": name, "description": "reads the old data", "version": "5.0.0",
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"],
        "skills": skills
    })
}

#[tokio::test]
async fn a_node_reads_what_the_release_before_agent_cards_wrote() {
    eprintln!("--- start this release on a copy of the format-4 data directory (auth on)");
    let fx = Fixture::new("format-v4");
    let mut c = fx.cluster(&V4_FLAGS);
    c.http = client_with(&v4_secret(&fx, "admin"));
    c.start_node(1);
    c.wait_ready(1).await;
    let old_cluster = fx.expected("cluster.json");
    wait_applied(&c, old_cluster["last_log_index"].as_u64().expect("index")).await;

    eprintln!("--- statistics first: every read of agents counts as a discovery request");
    assert_same(
        &get_ok(&c, "/v1/stats").await,
        &fx.expected("stats.json"),
        "/v1/stats",
    );

    eprintln!("--- everything else the old node served, exactly");
    let old_agents = fx.expected("agents.json");
    assert_eq!(old_agents["agents"].as_array().map(Vec::len), Some(32));
    let mut want = old_agents.clone();
    want["agents"] = cardless(&old_agents["agents"]);
    assert_same(
        &get_ok(&c, "/v1/agents?limit=1000&consistency=stale").await,
        &want,
        "GET /v1/agents",
    );
    // The compatibility list serves records too, with their (null) card.
    assert_same(
        &get_ok(&c, "/agents").await,
        &cardless(&fx.expected("legacy-agents.json")),
        "GET /agents",
    );
    for (route, file) in [
        ("/v1/capabilities", "capabilities.json"),
        ("/v1/runtimes", "runtimes.json"),
    ] {
        assert_same(&get_ok(&c, route).await, &fx.expected(file), route);
    }
    // The legacy statistics are the same counts; only the discovery
    // requests moved, by the reads above.
    let mut legacy = get_ok(&c, "/stats").await;
    let mut old_legacy = fx.expected("legacy-stats.json");
    for field in ["discovery_requests", "service_discovery_requests"] {
        let (now, then) = (legacy[field].take(), old_legacy[field].take());
        assert!(
            now.as_u64() > then.as_u64(),
            "/stats {field}: {now} after {then}"
        );
    }
    assert_same(&legacy, &old_legacy, "GET /stats");
    let cluster = get_ok(&c, "/v1/cluster").await;
    for field in [
        "cluster_id",
        "node_id",
        "leader_id",
        "leader_addr",
        "members",
        "term",
        "revision",
        "snapshot_index",
    ] {
        assert_eq!(cluster[field], old_cluster[field], "cluster.{field}");
    }
    assert_serves_old_state(&c, &fx).await;

    eprintln!("--- the old tokens still decide who may do what");
    let body = |id: &str| Some(json!({"agent_id": id, "name": id, "endpoint": "http://n:1"}));
    for (token, why) in [("old-a", "revoked"), ("short", "expired")] {
        let r = send_as(
            &c,
            Some(&v4_secret(&fx, token)),
            Method::GET,
            "/v1/agents",
            None,
        )
        .await;
        assert_eq!(r.status, 401, "a {why} token: {}", r.text);
    }
    let viewer = v4_secret(&fx, "viewer");
    let r = send_as(&c, Some(&viewer), Method::GET, "/v1/agents/legacy-01", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send_as(
        &c,
        Some(&viewer),
        Method::POST,
        "/v1/agents",
        body("viewer-1"),
    )
    .await;
    assert_eq!(r.status, 403, "a reader registers: {}", r.text);
    let team_a = v4_secret(&fx, "team-a");
    let r = send_as(
        &c,
        Some(&team_a),
        Method::POST,
        "/v1/agents",
        body("team-b-x"),
    )
    .await;
    assert_eq!(r.status, 403, "an agent token out of its scope: {}", r.text);

    eprintln!("--- write cards: a new agent with one, and one on an old record");
    // Skills become capabilities: the new agent's has no scaling policy,
    // and the old record's keeps the names it had, so the advisories the
    // old node served stay as they were.
    let new_card = card("Carded", "https://carded.example/a2a", &["Card reading"]);
    let mut reg = body("team-a-carded").expect("body");
    reg["runtime_id"] = json!("rt-team-a");
    reg["agent_card"] = new_card.clone();
    let r = send_as(&c, Some(&team_a), Method::POST, "/v1/agents", Some(reg)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let coder_card = card(
        "Coder A",
        "https://coder.example/a2a",
        &["Python code generation", "SQL generation"],
    );
    let r = send_as(
        &c,
        Some(&team_a),
        Method::POST,
        "/v1/agents/team-a-coder/agent-card",
        Some(coder_card),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_serves_new_cards(&c, &fx, &new_card).await;
    assert_serves_old_state(&c, &fx).await;

    eprintln!("--- restart: the same, from the old snapshot and the log");
    c.terminate(1).await;
    c.start_node(1);
    c.wait_ready(1).await;
    assert_serves_old_state(&c, &fx).await;
    assert_serves_new_cards(&c, &fx, &new_card).await;

    eprintln!("--- a snapshot of this release replaces the format-4 one; restart again");
    let old_snapshot = old_cluster["snapshot_index"].as_u64().expect("index");
    c.terminate(1).await;
    // The fewest entries between snapshots a node accepts; the log holds
    // more than that past the fixture's snapshot already.
    c.set_node_args(1, &["--snapshot-logs", "10"]);
    c.start_node(1);
    c.wait_ready(1).await;
    wait_until("a snapshot past the fixture's", || async {
        let info = c.info(1).await?;
        match info.snapshot_index {
            Some(i) if i > old_snapshot => Ok(()),
            other => Err(format!("snapshot index {other:?}")),
        }
    })
    .await;
    c.terminate(1).await;
    let report = inspect(&c.node(1).data_dir);
    assert_eq!(
        report["snapshot"]["data_format"], 5,
        "the snapshot on disk is of this release: {report}"
    );
    c.set_node_args(1, &[]);
    c.start_node(1);
    c.wait_ready(1).await;
    assert_serves_old_state(&c, &fx).await;
    assert_serves_new_cards(&c, &fx, &new_card).await;
}

/// `agent-registry inspect` of a stopped node's data directory.
fn inspect(data_dir: &Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .arg("inspect")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run agent-registry inspect");
    assert!(
        out.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}
