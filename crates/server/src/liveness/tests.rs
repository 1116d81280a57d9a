use std::collections::BTreeMap;

use registry_types::api::HeartbeatRequest;
use registry_types::command::ExpiryStep;
use registry_types::limits::Limits;
use registry_types::{AgentRecord, AgentStatus};

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
        registered_by: None,
        agent_card: None,
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
    let (none, limits) = (BTreeMap::new(), Limits::default());
    table
        .beat(
            &id,
            Beat {
                health_score: Some(0.5),
                ..Beat::default()
            },
            &none,
            &limits,
            t,
            Timestamp(1),
        )
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let beat = Beat {
        status: Some(AgentStatus::Busy),
        metrics: BTreeMap::from([("q".into(), 3.0)]),
        ..Beat::default()
    };
    table
        .beat(&id, beat, &none, &limits, Instant::now(), Timestamp(2))
        .unwrap();
    assert_eq!(table.last_seen(&id), Some(Instant::now()));
    let drained = table.drain_pending();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].last_heartbeat, Timestamp(2));
    assert_eq!(drained[0].health_score, Some(0.5));
    assert_eq!(drained[0].status, Some(AgentStatus::Busy));
    assert!(table.drain_pending().is_empty(), "drained once");
    assert!(table.last_seen(&id).is_some(), "the lease itself stays");
}

/// Metrics merge across the beats between two checkpoints: the merged
/// set (record, pending beats, this beat) is what the limit bounds, or one
/// batch of heartbeats for one agent would grow its record without bound.
#[tokio::test(start_paused = true)]
async fn merged_metrics_of_pending_beats_are_bounded() {
    let table = LeaseTable::default();
    let id = AgentId::parse("x").unwrap();
    let limits = Limits::default();
    let metrics = |from: usize, n: usize| -> BTreeMap<String, f64> {
        (from..from + n).map(|i| (format!("m{i}"), 1.0)).collect()
    };
    let beat = |m| Beat {
        metrics: m,
        ..Beat::default()
    };
    let held = metrics(0, 10);
    let now = Instant::now();
    let max = limits.max_metrics;
    // Record (10) + 50 new: 60, within 64.
    table
        .beat(
            &id,
            beat(metrics(10, 50)),
            &held,
            &limits,
            now,
            Timestamp(1),
        )
        .unwrap();
    // 60 + 5 new names: 65, refused, and nothing of it recorded.
    let e = table
        .beat(&id, beat(metrics(60, 5)), &held, &limits, now, Timestamp(2))
        .unwrap_err();
    assert_eq!(e.error.field.as_deref(), Some("metrics"));
    // Known names only update values: accepted.
    table
        .beat(&id, beat(metrics(0, 60)), &held, &limits, now, Timestamp(3))
        .unwrap();
    // Up to the limit exactly.
    table
        .beat(&id, beat(metrics(60, 4)), &held, &limits, now, Timestamp(4))
        .unwrap();
    let drained = table.drain_pending();
    let mut merged = held.clone();
    merged.extend(drained[0].metrics.clone());
    assert_eq!(merged.len(), max);
    // After the checkpoint the record holds them: the same bound applies.
    let e = table
        .beat(
            &id,
            beat(metrics(100, 1)),
            &merged,
            &limits,
            now,
            Timestamp(5),
        )
        .unwrap_err();
    assert_eq!(e.error.field.as_deref(), Some("metrics"));
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
    leases
        .beat(
            &live.agent_id,
            Beat::default(),
            &BTreeMap::new(),
            &Limits::default(),
            now,
            wall_now,
        )
        .unwrap();
    let plan = plan_sweep(
        [&live].into_iter(),
        &leases,
        now,
        wall_now,
        t0,
        Duration::ZERO,
    );
    assert!(plan.entries.is_empty(), "{plan:?}");
    assert_eq!((plan.leased, leases.len()), (1, 1), "every lease matched");
    // A lease whose agent is not among the records is not matched: the
    // sweep then drops the stale ones (`LeaseTable::retain`).
    let plan = plan_sweep(
        [&offline].into_iter(),
        &leases,
        now,
        wall_now,
        t0,
        Duration::ZERO,
    );
    assert_eq!(plan.leased, 0);
    assert!(leases.len() > plan.leased);
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
