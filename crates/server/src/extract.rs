//! Request extractors that turn every malformed input into an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use registry_types::query::from_query_str;
use registry_types::ErrorCode;

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

/// When the body of a request must have arrived, set by the edge
/// middleware (`bound_request` in the crate root) from
/// `--body-read-timeout-ms`.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline(pub tokio::time::Instant);

/// Reads the whole body within the route's limit (413 above it) and before
/// the request's [`BodyDeadline`] (408 after it): a client sending a byte
/// now and then cannot hold a handler.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let deadline = req.extensions().get::<BodyDeadline>().copied();
    let read = Bytes::from_request(req, state);
    let read = match deadline {
        Some(BodyDeadline(at)) => tokio::time::timeout_at(at, read).await.map_err(|_| {
            ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time (--body-read-timeout-ms)",
            )
        })?,
        None => read.await,
    };
    read.map_err(|rej| {
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

/// Query parameters decoded into `T`, one of the structs of
/// [`registry_types::query`] (a handler takes several: each reads what it
/// knows of the same query string). Decoding is
/// [`registry_types::query::from_query_str`], the same rules the client
/// encodes for: empty values are absent, a repeated parameter counts with its
/// last value, unknown parameters are ignored, and a value of the wrong type
/// gets 400 `invalid_argument` naming the parameter (`field`). Checks that
/// depend on the route (ranges, required parameters) are the handler's.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_query_str(parts.uri.query().unwrap_or_default())
            .map(Query)
            .map_err(|e| match e.field {
                Some(field) => ApiError::invalid(&field, e.message),
                None => ApiError::new(ErrorCode::InvalidArgument, e.message),
            })
    }
}

/// A `limit` parameter: `default` when absent, else within 1..=max.
pub fn limit_within(limit: Option<u64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if n == 0 || n > max as u64 => Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {max}, got {n}"),
        )),
        Some(n) => Ok(n as usize),
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

    /// The `T` a request to `uri` carries in its query string.
    async fn query<T: DeserializeOwned>(uri: &str) -> Result<T, ApiError> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(uri)
            .body(())
            .expect("a request")
            .into_parts();
        Query::<T>::from_request_parts(&mut parts, &())
            .await
            .map(|Query(q)| q)
    }

    #[tokio::test]
    async fn query_parameters_decode_or_name_the_one_at_fault() {
        use registry_types::query::{ListPage, ReadOptions};
        let page: ListPage = query("/v1/agents?limit=5&cursor=&other=x").await.unwrap();
        assert_eq!((page.limit, page.cursor), (Some(5), None));
        let read: ReadOptions = query("/v1/agents").await.unwrap();
        assert_eq!(read, ReadOptions::default());
        let refused = [
            (
                "limit",
                query::<ListPage>("/v1/agents?limit=ten").await.err(),
            ),
            (
                "limit",
                query::<ListPage>("/v1/agents?limit=-1").await.err(),
            ),
            (
                "min_revision",
                query::<ReadOptions>("/v1/stats?min_revision=soon")
                    .await
                    .err(),
            ),
        ];
        for (field, e) in refused {
            let e = e.expect("refused");
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{field}");
            assert_eq!(e.body.error.field.as_deref(), Some(field));
            assert!(e.body.error.message.contains(field), "{field}");
        }
    }

    #[test]
    fn limits_are_checked_after_decoding() {
        assert_eq!(limit_within(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit_within(Some(1000), 100, 1000).unwrap(), 1000);
        for bad in [0, 1001] {
            let e = limit_within(Some(bad), 100, 1000).unwrap_err();
            assert_eq!(e.body.error.field.as_deref(), Some("limit"), "{bad}");
        }
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
