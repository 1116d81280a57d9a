//! Leadership handover and the rolling restart built on it, on real
//! three-node clusters:
//!
//! - leadership handed over again and again (to the voter furthest along,
//!   to a named one, through a follower, and by SIGTERM on the leader)
//!   while writers and heartbeats run: not one write or heartbeat fails;
//!   the pause each handover held writes back is printed (p50 and max);
//! - the test: a rolling restart (followers first, each ready
//!   before the next, leadership handed over before the leader restarts)
//!   while 1,000 agents beat every second: zero heartbeats failed after one
//!   client retry, and no agent turned unhealthy.
//!
//! Requests that cannot be served are refused clearly: a target that is not
//! another voter, an unknown field.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry_client::types::api::{HeartbeatRequest, NodeRole, RegisterRequest};
use registry_client::types::{AgentStatus, NodeId};
use registry_client::Client;
use reqwest::Method;
use serde_json::json;

use common::{send, wait_until, Cluster};

fn agent(id: &str) -> RegisterRequest {
    serde_json::from_value(json!({
        "agent_id": id,
        "name": format!("agent {id}"),
        "endpoint": format!("http://{id}.agents.test:9000"),
        "capabilities": [{"name": "summarize"}],
        // Long leases: an agent that turns unhealthy missed heartbeats for
        // a minute, which no handover or restart may cause.
        "ttl_seconds": 60,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    }))
    .expect("a valid RegisterRequest")
}

/// A client of all nodes starting at `first`, with one retry: a call fails
/// when two attempts (on two nodes) failed.
fn one_retry_client(c: &Cluster, first: NodeId) -> Client {
    let mut ids = c.ids();
    let at = ids.iter().position(|i| *i == first).unwrap_or(0);
    ids.rotate_left(at);
    Client::builder(ids.iter().map(|id| c.url(*id)).collect())
        .request_timeout(Duration::from_secs(10))
        .max_attempts(2)
        .build()
        .expect("client")
}

/// Counts of a load that runs until stopped.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Slowest acknowledged call, in milliseconds.
    slowest_ms: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// Acknowledged calls that took over a second: (start, duration) in
    /// milliseconds since the load began, to place them among the steps.
    slow: Mutex<Vec<(u64, u64)>>,
    began: Mutex<Option<Instant>>,
}

impl Tally {
    fn record<T, E: std::fmt::Display>(&self, started: Instant, res: Result<T, E>) {
        match res {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let took = started.elapsed().as_millis() as u64;
                self.slowest_ms.fetch_max(took, Ordering::Relaxed);
                if took > 1000 {
                    let began = self.began.lock().ok().and_then(|b| *b);
                    let at = began.map_or(0, |b| started.duration_since(b).as_millis() as u64);
                    if let Ok(mut v) = self.slow.lock() {
                        v.push((at, took));
                    }
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut v) = self.errors.lock() {
                    if v.len() < 20 {
                        v.push(e.to_string());
                    }
                }
            }
        }
    }

    fn check(&self, what: &str) {
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        let (ok, failed) = (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        eprintln!(
            "{what}: {ok} acknowledged, {failed} failed, slowest {} ms; over 1 s (start ms, took ms): {:?}",
            self.slowest_ms.load(Ordering::Relaxed),
            self.slow.lock().map(|v| v.clone()).unwrap_or_default()
        );
        assert_eq!(failed, 0, "{what} failed: {errors:#?}");
        assert!(ok > 0, "{what}: nothing was acknowledged");
    }
}

/// Writers re-registering agents `w-<n>-<k>` in a loop through clients that
/// start at different nodes, until `stop`.
fn spawn_writers(
    c: &Cluster,
    writers: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let client = one_retry_client(c, c.ids()[w % c.ids().len()]);
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = agent(&format!("w-{w}-{}", k % 20));
                    let started = Instant::now();
                    tally.record(started, client.register(&req).await);
                    k += 1;
                }
            })
        })
        .collect()
}

/// Every agent in `ids` beats once a second (each through a client that
/// starts at a node of its own), until `stop`.
fn spawn_beats(
    c: &Cluster,
    ids: &[String],
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clients: Vec<Client> = c.ids().iter().map(|id| one_retry_client(c, *id)).collect();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let client = clients[i % clients.len()].clone();
            let (stop, tally, id) = (stop.clone(), tally.clone(), id.clone());
            // Spread over the second, as a fleet's beats are.
            let offset = Duration::from_millis((i as u64 * 1000) / ids.len().max(1) as u64);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + offset,
                    Duration::from_secs(1),
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let started = Instant::now();
                    let res = client.heartbeat(&id, &HeartbeatRequest::default()).await;
                    tally.record(started, res);
                }
            })
        })
        .collect()
}

async fn register_agents(c: &Cluster, ids: &[String]) {
    let client = c.client(&c.ids());
    for chunk in ids.chunks(100) {
        let acks = futures::future::join_all(chunk.iter().map(|id| {
            let client = client.clone();
            let req = agent(id);
            async move { client.register(&req).await }
        }))
        .await;
        for (id, ack) in chunk.iter().zip(acks) {
            ack.unwrap_or_else(|e| panic!("registering {id}: {e}"));
        }
    }
}

/// Waits until the load has been acknowledged `more` times beyond now.
async fn wait_progress(tally: &Tally, more: u64) {
    let target = tally.ok.load(Ordering::Relaxed) + more;
    wait_until("the load to go on", || async {
        let ok = tally.ok.load(Ordering::Relaxed);
        if ok >= target {
            Ok(())
        } else {
            Err(format!("{ok} of {target} acknowledged"))
        }
    })
    .await
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The restarted node `id` is back: its process serves and it is ready.
async fn restart(c: &mut Cluster, id: NodeId) {
    let status = c.terminate(id).await;
    assert!(status.success(), "node {id} exited with {status}");
    c.start_node(id);
    c.wait_ready(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handovers_under_load_fail_no_write_and_no_heartbeat() {
    let mut c = Cluster::start(3, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;

    eprintln!("--- refusals: not another voter, an unknown field");
    let url = |id: NodeId| format!("{}/v1/cluster/leader", c.url(id));
    for (body, field) in [
        (json!({"node_id": 99}), Some("node_id")),
        (json!({"node_id": leader}), Some("node_id")),
        (json!({"nodeid": 2}), None),
    ] {
        let r = send(
            &c.http,
            Method::POST,
            &url(leader),
            Some(body.to_string().into_bytes()),
        )
        .await
        .expect("answer");
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        if let Some(f) = field {
            assert_eq!(r.json()["error"]["field"], f, "{body}: {}", r.text);
        }
    }

    eprintln!("--- load: 8 writers and 300 agents beating every second");
    let ids: Vec<String> = (0..300).map(|i| format!("b-{i}")).collect();
    register_agents(&c, &ids).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, beats) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let began = Instant::now();
    for t in [&writes, &beats] {
        *t.began.lock().expect("lock") = Some(began);
    }
    let at = || began.elapsed().as_millis();
    let mut tasks = spawn_writers(&c, 8, &stop, &writes);
    tasks.extend(spawn_beats(&c, &ids, &stop, &beats));
    wait_progress(&writes, 200).await;

    eprintln!("--- six handovers: to the voter furthest along, to a named one, through a follower");
    let mut pauses = Vec::new();
    let mut leader = leader;
    for round in 0..6 {
        let follower = c
            .ids()
            .into_iter()
            .find(|i| *i != leader)
            .expect("a follower");
        let (via, to) = match round % 3 {
            0 => (leader, None),
            1 => (leader, Some(follower)),
            _ => (follower, None),
        };
        let client = c.client(&[via]);
        let h = client
            .hand_over_leadership(to)
            .await
            .unwrap_or_else(|e| panic!("handover {round} via node {via}: {e}"));
        assert_eq!(h.previous_leader, leader);
        assert_ne!(h.leader_id, leader);
        if let Some(t) = to {
            assert_eq!(h.leader_id, t, "the named voter leads");
        }
        let (now, _) = c.wait_leader(&c.ids()).await;
        assert_eq!(now, h.leader_id);
        eprintln!(
            "[{} ms] handover {round}: node {leader} -> node {} (term {}), writes held back {} ms",
            at(),
            h.leader_id,
            h.term,
            h.paused_ms
        );
        pauses.push(h.paused_ms);
        leader = h.leader_id;
        wait_progress(&writes, 100).await;
    }
    pauses.sort_unstable();
    eprintln!(
        "handover pause over {} handovers: p50 {} ms, max {} ms",
        pauses.len(),
        percentile(&pauses, 0.5),
        pauses[pauses.len() - 1]
    );

    eprintln!(
        "[{} ms] --- SIGTERM on the leader: it hands over before it stops",
        at()
    );
    let status = c.terminate(leader).await;
    assert!(status.success(), "the leader exited with {status}");
    let log = c.node(leader).log_since_last_start();
    assert!(
        log.contains("leadership handed over"),
        "the stopping leader did not hand over:\n{log}"
    );
    let others: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != leader).collect();
    c.wait_leader(&others).await;
    eprintln!("[{} ms] node {leader} stopped; others lead", at());
    wait_progress(&writes, 100).await;
    c.start_node(leader);
    c.wait_ready(leader).await;
    eprintln!("[{} ms] node {leader} back and ready", at());
    wait_progress(&writes, 100).await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    writes.check("writes");
    beats.check("heartbeats");

    eprintln!("--- a leader with no other voter refuses");
    let single = Cluster::start(1, &[]).await;
    let r = send(
        &single.http,
        Method::POST,
        &format!("{}/v1/cluster/leader", single.url(1)),
        None,
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("no other voter"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_while_1000_agents_beat_fails_no_heartbeat() {
    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader(&c.ids()).await;

    eprintln!("--- 1,000 agents registered, beating every second");
    let ids: Vec<String> = (0..1000).map(|i| format!("fleet-{i}")).collect();
    register_agents(&c, &ids).await;
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(Tally::default());
    let tasks = spawn_beats(&c, &ids, &stop, &beats);
    wait_progress(&beats, 2000).await;

    eprintln!("--- followers first, each ready before the next");
    let (leader, _) = c.wait_leader(&c.ids()).await;
    for id in c.ids().into_iter().filter(|i| *i != leader) {
        eprintln!("restarting follower node {id}");
        restart(&mut c, id).await;
        wait_progress(&beats, 1000).await;
    }

    eprintln!("--- leadership handed over, then the old leader restarts");
    let h = c
        .client(&[leader])
        .hand_over_leadership(None)
        .await
        .expect("handover");
    eprintln!(
        "node {leader} -> node {}: writes held back {} ms",
        h.leader_id, h.paused_ms
    );
    let info = c.info(leader).await.expect("cluster info");
    assert_ne!(info.role, NodeRole::Leader);
    restart(&mut c, leader).await;
    c.wait_leader(&c.ids()).await;
    wait_progress(&beats, 2000).await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("beat task");
    }
    beats.check("heartbeats during the rolling restart");

    eprintln!("--- no agent missed its deadline");
    let client = c.client(&c.ids());
    let unhealthy = client
        .stats()
        .await
        .expect("stats")
        .agents_by_status
        .iter()
        .filter(|(s, _)| **s != AgentStatus::Active)
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert_eq!(unhealthy, 0, "agents not active after the rolling restart");
}

/// Five voters: leader and target are not a majority, so the leader stops
/// its heartbeats and waits out the lease before the target stands (the
/// other path of `handover.rs`). Writes still fail none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_five_node_handover_waits_out_the_lease_and_fails_no_write() {
    let c = Cluster::start(5, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Tally::default());
    let tasks = spawn_writers(&c, 4, &stop, &writes);
    wait_progress(&writes, 100).await;

    eprintln!("--- two handovers among five voters");
    let mut leader = leader;
    for _ in 0..2 {
        let h = c
            .client(&[leader])
            .hand_over_leadership(None)
            .await
            .unwrap_or_else(|e| panic!("handover from node {leader}: {e}"));
        assert_ne!(h.leader_id, leader);
        let (now, _) = c.wait_leader(&c.ids()).await;
        assert_eq!(now, h.leader_id);
        eprintln!(
            "node {leader} -> node {}: writes held back {} ms",
            h.leader_id, h.paused_ms
        );
        leader = h.leader_id;
        wait_progress(&writes, 100).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    writes.check("writes among five voters");
}
