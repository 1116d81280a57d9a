//! `cards`: agents registered with A2A Agent Cards (issue 19). Memory per
//! agent with cards of ~4 KiB against the same fleet without them, then
//! discovery by skill and input mode at full size.
//!
//! On each system, two fresh clusters one after the other:
//! 1. the fleet without cards (each agent registered with the fields its
//!    card maps to, given outright): resident memory, the baseline;
//! 2. the fleet with cards: resident memory, then discoveries of one skill
//!    id and one input mode (`{"skills":[S],"input_modes":[M],"limit":10}`)
//!    closed loop, linearizable and stale, and paced at a steady rate for
//!    the latency.
//!
//! etcd keeps the fleet as [`crate::etcd`] describes (record, card, one
//! index key per skill holding the agent's media types) and answers a
//! discovery as a registry built on it would: ranges over the skill's
//! index keys (pages of [`ETCD_PAGE`]), keeps those whose media types
//! accept the asked input mode (the registry's rule, wildcards both ways)
//! until it has 10, and reads their records in one read-only transaction;
//! with their cards too when the registry's hits carried cards, so that
//! both sides return the same thing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cards::{self, query};
use crate::etcd;
use crate::procs::{dir_bytes, Cluster, System};
use crate::{http, send_ok, Summary};

use super::{
    etcd_fill, etcd_settle, etcd_txns, has_agent, log, print_rate, registry_post_agents,
    registry_settle, start, timed, until, with_cpu, Config, Row, ScenarioOut, LONG_TTL,
};

/// Hits a discovery asks for: the production shape, a few of many.
const LIMIT: usize = 10;

/// Index keys per etcd range: enough for 10 hits in one page for every
/// query of the fleet (the rarest mode is accepted by about a third of a
/// skill's holders), few enough that a page stays a few KiB.
const ETCD_PAGE: u64 = 100;

/// Pages an etcd discovery reads at most (a bound on a query's requests).
const ETCD_MAX_PAGES: usize = 50;

/// What one cluster's fleet measured for memory.
struct Memory {
    /// Resident memory of each node, MB (median of the samples).
    rss_mb: Vec<f64>,
    /// Data directory of each node, MB.
    data_mb: Vec<f64>,
}

impl Memory {
    fn max(&self) -> Option<f64> {
        self.rss_mb.iter().copied().reduce(f64::max)
    }

    fn mean(&self) -> Option<f64> {
        (!self.rss_mb.is_empty())
            .then(|| self.rss_mb.iter().sum::<f64>() / self.rss_mb.len() as f64)
    }

    fn json(&self) -> Value {
        json!({"rss_mb": self.rss_mb, "data_mb": self.data_mb,
               "max_rss_mb": self.max(), "mean_rss_mb": self.mean()})
    }
}

/// What the registry's first answer looked like (the harness does not rely
/// on it: a hit is counted when it names an agent).
#[derive(Debug, Clone, Default)]
struct Probe {
    hits: usize,
    /// Whether the hits carried the agents' cards (`agent.agent_card` an
    /// object, or `agent_card` beside `agent`).
    cards: bool,
    /// Whether the hits carried `card_etag`.
    etag: bool,
    bytes: usize,
}

/// One measurement of the discovery part: stale or linearizable, closed
/// loop or paced at a rate.
type Variant = (bool, Option<f64>);

pub(super) async fn cards(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    // Paced well under what the registry answered closed loop on this
    // machine with cards in every hit (about 1,000/s), so that the latency
    // is that of a node with cores to spare.
    let steady = if cfg.quick { 200.0 } else { 500.0 };
    let variants: Vec<Variant> = if cfg.quick {
        vec![(false, None), (false, Some(steady))]
    } else {
        vec![(false, None), (true, None), (false, Some(steady))]
    };
    let mean_card = (0..n).map(cards::card_bytes).sum::<usize>() as f64 / n.max(1) as f64;
    log(format!(
        "cards: {n} agents, cards of {mean_card:.0} bytes on average (canonical JSON)"
    ));
    let mut probe = Probe::default();
    let mut sides = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        sides.push(measure(cfg, sys, &client, &variants, &mut probe).await?);
    }
    let rows = rows(n, &variants, &sides, &probe);
    let side_json = |s: &Side| {
        json!({
            "agents": n, "mean_card_bytes": mean_card,
            "fill_with_cards_s": s.fill_s,
            "memory_with_cards": s.carded.json(), "memory_without_cards": s.bare.json(),
            "discover": s.measured.iter().zip(&variants).map(|((r, c), (stale, rate))| {
                let mut v = with_cpu(r, c);
                v["consistency"] = json!(consistency(*stale));
                v["rate"] = json!(rate);
                v
            }).collect::<Vec<_>>(),
        })
    };
    let mut registry = side_json(&sides[0]);
    registry["first_answer"] = json!({"hits": probe.hits, "bytes": probe.bytes,
                                      "hits_carry_cards": probe.cards, "hits_carry_card_etag": probe.etag,
                                      "include_card_asked": cfg.include_card});
    let mut etcd = side_json(&sides[1]);
    etcd["reads_cards"] = json!(probe.cards);
    Ok(ScenarioOut {
        scenario: "cards".into(),
        rows,
        registry,
        etcd,
    })
}

/// One system: the fleet without cards (memory), then with cards (memory,
/// discoveries). On the registry, `probe` is filled from its first
/// answer; on etcd it says whether to read the cards too.
async fn measure(
    cfg: &Config,
    sys: System,
    client: &reqwest::Client,
    variants: &[Variant],
    probe: &mut Probe,
) -> anyhow::Result<Side> {
    let n = cfg.agents;
    let bare = {
        let c = start(cfg, sys, 3, &[]).await?;
        log(format!(
            "{}: {n} agents without cards (not timed)",
            sys.name()
        ));
        fill(sys, client, &c, n, false, cfg.concurrency).await?;
        memory(cfg, &c).await?
    };
    let mut c = start(cfg, sys, 3, &[]).await?;
    log(format!("{}: {n} agents with cards (not timed)", sys.name()));
    let t0 = std::time::Instant::now();
    fill(sys, client, &c, n, true, cfg.concurrency).await?;
    let fill_s = t0.elapsed().as_secs_f64();
    let carded = memory(cfg, &c).await?;
    c.check_alive()?;
    if sys == System::Registry {
        *probe = registry_probe(client, &c.urls[0], cfg.include_card).await?;
        log(format!(
            "registry: a discovery answered {} hits in {} bytes; hits carry cards: {}, card_etag: {}",
            probe.hits, probe.bytes, probe.cards, probe.etag
        ));
    }
    let mut measured = Vec::new();
    for &(stale, rate) in variants {
        let (s, cpu) = discover(cfg, sys, client, &c, stale, rate, probe.cards).await?;
        let what = format!(
            "discover skills + input_modes, {}, all 3 nodes{}",
            consistency(stale),
            rate.map_or(String::new(), |r| format!(", paced at {r:.0}/s"))
        );
        print_rate(sys, &what, &s, &cpu);
        measured.push((s, cpu));
    }
    println!(
        "{:<8} cards: {n} agents: RSS MB per node with cards {:?}, without {:?}; data MB {:?} / {:?}",
        sys.name(),
        carded.rss_mb,
        bare.rss_mb,
        carded.data_mb,
        bare.data_mb
    );
    Ok(Side {
        bare,
        carded,
        measured,
        fill_s,
    })
}

/// Everything one system measured.
struct Side {
    bare: Memory,
    carded: Memory,
    measured: Vec<(Summary, Value)>,
    fill_s: f64,
}

fn consistency(stale: bool) -> &'static str {
    if stale {
        "stale (etcd serializable)"
    } else {
        "linearizable"
    }
}

/// The lines of the table.
fn rows(n: usize, variants: &[Variant], sides: &[Side], probe: &Probe) -> Vec<Row> {
    let (reg, et) = (&sides[0], &sides[1]);
    let shape = format!(
        "query: 1 skill id (of {}, each held by ~{:.1} % of agents) + 1 input mode ({}); hits {} cards",
        cards::SKILLS,
        100.0 * cards::MEAN_SKILLS / cards::SKILLS as f64,
        cards::QUERY_MODES.join(", "),
        if probe.cards { "carry their" } else { "without" }
    );
    let etcd_side = format!(
        "etcd: range over /skill/<id>/ (pages of {ETCD_PAGE}), input-mode filter in the client until {LIMIT}, one read-only txn for the records{}",
        if probe.cards { " and cards" } else { "" }
    );
    let mut rows = Vec::new();
    for (i, &(stale, rate)) in variants.iter().enumerate() {
        let (r, e) = (&reg.measured[i].0, &et.measured[i].0);
        let row = match rate {
            None => Row::rate(
                "cards",
                &format!(
                    "discoveries/s by skill + input mode, up to {LIMIT} of {n} agents with cards, {}, all 3 nodes",
                    consistency(stale)
                ),
                r,
                Some(e),
            )
            .note(format!("closed loop; {shape}; {etcd_side}")),
            Some(rate) => {
                let mut row = Row::new(
                    "cards",
                    &format!(
                        "discovery by skill + input mode, p99 latency at a steady {rate:.0}/s, {}, {n} agents with cards, all 3 nodes",
                        consistency(stale)
                    ),
                    "ms",
                    false,
                )
                .values(Some(r.p99_ms), Some(e.p99_ms));
                row.registry_latency = Some(r.clone());
                row.etcd_latency = Some(e.clone());
                row.note(format!(
                    "paced; achieved {:.0}/s registry, {:.0}/s etcd; {shape}; {etcd_side}",
                    r.ops_per_sec, e.ops_per_sec
                ))
            }
        };
        rows.push(row);
    }
    let per_agent = |s: &Side| -> Option<f64> {
        Some((s.carded.mean()? - s.bare.mean()?) * 1e6 / n.max(1) as f64)
    };
    rows.push(
        Row::new(
            "cards",
            &format!("resident memory with {n} agents with ~4 KiB cards, largest node"),
            "MB",
            false,
        )
        .values(reg.carded.max(), et.carded.max())
        .note("VmRSS; etcd: record, card and one index key per skill, all leased"),
    );
    rows.push(
        Row::new(
            "cards",
            &format!("resident memory with the same {n} agents without cards, largest node"),
            "MB",
            false,
        )
        .values(reg.bare.max(), et.bare.max())
        .note("the fields the card maps to given outright; etcd: the record alone"),
    );
    rows.push(
        Row::new(
            "cards",
            "resident memory a ~4 KiB card adds per agent (mean of the nodes)",
            "bytes",
            false,
        )
        .values(per_agent(reg), per_agent(et))
        .note("(mean RSS with cards − mean RSS without) / agents"),
    );
    rows
}

/// Fills a fresh cluster with agents `0..n`, with or without their cards,
/// and waits until every node holds them. Not timed. Fails when no agent
/// was added for [`STALL`] (a stuck cluster would otherwise keep the run
/// for hours of retries).
async fn fill(
    sys: System,
    client: &reqwest::Client,
    c: &Cluster,
    n: usize,
    with_card: bool,
    concurrency: usize,
) -> anyhow::Result<()> {
    let work = async {
        match sys {
            System::Registry => {
                let body = move |i: usize| {
                    let mut b = if with_card {
                        cards::registration_with_card(i)
                    } else {
                        cards::registration_without_card(i)
                    };
                    b["ttl_seconds"] = json!(LONG_TTL);
                    b
                };
                registry_post_agents(client, &c.urls, 0, n, body, concurrency).await?;
                registry_settle(client, &c.urls, n).await
            }
            System::Etcd => {
                etcd_fill(
                    client,
                    &c.urls,
                    0,
                    n,
                    u64::from(LONG_TTL),
                    false,
                    concurrency,
                )
                .await?;
                let body = move |i: usize| etcd::card_register_txn_body(i, with_card);
                etcd_txns(client, &c.urls, 0, n, body, concurrency).await?;
                etcd_settle(client, &c.urls, n).await
            }
        }
    };
    tokio::select! {
        r = work => r,
        e = stalled(sys, client, &c.urls, n) => Err(e),
    }
}

/// How long a fill may go without a new agent on any node.
const STALL: Duration = Duration::from_secs(90);

/// Resolves (with the error to report) once no node has shown a new agent
/// for [`STALL`]; never while the count grows. (etcd's lease grants come
/// before its records: the first minute of its fill adds no agent, hence
/// the generous window.)
async fn stalled(
    sys: System,
    client: &reqwest::Client,
    urls: &[String],
    n: usize,
) -> anyhow::Error {
    let (mut best, mut since) = (0u64, std::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut now = 0;
        for u in urls {
            let c = match sys {
                System::Registry => registry_count(client, u).await,
                System::Etcd => etcd::count(client, u, "/agents/").await,
            };
            now = now.max(c.unwrap_or(0));
        }
        if now > best {
            (best, since) = (now, std::time::Instant::now());
        } else if since.elapsed() > STALL {
            return anyhow::anyhow!(
                "{}: no new agent for {} s during the fill ({best} of {n} in); the cluster is stuck (see its nodes' logs)",
                sys.name(),
                STALL.as_secs()
            );
        }
    }
}

/// The agents node `url` holds (`/v1/stats`, stale: what it has applied).
async fn registry_count(client: &reqwest::Client, url: &str) -> Option<u64> {
    let r = client
        .get(format!("{url}/v1/stats"))
        .query(&registry_types::ReadOptions::stale())
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["total_agents"].as_u64()
}

/// Resident memory and data size of each node once the fleet is in: the
/// median of 5 samples a second apart, after 2 s of quiet (quick: one
/// sample after 1 s).
async fn memory(cfg: &Config, c: &Cluster) -> anyhow::Result<Memory> {
    let (wait, samples) = if cfg.quick { (1, 1) } else { (2, 5) };
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let mut per_node: Vec<Vec<f64>> = vec![Vec::new(); c.procs.len()];
    for k in 0..samples {
        if k > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for (i, rss) in c.rss().into_iter().enumerate() {
            match rss {
                Some(b) => per_node[i].push(b as f64 / 1e6),
                None => anyhow::bail!("{} node {} is not running", c.system.name(), i + 1),
            }
        }
    }
    let rss_mb = per_node
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let data_mb = c
        .data_dirs
        .iter()
        .map(|d| dir_bytes(d) as f64 / 1e6)
        .collect();
    Ok(Memory { rss_mb, data_mb })
}

/// The registry's discovery body of query `k`.
fn registry_query(k: usize, include_card: bool) -> Value {
    let (skill, mode) = query(k);
    let mut b = json!({"skills": [skill], "input_modes": [mode], "limit": LIMIT});
    if include_card {
        b["include_card"] = json!(true);
    }
    b
}

/// One discovery on the registry, read leniently: how many hits, whether
/// they carry cards or card ETags, however a hit is laid out.
async fn registry_probe(
    client: &reqwest::Client,
    base: &str,
    include_card: bool,
) -> anyhow::Result<Probe> {
    let r = client
        .post(format!("{base}/v1/discover"))
        .json(&registry_query(0, include_card))
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "registry: discovery by skill and input mode answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: Value = serde_json::from_slice(&body)?;
    let hits = v["agents"].as_array().cloned().unwrap_or_default();
    let carries = |h: &Value, key: &str| h.get(key).is_some() || h["agent"].get(key).is_some();
    Ok(Probe {
        hits: hits.len(),
        cards: hits
            .iter()
            .any(|h| h["agent"]["agent_card"].is_object() || h["agent_card"].is_object()),
        etag: hits.iter().any(|h| carries(h, "card_etag")),
        bytes: body.len(),
    })
}

/// One timed discovery measurement over all nodes of `c`.
async fn discover(
    cfg: &Config,
    sys: System,
    client: &reqwest::Client,
    c: &Cluster,
    stale: bool,
    rate: Option<f64>,
    etcd_cards: bool,
) -> anyhow::Result<(Summary, Value)> {
    let (cl, urls, include_card) = (client.clone(), c.urls.clone(), cfg.include_card);
    timed(c, cfg.concurrency, until(cfg.seconds), rate, move |w, k| {
        let (cl, base) = (cl.clone(), urls[(w + k) % urls.len()].clone());
        async move {
            match sys {
                System::Registry => {
                    let url = format!("{base}/v1/discover");
                    let rb = cl.post(url).json(&registry_query(k, include_card));
                    let rb = if stale {
                        rb.query(&registry_types::ReadOptions::stale())
                    } else {
                        rb.query(&registry_types::ReadOptions::linearizable())
                    };
                    send_ok(rb, has_agent).await
                }
                System::Etcd => etcd_discover(&cl, &base, k, stale, etcd_cards).await,
            }
        }
    })
    .await
}

/// Discovery query `k` on etcd: pages of the skill's index keys, filtered
/// on the input mode in the client until [`LIMIT`] agents qualify, then
/// one read-only transaction for their records (and cards). True when at
/// least one agent was found and read.
async fn etcd_discover(
    client: &reqwest::Client,
    base: &str,
    k: usize,
    serializable: bool,
    with_cards: bool,
) -> bool {
    let (skill, mode) = query(k);
    let mut from = format!("/skill/{skill}/").into_bytes();
    let mut ids: Vec<String> = Vec::with_capacity(LIMIT);
    for _ in 0..ETCD_MAX_PAGES {
        let body = etcd::skill_page_body(&skill, &from, ETCD_PAGE, serializable);
        let Some(page) = post_json(client, &format!("{base}/v3/kv/range"), &body).await else {
            return false;
        };
        let kvs = page["kvs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for kv in kvs {
            let key = kv["key"].as_str().and_then(etcd::b64_decode);
            let value = kv["value"].as_str().and_then(etcd::b64_decode);
            let (Some(key), Some(value)) = (key, value) else {
                return false;
            };
            let value = String::from_utf8_lossy(&value);
            let input = value.split('|').next().unwrap_or_default();
            if cards::accepts(input.split(','), mode) {
                let key = String::from_utf8_lossy(&key);
                if let Some(id) = key.rsplit('/').next() {
                    ids.push(id.to_string());
                }
            }
            if ids.len() == LIMIT {
                break;
            }
            from = key;
            from.push(0);
        }
        if ids.len() == LIMIT || page["more"].as_bool() != Some(true) {
            break;
        }
    }
    if ids.is_empty() {
        return false;
    }
    let body = etcd::fetch_txn_body(&ids, with_cards, serializable);
    match post_json(client, &format!("{base}/v3/kv/txn"), &body).await {
        Some(v) => v["succeeded"].as_bool() == Some(true) && etcd::txn_reads_found(&v),
        None => false,
    }
}

/// POSTs a JSON body and parses the 2xx answer.
async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let r = client.post(url).json(body).send().await.ok()?;
    if !r.status().is_success() {
        let _ = r.bytes().await;
        return None;
    }
    r.json().await.ok()
}
