//! Sweep planning: which agents' silence calls for a transition now. Pure
//! functions of the records, the lease table and the clock.

use std::time::Duration;

use tokio::time::Instant;

use registry_types::command::{ExpireEntry, ExpiryStep};
use registry_types::{AgentRecord, AgentStatus, Timestamp};

use super::lease::LeaseTable;

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
    /// Records that had a lease when planned. When it is the number of
    /// leases, every lease belongs to a registered agent and there are no
    /// stale leases to drop (see `LeaseTable::retain`).
    pub leased: usize,
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
        let leased = leases.last_seen(&r.agent_id);
        out.leased += usize::from(leased.is_some());
        let last_seen = leased.map_or(checkpointed, |l| l.max(checkpointed));
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
