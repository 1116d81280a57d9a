//! Identifiers and scalar newtypes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Raft node id.
pub type NodeId = u64;

/// The registry's global revision: increases by one on every applied change.
pub type Revision = u64;

/// Longest accepted agent id, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// An agent id: 1 to 128 characters of `[A-Za-z0-9._:-]`, other than `.`
/// and `..`.
///
/// Cheap to clone (shared string) because ids are held by the agent table, the
/// indexes and the event log at once.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(Arc<str>);

/// Why a string is not a valid [`AgentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentIdError {
    #[error("agent id must not be empty")]
    Empty,
    #[error("agent id is longer than {MAX_AGENT_ID_LEN} characters")]
    TooLong,
    #[error("agent id may only contain letters, digits and . _ : -")]
    BadCharacter,
    /// `.` and `..` are path segments, not names: in a URL path
    /// (`/v1/agents/..`) clients and proxies resolve them to another route
    /// before the request arrives, so such an agent could not be read or
    /// removed.
    #[error("agent id must not be '.' or '..'")]
    DotSegment,
}

impl AgentId {
    /// Validates and wraps `s`.
    pub fn parse(s: &str) -> Result<Self, AgentIdError> {
        if s.is_empty() {
            return Err(AgentIdError::Empty);
        }
        if s.len() > MAX_AGENT_ID_LEN {
            return Err(AgentIdError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(AgentIdError::BadCharacter);
        }
        if s == "." || s == ".." {
            return Err(AgentIdError::DotSegment);
        }
        Ok(AgentId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `AgentId` be searched and ranged by `&str`; ordering
/// and hashing are those of the underlying string.
impl std::borrow::Borrow<str> for AgentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AgentId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A string with the rules of [`AgentId::parse`] (serialized by hand, so
/// the schema is written by hand too).
impl utoipa::PartialSchema for AgentId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_AGENT_ID_LEN))
            .pattern(Some(format!(
                "^(?!\\.{{1,2}}$)[A-Za-z0-9._:-]{{1,{MAX_AGENT_ID_LEN}}}$"
            )))
            .description(Some(format!(
                "An agent id: 1 to {MAX_AGENT_ID_LEN} characters of `[A-Za-z0-9._:-]`, other than `.` and `..`."
            )))
            .examples([serde_json::json!("coder-1")])
            .into()
    }
}

impl utoipa::ToSchema for AgentId {}

/// A point in wall-clock time, in milliseconds since the Unix epoch.
///
/// Only the leader reads the clock; the value travels inside replicated
/// commands so that apply is deterministic. In JSON it is an RFC 3339 string;
/// in the binary (bincode) encoding it is the raw integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time. Never call this inside the state machine.
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_ms(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }

    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
        } else {
            Ok(Timestamp(i64::deserialize(d)?))
        }
    }
}

/// An RFC 3339 string in JSON (see the `Serialize` impl).
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "A point in time: RFC 3339, UTC, millisecond precision, stamped by the leader's clock.",
            ))
            .examples([serde_json::json!("2026-11-21T13:44:39.709Z")])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_accepts_the_documented_alphabet() {
        assert!(AgentId::parse("a.b_c:d-E9").is_ok());
        assert_eq!(AgentId::parse(""), Err(AgentIdError::Empty));
        assert_eq!(AgentId::parse("a b"), Err(AgentIdError::BadCharacter));
        assert_eq!(AgentId::parse("a/b"), Err(AgentIdError::BadCharacter));
        assert_eq!(AgentId::parse("é"), Err(AgentIdError::BadCharacter));
        assert!(AgentId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(AgentId::parse(&"x".repeat(129)), Err(AgentIdError::TooLong));
        assert_eq!(AgentId::parse("."), Err(AgentIdError::DotSegment));
        assert_eq!(AgentId::parse(".."), Err(AgentIdError::DotSegment));
        assert!(AgentId::parse("...").is_ok());
        assert!(AgentId::parse(".a").is_ok());
    }

    #[test]
    fn timestamp_is_rfc3339_in_json() {
        let t = Timestamp(1_700_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
