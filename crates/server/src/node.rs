//! The core of a running node: storage, Raft, and the paths every request
//! takes through them: writes (proposed here or forwarded to the leader)
//! and reads (the read gate: batched read index, bounded waits).
//!
//! Everything else (liveness, elections, discovery, the HTTP edge) holds a
//! [`Node`] and builds on it; nothing here knows about them. The core's
//! failures are [`WriteError`] and [`ReadError`]; the edge turns them into
//! HTTP answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tracing::{info, warn};

use registry_raft::auth::PeerKey;
use registry_raft::network::{peer_http_client, ForwardError, ForwardRequest, ReadIndex};
use registry_raft::{
    open_store, Applied, ClusterIdentity, DiskSpace, LogStore, Network, PeerAcks, PeerClient,
    PeerError, PeerHttp, Raft, SharedState, StoreError, StoreOptions,
};
use registry_state::StateConfig;
use registry_types::api::{ClusterInfo, DiskInfo, Member, NodeRole, PeerAuthMode};
use registry_types::{Command, CommandResult, Consistency, NodeId, ReadOptions, Timestamp};

use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::group_commit::{ForwardGroup, GroupCommit};
use crate::metrics::Metrics;
use crate::tls::NodeTls;

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The data directory's `cluster-id` file cannot be read.
    #[error("cluster identity: {0}")]
    Identity(#[from] registry_raft::IdentityError),
    #[error("storage: {0}")]
    Store(#[from] registry_raft::StoreError),
    #[error("reading the raft log: {0}")]
    Log(#[from] openraft::StorageError<NodeId>),
    #[error("raft configuration: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Raft(#[from] openraft::error::Fatal<NodeId>),
    #[error("initializing the cluster: {0}")]
    Initialize(#[from] RaftError<NodeId, openraft::error::InitializeError<NodeId, BasicNode>>),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Secret(#[from] registry_raft::auth::SecretError),
    /// A certificate, key or CA file cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Access control cannot work as configured (`--auth on` without a
    /// way to an admin token, an unreadable bootstrap token).
    #[error("access control: {0}")]
    Auth(String),
}

/// Why a write did not go through. Only [`WriteError::OutcomeUnknown`]
/// leaves the write possibly applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the cluster has no leader right now (election in progress or no quorum); retry shortly"
    )]
    NoLeader,
    /// Certainly not applied; another attempt may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// Sent to Raft, then no answer in time: it may or may not be applied.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A bug or a peer that refused the request as malformed (logged).
    #[error("internal error; see the node's log")]
    Internal,
    /// Refused by the leader before proposing: a new agent beyond
    /// `--max-agents`. Certainly not applied.
    #[error("the registry holds its most agents ({max}); remove agents or raise --max-agents")]
    RegistryFull { max: u64 },
    /// Refused by the leader before proposing: its disk is short of space.
    /// Certainly not applied.
    #[error(
        "no space: the leader's disk has {} MiB free and keeps {} MiB free (--min-free-disk-mb); writes are refused until space is freed, reads and heartbeats are still served",
        free_bytes >> 20,
        min_free_bytes >> 20
    )]
    NoSpace {
        free_bytes: u64,
        min_free_bytes: u64,
    },
}

impl WriteError {
    /// Whether the same write may simply be sent again: true only when it
    /// certainly was not applied.
    pub fn retryable(&self) -> bool {
        matches!(self, WriteError::NoLeader | WriteError::Unavailable(_))
    }
}

/// Why a read could not be answered as fresh as it asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error(
        "the cluster has no leader right now (election in progress or no quorum); retry shortly"
    )]
    NoLeader,
    #[error("{0}")]
    Unavailable(String),
    /// The leader's read index is known but this node lags behind it.
    #[error("this node has not yet applied log index {index}; retry or read from another node")]
    Behind { index: u64 },
    /// `min_revision` is ahead of this node within the read timeout.
    #[error("revision {wanted} is not applied on this node yet (it is at {applied})")]
    RevisionNotApplied { wanted: u64, applied: u64 },
    #[error("internal error; see the node's log")]
    Internal,
}

impl ReadError {
    /// Whether the same read may succeed if tried again (here or on another
    /// node). Every read failure is; only a bug is not.
    pub fn retryable(&self) -> bool {
        !matches!(self, ReadError::Internal)
    }
}

/// The core of a node: Raft, the replicated state, and the write and read
/// paths. Cheap to clone.
#[derive(Clone)]
pub struct Node(Arc<NodeInner>);

pub struct NodeInner {
    pub config: Config,
    pub id: NodeId,
    pub raft: Raft,
    pub shared: SharedState,
    /// Highest committed log index this node knows of.
    committed: Arc<AtomicU64>,
    /// The client of every request to a peer, which signs them.
    http: PeerHttp,
    /// The key of the cluster secret; `None` on a single node without one
    /// and with `--insecure-peers`.
    peer_key: Option<PeerKey>,
    peer_auth: PeerAuthMode,
    /// The certificates of the listeners and of the peer connections,
    /// reloaded in place.
    pub tls: NodeTls,
    /// When this node last received an AppendEntries (data or heartbeat)
    /// from a leader.
    last_leader_contact: Mutex<Option<Instant>>,
    /// Concurrent linearizable reads, coalesced into read-index rounds.
    reads: Arc<Coalescer<(), Result<u64, ReadError>>>,
    pub metrics: Metrics,
    /// The leader's queue of client writes, proposed in rounds.
    group: GroupCommit,
    /// A follower's queue of writes for the leader, sent in groups.
    forwarding: ForwardGroup,
    /// The Raft log (shared with openraft), read by pre-vote.
    log_store: LogStore,
    /// The cluster this node belongs to, as kept in the data directory:
    /// the same handle the state-machine store checks snapshots with, so
    /// an id adopted by one is seen by the other.
    pub identity: ClusterIdentity,
    /// Free space of the data directory: below `--min-free-disk-mb` this
    /// node proposes nothing and takes no new log entries or snapshots
    /// (see `registry_raft::disk`).
    pub disk: DiskSpace,
    /// Registrations of new agents this node admitted as leader and has
    /// not yet applied: counted with the registry's agents against
    /// `--max-agents`, so concurrent registrations (one group-commit round)
    /// cannot together overshoot it.
    creating: AtomicU64,
    /// When each peer last answered this node's Raft RPCs (on the
    /// leader: each member's last acknowledgement), for the metrics and for
    /// which voters a membership change leaves reachable.
    pub peer_acks: PeerAcks,
    /// Holds this leader's proposals and read-index rounds back while it
    /// hands leadership over (see `crate::handover`).
    pub handover: crate::handover::Gate,
    /// Cancelled when the node begins to stop (its listeners close next).
    pub stopping: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.0
    }
}

impl Node {
    /// Opens storage, starts Raft and, on the very first start of the
    /// lowest-id member, initializes the cluster. Liveness and elections
    /// are started by their owners (see `crate::start`).
    pub async fn start(config: Config) -> Result<Node, StartError> {
        config.check()?;
        let members = config.members()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let disk = DiskSpace::new(&config.data_dir, config.min_free_disk_bytes());
        disk.spawn_sampler(Duration::from_secs(1));
        let metrics = Metrics::new();
        let options = StoreOptions {
            state: StateConfig {
                event_window: config.event_window,
            },
            sync: true,
            disk: Some(disk.clone()),
            observer: metrics.store_observer(),
        };
        let identity = ClusterIdentity::load(&config.data_dir)?;
        let (mut log_store, sm_store, shared) =
            open_store(&config.data_dir, config.node_id, identity.clone(), options)?;
        let pristine = log_store.is_pristine().await?;
        let committed = log_store.committed_handle();
        let (el_min, el_max) = config.election_timeout_ms();
        let raft_config = openraft::Config {
            cluster_name: "agent-registry".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: el_min,
            election_timeout_max: el_max,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.snapshot_logs.min(1_000),
            purge_batch_size: 256,
            // Elections are decided with pre-vote by `election.rs`.
            enable_elect: false,
            ..Default::default()
        }
        .validate()?;
        let peer_key = match &config.cluster_secret_file {
            Some(path) => Some(PeerKey::from_file(path)?),
            None => None,
        };
        let tls = NodeTls::load(&config)?;
        let peer_auth = match (&peer_key, tls.peer.is_some(), config.insecure_peers) {
            (Some(_), true, _) => PeerAuthMode::MutualTlsHmacSha256,
            (Some(_), false, _) => PeerAuthMode::HmacSha256,
            (None, true, _) => PeerAuthMode::MutualTls,
            (None, false, true) => PeerAuthMode::Insecure,
            (None, false, false) => PeerAuthMode::None,
        };
        if peer_auth == PeerAuthMode::Insecure {
            warn!("--insecure-peers: node-to-node requests are not authenticated; anyone who can reach the peer port can act as a member of this cluster");
        }
        // Peer connections leave from the address peers are served on, so
        // that a member is recognised by its source address.
        let peer_ip = config.peer_listen.unwrap_or(config.listen).ip();
        let http = PeerHttp::new(
            peer_http_client(
                (!peer_ip.is_unspecified()).then_some(peer_ip),
                tls.peer_client()?,
            )?,
            tls.peer_scheme(),
            config.node_id,
            peer_key.clone(),
            identity.clone(),
        );
        let network = Network::new(http.clone(), config.heartbeat());
        let peer_acks = network.acks();
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store.clone(),
            sm_store,
        )
        .await?;

        let group = {
            let (rounds, commands) = (
                metrics.write_rounds.clone(),
                metrics.write_round_commands.clone(),
            );
            GroupCommit::start(raft.clone(), config.write_timeout(), move |n| {
                rounds.inc();
                commands.inc_by(n as u64);
            })
        };
        let forwarding = {
            let calls = metrics.forward_calls.clone();
            ForwardGroup::start(http.clone(), config.write_timeout(), move |_| calls.inc())
        };
        let node = Node(Arc::new(NodeInner {
            id: config.node_id,
            raft,
            shared,
            committed,
            http,
            peer_key,
            peer_auth,
            tls,
            last_leader_contact: Mutex::new(None),
            // A read must not join a round already in flight, and every
            // read waiting shares the next one, however many.
            reads: Coalescer::new(usize::MAX),
            metrics,
            group,
            forwarding,
            log_store,
            identity,
            disk,
            creating: AtomicU64::new(0),
            peer_acks,
            handover: Default::default(),
            stopping: Default::default(),
            config,
        }));

        // A `--join` node never initializes: it waits to be added.
        let lowest = members.keys().next().copied();
        let initializes = pristine && !node.config.join && lowest == Some(node.id);
        node.check_admin_token(initializes)?;
        if initializes {
            node.bootstrap(members).await?;
        } else if pristine && node.config.join {
            info!(
                node = node.id,
                address = %node.config.peer_advertise_addr(),
                "--join: waiting to be added by the cluster's leader (POST /v1/cluster/members); 503 until then"
            );
        } else if pristine {
            info!(
                node = node.id,
                "fresh node: waiting to be contacted by the cluster's leader"
            );
        } else {
            info!(node = node.id, "restarting from existing data");
        }
        node.spawn_watchers();
        Ok(node)
    }

    /// Under `--auth on` without `--bootstrap-token-file`: refuses to start
    /// a node that would leave the cluster without an admin token, which
    /// nobody could then create: the node that initializes a cluster, and
    /// a node whose registry holds data but no admin token (auth turned on
    /// for an existing cluster). A fresh node joining a cluster learns the
    /// tokens from its leader.
    // StartError holds openraft's errors by value (200 bytes); it is
    // returned once, at start, not on a hot path.
    #[allow(clippy::result_large_err)]
    fn check_admin_token(&self, initializes: bool) -> Result<(), StartError> {
        let config = &self.config;
        if config.auth == crate::config::AuthMode::Off || config.bootstrap_token_file.is_some() {
            return Ok(());
        }
        let (has_admin, has_data) = {
            let g = self.shared.read();
            (
                g.registry.has_admin_token(Timestamp::now()),
                g.registry.revision() > 0,
            )
        };
        if has_admin {
            return Ok(());
        }
        if initializes {
            return Err(StartError::Auth(
                "--auth on: this node initializes the cluster, and the first admin token comes from --bootstrap-token-file; give it (the same file to every node)".into(),
            ));
        }
        if has_data {
            return Err(StartError::Auth(
                "--auth on: this node's registry holds no admin token, so nobody could create one; give --bootstrap-token-file (the leader then creates that admin token)".into(),
            ));
        }
        Ok(())
    }

    /// Initializes the cluster, unless a peer already reports one (which
    /// means this node's data was wiped: initializing again would fork it).
    async fn bootstrap(&self, members: BTreeMap<NodeId, String>) -> Result<(), StartError> {
        for (id, addr) in members.iter().filter(|(id, _)| **id != self.id) {
            let probe = self.peer(addr).state(Duration::from_millis(500)).await;
            if let Ok(state) = probe {
                if state.initialized {
                    warn!(peer = id, cluster = ?state.cluster, "peer already belongs to an initialized cluster: not initializing; waiting to be contacted by its leader");
                    return Ok(());
                }
            }
        }
        let cluster = self.identity.get_or_create()?;
        info!(%cluster, "cluster id");
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        info!(members = ?nodes.keys().collect::<Vec<_>>(), "initializing the cluster");
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(e)) => {
                // NotAllowed: already initialized (a race with a restart).
                info!(error = %e, "cluster already initialized");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a cluster without an id one: a cluster bootstrapped by a
    /// release before cluster ids has none, and its first leader after the
    /// upgrade asks its peers for theirs (one may have adopted an id from an
    /// earlier leader) and adopts the first it hears of, or else creates
    /// one. The followers adopt it from the leader's next request.
    ///
    /// Should that leader stop before any follower has adopted its new id
    /// and another leader create a second one, the first node is refused
    /// by the others when it returns ("belongs to cluster ..."); remove
    /// its `cluster-id` file while it is stopped and it adopts the others'.
    async fn name_unnamed_cluster(&self) {
        let peers: Vec<(NodeId, String)> = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        for (peer, addr) in peers {
            let Ok(state) = self.peer(&addr).state(Duration::from_millis(500)).await else {
                continue;
            };
            if let Some(cluster) = state.cluster {
                match self.identity.adopt(cluster) {
                    Ok(()) => info!(%cluster, peer, "adopted the cluster id a peer holds"),
                    Err(e) => warn!(error = %e, "cannot keep the cluster id"),
                }
                return;
            }
        }
        if !self.is_leader() || self.identity.get().is_some() {
            return;
        }
        match self.identity.get_or_create() {
            Ok(cluster) => info!(
                %cluster,
                "this cluster had no id (bootstrapped by a release without one): created one; the followers adopt it"
            ),
            Err(e) => warn!(error = %e, "cannot keep the cluster id"),
        }
    }

    /// Keeps gauges current and logs leadership changes; aborts the process
    /// if Raft stops with a fatal error (a node must not stay half alive).
    fn spawn_watchers(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut rx = node.raft.metrics();
            let mut leader = None;
            loop {
                let m = rx.borrow_and_update().clone();
                if let Err(fatal) = &m.running_state {
                    // Shutdown also ends Raft with `Stopped`; only other
                    // errors are fatal for the process.
                    if matches!(fatal, openraft::error::Fatal::Stopped) {
                        info!("raft stopped");
                        return;
                    }
                    tracing::error!(error = %fatal, "raft stopped with a fatal error");
                    std::process::abort();
                }
                if m.current_leader != leader {
                    info!(term = m.current_term, leader = ?m.current_leader, state = ?m.state, "leader changed");
                    node.metrics.leader_changes.inc();
                    leader = m.current_leader;
                    if leader == Some(node.id) && node.identity.get().is_none() {
                        let naming = node.clone();
                        tokio::spawn(async move { naming.name_unnamed_cluster().await });
                    }
                }
                node.metrics.observe_raft(
                    &m,
                    node.shared.position().revision,
                    node.shared.read().registry.len(),
                );
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Brings the gauges a scrape reads up to date: disk, the registry's
    /// figures (O(statuses), see `Metrics::observe_registry`), commit and
    /// apply lag, membership and, on the leader, each member's replication.
    /// A member is reachable when it answered within the longest election
    /// timeout: longer, and a follower would already stand for election.
    pub fn observe_metrics(&self) {
        self.metrics.observe_disk(&self.disk.status());
        self.metrics.observe_registry(&self.shared.read().registry);
        let m = self.raft.metrics().borrow().clone();
        let reach = Duration::from_millis(self.config.election_timeout_ms().1);
        self.metrics.observe_cluster(
            &m,
            self.committed.load(Ordering::Relaxed),
            &self.peer_acks.ages(),
            reach,
        );
    }

    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        // Borrowed, not cloned: this runs on every request (response
        // headers, forwarding), and the metrics hold the replication map.
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let id = m.current_leader?;
        Some((id, addr_of(&m, id)?))
    }

    /// The address of member `id`, as the membership records it.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        addr_of(&self.raft.metrics().borrow(), id)
    }

    /// A handle on the Raft log.
    pub(crate) fn log_store(&self) -> LogStore {
        self.log_store.clone()
    }

    /// Whether the membership this node holds names it (as voter or
    /// learner). A `--join` node is not one until a leader adds it.
    pub fn is_member(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    /// Whether this node holds any membership: it belongs to a cluster
    /// (initialized, or added by a leader).
    pub fn has_membership(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Records that a leader just talked to this node.
    pub fn touch_leader_contact(&self) {
        if let Ok(mut t) = self.last_leader_contact.lock() {
            *t = Some(Instant::now());
        }
    }

    /// Milliseconds since this node last heard from its leader: 0 on the
    /// leader, `None` when it never has.
    pub fn last_contact_ms(&self) -> Option<u64> {
        if self.is_leader() {
            return Some(0);
        }
        let t = *self.last_leader_contact.lock().ok()?;
        t.map(|t| t.elapsed().as_millis() as u64)
    }

    /// The client of requests to peers.
    pub fn http(&self) -> &PeerHttp {
        &self.http
    }

    fn peer(&self, addr: &str) -> PeerClient {
        PeerClient::new(self.http.clone(), addr)
    }

    /// The cluster this node belongs to.
    pub fn identity(&self) -> &ClusterIdentity {
        &self.identity
    }

    /// The key of the cluster secret, and how peers are authenticated.
    pub fn peer_auth(&self) -> (Option<PeerKey>, PeerAuthMode) {
        (self.peer_key.clone(), self.peer_auth)
    }

    /// Proposes a command through Raft, forwarding it to the leader when
    /// this node is not the leader. Waits (bounded) through elections.
    ///
    /// Retries only when the command certainly was not committed (no leader,
    /// leader unreachable, or leadership lost before the entry was kept);
    /// when the outcome is unknown it answers 504 `timeout`.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, WriteError> {
        let deadline = Instant::now() + self.config.write_timeout();
        let mut wait = LeaderWait::new(&self.raft);
        loop {
            wait.observe();
            match self.leader() {
                Some((l, _)) if l == self.id => match self.write_local(cmd.clone(), deadline).await
                {
                    Ok(applied) => return applied_result(applied),
                    Err(ForwardError::NotLeader { .. }) => {}
                    Err(ForwardError::Unknown(m)) => return Err(WriteError::OutcomeUnknown(m)),
                    Err(ForwardError::Unavailable(m)) => return Err(WriteError::Unavailable(m)),
                    Err(ForwardError::RegistryFull { max }) => {
                        return Err(WriteError::RegistryFull { max })
                    }
                    Err(ForwardError::NoSpace {
                        free_bytes,
                        min_free_bytes,
                    }) => {
                        return Err(WriteError::NoSpace {
                            free_bytes,
                            min_free_bytes,
                        })
                    }
                },
                Some((_, addr)) => {
                    self.metrics.forwarded_writes.inc();
                    let req = ForwardRequest {
                        command: cmd.clone(),
                    };
                    match self.forwarding.forward(addr, req, deadline).await {
                        Ok(Ok(applied)) => {
                            // Answer once this node has applied the write
                            // too: the answer's revision header then covers
                            // it, and a stale read here sees it (clients use
                            // that header as `min_revision`). The commit
                            // reaches followers at once, so this costs about
                            // one round trip. Bounded: the write is
                            // committed whatever happens here.
                            // A node that is stopping no longer takes
                            // the leader's appends (its listener is
                            // closed) and serves no later read: it answers
                            // at once instead of at the deadline.
                            let index = applied.log_index;
                            let caught_up = self.shared.wait_for(|p| p.log_index >= index);
                            let stopping = self.stopping.cancelled();
                            let _ = tokio::time::timeout_at(deadline.into(), async {
                                tokio::select! {
                                    _ = caught_up => {}
                                    () = stopping => {}
                                }
                            })
                            .await;
                            return applied_result(applied);
                        }
                        Ok(Err(ForwardError::NotLeader { .. }))
                        | Ok(Err(ForwardError::Unavailable(_))) => {}
                        Ok(Err(ForwardError::Unknown(m))) => {
                            return Err(WriteError::OutcomeUnknown(m))
                        }
                        Ok(Err(ForwardError::RegistryFull { max })) => {
                            return Err(WriteError::RegistryFull { max })
                        }
                        Ok(Err(ForwardError::NoSpace {
                            free_bytes,
                            min_free_bytes,
                        })) => {
                            return Err(WriteError::NoSpace {
                                free_bytes,
                                min_free_bytes,
                            })
                        }
                        // Not sent: safe to try again once a leader is known.
                        Err(PeerError::Unreachable { .. }) => {}
                        Err(e @ PeerError::Refused { .. }) => {
                            tracing::error!(error = %e, "the leader refused a forwarded write");
                            return Err(WriteError::Internal);
                        }
                        Err(e) => {
                            warn!(error = %e, "forwarded write failed; outcome unknown");
                            return Err(WriteError::OutcomeUnknown(
                                "the leader did not answer in time; the write may or may not have been applied".into(),
                            ));
                        }
                    }
                }
                None => {}
            }
            if !wait.fits(deadline) {
                return Err(WriteError::NoLeader);
            }
            wait.pause().await;
        }
    }

    /// Proposes on this node, which believes it is the leader. The leader's
    /// clock stamps the command here, whichever node received the request.
    /// Client writes go through group commit; the leader's own liveness
    /// commands are proposed as entries of their own.
    pub async fn write_local(
        &self,
        mut cmd: Command,
        deadline: Instant,
    ) -> Result<Applied, ForwardError> {
        // Nothing is proposed without disk space for it: the entry would be
        // acknowledged by followers and then wait for this node's disk.
        if self.disk.is_short() {
            self.metrics.writes_refused_no_space.inc();
            return Err(ForwardError::NoSpace {
                free_bytes: self.disk.free(),
                min_free_bytes: self.disk.min_free(),
            });
        }
        // During a handover the write waits and goes to the next leader
        // (`propose` and a follower's forwarding retry on `NotLeader`).
        let Some(_pass) = self.handover.enter() else {
            return Err(ForwardError::NotLeader { leader: None });
        };
        // Held until the write is applied (or failed): the agent is counted
        // by the registry from then on.
        let _slot = self.admit(&cmd)?;
        cmd.stamp(Timestamp::now());
        if cmd.groupable() {
            return self.group.write(cmd, deadline).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        crate::group_commit::client_write(&self.raft, cmd, remaining).await
    }

    /// The leader's admission of a registration: one that would add an
    /// agent beyond `--max-agents` is refused before it is proposed (and
    /// changes nothing); re-registering an agent that exists is always
    /// admitted. A new agent takes a slot in [`NodeInner::creating`] until
    /// its write ends, so registrations in flight together are counted
    /// together. Only after a change of leader can the registry overshoot,
    /// by the registrations the old leader had in flight.
    fn admit(&self, cmd: &Command) -> Result<Option<CreationSlot<'_>>, ForwardError> {
        let (Command::Register(reg) | Command::RegisterCard { register: reg, .. }) = cmd.inner()
        else {
            return Ok(None);
        };
        let max = self.config.max_agents;
        // The slot is taken under the state's read guard: no registration
        // can be applied (and give its slot back) between the count read
        // and the slot taken, so each one in flight is counted in the
        // registry or among the slots (for a moment both), never missed.
        let g = self.shared.read();
        if g.registry.get(&reg.agent_id).is_some() {
            return Ok(None);
        }
        let held = g.registry.len() as u64;
        self.creating
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |creating| {
                (held.saturating_add(creating) < max).then_some(creating + 1)
            })
            .map_err(|_| ForwardError::RegistryFull { max })?;
        drop(g);
        Ok(Some(CreationSlot(&self.creating)))
    }

    /// Waits until this node may answer a read as asked: `min_revision`
    /// first (a bounded wait for that revision), then `consistency`
    /// (linearizable: read index from the leader; stale: at once).
    pub async fn read_gate(&self, read: &ReadOptions) -> Result<(), ReadError> {
        if let Some(rev) = read.min_revision {
            self.wait_for_revision(rev).await?;
        }
        match read.consistency {
            Consistency::Stale => Ok(()),
            Consistency::Linearizable => self.linearize().await,
        }
    }

    /// Makes the next read linearizable: obtains a read index (from the
    /// leader, coalesced with concurrent reads) and waits until this node
    /// has applied that far.
    pub async fn linearize(&self) -> Result<(), ReadError> {
        let deadline = Instant::now() + self.config.read_timeout();
        let node = self.clone();
        let round = move |waiting: Vec<()>| {
            let node = node.clone();
            async move {
                // Bounded: callers time out on their own; a round that
                // outlives the read timeout is abandoned so the next one
                // can start.
                let res = tokio::time::timeout(node.config.read_timeout(), node.fetch_read_index())
                    .await
                    .unwrap_or(Err(ReadError::NoLeader));
                vec![res; waiting.len()]
            }
        };
        let index =
            match tokio::time::timeout_at(deadline.into(), self.reads.submit((), round)).await {
                Ok(Some(r)) => r?,
                Ok(None) => return Err(ReadError::Internal),
                Err(_) => return Err(ReadError::NoLeader),
            };
        let wait = self.shared.wait_for(|p| p.log_index >= index);
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ReadError::Behind { index }),
        }
    }

    /// Waits (bounded) until this node has applied registry revision `rev`.
    pub async fn wait_for_revision(&self, rev: u64) -> Result<(), ReadError> {
        let wait = self.shared.wait_for(|p| p.revision >= rev);
        match tokio::time::timeout(self.config.read_timeout(), wait).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ReadError::RevisionNotApplied {
                wanted: rev,
                applied: self.shared.position().revision,
            }),
        }
    }

    /// One read-index round: ask the leader (or be it) for the index a
    /// linearizable read must reach. Retries through elections until the
    /// caller's deadline cancels it.
    async fn fetch_read_index(&self) -> Result<u64, ReadError> {
        let mut wait = LeaderWait::new(&self.raft);
        loop {
            wait.observe();
            let leader = self.leader().map(|(id, _)| id);
            self.metrics.read_index_rounds.inc();
            match leader {
                Some(l) if l == self.id => match self.local_read_index().await {
                    Ok(r) => return Ok(r.index),
                    Err(ForwardError::NotLeader { .. }) => {}
                    Err(e) => return Err(ReadError::Unavailable(e.to_string())),
                },
                Some(l) => {
                    if let Some((_, addr)) = self.leader().filter(|(id, _)| *id == l) {
                        if let Ok(Ok(r)) = self
                            .peer(&addr)
                            .read_index(self.config.read_timeout())
                            .await
                        {
                            return Ok(r.index);
                        }
                    }
                }
                None => {}
            }
            wait.pause().await;
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the
    /// index reads must wait for.
    pub async fn local_read_index(&self) -> Result<ReadIndex, ForwardError> {
        // Confirming leadership sends AppendEntries, which would renew the
        // followers' leases a handover waits out: reads wait for it too.
        let Some(_pass) = self.handover.enter() else {
            return Err(ForwardError::NotLeader { leader: None });
        };
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(ReadIndex {
                index: read.map_or(0, |l| l.index),
            }),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(ForwardError::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(ForwardError::Unavailable(f.to_string())),
        }
    }

    /// The cluster as this node sees it.
    pub fn cluster_info(&self) -> ClusterInfo {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let voter = voters.contains(id);
                let role = if Some(*id) == m.current_leader {
                    NodeRole::Leader
                } else if *id == self.id {
                    role_of(m.state)
                } else if voter {
                    NodeRole::Follower
                } else {
                    NodeRole::Learner
                };
                // Only a leader's peers answer its RPCs all the time.
                let leads = m.current_leader == Some(self.id) && *id != self.id;
                Member {
                    node_id: *id,
                    addr: node.addr.clone(),
                    role,
                    voter,
                    last_answer_ms: leads
                        .then(|| self.peer_acks.since(*id))
                        .flatten()
                        .map(|d| d.as_millis() as u64),
                }
            })
            .collect();
        let applied = m.last_applied.map_or(0, |l| l.index);
        ClusterInfo {
            node_id: self.id,
            role: role_of(m.state),
            leader_id: m.current_leader,
            leader_addr: m.current_leader.and_then(|l| addr_of(&m, l)),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.committed.load(Ordering::Relaxed).max(applied),
            applied_index: applied,
            snapshot_index: m.snapshot.map(|l| l.index),
            revision: self.shared.position().revision,
            members,
            last_contact_ms: self.last_contact_ms(),
            cluster_id: self.identity.get().map(|c| c.to_string()),
            peer_auth: self.peer_auth,
            disk: {
                let d = self.disk.status();
                DiskInfo {
                    free_bytes: d.free_bytes,
                    min_free_bytes: d.min_free_bytes,
                    no_space: d.no_space,
                }
            },
            // Filled in by the membership part (`crate::membership`).
            membership_change: None,
        }
    }
}

/// The pause between attempts of a call that must reach the leader: until
/// leadership changes, or a doubling backoff (10 ms to 250 ms) passes.
pub(crate) struct LeaderWait {
    /// Raft's metrics; `observe` marks the current ones as seen.
    pub(crate) metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    backoff: Duration,
}

impl LeaderWait {
    pub(crate) fn new(raft: &Raft) -> Self {
        LeaderWait {
            metrics: raft.metrics(),
            backoff: Duration::from_millis(10),
        }
    }

    /// Marks the current leadership as seen, before an attempt reads it.
    pub(crate) fn observe(&mut self) {
        self.metrics.borrow_and_update();
    }

    /// Whether one more pause still ends before `deadline`.
    pub(crate) fn fits(&self, deadline: Instant) -> bool {
        Instant::now() + self.backoff < deadline
    }

    /// Waits for a leadership change or the backoff, then doubles it.
    pub(crate) async fn pause(&mut self) {
        let _ = tokio::time::timeout(self.backoff, self.metrics.changed()).await;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(250));
    }
}

/// A registration of a new agent admitted by [`Node::admit`]; its slot is
/// given back when dropped.
struct CreationSlot<'a>(&'a AtomicU64);

impl Drop for CreationSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The last log id the leader knows replicated to member `id`, from the
/// replication progress in `m`: `None` off the leader, and for a member
/// that matched nothing yet.
pub(crate) fn matched_of(
    m: &openraft::RaftMetrics<u64, BasicNode>,
    id: NodeId,
) -> Option<registry_raft::LogId> {
    m.replication.as_ref()?.get(&id).copied().flatten()
}

/// Member `id`'s address in the membership the metrics report.
fn addr_of(m: &openraft::RaftMetrics<u64, BasicNode>, id: NodeId) -> Option<String> {
    Some(m.membership_config.membership().get_node(&id)?.addr.clone())
}

fn role_of(state: ServerState) -> NodeRole {
    match state {
        ServerState::Leader => NodeRole::Leader,
        ServerState::Follower => NodeRole::Follower,
        ServerState::Candidate => NodeRole::Candidate,
        ServerState::Learner => NodeRole::Learner,
        ServerState::Shutdown => NodeRole::Unknown,
    }
}

fn applied_result(applied: Applied) -> Result<CommandResult, WriteError> {
    applied.result.ok_or_else(|| {
        tracing::error!("a client command produced no result");
        WriteError::Internal
    })
}
