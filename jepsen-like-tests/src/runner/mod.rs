//! The runner: starts a cluster, drives the workloads, injects the faults of
//! a seeded schedule, heals, reads every node's final state, writes
//! `history.json` and hands it to the checkers.
//!
//! - [`schedule`]: nemeses by name and the seeded fault schedule (pure).
//! - [`net`]: iptables partitions and tc netem, with their cleanup guard.
//! - [`cluster`]: node processes (or compose containers): start, kill, pause.
//! - [`api`]: the HTTP calls, plain reqwest without retries.
//! - [`classify`]: answer → Ok / Fail / Unknown (pure).
//! - [`workload`]: the client tasks, the watchers and the sampler.
//! - [`recorder`]: the history under construction, on one clock.
//! - [`judge`]: the bridge to the checkers and the report.

pub mod api;
pub mod classify;
pub mod cluster;
pub mod judge;
pub mod net;
pub mod recorder;
pub mod schedule;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use registry_types::query::{to_query_string, EventsPoll, ListPage, ReadOptions};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::history::{FaultWindow, FinalAgent, FinalState, History, LivenessParams, RunMeta};
use api::ClusterView;
use cluster::{Cluster, ComposeCluster, NodeSettings, ProcessCluster};
use net::NetGuard;
use recorder::Recorder;
use schedule::{Fault, Nemesis, Step};
use workload::{Ctx, HbControl};

/// Where the nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Local `agent-registry` processes on 127.0.1.x.
    Process,
    /// The containers of docker-compose.yml.
    Compose,
}

/// One run: a scenario (one or more nemeses), a cluster size, a seed.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Name of the run (directory and `meta.scenario`).
    pub name: String,
    pub nemeses: Vec<Nemesis>,
    pub nodes: u64,
    pub seed: u64,
    /// Length of the fault schedule (the heal and liveness tail come after).
    pub duration: Duration,
    /// Run directory: history.json, node logs, report.
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub target: Target,
    pub compose_file: PathBuf,
    /// Node `i` listens on 127.0.1.i:(base_port + i).
    pub base_port: u16,
    /// Register/get/delete clients.
    pub clients: u32,
    /// Heartbeat agents (each its own client).
    pub heartbeat_agents: usize,
    pub watchers: u32,
    /// Nodes run with `--auth on`; the workload sends an admin token (the
    /// compose target follows docker-compose.yml, which turns auth on).
    pub auth: bool,
    /// Nodes serve the API over TLS and use mutual TLS between them
    /// (process target); the workload trusts the run's CA.
    pub tls: bool,
}

/// `--snapshot-logs` of the nodes: small so that every run builds
/// snapshots; smaller still when a follower must catch up from one.
fn snapshot_logs(nemeses: &[Nemesis]) -> u64 {
    if nemeses.contains(&Nemesis::SnapshotInstall) {
        20
    } else {
        200
    }
}

/// Liveness settings the nodes run with (server defaults, see
/// crates/server/src/config.rs) and what the checker may assume.
pub fn liveness_params() -> LivenessParams {
    let election_max_ms = 6 * 100; // 6 Raft heartbeats of --heartbeat-ms 100
    let sweep_ms = 500;
    let checkpoint_ms = 1_000;
    LivenessParams {
        offline_after_ms: workload::HB_OFFLINE_S as u64 * 1_000,
        // The runner's view of time: one silent poll interval between
        // reads, the read's own round trip (a read index and an apply,
        // ~100 ms on loopback), and one checkpoint interval, by which a
        // deadline can move earlier when a leader changes (docs/api.md).
        // Plus the leader's quorum window (half the leader lease, which is
        // the longest election timeout): a leader answers heartbeats only
        // while a quorum acknowledged it that recently, so beats up to that
        // long after it was cut off can still be lost with it (docs/api.md).
        grace_ms: workload::SILENT_POLL.as_millis() as u64
            + 100
            + checkpoint_ms
            + election_max_ms / 2,
        // docs/api.md "Expiry bound": sweep + election (the follower's
        // lease plus its own election timeout) + the new leader's grace of
        // one election timeout.
        expiry_bound_ms: sweep_ms + 3 * election_max_ms,
        // One checkpoint interval plus its commit (docs/api.md: a heartbeat
        // revives an offline agent at the next checkpoint).
        revival_ms: checkpoint_ms + 100,
    }
}

/// The result of one run.
pub struct RunOutcome {
    pub dir: PathBuf,
    /// The checkers' verdict.
    pub verdict: judge::Judgement,
}

/// Set by the Ctrl-C handler: the schedule stops, the run heals and ends.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs one scenario end to end.
pub async fn run(cfg: RunConfig) -> anyhow::Result<RunOutcome> {
    std::fs::create_dir_all(&cfg.dir).with_context(|| format!("creating {}", cfg.dir.display()))?;
    if cfg.target == Target::Compose {
        if let Some(n) = cfg.nemeses.iter().find(|n| !n.supported_on_compose()) {
            bail!(
                "nemesis {} is not available with --target compose",
                n.name()
            );
        }
    }
    let steps = schedule::schedule(&cfg.nemeses, cfg.nodes, cfg.duration, cfg.seed);
    info!(
        run = %cfg.name,
        seed = cfg.seed,
        steps = steps.len(),
        dir = %cfg.dir.display(),
        "--- starting"
    );

    // Network faults need root; the guard removes them however we leave.
    let net = match cfg.target {
        Target::Process => Some(NetGuard::install(cfg.nodes)?),
        Target::Compose => None,
    };
    let mut cluster = match cfg.target {
        Target::Process => {
            let settings = NodeSettings {
                bin: cfg.bin.clone(),
                base_port: cfg.base_port,
                snapshot_logs: snapshot_logs(&cfg.nemeses),
                auth: cfg.auth,
                tls: cfg.tls,
            };
            let mut c = ProcessCluster::new(settings, cfg.nodes, &cfg.dir)?;
            for id in 1..=cfg.nodes {
                ensure_port_free(&c.client_addr(id))?;
            }
            for id in 1..=cfg.nodes {
                c.start(id)?;
            }
            Cluster::Process(c)
        }
        Target::Compose => {
            let mut c = ComposeCluster::new(&cfg.compose_file, cfg.nodes)?;
            c.up()?;
            Cluster::Compose(c)
        }
    };
    let result = drive(&cfg, &steps, &mut cluster, net.as_ref()).await;
    match &mut cluster {
        Cluster::Process(c) => c.shutdown().await,
        Cluster::Compose(c) => c.down(&cfg.dir),
    }
    drop(net);
    let history = result?;

    let path = cfg.dir.join("history.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&history)?)
        .with_context(|| format!("writing {}", path.display()))?;
    info!(path = %path.display(), ops = history.ops.len(), "--- history written");
    let verdict = judge::judge(&cfg.dir, &history)?;
    Ok(RunOutcome {
        dir: cfg.dir.clone(),
        verdict,
    })
}

fn ensure_port_free(addr: &str) -> anyhow::Result<()> {
    if std::net::TcpStream::connect_timeout(&addr.parse()?, Duration::from_millis(200)).is_ok() {
        bail!(
            "{addr} already accepts connections: another run or cluster is using it (--base-port)"
        );
    }
    Ok(())
}

/// Everything between "nodes started" and "history complete".
async fn drive(
    cfg: &RunConfig,
    steps: &[Step],
    cluster: &mut Cluster,
    net: Option<&NetGuard>,
) -> anyhow::Result<History> {
    let ca = cluster.ca_pem();
    let scheme = if ca.is_some() { "https" } else { "http" };
    let urls: Vec<String> = (1..=cfg.nodes)
        .map(|id| format!("{scheme}://{}", cluster.client_addr(id)))
        .collect();
    let http = api::http_client(
        cfg.target == Target::Process,
        cluster.token().as_deref(),
        ca.as_deref(),
    );

    info!("--- waiting for a leader and every node ready");
    wait_converged(&http, &urls, Duration::from_secs(90)).await?;

    let rec = Arc::new(Recorder::new(History {
        meta: RunMeta {
            seed: cfg.seed,
            scenario: cfg.name.clone(),
            nodes: (1..=cfg.nodes)
                .map(|id| (id, cluster.client_addr(id)))
                .collect(),
            started_at: chrono::Utc::now().to_rfc3339(),
            duration_us: 0,
            liveness: liveness_params(),
        },
        ..Default::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Ctx {
        rec: rec.clone(),
        http: http.clone(),
        urls: urls.clone(),
        stop: stop.clone(),
        seed: cfg.seed,
        avoid: Arc::new(AtomicU64::new(0)),
    });
    let burst = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for p in 0..cfg.clients {
        tasks.push(tokio::spawn(workload::register_client(
            ctx.clone(),
            p,
            burst.clone(),
        )));
    }
    let controls: Vec<Arc<HbControl>> = (0..cfg.heartbeat_agents)
        .map(|_| Arc::new(HbControl::default()))
        .collect();
    for (i, c) in controls.iter().enumerate() {
        let process = 100 + i as u32;
        tasks.push(tokio::spawn(workload::heartbeat_client(
            ctx.clone(),
            process,
            i,
            c.clone(),
        )));
    }
    for w in 0..cfg.watchers {
        tasks.push(tokio::spawn(workload::watcher(ctx.clone(), w)));
    }
    let incarnations = cluster.incarnations();
    for id in 1..=cfg.nodes {
        tasks.push(tokio::spawn(workload::sampler(
            ctx.clone(),
            id,
            incarnations.clone(),
        )));
    }

    let mut nemesis = NemesisRunner {
        cfg,
        cluster,
        net,
        http: &http,
        urls: &urls,
        rec: &rec,
        burst: &burst,
        avoid: &ctx.avoid,
        rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(1)),
        problems: Vec::new(),
        snapshot_watch: None,
        note: String::new(),
    };
    let schedule_result = nemesis.run_schedule(steps).await;

    info!("--- heal everything, restart dead nodes");
    let healed = nemesis.heal_all();
    let problems = std::mem::take(&mut nemesis.problems);
    let converged = match (&schedule_result, &healed) {
        (Ok(()), Ok(())) => wait_caught_up(&http, &urls, Duration::from_secs(60)).await,
        _ => Ok(()),
    };

    if schedule_result.is_ok() && healed.is_ok() && converged.is_ok() {
        liveness_tail(&controls).await;
    }

    info!("--- stop the workload");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        // Bounded: every request has a client timeout.
        if tokio::time::timeout(api::OP_TIMEOUT + Duration::from_secs(3), t)
            .await
            .is_err()
        {
            warn!("a workload task did not stop in time");
        }
    }
    schedule_result?;
    healed?;
    converged?;
    if !problems.is_empty() {
        bail!("the nemesis did not take effect: {}", problems.join("; "));
    }

    info!("--- read every node's final state");
    let finals = read_finals(&http, &urls).await?;
    rec.update(|h| h.finals = finals);
    Ok(rec.snapshot())
}

/// Lets the heartbeat agents fall silent, half first (the others keep
/// beating meanwhile), then the rest, each polled until it reads offline.
async fn liveness_tail(controls: &[Arc<HbControl>]) {
    let p = liveness_params();
    let bound = Duration::from_millis(p.offline_after_ms + p.expiry_bound_ms + p.grace_ms)
        + Duration::from_secs(5);
    let half = controls.len() / 2;
    for (label, group) in [
        ("first half", &controls[..half]),
        ("rest", &controls[half..]),
    ] {
        if group.is_empty() {
            continue;
        }
        info!(
            agents = group.len(),
            "--- heartbeat agents fall silent ({label})"
        );
        for c in group {
            c.silent.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline
            && !group.iter().all(|c| c.seen_offline.load(Ordering::Relaxed))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !group.iter().all(|c| c.seen_offline.load(Ordering::Relaxed)) {
            // Not a runner error: the liveness checker judges the history.
            warn!(
                ?bound,
                "some silent agents were not read offline within the bound"
            );
        }
    }
}

/// Reads `GET /v1/cluster` on every node; `None` where no answer.
async fn views(http: &reqwest::Client, urls: &[String]) -> Vec<Option<ClusterView>> {
    let futs = urls
        .iter()
        .map(|u| api::cluster(http, u, Duration::from_millis(800)));
    futures::future::join_all(futs).await
}

/// The leader most nodes agree on, if it says so itself.
async fn current_leader(http: &reqwest::Client, urls: &[String]) -> Option<u64> {
    let vs = views(http, urls).await;
    vs.iter()
        .flatten()
        .filter(|v| v.role.eq_ignore_ascii_case("leader"))
        .max_by_key(|v| v.term)
        .map(|v| v.node_id)
}

/// Waits until every node answers, knows the same leader, and has applied
/// at least what the leader had committed when the wait began: the cluster
/// is whole again, while the workload may still be writing.
async fn wait_caught_up(
    http: &reqwest::Client,
    urls: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut target: Option<(u64, u64)> = None; // (leader, its commit index)
    let mut seen = String::new();
    while Instant::now() < deadline {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let vs = views(http, urls).await;
        seen = describe_views(&vs);
        if let Some(all) = vs.iter().map(|v| v.as_ref()).collect::<Option<Vec<_>>>() {
            let leader = all[0].leader_id;
            let agreed = leader.is_some() && all.iter().all(|v| v.leader_id == leader);
            let leader_view = all.iter().find(|v| Some(v.node_id) == leader);
            match (agreed, leader_view, target) {
                (true, Some(lv), Some((l, commit))) if l == lv.node_id => {
                    if all.iter().all(|v| v.applied_index >= commit) {
                        return Ok(());
                    }
                }
                (true, Some(lv), _) => target = Some((lv.node_id, lv.commit_index)),
                _ => target = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the nodes did not catch up within {limit:?}; (leader, applied) per node: {seen}")
}

fn describe_views(vs: &[Option<ClusterView>]) -> String {
    let parts: Vec<String> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) => format!(
                "n{}: leader {:?} applied {}",
                i + 1,
                v.leader_id,
                v.applied_index
            ),
            None => format!("n{}: no answer", i + 1),
        })
        .collect();
    parts.join(", ")
}

/// Waits until every node answers, knows the same leader and has applied
/// the same index, twice in a row 250 ms apart: the cluster is quiet.
async fn wait_converged(
    http: &reqwest::Client,
    urls: &[String],
    limit: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    let mut last: Option<(u64, u64)> = None;
    let mut seen = String::new();
    while Instant::now() < deadline {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let vs = views(http, urls).await;
        seen = describe_views(&vs);
        if let Some(all) = vs.iter().map(|v| v.as_ref()).collect::<Option<Vec<_>>>() {
            let leader = all[0].leader_id;
            let applied = all[0].applied_index;
            let same = leader.is_some()
                && all
                    .iter()
                    .all(|v| v.leader_id == leader && v.applied_index == applied);
            if same {
                let now = (leader.unwrap_or(0), applied);
                if last == Some(now) {
                    return Ok(applied);
                }
                last = Some(now);
            } else {
                last = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the nodes did not converge within {limit:?}: {seen}")
}

/// Each node's agents (every page, stale, i.e. its own state) and its
/// whole event log, read at one applied index (retried if it moves).
async fn read_finals(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Vec<FinalState>> {
    for attempt in 0..5 {
        let applied = wait_converged(http, urls, Duration::from_secs(30)).await?;
        let mut finals = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            finals.push(read_final(http, url, i as u64 + 1).await?);
        }
        let after = wait_converged(http, urls, Duration::from_secs(30)).await?;
        if after == applied {
            for f in &mut finals {
                f.applied_index = applied;
            }
            return Ok(finals);
        }
        info!(
            attempt,
            applied, after, "applied index moved while reading finals; again"
        );
    }
    bail!("the applied index kept moving while reading the final states")
}

async fn read_final(http: &reqwest::Client, url: &str, node: u64) -> anyhow::Result<FinalState> {
    let get = |u: String| async move {
        let resp = http
            .get(&u)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("GET {u}"))?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {u}: {status}: {body}");
        }
        anyhow::Ok(body)
    };
    let mut agents = Vec::new();
    let mut cursor: Option<String> = None;
    let mut revision = 0;
    let stale = to_query_string(&ReadOptions::stale())?;
    // Bounded: 1,000 agents a page, the workload has a few dozen.
    for _ in 0..1_000 {
        let page = to_query_string(&ListPage {
            limit: Some(1_000),
            cursor: cursor.clone(),
        })?;
        let u = format!("{url}/v1/agents?{page}&{stale}");
        let page: api::AgentPage = serde_json::from_str(&get(u).await?)?;
        revision = page.revision;
        for a in &page.agents {
            agents.push(FinalAgent {
                agent_id: a["agent_id"].as_str().unwrap_or_default().to_string(),
                value: a["description"].as_str().unwrap_or_default().to_string(),
                status: a["status"].as_str().unwrap_or_default().to_string(),
            });
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    let mut events = Vec::new();
    let mut from = 0u64;
    for _ in 0..100_000 {
        let poll = to_query_string(&EventsPoll {
            from_revision: Some(from),
            wait: Some("0ms".to_string()),
        })?;
        let u = format!("{url}/v1/events?{poll}&{stale}");
        let batch: serde_json::Value = serde_json::from_str(&get(u).await?)?;
        let items = batch["events"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        for v in &items {
            if let Some(e) = api::seen_event(v, 0) {
                events.push(e);
            }
        }
        from = batch["next_from_revision"].as_u64().unwrap_or(from + 1);
    }
    Ok(FinalState {
        node,
        applied_index: 0,
        revision,
        agents,
        events,
    })
}

/// Executes the schedule against the cluster.
struct NemesisRunner<'a> {
    cfg: &'a RunConfig,
    cluster: &'a mut Cluster,
    net: Option<&'a NetGuard>,
    http: &'a reqwest::Client,
    urls: &'a [String],
    rec: &'a Arc<Recorder>,
    burst: &'a Arc<AtomicBool>,
    /// The node clients stay away from (0: none), shared with [`Ctx`].
    avoid: &'a Arc<AtomicU64>,
    /// Runtime choices (which follower) that the schedule cannot make.
    rng: StdRng,
    /// Faults that did not have the effect they exist for.
    problems: Vec<String>,
    /// Follower of a snapshot-install step and how many snapshots its log
    /// showed installed when it was healed.
    snapshot_watch: Option<(u64, usize)>,
    /// How the current fault was made, when that varies (delay).
    note: String,
}

/// What a step did, to undo it.
enum Injected {
    Killed(Vec<u64>),
    Paused(u64),
    Net,
    Isolated(u64),
    /// Removed from the voters (and wiped), to be added back.
    Removed(u64),
}

impl NemesisRunner<'_> {
    async fn run_schedule(&mut self, steps: &[Step]) -> anyhow::Result<()> {
        for (i, step) in steps.iter().enumerate() {
            if INTERRUPTED.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            pause(step.quiet).await;
            let start_us = self.rec.now_us();
            let (injected, resolved) = self.inject(step).await?;
            let detail = schedule::describe_fault(&step.fault, &resolved);
            info!(step = i + 1, of = steps.len(), nemesis = step.nemesis.name(), %detail, hold = ?step.hold, "--- fault");
            let extra = if step.nemesis == Nemesis::SnapshotInstall {
                self.snapshot_install(&resolved, step.hold).await
            } else {
                pause(step.hold).await;
                std::mem::take(&mut self.note)
            };
            self.undo(injected).await?;
            self.rec.fault(FaultWindow {
                kind: step.nemesis.family().to_string(),
                detail: format!("{detail}{extra}"),
                nodes: resolved,
                start_us,
                end_us: self.rec.now_us(),
            });
            if step.nemesis == Nemesis::SnapshotInstall {
                self.verify_snapshot_installed().await;
            }
        }
        Ok(())
    }

    /// The leader, waiting (bounded) through an election.
    async fn leader(&self) -> anyhow::Result<u64> {
        for _ in 0..40 {
            if let Some(l) = current_leader(self.http, self.urls).await {
                return Ok(l);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("no leader within 10 s")
    }

    async fn inject(&mut self, step: &Step) -> anyhow::Result<(Injected, Vec<u64>)> {
        let n = self.cfg.nodes;
        let compose = matches!(self.cluster, Cluster::Compose(_));
        Ok(match &step.fault {
            Fault::Kill { nodes } => {
                for &id in nodes {
                    self.cluster.kill(id).await?;
                }
                (Injected::Killed(nodes.clone()), nodes.clone())
            }
            Fault::KillLeader => {
                let l = self.leader().await?;
                self.cluster.kill(l).await?;
                (Injected::Killed(vec![l]), vec![l])
            }
            Fault::KillAll => {
                let all: Vec<u64> = (1..=n).collect();
                for &id in &all {
                    self.cluster.kill(id).await?;
                }
                (Injected::Killed(all.clone()), all)
            }
            Fault::PauseLeader => {
                let l = self.leader().await?;
                self.cluster.pause(l, true)?;
                (Injected::Paused(l), vec![l])
            }
            Fault::PartitionLeader if compose => {
                let l = self.leader().await?;
                if let Cluster::Compose(c) = self.cluster {
                    c.isolate(l, true)?;
                }
                (Injected::Isolated(l), vec![l])
            }
            Fault::PartitionLeader
            | Fault::PartitionSplit { .. }
            | Fault::PartitionRing { .. }
            | Fault::PartitionOneway { .. } => {
                let leader = match step.fault {
                    Fault::PartitionLeader => Some(self.leader().await?),
                    _ => None,
                };
                let links = schedule::cut_links(&step.fault, n, leader);
                self.net()?.cut(&links)?;
                let mut touched: Vec<u64> = links.iter().flat_map(|&(a, b)| [a, b]).collect();
                touched.sort_unstable();
                touched.dedup();
                let resolved = leader.map_or(touched, |l| vec![l]);
                (Injected::Net, resolved)
            }
            Fault::Delay {
                nodes,
                delay_ms,
                jitter_ms,
            } => {
                let how = self.net()?.delay(nodes, *delay_ms, *jitter_ms)?;
                self.note = format!(" ({how})");
                (Injected::Net, nodes.clone())
            }
            Fault::Loss { nodes, percent } => {
                self.net()?.loss(nodes, *percent)?;
                (Injected::Net, nodes.clone())
            }
            Fault::Membership { node } => {
                self.remove_member(*node).await;
                // Its disk dies: it can only come back as a new, empty node.
                self.cluster.wipe(*node).await?;
                (Injected::Removed(*node), vec![*node])
            }
            Fault::SnapshotInstall => {
                let l = self.leader().await?;
                let mut followers: Vec<u64> = (1..=n).filter(|&id| id != l).collect();
                followers.shuffle(&mut self.rng);
                let f = followers[0];
                self.net()?.cut(&net::links_of(&[f], n))?;
                (Injected::Net, vec![f])
            }
        })
    }

    fn net(&self) -> anyhow::Result<&NetGuard> {
        self.net
            .context("network faults need the process target (iptables on 127.0.1.x)")
    }

    async fn undo(&mut self, injected: Injected) -> anyhow::Result<()> {
        match injected {
            Injected::Killed(nodes) => {
                for id in nodes {
                    self.cluster.start(id)?;
                }
            }
            Injected::Paused(id) => self.cluster.pause(id, false)?,
            Injected::Net => self.net()?.heal()?,
            Injected::Isolated(id) => {
                if let Cluster::Compose(c) = self.cluster {
                    c.isolate(id, false)?;
                }
            }
            Injected::Removed(id) => {
                self.cluster.start(id)?;
                // It comes back where it was: the address the harness gave it.
                let addr = self.cluster.client_addr(id);
                self.add_member_back(id, &addr).await
            }
        }
        Ok(())
    }

    /// Removes `node` from the voters through another node (which forwards
    /// to the leader), retrying while a change is refused as unsafe or
    /// busy; clients stay away from it until it is back. A removal that
    /// never takes is a problem of the run.
    async fn remove_member(&mut self, node: u64) {
        self.avoid.store(node, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
            let via = self.other_url(node);
            let answer = api::remove_member(self.http, &via, node).await;
            // The removed node may never hear of its removal: only the
            // others' views count.
            let accepted = answer.ok() || answer.status == Some(404);
            if accepted
                && self
                    .voters_agree(Some(node), |voters| !voters.contains(&node))
                    .await
            {
                return;
            }
            last = Some(answer);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.problems.push(format!(
            "membership: n{node} was not removed within 30 s (last answer {last:?})"
        ));
    }

    /// Adds `node` back (learner, caught up, promoted) and waits until
    /// every running node counts it a voter.
    async fn add_member_back(&mut self, node: u64, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
            let via = self.other_url(node);
            let answer = api::add_member(self.http, &via, node, addr).await;
            // 409: a change in flight, maybe this very add retried.
            let accepted = answer.ok() || answer.code.as_deref() == Some("membership_conflict");
            if accepted
                && self
                    .voters_agree(None, |voters| voters.contains(&node))
                    .await
            {
                self.avoid.store(0, Ordering::Relaxed);
                info!(node, "--- member added back and promoted");
                return;
            }
            last = Some(answer);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.avoid.store(0, Ordering::Relaxed);
        self.problems.push(format!(
            "membership: n{node} was not a voter again on every node within 60 s of being added (last answer {last:?})"
        ));
    }

    /// The URL of a node other than `node`, drawn at random.
    fn other_url(&mut self, node: u64) -> String {
        let others: Vec<&String> = (1..=self.cfg.nodes)
            .filter(|&id| id != node)
            .map(|id| &self.urls[id as usize - 1])
            .collect();
        others
            .choose(&mut self.rng)
            .map_or_else(|| self.urls[0].clone(), |u| (*u).clone())
    }

    /// Whether, within 10 s, every node but `except` that answers (at least
    /// a majority of the cluster) reports voters that satisfy `check`.
    async fn voters_agree(&self, except: Option<u64>, check: impl Fn(&[u64]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let vs = views(self.http, self.urls).await;
            let answered: Vec<&ClusterView> = vs
                .iter()
                .flatten()
                .filter(|v| Some(v.node_id) != except)
                .collect();
            if answered.len() as u64 > self.cfg.nodes / 2
                && answered.iter().all(|v| check(&v.voters()))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// While follower `f` is cut off: write fast (avoiding `f`) until the
    /// leader has purged its log past the last entry `f` holds, which it
    /// logs (`purge_log ... purge_upto=Some(term-index)`); `f` can then only
    /// catch up from a snapshot.
    async fn snapshot_install(&mut self, resolved: &[u64], hold: Duration) -> String {
        let f = resolved[0];
        let f_last = views(self.http, self.urls).await[f as usize - 1]
            .as_ref()
            .map_or(0, |v| v.last_log_index);
        self.avoid.store(f, Ordering::Relaxed);
        self.burst.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + hold + Duration::from_secs(40);
        let mut reached = None;
        while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
            let purged = (1..=self.cfg.nodes)
                .filter(|&id| id != f)
                .filter_map(|id| purged_upto(&self.cfg.dir, id))
                .max();
            if purged.is_some_and(|p| p > f_last) && started.elapsed() >= hold {
                reached = purged;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.burst.store(false, Ordering::Relaxed);
        self.avoid.store(0, Ordering::Relaxed);
        self.snapshot_watch = Some((f, installed_count(&self.cfg.dir, f)));
        match reached {
            Some(p) => {
                format!(" (n{f} holds the log to {f_last}, the others purged theirs to {p})")
            }
            None => {
                self.problems.push(format!(
                    "snapshot-install: no node purged its log past index {f_last} while n{f} was cut off"
                ));
                format!(" (no log purged past {f_last})")
            }
        }
    }

    /// After healing a snapshot-install step: the follower's log must show
    /// a snapshot installed from the leader, and it must catch up.
    async fn verify_snapshot_installed(&mut self) {
        let Some((f, before)) = self.snapshot_watch.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if installed_count(&self.cfg.dir, f) > before {
                info!(
                    node = f,
                    "--- follower caught up through an installed snapshot"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.problems.push(format!(
            "snapshot-install: n{f} logged no 'installed snapshot' within 30 s of healing"
        ));
    }

    /// Heals every fault and starts every dead node.
    fn heal_all(&mut self) -> anyhow::Result<()> {
        if let Some(net) = self.net {
            net.heal()?;
        }
        self.cluster.revive_all()
    }
}

/// Sleeps `d`, cut short by Ctrl-C.
async fn pause(d: Duration) {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
        tokio::time::sleep((deadline - Instant::now()).min(Duration::from_millis(100))).await;
    }
}

/// The highest log index node `id` says it purged, from its log file.
fn purged_upto(dir: &Path, id: u64) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(format!("node{id}.log"))).ok()?;
    text.lines()
        .filter_map(|l| l.split("purge_upto=Some(").nth(1))
        .filter_map(|rest| rest.split(')').next()?.rsplit('-').next()?.parse().ok())
        .max()
}

/// How many times node `f`'s log says it installed a snapshot.
fn installed_count(dir: &Path, f: u64) -> usize {
    std::fs::read_to_string(dir.join(format!("node{f}.log")))
        .map(|s| s.matches("installed snapshot").count())
        .unwrap_or(0)
}
