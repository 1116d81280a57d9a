//! Liveness: heartbeats kept in the leader's memory, batched checkpoints,
//! and expiry decided by the leader alone on a monotonic clock.
//!
//! - A heartbeat is not a Raft entry. The leader records it in a sharded
//!   [`LeaseTable`] (O(1), no fsync); followers forward theirs to the leader,
//!   many per call ([`HeartbeatForwarder`]).
//! - Every checkpoint interval the leader proposes one `Checkpoint` entry
//!   with the last heartbeat time and reported status, health and load of
//!   the agents that beat since the previous one: that is how followers (and
//!   a future leader) learn them.
//! - Every sweep interval the leader compares each agent's silence with its
//!   deadlines ([`plan_sweep`]) and proposes `Expire` entries in batches,
//!   each naming the agent's registration epoch.
//! - A new leader restarts every deadline from `max(last checkpointed
//!   heartbeat + limit, leadership start + grace)`: never a full TTL for
//!   everybody (dead agents would live forever under leader churn), never an
//!   instant expiry (a stalled leader would expire the whole fleet). A sweep
//!   that finds the clock jumped (the process was paused) restarts the grace
//!   the same way.
//! - The brake ([`Brake`]): when one sweep would take more than a share of
//!   the live fleet offline at once, the leader is more likely cut off than
//!   the agents dead; offline transitions and removals are held, an event
//!   and a metric say so, and it releases by itself.
//!
//! The module's rooms: [`lease`] (the heartbeat table), [`sweep`] (which
//! transitions are due), [`brake`] (holding mass expiry), `leader` (the
//! tasks a leader runs: checkpoints, sweeps, the quorum tracker) and
//! `forward` (a follower's heartbeats, coalesced and sent to the leader).

pub mod brake;
mod forward;
mod leader;
pub mod lease;
pub mod sweep;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use registry_types::api::HeartbeatResponse;
use registry_types::{AgentId, ErrorBody, ErrorCode, Timestamp};

use crate::coalesce::Coalescer;
use crate::error::ApiError;
use crate::node::Node;

pub use brake::{Brake, BrakeChange, BrakeDecision};
use forward::{Item, ItemResult};
pub use forward::{ItemError, FORWARD_BATCH, HEARTBEATS_PATH};
pub use lease::{Beat, LeaseTable};
pub use sweep::{plan_sweep, step_for, wall_to_instant, SweepPlan};

/// Liveness of one node: the heartbeat path (recorded here when leading,
/// forwarded otherwise) and, while it leads, checkpoints, sweeps and the
/// brake. Cheap to clone.
#[derive(Clone)]
pub struct Liveness(Arc<State>);

impl std::ops::Deref for Liveness {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

/// What [`Liveness`] holds.
pub struct State {
    node: Node,
    pub leases: LeaseTable,
    /// Start of the current grace: leadership start or end of a stall.
    since: Mutex<Option<Instant>>,
    brake: Mutex<Brake>,
    /// A follower's heartbeats on their way to the leader.
    forwarder: Arc<Coalescer<Item, Result<ItemResult, ApiError>>>,
    /// Registry revision after the last checkpoint this leader proposed:
    /// with scaling policies in place, a change since then (a registration,
    /// a status change) is reason enough for an empty checkpoint, so that
    /// advisories follow within one checkpoint interval.
    evaluated_revision: AtomicU64,
    /// When a quorum last acknowledged this leader, as read from Raft's
    /// metrics: heartbeats are recorded only while that is recent, so a
    /// leader cut off from the others (or paused and resumed, still
    /// believing it leads) stops telling agents they were heard.
    quorum_ack_at: Mutex<Option<Instant>>,
    /// When the quorum tracker last ran. A reading it took just after the
    /// process was paused may be stale (see `spawn_quorum_tracker`), and one
    /// it has not retaken since a pause is: either way the window is shut.
    tracker_ran_at: Mutex<Option<Instant>>,
    /// Heartbeats recorded since the last checkpoint, which carries the
    /// count into the replicated `health_checks_performed` counter.
    heartbeats_since_checkpoint: AtomicU64,
}

impl Liveness {
    /// The liveness of `node`, with its leader tasks started: they run
    /// whenever the node leads.
    pub fn start(node: Node) -> Liveness {
        let config = &node.config;
        let brake = Brake::new(
            config.brake_fraction,
            Duration::from_secs(config.brake_max_hold_seconds),
            config.brake_min_fleet,
        );
        let liveness = Liveness(Arc::new(State {
            leases: LeaseTable::default(),
            since: Mutex::new(None),
            brake: Mutex::new(brake),
            forwarder: Coalescer::new(forward::FORWARD_BATCH),
            evaluated_revision: AtomicU64::new(0),
            quorum_ack_at: Mutex::new(None),
            tracker_ran_at: Mutex::new(None),
            heartbeats_since_checkpoint: AtomicU64::new(0),
            node,
        }));
        liveness.spawn_leader_tasks();
        liveness
    }

    /// Whether this node's liveness task runs for the current leadership:
    /// its lease table was cleared for it and deadlines have a start. A
    /// beat recorded before that would be wiped by the clear.
    fn leading(&self) -> bool {
        self.since.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    fn set_quorum_ack(&self, at: Option<Instant>) {
        if let Ok(mut q) = self.quorum_ack_at.lock() {
            *q = at;
        }
    }

    fn set_tracker_ran(&self, at: Instant) {
        if let Ok(mut t) = self.tracker_ran_at.lock() {
            *t = Some(at);
        }
    }

    /// Time since a quorum last acknowledged this leader; `None` when never,
    /// or when the tracker has not run for `stale` (the process was paused
    /// or starved, and what it last read may no longer hold).
    fn since_quorum_ack(&self, stale: Duration) -> Option<Duration> {
        let ran = self.tracker_ran_at.lock().ok().and_then(|t| *t)?;
        if ran.elapsed() > stale {
            return None;
        }
        self.quorum_ack_at
            .lock()
            .ok()
            .and_then(|q| q.map(|t| t.elapsed()))
    }

    fn set_since(&self, t: Option<Instant>) {
        if let Ok(mut s) = self.since.lock() {
            *s = t;
        }
    }

    /// Accepts a heartbeat: recorded here if this node leads, else forwarded
    /// to the leader (coalesced with concurrent ones). Its time here, answer
    /// or error, goes into `agent_registry_heartbeat_latency_seconds`.
    pub async fn heartbeat(&self, id: AgentId, beat: Beat) -> Result<HeartbeatResponse, ApiError> {
        let started = Instant::now();
        let res = if self.settled_leader().await {
            self.leader_heartbeat(&id, beat).map_err(ApiError::from)
        } else {
            match self.forward((id, beat)).await {
                Ok(res) => res.map_err(|e| ApiError::from(ErrorBody::from(e))),
                Err(e) => Err(e),
            }
        };
        self.node
            .metrics
            .heartbeat_latency
            .observe(started.elapsed().as_secs_f64());
        res
    }

    /// Whether this node leads, after waiting (bounded) for the moments a
    /// leader would otherwise refuse a beat that a moment later it takes,
    /// so that a leadership handover fails no heartbeat:
    /// - a handover of its leadership under way: a beat taken then would
    ///   be recorded by a leader about to step down, so it waits for the
    ///   handover's end (bounded by the write timeout) and then goes to
    ///   whichever node leads;
    /// - a leadership milliseconds old: the liveness task has not reset
    ///   the lease table yet, or no quorum has acknowledged it yet. The
    ///   wait is bounded by the quorum window; a leader cut off from the
    ///   others still refuses at once (its last acknowledgement is old,
    ///   not absent).
    pub async fn settled_leader(&self) -> bool {
        if !self.node.is_leader() {
            return false;
        }
        if self.node.handover.is_closed() {
            let deadline = std::time::Instant::now() + self.node.config.write_timeout();
            self.node.handover.wait_open(deadline).await;
        }
        let settled = || {
            self.leading()
                && self
                    .quorum_ack_at
                    .lock()
                    .map(|q| q.is_some())
                    .unwrap_or(true)
        };
        let deadline = Instant::now() + self.node.config.quorum_window();
        while self.node.is_leader() && !settled() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.node.is_leader()
    }

    /// On the leader: checks the agent exists and records the beat.
    pub fn leader_heartbeat(
        &self,
        id: &AgentId,
        beat: Beat,
    ) -> Result<HeartbeatResponse, ErrorBody> {
        // A leader that has not heard from a quorum for that long may be on
        // the wrong side of a partition, and beats it records would be lost
        // with it (see `Config::quorum_window`).
        let quorum_window = self.node.config.quorum_window();
        if self
            .since_quorum_ack(self.node.config.quorum_tracker_stale())
            .is_none_or(|d| d > quorum_window)
        {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "this leader has not heard from a quorum recently and may have been replaced; retry on another node",
            ));
        }
        if !self.leading() {
            // Elected a moment ago: the liveness task has not yet reset the
            // lease table for this term. Recording now would be undone by
            // that reset while the agent is told it was heard (the chaos
            // tests caught agents going offline a TTL early this way).
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "this node became leader a moment ago and is not yet recording heartbeats; retry",
            ));
        }
        let limits = self.node.config.limits();
        let wall = Timestamp::now();
        // The state's read guard is held while the lease shard is locked
        // (the order every path takes them in: state, then lease shard), so
        // the metrics limit is checked against the record as it is and the
        // beats pending for it at once.
        let (current, ttl, reported) = {
            let g = self.node.shared.read();
            let r = g.registry.get(id).ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::AgentNotFound,
                    format!("agent '{id}' is not registered; register it again"),
                )
            })?;
            // The token the beat was sent with, checked against this
            // leader's table: a revoked one is gone from it once the
            // revocation has answered.
            if let Some(token) = &beat.token {
                let t = g.registry.token(token).ok_or_else(|| {
                    ErrorBody::new(
                        ErrorCode::Unauthenticated,
                        format!("token {token} does not exist (it was revoked)"),
                    )
                })?;
                if t.expired_at(wall) {
                    return Err(ErrorBody::new(
                        ErrorCode::Unauthenticated,
                        format!("token {token} has expired"),
                    ));
                }
                registry_types::auth::permits_heartbeat(
                    registry_types::auth::Rights::of(t),
                    id,
                    &r.runtime_id,
                )
                .map_err(|m| ErrorBody::new(ErrorCode::Forbidden, m))?;
            }
            let reported = self.leases.beat(
                id,
                beat,
                &r.performance_metrics,
                &limits,
                Instant::now(),
                wall,
            )?;
            (r.status, r.ttl_seconds, reported)
        };
        let status = current.after_heartbeat(reported);
        self.node.metrics.heartbeats.inc();
        self.heartbeats_since_checkpoint
            .fetch_add(1, Ordering::Relaxed);
        Ok(HeartbeatResponse {
            agent_id: id.clone(),
            status,
            ttl_seconds: ttl,
            next_heartbeat_ms: next_heartbeat_ms(ttl),
            last_heartbeat: wall,
        })
    }

    /// On the leader: a batch of heartbeats, one result each.
    pub fn leader_heartbeats(&self, items: &[Item]) -> Vec<ItemResult> {
        items
            .iter()
            .map(|(id, b)| {
                self.leader_heartbeat(id, b.clone())
                    .map_err(ItemError::from)
            })
            .collect()
    }
}

/// The pacing the server asks of an agent: a third of its TTL, ±10%.
pub fn next_heartbeat_ms(ttl_seconds: u32) -> u64 {
    let base = u64::from(ttl_seconds) * 1000 / 3;
    let jitter = rand::thread_rng().gen_range(0.9..1.1);
    ((base as f64) * jitter) as u64
}

#[cfg(test)]
mod tests;
