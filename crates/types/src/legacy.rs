//! Bodies of the routes that agent code written for two earlier registries
//! calls, in those registries' own shapes.
//!
//! - The Dev-Tools registry (FastAPI, port 8009): `POST /register`,
//!   `POST /agents/{id}/heartbeat`, `GET /agents`, `GET /agents/{id}`,
//!   `GET /capabilities/search`, `GET /health/{id}`, `GET /stats`.
//! - The configurable-agents registry: `POST /agents/register`,
//!   `POST /agents/{id}/heartbeat`, `DELETE /agents/{id}`,
//!   `GET /agents?include_dead=false`.
//!
//! Every answer is a superset of what those registries answered: the fields
//! their clients parse, with the same types, plus the registry's own. The
//! server maps records to these views in one place (`legacy.rs` there).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::{AgentRecord, AgentStatus, CostEstimate, Metadata};
use crate::api::{CapabilityInput, MatchKind};
use crate::ids::{AgentId, Revision, Timestamp};

/// Body of `POST /register` (Dev-Tools). `name` and `endpoint` are accepted
/// for `agent_name` and `base_url`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DevToolsRegisterRequest {
    /// The agent's id (see `AgentId`); required.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Display name (alias `name`): required when the agent is new.
    #[serde(default, alias = "name")]
    pub agent_name: Option<String>,
    /// Where the agent is reached (alias `endpoint`): required when the agent
    /// is new.
    #[serde(default, alias = "endpoint")]
    pub base_url: Option<String>,
    /// Replaces the capabilities when given; omitted: kept.
    #[serde(default)]
    pub capabilities: Option<Vec<CapabilityInput>>,
    /// `active` (default), `busy`, `degraded` or `offline`: how the
    /// Dev-Tools client's `update_status` sets a status.
    #[serde(default)]
    pub status: Option<String>,
    /// A JSON object or null.
    /// A JSON object or null. Omitted or null: kept.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Answer to `POST /register`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DevToolsRegisterResponse {
    /// Always `registered`.
    pub status: String,
    /// The agent.
    pub agent_id: AgentId,
    /// When the leader applied the registration.
    pub timestamp: Timestamp,
    /// True when the agent did not exist before.
    pub created: bool,
    /// The revision of this change.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Body of `POST /agents/register` (configurable-agents): the endpoint is
/// `http://{host}:{port}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostPortRegisterRequest {
    /// The agent's id (see `AgentId`); required.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Defaults to `agent_id`.
    #[serde(default)]
    pub agent_name: Option<String>,
    /// Host name or IP address (IPv6 with or without brackets); required.
    #[serde(default)]
    pub host: Option<String>,
    /// Port; required.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default 60, as in that registry.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// A JSON object or null. Omitted or null: kept.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// TTL of a `POST /agents/register` that gives none (that registry's
/// default).
pub const HOST_PORT_DEFAULT_TTL_SECONDS: u32 = 60;

/// TTL of an agent created by `POST /register` (or the node's default TTL
/// when longer): the Dev-Tools registry marked an agent offline after 60 s
/// without a heartbeat, and its clients beat every 30 s.
pub const DEVTOOLS_DEFAULT_TTL_SECONDS: u32 = 60;

/// An agent as the legacy routes show it: the whole record plus the fields
/// those registries named differently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LegacyAgent {
    /// Every field of the record.
    #[serde(flatten)]
    pub record: AgentRecord,
    /// = `name`.
    pub agent_name: String,
    /// = `endpoint`.
    pub base_url: String,
    /// The endpoint's host (without IPv6 brackets); the whole endpoint when
    /// it is not a URL with a host.
    pub host: String,
    /// The endpoint's port (the scheme's default when the URL names none;
    /// 0 when the endpoint is not a URL).
    pub port: u16,
    /// Every status but `unhealthy` and `offline` (where missed heartbeats,
    /// or an `offline` the agent announced, lead).
    pub is_alive: bool,
    /// = `registered_at`.
    pub created_at: Timestamp,
}

/// Answer to `POST /agents/{id}/heartbeat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LegacyHeartbeatResponse {
    /// Always `ok`.
    pub status: String,
    /// The agent.
    pub agent_id: AgentId,
    /// When the leader recorded the heartbeat.
    pub last_heartbeat: Timestamp,
    /// The agent's status once the heartbeat is checkpointed.
    pub agent_status: AgentStatus,
    /// The agent's TTL, in seconds.
    pub ttl_seconds: u32,
    /// When to beat next, in milliseconds.
    pub next_heartbeat_ms: u64,
}

/// Answer to `DELETE /agents/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LegacyDeleteResponse {
    /// Always `deleted`.
    pub status: String,
    /// The removed agent.
    pub agent_id: AgentId,
    /// Always true on a 2xx answer.
    pub success: bool,
    /// The revision of the removal.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// One item of `GET /capabilities/search`: one matching capability of one
/// agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LegacySearchHit {
    /// The agent that has the capability.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// The capability's name.
    pub capability: String,
    /// The capability's description.
    pub description: String,
    /// The agent's endpoint.
    pub base_url: String,
    /// = `base_url`.
    pub endpoint: String,
    /// The capability's tags.
    pub tags: Vec<String>,
    /// The agent's status.
    pub status: AgentStatus,
    /// As the agent gave it.
    #[schema(required = true)]
    pub cost_estimate: Option<CostEstimate>,
    /// The capability's parameters, as the agent gave them.
    pub parameters: Metadata,
    /// How the capability matched.
    pub match_kind: MatchKind,
}
