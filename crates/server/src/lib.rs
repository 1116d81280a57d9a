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
//! - [`inspect`]: `agent-registry inspect`, a read-only report of a data
//!   directory.
//! - [`backup`]: `GET /v1/snapshot` (a backup streamed from the node's
//!   snapshot) and `agent-registry restore`.
//!
//! Built on the core, each holding a [`Node`]:
//! - [`liveness`]: heartbeats, checkpoints, sweeps and the brake.
//! - [`election`]: the elector (pre-vote, then openraft's election).
//! - [`membership`]: adding and removing nodes (`/v1/cluster/members`),
//!   run by the leader one change at a time; the gate of a `--join` node
//!   not yet added.
//! - [`handover`]: leadership handed to a caught-up voter (an admin's
//!   request, a leader's shutdown), writes and heartbeats waiting meanwhile.
//! - [`discovery`]: `POST /v1/discover`, `GET /v1/select`, capability and
//!   runtime summaries, and the discovery request counter.
//!
//! The HTTP edge:
//! - [`cards`]: A2A Agent Cards: registration with a card, the card served
//!   with liveness and listed, the registry's own card.
//! - [`api`]: public handlers; [`events`]: the change stream; [`scaling`]:
//!   scaling policies and advisories; [`legacy`]: the routes existing agent
//!   code calls, in the shapes of the registries it was written for.
//! - [`auth`]: who is calling (tokens, the anonymous caller) and what
//!   they may do; the token routes.
//! - [`edge`]: the accept loop: the connection cap, the header read
//!   timeout and graceful shutdown; the request and body timeouts are the
//!   router's (`bound_request`).
//! - [`extract`]: body and query parsing that turns bad input into clear
//!   errors; [`error`]: the one error type of the edge, with the
//!   conversions from the core's errors.
//! - [`internal`]: Raft RPC and node-to-node routes (bincode).
//! - [`tls`]: TLS on the listeners and mutual TLS between nodes: the
//!   certificates, their reload, the acceptors and the peer client's
//!   configuration.
//! - [`openapi`]: the OpenAPI document, generated from the handlers and
//!   the wire types ([`public_api`] lists the routes once for both), served
//!   at `/openapi.json` and browsable at `/docs`.
//! - [`AppState`] gives each handler the parts it names ([`axum::extract::FromRef`]).

pub mod api;
pub mod auth;
pub mod backup;
pub mod cards;
pub mod coalesce;
pub mod config;
pub mod discovery;
pub mod edge;
pub mod election;
pub mod error;
pub mod events;
pub mod extract;
pub mod group_commit;
pub mod handover;
pub mod inspect;
pub mod internal;
pub mod legacy;
pub mod liveness;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod peer;
pub mod scaling;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use registry_types::{ErrorCode, HEADER_LAST_CONTACT, HEADER_LEADER, HEADER_NODE, HEADER_REVISION};

pub use config::Config;
pub use error::ApiError;
pub use node::{Node, StartError};

/// Everything the router's handlers draw on; each handler takes the parts
/// it uses (`State<Node>`, `State<Liveness>`, ...). Cheap to clone: one
/// reference count, whatever it holds.
///
/// axum clones the router's state for every request (the route's service,
/// then the state handed to the handler), before the handler's `State<T>`
/// extractors clone the parts they name. With the parts side by side, each
/// request took and released a reference on every one of them, on counters
/// shared by every worker thread: at 100,000 agents that was measurable in
/// the leader's CPU per heartbeat. Behind one `Arc`, a request pays for one
/// count plus the parts it names.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of an [`AppState`], each handed to a handler that names it
/// with `State<T>` (see the `FromRef` impls below).
pub struct AppParts {
    pub node: Node,
    pub liveness: liveness::Liveness,
    pub elector: election::Elector,
    pub discovery_requests: discovery::DiscoveryRequests,
    pub round_robin: Arc<discovery::RoundRobin>,
    /// The guard of the node-to-node routes.
    pub peer: peer::PeerGuard,
    /// The snapshot a leader is sending this node, chunk by chunk.
    pub snapshot_receipt: Arc<internal::SnapshotReceipt>,
    /// Event streams and long polls: their slots and shared encodings.
    pub watchers: events::Watchers,
    /// The membership change this node runs as leader.
    pub membership: membership::Membership,
}

/// `State<T>` for each part of [`AppState`]: a clone of that part only.
macro_rules! parts_from_ref {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.0.$field.clone()
            }
        })*
    };
}

parts_from_ref!(
    node: Node,
    liveness: liveness::Liveness,
    elector: election::Elector,
    discovery_requests: discovery::DiscoveryRequests,
    round_robin: Arc<discovery::RoundRobin>,
    peer: peer::PeerGuard,
    snapshot_receipt: Arc<internal::SnapshotReceipt>,
    watchers: events::Watchers,
    membership: membership::Membership,
);

/// Starts a node: its core (storage, Raft, bootstrap), then what builds on
/// it (liveness, the elector, the discovery request reports).
pub async fn start(config: Config) -> Result<AppState, StartError> {
    let bootstrap = match &config.bootstrap_token_file {
        Some(path) => Some(auth::BootstrapToken::load(path).map_err(StartError::Auth)?),
        None => None,
    };
    let node = Node::start(config).await?;
    node.tls
        .spawn_reloader(node.config.tls_reload_interval(), node.metrics.clone());
    if let Some(token) = bootstrap {
        token.spawn(node.clone());
    }
    let (key, mode) = node.peer_auth();
    Ok(AppState(Arc::new(AppParts {
        peer: peer::PeerGuard::new(node.clone(), key, mode),
        snapshot_receipt: Arc::new(internal::SnapshotReceipt::new(
            &node.config.data_dir,
            node.disk.clone(),
        )),
        liveness: liveness::Liveness::start(node.clone()),
        elector: election::Elector::start(node.clone()),
        discovery_requests: discovery::DiscoveryRequests::start(node.clone()),
        round_robin: Arc::default(),
        membership: membership::Membership::new(node.clone()),
        watchers: events::Watchers::new(node.config.max_watchers, node.metrics.clone()),
        node,
    })))
}

/// The public API: every public route with its OpenAPI operation, listed
/// once. The router serves these routes and [`openapi::document`] describes
/// them, both from this list, so the two cannot drift apart. Bodies are
/// limited to `max_body_bytes`, except `POST /v1/heartbeats` and the routes
/// that take an A2A card (`max_body_bytes + max_card_bytes`).
pub fn public_api(max_body_bytes: usize, max_card_bytes: usize) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api::get_agent, api::delete_agent))
        .routes(routes!(cards::get_card))
        .routes(routes!(cards::list_cards))
        .routes(routes!(cards::registry_card))
        .routes(routes!(api::set_status))
        .routes(routes!(api::set_health))
        .routes(routes!(api::heartbeat))
        .routes(routes!(legacy::heartbeat))
        .routes(routes!(api::search_capabilities))
        .routes(routes!(api::stats))
        .routes(routes!(api::cluster))
        .routes(routes!(backup::snapshot))
        .routes(routes!(membership::list_members, membership::add_member))
        .routes(routes!(membership::remove_member))
        .routes(routes!(handover::handover_route))
        .routes(routes!(events::events))
        .routes(routes!(discovery::discover))
        .routes(routes!(discovery::select))
        .routes(routes!(discovery::capabilities))
        .routes(routes!(discovery::runtimes))
        .routes(routes!(discovery::runtime))
        .routes(routes!(scaling::list_policies))
        .routes(routes!(
            scaling::put_policy,
            scaling::get_policy,
            scaling::delete_policy
        ))
        .routes(routes!(scaling::advisories))
        .routes(routes!(api::live))
        .routes(routes!(api::ready))
        .routes(routes!(api::agent_health))
        .routes(routes!(openapi::serve))
        .routes(routes!(api::metrics))
        // Routes existing agent code already calls, in its shapes.
        .routes(routes!(legacy::register))
        .routes(routes!(legacy::register_host_port))
        .routes(routes!(legacy::list))
        .routes(routes!(legacy::get, legacy::delete))
        .routes(routes!(legacy::search))
        .routes(routes!(legacy::stats))
        .routes(routes!(auth::create_token, auth::list_tokens))
        .routes(routes!(auth::revoke_token))
        .layer(DefaultBodyLimit::max(max_body_bytes));
    // A runtime beating for thousands of agents needs more than one record's
    // worth of body.
    let batches = OpenApiRouter::new()
        .routes(routes!(api::heartbeats))
        .layer(DefaultBodyLimit::max(max_body_bytes.max(1024 * 1024)));
    // Registrations may carry an A2A card, itself bounded by
    // --max-card-bytes (checked as canonical JSON, 413 with a clear field).
    let with_cards = OpenApiRouter::new()
        .routes(routes!(api::register, api::list_agents))
        .routes(routes!(cards::set_card))
        .layer(DefaultBodyLimit::max(
            max_body_bytes.saturating_add(max_card_bytes),
        ));
    public.merge(batches).merge(with_cards)
}

/// Builds the full router of a node: the public API, its browsable
/// reference (`/docs`), the node-to-node routes unless they have a listener
/// of their own (`--peer-listen`), fallbacks and the middleware that stamps
/// every response with the node's position.
pub fn router(state: AppState) -> Router {
    let config = &state.node.config;
    let (public, _) = public_api(config.max_body_bytes, config.max_card_bytes).split_for_parts();
    let public = public
        .merge(openapi::swagger_ui())
        .layer(middleware::from_fn_with_state(
            state.node.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.node.clone(),
            membership::join_gate,
        ));
    let app = if state.node.config.peer_listen.is_some() {
        public
    } else {
        public.merge(internal_routes(&state))
    };
    finish(app, state)
}

/// The router of the peer listener (`--peer-listen`): the node-to-node
/// routes alone.
pub fn peer_router(state: AppState) -> Router {
    finish(internal_routes(&state), state)
}

/// What every listener's router ends with: the fallbacks, the time bounds
/// of a request and the stamp of the node's position on every response.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.node.clone(),
            bound_request,
        ))
        .layer(middleware::from_fn_with_state(
            state.node.clone(),
            stamp_response,
        ))
        .with_state(state)
}

/// Whether a request may outlast `--request-timeout-ms` by design: event
/// streams and long polls (bounded by `--max-watchers` and the 60 s `wait`
/// instead) and node-to-node calls (snapshots, forwarded writes, each
/// bounded by its sender).
fn long_lived(path: &str) -> bool {
    path == "/v1/events" || path.starts_with("/internal/")
}

/// Bounds one request in time: its body must arrive within
/// `--body-read-timeout-ms` (the body extractors read the deadline set
/// here; 408 `request_timeout`), and its answer within
/// `--request-timeout-ms` (504 `timeout`: a write cut off may or may not
/// have been applied), unless it is [`long_lived`]. Headers are bounded by
/// the connection (`--header-read-timeout-ms`, see [`edge`]).
async fn bound_request(State(node): State<Node>, mut req: Request, next: Next) -> Response {
    let config = &node.config;
    let now = tokio::time::Instant::now();
    req.extensions_mut().insert(crate::extract::BodyDeadline(
        now + config.body_read_timeout(),
    ));
    if long_lived(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout_at(now + config.request_timeout(), next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout(
            "the request did not complete within --request-timeout-ms; a write may or may not have been applied: read before retrying",
        )
        .into_response(),
    }
}

/// Node-to-node routes: bincode bodies, not part of the public document,
/// each behind the peer guard ([`peer`]), which reads the body (up to
/// [`peer::INTERNAL_BODY_LIMIT`]) to check its signature.
fn internal_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/internal/raft/append", post(internal::append))
        .route("/internal/raft/vote", post(internal::vote))
        .route("/internal/raft/snapshot", post(internal::snapshot))
        .route("/internal/forward", post(internal::forward))
        .route("/internal/forward-many", post(internal::forward_many))
        .route("/internal/read-index", post(internal::read_index))
        .route("/internal/pre-vote", post(internal::pre_vote))
        .route(
            registry_raft::network::PEER_STATE_PATH,
            post(internal::state),
        )
        .route(liveness::HEARTBEATS_PATH, post(internal::heartbeats))
        .route(membership::MEMBERSHIP_PATH, post(membership::forwarded))
        .route(membership::JOIN_PROBE_PATH, post(membership::join_probe))
        .route(handover::STAND_PATH, post(internal::stand))
        .route(handover::HANDOVER_PATH, post(internal::handover))
        .layer(DefaultBodyLimit::max(peer::INTERNAL_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.peer.clone(),
            peer::guard,
        ))
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
