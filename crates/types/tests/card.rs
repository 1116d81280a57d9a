//! The mapping of A2A Agent Cards onto records, for random cards of both
//! shapes: a 1.0 card and the same card written the 0.3 way map alike, the
//! stored text reads back to the same card and ETag, and the skills become
//! the capabilities in order.

use proptest::prelude::*;
use registry_types::card::{normalize_media_type, AgentCard, CardShape, DEFAULT_MAX_CARD_BYTES};
use registry_types::limits::Limits;
use serde_json::{json, Value};

const MODES: [&str; 6] = [
    "text/plain",
    "application/json",
    "image/*",
    "*/*",
    "text/html; charset=utf-8",
    "Audio/MPEG",
];
const BINDINGS: [&str; 3] = ["JSONRPC", "GRPC", "HTTP+JSON"];

#[derive(Clone, Debug)]
struct Skill {
    name: String,
    tags: Vec<String>,
    examples: Vec<String>,
    input: Option<Vec<usize>>,
}

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 ]{0,12}[A-Za-z0-9]"
}

fn skill() -> impl Strategy<Value = Skill> {
    (
        word(),
        prop::collection::vec(word(), 0..3),
        prop::collection::vec(word(), 0..2),
        prop::option::of(prop::collection::vec(0..MODES.len(), 1..3)),
    )
        .prop_map(|(name, tags, examples, input)| Skill {
            name,
            tags,
            examples,
            input,
        })
}

/// The same logical card in the 1.0 shape and the 0.3 shape.
fn cards(skills: &[Skill], defaults: &[usize], bindings: &[usize], port: u16) -> (Value, Value) {
    let skills: Vec<Value> = skills
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = json!({
                "id": format!("skill-{i}"),
                "name": s.name,
                "description": format!("does {}", s.name),
                "tags": s.tags,
                "examples": s.examples,
            });
            if let Some(m) = &s.input {
                v["inputModes"] = json!(m.iter().map(|&k| MODES[k]).collect::<Vec<_>>());
            }
            v
        })
        .collect();
    let url = format!("https://agent.example.com:{port}/a2a");
    let modes: Vec<&str> = defaults.iter().map(|&k| MODES[k]).collect();
    let common = json!({
        "name": "Generated",
        "description": "a generated card",
        "version": "2.0",
        "capabilities": {"streaming": false},
        "defaultInputModes": modes,
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
    });
    let mut v1 = common.clone();
    v1["supportedInterfaces"] = json!(bindings
        .iter()
        .map(|&b| json!({"url": url, "protocolBinding": BINDINGS[b], "protocolVersion": "1.0"}))
        .collect::<Vec<_>>());
    let mut v03 = common;
    v03["url"] = json!(url);
    v03["preferredTransport"] = json!(BINDINGS[bindings[0]]);
    v03["protocolVersion"] = json!("0.3.0");
    v03["additionalInterfaces"] = json!(bindings
        .iter()
        .map(|&b| json!({"url": url, "transport": BINDINGS[b]}))
        .collect::<Vec<_>>());
    (v1, v03)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn both_shapes_map_alike_and_round_trip(
        skills in prop::collection::vec(skill(), 0..6),
        defaults in prop::collection::vec(0..MODES.len(), 1..3),
        bindings in prop::collection::vec(0..BINDINGS.len(), 1..3),
        port in 1u16..,
    ) {
        let (v1, v03) = cards(&skills, &defaults, &bindings, port);
        let a = AgentCard::from_value(&v1, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES)
            .map_err(|e| TestCaseError::fail(format!("1.0: {e}")))?;
        let b = AgentCard::from_value(&v03, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES)
            .map_err(|e| TestCaseError::fail(format!("0.3: {e}")))?;
        prop_assert_eq!(a.view().shape, CardShape::V1);
        prop_assert_eq!(b.view().shape, CardShape::Legacy);
        // The mapping: the same record from either shape.
        let url = format!("https://agent.example.com:{port}/a2a");
        prop_assert_eq!(a.view().endpoint(), Some(url.as_str()));
        prop_assert_eq!(b.view().endpoint(), Some(url.as_str()));
        prop_assert_eq!(a.view().capabilities(), b.view().capabilities());
        prop_assert_eq!(a.view().input_modes(), b.view().input_modes());
        prop_assert_eq!(a.view().bindings(), b.view().bindings());
        let caps = a.view().capabilities();
        prop_assert_eq!(caps.len(), skills.len());
        for (c, s) in caps.iter().zip(&skills) {
            prop_assert_eq!(&c.name, s.name.trim());
            let tags: Vec<&str> = s.tags.iter().map(|t| t.trim()).collect();
            prop_assert_eq!(c.tags.iter().map(String::as_str).collect::<Vec<_>>(), tags);
        }
        // Accepted types: each skill's own, or the defaults.
        let mut want: Vec<String> = skills
            .iter()
            .flat_map(|s| s.input.clone().unwrap_or_else(|| defaults.clone()))
            .chain(if skills.is_empty() { defaults.clone() } else { vec![] })
            .map(|k| normalize_media_type(MODES[k]))
            .collect();
        want.sort();
        want.dedup();
        prop_assert_eq!(a.view().input_modes(), want);
        // Kept verbatim: the stored text reads back to the same card, ETag
        // and view; the card served is the card given.
        for (card, given) in [(&a, &v1), (&b, &v03)] {
            let back = AgentCard::from_stored(card.json()).expect("stored text");
            prop_assert_eq!(back.etag(), card.etag());
            prop_assert_eq!(back.view(), card.view());
            prop_assert_eq!(&card.to_value(), given);
        }
        prop_assert_ne!(a.etag(), b.etag());
    }
}

#[test]
fn the_canonical_text_does_not_depend_on_key_order() {
    let one: Value = serde_json::from_str(
        r#"{"name":"n","description":"d","version":"1","url":"http://a.example.com",
            "capabilities":{},"defaultInputModes":["text/plain"],"defaultOutputModes":["text/plain"],
            "skills":[{"id":"s","name":"S","description":"d","tags":["t"]}]}"#,
    )
    .unwrap();
    let two: Value = serde_json::from_str(
        r#"{"skills":[{"tags":["t"],"description":"d","name":"S","id":"s"}],
            "defaultOutputModes":["text/plain"],"defaultInputModes":["text/plain"],"capabilities":{},
            "url":"http://a.example.com","version":"1","description":"d","name":"n"}"#,
    )
    .unwrap();
    let a = AgentCard::from_value(&one, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
    let b = AgentCard::from_value(&two, &Limits::DEFAULT, DEFAULT_MAX_CARD_BYTES).unwrap();
    assert_eq!(a.json(), b.json());
    assert_eq!(a.etag(), b.etag());
}
