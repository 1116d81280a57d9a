//! Apply is total: whatever a log entry holds (NaN, infinite and negative
//! scores, empty and oversized strings, u64::MAX counts, revisions and
//! times, policies with min > max, unknown agents, batches in batches,
//! liveness commands inside batches, `Format1` anywhere), applying it
//! returns a result and never panics (a panic fails the test), a rejected
//! command changes nothing at all, every replica reaches the same bytes,
//! and no invalid value ever reaches a record or a policy.
//!
//! `PROPTEST_CASES` sets the number of sequences (256 by default).

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use registry_state::{RegistryState, StateConfig};
use registry_types::command::{
    CheckpointEntry, ExpireEntry, ExpiryStep, Keep, Placement, RegisterCommand, Rejection,
};
use registry_types::limits::{check_unit, Limits};
use registry_types::scaling::ScalingPolicyRequest;
use registry_types::{
    AgentId, AgentStatus, Capability, Command, CommandResult, CostEstimate, Metadata, Timestamp,
    VariantArray,
};

/// 2 MiB: the description an attacker sent.
fn huge() -> &'static str {
    static HUGE: OnceLock<String> = OnceLock::new();
    HUGE.get_or_init(|| "d".repeat(2 * 1024 * 1024))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["agent", "Code Review", "python", "rt1", "x y"])
            .prop_map(String::from),
        1 => Just(String::new()),
        1 => Just(" \t\n".to_string()),
        1 => Just("n".repeat(513)),
        1 => Just("d".repeat(8 * 1024 + 1)),
        1 => "\\PC{0,12}",
    ]
}

fn big_text() -> impl Strategy<Value = String> {
    prop_oneof![8 => text(), 1 => Just(huge().to_string())]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => prop::sample::select(vec![0.0, 0.5, 1.0]),
        1 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            -1.0,
            1.000_000_1,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
        ]),
        1 => any::<f64>(),
    ]
}

fn score() -> impl Strategy<Value = Option<f64>> {
    prop::option::weighted(0.6, float())
}

fn big_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..20,
        1 => prop::sample::select(vec![u64::MAX, u64::MAX - 1, 1 << 63, 10_000_001]),
        1 => any::<u64>(),
    ]
}

fn big_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0u32..200,
        1 => prop::sample::select(vec![u32::MAX, u32::MAX - 1, 1_000_001]),
        1 => any::<u32>(),
    ]
}

fn time() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        3 => (0i64..100_000).prop_map(Timestamp),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, -1, i64::MAX - 1]).prop_map(Timestamp),
        1 => any::<i64>().prop_map(Timestamp),
    ]
}

fn agent() -> impl Strategy<Value = AgentId> {
    prop_oneof![
        6 => prop::sample::select(vec!["a0", "a1", "a2", "a3"]),
        1 => Just("unknown"),
    ]
    .prop_map(|s| AgentId::parse(s).unwrap())
}

fn status() -> impl Strategy<Value = AgentStatus> {
    prop::sample::select(AgentStatus::VARIANTS.to_vec())
}

fn metrics() -> impl Strategy<Value = BTreeMap<String, f64>> {
    prop_oneof![
        4 => prop::collection::btree_map(
            prop::sample::select(vec!["lat", "qps", "err"]).prop_map(String::from),
            float(),
            0..3,
        ),
        // Many new names: together past the limit of 64, or alone.
        1 => (0usize..70, 0usize..1000).prop_map(|(n, base)| {
            (0..n).map(|i| (format!("m{}", base + i), 1.0)).collect()
        }),
    ]
}

fn json_object() -> impl Strategy<Value = Metadata> {
    prop_oneof![
        4 => Just(Metadata::default()),
        1 => Just(Metadata(
            serde_json::json!({"k": [1, null, {"n": "v"}]}).as_object().unwrap().clone()
        )),
        1 => Just(Metadata(
            serde_json::json!({"k": "m".repeat(16 * 1024)}).as_object().unwrap().clone()
        )),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    let cost = prop::option::of(prop_oneof![
        float().prop_map(CostEstimate::Number),
        prop_oneof![Just("~1 token".to_string()), Just("t".repeat(257))]
            .prop_map(CostEstimate::Text),
    ]);
    (
        text(),
        big_text(),
        prop::collection::vec(text(), 0..3),
        cost,
        json_object(),
    )
        .prop_map(
            |(name, description, tags, cost_estimate, parameters)| Capability {
                name,
                description,
                tags,
                cost_estimate,
                parameters,
            },
        )
}

fn capabilities() -> impl Strategy<Value = Vec<Capability>> {
    prop_oneof![
        8 => prop::collection::vec(capability(), 0..3),
        // The attacker's 2,000 capabilities.
        1 => (capability(), prop::sample::select(vec![129usize, 2000])).prop_map(|(mut c, n)| {
            // Copies of a short one: 2,000 copies of 2 MiB would be 4 GiB.
            c.description = c.description.chars().take(16).collect();
            vec![c; n]
        }),
    ]
}

fn any_register() -> impl Strategy<Value = RegisterCommand> {
    let keep = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(profile, capabilities, metadata, lease)| Keep {
            profile,
            capabilities,
            metadata,
            lease,
        },
    );
    (
        (agent(), text(), text(), text(), text(), text(), big_text()),
        (
            capabilities(),
            prop::collection::vec(text(), 0..3),
            json_object(),
        ),
        (
            prop::option::of(status()),
            score(),
            score(),
            prop::option::of(metrics()),
        ),
        (big_u32(), big_u32(), big_u32()),
        (any::<bool>(), prop::option::of(big_u64()), keep, time()),
    )
        .prop_map(
            |(
                (agent_id, name, agent_type, runtime_id, endpoint, version, description),
                (capabilities, tags, metadata),
                (status, health_score, load_factor, performance_metrics),
                (ttl_seconds, offline_after_seconds, deregister_after_seconds),
                (if_absent, expected_revision, keep, now),
            )| RegisterCommand {
                agent_id,
                name,
                agent_type,
                runtime_id,
                endpoint,
                version,
                description,
                capabilities,
                tags,
                metadata,
                status,
                health_score,
                load_factor,
                performance_metrics,
                ttl_seconds,
                offline_after_seconds,
                deregister_after_seconds,
                if_absent,
                expected_revision,
                keep,
                now,
            },
        )
}

fn policy() -> impl Strategy<Value = ScalingPolicyRequest> {
    (big_u32(), big_u32(), float(), float(), float()).prop_map(
        |(min_agents, max_agents, high_load, low_load, min_health)| ScalingPolicyRequest {
            min_agents,
            max_agents,
            high_load,
            low_load,
            min_health,
        },
    )
}

fn checkpoint_entry() -> impl Strategy<Value = CheckpointEntry> {
    (
        agent(),
        time(),
        prop::option::of(status()),
        score(),
        score(),
        metrics(),
    )
        .prop_map(
            |(agent_id, last_heartbeat, status, health_score, load_factor, metrics)| {
                CheckpointEntry {
                    agent_id,
                    last_heartbeat,
                    status,
                    health_score,
                    load_factor,
                    metrics,
                }
            },
        )
}

fn expire_entry() -> impl Strategy<Value = ExpireEntry> {
    let step = prop::sample::select(vec![
        ExpiryStep::Unhealthy,
        ExpiryStep::Offline,
        ExpiryStep::Remove,
    ]);
    (agent(), big_u64(), step).prop_map(|(agent_id, epoch, step)| ExpireEntry {
        agent_id,
        epoch,
        step,
    })
}

/// Any single command, leaves and containers one level deep.
fn leaf() -> impl Strategy<Value = Command> {
    prop_oneof![
        6 => any_register().prop_map(|r| Command::Register(Box::new(r))),
        2 => (agent(), time()).prop_map(|(agent_id, now)| Command::Deregister { agent_id, now }),
        2 => (agent(), status(), time())
            .prop_map(|(agent_id, status, now)| Command::SetStatus { agent_id, status, now }),
        4 => (agent(), score(), score(), metrics(), time()).prop_map(
            |(agent_id, health_score, load_factor, metrics, now)| Command::SetHealth {
                agent_id,
                health_score,
                load_factor,
                metrics,
                now,
            }
        ),
        3 => (prop::collection::vec(checkpoint_entry(), 0..5), big_u64(), time()).prop_map(
            |(entries, heartbeats, now)| Command::Checkpoint { entries, heartbeats, now }
        ),
        2 => (prop::collection::vec(expire_entry(), 0..5), time())
            .prop_map(|(entries, now)| Command::Expire { entries, now }),
        1 => (any::<bool>(), big_u64(), big_u64(), time()).prop_map(
            |(engaged, held, fleet, now)| Command::Brake { engaged, held, fleet, now }
        ),
        4 => (text(), prop::option::weighted(0.8, policy()), time()).prop_map(
            |(capability, policy, now)| Command::SetScalingPolicy { capability, policy, now }
        ),
        1 => (big_u64(), time())
            .prop_map(|(count, now)| Command::CountDiscoveryRequests { count, now }),
    ]
}

/// Commands nested up to three deep in any arrangement, allowed or not.
fn command() -> impl Strategy<Value = Command> {
    leaf().prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Command::Batch),
            inner.prop_map(|c| Command::Format1(Box::new(c))),
        ]
    })
}

/// Valid registrations first, so that the hostile commands meet agents
/// with capabilities that policies evaluate.
fn seed(state: &mut RegistryState) {
    for (i, agent) in ["a0", "a1", "a2"].into_iter().enumerate() {
        let mut c = reg(agent, 1);
        c.capabilities = vec![cap("Code Review", "reviews code", &["python"])];
        c.runtime_id = format!("rt{i}");
        let r = state.apply(i as u64, &register(c));
        assert!(matches!(r, CommandResult::Agent { .. }), "{r:?}");
    }
}

/// Everything a replica holds, as bytes: NaN compares equal to itself,
/// and any change (records, events, counters, policies) shows.
fn bytes_of(state: &RegistryState) -> Vec<u8> {
    bincode::serialize(&state.snapshot_view()).expect("encodes")
}

/// No invalid value reached the state.
fn check_state(state: &RegistryState) -> Result<(), TestCaseError> {
    let limits = Limits::DEFAULT;
    for r in state.records() {
        prop_assert!(check_unit("h", Some(r.health_score)).is_ok(), "{r:?}");
        prop_assert!(check_unit("l", Some(r.load_factor)).is_ok(), "{r:?}");
        prop_assert!(r.performance_metrics.len() <= limits.max_metrics);
        prop_assert!(r.performance_metrics.values().all(|v| v.is_finite()));
        prop_assert!(r.capabilities.len() <= limits.max_capabilities);
        prop_assert!(r.description.len() <= limits.max_description);
        prop_assert!(!r.name.trim().is_empty() && !r.endpoint.trim().is_empty());
    }
    for p in state.scaling_policies() {
        prop_assert!(p.min_agents <= p.max_agents, "{p:?}");
        prop_assert!(p.low_load < p.high_load, "{p:?}");
        prop_assert!((0.0..=1.0).contains(&p.min_health), "{p:?}");
    }
    Ok(())
}

/// Every command inside `cmd` (itself included, found at `at`) that breaks
/// the rules came back `Rejected(Invalid)`, and a batch gave one result per
/// item.
fn rejected_where_invalid(
    cmd: &Command,
    at: Placement,
    result: &CommandResult,
) -> Result<(), TestCaseError> {
    let bad = cmd
        .check_placement(at)
        .and_then(|()| cmd.check_fields(&Limits::DEFAULT))
        .is_err();
    if bad {
        prop_assert!(
            matches!(result, CommandResult::Rejected(Rejection::Invalid { .. })),
            "{:?} gave {:?}",
            cmd,
            result
        );
        return Ok(());
    }
    match (cmd, result) {
        (Command::Batch(items), CommandResult::Grouped(results)) => {
            prop_assert_eq!(items.len(), results.len());
            let within = Placement {
                in_batch: true,
                ..at
            };
            for (c, r) in items.iter().zip(results) {
                rejected_where_invalid(c, within, &r.result)?;
            }
        }
        (Command::Batch(_), other) => {
            prop_assert!(false, "a valid batch gave {:?}", other);
        }
        (Command::Format1(inner), r) => {
            let within = Placement {
                in_format1: true,
                ..at
            };
            rejected_where_invalid(inner, within, r)?;
        }
        _ => {}
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn apply_is_total_and_a_rejection_changes_nothing() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::cell::Cell::new((0usize, 0usize));
    runner
        .run(&prop::collection::vec(command(), 1..24), |cmds| {
            let mut a = RegistryState::new(StateConfig::default());
            let mut b = RegistryState::new(StateConfig::default());
            seed(&mut a);
            seed(&mut b);
            let (mut inv, mut app) = counts.get();
            for (i, cmd) in cmds.iter().enumerate() {
                let before = bytes_of(&a);
                let revision = a.revision();
                let result = a.apply(100 + i as u64, cmd);
                prop_assert_eq!(&b.apply(100 + i as u64, cmd), &result, "{:?}", cmd);
                match &result {
                    CommandResult::Rejected(r) => {
                        if matches!(r, Rejection::Invalid { .. }) {
                            inv += 1;
                        }
                        prop_assert_eq!(a.revision(), revision);
                        prop_assert!(bytes_of(&a) == before, "{:?} changed the state", cmd);
                    }
                    _ => app += 1,
                }
                // What breaks the API's rules is rejected, never applied,
                // at whatever depth.
                rejected_where_invalid(cmd, Placement::default(), &result)?;
                check_state(&a)?;
            }
            prop_assert!(bytes_of(&a) == bytes_of(&b), "replicas diverged");
            counts.set((inv, app));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (invalid, applied) = counts.get();
    // The generators must reach both outcomes often, or the test proves
    // little.
    assert!(invalid > 100, "only {invalid} invalid commands rejected");
    assert!(applied > 100, "only {applied} commands applied");
}

/// The attack that crash-looped a cluster: a committed policy with
/// `min_agents > max_agents` is rejected on apply, and a checkpoint that
/// evaluates the policies afterwards does not panic either.
#[test]
fn the_poison_scaling_policy_is_rejected_not_a_panic() {
    let mut s = RegistryState::new(StateConfig::default());
    seed(&mut s);
    let before = bytes_of(&s);
    let poison = Command::SetScalingPolicy {
        capability: "code review".into(),
        policy: Some(ScalingPolicyRequest {
            min_agents: 10,
            max_agents: 2,
            high_load: 0.8,
            low_load: 0.2,
            min_health: 0.5,
        }),
        now: Timestamp(5),
    };
    match s.apply(10, &poison) {
        CommandResult::Rejected(Rejection::Invalid { field, .. }) => {
            assert_eq!(field, "min_agents")
        }
        other => panic!("applied: {other:?}"),
    }
    assert!(bytes_of(&s) == before);
    // Inside a batch it is one rejected item; the others apply.
    let batch = Command::Batch(vec![
        poison.clone(),
        Command::CountDiscoveryRequests {
            count: 2,
            now: Timestamp(5),
        },
    ]);
    let CommandResult::Grouped(items) = s.apply(11, &batch) else {
        panic!("a batch gives grouped results");
    };
    assert!(matches!(
        items[0].result,
        CommandResult::Rejected(Rejection::Invalid { .. })
    ));
    assert!(matches!(
        items[1].result,
        CommandResult::EntriesApplied { .. }
    ));
    assert_eq!(s.counters().discovery_requests, 2);
    s.apply(12, &checkpoint(vec![heard("a0", 6)], 6));
}

/// Internal-only and nested commands inside a batch are rejected items;
/// a batch inside a batch is not applied (no recursion).
#[test]
fn a_batch_holds_client_commands_only() {
    let mut s = RegistryState::new(StateConfig::default());
    seed(&mut s);
    let before = bytes_of(&s);
    let batch = Command::Batch(vec![
        Command::Brake {
            engaged: true,
            held: u64::MAX,
            fleet: 0,
            now: Timestamp(1),
        },
        expire(vec![silent("a0", 1, ExpiryStep::Remove)], 2),
        checkpoint(vec![heard("a0", 2)], 2),
        Command::Batch(vec![deregister("a1", 3)]),
        Command::Format1(Box::new(deregister("a2", 3))),
    ]);
    let CommandResult::Grouped(items) = s.apply(10, &batch) else {
        panic!("grouped");
    };
    assert_eq!(items.len(), 5);
    for item in &items {
        match &item.result {
            CommandResult::Rejected(Rejection::Invalid { field, .. }) => {
                assert_eq!(field, "command")
            }
            other => panic!("applied inside a batch: {other:?}"),
        }
    }
    assert!(bytes_of(&s) == before);
    // Format1 around a Format1 is refused too; around a batch it applies.
    let nested = Command::Format1(Box::new(Command::Format1(Box::new(deregister("a1", 4)))));
    assert!(matches!(
        s.apply(11, &nested),
        CommandResult::Rejected(Rejection::Invalid { .. })
    ));
    let old_batch = Command::Format1(Box::new(Command::Batch(vec![deregister("a1", 4)])));
    assert!(matches!(s.apply(12, &old_batch), CommandResult::Grouped(_)));
    assert!(s.get(&id("a1")).is_none());
}

/// Extreme numbers from outside never overflow: counters saturate, far
/// future and past times and epochs are only compared.
#[test]
fn extreme_numbers_saturate_or_are_refused() {
    let mut s = RegistryState::new(StateConfig::default());
    seed(&mut s);
    let far = i64::MAX;
    s.apply(
        10,
        &Command::Checkpoint {
            entries: vec![heard("a0", far), heard("a1", i64::MIN)],
            heartbeats: u64::MAX,
            now: Timestamp(far),
        },
    );
    s.apply(
        11,
        &Command::Checkpoint {
            entries: vec![],
            heartbeats: u64::MAX,
            now: Timestamp(i64::MIN),
        },
    );
    assert_eq!(s.counters().heartbeats, u64::MAX);
    assert_eq!(s.get(&id("a0")).unwrap().last_heartbeat, Timestamp(far));
    // A count beyond any node's traffic is refused, not added.
    let r = s.apply(
        12,
        &Command::CountDiscoveryRequests {
            count: u64::MAX,
            now: Timestamp(1),
        },
    );
    assert!(matches!(
        r,
        CommandResult::Rejected(Rejection::Invalid { .. })
    ));
    assert_eq!(s.counters().discovery_requests, 0);
    s.apply(
        13,
        &expire(vec![silent("a0", u64::MAX, ExpiryStep::Remove)], far),
    );
    assert!(s.get(&id("a0")).is_some(), "a stale epoch is skipped");
    let mut c = reg("a9", far);
    c.ttl_seconds = u32::MAX;
    c.offline_after_seconds = u32::MAX;
    c.deregister_after_seconds = u32::MAX;
    c.expected_revision = Some(u64::MAX);
    assert!(matches!(
        s.apply(14, &register(c.clone())),
        CommandResult::Rejected(Rejection::RevisionMismatch { .. })
    ));
    c.expected_revision = None;
    assert!(matches!(
        s.apply(15, &register(c)),
        CommandResult::Agent { .. }
    ));
}

/// Health reports merge metrics: new names past the limit are refused on
/// apply (the API's own check reads possibly stale state), and a
/// checkpoint drops such metrics but still refreshes the agent.
#[test]
fn merged_metrics_stay_within_the_limit() {
    let mut s = RegistryState::new(StateConfig::default());
    seed(&mut s);
    let names = |base: usize, n: usize| -> Vec<(String, f64)> {
        (0..n).map(|i| (format!("m{}", base + i), 1.0)).collect()
    };
    let report = |base: usize, n: usize| Command::SetHealth {
        agent_id: id("a0"),
        health_score: None,
        load_factor: None,
        metrics: names(base, n).into_iter().collect(),
        now: Timestamp(2),
    };
    assert!(matches!(
        s.apply(10, &report(0, 40)),
        CommandResult::Agent { .. }
    ));
    let before = bytes_of(&s);
    match s.apply(11, &report(40, 40)) {
        CommandResult::Rejected(Rejection::Invalid { field, .. }) => assert_eq!(field, "metrics"),
        other => panic!("{other:?}"),
    }
    assert!(bytes_of(&s) == before);
    // Updating known names is fine.
    assert!(matches!(
        s.apply(12, &report(0, 40)),
        CommandResult::Agent { .. }
    ));
    let mut e = heard("a0", 50);
    e.metrics = names(100, 30).into_iter().collect();
    e.health_score = Some(0.25);
    s.apply(13, &checkpoint(vec![e], 50));
    let r = s.get(&id("a0")).unwrap();
    assert_eq!(r.performance_metrics.len(), 40);
    assert_eq!(r.last_heartbeat, Timestamp(50));
    assert_eq!(r.health_score, 0.25);
    // An invalid report in a checkpoint is dropped part by part; the
    // heartbeat still counts (a live agent must not expire for it).
    let mut bad = heard("a1", 60);
    bad.health_score = Some(f64::NAN);
    bad.load_factor = Some(0.75);
    bad.metrics = BTreeMap::from([("x".to_string(), f64::INFINITY)]);
    let r = s.apply(14, &checkpoint(vec![bad, heard("a2", 60)], 60));
    assert_eq!(
        r,
        CommandResult::EntriesApplied {
            applied: 2,
            skipped: 0
        }
    );
    let a1 = s.get(&id("a1")).unwrap();
    assert_eq!(a1.health_score, 1.0);
    assert_eq!(a1.load_factor, 0.75);
    assert!(a1.performance_metrics.is_empty());
    assert_eq!(a1.last_heartbeat, Timestamp(60));
    assert_eq!(s.get(&id("a2")).unwrap().last_heartbeat, Timestamp(60));
}
