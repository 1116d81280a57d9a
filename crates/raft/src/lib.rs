//! The Raft layer: openraft type configuration, RocksDB storage and the peer
//! network.
//!
//! - [`store`]: one RocksDB database per node holding the Raft log, the vote,
//!   the committed log id and the latest state-machine snapshot; the log
//!   store ([`LogStore`]) and the state-machine store ([`StateMachineStore`])
//!   share it.
//! - [`network`]: the HTTP client for Raft RPCs between nodes (bincode bodies
//!   under `/internal/raft/...`) and for the internal calls the server makes
//!   (forwarded writes, read-index requests).
//! - [`backup`]: a backup served from a node's snapshot, and the
//!   restore of one into the data directory of a new cluster's node.
//! - [`auth`]: the signature of node-to-node requests (HMAC-SHA256 keyed
//!   by the cluster secret), freshness and replay checks.
//! - [`disk`]: free space on the data directory against a floor; what the
//!   node refuses, and how the store waits, when the disk is full.
//! - [`frame`]: the header in front of `snapshot.bin` and of the snapshot
//!   data sent to peers: magic, version, cluster and node id, CRC32C.
//! - [`identity`]: the cluster id, created at bootstrap, kept in the data
//!   directory and carried by every node-to-node request and snapshot.
//! - [`observe`]: the figures the store and the network report (WAL sync
//!   and snapshot durations and sizes, peers' last answers) through a hook,
//!   so the server's metrics can show them without this crate knowing them.
//! - [`shared`]: the applied state as the HTTP layer sees it: the registry
//!   behind a lock plus a watch channel of the applied position, so reads can
//!   wait for an index or a revision.

// openraft's trait methods return `StorageError` (over 200 bytes) by value;
// our helpers return what the traits require.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod backup;
pub mod disk;
pub mod frame;
pub mod identity;
pub mod network;
pub mod observe;
pub mod shared;
pub mod store;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use registry_types::{Command, CommandResult, Revision};

pub use disk::{DiskSpace, DiskStatus};
pub use identity::{ClusterId, ClusterIdentity, IdentityError};
pub use network::{Network, PeerClient, PeerError, PeerHttp};
pub use observe::{BuildFailure, Observer, PeerAcks, StoreObserver};
pub use shared::{AppliedPosition, AppliedState, SharedState};
pub use store::{
    open_store, DecodeError, Inconsistency, LogStore, StateMachineStore, StoreError, StoreOptions,
};

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The registry revision after the entry was applied.
    pub revision: Revision,
    /// The entry's log index. A follower that forwarded a write waits until
    /// it has applied this far before answering; the revision alone does not
    /// move for changes without events (a scaling policy, a checkpoint).
    pub log_index: u64,
    /// The command's result; `None` for blank and membership entries.
    pub result: Option<CommandResult>,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the registry.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The registry's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A Raft log id of this configuration.
pub type LogId = openraft::LogId<u64>;
/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;

/// Version marker written in front of every persisted log entry and snapshot,
/// so a later release can recognise and migrate older encodings.
///
/// - 1: up to the release that added text cost estimates.
/// - 2: text cost estimates and capability parameters, registrations that
///   keep what they do not carry, counted heartbeats and discovery requests
///   (see `registry_types::v1` for what changed). Format 1 is still read.
pub const FORMAT_VERSION: u8 = 2;

/// Path prefix of the internal Raft RPC routes (same port as the public API).
pub const RAFT_RPC_PREFIX: &str = "/internal/raft";
