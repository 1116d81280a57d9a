//! Discovery equals a brute-force filter and sort over every agent, for
//! random fleets and random queries, A2A card terms included (skill ids,
//! accepted and produced media types with wildcards, protocol bindings,
//! words of skill examples), also at production shape (thousands of
//! matching agents, limit 10).

mod common;

use std::cmp::Ordering;

use proptest::prelude::*;
use registry_state::discover::{performance, Discover, SortBy};
use registry_state::RegistryState;
use registry_types::card::{media_type_matches, normalize_media_type, AgentCard};
use registry_types::command::RegisterCommand;
use registry_types::limits::Limits;
use registry_types::{AgentRecord, AgentStatus, Command};
use serde_json::{json, Value};

use common::{cap, norm, reg, register};

/// Skill ids of the generated cards (and of queries).
const SKILLS: [&str; 4] = ["translate", "summarize", "search-web", "plan"];
/// Media types declared by cards and asked by queries: concrete ones,
/// wildcards of a type and of everything, and parameters to be dropped.
const MODES: [&str; 8] = [
    "text/plain",
    "text/*",
    "application/json",
    "image/png",
    "*/*",
    "text/html",
    "image/*",
    "application/json; charset=utf-8",
];
const BINDINGS: [&str; 3] = ["JSONRPC", "GRPC", "HTTP+JSON"];

/// A skill of a generated card: its id, its own input and output modes
/// (`None`: the card's defaults), as indexes into the pools above.
type SkillSpec = (usize, Option<Vec<usize>>, Option<Vec<usize>>);

/// An agent's A2A card, as indexes into the pools above.
#[derive(Clone, Debug)]
struct CardSpec {
    skills: Vec<SkillSpec>,
    default_in: Vec<usize>,
    default_out: Vec<usize>,
    bindings: Vec<usize>,
    /// Whether the first skill's example mentions "lasagne" (a word no
    /// capability carries: only examples can match it).
    example: bool,
}

fn modes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..MODES.len(), 0..3)
}

fn card_spec() -> impl Strategy<Value = CardSpec> {
    (
        prop::collection::vec(
            (
                0..SKILLS.len(),
                prop::option::of(modes()),
                prop::option::of(modes()),
            ),
            0..3,
        ),
        modes(),
        modes(),
        prop::collection::vec(0..BINDINGS.len(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(mut skills, default_in, default_out, bindings, example)| {
            // Skill ids are unique in a card.
            skills.sort_by_key(|s| s.0);
            skills.dedup_by_key(|s| s.0);
            CardSpec {
                skills,
                default_in,
                default_out,
                bindings,
                example,
            }
        })
}

/// The card JSON of a spec: A2A 1.0 for even agents, 0.3 (top-level `url`)
/// for odd ones, so both shapes are indexed alike.
fn card_json(i: usize, c: &CardSpec) -> Value {
    let list = |v: &[usize]| v.iter().map(|&m| MODES[m]).collect::<Vec<_>>();
    let skills: Vec<Value> = c
        .skills
        .iter()
        .enumerate()
        .map(|(n, (id, input, output))| {
            let mut s = json!({
                "id": SKILLS[*id],
                "name": format!("skill {}", SKILLS[*id]),
                "description": "a skill",
                "tags": ["card"],
                "examples": [if c.example && n == 0 { "cook a lasagne" } else { "hello" }],
            });
            if let Some(m) = input {
                s["inputModes"] = json!(list(m));
            }
            if let Some(m) = output {
                s["outputModes"] = json!(list(m));
            }
            s
        })
        .collect();
    let url = format!("http://a{i}.example.com/a2a");
    let mut card = json!({
        "name": format!("agent {i}"),
        "description": "generated",
        "version": "1",
        "capabilities": {},
        "defaultInputModes": list(&c.default_in),
        "defaultOutputModes": list(&c.default_out),
        "skills": skills,
    });
    if i.is_multiple_of(2) {
        card["supportedInterfaces"] = json!(c
            .bindings
            .iter()
            .map(|&b| json!({"url": url, "protocolBinding": BINDINGS[b], "protocolVersion": "1.0"}))
            .collect::<Vec<_>>());
    } else {
        card["url"] = json!(url);
        card["preferredTransport"] = json!(BINDINGS[c.bindings[0]]);
        card["protocolVersion"] = json!("0.3.0");
        card["additionalInterfaces"] = json!(c
            .bindings
            .iter()
            .map(|&b| json!({"url": url, "transport": BINDINGS[b]}))
            .collect::<Vec<_>>());
    }
    card
}

/// A registration carrying a card, as the edge makes it (the usual
/// fields given, so they win over the card's).
fn register_with_card(c: RegisterCommand, card: &Value) -> Command {
    let card = AgentCard::from_value(card, &Limits::DEFAULT, 1 << 20).expect("a valid card");
    Command::RegisterCard {
        register: Box::new(c),
        card,
    }
}

const CAPS: [&str; 5] = [
    "Trading",
    "risk management",
    "python code",
    "translation",
    "web search",
];
const TAGS: [&str; 4] = ["crypto", "fx", "fast", "eu"];
const WORDS: [&str; 7] = [
    "trading", "risk", "python", "code", "search", "nothing", "lasagne",
];
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
    card: Option<CardSpec>,
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
        prop::option::weighted(0.7, card_spec()),
    )
        .prop_map(
            |(caps, cap_tags, tags, agent_type, runtime, status, health, load, card)| Spec {
                caps,
                cap_tags,
                tags,
                agent_type,
                runtime,
                status,
                health,
                load,
                card,
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
        let cmd = match &sp.card {
            Some(card) => register_with_card(c, &card_json(i, card)),
            None => register(c),
        };
        s.apply(i as u64 + 1, &cmd);
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
    if let Some(card) = &r.agent_card {
        let v = card.to_value();
        for s in v["skills"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                " {} {}",
                s["name"].as_str().unwrap_or(""),
                s["description"].as_str().unwrap_or("")
            ));
            for t in s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(s["examples"].as_array().into_iter().flatten())
            {
                text.push_str(&format!(" {}", t.as_str().unwrap_or("")));
            }
        }
        if let Some(o) = v["provider"]["organization"].as_str() {
            text.push_str(&format!(" {o}"));
        }
    }
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// What a card says, read from its JSON by hand (not through the code
/// under test): skill ids, the media types it accepts and produces (a
/// skill's own, or the defaults for a skill without them or a card
/// without skills), its bindings.
struct CardFacts {
    skills: Vec<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    bindings: Vec<String>,
}

fn card_facts(r: &AgentRecord) -> Option<CardFacts> {
    let v = r.agent_card.as_ref()?.to_value();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .map(normalize_media_type)
            .collect()
    };
    let skills = v["skills"].as_array().cloned().unwrap_or_default();
    let effective = |own: &str, default: &str| -> Vec<String> {
        let defaults = strs(&v[default]);
        if skills.is_empty() {
            return defaults;
        }
        skills
            .iter()
            .flat_map(|s| {
                let mine = strs(&s[own]);
                if mine.is_empty() {
                    defaults.clone()
                } else {
                    mine
                }
            })
            .collect()
    };
    let mut bindings: Vec<String> = v["supportedInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["protocolBinding"].as_str().unwrap_or("").to_uppercase())
        .collect();
    if let Some(t) = v["preferredTransport"].as_str() {
        bindings.push(t.to_uppercase());
    }
    bindings.extend(
        v["additionalInterfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["transport"].as_str().unwrap_or("").to_uppercase()),
    );
    Some(CardFacts {
        skills: skills
            .iter()
            .map(|s| s["id"].as_str().unwrap_or("").to_string())
            .collect(),
        inputs: effective("inputModes", "defaultInputModes"),
        outputs: effective("outputModes", "defaultOutputModes"),
        bindings,
    })
}

/// Whether the record's card satisfies the query's card terms.
fn card_terms_hold(r: &AgentRecord, q: &Discover) -> bool {
    let no_card_terms = q.skills.is_empty()
        && q.input_modes.is_empty()
        && q.output_modes.is_empty()
        && q.bindings.is_empty();
    if no_card_terms {
        return true;
    }
    let Some(f) = card_facts(r) else {
        return false;
    };
    q.skills.iter().all(|s| f.skills.contains(s))
        && q.input_modes
            .iter()
            .all(|m| f.inputs.iter().any(|d| media_type_matches(d, m)))
        && q.output_modes
            .iter()
            .all(|m| f.outputs.iter().any(|d| media_type_matches(d, m)))
        && (q.bindings.is_empty() || q.bindings.iter().any(|b| f.bindings.contains(b)))
}

/// The same query answered by looking at every record. A query without a
/// single term matches nothing (the server refuses it with 400).
fn brute(state: &RegistryState, q: &Discover) -> Vec<String> {
    let no_terms = q.capabilities.is_empty()
        && q.any_capabilities.is_empty()
        && q.text_words.is_empty()
        && q.tags.is_empty()
        && q.agent_type.is_none()
        && q.runtime_id.is_none()
        && q.skills.is_empty()
        && q.input_modes.is_empty()
        && q.output_modes.is_empty()
        && q.bindings.is_empty();
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
        .filter(|r| card_terms_hold(r, q))
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

/// Card terms of a query: (skills, input modes, output modes, bindings).
type CardTerms = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn card_terms() -> impl Strategy<Value = CardTerms> {
    let norm_modes = |v: Vec<usize>| {
        let mut m: Vec<String> = v.iter().map(|&i| normalize_media_type(MODES[i])).collect();
        m.sort();
        m.dedup();
        m
    };
    (
        prop::collection::vec(0..SKILLS.len(), 0..2),
        prop::collection::vec(0..MODES.len(), 0..2),
        prop::collection::vec(0..MODES.len(), 0..2),
        prop::collection::vec(0..BINDINGS.len(), 0..2),
    )
        .prop_map(move |(skills, input, output, bindings)| {
            let mut skills: Vec<String> = skills.iter().map(|&s| SKILLS[s].to_string()).collect();
            skills.sort();
            skills.dedup();
            let mut bindings: Vec<String> =
                bindings.iter().map(|&b| BINDINGS[b].to_string()).collect();
            bindings.sort();
            bindings.dedup();
            (skills, norm_modes(input), norm_modes(output), bindings)
        })
}

fn query() -> impl Strategy<Value = Discover> {
    (base_query(), card_terms()).prop_map(|(q, (skills, input_modes, output_modes, bindings))| {
        Discover {
            skills,
            input_modes,
            output_modes,
            bindings,
            ..q
        }
    })
}

fn base_query() -> impl Strategy<Value = Discover> {
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
                skills: vec![],
                input_modes: vec![],
                output_modes: vec![],
                bindings: vec![],
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
            card: None,
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
            card: None,
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
            card: None,
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
            card: None,
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
            card: None,
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
        skills: vec![],
        input_modes: vec![],
        output_modes: vec![],
        bindings: vec![],
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
    /// A new card (`SetCard`): its skills become the capabilities.
    Card(usize, CardSpec),
}

fn change() -> impl Strategy<Value = Change> {
    let h = prop::option::of(0..=10u8);
    prop_oneof![
        (0..40usize, h.clone(), h.clone()).prop_map(|(i, a, b)| Change::Health(i, a, b)),
        (0..40usize, h.clone(), h).prop_map(|(i, a, b)| Change::Heartbeat(i, a, b)),
        (0..40usize, spec()).prop_map(|(i, s)| Change::Reregister(i, s)),
        (0..40usize).prop_map(Change::Deregister),
        (0..40usize, 0..STATUSES.len()).prop_map(|(i, s)| Change::Status(i, s)),
        (0..40usize, card_spec()).prop_map(|(i, c)| Change::Card(i, c)),
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
                match r.agent_card {
                    Some(card) => Command::RegisterCard {
                        register: Box::new(c),
                        card,
                    },
                    None => register(c),
                }
            }
            Change::Card(i, spec) => {
                let card = AgentCard::from_value(&card_json(*i, spec), &Limits::DEFAULT, 1 << 20)
                    .expect("a valid card");
                let v = card.view();
                Command::SetCard(Box::new(registry_types::command::SetCardCommand {
                    agent_id: common::id(&format!("a{i:03}")),
                    name: v.name.clone(),
                    endpoint: v.endpoint().unwrap_or_default().to_string(),
                    version: v.version.clone(),
                    description: v.description.clone(),
                    capabilities: v.capabilities(),
                    card: card.clone(),
                    now: registry_types::Timestamp(now),
                }))
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
            card: None,
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
        skills: vec![],
        input_modes: vec![],
        output_modes: vec![],
        bindings: vec![],
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

// ---- Production shape: a fleet of a few thousand agents with cards, most
// of which match the card terms, queried with limit 10 (the default). The
// index must give the brute force's first ten, whichever constraint drives.

/// A fleet of `n` agents, nearly all with cards that accept text and JSON
/// and speak JSON-RPC, a few with narrower cards, one in ten without.
fn big_fleet(n: usize, seed: u64) -> RegistryState {
    let mut s = RegistryState::default();
    for i in 0..n {
        let mix = (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed);
        let mut c = reg(&format!("b{i:05}"), i as i64 + 1);
        c.capabilities = vec![cap(
            CAPS[(mix % 5) as usize],
            "does it",
            &[TAGS[(mix % 4) as usize]],
        )];
        c.health_score = Some(f64::from((mix % 11) as u8) / 10.0);
        c.load_factor = Some(f64::from(((mix >> 8) % 11) as u8) / 10.0);
        let card = match mix % 10 {
            0 => None,
            1 => Some(CardSpec {
                skills: vec![(3, Some(vec![3]), Some(vec![6]))],
                default_in: vec![],
                default_out: vec![],
                bindings: vec![1],
                example: false,
            }),
            _ => Some(CardSpec {
                skills: vec![
                    (0, None, None),
                    ((1 + mix % 3) as usize, Some(vec![2]), None),
                ],
                default_in: vec![0, 2],
                default_out: vec![0],
                bindings: vec![0, (mix % 3) as usize],
                example: mix.is_multiple_of(7),
            }),
        };
        let cmd = match card {
            Some(card) => register_with_card(c, &card_json(i, &card)),
            None => register(c),
        };
        s.apply(i as u64 + 1, &cmd);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn card_terms_at_production_shape_equal_a_brute_force_scan(
        seed in any::<u64>(),
        queries in prop::collection::vec((card_terms(), prop::option::of(0..CAPS.len()), prop::sample::select(vec![
            SortBy::Performance,
            SortBy::Health,
            SortBy::Load,
            SortBy::Relevance,
        ])), 8..12),
    ) {
        let state = big_fleet(3000, seed);
        for ((skills, input_modes, output_modes, bindings), capability, sort_by) in queries {
            let q = Discover {
                capabilities: capability.map(|c| vec![norm(CAPS[c])]).unwrap_or_default(),
                any_capabilities: vec![],
                text_words: if sort_by == SortBy::Relevance { vec!["lasagne".into(), "trading".into()] } else { vec![] },
                tags: vec![],
                agent_type: None,
                runtime_id: None,
                skills,
                input_modes,
                output_modes,
                bindings,
                statuses: vec![AgentStatus::Active],
                min_health_score: 0.2,
                max_load_factor: 0.9,
                sort_by,
                limit: 10,
                seed: 3,
            };
            let want = brute(&state, &q);
            prop_assert_eq!(hit_ids(&state.discover_hits(&q)), want.clone(), "{:?}", q);
            prop_assert_eq!(hit_ids(&state.discover(&q).hits), want, "{:?}", q);
        }
    }
}

/// The production fleet really is production-shaped: a plain card query
/// has thousands of candidates, of which limit 10 are returned.
#[test]
fn the_big_fleet_has_thousands_of_matches() {
    let state = big_fleet(3000, 1);
    let q = Discover {
        capabilities: vec![],
        any_capabilities: vec![],
        text_words: vec![],
        tags: vec![],
        agent_type: None,
        runtime_id: None,
        skills: vec!["translate".into()],
        input_modes: vec!["text/plain".into()],
        output_modes: vec![],
        bindings: vec!["JSONRPC".into()],
        statuses: vec![AgentStatus::Active],
        min_health_score: 0.0,
        max_load_factor: 1.0,
        sort_by: SortBy::Performance,
        limit: 10,
        seed: 1,
    };
    let out = state.discover(&q);
    assert!(out.counts.candidates > 2000, "{:?}", out.counts);
    assert_eq!(out.hits.len(), 10);
    assert_eq!(hit_ids(&out.hits), brute(&state, &q));
}
