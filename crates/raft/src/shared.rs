//! The applied registry state shared between the state-machine store (which
//! writes it) and the HTTP handlers (which read it).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::StoredMembership;
use tokio::sync::watch;

use registry_state::RegistryState;
use registry_types::Revision;

use crate::LogId;

/// Where the state machine stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedPosition {
    /// Index of the last applied log entry (0: none).
    pub log_index: u64,
    /// Registry revision after that entry.
    pub revision: Revision,
}

/// The registry together with the log position it reflects. Kept under one
/// lock so a snapshot always pairs a state with the log id it was built at.
pub struct AppliedState {
    pub registry: RegistryState,
    /// Last log entry applied to `registry`.
    pub last_applied: Option<LogId>,
    /// Last membership config applied.
    pub membership: StoredMembership<u64, openraft::BasicNode>,
}

impl AppliedState {
    pub fn new(registry: RegistryState) -> Self {
        AppliedState {
            registry,
            last_applied: None,
            membership: StoredMembership::default(),
        }
    }

    pub fn position(&self) -> AppliedPosition {
        AppliedPosition {
            log_index: self.last_applied.map_or(0, |l| l.index),
            revision: self.registry.revision(),
        }
    }
}

/// The applied state plus a watch of its position.
///
/// A std `RwLock`, not a tokio one: critical sections are short (one query or
/// one apply batch) and never cross an `.await`.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<RwLock<AppliedState>>,
    applied_tx: Arc<watch::Sender<AppliedPosition>>,
}

impl SharedState {
    pub fn new(state: AppliedState) -> Self {
        let (tx, _rx) = watch::channel(state.position());
        SharedState {
            inner: Arc::new(RwLock::new(state)),
            applied_tx: Arc::new(tx),
        }
    }

    /// Read access. The node aborts on any panic, so a poisoned lock is only
    /// seen in tests; the guard is recovered rather than propagating a panic.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn publish(&self, pos: AppliedPosition) {
        self.applied_tx.send_replace(pos);
    }

    /// The current applied position.
    pub fn position(&self) -> AppliedPosition {
        *self.applied_tx.borrow()
    }

    /// A receiver to wait on applied-position changes.
    pub fn subscribe(&self) -> watch::Receiver<AppliedPosition> {
        self.applied_tx.subscribe()
    }

    /// Waits until `pred` holds for the applied position. Cancel-safe; the
    /// caller bounds it with a timeout.
    pub async fn wait_for(&self, pred: impl Fn(&AppliedPosition) -> bool) -> AppliedPosition {
        let mut rx = self.subscribe();
        let res = rx.wait_for(|p| pred(p)).await.map(|p| *p);
        // The sender lives as long as `self`: it cannot be closed here.
        res.unwrap_or_else(|_| self.position())
    }
}
