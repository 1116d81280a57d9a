//! Liveness scenarios: heartbeat throughput and mass expiry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use registry_types::ReadOptions;
use serde_json::json;

use super::{
    agent_body, any_body, http, leader_of, run_pool, run_workers, send_ok, summarize, Until,
};

/// Single heartbeats for agents `bench-0..agents` as fast as `concurrency`
/// connections allow, for `seconds`, to the leader or spread over all nodes.
pub async fn heartbeat(
    nodes: Vec<String>,
    agents: usize,
    concurrency: usize,
    seconds: u64,
    leader_only: bool,
    rate: Option<f64>,
) -> anyhow::Result<serde_json::Value> {
    let client = http()?;
    let targets = if leader_only {
        let l = leader_of(&client, &nodes).await.context("no leader")?;
        vec![nodes[(l - 1) as usize].clone()]
    } else {
        nodes.clone()
    };
    let stop = Instant::now() + Duration::from_secs(seconds);
    let t0 = Instant::now();
    let (lat, errors) = run_workers(concurrency, Until::Time(stop), rate, move |w, k| {
        let url = format!(
            "{}/v1/agents/bench-{:07}/heartbeat",
            targets[(w + k) % targets.len()],
            k % agents.max(1)
        );
        client.post(url)
    })
    .await?;
    let s = summarize(lat, errors, t0.elapsed());
    println!(
        "heartbeat ({}): {:.0}/s over {:.1}s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} errors",
        if leader_only { "leader only" } else { "spread" },
        s.ops_per_sec,
        s.seconds,
        s.p50_ms,
        s.p99_ms,
        s.max_ms,
        s.errors
    );
    Ok(
        json!({"scenario": "heartbeat", "leader_only": leader_only, "agents": agents,
              "concurrency": concurrency, "result": s}),
    )
}

async fn offline_count(client: &reqwest::Client, node: &str) -> Option<u64> {
    let r = client
        .get(format!("{node}/v1/stats"))
        .query(&ReadOptions::stale())
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["offline_agents"].as_u64()
}

async fn stats(client: &reqwest::Client, node: &str) -> Option<serde_json::Value> {
    let r = client
        .get(format!("{node}/v1/stats"))
        .query(&ReadOptions::stale())
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// One round of batched heartbeats for `expiry-0..agents` (unknown ids are
/// simply answered not-found). A batch that fails is sent again (a few
/// times). `last_beat` is set after every attempt, answered or not: it is
/// the latest moment a heartbeat could have reached the cluster, which is
/// what the expiry clock must start from (a round that failed half way
/// still renewed its first batches).
async fn beat_all(
    client: &reqwest::Client,
    node: &str,
    agents: usize,
    last_beat: &std::sync::Mutex<Instant>,
) -> anyhow::Result<()> {
    let ids: Vec<usize> = (0..agents).collect();
    let mut failed = 0;
    for chunk in ids.chunks(5_000) {
        let items: Vec<_> = chunk
            .iter()
            .map(|k| json!({"agent_id": format!("expiry-{k:07}")}))
            .collect();
        let body = json!({"heartbeats": items});
        let mut ok = false;
        for attempt in 0..3u64 {
            let r = client
                .post(format!("{node}/v1/heartbeats"))
                .json(&body)
                .send()
                .await;
            if let Ok(mut l) = last_beat.lock() {
                *l = Instant::now();
            }
            if r.is_ok_and(|r| r.status().is_success()) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        failed += usize::from(!ok);
    }
    if failed > 0 {
        bail!("{failed} heartbeat batches failed three times");
    }
    Ok(())
}

/// Registers `agents` agents while beating them (batched, a round every
/// third of the TTL, at least every second), waits until every node shows all of them registered and
/// none offline, then stops beating at once and measures until every node
/// shows them all offline. The clock starts at the last heartbeat sent
/// (answered or not).
pub async fn expiry(
    nodes: Vec<String>,
    agents: usize,
    ttl_s: u32,
    offline_s: u32,
    concurrency: usize,
    timeout_s: u64,
) -> anyhow::Result<serde_json::Value> {
    let client = http()?;
    let period = Duration::from_secs(u64::from(ttl_s / 3).max(1));
    let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let last_round = Arc::new(std::sync::Mutex::new(Instant::now()));
    // When the last round that went through every agent began.
    let round_done = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let beater = {
        let (client, node, beating, last_round, round_done) = (
            client.clone(),
            nodes[0].clone(),
            beating.clone(),
            last_round.clone(),
            round_done.clone(),
        );
        tokio::spawn(async move {
            while beating.load(Ordering::Relaxed) {
                let t = Instant::now();
                match beat_all(&client, &node, agents, &last_round).await {
                    Ok(()) => {
                        if let Ok(mut d) = round_done.lock() {
                            *d = Some(t);
                        }
                    }
                    Err(e) => eprintln!("expiry: heartbeat round: {e}"),
                }
                // Wake often enough to stop promptly once told to.
                while beating.load(Ordering::Relaxed) && t.elapsed() < period {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    // A registration that fails (a timeout while checkpoints of the beating
    // fleet load the leader) is sent again: it is an upsert, and setup is
    // not what this scenario measures.
    let errors = {
        let (client, nodes) = (client.clone(), nodes.clone());
        run_pool(concurrency, Until::Count(agents), None, move |w, k| {
            let mut body = agent_body(k);
            body["agent_id"] = json!(format!("expiry-{k:07}"));
            body["ttl_seconds"] = json!(ttl_s);
            body["offline_after_seconds"] = json!(offline_s);
            body["deregister_after_seconds"] = json!(0);
            let (client, nodes) = (client.clone(), nodes.clone());
            async move {
                for attempt in 0..5u64 {
                    let url = format!(
                        "{}/v1/agents",
                        nodes[(w + k + attempt as usize) % nodes.len()]
                    );
                    if send_ok(client.post(url).json(&body), any_body).await {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
                false
            }
        })
        .await?
        .errors
    };
    if errors > 0 {
        bail!("{errors} registrations failed");
    }
    let registered = Instant::now();
    // Every node must show the whole fleet registered and nobody offline.
    let settle = Instant::now() + Duration::from_secs(timeout_s);
    'settle: loop {
        if Instant::now() > settle {
            bail!("the fleet never showed all agents registered and none offline on every node");
        }
        for n in &nodes {
            let ok = stats(&client, n).await.is_some_and(|v| {
                v["total_agents"].as_u64() >= Some(agents as u64)
                    && v["offline_agents"].as_u64() == Some(0)
            });
            if !ok {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'settle;
            }
        }
        break;
    }
    // Silence starts after a round that began once every agent was
    // registered: an agent registered after the previous round passed its
    // id was last heard at its registration, later than that round's end,
    // and a clock started there read up to the registration's tail (8 s at
    // 100,000 agents) too much.
    while round_done
        .lock()
        .ok()
        .and_then(|d| *d)
        .is_none_or(|start| start < registered)
    {
        if Instant::now() > settle {
            bail!("no complete heartbeat round after the registrations");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    beating.store(false, Ordering::Relaxed);
    beater.await?;
    let t0 = last_round
        .lock()
        .map(|l| *l)
        .unwrap_or_else(|_| Instant::now());
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut seen: Vec<Option<Duration>> = vec![None; nodes.len()];
    while Instant::now() < deadline && seen.iter().any(Option::is_none) {
        for (i, n) in nodes.iter().enumerate() {
            if seen[i].is_none()
                && offline_count(&client, n)
                    .await
                    .is_some_and(|c| c >= agents as u64)
            {
                seen[i] = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_node: Vec<Option<f64>> = seen.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
    let all = seen
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    match all {
        Some(d) => println!(
            "expiry: {agents} agents silent at once (ttl {ttl_s}s, offline after {offline_s}s): offline on every node {:.2}s after their last heartbeat",
            d.as_secs_f64()
        ),
        None => println!("expiry: not all offline on every node within {timeout_s}s: {per_node:?}"),
    }
    Ok(
        json!({"scenario": "expiry", "agents": agents, "ttl_s": ttl_s, "offline_s": offline_s,
              "seconds_until_all_offline_everywhere": all.map(|d| d.as_secs_f64()),
              "per_node_seconds": per_node}),
    )
}
