//! The replicated command log vocabulary.
//!
//! Every change to the registry is one [`Command`] in the Raft log. The leader
//! stamps wall-clock time (`now`) and assigned ids into the command before it
//! is proposed, so that applying it on any replica gives the same result.
//! Persisted inside Raft log entries and snapshots: the enum's variant order is
//! part of the on-disk format (see `FORMAT_VERSION` in the raft crate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRecord, AgentStatus, Capability, Metadata};
use crate::ids::{AgentId, Revision, Timestamp};

/// A change to the registry, as proposed through Raft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update an agent (upsert).
    Register(Box<RegisterCommand>),
    /// Remove an agent.
    Deregister { agent_id: AgentId, now: Timestamp },
    /// Operator sets a status (e.g. `suspended`).
    SetStatus {
        agent_id: AgentId,
        status: AgentStatus,
        now: Timestamp,
    },
    /// Agent or operator reports health, load and metrics.
    SetHealth {
        agent_id: AgentId,
        health_score: Option<f64>,
        load_factor: Option<f64>,
        metrics: BTreeMap<String, f64>,
        now: Timestamp,
    },
}

impl Command {
    /// The leader-stamped time carried by the command.
    pub fn now(&self) -> Timestamp {
        match self {
            Command::Register(c) => c.now,
            Command::Deregister { now, .. }
            | Command::SetStatus { now, .. }
            | Command::SetHealth { now, .. } => *now,
        }
    }

    /// Sets the command's time. The leader calls this just before proposing,
    /// so that every entry carries the leader's clock, whichever node the
    /// request arrived at.
    pub fn stamp(&mut self, at: Timestamp) {
        match self {
            Command::Register(c) => c.now = at,
            Command::Deregister { now, .. }
            | Command::SetStatus { now, .. }
            | Command::SetHealth { now, .. } => *now = at,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register(_) => "register",
            Command::Deregister { .. } => "deregister",
            Command::SetStatus { .. } => "set_status",
            Command::SetHealth { .. } => "set_health",
        }
    }
}

/// The content of a registration; every default has already been filled in
/// by the server so that apply does not depend on node configuration.
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
    /// Status the agent asks for; `None` keeps the current one on update and
    /// means `active` on create.
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub performance_metrics: Option<BTreeMap<String, f64>>,
    pub ttl_seconds: u32,
    pub offline_after_seconds: u32,
    pub deregister_after_seconds: u32,
    /// Fail with `AlreadyExists` when the id is taken.
    pub if_absent: bool,
    /// Fail with `RevisionMismatch` unless the record is at this revision
    /// (0: the agent must not exist).
    pub expected_revision: Option<Revision>,
    pub now: Timestamp,
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The agent as it is after the change.
    Agent {
        record: Box<AgentRecord>,
        created: bool,
    },
    /// The agent was removed at `revision`.
    Removed {
        agent_id: AgentId,
        revision: Revision,
    },
    /// The command was valid but the state did not allow it; nothing changed.
    Rejected(Rejection),
}

/// A deterministic refusal decided by the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound {
        agent_id: AgentId,
    },
    AlreadyExists {
        agent_id: AgentId,
        revision: Revision,
    },
    RevisionMismatch {
        agent_id: AgentId,
        expected: Revision,
        actual: Revision,
    },
}

/// Kind of a registry event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    AgentRegistered,
    AgentUpdated,
    AgentDeregistered,
    AgentStatusChanged,
    AgentExpired,
    RuntimeJoined,
    RuntimeLeft,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AgentRegistered => "AGENT_REGISTERED",
            EventKind::AgentUpdated => "AGENT_UPDATED",
            EventKind::AgentDeregistered => "AGENT_DEREGISTERED",
            EventKind::AgentStatusChanged => "AGENT_STATUS_CHANGED",
            EventKind::AgentExpired => "AGENT_EXPIRED",
            EventKind::RuntimeJoined => "RUNTIME_JOINED",
            EventKind::RuntimeLeft => "RUNTIME_LEFT",
        }
    }
}

/// Why a change happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The agent registered or re-registered.
    Registration,
    /// An operator called the API.
    Operator,
    /// The agent reported its own status or health.
    AgentReport,
    /// The agent deregistered itself.
    Deregistration,
}

/// One entry of the event log. Every event has its own revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub revision: Revision,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub agent_id: Option<AgentId>,
    /// Leader-stamped time of the command that produced the event.
    pub at: Timestamp,
    pub cause: Cause,
    #[serde(default)]
    pub status: Option<AgentStatus>,
    #[serde(default)]
    pub previous_status: Option<AgentStatus>,
    #[serde(default)]
    pub runtime_id: String,
}
