//! The A2A Agent Cards of the fleet, listed by what they say
//! (`GET /v1/agent-cards`): skill, tag, accepted and produced media types,
//! protocol binding, words, status. Answered from the index like the other
//! listings: the smallest posting set drives, the others are checked by
//! membership, and no query scans the fleet unless a filter matches most
//! of it (then the table is walked in id order and the walk stops at the
//! page's end).

use registry_types::api::AgentCardEntry;
use registry_types::card::{card_is_live, normalize_binding, normalize_media_type};
use registry_types::query::CardFilter;
use registry_types::AgentRecord;

use crate::index::{normalize, words, Field, Postings};
use crate::machine::RegistryState;
use crate::query::MAX_PAGE;

impl RegistryState {
    /// The constraints a card filter implies: the agent must be in at
    /// least one set of each. The first is "has a card".
    fn card_constraints(&self, f: &CardFilter) -> Vec<Vec<&Postings>> {
        let mut c: Vec<Vec<&Postings>> = vec![vec![self.index.get(Field::HasCard, "")]];
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if let Some(s) = given(&f.skill) {
            c.push(vec![self.index.get(Field::SkillId, &s)]);
        }
        if let Some(t) = given(&f.tag).map(|t| normalize(&t)) {
            c.push(vec![
                self.index.get(Field::AgentTag, &t),
                self.index.get(Field::CapabilityTag, &t),
                self.index.get(Field::SkillTag, &t),
            ]);
        }
        if let Some(m) = given(&f.input_mode) {
            c.push(self.mode_sets(
                Field::InputMode,
                Field::InputMajor,
                &normalize_media_type(&m),
            ));
        }
        if let Some(m) = given(&f.output_mode) {
            c.push(self.mode_sets(
                Field::OutputMode,
                Field::OutputMajor,
                &normalize_media_type(&m),
            ));
        }
        if let Some(b) = given(&f.binding) {
            c.push(vec![self.index.get(Field::Binding, &normalize_binding(&b))]);
        }
        for w in f.q.as_deref().map(words).into_iter().flatten() {
            c.push(vec![self.index.get(Field::Word, &w)]);
        }
        if let Some(s) = f.status {
            c.push(vec![self.index.get(Field::Status, s.into_str())]);
        }
        c
    }

    /// One page of the cards of agents matching every filter, by agent id,
    /// after `cursor` (an agent id). Without a `status` filter only live
    /// agents ([`card_is_live`]) are listed. Returns the page and the next
    /// cursor.
    pub fn list_cards(
        &self,
        f: &CardFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<AgentCardEntry>, Option<String>) {
        let limit = limit.clamp(1, MAX_PAGE);
        let constraints = self.card_constraints(f);
        let size = |c: &Vec<&Postings>| c.iter().map(|s| s.len()).sum::<u64>();
        let driver = (0..constraints.len())
            .min_by_key(|&i| size(&constraints[i]))
            .unwrap_or(0);
        let in_all = |k: u32| {
            constraints
                .iter()
                .enumerate()
                .all(|(i, c)| i == driver || c.iter().any(|s| s.contains(k)))
        };
        let listed = |r: &AgentRecord| match f.status {
            Some(s) => r.status == s,
            None => card_is_live(r.status),
        };
        let after = |r: &AgentRecord| cursor.is_none_or(|c| r.agent_id.as_str() > c);
        let mut page: Vec<&AgentRecord> = Vec::with_capacity(limit + 1);
        if size(&constraints[driver]) * 8 <= self.agents.len().max(1) as u64 {
            // A small candidate set: resolve, sort, cut.
            let mut union = Postings::new();
            for s in &constraints[driver] {
                union |= *s;
            }
            page = union
                .iter()
                .filter(|&k| in_all(k))
                .filter_map(|k| self.resolve(k))
                .filter(|r| listed(r) && after(r))
                .collect();
            page.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
            page.truncate(limit + 1);
        } else {
            // A large one: walk the table in id order, stop at the page's end.
            use std::ops::Bound::{Excluded, Unbounded};
            let start = cursor.map_or(Unbounded, Excluded);
            page.extend(
                self.agents
                    .range::<str, _>((start, Unbounded))
                    .filter(|&(_, &k)| constraints.iter().all(|c| c.iter().any(|s| s.contains(k))))
                    .filter_map(|(_, k)| self.resolve(*k))
                    .filter(|r| listed(r))
                    .take(limit + 1),
            );
        }
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|r| r.agent_id.to_string())
        } else {
            None
        };
        let entries = page
            .into_iter()
            .filter_map(|r| {
                let card = r.agent_card.clone()?;
                Some(AgentCardEntry {
                    agent_id: r.agent_id.clone(),
                    status: r.status,
                    etag: card.etag().to_string(),
                    card,
                })
            })
            .collect();
        (entries, next)
    }
}
