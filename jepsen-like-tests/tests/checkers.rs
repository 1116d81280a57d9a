//! Each checker on hand-made histories: a known anomaly must be reported,
//! and the clean version of the same history must pass.
mod common;

use std::time::Duration;

use common::*;
use jepsen_like_tests::checker::{
    check_all, AnomalyKind, CheckConfig, CheckResult, Checker, Verdict,
};
use jepsen_like_tests::history::History;

fn run(h: &History, checker: Checker) -> CheckResult {
    check_all(h, &CheckConfig::default())
        .result(checker)
        .expect("every checker runs")
        .clone()
}

fn assert_pass(h: &History, checker: Checker) -> CheckResult {
    let r = run(h, checker);
    assert_eq!(r.verdict, Verdict::Pass, "{checker:?} should pass: {r:#?}");
    r
}

/// Asserts a failure with at least one anomaly of `kind`, returns its
/// messages.
fn assert_fail(h: &History, checker: Checker, kind: AnomalyKind) -> Vec<String> {
    let r = run(h, checker);
    assert_eq!(r.verdict, Verdict::Fail, "{checker:?} should fail: {r:#?}");
    assert!(
        r.anomalies.iter().any(|a| a.kind == kind),
        "{checker:?} should report {kind:?}: {r:#?}"
    );
    r.anomalies.into_iter().map(|a| a.message).collect()
}

// --- linearizable ----------------------------------------------------------

#[test]
fn sequential_register_get_delete_is_linearizable() {
    let mut h = history(1000);
    ops(&mut h)
        .get(1, "a", 0, 10, None)
        .reg(1, "a", "v1", 20, 30)
        .get(2, "a", 40, 50, Some("v1"))
        .reg(2, "a", "v2", 60, 70)
        .get(1, "a", 80, 90, Some("v2"))
        .del(1, "a", 100, 110, true)
        .del(2, "a", 120, 130, false)
        .get(2, "a", 140, 150, None)
        .reg(1, "a", "v3", 160, 170);
    finals(&mut h, &[("a", "v3")], Vec::new());
    let r = assert_pass(&h, Checker::Linearizable);
    assert_eq!(r.checked, 1);
}

#[test]
fn stale_read_is_not_linearizable() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v17", 0, 10)
        .reg(2, "a", "v19", 20, 30)
        .get(3, "a", 40, 50, Some("v17"));
    let msgs = assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
    assert!(
        msgs[0].contains("overwritten by v19") && msgs[0].contains("acked 0.030s"),
        "{msgs:?}"
    );
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .get(2, "a", 20, 30, Some("v99"));
    let msgs = assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
    assert!(msgs[0].contains("no register"), "{msgs:?}");
}

#[test]
fn absent_read_after_acked_register_is_not_linearizable() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .get(2, "a", 20, 30, None);
    let msgs = assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
    assert!(msgs[0].contains("absent"), "{msgs:?}");
}

#[test]
fn concurrent_ops_linearizable_in_only_one_order_pass() {
    // v2 must come first (read at 50..60), then v1 (read at 110..120).
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 100)
        .reg(2, "a", "v2", 10, 90)
        .get(3, "a", 50, 60, Some("v2"))
        .get(3, "a", 110, 120, Some("v1"));
    finals(&mut h, &[("a", "v1")], Vec::new());
    assert_pass(&h, Checker::Linearizable);
}

#[test]
fn concurrent_ops_with_no_consistent_order_fail() {
    // v2 before v1 (second read), yet v1 before v2 (third read).
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 100)
        .reg(2, "a", "v2", 10, 90)
        .get(3, "a", 50, 60, Some("v2"))
        .get(3, "a", 70, 80, Some("v1"))
        .get(3, "a", 110, 120, Some("v2"));
    let msgs = assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
    assert!(msgs[0].starts_with("agent a:"), "{msgs:?}");
}

#[test]
fn unknown_register_that_took_effect_passes() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .reg_with(2, "a", "v2", 20, None, unknown())
        .get(3, "a", 500, 510, Some("v2"));
    finals(&mut h, &[("a", "v2")], Vec::new());
    assert_pass(&h, Checker::Linearizable);
    assert_pass(&h, Checker::LostWrites);
}

#[test]
fn unknown_register_that_did_not_take_effect_passes() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .reg_with(2, "a", "v2", 20, None, unknown())
        .get(3, "a", 500, 510, Some("v1"));
    finals(&mut h, &[("a", "v1")], Vec::new());
    assert_pass(&h, Checker::Linearizable);
}

#[test]
fn failed_register_never_happened() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .reg_with(2, "a", "v2", 20, Some(30), fail())
        .get(3, "a", 40, 50, Some("v2"));
    assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
}

#[test]
fn exhausted_budget_is_unknown_never_pass() {
    // 16 concurrent registers and reads, then a read no order explains: the
    // search must try every subset before it can say no.
    let mut h = history(10_000);
    for i in 0..16u32 {
        let v = format!("v{i}");
        ops(&mut h)
            .reg(i, "a", &v, 0, 1000)
            .get(100 + i, "a", 0, 1000, Some(&v));
    }
    ops(&mut h).get(999, "a", 2000, 2010, Some("v0"));
    ops(&mut h).get(998, "a", 2020, 2030, Some("v1"));
    let cfg = CheckConfig {
        linearizability_budget: Duration::from_millis(1),
        ..CheckConfig::default()
    };
    let report = check_all(&h, &cfg);
    let r = report.result(Checker::Linearizable).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown, "{r:#?}");
    assert_eq!(r.counts.get("agents_unknown"), Some(&1));
    assert_eq!(report.verdict, Verdict::Unknown);
}

#[test]
fn heartbeats_and_unknown_reads_are_ignored() {
    let mut h = history(1000);
    ops(&mut h).reg(1, "a", "v1", 0, 10).hb(1, "a", 20, 30);
    // An unknown get claiming a value that does not exist: no information.
    h.ops.push(jepsen_like_tests::history::Op {
        id: 99,
        process: 2,
        node: 1,
        agent_id: "a".into(),
        kind: jepsen_like_tests::history::OpKind::Get,
        invoke_us: ms(40),
        complete_us: None,
        outcome: unknown(),
    });
    assert_pass(&h, Checker::Linearizable);
}

// --- lost writes -------------------------------------------------------------

#[test]
fn acked_register_missing_from_a_final_is_lost() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .reg(1, "b", "w1", 20, 30);
    finals(&mut h, &[("a", "v1"), ("b", "w1")], Vec::new());
    h.finals[1].agents.retain(|a| a.agent_id != "a");
    let msgs = assert_fail(&h, Checker::LostWrites, AnomalyKind::LostWrite);
    assert!(msgs.iter().any(|m| m.contains("n2")), "{msgs:?}");
    // The final read of n2 is a linearizability failure too.
    assert_fail(&h, Checker::Linearizable, AnomalyKind::NotLinearizable);
}

#[test]
fn final_showing_an_older_value_is_a_lost_write() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .reg(1, "a", "v2", 20, 30);
    finals(&mut h, &[("a", "v2")], Vec::new());
    h.finals[2].agents[0].value = "v1".into();
    let msgs = assert_fail(&h, Checker::LostWrites, AnomalyKind::LostWrite);
    assert!(msgs[0].contains("v1, written by p1"), "{msgs:?}");
}

#[test]
fn later_or_concurrent_writes_may_replace_an_acked_register() {
    let mut h = history(1000);
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        // Unknown delete invoked later: absence is fine.
        .reg_with(2, "a", "ignored", 5, Some(8), fail());
    h.ops.push(jepsen_like_tests::history::Op {
        id: 50,
        process: 2,
        node: 1,
        agent_id: "a".into(),
        kind: jepsen_like_tests::history::OpKind::Delete,
        invoke_us: ms(20),
        complete_us: None,
        outcome: unknown(),
    });
    // b: two concurrent registers, either may win.
    ops(&mut h)
        .reg(1, "b", "w1", 0, 100)
        .reg(2, "b", "w2", 10, 50);
    finals(&mut h, &[("b", "w1")], Vec::new());
    assert_pass(&h, Checker::LostWrites);
    assert_pass(&h, Checker::Linearizable);
}

#[test]
fn finals_disagreeing_at_the_same_index_fail() {
    let mut h = history(1000);
    finals(&mut h, &[("x", "1"), ("y", "2")], Vec::new());
    h.finals[2].agents[1].value = "3".into();
    let msgs = assert_fail(&h, Checker::LostWrites, AnomalyKind::FinalsDisagree);
    assert!(msgs[0].contains("y: 2 (active) vs 3 (active)"), "{msgs:?}");
}

#[test]
fn no_finals_is_unknown_for_lost_writes() {
    let mut h = history(1000);
    ops(&mut h).reg(1, "a", "v1", 0, 10);
    assert_eq!(run(&h, Checker::LostWrites).verdict, Verdict::Unknown);
}

// --- liveness ----------------------------------------------------------------

/// An agent registered at 0, beating at 1 s.
fn beating(h: &mut History) {
    ops(h).reg(1, "hb", "h1", 0, 10).hb(1, "hb", 1000, 1010);
}

#[test]
fn offline_right_after_a_heartbeat_is_premature() {
    let mut h = history(20_000);
    beating(&mut h);
    ops(&mut h)
        .hb(1, "hb", 2000, 2010)
        .hb(1, "hb", 3000, 3010)
        .get_status(2, "hb", 3100, 3120, Some("h1"), "offline");
    let msgs = assert_fail(&h, Checker::Liveness, AnomalyKind::PrematureExpiry);
    assert!(
        msgs[0].contains("heartbeat by p1 on n2 invoked 3.000s"),
        "{msgs:?}"
    );
}

#[test]
fn offline_read_within_the_revival_lag_is_not_premature_but_after_it_is() {
    // The agent went offline while nobody beat (1 s .. 9 s), then a beat at
    // 9 s: the server revives it at its next checkpoint, so a read 300 ms
    // after the answer may still show it offline.
    let lagging = |read_at: u64| {
        let mut h = history(20_000);
        h.meta.liveness.revival_ms = 1_100;
        beating(&mut h);
        ops(&mut h)
            .get_status(2, "hb", 5000, 5010, Some("h1"), "offline")
            .hb(1, "hb", 9000, 9010)
            .get_status(2, "hb", read_at, read_at + 20, Some("h1"), "offline");
        h
    };
    assert_pass(&lagging(9300), Checker::Liveness);
    let msgs = assert_fail(
        &lagging(10_500),
        Checker::Liveness,
        AnomalyKind::PrematureExpiry,
    );
    assert!(msgs[0].contains("invoked 9.000s"), "{msgs:?}");
}

#[test]
fn expiry_event_right_after_a_heartbeat_is_premature() {
    let mut h = history(20_000);
    beating(&mut h);
    // A linearizable read after the heartbeat answered revision 5, so an
    // event at revision 6 was committed after the renewal.
    ops(&mut h).get_rev(3, "other", 1100, 1110, "o1", 5);
    let mut s = session(1, 1, "cut", &[], 0);
    let mut e = event(6, "AGENT_STATUS_CHANGED", "hb", 1500);
    e.status = Some("offline".into());
    s.events.push(e);
    s.closed_us = ms(20_000);
    h.watches.push(s);
    assert_fail(&h, Checker::Liveness, AnomalyKind::PrematureExpiry);
}

#[test]
fn heartbeats_in_time_pass() {
    let mut h = history(20_000);
    beating(&mut h);
    ops(&mut h)
        .get(2, "hb", 1100, 1120, Some("h1"))
        .hb(1, "hb", 2000, 2010)
        // Offline long after the last heartbeat (2 s + 3 s - 0.5 s): fine.
        .get_status(2, "hb", 5000, 5010, Some("h1"), "offline");
    let r = assert_pass(&h, Checker::Liveness);
    assert_eq!(r.counts.get("silent_expired_in_time"), Some(&1));
}

#[test]
fn silent_agent_never_expired_fails() {
    let mut h = history(20_000);
    beating(&mut h);
    // Deadline 1.01 + 3 + 2.5 = 6.51 s (+0.5 s grace); still active at 10 s.
    ops(&mut h).get(2, "hb", 10_000, 10_010, Some("h1"));
    let msgs = assert_fail(&h, Checker::Liveness, AnomalyKind::MissedExpiry);
    assert!(msgs[0].contains("still showed it active"), "{msgs:?}");
}

#[test]
fn silent_agent_with_an_overlapping_fault_is_exempt() {
    let mut h = history(20_000);
    beating(&mut h);
    ops(&mut h).get(2, "hb", 10_000, 10_010, Some("h1"));
    h.faults.push(fault("partition", 5000, 6000));
    let r = assert_pass(&h, Checker::Liveness);
    assert_eq!(r.counts.get("silent_exempt_fault_overlap"), Some(&1));
}

#[test]
fn silent_agent_in_a_short_run_is_not_observable() {
    let mut h = history(5000);
    beating(&mut h);
    let r = assert_pass(&h, Checker::Liveness);
    assert_eq!(r.counts.get("silent_not_observable"), Some(&1));
}

// --- events ------------------------------------------------------------------

/// Three nodes holding revisions 1..=10.
fn logged() -> History {
    let mut h = history(10_000);
    finals(&mut h, &[], log(1..=10));
    h
}

#[test]
fn resumed_watch_without_gaps_passes() {
    let mut h = logged();
    h.watches.push(session(1, 1, "cut", &[1, 2, 3, 4], 0));
    h.watches
        .push(session(1, 5, "end", &[5, 6, 7, 8, 9, 10], 1000));
    let r = assert_pass(&h, Checker::Events);
    assert_eq!(r.checked, 2 + 2, "2 sessions, 2 node logs compared");
}

#[test]
fn gap_across_a_resume_fails() {
    let mut h = logged();
    h.watches.push(session(1, 1, "cut", &[1, 2, 3, 4], 0));
    h.watches.push(session(1, 7, "end", &[7, 8, 9, 10], 1000));
    let msgs = assert_fail(&h, Checker::Events, AnomalyKind::EventGap);
    assert!(msgs[0].contains("revisions 5..=6"), "{msgs:?}");
}

#[test]
fn duplicate_across_a_resume_fails() {
    let mut h = logged();
    h.watches.push(session(1, 1, "cut", &[1, 2, 3, 4], 0));
    h.watches.push(session(1, 4, "end", &[4, 5, 6], 1000));
    assert_fail(&h, Checker::Events, AnomalyKind::DuplicateEvent);
}

#[test]
fn out_of_order_after_a_resume_fails() {
    let mut h = logged();
    h.watches.push(session(1, 1, "cut", &[1, 2, 3, 4], 0));
    h.watches.push(session(1, 5, "end", &[5, 7, 6, 8], 1000));
    assert_fail(&h, Checker::Events, AnomalyKind::OutOfOrder);
}

#[test]
fn event_below_from_revision_fails() {
    let mut h = logged();
    h.watches.push(session(1, 5, "cut", &[3, 5, 6], 0));
    assert_fail(&h, Checker::Events, AnomalyKind::BeforeFromRevision);
}

#[test]
fn received_event_unlike_the_log_fails() {
    let mut h = logged();
    let mut s = session(1, 1, "cut", &[1, 2, 3], 0);
    s.events[1].kind = "AGENT_EXPIRED".into();
    h.watches.push(s);
    assert_fail(&h, Checker::Events, AnomalyKind::EventMismatch);
}

#[test]
fn nodes_final_logs_disagreeing_fail() {
    let mut h = logged();
    h.finals[1].events[2].agent_id = Some("zz".into());
    assert_fail(&h, Checker::Events, AnomalyKind::LogsDisagree);
}

#[test]
fn compaction_is_fine_only_below_the_window() {
    // The window holds 5..=10: a start at 2 was rightly refused; the
    // watcher re-listed and resumed at 8.
    let mut h = history(10_000);
    finals(&mut h, &[], log(5..=10));
    h.watches.push(session(1, 2, "compacted", &[], 0));
    h.watches.push(session(1, 8, "end", &[8, 9, 10], 1000));
    assert_pass(&h, Checker::Events);
    // A start at 6 was held: refusing it is an anomaly.
    h.watches[0].from_revision = 6;
    assert_fail(&h, Checker::Events, AnomalyKind::SpuriousCompaction);
}

#[test]
fn events_older_than_the_window_are_unverifiable_not_anomalies() {
    let mut h = history(10_000);
    finals(&mut h, &[], log(5..=10));
    h.watches
        .push(session(1, 1, "end", &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0));
    let r = assert_pass(&h, Checker::Events);
    assert_eq!(r.counts.get("received_unverifiable"), Some(&4));
}

// --- raft --------------------------------------------------------------------

/// A stable cluster: n1 leads term 2.
fn sampled() -> History {
    let mut h = history(10_000);
    for (i, t) in [100, 200, 300].into_iter().enumerate() {
        let idx = 10 + i as u64;
        h.samples.push(sample(1, 0, t, "leader", 2, Some(1), idx));
        h.samples
            .push(sample(2, 0, t + 5, "follower", 2, Some(1), idx));
        h.samples
            .push(sample(3, 0, t + 7, "follower", 2, Some(1), idx));
    }
    finals(&mut h, &[], Vec::new());
    h
}

#[test]
fn stable_cluster_passes_raft() {
    assert_pass(&sampled(), Checker::Raft);
}

#[test]
fn two_leaders_in_one_term_fail() {
    let mut h = sampled();
    h.samples.push(sample(3, 0, 400, "leader", 2, Some(3), 13));
    let msgs = assert_fail(&h, Checker::Raft, AnomalyKind::TwoLeaders);
    assert!(msgs[0].contains("term 2 had 2 leaders"), "{msgs:?}");
}

#[test]
fn applied_index_going_back_within_an_incarnation_fails() {
    let mut h = sampled();
    h.samples.push(sample(2, 0, 400, "follower", 2, Some(1), 5));
    let msgs = assert_fail(&h, Checker::Raft, AnomalyKind::WentBack);
    assert!(
        msgs.iter()
            .any(|m| m.contains("applied_index went back from 12")),
        "{msgs:?}"
    );
}

#[test]
fn applied_index_going_back_across_incarnations_passes() {
    let mut h = sampled();
    h.samples.push(sample(2, 1, 400, "follower", 2, Some(1), 5));
    h.samples
        .push(sample(2, 1, 500, "follower", 2, Some(1), 13));
    assert_pass(&h, Checker::Raft);
}

#[test]
fn finals_at_different_indexes_fail() {
    let mut h = sampled();
    h.finals[0].applied_index = 101;
    assert_fail(&h, Checker::Raft, AnomalyKind::FinalsDiverge);
}

// --- everything --------------------------------------------------------------

#[test]
fn clean_history_passes_every_checker() {
    let mut h = sampled();
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10)
        .get(2, "a", 20, 30, Some("v1"))
        .reg(3, "b", "w1", 0, 10)
        .del(3, "b", 40, 50, true);
    beating(&mut h);
    ops(&mut h)
        .hb(1, "hb", 2000, 2010)
        .hb(1, "hb", 3000, 3010)
        .hb(1, "hb", 4000, 4010);
    let events = vec![
        event(1, "AGENT_REGISTERED", "a", 0),
        event(2, "AGENT_REGISTERED", "b", 0),
        event(3, "AGENT_REGISTERED", "hb", 0),
        event(4, "AGENT_DEREGISTERED", "b", 0),
    ];
    finals(&mut h, &[("a", "v1"), ("hb", "h1")], events.clone());
    let mut first = session(1, 1, "cut", &[], 0);
    first.events = events[..2].to_vec();
    let mut second = session(1, 3, "end", &[], 500);
    second.events = events[2..].to_vec();
    h.watches = vec![first, second];
    let report = check_all(&h, &CheckConfig::default());
    for r in &report.results {
        assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    }
    assert_eq!(report.verdict, Verdict::Pass);
    // The history survives a JSON round trip, as the runner writes it.
    let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    assert_eq!(back, h);
}

#[test]
fn expired_agents_are_skipped_by_the_value_checkers() {
    let mut h = history(20_000);
    ops(&mut h)
        .reg(1, "gone", "g1", 0, 10)
        .hb(1, "gone", 100, 110);
    let mut events = log(1..=2);
    events.push(event(3, "AGENT_EXPIRED", "gone", 0));
    finals(&mut h, &[], events);
    let r = assert_pass(&h, Checker::LostWrites);
    assert_eq!(r.counts.get("agents_skipped_expired"), Some(&1));
    assert_pass(&h, Checker::Linearizable);
}
