//! Liveness against real three-node clusters: heartbeats held in the
//! leader's memory, checkpoints, leader-decided expiry, the brake.
//!
//! - `beating_agents_survive_a_killed_and_a_paused_leader`: five agents beat
//!   through any node while the leader is killed (-9) and, later, another
//!   leader is paused (SIGSTOP) past an election. A watcher reading every
//!   node must never see them anything but `active`. Three silent agents,
//!   registered just before the kill, still go unhealthy/offline and are
//!   removed everywhere.
//! - `two_leader_changes_do_not_make_silent_agents_immortal`: the leader is
//!   killed twice in a row while silent agents wait for their offline
//!   deadline; they go offline no earlier than it and no later than it (or
//!   the last election plus one grace) plus slack, not a fresh
//!   `offline_after_seconds` after the last election. At the end the
//!   leader is stopped with SIGTERM: its liveness task must stop once.
//! - `agents_beating_through_one_follower_survive_a_paused_leader`: agents
//!   without fail-over, each talking to one follower only, while the leader
//!   is paused: the followers must move their heartbeats to the new leader.
//! - `brake_holds_mass_expiry_until_heartbeats_return` and
//!   `brake_releases_by_itself_after_the_maximum_hold`: eight of ten agents
//!   stop beating at once; the brake holds them back until they beat again,
//!   or at most `--brake-max-hold-seconds`.
//! - `a_new_leader_inherits_an_engaged_brake`: the leader holding the
//!   brake is killed; the brake events must still be one engagement and one
//!   release.
//! - `only_the_leader_reports_the_brake`: the leader holding the brake is
//!   paused; the next one holds it too, and the deposed one stops reporting
//!   it.
//! - `bad_heartbeats_change_nothing`: refused heartbeats over real HTTP,
//!   each followed by a checkpoint and compared; then valid edge cases (an
//!   empty body, a suspended agent that keeps beating).
//!
//! Timing: `--heartbeat-ms 50` makes the election timeout 100–300 ms and the
//! new-leader grace 300 ms, so TTLs of 1–4 s are allowed. Checkpoints every
//! 200 ms and sweeps every 100 ms keep the ratios of the defaults (1 s and
//! 0.5 s against a 30 s TTL) roughly in proportion. Every wait polls a
//! condition; the only time bounds asserted are the documented correctness
//! bounds, with slack, and mostly on the leader's own timestamps.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use registry_client::types::NodeId;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use common::{http_client, send, wait_until, Cluster, Reply};

/// Flags of every node: fast Raft and liveness (see the module note).
const FAST: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--checkpoint-interval-ms",
    "200",
    "--sweep-interval-ms",
    "100",
];

/// The grace a new leader gives every deadline: one (maximum) election
/// timeout, 6 Raft heartbeats of 50 ms.
const GRACE: Duration = Duration::from_millis(300);

/// Interval between two heartbeat rounds of the test's agents.
const BEAT_EVERY: Duration = Duration::from_millis(300);

/// How long the beater waits for one node before trying the next. Short, so
/// that a paused node (which accepts connections but never answers) costs
/// the agents little.
const BEAT_TIMEOUT: Duration = Duration::from_millis(500);

/// Interval between two polls of the watcher.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Slack added to documented expiry bounds: commit, apply, the test's own
/// polling, a loaded two-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// The name of the brake gauge in `GET /metrics`.
const BRAKE_METRIC: &str = "registry_liveness_brake_engaged";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A registration of `id` with the three liveness durations, in seconds.
fn agent(id: &str, ttl: u32, offline: u32, deregister: u32) -> Value {
    json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://{id}.agents.test:9000"),
        "capabilities": [{"name": "liveness", "tags": ["test"]}],
        "ttl_seconds": ttl,
        "offline_after_seconds": offline,
        "deregister_after_seconds": deregister,
    })
}

/// `ids` as `prefix-0 .. prefix-(n-1)`.
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Registers `body` through the running nodes, retrying (a registration
/// with an explicit id is an upsert, so a retry is safe) until one of them
/// acknowledges it. Returns the registered record.
async fn register(c: &Cluster, body: &Value) -> Value {
    let id = body["agent_id"].as_str().expect("agent_id");
    let bytes = serde_json::to_vec(body).expect("json");
    wait_until(&format!("registration of {id} to be acknowledged"), || {
        let bytes = bytes.clone();
        async move {
            let mut last = String::from("no running node");
            for node in c.running() {
                let url = format!("{}/v1/agents", c.url(node));
                match send(&c.http, Method::POST, &url, Some(bytes.clone())).await {
                    Ok(r) if r.status == 200 || r.status == 201 => {
                        return Ok(r.json()["agent"].clone())
                    }
                    Ok(r) if r.status >= 500 => {
                        last = format!("node {node}: HTTP {}: {}", r.status, r.text)
                    }
                    Ok(r) => panic!(
                        "registration of {id} refused by node {node}: HTTP {}: {}",
                        r.status, r.text
                    ),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    })
    .await
}

/// `body` as bytes.
fn bytes(body: &Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(body).expect("json"))
}

/// One agent as node `node` has it right now (`consistency=stale`), `None`
/// when that node answers 404.
async fn agent_on(c: &Cluster, node: NodeId, id: &str) -> Result<Option<Value>, String> {
    let url = format!("{}/v1/agents/{id}?consistency=stale", c.url(node));
    let r = send(&c.http, Method::GET, &url, None).await?;
    match r.status {
        200 => Ok(Some(r.json()["agent"].clone())),
        404 => {
            assert_eq!(
                r.json()["error"]["code"],
                "agent_not_found",
                "node {node}: {}",
                r.text
            );
            Ok(None)
        }
        s => Err(format!("node {node}: GET {id}: HTTP {s}: {}", r.text)),
    }
}

/// Every agent node `url` has right now (`consistency=stale`), by id. One
/// page: these tests register far fewer than the page limit.
async fn agents_at(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, Value>, String> {
    let resp = http
        .get(format!("{url}/v1/agents?consistency=stale&limit=1000"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: list answered {}", resp.status()));
    }
    let body: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    assert!(
        body["next_cursor"].is_null(),
        "{url}: more than one page: {body}"
    );
    Ok(body["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().expect("agent_id").to_string(),
                a.clone(),
            )
        })
        .collect())
}

/// The status of an agent record.
fn status(agent: &Value) -> &str {
    agent["status"].as_str().expect("status is a string")
}

/// A leader-stamped time of a record (`last_heartbeat`, `updated_at`).
fn stamp(agent: &Value, field: &str) -> DateTime<Utc> {
    let s = agent[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing: {agent}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{field} = {s:?}: {e}"))
        .with_timezone(&Utc)
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn chrono(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).expect("duration")
}

/// Waits until every node of `nodes` shows a checkpointed heartbeat of
/// every agent of `ids` later than `after`, i.e. the leader is taking their
/// heartbeats and its checkpoints reach every node.
async fn wait_checkpointed(c: &Cluster, nodes: &[NodeId], ids: &[String], after: DateTime<Utc>) {
    let what = format!("nodes {nodes:?} to show heartbeats of {ids:?} checkpointed after {after}");
    wait_until(&what, || checkpointed(c, nodes, ids, after)).await
}

/// One check of [`wait_checkpointed`]'s condition.
async fn checkpointed(
    c: &Cluster,
    nodes: &[NodeId],
    ids: &[String],
    after: DateTime<Utc>,
) -> Result<(), String> {
    for node in nodes {
        let all = agents_at(&c.http, &c.url(*node), Duration::from_secs(5)).await?;
        for id in ids {
            let a = all
                .get(id)
                .ok_or_else(|| format!("node {node}: {id} absent"))?;
            if stamp(a, "last_heartbeat") <= after {
                return Err(format!(
                    "node {node}: {id} last heartbeat {}",
                    a["last_heartbeat"]
                ));
            }
        }
    }
    Ok(())
}

/// Waits until every node of `nodes` shows every agent of `ids` with
/// `status` ("absent": not registered), and returns the records seen on
/// the last node checked (empty for "absent").
async fn wait_status(
    c: &Cluster,
    nodes: &[NodeId],
    ids: &[String],
    want: &str,
) -> BTreeMap<String, Value> {
    let what = format!("nodes {nodes:?} to show {ids:?} {want}");
    wait_until(&what, || async {
        let mut seen = BTreeMap::new();
        for node in nodes {
            let all = agents_at(&c.http, &c.url(*node), Duration::from_secs(5)).await?;
            for id in ids {
                let got = all.get(id).map_or("absent", status);
                if got != want {
                    return Err(format!("node {node}: {id} is {got}"));
                }
                if let Some(a) = all.get(id) {
                    seen.insert(id.clone(), a.clone());
                }
            }
        }
        Ok(seen)
    })
    .await
}

/// The brake gauge of node `id`.
async fn brake(c: &Cluster, id: NodeId) -> u64 {
    c.metric(id, BRAKE_METRIC).await
}

/// Waits until node `id`'s brake gauge reads `want`.
async fn wait_brake(c: &Cluster, id: NodeId, want: u64) {
    wait_until(
        &format!("node {id}'s {BRAKE_METRIC} to be {want}"),
        || async {
            match brake(c, id).await {
                v if v == want => Ok(()),
                v => Err(format!("{BRAKE_METRIC} = {v}")),
            }
        },
    )
    .await
}

/// The brake gauge of whichever node leads now (the brake is the
/// leader's; reading it there keeps a test valid across an unplanned
/// election on a loaded machine).
async fn leader_brake(c: &Cluster) -> u64 {
    let (leader, _) = c.wait_leader(&c.running()).await;
    brake(c, leader).await
}

/// Waits until the current leader's brake gauge reads `want`.
async fn wait_leader_brake(c: &Cluster, want: u64) {
    wait_until(
        &format!("the leader's {BRAKE_METRIC} to be {want}"),
        || async {
            match leader_brake(c).await {
                v if v == want => Ok(()),
                v => Err(format!("{BRAKE_METRIC} = {v}")),
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// The beater: agents that keep beating through a fail-over client
// ---------------------------------------------------------------------------

/// Which heartbeat route the beater uses.
#[derive(Clone, Copy)]
enum Route {
    /// `POST /v1/agents/{id}/heartbeat`, one call per agent, concurrently.
    Single,
    /// `POST /v1/heartbeats`, one call for all of them.
    Batch,
}

/// What the beater saw.
#[derive(Default, Debug)]
struct BeatLog {
    /// Acknowledged heartbeats per agent.
    acks: BTreeMap<String, u64>,
    /// Rounds in which an agent's heartbeat was not acknowledged by any node.
    failed: BTreeMap<String, u64>,
    /// Refusals (4xx, or `ok: false` items): never expected.
    refused: Vec<String>,
    /// Every attempt on one node: wall time, what, node, outcome. Printed
    /// when a test fails, to tell a slow node from a lost heartbeat.
    attempts: Vec<String>,
}

/// A background task beating for a changing set of agents every
/// [`BEAT_EVERY`], sending each call to the node that answered last and
/// moving on to the next node on a transport error, a timeout or a 5xx.
struct Beater {
    agents: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<BeatLog>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Beater {
    /// Beats through every node of `c`, with fail-over.
    fn start(c: &Cluster, agents: &[String], route: Route) -> Beater {
        let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
        Beater::start_on(urls, agents, route)
    }

    /// Beats through the nodes at `urls` only.
    fn start_on(urls: Vec<String>, agents: &[String], route: Route) -> Beater {
        let agents = Arc::new(Mutex::new(agents.to_vec()));
        let log = Arc::new(Mutex::new(BeatLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (agents, log, stop) = (agents.clone(), log.clone(), stop.clone());
            tokio::spawn(async move {
                let http = http_client();
                let preferred = AtomicUsize::new(0);
                while !stop.load(Ordering::Relaxed) {
                    let round = tokio::time::Instant::now();
                    let ids = agents.lock().unwrap().clone();
                    match route {
                        Route::Single => {
                            join_all(ids.iter().map(|id| {
                                let path = format!("/v1/agents/{id}/heartbeat");
                                let (http, urls, preferred, log) = (&http, &urls, &preferred, &log);
                                async move {
                                    let r =
                                        post_failover(http, urls, preferred, &path, None, log, id)
                                            .await;
                                    record_single(log, id, r);
                                }
                            }))
                            .await;
                        }
                        Route::Batch if ids.is_empty() => {}
                        Route::Batch => {
                            let items: Vec<Value> =
                                ids.iter().map(|id| json!({"agent_id": id})).collect();
                            let body = json!({ "heartbeats": items });
                            let r = post_failover(
                                &http,
                                &urls,
                                &preferred,
                                "/v1/heartbeats",
                                bytes(&body),
                                &log,
                                "batch",
                            )
                            .await;
                            record_batch(&log, &ids, r);
                        }
                    }
                    tokio::time::sleep_until(round + BEAT_EVERY).await;
                }
            })
        };
        Beater {
            agents,
            log,
            stop,
            task,
        }
    }

    /// From the next round on, beat for `agents` only.
    fn set_agents(&self, agents: &[String]) {
        *self.agents.lock().unwrap() = agents.to_vec();
    }

    /// Acknowledged heartbeats so far, per agent.
    fn acks(&self) -> BTreeMap<String, u64> {
        self.log.lock().unwrap().acks.clone()
    }

    async fn stop(self) -> BeatLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("beater task");
        Arc::try_unwrap(self.log)
            .expect("sole owner")
            .into_inner()
            .unwrap()
    }
}

/// One POST with its own timeout, to the nodes in turn from `preferred`;
/// the first answer below 500 wins and becomes the preferred node.
async fn post_failover(
    http: &reqwest::Client,
    urls: &[String],
    preferred: &AtomicUsize,
    path: &str,
    body: Option<Vec<u8>>,
    log: &Mutex<BeatLog>,
    what: &str,
) -> Result<Reply, String> {
    let start = preferred.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    let note = |url: &str, outcome: &str| {
        let at = Utc::now().format("%H:%M:%S%.3f");
        log.lock()
            .unwrap()
            .attempts
            .push(format!("{at} {what} -> {url}: {outcome}"));
    };
    for k in 0..urls.len() {
        let i = (start + k) % urls.len();
        let mut req = http
            .post(format!("{}{path}", urls[i]))
            .timeout(BEAT_TIMEOUT);
        if let Some(b) = &body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        match req.send().await {
            Ok(resp) if resp.status().as_u16() < 500 => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let Ok(text) = resp.text().await else {
                    errors.push(format!("{}: body cut", urls[i]));
                    continue;
                };
                preferred.store(i, Ordering::Relaxed);
                note(&urls[i], &status.to_string());
                return Ok(Reply {
                    status,
                    headers,
                    text,
                });
            }
            Ok(resp) => errors.push(format!("{}: HTTP {}", urls[i], resp.status())),
            Err(e) => errors.push(format!("{}: {e}", urls[i])),
        }
        if let Some(e) = errors.last() {
            note(&urls[i], e);
        }
    }
    Err(errors.join("; "))
}

fn record_single(log: &Mutex<BeatLog>, id: &str, r: Result<Reply, String>) {
    let mut log = log.lock().unwrap();
    match r {
        Ok(r) if r.status == 200 => *log.acks.entry(id.to_string()).or_default() += 1,
        Ok(r) => log
            .refused
            .push(format!("{id}: HTTP {}: {}", r.status, r.text)),
        Err(_) => *log.failed.entry(id.to_string()).or_default() += 1,
    }
}

fn record_batch(log: &Mutex<BeatLog>, ids: &[String], r: Result<Reply, String>) {
    let mut log = log.lock().unwrap();
    match r {
        Ok(r) if r.status == 200 => {
            let body = r.json();
            for (id, res) in ids.iter().zip(body["results"].as_array().expect("results")) {
                assert_eq!(
                    res["agent_id"],
                    id.as_str(),
                    "results come in request order"
                );
                if res["ok"] == true {
                    *log.acks.entry(id.clone()).or_default() += 1;
                } else {
                    log.refused.push(format!("{id}: {res}"));
                }
            }
        }
        Ok(r) => log
            .refused
            .push(format!("batch: HTTP {}: {}", r.status, r.text)),
        Err(_) => {
            for id in ids {
                *log.failed.entry(id.clone()).or_default() += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The watcher: what every node shows, as it changes
// ---------------------------------------------------------------------------

/// Per (node, agent): the distinct statuses that node showed, in the order
/// seen ("absent" when it did not list the agent), each with the time since
/// the watcher started.
type Sightings = BTreeMap<(NodeId, String), Vec<(String, Duration)>>;

/// A background task listing every watched node (`consistency=stale`) every
/// [`WATCH_EVERY`] and recording each change of status of the given agents.
struct Watcher {
    watched: Arc<Mutex<BTreeSet<NodeId>>>,
    sightings: Arc<Mutex<Sightings>>,
    /// Completed polls per node: proof that the watcher did look.
    polls: Arc<Mutex<BTreeMap<NodeId, u64>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Watcher {
    fn start(c: &Cluster, agents: &[String]) -> Watcher {
        let urls: BTreeMap<NodeId, String> = c.ids().iter().map(|id| (*id, c.url(*id))).collect();
        let watched = Arc::new(Mutex::new(c.running().into_iter().collect::<BTreeSet<_>>()));
        let sightings = Arc::new(Mutex::new(Sightings::new()));
        let polls = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let agents = agents.to_vec();
        let task = {
            let (watched, sightings, polls, stop) = (
                watched.clone(),
                sightings.clone(),
                polls.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let http = http_client();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let round = tokio::time::Instant::now();
                    let nodes: Vec<NodeId> = watched.lock().unwrap().iter().copied().collect();
                    let lists = join_all(
                        nodes
                            .iter()
                            .map(|id| agents_at(&http, &urls[id], Duration::from_secs(1))),
                    )
                    .await;
                    let at = started.elapsed();
                    {
                        let mut s = sightings.lock().unwrap();
                        for (node, list) in nodes.iter().zip(lists) {
                            let Ok(list) = list else { continue };
                            *polls.lock().unwrap().entry(*node).or_default() += 1;
                            for id in &agents {
                                let now = list.get(id).map_or("absent", status).to_string();
                                let seen = s.entry((*node, id.clone())).or_default();
                                if seen.last().map(|(st, _)| st) != Some(&now) {
                                    seen.push((now, at));
                                }
                            }
                        }
                    }
                    tokio::time::sleep_until(round + WATCH_EVERY).await;
                }
            })
        };
        Watcher {
            watched,
            sightings,
            polls,
            stop,
            task,
        }
    }

    fn watch(&self, id: NodeId) {
        self.watched.lock().unwrap().insert(id);
    }

    fn unwatch(&self, id: NodeId) {
        self.watched.lock().unwrap().remove(&id);
    }

    fn sightings(&self) -> Sightings {
        self.sightings.lock().unwrap().clone()
    }

    async fn stop(self) -> (Sightings, BTreeMap<NodeId, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watcher task");
        let s = self.sightings.lock().unwrap().clone();
        let p = self.polls.lock().unwrap().clone();
        (s, p)
    }
}

/// The sightings of `ids` on any node with a status other than `allowed`,
/// as readable lines (empty when there were none).
fn sightings_other_than(sightings: &Sightings, ids: &[String], allowed: &[&str]) -> Vec<String> {
    sightings
        .iter()
        .filter(|((_, id), _)| ids.contains(id))
        .flat_map(|((node, id), seen)| {
            seen.iter()
                .filter(|(st, _)| !allowed.contains(&st.as_str()))
                .map(move |(st, at)| {
                    format!("node {node} showed {id} {st} ({at:?} into the watch)")
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beating_agents_survive_a_killed_and_a_paused_leader() {
    eprintln!("--- start a 3-node cluster (Raft heartbeat 50 ms: election timeout 250-500 ms)");
    let mut c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (first, _) = c.wait_leader(&all).await;
    let beating = names("beating", 5);
    let silent = names("silent", 3);

    eprintln!(
        "--- register {} agents (TTL 2 s) and beat for them every {BEAT_EVERY:?} through any node",
        beating.len()
    );
    for id in &beating {
        register(&c, &agent(id, 2, 3, 0)).await;
    }
    let beater = Beater::start(&c, &beating, Route::Single);
    wait_checkpointed(&c, &all, &beating, Utc::now()).await;
    // From here on every node has them (stale reads before this point may
    // lag behind the registrations).
    let watched: Vec<String> = beating.iter().chain(&silent).cloned().collect();
    let watcher = Watcher::start(&c, &watched);

    eprintln!(
        "--- register {} silent agents (TTL 1 s, offline after 2 s, removed after 4 s)",
        silent.len()
    );
    for id in &silent {
        register(&c, &agent(id, 1, 2, 4)).await;
    }
    // Registering counts as a heartbeat: the last one these agents ever send.
    let silent_acked = Instant::now();

    eprintln!("--- kill -9 the leader, node {first}");
    watcher.unwatch(first);
    let killed_at = Utc::now();
    c.kill(first);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = c.wait_leader(&rest).await;

    eprintln!(
        "--- node {second} leads; the beats reach it and its checkpoints reach node {rest:?}"
    );
    wait_checkpointed(&c, &rest, &beating, killed_at).await;

    eprintln!("--- the silent agents are removed on every running node");
    wait_status(&c, &rest, &silent, "absent").await;
    let removed = silent_acked.elapsed();
    let bound = Duration::from_secs(4 + 10);
    assert!(
        removed <= bound,
        "silent agents removed {removed:?} after their last heartbeat, later than {bound:?} \
         (deregister_after_seconds 4 + 10 s)"
    );
    // Each node's sightings, leading "absent" (before the registration
    // reached it) dropped: the ladder must show unhealthy or offline before
    // the removal on some node, and nothing after the removal on any.
    for id in &silent {
        let mut ladder = false;
        for ((node, a), seen) in watcher.sightings().iter().filter(|((_, a), _)| a == id) {
            let seen: Vec<&str> = seen
                .iter()
                .map(|(st, _)| st.as_str())
                .skip_while(|st| *st == "absent")
                .collect();
            eprintln!("{a} on node {node}: {}", seen.join(" -> "));
            // Removal is final; the watcher may not have seen it yet.
            let gone = seen
                .iter()
                .position(|st| *st == "absent")
                .unwrap_or(seen.len());
            assert!(
                gone + 1 >= seen.len(),
                "node {node}: {id} came back: {seen:?}"
            );
            ladder |= seen[..gone]
                .iter()
                .any(|st| *st == "unhealthy" || *st == "offline");
        }
        assert!(
            ladder,
            "{id} was never seen unhealthy or offline before its removal"
        );
    }

    eprintln!("--- restart node {first}: it catches up, the silent agents are gone there too");
    c.start_node(first);
    c.wait_ready(first).await;
    for id in &silent {
        let a = agent_on(&c, first, id).await.expect("read");
        assert!(a.is_none(), "node {first} still has {id}: {a:?}");
    }
    watcher.watch(first);
    wait_checkpointed(&c, &all, &beating, Utc::now()).await;

    let (paused, _) = c.wait_leader(&all).await;
    eprintln!("--- SIGSTOP the leader, node {paused}");
    watcher.unwatch(paused);
    let paused_at = Utc::now();
    c.signal(paused, libc::SIGSTOP);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != paused).collect();
    let (third, _) = c.wait_leader(&rest).await;

    // Condition, not a sleep: the pause lasts until the new leader has
    // taken heartbeats for more than 2 s of it, so the paused node comes
    // back to a world that moved on (and finds a sweep gap over 2 s).
    eprintln!("--- node {third} leads; wait until it has checkpointed beats 2.5 s into the pause");
    wait_checkpointed(
        &c,
        &rest,
        &beating,
        paused_at + chrono::TimeDelta::milliseconds(2_500),
    )
    .await;

    eprintln!("--- SIGCONT node {paused}: it steps down and catches up");
    c.signal(paused, libc::SIGCONT);
    let resumed_at = Utc::now();
    c.wait_leader(&all).await;
    watcher.watch(paused);
    wait_checkpointed(&c, &all, &beating, resumed_at).await;

    eprintln!("--- a few more rounds of beats seen by every node, then stop");
    let acks_before = beater.acks();
    wait_checkpointed(&c, &all, &beating, Utc::now()).await;
    let (sightings, polls) = watcher.stop().await;
    let log = beater.stop().await;
    eprintln!(
        "beater: acks {:?}, failed rounds {:?}",
        log.acks, log.failed
    );
    eprintln!("watcher polls per node: {polls:?}");

    eprintln!("--- the beating agents were never anything but active, on any node");
    for node in &all {
        assert!(
            polls.get(node).copied().unwrap_or(0) >= 20,
            "the watcher barely read node {node}: {polls:?}"
        );
    }
    let bad = sightings_other_than(&sightings, &beating, &["active"]);
    assert!(
        bad.is_empty(),
        "beating agents were marked down:\n{}\nheartbeat attempts:\n{}",
        bad.join("\n"),
        log.attempts.join("\n")
    );
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );
    for id in &beating {
        assert!(
            log.acks.get(id) > acks_before.get(id),
            "{id}: no heartbeat acknowledged after the pause: {:?}",
            log.acks
        );
        // Every node saw this agent from the start (it was registered
        // before the watcher started) and only ever as active.
        for node in &all {
            let seen = &sightings[&(*node, id.clone())];
            assert_eq!(seen[0].0, "active", "node {node}, {id}: {seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leader_changes_do_not_make_silent_agents_immortal() {
    // TTL 4 s paces the story (the kills start once the agents are
    // unhealthy); offline after 9 s leaves room for both failovers before
    // that deadline, so a new leader that granted a fresh offline_after
    // (etcd #9888) would push the transition seconds past the bound.
    const TTL: u32 = 4;
    const OFFLINE: u32 = 9;
    eprintln!("--- start a 3-node cluster");
    let mut c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (first, _) = c.wait_leader(&all).await;
    let silent = names("silent", 3);

    eprintln!(
        "--- register {} silent agents (TTL {TTL} s, offline after {OFFLINE} s, never removed)",
        silent.len()
    );
    let mut registered = BTreeMap::new();
    for id in &silent {
        registered.insert(id.clone(), register(&c, &agent(id, TTL, OFFLINE, 0)).await);
    }
    let registered_at = Instant::now();

    eprintln!("--- they go unhealthy on every node under leader {first}");
    wait_status(&c, &all, &silent, "unhealthy").await;

    eprintln!("--- kill -9 the leader, node {first}");
    let kill_1 = Instant::now();
    c.kill(first);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = c.wait_leader(&rest).await;
    let election_1 = kill_1.elapsed();

    eprintln!("--- node {second} leads; restart node {first} to keep a quorum once {second} dies");
    c.start_node(first);
    c.wait_ready(first).await;

    eprintln!("--- kill -9 the new leader, node {second}, as well");
    let kill_2 = Instant::now();
    c.kill(second);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != second).collect();
    let (third, _) = c.wait_leader(&rest).await;
    let election_2 = kill_2.elapsed();
    let last_elected = Utc::now();
    eprintln!(
        "--- node {third} leads ({:?} after registration; elections took {election_1:?} and {election_2:?})",
        registered_at.elapsed()
    );

    eprintln!("--- the silent agents go offline on both running nodes");
    let offline = wait_status(&c, &rest, &silent, "offline").await;
    let observed = registered_at.elapsed();
    let brief_bound =
        Duration::from_secs(u64::from(OFFLINE)) + 2 * GRACE + election_1 + election_2 + SLACK;
    assert!(
        observed <= brief_bound,
        "offline seen {observed:?} after registration, later than offline_after + 2 graces + \
         both elections + slack = {brief_bound:?}"
    );
    for id in &silent {
        let a = &offline[id];
        let last = stamp(a, "last_heartbeat");
        assert_eq!(
            last,
            stamp(&registered[id], "last_heartbeat"),
            "{id} never beat"
        );
        let went = stamp(a, "updated_at");
        // Never early: not before offline_after of silence, whoever led.
        let earliest = last + chrono::TimeDelta::seconds(OFFLINE.into());
        assert!(
            went >= earliest,
            "{id} went offline at {went}, before its deadline {earliest} (last heartbeat {last})"
        );
        // Not late: by the deadline, or the last election plus one grace,
        // whichever is later (last_elected is when the test saw the
        // election, so no earlier than it), plus slack.
        let latest = earliest.max(last_elected + chrono(GRACE)) + chrono(SLACK);
        assert!(
            went <= latest,
            "{id} went offline at {went}, {:.1} s after its last heartbeat: later than \
             max(deadline, last election + grace) + slack = {latest}; a fresh offline_after \
             after the last election would be {}",
            secs(went - last),
            last_elected + chrono::TimeDelta::seconds(OFFLINE.into())
        );
    }

    eprintln!("--- restart node {second}: it agrees");
    c.start_node(second);
    c.wait_ready(second).await;
    wait_status(&c, &all, &silent, "offline").await;

    let (leader, _) = c.wait_leader(&all).await;
    eprintln!(
        "--- SIGTERM the leader, node {leader}: its liveness task stops once, without spinning"
    );
    let exit = c.terminate(leader).await;
    assert!(exit.success(), "node {leader} exited with {exit}");
    let log = c.node(leader).log_since_last_start();
    let starts = log.matches("liveness deadlines restart").count();
    assert!(
        starts <= 2,
        "node {leader} (re)started leading {starts} times since its last start: the liveness \
         task spun at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_beating_through_one_follower_survive_a_paused_leader() {
    // An agent configured with one node (no fail-over) beats through a
    // follower, which forwards to the leader. When the leader stops
    // answering, the follower must move its heartbeats to the new leader as
    // soon as it knows it, not after the write timeout (5 s).
    eprintln!("--- start a 3-node cluster");
    let c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (paused, _) = c.wait_leader(&all).await;
    let followers: Vec<NodeId> = all.iter().copied().filter(|id| *id != paused).collect();

    eprintln!("--- 2 agents (TTL 2 s) per follower {followers:?}, each beating through that follower only");
    let mut pinned = Vec::new();
    let mut beaters = Vec::new();
    for f in &followers {
        let ids = names(&format!("via-{f}"), 2);
        for id in &ids {
            register(&c, &agent(id, 2, 3, 0)).await;
        }
        beaters.push(Beater::start_on(vec![c.url(*f)], &ids, Route::Single));
        pinned.extend(ids);
    }
    wait_checkpointed(&c, &all, &pinned, Utc::now()).await;
    let watcher = Watcher::start(&c, &pinned);

    eprintln!("--- SIGSTOP the leader, node {paused}");
    watcher.unwatch(paused);
    let paused_at = Utc::now();
    c.signal(paused, libc::SIGSTOP);
    let (leader, _) = c.wait_leader(&followers).await;

    eprintln!("--- node {leader} leads; wait until it has checkpointed beats 2.5 s into the pause");
    wait_checkpointed(
        &c,
        &followers,
        &pinned,
        paused_at + chrono::TimeDelta::milliseconds(2_500),
    )
    .await;

    eprintln!("--- SIGCONT node {paused}: it steps down and catches up");
    c.signal(paused, libc::SIGCONT);
    let resumed_at = Utc::now();
    c.wait_leader(&all).await;
    watcher.watch(paused);
    wait_checkpointed(&c, &all, &pinned, resumed_at).await;

    eprintln!("--- no agent was ever anything but active, on any node");
    let (sightings, _) = watcher.stop().await;
    let mut attempts = Vec::new();
    for b in beaters {
        let log = b.stop().await;
        assert!(
            log.refused.is_empty(),
            "heartbeats refused: {:?}",
            log.refused
        );
        attempts.extend(log.attempts);
    }
    attempts.sort();
    let bad = sightings_other_than(&sightings, &pinned, &["active"]);
    assert!(
        bad.is_empty(),
        "agents beating through one follower were marked down (paused at {paused_at}):\n{}\n\
         heartbeat attempts:\n{}",
        bad.join("\n"),
        attempts.join("\n")
    );
}

/// Ten agents beating in one batch call each round; `deregister` for the
/// eight that will go silent.
async fn brake_fleet(c: &Cluster, deregister: u32) -> (Vec<String>, Vec<String>, Beater) {
    let keep = names("keep", 2);
    let quiet = names("quiet", 8);
    for id in &keep {
        register(c, &agent(id, 1, 2, 0)).await;
    }
    for id in &quiet {
        register(c, &agent(id, 1, 2, deregister)).await;
    }
    let fleet: Vec<String> = keep.iter().chain(&quiet).cloned().collect();
    let beater = Beater::start(c, &fleet, Route::Batch);
    wait_checkpointed(c, &c.ids(), &fleet, Utc::now()).await;
    (keep, quiet, beater)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brake_holds_mass_expiry_until_heartbeats_return() {
    eprintln!("--- start a 3-node cluster; the brake applies to fleets of 4 or more");
    let c = Cluster::start(3, &[FAST, &["--brake-min-fleet", "4"]].concat()).await;
    let all = c.ids();
    let (leader, _) = c.wait_leader(&all).await;

    eprintln!("--- 10 agents (TTL 1 s, offline after 2 s; 8 removed after 3 s) beat via POST /v1/heartbeats");
    let (keep, quiet, beater) = brake_fleet(&c, 3).await;
    assert_eq!(
        leader_brake(&c).await,
        0,
        "brake engaged before anything happened"
    );

    eprintln!("--- 8 of the 10 stop beating at once; the leader, node {leader}, engages the brake");
    beater.set_agents(&keep);
    wait_leader_brake(&c, 1).await;
    let engaged_seen = Utc::now();

    // The 8 were due offline when the brake engaged, and due for removal a
    // second later. Hold on until the leader has checkpointed the two
    // others for 1.5 s more (it is alive and sweeping), checking all along.
    eprintln!("--- while it holds, the 8 may be unhealthy but stay registered and not offline");
    let mut rounds = 0;
    wait_until(
        "the leader to keep going for 1.5 s with the brake held",
        || {
            rounds += 1;
            async {
                for node in &all {
                    let list = agents_at(&c.http, &c.url(*node), Duration::from_secs(5)).await?;
                    for id in &quiet {
                        let st = list.get(id).map_or("absent", status);
                        assert!(
                            st == "unhealthy" || st == "active",
                            "node {node}: {id} is {st} while the brake is engaged"
                        );
                    }
                }
                assert_eq!(
                    leader_brake(&c).await,
                    1,
                    "the brake released without heartbeats"
                );
                checkpointed(
                    &c,
                    &all,
                    &keep,
                    engaged_seen + chrono::TimeDelta::milliseconds(1_500),
                )
                .await
            }
        },
    )
    .await;
    assert!(rounds >= 3, "the hold was checked only {rounds} times");
    wait_status(&c, &all, &quiet, "unhealthy").await;

    eprintln!("--- heartbeats return: the brake releases and the 8 are active again everywhere");
    let fleet: Vec<String> = keep.iter().chain(&quiet).cloned().collect();
    beater.set_agents(&fleet);
    wait_leader_brake(&c, 0).await;
    wait_status(&c, &all, &fleet, "active").await;
    let log = beater.stop().await;
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brake_releases_by_itself_after_the_maximum_hold() {
    const HOLD: i64 = 3;
    eprintln!("--- start a 3-node cluster; brake for fleets of 4 or more, held at most {HOLD} s");
    let hold = HOLD.to_string();
    let c = Cluster::start(
        3,
        &[
            FAST,
            &["--brake-min-fleet", "4", "--brake-max-hold-seconds", &hold],
        ]
        .concat(),
    )
    .await;
    let all = c.ids();
    let (leader, _) = c.wait_leader(&all).await;

    eprintln!(
        "--- 10 agents (TTL 1 s, offline after 2 s, never removed) beat via POST /v1/heartbeats"
    );
    let (keep, quiet, beater) = brake_fleet(&c, 0).await;

    eprintln!(
        "--- 8 of the 10 stop beating for good; the leader, node {leader}, engages the brake"
    );
    beater.set_agents(&keep);
    wait_leader_brake(&c, 1).await;

    eprintln!("--- it releases by itself; nobody went offline while it held");
    wait_until("the leader's brake gauge to return to 0", || async {
        // Gauge before and after the listing: if it read 1 both times, the
        // listing was taken while the brake held (a forced release does not
        // re-engage for the same mass event).
        let before = leader_brake(&c).await;
        let mut offline = Vec::new();
        for node in &all {
            let list = agents_at(&c.http, &c.url(*node), Duration::from_secs(5)).await?;
            offline.extend(
                quiet
                    .iter()
                    .filter(|id| list.get(*id).map_or("absent", status) != "unhealthy")
                    .filter(|id| list.get(*id).map_or("absent", status) != "active")
                    .map(|id| {
                        format!(
                            "node {node}: {id} {}",
                            list.get(id).map_or("absent", status)
                        )
                    }),
            );
        }
        let after = leader_brake(&c).await;
        if before == 1 && after == 1 {
            assert!(offline.is_empty(), "while the brake held: {offline:?}");
        }
        if after == 0 {
            Ok(())
        } else {
            Err(format!("{BRAKE_METRIC} = {after}"))
        }
    })
    .await;

    eprintln!("--- the 8 go offline on every node; the 2 that beat stay active");
    let records = wait_status(&c, &all, &quiet, "offline").await;
    for (id, a) in &records {
        // Engaged at the offline deadline (2 s of silence) at the earliest,
        // released HOLD s later: a transition stamped earlier means the
        // hold was cut short.
        let silence = stamp(a, "updated_at") - stamp(a, "last_heartbeat");
        assert!(
            silence >= chrono::TimeDelta::seconds(2 + HOLD) - chrono::TimeDelta::milliseconds(50),
            "{id} went offline after {:.2} s of silence, before offline_after (2 s) + the hold ({HOLD} s)",
            secs(silence)
        );
    }
    wait_status(&c, &all, &keep, "active").await;
    assert_eq!(leader_brake(&c).await, 0, "the brake engaged again");
    let log = beater.stop().await;
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reports_the_brake() {
    eprintln!("--- start a 3-node cluster; the brake applies to fleets of 4 or more");
    let c = Cluster::start(3, &[FAST, &["--brake-min-fleet", "4"]].concat()).await;
    let all = c.ids();
    let (first, _) = c.wait_leader(&all).await;

    eprintln!(
        "--- 10 agents (TTL 1 s, offline after 2 s, never removed) beat via POST /v1/heartbeats"
    );
    let (keep, quiet, beater) = brake_fleet(&c, 0).await;
    let fleet: Vec<String> = keep.iter().chain(&quiet).cloned().collect();
    let watcher = Watcher::start(&c, &quiet);

    eprintln!("--- 8 of the 10 stop beating; the leader, node {first}, engages the brake");
    beater.set_agents(&keep);
    wait_brake(&c, first, 1).await;

    eprintln!("--- SIGSTOP node {first} until another leader holds the brake");
    watcher.unwatch(first);
    c.signal(first, libc::SIGSTOP);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = c.wait_leader(&rest).await;
    wait_brake(&c, second, 1).await;

    eprintln!("--- SIGCONT node {first}: once it follows, it no longer reports the brake");
    c.signal(first, libc::SIGCONT);
    let (leader, _) = c.wait_leader(&all).await;
    watcher.watch(first);
    for node in all.iter().filter(|id| **id != leader) {
        wait_brake(&c, *node, 0).await;
    }

    eprintln!("--- heartbeats return: the brake releases, no node reports it, the 8 are active");
    beater.set_agents(&fleet);
    for node in &all {
        wait_brake(&c, *node, 0).await;
    }
    wait_status(&c, &all, &fleet, "active").await;
    let (sightings, _) = watcher.stop().await;
    let log = beater.stop().await;
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );
    let fell = sightings_other_than(&sightings, &quiet, &["active", "unhealthy"]);
    assert!(
        fell.is_empty(),
        "the brake did not hold across the leader change:\n{}",
        fell.join("\n")
    );
}

/// The brake events node `node` has committed, in order: `true` for
/// `LIVENESS_BRAKE_ENGAGED`, `false` for `LIVENESS_BRAKE_RELEASED`.
async fn brake_events(c: &Cluster, node: NodeId) -> Result<Vec<bool>, String> {
    let url = format!(
        "{}/v1/events?from_revision=1&wait=0s&type=LIVENESS_BRAKE_ENGAGED,LIVENESS_BRAKE_RELEASED",
        c.url(node)
    );
    let r = send(&c.http, Method::GET, &url, None).await?;
    if r.status != 200 {
        return Err(format!("node {node}: HTTP {}: {}", r.status, r.text));
    }
    Ok(r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"] == "LIVENESS_BRAKE_ENGAGED")
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_inherits_an_engaged_brake() {
    // The brake's state is replicated (each change is a Brake entry, with
    // an event): a new leader must continue the engaged brake, not engage
    // it a second time for the same mass event (which would also restart
    // the maximum hold), and release it once.
    eprintln!("--- start a 3-node cluster; the brake applies to fleets of 4 or more");
    let mut c = Cluster::start(3, &[FAST, &["--brake-min-fleet", "4"]].concat()).await;
    let all = c.ids();
    let (first, _) = c.wait_leader(&all).await;

    eprintln!(
        "--- 10 agents (TTL 1 s, offline after 2 s, never removed) beat via POST /v1/heartbeats"
    );
    let (keep, quiet, beater) = brake_fleet(&c, 0).await;
    let fleet: Vec<String> = keep.iter().chain(&quiet).cloned().collect();

    eprintln!("--- 8 of the 10 stop beating; the leader, node {first}, engages the brake");
    beater.set_agents(&keep);
    wait_brake(&c, first, 1).await;
    wait_until("the engagement to be committed", || async {
        match brake_events(&c, first).await? {
            e if e == [true] => Ok(()),
            e => Err(format!("brake events {e:?}")),
        }
    })
    .await;

    eprintln!("--- kill -9 node {first}; the next leader holds the brake");
    c.kill(first);
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = c.wait_leader(&rest).await;
    wait_brake(&c, second, 1).await;

    eprintln!("--- heartbeats return: node {second} releases the brake");
    beater.set_agents(&fleet);
    wait_status(&c, &rest, &fleet, "active").await;
    let log = beater.stop().await;
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );

    eprintln!("--- one mass event, one engagement, one release, on every running node");
    for node in &rest {
        let events = wait_until(&format!("node {node} to commit the release"), || async {
            let e = brake_events(&c, *node).await?;
            if e.last() == Some(&false) {
                Ok(e)
            } else {
                Err(format!("brake events {e:?}"))
            }
        })
        .await;
        assert_eq!(
            events,
            [true, false],
            "node {node}: brake events (true = ENGAGED) of one mass event across a leader \
             change; two engagements mean the new leader started with a fresh brake \
             instead of the replicated one"
        );
    }
}

/// One bad heartbeat request and what it must get back.
struct Case {
    what: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    /// Whole-call error code and field (`None`: the call succeeds, see `item`).
    error: Option<(&'static str, Option<&'static str>)>,
    /// For batch calls answered 200: the one item's error code and field.
    item: Option<(&'static str, Option<&'static str>)>,
}

fn cases(target: &str) -> Vec<Case> {
    let single = format!("/v1/agents/{target}/heartbeat");
    let batch = "/v1/heartbeats".to_string();
    let raw = |s: &str| Some(s.as_bytes().to_vec());
    let bad = |what, body: Value, field| Case {
        what,
        path: single.clone(),
        body: bytes(&body),
        status: 400,
        error: Some(("invalid_argument", Some(field))),
        item: None,
    };
    let huge: Vec<Value> = (0..10_001).map(|_| json!({"agent_id": target})).collect();
    vec![
        Case {
            what: "unknown agent",
            path: "/v1/agents/ghost/heartbeat".into(),
            body: None,
            status: 404,
            error: Some(("agent_not_found", None)),
            item: None,
        },
        Case {
            what: "unknown agent in a batch",
            path: batch.clone(),
            body: bytes(&json!({"heartbeats": [{"agent_id": "ghost"}]})),
            status: 200,
            error: None,
            item: Some(("agent_not_found", None)),
        },
        Case {
            what: "malformed JSON",
            path: single.clone(),
            body: raw(r#"{"status": "active""#),
            status: 400,
            error: Some(("invalid_json", None)),
            item: None,
        },
        Case {
            what: "malformed JSON batch",
            path: batch.clone(),
            body: raw(r#"{"heartbeats": [{"agent_id": "#),
            status: 400,
            error: Some(("invalid_json", None)),
            item: None,
        },
        bad(
            "health_score 1.5",
            json!({"health_score": 1.5}),
            "health_score",
        ),
        bad("load_factor -1", json!({"load_factor": -1}), "load_factor"),
        bad("status suspended", json!({"status": "suspended"}), "status"),
        bad("status offline", json!({"status": "offline"}), "status"),
        bad("unknown status", json!({"status": "sleeping"}), "status"),
        Case {
            what: "status offline in a batch",
            path: batch.clone(),
            body: bytes(&json!({"heartbeats": [{"agent_id": target, "status": "offline"}]})),
            status: 200,
            error: None,
            item: Some(("invalid_argument", Some("status"))),
        },
        Case {
            what: "empty batch",
            path: batch.clone(),
            body: bytes(&json!({"heartbeats": []})),
            status: 400,
            error: Some(("invalid_argument", Some("heartbeats"))),
            item: None,
        },
        Case {
            what: "batch of 10001",
            path: batch,
            body: bytes(&json!({ "heartbeats": huge })),
            status: 400,
            error: Some(("invalid_argument", Some("heartbeats"))),
            item: None,
        },
    ]
}

/// Node `node`'s applied registry revision.
async fn revision(c: &Cluster, node: NodeId) -> u64 {
    c.info(node).await.expect("cluster info").revision
}

/// Sends a plain heartbeat for `probe` through `node` and waits until that
/// node shows it checkpointed: every heartbeat the leader took before it is
/// then checkpointed and applied there too.
async fn checkpoint_barrier(c: &Cluster, node: NodeId, probe: &str) {
    let before = agent_on(c, node, probe)
        .await
        .expect("read")
        .expect("probe exists");
    let url = format!("{}/v1/agents/{probe}/heartbeat", c.url(node));
    let r = send(&c.http, Method::POST, &url, None)
        .await
        .expect("probe heartbeat");
    assert_eq!(
        r.status, 200,
        "probe heartbeat through node {node}: {}",
        r.text
    );
    let was = stamp(&before, "last_heartbeat");
    wait_until(
        &format!("node {node} to checkpoint the probe's heartbeat"),
        || async {
            let now = agent_on(c, node, probe).await?.ok_or("probe gone")?;
            if stamp(&now, "last_heartbeat") > was {
                Ok(())
            } else {
                Err(format!("probe last heartbeat still {was}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heartbeats_change_nothing() {
    eprintln!("--- start a 3-node cluster; register a target and a probe (long leases)");
    let c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (leader, _) = c.wait_leader(&all).await;
    let follower = *all.iter().find(|id| **id != leader).expect("a follower");
    const TARGET: &str = "target-1";
    const PROBE: &str = "probe-1";
    register(&c, &agent(TARGET, 3600, 7200, 0)).await;
    register(&c, &agent(PROBE, 3600, 7200, 0)).await;
    for node in &all {
        c.wait_revision(*node, 2).await;
    }

    for node in [follower, leader] {
        let role = if node == leader { "leader" } else { "follower" };
        for case in cases(TARGET) {
            eprintln!("--- {} through the {role}, node {node}", case.what);
            let before = agent_on(&c, node, TARGET)
                .await
                .expect("read")
                .expect("target");
            let rev_before = revision(&c, node).await;
            let url = format!("{}{}", c.url(node), case.path);
            let r = send(&c.http, Method::POST, &url, case.body.clone())
                .await
                .expect("send");
            let ctx = format!(
                "{} via node {node}: HTTP {}: {}",
                case.what, r.status, r.text
            );
            assert_eq!(r.status, case.status, "{ctx}");
            let body = r.json();
            let check = |err: &Value, (code, field): (&str, Option<&str>)| {
                assert_eq!(err["code"], code, "{ctx}");
                assert_eq!(err["retryable"], false, "{ctx}");
                match field {
                    Some(f) => assert_eq!(err["field"], f, "{ctx}"),
                    None => assert!(err.get("field").is_none_or(Value::is_null), "{ctx}"),
                }
            };
            if let Some(e) = case.error {
                check(&body["error"], e);
            }
            if let Some(e) = case.item {
                let results = body["results"].as_array().expect("results");
                assert_eq!(results.len(), 1, "{ctx}");
                assert_eq!(results[0]["ok"], false, "{ctx}");
                assert!(results[0]["heartbeat"].is_null(), "{ctx}");
                check(&results[0]["error"], e);
                assert_eq!(
                    (body["accepted"].as_u64(), body["rejected"].as_u64()),
                    (Some(0), Some(1)),
                    "{ctx}"
                );
            }
            checkpoint_barrier(&c, node, PROBE).await;
            let after = agent_on(&c, node, TARGET)
                .await
                .expect("read")
                .expect("target");
            assert_eq!(after, before, "{}: the target changed", case.what);
            assert_eq!(
                revision(&c, node).await,
                rev_before,
                "{}: the revision moved",
                case.what
            );
        }
    }

    eprintln!("--- an empty body is a plain heartbeat (through the follower, with and without a content type)");
    for body in [None, Some(Vec::new())] {
        let before = agent_on(&c, follower, TARGET)
            .await
            .expect("read")
            .expect("target");
        let rev_before = revision(&c, follower).await;
        let url = format!("{}/v1/agents/{TARGET}/heartbeat", c.url(follower));
        let r = send(&c.http, Method::POST, &url, body).await.expect("send");
        assert_eq!(r.status, 200, "{}", r.text);
        let hb = r.json();
        assert_eq!(hb["agent_id"], TARGET);
        assert_eq!(hb["status"], "active");
        assert_eq!(hb["ttl_seconds"], 3600);
        let was = stamp(&before, "last_heartbeat");
        wait_until("every node to show the empty-body heartbeat", || async {
            for node in &all {
                let a = agent_on(&c, *node, TARGET).await?.ok_or("target gone")?;
                if stamp(&a, "last_heartbeat") <= was {
                    return Err(format!(
                        "node {node}: last heartbeat {}",
                        a["last_heartbeat"]
                    ));
                }
            }
            Ok(())
        })
        .await;
        let after = agent_on(&c, follower, TARGET)
            .await
            .expect("read")
            .expect("target");
        assert_eq!(
            after["revision"], before["revision"],
            "a refresh changes no record revision"
        );
        assert_eq!(
            revision(&c, follower).await,
            rev_before,
            "a refresh moves no revision"
        );
    }

    eprintln!("--- a suspended agent (TTL 1 s, removed after 3 s of silence) keeps beating and stays suspended");
    const SUSPENDED: &str = "suspended-1";
    let registered = register(&c, &agent(SUSPENDED, 1, 2, 3)).await;
    let url = format!("{}/v1/agents/{SUSPENDED}/status", c.url(follower));
    let r = send(
        &c.http,
        Method::PUT,
        &url,
        bytes(&json!({"status": "suspended"})),
    )
    .await
    .expect("PUT");
    assert_eq!(r.status, 200, "{}", r.text);
    let beater = Beater::start(&c, &[SUSPENDED.to_string()], Route::Single);
    // It beats (reporting nothing) past its removal deadline.
    let past_removal = stamp(&registered, "last_heartbeat") + chrono::TimeDelta::seconds(4);
    wait_until(
        "the suspended agent to beat past its removal deadline on every node",
        || async {
            for node in &all {
                let a = agent_on(&c, *node, SUSPENDED).await?;
                let a = a.unwrap_or_else(|| {
                    panic!("node {node}: the beating suspended agent was removed")
                });
                assert_eq!(status(&a), "suspended", "node {node}: {a}");
                if stamp(&a, "last_heartbeat") <= past_removal {
                    return Err(format!(
                        "node {node}: last heartbeat {}",
                        a["last_heartbeat"]
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    let log = beater.stop().await;
    assert!(
        log.refused.is_empty(),
        "heartbeats refused: {:?}",
        log.refused
    );
    assert!(log.acks[SUSPENDED] >= 5, "{log:?}");
    eprintln!(
        "--- a heartbeat reporting active is taken but answers suspended, and changes nothing"
    );
    let url = format!("{}/v1/agents/{SUSPENDED}/heartbeat", c.url(follower));
    let r = send(
        &c.http,
        Method::POST,
        &url,
        bytes(&json!({"status": "active"})),
    )
    .await
    .expect("send");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "suspended");

    eprintln!("--- silent from now on, it is removed (never unhealthy or offline) on every node");
    wait_until(
        "the silent suspended agent to be removed everywhere",
        || async {
            for node in &all {
                if let Some(a) = agent_on(&c, *node, SUSPENDED).await? {
                    assert_eq!(status(&a), "suspended", "node {node}: {a}");
                    return Err(format!("node {node} still has it"));
                }
            }
            Ok(())
        },
    )
    .await;
}
