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
//!
//! Two passes give the same hits in the same order:
//! - [`RegistryState::discover`] looks at every candidate of the driving
//!   constraint, so it can count what each filter dropped (`explain`), then
//!   selects the best `limit` (a partial selection, not a full sort).
//! - [`RegistryState::discover_hits`], for a query sorted by performance,
//!   load or health with a required capability, walks that capability's
//!   ordering ([`crate::ranked`]) from the best agent and stops at the
//!   `limit`-th agent that passes every constraint and filter: its cost
//!   follows `limit`, not the number of agents that can do the job. Other
//!   queries fall back to the full pass.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use registry_types::api::{DiscoverExplanation, DiscoverFilterCounts};
use registry_types::card::media_major;
pub use registry_types::card::{normalize_binding, normalize_media_type};
use registry_types::{AgentRecord, AgentStatus};

use crate::index::{normalize, AgentKey, Field, Postings};
use crate::machine::{capability_names, RegistryState};
use crate::ranked::{ascending, descending, performance_of, Order, Ranked};

/// How discovery orders the agents that qualify; one of the wire types.
pub use registry_types::query::SortBy;

/// A validated discovery query (names, tags and words already normalized).
#[derive(Clone, Debug)]
pub struct Discover {
    pub capabilities: Vec<String>,
    pub any_capabilities: Vec<String>,
    pub text_words: Vec<String>,
    pub tags: Vec<String>,
    pub agent_type: Option<String>,
    pub runtime_id: Option<String>,
    /// A2A skill ids (trimmed), all required.
    pub skills: Vec<String>,
    /// Media types (normalized, [`normalize_media_type`]) the agent must
    /// all accept.
    pub input_modes: Vec<String>,
    /// Media types the agent must all produce.
    pub output_modes: Vec<String>,
    /// Protocol bindings (normalized), at least one required.
    pub bindings: Vec<String>,
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
    performance_of(r.health_score, r.load_factor)
}

fn random_rank(seed: u64, id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// One hit: the record and why it matched.
pub type DiscoverHitOf = (AgentRecord, DiscoverExplanation);

/// A qualified candidate of the full pass, with its sort keys computed once.
struct Scored<'a> {
    key: AgentKey,
    record: &'a AgentRecord,
    relevance: f64,
    performance: f64,
    random: u64,
}

/// A walk over a capability's ordering longer than this many times the
/// smallest other constraint is left to the full pass, whose cost follows
/// that constraint's size (see `discover_ranked`).
const WALK_FACTOR: usize = 4;

impl RegistryState {
    /// The query's constraints: the agent must be in at least one set of
    /// each. The required capabilities come first, in query order (the
    /// ranked walk relies on it).
    fn constraints<'a>(&'a self, q: &Discover) -> Vec<Vec<&'a Postings>> {
        let mut constraints: Vec<Vec<&Postings>> = Vec::new();
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
        for s in &q.skills {
            constraints.push(vec![self.index.get(Field::SkillId, s)]);
        }
        for m in &q.input_modes {
            constraints.push(self.mode_sets(Field::InputMode, Field::InputMajor, m));
        }
        for m in &q.output_modes {
            constraints.push(self.mode_sets(Field::OutputMode, Field::OutputMajor, m));
        }
        if !q.bindings.is_empty() {
            constraints.push(
                q.bindings
                    .iter()
                    .map(|b| self.index.get(Field::Binding, b))
                    .collect(),
            );
        }
        constraints
    }

    /// The agents that accept (or produce) media type `m`, normalized,
    /// with wildcards matching both ways: `*/*` asked is every agent with
    /// a type (the `*` key of `major`); `text/*` asked is every agent with
    /// a `text/...` type (or `text/*`) and those with `*/*`; a concrete type
    /// is the agents declaring it, its `type/*` or `*/*`.
    pub(crate) fn mode_sets(&self, exact: Field, major: Field, m: &str) -> Vec<&Postings> {
        if m == "*/*" {
            vec![self.index.get(major, "*")]
        } else if let Some(t) = m.strip_suffix("/*") {
            vec![self.index.get(major, t), self.index.get(exact, "*/*")]
        } else {
            let family = format!("{}/*", media_major(m));
            vec![
                self.index.get(exact, m),
                self.index.get(exact, &family),
                self.index.get(exact, "*/*"),
            ]
        }
    }

    /// Runs a discovery query with exact filter counts (what `explain`
    /// returns): every candidate of the smallest constraint is looked at.
    /// The hits come from the ranked walk when the query suits it (see
    /// [`discover_hits`](Self::discover_hits)), the candidates then only
    /// being counted; otherwise the best `limit` candidates are selected
    /// (not the whole list sorted).
    pub fn discover(&self, q: &Discover) -> DiscoverOutcome {
        let ranked = self.discover_ranked(q);
        let empty: Postings = Postings::default();
        let mut constraints = self.constraints(q);
        if constraints.is_empty() {
            constraints.push(vec![&empty]);
        }
        let size = |c: &Vec<&Postings>| c.iter().map(|s| s.len() as usize).sum::<usize>();
        let driver = (0..constraints.len())
            .min_by_key(|&i| size(&constraints[i]))
            .unwrap_or(0);
        // Only a union of several sets can yield an agent twice.
        let union = constraints[driver].len() > 1;
        let mut seen: Postings = Postings::default();
        let mut counts = DiscoverFilterCounts::default();
        let mut qualified: Vec<(AgentKey, &AgentRecord)> = Vec::new();
        for set in &constraints[driver] {
            for key in set.iter() {
                if union && !seen.insert(key) {
                    continue;
                }
                let all = constraints
                    .iter()
                    .enumerate()
                    .all(|(i, c)| i == driver || c.iter().any(|s| s.contains(key)));
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
                    counts.qualified += 1;
                    if ranked.is_none() {
                        qualified.push((key, r));
                    }
                }
            }
        }
        if let Some(hits) = ranked {
            return DiscoverOutcome { hits, counts };
        }
        let words = self.word_sets(q);
        let mut scored: Vec<Scored> = qualified
            .into_iter()
            .map(|(key, r)| Scored {
                key,
                record: r,
                relevance: if q.sort_by == SortBy::Relevance {
                    relevance(&words, key)
                } else {
                    0.0
                },
                performance: performance(r),
                random: if q.sort_by == SortBy::Random {
                    random_rank(q.seed, r.agent_id.as_str())
                } else {
                    0
                },
            })
            .collect();
        let desc = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
        // A total order (ids are unique), so selecting the first `limit`
        // and sorting them gives exactly the head of the fully sorted list.
        let order = |a: &Scored, b: &Scored| {
            let primary = match q.sort_by {
                SortBy::Performance => desc(a.performance, b.performance),
                SortBy::Health => desc(a.record.health_score, b.record.health_score),
                SortBy::Load => a
                    .record
                    .load_factor
                    .partial_cmp(&b.record.load_factor)
                    .unwrap_or(Ordering::Equal),
                SortBy::Relevance => {
                    desc(a.relevance, b.relevance).then(desc(a.performance, b.performance))
                }
                SortBy::Random => a.random.cmp(&b.random),
            };
            primary.then_with(|| a.record.agent_id.cmp(&b.record.agent_id))
        };
        let k = q.limit.min(scored.len());
        if k > 0 && k < scored.len() {
            scored.select_nth_unstable_by(k - 1, order);
        }
        scored.truncate(k);
        scored.sort_unstable_by(order);
        let hits = scored
            .into_iter()
            .map(|s| self.hit(q, &words, s.key, s.record, s.performance))
            .collect();
        DiscoverOutcome { hits, counts }
    }

    /// The hits of [`discover`](Self::discover), without its filter counts,
    /// which lets a query sorted by performance, load or health with at
    /// least one required capability walk that capability's ordering from
    /// the best agent and stop after `limit` hits. Any other query takes
    /// the full pass. Same agents in the same order as `discover`.
    pub fn discover_hits(&self, q: &Discover) -> Vec<DiscoverHitOf> {
        match self.discover_ranked(q) {
            Some(hits) => hits,
            None => self.discover(q).hits,
        }
    }

    /// The ranked walk, or `None` when the query does not suit it.
    fn discover_ranked(&self, q: &Discover) -> Option<Vec<DiscoverHitOf>> {
        let pick: fn(&Ranked) -> &Order = match q.sort_by {
            SortBy::Performance => |r| &r.by_performance,
            SortBy::Load => |r| &r.by_load,
            SortBy::Health => |r| &r.by_health,
            SortBy::Random | SortBy::Relevance => return None,
        };
        // The required capability with the fewest agents drives.
        let mut driver: Option<(usize, &Ranked)> = None;
        for (i, c) in q.capabilities.iter().enumerate() {
            let Some(r) = self.ranked.get(c) else {
                // Nobody has this capability: nothing qualifies.
                return Some(Vec::new());
            };
            if driver.is_none_or(|(_, d)| r.len() < d.len()) {
                driver = Some((i, r));
            }
        }
        let (driver, ranked) = driver?;
        let mut others = self.constraints(q);
        others.remove(driver);
        // The walk may pass over many agents that fail another constraint;
        // when one is much smaller than the walk, checking its agents is
        // cheaper.
        let smallest_other = others
            .iter()
            .map(|c| c.iter().map(|s| s.len() as usize).sum::<usize>())
            .min();
        if smallest_other.is_some_and(|n| n.saturating_mul(WALK_FACTOR) < ranked.len()) {
            return None;
        }
        // Past this sort key nothing can pass the health or load filter, so
        // the walk ends there. For performance: an agent that passes has
        // health ≥ min_health ≥ 0 and 1 − load ≥ 1 − max_load ≥ 0, so its
        // performance is at least min_health × (1 − max_load) (floating
        // point rounding is monotone, so this holds for the computed values).
        let stop = match q.sort_by {
            SortBy::Performance => (q.min_health_score >= 0.0 && q.max_load_factor <= 1.0)
                .then(|| descending(performance_of(q.min_health_score, q.max_load_factor))),
            SortBy::Load => Some(ascending(q.max_load_factor)),
            SortBy::Health => Some(descending(q.min_health_score)),
            SortBy::Random | SortBy::Relevance => None,
        };
        let mut found: Vec<(AgentKey, &AgentRecord)> = Vec::with_capacity(q.limit.min(1024));
        if q.limit > 0 {
            for (&(sort_key, _), &key) in pick(ranked) {
                if stop.is_some_and(|s| sort_key > s) {
                    break;
                }
                if !others.iter().all(|c| c.iter().any(|s| s.contains(key))) {
                    continue;
                }
                let Some(r) = self.resolve(key) else { continue };
                if q.statuses.contains(&r.status)
                    && r.health_score >= q.min_health_score
                    && r.load_factor <= q.max_load_factor
                {
                    found.push((key, r));
                    if found.len() >= q.limit {
                        break;
                    }
                }
            }
        }
        let words = self.word_sets(q);
        Some(
            found
                .into_iter()
                .map(|(key, r)| self.hit(q, &words, key, r, performance(r)))
                .collect(),
        )
    }

    /// The posting sets of the query's text words, looked up once.
    fn word_sets<'a>(&'a self, q: &'a Discover) -> Vec<(&'a String, &'a Postings)> {
        q.text_words
            .iter()
            .map(|w| (w, self.index.get(Field::Word, w)))
            .collect()
    }

    /// A hit with its explanation.
    fn hit(
        &self,
        q: &Discover,
        words: &[(&String, &Postings)],
        key: AgentKey,
        r: &AgentRecord,
        performance: f64,
    ) -> DiscoverHitOf {
        let wanted: HashSet<&String> = q.capabilities.iter().chain(&q.any_capabilities).collect();
        let explanation = DiscoverExplanation {
            matched_capabilities: capability_names(r)
                .into_iter()
                .filter(|c| wanted.contains(c))
                .collect(),
            matched_words: words
                .iter()
                .filter(|(_, set)| set.contains(key))
                .map(|(w, _)| (*w).clone())
                .collect(),
            relevance: relevance(words, key),
            performance,
        };
        (r.clone(), explanation)
    }
}

/// The share of the query's words that agent `key` carries (0 without
/// words).
fn relevance(words: &[(&String, &Postings)], key: AgentKey) -> f64 {
    if words.is_empty() {
        return 0.0;
    }
    let matched = words.iter().filter(|(_, set)| set.contains(key)).count();
    matched as f64 / words.len() as f64
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
