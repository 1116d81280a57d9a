//! Typed async client for the agent registry cluster.
//!
//! Every node of the cluster serves the same HTTP JSON API, so the client is
//! given a list of node base URLs and fails over between them.
//!
//! - [`config`]: [`ClientConfig`] (timeouts, attempts, backoff) with `Default`
//!   and `check()`, and the [`ClientBuilder`].
//! - [`error`]: [`ClientError`], which keeps "the server said no" (`Api`),
//!   "the request never got through" (`Transport`) and "a write may or may not
//!   have happened" (`Unknown`) apart.
//! - [`options`]: per-call [`ReadOptions`] and the [`Response`]/[`ResponseMeta`]
//!   pair that carries the `x-registry-*` headers back to the caller.
//! - [`client`]: the [`Client`] itself: one method per route, on top of a
//!   single bounded fail-over loop.
//! - [`session`]: the agent side of liveness: an [`AgentSession`] registers an
//!   agent and keeps it alive with paced heartbeats from a background task,
//!   registering again when the registry expired it.
//! - `backoff`: the exponential, jittered backoff both retry loops share.
//!
//! # Retry policy
//!
//! - Reads are retried on the next node after a connection error, a timeout,
//!   or an HTTP 503/504.
//! - Heartbeats ([`Client::heartbeat`], [`Client::heartbeats`]) are writes,
//!   but idempotent: beating twice is the same as beating once. They are
//!   retried like reads, after any transport error, timeout, 503 or 504.
//! - Other writes (register, delete, status, health) are retried only when
//!   the request provably never reached a node (connect failure) or the node
//!   answered 503 (`no_leader`, `unavailable`: nothing was proposed). A write
//!   that timed out after being sent returns [`ClientError::Unknown`].
//! - A 4xx is never retried.
//! - Attempts are bounded by [`ClientConfig::max_attempts`] and separated by an
//!   exponential, jittered backoff, so one call takes at most about
//!   `max_attempts × (request_timeout + backoff_max)`.

mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod options;
pub mod session;

pub use client::{Client, Readiness};
pub use config::{ClientBuilder, ClientConfig};
pub use error::ClientError;
pub use options::{Consistency, ReadOptions, Response, ResponseMeta};
pub use session::{
    AgentSession, Reporter, SessionBuilder, SessionConfig, SessionPhase, SessionStats,
};

/// The wire types, re-exported so that users of the client need not depend on
/// `registry-types` directly.
pub use registry_types as types;
