//! Leadership handover: the leader hands its role to a caught-up voter,
//! and writes and heartbeats wait for the new leader instead of failing.
//!
//! openraft 0.9.25 has no leadership transfer. Its vote handler refuses
//! any vote while the voter's leader lease runs (its committed vote renewed
//! within `election_timeout_max`): a follower renews it on every
//! AppendEntries from its leader, and the leader's own lease is its vote's
//! age, set once when it was elected. So [`hand_over`]:
//!
//! 1. closes this node's [`Gate`]: client writes (local and forwarded), the
//!    leader's own liveness entries and read-index confirmations (which send
//!    AppendEntries, renewing the leases) stop passing; they answer
//!    `NotLeader` inside the node, so `propose` and a follower's forwarding
//!    wait and then go to the new leader within their deadline, and
//!    heartbeats taken here wait for the gate. Those already in flight are
//!    waited for.
//! 2. waits until the target's matched log index is the leader's last one.
//! 3. makes sure the target can win a majority. The leader's own vote is
//!    free once it has led for a lease (a leader elected a moment ago waits
//!    for that before step 1); when the leader and the target are a
//!    majority (3 voters) that is enough, and heartbeats go on, so no
//!    other follower's lease runs out and none stands on its own. Otherwise
//!    (5 voters) openraft's heartbeats are switched off and the lease is
//!    waited out, so the other followers grant their votes too.
//! 4. tells the target to stand at once ([`STAND_PATH`], Raft's TimeoutNow):
//!    the target checks that the caller is its leader in the current term
//!    and that its log holds the leader's last entry, then stands without
//!    its elector's lease wait and pre-vote.
//! 5. waits (bounded) for the new leader. If none comes and this node
//!    still leads, it resumes: heartbeats on, the gate open, and the error
//!    says why.
//!
//! `POST /v1/cluster/leader` ([`handover_route`]) runs it on the leader (a
//! follower forwards the request, [`HANDOVER_PATH`]); a leader asked to
//! stop (SIGTERM) runs it before it stops.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use registry_raft::{LogId, PeerClient, PeerError};
use registry_types::api::{LeaderHandover, LeaderHandoverRequest};
use registry_types::{ErrorCode, NodeId};

use crate::election::{is_quorum, Timing};
use crate::error::ApiError;
use crate::extract::OptionalJsonBody;
use crate::node::{matched_of, Node};

/// Path of the leader's word to its chosen successor: stand now.
pub const STAND_PATH: &str = "/internal/stand";

/// Path of a handover request a follower forwards to its leader.
pub const HANDOVER_PATH: &str = "/internal/handover";

/// Holds a leader's proposals and read-index rounds back during a handover.
///
/// Every proposal and read-index round on the leader passes through
/// [`Gate::enter`] and holds its [`Pass`] until it ends. Closing the gate
/// turns new ones away; [`Gate::drained`] then waits for those that passed.
/// The counter is raised before the flag is read and the flag set before
/// the counter is read (both `SeqCst`), so a proposal either sees the gate
/// closed or is counted by the handover that closed it.
pub struct Gate {
    closed: AtomicBool,
    /// Passes held: proposals and read-index rounds under way.
    in_flight: AtomicUsize,
    /// Woken when the last pass is given back.
    idle: Notify,
    /// `true` while the gate is open; heartbeats wait on it.
    open: watch::Sender<bool>,
    /// One handover at a time.
    running: tokio::sync::Mutex<()>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            open: watch::Sender::new(true),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

/// A proposal or read-index round let through the [`Gate`]; given back on
/// drop.
pub struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Gate {
    /// A pass for one proposal or read-index round; `None` while a
    /// handover holds them back.
    pub fn enter(&self) -> Option<Pass<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(self);
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        Some(pass)
    }

    /// Whether a handover holds proposals back now.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until the gate is open, or `deadline`; whether it is open.
    pub async fn wait_open(&self, deadline: Instant) -> bool {
        let mut rx = self.open.subscribe();
        let open = tokio::time::timeout_at(deadline.into(), rx.wait_for(|open| *open))
            .await
            .is_ok_and(|r| r.is_ok());
        open
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.open.send_replace(false);
    }

    fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
    }

    /// Resolves once no pass is held.
    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Why leadership was not handed over. Every case but
/// [`HandoverError::Unsettled`] leaves this node leading as before.
/// Crosses the wire (a follower forwards the request to its leader).
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum HandoverError {
    #[error("this node is not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("a leadership handover is already under way")]
    InProgress,
    #[error("there is no other voter to hand leadership to")]
    NoOtherVoter,
    #[error("node {0} is not a voter of this cluster")]
    NotAVoter(NodeId),
    #[error("node {0} already leads")]
    AlreadyLeader(NodeId),
    #[error("a membership change is in flight; hand over after it")]
    MembershipChanging,
    #[error("writes in flight did not finish within {ms} ms; leadership kept")]
    Busy { ms: u64 },
    #[error("node {target} did not catch up within {ms} ms (matched index {matched:?}, the leader's last is {last:?}); leadership kept")]
    TargetBehind {
        target: NodeId,
        ms: u64,
        matched: Option<u64>,
        last: Option<u64>,
    },
    #[error("node {target} refused to stand: {reason}; leadership kept")]
    Refused { target: NodeId, reason: String },
    #[error("node {target} could not be told to stand ({error}); leadership kept")]
    Unreachable { target: NodeId, error: String },
    #[error("node {target} was not elected within {ms} ms; leadership kept")]
    NotElected { target: NodeId, ms: u64 },
    #[error(
        "this node stepped down but no new leader is known after {ms} ms; the election goes on"
    )]
    Unsettled { ms: u64 },
    #[error("this node lost leadership during the handover (the leader is now {leader:?})")]
    LostLeadership { leader: Option<NodeId> },
    #[error("raft is shutting down")]
    Stopped,
}

impl From<HandoverError> for ApiError {
    fn from(e: HandoverError) -> ApiError {
        use HandoverError as H;
        let code = match &e {
            H::NotAVoter(_) | H::AlreadyLeader(_) => {
                return ApiError::invalid("node_id", e.to_string())
            }
            H::NoOtherVoter => ErrorCode::InvalidArgument,
            H::NotLeader { .. } | H::LostLeadership { .. } => ErrorCode::NoLeader,
            // Leadership has left this node: not to be asked again blindly
            // (a 503 would be retried by clients), so an unknown outcome.
            H::Unsettled { .. } => ErrorCode::Timeout,
            H::InProgress
            | H::MembershipChanging
            | H::Busy { .. }
            | H::TargetBehind { .. }
            | H::Refused { .. }
            | H::Unreachable { .. }
            | H::NotElected { .. }
            | H::Stopped => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The leader's word to its successor ([`STAND_PATH`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandRequest {
    /// The term the sender leads in.
    pub term: u64,
    /// The sender's last log entry: the successor must hold it.
    pub last_log_id: Option<LogId>,
}

/// The successor's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StandResponse {
    /// It stands for election now.
    Standing,
    /// It does not, and why.
    Refused(String),
}

/// Hands leadership to `to` (`None`: the voter whose log is furthest
/// along) and returns the new leader. See the module docs.
pub async fn hand_over(node: &Node, to: Option<NodeId>) -> Result<NodeId, HandoverError> {
    hand_over_report(node, to).await.map(|h| h.leader_id)
}

/// [`hand_over`], with the new term and how long this leader held
/// proposals back. Runs in a task of its own, so a caller that gives up
/// (an HTTP client that leaves) cannot cut it off half way.
pub async fn hand_over_report(
    node: &Node,
    to: Option<NodeId>,
) -> Result<LeaderHandover, HandoverError> {
    let node = node.clone();
    tokio::spawn(async move { run(&node, to).await })
        .await
        .unwrap_or(Err(HandoverError::Stopped))
}

/// The voter to hand over to: `to` when it is one (and not `me`), else the
/// other voter with the highest matched log index (the lowest id among
/// equals). `matched` is the leader's replication progress.
pub(crate) fn choose_target(
    me: NodeId,
    voters: &BTreeSet<NodeId>,
    matched: &[(NodeId, Option<u64>)],
    to: Option<NodeId>,
) -> Result<NodeId, HandoverError> {
    if let Some(t) = to {
        if t == me {
            return Err(HandoverError::AlreadyLeader(t));
        }
        if !voters.contains(&t) {
            return Err(HandoverError::NotAVoter(t));
        }
        return Ok(t);
    }
    let index_of = |id: NodeId| matched.iter().find(|(n, _)| *n == id).and_then(|(_, m)| *m);
    voters
        .iter()
        .copied()
        .filter(|v| *v != me)
        // Highest index first; among equals the lowest id (max_by_key
        // keeps the last maximum, so ids are compared reversed).
        .max_by_key(|v| (index_of(*v), std::cmp::Reverse(*v)))
        .ok_or(HandoverError::NoOtherVoter)
}

/// Whether the leader and the target alone are a majority of every voter
/// set: then the target needs no other vote, and the followers keep their
/// heartbeats (and their leases) through the handover.
pub(crate) fn pair_is_quorum(configs: &[BTreeSet<NodeId>], leader: NodeId, target: NodeId) -> bool {
    is_quorum(configs, &BTreeSet::from([leader, target]))
}

/// Puts the leader back as it was: heartbeats on (and one sent at once, so
/// the followers' leases are renewed before their electors stir), the gate
/// open. The drop is the fallback if the runtime drops the task.
struct Resume<'a> {
    node: &'a Node,
    heartbeats_off: bool,
    done: bool,
}

impl Resume<'_> {
    async fn finish(mut self) {
        if self.heartbeats_off {
            self.node.raft.runtime_config().heartbeat(true);
            if self.node.is_leader() {
                let _ = self.node.raft.trigger().heartbeat().await;
            }
        }
        self.node.handover.reopen();
        self.done = true;
    }
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.node.raft.runtime_config().heartbeat(true);
            self.node.handover.reopen();
        }
    }
}

async fn run(node: &Node, to: Option<NodeId>) -> Result<LeaderHandover, HandoverError> {
    let gate = &node.handover;
    let Ok(_one) = gate.running.try_lock() else {
        return Err(HandoverError::InProgress);
    };
    let (configs, voters, matched) = {
        let m = node.raft.metrics().borrow().clone();
        if m.current_leader != Some(node.id) {
            return Err(HandoverError::NotLeader {
                leader: m.current_leader,
            });
        }
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched: Vec<(NodeId, Option<u64>)> = m
            .replication
            .iter()
            .flatten()
            .map(|(id, l)| (*id, l.as_ref().map(|l| l.index)))
            .collect();
        (membership.get_joint_config().clone(), voters, matched)
    };
    if configs.len() > 1 {
        return Err(HandoverError::MembershipChanging);
    }
    let target = choose_target(node.id, &voters, &matched, to)?;
    let quick = pair_is_quorum(&configs, node.id, target);
    if quick {
        // This leader's vote is free once it is a lease old: waited for
        // before writes are held back, so a leader elected a moment ago
        // does not hold them that long.
        let t = Timing::new(&node.config);
        let age = node
            .raft
            .with_raft_state(|st| st.vote_last_modified().map(|at| at.elapsed()))
            .await
            .map_err(|_| HandoverError::Stopped)?;
        let needed = t.lease + node.config.heartbeat();
        if let Some(wait) = needed.checked_sub(age.unwrap_or(Duration::MAX)) {
            tokio::time::sleep(wait).await;
        }
    }
    let started = Instant::now();
    info!(target, "handing leadership over: holding proposals back");
    gate.close();
    let mut resume = Resume {
        node,
        heartbeats_off: false,
        done: false,
    };
    let res = transfer(node, target, quick, &mut resume).await;
    let paused = started.elapsed();
    resume.finish().await;
    match res {
        Ok((leader_id, term)) => {
            info!(
                leader = leader_id,
                term,
                paused_ms = paused.as_millis() as u64,
                "leadership handed over"
            );
            Ok(LeaderHandover {
                previous_leader: node.id,
                leader_id,
                term,
                paused_ms: paused.as_millis() as u64,
            })
        }
        Err(e) => {
            warn!(target, error = %e, paused_ms = paused.as_millis() as u64, "leadership handover failed");
            Err(e)
        }
    }
}

/// Steps 1 to 5 of the module docs, with the gate closed. Returns the new
/// leader and its term.
async fn transfer(
    node: &Node,
    target: NodeId,
    quick: bool,
    resume: &mut Resume<'_>,
) -> Result<(NodeId, u64), HandoverError> {
    let t = Timing::new(&node.config);
    let margin = node.config.heartbeat();
    let ms = |d: Duration| d.as_millis() as u64;

    // Writes in flight end within their own deadline; one that takes longer
    // than a lease is a leader in trouble, not one to hand over from.
    if tokio::time::timeout(t.lease, node.handover.drained())
        .await
        .is_err()
    {
        return Err(HandoverError::Busy { ms: ms(t.lease) });
    }
    if !quick {
        node.raft.runtime_config().heartbeat(false);
        resume.heartbeats_off = true;
    }
    let last = caught_up(node, target, t.lease).await?;
    if !quick {
        // No AppendEntries left this node since the target caught up (the
        // commit that follows it aside: the margin covers that one).
        tokio::time::sleep(t.lease + margin).await;
    }
    let term = node.raft.metrics().borrow().current_term;
    let addr = node
        .member_addr(target)
        .ok_or(HandoverError::NotAVoter(target))?;
    let req = StandRequest {
        term,
        last_log_id: last,
    };
    let told = PeerClient::new(node.http().clone(), addr)
        .call::<_, StandResponse>(STAND_PATH, &req, t.settle)
        .await;
    let bound = t.lease * 2;
    // With heartbeats off, another follower's elector may have stood on
    // its own once the lease ran out (it stands after the lease plus 0 to
    // 200 ms), and won: leadership moved all the same, which is what the
    // caller asked for.
    if (told.is_err() || matches!(told, Ok(StandResponse::Refused(_)))) && !node.is_leader() {
        return new_leader(node, target, bound).await;
    }
    match told {
        Ok(StandResponse::Standing) => {}
        Ok(StandResponse::Refused(reason)) => {
            return Err(HandoverError::Refused { target, reason })
        }
        // Not sent: nothing changed there.
        Err(e @ PeerError::Unreachable { .. }) | Err(e @ PeerError::Refused { .. }) => {
            return Err(HandoverError::Unreachable {
                target,
                error: e.to_string(),
            })
        }
        // Sent, no answer: it may stand; the wait below tells.
        Err(e) => {
            warn!(target, error = %e, "no answer to the word to stand; waiting for the election")
        }
    }
    new_leader(node, target, bound).await
}

/// Waits until `target`'s matched log index is this leader's last one;
/// returns that entry's id.
async fn caught_up(
    node: &Node,
    target: NodeId,
    bound: Duration,
) -> Result<Option<LogId>, HandoverError> {
    let mut rx = node.raft.metrics();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let (leader, last, matched) = {
            let m = rx.borrow_and_update();
            (m.current_leader, m.last_log_index, matched_of(&m, target))
        };
        if leader != Some(node.id) {
            return Err(HandoverError::LostLeadership { leader });
        }
        if matched.map(|l| l.index) == last {
            return Ok(matched);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(HandoverError::Stopped),
            Err(_) => {
                return Err(HandoverError::TargetBehind {
                    target,
                    ms: bound.as_millis() as u64,
                    matched: matched.map(|l| l.index),
                    last,
                })
            }
        }
    }
}

/// Waits (bounded) until another node leads; its id and term.
async fn new_leader(
    node: &Node,
    target: NodeId,
    bound: Duration,
) -> Result<(NodeId, u64), HandoverError> {
    let mut rx = node.raft.metrics();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let (leader, term) = {
            let m = rx.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        match leader {
            Some(l) if l != node.id => return Ok((l, term)),
            _ => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(HandoverError::Stopped),
            Err(_) if leader == Some(node.id) => {
                return Err(HandoverError::NotElected {
                    target,
                    ms: bound.as_millis() as u64,
                })
            }
            Err(_) => {
                return Err(HandoverError::Unsettled {
                    ms: bound.as_millis() as u64,
                })
            }
        }
    }
}

/// On the successor: the leader's word to stand ([`STAND_PATH`]), from
/// `from` (the authenticated sender). Refused unless `from` is this node's
/// leader in `req.term`, this node votes, and its log holds the leader's
/// last entry; then it stands at once, skipping the elector's lease wait
/// and pre-vote (the leader has seen to the votes).
pub async fn stand(node: &Node, from: NodeId, req: &StandRequest) -> StandResponse {
    let (leader, term, voter) = {
        let m = node.raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == node.id);
        (m.current_leader, m.current_term, voter)
    };
    if leader != Some(from) || term != req.term {
        return StandResponse::Refused(format!(
            "node {} follows {leader:?} in term {term}, not node {from} in term {}",
            node.id, req.term
        ));
    }
    if !voter {
        return StandResponse::Refused(format!("node {} is not a voter", node.id));
    }
    let mine = match node.log_store().last_log_id().await {
        Ok(l) => l,
        Err(e) => return StandResponse::Refused(format!("reading the log: {e}")),
    };
    if mine < req.last_log_id {
        return StandResponse::Refused(format!(
            "node {}'s log ends at {mine:?}, before the leader's {:?}",
            node.id, req.last_log_id
        ));
    }
    info!(
        leader = from,
        term, "the leader hands over to this node: standing for election now"
    );
    node.metrics.elections_started.inc();
    match node.raft.trigger().elect().await {
        Ok(()) => StandResponse::Standing,
        Err(e) => StandResponse::Refused(format!("raft: {e}")),
    }
}

/// Hand leadership over.
///
/// The leader stops taking writes for a moment (they wait, then go to the
/// new leader), lets the chosen voter catch up, and has it elected. A
/// follower forwards the request to its leader. Admin only. Used before
/// restarting or removing the leader's node; a leader asked to stop
/// (SIGTERM) does the same by itself.
#[utoipa::path(
    post,
    path = "/v1/cluster/leader",
    operation_id = "handOverLeadership",
    tag = "cluster",
    request_body(content = LeaderHandoverRequest, description = "Optional: `{\"node_id\": N}` names the new leader; an empty body or `{}` picks the voter furthest along."),
    responses(
        (status = 200, description = "Leadership moved.", body = LeaderHandover),
        (status = 400, description = "`invalid_argument`: `node_id` is not another voter, or there is none.", body = registry_types::ErrorBody),
        (status = 503, description = "`no_leader` or `unavailable`: no leader to ask, a handover already under way, or the target not caught up or not elected in time (the leader keeps leading; the message says why). Retry.", body = registry_types::ErrorBody),
    ),
)]
pub async fn handover_route(
    State(node): State<Node>,
    OptionalJsonBody(body): OptionalJsonBody<serde_json::Value>,
) -> Result<Json<LeaderHandover>, ApiError> {
    // serde reads a struct from an array too (`[2]` would name node 2): a
    // body that is not an object is refused before it is read as one.
    let req: LeaderHandoverRequest = match &body {
        serde_json::Value::Null => LeaderHandoverRequest::default(),
        serde_json::Value::Object(_) => {
            let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
            crate::extract::parse_json(&bytes)?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "the body must be a JSON object such as {\"node_id\": 2}, or empty",
            ))
        }
    };
    if node.is_leader() {
        return Ok(Json(hand_over_report(&node, req.node_id).await?));
    }
    let Some((leader, addr)) = node.leader() else {
        return Err(ApiError::no_leader());
    };
    // Long enough for the leader's whole handover: its steps are bounded
    // by a few leases.
    let timeout = Timing::new(&node.config).lease * 8 + node.config.write_timeout();
    let res: Result<LeaderHandover, HandoverError> = PeerClient::new(node.http().clone(), addr)
        .call(HANDOVER_PATH, &req.node_id, timeout)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("forwarding to the leader (node {leader}): {e}"),
            )
        })?;
    Ok(Json(res?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_voter_furthest_along_is_chosen_lowest_id_among_equals() {
        let v = voters(&[1, 2, 3]);
        assert_eq!(
            choose_target(1, &v, &[(2, Some(10)), (3, Some(12))], None),
            Ok(3)
        );
        assert_eq!(
            choose_target(1, &v, &[(2, Some(12)), (3, Some(12))], None),
            Ok(2)
        );
        // A voter with nothing matched yet still counts, after the others.
        assert_eq!(
            choose_target(1, &v, &[(2, None), (3, Some(1))], None),
            Ok(3)
        );
        assert_eq!(choose_target(1, &v, &[], None), Ok(2));
        // A learner is never chosen, however far along.
        assert_eq!(
            choose_target(1, &voters(&[1, 2]), &[(2, Some(1)), (4, Some(99))], None),
            Ok(2)
        );
    }

    #[test]
    fn a_named_target_must_be_another_voter() {
        let v = voters(&[1, 2, 3]);
        assert_eq!(choose_target(1, &v, &[], Some(3)), Ok(3));
        assert_eq!(
            choose_target(1, &v, &[], Some(1)),
            Err(HandoverError::AlreadyLeader(1))
        );
        assert_eq!(
            choose_target(1, &v, &[(4, Some(9))], Some(4)),
            Err(HandoverError::NotAVoter(4))
        );
        assert_eq!(
            choose_target(1, &voters(&[1]), &[], None),
            Err(HandoverError::NoOtherVoter)
        );
    }

    #[test]
    fn leader_and_target_decide_alone_only_in_a_cluster_of_three() {
        assert!(pair_is_quorum(&[voters(&[1, 2, 3])], 1, 2));
        assert!(pair_is_quorum(&[voters(&[1, 2])], 1, 2));
        assert!(!pair_is_quorum(&[voters(&[1, 2, 3, 4, 5])], 1, 2));
        assert!(!pair_is_quorum(&[voters(&[1, 2, 3, 4])], 1, 2));
    }

    #[tokio::test]
    async fn a_closed_gate_turns_proposals_away_and_waits_for_those_in_flight() {
        let gate = Gate::default();
        assert!(!gate.is_closed());
        let pass = gate.enter().expect("open");
        gate.close();
        assert!(gate.is_closed());
        assert!(gate.enter().is_none());
        // A heartbeat waiting for the gate gives up at its deadline.
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!gate.wait_open(soon).await);
        // The one in flight holds the drain until it ends.
        let drained = gate.drained();
        tokio::pin!(drained);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), drained.as_mut())
                .await
                .is_err()
        );
        drop(pass);
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("drained once the pass is back");
        // Waiters see it open again.
        let deadline = Instant::now() + Duration::from_secs(5);
        let waiting = gate.wait_open(deadline);
        gate.reopen();
        assert!(waiting.await);
        assert!(!gate.is_closed());
        assert!(gate.enter().is_some());
    }
}
