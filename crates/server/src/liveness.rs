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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use registry_types::api::{HeartbeatRequest, HeartbeatResponse};
use registry_types::command::{CheckpointEntry, ExpireEntry, ExpiryStep};
use registry_types::{AgentId, AgentRecord, AgentStatus, Command, ErrorBody, ErrorCode, Timestamp};

use crate::error::ApiError;
use crate::node::Node;

const SHARDS: usize = 16;

/// A validated heartbeat.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

impl Beat {
    /// Checks a heartbeat body: scores in 0..1, finite metrics, and only the
    /// statuses an agent may report about itself.
    pub fn from_request(
        req: HeartbeatRequest,
        limits: &registry_types::limits::Limits,
    ) -> Result<Beat, ErrorBody> {
        use registry_types::limits::{check_metrics, check_unit, invalid, parse_status};
        check_unit("health_score", req.health_score)?;
        check_unit("load_factor", req.load_factor)?;
        check_metrics("metrics", &req.metrics, limits)?;
        let status = parse_status("status", req.status.as_deref())?;
        if let Some(s) = status.filter(|s| !s.is_agent_reportable()) {
            return Err(invalid(
                "status",
                format!("an agent may report active, busy or degraded, not {s}"),
            ));
        }
        Ok(Beat {
            status,
            health_score: req.health_score,
            load_factor: req.load_factor,
            metrics: req.metrics,
        })
    }
}

/// What the leader knows of one agent's heartbeats.
#[derive(Clone, Debug)]
struct Lease {
    /// Monotonic time of the last heartbeat received by this leader.
    last_seen: Instant,
    /// Wall-clock time of that heartbeat (what the checkpoint records).
    last_seen_wall: Timestamp,
    /// Reports received since the last checkpoint, merged; `None` when
    /// there is nothing to checkpoint.
    pending: Option<Beat>,
}

/// The leader's heartbeat table, sharded by agent id so concurrent
/// heartbeats rarely contend. A std `Mutex` per shard: critical sections are
/// a hash-map update and never cross an `.await`.
pub struct LeaseTable {
    shards: Vec<Mutex<HashMap<AgentId, Lease>>>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl LeaseTable {
    fn shard(&self, id: &AgentId) -> std::sync::MutexGuard<'_, HashMap<AgentId, Lease>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id.as_str());
        let m = &self.shards[(h % SHARDS as u64) as usize];
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a heartbeat. Returns the status reported by the agent since
    /// the last checkpoint (this beat's, or an earlier one's), if any.
    pub fn beat(
        &self,
        id: &AgentId,
        beat: Beat,
        now: Instant,
        wall: Timestamp,
    ) -> Option<AgentStatus> {
        let mut shard = self.shard(id);
        let lease = shard.entry(id.clone()).or_insert_with(|| Lease {
            last_seen: now,
            last_seen_wall: wall,
            pending: None,
        });
        lease.last_seen = now;
        lease.last_seen_wall = wall;
        let p = lease.pending.get_or_insert_with(Beat::default);
        if beat.status.is_some() {
            p.status = beat.status;
        }
        if beat.health_score.is_some() {
            p.health_score = beat.health_score;
        }
        if beat.load_factor.is_some() {
            p.load_factor = beat.load_factor;
        }
        p.metrics.extend(beat.metrics);
        p.status
    }

    /// When this leader last heard from `id`.
    pub fn last_seen(&self, id: &AgentId) -> Option<Instant> {
        self.shard(id).get(id).map(|l| l.last_seen)
    }

    /// Takes every pending report, for a checkpoint, in agent id order.
    pub fn drain_pending(&self) -> Vec<CheckpointEntry> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (id, lease) in shard.iter_mut() {
                if let Some(b) = lease.pending.take() {
                    out.push(CheckpointEntry {
                        agent_id: id.clone(),
                        last_heartbeat: lease.last_seen_wall,
                        status: b.status,
                        health_score: b.health_score,
                        load_factor: b.load_factor,
                        metrics: b.metrics,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }

    /// Forgets everything (on gaining or losing leadership).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Drops leases of agents no longer registered. `guard` is taken once
    /// per shard, before the shard's lock (the order every path takes them
    /// in: state, then lease shard), and `keep` answers from it.
    pub fn retain<G>(&self, guard: impl Fn() -> G, keep: impl Fn(&G, &AgentId) -> bool) {
        for shard in &self.shards {
            let g = guard();
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| keep(&g, id));
        }
    }
}

/// The transition an agent's silence calls for, if any.
///
/// `last_seen` is the later of this leader's last heartbeat from the agent
/// and its checkpointed `last_heartbeat`; every deadline is at least
/// `since + grace` (leadership start, or the end of a detected stall).
pub fn step_for(
    record: &AgentRecord,
    last_seen: Instant,
    now: Instant,
    since: Instant,
    grace: Duration,
) -> Option<ExpiryStep> {
    let due = |limit_s: u32| {
        now >= (last_seen + Duration::from_secs(u64::from(limit_s))).max(since + grace)
    };
    let status = record.status;
    if record.deregister_after_seconds > 0 && due(record.deregister_after_seconds) {
        return Some(ExpiryStep::Remove);
    }
    if status == AgentStatus::Suspended {
        // An operator's suspension is theirs to lift; only removal applies.
        return None;
    }
    if status != AgentStatus::Offline && due(record.offline_after_seconds) {
        return Some(ExpiryStep::Offline);
    }
    if !matches!(status, AgentStatus::Unhealthy | AgentStatus::Offline) && due(record.ttl_seconds) {
        return Some(ExpiryStep::Unhealthy);
    }
    None
}

/// Maps a leader-stamped wall-clock time onto this process' monotonic
/// clock (never later than `now`).
pub fn wall_to_instant(t: Timestamp, wall_now: Timestamp, now: Instant) -> Instant {
    let ago = Duration::from_millis(wall_now.millis().saturating_sub(t.millis()).max(0) as u64);
    now.checked_sub(ago).unwrap_or(now)
}

/// The transitions one sweep calls for, in agent id order.
#[derive(Debug, Default)]
pub struct SweepPlan {
    pub entries: Vec<ExpireEntry>,
    /// Entries that take a live (not yet offline) agent offline or remove
    /// it: what the brake weighs against the live fleet.
    pub leaving_live_fleet: usize,
}

pub fn plan_sweep<'a>(
    records: impl Iterator<Item = &'a AgentRecord>,
    leases: &LeaseTable,
    now: Instant,
    wall_now: Timestamp,
    since: Instant,
    grace: Duration,
) -> SweepPlan {
    let mut out = SweepPlan::default();
    for r in records {
        let checkpointed = wall_to_instant(r.last_heartbeat, wall_now, now);
        let last_seen = leases
            .last_seen(&r.agent_id)
            .map_or(checkpointed, |l| l.max(checkpointed));
        if let Some(step) = step_for(r, last_seen, now, since, grace) {
            if step != ExpiryStep::Unhealthy && r.status != AgentStatus::Offline {
                out.leaving_live_fleet += 1;
            }
            out.entries.push(ExpireEntry {
                agent_id: r.agent_id.clone(),
                epoch: r.epoch,
                step,
            });
        }
    }
    out
}

/// What the brake decided for one sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrakeDecision {
    /// Proceed with every transition.
    Proceed,
    /// Hold offline transitions and removals.
    Hold,
}

/// A state change of the brake to announce through Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrakeChange {
    Engaged,
    Released,
}

/// The mass-expiry brake.
///
/// Rule: when one sweep would take more than `fraction` of the live fleet
/// (agents not offline, at least `min_fleet` of them) offline or remove them,
/// the brake engages and those transitions are held (unhealthy marks still
/// apply). It releases when a sweep is back under the threshold (heartbeats
/// returned), or after `max_hold`; after a forced release it stays off until
/// a sweep has been under the threshold once, so it cannot hold forever.
#[derive(Debug)]
pub struct Brake {
    pub fraction: f64,
    pub max_hold: Duration,
    pub min_fleet: usize,
    engaged_at: Option<Instant>,
    armed: bool,
}

impl Brake {
    pub fn new(fraction: f64, max_hold: Duration, min_fleet: usize) -> Self {
        Brake {
            fraction,
            max_hold,
            min_fleet,
            engaged_at: None,
            armed: true,
        }
    }

    pub fn engaged(&self) -> bool {
        self.engaged_at.is_some()
    }

    /// Starts over on a new leader: engaged since `engaged_at` if the
    /// replicated state says a previous leader engaged it.
    pub fn reset(&mut self, engaged_at: Option<Instant>) {
        self.engaged_at = engaged_at;
        self.armed = true;
    }

    /// Evaluates one sweep that would take `going` agents offline (or remove
    /// them) out of `fleet` live ones.
    pub fn evaluate(
        &mut self,
        going: usize,
        fleet: usize,
        now: Instant,
    ) -> (BrakeDecision, Option<BrakeChange>) {
        let mass =
            fleet >= self.min_fleet && fleet > 0 && going as f64 > self.fraction * fleet as f64;
        match self.engaged_at {
            Some(_) if !mass => {
                self.engaged_at = None;
                self.armed = true;
                (BrakeDecision::Proceed, Some(BrakeChange::Released))
            }
            Some(at) if now.duration_since(at) >= self.max_hold => {
                self.engaged_at = None;
                self.armed = false;
                (BrakeDecision::Proceed, Some(BrakeChange::Released))
            }
            Some(_) => (BrakeDecision::Hold, None),
            None if mass && self.armed => {
                self.engaged_at = Some(now);
                (BrakeDecision::Hold, Some(BrakeChange::Engaged))
            }
            None => {
                if !mass {
                    self.armed = true;
                }
                (BrakeDecision::Proceed, None)
            }
        }
    }
}

/// The leader's liveness machinery of one node.
pub struct Liveness {
    pub leases: LeaseTable,
    /// Start of the current grace: leadership start or end of a stall.
    since: Mutex<Option<Instant>>,
    brake: Mutex<Brake>,
    forwarder: HeartbeatForwarder,
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
    pub fn new(config: &crate::config::Config) -> Self {
        Liveness {
            leases: LeaseTable::default(),
            since: Mutex::new(None),
            brake: Mutex::new(Brake::new(
                config.brake_fraction,
                Duration::from_secs(config.brake_max_hold_seconds),
                config.brake_min_fleet,
            )),
            forwarder: HeartbeatForwarder::default(),
            evaluated_revision: AtomicU64::new(0),
            quorum_ack_at: Mutex::new(None),
            tracker_ran_at: Mutex::new(None),
            heartbeats_since_checkpoint: AtomicU64::new(0),
        }
    }

    pub fn brake_engaged(&self) -> bool {
        self.brake.lock().map(|b| b.engaged()).unwrap_or(false)
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
}

/// The pacing the server asks of an agent: a third of its TTL, ±10%.
pub fn next_heartbeat_ms(ttl_seconds: u32) -> u64 {
    let base = u64::from(ttl_seconds) * 1000 / 3;
    let jitter = rand::thread_rng().gen_range(0.9..1.1);
    ((base as f64) * jitter) as u64
}

impl Node {
    /// Accepts a heartbeat: recorded here if this node leads, else forwarded
    /// to the leader (coalesced with concurrent ones).
    pub async fn heartbeat(&self, id: AgentId, beat: Beat) -> Result<HeartbeatResponse, ApiError> {
        if self.is_leader() {
            return self.leader_heartbeat(&id, beat).map_err(ApiError::from);
        }
        let res = self.liveness.forwarder.submit(self, (id, beat)).await?;
        res.map_err(|e| ApiError::from(ErrorBody::from(e)))
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
        let quorum_window = self.config.quorum_window();
        if self
            .liveness
            .since_quorum_ack(self.config.quorum_tracker_stale())
            .is_none_or(|d| d > quorum_window)
        {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "this leader has not heard from a quorum recently and may have been replaced; retry on another node",
            ));
        }
        if !self.liveness.leading() {
            // Elected a moment ago: the liveness task has not yet reset the
            // lease table for this term. Recording now would be undone by
            // that reset while the agent is told it was heard (the chaos
            // tests caught agents going offline a TTL early this way).
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "this node became leader a moment ago and is not yet recording heartbeats; retry",
            ));
        }
        let limits = self.config.limits();
        let (current, ttl) = {
            let g = self.shared.read();
            let r = g.registry.get(id).ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::AgentNotFound,
                    format!("agent '{id}' is not registered; register it again"),
                )
            })?;
            registry_types::limits::check_merged_metrics(
                "metrics",
                &r.performance_metrics,
                &beat.metrics,
                &limits,
            )?;
            (r.status, r.ttl_seconds)
        };
        let wall = Timestamp::now();
        let reported = self.liveness.leases.beat(id, beat, Instant::now(), wall);
        let status = current.after_heartbeat(reported);
        self.metrics.heartbeats.inc();
        self.liveness
            .heartbeats_since_checkpoint
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

    /// Runs the leader's checkpoints and sweeps whenever this node leads.
    pub fn spawn_liveness(&self) {
        self.spawn_quorum_tracker();
        let node = self.clone();
        tokio::spawn(async move {
            let mut metrics = node.raft.metrics();
            loop {
                // Wait to become leader.
                while !node.is_leader() {
                    if metrics.changed().await.is_err() {
                        return;
                    }
                }
                let elected = Instant::now();
                info!(
                    grace_ms = node.config.lease_grace().as_millis() as u64,
                    "leading: liveness deadlines restart from checkpoints plus grace"
                );
                node.liveness.leases.clear();
                node.liveness.set_since(Some(elected));
                // A brake engaged by a previous leader (the replicated flag)
                // stays engaged here, so its release is announced once, by
                // whichever leader releases it; the hold restarts now.
                let inherited = node.shared.read().registry.brake_engaged();
                if let Ok(mut b) = node.liveness.brake.lock() {
                    b.reset(inherited.then_some(elected));
                }
                node.metrics.brake_engaged.set(i64::from(inherited));
                let raft_stopped = node.lead_liveness(&mut metrics).await;
                node.liveness.set_since(None);
                node.liveness.set_quorum_ack(None);
                node.liveness.leases.clear();
                // Only a leader brakes: a deposed one must not keep
                // reporting a brake it no longer holds.
                node.metrics.brake_engaged.set(0);
                if raft_stopped {
                    // The metrics channel is closed: waiting on it again
                    // would return at once, for ever (a busy loop while the
                    // process shuts down).
                    info!("raft stopped: liveness stopped");
                    return;
                }
                info!("no longer leading: liveness stopped");
            }
        });
    }

    /// Runs checkpoints and sweeps until leadership is lost. Returns true
    /// when Raft itself has stopped (shutdown), so the caller exits.
    async fn lead_liveness(
        &self,
        metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    ) -> bool {
        let mut checkpoint =
            tokio::time::interval(Duration::from_millis(self.config.checkpoint_interval_ms));
        let mut sweep = tokio::time::interval(Duration::from_millis(self.config.sweep_interval_ms));
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        // A gap this long between sweeps means the process was paused.
        let stall =
            Duration::from_millis(self.config.sweep_interval_ms * 4).max(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = checkpoint.tick() => self.checkpoint().await,
                _ = sweep.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_sweep) > stall {
                        warn!(gap_ms = now.duration_since(last_sweep).as_millis() as u64, "sweep gap: this leader was stalled; deadlines restart with a grace");
                        self.liveness.set_since(Some(now));
                    }
                    last_sweep = now;
                    self.sweep().await;
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                    if !self.is_leader() {
                        return false;
                    }
                }
            }
        }
    }

    /// Keeps `quorum_ack_at` current from every Raft metrics update, in a
    /// task of its own: the liveness loop awaits its checkpoint and sweep
    /// commits, which take hundreds of milliseconds on a busy leader with
    /// 100,000 agents, and a window refreshed only between them went stale
    /// and made the leader refuse heartbeats it could safely take (the
    /// heartbeat benchmark at 100,000 agents counted 51,000 such 503s).
    ///
    /// openraft reports the quorum's age as of when it published the
    /// metrics. A reading taken after the process was paused (SIGSTOP, a
    /// stalled VM) turns an age published before the pause into a fresh
    /// acknowledgement: a deposed leader resuming took a heartbeat it could
    /// not checkpoint, and the agent went offline early (the chaos tier's
    /// pause run caught it). So the tracker also wakes on a short tick; when
    /// it finds it did not run for half the quorum window it distrusts
    /// everything published until then and waits for a newer publication,
    /// and heartbeats are refused while it has not run recently.
    fn spawn_quorum_tracker(&self) {
        let node = self.clone();
        let stale = self.config.quorum_tracker_stale();
        tokio::spawn(async move {
            let mut metrics = node.raft.metrics();
            let mut tick = tokio::time::interval(stale / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            // Whether the watch holds a publication not yet read.
            let mut unread = true;
            loop {
                let now = Instant::now();
                if now.duration_since(last) > stale {
                    // Whatever the watch holds was published before the
                    // gap: mark it read and wait for a later one.
                    metrics.borrow_and_update();
                    node.liveness.set_quorum_ack(None);
                    unread = false;
                }
                last = now;
                // Only a new publication moves the time: re-reading an old
                // age against a later clock would make it look fresh.
                if unread {
                    let ack = {
                        let m = metrics.borrow_and_update();
                        if m.current_leader == Some(node.id) {
                            m.millis_since_quorum_ack
                        } else {
                            None
                        }
                    };
                    node.liveness.set_quorum_ack(
                        ack.and_then(|ms| now.checked_sub(Duration::from_millis(ms))),
                    );
                    unread = false;
                }
                node.liveness.set_tracker_ran(now);
                tokio::select! {
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        unread = true;
                    }
                    _ = tick.tick() => {}
                }
            }
        });
    }

    /// Proposes one checkpoint of the heartbeats received since the last.
    async fn checkpoint(&self) {
        let entries = self.liveness.leases.drain_pending();
        if entries.is_empty() && !self.scaling_needs_evaluation() {
            return;
        }
        let n = entries.len();
        // Counted once, in the first entry. A checkpoint that fails is not
        // retried (its beats' reports are dropped too), so no heartbeat is
        // ever counted twice.
        let mut heartbeats = self
            .liveness
            .heartbeats_since_checkpoint
            .swap(0, Ordering::Relaxed);
        for chunk in entries.chunks(self.config.expiry_batch.max(1)) {
            let cmd = Command::Checkpoint {
                entries: chunk.to_vec(),
                heartbeats: std::mem::take(&mut heartbeats),
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .write_local(cmd, std::time::Instant::now() + self.config.write_timeout())
                .await
            {
                warn!(error = %e, agents = n, "checkpoint not committed");
                return;
            }
        }
        if entries.is_empty() {
            // Scaling evaluation only (chunks() yields nothing for none).
            let cmd = Command::Checkpoint {
                entries: Vec::new(),
                heartbeats,
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .write_local(cmd, std::time::Instant::now() + self.config.write_timeout())
                .await
            {
                warn!(error = %e, "scaling checkpoint not committed");
                return;
            }
        }
        let revision = self.shared.read().registry.revision();
        self.liveness
            .evaluated_revision
            .store(revision, Ordering::Relaxed);
        self.metrics.checkpoints.inc();
    }

    /// Whether scaling policies exist and the registry changed since the
    /// last checkpoint evaluated them.
    fn scaling_needs_evaluation(&self) -> bool {
        let g = self.shared.read();
        g.registry.scaling_policies().next().is_some()
            && g.registry.revision() != self.liveness.evaluated_revision.load(Ordering::Relaxed)
    }

    /// Decides and proposes the transitions due now.
    async fn sweep(&self) {
        let Some(since) = self.liveness.since.lock().ok().and_then(|s| *s) else {
            return;
        };
        let now = Instant::now();
        let wall_now = Timestamp::now();
        let grace = self.config.lease_grace();
        // During the grace nothing can be due; an empty sweep would also
        // read as "heartbeats returned" and release an inherited brake
        // before this leader has heard from anyone.
        if now < since + grace {
            return;
        }
        // A pass over every record and lease: tens of milliseconds at
        // 100,000 agents. On a runtime worker that would stall every request
        // queued behind it (the discovery p99 showed it), so it runs on the
        // blocking pool; and it takes the state lock for a slice of the
        // table at a time, so an apply waiting for the lock (and every
        // reader queued behind that writer) waits for one slice, not the
        // whole pass.
        let node = self.clone();
        let planned = tokio::task::spawn_blocking(move || {
            const SLICE: usize = 4_096;
            let mut plan = SweepPlan::default();
            let mut after: Option<AgentId> = None;
            loop {
                let g = node.shared.read();
                let slice: Vec<&AgentRecord> = g
                    .registry
                    .records_after(after.as_ref())
                    .take(SLICE)
                    .collect();
                let part = plan_sweep(
                    slice.iter().copied(),
                    &node.liveness.leases,
                    now,
                    wall_now,
                    since,
                    grace,
                );
                plan.entries.extend(part.entries);
                plan.leaving_live_fleet += part.leaving_live_fleet;
                match slice.last() {
                    Some(r) if slice.len() == SLICE => after = Some(r.agent_id.clone()),
                    _ => break,
                }
            }
            let fleet = {
                let g = node.shared.read();
                g.registry.len() - g.registry.count_status(AgentStatus::Offline)
            };
            node.liveness
                .leases
                .retain(|| node.shared.read(), |g, id| g.registry.get(id).is_some());
            (plan, fleet)
        })
        .await;
        let Ok((plan, fleet)) = planned else {
            warn!("sweep planning task failed; skipping this sweep");
            return;
        };
        let plan_time = now.elapsed();
        self.metrics
            .sweep_seconds
            .with_label_values(&["plan"])
            .observe(plan_time.as_secs_f64());
        let going = plan.leaving_live_fleet;
        let mut plan = plan.entries;
        let (decision, change) = match self.liveness.brake.lock() {
            Ok(mut b) => b.evaluate(going, fleet, now),
            Err(_) => (BrakeDecision::Proceed, None),
        };
        if let Some(change) = change {
            let engaged = change == BrakeChange::Engaged;
            warn!(
                engaged,
                going,
                fleet,
                "liveness brake {}",
                if engaged { "engaged" } else { "released" }
            );
            self.metrics.brake_engaged.set(i64::from(engaged));
            let cmd = Command::Brake {
                engaged,
                held: going as u64,
                fleet: fleet as u64,
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .write_local(cmd, std::time::Instant::now() + self.config.write_timeout())
                .await
            {
                warn!(error = %e, "brake event not committed");
            }
        }
        if decision == BrakeDecision::Hold {
            plan.retain(|e| e.step == ExpiryStep::Unhealthy);
        }
        if plan.is_empty() {
            return;
        }
        // Proposed together, not one after another: a mass expiry of
        // 100,000 agents is 40 entries (unhealthy, then offline), and
        // waiting for each commit in turn put the last one seconds late.
        // Each entry names its agents' epochs, so the order they commit in
        // does not matter.
        let committing = Instant::now();
        let deadline = std::time::Instant::now() + self.config.write_timeout();
        let writes = plan.chunks(self.config.expiry_batch.max(1)).map(|chunk| {
            let cmd = Command::Expire {
                entries: chunk.to_vec(),
                now: Timestamp::now(),
            };
            async move { (chunk.len(), self.write_local(cmd, deadline).await) }
        });
        let mut committed = 0;
        for (n, res) in futures::future::join_all(writes).await {
            match res {
                Ok(_) => committed += n,
                Err(e) => warn!(error = %e, agents = n, "expiry batch not committed"),
            }
        }
        self.metrics.expiries.inc_by(committed as u64);
        let commit_time = committing.elapsed();
        self.metrics
            .sweep_seconds
            .with_label_values(&["commit"])
            .observe(commit_time.as_secs_f64());
        info!(
            planned = plan.len(),
            committed,
            fleet,
            plan_ms = plan_time.as_millis() as u64,
            commit_ms = commit_time.as_millis() as u64,
            "liveness transitions"
        );
    }
}

type Item = (AgentId, Beat);
type ItemResult = Result<HeartbeatResponse, ItemError>;

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

/// Coalesces a follower's concurrent heartbeats into one call to the
/// leader: while one call is in flight, arriving heartbeats queue; when it
/// returns, all of them go in the next call.
#[derive(Default)]
pub struct HeartbeatForwarder {
    state: Mutex<ForwardState>,
}

#[derive(Default)]
struct ForwardState {
    waiting: Vec<(Item, oneshot::Sender<Result<ItemResult, ApiError>>)>,
    running: bool,
}

/// Most heartbeats in one forwarded call.
const FORWARD_BATCH: usize = 5_000;

impl HeartbeatForwarder {
    async fn submit(&self, node: &Node, item: Item) -> Result<ItemResult, ApiError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().map_err(|_| ApiError::internal())?;
            s.waiting.push((item, tx));
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let node = node.clone();
            tokio::spawn(async move { node.liveness.forwarder.run(&node).await });
        }
        rx.await.unwrap_or_else(|_| Err(ApiError::internal()))
    }

    async fn run(&self, node: &Node) {
        loop {
            let batch: Vec<_> = {
                let Ok(mut s) = self.state.lock() else { return };
                if s.waiting.is_empty() {
                    s.running = false;
                    return;
                }
                let n = s.waiting.len().min(FORWARD_BATCH);
                s.waiting.drain(..n).collect()
            };
            let (items, txs): (Vec<Item>, Vec<_>) = batch.into_iter().unzip();
            match node.forward_heartbeats(&items).await {
                Ok(results) if results.len() == txs.len() => {
                    for (tx, r) in txs.into_iter().zip(results) {
                        let _ = tx.send(Ok(r));
                    }
                }
                Ok(_) => {
                    for tx in txs {
                        let _ = tx.send(Err(ApiError::internal()));
                    }
                }
                Err(e) => {
                    for tx in txs {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl Node {
    /// Sends heartbeats to the leader, waiting (bounded) through elections.
    /// Heartbeats are idempotent, so any failure may be retried.
    async fn forward_heartbeats(&self, items: &[Item]) -> Result<Vec<ItemResult>, ApiError> {
        let deadline = std::time::Instant::now() + self.config.write_timeout();
        let mut wait = crate::node::LeaderWait::new(&self.raft);
        loop {
            wait.observe();
            match self.leader() {
                Some((l, _)) if l == self.id => {
                    return Ok(self.leader_heartbeats(items));
                }
                Some((leader, addr)) => {
                    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                    let peer = registry_raft::PeerClient::new(self.http().clone(), addr);
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
                            self.metrics.forwarded_heartbeat_calls.inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: AgentStatus, ttl: u32, offline: u32, dereg: u32) -> AgentRecord {
        AgentRecord {
            agent_id: AgentId::parse("a").unwrap(),
            name: "a".into(),
            agent_type: String::new(),
            runtime_id: String::new(),
            endpoint: "e".into(),
            version: String::new(),
            description: String::new(),
            capabilities: vec![],
            tags: vec![],
            metadata: Default::default(),
            status,
            health_score: 1.0,
            load_factor: 0.0,
            performance_metrics: Default::default(),
            ttl_seconds: ttl,
            offline_after_seconds: offline,
            deregister_after_seconds: dereg,
            registered_at: Timestamp(0),
            updated_at: Timestamp(0),
            last_heartbeat: Timestamp(0),
            create_revision: 1,
            revision: 1,
            epoch: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ladder_steps_at_exact_deadlines() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        let r = record(AgentStatus::Active, 10, 20, 60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(step_for(&r, t0, at(9), t0, grace), None);
        assert_eq!(
            step_for(&r, t0, at(10), t0, grace),
            Some(ExpiryStep::Unhealthy)
        );
        let r = record(AgentStatus::Unhealthy, 10, 20, 60);
        assert_eq!(step_for(&r, t0, at(19), t0, grace), None);
        assert_eq!(
            step_for(&r, t0, at(20), t0, grace),
            Some(ExpiryStep::Offline)
        );
        let r = record(AgentStatus::Offline, 10, 20, 60);
        assert_eq!(step_for(&r, t0, at(59), t0, grace), None);
        assert_eq!(
            step_for(&r, t0, at(60), t0, grace),
            Some(ExpiryStep::Remove)
        );
        let never = record(AgentStatus::Offline, 10, 20, 0);
        assert_eq!(step_for(&never, t0, at(10_000), t0, grace), None);
        let suspended = record(AgentStatus::Suspended, 10, 20, 60);
        assert_eq!(step_for(&suspended, t0, at(30), t0, grace), None);
        assert_eq!(
            step_for(&suspended, t0, at(60), t0, grace),
            Some(ExpiryStep::Remove)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_grants_grace_not_a_full_ttl() {
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_secs(100)).await;
        let now = Instant::now();
        let grace = Duration::from_secs(1);
        // Last heard 100 s ago (long past its 10 s TTL); the leader started now.
        let r = record(AgentStatus::Active, 10, 20, 60);
        assert_eq!(step_for(&r, t0, now, now, grace), None, "no instant expiry");
        assert_eq!(
            step_for(&r, t0, now + grace, now, grace),
            Some(ExpiryStep::Remove),
            "after the grace, the real silence counts: not a fresh TTL"
        );
        // Heard 5 s ago: unhealthy at the normal deadline, not later.
        let last = now - Duration::from_secs(5);
        assert_eq!(
            step_for(&r, last, now + Duration::from_secs(4), now, grace),
            None
        );
        assert_eq!(
            step_for(&r, last, now + Duration::from_secs(5), now, grace),
            Some(ExpiryStep::Unhealthy)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leases_record_and_drain_merged_reports() {
        let table = LeaseTable::default();
        let id = AgentId::parse("x").unwrap();
        let t = Instant::now();
        table.beat(
            &id,
            Beat {
                health_score: Some(0.5),
                ..Beat::default()
            },
            t,
            Timestamp(1),
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let beat = Beat {
            status: Some(AgentStatus::Busy),
            metrics: BTreeMap::from([("q".into(), 3.0)]),
            ..Beat::default()
        };
        table.beat(&id, beat, Instant::now(), Timestamp(2));
        assert_eq!(table.last_seen(&id), Some(Instant::now()));
        let drained = table.drain_pending();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].last_heartbeat, Timestamp(2));
        assert_eq!(drained[0].health_score, Some(0.5));
        assert_eq!(drained[0].status, Some(AgentStatus::Busy));
        assert!(table.drain_pending().is_empty(), "drained once");
        assert!(table.last_seen(&id).is_some(), "the lease itself stays");
    }

    #[tokio::test(start_paused = true)]
    async fn brake_engages_holds_and_releases() {
        let mut b = Brake::new(0.5, Duration::from_secs(60), 10);
        let t = Instant::now();
        assert_eq!(b.evaluate(5, 100, t), (BrakeDecision::Proceed, None));
        assert_eq!(
            b.evaluate(60, 100, t),
            (BrakeDecision::Hold, Some(BrakeChange::Engaged))
        );
        assert_eq!(
            b.evaluate(60, 100, t + Duration::from_secs(30)),
            (BrakeDecision::Hold, None)
        );
        // Heartbeats came back.
        assert_eq!(
            b.evaluate(2, 100, t + Duration::from_secs(31)),
            (BrakeDecision::Proceed, Some(BrakeChange::Released))
        );
        // Engages again, then the maximum hold forces a release...
        let t2 = t + Duration::from_secs(40);
        assert_eq!(b.evaluate(80, 100, t2).1, Some(BrakeChange::Engaged));
        assert_eq!(
            b.evaluate(80, 100, t2 + Duration::from_secs(60)),
            (BrakeDecision::Proceed, Some(BrakeChange::Released))
        );
        // ...and it stays off for the same mass event until it has cleared once.
        assert_eq!(
            b.evaluate(80, 100, t2 + Duration::from_secs(61)),
            (BrakeDecision::Proceed, None)
        );
        assert_eq!(
            b.evaluate(0, 100, t2 + Duration::from_secs(62)),
            (BrakeDecision::Proceed, None)
        );
        assert_eq!(
            b.evaluate(80, 100, t2 + Duration::from_secs(63)).1,
            Some(BrakeChange::Engaged)
        );
        // Small fleets are never braked.
        let mut small = Brake::new(0.5, Duration::from_secs(60), 10);
        assert_eq!(small.evaluate(9, 9, t), (BrakeDecision::Proceed, None));
    }

    #[tokio::test(start_paused = true)]
    async fn only_live_agents_leaving_count_for_the_brake() {
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_secs(100)).await;
        let now = Instant::now();
        let wall_now = Timestamp(100_000);
        let mut offline = record(AgentStatus::Offline, 10, 20, 60);
        offline.agent_id = AgentId::parse("gone").unwrap();
        let mut live = record(AgentStatus::Active, 10, 20, 60);
        live.agent_id = AgentId::parse("live").unwrap();
        // Both last heard at wall time 0, i.e. 100 s ago; leader since long before.
        let plan = plan_sweep(
            [&offline, &live].into_iter(),
            &LeaseTable::default(),
            now,
            wall_now,
            t0,
            Duration::ZERO,
        );
        assert_eq!(plan.entries.len(), 2, "{plan:?}");
        assert!(plan.entries.iter().all(|e| e.step == ExpiryStep::Remove));
        assert_eq!(
            plan.leaving_live_fleet, 1,
            "removing an already offline agent takes nobody out of the live fleet"
        );
        // A lease heard just now outweighs the old checkpoint.
        let leases = LeaseTable::default();
        leases.beat(&live.agent_id, Beat::default(), now, wall_now);
        let plan = plan_sweep(
            [&live].into_iter(),
            &leases,
            now,
            wall_now,
            t0,
            Duration::ZERO,
        );
        assert!(plan.entries.is_empty(), "{plan:?}");
    }

    #[test]
    fn beats_reject_what_agents_may_not_report() {
        let limits = registry_types::limits::Limits::default();
        let req = |s: &str| HeartbeatRequest {
            status: Some(s.into()),
            ..HeartbeatRequest::default()
        };
        assert!(Beat::from_request(req("busy"), &limits).is_ok());
        assert_eq!(
            Beat::from_request(req("suspended"), &limits)
                .unwrap_err()
                .error
                .field
                .as_deref(),
            Some("status")
        );
        assert_eq!(
            Beat::from_request(req("nope"), &limits)
                .unwrap_err()
                .error
                .field
                .as_deref(),
            Some("status")
        );
        let bad = HeartbeatRequest {
            health_score: Some(1.5),
            ..HeartbeatRequest::default()
        };
        assert!(Beat::from_request(bad, &limits).is_err());
    }

    #[test]
    fn pacing_is_a_third_of_the_ttl_with_jitter() {
        for _ in 0..100 {
            let ms = next_heartbeat_ms(30);
            assert!((9_000..=11_000).contains(&ms), "{ms}");
        }
    }
}
