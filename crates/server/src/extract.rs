//! Request extractors that turn every malformed input into an [`ApiError`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use registry_types::{AgentStatus, ErrorCode};

use crate::error::ApiError;

/// A JSON body. Malformed JSON gets 400 `invalid_json`, a value of the wrong
/// type 400 `invalid_argument`, an oversized body 413 `payload_too_large`.
/// The content type is not enforced, so `curl -d` works without `-H`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                "request body is empty; a JSON object is expected",
            ));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body that may be absent: an empty body gives `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// Reads the whole body within the route's limit (413 above it).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is larger than the configured limit",
            )
        } else {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("could not read the request body: {rej}"),
            )
        }
    })
}

/// Parses JSON, telling malformed JSON from values of the wrong type; a
/// wrong type names the field at fault by its path in the body
/// (`capabilities[0].cost_estimate`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => {
                let message = inner.to_string();
                if let Some(name) = missing_field(&message) {
                    let field = if path == "." {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    return ApiError::invalid(&field, format!("{field} is required"));
                }
                // "." is the body itself; "[0]" an element of a body sent as
                // an array: either way no field is at fault but the body.
                if path == "." || path.starts_with('[') {
                    return ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("invalid request body: {inner}"),
                    );
                }
                ApiError::from(
                    registry_types::ErrorBody::new(
                        ErrorCode::InvalidArgument,
                        format!("invalid value of {path}: {inner}"),
                    )
                    .with_field(path),
                )
            }
            _ => ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {inner}")),
        }
    })?;
    // Characters after the value make the body malformed JSON too.
    de.end()
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The field serde reports missing (at the top level of the body).
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Raw query parameters; typed parsing happens in [`Params`] methods so that
/// each bad value gets an error naming its parameter.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("malformed query string: {e}"),
                )
            })
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with the leader (read index): sees every acknowledged write.
    Linearizable,
    /// This node's state as it is, at once.
    Stale,
}

impl Params {
    /// A non-empty string parameter.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        name,
                        format!("{name} must be a non-negative integer, got '{v}'"),
                    )
                })
            })
            .transpose()
    }

    /// `limit`, defaulting to `default`, within 1..=max.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.u64("limit")? {
            None => Ok(default),
            Some(n) if n == 0 || n > max as u64 => Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {max}, got {n}"),
            )),
            Some(n) => Ok(n as usize),
        }
    }

    /// The filters of a listing: `status`, `capability`, `tag`,
    /// `agent_type`, `runtime_id`.
    pub fn list_filter(&self) -> Result<registry_types::api::ListFilter, ApiError> {
        Ok(registry_types::api::ListFilter {
            status: self.status()?,
            capability: self.str("capability").map(str::to_string),
            tag: self.str("tag").map(str::to_string),
            agent_type: self.str("agent_type").map(str::to_string),
            runtime_id: self.str("runtime_id").map(str::to_string),
        })
    }

    pub fn status(&self) -> Result<Option<AgentStatus>, ApiError> {
        registry_types::limits::parse_status("status", self.str("status")).map_err(ApiError::from)
    }

    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.str("consistency") {
            None | Some("linearizable") | Some("strong") => Ok(Consistency::Linearizable),
            Some("stale") => Ok(Consistency::Stale),
            Some(other) => Err(ApiError::invalid(
                "consistency",
                format!("consistency must be 'linearizable' or 'stale', got '{other}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::api::RegisterRequest;

    fn error(body: &str) -> (ErrorCode, Option<String>) {
        let e = parse_json::<RegisterRequest>(body.as_bytes()).expect_err(body);
        (e.code(), e.body.error.field)
    }

    #[test]
    fn type_errors_name_the_field_by_its_path() {
        let bad = ErrorCode::InvalidArgument;
        for (body, field) in [
            (r#"{"name": 5}"#, "name"),
            (r#"{"agent_name": 5}"#, "agent_name"),
            (
                r#"{"capabilities": [{"name": "a"}, {"name": "b", "cost_estimate": {}}]}"#,
                "capabilities[1].cost_estimate",
            ),
            (
                r#"{"capabilities": [{"description": "no name"}]}"#,
                "capabilities[0].name",
            ),
            (
                r#"{"performance_metrics": {"lat": "slow"}}"#,
                "performance_metrics.lat",
            ),
        ] {
            assert_eq!(error(body), (bad, Some(field.to_string())), "{body}");
        }
        assert_eq!(error("[1, 2]"), (bad, None), "the body as a whole");
    }

    #[test]
    fn malformed_json_and_trailing_characters_are_invalid_json() {
        for body in [
            r#"{"name": "x","#,
            "name=x",
            r#"{"name": "x"} {"#,
            r#"{} x"#,
        ] {
            assert_eq!(error(body), (ErrorCode::InvalidJson, None), "{body}");
        }
        assert!(parse_json::<RegisterRequest>(br#" {"name": "x"} "#).is_ok());
    }

    #[test]
    fn missing_field_reads_serde_messages() {
        assert_eq!(
            missing_field("missing field `status` at line 1"),
            Some("status")
        );
        assert_eq!(missing_field("invalid type: integer"), None);
    }
}
