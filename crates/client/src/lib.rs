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
//!   single bounded fail-over loop. Discovery: [`Client::discover`],
//!   [`Client::select`] (`Ok(None)` when no agent qualifies),
//!   [`Client::capabilities`], [`Client::runtimes`], [`Client::runtime`].
//! - [`watch`]: [`Client::watch`], the change stream as a [`futures::Stream`]
//!   that resumes on another node after a failure with no gap and no
//!   duplicate, and ends with [`WatchError::Compacted`] rather than skip
//!   events the registry no longer keeps.
//! - [`session`]: the agent side of liveness: an [`AgentSession`] registers an
//!   agent and keeps it alive with paced heartbeats from a background task,
//!   registering again when the registry expired it.
//! - [`snapshot`]: [`Client::save_snapshot`], a backup written to a file
//!   atomically and verified on its way in.
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
//! - A watch ([`Client::watch`]) reopens its stream after any drop, for as
//!   long as [`WatchOptions::max_consecutive_failures`] allows, resuming
//!   after the last event it delivered.
//! - Attempts are bounded by [`ClientConfig::max_attempts`] and separated by an
//!   exponential, jittered backoff, so one call takes at most about
//!   `max_attempts × (request_timeout + backoff_max)`.
//!
//! # Example
//!
//! ```no_run
//! use futures::StreamExt;
//! use registry_client::types::api::{DiscoverRequest, ListFilter};
//! use registry_client::types::EventKind;
//! use registry_client::{Client, ReadOptions, SelectStrategy, WatchError, WatchOptions};
//!
//! async fn example() -> Result<(), Box<dyn std::error::Error>> {
//!     let nodes = vec!["http://127.0.0.1:8009".to_string(), "http://127.0.0.1:8010".to_string()];
//!     let client = Client::new(nodes)?;
//!
//!     let query = DiscoverRequest {
//!         capabilities: vec!["trading".into()],
//!         limit: Some(5),
//!         ..Default::default()
//!     };
//!     let found = client.discover(&query, ReadOptions::default()).await?;
//!     println!("{} agents", found.agents.len());
//!
//!     // `Ok(None)`: no agent qualifies right now (404 `no_agent_available`).
//!     match client.select("trading", SelectStrategy::LeastLoaded, ReadOptions::default()).await? {
//!         Some(agent) => println!("send work to {}", agent.endpoint),
//!         None => println!("no agent available"),
//!     }
//!
//!     // List, then follow every change after the listing's revision.
//!     let list = client.list_all_agents(&ListFilter::default(), ReadOptions::default()).await?;
//!     let opts = WatchOptions::after(list.revision).kind(EventKind::AgentRegistered);
//!     let mut events = client.watch(opts);
//!     while let Some(item) = events.next().await {
//!         match item {
//!             Ok(event) => println!("{} {:?}", event.revision, event.agent_id),
//!             // Fell behind the server's event window: list again.
//!             Err(WatchError::Compacted { .. }) => break,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     Ok(())
//! }
//! ```

mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod options;
pub mod session;
pub mod snapshot;
pub mod watch;

pub use client::{Client, Readiness, MEMBERSHIP_WAIT};
pub use config::{BearerToken, ClientBuilder, ClientConfig};
pub use error::ClientError;
pub use options::{Consistency, ReadOptions, Response, ResponseMeta, SelectStrategy};
pub use session::{
    AgentSession, Reporter, SessionBuilder, SessionConfig, SessionPhase, SessionStats,
};
pub use snapshot::{SaveError, SavedSnapshot};

pub use watch::{Watch, WatchError, WatchFilter, WatchOptions, WatchStart};

/// The wire types, re-exported so that users of the client need not depend on
/// `registry-types` directly.
pub use registry_types as types;
