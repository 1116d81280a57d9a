//! The [`Client`]: one method per route over a single bounded fail-over loop.
//!
//! Each call is described by a private `Call` (method, path, query, body and
//! whether it writes). `Client::execute` walks the nodes starting at the one
//! that last answered, classifies each attempt's outcome with `classify`, and
//! either returns, or backs off and moves to the next node.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use registry_types::api::AgentCardList;
use registry_types::api::{
    AgentHealth, AgentList, AgentResponse, BatchHeartbeatRequest, BatchHeartbeatResponse,
    CapabilityList, ClusterInfo, DeleteResponse, DiscoverRequest, DiscoverResponse,
    HealthUpdateRequest, HeartbeatRequest, HeartbeatResponse, ListFilter, NodeHealth,
    RegisterRequest, RegisterResponse, RuntimeDetail, RuntimeList, SearchResponse, Stats,
    StatusUpdateRequest,
};
use registry_types::card::AgentCard;
use registry_types::query::{
    to_query_string, CardFilter, CardOptions, ListPage, QueryError, SearchQuery, SelectQuery,
};
use registry_types::{AgentRecord, AgentStatus, ErrorBody, ErrorCode, NodeId, Revision};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backoff::exponential_backoff;
use crate::config::{parse_node_url, ClientBuilder, ClientConfig};
use crate::error::ClientError;
use crate::options::{ReadOptions, Response, ResponseMeta, SelectStrategy};

/// Most pages [`Client::list_all_agents`] follows before giving up, so that a
/// server handing out cursors in a cycle cannot keep the client busy forever.
pub const MAX_LIST_PAGES: usize = 10_000;

/// Longest slice of an unexpected body quoted in an error message, in bytes.
const BODY_SNIPPET: usize = 200;

/// A typed client for the registry cluster. Cheap to clone: clones share the
/// connection pool, the preferred node and the last seen revision.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configured nodes, in the order given.
    nodes: Vec<Node>,
    /// One connection pool for all nodes.
    http: reqwest::Client,
    /// The pool for long-lived streams (`Client::watch`): the same connect
    /// timeout but no whole-request timeout, which would cut every stream
    /// after `request_timeout`. The watcher bounds the wait for headers and
    /// the silence between events itself.
    streams: reqwest::Client,
    /// The configuration the client was built with.
    config: ClientConfig,
    /// Attempts per call, resolved from the configuration and node count.
    attempts: u32,
    /// Index of the node that last answered; calls start there. Atomics
    /// rather than a lock: both are single words updated independently.
    preferred: AtomicUsize,
    /// Highest `x-registry-revision` seen on any answer (0: none yet).
    last_revision: AtomicU64,
}

/// A configured node.
#[derive(Debug)]
struct Node {
    /// The base URL as given, without a trailing `/`; used in messages and
    /// [`ResponseMeta::node_url`].
    name: String,
    /// The parsed base URL routes are appended to.
    url: Url,
}

/// Whether a call changes state; decides what may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Safe to repeat on any node after any failure.
    Read,
    /// Changes state, but applying it twice is the same as applying it once
    /// (a heartbeat: "I was alive at about now"). Retried like a read.
    Idempotent,
    /// Repeated only when it provably was not applied (never sent, or 503).
    Write,
}

impl Kind {
    /// Whether an attempt whose outcome is unknown (timeout after sending,
    /// lost body, 504) may be sent again.
    fn repeatable(self) -> bool {
        match self {
            Kind::Read | Kind::Idempotent => true,
            Kind::Write => false,
        }
    }
}

/// How long a membership change may keep its request: a node answers
/// within half its `--request-timeout-ms` (30 s by default), 202 if the
/// change still runs.
pub const MEMBERSHIP_WAIT: Duration = Duration::from_secs(70);

/// One HTTP call, independent of the node it is sent to.
#[derive(Debug)]
pub(crate) struct Call {
    method: Method,
    /// Path segments appended to the node's base URL (percent-encoded there).
    segments: Vec<String>,
    /// The query string (without `?`), encoded from the query structs of
    /// [`registry_types::query`], as the server decodes them. `Err`: one
    /// could not be encoded (a bug), reported when the URL is built.
    query: Result<String, String>,
    /// JSON body, encoded once for all attempts.
    body: Option<Vec<u8>>,
    kind: Kind,
    /// An error code that means "nothing there" rather than a failure (404
    /// `no_agent_available` of `GET /v1/select`): an answer with it is
    /// returned as it is, for the method to turn into `None`.
    absent: Option<ErrorCode>,
    /// This call's bound instead of `request_timeout`: for the calls the
    /// node answers after a long, bounded wait (membership changes).
    timeout: Option<Duration>,
}

impl Call {
    pub(crate) fn read(segments: &[&str]) -> Self {
        Call {
            method: Method::GET,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Ok(String::new()),
            body: None,
            kind: Kind::Read,
            absent: None,
            timeout: None,
        }
    }

    /// A read that carries its query as a JSON body (`POST /v1/discover`):
    /// it changes nothing, so it is retried like any read.
    fn read_with_body<B: Serialize>(segments: &[&str], body: &B) -> Result<Self, ClientError> {
        let mut call = Call::write(Method::POST, segments, Some(body))?;
        call.kind = Kind::Read;
        Ok(call)
    }

    /// See [`Call::absent`].
    fn absent_on(mut self, code: ErrorCode) -> Self {
        self.absent = Some(code);
        self
    }

    /// Whether `raw` is the answer [`Call::absent`] names.
    fn is_absent(&self, raw: &Raw) -> bool {
        let Some(code) = self.absent else {
            return false;
        };
        raw.meta.status == code.http_status()
            && raw
                .body
                .as_deref()
                .ok()
                .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok())
                .is_some_and(|b| b.error.code == code)
    }

    fn write<B: Serialize>(
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Self, ClientError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| {
                ClientError::Decode(format!("cannot encode the request body as JSON: {e}"))
            })?),
            None => None,
        };
        Ok(Call {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Ok(String::new()),
            body,
            kind: Kind::Write,
            absent: None,
            timeout: None,
        })
    }

    /// See [`Call::timeout`].
    fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Marks a write as idempotent: see [`Kind::Idempotent`].
    fn idempotent(mut self) -> Self {
        debug_assert_eq!(
            self.kind,
            Kind::Write,
            "only writes can be marked idempotent"
        );
        self.kind = Kind::Idempotent;
        self
    }

    /// Appends the parameters of `params`, one of the query structs of
    /// [`registry_types::query`]; absent values are left out.
    pub(crate) fn params<P: Serialize>(mut self, params: &P) -> Self {
        self.query = match (self.query, to_query_string(params)) {
            (Ok(head), Ok(tail)) if head.is_empty() => Ok(tail),
            (Ok(head), Ok(tail)) if tail.is_empty() => Ok(head),
            (Ok(head), Ok(tail)) => Ok(format!("{head}&{tail}")),
            (Err(e), _) | (_, Err(QueryError { message: e, .. })) => Err(e),
        };
        self
    }

    pub(crate) fn read_options(self, opts: ReadOptions) -> Self {
        self.params(&opts)
    }

    pub(crate) fn url(&self, base: &Url) -> Result<Url, ClientError> {
        let mut url = base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                ClientError::InvalidConfig(format!("node URL '{base}' cannot be a base"))
            })?;
            path.pop_if_empty();
            path.extend(&self.segments);
        }
        let query = self
            .query
            .as_deref()
            .map_err(|e| ClientError::Decode(e.clone()))?;
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(url)
    }
}

/// What came back from one node.
#[derive(Debug)]
pub(crate) struct Raw {
    meta: ResponseMeta,
    /// `Retry-After`, in whole seconds as the server sent it.
    retry_after: Option<Duration>,
    /// The body, or why it could not be read after the status arrived.
    body: Result<Vec<u8>, String>,
}

/// Why one attempt produced no answer at all.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection could not be opened: the request never left.
    NotSent(String),
    /// The request may have reached the node (timeout, reset after sending).
    MaybeSent(String),
}

/// Decision after one attempt.
#[derive(Debug)]
pub(crate) enum Step {
    /// Return this to the caller; the node answered (or a write's fate is
    /// unknown, which no other node can settle).
    Done(Result<Raw, ClientError>),
    /// Try the next node after backing off at least `retry_after`.
    Retry {
        err: ClientError,
        retry_after: Option<Duration>,
    },
}

/// Decides what one attempt's outcome means for the call.
pub(crate) fn classify(kind: Kind, outcome: Result<Raw, SendError>) -> Step {
    let raw = match outcome {
        Ok(raw) => raw,
        Err(SendError::NotSent(msg)) => {
            return Step::Retry {
                err: ClientError::Transport(msg),
                retry_after: None,
            }
        }
        Err(SendError::MaybeSent(msg)) => {
            return if kind.repeatable() {
                Step::Retry {
                    err: ClientError::Transport(msg),
                    retry_after: None,
                }
            } else {
                Step::Done(Err(ClientError::Unknown(msg)))
            }
        }
    };
    let status = raw.meta.status;
    if (200..300).contains(&status) {
        return match &raw.body {
            Ok(_) => Step::Done(Ok(raw)),
            Err(msg) if kind.repeatable() => Step::Retry {
                err: ClientError::Transport(msg.clone()),
                retry_after: None,
            },
            Err(msg) => Step::Done(Err(ClientError::Unknown(format!(
                "HTTP {status} but the body was lost: {msg}"
            )))),
        };
    }
    let err = api_error(status, &raw.body);
    // 503 (`no_leader`, `unavailable`) promises nothing was proposed, so even
    // writes may go elsewhere. 504 means "outcome unknown": only reads and
    // idempotent writes retry.
    if status == 503 || (status == 504 && kind.repeatable()) {
        return Step::Retry {
            err,
            retry_after: raw.retry_after,
        };
    }
    Step::Done(Err(err))
}

/// Turns an error answer into [`ClientError::Api`].
///
/// Statuses that a framework layer may produce without the registry's body
/// (unknown route, overload, timeout) get a synthesized body with the
/// matching code, so callers can always switch on [`ClientError::code`].
pub(crate) fn api_error(status: u16, body: &Result<Vec<u8>, String>) -> ClientError {
    let bytes = match body {
        Ok(b) => b.as_slice(),
        Err(_) => &[],
    };
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
        return ClientError::Api { status, body };
    }
    let snippet = snippet(bytes);
    let code = match status {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        500 => ErrorCode::Internal,
        503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        _ => {
            return ClientError::Decode(format!(
                "HTTP {status} without a registry error body: {snippet}"
            ))
        }
    };
    ClientError::Api {
        status,
        body: ErrorBody::new(code, format!("HTTP {status}: {snippet}")),
    }
}

/// The start of a body, as text, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `Retry-After` in seconds; the HTTP-date form is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A short account of a reqwest error: what failed, the URL, and the root
/// cause ("Connection refused (os error 111)", "operation timed out"), which
/// reqwest's own message buries under generic layers.
/// The CA certificates of a PEM file ([`ClientConfig::ca_cert`]).
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let invalid =
        |why: String| ClientError::InvalidConfig(format!("CA file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(describe(&e)))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".to_string()));
    }
    Ok(certs)
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut root: Option<String> = None;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        root = Some(cause.to_string());
        source = cause.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut text = match e.url() {
        Some(url) => format!("{url}: {what}"),
        None => what.to_string(),
    };
    match root {
        Some(root) => {
            text.push_str(": ");
            text.push_str(&root);
        }
        None if !e.is_timeout() => {
            text.push_str(": ");
            text.push_str(&e.to_string());
        }
        None => {}
    }
    text
}

/// Delay before retry number `retry` (1 for the second attempt).
///
/// [`exponential_backoff`] from `backoff_initial` up to `backoff_max`. A
/// server's `Retry-After` raises the delay, but never above `backoff_max`.
pub(crate) fn backoff_delay(
    config: &ClientConfig,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let delay = exponential_backoff(config.backoff_initial, config.backoff_max, retry, rng);
    match retry_after {
        Some(ra) => delay.max(ra.min(config.backoff_max)),
        None => delay,
    }
}

/// Decodes a 2xx body.
pub(crate) fn decode<T: DeserializeOwned>(raw: Raw) -> Result<Response<T>, ClientError> {
    let bytes = raw
        .body
        .map_err(|e| ClientError::Transport(format!("reading the body: {e}")))?;
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Decode(format!(
            "{} from {}: {e}; body: {}",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("body"),
            raw.meta.node_url,
            snippet(&bytes)
        ))
    })?;
    Ok(Response {
        value,
        meta: raw.meta,
    })
}

/// Outcome of [`Client::open_stream`].
#[derive(Debug)]
pub(crate) enum StreamOpen {
    /// The node answered 2xx; the body is the stream.
    Open {
        resp: reqwest::Response,
        meta: ResponseMeta,
    },
    /// Worth trying again, on another node, after at least `retry_after`.
    Retry {
        err: ClientError,
        retry_after: Option<Duration>,
    },
    /// The node refused; `revision` is the one its answer reported.
    Refused {
        err: ClientError,
        revision: Option<Revision>,
    },
}

impl StreamOpen {
    /// A failed opening, from the fail-over loop's decision.
    fn from_step(step: Step, revision: Option<Revision>) -> Self {
        match step {
            Step::Retry { err, retry_after } => StreamOpen::Retry { err, retry_after },
            Step::Done(Err(err)) => StreamOpen::Refused { err, revision },
            // `classify` only says Done(Ok) for a 2xx, answered above.
            Step::Done(Ok(raw)) => StreamOpen::Refused {
                err: ClientError::Decode(format!(
                    "HTTP {} where a stream was expected",
                    raw.meta.status
                )),
                revision,
            },
        }
    }
}

/// Readiness of one node, from `GET /health/ready`.
#[derive(Clone, Debug, PartialEq)]
pub struct Readiness {
    /// True on 200, false on 503.
    pub ready: bool,
    /// The node's own account, when the body was a [`NodeHealth`].
    pub health: Option<NodeHealth>,
    /// The error body, when a not-ready node answered with one instead.
    pub error: Option<ErrorBody>,
    /// Headers of the answer.
    pub meta: ResponseMeta,
}

impl Client {
    /// A client with the default [`ClientConfig`].
    pub fn new(nodes: Vec<String>) -> Result<Client, ClientError> {
        ClientBuilder::new(nodes).build()
    }

    /// A builder to adjust timeouts, attempts and backoff.
    pub fn builder(nodes: Vec<String>) -> ClientBuilder {
        ClientBuilder::new(nodes)
    }

    pub(crate) fn from_parts(
        nodes: Vec<String>,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        config.check()?;
        if nodes.is_empty() {
            return Err(ClientError::InvalidConfig(
                "at least one node URL is needed".to_string(),
            ));
        }
        let nodes = nodes
            .iter()
            .map(|raw| {
                Ok(Node {
                    name: raw.trim().trim_end_matches('/').to_string(),
                    url: parse_node_url(raw)?,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let roots = match &config.ca_cert {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let trusting = |mut builder: reqwest::ClientBuilder| {
            for cert in &roots {
                builder = builder.add_root_certificate(cert.clone());
            }
            builder
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &config.token {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.secret()))
                    .map_err(|_| {
                        ClientError::InvalidConfig("token is not a header value".into())
                    })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = trusting(reqwest::Client::builder())
            .default_headers(headers.clone())
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // Below the nodes' default --header-read-timeout-ms (30 s), after
            // which a node closes an idle connection: an idle pooled
            // connection is dropped here first, never reused just as the
            // node closes it.
            .pool_idle_timeout(Duration::from_secs(20))
            // Cluster nodes are addressed directly; an HTTP(S)_PROXY meant
            // for the outside world must not sit between client and nodes.
            .no_proxy()
            .build()
            .map_err(|e| ClientError::InvalidConfig(describe(&e)))?;
        let streams = trusting(reqwest::Client::builder())
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .no_proxy()
            .build()
            .map_err(|e| ClientError::InvalidConfig(describe(&e)))?;
        let attempts = config.attempts_for(nodes.len());
        Ok(Client {
            inner: Arc::new(Inner {
                nodes,
                http,
                streams,
                config,
                attempts,
                preferred: AtomicUsize::new(0),
                last_revision: AtomicU64::new(0),
            }),
        })
    }

    /// The configured node base URLs, in the order given.
    pub fn nodes(&self) -> Vec<&str> {
        self.inner.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// The node the next call starts with: the one that last answered.
    pub fn preferred_node(&self) -> &str {
        let i = self.inner.preferred.load(Ordering::Relaxed) % self.inner.nodes.len();
        &self.inner.nodes[i].name
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Attempts each call may make, over all nodes.
    pub fn max_attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Highest registry revision any answer reported (0 before the first).
    /// Feed it to [`ReadOptions::with_min_revision`] for read-your-writes.
    pub fn last_revision(&self) -> Revision {
        self.inner.last_revision.load(Ordering::Relaxed)
    }

    // ----- writes -----

    /// Registers or re-registers an agent (`POST /v1/agents`; 201 created,
    /// 200 updated).
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        Ok(self.register_with_meta(req).await?.value)
    }

    /// [`Client::register`] with the answer's metadata.
    pub async fn register_with_meta(
        &self,
        req: &RegisterRequest,
    ) -> Result<Response<RegisterResponse>, ClientError> {
        let call = Call::write(Method::POST, &["v1", "agents"], Some(req))?;
        decode(self.execute(&call).await?)
    }

    /// Removes an agent (`DELETE /v1/agents/{id}`); `agent_not_found` when it
    /// does not exist.
    pub async fn delete_agent(&self, id: &str) -> Result<DeleteResponse, ClientError> {
        Ok(self.delete_agent_with_meta(id).await?.value)
    }

    /// [`Client::delete_agent`] with the answer's metadata.
    pub async fn delete_agent_with_meta(
        &self,
        id: &str,
    ) -> Result<Response<DeleteResponse>, ClientError> {
        let call = Call::write::<()>(Method::DELETE, &["v1", "agents", id], None)?;
        decode(self.execute(&call).await?)
    }

    /// Sets an agent's status (`PUT /v1/agents/{id}/status`), e.g. to suspend
    /// it.
    pub async fn set_status(
        &self,
        id: &str,
        status: AgentStatus,
    ) -> Result<AgentResponse, ClientError> {
        let body = StatusUpdateRequest {
            status: status.to_string(),
        };
        let call = Call::write(Method::PUT, &["v1", "agents", id, "status"], Some(&body))?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Reports an agent's health and load (`PUT /v1/agents/{id}/health`); also
    /// counts as a heartbeat.
    pub async fn set_health(
        &self,
        id: &str,
        update: &HealthUpdateRequest,
    ) -> Result<AgentResponse, ClientError> {
        let call = Call::write(Method::PUT, &["v1", "agents", id, "health"], Some(update))?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Replaces an agent's A2A card (`POST /v1/agents/{id}/agent-card`):
    /// `card` is the card's JSON (A2A 1.0 or 0.2/0.3). The fields mapped
    /// from a card (name, endpoint, version, description, capabilities) are
    /// replaced from it. A bad card is `invalid_argument` naming its JSON
    /// path; one too large `payload_too_large`.
    pub async fn set_agent_card(
        &self,
        id: &str,
        card: &serde_json::Value,
    ) -> Result<AgentResponse, ClientError> {
        let call = Call::write(
            Method::POST,
            &["v1", "agents", id, "agent-card"],
            Some(card),
        )?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    // ----- tokens (admin) -----

    /// Creates a token (`POST /v1/auth/tokens`); the answer holds its
    /// secret, which the registry does not keep.
    pub async fn create_token(
        &self,
        req: &registry_types::auth::CreateTokenRequest,
    ) -> Result<registry_types::auth::CreateTokenResponse, ClientError> {
        let call = Call::write(Method::POST, &["v1", "auth", "tokens"], Some(req))?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Lists the tokens, without secrets (`GET /v1/auth/tokens`).
    pub async fn list_tokens(&self) -> Result<registry_types::auth::TokenList, ClientError> {
        let call = Call::read(&["v1", "auth", "tokens"]);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Revokes a token by id (`DELETE /v1/auth/tokens/{id}`); once this
    /// answers, no write made with it succeeds.
    pub async fn revoke_token(
        &self,
        id: &str,
    ) -> Result<registry_types::auth::RevokeTokenResponse, ClientError> {
        let call = Call::write::<()>(Method::DELETE, &["v1", "auth", "tokens", id], None)?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    // ----- membership (admin) -----

    /// The members as the answering node sees them, and (from the leader)
    /// the membership change in flight or the last one
    /// (`GET /v1/cluster/members`).
    pub async fn members(&self) -> Result<registry_types::membership::MemberList, ClientError> {
        let call = Call::read(&["v1", "cluster", "members"]);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Adds a node (`POST /v1/cluster/members`): a learner, promoted to
    /// voter once caught up when `req.voter`. The node must run, started
    /// with `--join` and an empty data directory. Waits up to
    /// [`MEMBERSHIP_WAIT`] (not `request_timeout`): the answer's
    /// `change.phase` is `done`, or still running when the node answered
    /// first (202; follow it with [`Client::cluster_of`] on the leader).
    pub async fn add_member(
        &self,
        req: &registry_types::membership::AddMemberRequest,
    ) -> Result<registry_types::membership::MembershipChangeResponse, ClientError> {
        let call = Call::write(Method::POST, &["v1", "cluster", "members"], Some(req))?
            .timeout(MEMBERSHIP_WAIT);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Removes a node (`DELETE /v1/cluster/members/{node_id}`); `force`
    /// even though fewer than a majority of the remaining voters are
    /// reachable. Waits as [`Client::add_member`] does.
    pub async fn remove_member(
        &self,
        node_id: NodeId,
        force: bool,
    ) -> Result<registry_types::membership::MembershipChangeResponse, ClientError> {
        let id = node_id.to_string();
        let call = Call::write::<()>(Method::DELETE, &["v1", "cluster", "members", &id], None)?
            .params(&registry_types::membership::RemoveMemberQuery { force })
            .timeout(MEMBERSHIP_WAIT);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    // ----- liveness (idempotent writes) -----

    /// Renews an agent's lease (`POST /v1/agents/{id}/heartbeat`), reporting
    /// what `report` carries (all fields optional; the default is a plain
    /// heartbeat).
    ///
    /// Unlike other writes, a heartbeat is retried on the next node after any
    /// transport error, timeout, 503 or 504: beating twice is harmless. A
    /// 404 `agent_not_found` means the registry does not know the agent
    /// (never registered, or expired): register it again.
    pub async fn heartbeat(
        &self,
        id: &str,
        report: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        Ok(self.heartbeat_with_meta(id, report).await?.value)
    }

    /// [`Client::heartbeat`] with the answer's metadata.
    pub async fn heartbeat_with_meta(
        &self,
        id: &str,
        report: &HeartbeatRequest,
    ) -> Result<Response<HeartbeatResponse>, ClientError> {
        let call = Call::write(
            Method::POST,
            &["v1", "agents", id, "heartbeat"],
            Some(report),
        )?
        .idempotent();
        decode(self.execute(&call).await?)
    }

    /// Renews many agents' leases in one call (`POST /v1/heartbeats`), for a
    /// runtime hosting many agents. Retried like [`Client::heartbeat`].
    ///
    /// The call fails as a whole only when the cluster cannot take heartbeats
    /// (503) or the batch itself is malformed (400: empty, or more than the
    /// server's limit). Otherwise every item gets a result, in order: an item
    /// with `ok: false` and code `agent_not_found` must be registered again.
    pub async fn heartbeats(
        &self,
        batch: &BatchHeartbeatRequest,
    ) -> Result<BatchHeartbeatResponse, ClientError> {
        Ok(self.heartbeats_with_meta(batch).await?.value)
    }

    /// [`Client::heartbeats`] with the answer's metadata.
    pub async fn heartbeats_with_meta(
        &self,
        batch: &BatchHeartbeatRequest,
    ) -> Result<Response<BatchHeartbeatResponse>, ClientError> {
        let call = Call::write(Method::POST, &["v1", "heartbeats"], Some(batch))?.idempotent();
        decode(self.execute(&call).await?)
    }

    // ----- reads -----

    /// One agent (`GET /v1/agents/{id}`).
    pub async fn get_agent(&self, id: &str, opts: ReadOptions) -> Result<AgentRecord, ClientError> {
        Ok(self.get_agent_with_meta(id, opts).await?.value.agent)
    }

    /// [`Client::get_agent`] with the full body (record and revision) and the
    /// answer's metadata.
    pub async fn get_agent_with_meta(
        &self,
        id: &str,
        opts: ReadOptions,
    ) -> Result<Response<AgentResponse>, ClientError> {
        let call = Call::read(&["v1", "agents", id]).read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// An agent's A2A card (`GET /v1/agents/{id}/agent-card.json`), as the
    /// agent registered it; its [`AgentCard::etag`] is the node's `ETag`.
    /// The card of an offline or suspended agent is a `not_found` unless
    /// `include_inactive`.
    pub async fn get_agent_card(
        &self,
        id: &str,
        include_inactive: bool,
        opts: ReadOptions,
    ) -> Result<AgentCard, ClientError> {
        Ok(self
            .get_agent_card_with_meta(id, include_inactive, opts)
            .await?
            .value)
    }

    /// [`Client::get_agent_card`] with the answer's metadata, the agent's
    /// status among it ([`ResponseMeta::agent_status`]).
    pub async fn get_agent_card_with_meta(
        &self,
        id: &str,
        include_inactive: bool,
        opts: ReadOptions,
    ) -> Result<Response<AgentCard>, ClientError> {
        let options = CardOptions {
            include_inactive: include_inactive.then_some(true),
        };
        let call = Call::read(&["v1", "agents", id, "agent-card.json"])
            .params(&options)
            .read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// One page of the A2A cards of agents matching `filter`
    /// (`GET /v1/agent-cards`; live agents only unless `filter.status`).
    /// Pass the previous page's `next_cursor` as `cursor` to continue.
    pub async fn list_agent_cards(
        &self,
        filter: &CardFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
        opts: ReadOptions,
    ) -> Result<AgentCardList, ClientError> {
        let page = ListPage {
            limit: limit.map(u64::from),
            cursor: cursor.map(str::to_string),
        };
        let call = Call::read(&["v1", "agent-cards"])
            .params(filter)
            .params(&page)
            .read_options(opts);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// The registry's own A2A card (`GET /.well-known/agent-card.json`).
    pub async fn registry_agent_card(&self) -> Result<AgentCard, ClientError> {
        let call = Call::read(&[".well-known", "agent-card.json"]);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// One page of agents matching `filter` (`GET /v1/agents`). `limit` is the
    /// page size (server default when `None`); pass the previous page's
    /// `next_cursor` as `cursor` to continue.
    pub async fn list_agents(
        &self,
        filter: &ListFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
        opts: ReadOptions,
    ) -> Result<AgentList, ClientError> {
        Ok(self
            .list_agents_with_meta(filter, limit, cursor, opts)
            .await?
            .value)
    }

    /// [`Client::list_agents`] with the answer's metadata.
    pub async fn list_agents_with_meta(
        &self,
        filter: &ListFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
        opts: ReadOptions,
    ) -> Result<Response<AgentList>, ClientError> {
        let page = ListPage {
            limit: limit.map(u64::from),
            cursor: cursor.map(str::to_string),
        };
        let call = Call::read(&["v1", "agents"])
            .params(filter)
            .params(&page)
            .read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// Every agent matching `filter`, following cursors (at most
    /// [`MAX_LIST_PAGES`] pages). The result has no `next_cursor`; its
    /// `revision` is the highest any page reported.
    ///
    /// Pages after the first are read with `min_revision` set to the first
    /// page's revision, so a fail-over to a lagging node cannot go back in
    /// time mid-listing.
    pub async fn list_all_agents(
        &self,
        filter: &ListFilter,
        opts: ReadOptions,
    ) -> Result<AgentList, ClientError> {
        let mut opts = opts;
        let mut agents = Vec::new();
        let mut revision: Revision = 0;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .list_agents(filter, None, cursor.as_deref(), opts)
                .await?;
            revision = revision.max(page.revision);
            agents.extend(page.agents);
            match page.next_cursor {
                None => {
                    return Ok(AgentList {
                        agents,
                        next_cursor: None,
                        revision,
                    })
                }
                Some(next) => {
                    if cursor.as_deref() == Some(next.as_str()) {
                        return Err(ClientError::Decode(format!(
                            "the server returned cursor '{next}' twice in a row"
                        )));
                    }
                    opts.min_revision = Some(opts.min_revision.unwrap_or(0).max(page.revision));
                    cursor = Some(next);
                }
            }
        }
        Err(ClientError::Decode(format!(
            "listing did not end after {MAX_LIST_PAGES} pages"
        )))
    }

    /// Agents offering a capability matching `q` by name, tag or description
    /// (`GET /v1/capabilities/search`), best matches first.
    pub async fn search_capabilities(
        &self,
        q: &str,
        status: Option<AgentStatus>,
        limit: Option<u32>,
        opts: ReadOptions,
    ) -> Result<SearchResponse, ClientError> {
        Ok(self
            .search_capabilities_with_meta(q, status, limit, opts)
            .await?
            .value)
    }

    /// [`Client::search_capabilities`] with the answer's metadata.
    pub async fn search_capabilities_with_meta(
        &self,
        q: &str,
        status: Option<AgentStatus>,
        limit: Option<u32>,
        opts: ReadOptions,
    ) -> Result<Response<SearchResponse>, ClientError> {
        let query = SearchQuery {
            q: Some(q.to_string()),
            status,
            limit: limit.map(u64::from),
        };
        let call = Call::read(&["v1", "capabilities", "search"])
            .params(&query)
            .read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// Agents matching a structured query (`POST /v1/discover`), filtered by
    /// status, health and load and sorted as the request says.
    ///
    /// A read: retried on the next node like the other reads, although it is
    /// sent as a `POST`. A request without any query term is refused with 400
    /// `invalid_argument` (field `query`).
    pub async fn discover(
        &self,
        req: &DiscoverRequest,
        opts: ReadOptions,
    ) -> Result<DiscoverResponse, ClientError> {
        Ok(self.discover_with_meta(req, opts).await?.value)
    }

    /// [`Client::discover`] with the answer's metadata.
    pub async fn discover_with_meta(
        &self,
        req: &DiscoverRequest,
        opts: ReadOptions,
    ) -> Result<Response<DiscoverResponse>, ClientError> {
        let call = Call::read_with_body(&["v1", "discover"], req)?.read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// The one agent to send work for `capability` to (`GET /v1/select`):
    /// active, health ≥ 0.5, load ≤ 0.8, picked by `strategy`.
    ///
    /// `Ok(None)` when no agent qualifies right now (the server's 404
    /// `no_agent_available`): an empty fleet is an answer to act on (wait,
    /// scale up), not a failure of the call. Every other refusal, such as an
    /// empty capability, is an `Err`.
    pub async fn select(
        &self,
        capability: &str,
        strategy: SelectStrategy,
        opts: ReadOptions,
    ) -> Result<Option<AgentRecord>, ClientError> {
        Ok(self
            .select_with_meta(capability, strategy, opts)
            .await?
            .value)
    }

    /// [`Client::select`] with the answer's metadata (also when no agent
    /// qualified: then `meta.status` is 404).
    pub async fn select_with_meta(
        &self,
        capability: &str,
        strategy: SelectStrategy,
        opts: ReadOptions,
    ) -> Result<Response<Option<AgentRecord>>, ClientError> {
        let query = SelectQuery {
            capability: Some(capability.to_string()),
            strategy: Some(strategy),
            ..Default::default()
        };
        let call = Call::read(&["v1", "select"])
            .params(&query)
            .read_options(opts)
            .absent_on(ErrorCode::NoAgentAvailable);
        let raw = self.execute(&call).await?;
        if call.is_absent(&raw) {
            return Ok(Response {
                value: None,
                meta: raw.meta,
            });
        }
        let found: Response<AgentRecord> = decode(raw)?;
        Ok(Response {
            value: Some(found.value),
            meta: found.meta,
        })
    }

    /// Every capability with its agent count and counts by status
    /// (`GET /v1/capabilities`, following cursors).
    pub async fn capabilities(&self, opts: ReadOptions) -> Result<CapabilityList, ClientError> {
        Ok(self.capabilities_with_meta(opts).await?.value)
    }

    /// [`Client::capabilities`] with the last page's metadata. Pages after
    /// the first are read with `min_revision` set to the first page's
    /// revision, as [`Client::list_all_agents`] does.
    pub async fn capabilities_with_meta(
        &self,
        opts: ReadOptions,
    ) -> Result<Response<CapabilityList>, ClientError> {
        let mut opts = opts;
        let mut page = ListPage::default();
        let mut all = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let call = Call::read(&["v1", "capabilities"])
                .params(&page)
                .read_options(opts);
            let r: Response<CapabilityList> = decode(self.execute(&call).await?)?;
            all.extend(r.value.capabilities);
            if !next_page(&mut page, &mut opts, r.value.next_cursor, r.value.revision)? {
                return Ok(Response {
                    value: CapabilityList {
                        capabilities: all,
                        next_cursor: None,
                        revision: r.value.revision,
                    },
                    meta: r.meta,
                });
            }
        }
        Err(ClientError::Decode(format!(
            "capability listing did not end after {MAX_LIST_PAGES} pages"
        )))
    }

    /// Every runtime with its agent counts by status (`GET /v1/runtimes`,
    /// following cursors).
    pub async fn runtimes(&self, opts: ReadOptions) -> Result<RuntimeList, ClientError> {
        Ok(self.runtimes_with_meta(opts).await?.value)
    }

    /// [`Client::runtimes`] with the last page's metadata.
    pub async fn runtimes_with_meta(
        &self,
        opts: ReadOptions,
    ) -> Result<Response<RuntimeList>, ClientError> {
        let mut opts = opts;
        let mut page = ListPage::default();
        let mut all = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let call = Call::read(&["v1", "runtimes"])
                .params(&page)
                .read_options(opts);
            let r: Response<RuntimeList> = decode(self.execute(&call).await?)?;
            all.extend(r.value.runtimes);
            if !next_page(&mut page, &mut opts, r.value.next_cursor, r.value.revision)? {
                return Ok(Response {
                    value: RuntimeList {
                        runtimes: all,
                        next_cursor: None,
                        revision: r.value.revision,
                    },
                    meta: r.meta,
                });
            }
        }
        Err(ClientError::Decode(format!(
            "runtime listing did not end after {MAX_LIST_PAGES} pages"
        )))
    }

    /// One runtime's counts and agents (`GET /v1/runtimes/{id}`); 404
    /// `not_found` when no agent runs there, like [`Client::get_agent`]'s
    /// `agent_not_found`.
    pub async fn runtime(&self, id: &str, opts: ReadOptions) -> Result<RuntimeDetail, ClientError> {
        Ok(self.runtime_with_meta(id, opts).await?.value)
    }

    /// [`Client::runtime`] with the answer's metadata.
    pub async fn runtime_with_meta(
        &self,
        id: &str,
        opts: ReadOptions,
    ) -> Result<Response<RuntimeDetail>, ClientError> {
        let call = Call::read(&["v1", "runtimes", id]).read_options(opts);
        decode(self.execute(&call).await?)
    }

    /// Registry-wide figures (`GET /v1/stats`), linearizable.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.stats_with(ReadOptions::default()).await
    }

    /// [`Client::stats`] with explicit read options (e.g. stale, which works
    /// without a leader).
    pub async fn stats_with(&self, opts: ReadOptions) -> Result<Stats, ClientError> {
        let call = Call::read(&["v1", "stats"]).read_options(opts);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// An agent's liveness summary (`GET /health/{id}`).
    pub async fn agent_health(&self, id: &str) -> Result<AgentHealth, ClientError> {
        let call = Call::read(&["health", id]);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// The cluster as seen by whichever node answers first (`GET /v1/cluster`).
    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        let call = Call::read(&["v1", "cluster"]);
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// The cluster as seen by one given node, without fail-over. `node_url`
    /// need not be one of the configured nodes.
    pub async fn cluster_of(&self, node_url: &str) -> Result<Response<ClusterInfo>, ClientError> {
        let call = Call::read(&["v1", "cluster"]);
        let raw = self.single(node_url, &call).await?;
        if !(200..300).contains(&raw.meta.status) {
            return Err(api_error(raw.meta.status, &raw.body));
        }
        decode(raw)
    }

    /// Hands leadership to voter `node_id`, or (`None`) to the voter whose
    /// log is furthest along (`POST /v1/cluster/leader`; admin only under
    /// `--auth on`). Writes pause meanwhile and then go to the new leader.
    /// Not repeated once sent: a lost answer may hide a handover that took
    /// place (read [`Client::cluster`] before trying again).
    pub async fn hand_over_leadership(
        &self,
        node_id: Option<registry_types::NodeId>,
    ) -> Result<registry_types::api::LeaderHandover, ClientError> {
        let body = registry_types::api::LeaderHandoverRequest { node_id };
        let call = Call::write(Method::POST, &["v1", "cluster", "leader"], Some(&body))?;
        Ok(decode(self.execute(&call).await?)?.value)
    }

    /// Whether one node is ready to serve (`GET /health/ready`: 200 ready,
    /// 503 not ready). An unreachable node is an error, not `false`.
    pub async fn ready(&self, node_url: &str) -> Result<bool, ClientError> {
        Ok(self.readiness(node_url).await?.ready)
    }

    /// [`Client::ready`] with the node's explanation.
    pub async fn readiness(&self, node_url: &str) -> Result<Readiness, ClientError> {
        let call = Call::read(&["health", "ready"]);
        let raw = self.single(node_url, &call).await?;
        let ready = match raw.meta.status {
            200..=299 => true,
            503 => false,
            status => return Err(api_error(status, &raw.body)),
        };
        let bytes = raw.body.as_deref().unwrap_or_default();
        Ok(Readiness {
            ready,
            health: serde_json::from_slice(bytes).ok(),
            error: serde_json::from_slice(bytes).ok(),
            meta: raw.meta,
        })
    }

    // ----- transport -----

    /// Tries per call over all nodes (the fail-over loop's budget).
    pub(crate) fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Number of configured nodes (at least one).
    pub(crate) fn node_count(&self) -> usize {
        self.inner.nodes.len()
    }

    /// The index of a configured node, by its base URL as given (a trailing
    /// `/` and surrounding spaces do not matter).
    pub(crate) fn node_index(&self, url: &str) -> Option<usize> {
        let name = url.trim().trim_end_matches('/');
        self.inner.nodes.iter().position(|n| n.name == name)
    }

    /// The pool without a whole-request timeout, for long answers.
    pub(crate) fn stream_client(&self) -> &reqwest::Client {
        &self.inner.streams
    }

    /// The index of [`Client::preferred_node`].
    pub(crate) fn preferred_index(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed) % self.inner.nodes.len()
    }

    /// The base URL of node `idx` (modulo the node count).
    pub(crate) fn node_name(&self, idx: usize) -> &str {
        &self.inner.nodes[idx % self.inner.nodes.len()].name
    }

    /// One attempt of `call` on node `idx`, classified, without fail-over:
    /// for callers that walk the nodes themselves (the watcher).
    pub(crate) async fn attempt_on(&self, idx: usize, call: &Call) -> Step {
        let node = &self.inner.nodes[idx % self.inner.nodes.len()];
        classify(call.kind, self.send_once(&node.name, &node.url, call).await)
    }

    /// Opens a long-lived `text/event-stream` answer to the read `call` on
    /// node `idx`, asking to resume after `last_event_id`.
    ///
    /// The wait for the answer's headers is bounded by `request_timeout`;
    /// the body is not (the caller bounds the silence between chunks).
    pub(crate) async fn open_stream(
        &self,
        idx: usize,
        call: &Call,
        last_event_id: Option<Revision>,
    ) -> StreamOpen {
        let node = &self.inner.nodes[idx % self.inner.nodes.len()];
        let url = match call.url(&node.url) {
            Ok(url) => url,
            Err(err) => {
                return StreamOpen::Refused {
                    err,
                    revision: None,
                }
            }
        };
        let mut req = self
            .inner
            .streams
            .request(call.method.clone(), url)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let budget = self.inner.config.request_timeout;
        let sent = match tokio::time::timeout(budget, req.send()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(SendError::NotSent(describe(&e))),
            Ok(Err(e)) => Err(SendError::MaybeSent(describe(&e))),
            Err(_) => Err(SendError::MaybeSent(format!(
                "{}: no answer within {budget:?}",
                node.name
            ))),
        };
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return StreamOpen::from_step(classify(Kind::Read, Err(e)), None),
        };
        let status = resp.status().as_u16();
        let meta = ResponseMeta::from_headers(&node.name, status, resp.headers());
        if let Some(r) = meta.revision {
            self.inner.last_revision.fetch_max(r, Ordering::Relaxed);
        }
        if (200..300).contains(&status) {
            return StreamOpen::Open { resp, meta };
        }
        let retry_after = retry_after(resp.headers());
        let body = match tokio::time::timeout(budget, resp.bytes()).await {
            Ok(Ok(b)) => Ok(b.to_vec()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!(
                "{}: the error body did not arrive in time",
                node.name
            )),
        };
        let revision = meta.revision;
        let raw = Raw {
            meta,
            retry_after,
            body,
        };
        StreamOpen::from_step(classify(Kind::Read, Ok(raw)), revision)
    }

    /// Sends `call` to one node, with no retry.
    async fn single(&self, node_url: &str, call: &Call) -> Result<Raw, ClientError> {
        let url = parse_node_url(node_url)?;
        let name = node_url.trim().trim_end_matches('/');
        self.send_once(name, &url, call).await.map_err(|e| match e {
            SendError::NotSent(m) | SendError::MaybeSent(m) => ClientError::Transport(m),
        })
    }

    /// The fail-over loop: at most `attempts` tries, round-robin from the
    /// preferred node, with backoff between tries.
    async fn execute(&self, call: &Call) -> Result<Raw, ClientError> {
        let inner = &self.inner;
        let n = inner.nodes.len();
        let start = inner.preferred.load(Ordering::Relaxed) % n;
        let mut last: Option<ClientError> = None;
        let mut wait_hint: Option<Duration> = None;
        for attempt in 0..inner.attempts {
            if attempt > 0 {
                let delay = backoff_delay(
                    &inner.config,
                    attempt,
                    wait_hint.take(),
                    &mut rand::thread_rng(),
                );
                // A zero backoff (allowed) moves on at once rather than
                // waiting for the next timer tick.
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            let idx = (start + attempt as usize) % n;
            let node = &inner.nodes[idx];
            let outcome = self.send_once(&node.name, &node.url, call).await;
            // "Nothing there" is an answer from this node, not a failure.
            let outcome = match outcome {
                Ok(raw) if call.is_absent(&raw) => {
                    inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(raw);
                }
                other => other,
            };
            match classify(call.kind, outcome) {
                Step::Done(result) => {
                    inner.preferred.store(idx, Ordering::Relaxed);
                    return result;
                }
                Step::Retry { err, retry_after } => {
                    tracing::debug!(
                        node = %node.name,
                        attempt = attempt + 1,
                        of = inner.attempts,
                        method = %call.method,
                        error = %err,
                        "registry call failed on this node; trying the next"
                    );
                    last = Some(err);
                    wait_hint = retry_after;
                }
            }
        }
        Err(ClientError::AllNodesFailed {
            attempts: inner.attempts,
            last: Box::new(
                last.unwrap_or_else(|| ClientError::Transport("no attempt was made".to_string())),
            ),
        })
    }

    /// One HTTP exchange with one node. Records the revision it reports.
    async fn send_once(&self, name: &str, base: &Url, call: &Call) -> Result<Raw, SendError> {
        let url = call
            .url(base)
            .map_err(|e| SendError::NotSent(e.to_string()))?;
        let mut req = self.inner.http.request(call.method.clone(), url);
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.map_err(|e| {
            // A connect error (refused, unreachable, connect timeout) means no
            // byte of the request left; anything later may have been applied.
            if e.is_connect() {
                SendError::NotSent(describe(&e))
            } else {
                SendError::MaybeSent(describe(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let meta = ResponseMeta::from_headers(name, status, resp.headers());
        if let Some(r) = meta.revision {
            self.inner.last_revision.fetch_max(r, Ordering::Relaxed);
        }
        let retry_after = retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| describe(&e));
        Ok(Raw {
            meta,
            retry_after,
            body,
        })
    }
}

/// Moves a paged listing on: `Ok(false)` on the last page; otherwise sets
/// the next `cursor` and a `min_revision` of the pages read so far (a
/// fail-over to a lagging node cannot go back in time mid-listing).
fn next_page(
    page: &mut ListPage,
    opts: &mut ReadOptions,
    next_cursor: Option<String>,
    revision: Revision,
) -> Result<bool, ClientError> {
    let Some(next) = next_cursor else {
        return Ok(false);
    };
    if page.cursor.as_deref() == Some(next.as_str()) {
        return Err(ClientError::Decode(format!(
            "the server returned cursor '{next}' twice in a row"
        )));
    }
    opts.min_revision = Some(opts.min_revision.unwrap_or(0).max(revision));
    page.cursor = Some(next);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    fn raw(status: u16, body: &str) -> Raw {
        Raw {
            meta: ResponseMeta {
                node_url: "http://n".into(),
                status,
                ..Default::default()
            },
            retry_after: None,
            body: Ok(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after_up_to_the_cap() {
        let cfg = ClientConfig::default();
        // StepRng(0, 0) always draws the low end: delay = base / 2.
        let mut low = StepRng::new(0, 0);
        let d = |retry, ra, rng: &mut StepRng| backoff_delay(&cfg, retry, ra, rng);
        assert_eq!(d(1, None, &mut low), Duration::from_millis(25));
        assert_eq!(d(2, None, &mut low), Duration::from_millis(50));
        assert_eq!(d(30, None, &mut low), Duration::from_millis(500));
        assert_eq!(
            d(1, Some(Duration::from_secs(30)), &mut low),
            Duration::from_secs(1)
        );
        for retry in 1..40 {
            let x = backoff_delay(&cfg, retry, None, &mut rand::thread_rng());
            assert!(x <= cfg.backoff_max, "retry {retry}: {x:?}");
        }
    }

    #[test]
    fn classify_never_retries_4xx_and_retries_writes_only_when_not_applied() {
        let not_found = r#"{"error":{"code":"agent_not_found","message":"no agent"}}"#;
        for kind in [Kind::Read, Kind::Write] {
            match classify(kind, Ok(raw(404, not_found))) {
                Step::Done(Err(e)) => assert_eq!(e.code(), Some(ErrorCode::AgentNotFound)),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                classify(kind, Ok(raw(503, ""))),
                Step::Retry { .. }
            ));
            assert!(matches!(
                classify(kind, Err(SendError::NotSent("refused".into()))),
                Step::Retry { .. }
            ));
        }
        assert!(matches!(
            classify(Kind::Write, Err(SendError::MaybeSent("timeout".into()))),
            Step::Done(Err(ClientError::Unknown(_)))
        ));
        assert!(matches!(
            classify(Kind::Read, Err(SendError::MaybeSent("timeout".into()))),
            Step::Retry { .. }
        ));
        assert!(matches!(
            classify(Kind::Read, Ok(raw(504, ""))),
            Step::Retry { .. }
        ));
        match classify(Kind::Write, Ok(raw(504, ""))) {
            Step::Done(Err(e)) => assert!(e.is_outcome_unknown(), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classify_retries_idempotent_writes_whatever_their_outcome() {
        for outcome in [
            Err(SendError::NotSent("refused".into())),
            Err(SendError::MaybeSent("timeout".into())),
            Ok(raw(503, "")),
            Ok(raw(504, "")),
        ] {
            let shown = format!("{outcome:?}");
            assert!(
                matches!(classify(Kind::Idempotent, outcome), Step::Retry { .. }),
                "{shown} not retried"
            );
        }
        let lost = Raw {
            body: Err("reset".into()),
            ..raw(200, "")
        };
        assert!(matches!(
            classify(Kind::Idempotent, Ok(lost)),
            Step::Retry { .. }
        ));
        let not_found = r#"{"error":{"code":"agent_not_found","message":"no agent"}}"#;
        match classify(Kind::Idempotent, Ok(raw(404, not_found))) {
            Step::Done(Err(e)) => assert_eq!(e.code(), Some(ErrorCode::AgentNotFound)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_bodies_are_decoded_or_synthesized() {
        let e = api_error(
            400,
            &Ok(br#"{"error":{"code":"invalid_argument","message":"bad","field":"name","retryable":false}}"#.to_vec()),
        );
        let ClientError::Api { status, body } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(*status, 400);
        assert_eq!(body.error.field.as_deref(), Some("name"));
        assert_eq!(
            api_error(503, &Ok(b"<html>".to_vec())).code(),
            Some(ErrorCode::Unavailable)
        );
        assert!(matches!(
            api_error(418, &Ok(b"teapot".to_vec())),
            ClientError::Decode(_)
        ));
    }

    #[test]
    fn urls_escape_ids_and_keep_base_prefixes() {
        let query = SearchQuery {
            q: Some("x&y".to_string()),
            ..Default::default()
        };
        let call = Call::read(&["v1", "agents", "a/b c"]).params(&query);
        let base = parse_node_url("http://h:1/prefix/").unwrap();
        assert_eq!(
            call.url(&base).unwrap().as_str(),
            "http://h:1/prefix/v1/agents/a%2Fb%20c?q=x%26y"
        );
        let bare = parse_node_url("http://h:1").unwrap();
        assert_eq!(
            Call::read(&["v1", "stats"]).url(&bare).unwrap().as_str(),
            "http://h:1/v1/stats"
        );
    }
}
