//! Per-call read options (re-exported wire types) and the metadata every
//! answer carries.

use registry_types::{Revision, HEADER_LAST_CONTACT, HEADER_LEADER, HEADER_NODE, HEADER_REVISION};
use reqwest::header::HeaderMap;

// The read options and the vocabulary of `select` are wire types, defined
// once in `registry-types` with the server's decoding of them; re-exported
// here so that `registry_client::{ReadOptions, Consistency, SelectStrategy}`
// are what they always were.
pub use registry_types::query::{Consistency, ReadOptions, SelectStrategy};

/// What the `x-registry-*` headers of an answer said, plus which node URL the
/// client called. Fields are `None` when the header was absent or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The configured base URL that answered.
    pub node_url: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Registry revision the answering node had applied (`x-registry-revision`).
    pub revision: Option<Revision>,
    /// The answering node as it names itself (`x-registry-node`).
    pub node: Option<String>,
    /// The leader known to the answering node (`x-registry-leader`); `None`
    /// when the header is empty, i.e. the node knows of no leader.
    pub leader: Option<String>,
    /// Milliseconds since the answering node last heard from its leader
    /// (`x-registry-last-contact-ms`, 0 on the leader).
    pub last_contact_ms: Option<u64>,
    /// The agent's status when its A2A card was served
    /// (`x-registry-agent-status`); `None` on other answers.
    pub agent_status: Option<registry_types::AgentStatus>,
}

impl ResponseMeta {
    /// Reads the registry headers of an answer from `node_url`.
    pub(crate) fn from_headers(node_url: &str, status: u16, headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        ResponseMeta {
            node_url: node_url.to_string(),
            status,
            revision: text(HEADER_REVISION).and_then(|s| s.parse().ok()),
            node: text(HEADER_NODE),
            leader: text(HEADER_LEADER),
            last_contact_ms: text(HEADER_LAST_CONTACT).and_then(|s| s.parse().ok()),
            agent_status: text(registry_types::card::HEADER_AGENT_STATUS)
                .and_then(|s| s.parse().ok()),
        }
    }
}

/// A decoded answer together with its [`ResponseMeta`]; returned by the
/// `*_with_meta` methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<T> {
    /// The decoded body.
    pub value: T,
    /// Headers and origin of the answer.
    pub meta: ResponseMeta,
}

impl<T> Response<T> {
    /// Drops the metadata.
    pub fn into_value(self) -> T {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::query::to_query_string;
    use registry_types::VariantArray;
    use reqwest::header::HeaderValue;

    #[test]
    fn read_options_become_query_parameters() {
        let q = to_query_string(&ReadOptions::default()).unwrap();
        assert!(q.is_empty(), "linearizable is the server default: {q:?}");
        let q = to_query_string(&ReadOptions::stale().with_min_revision(42)).unwrap();
        assert_eq!(q, "consistency=stale&min_revision=42");
    }

    #[test]
    fn strategies_round_trip_through_their_wire_names() {
        for &k in SelectStrategy::VARIANTS {
            assert_eq!(k.into_str().parse::<SelectStrategy>(), Ok(k));
        }
        assert_eq!("Round-Robin".parse(), Ok(SelectStrategy::RoundRobin));
        assert!("fastest".parse::<SelectStrategy>().is_err());
        assert_eq!(SelectStrategy::default(), SelectStrategy::LeastLoaded);
    }

    #[test]
    fn meta_reads_registry_headers_and_treats_empty_leader_as_none() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_REVISION, HeaderValue::from_static("17"));
        h.insert(HEADER_NODE, HeaderValue::from_static("2"));
        h.insert(HEADER_LEADER, HeaderValue::from_static(""));
        h.insert(HEADER_LAST_CONTACT, HeaderValue::from_static("oops"));
        let m = ResponseMeta::from_headers("http://n2", 200, &h);
        assert_eq!(m.revision, Some(17));
        assert_eq!(m.node.as_deref(), Some("2"));
        assert_eq!(m.leader, None);
        assert_eq!(m.last_contact_ms, None);
        assert_eq!(m.node_url, "http://n2");
    }
}
