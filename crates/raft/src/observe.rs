//! What the storage and the network report to whoever watches them (the
//! server's metrics), without this crate knowing who that is.
//!
//! - [`StoreObserver`]: the store calls it once per WAL sync and once per
//!   snapshot built or installed (or that failed), with durations and
//!   sizes. Every method has a default that ignores the call.
//! - [`Observer`]: the handle the store holds (a no-op by default), given
//!   in [`crate::StoreOptions::observer`].
//! - [`PeerAcks`]: when each peer last answered this node's AppendEntries,
//!   recorded by [`crate::Network`]; on the leader, that is when each
//!   member last acknowledged it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a snapshot build wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildFailure {
    /// No room on the disk for it (checked before, or the write ran out):
    /// the previous snapshot and the log are kept.
    NoSpace,
    /// Encoding or writing it failed otherwise.
    Error,
}

impl BuildFailure {
    /// The name used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildFailure::NoSpace => "no_space",
            BuildFailure::Error => "error",
        }
    }
}

/// Receives the storage layer's figures. Called on the store's own threads
/// and tasks: implementations must be quick and must not block (an atomic
/// add, a histogram observation).
pub trait StoreObserver: Send + Sync + 'static {
    /// One `flush_wal(true)` (or its failure) that confirmed `appends`
    /// appends; `took` is the sync itself.
    fn wal_synced(&self, took: Duration, appends: usize) {
        let _ = (took, appends);
    }

    /// A snapshot built and written: `took` from the start of the build to
    /// the file in place, `bytes` its framed size.
    fn snapshot_built(&self, took: Duration, bytes: u64) {
        let _ = (took, bytes);
    }

    /// A build that wrote nothing.
    fn snapshot_build_failed(&self, why: BuildFailure) {
        let _ = why;
    }

    /// A snapshot from the leader checked, written and made the state:
    /// `took` from its arrival in the store to the state swapped.
    fn snapshot_installed(&self, took: Duration, bytes: u64) {
        let _ = (took, bytes);
    }

    /// A snapshot from the leader refused (damaged, another cluster, does
    /// not decode) or that could not be written.
    fn snapshot_install_failed(&self) {}
}

/// Ignores everything: the observer of tests and tools.
struct Nobody;

impl StoreObserver for Nobody {}

/// The observer a store reports to. Cheap to clone; a no-op by default.
#[derive(Clone)]
pub struct Observer(Arc<dyn StoreObserver>);

impl Observer {
    pub fn new(observer: Arc<dyn StoreObserver>) -> Self {
        Observer(observer)
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer(Arc::new(Nobody))
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl std::ops::Deref for Observer {
    type Target = dyn StoreObserver;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// When each peer last answered one of this node's Raft RPCs
/// (AppendEntries, a snapshot, a vote; whatever the answer said, a refusal
/// included: it was reached and it spoke). Only a leader sends
/// AppendEntries, so on the leader this is each member's last
/// acknowledgement: the metrics report it, and a membership change judges
/// from it which voters it would leave reachable (openraft 0.9's metrics
/// give a quorum's last acknowledgement, not each peer's). A node that no
/// longer leads keeps what it saw, and readers look at it only while it
/// leads. Cheap to clone.
///
/// A std `Mutex`: the critical section is one map insert or one copy of a
/// map of a few members, never across an `.await`.
#[derive(Clone, Debug, Default)]
pub struct PeerAcks(Arc<Mutex<BTreeMap<u64, Instant>>>);

impl PeerAcks {
    /// Records that `peer` answered now.
    pub fn heard(&self, peer: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(peer, Instant::now());
        }
    }

    /// Time since each peer last answered; peers never heard are absent.
    pub fn ages(&self) -> BTreeMap<u64, Duration> {
        let Ok(m) = self.0.lock() else {
            return BTreeMap::new();
        };
        m.iter().map(|(id, at)| (*id, at.elapsed())).collect()
    }

    /// Time since `peer` last answered; `None` if it never has.
    pub fn since(&self, peer: u64) -> Option<Duration> {
        let m = self.0.lock().ok()?;
        m.get(&peer).map(|at| at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_keep_the_latest_answer_per_peer() {
        let acks = PeerAcks::default();
        assert!(acks.ages().is_empty());
        acks.heard(2);
        acks.heard(3);
        let first = acks.ages();
        assert_eq!(first.keys().copied().collect::<Vec<_>>(), [2, 3]);
        std::thread::sleep(Duration::from_millis(5));
        acks.heard(2);
        let second = acks.ages();
        assert!(second[&2] < second[&3], "{second:?}");
    }

    #[test]
    fn the_default_observer_ignores_every_call() {
        let o = Observer::default();
        o.wal_synced(Duration::from_millis(2), 3);
        o.snapshot_built(Duration::from_millis(2), 10);
        o.snapshot_build_failed(BuildFailure::NoSpace);
        o.snapshot_installed(Duration::from_millis(2), 10);
        o.snapshot_install_failed();
        assert_eq!(format!("{o:?}"), "Observer");
    }
}
