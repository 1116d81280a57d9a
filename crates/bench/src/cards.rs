//! The synthetic fleet of agents that register with A2A Agent Cards (the
//! `cards` scenario of `compare`), and the discovery queries sent to it.
//!
//! The cards are shaped like real ones: A2A 1.0, one to three interfaces,
//! a provider, security schemes, an extension, 3 to 6 skills each with an
//! id, a name, a description, tags and examples, default input and output
//! modes from a handful of profiles (one of them the wildcard `text/*`,
//! a rare one `*/*`), and about three skills in ten with modes of their
//! own (images, audio, video, documents with a media-type parameter). Their
//! canonical JSON is about 4 KiB on average (4,075 bytes over 100,000
//! agents; 2.8 to 5.4 KiB), the size issue 19 asks the memory figure for.
//!
//! Skills come from a vocabulary of [`SKILLS`] ids (25 domains × 4
//! actions), 4.5 per agent, so each skill id is held by about 4,500 of
//! 100,000 agents and a query of one skill and one input mode
//! ([`query`]) matches thousands of agents while asking for 10: the
//! production shape of a discovery (the answer is a few of many).
//!
//! Everything is a pure function of the agent number, so the registry and
//! etcd get the same fleet and a test can check its shape.

use registry_types::card::{canonical_json, media_type_matches, normalize_media_type, CardView};
use serde_json::{json, Value};

/// Domains of the skill vocabulary.
const DOMAINS: [&str; 25] = [
    "invoice",
    "contract",
    "recipe",
    "flight",
    "hotel",
    "support-ticket",
    "source-code",
    "sql-query",
    "server-log",
    "image",
    "audio",
    "video",
    "email",
    "calendar",
    "expense",
    "payroll",
    "shipment",
    "inventory",
    "insurance-claim",
    "policy",
    "patient-note",
    "lab-report",
    "tax-form",
    "news-article",
    "product-listing",
];

/// What a skill does to its domain.
const ACTIONS: [(&str, &str); 4] = [
    ("summarize", "Summarizes"),
    ("translate", "Translates"),
    ("classify", "Classifies"),
    ("extract", "Extracts the key fields of"),
];

/// Number of skill ids in the vocabulary.
pub const SKILLS: usize = DOMAINS.len() * ACTIONS.len();

/// Skills per agent on average ([`agent_skills`]: 3 to 6, evenly).
pub const MEAN_SKILLS: f64 = 4.5;

/// Input media types the discovery queries ask for: two concrete types
/// most agents accept, the `text/*` wildcard, and a concrete type only
/// image agents (and `*/*` ones) accept.
pub const QUERY_MODES: [&str; 4] = ["text/plain", "application/json", "text/*", "image/png"];

/// (defaultInputModes, defaultOutputModes) profiles, with their weight out
/// of 20: what agents of a fleet commonly declare.
const MODE_PROFILES: [(u64, &[&str], &[&str]); 7] = [
    (
        6,
        &["text/plain", "application/json"],
        &["text/plain", "application/json"],
    ),
    (4, &["text/plain"], &["text/plain"]),
    (3, &["text/*"], &["text/markdown"]),
    (3, &["application/json"], &["application/json"]),
    (
        2,
        &["text/plain", "image/png", "image/jpeg"],
        &["text/plain"],
    ),
    (
        1,
        &["audio/wav", "text/plain"],
        &["text/plain", "audio/wav"],
    ),
    (1, &["*/*"], &["application/json"]),
];

/// Provider organizations (searchable words of the card).
const ORGS: [&str; 12] = [
    "Acme Analytics",
    "Globex Automation",
    "Initech Labs",
    "Umbrella Health",
    "Stark Logistics",
    "Wayne Finance",
    "Tyrell Systems",
    "Hooli Cloud",
    "Soylent Foods",
    "Cyberdyne Ops",
    "Wonka Retail",
    "Vandelay Imports",
];

/// A well-mixed 64-bit hash of `x` (splitmix64), for deterministic choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The id of skill `s` of the vocabulary, e.g. `invoice-summarize`.
pub fn skill_id(s: usize) -> String {
    let (d, (a, _)) = (DOMAINS[s / ACTIONS.len()], ACTIONS[s % ACTIONS.len()]);
    format!("{d}-{a}")
}

/// The vocabulary numbers of agent `i`'s skills: 3 to 6, distinct.
pub fn agent_skills(i: usize) -> Vec<usize> {
    let h = mix(i as u64);
    let k = 3 + (h % 4) as usize;
    let mut out = Vec::with_capacity(k);
    let mut x = h;
    while out.len() < k {
        x = mix(x);
        let s = (x % SKILLS as u64) as usize;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The default input and output modes of agent `i` (a weighted profile).
fn agent_profile(i: usize) -> (&'static [&'static str], &'static [&'static str]) {
    let mut pick = mix(i as u64 ^ 0x5151) % 20;
    for (w, input, output) in MODE_PROFILES {
        if pick < w {
            return (input, output);
        }
        pick -= w;
    }
    (MODE_PROFILES[0].1, MODE_PROFILES[0].2)
}

/// The skill's own modes, when it has some (every image, audio or video
/// skill and one in five of the others): (inputModes, outputModes).
fn skill_modes(i: usize, s: usize) -> Option<(Vec<&'static str>, Vec<&'static str>)> {
    let domain = DOMAINS[s / ACTIONS.len()];
    match domain {
        "image" => Some((
            vec!["image/png", "image/jpeg", "image/webp"],
            vec!["application/json"],
        )),
        "audio" => Some((vec!["audio/wav", "audio/mpeg"], vec!["text/plain"])),
        "video" => Some((vec!["video/mp4"], vec!["text/plain", "application/json"])),
        _ if mix((i * SKILLS + s) as u64).is_multiple_of(5) => Some((
            vec!["application/pdf", "text/markdown; charset=utf-8"],
            vec!["application/json"],
        )),
        _ => None,
    }
}

/// One skill of agent `i`'s card.
fn skill(i: usize, s: usize) -> Value {
    let domain = DOMAINS[s / ACTIONS.len()];
    let (action, verb) = ACTIONS[s % ACTIONS.len()];
    let words = domain.replace('-', " ");
    let mut v = json!({
        "id": skill_id(s),
        "name": format!("{verb} {words}"),
        "description": format!(
            "{verb} a {words} given as text or a document, in any of 40 languages, and \
             answers with structured JSON that cites the passages it relied on. Tuned \
             for {words} workloads of the {} team (build {}).",
            ORGS[(i + s) % ORGS.len()],
            i % 97
        ),
        "tags": [domain, action, "a2a", if s.is_multiple_of(2) { "batch" } else { "interactive" }],
        "examples": [
            format!("{verb} this {words} and list anything that needs a human to look at it"),
            format!("Here is a {words} in German: {action} it for the finance review on Monday"),
            format!("Which {words} items of last week are still open? Give me the three most urgent ones"),
        ],
    });
    if let Some((input, output)) = skill_modes(i, s) {
        v["inputModes"] = json!(input);
        v["outputModes"] = json!(output);
    }
    v
}

/// The A2A 1.0 card agent `i` publishes.
pub fn card(i: usize) -> Value {
    let h = mix(i as u64 ^ 0xca4d);
    let (input, output) = agent_profile(i);
    let org = ORGS[(h % ORGS.len() as u64) as usize];
    let host = format!("agent-{i:07}.fleet.example.com");
    let mut interfaces = vec![json!({
        "url": format!("https://{host}/a2a/v1"),
        "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0",
    })];
    if h.is_multiple_of(2) {
        interfaces.push(json!({"url": format!("https://{host}:8443/a2a.grpc"),
                               "protocolBinding": "GRPC", "protocolVersion": "1.0"}));
    }
    if h.is_multiple_of(3) {
        interfaces.push(json!({"url": format!("https://{host}/a2a/rest"),
                               "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0",
                               "tenant": format!("tenant-{}", i % 40)}));
    }
    let skills: Vec<Value> = agent_skills(i).into_iter().map(|s| skill(i, s)).collect();
    json!({
        "name": format!("Fleet agent {i}"),
        "description": format!(
            "A worker of the {org} fleet that takes documents and requests from other \
             agents over A2A and answers within seconds; it streams partial results \
             and keeps the history of a task for a day."
        ),
        "version": format!("2.{}.{}", i % 7, i % 13),
        "supportedInterfaces": interfaces,
        "provider": {"organization": org, "url": "https://provider.example.com"},
        "documentationUrl": format!("https://docs.fleet.example.com/agents/{}", i % 500),
        "iconUrl": "https://static.fleet.example.com/icons/agent.png",
        "capabilities": {
            "streaming": !h.is_multiple_of(4),
            "pushNotifications": h.is_multiple_of(5),
            "extendedAgentCard": false,
            "extensions": [{"uri": "https://a2a.fleet.example.com/ext/tracing/v1",
                            "description": "W3C trace context on every task", "required": false}],
        },
        "securitySchemes": {
            "bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT",
                       "description": "A token of the fleet's identity provider"}},
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "defaultInputModes": input,
        "defaultOutputModes": output,
        "skills": skills,
    })
}

/// Size of agent `i`'s card as the registry stores it (canonical JSON).
pub fn card_bytes(i: usize) -> usize {
    canonical_json(&card(i)).len()
}

/// The record fields of agent `i` besides its card: what every
/// registration of the fleet carries.
fn base_record(i: usize) -> Value {
    json!({
        "agent_id": format!("bench-{i:07}"),
        "agent_type": if i.is_multiple_of(3) { "llm" } else { "tool" },
        "runtime_id": format!("runtime-{}", i % 500),
        "tags": ["bench", "a2a", if i.is_multiple_of(2) { "even" } else { "odd" }],
        "metadata": {"zone": format!("z{}", i % 3), "owner": "bench"},
    })
}

/// The registration of agent `i` with its card: the registry maps name,
/// endpoint, version, description and capabilities from it.
pub fn registration_with_card(i: usize) -> Value {
    let mut b = base_record(i);
    b["agent_card"] = card(i);
    b
}

/// The registration of agent `i` without a card, with the fields the card
/// would have mapped to given outright: the same record, so that the
/// difference in memory is what the card itself costs (its canonical
/// JSON and the indexes of its skill ids, media types, bindings and
/// words).
pub fn registration_without_card(i: usize) -> Value {
    let c = card(i);
    let mut b = base_record(i);
    b["name"] = c["name"].clone();
    b["endpoint"] = c["supportedInterfaces"][0]["url"].clone();
    b["version"] = c["version"].clone();
    b["description"] = c["description"].clone();
    let caps: Vec<Value> = c["skills"]
        .as_array()
        .map(|skills| {
            skills
                .iter()
                .map(|s| json!({"name": s["name"], "description": s["description"], "tags": s["tags"]}))
                .collect()
        })
        .unwrap_or_default();
    b["capabilities"] = json!(caps);
    b
}

/// The media types agent `i` accepts and produces, normalized, as the
/// registry reads them from its card.
pub fn agent_modes(i: usize) -> (Vec<String>, Vec<String>) {
    let view = CardView::of(&card(i));
    (view.input_modes(), view.output_modes())
}

/// Discovery query number `k`: (skill id, input mode). Skills cycle
/// through the vocabulary in a scattered order, modes through
/// [`QUERY_MODES`].
pub fn query(k: usize) -> (String, &'static str) {
    let s = (k.wrapping_mul(37) + k / SKILLS) % SKILLS;
    (skill_id(s), QUERY_MODES[k % QUERY_MODES.len()])
}

/// Whether an agent accepting `accepted` (normalized types) qualifies for
/// a query asking for input mode `wanted`, by the registry's rule
/// (wildcards both ways).
pub fn accepts<'a>(accepted: impl IntoIterator<Item = &'a str>, wanted: &str) -> bool {
    let wanted = normalize_media_type(wanted);
    accepted.into_iter().any(|d| media_type_matches(d, &wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::card::AgentCard;
    use registry_types::limits::Limits;

    #[test]
    fn every_card_is_one_the_registry_accepts() {
        for i in 0..500 {
            let c = card(i);
            if let Err(e) = AgentCard::from_value(&c, &Limits::DEFAULT, 64 * 1024) {
                panic!("card {i} refused: {e:?}");
            }
        }
    }

    #[test]
    fn cards_are_about_4_kib_on_average() {
        let n = 2_000;
        let sizes: Vec<usize> = (0..n).map(card_bytes).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / n as f64;
        assert!((3_900.0..=4_300.0).contains(&mean), "mean card size {mean}");
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        assert!(
            min < Some(&3_300) && max > Some(&5_000),
            "sizes {min:?}..{max:?}"
        );
    }

    #[test]
    fn every_query_matches_thousands_of_a_100000_agent_fleet() {
        // A 1-in-5 sample of the fleet, scaled up.
        let sample: Vec<usize> = (0..100_000).step_by(5).collect();
        let held: Vec<(Vec<usize>, Vec<String>)> = sample
            .iter()
            .map(|&i| (agent_skills(i), agent_modes(i).0))
            .collect();
        for s in 0..SKILLS {
            for m in QUERY_MODES {
                let hits = held
                    .iter()
                    .filter(|(skills, modes)| {
                        skills.contains(&s) && accepts(modes.iter().map(String::as_str), m)
                    })
                    .count()
                    * 5;
                assert!(hits >= 1_000, "{} + {m}: {hits} agents", skill_id(s));
            }
        }
    }

    #[test]
    fn wildcards_match_both_ways() {
        assert!(accepts(["text/*"], "text/plain"));
        assert!(accepts(["text/plain"], "text/*"));
        assert!(accepts(["*/*"], "image/png"));
        assert!(!accepts(["text/plain", "application/json"], "image/png"));
        assert!(accepts(["text/markdown"], "TEXT/Markdown; charset=utf-8"));
    }

    #[test]
    fn the_card_less_registration_names_the_fields_the_card_maps_to() {
        let (with, without) = (registration_with_card(7), registration_without_card(7));
        assert!(without.get("agent_card").is_none());
        assert_eq!(without["agent_id"], with["agent_id"]);
        assert_eq!(
            without["capabilities"].as_array().map(Vec::len),
            with["agent_card"]["skills"].as_array().map(Vec::len)
        );
        assert_eq!(
            without["endpoint"],
            with["agent_card"]["supportedInterfaces"][0]["url"]
        );
    }

    #[test]
    fn queries_cover_every_skill_and_mode() {
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..SKILLS * QUERY_MODES.len() * 4 {
            seen.insert(query(k));
        }
        assert_eq!(seen.len(), SKILLS * QUERY_MODES.len());
    }
}
