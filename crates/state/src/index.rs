//! The sharded inverted index.
//!
//! Keys are normalized strings tagged with the field they come from; each key
//! maps to the set of agents (by dense internal key) that carry it. Keys are
//! spread over [`SHARDS`] shards by a fixed hash of the key, so that a lookup
//! or an update touches one small map and a future per-shard lock can replace
//! the state-wide one without changing this module's interface.
//!
//! Internal agent keys (`u32`) are assigned by the state machine in apply
//! order and never leave the node: query results are always expressed and
//! ordered by `AgentId`.
//!
//! Key maps hash with FxHash (rustc-hash): keys are our own normalized
//! strings, not attacker-chosen hash-flooding input worth SipHash's cost,
//! which was the largest single item in a profile of registrations. Each
//! shard keeps one map per field, so a lookup borrows the query string
//! instead of building a key. Posting sets are compressed bitmaps
//! ([`Postings`]).

use std::hash::{Hash, Hasher};

use rustc_hash::FxHashMap;

/// The set of agents under one index key: a compressed bitmap. Agent keys
/// are dense and handed out in apply order, so a registration appends to
/// the last container of each of its keys' sets instead of hashing into a
/// table of up to the whole fleet (6% of a node's CPU during registration
/// with hash sets), the sets take a fraction of the memory, and
/// intersections and counts work a container at a time.
pub type Postings = roaring::RoaringBitmap;

/// Number of index shards.
pub const SHARDS: usize = 16;

/// Dense per-node agent key used inside posting sets (4 bytes instead of a
/// string per posting).
pub type AgentKey = u32;

/// The field an index key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// A whole normalized capability name ("python code generation").
    CapabilityName,
    /// A normalized tag of one of the agent's capabilities.
    CapabilityTag,
    /// A normalized tag of the agent itself.
    AgentTag,
    /// A word from capability names, descriptions and tags, and agent tags.
    Word,
    /// The agent type.
    AgentType,
    /// The runtime id.
    Runtime,
    /// The agent status name.
    Status,
    /// Agents with an A2A card (one key, the empty string).
    HasCard,
    /// An A2A skill id of the agent's card (exact).
    SkillId,
    /// A normalized tag of one of the card's skills.
    SkillTag,
    /// A media type the agent accepts (normalized essence, `text/plain`).
    InputMode,
    /// The type of a media type the agent accepts (`text`), and `*` for
    /// every agent that accepts any.
    InputMajor,
    /// A media type the agent produces.
    OutputMode,
    /// The type of a media type the agent produces, and `*`.
    OutputMajor,
    /// A protocol binding of the card's interfaces (upper case).
    Binding,
}

/// Number of [`Field`] variants.
const FIELDS: usize = 15;

impl Field {
    const ALL: [Field; FIELDS] = [
        Field::CapabilityName,
        Field::CapabilityTag,
        Field::AgentTag,
        Field::Word,
        Field::AgentType,
        Field::Runtime,
        Field::Status,
        Field::HasCard,
        Field::SkillId,
        Field::SkillTag,
        Field::InputMode,
        Field::InputMajor,
        Field::OutputMode,
        Field::OutputMajor,
        Field::Binding,
    ];
}

#[derive(Default, Clone, Debug)]
struct Shard {
    /// Per field (by discriminant): normalized value → agents.
    postings: [FxHashMap<Box<str>, Postings>; FIELDS],
}

/// The inverted index, split into [`SHARDS`] shards by key hash.
#[derive(Clone, Debug)]
pub struct ShardedIndex {
    shards: Vec<Shard>,
}

impl Default for ShardedIndex {
    fn default() -> Self {
        ShardedIndex {
            shards: vec![Shard::default(); SHARDS],
        }
    }
}

/// FNV-1a: a fixed hash so shard placement is the same on every run.
fn shard_of(field: Field, value: &str) -> usize {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    (field as u8).hash(&mut h);
    h.write(value.as_bytes());
    (h.finish() % SHARDS as u64) as usize
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

static EMPTY: std::sync::OnceLock<Postings> = std::sync::OnceLock::new();

impl ShardedIndex {
    fn map(&self, field: Field, value: &str) -> &FxHashMap<Box<str>, Postings> {
        &self.shards[shard_of(field, value)].postings[field as usize]
    }

    fn map_mut(&mut self, field: Field, value: &str) -> &mut FxHashMap<Box<str>, Postings> {
        &mut self.shards[shard_of(field, value)].postings[field as usize]
    }

    /// Adds `agent` under `(field, value)`; `value` must already be normalized.
    pub fn insert(&mut self, field: Field, value: &str, agent: AgentKey) {
        let map = self.map_mut(field, value);
        match map.get_mut(value) {
            Some(set) => {
                set.insert(agent);
            }
            None => {
                map.insert(value.into(), Postings::from_iter([agent]));
            }
        }
    }

    /// Removes `agent` from `(field, value)`, dropping the key when empty.
    pub fn remove(&mut self, field: Field, value: &str, agent: AgentKey) {
        let map = self.map_mut(field, value);
        if let Some(set) = map.get_mut(value) {
            set.remove(agent);
            if set.is_empty() {
                map.remove(value);
            }
        }
    }

    /// The agents under `(field, value)`: O(1), no allocation.
    pub fn get(&self, field: Field, value: &str) -> &Postings {
        self.map(field, value)
            .get(value)
            .unwrap_or_else(|| EMPTY.get_or_init(Postings::default))
    }

    /// Every key of `field` with its posting set, in no particular order.
    pub fn keys_of(&self, field: Field) -> impl Iterator<Item = (&str, &Postings)> {
        self.shards
            .iter()
            .flat_map(move |s| s.postings[field as usize].iter().map(|(k, v)| (&**k, v)))
    }

    /// Number of keys per shard (for metrics and tests of the spread).
    pub fn shard_sizes(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.postings.iter().map(|m| m.len()).sum())
            .collect()
    }

    /// Total postings (agent references) held, for the memory figures.
    pub fn posting_count(&self) -> usize {
        Field::ALL
            .iter()
            .flat_map(|&f| self.keys_of(f))
            .map(|(_, v)| v.len() as usize)
            .sum()
    }
}

/// Normalizes a name, tag or query: trimmed, lower case, inner white space
/// collapsed to one space.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        push_lowercase(&mut out, word);
    }
    out
}

/// Appends `s` in lower case. ASCII (nearly every name, tag and word) takes
/// a byte-wise path; it gives what `char::to_lowercase` gives, which the
/// rest of the text still goes through.
fn push_lowercase(out: &mut String, s: &str) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.extend(s.chars().flat_map(char::to_lowercase));
    }
}

/// Splits text into lower-case words: maximal runs of alphanumeric characters.
pub fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut out = String::with_capacity(w.len());
            push_lowercase(&mut out, w);
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_words() {
        assert_eq!(
            normalize("  Python   Code\tGeneration "),
            "python code generation"
        );
        let w: Vec<String> = words("Python-code, GENERATION!v2").collect();
        assert_eq!(w, vec!["python", "code", "generation", "v2"]);
        // Outside ASCII, Unicode's lower case (İ becomes two chars).
        assert_eq!(normalize("Größe  ÜBER İx"), "größe über i\u{307}x");
        let w: Vec<String> = words("Ärger/ΣΟΦΙΑ").collect();
        assert_eq!(w, vec!["ärger", "σοφια"]);
    }

    #[test]
    fn insert_get_remove() {
        let mut ix = ShardedIndex::default();
        ix.insert(Field::Word, "python", 1);
        ix.insert(Field::Word, "python", 2);
        ix.insert(Field::AgentTag, "python", 3);
        assert_eq!(ix.get(Field::Word, "python").len(), 2);
        assert_eq!(ix.get(Field::AgentTag, "python").len(), 1);
        ix.remove(Field::Word, "python", 1);
        ix.remove(Field::Word, "python", 2);
        assert!(ix.get(Field::Word, "python").is_empty());
        assert_eq!(ix.keys_of(Field::Word).count(), 0);
        assert_eq!(ix.posting_count(), 1);
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut ix = ShardedIndex::default();
        for i in 0..1000 {
            ix.insert(Field::Word, &format!("w{i}"), i);
        }
        let sizes = ix.shard_sizes();
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes.iter().all(|&n| n > 20), "uneven shards: {sizes:?}");
    }
}
