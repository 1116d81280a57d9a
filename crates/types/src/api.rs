//! HTTP request and response bodies (JSON), shared by the server and the client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRecord, AgentStatus, Capability, CostEstimate, Metadata};
use crate::ids::{AgentId, NodeId, Revision, Timestamp};
use crate::query::SortBy;

/// A capability as submitted by an agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A number or text, echoed back as given.
    #[serde(default)]
    pub cost_estimate: Option<CostEstimate>,
    /// A JSON object, kept verbatim; `null` is taken as `{}`.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

impl From<CapabilityInput> for Capability {
    fn from(c: CapabilityInput) -> Self {
        Capability {
            name: c.name.trim().to_string(),
            description: c.description,
            tags: c.tags.into_iter().map(|t| t.trim().to_string()).collect(),
            cost_estimate: c.cost_estimate,
            parameters: match c.parameters {
                Some(serde_json::Value::Object(m)) => Metadata(m),
                _ => Metadata::default(),
            },
        }
    }
}

/// Body of `POST /v1/agents` (and the legacy `POST /register`).
///
/// `agent_name` and `base_url` are accepted for `name` and `endpoint`.
/// Required-ness and limits are checked by [`RegisterRequest::validate`], so
/// that a missing field gets a clear message naming it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default, alias = "agent_name")]
    pub name: Option<String>,
    #[serde(default, alias = "base_url")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub agent_type: String,
    #[serde(default)]
    pub runtime_id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<CapabilityInput>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Initial status the agent reports (active, busy, degraded).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub health_score: Option<f64>,
    #[serde(default)]
    pub load_factor: Option<f64>,
    #[serde(default, alias = "metrics")]
    pub performance_metrics: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    #[serde(default)]
    pub offline_after_seconds: Option<u32>,
    #[serde(default)]
    pub deregister_after_seconds: Option<u32>,
    /// Refuse (409 `already_exists`) when the id is taken.
    #[serde(default)]
    pub if_absent: bool,
    /// Refuse (409 `revision_mismatch`) unless the record is at this revision.
    #[serde(default)]
    pub expected_revision: Option<Revision>,
}

/// Answer to a registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Always true on a 2xx answer; kept for clients that check it.
    pub success: bool,
    pub agent_id: AgentId,
    /// True when the agent did not exist before.
    pub created: bool,
    pub revision: Revision,
    pub agent: AgentRecord,
}

/// Body of `PUT /v1/agents/{id}/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdateRequest {
    pub status: String,
}

/// Body of `PUT /v1/agents/{id}/health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthUpdateRequest {
    #[serde(default)]
    pub health_score: Option<f64>,
    #[serde(default)]
    pub load_factor: Option<f64>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Answer to a status or health update, and to `GET /v1/agents/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentResponse {
    pub agent: AgentRecord,
    pub revision: Revision,
}

/// Answer to `DELETE /v1/agents/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub success: bool,
    pub agent_id: AgentId,
    pub revision: Revision,
}

/// Filters of `GET /v1/agents`: a query string, so defined with the other
/// query parameters.
pub use crate::query::ListFilter;

/// Answer to `GET /v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentRecord>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub revision: Revision,
}

/// How a capability matched a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The capability name equals the query.
    Exact,
    /// One of the capability's tags equals or contains the query.
    Tag,
    /// The capability name contains the query.
    Name,
    /// The capability description contains the query.
    Description,
}

/// One hit of `GET /v1/capabilities/search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilityMatch {
    pub agent_id: AgentId,
    pub agent_name: String,
    pub status: AgentStatus,
    pub endpoint: String,
    pub capability: Capability,
    /// The capability's cost estimate, as the agent gave it.
    #[serde(default)]
    pub cost_estimate: Option<CostEstimate>,
    pub match_kind: MatchKind,
}

/// Answer to `GET /v1/capabilities/search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub query: String,
    pub matches: Vec<CapabilityMatch>,
    pub revision: Revision,
}

/// Answer to `GET /v1/stats` (and `GET /stats`).
///
/// The counters (`health_checks_performed`, `failed_health_checks`,
/// `auto_scaling_events`, `service_discovery_requests`) are replicated
/// through Raft, so every node reports the same totals and they survive
/// leader changes and restarts. The fields other registries report default
/// to zero when an older server's answer lacks them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub total_agents: u64,
    pub agents_by_status: BTreeMap<AgentStatus, u64>,
    /// Registrations that created an agent, ever (not decreased by removals).
    pub total_registrations: u64,
    /// Capabilities over all agents.
    pub total_capabilities: u64,
    /// Agents per capability name (normalized, lower case).
    pub capability_distribution: BTreeMap<String, u64>,
    /// Discovery requests (list, search, get, discover, select) served by
    /// the whole cluster: the replicated total plus what the answering node
    /// served since it last reported (nodes report every few seconds).
    pub discovery_requests: u64,
    /// Agents whose status is `active`.
    pub active_agents: u64,
    /// Agents whose status is `offline`.
    pub offline_agents: u64,
    /// Agents whose status is `degraded`.
    #[serde(default)]
    pub degraded_agents: u64,
    /// Agents registered now, whatever their status (= `total_agents`).
    #[serde(default)]
    pub registered_agents: u64,
    /// Heartbeats the leaders received, ever.
    #[serde(default)]
    pub health_checks_performed: u64,
    /// Liveness transitions caused by missed heartbeats, ever: each step to
    /// unhealthy, to offline and each removal counts once.
    #[serde(default)]
    pub failed_health_checks: u64,
    /// Scaling advisories that came into force, ever.
    #[serde(default)]
    pub auto_scaling_events: u64,
    /// Same as `discovery_requests` (the name other registries report).
    #[serde(default)]
    pub service_discovery_requests: u64,
    /// Same as `capability_distribution` (the name other registries report).
    #[serde(default)]
    pub capabilities_distribution: BTreeMap<String, u64>,
    /// Agents per band of reported health score: `0.0-0.2`, `0.2-0.4`,
    /// `0.4-0.6`, `0.6-0.8` (each including its lower bound only) and
    /// `0.8-1.0` (both bounds). Every band is present, zero or not.
    #[serde(default)]
    pub health_distribution: BTreeMap<String, u64>,
    pub revision: Revision,
}

/// Raft role of a node as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Unknown,
}

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: NodeId,
    pub addr: String,
    pub role: NodeRole,
    pub voter: bool,
}

/// Answer to `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub node_id: NodeId,
    pub role: NodeRole,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub term: u64,
    pub last_log_index: u64,
    /// Highest log index known committed (on the leader: by quorum; on a
    /// follower: as last told by the leader, bounded by what it applied).
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    /// The registry revision applied on this node.
    pub revision: Revision,
    pub members: Vec<Member>,
    /// Milliseconds since this node last heard from its leader.
    pub last_contact_ms: Option<u64>,
}

/// Answer to `GET /health/{agent_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub agent_id: AgentId,
    #[serde(default)]
    pub agent_name: String,
    /// `healthy` when the agent is active, busy or degraded; otherwise its
    /// status name (unhealthy, offline, suspended, ...).
    pub status: String,
    /// Whether `status` is `healthy`.
    #[serde(default)]
    pub is_healthy: bool,
    pub agent_status: AgentStatus,
    /// The last heartbeat the replicated record holds (heartbeats are
    /// checkpointed about once a second, so it may lag by that much).
    pub last_heartbeat: Timestamp,
    /// Whole seconds from `last_heartbeat` to the answering node's clock
    /// (0 when that clock is behind).
    #[serde(default)]
    pub seconds_since_heartbeat: u64,
    pub health_score: f64,
    pub load_factor: f64,
}

/// Answer to `GET /health/ready` and `GET /health/live`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub status: String,
    pub node_id: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `POST /v1/agents/{id}/heartbeat` (optional: an empty body is a
/// plain heartbeat).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// What the agent reports about itself: active, busy or degraded.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub health_score: Option<f64>,
    #[serde(default)]
    pub load_factor: Option<f64>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub agent_id: AgentId,
    /// The agent's status once this heartbeat is checkpointed.
    pub status: AgentStatus,
    pub ttl_seconds: u32,
    /// When to beat next, in milliseconds: about a third of the TTL, with
    /// jitter so a fleet reconnecting after a failover spreads out.
    pub next_heartbeat_ms: u64,
    /// When the leader recorded this heartbeat (its clock). Absent from
    /// older servers' answers.
    #[serde(default)]
    pub last_heartbeat: Timestamp,
}

/// One agent's heartbeat inside `POST /v1/heartbeats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatItem {
    pub agent_id: String,
    #[serde(flatten)]
    pub heartbeat: HeartbeatRequest,
}

/// Body of `POST /v1/heartbeats`: a runtime beating for all of its agents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatRequest {
    pub heartbeats: Vec<BatchHeartbeatItem>,
}

/// The result of one agent's heartbeat in a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatResult {
    pub agent_id: String,
    pub ok: bool,
    #[serde(default)]
    pub heartbeat: Option<HeartbeatResponse>,
    #[serde(default)]
    pub error: Option<crate::error::ErrorDetail>,
}

/// Answer to `POST /v1/heartbeats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatResponse {
    pub results: Vec<BatchHeartbeatResult>,
    pub accepted: u64,
    pub rejected: u64,
}

/// Body of `POST /v1/discover`. At least one of `capabilities`,
/// `any_capabilities`, `text`, `tags`, `agent_type` or `runtime_id` is
/// required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// Capability names the agent must all have (case-insensitive).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Capability names of which the agent must have at least one.
    #[serde(default)]
    pub any_capabilities: Vec<String>,
    /// Free text over capability names, descriptions and tags, and agent
    /// tags: an agent matches when it has at least one of the words; more
    /// matched words rank higher (`relevance`).
    #[serde(default)]
    pub text: Option<String>,
    /// Tags the agent must all carry (its own or one of its capabilities').
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// Statuses accepted; default `["active"]`.
    #[serde(default)]
    pub status: Option<Vec<String>>,
    /// Default 0.5.
    #[serde(default)]
    pub min_health_score: Option<f64>,
    /// Default 0.8.
    #[serde(default)]
    pub max_load_factor: Option<f64>,
    /// `performance` (default without text), `health`, `load`, `random`,
    /// `relevance` (default with text).
    #[serde(default)]
    pub sort_by: Option<String>,
    /// Default 10, at most 1,000.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Add why each agent matched, its score, and what each filter dropped.
    #[serde(default)]
    pub explain: bool,
}

/// Why one agent was returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoverExplanation {
    /// Capability names (normalized) that satisfied capability terms.
    pub matched_capabilities: Vec<String>,
    /// Words of `text` the agent carries.
    pub matched_words: Vec<String>,
    pub relevance: f64,
    pub performance: f64,
}

/// One agent found by discovery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoverHit {
    pub agent: AgentRecord,
    #[serde(default)]
    pub explanation: Option<DiscoverExplanation>,
}

/// How many candidates each filter removed (with `explain`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoverFilterCounts {
    /// Agents matching the terms, before filters.
    pub candidates: u64,
    pub dropped_by_status: u64,
    pub dropped_by_health: u64,
    pub dropped_by_load: u64,
    /// Agents that passed every filter (before `limit`).
    pub qualified: u64,
}

/// Answer to `POST /v1/discover`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoverResponse {
    pub agents: Vec<DiscoverHit>,
    /// The order the agents are in (the request's, or the default).
    pub sort_by: SortBy,
    #[serde(default)]
    pub filters: Option<DiscoverFilterCounts>,
    pub revision: Revision,
}

/// One capability of `GET /v1/capabilities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySummary {
    /// Normalized (lower-case) capability name.
    pub name: String,
    pub agents: u64,
    pub by_status: BTreeMap<AgentStatus, u64>,
}

/// Answer to `GET /v1/capabilities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilityList {
    pub capabilities: Vec<CapabilitySummary>,
    pub revision: Revision,
}

/// One runtime and its agent counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeSummary {
    pub runtime_id: String,
    pub agents: u64,
    pub by_status: BTreeMap<AgentStatus, u64>,
}

/// Answer to `GET /v1/runtimes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeList {
    pub runtimes: Vec<RuntimeSummary>,
    pub revision: Revision,
}

/// Answer to `GET /v1/runtimes/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeDetail {
    pub runtime: RuntimeSummary,
    pub agents: Vec<AgentRecord>,
    pub revision: Revision,
}
