//! The replicated command log vocabulary.
//!
//! Every change to the registry is one [`Command`] in the Raft log. The leader
//! stamps wall-clock time (`now`) and assigned ids into the command before it
//! is proposed, so that applying it on any replica gives the same result.
//! Persisted inside Raft log entries and snapshots: the enum's variant order is
//! part of the on-disk format (see `FORMAT_VERSION` in the raft crate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::{AgentRecord, AgentStatus, Capability, Metadata};
use crate::ids::{AgentId, Revision, Timestamp};
use crate::names::UnknownName;
use crate::scaling::{ScalingAdvisory, ScalingPolicy, ScalingPolicyRequest};

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
    /// The leader's periodic, batched record of heartbeats received since
    /// the previous checkpoint (heartbeats themselves are not log entries).
    Checkpoint {
        entries: Vec<CheckpointEntry>,
        /// Heartbeats the leader received since its previous checkpoint
        /// (every one, not one per agent): the `health_checks_performed`
        /// counter.
        heartbeats: u64,
        now: Timestamp,
    },
    /// The leader's batched liveness transitions of silent agents, in agent
    /// id order. Each names the registration epoch it was decided for.
    Expire {
        entries: Vec<ExpireEntry>,
        now: Timestamp,
    },
    /// The mass-expiry brake engaged or released.
    Brake {
        engaged: bool,
        /// Agents whose offline/removal transitions were (or are no longer)
        /// held back, and the live fleet size, when decided.
        held: u64,
        fleet: u64,
        now: Timestamp,
    },
    /// Set (`Some`) or remove (`None`) the scaling policy of a normalized
    /// capability name.
    SetScalingPolicy {
        capability: String,
        policy: Option<ScalingPolicyRequest>,
        now: Timestamp,
    },
    /// Several client commands the leader grouped into one log entry
    /// (group commit). Applied in order, each exactly as if it were an entry
    /// of its own: its own revision, events and result. Never nested and
    /// never holding the leader's own liveness commands.
    Batch(Vec<Command>),
    /// Discovery requests one node served since it last reported: the
    /// replicated `service_discovery_requests` counter. Changes no record
    /// and has no event.
    CountDiscoveryRequests { count: u64, now: Timestamp },
    /// An entry a release of format 1 wrote, converted: applied as its
    /// inner command, except that it advances no counter. Format 1 counted
    /// nothing, and replicas that restored snapshots taken at different
    /// indexes replay different stretches of the old log: counting none of
    /// it keeps their counters equal. Only decoding old entries makes it.
    Format1(Box<Command>),
}

/// One agent's liveness as the leader last heard it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub agent_id: AgentId,
    /// Leader wall-clock time of the agent's last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Status the agent reported (active, busy or degraded), if any.
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// A step down the liveness ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStep {
    /// Silent for `ttl_seconds`.
    Unhealthy,
    /// Silent for `offline_after_seconds`.
    Offline,
    /// Silent for `deregister_after_seconds`: removed.
    Remove,
}

/// One liveness transition decided by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireEntry {
    pub agent_id: AgentId,
    /// The registration epoch the decision was made for; a re-registration
    /// since then (new epoch) wins and the entry is ignored.
    pub epoch: Revision,
    pub step: ExpiryStep,
}

impl Command {
    /// The leader-stamped time carried by the command.
    pub fn now(&self) -> Timestamp {
        match self {
            Command::Register(c) => c.now,
            Command::Deregister { now, .. }
            | Command::SetStatus { now, .. }
            | Command::SetHealth { now, .. }
            | Command::Checkpoint { now, .. }
            | Command::Expire { now, .. }
            | Command::Brake { now, .. }
            | Command::SetScalingPolicy { now, .. }
            | Command::CountDiscoveryRequests { now, .. } => *now,
            Command::Batch(cmds) => cmds.last().map_or(Timestamp(0), Command::now),
            Command::Format1(c) => c.now(),
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
            | Command::SetHealth { now, .. }
            | Command::Checkpoint { now, .. }
            | Command::Expire { now, .. }
            | Command::Brake { now, .. }
            | Command::SetScalingPolicy { now, .. }
            | Command::CountDiscoveryRequests { now, .. } => *now = at,
            Command::Batch(cmds) => cmds.iter_mut().for_each(|c| c.stamp(at)),
            Command::Format1(c) => c.stamp(at),
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register(_) => "register",
            Command::Deregister { .. } => "deregister",
            Command::SetStatus { .. } => "set_status",
            Command::SetHealth { .. } => "set_health",
            Command::Checkpoint { .. } => "checkpoint",
            Command::Expire { .. } => "expire",
            Command::Brake { .. } => "brake",
            Command::SetScalingPolicy { .. } => "set_scaling_policy",
            Command::Batch(_) => "batch",
            Command::CountDiscoveryRequests { .. } => "count_discovery_requests",
            Command::Format1(_) => "format1",
        }
    }

    /// Whether the leader may group this command with others into one
    /// [`Command::Batch`] entry: client changes only. The leader's liveness
    /// commands are already batches and are proposed on their own.
    pub fn groupable(&self) -> bool {
        matches!(
            self,
            Command::Register(_)
                | Command::Deregister { .. }
                | Command::SetStatus { .. }
                | Command::SetHealth { .. }
                | Command::SetScalingPolicy { .. }
                | Command::CountDiscoveryRequests { .. }
        )
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
    /// What an update keeps from the existing record instead of taking it
    /// from this command (the legacy routes carry only part of a record).
    pub keep: Keep,
    pub now: Timestamp,
}

/// Parts of an existing record that a registration keeps when it updates
/// the agent, instead of replacing them with the command's values (which
/// then serve only when the agent is created). The `/v1` API replaces the
/// whole record; a legacy route keeps what its body cannot carry, so an
/// existing agent re-registering through it does not lose the type, tags or
/// TTL an operator set through `/v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// `agent_type`, `runtime_id`, `version`, `description` and `tags`.
    pub profile: bool,
    /// `capabilities`.
    pub capabilities: bool,
    /// `metadata`.
    pub metadata: bool,
    /// `ttl_seconds`, `offline_after_seconds`, `deregister_after_seconds`.
    pub lease: bool,
}

/// What applying a command produced. Its variant order is the wire order of
/// forwarded answers (bincode): rename freely, never reorder.
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
    /// A liveness command (checkpoint, expiry, brake) or a count: how many
    /// of its entries changed something.
    EntriesApplied { applied: u64, skipped: u64 },
    /// A scaling policy after the change (`None`: removed) and whether one
    /// existed before.
    ScalingPolicy {
        policy: Option<ScalingPolicy>,
        existed: bool,
    },
    /// A [`Command::Batch`] (commands the leader grouped into one entry):
    /// each command's result, in order.
    Grouped(Vec<ItemResult>),
}

/// One command's outcome inside a [`Command::Batch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The registry revision right after this command was applied.
    pub revision: Revision,
    pub result: CommandResult,
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

/// Kind of a registry event: an agent `AGENT_REGISTERED`, `AGENT_UPDATED`,
/// `AGENT_DEREGISTERED`, `AGENT_STATUS_CHANGED` or `AGENT_EXPIRED`
/// (removed after missed heartbeats); a runtime's first agent
/// (`RUNTIME_JOINED`) or last one (`RUNTIME_LEFT`); the mass-expiry brake
/// `LIVENESS_BRAKE_ENGAGED` or `LIVENESS_BRAKE_RELEASED`; a scaling
/// advisory that came into force or cleared (`SCALING_ADVISORY`).
///
/// The wire name is the SCREAMING_SNAKE_CASE variant name: exact in JSON
/// (the event's `type`) and the server-sent event name; parsing it from text
/// (`FromStr`: the `type` filter of `GET /v1/events`, the command line)
/// ignores ASCII case.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(
    serialize_all = "SCREAMING_SNAKE_CASE",
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_event_kind
)]
pub enum EventKind {
    AgentRegistered,
    AgentUpdated,
    AgentDeregistered,
    AgentStatusChanged,
    AgentExpired,
    RuntimeJoined,
    RuntimeLeft,
    /// The mass-expiry brake engaged: offline transitions and removals held.
    LivenessBrakeEngaged,
    /// The brake released.
    LivenessBrakeReleased,
    /// A scaling advisory came into force or cleared.
    ScalingAdvisory,
}

fn unknown_event_kind(given: &str) -> UnknownName {
    UnknownName::new::<EventKind>("event type", given)
}

/// Why a change happened: `registration`, `operator` (an API call),
/// `agent_report` (the agent's own status or health), `deregistration`,
/// `missed_heartbeats`, `heartbeat` (e.g. one that revived an unhealthy
/// agent), `brake` or `scaling_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The agent was silent past a deadline.
    MissedHeartbeats,
    /// A heartbeat arrived (e.g. it revived an unhealthy agent).
    Heartbeat,
    /// The mass-expiry brake.
    Brake,
    /// A scaling policy's evaluation.
    ScalingPolicy,
}

/// One entry of the event log. Every event has its own revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// The revision of this change (the SSE event id).
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// What happened (the SSE event name).
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The agent concerned; null for brake events.
    #[schema(required = true)]
    pub agent_id: Option<AgentId>,
    /// Leader-stamped time of the command that produced the event.
    pub at: Timestamp,
    /// Why it happened.
    pub cause: Cause,
    /// The agent's status after the change, when it has one.
    #[serde(default)]
    #[schema(required = true)]
    pub status: Option<AgentStatus>,
    /// The agent's status before the change, when it had one.
    #[serde(default)]
    #[schema(required = true)]
    pub previous_status: Option<AgentStatus>,
    /// The agent's runtime (empty when none).
    #[serde(default)]
    #[schema(required = true)]
    pub runtime_id: String,
    /// Human-readable detail (brake events: how many agents were held).
    #[serde(default)]
    #[schema(required = true)]
    pub detail: String,
    /// Normalized capability names of the agent at the time of the event,
    /// so watchers can filter by capability even after the agent is gone.
    #[serde(default)]
    #[schema(required = true)]
    pub capabilities: Vec<String>,
    /// `SCALING_ADVISORY` events: the advisory that came into force or
    /// cleared (`in_force: false`). Null on every other event.
    #[serde(default)]
    #[schema(required = true)]
    pub advisory: Option<ScalingAdvisory>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every variant.
    fn every_kind() -> Vec<Command> {
        let id = AgentId::parse("a").unwrap();
        let t = Timestamp(1);
        vec![
            Command::Deregister {
                agent_id: id.clone(),
                now: t,
            },
            Command::SetStatus {
                agent_id: id.clone(),
                status: AgentStatus::Busy,
                now: t,
            },
            Command::SetHealth {
                agent_id: id,
                health_score: None,
                load_factor: None,
                metrics: BTreeMap::new(),
                now: t,
            },
            Command::Checkpoint {
                entries: vec![],
                heartbeats: 1,
                now: t,
            },
            Command::Expire {
                entries: vec![],
                now: t,
            },
            Command::Brake {
                engaged: true,
                held: 1,
                fleet: 2,
                now: t,
            },
            Command::SetScalingPolicy {
                capability: "c".into(),
                policy: None,
                now: t,
            },
            Command::CountDiscoveryRequests { count: 1, now: t },
            Command::Batch(vec![Command::CountDiscoveryRequests { count: 1, now: t }]),
            Command::Format1(Box::new(Command::Expire {
                entries: vec![],
                now: t,
            })),
        ]
    }

    #[test]
    fn the_leader_stamps_every_kind_and_nested_commands() {
        for mut c in every_kind() {
            c.stamp(Timestamp(99));
            assert_eq!(c.now(), Timestamp(99), "{}", c.kind());
            match &c {
                Command::Batch(inner) => assert!(inner.iter().all(|c| c.now() == Timestamp(99))),
                Command::Format1(inner) => assert_eq!(inner.now(), Timestamp(99)),
                _ => {}
            }
        }
    }

    #[test]
    fn only_client_changes_and_counts_are_grouped() {
        let grouped: Vec<&str> = every_kind()
            .iter()
            .filter(|c| c.groupable())
            .map(Command::kind)
            .collect();
        assert_eq!(
            grouped,
            [
                "deregister",
                "set_status",
                "set_health",
                "set_scaling_policy",
                "count_discovery_requests"
            ]
        );
        let mut kinds: Vec<&str> = every_kind().iter().map(Command::kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), every_kind().len(), "one name per kind");
    }
}
