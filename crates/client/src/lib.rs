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
//!
//! # Retry policy
//!
//! - Reads are retried on the next node after a connection error, a timeout,
//!   or an HTTP 503/504.
//! - Writes (register, delete, status, health) are retried only when the
//!   request provably never reached a node (connect failure) or the node
//!   answered 503 (`no_leader`, `unavailable`: nothing was proposed). A write
//!   that timed out after being sent returns [`ClientError::Unknown`].
//! - A 4xx is never retried.
//! - Attempts are bounded by [`ClientConfig::max_attempts`] and separated by an
//!   exponential, jittered backoff, so one call takes at most about
//!   `max_attempts × (request_timeout + backoff_max)`.

pub mod client;
pub mod config;
pub mod error;
pub mod options;

pub use client::{Client, Readiness};
pub use config::{ClientBuilder, ClientConfig};
pub use error::ClientError;
pub use options::{Consistency, ReadOptions, Response, ResponseMeta};

/// The wire types, re-exported so that users of the client need not depend on
/// `registry-types` directly.
pub use registry_types as types;
