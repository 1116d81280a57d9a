//! Read-side queries: listing with cursors, capability search, stats.
//!
//! Every query starts from index postings (smallest set first) and only then
//! looks at records, so its cost follows the size of the answer's candidate
//! set, not the size of the fleet.

use std::collections::BTreeMap;

use registry_types::api::{CapabilityMatch, ListFilter, MatchKind, Stats};
use registry_types::{AgentId, AgentRecord, AgentStatus, VariantArray};

use crate::index::{normalize, words, Field, Postings};
use crate::machine::RegistryState;

/// Largest page of a listing or search.
pub const MAX_PAGE: usize = 1000;

impl RegistryState {
    /// The posting sets a listing filter implies, one per given filter.
    fn filter_sets(&self, f: &ListFilter) -> Vec<&Postings> {
        let mut sets = Vec::new();
        if let Some(s) = f.status {
            sets.push(self.index.get(Field::Status, s.into_str()));
        }
        if let Some(c) = &f.capability {
            sets.push(self.index.get(Field::CapabilityName, &normalize(c)));
        }
        if let Some(t) = &f.tag {
            sets.push(self.index.get(Field::AgentTag, &normalize(t)));
        }
        if let Some(t) = &f.agent_type {
            sets.push(self.index.get(Field::AgentType, &normalize(t)));
        }
        if let Some(r) = &f.runtime_id {
            sets.push(self.index.get(Field::Runtime, r));
        }
        sets
    }

    /// One page of agents matching every filter, ordered by id, starting
    /// after `cursor` (an agent id). Returns the page and the next cursor.
    pub fn list(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<AgentRecord>, Option<String>) {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut sets = self.filter_sets(filter);
        sets.sort_by_key(|s| s.len());
        let after = |id: &AgentId| cursor.is_none_or(|c| id.as_str() > c);
        let mut page: Vec<AgentRecord> = Vec::with_capacity(limit + 1);
        match sets.split_first() {
            None => {
                let start = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                let range = self
                    .agents
                    .range::<str, _>((start, std::ops::Bound::Unbounded))
                    .take(limit + 1);
                page.extend(range.filter_map(|(_, k)| self.resolve(*k)).cloned());
            }
            // A small candidate set: resolve, sort, cut.
            Some((smallest, rest)) if smallest.len() * 8 <= self.agents.len().max(1) as u64 => {
                let mut hits: Vec<&AgentRecord> = smallest
                    .iter()
                    .filter(|&k| rest.iter().all(|s| s.contains(k)))
                    .filter_map(|k| self.resolve(k))
                    .filter(|r| after(&r.agent_id))
                    .collect();
                hits.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
                page.extend(hits.into_iter().take(limit + 1).cloned());
            }
            // A large candidate set: walk the table in id order instead of
            // sorting most of the fleet for one page.
            Some(_) => {
                let start = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                let walk = self
                    .agents
                    .range::<str, _>((start, std::ops::Bound::Unbounded))
                    .filter(|&(_, &k)| sets.iter().all(|set| set.contains(k)))
                    .filter_map(|(_, k)| self.resolve(*k))
                    .take(limit + 1);
                page.extend(walk.cloned());
            }
        }
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|r| r.agent_id.to_string())
        } else {
            None
        };
        (page, next)
    }

    /// Capability search: case-insensitive; a capability matches when its
    /// name equals `q` (exact), one of its tags equals or contains `q` (tag),
    /// its name contains `q` (name) or its description contains `q`
    /// (description). Ordered by match kind, then agent id, then the
    /// capability's position in the record.
    pub fn search_capabilities(
        &self,
        q: &str,
        status: Option<AgentStatus>,
        limit: usize,
    ) -> Vec<CapabilityMatch> {
        let q = normalize(q);
        if q.is_empty() {
            return Vec::new();
        }
        let candidates = self.search_candidates(&q);
        let status_set = status.map(|s| self.index.get(Field::Status, s.into_str()));
        let mut hits = Vec::new();
        for key in candidates {
            if status_set.is_some_and(|s| !s.contains(key)) {
                continue;
            }
            let Some(record) = self.resolve(key) else {
                continue;
            };
            for (pos, cap) in record.capabilities.iter().enumerate() {
                if let Some(kind) = match_capability(&q, cap) {
                    hits.push((kind, record, pos));
                }
            }
        }
        hits.sort_by(|a, b| (a.0, &a.1.agent_id, a.2).cmp(&(b.0, &b.1.agent_id, b.2)));
        hits.into_iter()
            .take(limit.clamp(1, MAX_PAGE))
            .map(|(kind, r, pos)| {
                let cap = r.capabilities[pos].clone();
                CapabilityMatch {
                    agent_id: r.agent_id.clone(),
                    agent_name: r.name.clone(),
                    status: r.status,
                    endpoint: r.endpoint.clone(),
                    cost_estimate: cap.cost_estimate.clone(),
                    capability: cap,
                    match_kind: kind,
                }
            })
            .collect()
    }

    /// Agents that may match `q` (normalized): a superset of the true
    /// matches, built from the index. Every word of `q` lies inside some
    /// indexed word of a matching text, so the agents under all vocabulary
    /// words containing `q`'s longest word cover every match.
    fn search_candidates(&self, q: &str) -> Postings {
        let mut out: Postings = Postings::default();
        out |= self.index.get(Field::CapabilityName, q);
        let q_words: Vec<String> = words(q).collect();
        match q_words.iter().max_by_key(|w| w.len()) {
            Some(longest) => {
                for (word, set) in self.index.keys_of(Field::Word) {
                    if word.contains(longest.as_str()) {
                        out |= set;
                    }
                }
            }
            // No alphanumeric character in the query: nothing indexed can
            // narrow it, so every agent is a candidate.
            None => out.extend(self.agents.values().copied()),
        }
        out
    }

    /// Registry-wide counts and the replicated counters. The node adds the
    /// discovery requests it served and has not reported yet.
    pub fn stats(&self) -> Stats {
        let mut by_status = BTreeMap::new();
        for &s in AgentStatus::VARIANTS {
            let n = self.index.get(Field::Status, s.into_str()).len();
            if n > 0 {
                by_status.insert(s, n);
            }
        }
        let capability_distribution: BTreeMap<String, u64> = self
            .index
            .keys_of(Field::CapabilityName)
            .map(|(name, set)| (name.to_string(), set.len()))
            .collect();
        let count = |s: AgentStatus| by_status.get(&s).copied().unwrap_or(0);
        let c = self.counters;
        Stats {
            total_agents: self.agents.len() as u64,
            registered_agents: self.agents.len() as u64,
            active_agents: count(AgentStatus::Active),
            offline_agents: count(AgentStatus::Offline),
            degraded_agents: count(AgentStatus::Degraded),
            agents_by_status: by_status,
            total_registrations: self.total_registrations,
            total_capabilities: self.total_capabilities,
            capabilities_distribution: capability_distribution.clone(),
            capability_distribution,
            discovery_requests: c.discovery_requests,
            service_discovery_requests: c.discovery_requests,
            health_checks_performed: c.heartbeats,
            failed_health_checks: c.missed_heartbeat_transitions,
            auto_scaling_events: c.advisories_raised,
            health_distribution: self.health_distribution(),
            revision: self.revision,
        }
    }

    /// Agents per band of health score (see `Stats::health_distribution`):
    /// one pass over the records.
    pub fn health_distribution(&self) -> BTreeMap<String, u64> {
        let mut bands = [0u64; HEALTH_BANDS.len()];
        for r in self.records() {
            bands[health_band(r.health_score)] += 1;
        }
        HEALTH_BANDS
            .iter()
            .zip(bands)
            .map(|(name, n)| (name.to_string(), n))
            .collect()
    }

    /// Counts the agents of a posting set by status (one lookup per status).
    fn by_status(&self, set: &Postings) -> BTreeMap<AgentStatus, u64> {
        let mut out = BTreeMap::new();
        for &s in AgentStatus::VARIANTS {
            let n = set.intersection_len(self.index.get(Field::Status, s.into_str()));
            if n > 0 {
                out.insert(s, n);
            }
        }
        out
    }

    /// The keys of `field` after `cursor`, in order, at most `limit` (1 to
    /// [`MAX_PAGE`]), and the cursor of the next page when more follow.
    /// Only the page's keys are sorted; the rest are compared once.
    fn key_page(
        &self,
        field: Field,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(&str, &Postings)>, Option<String>) {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut keys: Vec<(&str, &Postings)> = self
            .index
            .keys_of(field)
            .filter(|(k, set)| !set.is_empty() && cursor.is_none_or(|c| *k > c))
            .collect();
        let more = keys.len() > limit;
        if more {
            keys.select_nth_unstable_by(limit, |a, b| a.0.cmp(b.0));
            keys.truncate(limit);
        }
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let next = if more {
            keys.last().map(|(k, _)| k.to_string())
        } else {
            None
        };
        (keys, next)
    }

    /// One page of capability names after `cursor`, by name, with their
    /// agent counts by status; the next page's cursor when more follow.
    pub fn capability_summaries(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<registry_types::api::CapabilitySummary>, Option<String>) {
        let (keys, next) = self.key_page(Field::CapabilityName, cursor, limit);
        let page = keys
            .into_iter()
            .map(|(name, set)| registry_types::api::CapabilitySummary {
                name: name.to_string(),
                agents: set.len(),
                by_status: self.by_status(set),
            })
            .collect();
        (page, next)
    }

    /// One page of runtimes after `cursor`, by id, with their agent counts
    /// by status; the next page's cursor when more follow.
    pub fn runtime_summaries(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<registry_types::api::RuntimeSummary>, Option<String>) {
        let (keys, next) = self.key_page(Field::Runtime, cursor, limit);
        let page = keys
            .into_iter()
            .map(|(id, set)| registry_types::api::RuntimeSummary {
                runtime_id: id.to_string(),
                agents: set.len(),
                by_status: self.by_status(set),
            })
            .collect();
        (page, next)
    }

    /// One runtime: its counts and its agents in id order.
    pub fn runtime(
        &self,
        id: &str,
    ) -> Option<(registry_types::api::RuntimeSummary, Vec<AgentRecord>)> {
        let set = self.index.get(Field::Runtime, id);
        if set.is_empty() {
            return None;
        }
        let mut agents: Vec<AgentRecord> = set
            .iter()
            .filter_map(|k| self.resolve(k))
            .cloned()
            .collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let summary = registry_types::api::RuntimeSummary {
            runtime_id: id.to_string(),
            agents: set.len(),
            by_status: self.by_status(set),
        };
        Some((summary, agents))
    }

    /// Number of agents with `status`: O(1).
    pub fn count_status(&self, status: AgentStatus) -> usize {
        self.index.get(Field::Status, status.into_str()).len() as usize
    }

    /// Capabilities over all agents (an agent with three counts three):
    /// kept up to date by apply, O(1).
    pub fn total_capabilities(&self) -> u64 {
        self.total_capabilities
    }

    /// The `k` capability names held by the most agents, most first (ties
    /// by name), with their agent counts. One pass over the distinct
    /// names (not the agents), keeping `k` at a time.
    pub fn top_capabilities(&self, k: usize) -> Vec<(String, u64)> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if k == 0 {
            return Vec::new();
        }
        // A min-heap of the best `k` so far: (count, Reverse(name)) so the
        // weakest (fewest agents, then the last name) is on top.
        let mut heap: BinaryHeap<Reverse<(u64, Reverse<&str>)>> = BinaryHeap::with_capacity(k + 1);
        for (name, set) in self.index.keys_of(Field::CapabilityName) {
            let n = set.len();
            if n == 0 {
                continue;
            }
            heap.push(Reverse((n, Reverse(name))));
            if heap.len() > k {
                heap.pop();
            }
        }
        let mut top: Vec<(String, u64)> = heap
            .into_iter()
            .map(|Reverse((n, Reverse(name)))| (name.to_string(), n))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top
    }

    /// Agents whose capability name equals `name` (normalized): O(1) lookup.
    pub fn agents_with_capability(&self, name: &str) -> Vec<&AgentRecord> {
        let mut out: Vec<&AgentRecord> = self
            .index
            .get(Field::CapabilityName, &normalize(name))
            .iter()
            .filter_map(|k| self.resolve(k))
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }
}

/// How `cap` matches the normalized query, if it does.
pub fn match_capability(q: &str, cap: &registry_types::Capability) -> Option<MatchKind> {
    let name = normalize(&cap.name);
    if name == q {
        return Some(MatchKind::Exact);
    }
    if cap.tags.iter().map(|t| normalize(t)).any(|t| t.contains(q)) {
        return Some(MatchKind::Tag);
    }
    if name.contains(q) {
        return Some(MatchKind::Name);
    }
    if normalize(&cap.description).contains(q) {
        return Some(MatchKind::Description);
    }
    None
}

/// Names of the health-score bands of `Stats::health_distribution`.
pub const HEALTH_BANDS: [&str; 5] = ["0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0"];

/// The band of a health score: `[0, 0.2)`, `[0.2, 0.4)`, `[0.4, 0.6)`,
/// `[0.6, 0.8)`, `[0.8, 1]`. Scores are validated to lie in 0..=1; anything
/// else (never stored) falls in the nearest band.
pub fn health_band(score: f64) -> usize {
    if score >= 0.8 {
        4
    } else if score >= 0.6 {
        3
    } else if score >= 0.4 {
        2
    } else if score >= 0.2 {
        1
    } else {
        0
    }
}
