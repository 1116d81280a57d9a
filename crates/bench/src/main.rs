//! `registry-bench`: drives load at a registry cluster and measures it.
//!
//! Subcommands:
//! - `load`: registers N agents (records of about 512 bytes) with C
//!   concurrent connections spread over the given nodes; prints and writes
//!   (JSON) throughput and latency percentiles.
//! - `failover`: repeatedly kills the leader (SIGKILL to its pid), and
//!   measures the time from the kill to the first successful write through
//!   the surviving nodes; restarts the node and waits for it between trials.
//! - `heartbeat`, `expiry`: liveness throughput and mass expiry
//!   (`liveness`).
//! - `compare`: the registry and etcd side by side; starts its own clusters
//!   (`procs`), speaks etcd's JSON gateway (`etcd`), runs the scenarios
//!   (`compare`) and writes JSON, a markdown table and an SVG chart
//!   (`report`). `scripts/bench.sh` is the way in.
//!
//! The first four drive an existing cluster (`--nodes`); `compare` ignores
//! `--nodes`.

mod cards;
mod compare;
mod etcd;
mod liveness;
mod procs;
mod report;

use std::process::Command as Process;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "registry-bench",
    about = "Load and measurement tool for the agent registry"
)]
struct Cli {
    /// Node base URLs, comma-separated.
    #[arg(
        long,
        env = "REGISTRY_NODES",
        default_value = "http://127.0.0.1:8011,http://127.0.0.1:8012,http://127.0.0.1:8013",
        global = true
    )]
    nodes: String,
    /// Write the result as JSON to this file too.
    #[arg(long, global = true)]
    out: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register agents as fast as the cluster takes them.
    Load {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// First agent number (ids are bench-NNNNNNN).
        #[arg(long, default_value_t = 0)]
        start: usize,
    },
    /// Heartbeats per second: single heartbeats for agents bench-0..N
    /// (registered beforehand with `load`), to the leader or spread.
    Heartbeat {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// How long to send, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send every heartbeat to the leader only (default: spread over all nodes).
        #[arg(long)]
        leader_only: bool,
        /// Target heartbeats per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Mass expiry: register N agents with a short TTL, keep them beating
    /// (batched), then stop all at once and time until every node shows
    /// them all offline.
    Expiry {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 2)]
        ttl_s: u32,
        #[arg(long, default_value_t = 3)]
        offline_s: u32,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// The registry against etcd, side by side: fresh clusters of both per
    /// scenario, same concurrency and records (see docs/benchmarks.md).
    Compare {
        /// `all` or one of: ceiling, register, heartbeat, discover, mixed,
        /// expiry, failover, footprint, cards (comma-separated for several).
        #[arg(default_value = "all")]
        scenario: String,
        /// Small numbers (1,000 agents, seconds per step) to prove the
        /// harness works.
        #[arg(long)]
        quick: bool,
        /// Fleet size of the large runs (default 100,000; quick 1,000).
        #[arg(long)]
        agents: Option<usize>,
        /// Seconds per throughput measurement (default 15; quick 3).
        #[arg(long)]
        seconds: Option<u64>,
        /// Discovery queries per second in `mixed` (default 200; quick 50;
        /// 0: heartbeats and churn alone).
        #[arg(long)]
        mixed_discover_rate: Option<f64>,
        /// Client connections per closed-loop measurement.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// `cards`: ask for the cards in discovery hits
        /// (`"include_card": true`), for a node that takes the field.
        #[arg(long)]
        include_card: bool,
        /// Directory for the JSON results, results.md and the chart.
        #[arg(long, default_value = "bench-results")]
        out_dir: std::path::PathBuf,
        /// Also write the chart here (e.g. docs/benchmarks.svg).
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// The node binary (default: $CARGO_TARGET_DIR/release/agent-registry).
        #[arg(long)]
        registry_bin: Option<std::path::PathBuf>,
        #[arg(long, default_value = "/usr/bin/etcd")]
        etcd_bin: std::path::PathBuf,
        /// Parent of the clusters' data directories (default: the temp dir).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
    /// What access control costs: register, heartbeat and discover on fresh
    /// 3-node registry clusters with auth off and with auth on (tokens),
    /// one after the other in one run (see docs/benchmarks.md).
    Security {
        /// Small numbers (1,000 agents, 3 s per step) to prove the harness
        /// works.
        #[arg(long)]
        quick: bool,
        /// Fleet size (default 100,000; quick 1,000).
        #[arg(long)]
        agents: Option<usize>,
        /// Seconds per heartbeat and discover measurement (default 15;
        /// quick 3).
        #[arg(long)]
        seconds: Option<u64>,
        /// Client connections per measurement.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Directory for security.json and security.md.
        #[arg(long, default_value = "bench-results")]
        out_dir: std::path::PathBuf,
        /// The node binary (default: $CARGO_TARGET_DIR/release/agent-registry).
        #[arg(long)]
        registry_bin: Option<std::path::PathBuf>,
        /// Parent of the clusters' data directories (default: the temp dir).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
    /// Rebuild the table and the chart from the `summary.json` of one or
    /// more `compare` runs (e.g. a full run plus a rerun of one scenario):
    /// for each scenario, the rows of the last file that has it.
    Report {
        /// `summary.json` files, oldest first.
        #[arg(required = true)]
        summaries: Vec<std::path::PathBuf>,
        /// Write the chart here.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// Title of the chart.
        #[arg(long, default_value = "agent registry vs etcd 3.4, 3 nodes each")]
        title: String,
    },
    /// Measure leader failover: kill, time to first write, restart.
    Failover {
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// File holding the pid of node `{id}`; the tool sends it SIGKILL
        /// itself, so the kill has landed before the first write is sent.
        #[arg(long, default_value = ".cluster/node{id}.pid")]
        pid_file: String,
        /// Command run to restart it.
        #[arg(long, default_value = "scripts/cluster.sh restart {id}")]
        restart: String,
        /// Give up on one trial after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
}

/// Latency summary of one run, in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Successful operations.
    pub ops: usize,
    /// Failed operations (not counted in the latencies).
    pub errors: usize,
    /// Wall-clock length of the run, in seconds.
    pub seconds: f64,
    /// Successful operations per second of wall clock.
    pub ops_per_sec: f64,
    /// Median latency of the successful operations, in ms.
    pub p50_ms: f64,
    /// 99th percentile latency, in ms.
    pub p99_ms: f64,
    /// Slowest successful operation, in ms.
    pub max_ms: f64,
}

fn summarize(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Summary {
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Summary {
        ops: lat.len(),
        errors,
        seconds: elapsed.as_secs_f64(),
        ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// Capability vocabulary of the synthetic fleet: each agent has two of
/// these, so every capability is held by about a quarter of the fleet.
pub const CAPS: [&str; 8] = [
    "python code generation",
    "trading",
    "risk management",
    "translation",
    "summarization",
    "image captioning",
    "web search",
    "sql analytics",
];

/// The capability names of agent `i` (one or two: the second may repeat
/// the first).
pub fn agent_caps(i: usize) -> Vec<&'static str> {
    let c1 = CAPS[i % CAPS.len()];
    let c2 = CAPS[(i / 8 + 3) % CAPS.len()];
    if c1 == c2 {
        vec![c1]
    } else {
        vec![c1, c2]
    }
}

/// A registration body of about 512 bytes, with capabilities drawn from a
/// small vocabulary so capability sets overlap as in a real fleet.
pub fn agent_body(i: usize) -> serde_json::Value {
    let c1 = CAPS[i % CAPS.len()];
    let c2 = CAPS[(i / 8 + 3) % CAPS.len()];
    json!({
        "agent_id": format!("bench-{i:07}"),
        "name": format!("bench agent {i}"),
        "agent_type": if i.is_multiple_of(3) { "llm" } else { "tool" },
        "runtime_id": format!("runtime-{}", i % 500),
        "endpoint": format!("http://10.1.{}.{}:8080/agent/{i}", (i / 256) % 256, i % 256),
        "version": "1.4.2",
        "description": "synthetic agent registered by registry-bench",
        "capabilities": [
            {"name": c1, "description": format!("{c1} for the benchmark fleet"), "tags": ["bench", "v1"], "cost_estimate": 0.01},
            {"name": c2, "description": format!("{c2} with a bounded budget"), "tags": ["bench"], "cost_estimate": 0.02}
        ],
        "tags": ["bench", if i.is_multiple_of(2) { "even" } else { "odd" }],
        "metadata": {"zone": format!("z{}", i % 3), "owner": "bench"}
    })
}

fn nodes(spec: &str) -> anyhow::Result<Vec<String>> {
    let v: Vec<String> = spec
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if v.is_empty() {
        bail!("--nodes is empty");
    }
    Ok(v)
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()?)
}

/// When the workers of [`run_pool`] stop taking operations.
#[derive(Clone, Copy)]
enum Until {
    /// After this many operations in all.
    Count(usize),
    /// At this instant.
    Time(Instant),
}

/// What a pool of workers measured.
#[derive(Default)]
struct Samples {
    /// Latency of each successful operation.
    lat: Vec<Duration>,
    /// When each successful operation completed (same order as `lat`), for
    /// throughput over time (failover).
    ends: Vec<Instant>,
    /// Operations that failed (transport error, non-2xx, or a body that says
    /// it failed).
    errors: usize,
}

/// Sends one request and reads the whole body (so that the connection goes
/// back to the pool instead of being closed); true when the status is 2xx
/// and `check` accepts the body.
async fn send_ok(rb: reqwest::RequestBuilder, check: fn(&[u8]) -> bool) -> bool {
    match rb.send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok_and(|b| check(&b)),
        Ok(r) => {
            let _ = r.bytes().await;
            false
        }
        Err(_) => false,
    }
}

/// Accepts any body.
fn any_body(_: &[u8]) -> bool {
    true
}

/// Runs `concurrency` workers. Each takes the next operation number `k` and
/// runs `op(worker, k)` (true on success) until `until` says stop; with
/// `rate`, the workers share that many operations per second on fixed ticks
/// (a worker that falls behind does not burst to catch up, so the achieved
/// rate shows what held).
async fn run_pool<F, Fut>(
    concurrency: usize,
    until: Until,
    rate: Option<f64>,
    op: F,
) -> anyhow::Result<Samples>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let (next, op) = (next.clone(), op.clone());
        // Paced workers start a fraction of a period apart, so that the
        // pool sends at the rate from the first second instead of in one
        // burst per period.
        let mut tick = rate.map(|r| {
            let per_worker = (r / concurrency.max(1) as f64).max(0.001);
            let period = Duration::from_secs_f64(1.0 / per_worker);
            let offset = period.mul_f64(w as f64 / concurrency.max(1) as f64);
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            loop {
                if let Until::Time(stop) = until {
                    if Instant::now() >= stop {
                        break;
                    }
                }
                if let Some(t) = tick.as_mut() {
                    match until {
                        // The next tick may lie past the end: stop at the end.
                        Until::Time(stop) => tokio::select! {
                            _ = t.tick() => {}
                            _ = tokio::time::sleep_until(stop.into()) => break,
                        },
                        Until::Count(_) => {
                            t.tick().await;
                        }
                    }
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if let Until::Count(n) = until {
                    if k >= n {
                        break;
                    }
                }
                let t = Instant::now();
                if op(w, k).await {
                    let end = Instant::now();
                    s.lat.push(end - t);
                    s.ends.push(end);
                } else {
                    s.errors += 1;
                }
            }
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        let s = t.await?;
        all.lat.extend(s.lat);
        all.ends.extend(s.ends);
        all.errors += s.errors;
    }
    Ok(all)
}

/// [`run_pool`] for operations that are one request each, successful when
/// the status is 2xx. Returns the latencies and the count of failures.
async fn run_workers<F>(
    concurrency: usize,
    until: Until,
    rate: Option<f64>,
    op: F,
) -> anyhow::Result<(Vec<Duration>, usize)>
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Clone + Send + Sync + 'static,
{
    let s = run_pool(concurrency, until, rate, move |w, k| {
        send_ok(op(w, k), any_body)
    })
    .await?;
    Ok((s.lat, s.errors))
}

async fn load(
    nodes: Vec<String>,
    agents: usize,
    concurrency: usize,
    start: usize,
) -> anyhow::Result<serde_json::Value> {
    let client = http()?;
    let t0 = Instant::now();
    let (lat, errors) = run_workers(concurrency, Until::Count(agents), None, move |w, k| {
        let url = format!("{}/v1/agents", nodes[(w + k) % nodes.len()]);
        client.post(url).json(&agent_body(start + k))
    })
    .await?;
    let s = summarize(lat, errors, t0.elapsed());
    println!(
        "load: {} agents in {:.1}s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} errors",
        s.ops, s.seconds, s.ops_per_sec, s.p50_ms, s.p99_ms, s.max_ms, s.errors
    );
    Ok(json!({"scenario": "load", "agents": agents, "concurrency": concurrency, "result": s}))
}

fn run_cmd(template: &str, id: u64) -> anyhow::Result<()> {
    let cmd = template.replace("{id}", &id.to_string());
    let status = Process::new("sh")
        .arg("-c")
        .arg(&cmd)
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("'{cmd}' failed with {status}");
    }
    Ok(())
}

async fn leader_of(client: &reqwest::Client, nodes: &[String]) -> Option<u64> {
    for n in nodes {
        if let Ok(r) = client
            .get(format!("{n}/v1/cluster"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if let Some(l) = v["leader_id"].as_u64() {
                    return Some(l);
                }
            }
        }
    }
    None
}

async fn all_ready(client: &reqwest::Client, nodes: &[String]) -> bool {
    for n in nodes {
        let ok = client
            .get(format!("{n}/health/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            return false;
        }
    }
    true
}

async fn poll_until<F, Fut>(deadline: Instant, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn failover(
    nodes: Vec<String>,
    trials: usize,
    pid_file: &str,
    restart: &str,
    timeout_s: u64,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut times = Vec::new();
    for trial in 0..trials {
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        if !poll_until(deadline, || all_ready(&client, &nodes)).await {
            bail!("trial {trial}: cluster not ready");
        }
        let Some(leader) = leader_of(&client, &nodes).await else {
            bail!("no leader")
        };
        let survivors: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != leader)
            .map(|(_, n)| n.clone())
            .collect();
        let pid_path = pid_file.replace("{id}", &leader.to_string());
        let pid = std::fs::read_to_string(&pid_path)
            .with_context(|| format!("reading {pid_path}"))?
            .trim()
            .to_string();
        // `kill` returns once the signal is sent; SIGKILL lets the process
        // run no more user code, so every write below finds the leader gone.
        let t0 = Instant::now();
        let status = Process::new("kill")
            .arg("-KILL")
            .arg(&pid)
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("trial {trial}: kill -KILL {pid} failed");
        }
        let mut ok = false;
        let mut k = 0usize;
        while Instant::now() < deadline {
            let url = format!("{}/v1/agents", survivors[k % survivors.len()]);
            k += 1;
            let body = json!({"agent_id": format!("failover-{trial}-{k}"), "name": "f", "endpoint": "http://f"});
            let r = client
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(6))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                ok = true;
                break;
            }
        }
        if !ok {
            bail!("trial {trial}: no successful write within {timeout_s}s");
        }
        let took = t0.elapsed();
        println!(
            "failover trial {trial}: leader {leader} killed, first write after {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        times.push(took);
        run_cmd(restart, leader)?;
    }
    times.sort();
    let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let median = if ms.is_empty() {
        0.0
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    let max = ms.last().copied().unwrap_or(0.0);
    println!(
        "failover: {} trials, median {:.0} ms, max {:.0} ms",
        ms.len(),
        median,
        max
    );
    Ok(json!({"scenario": "failover", "trials_ms": ms, "median_ms": median, "max_ms": max}))
}

/// Runs the comparison; Ctrl-C or SIGTERM drops the running scenario, whose
/// clusters then kill their processes and remove their directories.
/// `$CARGO_TARGET_DIR/release/agent-registry`.
fn default_registry_bin() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    std::path::PathBuf::from(target).join("release/agent-registry")
}

#[allow(clippy::too_many_arguments)]
async fn compare_cmd(
    scenario: String,
    quick: bool,
    agents: Option<usize>,
    seconds: Option<u64>,
    mixed_discover_rate: Option<f64>,
    concurrency: usize,
    include_card: bool,
    out_dir: std::path::PathBuf,
    svg: Option<std::path::PathBuf>,
    registry_bin: Option<std::path::PathBuf>,
    etcd_bin: std::path::PathBuf,
    work_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<serde_json::Value> {
    let agents = agents.unwrap_or(if quick { 1_000 } else { 100_000 });
    let registry_bin = registry_bin.unwrap_or_else(default_registry_bin);
    let cfg = compare::Config {
        quick,
        agents,
        small_agents: (agents / 10).max(1),
        concurrency,
        seconds: seconds.unwrap_or(if quick { 3 } else { 15 }),
        mixed_seconds: if quick { 6 } else { 60 },
        trials: if quick { 1 } else { 5 },
        mixed_discover_rate: mixed_discover_rate.unwrap_or(if quick { 50.0 } else { 200.0 }),
        include_card,
        registry_bin,
        etcd_bin,
        work_dir: work_dir.unwrap_or_else(std::env::temp_dir),
    };
    let names: Vec<String> = if scenario == "all" {
        compare::SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        scenario.split(',').map(|s| s.trim().to_string()).collect()
    };
    for n in &names {
        if !compare::SCENARIOS.contains(&n.as_str()) {
            bail!(
                "unknown scenario '{n}' (one of: all, {})",
                compare::SCENARIOS.join(", ")
            );
        }
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let mut outs = Vec::new();
    let mut loads = Vec::new();
    for name in &names {
        eprintln!(
            "==== scenario {name}{}",
            if quick { " (quick)" } else { "" }
        );
        let t0 = Instant::now();
        let load_before = loadavg();
        let res = tokio::select! {
            r = compare::run(name, &cfg) => r,
            s = shutdown_signal() => Err(anyhow::anyhow!("stopped by {s}: clusters removed")),
        };
        match res {
            Ok(out) => {
                // Load average before and after: the machine is shared, and
                // this says how much else was running.
                let load = [load_before, loadavg()];
                eprintln!(
                    "==== scenario {name}: done in {:.1}s (load average before {}, after {})",
                    t0.elapsed().as_secs_f64(),
                    load[0],
                    load[1]
                );
                loads.push(json!({"scenario": name, "loadavg_before_after": load}));
                let path = out_dir.join(format!("{name}.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(&out)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                rows.extend(out.rows.iter().cloned());
                outs.push(out);
            }
            Err(e) => {
                eprintln!("==== scenario {name}: FAILED: {e:#}");
                let stopped = e.to_string().starts_with("stopped by");
                failed.push((name.clone(), format!("{e:#}")));
                if stopped {
                    break;
                }
            }
        }
    }
    let table = report::markdown(&rows);
    println!("\n{table}");
    let title = format!(
        "agent registry vs etcd 3.4, 3 nodes each, {} agents, {} connections{}",
        agents,
        concurrency,
        if quick { " (quick run)" } else { "" }
    );
    let chart = report::svg(&rows, &title);
    std::fs::write(out_dir.join("results.md"), &table)?;
    std::fs::write(out_dir.join("benchmarks.svg"), &chart)?;
    if let Some(p) = &svg {
        std::fs::write(p, &chart).with_context(|| format!("writing {}", p.display()))?;
    }
    let summary = json!({
        "config": cfg, "seconds": started.elapsed().as_secs_f64(),
        "rows": rows, "failed": failed, "loadavg": loads, "scenarios": outs,
    });
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    eprintln!(
        "compare: {} scenario(s) in {:.0}s; results in {}",
        names.len(),
        started.elapsed().as_secs_f64(),
        out_dir.display()
    );
    if !failed.is_empty() {
        bail!(
            "{} scenario(s) failed: {}",
            failed.len(),
            failed
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(summary)
}

/// `registry-bench report`: merges the rows of several runs, prints the
/// markdown table and writes the chart.
fn report_cmd(
    summaries: &[std::path::PathBuf],
    svg: Option<&std::path::Path>,
    title: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut by_scenario: std::collections::BTreeMap<String, Vec<compare::Row>> =
        std::collections::BTreeMap::new();
    for p in summaries {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let rows: Vec<compare::Row> = serde_json::from_value(v["rows"].clone())
            .with_context(|| format!("{}: no rows", p.display()))?;
        let mut fresh: std::collections::BTreeMap<String, Vec<compare::Row>> =
            std::collections::BTreeMap::new();
        for r in rows {
            fresh.entry(r.scenario.clone()).or_default().push(r);
        }
        by_scenario.extend(fresh);
    }
    let mut rows = Vec::new();
    for name in compare::SCENARIOS {
        if let Some(r) = by_scenario.remove(name) {
            rows.extend(r);
        }
    }
    println!("{}", report::markdown(&rows));
    if let Some(p) = svg {
        std::fs::write(p, report::svg(&rows, title))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(json!({"rows": rows}))
}

/// The 1, 5 and 15 minute load averages of the machine.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resolves on Ctrl-C or SIGTERM with the signal's name.
async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nodes = nodes(&cli.nodes)?;
    let result = match cli.cmd {
        Cmd::Report {
            summaries,
            svg,
            title,
        } => report_cmd(&summaries, svg.as_deref(), &title)?,
        Cmd::Compare {
            scenario,
            quick,
            agents,
            seconds,
            mixed_discover_rate,
            concurrency,
            include_card,
            out_dir,
            svg,
            registry_bin,
            etcd_bin,
            work_dir,
        } => {
            compare_cmd(
                scenario,
                quick,
                agents,
                seconds,
                mixed_discover_rate,
                concurrency,
                include_card,
                out_dir,
                svg,
                registry_bin,
                etcd_bin,
                work_dir,
            )
            .await?
        }
        Cmd::Security {
            quick,
            agents,
            seconds,
            concurrency,
            out_dir,
            registry_bin,
            work_dir,
        } => {
            let agents = agents.unwrap_or(if quick { 1_000 } else { 100_000 });
            let cfg = compare::Config {
                quick,
                agents,
                small_agents: (agents / 10).max(1),
                concurrency,
                seconds: seconds.unwrap_or(if quick { 3 } else { 15 }),
                mixed_seconds: 0,
                trials: 0,
                mixed_discover_rate: 0.0,
                include_card: false,
                registry_bin: registry_bin.unwrap_or_else(default_registry_bin),
                etcd_bin: std::path::PathBuf::new(),
                work_dir: work_dir.unwrap_or_else(std::env::temp_dir),
            };
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let out = tokio::select! {
                r = compare::security::security(&cfg) => r?,
                s = shutdown_signal() => bail!("stopped by {s}: clusters removed"),
            };
            let table = compare::security::markdown(&out);
            println!("\n{table}");
            std::fs::write(out_dir.join("security.md"), &table)?;
            let v = serde_json::to_value(&out)?;
            std::fs::write(
                out_dir.join("security.json"),
                serde_json::to_vec_pretty(&v)?,
            )?;
            v
        }
        Cmd::Load {
            agents,
            concurrency,
            start,
        } => load(nodes, agents, concurrency, start).await?,
        Cmd::Heartbeat {
            agents,
            concurrency,
            seconds,
            leader_only,
            rate,
        } => liveness::heartbeat(nodes, agents, concurrency, seconds, leader_only, rate).await?,
        Cmd::Expiry {
            agents,
            ttl_s,
            offline_s,
            concurrency,
            timeout_s,
        } => liveness::expiry(nodes, agents, ttl_s, offline_s, concurrency, timeout_s).await?,
        Cmd::Failover {
            trials,
            pid_file,
            restart,
            timeout_s,
        } => failover(nodes, trials, &pid_file, &restart, timeout_s).await?,
    };
    if let Some(path) = cli.out {
        std::fs::write(&path, serde_json::to_vec_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
