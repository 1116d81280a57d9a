//! Fail-over behaviour against fake registry nodes: tiny axum servers bound to
//! 127.0.0.1:0, each answering one canned way and counting its hits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use registry_client::types::api::{
    BatchHeartbeatItem, BatchHeartbeatRequest, HeartbeatRequest, ListFilter, RegisterRequest,
};
use registry_client::types::{AgentStatus, ErrorCode};
use registry_client::{Client, ClientError, ReadOptions};
use serde_json::{json, Value};

/// Serves `router` on an ephemeral port until the test's runtime ends.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// An address nothing listens on: bound, then released.
async fn dead_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A JSON answer carrying the registry headers, as every real node sends.
fn answer(status: StatusCode, body: Value, revision: u64, node: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-registry-revision", HeaderValue::from(revision));
    headers.insert("x-registry-node", HeaderValue::from_str(node).unwrap());
    headers.insert("x-registry-leader", HeaderValue::from_static("1"));
    headers.insert("x-registry-last-contact-ms", HeaderValue::from_static("7"));
    (status, headers, axum::Json(body)).into_response()
}

fn error_json(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "retryable": code == "no_leader"}})
}

fn agent_json(id: &str, revision: u64) -> Value {
    json!({
        "agent_id": id, "name": format!("agent {id}"), "endpoint": "http://agent:9000",
        "status": "active", "health_score": 1.0, "load_factor": 0.0,
        "ttl_seconds": 30, "offline_after_seconds": 120, "deregister_after_seconds": 0,
        "registered_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z",
        "last_heartbeat": "2024-01-01T00:00:00.000Z",
        "create_revision": revision, "revision": revision, "epoch": revision
    })
}

/// A node that answers every request with `status` and `body`, counting hits.
async fn canned(
    status: StatusCode,
    body: Value,
    revision: u64,
    name: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(any(move || {
        let h = h.clone();
        let body = body.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            answer(status, body, revision, name)
        }
    }));
    (serve(router).await, hits)
}

/// A node that accepts requests and never answers them.
async fn hanging() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(any(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<&'static str>().await
        }
    }));
    (serve(router).await, hits)
}

/// Fast fail-over for tests: no backoff to speak of, short timeouts.
fn client(nodes: Vec<String>) -> Client {
    Client::builder(nodes)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn register_request(id: &str) -> RegisterRequest {
    RegisterRequest {
        agent_id: Some(id.to_string()),
        name: Some("agent".to_string()),
        endpoint: Some("http://agent:9000".to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn read_fails_over_from_a_refusing_node_and_remembers_the_good_one() {
    let dead = dead_node().await;
    let body = json!({"agent": agent_json("a1", 5), "revision": 5});
    let (good, good_hits) = canned(StatusCode::OK, body, 5, "2").await;
    let c = client(vec![dead.clone(), good.clone()]);

    let rec = c.get_agent("a1", ReadOptions::default()).await.unwrap();
    assert_eq!(rec.agent_id.as_str(), "a1");
    assert_eq!(c.preferred_node(), good);
    assert_eq!(c.last_revision(), 5);

    // --- the next call starts at the node that worked
    let r = c
        .get_agent_with_meta("a1", ReadOptions::stale())
        .await
        .unwrap();
    assert_eq!(r.meta.node_url, good);
    assert_eq!(r.meta.node.as_deref(), Some("2"));
    assert_eq!(r.meta.leader.as_deref(), Some("1"));
    assert_eq!(r.meta.last_contact_ms, Some(7));
    assert_eq!(good_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn write_moves_on_after_503_no_leader_and_gets_the_second_nodes_answer() {
    let (first, first_hits) = canned(
        StatusCode::SERVICE_UNAVAILABLE,
        error_json("no_leader", "election"),
        3,
        "1",
    )
    .await;
    let created = json!({
        "success": true, "agent_id": "a1", "created": true, "revision": 4,
        "agent": agent_json("a1", 4)
    });
    let (second, second_hits) = canned(StatusCode::CREATED, created, 4, "2").await;
    let c = client(vec![first, second]);

    let resp = c.register(&register_request("a1")).await.unwrap();
    assert!(resp.created);
    assert_eq!(resp.revision, 4);
    assert_eq!(first_hits.load(Ordering::SeqCst), 1);
    assert_eq!(second_hits.load(Ordering::SeqCst), 1);
    assert_eq!(c.last_revision(), 4, "the highest revision seen wins");
}

#[tokio::test]
async fn write_is_retried_when_the_connection_was_refused() {
    let dead = dead_node().await;
    let deleted = json!({"success": true, "agent_id": "a1", "revision": 9});
    let (good, good_hits) = canned(StatusCode::OK, deleted, 9, "2").await;
    let c = client(vec![dead, good]);
    let resp = c.delete_agent("a1").await.unwrap();
    assert_eq!(resp.revision, 9);
    assert_eq!(good_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_404_agent_not_found_is_not_retried() {
    let (first, first_hits) = canned(
        StatusCode::NOT_FOUND,
        error_json("agent_not_found", "no agent a1"),
        3,
        "1",
    )
    .await;
    let (second, second_hits) = canned(StatusCode::OK, json!({}), 3, "2").await;
    let c = client(vec![first, second]);

    let err = c.get_agent("a1", ReadOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentNotFound));
    assert_eq!(err.status(), Some(404));
    assert_eq!(first_hits.load(Ordering::SeqCst), 1);
    assert_eq!(second_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_400_body_is_decoded_into_an_api_error() {
    let body = json!({"error": {"code": "invalid_argument", "message": "endpoint is required",
                               "field": "endpoint", "retryable": false}});
    let (node, hits) = canned(StatusCode::BAD_REQUEST, body, 1, "1").await;
    let (other, other_hits) = canned(StatusCode::OK, json!({}), 1, "2").await;
    let c = client(vec![node, other]);

    let err = c.register(&RegisterRequest::default()).await.unwrap_err();
    match &err {
        ClientError::Api { status, body } => {
            assert_eq!(*status, 400);
            assert_eq!(body.error.code, ErrorCode::InvalidArgument);
            assert_eq!(body.error.field.as_deref(), Some("endpoint"));
            assert_eq!(body.error.message, "endpoint is required");
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_write_that_times_out_is_reported_as_unknown_and_not_retried() {
    let (slow, slow_hits) = hanging().await;
    let (other, other_hits) = canned(StatusCode::OK, json!({}), 1, "2").await;
    let c = Client::builder(vec![slow, other])
        .request_timeout(Duration::from_millis(200))
        .backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();

    let err = c
        .set_status("a1", AgentStatus::Suspended)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unknown(_)), "{err:?}");
    assert!(err.is_outcome_unknown());
    assert_eq!(slow_hits.load(Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_heartbeat_that_times_out_is_retried_unlike_other_writes() {
    let (slow, slow_hits) = hanging().await;
    let beat = json!({"agent_id": "a1", "status": "busy", "ttl_seconds": 30,
                      "next_heartbeat_ms": 9800});
    let (good, good_hits) = canned(StatusCode::OK, beat, 4, "2").await;
    let c = Client::builder(vec![slow, good.clone()])
        .request_timeout(Duration::from_millis(200))
        .backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    let report = HeartbeatRequest {
        status: Some("busy".to_string()),
        ..Default::default()
    };
    let r = c.heartbeat_with_meta("a1", &report).await.unwrap();
    assert_eq!(r.value.status, AgentStatus::Busy);
    assert_eq!(r.value.next_heartbeat_ms, 9800);
    assert_eq!(r.meta.node_url, good);
    assert_eq!(slow_hits.load(Ordering::SeqCst), 1);
    assert_eq!(good_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_heartbeat_is_retried_after_a_504_and_a_404_is_returned_at_once() {
    let (timeout, timeout_hits) = canned(
        StatusCode::GATEWAY_TIMEOUT,
        error_json("timeout", "commit timed out"),
        1,
        "1",
    )
    .await;
    let (gone, gone_hits) = canned(
        StatusCode::NOT_FOUND,
        error_json("agent_not_found", "no agent a1"),
        1,
        "2",
    )
    .await;
    let c = client(vec![timeout, gone]);
    let err = c
        .heartbeat("a1", &HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentNotFound), "{err:?}");
    assert_eq!(timeout_hits.load(Ordering::SeqCst), 1);
    assert_eq!(gone_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_batch_of_heartbeats_is_posted_flat_and_retried_after_503() {
    let (busy, busy_hits) = canned(
        StatusCode::SERVICE_UNAVAILABLE,
        error_json("no_leader", "election"),
        1,
        "1",
    )
    .await;
    let bodies = Arc::new(Mutex::new(Vec::<Value>::new()));
    let b = bodies.clone();
    let router = Router::new().route(
        "/v1/heartbeats",
        post(move |axum::Json(body): axum::Json<Value>| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(body);
                let results = json!({
                    "results": [
                        {"agent_id": "a1", "ok": true, "heartbeat": {"agent_id": "a1",
                         "status": "active", "ttl_seconds": 30, "next_heartbeat_ms": 10000}},
                        {"agent_id": "a2", "ok": false,
                         "error": {"code": "agent_not_found", "message": "no agent a2"}}
                    ],
                    "accepted": 1, "rejected": 1
                });
                answer(StatusCode::OK, results, 7, "2")
            }
        }),
    );
    let good = serve(router).await;
    let c = client(vec![busy, good]);
    let batch = BatchHeartbeatRequest {
        heartbeats: vec![
            BatchHeartbeatItem {
                agent_id: "a1".to_string(),
                heartbeat: HeartbeatRequest {
                    load_factor: Some(0.5),
                    ..Default::default()
                },
            },
            BatchHeartbeatItem {
                agent_id: "a2".to_string(),
                ..Default::default()
            },
        ],
    };
    let r = c.heartbeats(&batch).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 1));
    assert_eq!(
        r.results[0].heartbeat.as_ref().map(|h| h.ttl_seconds),
        Some(30)
    );
    assert_eq!(
        r.results[1].error.as_ref().map(|e| e.code),
        Some(ErrorCode::AgentNotFound)
    );
    assert_eq!(busy_hits.load(Ordering::SeqCst), 1);
    let sent = bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["heartbeats"][0]["agent_id"], "a1");
    assert_eq!(
        sent[0]["heartbeats"][0]["load_factor"], 0.5,
        "report fields sit beside agent_id"
    );
}

#[tokio::test]
async fn a_read_that_times_out_fails_over() {
    let (slow, _) = hanging().await;
    let stats = json!({
        "total_agents": 2, "agents_by_status": {"active": 2}, "total_registrations": 2,
        "total_capabilities": 0, "capability_distribution": {}, "discovery_requests": 0,
        "active_agents": 2, "offline_agents": 0, "revision": 8
    });
    let (good, _) = canned(StatusCode::OK, stats, 8, "2").await;
    let c = Client::builder(vec![slow, good])
        .request_timeout(Duration::from_millis(200))
        .backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    let s = c.stats().await.unwrap();
    assert_eq!(s.total_agents, 2);
    assert_eq!(s.agents_by_status.get(&AgentStatus::Active), Some(&2));
}

#[tokio::test]
async fn attempts_are_bounded_when_every_node_is_unavailable() {
    let (a, a_hits) = canned(
        StatusCode::SERVICE_UNAVAILABLE,
        error_json("no_leader", "no quorum"),
        1,
        "1",
    )
    .await;
    let (b, b_hits) = canned(
        StatusCode::SERVICE_UNAVAILABLE,
        error_json("unavailable", "catching up"),
        1,
        "2",
    )
    .await;
    let c = client(vec![a, b]);
    assert_eq!(c.max_attempts(), 4, "default is twice the node count");

    let err = c.cluster().await.unwrap_err();
    match &err {
        ClientError::AllNodesFailed { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert_eq!(
                last.code(),
                Some(ErrorCode::Unavailable),
                "last try was node b"
            );
        }
        other => panic!("expected AllNodesFailed, got {other:?}"),
    }
    assert!(err.is_unavailable());
    assert_eq!(a_hits.load(Ordering::SeqCst), 2);
    assert_eq!(b_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_backoff_cap() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    // First request: 503 asking for 30 s; then 200.
    let router = Router::new().fallback(any(move || {
        let h = h.clone();
        async move {
            if h.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut r = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_json("no_leader", "election"),
                    1,
                    "1",
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("30"));
                r
            } else {
                answer(
                    StatusCode::OK,
                    json!({"agent": agent_json("a1", 2), "revision": 2}),
                    2,
                    "1",
                )
            }
        }
    }));
    let node = serve(router).await;
    let cap = Duration::from_millis(150);
    let c = Client::builder(vec![node])
        .backoff(Duration::from_millis(1), cap)
        .build()
        .unwrap();
    let started = Instant::now();
    c.get_agent("a1", ReadOptions::default()).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= cap, "Retry-After ignored: {waited:?}");
    assert!(
        waited < Duration::from_secs(30),
        "Retry-After not capped: {waited:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn list_all_follows_cursors_with_filters_and_a_revision_floor() {
    let queries = Arc::new(Mutex::new(Vec::<String>::new()));
    let q = queries.clone();
    let router = Router::new().route(
        "/v1/agents",
        get(move |RawQuery(raw): RawQuery| {
            let q = q.clone();
            async move {
                let raw = raw.unwrap_or_default();
                q.lock().unwrap().push(raw.clone());
                let body = if raw.contains("cursor=c1") {
                    json!({"agents": [agent_json("b", 11)], "revision": 12})
                } else {
                    json!({"agents": [agent_json("a", 10)], "next_cursor": "c1", "revision": 10})
                };
                answer(StatusCode::OK, body, 12, "1")
            }
        }),
    );
    let c = client(vec![serve(router).await]);
    let filter = ListFilter {
        status: Some(AgentStatus::Active),
        capability: Some("code gen".to_string()),
        ..Default::default()
    };
    let all = c
        .list_all_agents(&filter, ReadOptions::stale())
        .await
        .unwrap();
    let ids: Vec<&str> = all.agents.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.revision, 12);

    let seen = queries.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "status=active&capability=code+gen&consistency=stale",
            "status=active&capability=code+gen&cursor=c1&consistency=stale&min_revision=10",
        ]
    );
}

#[tokio::test]
async fn search_sends_its_query_parameters() {
    let queries = Arc::new(Mutex::new(Vec::<String>::new()));
    let q = queries.clone();
    let router = Router::new().route(
        "/v1/capabilities/search",
        get(move |RawQuery(raw): RawQuery| {
            let q = q.clone();
            async move {
                q.lock().unwrap().push(raw.unwrap_or_default());
                answer(
                    StatusCode::OK,
                    json!({"query": "py", "matches": [], "revision": 3}),
                    3,
                    "1",
                )
            }
        }),
    );
    let c = client(vec![serve(router).await]);
    let r = c
        .search_capabilities(
            "py",
            Some(AgentStatus::Busy),
            Some(5),
            ReadOptions::default().with_min_revision(2),
        )
        .await
        .unwrap();
    assert!(r.matches.is_empty());
    assert_eq!(
        queries.lock().unwrap().as_slice(),
        ["q=py&status=busy&limit=5&min_revision=2"]
    );
}

#[tokio::test]
async fn ready_distinguishes_ready_not_ready_and_unreachable() {
    let router = Router::new().route(
        "/health/ready",
        get(|| async {
            answer(
                StatusCode::OK,
                json!({"status": "ready", "node_id": 1}),
                1,
                "1",
            )
        }),
    );
    let up = serve(router).await;
    let router = Router::new().route(
        "/health/ready",
        get(|| async {
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "node_id": 2, "reason": "no leader"}),
                1,
                "2",
            )
        }),
    );
    let down = serve(router).await;
    let dead = dead_node().await;
    let c = client(vec![up.clone()]);

    assert!(c.ready(&up).await.unwrap());
    let r = c.readiness(&down).await.unwrap();
    assert!(!r.ready);
    assert_eq!(
        r.health.and_then(|h| h.reason).as_deref(),
        Some("no leader")
    );
    assert!(matches!(
        c.ready(&dead).await,
        Err(ClientError::Transport(_))
    ));
}

#[tokio::test]
async fn cluster_of_asks_exactly_one_node() {
    let dead = dead_node().await;
    let (good, hits) = canned(StatusCode::OK, json!({}), 1, "1").await;
    let c = client(vec![good.clone(), dead.clone()]);
    assert!(matches!(
        c.cluster_of(&dead).await,
        Err(ClientError::Transport(_))
    ));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no fail-over to other nodes"
    );
    // `{}` is not a ClusterInfo: a decode error, not a retry.
    assert!(matches!(
        c.cluster_of(&good).await,
        Err(ClientError::Decode(_))
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn construction_rejects_bad_node_lists() {
    assert!(matches!(
        Client::new(vec![]),
        Err(ClientError::InvalidConfig(_))
    ));
    assert!(matches!(
        Client::new(vec!["not a url".to_string()]),
        Err(ClientError::InvalidConfig(_))
    ));
    let c = Client::new(vec![
        "http://127.0.0.1:1/".to_string(),
        "http://127.0.0.1:2".to_string(),
    ])
    .unwrap();
    assert_eq!(c.nodes(), ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    assert_eq!(c.max_attempts(), 4);
}
