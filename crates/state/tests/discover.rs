//! Discovery equals a brute-force filter and sort over every agent, for
//! random fleets and random queries.

mod common;

use std::cmp::Ordering;

use proptest::prelude::*;
use registry_state::discover::{performance, Discover, SortBy};
use registry_state::RegistryState;
use registry_types::{AgentRecord, AgentStatus};

use common::{cap, norm, reg, register};

const CAPS: [&str; 5] = [
    "Trading",
    "risk management",
    "python code",
    "translation",
    "web search",
];
const TAGS: [&str; 4] = ["crypto", "fx", "fast", "eu"];
const WORDS: [&str; 6] = ["trading", "risk", "python", "code", "search", "nothing"];
const STATUSES: [AgentStatus; 4] = [
    AgentStatus::Active,
    AgentStatus::Busy,
    AgentStatus::Degraded,
    AgentStatus::Unhealthy,
];

#[derive(Clone, Debug)]
struct Spec {
    caps: Vec<usize>,
    cap_tags: Vec<usize>,
    tags: Vec<usize>,
    agent_type: usize,
    runtime: usize,
    status: usize,
    health: u8,
    load: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(0..CAPS.len(), 0..3),
        prop::collection::vec(0..TAGS.len(), 0..2),
        prop::collection::vec(0..TAGS.len(), 0..2),
        0..3usize,
        0..3usize,
        0..STATUSES.len(),
        0..=10u8,
        0..=10u8,
    )
        .prop_map(
            |(caps, cap_tags, tags, agent_type, runtime, status, health, load)| Spec {
                caps,
                cap_tags,
                tags,
                agent_type,
                runtime,
                status,
                health,
                load,
            },
        )
}

fn fleet(specs: &[Spec]) -> RegistryState {
    let mut s = RegistryState::default();
    for (i, sp) in specs.iter().enumerate() {
        let mut c = reg(&format!("a{i:03}"), i as i64 + 1);
        c.capabilities = sp
            .caps
            .iter()
            .map(|&k| {
                let tags: Vec<&str> = sp.cap_tags.iter().map(|&t| TAGS[t]).collect();
                cap(CAPS[k], &format!("does {} well", CAPS[k]), &tags)
            })
            .collect();
        c.tags = sp.tags.iter().map(|&t| TAGS[t].to_string()).collect();
        c.agent_type = ["llm", "tool", "Orchestrator"][sp.agent_type].into();
        c.runtime_id = format!("rt{}", sp.runtime);
        c.status = Some(STATUSES[sp.status]).filter(|s| s.is_agent_reportable());
        c.health_score = Some(f64::from(sp.health) / 10.0);
        c.load_factor = Some(f64::from(sp.load) / 10.0);
        s.apply(i as u64 + 1, &register(c));
        if STATUSES[sp.status] == AgentStatus::Unhealthy {
            s.apply(
                1000 + i as u64,
                &common::set_status(&format!("a{i:03}"), AgentStatus::Unhealthy, 5000),
            );
        }
    }
    s
}

fn words_of(r: &AgentRecord) -> Vec<String> {
    let mut text = String::new();
    for c in &r.capabilities {
        text.push_str(&format!(
            " {} {} {}",
            c.name,
            c.description,
            c.tags.join(" ")
        ));
    }
    text.push_str(&format!(" {}", r.tags.join(" ")));
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// The same query answered by looking at every record. A query without a
/// single term matches nothing (the server refuses it with 400).
fn brute(state: &RegistryState, q: &Discover) -> Vec<String> {
    let no_terms = q.capabilities.is_empty()
        && q.any_capabilities.is_empty()
        && q.text_words.is_empty()
        && q.tags.is_empty()
        && q.agent_type.is_none()
        && q.runtime_id.is_none();
    if no_terms {
        return Vec::new();
    }
    let cap_names = |r: &AgentRecord| {
        r.capabilities
            .iter()
            .map(|c| norm(&c.name))
            .collect::<Vec<_>>()
    };
    let has_tag = |r: &AgentRecord, t: &str| {
        r.tags.iter().any(|x| norm(x) == t)
            || r.capabilities
                .iter()
                .any(|c| c.tags.iter().any(|x| norm(x) == t))
    };
    let mut hits: Vec<(&AgentRecord, f64)> = state
        .records()
        .filter(|r| q.capabilities.iter().all(|c| cap_names(r).contains(c)))
        .filter(|r| {
            q.any_capabilities.is_empty()
                || q.any_capabilities.iter().any(|c| cap_names(r).contains(c))
        })
        .filter(|r| q.tags.iter().all(|t| has_tag(r, t)))
        .filter(|r| {
            q.agent_type
                .as_ref()
                .is_none_or(|t| norm(&r.agent_type) == *t)
        })
        .filter(|r| q.runtime_id.as_ref().is_none_or(|x| r.runtime_id == *x))
        .filter(|r| q.text_words.is_empty() || q.text_words.iter().any(|w| words_of(r).contains(w)))
        .filter(|r| q.statuses.contains(&r.status))
        .filter(|r| r.health_score >= q.min_health_score && r.load_factor <= q.max_load_factor)
        .map(|r| {
            let rel = if q.text_words.is_empty() {
                0.0
            } else {
                q.text_words
                    .iter()
                    .filter(|w| words_of(r).contains(w))
                    .count() as f64
                    / q.text_words.len() as f64
            };
            (r, rel)
        })
        .collect();
    let desc = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
    hits.sort_by(|a, b| {
        let p = match q.sort_by {
            SortBy::Performance => desc(performance(a.0), performance(b.0)),
            SortBy::Health => desc(a.0.health_score, b.0.health_score),
            SortBy::Load => {
                a.0.load_factor
                    .partial_cmp(&b.0.load_factor)
                    .unwrap_or(Ordering::Equal)
            }
            SortBy::Relevance => desc(a.1, b.1).then(desc(performance(a.0), performance(b.0))),
            SortBy::Random => Ordering::Equal,
        };
        p.then_with(|| a.0.agent_id.cmp(&b.0.agent_id))
    });
    hits.into_iter()
        .take(q.limit)
        .map(|(r, _)| r.agent_id.to_string())
        .collect()
}

fn query() -> impl Strategy<Value = Discover> {
    (
        prop::collection::vec(0..CAPS.len(), 0..2),
        prop::collection::vec(0..CAPS.len(), 0..3),
        prop::collection::vec(0..WORDS.len(), 0..3),
        prop::collection::vec(0..TAGS.len(), 0..2),
        prop::option::of(0..3usize),
        prop::option::of(0..3usize),
        prop::collection::vec(0..STATUSES.len(), 1..3),
        (0..=10u8, 0..=10u8),
        prop::sample::select(vec![
            SortBy::Performance,
            SortBy::Health,
            SortBy::Load,
            SortBy::Relevance,
        ]),
        1..20usize,
    )
        .prop_map(
            |(caps, any, words, tags, ty, rt, st, (h, l), sort_by, limit)| Discover {
                capabilities: caps.iter().map(|&c| norm(CAPS[c])).collect(),
                any_capabilities: any.iter().map(|&c| norm(CAPS[c])).collect(),
                text_words: words.iter().map(|&w| WORDS[w].to_string()).collect(),
                tags: tags.iter().map(|&t| TAGS[t].to_string()).collect(),
                agent_type: ty.map(|t| ["llm", "tool", "orchestrator"][t].to_string()),
                runtime_id: rt.map(|r| format!("rt{r}")),
                statuses: st.iter().map(|&s| STATUSES[s]).collect(),
                min_health_score: f64::from(h) / 10.0,
                max_load_factor: f64::from(l) / 10.0,
                sort_by,
                limit,
                seed: 7,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn discover_equals_a_brute_force_scan(specs in prop::collection::vec(spec(), 0..40), q in query()) {
        let state = fleet(&specs);
        let got: Vec<String> = state.discover(&q).hits.iter().map(|(r, _)| r.agent_id.to_string()).collect();
        prop_assert_eq!(got, brute(&state, &q));
    }

    #[test]
    fn random_order_returns_the_same_set(specs in prop::collection::vec(spec(), 0..40), q in query()) {
        let state = fleet(&specs);
        let mut q = q;
        q.limit = 1000;
        let mut sorted = q.clone();
        sorted.sort_by = SortBy::Performance;
        q.sort_by = SortBy::Random;
        let mut a: Vec<String> = state.discover(&q).hits.iter().map(|(r, _)| r.agent_id.to_string()).collect();
        let mut b: Vec<String> = state.discover(&sorted).hits.iter().map(|(r, _)| r.agent_id.to_string()).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn explain_counts_what_each_filter_dropped() {
    let specs = vec![
        Spec {
            caps: vec![0],
            cap_tags: vec![],
            tags: vec![0],
            agent_type: 0,
            runtime: 0,
            status: 0,
            health: 9,
            load: 1,
        },
        Spec {
            caps: vec![0],
            cap_tags: vec![],
            tags: vec![0],
            agent_type: 0,
            runtime: 0,
            status: 3,
            health: 9,
            load: 1,
        },
        Spec {
            caps: vec![0],
            cap_tags: vec![],
            tags: vec![0],
            agent_type: 0,
            runtime: 0,
            status: 0,
            health: 2,
            load: 1,
        },
        Spec {
            caps: vec![0],
            cap_tags: vec![],
            tags: vec![0],
            agent_type: 0,
            runtime: 0,
            status: 0,
            health: 9,
            load: 9,
        },
        Spec {
            caps: vec![1],
            cap_tags: vec![],
            tags: vec![0],
            agent_type: 0,
            runtime: 0,
            status: 0,
            health: 9,
            load: 1,
        },
    ];
    let state = fleet(&specs);
    let q = Discover {
        capabilities: vec!["trading".into()],
        any_capabilities: vec![],
        text_words: vec![],
        tags: vec!["crypto".into()],
        agent_type: None,
        runtime_id: None,
        statuses: vec![AgentStatus::Active],
        min_health_score: 0.5,
        max_load_factor: 0.8,
        sort_by: SortBy::Performance,
        limit: 10,
        seed: 1,
    };
    let out = state.discover(&q);
    assert_eq!(out.counts.candidates, 4, "{:?}", out.counts);
    assert_eq!(out.counts.dropped_by_status, 1);
    assert_eq!(out.counts.dropped_by_health, 1);
    assert_eq!(out.counts.dropped_by_load, 1);
    assert_eq!(out.counts.qualified, 1);
    assert_eq!(out.hits.len(), 1);
    assert_eq!(out.hits[0].0.agent_id.as_str(), "a000");
    assert_eq!(
        out.hits[0].1.matched_capabilities,
        vec!["trading".to_string()]
    );
    assert!((out.hits[0].1.performance - 0.81).abs() < 1e-9);
}
