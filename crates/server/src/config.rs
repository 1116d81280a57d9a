//! Node configuration: command-line flags, each with an environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use registry_types::limits::Limits;
use registry_types::NodeId;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether requests must carry a token (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Every caller may do everything; changes are attributed to
    /// `anonymous`.
    Off,
    /// Callers present a token (`Authorization: Bearer ...`); a caller
    /// without one gets what the `--anonymous-*` settings give.
    On,
}

/// What a caller without a token may read under `--auth on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnonymousRole {
    /// Nothing but the open routes (health probes, metrics, the API
    /// document).
    None,
    /// Every read, as a `reader` token.
    Reader,
}

/// An agent registry node.
///
/// With no flags: a single-node cluster, node id 1, listening on
/// 127.0.0.1:8009, data in ./data; it initializes itself on first start and
/// simply restarts afterwards.
#[derive(Clone, Debug, Parser)]
#[command(name = "agent-registry", version, about, long_about = None)]
pub struct Config {
    /// This node's Raft id (a positive integer, unique in the cluster, never
    /// reused with another data directory).
    #[arg(long, env = "REGISTRY_NODE_ID", default_value_t = 1)]
    pub node_id: NodeId,

    /// Address to bind: the public API and the internal Raft RPC share it.
    #[arg(long, env = "REGISTRY_LISTEN", default_value = "127.0.0.1:8009")]
    pub listen: SocketAddr,

    /// Address other nodes use to reach this one (HOST:PORT). Defaults to
    /// --listen; set it when binding 0.0.0.0 or behind NAT.
    #[arg(long, env = "REGISTRY_ADVERTISE")]
    pub advertise: Option<String>,

    /// Directory holding the Raft log, the vote and snapshots.
    #[arg(long, env = "REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Static bootstrap: every voter as ID=HOST:PORT, comma-separated, e.g.
    /// 1=10.0.0.1:8009,2=10.0.0.2:8009,3=10.0.0.3:8009. The lowest id
    /// initializes the cluster once, on its first start; restarts never
    /// re-initialize. Empty: a single-node cluster of this node.
    #[arg(long, env = "REGISTRY_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Join a running cluster: with an empty data directory the node
    /// waits, serving `/health/live` and answering 503 elsewhere, until a
    /// leader adds it (`POST /v1/cluster/members`); it never initializes
    /// a cluster of its own. Not with --initial-cluster. Needs peer
    /// authentication (--cluster-secret-file or the --peer-tls-* files):
    /// until it is added, any authenticated peer may contact it.
    #[arg(long, env = "REGISTRY_JOIN")]
    pub join: bool,

    /// Raft heartbeat interval, in milliseconds. The election timeout is
    /// derived from it: 2 to 6 heartbeats.
    #[arg(long, env = "REGISTRY_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Build a snapshot (and compact the log) after this many log entries.
    #[arg(long, env = "REGISTRY_SNAPSHOT_LOGS", default_value_t = 10_000)]
    pub snapshot_logs: u64,

    /// Largest accepted request body, in bytes (413 above it).
    #[arg(long, env = "REGISTRY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest A2A Agent Card accepted, in bytes of canonical JSON (413
    /// `payload_too_large` above it); 1 KiB to 1 MiB. The routes that take
    /// a card accept bodies of --max-body-bytes plus this.
    #[arg(long, env = "REGISTRY_MAX_CARD_BYTES", default_value_t = registry_types::card::DEFAULT_MAX_CARD_BYTES)]
    pub max_card_bytes: usize,

    /// Events kept for watchers to resume from.
    #[arg(long, env = "REGISTRY_EVENT_WINDOW", default_value_t = 100_000)]
    pub event_window: usize,

    /// Default `ttl_seconds` of an agent that does not give one.
    #[arg(long, env = "REGISTRY_DEFAULT_TTL_SECONDS", default_value_t = 30)]
    pub default_ttl_seconds: u32,

    /// Default `offline_after_seconds`.
    #[arg(
        long,
        env = "REGISTRY_DEFAULT_OFFLINE_AFTER_SECONDS",
        default_value_t = 60
    )]
    pub default_offline_after_seconds: u32,

    /// Default `deregister_after_seconds` (0: never removed).
    #[arg(
        long,
        env = "REGISTRY_DEFAULT_DEREGISTER_AFTER_SECONDS",
        default_value_t = 300
    )]
    pub default_deregister_after_seconds: u32,

    /// How long a write may wait for a leader and for commit, in
    /// milliseconds, before answering 503 (no leader) or 504 (unknown).
    #[arg(long, env = "REGISTRY_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,

    /// How long a read may wait for a read index or `min_revision`, in
    /// milliseconds.
    #[arg(long, env = "REGISTRY_READ_TIMEOUT_MS", default_value_t = 3_000)]
    pub read_timeout_ms: u64,

    /// Interval between the leader's liveness checkpoints (one batched Raft
    /// entry of the heartbeats received meanwhile), in milliseconds.
    #[arg(long, env = "REGISTRY_CHECKPOINT_INTERVAL_MS", default_value_t = 1_000)]
    pub checkpoint_interval_ms: u64,

    /// Interval between the leader's expiry sweeps, in milliseconds.
    #[arg(long, env = "REGISTRY_SWEEP_INTERVAL_MS", default_value_t = 500)]
    pub sweep_interval_ms: u64,

    /// Most liveness transitions in one Raft entry.
    #[arg(long, env = "REGISTRY_EXPIRY_BATCH", default_value_t = 5_000)]
    pub expiry_batch: usize,

    /// The mass-expiry brake engages when one sweep would take more than
    /// this share of the live fleet offline (or remove it) at once.
    #[arg(long, env = "REGISTRY_BRAKE_FRACTION", default_value_t = 0.5)]
    pub brake_fraction: f64,

    /// The brake releases by itself after this long, in seconds, even if
    /// heartbeats have not come back (it then stays off until the fleet has
    /// been below the threshold once).
    #[arg(long, env = "REGISTRY_BRAKE_MAX_HOLD_SECONDS", default_value_t = 300)]
    pub brake_max_hold_seconds: u64,

    /// The brake only applies to fleets of at least this many live agents.
    #[arg(long, env = "REGISTRY_BRAKE_MIN_FLEET", default_value_t = 10)]
    pub brake_min_fleet: usize,

    /// File holding the cluster secret (at least 32 bytes, e.g. from
    /// `openssl rand -hex 32`), the same on every member: every
    /// node-to-node request is signed with it. Required by a node of a
    /// multi-node cluster unless --insecure-peers.
    #[arg(long, env = "REGISTRY_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Accept node-to-node requests without a signature: anyone who can
    /// reach the port can then act as a member. For a trusted test network
    /// only; the node says so in its log at every start and in
    /// `GET /v1/cluster`.
    #[arg(long, env = "REGISTRY_INSECURE_PEERS")]
    pub insecure_peers: bool,

    /// Serve the node-to-node routes (`/internal/*`) on this address only,
    /// e.g. on a private interface; the public port then answers 404 on
    /// them. `--initial-cluster` then lists these peer addresses.
    #[arg(long, env = "REGISTRY_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// Address other nodes use for this node's peer routes when
    /// --peer-listen is set (HOST:PORT). Defaults to --peer-listen.
    #[arg(long, env = "REGISTRY_PEER_ADVERTISE")]
    pub peer_advertise: Option<String>,

    /// PEM certificate chain (the node's certificate first) of the public
    /// API: with --tls-key-file, clients connect over https. Read again on
    /// SIGHUP and when the file changes.
    #[arg(long, env = "REGISTRY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file.
    #[arg(long, env = "REGISTRY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM certificate chain this node presents to its peers, as server
    /// and as client (mutual TLS between nodes, with --peer-tls-key-file
    /// and --peer-tls-ca-file). It must be valid for the host of the
    /// node's peer address (an IP address or DNS name in its subject
    /// alternative names). Authenticates peers instead of, or besides,
    /// --cluster-secret-file.
    #[arg(long, env = "REGISTRY_PEER_TLS_CERT_FILE")]
    pub peer_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --peer-tls-cert-file.
    #[arg(long, env = "REGISTRY_PEER_TLS_KEY_FILE")]
    pub peer_tls_key_file: Option<PathBuf>,

    /// PEM certificate(s) of the CA that issues the members' peer
    /// certificates: the only issuer trusted for node-to-node connections,
    /// both ways. Read at start only.
    #[arg(long, env = "REGISTRY_PEER_TLS_CA_FILE")]
    pub peer_tls_ca_file: Option<PathBuf>,

    /// How often the certificate and key files are checked for a change
    /// (then read again), in milliseconds; 0: only on SIGHUP.
    #[arg(long, env = "REGISTRY_TLS_RELOAD_INTERVAL_MS", default_value_t = 5_000)]
    pub tls_reload_interval_ms: u64,

    /// Largest snapshot this node accepts from a leader, in bytes.
    #[arg(long, env = "REGISTRY_MAX_SNAPSHOT_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub max_snapshot_bytes: u64,
    /// Most agents the registry holds. The leader refuses a registration
    /// of a new agent beyond it (507 `registry_full`); updates of
    /// registered agents are still accepted.
    #[arg(long, env = "REGISTRY_MAX_AGENTS", default_value_t = 1_000_000)]
    pub max_agents: u64,

    /// Disk space kept free on the data directory's file system, in MiB.
    /// Below it the node refuses writes (507 `no_space`) and takes no new
    /// log entries or snapshots, while reads and heartbeats go on; it
    /// resumes by itself once space is freed. 0 turns the floor off (a
    /// write that finds the disk full still waits instead of failing).
    #[arg(long, env = "REGISTRY_MIN_FREE_DISK_MB", default_value_t = 256)]
    pub min_free_disk_mb: u64,

    /// Most client and peer connections served at once. At the cap a new
    /// connection takes the place of the one idle longest (no request in
    /// progress, no response streaming), which is closed; when every
    /// connection is busy the new one is closed at once.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS", default_value_t = 4_096)]
    pub max_connections: usize,

    /// How long a connection may take to send a request's headers, in
    /// milliseconds, counted from the connection's start or the end of its
    /// previous response (so it also closes idle keep-alive connections).
    #[arg(
        long,
        env = "REGISTRY_HEADER_READ_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub header_read_timeout_ms: u64,

    /// How long a client may take to send a request's whole body, in
    /// milliseconds (408 `request_timeout` beyond it).
    #[arg(long, env = "REGISTRY_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,

    /// How long a request may take from its headers to its answer, in
    /// milliseconds (504 `timeout` beyond it). Event streams and long polls
    /// (`GET /v1/events`) are exempt: they last by design and are bounded by
    /// `--max-watchers` instead. Above the write and read timeouts.
    #[arg(long, env = "REGISTRY_REQUEST_TIMEOUT_MS", default_value_t = 60_000)]
    pub request_timeout_ms: u64,

    /// Most event streams and long polls (`GET /v1/events`) served at once
    /// (503 `too_many_watchers` with `Retry-After` beyond it). Below
    /// `--max-connections`.
    #[arg(long, env = "REGISTRY_MAX_WATCHERS", default_value_t = 1_024)]
    pub max_watchers: usize,

    /// Access control: `off` (every caller may do everything, as in etcd
    /// and Consul by default) or `on` (requests carry a token; see
    /// docs/operations.md, "Access control").
    #[arg(long, env = "REGISTRY_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub auth: AuthMode,

    /// File holding the first admin token's secret (at least 32
    /// characters, e.g. `areg_` and `openssl rand -hex 32`). The leader
    /// creates that token whenever the registry holds no admin token: when
    /// the cluster is initialized, or to recover from losing them all. Give
    /// the same file to every node. Required with `--auth on` by the node
    /// that initializes a cluster.
    #[arg(long, env = "REGISTRY_BOOTSTRAP_TOKEN_FILE")]
    pub bootstrap_token_file: Option<PathBuf>,

    /// With `--auth on`: what a caller without a token may read.
    #[arg(long, env = "REGISTRY_ANONYMOUS_ROLE", value_enum, default_value_t = AnonymousRole::None)]
    pub anonymous_role: AnonymousRole,

    /// With `--auth on`: the agents a caller without a token may register,
    /// beat for, update and deregister, as an agent token's scope: agent
    /// ids and id prefixes (`legacy-*`), comma-separated. Keeps unmodified
    /// agent code working on that prefix. Empty: none.
    #[arg(long, env = "REGISTRY_ANONYMOUS_AGENT_SCOPE", value_delimiter = ',')]
    pub anonymous_agent_scope: Vec<String>,

    /// With `--auth on`: serve `/metrics` to callers without a token (the
    /// default: Prometheus scrapers rarely carry one). `false`: it needs a
    /// token of any role.
    #[arg(long, env = "REGISTRY_OPEN_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub open_metrics: bool,

    /// With `--auth on`: serve `/health/live` and `/health/ready` to
    /// callers without a token (the default: probes rarely carry one).
    #[arg(long, env = "REGISTRY_OPEN_HEALTH", default_value_t = true, action = clap::ArgAction::Set)]
    pub open_health: bool,

    /// Log format.
    #[arg(long, env = "REGISTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Print the OpenAPI document of the public API (JSON) and exit,
    /// without starting a node (what `GET /openapi.json` serves).
    #[arg(long)]
    pub print_openapi: bool,
}

/// A configuration error, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-id must be a positive integer")]
    ZeroNodeId,
    #[error("--initial-cluster: {0}")]
    InitialCluster(String),
    #[error("--heartbeat-ms must be between 10 and 10000")]
    Heartbeat,
    #[error("--snapshot-logs must be at least 10")]
    SnapshotLogs,
    #[error("--max-body-bytes must be between 1 KiB and 16 MiB")]
    MaxBody,
    #[error(
        "--max-card-bytes must be between 1024 and {}",
        registry_types::card::MAX_CARD_BYTES_CEILING
    )]
    MaxCard,
    #[error("default durations: the ttl must be at least twice the election timeout (10 heartbeats) and not above offline-after")]
    Durations,
    #[error("liveness: intervals must be 10 ms to 60 s, the expiry batch 1 to 100000, the brake fraction in (0, 1]")]
    Liveness,
    #[error(
        "a node of a {0}-member cluster needs --cluster-secret-file (the same secret on every \
         member, e.g. from `openssl rand -hex 32`) or mutual TLS between nodes \
         (--peer-tls-cert-file, --peer-tls-key-file, --peer-tls-ca-file), or --insecure-peers \
         on a trusted test network"
    )]
    NoClusterSecret(usize),
    #[error("--tls-cert-file and --tls-key-file go together: give both or neither")]
    TlsPair,
    #[error(
        "--peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file go together: give all \
         three or none"
    )]
    PeerTlsFiles,
    #[error("give the --peer-tls-* files or --insecure-peers, not both")]
    PeerTlsAndInsecure,
    #[error(
        "--tls-cert-file without --peer-listen puts the node-to-node routes of this {0}-member \
         cluster behind TLS: give the --peer-tls-* files too (mutual TLS between nodes), or \
         --peer-listen (the peers' own port)"
    )]
    PeersBehindTls(usize),
    #[error("--tls-reload-interval-ms must be 0 (SIGHUP only) or 100 to 3600000")]
    TlsReloadInterval,
    #[error("give --cluster-secret-file or --insecure-peers, not both")]
    SecretAndInsecure,
    #[error("--peer-advertise needs --peer-listen")]
    PeerAdvertise,
    #[error("--peer-listen must differ from --listen")]
    PeerListen,
    #[error("--join and --initial-cluster exclude each other: a joining node learns the members from the leader that adds it")]
    JoinWithInitialCluster,
    #[error(
        "--join needs peer authentication: --cluster-secret-file or the --peer-tls-* files (or \
         --insecure-peers on a trusted test network): until it is added, any peer that \
         authenticates may contact it, and without authentication anyone could add it to a \
         cluster of their own and serve clients from it"
    )]
    JoinWithoutPeerAuth,
    #[error("--anonymous-agent-scope: {0}")]
    AnonymousScope(String),
    #[error("edge limits: --max-connections 2 to 1000000, --max-watchers 1 to below it, --max-agents at least 1, timeouts 100 ms to 10 min, --request-timeout-ms above the write and read timeouts")]
    Edge,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["agent-registry"])
    }
}

impl Config {
    /// Validates the configuration.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if !(10..=10_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::Heartbeat);
        }
        if self.snapshot_logs < 10 {
            return Err(ConfigError::SnapshotLogs);
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(ConfigError::MaxBody);
        }
        if !(1024..=registry_types::card::MAX_CARD_BYTES_CEILING).contains(&self.max_card_bytes) {
            return Err(ConfigError::MaxCard);
        }
        if self.default_ttl_seconds == 0
            || self.default_offline_after_seconds < self.default_ttl_seconds
        {
            return Err(ConfigError::Durations);
        }
        let interval_ok = |ms: u64| (10..=60_000).contains(&ms);
        let liveness_ok = interval_ok(self.checkpoint_interval_ms)
            && interval_ok(self.sweep_interval_ms)
            && (1..=100_000).contains(&self.expiry_batch)
            && self.brake_fraction > 0.0
            && self.brake_fraction <= 1.0;
        if !liveness_ok {
            return Err(ConfigError::Liveness);
        }
        let timeout_ok = |ms: u64| (100..=600_000).contains(&ms);
        let edge_ok = (2..=1_000_000).contains(&self.max_connections)
            && self.max_watchers >= 1
            && self.max_watchers < self.max_connections
            && self.max_agents >= 1
            && timeout_ok(self.header_read_timeout_ms)
            && timeout_ok(self.body_read_timeout_ms)
            && timeout_ok(self.request_timeout_ms)
            && self.request_timeout_ms > self.write_timeout_ms.max(self.read_timeout_ms);
        if !edge_ok {
            return Err(ConfigError::Edge);
        }
        if self.join
            && self
                .initial_cluster
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
        {
            return Err(ConfigError::JoinWithInitialCluster);
        }
        if self.join
            && self.cluster_secret_file.is_none()
            && !self.peer_tls()
            && !self.insecure_peers
        {
            return Err(ConfigError::JoinWithoutPeerAuth);
        }
        let members = self.members()?;
        if !members.contains_key(&self.node_id) {
            return Err(ConfigError::InitialCluster(format!(
                "this node ({}) is not listed",
                self.node_id
            )));
        }
        if self.cluster_secret_file.is_some() && self.insecure_peers {
            return Err(ConfigError::SecretAndInsecure);
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::TlsPair);
        }
        let peer_files = [
            &self.peer_tls_cert_file,
            &self.peer_tls_key_file,
            &self.peer_tls_ca_file,
        ]
        .iter()
        .filter(|f| f.is_some())
        .count();
        if peer_files != 0 && peer_files != 3 {
            return Err(ConfigError::PeerTlsFiles);
        }
        if self.peer_tls() && self.insecure_peers {
            return Err(ConfigError::PeerTlsAndInsecure);
        }
        if members.len() > 1
            && self.cluster_secret_file.is_none()
            && !self.peer_tls()
            && !self.insecure_peers
        {
            return Err(ConfigError::NoClusterSecret(members.len()));
        }
        // Peers would dial a TLS listener with no means to trust it.
        if members.len() > 1
            && self.tls_cert_file.is_some()
            && self.peer_listen.is_none()
            && !self.peer_tls()
        {
            return Err(ConfigError::PeersBehindTls(members.len()));
        }
        if self.tls_reload_interval_ms != 0
            && !(100..=3_600_000).contains(&self.tls_reload_interval_ms)
        {
            return Err(ConfigError::TlsReloadInterval);
        }
        if self.peer_advertise.is_some() && self.peer_listen.is_none() {
            return Err(ConfigError::PeerAdvertise);
        }
        if self.peer_listen == Some(self.listen) {
            return Err(ConfigError::PeerListen);
        }
        self.anonymous_scope()
            .check("anonymous_agent_scope")
            .map_err(|e| ConfigError::AnonymousScope(e.error.message))?;
        Ok(())
    }

    /// Whether nodes authenticate each other with mutual TLS (the
    /// `--peer-tls-*` files, all three once checked).
    pub fn peer_tls(&self) -> bool {
        self.peer_tls_cert_file.is_some()
            && self.peer_tls_key_file.is_some()
            && self.peer_tls_ca_file.is_some()
    }

    /// How often certificate files are checked for a change; `None`: on
    /// SIGHUP only.
    pub fn tls_reload_interval(&self) -> Option<Duration> {
        (self.tls_reload_interval_ms > 0)
            .then(|| Duration::from_millis(self.tls_reload_interval_ms))
    }

    /// `--anonymous-agent-scope` as a token scope.
    pub fn anonymous_scope(&self) -> registry_types::auth::TokenScope {
        registry_types::auth::TokenScope {
            agents: self
                .anonymous_agent_scope
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            runtimes: Vec::new(),
        }
    }

    /// The address clients use for this node.
    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// The address peers use for this node: its member address.
    pub fn peer_advertise_addr(&self) -> String {
        match (&self.peer_advertise, self.peer_listen) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) => l.to_string(),
            (None, None) => self.advertise_addr(),
        }
    }

    /// The initial voters, by id. Without `--initial-cluster`: this node alone.
    pub fn members(&self) -> Result<BTreeMap<NodeId, String>, ConfigError> {
        let Some(spec) = self
            .initial_cluster
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(BTreeMap::from([(self.node_id, self.peer_advertise_addr())]));
        };
        parse_members(spec).map_err(ConfigError::InitialCluster)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Election timeout bounds, derived from the heartbeat interval.
    ///
    /// openraft 0.9 makes a follower wait for its leader lease (the maximum
    /// election timeout) plus its own random election timeout after the
    /// last word from the leader before it stands, so a leader's death is
    /// noticed after 8 to 12 heartbeats (0.8–1.2 s by default). 5 to 10 made
    /// that 1.5–2.0 s, slower than etcd's default. The wide range (the
    /// lower bound is only two heartbeats) matters once an election is
    /// under way: a candidate refused (say, for a shorter log) stands again
    /// after its own timeout alone, no lease, and two survivors' timeouts,
    /// drawn once per process by openraft 0.9, lie further apart.
    pub fn election_timeout_ms(&self) -> (u64, u64) {
        (self.heartbeat_ms * 2, self.heartbeat_ms * 6)
    }

    /// How recently a quorum must have acknowledged the leader for it to
    /// accept heartbeats: half the leader lease. A node cut off from the
    /// majority is replaced no sooner than one lease after its followers
    /// last heard from it, so with this margin it stops accepting beats
    /// before any successor can exist.
    pub fn quorum_window(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms().1 / 2)
    }

    /// How long the leader's quorum tracker may go without running before
    /// what it last read is distrusted (the process was paused or starved):
    /// half the quorum window.
    pub fn quorum_tracker_stale(&self) -> Duration {
        self.quorum_window() / 2
    }

    /// Grace a new leader gives every deadline: one election timeout.
    pub fn lease_grace(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms().1)
    }

    /// `--min-free-disk-mb` in bytes.
    pub fn min_free_disk_bytes(&self) -> u64 {
        self.min_free_disk_mb.saturating_mul(1 << 20)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Input limits enforced on every request.
    pub fn limits(&self) -> Limits {
        Limits::default()
    }
}

/// Whether the command line asks for subcommand `name` (`agent-registry
/// NAME ...`, its first argument): `inspect`, `restore`.
pub fn subcommand_requested(name: &str) -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == name)
}

/// The command line of a subcommand as its own parser reads it: the
/// program's name, then the subcommand's flags (its name left out).
pub fn subcommand_args() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::args_os()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a)
}

/// Checks that `addr` is exactly one member address, `HOST:PORT`: a host
/// with no whitespace and none of the member list's separators (`,`, `=`),
/// and a decimal port. A membership a leader sends is checked with this
/// too: an address such as `a:1,2=b:2` would otherwise smuggle a second
/// member entry past a check that re-parses it as part of a list.
pub fn check_member_addr(addr: &str) -> Result<(), String> {
    let separator = |c: char| c == ',' || c == '=' || c.is_whitespace() || c.is_control();
    match addr.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(separator)
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!("'{addr}' is not HOST:PORT")),
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_members(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("'{id}' is not a node id"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        let addr = addr.trim();
        check_member_addr(addr)?;
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no members listed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_single_node() {
        let c = Config::default();
        c.check().unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8009");
        assert_eq!(
            c.members().unwrap(),
            BTreeMap::from([(1, "127.0.0.1:8009".to_string())])
        );
        let (lo, hi) = c.election_timeout_ms();
        assert!(lo >= c.heartbeat_ms * 2 && hi > lo);
    }

    #[test]
    fn initial_cluster_parsing() {
        let m = parse_members("1=a:1, 2=b:2,3=c:3").unwrap();
        assert_eq!(m.len(), 3);
        assert!(parse_members("1=a:1,1=b:2").is_err());
        assert!(parse_members("0=a:1").is_err());
        assert!(parse_members("x=a:1").is_err());
        assert!(parse_members("1=a").is_err());
        assert!(parse_members("1=a=b:1").is_err());
        assert!(parse_members("1=a b:1").is_err());
        assert!(parse_members("1=a:+1").is_err());
        assert!(parse_members("1=[::1]:8009").is_ok());
        assert!(parse_members("").is_err());
        for bad in [
            &["--max-watchers", "4096"][..],
            &["--max-connections", "1"],
            &["--max-agents", "0"],
            &["--header-read-timeout-ms", "0"],
            &["--request-timeout-ms", "5000"],
        ] {
            let c = Config::parse_from(["agent-registry"].iter().chain(bad));
            assert!(matches!(c.check(), Err(ConfigError::Edge)), "{bad:?}");
        }
        let c = Config::parse_from([
            "agent-registry",
            "--node-id",
            "4",
            "--initial-cluster",
            "1=a:1,2=b:2",
        ]);
        assert!(c.check().is_err());
    }

    #[test]
    fn a_multi_node_cluster_needs_a_secret_or_says_it_is_insecure() {
        let cluster = ["--initial-cluster", "1=a:1,2=b:2,3=c:3"];
        let parse = |extra: &[&str]| {
            let mut args = vec!["agent-registry"];
            args.extend(cluster);
            args.extend(extra);
            Config::parse_from(args).check()
        };
        assert!(matches!(parse(&[]), Err(ConfigError::NoClusterSecret(3))));
        parse(&["--cluster-secret-file", "/s"]).unwrap();
        parse(&["--insecure-peers"]).unwrap();
        assert!(matches!(
            parse(&["--insecure-peers", "--cluster-secret-file", "/s"]),
            Err(ConfigError::SecretAndInsecure)
        ));
        // The embedded single node needs none.
        Config::default().check().unwrap();
    }

    #[test]
    fn tls_files_come_in_complete_sets() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["agent-registry"];
            args.extend(extra);
            Config::parse_from(args).check()
        };
        parse(&["--tls-cert-file", "/c", "--tls-key-file", "/k"]).unwrap();
        for half in [&["--tls-cert-file", "/c"][..], &["--tls-key-file", "/k"]] {
            assert!(matches!(parse(half), Err(ConfigError::TlsPair)), "{half:?}");
        }
        let peer = [
            "--peer-tls-cert-file",
            "/pc",
            "--peer-tls-key-file",
            "/pk",
            "--peer-tls-ca-file",
            "/ca",
        ];
        parse(&peer).unwrap();
        for missing in 0..3 {
            let mut partial = peer.to_vec();
            partial.drain(missing * 2..missing * 2 + 2);
            assert!(
                matches!(parse(&partial), Err(ConfigError::PeerTlsFiles)),
                "{partial:?}"
            );
        }
        let mut insecure = peer.to_vec();
        insecure.push("--insecure-peers");
        assert!(matches!(
            parse(&insecure),
            Err(ConfigError::PeerTlsAndInsecure)
        ));
        assert!(matches!(
            parse(&["--tls-reload-interval-ms", "10"]),
            Err(ConfigError::TlsReloadInterval)
        ));
        parse(&["--tls-reload-interval-ms", "0"]).unwrap();
        assert_eq!(
            Config::parse_from(["agent-registry", "--tls-reload-interval-ms", "0"])
                .tls_reload_interval(),
            None
        );
    }

    #[test]
    fn peer_mutual_tls_may_replace_the_cluster_secret() {
        let cluster = ["--initial-cluster", "1=a:1,2=b:2,3=c:3"];
        let peer = [
            "--peer-tls-cert-file",
            "/pc",
            "--peer-tls-key-file",
            "/pk",
            "--peer-tls-ca-file",
            "/ca",
        ];
        let parse = |extra: &[&str]| {
            let mut args = vec!["agent-registry"];
            args.extend(cluster);
            args.extend(extra);
            Config::parse_from(args).check()
        };
        // mTLS alone, or with the secret as well.
        parse(&peer).unwrap();
        let mut both = peer.to_vec();
        both.extend(["--cluster-secret-file", "/s"]);
        parse(&both).unwrap();
        // A public certificate on the shared listener: peers need mTLS to
        // reach it, or a port of their own.
        let public = ["--tls-cert-file", "/c", "--tls-key-file", "/k"];
        let mut secret_only = public.to_vec();
        secret_only.extend(["--cluster-secret-file", "/s"]);
        assert!(matches!(
            parse(&secret_only),
            Err(ConfigError::PeersBehindTls(3))
        ));
        secret_only.extend(["--peer-listen", "127.0.0.1:7000"]);
        parse(&secret_only).unwrap();
        let mut with_mtls = public.to_vec();
        with_mtls.extend(peer);
        parse(&with_mtls).unwrap();
    }

    #[test]
    fn a_joining_node_authenticates_its_peers_and_has_no_initial_cluster() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["agent-registry", "--node-id", "4", "--join"];
            args.extend(extra);
            Config::parse_from(args).check()
        };
        assert!(matches!(parse(&[]), Err(ConfigError::JoinWithoutPeerAuth)));
        parse(&["--cluster-secret-file", "/s"]).unwrap();
        parse(&["--insecure-peers"]).unwrap();
        assert!(matches!(
            parse(&[
                "--cluster-secret-file",
                "/s",
                "--initial-cluster",
                "1=a:1,4=b:2"
            ]),
            Err(ConfigError::JoinWithInitialCluster)
        ));
    }

    #[test]
    fn the_peer_listener_gives_the_member_address() {
        let c = Config::parse_from(["agent-registry", "--peer-listen", "10.0.0.1:7000"]);
        c.check().unwrap();
        assert_eq!(c.peer_advertise_addr(), "10.0.0.1:7000");
        assert_eq!(c.members().unwrap()[&1], "10.0.0.1:7000");
        assert_eq!(c.advertise_addr(), "127.0.0.1:8009");
        let c = Config::parse_from([
            "agent-registry",
            "--peer-listen",
            "0.0.0.0:7000",
            "--peer-advertise",
            "node1:7000",
        ]);
        assert_eq!(c.peer_advertise_addr(), "node1:7000");
        let c = Config::parse_from(["agent-registry", "--peer-advertise", "node1:7000"]);
        assert!(matches!(c.check(), Err(ConfigError::PeerAdvertise)));
        let c = Config::parse_from(["agent-registry", "--peer-listen", "127.0.0.1:8009"]);
        assert!(matches!(c.check(), Err(ConfigError::PeerListen)));
    }
}
