//! A2A Agent Cards: what the registry accepts, how it keeps a card, and
//! how a card maps onto an agent record.
//!
//! - Accepted shapes: A2A 1.0 (`supportedInterfaces[]`) and the cards of
//!   the 0.2/0.3 era (a top-level `url`, `preferredTransport`,
//!   `protocolVersion`, `additionalInterfaces[]`). Both are read through
//!   one normalized view ([`CardView`]): a 0.3 card's top-level `url`
//!   becomes its first interface.
//! - Validation ([`AgentCard::from_value`]) names the JSON path of the first
//!   problem (`skills[2].id is required`) and bounds the size of the card.
//!   It runs at the edge only: the state machine checks what its own
//!   invariants need (the size ceiling, a JSON object), so that entries an
//!   earlier release accepted replay alike whatever the edge's rules
//!   become.
//! - Storage ([`AgentCard`]): the card as given, written as canonical JSON
//!   (object keys sorted by their UTF-8 bytes, no insignificant white
//!   space), shared behind an `Arc` so a record's clone does not copy it.
//!   Its strong ETag is the SHA-256 of those bytes. The registry never
//!   follows a URL of a card: it is data, not a place to fetch.
//! - Mapping ([`CardView::capabilities`] and the other accessors): done
//!   once, where a request arrives; each skill becomes a capability, the
//!   first interface's URL the endpoint.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::agent::{Capability, Metadata};
use crate::error::{ErrorBody, ErrorCode};
use crate::limits::Limits;

/// The size bound of a card by default (`--max-card-bytes`), in bytes of
/// canonical JSON.
pub const DEFAULT_MAX_CARD_BYTES: usize = 64 * 1024;

/// The largest `--max-card-bytes` a node accepts, and the bound the state
/// machine holds every card to: a node configured with a larger bound than
/// its peers still writes entries every replica applies.
pub const MAX_CARD_BYTES_CEILING: usize = 1024 * 1024;

/// Most entries of a list inside a card (interfaces, media types, tags,
/// examples, ...).
pub const MAX_CARD_LIST: usize = 64;

/// The protocol bindings A2A defines. Others are accepted as given (the
/// field is open-ended); discovery matches bindings case-insensitively.
pub const CORE_BINDINGS: [&str; 3] = ["JSONRPC", "GRPC", "HTTP+JSON"];

/// The binding of a 0.2/0.3 card's top-level `url` when it names no
/// `preferredTransport`.
pub const LEGACY_DEFAULT_BINDING: &str = "JSONRPC";

/// Response header of `GET /v1/agents/{id}/agent-card.json`: the agent's
/// status on the liveness ladder when the node answered.
pub const HEADER_AGENT_STATUS: &str = "x-registry-agent-status";

/// Whether an agent in `status` has its card served and listed by default:
/// every status but `offline` and `suspended` (those need
/// `include_inactive=true`, or `status=` in a listing).
pub fn card_is_live(status: crate::AgentStatus) -> bool {
    !matches!(
        status,
        crate::AgentStatus::Offline | crate::AgentStatus::Suspended
    )
}

/// Why a card was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardError {
    /// Larger than the bound (413 `payload_too_large`).
    TooLarge { size: usize, max: usize },
    /// A problem at a JSON path of the card (400 `invalid_argument`).
    Invalid { path: String, message: String },
}

impl CardError {
    fn at(path: &str, message: impl Into<String>) -> CardError {
        CardError::Invalid {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// The wire error, its field the card's path under `prefix` (the body
    /// field holding the card, `agent_card`; empty when the body is the
    /// card).
    pub fn into_error(self, prefix: &str) -> ErrorBody {
        let join = |p: &str| match (prefix.is_empty(), p.is_empty()) {
            (true, _) => p.to_string(),
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{p}"),
        };
        match self {
            CardError::TooLarge { size, max } => ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the agent card is {size} bytes as canonical JSON; at most {max} are allowed (--max-card-bytes)"
                ),
            )
            .with_field(join("")),
            CardError::Invalid { path, message } => {
                let field = join(&path);
                ErrorBody::new(ErrorCode::InvalidArgument, message).with_field(if field.is_empty() {
                    "agent_card".to_string()
                } else {
                    field
                })
            }
        }
    }
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardError::TooLarge { size, max } => {
                write!(f, "the card is {size} bytes; at most {max} are allowed")
            }
            CardError::Invalid { message, .. } => f.write_str(message),
        }
    }
}

// ---------------------------------------------------------------------------
// Canonical JSON

/// A JSON value written canonically: object keys sorted by their UTF-8
/// bytes at every level, whatever order the map keeps them in (serde_json's
/// `preserve_order` feature, if another crate turns it on, must not change
/// the stored bytes or the ETag).
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Canonical(v))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Canonical(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// The canonical JSON text of a value: keys sorted by their UTF-8 bytes,
/// compact, numbers as serde_json writes them.
pub fn canonical_json(v: &Value) -> String {
    // Writing a `Value` to a `String` cannot fail (its keys are strings).
    serde_json::to_string(&Canonical(v)).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Media types

/// A media type as the registry compares it: the essence (`type/subtype`,
/// parameters dropped), lower case; `*` alone is `*/*`. Text that is not
/// a media type (older cards say `text`) is kept trimmed and lower case.
pub fn normalize_media_type(s: &str) -> String {
    let s = s.trim();
    if s == "*" {
        return "*/*".to_string();
    }
    match s.parse::<mime::Mime>() {
        Ok(m) => m.essence_str().to_ascii_lowercase(),
        Err(_) => s
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_lowercase(),
    }
}

/// The type of a normalized media type (`text` of `text/plain`; the whole
/// text when it has no `/`).
pub fn media_major(m: &str) -> &str {
    m.split_once('/').map_or(m, |(major, _)| major)
}

/// Whether an agent that declares media type `declared` serves a caller
/// asking for `wanted` (both normalized). Wildcards count both ways: `*/*`
/// on either side matches every type, `text/*` on either side every
/// `text/...`.
pub fn media_type_matches(declared: &str, wanted: &str) -> bool {
    declared == wanted
        || declared == "*/*"
        || wanted == "*/*"
        || (declared.ends_with("/*") && media_major(declared) == media_major(wanted))
        || (wanted.ends_with("/*") && media_major(declared) == media_major(wanted))
}

/// A protocol binding as discovery compares it: trimmed, upper case.
pub fn normalize_binding(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

// ---------------------------------------------------------------------------
// The normalized view

/// Which generation of the A2A card a card is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CardShape {
    /// A2A 1.0: `supportedInterfaces[]`.
    #[default]
    V1,
    /// A2A 0.2/0.3: a top-level `url` (with `preferredTransport`,
    /// `protocolVersion`, `additionalInterfaces[]`).
    Legacy,
}

/// One interface of an agent: where and how it is reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardInterface {
    /// Absolute http(s) URL.
    pub url: String,
    /// `JSONRPC`, `GRPC`, `HTTP+JSON` or another binding, as given.
    pub binding: String,
    /// The A2A version spoken there ("1.0", "0.3.0"); empty when a 0.2
    /// card named none.
    pub protocol_version: String,
    /// The tenant to name in requests, when the card gives one.
    pub tenant: Option<String>,
}

/// One skill of a card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardSkill {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub examples: Vec<String>,
    /// The skill's own input media types; `None` (or empty): the card's
    /// defaults.
    pub input_modes: Option<Vec<String>>,
    /// The skill's own output media types; `None` (or empty): the card's
    /// defaults.
    pub output_modes: Option<Vec<String>>,
}

/// A card read through one shape whatever its generation: what the
/// registry maps and indexes. Derived from the stored card; never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardView {
    pub shape: CardShape,
    pub name: String,
    pub description: String,
    pub version: String,
    /// In the card's order of preference; a 0.3 card's top-level `url`
    /// first.
    pub interfaces: Vec<CardInterface>,
    pub default_input_modes: Vec<String>,
    pub default_output_modes: Vec<String>,
    pub skills: Vec<CardSkill>,
    /// `provider.organization`.
    pub provider_organization: Option<String>,
}

fn str_of(m: &Map<String, Value>, key: &str) -> String {
    m.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn opt_str_of(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

fn strs_of(v: Option<&Value>) -> Option<Vec<String>> {
    Some(
        v?.as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

impl CardView {
    /// The view of a card. Total: what is missing or of another type reads
    /// as empty (a stored card was validated when it arrived).
    pub fn of(card: &Value) -> CardView {
        let Some(m) = card.as_object() else {
            return CardView::default();
        };
        let legacy = !m.contains_key("supportedInterfaces") && m.contains_key("url");
        let mut interfaces = Vec::new();
        if legacy {
            let version = str_of(m, "protocolVersion");
            let main = CardInterface {
                url: str_of(m, "url"),
                binding: opt_str_of(m, "preferredTransport")
                    .unwrap_or_else(|| LEGACY_DEFAULT_BINDING.to_string()),
                protocol_version: version.clone(),
                tenant: None,
            };
            interfaces.push(main);
            for i in m
                .get("additionalInterfaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                let extra = CardInterface {
                    url: str_of(i, "url"),
                    binding: str_of(i, "transport"),
                    protocol_version: version.clone(),
                    tenant: None,
                };
                // 0.3 lists the main interface among the additional ones too.
                if !interfaces
                    .iter()
                    .any(|x| x.url == extra.url && x.binding == extra.binding)
                {
                    interfaces.push(extra);
                }
            }
        } else {
            for i in m
                .get("supportedInterfaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                interfaces.push(CardInterface {
                    url: str_of(i, "url"),
                    binding: str_of(i, "protocolBinding"),
                    protocol_version: str_of(i, "protocolVersion"),
                    tenant: opt_str_of(i, "tenant"),
                });
            }
        }
        let skills = m
            .get("skills")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|s| CardSkill {
                id: str_of(s, "id"),
                name: str_of(s, "name"),
                description: str_of(s, "description"),
                tags: strs_of(s.get("tags")).unwrap_or_default(),
                examples: strs_of(s.get("examples")).unwrap_or_default(),
                input_modes: strs_of(s.get("inputModes")),
                output_modes: strs_of(s.get("outputModes")),
            })
            .collect();
        CardView {
            shape: if legacy {
                CardShape::Legacy
            } else {
                CardShape::V1
            },
            name: str_of(m, "name"),
            description: str_of(m, "description"),
            version: str_of(m, "version"),
            interfaces,
            default_input_modes: strs_of(m.get("defaultInputModes")).unwrap_or_default(),
            default_output_modes: strs_of(m.get("defaultOutputModes")).unwrap_or_default(),
            skills,
            provider_organization: m
                .get("provider")
                .and_then(Value::as_object)
                .and_then(|p| opt_str_of(p, "organization")),
        }
    }

    /// The URL of the preferred (first) interface: the agent's endpoint.
    pub fn endpoint(&self) -> Option<&str> {
        self.interfaces.first().map(|i| i.url.as_str())
    }

    /// The A2A version of the preferred interface.
    pub fn protocol_version(&self) -> Option<&str> {
        self.interfaces
            .first()
            .map(|i| i.protocol_version.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The skills as capabilities, in the card's order: name, description
    /// and tags carry over (trimmed); no cost estimate, no parameters.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.skills
            .iter()
            .map(|s| Capability {
                name: s.name.trim().to_string(),
                description: s.description.clone(),
                tags: s.tags.iter().map(|t| t.trim().to_string()).collect(),
                cost_estimate: None,
                parameters: Metadata::default(),
            })
            .collect()
    }

    /// Fills what a registration leaves out from this card (the mapping
    /// docs/api.md tabulates, done once at the edge): `name`, `endpoint`
    /// (the first interface's URL), `version`, `description` and
    /// `capabilities` (one per skill). A field the request gives (present,
    /// or a non-empty string or list) wins. The server maps a registration
    /// with this, and so does a client that checks a card before sending it
    /// (the sidecar), so both read a card alike.
    pub fn fill_registration(&self, req: &mut crate::api::RegisterRequest) {
        if req.name.is_none() {
            req.name = Some(self.name.trim().to_string());
        }
        if req.endpoint.is_none() {
            req.endpoint = self.endpoint().map(str::to_string);
        }
        if req.version.is_empty() {
            req.version = self.version.clone();
        }
        if req.description.is_empty() {
            req.description = self.description.clone();
        }
        if req.capabilities.is_empty() {
            req.capabilities = self
                .capabilities()
                .into_iter()
                .map(|c| crate::api::CapabilityInput {
                    name: c.name,
                    description: c.description,
                    tags: c.tags,
                    cost_estimate: None,
                    parameters: None,
                })
                .collect();
        }
    }

    /// The media types the agent accepts, normalized, sorted, without
    /// duplicates: each skill's own `inputModes`, or the card's defaults
    /// for a skill without them (and for a card without skills).
    pub fn input_modes(&self) -> Vec<String> {
        Self::modes(
            &self.default_input_modes,
            self.skills.iter().map(|s| s.input_modes.as_deref()),
        )
    }

    /// The media types the agent produces, as [`CardView::input_modes`].
    pub fn output_modes(&self) -> Vec<String> {
        Self::modes(
            &self.default_output_modes,
            self.skills.iter().map(|s| s.output_modes.as_deref()),
        )
    }

    fn modes<'a>(
        defaults: &'a [String],
        skills: impl ExactSizeIterator<Item = Option<&'a [String]>>,
    ) -> Vec<String> {
        let mut out = BTreeSet::new();
        let mut use_defaults = skills.len() == 0;
        for own in skills {
            match own {
                Some(list) if !list.is_empty() => {
                    out.extend(list.iter().map(|m| normalize_media_type(m)));
                }
                _ => use_defaults = true,
            }
        }
        if use_defaults {
            out.extend(defaults.iter().map(|m| normalize_media_type(m)));
        }
        out.into_iter().filter(|m| !m.is_empty()).collect()
    }

    /// The protocol bindings of the interfaces, normalized, sorted, without
    /// duplicates.
    pub fn bindings(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .interfaces
            .iter()
            .map(|i| normalize_binding(&i.binding))
            .filter(|b| !b.is_empty())
            .collect();
        set.into_iter().collect()
    }

    /// The skill ids, trimmed, in the card's order.
    pub fn skill_ids(&self) -> impl Iterator<Item = &str> {
        self.skills.iter().map(|s| s.id.trim())
    }
}

// ---------------------------------------------------------------------------
// Validation

type Obj = Map<String, Value>;

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The checks of one card, with the limits that bound what it maps to.
struct Checker<'l> {
    limits: &'l Limits,
}

impl Checker<'_> {
    fn object<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Obj, CardError> {
        v.as_object().ok_or_else(|| {
            CardError::at(
                path,
                format!(
                    "{} must be an object, not {}",
                    if path.is_empty() {
                        "the agent card"
                    } else {
                        path
                    },
                    kind_of(v)
                ),
            )
        })
    }

    /// A string at `key`: `Ok(None)` when absent and not `required`.
    fn string<'v>(
        &self,
        m: &'v Obj,
        prefix: &str,
        key: &str,
        required: bool,
        not_blank: bool,
        max: usize,
    ) -> Result<Option<&'v str>, CardError> {
        let path = join(prefix, key);
        match m.get(key) {
            None if required => Err(CardError::at(&path, format!("{path} is required"))),
            None => Ok(None),
            Some(Value::String(s)) => {
                if not_blank && s.trim().is_empty() {
                    return Err(CardError::at(&path, format!("{path} must not be blank")));
                }
                if s.len() > max {
                    return Err(CardError::at(
                        &path,
                        format!(
                            "{path} is {} bytes long; at most {max} are allowed",
                            s.len()
                        ),
                    ));
                }
                Ok(Some(s))
            }
            Some(v) => Err(CardError::at(
                &path,
                format!("{path} must be a string, not {}", kind_of(v)),
            )),
        }
    }

    /// A list of strings at `key` (each not blank, at most `max` bytes).
    fn strings<'v>(
        &self,
        m: &'v Obj,
        prefix: &str,
        key: &str,
        required: bool,
        max: usize,
    ) -> Result<Option<Vec<&'v str>>, CardError> {
        let path = join(prefix, key);
        let list = match m.get(key) {
            None if required => return Err(CardError::at(&path, format!("{path} is required"))),
            None => return Ok(None),
            Some(Value::Array(a)) => a,
            Some(v) => {
                return Err(CardError::at(
                    &path,
                    format!("{path} must be an array of strings, not {}", kind_of(v)),
                ))
            }
        };
        if list.len() > MAX_CARD_LIST {
            return Err(CardError::at(
                &path,
                format!(
                    "{path} has {} entries; at most {MAX_CARD_LIST} are allowed",
                    list.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match v {
                Value::String(s) if s.trim().is_empty() => {
                    return Err(CardError::at(&p, format!("{p} must not be blank")))
                }
                Value::String(s) if s.len() > max => {
                    return Err(CardError::at(
                        &p,
                        format!("{p} is {} bytes long; at most {max} are allowed", s.len()),
                    ))
                }
                Value::String(s) => out.push(s.as_str()),
                v => {
                    return Err(CardError::at(
                        &p,
                        format!("{p} must be a string, not {}", kind_of(v)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    fn boolean(&self, m: &Obj, prefix: &str, key: &str) -> Result<(), CardError> {
        match m.get(key) {
            None | Some(Value::Bool(_)) => Ok(()),
            Some(v) => {
                let path = join(prefix, key);
                Err(CardError::at(
                    &path,
                    format!("{path} must be a boolean, not {}", kind_of(v)),
                ))
            }
        }
    }

    fn array<'v>(
        &self,
        m: &'v Obj,
        prefix: &str,
        key: &str,
    ) -> Result<Option<&'v [Value]>, CardError> {
        match m.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => {
                let path = join(prefix, key);
                Err(CardError::at(
                    &path,
                    format!("{path} must be an array, not {}", kind_of(v)),
                ))
            }
        }
    }

    /// An absolute URL of one of `schemes`, with a host: the `url` crate
    /// parses it.
    fn url(&self, path: &str, s: &str, schemes: &[&str]) -> Result<(), CardError> {
        let what = if schemes == ["http", "https"] {
            "an absolute http(s) URL".to_string()
        } else {
            format!("an absolute URL ({})", schemes.join(", "))
        };
        let url = url::Url::parse(s.trim())
            .map_err(|e| CardError::at(path, format!("{path} must be {what}: {e}")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(CardError::at(
                path,
                format!("{path} must be {what}, not a {} URL", url.scheme()),
            ));
        }
        if url.scheme() != "data" && url.host_str().is_none_or(str::is_empty) {
            return Err(CardError::at(
                path,
                format!("{path} must be {what} with a host"),
            ));
        }
        Ok(())
    }

    fn interface_url(&self, m: &Obj, prefix: &str, key: &str) -> Result<(), CardError> {
        let url = self.string(m, prefix, key, true, true, self.limits.max_short_string)?;
        self.url(
            &join(prefix, key),
            url.unwrap_or_default(),
            &["http", "https"],
        )
    }

    fn binding(&self, m: &Obj, prefix: &str, key: &str, required: bool) -> Result<(), CardError> {
        if let Some(b) = self.string(m, prefix, key, required, true, 64)? {
            if b.trim().chars().any(char::is_whitespace) {
                let path = join(prefix, key);
                return Err(CardError::at(
                    &path,
                    format!(
                        "{path} must be a protocol binding such as {}, not '{b}'",
                        CORE_BINDINGS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn card(&self, v: &Value) -> Result<(), CardError> {
        let l = self.limits;
        let m = self.object(v, "")?;
        self.string(m, "", "name", true, true, l.max_short_string)?;
        self.string(m, "", "description", true, false, l.max_description)?;
        self.string(m, "", "version", true, false, l.max_short_string)?;
        if m.contains_key("supportedInterfaces") || !m.contains_key("url") {
            self.interfaces_v1(m)?;
        } else {
            self.interfaces_legacy(m)?;
        }
        let caps = m
            .get("capabilities")
            .ok_or_else(|| CardError::at("capabilities", "capabilities is required"))?;
        let caps = self.object(caps, "capabilities")?;
        for key in [
            "streaming",
            "pushNotifications",
            "extendedAgentCard",
            "stateTransitionHistory",
        ] {
            self.boolean(caps, "capabilities", key)?;
        }
        if let Some(ext) = self.array(caps, "capabilities", "extensions")? {
            for (i, e) in ext.iter().enumerate() {
                let p = format!("capabilities.extensions[{i}]");
                let e = self.object(e, &p)?;
                self.string(e, &p, "uri", true, true, l.max_short_string)?;
            }
        }
        self.modes(m, "", "defaultInputModes", true)?;
        self.modes(m, "", "defaultOutputModes", true)?;
        self.skills(m)?;
        if let Some(p) = m.get("provider") {
            let p = self.object(p, "provider")?;
            self.string(
                p,
                "provider",
                "organization",
                true,
                true,
                l.max_short_string,
            )?;
            if let Some(u) = self.string(p, "provider", "url", false, false, l.max_short_string)? {
                self.url("provider.url", u, &["http", "https"])?;
            }
        }
        if let Some(u) = self.string(m, "", "documentationUrl", false, false, 2048)? {
            self.url("documentationUrl", u, &["http", "https"])?;
        }
        if let Some(u) = self.string(m, "", "iconUrl", false, false, 2048)? {
            self.url("iconUrl", u, &["http", "https", "data"])?;
        }
        if let Some(s) = m.get("securitySchemes") {
            self.object(s, "securitySchemes")?;
        }
        self.array(m, "", "securityRequirements")?;
        self.array(m, "", "security")?;
        if let Some(sigs) = self.array(m, "", "signatures")? {
            for (i, s) in sigs.iter().enumerate() {
                let p = format!("signatures[{i}]");
                let s = self.object(s, &p)?;
                self.string(s, &p, "protected", true, true, usize::MAX)?;
                self.string(s, &p, "signature", true, true, usize::MAX)?;
            }
        }
        Ok(())
    }

    fn interfaces_v1(&self, m: &Obj) -> Result<(), CardError> {
        let Some(list) = self.array(m, "", "supportedInterfaces")? else {
            return Err(CardError::at(
                "supportedInterfaces",
                "supportedInterfaces is required (or, in a card of A2A 0.2/0.3, url)",
            ));
        };
        if list.is_empty() {
            return Err(CardError::at(
                "supportedInterfaces",
                "supportedInterfaces must list at least one interface",
            ));
        }
        if list.len() > MAX_CARD_LIST {
            return Err(CardError::at(
                "supportedInterfaces",
                format!(
                    "supportedInterfaces has {} entries; at most {MAX_CARD_LIST} are allowed",
                    list.len()
                ),
            ));
        }
        for (i, v) in list.iter().enumerate() {
            let p = format!("supportedInterfaces[{i}]");
            let iface = self.object(v, &p)?;
            self.interface_url(iface, &p, "url")?;
            self.binding(iface, &p, "protocolBinding", true)?;
            self.string(iface, &p, "protocolVersion", true, true, 64)?;
            self.string(
                iface,
                &p,
                "tenant",
                false,
                false,
                self.limits.max_short_string,
            )?;
        }
        Ok(())
    }

    fn interfaces_legacy(&self, m: &Obj) -> Result<(), CardError> {
        self.interface_url(m, "", "url")?;
        self.binding(m, "", "preferredTransport", false)?;
        self.string(m, "", "protocolVersion", false, true, 64)?;
        if let Some(list) = self.array(m, "", "additionalInterfaces")? {
            if list.len() > MAX_CARD_LIST {
                return Err(CardError::at(
                    "additionalInterfaces",
                    format!(
                        "additionalInterfaces has {} entries; at most {MAX_CARD_LIST} are allowed",
                        list.len()
                    ),
                ));
            }
            for (i, v) in list.iter().enumerate() {
                let p = format!("additionalInterfaces[{i}]");
                let iface = self.object(v, &p)?;
                self.interface_url(iface, &p, "url")?;
                self.binding(iface, &p, "transport", true)?;
            }
        }
        Ok(())
    }

    fn modes(&self, m: &Obj, prefix: &str, key: &str, required: bool) -> Result<(), CardError> {
        self.strings(m, prefix, key, required, self.limits.max_short_string)
            .map(|_| ())
    }

    fn skills(&self, m: &Obj) -> Result<(), CardError> {
        let l = self.limits;
        let Some(list) = self.array(m, "", "skills")? else {
            return Err(CardError::at("skills", "skills is required"));
        };
        if list.len() > l.max_capabilities {
            return Err(CardError::at(
                "skills",
                format!(
                    "skills has {} entries; at most {} are allowed (each becomes a capability)",
                    list.len(),
                    l.max_capabilities
                ),
            ));
        }
        let mut seen: Vec<(&str, usize)> = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let p = format!("skills[{i}]");
            let s = self.object(v, &p)?;
            let id = self
                .string(s, &p, "id", true, true, l.max_short_string)?
                .unwrap_or_default()
                .trim();
            if let Some((_, j)) = seen.iter().find(|(x, _)| *x == id) {
                return Err(CardError::at(
                    &format!("{p}.id"),
                    format!("{p}.id '{id}' repeats skills[{j}].id: skill ids must be unique"),
                ));
            }
            seen.push((id, i));
            self.string(s, &p, "name", true, true, l.max_short_string)?;
            self.string(s, &p, "description", true, false, l.max_description)?;
            let tags = self
                .strings(s, &p, "tags", true, l.max_short_string)?
                .unwrap_or_default();
            if tags.len() > l.max_tags {
                return Err(CardError::at(
                    &format!("{p}.tags"),
                    format!(
                        "{p}.tags has {} entries; at most {} are allowed",
                        tags.len(),
                        l.max_tags
                    ),
                ));
            }
            self.strings(s, &p, "examples", false, l.max_description)?;
            self.modes(s, &p, "inputModes", false)?;
            self.modes(s, &p, "outputModes", false)?;
            self.array(s, &p, "securityRequirements")?;
            self.array(s, &p, "security")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The stored card

/// An agent's A2A card as the registry keeps it: canonical JSON, its ETag
/// and its normalized view, shared (cloning is a reference count).
///
/// In JSON it is the card object itself; in the binary (bincode) encoding of
/// log entries and snapshots, the canonical JSON text.
#[derive(Clone)]
pub struct AgentCard(Arc<StoredCard>);

struct StoredCard {
    json: Box<str>,
    etag: Box<str>,
    view: CardView,
}

impl AgentCard {
    /// Validates a card as it arrives (either shape) and keeps it: the
    /// first problem names its JSON path; a card whose canonical JSON is
    /// larger than `max_bytes` is [`CardError::TooLarge`]. `limits` bound
    /// what the card maps to (skill names, descriptions, tags, the endpoint).
    pub fn from_value(
        v: &Value,
        limits: &Limits,
        max_bytes: usize,
    ) -> Result<AgentCard, CardError> {
        let json = canonical_json(v);
        if json.len() > max_bytes {
            return Err(CardError::TooLarge {
                size: json.len(),
                max: max_bytes,
            });
        }
        Checker { limits }.card(v)?;
        Ok(AgentCard::stored(json, v))
    }

    fn stored(json: String, v: &Value) -> AgentCard {
        let etag = {
            let digest = Sha256::digest(json.as_bytes());
            format!("\"{}\"", hex::encode(&digest[..16]))
        };
        AgentCard(Arc::new(StoredCard {
            json: json.into_boxed_str(),
            etag: etag.into_boxed_str(),
            view: CardView::of(v),
        }))
    }

    /// A card from stored canonical text (a log entry, a snapshot), without
    /// the edge's validation: it must be a JSON object. Text that is not
    /// canonical is made so.
    pub fn from_stored(text: &str) -> Result<AgentCard, serde_json::Error> {
        let v: Value = serde_json::from_str(text)?;
        if !v.is_object() {
            return Err(serde_json::Error::custom(
                "an agent card must be a JSON object",
            ));
        }
        let json = canonical_json(&v);
        Ok(AgentCard::stored(json, &v))
    }

    /// The canonical JSON text.
    pub fn json(&self) -> &str {
        &self.0.json
    }

    /// Bytes of the canonical JSON text.
    pub fn len(&self) -> usize {
        self.0.json.len()
    }

    /// Never true: a card is at least `{}`.
    pub fn is_empty(&self) -> bool {
        self.0.json.is_empty()
    }

    /// The strong ETag, quoted (`"3f2a..."`): the first 128 bits of the
    /// SHA-256 of the canonical JSON, in hex.
    pub fn etag(&self) -> &str {
        &self.0.etag
    }

    /// The normalized view (both shapes read alike).
    pub fn view(&self) -> &CardView {
        &self.0.view
    }

    /// The card as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0.json).unwrap_or(Value::Null)
    }

    /// What the state machine holds every card to, whatever the edge's
    /// rules: at most [`MAX_CARD_BYTES_CEILING`] bytes.
    pub fn check_stored(&self, field: &str) -> Result<(), ErrorBody> {
        if self.len() > MAX_CARD_BYTES_CEILING {
            return Err(crate::limits::invalid(
                field,
                format!(
                    "the agent card is {} bytes; no card may exceed {MAX_CARD_BYTES_CEILING}",
                    self.len()
                ),
            ));
        }
        Ok(())
    }
}

impl PartialEq for AgentCard {
    fn eq(&self, other: &Self) -> bool {
        self.0.json == other.0.json
    }
}

impl fmt::Debug for AgentCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCard")
            .field("etag", &self.etag())
            .field("bytes", &self.len())
            .finish()
    }
}

impl Serialize for AgentCard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            // The canonical text is valid JSON: written as it is kept.
            match serde_json::value::RawValue::from_string(self.0.json.to_string()) {
                Ok(raw) => raw.serialize(s),
                Err(e) => Err(serde::ser::Error::custom(e)),
            }
        } else {
            s.serialize_str(&self.0.json)
        }
    }
}

impl<'de> Deserialize<'de> for AgentCard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let v = Value::deserialize(d)?;
            if !v.is_object() {
                return Err(D::Error::custom("an agent card must be a JSON object"));
            }
            Ok(AgentCard::stored(canonical_json(&v), &v))
        } else {
            let text = String::deserialize(d)?;
            AgentCard::from_stored(&text).map_err(D::Error::custom)
        }
    }
}

/// Any JSON object: an A2A Agent Card.
impl utoipa::PartialSchema for AgentCard {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some(
                "An A2A Agent Card (A2A 1.0, or 0.2/0.3 with a top-level `url`), kept verbatim \
                 as canonical JSON (keys sorted, no white space); at most 64 KiB by default \
                 (`--max-card-bytes`). See docs/api.md, Agent Cards.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for AgentCard {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn card_v1() -> Value {
        json!({
            "name": "Recipe Agent",
            "description": "Finds recipes",
            "version": "1.2.0",
            "supportedInterfaces": [
                {"url": "https://recipes.example.com/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "https://recipes.example.com/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0", "tenant": "t1"}
            ],
            "capabilities": {"streaming": true, "pushNotifications": false, "extensions": []},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain", "application/json"],
            "provider": {"organization": "Example Org", "url": "https://example.com"},
            "skills": [
                {"id": "find-recipe", "name": "Find recipe", "description": "Finds a recipe",
                 "tags": ["cooking", " food "], "examples": ["I need a vegan lasagne"]},
                {"id": "plan-menu", "name": "Plan menu", "description": "Plans a week",
                 "tags": ["planning"], "inputModes": ["application/json; charset=utf-8"], "outputModes": ["image/*"]}
            ],
            "x-vendor": {"b": 1, "a": [3, {"z": null, "y": true}]}
        })
    }

    pub(crate) fn card_v03() -> Value {
        json!({
            "name": "Legacy Agent",
            "description": "An agent of the 0.3 era",
            "version": "0.9",
            "url": "http://legacy.example.com:8080/",
            "preferredTransport": "JSONRPC",
            "protocolVersion": "0.3.0",
            "additionalInterfaces": [
                {"url": "http://legacy.example.com:8080/", "transport": "JSONRPC"},
                {"url": "http://legacy.example.com:8081/", "transport": "HTTP+JSON"}
            ],
            "capabilities": {},
            "defaultInputModes": ["text"],
            "defaultOutputModes": ["text"],
            "skills": []
        })
    }

    fn refused(v: Value) -> (String, String) {
        match AgentCard::from_value(&v, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES) {
            Err(CardError::Invalid { path, message }) => (path, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": [{"d": 1, "c": 2}], "é": 0, "Z": null});
        assert_eq!(
            canonical_json(&v),
            r#"{"Z":null,"a":[{"c":2,"d":1}],"b":1,"é":0}"#
        );
    }

    #[test]
    fn a_registration_takes_from_the_card_only_what_it_leaves_out() {
        let c =
            AgentCard::from_value(&card_v1(), &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
        let mut empty = crate::api::RegisterRequest::default();
        c.view().fill_registration(&mut empty);
        assert_eq!(empty.name.as_deref(), Some("Recipe Agent"));
        assert_eq!(
            empty.endpoint.as_deref(),
            Some("https://recipes.example.com/a2a")
        );
        assert_eq!(empty.version, c.view().version);
        assert_eq!(empty.description, c.view().description);
        let names: Vec<&str> = empty.capabilities.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Find recipe", "Plan menu"]);
        assert_eq!(empty.capabilities[0].tags, ["cooking", "food"]);
        assert_eq!(empty.capabilities[0].description, "Finds a recipe");

        let mut given = crate::api::RegisterRequest {
            name: Some("mine".into()),
            endpoint: Some("http://mine:1/".into()),
            version: "7".into(),
            description: "my own".into(),
            capabilities: vec![crate::api::CapabilityInput {
                name: "own".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let before = given.clone();
        c.view().fill_registration(&mut given);
        assert_eq!(given, before, "every field the request gives wins");
    }

    #[test]
    fn a_v1_card_maps_onto_a_record() {
        let c =
            AgentCard::from_value(&card_v1(), &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
        let view = c.view();
        assert_eq!(view.shape, CardShape::V1);
        assert_eq!(view.endpoint(), Some("https://recipes.example.com/a2a"));
        assert_eq!(view.protocol_version(), Some("1.0"));
        assert_eq!(view.bindings(), vec!["GRPC", "JSONRPC"]);
        let caps = view.capabilities();
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[0].name, "Find recipe");
        assert_eq!(caps[0].tags, vec!["cooking", "food"]);
        assert_eq!(
            view.skill_ids().collect::<Vec<_>>(),
            vec!["find-recipe", "plan-menu"]
        );
        // find-recipe takes the defaults, plan-menu its own (parameters dropped).
        assert_eq!(view.input_modes(), vec!["application/json", "text/plain"]);
        assert_eq!(
            view.output_modes(),
            vec!["application/json", "image/*", "text/plain"]
        );
        assert_eq!(view.provider_organization.as_deref(), Some("Example Org"));
        // Kept verbatim: unknown fields too, keys sorted.
        assert_eq!(c.to_value(), card_v1());
        assert!(c.json().starts_with(r#"{"capabilities":"#));
        assert_eq!(c.etag().len(), 34);
    }

    #[test]
    fn a_v03_card_is_normalized_its_url_first() {
        let c =
            AgentCard::from_value(&card_v03(), &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
        let view = c.view();
        assert_eq!(view.shape, CardShape::Legacy);
        assert_eq!(
            view.interfaces.len(),
            2,
            "the repeated main interface is listed once"
        );
        assert_eq!(view.endpoint(), Some("http://legacy.example.com:8080/"));
        assert_eq!(view.protocol_version(), Some("0.3.0"));
        assert_eq!(view.bindings(), vec!["HTTP+JSON", "JSONRPC"]);
        assert_eq!(view.input_modes(), vec!["text"]);
        // Served back as given.
        assert_eq!(c.to_value(), card_v03());
    }

    #[test]
    fn bad_cards_name_their_json_path() {
        let with = |f: fn(&mut Value)| {
            let mut v = card_v1();
            f(&mut v);
            v
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([1]), "", "must be an object"),
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("name");
                }),
                "name",
                "name is required",
            ),
            (
                with(|v| v["name"] = json!(7)),
                "name",
                "name must be a string",
            ),
            (
                with(|v| {
                    v["skills"][1].as_object_mut().unwrap().remove("id");
                }),
                "skills[1].id",
                "skills[1].id is required",
            ),
            (
                with(|v| v["skills"][1]["id"] = json!("find-recipe")),
                "skills[1].id",
                "repeats skills[0].id",
            ),
            (
                with(|v| v["supportedInterfaces"][0]["url"] = json!("/relative")),
                "supportedInterfaces[0].url",
                "supportedInterfaces[0].url must be an absolute http(s) URL",
            ),
            (
                with(|v| v["supportedInterfaces"][1]["url"] = json!("ftp://x.example.com/")),
                "supportedInterfaces[1].url",
                "must be an absolute http(s) URL",
            ),
            (
                with(|v| v["supportedInterfaces"] = json!([])),
                "supportedInterfaces",
                "at least one",
            ),
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("supportedInterfaces");
                }),
                "supportedInterfaces",
                "is required",
            ),
            (
                with(|v| v["supportedInterfaces"][0]["protocolBinding"] = json!("JSON RPC")),
                "supportedInterfaces[0].protocolBinding",
                "protocol binding",
            ),
            (
                with(|v| v["capabilities"] = json!([])),
                "capabilities",
                "must be an object",
            ),
            (
                with(|v| v["capabilities"]["streaming"] = json!("yes")),
                "capabilities.streaming",
                "must be a boolean",
            ),
            (
                with(|v| v["defaultInputModes"] = json!("text/plain")),
                "defaultInputModes",
                "array of strings",
            ),
            (
                with(|v| v["skills"][0]["tags"][1] = json!(" ")),
                "skills[0].tags[1]",
                "must not be blank",
            ),
            (
                with(|v| v["skills"][0]["examples"] = json!([1])),
                "skills[0].examples[0]",
                "must be a string",
            ),
            (
                with(|v| v["provider"] = json!({"url": "https://e.com"})),
                "provider.organization",
                "is required",
            ),
            (
                with(|v| v["skills"][0]["name"] = json!("n".repeat(513))),
                "skills[0].name",
                "at most 512",
            ),
            (
                with(|v| v["signatures"] = json!([{"protected": "x"}])),
                "signatures[0].signature",
                "is required",
            ),
        ];
        for (card, path, message) in cases {
            let (p, m) = refused(card.clone());
            assert_eq!(p, path, "{card}");
            assert!(m.contains(message), "{m:?} should say {message:?}");
        }
        // A 0.3 card's url is its own path.
        let mut legacy = card_v03();
        legacy["url"] = json!("not a url");
        assert_eq!(refused(legacy).0, "url");
    }

    #[test]
    fn too_large_is_measured_as_canonical_json() {
        let mut v = card_v1();
        v["x-pad"] = json!("p".repeat(DEFAULT_MAX_CARD_BYTES));
        match AgentCard::from_value(&v, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES) {
            Err(CardError::TooLarge { size, max }) => {
                assert!(size > max);
                let e = CardError::TooLarge { size, max }.into_error("agent_card");
                assert_eq!(e.error.code, ErrorCode::PayloadTooLarge);
                assert_eq!(e.error.field.as_deref(), Some("agent_card"));
            }
            other => panic!("{other:?}"),
        }
        let e = CardError::at("skills[2].id", "skills[2].id is required").into_error("agent_card");
        assert_eq!(e.error.field.as_deref(), Some("agent_card.skills[2].id"));
    }

    #[test]
    fn the_card_round_trips_in_json_and_bincode_with_one_etag() {
        let c =
            AgentCard::from_value(&card_v1(), &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, c.json());
        let back: AgentCard = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.etag(), c.etag());
        let bin = bincode::serialize(&c).unwrap();
        let back: AgentCard = bincode::deserialize(&bin).unwrap();
        assert_eq!(back.etag(), c.etag());
        assert_eq!(back.view(), c.view());
        assert!(bincode::deserialize::<AgentCard>(&bincode::serialize("[1]").unwrap()).is_err());
    }

    #[test]
    fn media_types_match_with_wildcards_both_ways() {
        assert_eq!(
            normalize_media_type(" Text/Plain; charset=UTF-8 "),
            "text/plain"
        );
        assert_eq!(normalize_media_type("*"), "*/*");
        assert_eq!(normalize_media_type("Text"), "text");
        for (declared, wanted, ok) in [
            ("text/plain", "text/plain", true),
            ("text/*", "text/plain", true),
            ("text/plain", "text/*", true),
            ("*/*", "image/png", true),
            ("image/png", "*/*", true),
            ("text/plain", "text/html", false),
            ("image/*", "text/*", false),
            ("text", "text/*", true),
        ] {
            assert_eq!(
                media_type_matches(declared, wanted),
                ok,
                "{declared} vs {wanted}"
            );
        }
    }
}
