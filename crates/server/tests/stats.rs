//! The statistics other registries report (`GET /stats`): the counters go
//! through Raft, so every node reports the same totals, and they survive a
//! leader's death and a node's restart.

mod common;

use common::{send, wait_until, Cluster};
use reqwest::Method;
use serde_json::json;

const COUNTERS: [&str; 4] = [
    "health_checks_performed",
    "failed_health_checks",
    "auto_scaling_events",
    "service_discovery_requests",
];

/// The counters as node `id` reports them.
async fn counters(c: &Cluster, id: u64) -> Result<Vec<u64>, String> {
    let url = format!("{}/stats", c.url(id));
    let r = send(&c.http, Method::GET, &url, None).await?;
    let v = r.json();
    COUNTERS
        .iter()
        .map(|k| v[k].as_u64().ok_or_else(|| format!("{k} missing: {v}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_replicated_and_survive_leader_death_and_restart() {
    eprintln!("--- a 3-node cluster with a short TTL default");
    let mut c = Cluster::start(
        3,
        &[
            "--default-ttl-seconds",
            "2",
            "--default-offline-after-seconds",
            "3",
        ],
    )
    .await;
    let (leader, _) = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();

    eprintln!("--- heartbeats, discovery requests, a missed TTL and an advisory");
    for i in 0..3 {
        let body = json!({"agent_id": format!("a{i}"), "name": "A", "endpoint": "http://a:1",
                          "capabilities": [{"name": "trade", "cost_estimate": "~1 token"}]});
        c.call(follower, Method::POST, "/v1/agents", Some(body))
            .await;
    }
    for _ in 0..5 {
        c.call(follower, Method::POST, "/agents/a0/heartbeat", None)
            .await;
    }
    for _ in 0..7 {
        c.call(follower, Method::GET, "/capabilities/search?q=trade", None)
            .await;
        c.call(leader, Method::GET, "/agents", None).await;
    }
    c.call(
        leader,
        Method::PUT,
        "/v1/scaling/policies/trade",
        Some(json!({"min_agents": 5})),
    )
    .await;
    // a1 and a2 never beat: each steps to unhealthy, then offline.
    let settled = wait_until(
        "every node reports the same counters, all moved",
        || async {
            let all = [
                counters(&c, 1).await?,
                counters(&c, 2).await?,
                counters(&c, 3).await?,
            ];
            let [hb, failed, scaling, discovery] = all[0][..] else {
                return Err("four counters".into());
            };
            if all.iter().any(|n| *n != all[0]) {
                return Err(format!("nodes differ: {all:?}"));
            }
            if hb < 5 || failed < 4 || scaling < 1 || discovery < 14 {
                return Err(format!("not there yet: {:?}", all[0]));
            }
            Ok(all[0].clone())
        },
    )
    .await;
    assert_eq!(settled[0], 5, "every heartbeat counted once: {settled:?}");

    eprintln!("--- kill the leader: the survivors keep the totals");
    c.kill(leader);
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    c.wait_leader(&survivors).await;
    for id in &survivors {
        let now = counters(&c, *id).await.expect("a survivor answers");
        for (k, (after, before)) in COUNTERS.iter().zip(now.iter().zip(&settled)) {
            assert!(
                after >= before,
                "{k} went back on node {id}: {before} -> {after}"
            );
        }
    }

    eprintln!("--- restart the old leader: it reports what the others do");
    c.start_node(leader);
    c.wait_ready(leader).await;
    wait_until("the restarted node agrees with the others", || async {
        let back = counters(&c, leader).await?;
        let other = counters(&c, survivors[0]).await?;
        if back == other && back[0] >= settled[0] {
            Ok(())
        } else {
            Err(format!("restarted {back:?}, other {other:?}"))
        }
    })
    .await;
}
