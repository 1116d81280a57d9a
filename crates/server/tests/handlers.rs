//! Handler-level cases on an in-process node (`router(state).oneshot(..)`):
//! routing, the parts each handler draws from the router's state, and the
//! core errors as the edge answers them. Stories that need processes
//! (crashes, restarts, partitions) live in the other test files.

mod common;

use reqwest::Method;
use serde_json::json;

use common::inprocess::InProcess;

fn agent(id: &str, load: f64) -> serde_json::Value {
    json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://127.0.0.1:9/{id}"),
        "capabilities": [{"name": "summarize"}],
        "load_factor": load,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reads_back_through_every_view() {
    let n = InProcess::start(&[]).await;
    let created = n
        .send_json(Method::POST, "/v1/agents", &agent("a-1", 0.1))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let revision = created.json()["revision"].as_u64().expect("revision");
    assert!(revision > 0);

    let got = n.send(Method::GET, "/v1/agents/a-1", None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json()["agent"]["endpoint"], "http://127.0.0.1:9/a-1");
    let stamped: u64 = got
        .header("x-registry-revision")
        .expect("every answer carries the revision")
        .parse()
        .expect("a number");
    assert!(stamped >= revision);

    let legacy = n.send(Method::GET, "/agents/a-1", None).await;
    assert_eq!(legacy.status, 200, "{}", legacy.text);
    assert_eq!(legacy.json()["base_url"], "http://127.0.0.1:9/a-1");

    let stale = n
        .send(Method::GET, "/v1/agents/a-1?consistency=stale", None)
        .await;
    assert_eq!(stale.status, 200, "{}", stale.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_parameters_are_refused_with_their_codes() {
    let n = InProcess::start(&[]).await;
    let cases = [
        (Method::GET, "/v1/nowhere", 404, "not_found", None),
        (Method::PATCH, "/v1/agents", 405, "method_not_allowed", None),
        (
            Method::GET,
            "/v1/agents?limit=0",
            400,
            "invalid_argument",
            Some("limit"),
        ),
        (
            Method::GET,
            "/v1/agents?consistency=eventual",
            400,
            "invalid_argument",
            Some("consistency"),
        ),
        (
            Method::GET,
            "/v1/agents/a-1?min_revision=x",
            400,
            "invalid_argument",
            Some("min_revision"),
        ),
        (
            Method::POST,
            "/v1/agents/nobody/heartbeat",
            404,
            "agent_not_found",
            None,
        ),
    ];
    for (method, path, status, code, field) in cases {
        let r = n.send(method.clone(), path, None).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        let body = r.json();
        assert_eq!(body["error"]["code"], code, "{method} {path}");
        assert_eq!(
            body["error"]["field"].as_str(),
            field,
            "{method} {path}: {}",
            r.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_to_node_routes_refuse_bodies_of_another_format() {
    let n = InProcess::start(&[]).await;
    // JSON is not this release's node-to-node format.
    let r = n.send(Method::POST, "/internal/forward", Some("{}")).await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_the_liveness_of_the_leader() {
    let n = InProcess::start(&[]).await;
    let r = n
        .send_json(Method::POST, "/v1/agents", &agent("beat-1", 0.2))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A leader takes beats once its quorum tracker and liveness task run
    // for this term; until then it answers 503 (retryable).
    let beat = common::wait_until("the leader takes heartbeats", || async {
        let r = n
            .send(
                Method::POST,
                "/v1/agents/beat-1/heartbeat",
                Some(r#"{"load_factor": 0.4}"#),
            )
            .await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("HTTP {}: {}", r.status, r.text))
        }
    })
    .await;
    let body = beat.json();
    assert_eq!(body["agent_id"], "beat-1");
    assert_eq!(body["status"], "active");
    assert!(body["next_heartbeat_ms"].as_u64().expect("pacing") > 0);
    assert!(n
        .state
        .liveness
        .leases
        .last_seen(&registry_types::AgentId::parse("beat-1").unwrap())
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_round_robin_visits_every_agent_in_turn() {
    let n = InProcess::start(&[]).await;
    for i in 0..3 {
        let r = n
            .send_json(Method::POST, "/v1/agents", &agent(&format!("rr-{i}"), 0.1))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = n
            .send(
                Method::GET,
                "/v1/select?capability=summarize&strategy=round_robin",
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.push(r.json()["agent_id"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["rr-0", "rr-1", "rr-2", "rr-0", "rr-1", "rr-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_discovery_requests_not_yet_reported() {
    let n = InProcess::start(&[]).await;
    let r = n
        .send_json(Method::POST, "/v1/agents", &agent("s-1", 0.1))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let count = || async {
        n.send(Method::GET, "/v1/stats", None).await.json()["discovery_requests"]
            .as_u64()
            .expect("a count")
    };
    assert_eq!(count().await, 0, "nothing read yet");
    for path in ["/v1/agents/s-1", "/v1/agents", "/agents", "/health/s-1"] {
        let r = n.send(Method::GET, path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    // Reported or not yet, each read counts once: the total is the
    // replicated count plus this node's unreported ones (a report in
    // flight is in neither for a moment, hence the wait).
    common::wait_until("four discovery requests counted", || async {
        match count().await {
            4 => Ok(()),
            n => Err(format!("{n} counted")),
        }
    })
    .await;
}
