//! Membership changes on real processes: a three-node cluster under a
//! write, heartbeat and discovery load grows to five and shrinks back to
//! three, then a node whose disk is gone is replaced (its id removed, a new
//! id added on its address); nothing acknowledged is lost, no beating agent
//! turns unhealthy, and every node ends with the same state. Beside it: the
//! bad inputs and the 409s over HTTP, and a `--join` node that waits (503,
//! live) and never initializes a cluster of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry_client::types::api::{DiscoverRequest, HeartbeatRequest, ListFilter, RegisterRequest};
use registry_client::types::membership::ChangePhase;
use registry_client::types::{AgentStatus, ErrorCode, NodeId};
use registry_client::{Client, ReadOptions};
use reqwest::Method;
use serde_json::{json, Value};

use common::{send, wait_until, wait_until_for, Cluster};

/// Agents that beat all along: none may turn unhealthy.
const BEATING: usize = 20;
/// Their lease: short enough that a gap in heartbeats of a few seconds
/// (a lost leader, a node that stops answering) would show.
const BEATING_TTL_SECONDS: u32 = 4;

fn agent(id: &str, ttl: u32) -> RegisterRequest {
    serde_json::from_value(json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://{id}.agents.test:9000"),
        "capabilities": [{"name": "summarize", "description": "summarizes text"}],
        "ttl_seconds": ttl,
        "offline_after_seconds": ttl * 2,
        "deregister_after_seconds": 0,
    }))
    .expect("a valid RegisterRequest")
}

/// What the load saw.
#[derive(Default)]
struct Load {
    /// Registrations acknowledged (agent ids), the ledger.
    acked: Mutex<BTreeSet<String>>,
    /// Heartbeats that failed even after the client's retries.
    beats_failed: AtomicU64,
    beats_ok: AtomicU64,
    /// Discovery requests answered and failed.
    discovered: AtomicU64,
    discover_failed: AtomicU64,
    stop: AtomicBool,
}

/// Starts the load: registrations of new agents one after another,
/// heartbeats of the beating agents every 500 ms, discovery queries.
fn start_load(client: Client, load: Arc<Load>) -> Vec<tokio::task::JoinHandle<()>> {
    let writer = {
        let (client, load) = (client.clone(), load.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !load.stop.load(Ordering::Relaxed) {
                let id = format!("w-{n}");
                // Only acknowledged writes enter the ledger; a failed one
                // is sent again (registering is idempotent) until it is.
                match client.register(&agent(&id, 3600)).await {
                    Ok(_) => {
                        load.acked.lock().unwrap().insert(id);
                        n += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };
    let beater = {
        let (client, load) = (client.clone(), load.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            while !load.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let beats = (0..BEATING).map(|i| {
                    let client = client.clone();
                    async move {
                        client
                            .heartbeat(&format!("beat-{i}"), &HeartbeatRequest::default())
                            .await
                    }
                });
                for r in futures::future::join_all(beats).await {
                    match r {
                        Ok(_) => load.beats_ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => load.beats_failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        })
    };
    let discoverer = tokio::spawn(async move {
        let req: DiscoverRequest =
            serde_json::from_value(json!({"capabilities": ["summarize"], "limit": 10}))
                .expect("a valid DiscoverRequest");
        while !load.stop.load(Ordering::Relaxed) {
            match client.discover(&req, ReadOptions::default()).await {
                Ok(_) => load.discovered.fetch_add(1, Ordering::Relaxed),
                Err(_) => load.discover_failed.fetch_add(1, Ordering::Relaxed),
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    vec![writer, beater, discoverer]
}

/// Waits until the load has made progress since now: `writes` more
/// acknowledged registrations and `rounds` more rounds of heartbeats, so
/// each step of the story runs under load for a while.
async fn under_load(load: &Load, writes: usize, rounds: u64) {
    let (w0, b0) = (
        load.acked.lock().unwrap().len(),
        load.beats_ok.load(Ordering::Relaxed),
    );
    wait_until_for(
        "the load to make progress",
        Duration::from_secs(60),
        || async {
            let w = load.acked.lock().unwrap().len();
            let b = load.beats_ok.load(Ordering::Relaxed);
            if w >= w0 + writes && b >= b0 + rounds * BEATING as u64 {
                Ok(())
            } else {
                Err(format!("{} writes, {} beats since", w - w0, b - b0))
            }
        },
    )
    .await;
}

/// `POST /v1/cluster/members` to node `via`, until it answers 200 (a 503
/// while a leader is elected is sent again).
async fn add_member(c: &Cluster, via: NodeId, id: NodeId, addr: &str) -> Value {
    let url = format!("{}/v1/cluster/members", c.url(via));
    let body = json!({"node_id": id, "address": addr, "voter": true});
    wait_until_for(
        &format!("node {id} to be added through node {via}"),
        Duration::from_secs(90),
        || async {
            let r = send(
                &long_http(),
                Method::POST,
                &url,
                Some(body.to_string().into_bytes()),
            )
            .await?;
            match r.status {
                200 => Ok(r.json()),
                503 => Err(format!("503: {}", r.text)),
                s => panic!("adding node {id} through node {via}: HTTP {s}: {}", r.text),
            }
        },
    )
    .await
}

/// `DELETE /v1/cluster/members/{id}` through node `via`, until 200.
async fn remove_member(c: &Cluster, via: NodeId, id: NodeId) -> Value {
    let url = format!("{}/v1/cluster/members/{id}", c.url(via));
    wait_until_for(
        &format!("node {id} to be removed through node {via}"),
        Duration::from_secs(90),
        || async {
            let r = send(&long_http(), Method::DELETE, &url, None).await?;
            match r.status {
                200 => Ok(r.json()),
                503 => Err(format!("503: {}", r.text)),
                s => panic!(
                    "removing node {id} through node {via}: HTTP {s}: {}",
                    r.text
                ),
            }
        },
    )
    .await
}

/// An HTTP client whose requests may wait as long as a membership change.
fn long_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(registry_client::MEMBERSHIP_WAIT)
        .build()
        .expect("reqwest client")
}

/// Waits until every node of `on` holds exactly `voters` as voters and no
/// learner.
async fn wait_voters(c: &Cluster, on: &[NodeId], voters: &[NodeId]) {
    let want: BTreeSet<NodeId> = voters.iter().copied().collect();
    wait_until_for(
        &format!("nodes {on:?} to hold voters {voters:?}"),
        Duration::from_secs(60),
        || async {
            for id in on {
                let info = c.info(*id).await?;
                let got: BTreeSet<NodeId> = info
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.node_id)
                    .collect();
                if got != want || info.members.len() != want.len() {
                    return Err(format!("node {id} holds {:?}", info.members));
                }
            }
            Ok(())
        },
    )
    .await
}

/// The registry as node `id` holds it, read there with `min_revision`.
async fn state_of(c: &Cluster, id: NodeId, revision: u64) -> BTreeMap<String, String> {
    let client = c.client(&[id]);
    let opts = ReadOptions::stale().with_min_revision(revision);
    let list = client
        .list_all_agents(&ListFilter::default(), opts)
        .await
        .unwrap_or_else(|e| panic!("node {id}: listing failed: {e}"));
    list.agents
        .into_iter()
        .map(|a| (a.agent_id.to_string(), format!("{}", a.revision)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_shrink_to_three_and_replace_a_lost_node_under_load() {
    let mut c = Cluster::start(3, &["--snapshot-logs", "50"]).await;
    let (leader, _) = c.wait_leader(&[1, 2, 3]).await;

    eprintln!("--- register the beating agents and start the load");
    let client = c.client(&[1, 2, 3]);
    for i in 0..BEATING {
        let id = format!("beat-{i}");
        wait_until(&format!("registration of {id}"), || async {
            client
                .register(&agent(&id, BEATING_TTL_SECONDS))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
    }
    let load = Arc::new(Load::default());
    let tasks = start_load(client.clone(), load.clone());
    wait_until("the load to be under way", || async {
        let n = load.acked.lock().unwrap().len();
        if n >= 20 && load.beats_ok.load(Ordering::Relaxed) >= BEATING as u64 {
            Ok(())
        } else {
            Err(format!("{n} writes acknowledged"))
        }
    })
    .await;

    eprintln!("--- grow to five: nodes 4 and 5 start with --join, are added through a follower");
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    for id in [4, 5] {
        c.prepare_joining_node(id, None);
        c.start_node(id);
        let addr = c.addr(id);
        let answer = add_member(&c, follower, id, &addr).await;
        assert_eq!(answer["change"]["phase"], "done", "{answer}");
        assert_eq!(answer["change"]["node_id"], id, "{answer}");
        let matched = answer["change"]["matched_index"].as_u64().unwrap_or(0);
        assert!(
            matched > 0,
            "node {id} was promoted with nothing matched: {answer}"
        );
        c.wait_ready(id).await;
        under_load(&load, 100, 4).await;
    }
    wait_voters(&c, &[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5]).await;
    let leader_view = c
        .info(c.wait_leader(&[1, 2, 3, 4, 5]).await.0)
        .await
        .unwrap();
    let change = leader_view
        .membership_change
        .expect("the leader shows its last change");
    assert_eq!(change.phase, ChangePhase::Done);
    assert_eq!(change.node_id, 5);

    under_load(&load, 100, 4).await;

    eprintln!("--- shrink to three: remove nodes 5 and 4, then stop them");
    for id in [5, 4] {
        let via = [1, 2, 3].into_iter().find(|v| *v != id).unwrap();
        let answer = remove_member(&c, via, id).await;
        assert_eq!(answer["change"]["phase"], "done", "{answer}");
        c.wait_leader(&[1, 2, 3]).await;
    }
    wait_voters(&c, &[1, 2, 3], &[1, 2, 3]).await;
    for id in [4, 5] {
        c.terminate(id).await;
        c.forget(id);
    }

    under_load(&load, 100, 4).await;

    eprintln!("--- node 3's disk is lost: kill it, wipe it, remove id 3, add id 6 on its address");
    let port3 = c.node(3).port;
    c.kill(3);
    std::fs::remove_dir_all(&c.node(3).data_dir).expect("wipe node 3");
    c.forget(3);
    let (leader, _) = c.wait_leader(&[1, 2]).await;
    let answer = remove_member(&c, leader, 3).await;
    assert_eq!(answer["change"]["phase"], "done", "{answer}");
    c.prepare_joining_node(6, Some(port3));
    c.start_node(6);
    let addr6 = c.addr(6);
    let answer = add_member(&c, leader, 6, &addr6).await;
    assert_eq!(answer["change"]["phase"], "done", "{answer}");
    c.wait_ready(6).await;
    wait_voters(&c, &[1, 2, 6], &[1, 2, 6]).await;

    under_load(&load, 100, 4).await;

    eprintln!("--- stop the load; check the ledger, the beating agents and every node's state");
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let acked = load.acked.lock().unwrap().clone();
    eprintln!(
        "load: {} writes acknowledged, {} heartbeats ok, {} failed, {} discoveries ok, {} failed",
        acked.len(),
        load.beats_ok.load(Ordering::Relaxed),
        load.beats_failed.load(Ordering::Relaxed),
        load.discovered.load(Ordering::Relaxed),
        load.discover_failed.load(Ordering::Relaxed),
    );
    let (leader, _) = c.wait_leader(&[1, 2, 6]).await;
    let revision = c.info(leader).await.unwrap().revision;
    let reference = state_of(&c, leader, revision).await;
    for id in &acked {
        assert!(
            reference.contains_key(id),
            "acknowledged write {id} is lost"
        );
    }
    for id in [1, 2, 6] {
        assert_eq!(
            state_of(&c, id, revision).await,
            reference,
            "node {id}'s state differs from the leader's"
        );
    }
    let client = c.client(&[1, 2, 6]);
    for i in 0..BEATING {
        let rec = client
            .get_agent(&format!("beat-{i}"), ReadOptions::default())
            .await
            .expect("a beating agent");
        assert_eq!(rec.status, AgentStatus::Active, "beat-{i}: {rec:?}");
    }
    // No beating agent went unhealthy at any point: its events say so.
    let mut from = 1u64;
    loop {
        let url = format!("{}/v1/events?from_revision={from}&wait=0", c.url(leader));
        let r = send(&c.http, Method::GET, &url, None).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            let beating = e["agent_id"]
                .as_str()
                .is_some_and(|a| a.starts_with("beat-"));
            let status = e["status"].as_str().unwrap_or("");
            assert!(
                !beating || !matches!(status, "unhealthy" | "offline"),
                "a beating agent changed status: {e}"
            );
        }
        let next = page["next_from_revision"].as_u64().unwrap_or(from);
        if events.is_empty() || next > revision {
            break;
        }
        from = next;
    }
    assert_eq!(
        load.beats_failed.load(Ordering::Relaxed),
        0,
        "heartbeats failed after the client's retries"
    );
}

/// An error answer's code and field.
fn error_of(r: &common::Reply) -> (String, Option<String>) {
    let v = r.json();
    (
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["field"].as_str().map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_conflicts_and_a_joining_node_that_waits() {
    let mut c = Cluster::start(3, &[]).await;
    let (leader, _) = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let http = long_http();
    let members = format!("{}/v1/cluster/members", c.url(follower));

    eprintln!("--- bad input, answered before anything changes");
    let addr2 = c.addr(2);
    let cases = [
        (
            json!({"node_id": 0, "address": "127.0.0.1:1"}),
            400,
            ErrorCode::InvalidArgument,
            Some("node_id"),
        ),
        (
            json!({"node_id": 9, "address": "nohost"}),
            400,
            ErrorCode::InvalidArgument,
            Some("address"),
        ),
        (
            json!({"node_id": 9, "address": "a:1,2=b:2"}),
            400,
            ErrorCode::InvalidArgument,
            Some("address"),
        ),
        (
            json!({"node_id": 9, "address": "127.0.0.1:99999"}),
            400,
            ErrorCode::InvalidArgument,
            Some("address"),
        ),
        (json!({"node_id": 9}), 400, ErrorCode::InvalidArgument, None),
        (
            json!({"node_id": 9, "address": "127.0.0.1:1", "extra": 1}),
            400,
            ErrorCode::InvalidArgument,
            None,
        ),
        (
            json!({"node_id": 2, "address": "127.0.0.1:1"}),
            409,
            ErrorCode::MembershipConflict,
            Some("node_id"),
        ),
        (
            json!({"node_id": 9, "address": addr2}),
            409,
            ErrorCode::MembershipConflict,
            Some("address"),
        ),
    ];
    for (body, status, code, field) in cases {
        let r = send(
            &http,
            Method::POST,
            &members,
            Some(body.to_string().into_bytes()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{body}: {}", r.text);
        let (got_code, got_field) = error_of(&r);
        assert_eq!(got_code, code.to_string(), "{body}: {}", r.text);
        if field.is_some() {
            assert_eq!(got_field.as_deref(), field, "{body}: {}", r.text);
        }
    }
    // Nothing listens on this port: the node to add is not running.
    let idle = common::free_ports(1)[0];
    let r = send(
        &http,
        Method::POST,
        &members,
        Some(
            json!({"node_id": 9, "address": format!("127.0.0.1:{idle}")})
                .to_string()
                .into_bytes(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.text);
    for (path, status, code) in [
        ("77", 404, ErrorCode::MemberNotFound),
        ("abc", 400, ErrorCode::InvalidArgument),
        ("0", 400, ErrorCode::InvalidArgument),
    ] {
        let r = send(&http, Method::DELETE, &format!("{members}/{path}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, status, "DELETE {path}: {}", r.text);
        assert_eq!(
            error_of(&r).0,
            code.to_string(),
            "DELETE {path}: {}",
            r.text
        );
    }

    eprintln!("--- too few voters would remain reachable: refused, the cluster unchanged");
    let other = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    c.kill(other);
    wait_until(
        "the leader to see the stopped node silent for 2 s",
        || async {
            let info = c.info(leader).await?;
            let m = info.members.iter().find(|m| m.node_id == other).cloned();
            match m.and_then(|m| m.last_answer_ms) {
                Some(ms) if ms > 2_000 => Ok(()),
                seen => Err(format!("last answer {seen:?} ms ago")),
            }
        },
    )
    .await;
    // Removing the follower would leave {leader, stopped node}: one of two.
    let r = send(
        &http,
        Method::DELETE,
        &format!("{members}/{follower}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(error_of(&r).0, "membership_conflict");
    assert!(r.text.contains("reachable"), "{}", r.text);
    assert_eq!(c.info(leader).await.unwrap().members.len(), 3);
    c.start_node(other);
    c.wait_ready(other).await;
    let (leader, _) = c.wait_leader(&[1, 2, 3]).await;

    eprintln!("--- a --join node waits: live, 503 elsewhere, never initializes");
    c.prepare_joining_node(4, None);
    // It refuses every log entry (its disk floor is above any free space),
    // so once added it stays a learner catching up.
    c.set_node_args(4, &["--min-free-disk-mb", "1000000000"]);
    c.start_node(4);
    let url4 = c.url(4);
    wait_until("node 4 to be live", || async {
        let r = send(&c.http, Method::GET, &format!("{url4}/health/live"), None).await?;
        (r.status == 200)
            .then_some(())
            .ok_or(format!("HTTP {}", r.status))
    })
    .await;
    for path in [
        "/health/ready",
        "/v1/agents",
        "/v1/cluster",
        "/v1/cluster/members",
    ] {
        let r = send(&c.http, Method::GET, &format!("{url4}{path}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 503, "{path} on a --join node: {}", r.text);
        assert!(r.text.contains("--join"), "{path}: {}", r.text);
    }
    let log = c.node(4).log_since_last_start();
    assert!(log.contains("waiting to be added"), "{log}");
    assert!(!log.contains("initializing the cluster"), "{log}");
    assert!(!c.node(4).data_dir.join("cluster-id").exists());
    // Node-to-node routes of a node waiting to join take signed requests
    // only: an unsigned probe is refused.
    let r = common::send_with_headers(
        &c.http,
        Method::POST,
        &format!("{url4}/internal/join-probe"),
        None,
        &[
            (
                "content-type",
                "application/x-bincode; registry-format=2".to_string(),
            ),
            ("x-registry-from", "1".to_string()),
            ("x-registry-to", c.addr(4)),
            ("x-registry-timestamp", "0".to_string()),
            ("x-registry-seq", "1".to_string()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text);

    eprintln!("--- add node 4 (it cannot catch up); a second change meanwhile is refused");
    let adding = {
        let (http, members, addr4) = (http.clone(), members.clone(), c.addr(4));
        tokio::spawn(async move {
            send(
                &http,
                Method::POST,
                &members,
                Some(
                    json!({"node_id": 4, "address": addr4})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await
        })
    };
    let leader_url = c.url(leader);
    wait_until("the leader to show node 4 catching up", || async {
        let info = c.info(leader).await?;
        match info.membership_change {
            Some(ch) if ch.node_id == 4 && ch.phase == ChangePhase::CatchingUp => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let r = send(
        &http,
        Method::POST,
        &format!("{leader_url}/v1/cluster/members"),
        Some(
            json!({"node_id": 5, "address": "127.0.0.1:1"})
                .to_string()
                .into_bytes(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(error_of(&r).0, "membership_conflict");
    assert!(r.text.contains("in flight"), "{}", r.text);
    let r = send(&http, Method::DELETE, &format!("{members}/2"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text);

    eprintln!("--- node 4 restarts without the disk floor: it catches up and is promoted");
    c.kill(4);
    c.set_node_args(4, &[]);
    c.start_node(4);
    let answer = adding.await.expect("add task").expect("add request");
    assert!(
        answer.status == 200 || answer.status == 202,
        "{}: {}",
        answer.status,
        answer.text
    );
    wait_voters(&c, &[1, 2, 3, 4], &[1, 2, 3, 4]).await;
    c.wait_ready(4).await;
    let r = send(&c.http, Method::GET, &format!("{url4}/v1/cluster"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);

    let info = c.info(4).await.unwrap();
    assert!(info.members.iter().any(|m| m.node_id == 4 && m.voter));
}
