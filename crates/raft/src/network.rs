//! The network between nodes: Raft RPCs and internal calls, over HTTP with
//! bincode bodies on the same port as the public API.
//!
//! Routes (served by the server crate):
//! - `POST /internal/raft/append`, `/internal/raft/vote`,
//!   `/internal/raft/snapshot`: openraft's RPCs;
//! - `POST /internal/forward`: a write forwarded by a follower to the leader;
//! - `POST /internal/read-index`: a follower asks the leader for a
//!   linearizable read index;
//! - `POST /internal/pre-vote`: a node about to stand for election asks
//!   whether the peer would vote for it;
//! - `POST /internal/state`: whether the peer belongs to a cluster (asked
//!   before initializing one).
//!
//! Every request is signed with the cluster secret ([`crate::auth`]), and
//! under mutual TLS between nodes sent over https with the node's
//! certificate ([`peer_http_client`]).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use registry_types::Command;

use crate::auth::{self, Credentials, PeerKey, Sequence};
use crate::identity::{ClusterId, ClusterIdentity};
use crate::observe::PeerAcks;
use crate::{Applied, TypeConfig, RAFT_RPC_PREFIX};

/// Path of forwarded writes.
pub const FORWARD_PATH: &str = "/internal/forward";
/// Path of several forwarded writes in one call (a follower groups the
/// writes that arrive while its previous calls are in flight).
pub const FORWARD_MANY_PATH: &str = "/internal/forward-many";
/// Path of read-index requests.
pub const READ_INDEX_PATH: &str = "/internal/read-index";
/// Path of pre-vote requests.
pub const PRE_VOTE_PATH: &str = "/internal/pre-vote";
/// Path of the probe a member makes before it initializes the cluster.
pub const PEER_STATE_PATH: &str = "/internal/state";
/// Content type of internal bincode bodies.
///
/// It names the persisted format (`FORMAT_VERSION`): the bodies carry log
/// entries and commands in that encoding, which has no marker of its own on
/// the wire, so a node refuses a body of another format rather than decode
/// it wrongly (see `internal_format_guard` in the server).
pub const BINCODE_CONTENT_TYPE: &str = "application/x-bincode; registry-format=2";

/// A write forwarded from a follower to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardRequest {
    /// Proposed by the receiver if it leads; a node that does not lead
    /// answers `NotLeader` and never passes a forwarded write on, so a
    /// write crosses at most one hop.
    pub command: Command,
}

/// Why the leader could not take a forwarded call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The node is not the leader (any more); it names the one it knows.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The command was proposed but the outcome is unknown (leadership lost
    /// before commit, or shutdown).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The node is shutting down or broken.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Refused before it was proposed: the command would register a new
    /// agent beyond the leader's `--max-agents`. Nothing changed.
    #[error("the registry holds its most agents ({max})")]
    RegistryFull { max: u64 },
    /// Refused before it was proposed: the leader's disk is short of
    /// space (below `--min-free-disk-mb`, or a write failed for want of
    /// space). Nothing changed.
    #[error(
        "the leader's disk is short of space ({free_bytes} bytes free, {min_free_bytes} kept free)"
    )]
    NoSpace {
        free_bytes: u64,
        min_free_bytes: u64,
    },
}

/// A leader's answer to a read-index request.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ReadIndex {
    /// Log index a linearizable read must wait to have applied.
    pub index: u64,
}

/// "Would you vote for me if I stood now?", asked before standing for
/// election. Nothing changes on the peer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: u64,
    /// The candidate's last log id: the peer refuses a candidate whose log
    /// is behind its own, as it would in the real vote.
    pub last_log_id: Option<openraft::LogId<u64>>,
}

/// A peer's answer to a [`PreVoteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteResponse {
    Granted,
    /// Refused, with the reason (for logs).
    Refused(String),
}

/// A peer's answer to the probe a member makes before it initializes the
/// cluster: a peer that already belongs to one means this member's data was
/// wiped, and initializing again would fork the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The peer's data holds a membership (it belongs to a cluster).
    pub initialized: bool,
    pub cluster: Option<ClusterId>,
}

/// Transport-level failure talking to a peer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PeerError {
    /// The connection could not be made: the request was not sent.
    #[error("peer {addr} unreachable: {msg}")]
    Unreachable { addr: String, msg: String },
    /// No answer in time: the request may or may not have been processed.
    #[error("peer {addr} timed out")]
    Timeout { addr: String },
    /// The peer answered with an HTTP error: it refused the request, which
    /// was therefore not processed (a version mismatch or a bug).
    #[error("peer {addr} refused the request: http status {status}")]
    Refused { addr: String, status: u16 },
    #[error("peer {addr}: {msg}")]
    Other { addr: String, msg: String },
}

/// What every request to a peer is sent with: the HTTP client (its
/// connection pool) and this node's credentials. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PeerHttp {
    http: reqwest::Client,
    /// `https` under mutual TLS between nodes, else `http`.
    scheme: &'static str,
    signer: Arc<Signer>,
}

/// Signs this node's requests to its peers (see [`crate::auth`]).
#[derive(Debug)]
struct Signer {
    node_id: u64,
    /// `None` with `--insecure-peers` (and on a single node): requests then
    /// carry the identity headers unsigned.
    key: Option<PeerKey>,
    cluster: ClusterIdentity,
    seq: Sequence,
}

impl PeerHttp {
    /// `http` from [`peer_http_client`]; `scheme` is `https` when it was
    /// given a TLS configuration.
    pub fn new(
        http: reqwest::Client,
        scheme: &'static str,
        node_id: u64,
        key: Option<PeerKey>,
        cluster: ClusterIdentity,
    ) -> PeerHttp {
        PeerHttp {
            http,
            scheme,
            signer: Arc::new(Signer {
                node_id,
                key,
                cluster,
                seq: Sequence::default(),
            }),
        }
    }

    /// A client for the peer at `addr`.
    pub fn peer(&self, addr: impl Into<String>) -> PeerClient {
        PeerClient::new(self.clone(), addr)
    }
}

/// An HTTP client for one peer. Clones share the connection pool.
#[derive(Clone)]
pub struct PeerClient {
    http: PeerHttp,
    addr: String,
}

impl PeerClient {
    pub fn new(http: PeerHttp, addr: impl Into<String>) -> Self {
        PeerClient {
            http,
            addr: addr.into(),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// POSTs a bincode body and decodes a bincode answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let other = |msg: String| PeerError::Other {
            addr: self.addr.clone(),
            msg,
        };
        let body = bincode::serialize(req).map_err(|e| other(e.to_string()))?;
        let url = format!("{}://{}{}", self.http.scheme, self.addr, path);
        let signer = &self.http.signer;
        let creds = Credentials {
            cluster: signer.cluster.get(),
            from: signer.node_id,
            to: self.addr.clone(),
            timestamp_ms: auth::now_ms(),
            seq: signer.seq.next(),
        };
        let mut request = self
            .http
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, BINCODE_CONTENT_TYPE)
            .header(auth::HEADER_FROM, creds.from)
            .header(auth::HEADER_TO, &creds.to)
            .header(auth::HEADER_TIMESTAMP, creds.timestamp_ms)
            .header(auth::HEADER_SEQ, creds.seq);
        if let Some(cluster) = creds.cluster {
            request = request.header(auth::HEADER_CLUSTER, cluster.to_string());
        }
        if let Some(key) = &signer.key {
            request = request.header(auth::HEADER_MAC, creds.sign(key, "POST", path, &body));
        }
        let resp = request
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if !resp.status().is_success() {
            return Err(PeerError::Refused {
                addr: self.addr.clone(),
                status: resp.status().as_u16(),
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type != Some(BINCODE_CONTENT_TYPE) {
            return Err(other(format!(
                "answered {content_type:?}, not {BINCODE_CONTENT_TYPE}: a release of another format"
            )));
        }
        let bytes = resp.bytes().await.map_err(|e| self.classify(e))?;
        bincode::deserialize(&bytes).map_err(|e| other(format!("decode: {e}")))
    }

    fn classify(&self, e: reqwest::Error) -> PeerError {
        let addr = self.addr.clone();
        if e.is_connect() {
            PeerError::Unreachable {
                addr,
                msg: with_causes(&e),
            }
        } else if e.is_timeout() {
            PeerError::Timeout { addr }
        } else {
            PeerError::Other {
                addr,
                msg: with_causes(&e),
            }
        }
    }

    /// Forwards a write to this peer (the leader, as far as we know).
    pub async fn forward(
        &self,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<Result<Applied, ForwardError>, PeerError> {
        self.call(FORWARD_PATH, req, timeout).await
    }

    /// Forwards several writes to this peer (the leader) in one call; one
    /// result per request, in order.
    pub async fn forward_many(
        &self,
        reqs: &[ForwardRequest],
        timeout: Duration,
    ) -> Result<Vec<Result<Applied, ForwardError>>, PeerError> {
        self.call(FORWARD_MANY_PATH, &reqs, timeout).await
    }

    /// Asks this peer (the leader) for a read index.
    pub async fn read_index(
        &self,
        timeout: Duration,
    ) -> Result<Result<ReadIndex, ForwardError>, PeerError> {
        self.call(READ_INDEX_PATH, &(), timeout).await
    }

    /// Asks this peer whether it belongs to a cluster.
    pub async fn state(&self, timeout: Duration) -> Result<PeerState, PeerError> {
        self.call(PEER_STATE_PATH, &(), timeout).await
    }

    /// Asks this peer whether it would vote for `req.candidate`.
    pub async fn pre_vote(
        &self,
        req: &PreVoteRequest,
        timeout: Duration,
    ) -> Result<PreVoteResponse, PeerError> {
        self.call(PRE_VOTE_PATH, req, timeout).await
    }

    async fn raft_rpc<Req, Resp, E>(
        &self,
        kind: RPCTypes,
        req: &Req,
        option: &RPCOption,
        target: u64,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let action = match kind {
            RPCTypes::Vote => "vote",
            RPCTypes::AppendEntries => "append",
            RPCTypes::InstallSnapshot => "snapshot",
        };
        let path = format!("{RAFT_RPC_PREFIX}/{action}");
        let res: Result<Resp, RaftError<u64, E>> = self
            .call(&path, req, option.hard_ttl())
            .await
            .map_err(|e| match e {
            // A peer busy for a while (503: short of disk space) is treated
            // as unreachable: openraft then waits `retry_unreachable`
            // before trying it again, instead of at once.
            PeerError::Unreachable { .. } | PeerError::Refused { status: 503, .. } => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            PeerError::Timeout { .. } => RPCError::Timeout(Timeout {
                action: kind,
                id: 0,
                target,
                timeout: option.hard_ttl(),
            }),
            PeerError::Other { .. } | PeerError::Refused { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

/// An error with its causes: reqwest's own text ("error sending request")
/// hides why, e.g. a peer certificate of another CA.
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Creates [`PeerConnection`]s for openraft.
#[derive(Clone)]
pub struct Network {
    http: PeerHttp,
    retry_unreachable: Duration,
    /// When each peer last answered one of this node's Raft RPCs (see
    /// [`PeerAcks`]).
    acks: PeerAcks,
}

impl Network {
    /// `retry_unreachable`: how long replication waits before trying a peer
    /// that refused a connection again. Keep it at about one heartbeat:
    /// with openraft's default (500 ms) a restarted follower waits that long
    /// for its leader's first word, and stays unready meanwhile. (It no
    /// longer deposes the leader: the server's pre-vote holds it back.)
    pub fn new(http: PeerHttp, retry_unreachable: Duration) -> Self {
        Network {
            http,
            retry_unreachable,
            acks: PeerAcks::default(),
        }
    }

    /// When each peer last answered this node's AppendEntries: on the
    /// leader, each member's last acknowledgement.
    pub fn acks(&self) -> PeerAcks {
        self.acks.clone()
    }
}

/// Builds the HTTP client used between nodes.
///
/// `source` is the address outgoing peer connections are made from: the
/// node's own listen address when it binds one specific IP, so that traffic
/// between nodes on distinct addresses of one host (127.0.1.1, 127.0.1.2, ...)
/// carries each node's own source address and a firewall rule can cut one
/// link (the chaos tests rely on it). `None` lets the OS choose.
///
/// `tls`, under mutual TLS between nodes: the configuration of every
/// connection (the node's certificate, the peer CA as the only trust
/// anchor, never the system's roots); the peers' URLs are then `https`.
pub fn peer_http_client(
    source: Option<std::net::IpAddr>,
    tls: Option<rustls::ClientConfig>,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = match tls {
        Some(tls) => reqwest::Client::builder().use_preconfigured_tls(tls),
        None => reqwest::Client::builder(),
    };
    builder
        .local_address(source)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        // Below the nodes' default --header-read-timeout-ms (30 s), after
        // which a node closes an idle connection: a pooled connection is
        // dropped here first, never reused just as the peer closes it.
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .no_proxy()
        .build()
}

/// openraft's connection to one peer.
pub struct PeerConnection {
    target: u64,
    client: PeerClient,
    retry_unreachable: Duration,
    acks: PeerAcks,
}

impl PeerConnection {
    /// Notes an answer from the peer: anything but a failure to reach it.
    fn note<T, E>(&self, res: &Result<T, RPCError<u64, BasicNode, E>>)
    where
        E: std::error::Error,
    {
        if !matches!(
            res,
            Err(RPCError::Unreachable(_) | RPCError::Timeout(_) | RPCError::Network(_))
        ) {
            self.acks.heard(self.target);
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            client: PeerClient::new(self.http.clone(), node.addr.clone()),
            retry_unreachable: self.retry_unreachable,
            acks: self.acks.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_unreachable))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let res = self
            .client
            .raft_rpc(RPCTypes::AppendEntries, &rpc, &option, self.target)
            .await;
        self.note(&res);
        res
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let res = self
            .client
            .raft_rpc(RPCTypes::InstallSnapshot, &rpc, &option, self.target)
            .await;
        self.note(&res);
        res
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let res = self
            .client
            .raft_rpc(RPCTypes::Vote, &rpc, &option, self.target)
            .await;
        self.note(&res);
        res
    }
}
