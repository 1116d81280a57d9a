//! The OpenAPI document served at `/openapi.json` stays valid JSON and
//! describes every public route the router serves.

use registry_types::VariantArray;
use serde_json::Value;

const DOC: &str = include_str!("../openapi.json");
const ROUTER_SOURCE: &str = include_str!("../src/lib.rs");

/// Every public route with its methods, as `router()` in `src/lib.rs` has them.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/agents", &["get", "post"]),
    ("/v1/agents/{id}", &["get", "delete"]),
    ("/v1/agents/{id}/status", &["put"]),
    ("/v1/agents/{id}/health", &["put"]),
    ("/v1/agents/{id}/heartbeat", &["post"]),
    ("/agents/{id}/heartbeat", &["post"]),
    ("/v1/heartbeats", &["post"]),
    ("/v1/capabilities/search", &["get"]),
    ("/v1/stats", &["get"]),
    ("/v1/cluster", &["get"]),
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
    serde_json::from_str(DOC).expect("openapi.json is valid JSON")
}

/// The path literal of every `.route("...", ...)` call in the router source.
fn router_paths() -> Vec<String> {
    ROUTER_SOURCE
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

#[test]
fn document_is_openapi_3_0_3() {
    let d = doc();
    assert_eq!(d["openapi"], "3.0.3");
    assert!(d["info"]["title"].is_string());
    assert!(d["paths"].is_object());
    assert!(d["components"]["schemas"].is_object());
    // The embedded copy is the same file.
    assert_eq!(agent_registry::openapi::OPENAPI_JSON, DOC);
}

#[test]
fn every_public_route_is_documented_with_its_methods() {
    let d = doc();
    let paths = d["paths"].as_object().expect("paths is an object");
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("openapi.json does not document {path}"));
        for m in *methods {
            assert!(
                item.get(*m).is_some(),
                "openapi.json does not document {} {path}",
                m.to_uppercase()
            );
        }
        for m in METHODS.iter().filter(|m| !methods.contains(m)) {
            assert!(
                item.get(*m).is_none(),
                "openapi.json documents {} {path}, which the router does not serve",
                m.to_uppercase()
            );
        }
    }
    for path in paths.keys() {
        assert!(
            ROUTES.iter().any(|(p, _)| p == path),
            "openapi.json documents {path}, which is not a public route"
        );
    }
}

#[test]
fn the_route_list_matches_the_router_source() {
    let found = router_paths();
    assert!(found.len() >= ROUTES.len(), "parsed routes: {found:?}");
    for path in found.iter().filter(|p| !p.starts_with("/internal/")) {
        assert!(
            ROUTES.iter().any(|(p, _)| p == path),
            "the router serves {path}: add it to ROUTES here and to openapi.json"
        );
    }
    for (path, _) in ROUTES {
        assert!(
            found.iter().any(|p| p == path),
            "{path} is listed here but the router no longer serves it"
        );
    }
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

#[test]
fn error_codes_match_the_wire_enum() {
    use registry_types::ErrorCode::*;
    let all = [
        InvalidJson,
        InvalidArgument,
        PayloadTooLarge,
        UnsupportedMediaType,
        AgentNotFound,
        NotFound,
        MethodNotAllowed,
        AlreadyExists,
        RevisionMismatch,
        NoLeader,
        Unavailable,
        Timeout,
        RevisionCompacted,
        Internal,
        NoAgentAvailable,
        PolicyNotFound,
    ];
    // A new variant fails to compile here: add it to `all` and openapi.json.
    for code in all {
        match code {
            InvalidJson | InvalidArgument | PayloadTooLarge | UnsupportedMediaType
            | AgentNotFound | NotFound | MethodNotAllowed | AlreadyExists | RevisionMismatch
            | NoLeader | Unavailable | Timeout | RevisionCompacted | Internal
            | NoAgentAvailable | PolicyNotFound => {}
        }
    }
    let d = doc();
    let documented: Vec<&str> = d["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(documented.len(), all.len());
    for code in all {
        assert!(
            documented.contains(&code.into_str()),
            "{} missing",
            code.into_str()
        );
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
    let reportable: Vec<&str> = d["components"]["schemas"]["ReportableStatus"]["enum"]
        .as_array()
        .expect("ReportableStatus enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let wire: Vec<&str> = registry_types::AgentStatus::VARIANTS
        .iter()
        .filter(|s| s.is_agent_reportable())
        .map(|s| s.into_str())
        .collect();
    assert_eq!(reportable, wire);
}

/// The property names of a documented object schema, following `allOf`.
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
