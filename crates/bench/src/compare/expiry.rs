//! `expiry`: a fleet falling silent together: seconds past its deadline until
//! every node shows all of it offline (registry, mass-expiry brake off) or
//! holds none of its keys (etcd, leases all due at one deadline).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::json;

use crate::etcd;
use crate::procs::System;
use crate::{any_body, http, run_pool, send_ok, Until};

use super::{log, start, Config, Row, ScenarioOut};

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

pub(super) async fn expiry(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let n = cfg.agents;
    let timeout_s = if cfg.quick { 60 } else { 400 };

    // Registry: the fleet beats (batched) while it registers; then all
    // stop at once; time from the last heartbeat sent until every node
    // shows all of them offline. The mass-expiry brake is off: holding such
    // an event back is exactly what it is for.
    let (ttl_s, offline_s) = expiry_times(n);
    let c = start(cfg, System::Registry, 3, &["--brake-fraction", "1.0"]).await?;
    let reg = crate::liveness::expiry(
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
