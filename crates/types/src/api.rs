//! HTTP request and response bodies (JSON), shared by the server and the client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::{AgentRecord, AgentStatus, Capability, CostEstimate, Metadata};
use crate::ids::{AgentId, NodeId, Revision, Timestamp};
use crate::query::SortBy;

/// A capability as submitted by an agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CapabilityInput {
    /// Required, not blank; at most 512 bytes; trimmed.
    pub name: String,
    /// At most 8 KiB (8192 bytes).
    #[serde(default)]
    pub description: String,
    /// At most 64 non-blank tags of at most 512 bytes each; trimmed.
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// The agent's id (see `AgentId`). When absent, the node generates a UUID
    /// v4 (so a retried request without an id may create a second agent).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Display name: required (or its alias `agent_name`), not blank, at most
    /// 512 bytes; trimmed.
    #[serde(default, alias = "agent_name")]
    pub name: Option<String>,
    /// Where the agent is reached, usually a URL: required (or its alias
    /// `base_url`), not blank, at most 512 bytes; trimmed.
    #[serde(default, alias = "base_url")]
    pub endpoint: Option<String>,
    /// Kind of agent, free-form; at most 512 bytes; trimmed.
    #[serde(default)]
    pub agent_type: String,
    /// The runtime (host, pod, process group) the agent runs in; at most 512
    /// bytes; trimmed.
    #[serde(default)]
    pub runtime_id: String,
    /// The agent's own version string; at most 512 bytes.
    #[serde(default)]
    pub version: String,
    /// What the agent does; at most 8 KiB (8192 bytes).
    #[serde(default)]
    pub description: String,
    /// What the agent can do; at most 128.
    #[serde(default)]
    pub capabilities: Vec<CapabilityInput>,
    /// Agent-level tags: at most 64 non-blank tags of at most 512 bytes;
    /// trimmed.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON object of at most 16 KiB (16384 bytes) as compact JSON, or null;
    /// anything else is a 400.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Initial status the agent reports (active, busy, degraded).
    #[serde(default)]
    pub status: Option<String>,
    /// 0 (dead) to 1 (perfect). Omitted on re-registration: kept.
    #[serde(default)]
    pub health_score: Option<f64>,
    /// 0 (idle) to 1 (saturated). Omitted on re-registration: kept.
    #[serde(default)]
    pub load_factor: Option<f64>,
    /// Named figures (alias `metrics`): at most 64 finite values, names at most
    /// 512 bytes. Omitted on re-registration: kept.
    #[serde(default, alias = "metrics")]
    pub performance_metrics: Option<BTreeMap<String, f64>>,
    /// Seconds without a heartbeat before the agent is marked unhealthy; at
    /// least twice the election timeout. Default: the node's `--default-ttl-
    /// seconds` (30).
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Seconds without a heartbeat before the agent is marked offline; not less
    /// than `ttl_seconds`. Default: the node's default (60), or `ttl_seconds`
    /// when longer.
    #[serde(default)]
    pub offline_after_seconds: Option<u32>,
    /// Seconds without a heartbeat before the agent is removed: 0 (never) or
    /// not less than `offline_after_seconds`. Default: the node's default.
    #[serde(default)]
    pub deregister_after_seconds: Option<u32>,
    /// Refuse (409 `already_exists`) when the id is taken.
    #[serde(default)]
    pub if_absent: bool,
    /// Refuse (409 `revision_mismatch`) unless the record is at this revision.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub expected_revision: Option<Revision>,
    /// The agent's A2A Agent Card (1.0, or 0.2/0.3 with a top-level `url`),
    /// kept verbatim. What the body leaves out is mapped from it: `name`,
    /// `endpoint` (the first interface's URL), `version`, `description` and
    /// `capabilities` (one per skill); fields given in the body win. A bad
    /// card is a 400 naming its JSON path (`agent_card.skills[2].id`); one
    /// larger than the node's `--max-card-bytes` (64 KiB) as canonical JSON
    /// a 413.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub agent_card: Option<serde_json::Value>,
}

/// Answer to a registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// Always true on a 2xx answer; kept for clients that check it.
    pub success: bool,
    /// The agent's id (generated when the request gave none).
    pub agent_id: AgentId,
    /// True when the agent did not exist before.
    pub created: bool,
    /// The revision of this change.
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// The record as it is after the registration.
    pub agent: AgentRecord,
}

/// Body of `PUT /v1/agents/{id}/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusUpdateRequest {
    /// Any status of the ladder (case-insensitive): an operator may set
    /// `suspended`, `deregistering`, `offline`, ...
    pub status: String,
}

/// Body of `PUT /v1/agents/{id}/health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthUpdateRequest {
    /// 0 (dead) to 1 (perfect); omitted: kept.
    #[serde(default)]
    pub health_score: Option<f64>,
    /// 0 (idle) to 1 (saturated); omitted: kept.
    #[serde(default)]
    pub load_factor: Option<f64>,
    /// Merged into `performance_metrics`: at most 64 finite values in all,
    /// names at most 512 bytes.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Answer to a status or health update, and to `GET /v1/agents/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentResponse {
    /// The record.
    pub agent: AgentRecord,
    /// On a read: the registry revision it was read at; on a change: the
    /// revision of the change.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Answer to `DELETE /v1/agents/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    /// Always true on a 2xx answer.
    pub success: bool,
    /// The removed agent.
    pub agent_id: AgentId,
    /// The revision of the removal.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Filters of `GET /v1/agents`: a query string, so defined with the other
/// query parameters.
pub use crate::query::ListFilter;

/// Answer to `GET /v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    /// One page of agents, ordered by agent id.
    pub agents: Vec<AgentRecord>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The registry revision the page was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// How a capability matched a search: `exact` (its name equals the
/// query), `tag` (one of its tags equals or contains it), `name` (its name
/// contains it) or `description` (its description contains it); best
/// first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CapabilityMatch {
    /// The agent that has the capability.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// The agent's status.
    pub status: AgentStatus,
    /// The agent's endpoint.
    pub endpoint: String,
    /// The matching capability.
    pub capability: Capability,
    /// The capability's cost estimate, as the agent gave it.
    #[serde(default)]
    #[schema(required = true)]
    pub cost_estimate: Option<CostEstimate>,
    /// How the capability matched.
    pub match_kind: MatchKind,
}

/// Answer to `GET /v1/capabilities/search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// The search text, trimmed.
    pub query: String,
    /// One item per matching capability, best matches first.
    pub matches: Vec<CapabilityMatch>,
    /// The registry revision the search was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Answer to `GET /v1/stats` (and `GET /stats`).
///
/// The counters (`health_checks_performed`, `failed_health_checks`,
/// `auto_scaling_events`, `service_discovery_requests`) are replicated
/// through Raft, so every node reports the same totals and they survive
/// leader changes and restarts. The fields other registries report default
/// to zero when an older server's answer lacks them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Agents registered now, whatever their status.
    pub total_agents: u64,
    /// Agents per status; statuses with no agent are absent.
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
    #[schema(required = true)]
    pub degraded_agents: u64,
    /// Agents registered now, whatever their status (= `total_agents`).
    #[serde(default)]
    #[schema(required = true)]
    pub registered_agents: u64,
    /// Heartbeats the leaders received, ever.
    #[serde(default)]
    #[schema(required = true)]
    pub health_checks_performed: u64,
    /// Liveness transitions caused by missed heartbeats, ever: each step to
    /// unhealthy, to offline and each removal counts once.
    #[serde(default)]
    #[schema(required = true)]
    pub failed_health_checks: u64,
    /// Scaling advisories that came into force, ever.
    #[serde(default)]
    #[schema(required = true)]
    pub auto_scaling_events: u64,
    /// Same as `discovery_requests` (the name other registries report).
    #[serde(default)]
    #[schema(required = true)]
    pub service_discovery_requests: u64,
    /// Same as `capability_distribution` (the name other registries report).
    #[serde(default)]
    #[schema(required = true)]
    pub capabilities_distribution: BTreeMap<String, u64>,
    /// Agents per band of reported health score: `0.0-0.2`, `0.2-0.4`,
    /// `0.4-0.6`, `0.6-0.8` (each including its lower bound only) and
    /// `0.8-1.0` (both bounds). Every band is present, zero or not.
    #[serde(default)]
    #[schema(required = true)]
    pub health_distribution: BTreeMap<String, u64>,
    /// The registry revision the figures were read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Raft role of a node as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Unknown,
}

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The member's Raft node id.
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    /// Address (HOST:PORT) the member is reached at.
    pub addr: String,
    /// Its role as the answering node sees it.
    pub role: NodeRole,
    /// Whether it votes (false: a learner).
    pub voter: bool,
    /// Answered by the leader: milliseconds since this member last
    /// answered one of its Raft messages; null elsewhere, for the leader
    /// itself, and for a member that never answered. A membership change
    /// counts a voter reachable when it answered within three election
    /// timeouts (1.8 s by default).
    #[serde(default)]
    #[schema(required = true)]
    pub last_answer_ms: Option<u64>,
}

/// Answer to `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    /// The answering node.
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    /// Its Raft role.
    pub role: NodeRole,
    /// The leader it knows of; null when none.
    #[schema(required = true)]
    #[schema(value_type = Option<u64>)]
    pub leader_id: Option<NodeId>,
    /// That leader's address; null when none.
    #[schema(required = true)]
    pub leader_addr: Option<String>,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last entry of its log.
    pub last_log_index: u64,
    /// Highest log index known committed (on the leader: by quorum; on a
    /// follower: as last told by the leader, bounded by what it applied).
    pub commit_index: u64,
    /// Index of the last entry it applied.
    pub applied_index: u64,
    /// Last log index covered by its snapshot; null when it has none.
    #[schema(required = true)]
    pub snapshot_index: Option<u64>,
    /// The registry revision applied on this node.
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// Every member of the cluster.
    pub members: Vec<Member>,
    /// Milliseconds since this node last heard from its leader.
    #[schema(required = true)]
    pub last_contact_ms: Option<u64>,
    /// The cluster's id (created when the cluster was bootstrapped); null
    /// on a node that has not joined one yet.
    #[serde(default)]
    #[schema(required = true)]
    pub cluster_id: Option<String>,
    /// How this node authenticates node-to-node requests.
    #[serde(default)]
    pub peer_auth: PeerAuthMode,
    /// This node's data directory disk.
    #[serde(default)]
    pub disk: DiskInfo,
    /// On the leader: the membership change in flight (node, phase,
    /// matched index against the target), or the last one, over; null
    /// elsewhere and before any.
    #[serde(default)]
    #[schema(required = true)]
    pub membership_change: Option<crate::membership::MembershipChange>,
}

/// Free space of a node's data directory, against the floor it keeps free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskInfo {
    /// Bytes free on the data directory's file system (last sampled, once a
    /// second).
    pub free_bytes: u64,
    /// Bytes the node keeps free (`--min-free-disk-mb`).
    pub min_free_bytes: u64,
    /// The node is short of space: below the floor, or a write failed for
    /// want of space and the disk has not had room since. As leader it
    /// refuses writes with 507 `no_space`; as follower it takes no new log
    /// entries (the leader retries them). Reads and heartbeats go on.
    pub no_space: bool,
}

/// How a node authenticates the requests of its peers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PeerAuthMode {
    /// Every request is signed with the cluster secret (HMAC-SHA256) and
    /// checked for freshness, replay, membership and cluster id.
    HmacSha256,
    /// Mutual TLS (`--peer-tls-*`): a request passes only on a connection
    /// whose client certificate the peer CA issued; requests are not
    /// signed (TLS keeps them from being altered or replayed); membership,
    /// source address and cluster id are still checked.
    MutualTls,
    /// Both: mutual TLS, and every request signed with the cluster secret.
    MutualTlsHmacSha256,
    /// `--insecure-peers`: requests are not signed; membership and cluster
    /// id are still checked, but anyone who can reach the port can claim to
    /// be a member.
    Insecure,
    /// A single node without a secret: it has no peers and refuses every
    /// node-to-node request.
    #[default]
    None,
}

/// Answer to `GET /health/{agent_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentHealth {
    /// The agent.
    pub agent_id: AgentId,
    /// The agent's name.
    #[serde(default)]
    #[schema(required = true)]
    pub agent_name: String,
    /// `healthy` when the agent is active, busy or degraded; otherwise its
    /// status name (unhealthy, offline, suspended, ...).
    pub status: String,
    /// Whether `status` is `healthy`.
    #[serde(default)]
    #[schema(required = true)]
    pub is_healthy: bool,
    /// The agent's status on the ladder.
    pub agent_status: AgentStatus,
    /// The last heartbeat the replicated record holds (heartbeats are
    /// checkpointed about once a second, so it may lag by that much).
    pub last_heartbeat: Timestamp,
    /// Whole seconds from `last_heartbeat` to the answering node's clock
    /// (0 when that clock is behind).
    #[serde(default)]
    #[schema(required = true)]
    pub seconds_since_heartbeat: u64,
    /// 0 (dead) to 1 (perfect), as last reported.
    pub health_score: f64,
    /// 0 (idle) to 1 (saturated), as last reported.
    pub load_factor: f64,
}

/// Answer to `GET /health/ready` and `GET /health/live`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeHealth {
    /// `live` (`/health/live`), `ready` or `not_ready` (`/health/ready`).
    pub status: String,
    /// The answering node.
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    /// The leader it knows of; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub leader_id: Option<NodeId>,
    /// Why the node is not ready (`not_ready` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `POST /v1/agents/{id}/heartbeat` (optional: an empty body is a
/// plain heartbeat).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    /// What the agent reports about itself: active, busy or degraded.
    #[serde(default)]
    pub status: Option<String>,
    /// 0 (dead) to 1 (perfect); omitted: kept.
    #[serde(default)]
    pub health_score: Option<f64>,
    /// 0 (idle) to 1 (saturated); omitted: kept.
    #[serde(default)]
    pub load_factor: Option<f64>,
    /// Merged into `performance_metrics`: at most 64 finite values in all,
    /// names at most 512 bytes. Not nullable.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The agent.
    pub agent_id: AgentId,
    /// The agent's status once this heartbeat is checkpointed.
    pub status: AgentStatus,
    /// The agent's TTL: silent this long, it is marked unhealthy.
    pub ttl_seconds: u32,
    /// When to beat next, in milliseconds: about a third of the TTL, with
    /// jitter so a fleet reconnecting after a failover spreads out.
    pub next_heartbeat_ms: u64,
    /// When the leader recorded this heartbeat (its clock). Absent from
    /// older servers' answers.
    #[serde(default)]
    #[schema(required = true)]
    pub last_heartbeat: Timestamp,
}

/// One agent's heartbeat inside `POST /v1/heartbeats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchHeartbeatItem {
    /// The agent's id (see `AgentId`). Required (a missing one fails the whole
    /// call with 400); an invalid one fails this item only.
    pub agent_id: String,
    /// The fields of a `HeartbeatRequest`, at the same level as `agent_id`.
    #[serde(flatten)]
    pub heartbeat: HeartbeatRequest,
}

/// Body of `POST /v1/heartbeats`: a runtime beating for all of its agents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchHeartbeatRequest {
    /// 1 to 10,000 heartbeats, one per agent.
    #[schema(min_items = 1, max_items = 10_000)]
    pub heartbeats: Vec<BatchHeartbeatItem>,
}

/// The result of one agent's heartbeat in a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchHeartbeatResult {
    /// The agent, as the request named it.
    pub agent_id: String,
    /// Whether this heartbeat was recorded.
    pub ok: bool,
    /// The heartbeat's answer when `ok`; null otherwise.
    #[serde(default)]
    #[schema(required = true)]
    pub heartbeat: Option<HeartbeatResponse>,
    /// Why it failed when not `ok`; null otherwise.
    #[serde(default)]
    #[schema(required = true)]
    pub error: Option<crate::error::ErrorDetail>,
}

/// Answer to `POST /v1/heartbeats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchHeartbeatResponse {
    /// One result per heartbeat, in the order of the request.
    pub results: Vec<BatchHeartbeatResult>,
    /// Heartbeats recorded.
    pub accepted: u64,
    /// Heartbeats refused (each result says why).
    pub rejected: u64,
}

/// Body of `POST /v1/discover`. At least one of `capabilities`,
/// `any_capabilities`, `text`, `tags`, `agent_type`, `runtime_id`,
/// `skills`, `input_modes`, `output_modes` or `bindings` is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// Capability names the agent must all have (case-insensitive).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Capability names of which the agent must have at least one.
    #[serde(default)]
    pub any_capabilities: Vec<String>,
    /// Free text over capability names, descriptions and tags, agent tags,
    /// and the skills of an agent's card (names, descriptions, tags,
    /// examples) and its provider's organization: an agent matches when it
    /// has at least one of the words; more matched words rank higher
    /// (`relevance`).
    #[serde(default)]
    pub text: Option<String>,
    /// Tags the agent must all carry (its own or one of its capabilities').
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only agents of this type (case-insensitive).
    #[serde(default)]
    pub agent_type: Option<String>,
    /// Only agents in this runtime (exact).
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// A2A skill ids (exact) the agent's card must all list.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Media types the agent must all accept: a type qualifies when one of
    /// the card's skills accepts it (its own `inputModes`, or the card's
    /// `defaultInputModes` for a skill without them). Wildcards match both
    /// ways: `text/*` asked matches `text/plain` declared and the reverse;
    /// `*/*` on either side matches every type. Parameters
    /// (`; charset=utf-8`) are ignored.
    #[serde(default)]
    pub input_modes: Vec<String>,
    /// Media types the agent must all produce, as `input_modes`.
    #[serde(default)]
    pub output_modes: Vec<String>,
    /// Protocol bindings (`JSONRPC`, `GRPC`, `HTTP+JSON`, case-insensitive)
    /// of which the agent's card must offer at least one interface.
    #[serde(default)]
    pub bindings: Vec<String>,
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
    /// Return each hit's A2A Agent Card in `agent.agent_card`. Default
    /// false: a hit names its card by `card_etag` only, and the card is
    /// fetched (and cached by that ETag) from
    /// `GET /v1/agents/{id}/agent-card.json`, so that a search with
    /// `limit` 10 over agents with 4 KiB cards answers a few KiB, not 40.
    #[serde(default)]
    pub include_card: bool,
}

/// Why one agent was returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoverExplanation {
    /// Capability names (normalized) that satisfied capability terms.
    pub matched_capabilities: Vec<String>,
    /// Words of `text` the agent carries.
    pub matched_words: Vec<String>,
    /// Share of the text's words the agent carries (0 to 1).
    pub relevance: f64,
    /// The ranking score: health, load and success figures combined.
    pub performance: f64,
}

/// One agent found by discovery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoverHit {
    /// The agent found. Its `agent_card` is null unless the request said
    /// `include_card`.
    pub agent: AgentRecord,
    /// The strong ETag of the agent's card (the one
    /// `GET /v1/agents/{id}/agent-card.json` answers with); null when the
    /// agent has no card.
    #[serde(default)]
    #[schema(required = true)]
    pub card_etag: Option<String>,
    /// Why it was returned (with `explain`; null otherwise).
    #[serde(default)]
    #[schema(required = true)]
    pub explanation: Option<DiscoverExplanation>,
}

/// How many candidates each filter removed (with `explain`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoverFilterCounts {
    /// Agents matching the terms, before filters.
    pub candidates: u64,
    /// Candidates whose status was not accepted.
    pub dropped_by_status: u64,
    /// Candidates below `min_health_score`.
    pub dropped_by_health: u64,
    /// Candidates above `max_load_factor`.
    pub dropped_by_load: u64,
    /// Agents that passed every filter (before `limit`).
    pub qualified: u64,
}

/// Answer to `POST /v1/discover`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoverResponse {
    /// The agents found, best first, at most `limit`.
    pub agents: Vec<DiscoverHit>,
    /// The order the agents are in (the request's, or the default).
    pub sort_by: SortBy,
    /// What each filter dropped (with `explain`; null otherwise).
    #[serde(default)]
    #[schema(required = true)]
    pub filters: Option<DiscoverFilterCounts>,
    /// The registry revision the discovery was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// One capability of `GET /v1/capabilities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CapabilitySummary {
    /// Normalized (lower-case) capability name.
    pub name: String,
    /// Agents that have it.
    pub agents: u64,
    /// Those agents per status; statuses with none are absent.
    pub by_status: BTreeMap<AgentStatus, u64>,
}

/// Answer to `GET /v1/capabilities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CapabilityList {
    /// One page of capabilities, by name.
    pub capabilities: Vec<CapabilitySummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The registry revision the list was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// One runtime and its agent counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeSummary {
    /// The runtime.
    pub runtime_id: String,
    /// Agents that run there.
    pub agents: u64,
    /// Those agents per status; statuses with none are absent.
    pub by_status: BTreeMap<AgentStatus, u64>,
}

/// Answer to `GET /v1/runtimes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeList {
    /// One page of runtimes, by id.
    pub runtimes: Vec<RuntimeSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The registry revision the list was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Answer to `GET /v1/runtimes/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeDetail {
    /// The runtime and its counts.
    pub runtime: RuntimeSummary,
    /// Its agents, by id.
    pub agents: Vec<AgentRecord>,
    /// The registry revision it was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Body of `POST /v1/cluster/leader`; an empty body is `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderHandoverRequest {
    /// The voter to hand leadership to; omitted: the voter whose log is
    /// furthest along.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub node_id: Option<NodeId>,
}

/// Answer to `POST /v1/cluster/leader`: leadership moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaderHandover {
    /// The node that led before.
    #[schema(value_type = u64)]
    pub previous_leader: NodeId,
    /// The node that leads now.
    #[schema(value_type = u64)]
    pub leader_id: NodeId,
    /// The new leader's term.
    pub term: u64,
    /// Milliseconds the previous leader held writes, linearizable reads and
    /// heartbeats back (they waited, then went to the new leader).
    pub paused_ms: u64,
}

/// One agent's card in `GET /v1/agent-cards`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentCardEntry {
    /// The agent.
    pub agent_id: AgentId,
    /// The agent's status now.
    pub status: AgentStatus,
    /// The card's strong ETag, as `GET /v1/agents/{id}/agent-card.json`
    /// sends it.
    pub etag: String,
    /// The card, verbatim.
    pub card: crate::card::AgentCard,
}

/// Answer to `GET /v1/agent-cards`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentCardList {
    /// One page of cards, by agent id.
    pub cards: Vec<AgentCardEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The registry revision the page was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}
