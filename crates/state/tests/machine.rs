//! Scenario tests of `RegistryState::apply`: registration, rejections,
//! status and health changes, events, runtimes and stats.

mod common;

use std::collections::BTreeMap;

use common::*;
use registry_state::{RegistryState, RestoreError, StateConfig, SNAPSHOT_FORMAT_VERSION};
use registry_types::command::{Cause, Rejection};
use registry_types::{AgentStatus, CommandResult, Event, EventKind, Timestamp};

fn all_events(state: &RegistryState) -> Vec<Event> {
    state
        .events()
        .since(0, usize::MAX)
        .expect("nothing compacted")
}

fn events_after(state: &RegistryState, after: u64) -> Vec<Event> {
    state
        .events()
        .since(after, usize::MAX)
        .expect("inside the window")
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn register_creates_then_updates_keeping_identity() {
    let mut h = Harness::new();
    let mut c = reg("a1", 1_000);
    c.capabilities = vec![cap("Python", "", &[])];
    let res = h.apply(register(c.clone()));
    let CommandResult::Agent {
        record: first,
        created: true,
    } = res
    else {
        panic!("expected a creation, got {res:?}");
    };
    assert_eq!(first.revision, 1);
    assert_eq!(first.create_revision, 1);
    assert_eq!(first.epoch, 1);
    assert_eq!(first.registered_at, Timestamp(1_000));
    assert_eq!(first.updated_at, Timestamp(1_000));
    assert_eq!(first.last_heartbeat, Timestamp(1_000));
    assert_eq!(first.status, AgentStatus::Active);
    assert_eq!(first.health_score, 1.0);
    assert_eq!(first.load_factor, 0.0);
    assert_eq!(h.state.revision(), 1);

    // Something else happens in between, so revisions are not just +1.
    h.register(reg("other", 1_500));

    c.now = Timestamp(2_000);
    c.name = "renamed".into();
    c.health_score = Some(0.5);
    let res = h.apply(register(c.clone()));
    let CommandResult::Agent {
        record: second,
        created: false,
    } = res
    else {
        panic!("expected an update, got {res:?}");
    };
    assert_eq!(second.name, "renamed");
    assert_eq!(second.create_revision, 1, "create_revision is kept");
    assert_eq!(
        second.registered_at,
        Timestamp(1_000),
        "registered_at is kept"
    );
    assert_eq!(second.revision, 3);
    assert_eq!(second.epoch, 3, "a re-registration is a new epoch");
    assert_eq!(second.updated_at, Timestamp(2_000));
    assert_eq!(second.last_heartbeat, Timestamp(2_000));
    assert_eq!(second.health_score, 0.5);
    assert_eq!(h.state.get(&id("a1")), Some(&*second));
    assert_eq!(h.state.revision(), 3);
    assert_eq!(h.state.stats().total_registrations, 2);

    // Fields not given keep their values; given ones replace them.
    let mut c3 = reg("a1", 3_000);
    c3.performance_metrics = Some(BTreeMap::from([("latency_ms".to_string(), 5.0)]));
    let third = h.register(c3);
    assert_eq!(third.health_score, 0.5);
    assert_eq!(
        third.capabilities,
        vec![],
        "capabilities are replaced, not merged"
    );
    assert_eq!(third.performance_metrics["latency_ms"], 5.0);
    let fourth = h.register(reg("a1", 4_000));
    assert_eq!(fourth.performance_metrics["latency_ms"], 5.0);

    let ev = all_events(&h.state);
    assert_eq!(
        kinds(&ev),
        vec![
            EventKind::AgentRegistered,
            EventKind::AgentRegistered,
            EventKind::AgentUpdated,
            EventKind::AgentUpdated,
            EventKind::AgentUpdated,
        ]
    );
    assert_eq!(ev[2].previous_status, Some(AgentStatus::Active));
    assert_eq!(ev[2].cause, Cause::Registration);
    assert_eq!(ev[2].at, Timestamp(2_000));
}

#[test]
fn if_absent_rejects_an_existing_agent_and_changes_nothing() {
    let mut h = Harness::new();
    let first = h.register(reg("a1", 1));
    let before = h.state.snapshot();

    let mut c = reg("a1", 2);
    c.if_absent = true;
    c.name = "intruder".into();
    assert_eq!(
        h.apply(register(c.clone())),
        CommandResult::Rejected(Rejection::AlreadyExists {
            agent_id: id("a1"),
            revision: first.revision,
        })
    );
    assert_eq!(h.state.snapshot(), before, "a rejection changes nothing");
    assert_eq!(h.state.revision(), 1);

    // On a free id, if_absent creates.
    c.agent_id = id("a2");
    assert!(matches!(
        h.apply(register(c)),
        CommandResult::Agent { created: true, .. }
    ));
}

#[test]
fn expected_revision_guards_registration() {
    let mut h = Harness::new();

    // 0 means "must not exist": it creates on a free id.
    let mut c = reg("a1", 1);
    c.expected_revision = Some(0);
    let first = h.register(c.clone());
    assert_eq!(first.revision, 1);
    h.register(reg("other", 2));
    let before = h.state.snapshot();

    // 0 on an existing agent is refused.
    c.now = Timestamp(3);
    assert_eq!(
        h.apply(register(c.clone())),
        CommandResult::Rejected(Rejection::RevisionMismatch {
            agent_id: id("a1"),
            expected: 0,
            actual: 1,
        })
    );
    // A stale revision is refused, and so is a future one.
    for expected in [2, 7] {
        c.expected_revision = Some(expected);
        assert_eq!(
            h.apply(register(c.clone())),
            CommandResult::Rejected(Rejection::RevisionMismatch {
                agent_id: id("a1"),
                expected,
                actual: 1,
            })
        );
    }
    // A revision on a missing agent is refused (actual 0).
    let mut missing = reg("nobody", 4);
    missing.expected_revision = Some(1);
    assert_eq!(
        h.apply(register(missing)),
        CommandResult::Rejected(Rejection::RevisionMismatch {
            agent_id: id("nobody"),
            expected: 1,
            actual: 0,
        })
    );
    assert_eq!(h.state.snapshot(), before, "rejections change nothing");
    assert_eq!(h.state.revision(), 2, "no revision is used by a rejection");

    // The current revision is accepted.
    c.expected_revision = Some(1);
    let updated = h.register(c);
    assert_eq!(updated.revision, 3);
}

#[test]
fn suspension_survives_re_registration() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    h.apply(set_status("a1", AgentStatus::Suspended, 2));
    for asked in [None, Some(AgentStatus::Active), Some(AgentStatus::Busy)] {
        let mut c = reg("a1", 3);
        c.status = asked;
        let r = h.register(c);
        assert_eq!(r.status, AgentStatus::Suspended, "asked for {asked:?}");
    }
    assert_eq!(h.state.stats().agents_by_status[&AgentStatus::Suspended], 1);
    // Only the operator lifts it.
    h.apply(set_status("a1", AgentStatus::Active, 4));
    let mut c = reg("a1", 5);
    c.status = Some(AgentStatus::Busy);
    assert_eq!(h.register(c).status, AgentStatus::Busy);
}

#[test]
fn re_registration_revives_and_keeps_reported_statuses() {
    let revived = [
        AgentStatus::Unhealthy,
        AgentStatus::Offline,
        AgentStatus::Deregistering,
        AgentStatus::Registering,
    ];
    for from in revived {
        let mut h = Harness::new();
        h.register(reg("a1", 1));
        h.apply(set_status("a1", from, 2));
        let rev_before = h.state.revision();
        let r = h.register(reg("a1", 3));
        assert_eq!(r.status, AgentStatus::Active, "revived from {from}");
        // The status change is its own event, caused by the registration.
        let ev = events_after(&h.state, rev_before);
        assert_eq!(
            kinds(&ev),
            vec![EventKind::AgentUpdated, EventKind::AgentStatusChanged]
        );
        assert_eq!(ev[1].previous_status, Some(from));
        assert_eq!(ev[1].status, Some(AgentStatus::Active));
        assert_eq!(ev[1].cause, Cause::Registration);
        assert_eq!(h.state.stats().agents_by_status.get(&from), None);
        assert_eq!(h.state.stats().agents_by_status[&AgentStatus::Active], 1);
    }
    // Self-reported statuses are kept when the registration names none, and
    // replaced when it names one.
    for kept in [AgentStatus::Busy, AgentStatus::Degraded] {
        let mut h = Harness::new();
        let mut c = reg("a1", 1);
        c.status = Some(kept);
        assert_eq!(h.register(c).status, kept);
        assert_eq!(h.register(reg("a1", 2)).status, kept);
        let mut c = reg("a1", 3);
        c.status = Some(AgentStatus::Active);
        assert_eq!(h.register(c).status, AgentStatus::Active);
    }
}

#[test]
fn commands_on_unknown_agents_are_not_found() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    let before = h.state.snapshot();
    let not_found = CommandResult::Rejected(Rejection::NotFound {
        agent_id: id("ghost"),
    });
    assert_eq!(h.apply(deregister("ghost", 2)), not_found);
    assert_eq!(
        h.apply(set_status("ghost", AgentStatus::Busy, 2)),
        not_found
    );
    assert_eq!(
        h.apply(set_health("ghost", Some(0.1), None, &[], 2)),
        not_found
    );
    assert_eq!(h.state.snapshot(), before);

    // A removed agent is unknown too.
    assert_eq!(
        h.apply(deregister("a1", 3)),
        CommandResult::Removed {
            agent_id: id("a1"),
            revision: 2
        }
    );
    assert_eq!(
        h.apply(deregister("a1", 4)),
        CommandResult::Rejected(Rejection::NotFound { agent_id: id("a1") })
    );
    assert_eq!(h.state.revision(), 2);
    assert!(h.state.is_empty());
}

#[test]
fn set_status_emits_the_previous_status_and_same_status_is_a_no_op() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    let res = h.apply(set_status("a1", AgentStatus::Busy, 5));
    let CommandResult::Agent {
        record,
        created: false,
    } = res
    else {
        panic!("{res:?}")
    };
    assert_eq!(record.status, AgentStatus::Busy);
    assert_eq!(record.revision, 2);
    assert_eq!(record.updated_at, Timestamp(5));
    assert_eq!(
        record.last_heartbeat,
        Timestamp(1),
        "an operator's status is no heartbeat"
    );
    assert_eq!(record.epoch, 1, "a status change is not a new epoch");
    let ev = events_after(&h.state, 1);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::AgentStatusChanged);
    assert_eq!(ev[0].revision, 2);
    assert_eq!(ev[0].status, Some(AgentStatus::Busy));
    assert_eq!(ev[0].previous_status, Some(AgentStatus::Active));
    assert_eq!(ev[0].cause, Cause::Operator);
    assert_eq!(ev[0].agent_id, Some(id("a1")));

    let before = h.state.snapshot();
    let res = h.apply(set_status("a1", AgentStatus::Busy, 6));
    assert!(
        matches!(res, CommandResult::Agent { ref record, created: false } if record.revision == 2)
    );
    assert_eq!(
        h.state.snapshot(),
        before,
        "same status: no event, no revision"
    );

    // The status index follows the change.
    let busy = registry_types::api::ListFilter {
        status: Some(AgentStatus::Busy),
        ..Default::default()
    };
    assert_eq!(ids(&list_all(&h.state, &busy, 10)), vec!["a1"]);
    let active = registry_types::api::ListFilter {
        status: Some(AgentStatus::Active),
        ..Default::default()
    };
    assert!(list_all(&h.state, &active, 10).is_empty());
}

#[test]
fn set_health_merges_metrics() {
    let mut h = Harness::new();
    let mut c = reg("a1", 1);
    c.performance_metrics = Some(BTreeMap::from([
        ("latency_ms".to_string(), 10.0),
        ("success_rate".to_string(), 0.9),
    ]));
    h.register(c);
    let res = h.apply(set_health(
        "a1",
        None,
        Some(0.7),
        &[("latency_ms", 12.0), ("qps", 3.0)],
        9,
    ));
    let CommandResult::Agent {
        record,
        created: false,
    } = res
    else {
        panic!("{res:?}")
    };
    assert_eq!(record.health_score, 1.0, "not given: kept");
    assert_eq!(record.load_factor, 0.7);
    assert_eq!(
        record.performance_metrics,
        BTreeMap::from([
            ("latency_ms".to_string(), 12.0),
            ("qps".to_string(), 3.0),
            ("success_rate".to_string(), 0.9),
        ])
    );
    assert_eq!(record.revision, 2);
    assert_eq!(record.updated_at, Timestamp(9));
    assert_eq!(record.status, AgentStatus::Active);
    let res = h.apply(set_health("a1", Some(0.2), None, &[], 10));
    let CommandResult::Agent { record, .. } = res else {
        panic!("{res:?}")
    };
    assert_eq!(record.health_score, 0.2);
    assert_eq!(record.load_factor, 0.7);
    assert_eq!(record.performance_metrics.len(), 3);
    let ev = events_after(&h.state, 1);
    assert_eq!(
        kinds(&ev),
        vec![EventKind::AgentUpdated, EventKind::AgentUpdated]
    );
    assert!(ev.iter().all(|e| e.cause == Cause::AgentReport));
}

#[test]
fn events_have_contiguous_revisions_and_match_records() {
    let mut h = Harness::new();
    let mut t = 0;
    let mut tick = || {
        t += 10;
        t
    };
    for i in 0..6 {
        let mut c = reg(&format!("a{i}"), tick());
        c.runtime_id = format!("rt{}", i % 3);
        h.register(c);
    }
    h.apply(set_status("a1", AgentStatus::Unhealthy, tick()));
    h.apply(set_health("a2", Some(0.3), None, &[], tick()));
    let mut c = reg("a1", tick());
    c.runtime_id = "rt9".into();
    h.register(c);
    h.apply(deregister("a0", tick()));
    h.apply(deregister("a3", tick()));
    h.apply(set_status("a2", AgentStatus::Suspended, tick()));
    h.apply(deregister("ghost", tick()));

    let ev = all_events(&h.state);
    assert!(!ev.is_empty());
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.revision, i as u64 + 1, "no gaps, starting at 1: {ev:#?}");
    }
    assert_eq!(ev.last().unwrap().revision, h.state.revision());
    // Times never go backwards.
    assert!(ev.windows(2).all(|w| w[0].at <= w[1].at));
    // Every live record's revision is the revision of an event about it.
    for r in h.state.records() {
        let e = &ev[r.revision as usize - 1];
        assert_eq!(e.agent_id.as_ref(), Some(&r.agent_id));
        assert_eq!(e.status, Some(r.status));
    }
    // Resuming in the middle gives exactly the tail.
    let tail = events_after(&h.state, 5);
    assert_eq!(tail, ev[5..].to_vec());
    assert_eq!(h.state.events().since(5, 2).unwrap(), ev[5..7].to_vec());
    assert!(events_after(&h.state, h.state.revision()).is_empty());
}

#[test]
fn runtime_joined_and_left_fire_once_per_runtime() {
    let mut h = Harness::new();
    let on = |agent: &str, rt: &str, now: i64| {
        let mut c = reg(agent, now);
        c.runtime_id = rt.into();
        c
    };
    let runtime_events = |state: &RegistryState, after: u64| -> Vec<(EventKind, String)> {
        events_after(state, after)
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::RuntimeJoined | EventKind::RuntimeLeft))
            .map(|e| {
                assert_eq!(e.agent_id, None);
                (e.kind, e.runtime_id)
            })
            .collect()
    };
    use EventKind::{RuntimeJoined as J, RuntimeLeft as L};

    h.register(on("a1", "rtA", 1));
    h.register(on("a2", "rtA", 2));
    h.register(on("a1", "rtA", 3)); // same runtime again: nothing
    assert_eq!(runtime_events(&h.state, 0), vec![(J, "rtA".into())]);

    // The first agent leaving is not the runtime leaving.
    let rev = h.state.revision();
    h.apply(deregister("a1", 4));
    assert_eq!(runtime_events(&h.state, rev), vec![]);

    // Moving the last agent of rtA to rtB: rtA left, rtB joined.
    let rev = h.state.revision();
    h.register(on("a2", "rtB", 5));
    assert_eq!(
        runtime_events(&h.state, rev),
        vec![(L, "rtA".into()), (J, "rtB".into())]
    );

    // Moving to a runtime that already has agents: no join; the old runtime
    // keeps another agent: no leave.
    h.register(on("a3", "rtC", 6));
    h.register(on("a4", "rtB", 7));
    let rev = h.state.revision();
    h.register(on("a4", "rtC", 8));
    assert_eq!(runtime_events(&h.state, rev), vec![]);

    // Moving to no runtime at all leaves.
    let rev = h.state.revision();
    h.register(on("a2", "", 9));
    assert_eq!(runtime_events(&h.state, rev), vec![(L, "rtB".into())]);

    // Status changes and health reports do not touch runtimes.
    let rev = h.state.revision();
    h.apply(set_status("a3", AgentStatus::Offline, 10));
    h.apply(set_health("a3", Some(0.0), None, &[], 11));
    assert_eq!(runtime_events(&h.state, rev), vec![]);

    // The last two agents of rtC leaving: one leave, at the last.
    let rev = h.state.revision();
    h.apply(deregister("a3", 12));
    h.apply(deregister("a4", 13));
    assert_eq!(runtime_events(&h.state, rev), vec![(L, "rtC".into())]);
    let last = all_events(&h.state).pop().unwrap();
    assert_eq!(
        (last.kind, last.cause, last.at),
        (L, Cause::Deregistration, Timestamp(13))
    );

    // Coming back joins again.
    let rev = h.state.revision();
    h.register(on("a9", "rtA", 14));
    assert_eq!(runtime_events(&h.state, rev), vec![(J, "rtA".into())]);

    // Over the whole history joins and leaves alternate per runtime.
    let mut open: BTreeMap<String, bool> = BTreeMap::new();
    for (k, rt) in runtime_events(&h.state, 0) {
        let was = open.insert(rt.clone(), k == J).unwrap_or(false);
        assert_ne!(was, k == J, "{k:?} {rt} twice in a row");
    }
}

#[test]
fn stats_count_by_scan() {
    let mut h = Harness::new();
    let mut c = reg("a1", 1);
    c.capabilities = vec![
        cap("Python code generation", "", &["python"]),
        cap("python CODE generation", "dup name, other case", &[]),
        cap("Summarize", "", &[]),
    ];
    h.register(c);
    let mut c = reg("a2", 2);
    c.capabilities = vec![cap("Summarize", "", &[])];
    h.register(c);
    h.register(reg("a3", 3));
    h.apply(set_status("a3", AgentStatus::Offline, 4));

    let s = h.state.stats();
    assert_eq!(s.total_agents, 3);
    assert_eq!(s.total_registrations, 3);
    assert_eq!(s.total_capabilities, 4);
    assert_eq!(
        s.capability_distribution,
        BTreeMap::from([
            ("python code generation".to_string(), 1),
            ("summarize".to_string(), 2),
        ])
    );
    assert_eq!(
        s.agents_by_status,
        BTreeMap::from([(AgentStatus::Active, 2), (AgentStatus::Offline, 1)])
    );
    assert_eq!((s.active_agents, s.offline_agents), (2, 1));
    assert_eq!(s.revision, h.state.revision());
    assert_eq!(s, scan_stats(&h.state, 3));

    // Updates replace capabilities; removals do not lower registrations.
    let mut c = reg("a1", 5);
    c.capabilities = vec![cap("Translate", "", &[])];
    h.register(c);
    h.apply(deregister("a2", 6));
    let s = h.state.stats();
    assert_eq!(s.total_registrations, 3);
    assert_eq!(s.total_agents, 2);
    assert_eq!(s.total_capabilities, 1);
    assert_eq!(
        s.capability_distribution,
        BTreeMap::from([("translate".to_string(), 1)])
    );
    assert_eq!(s, scan_stats(&h.state, 3));

    // Re-creating a removed id is a new registration.
    h.register(reg("a2", 7));
    assert_eq!(h.state.stats().total_registrations, 4);
    h.apply(deregister("a1", 8));
    h.apply(deregister("a2", 9));
    h.apply(deregister("a3", 10));
    let s = h.state.stats();
    assert_eq!(s.total_registrations, 4);
    assert_eq!(s.total_agents, 0);
    assert!(s.agents_by_status.is_empty());
    assert!(s.capability_distribution.is_empty());
    assert_eq!(h.state.index_stats().1, 0, "no postings left behind");
}

#[test]
fn event_window_compacts_with_an_explicit_answer() {
    let mut h = Harness::with(RegistryState::new(StateConfig { event_window: 4 }));
    for i in 0..10 {
        h.register(reg(&format!("a{i}"), i));
    }
    let log = h.state.events();
    assert_eq!(log.len(), 4);
    assert_eq!(log.compacted_through(), 6);
    // Resuming at the compaction point is complete; below it is refused.
    let ev = log.since(6, 100).unwrap();
    assert_eq!(
        ev.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    for after in [0, 1, 5] {
        let err = log.since(after, 100).unwrap_err();
        assert_eq!(err.compacted_through, 6);
    }
    assert_eq!(log.since(9, 100).unwrap().len(), 1);
    assert!(log.since(10, 100).unwrap().is_empty());
    assert!(log.since(99, 100).unwrap().is_empty());

    // The window and its compaction point survive a snapshot.
    let snap = h.state.snapshot();
    assert_eq!(snap.events_compacted_through, 6);
    let restored = RegistryState::restore(StateConfig { event_window: 4 }, snap.clone()).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert!(restored.events().since(5, 10).is_err());
    assert_eq!(restored.events().since(6, 10).unwrap(), ev);
}

#[test]
fn restore_refuses_a_snapshot_of_another_format() {
    let mut h = Harness::new();
    let mut c = reg("a", 1);
    c.capabilities = vec![cap("x", "", &[]), cap("y", "", &[])];
    h.register(c);
    let snap = h.state.snapshot();

    // Newer (a later release) and older (not converted on decoding) are
    // refused alike, naming the format found and the one supported.
    for found in [SNAPSHOT_FORMAT_VERSION + 1, SNAPSHOT_FORMAT_VERSION - 1] {
        let mut bad = snap.clone();
        bad.format_version = found;
        let err = RegistryState::restore(StateConfig::default(), bad).unwrap_err();
        assert_eq!(
            err,
            RestoreError::UnsupportedFormat {
                found,
                supported: SNAPSHOT_FORMAT_VERSION
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "snapshot format {found} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})"
            )
        );
    }

    // The format it supports restores, derived counts included.
    let restored = RegistryState::restore(StateConfig::default(), snap.clone()).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(restored.stats().total_capabilities, 2);
    assert_eq!(restored.stats(), h.state.stats());
}

#[test]
fn a_legacy_registration_keeps_what_it_does_not_carry() {
    use registry_types::command::Keep;
    let mut h = Harness::new();
    // --- set through /v1: a profile, capabilities and a short TTL
    let mut v1 = reg("dev", 1_000);
    v1.agent_type = "llm".into();
    v1.runtime_id = "pod-1".into();
    v1.tags = vec!["gpu".into()];
    v1.description = "set by an operator".into();
    v1.capabilities = vec![cap("code_generation", "", &["python"])];
    v1.ttl_seconds = 2;
    v1.offline_after_seconds = 4;
    v1.deregister_after_seconds = 8;
    h.register(v1.clone());

    // --- a Dev-Tools re-registration: new name, endpoint and capabilities
    let mut legacy = reg("dev", 2_000);
    legacy.name = "Feature Dev".into();
    legacy.endpoint = "http://feature-dev:8002".into();
    legacy.capabilities = vec![cap("refactoring", "", &[])];
    legacy.keep = Keep {
        profile: true,
        capabilities: false,
        metadata: false,
        lease: true,
    };
    let r = h.register(legacy.clone());
    assert_eq!(r.name, "Feature Dev");
    assert_eq!(r.endpoint, "http://feature-dev:8002");
    assert_eq!(
        r.capabilities, legacy.capabilities,
        "capabilities are carried"
    );
    assert_eq!(
        (
            r.agent_type.as_str(),
            r.runtime_id.as_str(),
            r.description.as_str()
        ),
        ("llm", "pod-1", "set by an operator")
    );
    assert_eq!(r.tags, v1.tags);
    assert_eq!(r.version, v1.version);
    assert_eq!(
        (
            r.ttl_seconds,
            r.offline_after_seconds,
            r.deregister_after_seconds
        ),
        (2, 4, 8),
        "the TTL set through /v1 stays"
    );

    // --- a configurable-agents re-registration keeps capabilities, not the lease
    let mut host_port = reg("dev", 3_000);
    host_port.ttl_seconds = 60;
    host_port.offline_after_seconds = 90;
    host_port.keep = Keep {
        profile: true,
        capabilities: true,
        metadata: true,
        lease: false,
    };
    let before = h.state.get(&id("dev")).unwrap().metadata.clone();
    host_port.metadata = registry_types::Metadata(
        serde_json::json!({"ignored": true})
            .as_object()
            .unwrap()
            .clone(),
    );
    let r = h.register(host_port);
    assert_eq!(r.metadata, before, "kept metadata");
    assert_eq!(r.capabilities, legacy.capabilities);
    assert_eq!((r.ttl_seconds, r.offline_after_seconds), (60, 90));
    assert_eq!(r.agent_type, "llm");

    // --- a /v1 registration replaces everything again
    let r = h.register(reg("dev", 4_000));
    assert_eq!(r.agent_type, "");
    assert!(r.capabilities.is_empty() && r.tags.is_empty());
    assert_eq!(r.ttl_seconds, 30);

    // --- a creation takes the command's values whatever it keeps
    let mut fresh = reg("new", 5_000);
    fresh.agent_type = "tool".into();
    fresh.ttl_seconds = 7;
    fresh.capabilities = vec![cap("x", "", &[])];
    fresh.keep = Keep {
        profile: true,
        capabilities: true,
        metadata: true,
        lease: true,
    };
    let r = h.register(fresh);
    assert_eq!(
        (r.agent_type.as_str(), r.ttl_seconds, r.capabilities.len()),
        ("tool", 7, 1)
    );
}

#[test]
fn counters_follow_heartbeats_expiries_advisories_and_reports() {
    use registry_types::command::ExpiryStep;
    use registry_types::scaling::ScalingPolicyRequest;
    let mut h = Harness::new();
    let mut c = reg("a", 1_000);
    c.capabilities = vec![cap("trade", "", &[])];
    h.register(c);
    h.register(reg("b", 1_000));
    assert_eq!(h.state.counters(), Default::default());

    // --- checkpoints add the heartbeats they count, whatever their entries
    h.apply(registry_types::Command::Checkpoint {
        entries: vec![heard("a", 1_500), heard("nobody", 1_500)],
        heartbeats: 5,
        now: Timestamp(2_000),
    });
    h.apply(checkpoint(vec![], 2_100));
    assert_eq!(h.state.counters().heartbeats, 5);

    // --- each step taken counts; skipped entries do not
    let epoch = |h: &Harness, a: &str| h.state.get(&id(a)).unwrap().epoch;
    let (ea, eb) = (epoch(&h, "a"), epoch(&h, "b"));
    h.apply(expire(
        vec![
            silent("a", ea, ExpiryStep::Unhealthy),
            silent("b", eb + 99, ExpiryStep::Unhealthy),
            silent("b", eb, ExpiryStep::Offline),
        ],
        3_000,
    ));
    h.apply(expire(vec![silent("b", eb, ExpiryStep::Offline)], 3_100));
    h.apply(expire(vec![silent("b", eb, ExpiryStep::Remove)], 3_200));
    assert_eq!(h.state.counters().missed_heartbeat_transitions, 3);

    // --- an advisory coming into force counts once, not on each evaluation
    h.apply(registry_types::Command::SetScalingPolicy {
        capability: "trade".into(),
        policy: Some(ScalingPolicyRequest {
            min_agents: 3,
            max_agents: 10,
            high_load: 0.8,
            low_load: 0.2,
            min_health: 0.5,
        }),
        now: Timestamp(4_000),
    });
    let raised = h.state.scaling_advisories().count() as u64;
    assert!(raised >= 1, "below min_agents: an advisory is in force");
    assert_eq!(h.state.counters().advisories_raised, raised);
    h.apply(checkpoint(vec![], 4_100));
    assert_eq!(
        h.state.counters().advisories_raised,
        raised,
        "still in force: not again"
    );

    // --- discovery reports add up, with no revision and no event
    let rev = h.state.revision();
    h.apply(registry_types::Command::CountDiscoveryRequests {
        count: 40,
        now: Timestamp(5_000),
    });
    h.apply(registry_types::Command::CountDiscoveryRequests {
        count: 2,
        now: Timestamp(5_100),
    });
    assert_eq!(h.state.revision(), rev);
    let counters = h.state.counters();
    assert_eq!(counters.discovery_requests, 42);

    // --- the stats report them, and a snapshot carries them
    let stats = h.state.stats();
    assert_eq!(
        (
            stats.health_checks_performed,
            stats.failed_health_checks,
            stats.auto_scaling_events,
            stats.service_discovery_requests
        ),
        (5, 3, raised, 42)
    );
    let restored = RegistryState::restore(StateConfig::default(), h.state.snapshot()).unwrap();
    assert_eq!(restored.counters(), counters);
}

#[test]
fn health_distribution_bands_include_their_lower_bound() {
    let mut h = Harness::new();
    for (i, score) in [0.0, 0.19, 0.2, 0.4, 0.59, 0.6, 0.79, 0.8, 1.0]
        .into_iter()
        .enumerate()
    {
        let mut c = reg(&format!("a{i}"), 1_000);
        c.health_score = Some(score);
        h.register(c);
    }
    let d = h.state.stats().health_distribution;
    let got: Vec<(&str, u64)> = d.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        got,
        [
            ("0.0-0.2", 2),
            ("0.2-0.4", 1),
            ("0.4-0.6", 2),
            ("0.6-0.8", 2),
            ("0.8-1.0", 2)
        ]
    );
    let empty = RegistryState::default().stats().health_distribution;
    assert_eq!(empty.len(), 5);
    assert!(empty.values().all(|n| *n == 0));
}

#[test]
fn a_format_2_snapshot_converts_with_numbers_kept_and_counters_zero() {
    use registry_state::{SnapshotData, SnapshotDataV2};
    let mut h = Harness::new();
    let mut c = reg("a", 1_000);
    c.capabilities = vec![cap("trade", "d", &["t"])];
    c.capabilities[0].cost_estimate = Some(registry_types::CostEstimate::Number(0.5));
    c.capabilities.push(cap("plain", "", &[]));
    h.register(c);
    let current = h.state.snapshot();
    // The same state as a release of format 2 wrote it.
    let old = SnapshotDataV2 {
        format_version: 2,
        revision: current.revision,
        total_registrations: current.total_registrations,
        agents: current
            .agents
            .iter()
            .map(|r| registry_types::v1::AgentRecord {
                agent_id: r.agent_id.clone(),
                name: r.name.clone(),
                agent_type: r.agent_type.clone(),
                runtime_id: r.runtime_id.clone(),
                endpoint: r.endpoint.clone(),
                version: r.version.clone(),
                description: r.description.clone(),
                capabilities: r
                    .capabilities
                    .iter()
                    .map(|c| registry_types::v1::Capability {
                        name: c.name.clone(),
                        description: c.description.clone(),
                        tags: c.tags.clone(),
                        cost_estimate: match c.cost_estimate {
                            Some(registry_types::CostEstimate::Number(x)) => Some(x),
                            _ => None,
                        },
                    })
                    .collect(),
                tags: r.tags.clone(),
                metadata: r.metadata.clone(),
                status: r.status,
                health_score: r.health_score,
                load_factor: r.load_factor,
                performance_metrics: r.performance_metrics.clone(),
                ttl_seconds: r.ttl_seconds,
                offline_after_seconds: r.offline_after_seconds,
                deregister_after_seconds: r.deregister_after_seconds,
                registered_at: r.registered_at,
                updated_at: r.updated_at,
                last_heartbeat: r.last_heartbeat,
                create_revision: r.create_revision,
                revision: r.revision,
                epoch: r.epoch,
            })
            .collect(),
        events_compacted_through: current.events_compacted_through,
        events: current.events.iter().map(v3_event).collect(),
        brake_engaged: current.brake_engaged,
        scaling_policies: current.scaling_policies.clone(),
        advisories: current.advisories.clone(),
    };
    // Format 2 did not record who made a change, but every caller was
    // anonymous then: the conversion gives exactly what this release's
    // apply of the same commands gives.
    assert!(current.agents[0].registered_by.is_some());
    assert_eq!(SnapshotData::from(old), current);
}

/// An event as formats 2 and 3 stored it.
fn v3_event(e: &registry_types::Event) -> registry_types::v3::Event {
    registry_types::v3::Event {
        revision: e.revision,
        kind: e.kind,
        agent_id: e.agent_id.clone(),
        at: e.at,
        cause: e.cause,
        status: e.status,
        previous_status: e.previous_status,
        runtime_id: e.runtime_id.clone(),
        detail: e.detail.clone(),
        capabilities: e.capabilities.clone(),
        advisory: e.advisory.clone(),
    }
}

#[test]
fn entries_of_format_1_apply_but_count_nothing() {
    use registry_types::command::ExpiryStep;
    let mut h = Harness::new();
    let epoch = h.register(reg("a", 1_000)).epoch;
    let wrapped = |c| registry_types::Command::Format1(Box::new(c));
    h.apply(wrapped(expire(
        vec![silent("a", epoch, ExpiryStep::Unhealthy)],
        2_000,
    )));
    h.apply(wrapped(registry_types::Command::Checkpoint {
        entries: vec![heard("a", 2_500)],
        heartbeats: 3,
        now: Timestamp(3_000),
    }));
    let r = h.state.get(&id("a")).unwrap();
    assert_eq!(
        r.status,
        AgentStatus::Active,
        "the expiry and the revival applied"
    );
    assert_eq!(r.last_heartbeat, Timestamp(2_500));
    assert_eq!(h.state.counters(), Default::default());
    // The same commands unwrapped count.
    h.apply(expire(
        vec![silent("a", epoch, ExpiryStep::Unhealthy)],
        4_000,
    ));
    assert_eq!(h.state.counters().missed_heartbeat_transitions, 1);
}
