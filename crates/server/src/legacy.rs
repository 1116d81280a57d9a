//! The routes existing agent code calls, in the shapes of the registries it
//! was written for (see [`registry_types::legacy`]): the one place where
//! requests of those shapes become registry commands and records become
//! their views.
//!
//! | route | client | `/v1` equivalent |
//! | --- | --- | --- |
//! | `POST /register` | Dev-Tools `RegistryClient.register`, `update_status` | `POST /v1/agents` |
//! | `POST /agents/register` | configurable-agents `AgentRegistryClient.register` | `POST /v1/agents` |
//! | `POST /agents/{id}/heartbeat` | both | `POST /v1/agents/{id}/heartbeat` |
//! | `GET /agents`, `GET /agents/{id}` | both | `GET /v1/agents`, `GET /v1/agents/{id}` |
//! | `DELETE /agents/{id}` | configurable-agents `deregister` | `DELETE /v1/agents/{id}` |
//! | `GET /capabilities/search` | Dev-Tools `search_capabilities` | `GET /v1/capabilities/search` |
//!
//! A legacy registration updates only what its body carries: an agent that
//! re-registers through it keeps the type, runtime, tags, description (and,
//! per route, TTLs or capabilities) that were set through `/v1`.

use axum::extract::{Path, State};
use axum::Json;

use registry_types::api::{CapabilityMatch, HeartbeatRequest, RegisterRequest, Stats};
use registry_types::command::Keep;
use registry_types::legacy::{
    DevToolsRegisterRequest, DevToolsRegisterResponse, HostPortRegisterRequest, LegacyAgent,
    LegacyDeleteResponse, LegacyHeartbeatResponse, LegacySearchHit, DEVTOOLS_DEFAULT_TTL_SECONDS,
    HOST_PORT_DEFAULT_TTL_SECONDS,
};
use registry_types::query::{LegacyListOptions, ListFilter, ReadOptions, SearchQuery};
use registry_types::{AgentId, AgentRecord, AgentStatus};

use crate::api::{self, RegisterRules};
use crate::auth::Caller;
use crate::discovery::DiscoveryRequests;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJsonBody, Query};
use crate::liveness::{Beat, Liveness};
use crate::node::Node;
use crate::openapi::{
    AgentNotFound, BadRequest, HeartbeatAgentNotFound, HeartbeatUnavailable, Internal,
    PayloadTooLarge, ReadUnavailable, RegistryFull, WriteTimeout, WriteUnavailable,
};

/// Register an agent (Dev-Tools registry).
///
/// The Dev-Tools `RegistryClient`'s `register` and `update_status`: an upsert
/// of id, name, base URL, capabilities, status and metadata; the rest of an
/// existing record stays. Status may be `offline`. Always 200, `created`
/// telling whether the agent is new. A write; it counts as a heartbeat. `/v1`
/// equivalent: `POST /v1/agents`, which replaces the whole record.
#[utoipa::path(
    post,
    path = "/register",
    operation_id = "registerAgentCompat",
    tag = "compatibility",
    request_body = DevToolsRegisterRequest,
    responses(
        (status = 200, description = "Registered (created or updated).", body = DevToolsRegisterResponse),
        (status = 400, response = BadRequest),
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
    JsonBody(req): JsonBody<DevToolsRegisterRequest>,
) -> ApiResult<Json<DevToolsRegisterResponse>> {
    let agent_id = required_id(req.agent_id)?;
    let keep = Keep {
        profile: true,
        capabilities: req.capabilities.is_none(),
        metadata: req.metadata.as_ref().is_none_or(serde_json::Value::is_null),
        lease: true,
    };
    let v1 = RegisterRequest {
        agent_id: Some(agent_id),
        name: req.agent_name,
        endpoint: req.base_url,
        capabilities: req.capabilities.unwrap_or_default(),
        metadata: req.metadata,
        // That registry's default.
        status: Some(req.status.unwrap_or_else(|| "active".to_string())),
        // A new agent gets that registry's 60 s (its clients beat every
        // 30 s); an existing one keeps its lease.
        ttl_seconds: Some(DEVTOOLS_DEFAULT_TTL_SECONDS.max(node.config.default_ttl_seconds)),
        ..RegisterRequest::default()
    };
    let rules = RegisterRules {
        keep,
        may_register_offline: true,
    };
    let cmd = api::register_command(&node, v1, rules).map_err(|e| {
        rename_field(
            rename_field(e, "name", "agent_name"),
            "endpoint",
            "base_url",
        )
    })?;
    let (record, created) = api::propose_register(&node, &caller, cmd).await?;
    Ok(Json(DevToolsRegisterResponse {
        status: "registered".to_string(),
        agent_id: record.agent_id,
        timestamp: record.updated_at,
        created,
        revision: record.revision,
    }))
}

/// Register an agent by host and port (configurable-agents registry).
///
/// The configurable-agents `AgentRegistryClient.register`: an upsert whose
/// endpoint is `http://{host}:{port}`; capabilities and the rest of an
/// existing record stay. Always 200 with the agent. A write; it counts as a
/// heartbeat. `/v1` equivalent: `POST /v1/agents`.
#[utoipa::path(
    post,
    path = "/agents/register",
    operation_id = "registerAgentCompatAgents",
    tag = "compatibility",
    request_body = HostPortRegisterRequest,
    responses(
        (status = 200, description = "The agent as registered.", body = LegacyAgent),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
        (status = 507, response = RegistryFull),
    ),
)]
pub async fn register_host_port(
    State(node): State<Node>,
    caller: Caller,
    JsonBody(req): JsonBody<HostPortRegisterRequest>,
) -> ApiResult<Json<LegacyAgent>> {
    let agent_id = required_id(req.agent_id)?;
    let host = req
        .host
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::invalid("host", "host is required"))?;
    let port = req
        .port
        .ok_or_else(|| ApiError::invalid("port", "port is required"))?;
    let endpoint = host_port_url(&host, port)?;
    let keep = Keep {
        profile: true,
        capabilities: true,
        metadata: req.metadata.as_ref().is_none_or(serde_json::Value::is_null),
        lease: false,
    };
    let v1 = RegisterRequest {
        name: Some(req.agent_name.unwrap_or_else(|| agent_id.clone())),
        agent_id: Some(agent_id),
        endpoint: Some(endpoint),
        metadata: req.metadata,
        ttl_seconds: Some(req.ttl_seconds.unwrap_or(HOST_PORT_DEFAULT_TTL_SECONDS)),
        ..RegisterRequest::default()
    };
    let rules = RegisterRules {
        keep,
        may_register_offline: false,
    };
    let cmd = api::register_command(&node, v1, rules)
        .map_err(|e| rename_field(rename_field(e, "name", "agent_name"), "endpoint", "host"))?;
    let (record, _) = api::propose_register(&node, &caller, cmd).await?;
    Ok(Json(view(record)))
}

/// Heartbeat (both earlier registries).
///
/// As `POST /v1/agents/{id}/heartbeat`, except that it also reports the agent
/// `active` (as those registries' heartbeats did) unless its body reports
/// another status; an operator's `suspended` (and a `deregistering` agent)
/// stays. 404 `agent_not_found`: register again.
#[utoipa::path(
    post,
    path = "/agents/{id}/heartbeat",
    operation_id = "heartbeatAgentCompat",
    tag = "compatibility",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    request_body(content = Option<HeartbeatRequest>, description = "Optional: none, an empty body or `{}` is a plain heartbeat."),
    responses(
        (status = 200, description = "Recorded. Beat again after `next_heartbeat_ms`.", body = LegacyHeartbeatResponse),
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
) -> ApiResult<Json<LegacyHeartbeatResponse>> {
    let id = api::path_id(&id)?;
    let mut beat = Beat::from_request(req, &node.config.limits())?;
    beat.status = beat.status.or(Some(AgentStatus::Active));
    beat.token = crate::auth::authorize_heartbeat(&node, &caller, &id)?;
    let hb = liveness.heartbeat(id, beat).await?;
    Ok(Json(LegacyHeartbeatResponse {
        status: "ok".to_string(),
        agent_id: hb.agent_id,
        last_heartbeat: hb.last_heartbeat,
        agent_status: hb.status,
        ttl_seconds: hb.ttl_seconds,
        next_heartbeat_ms: hb.next_heartbeat_ms,
    }))
}

/// List agents as a bare array.
///
/// Every agent matching the filters (AND), ordered by id, as a JSON array (no
/// paging: `limit` caps it); with `include_dead=false` only live ones. Read
/// page by page, so the state lock is never held for the whole fleet. `/v1`
/// equivalent: `GET /v1/agents` (paged, wrapped, no `include_dead`).
#[utoipa::path(
    get,
    path = "/agents",
    operation_id = "listAgentsCompat",
    tag = "compatibility",
    params(
        ListFilter,
        LegacyListOptions,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "The agents, ordered by id.", body = Vec<LegacyAgent>),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn list(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(filter): Query<ListFilter>,
    Query(options): Query<LegacyListOptions>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<Vec<LegacyAgent>>> {
    let include_dead = options.include_dead.unwrap_or(true);
    let limit = match options.limit {
        None => usize::MAX,
        Some(0) => return Err(ApiError::invalid("limit", "limit must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    node.read_gate(&read).await?;
    requests.served();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    while out.len() < limit {
        let (page, next) = {
            let g = node.shared.read();
            g.registry
                .list(&filter, cursor.as_deref(), registry_state::query::MAX_PAGE)
        };
        out.extend(
            page.into_iter()
                .map(view)
                .filter(|a| include_dead || a.is_alive)
                .take(limit - out.len()),
        );
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(Json(out))
}

/// Get one agent as a bare object.
///
/// `/v1` equivalent: `GET /v1/agents/{id}` (wrapped in `{"agent", "revision"}`).
#[utoipa::path(
    get,
    path = "/agents/{id}",
    operation_id = "getAgentCompat",
    tag = "compatibility",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`)."), ReadOptions),
    responses(
        (status = 200, description = "The agent (no wrapper).", body = LegacyAgent),
        (status = 404, response = AgentNotFound),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn get(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Path(id): Path<String>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<LegacyAgent>> {
    let id = api::path_id(&id)?;
    node.read_gate(&read).await?;
    requests.served();
    Ok(Json(view(api::get_record(&node, &id)?.0)))
}

/// Deregister an agent (configurable-agents registry).
///
/// A write. `/v1` equivalent: `DELETE /v1/agents/{id}`.
#[utoipa::path(
    delete,
    path = "/agents/{id}",
    operation_id = "deleteAgentCompat",
    tag = "compatibility",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    responses(
        (status = 200, description = "Removed.", body = LegacyDeleteResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = AgentNotFound),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn delete(
    State(node): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<LegacyDeleteResponse>> {
    let done = api::deregister(&node, &caller, &id).await?;
    Ok(Json(LegacyDeleteResponse {
        status: "deleted".to_string(),
        agent_id: done.agent_id,
        success: done.success,
        revision: done.revision,
    }))
}

/// Search capabilities as a bare array (Dev-Tools registry).
///
/// One item per matching capability (name, tags or description contain `q`,
/// case-insensitively), of `active` agents unless `status` names another.
/// `/v1` equivalent: `GET /v1/capabilities/search?status=active`.
#[utoipa::path(
    get,
    path = "/capabilities/search",
    operation_id = "searchCapabilitiesCompat",
    tag = "compatibility",
    params(
        SearchQuery,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "The matches (no wrapper).", body = Vec<LegacySearchHit>),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn search(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(query): Query<SearchQuery>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<Vec<LegacySearchHit>>> {
    let found = api::search(
        &node,
        &requests,
        &query,
        &read,
        Some(AgentStatus::Active),
        registry_state::query::MAX_PAGE,
    )
    .await?;
    Ok(Json(found.matches.into_iter().map(hit).collect()))
}

/// Registry statistics (the Dev-Tools client's `get_stats`).
///
/// Same as `GET /v1/stats`.
#[utoipa::path(
    get,
    path = "/stats",
    operation_id = "getStatsCompat",
    tag = "compatibility",
    params(ReadOptions),
    responses(
        (status = 200, description = "Counts.", body = Stats),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn stats(
    node: State<Node>,
    requests: State<DiscoveryRequests>,
    read: Query<ReadOptions>,
) -> ApiResult<Json<Stats>> {
    api::stats(node, requests, read).await
}

/// An agent as the legacy routes show it.
pub fn view(record: AgentRecord) -> LegacyAgent {
    let (host, port) = host_and_port(&record.endpoint);
    LegacyAgent {
        agent_name: record.name.clone(),
        base_url: record.endpoint.clone(),
        host,
        port,
        is_alive: is_alive(record.status),
        created_at: record.registered_at,
        record,
    }
}

/// Whether an agent counts as alive for `is_alive` and
/// `include_dead=false`: every status but the two that missed heartbeats
/// (or an `offline` the agent announced) lead to.
pub fn is_alive(status: AgentStatus) -> bool {
    !matches!(status, AgentStatus::Unhealthy | AgentStatus::Offline)
}

/// A search match as the Dev-Tools client parses it.
pub fn hit(m: CapabilityMatch) -> LegacySearchHit {
    LegacySearchHit {
        agent_id: m.agent_id,
        agent_name: m.agent_name,
        capability: m.capability.name,
        description: m.capability.description,
        base_url: m.endpoint.clone(),
        endpoint: m.endpoint,
        tags: m.capability.tags,
        status: m.status,
        cost_estimate: m.cost_estimate,
        parameters: m.capability.parameters,
        match_kind: m.match_kind,
    }
}

/// The host (without IPv6 brackets) and port of an endpoint URL; the
/// scheme's default port when it names none. An endpoint that is not a URL
/// with a host gives itself and port 0.
pub fn host_and_port(endpoint: &str) -> (String, u16) {
    match url::Url::parse(endpoint) {
        Ok(u) => match u.host_str() {
            Some(h) => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                u.port_or_known_default().unwrap_or(0),
            ),
            None => (endpoint.to_string(), 0),
        },
        Err(_) => (endpoint.to_string(), 0),
    }
}

/// `http://{host}:{port}`, with an IPv6 host in brackets; refuses (field
/// `host`) a host that is not a host name or an IP address.
fn host_port_url(host: &str, port: u16) -> ApiResult<String> {
    // The longest DNS name.
    const MAX_HOST: usize = 253;
    let bad = || {
        ApiError::invalid(
            "host",
            format!("host must be a host name or an IP address, got '{host}'"),
        )
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.len() > MAX_HOST {
        return Err(ApiError::invalid(
            "host",
            format!(
                "host is {} bytes long; at most {MAX_HOST} are allowed",
                bare.len()
            ),
        ));
    }
    let url = if bare.contains(':') {
        format!("http://[{bare}]:{port}")
    } else {
        format!("http://{host}:{port}")
    };
    let u = url::Url::parse(&url).map_err(|_| bad())?;
    // Anything but a host (a path, user info, a query) came from the host.
    let only_host = u.host().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none()
        && u.port_or_known_default() == Some(port);
    if !only_host {
        return Err(bad());
    }
    Ok(url)
}

/// The `agent_id` both legacy bodies require.
fn required_id(id: Option<String>) -> ApiResult<String> {
    let id = id
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("agent_id", "agent_id is required"))?;
    AgentId::parse(&id).map_err(|e| ApiError::invalid("agent_id", e.to_string()))?;
    Ok(id)
}

/// Names a validation error's field as the legacy body calls it.
fn rename_field(mut e: ApiError, from: &str, to: &str) -> ApiError {
    let field = &mut e.body.error.field;
    if field.as_deref() == Some(from) {
        *field = Some(to.to_string());
        e.body.error.message = e.body.error.message.replacen(from, to, 1);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::VariantArray;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            host_and_port("http://feature-dev:8002"),
            ("feature-dev".into(), 8002)
        );
        assert_eq!(
            host_and_port("https://a.example"),
            ("a.example".into(), 443)
        );
        assert_eq!(host_and_port("http://[::1]:9000/x"), ("::1".into(), 9000));
        assert_eq!(host_and_port("grpc.internal"), ("grpc.internal".into(), 0));
        assert_eq!(
            host_and_port("unix:/run/a.sock"),
            ("unix:/run/a.sock".into(), 0)
        );
    }

    #[test]
    fn host_and_port_make_a_url_and_back() {
        for (host, port) in [
            ("localhost", 8000),
            ("10.0.0.7", 1),
            ("::1", 65535),
            ("agent-3.svc", 80),
        ] {
            let url = host_port_url(host, port).unwrap();
            assert_eq!(host_and_port(&url), (host.to_string(), port), "{url}");
        }
        assert_eq!(host_port_url("[::1]", 9).unwrap(), "http://[::1]:9");
        assert_eq!(
            host_port_url("0:0:0:0:0:0:0:1", 9).unwrap(),
            "http://[0:0:0:0:0:0:0:1]:9"
        );
        assert!(
            host_port_url(&"a".repeat(253), 1).is_ok(),
            "the longest DNS name"
        );
        let long = "a".repeat(254);
        for bad in [
            "a/b",
            "user@h",
            "a b",
            "h?x",
            "h#x",
            "a:b:c:zz",
            "h/",
            long.as_str(),
        ] {
            let e = host_port_url(bad, 80).unwrap_err();
            assert_eq!(e.body.error.field.as_deref(), Some("host"), "{bad}");
        }
    }

    #[test]
    fn legacy_bodies_require_a_valid_agent_id() {
        assert_eq!(
            required_id(Some("feature-dev".into())).unwrap(),
            "feature-dev"
        );
        for bad in [
            None,
            Some(String::new()),
            Some("  ".into()),
            Some("a b".into()),
        ] {
            let e = required_id(bad.clone()).unwrap_err();
            assert_eq!(e.body.error.field.as_deref(), Some("agent_id"), "{bad:?}");
        }
    }

    #[test]
    fn alive_is_every_status_but_unhealthy_and_offline() {
        for &s in AgentStatus::VARIANTS {
            assert_eq!(
                is_alive(s),
                !matches!(s, AgentStatus::Unhealthy | AgentStatus::Offline),
                "{s}"
            );
        }
    }

    #[test]
    fn only_the_named_field_is_renamed() {
        let e = rename_field(
            ApiError::invalid("name", "name is required"),
            "name",
            "agent_name",
        );
        assert_eq!(e.body.error.field.as_deref(), Some("agent_name"));
        assert_eq!(e.body.error.message, "agent_name is required");
        let e = rename_field(ApiError::invalid("tags", "name x"), "name", "agent_name");
        assert_eq!(e.body.error.field.as_deref(), Some("tags"));
        assert_eq!(e.body.error.message, "name x");
    }
}
