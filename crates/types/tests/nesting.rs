//! Decoding a command never recurses more than the shapes nodes write: a
//! batch or `Format1` inside a batch, and a `Format1` inside a `Format1`,
//! fail to decode instead of recursing once per level (850 levels of batch
//! overflowed a node's stack). The encoding is the derived one, byte for
//! byte: bytes written by the plain derive decode to the same command.

use std::collections::BTreeMap;

use registry_types::command::{CheckpointEntry, ExpireEntry, ExpiryStep, Keep, RegisterCommand};
use registry_types::scaling::ScalingPolicyRequest;
use registry_types::{AgentId, AgentStatus, Capability, Command, Metadata, Timestamp};
use serde::{Deserialize, Serialize};

/// `Command` as the plain derive shaped it before the nesting guard: the
/// same variants with the same content, in the same order.
#[derive(Serialize, Deserialize)]
enum OldCommand {
    Register(Box<RegisterCommand>),
    Deregister {
        agent_id: AgentId,
        now: Timestamp,
    },
    SetStatus {
        agent_id: AgentId,
        status: AgentStatus,
        now: Timestamp,
    },
    SetHealth {
        agent_id: AgentId,
        health_score: Option<f64>,
        load_factor: Option<f64>,
        metrics: BTreeMap<String, f64>,
        now: Timestamp,
    },
    Checkpoint {
        entries: Vec<CheckpointEntry>,
        heartbeats: u64,
        now: Timestamp,
    },
    Expire {
        entries: Vec<ExpireEntry>,
        now: Timestamp,
    },
    Brake {
        engaged: bool,
        held: u64,
        fleet: u64,
        now: Timestamp,
    },
    SetScalingPolicy {
        capability: String,
        policy: Option<ScalingPolicyRequest>,
        now: Timestamp,
    },
    Batch(Vec<OldCommand>),
    CountDiscoveryRequests {
        count: u64,
        now: Timestamp,
    },
    Format1(Box<OldCommand>),
}

/// Bincode's variant indexes of `Command` (u32, little-endian).
const BATCH: u32 = 8;
const COUNT: u32 = 9;
const FORMAT1: u32 = 10;

fn id() -> AgentId {
    AgentId::parse("a-1").unwrap()
}

fn register() -> RegisterCommand {
    RegisterCommand {
        agent_id: id(),
        name: "n".into(),
        agent_type: "llm".into(),
        runtime_id: "rt".into(),
        endpoint: "http://e".into(),
        version: "1".into(),
        description: "d".into(),
        capabilities: vec![Capability {
            name: "c".into(),
            description: String::new(),
            tags: vec!["t".into()],
            cost_estimate: None,
            parameters: Metadata::default(),
        }],
        tags: vec![],
        metadata: Metadata::default(),
        status: Some(AgentStatus::Busy),
        health_score: Some(0.5),
        load_factor: None,
        performance_metrics: None,
        ttl_seconds: 30,
        offline_after_seconds: 60,
        deregister_after_seconds: 0,
        if_absent: true,
        expected_revision: Some(3),
        keep: Keep::default(),
        now: Timestamp(7),
    }
}

/// Every variant, with the nestings nodes write (a batch, a `Format1`
/// holding a batch).
fn old_corpus() -> Vec<OldCommand> {
    let t = Timestamp(5);
    let leaves = || {
        vec![
            OldCommand::Register(Box::new(register())),
            OldCommand::Deregister {
                agent_id: id(),
                now: t,
            },
            OldCommand::SetStatus {
                agent_id: id(),
                status: AgentStatus::Suspended,
                now: t,
            },
            OldCommand::SetHealth {
                agent_id: id(),
                health_score: Some(1.0),
                load_factor: Some(0.25),
                metrics: BTreeMap::from([("q".to_string(), 2.0)]),
                now: t,
            },
            OldCommand::SetScalingPolicy {
                capability: "c".into(),
                policy: Some(ScalingPolicyRequest {
                    min_agents: 1,
                    max_agents: 3,
                    high_load: 0.9,
                    low_load: 0.1,
                    min_health: 0.5,
                }),
                now: t,
            },
            OldCommand::CountDiscoveryRequests { count: 4, now: t },
        ]
    };
    let mut all = leaves();
    all.extend([
        OldCommand::Checkpoint {
            entries: vec![CheckpointEntry {
                agent_id: id(),
                last_heartbeat: t,
                status: None,
                health_score: Some(0.5),
                load_factor: None,
                metrics: BTreeMap::new(),
            }],
            heartbeats: 9,
            now: t,
        },
        OldCommand::Expire {
            entries: vec![ExpireEntry {
                agent_id: id(),
                epoch: 2,
                step: ExpiryStep::Offline,
            }],
            now: t,
        },
        OldCommand::Brake {
            engaged: true,
            held: 1,
            fleet: 2,
            now: t,
        },
        OldCommand::Batch(leaves()),
        OldCommand::Batch(vec![]),
        OldCommand::Format1(Box::new(OldCommand::Deregister {
            agent_id: id(),
            now: t,
        })),
        OldCommand::Format1(Box::new(OldCommand::Batch(leaves()))),
    ]);
    all
}

#[test]
fn bytes_of_the_plain_derive_decode_and_encode_again_byte_for_byte() {
    for old in old_corpus() {
        let bytes = bincode::serialize(&old).unwrap();
        let new: Command = bincode::deserialize(&bytes).expect("decodes");
        assert_eq!(bincode::serialize(&new).unwrap(), bytes, "{new:?}");
        // And the other way: what this release writes, the old shape reads.
        let back: OldCommand = bincode::deserialize(&bincode::serialize(&new).unwrap()).unwrap();
        assert_eq!(bincode::serialize(&back).unwrap(), bytes);
    }
    // A group of them, as forwarded and as the log holds them.
    let all = old_corpus();
    let bytes = bincode::serialize(&all).unwrap();
    let new: Vec<Command> = bincode::deserialize(&bytes).unwrap();
    assert_eq!(bincode::serialize(&new).unwrap(), bytes);
}

fn tag(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// `depth` batches, each holding the next as its one item, around a count.
fn nested_batches(depth: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(depth * 12 + 20);
    for _ in 0..depth {
        bytes.extend(tag(BATCH));
        bytes.extend(1u64.to_le_bytes());
    }
    bytes.extend(tag(COUNT));
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(0i64.to_le_bytes());
    bytes
}

/// Decodes on a thread with a small stack, as a decoder that recursed per
/// level would overflow it (and abort the test process) long before the
/// depths tried here.
fn decode_on_small_stack(bytes: Vec<u8>) -> Result<Command, String> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || bincode::deserialize::<Command>(&bytes).map_err(|e| e.to_string()))
        .unwrap()
        .join()
        .expect("the decoder must not panic")
}

#[test]
fn deeply_nested_batches_are_refused_without_recursing() {
    // The raw bytes are what the derived encoder writes for such a value.
    let two = Command::Batch(vec![Command::Batch(vec![
        Command::CountDiscoveryRequests {
            count: 1,
            now: Timestamp(0),
        },
    ])]);
    assert_eq!(bincode::serialize(&two).unwrap(), nested_batches(2));
    assert!(decode_on_small_stack(nested_batches(1)).is_ok());
    for depth in [2, 3, 850, 100_000] {
        let e = decode_on_small_stack(nested_batches(depth)).expect_err("refused");
        assert!(e.contains("a batch inside a batch"), "{depth}: {e}");
    }
}

#[test]
fn format1_is_outermost_and_holds_at_most_one_batch() {
    let count = |bytes: &mut Vec<u8>| {
        bytes.extend(tag(COUNT));
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(0i64.to_le_bytes());
    };
    let wrap = |outer: &[u32]| {
        let mut bytes = Vec::new();
        for &v in outer {
            bytes.extend(tag(v));
            if v == BATCH {
                bytes.extend(1u64.to_le_bytes());
            }
        }
        count(&mut bytes);
        bytes
    };
    assert!(decode_on_small_stack(wrap(&[FORMAT1])).is_ok());
    assert!(decode_on_small_stack(wrap(&[FORMAT1, BATCH])).is_ok());
    for bad in [
        vec![FORMAT1, FORMAT1],
        vec![BATCH, FORMAT1],
        vec![FORMAT1, BATCH, FORMAT1],
        vec![FORMAT1, BATCH, BATCH],
        vec![FORMAT1; 100_000],
    ] {
        let e = decode_on_small_stack(wrap(&bad)).expect_err("refused");
        assert!(
            e.contains("never nested"),
            "{:?}: {e}",
            &bad[..bad.len().min(4)]
        );
    }
}

#[test]
fn a_refused_decode_leaves_the_next_one_unaffected() {
    // The guard's state is per thread and restored however a decode ends:
    // after a refusal, and after an error deep inside a batch, a plain batch
    // decodes again on the same thread.
    assert!(bincode::deserialize::<Command>(&nested_batches(5)).is_err());
    let mut truncated = nested_batches(1);
    truncated.truncate(truncated.len() - 3);
    assert!(bincode::deserialize::<Command>(&truncated).is_err());
    let ok: Command = bincode::deserialize(&nested_batches(1)).expect("decodes");
    assert!(matches!(ok, Command::Batch(items) if items.len() == 1));
    // Two batches side by side in one sequence are not nested.
    let two: Vec<Command> = bincode::deserialize(
        &[
            &2u64.to_le_bytes()[..],
            &nested_batches(1),
            &nested_batches(1),
        ]
        .concat(),
    )
    .expect("decodes");
    assert_eq!(two.len(), 2);
}

#[test]
fn version_1_batches_are_refused_when_nested_too() {
    use registry_types::v1;
    let inner = v1::Command::Deregister {
        agent_id: id(),
        now: Timestamp(1),
    };
    let one = v1::Command::Batch(vec![inner.clone()]);
    let bytes = bincode::serialize(&one).unwrap();
    assert_eq!(bincode::deserialize::<v1::Command>(&bytes).unwrap(), one);
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend(tag(BATCH));
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend(bincode::serialize(&inner).unwrap());
    let e = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || bincode::deserialize::<v1::Command>(&deep).map_err(|e| e.to_string()))
        .unwrap()
        .join()
        .unwrap()
        .expect_err("refused");
    assert!(e.contains("a batch inside a batch"), "{e}");
}
