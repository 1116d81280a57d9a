//! Internal routes between nodes: openraft RPCs, forwarded writes and
//! read-index requests. Bodies are bincode (see `registry_raft::network`).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use registry_raft::network::{ForwardError, ForwardRequest, BINCODE_CONTENT_TYPE};
use registry_raft::TypeConfig;

use crate::election::Elector;
use crate::liveness::Liveness;
use crate::node::Node;

/// An internal request whose body did not decode (version mismatch or bug).
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            format!("bad internal request: {}", self.0),
        )
            .into_response()
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    bincode::deserialize(body).map_err(|e| BadRequest(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Response {
    match bincode::serialize(v) {
        Ok(bytes) => ([(header::CONTENT_TYPE, BINCODE_CONTENT_TYPE)], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding an internal response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub async fn append(State(node): State<Node>, body: Bytes) -> Response {
    let req: openraft::raft::AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let res = node.raft.append_entries(req).await;
    if res.as_ref().is_ok_and(|r| r.is_success()) {
        node.touch_leader_contact();
    }
    encode(&res)
}

pub async fn vote(State(node): State<Node>, body: Bytes) -> Response {
    let req: openraft::raft::VoteRequest<u64> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    encode(&node.raft.vote(req).await)
}

pub async fn pre_vote(State(elector): State<Elector>, body: Bytes) -> Response {
    let req: registry_raft::network::PreVoteRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    encode(&elector.judge_pre_vote(&req).await)
}

pub async fn snapshot(State(node): State<Node>, body: Bytes) -> Response {
    let req: openraft::raft::InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    node.touch_leader_contact();
    encode(&node.raft.install_snapshot(req).await)
}

/// A follower's forwarded write. Only applied here if this node is the
/// leader; otherwise it names the leader it knows and the sender retries.
pub async fn forward(State(node): State<Node>, body: Bytes) -> Response {
    let req: ForwardRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let res = if node.is_leader() {
        node.write_local(req.command, Instant::now() + node.config.write_timeout())
            .await
    } else {
        Err(ForwardError::NotLeader {
            leader: node.leader().map(|(id, _)| id),
        })
    };
    encode(&res)
}

/// A follower's group of forwarded writes: each is proposed as if it had
/// come alone (so they join the same group-commit rounds), and the answer
/// holds one result per write, in order.
pub async fn forward_many(State(node): State<Node>, body: Bytes) -> Response {
    let reqs: Vec<ForwardRequest> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let res: Vec<Result<registry_raft::Applied, ForwardError>> = if node.is_leader() {
        let deadline = Instant::now() + node.config.write_timeout();
        futures::future::join_all(
            reqs.into_iter()
                .map(|r| node.write_local(r.command, deadline)),
        )
        .await
    } else {
        let leader = node.leader().map(|(id, _)| id);
        reqs.iter()
            .map(|_| Err(ForwardError::NotLeader { leader }))
            .collect()
    };
    encode(&res)
}

/// A follower's read-index request.
pub async fn read_index(State(node): State<Node>) -> Response {
    let res = if node.is_leader() {
        node.local_read_index().await
    } else {
        Err(ForwardError::NotLeader {
            leader: node.leader().map(|(id, _)| id),
        })
    };
    encode(&res)
}

/// A follower's batch of heartbeats.
pub async fn heartbeats(
    State(node): State<Node>,
    State(liveness): State<Liveness>,
    body: Bytes,
) -> Response {
    let items: Vec<(registry_types::AgentId, crate::liveness::Beat)> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let res = if node.is_leader() {
        Ok(liveness.leader_heartbeats(&items))
    } else {
        Err(ForwardError::NotLeader {
            leader: node.leader().map(|(id, _)| id),
        })
    };
    encode(&res)
}
