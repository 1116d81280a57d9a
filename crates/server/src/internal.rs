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

use openraft::error::{InstallSnapshotError, RaftError};
use registry_raft::network::{ForwardError, ForwardRequest, PeerState, BINCODE_CONTENT_TYPE};
use registry_raft::{DiskSpace, LogId, TypeConfig};
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
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(INTERNAL_BODY_LIMIT as u64)
        .deserialize(body)
        .map_err(|e| refused(format!("bad internal request: {e}")))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Response {
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

/// Checks that the entries of an AppendEntries follow `prev` one index at a
/// time (openraft's log starts at index 0), with terms that never go down
/// and none above the sender's: what openraft takes for granted of a
/// leader's message, and a log with a hole or a rewritten history is what a
/// forged one would leave.
fn check_entries(
    prev: &Option<LogId>,
    entries: &[openraft::Entry<TypeConfig>],
    vote_term: u64,
) -> Result<(), Response> {
    let first = prev.map_or(0, |p| p.index + 1);
    let mut term = prev.map_or(0, |p| p.leader_id.term);
    for (next, e) in (first..).zip(entries) {
        let id = e.log_id;
        if id.index != next {
            return Err(refused(format!(
                "entry at index {} does not follow index {}",
                id.index,
                next as i128 - 1
            )));
        }
        if id.leader_id.term < term || id.leader_id.term > vote_term {
            return Err(refused(format!(
                "entry {} has term {}, out of order (after term {term}, sender's term {vote_term})",
                id.index, id.leader_id.term
            )));
        }
        term = id.leader_id.term;
    }
    Ok(())
}

/// Checks a membership a leader sends: every member a node id and one
/// HOST:PORT (it is dialed as given).
///
/// Whether the sender is among its voters says nothing: a leader added
/// after the cluster began sends the older memberships of its log and
/// snapshot, which predate it, to a follower catching up, and a leader
/// removing itself sends the membership without it before it steps down.
/// Refusing those (as an earlier release did) stopped replication to any
/// follower behind such an entry, and elections followed one another.
fn check_membership(m: &openraft::Membership<NodeId, openraft::BasicNode>) -> Result<(), Response> {
    for (id, node) in m.nodes() {
        if *id == 0 || crate::config::check_member_addr(&node.addr).is_err() {
            return Err(refused(format!(
                "membership names node {id} at '{}', not ID=HOST:PORT",
                node.addr
            )));
        }
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
            check_entries(
                &req.prev_log_id,
                &req.entries,
                req.vote.leader_id().get_term(),
            )
        })
        .and_then(|()| {
            req.entries.iter().try_for_each(|e| {
                sane_log_id("entry log id", &Some(e.log_id))?;
                match &e.payload {
                    EntryPayload::Membership(m) => check_membership(m),
                    _ => Ok(()),
                }
            })
        });
    if let Err(e) = checked {
        return e;
    }
    // Entries are not taken without disk room for them: the leader tries
    // again later (it treats the 503 as a node out of reach for a moment).
    // Heartbeats (no entries) still count, so the node keeps its leader.
    if !req.entries.is_empty() && node.disk.is_short() {
        node.touch_leader_contact();
        return busy(format!(
            "node {} is short of disk space ({}): no new log entries until space is freed",
            node.id,
            node.disk.describe()
        ));
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

/// The leader's word to stand for election at once: it hands leadership
/// to this node (see [`crate::handover`]).
pub async fn stand(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req: crate::handover::StandRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) =
        sane("term", req.term).and_then(|()| sane_log_id("last_log_id", &req.last_log_id))
    {
        return e;
    }
    encode(&crate::handover::stand(&node, caller.0, &req).await)
}

/// A follower's forwarded `POST /v1/cluster/leader`: the voter to hand
/// over to, if named.
pub async fn handover(State(node): State<Node>, body: Bytes) -> Response {
    let to: Option<NodeId> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    encode(&crate::handover::hand_over_report(&node, to).await)
}

/// Whether this node belongs to a cluster, for a member about to
/// initialize one.
pub async fn state(State(node): State<Node>) -> Response {
    let initialized = node.has_membership();
    encode(&PeerState {
        initialized,
        cluster: node.identity().get(),
    })
}

/// The snapshot being received from a leader, written to a file in the
/// data directory (`snapshot.recv`) chunk by chunk, never into a buffer
/// sized by the sender. Chunks must follow each other from offset 0, the
/// whole must stay within `--max-snapshot-bytes`, and each chunk needs disk
/// room for it (503 otherwise: the leader tries again later, from 0). When
/// the last chunk is in, the data is read back once, verified (checksum,
/// cluster id, a registry that decodes) and only then handed to openraft as
/// a whole, for which a snapshot it cannot install is a fatal storage
/// error.
pub struct SnapshotReceipt {
    path: std::path::PathBuf,
    disk: DiskSpace,
    slot: Mutex<Option<Receiving>>,
}

struct Receiving {
    id: String,
    file: std::fs::File,
    received: u64,
}

/// Why a chunk was not taken.
#[derive(Debug, PartialEq)]
enum ChunkRefused {
    /// Not the chunk expected, or beyond the size limit.
    Invalid(String),
    /// No disk room for it; the leader may try again later.
    NoSpace(String),
}

impl SnapshotReceipt {
    /// A receipt writing to `dir/snapshot.recv`; a file left there by an
    /// earlier process is removed.
    pub fn new(dir: &std::path::Path, disk: DiskSpace) -> Self {
        let path = dir.join("snapshot.recv");
        let _ = std::fs::remove_file(&path);
        SnapshotReceipt {
            path,
            disk,
            slot: Mutex::new(None),
        }
    }

    /// Checks a chunk against what was received and writes it; answers the
    /// whole data, read back from the file, when it is the last one. A
    /// refused chunk drops what was received: the leader starts again from
    /// offset 0. Blocking (file I/O).
    fn take(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        done: bool,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ChunkRefused> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let res = self.take_locked(&mut slot, id, offset, chunk, done, max);
        if !matches!(res, Ok(None)) {
            // Refused or complete: nothing is kept on disk.
            *slot = None;
            let _ = std::fs::remove_file(&self.path);
        }
        res
    }

    fn take_locked(
        &self,
        slot: &mut Option<Receiving>,
        id: &str,
        offset: u64,
        chunk: &[u8],
        done: bool,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ChunkRefused> {
        use std::io::{Read, Seek, Write};
        let invalid = |m: String| Err(ChunkRefused::Invalid(m));
        let mut current = match slot.take() {
            Some(r) if r.id == id && offset != 0 => r,
            _ if offset == 0 => Receiving {
                id: id.to_string(),
                file: std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.path)
                    .map_err(|e| self.io_refusal(id, e))?,
                received: 0,
            },
            other => {
                let expected = other.filter(|r| r.id == id).map_or(0, |r| r.received);
                return invalid(format!(
                    "snapshot {id}: chunk at offset {offset}, expected {expected}"
                ));
            }
        };
        let received = current.received;
        if offset != received {
            return invalid(format!(
                "snapshot {id}: chunk at offset {offset}, expected {received}"
            ));
        }
        let len = chunk.len() as u64;
        if received.saturating_add(len) > max {
            return invalid(format!(
                "snapshot {id} is larger than the limit of {max} bytes (--max-snapshot-bytes)"
            ));
        }
        if !self.disk.has_room_for(len) {
            return Err(ChunkRefused::NoSpace(format!(
                "snapshot {id}: no disk room for it ({})",
                self.disk.describe()
            )));
        }
        current
            .file
            .write_all(chunk)
            .map_err(|e| self.io_refusal(id, e))?;
        current.received += len;
        if !done {
            *slot = Some(current);
            return Ok(None);
        }
        // Read back once, sized by what was written here (within the
        // limit), not by anything the sender claims.
        let mut data = Vec::with_capacity(current.received as usize);
        current
            .file
            .rewind()
            .and_then(|()| current.file.read_to_end(&mut data))
            .map_err(|e| self.io_refusal(id, e))?;
        Ok(Some(data))
    }

    fn io_refusal(&self, id: &str, e: std::io::Error) -> ChunkRefused {
        let message = format!("snapshot {id}: {}: {e}", self.path.display());
        if registry_raft::disk::is_no_space_io(&e) {
            self.disk.note_no_space();
            ChunkRefused::NoSpace(message)
        } else {
            ChunkRefused::Invalid(message)
        }
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

/// A refusal the sender may try again later (503): this node is short of
/// disk space.
fn busy(message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::warn!(reason = %message, "refused a node-to-node request for now");
    ApiError::unavailable(message).into_response()
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
        .and_then(|()| check_membership(req.meta.last_membership.membership()));
    if let Err(e) = checked {
        return e;
    }
    node.touch_leader_contact();
    // As openraft answers a chunk: with this node's vote, taking nothing
    // from a leader whose vote is behind it (the leader then steps down).
    let vote = node.raft.metrics().borrow().vote;
    let answer = openraft::raft::InstallSnapshotResponse { vote };
    if req.vote < vote {
        return encode(&Ok::<_, RaftError<NodeId, InstallSnapshotError>>(answer));
    }
    let openraft::raft::InstallSnapshotRequest {
        vote: leader_vote,
        meta,
        offset,
        data,
        done,
    } = req;
    let (taking, id, max) = (
        receipt.clone(),
        meta.snapshot_id.clone(),
        node.config.max_snapshot_bytes,
    );
    let taken = tokio::task::spawn_blocking(move || taking.take(&id, offset, &data, done, max))
        .await
        .unwrap_or_else(|e| Err(ChunkRefused::Invalid(format!("writing the chunk: {e}"))));
    let whole = match taken {
        Ok(None) => {
            return encode(&Ok::<_, RaftError<NodeId, InstallSnapshotError>>(answer));
        }
        Ok(Some(whole)) => whole,
        Err(ChunkRefused::Invalid(why)) => return refused(why),
        Err(ChunkRefused::NoSpace(why)) => return busy(why),
    };
    let checking = node.clone();
    let (verdict, whole) =
        tokio::task::spawn_blocking(move || (check_snapshot_data(&checking, &whole), whole))
            .await
            .unwrap_or_else(|e| (Err(format!("checking the snapshot: {e}")), Vec::new()));
    if let Err(why) = verdict {
        return refused(format!(
            "snapshot {} from node {} cannot be installed: {why}",
            meta.snapshot_id, caller.0
        ));
    }
    let snapshot = openraft::Snapshot {
        meta,
        snapshot: Box::new(std::io::Cursor::new(whole)),
    };
    let res = node
        .raft
        .install_full_snapshot(leader_vote, snapshot)
        .await
        .map(|r| openraft::raft::InstallSnapshotResponse { vote: r.vote })
        .map_err(RaftError::<NodeId, InstallSnapshotError>::Fatal);
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
    let res = if liveness.settled_leader().await {
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
        let _ = decode::<crate::handover::StandRequest>(bytes);
        let _ = decode::<Option<NodeId>>(bytes);
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
    fn terms_and_indexes_from_a_peer_stay_below_the_limit() {
        use openraft::{CommittedLeaderId, LogId};
        assert!(sane("term", 0).is_ok());
        assert!(sane("term", 7).is_ok());
        assert!(sane("term", MAX_SANE - 1).is_ok());
        assert!(sane("term", MAX_SANE).is_err());
        assert!(sane("term", u64::MAX).is_err());
        let log_id = |term, index| Some(LogId::new(CommittedLeaderId::new(term, 2), index));
        assert!(sane_log_id("prev_log_id", &None).is_ok());
        assert!(sane_log_id("prev_log_id", &log_id(MAX_SANE - 1, MAX_SANE - 1)).is_ok());
        assert!(sane_log_id("prev_log_id", &log_id(MAX_SANE, 1)).is_err());
        assert!(sane_log_id("prev_log_id", &log_id(1, MAX_SANE)).is_err());
    }

    #[test]
    fn a_raft_message_speaks_for_its_sender_only() {
        assert!(check_vote(&openraft::Vote::new(3, 2), Caller(2)).is_ok());
        assert!(check_vote(&openraft::Vote::new_committed(3, 2), Caller(2)).is_ok());
        assert!(
            check_vote(&openraft::Vote::new(3, 2), Caller(1)).is_err(),
            "node 1 voting as node 2"
        );
        assert!(check_vote(&openraft::Vote::new(MAX_SANE, 2), Caller(2)).is_err());
    }

    fn membership(
        voters: &[NodeId],
        nodes: &[(NodeId, &str)],
    ) -> openraft::Membership<NodeId, openraft::BasicNode> {
        openraft::Membership::new(
            vec![voters.iter().copied().collect()],
            nodes
                .iter()
                .map(|(id, addr)| (*id, openraft::BasicNode::new(*addr)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    }

    fn entry(term: u64, index: u64) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn entries_follow_the_previous_one_index_at_a_time_in_term_order() {
        let prev = |t, i| Some(LogId::new(openraft::CommittedLeaderId::new(t, 1), i));
        assert!(check_entries(&None, &[], 1).is_ok());
        assert!(check_entries(&None, &[entry(0, 0), entry(1, 1)], 1).is_ok());
        assert!(check_entries(&prev(2, 7), &[entry(2, 8), entry(3, 9)], 3).is_ok());
        // A hole, a repeat, a first entry that skips ahead of `prev`.
        assert!(check_entries(&None, &[entry(1, 1 << 30)], 1).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(2, 9)], 2).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(2, 8), entry(2, 8)], 2).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(2, 7)], 2).is_err());
        // Terms going down, or above the sender's own.
        assert!(check_entries(&prev(3, 7), &[entry(2, 8)], 3).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(3, 8), entry(2, 9)], 3).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(4, 8)], 3).is_err());
        assert!(check_entries(&prev(2, 7), &[entry(3, 8)], 3).is_ok());
    }

    #[test]
    fn a_membership_names_each_member_once_at_one_address() {
        let ok = membership(&[1, 2], &[(1, "127.0.0.1:1"), (2, "[::1]:2")]);
        assert!(check_membership(&ok).is_ok());
        // One that predates its sender (a leader added later sends its
        // log's older memberships) is taken.
        let before = membership(&[1], &[(1, "127.0.0.1:1")]);
        assert!(check_membership(&before).is_ok());
        // An address that smuggles a second member entry, or is not one
        // HOST:PORT, is refused: it is dialed as given.
        for bad in [
            "127.0.0.1:1,2=127.0.0.1:2",
            "127.0.0.1:1,",
            "a=b:1",
            "a b:1",
            "a:1 ",
            "a",
            ":1",
            "a:",
            "a:70000",
        ] {
            let m = membership(&[1, 2], &[(1, bad), (2, "127.0.0.1:2")]);
            assert!(check_membership(&m).is_err(), "{bad:?}");
        }
        let zero = membership(&[1], &[(0, "127.0.0.1:1"), (1, "127.0.0.1:2")]);
        assert!(check_membership(&zero).is_err(), "node id 0");
    }

    fn receipt(min_free: u64) -> (tempfile::TempDir, SnapshotReceipt) {
        let dir = tempfile::tempdir().unwrap();
        let r = SnapshotReceipt::new(dir.path(), DiskSpace::new(dir.path(), min_free));
        (dir, r)
    }

    #[test]
    fn snapshot_chunks_go_to_a_file_and_leave_nothing_behind() {
        let (dir, r) = receipt(0);
        let file = dir.path().join("snapshot.recv");
        std::fs::write(&file, b"left by an earlier process").unwrap();
        let r2 = SnapshotReceipt::new(dir.path(), r.disk.clone());
        assert!(!file.exists(), "a leftover is removed at start");
        assert_eq!(r2.take("a", 0, b"01234", false, 100), Ok(None));
        assert_eq!(std::fs::read(&file).unwrap(), b"01234");
        assert_eq!(
            r2.take("a", 5, b"56789", true, 100),
            Ok(Some(b"0123456789".to_vec()))
        );
        assert!(!file.exists(), "removed once read back");
        assert_eq!(r2.take("b", 0, b"01234", false, 100), Ok(None));
        assert!(r2.take("b", 7, b"x", false, 100).is_err());
        assert!(!file.exists(), "removed on a refusal");
    }

    #[test]
    fn a_chunk_without_disk_room_is_refused_for_now() {
        let (dir, r) = receipt(u64::MAX);
        let refused = r.take("a", 0, b"01234", false, 100);
        assert!(
            matches!(refused, Err(ChunkRefused::NoSpace(_))),
            "{refused:?}"
        );
        assert!(!dir.path().join("snapshot.recv").exists());
        // An invalid chunk is invalid whatever the disk.
        assert!(matches!(
            r.take("a", 3, b"x", false, 100),
            Err(ChunkRefused::Invalid(_))
        ));
    }

    #[test]
    fn snapshot_chunks_must_follow_each_other_within_the_limit() {
        let (_dir, r) = receipt(0);
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
