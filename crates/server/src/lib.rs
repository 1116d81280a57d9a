//! The agent registry node.
//!
//! Dependencies point one way: the core knows nothing of what builds on it,
//! and the HTTP edge knows everything.
//!
//! The core:
//! - [`config`]: flags and environment variables, validated before start.
//! - [`node`]: storage + Raft wiring, bootstrap, the write path (proposed
//!   here or forwarded to the leader) and the read path (the read gate:
//!   coalesced read index, bounded waits); its errors are `WriteError` and
//!   `ReadError`.
//! - [`group_commit`]: the leader's queue of client writes, proposed in
//!   rounds, and a follower's queue of writes for the leader.
//! - [`coalesce`]: one request coalescer (read-index rounds, forwarded
//!   heartbeats).
//! - [`metrics`]: Prometheus metrics, served at `/metrics`.
//!
//! Built on the core, each holding a [`Node`]:
//! - [`liveness`]: heartbeats, checkpoints, sweeps and the brake.
//! - [`election`]: the elector (pre-vote, then openraft's election).
//! - [`discovery`]: `POST /v1/discover`, `GET /v1/select`, capability and
//!   runtime summaries, and the discovery request counter.
//!
//! The HTTP edge:
//! - [`api`]: public handlers; [`events`]: the change stream; [`scaling`]:
//!   scaling policies and advisories; [`legacy`]: the routes existing agent
//!   code calls, in the shapes of the registries it was written for.
//! - [`extract`]: body and query parsing that turns bad input into clear
//!   errors; [`error`]: the one error type of the edge, with the
//!   conversions from the core's errors.
//! - [`internal`]: Raft RPC and node-to-node routes (bincode).
//! - [`openapi`]: the OpenAPI document served at `/openapi.json`.
//! - [`AppState`] gives each handler the parts it names ([`axum::extract::FromRef`]).

pub mod api;
pub mod coalesce;
pub mod config;
pub mod discovery;
pub mod election;
pub mod error;
pub mod events;
pub mod extract;
pub mod group_commit;
pub mod internal;
pub mod legacy;
pub mod liveness;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod scaling;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use registry_types::{ErrorCode, HEADER_LAST_CONTACT, HEADER_LEADER, HEADER_NODE, HEADER_REVISION};

pub use config::Config;
pub use error::ApiError;
pub use node::{Node, StartError};

/// Everything the router's handlers draw on; each handler takes the parts
/// it uses (`State<Node>`, `State<Liveness>`, ...). Cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub node: Node,
    pub liveness: liveness::Liveness,
    pub elector: election::Elector,
    pub discovery_requests: discovery::DiscoveryRequests,
    pub round_robin: Arc<discovery::RoundRobin>,
}

/// Starts a node: its core (storage, Raft, bootstrap), then what builds on
/// it (liveness, the elector, the discovery request reports).
pub async fn start(config: Config) -> Result<AppState, StartError> {
    let node = Node::start(config).await?;
    Ok(AppState {
        liveness: liveness::Liveness::start(node.clone()),
        elector: election::Elector::start(node.clone()),
        discovery_requests: discovery::DiscoveryRequests::start(node.clone()),
        round_robin: Arc::default(),
        node,
    })
}

/// Largest internal request (Raft append batches, snapshot chunks).
const INTERNAL_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Builds the full router of a node: public API, internal routes, fallbacks
/// and the middleware that stamps every response with the node's position.
pub fn router(state: AppState) -> Router {
    let node = &state.node;
    let public = Router::new()
        .route("/v1/agents", post(api::register).get(api::list_agents))
        .route(
            "/v1/agents/{id}",
            get(api::get_agent).delete(api::delete_agent),
        )
        .route("/v1/agents/{id}/status", put(api::set_status))
        .route("/v1/agents/{id}/health", put(api::set_health))
        .route("/v1/agents/{id}/heartbeat", post(api::heartbeat))
        .route("/agents/{id}/heartbeat", post(legacy::heartbeat))
        .route("/v1/capabilities/search", get(api::search_capabilities))
        .route("/v1/stats", get(api::stats))
        .route("/v1/cluster", get(api::cluster))
        .route("/v1/events", get(events::events))
        .route("/v1/discover", post(discovery::discover))
        .route("/v1/select", get(discovery::select))
        .route("/v1/capabilities", get(discovery::capabilities))
        .route("/v1/runtimes", get(discovery::runtimes))
        .route("/v1/runtimes/{id}", get(discovery::runtime))
        .route("/v1/scaling/policies", get(scaling::list_policies))
        .route(
            "/v1/scaling/policies/{capability}",
            put(scaling::put_policy)
                .get(scaling::get_policy)
                .delete(scaling::delete_policy),
        )
        .route("/v1/scaling/advisories", get(scaling::advisories))
        .route("/health/live", get(api::live))
        .route("/health/ready", get(api::ready))
        .route("/health/{id}", get(api::agent_health))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(api::metrics))
        // Routes existing agent code already calls, in its shapes.
        .route("/register", post(legacy::register))
        .route("/agents/register", post(legacy::register_host_port))
        .route("/agents", get(legacy::list))
        .route("/agents/{id}", get(legacy::get).delete(legacy::delete))
        .route("/capabilities/search", get(legacy::search))
        .route("/stats", get(api::stats))
        .layer(DefaultBodyLimit::max(node.config.max_body_bytes));
    // A runtime beating for thousands of agents needs more than one record's
    // worth of body.
    let batches = Router::new()
        .route("/v1/heartbeats", post(api::heartbeats))
        .layer(DefaultBodyLimit::max(
            node.config.max_body_bytes.max(1024 * 1024),
        ));
    let internal = Router::new()
        .route("/internal/raft/append", post(internal::append))
        .route("/internal/raft/vote", post(internal::vote))
        .route("/internal/raft/snapshot", post(internal::snapshot))
        .route("/internal/forward", post(internal::forward))
        .route("/internal/forward-many", post(internal::forward_many))
        .route("/internal/read-index", post(internal::read_index))
        .route("/internal/pre-vote", post(internal::pre_vote))
        .route(liveness::HEARTBEATS_PATH, post(internal::heartbeats))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT))
        .layer(middleware::from_fn(internal_format_guard));
    public
        .merge(batches)
        .merge(internal)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.node.clone(),
            stamp_response,
        ))
        .with_state(state)
}

/// Refuses a node-to-node body that is not in this release's format: a
/// peer of another release encodes entries and commands differently, and
/// bincode would misread them rather than fail.
async fn internal_format_guard(req: Request, next: Next) -> Response {
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(registry_raft::network::BINCODE_CONTENT_TYPE) {
        return ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "node-to-node bodies must be {}: the sender runs a release of another format",
                registry_raft::network::BINCODE_CONTENT_TYPE
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not served on {}", uri.path()),
    )
}

/// Adds the node's position headers to every response and records metrics.
async fn stamp_response(State(node): State<Node>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let mut resp = next.run(req).await;
    if !route.starts_with("/internal/") {
        let h = resp.headers_mut();
        let set = |h: &mut axum::http::HeaderMap, name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set(
            h,
            HEADER_REVISION,
            node.shared.position().revision.to_string(),
        );
        set(h, HEADER_NODE, node.id.to_string());
        set(
            h,
            HEADER_LEADER,
            node.leader()
                .map(|(id, _)| id.to_string())
                .unwrap_or_default(),
        );
        set(
            h,
            HEADER_LAST_CONTACT,
            node.last_contact_ms()
                .map_or_else(|| "-1".to_string(), |ms| ms.to_string()),
        );
    }
    node.metrics
        .http_requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    node.metrics
        .http_latency
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}
