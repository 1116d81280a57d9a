//! End-to-end: the `registryctl` binary against fake nodes on 127.0.0.1:0,
//! checking output and exit codes (0 ok, 1 API error, 2 usage, 3 unreachable,
//! 4 watch compacted).

use std::process::Output;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn dead_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn registryctl(nodes: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_registryctl"))
        .env("REGISTRY_NODES", nodes)
        .args(["--timeout-ms", "2000"])
        .args(args)
        .output()
        .await
        .unwrap()
}

fn agent_json(id: &str) -> Value {
    json!({
        "agent_id": id, "name": "Coder", "endpoint": "http://agent:9000",
        "status": "active", "health_score": 1.0, "load_factor": 0.0,
        "ttl_seconds": 30, "offline_after_seconds": 120, "deregister_after_seconds": 0,
        "registered_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z",
        "last_heartbeat": "2024-01-01T00:00:00.000Z",
        "create_revision": 1, "revision": 1, "epoch": 1
    })
}

fn fake_node() -> Router {
    Router::new()
        .route(
            "/v1/agents/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if id == "known" {
                        (
                            StatusCode::OK,
                            axum::Json(json!({"agent": agent_json("known"), "revision": 1})),
                        )
                            .into_response()
                    } else {
                        let body = json!({"error": {"code": "agent_not_found",
                                                "message": format!("no agent {id}")}});
                        (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
                    }
                },
            ),
        )
        .route(
            "/v1/cluster",
            get(|| async {
                axum::Json(json!({
                    "node_id": 1, "role": "leader", "leader_id": 1, "leader_addr": "127.0.0.1:1",
                    "term": 4, "last_log_index": 20, "commit_index": 20, "applied_index": 19,
                    "snapshot_index": null, "revision": 15, "last_contact_ms": 0,
                    "members": [
                        {"node_id": 1, "addr": "127.0.0.1:1", "role": "leader", "voter": true},
                        {"node_id": 2, "addr": "127.0.0.1:2", "role": "follower", "voter": true}
                    ]
                }))
            }),
        )
}

#[tokio::test]
async fn get_prints_the_agent_as_json_and_exits_0() {
    let node = serve(fake_node()).await;
    let out = registryctl(&node, &["get", "known"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["agent_id"], "known");
}

#[tokio::test]
async fn empty_settings_in_the_environment_count_as_unset() {
    let node = serve(fake_node()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_registryctl"))
        .env("REGISTRY_NODES", &node)
        .env("REGISTRY_TOKEN", "")
        .env("REGISTRY_TOKEN_FILE", "")
        .env("REGISTRY_CACERT", "")
        .args(["get", "known"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["agent_id"], "known");
}

#[tokio::test]
async fn api_errors_exit_1_with_code_and_message_on_stderr() {
    let node = serve(fake_node()).await;
    let out = registryctl(&node, &["get", "ghost"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent_not_found: no agent ghost"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn an_unreachable_cluster_exits_3() {
    let dead = dead_node().await;
    let out = registryctl(&dead, &["stats"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = registryctl(&dead, &["ready"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let node = serve(fake_node()).await;
    let out = registryctl(&node, &["status", "a1", "sleeping"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let dir = std::env::temp_dir().join(format!("registryctl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.json");
    std::fs::write(&file, "{not json").unwrap();
    let out = registryctl(&node, &["register", "--file", file.to_str().unwrap()]).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = registryctl("ftp://nowhere", &["stats"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn cluster_prints_a_table_per_node_and_the_members() {
    let node = serve(fake_node()).await;
    let dead = dead_node().await;
    let nodes = format!("{node},{dead}");
    let out = registryctl(&nodes, &["cluster"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{text}");
    assert!(
        lines[1].starts_with(&node) && lines[1].contains("leader"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&dead) && lines[2].contains("unreachable"),
        "{text}"
    );
    assert!(
        text.contains("members as seen by node 1 (term 4)"),
        "{text}"
    );
    assert!(text.contains("follower"), "{text}");

    let out = registryctl(&nodes, &["cluster", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["cluster"]["term"], 4);
    assert!(v["nodes"][1]["error"].is_string());
}

/// A node whose event stream carries revisions 7 and 8, then says the
/// watcher fell behind the window; `select` finds nobody.
fn events_node() -> Router {
    Router::new()
        .route(
            "/v1/events",
            get(|| async {
                let event = |r: u64| {
                    let data = json!({"revision": r, "type": "AGENT_REGISTERED", "agent_id": "a1",
                        "at": "2026-01-01T00:00:00.000Z", "cause": "registration",
                        "status": "active", "previous_status": null, "runtime_id": "rt",
                        "detail": "", "capabilities": []});
                    format!("id: {r}\nevent: AGENT_REGISTERED\ndata: {data}\n\n")
                };
                let error = json!({"error": {"code": "revision_compacted",
                    "message": "events up to revision 20 are no longer kept (current revision 30)"}});
                let body = format!("{}{}event: error\ndata: {error}\n\n", event(7), event(8));
                ([("content-type", "text/event-stream")], body)
            }),
        )
        .route(
            "/v1/select",
            get(|| async {
                let body = json!({"error": {"code": "no_agent_available",
                                            "message": "nobody qualifies"}});
                (StatusCode::NOT_FOUND, axum::Json(body))
            }),
        )
}

#[tokio::test]
async fn watch_prints_json_lines_and_exits_4_when_compacted() {
    let node = serve(events_node()).await;
    let out = registryctl(&node, &["watch", "--from-revision", "7"]).await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let revisions: Vec<u64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["revision"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(revisions, [7, 8], "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("revision_compacted") && stderr.contains("current revision 30"),
        "{stderr}"
    );
}

#[tokio::test]
async fn select_without_a_qualifying_agent_exits_1() {
    let node = serve(events_node()).await;
    let out = registryctl(&node, &["select", "--capability", "juggling"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_agent_available"), "{stderr}");
}
