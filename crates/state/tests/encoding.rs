//! Snapshots travel between nodes and to disk as bincode: they must decode
//! to exactly what was encoded, whatever optional fields are empty, and keep
//! the brake flag.

mod common;

use common::*;
use registry_state::{RegistryState, SnapshotData, StateConfig};
use registry_types::command::{CheckpointEntry, ExpiryStep};
use registry_types::{AgentStatus, Capability, Event};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> Result<T, String> {
    let bytes = bincode::serialize(v).map_err(|e| format!("encode: {e}"))?;
    bincode::deserialize(&bytes).map_err(|e| format!("decode: {e}"))
}

/// A state whose records and events use every optional field both empty
/// and set: runtime events have no agent and no status, agents with and
/// without runtime, capabilities with and without a cost estimate.
fn varied_state() -> RegistryState {
    let mut h = Harness::new();
    let mut c = reg("a1", 1);
    c.capabilities = vec![cap("Python", "", &[])];
    h.register(c);
    let mut c = reg("a2", 2);
    c.runtime_id = "rt1".into();
    c.capabilities = vec![Capability {
        cost_estimate: Some(registry_types::CostEstimate::Number(0.5)),
        parameters: Default::default(),
        ..cap("Summarize", "text", &["nlp"])
    }];
    c.metadata = registry_types::Metadata(
        serde_json::json!({"zone": "eu", "n": [1, null]})
            .as_object()
            .unwrap()
            .clone(),
    );
    h.register(c);
    h.apply(set_status("a1", AgentStatus::Busy, 3));
    h.apply(deregister("a2", 4));
    // Liveness entries: a status change by checkpoint, an expiry with its
    // runtime event, and a brake event, the only kind with a detail.
    let mut c = reg("a3", 5);
    c.runtime_id = "rt2".into();
    let epoch = h.register(c).epoch;
    h.apply(expire(vec![silent("a3", epoch, ExpiryStep::Remove)], 6));
    h.apply(checkpoint(
        vec![CheckpointEntry {
            status: Some(AgentStatus::Degraded),
            health_score: Some(0.5),
            ..heard("a1", 6)
        }],
        7,
    ));
    h.apply(brake(true, 3, 4, 8));
    assert!(h.state.brake_engaged());
    h.state
}

#[test]
fn events_survive_bincode() {
    let state = varied_state();
    for e in state.events().iter() {
        assert_eq!(round_trip::<Event>(e).as_ref(), Ok(e), "event {e:?}");
    }
}

#[test]
fn capabilities_survive_bincode() {
    for c in [
        cap("Python", "", &[]),
        Capability {
            cost_estimate: Some(registry_types::CostEstimate::Number(2.0)),
            parameters: Default::default(),
            ..cap("Python", "d", &["t"])
        },
    ] {
        assert_eq!(round_trip(&c), Ok(c.clone()));
    }
}

#[test]
fn snapshot_view_encodes_as_the_snapshot() {
    let state = varied_state();
    let view = bincode::serialize(&state.snapshot_view()).expect("view encodes");
    let owned = bincode::serialize(&state.snapshot()).expect("snapshot encodes");
    assert_eq!(view, owned, "byte for byte the same encoding");
    assert_eq!(
        bincode::serialized_size(&state.snapshot_view()).ok(),
        Some(owned.len() as u64)
    );
    let decoded: SnapshotData = bincode::deserialize(&view).expect("view decodes");
    assert_eq!(decoded, state.snapshot());
    assert!(!decoded.agents.is_empty() && !decoded.events.is_empty());
}

#[test]
fn snapshot_survives_bincode() {
    let state = varied_state();
    let snap = state.snapshot();
    let decoded: SnapshotData = round_trip(&snap).expect("snapshot decodes");
    assert_eq!(decoded, snap);
    assert!(decoded.brake_engaged);
    let restored = RegistryState::restore(StateConfig::default(), decoded).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert!(restored.brake_engaged());
}
