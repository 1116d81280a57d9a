//! Listing with cursors and capability search, against hand-built fleets.

mod common;

use common::*;
use registry_state::RegistryState;
use registry_types::api::{ListFilter, MatchKind};
use registry_types::AgentStatus;

/// A fleet of `n` agents `ag0000..`: every agent has capability "common";
/// every `rare_every`-th agent also has "rare" and tag "gold"; types alternate
/// between "llm" and "tool"; runtimes cycle over 4.
fn fleet(n: usize, rare_every: usize) -> RegistryState {
    let mut h = Harness::new();
    // Register out of id order, so that id order and key order differ.
    for i in (0..n).rev() {
        let mut c = reg(&format!("ag{i:04}"), i as i64);
        c.capabilities = vec![cap("Common", "", &[])];
        if i % rare_every == 0 {
            c.capabilities.push(cap("Rare", "", &[]));
            c.tags = vec!["Gold".into()];
        }
        c.agent_type = if i % 2 == 0 {
            "LLM".into()
        } else {
            "tool".into()
        };
        c.runtime_id = format!("rt{}", i % 4);
        h.register(c);
    }
    // Free some keys and reuse them, so keys are not dense in id order.
    for i in (0..n).step_by(7) {
        h.apply(deregister(&format!("ag{i:04}"), 10_000));
    }
    for i in (0..n).step_by(14) {
        let mut c = reg(&format!("ag{i:04}"), 10_001);
        c.capabilities = vec![cap("common", "", &[])];
        c.agent_type = "llm".into();
        c.runtime_id = format!("rt{}", i % 4);
        h.register(c);
    }
    h.state
}

fn check_paging(state: &RegistryState, f: &ListFilter) -> usize {
    let expected = ids(&scan_list(state, f));
    for page in [0, 1, 2, 3, 7, 50, 1000, 5000] {
        let got = ids(&list_all(state, f, page));
        assert_eq!(got, expected, "filter {f:?}, page {page}");
    }
    expected.len()
}

#[test]
fn paging_covers_small_candidate_sets_exactly_once() {
    let state = fleet(400, 20);
    // "rare" is on at most 20 of ~350 agents: far below 1/8 of the fleet,
    // so the listing sorts the candidates.
    let rare = ListFilter {
        capability: Some("RARE".into()),
        ..Default::default()
    };
    let n = check_paging(&state, &rare);
    assert!(n > 5 && n * 8 <= state.len(), "{n} of {}", state.len());
    let gold_llm_rt0 = ListFilter {
        tag: Some(" gold ".into()),
        agent_type: Some("llm".into()),
        runtime_id: Some("rt0".into()),
        ..Default::default()
    };
    assert!(check_paging(&state, &gold_llm_rt0) > 0);
    let none = ListFilter {
        capability: Some("nothing".into()),
        ..Default::default()
    };
    assert_eq!(check_paging(&state, &none), 0);
    // An empty set among large ones.
    let empty_mix = ListFilter {
        status: Some(AgentStatus::Active),
        runtime_id: Some("RT0".into()), // runtime ids are exact
        ..Default::default()
    };
    assert_eq!(check_paging(&state, &empty_mix), 0);
}

#[test]
fn paging_covers_large_candidate_sets_exactly_once() {
    let state = fleet(400, 20);
    // Every agent is active and has "common": the listing walks the table.
    for f in [
        ListFilter::default(),
        ListFilter {
            status: Some(AgentStatus::Active),
            ..Default::default()
        },
        ListFilter {
            capability: Some("common".into()),
            ..Default::default()
        },
        ListFilter {
            agent_type: Some("Tool".into()),
            ..Default::default()
        },
        ListFilter {
            status: Some(AgentStatus::Active),
            capability: Some("common".into()),
            runtime_id: Some("rt1".into()),
            ..Default::default()
        },
    ] {
        let n = check_paging(&state, &f);
        assert!(n * 8 > state.len(), "{f:?} gave only {n}");
    }
}

#[test]
fn paging_around_the_one_eighth_threshold() {
    // With 80 agents the threshold is 10 candidates: try 9, 10, 11 and 12.
    for (every, expected) in [(9i64, 9usize), (8, 10), (7, 12)] {
        let mut h = Harness::new();
        for i in 0..80 {
            let mut c = reg(&format!("x{i:02}"), i);
            if i % every == 0 && ((i / every) as usize) < expected {
                c.tags = vec!["t".into()];
            }
            h.register(c);
        }
        let f = ListFilter {
            tag: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(check_paging(&h.state, &f), expected);
    }
}

#[test]
fn a_cursor_naming_a_removed_agent_still_pages_on() {
    let mut h = Harness::new();
    for i in 0..30 {
        let mut c = reg(&format!("p{i:02}"), i);
        c.tags = vec![if i % 10 == 0 { "few" } else { "many" }.into()];
        h.register(c);
    }
    for tag in ["few", "many"] {
        let f = ListFilter {
            tag: Some(tag.into()),
            ..Default::default()
        };
        let mut state = h.state.clone();
        let (first, cursor) = state.list(&f, None, 2);
        let cursor = cursor.expect("more than one page");
        let removed = first.last().unwrap().agent_id.to_string();
        state.apply(0, &deregister(&removed, 100));
        let mut rest = Vec::new();
        let mut cursor = Some(cursor);
        while let Some(c) = cursor {
            let (page, next) = state.list(&f, Some(&c), 2);
            rest.extend(page);
            cursor = next;
        }
        let mut got = ids(&first);
        got.extend(ids(&rest));
        let mut expected = ids(&scan_list(&state, &f));
        expected.insert(1, removed);
        assert_eq!(got, expected, "tag {tag}");
    }
    // A cursor that was never an id pages from the next id on.
    let (page, _) = h.state.list(&ListFilter::default(), Some("p05x"), 3);
    assert_eq!(ids(&page), vec!["p06", "p07", "p08"]);
    let (page, next) = h.state.list(&ListFilter::default(), Some("zzz"), 3);
    assert!(page.is_empty() && next.is_none());
}

fn search_fleet() -> RegistryState {
    let mut h = Harness::new();
    let mut add = |agent: &str, caps| {
        let mut c = reg(agent, 1);
        c.capabilities = caps;
        h.register(c);
    };
    add(
        "gen",
        vec![
            cap("Python code generation", "Writes programs", &["codegen"]),
            cap("Unrelated", "", &[]),
        ],
    );
    add("exact", vec![cap("python", "", &[])]);
    add("tagged", vec![cap("Snake charmer", "charms", &["Python"])]);
    add("described", vec![cap("Helper", "Knows PYTHON well", &[])]);
    add(
        "cpp",
        vec![cap(
            "C++ refactoring",
            "modernizes C++ code",
            &["c++", "legacy-code"],
        )],
    );
    add("zz-also-exact", vec![cap("  PYTHON ", "", &[])]);
    add(
        "aa-nothing",
        vec![cap("Translate", "french to english", &["i18n"])],
    );
    h.state
}

fn search(
    state: &RegistryState,
    q: &str,
    status: Option<AgentStatus>,
) -> Vec<(String, usize, MatchKind)> {
    let got = search_keys(state, &state.search_capabilities(q, status, 100));
    assert_eq!(got, scan_search(state, q, status, 100), "query {q:?}");
    got
}

fn hit(agent: &str, pos: usize, kind: MatchKind) -> (String, usize, MatchKind) {
    (agent.to_string(), pos, kind)
}

#[test]
fn search_ranks_exact_then_tag_then_name_then_description() {
    let state = search_fleet();
    let expected = vec![
        hit("exact", 0, MatchKind::Exact),
        hit("zz-also-exact", 0, MatchKind::Exact),
        hit("tagged", 0, MatchKind::Tag),
        hit("gen", 0, MatchKind::Name),
        hit("described", 0, MatchKind::Description),
    ];
    assert_eq!(search(&state, "python", None), expected);
    assert_eq!(search(&state, "PyThOn", None), expected, "case-insensitive");
    assert_eq!(search(&state, "  python  ", None), expected, "trimmed");

    // Substrings inside words, and queries spanning words.
    let yth = search(&state, "yth", None);
    assert_eq!(
        yth,
        vec![
            hit("tagged", 0, MatchKind::Tag),
            hit("exact", 0, MatchKind::Name),
            hit("gen", 0, MatchKind::Name),
            hit("zz-also-exact", 0, MatchKind::Name),
            hit("described", 0, MatchKind::Description),
        ]
    );
    assert_eq!(
        search(&state, "code gen", None),
        vec![hit("gen", 0, MatchKind::Name)]
    );
    assert_eq!(
        search(&state, "Code   GEN", None),
        vec![hit("gen", 0, MatchKind::Name)]
    );
    assert_eq!(
        search(&state, "de gen", None),
        vec![hit("gen", 0, MatchKind::Name)]
    );
    assert_eq!(
        search(&state, "codegen", None),
        vec![hit("gen", 0, MatchKind::Tag)]
    );
    assert_eq!(
        search(&state, "python code", None),
        vec![hit("gen", 0, MatchKind::Name)]
    );
    assert_eq!(
        search(&state, "french to", None),
        vec![hit("aa-nothing", 0, MatchKind::Description)]
    );
    assert_eq!(search(&state, "missing", None), vec![]);
    assert_eq!(search(&state, "", None), vec![]);
    assert_eq!(search(&state, "   ", None), vec![]);
}

#[test]
fn search_queries_without_words() {
    let state = search_fleet();
    assert_eq!(
        search(&state, "C++", None),
        vec![hit("cpp", 0, MatchKind::Tag)],
        "the tag c++ ranks above the name containing it"
    );
    assert_eq!(
        search(&state, "++", None),
        vec![hit("cpp", 0, MatchKind::Tag)]
    );
    assert_eq!(
        search(&state, "-", None),
        vec![hit("cpp", 0, MatchKind::Tag)],
        "only the tag legacy-code has a dash"
    );
    assert_eq!(
        search(&state, "c++ refactoring", None),
        vec![hit("cpp", 0, MatchKind::Exact)]
    );
    assert_eq!(
        search(&state, "c++ code", None),
        vec![hit("cpp", 0, MatchKind::Description)]
    );
}

#[test]
fn search_filters_by_status_and_limits() {
    let mut state = search_fleet();
    state.apply(1, &set_status("exact", AgentStatus::Suspended, 5));
    state.apply(2, &set_status("described", AgentStatus::Suspended, 5));
    assert_eq!(
        search(&state, "python", Some(AgentStatus::Suspended)),
        vec![
            hit("exact", 0, MatchKind::Exact),
            hit("described", 0, MatchKind::Description)
        ]
    );
    assert_eq!(
        search(&state, "python", Some(AgentStatus::Active)),
        vec![
            hit("zz-also-exact", 0, MatchKind::Exact),
            hit("tagged", 0, MatchKind::Tag),
            hit("gen", 0, MatchKind::Name),
        ]
    );
    assert_eq!(search(&state, "python", Some(AgentStatus::Offline)), vec![]);
    let two = search_keys(&state, &state.search_capabilities("python", None, 2));
    assert_eq!(
        two,
        vec![
            hit("exact", 0, MatchKind::Exact),
            hit("zz-also-exact", 0, MatchKind::Exact)
        ]
    );
    assert_eq!(
        state.search_capabilities("python", None, 0).len(),
        1,
        "limit 0 means 1"
    );
}

#[test]
fn agents_with_capability_is_exact_and_case_insensitive() {
    let state = search_fleet();
    let names = |v: Vec<&registry_types::AgentRecord>| -> Vec<String> {
        v.into_iter().map(|r| r.agent_id.to_string()).collect()
    };
    assert_eq!(
        names(state.agents_with_capability("PYTHON")),
        vec!["exact", "zz-also-exact"]
    );
    assert_eq!(
        names(state.agents_with_capability(" c++  Refactoring")),
        vec!["cpp"]
    );
    assert!(state.agents_with_capability("pyth").is_empty());
}

#[test]
fn top_capabilities_are_the_most_held_ties_by_name_and_bounded() {
    let mut h = Harness::new();
    // "c0" held by 6 agents, "c1" by 5, ..., "c5" by 1; "zz" and "aa" by 3.
    for i in 0..6 {
        let mut c = reg(&format!("ag{i}"), i as i64);
        c.capabilities = (0..=(5 - i))
            .map(|n| cap(&format!("c{n}"), "", &[]))
            .collect();
        if i < 3 {
            c.capabilities.push(cap("zz", "", &[]));
            c.capabilities.push(cap("aa", "", &[]));
        }
        h.register(c);
    }
    let s = &h.state;
    let names = |v: Vec<(String, u64)>| {
        v.into_iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.top_capabilities(4)),
        ["c0=6", "c1=5", "c2=4", "aa=3"]
    );
    assert_eq!(
        names(s.top_capabilities(5)),
        ["c0=6", "c1=5", "c2=4", "aa=3", "c3=3"]
    );
    assert_eq!(s.top_capabilities(100).len(), 8);
    assert!(s.top_capabilities(0).is_empty());
    // 21 + 6 capabilities over the agents, as /stats counts them.
    assert_eq!(s.total_capabilities(), 27);
    eprintln!("--- an agent's capabilities leave the counts with it");
    h.apply(deregister("ag0", 100));
    assert_eq!(names(h.state.top_capabilities(2)), ["c0=5", "c1=4"]);
    assert_eq!(h.state.total_capabilities(), 27 - 8);
}
