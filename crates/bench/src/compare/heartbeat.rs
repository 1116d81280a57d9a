//! `heartbeat`: heartbeats per second at the small and the large fleet size,
//! all to the leader, then spread over the nodes (etcd: `POST
//! /v3/lease/keepalive`, one lease per agent).

use std::time::Duration;

use serde_json::{json, Value};

use crate::etcd;
use crate::procs::System;
use crate::{any_body, http, send_ok, Summary};

use super::{
    etcd_fill, log, print_rate, registry_fill, registry_settle, start, timed, until, with_cpu,
    Config, Row, ScenarioOut, LONG_TTL,
};

pub(super) async fn heartbeat(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
