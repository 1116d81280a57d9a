//! The agent record and its status ladder.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::ids::{AgentId, Revision, Timestamp};
use crate::names::UnknownName;

/// Where an agent stands on the liveness ladder.
///
/// `registering → active ⇄ busy/degraded → unhealthy → offline → (removed)`;
/// `suspended` is set by an operator only and is never overridden by
/// heartbeats; `deregistering` is an agent announcing a graceful exit.
/// The leader moves a silent agent down the ladder (silent for
/// `ttl_seconds` → `unhealthy`, `offline_after_seconds` → `offline`,
/// `deregister_after_seconds` → removed); a heartbeat or re-registration
/// brings it back.
///
/// The wire name is the snake_case variant name, exact in JSON bodies and
/// records; parsing it from text (`FromStr`: query parameters, the command
/// line) ignores ASCII case. `VARIANTS` lists them in ladder order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    serialize_all = "snake_case",
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_status
)]
pub enum AgentStatus {
    Registering,
    Active,
    Busy,
    Degraded,
    Unhealthy,
    Suspended,
    Deregistering,
    Offline,
}

fn unknown_status(given: &str) -> UnknownName {
    UnknownName::new::<AgentStatus>("status", given)
}

impl AgentStatus {
    /// Statuses an agent may report about itself (heartbeats, registration).
    pub fn is_agent_reportable(self) -> bool {
        matches!(
            self,
            AgentStatus::Active | AgentStatus::Busy | AgentStatus::Degraded
        )
    }

    /// The status an agent in this status has once a heartbeat is applied.
    /// An operator's `suspended` and an exiting `deregistering` stay; an
    /// unhealthy, offline or registering agent revives to what it reported
    /// (or `active`); a live one takes what it reported. Only statuses an
    /// agent may report count. The state machine's checkpoint and the
    /// leader's heartbeat answer both use this rule.
    pub fn after_heartbeat(self, reported: Option<AgentStatus>) -> AgentStatus {
        let reported = reported.filter(|s| s.is_agent_reportable());
        match self {
            AgentStatus::Suspended | AgentStatus::Deregistering => self,
            AgentStatus::Unhealthy | AgentStatus::Offline | AgentStatus::Registering => {
                reported.unwrap_or(AgentStatus::Active)
            }
            _ => reported.unwrap_or(self),
        }
    }

    /// Whether the agent counts as reachable for `/health/{id}`.
    pub fn is_healthy(self) -> bool {
        matches!(
            self,
            AgentStatus::Active | AgentStatus::Busy | AgentStatus::Degraded
        )
    }
}

/// One thing an agent can do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capability {
    /// Human-readable capability name, e.g. "Python code generation".
    pub name: String,
    /// What the capability does, in the agent's words.
    #[serde(default)]
    #[schema(required = true)]
    pub description: String,
    /// Free-form tags, matched case-insensitively.
    #[serde(default)]
    #[schema(required = true)]
    pub tags: Vec<String>,
    /// The agent's own estimate of what one call costs, exactly as it sent
    /// it. Absent when unknown.
    #[serde(default)]
    #[schema(required = true)]
    pub cost_estimate: Option<CostEstimate>,
    /// The capability's parameters as the agent described them (a JSON
    /// object: `{"language": "str"}`, a JSON schema, ...), kept verbatim and
    /// never interpreted. Empty when none were given.
    #[serde(default, deserialize_with = "null_as_empty")]
    #[schema(required = true)]
    pub parameters: Metadata,
}

/// Accepts `null` for an object field, as the empty object.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
    if d.is_human_readable() {
        Ok(
            Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?
                .map(Metadata)
                .unwrap_or_default(),
        )
    } else {
        Metadata::deserialize(d)
    }
}

/// What one call of a capability costs, in the agent's own terms: a number
/// (in the fleet's unit: credits, dollars, tokens) or text such as
/// `"~100 tokens"` or `"50-200 tokens per function"`, as the clients already
/// in the field send it.
///
/// The registry never interprets it: it is echoed back as given, in
/// records, searches, discovery and events. In JSON a number is written as
/// an integer when it is one (`100`, not `100.0`), so `100` and `100.0` read
/// back as the same JSON number.
#[derive(Clone, Debug, PartialEq)]
pub enum CostEstimate {
    /// A finite, non-negative number.
    Number(f64),
    /// Text, at most [`CostEstimate::MAX_TEXT_BYTES`] bytes.
    Text(String),
}

impl CostEstimate {
    /// Longest text estimate accepted, in bytes.
    pub const MAX_TEXT_BYTES: usize = 256;
}

/// A number or a string (serialized by hand, so the schema is written by
/// hand too).
impl utoipa::PartialSchema for CostEstimate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                    .minimum(Some(0.0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(CostEstimate::MAX_TEXT_BYTES)),
            )
            .description(Some(format!(
                "What one call of a capability costs, in the agent's own terms: a finite \
                 number >= 0 (in the fleet's unit: credits, dollars, tokens) or text of at \
                 most {} bytes such as \"~100 tokens\". Echoed back exactly as given (a whole \
                 number is written without a fraction: 100, not 100.0); the registry never \
                 interprets it.",
                CostEstimate::MAX_TEXT_BYTES
            )))
            .examples([serde_json::json!("50-200 tokens per function")])
            .into()
    }
}

impl utoipa::ToSchema for CostEstimate {}

/// The binary (bincode) shape of [`CostEstimate`]: an ordinary enum.
#[derive(Serialize, Deserialize)]
enum CostEstimateBin {
    Number(f64),
    Text(String),
}

impl Serialize for CostEstimate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return match self {
                CostEstimate::Number(x) => CostEstimateBin::Number(*x),
                CostEstimate::Text(t) => CostEstimateBin::Text(t.clone()),
            }
            .serialize(s);
        }
        // Integers below 2^53 are exact in an f64: write them as integers.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        match self {
            CostEstimate::Number(x) if x.fract() == 0.0 && x.abs() < EXACT => {
                s.serialize_i64(*x as i64)
            }
            CostEstimate::Number(x) => s.serialize_f64(*x),
            CostEstimate::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for CostEstimate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return Ok(match CostEstimateBin::deserialize(d)? {
                CostEstimateBin::Number(x) => CostEstimate::Number(x),
                CostEstimateBin::Text(t) => CostEstimate::Text(t),
            });
        }
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CostEstimate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CostEstimate, E> {
                Ok(CostEstimate::Number(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CostEstimate, E> {
                Ok(CostEstimate::Number(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<CostEstimate, E> {
                Ok(CostEstimate::Number(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CostEstimate, E> {
                Ok(CostEstimate::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<CostEstimate, E> {
                Ok(CostEstimate::Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Free-form JSON object attached to an agent.
///
/// A JSON object on the wire; stored as its JSON text inside the binary
/// (bincode) encoding, which cannot carry self-describing values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata(pub serde_json::Map<String, serde_json::Value>);

impl Metadata {
    /// Size of the JSON text, used to enforce the metadata limit.
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(&self.0)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }
}

/// Any JSON object.
impl utoipa::PartialSchema for Metadata {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(true)))
            .description(Some(
                "A free-form JSON object, kept verbatim; at most 16 KiB (16384 bytes) as compact JSON.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Metadata {}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
            s.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(Metadata(serde_json::Map::deserialize(d)?))
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text)
                .map(Metadata)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// The replicated record of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRecord {
    /// The agent's id.
    pub agent_id: AgentId,
    /// Display name, trimmed.
    pub name: String,
    /// Kind of agent ("llm", "tool", "orchestrator", ...), free-form.
    #[serde(default)]
    #[schema(required = true)]
    pub agent_type: String,
    /// The runtime (host, pod, process group) the agent runs in.
    #[serde(default)]
    #[schema(required = true)]
    pub runtime_id: String,
    /// Where the agent is reached, usually a URL.
    pub endpoint: String,
    /// The agent's own version string, free-form.
    #[serde(default)]
    #[schema(required = true)]
    pub version: String,
    /// What the agent does, in its own words.
    #[serde(default)]
    #[schema(required = true)]
    pub description: String,
    /// What the agent can do.
    #[serde(default)]
    #[schema(required = true)]
    pub capabilities: Vec<Capability>,
    /// Agent-level tags, matched case-insensitively.
    #[serde(default)]
    #[schema(required = true)]
    pub tags: Vec<String>,
    /// Free-form JSON object the agent registered.
    #[serde(default)]
    #[schema(required = true)]
    pub metadata: Metadata,
    /// Where the agent stands on the liveness ladder.
    pub status: AgentStatus,
    /// 0 (dead) to 1 (perfect), reported by the agent.
    pub health_score: f64,
    /// 0 (idle) to 1 (saturated), reported by the agent.
    pub load_factor: f64,
    /// Named figures reported by the agent (latency_ms, success_rate, ...).
    #[serde(default)]
    #[schema(required = true)]
    pub performance_metrics: BTreeMap<String, f64>,
    /// Seconds without a heartbeat before the agent is marked unhealthy.
    pub ttl_seconds: u32,
    /// Seconds without a heartbeat before the agent is marked offline.
    pub offline_after_seconds: u32,
    /// Seconds without a heartbeat before the agent is removed (0: never).
    pub deregister_after_seconds: u32,
    /// When the agent id was (last) created.
    pub registered_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// The last heartbeat the replicated record holds (heartbeats are
    /// checkpointed about once a second, so it may lag by that much).
    pub last_heartbeat: Timestamp,
    /// Revision at which this agent id was (last) created.
    #[schema(value_type = u64)]
    pub create_revision: Revision,
    /// Revision of the last change to this record.
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// Revision of the last registration (create or re-register) of this
    /// agent. Expiry commands name it, so a re-registration that raced an
    /// expiry wins.
    #[schema(value_type = u64)]
    pub epoch: Revision,
    /// Who made the last registration (create or re-register): a token or
    /// `anonymous`. Null for agents registered before the registry
    /// recorded it.
    #[serde(default)]
    #[schema(required = true)]
    pub registered_by: Option<crate::auth::Actor>,
    /// The agent's A2A Agent Card, verbatim (canonical JSON), when it
    /// registered with one; null otherwise. Served on its own, with an
    /// ETag, at `GET /v1/agents/{id}/agent-card.json`.
    #[serde(default)]
    #[schema(required = true, value_type = Option<Object>)]
    pub agent_card: Option<crate::card::AgentCard>,
}

impl AgentRecord {
    /// Approximate bytes of heap held by the record, for the footprint figures.
    pub fn approx_heap_bytes(&self) -> usize {
        let caps: usize = self
            .capabilities
            .iter()
            .map(|c| {
                c.name.len()
                    + c.description.len()
                    + match &c.cost_estimate {
                        Some(CostEstimate::Text(t)) => t.len(),
                        _ => 0,
                    }
                    + if c.parameters.0.is_empty() {
                        0
                    } else {
                        c.parameters.encoded_len()
                    }
                    + c.tags.iter().map(|t| t.len() + 24).sum::<usize>()
                    + 96
            })
            .sum();
        self.name.len()
            + self.agent_type.len()
            + self.runtime_id.len()
            + self.endpoint.len()
            + self.version.len()
            + self.description.len()
            + caps
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.metadata.encoded_len()
            + self.agent_card.as_ref().map_or(0, |c| c.len() + 64)
            + self
                .performance_metrics
                .keys()
                .map(|k| k.len() + 40)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn status_parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("Active".parse::<AgentStatus>(), Ok(AgentStatus::Active));
        assert!("sleeping".parse::<AgentStatus>().is_err());
        for &s in AgentStatus::VARIANTS {
            assert_eq!(s.into_str().parse::<AgentStatus>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.into_str()));
        }
    }

    #[test]
    fn cost_estimates_echo_numbers_and_text() {
        for (input, echoed) in [
            ("100", "100"),
            ("100.0", "100"),
            ("0.02", "0.02"),
            ("1e300", "1e+300"),
            ("\"~100 tokens\"", "\"~100 tokens\""),
            ("\"\"", "\"\""),
        ] {
            let c: CostEstimate = serde_json::from_str(input).unwrap();
            assert_eq!(serde_json::to_string(&c).unwrap(), echoed, "{input}");
        }
        assert_eq!(
            serde_json::from_str::<CostEstimate>("\"50-200 tokens per function\"").unwrap(),
            CostEstimate::Text("50-200 tokens per function".into())
        );
        assert_eq!(
            serde_json::from_str::<CostEstimate>("-3").unwrap(),
            CostEstimate::Number(-3.0)
        );
        for bad in ["{}", "[1]", "true", "null"] {
            let e = serde_json::from_str::<CostEstimate>(bad).unwrap_err();
            assert!(e.to_string().contains("a number or a string"), "{bad}: {e}");
        }
    }

    #[test]
    fn capability_parameters_default_to_empty_and_accept_null() {
        let c: Capability = serde_json::from_str(r#"{"name": "x", "parameters": null}"#).unwrap();
        assert!(c.parameters.0.is_empty());
        let c: Capability =
            serde_json::from_str(r#"{"name": "x", "parameters": {"lang": "str"}}"#).unwrap();
        assert_eq!(c.parameters.0["lang"], "str");
        assert!(serde_json::from_str::<Capability>(r#"{"name": "x", "parameters": 1}"#).is_err());
    }

    #[test]
    fn metadata_is_an_object_in_json() {
        let m: Metadata = serde_json::from_str(r#"{"a": [1, {"b": null}]}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"a":[1,{"b":null}]}"#
        );
        assert!(serde_json::from_str::<Metadata>("[1]").is_err());
    }
}
