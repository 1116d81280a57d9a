//! Prometheus metrics of a node, served at `GET /metrics`.
//!
//! Two families of names:
//! - `registry_*`: the node's own figures (HTTP, Raft, storage, liveness,
//!   disk, access control);
//! - `agent_registry_*`: the names the dashboards of the Dev-Tools registry
//!   already query (agents by status, capabilities, stale agents, heartbeat
//!   latency, discovery requests by capability), kept as they are named
//!   there. Three of them are gauges whose names end in `_total`; the
//!   Prometheus lint forbids that suffix on a gauge, so they are exposed
//!   without a type (`untyped`), which Prometheus reads as a gauge.
//!
//! Every figure derived from the registry is O(1) or O(statuses) at a
//! scrape: counts by status come from the status index, the capability
//! total is kept by apply. The set of capabilities that get their own
//! discovery label ([`CapabilityRequests`]) is chosen in the background.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::RaftMetrics;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use registry_raft::{BuildFailure, Observer, StoreObserver};
use registry_state::RegistryState;
use registry_types::{AgentStatus, VariantArray};

/// Capabilities that get a `capability` label of their own in
/// `agent_registry_discovery_requests_total`: the ones held by the most
/// agents; requests for any other capability count under `other`.
pub const DISCOVERY_LABELS: usize = 50;

/// The label value of discovery requests for a capability outside the top
/// [`DISCOVERY_LABELS`] (or naming none).
pub const OTHER_CAPABILITY: &str = "other";

/// The node's metrics. Registered once at start.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The `agent_registry_*` metrics: no `registry_` prefix.
    compat: Registry,
    /// The registry's figures at the last scrape, written as untyped
    /// `agent_registry_*` samples (see the module doc).
    figures: Arc<Mutex<RegistryFigures>>,
    /// HTTP requests by route template and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route template, in seconds.
    pub http_latency: HistogramVec,
    pub leader_changes: IntCounter,
    pub forwarded_writes: IntCounter,
    /// Calls that carried forwarded writes to the leader (each one or more).
    pub forward_calls: IntCounter,
    /// Raft entries the leader proposed for client writes (group commit).
    pub write_rounds: IntCounter,
    /// Client writes those entries carried.
    pub write_round_commands: IntCounter,
    /// Elections this node stood in after winning a pre-vote.
    pub elections_started: IntCounter,
    /// Pre-votes this node asked for and did not win.
    pub pre_votes_lost: IntCounter,
    pub read_index_rounds: IntCounter,
    pub raft_term: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_last_log_index: IntGauge,
    /// Last log index covered by this node's snapshot (0: none).
    pub raft_snapshot_index: IntGauge,
    /// Last log index removed from this node's log by compaction (0: none);
    /// a follower that needs an entry at or below it gets a snapshot.
    pub raft_purged_index: IntGauge,
    pub raft_is_leader: IntGauge,
    pub registry_revision: IntGauge,
    pub registry_agents: IntGauge,
    /// Heartbeats recorded by this node as leader.
    pub heartbeats: IntCounter,
    /// Forwarded heartbeat calls (each carries many heartbeats).
    pub forwarded_heartbeat_calls: IntCounter,
    /// Liveness checkpoints committed.
    pub checkpoints: IntCounter,
    /// Liveness transitions committed (unhealthy, offline, removed).
    pub expiries: IntCounter,
    /// 1 while the mass-expiry brake is engaged on this leader.
    pub brake_engaged: IntGauge,
    /// Leader's expiry sweeps by phase: `plan` (the pass over every record
    /// and lease) and `commit` (proposing the transitions until applied).
    pub sweep_seconds: HistogramVec,
    /// Client and peer connections open now (at most `--max-connections`).
    pub http_connections: IntGauge,
    /// Connections the node closed by reason: `evicted` (the idlest, for a
    /// new one at the cap), `refused` (a new one at the cap, every other
    /// busy), `header_timeout` (headers not in within
    /// `--header-read-timeout-ms`), `tls_handshake` (a TLS handshake that
    /// failed, e.g. a client certificate from another CA, or did not end
    /// within `--header-read-timeout-ms`).
    pub http_connections_closed: IntCounterVec,
    /// Certificates read again (SIGHUP or a changed file), by certificate
    /// (`public`, `peer`).
    pub tls_reloads: IntCounterVec,
    /// Reloads that failed, the previous certificate kept, by certificate.
    pub tls_reload_failures: IntCounterVec,
    /// Event streams and long polls served now (at most `--max-watchers`).
    pub event_watchers: IntGauge,
    /// Event streams and long polls refused with `too_many_watchers`.
    pub event_watchers_refused: IntCounter,
    /// Bytes free on the data directory's file system.
    pub disk_free_bytes: IntGauge,
    /// Bytes the node keeps free (`--min-free-disk-mb`).
    pub disk_min_free_bytes: IntGauge,
    /// 1 while the node is short of disk space (writes refused).
    pub disk_no_space: IntGauge,
    /// Store writes that failed for want of space.
    pub disk_no_space_errors: IntCounter,
    /// Store writes waiting for space now.
    pub disk_waiting_writes: IntGauge,
    /// Writes refused with `no_space`.
    pub writes_refused_no_space: IntCounter,
    /// Requests refused by access control, by reason (no_token,
    /// unknown_token, expired_token, forbidden).
    pub auth_refused: IntCounterVec,
    /// Highest log index this node knows committed (see `ClusterInfo`).
    pub raft_commit_index: IntGauge,
    /// Committed entries this node has not applied yet.
    pub raft_apply_lag: IntGauge,
    /// 1 while this node knows a leader.
    pub raft_has_leader: IntGauge,
    /// Voting members in the membership this node applied.
    pub raft_voters: IntGauge,
    /// Non-voting members (learners) in that membership.
    pub raft_learners: IntGauge,
    /// On the leader, per other member: 1 when it answered an
    /// AppendEntries within the election timeout.
    pub raft_member_reachable: IntGaugeVec,
    /// On the leader, per other member: seconds since it last answered an
    /// AppendEntries (absent until it first has).
    pub raft_member_last_ack: GaugeVec,
    /// On the leader, per other member: the last log index known to be
    /// replicated to it.
    pub raft_member_matched_index: IntGaugeVec,
    /// On the leader, per other member: entries of the leader's log not yet
    /// replicated to it.
    pub raft_member_lag: IntGaugeVec,
    /// One WAL sync (group commit: it confirms every append queued
    /// meanwhile), in seconds.
    pub wal_sync_seconds: Histogram,
    /// Appends confirmed by WAL syncs.
    pub wal_synced_appends: IntCounter,
    /// Snapshot builds (encode, checksum, write), in seconds.
    pub snapshot_build_seconds: Histogram,
    /// Size of the last snapshot built, in bytes.
    pub snapshot_build_bytes: IntGauge,
    /// Builds that wrote nothing, by reason (`no_space`, `error`).
    pub snapshot_build_failures: IntCounterVec,
    /// Snapshot installs from the leader (check, write, swap), in seconds.
    pub snapshot_install_seconds: Histogram,
    /// Size of the last snapshot installed, in bytes.
    pub snapshot_install_bytes: IntGauge,
    /// Snapshots from the leader refused or not written.
    pub snapshot_install_failures: IntCounter,
    /// `agent_registry_heartbeat_latency_seconds`: one heartbeat from
    /// arrival at this node to its answer (forwarding to the leader
    /// included), batch items counted one by one. No per-agent label.
    pub heartbeat_latency: Histogram,
    /// `agent_registry_discovery_requests_total{capability}`.
    pub discovery_by_capability: CapabilityRequests,
}

/// What the registry held at the last scrape, for the untyped
/// `agent_registry_*` samples.
#[derive(Clone, Debug, Default, PartialEq)]
struct RegistryFigures {
    /// Agents per status, every status listed (zeros included).
    by_status: Vec<(AgentStatus, u64)>,
    /// Capabilities over all agents.
    capabilities: u64,
    /// Agents that missed their heartbeat deadline (see [`stale_agents`]).
    stale: u64,
}

/// Agents that missed their heartbeat deadline and have not beaten since:
/// those the liveness ladder holds as `unhealthy` (silent past
/// `ttl_seconds`) or `offline` (past `offline_after_seconds`). An agent an
/// operator set to one of them, or that registered as `offline` on the
/// Dev-Tools route, counts too: the registry cannot tell them apart.
pub fn stale_agents(registry: &RegistryState) -> u64 {
    [AgentStatus::Unhealthy, AgentStatus::Offline]
        .into_iter()
        .map(|s| registry.count_status(s) as u64)
        .sum()
}

/// `agent_registry_discovery_requests_total{capability}` with a bounded
/// label set: only the capabilities in the current top set (at most
/// [`DISCOVERY_LABELS`], chosen by [`CapabilityRequests::relabel`]) have a
/// series of their own; every other request counts under `other`. A
/// capability that leaves the top set loses its series (Prometheus marks
/// it stale); should it come back, it starts again from 0, which
/// `rate()` and `increase()` read as a counter reset. Cheap to clone.
#[derive(Clone)]
pub struct CapabilityRequests {
    vec: IntCounterVec,
    other: IntCounter,
    /// The counter of each capability in the top set. A std `RwLock`: the
    /// hot path reads it for one lookup; it is written every refresh.
    labelled: Arc<RwLock<HashMap<String, IntCounter>>>,
}

impl CapabilityRequests {
    fn new(vec: IntCounterVec) -> Self {
        CapabilityRequests {
            other: vec.with_label_values(&[OTHER_CAPABILITY]),
            vec,
            labelled: Arc::default(),
        }
    }

    /// Counts one request for `capability` (normalized).
    pub fn count(&self, capability: &str) {
        let labelled = self.labelled.read().unwrap_or_else(|e| e.into_inner());
        match labelled.get(capability) {
            Some(c) => c.inc(),
            None => self.other.inc(),
        }
    }

    /// Counts one request that names no capability (under `other`).
    pub fn count_unnamed(&self) {
        self.other.inc();
    }

    /// Makes `top` (at most [`DISCOVERY_LABELS`] are taken) the capabilities
    /// with a series of their own; the series of those that left are
    /// removed. A capability named `other` keeps counting under `other`.
    pub fn relabel(&self, top: impl IntoIterator<Item = String>) {
        let top: Vec<String> = top
            .into_iter()
            .filter(|c| c != OTHER_CAPABILITY)
            .take(DISCOVERY_LABELS)
            .collect();
        let mut labelled = self.labelled.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = labelled
            .keys()
            .filter(|c| !top.contains(c))
            .cloned()
            .collect();
        for c in gone {
            labelled.remove(&c);
            let _ = self.vec.remove_label_values(&[c.as_str()]);
        }
        for c in top {
            let vec = &self.vec;
            labelled
                .entry(c)
                .or_insert_with_key(|c| vec.with_label_values(&[c.as_str()]));
        }
    }

    /// The capabilities with a series of their own now.
    pub fn labelled(&self) -> Vec<String> {
        let labelled = self.labelled.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = labelled.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The store's figures into the node's metrics (see
/// [`registry_raft::observe`]).
struct StoreFigures {
    wal_sync_seconds: Histogram,
    wal_synced_appends: IntCounter,
    snapshot_build_seconds: Histogram,
    snapshot_build_bytes: IntGauge,
    snapshot_build_failures: IntCounterVec,
    snapshot_install_seconds: Histogram,
    snapshot_install_bytes: IntGauge,
    snapshot_install_failures: IntCounter,
}

impl StoreObserver for StoreFigures {
    fn wal_synced(&self, took: Duration, appends: usize) {
        self.wal_sync_seconds.observe(took.as_secs_f64());
        self.wal_synced_appends.inc_by(appends as u64);
    }

    fn snapshot_built(&self, took: Duration, bytes: u64) {
        self.snapshot_build_seconds.observe(took.as_secs_f64());
        self.snapshot_build_bytes.set(clamp(bytes));
    }

    fn snapshot_build_failed(&self, why: BuildFailure) {
        self.snapshot_build_failures
            .with_label_values(&[why.as_str()])
            .inc();
    }

    fn snapshot_installed(&self, took: Duration, bytes: u64) {
        self.snapshot_install_seconds.observe(took.as_secs_f64());
        self.snapshot_install_bytes.set(clamp(bytes));
    }

    fn snapshot_install_failed(&self) {
        self.snapshot_install_failures.inc();
    }
}

/// A u64 as a gauge value (which is signed).
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // The `expect("valid metric")` below cannot fire on anything a
        // request or an entry carries: they check constant names, help
        // texts, label names and buckets, fixed at compile time, and every
        // unit test that builds a node runs them. Label values (the only
        // input from outside, capability names) are taken as they come.
        let registry = Registry::new_custom(Some("registry".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let sweep_seconds = HistogramVec::new(
            HistogramOpts::new(
                "liveness_sweep_duration_seconds",
                "Leader's expiry sweep duration by phase (plan, commit)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["phase"],
        )
        .expect("valid metric");
        let http_connections_closed = IntCounterVec::new(
            Opts::new(
                "http_connections_closed_total",
                "Connections closed by the node, by reason (evicted, refused, header_timeout, tls_handshake)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "tls_reloads_total",
                "TLS certificates read again (SIGHUP or a changed file), by certificate (public, peer)",
            ),
            &["certificate"],
        )
        .expect("valid metric");
        let tls_reload_failures = IntCounterVec::new(
            Opts::new(
                "tls_reload_failures_total",
                "TLS certificate reloads that failed (the previous certificate kept), by certificate (public, peer)",
            ),
            &["certificate"],
        )
        .expect("valid metric");
        let auth_refused = IntCounterVec::new(
            Opts::new(
                "auth_refused_total",
                "Requests refused by access control, by reason (no_token, unknown_token, expired_token, forbidden)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let per_member = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["member"]).expect("valid metric")
        };
        let seconds = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric")
        };
        // Milliseconds to a minute: a sync is about 2 ms on the project's
        // machines; a snapshot of 100,000 agents takes seconds.
        let durations = || {
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]
        };
        let m = Metrics {
            http_requests,
            http_latency,
            leader_changes: counter(
                "raft_leader_changes_total",
                "Leader changes seen by this node",
            ),
            forwarded_writes: counter("forwarded_writes_total", "Writes forwarded to the leader"),
            forward_calls: counter(
                "forward_calls_total",
                "Calls carrying forwarded writes to the leader (grouped)",
            ),
            elections_started: counter(
                "raft_elections_started_total",
                "Elections this node stood in (after winning a pre-vote)",
            ),
            pre_votes_lost: counter(
                "raft_pre_votes_lost_total",
                "Pre-votes this node asked for without a majority (it did not stand)",
            ),
            write_rounds: counter(
                "write_rounds_total",
                "Raft entries proposed by the leader for client writes (group commit rounds)",
            ),
            write_round_commands: counter(
                "write_round_commands_total",
                "Client writes carried by group commit rounds",
            ),
            read_index_rounds: counter(
                "read_index_rounds_total",
                "Read-index rounds (batched linearizable reads)",
            ),
            raft_term: gauge("raft_term", "Current Raft term"),
            raft_applied_index: gauge("raft_applied_index", "Last applied log index"),
            raft_last_log_index: gauge("raft_last_log_index", "Last log index"),
            raft_snapshot_index: gauge(
                "raft_snapshot_index",
                "Last log index covered by the snapshot",
            ),
            raft_purged_index: gauge(
                "raft_purged_index",
                "Last log index purged by log compaction",
            ),
            raft_is_leader: gauge("raft_is_leader", "1 when this node is the leader"),
            registry_revision: gauge("revision", "Applied registry revision"),
            registry_agents: gauge("agents", "Registered agents"),
            heartbeats: counter(
                "heartbeats_total",
                "Heartbeats recorded by this node as leader",
            ),
            forwarded_heartbeat_calls: counter(
                "forwarded_heartbeat_calls_total",
                "Calls forwarding heartbeats to the leader",
            ),
            checkpoints: counter(
                "liveness_checkpoints_total",
                "Liveness checkpoints committed",
            ),
            expiries: counter(
                "liveness_transitions_total",
                "Liveness transitions committed",
            ),
            brake_engaged: gauge(
                "liveness_brake_engaged",
                "1 while the mass-expiry brake is engaged",
            ),
            sweep_seconds,
            http_connections: gauge("http_connections", "Connections open now"),
            http_connections_closed,
            tls_reloads,
            tls_reload_failures,
            event_watchers: gauge("event_watchers", "Event streams and long polls served now"),
            event_watchers_refused: counter(
                "event_watchers_refused_total",
                "Event streams and long polls refused (too_many_watchers)",
            ),
            disk_free_bytes: gauge(
                "disk_free_bytes",
                "Bytes free on the data directory's file system",
            ),
            disk_min_free_bytes: gauge(
                "disk_min_free_bytes",
                "Bytes the node keeps free (--min-free-disk-mb)",
            ),
            disk_no_space: gauge(
                "disk_no_space",
                "1 while the node is short of disk space and refuses writes",
            ),
            disk_no_space_errors: counter(
                "disk_no_space_errors_total",
                "Store writes that failed for want of disk space",
            ),
            disk_waiting_writes: gauge(
                "disk_waiting_writes",
                "Store writes waiting for disk space now",
            ),
            writes_refused_no_space: counter(
                "writes_refused_no_space_total",
                "Writes refused by this node as leader for want of disk space",
            ),
            auth_refused,
            raft_commit_index: gauge(
                "raft_commit_index",
                "Highest log index this node knows committed",
            ),
            raft_apply_lag: gauge(
                "raft_apply_lag_entries",
                "Committed log entries this node has not applied yet",
            ),
            raft_has_leader: gauge("raft_has_leader", "1 while this node knows a leader"),
            raft_voters: gauge("raft_voters", "Voting members in the applied membership"),
            raft_learners: gauge(
                "raft_learners",
                "Non-voting members (learners) in the applied membership",
            ),
            raft_member_reachable: per_member(
                "raft_member_reachable",
                "On the leader: 1 when the member answered an AppendEntries within the election timeout",
            ),
            raft_member_last_ack: GaugeVec::new(
                Opts::new(
                    "raft_member_last_ack_seconds",
                    "On the leader: seconds since the member last answered an AppendEntries",
                ),
                &["member"],
            )
            .expect("valid metric"),
            raft_member_matched_index: per_member(
                "raft_member_matched_index",
                "On the leader: last log index known replicated to the member",
            ),
            raft_member_lag: per_member(
                "raft_member_lag_entries",
                "On the leader: entries of its log not yet replicated to the member",
            ),
            wal_sync_seconds: seconds(
                "raft_wal_sync_duration_seconds",
                "WAL syncs (each confirms every append queued meanwhile)",
                durations(),
            ),
            wal_synced_appends: counter(
                "raft_wal_synced_appends_total",
                "Log appends confirmed by WAL syncs",
            ),
            snapshot_build_seconds: seconds(
                "raft_snapshot_build_duration_seconds",
                "Snapshot builds (encode, checksum, write)",
                durations(),
            ),
            snapshot_build_bytes: gauge(
                "raft_snapshot_build_size_bytes",
                "Size of the last snapshot built",
            ),
            snapshot_build_failures: IntCounterVec::new(
                Opts::new(
                    "raft_snapshot_build_failures_total",
                    "Snapshot builds that wrote nothing, by reason (no_space, error)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            snapshot_install_seconds: seconds(
                "raft_snapshot_install_duration_seconds",
                "Snapshot installs from the leader (check, write, swap)",
                durations(),
            ),
            snapshot_install_bytes: gauge(
                "raft_snapshot_install_size_bytes",
                "Size of the last snapshot installed from the leader",
            ),
            snapshot_install_failures: counter(
                "raft_snapshot_install_failures_total",
                "Snapshots from the leader refused (damaged, another cluster, undecodable) or not written",
            ),
            heartbeat_latency: seconds(
                "agent_registry_heartbeat_latency_seconds",
                "Heartbeat processing time on the node that received it (forwarding to the leader included)",
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0,
                ],
            ),
            discovery_by_capability: CapabilityRequests::new(
                IntCounterVec::new(
                    Opts::new(
                        "agent_registry_discovery_requests_total",
                        "Capability discovery requests by capability (the most held ones; the rest as other)",
                    ),
                    &["capability"],
                )
                .expect("valid metric"),
            ),
            figures: Arc::default(),
            compat: Registry::new(),
            registry,
        };
        for reason in [BuildFailure::NoSpace, BuildFailure::Error] {
            // Listed at 0 from the start, so an alert on `increase()` sees
            // the first failure.
            m.snapshot_build_failures
                .with_label_values(&[reason.as_str()]);
        }
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_latency.clone()),
            Box::new(m.leader_changes.clone()),
            Box::new(m.forwarded_writes.clone()),
            Box::new(m.forward_calls.clone()),
            Box::new(m.write_rounds.clone()),
            Box::new(m.write_round_commands.clone()),
            Box::new(m.elections_started.clone()),
            Box::new(m.pre_votes_lost.clone()),
            Box::new(m.read_index_rounds.clone()),
            Box::new(m.raft_term.clone()),
            Box::new(m.raft_applied_index.clone()),
            Box::new(m.raft_last_log_index.clone()),
            Box::new(m.raft_snapshot_index.clone()),
            Box::new(m.raft_purged_index.clone()),
            Box::new(m.raft_is_leader.clone()),
            Box::new(m.registry_revision.clone()),
            Box::new(m.registry_agents.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.forwarded_heartbeat_calls.clone()),
            Box::new(m.checkpoints.clone()),
            Box::new(m.expiries.clone()),
            Box::new(m.brake_engaged.clone()),
            Box::new(m.sweep_seconds.clone()),
            Box::new(m.http_connections.clone()),
            Box::new(m.http_connections_closed.clone()),
            Box::new(m.tls_reloads.clone()),
            Box::new(m.tls_reload_failures.clone()),
            Box::new(m.event_watchers.clone()),
            Box::new(m.event_watchers_refused.clone()),
            Box::new(m.disk_free_bytes.clone()),
            Box::new(m.disk_min_free_bytes.clone()),
            Box::new(m.disk_no_space.clone()),
            Box::new(m.disk_no_space_errors.clone()),
            Box::new(m.disk_waiting_writes.clone()),
            Box::new(m.writes_refused_no_space.clone()),
            Box::new(m.auth_refused.clone()),
            Box::new(m.raft_commit_index.clone()),
            Box::new(m.raft_apply_lag.clone()),
            Box::new(m.raft_has_leader.clone()),
            Box::new(m.raft_voters.clone()),
            Box::new(m.raft_learners.clone()),
            Box::new(m.raft_member_reachable.clone()),
            Box::new(m.raft_member_last_ack.clone()),
            Box::new(m.raft_member_matched_index.clone()),
            Box::new(m.raft_member_lag.clone()),
            Box::new(m.wal_sync_seconds.clone()),
            Box::new(m.wal_synced_appends.clone()),
            Box::new(m.snapshot_build_seconds.clone()),
            Box::new(m.snapshot_build_bytes.clone()),
            Box::new(m.snapshot_build_failures.clone()),
            Box::new(m.snapshot_install_seconds.clone()),
            Box::new(m.snapshot_install_bytes.clone()),
            Box::new(m.snapshot_install_failures.clone()),
        ];
        for c in collectors {
            // Names are fixed and distinct: registration cannot collide.
            let _ = m.registry.register(c);
        }
        let _ = m.compat.register(Box::new(m.heartbeat_latency.clone()));
        let _ = m
            .compat
            .register(Box::new(m.discovery_by_capability.vec.clone()));
        m
    }

    /// The hook the store reports its WAL syncs and snapshots through.
    pub fn store_observer(&self) -> Observer {
        Observer::new(Arc::new(StoreFigures {
            wal_sync_seconds: self.wal_sync_seconds.clone(),
            wal_synced_appends: self.wal_synced_appends.clone(),
            snapshot_build_seconds: self.snapshot_build_seconds.clone(),
            snapshot_build_bytes: self.snapshot_build_bytes.clone(),
            snapshot_build_failures: self.snapshot_build_failures.clone(),
            snapshot_install_seconds: self.snapshot_install_seconds.clone(),
            snapshot_install_bytes: self.snapshot_install_bytes.clone(),
            snapshot_install_failures: self.snapshot_install_failures.clone(),
        }))
    }

    /// Takes the registry's figures for the `agent_registry_*` gauges:
    /// O(statuses), no pass over the agents.
    pub fn observe_registry(&self, registry: &RegistryState) {
        let figures = RegistryFigures {
            by_status: AgentStatus::VARIANTS
                .iter()
                .map(|s| (*s, registry.count_status(*s) as u64))
                .collect(),
            capabilities: registry.total_capabilities(),
            stale: stale_agents(registry),
        };
        if let Ok(mut f) = self.figures.lock() {
            *f = figures;
        }
    }

    /// Refreshes the commit, apply-lag and membership gauges, and on the
    /// leader the per-member ones (`acks`: time since each member last
    /// answered; `reach`: how recent an answer makes it reachable). The
    /// per-member series are rebuilt each time, so a member that left, or
    /// a node that stopped leading, leaves none behind.
    pub fn observe_cluster(
        &self,
        m: &RaftMetrics<u64, openraft::BasicNode>,
        committed: u64,
        acks: &BTreeMap<u64, Duration>,
        reach: Duration,
    ) {
        let applied = m.last_applied.map_or(0, |l| l.index);
        let committed = committed.max(applied);
        self.raft_commit_index.set(clamp(committed));
        self.raft_apply_lag.set(clamp(committed - applied));
        self.raft_has_leader
            .set(i64::from(m.current_leader.is_some()));
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        let members = membership.nodes().count();
        self.raft_voters.set(voters as i64);
        self.raft_learners
            .set(members.saturating_sub(voters) as i64);
        self.raft_member_reachable.reset();
        self.raft_member_last_ack.reset();
        self.raft_member_matched_index.reset();
        self.raft_member_lag.reset();
        if m.replication.is_none() || m.current_leader != Some(m.id) {
            return;
        }
        let last_log = m.last_log_index.unwrap_or(0);
        for (id, _) in membership.nodes().filter(|(id, _)| **id != m.id) {
            let label = id.to_string();
            let label = [label.as_str()];
            let age = acks.get(id);
            self.raft_member_reachable
                .with_label_values(&label)
                .set(i64::from(age.is_some_and(|a| *a <= reach)));
            if let Some(age) = age {
                self.raft_member_last_ack
                    .with_label_values(&label)
                    .set(age.as_secs_f64());
            }
            let matched = crate::node::matched_of(m, *id).map_or(0, |l| l.index);
            self.raft_member_matched_index
                .with_label_values(&label)
                .set(clamp(matched));
            self.raft_member_lag
                .with_label_values(&label)
                .set(clamp(last_log.saturating_sub(matched)));
        }
    }

    /// Refreshes the Raft and registry gauges.
    pub fn observe_raft(
        &self,
        m: &RaftMetrics<u64, openraft::BasicNode>,
        revision: u64,
        agents: usize,
    ) {
        self.raft_term.set(m.current_term as i64);
        self.raft_applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.raft_last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.raft_snapshot_index
            .set(m.snapshot.map_or(0, |l| l.index) as i64);
        self.raft_purged_index
            .set(m.purged.map_or(0, |l| l.index) as i64);
        self.raft_is_leader
            .set(i64::from(m.current_leader == Some(m.id)));
        self.registry_revision.set(revision as i64);
        self.registry_agents.set(agents as i64);
    }

    /// Refreshes the disk gauges.
    pub fn observe_disk(&self, d: &registry_raft::DiskStatus) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.disk_free_bytes.set(gauge(d.free_bytes));
        self.disk_min_free_bytes.set(gauge(d.min_free_bytes));
        self.disk_no_space.set(i64::from(d.no_space));
        self.disk_waiting_writes.set(gauge(d.waiting_writes));
        let seen = self.disk_no_space_errors.get();
        self.disk_no_space_errors
            .inc_by(d.no_space_errors.saturating_sub(seen));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.compat.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        let f = self.figures.lock().map(|f| f.clone()).unwrap_or_default();
        // Untyped: the prometheus crate's encoder writes no untyped family,
        // so these few lines are written here.
        let untyped = |text: &mut String, name: &str, help: &str| {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} untyped\n"));
        };
        untyped(
            &mut text,
            "agent_registry_agents_total",
            "Agents by status (a gauge; named as the Dev-Tools registry's dashboards expect)",
        );
        for (status, n) in &f.by_status {
            text.push_str(&format!(
                "agent_registry_agents_total{{status=\"{}\"}} {n}\n",
                status.into_str()
            ));
        }
        untyped(
            &mut text,
            "agent_registry_capabilities_total",
            "Capabilities over all agents (a gauge)",
        );
        text.push_str(&format!(
            "agent_registry_capabilities_total {}\n",
            f.capabilities
        ));
        untyped(
            &mut text,
            "agent_registry_stale_agents_total",
            "Agents that missed their heartbeat deadline: unhealthy or offline (a gauge)",
        );
        text.push_str(&format!("agent_registry_stale_agents_total {}\n", f.stale));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `text` for metric family `name` (samples only).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .collect()
    }

    #[test]
    fn discovery_labels_stay_bounded_and_follow_the_top_set() {
        let m = Metrics::new();
        let c = &m.discovery_by_capability;
        c.relabel((0..200).map(|i| format!("cap-{i:03}")));
        assert_eq!(c.labelled().len(), DISCOVERY_LABELS);
        for i in 0..1_000 {
            c.count(&format!("made-up-{i}"));
        }
        c.count("cap-000");
        c.count_unnamed();
        let text = m.render();
        let lines = samples(&text, "agent_registry_discovery_requests_total");
        assert_eq!(lines.len(), DISCOVERY_LABELS + 1, "{lines:?}");
        assert!(
            lines.contains(&"agent_registry_discovery_requests_total{capability=\"other\"} 1001")
        );
        assert!(
            lines.contains(&"agent_registry_discovery_requests_total{capability=\"cap-000\"} 1")
        );

        // A new top set: the series of those that left are gone, `other`
        // is never a label of its own.
        c.relabel(["other".to_string(), "cap-000".into(), "new".into()]);
        assert_eq!(c.labelled(), ["cap-000", "new"]);
        let text = m.render();
        let lines = samples(&text, "agent_registry_discovery_requests_total");
        assert_eq!(lines.len(), 3, "{lines:?}");
        c.count("other");
        c.count("cap-001");
        assert!(m
            .render()
            .contains("agent_registry_discovery_requests_total{capability=\"other\"} 1003"));
    }

    #[test]
    fn registry_figures_are_served_untyped_with_every_status() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("# TYPE agent_registry_agents_total untyped\n"));
        assert!(text.contains("# TYPE agent_registry_capabilities_total untyped\n"));
        assert!(text.contains("# TYPE agent_registry_stale_agents_total untyped\n"));
        // Before the first observation: the totals at 0, no status yet.
        assert_eq!(
            samples(&text, "agent_registry_stale_agents_total"),
            ["agent_registry_stale_agents_total 0"]
        );
        m.observe_registry(&RegistryState::default());
        let text = m.render();
        let statuses = samples(&text, "agent_registry_agents_total");
        assert_eq!(statuses.len(), AgentStatus::VARIANTS.len(), "{statuses:?}");
        assert!(statuses.contains(&"agent_registry_agents_total{status=\"offline\"} 0"));
        assert!(text.contains("# TYPE agent_registry_heartbeat_latency_seconds histogram\n"));
        assert!(text.contains("# TYPE registry_raft_wal_sync_duration_seconds histogram\n"));
        // Both build failure reasons are listed from the start.
        assert_eq!(
            samples(&text, "registry_raft_snapshot_build_failures_total").len(),
            2
        );
    }

    #[test]
    fn the_store_observer_feeds_the_storage_metrics() {
        let m = Metrics::new();
        let o = m.store_observer();
        o.wal_synced(Duration::from_millis(2), 7);
        o.snapshot_built(Duration::from_millis(30), 1234);
        o.snapshot_build_failed(BuildFailure::NoSpace);
        o.snapshot_installed(Duration::from_millis(40), 5678);
        o.snapshot_install_failed();
        assert_eq!(m.wal_sync_seconds.get_sample_count(), 1);
        assert_eq!(m.wal_synced_appends.get(), 7);
        assert_eq!(m.snapshot_build_seconds.get_sample_count(), 1);
        assert_eq!(m.snapshot_build_bytes.get(), 1234);
        assert_eq!(
            m.snapshot_build_failures
                .with_label_values(&["no_space"])
                .get(),
            1
        );
        assert_eq!(m.snapshot_install_bytes.get(), 5678);
        assert_eq!(m.snapshot_install_failures.get(), 1);
    }
}
