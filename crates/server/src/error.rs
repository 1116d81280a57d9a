//! The one error type of the HTTP edge.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use registry_types::{ErrorBody, ErrorCode};

use crate::node::{ReadError, WriteError};

/// An error answered to a client as `{"error": {"code", "message"}}` with the
/// status of its code. Internal causes are logged where they happen and never
/// echoed in detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody::new(code, message),
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::from(registry_types::limits::invalid(field, message))
    }

    pub fn not_found(id: &str) -> Self {
        ApiError::new(
            ErrorCode::AgentNotFound,
            format!("agent '{id}' is not registered"),
        )
    }

    pub fn no_leader() -> Self {
        ApiError {
            body: ErrorBody::new(
                ErrorCode::NoLeader,
                "the cluster has no leader right now (election in progress or no quorum); retry shortly",
            ),
            retry_after: Some(1),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody::new(ErrorCode::Unavailable, message),
            retry_after: Some(1),
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Timeout, message)
    }

    pub fn internal() -> Self {
        ApiError::new(ErrorCode::Internal, "internal error; see the node's log")
    }

    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }

    /// The same error under another code (and that code's retryability).
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.body.error.code = code;
        self.body.error.retryable = code.retryable();
        self
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError {
            body,
            retry_after: None,
        }
    }
}

/// A failed write as the client sees it: 503 with `Retry-After` when it
/// certainly was not applied, 504 `timeout` when it may have been, 507
/// `registry_full` for a new agent beyond `--max-agents`, 507 `no_space`
/// (with `Retry-After`) while the leader's disk is short of space.
impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoLeader => ApiError::no_leader(),
            WriteError::Unavailable(m) => ApiError::unavailable(m),
            WriteError::OutcomeUnknown(m) => ApiError::timeout(m),
            WriteError::Internal => ApiError::internal(),
            e @ WriteError::RegistryFull { .. } => {
                ApiError::new(ErrorCode::RegistryFull, e.to_string())
            }
            e @ WriteError::NoSpace { .. } => ApiError {
                body: ErrorBody::new(ErrorCode::NoSpace, e.to_string()),
                retry_after: Some(5),
            },
        }
    }
}

/// A read that could not be answered as fresh as asked: 503 with
/// `Retry-After` (another node, or a moment later, may answer it).
impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NoLeader => ApiError::no_leader(),
            ReadError::Internal => ApiError::internal(),
            e @ (ReadError::Unavailable(_)
            | ReadError::Behind { .. }
            | ReadError::RevisionNotApplied { .. }) => ApiError::unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.body.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: how to authenticate.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="agent-registry""#),
            );
        }
        resp
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
