//! Per-capability orderings for discovery's common sorts.
//!
//! For every normalized capability name, its agents are kept in three
//! ordered maps, one per sort that discovery and `select` use on their own:
//! performance descending, load ascending and health descending, each with
//! ties broken by agent id ascending, exactly the order
//! [`RegistryState::discover`](crate::machine::RegistryState::discover)
//! sorts by. A query for "the best 10 agents that can do X" then walks X's
//! map from the front and stops at the tenth agent that passes the filters,
//! instead of looking at every agent that can do X.
//!
//! The maps are derived data: kept in step by the state machine wherever a
//! record's capabilities, health or load change, rebuilt by `restore`, never
//! written into snapshots. Their iteration order depends only on the records
//! (BTreeMap, no hashing), so every replica holds the same maps.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use registry_types::AgentId;

use crate::index::AgentKey;

/// An agent's expected quality of service from its health and load:
/// `health × (1 − load)`. The one definition behind both
/// [`crate::discover::performance`] and the performance ordering here, so the
/// two can never disagree.
pub fn performance_of(health: f64, load: f64) -> f64 {
    health * (1.0 - load)
}

/// A `u64` whose unsigned order is the numeric order of `x` (`-0.0` and
/// `0.0` map to the same key, as they compare equal). Health and load are
/// validated to `0..=1` at the API edge and JSON cannot carry NaN, so NaN,
/// which has no place in a numeric order, never reaches the state.
pub fn ascending(x: f64) -> u64 {
    // Adding +0.0 turns -0.0 into +0.0 and leaves every other value alone.
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// A `u64` whose unsigned order is the reverse numeric order of `x`.
pub fn descending(x: f64) -> u64 {
    !ascending(x)
}

/// One ordering: `(sort key, agent id)` → the agent's dense key, so that the
/// map's order is the sort key's, then the id's.
pub(crate) type Order = BTreeMap<(u64, AgentId), AgentKey>;

/// The three orderings of one capability's agents.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ranked {
    /// By performance descending ([`descending`] of [`performance_of`]).
    pub(crate) by_performance: Order,
    /// By load factor ascending ([`ascending`]).
    pub(crate) by_load: Order,
    /// By health score descending ([`descending`]).
    pub(crate) by_health: Order,
}

impl Ranked {
    /// Number of agents with this capability.
    pub(crate) fn len(&self) -> usize {
        self.by_performance.len()
    }
}

/// The orderings of every capability, by normalized capability name. A
/// hash map is fine here: it is only ever looked up, never iterated.
#[derive(Clone, Debug, Default)]
pub(crate) struct RankedIndex {
    by_capability: FxHashMap<Box<str>, Ranked>,
}

impl RankedIndex {
    /// Adds agent `key` (`id`, with `health` and `load`) under capability
    /// `name` (normalized).
    pub(crate) fn insert(
        &mut self,
        name: &str,
        key: AgentKey,
        id: &AgentId,
        health: f64,
        load: f64,
    ) {
        let r = match self.by_capability.get_mut(name) {
            Some(r) => r,
            None => self.by_capability.entry(name.into()).or_default(),
        };
        let perf = performance_of(health, load);
        r.by_performance.insert((descending(perf), id.clone()), key);
        r.by_load.insert((ascending(load), id.clone()), key);
        r.by_health.insert((descending(health), id.clone()), key);
    }

    /// Removes agent `id` from capability `name`; `health` and `load` must
    /// be the values it was inserted with.
    pub(crate) fn remove(&mut self, name: &str, id: &AgentId, health: f64, load: f64) {
        let Some(r) = self.by_capability.get_mut(name) else {
            return;
        };
        let perf = performance_of(health, load);
        // The maps are keyed by (u64, AgentId); removing needs an owned key,
        // which for an id is a reference-count increment.
        r.by_performance.remove(&(descending(perf), id.clone()));
        r.by_load.remove(&(ascending(load), id.clone()));
        r.by_health.remove(&(descending(health), id.clone()));
        if r.by_performance.is_empty() {
            self.by_capability.remove(name);
        }
    }

    /// The orderings of capability `name` (normalized), if any agent has it.
    pub(crate) fn get(&self, name: &str) -> Option<&Ranked> {
        self.by_capability.get(name)
    }

    /// Total entries over all capabilities and orderings (for tests and
    /// memory figures).
    pub(crate) fn entry_count(&self) -> usize {
        self.by_capability
            .values()
            .map(|r| r.by_performance.len() + r.by_load.len() + r.by_health.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_numeric_order() {
        let xs = [-2.5, -1.0, -0.0, 0.0, 1e-300, 0.1, 0.5, 0.8, 1.0, 7.0];
        for a in xs {
            for b in xs {
                let want = a.partial_cmp(&b).expect("no NaN here");
                assert_eq!(ascending(a).cmp(&ascending(b)), want, "{a} vs {b}");
                assert_eq!(descending(a).cmp(&descending(b)), want.reverse());
            }
        }
    }

    #[test]
    fn insert_and_remove_keep_id_order_on_ties() {
        let id = |s: &str| AgentId::parse(s).expect("valid id");
        let mut ix = RankedIndex::default();
        ix.insert("trading", 0, &id("b"), 0.9, 0.1);
        ix.insert("trading", 1, &id("a"), 0.9, 0.1);
        ix.insert("trading", 2, &id("c"), 1.0, 0.0);
        let order: Vec<AgentKey> = ix
            .get("trading")
            .expect("present")
            .by_performance
            .values()
            .copied()
            .collect();
        assert_eq!(order, vec![2, 1, 0]);
        ix.remove("trading", &id("a"), 0.9, 0.1);
        ix.remove("trading", &id("b"), 0.9, 0.1);
        assert_eq!(ix.entry_count(), 3);
        ix.remove("trading", &id("c"), 1.0, 0.0);
        assert!(ix.get("trading").is_none());
    }
}
