//! `registry-bench`: drives load at a registry cluster and measures it.
//!
//! Subcommands:
//! - `load`: registers N agents (records of about 512 bytes) with C
//!   concurrent connections spread over the given nodes; prints and writes
//!   (JSON) throughput and latency percentiles.
//! - `failover`: repeatedly kills the leader (SIGKILL to its pid), and
//!   measures the time from the kill to the first successful write through
//!   the surviving nodes; restarts the node and waits for it between trials.

mod liveness;

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
#[derive(Debug, Serialize)]
struct Summary {
    ops: usize,
    errors: usize,
    seconds: f64,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
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

/// A registration body of about 512 bytes, with capabilities drawn from a
/// small vocabulary so capability sets overlap as in a real fleet.
pub fn agent_body(i: usize) -> serde_json::Value {
    const CAPS: [&str; 8] = [
        "python code generation",
        "trading",
        "risk management",
        "translation",
        "summarization",
        "image captioning",
        "web search",
        "sql analytics",
    ];
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

/// When the workers of [`run_workers`] stop taking operations.
#[derive(Clone, Copy)]
enum Until {
    /// After this many operations in all.
    Count(usize),
    /// At this instant.
    Time(Instant),
}

/// Runs `concurrency` workers. Each takes the next operation number `k` and
/// runs `op(worker, k)` (a POST) until `until` says stop; with `rate`, the
/// workers share that many operations per second on fixed ticks. Returns the
/// latencies of successful operations and the count of failed ones.
async fn run_workers<F>(
    concurrency: usize,
    until: Until,
    rate: Option<f64>,
    op: F,
) -> anyhow::Result<(Vec<Duration>, usize)>
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Clone + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let (next, op) = (next.clone(), op.clone());
        let mut tick = rate.map(|r| {
            let per_worker = (r / concurrency.max(1) as f64).max(0.001);
            let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / per_worker));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                if let Until::Time(stop) = until {
                    if Instant::now() >= stop {
                        break;
                    }
                }
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if let Until::Count(n) = until {
                    if k >= n {
                        break;
                    }
                }
                let t = Instant::now();
                match op(w, k).send().await {
                    Ok(r) if r.status().is_success() => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nodes = nodes(&cli.nodes)?;
    let result = match cli.cmd {
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
