//! A follower's heartbeats: coalesced while a call is in flight and sent
//! to the leader in batches, waiting (bounded) through elections.

use registry_types::api::HeartbeatResponse;
use registry_types::{AgentId, ErrorBody, ErrorCode};

use super::lease::Beat;
use super::Liveness;
use crate::error::ApiError;

pub(super) type Item = (AgentId, Beat);
pub(super) type ItemResult = Result<HeartbeatResponse, ItemError>;

/// An error for one heartbeat, in a shape bincode can carry (`ErrorBody`
/// omits absent fields in JSON, which bincode cannot decode).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl From<ErrorBody> for ItemError {
    fn from(b: ErrorBody) -> Self {
        ItemError {
            code: b.error.code,
            message: b.error.message,
            field: b.error.field,
        }
    }
}

impl From<ItemError> for ErrorBody {
    fn from(e: ItemError) -> Self {
        let body = ErrorBody::new(e.code, e.message);
        match e.field {
            Some(f) => body.with_field(f),
            None => body,
        }
    }
}

/// Most heartbeats in one forwarded call.
pub const FORWARD_BATCH: usize = 5_000;

impl Liveness {
    /// Queues a follower's heartbeat for the leader: while one call is in
    /// flight, arriving heartbeats wait; when it returns, all of them (up
    /// to [`FORWARD_BATCH`]) go in the next call.
    pub(super) async fn forward(&self, item: Item) -> Result<ItemResult, ApiError> {
        let liveness = self.clone();
        let round = move |items: Vec<Item>| {
            let liveness = liveness.clone();
            async move {
                let n = items.len();
                match liveness.forward_heartbeats(&items).await {
                    Ok(results) if results.len() == n => results.into_iter().map(Ok).collect(),
                    Ok(_) => vec![Err(ApiError::internal()); n],
                    Err(e) => vec![Err(e); n],
                }
            }
        };
        self.forwarder
            .submit(item, round)
            .await
            .unwrap_or_else(|| Err(ApiError::internal()))
    }

    /// Sends heartbeats to the leader, waiting (bounded) through elections.
    /// Heartbeats are idempotent, so any failure may be retried.
    async fn forward_heartbeats(&self, items: &[Item]) -> Result<Vec<ItemResult>, ApiError> {
        let node = &self.node;
        let deadline = std::time::Instant::now() + node.config.write_timeout();
        let mut wait = crate::node::LeaderWait::new(&node.raft);
        loop {
            wait.observe();
            match node.leader() {
                // Elected while this batch waited: record it here once the
                // leadership has settled (lease table reset, a quorum heard
                // from, no handover under way), as a beat sent to this node
                // as leader would be. Recording at once answered "became
                // leader a moment ago" to beats a moment later it takes, a
                // failure a client sees on a leader's SIGTERM handover.
                // (Not a guard of this arm: an unsettled leader would then
                // fall to the next arm and forward the batch to itself.)
                Some((l, _)) if l == node.id => {
                    let settled = self.settled_leader().await;
                    if settled {
                        return Ok(self.leader_heartbeats(items));
                    }
                }
                Some((leader, addr)) => {
                    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                    let peer = registry_raft::PeerClient::new(node.http().clone(), addr);
                    // A leader that stopped answering (paused, cut off) must
                    // not hold this node's heartbeats, the ones queued behind
                    // this call included, until the write timeout: once Raft
                    // names another leader, drop the call and send the batch
                    // there (heartbeats are idempotent).
                    let res: Option<
                        Result<Result<Vec<ItemResult>, registry_raft::network::ForwardError>, _>,
                    > = tokio::select! {
                        res = peer.call(HEARTBEATS_PATH, &items, remaining) => Some(res),
                        () = leader_other_than(&mut wait.metrics, leader) => None,
                    };
                    match res {
                        Some(Ok(Ok(results))) => {
                            node.metrics.forwarded_heartbeat_calls.inc();
                            return Ok(results);
                        }
                        None if std::time::Instant::now() < deadline => continue,
                        _ => {}
                    }
                }
                None => {}
            }
            if !wait.fits(deadline) {
                return Err(ApiError::no_leader());
            }
            wait.pause().await;
        }
    }
}

/// Resolves once Raft names a leader other than `leader`, or none; never
/// if Raft has stopped.
async fn leader_other_than(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    leader: registry_types::NodeId,
) {
    loop {
        if metrics.borrow_and_update().current_leader != Some(leader) {
            return;
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Path of forwarded heartbeat batches.
pub const HEARTBEATS_PATH: &str = "/internal/heartbeats";
