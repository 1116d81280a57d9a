//! A running node: storage, Raft, and the paths every request takes through
//! them (write forwarding, read index, bounded waits).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use registry_raft::network::{peer_http_client, ForwardError, ForwardRequest, ReadIndex};
use registry_raft::{
    open_store, Applied, LogStore, Network, PeerClient, PeerError, Raft, SharedState, StoreOptions,
};
use registry_state::StateConfig;
use registry_types::api::{ClusterInfo, Member, NodeRole};
use registry_types::{Command, CommandResult, NodeId, Timestamp};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::group_commit::{ForwardGroup, GroupCommit};
use crate::metrics::Metrics;

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Store(#[from] registry_raft::StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct Node(Arc<NodeInner>);

/// How often a node reports the discovery requests it served.
pub const COUNTER_REPORT_INTERVAL: Duration = Duration::from_secs(5);

pub struct NodeInner {
    pub config: Config,
    pub id: NodeId,
    pub raft: Raft,
    pub shared: SharedState,
    /// Highest committed log index this node knows of.
    committed: Arc<AtomicU64>,
    http: reqwest::Client,
    /// When this node last received an AppendEntries (data or heartbeat)
    /// from a leader.
    last_leader_contact: Mutex<Option<Instant>>,
    reads: ReadBatcher,
    pub metrics: Metrics,
    /// Discovery requests (get, list, search, discover, select) served
    /// here and not yet added to the replicated counter (see
    /// [`Node::spawn_counter_reports`]).
    pub discovery_requests: AtomicU64,
    /// Leader-side heartbeat table, checkpoints, sweeps and brake.
    pub liveness: crate::liveness::Liveness,
    /// Round-robin positions of `GET /v1/select`.
    pub round_robin: crate::discovery::RoundRobin,
    /// The leader's queue of client writes, proposed in rounds.
    group: GroupCommit,
    /// A follower's queue of writes for the leader, sent in groups.
    forwarding: ForwardGroup,
    /// The Raft log (shared with openraft), read by pre-vote.
    log_store: LogStore,
}

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.0
    }
}

impl Node {
    /// Opens storage, starts Raft and, on the very first start of the
    /// lowest-id member, initializes the cluster.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        config.check()?;
        let members = config.members()?;
        let options = StoreOptions {
            state: StateConfig {
                event_window: config.event_window,
            },
            sync: true,
        };
        let (mut log_store, sm_store, shared) =
            open_store(&config.data_dir, config.node_id, options)?;
        let pristine = log_store
            .is_pristine()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
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
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let listen_ip = config.listen.ip();
        let http = peer_http_client((!listen_ip.is_unspecified()).then_some(listen_ip))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network::new(http.clone(), config.heartbeat()),
            log_store.clone(),
            sm_store,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let metrics = Metrics::new();
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
            last_leader_contact: Mutex::new(None),
            reads: ReadBatcher::default(),
            metrics,
            group,
            forwarding,
            discovery_requests: AtomicU64::new(0),
            liveness: crate::liveness::Liveness::new(&config),
            round_robin: Default::default(),
            log_store,
            config,
        }));

        let lowest = members.keys().next().copied();
        if pristine && lowest == Some(node.id) {
            node.bootstrap(members).await?;
        } else if pristine {
            info!(
                node = node.id,
                "fresh node: waiting to be contacted by the cluster's leader"
            );
        } else {
            info!(node = node.id, "restarting from existing data");
        }
        node.spawn_watchers();
        node.spawn_elector();
        node.spawn_liveness();
        node.spawn_counter_reports();
        Ok(node)
    }

    /// Initializes the cluster, unless a peer already reports one (which
    /// means this node's data was wiped: initializing again would fork it).
    async fn bootstrap(&self, members: BTreeMap<NodeId, String>) -> Result<(), StartError> {
        for (id, addr) in members.iter().filter(|(id, _)| **id != self.id) {
            let url = format!("http://{addr}/v1/cluster?consistency=stale");
            let probe = self
                .http
                .get(url)
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if let Ok(resp) = probe {
                if let Ok(info) = resp.json::<ClusterInfo>().await {
                    if !info.members.is_empty() {
                        warn!(peer = id, "peer already belongs to an initialized cluster: not initializing; waiting to be contacted by its leader");
                        return Ok(());
                    }
                }
            }
        }
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
            Err(e) => Err(StartError::Raft(e.to_string())),
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

    /// Every [`COUNTER_REPORT_INTERVAL`], adds the discovery requests this
    /// node served meanwhile to the replicated counter, through Raft (a
    /// follower's report is forwarded to the leader like any write). A
    /// report that fails is dropped rather than retried, so a count is never
    /// added twice; at most one interval of one node's requests is lost
    /// around a failure or when the node stops.
    fn spawn_counter_reports(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COUNTER_REPORT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let count = node.discovery_requests.swap(0, Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let cmd = Command::CountDiscoveryRequests {
                    count,
                    now: Timestamp::now(),
                };
                if let Err(e) = node.propose(cmd).await {
                    debug!(error = %e.body.error.message, count, "discovery count not reported");
                }
            }
        });
    }

    /// Discovery requests served by the whole cluster as this node knows
    /// them: the replicated total plus its own unreported ones.
    pub fn discovery_requests_total(&self, replicated: u64) -> u64 {
        replicated.saturating_add(self.discovery_requests.load(Ordering::Relaxed))
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

    /// The HTTP client used between nodes.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn peer(&self, addr: &str) -> PeerClient {
        PeerClient::new(self.http.clone(), addr)
    }

    /// Proposes a command through Raft, forwarding it to the leader when
    /// this node is not the leader. Waits (bounded) through elections.
    ///
    /// Retries only when the command certainly was not committed (no leader,
    /// leader unreachable, or leadership lost before the entry was kept);
    /// when the outcome is unknown it answers 504 `timeout`.
    pub async fn propose(&self, cmd: Command) -> ApiResult<CommandResult> {
        let deadline = Instant::now() + self.config.write_timeout();
        let mut wait = LeaderWait::new(&self.raft);
        loop {
            wait.observe();
            match self.leader() {
                Some((l, _)) if l == self.id => match self.write_local(cmd.clone(), deadline).await
                {
                    Ok(applied) => return applied_result(applied),
                    Err(ForwardError::NotLeader { .. }) => {}
                    Err(ForwardError::Unknown(m)) => return Err(ApiError::timeout(m)),
                    Err(ForwardError::Unavailable(m)) => return Err(ApiError::unavailable(m)),
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
                            let index = applied.log_index;
                            let caught_up = self.shared.wait_for(|p| p.log_index >= index);
                            let _ = tokio::time::timeout_at(deadline.into(), caught_up).await;
                            return applied_result(applied);
                        }
                        Ok(Err(ForwardError::NotLeader { .. }))
                        | Ok(Err(ForwardError::Unavailable(_))) => {}
                        Ok(Err(ForwardError::Unknown(m))) => return Err(ApiError::timeout(m)),
                        // Not sent: safe to try again once a leader is known.
                        Err(PeerError::Unreachable { .. }) => {}
                        Err(e @ PeerError::Refused { .. }) => {
                            tracing::error!(error = %e, "the leader refused a forwarded write");
                            return Err(ApiError::internal());
                        }
                        Err(e) => {
                            warn!(error = %e, "forwarded write failed; outcome unknown");
                            return Err(ApiError::timeout(
                                "the leader did not answer in time; the write may or may not have been applied",
                            ));
                        }
                    }
                }
                None => {}
            }
            if !wait.fits(deadline) {
                return Err(ApiError::no_leader());
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
        cmd.stamp(Timestamp::now());
        if cmd.groupable() {
            return self.group.write(cmd, deadline).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        crate::group_commit::client_write(&self.raft, cmd, remaining).await
    }

    /// Makes the next read linearizable: obtains a read index (from the
    /// leader, batched with concurrent reads) and waits until this node has
    /// applied that far.
    pub async fn linearize(&self) -> ApiResult<()> {
        let deadline = Instant::now() + self.config.read_timeout();
        let index =
            match tokio::time::timeout_at(deadline.into(), self.reads.read_index(self)).await {
                Ok(r) => r?,
                Err(_) => return Err(ApiError::no_leader()),
            };
        let wait = self.shared.wait_for(|p| p.log_index >= index);
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ApiError::unavailable(format!(
                "this node has not yet applied log index {index}; retry or read from another node"
            ))),
        }
    }

    /// Waits (bounded) until this node has applied registry revision `rev`.
    pub async fn wait_for_revision(&self, rev: u64) -> ApiResult<()> {
        let wait = self.shared.wait_for(|p| p.revision >= rev);
        match tokio::time::timeout(self.config.read_timeout(), wait).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ApiError::unavailable(format!(
                "revision {rev} is not applied on this node yet (it is at {})",
                self.shared.position().revision
            ))),
        }
    }

    /// One read-index round: ask the leader (or be it) for the index a
    /// linearizable read must reach. Retries through elections until the
    /// caller's deadline cancels it.
    async fn fetch_read_index(&self) -> ApiResult<u64> {
        let mut wait = LeaderWait::new(&self.raft);
        loop {
            wait.observe();
            let leader = self.leader().map(|(id, _)| id);
            self.metrics.read_index_rounds.inc();
            match leader {
                Some(l) if l == self.id => match self.local_read_index().await {
                    Ok(r) => return Ok(r.index),
                    Err(ForwardError::NotLeader { .. }) => {}
                    Err(e) => return Err(ApiError::unavailable(e.to_string())),
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
                Member {
                    node_id: *id,
                    addr: node.addr.clone(),
                    role,
                    voter,
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

fn applied_result(applied: Applied) -> ApiResult<CommandResult> {
    applied.result.ok_or_else(|| {
        tracing::error!("a client command produced no result");
        ApiError::internal()
    })
}

/// Coalesces concurrent linearizable reads into read-index rounds.
///
/// A read joins the *next* round to start, never one already in flight: a
/// round started before the read arrived could miss a write the reader has
/// already seen acknowledged. While one round runs, arriving reads queue;
/// when it ends, all of them share one new round.
#[derive(Default)]
struct ReadBatcher {
    state: Mutex<BatchState>,
}

#[derive(Default)]
struct BatchState {
    waiting: Vec<oneshot::Sender<ApiResult<u64>>>,
    running: bool,
}

impl ReadBatcher {
    async fn read_index(&self, node: &Node) -> ApiResult<u64> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().map_err(|_| ApiError::internal())?;
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let node = node.clone();
            tokio::spawn(async move { node.reads.run_rounds(&node).await });
        }
        rx.await.unwrap_or_else(|_| Err(ApiError::internal()))
    }

    async fn run_rounds(&self, node: &Node) {
        loop {
            let batch = {
                let Ok(mut s) = self.state.lock() else { return };
                if s.waiting.is_empty() {
                    s.running = false;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            // Bounded: callers time out on their own; a round that outlives
            // the read timeout is abandoned so the next batch can start.
            let res =
                match tokio::time::timeout(node.config.read_timeout(), node.fetch_read_index())
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::no_leader()),
                };
            for tx in batch {
                let _ = tx.send(res.clone());
            }
        }
    }
}
