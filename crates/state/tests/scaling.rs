//! Scaling policies: each rule raises its advisory once, refreshes it
//! silently while it holds, and clears it with one event when it stops
//! holding; everything survives a snapshot and is the same in any order of
//! the index's hash sets.

mod common;

use common::*;
use registry_state::{RegistryState, StateConfig};
use registry_types::command::CheckpointEntry;
use registry_types::scaling::{ScalingAction, ScalingPolicyRequest};
use registry_types::{AgentStatus, Command, CommandResult, EventKind, Timestamp};

fn policy(min: u32, max: u32) -> ScalingPolicyRequest {
    ScalingPolicyRequest {
        min_agents: min,
        max_agents: max,
        high_load: 0.8,
        low_load: 0.2,
        min_health: 0.5,
    }
}

fn set_policy(cap: &str, p: Option<ScalingPolicyRequest>, now: i64) -> Command {
    Command::SetScalingPolicy {
        capability: cap.to_string(),
        policy: p,
        now: Timestamp(now),
    }
}

/// Registers `agent` with capability `cap`, active, at `load`.
fn worker(h: &mut Harness, agent: &str, cap_name: &str, load: f64) {
    let mut c = reg(agent, 1);
    c.capabilities = vec![cap(cap_name, "", &[])];
    c.status = Some(AgentStatus::Active);
    c.load_factor = Some(load);
    c.health_score = Some(1.0);
    h.register(c);
}

fn load_report(agent: &str, load: f64, at: i64) -> CheckpointEntry {
    CheckpointEntry {
        load_factor: Some(load),
        ..heard(agent, at)
    }
}

/// `(action, in_force)` of every SCALING_ADVISORY event after `after`.
fn advisory_events(state: &RegistryState, after: u64) -> Vec<(ScalingAction, bool)> {
    state
        .events()
        .since(after, usize::MAX)
        .expect("inside the window")
        .into_iter()
        .filter(|e| e.kind == EventKind::ScalingAdvisory)
        .map(|e| {
            let a = e.advisory.expect("advisory events carry the advisory");
            assert_eq!(
                e.revision, a.revision,
                "the advisory names its event's revision"
            );
            (a.action, a.in_force)
        })
        .collect()
}

fn in_force(state: &RegistryState) -> Vec<(String, ScalingAction)> {
    state
        .scaling_advisories()
        .map(|a| (a.capability.clone(), a.action))
        .collect()
}

#[test]
fn high_load_raises_scale_up_once_and_clears_when_load_drops() {
    let mut h = Harness::new();
    worker(&mut h, "a1", "Trading", 0.5);
    worker(&mut h, "a2", "Trading", 0.5);
    let r = h.apply(set_policy("trading", Some(policy(1, 10)), 2));
    assert!(matches!(
        r,
        CommandResult::ScalingPolicy {
            existed: false,
            policy: Some(_)
        }
    ));
    assert!(
        in_force(&h.state).is_empty(),
        "load 0.5 is inside [0.2, 0.8]"
    );

    let before = h.state.revision();
    h.apply(checkpoint(
        vec![load_report("a1", 0.9, 3), load_report("a2", 0.95, 3)],
        3,
    ));
    assert_eq!(
        in_force(&h.state),
        vec![("trading".to_string(), ScalingAction::ScaleUp)]
    );
    assert_eq!(
        advisory_events(&h.state, before),
        vec![(ScalingAction::ScaleUp, true)]
    );
    let a = h.state.scaling_advisories().next().unwrap();
    assert_eq!(a.figures.serving, 2);
    assert!((a.figures.average_load - 0.925).abs() < 1e-9, "{a:?}");
    assert_eq!(
        a.figures.desired_agents, 4,
        "1.85 of load at a 0.5 midpoint"
    );
    assert!(a.reason.contains("above high_load"), "{}", a.reason);

    // Still over the threshold: figures refresh, no new event or revision.
    let before = h.state.revision();
    h.apply(checkpoint(vec![load_report("a1", 0.99, 4)], 4));
    assert_eq!(h.state.revision(), before);
    let a = h.state.scaling_advisories().next().unwrap();
    assert!((a.figures.average_load - 0.97).abs() < 1e-9, "{a:?}");

    // Back under: one clearing event.
    h.apply(checkpoint(
        vec![load_report("a1", 0.4, 5), load_report("a2", 0.4, 5)],
        5,
    ));
    assert!(in_force(&h.state).is_empty());
    assert_eq!(
        advisory_events(&h.state, before),
        vec![(ScalingAction::ScaleUp, false)]
    );
}

#[test]
fn too_few_serving_agents_advise_scale_up_and_unhealthy_ones_replacement() {
    let mut h = Harness::new();
    worker(&mut h, "a1", "risk", 0.5);
    worker(&mut h, "a2", "risk", 0.5);
    h.apply(set_health("a2", Some(0.2), None, &[], 2));
    h.apply(set_policy("risk", Some(policy(2, 5)), 3));
    let mut got = in_force(&h.state);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("risk".to_string(), ScalingAction::ScaleUp),
            ("risk".to_string(), ScalingAction::ReplaceUnhealthy)
        ]
    );
    let a = h.state.scaling_advisories().next().unwrap();
    assert_eq!(
        (a.figures.agents, a.figures.serving, a.figures.unhealthy),
        (2, 1, 1)
    );
}

#[test]
fn low_load_above_the_minimum_advises_scale_down() {
    let mut h = Harness::new();
    for i in 0..4 {
        worker(&mut h, &format!("a{i}"), "ocr", 0.05);
    }
    h.apply(set_policy("ocr", Some(policy(2, 10)), 2));
    assert_eq!(
        in_force(&h.state),
        vec![("ocr".to_string(), ScalingAction::ScaleDown)]
    );
    let a = h.state.scaling_advisories().next().unwrap();
    assert_eq!(a.figures.desired_agents, 2, "clamped to min_agents");
    // At the minimum, low load is not a reason to shrink.
    let mut h = Harness::new();
    worker(&mut h, "a1", "ocr", 0.05);
    h.apply(set_policy("ocr", Some(policy(1, 10)), 2));
    assert!(in_force(&h.state).is_empty());
}

#[test]
fn removing_a_policy_clears_its_advisories_and_unknown_policy_reports_absent() {
    let mut h = Harness::new();
    h.apply(set_policy("vision", Some(policy(3, 5)), 2));
    assert_eq!(
        in_force(&h.state),
        vec![("vision".to_string(), ScalingAction::ScaleUp)]
    );
    let before = h.state.revision();
    let r = h.apply(set_policy("Vision", None, 3));
    assert_eq!(
        r,
        CommandResult::ScalingPolicy {
            policy: None,
            existed: true
        }
    );
    assert!(in_force(&h.state).is_empty());
    assert_eq!(h.state.scaling_policies().count(), 0);
    assert_eq!(
        advisory_events(&h.state, before),
        vec![(ScalingAction::ScaleUp, false)]
    );
    let r = h.apply(set_policy("vision", None, 4));
    assert_eq!(
        r,
        CommandResult::ScalingPolicy {
            policy: None,
            existed: false
        }
    );
}

#[test]
fn offline_agents_stop_serving_and_expiry_reevaluates() {
    let mut h = Harness::new();
    worker(&mut h, "a1", "chat", 0.5);
    worker(&mut h, "a2", "chat", 0.5);
    h.apply(set_policy("chat", Some(policy(2, 5)), 2));
    assert!(in_force(&h.state).is_empty());
    h.apply(set_status("a2", AgentStatus::Offline, 3));
    // Status changes by operators are evaluated at the next checkpoint.
    h.apply(checkpoint(vec![], 4));
    assert_eq!(
        in_force(&h.state),
        vec![("chat".to_string(), ScalingAction::ScaleUp)]
    );
}

#[test]
fn policies_and_advisories_survive_a_snapshot() {
    let mut h = Harness::new();
    worker(&mut h, "a1", "trading", 0.95);
    h.apply(set_policy("trading", Some(policy(1, 3)), 2));
    let snap = h.state.snapshot();
    let bytes = bincode::serialize(&snap).expect("encode");
    assert!(!snap.scaling_policies.is_empty() && !snap.advisories.is_empty());
    assert_eq!(
        bincode::serialize(&h.state.snapshot_view()).expect("encode view"),
        bytes,
        "the borrowed view encodes as the copy"
    );
    let back = RegistryState::restore(
        StateConfig::default(),
        bincode::deserialize(&bytes).unwrap(),
    )
    .expect("restore");
    assert_eq!(back.snapshot(), snap);
    assert_eq!(in_force(&back), in_force(&h.state));
    assert_eq!(
        back.scaling_policy("Trading").map(|p| p.max_agents),
        Some(3)
    );
}

#[test]
fn the_same_log_gives_the_same_advisories_whatever_the_posting_order() {
    // Loads chosen so a float sum in a different order would differ in the
    // last bits; the fixed-point sum makes replicas agree exactly.
    let loads = [0.1, 0.7, 0.3, 0.9, 0.33, 0.77, 0.61, 0.123_456_7];
    let build = |order: &[usize]| {
        let mut h = Harness::new();
        for &i in order {
            worker(&mut h, &format!("a{i}"), "x", loads[i]);
        }
        h.apply(set_policy("x", Some(policy(1, 20)), 5));
        h.state.scaling_advisories().cloned().collect::<Vec<_>>()
    };
    let forward: Vec<usize> = (0..loads.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let (a, b) = (build(&forward), build(&backward));
    assert_eq!(
        a.iter().map(|x| &x.figures).collect::<Vec<_>>(),
        b.iter().map(|x| &x.figures).collect::<Vec<_>>()
    );
}
