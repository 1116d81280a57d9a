//! `mixed`: the fleet beating every 10 s, 1 % churn per minute (deregister +
//! register) and paced discoveries, all at once: the rates each system holds,
//! and the fleet's statuses afterwards.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::etcd;
use crate::procs::{cpu_percent, cpu_seconds, System};
use crate::{any_body, http, run_pool, send_ok, summarize, Samples, Until, CAPS};

use super::{
    fill_fleet, has_agent, log, print_rate, reg_body, start, until, Config, Row, ScenarioOut,
};

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

pub(super) async fn mixed(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
