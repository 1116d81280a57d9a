//! Raft invariants visible from outside, from the `GET /v1/cluster` samples
//! and the final states.
//!
//! - **One leader per term.** openraft runs here with the
//!   `single-term-leader` feature, i.e. standard Raft: a term has at most
//!   one leader (without the feature openraft allows several leaders per
//!   term). So two distinct nodes sampled with role `leader` in the same
//!   term is an anomaly.
//! - **Monotonic within an incarnation.** Per (node, incarnation), in sample
//!   time order: `commit_index`, `applied_index` and `term` never decrease.
//!   A restart (new incarnation) may legitimately report lower values until
//!   it catches up, so values are never compared across incarnations.
//! - **Convergence.** After healing, every node's final state is at the same
//!   applied index and revision. A node of `meta.nodes` without a final
//!   state makes the verdict Unknown.
use std::collections::BTreeMap;

use crate::history::{History, RaftSample};

use super::{secs, AnomalyKind, CheckResult, Checker};

const DESCRIPTION: &str = "openraft runs with single-term-leader (standard Raft: at most one leader per term), so no two distinct nodes may be sampled as leader in the same term; per node and process incarnation, commit_index, applied_index and term never decrease over sample time (restarts may go back); after healing every node's final state is at the same applied index and revision. Items checked: samples, then final states.";

/// Runs the checker.
pub fn check(h: &History) -> CheckResult {
    let mut result = CheckResult::new(Checker::Raft, DESCRIPTION);
    result.checked += h.samples.len() as u64;
    one_leader_per_term(&mut result, &h.samples);
    monotonic(&mut result, &h.samples);
    converged(&mut result, h);
    result.finish()
}

fn is_leader(s: &RaftSample) -> bool {
    s.role.eq_ignore_ascii_case("leader")
}

fn one_leader_per_term(result: &mut CheckResult, samples: &[RaftSample]) {
    // term → leader node → first sample time it was seen leading.
    let mut leaders: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| is_leader(s)) {
        let first = leaders
            .entry(s.term)
            .or_default()
            .entry(s.node)
            .or_insert(s.t_us);
        *first = (*first).min(s.t_us);
    }
    result.count("terms_with_a_leader", leaders.len() as u64);
    for (term, nodes) in leaders {
        if nodes.len() > 1 {
            let times: Vec<u64> = nodes.values().copied().collect();
            let shown: Vec<String> = nodes
                .iter()
                .map(|(n, t)| format!("n{n} (at {})", secs(*t)))
                .collect();
            result.anomaly(
                AnomalyKind::TwoLeaders,
                None,
                nodes.keys().nth(1).copied(),
                times,
                format!(
                    "term {term} had {} leaders: {}",
                    nodes.len(),
                    shown.join(", ")
                ),
            );
        }
    }
}

fn monotonic(result: &mut CheckResult, samples: &[RaftSample]) {
    let mut by_process: BTreeMap<(u64, u32), Vec<&RaftSample>> = BTreeMap::new();
    for s in samples {
        by_process
            .entry((s.node, s.incarnation))
            .or_default()
            .push(s);
    }
    for ((node, incarnation), mut ss) in by_process {
        ss.sort_by_key(|s| s.t_us);
        type Field = (&'static str, fn(&RaftSample) -> u64);
        let fields: [Field; 3] = [
            ("commit_index", |s| s.commit_index),
            ("applied_index", |s| s.applied_index),
            ("term", |s| s.term),
        ];
        for (name, get) in fields {
            // Report the first step back per field and process, with the
            // number of steps back, so one regression does not flood.
            let backs: Vec<(&RaftSample, &RaftSample)> = ss
                .windows(2)
                .filter(|w| get(w[1]) < get(w[0]))
                .map(|w| (w[0], w[1]))
                .collect();
            let Some((a, b)) = backs.first() else {
                continue;
            };
            result.anomaly(
                AnomalyKind::WentBack,
                None,
                Some(node),
                vec![a.t_us, b.t_us],
                format!(
                    "n{node} (incarnation {incarnation}): {name} went back from {} at {} to {} at {} ({} such steps in this incarnation)",
                    get(a),
                    secs(a.t_us),
                    get(b),
                    secs(b.t_us),
                    backs.len()
                ),
            );
        }
    }
}

fn converged(result: &mut CheckResult, h: &History) {
    if h.finals.is_empty() {
        result.unknown("no final states were recorded: convergence after healing is unchecked");
        return;
    }
    result.checked += h.finals.len() as u64;
    let missing: Vec<String> = h
        .meta
        .nodes
        .iter()
        .filter(|(id, _)| !h.finals.iter().any(|f| f.node == *id))
        .map(|(id, _)| format!("n{id}"))
        .collect();
    if !missing.is_empty() {
        result.unknown(format!(
            "no final state for {}: their convergence is unchecked",
            missing.join(", ")
        ));
    }
    let Some(first) = h.finals.first() else {
        return;
    };
    let differ = h
        .finals
        .iter()
        .any(|f| f.applied_index != first.applied_index || f.revision != first.revision);
    if differ {
        let shown: Vec<String> = h
            .finals
            .iter()
            .map(|f| {
                format!(
                    "n{} at applied index {} revision {}",
                    f.node, f.applied_index, f.revision
                )
            })
            .collect();
        result.anomaly(
            AnomalyKind::FinalsDiverge,
            None,
            None,
            Vec::new(),
            format!("nodes did not converge after healing: {}", shown.join(", ")),
        );
    }
}
