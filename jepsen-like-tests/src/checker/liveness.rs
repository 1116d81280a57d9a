//! Heartbeat liveness: no premature expiry, and silent agents do expire.
//!
//! Only *heartbeat agents* count: agents with at least one Heartbeat op and
//! an acknowledged Register. For them a *beat* is an acknowledged Heartbeat
//! or Register (the server counts a registration as a heartbeat), and a
//! *down observation* is:
//! - a Get answered `Ok` that shows the agent absent or `offline`
//!   (interval: invoke..complete);
//! - a watch event for the agent: `AGENT_EXPIRED`, or `AGENT_STATUS_CHANGED`
//!   to `offline` (known only to have happened by its `received_us`;
//!   duplicates across watchers are merged, earliest kept).
//!
//! `unhealthy` is deliberately *not* a down observation: it comes at the
//! agent's `ttl_seconds`, which the history does not record and which the
//! runner sets below `offline_after_seconds` (2 s vs 3 s), so judging it
//! against `offline_after_ms` would report correct behaviour as premature.
//! The only deadline checked is `offline_after_ms`
//! (from [`crate::history::LivenessParams`]).
//!
//! **Premature expiry.** After a beat `b`, the agent must not be down before
//! `b.invoke + offline_after_ms - grace_ms`. A Get is evidence when it was
//! invoked after `b` completed plus `revival_ms` (a beat revives an agent
//! that was already offline only at the leader's next checkpoint, so an
//! earlier read may rightly still show it offline) and completed before
//! that instant; an absent read is ignored when a delete
//! of the agent may have happened before it. A watch event is evidence when
//! it was received before that instant and its revision is above the
//! revision of some linearizable Get (of any agent) invoked after `b`
//! completed: that Get's read index covered everything committed when `b`
//! was answered, so the event was committed after the renewal. (A
//! heartbeat's own answered revision cannot serve: a follower answers with
//! its possibly stale applied revision.)
//!
//! **Silent agents.** Let `L` be an agent's last beat, with no later beat
//! attempt (any outcome) and no later delete. It must be seen down by
//! `L.complete + offline_after_ms + expiry_bound_ms` (+ `grace_ms` for the
//! observation itself), by a Get invoked then or an event received then.
//! Exempt (counted, not an anomaly) when a fault window overlaps
//! `[L.invoke, deadline]`: there may have been no leader to expire it. An
//! anomaly needs proof that it was not down by then: a Get invoked after
//! the deadline (+ grace) showing it present and not `offline`, or a watcher
//! connected from `L`'s completion to past the deadline that received no
//! offline/expiry event for it. Without such proof, or when the run ended
//! before the deadline, the agent is counted as not observable.
use std::collections::BTreeMap;

use registry_types::{AgentStatus, EventKind};

use crate::history::{History, Micros, Op, OpKind, Outcome};

use super::{secs, AnomalyKind, CheckResult, Checker};

const DESCRIPTION: &str = "For heartbeat agents (had a register acked and heartbeats sent): after an acknowledged heartbeat (or register) invoked at h, no read or watch event may show the agent absent, offline or expired before h + offline_after - grace (premature expiry; a read counts only when invoked at least revival_ms after the beat was answered, since a beat revives an already offline agent at the next checkpoint; unhealthy, which comes at the unrecorded ttl, is not judged); an agent whose last beat L (acked) had no later beat attempt must be seen offline or expired by L completion + offline_after + expiry_bound (+ grace), unless a fault window overlaps that interval (exempt: there may have been no leader) or the run did not last or look long enough (not observable). Items checked: heartbeat agents.";

/// The status that counts as down (its name in any ASCII case).
fn is_offline(s: &str) -> bool {
    s.parse() == Ok(AgentStatus::Offline)
}

/// One time the agent was seen down.
#[derive(Clone, Debug)]
struct Down {
    /// Earliest it can have happened (events: unknown, 0).
    from: Micros,
    /// Latest it can have happened.
    to: Micros,
    /// For events: their revision.
    revision: Option<u64>,
    /// An absent read (ambiguous with a client's delete).
    absent_read: bool,
    what: String,
}

/// A revision bound per beat: the smallest revision answered by a Get (any
/// agent, `Ok`, present) invoked at or after `t`.
struct ReadIndex {
    /// (invoke, suffix minimum revision), sorted by invoke.
    reads: Vec<(Micros, u64)>,
}

impl ReadIndex {
    fn new(h: &History) -> Self {
        let mut reads: Vec<(Micros, u64)> = h
            .ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Get))
            .filter_map(|o| match &o.outcome {
                Outcome::Ok { read: Some(r), .. } => Some((o.invoke_us, r.revision)),
                _ => None,
            })
            .collect();
        reads.sort_unstable();
        let mut min = u64::MAX;
        for r in reads.iter_mut().rev() {
            min = min.min(r.1);
            r.1 = min;
        }
        ReadIndex { reads }
    }

    /// The smallest revision a linearizable read invoked at or after `t`
    /// answered, if any.
    fn after(&self, t: Micros) -> Option<u64> {
        let i = self.reads.partition_point(|(inv, _)| *inv < t);
        self.reads.get(i).map(|r| r.1)
    }
}

/// Runs the checker.
pub fn check(h: &History) -> CheckResult {
    let mut result = CheckResult::new(Checker::Liveness, DESCRIPTION);
    let mut per_agent: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &h.ops {
        per_agent.entry(op.agent_id.as_str()).or_default().push(op);
    }
    per_agent.retain(|_, ops| {
        let beats = ops.iter().any(|o| matches!(o.kind, OpKind::Heartbeat));
        let registered = ops.iter().any(|o| {
            matches!(o.kind, OpKind::Register { .. }) && matches!(o.outcome, Outcome::Ok { .. })
        });
        beats && registered
    });
    if per_agent.is_empty() {
        result.notes.push("no heartbeat agents in this run".into());
        return result.finish();
    }
    let p = &h.meta.liveness;
    if p.offline_after_ms == 0 {
        result.unknown("the run recorded no liveness parameters (offline_after_ms = 0)");
        return result.finish();
    }
    let events = down_events(h);
    let index = ReadIndex::new(h);
    for (agent, ops) in per_agent {
        result.checked += 1;
        let downs = downs_of(&ops, events.get(agent));
        premature(&mut result, h, agent, &ops, &downs, &index);
        silent(&mut result, h, agent, &ops, &downs);
    }
    result.finish()
}

/// Down events per agent from every watch session, merged by revision.
fn down_events(h: &History) -> BTreeMap<String, BTreeMap<u64, Down>> {
    let mut out: BTreeMap<String, BTreeMap<u64, Down>> = BTreeMap::new();
    for w in &h.watches {
        for e in &w.events {
            let Some(agent) = &e.agent_id else { continue };
            let expired = e.kind == EventKind::AgentExpired.into_str();
            let status = e.status.as_deref().unwrap_or("");
            let changed = e.kind == EventKind::AgentStatusChanged.into_str() && is_offline(status);
            if !expired && !changed {
                continue;
            }
            let down = Down {
                from: 0,
                to: e.received_us,
                revision: Some(e.revision),
                absent_read: false,
                what: if expired {
                    format!(
                        "{} event (revision {})",
                        EventKind::AgentExpired,
                        e.revision
                    )
                } else {
                    format!("offline event (revision {})", e.revision)
                },
            };
            let by_rev = out.entry(agent.clone()).or_default();
            match by_rev.get(&e.revision) {
                Some(d) if d.to <= down.to => {}
                _ => {
                    by_rev.insert(e.revision, down);
                }
            }
        }
    }
    out
}

/// Every down observation of one agent, reads and events.
fn downs_of(ops: &[&Op], events: Option<&BTreeMap<u64, Down>>) -> Vec<Down> {
    let mut downs: Vec<Down> = ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Get))
        .filter_map(|o| {
            let Outcome::Ok { read, .. } = &o.outcome else {
                return None;
            };
            let complete = o.complete_us?;
            let (absent, shown) = match read {
                None => (true, "absent"),
                Some(r) if is_offline(&r.status) => (false, "offline"),
                Some(_) => return None,
            };
            Some(Down {
                from: o.invoke_us,
                to: complete,
                revision: None,
                absent_read: absent,
                what: format!(
                    "get by p{} on n{} [{}, {}] showing it {shown}",
                    o.process,
                    o.node,
                    secs(o.invoke_us),
                    secs(complete)
                ),
            })
        })
        .collect();
    downs.extend(events.into_iter().flat_map(|m| m.values().cloned()));
    downs
}

/// Acknowledged beats, by invoke time.
fn beats<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let mut b: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| matches!(o.kind, OpKind::Heartbeat | OpKind::Register { .. }))
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }) && o.complete_us.is_some())
        .collect();
    b.sort_by_key(|o| o.invoke_us);
    b
}

fn describe_beat(b: &Op) -> String {
    let what = match b.kind {
        OpKind::Register { .. } => "register",
        _ => "heartbeat",
    };
    format!(
        "{what} by p{} on n{} invoked {} (acked {})",
        b.process,
        b.node,
        secs(b.invoke_us),
        secs(b.complete_us.unwrap_or(b.invoke_us))
    )
}

/// Premature expiry: down too soon after an acknowledged beat.
fn premature(
    result: &mut CheckResult,
    h: &History,
    agent: &str,
    ops: &[&Op],
    downs: &[Down],
    index: &ReadIndex,
) {
    let p = &h.meta.liveness;
    let ttl_us = p.offline_after_ms.saturating_mul(1000);
    let grace_us = p.grace_ms.saturating_mul(1000);
    let revival_us = p.revival_ms.saturating_mul(1000);
    let beats = beats(ops);
    let deletes: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| matches!(o.kind, OpKind::Delete) && !matches!(o.outcome, Outcome::Fail { .. }))
        .collect();
    for d in downs {
        // The latest beat this observation is provably after.
        let after = |b: &&&Op| {
            let done = b.complete_us.unwrap_or(Micros::MAX);
            match d.revision {
                None => done.saturating_add(revival_us) <= d.from,
                Some(rev) => index.after(done).is_some_and(|bound| bound < rev),
            }
        };
        let Some(b) = beats.iter().filter(after).max_by_key(|b| b.invoke_us) else {
            continue;
        };
        if d.absent_read && deletes.iter().any(|x| x.invoke_us < d.to) {
            continue;
        }
        let earliest = b.invoke_us.saturating_add(ttl_us).saturating_sub(grace_us);
        if d.to < earliest {
            result.anomaly(
                AnomalyKind::PrematureExpiry,
                Some(agent),
                None,
                vec![b.invoke_us, d.to],
                format!(
                    "agent {agent}: {} came by {} although the {} renewed it until {} (offline_after {} ms, grace {} ms)",
                    d.what,
                    secs(d.to),
                    describe_beat(b),
                    secs(earliest),
                    p.offline_after_ms,
                    p.grace_ms
                ),
            );
        }
    }
}

/// Silent agents must be seen offline within the bound.
fn silent(result: &mut CheckResult, h: &History, agent: &str, ops: &[&Op], downs: &[Down]) {
    let p = &h.meta.liveness;
    let beats = beats(ops);
    let Some(last) = beats.last() else { return };
    let later = |o: &&&Op| o.invoke_us > last.invoke_us;
    let beat_again = ops
        .iter()
        .filter(later)
        .any(|o| matches!(o.kind, OpKind::Heartbeat | OpKind::Register { .. }));
    let deleted = ops
        .iter()
        .filter(later)
        .any(|o| matches!(o.kind, OpKind::Delete) && !matches!(o.outcome, Outcome::Fail { .. }));
    if beat_again || deleted {
        return;
    }
    result.count("silent_agents", 1);
    let done = last.complete_us.unwrap_or(last.invoke_us);
    let deadline = done
        .saturating_add(p.offline_after_ms.saturating_mul(1000))
        .saturating_add(p.expiry_bound_ms.saturating_mul(1000));
    let seen_by = deadline.saturating_add(p.grace_ms.saturating_mul(1000));
    if h.faults
        .iter()
        .any(|f| f.start_us <= deadline && f.end_us >= last.invoke_us)
    {
        result.count("silent_exempt_fault_overlap", 1);
        return;
    }
    if seen_by > h.meta.duration_us {
        result.count("silent_not_observable", 1);
        return;
    }
    let seen = downs.iter().any(|d| {
        let when = if d.revision.is_some() { d.to } else { d.from };
        when <= seen_by && d.to >= done
    });
    if seen {
        result.count("silent_expired_in_time", 1);
        return;
    }
    // Proof it was not: a later read showing it still there and not
    // offline, or a watcher connected from the last beat to past the
    // deadline that got no offline/expiry event for it.
    let late_read = ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Get) && o.invoke_us >= seen_by)
        .filter_map(|o| match &o.outcome {
            Outcome::Ok { read: Some(r), .. } if !is_offline(&r.status) => Some((o, r)),
            _ => None,
        })
        .min_by_key(|(o, _)| o.invoke_us);
    let watched = h
        .watches
        .iter()
        .any(|w| w.opened_us <= done && w.closed_us >= seen_by);
    let evidence = match (late_read, watched) {
        (Some((o, r)), _) => format!(
            "a get by p{} at {} still showed it {}",
            o.process,
            secs(o.invoke_us),
            r.status
        ),
        (None, true) => {
            "a watcher connected from the last beat to past the deadline got no offline or expiry event"
                .to_owned()
        }
        (None, false) => {
            result.count("silent_not_observable", 1);
            return;
        }
    };
    result.anomaly(
        AnomalyKind::MissedExpiry,
        Some(agent),
        None,
        vec![last.invoke_us, deadline],
        format!(
            "agent {agent}: silent since its last {}, it was not seen offline by {} (offline_after {} ms + expiry bound {} ms, grace {} ms, no fault in between): {evidence}",
            describe_beat(last),
            secs(deadline),
            p.offline_after_ms,
            p.expiry_bound_ms,
            p.grace_ms
        ),
    );
}
