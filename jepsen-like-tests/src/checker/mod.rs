//! Checkers: each judges one property of a recorded [`History`].
//!
//! Layout, one module per property:
//! - [`linearizable`]: per-agent register/get/delete linearizability
//!   (Wing & Gong search with Lowe's memoization), final states included.
//! - [`lost_writes`]: every acknowledged register survives healing on every
//!   node, and nodes at the same applied index hold the same agents.
//! - [`liveness`]: no premature expiry after an acknowledged heartbeat; silent
//!   agents go offline within the documented bound.
//! - [`events`]: every watcher sees the event log in order, without gaps or
//!   duplicates across resumes; every node holds the same log.
//! - [`raft`]: one leader per term; indexes and terms never go back within a
//!   process incarnation; every node ends at the same applied index.
//!
//! Each checker returns a [`CheckResult`] with a [`Verdict`], how many items
//! it checked, and the [`Anomaly`]s it found. A checker says
//! [`Verdict::Unknown`] when it could not decide (search budget exhausted, no
//! final states to compare against): CI treats that as a failure too, because
//! "not checked" must never read as "passed".
//!
//! Every checker is deliberately conservative in one direction: an anomaly is
//! only reported when the history *proves* it (taking every `Unknown` outcome
//! both ways and every timing uncertainty in the system's favour), so a
//! reported anomaly is a real bug in the registry (or in the runner's
//! recording), never noise.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::{History, Micros};

pub mod events;
pub mod linearizable;
pub mod liveness;
pub mod lost_writes;
pub mod raft;

/// The outcome of one checker (or of all of them).
///
/// Ordered by severity so that combining verdicts is a `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The property holds on this history.
    Pass,
    /// The checker could not decide (budget exhausted, data missing).
    Unknown,
    /// The history proves the property is violated.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Unknown => "unknown",
            Verdict::Fail => "fail",
        }
    }
}

/// Which checker produced a result or an anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checker {
    Linearizable,
    LostWrites,
    Liveness,
    Events,
    Raft,
}

impl Checker {
    /// Every checker, in the order [`check_all`] runs them.
    pub const ALL: [Checker; 5] = [
        Checker::Linearizable,
        Checker::LostWrites,
        Checker::Liveness,
        Checker::Events,
        Checker::Raft,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Checker::Linearizable => "linearizable",
            Checker::LostWrites => "lost_writes",
            Checker::Liveness => "liveness",
            Checker::Events => "events",
            Checker::Raft => "raft",
        }
    }
}

/// What kind of violation an [`Anomaly`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// No order of an agent's operations explains what they returned.
    NotLinearizable,
    /// An acknowledged register is missing from a node's final state.
    LostWrite,
    /// Two nodes at the same applied index hold different agents or values.
    FinalsDisagree,
    /// An agent was seen offline/expired before its TTL since an
    /// acknowledged heartbeat had run out.
    PrematureExpiry,
    /// A silent agent was not seen offline within the documented bound.
    MissedExpiry,
    /// A watcher received revisions in decreasing order.
    OutOfOrder,
    /// A watcher received the same revision twice.
    DuplicateEvent,
    /// A watcher missed an event it should have received.
    EventGap,
    /// A watcher received an event the nodes' logs do not hold, or one whose
    /// kind/agent differs from the log's event at that revision.
    EventMismatch,
    /// A session received an event older than the revision it asked for.
    BeforeFromRevision,
    /// A session was refused as compacted although the window held its start.
    SpuriousCompaction,
    /// Nodes' final event logs differ at the same revision.
    LogsDisagree,
    /// Two nodes were leader in the same term.
    TwoLeaders,
    /// Commit index, applied index or term went back within an incarnation.
    WentBack,
    /// Nodes ended at different applied indexes or revisions.
    FinalsDiverge,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::NotLinearizable => "not_linearizable",
            AnomalyKind::LostWrite => "lost_write",
            AnomalyKind::FinalsDisagree => "finals_disagree",
            AnomalyKind::PrematureExpiry => "premature_expiry",
            AnomalyKind::MissedExpiry => "missed_expiry",
            AnomalyKind::OutOfOrder => "out_of_order",
            AnomalyKind::DuplicateEvent => "duplicate_event",
            AnomalyKind::EventGap => "event_gap",
            AnomalyKind::EventMismatch => "event_mismatch",
            AnomalyKind::BeforeFromRevision => "before_from_revision",
            AnomalyKind::SpuriousCompaction => "spurious_compaction",
            AnomalyKind::LogsDisagree => "logs_disagree",
            AnomalyKind::TwoLeaders => "two_leaders",
            AnomalyKind::WentBack => "went_back",
            AnomalyKind::FinalsDiverge => "finals_diverge",
        }
    }
}

/// One violation, with enough context for a human to find it in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub checker: Checker,
    pub kind: AnomalyKind,
    /// The agent concerned, if the anomaly is about one.
    pub agent_id: Option<String>,
    /// The node concerned, if the anomaly is about one.
    pub node: Option<u64>,
    /// The instants (µs since run start) the message refers to, earliest
    /// first, so a plot or a reader can jump there.
    pub times_us: Vec<Micros>,
    /// What went wrong, in one sentence with times in seconds.
    pub message: String,
}

/// One checker's judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub checker: Checker,
    /// The rule checked, in words (shown in the report).
    pub description: String,
    pub verdict: Verdict,
    /// How many items (agents, sessions, samples, ...) the rule was applied
    /// to; what an item is depends on the checker (see `description`).
    pub checked: u64,
    pub anomalies: Vec<Anomaly>,
    /// Named counts worth reporting that are not anomalies (exempted agents,
    /// unverifiable events, agents whose search ran out of budget, ...).
    pub counts: BTreeMap<String, u64>,
    /// Why the verdict is Unknown, or other caveats, in words.
    pub notes: Vec<String>,
}

impl CheckResult {
    fn new(checker: Checker, description: impl Into<String>) -> Self {
        CheckResult {
            checker,
            description: description.into(),
            verdict: Verdict::Pass,
            checked: 0,
            anomalies: Vec::new(),
            counts: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Records an anomaly (and so a failing verdict).
    fn anomaly(
        &mut self,
        kind: AnomalyKind,
        agent_id: Option<&str>,
        node: Option<u64>,
        mut times_us: Vec<Micros>,
        message: String,
    ) {
        times_us.sort_unstable();
        self.anomalies.push(Anomaly {
            checker: self.checker,
            kind,
            agent_id: agent_id.map(str::to_owned),
            node,
            times_us,
            message,
        });
    }

    /// Marks the result undecided, with the reason.
    fn unknown(&mut self, why: impl Into<String>) {
        self.notes.push(why.into());
        self.verdict = self.verdict.max(Verdict::Unknown);
    }

    fn count(&mut self, name: &str, n: u64) {
        *self.counts.entry(name.to_owned()).or_default() += n;
    }

    /// Fixes the verdict from the anomalies once the checker is done.
    fn finish(mut self) -> Self {
        if !self.anomalies.is_empty() {
            self.verdict = Verdict::Fail;
        }
        self
    }
}

/// Knobs of the checkers.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    /// Total wall-clock time the linearizability search may take over all
    /// agents. An agent whose search does not finish in its share is
    /// Unknown, never Pass.
    pub linearizability_budget: Duration,
    /// Upper bound on the memory of one agent's memoization cache (bytes,
    /// estimated); exceeding it makes that agent Unknown instead of letting
    /// the checker exhaust a shared machine.
    pub linearizability_max_cache_bytes: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            linearizability_budget: Duration::from_secs(10),
            linearizability_max_cache_bytes: 256 << 20,
        }
    }
}

impl CheckConfig {
    /// Rejects settings that would make every verdict Unknown.
    pub fn check(&self) -> Result<(), String> {
        if self.linearizability_budget.is_zero() {
            return Err("linearizability_budget must be more than zero".into());
        }
        if self.linearizability_max_cache_bytes < 1 << 20 {
            return Err("linearizability_max_cache_bytes must be at least 1 MiB".into());
        }
        Ok(())
    }
}

/// Every checker's result and the overall verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Fail if any checker failed; else Unknown if any could not decide;
    /// else Pass. CI fails on anything but Pass.
    pub verdict: Verdict,
    /// One result per checker, in [`Checker::ALL`] order.
    pub results: Vec<CheckResult>,
}

impl CheckReport {
    /// The result of one checker.
    pub fn result(&self, checker: Checker) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.checker == checker)
    }

    /// Every anomaly of every checker.
    pub fn anomalies(&self) -> impl Iterator<Item = &Anomaly> {
        self.results.iter().flat_map(|r| r.anomalies.iter())
    }
}

/// Runs every checker on `h`.
pub fn check_all(h: &History, cfg: &CheckConfig) -> CheckReport {
    let results = vec![
        linearizable::check(h, cfg),
        lost_writes::check(h),
        liveness::check(h),
        events::check(h),
        raft::check(h),
    ];
    let verdict = results
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Pass);
    CheckReport { verdict, results }
}

/// `1.234s`: how times appear in messages.
pub(crate) fn secs(us: Micros) -> String {
    format!("{:.3}s", us as f64 / 1e6)
}

/// Agents the liveness machinery removed (an `AGENT_EXPIRED` event in any
/// final log or watch session). Their value model no longer holds: a removal
/// is a write no client made, so the value checkers skip them.
pub(crate) fn expired_agents(h: &History) -> std::collections::BTreeSet<String> {
    let finals = h.finals.iter().flat_map(|f| f.events.iter());
    let watched = h.watches.iter().flat_map(|w| w.events.iter());
    finals
        .chain(watched)
        .filter(|e| is_removal_by_expiry(e))
        .filter_map(|e| e.agent_id.clone())
        .collect()
}

/// An event saying the agent was removed because it stayed silent. The
/// server reports such a removal as `AGENT_EXPIRED` (cause
/// `missed_heartbeats`); `AGENT_DEREGISTERED` is only ever a client's or an
/// operator's removal (see `docs/api.md`, "The ladder"), so the event kind
/// alone decides and the history needs no `cause` field.
pub(crate) fn is_removal_by_expiry(e: &crate::history::SeenEvent) -> bool {
    e.kind == registry_types::EventKind::AgentExpired.into_str()
}
