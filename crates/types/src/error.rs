//! The wire error shape shared by every endpoint: `{"error": {"code", "message"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error codes. Each maps to one HTTP status:
///
/// - `invalid_json` (400): the body is empty or not valid JSON.
/// - `invalid_argument` (400): a field, path id or query parameter has a
///   wrong type or a value that is not allowed (`field` names it).
/// - `request_timeout` (408): the client did not send the whole body within
///   the node's `--body-read-timeout-ms`.
/// - `payload_too_large` (413): the body is larger than the node's limit
///   (`--max-body-bytes`, 64 KiB by default; `POST /v1/heartbeats`: the
///   larger of that and 1 MiB).
/// - `unsupported_media_type` (415): a node-to-node body of another
///   release's format (the public routes do not check the content type).
/// - `agent_not_found` (404): no agent with that id (on a heartbeat: not,
///   or no longer, registered; register it again).
/// - `not_found` (404): no such route, or no agent runs in that runtime.
/// - `no_agent_available` (404): `GET /v1/select` found no agent that
///   qualifies.
/// - `policy_not_found` (404): no scaling policy for that capability.
/// - `token_not_found` (404): no access token with that id (revoked
///   already, or never created).
/// - `member_not_found` (404): no cluster member with that node id.
/// - `method_not_allowed` (405): the route does not serve this method.
/// - `already_exists` (409): `if_absent` was set and the agent exists.
/// - `revision_mismatch` (409): `expected_revision` did not match.
/// - `membership_conflict` (409): a membership change was refused: another
///   is in flight, the node id or address is a member's already, or the
///   change would leave fewer than a majority of the voters reachable (give
///   `force` to make it anyway); the message says which.
/// - `revision_compacted` (410): `GET /v1/events` was asked to resume from
///   a revision the event window no longer keeps; list again.
/// - `internal` (500): a bug or an I/O failure; details are in the node's
///   log.
/// - `registry_full` (507): the registration would add an agent beyond the
///   node's `--max-agents`; nothing changed. Updating an agent that is
///   already registered is still accepted.
/// - `no_space` (507): the leader's disk is short of space
///   (`--min-free-disk-mb`); nothing changed. Reads and heartbeats are
///   still served; writes resume by themselves once space is freed.
///   Retryable, after `Retry-After: 5`.
/// - `no_leader` (503): no leader known within the write or read timeout
///   (election in progress, no quorum). Retryable; `Retry-After: 1`.
/// - `unavailable` (503): this node cannot serve the request right now
///   (`min_revision` or the read index not applied in time, node
///   stopping). Retryable; `Retry-After: 1`.
/// - `too_many_watchers` (503): this node already serves its most event
///   streams and long polls at once (`--max-watchers`). Retryable, after
///   `Retry-After`, here or on another node.
/// - `timeout` (504): a write was sent but its outcome is unknown; read
///   before retrying. Retryable.
/// - `unauthenticated` (401): a node-to-node request (`/internal/*`)
///   without a valid signature of the cluster secret, stale or replayed.
/// - `forbidden` (403): a node-to-node request from a node that is not a
///   member, from another address than the member's, of another cluster,
///   or meant for another node.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum ErrorCode {
    /// The body is not valid JSON (or is empty).
    InvalidJson,
    /// A field or parameter has the wrong type, or a value that is not allowed.
    InvalidArgument,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body did not arrive in time.
    RequestTimeout,
    /// The body is not declared as JSON.
    UnsupportedMediaType,
    /// No agent with that id.
    AgentNotFound,
    /// No such route.
    NotFound,
    /// No agent qualifies for a selection.
    NoAgentAvailable,
    /// No scaling policy for that capability.
    PolicyNotFound,
    /// The HTTP method is not served on this route.
    MethodNotAllowed,
    /// `if_absent` was set and the agent exists.
    AlreadyExists,
    /// `expected_revision` did not match.
    RevisionMismatch,
    /// The cluster has no leader right now (election in progress, no quorum).
    NoLeader,
    /// The node cannot serve the request right now (shutting down, catching up).
    Unavailable,
    /// The request did not complete in time; its outcome is unknown.
    Timeout,
    /// A revision asked for has been compacted away.
    RevisionCompacted,
    /// A bug or an I/O failure; details are in the node's log.
    Internal,
    /// No valid credentials: a request without a token where one is needed,
    /// an unknown, revoked or expired token; or a node-to-node request
    /// without a valid signature (a wrong one, a stale timestamp, a
    /// replay). Answered with `WWW-Authenticate`.
    Unauthenticated,
    /// The caller is known but may not do this: a token whose role or
    /// scope does not allow it (the message names what was refused); or a
    /// node-to-node request from a node that may not send it (not a
    /// member, another cluster, another address).
    Forbidden,
    /// A new agent would exceed the registry's capacity (`--max-agents`).
    RegistryFull,
    /// The node serves its most concurrent event watchers already.
    TooManyWatchers,
    /// The leader's disk is short of space: writes are refused until space
    /// is freed (reads and heartbeats are still served).
    NoSpace,
    /// No token with that id.
    TokenNotFound,
    /// No cluster member with that node id.
    MemberNotFound,
    /// A membership change refused: another in flight, the id or address
    /// taken, or too few voters reachable.
    MembershipConflict,
}

impl ErrorCode {
    /// HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidArgument => 400,
            ErrorCode::AgentNotFound
            | ErrorCode::NotFound
            | ErrorCode::NoAgentAvailable
            | ErrorCode::PolicyNotFound
            | ErrorCode::TokenNotFound
            | ErrorCode::MemberNotFound => 404,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::AlreadyExists
            | ErrorCode::RevisionMismatch
            | ErrorCode::MembershipConflict => 409,
            ErrorCode::RevisionCompacted => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
            ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::TooManyWatchers => 503,
            ErrorCode::RegistryFull | ErrorCode::NoSpace => 507,
            ErrorCode::Timeout => 504,
        }
    }

    /// Whether the same request may succeed if simply sent again later
    /// (possibly to another node).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NoLeader
                | ErrorCode::Unavailable
                | ErrorCode::TooManyWatchers
                | ErrorCode::Timeout
                | ErrorCode::NoSpace
        )
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable; match on it.
    pub code: ErrorCode,
    /// Human-readable; not for matching.
    pub message: String,
    /// The request field or parameter at fault, when one is, by its path
    /// in the body (`name`, `capabilities[0].cost_estimate`, `limit`); on
    /// the legacy routes named as those bodies call them (`agent_name`,
    /// `base_url`, `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether sending the same request again later may succeed (true for
    /// `no_leader`, `unavailable`, `too_many_watchers` and `timeout`).
    #[serde(default)]
    #[schema(required = true)]
    pub retryable: bool,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
                retryable: code.retryable(),
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }
}
