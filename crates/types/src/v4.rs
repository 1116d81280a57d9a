//! The shapes of agent records and events in snapshots of format 4,
//! frozen.
//!
//! Releases before A2A Agent Cards wrote snapshots of format 4: records
//! without `agent_card` and events without `card_etag`. A node of this
//! release reads them and converts them with the `From` impls below (no
//! card, no ETag: there were none); it writes only the current format.
//! Never edit the shapes below: they are what is on disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentStatus, Capability, Metadata};
use crate::auth::Actor;
use crate::command::{Cause, EventKind};
use crate::ids::{AgentId, Revision, Timestamp};
use crate::scaling::ScalingAdvisory;

/// An agent record as format 4 stored it.
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
    pub registered_by: Option<Actor>,
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
            capabilities: r.capabilities,
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
            registered_by: r.registered_by,
            agent_card: None,
        }
    }
}

/// An event as format 4 stored it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub revision: Revision,
    pub kind: EventKind,
    pub agent_id: Option<AgentId>,
    pub at: Timestamp,
    pub cause: Cause,
    pub status: Option<AgentStatus>,
    pub previous_status: Option<AgentStatus>,
    pub runtime_id: String,
    pub detail: String,
    pub capabilities: Vec<String>,
    pub advisory: Option<ScalingAdvisory>,
    pub actor: Option<Actor>,
}

impl From<Event> for crate::Event {
    fn from(e: Event) -> Self {
        crate::Event {
            revision: e.revision,
            kind: e.kind,
            agent_id: e.agent_id,
            at: e.at,
            cause: e.cause,
            status: e.status,
            previous_status: e.previous_status,
            runtime_id: e.runtime_id,
            detail: e.detail,
            capabilities: e.capabilities,
            advisory: e.advisory,
            actor: e.actor,
            card_etag: None,
        }
    }
}
