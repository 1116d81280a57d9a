//! Structured discovery: "up to N healthy, lightly loaded agents that can do
//! X and Y, tagged Z", answered from the index.
//!
//! Every term becomes a constraint: a union of posting sets the agent must
//! be in (a required capability is one set; a tag is the union of the agent
//! tag and capability tag sets; `any_capabilities` and `text` are unions of
//! several). The constraint with the fewest postings drives: its agents are
//! the candidates, checked against every other constraint by set
//! membership. No query scans the fleet. Status, health and load filters and
//! the sort apply to the candidates only.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use registry_types::api::{DiscoverExplanation, DiscoverFilterCounts};
use registry_types::{AgentRecord, AgentStatus};

use crate::index::{normalize, AgentKey, Field};
use crate::machine::{capability_names, RegistryState};

/// How discovery orders the agents that qualify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Highest `performance` first (see [`performance`]).
    Performance,
    /// Highest health score first.
    Health,
    /// Lowest load factor first.
    Load,
    /// A random order (seeded by the caller).
    Random,
    /// Most matched text words first, then performance.
    Relevance,
}

impl SortBy {
    pub fn parse(s: &str) -> Option<SortBy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "performance" => Some(SortBy::Performance),
            "health" => Some(SortBy::Health),
            "load" => Some(SortBy::Load),
            "random" => Some(SortBy::Random),
            "relevance" => Some(SortBy::Relevance),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Performance => "performance",
            SortBy::Health => "health",
            SortBy::Load => "load",
            SortBy::Random => "random",
            SortBy::Relevance => "relevance",
        }
    }
}

/// A validated discovery query (names, tags and words already normalized).
#[derive(Clone, Debug)]
pub struct Discover {
    pub capabilities: Vec<String>,
    pub any_capabilities: Vec<String>,
    pub text_words: Vec<String>,
    pub tags: Vec<String>,
    pub agent_type: Option<String>,
    pub runtime_id: Option<String>,
    pub statuses: Vec<AgentStatus>,
    pub min_health_score: f64,
    pub max_load_factor: f64,
    pub sort_by: SortBy,
    pub limit: usize,
    /// Seed of the `random` order.
    pub seed: u64,
}

/// What discovery found.
#[derive(Clone, Debug)]
pub struct DiscoverOutcome {
    pub hits: Vec<(AgentRecord, DiscoverExplanation)>,
    pub counts: DiscoverFilterCounts,
}

/// An agent's expected quality of service, 0..1: its reported health,
/// discounted by how loaded it is: `health_score × (1 − load_factor)`.
/// A healthy idle agent scores 1; a healthy agent at 80 % load 0.2.
pub fn performance(r: &AgentRecord) -> f64 {
    r.health_score * (1.0 - r.load_factor)
}

fn random_rank(seed: u64, id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

impl RegistryState {
    /// Runs a discovery query.
    pub fn discover(&self, q: &Discover) -> DiscoverOutcome {
        let empty: HashSet<AgentKey> = HashSet::new();
        // Each constraint: the agent must be in at least one of its sets.
        let mut constraints: Vec<Vec<&HashSet<AgentKey>>> = Vec::new();
        for c in &q.capabilities {
            constraints.push(vec![self.index.get(Field::CapabilityName, c)]);
        }
        for t in &q.tags {
            constraints.push(vec![
                self.index.get(Field::AgentTag, t),
                self.index.get(Field::CapabilityTag, t),
            ]);
        }
        if let Some(t) = &q.agent_type {
            constraints.push(vec![self.index.get(Field::AgentType, t)]);
        }
        if let Some(r) = &q.runtime_id {
            constraints.push(vec![self.index.get(Field::Runtime, r)]);
        }
        if !q.any_capabilities.is_empty() {
            constraints.push(
                q.any_capabilities
                    .iter()
                    .map(|c| self.index.get(Field::CapabilityName, c))
                    .collect(),
            );
        }
        if !q.text_words.is_empty() {
            constraints.push(
                q.text_words
                    .iter()
                    .map(|w| self.index.get(Field::Word, w))
                    .collect(),
            );
        }
        if constraints.is_empty() {
            constraints.push(vec![&empty]);
        }
        let size = |c: &Vec<&HashSet<AgentKey>>| c.iter().map(|s| s.len()).sum::<usize>();
        let driver = (0..constraints.len())
            .min_by_key(|&i| size(&constraints[i]))
            .unwrap_or(0);
        let mut seen: HashSet<AgentKey> = HashSet::new();
        let mut counts = DiscoverFilterCounts::default();
        let mut qualified: Vec<&AgentRecord> = Vec::new();
        for set in &constraints[driver] {
            for &key in set.iter() {
                if !seen.insert(key) {
                    continue;
                }
                let all = constraints
                    .iter()
                    .enumerate()
                    .all(|(i, c)| i == driver || c.iter().any(|s| s.contains(&key)));
                if !all {
                    continue;
                }
                let Some(r) = self.resolve(key) else { continue };
                counts.candidates += 1;
                if !q.statuses.contains(&r.status) {
                    counts.dropped_by_status += 1;
                } else if r.health_score < q.min_health_score {
                    counts.dropped_by_health += 1;
                } else if r.load_factor > q.max_load_factor {
                    counts.dropped_by_load += 1;
                } else {
                    qualified.push(r);
                }
            }
        }
        counts.qualified = qualified.len() as u64;
        let relevance = |r: &AgentRecord| -> f64 {
            if q.text_words.is_empty() {
                return 0.0;
            }
            let key = self.agents.get(&r.agent_id).map(|s| s.key);
            let matched = q
                .text_words
                .iter()
                .filter(|w| key.is_some_and(|k| self.index.get(Field::Word, w).contains(&k)))
                .count();
            matched as f64 / q.text_words.len() as f64
        };
        let mut scored: Vec<(&AgentRecord, f64, f64)> = qualified
            .into_iter()
            .map(|r| (r, relevance(r), performance(r)))
            .collect();
        let by_id = |a: &AgentRecord, b: &AgentRecord| a.agent_id.cmp(&b.agent_id);
        let desc = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
        scored.sort_by(|a, b| {
            let primary = match q.sort_by {
                SortBy::Performance => desc(a.2, b.2),
                SortBy::Health => desc(a.0.health_score, b.0.health_score),
                SortBy::Load => {
                    a.0.load_factor
                        .partial_cmp(&b.0.load_factor)
                        .unwrap_or(Ordering::Equal)
                }
                SortBy::Relevance => desc(a.1, b.1).then(desc(a.2, b.2)),
                SortBy::Random => random_rank(q.seed, a.0.agent_id.as_str())
                    .cmp(&random_rank(q.seed, b.0.agent_id.as_str())),
            };
            primary.then_with(|| by_id(a.0, b.0))
        });
        let wanted: HashSet<&String> = q.capabilities.iter().chain(&q.any_capabilities).collect();
        let hits = scored
            .into_iter()
            .take(q.limit)
            .map(|(r, relevance, performance)| {
                let key = self.agents.get(&r.agent_id).map(|s| s.key);
                let explanation = DiscoverExplanation {
                    matched_capabilities: capability_names(r)
                        .into_iter()
                        .filter(|c| wanted.contains(c))
                        .collect(),
                    matched_words: q
                        .text_words
                        .iter()
                        .filter(|w| {
                            key.is_some_and(|k| self.index.get(Field::Word, w).contains(&k))
                        })
                        .cloned()
                        .collect(),
                    relevance,
                    performance,
                };
                (r.clone(), explanation)
            })
            .collect();
        DiscoverOutcome { hits, counts }
    }
}

/// Normalizes a list of names or tags, dropping empties and duplicates.
pub fn normalize_all(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = v
        .iter()
        .map(|s| normalize(s))
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}
