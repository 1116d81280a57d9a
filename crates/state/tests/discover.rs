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

// ---- `discover_hits`: the ranked walk (performance, load, health with a
// required capability) and its fallback must give the same hits, in the same
// order and with the same explanations, as `discover` and the brute force,
// also after the records' health, load, capabilities and statuses change and
// after a snapshot round trip (which rebuilds the orderings).

/// A change to the fleet after it was registered.
#[derive(Clone, Debug)]
enum Change {
    /// `SetHealth` with a new health and/or load.
    Health(usize, Option<u8>, Option<u8>),
    /// A checkpoint entry with a new health and/or load.
    Heartbeat(usize, Option<u8>, Option<u8>),
    /// Re-registration with other capabilities (and health, load).
    Reregister(usize, Spec),
    Deregister(usize),
    Status(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let h = prop::option::of(0..=10u8);
    prop_oneof![
        (0..40usize, h.clone(), h.clone()).prop_map(|(i, a, b)| Change::Health(i, a, b)),
        (0..40usize, h.clone(), h).prop_map(|(i, a, b)| Change::Heartbeat(i, a, b)),
        (0..40usize, spec()).prop_map(|(i, s)| Change::Reregister(i, s)),
        (0..40usize).prop_map(Change::Deregister),
        (0..40usize, 0..STATUSES.len()).prop_map(|(i, s)| Change::Status(i, s)),
    ]
}

fn apply_changes(state: &mut RegistryState, changes: &[Change]) {
    let unit = |x: Option<u8>| x.map(|v| f64::from(v) / 10.0);
    for (n, c) in changes.iter().enumerate() {
        let log = 10_000 + n as u64;
        let now = 10_000 + n as i64;
        let cmd = match c {
            Change::Health(i, h, l) => {
                common::set_health(&format!("a{i:03}"), unit(*h), unit(*l), &[], now)
            }
            Change::Heartbeat(i, h, l) => {
                let mut e = common::heard(&format!("a{i:03}"), now);
                e.health_score = unit(*h);
                e.load_factor = unit(*l);
                common::checkpoint(vec![e], now)
            }
            Change::Reregister(i, sp) => {
                // Register the spec as agent i of a one-agent fleet, then
                // copy that registration under agent i's id.
                let one = fleet(std::slice::from_ref(sp));
                let r = one.records().next().expect("one agent").clone();
                let mut c = common::reg(&format!("a{i:03}"), now);
                c.capabilities = r.capabilities;
                c.tags = r.tags;
                c.agent_type = r.agent_type;
                c.runtime_id = r.runtime_id;
                c.health_score = Some(r.health_score);
                c.load_factor = Some(r.load_factor);
                register(c)
            }
            Change::Deregister(i) => common::deregister(&format!("a{i:03}"), now),
            Change::Status(i, s) => common::set_status(&format!("a{i:03}"), STATUSES[*s], now),
        };
        state.apply(log, &cmd);
    }
}

fn hit_ids(hits: &[(AgentRecord, registry_types::api::DiscoverExplanation)]) -> Vec<String> {
    hits.iter().map(|(r, _)| r.agent_id.to_string()).collect()
}

/// Checks `discover_hits` and `discover` against the brute force and each
/// other, for `q` and for the same query under every sort.
fn check_all_sorts(state: &RegistryState, q: &Discover) -> Result<(), TestCaseError> {
    for sort_by in [
        q.sort_by,
        SortBy::Performance,
        SortBy::Load,
        SortBy::Health,
        SortBy::Relevance,
    ] {
        let q = Discover {
            sort_by,
            ..q.clone()
        };
        let want = brute(state, &q);
        let fast = state.discover_hits(&q);
        let full = state.discover(&q);
        prop_assert_eq!(hit_ids(&fast), want.clone(), "discover_hits, {:?}", sort_by);
        prop_assert_eq!(hit_ids(&full.hits), want, "discover, {:?}", sort_by);
        prop_assert_eq!(&fast, &full.hits, "explanations differ, {:?}", sort_by);
    }
    // The random order is the same under both entry points.
    let q = Discover {
        sort_by: SortBy::Random,
        ..q.clone()
    };
    prop_assert_eq!(state.discover_hits(&q), state.discover(&q).hits);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn discover_hits_equal_a_brute_force_scan(specs in prop::collection::vec(spec(), 0..40), q in query()) {
        let state = fleet(&specs);
        check_all_sorts(&state, &q)?;
    }

    #[test]
    fn discover_hits_follow_changes_and_restore(
        specs in prop::collection::vec(spec(), 1..40),
        changes in prop::collection::vec(change(), 0..30),
        q in query(),
    ) {
        let mut state = fleet(&specs);
        apply_changes(&mut state, &changes);
        check_all_sorts(&state, &q)?;
        let restored = RegistryState::restore(Default::default(), state.snapshot())
            .expect("restore");
        prop_assert_eq!(restored.ranked_entries(), state.ranked_entries());
        check_all_sorts(&restored, &q)?;
    }
}

/// Many agents tied on performance (the benchmark's fleet: all healthy and
/// idle): the walk returns them by id, and stops at `limit`.
#[test]
fn ranked_walk_breaks_ties_by_id() {
    let specs: Vec<Spec> = (0..30)
        .map(|i| Spec {
            caps: vec![0],
            cap_tags: vec![],
            tags: vec![],
            agent_type: 0,
            runtime: 0,
            status: 0,
            health: if i % 3 == 0 { 9 } else { 10 },
            load: 0,
        })
        .collect();
    let state = fleet(&specs);
    let q = Discover {
        capabilities: vec!["trading".into()],
        any_capabilities: vec![],
        text_words: vec![],
        tags: vec![],
        agent_type: None,
        runtime_id: None,
        statuses: vec![AgentStatus::Active],
        min_health_score: 0.5,
        max_load_factor: 0.8,
        sort_by: SortBy::Performance,
        limit: 5,
        seed: 1,
    };
    let got = hit_ids(&state.discover_hits(&q));
    assert_eq!(got, vec!["a001", "a002", "a004", "a005", "a007"]);
    assert_eq!(got, brute(&state, &q));
    // Every agent has one capability: three orderings of 30 agents.
    assert_eq!(state.ranked_entries(), 90);
}
