//! Membership changes: adding a node (as a learner, promoted to voter once
//! it has caught up) and removing one, one change at a time, through
//! openraft's joint consensus.
//!
//! - The routes: `GET /v1/cluster/members` (answered locally),
//!   `POST /v1/cluster/members` and `DELETE /v1/cluster/members/{node_id}`
//!   (admin; run by the leader: a follower checks the caller's token, then
//!   forwards the request over the authenticated node-to-node route
//!   [`MEMBERSHIP_PATH`], one hop, retried through elections within the
//!   write timeout).
//! - The leader runs a change as a task of its own ([`Membership`]), so a
//!   client that goes away does not leave it half done; the request waits
//!   for it up to half `--request-timeout-ms` (200 once over, 202 while it
//!   still runs). Its progress (phase, matched index against the target,
//!   since when) is in `GET /v1/cluster` and `GET /v1/cluster/members` of
//!   the leader.
//! - Refused before anything changes: bad input (400), an unknown member
//!   (404), and 409 `membership_conflict` for a change in flight, a node id
//!   or address already a member's, a new node that does not answer as the
//!   node it is said to be or that holds data of a cluster already, and a
//!   change that would leave fewer than a majority of the voters reachable
//!   from the leader (judged from when each last answered its Raft RPCs),
//!   unless `force`.
//! - A `--join` node answers 503 on every public route but `/health/live`
//!   until a leader has added it ([`join_gate`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use registry_raft::network::PeerError;
use registry_raft::ClusterId;
use registry_types::membership::{
    AddMemberRequest, ChangeKind, ChangePhase, MemberList, MembershipChange,
    MembershipChangeResponse, RemoveMemberQuery,
};
use registry_types::{ErrorBody, ErrorCode, NodeId, Timestamp};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Query};
use crate::node::{matched_of, LeaderWait, Node};
use crate::openapi::{BadRequest, Internal, WriteTimeout, WriteUnavailable};

/// Node-to-node route of a membership request a follower forwards.
pub const MEMBERSHIP_PATH: &str = "/internal/membership";
/// Node-to-node route the leader asks a node it is about to add: who are
/// you, and do you belong to a cluster already?
pub const JOIN_PROBE_PATH: &str = "/internal/join-probe";

/// A learner is caught up when its matched index has reached the leader's
/// last index of the moment it was added, and lags the current one by at
/// most this many entries.
const CAUGHT_UP_LAG: u64 = 100;
/// A learner whose matched index does not move for this long while it
/// lags (no log entry, no snapshot taken) is given up and removed.
const CATCH_UP_STALL: Duration = Duration::from_secs(60);
/// However it moves, a learner that has not caught up after this long is
/// given up and removed (writes outpace it).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// How often the leader looks at a learner's progress.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
/// How long the leader waits for a probed node's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A membership request forwarded by a follower to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipRequest {
    Add(AddMemberRequest),
    Remove { node_id: NodeId, force: bool },
}

/// The leader's answer to a [`MembershipRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipAnswer {
    /// The change, over (`Done`) or still running.
    Change(MembershipChangeResponse),
    /// Not the leader (any more): the one it knows of.
    NotLeader { leader: Option<NodeId> },
    /// Refused, or failed: the error the client gets.
    Refused {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
}

/// A node's answer to the leader's [`JOIN_PROBE_PATH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProbe {
    /// The node's `--node-id`.
    pub node_id: NodeId,
    /// Nodes in the membership it holds: 0 for a fresh `--join` node.
    pub members: u64,
    /// The cluster it belongs to, if any.
    pub cluster: Option<ClusterId>,
}

/// The change the leader runs or ran last, and what the request waiting
/// for it needs.
#[derive(Clone, Debug)]
struct Tracked {
    change: MembershipChange,
    started: Instant,
    /// When it ended.
    ended: Option<Instant>,
    /// The error code of a failure (the change says why in `error`).
    failure: Option<ErrorCode>,
}

impl Tracked {
    fn in_flight(&self) -> bool {
        !self.change.phase.is_over()
    }

    /// The change with its elapsed time filled in.
    fn snapshot(&self) -> MembershipChange {
        let mut c = self.change.clone();
        let upto = self.ended.unwrap_or_else(Instant::now);
        c.elapsed_ms = upto.duration_since(self.started).as_millis() as u64;
        c
    }
}

/// The membership part of a node: the change it runs as leader. Cheap to
/// clone.
#[derive(Clone)]
pub struct Membership(Arc<Inner>);

struct Inner {
    node: Node,
    /// The change in flight, or the last one; `None` before any. A watch:
    /// the request that started a change waits on it, and a new change is
    /// admitted atomically (`send_if_modified`).
    current: watch::Sender<Option<Tracked>>,
    /// Set while this leader finishes a joint configuration it inherited.
    finishing: std::sync::atomic::AtomicBool,
}

/// What [`hand_over_first`] did.
enum HandOver {
    /// This node stays leader and removes itself: openraft keeps it
    /// leader until the configuration without it is committed, then it
    /// steps down and the remaining voters elect a leader (about one
    /// election timeout without a leader). Only when no other voter could
    /// take over.
    Stay,
    /// Leadership went to this node; the removal is forwarded to it.
    Moved(NodeId),
}

/// The leader is asked to remove itself: leadership goes first to a
/// caught-up voter ([`crate::handover`]), so the cluster is never without a
/// leader; the new leader then runs the removal. A handover that fails
/// leaves this node leading and refuses the removal with the reason.
async fn hand_over_first(node: &Node) -> ApiResult<HandOver> {
    match crate::handover::hand_over(node, None).await {
        Ok(to) => Ok(HandOver::Moved(to)),
        Err(crate::handover::HandoverError::NoOtherVoter) => Ok(HandOver::Stay),
        Err(e) => Err(ApiError::from(e)),
    }
}

impl Membership {
    pub fn new(node: Node) -> Membership {
        Membership(Arc::new(Inner {
            node,
            current: watch::Sender::new(None),
            finishing: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The change in flight, or the last one; `None` before any, and on a
    /// node that never led one.
    pub fn progress(&self) -> Option<MembershipChange> {
        self.0.current.borrow().as_ref().map(Tracked::snapshot)
    }

    fn node(&self) -> &Node {
        &self.0.node
    }

    /// Updates the change in flight.
    fn update(&self, f: impl FnOnce(&mut MembershipChange)) {
        self.0.current.send_modify(|t| {
            if let Some(t) = t {
                f(&mut t.change);
            }
        });
    }

    /// Ends the change in flight: done, or failed with `code` and `why`.
    fn finish(&self, outcome: Result<(), (ErrorCode, String)>) {
        self.0.current.send_modify(|t| {
            if let Some(t) = t {
                t.ended = Some(Instant::now());
                match outcome {
                    Ok(()) => t.change.phase = ChangePhase::Done,
                    Err((code, why)) => {
                        warn!(node = t.change.node_id, kind = ?t.change.kind, error = %why, "membership change failed");
                        t.change.phase = ChangePhase::Failed;
                        t.change.error = Some(why);
                        t.failure = Some(code);
                    }
                }
            }
        });
    }

    /// Refuses a change while another is in flight, before anything else
    /// is checked or asked ([`Membership::admit`] checks again, atomically).
    /// This leader's view of the membership, as [`View::of`]. A joint
    /// configuration that no change of this leader's is committing was
    /// left by an earlier leader (it lost leadership between the two steps
    /// of a change; openraft does not finish it on its own): this leader
    /// finishes it, to the joint's new voters, in a task of its own, and
    /// the request is refused meanwhile like any other during a change.
    fn view(&self) -> Result<View, LeadError> {
        let view = View::of(self.node());
        if let Err(LeadError::Api(e)) = &view {
            if e.body.error.code == ErrorCode::MembershipConflict && self.check_idle().is_ok() {
                self.finish_joint();
            }
        }
        view
    }

    /// Commits the last voter set of the joint configuration in force (see
    /// [`Membership::view`]), once at a time.
    fn finish_joint(&self) {
        use std::sync::atomic::Ordering;
        if self.0.finishing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let goal = {
                let m = this.node().raft.metrics();
                let m = m.borrow();
                m.membership_config
                    .membership()
                    .get_joint_config()
                    .last()
                    .cloned()
            };
            if let Some(goal) = goal {
                warn!(voters = ?goal, "finishing a membership change an earlier leader left joint");
                match this
                    .node()
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(goal), false)
                    .await
                {
                    Ok(_) => info!("joint configuration finished"),
                    Err(e) => {
                        warn!(error = %e, "could not finish the joint configuration; the next request tries again")
                    }
                }
            }
            this.0.finishing.store(false, Ordering::Release);
        });
    }

    fn check_idle(&self) -> ApiResult<()> {
        match self.0.current.borrow().as_ref().filter(|t| t.in_flight()) {
            None => Ok(()),
            Some(t) => Err(busy_error(&t.snapshot())),
        }
    }

    /// Admits `change` as the one in flight, unless another is.
    fn admit(&self, change: MembershipChange) -> ApiResult<()> {
        let mut busy = None;
        self.0.current.send_if_modified(|t| {
            if let Some(running) = t.as_ref().filter(|t| t.in_flight()) {
                busy = Some(running.snapshot());
                return false;
            }
            *t = Some(Tracked {
                change,
                started: Instant::now(),
                ended: None,
                failure: None,
            });
            true
        });
        match busy {
            None => Ok(()),
            Some(c) => Err(busy_error(&c)),
        }
    }

    /// Runs `req` here if this node leads, else forwards it to the leader
    /// (retrying through elections within the write timeout).
    async fn run(
        &self,
        req: MembershipRequest,
    ) -> ApiResult<(StatusCode, MembershipChangeResponse)> {
        let node = self.node();
        let deadline = Instant::now() + node.config.write_timeout();
        let mut wait = LeaderWait::new(&node.raft);
        loop {
            wait.observe();
            match node.leader() {
                Some((l, _)) if l == node.id => match self.lead(req.clone()).await {
                    Err(LeadError::NotLeader) => {}
                    Err(LeadError::Api(e)) => return Err(e),
                    Err(LeadError::Moved(to)) => {
                        // Leadership was handed over: the new leader
                        // removes this node.
                        info!(
                            leader = to,
                            "leadership handed over; forwarding the removal"
                        );
                    }
                    Ok(answer) => return Ok(answer),
                },
                Some((_, addr)) => {
                    let timeout = node.config.request_timeout() * 3 / 4;
                    match node
                        .http()
                        .peer(addr)
                        .call::<_, MembershipAnswer>(MEMBERSHIP_PATH, &req, timeout)
                        .await
                    {
                        Ok(MembershipAnswer::Change(c)) => return Ok((status_of(&c.change), c)),
                        Ok(MembershipAnswer::Refused {
                            code,
                            message,
                            field,
                        }) => {
                            let mut body = ErrorBody::new(code, message);
                            body.error.field = field;
                            return Err(ApiError::from(body));
                        }
                        Ok(MembershipAnswer::NotLeader { .. })
                        | Err(PeerError::Unreachable { .. }) => {}
                        Err(e @ PeerError::Refused { .. }) => {
                            warn!(error = %e, "the leader refused a forwarded membership request");
                            return Err(ApiError::internal());
                        }
                        Err(e) => {
                            warn!(error = %e, "forwarded membership request failed");
                            return Err(ApiError::timeout(
                                "the leader did not answer in time; the change may be under way: see GET /v1/cluster on the leader",
                            ));
                        }
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

    /// On the leader: checks `req`, starts it and waits for it (bounded).
    async fn lead(
        &self,
        req: MembershipRequest,
    ) -> Result<(StatusCode, MembershipChangeResponse), LeadError> {
        let mut rx = self.0.current.subscribe();
        match req {
            MembershipRequest::Add(add) => self.start_add(add).await?,
            MembershipRequest::Remove { node_id, force } => {
                self.start_remove(node_id, force).await?
            }
        }
        // Waits for the change to end, up to half the request timeout;
        // the change goes on without the request.
        let within = self.node().config.request_timeout() / 2;
        let _ = tokio::time::timeout(
            within,
            rx.wait_for(|t| t.as_ref().is_some_and(|t| !t.in_flight())),
        )
        .await;
        let tracked = self.0.current.borrow().clone();
        let Some(tracked) = tracked else {
            return Err(LeadError::Api(ApiError::internal()));
        };
        if let Some(code) = tracked.failure {
            let why = tracked.change.error.clone().unwrap_or_default();
            return Err(LeadError::Api(ApiError::new(code, why)));
        }
        let change = tracked.snapshot();
        Ok((
            status_of(&change),
            MembershipChangeResponse {
                change,
                members: self.node().cluster_info().members,
            },
        ))
    }

    /// Checks an addition and starts it.
    async fn start_add(&self, req: AddMemberRequest) -> Result<(), LeadError> {
        let node = self.node().clone();
        let AddMemberRequest {
            node_id,
            address,
            voter,
            force,
        } = req;
        if node_id == 0 {
            return Err(ApiError::invalid("node_id", "node ids start at 1").into());
        }
        let address = address.trim().to_string();
        crate::config::check_member_addr(&address).map_err(|m| ApiError::invalid("address", m))?;
        let view = self.view()?;
        self.check_idle()?;
        let resume = match view.nodes.iter().find(|(id, _)| *id == node_id) {
            // A learner at that address, to be promoted: a learner added
            // with `voter: false`, or left after a change that ran out.
            Some((_, addr)) if *addr == address && voter && !view.voters.contains(&node_id) => true,
            Some((_, addr)) => {
                let role = if view.voters.contains(&node_id) {
                    "voter"
                } else {
                    "learner"
                };
                return Err(conflict(format!(
                    "node {node_id} is a member already ({role} at {addr}); a replacement takes a new node id"
                ))
                .with_field("node_id")
                .into());
            }
            None => false,
        };
        if let Some((other, _)) = view
            .nodes
            .iter()
            .find(|(id, a)| *a == address && *id != node_id)
        {
            return Err(conflict(format!(
                "address {address} is member {other}'s: remove node {other} first to reuse it"
            ))
            .with_field("address")
            .into());
        }
        if voter && !force {
            let mut after = view.voters.clone();
            after.insert(node_id);
            // The new node answers by the time it is promoted.
            let mut reachable = self.reachable(&after);
            reachable.insert(node_id);
            check_majority(&after, &reachable, "adding")?;
        }
        if !resume {
            self.probe(node_id, &address).await?;
        }
        let target = node.raft.metrics().borrow().last_log_index.unwrap_or(0);
        self.admit(MembershipChange {
            kind: ChangeKind::Add,
            node_id,
            address: address.clone(),
            voter,
            phase: ChangePhase::CatchingUp,
            matched_index: None,
            target_index: target,
            since: Timestamp::now(),
            elapsed_ms: 0,
            error: None,
        })?;
        info!(node = node_id, %address, voter, "adding a member");
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = this.run_add(node_id, address, voter, force, resume).await;
            this.finish(outcome);
        });
        Ok(())
    }

    /// Asks the node at `address` who it is: it must answer as `node_id`,
    /// hold no membership and belong to no other cluster.
    async fn probe(&self, node_id: NodeId, address: &str) -> ApiResult<()> {
        let node = self.node();
        let answer: Result<JoinProbe, PeerError> = node
            .http()
            .peer(address)
            .call(JOIN_PROBE_PATH, &(), PROBE_TIMEOUT)
            .await;
        let probe = match answer {
            Ok(p) => p,
            Err(PeerError::Refused { status, .. }) if status == 401 || status == 403 => {
                return Err(conflict(format!(
                    "the node at {address} refused the leader (HTTP {status}): it must name itself {address} (its --advertise or --peer-advertise address) and share this cluster's peer authentication (--cluster-secret-file or the peer CA); its log says why"
                ))
                .with_field("address"))
            }
            Err(PeerError::Refused { status: 404, .. }) => {
                return Err(conflict(format!(
                    "the node at {address} does not answer the join probe (HTTP 404): it runs an older release, or {address} is not a registry node's peer address"
                ))
                .with_field("address"))
            }
            Err(e) => {
                return Err(ApiError::unavailable(format!(
                    "cannot reach the node at {address} ({e}): start it first, with an empty data directory and --join"
                )))
            }
        };
        if probe.node_id != node_id {
            return Err(conflict(format!(
                "the node at {address} is node {}, not node {node_id}",
                probe.node_id
            ))
            .with_field("node_id"));
        }
        if probe.members > 0 {
            return Err(conflict(format!(
                "the node at {address} holds a membership already (its data directory is not empty): add a node started with --join and an empty data directory"
            ))
            .with_field("address"));
        }
        let ours = node.identity().get();
        if let (Some(theirs), Some(ours)) = (probe.cluster, ours) {
            if theirs != ours {
                return Err(conflict(format!(
                    "the node at {address} belongs to cluster {theirs}, this one is {ours}"
                ))
                .with_field("address"));
            }
        }
        Ok(())
    }

    /// The addition, once admitted: learner, catch-up, promotion.
    async fn run_add(
        &self,
        node_id: NodeId,
        address: String,
        voter: bool,
        force: bool,
        resume: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let node = self.node().clone();
        if !resume {
            let added = node
                .raft
                .add_learner(node_id, BasicNode::new(address.clone()), false)
                .await;
            if let Err(e) = added {
                return Err(write_failure("adding the learner", e));
            }
        }
        if let Err(why) = self.catch_up(node_id).await {
            // Given up: the learner goes again, so a change either ends
            // with the node a member or leaves the membership as it was.
            if node.is_leader() {
                let removed = node
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])), false)
                    .await;
                if let Err(e) = removed {
                    warn!(node = node_id, error = %e, "could not remove the learner that did not catch up");
                    return Err((
                        ErrorCode::Unavailable,
                        format!("{why}; it is still a learner: remove it (DELETE /v1/cluster/members/{node_id})"),
                    ));
                }
            }
            return Err((ErrorCode::Unavailable, format!("{why}; removed it again")));
        }
        if !voter {
            info!(node = node_id, "learner caught up; left a learner as asked");
            return Ok(());
        }
        if !force {
            let view = View::of(&node).map_err(|_| not_leader_failure())?;
            let mut after = view.voters.clone();
            after.insert(node_id);
            let reachable = self.reachable(&after);
            if let Err(e) = check_majority(&after, &reachable, "promoting") {
                return Err((
                    ErrorCode::MembershipConflict,
                    format!(
                        "{}; node {node_id} is left a learner: add it again to promote it",
                        e.body.error.message
                    ),
                ));
            }
        }
        self.update(|c| c.phase = ChangePhase::Promoting);
        info!(node = node_id, "learner caught up; promoting it to voter");
        node.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(|e| write_failure("promoting the learner", e))?;
        info!(node = node_id, "member added as voter");
        Ok(())
    }

    /// Waits until learner `node_id` has caught up, publishing its
    /// progress; `Err` with the reason when it stalls, runs out of time
    /// or this node stops leading.
    async fn catch_up(&self, node_id: NodeId) -> Result<(), String> {
        let node = self.node();
        let mut metrics = node.raft.metrics();
        let start = Instant::now();
        let first_target = metrics.borrow().last_log_index.unwrap_or(0);
        let (mut best, mut moved) = (None::<u64>, Instant::now());
        loop {
            let (matched, last, leads) = {
                let m = metrics.borrow_and_update();
                (
                    matched_of(&m, node_id).map(|l| l.index),
                    m.last_log_index.unwrap_or(0),
                    m.current_leader == Some(node.id),
                )
            };
            if !leads {
                return Err(format!(
                    "this node stopped leading while node {node_id} caught up"
                ));
            }
            self.update(|c| {
                c.matched_index = matched;
                c.target_index = last;
            });
            if let Some(m) = matched {
                if m >= first_target && last.saturating_sub(m) <= CAUGHT_UP_LAG {
                    return Ok(());
                }
                if best.is_none_or(|b| m > b) {
                    best = Some(m);
                    moved = Instant::now();
                }
            }
            if moved.elapsed() > CATCH_UP_STALL {
                return Err(format!(
                    "node {node_id} took nothing for {} s (matched index {matched:?}, target {last}): is it running with --join, and reachable?",
                    CATCH_UP_STALL.as_secs()
                ));
            }
            if start.elapsed() > CATCH_UP_LIMIT {
                return Err(format!(
                    "node {node_id} did not catch up within {} s (matched index {matched:?}, target {last})",
                    CATCH_UP_LIMIT.as_secs()
                ));
            }
            let _ = tokio::time::timeout(CATCH_UP_POLL, metrics.changed()).await;
        }
    }

    /// Checks a removal and starts it.
    async fn start_remove(&self, node_id: NodeId, force: bool) -> Result<(), LeadError> {
        let node = self.node().clone();
        let view = self.view()?;
        self.check_idle()?;
        let Some((_, address)) = view.nodes.iter().find(|(id, _)| *id == node_id).cloned() else {
            return Err(ApiError::new(
                ErrorCode::MemberNotFound,
                format!("node {node_id} is not a member"),
            )
            .into());
        };
        let voter = view.voters.contains(&node_id);
        if voter {
            let mut after = view.voters.clone();
            after.remove(&node_id);
            if after.is_empty() {
                return Err(conflict(format!(
                    "node {node_id} is the last voter: a cluster cannot remove all its voters"
                ))
                .into());
            }
            if !force {
                let reachable = self.reachable(&after);
                check_majority(&after, &reachable, "removing")?;
            }
        }
        if node_id == node.id {
            if let HandOver::Moved(to) = hand_over_first(&node).await? {
                return Err(LeadError::Moved(to));
            }
        }
        self.admit(MembershipChange {
            kind: ChangeKind::Remove,
            node_id,
            address: address.clone(),
            voter,
            phase: ChangePhase::Removing,
            matched_index: None,
            target_index: node.raft.metrics().borrow().last_log_index.unwrap_or(0),
            since: Timestamp::now(),
            elapsed_ms: 0,
            error: None,
        })?;
        info!(node = node_id, %address, voter, "removing a member");
        let this = self.clone();
        tokio::spawn(async move {
            let changes = if voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            let outcome = this
                .node()
                .raft
                .change_membership(changes, false)
                .await
                .map(|_| info!(node = node_id, "member removed"))
                .map_err(|e| write_failure("removing the member", e));
            this.finish(outcome);
        });
        Ok(())
    }

    /// The voters of `among` the leader has heard from within three
    /// election timeouts, itself included.
    fn reachable(&self, among: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let node = self.node();
        let within = Duration::from_millis(node.config.election_timeout_ms().1 * 3);
        among
            .iter()
            .copied()
            .filter(|id| {
                *id == node.id || node.peer_acks.since(*id).is_some_and(|ago| ago <= within)
            })
            .collect()
    }
}

/// Why the leader's part did not answer.
enum LeadError {
    /// Not the leader (any more): try the one there is.
    NotLeader,
    /// Leadership was handed to this node first.
    Moved(NodeId),
    Api(ApiError),
}

impl From<ApiError> for LeadError {
    fn from(e: ApiError) -> Self {
        LeadError::Api(e)
    }
}

/// The membership as the leader holds it.
struct View {
    /// Every member with its address.
    nodes: Vec<(NodeId, String)>,
    voters: BTreeSet<NodeId>,
}

impl View {
    /// This leader's view; refuses while a joint configuration (another
    /// change) is not yet committed.
    fn of(node: &Node) -> Result<View, LeadError> {
        let m = node.raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(node.id) {
            return Err(LeadError::NotLeader);
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Err(conflict(
                "a membership change is being committed (joint configuration): one change at a time; retry once it is done",
            )
            .into());
        }
        Ok(View {
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            voters: membership.voter_ids().collect(),
        })
    }
}

/// Refuses a change after which fewer than a majority of `voters` are
/// `reachable`.
fn check_majority(
    voters: &BTreeSet<NodeId>,
    reachable: &BTreeSet<NodeId>,
    doing: &str,
) -> ApiResult<()> {
    let needed = voters.len() / 2 + 1;
    let up: Vec<NodeId> = voters.intersection(reachable).copied().collect();
    if up.len() >= needed {
        return Ok(());
    }
    let down: Vec<NodeId> = voters.difference(reachable).copied().collect();
    Err(conflict(format!(
        "{doing} would leave voters {voters:?} with {} reachable from the leader ({up:?}; not answering: {down:?}), fewer than the {needed} a majority needs: bring them back first, or give force to do it anyway",
        up.len()
    )))
}

/// The refusal of a change while `c` is in flight.
fn busy_error(c: &MembershipChange) -> ApiError {
    conflict(format!(
        "a membership change is in flight ({} node {}, {:?} for {} ms): one change at a time; follow it in GET /v1/cluster",
        kind_name(c.kind),
        c.node_id,
        c.phase,
        c.elapsed_ms
    ))
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::MembershipConflict, message)
}

trait WithField {
    fn with_field(self, field: &str) -> Self;
}

impl WithField for ApiError {
    fn with_field(mut self, field: &str) -> Self {
        self.body.error.field = Some(field.to_string());
        self
    }
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Add => "adding",
        ChangeKind::Remove => "removing",
    }
}

fn not_leader_failure() -> (ErrorCode, String) {
    (
        ErrorCode::Unavailable,
        "this node stopped leading during the change; the new leader holds the membership as far as it was committed: see GET /v1/cluster/members".into(),
    )
}

/// A failed `add_learner` or `change_membership`, as the change's error.
fn write_failure(
    doing: &str,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> (ErrorCode, String) {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => not_leader_failure(),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            (ErrorCode::MembershipConflict, format!("{doing}: {e}"))
        }
        RaftError::Fatal(f) => (ErrorCode::Unavailable, format!("{doing}: {f}")),
    }
}

/// 200 once a change is over, 202 while it runs.
fn status_of(change: &MembershipChange) -> StatusCode {
    if change.phase.is_over() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

/// The members as this node sees them.
#[utoipa::path(
    get,
    path = "/v1/cluster/members",
    operation_id = "listMembers",
    tag = "cluster",
    responses(
        (status = 200, description = "Every member (voters and learners) as this node sees them, and on the leader the change in flight or the last one.", body = MemberList),
    ),
)]
pub async fn list_members(
    State(node): State<Node>,
    State(membership): State<Membership>,
) -> Json<MemberList> {
    let info = node.cluster_info();
    Json(MemberList {
        leader_id: info.leader_id,
        members: info.members,
        membership_change: membership.progress(),
    })
}

/// Adds a node: as a learner, then (with `voter`, the default) promoted to
/// voter once it has caught up.
///
/// The node must be running, started with `--join` and an empty data
/// directory. Run by the leader (a follower forwards it); one change at a
/// time. Answers once the change is over (200), or after half
/// `--request-timeout-ms` with the change still running (202: follow it in
/// `GET /v1/cluster` of the leader). A learner that does not catch up (no
/// progress for 60 s, or not caught up within 10 min) is removed again.
#[utoipa::path(
    post,
    path = "/v1/cluster/members",
    operation_id = "addMember",
    tag = "cluster",
    request_body = AddMemberRequest,
    responses(
        (status = 200, description = "Added (`change.phase`: `done`).", body = MembershipChangeResponse),
        (status = 202, description = "Still catching up or promoting; follow `membership_change` in `GET /v1/cluster` of the leader.", body = MembershipChangeResponse),
        (status = 400, response = BadRequest),
        (status = 409, description = "`membership_conflict`: a change in flight, the id or address a member's already, the node answers as another or holds data already, or too few voters would be reachable (unless `force`).", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn add_member(
    State(membership): State<Membership>,
    JsonBody(req): JsonBody<AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<MembershipChangeResponse>)> {
    let (status, body) = membership.run(MembershipRequest::Add(req)).await?;
    Ok((status, Json(body)))
}

/// Removes a node (voter or learner).
///
/// Run by the leader (a follower forwards it); one change at a time. The
/// removed node stops taking part; stop its process afterwards.
#[utoipa::path(
    delete,
    path = "/v1/cluster/members/{node_id}",
    operation_id = "removeMember",
    tag = "cluster",
    params(
        ("node_id" = u64, Path, description = "The member's node id."),
        RemoveMemberQuery,
    ),
    responses(
        (status = 200, description = "Removed (`change.phase`: `done`).", body = MembershipChangeResponse),
        (status = 202, description = "Still being committed; follow `membership_change` in `GET /v1/cluster` of the leader.", body = MembershipChangeResponse),
        (status = 400, response = BadRequest),
        (status = 404, description = "`member_not_found`: no member with that id.", body = ErrorBody),
        (status = 409, description = "`membership_conflict`: a change in flight, the last voter, or too few of the remaining voters reachable (unless `force`).", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn remove_member(
    State(membership): State<Membership>,
    Path(raw): Path<String>,
    Query(query): Query<RemoveMemberQuery>,
) -> ApiResult<(StatusCode, Json<MembershipChangeResponse>)> {
    let node_id: NodeId = raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::invalid(
            "node_id",
            format!("'{raw}' is not a node id (a positive integer)"),
        )
    })?;
    let (status, body) = membership
        .run(MembershipRequest::Remove {
            node_id,
            force: query.force,
        })
        .await?;
    Ok((status, Json(body)))
}

/// A follower's forwarded membership request (node-to-node; the follower
/// checked the caller's token).
pub async fn forwarded(State(membership): State<Membership>, body: Bytes) -> Response {
    let req: MembershipRequest = match crate::internal::decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let answer = match membership.lead(req).await {
        Ok((_, change)) => MembershipAnswer::Change(change),
        Err(LeadError::NotLeader) | Err(LeadError::Moved(_)) => MembershipAnswer::NotLeader {
            leader: membership.node().leader().map(|(id, _)| id),
        },
        Err(LeadError::Api(e)) => MembershipAnswer::Refused {
            code: e.body.error.code,
            message: e.body.error.message,
            field: e.body.error.field,
        },
    };
    crate::internal::encode(&answer)
}

/// The leader's question to a node it is about to add.
pub async fn join_probe(State(node): State<Node>) -> Response {
    let members = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .count() as u64;
    crate::internal::encode(&JoinProbe {
        node_id: node.id,
        members,
        cluster: node.identity().get(),
    })
}

/// In front of the public routes of a `--join` node: 503 on all but
/// `/health/live` until a leader has added it (or after it was removed).
pub async fn join_gate(State(node): State<Node>, req: Request, next: Next) -> Response {
    if !node.config.join || req.uri().path() == "/health/live" || node.is_member() {
        return next.run(req).await;
    }
    ApiError::unavailable(format!(
        "node {} (--join) is not a member of a cluster yet: add it on the cluster with POST /v1/cluster/members {{\"node_id\": {}, \"address\": \"{}\"}}",
        node.id,
        node.id,
        node.config.peer_advertise_addr()
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::error::{ChangeMembershipError, EmptyMembership, Fatal, ForwardToLeader};

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    fn change(phase: ChangePhase) -> MembershipChange {
        MembershipChange {
            kind: ChangeKind::Remove,
            node_id: 4,
            address: "127.0.0.1:8014".into(),
            voter: true,
            phase,
            matched_index: None,
            target_index: 0,
            since: Timestamp(0),
            elapsed_ms: 0,
            error: None,
        }
    }

    #[test]
    fn a_majority_of_the_voters_must_stay_reachable() {
        // 2 of 3, 3 of 5 and 1 of 1 are majorities.
        assert!(check_majority(&ids(&[1, 2, 3]), &ids(&[1, 2]), "removing").is_ok());
        assert!(check_majority(&ids(&[1, 2, 3, 4, 5]), &ids(&[1, 2, 3]), "adding").is_ok());
        assert!(check_majority(&ids(&[1]), &ids(&[1]), "removing").is_ok());
        // Reachable nodes that are not voters do not count.
        assert!(check_majority(&ids(&[1, 2, 3]), &ids(&[1, 4, 5]), "adding").is_err());
        // 2 of 4 is not a majority (an even count needs more than half).
        let e = check_majority(&ids(&[1, 2, 3, 4]), &ids(&[1, 2]), "adding").unwrap_err();
        assert_eq!(e.body.error.code, ErrorCode::MembershipConflict);
        let m = e.body.error.message;
        assert!(
            m.starts_with("adding would leave voters {1, 2, 3, 4}"),
            "{m}"
        );
        assert!(m.contains("with 2 reachable"), "{m}");
        assert!(m.contains("not answering: [3, 4]"), "{m}");
        assert!(m.contains("fewer than the 3 a majority needs"), "{m}");
        let e = check_majority(&ids(&[1, 2, 3]), &ids(&[1]), "removing").unwrap_err();
        assert!(
            e.body
                .error
                .message
                .contains("fewer than the 2 a majority needs"),
            "{}",
            e.body.error.message
        );
    }

    #[test]
    fn a_change_in_flight_is_named_in_the_refusal_of_the_next() {
        let mut c = change(ChangePhase::Removing);
        c.elapsed_ms = 1500;
        let e = busy_error(&c);
        assert_eq!(e.body.error.code, ErrorCode::MembershipConflict);
        assert_eq!(
            e.body.error.message,
            "a membership change is in flight (removing node 4, Removing for 1500 ms): one change at a time; follow it in GET /v1/cluster"
        );
        c.kind = ChangeKind::Add;
        assert!(busy_error(&c)
            .body
            .error
            .message
            .contains("(adding node 4,"));
        let e = conflict("why").with_field("address");
        assert_eq!(e.body.error.message, "why");
        assert_eq!(e.body.error.field.as_deref(), Some("address"));
    }

    #[test]
    fn a_change_answers_200_once_over_and_202_while_it_runs() {
        assert_eq!(status_of(&change(ChangePhase::Done)), StatusCode::OK);
        assert_eq!(status_of(&change(ChangePhase::Failed)), StatusCode::OK);
        assert_eq!(
            status_of(&change(ChangePhase::CatchingUp)),
            StatusCode::ACCEPTED
        );
        let started = Instant::now();
        let running = Tracked {
            change: change(ChangePhase::Promoting),
            started,
            ended: None,
            failure: None,
        };
        assert!(running.in_flight());
        let over = Tracked {
            change: change(ChangePhase::Done),
            ended: Some(started + Duration::from_millis(1234)),
            ..running.clone()
        };
        assert!(!over.in_flight());
        // Once over, the elapsed time stops at the end.
        let seen = over.snapshot();
        assert_eq!(seen.elapsed_ms, 1234);
        assert_eq!(seen.node_id, 4);
        assert_eq!(seen.phase, ChangePhase::Done);
    }

    #[test]
    fn a_failed_raft_change_is_told_by_its_cause() {
        let (code, why) = write_failure(
            "promoting the learner",
            RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader::empty())),
        );
        assert_eq!(code, ErrorCode::Unavailable);
        assert!(why.starts_with("this node stopped leading"), "{why}");
        assert_eq!((code, why), not_leader_failure());
        let (code, why) = write_failure(
            "removing the member",
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::EmptyMembership(EmptyMembership {}),
            )),
        );
        assert_eq!(code, ErrorCode::MembershipConflict);
        assert!(why.starts_with("removing the member: "), "{why}");
        let (code, why) = write_failure("adding the learner", RaftError::Fatal(Fatal::Stopped));
        assert_eq!(code, ErrorCode::Unavailable);
        assert_eq!(why, "adding the learner: raft stopped");
    }
}
