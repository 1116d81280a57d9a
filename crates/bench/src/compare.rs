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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use registry_types::ReadOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::etcd;
use super::procs::{cpu_percent, cpu_seconds, dir_bytes, Cluster, System};
use super::{
    agent_body, any_body, http, run_pool, send_ok, summarize, Samples, Summary, Until, CAPS,
};

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 8] = [
    "ceiling",
    "register",
    "heartbeat",
    "discover",
    "mixed",
    "expiry",
    "failover",
    "footprint",
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
    let (client, urls) = (client.clone(), urls.to_vec());
    let t0 = Instant::now();
    let s = run_pool(concurrency, Until::Count(to - from), None, move |w, k| {
        let (client, urls) = (client.clone(), urls.clone());
        async move {
            with_retries(
                || {
                    let url = format!("{}/v1/agents", urls[(w + k) % urls.len()]);
                    client.post(url).json(&reg_body(from + k, ttl))
                },
                any_body,
            )
            .await
        }
    })
    .await?;
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
    let (c, u) = (client.clone(), urls.to_vec());
    let s = run_pool(concurrency, Until::Count(to - from), None, move |w, k| {
        let (c, u) = (c.clone(), u.clone());
        async move {
            with_retries(
                || {
                    let url = format!("{}/v3/lease/grant", u[(w + k) % u.len()]);
                    c.post(url).json(&etcd::grant_body(from + k, ttl))
                },
                any_body,
            )
            .await
        }
    })
    .await?;
    ensure!(s.errors == 0, "etcd: {} lease grants failed", s.errors);
    if layout {
        let (c, u) = (client.clone(), urls.to_vec());
        let s = run_pool(concurrency, Until::Count(to - from), None, move |w, k| {
            let (c, u) = (c.clone(), u.clone());
            async move {
                with_retries(
                    || {
                        let url = format!("{}/v3/kv/txn", u[(w + k) % u.len()]);
                        c.post(url).json(&etcd::register_txn_body(from + k))
                    },
                    any_body,
                )
                .await
            }
        })
        .await?;
        ensure!(s.errors == 0, "etcd: {} registrations failed", s.errors);
    }
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

// ---- ceiling --------------------------------------------------------------

/// The HTTP stack alone: a trivial route on a single node, same
/// concurrency. The registry answers `GET /health/live`, etcd `GET /version`.
async fn ceiling(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let mut sides = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let c = start(cfg, sys, 1, &[]).await?;
        let path = match sys {
            System::Registry => "/health/live",
            System::Etcd => "/version",
        };
        let (cl, url) = (client.clone(), format!("{}{path}", c.urls[0]));
        let (s, cpu) = timed(
            &c,
            cfg.concurrency,
            until(cfg.seconds),
            None,
            move |_, _| send_ok(cl.get(&url), any_body),
        )
        .await?;
        print_rate(sys, &format!("GET {path}, 1 node"), &s, &cpu);
        sides.push((s, cpu));
    }
    let row = Row::rate(
        "ceiling",
        "trivial GET on one node (registry /health/live, etcd /version)",
        &sides[0].0,
        Some(&sides[1].0),
    )
    .note("the HTTP stack alone: what the machine allows per request at this concurrency");
    Ok(ScenarioOut {
        scenario: "ceiling".into(),
        rows: vec![row],
        registry: with_cpu(&sides[0].0, &sides[0].1),
        etcd: with_cpu(&sides[1].0, &sides[1].1),
    })
}

async fn start(cfg: &Config, sys: System, size: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
    log(format!(
        "starting a fresh {size}-node {} cluster",
        sys.name()
    ));
    match sys {
        System::Registry => Cluster::registry(&cfg.registry_bin, &cfg.work_dir, size, extra).await,
        System::Etcd => Cluster::etcd(&cfg.etcd_bin, &cfg.work_dir, size).await,
    }
}

// ---- register -------------------------------------------------------------

async fn register(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    let c = start(cfg, System::Registry, 3, &[]).await?;
    let (cl, urls) = (client.clone(), c.urls.clone());
    let (reg, reg_cpu) = timed(&c, cfg.concurrency, Until::Count(n), None, move |w, k| {
        let url = format!("{}/v1/agents", urls[(w + k) % urls.len()]);
        send_ok(cl.post(url).json(&reg_body(k, LONG_TTL)), any_body)
    })
    .await?;
    print_rate(System::Registry, "register", &reg, &reg_cpu);
    drop(c);

    let c = start(cfg, System::Etcd, 3, &[]).await?;
    log(format!("etcd: granting {n} leases (not timed)"));
    etcd_fill(
        &client,
        &c.urls,
        0,
        n,
        u64::from(LONG_TTL),
        false,
        cfg.concurrency,
    )
    .await?;
    let (cl, urls) = (client.clone(), c.urls.clone());
    let (et, et_cpu) = timed(&c, cfg.concurrency, Until::Count(n), None, move |w, k| {
        let url = format!("{}/v3/kv/put", urls[(w + k) % urls.len()]);
        send_ok(cl.post(url).json(&etcd::put_body(k, true)), any_body)
    })
    .await?;
    print_rate(System::Etcd, "put with lease", &et, &et_cpu);
    let row = Row::rate(
        "register",
        &format!("agents registered/s ({n}, spread over 3 nodes)"),
        &reg,
        Some(&et),
    )
    .target_ratio("≥ 1.5× etcd puts", 1.5)
    .note("etcd: put of the record with its lease attached; the lease grants (another Raft write each) were done before, untimed");
    Ok(ScenarioOut {
        scenario: "register".into(),
        rows: vec![row],
        registry: with_cpu(&reg, &reg_cpu),
        etcd: with_cpu(&et, &et_cpu),
    })
}

// ---- heartbeat --------------------------------------------------------------

async fn heartbeat(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let sizes = [cfg.small_agents, cfg.agents];
    let mut results: Vec<Vec<(Summary, Value)>> = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let c = start(cfg, sys, 3, &[]).await?;
        let mut side = Vec::new();
        let mut have = 0;
        for &n in &sizes {
            log(format!("{}: {n} agents (not timed)", sys.name()));
            match sys {
                System::Registry => {
                    registry_fill(&client, &c.urls, have, n, LONG_TTL, cfg.concurrency).await?;
                    registry_settle(&client, &c.urls, n).await?;
                }
                System::Etcd => {
                    etcd_fill(
                        &client,
                        &c.urls,
                        have,
                        n,
                        u64::from(LONG_TTL),
                        false,
                        cfg.concurrency,
                    )
                    .await?
                }
            }
            have = n;
            for leader_only in [true, false] {
                let leader = c.wait_leader(&client, Duration::from_secs(10)).await?;
                let targets: Vec<String> = if leader_only {
                    vec![c.urls[leader].clone()]
                } else {
                    c.urls.clone()
                };
                let cl = client.clone();
                let (s, cpu) = timed(
                    &c,
                    cfg.concurrency,
                    until(cfg.seconds),
                    None,
                    move |w, k| {
                        let base = &targets[(w + k) % targets.len()];
                        match sys {
                            System::Registry => send_ok(
                                cl.post(format!("{base}/v1/agents/bench-{:07}/heartbeat", k % n)),
                                any_body,
                            ),
                            System::Etcd => send_ok(
                                cl.post(format!("{base}/v3/lease/keepalive"))
                                    .json(&json!({"ID": etcd::lease_id(k % n)})),
                                etcd::keepalive_ok,
                            ),
                        }
                    },
                )
                .await?;
                let what = format!(
                    "heartbeat {n} agents, {}",
                    if leader_only { "leader" } else { "spread" }
                );
                print_rate(sys, &what, &s, &cpu);
                side.push((s, cpu));
            }
        }
        results.push(side);
    }
    let mut rows = Vec::new();
    let mut i = 0;
    for n in sizes {
        for leader_only in [true, false] {
            let metric = format!(
                "heartbeats/s, {n} agents, {}",
                if leader_only {
                    "all to the leader"
                } else {
                    "spread over 3 nodes"
                }
            );
            rows.push(
                Row::rate(
                    "heartbeat",
                    &metric,
                    &results[0][i].0,
                    Some(&results[1][i].0),
                )
                .target_ratio("≥ 3× etcd keepalives", 3.0)
                .note("etcd: POST /v3/lease/keepalive, one lease per agent"),
            );
            i += 1;
        }
    }
    let side = |r: &Vec<(Summary, Value)>| -> Value {
        r.iter()
            .map(|(s, c)| with_cpu(s, c))
            .collect::<Vec<_>>()
            .into()
    };
    Ok(ScenarioOut {
        scenario: "heartbeat".into(),
        rows,
        registry: side(&results[0]),
        etcd: side(&results[1]),
    })
}

// ---- discover ---------------------------------------------------------------

/// Which nodes a measurement sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    Leader,
    Followers,
    All,
}

impl Targets {
    fn pick(self, urls: &[String], leader: usize) -> Vec<String> {
        urls.iter()
            .enumerate()
            .filter(|(i, _)| match self {
                Targets::Leader => *i == leader,
                Targets::Followers => *i != leader,
                Targets::All => true,
            })
            .map(|(_, u)| u.clone())
            .collect()
    }

    fn words(self) -> &'static str {
        match self {
            Targets::Leader => "the leader",
            Targets::Followers => "followers",
            Targets::All => "all 3 nodes",
        }
    }
}

async fn discover(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    // Closed loop at full concurrency (throughput), then paced at a steady
    // rate well under it (latency when the nodes are not saturated).
    let steady = if cfg.quick { 200.0 } else { 1_000.0 };
    let variants: Vec<(bool, Targets, Option<f64>)> = vec![
        (false, Targets::Leader, None),
        (false, Targets::Followers, None),
        (true, Targets::Leader, None),
        (true, Targets::Followers, None),
        (false, Targets::All, Some(steady)),
        (true, Targets::All, Some(steady)),
    ];
    let mut results: Vec<Vec<(Summary, Value)>> = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let c = start(cfg, sys, 3, &[]).await?;
        log(format!("{}: {n} agents (not timed)", sys.name()));
        fill_fleet(sys, &client, &c.urls, n, LONG_TTL, cfg.concurrency).await?;
        let mut side = Vec::new();
        for &(stale, to, rate) in &variants {
            let leader = c.wait_leader(&client, Duration::from_secs(10)).await?;
            let targets = to.pick(&c.urls, leader);
            let cl = client.clone();
            let (s, cpu) = timed(
                &c,
                cfg.concurrency,
                until(cfg.seconds),
                rate,
                move |w, k| {
                    let base = &targets[(w + k) % targets.len()];
                    let cap = CAPS[k % CAPS.len()];
                    match sys {
                        System::Registry => send_ok(
                            cl.post(format!("{base}/v1/discover"))
                                .query(&read_options(stale))
                                .json(&json!({"capabilities": [cap], "limit": 10})),
                            has_agent,
                        ),
                        System::Etcd => send_ok(
                            cl.post(format!("{base}/v3/kv/range"))
                                .json(&etcd::discover_body(cap, 10, stale)),
                            etcd::range_nonempty,
                        ),
                    }
                },
            )
            .await?;
            let what = format!(
                "discover {}, {}{}",
                read_options(stale).consistency,
                to.words(),
                rate.map_or(String::new(), |r| format!(", paced at {r:.0}/s"))
            );
            print_rate(sys, &what, &s, &cpu);
            side.push((s, cpu));
        }
        results.push(side);
    }
    let mut rows = Vec::new();
    for (i, &(stale, to, rate)) in variants.iter().enumerate() {
        let consistency = if stale {
            "stale (etcd serializable)"
        } else {
            "linearizable"
        };
        let (reg, et) = (&results[0][i].0, &results[1][i].0);
        let row = match rate {
            None => {
                let metric = format!(
                    "discoveries/s, up to 10 of {n}, {consistency} on {}",
                    to.words()
                );
                Row::rate("discover", &metric, reg, Some(et))
                    .target_ratio("≥ 1.0× etcd range", 1.0)
                    .note("closed loop; etcd: range over /cap/<capability>/ with limit 10 (the record stored in the index key)")
            }
            Some(r) => {
                let metric = format!(
                    "discovery p99 latency at a steady {r:.0}/s, {consistency}, {} agents, {}",
                    n,
                    to.words()
                );
                let mut row = Row::new("discover", &metric, "ms", false)
                    .values(Some(reg.p99_ms), Some(et.p99_ms));
                row.registry_latency = Some(reg.clone());
                row.etcd_latency = Some(et.clone());
                row.target = Some("p99 < 5 ms".into());
                row.met = Some(reg.p99_ms < 5.0);
                row.note(format!(
                    "paced (not saturating); achieved {:.0}/s registry, {:.0}/s etcd",
                    reg.ops_per_sec, et.ops_per_sec
                ))
            }
        };
        rows.push(row);
    }
    let side = |r: &Vec<(Summary, Value)>| -> Value {
        r.iter()
            .map(|(s, c)| with_cpu(s, c))
            .collect::<Vec<_>>()
            .into()
    };
    Ok(ScenarioOut {
        scenario: "discover".into(),
        rows,
        registry: side(&results[0]),
        etcd: side(&results[1]),
    })
}

/// The read options of a registry discovery: stale (any node answers from
/// what it has applied, as etcd's serializable reads do) or linearizable.
fn read_options(stale: bool) -> ReadOptions {
    if stale {
        ReadOptions::stale()
    } else {
        ReadOptions::linearizable()
    }
}

/// A discovery answer with at least one agent.
fn has_agent(body: &[u8]) -> bool {
    body.windows(10).any(|w| w == b"\"agent_id\"")
}

// ---- mixed ------------------------------------------------------------------

/// The steady rates of the mixed fleet.
struct MixedRates {
    /// Every agent beats every 10 s.
    heartbeats: f64,
    /// 1 % of the fleet per minute leaves and comes back (at least 1/s so a
    /// short run has some).
    churn: f64,
    /// Discovery queries per second.
    discover: f64,
}

async fn mixed(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    let rates = MixedRates {
        heartbeats: n as f64 / 10.0,
        churn: (n as f64 / 100.0 / 60.0).max(1.0),
        discover: cfg.mixed_discover_rate,
    };
    // The paced pools need enough connections to reach their rates while
    // some requests are slow: the heartbeat pool gets most of them.
    let (hb_conc, churn_conc, disc_conc) = (cfg.concurrency * 3, 8, cfg.concurrency / 4);
    let mut sides = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let c = start(cfg, sys, 3, &[]).await?;
        log(format!("{}: {n} agents (not timed)", sys.name()));
        // A TTL of 300 s: beating every 10 s, nobody expires unless the
        // heartbeat rate collapses.
        fill_fleet(sys, &client, &c.urls, n, 300, cfg.concurrency).await?;
        let secs = cfg.mixed_seconds;
        log(format!(
            "{}: mixed fleet for {secs} s: {:.0} heartbeats/s, {:.1} churns/s, {:.0} discoveries/s",
            sys.name(),
            rates.heartbeats,
            rates.churn,
            rates.discover
        ));
        let urls = c.urls.clone();
        let cpu0 = c.cpu();
        let me0 = cpu_seconds(std::process::id());
        let t0 = Instant::now();
        let hb = {
            let (cl, urls) = (client.clone(), urls.clone());
            run_pool(hb_conc, until(secs), Some(rates.heartbeats), move |w, k| {
                let base = &urls[(w + k) % urls.len()];
                match sys {
                    System::Registry => send_ok(
                        cl.post(format!("{base}/v1/agents/bench-{:07}/heartbeat", k % n)),
                        any_body,
                    ),
                    System::Etcd => send_ok(
                        cl.post(format!("{base}/v3/lease/keepalive"))
                            .json(&json!({"ID": etcd::lease_id(k % n)})),
                        etcd::keepalive_ok,
                    ),
                }
            })
        };
        let churn = {
            let (cl, urls) = (client.clone(), urls.clone());
            run_pool(churn_conc, until(secs), Some(rates.churn), move |w, k| {
                let base = urls[(w + k) % urls.len()].clone();
                let cl = cl.clone();
                let j = (k * 7919 + 13) % n;
                async move {
                    match sys {
                        System::Registry => {
                            send_ok(
                                cl.delete(format!("{base}/v1/agents/bench-{j:07}")),
                                any_body,
                            )
                            .await
                                && send_ok(
                                    cl.post(format!("{base}/v1/agents")).json(&reg_body(j, 300)),
                                    any_body,
                                )
                                .await
                        }
                        System::Etcd => {
                            send_ok(
                                cl.post(format!("{base}/v3/lease/revoke"))
                                    .json(&json!({"ID": etcd::lease_id(j)})),
                                any_body,
                            )
                            .await
                                && send_ok(
                                    cl.post(format!("{base}/v3/lease/grant"))
                                        .json(&etcd::grant_body(j, 300)),
                                    any_body,
                                )
                                .await
                                && send_ok(
                                    cl.post(format!("{base}/v3/kv/txn"))
                                        .json(&etcd::register_txn_body(j)),
                                    any_body,
                                )
                                .await
                        }
                    }
                }
            })
        };
        let disc = {
            let (cl, urls) = (client.clone(), urls.clone());
            // No discovery at all when its rate is 0 (not even one query).
            let disc_until = if rates.discover > 0.0 {
                until(secs)
            } else {
                Until::Count(0)
            };
            let disc_rate = (rates.discover > 0.0).then_some(rates.discover);
            run_pool(disc_conc, disc_until, disc_rate, move |w, k| {
                let base = &urls[(w + k) % urls.len()];
                let cap = CAPS[k % CAPS.len()];
                match sys {
                    System::Registry => send_ok(
                        cl.post(format!("{base}/v1/discover"))
                            .json(&json!({"capabilities": [cap], "limit": 10})),
                        has_agent,
                    ),
                    System::Etcd => send_ok(
                        cl.post(format!("{base}/v3/kv/range"))
                            .json(&etcd::discover_body(cap, 10, false)),
                        etcd::range_nonempty,
                    ),
                }
            })
        };
        let (hb, churn, disc) = tokio::join!(hb, churn, disc);
        let wall = t0.elapsed();
        let cpu = cpu_percent(&cpu0, &c.cpu(), wall);
        let me = cpu_percent(&[me0], &[cpu_seconds(std::process::id())], wall)[0];
        let sum = |s: Samples| summarize(s.lat, s.errors, wall);
        let (hb, churn, disc) = (sum(hb?), sum(churn?), sum(disc?));
        // What the fleet looks like afterwards: nobody should have expired.
        let after = match sys {
            System::Registry => {
                let leader = c.wait_leader(&client, Duration::from_secs(10)).await?;
                let r = client
                    .get(format!("{}/v1/stats", c.urls[leader]))
                    .send()
                    .await?;
                let v: Value = r.json().await?;
                json!({"total_agents": v["total_agents"], "agents_by_status": v["agents_by_status"]})
            }
            System::Etcd => {
                json!({"agent_keys": etcd::count(&client, &c.urls[0], "/agents/").await})
            }
        };
        for (what, s) in [("heartbeats", &hb), ("churn", &churn), ("discover", &disc)] {
            print_rate(
                sys,
                &format!("mixed {what}"),
                s,
                &json!({"nodes_cpu_percent": cpu, "bench_cpu_percent": me}),
            );
        }
        println!("{:<8} mixed: fleet afterwards {after}", sys.name());
        let detail = json!({
            "target_rates": {"heartbeats": rates.heartbeats, "churn": rates.churn, "discover": rates.discover},
            "heartbeats": hb, "churn": churn, "discover": disc,
            "nodes_cpu_percent": cpu, "bench_cpu_percent": me, "fleet_afterwards": after,
        });
        sides.push((hb, churn, disc, detail));
    }
    let (r, e) = (&sides[0], &sides[1]);
    let rows = vec![
        Row::rate(
            "mixed",
            &format!(
                "heartbeats/s held (target {:.0}/s: {n} agents every 10 s)",
                rates.heartbeats
            ),
            &r.0,
            Some(&e.0),
        )
        .note("paced, spread over 3 nodes; etcd: lease keepalives"),
        Row::rate(
            "mixed",
            &format!(
                "churn/s held (target {:.1}/s: 1 %/min deregister + register)",
                rates.churn
            ),
            &r.1,
            Some(&e.1),
        )
        .note("etcd: lease revoke + grant + register txn"),
    ];
    let mut rows = rows;
    if rates.discover > 0.0 {
        rows.push(
            Row::rate(
                "mixed",
                &format!(
                    "discoveries/s held (target {:.0}/s, linearizable)",
                    rates.discover
                ),
                &r.2,
                Some(&e.2),
            )
            .note("latency under the mixed load is the figure to read"),
        );
    }
    Ok(ScenarioOut {
        scenario: "mixed".into(),
        rows,
        registry: r.3.clone(),
        etcd: e.3.clone(),
    })
}

// ---- expiry -----------------------------------------------------------------

/// Offline deadline of the registry's silent agents (TTL 2 s, offline 3 s:
/// the shortest the registry accepts with its default election timeout).
/// TTL and offline-after of the expiry fleet. Small fleets use 2 s and 3 s
/// (the fleet beats every second); large ones 30 s and 30 s, beating every
/// 10 s as a real fleet would: 100,000 agents beating every second would be
/// a heartbeat benchmark, not an expiry one.
fn expiry_times(agents: usize) -> (u32, u32) {
    if agents > 20_000 {
        (30, 30)
    } else {
        (2, 3)
    }
}

async fn expiry(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    let timeout_s = if cfg.quick { 60 } else { 400 };

    // Registry: the fleet beats (batched) while it registers; then all
    // stop at once; time from the last heartbeat sent until every node
    // shows all of them offline. The mass-expiry brake is off: holding such
    // an event back is exactly what it is for.
    let (ttl_s, offline_s) = expiry_times(n);
    let c = start(cfg, System::Registry, 3, &["--brake-fraction", "1.0"]).await?;
    let reg = super::liveness::expiry(
        c.urls.clone(),
        n,
        ttl_s,
        offline_s,
        cfg.concurrency,
        timeout_s,
    )
    .await?;
    drop(c);
    let reg_total = reg["seconds_until_all_offline_everywhere"]
        .as_f64()
        .context("registry: not every agent went offline on every node in time")?;
    let reg_over = reg_total - f64::from(offline_s);

    // etcd: every lease is granted with a TTL that makes it expire at one
    // common deadline D (TTLs are whole seconds, so within a second of it);
    // the keys are attached before D; then nobody keeps them alive. Time
    // from D until no member holds any key.
    let c = start(cfg, System::Etcd, 3, &[]).await?;
    // Granting and attaching take two requests per agent, about 1,500/s in
    // all on this machine: 100,000 agents need some 135 s, and at n / 750
    // (141 s) the set-up overran its own deadline twice. n / 500 leaves a
    // third to spare.
    let d_secs = 8.0 + n as f64 / 500.0;
    let t_start = Instant::now();
    let d = t_start + Duration::from_secs_f64(d_secs);
    log(format!(
        "etcd: {n} leases expiring together {d_secs:.0} s from now"
    ));
    let (cl, urls) = (client.clone(), c.urls.clone());
    let s = run_pool(cfg.concurrency, Until::Count(n), None, move |w, k| {
        let ttl = d
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            .ceil() as u64;
        let url = format!("{}/v3/lease/grant", urls[(w + k) % urls.len()]);
        send_ok(
            cl.post(url).json(&etcd::grant_body(k, ttl.max(1))),
            any_body,
        )
    })
    .await?;
    ensure!(s.errors == 0, "etcd: {} lease grants failed", s.errors);
    let (cl, urls) = (client.clone(), c.urls.clone());
    let s = run_pool(cfg.concurrency, Until::Count(n), None, move |w, k| {
        let url = format!("{}/v3/kv/txn", urls[(w + k) % urls.len()]);
        send_ok(cl.post(url).json(&etcd::register_txn_body(k)), any_body)
    })
    .await?;
    ensure!(
        s.errors == 0,
        "etcd: {} registrations failed (leases expired before the keys were attached: setup slower than {d_secs:.0} s)",
        s.errors
    );
    ensure!(
        Instant::now() + Duration::from_secs(1) < d,
        "etcd: setup took longer than the common deadline ({d_secs:.0} s); nothing to measure"
    );
    // Every member must hold the whole fleet before the deadline.
    for u in &c.urls {
        loop {
            let loaded = etcd::count(&client, u, "/agents/").await;
            if loaded == Some(n as u64) {
                break;
            }
            ensure!(
                Instant::now() + Duration::from_secs(1) < d,
                "etcd: {u} holds {loaded:?} agents just before the deadline, wanted {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    log(format!(
        "etcd: all keys attached {:.1} s before the deadline; waiting",
        d.saturating_duration_since(Instant::now()).as_secs_f64()
    ));
    tokio::time::sleep_until(d.into()).await;
    let deadline = d + Duration::from_secs(timeout_s);
    let mut seen: Vec<Option<f64>> = vec![None; c.urls.len()];
    while Instant::now() < deadline && seen.iter().any(Option::is_none) {
        for (i, u) in c.urls.iter().enumerate() {
            if seen[i].is_none() && etcd::count(&client, u, "/").await == Some(0) {
                seen[i] = Some(Instant::now().saturating_duration_since(d).as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let et_over = seen
        .iter()
        .copied()
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    println!(
        "etcd     expiry: {n} leases silent: all keys gone on every member {} after their deadline (per member {seen:?})",
        et_over.map_or("never".to_string(), |s| format!("{s:.2} s"))
    );
    let et = json!({"agents": n, "common_deadline_s_after_start": d_secs,
                    "seconds_after_deadline_until_gone_everywhere": et_over,
                    "per_member_seconds": seen});
    let mut row = Row::new(
        "expiry",
        &format!("{n} silent agents: seconds past their deadline until gone/offline on every node"),
        "s",
        false,
    )
    .values(Some(reg_over), et_over);
    row.target = Some("registry under deadline + 5 s".into());
    row.met = Some(reg_over < 5.0);
    let row = row.note(format!(
        "registry: ttl {ttl_s} s, offline_after {offline_s} s, counted from the last heartbeat sent, brake off; etcd: leases all due at one deadline, until no key is left on any member"
    ));
    Ok(ScenarioOut {
        scenario: "expiry".into(),
        rows: vec![row],
        registry: reg,
        etcd: et,
    })
}

// ---- failover ---------------------------------------------------------------

/// What one leader kill showed.
#[derive(Debug, Clone, Serialize)]
struct Trial {
    /// The killed node (1-based).
    leader: usize,
    /// From the SIGKILL to the first successful write sent after it, in ms.
    first_write_ms: Option<f64>,
    /// From the SIGKILL until writes over the trailing second reach 80 % of
    /// the rate before the kill, in ms.
    full_throughput_ms: Option<f64>,
    /// Writes/s before the kill.
    before_per_sec: f64,
    /// Load errors during the trial (writes lost with the leader, refused
    /// connections, timeouts).
    errors: usize,
}

/// One write of the failover load: a registration (registry) or a put of
/// the same record (etcd), under a fresh key.
fn failover_write(
    sys: System,
    client: &reqwest::Client,
    base: &str,
    tag: &str,
    k: usize,
) -> reqwest::RequestBuilder {
    match sys {
        System::Registry => {
            let mut b = reg_body(k % 100_000, LONG_TTL);
            b["agent_id"] = json!(format!("fo-{tag}-{k}"));
            client.post(format!("{base}/v1/agents")).json(&b)
        }
        System::Etcd => {
            let key = format!("/fo/{tag}/{k}");
            client.post(format!("{base}/v3/kv/put")).json(&json!({
                "key": etcd::b64(key.as_bytes()), "value": etcd::b64(&etcd::record(k % 100_000))}))
        }
    }
    .timeout(Duration::from_secs(3))
}

async fn failover_trial(
    cfg: &Config,
    c: &mut Cluster,
    client: &reqwest::Client,
    trial: usize,
) -> anyhow::Result<Trial> {
    let sys = c.system;
    let (pre, post) = if cfg.quick { (3, 8) } else { (5, 20) };
    c.wait_ready(None, Duration::from_secs(90)).await?;
    let leader = c.wait_leader(client, Duration::from_secs(10)).await?;
    let excluded = Arc::new(AtomicUsize::new(usize::MAX));
    let urls = c.urls.clone();
    let tag = format!("t{trial}");
    let stop = Instant::now() + Duration::from_secs(pre + post);
    let load = {
        let (cl, urls, excluded, tag) =
            (client.clone(), urls.clone(), excluded.clone(), tag.clone());
        tokio::spawn(run_pool(
            cfg.concurrency,
            Until::Time(stop),
            None,
            move |w, k| {
                let mut i = (w + k) % urls.len();
                if i == excluded.load(Ordering::Relaxed) {
                    i = (i + 1) % urls.len();
                }
                send_ok(failover_write(sys, &cl, &urls[i], &tag, k), any_body)
            },
        ))
    };
    tokio::time::sleep(Duration::from_secs(pre)).await;
    log(format!(
        "{}: trial {trial}: kill -9 the leader, node {}",
        sys.name(),
        leader + 1
    ));
    let t_kill = Instant::now();
    excluded.store(leader, Ordering::Relaxed);
    c.procs[leader].kill9();
    // A probe sends one write every 50 ms to the survivors, each on its own,
    // so a write stuck behind the dead leader does not hide a later success.
    let first_probe: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let survivors: Vec<String> = urls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, u)| u.clone())
        .collect();
    let mut probes = Vec::new();
    let mut k = 0usize;
    while Instant::now() < stop && first_probe.lock().map(|g| g.is_none()).unwrap_or(false) {
        let (cl, first, rb) = (
            client.clone(),
            first_probe.clone(),
            failover_write(
                sys,
                client,
                &survivors[k % survivors.len()],
                &format!("{tag}p"),
                k,
            ),
        );
        probes.push(tokio::spawn(async move {
            if send_ok(rb, any_body).await {
                let took = t_kill.elapsed();
                if let Ok(mut g) = first.lock() {
                    if g.is_none_or(|d| took < d) {
                        *g = Some(took);
                    }
                }
            }
            drop(cl);
        }));
        k += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in probes {
        let _ = p.await;
    }
    let s = load.await??;
    // First write from the load as well: those sent after the kill.
    let from_load = s
        .lat
        .iter()
        .zip(&s.ends)
        .filter(|(l, e)| e.checked_sub(**l).is_some_and(|st| st >= t_kill))
        .map(|(_, e)| e.saturating_duration_since(t_kill))
        .min();
    let probe = first_probe.lock().ok().and_then(|g| *g);
    let first = match (probe, from_load) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Throughput before the kill (skipping the first second of warm-up),
    // then the first instant whose trailing second reaches 80 % of it.
    let warm = t_kill - Duration::from_secs(pre - 1);
    let before = s
        .ends
        .iter()
        .filter(|e| **e >= warm && **e < t_kill)
        .count() as f64
        / (pre - 1) as f64;
    let mut full = None;
    if let Some(f) = first {
        let mut ends: Vec<Instant> = s.ends.iter().copied().filter(|e| *e >= t_kill).collect();
        ends.sort();
        let mut t = t_kill + f.max(Duration::from_secs(1));
        while t <= stop {
            let from = t - Duration::from_secs(1);
            let n = ends.iter().filter(|e| **e >= from && **e < t).count() as f64;
            if n >= 0.8 * before {
                full = Some(t - t_kill);
                break;
            }
            t += Duration::from_millis(100);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let trial = Trial {
        leader: leader + 1,
        first_write_ms: first.map(ms),
        full_throughput_ms: full.map(ms),
        before_per_sec: before,
        errors: s.errors,
    };
    println!("{:<8} failover trial {trial:?}", sys.name(), trial = trial);
    log(format!("{}: restarting node {}", sys.name(), leader + 1));
    c.procs[leader].start()?;
    c.wait_ready(None, Duration::from_secs(90)).await?;
    Ok(trial)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

async fn failover(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let mut sides: Vec<Vec<Trial>> = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let mut c = start(cfg, sys, 3, &[]).await?;
        let mut trials = Vec::new();
        for t in 0..cfg.trials {
            trials.push(failover_trial(cfg, &mut c, &client, t).await?);
        }
        sides.push(trials);
    }
    let first = |t: &[Trial]| median(t.iter().filter_map(|t| t.first_write_ms).collect());
    let full = |t: &[Trial]| {
        // A trial that never got back to full speed counts as its whole window.
        median(
            t.iter()
                .map(|t| t.full_throughput_ms.unwrap_or(f64::INFINITY))
                .collect(),
        )
        .filter(|m| m.is_finite())
    };
    for (sys, t) in [System::Registry, System::Etcd].iter().zip(&sides) {
        ensure!(
            t.iter().all(|t| t.first_write_ms.is_some()),
            "{}: a trial saw no successful write after the kill",
            sys.name()
        );
    }
    let rows = vec![
        Row::new(
            "failover",
            "leader kill -9 → first successful write (median)",
            "ms",
            false,
        )
        .values(first(&sides[0]), first(&sides[1]))
        .target_ratio("no slower than etcd", 1.0)
        .note(format!(
            "{} trials per system, under a write load of {} connections",
            cfg.trials, cfg.concurrency
        )),
        Row::new(
            "failover",
            "leader kill -9 → 80 % of the write rate before (median)",
            "ms",
            false,
        )
        .values(full(&sides[0]), full(&sides[1])),
    ];
    Ok(ScenarioOut {
        scenario: "failover".into(),
        rows,
        registry: json!({"trials": sides[0]}),
        etcd: json!({"trials": sides[1]}),
    })
}

// ---- footprint --------------------------------------------------------------

async fn footprint(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    let mut sides = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let mut c = start(cfg, sys, 3, &[]).await?;
        log(format!("{}: {n} agents (not timed)", sys.name()));
        fill_fleet(sys, &client, &c.urls, n, LONG_TTL, cfg.concurrency).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.check_alive()?;
        let mb = |b: Option<u64>| b.map(|b| b as f64 / 1e6);
        let rss: Vec<Option<f64>> = c.rss().into_iter().map(mb).collect();
        let disk: Vec<f64> = c
            .data_dirs
            .iter()
            .map(|d| dir_bytes(d) as f64 / 1e6)
            .collect();
        // Restart a follower from its data: kill -9, start, time to serving.
        let leader = c.wait_leader(&client, Duration::from_secs(10)).await?;
        let f = (leader + 1) % c.urls.len();
        c.procs[f].kill9();
        c.procs[f].start()?;
        let restart = c.wait_ready(Some(f), Duration::from_secs(120)).await?;
        match sys {
            System::Registry => registry_settle(&client, &c.urls[f..=f], n).await?,
            System::Etcd => etcd_settle(&client, &c.urls[f..=f], n).await?,
        }
        let rss_restarted = mb(c.procs[f].pid().and_then(super::procs::rss_bytes));
        println!(
            "{:<8} footprint: {n} agents: RSS MB per node {rss:?}, data MB per node {disk:?}; follower {} restarted → serving in {:.2} s, RSS then {rss_restarted:?} MB",
            sys.name(),
            f + 1,
            restart.as_secs_f64()
        );
        sides.push(json!({
            "agents": n, "rss_mb": rss, "data_mb": disk, "restarted_node": f + 1,
            "restart_to_serving_s": restart.as_secs_f64(), "rss_mb_after_restart": rss_restarted,
            "max_rss_mb": rss.iter().flatten().copied().reduce(f64::max),
        }));
    }
    let g = |i: usize, k: &str| sides[i][k].as_f64();
    let rows = vec![
        Row::new(
            "footprint",
            &format!("resident memory with {n} agents, largest node"),
            "MB",
            false,
        )
        .values(g(0, "max_rss_mb"), g(1, "max_rss_mb"))
        .target_ratio("≤ etcd", 1.0)
        .note("VmRSS; etcd holds the record plus one index key per capability, all leased"),
        Row::new(
            "footprint",
            "resident memory of a follower just restarted",
            "MB",
            false,
        )
        .values(g(0, "rss_mb_after_restart"), g(1, "rss_mb_after_restart")),
        Row::new("footprint", "follower kill -9 → serving again", "s", false)
            .values(g(0, "restart_to_serving_s"), g(1, "restart_to_serving_s"))
            .note("registry /health/ready 200; etcd /health true"),
    ];
    Ok(ScenarioOut {
        scenario: "footprint".into(),
        rows,
        registry: sides[0].clone(),
        etcd: sides[1].clone(),
    })
}
