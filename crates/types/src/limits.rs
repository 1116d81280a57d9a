//! Input limits and request validation.
//!
//! Validation is pure and happens before a command is proposed, so a bad
//! request never reaches the Raft log and never changes anything.

use std::collections::BTreeMap;

use crate::agent::{AgentStatus, CostEstimate};
use crate::api::{HealthUpdateRequest, RegisterRequest};
use crate::command::RegisterCommand;
use crate::error::{ErrorBody, ErrorCode};
use crate::ids::AgentId;
use crate::scaling::ScalingPolicyRequest;

/// Limits on what one agent record may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_capabilities: usize,
    pub max_tags: usize,
    pub max_metadata_bytes: usize,
    /// Longest name, endpoint, type, runtime id, version or tag, in bytes.
    pub max_short_string: usize,
    /// Longest description, in bytes.
    pub max_description: usize,
    pub max_metrics: usize,
}

impl Limits {
    /// The limits every node enforces. The state machine applies them too
    /// (see [`crate::Command::check_content`]), so they are part of the
    /// replicated behaviour: raising or lowering one changes which logged
    /// commands apply, and must be treated like a format change.
    pub const DEFAULT: Limits = Limits {
        max_capabilities: 128,
        max_tags: 64,
        max_metadata_bytes: 16 * 1024,
        max_short_string: 512,
        max_description: 8 * 1024,
        max_metrics: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A validation failure, naming the field.
pub fn invalid(field: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidArgument, message).with_field(field)
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ErrorBody> {
    if value.len() > max {
        return Err(invalid(
            field,
            format!(
                "{field} is {} bytes long; at most {max} are allowed",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a score that must lie in 0..=1.
pub fn check_unit(field: &str, v: Option<f64>) -> Result<(), ErrorBody> {
    match v {
        Some(x) if !(0.0..=1.0).contains(&x) || x.is_nan() => Err(invalid(
            field,
            format!("{field} must be between 0 and 1, got {x}"),
        )),
        _ => Ok(()),
    }
}

fn check_tags(field: &str, tags: &[String], limits: &Limits) -> Result<(), ErrorBody> {
    if tags.len() > limits.max_tags {
        return Err(invalid(
            field,
            format!(
                "{} tags given; at most {} are allowed",
                tags.len(),
                limits.max_tags
            ),
        ));
    }
    for t in tags {
        if t.trim().is_empty() {
            return Err(invalid(field, "tags must not be empty"));
        }
        check_len(field, t, limits.max_short_string)?;
    }
    Ok(())
}

/// Checks performance metrics: bounded count, finite values.
pub fn check_metrics(
    field: &str,
    metrics: &BTreeMap<String, f64>,
    limits: &Limits,
) -> Result<(), ErrorBody> {
    if metrics.len() > limits.max_metrics {
        return Err(invalid(
            field,
            format!(
                "{} metrics given; at most {} are allowed",
                metrics.len(),
                limits.max_metrics
            ),
        ));
    }
    for (k, v) in metrics {
        check_len(field, k, limits.max_short_string)?;
        if !v.is_finite() {
            return Err(invalid(
                field,
                format!("metric '{k}' must be a finite number"),
            ));
        }
    }
    Ok(())
}

/// Checks that merging `new` metrics into an agent's `existing` ones (and
/// the `pending` ones reported since the last checkpoint, which will be
/// merged too) keeps the merged set within the limit: metrics merge, so a
/// per-request check alone would let repeated reports grow a record
/// without bound.
pub fn check_merged_metrics(
    field: &str,
    existing: &BTreeMap<String, f64>,
    pending: Option<&BTreeMap<String, f64>>,
    new: &BTreeMap<String, f64>,
    limits: &Limits,
) -> Result<(), ErrorBody> {
    let empty = BTreeMap::new();
    let pending = pending.unwrap_or(&empty);
    let held = |k: &String| existing.contains_key(k);
    let merged = existing.len()
        + pending.keys().filter(|k| !held(k)).count()
        + new
            .keys()
            .filter(|k| !held(k) && !pending.contains_key(*k))
            .count();
    if merged > limits.max_metrics {
        return Err(invalid(
            field,
            format!(
                "the agent would hold {merged} metrics (with those reported since the last checkpoint); at most {} are allowed: report fewer distinct metric names",
                limits.max_metrics
            ),
        ));
    }
    Ok(())
}

/// Schemes an agent endpoint may use: what callers dial (HTTP, gRPC,
/// WebSocket, each plain or over TLS). Anything else (`javascript:`,
/// `file:`, `data:`) is refused: endpoints are handed to every client that
/// discovers the agent, some of which render or follow them.
pub const ENDPOINT_SCHEMES: [&str; 6] = ["http", "https", "grpc", "grpcs", "ws", "wss"];

/// Checks an endpoint: an absolute URL with a host, of a scheme among
/// [`ENDPOINT_SCHEMES`], at most `max_short_string` bytes.
pub fn check_endpoint(field: &str, endpoint: &str, limits: &Limits) -> Result<(), ErrorBody> {
    check_len(field, endpoint, limits.max_short_string)?;
    let allowed = ENDPOINT_SCHEMES.join(", ");
    let url = url::Url::parse(endpoint.trim()).map_err(|e| {
        invalid(
            field,
            format!("{field} must be an absolute URL ({allowed}): {e}"),
        )
    })?;
    if !ENDPOINT_SCHEMES.contains(&url.scheme()) {
        return Err(invalid(
            field,
            format!(
                "{field} must use one of the schemes {allowed}, not '{}'",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, format!("{field} must name a host")));
    }
    Ok(())
}

/// Checks one capability of a registration, request or command alike.
/// `parameters`: `None` when none were given, else the size of their JSON
/// text, or `Err` when they are not a JSON object.
fn check_capability(
    i: usize,
    name: &str,
    description: &str,
    tags: &[String],
    cost: Option<&CostEstimate>,
    parameters: Option<Result<usize, ()>>,
    limits: &Limits,
) -> Result<(), ErrorBody> {
    let field = format!("capabilities[{i}]");
    if name.trim().is_empty() {
        return Err(invalid(&field, format!("{field}.name must not be empty")));
    }
    check_len(&field, name, limits.max_short_string)?;
    check_len(&field, description, limits.max_description)?;
    check_tags(&field, tags, limits)?;
    check_cost(&format!("{field}.cost_estimate"), cost)?;
    if let Some(p) = parameters {
        let field = format!("{field}.parameters");
        match p {
            Ok(len) => check_json_len(&field, len, limits)?,
            Err(()) => return Err(invalid(&field, format!("{field} must be a JSON object"))),
        }
    }
    Ok(())
}

/// Checks the size of a JSON object's text (metadata, parameters).
fn check_json_len(field: &str, len: usize, limits: &Limits) -> Result<(), ErrorBody> {
    if len > limits.max_metadata_bytes {
        return Err(invalid(
            field,
            format!(
                "{field} is {len} bytes of JSON; at most {} are allowed",
                limits.max_metadata_bytes
            ),
        ));
    }
    Ok(())
}

/// Size of a JSON object's compact text (`usize::MAX` if it cannot be
/// written, which no limit admits).
fn json_len(obj: &serde_json::Map<String, serde_json::Value>) -> usize {
    serde_json::to_vec(obj)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// The text fields of a registration, request or command alike: `name`
/// and `endpoint` required and not blank, every one within its length.
fn check_registration_text(
    name: Option<&str>,
    endpoint: Option<&str>,
    agent_type: &str,
    runtime_id: &str,
    version: &str,
    description: &str,
    limits: &Limits,
) -> Result<(), ErrorBody> {
    match name {
        Some(n) if !n.trim().is_empty() => check_len("name", n, limits.max_short_string)?,
        _ => return Err(invalid("name", "name is required")),
    }
    match endpoint {
        Some(e) if !e.trim().is_empty() => check_len("endpoint", e, limits.max_short_string)?,
        _ => return Err(invalid("endpoint", "endpoint is required")),
    }
    check_len("agent_type", agent_type, limits.max_short_string)?;
    check_len("runtime_id", runtime_id, limits.max_short_string)?;
    check_len("version", version, limits.max_short_string)?;
    check_len("description", description, limits.max_description)
}

fn check_capability_count(n: usize, limits: &Limits) -> Result<(), ErrorBody> {
    if n > limits.max_capabilities {
        return Err(invalid(
            "capabilities",
            format!(
                "{n} capabilities given; at most {} are allowed",
                limits.max_capabilities
            ),
        ));
    }
    Ok(())
}

/// Checks a cost estimate: a finite number >= 0, or text of at most
/// [`CostEstimate::MAX_TEXT_BYTES`] bytes.
pub fn check_cost(field: &str, cost: Option<&CostEstimate>) -> Result<(), ErrorBody> {
    match cost {
        Some(CostEstimate::Number(x)) if !x.is_finite() || *x < 0.0 => Err(invalid(
            field,
            format!("{field} must be a finite number >= 0 or a string, got {x}"),
        )),
        Some(CostEstimate::Text(t)) if t.len() > CostEstimate::MAX_TEXT_BYTES => Err(invalid(
            field,
            format!(
                "{field} is {} bytes long; at most {} are allowed",
                t.len(),
                CostEstimate::MAX_TEXT_BYTES
            ),
        )),
        _ => Ok(()),
    }
}

/// Parses an optional agent-supplied status name.
pub fn parse_status(field: &str, s: Option<&str>) -> Result<Option<AgentStatus>, ErrorBody> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<AgentStatus>()
            .map(Some)
            .map_err(|e| invalid(field, e.to_string())),
    }
}

/// Parses an agent id from a path or body.
pub fn parse_agent_id(field: &str, s: &str) -> Result<AgentId, ErrorBody> {
    AgentId::parse(s).map_err(|e| invalid(field, e.to_string()))
}

impl RegisterRequest {
    /// Checks everything that can be checked without the registry state.
    pub fn validate(&self, limits: &Limits) -> Result<(), ErrorBody> {
        if let Some(id) = &self.agent_id {
            parse_agent_id("agent_id", id)?;
        }
        check_registration_text(
            self.name.as_deref(),
            self.endpoint.as_deref(),
            &self.agent_type,
            &self.runtime_id,
            &self.version,
            &self.description,
            limits,
        )?;
        // The scheme rule holds at the edge, where requests arrive, and not
        // in apply: entries an earlier release accepted must replay alike.
        if let Some(e) = &self.endpoint {
            check_endpoint("endpoint", e, limits)?;
        }
        check_capability_count(self.capabilities.len(), limits)?;
        for (i, c) in self.capabilities.iter().enumerate() {
            // `null` never gets here: it reads as no parameters.
            let parameters = c.parameters.as_ref().map(|p| match p {
                serde_json::Value::Object(obj) => Ok(json_len(obj)),
                _ => Err(()),
            });
            check_capability(
                i,
                &c.name,
                &c.description,
                &c.tags,
                c.cost_estimate.as_ref(),
                parameters,
                limits,
            )?;
        }
        check_tags("tags", &self.tags, limits)?;
        if let Some(m) = &self.metadata {
            let Some(obj) = m.as_object() else {
                return Err(invalid("metadata", "metadata must be a JSON object"));
            };
            check_json_len("metadata", json_len(obj), limits)?;
        }
        check_unit("health_score", self.health_score)?;
        check_unit("load_factor", self.load_factor)?;
        if let Some(m) = &self.performance_metrics {
            check_metrics("performance_metrics", m, limits)?;
        }
        parse_status("status", self.status.as_deref())?;
        Ok(())
    }
}

impl RegisterCommand {
    /// Checks the command's content with the rules
    /// [`RegisterRequest::validate`] applies to the request it is made
    /// from (the field names are the request's). What only the request
    /// path decides (which statuses an agent may ask for, the lease
    /// durations against the node's election timeout) is left to
    /// [`crate::Command::check_forwarded`].
    pub fn check(&self, limits: &Limits) -> Result<(), ErrorBody> {
        check_registration_text(
            Some(&self.name),
            Some(&self.endpoint),
            &self.agent_type,
            &self.runtime_id,
            &self.version,
            &self.description,
            limits,
        )?;
        check_capability_count(self.capabilities.len(), limits)?;
        for (i, c) in self.capabilities.iter().enumerate() {
            check_capability(
                i,
                &c.name,
                &c.description,
                &c.tags,
                c.cost_estimate.as_ref(),
                Some(Ok(c.parameters.encoded_len())),
                limits,
            )?;
        }
        check_tags("tags", &self.tags, limits)?;
        check_json_len("metadata", self.metadata.encoded_len(), limits)?;
        check_unit("health_score", self.health_score)?;
        check_unit("load_factor", self.load_factor)?;
        if let Some(m) = &self.performance_metrics {
            check_metrics("performance_metrics", m, limits)?;
        }
        Ok(())
    }
}

impl crate::command::SetCardCommand {
    /// Checks what a card replacement carries with the rules of a
    /// registration (the fields mapped from the card), and the card with
    /// the state machine's own bound ([`crate::card::AgentCard::check_stored`]).
    pub fn check(&self, limits: &Limits) -> Result<(), ErrorBody> {
        check_registration_text(
            Some(&self.name),
            Some(&self.endpoint),
            "",
            "",
            &self.version,
            &self.description,
            limits,
        )?;
        check_capability_count(self.capabilities.len(), limits)?;
        for (i, c) in self.capabilities.iter().enumerate() {
            check_capability(
                i,
                &c.name,
                &c.description,
                &c.tags,
                c.cost_estimate.as_ref(),
                Some(Ok(c.parameters.encoded_len())),
                limits,
            )?;
        }
        self.card.check_stored("agent_card")
    }
}

impl HealthUpdateRequest {
    pub fn validate(&self, limits: &Limits) -> Result<(), ErrorBody> {
        check_unit("health_score", self.health_score)?;
        check_unit("load_factor", self.load_factor)?;
        check_metrics("metrics", &self.metrics, limits)?;
        if self.health_score.is_none() && self.load_factor.is_none() && self.metrics.is_empty() {
            return Err(invalid(
                "health_score",
                "give at least one of health_score, load_factor or metrics",
            ));
        }
        Ok(())
    }
}

impl ScalingPolicyRequest {
    /// Checks a policy: `1 <= max_agents <= 1,000,000`, `min_agents <=
    /// max_agents`, `0 <= low_load < high_load <= 1`, `min_health` in 0..1.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        const MAX_AGENTS: u32 = 1_000_000;
        if self.max_agents == 0 || self.max_agents > MAX_AGENTS {
            return Err(invalid(
                "max_agents",
                format!(
                    "max_agents must be between 1 and {MAX_AGENTS}, got {}",
                    self.max_agents
                ),
            ));
        }
        if self.min_agents > self.max_agents {
            return Err(invalid(
                "min_agents",
                format!(
                    "min_agents ({}) must not exceed max_agents ({})",
                    self.min_agents, self.max_agents
                ),
            ));
        }
        check_unit("high_load", Some(self.high_load))?;
        check_unit("low_load", Some(self.low_load))?;
        check_unit("min_health", Some(self.min_health))?;
        if self.low_load >= self.high_load {
            return Err(invalid(
                "low_load",
                format!(
                    "low_load ({}) must be below high_load ({})",
                    self.low_load, self.high_load
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a capability name given in a path (scaling policies).
pub fn check_capability_name(field: &str, name: &str, limits: &Limits) -> Result<(), ErrorBody> {
    if name.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    check_len(field, name, limits.max_short_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> RegisterRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn aliases_and_required_fields() {
        let r = req(r#"{"agent_name": "a", "base_url": "http://x"}"#);
        assert_eq!(r.name.as_deref(), Some("a"));
        assert_eq!(r.endpoint.as_deref(), Some("http://x"));
        assert!(r.validate(&Limits::default()).is_ok());
        let e = req(r#"{"endpoint": "http://x"}"#)
            .validate(&Limits::default())
            .unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("name"));
        let e = req(r#"{"name": "a"}"#)
            .validate(&Limits::default())
            .unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("endpoint"));
    }

    #[test]
    fn endpoints_are_absolute_urls_of_known_schemes() {
        let l = Limits::default();
        for ok in [
            "http://x",
            "https://a.example:8443/a2a",
            "grpc://10.0.0.1:50051",
            "grpcs://svc.internal",
            "ws://[::1]:9000/socket",
            "wss://h/x?y=1",
            " HTTP://Upper.case ",
        ] {
            assert!(check_endpoint("endpoint", ok, &l).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "e",
            "/relative/path",
            "file:///etc/passwd",
            "data:text/html,x",
            "ftp://h",
            "unix:/run/a.sock",
            "grpc:no-host",
            "http://",
        ] {
            let e = check_endpoint("endpoint", bad, &l).unwrap_err();
            assert_eq!(e.error.field.as_deref(), Some("endpoint"), "{bad}");
        }
        let long = format!("http://h/{}", "p".repeat(600));
        assert!(check_endpoint("endpoint", &long, &l).is_err());
    }

    #[test]
    fn cost_estimates_are_non_negative_numbers_or_bounded_text() {
        let l = Limits::default();
        let with_cost = |cost: &str| {
            req(&format!(
                r#"{{"name":"a","endpoint":"http://e","capabilities":[{{"name":"c","cost_estimate":{cost}}}]}}"#
            ))
        };
        let longest = format!("\"{}\"", "x".repeat(CostEstimate::MAX_TEXT_BYTES));
        for ok in [
            "0",
            "0.02",
            "1e300",
            "null",
            "\"\"",
            "\"~100 tokens\"",
            &longest,
        ] {
            assert!(with_cost(ok).validate(&l).is_ok(), "{ok}");
        }
        let too_long = format!("\"{}\"", "x".repeat(CostEstimate::MAX_TEXT_BYTES + 1));
        for bad in ["-1", "-0.001", too_long.as_str()] {
            let e = with_cost(bad).validate(&l).unwrap_err();
            assert_eq!(
                e.error.field.as_deref(),
                Some("capabilities[0].cost_estimate"),
                "{bad}"
            );
        }
        // Not from JSON, but a command built in code must not carry them.
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(
                check_cost("c", Some(&CostEstimate::Number(x))).is_err(),
                "{x}"
            );
        }
        assert!(check_cost("c", None).is_ok());
    }

    #[test]
    fn capability_parameters_are_a_bounded_object() {
        let l = Limits::default();
        let with = |params: &str| {
            req(&format!(
                r#"{{"name":"a","endpoint":"http://e","capabilities":[{{"name":"c","parameters":{params}}}]}}"#
            ))
        };
        for ok in ["null", "{}", r#"{"language": "str"}"#] {
            assert!(with(ok).validate(&l).is_ok(), "{ok}");
        }
        // 16 KiB of JSON is the most: `{"k":"…"}` is 8 bytes around the text.
        let at_limit = format!(r#"{{"k":"{}"}}"#, "x".repeat(l.max_metadata_bytes - 8));
        assert!(with(&at_limit).validate(&l).is_ok());
        let over = format!(r#"{{"k":"{}"}}"#, "x".repeat(l.max_metadata_bytes - 7));
        for bad in ["[1]", "\"s\"", "5", over.as_str()] {
            let e = with(bad).validate(&l).unwrap_err();
            assert_eq!(
                e.error.field.as_deref(),
                Some("capabilities[0].parameters"),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let l = Limits::default();
        let caps: Vec<String> = (0..129).map(|i| format!(r#"{{"name":"c{i}"}}"#)).collect();
        let r = req(&format!(
            r#"{{"name":"a","endpoint":"http://e","capabilities":[{}]}}"#,
            caps.join(",")
        ));
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("capabilities")
        );
        let tags: Vec<String> = (0..65).map(|i| format!("\"t{i}\"")).collect();
        let r = req(&format!(
            r#"{{"name":"a","endpoint":"http://e","tags":[{}]}}"#,
            tags.join(",")
        ));
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("tags")
        );
        let big = "x".repeat(17 * 1024);
        let r = req(&format!(
            r#"{{"name":"a","endpoint":"http://e","metadata":{{"k":"{big}"}}}}"#
        ));
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("metadata")
        );
        let r = req(r#"{"name":"a","endpoint":"http://e","metadata":[1]}"#);
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("metadata")
        );
        let r = req(r#"{"name":"a","endpoint":"http://e","health_score":1.5}"#);
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("health_score")
        );
        let r = req(r#"{"name":"a","endpoint":"http://e","load_factor":-0.1}"#);
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("load_factor")
        );
        let r = req(r#"{"name":"a","endpoint":"http://e","status":"sleeping"}"#);
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("status")
        );
        let r = req(r#"{"agent_id":"a b","name":"a","endpoint":"http://e"}"#);
        assert_eq!(
            r.validate(&l).unwrap_err().error.field.as_deref(),
            Some("agent_id")
        );
    }
}
