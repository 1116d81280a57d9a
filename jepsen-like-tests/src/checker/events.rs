//! The event stream: every watcher sees the log in order, without gaps or
//! duplicates, across resumes; every node holds the same log.
//!
//! **Resume semantics** (from `crates/server/src/events.rs` and
//! `docs/api.md`): `from_revision = N` asks for the events with revision
//! `>= N` (inclusive; the server serves those after `N - 1`), so a watcher
//! that last saw `L` resumes with `from_revision = L + 1`. A runner resuming
//! with the `Last-Event-ID: L` header must record `from_revision = L + 1`. A
//! recorded `from_revision = 0` is taken as "start unknown" (the server's
//! "from now on"): that session's coverage starts at its first event. A
//! start below the node's window is refused with 410 `revision_compacted`
//! (session `end = "compacted"`).
//!
//! **The merged log.** Each final state holds its node's event log from the
//! oldest revision its bounded window still keeps. On the revisions two nodes
//! both hold, they must agree (same revisions, kinds, agents and statuses, in
//! the same order); the union is the merged log. A revision outside every
//! node's window cannot be compared: it is counted as unverifiable, never an
//! anomaly.
//!
//! **Per watcher** (watchers use no filter), over its sessions by opening
//! time:
//! - revisions strictly increase within and across sessions: a repeat is a
//!   duplicate, a smaller one is out of order;
//! - no event below a session's `from_revision`;
//! - each received event matches the merged log's event at that revision;
//! - coverage: from the first session's start to the last revision seen,
//!   every merged event was received (exactly once, by the rules above). A
//!   session that ended `compacted` closes the coverage (the watcher must
//!   re-list and may legitimately skip ahead); that refusal itself is an
//!   anomaly if the node's final window still held the session's start
//!   (`from_revision >=` its oldest held revision: the window only moves
//!   forward, so it held it then too).
//!
//! With watchers but no final logs, only the ordering rules can be checked
//! and the verdict is Unknown.
use std::collections::{BTreeMap, BTreeSet};

use crate::history::{FinalState, History, SeenEvent, WatchSession};

use super::{secs, AnomalyKind, CheckResult, Checker};

const DESCRIPTION: &str = "Per watcher, across its sessions in opening order: revisions strictly increase (no duplicates, no reordering), no event below a session's from_revision (inclusive), every received event matches the nodes' merged final event log, and every logged event from the watcher's first start to the last revision it saw was received (a 'compacted' session resets this, and is itself an anomaly if the node still held its start). Nodes' final event logs agree wherever they overlap. Revisions outside every node's final window are unverifiable, not anomalies. Items checked: watch sessions, then node logs compared.";

/// The nodes' final event logs combined.
struct Merged<'a> {
    events: BTreeMap<u64, &'a SeenEvent>,
    /// Each node's held window: (node, first, last revision).
    windows: Vec<(u64, u64, u64)>,
}

impl<'a> Merged<'a> {
    fn new(finals: &'a [FinalState]) -> Self {
        let mut events = BTreeMap::new();
        let mut windows = Vec::new();
        for f in finals {
            if let (Some(first), Some(last)) = (f.events.first(), f.events.last()) {
                windows.push((f.node, first.revision, last.revision));
            }
            for e in &f.events {
                events.entry(e.revision).or_insert(e);
            }
        }
        Merged { events, windows }
    }

    /// Whether some node's final window covers `rev`.
    fn verifiable(&self, rev: u64) -> bool {
        self.windows.iter().any(|(_, a, b)| *a <= rev && rev <= *b)
    }

    /// The oldest revision `node`'s final log holds.
    fn oldest_on(&self, node: u64) -> Option<u64> {
        self.windows.iter().find(|w| w.0 == node).map(|w| w.1)
    }
}

/// Runs the checker.
pub fn check(h: &History) -> CheckResult {
    let mut result = CheckResult::new(Checker::Events, DESCRIPTION);
    compare_logs(&mut result, &h.finals);
    let merged = Merged::new(&h.finals);
    let mut by_watcher: BTreeMap<u32, Vec<&WatchSession>> = BTreeMap::new();
    for s in &h.watches {
        by_watcher.entry(s.watcher).or_default().push(s);
    }
    if merged.windows.is_empty() && h.watches.iter().any(|s| !s.events.is_empty()) {
        result.unknown("no final event logs: received events could not be compared with the log");
    }
    for (watcher, mut sessions) in by_watcher {
        sessions.sort_by_key(|s| s.opened_us);
        Watcher::new(watcher, &merged).run(&mut result, &sessions);
    }
    result.finish()
}

/// The comparable part of an event.
fn key(e: &SeenEvent) -> (&str, Option<&str>, Option<&str>) {
    (e.kind.as_str(), e.agent_id.as_deref(), e.status.as_deref())
}

fn show(e: &SeenEvent) -> String {
    match &e.agent_id {
        Some(a) => format!("{} {a} (revision {})", e.kind, e.revision),
        None => format!("{} (revision {})", e.kind, e.revision),
    }
}

/// Nodes' final logs agree on the revisions they both hold.
fn compare_logs(result: &mut CheckResult, finals: &[FinalState]) {
    for f in finals {
        if let Some(w) = f.events.windows(2).find(|w| w[1].revision <= w[0].revision) {
            result.anomaly(
                AnomalyKind::LogsDisagree,
                None,
                Some(f.node),
                Vec::new(),
                format!(
                    "n{}'s final event log is not in strictly increasing revision order ({} then {})",
                    f.node, w[0].revision, w[1].revision
                ),
            );
        }
    }
    let Some((first, rest)) = finals.split_first() else {
        return;
    };
    fn map(f: &FinalState) -> BTreeMap<u64, &SeenEvent> {
        f.events.iter().map(|e| (e.revision, e)).collect()
    }
    let base = map(first);
    for other in rest {
        result.checked += 1;
        let theirs = map(other);
        let (Some(lo), Some(hi)) = (
            base.keys().next().max(theirs.keys().next()),
            base.keys().next_back().min(theirs.keys().next_back()),
        ) else {
            continue;
        };
        let revs: BTreeSet<u64> = base
            .range(lo..=hi)
            .chain(theirs.range(lo..=hi))
            .map(|(r, _)| *r)
            .collect();
        let diffs: Vec<String> = revs
            .into_iter()
            .filter_map(|r| match (base.get(&r), theirs.get(&r)) {
                (Some(a), Some(b)) if key(a) == key(b) => None,
                (a, b) => Some(format!(
                    "revision {r}: {} vs {}",
                    a.map_or("missing".to_owned(), |e| show(e)),
                    b.map_or("missing".to_owned(), |e| show(e))
                )),
            })
            .collect();
        if let Some(d) = diffs.first() {
            result.anomaly(
                AnomalyKind::LogsDisagree,
                None,
                Some(other.node),
                Vec::new(),
                format!(
                    "n{} and n{} hold different event logs on revisions {lo}..={hi} ({} differences, first {d})",
                    first.node,
                    other.node,
                    diffs.len()
                ),
            );
        }
    }
}

/// One watcher's walk over its sessions.
struct Watcher<'m, 'a> {
    id: u32,
    merged: &'m Merged<'a>,
    /// Highest revision received so far (all sessions).
    last: Option<u64>,
    /// Where the current coverage started, if one is open.
    start: Option<u64>,
    /// Revisions received in the current coverage.
    received: BTreeSet<u64>,
    /// (session opened_us, from_revision, first revision it received) of the
    /// current coverage's sessions, to name the one that skipped a gap.
    sessions: Vec<(u64, u64, Option<u64>)>,
}

impl<'m, 'a> Watcher<'m, 'a> {
    fn new(id: u32, merged: &'m Merged<'a>) -> Self {
        Watcher {
            id,
            merged,
            last: None,
            start: None,
            received: BTreeSet::new(),
            sessions: Vec::new(),
        }
    }

    fn run(mut self, result: &mut CheckResult, sessions: &[&WatchSession]) {
        for s in sessions {
            result.checked += 1;
            self.session(result, s);
        }
        self.close(result);
    }

    fn session(&mut self, result: &mut CheckResult, s: &WatchSession) {
        let w = self.id;
        if self.start.is_none() {
            self.start = match s.from_revision {
                0 => s.events.first().map(|e| e.revision),
                from => Some(from),
            };
        }
        self.sessions.push((
            s.opened_us,
            s.from_revision,
            s.events.first().map(|e| e.revision),
        ));
        for e in &s.events {
            let at = vec![e.received_us];
            if s.from_revision > 0 && e.revision < s.from_revision {
                result.anomaly(
                    AnomalyKind::BeforeFromRevision,
                    e.agent_id.as_deref(),
                    Some(s.node),
                    at.clone(),
                    format!(
                        "watcher {w}: the session on n{} opened at {} with from_revision {} received {} at {}",
                        s.node,
                        secs(s.opened_us),
                        s.from_revision,
                        show(e),
                        secs(e.received_us)
                    ),
                );
            }
            match self.last {
                Some(l) if self.received.contains(&e.revision) || e.revision == l => {
                    result.anomaly(
                        AnomalyKind::DuplicateEvent,
                        e.agent_id.as_deref(),
                        Some(s.node),
                        at.clone(),
                        format!(
                            "watcher {w}: received {} again at {} on n{} (session opened {} with from_revision {})",
                            show(e),
                            secs(e.received_us),
                            s.node,
                            secs(s.opened_us),
                            s.from_revision
                        ),
                    );
                }
                Some(l) if e.revision < l => {
                    result.anomaly(
                        AnomalyKind::OutOfOrder,
                        e.agent_id.as_deref(),
                        Some(s.node),
                        at.clone(),
                        format!(
                            "watcher {w}: received {} at {} on n{} after already having revision {l}",
                            show(e),
                            secs(e.received_us),
                            s.node
                        ),
                    );
                }
                _ => {}
            }
            self.last = Some(self.last.map_or(e.revision, |l| l.max(e.revision)));
            self.received.insert(e.revision);
            self.compare(result, s, e);
        }
        if s.end == "compacted" {
            if let Some(oldest) = self.merged.oldest_on(s.node) {
                if s.from_revision >= oldest {
                    result.anomaly(
                        AnomalyKind::SpuriousCompaction,
                        None,
                        Some(s.node),
                        vec![s.opened_us, s.closed_us],
                        format!(
                            "watcher {w}: n{} refused from_revision {} as compacted at {}, yet its final log still holds revisions from {oldest}",
                            s.node,
                            s.from_revision,
                            secs(s.closed_us)
                        ),
                    );
                }
            }
            self.close(result);
        }
    }

    /// One received event against the merged log.
    fn compare(&mut self, result: &mut CheckResult, s: &WatchSession, e: &SeenEvent) {
        let w = self.id;
        match self.merged.events.get(&e.revision) {
            Some(logged) => {
                // The watcher may not record the status; compare it only
                // when both sides have one.
                let same = logged.kind == e.kind
                    && logged.agent_id == e.agent_id
                    && (e.status.is_none() || logged.status.is_none() || logged.status == e.status);
                if !same {
                    result.anomaly(
                        AnomalyKind::EventMismatch,
                        e.agent_id.as_deref(),
                        Some(s.node),
                        vec![e.received_us],
                        format!(
                            "watcher {w}: received {} at {} on n{} but the nodes' logs hold {} at that revision",
                            show(e),
                            secs(e.received_us),
                            s.node,
                            show(logged)
                        ),
                    );
                }
            }
            None if self.merged.verifiable(e.revision) => {
                result.anomaly(
                    AnomalyKind::EventMismatch,
                    e.agent_id.as_deref(),
                    Some(s.node),
                    vec![e.received_us],
                    format!(
                        "watcher {w}: received {} at {} on n{}, a revision no node's final log holds although their windows cover it",
                        show(e),
                        secs(e.received_us),
                        s.node
                    ),
                );
            }
            None => result.count("received_unverifiable", 1),
        }
    }

    /// Ends the current coverage: every logged event in it was received.
    fn close(&mut self, result: &mut CheckResult) {
        let w = self.id;
        let (Some(start), Some(last)) = (self.start.take(), self.last) else {
            self.received.clear();
            self.sessions.clear();
            return;
        };
        if last < start {
            // Nothing received since this coverage began.
            self.received.clear();
            self.sessions.clear();
            return;
        }
        let mut missing: Vec<u64> = Vec::new();
        for (&rev, _) in self.merged.events.range(start..=last) {
            if !self.received.contains(&rev) {
                missing.push(rev);
            }
        }
        let unverifiable = (start..=last)
            .filter(|r| !self.merged.verifiable(*r))
            .count() as u64;
        result.count("coverage_unverifiable_revisions", unverifiable);
        // One anomaly per run of consecutive missing revisions.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for r in missing {
            match runs.last_mut() {
                Some((_, b)) if self.merged.events.range(*b + 1..r).next().is_none() => *b = r,
                _ => runs.push((r, r)),
            }
        }
        for (a, b) in runs {
            let n = self.merged.events.range(a..=b).count();
            let first = self.merged.events[&a];
            // The session that went past the gap.
            let by = self
                .sessions
                .iter()
                .find(|(_, from, first_seen)| *from > a || first_seen.is_some_and(|f| f > a));
            let who = match by {
                Some((opened, from, _)) => format!(
                    "; the session opened at {} with from_revision {from} went past them",
                    secs(*opened)
                ),
                None => String::new(),
            };
            result.anomaly(
                AnomalyKind::EventGap,
                first.agent_id.as_deref(),
                None,
                by.map(|s| vec![s.0]).unwrap_or_default(),
                format!(
                    "watcher {w}: never received revisions {a}..={b} ({n} events, first {}) although it covered {start}..={last}{who}",
                    show(first)
                ),
            );
        }
        self.received.clear();
        self.sessions.clear();
    }
}
