//! Group commit on the leader: concurrent client writes share one Raft entry.
//!
//! Every Raft entry costs the same fixed work on all three nodes whatever it
//! holds: a log append and its WAL sync, a replication message, an apply
//! under the state lock, a metrics update. With one entry per registration
//! that fixed part, not the registration itself, bounded write throughput.
//!
//! So the leader queues client commands ([`Command::groupable`]) and proposes
//! them in rounds. At most [`MAX_IN_FLIGHT`] rounds are in Raft at once;
//! while they are, new commands wait, and the next round takes every command
//! that waited (up to [`MAX_COMMANDS`] or [`MAX_BYTES`]) as one
//! [`Command::Batch`]. Under light load a round holds one command, proposed
//! as a plain entry, so nothing waits that would not have waited anyway.
//!
//! Followers do the same with the writes they forward ([`ForwardGroup`]):
//! while [`MAX_IN_FLIGHT`] forwarding calls are out, arriving writes wait and
//! then travel together in one `/internal/forward-many` call, so the leader
//! parses one HTTP request per group rather than one per write.
//!
//! Each command keeps its own outcome: the batch is applied command by
//! command, each with its own revision, events and result (a rejection of
//! one does not touch the others), and each caller gets exactly what a
//! single-command entry would have given it. The entry commits or fails as a
//! whole, so an unknown outcome is unknown for every command in it, as it
//! would be for each alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use registry_raft::network::{ForwardError, ForwardRequest};
use registry_raft::{Applied, PeerClient, PeerError, Raft};
use registry_types::{Command, CommandResult};

/// Rounds proposed but not yet answered. Two keep Raft busy (one being
/// replicated while the next fills) without making rounds small.
pub const MAX_IN_FLIGHT: usize = 2;
/// Writes waiting for a round at most, on the leader and on a follower:
/// beyond it a write is refused at once (503 with `Retry-After`) instead of
/// queueing without bound. Far above what the connection cap lets in.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Commands in one round at most.
pub const MAX_COMMANDS: usize = 256;
/// Encoded size of one round at most (a registration is about 0.5–2 KiB;
/// the biggest allowed is far below this).
pub const MAX_BYTES: usize = 1 << 20;

type Reply = oneshot::Sender<Result<Applied, ForwardError>>;

struct Pending {
    cmd: Command,
    bytes: usize,
    reply: Reply,
}

/// The leader's write queue. Cheap to share; the proposing task ends when
/// the last handle is dropped.
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the proposing task for `raft`; `on_round` is told each
    /// round's size.
    pub fn start(raft: Raft, timeout: Duration, on_round: impl Fn(usize) + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(raft, rx, timeout, on_round));
        GroupCommit { tx }
    }

    /// Proposes `cmd` (already stamped) in the next round and waits for its
    /// own result, or until `deadline` (then the outcome is unknown: the
    /// round may still commit).
    pub async fn write(&self, cmd: Command, deadline: Instant) -> Result<Applied, ForwardError> {
        let (reply, rx) = oneshot::channel();
        let bytes = bincode::serialized_size(&cmd).map_or(MAX_BYTES, |n| n as usize);
        match self.tx.try_send(Pending { cmd, bytes, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(ForwardError::Unavailable(format!(
                    "the leader's write queue is full ({QUEUE_CAPACITY} writes waiting); retry shortly"
                )))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(ForwardError::Unavailable("node stopping".into()))
            }
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ForwardError::Unknown(
                "the write's round ended without an answer; it may or may not be applied".into(),
            )),
            Err(_) => Err(ForwardError::Unknown(
                "the write was not committed in time; it may or may not be applied".into(),
            )),
        }
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    timeout: Duration,
    on_round: impl Fn(usize) + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Pending> = None;
    loop {
        let mut bytes = 0;
        let fits = |p: &Pending| {
            bytes += p.bytes;
            bytes <= MAX_BYTES
        };
        let Some((permit, round, left)) = next_round(&mut rx, &slots, carry.take(), fits).await
        else {
            return;
        };
        carry = left;
        on_round(round.len());
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, round, timeout).await;
            drop(permit);
        });
    }
}

/// The next round of a queue: its first item (`carry`, or the next to
/// arrive), then, once one of the in-flight `slots` is free (items arriving
/// meanwhile join this round), every item already queued, up to
/// [`MAX_COMMANDS`] and while `fits` accepts it (it is called once per
/// item, in order; the first item is always taken). The first refused item
/// is handed back to start the following round. `None` when the queue is
/// closed.
async fn next_round<T>(
    rx: &mut mpsc::Receiver<T>,
    slots: &Arc<Semaphore>,
    carry: Option<T>,
    mut fits: impl FnMut(&T) -> bool,
) -> Option<(OwnedSemaphorePermit, Vec<T>, Option<T>)> {
    let first = match carry {
        Some(item) => item,
        None => rx.recv().await?,
    };
    let permit = slots.clone().acquire_owned().await.ok()?;
    fits(&first);
    let mut round = vec![first];
    while round.len() < MAX_COMMANDS {
        match rx.try_recv() {
            Ok(item) if fits(&item) => round.push(item),
            Ok(item) => return Some((permit, round, Some(item))),
            Err(_) => break,
        }
    }
    Some((permit, round, None))
}

/// Proposes one round and answers each of its callers.
async fn propose(raft: &Raft, mut round: Vec<Pending>, timeout: Duration) {
    if round.len() == 1 {
        let p = round.pop().expect("one command");
        let res = client_write(raft, p.cmd, timeout).await;
        let _ = p.reply.send(res);
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Reply>) =
        round.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let n = cmds.len();
    match client_write(raft, Command::Batch(cmds), timeout).await {
        Ok(applied) => {
            let items = match applied.result {
                Some(CommandResult::Grouped(items)) if items.len() == n => items,
                other => {
                    tracing::error!(?other, "a batch entry produced no per-command results");
                    for r in replies {
                        let _ = r.send(Err(ForwardError::Unknown(
                            "internal error: the write's batch gave no result".into(),
                        )));
                    }
                    return;
                }
            };
            for (item, reply) in items.into_iter().zip(replies) {
                let _ = reply.send(Ok(Applied {
                    revision: item.revision,
                    log_index: applied.log_index,
                    result: Some(item.result),
                }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// One `client_write`, its error sorted by what the caller may do next.
pub async fn client_write(
    raft: &Raft,
    cmd: Command,
    timeout: Duration,
) -> Result<Applied, ForwardError> {
    match tokio::time::timeout(timeout, raft.client_write(cmd)).await {
        Err(_) => Err(ForwardError::Unknown(
            "the write was not committed in time; it may or may not be applied".into(),
        )),
        Ok(Ok(resp)) => Ok(resp.data),
        // Rejected before being kept in the log (not leader, or the entry
        // was truncated away): certainly not committed.
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(ForwardError::NotLeader {
                leader: f.leader_id,
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            warn!(error = %e, "unexpected membership error on a client write");
            Err(ForwardError::Unavailable(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => {
            Err(ForwardError::Unavailable(format!("node stopping: {f}")))
        }
    }
}

type Forwarded = Result<Result<Applied, ForwardError>, PeerError>;

struct Outgoing {
    addr: String,
    req: ForwardRequest,
    reply: oneshot::Sender<Forwarded>,
}

/// A follower's queue of writes for the leader, sent in groups.
pub struct ForwardGroup {
    tx: mpsc::Sender<Outgoing>,
}

impl ForwardGroup {
    /// Starts the sending task; `on_call` is told each call's size.
    pub fn start(
        http: registry_raft::PeerHttp,
        timeout: Duration,
        on_call: impl Fn(usize) + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run_forwarding(http, rx, timeout, on_call));
        ForwardGroup { tx }
    }

    /// Forwards `req` to the leader at `addr` in the next call and waits
    /// for its own result, or until `deadline` (then the outcome is
    /// unknown, reported as a timeout).
    pub async fn forward(&self, addr: String, req: ForwardRequest, deadline: Instant) -> Forwarded {
        let (reply, rx) = oneshot::channel();
        let out = Outgoing {
            addr: addr.clone(),
            req,
            reply,
        };
        match self.tx.try_send(out) {
            Ok(()) => {}
            // Not sent: the caller may retry, as with an unreachable leader.
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(PeerError::Unreachable {
                    addr,
                    msg: format!(
                    "this node's queue of writes for the leader is full ({QUEUE_CAPACITY} waiting)"
                ),
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(PeerError::Unreachable {
                    addr,
                    msg: "node stopping".into(),
                })
            }
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) | Err(_) => Err(PeerError::Timeout { addr }),
        }
    }
}

async fn run_forwarding(
    http: registry_raft::PeerHttp,
    mut rx: mpsc::Receiver<Outgoing>,
    timeout: Duration,
    on_call: impl Fn(usize) + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some((permit, round, _)) = next_round(&mut rx, &slots, None, |_| true).await {
        // Normally one leader address; after a leader change, a few.
        let mut by_addr: std::collections::BTreeMap<String, Vec<Outgoing>> = Default::default();
        for o in round {
            by_addr.entry(o.addr.clone()).or_default().push(o);
        }
        let permit = Arc::new(permit);
        for (addr, group) in by_addr {
            on_call(group.len());
            let (http, permit) = (http.clone(), permit.clone());
            tokio::spawn(async move {
                send_group(PeerClient::new(http, addr), group, timeout).await;
                drop(permit);
            });
        }
    }
}

async fn send_group(peer: PeerClient, mut group: Vec<Outgoing>, timeout: Duration) {
    if group.len() == 1 {
        let o = group.pop().expect("one write");
        let _ = o.reply.send(peer.forward(&o.req, timeout).await);
        return;
    }
    let (reqs, replies): (Vec<ForwardRequest>, Vec<_>) =
        group.into_iter().map(|o| (o.req, o.reply)).unzip();
    match peer.forward_many(&reqs, timeout).await {
        Ok(results) if results.len() == replies.len() => {
            for (r, reply) in results.into_iter().zip(replies) {
                let _ = reply.send(Ok(r));
            }
        }
        Ok(results) => {
            tracing::error!(
                sent = replies.len(),
                got = results.len(),
                "the leader answered a forwarded group with the wrong number of results"
            );
            for reply in replies {
                let _ = reply.send(Err(PeerError::Other {
                    addr: "leader".into(),
                    msg: "malformed answer to a forwarded group".into(),
                }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
