//! The vocabulary of reads: how fresh a read must be ([`Consistency`]), how
//! discovery orders what qualifies ([`SortBy`]) and how `GET /v1/select`
//! picks one agent ([`SelectStrategy`]).

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentStatus;
    use crate::command::EventKind;
    use crate::names::WireName;
    use serde::de::DeserializeOwned;
    use std::fmt::Display;
    use std::str::FromStr;
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
}
