//! `discover`: discoveries per second, linearizable and stale (etcd
//! serializable), on the leader and on the followers, closed loop; then the
//! p99 latency paced at a steady rate over all nodes (etcd: a range over
//! `/cap/<capability>/` with limit 10).

use std::time::Duration;

use registry_types::ReadOptions;
use serde_json::{json, Value};

use crate::etcd;
use crate::procs::System;
use crate::{http, send_ok, Summary, CAPS};

use super::{
    fill_fleet, has_agent, log, print_rate, start, timed, until, with_cpu, Config, Row,
    ScenarioOut, LONG_TTL,
};

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

pub(super) async fn discover(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
