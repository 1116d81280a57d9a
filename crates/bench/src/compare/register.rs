//! `register`: agents registered per second, spread over the 3 nodes (etcd: a
//! put of the record with its lease attached; the lease grants are made
//! beforehand and not timed).

use crate::etcd;
use crate::procs::System;
use crate::{any_body, http, send_ok, Until};

use super::{
    etcd_fill, log, print_rate, reg_body, start, timed, with_cpu, Config, Row, ScenarioOut,
    LONG_TTL,
};

pub(super) async fn register(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
