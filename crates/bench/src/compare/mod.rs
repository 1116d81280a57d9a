//! `registry-bench compare`: the registry and etcd side by side in one run.
//!
//! Each scenario starts a fresh 3-node registry cluster, measures it, stops
//! it, then does the same with a fresh 3-node etcd cluster: one after the
//! other on the same machine, with the same client concurrency and the same
//! ~512-byte records, so the two never compete for the cores. See
//! `docs/benchmarks.md` for what each scenario measures on each side and why
//! the etcd operation is the equivalent one.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use registry_types::ReadOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::etcd;
use super::procs::{cpu_percent, cpu_seconds, Cluster, System};
use super::{agent_body, any_body, run_pool, send_ok, summarize, Summary, Until};

mod cards;
mod ceiling;
mod discover;
mod expiry;
mod failover;
mod footprint;
mod heartbeat;
mod mixed;
mod register;
pub mod security;

use cards::cards;
use ceiling::ceiling;
use discover::discover;
use expiry::expiry;
use failover::failover;
use footprint::footprint;
use heartbeat::heartbeat;
use mixed::mixed;
use register::register;

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 9] = [
    "ceiling",
    "register",
    "heartbeat",
    "discover",
    "mixed",
    "expiry",
    "failover",
    "footprint",
    "cards",
];

/// Sizes and places of one comparison run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Small numbers so that a CI run takes a minute or two.
    pub quick: bool,
    /// Fleet size of the large runs (100,000; quick: 1,000).
    pub agents: usize,
    /// Fleet size of the small heartbeat run (10,000; quick: 100).
    pub small_agents: usize,
    /// Client connections (workers) of every closed-loop measurement.
    pub concurrency: usize,
    /// Length of each throughput measurement, in seconds.
    pub seconds: u64,
    /// Length of the mixed-fleet run, in seconds.
    pub mixed_seconds: u64,
    /// Leader kills per system in `failover`.
    pub trials: usize,
    /// Discovery queries per second in `mixed` (0: none, to see what the
    /// heartbeats and churn alone hold).
    pub mixed_discover_rate: f64,
    /// Ask the registry for the cards in discovery hits
    /// (`"include_card": true`; `cards` scenario). Only for a node that
    /// knows the field: an older one refuses it.
    pub include_card: bool,
    /// The `agent-registry` release binary.
    pub registry_bin: PathBuf,
    /// The `etcd` binary.
    pub etcd_bin: PathBuf,
    /// Where the clusters' data directories and logs go (removed afterwards).
    pub work_dir: PathBuf,
}

/// One line of the comparison: one figure for each system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    /// What is measured, e.g. "heartbeats/s, 100,000 agents, to the leader".
    pub metric: String,
    /// Unit of `registry` and `etcd`.
    pub unit: String,
    /// Whether a larger figure is better (throughput) or worse (time, memory).
    pub higher_is_better: bool,
    pub registry: Option<f64>,
    pub etcd: Option<f64>,
    /// registry / etcd.
    pub ratio: Option<f64>,
    /// Latencies behind a throughput figure.
    pub registry_latency: Option<Summary>,
    pub etcd_latency: Option<Summary>,
    /// The target for this line, in words.
    pub target: Option<String>,
    /// Whether this run met it.
    pub met: Option<bool>,
    /// How the two sides were measured, when not obvious from `metric`.
    pub note: String,
}

impl Row {
    fn new(scenario: &str, metric: &str, unit: &str, higher_is_better: bool) -> Row {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            higher_is_better,
            registry: None,
            etcd: None,
            ratio: None,
            registry_latency: None,
            etcd_latency: None,
            target: None,
            met: None,
            note: String::new(),
        }
    }

    /// A throughput line from the two latency summaries.
    fn rate(scenario: &str, metric: &str, reg: &Summary, etc: Option<&Summary>) -> Row {
        let mut r = Row::new(scenario, metric, "ops/s", true);
        r.registry = Some(reg.ops_per_sec);
        r.registry_latency = Some(reg.clone());
        r.etcd = etc.map(|s| s.ops_per_sec);
        r.etcd_latency = etc.cloned();
        r.finish()
    }

    fn values(mut self, reg: Option<f64>, etc: Option<f64>) -> Row {
        self.registry = reg;
        self.etcd = etc;
        self.finish()
    }

    fn finish(mut self) -> Row {
        self.ratio = match (self.registry, self.etcd) {
            (Some(r), Some(e)) if e > 0.0 => Some(r / e),
            _ => None,
        };
        self
    }

    /// Target "ratio at least `min`" (or at most, for lower-is-better).
    fn target_ratio(mut self, text: &str, bound: f64) -> Row {
        self.target = Some(text.into());
        self.met = self.ratio.map(|q| {
            if self.higher_is_better {
                q >= bound
            } else {
                q <= bound
            }
        });
        self
    }

    fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }
}

/// What one scenario produced.
#[derive(Debug, Serialize)]
pub struct ScenarioOut {
    pub scenario: String,
    pub rows: Vec<Row>,
    /// Everything measured on each side (per-node CPU, memory, trials…).
    pub registry: Value,
    pub etcd: Value,
}

/// Runs one scenario by name.
pub async fn run(name: &str, cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let out = match name {
        "ceiling" => ceiling(cfg).await?,
        "register" => register(cfg).await?,
        "heartbeat" => heartbeat(cfg).await?,
        "discover" => discover(cfg).await?,
        "mixed" => mixed(cfg).await?,
        "expiry" => expiry(cfg).await?,
        "failover" => failover(cfg).await?,
        "footprint" => footprint(cfg).await?,
        "cards" => cards(cfg).await?,
        other => bail!(
            "unknown scenario '{other}' (one of: all, {})",
            SCENARIOS.join(", ")
        ),
    };
    ensure!(!out.rows.is_empty(), "{name}: measured nothing");
    for r in &out.rows {
        ensure!(
            r.registry.is_some(),
            "{name}: no registry figure for '{}'",
            r.metric
        );
        ensure!(
            r.etcd.is_some(),
            "{name}: no etcd figure for '{}'",
            r.metric
        );
        if r.higher_is_better {
            ensure!(
                r.registry > Some(0.0) && r.etcd > Some(0.0),
                "{name}: '{}' measured nothing (registry {:?}, etcd {:?})",
                r.metric,
                r.registry,
                r.etcd
            );
        }
    }
    Ok(out)
}

// ---- shared steps -------------------------------------------------------

fn log(msg: impl AsRef<str>) {
    eprintln!("compare: {}", msg.as_ref());
}

/// A registration of agent `i` for the registry, with `ttl_seconds`.
fn reg_body(i: usize, ttl: u32) -> Value {
    let mut b = agent_body(i);
    b["ttl_seconds"] = json!(ttl);
    b
}

/// TTL of agents in scenarios that do not test expiry: long enough that
/// nobody expires while a large fleet is being set up.
const LONG_TTL: u32 = 3600;

/// Sends a setup request until it succeeds, at most 5 times (a loaded
/// machine makes the odd write time out; setup is not what is measured).
async fn with_retries<F>(make: F, check: fn(&[u8]) -> bool) -> bool
where
    F: Fn() -> reqwest::RequestBuilder,
{
    for attempt in 0..5u64 {
        if send_ok(make(), check).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
    }
    false
}

/// Fills a fresh cluster with agents `0..n` (etcd: with their capability
/// index keys, all under their leases) and waits until every node holds
/// them. Not timed.
async fn fill_fleet(
    sys: System,
    client: &reqwest::Client,
    urls: &[String],
    n: usize,
    ttl: u32,
    concurrency: usize,
) -> anyhow::Result<()> {
    match sys {
        System::Registry => {
            registry_fill(client, urls, 0, n, ttl, concurrency).await?;
            registry_settle(client, urls, n).await
        }
        System::Etcd => {
            etcd_fill(client, urls, 0, n, u64::from(ttl), true, concurrency).await?;
            etcd_settle(client, urls, n).await
        }
    }
}

/// Registers agents `from..to` on the registry, spread over the nodes.
async fn registry_fill(
    client: &reqwest::Client,
    urls: &[String],
    from: usize,
    to: usize,
    ttl: u32,
    concurrency: usize,
) -> anyhow::Result<Summary> {
    registry_post_agents(
        client,
        urls,
        from,
        to,
        move |i| reg_body(i, ttl),
        concurrency,
    )
    .await
}

/// POSTs `body(i)` to `path` for agents `i` in `from..to`, spread over the
/// nodes round-robin, each retried a few times; the pool's samples.
async fn post_each<B>(
    client: &reqwest::Client,
    urls: &[String],
    path: &'static str,
    from: usize,
    to: usize,
    body: B,
    concurrency: usize,
) -> anyhow::Result<super::Samples>
where
    B: Fn(usize) -> Value + Clone + Send + Sync + 'static,
{
    let (client, urls) = (client.clone(), urls.to_vec());
    run_pool(concurrency, Until::Count(to - from), None, move |w, k| {
        let (client, urls, body) = (client.clone(), urls.clone(), body.clone());
        async move {
            let b = body(from + k);
            with_retries(
                || {
                    let url = format!("{}{path}", urls[(w + k) % urls.len()]);
                    client.post(url).json(&b)
                },
                any_body,
            )
            .await
        }
    })
    .await
}

/// Posts `body(i)` to `/v1/agents` for agents `i` in `from..to`, spread
/// over the nodes, each retried a few times; fails when one never took.
async fn registry_post_agents<B>(
    client: &reqwest::Client,
    urls: &[String],
    from: usize,
    to: usize,
    body: B,
    concurrency: usize,
) -> anyhow::Result<Summary>
where
    B: Fn(usize) -> Value + Clone + Send + Sync + 'static,
{
    let t0 = Instant::now();
    let s = post_each(client, urls, "/v1/agents", from, to, body, concurrency).await?;
    let sum = summarize(s.lat, s.errors, t0.elapsed());
    ensure!(
        sum.errors == 0,
        "registry: {} of {} registrations failed",
        sum.errors,
        to - from
    );
    Ok(sum)
}

/// Grants leases of agents `from..to` on etcd (TTL `ttl`), then, with
/// `layout`, writes each agent's keys in one transaction (see
/// [`etcd`]). Spread over the members.
async fn etcd_fill(
    client: &reqwest::Client,
    urls: &[String],
    from: usize,
    to: usize,
    ttl: u64,
    layout: bool,
    concurrency: usize,
) -> anyhow::Result<()> {
    let grant = move |i| etcd::grant_body(i, ttl);
    let s = post_each(
        client,
        urls,
        "/v3/lease/grant",
        from,
        to,
        grant,
        concurrency,
    )
    .await?;
    ensure!(s.errors == 0, "etcd: {} lease grants failed", s.errors);
    if layout {
        etcd_txns(client, urls, from, to, etcd::register_txn_body, concurrency).await?;
    }
    Ok(())
}

/// Sends transaction `body(i)` for agents `i` in `from..to` (their leases
/// granted before), spread over the members, each retried a few times.
async fn etcd_txns<B>(
    client: &reqwest::Client,
    urls: &[String],
    from: usize,
    to: usize,
    body: B,
    concurrency: usize,
) -> anyhow::Result<()>
where
    B: Fn(usize) -> Value + Clone + Send + Sync + 'static,
{
    let s = post_each(client, urls, "/v3/kv/txn", from, to, body, concurrency).await?;
    ensure!(s.errors == 0, "etcd: {} registrations failed", s.errors);
    Ok(())
}

/// Waits until every registry node has applied at least `n` agents.
async fn registry_settle(
    client: &reqwest::Client,
    urls: &[String],
    n: usize,
) -> anyhow::Result<()> {
    settle(urls, n, |u| async move {
        let r = client
            .get(format!("{u}/v1/stats"))
            .query(&ReadOptions::stale())
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["total_agents"].as_u64()
    })
    .await
}

/// Waits until every etcd member has applied `n` agent records.
async fn etcd_settle(client: &reqwest::Client, urls: &[String], n: usize) -> anyhow::Result<()> {
    settle(urls, n, |u| etcd::count(client, u, "/agents/")).await
}

/// Polls `count` on every node until each reports at least `n` agents, for
/// at most two minutes in all.
async fn settle<'a, F, Fut>(urls: &'a [String], n: usize, count: F) -> anyhow::Result<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    for u in urls {
        loop {
            let c = count(u).await;
            if c >= Some(n as u64) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{u} shows {c:?} agents, wanted {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A timed closed-loop (or paced, with `rate`) measurement, with the CPU
/// each node and the load generator used meanwhile (percent of one core).
async fn timed<F, Fut>(
    cluster: &Cluster,
    concurrency: usize,
    until: Until,
    rate: Option<f64>,
    op: F,
) -> anyhow::Result<(Summary, Value)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let me = std::process::id();
    let (cpu0, me0) = (cluster.cpu(), cpu_seconds(me));
    let t0 = Instant::now();
    let s = run_pool(concurrency, until, rate, op).await?;
    let wall = t0.elapsed();
    let (cpu1, me1) = (cluster.cpu(), cpu_seconds(me));
    let sum = summarize(s.lat, s.errors, wall);
    let cpu = json!({
        "nodes_cpu_percent": cpu_percent(&cpu0, &cpu1, wall),
        "bench_cpu_percent": cpu_percent(&[me0], &[me1], wall)[0],
    });
    Ok((sum, cpu))
}

fn print_rate(sys: System, what: &str, s: &Summary, cpu: &Value) {
    println!(
        "{:<8} {what}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} errors; cpu % nodes {} bench {}",
        sys.name(),
        s.ops_per_sec,
        s.p50_ms,
        s.p99_ms,
        s.max_ms,
        s.errors,
        cpu["nodes_cpu_percent"],
        cpu["bench_cpu_percent"]
    );
}

fn with_cpu(s: &Summary, cpu: &Value) -> Value {
    json!({"result": s, "cpu": cpu})
}

fn until(secs: u64) -> Until {
    Until::Time(Instant::now() + Duration::from_secs(secs))
}

async fn start(cfg: &Config, sys: System, size: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
    log(format!(
        "starting a fresh {size}-node {} cluster",
        sys.name()
    ));
    match sys {
        System::Registry => {
            Cluster::registry(&cfg.registry_bin, &cfg.work_dir, size, extra, None).await
        }
        System::Etcd => Cluster::etcd(&cfg.etcd_bin, &cfg.work_dir, size).await,
    }
}

/// A discovery answer with at least one agent.
fn has_agent(body: &[u8]) -> bool {
    body.windows(10).any(|w| w == b"\"agent_id\"")
}
