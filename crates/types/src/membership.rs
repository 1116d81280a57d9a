//! Bodies of the membership routes (`/v1/cluster/members`): adding a node
//! (as a learner, promoted to voter once it has caught up), removing one,
//! and the progress of the change in flight, which `GET /v1/cluster` also
//! shows.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::Member;
use crate::ids::{NodeId, Timestamp};

/// `POST /v1/cluster/members`: the node to add.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The new node's `--node-id`: positive, not a member's, and never
    /// the id of a node whose data directory was lost (give a replacement
    /// a new id).
    #[schema(value_type = u64, minimum = 1)]
    pub node_id: NodeId,
    /// Where the members reach it (HOST:PORT): its `--peer-advertise`,
    /// `--peer-listen` or `--advertise` address, as it names itself.
    pub address: String,
    /// `true` (the default): promote it to voter once it has caught up;
    /// `false`: leave it a learner (it replicates and serves reads, and
    /// does not vote).
    #[serde(default = "default_true")]
    pub voter: bool,
    /// Make the change even though it would leave fewer than a majority
    /// of the voters reachable from the leader (then the cluster may stop
    /// taking writes until they return).
    #[serde(default)]
    pub force: bool,
}

fn default_true() -> bool {
    true
}

/// The query of `DELETE /v1/cluster/members/{node_id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveMemberQuery {
    /// Remove it even though fewer than a majority of the remaining voters
    /// are reachable from the leader.
    #[serde(default)]
    pub force: bool,
}

/// What a membership change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A node added (as a learner, then promoted to voter if asked).
    Add,
    /// A node removed.
    Remove,
}

/// Where a membership change stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangePhase {
    /// The node is a learner and receives the log (or a snapshot); it is
    /// promoted once its matched index reaches the target.
    CatchingUp,
    /// Joint consensus in progress: the configuration with the node as a
    /// voter is being committed.
    Promoting,
    /// The configuration without the node is being committed.
    Removing,
    /// The change is committed.
    Done,
    /// The change did not happen (`error` says why); a learner that did
    /// not catch up was removed again.
    Failed,
}

impl ChangePhase {
    /// Whether the change has ended, one way or the other.
    pub fn is_over(self) -> bool {
        matches!(self, ChangePhase::Done | ChangePhase::Failed)
    }
}

/// A membership change as the leader runs it: the one in flight, or the
/// last one, over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MembershipChange {
    pub kind: ChangeKind,
    /// The node added or removed.
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    /// Its address.
    pub address: String,
    /// Whether it is to be a voter (an addition) or was one (a removal).
    pub voter: bool,
    pub phase: ChangePhase,
    /// The highest log index the leader knows the node holds (catching
    /// up); null before its first answer.
    #[schema(required = true)]
    pub matched_index: Option<u64>,
    /// The index it must reach before it is promoted: the leader's last
    /// log index, as last sampled.
    pub target_index: u64,
    /// When the change started (the leader's clock).
    pub since: Timestamp,
    /// Milliseconds since it started (until it ended, once over).
    pub elapsed_ms: u64,
    /// Why it failed; null otherwise.
    #[schema(required = true)]
    pub error: Option<String>,
}

/// Answer to `POST` and `DELETE /v1/cluster/members`: the change (over,
/// with 200; still running, with 202: follow it in `GET /v1/cluster` of
/// the leader) and the members as the leader then sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MembershipChangeResponse {
    pub change: MembershipChange,
    pub members: Vec<Member>,
}

/// Answer to `GET /v1/cluster/members`: the members as the answering node
/// sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    /// The leader the answering node knows of; null when none.
    #[schema(value_type = Option<u64>, required = true)]
    pub leader_id: Option<NodeId>,
    pub members: Vec<Member>,
    /// The change the answering node runs as leader, or ran last; null
    /// elsewhere.
    #[schema(required = true)]
    pub membership_change: Option<MembershipChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_addition_promotes_and_respects_the_majority_unless_told_otherwise() {
        let req: AddMemberRequest =
            serde_json::from_str(r#"{"node_id": 4, "address": "10.0.0.4:8014"}"#).unwrap();
        assert_eq!(
            req,
            AddMemberRequest {
                node_id: 4,
                address: "10.0.0.4:8014".into(),
                voter: true,
                force: false,
            }
        );
        let learner: AddMemberRequest = serde_json::from_str(
            r#"{"node_id": 4, "address": "a:1", "voter": false, "force": true}"#,
        )
        .unwrap();
        assert!(!learner.voter && learner.force);
        // A misspelt field is refused, not ignored (it could be `force`).
        assert!(serde_json::from_str::<AddMemberRequest>(
            r#"{"node_id": 4, "address": "a:1", "forse": true}"#
        )
        .is_err());
        let query: RemoveMemberQuery = serde_json::from_str("{}").unwrap();
        assert!(!query.force);
    }

    #[test]
    fn a_change_is_over_once_done_or_failed() {
        for (phase, over) in [
            (ChangePhase::CatchingUp, false),
            (ChangePhase::Promoting, false),
            (ChangePhase::Removing, false),
            (ChangePhase::Done, true),
            (ChangePhase::Failed, true),
        ] {
            assert_eq!(phase.is_over(), over, "{phase:?}");
        }
    }
}
