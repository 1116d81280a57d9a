//! The bounded event window.
//!
//! Events are kept in revision order up to a configured count. A watcher that
//! asks for revisions older than the window is told so explicitly
//! ([`EventLog::since`] returns `Err(oldest)`), never served a silent gap.

use std::collections::VecDeque;

use registry_types::{Event, Revision};

/// The newest `capacity` events, in revision order.
#[derive(Clone, Debug)]
pub struct EventLog {
    capacity: usize,
    events: VecDeque<Event>,
    /// Highest revision ever dropped from the window (0: nothing dropped).
    compacted: Revision,
}

/// A request reached below the window: the oldest revision still resumable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// Events after this revision are all still held.
    pub compacted_through: Revision,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        EventLog {
            capacity: capacity.max(1),
            events: VecDeque::new(),
            compacted: 0,
        }
    }

    pub fn push(&mut self, event: Event) {
        debug_assert!(self
            .events
            .back()
            .is_none_or(|last| last.revision < event.revision));
        self.events.push_back(event);
        while self.events.len() > self.capacity {
            if let Some(old) = self.events.pop_front() {
                self.compacted = old.revision;
            }
        }
    }

    /// Events with revision > `after`, oldest first, at most `limit`.
    pub fn since(&self, after: Revision, limit: usize) -> Result<Vec<Event>, Compacted> {
        Ok(self.iter_after(after)?.take(limit).cloned().collect())
    }

    /// Borrows the events with revision > `after`, oldest first, so a
    /// filtering reader clones only what it keeps.
    pub fn iter_after(&self, after: Revision) -> Result<impl Iterator<Item = &Event>, Compacted> {
        if after < self.compacted {
            return Err(Compacted {
                compacted_through: self.compacted,
            });
        }
        let start = self.events.partition_point(|e| e.revision <= after);
        Ok(self.events.range(start..))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn compacted_through(&self) -> Revision {
        self.compacted
    }

    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Rebuilds a window from a snapshot.
    pub fn restore(capacity: usize, compacted: Revision, events: Vec<Event>) -> Self {
        let mut log = EventLog::new(capacity);
        log.compacted = compacted;
        for e in events {
            log.push(e);
        }
        log
    }
}
