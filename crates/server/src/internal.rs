//! Internal routes between nodes: openraft RPCs, forwarded writes and
//! heartbeats, read-index and pre-vote requests. Bodies are bincode (see
//! `registry_raft::network`).
//!
//! Every request reaching a handler here passed the peer guard
//! ([`crate::peer`]): it is signed by a member, which the handler receives
//! as [`Caller`]. What the body says is still checked before anything acts
//! on it: Raft messages must name their sender as leader or candidate and
//! carry sane terms and indexes; snapshot chunks must be contiguous and
//! within the size limit; forwarded commands and heartbeats must pass the
//! rules of the public API, and internal-only commands are never taken from
//! a peer.

// The checks below answer the refusal itself (`Result<_, Response>`), which
// the handler returns as is: the error path is the cold one, and a smaller
// error type would only be turned into the same response one call later.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bincode::Options;
use openraft::EntryPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;

use registry_raft::network::{ForwardError, ForwardRequest, PeerState, BINCODE_CONTENT_TYPE};
use registry_raft::{LogId, TypeConfig};
use registry_types::{ErrorCode, NodeId};

use crate::election::Elector;
use crate::error::ApiError;
use crate::liveness::Liveness;
use crate::node::Node;
use crate::peer::{Caller, INTERNAL_BODY_LIMIT};

/// Terms and log indexes above this are refused before they reach openraft:
/// no real cluster gets near it, and arithmetic on a forged `u64::MAX` term
/// overflowed inside openraft and aborted the node on every restart.
pub const MAX_SANE: u64 = 1 << 62;

/// Most writes in one `/internal/forward-many` call: a follower sends at
/// most one group-commit round.
pub const MAX_FORWARD_MANY: usize = crate::group_commit::MAX_COMMANDS;

fn refused(message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::warn!(reason = %message, "refused a node-to-node request");
    ApiError::new(ErrorCode::InvalidArgument, message).into_response()
}

/// Decodes a body in this release's encoding (fixed-size integers, as
/// `bincode::serialize` writes them), reading no more than the body limit
/// and refusing trailing bytes.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(INTERNAL_BODY_LIMIT as u64)
        .deserialize(body)
        .map_err(|e| refused(format!("bad internal request: {e}")))
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

fn sane(what: &str, v: u64) -> Result<(), Response> {
    if v < MAX_SANE {
        Ok(())
    } else {
        Err(refused(format!("{what} {v} is out of range")))
    }
}

fn sane_log_id(what: &str, l: &Option<LogId>) -> Result<(), Response> {
    match l {
        Some(l) => {
            sane(what, l.leader_id.term)?;
            sane(what, l.index)
        }
        None => Ok(()),
    }
}

/// Checks that a Raft message's vote is the sender's own and sane.
fn check_vote(vote: &openraft::Vote<NodeId>, caller: Caller) -> Result<(), Response> {
    sane("term", vote.leader_id().get_term())?;
    if vote.leader_id().voted_for() != Some(caller.0) {
        return Err(refused(format!(
            "node {} sent a message on behalf of node {:?}",
            caller.0,
            vote.leader_id().voted_for()
        )));
    }
    Ok(())
}

/// Checks a membership a leader sends: sane addresses, and the leader
/// itself among the voters (a membership that leaves out its own sender is
/// what a forger sends to cut a node off).
fn check_membership(
    m: &openraft::Membership<NodeId, openraft::BasicNode>,
    caller: Caller,
) -> Result<(), Response> {
    for (id, node) in m.nodes() {
        if *id == 0 || crate::config::parse_members(&format!("{id}={}", node.addr)).is_err() {
            return Err(refused(format!(
                "membership names node {id} at '{}', not ID=HOST:PORT",
                node.addr
            )));
        }
    }
    if !m
        .get_joint_config()
        .iter()
        .any(|voters| voters.contains(&caller.0))
    {
        return Err(refused(format!(
            "node {} sent a membership it is not a voter of",
            caller.0
        )));
    }
    Ok(())
}

pub async fn append(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req: openraft::raft::AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let checked = check_vote(&req.vote, caller)
        .and_then(|()| sane_log_id("prev_log_id", &req.prev_log_id))
        .and_then(|()| sane_log_id("leader_commit", &req.leader_commit))
        .and_then(|()| {
            req.entries.iter().try_for_each(|e| {
                sane_log_id("entry log id", &Some(e.log_id))?;
                match &e.payload {
                    EntryPayload::Membership(m) => check_membership(m, caller),
                    _ => Ok(()),
                }
            })
        });
    if let Err(e) = checked {
        return e;
    }
    let res = node.raft.append_entries(req).await;
    if res.as_ref().is_ok_and(|r| r.is_success()) {
        node.touch_leader_contact();
    }
    encode(&res)
}

pub async fn vote(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req: openraft::raft::VoteRequest<NodeId> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) =
        check_vote(&req.vote, caller).and_then(|()| sane_log_id("last_log_id", &req.last_log_id))
    {
        return e;
    }
    encode(&node.raft.vote(req).await)
}

pub async fn pre_vote(
    State(elector): State<Elector>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req: registry_raft::network::PreVoteRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if req.candidate != caller.0 {
        return refused(format!(
            "node {} asked a pre-vote for node {}",
            caller.0, req.candidate
        ));
    }
    if let Err(e) = sane_log_id("last_log_id", &req.last_log_id) {
        return e;
    }
    encode(&elector.judge_pre_vote(&req).await)
}

/// Whether this node belongs to a cluster, for a member about to
/// initialize one.
pub async fn state(State(node): State<Node>) -> Response {
    let initialized = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    encode(&PeerState {
        initialized,
        cluster: node.identity().get(),
    })
}

/// The snapshot being received from a leader, kept here as well as by
/// openraft: chunks must follow each other from offset 0 (openraft writes a
/// chunk at the offset it names, so a chunk far beyond the data received
/// made it allocate what the sender chose), the whole stays within
/// `--max-snapshot-bytes`, and the data must decode into a registry before
/// the last chunk reaches openraft, for which a snapshot it cannot install
/// is a fatal storage error. Keeping a copy doubles the memory a snapshot
/// install takes, for its duration.
#[derive(Default)]
pub struct SnapshotReceipt(Mutex<Option<Receiving>>);

struct Receiving {
    id: String,
    data: Vec<u8>,
}

impl SnapshotReceipt {
    /// Checks a chunk against what was received and takes its bytes;
    /// answers the whole data when it is the last one. A refused chunk
    /// drops what was received: the leader starts again from offset 0.
    fn take(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        done: bool,
        max: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = match slot.take() {
            Some(r) if r.id == id && offset != 0 => r,
            _ if offset == 0 => Receiving {
                id: id.to_string(),
                data: Vec::new(),
            },
            other => {
                let expected = other.filter(|r| r.id == id).map_or(0, |r| r.data.len());
                return Err(format!(
                    "snapshot {id}: chunk at offset {offset}, expected {expected}"
                ));
            }
        };
        let received = current.data.len() as u64;
        if offset != received {
            return Err(format!(
                "snapshot {id}: chunk at offset {offset}, expected {received}"
            ));
        }
        if received.saturating_add(chunk.len() as u64) > max {
            return Err(format!(
                "snapshot {id} is larger than the limit of {max} bytes (--max-snapshot-bytes)"
            ));
        }
        current.data.extend_from_slice(chunk);
        if done {
            return Ok(Some(current.data));
        }
        *slot = Some(current);
        Ok(None)
    }

    /// Forgets the snapshot being received (openraft refused a chunk).
    fn reset(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Whether snapshot data can be installed: header, checksum, cluster id
/// and a registry that decodes, as installing it will check.
fn check_snapshot_data(node: &Node, data: &[u8]) -> Result<(), String> {
    let config = registry_state::StateConfig {
        event_window: node.config.event_window,
    };
    registry_raft::store::verify_snapshot_data(config, data, node.identity().get())
        .map_err(|e| e.to_string())
}

pub async fn snapshot(
    State(node): State<Node>,
    State(receipt): State<Arc<SnapshotReceipt>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req: openraft::raft::InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let checked = check_vote(&req.vote, caller)
        .and_then(|()| sane_log_id("snapshot last_log_id", &req.meta.last_log_id))
        .and_then(|()| sane_log_id("membership log id", req.meta.last_membership.log_id()))
        .and_then(|()| check_membership(req.meta.last_membership.membership(), caller));
    if let Err(e) = checked {
        return e;
    }
    let whole = match receipt.take(
        &req.meta.snapshot_id,
        req.offset,
        &req.data,
        req.done,
        node.config.max_snapshot_bytes,
    ) {
        Ok(whole) => whole,
        Err(why) => return refused(why),
    };
    if let Some(data) = whole {
        let checking = node.clone();
        let verdict = tokio::task::spawn_blocking(move || check_snapshot_data(&checking, &data))
            .await
            .unwrap_or_else(|e| Err(format!("checking the snapshot: {e}")));
        if let Err(why) = verdict {
            return refused(format!(
                "snapshot {} from node {} cannot be installed: {why}",
                req.meta.snapshot_id, caller.0
            ));
        }
    }
    node.touch_leader_contact();
    let res = node.raft.install_snapshot(req).await;
    if res.is_err() {
        receipt.reset();
    }
    encode(&res)
}

/// Refuses a command a follower may not forward: the leader's own liveness
/// commands, batches and converted entries, and anything the public API
/// would refuse (`Command::check_forwarded`), with the field named.
fn check_forwarded(node: &Node, cmd: &registry_types::Command) -> Result<(), Response> {
    cmd.check_forwarded(&node.config.limits()).map_err(|e| {
        tracing::warn!(kind = cmd.kind(), error = %e.error.message, "refused a forwarded command");
        ApiError::from(e).into_response()
    })
}

/// A follower's forwarded write. Only applied here if this node is the
/// leader; otherwise it names the leader it knows and the sender retries.
pub async fn forward(State(node): State<Node>, body: Bytes) -> Response {
    let req: ForwardRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) = check_forwarded(&node, &req.command) {
        return e;
    }
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
        Err(e) => return e,
    };
    if reqs.is_empty() || reqs.len() > MAX_FORWARD_MANY {
        return refused(format!(
            "give 1 to {MAX_FORWARD_MANY} forwarded writes, got {}",
            reqs.len()
        ));
    }
    if let Err(e) = reqs
        .iter()
        .try_for_each(|r| check_forwarded(&node, &r.command))
    {
        return e;
    }
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
        Err(e) => return e,
    };
    let max = crate::liveness::FORWARD_BATCH;
    if items.is_empty() || items.len() > max {
        return refused(format!(
            "give 1 to {max} forwarded heartbeats, got {}",
            items.len()
        ));
    }
    let limits = node.config.limits();
    if let Err(e) = items.iter().try_for_each(|(_, b)| b.check(&limits)) {
        return ApiError::from(e).into_response();
    }
    let res = if node.is_leader() {
        Ok(liveness.leader_heartbeats(&items))
    } else {
        Err(ForwardError::NotLeader {
            leader: node.leader().map(|(id, _)| id),
        })
    };
    encode(&res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every body type the internal routes decode.
    fn decode_all(bytes: &[u8]) {
        let _ = decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(bytes);
        let _ = decode::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(bytes);
        let _ = decode::<openraft::raft::VoteRequest<NodeId>>(bytes);
        let _ = decode::<registry_raft::network::PreVoteRequest>(bytes);
        let _ = decode::<ForwardRequest>(bytes);
        let _ = decode::<Vec<ForwardRequest>>(bytes);
        let _ = decode::<Vec<(registry_types::AgentId, crate::liveness::Beat)>>(bytes);
    }

    fn valid_bodies() -> Vec<Vec<u8>> {
        use registry_types::{AgentId, Command, Timestamp};
        let cmd = Command::Deregister {
            agent_id: AgentId::parse("a-1").unwrap(),
            now: Timestamp(7),
        };
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 9);
        vec![
            bincode::serialize(&ForwardRequest {
                command: cmd.clone(),
            })
            .unwrap(),
            bincode::serialize(&vec![ForwardRequest {
                command: Command::Batch(vec![cmd.clone()]),
            }])
            .unwrap(),
            bincode::serialize(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
                vote: openraft::Vote::new_committed(3, 2),
                prev_log_id: Some(log_id),
                entries: vec![openraft::Entry {
                    log_id,
                    payload: EntryPayload::Normal(cmd),
                }],
                leader_commit: Some(log_id),
            })
            .unwrap(),
            bincode::serialize(&vec![(
                AgentId::parse("a-1").unwrap(),
                crate::liveness::Beat::default(),
            )])
            .unwrap(),
        ]
    }

    proptest! {
        // A fuzz target for the decoding of node-to-node bodies: arbitrary
        // bytes, and valid bodies with bytes flipped, cut or grown, never
        // panic, overflow the stack or allocate what a length prefix
        // claims. PROPTEST_CASES=100000 runs it longer.
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&bytes);
        }

        #[test]
        fn decoding_damaged_bodies_never_panics(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut body = valid_bodies()[which].clone();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            decode_all(&body);
            let n = cut.index(body.len() + 1);
            decode_all(&body[..n]);
            body.extend(tail);
            decode_all(&body);
        }
    }

    #[test]
    fn snapshot_chunks_must_follow_each_other_within_the_limit() {
        let r = SnapshotReceipt::default();
        assert_eq!(r.take("a", 0, b"0123456789", false, 100), Ok(None));
        assert_eq!(r.take("a", 10, b"0123456789", false, 100), Ok(None));
        assert!(r.take("a", 30, b"x", false, 100).is_err(), "a gap");
        // A refusal forgets the snapshot: it starts again from 0.
        assert!(r.take("a", 20, b"x", false, 100).is_err());
        assert_eq!(r.take("a", 0, b"0123456789", false, 100), Ok(None));
        assert!(r.take("a", 5, b"x", false, 100).is_err(), "an overlap");
        assert_eq!(r.take("a", 0, b"0123456789", false, 100), Ok(None));
        assert!(r.take("a", 1 << 62, b"x", false, 100).is_err(), "far away");
        assert_eq!(r.take("a", 0, b"0123456789", false, 100), Ok(None));
        assert!(
            r.take("b", 10, b"x", false, 100).is_err(),
            "another mid-way"
        );
        assert_eq!(r.take("b", 0, b"01234", false, 10), Ok(None));
        assert!(
            r.take("b", 5, b"012345", false, 10).is_err(),
            "beyond the limit"
        );
        assert_eq!(r.take("b", 0, b"01234", false, 10), Ok(None));
        assert_eq!(
            r.take("b", 5, b"56789", true, 10),
            Ok(Some(b"0123456789".to_vec())),
            "up to the limit, whole when done"
        );
        assert!(
            r.take("b", 10, b"x", false, 100).is_err(),
            "done: a new one starts at 0"
        );
        assert_eq!(r.take("c", 0, b"", true, 10), Ok(Some(Vec::new())));
    }
}
