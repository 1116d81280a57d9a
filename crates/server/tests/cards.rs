//! A2A Agent Cards on a real 3-node cluster.
//!
//! `a_card_is_served_alike_by_every_node_while_its_agent_lives`: an agent
//! registers with a card through a follower; every node serves the card
//! with the same ETag and answers a repeat with 304; the card leaves
//! `GET /v1/agent-cards` when the agent goes offline and comes back when it
//! beats again; a replaced card has a new ETag everywhere and shows in the
//! events; every node serves the registry's own card at its own URL.
//! (Bad cards over HTTP, each changing nothing, are cases of `bad_input`.)

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{send, send_with_headers, wait_until, Cluster, Reply};
use registry_types::NodeId;

/// A fast Raft heartbeat (election timeout 250-500 ms), so a TTL of 2 s is
/// allowed; checkpoints and sweeps often, so liveness moves quickly.
const FAST: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--checkpoint-interval-ms",
    "200",
    "--sweep-interval-ms",
    "100",
];

const AGENT: &str = "recipes-1";

fn card(version: &str) -> Value {
    json!({
        "name": "Recipe Agent",
        "description": "Finds recipes and plans menus",
        "version": version,
        "supportedInterfaces": [
            {"url": "https://recipes.example.com/a2a", "protocolBinding": "JSONRPC",
             "protocolVersion": "1.0"},
            {"url": "https://recipes.example.com/grpc", "protocolBinding": "GRPC",
             "protocolVersion": "1.0"}
        ],
        "provider": {"organization": "Example Kitchens", "url": "https://example.com"},
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [
            {"id": "find-recipe", "name": "Find recipe", "description": "Finds a recipe",
             "tags": ["cooking"], "examples": ["a vegan lasagne for four"]},
            {"id": "plan-menu", "name": "Plan menu", "description": "Plans a week of meals",
             "tags": ["planning"], "inputModes": ["application/json"]}
        ]
    })
}

/// A card of the A2A 0.3 era: a top-level url.
fn legacy_card() -> Value {
    json!({
        "name": "Old Translator",
        "description": "Translates",
        "version": "0.3",
        "url": "http://translate.example.com:8080/",
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "translate", "name": "Translate", "description": "Any language",
                    "tags": ["i18n"]}]
    })
}

async fn call(c: &Cluster, node: NodeId, method: Method, path: &str, body: Option<Value>) -> Reply {
    send(
        &c.http,
        method,
        &format!("{}{path}", c.url(node)),
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
    .unwrap_or_else(|e| panic!("node {node}: {e}"))
}

async fn get_card(c: &Cluster, node: NodeId, if_none_match: Option<&str>) -> Reply {
    let headers: Vec<(&str, String)> = if_none_match
        .map(|e| vec![("if-none-match", e.to_string())])
        .unwrap_or_default();
    send_with_headers(
        &c.http,
        Method::GET,
        &format!("{}/v1/agents/{AGENT}/agent-card.json", c.url(node)),
        None,
        &headers,
    )
    .await
    .unwrap_or_else(|e| panic!("node {node}: {e}"))
}

async fn beat(c: &Cluster, node: NodeId) {
    let r = call(
        c,
        node,
        Method::POST,
        &format!("/v1/agents/{AGENT}/heartbeat"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "heartbeat: {}", r.text);
}

/// The agent ids `GET /v1/agent-cards?{query}` lists on `node` (stale: the
/// node's own state).
async fn listed(c: &Cluster, node: NodeId, query: &str) -> Result<Vec<String>, String> {
    let r = send(
        &c.http,
        Method::GET,
        &format!("{}/v1/agent-cards?consistency=stale&{query}", c.url(node)),
        None,
    )
    .await?;
    if r.status != 200 {
        return Err(format!("HTTP {}: {}", r.status, r.text));
    }
    Ok(r.json()["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["agent_id"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_is_served_alike_by_every_node_while_its_agent_lives() {
    let c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (leader, _) = c.wait_leader(&all).await;
    let follower = *all.iter().find(|id| **id != leader).expect("a follower");

    eprintln!("--- register with a card alone, through follower {follower}");
    let r = call(
        &c,
        follower,
        Method::POST,
        "/v1/agents",
        Some(json!({
            "agent_id": AGENT,
            "ttl_seconds": 2,
            "offline_after_seconds": 3,
            "deregister_after_seconds": 0,
            "agent_card": card("1.0.0"),
        })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let agent = r.json()["agent"].clone();
    assert_eq!(agent["name"], "Recipe Agent");
    assert_eq!(agent["endpoint"], "https://recipes.example.com/a2a");
    assert_eq!(agent["version"], "1.0.0");
    assert_eq!(agent["description"], "Finds recipes and plans menus");
    let caps: Vec<&str> = agent["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(caps, ["Find recipe", "Plan menu"]);
    assert_eq!(agent["agent_card"], card("1.0.0"), "kept verbatim");
    let revision = r.json()["revision"].as_u64().expect("revision");

    eprintln!("--- and a 0.3 card beside the usual fields, which win");
    let r = call(
        &c,
        leader,
        Method::POST,
        "/v1/agents",
        Some(json!({
            "agent_id": "translator-1",
            "name": "Translator (ours)",
            "endpoint": "http://10.0.0.9:8080/",
            "agent_card": legacy_card(),
        })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["agent"]["name"], "Translator (ours)");
    assert_eq!(r.json()["agent"]["endpoint"], "http://10.0.0.9:8080/");
    assert_eq!(r.json()["agent"]["capabilities"][0]["name"], "Translate");
    let revision = revision.max(r.json()["revision"].as_u64().expect("revision"));
    for id in &all {
        c.wait_revision(*id, revision).await;
    }

    eprintln!("--- every node serves the card with one ETag, and 304 on a repeat");
    beat(&c, follower).await;
    let mut etag: Option<String> = None;
    for id in &all {
        let r = get_card(&c, *id, None).await;
        assert_eq!(r.status, 200, "node {id}: {}", r.text);
        assert_eq!(r.json(), card("1.0.0"), "node {id}");
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-registry-agent-status"), Some("active"));
        let tag = r.header("etag").expect("an ETag").to_string();
        assert!(
            tag.starts_with('"') && !tag.starts_with("W/"),
            "strong: {tag}"
        );
        match &etag {
            None => etag = Some(tag),
            Some(first) => assert_eq!(&tag, first, "node {id}"),
        }
    }
    let etag = etag.expect("an ETag");
    for id in &all {
        let r = get_card(&c, *id, Some(&etag)).await;
        assert_eq!(r.status, 304, "node {id}: {}", r.text);
        assert!(r.text.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
    }

    eprintln!(
        "--- found by skill, tag, media type and binding; discovered by skill and input mode"
    );
    for id in &all {
        for query in [
            "skill=find-recipe",
            "tag=cooking",
            "input_mode=application/json",
            "output_mode=application/*",
            "binding=grpc",
            "q=lasagne",
        ] {
            assert_eq!(listed(&c, *id, query).await.unwrap(), [AGENT], "{query}");
        }
        assert_eq!(
            listed(&c, *id, "binding=JSONRPC").await.unwrap(),
            [AGENT, "translator-1"]
        );
    }
    let r = call(
        &c,
        follower,
        Method::POST,
        "/v1/discover",
        Some(
            json!({"skills": ["plan-menu"], "input_modes": ["application/json"],
                    "status": ["active", "unhealthy"]}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hits = r.json();
    let found: Vec<&str> = hits["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["agent"]["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [AGENT]);
    // A hit names its card by ETag; the card itself only when asked for.
    assert_eq!(hits["agents"][0]["card_etag"], etag.as_str());
    assert_eq!(hits["agents"][0]["agent"]["agent_card"], Value::Null);
    let r = call(
        &c,
        follower,
        Method::POST,
        "/v1/discover",
        Some(
            json!({"skills": ["plan-menu"], "status": ["active", "unhealthy"],
                    "include_card": true}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hit = &r.json()["agents"][0];
    assert_eq!(hit["card_etag"], etag.as_str());
    assert_eq!(hit["agent"]["agent_card"], card("1.0.0"));

    eprintln!("--- silent: the card leaves the listing of every node once the agent is offline");
    wait_until("the card to leave every node's listing", || async {
        for id in &all {
            let ids = listed(&c, *id, "skill=find-recipe").await?;
            if !ids.is_empty() {
                return Err(format!("node {id} still lists {ids:?}"));
            }
        }
        Ok(())
    })
    .await;
    for id in &all {
        let r = get_card(&c, *id, None).await;
        assert_eq!(r.status, 404, "node {id}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "not_found");
        assert_eq!(r.header("x-registry-agent-status"), Some("offline"));
        let r = send(
            &c.http,
            Method::GET,
            &format!(
                "{}/v1/agents/{AGENT}/agent-card.json?include_inactive=true",
                c.url(*id)
            ),
            None,
        )
        .await
        .expect("include_inactive");
        assert_eq!(r.status, 200, "node {id}: {}", r.text);
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(
            listed(&c, *id, "skill=find-recipe&status=offline")
                .await
                .unwrap(),
            [AGENT]
        );
    }

    eprintln!("--- it beats again: the card returns on every node");
    beat(&c, leader).await;
    wait_until("the card to return to every node's listing", || async {
        for id in &all {
            let ids = listed(&c, *id, "skill=find-recipe").await?;
            if ids != [AGENT] {
                return Err(format!("node {id} lists {ids:?}"));
            }
        }
        Ok(())
    })
    .await;

    eprintln!("--- a new card through the follower: a new ETag everywhere, and in the events");
    let r = call(
        &c,
        follower,
        Method::POST,
        &format!("/v1/agents/{AGENT}/agent-card"),
        Some(card("1.1.0")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["agent"]["version"], "1.1.0");
    let revision = r.json()["revision"].as_u64().expect("revision");
    beat(&c, leader).await;
    let mut new_etag = String::new();
    for id in &all {
        c.wait_revision(*id, revision).await;
        let r = get_card(&c, *id, Some(&etag)).await;
        assert_eq!(r.status, 200, "node {id}: the old ETag no longer matches");
        assert_eq!(r.json()["version"], "1.1.0");
        new_etag = r.header("etag").expect("an ETag").to_string();
        assert_ne!(new_etag, etag);
    }
    let r = call(
        &c,
        leader,
        Method::GET,
        &format!("/v1/events?from_revision={revision}&wait=0ms"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = r.json()["events"].as_array().cloned().unwrap_or_default();
    let update = events
        .iter()
        .find(|e| e["revision"] == revision)
        .expect("the card's event");
    assert_eq!(update["type"], "AGENT_UPDATED");
    assert_eq!(update["card_etag"], new_etag.as_str());

    eprintln!("--- every node serves the registry's own card, at its own URL");
    for id in &all {
        let r = call(&c, *id, Method::GET, "/.well-known/agent-card.json", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["supportedInterfaces"][0]["url"], c.url(*id));
        let skills: Vec<&str> = v["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(skills, ["find-agent", "select-agent"]);
        let tag = r.header("etag").expect("an ETag").to_string();
        let again = send_with_headers(
            &c.http,
            Method::GET,
            &format!("{}/.well-known/agent-card.json", c.url(*id)),
            None,
            &[("if-none-match", tag)],
        )
        .await
        .expect("repeat");
        assert_eq!(again.status, 304);
    }
}
