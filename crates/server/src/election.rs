//! Elections with pre-vote.
//!
//! openraft 0.9 has no pre-vote and draws each node's election timeout once
//! per process. Two things went wrong with its own timer:
//!
//! - After a leader dies under write load the survivors often hold logs of
//!   different lengths. When the one with the shorter log stood first it
//!   was refused, and it had already moved to the next term; the other then
//!   collided with it in that term and waited a whole timeout more. The
//!   failover benchmark measured 2 to 3 s to the first write in such
//!   trials, against about 1 s otherwise.
//! - A node cut off from the others (or restarted) stood again and again,
//!   raising its term, and on its return deposed a healthy leader.
//!
//! So openraft's timer is switched off (`enable_elect: false`) and this
//! task decides when to stand. A node stands only when it has heard from no
//! leader for longer than the leader lease (plus a delay drawn anew for
//! every attempt), and only after a majority of the voters, itself
//! included, answered a pre-vote: "would you vote for me?". A peer says yes
//! when it is not the leader, has heard from no leader within the lease,
//! has not just voted for another candidate, and holds no longer log than
//! the candidate; nothing changes on the peer. The real vote, openraft's,
//! then follows at once and decides as before: pre-vote only holds back
//! elections that could not win or were not needed.
//!
//! A peer that does not know the route (a node of an older version during
//! an upgrade) counts as a yes: that is how it behaved before.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::{LogId, ServerState, Vote};
use rand::Rng;
use tracing::{debug, info};

use registry_raft::network::{PeerClient, PeerError, PreVoteRequest, PreVoteResponse};

use crate::node::Node;

/// The timing of elections, from the configured heartbeat.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// openraft's leader lease (its maximum election timeout): a voter
    /// refuses any vote this long after it last heard from its leader.
    pub lease: Duration,
    /// The shortest election timeout: how long a candidate's round is given
    /// before the next, and the range of the random delays.
    pub settle: Duration,
    /// How often the task looks at the node's state.
    pub poll: Duration,
}

impl Timing {
    pub fn new(config: &crate::config::Config) -> Timing {
        let (lo, hi) = config.election_timeout_ms();
        Timing {
            lease: Duration::from_millis(hi),
            settle: Duration::from_millis(lo),
            poll: Duration::from_millis((config.heartbeat_ms / 5).max(5)),
        }
    }

    fn random_delay(&self) -> Duration {
        let ms = self.settle.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..ms))
    }
}

/// A node's Raft state as far as elections care, read from openraft's core.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub state: ServerState,
    pub voter: bool,
    pub vote: Vote<u64>,
    /// Time since the vote was last granted or renewed. A leader's every
    /// AppendEntries renews it on the follower; `None` before any vote.
    pub since: Option<Duration>,
    /// The voter sets whose majorities decide (two during a joint change).
    pub configs: Vec<BTreeSet<u64>>,
}

/// How long a node must have heard nothing before it stands or grants a
/// pre-vote: the lease when it followed a leader, the shortest election
/// timeout when its vote went to a candidate (itself or another) that has
/// not won.
fn quiet_needed(view: &View, t: &Timing) -> Duration {
    if view.vote.is_committed() {
        t.lease
    } else {
        t.settle
    }
}

/// Whether this node (`me`) should ask for pre-votes now, having drawn
/// `delay`.
pub(crate) fn should_stand(me: u64, view: &View, t: &Timing, delay: Duration) -> bool {
    if view.state == ServerState::Leader || !view.voter {
        return false;
    }
    // The only voter has nobody to wait for (a single-node registry).
    if view.configs.iter().all(|c| c.len() == 1 && c.contains(&me)) {
        return true;
    }
    match view.since {
        Some(since) => since >= quiet_needed(view, t) + delay,
        None => true,
    }
}

/// A peer's judgement of a pre-vote request.
pub(crate) fn judge(
    me: u64,
    view: &View,
    my_last_log_id: Option<LogId<u64>>,
    req: &PreVoteRequest,
    t: &Timing,
) -> PreVoteResponse {
    if view.state == ServerState::Leader {
        return PreVoteResponse::Refused(format!("node {me} is the leader"));
    }
    if let Some(since) = view.since {
        let voted_for = view.vote.leader_id().voted_for();
        let for_other = voted_for.is_some_and(|v| v != me && v != req.candidate);
        if (view.vote.is_committed() || for_other) && since < quiet_needed(view, t) {
            let whom = if view.vote.is_committed() {
                "heard from its leader"
            } else {
                "voted for another candidate"
            };
            return PreVoteResponse::Refused(format!(
                "node {me} {whom} (node {}) {} ms ago",
                voted_for.map_or_else(|| "-".to_string(), |v| v.to_string()),
                since.as_millis()
            ));
        }
    }
    if req.last_log_id < my_last_log_id {
        return PreVoteResponse::Refused(format!(
            "candidate's log ({:?}) is behind node {me}'s ({:?})",
            req.last_log_id, my_last_log_id
        ));
    }
    PreVoteResponse::Granted
}

/// Whether `granted` (voter ids, the candidate's own included) holds a
/// majority of every voter set.
pub(crate) fn is_quorum(configs: &[BTreeSet<u64>], granted: &BTreeSet<u64>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// Decides when this node stands for election (see the module docs) and
/// answers its peers' pre-votes. Cheap to clone.
#[derive(Clone)]
pub struct Elector {
    node: Node,
    timing: Timing,
}

impl Elector {
    /// The elector of `node`, its task started.
    pub fn start(node: Node) -> Elector {
        let elector = Elector {
            timing: Timing::new(&node.config),
            node,
        };
        elector.spawn();
        elector
    }

    /// This node's Raft state as elections see it; `None` once Raft has
    /// stopped.
    pub(crate) async fn election_view(&self) -> Option<View> {
        let id = self.node.id;
        self.node
            .raft
            .with_raft_state(move |st| {
                let m = st.membership_state.effective();
                View {
                    state: st.server_state,
                    voter: m.voter_ids().any(|v| v == id),
                    vote: *st.vote_ref(),
                    since: st.vote_last_modified().map(|t| t.elapsed()),
                    configs: m.membership().get_joint_config().clone(),
                }
            })
            .await
            .ok()
    }

    /// Answers a peer's pre-vote request.
    pub async fn judge_pre_vote(&self, req: &PreVoteRequest) -> PreVoteResponse {
        let Some(view) = self.election_view().await else {
            return PreVoteResponse::Refused(format!("node {} is shutting down", self.node.id));
        };
        let last = match self.node.log_store().last_log_id().await {
            Ok(l) => l,
            Err(e) => return PreVoteResponse::Refused(format!("reading the log: {e}")),
        };
        let t = self.timing;
        let res = judge(self.node.id, &view, last, req, &t);
        debug!(candidate = req.candidate, answer = ?res, "pre-vote");
        res
    }

    /// Asks every other voter for a pre-vote; the ids that said yes,
    /// this node's own included.
    async fn ask_pre_votes(&self, view: &View, t: &Timing) -> Option<BTreeSet<u64>> {
        let last_log_id = self.node.log_store().last_log_id().await.ok()?;
        let req = PreVoteRequest {
            candidate: self.node.id,
            last_log_id,
        };
        let peers: BTreeSet<u64> = view.configs.iter().flatten().copied().collect();
        let mut granted = BTreeSet::from([self.node.id]);
        let mut asks = FuturesUnordered::new();
        for peer in peers.into_iter().filter(|p| *p != self.node.id) {
            let Some(addr) = self.node.member_addr(peer) else {
                continue;
            };
            let client = PeerClient::new(self.node.http().clone(), addr);
            let timeout = t.settle;
            asks.push(async move { (peer, client.pre_vote(&req, timeout).await) });
        }
        while let Some((peer, res)) = asks.next().await {
            match res {
                Ok(PreVoteResponse::Granted) => {
                    granted.insert(peer);
                }
                // An older node without the route: it would have stood
                // without asking anyone, so it does not hold us back.
                Err(PeerError::Refused { status: 404, .. }) => {
                    granted.insert(peer);
                }
                Ok(PreVoteResponse::Refused(why)) => debug!(peer, why, "pre-vote refused"),
                Err(e) => debug!(peer, error = %e, "pre-vote not answered"),
            }
            if is_quorum(&view.configs, &granted) {
                break;
            }
        }
        Some(granted)
    }

    /// Decides when this node stands for election (see the module docs).
    fn spawn(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let t = this.timing;
            let mut delay = t.random_delay();
            loop {
                tokio::time::sleep(t.poll).await;
                // A leader never stands: answered from the metrics, so the
                // leader's busy Raft core is not asked 50 times a second.
                if this.node.is_leader() {
                    continue;
                }
                let Some(view) = this.election_view().await else {
                    return;
                };
                if !should_stand(this.node.id, &view, &t, delay) {
                    continue;
                }
                let Some(granted) = this.ask_pre_votes(&view, &t).await else {
                    continue;
                };
                if is_quorum(&view.configs, &granted) {
                    info!(
                        silent_ms = view.since.map_or(0, |s| s.as_millis() as u64),
                        term = view.vote.leader_id().get_term(),
                        pre_votes = ?granted,
                        "no word from a leader and a majority agrees: standing for election"
                    );
                    this.node.metrics.elections_started.inc();
                    if this.node.raft.trigger().elect().await.is_err() {
                        return;
                    }
                } else {
                    this.node.metrics.pre_votes_lost.inc();
                    debug!(pre_votes = ?granted, "pre-vote lost: not standing");
                }
                // The next attempt comes after a fresh random delay, so two
                // nodes that collided do not collide again.
                delay = t.random_delay();
                tokio::time::sleep(t.settle / 2 + delay).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            lease: Duration::from_millis(600),
            settle: Duration::from_millis(200),
            poll: Duration::from_millis(20),
        }
    }

    fn view(vote: Vote<u64>, since_ms: Option<u64>) -> View {
        View {
            state: if vote.is_committed() {
                ServerState::Follower
            } else {
                ServerState::Candidate
            },
            voter: true,
            vote,
            since: since_ms.map(Duration::from_millis),
            configs: vec![BTreeSet::from([1, 2, 3])],
        }
    }

    fn log(term: u64, index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(openraft::CommittedLeaderId::new(term, 0), index))
    }

    fn ask(candidate: u64, last: Option<LogId<u64>>) -> PreVoteRequest {
        PreVoteRequest {
            candidate,
            last_log_id: last,
        }
    }

    #[test]
    fn a_follower_waits_out_the_lease_plus_its_delay() {
        let t = timing();
        let delay = Duration::from_millis(50);
        let following = Vote::new_committed(3, 1);
        assert!(!should_stand(1, &view(following, Some(600)), &t, delay));
        assert!(!should_stand(1, &view(following, Some(649)), &t, delay));
        assert!(should_stand(1, &view(following, Some(650)), &t, delay));
    }

    #[test]
    fn a_failed_candidate_stands_again_after_the_shortest_timeout() {
        let t = timing();
        let own = Vote::new(4, 2);
        assert!(!should_stand(1, &view(own, Some(199)), &t, Duration::ZERO));
        assert!(should_stand(1, &view(own, Some(200)), &t, Duration::ZERO));
    }

    #[test]
    fn leaders_learners_never_stand_and_a_node_without_a_vote_does() {
        let t = timing();
        let mut v = view(Vote::new_committed(3, 2), Some(10_000));
        v.state = ServerState::Leader;
        assert!(!should_stand(1, &v, &t, Duration::ZERO));
        let mut v = view(Vote::new_committed(3, 1), Some(10_000));
        v.voter = false;
        assert!(!should_stand(1, &v, &t, Duration::ZERO));
        assert!(should_stand(
            1,
            &view(Vote::new(0, 0), None),
            &t,
            Duration::ZERO
        ));
    }

    #[test]
    fn a_peer_that_heard_from_its_leader_within_the_lease_refuses() {
        let t = timing();
        let v = view(Vote::new_committed(3, 1), Some(599));
        let res = judge(3, &v, log(3, 10), &ask(2, log(3, 10)), &t);
        assert!(
            matches!(res, PreVoteResponse::Refused(ref m) if m.contains("heard from its leader"))
        );
        let v = view(Vote::new_committed(3, 1), Some(600));
        assert_eq!(
            judge(3, &v, log(3, 10), &ask(2, log(3, 10)), &t),
            PreVoteResponse::Granted
        );
    }

    #[test]
    fn a_peer_refuses_a_candidate_with_a_shorter_log() {
        let t = timing();
        let v = view(Vote::new_committed(3, 1), Some(5_000));
        // Shorter at the same term, and an older term with more entries.
        for cand in [log(3, 9), log(2, 50), None] {
            let res = judge(3, &v, log(3, 10), &ask(2, cand), &t);
            assert!(
                matches!(res, PreVoteResponse::Refused(ref m) if m.contains("behind")),
                "{cand:?}: {res:?}"
            );
        }
        for cand in [log(3, 10), log(3, 11), log(4, 1)] {
            assert_eq!(
                judge(3, &v, log(3, 10), &ask(2, cand), &t),
                PreVoteResponse::Granted
            );
        }
    }

    #[test]
    fn a_leader_always_refuses() {
        let t = timing();
        let mut v = view(Vote::new_committed(3, 3), Some(10_000));
        v.state = ServerState::Leader;
        let res = judge(3, &v, log(3, 10), &ask(2, log(9, 99)), &t);
        assert!(matches!(res, PreVoteResponse::Refused(ref m) if m.contains("is the leader")));
    }

    #[test]
    fn a_recent_vote_for_another_candidate_holds_back_a_third() {
        let t = timing();
        // Node 3 voted for node 1 in term 4 100 ms ago: node 2 is refused,
        // node 1 (asking again) is not.
        let v = View {
            state: ServerState::Follower,
            ..view(Vote::new(4, 1), Some(100))
        };
        let res = judge(3, &v, log(3, 10), &ask(2, log(3, 10)), &t);
        assert!(matches!(res, PreVoteResponse::Refused(ref m) if m.contains("another candidate")));
        assert_eq!(
            judge(3, &v, log(3, 10), &ask(1, log(3, 10)), &t),
            PreVoteResponse::Granted
        );
        // Once that candidate had its time, node 2 may try.
        let v = View {
            state: ServerState::Follower,
            ..view(Vote::new(4, 1), Some(200))
        };
        assert_eq!(
            judge(3, &v, log(3, 10), &ask(2, log(3, 10)), &t),
            PreVoteResponse::Granted
        );
    }

    #[test]
    fn a_candidate_grants_a_peer_with_as_long_a_log() {
        let t = timing();
        // Node 3 is itself a candidate (voted for itself 10 ms ago).
        let v = view(Vote::new(4, 3), Some(10));
        assert_eq!(
            judge(3, &v, log(3, 10), &ask(2, log(3, 10)), &t),
            PreVoteResponse::Granted
        );
    }

    #[test]
    fn the_only_voter_stands_at_once() {
        let t = timing();
        let mut v = view(Vote::new_committed(3, 1), Some(0));
        v.configs = vec![BTreeSet::from([1])];
        assert!(should_stand(1, &v, &t, Duration::from_millis(100)));
        v.state = ServerState::Leader;
        assert!(!should_stand(1, &v, &t, Duration::ZERO));
    }

    #[test]
    fn quorum_needs_a_majority_of_every_voter_set() {
        let three = vec![BTreeSet::from([1, 2, 3])];
        assert!(!is_quorum(&three, &BTreeSet::from([1])));
        assert!(is_quorum(&three, &BTreeSet::from([1, 3])));
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4, 5])];
        assert!(!is_quorum(&joint, &BTreeSet::from([1, 2])));
        assert!(is_quorum(&joint, &BTreeSet::from([1, 3, 4])));
        assert!(!is_quorum(&[], &BTreeSet::from([1])));
        let one = vec![BTreeSet::from([1])];
        assert!(is_quorum(&one, &BTreeSet::from([1])));
    }
}
