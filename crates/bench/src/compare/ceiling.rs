//! `ceiling`: the HTTP stack alone, a trivial route on a single node at the
//! same concurrency (registry `GET /health/live`, etcd `GET /version`).

use crate::procs::System;
use crate::{any_body, http, send_ok};

use super::{print_rate, start, timed, until, with_cpu, Config, Row, ScenarioOut};

/// The HTTP stack alone: a trivial route on a single node, same
/// concurrency. The registry answers `GET /health/live`, etcd `GET /version`.
pub(super) async fn ceiling(cfg: &Config) -> anyhow::Result<ScenarioOut> {
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
