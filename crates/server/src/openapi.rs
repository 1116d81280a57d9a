//! The OpenAPI document of the public API, served at `GET /openapi.json`.

use axum::Json;
use serde_json::Value;

/// The OpenAPI 3.0 document, embedded at build time.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(serde_json::from_str(OPENAPI_JSON).unwrap_or(Value::Null))
}
