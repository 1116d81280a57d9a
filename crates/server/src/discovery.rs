//! Discovery handlers: `POST /v1/discover` and `GET /v1/select`, the
//! replicated discovery request counter, and the per-capability one of
//! `/metrics` with the task that chooses its labels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::debug;

use axum::extract::State;
use axum::Json;

use registry_state::discover::{
    normalize_all, normalize_binding, normalize_media_type, Discover, SortBy,
};
use registry_state::index::{normalize, words};
use registry_types::api::{CapabilityList, RuntimeDetail, RuntimeList};
use registry_types::api::{DiscoverHit, DiscoverRequest, DiscoverResponse};
use registry_types::limits::{check_unit, parse_status};
use registry_types::query::{ListPage, ReadOptions, SelectQuery, SelectStrategy};
use registry_types::{AgentRecord, AgentStatus, Command, ErrorBody, ErrorCode, Timestamp};

use crate::api::DEFAULT_PAGE;
use crate::error::{ApiError, ApiResult};
use crate::extract::{limit_within, JsonBody, Query};
use crate::metrics::DISCOVERY_LABELS;
use crate::node::Node;
use crate::openapi::{BadRequest, Internal, PayloadTooLarge, ReadUnavailable};

/// Largest `limit` of a discovery.
pub const MAX_LIMIT: usize = 1_000;

/// How often a node reports the discovery requests it served.
pub const COUNTER_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How often the capabilities with a discovery label of their own in
/// `/metrics` are chosen again (see [`crate::metrics::CapabilityRequests`]).
pub const LABEL_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Counts a capability discovery request (search, discover, select) in
/// `agent_registry_discovery_requests_total`: once for each distinct
/// capability it names (normalized), or once under `other` when it names
/// none (a discovery by text, tags, type or runtime only).
pub fn count_by_capability<'a>(node: &Node, capabilities: impl IntoIterator<Item = &'a str>) {
    let mut named: Vec<&str> = capabilities.into_iter().collect();
    named.sort_unstable();
    named.dedup();
    let counter = &node.metrics.discovery_by_capability;
    if named.is_empty() {
        counter.count_unnamed();
    }
    for c in named {
        counter.count(c);
    }
}

/// Chooses, every [`LABEL_REFRESH_INTERVAL`], the capabilities with a
/// discovery label of their own: the [`DISCOVERY_LABELS`] held by the most
/// agents in this node's registry. By agent count, not by requests: the
/// registry's own contents decide, so requests for made-up capabilities
/// (any client can send them) can neither grow the label set nor push the
/// real capabilities out of it. One pass over the distinct capability
/// names under the read lock, never over the agents.
fn spawn_label_refresh(node: Node) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LABEL_REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // One more than kept: `other` is never a label of its own.
            let top = node
                .shared
                .read()
                .registry
                .top_capabilities(DISCOVERY_LABELS + 1);
            node.metrics
                .discovery_by_capability
                .relabel(top.into_iter().map(|(name, _)| name));
        }
    });
}

/// Discovery requests (get, list, search, discover, select) served on this
/// node and not yet added to the replicated counter. Cheap to clone.
#[derive(Clone, Default)]
pub struct DiscoveryRequests(Arc<AtomicU64>);

impl DiscoveryRequests {
    /// A counter whose reports are sent through `node`: every
    /// [`COUNTER_REPORT_INTERVAL`], the requests served meanwhile are added
    /// to the replicated counter through Raft (a follower's report is
    /// forwarded to the leader like any write). A report that fails is
    /// dropped rather than retried, so a count is never added twice; at
    /// most one interval of one node's requests is lost around a failure or
    /// when the node stops.
    pub fn start(node: Node) -> DiscoveryRequests {
        spawn_label_refresh(node.clone());
        let counter = DiscoveryRequests::default();
        let unreported = counter.0.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COUNTER_REPORT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let count = unreported.swap(0, Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let cmd = Command::CountDiscoveryRequests {
                    count,
                    now: Timestamp::now(),
                };
                if let Err(e) = node.propose(cmd).await {
                    debug!(error = %e, count, "discovery count not reported");
                }
            }
        });
        counter
    }

    /// Counts one request served here.
    pub fn served(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Discovery requests served by the whole cluster as this node knows
    /// them: the replicated total plus its own unreported ones.
    pub fn total(&self, replicated: u64) -> u64 {
        replicated.saturating_add(self.0.load(Ordering::Relaxed))
    }
}

/// Round-robin positions of `GET /v1/select`, per capability, on this node.
#[derive(Default)]
pub struct RoundRobin(Mutex<HashMap<String, u64>>);

impl RoundRobin {
    fn next(&self, key: &str) -> u64 {
        let Ok(mut m) = self.0.lock() else { return 0 };
        let n = m.entry(key.to_string()).or_insert(0);
        *n = n.wrapping_add(1);
        *n - 1
    }
}

fn parse_statuses(v: Option<&[String]>) -> ApiResult<Vec<AgentStatus>> {
    match v {
        None => Ok(vec![AgentStatus::Active]),
        Some([]) => Err(ApiError::invalid(
            "status",
            "status must list at least one status",
        )),
        Some(list) => list
            .iter()
            .map(|s| {
                parse_status("status", Some(s))
                    .map_err(ApiError::from)
                    .and_then(|o| o.ok_or_else(ApiError::internal))
            })
            .collect(),
    }
}

/// Turns a request into a validated query.
pub fn build_query(req: &DiscoverRequest) -> ApiResult<Discover> {
    check_unit("min_health_score", req.min_health_score)?;
    check_unit("max_load_factor", req.max_load_factor)?;
    let limit = req.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let text_words: Vec<String> = {
        let mut w: Vec<String> = req
            .text
            .as_deref()
            .map(|t| words(t).collect())
            .unwrap_or_default();
        w.sort();
        w.dedup();
        w
    };
    if req.text.as_deref().is_some_and(|t| t.len() > 1024) {
        return Err(ApiError::invalid("text", "text is longer than 1024 bytes"));
    }
    let sort_by = match req.sort_by.as_deref() {
        None if text_words.is_empty() => SortBy::Performance,
        None => SortBy::Relevance,
        Some(s) => s
            .trim()
            .parse::<SortBy>()
            .map_err(|e| ApiError::invalid("sort_by", e.to_string()))?,
    };
    let q = Discover {
        capabilities: normalize_all(&req.capabilities),
        any_capabilities: normalize_all(&req.any_capabilities),
        text_words,
        tags: normalize_all(&req.tags),
        agent_type: req
            .agent_type
            .as_deref()
            .map(normalize)
            .filter(|s| !s.is_empty()),
        runtime_id: req
            .runtime_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        skills: card_terms("skills", &req.skills, |s| s.trim().to_string())?,
        input_modes: card_terms("input_modes", &req.input_modes, normalize_media_type)?,
        output_modes: card_terms("output_modes", &req.output_modes, normalize_media_type)?,
        bindings: card_terms("bindings", &req.bindings, normalize_binding)?,
        statuses: parse_statuses(req.status.as_deref())?,
        min_health_score: req.min_health_score.unwrap_or(0.5),
        max_load_factor: req.max_load_factor.unwrap_or(0.8),
        sort_by,
        limit,
        seed: rand::random(),
    };
    let no_terms = q.capabilities.is_empty()
        && q.any_capabilities.is_empty()
        && q.text_words.is_empty()
        && q.tags.is_empty()
        && q.agent_type.is_none()
        && q.runtime_id.is_none()
        && q.skills.is_empty()
        && q.input_modes.is_empty()
        && q.output_modes.is_empty()
        && q.bindings.is_empty();
    if no_terms {
        return Err(ApiError::invalid(
            "query",
            "give at least one of capabilities, any_capabilities, text, tags, agent_type, runtime_id, skills, input_modes, output_modes or bindings",
        ));
    }
    Ok(q)
}

/// Most entries in one of the card terms of a discovery (`skills`,
/// `input_modes`, `output_modes`, `bindings`).
const MAX_CARD_TERMS: usize = 64;

/// One list of card terms, normalized by `norm`: blanks refused (naming
/// the entry), duplicates dropped, at most [`MAX_CARD_TERMS`] entries of at
/// most 512 bytes.
fn card_terms(
    field: &str,
    given: &[String],
    norm: impl Fn(&str) -> String,
) -> ApiResult<Vec<String>> {
    if given.len() > MAX_CARD_TERMS {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} has {} entries; at most {MAX_CARD_TERMS} are allowed",
                given.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(given.len());
    for (i, g) in given.iter().enumerate() {
        let n = norm(g);
        if n.is_empty() || g.len() > 512 {
            return Err(ApiError::invalid(
                &format!("{field}[{i}]"),
                format!("{field}[{i}] must be 1 to 512 bytes, not blank"),
            ));
        }
        out.push(n);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Find agents, filtered and ranked.
///
/// By capabilities, text, tags, type and runtime, filtered by status, health
/// and load, ranked by the `sort_by` asked for. Counts as a discovery
/// request.
#[utoipa::path(
    post,
    path = "/v1/discover",
    operation_id = "discover",
    tag = "discovery",
    params(ReadOptions),
    request_body = DiscoverRequest,
    responses(
        (status = 200, description = "The agents, best first.", body = DiscoverResponse),
        (status = 413, response = PayloadTooLarge),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn discover(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(read): Query<ReadOptions>,
    JsonBody(req): JsonBody<DiscoverRequest>,
) -> ApiResult<Json<DiscoverResponse>> {
    let q = build_query(&req)?;
    node.read_gate(&read).await?;
    requests.served();
    count_by_capability(
        &node,
        q.capabilities
            .iter()
            .chain(&q.any_capabilities)
            .map(String::as_str),
    );
    let g = node.shared.read();
    // Only `explain` returns the filter counts, and only the full pass can
    // count; without it the ranked walk stops after `limit` hits.
    let (hits, counts) = if req.explain {
        let out = g.registry.discover(&q);
        (out.hits, Some(out.counts))
    } else {
        (g.registry.discover_hits(&q), None)
    };
    Ok(Json(DiscoverResponse {
        agents: hits
            .into_iter()
            .map(|(mut agent, why)| {
                let card_etag = agent.agent_card.as_ref().map(|c| c.etag().to_string());
                if !req.include_card {
                    agent.agent_card = None;
                }
                DiscoverHit {
                    agent,
                    card_etag,
                    explanation: req.explain.then_some(why),
                }
            })
            .collect(),
        sort_by: q.sort_by,
        filters: counts,
        revision: g.registry.revision(),
    }))
}

/// Exactly one agent to send work to.
///
/// Active, health >= 0.5 and load <= 0.8 by default (`min_health_score`,
/// `max_load_factor` override), chosen by `strategy`. Counts as a discovery
/// request.
#[utoipa::path(
    get,
    path = "/v1/select",
    operation_id = "selectAgent",
    tag = "discovery",
    params(
        SelectQuery,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "The selected agent (active, healthy and unloaded enough).", body = AgentRecord),
        (status = 404, description = "`no_agent_available`: no agent qualifies.", body = ErrorBody),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn select(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    State(round_robin): State<Arc<RoundRobin>>,
    Query(query): Query<SelectQuery>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<AgentRecord>> {
    let capability = query
        .capability
        .as_deref()
        .map(normalize)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid("capability", "capability is required"))?;
    let strategy = query.strategy.unwrap_or_default();
    let sort_by = match strategy {
        SelectStrategy::LeastLoaded => SortBy::Load,
        SelectStrategy::BestHealth => SortBy::Health,
        SelectStrategy::Random => SortBy::Random,
        SelectStrategy::RoundRobin => SortBy::Performance,
    };
    let unit = |name: &str, given: Option<f64>, default: f64| -> ApiResult<f64> {
        check_unit(name, given)?;
        Ok(given.unwrap_or(default))
    };
    let q = Discover {
        capabilities: vec![capability.clone()],
        any_capabilities: vec![],
        text_words: vec![],
        tags: vec![],
        agent_type: None,
        runtime_id: None,
        skills: vec![],
        input_modes: vec![],
        output_modes: vec![],
        bindings: vec![],
        statuses: vec![AgentStatus::Active],
        min_health_score: unit("min_health_score", query.min_health_score, 0.5)?,
        max_load_factor: unit("max_load_factor", query.max_load_factor, 0.8)?,
        sort_by,
        limit: if strategy == SelectStrategy::RoundRobin {
            MAX_LIMIT
        } else {
            1
        },
        seed: rand::random(),
    };
    node.read_gate(&read).await?;
    requests.served();
    count_by_capability(&node, [capability.as_str()]);
    let mut hits = node.shared.read().registry.discover_hits(&q);
    if strategy == SelectStrategy::RoundRobin {
        hits.sort_by(|a, b| a.0.agent_id.cmp(&b.0.agent_id));
        if !hits.is_empty() {
            let i = (round_robin.next(&capability) % hits.len() as u64) as usize;
            return Ok(Json(hits.swap_remove(i).0));
        }
    }
    hits.into_iter()
        .next()
        .map(|(r, _)| Json(r))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoAgentAvailable,
                format!(
                    "no active agent with capability '{capability}' is healthy and unloaded enough"
                ),
            )
        })
}

/// Capabilities with their agent counts by status, a page at a time.
///
/// Ordered by name; follow `next_cursor` for the next page.
#[utoipa::path(
    get,
    path = "/v1/capabilities",
    operation_id = "listCapabilities",
    tag = "discovery",
    params(ListPage, ReadOptions),
    responses(
        (status = 200, description = "One page of capabilities, by name.", body = CapabilityList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn capabilities(
    State(node): State<Node>,
    Query(page): Query<ListPage>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<CapabilityList>> {
    let limit = limit_within(page.limit, DEFAULT_PAGE, registry_state::query::MAX_PAGE)?;
    node.read_gate(&read).await?;
    let g = node.shared.read();
    let (capabilities, next_cursor) = g
        .registry
        .capability_summaries(page.cursor.as_deref(), limit);
    Ok(Json(CapabilityList {
        capabilities,
        next_cursor,
        revision: g.registry.revision(),
    }))
}

/// Runtimes with their agent counts by status, a page at a time.
///
/// Ordered by id; follow `next_cursor` for the next page.
#[utoipa::path(
    get,
    path = "/v1/runtimes",
    operation_id = "listRuntimes",
    tag = "discovery",
    params(ListPage, ReadOptions),
    responses(
        (status = 200, description = "One page of runtimes, by id.", body = RuntimeList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn runtimes(
    State(node): State<Node>,
    Query(page): Query<ListPage>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<RuntimeList>> {
    let limit = limit_within(page.limit, DEFAULT_PAGE, registry_state::query::MAX_PAGE)?;
    node.read_gate(&read).await?;
    let g = node.shared.read();
    let (runtimes, next_cursor) = g.registry.runtime_summaries(page.cursor.as_deref(), limit);
    Ok(Json(RuntimeList {
        runtimes,
        next_cursor,
        revision: g.registry.revision(),
    }))
}

/// One runtime's agents and counts.
#[utoipa::path(
    get,
    path = "/v1/runtimes/{id}",
    operation_id = "getRuntime",
    tag = "discovery",
    params(("id" = String, Path, description = "The runtime id."), ReadOptions),
    responses(
        (status = 200, description = "The runtime.", body = RuntimeDetail),
        (status = 404, description = "`not_found`: no agent runs in that runtime.", body = ErrorBody),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn runtime(
    State(node): State<Node>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<RuntimeDetail>> {
    node.read_gate(&read).await?;
    let g = node.shared.read();
    let (runtime, agents) = g.registry.runtime(&id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no agent runs in runtime '{id}'"),
        )
    })?;
    Ok(Json(registry_types::api::RuntimeDetail {
        runtime,
        agents,
        revision: g.registry.revision(),
    }))
}
