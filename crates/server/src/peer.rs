//! The guard in front of every node-to-node route (`/internal/*`).
//!
//! A request passes only if, in this order:
//! 0. under mutual TLS between nodes (`--peer-tls-*`), it came on a
//!    connection whose client presented a certificate from the peer CA
//!    (checked in the handshake; see [`crate::tls`]): else 401
//!    `unauthenticated`;
//! 1. its body is in this release's format (content type);
//! 2. it carries the identity headers, and (with a cluster secret) a
//!    valid signature over them and the body ([`registry_raft::auth`]),
//!    made within the allowed clock skew, with a sequence number not seen
//!    before from that sender: else 401 `unauthenticated`;
//! 3. it was dialed to this node's address, the sender is a member (of the
//!    current membership; of `--initial-cluster` before there is one) other
//!    than this node, and it comes from that member's address (its IP, or
//!    an IP its host name resolves to): else 403 `forbidden`. A `--join`
//!    node that holds no membership yet knows no members: it takes any
//!    sender that passed 0 and 2 (the leader that adds it, whose id and
//!    address it learns from the membership that follows). `--join`
//!    requires peer authentication (`Config::check`), so that sender holds
//!    the cluster secret or a certificate of the peer CA;
//! 4. it names this node's cluster (a node without one yet adopts the
//!    sender's): else 403 `forbidden`.
//!
//! The handlers then check that what the body says agrees with the sender
//! ([`Caller`]): a Raft message names its sender as leader or candidate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use registry_raft::auth::{self, Credentials, PeerKey, ReplayWindow};
use registry_raft::network::{BINCODE_CONTENT_TYPE, PEER_STATE_PATH, PRE_VOTE_PATH};
use registry_raft::ClusterId;
use registry_types::api::PeerAuthMode;
use registry_types::{ErrorCode, NodeId};

use crate::error::ApiError;
use crate::node::Node;
use crate::tls::ClientCertificate;

/// Largest node-to-node body: an AppendEntries of a full group-commit
/// round, a snapshot chunk, a batch of forwarded heartbeats.
pub const INTERNAL_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long a resolved member host name is trusted before it is resolved
/// again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// How soon a resolved host name that did not hold a request's address is
/// resolved again.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);

/// The authenticated sender of a node-to-node request, for the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller(pub NodeId);

/// What checks node-to-node requests. Cheap to clone.
#[derive(Clone)]
pub struct PeerGuard(Arc<Inner>);

struct Inner {
    node: Node,
    /// `None`: unsigned requests (mutual TLS alone, `--insecure-peers`, or
    /// a single node, whose membership lets nobody in).
    key: Option<PeerKey>,
    mode: PeerAuthMode,
    /// Per sender: the sequence numbers taken. A std `Mutex`: held for a
    /// few bit operations, never across an `.await`.
    windows: Mutex<HashMap<NodeId, ReplayWindow>>,
    /// Member host names resolved, with when.
    resolved: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

/// A refusal: logged as a warning (someone is probing, or a member is
/// misconfigured) and answered with the error body.
fn refuse(code: ErrorCode, message: impl Into<String>) -> Response {
    let message = message.into();
    warn!(reason = %message, "refused a node-to-node request");
    ApiError::new(code, message).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The identity headers of a request, or why they are unusable.
fn credentials(headers: &HeaderMap) -> Result<Credentials, String> {
    let parsed = |name: &str| -> Result<u64, String> {
        header(headers, name)
            .ok_or_else(|| format!("missing {name}"))?
            .parse()
            .map_err(|_| format!("{name} is not a number"))
    };
    let cluster = match header(headers, auth::HEADER_CLUSTER) {
        None => None,
        Some(v) => Some(
            v.parse::<ClusterId>()
                .map_err(|_| format!("{} is not a cluster id", auth::HEADER_CLUSTER))?,
        ),
    };
    Ok(Credentials {
        cluster,
        from: parsed(auth::HEADER_FROM)?,
        to: header(headers, auth::HEADER_TO)
            .ok_or_else(|| format!("missing {}", auth::HEADER_TO))?
            .to_string(),
        timestamp_ms: parsed(auth::HEADER_TIMESTAMP)?,
        seq: parsed(auth::HEADER_SEQ)?,
    })
}

impl PeerGuard {
    pub fn new(node: Node, key: Option<PeerKey>, mode: PeerAuthMode) -> PeerGuard {
        PeerGuard(Arc::new(Inner {
            node,
            key,
            mode,
            windows: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
        }))
    }

    /// How this node authenticates its peers.
    pub fn mode(&self) -> PeerAuthMode {
        self.0.mode
    }

    /// The members allowed to send, with their addresses: the current
    /// membership, or before there is one the initial cluster.
    fn members(&self) -> Vec<(NodeId, String)> {
        let node = &self.0.node;
        let current: Vec<(NodeId, String)> = {
            let m = node.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        if !current.is_empty() {
            return current;
        }
        node.config
            .members()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether this is a `--join` node not yet added: it holds no
    /// membership, and takes any authenticated peer (rule 3). Never with
    /// `PeerAuthMode::None` (`--join` refuses to start without peer
    /// authentication; checked again here).
    fn awaiting_join(&self) -> bool {
        let node = &self.0.node;
        node.config.join && self.0.mode != PeerAuthMode::None && !node.has_membership()
    }

    /// Whether `ip` is an address of the member at `addr` (HOST:PORT).
    async fn is_address_of(&self, ip: IpAddr, addr: &str) -> bool {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(member_ip) = host.parse::<IpAddr>() {
            // A member advertised on every interface gives no address to
            // compare with.
            return member_ip.is_unspecified() || member_ip == ip;
        }
        let cached = self
            .0
            .resolved
            .lock()
            .ok()
            .and_then(|r| r.get(addr).cloned());
        // A cached answer is used while fresh; one that does not hold the
        // address is retried after a second (a container restarted with a
        // new address), not only after the TTL.
        let fresh = cached.filter(|(at, ips)| {
            at.elapsed() < RESOLVE_TTL && (ips.contains(&ip) || at.elapsed() < RESOLVE_RETRY)
        });
        let ips = match fresh {
            Some((_, ips)) => ips,
            None => {
                let ips: Vec<IpAddr> = match tokio::net::lookup_host(addr).await {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(e) => {
                        warn!(%addr, error = %e, "cannot resolve a member's address");
                        Vec::new()
                    }
                };
                if let Ok(mut r) = self.0.resolved.lock() {
                    r.insert(addr.to_string(), (Instant::now(), ips.clone()));
                }
                ips
            }
        };
        ips.contains(&ip)
    }

    /// The addresses this node is known by: its member address and its
    /// advertised one.
    fn own_addresses(&self, members: &[(NodeId, String)]) -> Vec<String> {
        let node = &self.0.node;
        let mut own: Vec<String> = members
            .iter()
            .filter(|(id, _)| *id == node.id)
            .map(|(_, a)| a.clone())
            .collect();
        own.push(node.config.peer_advertise_addr());
        own
    }

    /// Checks a request's credentials; answers who sent it.
    async fn check(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        remote: Option<IpAddr>,
        body: &[u8],
    ) -> Result<Caller, Response> {
        let creds = credentials(headers).map_err(|why| {
            refuse(
                ErrorCode::Unauthenticated,
                format!("node-to-node request without credentials: {why}"),
            )
        })?;
        let node = &self.0.node;
        if let Some(key) = &self.0.key {
            let signature = header(headers, auth::HEADER_MAC).unwrap_or_default();
            if !creds.verify(key, method, path, body, signature) {
                return Err(refuse(
                    ErrorCode::Unauthenticated,
                    format!(
                        "node-to-node request claiming node {} is not signed with this cluster's secret",
                        creds.from
                    ),
                ));
            }
            if !creds.is_fresh(auth::now_ms()) {
                return Err(refuse(
                    ErrorCode::Unauthenticated,
                    format!(
                        "node-to-node request from node {} signed at {} ms, more than {} s from this node's clock (replayed, or the clocks disagree)",
                        creds.from,
                        creds.timestamp_ms,
                        auth::MAX_CLOCK_SKEW.as_secs()
                    ),
                ));
            }
        }
        let members = self.members();
        if !self.own_addresses(&members).contains(&creds.to) {
            return Err(refuse(
                ErrorCode::Forbidden,
                format!(
                    "node-to-node request from node {} was sent to {}, which is not this node",
                    creds.from, creds.to
                ),
            ));
        }
        let member_addr = members
            .iter()
            .find(|(id, _)| *id == creds.from && *id != node.id)
            .map(|(_, a)| a.clone());
        let member_addr = match member_addr {
            Some(addr) => Some(addr),
            None if creds.from != node.id && self.awaiting_join() => None,
            None => {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!("node {} is not a member of this cluster", creds.from),
                ))
            }
        };
        if let (Some(ip), Some(member_addr)) = (remote, member_addr) {
            if !self.is_address_of(ip, &member_addr).await {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "node-to-node request claiming node {} came from {ip}, not from its address {member_addr}",
                        creds.from
                    ),
                ));
            }
        }
        if self.0.key.is_some() {
            let taken = self
                .0
                .windows
                .lock()
                .map(|mut w| w.entry(creds.from).or_default().take(creds.seq))
                .unwrap_or(false);
            if !taken {
                return Err(refuse(
                    ErrorCode::Unauthenticated,
                    format!(
                        "node-to-node request from node {} repeats sequence number {} (a replay)",
                        creds.from, creds.seq
                    ),
                ));
            }
        }
        let identity = node.identity();
        match (identity.get(), creds.cluster) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "node {} belongs to cluster {theirs}, this node to cluster {ours}",
                        creds.from
                    ),
                ))
            }
            // A member that lost its data (or never joined) may ask whether
            // a cluster exists and may ask for votes, which it cannot win
            // with an empty log; nothing else without the cluster's id.
            (Some(_), None) if path != PEER_STATE_PATH && path != PRE_VOTE_PATH => {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "node {} has no cluster id: it must be contacted by this cluster's leader first",
                        creds.from
                    ),
                ))
            }
            (None, Some(theirs)) => {
                if let Err(e) = identity.adopt(theirs) {
                    tracing::error!(error = %e, "cannot keep the cluster id");
                    return Err(
                        ApiError::new(ErrorCode::Internal, "cannot keep the cluster id")
                            .into_response(),
                    );
                }
                tracing::info!(cluster = %theirs, from = creds.from, "joined the cluster");
            }
            _ => {}
        }
        Ok(Caller(creds.from))
    }
}

/// The middleware of the internal routes.
pub async fn guard(State(guard): State<PeerGuard>, req: Request, next: Next) -> Response {
    let needs_certificate = matches!(
        guard.mode(),
        PeerAuthMode::MutualTls | PeerAuthMode::MutualTlsHmacSha256
    );
    if needs_certificate && req.extensions().get::<ClientCertificate>().is_none() {
        return refuse(
            ErrorCode::Unauthenticated,
            "node-to-node request on a connection without a client certificate from the peer CA (--peer-tls-ca-file)",
        );
    }
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(BINCODE_CONTENT_TYPE) {
        return ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "node-to-node bodies must be {BINCODE_CONTENT_TYPE}: the sender runs a release of another format"
            ),
        )
        .into_response();
    }
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, INTERNAL_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("node-to-node bodies are limited to {INTERNAL_BODY_LIMIT} bytes"),
            )
            .into_response()
        }
    };
    let caller = match guard
        .check(
            parts.method.as_str(),
            parts.uri.path(),
            &parts.headers,
            remote,
            &body,
        )
        .await
    {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, Body::from(body))).await
}
