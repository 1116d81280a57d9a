//! Prometheus metrics of a node, served at `GET /metrics`.

use openraft::RaftMetrics;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The node's metrics. Registered once at start.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
            registry,
        };
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
        ];
        for c in collectors {
            // Names are fixed and distinct: registration cannot collide.
            let _ = m.registry.register(c);
        }
        m
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
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
