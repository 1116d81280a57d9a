//! The OpenAPI document is generated from the list of routes that also
//! builds the router (`public_api` in `src/lib.rs`). These tests hold the
//! document to the router: the same public routes and methods as the API
//! has always served, no public route outside the list, every documented
//! operation answering on a real (in-process) node with a status it
//! documents, every `$ref` resolving, and the wire enums and liveness bodies
//! matching their schemas. `scripts/openapi-check.sh` validates the same
//! document against the OpenAPI 3 specification.

mod common;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use common::inprocess::InProcess;
use registry_types::VariantArray;

const ROUTER_SOURCE: &str = include_str!("../src/lib.rs");

/// Every public route with its methods, as the API has always served them.
/// The document must list exactly these; a route added to the router shows
/// up here as a failure until it is added to this table too.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/agents", &["get", "post"]),
    ("/v1/agents/{id}", &["get", "delete"]),
    ("/v1/agents/{id}/status", &["put"]),
    ("/v1/agents/{id}/health", &["put"]),
    ("/v1/agents/{id}/heartbeat", &["post"]),
    ("/v1/agents/{id}/agent-card", &["post"]),
    ("/v1/agents/{id}/agent-card.json", &["get"]),
    ("/v1/agent-cards", &["get"]),
    ("/.well-known/agent-card.json", &["get"]),
    ("/agents/{id}/heartbeat", &["post"]),
    ("/v1/heartbeats", &["post"]),
    ("/v1/capabilities/search", &["get"]),
    ("/v1/stats", &["get"]),
    ("/v1/cluster", &["get"]),
    ("/v1/snapshot", &["get"]),
    ("/v1/cluster/members", &["get", "post"]),
    ("/v1/cluster/members/{node_id}", &["delete"]),
    ("/v1/cluster/leader", &["post"]),
    ("/v1/events", &["get"]),
    ("/v1/discover", &["post"]),
    ("/v1/select", &["get"]),
    ("/v1/capabilities", &["get"]),
    ("/v1/runtimes", &["get"]),
    ("/v1/runtimes/{id}", &["get"]),
    ("/v1/scaling/policies", &["get"]),
    (
        "/v1/scaling/policies/{capability}",
        &["get", "put", "delete"],
    ),
    ("/v1/scaling/advisories", &["get"]),
    ("/v1/auth/tokens", &["get", "post"]),
    ("/v1/auth/tokens/{id}", &["delete"]),
    ("/health/live", &["get"]),
    ("/health/ready", &["get"]),
    ("/health/{id}", &["get"]),
    ("/openapi.json", &["get"]),
    ("/metrics", &["get"]),
    ("/register", &["post"]),
    ("/agents/register", &["post"]),
    ("/agents", &["get"]),
    ("/agents/{id}", &["get", "delete"]),
    ("/capabilities/search", &["get"]),
    ("/stats", &["get"]),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(agent_registry::openapi::document_json())
        .expect("the document is valid JSON")
}

/// `(path, method)` of every operation of the document.
fn operations(d: &Value) -> Vec<(String, String)> {
    let paths = d["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            out.push((path.clone(), m.to_string()));
        }
    }
    out
}

#[test]
fn document_is_openapi_3_with_this_release_version() {
    let d = doc();
    let version = d["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "openapi {version}");
    assert_eq!(d["info"]["title"], "Agent registry");
    assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["paths"].is_object());
    assert!(d["components"]["schemas"].is_object());
    let tags: BTreeSet<&str> = d["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for (path, method) in operations(&d) {
        let op = &d["paths"][&path][&method];
        assert!(
            op["operationId"].is_string(),
            "{method} {path} has an operationId"
        );
        assert!(op["summary"].is_string(), "{method} {path} has a summary");
        for tag in op["tags"].as_array().expect("tags").iter() {
            let tag = tag.as_str().expect("a tag name");
            assert!(tags.contains(tag), "{method} {path}: undeclared tag {tag}");
        }
    }
    let ids: BTreeSet<String> = operations(&d)
        .iter()
        .map(|(p, m)| d["paths"][p][m]["operationId"].to_string())
        .collect();
    assert_eq!(ids.len(), operations(&d).len(), "operationIds are unique");
}

#[test]
fn every_public_route_is_documented_with_its_methods() {
    let d = doc();
    let paths = d["paths"].as_object().expect("paths is an object");
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("the document does not describe {path}"));
        for m in *methods {
            assert!(
                item.get(*m).is_some(),
                "the document does not describe {} {path}",
                m.to_uppercase()
            );
        }
        for m in METHODS.iter().filter(|m| !methods.contains(m)) {
            assert!(
                item.get(*m).is_none(),
                "the document describes {} {path}, which the router does not serve",
                m.to_uppercase()
            );
        }
    }
    for path in paths.keys() {
        assert!(
            ROUTES.iter().any(|(p, _)| p == path),
            "the document describes {path}, which is not in ROUTES"
        );
    }
}

/// The handlers named in the `routes!(...)` calls of the router source.
fn listed_handlers() -> Vec<String> {
    ROUTER_SOURCE
        .split("routes!(")
        .skip(1)
        .flat_map(|rest| {
            let inside = &rest[..rest.find(')').expect("routes!( is closed")];
            inside
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn no_public_route_is_served_outside_the_documented_list() {
    // Every `.route(...)` of the router source is an internal route: the
    // public ones go through `routes!`, which documents them.
    let plain: Vec<&str> = ROUTER_SOURCE
        .split(".route(")
        .skip(1)
        .map(|rest| rest[..rest.find(',').expect("a path then a handler")].trim())
        .collect();
    assert!(plain.len() >= 8, "internal routes found: {plain:?}");
    for path in plain {
        match path.strip_prefix('"') {
            Some(literal) => assert!(
                literal.starts_with("/internal/"),
                "{literal} is routed with .route(): list it in public_api with routes! so it is documented"
            ),
            None => assert!(
                [
                    "liveness::HEARTBEATS_PATH",
                    "registry_raft::network::PEER_STATE_PATH",
                    "membership::MEMBERSHIP_PATH",
                    "membership::JOIN_PROBE_PATH",
                    "handover::STAND_PATH",
                    "handover::HANDOVER_PATH",
                ]
                .contains(&path),
                "an unknown path constant: {path}"
            ),
        }
    }
    assert!(agent_registry::liveness::HEARTBEATS_PATH.starts_with("/internal/"));
    assert!(agent_registry::handover::STAND_PATH.starts_with("/internal/"));
    assert!(agent_registry::handover::HANDOVER_PATH.starts_with("/internal/"));
    assert!(registry_raft::network::PEER_STATE_PATH.starts_with("/internal/"));
    assert!(agent_registry::membership::MEMBERSHIP_PATH.starts_with("/internal/"));
    assert!(agent_registry::membership::JOIN_PROBE_PATH.starts_with("/internal/"));
    // One documented operation per listed handler.
    let handlers = listed_handlers();
    assert_eq!(handlers.len(), operations(&doc()).len(), "{handlers:?}");
}

#[test]
fn every_reference_resolves() {
    let d = doc();
    let mut refs = Vec::new();
    collect_refs(&d, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(d.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A path of the document with its parameters filled in with things that
/// exist on the probed node.
fn concrete(path: &str) -> String {
    let path = if path.starts_with("/v1/runtimes/") {
        path.replace("{id}", "rt-probe")
    } else {
        path.replace("{id}", "probe-1")
    };
    // The only member of the probed single node: removing it is refused.
    path.replace("{capability}", "summarize")
        .replace("{node_id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_with_a_documented_status() {
    let n = InProcess::start(&[]).await;
    eprintln!("--- an agent, a runtime and a policy for the paths to name");
    let agent = json!({
        "agent_id": "probe-1",
        "name": "probe",
        "endpoint": "http://127.0.0.1:9/probe",
        "runtime_id": "rt-probe",
        "capabilities": [{"name": "summarize"}],
    });
    let r = n.send_json(Method::POST, "/v1/agents", &agent).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = n
        .send_json(
            Method::PUT,
            "/v1/scaling/policies/summarize",
            &json!({"min_agents": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    eprintln!("--- every operation of the document, deletions last");
    let d = doc();
    let mut ops = operations(&d);
    ops.sort_by_key(|(_, m)| m == "delete");
    assert_eq!(
        ops.len(),
        ROUTES.iter().map(|(_, m)| m.len()).sum::<usize>()
    );
    for (path, method) in &ops {
        let uri = concrete(path);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let body = matches!(method.as_str(), "post" | "put").then_some("{}");
        let r = n.send(m, &uri, body).await;
        let what = format!("{} {uri}", method.to_uppercase());
        assert_ne!(r.status, 405, "{what} is documented but not served");
        if r.status == 404 {
            let message = r.json()["error"]["message"].to_string();
            assert!(
                !message.contains("no route for"),
                "{what} is documented but not routed: {message}"
            );
        }
        let documented = &d["paths"][path][method]["responses"];
        assert!(
            documented.get(r.status.to_string()).is_some(),
            "{what} answered {}, which its operation does not document: {}",
            r.status,
            r.text
        );
    }

    eprintln!("--- methods the document does not list are not served");
    for (path, methods) in ROUTES {
        let uri = concrete(path);
        for method in METHODS.iter().filter(|m| !methods.contains(m)) {
            // axum answers HEAD wherever it answers GET.
            if *method == "head" && methods.contains(&"get") {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let r = n.send(m, &uri, None).await;
            assert_eq!(r.status, 405, "{} {uri}: {}", method.to_uppercase(), r.text);
        }
    }

    eprintln!("--- the served document is the generated one");
    let r = n.send(Method::GET, "/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), d);
    assert!(
        r.header("x-registry-revision").is_some(),
        "the document's answer carries the position headers too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsable_reference_is_served_from_the_binary() {
    let n = InProcess::start(&[]).await;
    let r = n.send(Method::GET, "/docs", None).await;
    assert!(
        (300..400).contains(&r.status),
        "/docs redirects to /docs/: {}",
        r.status
    );
    let r = n.send(Method::GET, "/docs/", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("swagger-ui"), "{}", r.text);
    let r = n
        .send(Method::GET, "/docs/swagger-initializer.js", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("/openapi.json"), "{}", r.text);
    let r = n
        .send(Method::GET, "/docs/swagger-ui-bundle.js", None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text.len() > 100_000, "the embedded Swagger UI bundle");
}

#[test]
fn error_codes_and_statuses_match_the_wire_enums() {
    let all = registry_types::ErrorCode::VARIANTS;
    let d = doc();
    let schema = &d["components"]["schemas"]["ErrorCode"];
    let documented: Vec<&str> = schema["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(documented.len(), all.len());
    let description = schema["description"].as_str().expect("a description");
    for code in all {
        assert!(documented.contains(&code.into_str()), "{}", code.into_str());
        // The description gives each code's status, as the server answers it.
        let line = format!("`{}` ({})", code.into_str(), code.http_status());
        assert!(description.contains(&line), "{line} missing: {description}");
    }
    let statuses: Vec<&str> = d["components"]["schemas"]["AgentStatus"]["enum"]
        .as_array()
        .expect("AgentStatus enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let wire: Vec<&str> = registry_types::AgentStatus::VARIANTS
        .iter()
        .map(|s| s.into_str())
        .collect();
    assert_eq!(statuses, wire);
    let kinds: Vec<&str> = d["components"]["schemas"]["EventKind"]["enum"]
        .as_array()
        .expect("EventKind enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let wire: Vec<&str> = registry_types::EventKind::VARIANTS
        .iter()
        .map(|k| k.into_str())
        .collect();
    assert_eq!(kinds, wire);
}

/// The property names of a documented object schema, following `$ref`,
/// `allOf` and nullable `oneOf`.
fn schema_properties(d: &Value, name: &str) -> Vec<String> {
    fn walk(d: &Value, s: &Value, out: &mut Vec<String>) {
        if let Some(r) = s["$ref"].as_str() {
            let target = d
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            return walk(d, target, out);
        }
        if let Some(props) = s["properties"].as_object() {
            out.extend(props.keys().cloned());
        }
        for part in s["allOf"].as_array().into_iter().flatten() {
            walk(d, part, out);
        }
    }
    let mut out = Vec::new();
    walk(d, &d["components"]["schemas"][name], &mut out);
    out.sort();
    out.dedup();
    out
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn liveness_schemas_match_the_wire_types() {
    use registry_types::api::{
        BatchHeartbeatItem, BatchHeartbeatRequest, BatchHeartbeatResponse, BatchHeartbeatResult,
        HeartbeatRequest, HeartbeatResponse,
    };
    use registry_types::{AgentId, AgentStatus, ErrorBody, ErrorCode, Timestamp};
    let d = doc();
    let request = HeartbeatRequest {
        status: Some("busy".into()),
        health_score: Some(0.5),
        load_factor: Some(0.5),
        metrics: [("q".to_string(), 1.0)].into(),
    };
    let response = HeartbeatResponse {
        agent_id: AgentId::parse("a").unwrap(),
        status: AgentStatus::Busy,
        ttl_seconds: 30,
        next_heartbeat_ms: 10_000,
        last_heartbeat: Timestamp(1_700_000_000_000),
    };
    let item = BatchHeartbeatItem {
        agent_id: "a".into(),
        heartbeat: request.clone(),
    };
    let result = BatchHeartbeatResult {
        agent_id: "a".into(),
        ok: false,
        heartbeat: None,
        error: Some(ErrorBody::new(ErrorCode::AgentNotFound, "gone").error),
    };
    let answer = BatchHeartbeatResponse {
        results: vec![result.clone()],
        accepted: 0,
        rejected: 1,
    };
    let cases = [
        ("HeartbeatRequest", serde_json::to_value(&request).unwrap()),
        (
            "HeartbeatResponse",
            serde_json::to_value(&response).unwrap(),
        ),
        ("BatchHeartbeatItem", serde_json::to_value(&item).unwrap()),
        (
            "BatchHeartbeatRequest",
            serde_json::to_value(BatchHeartbeatRequest {
                heartbeats: vec![item.clone()],
            })
            .unwrap(),
        ),
        (
            "BatchHeartbeatResult",
            serde_json::to_value(&result).unwrap(),
        ),
        (
            "BatchHeartbeatResponse",
            serde_json::to_value(&answer).unwrap(),
        ),
    ];
    for (name, wire) in cases {
        assert_eq!(schema_properties(&d, name), keys(&wire), "{name}");
    }
    // Every field of an answer is always present (absent options are null).
    for name in [
        "HeartbeatResponse",
        "BatchHeartbeatResult",
        "BatchHeartbeatResponse",
    ] {
        let mut required: Vec<String> = d["components"]["schemas"][name]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} lists its required fields"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        required.sort();
        assert_eq!(required, schema_properties(&d, name), "{name}");
    }
    let batch = &d["components"]["schemas"]["BatchHeartbeatRequest"]["properties"]["heartbeats"];
    assert_eq!(batch["minItems"], 1);
    assert_eq!(
        batch["maxItems"].as_u64(),
        Some(agent_registry::api::MAX_BATCH_HEARTBEATS as u64)
    );
}

#[test]
fn card_routes_and_fields_are_described() {
    use registry_types::api::{DiscoverRequest, RegisterRequest};
    let d = doc();
    // The new request fields, as the wire types have them.
    for (name, wire) in [
        (
            "DiscoverRequest",
            serde_json::to_value(DiscoverRequest::default()).unwrap(),
        ),
        (
            "RegisterRequest",
            serde_json::to_value(RegisterRequest::default()).unwrap(),
        ),
    ] {
        assert_eq!(schema_properties(&d, name), keys(&wire), "{name}");
    }
    for (schema, field) in [
        ("DiscoverRequest", "skills"),
        ("DiscoverRequest", "input_modes"),
        ("DiscoverRequest", "output_modes"),
        ("DiscoverRequest", "bindings"),
        ("RegisterRequest", "agent_card"),
        ("AgentRecord", "agent_card"),
        ("Event", "card_etag"),
        ("AgentCardList", "cards"),
        ("AgentCardEntry", "etag"),
    ] {
        assert!(
            schema_properties(&d, schema).contains(&field.to_string()),
            "{schema}.{field} is not described"
        );
    }
    // The card answer documents its caching headers and the 304.
    let get = &d["paths"]["/v1/agents/{id}/agent-card.json"]["get"];
    for h in ["ETag", "Cache-Control", "x-registry-agent-status"] {
        assert!(
            get["responses"]["200"]["headers"].get(h).is_some(),
            "header {h}"
        );
    }
    assert!(get["responses"].get("304").is_some());
    // Writing a card needs what registering needs; the registry's own card
    // needs nothing.
    assert_eq!(
        d["paths"]["/v1/agents/{id}/agent-card"]["post"]["x-required-role"],
        d["paths"]["/v1/agents"]["post"]["x-required-role"]
    );
    assert!(d["paths"]["/.well-known/agent-card.json"]["get"]
        .get("security")
        .is_none());
}
