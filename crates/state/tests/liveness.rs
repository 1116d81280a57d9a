//! Scenario tests of the liveness entries the leader proposes: checkpoints
//! (batched heartbeats), expiries (batched ladder steps, each guarded by the
//! agent's registration epoch) and the mass-expiry brake. Every rule of the
//! liveness issue has a test here, with the exact events and causes it
//! produces, written out as one line per event.

mod common;

use std::collections::BTreeMap;

use common::*;
use registry_state::{RegistryState, SnapshotData, StateConfig};
use registry_types::api::ListFilter;
use registry_types::command::{CheckpointEntry, ExpiryStep};
use registry_types::{AgentStatus, Command, CommandResult, Event, Timestamp, VariantArray};

use AgentStatus::{
    Active, Busy, Degraded, Deregistering, Offline, Registering, Suspended, Unhealthy,
};

fn events_after(state: &RegistryState, after: u64) -> Vec<Event> {
    state
        .events()
        .since(after, usize::MAX)
        .expect("inside the window")
}

fn batch(applied: u64, skipped: u64) -> CommandResult {
    CommandResult::EntriesApplied { applied, skipped }
}

/// One event as a line: `revision KIND agent previous->status cause @runtime`.
fn line(e: &Event) -> String {
    let status = |s: Option<AgentStatus>| s.map_or("-", |s| s.into_str());
    let cause = serde_json::to_value(e.cause).expect("cause encodes");
    let mut out = format!(
        "{} {} {} {}->{} {}",
        e.revision,
        e.kind.into_str(),
        e.agent_id.as_ref().map_or("-", |a| a.as_str()),
        status(e.previous_status),
        status(e.status),
        cause.as_str().expect("a string"),
    );
    if !e.runtime_id.is_empty() {
        out += &format!(" @{}", e.runtime_id);
    }
    out
}

fn story(state: &RegistryState, after: u64) -> Vec<String> {
    events_after(state, after).iter().map(line).collect()
}

fn status_of(state: &RegistryState, agent: &str) -> Option<AgentStatus> {
    state.get(&id(agent)).map(|r| r.status)
}

/// A harness holding agent `a1` (registered at time 1) in `status`, reached
/// the way it is in production: `registering` by registration, the rest
/// by an operator's status change.
fn agent_in(status: AgentStatus) -> Harness {
    let mut h = Harness::new();
    let mut c = reg("a1", 1);
    if status == Registering {
        c.status = Some(Registering);
        h.register(c);
    } else {
        h.register(c);
        h.apply(set_status("a1", status, 2));
    }
    assert_eq!(status_of(&h.state, "a1"), Some(status));
    h
}

/// `None`, then every status: what a checkpoint entry may carry.
fn reports() -> impl Iterator<Item = Option<AgentStatus>> {
    std::iter::once(None).chain(AgentStatus::VARIANTS.iter().copied().map(Some))
}

// ---------------------------------------------------------------- checkpoint

#[test]
fn checkpoint_refreshes_liveness_without_a_revision_or_event() {
    let mut h = Harness::new();
    let mut c = reg("a1", 1_000);
    c.performance_metrics = Some(BTreeMap::from([
        ("latency_ms".to_string(), 10.0),
        ("success_rate".to_string(), 0.9),
    ]));
    h.register(c);
    h.register(reg("a2", 1_100));
    let before = h.state.get(&id("a1")).unwrap().clone();

    let res = h.apply(checkpoint(
        vec![CheckpointEntry {
            status: Some(Active),
            health_score: Some(0.4),
            load_factor: Some(0.8),
            metrics: BTreeMap::from([("latency_ms".to_string(), 12.0), ("qps".to_string(), 3.0)]),
            ..heard("a1", 1_900)
        }],
        2_000,
    ));
    assert_eq!(res, batch(1, 0));
    let r = h.state.get(&id("a1")).unwrap().clone();
    assert_eq!(r.last_heartbeat, Timestamp(1_900));
    assert_eq!(r.health_score, 0.4);
    assert_eq!(r.load_factor, 0.8);
    assert_eq!(
        r.performance_metrics,
        BTreeMap::from([
            ("latency_ms".to_string(), 12.0),
            ("qps".to_string(), 3.0),
            ("success_rate".to_string(), 0.9),
        ]),
        "metrics merge"
    );
    assert_eq!(r.status, Active, "active reported while active: no change");
    assert_eq!(r.revision, before.revision, "a refresh is no revision");
    assert_eq!(r.updated_at, before.updated_at, "nor an update");
    assert_eq!(r.epoch, before.epoch);
    assert_eq!(h.state.revision(), 2);
    assert!(story(&h.state, 2).is_empty(), "and no event");

    // What an entry does not carry is kept.
    assert_eq!(
        h.apply(checkpoint(vec![heard("a1", 2_500)], 2_600)),
        batch(1, 0)
    );
    let r = h.state.get(&id("a1")).unwrap();
    assert_eq!(r.last_heartbeat, Timestamp(2_500));
    assert_eq!((r.health_score, r.load_factor), (0.4, 0.8));
    assert_eq!(r.performance_metrics.len(), 3);
    assert_eq!(h.state.revision(), 2);
}

#[test]
fn checkpoint_never_moves_a_heartbeat_back() {
    let mut h = Harness::new();
    h.register(reg("a1", 1_000));
    h.apply(checkpoint(vec![heard("a1", 5_000)], 5_100));
    assert_eq!(
        h.state.get(&id("a1")).unwrap().last_heartbeat,
        Timestamp(5_000)
    );
    // A late checkpoint (e.g. from a deposed leader's buffer) and one from
    // before the registration both leave the newer time.
    for older in [3_000, 500] {
        let res = h.apply(checkpoint(vec![heard("a1", older)], 6_000));
        assert_eq!(res, batch(1, 0));
        assert_eq!(
            h.state.get(&id("a1")).unwrap().last_heartbeat,
            Timestamp(5_000)
        );
    }
}

#[test]
fn checkpoint_skips_unknown_agents_and_resurrects_nobody() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    h.register(reg("gone", 2));
    h.apply(deregister("gone", 3));
    let revision = h.state.revision();
    let res = h.apply(checkpoint(
        vec![heard("ghost", 5), heard("a1", 5), heard("gone", 5)],
        6,
    ));
    assert_eq!(res, batch(1, 2));
    assert_eq!(h.state.len(), 1);
    assert!(h.state.get(&id("gone")).is_none());
    assert!(h.state.get(&id("ghost")).is_none());
    assert_eq!(h.state.revision(), revision);

    let before = h.state.snapshot();
    assert_eq!(h.apply(checkpoint(vec![], 7)), batch(0, 0));
    assert_eq!(
        h.state.snapshot(),
        before,
        "an empty checkpoint changes nothing"
    );
}

#[test]
fn checkpoint_revives_silent_agents_with_cause_heartbeat() {
    for from in [Unhealthy, Offline, Registering] {
        for reported in reports() {
            let expected = match reported {
                Some(s @ (Active | Busy | Degraded)) => s,
                _ => Active,
            };
            let mut h = agent_in(from);
            let revision = h.state.revision();
            let res = h.apply(checkpoint(
                vec![CheckpointEntry {
                    status: reported,
                    health_score: Some(0.6),
                    ..heard("a1", 9)
                }],
                10,
            ));
            assert_eq!(res, batch(1, 0), "{from} reported {reported:?}");
            let r = h.state.get(&id("a1")).unwrap();
            assert_eq!(r.status, expected, "{from} reported {reported:?}");
            assert_eq!(r.revision, revision + 1);
            assert_eq!(r.updated_at, Timestamp(10));
            assert_eq!(r.last_heartbeat, Timestamp(9));
            assert_eq!(r.health_score, 0.6);
            assert_eq!(r.epoch, 1, "a revival is not a registration");
            assert_eq!(
                story(&h.state, revision),
                vec![format!(
                    "{} AGENT_STATUS_CHANGED a1 {from}->{expected} heartbeat",
                    revision + 1
                )],
                "{from} reported {reported:?}"
            );
            assert_eq!(events_after(&h.state, revision)[0].at, Timestamp(10));
        }
    }
}

#[test]
fn checkpoint_applies_statuses_live_agents_report() {
    for from in [Active, Busy, Degraded] {
        for reported in reports() {
            let mut h = agent_in(from);
            let revision = h.state.revision();
            let res = h.apply(checkpoint(
                vec![CheckpointEntry {
                    status: reported,
                    ..heard("a1", 9)
                }],
                10,
            ));
            assert_eq!(res, batch(1, 0));
            let expected = reported.filter(|s| s.is_agent_reportable()).unwrap_or(from);
            assert_eq!(
                status_of(&h.state, "a1"),
                Some(expected),
                "{from} reported {reported:?}"
            );
            if expected == from {
                assert!(
                    story(&h.state, revision).is_empty(),
                    "{from} reported {reported:?}"
                );
                assert_eq!(h.state.revision(), revision);
            } else {
                assert_eq!(
                    story(&h.state, revision),
                    vec![format!(
                        "{} AGENT_STATUS_CHANGED a1 {from}->{expected} agent_report",
                        revision + 1
                    )]
                );
                assert_eq!(h.state.get(&id("a1")).unwrap().revision, revision + 1);
            }
        }
    }
}

#[test]
fn suspended_or_exiting_agent_is_never_revived_by_a_checkpoint() {
    for from in [Suspended, Deregistering] {
        for reported in reports() {
            let mut h = agent_in(from);
            let revision = h.state.revision();
            let res = h.apply(checkpoint(
                vec![CheckpointEntry {
                    status: reported,
                    health_score: Some(0.1),
                    load_factor: Some(0.9),
                    ..heard("a1", 50)
                }],
                60,
            ));
            assert_eq!(res, batch(1, 0));
            let r = h.state.get(&id("a1")).unwrap();
            assert_eq!(r.status, from, "{from} reported {reported:?}");
            assert_eq!(r.last_heartbeat, Timestamp(50), "still refreshed");
            assert_eq!((r.health_score, r.load_factor), (0.1, 0.9));
            assert_eq!(h.state.revision(), revision);
            assert!(story(&h.state, revision).is_empty());
        }
    }

    // Nor by a long life of heartbeats and expiry decisions around it.
    let mut h = agent_in(Suspended);
    for t in 0..5 {
        let now = 100 + 100 * t;
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Unhealthy)], now));
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Offline)], now + 1));
        h.apply(checkpoint(
            vec![CheckpointEntry {
                status: Some(Active),
                ..heard("a1", now + 2)
            }],
            now + 3,
        ));
    }
    assert_eq!(status_of(&h.state, "a1"), Some(Suspended));
    assert_eq!(
        h.state.revision(),
        2,
        "nothing but the registration and suspension"
    );
}

#[test]
fn checkpoint_entries_apply_in_order_with_one_event_per_change() {
    let mut h = Harness::new();
    for (i, a) in ["a1", "a2", "a3", "a4"].into_iter().enumerate() {
        h.register(reg(a, i as i64));
    }
    h.apply(set_status("a1", Unhealthy, 10));
    h.apply(set_status("a4", Offline, 11));
    assert_eq!(h.state.revision(), 6);

    let res = h.apply(checkpoint(
        vec![
            CheckpointEntry {
                status: Some(Busy),
                ..heard("a4", 90)
            },
            heard("a2", 90),
            heard("ghost", 90),
            CheckpointEntry {
                status: Some(Degraded),
                ..heard("a3", 90)
            },
            heard("a1", 90),
            // One agent twice in a batch: applied in turn.
            CheckpointEntry {
                status: Some(Busy),
                ..heard("a2", 95)
            },
            CheckpointEntry {
                status: Some(Degraded),
                ..heard("a2", 96)
            },
            heard("a2", 97),
        ],
        100,
    ));
    assert_eq!(res, batch(7, 1));
    assert_eq!(
        story(&h.state, 6),
        vec![
            "7 AGENT_STATUS_CHANGED a4 offline->busy heartbeat",
            "8 AGENT_STATUS_CHANGED a3 active->degraded agent_report",
            "9 AGENT_STATUS_CHANGED a1 unhealthy->active heartbeat",
            "10 AGENT_STATUS_CHANGED a2 active->busy agent_report",
            "11 AGENT_STATUS_CHANGED a2 busy->degraded agent_report",
        ]
    );
    let rev = |a: &str| h.state.get(&id(a)).unwrap().revision;
    assert_eq!([rev("a1"), rev("a2"), rev("a3"), rev("a4")], [9, 11, 8, 7]);
    assert_eq!(
        h.state.get(&id("a2")).unwrap().last_heartbeat,
        Timestamp(97)
    );
    // The status index follows.
    let with = |s| {
        ids(&list_all(
            &h.state,
            &ListFilter {
                status: Some(s),
                ..Default::default()
            },
            10,
        ))
    };
    assert_eq!(with(Active), vec!["a1"]);
    assert_eq!(with(Degraded), vec!["a2", "a3"]);
    assert_eq!(with(Busy), vec!["a4"]);
    assert!(with(Offline).is_empty() && with(Unhealthy).is_empty());
}

// ---------------------------------------------------------------- expire

#[test]
fn expire_walks_the_ladder_with_cause_missed_heartbeats() {
    let mut h = Harness::new();
    let mut c = reg("a1", 1);
    c.runtime_id = "rt1".into();
    c.capabilities = vec![cap("Python", "", &[])];
    let r = h.register(c);
    assert_eq!(
        (r.epoch, h.state.revision()),
        (1, 2),
        "registered and runtime joined"
    );

    assert_eq!(
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Unhealthy)], 100)),
        batch(1, 0)
    );
    let r = h.state.get(&id("a1")).unwrap();
    assert_eq!(
        (r.status, r.revision, r.updated_at),
        (Unhealthy, 3, Timestamp(100))
    );
    assert_eq!(r.last_heartbeat, Timestamp(1), "expiry is no heartbeat");
    assert_eq!(r.epoch, 1, "nor a registration");

    assert_eq!(
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Offline)], 200)),
        batch(1, 0)
    );
    assert_eq!(status_of(&h.state, "a1"), Some(Offline));

    assert_eq!(
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Remove)], 300)),
        batch(1, 0)
    );
    assert!(h.state.is_empty());
    assert_eq!(
        story(&h.state, 2),
        vec![
            "3 AGENT_STATUS_CHANGED a1 active->unhealthy missed_heartbeats @rt1",
            "4 AGENT_STATUS_CHANGED a1 unhealthy->offline missed_heartbeats @rt1",
            "5 AGENT_EXPIRED a1 offline->offline missed_heartbeats @rt1",
            "6 RUNTIME_LEFT - -->- missed_heartbeats @rt1",
        ]
    );
    let at: Vec<i64> = events_after(&h.state, 2).iter().map(|e| e.at.0).collect();
    assert_eq!(at, vec![100, 200, 300, 300]);
    assert_eq!(h.state.stats().total_capabilities, 0);
    assert_eq!(
        h.state.stats().total_registrations,
        1,
        "a removal keeps the count"
    );
}

#[test]
fn expire_steps_apply_only_where_they_fit() {
    // The liveness issue's table: unhealthy from registering, active, busy,
    // degraded, deregistering; offline from anything but offline and
    // suspended; removal from anything.
    let fits: [(AgentStatus, [bool; 3]); 8] = [
        (Registering, [true, true, true]),
        (Active, [true, true, true]),
        (Busy, [true, true, true]),
        (Degraded, [true, true, true]),
        (Unhealthy, [false, true, true]),
        (Suspended, [false, false, true]),
        (Deregistering, [true, true, true]),
        (Offline, [false, false, true]),
    ];
    let steps = [
        ExpiryStep::Unhealthy,
        ExpiryStep::Offline,
        ExpiryStep::Remove,
    ];
    for (from, row) in fits {
        for (step, fit) in steps.into_iter().zip(row) {
            let mut h = agent_in(from);
            let before = h.state.snapshot();
            let res = h.apply(expire(vec![silent("a1", 1, step)], 50));
            if !fit {
                assert_eq!(res, batch(0, 1), "{step:?} from {from}");
                assert_eq!(h.state.snapshot(), before, "{step:?} from {from}");
                continue;
            }
            assert_eq!(res, batch(1, 0), "{step:?} from {from}");
            let r = before.revision + 1;
            let expected = match step {
                ExpiryStep::Unhealthy | ExpiryStep::Offline => {
                    let to = if step == ExpiryStep::Unhealthy {
                        Unhealthy
                    } else {
                        Offline
                    };
                    assert_eq!(status_of(&h.state, "a1"), Some(to));
                    assert_ne!(from, to, "a fitting step changes the status");
                    format!("{r} AGENT_STATUS_CHANGED a1 {from}->{to} missed_heartbeats")
                }
                ExpiryStep::Remove => {
                    assert!(h.state.get(&id("a1")).is_none());
                    format!("{r} AGENT_EXPIRED a1 {from}->{from} missed_heartbeats")
                }
            };
            assert_eq!(story(&h.state, before.revision), vec![expected]);
        }
    }
}

#[test]
fn re_registration_after_an_expire_decision_makes_it_a_no_op() {
    for step in [
        ExpiryStep::Unhealthy,
        ExpiryStep::Offline,
        ExpiryStep::Remove,
    ] {
        let mut h = Harness::new();
        let first = h.register(reg("a1", 1));
        h.register(reg("a2", 2));
        // The leader decides on epoch 1 of a1 (and on a2's current epoch)...
        let decision = expire(
            vec![
                silent("a1", first.epoch, step),
                silent("a2", 2, ExpiryStep::Unhealthy),
            ],
            60,
        );
        // ... but the agent re-registers before the decision is applied.
        let again = h.register(reg("a1", 50));
        assert_eq!(again.epoch, 3, "a re-registration is a new epoch");
        let before = h.state.snapshot();
        assert_eq!(h.apply(decision), batch(1, 1), "{step:?}");
        assert_eq!(
            status_of(&h.state, "a1"),
            Some(Active),
            "{step:?}: the re-registration won"
        );
        assert_eq!(h.state.get(&id("a1")).unwrap(), &again);
        assert_eq!(
            story(&h.state, before.revision),
            vec!["4 AGENT_STATUS_CHANGED a2 active->unhealthy missed_heartbeats"],
            "only the other agent's entry applied"
        );
    }

    // Neither a status change nor a checkpoint is a new epoch: a decision
    // for the epoch still applies after them. An epoch from nowhere does not.
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    h.apply(set_status("a1", Busy, 2));
    h.apply(checkpoint(vec![heard("a1", 3)], 4));
    assert_eq!(h.state.get(&id("a1")).unwrap().epoch, 1);
    assert_eq!(
        h.apply(expire(vec![silent("a1", 99, ExpiryStep::Unhealthy)], 5)),
        batch(0, 1)
    );
    assert_eq!(
        h.apply(expire(vec![silent("a1", 0, ExpiryStep::Unhealthy)], 5)),
        batch(0, 1)
    );
    assert_eq!(status_of(&h.state, "a1"), Some(Busy));
    assert_eq!(
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Unhealthy)], 6)),
        batch(1, 0)
    );
    assert_eq!(status_of(&h.state, "a1"), Some(Unhealthy));
}

#[test]
fn expire_skips_missing_agents_and_applies_batches_in_order() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    h.register(reg("a2", 2));
    h.register(reg("a3", 3));
    let before = h.state.snapshot();
    assert_eq!(
        h.apply(expire(vec![silent("ghost", 1, ExpiryStep::Remove)], 10)),
        batch(0, 1)
    );
    assert_eq!(h.apply(expire(vec![], 10)), batch(0, 0));
    assert_eq!(h.state.snapshot(), before, "skipped entries change nothing");

    let res = h.apply(expire(
        vec![
            silent("a1", 1, ExpiryStep::Unhealthy),
            silent("a1", 1, ExpiryStep::Unhealthy), // no longer fits
            silent("a2", 2, ExpiryStep::Remove),
            silent("a2", 2, ExpiryStep::Remove), // gone by now
            silent("a3", 3, ExpiryStep::Offline),
            silent("ghost", 1, ExpiryStep::Offline),
        ],
        20,
    ));
    assert_eq!(res, batch(3, 3));
    assert_eq!(
        story(&h.state, 3),
        vec![
            "4 AGENT_STATUS_CHANGED a1 active->unhealthy missed_heartbeats",
            "5 AGENT_EXPIRED a2 active->active missed_heartbeats",
            "6 AGENT_STATUS_CHANGED a3 active->offline missed_heartbeats",
        ]
    );
}

#[test]
fn removal_by_expire_frees_the_runtime_and_the_id() {
    let mut h = Harness::new();
    let on = |agent: &str, rt: &str, now: i64| {
        let mut c = reg(agent, now);
        c.runtime_id = rt.into();
        c.capabilities = vec![cap("Python", "", &["fast"])];
        c
    };
    h.register(on("a1", "rt1", 1)); // 1, runtime joined 2
    h.register(on("a2", "rt1", 2)); // 3
    h.register(on("a3", "rt2", 3)); // 4, runtime joined 5
    let rt1 = ListFilter {
        runtime_id: Some("rt1".into()),
        ..Default::default()
    };

    assert_eq!(
        h.apply(expire(vec![silent("a1", 1, ExpiryStep::Remove)], 10)),
        batch(1, 0)
    );
    assert_eq!(
        story(&h.state, 5),
        vec!["6 AGENT_EXPIRED a1 active->active missed_heartbeats @rt1"]
    );
    assert_eq!(
        ids(&list_all(&h.state, &rt1, 10)),
        vec!["a2"],
        "rt1 still has a2"
    );

    let res = h.apply(expire(
        vec![
            silent("a2", 3, ExpiryStep::Remove),
            silent("a3", 4, ExpiryStep::Remove),
        ],
        20,
    ));
    assert_eq!(res, batch(2, 0));
    assert_eq!(
        story(&h.state, 6),
        vec![
            "7 AGENT_EXPIRED a2 active->active missed_heartbeats @rt1",
            "8 RUNTIME_LEFT - -->- missed_heartbeats @rt1",
            "9 AGENT_EXPIRED a3 active->active missed_heartbeats @rt2",
            "10 RUNTIME_LEFT - -->- missed_heartbeats @rt2",
        ]
    );
    assert!(list_all(&h.state, &rt1, 10).is_empty());
    assert!(h.state.agents_with_capability("python").is_empty());
    let stats = h.state.stats();
    assert_eq!((stats.total_agents, stats.total_capabilities), (0, 0));
    assert_eq!(stats.capability_distribution, BTreeMap::new());
    let (_, postings) = h.state.index_stats();
    assert_eq!(postings, 0, "no posting outlives its agent");

    // The runtime is free: its next agent joins it again, and the expired
    // id registers as a new agent.
    let res = h.apply(register(on("a1", "rt1", 30)));
    assert!(
        matches!(&res, CommandResult::Agent { record, created: true } if record.create_revision == 11),
        "{res:?}"
    );
    assert_eq!(
        story(&h.state, 10),
        vec![
            "11 AGENT_REGISTERED a1 -->active registration @rt1",
            "12 RUNTIME_JOINED - -->- registration @rt1",
        ]
    );
}

// ---------------------------------------------------------------- brake

#[test]
fn brake_engages_and_releases_with_events_and_survives_snapshots() {
    let mut h = Harness::new();
    h.register(reg("a1", 1));
    let records: Vec<_> = h.state.records().cloned().collect();
    assert!(!h.state.brake_engaged());

    assert_eq!(h.apply(brake(true, 700, 1000, 50)), batch(1, 0));
    assert!(h.state.brake_engaged());
    let ev = events_after(&h.state, 1);
    assert_eq!(
        story(&h.state, 1),
        vec!["2 LIVENESS_BRAKE_ENGAGED - -->- brake"]
    );
    assert_eq!(ev[0].at, Timestamp(50));
    assert!(
        ev[0].detail.contains("700") && ev[0].detail.contains("1000"),
        "the detail says how many were held of how many: {:?}",
        ev[0].detail
    );
    assert!(
        h.state.records().cloned().eq(records.clone()),
        "agents untouched"
    );

    // The flag travels in snapshots, through bincode.
    let snap = h.state.snapshot();
    assert!(snap.brake_engaged);
    let bytes = bincode::serialize(&snap).expect("encode");
    let decoded: SnapshotData = bincode::deserialize(&bytes).expect("decode");
    assert_eq!(decoded, snap);
    let mut restored = RegistryState::restore(StateConfig::default(), decoded).expect("restore");
    assert!(restored.brake_engaged());
    assert_eq!(restored.snapshot(), snap);

    let release = brake(false, 0, 1000, 80);
    for state in [&mut h.state, &mut restored] {
        assert_eq!(state.apply(9, &release), batch(1, 0));
        assert!(!state.brake_engaged());
        assert_eq!(
            story(state, 2),
            vec!["3 LIVENESS_BRAKE_RELEASED - -->- brake"]
        );
        assert!(!events_after(state, 2)[0].detail.is_empty());
        assert!(!state.snapshot().brake_engaged);
    }
    assert_eq!(h.state.snapshot(), restored.snapshot());
}

// ---------------------------------------------------------------- replay

/// A fixed log of registrations, checkpoints and expiries, with times
/// starting at `t0`. Epochs are the registrations' revisions (1, 2, 3; a2's
/// re-registration is epoch 8).
fn liveness_log(t0: i64) -> Vec<Command> {
    let t = |dt: i64| t0 + dt;
    let mut starting = reg("a3", t(2));
    starting.status = Some(Registering);
    vec![
        register(reg("a1", t(0))),
        register(reg("a2", t(1))),
        register(starting),
        checkpoint(
            vec![
                CheckpointEntry {
                    status: Some(Busy),
                    ..heard("a1", t(10))
                },
                heard("a3", t(10)),
            ],
            t(11),
        ),
        expire(vec![silent("a2", 2, ExpiryStep::Unhealthy)], t(30)),
        expire(vec![silent("a2", 2, ExpiryStep::Offline)], t(60)),
        checkpoint(
            vec![CheckpointEntry {
                health_score: Some(0.5),
                ..heard("a1", t(55))
            }],
            t(61),
        ),
        register(reg("a2", t(70))),
        expire(vec![silent("a2", 2, ExpiryStep::Remove)], t(90)),
        expire(
            vec![
                silent("a1", 1, ExpiryStep::Unhealthy),
                silent("a3", 3, ExpiryStep::Unhealthy),
            ],
            t(100),
        ),
        expire(vec![silent("a3", 3, ExpiryStep::Offline)], t(130)),
        expire(vec![silent("a3", 3, ExpiryStep::Remove)], t(160)),
    ]
}

fn replay(log: &[Command], first_index: u64) -> RegistryState {
    let mut state = RegistryState::default();
    for (i, cmd) in log.iter().enumerate() {
        state.apply(first_index + i as u64, cmd);
    }
    state
}

#[test]
fn replaying_the_same_log_twice_gives_the_same_statuses() {
    // Two fresh replicas, numbering the entries differently.
    let log = liveness_log(1_700_000_000_000);
    let a = replay(&log, 1);
    let b = replay(&log, 1_000);
    assert_eq!(a.snapshot(), b.snapshot());

    let statuses = |s: &RegistryState| -> Vec<(String, AgentStatus)> {
        s.records()
            .map(|r| (r.agent_id.to_string(), r.status))
            .collect()
    };
    assert_eq!(
        statuses(&a),
        vec![("a1".to_string(), Unhealthy), ("a2".to_string(), Active)]
    );
    assert_eq!(
        story(&a, 0),
        vec![
            "1 AGENT_REGISTERED a1 -->active registration",
            "2 AGENT_REGISTERED a2 -->active registration",
            "3 AGENT_REGISTERED a3 -->registering registration",
            "4 AGENT_STATUS_CHANGED a1 active->busy agent_report",
            "5 AGENT_STATUS_CHANGED a3 registering->active heartbeat",
            "6 AGENT_STATUS_CHANGED a2 active->unhealthy missed_heartbeats",
            "7 AGENT_STATUS_CHANGED a2 unhealthy->offline missed_heartbeats",
            "8 AGENT_UPDATED a2 offline->active registration",
            "9 AGENT_STATUS_CHANGED a2 offline->active registration",
            "10 AGENT_STATUS_CHANGED a1 busy->unhealthy missed_heartbeats",
            "11 AGENT_STATUS_CHANGED a3 active->unhealthy missed_heartbeats",
            "12 AGENT_STATUS_CHANGED a3 unhealthy->offline missed_heartbeats",
            "13 AGENT_EXPIRED a3 offline->offline missed_heartbeats",
        ]
    );
    assert_eq!(a.get(&id("a2")).unwrap().epoch, 8);
    assert_eq!(a.get(&id("a1")).unwrap().health_score, 0.5);

    // Expiry does not depend on clock time: the same log stamped in 1970 or
    // in 2100 ends in the same statuses and the same events (but for `at`).
    for t0 in [0, 4_102_444_800_000] {
        let c = replay(&liveness_log(t0), 1);
        assert_eq!(statuses(&c), statuses(&a), "log starting at {t0}");
        assert_eq!(story(&c, 0), story(&a, 0), "log starting at {t0}");
        let shifted = |s: &RegistryState| -> Vec<i64> {
            s.records().map(|r| r.last_heartbeat.0 - t0).collect()
        };
        assert_eq!(shifted(&c), vec![55, 70]);
    }
}
