//! The persisted shapes of format version 1, frozen.
//!
//! Nodes up to the release that added text cost estimates wrote Raft log
//! entries and snapshots in these shapes (bincode, which is not
//! self-describing: a field added or retyped changes every byte after it).
//! A node of this release reads them and converts them to the current types
//! with the `From` impls below; it writes only the current format.
//!
//! What changed in version 2:
//! - a capability's `cost_estimate` is a number or text
//!   ([`crate::agent::CostEstimate`]), and capabilities carry `parameters`;
//! - a registration names what an update keeps ([`crate::command::Keep`]);
//! - a checkpoint counts the heartbeats it covers;
//! - `Command::CountDiscoveryRequests` and `Command::Format1` were added
//!   (after every version-1 variant, so they need nothing here); every
//!   converted entry is wrapped in `Format1`.
//!
//! Types that did not change (ids, statuses, metadata, checkpoint and
//! expiry entries, scaling policies) are used as they are; events as
//! [`crate::v3`] froze them. Never
//! edit the shapes below: they are what is on disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentStatus, CostEstimate, Metadata};
use crate::command::{CheckpointEntry, ExpireEntry, Keep};
use crate::ids::{AgentId, Revision, Timestamp};
use crate::scaling::ScalingPolicyRequest;

/// A capability as version 1 stored it: the cost estimate was a number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub cost_estimate: Option<f64>,
}

impl From<Capability> for crate::Capability {
    fn from(c: Capability) -> Self {
        crate::Capability {
            name: c.name,
            description: c.description,
            tags: c.tags,
            cost_estimate: c.cost_estimate.map(CostEstimate::Number),
            parameters: Metadata::default(),
        }
    }
}

fn capabilities(caps: Vec<Capability>) -> Vec<crate::Capability> {
    caps.into_iter().map(Into::into).collect()
}

/// An agent record as version 1 stored it (in snapshots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: AgentId,
    pub name: String,
    pub agent_type: String,
    pub runtime_id: String,
    pub endpoint: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub tags: Vec<String>,
    pub metadata: Metadata,
    pub status: AgentStatus,
    pub health_score: f64,
    pub load_factor: f64,
    pub performance_metrics: BTreeMap<String, f64>,
    pub ttl_seconds: u32,
    pub offline_after_seconds: u32,
    pub deregister_after_seconds: u32,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_heartbeat: Timestamp,
    pub create_revision: Revision,
    pub revision: Revision,
    pub epoch: Revision,
}

impl From<AgentRecord> for crate::AgentRecord {
    fn from(r: AgentRecord) -> Self {
        crate::AgentRecord {
            agent_id: r.agent_id,
            name: r.name,
            agent_type: r.agent_type,
            runtime_id: r.runtime_id,
            endpoint: r.endpoint,
            version: r.version,
            description: r.description,
            capabilities: capabilities(r.capabilities),
            tags: r.tags,
            metadata: r.metadata,
            status: r.status,
            health_score: r.health_score,
            load_factor: r.load_factor,
            performance_metrics: r.performance_metrics,
            ttl_seconds: r.ttl_seconds,
            offline_after_seconds: r.offline_after_seconds,
            deregister_after_seconds: r.deregister_after_seconds,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            last_heartbeat: r.last_heartbeat,
            create_revision: r.create_revision,
            revision: r.revision,
            epoch: r.epoch,
            // Every caller was anonymous before access control (see v3.rs).
            registered_by: Some(crate::auth::Actor::anonymous()),
            agent_card: None,
        }
    }
}

/// A registration as version 1 logged it: it replaced every field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterCommand {
    pub agent_id: AgentId,
    pub name: String,
    pub agent_type: String,
    pub runtime_id: String,
    pub endpoint: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub tags: Vec<String>,
    pub metadata: Metadata,
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub performance_metrics: Option<BTreeMap<String, f64>>,
    pub ttl_seconds: u32,
    pub offline_after_seconds: u32,
    pub deregister_after_seconds: u32,
    pub if_absent: bool,
    pub expected_revision: Option<Revision>,
    pub now: Timestamp,
}

impl From<RegisterCommand> for crate::command::RegisterCommand {
    fn from(c: RegisterCommand) -> Self {
        crate::command::RegisterCommand {
            agent_id: c.agent_id,
            name: c.name,
            agent_type: c.agent_type,
            runtime_id: c.runtime_id,
            endpoint: c.endpoint,
            version: c.version,
            description: c.description,
            capabilities: capabilities(c.capabilities),
            tags: c.tags,
            metadata: c.metadata,
            status: c.status,
            health_score: c.health_score,
            load_factor: c.load_factor,
            performance_metrics: c.performance_metrics,
            ttl_seconds: c.ttl_seconds,
            offline_after_seconds: c.offline_after_seconds,
            deregister_after_seconds: c.deregister_after_seconds,
            if_absent: c.if_absent,
            expected_revision: c.expected_revision,
            keep: Keep::default(),
            now: c.now,
        }
    }
}

/// The command log vocabulary of version 1 (same variants in the same
/// order as the current [`crate::Command`], up to `Batch`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
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
    /// Decoded with the current batch's nesting guard (a batch inside a
    /// batch is refused instead of recursing): the shape is unchanged.
    Batch(#[serde(deserialize_with = "crate::command::nesting::batch")] Vec<Command>),
}

impl From<Command> for crate::Command {
    /// The current command, marked as converted ([`crate::Command::Format1`])
    /// so that applying it advances no counter.
    fn from(c: Command) -> Self {
        crate::Command::Format1(Box::new(c.into_current()))
    }
}

impl Command {
    /// The same command in the current vocabulary.
    fn into_current(self) -> crate::Command {
        match self {
            Command::Register(r) => crate::Command::Register(Box::new((*r).into())),
            Command::Deregister { agent_id, now } => crate::Command::Deregister { agent_id, now },
            Command::SetStatus {
                agent_id,
                status,
                now,
            } => crate::Command::SetStatus {
                agent_id,
                status,
                now,
            },
            Command::SetHealth {
                agent_id,
                health_score,
                load_factor,
                metrics,
                now,
            } => crate::Command::SetHealth {
                agent_id,
                health_score,
                load_factor,
                metrics,
                now,
            },
            // Version 1 did not count heartbeats.
            Command::Checkpoint { entries, now } => crate::Command::Checkpoint {
                entries,
                heartbeats: 0,
                now,
            },
            Command::Expire { entries, now } => crate::Command::Expire { entries, now },
            Command::Brake {
                engaged,
                held,
                fleet,
                now,
            } => crate::Command::Brake {
                engaged,
                held,
                fleet,
                now,
            },
            Command::SetScalingPolicy {
                capability,
                policy,
                now,
            } => crate::Command::SetScalingPolicy {
                capability,
                policy,
                now,
            },
            Command::Batch(cmds) => {
                crate::Command::Batch(cmds.into_iter().map(Command::into_current).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_capability(cost: Option<f64>) -> Capability {
        Capability {
            name: "Translate".into(),
            description: "d".into(),
            tags: vec!["t".into()],
            cost_estimate: cost,
        }
    }

    fn v1_register() -> RegisterCommand {
        RegisterCommand {
            agent_id: AgentId::parse("a-1").unwrap(),
            name: "n".into(),
            agent_type: "llm".into(),
            runtime_id: "rt".into(),
            endpoint: "http://e".into(),
            version: "1".into(),
            description: "desc".into(),
            capabilities: vec![v1_capability(Some(0.5)), v1_capability(None)],
            tags: vec!["x".into()],
            metadata: Metadata::default(),
            status: Some(AgentStatus::Busy),
            health_score: Some(0.9),
            load_factor: None,
            performance_metrics: None,
            ttl_seconds: 30,
            offline_after_seconds: 60,
            deregister_after_seconds: 300,
            if_absent: true,
            expected_revision: Some(4),
            now: Timestamp(7),
        }
    }

    #[test]
    fn capabilities_keep_their_numbers_and_gain_empty_parameters() {
        let c: crate::Capability = v1_capability(Some(0.5)).into();
        assert_eq!(c.cost_estimate, Some(CostEstimate::Number(0.5)));
        assert!(c.parameters.0.is_empty());
        assert_eq!(
            (c.name.as_str(), c.description.as_str()),
            ("Translate", "d")
        );
        assert_eq!(c.tags, ["t"]);
        let c: crate::Capability = v1_capability(None).into();
        assert_eq!(c.cost_estimate, None);
    }

    #[test]
    fn a_registration_converts_field_by_field_and_keeps_nothing() {
        let old = v1_register();
        let crate::Command::Format1(inner) = crate::Command::from(Command::Register(Box::new(old)))
        else {
            panic!("converted entries are marked as format 1")
        };
        let crate::Command::Register(new) = *inner else {
            panic!("a registration stays one")
        };
        let old = v1_register();
        assert_eq!(new.capabilities.len(), 2);
        assert_eq!(
            new.capabilities[0].cost_estimate,
            Some(CostEstimate::Number(0.5))
        );
        assert_eq!(
            (new.agent_id, new.name, new.agent_type, new.runtime_id),
            (old.agent_id, old.name, old.agent_type, old.runtime_id)
        );
        assert_eq!(
            (new.endpoint, new.version, new.description, new.tags),
            (old.endpoint, old.version, old.description, old.tags)
        );
        assert_eq!(
            (new.status, new.health_score, new.load_factor, new.if_absent),
            (old.status, old.health_score, old.load_factor, old.if_absent)
        );
        assert_eq!(
            (
                new.ttl_seconds,
                new.offline_after_seconds,
                new.deregister_after_seconds
            ),
            (30, 60, 300)
        );
        assert_eq!((new.expected_revision, new.now), (Some(4), Timestamp(7)));
        assert_eq!(
            new.keep,
            Keep::default(),
            "format 1 replaced the whole record"
        );
    }

    #[test]
    fn batches_are_marked_once_and_checkpoints_count_no_heartbeats() {
        let old = Command::Batch(vec![
            Command::Checkpoint {
                entries: vec![],
                now: Timestamp(1),
            },
            Command::Deregister {
                agent_id: AgentId::parse("a").unwrap(),
                now: Timestamp(2),
            },
        ]);
        let crate::Command::Format1(inner) = crate::Command::from(old) else {
            panic!("marked")
        };
        assert_eq!(
            *inner,
            crate::Command::Batch(vec![
                crate::Command::Checkpoint {
                    entries: vec![],
                    heartbeats: 0,
                    now: Timestamp(1),
                },
                crate::Command::Deregister {
                    agent_id: AgentId::parse("a").unwrap(),
                    now: Timestamp(2),
                },
            ])
        );
    }

    #[test]
    fn a_record_converts_field_by_field() {
        let r = AgentRecord {
            agent_id: AgentId::parse("a").unwrap(),
            name: "n".into(),
            agent_type: "t".into(),
            runtime_id: "r".into(),
            endpoint: "e".into(),
            version: "v".into(),
            description: "d".into(),
            capabilities: vec![v1_capability(Some(2.5))],
            tags: vec!["g".into()],
            metadata: Metadata::default(),
            status: AgentStatus::Degraded,
            health_score: 0.4,
            load_factor: 0.6,
            performance_metrics: BTreeMap::from([("lat".to_string(), 3.0)]),
            ttl_seconds: 1,
            offline_after_seconds: 2,
            deregister_after_seconds: 3,
            registered_at: Timestamp(10),
            updated_at: Timestamp(11),
            last_heartbeat: Timestamp(12),
            create_revision: 5,
            revision: 6,
            epoch: 7,
        };
        let n: crate::AgentRecord = r.clone().into();
        let back = serde_json::to_value(&n).unwrap();
        let mut old = serde_json::to_value(&r).unwrap();
        old["capabilities"][0]["parameters"] = serde_json::json!({});
        old["registered_by"] = serde_json::json!({"token_id": null, "name": "anonymous"});
        // No card before A2A Agent Cards.
        old["agent_card"] = serde_json::Value::Null;
        assert_eq!(back, old, "every field carried over, numbers as numbers");
    }
}
