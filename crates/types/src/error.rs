//! The wire error shape shared by every endpoint: `{"error": {"code", "message"}}`.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. Each maps to one HTTP status. The wire
/// name is the snake_case variant name (`into_str`, `Display`).
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
}

impl ErrorCode {
    /// HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidArgument => 400,
            ErrorCode::AgentNotFound
            | ErrorCode::NotFound
            | ErrorCode::NoAgentAvailable
            | ErrorCode::PolicyNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyExists | ErrorCode::RevisionMismatch => 409,
            ErrorCode::RevisionCompacted => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
            ErrorCode::NoLeader | ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// Whether the same request may succeed if simply sent again later
    /// (possibly to another node).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::Timeout
        )
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether sending the same request again later may succeed.
    #[serde(default)]
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
