//! The etcd side of the comparison, over etcd's v3 JSON gateway (the HTTP
//! API every etcd 3.4 member serves next to gRPC): keys and values are
//! base64 in the JSON, 64-bit numbers come back as strings.
//!
//! Layout of an agent in etcd, as a registry built on etcd would keep it:
//! - lease `i + 1` (ids chosen by the client, so no lookup is needed);
//! - `/agents/<agent id>` = the same ~512-byte JSON record the registry gets;
//! - `/cap/<capability>/<agent id>` = the record again, one key per
//!   capability: the per-capability index a discovery ranges over (the
//!   record is denormalised so that one range answers a query, as one
//!   `POST /v1/discover` does on the registry).
//!
//! All keys of an agent carry its lease, so revoking or expiring the lease
//! removes the agent.
//!
//! Agents with A2A cards (the `cards` scenario) are kept apart, as a
//! registry built on etcd would keep them so that a discovery by skill and
//! input mode is a range plus one read:
//! - `/agents/<agent id>` = the record the card maps to (name, endpoint,
//!   version, description, one capability per skill);
//! - `/cards/<agent id>` = the card, canonical JSON (~4 KiB);
//! - `/skill/<skill id>/<agent id>` = the media types the agent accepts and
//!   produces (`in,in|out,out`), one key per skill: the index a discovery
//!   ranges over, holding what its input-mode filter needs, so that the
//!   ~4 KiB card is stored once instead of once per skill.

use serde_json::{json, Value};

use registry_types::card::canonical_json;

use super::{agent_body, agent_caps, cards};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what the gateway expects for bytes).
pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on a byte outside
/// the alphabet.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The first key after every key starting with `prefix` (etcd's
/// `range_end` for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Lease id of agent `i` (0 means "no lease" to etcd).
pub fn lease_id(i: usize) -> i64 {
    i as i64 + 1
}

/// The agent's record, serialised as the registry receives it.
pub fn record(i: usize) -> Vec<u8> {
    serde_json::to_vec(&agent_body(i)).unwrap_or_default()
}

/// `/agents/<id>` of agent `i`.
pub fn agent_key(i: usize) -> String {
    format!("/agents/bench-{i:07}")
}

/// `POST /v3/lease/grant` body: lease `lease_id(i)` with `ttl` seconds.
pub fn grant_body(i: usize, ttl: u64) -> Value {
    json!({"ID": lease_id(i), "TTL": ttl})
}

/// `POST /v3/kv/put` body: the record under `/agents/<id>` with the
/// agent's lease (`lease: false`: no lease).
pub fn put_body(i: usize, lease: bool) -> Value {
    let mut v = json!({"key": b64(agent_key(i).as_bytes()), "value": b64(&record(i))});
    if lease {
        v["lease"] = json!(lease_id(i));
    }
    v
}

/// `POST /v3/kv/txn` body registering agent `i` with its index keys, all
/// under its lease: one Raft entry, as one registration is on the registry.
pub fn register_txn_body(i: usize) -> Value {
    let rec = b64(&record(i));
    let id = format!("bench-{i:07}");
    let mut puts = vec![json!({"request_put": {
        "key": b64(agent_key(i).as_bytes()), "value": rec, "lease": lease_id(i)}})];
    for c in agent_caps(i) {
        puts.push(json!({"request_put": {
            "key": b64(format!("/cap/{c}/{id}").as_bytes()), "value": rec, "lease": lease_id(i)}}));
    }
    json!({"success": puts})
}

/// `POST /v3/kv/range` body: up to `limit` index entries of capability
/// `cap` (linearizable unless `serializable`).
pub fn discover_body(cap: &str, limit: u64, serializable: bool) -> Value {
    let prefix = format!("/cap/{cap}/");
    json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(&prefix)),
           "limit": limit, "serializable": serializable})
}

/// `POST /v3/kv/txn` body registering agent `i` of the card fleet (see
/// [`crate::cards`]) under its lease, in one Raft entry: with its card,
/// the record, the card and one index key per skill; without, the same
/// record alone (the memory baseline).
pub fn card_register_txn_body(i: usize, with_card: bool) -> Value {
    let id = format!("bench-{i:07}");
    let put = |key: String, value: &[u8]| json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value), "lease": lease_id(i)}});
    let record = serde_json::to_vec(&cards::registration_without_card(i)).unwrap_or_default();
    let mut puts = vec![put(agent_key(i), &record)];
    if with_card {
        let card = canonical_json(&cards::card(i));
        puts.push(put(format!("/cards/{id}"), card.as_bytes()));
        let (input, output) = cards::agent_modes(i);
        let modes = format!("{}|{}", input.join(","), output.join(","));
        for s in cards::agent_skills(i) {
            let skill = cards::skill_id(s);
            puts.push(put(format!("/skill/{skill}/{id}"), modes.as_bytes()));
        }
    }
    json!({"success": puts})
}

/// `POST /v3/kv/range` body: the next `limit` keys of skill `skill`'s index
/// from key `from` on (the prefix itself for the first page).
pub fn skill_page_body(skill: &str, from: &[u8], limit: u64, serializable: bool) -> Value {
    let prefix = format!("/skill/{skill}/");
    json!({"key": b64(from), "range_end": b64(&prefix_end(&prefix)),
           "limit": limit, "serializable": serializable})
}

/// `POST /v3/kv/txn` body reading the records of agents `ids` (and their
/// cards, with `cards`) in one round trip; served by the member itself
/// when `serializable` (a read-only transaction of serializable ranges).
pub fn fetch_txn_body(ids: &[String], cards: bool, serializable: bool) -> Value {
    let mut reads = Vec::with_capacity(ids.len() * 2);
    for id in ids {
        reads.push(
            json!({"request_range": {"key": b64(format!("/agents/{id}").as_bytes()),
                                             "serializable": serializable}}),
        );
        if cards {
            reads.push(
                json!({"request_range": {"key": b64(format!("/cards/{id}").as_bytes()),
                                                 "serializable": serializable}}),
            );
        }
    }
    json!({"success": reads})
}

/// `POST /v3/kv/range` body counting every key under `prefix`, answered by
/// the member itself (serializable): what that member has applied.
pub fn count_body(prefix: &str) -> Value {
    json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)),
           "count_only": true, "serializable": true})
}

/// A keepalive answer names the lease and its new TTL; for an unknown or
/// expired lease the TTL is absent (the gateway still answers 200).
pub fn keepalive_ok(body: &[u8]) -> bool {
    contains(body, b"\"TTL\"") && !contains(body, b"\"error\"")
}

/// A range answer that returned at least one key.
pub fn range_nonempty(body: &[u8]) -> bool {
    contains(body, b"\"kvs\"")
}

/// A read-only transaction's answer in which every read found its key.
pub fn txn_reads_found(v: &Value) -> bool {
    let Some(responses) = v["responses"].as_array() else {
        return false;
    };
    !responses.is_empty()
        && responses.iter().all(|r| {
            r["response_range"]["kvs"]
                .as_array()
                .is_some_and(|kvs| !kvs.is_empty())
        })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A 64-bit number the gateway sent as a string (or a number).
pub fn num(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `count` of a range answer (absent when zero).
pub async fn count(client: &reqwest::Client, url: &str, prefix: &str) -> Option<u64> {
    let r = client
        .post(format!("{url}/v3/kv/range"))
        .json(&count_body(prefix))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    Some(num(&v["count"]).unwrap_or(0))
}

/// (this member's id, the leader's id) from `POST /v3/maintenance/status`.
pub async fn status(client: &reqwest::Client, url: &str) -> Option<(u64, u64)> {
    let r = client
        .post(format!("{url}/v3/maintenance/status"))
        .json(&json!({}))
        .timeout(std::time::Duration::from_secs(1))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    let member = num(&v["header"]["member_id"])?;
    let leader = num(&v["leader"])?;
    (leader != 0).then_some((member, leader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foob"), "Zm9vYg==");
        assert_eq!(b64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn base64_decodes_what_it_encodes() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            &[0xfb, 0xff, 0x00, 0x7f],
        ] {
            assert_eq!(b64_decode(&b64(data)).as_deref(), Some(data));
        }
        assert_eq!(b64_decode("Zm9v!"), None);
    }

    #[test]
    fn a_card_registration_puts_record_card_and_one_index_key_per_skill() {
        let v = card_register_txn_body(11, true);
        let keys: Vec<String> = v["success"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let k = p["request_put"]["key"].as_str().unwrap();
                String::from_utf8(b64_decode(k).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(keys[0], "/agents/bench-0000011");
        assert_eq!(keys[1], "/cards/bench-0000011");
        assert_eq!(keys.len(), 2 + cards::agent_skills(11).len());
        assert!(keys[2..]
            .iter()
            .all(|k| k.starts_with("/skill/") && k.ends_with("/bench-0000011")));
        let bare = card_register_txn_body(11, false);
        assert_eq!(bare["success"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/cap/x/"), b"/cap/x0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn keepalive_of_an_unknown_lease_is_a_failure() {
        assert!(keepalive_ok(
            br#"{"result":{"header":{},"ID":"7","TTL":"30"}}"#
        ));
        assert!(!keepalive_ok(br#"{"result":{"header":{},"ID":"8"}}"#));
    }

    #[test]
    fn a_registration_txn_never_repeats_a_key() {
        for i in 0..256 {
            let v = register_txn_body(i);
            let keys: Vec<&str> = v["success"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["request_put"]["key"].as_str().unwrap())
                .collect();
            let mut dedup = keys.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(keys.len(), dedup.len(), "agent {i}");
        }
    }
}
