//! The pure registry state machine.
//!
//! Everything here is deterministic: [`RegistryState::apply`] never reads a
//! clock, never draws a random number and never does I/O. Time and assigned
//! ids arrive inside the [`Command`](registry_types::Command), stamped by the
//! leader, so every replica that applies the same log reaches the same state
//! and the same revision.
//! It is also total: whatever a committed entry holds, apply never panics;
//! a command that breaks the public API's rules is rejected
//! (`Rejection::Invalid`) on every replica and changes nothing.
//!
//! - [`machine`]: the agent table, the single `apply` entry point (one
//!   `apply_<command>` function per variant), snapshots and restore.
//! - [`index`]: the sharded inverted index (capability names, tags, words,
//!   types, runtimes, statuses → agent sets) and text normalization.
//! - [`query`]: listing with cursors, capability search, stats.
//! - [`events`]: the bounded event window behind watches.
//! - [`ranked`]: per-capability orderings by performance, load and health,
//!   so discovery with one of those sorts stops after `limit` hits.
//! - [`cards`]: the fleet's A2A Agent Cards listed by skill, tag, media
//!   type, binding, words and status.
//! - [`discover`]: structured discovery (constraints over the index, filters, ranking).
//! - [`scaling`]: scaling policies, evaluated into advisories on checkpoints.

pub mod cards;
pub mod discover;
pub mod events;
pub mod index;
pub mod machine;
pub mod query;
pub mod ranked;
pub mod scaling;

pub use events::EventLog;
pub use machine::{
    Counters, RegistryState, RestoreError, SnapshotData, SnapshotDataV2, SnapshotDataV3,
    SnapshotDataV4, SnapshotView, StateConfig, SNAPSHOT_FORMAT_VERSION,
};
