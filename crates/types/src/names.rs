//! Wire names of the vocabulary enums.
//!
//! Each enum ([`AgentStatus`](crate::AgentStatus), [`EventKind`](crate::EventKind),
//! [`Consistency`](crate::query::Consistency), ...) spells its variants once,
//! in its serde and strum attributes: serde for JSON and query strings, strum
//! for `FromStr`, `Display`, the `&'static str` of a variant (`into_str`) and
//! the list of variants (`VARIANTS`). This module adds what both lack: the
//! names as a list for messages, and the error of a name that is none of them.

use strum::VariantArray;

/// An enum whose variants each have one wire name (strum's
/// `IntoStaticStr` and `VariantArray`).
pub trait WireName: VariantArray + Copy + Into<&'static str> {
    /// Every wire name, in declaration order, joined by ", ": for messages
    /// and help texts.
    fn wire_names() -> String {
        Self::VARIANTS
            .iter()
            .map(|v| (*v).into())
            .collect::<Vec<&'static str>>()
            .join(", ")
    }
}

impl<T: VariantArray + Copy + Into<&'static str>> WireName for T {}

/// A name that is none of an enum's wire names: the `FromStr` error of the
/// vocabulary enums, e.g. "unknown status 'sleeping' (expected one of
/// registering, active, ...)".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{given}' (expected one of {expected})")]
pub struct UnknownName {
    /// What the name should have named ("status", "event type", ...).
    pub what: &'static str,
    /// The name as given.
    pub given: String,
    /// The accepted names, joined by ", ".
    pub expected: String,
}

impl UnknownName {
    /// The error for `given`, which is none of `T`'s names.
    pub fn new<T: WireName>(what: &'static str, given: &str) -> Self {
        UnknownName {
            what,
            given: given.to_string(),
            expected: T::wire_names(),
        }
    }
}
