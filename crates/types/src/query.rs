//! The vocabulary of reads, and the query strings of the read routes as
//! typed structs.
//!
//! - [`Consistency`] and [`ReadOptions`]: how fresh a read must be
//!   (`consistency`, `min_revision`: every read route takes them).
//! - [`SortBy`]: how discovery orders what qualifies; [`SelectStrategy`]: how
//!   `GET /v1/select` picks one agent.
//! - One struct per group of query parameters: [`ListFilter`] and
//!   [`ListPage`] (`GET /v1/agents`; [`ListPage`] also pages
//!   `GET /v1/capabilities` and `GET /v1/runtimes`), [`LegacyListOptions`] (`GET /agents`),
//!   [`SearchQuery`] (capability searches), [`SelectQuery`],
//!   [`EventFilter`] and [`EventsPoll`] (`GET /v1/events`),
//!   [`AdvisoryFilter`] (`GET /v1/scaling/advisories`). A route takes
//!   several: the server extracts each from the same query string, the
//!   client appends each to it.
//!
//! The client encodes these structs with [`to_query_string`] and the server
//! decodes them with [`from_query_str`], so the two cannot disagree on a
//! parameter's name or spelling. Decoding keeps the rules the server always
//! had:
//! - an empty value (`status=`) is the same as no value;
//! - a repeated parameter counts once, with its last value;
//! - unknown parameters are ignored;
//! - a value of the wrong type is a [`QueryError`] naming the parameter.
//!
//! Checks that depend on the route (`limit` within 1 to the route's maximum,
//! `wait` at most 60 s, a required `q` or `capability`) are the server's,
//! after decoding.

use std::collections::HashSet;
use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::agent::AgentStatus;
use crate::command::EventKind;
use crate::ids::Revision;
use crate::names::UnknownName;

/// How fresh a read must be (`consistency=`).
///
/// On the wire `linearizable` (also accepted as `strong`) or `stale`,
/// case-sensitive; absent means linearizable.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    serialize_all = "snake_case",
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_consistency
)]
pub enum Consistency {
    /// The answer reflects every write acknowledged before the read started:
    /// the answering node confirms with the leader (read index) that it is
    /// current. The default; a client sends nothing for it.
    #[default]
    #[serde(alias = "strong")]
    #[strum(to_string = "linearizable", serialize = "strong")]
    Linearizable,
    /// The answering node's applied state as it is, at once, possibly
    /// behind the leader; works without a leader.
    Stale,
}

fn unknown_consistency(given: &str) -> UnknownName {
    UnknownName::new::<Consistency>("consistency", given)
}

impl Consistency {
    /// Whether this is the default, which a client leaves out of the query.
    pub fn is_linearizable(&self) -> bool {
        *self == Consistency::Linearizable
    }
}

/// `consistency` and `min_revision`: the options of every read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ReadOptions {
    /// See [`Consistency`]; left out of the query when linearizable.
    #[serde(skip_serializing_if = "Consistency::is_linearizable")]
    pub consistency: Consistency,
    /// The answering node must have applied at least this revision: it
    /// waits a bounded time for it, then answers 503 (and a client tries
    /// another node). Pair it with [`Consistency::Stale`] and the revision of
    /// a previous answer for cheap read-your-writes.
    #[serde(deserialize_with = "non_negative")]
    #[param(value_type = Option<u64>)]
    pub min_revision: Option<Revision>,
}

impl ReadOptions {
    /// Linearizable read, no revision floor (the default).
    pub fn linearizable() -> Self {
        ReadOptions::default()
    }

    /// Stale read from whichever node answers.
    pub fn stale() -> Self {
        ReadOptions {
            consistency: Consistency::Stale,
            min_revision: None,
        }
    }

    /// Same options with a revision floor.
    pub fn with_min_revision(mut self, revision: Revision) -> Self {
        self.min_revision = Some(revision);
        self
    }
}

/// How discovery orders the agents that qualify (`sort_by` of
/// `POST /v1/discover`).
///
/// The wire name is the lowercase variant name; parsing it from text
/// (`FromStr`) ignores ASCII case.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    serialize_all = "snake_case",
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_sort_order
)]
pub enum SortBy {
    /// Highest `performance` first: health score × (1 − load factor).
    Performance,
    /// Highest health score first.
    Health,
    /// Lowest load factor first.
    Load,
    /// A random order (seeded by the server for each query).
    Random,
    /// Most matched text words first, then performance.
    Relevance,
}

fn unknown_sort_order(given: &str) -> UnknownName {
    UnknownName::new::<SortBy>("sort order", given)
}

/// How `GET /v1/select` picks among the qualifying agents (`strategy=`).
///
/// The server takes the snake_case name exactly. Parsing it from text
/// (`FromStr`, for command lines) also accepts any ASCII case and `-` for
/// `_` (`Round-Robin`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_strategy
)]
pub enum SelectStrategy {
    /// The lowest `load_factor` (the server default).
    #[default]
    #[strum(to_string = "least_loaded", serialize = "least-loaded")]
    LeastLoaded,
    /// The highest `health_score`.
    #[strum(to_string = "best_health", serialize = "best-health")]
    BestHealth,
    /// Any qualifying agent, uniformly.
    #[strum(to_string = "random")]
    Random,
    /// The qualifying agents in id order, one after the other. The position
    /// is kept per node and per capability, so a client that fails over
    /// continues another node's rotation.
    #[strum(to_string = "round_robin", serialize = "round-robin")]
    RoundRobin,
}

fn unknown_strategy(given: &str) -> UnknownName {
    UnknownName::new::<SelectStrategy>("strategy", given)
}

/// Filters of `GET /v1/agents` and `GET /agents`; empty fields match
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ListFilter {
    /// Only agents in this status (any ASCII case on the wire).
    #[serde(deserialize_with = "parsed")]
    pub status: Option<AgentStatus>,
    /// Only agents offering a capability of this exact name
    /// (case-insensitive).
    pub capability: Option<String>,
    /// Only agents carrying this tag (their own or a capability's).
    pub tag: Option<String>,
    /// Only agents of this type.
    pub agent_type: Option<String>,
    /// Only agents in this runtime.
    pub runtime_id: Option<String>,
}

/// Paging of `GET /v1/agents`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ListPage {
    /// Most entries (agents, capabilities, runtimes) in the page; the
    /// server's default (100) when absent, at most its maximum (1,000).
    #[serde(deserialize_with = "non_negative")]
    pub limit: Option<u64>,
    /// The previous page's `next_cursor`: the page starts after it.
    pub cursor: Option<String>,
}

/// Filters of `GET /v1/agent-cards`: every given filter must match. Only
/// agents with a card are listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct CardFilter {
    /// Only cards listing a skill of this id (exact).
    pub skill: Option<String>,
    /// Only agents carrying this tag: their own, a capability's or a
    /// skill's (case-insensitive).
    pub tag: Option<String>,
    /// Only agents that accept this media type (wildcards match both
    /// ways, as `input_modes` of `POST /v1/discover`).
    pub input_mode: Option<String>,
    /// Only agents that produce this media type.
    pub output_mode: Option<String>,
    /// Only cards with an interface of this protocol binding
    /// (case-insensitive).
    pub binding: Option<String>,
    /// Words (at most 512 bytes) every one of which the agent's
    /// capabilities, tags, skills (examples too) or provider must carry.
    pub q: Option<String>,
    /// Only agents in this status (any ASCII case). Absent: the live ones,
    /// every status but `offline` and `suspended`.
    #[serde(deserialize_with = "parsed")]
    pub status: Option<AgentStatus>,
}

/// Options of `GET /v1/agents/{id}/agent-card.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct CardOptions {
    /// Serve the card of an `offline` or `suspended` agent too (404
    /// otherwise). `1`, `0` and any ASCII case are accepted.
    #[serde(deserialize_with = "loose_bool")]
    pub include_inactive: Option<bool>,
}

/// The options of the legacy listing `GET /agents`, besides its
/// [`ListFilter`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct LegacyListOptions {
    /// `false` leaves out unhealthy and offline agents; absent means `true`.
    /// `1` and `0` are accepted too, and any ASCII case.
    #[serde(deserialize_with = "loose_bool")]
    pub include_dead: Option<bool>,
    /// Most agents returned (at least 1); absent means all of them.
    #[serde(deserialize_with = "non_negative")]
    pub limit: Option<u64>,
}

/// A capability search (`GET /v1/capabilities/search`,
/// `GET /capabilities/search`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct SearchQuery {
    /// What to look for in capability names, tags and descriptions;
    /// required, at most 512 bytes.
    #[param(required = true, min_length = 1, max_length = 512)]
    pub q: Option<String>,
    /// Only agents in this status (any ASCII case on the wire).
    #[serde(deserialize_with = "parsed")]
    pub status: Option<AgentStatus>,
    /// Most matches; the route's default when absent.
    #[serde(deserialize_with = "non_negative")]
    pub limit: Option<u64>,
}

/// The query of `GET /v1/select`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct SelectQuery {
    /// The capability the agent must have (exact name, case-insensitive);
    /// required.
    #[param(required = true)]
    pub capability: Option<String>,
    /// See [`SelectStrategy`]; least loaded when absent.
    pub strategy: Option<SelectStrategy>,
    /// Lowest health score accepted, 0 to 1; 0.5 when absent.
    #[param(minimum = 0, maximum = 1)]
    pub min_health_score: Option<f64>,
    /// Highest load factor accepted, 0 to 1; 0.8 when absent.
    #[param(minimum = 0, maximum = 1)]
    pub max_load_factor: Option<f64>,
}

/// Which events a watcher wants (`GET /v1/events`); empty fields match
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EventFilter {
    /// Only these kinds (any of them). On the wire one `type` parameter,
    /// comma-separated, in any ASCII case.
    #[serde(
        rename = "type",
        deserialize_with = "kind_list",
        serialize_with = "comma_separated",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[param(value_type = Option<String>)]
    pub kinds: Vec<EventKind>,
    /// Only events of this agent.
    pub agent_id: Option<String>,
    /// Only events of agents with this capability name (case-insensitive).
    pub capability: Option<String>,
    /// Only events of agents in this runtime.
    pub runtime_id: Option<String>,
}

/// Where `GET /v1/events` starts, and whether it answers as a long poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EventsPoll {
    /// The first revision wanted (inclusive; 0 and 1 both mean the oldest
    /// kept). A `Last-Event-ID` header wins over it; without either, only
    /// changes from now on.
    #[serde(deserialize_with = "non_negative")]
    #[param(value_type = Option<u64>)]
    pub from_revision: Option<Revision>,
    /// Answer as a JSON long poll that waits at most this long for a first
    /// event: `30s`, `500ms`, `2m` or a number of seconds, at most 60 s.
    /// Absent: a server-sent event stream.
    pub wait: Option<String>,
}

/// The filter of `GET /v1/scaling/advisories`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct AdvisoryFilter {
    /// Only the advisories of this capability (name, case-insensitive).
    pub capability: Option<String>,
}

/// A query parameter that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The parameter at fault; `None` when no single one is.
    pub field: Option<String>,
    /// What is wrong, naming the parameter.
    pub message: String,
}

/// Decodes a query string (without the `?`) into `T`, one of this module's
/// structs: empty values count as absent, a repeated parameter counts with
/// its last value, unknown parameters are ignored, and a bad value is an
/// error naming its parameter.
pub fn from_query_str<T: DeserializeOwned>(query: &str) -> Result<T, QueryError> {
    let mut seen = HashSet::new();
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect();
    pairs.reverse();
    pairs.retain(|(_, value)| !value.is_empty());
    let kept = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(kept.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            QueryError {
                field: None,
                message: format!("invalid query string: {inner}"),
            }
        } else {
            QueryError {
                message: format!("invalid value of {path}: {inner}"),
                field: Some(path),
            }
        }
    })
}

/// Encodes one of this module's structs as a query string (without the
/// `?`); absent values and default read options are left out.
pub fn to_query_string<T: Serialize>(query: &T) -> Result<String, QueryError> {
    serde_urlencoded::to_string(query).map_err(|e| QueryError {
        field: None,
        message: format!("cannot encode the query string: {e}"),
    })
}

/// A number that must not be negative.
fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|_| D::Error::custom(format!("expected a non-negative integer, got '{text}'")))
}

/// A value parsed with its `FromStr` (for statuses: any ASCII case), the
/// error naming the accepted values.
fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Option::<String>::deserialize(d)?
        .map(|text| text.parse().map_err(D::Error::custom))
        .transpose()
}

/// `true`/`false` in any ASCII case, or `1`/`0`.
fn loose_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Ok(Some(true))
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Ok(Some(false))
    } else {
        Err(D::Error::custom(format!(
            "expected true or false, got '{text}'"
        )))
    }
}

/// Comma-separated event kinds; blank items are skipped.
fn kind_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EventKind>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().map_err(D::Error::custom))
        .collect()
}

fn comma_separated<S: Serializer>(kinds: &[EventKind], s: S) -> Result<S::Ok, S::Error> {
    let names: Vec<&'static str> = kinds.iter().map(EventKind::into_str).collect();
    s.serialize_str(&names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::WireName;
    use strum::VariantArray;

    /// `T`'s wire names, in order, through each of serde (JSON), strum's
    /// `Display`, `into_str` and `FromStr`, and the query string encoding.
    fn check_names<T>(names: &[&str])
    where
        T: WireName
            + Serialize
            + DeserializeOwned
            + FromStr<Err = UnknownName>
            + Display
            + PartialEq
            + std::fmt::Debug,
    {
        assert_eq!(T::VARIANTS.len(), names.len(), "one name per variant");
        for (&v, &name) in T::VARIANTS.iter().zip(names) {
            assert_eq!(v.into(), name);
            assert_eq!(v.to_string(), name);
            assert_eq!(name.parse::<T>(), Ok(v), "{name}");
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(),
                v
            );
            assert_eq!(
                serde_urlencoded::to_string([("v", v)]).unwrap(),
                format!("v={name}")
            );
        }
        let e = "no-such-name".parse::<T>().unwrap_err();
        assert_eq!(e.given, "no-such-name");
        assert_eq!(e.expected, names.join(", "));
    }

    #[test]
    fn every_variant_has_its_exact_wire_name() {
        check_names::<AgentStatus>(&[
            "registering",
            "active",
            "busy",
            "degraded",
            "unhealthy",
            "suspended",
            "deregistering",
            "offline",
        ]);
        check_names::<EventKind>(&[
            "AGENT_REGISTERED",
            "AGENT_UPDATED",
            "AGENT_DEREGISTERED",
            "AGENT_STATUS_CHANGED",
            "AGENT_EXPIRED",
            "RUNTIME_JOINED",
            "RUNTIME_LEFT",
            "LIVENESS_BRAKE_ENGAGED",
            "LIVENESS_BRAKE_RELEASED",
            "SCALING_ADVISORY",
        ]);
        check_names::<Consistency>(&["linearizable", "stale"]);
        check_names::<SortBy>(&["performance", "health", "load", "random", "relevance"]);
        check_names::<SelectStrategy>(&["least_loaded", "best_health", "random", "round_robin"]);
    }

    #[test]
    fn names_without_a_parser_are_exact_too() {
        use crate::error::ErrorCode;
        use crate::scaling::ScalingAction;
        let actions: Vec<&str> = ScalingAction::VARIANTS
            .iter()
            .map(|a| a.into_str())
            .collect();
        assert_eq!(actions, ["scale_up", "scale_down", "replace_unhealthy"]);
        for &a in ScalingAction::VARIANTS {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.into_str())
            );
            assert_eq!(a.to_string(), a.into_str());
        }
        let codes: Vec<&str> = ErrorCode::VARIANTS.iter().map(|c| c.into_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid_json",
                "invalid_argument",
                "payload_too_large",
                "request_timeout",
                "unsupported_media_type",
                "agent_not_found",
                "not_found",
                "no_agent_available",
                "policy_not_found",
                "method_not_allowed",
                "already_exists",
                "revision_mismatch",
                "no_leader",
                "unavailable",
                "timeout",
                "revision_compacted",
                "internal",
                "unauthenticated",
                "forbidden",
                "registry_full",
                "too_many_watchers",
                "no_space",
                "token_not_found",
                "member_not_found",
                "membership_conflict",
            ]
        );
        for &c in ErrorCode::VARIANTS {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
        }
    }

    #[test]
    fn aliases_and_case_rules_of_each_parser() {
        // Statuses, event kinds and sort orders: any ASCII case.
        assert_eq!("Active".parse(), Ok(AgentStatus::Active));
        assert_eq!("OFFLINE".parse(), Ok(AgentStatus::Offline));
        assert_eq!("agent_registered".parse(), Ok(EventKind::AgentRegistered));
        assert_eq!("Health".parse(), Ok(SortBy::Health));
        // Consistency: `strong` is linearizable, and case matters, as it
        // always did on the server.
        assert_eq!("strong".parse(), Ok(Consistency::Linearizable));
        assert_eq!(
            serde_json::from_str::<Consistency>("\"strong\"").unwrap(),
            Consistency::Linearizable
        );
        assert!("Stale".parse::<Consistency>().is_err());
        assert_eq!(Consistency::default(), Consistency::Linearizable);
        // Strategies: any case and `-` for `_` from text; exact in serde.
        assert_eq!("Round-Robin".parse(), Ok(SelectStrategy::RoundRobin));
        assert_eq!("LEAST_LOADED".parse(), Ok(SelectStrategy::LeastLoaded));
        assert_eq!("best-health".parse(), Ok(SelectStrategy::BestHealth));
        assert!(serde_json::from_str::<SelectStrategy>("\"round-robin\"").is_err());
        assert_eq!(SelectStrategy::default(), SelectStrategy::LeastLoaded);
        // The errors say what was expected.
        assert_eq!(
            "sleeping".parse::<AgentStatus>().unwrap_err().to_string(),
            "unknown status 'sleeping' (expected one of registering, active, busy, \
             degraded, unhealthy, suspended, deregistering, offline)"
        );
        assert!("NOPE"
            .parse::<EventKind>()
            .unwrap_err()
            .to_string()
            .starts_with("unknown event type 'NOPE' (expected one of AGENT_REGISTERED, "));
    }

    /// `q` encoded, then decoded again.
    fn round_trip<T: Serialize + DeserializeOwned>(q: &T) -> (String, T) {
        let text = to_query_string(q).unwrap();
        let back = from_query_str(&text).unwrap();
        (text, back)
    }

    #[test]
    fn query_structs_round_trip_in_parameter_order() {
        let read = ReadOptions::stale().with_min_revision(42);
        assert_eq!(
            round_trip(&read),
            ("consistency=stale&min_revision=42".to_string(), read)
        );
        assert_eq!(
            round_trip(&ReadOptions::default()),
            (String::new(), ReadOptions::default()),
            "linearizable is the default and is not sent"
        );
        let filter = ListFilter {
            status: Some(AgentStatus::Active),
            capability: Some("code gen".into()),
            tag: Some("t".into()),
            agent_type: Some("llm".into()),
            runtime_id: Some("pod-a".into()),
        };
        assert_eq!(
            round_trip(&filter),
            (
                "status=active&capability=code+gen&tag=t&agent_type=llm&runtime_id=pod-a"
                    .to_string(),
                filter
            )
        );
        let page = ListPage {
            limit: Some(5),
            cursor: Some("c1".into()),
        };
        assert_eq!(round_trip(&page), ("limit=5&cursor=c1".to_string(), page));
        let legacy = LegacyListOptions {
            include_dead: Some(false),
            limit: Some(1),
        };
        assert_eq!(
            round_trip(&legacy),
            ("include_dead=false&limit=1".to_string(), legacy)
        );
        let search = SearchQuery {
            q: Some("x&y".into()),
            status: Some(AgentStatus::Busy),
            limit: Some(5),
        };
        assert_eq!(
            round_trip(&search),
            ("q=x%26y&status=busy&limit=5".to_string(), search)
        );
        let select = SelectQuery {
            capability: Some("trading".into()),
            strategy: Some(SelectStrategy::RoundRobin),
            min_health_score: Some(0.25),
            max_load_factor: Some(0.5),
        };
        assert_eq!(
            round_trip(&select),
            (
                "capability=trading&strategy=round_robin&min_health_score=0.25&max_load_factor=0.5"
                    .to_string(),
                select
            )
        );
        let events = EventFilter {
            kinds: vec![EventKind::AgentRegistered, EventKind::AgentDeregistered],
            agent_id: Some("a 1".into()),
            capability: Some("Trading".into()),
            runtime_id: None,
        };
        assert_eq!(
            round_trip(&events),
            (
                "type=AGENT_REGISTERED%2CAGENT_DEREGISTERED&agent_id=a+1&capability=Trading"
                    .to_string(),
                events
            )
        );
        let poll = EventsPoll {
            from_revision: Some(7),
            wait: Some("0ms".into()),
        };
        assert_eq!(
            round_trip(&poll),
            ("from_revision=7&wait=0ms".to_string(), poll)
        );
        let advisories = AdvisoryFilter {
            capability: Some("c".into()),
        };
        assert_eq!(
            round_trip(&advisories),
            ("capability=c".to_string(), advisories)
        );
    }

    #[test]
    fn decoding_keeps_the_servers_rules() {
        // Empty values are absent; unknown parameters are ignored.
        let f: ListFilter = from_query_str("status=&capability=&tag=x&nonsense=1").unwrap();
        assert_eq!(
            f,
            ListFilter {
                tag: Some("x".into()),
                ..Default::default()
            }
        );
        let q: SearchQuery = from_query_str("q=").unwrap();
        assert_eq!(q.q, None);
        // A repeated parameter counts with its last value, even an empty one.
        let f: ListFilter = from_query_str("status=sleeping&status=busy").unwrap();
        assert_eq!(f.status, Some(AgentStatus::Busy));
        let f: ListFilter = from_query_str("status=busy&status=").unwrap();
        assert_eq!(f.status, None);
        // Statuses and event kinds in any case; kinds comma-separated.
        let f: ListFilter = from_query_str("status=ACTIVE").unwrap();
        assert_eq!(f.status, Some(AgentStatus::Active));
        let e: EventFilter =
            from_query_str("type=LIVENESS_BRAKE_ENGAGED,%20liveness_brake_released,").unwrap();
        assert_eq!(
            e.kinds,
            [
                EventKind::LivenessBrakeEngaged,
                EventKind::LivenessBrakeReleased
            ]
        );
        // `strong` is linearizable; `include_dead` takes 1/0 and any case.
        let r: ReadOptions = from_query_str("consistency=strong").unwrap();
        assert_eq!(r.consistency, Consistency::Linearizable);
        for (text, want) in [("TRUE", true), ("1", true), ("False", false), ("0", false)] {
            let o: LegacyListOptions = from_query_str(&format!("include_dead={text}")).unwrap();
            assert_eq!(o.include_dead, Some(want), "{text}");
        }
    }

    fn field_of<T: DeserializeOwned + std::fmt::Debug>(query: &str) -> (String, String) {
        let e = from_query_str::<T>(query).expect_err(query);
        (e.field.expect("a field"), e.message)
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, field) in [
            ("status=sleeping", "status"),
            ("capability=x&status=zzz", "status"),
        ] {
            let (f, message) = field_of::<ListFilter>(query);
            assert_eq!(f, field, "{query}");
            assert!(message.contains(field), "{query}: {message}");
        }
        for (query, field) in [
            ("consistency=eventual", "consistency"),
            ("consistency=Stale", "consistency"),
            ("min_revision=soon", "min_revision"),
            ("min_revision=-1", "min_revision"),
        ] {
            assert_eq!(field_of::<ReadOptions>(query).0, field, "{query}");
        }
        for query in ["limit=ten", "limit=-1", "limit=1.5"] {
            let (f, message) = field_of::<ListPage>(query);
            assert_eq!(f, "limit");
            assert_eq!(
                message,
                format!(
                    "invalid value of limit: expected a non-negative integer, got '{}'",
                    &query[6..]
                )
            );
        }
        assert_eq!(
            field_of::<LegacyListOptions>("include_dead=maybe").0,
            "include_dead"
        );
        assert_eq!(field_of::<SearchQuery>("q=x&limit=ten").0, "limit");
        for (query, field) in [
            ("strategy=fastest", "strategy"),
            ("strategy=Round-Robin", "strategy"),
            ("min_health_score=high", "min_health_score"),
            ("max_load_factor=x", "max_load_factor"),
        ] {
            assert_eq!(field_of::<SelectQuery>(query).0, field, "{query}");
        }
        let (f, message) = field_of::<EventFilter>("type=AGENT_REGISTERED,NOPE");
        assert_eq!(f, "type");
        assert!(message.contains("unknown event type 'NOPE'"), "{message}");
        assert_eq!(field_of::<EventsPoll>("from_revision=x").0, "from_revision");
    }
}
