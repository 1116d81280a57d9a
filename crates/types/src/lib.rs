//! Wire and replicated types of the agent registry.
//!
//! This crate knows nothing about tokio, openraft or HTTP frameworks: it is the
//! vocabulary shared by the state machine, the server, the client and the tests.
//!
//! - [`ids`]: validated identifiers and the registry's revision/time newtypes.
//! - [`agent`]: the agent record, its status ladder and capabilities.
//! - [`command`]: the replicated [`Command`] and its [`CommandResult`].
//! - [`api`]: HTTP request and response bodies, shared by server and client.
//! - [`error`]: the wire error shape `{"error": {"code", "message"}}`.
//! - [`limits`]: input limits and validation of requests.
//! - [`names`]: what the vocabulary enums (statuses, event kinds, read
//!   consistency, sort orders, ...) share: one wire name per variant, derived
//!   with strum beside serde.
//! - [`query`]: read options, sort orders and selection strategies, and the
//!   query strings of the read routes as typed structs, encoded by the client
//!   and decoded by the server.
//! - [`scaling`]: scaling policies and advisories.
//! - [`legacy`]: bodies of the routes existing agent code calls, in the
//!   shapes of the registries it was written for.
//! - [`backup`]: the header of a backup file (`GET /v1/snapshot`) and its
//!   checks.
//! - [`sealed`]: what the backup header and the snapshot headers of
//!   `registry-raft` share: magic, version, the body's length and CRC32C,
//!   the header's own CRC32C, written and checked in one place.
//! - [`membership`]: bodies of the membership routes (adding and
//!   removing nodes) and the progress of a change.
//! - [`auth`]: roles, token scopes and records, the actor of a change, and
//!   what each role may do.
//! - [`v1`]: the persisted shapes of format version 1, frozen, and their
//!   conversion to the current types; [`v3`]: records and events as
//!   snapshots of format 3 held them; [`v4`]: as snapshots of format 4
//!   held them (before Agent Cards).
//! - [`card`]: A2A Agent Cards: validation of both shapes (1.0, 0.2/0.3),
//!   the stored canonical form and its ETag, the mapping onto a record.

// Types that travel inside Raft entries and snapshots are encoded with bincode,
// which is not self-describing: they must never use `skip_serializing_if`
// (a skipped field shifts every field after it). `tests/bincode.rs` checks it.
pub mod agent;
pub mod api;
pub mod auth;
pub mod backup;
pub mod card;
pub mod command;
pub mod error;
pub mod ids;
pub mod legacy;
pub mod limits;
pub mod membership;
pub mod names;
pub mod query;
pub mod scaling;
pub mod sealed;
pub mod v1;
pub mod v3;
pub mod v4;

pub use agent::{AgentRecord, AgentStatus, Capability, CostEstimate, Metadata};
pub use card::AgentCard;
pub use command::{Command, CommandResult, Event, EventKind, ItemResult};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use ids::{AgentId, NodeId, Revision, Timestamp};
pub use names::{UnknownName, WireName};
pub use query::{Consistency, ReadOptions, SelectStrategy, SortBy};
// `VARIANTS` of the vocabulary enums is this trait's constant; re-exported
// so that users need not depend on strum to list them.
pub use strum::VariantArray;

/// HTTP header carrying the revision this node had applied when it answered.
pub const HEADER_REVISION: &str = "x-registry-revision";
/// HTTP header naming the node that answered.
pub const HEADER_NODE: &str = "x-registry-node";
/// HTTP header naming the leader the answering node knows of (empty when none).
pub const HEADER_LEADER: &str = "x-registry-leader";
/// HTTP header: milliseconds since the answering node last heard from its
/// leader (0 on the leader itself).
pub const HEADER_LAST_CONTACT: &str = "x-registry-last-contact-ms";
