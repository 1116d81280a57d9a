//! Acknowledged writes survive healing, and replicas agree.
//!
//! **Lost write.** Take an acknowledged register `R` (outcome `Ok`) of agent
//! `a` that is *last*: no other register or delete of `a` that may have
//! happened (outcome `Ok` or `Unknown`) was invoked after `R` was. Then on
//! every node's final state, `a` must be present with `R`'s value, except
//! where a write concurrent with `R` could have been ordered after it:
//! - absent is allowed only if a delete of `a` that may have happened was
//!   still running when `R` was invoked (it completed after, or never);
//! - another value is allowed only if the register that wrote it was still
//!   running when `R` was invoked.
//!
//! Anything else (absent, a value written by a register that completed
//! before `R` was invoked, a value no register wrote) is a lost write.
//! Agents removed by expiry (`AGENT_EXPIRED`) are skipped.
//!
//! **Replica agreement.** Nodes whose final states are at the same applied
//! index must hold exactly the same agents with the same values and
//! statuses: they applied the same log prefix to a deterministic state
//! machine. (Nodes at different indexes are the raft checker's business.)
//!
//! With no final states at all the checker is Unknown.
use std::collections::{BTreeMap, BTreeSet};

use crate::history::{FinalAgent, FinalState, History, Op, OpKind, Outcome};

use super::{secs, AnomalyKind, CheckResult, Checker};

const DESCRIPTION: &str = "Every acknowledged register that no later write of the same agent could have replaced must be present, with its value, in the final state of every node (a write still running when it was invoked may legitimately win). Nodes at the same applied index must hold identical agents, values and statuses. Agents removed by expiry are skipped. Items checked: acknowledged registers, then node pairs compared.";

/// A write that may have happened (not `Fail`).
fn may_have_happened(op: &Op) -> bool {
    !matches!(op.outcome, Outcome::Fail { .. })
}

/// When a write that may have happened can no longer take effect.
fn end_or_inf(op: &Op) -> u64 {
    match op.outcome {
        Outcome::Ok { .. } => op.complete_us.unwrap_or(u64::MAX),
        _ => u64::MAX,
    }
}

/// Runs the checker.
pub fn check(h: &History) -> CheckResult {
    let mut result = CheckResult::new(Checker::LostWrites, DESCRIPTION);
    if h.finals.is_empty() {
        result
            .unknown("no final states were recorded: nothing to compare acknowledged writes with");
        return result.finish();
    }
    let expired = super::expired_agents(h);
    let mut writes: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &h.ops {
        if matches!(op.kind, OpKind::Register { .. } | OpKind::Delete) && may_have_happened(op) {
            writes.entry(op.agent_id.as_str()).or_default().push(op);
        }
    }
    for (agent, ws) in &writes {
        if expired.contains(*agent) {
            result.count("agents_skipped_expired", 1);
            continue;
        }
        for r in ws {
            let (OpKind::Register { value }, Outcome::Ok { .. }) = (&r.kind, &r.outcome) else {
                continue;
            };
            if ws.iter().any(|w| w.id != r.id && w.invoke_us > r.invoke_us) {
                result.count("registers_superseded", 1);
                continue;
            }
            result.checked += 1;
            for f in &h.finals {
                check_one(&mut result, agent, r, value, ws, f);
            }
        }
    }
    compare_finals(&mut result, &h.finals);
    result.finish()
}

/// Checks one last acknowledged register `r` against one node's final state.
fn check_one(
    result: &mut CheckResult,
    agent: &str,
    r: &Op,
    value: &str,
    ws: &[&Op],
    f: &FinalState,
) {
    let acked = r.complete_us.unwrap_or(r.invoke_us);
    let what = format!(
        "register of {value} by p{} on n{} (invoked {}, acked {})",
        r.process,
        r.node,
        secs(r.invoke_us),
        secs(acked)
    );
    // Writes still running when `r` was invoked could be ordered after it.
    let concurrent = |w: &&&Op| w.id != r.id && end_or_inf(w) > r.invoke_us;
    match f.agents.iter().find(|a| a.agent_id == agent) {
        None => {
            let deleted = ws
                .iter()
                .filter(concurrent)
                .any(|w| matches!(w.kind, OpKind::Delete));
            if !deleted {
                result.anomaly(
                    AnomalyKind::LostWrite,
                    Some(agent),
                    Some(f.node),
                    vec![r.invoke_us, acked],
                    format!(
                        "agent {agent}: the {what} is lost: n{} ended without the agent (applied index {}) and no delete of it was invoked after or running concurrently",
                        f.node, f.applied_index
                    ),
                );
            }
        }
        Some(fa) if fa.value == value => {}
        Some(fa) => {
            let writer = ws
                .iter()
                .find(|w| matches!(&w.kind, OpKind::Register { value: v } if *v == fa.value));
            let allowed = writer.is_some_and(|w| concurrent(&w));
            if allowed {
                return;
            }
            let shown = match writer {
                Some(w) => format!(
                    "{}, written by p{} and acked {} before the register was invoked",
                    fa.value,
                    w.process,
                    secs(end_or_inf(w))
                ),
                None => format!("{}, which no register of this agent wrote", fa.value),
            };
            result.anomaly(
                AnomalyKind::LostWrite,
                Some(agent),
                Some(f.node),
                vec![r.invoke_us, acked],
                format!(
                    "agent {agent}: the {what} is lost: n{} ended showing {shown}",
                    f.node
                ),
            );
        }
    }
}

/// Nodes at the same applied index must hold the same agents.
fn compare_finals(result: &mut CheckResult, finals: &[FinalState]) {
    let mut by_index: BTreeMap<u64, Vec<&FinalState>> = BTreeMap::new();
    for f in finals {
        by_index.entry(f.applied_index).or_default().push(f);
    }
    for (index, group) in by_index {
        let Some((first, rest)) = group.split_first() else {
            continue;
        };
        for other in rest {
            result.checked += 1;
            let diffs = differences(&first.agents, &other.agents);
            if diffs.is_empty() {
                continue;
            }
            let shown: Vec<String> = diffs.iter().take(3).cloned().collect();
            result.anomaly(
                AnomalyKind::FinalsDisagree,
                None,
                Some(other.node),
                Vec::new(),
                format!(
                    "n{} and n{} are both at applied index {index} but hold different agents ({} differences, e.g. {})",
                    first.node,
                    other.node,
                    diffs.len(),
                    shown.join("; ")
                ),
            );
        }
    }
}

/// Human descriptions of how two agent lists differ.
fn differences(a: &[FinalAgent], b: &[FinalAgent]) -> Vec<String> {
    let map = |v: &[FinalAgent]| -> BTreeMap<String, (String, String)> {
        v.iter()
            .map(|x| (x.agent_id.clone(), (x.value.clone(), x.status.clone())))
            .collect()
    };
    let (ma, mb) = (map(a), map(b));
    let ids: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    let show = |x: Option<&(String, String)>| match x {
        Some((v, s)) => format!("{v} ({s})"),
        None => "absent".to_owned(),
    };
    ids.into_iter()
        .filter(|id| ma.get(*id) != mb.get(*id))
        .map(|id| format!("{id}: {} vs {}", show(ma.get(id)), show(mb.get(id))))
        .collect()
}
