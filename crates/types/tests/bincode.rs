//! Everything that goes through the Raft log or a snapshot must survive a
//! bincode round trip, including every optional field left empty.

use std::collections::BTreeMap;

use registry_types::command::{Cause, Keep, RegisterCommand};
use registry_types::scaling::{
    ScalingAction, ScalingAdvisory, ScalingFigures, ScalingPolicyRequest,
};
use registry_types::{
    AgentId, AgentStatus, Capability, Command, CostEstimate, Event, EventKind, Metadata, Timestamp,
};

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    v: &T,
) {
    let bytes = bincode::serialize(v).expect("encode");
    let back: T = bincode::deserialize(&bytes).expect("decode");
    assert_eq!(&back, v);
}

fn register(cost: Option<f64>, status: Option<AgentStatus>) -> Command {
    let mut meta = serde_json::Map::new();
    meta.insert("k".into(), serde_json::json!({"nested": [1, null, "x"]}));
    Command::Register(Box::new(RegisterCommand {
        agent_id: AgentId::parse("a-1").unwrap(),
        name: "n".into(),
        agent_type: String::new(),
        runtime_id: "rt".into(),
        endpoint: "http://e".into(),
        version: String::new(),
        description: "d".into(),
        capabilities: vec![Capability {
            name: "c".into(),
            description: String::new(),
            tags: vec![],
            cost_estimate: cost.map(registry_types::CostEstimate::Number),
            parameters: Default::default(),
        }],
        tags: vec!["t".into()],
        metadata: Metadata(meta),
        status,
        health_score: None,
        load_factor: Some(0.5),
        performance_metrics: Some(BTreeMap::from([("lat".to_string(), 1.5)])),
        ttl_seconds: 30,
        offline_after_seconds: 60,
        deregister_after_seconds: 0,
        if_absent: false,
        expected_revision: None,
        keep: Default::default(),
        now: Timestamp(1),
    }))
}

#[test]
fn commands_roundtrip_with_and_without_optional_fields() {
    roundtrip(&register(None, None));
    roundtrip(&register(Some(0.25), Some(AgentStatus::Busy)));
    let Command::Register(mut text) = register(None, Some(AgentStatus::Offline)) else {
        unreachable!()
    };
    text.capabilities[0].cost_estimate = Some(CostEstimate::Text("~100 tokens".into()));
    text.capabilities[0].parameters = Metadata(
        serde_json::json!({"language": "str", "schema": {"type": "object"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    text.keep = Keep {
        profile: true,
        capabilities: false,
        metadata: true,
        lease: true,
    };
    roundtrip(&Command::Register(text));
    roundtrip(&Command::CountDiscoveryRequests {
        count: 7,
        now: Timestamp(3),
    });
    roundtrip(&Command::Checkpoint {
        entries: vec![],
        heartbeats: u64::MAX,
        now: Timestamp(4),
    });
    roundtrip(&Command::Deregister {
        agent_id: AgentId::parse("x").unwrap(),
        now: Timestamp(2),
    });
    // The card commands: the card travels as its canonical JSON text.
    let card = registry_types::AgentCard::from_stored(
        r#"{"name":"n","skills":[{"id":"s","name":"S"}],"url":"http://e"}"#,
    )
    .unwrap();
    let Command::Register(reg) = register(Some(1.0), None) else {
        unreachable!()
    };
    roundtrip(&Command::RegisterCard {
        register: reg,
        card: card.clone(),
    });
    roundtrip(&Command::SetCard(Box::new(
        registry_types::command::SetCardCommand {
            agent_id: AgentId::parse("x").unwrap(),
            name: "n".into(),
            endpoint: "http://e".into(),
            version: "1".into(),
            description: String::new(),
            capabilities: vec![],
            card,
            now: Timestamp(9),
        },
    )));
}

#[test]
fn events_roundtrip_with_and_without_optional_fields() {
    roundtrip(&Event {
        revision: 3,
        kind: EventKind::RuntimeJoined,
        agent_id: None,
        at: Timestamp(3),
        cause: Cause::Registration,
        status: None,
        previous_status: None,
        runtime_id: String::new(),
        detail: String::new(),
        capabilities: vec![],
        advisory: None,
        actor: None,
        card_etag: None,
    });
    roundtrip(&Event {
        revision: 4,
        kind: EventKind::AgentStatusChanged,
        agent_id: Some(AgentId::parse("a").unwrap()),
        at: Timestamp(4),
        cause: Cause::Operator,
        status: Some(AgentStatus::Suspended),
        previous_status: Some(AgentStatus::Active),
        runtime_id: "rt".into(),
        detail: String::new(),
        capabilities: vec!["python".into(), "trading".into()],
        advisory: None,
        actor: Some(registry_types::auth::Actor {
            token_id: Some(registry_types::auth::TokenId::bootstrap()),
            name: "oncall".into(),
        }),
        card_etag: Some("\"0123456789abcdef0123456789abcdef\"".into()),
    });
    roundtrip(&Event {
        revision: 5,
        kind: EventKind::ScalingAdvisory,
        agent_id: None,
        at: Timestamp(5),
        cause: Cause::ScalingPolicy,
        status: None,
        previous_status: None,
        runtime_id: String::new(),
        detail: "scale_up trading".into(),
        capabilities: vec!["trading".into()],
        advisory: Some(ScalingAdvisory {
            capability: "trading".into(),
            action: ScalingAction::ScaleUp,
            in_force: true,
            reason: "average load 0.91 above high_load 0.80".into(),
            figures: ScalingFigures {
                agents: 3,
                serving: 2,
                unhealthy: 1,
                average_load: 0.91,
                desired_agents: 4,
            },
            since: Timestamp(5),
            revision: 5,
        }),
        actor: Some(registry_types::auth::Actor::anonymous()),
        card_etag: None,
    });
    roundtrip(&Command::SetScalingPolicy {
        capability: "trading".into(),
        policy: Some(ScalingPolicyRequest {
            min_agents: 1,
            max_agents: 10,
            high_load: 0.8,
            low_load: 0.2,
            min_health: 0.5,
        }),
        now: Timestamp(6),
    });
    roundtrip(&Command::SetScalingPolicy {
        capability: "trading".into(),
        policy: None,
        now: Timestamp(7),
    });
}
