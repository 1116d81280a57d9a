//! Snapshots travel between nodes and to disk as bincode: they must decode
//! to exactly what was encoded, whatever optional fields are empty.

mod common;

use common::*;
use registry_state::{RegistryState, SnapshotData, StateConfig};
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
        cost_estimate: Some(0.5),
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
            cost_estimate: Some(2.0),
            ..cap("Python", "d", &["t"])
        },
    ] {
        assert_eq!(round_trip(&c), Ok(c.clone()));
    }
}

#[test]
fn snapshot_survives_bincode() {
    let state = varied_state();
    let snap = state.snapshot();
    let decoded: SnapshotData = round_trip(&snap).expect("snapshot decodes");
    assert_eq!(decoded, snap);
    let restored = RegistryState::restore(StateConfig::default(), decoded).unwrap();
    assert_eq!(restored.snapshot(), snap);
}
