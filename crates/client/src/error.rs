//! Errors returned by the client.

use registry_types::{ErrorBody, ErrorCode};

/// Why a call failed.
///
/// The variants separate what a caller must handle differently: the server
/// refused (`Api`, look at the code), nothing got through (`Transport`,
/// `AllNodesFailed`: safe to try again later), and a write whose fate is
/// unknown (`Unknown`: read back before repeating it if that matters).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// A node answered with an error status and the registry's error body.
    #[error("HTTP {status} {}: {}", body.error.code, body.error.message)]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The decoded `{"error": {...}}` body.
        body: ErrorBody,
    },
    /// The request could not be sent or its answer could not be read (connect
    /// failure, reset, read timeout on a read-only call).
    #[error("transport error: {0}")]
    Transport(String),
    /// A write was (or may have been) sent but no answer came back in time: it
    /// may or may not have been applied. Never retried automatically.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// A node answered, but the body is not what the route returns.
    #[error("cannot decode response: {0}")]
    Decode(String),
    /// Every attempt failed with a retryable error; `last` is the final one.
    #[error("all nodes failed after {attempts} attempts; last error: {last}")]
    AllNodesFailed {
        /// Attempts made, over all nodes.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<ClientError>,
    },
    /// The node list or the configuration is unusable.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
}

impl ClientError {
    /// The registry error code, when a node answered with one (also through
    /// `AllNodesFailed`).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.error.code),
            ClientError::AllNodesFailed { last, .. } => last.code(),
            _ => None,
        }
    }

    /// The HTTP status, when a node answered (also through `AllNodesFailed`).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::AllNodesFailed { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The server's error body, when a node answered with one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            ClientError::AllNodesFailed { last, .. } => last.body(),
            _ => None,
        }
    }

    /// True when a write may or may not have taken effect: a timeout after the
    /// request was sent, or the server's own `timeout` (504) answer.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            ClientError::Unknown(_) => true,
            ClientError::Api { body, .. } => body.error.code == ErrorCode::Timeout,
            ClientError::AllNodesFailed { last, .. } => last.is_outcome_unknown(),
            _ => false,
        }
    }

    /// True when no node could be reached or none could serve the request
    /// (transport failures, or every node answering 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::Transport(_) | ClientError::AllNodesFailed { .. }
        )
    }

    /// Whether sending the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Api { status, body } => *status == 503 || body.error.retryable,
            ClientError::Transport(_) | ClientError::AllNodesFailed { .. } => true,
            ClientError::Unknown(_) | ClientError::Decode(_) | ClientError::InvalidConfig(_) => {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_status_see_through_all_nodes_failed() {
        let api = ClientError::Api {
            status: 503,
            body: ErrorBody::new(ErrorCode::NoLeader, "election in progress"),
        };
        let wrapped = ClientError::AllNodesFailed {
            attempts: 4,
            last: Box::new(api.clone()),
        };
        assert_eq!(api.code(), Some(ErrorCode::NoLeader));
        assert_eq!(wrapped.code(), Some(ErrorCode::NoLeader));
        assert_eq!(wrapped.status(), Some(503));
        assert!(wrapped.is_unavailable());
        assert!(!api.is_outcome_unknown());
        assert_eq!(ClientError::Transport("x".into()).code(), None);
        assert!(ClientError::Unknown("t".into()).is_outcome_unknown());
        let msg = wrapped.to_string();
        assert!(
            msg.contains("no_leader") && msg.contains("4 attempts"),
            "{msg}"
        );
    }
}
