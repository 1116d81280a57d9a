//! Fuzz target: decoding any bytes as a `Command`, a `Vec<Command>` (a
//! forwarded group, a log entry's batch) or a version-1 command returns a
//! value or an error; it never panics, never overflows the stack and never
//! allocates what the input cannot back. A panic fails the test.
//!
//! Inputs are mutations (bytes flipped, inserted, removed, lengths and
//! variant tags overwritten with hostile values, truncations) of the
//! encodings of a corpus of valid commands, plus plain random bytes.
//!
//! Longer run: `PROPTEST_CASES=200000 cargo nextest run --release -p
//! registry-types --test decode_fuzz` (2,048 cases by default).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use registry_types::command::{CheckpointEntry, ExpireEntry, ExpiryStep, Keep, RegisterCommand};
use registry_types::scaling::ScalingPolicyRequest;
use registry_types::{
    AgentId, AgentStatus, Capability, Command, CostEstimate, Metadata, Timestamp,
};

fn corpus() -> Vec<Vec<u8>> {
    let id = AgentId::parse("agent-1").unwrap();
    let t = Timestamp(1_700_000_000_000);
    let mut params = serde_json::Map::new();
    params.insert("lang".into(), serde_json::json!({"type": ["str", 1, null]}));
    let register = Command::Register(Box::new(RegisterCommand {
        agent_id: id.clone(),
        name: "name".into(),
        agent_type: "llm".into(),
        runtime_id: "rt".into(),
        endpoint: "http://x".into(),
        version: "1".into(),
        description: "desc".into(),
        capabilities: vec![Capability {
            name: "code".into(),
            description: "d".into(),
            tags: vec!["a".into(), "b".into()],
            cost_estimate: Some(CostEstimate::Text("~1 token".into())),
            parameters: Metadata(params.clone()),
        }],
        tags: vec!["t".into()],
        metadata: Metadata(params),
        status: Some(AgentStatus::Active),
        health_score: Some(0.5),
        load_factor: Some(0.5),
        performance_metrics: Some(BTreeMap::from([("lat".to_string(), 1.0)])),
        ttl_seconds: 30,
        offline_after_seconds: 60,
        deregister_after_seconds: 90,
        if_absent: false,
        expected_revision: Some(1),
        keep: Keep::default(),
        now: t,
    }));
    let leaves = vec![
        register,
        Command::Deregister {
            agent_id: id.clone(),
            now: t,
        },
        Command::SetStatus {
            agent_id: id.clone(),
            status: AgentStatus::Offline,
            now: t,
        },
        Command::SetHealth {
            agent_id: id.clone(),
            health_score: Some(1.0),
            load_factor: None,
            metrics: BTreeMap::from([("m".to_string(), 2.0)]),
            now: t,
        },
        Command::Checkpoint {
            entries: vec![CheckpointEntry {
                agent_id: id.clone(),
                last_heartbeat: t,
                status: Some(AgentStatus::Busy),
                health_score: None,
                load_factor: Some(0.1),
                metrics: BTreeMap::new(),
            }],
            heartbeats: 3,
            now: t,
        },
        Command::Expire {
            entries: vec![ExpireEntry {
                agent_id: id,
                epoch: 4,
                step: ExpiryStep::Remove,
            }],
            now: t,
        },
        Command::Brake {
            engaged: false,
            held: 1,
            fleet: 9,
            now: t,
        },
        Command::SetScalingPolicy {
            capability: "code".into(),
            policy: Some(ScalingPolicyRequest {
                min_agents: 1,
                max_agents: 2,
                high_load: 0.9,
                low_load: 0.1,
                min_health: 0.5,
            }),
            now: t,
        },
        Command::CountDiscoveryRequests { count: 5, now: t },
    ];
    let mut all: Vec<Vec<u8>> = leaves
        .iter()
        .map(|c| bincode::serialize(c).unwrap())
        .collect();
    all.push(bincode::serialize(&Command::Batch(leaves.clone())).unwrap());
    all.push(
        bincode::serialize(&Command::Format1(Box::new(Command::Batch(leaves.clone())))).unwrap(),
    );
    all.push(bincode::serialize(&leaves).unwrap());
    all
}

/// One way to spoil an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte.
    Flip(prop::sample::Index, u8),
    /// Insert a byte.
    Insert(prop::sample::Index, u8),
    /// Remove a byte.
    Remove(prop::sample::Index),
    /// Overwrite 4 or 8 bytes (a variant tag, a length, a number) with a
    /// hostile value.
    Word(prop::sample::Index, u64, bool),
    /// Cut the input short.
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile = prop_oneof![
        Just(0u64),
        Just(1),
        Just(8),
        Just(10),
        Just(11),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 40),
        any::<u64>(),
    ];
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        3 => (any::<prop::sample::Index>(), hostile, any::<bool>())
            .prop_map(|(i, v, wide)| Mutation::Word(i, v, wide)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, *b);
            }
            Mutation::Remove(i) => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
            Mutation::Word(i, v, wide) => {
                let word = if *wide {
                    v.to_le_bytes().to_vec()
                } else {
                    (*v as u32).to_le_bytes().to_vec()
                };
                let i = i.index(bytes.len());
                let end = (i + word.len()).min(bytes.len());
                bytes[i..end].copy_from_slice(&word[..end - i]);
            }
            Mutation::Truncate(i) => {
                let i = i.index(bytes.len());
                bytes.truncate(i);
            }
        }
    }
    bytes
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let corpus = corpus();
    prop_oneof![
        6 => (
            prop::sample::select(corpus),
            prop::collection::vec(mutation(), 1..6),
        )
            .prop_map(|(bytes, ms)| mutate(bytes, &ms)),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        // A valid variant tag, then noise.
        1 => (0u32..11, prop::collection::vec(any::<u8>(), 0..128)).prop_map(|(tag, rest)| {
            let mut bytes = tag.to_le_bytes().to_vec();
            bytes.extend(rest);
            bytes
        }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
}

#[test]
fn fuzz_decode_command_never_panics() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let decoded = std::cell::Cell::new(0u32);
    runner
        .run(&input(), |bytes| {
            // Each may fail; none may panic.
            if let Ok(c) = bincode::deserialize::<Command>(&bytes) {
                // What decodes encodes again (no value the encoder chokes on).
                bincode::serialize(&c).expect("re-encodes");
                decoded.set(decoded.get() + 1);
            }
            let _ = bincode::deserialize::<Vec<Command>>(&bytes);
            let _ = bincode::deserialize::<registry_types::v1::Command>(&bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Mutations that still decode reach the decoders' inner paths (a
    // mutated number, string byte or length); inputs that all failed at
    // the first tag would prove little.
    assert!(
        decoded.get() >= cases() / 20,
        "only {} of {} inputs decoded",
        decoded.get(),
        cases()
    );
}

#[test]
fn fuzz_corpus_decodes_unmutated() {
    // The corpus itself is valid: mutations start from real encodings.
    for bytes in corpus() {
        let ok = bincode::deserialize::<Command>(&bytes).is_ok()
            || bincode::deserialize::<Vec<Command>>(&bytes).is_ok();
        assert!(ok);
    }
}
