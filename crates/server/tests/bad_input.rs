//! Bad input over real HTTP against real nodes.
//!
//! - `bad_input_is_refused_and_changes_nothing`: a 3-node cluster; every bad
//!   request of [`cases`] is sent through a follower and through the leader.
//!   Each must get its 4xx status and a JSON error body with the expected
//!   code (and field), never a 5xx, and must leave the registry as it was:
//!   stats revision and agent count, and the targeted agent's record.
//! - `legacy_routes_answer_in_their_old_shapes`: one node; the routes existing
//!   agent code calls.
//! - `no_quorum_writes_and_default_reads_get_503`: one node of a 3-node
//!   initial cluster, alone: no leader can be elected.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{send, send_with_headers, wait_until, Cluster, Reply};

/// The agent that bad requests aim at; it must come out of each unchanged.
const TARGET: &str = "target-1";

/// A valid registration of `id`, with `extra` fields merged in (and so
/// overriding the valid ones).
fn registration(id: &str, extra: Value) -> Value {
    let mut v = json!({
        "agent_id": id,
        "name": "Target",
        "endpoint": "http://target:9000",
        "capabilities": [{"name": "summarize", "tags": ["nlp"]}],
        "tags": ["t"],
        "ttl_seconds": 3600,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
        base.extend(extra);
    }
    v
}

async fn get(http: &reqwest::Client, url: &str) -> Reply {
    send(http, Method::GET, url, None).await.expect("GET")
}

async fn post(http: &reqwest::Client, url: &str, v: Value) -> Reply {
    let body = serde_json::to_vec(&v).expect("encode");
    send(http, Method::POST, url, Some(body))
        .await
        .expect("POST")
}

async fn delete(http: &reqwest::Client, url: &str) -> Reply {
    send(http, Method::DELETE, url, None).await.expect("DELETE")
}

/// Checks the status and the error shape `{"error": {"code", "message",
/// "field"?, "retryable"}}`, and that the `x-registry-*` headers are there.
fn assert_error(what: &str, r: &Reply, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(
        r.status, status,
        "{what}: expected HTTP {status} {code}, got {}: {}",
        r.status, r.text
    );
    let v: Value = serde_json::from_str(&r.text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {:?}", r.text));
    let err = &v["error"];
    assert_eq!(err["code"], code, "{what}: {v}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {v}"
    );
    match field {
        Some("") => assert!(err.get("field").is_none(), "{what}: no field expected: {v}"),
        Some(field) => assert_eq!(err["field"], field, "{what}: field: {v}"),
        None => {}
    }
    let retryable = matches!(
        code,
        "no_leader" | "unavailable" | "too_many_watchers" | "timeout"
    );
    assert_eq!(err["retryable"], retryable, "{what}: retryable: {v}");
    for h in [
        "x-registry-revision",
        "x-registry-node",
        "x-registry-leader",
        "x-registry-last-contact-ms",
    ] {
        assert!(r.header(h).is_some(), "{what}: header {h} missing");
    }
}

/// The answer a bad request must get.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// 400 `invalid_argument` naming this field.
    Field(&'static str),
    /// 400 `invalid_argument` for a body of the wrong JSON type as a whole
    /// (no field to name).
    WrongType,
    /// 400 `invalid_json`.
    Malformed,
    /// Any other status and code.
    Error(u16, &'static str),
}

impl Want {
    fn parts(self) -> (u16, &'static str, Option<&'static str>) {
        match self {
            Want::Field(f) => (400, "invalid_argument", Some(f)),
            Want::WrongType => (400, "invalid_argument", Some("")),
            Want::Malformed => (400, "invalid_json", None),
            Want::Error(status, code) => (status, code, None),
        }
    }
}

/// One bad request.
struct Case {
    what: String,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    /// Extra request headers.
    headers: Vec<(&'static str, String)>,
    want: Want,
}

fn case(what: &str, method: Method, path: &str, body: Option<Value>, want: Want) -> Case {
    Case {
        what: what.to_string(),
        method,
        path: path.to_string(),
        body: body.map(|v| serde_json::to_vec(&v).expect("encode")),
        headers: Vec::new(),
        want,
    }
}

/// `GET path` with one request header.
fn get_with(what: &str, path: &str, header: (&'static str, &str), want: Want) -> Case {
    Case {
        headers: vec![(header.0, header.1.to_string())],
        ..case(what, Method::GET, path, None, want)
    }
}

/// `POST /v1/agents` with a raw body.
fn post_raw(what: &str, body: &str, want: Want) -> Case {
    Case {
        what: what.to_string(),
        method: Method::POST,
        path: "/v1/agents".to_string(),
        body: Some(body.as_bytes().to_vec()),
        headers: Vec::new(),
        want,
    }
}

/// A valid A2A 1.0 card with three skills; `f` breaks it.
fn card_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut card = json!({
        "name": "Target", "description": "d", "version": "1",
        "supportedInterfaces": [
            {"url": "https://target.example.com/a2a", "protocolBinding": "JSONRPC",
             "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [
            {"id": "a", "name": "A", "description": "a", "tags": ["x"]},
            {"id": "b", "name": "B", "description": "b", "tags": ["x"]},
            {"id": "c", "name": "C", "description": "c", "tags": ["x"]}
        ]
    });
    f(&mut card);
    card
}

/// `POST /v1/agents` of the target's registration with `extra` merged in.
fn register(what: &str, extra: Value, want: Want) -> Case {
    let body = registration(TARGET, extra);
    case(what, Method::POST, "/v1/agents", Some(body), want)
}

/// Every bad request, each aimed at [`TARGET`] or at an agent that does not
/// exist.
// A table, one case per line: rustfmt would spread each over five.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Method as M;
    use Want::*;
    let nope = "/v1/agents/no-such-agent";
    let status = format!("/v1/agents/{TARGET}/status");
    let health = format!("/v1/agents/{TARGET}/health");
    let oversized = format!(
        r#"{{"agent_id": "{TARGET}", "name": "x", "endpoint": "http://e", "description": "{}"}}"#,
        // Over --max-body-bytes plus --max-card-bytes (a registration may
        // carry a card), 64 KiB each by default.
        "d".repeat(129 * 1024)
    );
    let caps_129: Vec<Value> = (0..129).map(|i| json!({"name": format!("c{i}")})).collect();
    let tags_65: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let absent = registration("never-registered", json!({"expected_revision": 3}));

    let mut c = vec![
        // Malformed JSON, values of the wrong type.
        post_raw("truncated JSON", r#"{"name": "x","#, Malformed),
        post_raw("not JSON", "name=x", Malformed),
        post_raw("empty body", "", Malformed),
        post_raw("a JSON array", "[1, 2]", WrongType),
        post_raw("body over 128 KiB", &oversized, Error(413, "payload_too_large")),
        register("name is a number", json!({"name": 5}), Field("name")),
        register("capabilities not a list", json!({"capabilities": "x"}), Field("capabilities")),
        register("a capability is a string", json!({"capabilities": ["x"]}), Field("capabilities[0]")),
        register("health_score is a string", json!({"health_score": "high"}), Field("health_score")),
        register("tags is a string", json!({"tags": "t"}), Field("tags")),
        register("ttl_seconds negative", json!({"ttl_seconds": -5}), Field("ttl_seconds")),
        register("if_absent is a string", json!({"if_absent": "yes"}), Field("if_absent")),
        register("cost an object", json!({"capabilities": [{"name": "c", "cost_estimate": {}}]}),
                 Field("capabilities[0].cost_estimate")),
        register("cost a list", json!({"capabilities": [{"name": "c", "cost_estimate": [1]}]}),
                 Field("capabilities[0].cost_estimate")),
        register("cost text over 256 bytes",
                 json!({"capabilities": [{"name": "c", "cost_estimate": "x".repeat(257)}]}),
                 Field("capabilities[0].cost_estimate")),
        register("parameters a list", json!({"capabilities": [{"name": "c", "parameters": [1]}]}),
                 Field("capabilities[0].parameters")),
        register("parameters over 16 KiB",
                 json!({"capabilities": [{"name": "c", "parameters": {"k": "x".repeat(17 * 1024)}}]}),
                 Field("capabilities[0].parameters")),
        register("second capability's name a number",
                 json!({"capabilities": [{"name": "a"}, {"name": 5}]}), Field("capabilities[1].name")),
        // The legacy routes: the same errors, named as their bodies name fields.
        case("legacy cost an object", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": "x", "base_url": "http://x",
                         "capabilities": [{"name": "c", "cost_estimate": {"tokens": 1}}]})),
             Field("capabilities[0].cost_estimate")),
        case("legacy agent_name a number", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": 5, "base_url": "http://x"})),
             Field("agent_name")),
        case("legacy missing base_url", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": "x"})), Field("base_url")),
        case("legacy missing agent_id", M::POST, "/register",
             Some(json!({"agent_name": "x", "base_url": "http://x"})), Field("agent_id")),
        case("legacy register as suspended", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": "x", "base_url": "http://x",
                         "status": "suspended"})), Field("status")),
        case("legacy metadata a list", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": "x", "base_url": "http://x",
                         "metadata": [1]})), Field("metadata")),
        case("host-port port a string", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "host": "h", "port": "x"})), Field("port")),
        case("host-port port 70000", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "host": "h", "port": 70000})), Field("port")),
        case("host-port missing host", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "port": 80})), Field("host")),
        case("host-port host with a path", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "host": "h/x", "port": 80})), Field("host")),
        case("host-port ttl 1", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "host": "h", "port": 80, "ttl_seconds": 1})),
             Field("ttl_seconds")),
        case("host-port agent_name over 512 bytes", M::POST, "/agents/register",
             Some(json!({"agent_id": TARGET, "agent_name": "n".repeat(513), "host": "h", "port": 80})),
             Field("agent_name")),
        // Missing fields, values out of bounds.
        case("missing name", M::POST, "/v1/agents",
             Some(json!({"agent_id": TARGET, "endpoint": "http://x"})), Field("name")),
        case("missing endpoint", M::POST, "/v1/agents",
             Some(json!({"agent_id": TARGET, "name": "x"})), Field("endpoint")),
        register("blank name", json!({"name": "  "}), Field("name")),
        register("blank endpoint", json!({"endpoint": " "}), Field("endpoint")),
        register("name over 512 bytes", json!({"name": "n".repeat(513)}), Field("name")),
        register("empty agent_id", json!({"agent_id": ""}), Field("agent_id")),
        register("129 capabilities", json!({"capabilities": caps_129}), Field("capabilities")),
        register("65 tags", json!({"tags": tags_65}), Field("tags")),
        register("metadata over 16 KiB", json!({"metadata": {"k": "x".repeat(17 * 1024)}}),
                 Field("metadata")),
        register("metadata a list", json!({"metadata": [1]}), Field("metadata")),
        register("metadata a string", json!({"metadata": "m"}), Field("metadata")),
        register("metadata a number", json!({"metadata": 5}), Field("metadata")),
        register("capability without a name", json!({"capabilities": [{"name": " "}]}),
                 Field("capabilities[0]")),
        register("negative cost", json!({"capabilities": [{"name": "c", "cost_estimate": -1.0}]}),
                 Field("capabilities[0].cost_estimate")),
        register("health_score 1.5", json!({"health_score": 1.5}), Field("health_score")),
        register("health_score -0.1", json!({"health_score": -0.1}), Field("health_score")),
        register("load_factor 2", json!({"load_factor": 2.0}), Field("load_factor")),
        register("load_factor -1", json!({"load_factor": -1.0}), Field("load_factor")),
        register("unknown status", json!({"status": "sleeping"}), Field("status")),
        register("register as offline", json!({"status": "offline"}), Field("status")),
        register("register as suspended", json!({"status": "suspended"}), Field("status")),
        register("ttl_seconds 1", json!({"ttl_seconds": 1}), Field("ttl_seconds")),
        register("ttl_seconds 0", json!({"ttl_seconds": 0}), Field("ttl_seconds")),
        register("offline before the ttl", json!({"ttl_seconds": 60, "offline_after_seconds": 30}),
                 Field("offline_after_seconds")),
        register("removal before offline",
                 json!({"ttl_seconds": 60, "offline_after_seconds": 120,
                        "deregister_after_seconds": 90}),
                 Field("deregister_after_seconds")),
        // Conditional registrations.
        register("if_absent on an existing id", json!({"if_absent": true}),
                 Error(409, "already_exists")),
        register("expected_revision mismatch", json!({"expected_revision": 999_999}),
                 Error(409, "revision_mismatch")),
        case("expected_revision of an absent agent", M::POST, "/v1/agents", Some(absent),
             Error(409, "revision_mismatch")),
        // Status and health updates of the target.
        case("unknown status", M::PUT, &status, Some(json!({"status": "sleeping"})),
             Field("status")),
        case("status a number", M::PUT, &status, Some(json!({"status": 5})), Field("status")),
        case("status missing", M::PUT, &status, Some(json!({})), Field("status")),
        case("health_score 1.01", M::PUT, &health, Some(json!({"health_score": 1.01})),
             Field("health_score")),
        case("health_score -0.5", M::PUT, &health, Some(json!({"health_score": -0.5})),
             Field("health_score")),
        case("load_factor 7", M::PUT, &health, Some(json!({"load_factor": 7.0})),
             Field("load_factor")),
        case("load_factor -0.01", M::PUT, &health, Some(json!({"load_factor": -0.01})),
             Field("load_factor")),
        case("empty health update", M::PUT, &health, Some(json!({})), Field("health_score")),
        case("health_score a string", M::PUT, &health, Some(json!({"health_score": "high"})),
             Field("health_score")),
        Case { what: "status body not JSON".into(), method: M::PUT, path: status.clone(),
               body: Some(b"suspended".to_vec()), headers: Vec::new(), want: Malformed },
        // Ids that are path segments: `/v1/agents/..` could not name them.
        register("agent_id '.'", json!({"agent_id": "."}), Field("agent_id")),
        register("agent_id '..'", json!({"agent_id": ".."}), Field("agent_id")),
        case("legacy agent_id '..'", M::POST, "/register",
             Some(json!({"agent_id": "..", "agent_name": "x", "base_url": "http://x"})),
             Field("agent_id")),
        case("host-port agent_id '.'", M::POST, "/agents/register",
             Some(json!({"agent_id": ".", "host": "h", "port": 80})), Field("agent_id")),
        // Endpoints: absolute URLs of http, https, grpc, grpcs, ws or wss.
        register("endpoint javascript:", json!({"endpoint": "javascript:alert(1)"}),
                 Field("endpoint")),
        register("endpoint not a URL", json!({"endpoint": "e"}), Field("endpoint")),
        register("endpoint relative", json!({"endpoint": "/a2a"}), Field("endpoint")),
        register("endpoint file:", json!({"endpoint": "file:///etc/passwd"}), Field("endpoint")),
        register("endpoint ftp:", json!({"endpoint": "ftp://h/x"}), Field("endpoint")),
        register("endpoint without a host", json!({"endpoint": "grpc:svc"}), Field("endpoint")),
        case("legacy base_url javascript:", M::POST, "/register",
             Some(json!({"agent_id": TARGET, "agent_name": "x",
                         "base_url": "javascript:alert(1)"})),
             Field("base_url")),
        // A2A cards: the JSON path of the problem, under `agent_card` in a
        // registration; the card's own path when the body is the card.
        register("card skill without an id",
                 json!({"agent_card": card_with(|c| { c["skills"][2].as_object_mut().unwrap().remove("id"); })}),
                 Field("agent_card.skills[2].id")),
        register("card interface url relative",
                 json!({"agent_card": card_with(|c| c["supportedInterfaces"][0]["url"] = json!("/a2a"))}),
                 Field("agent_card.supportedInterfaces[0].url")),
        register("card interface url ftp:",
                 json!({"agent_card": card_with(|c| c["supportedInterfaces"][0]["url"] = json!("ftp://h/x"))}),
                 Field("agent_card.supportedInterfaces[0].url")),
        register("card duplicate skill ids",
                 json!({"agent_card": card_with(|c| c["skills"][1]["id"] = json!("a"))}),
                 Field("agent_card.skills[1].id")),
        register("card without interfaces",
                 json!({"agent_card": card_with(|c| { c.as_object_mut().unwrap().remove("supportedInterfaces"); })}),
                 Field("agent_card.supportedInterfaces")),
        register("card a list", json!({"agent_card": [1]}), Field("agent_card")),
        register("card skill tags a string",
                 json!({"agent_card": card_with(|c| c["skills"][0]["tags"] = json!("x"))}),
                 Field("agent_card.skills[0].tags")),
        register("0.3 card url not a URL",
                 json!({"agent_card": card_with(|c| {
                     c.as_object_mut().unwrap().remove("supportedInterfaces");
                     c["url"] = json!("not a url");
                 })}),
                 Field("agent_card.url")),
        register("card over 64 KiB",
                 json!({"agent_card": card_with(|c| c["x-pad"] = json!("p".repeat(65 * 1024)))}),
                 Error(413, "payload_too_large")),
        case("card replaced by a bad one", M::POST, &format!("/v1/agents/{TARGET}/agent-card"),
             Some(card_with(|c| c["skills"][0]["name"] = json!(" "))), Field("skills[0].name")),
        case("card replaced by one over 64 KiB", M::POST, &format!("/v1/agents/{TARGET}/agent-card"),
             Some(card_with(|c| c["x-pad"] = json!("p".repeat(65 * 1024)))),
             Error(413, "payload_too_large")),
        case("card of an absent agent", M::POST, "/v1/agents/no-such-agent/agent-card",
             Some(card_with(|_| {})), Error(404, "agent_not_found")),
        case("card of an agent without one", M::GET, &format!("/v1/agents/{TARGET}/agent-card.json"),
             None, Error(404, "not_found")),
        case("discover a blank skill", M::POST, "/v1/discover", Some(json!({"skills": [" "]})),
             Field("skills[0]")),
        case("card list limit 0", M::GET, "/v1/agent-cards?limit=0", None, Field("limit")),
        // Starting points beyond the registry: no wrap to 0.
        get_with("Last-Event-ID u64::MAX", "/v1/events",
                 ("Last-Event-ID", "18446744073709551615"), Field("Last-Event-ID")),
        get_with("Last-Event-ID u64::MAX, long poll", "/v1/events?wait=0ms",
                 ("Last-Event-ID", "18446744073709551615"), Field("Last-Event-ID")),
        get_with("Last-Event-ID beyond u64", "/v1/events",
                 ("Last-Event-ID", "18446744073709551616"), Field("Last-Event-ID")),
        get_with("Last-Event-ID not a number", "/v1/events",
                 ("Last-Event-ID", "x"), Field("Last-Event-ID")),
        get_with("Last-Event-ID a billion ahead", "/v1/events?wait=0ms",
                 ("Last-Event-ID", "1000000000"), Field("Last-Event-ID")),
        case("from_revision u64::MAX", M::GET, "/v1/events?from_revision=18446744073709551615",
             None, Field("from_revision")),
        case("from_revision a billion ahead", M::GET,
             "/v1/events?wait=0ms&from_revision=1000000000", None, Field("from_revision")),
        // Unknown agents.
        case("get unknown", M::GET, nope, None, Error(404, "agent_not_found")),
        case("stale get unknown", M::GET, &format!("{nope}?consistency=stale"), None,
             Error(404, "agent_not_found")),
        case("legacy get unknown", M::GET, "/agents/no-such-agent", None,
             Error(404, "agent_not_found")),
        case("delete unknown", M::DELETE, nope, None, Error(404, "agent_not_found")),
        case("legacy delete unknown", M::DELETE, "/agents/no-such-agent", None,
             Error(404, "agent_not_found")),
        case("status of unknown", M::PUT, &format!("{nope}/status"),
             Some(json!({"status": "suspended"})), Error(404, "agent_not_found")),
        case("health of unknown", M::PUT, &format!("{nope}/health"),
             Some(json!({"health_score": 0.5})), Error(404, "agent_not_found")),
        case("liveness of unknown", M::GET, "/health/no-such-agent", None,
             Error(404, "agent_not_found")),
        // Unknown routes.
        case("unknown route", M::POST, "/v1/nothing", Some(json!({})), Error(404, "not_found")),
    ];

    // Ids outside [A-Za-z0-9._:-]{1,128}, in the body and in every path.
    let id129 = "a".repeat(129);
    let bad_ids: [(&str, &str, &str); 5] = [
        ("a space", "a b", "a%20b"),
        ("a slash", "a/b", "a%2Fb"),
        ("129 characters", &id129, &id129),
        ("non-ASCII", "agént", "ag%C3%A9nt"),
        ("a question mark", "a?b", "a%3Fb"),
    ];
    for (what, id, encoded) in bad_ids {
        let what = format!("id with {what}");
        let agent = format!("/v1/agents/{encoded}");
        let set_status = json!({"status": "suspended"});
        let set_health = json!({"health_score": 0.5});
        let body = registration(id, json!({}));
        c.extend([
            case(&what, M::POST, "/v1/agents", Some(body), Field("agent_id")),
            case(&what, M::GET, &agent, None, Field("agent_id")),
            case(&what, M::DELETE, &agent, None, Field("agent_id")),
            case(&what, M::PUT, &format!("{agent}/status"), Some(set_status), Field("agent_id")),
            case(&what, M::PUT, &format!("{agent}/health"), Some(set_health), Field("agent_id")),
            case(&what, M::GET, &format!("/health/{encoded}"), None, Field("agent_id")),
            case(&what, M::GET, &format!("/agents/{encoded}"), None, Field("agent_id")),
            case(&what, M::DELETE, &format!("/agents/{encoded}"), None, Field("agent_id")),
        ]);
    }

    // Query parameters.
    let long_q = format!("/v1/capabilities/search?q={}", "q".repeat(513));
    for (what, path, field) in [
        ("unknown status filter", "/v1/agents?status=sleeping", "status"),
        ("legacy unknown status filter", "/agents?status=sleeping", "status"),
        ("legacy include_dead not a bool", "/agents?include_dead=maybe", "include_dead"),
        ("legacy limit 0", "/agents?limit=0", "limit"),
        ("legacy search unknown status", "/capabilities/search?q=x&status=zzz", "status"),
        ("limit 0", "/v1/agents?limit=0", "limit"),
        ("limit 5000", "/v1/agents?limit=5000", "limit"),
        ("limit not a number", "/v1/agents?limit=ten", "limit"),
        ("limit negative", "/v1/agents?limit=-1", "limit"),
        ("unknown consistency", "/v1/agents?consistency=eventual", "consistency"),
        ("min_revision not a number", "/v1/stats?min_revision=soon", "min_revision"),
        ("search without q", "/v1/capabilities/search", "q"),
        ("search with an empty q", "/v1/capabilities/search?q=", "q"),
        ("search with a blank q", "/v1/capabilities/search?q=%20%20", "q"),
        ("search limit 0", "/v1/capabilities/search?q=summarize&limit=0", "limit"),
        ("search limit 5000", "/v1/capabilities/search?q=summarize&limit=5000", "limit"),
        ("search unknown status", "/v1/capabilities/search?q=x&status=zzz", "status"),
        ("legacy search without q", "/capabilities/search", "q"),
        ("q over 512 bytes", &long_q, "q"),
        ("capabilities limit 0", "/v1/capabilities?limit=0", "limit"),
        ("capabilities limit 5000", "/v1/capabilities?limit=5000", "limit"),
        ("capabilities limit not a number", "/v1/capabilities?limit=all", "limit"),
        ("runtimes limit 0", "/v1/runtimes?limit=0", "limit"),
        ("runtimes limit 5000", "/v1/runtimes?limit=5000", "limit"),
        ("runtimes limit negative", "/v1/runtimes?limit=-1", "limit"),
    ] {
        c.push(case(what, M::GET, path, None, Field(field)));
    }

    // A leadership handover to no voter, or said wrongly.
    for (what, body, want) in [
        ("handover to a non-voter", json!({"node_id": 99}), Field("node_id")),
        ("handover node_id a string", json!({"node_id": "two"}), Field("node_id")),
        ("handover node_id negative", json!({"node_id": -1}), Field("node_id")),
        ("handover body an array", json!([2]), WrongType),
    ] {
        c.push(case(what, M::POST, "/v1/cluster/leader", Some(body), want));
    }

    // Unknown routes, wrong methods.
    for path in ["/v2/agents", "/v1/agentz", "/v1/agents/a/b/c", "/", "/internal/nothing"] {
        c.push(case("unknown route", M::GET, path, None, Error(404, "not_found")));
    }
    for (method, path) in [
        (M::PATCH, "/v1/agents".to_string()),
        (M::PUT, "/v1/agents".to_string()),
        (M::DELETE, "/v1/stats".to_string()),
        (M::POST, format!("/v1/agents/{TARGET}")),
        (M::GET, status.clone()),
        (M::DELETE, health.clone()),
        (M::GET, "/register".to_string()),
        (M::POST, "/v1/cluster".to_string()),
    ] {
        c.push(case("wrong method", method, &path, None, Error(405, "method_not_allowed")));
    }
    c
}

/// What a bad request must not change.
#[derive(Debug, PartialEq)]
struct Observed {
    revision: u64,
    total_agents: u64,
    target: Value,
}

/// Reads the registry's revision, size and the target's record
/// (linearizably) through `node`. A linearizable read the node refuses as
/// retryable (a quorum not confirmed in time on a loaded machine: 503
/// `unavailable`) is asked again, as a client would; any other answer
/// but 200 fails.
async fn observe(http: &reqwest::Client, node: &str) -> Observed {
    let read = |url: String| async move {
        wait_until(&format!("a linearizable read of {url}"), || {
            let url = url.clone();
            async move {
                let r = get(http, &url).await;
                match r.status {
                    200 => Ok(r),
                    503 if r.json()["error"]["retryable"] == true => Err(r.text),
                    other => panic!("{url}: {other} {}", r.text),
                }
            }
        })
        .await
    };
    let stats = read(format!("{node}/v1/stats")).await.json();
    let target = read(format!("{node}/v1/agents/{TARGET}")).await;
    Observed {
        revision: stats["revision"].as_u64().expect("revision"),
        total_agents: stats["total_agents"].as_u64().expect("total_agents"),
        target: target.json()["agent"].clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    eprintln!("--- start a 3-node cluster and register the target agent");
    let c = Cluster::start(3, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = *c
        .ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let r = post(
        &c.http,
        &format!("{}/v1/agents", c.url(leader)),
        registration(TARGET, json!({})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    for (role, node) in [("follower", follower), ("leader", leader)] {
        let cases = cases();
        eprintln!(
            "--- {} bad requests through the {role} (node {node})",
            cases.len()
        );
        let base = c.url(node);
        for Case {
            what,
            method,
            path,
            body,
            headers,
            want,
        } in cases
        {
            let what = format!("{what}: {method} {path} via the {role}");
            let before = observe(&c.http, &c.url(leader)).await;
            let r = send_with_headers(&c.http, method, &format!("{base}{path}"), body, &headers)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let (status, code, field) = want.parts();
            assert_error(&what, &r, status, code, field);
            let after = observe(&c.http, &c.url(leader)).await;
            assert_eq!(before, after, "{what}: changed the registry");
        }
    }

    eprintln!("--- a registration at every limit is accepted");
    let edge_id: String = "Az09._:-".repeat(16);
    assert_eq!(edge_id.len(), 128);
    let caps: Vec<Value> = (0..128).map(|i| json!({"name": format!("c{i}")})).collect();
    let tags: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    let reg = registration(
        &edge_id,
        json!({"capabilities": caps, "tags": tags, "health_score": 1.0, "load_factor": 0.0,
               "metadata": {"k": "x".repeat(15 * 1024)}}),
    );
    let r = post(&c.http, &format!("{}/v1/agents", c.url(follower)), reg).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = get(&c.http, &format!("{}/v1/agents/{edge_id}", c.url(follower))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let caps = r.json()["agent"]["capabilities"].as_array().map(Vec::len);
    assert_eq!(caps, Some(128));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_routes_answer_in_their_old_shapes() {
    eprintln!("--- start one node");
    let c = Cluster::start(1, &[]).await;
    let base = c.url(1);
    let http = &c.http;
    let legacy = |id: &str, name: &str, cap: &str, cost: Value| {
        json!({
            "agent_id": id, "agent_name": name, "base_url": format!("http://{id}:8080"),
            "capabilities": [{"name": cap, "description": format!("{cap} things"),
                              "parameters": {"text": "str"},
                              "cost_estimate": cost, "tags": ["legacy"]}],
            "status": "active", "metadata": {"team": name},
        })
    };

    eprintln!("--- POST /register (Dev-Tools) answers registered with a timestamp");
    let one = legacy("legacy-1", "Legacy One", "translate", json!("~100 tokens"));
    let r = post(http, &format!("{base}/register"), one).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "registered");
    assert_eq!(v["agent_id"], "legacy-1");
    assert!(
        v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );

    eprintln!("--- POST /agents/register (configurable-agents) answers the agent");
    let two = json!({"agent_id": "legacy-2", "agent_name": "Legacy Two", "host": "10.1.2.3",
                     "port": 9100, "ttl_seconds": 60, "metadata": {"team": "a"}});
    let r = post(http, &format!("{base}/agents/register"), two).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = r.json();
    assert_eq!(
        (
            &a["agent_id"],
            &a["host"],
            &a["port"],
            &a["is_alive"],
            &a["ttl_seconds"]
        ),
        (
            &json!("legacy-2"),
            &json!("10.1.2.3"),
            &json!(9100),
            &json!(true),
            &json!(60)
        )
    );
    assert_eq!(a["endpoint"], "http://10.1.2.3:9100");
    assert_eq!(a["metadata"], json!({"team": "a"}));
    assert!(a["registered_at"].is_string() && a["last_heartbeat"].is_string());

    eprintln!("--- GET /agents is a JSON list; GET /agents/{{id}} one agent");
    let r = get(http, &format!("{base}/agents?status=active")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = r.json();
    let ids: Vec<&Value> = listed
        .as_array()
        .unwrap_or_else(|| panic!("not a bare list: {listed}"))
        .iter()
        .map(|a| &a["agent_id"])
        .collect();
    assert_eq!(ids, [&json!("legacy-1"), &json!("legacy-2")]);
    let r = get(http, &format!("{base}/agents?status=offline")).await;
    assert_eq!(r.json(), json!([]));
    let r = get(http, &format!("{base}/agents?include_dead=false&limit=1")).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    let r = get(http, &format!("{base}/agents/legacy-1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rec = r.json();
    assert!(rec.get("agent").is_none(), "not wrapped: {rec}");
    assert_eq!(
        (
            &rec["agent_id"],
            &rec["agent_name"],
            &rec["base_url"],
            &rec["status"]
        ),
        (
            &json!("legacy-1"),
            &json!("Legacy One"),
            &json!("http://legacy-1:8080"),
            &json!("active")
        )
    );
    assert_eq!(rec["capabilities"][0]["cost_estimate"], "~100 tokens");
    assert_eq!(rec["capabilities"][0]["parameters"], json!({"text": "str"}));
    assert_eq!(rec["metadata"], json!({"team": "Legacy One"}));
    assert_eq!(rec["created_at"], rec["registered_at"]);
    assert_eq!(rec["ttl_seconds"], 60, "the Dev-Tools registry's 60 s");

    eprintln!("--- POST /agents/{{id}}/heartbeat answers ok with the time");
    let r = post(
        http,
        &format!("{base}/agents/legacy-1/heartbeat"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.json()["last_heartbeat"].is_string());
    let r = post(http, &format!("{base}/agents/nobody/heartbeat"), json!({})).await;
    assert_error("heartbeat of unknown", &r, 404, "agent_not_found", None);

    eprintln!("--- GET /capabilities/search?q= : one item per matching capability");
    let r = get(http, &format!("{base}/capabilities/search?q=translate")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hits = r.json();
    let hits = hits
        .as_array()
        .unwrap_or_else(|| panic!("not a bare list: {hits}"));
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit["agent_id"], "legacy-1");
    assert_eq!(hit["agent_name"], "Legacy One");
    assert_eq!(hit["capability"], "translate");
    assert_eq!(hit["description"], "translate things");
    assert_eq!(hit["base_url"], "http://legacy-1:8080");
    assert_eq!(hit["tags"], json!(["legacy"]));
    assert_eq!(hit["status"], "active");
    assert_eq!(hit["cost_estimate"], "~100 tokens");

    eprintln!("--- a busy agent is not found by the legacy search");
    let mut busy = legacy("legacy-3", "Legacy Three", "translate", json!(2));
    busy["status"] = json!("busy");
    let r = post(http, &format!("{base}/register"), busy).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(http, &format!("{base}/capabilities/search?q=TRANSL")).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.text);
    let r = get(
        http,
        &format!("{base}/capabilities/search?q=translate&status=busy"),
    )
    .await;
    assert_eq!(r.json()[0]["cost_estimate"], 2);

    eprintln!("--- GET /health/{{id}} and GET /stats");
    let r = get(http, &format!("{base}/health/legacy-1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = r.json();
    assert_eq!(
        (&h["status"], &h["is_healthy"], &h["agent_name"]),
        (&json!("healthy"), &json!(true), &json!("Legacy One"))
    );
    assert!(h["seconds_since_heartbeat"].is_u64(), "{h}");
    let r = get(http, &format!("{base}/stats")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let stats = r.json();
    assert_eq!(stats["active_agents"], 2, "{stats}");
    assert_eq!(stats["offline_agents"], 0, "{stats}");
    assert_eq!(stats["total_capabilities"], 2, "{stats}");
    assert_eq!(stats["total_agents"], 3, "{stats}");
    assert_eq!(stats["registered_agents"], 3, "{stats}");
    assert_eq!(stats["capabilities_distribution"], json!({"translate": 2}));
    assert_eq!(stats["health_distribution"]["0.8-1.0"], 3, "{stats}");
    assert!(
        stats["service_discovery_requests"].as_u64() > Some(5),
        "{stats}"
    );

    eprintln!("--- DELETE /agents/{{id}} answers deleted; a second one 404");
    let r = delete(http, &format!("{base}/agents/legacy-2")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (&r.json()["status"], &r.json()["agent_id"]),
        (&json!("deleted"), &json!("legacy-2"))
    );
    let r = delete(http, &format!("{base}/agents/legacy-2")).await;
    assert_error("deleted twice", &r, 404, "agent_not_found", None);
    let r = get(http, &format!("{base}/agents/legacy-2")).await;
    assert_error("deleted agent", &r, 404, "agent_not_found", None);
    let r = get(http, &format!("{base}/stats")).await;
    assert_eq!(r.json()["total_agents"], 2);

    eprintln!("--- GET /openapi.json");
    let r = get(http, &format!("{base}/openapi.json")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_writes_and_default_reads_get_503() {
    eprintln!("--- start node 1 of a 3-node cluster, alone: no quorum");
    let timeouts = ["--write-timeout-ms", "1500", "--read-timeout-ms", "1500"];
    let mut c = Cluster::new(3, &timeouts);
    c.start_node(1);
    let base = c.url(1);
    let http = &c.http;
    wait_until("node 1 to serve HTTP", || async {
        let r = send(http, Method::GET, &format!("{base}/health/live"), None).await?;
        match r.status {
            200 => Ok(()),
            s => Err(format!("HTTP {s}")),
        }
    })
    .await;

    eprintln!("--- a write gets 503 no_leader with Retry-After");
    let r = post(
        http,
        &format!("{base}/v1/agents"),
        registration("lonely", json!({})),
    )
    .await;
    assert_error("write without quorum", &r, 503, "no_leader", None);
    let retry_after = r.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After in seconds expected: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-registry-leader"),
        Some(""),
        "no leader is known"
    );
    let r = delete(http, &format!("{base}/v1/agents/lonely")).await;
    assert_error("delete without quorum", &r, 503, "no_leader", None);
    assert!(r.header("retry-after").is_some());

    eprintln!("--- default reads get 503; stale reads answer");
    for path in [
        "/v1/stats",
        "/v1/agents",
        "/v1/agents/lonely",
        "/v1/capabilities/search?q=x",
    ] {
        let r = get(http, &format!("{base}{path}")).await;
        assert_error(&format!("linearizable {path}"), &r, 503, "no_leader", None);
        assert!(r.header("retry-after").is_some(), "{path}: no Retry-After");
    }
    let r = get(http, &format!("{base}/v1/stats?consistency=stale")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total_agents"], 0);
    let r = get(http, &format!("{base}/v1/agents?consistency=stale")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["agents"], json!([]));
    let r = get(http, &format!("{base}/v1/agents/lonely?consistency=stale")).await;
    assert_error("stale get without quorum", &r, 404, "agent_not_found", None);
    let r = get(http, &format!("{base}/health/ready")).await;
    assert_eq!(r.status, 503, "not ready without a leader: {}", r.text);
    assert_eq!(r.json()["status"], "not_ready");

    eprintln!("--- the typed client reports no_leader after trying");
    let client = registry_client::Client::builder(vec![base.clone()])
        .max_attempts(2)
        .build()
        .expect("client");
    let req = serde_json::from_value(registration("lonely", json!({}))).expect("request");
    let err = client.register(&req).await.expect_err("no quorum");
    assert_eq!(
        err.code(),
        Some(registry_client::types::ErrorCode::NoLeader),
        "{err}"
    );
    assert!(err.is_retryable(), "{err}");
}
