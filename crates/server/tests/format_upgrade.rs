//! A node of this release starts on the data directory a node of the
//! previous release (persisted format 1, snapshot format 2) wrote, and
//! serves exactly what that node served: `tests/fixtures/format-v1` holds
//! the directory and the answers (see its README for how it was made).
//!
//! The expected differences: capabilities now carry `parameters` (empty
//! for old data), records an `agent_card` and events a `card_etag` (null
//! for old data), and numbers are compared as numbers (`2` and `2.0` are the
//! same JSON number).

mod common;

use std::path::{Path, PathBuf};

use common::{send, Cluster, Reply};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1")
}

fn expected(name: &str) -> Value {
    let path = fixture().join("expected").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
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

/// The old answer as this release writes it: every capability gains an
/// empty `parameters`, and every record was registered by an anonymous
/// caller (there was no other before access control).
fn with_parameters(mut agents: Value) -> Value {
    for a in agents.as_array_mut().expect("agents array") {
        for c in a["capabilities"].as_array_mut().expect("capabilities") {
            c["parameters"] = json!({});
        }
        a["registered_by"] = json!({"token_id": null, "name": "anonymous"});
        a["agent_card"] = Value::Null;
    }
    agents
}

/// The old events as this release writes them: a registration, removal or
/// status change names an anonymous actor; the registry's own changes and
/// an agent's reports none.
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
        e["card_etag"] = Value::Null;
    }
    events
}

/// The events of a raw server-sent-events capture, in order.
fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event JSON"))
        .collect()
}

async fn get(c: &Cluster, path: &str) -> Reply {
    send(
        &c.http,
        reqwest::Method::GET,
        &format!("{}{path}", c.url(1)),
        None,
    )
    .await
    .expect("the node answers")
}

async fn agents_of(c: &Cluster) -> Value {
    let r = get(c, "/v1/agents?limit=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["agents"].clone()
}

#[tokio::test]
async fn a_node_reads_what_the_previous_release_wrote() {
    eprintln!("--- start this release on a copy of the format-1 data directory");
    let mut c = Cluster::new(1, &[]);
    copy_dir(&fixture().join("node1"), &c.node(1).data_dir);
    c.start_node(1);
    c.wait_ready(1).await;

    eprintln!("--- the agents are those the old node served");
    let old_agents = expected("agents.json")["agents"].clone();
    assert_eq!(old_agents.as_array().map(Vec::len), Some(32));
    let agents = agents_of(&c).await;
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
    let stats = get(&c, "/v1/stats").await.json();
    let old = expected("stats.json");
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
        let now = get(&c, route).await.json();
        assert_eq!(
            numbers_as_floats(&now),
            numbers_as_floats(&expected(file)),
            "{route}"
        );
    }
    let sse = std::fs::read_to_string(fixture().join("expected/events.sse")).expect("events.sse");
    let old_events = sse_events(&sse);
    assert_eq!(old_events.len(), 141);
    let batch = get(&c, "/v1/events?from_revision=0&wait=1s").await.json();
    let events = batch["events"].as_array().expect("events").clone();
    assert_eq!(
        numbers_as_floats(&Value::Array(events[..old_events.len()].to_vec())),
        numbers_as_floats(&Value::Array(with_actors(old_events)))
    );

    eprintln!("--- write in the new format, restart, and read both");
    let body = json!({"agent_id": "after-upgrade", "name": "New", "endpoint": "http://n:1",
                      "capabilities": [{"name": "code_generation", "cost_estimate": "~100 tokens",
                                        "parameters": {"language": "str"}}]});
    let r = send(
        &c.http,
        reqwest::Method::POST,
        &format!("{}/v1/agents", c.url(1)),
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect("the node answers");
    assert_eq!(r.status, 201, "{}", r.text);
    c.terminate(1).await;
    c.start_node(1);
    c.wait_ready(1).await;
    let agents = agents_of(&c).await;
    let new = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "after-upgrade")
        .expect("the new agent survives the restart");
    assert_eq!(new["capabilities"][0]["cost_estimate"], "~100 tokens");
    assert_eq!(
        new["capabilities"][0]["parameters"],
        json!({"language": "str"})
    );
    let old_ones: Vec<Value> = agents
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["agent_id"] != "after-upgrade")
        .cloned()
        .collect();
    assert_eq!(
        numbers_as_floats(&Value::Array(old_ones)),
        numbers_as_floats(&with_parameters(old_agents))
    );
}
