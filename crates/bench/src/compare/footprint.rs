//! `footprint`: resident memory and data on disk of each node with the whole
//! fleet, then kill -9 of a follower: time until it serves again, and its
//! memory then.

use std::time::Duration;

use serde_json::json;

use crate::http;
use crate::procs::{dir_bytes, System};

use super::{
    etcd_settle, fill_fleet, log, registry_settle, start, Config, Row, ScenarioOut, LONG_TTL,
};

pub(super) async fn footprint(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
        let rss_restarted = mb(c.procs[f].pid().and_then(crate::procs::rss_bytes));
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
