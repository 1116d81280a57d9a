//! Public HTTP handlers (`/v1/...`, `/health/...`, and the routes existing
//! agent code already calls).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use registry_types::api::{
    AgentHealth, AgentList, AgentResponse, BatchHeartbeatRequest, BatchHeartbeatResponse,
    BatchHeartbeatResult, ClusterInfo, DeleteResponse, HealthUpdateRequest, HeartbeatRequest,
    HeartbeatResponse, NodeHealth, RegisterRequest, RegisterResponse, SearchResponse, Stats,
    StatusUpdateRequest,
};
use registry_types::command::{Keep, RegisterCommand, Rejection};
use registry_types::limits::{parse_agent_id, parse_status};
use registry_types::query::{ListFilter, ListPage, ReadOptions, SearchQuery};
use registry_types::{
    AgentId, AgentRecord, AgentStatus, Command, CommandResult, ErrorCode, Metadata, Timestamp,
};

use crate::auth::{authorize, authorize_heartbeat, Caller};
use crate::discovery::DiscoveryRequests;
use crate::error::{ApiError, ApiResult};
use crate::extract::{limit_within, JsonBody, OptionalJsonBody, Query};
use crate::liveness::{Beat, Liveness};
use crate::node::Node;
use crate::openapi::{
    AgentNotFound, BadRequest, BatchPayloadTooLarge, Conflict, HeartbeatAgentNotFound,
    HeartbeatUnavailable, Internal, PayloadTooLarge, ReadUnavailable, RegistryFull, WriteTimeout,
    WriteUnavailable,
};

/// Default page size of listings and searches.
pub const DEFAULT_PAGE: usize = 100;

/// An agent id from a path.
pub fn path_id(raw: &str) -> ApiResult<AgentId> {
    parse_agent_id("agent_id", raw).map_err(ApiError::from)
}

pub(crate) fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::NotFound { agent_id } => ApiError::not_found(agent_id.as_str()),
        Rejection::AlreadyExists { agent_id, revision } => ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "agent '{agent_id}' already exists (revision {revision}) and if_absent was set"
            ),
        ),
        Rejection::RevisionMismatch {
            agent_id,
            expected,
            actual,
        } => ApiError::new(
            ErrorCode::RevisionMismatch,
            format!("agent '{agent_id}' is at revision {actual}, not the expected {expected}"),
        ),
        // The state machine refused a command that broke the API's rules
        // (validation here normally keeps it out of the log).
        Rejection::Invalid { field, message } => ApiError::invalid(&field, message),
        Rejection::TokenExists { name } => {
            ApiError::invalid("name", format!("a token named '{name}' exists already"))
                .with_code(ErrorCode::AlreadyExists)
        }
        Rejection::TokenNotFound { id } => {
            ApiError::new(ErrorCode::TokenNotFound, format!("no token with id '{id}'"))
        }
        Rejection::Unauthenticated { message } => {
            ApiError::new(ErrorCode::Unauthenticated, message)
        }
        Rejection::Forbidden { message } => ApiError::new(ErrorCode::Forbidden, message),
    }
}

fn agent_result(result: CommandResult) -> ApiResult<(AgentRecord, bool)> {
    match result {
        CommandResult::Agent { record, created } => Ok((*record, created)),
        CommandResult::Rejected(r) => Err(rejection(r)),
        CommandResult::Removed { .. }
        | CommandResult::EntriesApplied { .. }
        | CommandResult::ScalingPolicy { .. }
        | CommandResult::Grouped(_)
        | CommandResult::Token { .. } => Err(ApiError::internal()),
    }
}

/// How a route's registrations map onto the record.
#[derive(Clone, Copy, Debug)]
pub struct RegisterRules {
    /// What an update keeps from the existing record.
    pub keep: Keep,
    /// Whether the agent may register itself as `offline` (the Dev-Tools
    /// client's `update_status("offline")` does), besides active, busy
    /// and degraded.
    pub may_register_offline: bool,
}

impl RegisterRules {
    /// `POST /v1/agents`: the body is the whole record.
    pub const V1: RegisterRules = RegisterRules {
        keep: Keep {
            profile: false,
            capabilities: false,
            metadata: false,
            lease: false,
        },
        may_register_offline: false,
    };
}

/// Turns a validated request into the command the leader will stamp.
pub fn register_command(
    node: &Node,
    mut req: RegisterRequest,
    rules: RegisterRules,
) -> ApiResult<Command> {
    // A card fills in what the request leaves out, before the request's
    // own checks (which then cover the mapped fields too).
    let card = crate::cards::take_card(node, &mut req)?;
    req.validate(&node.config.limits())?;
    let agent_id = match &req.agent_id {
        Some(id) => path_id(id)?,
        None => {
            AgentId::parse(&uuid::Uuid::new_v4().to_string()).map_err(|_| ApiError::internal())?
        }
    };
    let ttl = req.ttl_seconds.unwrap_or(node.config.default_ttl_seconds);
    let (_, el_max) = node.config.election_timeout_ms();
    if ttl == 0 || u64::from(ttl) * 1000 < 2 * el_max {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!(
                "ttl_seconds must be at least twice the election timeout ({} ms), got {ttl}",
                el_max
            ),
        ));
    }
    let offline = req
        .offline_after_seconds
        .unwrap_or(node.config.default_offline_after_seconds.max(ttl));
    if offline < ttl {
        return Err(ApiError::invalid(
            "offline_after_seconds",
            "offline_after_seconds must not be less than ttl_seconds",
        ));
    }
    // The node default never undercuts an offline time the agent chose.
    let deregister = req.deregister_after_seconds.unwrap_or(
        match node.config.default_deregister_after_seconds {
            0 => 0,
            d => d.max(offline),
        },
    );
    if deregister != 0 && deregister < offline {
        return Err(ApiError::invalid(
            "deregister_after_seconds",
            "deregister_after_seconds must be 0 (never) or not less than offline_after_seconds",
        ));
    }
    let status = parse_status("status", req.status.as_deref())?;
    let allowed = |s: AgentStatus| {
        s.is_agent_reportable() || (rules.may_register_offline && s == AgentStatus::Offline)
    };
    if let Some(s) = status.filter(|s| !allowed(*s)) {
        return Err(ApiError::invalid(
            "status",
            if rules.may_register_offline {
                format!("an agent may register as active, busy, degraded or offline, not {s}")
            } else {
                format!("an agent may register as active, busy or degraded, not {s}")
            },
        ));
    }
    let metadata = match req.metadata {
        Some(serde_json::Value::Object(m)) => Metadata(m),
        _ => Metadata::default(),
    };
    let register = Box::new(RegisterCommand {
        agent_id,
        name: req.name.unwrap_or_default().trim().to_string(),
        agent_type: req.agent_type.trim().to_string(),
        runtime_id: req.runtime_id.trim().to_string(),
        endpoint: req.endpoint.unwrap_or_default().trim().to_string(),
        version: req.version,
        description: req.description,
        capabilities: req.capabilities.into_iter().map(Into::into).collect(),
        tags: req.tags.into_iter().map(|t| t.trim().to_string()).collect(),
        metadata,
        status,
        health_score: req.health_score,
        load_factor: req.load_factor,
        performance_metrics: req.performance_metrics,
        ttl_seconds: ttl,
        offline_after_seconds: offline,
        deregister_after_seconds: deregister,
        if_absent: req.if_absent,
        expected_revision: req.expected_revision,
        keep: rules.keep,
        // Re-stamped by the leader when proposed.
        now: Timestamp::now(),
    });
    Ok(match card {
        Some(card) => Command::RegisterCard { register, card },
        None => Command::Register(register),
    })
}

/// Proposes a registration; the agent as it is after it, and whether it
/// was created.
pub async fn propose_register(
    node: &Node,
    caller: &Caller,
    cmd: Command,
) -> ApiResult<(AgentRecord, bool)> {
    agent_result(node.propose(authorize(node, caller, cmd)?).await?)
}

/// Register an agent.
///
/// Creates or replaces (upserts) an agent; a write, forwarded to the leader
/// when this node is not it. Re-registering refreshes `last_heartbeat` (a
/// registration counts as a heartbeat); a `suspended` agent stays suspended.
#[utoipa::path(
    post,
    path = "/v1/agents",
    operation_id = "registerAgent",
    tag = "agents",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Updated an existing agent (`created: false`).", body = RegisterResponse),
        (status = 201, description = "Created a new agent (`created: true`).", body = RegisterResponse),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
        (status = 507, response = RegistryFull),
    ),
)]
pub async fn register(
    State(node): State<Node>,
    caller: Caller,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> ApiResult<Response> {
    let cmd = register_command(&node, req, RegisterRules::V1)?;
    let (record, created) = propose_register(&node, &caller, cmd).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = RegisterResponse {
        success: true,
        agent_id: record.agent_id.clone(),
        created,
        revision: record.revision,
        agent: record,
    };
    Ok((status, Json(body)).into_response())
}

/// One record and the revision it was read at.
pub fn get_record(node: &Node, id: &AgentId) -> ApiResult<(AgentRecord, u64)> {
    let g = node.shared.read();
    let rec = g
        .registry
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(id.as_str()))?;
    Ok((rec, g.registry.revision()))
}

/// Get one agent.
///
/// Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`)."), ReadOptions),
    responses(
        (status = 200, description = "The agent.", body = AgentResponse),
        (status = 404, response = AgentNotFound),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn get_agent(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Path(id): Path<String>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<AgentResponse>> {
    let id = path_id(&id)?;
    node.read_gate(&read).await?;
    requests.served();
    let (agent, revision) = get_record(&node, &id)?;
    Ok(Json(AgentResponse { agent, revision }))
}

/// Deregister an agent.
///
/// A write, forwarded to the leader when this node is not it.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    operation_id = "deleteAgent",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    responses(
        (status = 200, description = "Removed.", body = DeleteResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = AgentNotFound),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn delete_agent(
    State(node): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeleteResponse>> {
    Ok(Json(deregister(&node, &caller, &id).await?))
}

/// Removes an agent through Raft.
pub async fn deregister(node: &Node, caller: &Caller, id: &str) -> ApiResult<DeleteResponse> {
    let agent_id = path_id(id)?;
    let cmd = Command::Deregister {
        agent_id,
        now: Timestamp::now(),
    };
    match node.propose(authorize(node, caller, cmd)?).await? {
        CommandResult::Removed { agent_id, revision } => Ok(DeleteResponse {
            success: true,
            agent_id,
            revision,
        }),
        CommandResult::Rejected(r) => Err(rejection(r)),
        CommandResult::Agent { .. }
        | CommandResult::EntriesApplied { .. }
        | CommandResult::ScalingPolicy { .. }
        | CommandResult::Grouped(_)
        | CommandResult::Token { .. } => Err(ApiError::internal()),
    }
}

/// Set an agent's status.
///
/// An operator's action (e.g. `suspended`): any status of the ladder is
/// accepted. A write.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/status",
    operation_id = "setAgentStatus",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    request_body = StatusUpdateRequest,
    responses(
        (status = 200, description = "The agent after the change.", body = AgentResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = AgentNotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn set_status(
    State(node): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<StatusUpdateRequest>,
) -> ApiResult<Json<AgentResponse>> {
    let agent_id = path_id(&id)?;
    let status = parse_status("status", Some(&req.status))?.ok_or_else(ApiError::internal)?;
    let cmd = Command::SetStatus {
        agent_id,
        status,
        now: Timestamp::now(),
    };
    let (agent, _) = agent_result(node.propose(authorize(&node, &caller, cmd)?).await?)?;
    Ok(Json(AgentResponse {
        revision: agent.revision,
        agent,
    }))
}

/// Report an agent's health, load and metrics.
///
/// A write (unlike a heartbeat, which carries the same report).
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/health",
    operation_id = "setAgentHealth",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    request_body = HealthUpdateRequest,
    responses(
        (status = 200, description = "The agent after the change.", body = AgentResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = AgentNotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn set_health(
    State(node): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<HealthUpdateRequest>,
) -> ApiResult<Json<AgentResponse>> {
    let agent_id = path_id(&id)?;
    let limits = node.config.limits();
    req.validate(&limits)?;
    // Checked against local state; a racing update can overshoot by at most
    // one request's worth.
    if let Some(current) = node.shared.read().registry.get(&agent_id) {
        registry_types::limits::check_merged_metrics(
            "metrics",
            &current.performance_metrics,
            None,
            &req.metrics,
            &limits,
        )?;
    }
    let cmd = Command::SetHealth {
        agent_id,
        health_score: req.health_score,
        load_factor: req.load_factor,
        metrics: req.metrics,
        now: Timestamp::now(),
    };
    let (agent, _) = agent_result(node.propose(authorize(&node, &caller, cmd)?).await?)?;
    Ok(Json(AgentResponse {
        revision: agent.revision,
        agent,
    }))
}

/// List agents, a page at a time.
///
/// Filters combine (AND). Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "listAgents",
    tag = "agents",
    params(
        ListFilter,
        ListPage,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "One page of agents, ordered by id.", body = AgentList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn list_agents(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(filter): Query<ListFilter>,
    Query(page): Query<ListPage>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<AgentList>> {
    let limit = limit_within(page.limit, DEFAULT_PAGE, registry_state::query::MAX_PAGE)?;
    let cursor = page.cursor;
    node.read_gate(&read).await?;
    requests.served();
    let g = node.shared.read();
    let (agents, next_cursor) = g.registry.list(&filter, cursor.as_deref(), limit);
    Ok(Json(AgentList {
        agents,
        next_cursor,
        revision: g.registry.revision(),
    }))
}

/// A capability search as the parameters ask; `default_status` applies
/// when they name no `status`.
pub async fn search(
    node: &Node,
    requests: &DiscoveryRequests,
    query: &SearchQuery,
    read: &ReadOptions,
    default_status: Option<AgentStatus>,
    default_limit: usize,
) -> ApiResult<SearchResponse> {
    let q = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::invalid("q", "q (the capability to search for) is required"))?
        .to_string();
    if q.len() > 512 {
        return Err(ApiError::invalid("q", "q is longer than 512 bytes"));
    }
    let status = query.status.or(default_status);
    let limit = limit_within(query.limit, default_limit, registry_state::query::MAX_PAGE)?;
    node.read_gate(read).await?;
    requests.served();
    crate::discovery::count_by_capability(node, [registry_state::index::normalize(&q).as_str()]);
    let g = node.shared.read();
    Ok(SearchResponse {
        matches: g.registry.search_capabilities(&q, status, limit),
        query: q,
        revision: g.registry.revision(),
    })
}

/// Search capabilities.
///
/// Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/v1/capabilities/search",
    operation_id = "searchCapabilities",
    tag = "discovery",
    params(
        SearchQuery,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "Matching capabilities, one entry per (agent, capability).", body = SearchResponse),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn search_capabilities(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(query): Query<SearchQuery>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<SearchResponse>> {
    Ok(Json(
        search(&node, &requests, &query, &read, None, DEFAULT_PAGE).await?,
    ))
}

/// Registry statistics.
#[utoipa::path(
    get,
    path = "/v1/stats",
    operation_id = "getStats",
    tag = "discovery",
    params(ReadOptions),
    responses(
        (status = 200, description = "Counts.", body = Stats),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn stats(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<Stats>> {
    node.read_gate(&read).await?;
    let mut stats = node.shared.read().registry.stats();
    stats.discovery_requests = requests.total(stats.discovery_requests);
    stats.service_discovery_requests = stats.discovery_requests;
    Ok(Json(stats))
}

/// This node's view of the cluster.
///
/// Always answered locally, at once.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "getCluster",
    tag = "cluster",
    responses(
        (status = 200, description = "Raft role, leader, indexes and members as this node sees them.", body = ClusterInfo),
    ),
)]
pub async fn cluster(
    State(node): State<Node>,
    State(membership): State<crate::membership::Membership>,
) -> Json<ClusterInfo> {
    let mut info = node.cluster_info();
    info.membership_change = membership.progress();
    Json(info)
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "cluster",
    responses(
        (status = 200, description = "The process serves HTTP (`status: live`).", body = NodeHealth),
    ),
)]
pub async fn live(State(node): State<Node>) -> Json<NodeHealth> {
    Json(NodeHealth {
        status: "live".into(),
        node_id: node.id,
        leader_id: node.leader().map(|(id, _)| id),
        reason: None,
    })
}

/// Readiness.
///
/// Ready when the node knows a leader and has applied everything that leader
/// had committed when asked.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "cluster",
    responses(
        (status = 200, description = "`status: ready`: a leader is known and this node has applied what it had committed.", body = NodeHealth),
        (status = 503, description = "`status: not_ready` with a `reason` (no leader known, or the read index failed). No `Retry-After`.", body = NodeHealth),
    ),
)]
pub async fn ready(State(node): State<Node>) -> Response {
    let leader = node.leader().map(|(id, _)| id);
    let reason = match leader {
        None => Some("no leader known".to_string()),
        Some(_) => node.linearize().await.err().map(|e| e.to_string()),
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = NodeHealth {
        status: if reason.is_none() {
            "ready"
        } else {
            "not_ready"
        }
        .into(),
        node_id: node.id,
        leader_id: leader,
        reason,
    };
    (status, Json(body)).into_response()
}

/// One agent's health.
///
/// The Dev-Tools client's `check_health`. `status` is `healthy` when the agent
/// is active, busy or degraded, otherwise its status name; `is_healthy` says
/// the same as a boolean. Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/health/{id}",
    operation_id = "getAgentHealth",
    tag = "discovery",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`)."), ReadOptions),
    responses(
        (status = 200, description = "The agent's health.", body = AgentHealth),
        (status = 404, response = AgentNotFound),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn agent_health(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Path(id): Path<String>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<AgentHealth>> {
    let id = path_id(&id)?;
    node.read_gate(&read).await?;
    requests.served();
    let (r, _) = get_record(&node, &id)?;
    let since_ms = Timestamp::now()
        .millis()
        .saturating_sub(r.last_heartbeat.millis());
    Ok(Json(AgentHealth {
        status: if r.status.is_healthy() {
            "healthy".to_string()
        } else {
            r.status.to_string()
        },
        is_healthy: r.status.is_healthy(),
        seconds_since_heartbeat: u64::try_from(since_ms / 1000).unwrap_or(0),
        agent_name: r.name,
        agent_id: r.agent_id,
        agent_status: r.status,
        last_heartbeat: r.last_heartbeat,
        health_score: r.health_score,
        load_factor: r.load_factor,
    }))
}

/// Prometheus metrics of this node.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format: `registry_*` (the node) and `agent_registry_*` (the names of the Dev-Tools registry's dashboards); listed in docs/operations.md.", content_type = "text/plain; version=0.0.4", body = String),
    ),
)]
pub async fn metrics(State(node): State<Node>) -> Response {
    node.observe_metrics();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        node.metrics.render(),
    )
        .into_response()
}

/// Heartbeat: renew an agent's lease.
///
/// Optionally with a status, health, load and metrics report. Not a Raft
/// write: any node accepts it (a follower forwards it to the leader, coalesced
/// with other heartbeats), the leader records it in memory and checkpoints it
/// within `--checkpoint-interval-ms` (1 s); reads show it after that
/// checkpoint. A heartbeat revives an `unhealthy` or `offline` agent to
/// `active` (or the reported status); a `suspended` agent stays suspended.
/// Idempotent: safe to retry.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/heartbeat",
    operation_id = "heartbeatAgent",
    tag = "liveness",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    request_body(content = Option<HeartbeatRequest>, description = "Optional: none, an empty body or `{}` is a plain heartbeat."),
    responses(
        (status = 200, description = "Recorded. Beat again after `next_heartbeat_ms`.", body = HeartbeatResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = HeartbeatAgentNotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = HeartbeatUnavailable),
    ),
)]
pub async fn heartbeat(
    State(node): State<Node>,
    caller: Caller,
    State(liveness): State<Liveness>,
    Path(id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let id = path_id(&id)?;
    let mut beat = Beat::from_request(req, &node.config.limits())?;
    beat.token = authorize_heartbeat(&node, &caller, &id)?;
    Ok(Json(liveness.heartbeat(id, beat).await?))
}

/// Most heartbeats in one `POST /v1/heartbeats`.
pub const MAX_BATCH_HEARTBEATS: usize = 10_000;

/// Heartbeats of many agents in one call.
///
/// For a runtime beating for all of its agents: each item is a heartbeat as
/// `POST /v1/agents/{id}/heartbeat` takes it, with its own result. An item with
/// a bad `agent_id`, status, score or metrics value, or an agent that is not
/// registered, gets `ok: false` and an `error`; the others are still recorded,
/// and the call answers 200. The whole call fails (503 `no_leader`) when the
/// cluster cannot take heartbeats. Body limit: the larger of
/// `--max-body-bytes` and 1 MiB.
#[utoipa::path(
    post,
    path = "/v1/heartbeats",
    operation_id = "heartbeatBatch",
    tag = "liveness",
    request_body = BatchHeartbeatRequest,
    responses(
        (status = 200, description = "One result per item, in request order.", body = BatchHeartbeatResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BatchPayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = HeartbeatUnavailable),
    ),
)]
pub async fn heartbeats(
    State(node): State<Node>,
    caller: Caller,
    State(liveness): State<Liveness>,
    JsonBody(req): JsonBody<BatchHeartbeatRequest>,
) -> ApiResult<Json<BatchHeartbeatResponse>> {
    if req.heartbeats.is_empty() || req.heartbeats.len() > MAX_BATCH_HEARTBEATS {
        return Err(ApiError::invalid(
            "heartbeats",
            format!(
                "give 1 to {MAX_BATCH_HEARTBEATS} heartbeats, got {}",
                req.heartbeats.len()
            ),
        ));
    }
    // A caller who may send no heartbeat at all is refused as a whole; one
    // whose scope leaves out some agents gets those items refused.
    crate::auth::may_heartbeat(&node, &caller)?;
    let limits = node.config.limits();
    let mut results: Vec<Option<BatchHeartbeatResult>> = Vec::with_capacity(req.heartbeats.len());
    let mut valid = Vec::new();
    for (i, item) in req.heartbeats.into_iter().enumerate() {
        let parsed = parse_agent_id("agent_id", &item.agent_id)
            .and_then(|id| Beat::from_request(item.heartbeat, &limits).map(|b| (id, b)))
            .map_err(ApiError::from)
            .and_then(|(id, mut b)| {
                b.token = authorize_heartbeat(&node, &caller, &id)?;
                Ok((id, b))
            });
        match parsed {
            Ok(v) => {
                valid.push((i, v));
                results.push(None);
            }
            Err(e) => results.push(Some(BatchHeartbeatResult {
                agent_id: item.agent_id,
                ok: false,
                heartbeat: None,
                error: Some(e.body.error),
            })),
        }
    }
    // Every valid heartbeat is submitted at once; on a follower they travel
    // to the leader together.
    let outcomes = futures::future::join_all(valid.into_iter().map(|(i, (id, beat))| {
        let liveness = liveness.clone();
        async move { (i, id.clone(), liveness.heartbeat(id, beat).await) }
    }))
    .await;
    for (i, id, outcome) in outcomes {
        results[i] = Some(match outcome {
            Ok(hb) => BatchHeartbeatResult {
                agent_id: id.to_string(),
                ok: true,
                heartbeat: Some(hb),
                error: None,
            },
            // The whole call fails when the cluster cannot take heartbeats.
            Err(e) if e.code().retryable() => return Err(e),
            Err(e) => BatchHeartbeatResult {
                agent_id: id.to_string(),
                ok: false,
                heartbeat: None,
                error: Some(e.body.error),
            },
        });
    }
    let results: Vec<BatchHeartbeatResult> = results.into_iter().flatten().collect();
    let accepted = results.iter().filter(|r| r.ok).count() as u64;
    Ok(Json(BatchHeartbeatResponse {
        rejected: results.len() as u64 - accepted,
        accepted,
        results,
    }))
}
