//! The metrics operators and the existing dashboards read (`GET /metrics`),
//! on a real 3-node cluster: the `agent_registry_*` figures move with
//! registrations, heartbeats, silence and discovery; the discovery label set
//! stays bounded whatever capabilities are asked for; every node reports its
//! commit and apply position and the membership; the leader reports each
//! member's reachability and replication; snapshots built and installed are
//! counted.

mod common;

use std::collections::BTreeMap;

use common::{send, wait_until, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// The capabilities with a discovery label of their own, at most
/// (`registry_server::metrics::DISCOVERY_LABELS`).
const DISCOVERY_LABELS: usize = 50;

/// One sample of an exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition (the subset the node writes: no escaped
/// quotes in label values, no timestamps).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = value.parse::<f64>().ok()?;
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}')?;
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once("=\"")?;
                            Some((k.to_string(), v.trim_end_matches('"').to_string()))
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// A node's samples, as a map from `name{k=v,...}` to value for lookups.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the series `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every series of `name`.
    fn all(&self, name: &str) -> Vec<&Sample> {
        self.0.iter().filter(|s| s.name == name).collect()
    }

    /// The value of `name` with these labels; an error naming it if absent.
    fn need(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        self.get(name, labels)
            .ok_or_else(|| format!("no {name}{labels:?}"))
    }
}

async fn scrape(c: &Cluster, id: u64) -> Result<Scrape, String> {
    let r = send(
        &c.http,
        Method::GET,
        &format!("{}/metrics", c.url(id)),
        None,
    )
    .await?;
    if r.status != 200 {
        return Err(format!("node {id}: /metrics answered {}", r.status));
    }
    Ok(Scrape(parse(&r.text)))
}

/// Sets the status of the 60 agents `b00` to `b59` through `node`: 60
/// sequential writes, one log entry each.
async fn set_status(c: &Cluster, node: u64, status: &str) {
    for i in 0..60 {
        let path = format!("/v1/agents/b{i:02}/status");
        c.call(node, Method::PUT, &path, Some(json!({"status": status})))
            .await;
    }
}

fn agent(id: &str, capabilities: &[&str], ttl: u32) -> Value {
    json!({
        "agent_id": id, "name": id, "endpoint": "http://a:1",
        "capabilities": capabilities.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        "ttl_seconds": ttl, "offline_after_seconds": ttl + 1,
    })
}

/// Every node's figure `name{labels}` equals `want`.
async fn everywhere(c: &Cluster, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} = {want} on every node");
    wait_until(&what, || async {
        for id in c.ids() {
            let v = scrape(c, id).await?.need(name, labels)?;
            if v != want {
                return Err(format!("node {id}: {v}"));
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_registry_and_stay_bounded() {
    eprintln!("--- a 3-node cluster that snapshots every 20 entries");
    let mut c = Cluster::start(3, &["--snapshot-logs", "20"]).await;
    let (leader, _) = c.wait_leader(&[1, 2, 3]).await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let follower = followers[0];

    eprintln!("--- every node reports its position and the membership");
    for id in c.ids() {
        let s = scrape(&c, id).await.unwrap();
        for name in [
            "registry_raft_commit_index",
            "registry_raft_apply_lag_entries",
            "registry_raft_has_leader",
            "agent_registry_capabilities_total",
            "agent_registry_stale_agents_total",
        ] {
            s.need(name, &[]).unwrap();
        }
        assert_eq!(s.need("registry_raft_voters", &[]).unwrap(), 3.0);
        assert_eq!(s.need("registry_raft_learners", &[]).unwrap(), 0.0);
        assert!(s.need("registry_raft_apply_lag_entries", &[]).unwrap() >= 0.0);
        // Every status is listed, at 0 in an empty registry.
        assert_eq!(s.all("agent_registry_agents_total").len(), 8);
    }
    eprintln!("--- the leader sees both followers reachable; followers report no members");
    wait_until("both followers reachable from the leader", || async {
        let s = scrape(&c, leader).await?;
        for f in &followers {
            let m = f.to_string();
            if s.need("registry_raft_member_reachable", &[("member", &m)])? != 1.0 {
                return Err(format!("member {f} not reachable"));
            }
            s.need("registry_raft_member_last_ack_seconds", &[("member", &m)])?;
            s.need("registry_raft_member_matched_index", &[("member", &m)])?;
        }
        Ok(())
    })
    .await;
    for f in &followers {
        let s = scrape(&c, *f).await.unwrap();
        assert!(s.all("registry_raft_member_reachable").is_empty());
    }

    eprintln!("--- registrations move the agent and capability figures on every node");
    c.call(
        follower,
        Method::POST,
        "/v1/agents",
        Some(agent("a0", &["trade", "vision"], 600)),
    )
    .await;
    for i in 1..3 {
        let body = agent(&format!("a{i}"), &["trade", "vision"], 2);
        c.call(follower, Method::POST, "/v1/agents", Some(body))
            .await;
    }
    everywhere(&c, "agent_registry_capabilities_total", &[], 6.0).await;

    eprintln!("--- a1 and a2 (TTL 2 s) never beat: they go stale, a0 does not");
    everywhere(&c, "agent_registry_stale_agents_total", &[], 2.0).await;
    everywhere(
        &c,
        "agent_registry_agents_total",
        &[("status", "offline")],
        2.0,
    )
    .await;
    everywhere(
        &c,
        "agent_registry_agents_total",
        &[("status", "active")],
        1.0,
    )
    .await;

    eprintln!("--- heartbeats through a follower are timed there");
    let count = "agent_registry_heartbeat_latency_seconds_count";
    let before = scrape(&c, follower)
        .await
        .unwrap()
        .need(count, &[])
        .unwrap();
    for _ in 0..5 {
        c.call(follower, Method::POST, "/v1/agents/a0/heartbeat", None)
            .await;
    }
    c.call(follower, Method::POST, "/agents/a0/heartbeat", None)
        .await;
    let after = scrape(&c, follower)
        .await
        .unwrap()
        .need(count, &[])
        .unwrap();
    assert_eq!(after - before, 6.0, "one observation per heartbeat");

    eprintln!("--- a1 registers again with a long TTL: one stale agent left");
    c.call(
        follower,
        Method::POST,
        "/v1/agents",
        Some(agent("a1", &["trade"], 600)),
    )
    .await;
    everywhere(&c, "agent_registry_stale_agents_total", &[], 1.0).await;
    everywhere(&c, "agent_registry_capabilities_total", &[], 5.0).await;

    eprintln!("--- 60 more agents, one capability each: more capabilities than labels");
    for i in 0..60 {
        let body = agent(&format!("b{i:02}"), &[&format!("cap-{i:02}")], 600);
        c.call(leader, Method::POST, "/v1/agents", Some(body)).await;
    }
    let name = "agent_registry_discovery_requests_total";
    wait_until("trade and vision labelled, the set full", || async {
        let s = scrape(&c, follower).await?;
        s.need(name, &[("capability", "trade")])?;
        s.need(name, &[("capability", "vision")])?;
        let n = s.all(name).len();
        if n != DISCOVERY_LABELS + 1 {
            return Err(format!("{n} series"));
        }
        Ok(())
    })
    .await;

    eprintln!("--- searches, discoveries and selections count per capability");
    let s0 = scrape(&c, follower).await.unwrap();
    for _ in 0..3 {
        c.call(
            follower,
            Method::GET,
            "/v1/capabilities/search?q=Trade",
            None,
        )
        .await;
    }
    for _ in 0..2 {
        let q = json!({"capabilities": ["trade"], "any_capabilities": ["vision", "trade"]});
        c.call(follower, Method::POST, "/v1/discover", Some(q))
            .await;
    }
    c.call(follower, Method::GET, "/v1/select?capability=trade", None)
        .await;
    c.call(
        follower,
        Method::POST,
        "/v1/discover",
        Some(json!({"text": "trade"})),
    )
    .await;
    let s1 = scrape(&c, follower).await.unwrap();
    let moved = |cap: &str| {
        s1.need(name, &[("capability", cap)]).unwrap()
            - s0.need(name, &[("capability", cap)]).unwrap()
    };
    assert_eq!(
        moved("trade"),
        6.0,
        "3 searches, 2 discoveries, 1 selection"
    );
    assert_eq!(moved("vision"), 2.0);
    assert_eq!(
        moved("other"),
        1.0,
        "a discovery by text names no capability"
    );

    eprintln!("--- 1,000 made-up capabilities: all under other, the label set unchanged");
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let urls: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "{}/v1/capabilities/search?q=made-up-{i}&consistency=stale",
                    c.url(follower)
                )
            })
            .collect();
        let asks = urls.iter().map(|url| send(&c.http, Method::GET, url, None));
        for r in futures::future::join_all(asks).await {
            let r = r.unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }
    let s2 = scrape(&c, follower).await.unwrap();
    let other = s2.need(name, &[("capability", "other")]).unwrap()
        - s1.need(name, &[("capability", "other")]).unwrap();
    assert_eq!(other, 1000.0);
    assert_eq!(s2.all(name).len(), DISCOVERY_LABELS + 1);
    assert!(s2
        .all(name)
        .iter()
        .all(|s| !s.labels["capability"].starts_with("made-up")));

    eprintln!("--- snapshots were built and WAL syncs timed on every node");
    for id in c.ids() {
        let s = scrape(&c, id).await.unwrap();
        assert!(
            s.need("registry_raft_snapshot_build_duration_seconds_count", &[])
                .unwrap()
                >= 1.0
        );
        assert!(
            s.need("registry_raft_snapshot_build_size_bytes", &[])
                .unwrap()
                > 0.0
        );
        assert!(
            s.need("registry_raft_wal_sync_duration_seconds_count", &[])
                .unwrap()
                >= 1.0
        );
        assert_eq!(
            s.need(
                "registry_raft_snapshot_build_failures_total",
                &[("reason", "error")]
            )
            .unwrap(),
            0.0
        );
    }

    eprintln!("--- kill a follower: the leader reports it unreachable");
    let down = followers[1];
    c.kill(down);
    let member = down.to_string();
    wait_until(
        "the killed follower unreachable from the leader",
        || async {
            let v = scrape(&c, leader)
                .await?
                .need("registry_raft_member_reachable", &[("member", &member)])?;
            if v == 0.0 {
                Ok(())
            } else {
                Err("still reachable".into())
            }
        },
    )
    .await;

    eprintln!("--- writes while it is down, until the leader purged its log past it");
    // The leader snapshots every 20 entries and purges in batches behind its
    // snapshot: write (one entry per sequential write) until that passed
    // what the follower holds.
    let mut rounds = 0;
    loop {
        let s = scrape(&c, leader).await.unwrap();
        let purged = s.need("registry_raft_purged_index", &[]).unwrap();
        let matched = s
            .need("registry_raft_member_matched_index", &[("member", &member)])
            .unwrap();
        let lag = s
            .need("registry_raft_member_lag_entries", &[("member", &member)])
            .unwrap();
        if purged > matched && lag > 0.0 {
            break;
        }
        assert!(
            rounds < 40,
            "purged {purged}, matched {matched}, lag {lag} after {rounds} rounds"
        );
        let status = if rounds % 2 == 0 { "degraded" } else { "busy" };
        set_status(&c, leader, status).await;
        rounds += 1;
    }
    set_status(&c, leader, "busy").await;

    eprintln!("--- back, it catches up by installing a snapshot");
    c.start_node(down);
    c.wait_ready(down).await;
    wait_until("a snapshot installed on the returning follower", || async {
        let s = scrape(&c, down).await?;
        let n = s.need("registry_raft_snapshot_install_duration_seconds_count", &[])?;
        let bytes = s.need("registry_raft_snapshot_install_size_bytes", &[])?;
        if n >= 1.0 && bytes > 0.0 {
            Ok(())
        } else {
            Err(format!("{n} installs"))
        }
    })
    .await;
    everywhere(
        &c,
        "agent_registry_agents_total",
        &[("status", "busy")],
        60.0,
    )
    .await;
    wait_until(
        "the returning follower reachable again, caught up",
        || async {
            let s = scrape(&c, leader).await?;
            let reachable = s.need("registry_raft_member_reachable", &[("member", &member)])?;
            let lag = s.need("registry_raft_member_lag_entries", &[("member", &member)])?;
            if reachable == 1.0 && lag == 0.0 {
                Ok(())
            } else {
                Err(format!("reachable {reachable}, lag {lag}"))
            }
        },
    )
    .await;
    for id in c.ids() {
        let s = scrape(&c, id).await.unwrap();
        assert_eq!(
            s.need("registry_raft_snapshot_install_failures_total", &[])
                .unwrap(),
            0.0
        );
    }
}
