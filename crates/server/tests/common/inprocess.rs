//! A node in the test's own process, for handler-level cases: a one-node
//! cluster on a temporary directory whose router is called with `oneshot`
//! (no socket, no child process). Crashes, restarts and partitions stay
//! with the process clusters of [`super::Cluster`].

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use clap::Parser;
use serde_json::Value;
use tower::ServiceExt;

use agent_registry::{AppState, Config};

use super::{wait_until, Reply};

/// A started in-process node; dropping it stops Raft's tasks with the
/// runtime and removes the directory.
pub struct InProcess {
    pub state: AppState,
    router: Router,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts a one-node cluster and waits until it leads.
    pub async fn start(extra_args: &[&str]) -> InProcess {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data_dir = dir.path().to_str().expect("utf-8 path").to_string();
        let mut args = vec!["agent-registry", "--node-id", "1", "--data-dir", &data_dir];
        args.extend_from_slice(extra_args);
        let config = Config::parse_from(args);
        let state = agent_registry::start(config).await.expect("node starts");
        let node = state.node.clone();
        wait_until("the in-process node leads", || {
            let node = node.clone();
            async move {
                if node.is_leader() {
                    Ok(())
                } else {
                    Err(format!("leader is {:?}", node.leader()))
                }
            }
        })
        .await;
        InProcess {
            router: agent_registry::router(state.clone()),
            state,
            _dir: dir,
        }
    }

    /// One request through the router: status, headers and body (none for
    /// an event stream). The method is reqwest's (the same `http` type axum
    /// takes).
    pub async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // An event stream does not end: its body is left unread.
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = if streaming {
            axum::body::Bytes::new()
        } else {
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body")
        };
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// [`InProcess::send`] with a JSON value as the body.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Reply {
        self.send(method, path, Some(&body.to_string())).await
    }
}
