//! The leader's heartbeat table: who beat when, and the reports waiting
//! for the next checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::time::Instant;

use registry_types::api::HeartbeatRequest;
use registry_types::command::CheckpointEntry;
use registry_types::limits::{check_merged_metrics, Limits};
use registry_types::{AgentId, AgentStatus, ErrorBody, Timestamp};

const SHARDS: usize = 16;

/// A validated heartbeat.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
    /// The token it was sent with (`--auth on`): the leader checks it
    /// against its own token table before recording the beat. Not kept
    /// with the pending report.
    pub token: Option<registry_types::auth::TokenId>,
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
            token: None,
        })
    }

    /// Checks a heartbeat that arrived already decoded (a follower's
    /// forwarded beats) with the rules of [`Beat::from_request`].
    pub fn check(&self, limits: &registry_types::limits::Limits) -> Result<(), ErrorBody> {
        use registry_types::limits::{check_metrics, check_unit, invalid};
        check_unit("health_score", self.health_score)?;
        check_unit("load_factor", self.load_factor)?;
        check_metrics("metrics", &self.metrics, limits)?;
        if let Some(s) = self.status.filter(|s| !s.is_agent_reportable()) {
            return Err(invalid(
                "status",
                format!("an agent may report active, busy or degraded, not {s}"),
            ));
        }
        Ok(())
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
    ///
    /// Refuses (field `metrics`, nothing recorded) a beat whose metrics,
    /// merged with the agent's `held` ones (its record's) and those of the
    /// beats pending since the last checkpoint, would exceed
    /// `limits.max_metrics`: the checkpoint merges all of them into the
    /// record, so a check of each beat alone would let one batch of
    /// heartbeats for one agent grow its record without bound.
    pub fn beat(
        &self,
        id: &AgentId,
        beat: Beat,
        held: &BTreeMap<String, f64>,
        limits: &Limits,
        now: Instant,
        wall: Timestamp,
    ) -> Result<Option<AgentStatus>, ErrorBody> {
        let mut shard = self.shard(id);
        if !beat.metrics.is_empty() {
            let pending = shard
                .get(id)
                .and_then(|l| l.pending.as_ref())
                .map(|p| &p.metrics);
            check_merged_metrics("metrics", held, pending, &beat.metrics, limits)?;
        }
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
        Ok(p.status)
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

    /// How many agents have a lease.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no agent has a lease.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
